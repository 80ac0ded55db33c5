/* money.c — ISO 4217 codes and exact integer money arithmetic. */
#include "funnel/money.h"
#include "funnel/error.h"

#include <stdlib.h>
#include <string.h>

/* Active ISO 4217 alphabetic codes (list one, 2024), sorted for bsearch: a code inserted out
 * of order hides its neighbours (tests/test_money.c looks every code up). Funds and precious
 * metals (XAU, XDR, ...) are left out on purpose: nobody pays a commission in them. */
static const char currency_codes[][4] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
};

static int code_cmp(const void *key, const void *elem)
{
    return strncmp(key, elem, 3);
}

bool funnel_currency_valid(const char *code)
{
    if (!code || strlen(code) != 3)
        return false;
    return bsearch(code, currency_codes, sizeof currency_codes / sizeof currency_codes[0],
                   sizeof currency_codes[0], code_cmp) != NULL;
}

int funnel_money_scale(int64_t amount, int64_t num, int64_t den, funnel_round_t dir, int64_t *out)
{
    if (amount < 0 || num < 0 || den <= 0)
        return FUNNEL_EINVAL;
    /* The product of two int64 fits in 127 bits: no intermediate can wrap. */
    unsigned __int128 p = (unsigned __int128)amount * (unsigned __int128)num;
    unsigned __int128 q = p / (unsigned __int128)den;
    if (dir == FUNNEL_ROUND_UP && p % (unsigned __int128)den)
        q++;
    if (q > (unsigned __int128)INT64_MAX)
        return FUNNEL_EINVAL;
    *out = (int64_t)q;
    return 0;
}

/* One part's claim on the units the floors left over. */
typedef struct split_rem {
    unsigned __int128 rem; /* |amount| * w_i mod W */
    size_t idx;
} split_rem_t;

/* Largest remainder first; equal remainders by index, so the result never depends on qsort. */
static int split_rem_cmp(const void *a, const void *b)
{
    const split_rem_t *x = a, *y = b;
    if (x->rem != y->rem)
        return x->rem > y->rem ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The floors are computed in place and the leftover units handed out by one sort of the
 * remainders: O(n log n), and no float anywhere (see money.h for the rule). */
int funnel_money_split(int64_t amount, const uint64_t *weights, size_t n, int64_t *parts)
{
    unsigned __int128 total = 0;
    if (n == 0 || !weights || !parts)
        return FUNNEL_EINVAL;
    for (size_t i = 0; i < n; i++)
        total += weights[i];
    if (total == 0)
        return FUNNEL_EINVAL;
    /* |INT64_MIN| does not fit in int64 but does in uint64. */
    uint64_t mag = amount < 0 ? (uint64_t)(-(amount + 1)) + 1 : (uint64_t)amount;
    split_rem_t *rems = malloc(n * sizeof *rems);
    if (!rems)
        return FUNNEL_ENOMEM;
    uint64_t given = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned __int128 p = (unsigned __int128)mag * weights[i];
        rems[i].rem = p % total;
        rems[i].idx = i;
        /* A floor never exceeds mag, so it fits in uint64. */
        uint64_t floor_part = (uint64_t)(p / total);
        parts[i] = (int64_t)floor_part; /* reinterpreted below when it is 2^63 */
        given += floor_part;
    }
    uint64_t left = mag - given; /* < n: each floor lost less than one unit */
    if (left)
        qsort(rems, n, sizeof *rems, split_rem_cmp);
    for (size_t k = 0; k < left; k++)
        parts[rems[k].idx] = (int64_t)((uint64_t)parts[rems[k].idx] + 1);
    free(rems);
    if (amount < 0)
        for (size_t i = 0; i < n; i++)
            /* Negating the magnitude 2^63 (only when amount is INT64_MIN) gives INT64_MIN. */
            parts[i] = parts[i] == INT64_MIN ? INT64_MIN : -parts[i];
    return 0;
}
