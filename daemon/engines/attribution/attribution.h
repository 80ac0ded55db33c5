/* attribution.h — credits every payment to the marketing touches that produced it, under nine
 * attribution models, to the minor unit.
 *
 * Three layers, each usable alone:
 *   - the models (attribution_model.c): pure functions from a journey's touch times and
 *     key moments to integer weights; no SQL, no allocation, no clock;
 *   - the configuration section `attribution { ... }` (attribution_config.c);
 *   - the engine (attribution.c): keeps touches, leads, handoffs, payments and refunds in
 *     its own tables and, inside the router's batch transaction, posts `attribution.credited`
 *     lines so that the credits of every payment always equal what in-order arrival of the same
 *     events would have produced.
 *
 * Journey. A client's journey is the touches of the lead named in its client.handed_off (the
 * earliest handoff by occurred_at_ms, then event_id, when there are several) whose time lies in
 * [handoff - lookback_days, handoff]. A touch's time is its at_ms, or the occurred_at_ms of the
 * event that carried it when at_ms is 0. Touches are ordered by time, then by touch id
 * ("<event_id>" for lead.touched, "<event_id>#<index>" for lead.created.touches[index]).
 *
 * Key moments, each an index into the journey (several may name the same touch):
 *   first   the first touch;
 *   created the last touch at or before the lead's creation (lead.created occurred_at_ms); the
 *           first touch when the lead.created is unknown or precedes every journey touch;
 *   sql     the last touch at or before the lead's earliest lead.qualified with stage SQL; the
 *           first touch when that precedes every journey touch; the last touch (the handoff
 *           is the latest moment the lead can have become SQL) when no SQL is known;
 *   last    the last touch before the handoff.
 *
 * Models, as shares of the payment:
 *   first_touch 100% first.          last_touch 100% last.          linear  equal shares.
 *   u_shaped    40% first, 40% created, 20% middle.
 *   w_shaped    30% first, 30% created, 30% sql, 10% middle.
 *   full_path   22.5% each to first, created, sql and last, 10% middle.
 *   time_decay  weight 2^(-(handoff - touch time) / half_life), normalised.
 *   j_shaped    20% first, 60% last, 20% middle.     inverse_j  60% first, 20% last, 20% middle.
 * "Middle" is every journey touch that is none of the model's own moments; the middle share is
 * split equally among them. Rules for small journeys and coinciding moments (one rule, no
 * special cases in code):
 *   - moments that fall on the same touch add their shares on that touch;
 *   - when no middle touch remains, the middle share is not given out and the moment shares
 *     are scaled up to 100% in their own proportions;
 *   hence one touch gets 100% in every model, and with two touches: first/last/linear as named;
 *   u_shaped 50/50 when the lead was created at the second touch, else 80/20 (the second is a
 *   middle touch); w_shaped and full_path likewise by where created and sql fall (e.g. 2/3 and
 *   1/3 for w_shaped when created is the first touch and sql the second); j_shaped 25/75;
 *   inverse_j 75/25; time_decay by the formula.
 *
 * Money. Each model's weights split the payment with funnel_money_split (largest remainder,
 * ties to the earlier touch), so the credits of one payment and model sum exactly to it. Lines
 * of zero credit are not posted. A payment whose client has no handoff, or whose journey is
 * empty, is credited 100% to one "(unattributed)" line. Refunds (payment.refunded, same
 * currency) are applied in (occurred_at_ms, refund_id) order and capped at the payment: after
 * refunds totalling R the payment's net credit per line is split(payment - R) in proportion to
 * the payment's own credits, and each refund posts the change of that net (negative; a full
 * refund returns every line to exactly zero). A refund that arrives before its payment waits.
 *
 * Late arrivals. Whenever an event changes what a payment should be credited (a touch,
 * creation, SQL qualification or handoff of its journey; the payment; a refund), the engine
 * recomputes the payment's wanted lines per model and per entry (the payment itself and each
 * refund), compares them with the sums already posted, and where they differ posts the exact
 * negation of every posted line (reversal = true) and then the wanted lines. The wanted lines
 * are a function of the set of events only, so any arrival order ends in the same credits,
 * with every credit dated at its payment's or refund's event time. The lines posted for one
 * entry under every model go out as one attribution.credited message (see docs/protocol.md). */
