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
#include "store.h"

typedef struct funnel_router funnel_router_t;

typedef struct funnel_engine {
    const char *name;
    void *self;
    /* Reacts to one newly recorded event. Returns 0 or a negative error, in which case the
     * event's savepoint is rolled back. A valid event the engine cannot apply (an amount would
     * overflow, it names something unknown) is refused with funnel_router_refuse(), whose
     * FUNNEL_EREFUSED the engine returns: the event is then answered "rejected" with that
     * reason, dead-lettered and counted while the rest of the batch commits. FUNNEL_EINVAL
     * (what the money helpers return on overflow) is refused the same way, with a generic
     * reason when the engine gave none. Any other error leaves the event unacknowledged, for
     * the sender to retry (a store failure may pass). Its only effects
     * must be rows in the transaction: when any event of a batch fails, funneld rolls the
     * batch back and runs it again, so on_event may see an event a second time. */
    int (*on_event)(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                    int64_t now_ms);
    /* Optional (NULL for engines without timers). The earliest event time at which on_timer
     * has work, or INT64_MAX for none; read outside transactions, so kept in memory. */
    int64_t (*next_deadline)(void *self);
    /* Optional. Does the work due at or before now_ms inside a transaction of its own, like
     * on_event (emitting through funnel_router_emit); a failure rolls it back for a retry. */
    int (*on_timer)(void *self, funnel_router_t *router, int64_t now_ms);
    /* Optional. The transaction the engine last wrote in was rolled back: in-memory state
     * (such as a timer heap) must return to what the database holds. */
    void (*on_rollback)(void *self);
    /* Optional. Items the engine holds open (SLA: instances not met), for metrics. */
    int64_t (*open_items)(void *self);
} funnel_engine_t;

#define FUNNEL_ROUTER_MAX_ENGINES 8

/* The router borrows store; it must outlive the router. */
int funnel_router_new(funnel_store_t *store, funnel_router_t **out);
void funnel_router_destroy(funnel_router_t **router);

/* Registers an engine (copied); called in registration order. 0 or FUNNEL_EINVAL when full. */
int funnel_router_add_engine(funnel_router_t *router, const funnel_engine_t *engine);

funnel_store_t *funnel_router_store(funnel_router_t *router);

/* Records and routes one validated event whose raw bytes are envelope[0..len).
 * Returns 0, FUNNEL_EDUP (already recorded; nothing changed), FUNNEL_EREFUSED (an engine
 * cannot apply it: see funnel_router_refusal; the caller rolls the event's savepoint back and
 * dead-letters it), or an error. */
int funnel_router_apply(funnel_router_t *router, const funnel_envelope_t *env, const char *topic,
                        const uint8_t *envelope, size_t len, int64_t now_ms);

/* funnel_router_apply for an event whose source funneld set to the authenticated client's
 * name: claimed_source, what the envelope said, is recorded beside it for audit. */
int funnel_router_apply_claimed(funnel_router_t *router, const funnel_envelope_t *env,
                                const char *claimed_source, const char *topic,
                                const uint8_t *envelope, size_t len, int64_t now_ms);

/* For engines, inside on_event: records why the event being applied cannot be applied and
 * returns FUNNEL_EREFUSED for the engine to return. code says what kind of refusal it is
 * (FUNNEL_REFUSE_OVERFLOW, FUNNEL_REFUSE_ENGINE, ...); the text, printf-style, should name the
 * event's field or entity at fault. The sender sees "rejected: <code name>: <text>". */
int funnel_router_refuse(funnel_router_t *router, funnel_refusal_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Why the last funnel_router_apply() returned FUNNEL_EREFUSED; borrowed, valid until the next
 * apply. */
const funnel_refusal_t *funnel_router_refusal(const funnel_router_t *router);

/* The earliest deadline over all engines, INT64_MAX for none. */
int64_t funnel_router_next_deadline(funnel_router_t *router);

/* Runs on_timer of every engine whose deadline is at or before now_ms. Must be inside a
 * transaction. 0 or the first error. */
int funnel_router_fire_timers(funnel_router_t *router, int64_t now_ms);

/* Engine i's name and open items; FUNNEL_ENOTFOUND past the last engine or when the engine
 * does not count open items. */
int funnel_router_open_items(funnel_router_t *router, size_t i, const char **name, int64_t *open);

/* Tells every engine that the current transaction was rolled back (see on_rollback). */
void funnel_router_rolled_back(funnel_router_t *router);

/* Packs env and appends it to the outbox under topic; for engines. 0 or an error. */
int funnel_router_emit(funnel_router_t *router, const char *topic, const funnel_envelope_t *env,
                       int64_t now_ms);

#endif
