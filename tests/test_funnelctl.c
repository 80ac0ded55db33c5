/* test_funnelctl.c — funnelctl against a real funneld: output, exit codes, JSON mapping. */
#include "harness.h"

#include "funnel/client.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;

static void setup(void)
{
    fx_daemon_suite_start(&tmp, &fd, NULL);
}

static void teardown(void)
{
    fx_daemon_suite_stop(&tmp, &fd);
}

TestSuite(funnelctl, .init = setup, .fini = teardown, .timeout = 60);

/* Runs funnelctl against the test daemon with up to 6 arguments; returns the exit code. */
static int ctl(char *out, size_t out_len, const char *a1, const char *a2, const char *a3,
               const char *a4, const char *a5, const char *a6)
{
    const char *args[] = {a1, a2, a3, a4, a5, a6, NULL};
    return fx_ctl(&fd, out, out_len, args);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

Test(funnelctl, publish_reports_ok_duplicate_and_rejected_with_exit_codes)
{
    char out[4096];
    cr_assert_eq(ctl(out, sizeof out, "publish", "lead.created",
                     "{\"eventId\":\"e-1\",\"leadId\":\"L-1\",\"owner\":\"anna\"}", NULL, NULL,
                     NULL),
                 0, "%s", out);
    cr_assert_str_eq(out, "ok e-1\n");
    cr_assert_eq(ctl(out, sizeof out, "publish", "lead.created",
                     "{\"event_id\":\"e-1\",\"lead_id\":\"L-1\"}", NULL, NULL, NULL),
                 0);
    cr_assert_str_eq(out, "duplicate e-1\n");
    cr_assert_eq(ctl(out, sizeof out, "publish", "payment.received",
                     "{\"eventId\":\"e-2\",\"paymentId\":\"p\",\"clientId\":\"c\","
                     "\"amount\":{\"minor\":\"100\",\"currency\":\"usd\"}}",
                     NULL, NULL, NULL),
                 1);
    cr_assert(strstr(out, "rejected e-2: ") && strstr(out, "ISO 4217"), "%s", out);
    /* Nothing sent: mapping and usage errors are caught locally. */
    cr_assert_eq(
        ctl(out, sizeof out, "publish", "lead.created", "{\"leadId\":5}", NULL, NULL, NULL), 1);
    cr_assert(strstr(out, "leadId: expected a string"), "%s", out);
    cr_assert_eq(ctl(out, sizeof out, "publish", "lead.exploded", "{}", NULL, NULL, NULL), 2);
    cr_assert(strstr(out, "not an ingest topic"), "%s", out);
    cr_assert_eq(ctl(out, sizeof out, "publish", "lead.created", NULL, NULL, NULL, NULL), 2);
}

Test(funnelctl, publish_generates_ids_and_times)
{
    char out[4096];
    cr_assert_eq(
        ctl(out, sizeof out, "publish", "lead.created", "{\"leadId\":\"L-9\"}", NULL, NULL, NULL),
        0, "%s", out);
    /* "ok " + a UUIDv7: 36 characters with the version nibble 7. */
    cr_assert_eq(strlen(out), 3 + 36 + 1, "%s", out);
    cr_assert_eq(out[3 + 14], '7', "%s", out);
    cr_assert_eq(ctl(out, sizeof out, "events", NULL, NULL, NULL, NULL, NULL), 0);
    cr_assert(strstr(out, "\"source\":\"funnelctl\"") && strstr(out, "\"leadId\":\"L-9\""), "%s",
              out);
}

/* The refusal of an over-long event_id reaches funnelctl (exit 1 with the reason), rather than
 * funnelctl waiting out its attempts for a reply it does not recognise (exit 3). */
Test(funnelctl, publish_with_an_over_long_event_id_is_refused)
{
    char out[4096], json[512], id[FUNNEL_ID_MAX + 2];
    memset(id, 'L', FUNNEL_ID_MAX + 1);
    id[FUNNEL_ID_MAX + 1] = '\0';
    snprintf(json, sizeof json, "{\"eventId\":\"%s\",\"leadId\":\"L\"}", id);
    cr_assert_eq(ctl(out, sizeof out, "publish", "lead.created", json, NULL, NULL, NULL), 1, "%s",
                 out);
    cr_assert(strstr(out, "event_id"), "%s", out);
}

Test(funnelctl, unreachable_daemon_exits_3)
{
    char out[4096];
    const char *argv[] = {FUNNELCTL_PATH,
                          "--submit",
                          "tcp://127.0.0.1:9",
                          "--timeout-ms",
                          "100",
                          "publish",
                          "lead.created",
                          "{\"leadId\":\"L\"}",
                          NULL};
    cr_assert_eq(fx_run(argv, out, sizeof out), 3, "%s", out);
    cr_assert(strstr(out, "did not answer"), "%s", out);
    const char *tail[] = {FUNNELCTL_PATH,
                          "--replay",
                          "tcp://127.0.0.1:9",
                          "--publish",
                          "tcp://127.0.0.1:9",
                          "--timeout-ms",
                          "100",
                          "tail",
                          NULL};
    cr_assert_eq(fx_run(tail, out, sizeof out), 3, "%s", out);
}

Test(funnelctl, tail_replays_then_stops_after_count_with_prefix_filter)
{
    char out[8192];
    ctl(out, sizeof out, "publish", "lead.created", "{\"eventId\":\"t-1\",\"leadId\":\"L\"}", NULL,
        NULL, NULL);
    ctl(out, sizeof out, "publish", "payment.received",
        "{\"eventId\":\"t-2\",\"paymentId\":\"p\",\"clientId\":\"c\",\"amount\":{\"minor\":1,"
        "\"currency\":\"EUR\"}}",
        NULL, NULL, NULL);
    ctl(out, sizeof out, "publish", "lead.qualified",
        "{\"eventId\":\"t-3\",\"leadId\":\"L\",\"stage\":\"SQL\"}", NULL, NULL, NULL);
    cr_assert_eq(ctl(out, sizeof out, "tail", "lead.", "--count", "2", NULL, NULL), 0);
    cr_assert_eq(count_lines(out), 2, "%s", out);
    cr_assert(strstr(out, "{\"seq\":1,\"topic\":\"lead.created\""), "%s", out);
    /* Engines add derived events after the payment (attribution credits), so lead.qualified
     * has a later sequence; it must still be the second lead.* line. */
    const char *second = strchr(out, '\n') + 1;
    cr_assert(strstr(second, "\"topic\":\"lead.qualified\""), "%s", out);
    cr_assert(strstr(out, "\"stage\":\"SQL\""), "%s", out);
    cr_assert_eq(ctl(out, sizeof out, "tail", "--from-seq", "2", "--count", "1", NULL), 0);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert(strncmp(out, "{\"seq\":2,\"topic\":\"payment.received\"", 35) == 0, "%s", out);
    /* Without --count, the idle timeout ends the follow. */
    cr_assert_eq(
        ctl(out, sizeof out, "tail", "lead.", "--from-seq", "2", "--idle-timeout-ms", "300"), 0);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert(strstr(out, "\"topic\":\"lead.qualified\""), "%s", out);
}

Test(funnelctl, events_and_rejected_read_the_database)
{
    char out[8192];
    for (int i = 0; i < 3; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"eventId\":\"ev-%d\",\"leadId\":\"L-%d\"}", i, i);
        ctl(out, sizeof out, "publish", "lead.created", json, NULL, NULL, NULL);
    }
    ctl(out, sizeof out, "publish", "lead.qualified", "{\"eventId\":\"bad-1\",\"leadId\":\"L\"}",
        NULL, NULL, NULL);
    cr_assert_eq(ctl(out, sizeof out, "events", "--limit", "2", NULL, NULL, NULL), 0);
    cr_assert_eq(count_lines(out), 2, "%s", out);
    cr_assert(strstr(out, "\"event_id\":\"ev-1\"") && strstr(out, "\"event_id\":\"ev-2\""),
              "newest two, oldest first: %s", out);
    cr_assert(strstr(out, "ev-1") < strstr(out, "ev-2"));
    cr_assert_eq(ctl(out, sizeof out, "rejected", NULL, NULL, NULL, NULL, NULL), 0);
    cr_assert(strstr(out, "\"event_id\":\"bad-1\"") && strstr(out, "\"reason\":\"bad_enum\""), "%s",
              out);
}

