/* money.h — integer money: ISO 4217 codes and exact arithmetic on minor units.
 *
 * No float touches money. Functions that can overflow say so and return FUNNEL_EINVAL
 * instead of wrapping. */
#ifndef FUNNEL_MONEY_H
#define FUNNEL_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True if code is an active ISO 4217 alphabetic code ("EUR", "RUB"); case-sensitive. */
bool funnel_currency_valid(const char *code);

/* Rounding direction of funnel_money_scale. */
typedef enum funnel_round {
    FUNNEL_ROUND_DOWN = 0, /* toward zero (inputs are non-negative) */
    FUNNEL_ROUND_UP = 1,   /* away from zero */
} funnel_round_t;

/* *out = amount * num / den, rounded as dir says, computed exactly in 128 bits. The one place
 * where basis points and pro-rata shares meet minor units (see ledger_plan.h for the rule).
 * amount and num must be >= 0 and den > 0. Returns 0 or FUNNEL_EINVAL (bad argument, or the
 * result does not fit in int64). */
int funnel_money_scale(int64_t amount, int64_t num, int64_t den, funnel_round_t dir, int64_t *out);

/* Splits amount into n parts proportional to weights[0..n), in whole minor units that sum
 * exactly to amount (largest-remainder rule, also called Hamilton's method):
 *   1. every part first gets floor(|amount| * w_i / W), W the sum of the weights;
 *   2. the units still missing (fewer than n) go one each to the parts with the largest
 *      remainders (|amount| * w_i mod W); equal remainders go to the lower index first.
 * A part with weight 0 gets 0. A negative amount is split as its magnitude and negated, so
 * split(-a) == -split(a) part by part. Exact for every int64 amount (INT64_MIN included) and
 * every uint64 weight: intermediate products are 128-bit. parts[] is written on success only.
 * Returns 0, FUNNEL_EINVAL (n == 0 or every weight 0) or FUNNEL_ENOMEM. */
int funnel_money_split(int64_t amount, const uint64_t *weights, size_t n, int64_t *parts);

#endif