#ifndef FUNNEL_ATTRIBUTION_H
#define FUNNEL_ATTRIBUTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "funnel/attribution_report.h"
#include "funnel/log.h"
#include "router.h"
#include "store.h"

struct config_setting_t;

/* ---- models -------------------------------------------------------------------------- */

/* A journey as the models see it. Times in Unix ms. */
typedef struct funnel_attribution_journey {
    const int64_t *touch_at_ms; /* n touch times, ascending */
    size_t n;
    bool has_created;      /* lead.created known */
    int64_t created_at_ms; /* its occurred_at_ms */
    bool has_sql;          /* an SQL qualification known */
    int64_t sql_at_ms;     /* the earliest one's occurred_at_ms */
    int64_t half_life_ms;  /* time decay, > 0; ages are measured between touches (the
                            * ratios are those of ages measured to the handoff) */
} funnel_attribution_journey_t;

/* Indexes of the key moments (see the top of this file). */
typedef struct funnel_attribution_moments {
    size_t first, created, sql, last;
} funnel_attribution_moments_t;

/* The key moments of a journey with n >= 1. */
funnel_attribution_moments_t funnel_attribution_moments_find(const funnel_attribution_journey_t *j);

/* Fills weights[0..n) with the model's relative integer weights for the journey; they are
 * proportional to the shares described above (not normalised: split money with
 * funnel_money_split). At least one weight is non-zero. 0, or FUNNEL_EINVAL for n == 0, an
 * unknown model or half_life_ms <= 0. */
int funnel_attribution_weights(funnel_attribution_model_t model,
                               const funnel_attribution_journey_t *j, uint64_t *weights);

/* 2^(-age_ms / half_life_ms) in Q62 fixed point (2^62 is 1.0), within 4e-19 of the real value
 * (about 1.5 units of the last place), computed with integers only so every machine gets the
 * same bits. Time-decay credits are therefore within 1 minor unit of the real-valued split for
 * any amount up to 10^15 minor units (the weights move a share by less than 0.01 unit). age_ms < 0
 * counts as 0; very old ages give 0. half_life_ms must be > 0. */
uint64_t funnel_attribution_decay_q62(int64_t age_ms, int64_t half_life_ms);

/* ---- configuration: the `attribution { ... }` section of funneld.conf ---------------- */

typedef struct funnel_attribution_config {
    unsigned models;        /* bit (1 << model) set: post credits under that model */
    int64_t lookback_days;  /* touches this long before the handoff count, 1..3650 */
    int64_t half_life_days; /* time_decay half-life, 1..3650 */
} funnel_attribution_config_t;

/* The section hooks of the registry (core/engine.h); sec is a funnel_attribution_config_t. */
int funnel_attribution_config_defaults(void *sec);
int funnel_attribution_config_parse(const struct config_setting_t *group, void *sec, char *err,
                                    size_t err_len);
void funnel_attribution_config_clear(void *sec);
void funnel_attribution_config_print(const void *sec, FILE *out);

/* ---- the engine ------------------------------------------------------------------------ */

typedef struct funnel_attribution funnel_attribution_t;

/* Migrates the engine's tables (module "attribution") and prepares its statements. Borrows
 * store, cfg (read per event: reloads apply to the next recomputation) and log, which must
 * outlive the engine. Call outside a batch. 0, or FUNNEL_ESTORE / FUNNEL_ENOMEM (logged). */
int funnel_attribution_new(funnel_store_t *store, const funnel_attribution_config_t *cfg,
                           const funnel_log_t *log, funnel_attribution_t **out);
void funnel_attribution_destroy(funnel_attribution_t **engine);

/* The router's view: on_event reacts to lead.created, lead.touched, lead.qualified,
 * client.handed_off, payment.received and payment.refunded, ignores the rest, and returns 0 or
 * FUNNEL_ESTORE / FUNNEL_ENOMEM (the event is then rolled back). Must run inside the batch. */
int funnel_attribution_on_event(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                                int64_t now_ms);

/* The registry's hooks (engines/registry.c): section is the live funnel_attribution_config_t;
 * create fills *engine with a new engine as self. */
int funnel_attribution_engine_create(funnel_store_t *store, const void *section,
                                     const funnel_log_t *log, funnel_engine_t *engine);
void funnel_attribution_engine_destroy(void *self);

#endif
