/* sla_internal.h — what the files of the SLA engine share; private to daemon/sla*.c.
 *
 * The engine is one object (struct funnel_sla) split by job: sla.c (statements, policy versions,
 * event dispatch, timers, life cycle), sla_instance.c (instance rows, schedule, steps, outputs),
 * sla_held.c (events held until their start), sla_recompute.c (the per-key event log and
 * recomputation after out-of-order arrival), sla_order.c (processing order of fifo policies),
 * sla_quota.c (quota periods), sla_retention.c (the horizon). The contract of each
 * function is written above its definition. */
#ifndef FUNNEL_SLA_INTERNAL_H
#define FUNNEL_SLA_INTERNAL_H

#include "sla.h"
#include "timerheap.h"

#include <stdbool.h>
#include <stdint.h>

#define NONE           INT64_MAX /* no time: paused due, nothing scheduled */
#define LIVE_MAX       16        /* live instances of one key handled per event */
#define ID_BUF         (FUNNEL_ID_MAX + 1)
#define QUOTA_BATCH    64   /* periods closed per quota per timer pass */
#define LOG_LAST_SLOTS 8192 /* (policy, key)s whose last log row memory keeps (sla_recompute.c) */
enum stmt_id {
    S_VERSIONS,
    S_VERSION_ADD,
    S_VERSION_EXISTS,
    S_INSERT,
    S_LIVE,
    S_BY_ID,
    S_UPDATE,
    S_MET,
    S_TIMERS,
    S_OPEN_COUNT,
    S_QUOTA_COUNT,
    S_QUOTA_DAY,
    S_QUOTA_ENSURE,
    S_QUOTA_OPEN,
    S_QUOTA_MARK,
    S_HOLD,
    S_HOLD_PRUNE,
    S_HELD,
    S_HELD_DROP,
    S_LOG_LAST,
    S_LOG_VLAST,
    S_LOG_ADD,
    S_LOG_HELD,
    S_LOG_READ,
    S_LOG_FOREIGN,
    S_LOG_SOLID,
    S_LOG_UNVIRT,
    S_PRELOG,
    S_KEY_ROWS,
    S_KEY_LAST,
    S_ORDER_QUEUES,
    S_ORDER_TAKEN,
    S_ORDER_SKIPPED,
    S_ORDER_ADD,
    S_ORDER_CURRENT,
    S_ORDER_FORGET_TAKEN,
    S_ORDER_FORGET,
    S_DELETE,
    S_DELETED_MAX,
    S_HELD_CLEAR,
    S_FIRED_NEXT,
    S_FIRED_SET,
    S_FIRED_DROP,
    S_SPAN_GET,
    S_SPAN_SET,
    S_ID_ISSUED,
    S_MARK_GET,
    S_MARK_SET,
    S_PRUNE_NEXT,
    S_KEY_FIRST,
    S_LOG_PRUNE,
    S_ORDER_PRUNE,
    S_IDLE_NEXT,
    S_COUNT_
};
typedef enum inst_state { ST_OPEN, ST_PAUSED, ST_MET } inst_state_t;
/* funnel_sla_t.dirty: what memory may hold ahead of the committed rows. Nothing tells the
 * engine of a commit, so a flag is cleared only where every earlier transaction is known to have
 * ended: after a full rollback (no transaction open any more) and when on_timer starts. A
 * rollback to a savepoint keeps it, as the enclosing transaction may still roll back. Timer heap
 * entries pushed for rows a rollback undid need no flag: popped entries are checked against
 * their row (sla_on_timer). Versions need none either: those past n_vers_known are checked. */
enum {
    D_OPEN = 1,   /* the open count moved */
    D_POPPED = 2, /* on_timer popped entries: a rollback leaves their rows without one */
};
/* One stored policy version, compiled. */
typedef struct pver {
    funnel_sla_policy_t pol;
    int64_t version;
    funnel_calendar_t *cal;
} pver_t;

