/* calendar.h — business calendars: working hours in an IANA time zone, holidays, extra working
 * days, and the business-time arithmetic SLA deadlines are computed with.
 *
 * A calendar is described by a funnel_calendar_spec_t (plain data, read from the config, owned
 * strings and arrays) and compiled into a funnel_calendar_t, which holds an ICU calendar for
 * the time zone. Nothing here reads the clock or global state (no TZ, no localtime): every
 * result depends on the arguments alone, so the same events give the same deadlines anywhere.
 * A compiled calendar is used by one thread at a time (ICU calendars are mutable scratch). */
#ifndef FUNNEL_CALENDAR_H
#define FUNNEL_CALENDAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FUNNEL_CALENDAR_MAX_INTERVALS 8      /* working intervals per weekday */
#define FUNNEL_CALENDAR_24X7          "24x7" /* built-in calendar name: always working, UTC */

/* The working intervals of one weekday, minutes after local midnight, [start, end), sorted and
 * disjoint; end may be 1440 (midnight at the end of the day). */
typedef struct funnel_calendar_day {
    uint16_t start[FUNNEL_CALENDAR_MAX_INTERVALS];
    uint16_t end[FUNNEL_CALENDAR_MAX_INTERVALS];
    size_t n;
} funnel_calendar_day_t;

/* An extra working day (a weekend day moved to a working day): date and the weekday index
 * whose hours it works. date comes first so date lists and extra lists sort alike. */
typedef struct funnel_calendar_extra {
    int32_t date; /* yyyymmdd, local */
    uint8_t as;   /* 0 = Monday ... 6 = Sunday */
} funnel_calendar_extra_t;

/* A calendar as configured. Dates are local dates written as yyyymmdd integers, sorted. */
typedef struct funnel_calendar_spec {
    char *name;                    /* owned */
    char *time_zone;               /* IANA name ("Europe/Berlin"), owned */
    funnel_calendar_day_t week[7]; /* index 0 = Monday ... 6 = Sunday */
    int32_t *holidays;             /* days off whatever the weekday; owned */
    size_t n_holidays;
    funnel_calendar_extra_t *extra; /* days worked whatever the weekday; owned, by date */
    size_t n_extra;
} funnel_calendar_spec_t;

/* Fills spec as the built-in 24x7 calendar (UTC, every minute works). 0 or FUNNEL_ENOMEM. */
int funnel_calendar_spec_24x7(funnel_calendar_spec_t *spec);

/* Reads one calendar group of the config into a zeroed spec named name:
 *   time_zone = "Europe/Berlin";
 *   weekdays = ["09:00-13:00", "14:00-18:00"];   # Monday to Friday, unless a day says otherwise
 *   mon = [...]; ... sun = [...];                 # per weekday; [] is a day off
 *   holidays = ["2026-12-25"];
 *   extra_working_days = ["2026-12-27", "2027-01-03=fri"];  # Monday's hours, or the day named
 * Returns 0, FUNNEL_ECONFIG with err, or FUNNEL_ENOMEM; on error spec is cleared. */
struct config_setting_t;
int funnel_calendar_spec_parse(const struct config_setting_t *group, const char *name,
                               funnel_calendar_spec_t *spec, char *err, size_t err_len);

/* Deep copy; 0 or FUNNEL_ENOMEM (dst cleared). */
int funnel_calendar_spec_copy(funnel_calendar_spec_t *dst, const funnel_calendar_spec_t *src);

/* Writes the group body (the members, one per line, each prefixed with indent) in file
 * syntax: what funnel_calendar_spec_parse reads back to an equal spec. */
void funnel_calendar_spec_print(const funnel_calendar_spec_t *spec, const char *indent, FILE *out);

/* Frees what the spec owns and zeroes it. */
void funnel_calendar_spec_clear(funnel_calendar_spec_t *spec);

typedef struct funnel_calendar funnel_calendar_t;

/* Compiles spec (copied; the spec may be cleared afterwards). Returns 0, FUNNEL_EINVAL with
 * err (unknown time zone, no working time at all) or FUNNEL_ENOMEM. Free with
 * funnel_calendar_destroy. */
int funnel_calendar_new(const funnel_calendar_spec_t *spec, funnel_calendar_t **out, char *err,
                        size_t err_len);
void funnel_calendar_destroy(funnel_calendar_t **cal);

/* The instant business_ms of working time after from_ms. Working time that ends exactly at an
 * interval's end is due at that end, not at the start of the next interval. business_ms <= 0
 * returns from_ms. INT64_MAX ("never") when from_ms is INT64_MAX, when the calendar does not
 * accumulate that much within twenty years, or when ICU cannot place the instants. */
int64_t funnel_calendar_add(funnel_calendar_t *cal, int64_t from_ms, int64_t business_ms);

/* Working time in [from_ms, to_ms); negative (minus the reverse span) when to_ms < from_ms.
 * INT64_MAX when to_ms is INT64_MAX ("never"; minus that when from_ms is, 0 when both are), 0
 * when ICU cannot place the instants. Costs a few ICU calls per week of the span. */
int64_t funnel_calendar_between(funnel_calendar_t *cal, int64_t from_ms, int64_t to_ms);

/* Calendar periods in the calendar's time zone, for quotas. */
typedef enum funnel_period {
    FUNNEL_PERIOD_WEEK = 1,  /* Monday 00:00 to the next Monday 00:00, local time */
    FUNNEL_PERIOD_MONTH = 2, /* the 1st 00:00 to the next 1st 00:00, local time */
    FUNNEL_PERIOD_DAY = 3,   /* 00:00 to the next 00:00, local time (a quota's per-day counts) */
} funnel_period_t;

/* The period containing at_ms: *start_ms inclusive, *end_ms exclusive; at_ms and INT64_MAX (a
 * period that never ends) when ICU cannot place at_ms. */
void funnel_calendar_period(funnel_calendar_t *cal, funnel_period_t period, int64_t at_ms,
                            int64_t *start_ms, int64_t *end_ms);

/* For tests: from now on every answer comes from ICU as it did before the calendar kept what
 * ICU said (days, UTC offsets, plain weeks), the reference the cached answers must equal. */
void funnel_calendar_reference(funnel_calendar_t *cal);

/* Parses a duration: an integer followed by a unit, repeated ("90s", "30m", "8h", "1h30m",
 * "30d"; d is 24 hours). 0 or FUNNEL_EINVAL; the result is positive. */
int funnel_duration_parse(const char *text, int64_t *ms);

/* Writes ms in the form funnel_duration_parse reads ("1h30m"; "0s" for 0). */
void funnel_duration_format(int64_t ms, char *out, size_t out_len);

#endif
