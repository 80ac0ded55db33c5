/* test_web.c — funnel-web's API against a real funneld and funnel-web on a known event stream
 * (web_fx.h): exact figures, the same figures as funnelctl for the same query, roles and their
 * refusals, bad parameters, login with its cookie and CSRF token, the acknowledgement through
 * funneld, the live stream with its resume and per-role filter, metrics and the users file. */
#include "web_fx.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static fx_web_t w;
static fx_http_reply_t r; /* large: static */

static void start(void)
{
    fx_web_start(&w);
}

static void stop(void)
{
    fx_web_stop(&w);
}

TestSuite(web, .init = start, .fini = stop, .timeout = 120);

static json_t *get_json(const char *token, const char *path, long want)
{
    fx_web_request(&w, token, path, NULL, NULL, &r);
    cr_assert_eq(r.status, want, "GET %s: %ld %s", path, r.status, r.body);
    json_error_t e;
    json_t *doc = json_loads(r.body, 0, &e);
    cr_assert_not_null(doc, "GET %s: not JSON: %s", path, r.body);
    return doc;
}

/* funnelctl's output for args, parsed as JSON. */
static json_t *ctl_json(const char *const *args)
{
    static char out[65536];
    cr_assert_eq(fx_ctl(&w.d, out, sizeof out, args), 0, "funnelctl: %s", out);
    json_error_t e;
    json_t *doc = json_loads(out, 0, &e);
    cr_assert_not_null(doc, "funnelctl printed no JSON: %s", out);
    return doc;
}

static void assert_same(json_t *api, json_t *ctl, const char *what)
{
    char *a = json_dumps(api, JSON_SORT_KEYS), *c = json_dumps(ctl, JSON_SORT_KEYS);
    cr_assert(json_equal(api, ctl), "%s: the API and funnelctl differ:\n%s\n%s", what, a, c);
    free(a);
    free(c);
    json_decref(api);
    json_decref(ctl);
}

/* The error of a refusal: status and a JSON {"error": ...}. */
static void assert_refused(const char *token, const char *path, const char *body, long status)
{
    fx_web_request(&w, token, path, body, NULL, &r);
    cr_assert_eq(r.status, status, "%s %s: %ld %s", body ? "POST" : "GET", path, r.status, r.body);
    json_t *doc = json_loads(r.body, 0, NULL);
    cr_assert(json_is_string(json_object_get(doc, "error")), "no JSON reason: %s", r.body);
    json_decref(doc);
}

/* The sla_id of key's instance, as a manager sees it. */
static void sla_id_of(const char *key, char *out, size_t len)
{
    json_t *list = get_json(w.token_mia, "/api/v1/sla", 200), *row;
    size_t i;
    out[0] = '\0';
    json_array_foreach(json_object_get(list, "instances"), i,
                       row) if (!strcmp(json_string_value(json_object_get(row, "key")), key))
        snprintf(out, len, "%s", json_string_value(json_object_get(row, "sla_id")));
    json_decref(list);
    cr_assert(out[0], "no SLA instance for %s", key);
}

/* The value at a dotted path ("rows.0.campaign": object keys and array indexes); NULL when
 * there is none. */
static json_t *json_path_get(json_t *doc, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); doc && k;
         k = strtok_r(NULL, ".", &save))
        doc = json_is_array(doc) ? json_array_get(doc, strtoul(k, NULL, 10))
                                 : json_object_get(doc, k);
    return doc;
}

static const char *str_at(json_t *doc, const char *path)
{
    const char *s = json_string_value(json_path_get(doc, path));
    cr_assert_not_null(s, "no string at %s", path);
    return s;
}

/* The current period's per-day counts (a 24x7 calendar: UTC days) are the days of the stream's
 * MQLs that fall in it (t0 - 9 d, - 7 d, - 3 d), oldest first, and they add up to the count. */
static void quota_days_are_the_mqls_days(json_t *cur)
{
    const int64_t d = FX_DAY_MS, mql[3] = {w.t0 - 9 * d, w.t0 - 7 * d, w.t0 - 3 * d};
    cr_assert(json_is_object(cur), "funneld opens the current period at start");
    int64_t start = strtoll(str_at(cur, "period_start_ms"), NULL, 10);
    json_t *days = json_object_get(cur, "days");
    size_t k = 0;
    for (int i = 0; i < 3; i++) {
        if (mql[i] < start)
            continue;
        json_t *day = json_array_get(days, k++);
        cr_assert_not_null(day, "no day for the MQL at %lld", (long long)mql[i]);
        char want[24];
        snprintf(want, sizeof want, "%lld", (long long)(mql[i] / d * d));
        cr_assert_str_eq(str_at(day, "day_start_ms"), want);
        cr_assert_eq(json_integer_value(json_object_get(day, "count")), 1);
    }
    cr_assert_eq(json_array_size(days), k);
    cr_assert_eq(json_integer_value(json_object_get(cur, "count")), (json_int_t)k);
    cr_assert_eq(json_integer_value(json_object_get(cur, "before_days")), 0);
}

