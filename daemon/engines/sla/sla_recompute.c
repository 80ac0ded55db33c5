/* sla_recompute.c — out-of-order arrival: the per-(policy, key) log of starts, stops, resets,
 * pauses and resumes, and the recomputation of a key's instances from it when an event arrives
 * before one it occurred after (see sla.c for the model).
 *
 * The log is sla_log_all (migration 12): sla_log's rows and those the instance rows stand for
 * (vlog). A start and a stop that is nothing else wait as the event is applied (sla->pend); the
 * instance row it opens or meets claims its row (sla_log_claim), the rest is written after
 * (sla_log_flush). Before a recomputation rewrites a key's instance rows, their rows are written
 * to sla_log (log_solidify), so a replay reads sla_log alone. */
#include "sla_internal.h"
#include "funnel/grow.h"
#include "funnel/error.h"

#include <stdlib.h>
#include <string.h>

enum { RANK_START = 0, RANK_OTHER = 1 }; /* sla_log.rank: a start first within a millisecond */

/* The key of p this event concerns, with what it is to p (a start, and/or kinds), or NULL. */
static const char *concern(const funnel_sla_policy_t *p, const funnel_envelope_t *env, char *buf,
                           size_t len, bool *starts, int *kinds)
{
    *starts = sla_starts(p, env);
    *kinds = sla_kinds_of(p, env);
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
    sqlite3_stmt *s = sla_stmt(sla, S_LOG_FOREIGN);
    bind_pk(s, policy, key);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    *foreign = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Logs env for (p, key): a start with what it gives its instance (a), or the kinds it is to p,
 * with the new owner of a reassignment. */
static int log_add(funnel_sla_t *sla, const funnel_sla_policy_t *p, const char *key,
                   const funnel_envelope_t *env, int rank, int kinds, const start_attrs_t *a)
{
    char obuf[64];
    sqlite3_stmt *s = sla_stmt(sla, S_LOG_ADD);
    bind_pk(s, p->name, key);
    sqlite3_bind_int64(s, 3, env->occurred_at_ms);
    sqlite3_bind_int(s, 4, rank);
    sqlite3_bind_text(s, 5, env->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 6, kinds);
    /* NOT NULL columns: INSERT OR IGNORE would drop a row that left them unbound. */
    sqlite3_bind_int64(s, 9, a ? a->priority : 0);
    sqlite3_bind_int(s, 10, a ? a->inherit : 0);
    if (a) {
        sqlite3_bind_text(s, 7, a->owner, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 8, a->queue, -1, SQLITE_STATIC);
    } else if (kinds & K_ASSIGN) {
        sqlite3_bind_text(s, 7, funnel_sla_field(env, p->owner, obuf, sizeof obuf), -1,
                          SQLITE_TRANSIENT);
    }
    return sla_step_done(s);
}

/* ---- the last log row of recent keys, in memory ----------------------------------------- *
 * Every event a policy cares about needs the last log row of its (policy, key) to tell whether
 * it is late. A direct-mapped cache of LOG_LAST_SLOTS entries keeps it for recent keys: an entry
 * says what S_LOG_LAST would return (a row, or none), and each write to sla_log keeps it so: the
 * rows logged here raise it, held rows joining the log and a prune (sla_log_last_forget) drop it,
 * and a rollback, which may undo any of them, drops them all (sla_log_last_clear). An entry also
 * knows when sla_held has no row of its key, as seen when the key's log began (S_LOG_HELD took
 * none), until sla_hold holds one (sla_held_added): its start then skips S_HELD. */

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (h ^ 0xffU) * 1099511628211ULL; /* ends the string: ("a", "bc") is not ("ab", "c") */
}

static log_last_t *log_last_slot(funnel_sla_t *sla, const char *policy, const char *key)
{
    return &sla->log_last[fnv1a(fnv1a(14695981039346656037ULL, policy), key) % LOG_LAST_SLOTS];
}

static bool log_last_is(const log_last_t *e, const char *policy, const char *key)
{
    return e->used && strcmp(e->key, key) == 0 && strcmp(e->policy, policy) == 0;
}

