/* sla.h — the SLA engine: persistent SLA timers on business calendars, warnings, multi-level
 * escalation, acknowledgements, and the marketing lead quota.
 *
 * Policies come from the `sla { ... }` section (sla_config.h). Every SLA instance is a row of
 * sla_instance; an in-memory min-heap holds the next fire time of each open one and is rebuilt
 * from the rows at start; entries a rollback leaves behind are dropped when they come due.
 * Deadlines are event times: a stop that occurred at or before the due time is on time whenever
 * it arrives; warnings and levels that came due while funneld was down fire at once, carrying
 * their original times, and those due before an event of their key are published before that
 * event is applied; the timer fires a step no sooner than the late grace after its instance's
 * last event arrived (sla_config.h), so batching never changes what comes out. A stop, reset, pause
 * or resume that arrives before the start of its instance is held and applied when the start
 * arrives; from a key's first start on its events are logged, and one arriving out of event-time
 * order makes the engine recompute that key's instances from the log, so they end as if the events
 * had come in event-time order (published outputs are not repeated: README, "Arrival order").
 * Outputs (sla.warning, sla.escalation, sla.met, sla.order_violated, sla.quota_missed) go through
 * the router's outbox, so they are published only after COMMIT. The engine never reads the clock:
 * now_ms comes from the caller.
 *
 * A policy is stored as a numbered version the first time an instance starts under a new
 * definition; an instance keeps its version for life, so a reload changes new instances only. */
#ifndef FUNNEL_SLA_H
#define FUNNEL_SLA_H

#include <stddef.h>
#include <stdint.h>

#include "funnel/log.h"
#include "router.h"
#include "sla_config.h"
#include "store.h"

/* Due work handled per on_timer transaction at most; the rest runs in the next one, at once. */
#define FUNNEL_SLA_TIMER_BATCH 5000

/* How long (event time before the arrival time) a stop, reset, pause or resume that found no
 * instance is kept for the start it may belong to. Such events are applied, in event-time order,
 * to the instance their start opens when it occurred at or before them; older ones are dropped
 * (sla.c, hold()). */
#define FUNNEL_SLA_HOLD_MS (30LL * 24 * 3600 * 1000)

typedef struct funnel_sla funnel_sla_t;

/* Creates the engine: migrates its tables in store (outside a batch), loads the stored policy
 * versions and builds the timer heap. cfg is borrowed and read per event: it must outlive the
 * engine (funneld passes its live config, which reloads replace in place). log may be NULL.
 * Returns 0, FUNNEL_ESTORE (logged) or FUNNEL_ENOMEM. */
int funnel_sla_new(funnel_store_t *store, const funnel_sla_config_t *cfg, const funnel_log_t *log,
                   funnel_sla_t **out);
void funnel_sla_destroy(funnel_sla_t **sla);

/* Fills engine with this engine's router hooks (on_event, next_deadline, on_timer,
 * on_rollback); self is sla. */
void funnel_sla_hooks(funnel_sla_t *sla, funnel_engine_t *engine);

/* Timer entries held in memory (open instances, plus stale entries not yet discarded). */
size_t funnel_sla_timers(const funnel_sla_t *sla);

/* How often the engine has compiled the stored policy versions and rebuilt its timer heap from
 * the rows since it was created (once each at creation), for tests and diagnostics: a rollback
 * redoes only what it may have made wrong. */
void funnel_sla_reloads(const funnel_sla_t *sla, size_t *version_loads, size_t *heap_rebuilds);

/* How often the engine has read the last log row of a (policy, key) and the events held for a
 * start from the store, for tests and diagnostics: a key's recent events find the first in
 * memory, and a start of a key known to have nothing held skips the second. */
void funnel_sla_store_reads(const funnel_sla_t *sla, size_t *log_reads, size_t *held_reads);

/* Registers on db the SQL functions the triggers that keep sla_compliance call (sla_times,
 * sla_times_of; sla_compliance.c): every connection that writes sla_instance needs them, which
 * funnel_sla_new does for its store's. 0 or FUNNEL_ESTORE. */
int funnel_sla_sql_functions(sqlite3 *db);

/* The registry's hooks (engines/registry.c): section is the live funnel_sla_config_t. */
int funnel_sla_engine_create(funnel_store_t *store, const void *section, const funnel_log_t *log,
                             funnel_engine_t *engine);
void funnel_sla_engine_destroy(void *self);

#endif
