/* router.c — record, then fan out to the engines, all inside the caller's transaction. */
#include "router.h"
#include "funnel/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct funnel_router {
    funnel_store_t *store; /* borrowed */
    funnel_engine_t engines[FUNNEL_ROUTER_MAX_ENGINES];
    size_t n_engines;
    funnel_refusal_t why; /* the last apply's refusal; code NONE while none was given */
};

int funnel_router_new(funnel_store_t *store, funnel_router_t **out)
{
    funnel_router_t *r = calloc(1, sizeof *r);
    if (!r)
        return FUNNEL_ENOMEM;
    r->store = store;
    *out = r;
    return 0;
}

void funnel_router_destroy(funnel_router_t **router)
{
    if (router && *router) {
        free(*router);
        *router = NULL;
    }
}

int funnel_router_add_engine(funnel_router_t *r, const funnel_engine_t *engine)
{
    if (r->n_engines == FUNNEL_ROUTER_MAX_ENGINES || !engine->on_event)
        return FUNNEL_EINVAL;
    r->engines[r->n_engines++] = *engine;
    return 0;
}

funnel_store_t *funnel_router_store(funnel_router_t *r)
{
    return r->store;
}

int funnel_router_refuse(funnel_router_t *r, funnel_refusal_code_t code, const char *fmt, ...)
{
    int n = snprintf(r->why.text, sizeof r->why.text, "%s: ", funnel_refusal_name(code));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why.text + n, sizeof r->why.text - (size_t)n, fmt, ap);
    va_end(ap);
    r->why.code = code;
    return FUNNEL_EREFUSED;
}

const funnel_refusal_t *funnel_router_refusal(const funnel_router_t *r)
{
    return &r->why;
}

/* One contract for every engine (router.h): an event it cannot apply is refused with a reason,
 * never left failing in silence for its sender to retry for ever. */
static int engine_refused(funnel_router_t *r, const funnel_engine_t *e, int rc)
{
    if (rc != FUNNEL_EREFUSED && rc != FUNNEL_EINVAL)
        return rc;
    if (r->why.code == FUNNEL_REFUSE_NONE)
        funnel_router_refuse(r, FUNNEL_REFUSE_ENGINE, "the %s engine cannot apply this event: %s",
                             e->name, funnel_strerror(rc));
    return FUNNEL_EREFUSED;
}

int funnel_router_apply(funnel_router_t *r, const funnel_envelope_t *env, const char *topic,
                        const uint8_t *envelope, size_t len, int64_t now_ms)
{
    return funnel_router_apply_claimed(r, env, NULL, topic, envelope, len, now_ms);
}

int funnel_router_apply_claimed(funnel_router_t *r, const funnel_envelope_t *env,
                                const char *claimed_source, const char *topic,
                                const uint8_t *envelope, size_t len, int64_t now_ms)
{
    funnel_event_row_t row = {
        .claimed_source = claimed_source,
        .event_id = env->event_id,
        .topic = topic,
        .occurred_at_ms = env->occurred_at_ms,
        .received_at_ms = now_ms,
        .source = env->source,
        .envelope = envelope,
        .envelope_len = len,
    };
    r->why = (funnel_refusal_t){.code = FUNNEL_REFUSE_NONE};
    int64_t event_seq = 0;
    int rc = funnel_store_event_record(r->store, &row, &event_seq);
    if (rc)
        return rc;
    /* The input is republished as received: subscribers get the publisher's exact bytes, which
     * the events row holds already. */
    if ((rc = funnel_store_outbox_append_event(r->store, event_seq, topic, envelope, len, now_ms,
                                               NULL)))
        return rc;
    for (size_t i = 0; i < r->n_engines; i++)
        if ((rc = r->engines[i].on_event(r->engines[i].self, r, env, now_ms)))
            return engine_refused(r, &r->engines[i], rc);
    return 0;
}

int64_t funnel_router_next_deadline(funnel_router_t *r)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < r->n_engines; i++) {
        const funnel_engine_t *e = &r->engines[i];
        int64_t d = e->next_deadline ? e->next_deadline(e->self) : INT64_MAX;
        next = d < next ? d : next;
    }
    return next;
}

int funnel_router_fire_timers(funnel_router_t *r, int64_t now_ms)
{
    for (size_t i = 0; i < r->n_engines; i++) {
        const funnel_engine_t *e = &r->engines[i];
        if (!e->on_timer || !e->next_deadline || e->next_deadline(e->self) > now_ms)
            continue;
        int rc = e->on_timer(e->self, r, now_ms);
        if (rc)
            return rc;
    }
    return 0;
}

int funnel_router_open_items(funnel_router_t *r, size_t i, const char **name, int64_t *open)
{
    if (i >= r->n_engines || !r->engines[i].open_items)
        return FUNNEL_ENOTFOUND;
    *name = r->engines[i].name;
    *open = r->engines[i].open_items(r->engines[i].self);
    return 0;
}

void funnel_router_rolled_back(funnel_router_t *r)
{
    for (size_t i = 0; i < r->n_engines; i++)
        if (r->engines[i].on_rollback)
            r->engines[i].on_rollback(r->engines[i].self);
}

int funnel_router_emit(funnel_router_t *r, const char *topic, const funnel_envelope_t *env,
                       int64_t now_ms)
{
    size_t len = funnel__v1__envelope__get_packed_size(env);
    uint8_t stack[1024];
    uint8_t *buf = len <= sizeof stack ? stack : malloc(len);
    if (!buf)
        return FUNNEL_ENOMEM;
    funnel__v1__envelope__pack(env, buf);
    int rc = funnel_store_outbox_append(r->store, topic, buf, len, now_ms, NULL);
    if (buf != stack)
        free(buf);
    return rc;
}