/* Sign of (at, rank, id) - (e's row), in the log's order (S_LOG_LAST's). */
static int log_row_cmp(int64_t at, int rank, const char *id, const log_last_t *e)
{
    if (at != e->at)
        return at < e->at ? -1 : 1;
    if (rank != e->rank)
        return rank < e->rank ? -1 : 1;
    return strcmp(id, e->event_id);
}

/* The log of e's (policy, key) got the row (at, rank, id). */
static void log_last_raise(log_last_t *e, int64_t at, int rank, const char *id)
{
    if (!e->used || (e->any && log_row_cmp(at, rank, id, e) <= 0))
        return;
    e->any = true;
    e->at = at;
    e->rank = rank;
    snprintf(e->event_id, sizeof e->event_id, "%s", id);
}

/* Raises e to the latest log row the instance rows of its key stand for (vlog): each row's
 * stop, else its start. */
static int log_last_virtual(funnel_sla_t *sla, log_last_t *e)
{
    sqlite3_stmt *s = sla_stmt(sla, S_LOG_VLAST);
    bind_pk(s, e->policy, e->key);
    int rc;
    char id[ID_BUF];
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        bool stop = sqlite3_column_int(s, 2) != 0;
        sla_col_text(s, stop ? 4 : 1, id);
        log_last_raise(e, sqlite3_column_int64(s, stop ? 3 : 0), stop, id);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* The entry of (policy, key), read from the store into its slot unless memory has it: the last
 * row of sla_log_all, from sla_log's last and the instance rows' (log_last_virtual). */
static int log_last_get(funnel_sla_t *sla, const char *policy, const char *key, log_last_t **out)
{
    log_last_t *e = *out = log_last_slot(sla, policy, key);
    if (log_last_is(e, policy, key))
        return 0;
    sqlite3_stmt *s = sla_stmt(sla, S_LOG_LAST);
    bind_pk(s, policy, key);
    sla->log_reads++;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        e->at = sqlite3_column_int64(s, 0);
        e->rank = sqlite3_column_int(s, 1);
        sla_col_text(s, 2, e->event_id);
    }
    sqlite3_reset(s);
    e->used = step == SQLITE_ROW || step == SQLITE_DONE;
    if (!e->used)
        return FUNNEL_ESTORE;
    e->any = step == SQLITE_ROW;
    e->held_none = false;
    snprintf(e->policy, sizeof e->policy, "%s", policy);
    snprintf(e->key, sizeof e->key, "%s", key);
    int rc = log_last_virtual(sla, e);
    e->used = !rc;
    return rc;
}

void sla_log_last_forget(funnel_sla_t *sla, const char *policy, const char *key)
{
    log_last_t *e = log_last_slot(sla, policy, key);
    if (log_last_is(e, policy, key))
        e->used = false;
}

bool sla_held_none(funnel_sla_t *sla, const char *policy, const char *key)
{
    log_last_t *e = log_last_slot(sla, policy, key);
    return log_last_is(e, policy, key) && e->held_none;
}

void sla_held_added(funnel_sla_t *sla, const char *policy, const char *key)
{
    log_last_t *e = log_last_slot(sla, policy, key);
    if (log_last_is(e, policy, key))
        e->held_none = false;
}

void sla_log_last_clear(funnel_sla_t *sla)
{
    for (size_t i = 0; i < LOG_LAST_SLOTS; i++)
        sla->log_last[i].used = false;
}

/* Logs env for (p, key) at rank, and keeps e, its entry, the log's last row. */
static int log_row(funnel_sla_t *sla, log_last_t *e, const funnel_sla_policy_t *p, const char *key,
                   const funnel_envelope_t *env, int rank, int kinds, const start_attrs_t *a)
{
    int rc = log_add(sla, p, key, env, rank, kinds, a);
    if (!rc)
        log_last_raise(e, env->occurred_at_ms, rank, env->event_id);
    return rc;
}

