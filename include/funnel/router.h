/* router.h — one accepted event through the engines, inside the batch transaction.
 *
 * The router records the event (dedup by event_id), lets each registered engine react to it
 * (engines write their own rows and emit derived output), and appends the event itself to the
 * outbox first so subscribers see cause before effect. Engines never touch sockets or the clock:
 * now_ms is passed in. Loop thread only. */
#ifndef FUNNEL_ROUTER_H
#define FUNNEL_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "funnel/codec.h"
#include "funnel/store.h"

typedef struct funnel_router funnel_router_t;

typedef struct funnel_engine {
    const char *name;
    void *self;
    /* Reacts to one newly recorded event. Returns 0 or a negative error, in which case the
     * event's savepoint is rolled back and the event is not acknowledged. */
    int (*on_event)(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                    int64_t now_ms);
} funnel_engine_t;

#define FUNNEL_ROUTER_MAX_ENGINES 8

/* The router borrows store; it must outlive the router. */
int funnel_router_new(funnel_store_t *store, funnel_router_t **out);
void funnel_router_destroy(funnel_router_t **router);

/* Registers an engine (copied); called in registration order. 0 or FUNNEL_EINVAL when full. */
int funnel_router_add_engine(funnel_router_t *router, const funnel_engine_t *engine);

funnel_store_t *funnel_router_store(funnel_router_t *router);

/* Records and routes one validated event whose raw bytes are envelope[0..len).
 * Returns 0, FUNNEL_EDUP (already recorded; nothing changed), or an error. */
int funnel_router_apply(funnel_router_t *router, const funnel_envelope_t *env, const char *topic,
                        const uint8_t *envelope, size_t len, int64_t now_ms);

/* Packs env and appends it to the outbox under topic; for engines. 0 or an error. */
int funnel_router_emit(funnel_router_t *router, const char *topic, const funnel_envelope_t *env,
                       int64_t now_ms);

#endif
