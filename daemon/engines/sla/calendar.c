/* calendar.c — business calendars on ICU time zones.
 *
 * Business time is walked one local day at a time: each day's working intervals are turned
 * into UTC instants by ICU (which knows every DST rule), so a day of 23 or 25 hours, a holiday
 * week or a year end need no special case — they are just days with other instants or none.
 * Local days are ICU's "modified Julian day" numbers, which change at local midnight. Long spans
 * skip whole "plain" weeks (no holiday, extra day or clock change) by adding the working time of
 * a week, counted once, so a span of decades costs a few ICU calls per week, not per interval.
 * Every ICU status is checked: a failure (an instant outside ICU's range) gives the documented
 * safe answer instead of times computed from garbage. */
#include "calendar.h"
#include "funnel/error.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>

#define MIN_PER_DAY  1440
#define NEVER        INT64_MAX
#define MAX_WALK     (366 * 20) /* days: a calendar that works less than this never does */
#define ZONE_ID_MAX  128
#define INTERVAL_TXT 12 /* "09:00-13:00" */

static const char *const day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

#define DAY_MS       86400000LL
#define EPOCH_JD     2440588     /* ICU's Julian day of 1970-01-01 */
#define CACHE_MS_MAX (1LL << 50) /* instants the caches take: ~35,000 years either side */
#define OFFSET_SLOTS 4
#define DAY_SLOTS    32
#define NO_DAY       INT32_MIN

/* The UTC offset ICU gives every instant in [from, to): between two transitions of the zone. */
typedef struct cal_offset {
    int64_t from, to;
    int64_t offset_ms;
} cal_offset_t;

/* One local day as ICU places it: the UTC instants of its working intervals (wall_ms of their
 * starts and ends), its midnight, its date and weekday. */
typedef struct cal_day {
    int32_t jd;  /* NO_DAY: empty */
    int32_t ymd; /* -1 beyond ICU's years of yyyymmdd */
    int64_t midnight;
    size_t n;
    int64_t start[FUNNEL_CALENDAR_MAX_INTERVALS], end[FUNNEL_CALENDAR_MAX_INTERVALS];
} cal_day_t;

typedef struct cal_plain {
    int32_t jd; /* NO_DAY: empty */
    bool plain;
} cal_plain_t;

struct funnel_calendar {
    funnel_calendar_spec_t spec; /* our copy */
    UCalendar *ucal;             /* scratch: every helper sets it completely before reading */
    bool always;                 /* every minute works: arithmetic is plain subtraction */
    int32_t *special; /* local days of the holidays and extra days, sorted (see week_plain) */
    size_t n_special;
    int64_t week_ms; /* working time of a plain week: each weekday's hours once */
    bool reference;  /* no caches: every answer straight from ICU (funnel_calendar_reference) */
    /* What ICU said, kept: an instance's steps and stops fall on a handful of nearby days, so
     * a typical call finds every instant it needs here and makes no ICU call. */
    cal_offset_t offsets[OFFSET_SLOTS]; /* UTC offsets between two zone transitions */
    unsigned next_offset;               /* the slot the next miss replaces */
    cal_day_t days[DAY_SLOTS];          /* by local day, direct-mapped */
    cal_plain_t plain[DAY_SLOTS];       /* week_plain by first day, direct-mapped */
};

/* ---- durations ------------------------------------------------------------------------ */

int funnel_duration_parse(const char *text, int64_t *ms)
{
    int64_t total = 0;
    const char *p = text;
    if (!p || !*p)
        return FUNNEL_EINVAL;
    while (*p) {
        int64_t v = 0, unit;
        if (*p < '0' || *p > '9')
            return FUNNEL_EINVAL;
        for (; *p >= '0' && *p <= '9'; p++)
            if ((v = v * 10 + (*p - '0')) > 1000000000LL)
                return FUNNEL_EINVAL;
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p++;
        } else {
            unit = *p == 's'   ? 1000
                   : *p == 'm' ? 60000
                   : *p == 'h' ? 3600000
                   : *p == 'd' ? 86400000
                               : 0;
        }
        if (!unit)
            return FUNNEL_EINVAL;
        p++;
        total += v * unit;
        if (total > 3650LL * 86400000)
            return FUNNEL_EINVAL; /* ten years: anything longer is a typo */
    }
    if (total <= 0)
        return FUNNEL_EINVAL;
    *ms = total;
    return 0;
}

