/* test_e2e_attribution.c — attribution through the real funneld: a config file with an
 * attribution section, a journey, a payment that arrives before its handoff, the
 * attribution.credited stream read back by replay, and `funnelctl attribution` reports. */
#include "harness.h"
#include "ledger_fx.h"

#include "funnel/attribution_report.h"
#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "funnel/date.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400000LL

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_client_t *client;

static void start(void)
{
    char conf[300];
    fx_suite_start(&tmp, &fd, &client,
                   "attribution = {\n  models = [\"first_touch\", \"linear\", \"time_decay\"];\n"
                   "  lookback_days = 60;\n  half_life_days = 7;\n};\n",
                   conf);
}

static void stop(void)
{
    fx_suite_stop(&tmp, &fd, &client);
}

TestSuite(e2e_attribution, .init = start, .fini = stop, .timeout = 120);

static void submit_json(const char *topic, const char *json)
{
    funnel_body_t body;
    funnel_envelope_t *env;
    char err[256];
    cr_assert_eq(funnel_topic_lookup(topic, strlen(topic), &body), 0);
    cr_assert_eq(funnel_json_envelope_build(body, json, fx_now_ms(), &env, err, sizeof err), 0,
                 "%s", err);
    fx_submit(client, &fd, env, FUNNEL_SUBMIT_OK);
}

/* What the replayed attribution.credited stream adds up to. */
typedef struct seen {
    int messages, credited, reversals;
    int64_t net[3]; /* first_touch on search, linear in all, unattributed in all models */
    bool bad_time;  /* a credit not dated at the payment */
    int64_t pay_at;
} seen_t;

static int on_message(uint64_t seq, const char *topic, const uint8_t *data, size_t len, void *arg)
{
    (void)seq;
    seen_t *s = arg;
    if (strcmp(topic, "attribution.credited"))
        return 0;
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, len, data);
    if (!env || env->body_case != FUNNEL__V1__ENVELOPE__BODY_ATTRIBUTION_CREDITED) {
        funnel_envelope_free(&env);
        return 1;
    }
    const Funnel__V1__AttributionCredited *c = env->attribution_credited;
    s->messages++;
    funnel_attr_credit_t *credits;
    size_t n;
    if (funnel_attribution_credits(c, &credits, &n)) {
        funnel_envelope_free(&env);
        return 1;
    }
    for (size_t k = 0; k < n; k++) {
        const funnel_attr_credit_t *cr = &credits[k];
        const char *campaign = c->touches[cr->touch]->campaign;
        int64_t v = cr->minor;
        s->credited++;
        s->reversals += cr->reversal;
        if (cr->model == FUNNEL_ATTR_FIRST_TOUCH && !strcmp(campaign, "search"))
            s->net[0] += v;
        if (cr->model == FUNNEL_ATTR_LINEAR)
            s->net[1] += v;
        if (!strcmp(campaign, "(unattributed)"))
            s->net[2] += v;
    }
    free(credits);
    s->bad_time |= env->occurred_at_ms != s->pay_at;
    funnel_envelope_free(&env);
    return 0;
}

