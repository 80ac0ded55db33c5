/* sla_retention.c — the bound of the SLA state: what is kept of a key's history, and for how
 * long (see sla.c for the model, README "SLA state retention" for the rule).
 *
 * The watermark is the highest event time the engine has applied; the cutoff is the watermark
 * less the horizon (sla.horizon). Timer passes prune, oldest stop first and a batch at a time,
 * each met instance stopped before the cutoff that is the earliest instance of its (policy,
 * key), with its log rows up to its stop, its published-steps record and the order violations
 * it took part in as the instance taken. What an event inside the horizon sees does not change:
 * it comes after everything pruned of its key, and a replay (sla_recompute.c) starts from the
 * first kept instance as it would have reached it. An event older than the cutoff for a key with
 * no instance kept from before it would fall into the pruned part (or create a history the
 * pruned part may have contradicted), so it is refused with its reason instead of starting a
 * new instance. The watermark is stored only by the prune pass: after a restart or a rollback
 * it may be lower than the events applied, which only delays pruning and refuses less.
 *
 * A live instance whose clock has not changed (no start, reset, pause or resume: sla_idle_at)
 * for the horizon is expired by the same passes, oldest first: met at its last change plus the
 * horizon, never on time, with no stop event, and published (sla.met, expired). It is then
 * pruned as any met instance once the cutoff passes that time: an instance that is never
 * stopped is kept at most twice the horizon. */
#include "sla_internal.h"
#include "funnel/error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define PRUNE_BATCH    64      /* met instances looked at per timer pass (S_PRUNE_NEXT) */
#define PRUNE_EVERY_MS 60000LL /* wall time between passes once nothing is left to prune */

