/* sla.c — the SLA engine (see sla.h for the contract).
 *
 * An instance is a row; what it does next is one number, `step`: 0 the warning, 1..L the
 * escalation levels, L+1..L+R the repeats of the last level. The time a step fires is derived
 * from the row (anchor, business time consumed, due time) and the policy version, and stored as
 * next_at so the heap can be rebuilt with one indexed scan. Firing a step emits its output with
 * the step's own time as occurred_at_ms and moves to the next step, so a step is never skipped:
 * after downtime they all come out at once, in order, with their original times. An event of
 * the instance's key first fires the steps due before it (steps_before), so a burst of events
 * that arrives after their steps were due publishes what the clock would have published. */
#include "sla.h"
#include "funnel/error.h"
#include "timerheap.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NONE        INT64_MAX /* no time: paused due, nothing scheduled */
#define LIVE_MAX    16        /* live instances of one key handled per event */
#define ID_BUF      (FUNNEL_ID_MAX + 1)
#define QUOTA_BATCH 64 /* periods closed per quota per timer pass */

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE sla_policy ("
    "  name TEXT NOT NULL, version INTEGER NOT NULL, hash INTEGER NOT NULL,"
    "  definition TEXT NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID;"
    "CREATE TABLE sla_instance ("
    "  id INTEGER PRIMARY KEY, policy TEXT NOT NULL, version INTEGER NOT NULL,"
    "  key TEXT NOT NULL, owner TEXT NOT NULL, state TEXT NOT NULL,"
    "  started_at INTEGER NOT NULL, anchor_at INTEGER NOT NULL, consumed_ms INTEGER NOT NULL,"
    "  due_at INTEGER, paused_at INTEGER, step INTEGER NOT NULL, next_at INTEGER,"
    "  acked_by TEXT, start_event TEXT NOT NULL, stopped_at INTEGER, on_time INTEGER,"
    "  late_ms INTEGER, stop_event TEXT);"
    "CREATE INDEX sla_instance_live ON sla_instance (key) WHERE state <> 'met';"
    "CREATE INDEX sla_instance_next ON sla_instance (next_at) WHERE next_at IS NOT NULL;"
    "CREATE TABLE sla_quota ("
    "  policy TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,"
    "  actual INTEGER NOT NULL, pace_done INTEGER NOT NULL DEFAULT 0,"
    "  closed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (policy, period_start)) WITHOUT ROWID;",
    /* 2: events that arrived before the start of their instance (see hold()), and the original
     * start time of each instance, which a reset does not move. Rows from before this step
     * take started_at, the best value they kept. */
    "ALTER TABLE sla_instance ADD COLUMN opened_at INTEGER;"
    "UPDATE sla_instance SET opened_at = started_at;"
    "CREATE TABLE sla_held ("
    "  id INTEGER PRIMARY KEY, policy TEXT NOT NULL, key TEXT NOT NULL,"
    "  occurred_at INTEGER NOT NULL, event_id TEXT NOT NULL, kinds INTEGER NOT NULL,"
    "  UNIQUE (policy, key, event_id));"
    "CREATE INDEX sla_held_key ON sla_held (policy, key, occurred_at);"
    "CREATE INDEX sla_held_age ON sla_held (occurred_at);",
    /* 3: every start, stop, reset, pause and resume of a (policy, key) that has had a start, so
     * an event arriving out of event-time order can recompute the key's instances (recompute()).
     * rank puts a start before the other events of the same millisecond, as a held event of that
     * time is applied after its start. Keys started before this step have no log: their late
     * events are applied as they come, as before (late_event()). */
    "CREATE TABLE sla_log ("
    "  policy TEXT NOT NULL, key TEXT NOT NULL, occurred_at INTEGER NOT NULL,"
    "  rank INTEGER NOT NULL, event_id TEXT NOT NULL, kinds INTEGER NOT NULL, owner TEXT,"
    "  PRIMARY KEY (policy, key, occurred_at, rank, event_id)) WITHOUT ROWID;"
    "CREATE INDEX sla_instance_key ON sla_instance (key, policy);"
    /* The highest sla_id a recomputation deleted: ids are never reused, so an acknowledgement
     * or an output naming a deleted instance never names another one. */
    "CREATE TABLE sla_deleted_max (id INTEGER NOT NULL);"
    "INSERT INTO sla_deleted_max VALUES (0);",
    /* 4: per clock of an instance (its start or a reset), the first step not yet published, so
     * a recomputation that replays a clock publishes what that clock has not (step_publish).
     * Rows from before this step know only their current clock: its steps before `step`. */
    "CREATE TABLE sla_fired ("
    "  id INTEGER NOT NULL, clock INTEGER NOT NULL, next_step INTEGER NOT NULL,"
    "  PRIMARY KEY (id, clock)) WITHOUT ROWID;"
    "INSERT INTO sla_fired SELECT id, started_at, step FROM sla_instance;",
    /* 5: per quota, the periods funneld has opened: from the first period of its first run
     * (since) to the end of the last one (through). A period in between that has no row yet is
     * created and reports, even when a later period got a row first (quota_ensure). Quotas from
     * before this step take the span of their rows. */
    "CREATE TABLE sla_quota_span ("
    "  policy TEXT PRIMARY KEY, since INTEGER NOT NULL, through INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO sla_quota_span SELECT policy, min(period_start), max(period_end) FROM sla_quota"
    "  GROUP BY policy;",
};

#define COLS                                                                                       \
    "id, policy, version, key, owner, state, started_at, anchor_at, consumed_ms, due_at,"          \
    " paused_at, step, next_at, acked_by, opened_at, start_event, stopped_at, on_time, late_ms,"   \
    " stop_event"

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
    S_QUOTA_ENSURE,
    S_QUOTA_OPEN,
    S_QUOTA_MARK,
    S_HOLD,
    S_HOLD_PRUNE,
    S_HELD,
    S_HELD_DROP,
    S_LOG_LAST,
    S_LOG_ADD,
    S_LOG_HELD,
    S_LOG_READ,
    S_LOG_FOREIGN,
    S_KEY_ROWS,
    S_DELETE,
    S_DELETED_MAX,
    S_HELD_CLEAR,
    S_FIRED_NEXT,
    S_FIRED_SET,
    S_FIRED_DROP,
    S_SPAN_GET,
    S_SPAN_SET,
    S_ID_ISSUED,
    S_COUNT_
};

static const char *const stmt_sql[S_COUNT_] = {
    [S_VERSIONS] = "SELECT name, version, definition FROM sla_policy ORDER BY name, version",
    [S_VERSION_ADD] = "INSERT INTO sla_policy (name, version, hash, definition) VALUES (?,?,?,?)",
    [S_VERSION_EXISTS] = "SELECT 1 FROM sla_policy WHERE name = ? AND version = ?",
    [S_INSERT] = "INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at,"
                 " anchor_at, consumed_ms, due_at, step, next_at, start_event, opened_at)"
                 " VALUES (max(coalesce((SELECT max(id) FROM sla_instance), 0),"
                 " (SELECT id FROM sla_deleted_max)) + 1,?,?,?,?,'open',?,?,0,?,?,?,?,?)",
    [S_LIVE] = "SELECT " COLS " FROM sla_instance WHERE key = ? AND state <> 'met'",
    [S_BY_ID] = "SELECT " COLS " FROM sla_instance WHERE id = ?",
    [S_UPDATE] = "UPDATE sla_instance SET state = ?, started_at = ?, anchor_at = ?,"
                 " consumed_ms = ?, due_at = ?, paused_at = ?, step = ?, next_at = ?,"
                 " acked_by = ? WHERE id = ?",
    [S_MET] = "UPDATE sla_instance SET state = 'met', next_at = NULL, stopped_at = ?,"
              " on_time = ?, late_ms = ?, stop_event = ? WHERE id = ?",
    [S_TIMERS] = "SELECT id, next_at FROM sla_instance WHERE next_at IS NOT NULL",
    [S_OPEN_COUNT] = "SELECT count(*) FROM sla_instance WHERE state <> 'met'",
    [S_QUOTA_COUNT] = "INSERT INTO sla_quota (policy, period_start, period_end, actual, closed)"
                      " VALUES (?,?,?,1,?) ON CONFLICT (policy, period_start)"
                      " DO UPDATE SET actual = actual + 1",
    [S_QUOTA_ENSURE] = "INSERT OR IGNORE INTO sla_quota (policy, period_start, period_end, actual)"
                       " VALUES (?,?,?,0)",
    [S_QUOTA_OPEN] = "SELECT period_start, period_end, actual, pace_done FROM sla_quota"
                     " WHERE policy = ? AND closed = 0 ORDER BY period_start LIMIT 64",
    [S_QUOTA_MARK] = "UPDATE sla_quota SET pace_done = ?, closed = ? WHERE policy = ? AND"
                     " period_start = ?",
    [S_HOLD] = "INSERT OR IGNORE INTO sla_held (policy, key, occurred_at, event_id, kinds)"
               " VALUES (?,?,?,?,?)",
    [S_HOLD_PRUNE] = "DELETE FROM sla_held WHERE id IN (SELECT id FROM sla_held"
                     " WHERE occurred_at < ? ORDER BY occurred_at LIMIT 16)",
    [S_HELD] = "SELECT id, occurred_at, event_id, kinds FROM sla_held WHERE policy = ? AND"
               " key = ? AND occurred_at >= ? ORDER BY occurred_at, event_id LIMIT 64",
    [S_HELD_DROP] = "DELETE FROM sla_held WHERE id = ?",
    [S_LOG_LAST] = "SELECT occurred_at, rank, event_id FROM sla_log WHERE policy = ? AND key = ?"
                   " ORDER BY occurred_at DESC, rank DESC, event_id DESC LIMIT 1",
    [S_LOG_ADD] = "INSERT OR IGNORE INTO sla_log (policy, key, occurred_at, rank, event_id, kinds,"
                  " owner) VALUES (?,?,?,?,?,?,?)",
    [S_LOG_HELD] = "INSERT OR IGNORE INTO sla_log (policy, key, occurred_at, rank, event_id, kinds)"
                   " SELECT policy, key, occurred_at, 1, event_id, kinds FROM sla_held"
                   " WHERE policy = ? AND key = ?",
    [S_LOG_READ] = "SELECT occurred_at, rank, event_id, kinds, owner FROM sla_log"
                   " WHERE policy = ? AND key = ? ORDER BY occurred_at, rank, event_id",
    [S_LOG_FOREIGN] = "SELECT 1 FROM sla_instance i WHERE i.key = ?2 AND i.policy = ?1 AND NOT"
                      " EXISTS (SELECT 1 FROM sla_log l WHERE l.policy = ?1 AND l.key = ?2 AND"
                      " l.rank = 0 AND l.event_id = i.start_event) LIMIT 1",
    [S_KEY_ROWS] = "SELECT " COLS " FROM sla_instance WHERE key = ? AND policy = ? ORDER BY id",
    [S_DELETE] = "DELETE FROM sla_instance WHERE id = ?",
    [S_HELD_CLEAR] = "DELETE FROM sla_held WHERE policy = ? AND key = ?",
    [S_DELETED_MAX] = "UPDATE sla_deleted_max SET id = max(id, ?)",
    [S_FIRED_NEXT] = "SELECT next_step FROM sla_fired WHERE id = ? AND clock = ?",
    [S_FIRED_SET] = "INSERT INTO sla_fired (id, clock, next_step) VALUES (?,?,?)"
                    " ON CONFLICT (id, clock) DO UPDATE SET"
                    " next_step = max(next_step, excluded.next_step)",
    [S_FIRED_DROP] = "DELETE FROM sla_fired WHERE id = ?",
    [S_ID_ISSUED] = "SELECT ?1 BETWEEN 1 AND max(coalesce((SELECT max(id) FROM sla_instance), 0),"
                    " (SELECT id FROM sla_deleted_max))",
    [S_SPAN_GET] = "SELECT since, through FROM sla_quota_span WHERE policy = ?",
    [S_SPAN_SET] = "INSERT INTO sla_quota_span (policy, since, through) VALUES (?1,?2,?3)"
                   " ON CONFLICT (policy) DO UPDATE SET through = max(through, ?3)",
};

