/* engine_fx.c — see engine_fx.h. */
#include "engine_fx.h"

#include "harness.h"

#include "funnel/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fx_engine_route_guarded(fx_engine_t *e, funnel_envelope_t *env, int64_t now, bool undo)
{
    size_t len;
    uint8_t *raw = fx_pack(env, &len);
    cr_assert_eq(funnel_store_savepoint(e->store), 0, "%s", funnel_store_errmsg(e->store));
    int rc = funnel_router_apply(e->router, env, funnel_topic_name(env->body_case), raw, len, now);
    if ((rc == 0 || rc == FUNNEL_EDUP) && !undo) {
        cr_assert_eq(funnel_store_savepoint_release(e->store), 0);
    } else {
        cr_assert_eq(funnel_store_savepoint_rollback(e->store), 0);
        funnel_router_rolled_back(e->router);
    }
    free(raw);
    funnel_envelope_free(&env);
    return rc;
}

int fx_engine_route(fx_engine_t *e, funnel_envelope_t *env, int64_t now)
{
    cr_assert_eq(funnel_store_begin(e->store), 0);
    int rc = fx_engine_route_guarded(e, env, now, false);
    cr_assert_eq(funnel_store_commit(e->store), 0, "%s", funnel_store_errmsg(e->store));
    fx_engine_collect(e);
    return rc;
}

int fx_engine_route_undone(fx_engine_t *e, funnel_envelope_t *env, int64_t now)
{
    size_t len;
    uint8_t *raw = fx_pack(env, &len);
    cr_assert_eq(funnel_store_begin(e->store), 0);
    int rc = funnel_router_apply(e->router, env, funnel_topic_name(env->body_case), raw, len, now);
    funnel_store_rollback(e->store);
    funnel_router_rolled_back(e->router);
    free(raw);
    funnel_envelope_free(&env);
    return rc;
}

void fx_engine_tick(fx_engine_t *e, int64_t now)
{
    for (int pass = 0; pass < 100 && funnel_router_next_deadline(e->router) <= now; pass++) {
        cr_assert_eq(funnel_store_begin(e->store), 0);
        cr_assert_eq(funnel_router_fire_timers(e->router, now), 0, "%s",
                     funnel_store_errmsg(e->store));
        cr_assert_eq(funnel_store_commit(e->store), 0);
        fx_engine_collect(e);
    }
}

void fx_engine_collect(fx_engine_t *e)
{
    const funnel_outbox_row_t *rows;
    size_t n = funnel_store_outbox_pending(e->store, &rows);
    for (size_t i = 0; e->keep && i < n; i++) {
        if (strncmp(rows[i].topic, e->keep, strlen(e->keep)) != 0)
            continue;
        cr_assert_lt(e->n_out, FX_ENGINE_MAX_OUT);
        e->out[e->n_out] = funnel__v1__envelope__unpack(NULL, rows[i].len, rows[i].envelope);
        cr_assert_not_null(e->out[e->n_out]);
        snprintf(e->topic[e->n_out], sizeof e->topic[e->n_out], "%s", rows[i].topic);
        e->n_out++;
    }
    funnel_store_outbox_pending_clear(e->store);
}

funnel_envelope_t *fx_engine_next(fx_engine_t *e, const char *topic)
{
    cr_assert_lt(e->seen, e->n_out, "expected %s, no more output", topic);
    cr_assert_str_eq(e->topic[e->seen], topic);
    return e->out[e->seen++];
}

void fx_engine_no_more(const fx_engine_t *e)
{
    cr_assert_eq(e->seen, e->n_out, "unexpected %s", e->seen < e->n_out ? e->topic[e->seen] : "");
}

void fx_engine_out_clear(fx_engine_t *e)
{
    for (size_t i = 0; i < e->n_out; i++)
        funnel_envelope_free(&e->out[i]);
    e->n_out = e->seen = 0;
}