/* Reads the stored watermark into memory (at start and after a full rollback). */
int sla_watermark_load(funnel_sla_t *sla)
{
    sqlite3_stmt *s = sla_stmt(sla, S_MARK_GET);
    int rc = sqlite3_step(s);
    sla->watermark = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL
                         ? sqlite3_column_int64(s, 0)
                         : INT64_MIN;
    sqlite3_reset(s);
    sla->watermark_before = sla->watermark;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* The event time before which history may be pruned; INT64_MIN when nothing may be. */
static int64_t cutoff(const funnel_sla_t *sla)
{
    int64_t h = sla->cfg->horizon_ms;
    return h <= 0 || sla->watermark < INT64_MIN + h ? INT64_MIN : sla->watermark - h;
}

/* After an event was applied: the watermark moves up to its time. */
void sla_watermark_raise(funnel_sla_t *sla, int64_t t)
{
    sla->watermark = t > sla->watermark ? t : sla->watermark;
}

/* Refuses an event older than the cutoff that starts or changes an instance of a policy whose
 * key has no instance kept from at or before its time (FUNNEL_EREFUSED); 0 for every other
 * event. Costs nothing for an event inside the horizon. */
int sla_horizon_check(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env)
{
    int64_t t = env->occurred_at_ms, cut = cutoff(sla);
    if (t >= cut)
        return 0;
    for (size_t i = 0; i < sla->cfg->n_policies; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        char kbuf[64];
        inst_t first;
        bool found;
        if (!sla_starts(p, env) && !sla_kinds_of(p, env))
            continue;
        const char *key = funnel_sla_field(env, p->key, kbuf, sizeof kbuf);
        if (!*key || strlen(key) > FUNNEL_ID_MAX)
            continue;
        int rc = sla_key_row(sla, S_KEY_FIRST, p->name, key, &first, &found);
        if (rc)
            return rc;
        if (found && first.opened_at <= t)
            continue;
        char horizon[32];
        funnel_duration_format(sla->cfg->horizon_ms, horizon, sizeof horizon);
        return funnel_router_refuse(router, FUNNEL_REFUSE_ENGINE,
                                    "occurred_at_ms: %" PRId64 " is beyond the SLA horizon (%s"
                                    " before %" PRId64 ") and policy %s kept nothing of %s from"
                                    " then",
                                    t, horizon, sla->watermark, p->name, key);
    }
    return 0;
}

/* The wall time of the next prune pass: when the cutoff has passed the oldest stop of a met
 * instance (as last counted, or lowered since by sla_inst_met) or the oldest last change of a
 * live one (likewise, sla_idle_seen), else none. */
int64_t sla_prune_deadline(const funnel_sla_t *sla)
{
    int64_t cut = cutoff(sla);
    bool due = sla->oldest_stop < cut || sla->oldest_idle < cut;
    return cut != INT64_MIN && due ? sla->prune_at : INT64_MAX;
}

/* When a live instance's clock last changed (its start, last reset or resume, or its pause). */
int64_t sla_idle_at(const inst_t *in)
{
    return in->paused_at != NONE ? in->paused_at : in->anchor_at;
}

/* After a live instance was written: the expiry may be due sooner (a rollback leaves it lower:
 * one idle prune pass). */
void sla_idle_seen(funnel_sla_t *sla, const inst_t *in)
{
    if (in->state != ST_MET && sla_idle_at(in) < sla->oldest_idle)
        sla->oldest_idle = sla_idle_at(in);
}

/* Reads the ids of the live instances idle since before cut, oldest first (at most max): with
 * cut INT64_MAX and room for one, the oldest; *oldest is its last change (INT64_MAX: none). */
static int idle_candidates(funnel_sla_t *sla, int64_t cut, int64_t *ids, size_t max, size_t *n,
                           int64_t *oldest)
{
    sqlite3_stmt *s = sla_stmt(sla, S_IDLE_NEXT);
    int rc = SQLITE_DONE;
    sqlite3_bind_int64(s, 1, cut);
    sqlite3_bind_int64(s, 2, (int64_t)max);
    *n = 0;
    *oldest = INT64_MAX;
    while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!*n)
            *oldest = sqlite3_column_int64(s, 1);
        ids[(*n)++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    return *n == max || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Expires live instance id (idle since before the cutoff): the steps due before its expiry
 * first, as an event then would (sla_inst_apply). An instance whose version this build cannot
 * read waits, as it does for events, and is not counted in *expired. */
static int expire_one(funnel_sla_t *sla, funnel_router_t *router, int64_t id, int64_t now_ms,
                      size_t *expired)
{
    inst_t in;
    int rc = sla_inst_load(sla, id, &in);
    pver_t *v = rc ? NULL : sla_version_find(sla, in.policy, in.version);
    if (rc || !v)
        return rc;
    change_t c = {K_EXPIRE, sla_idle_at(&in) + sla->cfg->horizon_ms, "", NULL};
    ++*expired;
    return sla_inst_apply(sla, router, v, &in, &c, now_ms);
}

/* A met instance that prune_one deletes. */
typedef struct prune_row {
    char key[ID_BUF], policy[ID_BUF];
    inst_t in; /* id, state, stopped_at, opened_at */
} prune_row_t;

/* Deletes met instance r->in with its log up to its stop, its record of published steps and
 * the order violations it was taken in; its id is never given again. */
static int prune_one(funnel_sla_t *sla, const prune_row_t *r)
{
    static const enum stmt_id by_id[] = {S_DELETE, S_FIRED_DROP, S_DELETED_MAX, S_ORDER_PRUNE};
    int rc = 0;
    for (size_t i = 0; !rc && i < sizeof by_id / sizeof by_id[0]; i++) {
        sqlite3_stmt *s = sla_stmt(sla, by_id[i]);
        sqlite3_bind_int64(s, 1, r->in.id);
        rc = sla_step_done(s);
    }
    if (rc)
        return rc;
    sqlite3_stmt *s = sla_stmt(sla, S_LOG_PRUNE);
    sqlite3_bind_text(s, 1, r->policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, r->in.stopped_at);
    sla_log_last_forget(sla, r->policy, r->key);
    return sla_step_done(s);
}

/* Reads the met instances stopped before cut, oldest stop first (at most PRUNE_BATCH); with
 * cut INT64_MAX and room for one, the oldest stop of all. */
static int prune_candidates(funnel_sla_t *sla, int64_t cut, prune_row_t *out, size_t max, size_t *n)
{
    sqlite3_stmt *s = sla_stmt(sla, S_PRUNE_NEXT);
    int rc = SQLITE_DONE;
    sqlite3_bind_int64(s, 1, cut);
    *n = 0;
    while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        prune_row_t *r = &out[(*n)++];
        sla_col_text(s, 0, r->key);
        sla_col_text(s, 1, r->policy);
        r->in.id = sqlite3_column_int64(s, 2);
        r->in.stopped_at = sqlite3_column_int64(s, 3);
        r->in.state = ST_MET;
    }
    sqlite3_reset(s);
    return *n == max || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Counts the oldest stop of the met instances and the oldest last change of the live ones
 * again (sla_prune_deadline). */
int sla_oldest_stop_load(funnel_sla_t *sla)
{
    prune_row_t r;
    size_t n;
    int64_t id;
    int rc = prune_candidates(sla, INT64_MAX, &r, 1, &n);
    sla->oldest_stop = n ? r.in.stopped_at : INT64_MAX;
    return rc ? rc : idle_candidates(sla, INT64_MAX, &id, 1, &n, &sla->oldest_idle);
}

/* One timer pass of retention, inside the timer's transaction: stores the watermark, expires at
 * most PRUNE_BATCH idle instances and prunes at most PRUNE_BATCH met ones. The next pass comes
 * at once while a whole batch went, else after PRUNE_EVERY_MS once the cutoff has passed
 * another stop or last change. */
int sla_prune(funnel_sla_t *sla, funnel_router_t *router, int64_t now_ms)
{
    int64_t cut = cutoff(sla), ids[PRUNE_BATCH], oldest;
    size_t n = 0, n_idle = 0, expired = 0;
    prune_row_t *rows = malloc(PRUNE_BATCH * sizeof *rows);
    int rc = rows ? 0 : FUNNEL_ENOMEM;
    if (!rc && sla->watermark != INT64_MIN) {
        sqlite3_stmt *s = sla_stmt(sla, S_MARK_SET);
        sqlite3_bind_int64(s, 1, sla->watermark);
        rc = sla_step_done(s);
    }
    if (!rc && cut != INT64_MIN)
        rc = idle_candidates(sla, cut, ids, PRUNE_BATCH, &n_idle, &oldest);
    for (size_t i = 0; !rc && i < n_idle; i++)
        rc = expire_one(sla, router, ids[i], now_ms, &expired);
    if (!rc && cut != INT64_MIN)
        rc = prune_candidates(sla, cut, rows, PRUNE_BATCH, &n);
    for (size_t i = 0; !rc && i < n; i++) {
        /* Instances of a key follow one another, so its earliest is met and stopped at or
         * before this one, and goes first: its log rows are the oldest. A key listed twice
         * finds its next earliest the second time. */
        prune_row_t first = rows[i];
        bool found;
        rc = sla_key_row(sla, S_KEY_FIRST, rows[i].policy, rows[i].key, &first.in, &found);
        if (!rc && found && first.in.state == ST_MET && first.in.stopped_at < cut)
            rc = prune_one(sla, &first);
        else if (!rc && found && first.in.id != rows[i].in.id)
            rc = prune_one(sla, &rows[i]); /* overlapping instances: not made by this engine */
    }
    free(rows);
    bool full = n == PRUNE_BATCH || expired == PRUNE_BATCH;
    rc = rc || full ? rc : sla_oldest_stop_load(sla);
    if (!rc)
        sla->prune_at = full ? now_ms : now_ms + PRUNE_EVERY_MS;
    return rc;
}