typedef enum inst_state { ST_OPEN, ST_PAUSED, ST_MET } inst_state_t;
static const char *const state_names[] = {"open", "paused", "met"};

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
} inst_t;

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
    funnel_timerheap_t *heap;
    int64_t open; /* instances not met, for metrics; recounted at start and after a rollback */
    /* What a rollback may have made wrong in memory (D_*), so on_rollback, which runs for
     * every failed event, redoes only that instead of reloading all SLA state. */
    unsigned dirty;
    size_t n_vers_known; /* vers[0..n_vers_known) are committed; later ones may be undone */
    size_t version_loads, heap_rebuilds; /* for funnel_sla_reloads */
    quota_state_t *quotas;
    size_t n_quotas;
};

/* ---- statements ------------------------------------------------------------------------ */

static sqlite3_stmt *stmt(funnel_sla_t *sla, enum stmt_id id)
{
    sqlite3_stmt *s = sla->st[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no rows; 0 or FUNNEL_ESTORE. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

static void bind_time(sqlite3_stmt *s, int col, int64_t v)
{
    if (v == NONE)
        sqlite3_bind_null(s, col);
    else
        sqlite3_bind_int64(s, col, v);
}

static int64_t col_time(sqlite3_stmt *s, int col)
{
    return sqlite3_column_type(s, col) == SQLITE_NULL ? NONE : sqlite3_column_int64(s, col);
}

static void col_text(sqlite3_stmt *s, int col, char *out)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(out, ID_BUF, "%s", t ? (const char *)t : "");
}

static void inst_read(sqlite3_stmt *s, inst_t *in)
{
    const unsigned char *state = sqlite3_column_text(s, 5);
    in->id = sqlite3_column_int64(s, 0);
    col_text(s, 1, in->policy);
    in->version = sqlite3_column_int64(s, 2);
    col_text(s, 3, in->key);
    col_text(s, 4, in->owner);
    in->state = !state || !strcmp((const char *)state, "met") ? ST_MET
                : !strcmp((const char *)state, "paused")      ? ST_PAUSED
                                                              : ST_OPEN;
    in->started_at = sqlite3_column_int64(s, 6);
    in->anchor_at = sqlite3_column_int64(s, 7);
    in->consumed_ms = sqlite3_column_int64(s, 8);
    in->due_at = col_time(s, 9);
    in->paused_at = col_time(s, 10);
    in->step = sqlite3_column_int64(s, 11);
    in->next_at = col_time(s, 12);
    col_text(s, 13, in->acked_by);
    in->opened_at = sqlite3_column_int64(s, 14);
    col_text(s, 15, in->start_event);
    in->stopped_at = col_time(s, 16);
    in->on_time = sqlite3_column_int(s, 17) != 0;
    in->late_ms = sqlite3_column_int64(s, 18);
    col_text(s, 19, in->stop_event);
}

/* Writes the mutable columns of a live instance back. */
static int inst_write(funnel_sla_t *sla, const inst_t *in)
{
    sqlite3_stmt *s = stmt(sla, S_UPDATE);
    sqlite3_bind_text(s, 1, state_names[in->state], -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, in->started_at);
    sqlite3_bind_int64(s, 3, in->anchor_at);
    sqlite3_bind_int64(s, 4, in->consumed_ms);
    bind_time(s, 5, in->due_at);
    bind_time(s, 6, in->paused_at);
    sqlite3_bind_int64(s, 7, in->step);
    bind_time(s, 8, in->next_at);
    if (in->acked_by[0])
        sqlite3_bind_text(s, 9, in->acked_by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 10, in->id);
    int rc = step_done(s);
    if (!rc && in->next_at != NONE)
        rc = funnel_timerheap_push(sla->heap, in->next_at, in->id);
    return rc;
}

static int inst_load(funnel_sla_t *sla, int64_t id, inst_t *in)
{
    sqlite3_stmt *s = stmt(sla, S_BY_ID);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        inst_read(s, in);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FUNNEL_ENOTFOUND : FUNNEL_ESTORE;
}

/* Moves the open count by delta (see D_OPEN). */
static void open_add(funnel_sla_t *sla, int64_t delta)
{
    sla->open += delta;
    sla->dirty |= D_OPEN;
}

/* ---- policy versions ------------------------------------------------------------------- */

static void versions_clear(funnel_sla_t *sla)
{
    for (size_t i = 0; i < sla->n_vers; i++) {
        funnel_sla_policy_clear(&sla->vers[i].pol);
        funnel_calendar_destroy(&sla->vers[i].cal);
    }
    sla->n_vers = 0;
}

/* Compiles a stored definition and appends it to the cache. A definition this build cannot
 * read any more is logged and skipped: its instances then wait, untouched, for a fix. */
static int version_add(funnel_sla_t *sla, const char *definition, int64_t version)
{
    char err[256];
    if (sla->n_vers == sla->cap_vers) {
        size_t cap = sla->cap_vers ? sla->cap_vers * 2 : 8;
        pver_t *v = realloc(sla->vers, cap * sizeof *v);
        if (!v)
            return FUNNEL_ENOMEM;
        sla->vers = v;
        sla->cap_vers = cap;
    }
    pver_t *v = &sla->vers[sla->n_vers];
    memset(v, 0, sizeof *v);
    int rc = funnel_sla_policy_from_text(definition, &v->pol, err, sizeof err);
    if (!rc && (rc = funnel_calendar_new(&v->pol.calendar, &v->cal, err, sizeof err)))
        funnel_sla_policy_clear(&v->pol);
    if (rc == FUNNEL_ENOMEM)
        return rc;
    if (rc) {
        funnel_log_error(sla->log, "sla: stored policy version %lld is unreadable: %s",
                         (long long)version, err);
        return 0;
    }
    v->version = version;
    sla->n_vers++;
    return 0;
}

/* (Re)loads every stored version: at start and after a rollback undid a new one. */
static int versions_load(funnel_sla_t *sla)
{
    versions_clear(sla);
    sla->version_loads++;
    sqlite3_stmt *s = stmt(sla, S_VERSIONS);
    int rc, err = 0;
    while (!err && (rc = sqlite3_step(s)) == SQLITE_ROW)
        err = version_add(sla, (const char *)sqlite3_column_text(s, 2), sqlite3_column_int64(s, 1));
    sqlite3_reset(s);
    sla->n_vers_known = sla->n_vers;
    return err ? err : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* After a rollback: drops the versions cached since the last known commit whose rows are gone,
 * one primary-key lookup each (versions are added by config reloads: a handful). */
static int versions_check(funnel_sla_t *sla)
{
    size_t keep = sla->n_vers_known;
    int err = 0;
    for (size_t i = sla->n_vers_known; i < sla->n_vers; i++) {
        pver_t *v = &sla->vers[i];
        sqlite3_stmt *s = stmt(sla, S_VERSION_EXISTS);
        sqlite3_bind_text(s, 1, v->pol.name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, v->version);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE) {
            funnel_sla_policy_clear(&v->pol);
            funnel_calendar_destroy(&v->cal);
        } else {
            err = rc == SQLITE_ROW ? err : FUNNEL_ESTORE; /* kept: checked again next time */
            sla->vers[keep++] = *v;
        }
    }
    sla->n_vers = keep;
    return err;
}

static pver_t *version_find(funnel_sla_t *sla, const char *name, int64_t version)
{
    for (size_t i = 0; i < sla->n_vers; i++)
        if (sla->vers[i].version == version && strcmp(sla->vers[i].pol.name, name) == 0)
            return &sla->vers[i];
    return NULL;
}

/* The version new instances of p start under: the latest stored one when its definition is
 * p's, else a new version row (inside the caller's transaction). */
static int version_current(funnel_sla_t *sla, const funnel_sla_policy_t *p, pver_t **out)
{
    pver_t *latest = NULL;
    for (size_t i = 0; i < sla->n_vers; i++)
        if (strcmp(sla->vers[i].pol.name, p->name) == 0 &&
            (!latest || sla->vers[i].version > latest->version))
            latest = &sla->vers[i];
    if (latest && latest->pol.hash == p->hash) {
        *out = latest;
        return 0;
    }
    int64_t version = latest ? latest->version + 1 : 1;
    sqlite3_stmt *s = stmt(sla, S_VERSION_ADD);
    sqlite3_bind_text(s, 1, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, version);
    sqlite3_bind_int64(s, 3, (int64_t)p->hash);
    sqlite3_bind_text(s, 4, p->definition, -1, SQLITE_STATIC);
    size_t before = sla->n_vers;
    int rc = step_done(s);
    if (!rc)
        rc = version_add(sla, p->definition, version);
    if (!rc && sla->n_vers == before)
        rc = FUNNEL_EINVAL; /* the definition does not read back: a bug, refuse the event */
    if (!rc) {
        *out = &sla->vers[sla->n_vers - 1];
        funnel_log_info(sla->log, "sla: policy %s version %lld in force for new instances", p->name,
                        (long long)version);
    }
    return rc;
}

/* ---- steps ---------------------------------------------------------------------------- */

static int64_t warn_lead(const funnel_sla_policy_t *p)
{
    return p->warn_pct ? p->target_ms * p->warn_pct / 100 : p->warn_ms;
}

static int64_t first_step(const funnel_sla_policy_t *p)
{
    return warn_lead(p) > 0 ? 0 : 1;
}

/* Business time on the clock at which step fires, counted from the start of the clock: the
 * warning before the target, a level or repeat after it. */
static int64_t step_offset(const funnel_sla_policy_t *p, int64_t step)
{
    int64_t levels = (int64_t)p->n_levels;
    if (step == 0)
        return p->target_ms - warn_lead(p);
    if (step <= levels)
        return p->target_ms + p->levels[step - 1].after_ms;
    return p->target_ms + p->levels[levels - 1].after_ms + (step - levels) * p->repeat_every_ms;
}

/* When step fires for this instance, NONE when it never does (paused, acknowledged, past the
 * last repeat). Offsets are business time on the version's calendar, walked from the running
 * clock (anchor_at, consumed_ms) rather than from due_at: a pause after the due time keeps
 * due_at (inst_schedule) but still stops the clock the levels count on. */
static int64_t step_at(pver_t *v, const inst_t *in, int64_t step)
{
    const funnel_sla_policy_t *p = &v->pol;
    if (in->state != ST_OPEN || in->acked_by[0] || step > (int64_t)p->n_levels + p->repeat_count)
        return NONE;
    int64_t left = step_offset(p, step) - in->consumed_ms;
    return funnel_calendar_add(v->cal, in->anchor_at, left > 0 ? left : 0);
}

/* Recomputes the due time from the running clock, and the next step's time. Once the clock has
 * used the whole target the instance is due and due_at never moves again: a pause after the due
 * time and its resume leave it where the escalations said it was. */
static void inst_schedule(pver_t *v, inst_t *in)
{
    int64_t left = v->pol.target_ms - in->consumed_ms;
    if (left > 0)
        in->due_at = funnel_calendar_add(v->cal, in->anchor_at, left);
    in->next_at = step_at(v, in, in->step);
}

/* Called for each step an instance passes (steps_before), before it moves to the next one. */
typedef int (*step_fn)(void *arg, pver_t *v, const inst_t *in);

/* Passes the instance over every step due before t (event time), oldest first, calling fn for
 * each, so the steps between two events of a key come out as if the clock had run between them,
 * however the events were batched. Returns fn's first error. */
static int steps_before(pver_t *v, inst_t *in, int64_t t, step_fn fn, void *arg)
{
    int rc = 0;
    while (!rc && in->next_at != NONE && in->next_at < t) {
        rc = fn(arg, v, in);
        in->step++;
        in->next_at = step_at(v, in, in->step);
    }
    return rc;
}

/* ---- outputs --------------------------------------------------------------------------- */

/* Fills the envelope and SlaRef common to every instance output. */
static void envelope_init(funnel_envelope_t *env, Funnel__V1__SlaRef *ref, char *sla_id,
                          char *event_id, const inst_t *in, const char *suffix, int64_t at)
{
    funnel__v1__envelope__init(env);
    funnel__v1__sla_ref__init(ref);
    snprintf(sla_id, 24, "%" PRId64, in->id);
    snprintf(event_id, 96, "sla-%" PRId64 "-%s-%" PRId64, in->id, suffix, at);
    env->event_id = event_id;
    env->occurred_at_ms = at;
    env->source = "funneld";
    ref->sla_id = sla_id;
    ref->policy = (char *)in->policy;
    ref->policy_version = (int32_t)in->version;
    ref->key = (char *)in->key;
    ref->started_at_ms = in->started_at;
    ref->due_at_ms = in->due_at == NONE ? 0 : in->due_at;
    ref->owner = (char *)in->owner;
}

/* Emits step in->step of an instance, which came due at `at`. */
static int emit_step(funnel_router_t *router, pver_t *v, const inst_t *in, int64_t at,
                     int64_t now_ms)
{
    funnel_envelope_t env;
    Funnel__V1__SlaRef ref;
    char sla_id[24], event_id[96], suffix[32];
    int64_t levels = (int64_t)v->pol.n_levels;
    snprintf(suffix, sizeof suffix, "s%" PRId64, in->step);
    envelope_init(&env, &ref, sla_id, event_id, in, suffix, at);
    if (in->step == 0) {
        Funnel__V1__SlaWarning w;
        funnel__v1__sla_warning__init(&w);
        w.sla = &ref;
        env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_WARNING;
        env.sla_warning = &w;
        return funnel_router_emit(router, "sla.warning", &env, now_ms);
    }
    Funnel__V1__SlaEscalation e;
    funnel__v1__sla_escalation__init(&e);
    int64_t level = in->step <= levels ? in->step : levels;
    e.sla = &ref;
    e.level = (int32_t)level;
    e.notify = v->pol.levels[level - 1].notify;
    e.repeat = (int32_t)(in->step - level);
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_ESCALATION;
    env.sla_escalation = &e;
    return funnel_router_emit(router, "sla.escalation", &env, now_ms);
}

/* The first step of the clock (instance id, clock start) not yet published; 0 for none. */
static int fired_next(funnel_sla_t *sla, int64_t id, int64_t clock, int64_t *next)
{
    sqlite3_stmt *s = stmt(sla, S_FIRED_NEXT);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, clock);
    int rc = sqlite3_step(s);
    *next = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Publishes step in->step, due at in->next_at, unless its clock already did (a recomputation
 * passes over steps the live path published), and records it. */
static int step_publish(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, const inst_t *in,
                        int64_t now_ms)
{
    int64_t next;
    int rc = fired_next(sla, in->id, in->started_at, &next);
    if (rc || in->step < next)
        return rc;
    if ((rc = emit_step(router, v, in, in->next_at, now_ms)))
        return rc;
    sqlite3_stmt *s = stmt(sla, S_FIRED_SET);
    sqlite3_bind_int64(s, 1, in->id);
    sqlite3_bind_int64(s, 2, in->started_at);
    sqlite3_bind_int64(s, 3, in->step + 1);
    return step_done(s);
}

/* steps_before's callback on the live path: publish at once. */
typedef struct fire_ctx {
    funnel_sla_t *sla;
    funnel_router_t *router;
    int64_t now_ms;
    int fired; /* steps passed */
} fire_ctx_t;

static int fire_step(void *arg, pver_t *v, const inst_t *in)
{
    fire_ctx_t *c = arg;
    c->fired++;
    return step_publish(c->sla, c->router, v, in, c->now_ms);
}

/* ---- reacting to events ------------------------------------------------------------------ */

/* What an event is to one policy: a bit per list it matches (stop, reset, pause, resume). The
 * kinds, not the envelope, are what a held event keeps, so a held event and a live one run the
 * same code (inst_apply). */
enum { K_STOP = 1, K_RESET = 2, K_PAUSE = 4, K_RESUME = 8 };

static int kinds_of(const funnel_sla_policy_t *p, const funnel_envelope_t *env)
{
    return (funnel_sla_match_any(&p->stop, env) ? K_STOP : 0) |
           (funnel_sla_match_any(&p->reset, env) ? K_RESET : 0) |
           (funnel_sla_match_any(&p->pause, env) ? K_PAUSE : 0) |
           (funnel_sla_match_any(&p->resume, env) ? K_RESUME : 0);
}

/* What inst_change did to an instance. */
enum { CH_NONE, CH_WRITE, CH_MET };

/* Applies a stop, reset, pause or resume (kinds, see kinds_of) that occurred at t to a live
 * instance of version v, in memory only, so the live path (inst_apply) and a recomputation
 * (recompute) share every rule. A stop meets the instance, on time when it occurred (or the
 * clock was paused) at or before the due time, whenever it arrives; lateness is the business
 * time the clock ran past the target. Returns what the caller must write. */
static int inst_change(pver_t *v, inst_t *in, int kinds, int64_t t, const char *event_id)
{
    const funnel_sla_policy_t *p = &v->pol;
    if (kinds & K_STOP) {
        /* While paused the clock stands at the pause: a stop then counts from there. */
        int64_t end = in->state == ST_PAUSED && in->paused_at < t ? in->paused_at : t;
        int64_t used = in->consumed_ms + funnel_calendar_between(v->cal, in->anchor_at, end);
        /* On time iff at or before the due time, even when no business time passed after it
         * (a stop at 19:00 after a due time of 18:00 is late by 0 business ms). */
        in->on_time = end <= in->due_at;
        in->late_ms = in->on_time || used <= p->target_ms ? 0 : used - p->target_ms;
        in->stopped_at = t;
        snprintf(in->stop_event, sizeof in->stop_event, "%s", event_id);
        in->state = ST_MET; /* held events after the stop are not this instance's (apply_held) */
        in->next_at = NONE;
        return CH_MET;
    }
    if (kinds & K_RESET) {
        if (t < in->started_at)
            return CH_NONE; /* older than the clock it would restart */
        in->state = ST_OPEN;
        in->started_at = in->anchor_at = t;
        in->consumed_ms = 0;
        in->paused_at = NONE;
        in->acked_by[0] = '\0';
        in->step = first_step(p);
    } else if ((kinds & K_PAUSE) && in->state == ST_OPEN) {
        t = t > in->anchor_at ? t : in->anchor_at;
        in->consumed_ms += funnel_calendar_between(v->cal, in->anchor_at, t);
        in->state = ST_PAUSED;
        in->paused_at = t;
        in->next_at = NONE;
        return CH_WRITE;
    } else if ((kinds & K_RESUME) && in->state == ST_PAUSED) {
        in->state = ST_OPEN;
        in->anchor_at = t > in->paused_at ? t : in->paused_at;
        in->paused_at = NONE;
    } else {
        return CH_NONE;
    }
    inst_schedule(v, in);
    return CH_WRITE;
}

/* Stores the met columns inst_change filled in. `first` says the instance was live until now:
 * only then is sla.met published (once per instance; a later correction of a met instance
 * updates the row, not the subscribers) and the open count lowered. */
static int inst_met(funnel_sla_t *sla, funnel_router_t *router, const inst_t *in, bool first,
                    int64_t now_ms)
{
    sqlite3_stmt *s = stmt(sla, S_MET);
    sqlite3_bind_int64(s, 1, in->stopped_at);
    sqlite3_bind_int(s, 2, in->on_time);
    sqlite3_bind_int64(s, 3, in->late_ms);
    sqlite3_bind_text(s, 4, in->stop_event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, in->id);
    int rc = step_done(s);
    if (rc || !first)
        return rc;
    open_add(sla, -1);
    funnel_envelope_t env;
    Funnel__V1__SlaRef ref;
    Funnel__V1__SlaMet met;
    char sla_id[24], out_id[96];
    envelope_init(&env, &ref, sla_id, out_id, in, "met", in->stopped_at);
    funnel__v1__sla_met__init(&met);
    met.sla = &ref;
    met.on_time = in->on_time;
    met.late_ms = in->late_ms;
    met.stop_event_id = (char *)in->stop_event;
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_MET;
    env.sla_met = &met;
    return funnel_router_emit(router, "sla.met", &env, now_ms);
}

/* Applies an event (kinds, see kinds_of) that occurred at t to one live instance of its version
 * and stores the result. The steps that came due before t are published first, with their own
 * times: the event may arrive long after them, in one batch with the events before it, before
 * a timer pass could fire them. */
static int inst_apply(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, inst_t *in, int kinds,
                      int64_t t, const char *event_id, int64_t now_ms)
{
    fire_ctx_t fc = {sla, router, now_ms, 0};
    int rc = steps_before(v, in, t, fire_step, &fc);
    int ch = rc ? CH_NONE : inst_change(v, in, kinds, t, event_id);
    if (!rc && (ch == CH_WRITE || (ch == CH_NONE && fc.fired)))
        rc = inst_write(sla, in);
    return !rc && ch == CH_MET ? inst_met(sla, router, in, true, now_ms) : rc;
}

/* Reads the live instances of one key (bounded), so rows can be updated after the scan. */
static int live_read(funnel_sla_t *sla, const char *key, inst_t *out, size_t *n)
{
    sqlite3_stmt *s = stmt(sla, S_LIVE);
    int rc;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    *n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < LIVE_MAX)
        inst_read(s, &out[(*n)++]);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Whether an event that occurred at t belongs to a live instance: one opened at or before t.
 * An event from before an instance's start is not that instance's, whatever the arrival order. */
static bool inst_takes(const inst_t *in, int64_t t)
{
    return in->opened_at <= t;
}

/* Every live instance keyed by a field of this event and opened by the time it occurred gets
 * the event. Key fields are those of the stored versions (only they have instances); each is
 * looked up once. */
static int key_events(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                      int64_t now_ms)
{
    inst_t *live = malloc(LIVE_MAX * sizeof *live);
    int rc = live ? 0 : FUNNEL_ENOMEM;
    for (size_t i = 0; !rc && i < sla->n_vers; i++) {
        const char *field = sla->vers[i].pol.key;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(sla->vers[j].pol.key, field) == 0;
        char buf[64];
        const char *key = seen ? "" : funnel_sla_field(env, field, buf, sizeof buf);
        size_t n = 0;
        if (!*key || (rc = live_read(sla, key, live, &n)))
            continue;
        for (size_t k = 0; !rc && k < n; k++) {
            pver_t *v = version_find(sla, live[k].policy, live[k].version);
            int kinds = v ? kinds_of(&v->pol, env) : 0;
            if (kinds && strcmp(v->pol.key, field) == 0 &&
                inst_takes(&live[k], env->occurred_at_ms))
                rc = inst_apply(sla, router, v, &live[k], kinds, env->occurred_at_ms, env->event_id,
                                now_ms);
        }
    }
    free(live);
    return rc;
}

/* Keeps the event for each configured policy it is a stop, reset, pause or resume of when no
 * live instance of that policy and key takes it (inst_takes): its start may still arrive, and
 * apply_held then gives it to that instance in event-time order. Runs before key_events, so a
 * stop that meets an instance is not also held. A repeat (the same event_id, e.g. a batch run
 * again) changes nothing.
 *
 * Retention: most such events never get a start (a contact of a lead that was never qualified),
 * so keeping them all would grow without bound. A held event is dropped once it occurred more
 * than FUNNEL_SLA_HOLD_MS before the arrival time now_ms; each hold drops a few of the oldest,
 * which keeps the table at about the retention's worth of traffic without a timer. A start that
 * arrives later than that after its stop opens an instance the stop no longer reaches. */
static int hold(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms)
{
    inst_t *live = malloc(LIVE_MAX * sizeof *live);
    int rc = live ? 0 : FUNNEL_ENOMEM;
    int64_t t = env->occurred_at_ms, horizon = now_ms - FUNNEL_SLA_HOLD_MS;
    bool held = false;
    for (size_t i = 0; !rc && i < sla->cfg->n_policies; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        int kinds = kinds_of(p, env);
        char buf[64];
        const char *key = kinds ? funnel_sla_field(env, p->key, buf, sizeof buf) : "";
        size_t n = 0;
        bool taken = false;
        if (!*key || strlen(key) > FUNNEL_ID_MAX || t < horizon ||
            (rc = live_read(sla, key, live, &n)))
            continue;
        for (size_t k = 0; k < n && !taken; k++)
            taken = strcmp(live[k].policy, p->name) == 0 && inst_takes(&live[k], t);
        if (taken)
            continue;
        sqlite3_stmt *s = stmt(sla, S_HOLD);
        sqlite3_bind_text(s, 1, p->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, t);
        sqlite3_bind_text(s, 4, env->event_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 5, kinds);
        rc = step_done(s);
        held = true;
    }
    free(live);
    if (!rc && held) {
        sqlite3_stmt *s = stmt(sla, S_HOLD_PRUNE);
        sqlite3_bind_int64(s, 1, horizon);
        rc = step_done(s);
    }
    return rc;
}

/* One held event, as read before the rows it names are changed. */
typedef struct held {
    int64_t id, occurred_at;
    int kinds;
    char event_id[ID_BUF];
} held_t;

#define HELD_BATCH 64 /* the LIMIT of S_HELD */

/* Gives a new instance the events held for its policy and key that occurred at or after its
 * start, in event-time order (ties by event_id), as if they had arrived after it; each one
 * applied leaves the table. It stops at a stop: later events belong to a later instance and
 * stay held. Sets *applied when at least one event was applied. */
static int apply_held(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, inst_t *in,
                      int64_t now_ms, bool *applied)
{
    held_t *batch = malloc(HELD_BATCH * sizeof *batch);
    int rc = batch ? 0 : FUNNEL_ENOMEM;
    size_t n = HELD_BATCH;
    *applied = false;
    while (!rc && n == HELD_BATCH && in->state != ST_MET) {
        sqlite3_stmt *s = stmt(sla, S_HELD);
        sqlite3_bind_text(s, 1, in->policy, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, in->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, in->opened_at);
        for (n = 0; n < HELD_BATCH && (rc = sqlite3_step(s)) == SQLITE_ROW; n++) {
            batch[n].id = sqlite3_column_int64(s, 0);
            batch[n].occurred_at = sqlite3_column_int64(s, 1);
            col_text(s, 2, batch[n].event_id);
            batch[n].kinds = sqlite3_column_int(s, 3);
        }
        sqlite3_reset(s);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
        for (size_t i = 0; !rc && i < n && in->state != ST_MET; i++) {
            rc = inst_apply(sla, router, v, in, batch[i].kinds, batch[i].occurred_at,
                            batch[i].event_id, now_ms);
            s = stmt(sla, S_HELD_DROP);
            sqlite3_bind_int64(s, 1, batch[i].id);
            rc = rc ? rc : step_done(s);
            *applied = true;
        }
    }
    free(batch);
    return rc;
}

/* A new instance of version v for key, opened by the start event_id that occurred at t; the
 * row is not written yet (inst_insert). */
static void inst_fresh(inst_t *in, pver_t *v, const char *key, const char *owner, int64_t t,
                       const char *event_id)
{
    *in = (inst_t){.state = ST_OPEN, .version = v->version, .paused_at = NONE, .stopped_at = NONE};
    snprintf(in->policy, sizeof in->policy, "%s", v->pol.name);
    snprintf(in->key, sizeof in->key, "%s", key);
    snprintf(in->owner, sizeof in->owner, "%.128s", owner);
    snprintf(in->start_event, sizeof in->start_event, "%s", event_id);
    in->started_at = in->anchor_at = in->opened_at = t;
    in->step = first_step(&v->pol);
    inst_schedule(v, in);
}

/* Inserts a fresh instance as an open row (counted open) and sets its id; arms no timer. */
static int inst_insert(funnel_sla_t *sla, inst_t *in)
{
    sqlite3_stmt *s = stmt(sla, S_INSERT);
    sqlite3_bind_text(s, 1, in->policy, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, in->version);
    sqlite3_bind_text(s, 3, in->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, in->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, in->started_at);
    sqlite3_bind_int64(s, 6, in->anchor_at);
    bind_time(s, 7, in->due_at);
    sqlite3_bind_int64(s, 8, in->step);
    bind_time(s, 9, in->next_at);
    sqlite3_bind_text(s, 10, in->start_event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, in->opened_at);
    int rc = step_done(s);
    if (!rc) {
        in->id = sqlite3_last_insert_rowid(sla->db);
        open_add(sla, 1);
    }
    return rc;
}

/* Starts an instance of p for this event unless one is already live for its key, then lets it
 * catch up on the events held for it. */
static int start(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_policy_t *p,
                 const funnel_envelope_t *env, int64_t now_ms)
{
    char kbuf[64], obuf[64];
    const char *key = funnel_sla_field(env, p->key, kbuf, sizeof kbuf);
    const char *owner = funnel_sla_field(env, p->owner, obuf, sizeof obuf);
    inst_t *live = malloc(LIVE_MAX * sizeof *live);
    size_t n = 0;
    pver_t *v = NULL;
    bool applied = false;
    int rc = live ? 0 : FUNNEL_ENOMEM;
    if (rc || !*key || strlen(key) > FUNNEL_ID_MAX || (rc = live_read(sla, key, live, &n)))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (strcmp(live[i].policy, p->name) == 0)
            goto out; /* a repeated start does not restart the clock; reset topics do */
    if ((rc = version_current(sla, p, &v)))
        goto out;
    inst_t in;
    inst_fresh(&in, v, key, owner, env->occurred_at_ms, env->event_id);
    if ((rc = inst_insert(sla, &in)))
        goto out;
    /* Every held event applied was written through inst_write, which arms the timer. */
    rc = apply_held(sla, router, v, &in, now_ms, &applied);
    if (!rc && !applied && in.next_at != NONE)
        rc = funnel_timerheap_push(sla->heap, in.next_at, in.id);
out:
    free(live);
    return rc;
}

/* ---- out-of-order arrival: the per-key log and recomputation ----------------------------- */

enum { RANK_START = 0, RANK_OTHER = 1 }; /* sla_log.rank: a start first within a millisecond */

/* The key of p this event concerns, with what it is to p (a start, and/or kinds), or NULL. */
static const char *concern(const funnel_sla_policy_t *p, const funnel_envelope_t *env, char *buf,
                           size_t len, bool *starts, int *kinds)
{
    *starts = funnel_sla_match(&p->start, env);
    *kinds = kinds_of(p, env);
    const char *key = *starts || *kinds ? funnel_sla_field(env, p->key, buf, len) : "";
    return *key && strlen(key) <= FUNNEL_ID_MAX ? key : NULL;
}

static void bind_pk(sqlite3_stmt *s, const char *policy, const char *key)
{
    sqlite3_bind_text(s, 1, policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
}

/* Whether (policy, key) has an instance row whose start is not in the log: one started before
 * the log existed (migration 3). Such a key cannot be recomputed from its log. */
static int log_foreign(funnel_sla_t *sla, const char *policy, const char *key, bool *foreign)
{
    sqlite3_stmt *s = stmt(sla, S_LOG_FOREIGN);
    bind_pk(s, policy, key);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    *foreign = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

static int log_add(funnel_sla_t *sla, const char *policy, const char *key,
                   const funnel_envelope_t *env, int rank, int kinds, const char *owner)
{
    sqlite3_stmt *s = stmt(sla, S_LOG_ADD);
    bind_pk(s, policy, key);
    sqlite3_bind_int64(s, 3, env->occurred_at_ms);
    sqlite3_bind_int(s, 4, rank);
    sqlite3_bind_text(s, 5, env->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 6, kinds);
    if (owner)
        sqlite3_bind_text(s, 7, owner, -1, SQLITE_STATIC);
    return step_done(s);
}

/* Records the event in the log of every (policy, key) it concerns that has had a start (or that
 * it starts: the events held for that key join the log then), and tells whether it arrived out
 * of event-time order for one of them: the log already holds a later event, by (occurred_at,
 * rank, event_id). Then the live path, which applies events in arrival order, would be wrong,
 * and the caller recomputes instead (late_event). */
static int log_event(funnel_sla_t *sla, const funnel_envelope_t *env, bool *late)
{
    int rc = 0;
    *late = false;
    for (size_t i = 0; !rc && i < sla->cfg->n_policies; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        char kbuf[64], obuf[64];
        bool starts;
        int kinds;
        const char *key = concern(p, env, kbuf, sizeof kbuf, &starts, &kinds);
        if (!key)
            continue;
        sqlite3_stmt *s = stmt(sla, S_LOG_LAST);
        bind_pk(s, p->name, key);
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            int64_t at = sqlite3_column_int64(s, 0);
            int rank = sqlite3_column_int(s, 1), my_rank = starts ? RANK_START : RANK_OTHER;
            const char *id = (const char *)sqlite3_column_text(s, 2);
            *late = *late || at > env->occurred_at_ms ||
                    (at == env->occurred_at_ms &&
                     (rank > my_rank || (rank == my_rank && strcmp(id, env->event_id) > 0)));
        }
        sqlite3_reset(s);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            return FUNNEL_ESTORE;
        if (step == SQLITE_DONE && !starts)
            continue; /* never started: hold() keeps it for the start */
        if (step == SQLITE_DONE) {
            s = stmt(sla, S_LOG_HELD);
            bind_pk(s, p->name, key);
            rc = step_done(s);
        }
        if (!rc && starts)
            rc = log_add(sla, p->name, key, env, RANK_START, 0,
                         funnel_sla_field(env, p->owner, obuf, sizeof obuf));
        if (!rc && kinds)
            rc = log_add(sla, p->name, key, env, RANK_OTHER, kinds, NULL);
    }
    return rc;
}

/* One log row, as read. */
typedef struct logrow {
    int64_t at;
    int rank, kinds;
    bool untaken; /* set by replay: no live instance took it */
    char event_id[ID_BUF];
    char owner[ID_BUF];
} logrow_t;

/* Appends to a growing array of elements of size `size`; NULL when out of memory. */
static void *grow(void **arr, size_t *n, size_t *cap, size_t size)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 8;
        void *a = realloc(*arr, c * size);
        if (!a)
            return NULL;
        *arr = a;
        *cap = c;
    }
    return (char *)*arr + (*n)++ * size;
}