/* One instance row, as read and written. */
typedef struct inst {
    int64_t id;
    char policy[ID_BUF];
    int64_t version;
    char key[ID_BUF];
    char owner[ID_BUF];
    inst_state_t state;
    int64_t started_at;  /* start (or last reset), event time */
    int64_t anchor_at;   /* the running clock counts from here (start, reset or resume) */
    int64_t consumed_ms; /* business time used before anchor_at (before a pause) */
    int64_t due_at;      /* kept while paused; never moves once the clock reached it */
    int64_t paused_at;   /* NONE unless paused */
    int64_t step;        /* next step to fire */
    int64_t next_at;     /* when; NONE for nothing */
    char acked_by[ID_BUF];
    int64_t opened_at;        /* the start event's time; events before it belong to no instance */
    char start_event[ID_BUF]; /* with policy and key, the identity of the instance */
    int64_t stopped_at;       /* once met: the stop's time, whether on time, how late */
    bool on_time;
    int64_t late_ms;
    char stop_event[ID_BUF];
    char queue[ID_BUF]; /* "" when the policy has no queue */
    int64_t priority;   /* 0 when the policy has no priority */
    int64_t arrived_at; /* wall clock: when its last event arrived (sla_timer_at); 0 unknown */
    int vlog;           /* V_START: the row stands for its start's log row (set on insert only) */
} inst_t;

/* sla_instance.vlog: the log rows an instance row stands for (sla_recompute.c). */
enum { V_START = 1, V_STOP = 2 };

/* What a start gives its instance. A start whose topic lacks the policy's owner, queue or
 * priority field (a reopen) inherits that value from the key's previous instance (I_*). */
enum { I_OWNER = 1, I_QUEUE = 2, I_PRIORITY = 4, I_REOPEN = 8 /* only after a met instance */ };
typedef struct start_attrs {
    char owner[ID_BUF];
    char queue[ID_BUF];
    int64_t priority;
    int inherit; /* I_* bits */
} start_attrs_t;

/* What S_LOG_LAST says of one (policy, key), kept in memory (sla_recompute.c). */
typedef struct log_last {
    bool used;      /* the slot holds (policy, key) */
    bool any;       /* the log has a row; the last one is (at, rank, event_id) */
    bool held_none; /* sla_held has no row of (policy, key) (learnt when its log began) */
    int64_t at;
    int rank;
    char policy[ID_BUF], key[ID_BUF], event_id[ID_BUF];
} log_last_t;

/* One stop, reset, pause, resume or reassignment as an instance receives it. */
typedef struct change {
    int kinds; /* K_* bits */
    int64_t t; /* event time */
    const char *event_id;
    const char *owner; /* the new owner of a K_ASSIGN; NULL otherwise */
} change_t;

/* A quota's in-memory view: when its next period end or pace point comes. */
typedef struct quota_state {
    char *name;             /* owned; matches a funnel_sla_quota_t by name */
    char *time_zone;        /* owned; the calendar below was compiled for it */
    funnel_calendar_t *cal; /* periods are local weeks and months */
    int64_t next_at;        /* earliest pending work; INT64_MIN: not yet initialised */
} quota_state_t;

