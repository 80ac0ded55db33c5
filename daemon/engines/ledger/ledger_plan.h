/* ledger_plan.h — the commission plan (the `commission { ... }` config section) and the pure
 * arithmetic the ledger builds on: rates in force at an event time, terms, rounding.
 *
 * Nothing here touches the database, a socket or the clock; every function is deterministic in
 * its arguments, which is what lets the ledger reach the same state in any arrival order.
 * Strings and arrays of a funnel_commission_config_t are owned by it (freed by
 * funnel_commission_config_clear). */
#ifndef FUNNEL_LEDGER_PLAN_H
#define FUNNEL_LEDGER_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FUNNEL_BP_MAX 10000 /* 100 % in basis points */

/* A per-rep rate override: from from_ms on (event time), payments earn rate_bp for rep. */
typedef struct funnel_commission_rate {
    char *rep;       /* owned */
    int64_t rate_bp; /* 0..FUNNEL_BP_MAX */
    int64_t from_ms; /* UTC midnight of the `from` date */
} funnel_commission_rate_t;

/* The `commission` config section. Read per event by the ledger, so SIGHUP changes apply to
 * postings made afterwards; a rate, once used for a payment, is frozen in the ledger. */
typedef struct funnel_commission_config {
    int64_t default_rate_bp;         /* trailing rate for reps without an override in force */
    int64_t term_months;             /* months after the handoff that payments earn; 0: for ever */
    int64_t cap_minor;               /* most a client can earn each beneficiary in accruals, per
                                        currency, in minor units; 0: no cap */
    int64_t account_manager_rate_bp; /* the account manager's rate; 0: none */
    funnel_commission_rate_t *rates; /* overrides, sorted by (rep, from_ms); owned */
    size_t n_rates;
} funnel_commission_config_t;

/* Section hooks of the engine registry (core/engine.h) (void * is a funnel_commission_config_t *).
 * parse reads a libconfig group; 0, FUNNEL_ECONFIG with err, or FUNNEL_ENOMEM; it writes the
 * section only on success. The defaults pay nothing (every rate 0) until a plan is configured. */
int funnel_commission_config_defaults(void *sec);
struct config_setting_t;
int funnel_commission_config_parse(const struct config_setting_t *group, void *sec, char *err,
                                   size_t err_len);
void funnel_commission_config_clear(void *sec);
void funnel_commission_config_print(const void *sec, FILE *out);

/* The rep's rate in force at at_ms: the override with the latest from_ms <= at_ms, else the
 * default rate. */
int64_t funnel_commission_rate_at(const funnel_commission_config_t *plan, const char *rep,
                                  int64_t at_ms);

/* The end (exclusive) of a term of `months` starting at start_ms: the same day of the month and
 * time of day `months` later in UTC, clamped to the last day of a shorter month (Jan 31 + 1
 * month = Feb 28/29). months <= 0 returns INT64_MAX (no end). */
int64_t funnel_commission_term_end(int64_t start_ms, int64_t months);

/* The rounding rule of the whole ledger, in one place. A commission is amount * rate_bp /
 * 10000 rounded DOWN to the minor unit (the company never pays a fraction it does not owe); a
 * clawback of accrued A for cumulative refunds F of a payment P is A * F / P rounded UP, computed
 * on the cumulative refund and differenced, so repeated partial refunds sum exactly and the
 * total never exceeds A. Both go through funnel_money_scale. Returns 0 or FUNNEL_EINVAL
 * (negative input, or a result that does not fit). */
int funnel_commission_accrual(int64_t amount, int64_t rate_bp, int64_t *out);
int funnel_commission_clawback_total(int64_t accrued, int64_t refunded, int64_t paid, int64_t *out);

#endif