/* Reads the whole log of (policy, key) in event-time order. */
static int log_read(funnel_sla_t *sla, const char *policy, const char *key, logrow_t **out,
                    size_t *n)
{
    size_t cap = 0;
    int rc;
    sqlite3_stmt *s = stmt(sla, S_LOG_READ);
    bind_pk(s, policy, key);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        logrow_t *r = grow((void **)out, n, &cap, sizeof *r);
        if (!r)
            break;
        r->at = sqlite3_column_int64(s, 0);
        r->untaken = false;
        r->rank = sqlite3_column_int(s, 1);
        col_text(s, 2, r->event_id);
        r->kinds = sqlite3_column_int(s, 3);
        col_text(s, 4, r->owner);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? FUNNEL_ENOMEM : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Reads every instance row of (policy, key), met ones included. */
static int rows_read(funnel_sla_t *sla, const char *policy, const char *key, inst_t **out,
                     size_t *n)
{
    size_t cap = 0;
    int rc;
    sqlite3_stmt *s = stmt(sla, S_KEY_ROWS);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, policy, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        inst_t *r = grow((void **)out, n, &cap, sizeof *r);
        if (!r)
            break;
        inst_read(s, r);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? FUNNEL_ENOMEM : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

static inst_t *row_by_start(inst_t *rows, size_t n, const char *start_event)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].start_event, start_event) == 0)
            return &rows[i];
    return NULL;
}

