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

#endif
