/* test_calendar.c — business-time arithmetic, every expected instant computed by hand.
 *
 * 2026 DST changes: Europe/Berlin Mar 29 (02:00 CET -> 03:00 CEST) and Oct 25 (03:00 CEST ->
 * 02:00 CET); America/New_York Mar 8 (02:00 EST -> 03:00 EDT) and Nov 1 (02:00 EDT -> 01:00
 * EST). Jan 1 2026 is a Thursday. */
#include "calendar.h"
#include "funnel/error.h"

#include <criterion/criterion.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define H  3600000LL
#define MN 60000LL

/* Unix ms of a UTC wall time (timegm reads no time zone state). */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * 1000;
}

/* Compiles a calendar from the body of a config group. */
static funnel_calendar_t *cal_from(const char *body)
{
    config_t lc;
    char text[2048], err[256] = "";
    funnel_calendar_spec_t spec;
    funnel_calendar_t *cal = NULL;
    snprintf(text, sizeof text, "c = { %s };", body);
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE, "%s", config_error_text(&lc));
    int rc = funnel_calendar_spec_parse(config_lookup(&lc, "c"), "c", &spec, err, sizeof err);
    config_destroy(&lc);
    cr_assert_eq(rc, 0, "%s", err);
    rc = funnel_calendar_new(&spec, &cal, err, sizeof err);
    funnel_calendar_spec_clear(&spec);
    cr_assert_eq(rc, 0, "%s", err);
    return cal;
}

#define OFFICE_BERLIN                                                                              \
    "time_zone = \"Europe/Berlin\"; weekdays = [\"09:00-13:00\", \"14:00-18:00\"];"

Test(calendar, berlin_office_across_spring_forward)
{
    funnel_calendar_t *cal = cal_from(OFFICE_BERLIN);
    /* Fri Mar 27 17:00 CET (16:00Z) + 2h: one hour on Friday, then Mon Mar 30 09:00 CEST
     * (07:00Z) plus one hour. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 3, 27, 16, 0), 2 * H), utc(2026, 3, 30, 8, 0));
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 3, 27, 16, 0), utc(2026, 3, 30, 8, 0)),
                 2 * H);
    funnel_calendar_destroy(&cal);
    cr_assert_null(cal);
}

Test(calendar, several_intervals_and_edges)
{
    funnel_calendar_t *cal = cal_from(OFFICE_BERLIN);
    int64_t noon = utc(2026, 6, 1, 10, 0); /* Mon Jun 1 12:00 CEST */
    /* Due exactly at the end of the morning interval: 13:00, not 14:00 after lunch. */
    cr_assert_eq(funnel_calendar_add(cal, noon, H), utc(2026, 6, 1, 11, 0));
    /* One millisecond more spills past lunch. */
    cr_assert_eq(funnel_calendar_add(cal, noon, H + 1), utc(2026, 6, 1, 12, 0) + 1);
    /* Starting in the lunch break counts from 14:00. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 6, 1, 11, 30), 30 * MN),
                 utc(2026, 6, 1, 12, 30));
    /* Exactly filling the afternoon ends at 18:00 the same day. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 6, 1, 12, 0), 4 * H), utc(2026, 6, 1, 16, 0));
    /* Starting at 18:00 sharp: next morning. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 6, 1, 16, 0), 30 * MN), utc(2026, 6, 2, 7, 30));
    /* A whole working day is 8 hours; a night and a lunch count nothing. */
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 6, 1, 0, 0), utc(2026, 6, 2, 0, 0)), 8 * H);
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 6, 1, 11, 0), utc(2026, 6, 1, 12, 0)), 0);
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 6, 2, 7, 0), utc(2026, 6, 1, 16, 0)), -0);
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 6, 2, 8, 0), utc(2026, 6, 1, 15, 0)),
                 -2 * H);
    /* Zero duration is the start itself, even outside working hours. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 6, 6, 3, 0), 0), utc(2026, 6, 6, 3, 0));
    funnel_calendar_destroy(&cal);
}

Test(calendar, sunday_only_days_of_23_and_25_hours_in_berlin)
{
    funnel_calendar_t *cal = cal_from("time_zone = \"Europe/Berlin\"; sun = [\"00:00-24:00\"];");
    /* Sun Mar 29 runs from 00:00 CET (Mar 28 23:00Z) to 00:00 CEST (Mar 29 22:00Z). */
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 3, 27, 0, 0), utc(2026, 4, 1, 0, 0)),
                 23 * H);
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 3, 27, 0, 0), 23 * H), utc(2026, 3, 29, 22, 0));
    /* 23h + 1 min: the next Sunday, Apr 5 00:01 CEST = Apr 4 22:01Z. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 3, 27, 0, 0), 23 * H + MN),
                 utc(2026, 4, 4, 22, 1));
    /* Sun Oct 25 runs from 00:00 CEST (Oct 24 22:00Z) to 00:00 CET (Oct 25 23:00Z). */
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 10, 23, 0, 0), utc(2026, 10, 28, 0, 0)),
                 25 * H);
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 10, 23, 0, 0), 25 * H),
                 utc(2026, 10, 25, 23, 0));
    funnel_calendar_destroy(&cal);
}