/* A step a replay passed: instance res[res] as it was at that step, published (unless its clock
 * already did) once the instance has its row (recompute). */
typedef struct passed {
    size_t res;
    inst_t in;
} passed_t;

typedef struct replay_out {
    inst_t *res; /* the instances, in start order; id 0: no row yet */
    size_t n_res, cap_res;
    passed_t *passed; /* the steps due between events, in event-time order */
    size_t n_passed, cap_passed;
} replay_out_t;

/* steps_before's callback in a replay: keep the step for later. */
static int pass_step(void *arg, pver_t *v, const inst_t *in)
{
    (void)v;
    replay_out_t *o = arg;
    passed_t *ps = grow((void **)&o->passed, &o->n_passed, &o->cap_passed, sizeof *ps);
    if (!ps)
        return FUNNEL_ENOMEM;
    ps->res = o->n_res - 1;
    ps->in = *in;
    return 0;
}

/* Replays the log in event-time order as the live path would have seen it in that order: a
 * start opens an instance unless one is live (a repeated start), every other event goes to the
 * live instance, if any, after the steps due before it (inst_apply). An instance whose start
 * already has a row keeps the row's id, version and owner (its identity is policy, key and
 * start event, whatever the arrival order); a new one starts under p's current version. */
static int replay(funnel_sla_t *sla, const funnel_sla_policy_t *p, const char *key, logrow_t *log,
                  size_t n_log, inst_t *rows, size_t n_rows, replay_out_t *o)
{
    inst_t *cur = NULL;
    pver_t *v = NULL;
    for (size_t i = 0; i < n_log; i++) {
        logrow_t *e = &log[i];
        if (e->rank == RANK_OTHER) {
            e->untaken = !cur || cur->state == ST_MET;
            int rc = e->untaken ? 0 : steps_before(v, cur, e->at, pass_step, o);
            if (rc)
                return rc;
            if (!e->untaken)
                inst_change(v, cur, e->kinds, e->at, e->event_id);
            continue;
        }
        if (cur && cur->state != ST_MET)
            continue; /* a repeated start does not restart the clock */
        const inst_t *row = row_by_start(rows, n_rows, e->event_id);
        int rc = row ? 0 : version_current(sla, p, &v);
        if (row && !(v = version_find(sla, row->policy, row->version)))
            rc = FUNNEL_EINVAL; /* checked by the caller: not reached */
        if (rc || !(cur = grow((void **)&o->res, &o->n_res, &o->cap_res, sizeof *cur)))
            return rc ? rc : FUNNEL_ENOMEM;
        inst_fresh(cur, v, key, row ? row->owner : e->owner, e->at, e->event_id);
        cur->id = row ? row->id : 0;
    }
    return 0;
}