/* Records the event in the log of every (policy, key) it concerns that has had a start (or that
 * it starts: the events held for that key join the log then), and tells whether it arrived out
 * of event-time order for one of them: the log already holds a later event, by (occurred_at,
 * rank, event_id). Then the live path, which applies events in arrival order, would be wrong,
 * and the caller recomputes instead (late_event). Fills sla->logged for sla_hold. */
int sla_log_event(funnel_sla_t *sla, const funnel_envelope_t *env, bool *late)
{
    size_t n = sla->cfg->n_policies;
    int rc = funnel_grow(&sla->logged, &sla->cap_logged, n ? n : 1, sizeof *sla->logged, 8) ||
                     funnel_grow(&sla->pend, &sla->cap_pend, n ? n : 1, sizeof *sla->pend, 8)
                 ? FUNNEL_ENOMEM
                 : 0;
    *late = false;
    if (!rc) {
        memset(sla->logged, 0, n * sizeof *sla->logged);
        memset(sla->pend, 0, n * sizeof *sla->pend);
        snprintf(sla->pend_event, sizeof sla->pend_event, "%s", env->event_id);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        char kbuf[64];
        bool starts;
        int kinds;
        log_last_t *e;
        const char *key = concern(p, env, kbuf, sizeof kbuf, &starts, &kinds);
        if (!key)
            continue;
        if ((rc = log_last_get(sla, p->name, key, &e)))
            return rc;
        int my_rank = starts ? RANK_START : RANK_OTHER;
        *late =
            *late || (e->any && log_row_cmp(env->occurred_at_ms, my_rank, env->event_id, e) < 0);
        sla->logged[i] = e->any && !starts && !sla->prelog;
        if (!e->any && !starts)
            continue; /* never started: sla_hold() keeps it for the start */
        if (!e->any) {
            sqlite3_stmt *s = sla_stmt(sla, S_LOG_HELD);
            bind_pk(s, p->name, key);
            rc = sla_step_done(s);
            /* Rows of any time joined: read the last one when needed. None: none is held. */
            e->used = e->used && !rc && sqlite3_changes(sla->db) == 0;
            e->held_none = true;
        }
        /* A start, and a stop that is nothing else, wait for an instance row to claim them. */
        sla->pend[i] = (starts ? V_START : 0) | (kinds == K_STOP ? V_STOP : 0);
        if (starts)
            log_last_raise(e, env->occurred_at_ms, RANK_START, env->event_id);
        if (!rc && kinds && kinds != K_STOP)
            rc = log_row(sla, e, p, key, env, RANK_OTHER, kinds, NULL);
        else if (kinds)
            log_last_raise(e, env->occurred_at_ms, RANK_OTHER, env->event_id);
    }
    if (*late) /* a key that cannot be recomputed sends it down the live path, which holds */
        memset(sla->logged, 0, n * sizeof *sla->logged);
    /* A recomputation reads the log from the store: nothing may wait. */
    return rc || !*late ? rc : sla_log_flush(sla, env);
}

int sla_log_claim(funnel_sla_t *sla, const char *policy, const char *event_id, int bit)
{
    if (!sla->pend || strcmp(event_id, sla->pend_event) != 0)
        return 0;
    for (size_t i = 0; i < sla->cfg->n_policies; i++) {
        if ((sla->pend[i] & bit) && strcmp(sla->cfg->policies[i].name, policy) == 0) {
            sla->pend[i] &= (unsigned char)~bit;
            return bit;
        }
    }
    return 0;
}

int sla_log_flush(funnel_sla_t *sla, const funnel_envelope_t *env)
{
    int rc = 0;
    for (size_t i = 0; !rc && sla->pend && i < sla->cfg->n_policies; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        char kbuf[64];
        start_attrs_t a;
        bool starts;
        int kinds, pend = sla->pend[i];
        const char *key = pend ? concern(p, env, kbuf, sizeof kbuf, &starts, &kinds) : NULL;
        sla->pend[i] = 0;
        if (key && (pend & V_START)) {
            sla_start_attrs(p, env, &a);
            rc = log_add(sla, p, key, env, RANK_START, 0, &a);
        }
        if (!rc && key && (pend & V_STOP))
            rc = log_add(sla, p, key, env, RANK_OTHER, K_STOP, NULL);
    }
    sla->pend_event[0] = '\0';
    return rc;
}