Test(calendar, new_york_office_across_both_changes)
{
    funnel_calendar_t *cal =
        cal_from("time_zone = \"America/New_York\"; weekdays = [\"09:00-17:00\"];");
    /* Fri Mar 6 16:30 EST (21:30Z) + 1h: 30 min Friday, Mon Mar 9 09:30 EDT = 13:30Z. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 3, 6, 21, 30), H), utc(2026, 3, 9, 13, 30));
    /* Fri Oct 30 16:00 EDT (20:00Z) + 2h: 1h Friday, Mon Nov 2 10:00 EST = 15:00Z. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 10, 30, 20, 0), 2 * H),
                 utc(2026, 11, 2, 15, 0));
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 10, 30, 20, 0), utc(2026, 11, 2, 15, 0)),
                 2 * H);
    funnel_calendar_destroy(&cal);
    cal = cal_from("time_zone = \"America/New_York\"; sun = [\"00:00-24:00\"];");
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 10, 30, 0, 0), utc(2026, 11, 4, 0, 0)),
                 25 * H);
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 3, 6, 0, 0), utc(2026, 3, 11, 0, 0)),
                 23 * H);
    funnel_calendar_destroy(&cal);
}

Test(calendar, holidays_long_breaks_and_year_end)
{
    funnel_calendar_t *cal =
        cal_from(OFFICE_BERLIN
                 "holidays = [\"2026-12-31\", \"2026-12-24\", \"2026-12-25\", \"2027-01-01\"];");
    /* Wed Dec 23 17:00 CET + 9h: 1h Wednesday, Thu/Fri holidays, weekend, 8h Monday Dec 28:
     * due exactly at its 18:00 CET = 17:00Z. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 12, 23, 16, 0), 9 * H),
                 utc(2026, 12, 28, 17, 0));
    /* Wed Dec 30 17:00 CET + 2h: 1h Wednesday, Dec 31 and Jan 1 off, weekend, Mon Jan 4 2027
     * 10:00 CET = 09:00Z. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 12, 30, 16, 0), 2 * H), utc(2027, 1, 4, 9, 0));
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 12, 30, 16, 0), utc(2027, 1, 4, 9, 0)),
                 2 * H);
    funnel_calendar_destroy(&cal);
}

Test(calendar, extra_working_day_uses_the_named_hours)
{
    funnel_calendar_t *cal = cal_from(OFFICE_BERLIN "sat = []; fri = [\"09:00-12:00\"];"
                                                    "extra_working_days = [\"2026-06-06=fri\"];");
    /* Fri Jun 5 11:00 CEST (09:00Z) + 2h: 1h Friday (ends 12:00), Sat Jun 6 works Friday's
     * hours: 09:00 + 1h = 10:00 CEST = 08:00Z. */
    cr_assert_eq(funnel_calendar_add(cal, utc(2026, 6, 5, 9, 0), 2 * H), utc(2026, 6, 6, 8, 0));
    /* The next Saturday is a normal day off. */
    cr_assert_eq(funnel_calendar_between(cal, utc(2026, 6, 13, 0, 0), utc(2026, 6, 14, 0, 0)), 0);
    funnel_calendar_destroy(&cal);
}

Test(calendar, periods_in_local_time)
{
    funnel_calendar_t *cal = cal_from(OFFICE_BERLIN);
    int64_t s, e;
    funnel_calendar_period(cal, FUNNEL_PERIOD_MONTH, utc(2026, 3, 29, 12, 0), &s, &e);
    cr_assert_eq(s, utc(2026, 2, 28, 23, 0));
    cr_assert_eq(e, utc(2026, 3, 31, 22, 0));
    funnel_calendar_period(cal, FUNNEL_PERIOD_WEEK, utc(2026, 3, 29, 12, 0), &s, &e);
    cr_assert_eq(s, utc(2026, 3, 22, 23, 0));
    cr_assert_eq(e, utc(2026, 3, 29, 22, 0));
    funnel_calendar_period(cal, FUNNEL_PERIOD_MONTH, utc(2026, 12, 31, 23, 30), &s, &e);
    cr_assert_eq(s, utc(2026, 12, 31, 23, 0), "Jan 1 00:30 local is already January");
    cr_assert_eq(e, utc(2027, 1, 31, 23, 0));
    funnel_calendar_period(cal, FUNNEL_PERIOD_MONTH, utc(2026, 12, 15, 0, 0), &s, &e);
    cr_assert_eq(e, utc(2026, 12, 31, 23, 0));
    funnel_calendar_destroy(&cal);
}