Test(funnelctl, events_and_rejected_show_bytes_that_are_not_utf8_escaped)
{
    /* A submitter sends an event_id that is not UTF-8: funneld refuses it (proto3 strings are
     * UTF-8) and its dead letter keeps the bytes. A row stored before funneld refused them is
     * made by rewriting an accepted one. Neither listing may leave the row out. */
    char out[8192];
    funnel_client_t *client;
    funnel_submit_result_t res;
    funnel_submit_options_t o = {3000, 1, 100};
    funnel_envelope_t *env = fx_lead_created("evt-\xff\xfe-1", "L-1", fx_now_ms());
    cr_assert_eq(funnel_client_new(&client), 0);
    int rc = funnel_client_submit(client, fd.submit, "lead.created", env, &o, &res);
    funnel_envelope_free(&env);
    funnel_client_destroy(&client);
    cr_assert_eq(rc, 0);
    cr_assert_eq(res.status, FUNNEL_SUBMIT_REJECTED, "%d %s", res.status, res.reason);
    cr_assert(strstr(res.reason, "event_id: not valid UTF-8 at byte 4"), "%s", res.reason);
    cr_assert_eq(ctl(out, sizeof out, "rejected", NULL, NULL, NULL, NULL, NULL), 0, "%s", out);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert(strstr(out, "\"event_id\":\"evt-\\\\xff\\\\xfe-1\"") &&
                  strstr(out, "\"reason\":\"bad_utf8\""),
              "%s", out);

    cr_assert_eq(ctl(out, sizeof out, "publish", "lead.created",
                     "{\"eventId\":\"ev-old\",\"leadId\":\"L-2\"}", NULL, NULL, NULL),
                 0, "%s", out);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(fd.db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_exec(db,
                              "UPDATE events SET event_id = CAST(X'65762dc0' AS TEXT), "
                              "source = CAST(X'6372fe6d' AS TEXT) WHERE event_id = 'ev-old'",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    cr_assert_eq(ctl(out, sizeof out, "events", NULL, NULL, NULL, NULL, NULL), 0, "%s", out);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert(strstr(out, "\"event_id\":\"ev-\\\\xc0\"") &&
                  strstr(out, "\"source\":\"cr\\\\xfem\""),
              "%s", out);
}

Test(funnelctl, usage_errors_exit_2)
{
    char out[4096];
    const char *none[] = {FUNNELCTL_PATH, NULL};
    cr_assert_eq(fx_run(none, out, sizeof out), 2);
    const char *unknown[] = {FUNNELCTL_PATH, "explode", NULL};
    cr_assert_eq(fx_run(unknown, out, sizeof out), 2);
    cr_assert(strstr(out, "unknown command 'explode'"), "%s", out);
    const char *badopt[] = {FUNNELCTL_PATH, "--limit", "x", "events", NULL};
    cr_assert_eq(fx_run(badopt, out, sizeof out), 2);
    const char *help[] = {FUNNELCTL_PATH, "--help", NULL};
    cr_assert_eq(fx_run(help, out, sizeof out), 0);
    cr_assert(strstr(out, "exit codes"), "%s", out);
    const char *nodb[] = {FUNNELCTL_PATH, "--db", "/nonexistent/x.db", "events", NULL};
    cr_assert_eq(fx_run(nodb, out, sizeof out), 1);
    cr_assert(strstr(out, "cannot open database"), "%s", out);
}

/* funneld on `*` ports: its ready file is the only place the endpoints are written, and it
 * names the database too, so funnelctl needs nothing else. */
Test(funnelctl, ready_file_gives_endpoints_and_database)
{
    char out[8192], ready[320];
    snprintf(ready, sizeof ready, "%s/ready", fd.dir);
    const char *lead = "{\"eventId\":\"evt-rf-1\",\"leadId\":\"L-rf\"}";
    const char *pub[] = {FUNNELCTL_PATH, "--ready-file", ready, "publish",
                         "lead.created", lead,           NULL};
    cr_assert_eq(fx_run(pub, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "ok evt-rf-1"), "%s", out);
    const char *events[] = {FUNNELCTL_PATH, "--ready-file", ready, "events", NULL};
    cr_assert_eq(fx_run(events, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "evt-rf-1"), "%s", out);
    const char *tail[] = {FUNNELCTL_PATH, "--ready-file", ready, "tail", "--count", "1", NULL};
    cr_assert_eq(fx_run(tail, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\"seq\":1"), "%s", out);
    const char *missing[] = {FUNNELCTL_PATH, "--ready-file", "/nonexistent/ready", "events", NULL};
    cr_assert_eq(fx_run(missing, out, sizeof out), 3, "%s", out);
    cr_assert(strstr(out, "/nonexistent/ready"), "%s", out);
}