/* Publishes a step the replay passed, unless its clock published it already or the row's
 * acknowledgement, kept while the clock is the same, silenced it. */
static int passed_publish(funnel_sla_t *sla, funnel_router_t *router, passed_t *ps,
                          const inst_t *in, const inst_t *row, int64_t now_ms)
{
    ps->in.id = in->id;
    if (row && row->acked_by[0] && row->started_at == ps->in.started_at)
        return 0;
    return step_publish(sla, router, version_find(sla, in->policy, in->version), &ps->in, now_ms);
}

/* Stores one recomputed instance over its row (an inserted one when new). Steps already
 * published are not published again: the instance continues after the last step its clock
 * (started_at) published, keeps the row's acknowledgement while the clock is the same, and the
 * steps after it come at their recomputed times, at once if already due. sla.met goes out only
 * when the instance was not met before. */
static int store_one(funnel_sla_t *sla, funnel_router_t *router, inst_t *in, const inst_t *row,
                     int64_t now_ms)
{
    pver_t *v = version_find(sla, in->policy, in->version);
    bool was_live = !row || row->state != ST_MET;
    int64_t next;
    int rc = fired_next(sla, in->id, in->started_at, &next);
    in->step = in->step > next ? in->step : next;
    if (row && row->started_at == in->started_at)
        snprintf(in->acked_by, sizeof in->acked_by, "%s", row->acked_by);
    in->next_at = step_at(v, in, in->step);
    rc = rc ? rc : inst_write(sla, in);
    if (!rc && in->state == ST_MET)
        rc = inst_met(sla, router, in, was_live, now_ms);
    else if (!was_live)
        open_add(sla, 1);
    return rc;
}