struct funnel_sla {
    funnel_store_t *store; /* borrowed */
    sqlite3 *db;
    const funnel_sla_config_t *cfg; /* borrowed, live */
    const funnel_log_t *log;
    sqlite3_stmt *st[S_COUNT_];
    pver_t *vers; /* every stored version, by (name, version) */
    size_t n_vers, cap_vers;
    funnel_timerheap_t *heap; /* (sla_timer_at, id) of each instance with a next step */
    int64_t grace_ms;         /* the late grace the heap's times count (cfg may have a newer one) */
    int64_t open; /* instances not met, for metrics; recounted at start and after a rollback */
    /* What a rollback may have made wrong in memory (D_*), so on_rollback, which runs for
     * every failed event, redoes only that instead of reloading all SLA state. */
    unsigned dirty;
    size_t n_vers_known; /* vers[0..n_vers_known) are committed; later ones may be undone */
    size_t version_loads, heap_rebuilds; /* for funnel_sla_reloads */
    size_t log_reads, held_reads;        /* S_LOG_LAST, S_HELD runs: funnel_sla_store_reads */
    log_last_t *log_last;                /* LOG_LAST_SLOTS, a cache by (policy, key) */
    /* Per configured policy, for the event being applied: its key had a log before the event,
     * which neither starts the policy nor arrived late (sla_log_event); sla_hold skips those. */
    bool *logged;
    size_t cap_logged;
    bool prelog; /* instances from before the log exist: sla_hold skips no policy */
    /* Per configured policy, the log rows of the event being applied not yet written (V_*
     * bits): an instance row that records one claims it (sla_log_claim), the rest are written
     * once the event is applied (sla_log_flush). pend_event is that event's id. */
    unsigned char *pend;
    size_t cap_pend;
    char pend_event[ID_BUF];
    quota_state_t *quotas;
    size_t n_quotas;
    /* Retention (sla_retention.c): the highest event time seen (INT64_MIN: none), its value
     * before the event being applied (restored when that event is rolled back), and the wall
     * time of the next prune pass (sla_prune_deadline). */
    int64_t watermark, watermark_before, prune_at;
    int64_t oldest_stop; /* of the met instances, as last counted or lower; INT64_MAX: none */
    int64_t oldest_idle; /* of the live instances' last clock change (sla_idle_at), likewise */
};

/* Called for each step an instance passes (steps_before), before it moves to the next one. */
typedef int (*step_fn)(void *arg, pver_t *v, const inst_t *in);

/* steps_before's callback on the live path: publish at once. */
typedef struct fire_ctx {
    funnel_sla_t *sla;
    funnel_router_t *router;
    int64_t now_ms;
    int fired; /* steps passed */
} fire_ctx_t;

/* What an event is to one policy: a bit per list it matches (stop, reset, pause, resume). The
 * kinds, not the envelope, are what a held event keeps, so a held event and a live one run the
 * same code (inst_apply). */
enum { K_STOP = 1, K_RESET = 2, K_PAUSE = 4, K_RESUME = 8, K_ASSIGN = 16 };
/* Not an event's: the retention's expiry of an idle instance (sla_retention.c), a stop that is
 * never on time and names no stop event. */
enum { K_EXPIRE = 32 };

/* ---- sla.c: statements and policy versions ------------------------------------------------ */

/* The prepared statement id, reset and unbound. */
sqlite3_stmt *sla_stmt(funnel_sla_t *sla, enum stmt_id id);
int sla_step_done(sqlite3_stmt *s);
void sla_bind_time(sqlite3_stmt *s, int col, int64_t v);
int64_t sla_col_time(sqlite3_stmt *s, int col);
void sla_col_text(sqlite3_stmt *s, int col, char *out);
pver_t *sla_version_find(funnel_sla_t *sla, const char *name, int64_t version);
int sla_version_current(funnel_sla_t *sla, const funnel_sla_policy_t *p, pver_t **out);

/* ---- sla_instance.c: instance rows, schedule, steps, outputs ------------------------------ */

void sla_inst_read(sqlite3_stmt *s, inst_t *in);
int sla_inst_write(funnel_sla_t *sla, const inst_t *in);
int sla_inst_load(funnel_sla_t *sla, int64_t id, inst_t *in);
void sla_open_add(funnel_sla_t *sla, int64_t delta);
int64_t sla_step_at(pver_t *v, const inst_t *in, int64_t step);
int64_t sla_grace_at(const funnel_sla_t *sla, int64_t next_at, int64_t arrived_at);
int64_t sla_timer_at(const funnel_sla_t *sla, const inst_t *in);
int sla_steps_before(pver_t *v, inst_t *in, int64_t t, step_fn fn, void *arg);
int sla_fired_next(funnel_sla_t *sla, int64_t id, int64_t clock, int64_t *next);
void sla_ref_fill(Funnel__V1__SlaRef *ref, char *sla_id, const pver_t *v, const inst_t *in);
int sla_step_publish(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, const inst_t *in,
                     int64_t now_ms);