Test(e2e_attribution, journey_late_handoff_replay_and_report)
{
    int64_t now = fx_now_ms();
    char json[1024];
    snprintf(json, sizeof json,
             "{\"eventId\":\"a-lead\",\"occurredAtMs\":%lld,\"leadId\":\"L\",\"touches\":["
             "{\"campaign\":\"search\",\"source\":\"google\",\"medium\":\"cpc\",\"channel\":"
             "\"paid\",\"atMs\":%lld},{\"campaign\":\"webinar\",\"source\":\"site\",\"medium\":"
             "\"event\",\"channel\":\"owned\",\"atMs\":%lld}]}",
             (long long)(now - 10 * DAY), (long long)(now - 20 * DAY), (long long)(now - 10 * DAY));
    submit_json("lead.created", json);
    int64_t pay_at = now - 3600000;
    snprintf(json, sizeof json,
             "{\"eventId\":\"a-pay\",\"occurredAtMs\":%lld,\"paymentId\":\"P\",\"clientId\":"
             "\"C\",\"amount\":{\"minor\":10007,\"currency\":\"EUR\"}}",
             (long long)pay_at);
    submit_json("payment.received", json); /* before the handoff: unattributed for now */
    snprintf(json, sizeof json,
             "{\"eventId\":\"a-handoff\",\"occurredAtMs\":%lld,\"clientId\":\"C\",\"leadId\":"
             "\"L\",\"fromRep\":\"rep\"}",
             (long long)(now - DAY));
    submit_json("client.handed_off", json);

    seen_t s = {.pay_at = pay_at};
    funnel_follow_options_t opts = {.from_seq = 1};
    cr_assert_eq(fx_follow_to_end(&fd, client, &opts, on_message, &s), 0);
    /* 3 unattributed lines, their 3 reversals, then 1 + 2 + 2 journey lines: one message for
     * the payment, one for the handoff that re-credits it */
    cr_assert_eq(s.messages, 2, "messages %d", s.messages);
    cr_assert_eq(s.credited, 11, "credited %d", s.credited);
    cr_assert_eq(s.reversals, 3);
    cr_assert_eq(s.net[0], 10007);
    cr_assert_eq(s.net[1], 10007);
    cr_assert_eq(s.net[2], 0);
    cr_assert(!s.bad_time, "every credit is dated at the payment");

    char out[8192];
    const char *csv[] = {"attribution", "--by", "campaign", "--all-models", "--csv", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, csv), 0, "%s", out);
    cr_assert(strstr(out, "campaign,currency,first_touch,last_touch,linear,u_shaped,w_shaped,"
                          "full_path,time_decay,j_shaped,inverse_j\n"),
              "%s", out);
    cr_assert(strstr(out, "\nsearch,EUR,10007,0,5004,0,0,0,"), "%s", out);
    cr_assert(strstr(out, "\nwebinar,EUR,0,0,5003,0,0,0,"), "%s", out);
    cr_assert(strstr(out, "\n(unattributed),EUR,0,0,0,0,0,0,0,0,0\n"), "%s", out);

    const char *js[] = {"attribution", "--by", "channel", "--model", "linear", "--json", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, js), 0, "%s", out);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    cr_assert_not_null(doc, "%s: %s", jerr.text, out);
    json_t *rows = json_object_get(doc, "rows");
    int64_t paid = 0, owned = 0;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        const char *ch = json_string_value(json_object_get(row, "channel"));
        int64_t v = fx_json_minor(json_object_get(json_object_get(row, "credits"), "linear"));
        if (ch && !strcmp(ch, "paid"))
            paid = v;
        if (ch && !strcmp(ch, "owned"))
            owned = v;
    }
    json_decref(doc);
    cr_assert_eq(paid, 5004);
    cr_assert_eq(owned, 5003);

    /* a window after the payment holds nothing; bad options are usage errors */
    const char *later[] = {"attribution", "--by", "source", "--from", "2999-01-01", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, later), 0, "%s", out);
    cr_assert_null(strstr(out, "google"), "%s", out);
    const char *backwards[] = {"attribution", "--by", "source",     "--from",
                               "2026-11-02",  "--to", "2026-11-01", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, backwards), 2, "%s", out);
    cr_assert(strstr(out, "--from 2026-11-02 is after --to 2026-11-01"), "%s", out);
    const char *one_day[] = {"attribution", "--by", "source",     "--from",
                             "2026-11-01",  "--to", "2026-11-01", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, one_day), 0, "%s", out);
    const char *bad_by[] = {"attribution", "--by", "rep", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, bad_by), 2, "%s", out);
    const char *bad_model[] = {"attribution", "--by", "source", "--model", "nope", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, bad_model), 2, "%s", out);
}

/* Submits client C's handoff from lead L. */
static void submit_handoff(const char *event_id, int64_t at_ms)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"eventId\":\"%s\",\"occurredAtMs\":%lld,\"clientId\":\"C\",\"leadId\":"
             "\"L\",\"fromRep\":\"rep\"}",
             event_id, (long long)at_ms);
    submit_json("client.handed_off", json);
}

/* Runs `funnelctl attribution --by campaign --model model --csv`; returns its exit status. */
static int campaign_csv(const char *model, char *out, size_t out_len)
{
    const char *argv[] = {"attribution", "--by", "campaign", "--model", model, "--csv", NULL};
    return fx_ctl(&fd, out, out_len, argv);
}

/* Submits a payment of minor EUR for client C at at_ms. */
static void submit_payment(const char *event_id, int64_t minor, int64_t at_ms)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"eventId\":\"%s\",\"occurredAtMs\":%lld,\"paymentId\":\"%s\",\"clientId\":"
             "\"C\",\"amount\":{\"minor\":\"%lld\",\"currency\":\"EUR\"}}",
             event_id, (long long)at_ms, event_id, (long long)minor);
    submit_json("payment.received", json);
}

