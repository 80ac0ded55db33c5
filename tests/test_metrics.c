/* test_metrics.c — funneld's Prometheus endpoint scraped over real HTTP after a known stream. */
#include "harness.h"
#include "http_fx.h"
#include "sla_fx.h"

#include "funnel/client.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static int port;

static void setup(void)
{
    const char *args[] = {"--set", "metrics=127.0.0.1:0", NULL};
    fx_daemon_suite_start(&tmp, &fd, args);
    /* port 0 in the config: the port funneld bound, from its ready file */
    port = fd.metrics_port;
    cr_assert_gt(port, 0, "the ready file names the metrics port");
}

static void teardown(void)
{
    fx_daemon_suite_stop(&tmp, &fd);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 60);

typedef fx_http_reply_t body_t;

static long get(const char *path, body_t *b)
{
    fx_http(port, path, NULL, 0, NULL, b);
    return b->status;
}

/* Submits env under topic, which may not be its own (a mismatch funneld refuses). */
static void submit(funnel_client_t *c, const char *topic, funnel_envelope_t *env)
{
    funnel_submit_result_t res;
    cr_assert_eq(funnel_client_submit(c, fd.submit, topic, env, NULL, &res), 0);
    funnel_envelope_free(&env);
}

static double sample(const char *text, const char *series)
{
    return fx_metric(text, series);
}

Test(metrics, scrape_after_a_known_stream)
{
    funnel_client_t *c;
    body_t b;
    cr_assert_eq(get("/healthz", &b), 200);
    cr_assert_str_eq(b.body, "ok\n");
    cr_assert_eq(funnel_client_new(&c), 0);
    int64_t now = fx_now_ms();
    fx_submit(c, &fd, fx_lead_created("m-1", "L-1", now), FUNNEL_SUBMIT_OK);
    fx_submit(c, &fd, fx_lead_created("m-2", "L-2", now), FUNNEL_SUBMIT_OK);
    fx_submit(c, &fd, fx_lead_created("m-3", "L-3", now), FUNNEL_SUBMIT_OK);
    fx_submit(c, &fd, fx_lead_created("m-1", "L-1", now), FUNNEL_SUBMIT_DUPLICATE);
    /* A lead.created body under the lead.qualified topic: refused as a mismatch. */
    funnel_envelope_t *bad = fx_lead_created("m-4", "L-4", now);
    submit(c, "lead.qualified", bad);
    funnel_client_destroy(&c);

    cr_assert_eq(get("/metrics", &b), 200);
    const char *t = b.body;
    cr_assert_eq(sample(t, "funnel_events_total{topic=\"lead.created\",result=\"accepted\"}"), 3,
                 "%s", t);
    cr_assert_eq(sample(t, "funnel_events_total{topic=\"lead.created\",result=\"duplicate\"}"), 1,
                 "%s", t);
    cr_assert_eq(sample(t, "funnel_events_refused_total{topic=\"lead.qualified\",reason=\"topic_"
                           "mismatch\"}"),
                 1, "%s", t);
    double published = sample(t, "funnel_published_total");
    cr_assert_geq(published, 3, "%s", t);
    cr_assert_eq(sample(t, "funnel_output_last_seq"), published, "%s", t);
    cr_assert_eq(sample(t, "funnel_outbox_backlog"), published, "nothing pruned yet: %s", t);
    /* One batch per acknowledged submit: five batches of one message. */
    cr_assert_eq(sample(t, "funnel_commit_batch_size_count"), 5, "%s", t);
    cr_assert_eq(sample(t, "funnel_commit_batch_size_sum"), 5, "%s", t);
    cr_assert_eq(sample(t, "funnel_commit_batch_size_bucket{le=\"1\"}"), 5, "%s", t);
    cr_assert_eq(sample(t, "funnel_commit_seconds_count"), 5, "%s", t);
    cr_assert_eq(sample(t, "funnel_commit_seconds_bucket{le=\"+Inf\"}"), 5, "%s", t);
    cr_assert_gt(sample(t, "funnel_commit_seconds_sum"), 0, "%s", t);
    cr_assert(strstr(t, "# TYPE funnel_commit_seconds histogram"), "%s", t);
    /* Failure and loss series are written from the start, at zero, so rate() works at once. */
    cr_assert_eq(sample(t, "funnel_commit_failures_total{kind=\"busy\"}"), 0, "%s", t);
    cr_assert_eq(sample(t, "funnel_commit_failures_total{kind=\"error\"}"), 0, "%s", t);
    cr_assert_eq(sample(t, "funnel_events_lost_total{reason=\"commit_failed\"}"), 0, "%s", t);
    cr_assert_eq(sample(t, "funnel_events_lost_total{reason=\"event_failed\"}"), 0, "%s", t);
    cr_assert_eq(sample(t, "funnel_events_lost_total{reason=\"out_of_memory\"}"), 0, "%s", t);
    cr_assert_eq(get("/nope", &b), 404);
    fx_http(port, "/metrics", "x", 1, NULL, &b); /* scrapes are GETs, on the shared server too */
    cr_assert_eq(b.status, 405);
}

/* Polls /metrics until `series` reaches at least want, or exactly want when exact is set
 * (timers run on real time here, and gauges may be updated after the ack). */
static double await_sample(const char *series, double want, bool exact, body_t *b)
{
    double v = -1;
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(get("/metrics", b), 200);
        v = sample(b->body, series);
        if (exact ? v == want : v >= want)
            break;
        fx_sleep_ms(50);
    }
    return v;
}

Test(metrics, sla_open_instances_and_timer_lag)
{
    char conf[512];
    fx_daemon_stop(&fd);
    fx_file_write(tmp.path, "sla.conf",
                  "sla = { policies = ( { name = \"contact\"; start = \"lead.qualified "
                  "stage=SQL\"; key = \"lead_id\"; stop = [\"lead.contacted\"]; target = \"1s\";"
                  " calendar = \"24x7\"; warning = \"50%\"; } ); late_grace = \"0\"; };\n",
                  conf, sizeof conf);
    const char *args[] = {"--config", conf, "--set", "metrics=127.0.0.1:0", NULL};
    memset(&fd, 0, sizeof fd);
    fx_daemon_start(&fd, tmp.path, args);
    port = fd.metrics_port;

    funnel_client_t *c;
    body_t b;
    cr_assert_eq(funnel_client_new(&c), 0);
    int64_t now = fx_now_ms();
    fx_submit(c, &fd, fx_qualified("q-1", "L-1", FUNNEL__V1__STAGE__SQL, now), FUNNEL_SUBMIT_OK);
    fx_submit(c, &fd, fx_qualified("q-2", "L-2", FUNNEL__V1__STAGE__SQL, now), FUNNEL_SUBMIT_OK);
    fx_submit(c, &fd, fx_contacted("c-1", "L-1", now), FUNNEL_SUBMIT_OK);
    funnel_client_destroy(&c);
    cr_assert_eq(await_sample("funnel_engine_open{engine=\"sla\"}", 1, true, &b), 1, "%s", b.body);
    /* L-2's warning is due 0.5 s after it started: the timer pass is measured for lag. */
    cr_assert_geq(await_sample("funnel_timer_lag_seconds_count", 1, false, &b), 1, "%s", b.body);
    cr_assert_geq(sample(b.body, "funnel_timer_lag_seconds_bucket{le=\"+Inf\"}"), 1, "%s", b.body);
}