Test(web, sla_board_shows_states_and_reps_see_only_their_own)
{
    json_t *b = get_json(w.token_mia, "/api/v1/sla?state=breached", 200);
    json_t *rows = json_object_get(b, "instances");
    cr_assert_eq(json_array_size(rows), 2);
    cr_assert_str_eq(str_at(b, "instances.0.key"), "L1");
    cr_assert_str_eq(str_at(b, "instances.0.owner"), "ann");
    cr_assert_str_eq(str_at(b, "instances.0.state"), "breached");
    cr_assert_str_eq(str_at(b, "instances.1.key"), "L5");
    char due[24];
    snprintf(due, sizeof due, "%lld", (long long)(w.t0 - FX_HOUR_MS));
    cr_assert_str_eq(str_at(b, "instances.0.due_at_ms"), due, "times are decimal strings");
    json_decref(b);

    json_t *met = get_json(w.token_mia, "/api/v1/sla?state=met&policy=sql_contact", 200);
    cr_assert_eq(json_array_size(json_object_get(met, "instances")), 1);
    cr_assert_str_eq(str_at(met, "instances.0.key"), "L2");
    cr_assert(json_is_true(
        json_object_get(json_array_get(json_object_get(met, "instances"), 0), "on_time")));
    json_decref(met);

    json_t *mine = get_json(w.token_ann, "/api/v1/sla", 200);
    cr_assert_eq(json_array_size(json_object_get(mine, "instances")), 1, "ann owns L1 only");
    cr_assert_str_eq(str_at(mine, "instances.0.key"), "L1");
    json_decref(mine);

    char l5[24], path[64];
    sla_id_of("L5", l5, sizeof l5);
    snprintf(path, sizeof path, "/api/v1/sla/%s", l5);
    assert_refused(w.token_ann, path, NULL, 403);
    assert_refused(w.token_ann, "/api/v1/sla?owner=bob", NULL, 403);
    json_t *one = get_json(w.token_bob, path, 200);
    cr_assert_str_eq(json_string_value(json_object_get(one, "policy")), "sql_contact");
    cr_assert(json_is_string(json_object_get(one, "definition")));
    json_decref(one);
    assert_refused(w.token_mia, "/api/v1/sla/999999", NULL, 404);
}

/* The due time of a list row for ordering: none sorts last. */
static int64_t due_of(json_t *row)
{
    const char *due = json_string_value(json_object_get(row, "due_at_ms"));
    return due ? strtoll(due, NULL, 10) : INT64_MAX;
}

static int64_t id_of(json_t *row)
{
    return strtoll(json_string_value(json_object_get(row, "sla_id")), NULL, 10);
}

/* The board's "Show more": pages of the live instances by due time, each going on after the
 * `next` of the one before. */
