/* test_e2e_sla.c — SLA timers through the real funneld on real time: short targets on the 24x7
 * calendar, deadlines that pass while funneld is down, and what comes out after the restart. */
#include "harness.h"
#include "sla_fx.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_client_t *client;
static char conf[300];

/* fast: warning after 1 s, due after 2 s, the level 1 s after due: all within a short
 * downtime. berlin (MQL starts): 8 business hours on a Berlin office calendar, for bursts of
 * past events; a batch waits 100 ms so a burst is one batch. */
static const char policy_text[] =
    "batch_delay_ms = 100;\n"
    "sla = {\n"
    "  calendars = { berlin = { time_zone = \"Europe/Berlin\";\n"
    "    weekdays = [\"09:00-13:00\", \"14:00-18:00\"]; }; };\n"
    "  policies = ( {\n"
    "    name = \"fast\"; start = \"lead.qualified stage=SQL\"; key = \"lead_id\";\n"
    "    stop = [\"lead.contacted\"]; target = \"2s\"; calendar = \"24x7\"; warning = \"1s\";\n"
    "    escalation = ( { after = \"1s\"; notify = \"team-lead\"; } );\n"
    "  }, {\n"
    "    name = \"berlin\"; start = \"lead.qualified stage=MQL\"; key = \"lead_id\";\n"
    "    stop = [\"lead.contacted\"]; pause = [\"lead.closed outcome=LOST\"];\n"
    "    resume = [\"lead.touched\"]; target = \"8h\"; calendar = \"berlin\";\n"
    "    warning = \"2h\"; escalation = ( { after = \"0\"; notify = \"team-lead\"; } );\n"
    "  } );\n"
    /* These tests watch overdue steps fire at once (after downtime, after a burst); the late
     * grace that holds them for a following batch is test_sla's. */
    "  late_grace = \"0\";\n"
    "};\n";

static void start(void)
{
    fx_suite_start(&tmp, &fd, &client, policy_text, conf);
}

static void stop(void)
{
    fx_suite_stop(&tmp, &fd, &client);
}

TestSuite(e2e_sla, .init = start, .fini = stop, .timeout = 120);

static void submit(funnel_envelope_t *env)
{
    fx_submit(client, &fd, env, FUNNEL_SUBMIT_OK);
}

static void sleep_until(int64_t at_ms)
{
    for (int64_t now = fx_now_ms(); now < at_ms; now = fx_now_ms()) {
        int64_t ms = at_ms - now;
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The sla.* output rows committed so far (and those of topic `also`), decoded, in sequence
 * order. */
typedef struct outputs {
    char topic[16][32];
    funnel_envelope_t *env[16];
    size_t n;
    const char *also; /* another topic to keep; NULL: none */
} outputs_t;

static int keep_sla_row(const funnel_outbox_row_t *row, void *arg)
{
    outputs_t *o = arg;
    bool also = o->also && strcmp(row->topic, o->also) == 0;
    if ((strncmp(row->topic, "sla.", 4) != 0 && !also) || o->n == 16)
        return 0;
    snprintf(o->topic[o->n], sizeof o->topic[o->n], "%s", row->topic);
    o->env[o->n++] = funnel__v1__envelope__unpack(NULL, row->len, row->envelope);
    return 0;
}

static void outputs_free(outputs_t *o)
{
    for (size_t i = 0; i < o->n; i++)
        funnel_envelope_free(&o->env[i]);
    o->n = 0;
}

/* Polls the database (read-only, as funnelctl does) until `want` sla.* rows are committed. */
static void wait_outputs(outputs_t *o, size_t want, int timeout_ms)
{
    for (int waited = 0;; waited += 50) {
        funnel_store_t *st;
        char err[256];
        outputs_free(o);
        cr_assert_eq(funnel_store_open(fd.db, true, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err),
                     0, "%s", err);
        funnel_store_outbox_read(st, 1, 100000, keep_sla_row, o);
        funnel_store_destroy(&st);
        if (o->n >= want || waited >= timeout_ms)
            break;
        sleep_until(fx_now_ms() + 50);
    }
    cr_assert_geq(o->n, want, "%zu of %zu sla outputs after %d ms", o->n, want, timeout_ms);
}

Test(e2e_sla, deadlines_passing_while_down_fire_at_once_after_restart)
{
    int64_t t0 = fx_now_ms();
    submit(fx_qualified("q-1", "L-1", FUNNEL__V1__STAGE__SQL, t0));
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    sleep_until(t0 + 3500); /* warning, due and the level all pass while funneld is down */
    const char *args[] = {"--config", conf, NULL};
    fx_daemon_start(&fd, tmp.path, args);
    /* "At once" is "before any input": the overdue steps are committed before an event
     * submitted the moment funneld is ready. */
    funnel_envelope_t *first = fx_lead_created("first-input", "L-9", fx_now_ms());
    submit(first);
    outputs_t o = {.also = "lead.created"};
    wait_outputs(&o, 3, 10000);
    cr_assert_str_eq(o.topic[2], "lead.created", "overdue steps fire before new input");
    cr_assert_str_eq(o.topic[0], "sla.warning");
    cr_assert_eq(o.env[0]->occurred_at_ms, t0 + 1000, "the warning keeps its original time");
    cr_assert_eq(o.env[0]->sla_warning->sla->due_at_ms, t0 + 2000);
    cr_assert_str_eq(o.topic[1], "sla.escalation");
    cr_assert_eq(o.env[1]->occurred_at_ms, t0 + 3000);
    cr_assert_str_eq(o.env[1]->sla_escalation->notify, "team-lead");
    /* A stop that occurred before the due time but arrives now is still on time. */
    submit(fx_contacted("c-1", "L-1", t0 + 1500));
    wait_outputs(&o, 4, 10000);
    cr_assert_str_eq(o.topic[3], "sla.met");
    cr_assert(o.env[3]->sla_met->on_time);
    outputs_free(&o);
}

Test(e2e_sla, live_deadline_fires_on_time_and_ack_stops_levels)
{
    int64_t t0 = fx_now_ms();
    submit(fx_qualified("q-2", "L-2", FUNNEL__V1__STAGE__SQL, t0));
    outputs_t o = {0};
    wait_outputs(&o, 1, 10000);
    cr_assert_str_eq(o.topic[0], "sla.warning");
    cr_assert_eq(o.env[0]->occurred_at_ms, t0 + 1000);
    /* Acknowledged before the level at t0 + 3 s: that level never comes. To know that funneld
     * is past t0 + 3 s without timing it, a second instance starts now: its own level, due
     * later than L-2's, comes out in deadline order after L-2's would have. */
    submit(fx_acked("a-2", o.env[0]->sla_warning->sla->sla_id, fx_now_ms()));
    submit(fx_qualified("q-3", "L-3", FUNNEL__V1__STAGE__SQL, fx_now_ms()));
    wait_outputs(&o, 3, 20000);
    cr_assert_str_eq(o.topic[1], "sla.warning", "L-3's warning");
    cr_assert_str_eq(o.topic[2], "sla.escalation", "L-3's level, and none for L-2");
    cr_assert_str_eq(o.env[2]->sla_escalation->sla->key, "L-3");
    /* funnelctl reads the same rows: past due and unstopped is breached. */
    char out[8192], sla_id[32];
    snprintf(sla_id, sizeof sla_id, "%s", o.env[0]->sla_warning->sla->sla_id);
    const char *breached[] = {"sla", "list", "--state", "breached", "--json", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, breached), 0, "%s", out);
    cr_assert(strstr(out, "\"key\":\"L-2\"") && strstr(out, "\"state\":\"breached\""), "%s", out);
    const char *met[] = {"sla", "list", "--state", "met", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, met), 0, "%s", out);
    cr_assert_null(strstr(out, "L-2"), "%s", out);
    /* funnelctl takes the states funnel-web takes (one parser): live is every unmet one, and
     * nothing has expired within the horizon. */
    const char *live[] = {"sla", "list", "--state", "live", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, live), 0, "%s", out);
    cr_assert(strstr(out, "L-2") && strstr(out, "L-3"), "%s", out);
    const char *expired[] = {"sla", "list", "--state", "expired", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, expired), 0, "%s", out);
    cr_assert_null(strstr(out, "L-2"), "%s", out);
    const char *unknown[] = {"sla", "list", "--state", "gone", NULL};
    cr_assert_neq(fx_ctl(&fd, out, sizeof out, unknown), 0, "%s", out);
    cr_assert(strstr(out, "--state must be open, breached, live, met or expired"), "%s", out);
    const char *show[] = {"sla", "show", sla_id, NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, show), 0, "%s", out);
    cr_assert(strstr(out, "\"acked_by\": \"oncall-bob\""), "%s", out);
    cr_assert(strstr(out, "target = \\\"2s\\\""), "the version's definition: %s", out);
    const char *missing[] = {"sla", "show", "424242", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, missing), 1, "%s", out);
    outputs_free(&o);
}