void funnel_duration_format(int64_t ms, char *out, size_t out_len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    size_t used = 0;
    out[0] = '\0';
    if (ms <= 0) {
        snprintf(out, out_len, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0] && used < out_len; i++) {
        if (ms < units[i].ms)
            continue;
        int n = snprintf(out + used, out_len - used, "%lld%s", (long long)(ms / units[i].ms),
                         units[i].unit);
        used += n > 0 ? (size_t)n : 0;
        ms %= units[i].ms;
    }
}

/* ---- spec: parse, print, copy, clear ------------------------------------------------- */

static int fail(char *err, size_t err_len, const char *what, const char *why, const char *text)
{
    snprintf(err, err_len, "%s: %s '%s'", what, why, text ? text : "");
    return FUNNEL_ECONFIG;
}

/* "09:00-13:00" → minutes after midnight; the end may be 24:00. */
static bool parse_interval(const char *s, uint16_t *start, uint16_t *end)
{
    int h1, m1, h2, m2, n = 0;
    if (sscanf(s, "%2d:%2d-%2d:%2d%n", &h1, &m1, &h2, &m2, &n) != 4 || s[n] || strlen(s) != 11)
        return false;
    if (h1 < 0 || h1 > 23 || m1 < 0 || m1 > 59 || h2 < 0 || h2 > 24 || m2 < 0 || m2 > 59 ||
        (h2 == 24 && m2))
        return false;
    *start = (uint16_t)(h1 * 60 + m1);
    *end = (uint16_t)(h2 * 60 + m2);
    return *start < *end;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* "2026-12-25" → 20261225, optionally followed by "=fri" (*as gets the weekday index). */
static bool parse_date(const char *s, int32_t *ymd, int *as)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || y < 1970 || m < 1 || m > 12 ||
        d < 1 || d > mdays[m - 1] + (m == 2 && leap(y)))
        return false;
    *ymd = y * 10000 + m * 100 + d;
    if (!s[n])
        return true;
    if (!as || s[n] != '=')
        return false;
    for (int i = 0; i < 7; i++)
        if (strcmp(s + n + 1, day_names[i]) == 0) {
            *as = i;
            return true;
        }
    return false;
}