/* One log row, as read. */
typedef struct logrow {
    int64_t at;
    int rank, kinds;
    char event_id[ID_BUF];
    start_attrs_t a; /* a start's; a.owner is also a reassignment's new owner */
} logrow_t;

/* Appends to a growing array of elements of size `size`; NULL when out of memory. */
static void *grow(void **arr, size_t *n, size_t *cap, size_t size)
{
    if (funnel_grow(arr, cap, *n + 1, size, 8))
        return NULL;
    return (char *)*arr + (*n)++ * size;
}

/* Writes the log rows of (policy, key) that its instance rows stand for to sla_log, so that the
 * rows can be rewritten, deleted or replaced by a recomputation. */
static int log_solidify(funnel_sla_t *sla, const char *policy, const char *key)
{
    int rc = 0;
    for (enum stmt_id id = S_LOG_SOLID; !rc && id <= S_LOG_UNVIRT; id++) {
        sqlite3_stmt *s = sla_stmt(sla, id);
        bind_pk(s, policy, key);
        rc = sla_step_done(s);
    }
    return rc;
}

/* Reads the whole log of (policy, key) in event-time order. */
static int log_read(funnel_sla_t *sla, const char *policy, const char *key, logrow_t **out,
                    size_t *n)
{
    size_t cap = 0;
    int rc;
    sqlite3_stmt *s = sla_stmt(sla, S_LOG_READ);
    bind_pk(s, policy, key);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        logrow_t *r = grow((void **)out, n, &cap, sizeof *r);
        if (!r)
            break;
        r->at = sqlite3_column_int64(s, 0);
        r->rank = sqlite3_column_int(s, 1);
        sla_col_text(s, 2, r->event_id);
        r->kinds = sqlite3_column_int(s, 3);
        sla_col_text(s, 4, r->a.owner);
        sla_col_text(s, 5, r->a.queue);
        r->a.priority = sqlite3_column_int64(s, 6);
        r->a.inherit = sqlite3_column_int(s, 7);
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
    sqlite3_stmt *s = sla_stmt(sla, S_KEY_ROWS);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, policy, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        inst_t *r = grow((void **)out, n, &cap, sizeof *r);
        if (!r)
            break;
        sla_inst_read(s, r);
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
            bool untaken = !cur || cur->state == ST_MET; /* no live instance takes it */
            int rc = untaken ? 0 : sla_steps_before(v, cur, e->at, pass_step, o);
            if (rc)
                return rc;
            change_t c = {e->kinds, e->at, e->event_id, e->a.owner};
            if (!untaken)
                sla_inst_change(v, cur, &c);
            continue;
        }
        if ((cur && cur->state != ST_MET) || (!cur && (e->a.inherit & I_REOPEN)))
            continue; /* a repeated start does not restart the clock; nothing to reopen */
        const inst_t *row = row_by_start(rows, n_rows, e->event_id);
        int rc = row ? 0 : sla_version_current(sla, p, &v);
        if (row && !(v = sla_version_find(sla, row->policy, row->version)))
            rc = FUNNEL_EINVAL; /* checked by the caller: not reached */
        if (rc || !(cur = grow((void **)&o->res, &o->n_res, &o->cap_res, sizeof *cur)))
            return rc ? rc : FUNNEL_ENOMEM;
        /* The previous instance, if any, is the one before cur in o->res: grow moved it. */
        sla_attrs_inherit(&e->a, o->n_res > 1 ? &o->res[o->n_res - 2] : NULL);
        sla_inst_fresh(cur, v, key, &e->a, e->at, e->event_id);
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
    return sla_step_publish(sla, router, sla_version_find(sla, in->policy, in->version), &ps->in,
                            now_ms);
}