/* Two payments near INT64_MAX before the handoff: their unattributed credits are reversed when
 * it arrives, so that group's rows run +MAX, +(MAX-1), -MAX, -(MAX-1). Summed row by row in
 * int64 that overflows although the total is 0; the report sums in 128 bits and fails only on a
 * total that does not fit, naming it. */
Test(e2e_attribution, report_sums_large_credits_exactly)
{
    int64_t now = fx_now_ms();
    char json[1024];
    snprintf(json, sizeof json,
             "{\"eventId\":\"b-lead\",\"occurredAtMs\":%lld,\"leadId\":\"L\",\"touches\":["
             "{\"campaign\":\"search\",\"atMs\":%lld},{\"campaign\":\"webinar\",\"atMs\":%lld}]}",
             (long long)(now - 10 * DAY), (long long)(now - 20 * DAY), (long long)(now - 10 * DAY));
    submit_json("lead.created", json);
    submit_payment("b-pay-1", INT64_MAX, now - 7200000);
    submit_payment("b-pay-2", INT64_MAX - 1, now - 3600000);
    submit_handoff("b-handoff", now - DAY);

    char out[8192];
    cr_assert_eq(campaign_csv("linear", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\nsearch,EUR,9223372036854775807\n"), "%s", out);
    cr_assert(strstr(out, "\nwebinar,EUR,9223372036854775806\n"), "%s", out);
    cr_assert(strstr(out, "\n(unattributed),EUR,0\n"), "%s", out);

    /* first_touch gives search both payments: 2^64 - 3 does not fit in int64. */
    cr_assert_eq(campaign_csv("first_touch", out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "search") && strstr(out, "EUR") && strstr(out, "first_touch") &&
                  strstr(out, "do not fit"),
              "%s", out);
}

/* A touch without at_ms happened when its event did (README): accepted, and placed at the
 * event's occurred_at_ms in the journey. */
Test(e2e_attribution, touch_without_time_is_dated_by_its_event)
{
    int64_t now = fx_now_ms();
    char json[1024];
    snprintf(json, sizeof json,
             "{\"eventId\":\"c-lead\",\"occurredAtMs\":%lld,\"leadId\":\"L\",\"touches\":["
             "{\"campaign\":\"search\",\"atMs\":%lld},{\"campaign\":\"webinar\"}]}",
             (long long)(now - 10 * DAY), (long long)(now - 20 * DAY));
    submit_json("lead.created", json);
    snprintf(json, sizeof json,
             "{\"eventId\":\"c-touch\",\"occurredAtMs\":%lld,\"leadId\":\"L\",\"touch\":"
             "{\"campaign\":\"email\"}}",
             (long long)(now - 5 * DAY));
    submit_json("lead.touched", json);
    submit_handoff("c-handoff", now - DAY);
    submit_payment("c-pay", 9000, now - 3600000);

    /* time_decay (half-life 7 days) weighs email (5 days before the handoff's youngest touch:
     * weight 1), webinar (at its lead.created, 5 days older: 2^(-5/7)) and search (2^(-15/7)):
     * 9000 splits as 4902.13, 2987.88 and 1109.99, rounded by largest remainder. */
    char out[8192];
    cr_assert_eq(campaign_csv("time_decay", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\nemail,EUR,4902\n"), "%s", out);
    cr_assert(strstr(out, "\nwebinar,EUR,2988\n"), "%s", out);
    cr_assert(strstr(out, "\nsearch,EUR,1110\n"), "%s", out);
}

/* --to names the last day reported, whole (README): a credit at its last millisecond is in, one
 * at the next midnight is not; --from starts at its midnight. */
Test(e2e_attribution, report_to_includes_its_whole_last_day_and_nothing_after)
{
    const int64_t nov1 = funnel_date_utc_ms(2026, 11, 1);
    submit_payment("d-pay-1", 1000, nov1 - 1);
    submit_payment("d-pay-2", 2000, nov1);
    char out[8192];
    const char *to[] = {"attribution", "--by", "campaign",   "--model", "linear",
                        "--csv",       "--to", "2026-10-31", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, to), 0, "%s", out);
    cr_assert(strstr(out, "\n(unattributed),EUR,1000\n"), "%s", out);
    const char *from[] = {"attribution", "--by",   "campaign",   "--model", "linear",
                          "--csv",       "--from", "2026-11-01", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, from), 0, "%s", out);
    cr_assert(strstr(out, "\n(unattributed),EUR,2000\n"), "%s", out);
}