Test(calendar, builtin_24x7_is_plain_arithmetic)
{
    funnel_calendar_spec_t spec;
    funnel_calendar_t *cal;
    char err[128];
    cr_assert_eq(funnel_calendar_spec_24x7(&spec), 0);
    cr_assert_eq(funnel_calendar_new(&spec, &cal, err, sizeof err), 0, "%s", err);
    funnel_calendar_spec_clear(&spec);
    cr_assert_eq(funnel_calendar_add(cal, 1000, 30 * 24 * H), 1000 + 30 * 24 * H);
    cr_assert_eq(funnel_calendar_between(cal, 1000, 5000), 4000);
    funnel_calendar_destroy(&cal);
}

Test(calendar, bad_specs_are_refused)
{
    const char *bad[] = {
        "time_zone = \"Mars/Olympus\"; weekdays = [\"09:00-17:00\"];",
        "weekdays = [\"09:00-17:00\", \"12:00-13:00\"];",
        "weekdays = [\"17:00-09:00\"];",
        "weekdays = [\"09:00-24:30\"];",
        "holidays = [\"2026-02-30\"];",
        "extra_working_days = [\"2026-02-03=xyz\"];",
        "workdays = [];",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config_t lc;
        char text[512], err[256] = "";
        funnel_calendar_spec_t spec;
        funnel_calendar_t *cal = NULL;
        snprintf(text, sizeof text, "c = { %s };", bad[i]);
        config_init(&lc);
        cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE);
        int rc = funnel_calendar_spec_parse(config_lookup(&lc, "c"), "c", &spec, err, sizeof err);
        config_destroy(&lc);
        if (rc == 0) {
            rc = funnel_calendar_new(&spec, &cal, err, sizeof err);
            funnel_calendar_spec_clear(&spec);
        }
        cr_assert_neq(rc, 0, "accepted: %s", bad[i]);
        cr_assert_neq(err[0], '\0');
        cr_assert_null(cal);
    }
    /* No working hours at all can never meet a deadline. */
    funnel_calendar_spec_t spec = {0};
    funnel_calendar_t *cal = NULL;
    char err[128];
    spec.name = "none";
    spec.time_zone = "UTC";
    cr_assert_eq(funnel_calendar_new(&spec, &cal, err, sizeof err), FUNNEL_EINVAL);
}

Test(calendar, print_reads_back_equal)
{
    config_t lc;
    char err[256], *text = NULL, *text2 = NULL, buf[2048];
    size_t len = 0, len2 = 0;
    funnel_calendar_spec_t a, b;
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, "c = { " OFFICE_BERLIN " holidays = [\"2026-12-25\"]; "
                                         "extra_working_days = [\"2026-12-27\"]; };"),
                 CONFIG_TRUE);
    cr_assert_eq(funnel_calendar_spec_parse(config_lookup(&lc, "c"), "c", &a, err, sizeof err), 0);
    config_destroy(&lc);
    FILE *f = open_memstream(&text, &len);
    funnel_calendar_spec_print(&a, "  ", f);
    fclose(f);
    snprintf(buf, sizeof buf, "c = {\n%s};", text);
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, buf), CONFIG_TRUE, "%s", buf);
    cr_assert_eq(funnel_calendar_spec_parse(config_lookup(&lc, "c"), "c", &b, err, sizeof err), 0);
    config_destroy(&lc);
    f = open_memstream(&text2, &len2);
    funnel_calendar_spec_print(&b, "  ", f);
    fclose(f);
    cr_assert_str_eq(text, text2);
    cr_assert(strstr(text, "extra_working_days = [\"2026-12-27=mon\"]"), "%s", text);
    free(text);
    free(text2);
    funnel_calendar_spec_clear(&a);
    funnel_calendar_spec_clear(&b);
}

