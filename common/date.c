/* date.c — UTC civil dates for configs, engines and reports (Howard Hinnant's
 * days_from_civil / civil_from_days): no time zones, no libc locale, no clock. */
#include "funnel/date.h"
#include "funnel/error.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MS_PER_DAY 86400000LL

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp + (mp < 10 ? 3 : -9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t days_in_month(int64_t y, int64_t m)
{
    int64_t ny = m == 12 ? y + 1 : y, nm = m == 12 ? 1 : m + 1;
    return days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1);
}

/* Floor division: event times before 1970 are refused upstream, but dates need not be. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t funnel_date_utc_ms(int64_t y, int64_t m, int64_t d)
{
    return days_from_civil(y, m, d) * MS_PER_DAY;
}

static bool parse_digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int funnel_date_parse(const char *text, int64_t *start_ms, int64_t *end_ms)
{
    int64_t y, m, d = 1;
    size_t len = text ? strlen(text) : 0;
    if ((len != 7 && len != 10) || text[4] != '-' || !parse_digits(text, 4, &y) ||
        !parse_digits(text + 5, 2, &m) || m < 1 || m > 12 || y < 1970)
        return FUNNEL_EINVAL;
    if (len == 10 &&
        (text[7] != '-' || !parse_digits(text + 8, 2, &d) || d < 1 || d > days_in_month(y, m)))
        return FUNNEL_EINVAL;
    *start_ms = funnel_date_utc_ms(y, m, d);
    if (len == 10)
        *end_ms = *start_ms + MS_PER_DAY;
    else
        *end_ms = funnel_date_utc_ms(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1);
    return 0;
}

void funnel_date_format(int64_t at_ms, char *out, size_t out_len)
{
    int64_t y, m, d;
    civil_from_days(floor_div(at_ms, MS_PER_DAY), &y, &m, &d);
    snprintf(out, out_len, "%04lld-%02lld-%02lld", (long long)y, (long long)m, (long long)d);
}

int64_t funnel_date_add_months(int64_t at_ms, int64_t months)
{
    int64_t day = floor_div(at_ms, MS_PER_DAY), tod = at_ms - day * MS_PER_DAY;
    int64_t y, m, d;
    civil_from_days(day, &y, &m, &d);
    int64_t idx = y * 12 + (m - 1) + months;
    y = floor_div(idx, 12);
    m = idx - y * 12 + 1;
    int64_t dim = days_in_month(y, m);
    return days_from_civil(y, m, d < dim ? d : dim) * MS_PER_DAY + tod;
}