static int parse_day(const config_setting_t *list, funnel_calendar_day_t *day, char *err,
                     size_t err_len)
{
    const char *name = config_setting_name(list);
    int n = config_setting_length(list);
    if (config_setting_type(list) != CONFIG_TYPE_ARRAY &&
        config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(err, err_len, name, "expected a list of \"HH:MM-HH:MM\", got", "");
    if (n > FUNNEL_CALENDAR_MAX_INTERVALS)
        return fail(err, err_len, name, "too many intervals (at most 8) in", "");
    memset(day, 0, sizeof *day);
    for (int i = 0; i < n; i++) {
        const char *s = config_setting_get_string_elem(list, i);
        if (!s || !parse_interval(s, &day->start[i], &day->end[i]))
            return fail(err, err_len, name, "not an interval HH:MM-HH:MM", s);
        if (i && day->start[i] < day->end[i - 1])
            return fail(err, err_len, name, "intervals must be sorted and disjoint at", s);
        day->n++;
    }
    return 0;
}

static int cmp_date(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Reads a list of dates into a fresh array of elements of `size` bytes (int32_t dates, or
 * funnel_calendar_extra_t when extra), sorted by date. */
static int parse_dates(const config_setting_t *list, bool extra, void **out, size_t *n_out,
                       char *err, size_t err_len)
{
    const char *name = config_setting_name(list);
    size_t size = extra ? sizeof(funnel_calendar_extra_t) : sizeof(int32_t);
    int n = config_setting_length(list);
    if (config_setting_type(list) != CONFIG_TYPE_ARRAY &&
        config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(err, err_len, name, "expected a list of \"YYYY-MM-DD\", got", "");
    char *arr = calloc(n ? (size_t)n : 1, size);
    if (!arr)
        return FUNNEL_ENOMEM;
    for (int i = 0; i < n; i++) {
        const char *s = config_setting_get_string_elem(list, i);
        int32_t ymd;
        int as = 0;
        if (!s || !parse_date(s, &ymd, extra ? &as : NULL)) {
            free(arr);
            return fail(err, err_len, name,
                        extra ? "not a date YYYY-MM-DD[=ddd]" : "not a date YYYY-MM-DD", s);
        }
        if (extra)
            ((funnel_calendar_extra_t *)arr)[i] = (funnel_calendar_extra_t){ymd, (uint8_t)as};
        else
            ((int32_t *)arr)[i] = ymd;
    }
    qsort(arr, (size_t)n, size, cmp_date);
    *out = arr;
    *n_out = (size_t)n;
    return 0;
}

/* Every member the group may have; anything else is a typo worth refusing. */
static bool known_member(const char *name)
{
    static const char *const others[] = {"time_zone", "weekdays", "holidays", "extra_working_days"};
    for (size_t i = 0; i < 7; i++)
        if (strcmp(name, day_names[i]) == 0)
            return true;
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (strcmp(name, others[i]) == 0)
            return true;
    return false;
}

int funnel_calendar_spec_parse(const config_setting_t *g, const char *name,
                               funnel_calendar_spec_t *spec, char *err, size_t err_len)
{
    const char *tz = "UTC";
    int rc = 0;
    memset(spec, 0, sizeof *spec);
    for (int i = 0; i < config_setting_length(g); i++) {
        const char *m = config_setting_name(config_setting_get_elem(g, (unsigned)i));
        if (!known_member(m))
            return fail(err, err_len, name, "unknown member", m);
    }
    config_setting_lookup_string(g, "time_zone", &tz);
    if (!(spec->name = strdup(name)) || !(spec->time_zone = strdup(tz))) {
        rc = FUNNEL_ENOMEM;
        goto fail;
    }
    const config_setting_t *s = config_setting_get_member(g, "weekdays");
    for (int d = 0; s && !rc && d < 5; d++)
        rc = parse_day(s, &spec->week[d], err, err_len);
    for (int d = 0; !rc && d < 7; d++)
        if ((s = config_setting_get_member(g, day_names[d])))
            rc = parse_day(s, &spec->week[d], err, err_len);
    if (!rc && (s = config_setting_get_member(g, "holidays")))
        rc = parse_dates(s, false, (void **)&spec->holidays, &spec->n_holidays, err, err_len);
    if (!rc && (s = config_setting_get_member(g, "extra_working_days")))
        rc = parse_dates(s, true, (void **)&spec->extra, &spec->n_extra, err, err_len);
    if (!rc)
        return 0;
fail:
    funnel_calendar_spec_clear(spec);
    return rc;
}

int funnel_calendar_spec_24x7(funnel_calendar_spec_t *spec)
{
    memset(spec, 0, sizeof *spec);
    if (!(spec->name = strdup(FUNNEL_CALENDAR_24X7)) || !(spec->time_zone = strdup("UTC"))) {
        funnel_calendar_spec_clear(spec);
        return FUNNEL_ENOMEM;
    }
    for (int d = 0; d < 7; d++)
        spec->week[d] = (funnel_calendar_day_t){.start = {0}, .end = {MIN_PER_DAY}, .n = 1};
    return 0;
}

static void *dup_array(const void *src, size_t n, size_t size)
{
    void *p = malloc(n ? n * size : 1);
    if (p && n)
        memcpy(p, src, n * size);
    return p;
}

int funnel_calendar_spec_copy(funnel_calendar_spec_t *dst, const funnel_calendar_spec_t *src)
{
    *dst = *src;
    dst->name = strdup(src->name);
    dst->time_zone = strdup(src->time_zone);
    dst->holidays = dup_array(src->holidays, src->n_holidays, sizeof *src->holidays);
    dst->extra = dup_array(src->extra, src->n_extra, sizeof *src->extra);
    if (dst->name && dst->time_zone && dst->holidays && dst->extra)
        return 0;
    funnel_calendar_spec_clear(dst);
    return FUNNEL_ENOMEM;
}

void funnel_calendar_spec_clear(funnel_calendar_spec_t *spec)
{
    free(spec->name);
    free(spec->time_zone);
    free(spec->holidays);
    free(spec->extra);
    memset(spec, 0, sizeof *spec);
}

static void print_ymd(int32_t ymd, FILE *out)
{
    fprintf(out, "\"%04d-%02d-%02d", ymd / 10000, ymd / 100 % 100, ymd % 100);
}

void funnel_calendar_spec_print(const funnel_calendar_spec_t *spec, const char *indent, FILE *out)
{
    fprintf(out, "%stime_zone = \"%s\";\n", indent, spec->time_zone);
    for (int d = 0; d < 7; d++) {
        const funnel_calendar_day_t *day = &spec->week[d];
        fprintf(out, "%s%s = [", indent, day_names[d]);
        for (size_t i = 0; i < day->n; i++)
            fprintf(out, "%s\"%02d:%02d-%02d:%02d\"", i ? ", " : "", day->start[i] / 60,
                    day->start[i] % 60, day->end[i] / 60, day->end[i] % 60);
        fprintf(out, "];\n");
    }
    fprintf(out, "%sholidays = [", indent);
    for (size_t i = 0; i < spec->n_holidays; i++) {
        fputs(i ? ", " : "", out);
        print_ymd(spec->holidays[i], out);
        fputc('"', out);
    }
    fprintf(out, "];\n%sextra_working_days = [", indent);
    for (size_t i = 0; i < spec->n_extra; i++) {
        fputs(i ? ", " : "", out);
        print_ymd(spec->extra[i].date, out);
        fprintf(out, "=%s\"", day_names[spec->extra[i].as]);
    }
    fprintf(out, "];\n");
}

/* ---- compiled calendars ------------------------------------------------------------- */

static bool is_always(const funnel_calendar_spec_t *spec)
{
    for (int d = 0; d < 7; d++)
        if (spec->week[d].n != 1 || spec->week[d].start[0] != 0 ||
            spec->week[d].end[0] != MIN_PER_DAY)
            return false;
    return spec->n_holidays == 0;
}

static int cmp_jd(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Fills cal->special with the local days of the holidays and extra days, so week_plain can tell
 * a week without one by a binary search. 0, FUNNEL_ENOMEM or FUNNEL_EINVAL (ICU failed). */
static int special_days(funnel_calendar_t *cal)
{
    const funnel_calendar_spec_t *sp = &cal->spec;
    UErrorCode st = U_ZERO_ERROR;
    size_t n = sp->n_holidays + sp->n_extra;
    if (!n)
        return 0;
    if (!(cal->special = malloc(n * sizeof *cal->special)))
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int32_t ymd = i < sp->n_holidays ? sp->holidays[i] : sp->extra[i - sp->n_holidays].date;
        ucal_clear(cal->ucal);
        ucal_setDate(cal->ucal, ymd / 10000, ymd / 100 % 100 - 1, ymd % 100, &st);
        cal->special[i] = ucal_get(cal->ucal, UCAL_JULIAN_DAY, &st);
    }
    qsort(cal->special, n, sizeof *cal->special, cmp_jd);
    cal->n_special = n;
    return U_FAILURE(st) ? FUNNEL_EINVAL : 0;
}

int funnel_calendar_new(const funnel_calendar_spec_t *spec, funnel_calendar_t **out, char *err,
                        size_t err_len)
{
    UChar zone[ZONE_ID_MAX], canon[ZONE_ID_MAX];
    UErrorCode st = U_ZERO_ERROR;
    UBool system_id = 0;
    int rc = FUNNEL_EINVAL;
    *out = NULL;
    if (strlen(spec->time_zone) >= ZONE_ID_MAX) {
        snprintf(err, err_len, "calendar %s: time zone name too long", spec->name);
        return rc;
    }
    u_uastrcpy(zone, spec->time_zone);
    /* ucal_open falls back to GMT for a name it does not know: check the name first. */
    ucal_getCanonicalTimeZoneID(zone, -1, canon, ZONE_ID_MAX, &system_id, &st);
    if (U_FAILURE(st) || !system_id) {
        snprintf(err, err_len, "calendar %s: unknown time zone '%s'", spec->name, spec->time_zone);
        return rc;
    }
    bool works = false;
    for (int d = 0; d < 7; d++)
        works = works || spec->week[d].n > 0;
    if (!works) {
        snprintf(err, err_len, "calendar %s: no working hours on any weekday", spec->name);
        return rc;
    }
    funnel_calendar_t *cal = calloc(1, sizeof *cal);
    if (!cal || funnel_calendar_spec_copy(&cal->spec, spec)) {
        free(cal);
        return FUNNEL_ENOMEM;
    }
    cal->ucal = ucal_open(zone, -1, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (U_FAILURE(st)) {
        snprintf(err, err_len, "calendar %s: ICU: %s", spec->name, u_errorName(st));
        funnel_calendar_destroy(&cal);
        return rc;
    }
    /* A working interval starting in the hour skipped in spring starts when the clock resumes;
     * one in the hour repeated in autumn uses its first occurrence. */
    ucal_setAttribute(cal->ucal, UCAL_SKIPPED_WALL_TIME, UCAL_WALLTIME_NEXT_VALID);
    ucal_setAttribute(cal->ucal, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_FIRST);
    cal->always = is_always(&cal->spec);
    for (size_t i = 0; i < DAY_SLOTS; i++)
        cal->days[i].jd = cal->plain[i].jd = NO_DAY;
    if ((rc = special_days(cal))) {
        snprintf(err, err_len, "calendar %s: %s", spec->name,
                 rc == FUNNEL_ENOMEM ? "out of memory" : "a date is out of range");
        funnel_calendar_destroy(&cal);
        return rc;
    }
    for (int d = 0; d < 7; d++)
        for (size_t i = 0; i < spec->week[d].n; i++)
            cal->week_ms += (int64_t)(spec->week[d].end[i] - spec->week[d].start[i]) * 60000;
    *out = cal;
    return 0;
}

void funnel_calendar_destroy(funnel_calendar_t **calp)
{
    if (!calp || !*calp)
        return;
    funnel_calendar_t *cal = *calp;
    if (cal->ucal)
        ucal_close(cal->ucal);
    free(cal->special);
    funnel_calendar_spec_clear(&cal->spec);
    free(cal);
    *calp = NULL;
}

/* The helpers below take the caller's ICU status and leave it failed once any call fails (ICU
 * functions do nothing when given a failed status), so a caller checks it once per step. */

/* The local day (modified Julian day number) of an instant, from ICU. */
static int32_t icu_day_of(funnel_calendar_t *cal, int64_t ms, UErrorCode *st)
{
    ucal_setMillis(cal->ucal, (UDate)ms, st);
    return ucal_get(cal->ucal, UCAL_JULIAN_DAY, st);
}

/* The instant of a local wall time: day jd, minute 0..1440 (1440 is the next midnight). */
static int64_t wall_ms(funnel_calendar_t *cal, int32_t jd, int minute, UErrorCode *st)
{
    if (minute >= MIN_PER_DAY) {
        jd += minute / MIN_PER_DAY;
        minute %= MIN_PER_DAY;
    }
    ucal_clear(cal->ucal);
    ucal_set(cal->ucal, UCAL_JULIAN_DAY, jd);
    ucal_set(cal->ucal, UCAL_HOUR_OF_DAY, minute / 60);
    ucal_set(cal->ucal, UCAL_MINUTE, minute % 60);
    return (int64_t)ucal_getMillis(cal->ucal, st);
}

/* The working intervals of local day jd: holidays first, then extra days, then the weekday;
 * *ymd gets the day's date (-1 beyond the years yyyymmdd can write). */
static const funnel_calendar_day_t *hours_of(funnel_calendar_t *cal, int32_t jd, int32_t *ymd,
                                             UErrorCode *st)
{
    static const funnel_calendar_day_t off = {.n = 0};
    const funnel_calendar_spec_t *sp = &cal->spec;
    ucal_clear(cal->ucal);
    ucal_set(cal->ucal, UCAL_JULIAN_DAY, jd);
    /* The extended year (negative before 1 AD, not era-relative) in 64 bits: ICU's range of
     * years is wider than yyyymmdd in 32, and such far days are nobody's holidays. */
    int64_t year = ucal_get(cal->ucal, UCAL_EXTENDED_YEAR, st);
    *ymd = year >= 0 && year <= 99999
               ? (int32_t)year * 10000 + (ucal_get(cal->ucal, UCAL_MONTH, st) + 1) * 100 +
                     ucal_get(cal->ucal, UCAL_DATE, st)
               : -1;
    int dow = (ucal_get(cal->ucal, UCAL_DAY_OF_WEEK, st) + 5) % 7; /* ICU: 1 = Sunday */
    if (U_FAILURE(*st) || (sp->n_holidays && bsearch(ymd, sp->holidays, sp->n_holidays,
                                                     sizeof *sp->holidays, cmp_date)))
        return &off;
    const funnel_calendar_extra_t *x =
        sp->n_extra ? bsearch(ymd, sp->extra, sp->n_extra, sizeof *sp->extra, cmp_date) : NULL;
    return &sp->week[x ? x->as : dow];
}

/* Places local day jd with ICU: its working intervals, midnight and date. */
static void day_fill(funnel_calendar_t *cal, int32_t jd, cal_day_t *d, UErrorCode *st)
{
    const funnel_calendar_day_t *hours = hours_of(cal, jd, &d->ymd, st);
    d->midnight = wall_ms(cal, jd, 0, st);
    d->n = hours->n;
    for (size_t i = 0; i < hours->n; i++) {
        d->start[i] = wall_ms(cal, jd, hours->start[i], st);
        d->end[i] = wall_ms(cal, jd, hours->end[i], st);
    }
    d->jd = U_SUCCESS(*st) ? jd : NO_DAY; /* a failure is not kept: asked again, it fails again */
}

static size_t day_slot(int32_t jd)
{
    return (uint32_t)jd % DAY_SLOTS;
}

/* Local day jd as day_fill places it: from the cache, else from ICU (into the cache, or into
 * scratch for a reference calendar). The pointer is valid until the next day_get. */
static const cal_day_t *day_get(funnel_calendar_t *cal, int32_t jd, cal_day_t *scratch,
                                UErrorCode *st)
{
    cal_day_t *d = cal->reference ? scratch : &cal->days[day_slot(jd)];
    if (d->jd != jd || cal->reference)
        day_fill(cal, jd, d, st);
    return d;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* Keeps the UTC offset of instant ms and the span between the zone's transitions around it
 * over which ICU gives every instant that offset; NULL when ICU cannot say. */
static const cal_offset_t *offset_fill(funnel_calendar_t *cal, int64_t ms, UErrorCode *st)
{
    UDate prev = 0, next = 0;
    ucal_setMillis(cal->ucal, (UDate)ms, st);
    int64_t offset = (int64_t)ucal_get(cal->ucal, UCAL_ZONE_OFFSET, st) +
                     ucal_get(cal->ucal, UCAL_DST_OFFSET, st);
    UBool has_prev =
        ucal_getTimeZoneTransitionDate(cal->ucal, UCAL_TZ_TRANSITION_PREVIOUS_INCLUSIVE, &prev, st);
    UBool has_next = ucal_getTimeZoneTransitionDate(cal->ucal, UCAL_TZ_TRANSITION_NEXT, &next, st);
    int64_t from = has_prev ? (int64_t)prev : INT64_MIN, to = has_next ? (int64_t)next : INT64_MAX;
    if (U_FAILURE(*st) || from > ms || to <= ms)
        return NULL;
    cal_offset_t *o = &cal->offsets[cal->next_offset++ % OFFSET_SLOTS];
    *o = (cal_offset_t){from, to, offset};
    return o;
}

/* The local day of an instant, as ICU's Calendar computes it (instant plus the zone's offset
 * then, in whole days from 1970), with the offset from the cache when it holds the instant. */
static int32_t day_of(funnel_calendar_t *cal, int64_t ms, UErrorCode *st)
{
    if (cal->reference || ms < -CACHE_MS_MAX || ms > CACHE_MS_MAX)
        return icu_day_of(cal, ms, st);
    const cal_offset_t *o = NULL;
    for (size_t i = 0; i < OFFSET_SLOTS && !o; i++)
        if (cal->offsets[i].from <= ms && ms < cal->offsets[i].to)
            o = &cal->offsets[i];
    if (!o && !(o = offset_fill(cal, ms, st)))
        return icu_day_of(cal, ms, st);
    return (int32_t)(floor_div(ms + o->offset_ms, DAY_MS) + EPOCH_JD);
}

/* Whether local days [jd, jd + 7) work exactly cal->week_ms: no holiday or extra day among them
 * and no UTC offset change from the first midnight up to the last (a change at the first
 * midnight itself counts: it may have skipped working minutes). */
static bool icu_week_plain(funnel_calendar_t *cal, int32_t jd, UErrorCode *st)
{
    size_t lo = 0, hi = cal->n_special;
    while (lo < hi) { /* the first special day >= jd */
        size_t mid = lo + (hi - lo) / 2;
        if (cal->special[mid] < jd)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < cal->n_special && cal->special[lo] < jd + 7)
        return false;
    int64_t t0 = wall_ms(cal, jd, 0, st), t7 = wall_ms(cal, jd + 7, 0, st);
    UDate next = 0;
    ucal_setMillis(cal->ucal, (UDate)(t0 - 1), st);
    UBool change = ucal_getTimeZoneTransitionDate(cal->ucal, UCAL_TZ_TRANSITION_NEXT, &next, st);
    return U_SUCCESS(*st) && (!change || next >= (UDate)t7);
}

/* icu_week_plain, kept per first day. */
static bool week_plain(funnel_calendar_t *cal, int32_t jd, UErrorCode *st)
{
    if (cal->reference)
        return icu_week_plain(cal, jd, st);
    cal_plain_t *p = &cal->plain[day_slot(jd)];
    if (p->jd != jd) {
        bool plain = icu_week_plain(cal, jd, st);
        if (U_FAILURE(*st))
            return false;
        *p = (cal_plain_t){jd, plain};
    }
    return p->plain;
}

int64_t funnel_calendar_add(funnel_calendar_t *cal, int64_t from_ms, int64_t business_ms)
{
    if (business_ms <= 0)
        return from_ms;
    if (from_ms == NEVER) /* a step after one that never comes: no ICU call on "never" */
        return NEVER;
    if (cal->always)
        return from_ms > INT64_MAX - business_ms ? INT64_MAX : from_ms + business_ms;
    UErrorCode st = U_ZERO_ERROR;
    cal_day_t scratch;
    int32_t first = day_of(cal, from_ms, &st);
    for (int32_t jd = first; U_SUCCESS(st) && jd - first < MAX_WALK; jd++) {
        /* A whole week after the first day, when the time runs out after it (an end exactly
         * at a week's last interval end is left to the day walk, which gives that end). */
        while (jd > first && business_ms > cal->week_ms && jd - first < MAX_WALK &&
               week_plain(cal, jd, &st)) {
            business_ms -= cal->week_ms;
            jd += 7;
        }
        const cal_day_t *day = day_get(cal, jd, &scratch, &st);
        for (size_t i = 0; U_SUCCESS(st) && i < day->n; i++) {
            int64_t s = day->start[i], e = day->end[i];
            if (e <= from_ms || e <= s)
                continue;
            s = s > from_ms ? s : from_ms;
            if (business_ms <= e - s)
                return s + business_ms;
            business_ms -= e - s;
        }
    }
    return NEVER; /* also when ICU failed: no deadline rather than a wrong one */
}

/* Working time of local day jd that lies in [from_ms, to_ms). */
static int64_t day_work(funnel_calendar_t *cal, int32_t jd, int64_t from_ms, int64_t to_ms,
                        UErrorCode *st)
{
    cal_day_t scratch;
    const cal_day_t *day = day_get(cal, jd, &scratch, st);
    int64_t sum = 0;
    for (size_t i = 0; U_SUCCESS(*st) && i < day->n; i++) {
        int64_t s = day->start[i] > from_ms ? day->start[i] : from_ms;
        int64_t e = day->end[i] < to_ms ? day->end[i] : to_ms;
        sum += e > s ? e - s : 0;
    }
    return sum;
}

int64_t funnel_calendar_between(funnel_calendar_t *cal, int64_t from_ms, int64_t to_ms)
{
    if (to_ms < from_ms)
        return -funnel_calendar_between(cal, to_ms, from_ms);
    if (to_ms == NEVER) /* up to "never": as much as there is */
        return from_ms == NEVER ? 0 : NEVER;
    if (cal->always)
        return to_ms - from_ms;
    UErrorCode st = U_ZERO_ERROR;
    int64_t sum = 0;
    int32_t first = day_of(cal, from_ms, &st), last = day_of(cal, to_ms, &st);
    for (int32_t jd = first; U_SUCCESS(st) && jd <= last;) {
        /* Days strictly between the first and the last lie wholly inside the span. */
        if (jd > first && jd + 7 <= last && week_plain(cal, jd, &st)) {
            sum += cal->week_ms;
            jd += 7;
        } else {
            sum += day_work(cal, jd++, from_ms, to_ms, &st);
        }
    }
    return U_SUCCESS(st) ? sum : 0;
}

/* The period from ICU's fields of the instant's local date. */
static void icu_period(funnel_calendar_t *cal, funnel_period_t period, int64_t at_ms,
                       int64_t *start_ms, int64_t *end_ms, UErrorCode *st)
{
    int32_t jd = icu_day_of(cal, at_ms, st);
    if (period == FUNNEL_PERIOD_DAY) {
        *start_ms = wall_ms(cal, jd, 0, st);
        *end_ms = wall_ms(cal, jd + 1, 0, st);
        return;
    }
    if (period == FUNNEL_PERIOD_WEEK) {
        int dow = (ucal_get(cal->ucal, UCAL_DAY_OF_WEEK, st) + 5) % 7;
        *start_ms = wall_ms(cal, jd - dow, 0, st);
        *end_ms = wall_ms(cal, jd - dow + 7, 0, st);
        return;
    }
    int32_t y = ucal_get(cal->ucal, UCAL_YEAR, st), m = ucal_get(cal->ucal, UCAL_MONTH, st);
    ucal_clear(cal->ucal);
    ucal_setDateTime(cal->ucal, y, m, 1, 0, 0, 0, st);
    *start_ms = (int64_t)ucal_getMillis(cal->ucal, st);
    ucal_clear(cal->ucal);
    ucal_setDateTime(cal->ucal, m == UCAL_DECEMBER ? y + 1 : y, m == UCAL_DECEMBER ? 0 : m + 1, 1,
                     0, 0, 0, st);
    *end_ms = (int64_t)ucal_getMillis(cal->ucal, st);
}

static int32_t days_in_month(int32_t y, int32_t m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return mdays[m - 1] + (m == 2 && leap(y));
}

/* The period from the cached days: a week starts on the Monday (ICU's weekday of Julian day jd
 * is jd mod 7, Monday 0), a month on the 1st, a day at its midnight. Months only in the Gregorian
 * years (from 1583), where day numbers and dates advance together; false otherwise. */
static bool cached_period(funnel_calendar_t *cal, funnel_period_t period, int64_t at_ms,
                          int64_t *start_ms, int64_t *end_ms, UErrorCode *st)
{
    cal_day_t scratch;
    int32_t jd = day_of(cal, at_ms, st), first, next;
    if (period == FUNNEL_PERIOD_DAY) {
        first = jd;
        next = jd + 1;
    } else if (period == FUNNEL_PERIOD_WEEK) {
        first = jd - ((jd % 7) + 7) % 7;
        next = first + 7;
    } else {
        int32_t ymd = day_get(cal, jd, &scratch, st)->ymd;
        if (U_FAILURE(*st) || ymd < 15830101)
            return false;
        first = jd - (ymd % 100 - 1);
        next = first + days_in_month(ymd / 10000, ymd / 100 % 100);
    }
    *start_ms = day_get(cal, first, &scratch, st)->midnight;
    *end_ms = day_get(cal, next, &scratch, st)->midnight;
    return true;
}

void funnel_calendar_period(funnel_calendar_t *cal, funnel_period_t period, int64_t at_ms,
                            int64_t *start_ms, int64_t *end_ms)
{
    UErrorCode st = U_ZERO_ERROR;
    if (cal->reference || at_ms < -CACHE_MS_MAX || at_ms > CACHE_MS_MAX ||
        !cached_period(cal, period, at_ms, start_ms, end_ms, &st)) {
        st = U_ZERO_ERROR;
        icu_period(cal, period, at_ms, start_ms, end_ms, &st);
    }
    if (U_FAILURE(st)) { /* an instant ICU cannot place: a period that never ends */
        *start_ms = at_ms;
        *end_ms = NEVER;
    }
}

void funnel_calendar_reference(funnel_calendar_t *cal)
{
    cal->reference = true;
}
