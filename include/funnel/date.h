/* date.h — UTC calendar dates, shared by the config, funneld's engines and funnelctl.
 *
 * Dates are UTC civil days; "YYYY-MM" names a whole month. Times are Unix milliseconds. */
#ifndef FUNNEL_DATE_H
#define FUNNEL_DATE_H

#include <stddef.h>
#include <stdint.h>

/* Unix ms of 00:00 UTC on y-m-d (no validation beyond what civil arithmetic needs). */
int64_t funnel_date_utc_ms(int64_t y, int64_t m, int64_t d);

/* Parses "YYYY-MM-DD" or "YYYY-MM" (UTC). *start_ms is the first millisecond of that day or
 * month, *end_ms the first millisecond after it. Returns 0 or FUNNEL_EINVAL. */
int funnel_date_parse(const char *text, int64_t *start_ms, int64_t *end_ms);

/* Writes at_ms as "YYYY-MM-DD" (UTC) into out (at least 11 bytes). */
void funnel_date_format(int64_t at_ms, char *out, size_t out_len);

/* at_ms plus months calendar months (negative: back), at the same time of day; a day past the
 * end of the target month becomes its last day (Jan 31 + 1 month = Feb 28 or 29). */
int64_t funnel_date_add_months(int64_t at_ms, int64_t months);

#endif
