/* sla_order.c — processing order: for a policy with order = "fifo", the instances of a queue
 * (and priority) are due to be taken oldest first; stopping one while an older one of the same
 * queue and priority is open and running publishes sla.order_violated (README, "Requests and
 * processing order").
 *
 * Whether an instance B was skipped when A was taken is a fact of event time: B opened before A,
 * was not stopped by A's stop time, and was not paused then (its last pause, resume or reset up
 * to that time, read from the key's log, was not a pause). After any event of a fifo policy at
 * time t, the instances of the event's queues stopped at or after t are checked again, since
 * only they can see what changed; so an older request whose open arrives late is found skipped
 * by the ones taken after it, whatever the arrival order or batching. sla_order records every
 * pair (taken, skipped) published, so none is published twice; `current` says whether the pair
 * is in the set recomputed now (a late stop or pause can take a published one out of it). */
#include "sla_internal.h"
#include "funnel/grow.h"
#include "funnel/error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SKIPPED_MAX 20 /* skipped instances named per violation */

/* The (queue, priority) pairs of the instances of (policy, key). */
typedef struct qp {
    char queue[ID_BUF];
    int64_t priority;
} qp_t;

#define QP_MAX 8 /* distinct queues one key's instances are in: a reopen keeps the queue */

static int key_queues(funnel_sla_t *sla, const char *policy, const char *key, qp_t *out, size_t *n)
{
    sqlite3_stmt *s = sla_stmt(sla, S_ORDER_QUEUES);
    int rc;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, policy, -1, SQLITE_STATIC);
    for (*n = 0; (rc = sqlite3_step(s)) == SQLITE_ROW && *n < QP_MAX; (*n)++) {
        sla_col_text(s, 0, out[*n].queue);
        out[*n].priority = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Reads the rows of statement s (bound by the caller) into a growing array. */
static int rows_collect(sqlite3_stmt *s, inst_t **out, size_t *n, size_t max)
{
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max) {
        if (funnel_grow(out, &cap, *n + 1, sizeof **out, 8)) {
            sqlite3_reset(s);
            return FUNNEL_ENOMEM;
        }
        sla_inst_read(s, &(*out)[(*n)++]);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Marks the pair (taken, skipped) current; *fresh when it was never published. */
static int pair_mark(funnel_sla_t *sla, int64_t taken, int64_t skipped, bool *fresh)
{
    sqlite3_stmt *s = sla_stmt(sla, S_ORDER_ADD);
    sqlite3_bind_int64(s, 1, taken);
    sqlite3_bind_int64(s, 2, skipped);
    int rc = sla_step_done(s);
    *fresh = !rc && sqlite3_changes(sla->db) > 0;
    if (rc || *fresh)
        return rc;
    s = sla_stmt(sla, S_ORDER_CURRENT);
    sqlite3_bind_int64(s, 1, taken);
    sqlite3_bind_int64(s, 2, skipped);
    return sla_step_done(s);
}

/* Publishes sla.order_violated for taken, naming the skipped instances never named before. */
static int publish(funnel_sla_t *sla, funnel_router_t *router, const inst_t *taken,
                   const inst_t *skipped, size_t n, int64_t now_ms)
{
    funnel_envelope_t env;
    Funnel__V1__SlaRef ref, refs[SKIPPED_MAX], *ptrs[SKIPPED_MAX];
    Funnel__V1__SlaOrderViolated ov;
    char sla_id[24], ids[SKIPPED_MAX][24], event_id[96];
    funnel__v1__envelope__init(&env);
    funnel__v1__sla_order_violated__init(&ov);
    sla_ref_fill(&ref, sla_id, sla_version_find(sla, taken->policy, taken->version), taken);
    for (size_t i = 0; i < n; i++) {
        sla_ref_fill(&refs[i], ids[i], sla_version_find(sla, skipped[i].policy, skipped[i].version),
                     &skipped[i]);
        ptrs[i] = &refs[i];
    }
    /* The first skipped id makes the id unique: each pair goes out once. */
    snprintf(event_id, sizeof event_id, "sla-%" PRId64 "-order-%" PRId64, taken->id, skipped[0].id);
    env.event_id = event_id;
    env.occurred_at_ms = taken->stopped_at;
    env.source = "funneld";
    ov.sla = &ref;
    ov.skipped = ptrs;
    ov.n_skipped = n;
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_ORDER_VIOLATED;
    env.sla_order_violated = &ov;
    return funnel_router_emit(router, "sla.order_violated", &env, now_ms);
}

/* Recomputes the skipped set of one taken (met) instance and publishes what is new in it. */
static int check_taken(funnel_sla_t *sla, funnel_router_t *router, const inst_t *a, int64_t now_ms)
{
    inst_t *older = NULL, fresh[SKIPPED_MAX];
    size_t n = 0, n_fresh = 0;
    sqlite3_stmt *s = sla_stmt(sla, S_ORDER_FORGET_TAKEN);
    sqlite3_bind_int64(s, 1, a->id);
    int rc = sla_step_done(s);
    if (!rc) {
        s = sla_stmt(sla, S_ORDER_SKIPPED);
        sqlite3_bind_text(s, 1, a->policy, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, a->queue, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, a->priority);
        sqlite3_bind_int64(s, 4, a->opened_at);
        sqlite3_bind_int64(s, 5, a->stopped_at);
        sqlite3_bind_int(s, 6, SKIPPED_MAX);
        rc = rows_collect(s, &older, &n, SKIPPED_MAX);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        bool is_new;
        rc = pair_mark(sla, a->id, older[i].id, &is_new);
        if (!rc && is_new)
            fresh[n_fresh++] = older[i];
    }
    if (!rc && n_fresh)
        rc = publish(sla, router, a, fresh, n_fresh, now_ms);
    free(older);
    return rc;
}

/* After an event at time t concerning (p, key) of a fifo policy: every instance of the key's
 * queues taken at or after t is checked again. */
static int refresh(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_policy_t *p,
                   const char *key, int64_t t, int64_t now_ms)
{
    qp_t qp[QP_MAX];
    size_t n_qp = 0;
    int rc = key_queues(sla, p->name, key, qp, &n_qp);
    for (size_t i = 0; !rc && i < n_qp; i++) {
        inst_t *taken = NULL;
        size_t n = 0;
        sqlite3_stmt *s = sla_stmt(sla, S_ORDER_TAKEN);
        sqlite3_bind_text(s, 1, p->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, qp[i].queue, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, qp[i].priority);
        sqlite3_bind_int64(s, 4, t);
        rc = rows_collect(s, &taken, &n, SIZE_MAX);
        for (size_t k = 0; !rc && k < n; k++)
            rc = check_taken(sla, router, &taken[k], now_ms);
        free(taken);
    }
    return rc;
}

int sla_order_event(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                    int64_t now_ms)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < sla->cfg->n_policies; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        char buf[64];
        if (p->order != FUNNEL_SLA_ORDER_FIFO || (!sla_starts(p, env) && !sla_kinds_of(p, env)))
            continue;
        const char *key = funnel_sla_field(env, p->key, buf, sizeof buf);
        if (*key && strlen(key) <= FUNNEL_ID_MAX)
            rc = refresh(sla, router, p, key, env->occurred_at_ms, now_ms);
    }
    return rc;
}