Test(web, sla_live_list_pages_by_due_time_with_a_cursor)
{
    json_t *all = get_json(w.token_mia, "/api/v1/sla?state=live&order=due", 200);
    json_t *rows = json_object_get(all, "instances");
    json_t *open = get_json(w.token_mia, "/api/v1/sla?state=open", 200);
    json_t *breached = get_json(w.token_mia, "/api/v1/sla?state=breached", 200);
    size_t n = json_array_size(rows);
    cr_assert_eq(n,
                 json_array_size(json_object_get(open, "instances")) +
                     json_array_size(json_object_get(breached, "instances")),
                 "live: the open and the breached");
    cr_assert_geq(n, 2);
    cr_assert_eq(json_integer_value(json_object_get(all, "total")), (json_int_t)n);
    cr_assert(json_is_null(json_object_get(all, "next")), "all of them on one page");
    for (size_t i = 1; i < n; i++) {
        json_t *a = json_array_get(rows, i - 1), *b = json_array_get(rows, i);
        cr_assert(due_of(a) < due_of(b) || (due_of(a) == due_of(b) && id_of(a) < id_of(b)),
                  "by due time, then id: row %zu", i);
    }
    char path[256] = "/api/v1/sla?state=live&order=due&limit=1";
    for (size_t i = 0; i < n; i++) {
        json_t *page = get_json(w.token_mia, path, 200);
        cr_assert_eq(json_array_size(json_object_get(page, "instances")), 1);
        cr_assert_eq(id_of(json_path_get(page, "instances.0")), id_of(json_array_get(rows, i)),
                     "page %zu is row %zu", i, i);
        cr_assert_eq(json_integer_value(json_object_get(page, "total")), (json_int_t)n);
        snprintf(path, sizeof path, "/api/v1/sla?state=live&order=due&limit=1&after=%s",
                 str_at(page, "next"));
        json_decref(page);
    }
    json_t *end = get_json(w.token_mia, path, 200);
    cr_assert_eq(json_array_size(json_object_get(end, "instances")), 0, "nothing after the last");
    cr_assert(json_is_null(json_object_get(end, "next")));
    json_t *mine = get_json(w.token_ann, "/api/v1/sla?state=live&order=due", 200);
    cr_assert_eq(json_array_size(json_object_get(mine, "instances")), 1, "ann owns L1 only");
    cr_assert_str_eq(str_at(mine, "instances.0.key"), "L1");
    cr_assert_eq(json_integer_value(json_object_get(mine, "total")), 1);
    assert_refused(w.token_mia, "/api/v1/sla?state=live&after=1:2", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/sla?state=live&order=due&after=soon", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/sla?state=live&order=due&after=1:0", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/sla?order=when", NULL, 400);
    json_decref(all);
    json_decref(open);
    json_decref(breached);
    json_decref(end);
    json_decref(mine);
}

/* The body of GET path as token, compact with sorted keys, equals want. */
static void assert_json_is(const char *token, const char *path, const char *want)
{
    json_t *doc = get_json(token, path, 200);
    char *got = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(got, want, "GET %s", path);
    free(got);
    json_decref(doc);
}

/* The board's policy and owner choices come from every live instance, not from the page of
 * rows drawn: a manager's are the live ones' (cy's met instance is not among them), a rep's
 * only their own. */
Test(web, sla_filters_list_the_policies_and_owners_of_every_live_instance)
{
    int64_t m = 60000;
    char json[256];
    snprintf(json, sizeof json,
             "{\"event_id\":\"e-l6-sql\",\"occurred_at_ms\":%lld,\"lead_id\":\"L6\","
             "\"stage\":\"SQL\",\"owner\":\"cy\"}",
             (long long)(w.t0 - 20 * m));
    fx_web_publish(&w, "lead.qualified", json);
    snprintf(json, sizeof json,
             "{\"event_id\":\"e-l6-contact\",\"occurred_at_ms\":%lld,\"lead_id\":\"L6\","
             "\"rep\":\"cy\"}",
             (long long)(w.t0 - 10 * m));
    fx_web_publish(&w, "lead.contacted", json);
    assert_json_is(w.token_mia, "/api/v1/sla/filters",
                   "{\"owners\":[\"ann\",\"bob\"],\"policies\":[\"sql_contact\"]}");
    assert_json_is(w.token_ann, "/api/v1/sla/filters",
                   "{\"owners\":[\"ann\"],\"policies\":[\"sql_contact\"]}");
    assert_json_is(w.token_bob, "/api/v1/sla/filters",
                   "{\"owners\":[\"bob\"],\"policies\":[\"sql_contact\"]}");
    assert_refused(NULL, "/api/v1/sla/filters", NULL, 401);
}

/* funneld again on its database, with sla.horizon set to horizon (a reload would do as well;
 * a restart runs the retention pass at once). */
static void funneld_restart_with_horizon(const char *horizon)
{
    static char text[8192];
    FILE *f = fopen(w.conf, "r");
    cr_assert_not_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *grace = strstr(text, "late_grace");
    cr_assert_not_null(grace, "the fixture's sla section");
    char conf[8192];
    snprintf(conf, sizeof conf, "%.*shorizon = \"%s\";\n%s", (int)(grace - text), text, horizon,
             grace);
    fx_file_put(w.conf, conf);
    cr_assert_eq(fx_daemon_stop(&w.d), 0);
    const char *args[] = {"--config", w.conf, NULL};
    fx_daemon_start(&w.d, w.tmp.path, args);
}

/* The instances of GET path once it lists n of them (the retention runs on funneld's timer),
 * at most 30 s. */
static json_t *sla_rows_once(const char *token, const char *path, size_t n)
{
    for (int i = 0; i < 600; i++) {
        json_t *doc = get_json(token, path, 200);
        if (json_array_size(json_object_get(doc, "instances")) == n)
            return doc;
        json_decref(doc);
        fx_sleep_ms(50);
    }
    cr_assert_fail("GET %s: never %zu instances: %s", path, n, r.body);
    return NULL;
}

/* An instance nobody stopped within the horizon is closed as expired (sla.met, expired): the
 * API lists and shows it as expired, never as met or live. With a horizon of 90 minutes, then
 * an event at t0 (the watermark, as funneld holds it, is the latest event since its start), L1
 * and L5 (idle since t0 - 2 h) expire at t0 - 30 m, after the cutoff (t0 - 90 m), so they are
 * kept; L2, met 6 days ago, is pruned. */
Test(web, an_expired_instance_is_listed_and_shown_as_expired)
{
    char l1[24], path[64], json[256];
    sla_id_of("L1", l1, sizeof l1);
    funneld_restart_with_horizon("90m");
    snprintf(json, sizeof json,
             "{\"event_id\":\"e-l9-mql\",\"occurred_at_ms\":%lld,\"lead_id\":\"L9\","
             "\"stage\":\"MQL\"}",
             (long long)w.t0);
    fx_web_publish(&w, "lead.qualified", json);
    json_t *gone = sla_rows_once(w.token_mia, "/api/v1/sla?state=expired", 2);
    cr_assert_str_eq(str_at(gone, "instances.0.key"), "L1");
    cr_assert_str_eq(str_at(gone, "instances.0.state"), "expired");
    cr_assert_str_eq(str_at(gone, "instances.1.key"), "L5");
    cr_assert_str_eq(str_at(gone, "instances.1.state"), "expired");
    json_decref(gone);
    snprintf(path, sizeof path, "/api/v1/sla/%s", l1);
    json_t *one = get_json(w.token_ann, path, 200);
    cr_assert_str_eq(str_at(one, "state"), "expired");
    cr_assert(json_is_false(json_object_get(one, "on_time")));
    cr_assert(json_is_null(json_object_get(one, "stop_event")));
    json_decref(one);
    json_decref(sla_rows_once(w.token_mia, "/api/v1/sla?state=met", 0));
    json_decref(sla_rows_once(w.token_mia, "/api/v1/sla?state=live", 0));
    json_t *all = sla_rows_once(w.token_mia, "/api/v1/sla", 2);
    cr_assert_str_eq(str_at(all, "instances.0.state"), "expired");
    json_decref(all);
    json_t *mine = sla_rows_once(w.token_ann, "/api/v1/sla?state=expired", 1);
    cr_assert_str_eq(str_at(mine, "instances.0.key"), "L1");
    json_decref(mine);
    assert_refused(w.token_mia, "/api/v1/sla?state=gone", NULL, 400);
}

Test(web, figures_are_exact_and_equal_to_funnelctl)
{
    /* attribution: L1's journey is spring then autumn; L2's webinar only (P1 less R1) */
    json_t *a = get_json(w.token_mia, "/api/v1/attribution?by=campaign&model=all", 200);
    cr_assert_str_eq(str_at(a, "rows.0.campaign"), "autumn");
    cr_assert_str_eq(str_at(a, "rows.0.credits.first_touch"), "0");
    cr_assert_str_eq(str_at(a, "rows.0.credits.last_touch"), "50000");
    cr_assert_str_eq(str_at(a, "rows.0.credits.linear"), "25000");
    cr_assert_str_eq(str_at(a, "rows.1.campaign"), "spring");
    cr_assert_str_eq(str_at(a, "rows.1.credits.first_touch"), "50000");
    cr_assert_str_eq(str_at(a, "rows.1.credits.linear"), "25000");
    cr_assert_str_eq(str_at(a, "rows.2.campaign"), "webinar");
    cr_assert_str_eq(str_at(a, "rows.2.credits.w_shaped"), "100000");
    const char *attr[] = {"attribution", "--by", "campaign", "--all-models", "--json", NULL};
    assert_same(a, ctl_json(attr), "attribution");
    json_t *lin =
        get_json(w.token_mia, "/api/v1/attribution?by=channel&model=linear&from=2020-01", 200);
    const char *attr2[] = {"attribution", "--by",    "channel", "--model", "linear",
                           "--from",      "2020-01", "--json",  NULL};
    assert_same(lin, ctl_json(attr2), "attribution linear by channel");

    /* statements: bob 12000 accrued, 2000 clawed back; the CSV is funnelctl's, byte for byte */
    char path[128];
    snprintf(path, sizeof path, "/api/v1/statements/bob?period=%s", w.period_bob);
    json_t *s = get_json(w.token_bob, path, 200);
    cr_assert_str_eq(str_at(s, "currencies.0.accruals"), "12000");
    cr_assert_str_eq(str_at(s, "currencies.0.clawbacks"), "2000");
    cr_assert_str_eq(str_at(s, "currencies.0.closing"), "10000");
    const char *st[] = {"statement", "--rep", "bob", "--period", w.period_bob, "--json", NULL};
    assert_same(s, ctl_json(st), "statement");
    snprintf(path, sizeof path, "/api/v1/statements/ann?period=%s&format=csv", w.period_ann);
    fx_web_request(&w, w.token_ann, path, NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    static char csv[65536];
    const char *st_csv[] = {"statement", "--rep", "ann", "--period", w.period_ann, "--csv", NULL};
    cr_assert_eq(fx_ctl(&w.d, csv, sizeof csv, st_csv), 0);
    cr_assert_str_eq(r.body, csv);
    cr_assert(strstr(csv, ",5000\n"), "ann accrues 10%% of 50000: %s", csv);

    /* the funnel by campaign; L5 was never created, so it has no campaign */
    json_t *f = get_json(w.token_mia, "/api/v1/funnel?by=campaign", 200);
    cr_assert_str_eq(str_at(f, "rows.0.campaign"), "");
    cr_assert_eq(json_integer_value(json_path_get(f, "rows.0.sql")), 1);
    cr_assert_str_eq(str_at(f, "rows.1.campaign"), "spring");
    cr_assert_eq(json_integer_value(json_path_get(f, "rows.1.leads")), 2);
    cr_assert_eq(json_integer_value(json_path_get(f, "rows.1.mql")), 2);
    cr_assert_eq(json_integer_value(json_path_get(f, "rows.1.sql")), 1);
    cr_assert_eq(json_integer_value(json_path_get(f, "rows.1.lost")), 1);
    cr_assert_str_eq(str_at(f, "rows.1.revenue.EUR"), "50000");
    cr_assert_str_eq(str_at(f, "rows.1.conversion_pct.mql_sql"), "50.0");
    cr_assert_str_eq(str_at(f, "rows.2.campaign"), "webinar");
    cr_assert_eq(json_integer_value(json_path_get(f, "rows.2.won")), 1);
    cr_assert_str_eq(str_at(f, "rows.2.median_ms.mql_sql"), "86400000");
    cr_assert_str_eq(str_at(f, "rows.2.median_ms.sql_contact"), "1800000");
    cr_assert_str_eq(str_at(f, "rows.2.median_ms.sql_won"), "86400000");
    cr_assert_str_eq(str_at(f, "rows.2.revenue.EUR"), "100000");
    const char *fun[] = {"funnel", "--by", "campaign", "--json", NULL};
    assert_same(f, ctl_json(fun), "funnel");
    json_t *seg = get_json(w.token_mia, "/api/v1/funnel?by=segment&from=2020-01-01", 200);
    const char *fun2[] = {"funnel", "--by", "segment", "--from", "2020-01-01", "--json", NULL};
    assert_same(seg, ctl_json(fun2), "funnel by segment");

    /* compliance per owner: bob met L2 on time after 30 minutes, L5 is breached */
    json_t *c = get_json(w.token_mia, "/api/v1/sla/compliance?by=owner", 200);
    cr_assert_str_eq(str_at(c, "rows.0.owner"), "ann");
    cr_assert_eq(json_integer_value(json_path_get(c, "rows.0.breached")), 1);
    cr_assert_str_eq(str_at(c, "rows.1.owner"), "bob");
    cr_assert_eq(json_integer_value(json_path_get(c, "rows.1.instances")), 2);
    cr_assert_eq(json_integer_value(json_path_get(c, "rows.1.met_on_time")), 1);
    cr_assert_str_eq(str_at(c, "rows.1.on_time_pct"), "100.0");
    cr_assert_str_eq(str_at(c, "rows.1.median_time_to_stop_ms"), "1800000");
    const char *comp[] = {"sla", "compliance", "--by", "owner", "--json", NULL};
    assert_same(c, ctl_json(comp), "compliance");

    /* quotas: the minimum comes from funneld's config */
    json_t *q = get_json(w.token_mia, "/api/v1/quota", 200);
    cr_assert_str_eq(str_at(q, "quotas.0.name"), "mql_monthly");
    cr_assert_eq(json_integer_value(json_path_get(q, "quotas.0.minimum")), 10);
    quota_days_are_the_mqls_days(json_path_get(q, "quotas.0.current"));
    json_decref(q);
}

Test(web, refusals_are_json_with_the_right_status)
{
    assert_refused(NULL, "/api/v1/sla", NULL, 401);
    assert_refused("0000", "/api/v1/sla", NULL, 401);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/statements/bob?period=%s", w.period_bob);
    assert_refused(w.token_ann, path, NULL, 403);
    assert_refused(w.token_ann, "/api/v1/attribution?by=campaign", NULL, 403);
    assert_refused(w.token_ann, "/api/v1/funnel?by=campaign", NULL, 403);
    assert_refused(w.token_mia, "/api/v1/rejected", NULL, 403);
    json_t *rej = get_json(w.token_root, "/api/v1/rejected", 200);
    cr_assert(json_is_array(json_object_get(rej, "rejected")));
    json_decref(rej);
    /* bad parameters */
    assert_refused(w.token_mia, "/api/v1/funnel?by=planet", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/attribution?by=campaign&model=nope", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/attribution?by=campaign&from=2026-13", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/attribution?by=campaign&from=2026-05&to=2026-04", NULL,
                   400);
    assert_refused(w.token_mia, "/api/v1/sla?state=lost", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/sla?limit=0", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/sla/abc", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/sla/compliance?by=week", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/statements/ann?period=soon", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/statements/ann?period=2026-12&format=xml", NULL, 400);
    assert_refused(w.token_mia, "/api/v1/statements/nobody?period=2026-12", NULL, 404);
    assert_refused(w.token_mia, "/api/v1/nothing", NULL, 404);
    assert_refused(w.token_mia, "/api/v1/sla/1/ack", NULL, 405);
}

Test(web, login_sets_a_strict_cookie_and_writes_need_the_csrf_token)
{
    const char *json_type[] = {"Content-Type: application/json", NULL};
    fx_web_request(&w, NULL, "/api/v1/login", "{\"name\":\"mia\",\"password\":\"wrong\"}",
                   json_type, &r);
    cr_assert_eq(r.status, 401);
    fx_web_request(&w, NULL, "/api/v1/login", "{\"name\":\"mia\",\"password\":\"mia-password\"}",
                   NULL, &r);
    cr_assert_eq(r.status, 415, "a login is JSON only (no cross-site form)");
    fx_web_request(&w, NULL, "/api/v1/login", "{\"name\":\"mia\",\"password\":\"mia-password\"}",
                   json_type, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.set_cookie, "HttpOnly"), "%s", r.set_cookie);
    cr_assert(strstr(r.set_cookie, "SameSite=Strict"), "%s", r.set_cookie);
    cr_assert(strstr(r.set_cookie, "Max-Age=43200"), "%s", r.set_cookie);
    cr_assert_null(strstr(r.set_cookie, "Secure"), "no TLS configured: %s", r.set_cookie);
    json_t *me = json_loads(r.body, 0, NULL);
    char csrf[128], cookie[128], l1[24], path[64];
    snprintf(csrf, sizeof csrf, "X-CSRF-Token: %s", json_string_value(json_object_get(me, "csrf")));
    json_decref(me);
    snprintf(cookie, sizeof cookie, "Cookie: %.*s", (int)strcspn(r.set_cookie, ";"), r.set_cookie);

    const char *with_cookie[] = {cookie, NULL};
    fx_web_request(&w, NULL, "/api/v1/me", NULL, with_cookie, &r);
    cr_assert(strstr(r.body, "\"name\":\"mia\"") && strstr(r.body, "\"role\":\"manager\""), "%s",
              r.body);
    sla_id_of("L1", l1, sizeof l1);
    snprintf(path, sizeof path, "/api/v1/sla/%s/ack", l1);
    fx_web_request(&w, NULL, path, "", with_cookie, &r);
    cr_assert_eq(r.status, 403, "a cookie alone cannot write: %s", r.body);
    const char *with_csrf[] = {cookie, csrf, NULL};
    fx_web_request(&w, NULL, path, "", with_csrf, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    assert_refused(w.token_ann, path, "", 403); /* reps do not acknowledge */

    fx_web_request(&w, NULL, "/api/v1/logout", "", with_cookie, &r);
    cr_assert_eq(r.status, 200);
    fx_web_request(&w, NULL, "/api/v1/sla", NULL, with_cookie, &r);
    cr_assert_eq(r.status, 401, "the session ended");
}

Test(web, acknowledge_goes_through_funneld_as_the_user)
{
    char l1[24], path[64];
    sla_id_of("L1", l1, sizeof l1);
    snprintf(path, sizeof path, "/api/v1/sla/%s/ack", l1);
    fx_web_request(&w, w.token_mia, path, "", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"answer\":\"ok\""), "%s", r.body);
    /* funneld committed it before its ack: the database shows who */
    snprintf(path, sizeof path, "/api/v1/sla/%s", l1);
    json_t *row = get_json(w.token_mia, path, 200);
    cr_assert_str_eq(json_string_value(json_object_get(row, "acked_by")), "mia");
    json_decref(row);
    snprintf(path, sizeof path, "/api/v1/sla/%s/ack", l1);
    fx_web_request(&w, w.token_mia, path, "", NULL, &r);
    cr_assert(strstr(r.body, "\"answer\":\"duplicate\""), "the same click twice: %s", r.body);
    /* the event is funneld's record of it, by the user's name */
    static char out[65536];
    const char *args[] = {"events", "--limit", "5", NULL};
    cr_assert_eq(fx_ctl(&w.d, out, sizeof out, args), 0);
    cr_assert(strstr(out, "\"escalation.acknowledged\"") && strstr(out, "\"by\":\"mia\""), "%s",
              out);
}

/* Compliance, the funnel and attribution read every instance or lead of their range (or sum a
 * model over them): an answer is kept while funneld has committed nothing, and computed again
 * (the same figures as funnelctl's) once it has. */
Test(web, costly_answers_are_kept_until_funneld_commits)
{
    const char *path = "/api/v1/sla/compliance?by=owner&per=week";
    const char *comp[] = {"sla", "compliance", "--by", "owner", "--week", "--json", NULL};
    const char *month[] = {"funnel", "--by", "month", "--json", NULL};
    /* (the fixture's own requests may have found the keeper's answers already) */
    fx_metrics_scrape(w.port, &r);
    double hits = fx_metric(r.body, "funnel_web_cache_hits_total");
    assert_same(get_json(w.token_mia, "/api/v1/funnel?by=month", 200), ctl_json(month), "month");
    assert_same(get_json(w.token_mia, path, 200), get_json(w.token_mia, path, 200), "kept");
    fx_metrics_scrape(w.port, &r);
    cr_assert_eq(fx_metric(r.body, "funnel_web_cache_hits_total"), hits + 1, "%s", r.body);
    assert_same(get_json(w.token_mia, "/api/v1/funnel?by=month", 200), ctl_json(month), "kept");
    /* (not the page's by=campaign, which the keeper files before anyone asks) */
    const char *attr = "/api/v1/attribution?by=source&model=all";
    const char *attr_ctl[] = {"attribution", "--by", "source", "--all-models", "--json", NULL};
    assert_same(get_json(w.token_mia, attr, 200), ctl_json(attr_ctl), "attribution");
    assert_same(get_json(w.token_mia, attr, 200), ctl_json(attr_ctl), "attribution kept");
    fx_metrics_scrape(w.port, &r);
    cr_assert_eq(fx_metric(r.body, "funnel_web_cache_hits_total"), hits + 3, "%s", r.body);
    /* funneld commits (an acknowledgement): the next answer is read again, then kept */
    char l1[24], ack[64];
    sla_id_of("L1", l1, sizeof l1);
    snprintf(ack, sizeof ack, "/api/v1/sla/%s/ack", l1);
    fx_web_request(&w, w.token_mia, ack, "", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    assert_same(get_json(w.token_mia, path, 200), ctl_json(comp), "after a commit");
    fx_metrics_scrape(w.port, &r);
    cr_assert_eq(fx_metric(r.body, "funnel_web_cache_hits_total"), hits + 3, "%s", r.body);
    assert_same(get_json(w.token_mia, path, 200), ctl_json(comp), "kept again");
    fx_metrics_scrape(w.port, &r);
    cr_assert_eq(fx_metric(r.body, "funnel_web_cache_hits_total"), hits + 4, "%s", r.body);
}

/* Waits (a minute at most) until the keeper has filed at least n answers; returns how many. */
static double kept_at_least(double n)
{
    for (int i = 0; i < 600; i++) {
        fx_metrics_scrape(w.port, &r);
        double kept = fx_metric(r.body, "funnel_web_answers_kept_total");
        if (kept >= n)
            return kept;
        usleep(100 * 1000);
    }
    cr_assert_fail("the keeper filed fewer than %g answers: %s", n, r.body);
    return 0;
}

/* The first request for the page's default funnel is served from the keeper (a cache hit),
 * current (no Age) and equal to funnelctl's. */
static void page_funnel_is_kept(const char *what)
{
    const char *ctl[] = {"funnel", "--by", "campaign", "--json", NULL};
    fx_metrics_scrape(w.port, &r);
    double hits = fx_metric(r.body, "funnel_web_cache_hits_total");
    json_t *api = get_json(w.token_mia, "/api/v1/funnel?by=campaign", 200);
    cr_assert_str_eq(r.age, "", "%s: current, not from before a commit", what);
    assert_same(api, ctl_json(ctl), what);
    fx_metrics_scrape(w.port, &r);
    cr_assert_eq(fx_metric(r.body, "funnel_web_cache_hits_total"), hits + 1,
                 "%s: the keeper's answer", what);
}

/* The page's default queries (keeper.c) are computed before anyone asks, and again after
 * funneld commits, so the page's first load does not compute them. */
Test(web, page_defaults_are_kept_before_the_first_request_and_after_each_commit)
{
    double kept = kept_at_least(4); /* funnel by campaign and channel, compliance, attribution */
    page_funnel_is_kept("at start");
    char l7[512];
    snprintf(l7, sizeof l7,
             "{\"event_id\":\"e-l7\",\"occurred_at_ms\":%lld,\"lead_id\":\"L7\","
             "\"touches\":[{\"campaign\":\"spring\",\"at_ms\":%lld}]}",
             (long long)(fx_now_ms() - FX_HOUR_MS), (long long)(fx_now_ms() - FX_HOUR_MS));
    fx_web_publish(&w, "lead.created", l7);
    kept_at_least(kept + 4);
    page_funnel_is_kept("after a commit");
}

/* ---- the live stream ---------------------------------------------------------------------- */

typedef fx_sse_buf_t sse_buf_t;

/* Reads the stream as token for ms milliseconds, from after last_id (NULL: from now). */
static void sse_read(const char *token, const char *last_id, int ms, sse_buf_t *b)
{
    fx_web_sse_read(&w, token, last_id, ms, b);
}

/* Waits until the follower has read everything funneld committed (the stream's backlog is
 * filled by a thread of its own). */
static void stream_caught_up(void)
{
    char want[32];
    snprintf(want, sizeof want, "id: %llu\n", (unsigned long long)fx_daemon_last_seq(&w.d));
    static sse_buf_t b;
    for (int i = 0; i < 50; i++) {
        sse_read(w.token_mia, "0", 300, &b);
        if (strstr(b.text, want))
            return;
    }
    cr_assert_fail("the stream never reached %s", want);
}

Test(web, stream_resumes_after_last_event_id_and_filters_per_role)
{
    static sse_buf_t all, ann, later;
    stream_caught_up();
    sse_read(w.token_mia, "0", 500, &all);
    cr_assert(strstr(all.text, "\"key\":\"L5\""), "a manager sees bob's SLA: %.300s", all.text);
    cr_assert(strstr(all.text, "event: message\ndata: {\"seq\":\""), "%.300s", all.text);
    sse_read(w.token_ann, "0", 500, &ann);
    cr_assert(strstr(ann.text, "\"key\":\"L1\""), "ann sees her SLA: %.300s", ann.text);
    cr_assert_null(strstr(ann.text, "\"key\":\"L5\""), "ann does not see bob's SLA");
    cr_assert_null(strstr(ann.text, "lead.created"), "nor the input stream");

    /* Resume: nothing at or before Last-Event-ID comes again. */
    char last[32];
    snprintf(last, sizeof last, "%llu", (unsigned long long)fx_daemon_last_seq(&w.d));
    char l6[256];
    snprintf(l6, sizeof l6,
             "{\"event_id\":\"e-l6-sql\",\"occurred_at_ms\":%lld,\"lead_id\":\"L6\","
             "\"stage\":\"SQL\",\"owner\":\"ann\"}",
             (long long)(fx_now_ms() - 2 * FX_HOUR_MS));
    fx_web_publish(&w, "lead.qualified", l6);
    sse_read(w.token_ann, last, 1500, &later);
    char first[48];
    snprintf(first, sizeof first, "id: %llu\n", (unsigned long long)strtoull(last, NULL, 10));
    cr_assert_null(strstr(later.text, first), "id %s came again", last);
    cr_assert(strstr(later.text, "\"topic\":\"sla.escalation\"") && strstr(later.text, "\"L6\""),
              "the new escalation: %.500s", later.text);
}

Test(web, healthz_metrics_and_assets)
{
    fx_web_request(&w, NULL, "/healthz", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    fx_web_request(&w, NULL, "/", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "<script src=\"/app.js\""), "the embedded page");
    fx_web_request(&w, NULL, "/app.js", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    fx_web_request(&w, w.token_mia, "/api/v1/sla", NULL, NULL, &r);
    fx_web_request(&w, w.token_mia, "/api/v1/funnel?by=nope", NULL, NULL, &r);
    fx_metrics_scrape(w.port, &r);
    cr_assert_geq(fx_metric(r.body, "funnel_web_requests_total{route=\"sla_list\"}"), 1);
    cr_assert_geq(fx_metric(r.body, "funnel_web_request_errors_total{route=\"funnel\"}"), 1);
    cr_assert_geq(fx_metric(r.body, "funnel_web_request_seconds_count{route=\"sla_list\"}"), 1);
    cr_assert_geq(
        fx_metric(r.body, "funnel_web_request_seconds_bucket{route=\"asset\",le=\"+Inf\"}"), 2);
}

Test(web, users_file_is_reloaded_on_sighup)
{
    char token[65];
    fx_web_add_user(w.users, "zed", "manager", "zed-password", token);
    fx_web_request(&w, token, "/api/v1/sla", NULL, NULL, &r);
    cr_assert_eq(r.status, 401, "not before the reload");
    kill(w.pid, SIGHUP);
    for (int i = 0; i < 100 && r.status != 200; i++) {
        fx_sleep_ms(50);
        fx_web_request(&w, token, "/api/v1/sla", NULL, NULL, &r);
    }
    cr_assert_eq(r.status, 200, "after SIGHUP: %s", r.body);
    /* a bad file keeps the users in force */
    fx_file_put(w.users, "users = ( { name = \"x\"; } );\n");
    kill(w.pid, SIGHUP);
    fx_daemon_t log = {0};
    snprintf(log.log, sizeof log.log, "%s", w.log);
    cr_assert(fx_daemon_log_has(&log, "users not reloaded", 10000));
    fx_web_request(&w, token, "/api/v1/sla", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "a broken users file changes nothing: %s", r.body);
}

Test(web, add_user_refuses_a_bad_role_or_an_empty_password)
{
    char out[2048];
    const char *bad_role[] = {"/bin/sh",
                              "-c",
                              "echo pw | \"$1\" --users \"$2\" --add-user x --role boss",
                              "sh",
                              FUNNEL_WEB_PATH,
                              w.users,
                              NULL};
    cr_assert_eq(fx_run(bad_role, out, sizeof out), 2, "%s", out);
    const char *empty[] = {"/bin/sh",
                           "-c",
                           "echo | \"$1\" --users \"$2\" --add-user x --role rep",
                           "sh",
                           FUNNEL_WEB_PATH,
                           w.users,
                           NULL};
    cr_assert_eq(fx_run(empty, out, sizeof out), 2, "%s", out);
}

/* Restarts funnel-web with warm_up = 0: nothing reads the report models until a request needs
 * one. */
static void respawn_cold(void)
{
    cr_assert_eq(fx_stop_child(&w.pid, w.log), 0);
    fx_web_spawn(&w, "warm_up = 0;\n");
}

/* The first request for a model not yet read is answered at once, 503 with Retry-After and a
 * reason, rather than held for the seconds the read takes on a big database; it starts the
 * read, and once it is done the route answers the same figures as funnelctl. */
static void model_first_request_is_503_then_figures(const char *path, const char *const *ctl)
{
    respawn_cold();
    fx_web_request(&w, w.token_mia, path, NULL, NULL, &r);
    cr_assert_eq(r.status, 503, "GET %s: %ld %s", path, r.status, r.body);
    cr_assert_str_eq(r.retry_after, "1");
    cr_assert(strstr(r.body, "still being read"), "%s", r.body);
    cr_assert_eq(fx_web_wait_ready(&w, path), 200);
    assert_same(get_json(w.token_mia, path, 200), ctl_json(ctl), path);
}

Test(web, funnel_model_being_read_answers_503_with_retry_after)
{
    const char *ctl[] = {"funnel", "--by", "campaign", "--json", NULL};
    model_first_request_is_503_then_figures("/api/v1/funnel?by=campaign", ctl);
}

Test(web, attribution_model_being_read_answers_503_with_retry_after)
{
    const char *ctl[] = {"attribution", "--by", "campaign", "--all-models", "--json", NULL};
    model_first_request_is_503_then_figures("/api/v1/attribution?by=campaign&model=all", ctl);
}