/* Makes the events held for (policy, key) those the replay left untaken, as event-time order
 * would have held them (within the retention, see hold()). */
static int held_rebuild(funnel_sla_t *sla, const char *policy, const char *key, const logrow_t *log,
                        size_t n_log, int64_t now_ms)
{
    sqlite3_stmt *s = stmt(sla, S_HELD_CLEAR);
    bind_pk(s, policy, key);
    int rc = step_done(s);
    for (size_t i = 0; !rc && i < n_log; i++) {
        if (!log[i].untaken || log[i].at < now_ms - FUNNEL_SLA_HOLD_MS)
            continue;
        s = stmt(sla, S_HOLD);
        bind_pk(s, policy, key);
        sqlite3_bind_int64(s, 3, log[i].at);
        sqlite3_bind_text(s, 4, log[i].event_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 5, log[i].kinds);
        rc = step_done(s);
    }
    return rc;
}

/* Deletes an instance row a recomputation no longer has, with its published-steps record; its
 * id is never given again. */
static int row_delete(funnel_sla_t *sla, const inst_t *row)
{
    static const enum stmt_id ids[] = {S_DELETE, S_FIRED_DROP, S_DELETED_MAX};
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof ids / sizeof ids[0]; i++) {
        sqlite3_stmt *s = stmt(sla, ids[i]);
        sqlite3_bind_int64(s, 1, row->id);
        rc = step_done(s);
    }
    if (!rc)
        open_add(sla, -(int64_t)(row->state != ST_MET));
    return rc;
}

/* Rebuilds the instances of (p, key) from its log after an event arrived out of order: rows
 * the replay no longer has (a start that an earlier one, arrived late, turns into a repeated
 * start) are deleted, the others rewritten, new ones inserted. Outputs already published stay
 * published; heap entries of changed or deleted rows go stale and are dropped when popped. */
static int recompute(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_policy_t *p,
                     const char *key, int64_t now_ms)
{
    logrow_t *log = NULL;
    inst_t *rows = NULL;
    replay_out_t o = {0};
    size_t n_log = 0, n_rows = 0;
    int rc = log_read(sla, p->name, key, &log, &n_log);
    if (!n_log)
        goto out; /* a key never started: hold() has kept the event */
    rc = rc ? rc : rows_read(sla, p->name, key, &rows, &n_rows);
    for (size_t i = 0; !rc && i < n_rows; i++)
        if (!version_find(sla, rows[i].policy, rows[i].version))
            goto out; /* unreadable version: its instances wait untouched (version_add) */
    rc = rc ? rc : replay(sla, p, key, log, n_log, rows, n_rows, &o);
    for (size_t i = 0; !rc && i < n_rows; i++) {
        bool kept = false;
        for (size_t j = 0; j < o.n_res && !kept; j++)
            kept = o.res[j].id == rows[i].id;
        if (!kept)
            rc = row_delete(sla, &rows[i]);
    }
    rc = rc ? rc : held_rebuild(sla, p->name, key, log, n_log, now_ms);
    /* Rows first: each instance's passed steps are published under its sla_id, then stored. */
    const inst_t **was = calloc(o.n_res ? o.n_res : 1, sizeof *was);
    rc = rc ? rc : was ? 0 : FUNNEL_ENOMEM;
    for (size_t j = 0; !rc && j < o.n_res; j++)
        if (!(was[j] = o.res[j].id ? row_by_start(rows, n_rows, o.res[j].start_event) : NULL))
            rc = inst_insert(sla, &o.res[j]);
    for (size_t k = 0; !rc && k < o.n_passed; k++) {
        size_t j = o.passed[k].res;
        rc = passed_publish(sla, router, &o.passed[k], &o.res[j], was[j], now_ms);
    }
    for (size_t j = 0; !rc && j < o.n_res; j++)
        rc = store_one(sla, router, &o.res[j], was[j], now_ms);
    free(was);
out:
    free(log);
    free(rows);
    free(o.res);
    free(o.passed);
    return rc;
}

/* An event that arrived out of event-time order for a logged key: held for the keys that have
 * had no start (as on the live path), and every logged key it concerns recomputed. A key with
 * instances from before the log (migration 3) cannot be recomputed: then *late is cleared and
 * the caller takes the live path, with the arrival-order limit such keys always had. The first
 * pass only checks, so nothing is half done when it bails out; the second acts. */
static int late_event(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                      int64_t now_ms, bool *late)
{
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc && *late; pass++) {
        if (pass == 1)
            rc = hold(sla, env, now_ms);
        for (size_t i = 0; !rc && *late && i < sla->cfg->n_policies; i++) {
            const funnel_sla_policy_t *p = &sla->cfg->policies[i];
            char kbuf[64];
            bool starts, foreign = false;
            int kinds;
            const char *key = concern(p, env, kbuf, sizeof kbuf, &starts, &kinds);
            if (key && pass == 0)
                rc = log_foreign(sla, p->name, key, &foreign);
            else if (key)
                rc = recompute(sla, router, p, key, now_ms);
            if (foreign)
                *late = false;
        }
    }
    return rc;
}

/* Whether funneld ever issued sla_id id: ids are given in increasing order and never reused,
 * so every id up to the highest one given (kept or deleted by a recomputation) was. */
static int id_issued(funnel_sla_t *sla, int64_t id, bool *issued)
{
    sqlite3_stmt *s = stmt(sla, S_ID_ISSUED);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    *issued = rc == SQLITE_ROW && sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
}

/* escalation.acknowledged: no further levels or repeats for that instance. One naming an
 * sla_id funneld never issued is refused with its reason: the sender has a wrong id, and an
 * `ok` would tell it the escalation was stopped. One for a met instance, or for one a
 * recomputation replaced (its outputs stay published), changes nothing. */