int sla_fire_step(void *arg, pver_t *v, const inst_t *in);
int sla_kinds_of(const funnel_sla_policy_t *p, const funnel_envelope_t *env);
int sla_inst_change(pver_t *v, inst_t *in, const change_t *c);
int sla_inst_met(funnel_sla_t *sla, funnel_router_t *router, const inst_t *in, bool first,
                 int64_t now_ms);
int sla_inst_apply(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, inst_t *in,
                   const change_t *c, int64_t now_ms);
int sla_live_read(funnel_sla_t *sla, const char *key, inst_t *out, size_t *n);
bool sla_inst_takes(const inst_t *in, int64_t t);
int sla_key_events(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                   int64_t now_ms);
bool sla_starts(const funnel_sla_policy_t *p, const funnel_envelope_t *env);
void sla_start_attrs(const funnel_sla_policy_t *p, const funnel_envelope_t *env, start_attrs_t *a);
void sla_attrs_inherit(start_attrs_t *a, const inst_t *prev);
void sla_inst_fresh(inst_t *in, pver_t *v, const char *key, const start_attrs_t *a, int64_t t,
                    const char *event_id);
int sla_inst_insert(funnel_sla_t *sla, inst_t *in);
int sla_key_row(funnel_sla_t *sla, enum stmt_id id, const char *policy, const char *key, inst_t *in,
                bool *found);
int sla_start(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_policy_t *p,
              const funnel_envelope_t *env, int64_t now_ms);

/* ---- sla_held.c: events held until their start -------------------------------------------- */

int sla_hold(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms, const bool *logged);
int sla_apply_held(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, inst_t *in,
                   int64_t now_ms, bool *applied);

/* ---- sla_recompute.c: the per-key log and recomputation ----------------------------------- */

int sla_log_event(funnel_sla_t *sla, const funnel_envelope_t *env, bool *late);
/* Drop what memory keeps of the log of (policy, key) after rows of it were deleted; of every
 * key after a rollback. */
void sla_log_last_forget(funnel_sla_t *sla, const char *policy, const char *key);
void sla_log_last_clear(funnel_sla_t *sla);
/* bit (V_*) when the row of an instance of policy that event_id starts or stops may stand for
 * that event's log row, which is then not written; 0 otherwise. */
int sla_log_claim(funnel_sla_t *sla, const char *policy, const char *event_id, int bit);
/* Writes the log rows of env no instance row claimed. */
int sla_log_flush(funnel_sla_t *sla, const funnel_envelope_t *env);
/* Whether memory knows sla_held has no row of (policy, key); what sla_hold tells it when it
 * holds one. */
bool sla_held_none(funnel_sla_t *sla, const char *policy, const char *key);
void sla_held_added(funnel_sla_t *sla, const char *policy, const char *key);
int sla_late_event(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                   int64_t now_ms, bool *late);

/* ---- sla_order.c: processing order ------------------------------------------------------- */

/* After an event (live or late): publishes the order violations it reveals for fifo policies. */
int sla_order_event(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                    int64_t now_ms);

/* ---- sla_retention.c: the horizon -------------------------------------------------------- */

int sla_watermark_load(funnel_sla_t *sla);
int sla_horizon_check(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env);
void sla_watermark_raise(funnel_sla_t *sla, int64_t t);
int64_t sla_prune_deadline(const funnel_sla_t *sla);
int sla_oldest_stop_load(funnel_sla_t *sla);
int64_t sla_idle_at(const inst_t *in);
void sla_idle_seen(funnel_sla_t *sla, const inst_t *in);
int sla_prune(funnel_sla_t *sla, funnel_router_t *router, int64_t now_ms);

/* ---- sla_quota.c: quota periods ----------------------------------------------------------- */

quota_state_t *sla_quota_state(funnel_sla_t *sla, const funnel_sla_quota_t *q, bool create);
int sla_quota_count(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms);
int sla_quota_run(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_quota_t *q,
                  int64_t now_ms);

#endif