Test(calendar, durations)
{
    int64_t ms;
    char out[32];
    cr_assert_eq(funnel_duration_parse("1h30m", &ms), 0);
    cr_assert_eq(ms, 90 * MN);
    cr_assert_eq(funnel_duration_parse("30d", &ms), 0);
    cr_assert_eq(ms, 30 * 24 * H);
    cr_assert_eq(funnel_duration_parse("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    const char *bad[] = {"", "h", "10", "5x", "0s", "-1h", "1h 2m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(funnel_duration_parse(bad[i], &ms), FUNNEL_EINVAL, "%s", bad[i]);
    funnel_duration_format(90 * MN + 1, out, sizeof out);
    cr_assert_str_eq(out, "1h30m1ms");
    funnel_duration_format(0, out, sizeof out);
    cr_assert_str_eq(out, "0s");
}

/* Working time of [from, to) summed over spans of at most three days: no span holds a whole
 * week, so this is the plain day walk, the reference for the week-skipping long spans. */
static int64_t between_by_days(funnel_calendar_t *cal, int64_t from, int64_t to)
{
    int64_t sum = 0;
    for (int64_t t = from; t < to; t += 3 * 24 * H)
        sum += funnel_calendar_between(cal, t, t + 3 * 24 * H < to ? t + 3 * 24 * H : to);
    return sum;
}

/* Long spans match the day walk exactly, with DST changes, holidays, extra days and hours that
 * cross the changes (Sunday works round the clock in Berlin, 23 or 25 hours). */
Test(calendar, long_spans_match_the_day_walk)
{
    static const char *const bodies[] = {
        OFFICE_BERLIN "holidays = [\"1990-12-25\", \"2026-12-24\", \"2026-12-25\"];"
                      "extra_working_days = [\"2026-06-06=fri\"];",
        "time_zone = \"Europe/Berlin\"; weekdays = []; sun = [\"00:00-24:00\"];",
        "time_zone = \"America/New_York\"; weekdays = [\"01:30-02:30\", \"08:00-17:00\"];",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        funnel_calendar_t *cal = cal_from(bodies[i]);
        int64_t from = utc(1985, 2, 3, 10, 17), to = utc(2031, 7, 9, 15, 41);
        int64_t want = between_by_days(cal, from, to);
        cr_assert_eq(funnel_calendar_between(cal, from, to), want, "calendar %zu", i);
        /* The office's figure counted without the calendar: from Sunday 1985-02-03 11:17 CET,
         * 12,112 weekdays up to Wednesday 2031-07-09, less three holidays on weekdays, plus
         * the Saturday worked as a Friday, at 8 h; then 09:00-13:00 and 14:00-17:41 CEST on the
         * last day. */
        if (i == 0)
            cr_assert_eq(want, (12112 - 3 + 1) * 8 * H + 7 * H + 41 * MN, "%lld", (long long)want);
        cr_assert_eq(funnel_calendar_between(cal, to, from), -want);
        /* add is the inverse (within its twenty years): the time accumulated by `mid` is
         * reached at its last working instant, at or before mid. */
        int64_t mid = utc(1999, 11, 20, 7, 3), want_mid = between_by_days(cal, from, mid);
        int64_t due = funnel_calendar_add(cal, from, want_mid);
        cr_assert_leq(due, mid, "calendar %zu", i);
        cr_assert_eq(between_by_days(cal, from, due), want_mid, "calendar %zu", i);
        cr_assert_eq(funnel_calendar_between(cal, due, mid), 0, "calendar %zu", i);
        funnel_calendar_destroy(&cal);
    }
}

Test(calendar, fifty_year_span_matches_the_day_walk)
{
    /* An anchor of 1970 (~20,000 days): the week-at-a-time arithmetic must agree with the
     * day-by-day walk over the whole span. How much quicker it is belongs in bench/, not in a
     * timed assertion that a busy machine can fail. */
    funnel_calendar_t *cal = cal_from(OFFICE_BERLIN);
    int64_t from = 0, to = utc(2026, 6, 1, 12, 0);
    cr_assert_eq(funnel_calendar_between(cal, from, to), between_by_days(cal, from, to));
    funnel_calendar_destroy(&cal);
}

Test(calendar, never_in_never_out)
{
    funnel_calendar_t *cal = cal_from(OFFICE_BERLIN);
    int64_t t = utc(2026, 3, 27, 16, 0);
    cr_assert_eq(funnel_calendar_add(cal, INT64_MAX, H), INT64_MAX);
    cr_assert_eq(funnel_calendar_add(cal, INT64_MAX, 0), INT64_MAX);
    cr_assert_eq(funnel_calendar_between(cal, t, INT64_MAX), INT64_MAX);
    cr_assert_eq(funnel_calendar_between(cal, INT64_MAX, t), -INT64_MAX);
    cr_assert_eq(funnel_calendar_between(cal, INT64_MAX, INT64_MAX), 0);
    /* ICU clamps instants beyond its range: no undefined behaviour (the sanitisers watch), and
     * a deadline is never before its start. */
    int64_t due = funnel_calendar_add(cal, INT64_MIN, H);
    cr_assert_gt(due, INT64_MIN, "an hour of work ends after its start (%lld)", (long long)due);
    cr_assert_eq(funnel_calendar_between(cal, INT64_MIN, due), H, "%lld", (long long)due);
    int64_t s, e;
    funnel_calendar_period(cal, FUNNEL_PERIOD_WEEK, INT64_MIN, &s, &e);
    cr_assert_lt(s, e);
    funnel_calendar_destroy(&cal);
}

/* A deterministic stream of pseudo-random numbers (xorshift64*). */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static int64_t rnd_in(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd(s) % (uint64_t)(hi - lo));
}

/* The answers a calendar gives from what it kept of ICU (local days, UTC offsets, plain weeks)
 * equal the reference path's, which asks ICU every time: random instants and spans over years
 * with DST changes, holidays, extra days, zones whose clocks change at midnight (Havana, Sao
 * Paulo, Santiago), by half an hour (Lord Howe), by a whole day (Apia skipped 2011-12-30), and
 * instants walked forward in small steps as an instance's events are, so the caches are hit. */
Test(calendar, caches_give_the_reference_answers, .timeout = 120)
{
    static const char *const bodies[] = {
        OFFICE_BERLIN "holidays = [\"2025-12-25\", \"2026-04-03\", \"2026-12-24\"];"
                      "extra_working_days = [\"2026-06-06=fri\", \"2025-03-29\"];",
        "time_zone = \"America/New_York\"; weekdays = [\"01:30-02:30\", \"08:00-17:00\"];",
        "time_zone = \"Europe/Berlin\"; weekdays = []; sun = [\"00:00-24:00\"];",
        "time_zone = \"America/Havana\"; weekdays = [\"00:00-01:30\", \"22:30-24:00\"];",
        "time_zone = \"America/Sao_Paulo\"; weekdays = [\"00:00-00:45\", \"09:00-18:00\"];",
        "time_zone = \"America/Santiago\"; weekdays = [\"00:00-24:00\"]; sat = [\"23:00-24:00\"];",
        "time_zone = \"Australia/Lord_Howe\"; weekdays = [\"01:45-02:15\", \"09:00-17:00\"];",
        "time_zone = \"Pacific/Apia\"; weekdays = [\"09:00-17:00\"]; sat = [\"10:00-12:00\"];",
        "time_zone = \"Asia/Kathmandu\"; weekdays = [\"09:00-18:00\"];",
    };
    uint64_t seed = 0x5eed5eed12345678ULL;
    int64_t lo = utc(1960, 1, 1, 0, 0), hi = utc(2040, 1, 1, 0, 0);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        funnel_calendar_t *cal = cal_from(bodies[i]), *ref = cal_from(bodies[i]);
        funnel_calendar_reference(ref);
        int64_t t = rnd_in(&seed, lo, hi);
        for (int n = 0; n < 3000; n++) {
            /* Mostly a small step on (the next event of an instance), sometimes a jump. */
            t = n % 50 == 0 ? rnd_in(&seed, lo, hi) : t + rnd_in(&seed, -2 * H, 30 * H);
            int64_t business = rnd_in(&seed, 0, 200 * H),
                    to = t + rnd_in(&seed, -40 * 24 * H, 40 * 24 * H);
            cr_assert_eq(funnel_calendar_add(cal, t, business),
                         funnel_calendar_add(ref, t, business), "calendar %zu add(%lld, %lld)", i,
                         (long long)t, (long long)business);
            cr_assert_eq(funnel_calendar_between(cal, t, to), funnel_calendar_between(ref, t, to),
                         "calendar %zu between(%lld, %lld)", i, (long long)t, (long long)to);
            for (funnel_period_t p = FUNNEL_PERIOD_WEEK; p <= FUNNEL_PERIOD_DAY; p++) {
                int64_t s1, e1, s2, e2;
                funnel_calendar_period(cal, p, t, &s1, &e1);
                funnel_calendar_period(ref, p, t, &s2, &e2);
                cr_assert(s1 == s2 && e1 == e2, "calendar %zu period %d of %lld", i, (int)p,
                          (long long)t);
            }
        }
        funnel_calendar_destroy(&ref);
        funnel_calendar_destroy(&cal);
    }
}