static int acknowledge(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env)
{
    const Funnel__V1__EscalationAcknowledged *ack = env->escalation_acknowledged;
    char *end;
    inst_t in;
    bool issued = false;
    int64_t id = strtoll(ack->sla_id, &end, 10);
    int rc = *end || end == ack->sla_id ? 0 : id_issued(sla, id, &issued);
    if (rc)
        return rc;
    if (!issued)
        return funnel_router_refuse(router, FUNNEL_REFUSE_ENGINE,
                                    "escalation_acknowledged.sla_id: unknown sla_id '%s'",
                                    ack->sla_id);
    if ((rc = inst_load(sla, id, &in)) == FUNNEL_ENOTFOUND || (!rc && in.state == ST_MET)) {
        funnel_log_info(sla->log, "sla: acknowledgement %s for SLA %s, no longer open",
                        env->event_id, ack->sla_id);
        return 0;
    }
    if (rc)
        return rc;
    snprintf(in.acked_by, sizeof in.acked_by, "%s", ack->by[0] ? ack->by : "-");
    in.next_at = NONE;
    return inst_write(sla, &in);
}

static int quota_count(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms);

static int sla_on_event(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                        int64_t now_ms)
{
    funnel_sla_t *sla = self;
    /* The timer transaction before this event has ended (a rollback of it was reported). */
    sla->dirty &= ~(unsigned)D_POPPED;
    if (env->body_case == FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED)
        return acknowledge(sla, router, env);
    bool late;
    int rc = log_event(sla, env, &late);
    if (!rc && late)
        rc = late_event(sla, router, env, now_ms, &late);
    if (!rc && !late)
        rc = hold(sla, env, now_ms);
    rc = rc || late ? rc : key_events(sla, router, env, now_ms);
    for (size_t i = 0; !rc && !late && i < sla->cfg->n_policies; i++)
        if (funnel_sla_match(&sla->cfg->policies[i].start, env))
            rc = start(sla, router, &sla->cfg->policies[i], env, now_ms);
    return rc ? rc : quota_count(sla, env, now_ms);
}

/* ---- quotas ----------------------------------------------------------------------------- */

static quota_state_t *quota_state(funnel_sla_t *sla, const funnel_sla_quota_t *q, bool create)
{
    char err[256];
    quota_state_t *qs = NULL;
    for (size_t i = 0; i < sla->n_quotas && !qs; i++)
        if (strcmp(sla->quotas[i].name, q->name) == 0)
            qs = &sla->quotas[i];
    if (!qs && create) {
        quota_state_t *arr = realloc(sla->quotas, (sla->n_quotas + 1) * sizeof *arr);
        if (!arr)
            return NULL;
        sla->quotas = arr;
        qs = &arr[sla->n_quotas];
        memset(qs, 0, sizeof *qs);
        qs->next_at = INT64_MIN;
        if (!(qs->name = strdup(q->name)))
            return NULL;
        sla->n_quotas++;
    }
    /* A reload may move the quota to another time zone: periods follow it. */
    if (qs && (!qs->time_zone || strcmp(qs->time_zone, q->calendar.time_zone))) {
        /* Replace the pair only once both are built: time_zone names the zone cal was compiled
         * for, so after a failure the old pair stays (or none), never a zone without a calendar,
         * and the next call tries again. */
        funnel_calendar_t *cal = NULL;
        char *tz = strdup(q->calendar.time_zone);
        if (!tz || funnel_calendar_new(&q->calendar, &cal, err, sizeof err)) {
            free(tz);
            return NULL;
        }
        funnel_calendar_destroy(&qs->cal);
        free(qs->time_zone);
        qs->time_zone = tz;
        qs->cal = cal;
    }
    return qs;
}

static void quota_key(sqlite3_stmt *s, const char *name, int64_t start, int64_t end)
{
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, start);
    sqlite3_bind_int64(s, 3, end);
}

/* The span of periods the quota has opened (sla_quota_span); *since = NONE before its first
 * run. */
