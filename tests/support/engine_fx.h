/* engine_fx.h — engines driven without funneld: one event in a transaction the way funneld's
 * batch runs it, the engine timers the way its timer runs them, and the outbox rows each
 * commit produced collected, decoded, for the test to read in order. */
#ifndef FUNNEL_TEST_ENGINE_FX_H
#define FUNNEL_TEST_ENGINE_FX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "funnel/codec.h"
#include "router.h"
#include "store.h"

#define FX_ENGINE_MAX_OUT 1024

typedef struct fx_engine {
    funnel_store_t *store;   /* the test's; not owned */
    funnel_router_t *router; /* the test's; not owned */
    const char *keep;        /* topic prefix of the outbox rows collected; NULL: none */
    funnel_envelope_t *out[FX_ENGINE_MAX_OUT];
    char topic[FX_ENGINE_MAX_OUT][32];
    size_t n_out; /* collected */
    size_t seen;  /* read by fx_engine_next */
} fx_engine_t;

/* Routes env inside the open transaction under a savepoint, as funneld's guarded batch does:
 * released when the router answers 0 or FUNNEL_EDUP and undo is false, else rolled back and the
 * router told. Frees env; returns the router's answer. */
int fx_engine_route_guarded(fx_engine_t *e, funnel_envelope_t *env, int64_t now, bool undo);

/* One event in a transaction of its own at arrival time now: fx_engine_route_guarded, COMMIT
 * (asserted), the outbox rows collected. Returns the router's answer. */
int fx_engine_route(fx_engine_t *e, funnel_envelope_t *env, int64_t now);

/* One event in a transaction that is then rolled back as a whole, as for a batch that failed
 * (no savepoint: the event's rows are in the transaction until the rollback). Returns the
 * router's answer. */
int fx_engine_route_undone(fx_engine_t *e, funnel_envelope_t *env, int64_t now);

/* The clock reaches now: runs the timers due, a transaction per pass, collecting. */
void fx_engine_tick(fx_engine_t *e, int64_t now);

/* Keeps the rows of the last COMMIT whose topic starts with e->keep and clears the list. */
void fx_engine_collect(fx_engine_t *e);

/* The next collected output not yet read; asserts there is one and that its topic is topic. */
funnel_envelope_t *fx_engine_next(fx_engine_t *e, const char *topic);
/* Asserts every collected output has been read. */
void fx_engine_no_more(const fx_engine_t *e);
/* Forgets every collected output. */
void fx_engine_out_clear(fx_engine_t *e);

#endif