/* Stores one recomputed instance over its row (an inserted one when new). Steps already
 * published are not published again: the instance continues after the last step its clock
 * (started_at) published, keeps the row's acknowledgement while the clock is the same, and the
 * steps after it come at their recomputed times, at once if already due. sla.met goes out only
 * when the instance was not met before. */
static int store_one(funnel_sla_t *sla, funnel_router_t *router, inst_t *in, const inst_t *row,
                     int64_t now_ms)
{
    pver_t *v = sla_version_find(sla, in->policy, in->version);
    bool was_live = !row || row->state != ST_MET;
    int64_t next;
    int rc = sla_fired_next(sla, in->id, in->started_at, &next);
    in->step = in->step > next ? in->step : next;
    if (row && row->started_at == in->started_at)
        snprintf(in->acked_by, sizeof in->acked_by, "%s", row->acked_by);
    in->next_at = sla_step_at(v, in, in->step);
    in->arrived_at = now_ms; /* a late event changed it: the grace counts from now */
    rc = rc ? rc : sla_inst_write(sla, in);
    if (!rc && in->state == ST_MET)
        rc = sla_inst_met(sla, router, in, was_live, now_ms);
    else if (!was_live)
        sla_open_add(sla, 1);
    return rc;
}

/* Drops the events held for (policy, key): its log holds every one of them, and a start that
 * comes after this recomputation takes none (see sla_hold()). */
static int held_clear(funnel_sla_t *sla, const char *policy, const char *key)
{
    sqlite3_stmt *s = sla_stmt(sla, S_HELD_CLEAR);
    bind_pk(s, policy, key);
    return sla_step_done(s);
}

/* Deletes an instance row a recomputation no longer has, with its published-steps record; its
 * id is never given again. */
static int row_delete(funnel_sla_t *sla, const inst_t *row)
{
    static const enum stmt_id ids[] = {S_DELETE, S_FIRED_DROP, S_DELETED_MAX, S_ORDER_FORGET};
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof ids / sizeof ids[0]; i++) {
        sqlite3_stmt *s = sla_stmt(sla, ids[i]);
        sqlite3_bind_int64(s, 1, row->id);
        rc = sla_step_done(s);
    }
    if (!rc)
        sla_open_add(sla, -(int64_t)(row->state != ST_MET));
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
    int rc = log_solidify(sla, p->name, key);
    rc = rc ? rc : log_read(sla, p->name, key, &log, &n_log);
    if (!n_log)
        goto out; /* a key never started: sla_hold() has kept the event */
    rc = rc ? rc : rows_read(sla, p->name, key, &rows, &n_rows);
    for (size_t i = 0; !rc && i < n_rows; i++)
        if (!sla_version_find(sla, rows[i].policy, rows[i].version))
            goto out; /* unreadable version: its instances wait untouched (version_add) */
    rc = rc ? rc : replay(sla, p, key, log, n_log, rows, n_rows, &o);
    for (size_t i = 0; !rc && i < n_rows; i++) {
        bool kept = false;
        for (size_t j = 0; j < o.n_res && !kept; j++)
            kept = o.res[j].id == rows[i].id;
        if (!kept)
            rc = row_delete(sla, &rows[i]);
    }
    rc = rc ? rc : held_clear(sla, p->name, key);
    /* Rows first: each instance's passed steps are published under its sla_id, then stored. */
    const inst_t **was = calloc(o.n_res ? o.n_res : 1, sizeof *was);
    rc = rc ? rc : was ? 0 : FUNNEL_ENOMEM;
    for (size_t j = 0; !rc && j < o.n_res; j++)
        if (!(was[j] = o.res[j].id ? row_by_start(rows, n_rows, o.res[j].start_event) : NULL))
            rc = sla_inst_insert(sla, &o.res[j]);
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
int sla_late_event(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                   int64_t now_ms, bool *late)
{
    int rc = 0;
    for (int pass = 0; pass < 2 && !rc && *late; pass++) {
        if (pass == 1)
            rc = sla_hold(sla, env, now_ms, NULL);
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