static int quota_span(funnel_sla_t *sla, const char *name, int64_t *since, int64_t *through)
{
    sqlite3_stmt *s = stmt(sla, S_SPAN_GET);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *since = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : NONE;
    *through = rc == SQLITE_ROW ? sqlite3_column_int64(s, 1) : NONE;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Counts the event into its period of every quota it matches (event time, local periods). A
 * late event for a period that has a row counts there (a report already made stays made). A
 * period without a row that has already ended is recorded closed, reporting nothing, only when
 * it began before the quota's first run (it predates the quota); one after that is a period
 * funneld was down for, and the next timer pass closes and reports it (quota_run). */
static int quota_count(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms)
{
    for (size_t i = 0; i < sla->cfg->n_quotas; i++) {
        const funnel_sla_quota_t *q = &sla->cfg->quotas[i];
        if (!funnel_sla_match(&q->count, env))
            continue;
        quota_state_t *qs = quota_state(sla, q, true);
        int64_t ps, pe;
        if (!qs)
            return FUNNEL_ENOMEM;
        funnel_calendar_period(qs->cal, q->period, env->occurred_at_ms, &ps, &pe);
        int64_t since, through;
        int rc = quota_span(sla, q->name, &since, &through);
        if (rc)
            return rc;
        sqlite3_stmt *s = stmt(sla, S_QUOTA_COUNT);
        quota_key(s, q->name, ps, pe);
        sqlite3_bind_int(s, 4, pe <= now_ms && (since == NONE || ps < since));
        if ((rc = step_done(s)))
            return rc;
    }
    return 0;
}

static int quota_emit(funnel_router_t *router, const funnel_sla_quota_t *q, int64_t ps, int64_t pe,
                      int64_t actual, bool pace, int64_t at, int64_t now_ms)
{
    funnel_envelope_t env;
    Funnel__V1__SlaQuotaMissed m;
    char event_id[200];
    funnel__v1__envelope__init(&env);
    funnel__v1__sla_quota_missed__init(&m);
    snprintf(event_id, sizeof event_id, "quota-%s-%" PRId64 "%s", q->name, ps, pace ? "-pace" : "");
    env.event_id = event_id;
    env.occurred_at_ms = at;
    env.source = "funneld";
    m.policy = q->name;
    m.period_start_ms = ps;
    m.period_end_ms = pe;
    m.minimum = pace ? q->minimum * q->pace_pct / 100 : q->minimum;
    m.actual = actual;
    m.pace = pace;
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_QUOTA_MISSED;
    env.sla_quota_missed = &m;
    return funnel_router_emit(router, "sla.quota_missed", &env, now_ms);
}

/* Creates every period row from the end of the span opened so far up to the period containing
 * now, so a period in which nothing was counted still reports, also after downtime, and also
 * when an event dated in a later period gave that one a row first: the span, not the latest
 * row, says where funneld stopped. */
static int quota_ensure(funnel_sla_t *sla, const funnel_sla_quota_t *q, quota_state_t *qs,
                        int64_t now_ms)
{
    int64_t since, from;
    int rc = quota_span(sla, q->name, &since, &from);
    if (rc)
        return rc;
    if (since == NONE) {
        int64_t pe;
        funnel_calendar_period(qs->cal, q->period, now_ms, &since, &pe);
        from = since;
    }
    int64_t through = from;
    for (int k = 0; k < QUOTA_BATCH && from <= now_ms; k++) {
        int64_t ps;
        funnel_calendar_period(qs->cal, q->period, from, &ps, &through);
        sqlite3_stmt *s = stmt(sla, S_QUOTA_ENSURE);
        quota_key(s, q->name, ps, through);
        if ((rc = step_done(s)))
            return rc;
        from = through;
    }
    sqlite3_stmt *s = stmt(sla, S_SPAN_SET);
    quota_key(s, q->name, since, through);
    return step_done(s);
}

/* Closes ended periods (sla.quota_missed below the minimum), runs due pace checks, and
 * computes when this quota next has work. */
static int quota_run(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_quota_t *q,
                     int64_t now_ms)
{
    quota_state_t *qs = quota_state(sla, q, true);
    if (!qs)
        return FUNNEL_ENOMEM;
    int rc = quota_ensure(sla, q, qs, now_ms);
    struct {
        int64_t ps, pe, actual, pace_done;
    } rows[QUOTA_BATCH];
    size_t n = 0;
    sqlite3_stmt *s = stmt(sla, S_QUOTA_OPEN);
    sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
    int step = SQLITE_DONE;
    while (!rc && n < QUOTA_BATCH && (step = sqlite3_step(s)) == SQLITE_ROW) {
        rows[n].ps = sqlite3_column_int64(s, 0);
        rows[n].pe = sqlite3_column_int64(s, 1);
        rows[n].actual = sqlite3_column_int64(s, 2);
        rows[n++].pace_done = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    /* A failed step is not the end of the periods: closing only some would skip reports. */
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = FUNNEL_ESTORE;
    qs->next_at = NONE;
    for (size_t i = 0; !rc && i < n; i++) {
        int64_t pace_at = rows[i].ps + (rows[i].pe - rows[i].ps) * q->pace_pct / 100;
        bool pace_due = q->pace_pct && !rows[i].pace_done;
        bool closing = rows[i].pe <= now_ms;
        if (pace_due && pace_at <= now_ms) {
            /* Past the period's end the full check below says it all: no pace line. */
            if (!closing && rows[i].actual < q->minimum * q->pace_pct / 100)
                rc = quota_emit(router, q, rows[i].ps, rows[i].pe, rows[i].actual, true, pace_at,
                                now_ms);
            pace_due = false;
        }
        if (!rc && closing && rows[i].actual < q->minimum)
            rc = quota_emit(router, q, rows[i].ps, rows[i].pe, rows[i].actual, false, rows[i].pe,
                            now_ms);
        if (rc)
            break;
        s = stmt(sla, S_QUOTA_MARK);
        sqlite3_bind_int(s, 1, !pace_due);
        sqlite3_bind_int(s, 2, closing);
        sqlite3_bind_text(s, 3, q->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, rows[i].ps);
        rc = step_done(s);
        int64_t next = closing ? NONE : pace_due ? pace_at : rows[i].pe;
        qs->next_at = next < qs->next_at ? next : qs->next_at;
    }
    if (n == QUOTA_BATCH)
        qs->next_at = now_ms; /* more periods wait: run again at once */
    return rc;
}

/* ---- timers ------------------------------------------------------------------------------ */

static int64_t sla_next_deadline(void *self)
{
    funnel_sla_t *sla = self;
    funnel_timer_entry_t top;
    int64_t next = funnel_timerheap_peek(sla->heap, &top) ? NONE : top.at;
    for (size_t i = 0; i < sla->cfg->n_quotas; i++) {
        quota_state_t *qs = quota_state(sla, &sla->cfg->quotas[i], false);
        /* A quota not yet run (new, reloaded, or after a rollback) runs at once. */
        int64_t at = qs && qs->next_at != INT64_MIN ? qs->next_at : 0;
        next = at < next ? at : next;
    }
    return next;
}

/* Fires what is due: the earliest timers first, at most FUNNEL_SLA_TIMER_BATCH steps, each with
 * its own due time. Heap entries whose time no longer matches the row are stale and dropped. */
static int sla_on_timer(void *self, funnel_router_t *router, int64_t now_ms)
{
    funnel_sla_t *sla = self;
    funnel_timer_entry_t top;
    int rc = 0;
    /* Every earlier transaction has ended, committed or rolled back and reported: memory
     * matches the committed rows. */
    sla->n_vers_known = sla->n_vers;
    sla->dirty = 0;
    for (int fired = 0; !rc && fired < FUNNEL_SLA_TIMER_BATCH &&
                        !funnel_timerheap_peek(sla->heap, &top) && top.at <= now_ms;) {
        inst_t in;
        funnel_timerheap_pop(sla->heap, &top);
        sla->dirty |= D_POPPED;
        if ((rc = inst_load(sla, top.id, &in)) == FUNNEL_ENOTFOUND) {
            rc = 0;
            continue;
        }
        pver_t *v = rc ? NULL : version_find(sla, in.policy, in.version);
        if (rc || !v || in.next_at != top.at)
            continue;
        fire_ctx_t fc = {sla, router, now_ms, 0};
        rc = steps_before(v, &in, now_ms + 1, fire_step, &fc);
        fired += fc.fired;
        rc = rc ? rc : inst_write(sla, &in);
    }
    for (size_t i = 0; !rc && i < sla->cfg->n_quotas; i++) {
        const funnel_sla_quota_t *q = &sla->cfg->quotas[i];
        quota_state_t *qs = quota_state(sla, q, true);
        if (!qs)
            rc = FUNNEL_ENOMEM;
        else if (qs->next_at <= now_ms)
            rc = quota_run(sla, router, q, now_ms);
    }
    return rc;
}

/* Recounts the instances not met: one scan of the partial index sla_instance_live. */
static int open_recount(funnel_sla_t *sla)
{
    sqlite3_stmt *s = stmt(sla, S_OPEN_COUNT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        sla->open = sqlite3_column_int64(s, 0);
    sqlite3_reset(s); /* a statement left on a row would pin a read snapshot */
    if (rc != SQLITE_ROW)
        return FUNNEL_ESTORE;
    return 0;
}

/* Rebuilds the in-memory view (timer heap, open count) from the rows: at start, when a rollback
 * undid pops, and to shed stale entries (sla_on_rollback). */
static int heap_rebuild(funnel_sla_t *sla)
{
    int rc = open_recount(sla), err = 0;
    if (rc)
        return rc;
    sqlite3_stmt *s = stmt(sla, S_TIMERS);
    funnel_timerheap_clear(sla->heap);
    sla->heap_rebuilds++;
    while (!err && (rc = sqlite3_step(s)) == SQLITE_ROW)
        err = funnel_timerheap_push(sla->heap, sqlite3_column_int64(s, 1),
                                    sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    rc = err ? err : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
    if (!rc)
        sla->dirty &= ~(unsigned)D_POPPED;
    return rc;
}

/* Stale entries beyond which a rollback rebuilds the heap: a row has at most one live entry,
 * so past this most of the heap is garbage, and rebuilding costs no more than the pushes that
 * made it (amortised O(1) per push) while keeping memory bounded under repeated failures. */
static bool heap_bloated(const funnel_sla_t *sla)
{
    return funnel_timerheap_size(sla->heap) > 2 * (size_t)(sla->open > 0 ? sla->open : 0) + 1024;
}

/* Called for every failed event, so it costs what the rollback can have broken, not the size of
 * the SLA state: entries pushed for undone rows stay in the heap and are dropped when popped;
 * the open count is recounted only if it moved; only versions added since the last known commit
 * are looked up. */
static void sla_on_rollback(void *self)
{
    funnel_sla_t *sla = self;
    /* A rollback to a savepoint leaves the batch's transaction open: what is read now may still
     * be undone, so nothing is marked committed and no entry may be dropped by a rebuild. */
    bool ended = !funnel_store_in_transaction(sla->store);
    /* Quotas recompute from their rows on the next timer pass. */
    for (size_t i = 0; i < sla->n_quotas; i++)
        sla->quotas[i].next_at = INT64_MIN;
    int rc = versions_check(sla);
    if (!rc && (sla->dirty & D_OPEN))
        rc = open_recount(sla);
    if (!rc && ((sla->dirty & D_POPPED) || (ended && heap_bloated(sla))))
        rc = heap_rebuild(sla);
    if (rc)
        funnel_log_error(sla->log, "sla: restoring state after a rollback failed: %s",
                         funnel_store_errmsg(sla->store));
    else if (ended) {
        sla->n_vers_known = sla->n_vers;
        sla->dirty = 0;
    }
}

/* ---- life cycle ------------------------------------------------------------------------- */

int funnel_sla_new(funnel_store_t *store, const funnel_sla_config_t *cfg, const funnel_log_t *log,
                   funnel_sla_t **out)
{
    char err[512];
    int rc = FUNNEL_ENOMEM;
    *out = NULL;
    funnel_sla_t *sla = calloc(1, sizeof *sla);
    if (!sla || funnel_timerheap_new(&sla->heap))
        goto fail;
    sla->store = store;
    sla->db = funnel_store_db(store);
    sla->cfg = cfg;
    sla->log = log;
    if ((rc = funnel_store_migrate_module(store, "sla", migrations,
                                          (int)(sizeof migrations / sizeof migrations[0]), err,
                                          sizeof err))) {
        funnel_log_error(log, "sla: %s", err);
        goto fail;
    }
    for (int i = 0; i < S_COUNT_; i++) {
        if (sqlite3_prepare_v3(sla->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sla->st[i],
                               NULL) != SQLITE_OK) {
            funnel_log_error(log, "sla: %s", sqlite3_errmsg(sla->db));
            rc = FUNNEL_ESTORE;
            goto fail;
        }
    }
    if ((rc = versions_load(sla)) || (rc = heap_rebuild(sla))) {
        funnel_log_error(log, "sla: loading state failed: %s", funnel_store_errmsg(store));
        goto fail;
    }
    funnel_log_info(log, "sla: %zu policies, %zu quotas, %zu timers pending", cfg->n_policies,
                    cfg->n_quotas, funnel_timerheap_size(sla->heap));
    *out = sla;
    return 0;
fail:
    funnel_sla_destroy(&sla);
    return rc;
}

void funnel_sla_destroy(funnel_sla_t **slap)
{
    if (!slap || !*slap)
        return;
    funnel_sla_t *sla = *slap;
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(sla->st[i]);
    versions_clear(sla);
    free(sla->vers);
    for (size_t i = 0; i < sla->n_quotas; i++) {
        free(sla->quotas[i].name);
        free(sla->quotas[i].time_zone);
        funnel_calendar_destroy(&sla->quotas[i].cal);
    }
    free(sla->quotas);
    funnel_timerheap_destroy(&sla->heap);
    free(sla);
    *slap = NULL;
}

static int64_t sla_open_items(void *self)
{
    return ((funnel_sla_t *)self)->open;
}

void funnel_sla_hooks(funnel_sla_t *sla, funnel_engine_t *engine)
{
    *engine = (funnel_engine_t){
        .name = "sla",
        .self = sla,
        .on_event = sla_on_event,
        .next_deadline = sla_next_deadline,
        .on_timer = sla_on_timer,
        .on_rollback = sla_on_rollback,
        .open_items = sla_open_items,
    };
}

size_t funnel_sla_timers(const funnel_sla_t *sla)
{
    return funnel_timerheap_size(sla->heap);
}

void funnel_sla_reloads(const funnel_sla_t *sla, size_t *version_loads, size_t *heap_rebuilds)
{
    *version_loads = sla->version_loads;
    *heap_rebuilds = sla->heap_rebuilds;
}

int funnel_sla_engine_create(funnel_store_t *store, const void *section, const funnel_log_t *log,
                             funnel_engine_t *engine)
{
    funnel_sla_t *sla;
    int rc = funnel_sla_new(store, section, log, &sla);
    if (!rc)
        funnel_sla_hooks(sla, engine);
    return rc;
}

void funnel_sla_engine_destroy(void *self)
{
    funnel_sla_t *sla = self;
    funnel_sla_destroy(&sla);
}
