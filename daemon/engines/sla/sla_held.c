/* sla_held.c — events of an SLA key that arrived before the start of their instance, kept until
 * the start comes and then applied in event-time order (see sla.c for the model). */
#include "sla_internal.h"
#include "funnel/error.h"

#include <stdlib.h>
#include <string.h>

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
 * arrives later than that after its stop opens an instance the stop no longer reaches.
 *
 * Policies whose logged[i] is set are skipped (logged NULL: none is): their key has a log, the
 * event is in it and arrived in order, so a start that comes later either occurred before it,
 * arrives late and replays the log (sla_late_event), or occurred after it and takes no held
 * event of an earlier time (sla_apply_held). Holding it would only cost writes. */
int sla_hold(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms, const bool *logged)
{
    inst_t *live = malloc(LIVE_MAX * sizeof *live);
    int rc = live ? 0 : FUNNEL_ENOMEM;
    int64_t t = env->occurred_at_ms, horizon = now_ms - FUNNEL_SLA_HOLD_MS;
    bool held = false;
    for (size_t i = 0; !rc && i < sla->cfg->n_policies; i++) {
        const funnel_sla_policy_t *p = &sla->cfg->policies[i];
        int kinds = sla_kinds_of(p, env);
        char buf[64];
        const char *key = kinds ? funnel_sla_field(env, p->key, buf, sizeof buf) : "";
        size_t n = 0;
        bool taken = false;
        if (!*key || strlen(key) > FUNNEL_ID_MAX || t < horizon || (logged && logged[i]) ||
            (rc = sla_live_read(sla, key, live, &n)))
            continue;
        for (size_t k = 0; k < n && !taken; k++)
            taken = strcmp(live[k].policy, p->name) == 0 && sla_inst_takes(&live[k], t);
        if (taken)
            continue;
        sqlite3_stmt *s = sla_stmt(sla, S_HOLD);
        sqlite3_bind_text(s, 1, p->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, t);
        sqlite3_bind_text(s, 4, env->event_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 5, kinds);
        char obuf[64];
        if (kinds & K_ASSIGN)
            sqlite3_bind_text(s, 6, funnel_sla_field(env, p->owner, obuf, sizeof obuf), -1,
                              SQLITE_TRANSIENT);
        rc = sla_step_done(s);
        sla_held_added(sla, p->name, key);
        held = true;
    }
    free(live);
    if (!rc && held) {
        sqlite3_stmt *s = sla_stmt(sla, S_HOLD_PRUNE);
        sqlite3_bind_int64(s, 1, horizon);
        rc = sla_step_done(s);
    }
    return rc;
}

/* One held event, as read before the rows it names are changed. */
typedef struct held {
    int64_t id, occurred_at;
    int kinds;
    char event_id[ID_BUF];
    char owner[ID_BUF]; /* the new owner of a reassignment */
} held_t;

#define HELD_BATCH 64 /* the LIMIT of S_HELD */

/* Gives a new instance the events held for its policy and key that occurred at or after its
 * start, in event-time order (ties by event_id), as if they had arrived after it. It stops at
 * a stop: later events belong to a later instance, which replays them from the key's log. The
 * key's held events then leave the table. Sets *applied when at least one event was applied. */
int sla_apply_held(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, inst_t *in,
                   int64_t now_ms, bool *applied)
{
    *applied = false;
    if (sla_held_none(sla, in->policy, in->key))
        return 0;
    held_t *batch = malloc(HELD_BATCH * sizeof *batch);
    int rc = batch ? 0 : FUNNEL_ENOMEM;
    size_t n = HELD_BATCH;
    while (!rc && n == HELD_BATCH && in->state != ST_MET) {
        sqlite3_stmt *s = sla_stmt(sla, S_HELD);
        sqlite3_bind_text(s, 1, in->policy, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, in->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, in->opened_at);
        sla->held_reads++;
        for (n = 0; n < HELD_BATCH && (rc = sqlite3_step(s)) == SQLITE_ROW; n++) {
            batch[n].id = sqlite3_column_int64(s, 0);
            batch[n].occurred_at = sqlite3_column_int64(s, 1);
            sla_col_text(s, 2, batch[n].event_id);
            batch[n].kinds = sqlite3_column_int(s, 3);
            sla_col_text(s, 4, batch[n].owner);
        }
        sqlite3_reset(s);
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
        for (size_t i = 0; !rc && i < n && in->state != ST_MET; i++) {
            change_t c = {batch[i].kinds, batch[i].occurred_at, batch[i].event_id, batch[i].owner};
            rc = sla_inst_apply(sla, router, v, in, &c, now_ms);
            s = sla_stmt(sla, S_HELD_DROP);
            sqlite3_bind_int64(s, 1, batch[i].id);
            rc = rc ? rc : sla_step_done(s);
            *applied = true;
        }
    }
    free(batch);
    if (rc)
        return rc;
    /* What is left (before the start, or after its stop) is in the key's log now, which is
     * where a later start finds it (sla_hold). */
    sqlite3_stmt *s = sla_stmt(sla, S_HELD_CLEAR);
    sqlite3_bind_text(s, 1, in->policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, in->key, -1, SQLITE_STATIC);
    return sla_step_done(s);
}