/* An acknowledgement naming an instance funneld never issued is refused with the reason, kept
 * as a dead letter, and changes nothing: an `ok` would tell the on-call tool it stopped an
 * escalation that does not exist. */
Test(e2e_sla, acknowledgement_of_an_unknown_sla_is_refused_with_its_reason)
{
    funnel_submit_result_t res = fx_submit(
        client, &fd, fx_acked("a-unknown", "987654", fx_now_ms()), FUNNEL_SUBMIT_REJECTED);
    cr_assert(strstr(res.reason, "unknown sla_id '987654'"), "%s", res.reason);
    char out[8192];
    const char *rejected[] = {"rejected", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, rejected), 0, "%s", out);
    cr_assert(strstr(out, "a-unknown"), "dead-lettered: %s", out);
}

Test(e2e_sla, steps_due_between_events_of_one_burst_keep_their_times)
{
    /* Mon 2026-11-02 11:00 CET start, paused 18:10, resumed 23:10, sent long after in one
     * burst: the warning is Mon 18:00 (not 23:10), the level at the due time Tue 11:00. */
    const int64_t nov2 = 1793577600000LL, h = 3600000LL, mn = 60000LL;
    funnel_envelope_t *burst[] = {
        fx_qualified("b-1", "L-b", FUNNEL__V1__STAGE__MQL, nov2 + 10 * h),
        fx_closed("b-2", "L-b", FUNNEL__V1__OUTCOME__LOST, nov2 + 17 * h + 10 * mn),
        fx_touched("b-3", "L-b", nov2 + 22 * h + 10 * mn),
    };
    fx_submit_burst(fd.submit, burst, 3, "ok", NULL); /* one batch */
    outputs_t o = {0};
    wait_outputs(&o, 2, 10000);
    cr_assert_str_eq(o.topic[0], "sla.warning");
    cr_assert_eq(o.env[0]->occurred_at_ms, nov2 + 17 * h);
    cr_assert_eq(o.env[0]->sla_warning->sla->due_at_ms, nov2 + 34 * h);
    cr_assert_str_eq(o.topic[1], "sla.escalation");
    cr_assert_eq(o.env[1]->occurred_at_ms, nov2 + 34 * h);
    cr_assert_eq(o.env[1]->sla_escalation->level, 1);
    outputs_free(&o);
}
