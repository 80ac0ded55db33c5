/* test_webhook.c — funnel-webhook over real HTTP on loopback against a real funneld: signature
 * vectors computed independently (fixed ones from another HMAC implementation, live ones with
 * OpenSSL over the test's own framing), provider payload mappings, refusals, and 503 when
 * funneld cannot be reached. */
#include "curve_fx.h"
#include "harness.h"
#include "http_fx.h"
#include "ledger_fx.h"
#include "webhook.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_webhook_config_t cfg;
static funnel_webhook_t *wh;
static funnel_log_t quiet = {FUNNEL_LOG_ERROR, NULL};
static int port; /* where http() sends requests */

#define TOKEN          "t0ken-for-tests"
#define STRIPE_SECRET  "whsec_test_secret"
#define HUBSPOT_SECRET "hs-secret"
#define HUBSPOT_BASE   "https://hooks.example.com"

static void set_str(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
    cr_assert_not_null(*field);
}

static char extra_conf[300]; /* a config file webhook_start reads over the defaults, or "" */

/* Starts the webhook in-process on a free port, submitting to submit_ep. */
static void webhook_start(const char *submit_ep, int timeout_ms, int attempts)
{
    char err[256];
    cr_assert_eq(funnel_webhook_config_defaults(&cfg), 0);
    if (extra_conf[0])
        cr_assert_eq(funnel_webhook_config_load(extra_conf, &cfg, err, sizeof err), 0, "%s", err);
    cfg.port = 0;
    cfg.max_body_bytes = 4096;
    cfg.submit_timeout_ms = timeout_ms;
    cfg.submit_attempts = attempts;
    set_str(&cfg.submit, submit_ep);
    set_str(&cfg.token, TOKEN);
    set_str(&cfg.stripe_secret, STRIPE_SECRET);
    set_str(&cfg.hubspot_secret, HUBSPOT_SECRET);
    set_str(&cfg.hubspot_base_url, HUBSPOT_BASE);
    set_str(&cfg.amocrm_token, "amo-token");
    cfg.amo_statuses[2] = (funnel_amo_status_t){1001, FUNNEL_AMO_MQL};
    cfg.amo_statuses[3] = (funnel_amo_status_t){1002, FUNNEL_AMO_SQL};
    cfg.n_amo_statuses = 4;
    cr_assert_eq(funnel_webhook_new(&cfg, &quiet, &wh), 0);
    port = funnel_webhook_port(wh);
}

static void setup(void)
{
    fx_daemon_suite_start(&tmp, &fd, NULL);
    webhook_start(fd.submit, 3000, 2);
}

static pid_t child; /* a funnel-webhook executable a test started, until it is reaped */

static void teardown(void)
{
    if (child > 0) { /* the test failed before stopping it */
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = 0;
    }
    fx_daemon_signal(&fd, SIGCONT); /* a test that froze funneld may have failed meanwhile */
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    fx_daemon_suite_stop(&tmp, &fd);
}

TestSuite(webhook, .init = setup, .fini = teardown, .timeout = 120);

/* ---- HTTP client ------------------------------------------------------------------------- */

typedef fx_http_reply_t http_reply_t;

/* POSTs body to path (GET when body is NULL) with extra headers (NULL-terminated). */
static http_reply_t http(const char *path, const char *body, size_t len, const char *const *hdrs)
{
    http_reply_t r;
    fx_http(port, path, body, len, hdrs, &r);
    return r;
}

static http_reply_t post_json(const char *path, const char *body, const char *extra)
{
    const char *hdrs[] = {"Content-Type: application/json", extra, NULL};
    return http(path, body, strlen(body), hdrs);
}

static http_reply_t post_event(const char *topic, const char *body)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/events/%s", topic);
    return post_json(path, body, "Authorization: Bearer " TOKEN);
}

/* ---- signatures computed by the test ----------------------------------------------------- */

static void hmac_hex(const char *key, const char *msg, size_t len, char out[65])
{
    unsigned char mac[32];
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, len, mac, &n);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", mac[i]);
}

/* "Stripe-Signature: t=T,v1=<hmac of 'T.body'>" for secret at time t. */
static void stripe_header(char *out, size_t out_len, const char *secret, long long t,
                          const char *body)
{
    char *signed_payload = NULL, hex[65];
    int n = asprintf(&signed_payload, "%lld.%s", t, body);
    cr_assert_geq(n, 0);
    hmac_hex(secret, signed_payload, (size_t)n, hex);
    free(signed_payload);
    snprintf(out, out_len, "Stripe-Signature: t=%lld,v1=%s", t, hex);
}

static http_reply_t post_stripe(const char *body, const char *secret, long long t)
{
    char sig[256];
    stripe_header(sig, sizeof sig, secret, t, body);
    return post_json("/v1/stripe", body, sig);
}

/* POSTs body to path with HubSpot's v3 headers, signed over signed_path (the path and query as
 * HubSpot signs them, after the base URL). */
static http_reply_t post_hubspot_at(const char *path, const char *signed_path, const char *body,
                                    const char *secret, long long ts)
{
    char tsbuf[32], tshdr[64], sighdr[128], *msg = NULL;
    unsigned char mac[32], b64[48];
    unsigned int n = 32;
    snprintf(tsbuf, sizeof tsbuf, "%lld", ts);
    int len = asprintf(&msg, "POST%s%s%s%s", HUBSPOT_BASE, signed_path, body, tsbuf);
    cr_assert_geq(len, 0);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, (size_t)len, mac, &n);
    free(msg);
    EVP_EncodeBlock(b64, mac, 32);
    snprintf(tshdr, sizeof tshdr, "X-HubSpot-Request-Timestamp: %s", tsbuf);
    snprintf(sighdr, sizeof sighdr, "X-HubSpot-Signature-v3: %s", b64);
    const char *hdrs[] = {"Content-Type: application/json", tshdr, sighdr, NULL};
    return http(path, body, strlen(body), hdrs);
}

static http_reply_t post_hubspot(const char *body, const char *secret, long long ts)
{
    return post_hubspot_at("/v1/hubspot", "/v1/hubspot", body, secret, ts);
}

/* ---- the output stream, as funneld republished it ------------------------------------------ */

/* The ingest events of the output stream. */
typedef struct stream {
    char text[16384]; /* one "topic {json}" line per message */
    size_t len, count;
} stream_t;

static int collect(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    stream_t *s = arg;
    funnel_body_t ingest;
    (void)seq;
    if (funnel_topic_lookup(topic, strlen(topic), &ingest))
        return 0; /* derived output (attribution, commission) is not the webhook's doing */
    funnel_envelope_t *e = funnel__v1__envelope__unpack(NULL, len, env);
    json_t *j = e ? funnel_json_from_message(&e->base) : NULL;
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    s->len += (size_t)snprintf(s->text + s->len, sizeof s->text - s->len, "%s %s\n", topic,
                               text ? text : "null");
    s->count++;
    free(text);
    json_decref(j);
    funnel_envelope_free(&e);
    return 0;
}

static void read_stream(stream_t *s)
{
    funnel_client_t *client;
    memset(s, 0, sizeof *s);
    cr_assert_eq(funnel_client_new(&client), 0);
    funnel_follow_options_t o = {.gap_probe_ms = 100};
    int rc = fx_follow_to_end(&fd, client, &o, collect, s);
    funnel_client_destroy(&client);
    cr_assert_eq(rc, 0, "%s", funnel_strerror(rc));
}

/* ---- tests ----------------------------------------------------------------------------------- */

Test(webhook, signature_vectors_from_an_independent_hmac)
{
    /* Computed with Python's hmac module, not OpenSSL's C API. */
    const char *body = "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\"}";
    const char *sig = "22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31";
    char hdr[256], why[256];
    size_t len = strlen(body);
    snprintf(hdr, sizeof hdr, "t=1700000000,v1=%s", sig);
    cr_assert_eq(funnel_stripe_verify(STRIPE_SECRET, hdr, body, len, 1700000100, 300, why, 256), 0,
                 "%s", why);
    cr_assert_eq(funnel_stripe_verify("whsec_other", hdr, body, len, 1700000100, 300, why, 256),
                 FUNNEL_EINVAL, "wrong secret");
    cr_assert_eq(funnel_stripe_verify(STRIPE_SECRET, hdr, "{\"id\":\"evt_2\"}", 14, 1700000100, 300,
                                      why, 256),
                 FUNNEL_EINVAL, "tampered body");
    cr_assert_eq(funnel_stripe_verify(STRIPE_SECRET, hdr, body, len, 1700000301, 300, why, 256),
                 FUNNEL_EINVAL, "stale");
    cr_assert(strstr(why, "tolerance"), "%s", why);
    /* Several signatures (a rolled secret): any v1 may match; v0 is never trusted. */
    snprintf(hdr, sizeof hdr, "t=1700000000,v1=%064d,v0=%s,v1=%s", 0, sig, sig);
    cr_assert_eq(funnel_stripe_verify(STRIPE_SECRET, hdr, body, len, 1700000000, 300, why, 256), 0,
                 "%s", why);
    snprintf(hdr, sizeof hdr, "t=1700000000,v0=%s", sig);
    cr_assert_eq(funnel_stripe_verify(STRIPE_SECRET, hdr, body, len, 1700000000, 300, why, 256),
                 FUNNEL_EINVAL);
    cr_assert_eq(funnel_stripe_verify(STRIPE_SECRET, "v1=abc", body, len, 1, 300, why, 256),
                 FUNNEL_EINVAL);

    const char *hb = "[{\"eventId\":1}]";
    const char *hsig = "hBKp6xTEeX6R2EUWRKdfML1tA1TARcADgr9omaVrxJc=";
    const char *uri = HUBSPOT_BASE "/v1/hubspot";
    int64_t now = 1700000060000;
    cr_assert_eq(funnel_hubspot_verify(HUBSPOT_SECRET, "POST", uri, hb, strlen(hb), "1700000000000",
                                       hsig, now, 300000, why, 256),
                 0, "%s", why);
    cr_assert_eq(funnel_hubspot_verify("other", "POST", uri, hb, strlen(hb), "1700000000000", hsig,
                                       now, 300000, why, 256),
                 FUNNEL_EINVAL);
    cr_assert_eq(funnel_hubspot_verify(HUBSPOT_SECRET, "POST", uri, "[{\"eventId\":2}]", strlen(hb),
                                       "1700000000000", hsig, now, 300000, why, 256),
                 FUNNEL_EINVAL);
    cr_assert_eq(funnel_hubspot_verify(HUBSPOT_SECRET, "POST", uri, hb, strlen(hb), "1700000000000",
                                       hsig, now + 300000, 300000, why, 256),
                 FUNNEL_EINVAL, "older than 5 minutes");
    cr_assert_eq(funnel_hubspot_verify(HUBSPOT_SECRET, "POST", uri, hb, strlen(hb), NULL, hsig, now,
                                       300000, why, 256),
                 FUNNEL_EINVAL);
}

Test(webhook, events_endpoint_acks_duplicates_and_refusals)
{
    http_reply_t r = post_event("lead.created", "{\"eventId\":\"w-1\",\"leadId\":\"L-1\"}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"eventId\":\"w-1\""), "%s", r.body);
    r = post_event("lead.created", "{\"eventId\":\"w-1\",\"leadId\":\"L-1\"}");
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"duplicates\":1"), "%s", r.body);
    /* Refused by funneld: the reason comes back. */
    r = post_event("payment.received", "{\"eventId\":\"w-2\",\"paymentId\":\"p\",\"clientId\":"
                                       "\"c\",\"amount\":{\"minor\":\"5\",\"currency\":\"usd\"}}");
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "ISO 4217"), "%s", r.body);
    /* Refused by the mapping, before funneld. */
    r = post_event("lead.created", "{\"leadId\":5}");
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.body, "leadId: expected a string"), "%s", r.body);
    r = post_event("lead.exploded", "{}");
    cr_assert_eq(r.status, 400);
    cr_assert(strstr(r.body, "not an ingest topic"), "%s", r.body);
    r = post_json("/v1/events/lead.created", "{\"leadId\":\"L\"}", "Authorization: Bearer nope");
    cr_assert_eq(r.status, 401);
    r = post_json("/v1/events/lead.created", "{\"leadId\":\"L\"}", NULL);
    cr_assert_eq(r.status, 401);
    const char *form[] = {"Content-Type: text/plain", "Authorization: Bearer " TOKEN, NULL};
    r = http("/v1/events/lead.created", "{}", 2, form);
    cr_assert_eq(r.status, 415);
    char big[6000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{', big[sizeof big - 2] = '}';
    r = post_event("lead.created", big);
    cr_assert_eq(r.status, 413);
    r = http("/healthz", NULL, 0, NULL);
    cr_assert_eq(r.status, 200);
    r = http("/nope", NULL, 0, NULL);
    cr_assert_eq(r.status, 404);

    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 1, "%s", s.text);
    cr_assert(strstr(s.text, "\"source\":\"webhook\""), "%s", s.text);
    funnel_webhook_stats_t st;
    funnel_webhook_stats(wh, &st);
    cr_assert_eq(st.accepted, 1);
    cr_assert_eq(st.duplicates, 1);
    cr_assert_eq(st.refused, 8);
    r = http("/metrics", NULL, 0, NULL);
    cr_assert(strstr(r.body, "funnel_webhook_events_total{result=\"accepted\"} 1"), "%s", r.body);
}

/* The request topics go through the generic endpoint like any ingest topic: proto3 JSON in,
 * funneld's answer out; an empty request_id is refused with the field named. */
Test(webhook, events_endpoint_takes_request_topics)
{
    http_reply_t r = post_event(
        "request.opened", "{\"eventId\":\"w-r1\",\"requestId\":\"REQ-1\",\"fromTeam\":\"sales\","
                          "\"toTeam\":\"marketing\",\"kind\":\"materials\",\"priority\":2,"
                          "\"subject\":\"Case study, retail\"}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    r = post_event("request.closed",
                   "{\"eventId\":\"w-r2\",\"requestId\":\"REQ-1\",\"resolution\":\"DONE\"}");
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    r = post_event("request.answered", "{\"eventId\":\"w-r3\",\"requestId\":\"\"}");
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "missing field: request_answered.request_id"), "%s", r.body);
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 2, "%s", s.text);
    cr_assert(strstr(s.text, "request.opened"), "%s", s.text);
}

/* A Stripe payment_intent.succeeded as Stripe sends it (trimmed of fields nothing reads). */
static const char *stripe_pi_fmt =
    "{\"id\":\"evt_3OoXyZ2eZvKYlo2C1\",\"object\":\"event\",\"api_version\":\"2023-10-16\","
    "\"created\":%lld,\"livemode\":false,\"type\":\"payment_intent.succeeded\","
    "\"data\":{\"object\":{\"id\":\"pi_3OoXyZ2eZvKYlo2C\",\"object\":\"payment_intent\","
    "\"amount\":129900,\"amount_received\":129900,\"currency\":\"eur\",\"customer\":"
    "\"cus_PdQ9\",\"metadata\":{},\"status\":\"succeeded\"}},\"request\":{\"id\":null}}";

Test(webhook, stripe_maps_payments_and_refunds_and_checks_signatures)
{
    long long now = fx_now_ms() / 1000;
    char body[2048];
    snprintf(body, sizeof body, stripe_pi_fmt, now);
    http_reply_t r = post_stripe(body, STRIPE_SECRET, now);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    r = post_stripe(body, STRIPE_SECRET, now);
    cr_assert_eq(r.status, 200, "Stripe's retry is a duplicate: %s", r.body);
    cr_assert(strstr(r.body, "\"duplicates\":1"), "%s", r.body);
    cr_assert_eq(post_stripe(body, "whsec_wrong", now).status, 400);
    cr_assert_eq(post_stripe(body, STRIPE_SECRET, now - 301).status, 400, "stale");
    char sig[256];
    stripe_header(sig, sizeof sig, STRIPE_SECRET, now, body);
    body[strlen(body) - 3] = 'X'; /* tampered after signing */
    cr_assert_eq(post_json("/v1/stripe", body, sig).status, 400);

    snprintf(body, sizeof body,
             "{\"id\":\"evt_inv_1\",\"object\":\"event\",\"created\":%lld,\"type\":"
             "\"invoice.paid\",\"data\":{\"object\":{\"id\":\"in_1\",\"object\":\"invoice\","
             "\"amount_due\":5000,\"amount_paid\":5000,\"currency\":\"usd\",\"customer\":"
             "\"cus_X\",\"payment_intent\":\"pi_inv_1\",\"metadata\":{\"client_id\":\"C-77\"}}}}",
             now);
    cr_assert_eq(post_stripe(body, STRIPE_SECRET, now).status, 200);
    snprintf(body, sizeof body,
             "{\"id\":\"evt_ref_1\",\"object\":\"event\",\"created\":%lld,\"type\":"
             "\"charge.refunded\",\"data\":{\"object\":{\"id\":\"ch_1\",\"object\":\"charge\","
             "\"amount\":129900,\"amount_refunded\":30000,\"currency\":\"eur\",\"customer\":"
             "\"cus_PdQ9\",\"payment_intent\":\"pi_3OoXyZ2eZvKYlo2C\",\"refunds\":{\"object\":"
             "\"list\",\"data\":[{\"id\":\"re_2\",\"amount\":20000},{\"id\":\"re_1\","
             "\"amount\":10000}]}}}}",
             now);
    cr_assert_eq(post_stripe(body, STRIPE_SECRET, now).status, 200);
    snprintf(body, sizeof body,
             "{\"id\":\"evt_cust\",\"created\":%lld,\"type\":\"customer.created\",\"data\":"
             "{\"object\":{\"id\":\"cus_1\"}}}",
             now);
    r = post_stripe(body, STRIPE_SECRET, now);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"ignored\":1"), "%s", r.body);

    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 4, "%s", s.text);
    cr_assert(strstr(s.text, "payment.received {\"eventId\":\"evt_3OoXyZ2eZvKYlo2C1\""), "%s",
              s.text);
    cr_assert(strstr(s.text, "\"paymentId\":\"pi_3OoXyZ2eZvKYlo2C\",\"clientId\":\"cus_PdQ9\","
                             "\"amount\":{\"minor\":\"129900\",\"currency\":\"EUR\"}"),
              "%s", s.text);
    cr_assert(strstr(s.text, "\"paymentId\":\"pi_inv_1\",\"clientId\":\"C-77\",\"amount\":{"
                             "\"minor\":\"5000\",\"currency\":\"USD\"}"),
              "%s", s.text);
    /* Every refund of the list, each under its own id (the old payload shape). */
    cr_assert(strstr(s.text, "payment.refunded {\"eventId\":\"stripe-re_2\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"refundId\":\"re_2\",\"paymentId\":\"pi_3OoXyZ2eZvKYlo2C\","
                             "\"clientId\":\"cus_PdQ9\",\"amount\":{\"minor\":\"20000\""),
              "%s", s.text);
    cr_assert(strstr(s.text, "\"refundId\":\"re_1\",\"paymentId\":\"pi_3OoXyZ2eZvKYlo2C\","
                             "\"clientId\":\"cus_PdQ9\",\"amount\":{\"minor\":\"10000\""),
              "%s", s.text);
    funnel_webhook_stats_t st;
    funnel_webhook_stats(wh, &st);
    cr_assert_eq(st.ignored, 1);
}

/* The refunds of the output stream as the engines count them: one amount per refund_id (the
 * ledger and attribution keep the first event of a refund_id), summed. Asserts every event of
 * a refund_id carries the same amount and payment, so "first" cannot matter. */
static long long refunds_sum(const stream_t *s, const char *payment, size_t *n_ids)
{
    char ids[32][130], amounts[32][24];
    size_t n = 0;
    long long sum = 0;
    for (const char *line = s->text; (line = strstr(line, "payment.refunded {"));) {
        const char *end = strchr(line, '\n');
        json_t *e = json_loadb(line + 17, (size_t)(end - line - 17), 0, NULL);
        const json_t *r = json_object_get(e, "paymentRefunded");
        const char *id = json_string_value(json_object_get(r, "refundId"));
        const char *minor =
            json_string_value(json_object_get(json_object_get(r, "amount"), "minor"));
        cr_assert(id && minor, "%.*s", (int)(end - line), line);
        cr_assert_str_eq(json_string_value(json_object_get(r, "paymentId")), payment);
        size_t k = 0;
        while (k < n && strcmp(ids[k], id))
            k++;
        if (k == n) {
            cr_assert_lt(n, 32);
            snprintf(ids[n], sizeof ids[n], "%s", id);
            snprintf(amounts[n++], sizeof amounts[0], "%s", minor);
            sum += strtoll(minor, NULL, 10);
        } else {
            cr_assert_str_eq(amounts[k], minor, "refund %s recorded with two amounts", id);
        }
        json_decref(e);
        line = end;
    }
    *n_ids = n;
    return sum;
}

/* ---- Stripe refunds, counted by the commission ledger ------------------------------------- */

/* funneld again, now paying 100 % commission: every minor unit refunded is clawed back, so the
 * ledger's clawbacks are the refunds it recorded. */
static void restart_with_ledger(void)
{
    char conf[300];
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    fx_file_write(tmp.path, "ledger.conf", "commission = { default_rate_bp = 10000; };\n", conf,
                  sizeof conf);
    const char *args[] = {"--config", conf, NULL};
    fx_daemon_start(&fd, tmp.path, args);
}

/* client handed off to rep-a, then Stripe reports payment pi of 50000 (cur) at paid_s. */
static void paid_after_handoff(const char *client, const char *pi, const char *cur,
                               long long paid_s)
{
    funnel_client_t *c;
    funnel_submit_result_t res;
    funnel_envelope_t *h = fx_handoff("h-1", client, "rep-a", "", paid_s * 1000 - 60000);
    cr_assert_eq(funnel_client_new(&c), 0);
    cr_assert_eq(funnel_client_submit(c, fd.submit, "client.handed_off", h, NULL, &res), 0);
    funnel_envelope_free(&h);
    funnel_client_destroy(&c);
    cr_assert_eq(res.status, FUNNEL_SUBMIT_OK, "%s", res.reason);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"id\":\"evt_pay_%s\",\"object\":\"event\",\"created\":%lld,\"type\":"
             "\"payment_intent.succeeded\",\"data\":{\"object\":{\"id\":\"%s\",\"object\":"
             "\"payment_intent\",\"amount\":50000,\"amount_received\":50000,\"currency\":\"%s\","
             "\"customer\":\"%s\",\"metadata\":{}}}}",
             pi, paid_s, pi, cur, client);
    http_reply_t r = post_stripe(body, STRIPE_SECRET, paid_s);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
}

static int sum_clawbacks(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    (void)seq;
    if (strcmp(topic, "commission.posted"))
        return 0;
    funnel_envelope_t *e = funnel__v1__envelope__unpack(NULL, len, env);
    cr_assert_not_null(e);
    const Funnel__V1__CommissionPosted *p = e->commission_posted;
    if (p && p->kind == FUNNEL__V1__COMMISSION_KIND__CLAWBACK && p->amount)
        *(long long *)arg += p->amount->minor;
    funnel_envelope_free(&e);
    return 0;
}

/* What the ledger has clawed back in all: its net CLAWBACK postings on the output stream. */
static long long clawed_back(void)
{
    funnel_client_t *client;
    long long sum = 0;
    cr_assert_eq(funnel_client_new(&client), 0);
    funnel_follow_options_t o = {.idle_timeout_ms = 300, .gap_probe_ms = 100};
    int rc = funnel_client_follow(client, fd.publish, fd.replay, &o, sum_clawbacks, &sum);
    funnel_client_destroy(&client);
    cr_assert_eq(rc, 0, "%s", funnel_strerror(rc));
    return sum;
}

/* Posts each body in order; every one must be answered 200. */
static void post_stripe_all(const char *const *bodies, size_t n, long long now)
{
    for (size_t i = 0; i < n; i++) {
        http_reply_t r = post_stripe(bodies[i], STRIPE_SECRET, now);
        cr_assert_eq(r.status, 200, "%zu: %ld %s", i, r.status, r.body);
    }
}

/* charge.refunded as API versions since 2022-11-15 send it: no refunds list, only the
 * cumulative amount_refunded; %s is the rest of data (previous_attributes, or nothing). */
static const char *charge_refunded_new_fmt =
    "{\"id\":\"%s\",\"object\":\"event\",\"api_version\":\"2024-06-20\",\"created\":%lld,"
    "\"type\":\"charge.refunded\",\"data\":{\"object\":{\"id\":\"ch_N\",\"object\":\"charge\","
    "\"amount\":50000,\"amount_captured\":50000,\"amount_refunded\":%d,\"created\":%lld,"
    "\"currency\":\"usd\",\"customer\":\"cus_N\",\"metadata\":{},\"payment_intent\":\"pi_N\","
    "\"refunded\":false}%s}}";

Test(webhook, stripe_new_shape_partial_refunds_sum_to_amount_refunded_in_any_order)
{
    /* 10000 then 15000 more: amount_refunded 10000, then 25000, with previous_attributes
     * saying what it was before. Delivered late-first, each twice: 25000 is clawed back, not
     * 35000. */
    long long now = fx_now_ms() / 1000, paid = now - 120;
    char a[1024], b[1024];
    restart_with_ledger();
    paid_after_handoff("cus_N", "pi_N", "usd", paid);
    snprintf(a, sizeof a, charge_refunded_new_fmt, "evt_A", now - 60, 10000, paid,
             ",\"previous_attributes\":{\"amount_refunded\":0,\"refunded\":false}");
    snprintf(b, sizeof b, charge_refunded_new_fmt, "evt_B", now, 25000, paid,
             ",\"previous_attributes\":{\"amount_refunded\":10000}");
    const char *order[] = {b, a, b, a};
    post_stripe_all(order, 4, now);
    cr_assert_eq(clawed_back(), 25000);
    stream_t s;
    size_t ids;
    read_stream(&s);
    cr_assert_eq(refunds_sum(&s, "pi_N", &ids), 25000, "%s", s.text);
    cr_assert_eq(ids, 2, "%s", s.text);
    cr_assert(strstr(s.text, "\"refundId\":\"ch_N:10000-25000\",\"paymentId\":\"pi_N\","
                             "\"clientId\":\"cus_N\",\"amount\":{\"minor\":\"15000\","
                             "\"currency\":\"USD\"}"),
              "%s", s.text);
}

Test(webhook, stripe_new_shape_without_previous_attributes_counts_the_final_level)
{
    /* Only the cumulative level: 10000, 25000, 40000 and a repeat of each, in a shuffled
     * order. The ledger keeps the highest level, whatever came last. */
    long long now = fx_now_ms() / 1000, paid = now - 120;
    char l1[1024], l2[1024], l3[1024];
    restart_with_ledger();
    paid_after_handoff("cus_N", "pi_N", "usd", paid);
    snprintf(l1, sizeof l1, charge_refunded_new_fmt, "evt_L1", now - 60, 10000, paid, "");
    snprintf(l2, sizeof l2, charge_refunded_new_fmt, "evt_L2", now - 30, 25000, paid, "");
    snprintf(l3, sizeof l3, charge_refunded_new_fmt, "evt_L3", now, 40000, paid, "");
    const char *first[] = {l2, l1};
    post_stripe_all(first, 2, now);
    cr_assert_eq(clawed_back(), 25000, "the highest level so far");
    const char *rest[] = {l3, l1, l2, l3};
    post_stripe_all(rest, 4, now);
    cr_assert_eq(clawed_back(), 40000);
}

/* charge.refunded as API versions before 2022-11-15 send it: the refunds list, newest first. */
static const char *charge_refunded_old_fmt =
    "{\"id\":\"%s\",\"object\":\"event\",\"api_version\":\"2020-08-27\",\"created\":%lld,"
    "\"type\":\"charge.refunded\",\"data\":{\"object\":{\"id\":\"ch_O\",\"object\":\"charge\","
    "\"amount\":50000,\"amount_refunded\":%d,\"currency\":\"eur\",\"customer\":\"cus_O\","
    "\"payment_intent\":\"pi_O\",\"metadata\":{},\"refunds\":{\"object\":\"list\",\"data\":[%s],"
    "\"has_more\":false}}}}";

/* A refund object, as refund.created / refund.updated carry it and the list above holds. */
static const char *refund_fmt =
    "{\"id\":\"%s\",\"object\":\"refund\",\"amount\":%d,\"charge\":\"ch_O\",\"created\":%lld,"
    "\"currency\":\"eur\",\"metadata\":{%s},\"payment_intent\":\"pi_O\",\"status\":\"%s\"}";

Test(webhook, stripe_old_shape_and_refund_objects_converge_in_any_order)
{
    long long now = fx_now_ms() / 1000;
    char re1[512], re2[512], re3[512], list1[1024], list2[2048], one[2048], two[4096];
    char created[1024], failed[1024];
    restart_with_ledger();
    paid_after_handoff("cus_O", "pi_O", "eur", now - 120);
    snprintf(re1, sizeof re1, refund_fmt, "re_1", 10000, now - 60, "", "succeeded");
    snprintf(re2, sizeof re2, refund_fmt, "re_2", 15000, now, "", "succeeded");
    snprintf(re3, sizeof re3, refund_fmt, "re_3", 5000, now, "", "failed");
    snprintf(list1, sizeof list1, "%s", re1);
    snprintf(list2, sizeof list2, "%s,%s,%s", re3, re2, re1);
    snprintf(one, sizeof one, charge_refunded_old_fmt, "evt_O1", now - 60, 10000, list1);
    snprintf(two, sizeof two, charge_refunded_old_fmt, "evt_O2", now, 25000, list2);
    /* refund.created for re_2 (its client from the refund's metadata, as refunds carry no
     * customer) and refund.updated for the failed re_3: the same money, no more. */
    snprintf(re2, sizeof re2, refund_fmt, "re_2", 15000, now, "\"client_id\":\"cus_O\"",
             "succeeded");
    snprintf(created, sizeof created,
             "{\"id\":\"evt_R2\",\"object\":\"event\",\"created\":%lld,\"type\":\"refund.created\","
             "\"data\":{\"object\":%s}}",
             now, re2);
    snprintf(failed, sizeof failed,
             "{\"id\":\"evt_R3\",\"object\":\"event\",\"created\":%lld,\"type\":\"refund.updated\","
             "\"data\":{\"object\":%s}}",
             now, re3);
    const char *order[] = {two, created, one, failed, two, one, created};
    post_stripe_all(order, sizeof order / sizeof order[0], now);
    cr_assert_eq(clawed_back(), 25000);
    stream_t s;
    size_t ids;
    read_stream(&s);
    cr_assert_eq(refunds_sum(&s, "pi_O", &ids), 25000, "%s", s.text);
    cr_assert_eq(ids, 2, "%s", s.text);
    cr_assert_eq(s.count, 4, "handoff, payment and each refund once: %s", s.text);
    cr_assert(strstr(s.text, "\"refundId\":\"re_1\",\"paymentId\":\"pi_O\",\"clientId\":\"cus_O\""),
              "%s", s.text);
}

Test(webhook, stripe_zero_payment_is_answered_200_and_counted_ignored)
{
    long long now = fx_now_ms() / 1000;
    char body[1024];
    snprintf(body, sizeof body,
             "{\"id\":\"evt_inv_0\",\"object\":\"event\",\"created\":%lld,\"type\":"
             "\"invoice.paid\",\"data\":{\"object\":{\"id\":\"in_0\",\"object\":\"invoice\","
             "\"amount_due\":0,\"amount_paid\":0,\"currency\":\"usd\",\"customer\":\"cus_X\","
             "\"payment_intent\":null}}}",
             now);
    http_reply_t r = post_stripe(body, STRIPE_SECRET, now);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"ignored\":1"), "%s", r.body);
    funnel_webhook_stats_t st;
    funnel_webhook_stats(wh, &st);
    cr_assert_eq(st.ignored, 1);
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 0, "%s", s.text);
}

Test(webhook, hubspot_maps_contact_creation_and_lifecycle_stages)
{
    long long now = fx_now_ms();
    char body[2048];
    snprintf(body, sizeof body,
             "[{\"eventId\":1001,\"subscriptionId\":2,\"portalId\":62515,\"appId\":7,"
             "\"occurredAt\":%lld,\"subscriptionType\":\"contact.creation\",\"attemptNumber\":0,"
             "\"objectId\":123,\"changeFlag\":\"CREATED\",\"changeSource\":\"CRM\"},"
             "{\"eventId\":1002,\"occurredAt\":%lld,\"subscriptionType\":"
             "\"contact.propertyChange\",\"objectId\":123,\"propertyName\":\"lifecyclestage\","
             "\"propertyValue\":\"marketingqualifiedlead\"},"
             "{\"eventId\":1003,\"occurredAt\":%lld,\"subscriptionType\":"
             "\"contact.propertyChange\",\"objectId\":123,\"propertyName\":\"lifecyclestage\","
             "\"propertyValue\":\"salesqualifiedlead\"},"
             "{\"eventId\":1004,\"occurredAt\":%lld,\"subscriptionType\":"
             "\"contact.propertyChange\",\"objectId\":123,\"propertyName\":\"lifecyclestage\","
             "\"propertyValue\":\"customer\"},"
             "{\"eventId\":1005,\"occurredAt\":%lld,\"subscriptionType\":"
             "\"contact.propertyChange\",\"objectId\":123,\"propertyName\":\"email\","
             "\"propertyValue\":\"a@b.c\"},"
             "{\"eventId\":1006,\"occurredAt\":%lld,\"subscriptionType\":"
             "\"contact.propertyChange\",\"objectId\":124,\"propertyName\":\"lifecyclestage\","
             "\"propertyValue\":\"other\"}]",
             now, now + 1, now + 2, now + 3, now + 4, now + 5);
    http_reply_t r = post_hubspot(body, HUBSPOT_SECRET, now);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"accepted\":5") && strstr(r.body, "\"ignored\":1"), "%s", r.body);
    cr_assert_eq(post_hubspot(body, "wrong", now).status, 400);
    cr_assert_eq(post_hubspot(body, HUBSPOT_SECRET, now - 301000).status, 400, "stale");
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 5, "%s", s.text);
    cr_assert(strstr(s.text, "lead.created {\"eventId\":\"hubspot-1001\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"source\":\"hubspot\",\"leadCreated\":{\"leadId\":\"123\"}"), "%s",
              s.text);
    cr_assert(strstr(s.text, "\"stage\":\"MQL\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"stage\":\"SQL\""), "%s", s.text);
    cr_assert(strstr(s.text, "lead.closed {\"eventId\":\"hubspot-1004\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"outcome\":\"WON\""), "%s", s.text);
    /* "other" is the stage HubSpot gives a contact that left the funnel. */
    cr_assert(strstr(s.text, "lead.closed {\"eventId\":\"hubspot-1006\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"124\",\"outcome\":\"DISQUALIFIED\""), "%s", s.text);
}

Test(webhook, hubspot_signature_covers_the_query_string)
{
    /* HubSpot signs the full URI it called, query string included, with the characters
     * %3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B decoded. */
    long long now = fx_now_ms();
    char body[512];
    snprintf(body, sizeof body,
             "[{\"eventId\":2001,\"occurredAt\":%lld,\"subscriptionType\":\"contact.creation\","
             "\"objectId\":77}]",
             now);
    http_reply_t r =
        post_hubspot_at("/v1/hubspot?portal=62515&from=a%3Ab%2Fc",
                        "/v1/hubspot?portal=62515&from=a:b/c", body, HUBSPOT_SECRET, now);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    /* The same signature on another query is a forgery. */
    r = post_hubspot_at("/v1/hubspot?portal=666&from=a%3Ab%2Fc",
                        "/v1/hubspot?portal=62515&from=a:b/c", body, HUBSPOT_SECRET, now);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    r = post_hubspot_at("/v1/hubspot?portal=62515", "/v1/hubspot", body, HUBSPOT_SECRET, now);
    cr_assert_eq(r.status, 400, "the query is signed too: %ld %s", r.status, r.body);
}

Test(webhook, id_prefix_tells_apart_the_same_lead_id_from_two_crms)
{
    /* Lead 42 in HubSpot and lead 42 in amoCRM are two leads: each mapping prefixes the ids it
     * takes from its provider, and the event ids, so neither event is a duplicate of the
     * other. Client ids are the join key with the CRM's handoffs and are never prefixed. */
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    fx_file_write(tmp.path, "prefix.conf",
                  "hubspot_id_prefix = \"hs:\";\namocrm_id_prefix = \"amo:\";\n"
                  "stripe_id_prefix = \"st:\";\n",
                  extra_conf, sizeof extra_conf);
    webhook_start(fd.submit, 3000, 2);
    extra_conf[0] = '\0';

    long long now = fx_now_ms();
    char body[512];
    snprintf(body, sizeof body,
             "[{\"eventId\":42,\"occurredAt\":%lld,\"subscriptionType\":\"contact.creation\","
             "\"objectId\":42}]",
             now);
    http_reply_t r = post_hubspot(body, HUBSPOT_SECRET, now);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    snprintf(body, sizeof body, "leads[add][0][id]=42&leads[add][0][date_create]=%lld", now / 1000);
    r = http("/v1/amocrm?token=amo-token", body, strlen(body), hdrs);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"accepted\":1"), "not a duplicate of HubSpot's 42: %s", r.body);
    snprintf(body, sizeof body, stripe_pi_fmt, now / 1000);
    r = post_stripe(body, STRIPE_SECRET, now / 1000);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 3, "%s", s.text);
    cr_assert(strstr(s.text, "lead.created {\"eventId\":\"hs:hubspot-42\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadCreated\":{\"leadId\":\"hs:42\"}"), "%s", s.text);
    cr_assert(strstr(s.text, "lead.created {\"eventId\":\"amo:amocrm-42-add\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadCreated\":{\"leadId\":\"amo:42\""), "%s", s.text);
    cr_assert(strstr(s.text, "payment.received {\"eventId\":\"st:evt_3OoXyZ2eZvKYlo2C1\""), "%s",
              s.text);
    cr_assert(strstr(s.text, "\"paymentId\":\"st:pi_3OoXyZ2eZvKYlo2C\",\"clientId\":\"cus_PdQ9\""),
              "%s", s.text);
}

Test(webhook, amocrm_form_leads_add_and_status_through_the_status_table)
{
    long long now = fx_now_ms() / 1000;
    char body[2048];
    snprintf(body, sizeof body,
             "leads%%5Badd%%5D%%5B0%%5D%%5Bid%%5D=4711&leads%%5Badd%%5D%%5B0%%5D%%5Bname%%5D="
             "%%D0%%A1%%D0%%B4%%D0%%B5%%D0%%BB%%D0%%BA%%D0%%B0+1&leads%%5Badd%%5D%%5B0%%5D%%5B"
             "status_id%%5D=1000&leads%%5Badd%%5D%%5B0%%5D%%5Bresponsible_user_id%%5D=555"
             "&leads%%5Badd%%5D%%5B0%%5D%%5Bdate_create%%5D=%lld"
             "&leads[status][0][id]=4711&leads[status][0][status_id]=1002"
             "&leads[status][0][old_status_id]=1001&leads[status][0][pipeline_id]=77"
             "&leads[status][0][last_modified]=%lld"
             "&leads[status][1][id]=4712&leads[status][1][status_id]=143"
             "&leads[status][1][last_modified]=%lld"
             "&leads[status][2][id]=4713&leads[status][2][status_id]=99999"
             "&leads[status][3][id]=4714&leads[status][3][status_id]=142"
             "&leads[status][3][last_modified]=%lld"
             "&account[id]=29085955&account[subdomain]=example",
             now, now + 1, now + 2, now + 3);
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    http_reply_t r = http("/v1/amocrm?token=amo-token", body, strlen(body), hdrs);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"accepted\":4") && strstr(r.body, "\"ignored\":1"), "%s", r.body);
    r = http("/v1/amocrm?token=amo-token", body, strlen(body), hdrs);
    cr_assert(strstr(r.body, "\"duplicates\":4"), "amoCRM's retry: %s", r.body);
    cr_assert_eq(http("/v1/amocrm?token=nope", body, strlen(body), hdrs).status, 400);
    cr_assert_eq(http("/v1/amocrm?token=amo-token", "x=1", 3, hdrs).status, 400);
    const char *json[] = {"Content-Type: application/json", NULL};
    cr_assert_eq(http("/v1/amocrm?token=amo-token", body, strlen(body), json).status, 415);
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 4, "%s", s.text);
    cr_assert(strstr(s.text, "lead.created {\"eventId\":\"amocrm-4711-add\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"4711\",\"owner\":\"555\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"4711\",\"stage\":\"SQL\""), "%s", s.text);
    /* 142 and 143 are amoCRM's fixed statuses of every pipeline: won and lost by default. */
    cr_assert(strstr(s.text, "\"leadId\":\"4712\",\"outcome\":\"LOST\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"4714\",\"outcome\":\"WON\""), "%s", s.text);
}

Test(webhook, amocrm_form_values_that_are_not_utf8_get_400_with_the_reason)
{
    /* Form values are percent-encoded bytes: any bytes. Ones that are not UTF-8 cannot go into
     * an event (proto3 strings are UTF-8); they are the sender's mistake, not ours. */
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    static const struct {
        const char *form, *why;
    } bad[] = {
        {"leads[add][0][id]=%FF%FE-1", "leads[add][0][id]: not valid UTF-8"},
        {"leads[add][0][id]=7&leads[add][0][responsible_user_id]=an%C0%AFna",
         "leads[add][0][responsible_user_id]: not valid UTF-8"},
        {"leads[status][3][id]=%ED%A0%80&leads[status][3][status_id]=142",
         "leads[status][3][id]: not valid UTF-8"},
        {"leads[add][0][id]=7%00x", "leads[add][0][id]: NUL byte at byte 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_reply_t r = http("/v1/amocrm?token=amo-token", bad[i].form, strlen(bad[i].form), hdrs);
        cr_assert_eq(r.status, 400, "%s: %ld %s", bad[i].form, r.status, r.body);
        cr_assert(strstr(r.body, bad[i].why), "%s: %s", bad[i].form, r.body);
    }
    /* An id longer than funneld takes is refused whole, not cut to a different id. */
    char form[400];
    int n = snprintf(form, sizeof form, "leads[add][0][id]=");
    memset(form + n, '7', 200);
    form[n + 200] = '\0';
    http_reply_t r = http("/v1/amocrm?token=amo-token", form, strlen(form), hdrs);
    cr_assert_eq(r.status, 400, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "leads[add][0][id]: 200 bytes, at most 128"), "%s", r.body);
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 0, "%s", s.text);
}

Test(webhook, refusal_metrics_are_labelled_with_the_status_sent)
{
    const char *form[] = {"Content-Type: text/plain", "Authorization: Bearer " TOKEN, NULL};
    const char *amo[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    cr_assert_eq(post_event("lead.exploded", "{}").status, 400);
    cr_assert_eq(http("/v1/amocrm?token=amo-token", "leads[add][0][id]=%FF", 21, amo).status, 400);
    cr_assert_eq(post_json("/v1/events/lead.created", "{}", "Authorization: Bearer no").status,
                 401);
    cr_assert_eq(http("/nope", NULL, 0, NULL).status, 404);
    cr_assert_eq(http("/v1/events/lead.created", "{}", 2, form).status, 415);
    http_reply_t r = http("/metrics", NULL, 0, NULL);
    static const char *const want[] = {
        "funnel_webhook_refused_total{status=\"400\"} 2\n",
        "funnel_webhook_refused_total{status=\"401\"} 1\n",
        "funnel_webhook_refused_total{status=\"404\"} 1\n",
        "funnel_webhook_refused_total{status=\"413\"} 0\n",
        "funnel_webhook_refused_total{status=\"415\"} 1\n",
        "funnel_webhook_refused_total{status=\"500\"} 0\n",
        "funnel_webhook_refused_total{status=\"503\"} 0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(r.body, want[i]), "no %s in\n%s", want[i], r.body);
    cr_assert_null(strstr(r.body, "4xx"), "%s", r.body);
}

Test(webhook, funneld_unreachable_answers_503_with_retry_after)
{
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    webhook_start("tcp://127.0.0.1:9", 100, 2);
    http_reply_t r = post_event("lead.created", "{\"eventId\":\"u-1\",\"leadId\":\"L-1\"}");
    cr_assert_eq(r.status, 503, "%ld %s", r.status, r.body);
    cr_assert_str_eq(r.retry_after, "5");
    long long now = fx_now_ms() / 1000;
    char body[2048];
    snprintf(body, sizeof body, stripe_pi_fmt, now);
    cr_assert_eq(post_stripe(body, STRIPE_SECRET, now).status, 503);
    funnel_webhook_stats_t st;
    funnel_webhook_stats(wh, &st);
    cr_assert_eq(st.unavailable, 2);
}

Test(webhook, executable_serves_the_example_config_and_stops_on_sigterm)
{
    char ready[300], conf[300], bad[300], out[2048];
    snprintf(ready, sizeof ready, "%s/webhook.ready", tmp.path);
    snprintf(conf, sizeof conf, "%s/examples/funnel-webhook.conf", FUNNEL_SOURCE_DIR);
    snprintf(bad, sizeof bad, "%s/bad.conf", tmp.path);
    fx_file_put(bad, "port = 8090;\nstripe_secret = 5;\n");
    const char *badargv[] = {FUNNEL_WEBHOOK_PATH, "--config", bad, NULL};
    cr_assert_eq(fx_run(badargv, out, sizeof out), 1);
    cr_assert(strstr(out, "stripe_secret: expected a string"), "%s", out);

    const char *argv[] = {FUNNEL_WEBHOOK_PATH, "--config", conf, "--port", "0",
                          "--ready-file",      ready,      NULL};
    pid_t pid = fx_spawn(argv, NULL);
    child = pid;
    cr_assert(fx_wait_file(ready, pid, 10000), "funnel-webhook did not become ready");
    FILE *f = fopen(ready, "r");
    cr_assert_not_null(f);
    long ready_pid = 0;
    cr_assert_eq(fscanf(f, "pid=%ld\nport=%d", &ready_pid, &port), 2);
    fclose(f);
    cr_assert_eq(ready_pid, (long)pid);
    http_reply_t r = http("/healthz", NULL, 0, NULL);
    cr_assert_eq(r.status, 200);
    r = post_json("/v1/stripe", "{}", NULL);
    cr_assert_eq(r.status, 404, "an empty secret disables the endpoint: %s", r.body);
    cr_assert_eq(fx_stop_child(&child, NULL), 0, "funnel-webhook stops on SIGTERM with 0");
}

/* Polls the webhook's counters until it has received n requests (the n-th is being served). */
static void await_requests(uint64_t n)
{
    funnel_webhook_stats_t st = {0};
    for (int waited = 0; waited < 20000; waited += 10) {
        funnel_webhook_stats(wh, &st);
        if (st.requests >= n)
            return;
        fx_sleep_ms(10);
    }
    cr_assert_fail("the webhook received %llu requests, not %llu", (unsigned long long)st.requests,
                   (unsigned long long)n);
}

/* The order of events, not a stopwatch: a first POST is held by the frozen funneld (its submit
 * timeout far longer than the test), and /healthz and a second request are answered while it
 * is still waiting. Served one at a time, both would wait behind it (and curl gives up). */
Test(webhook, frozen_funneld_holds_one_request_not_healthz_or_others)
{
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    webhook_start(fd.submit, 60000, 1);
    fx_daemon_signal(&fd, SIGSTOP);
    char url[128], log[300];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/events/lead.created", port);
    snprintf(log, sizeof log, "%s/curl.out", tmp.path);
    const char *argv[] = {"/usr/bin/curl",
                          "-s",
                          "-o",
                          "/dev/null",
                          "-w",
                          "%{http_code}",
                          "--max-time",
                          "90",
                          "-H",
                          "Content-Type: application/json",
                          "-H",
                          "Authorization: Bearer " TOKEN,
                          "--data",
                          "{\"eventId\":\"frozen-1\",\"leadId\":\"L-1\"}",
                          url,
                          NULL};
    child = fx_spawn(argv, log);
    await_requests(1);

    http_reply_t r = http("/healthz", NULL, 0, NULL);
    cr_assert_eq(r.status, 200);
    r = post_json("/v1/events/lead.created", "{}", "Authorization: Bearer wrong");
    cr_assert_eq(r.status, 401, "%ld %s", r.status, r.body);
    cr_assert_eq(waitpid(child, NULL, WNOHANG), 0, "the first request is still held by funneld");

    fx_daemon_signal(&fd, SIGCONT);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    child = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "curl: %d", status);
    char out[64] = "";
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(out, sizeof out, f));
    fclose(f);
    cr_assert_str_eq(out, "202", "once funneld runs again the first request is acked");
}

/* Restarts the webhook with the given limits (0 keeps the default). */
static void webhook_start_limited(int64_t max_connections, int64_t max_per_ip, int64_t timeout_s)
{
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    cr_assert_eq(funnel_webhook_config_defaults(&cfg), 0);
    cfg.port = 0;
    set_str(&cfg.submit, fd.submit);
    cfg.max_connections = max_connections ? max_connections : cfg.max_connections;
    cfg.max_per_ip = max_per_ip ? max_per_ip : cfg.max_per_ip;
    cfg.connection_timeout_s = timeout_s ? timeout_s : cfg.connection_timeout_s;
    cr_assert_eq(funnel_webhook_new(&cfg, &quiet, &wh), 0);
    port = funnel_webhook_port(wh);
}

/* A TCP connection to the webhook whose reads give up after 20 s (a failure, not a wait). */
static int tcp_open(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s, 0);
    struct timeval tv = {20, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    return s;
}

static int held[3] = {-1, -1, -1}; /* the connections a limit test holds open */

static void close_held(void)
{
    for (size_t i = 0; i < 3; i++)
        if (held[i] >= 0)
            close(held[i]);
    held[0] = held[1] = held[2] = -1;
}

/* Three silent connections against a limit of two: the webhook closes exactly one of them at
 * once (long before the 60 s timeout), and a held one is still served. */
static void third_connection_is_closed(void)
{
    for (size_t i = 0; i < 3; i++)
        held[i] = tcp_open();
    struct pollfd p[3] = {{held[0], POLLIN, 0}, {held[1], POLLIN, 0}, {held[2], POLLIN, 0}};
    cr_assert_eq(poll(p, 3, 20000), 1, "exactly one connection is closed by the limit");
    size_t shut = p[0].revents ? 0 : p[1].revents ? 1 : 2, kept = (shut + 1) % 3;
    char buf[256];
    cr_assert_leq(recv(held[shut], buf, sizeof buf, 0), 0, "closed without an answer");
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cr_assert_eq(send(held[kept], req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
    ssize_t n = recv(held[kept], buf, sizeof buf - 1, 0);
    cr_assert_gt(n, 0);
    buf[n] = '\0';
    cr_assert(strstr(buf, " 200 "), "%s", buf);
    close_held();
}

Test(webhook, connections_over_max_per_ip_are_closed, .fini = close_held)
{
    webhook_start_limited(0, 2, 60);
    third_connection_is_closed();
}

Test(webhook, connections_over_max_connections_are_closed, .fini = close_held)
{
    webhook_start_limited(2, 0, 60);
    third_connection_is_closed();
}

/* A client that sends half its headers and stops is disconnected after connection_timeout_s
 * (1 s here; libmicrohttpd's clock cannot be injected, so this waits for it, and fails only if
 * the connection is still open after 20 s). */
Test(webhook, slow_headers_are_cut_off_after_connection_timeout, .fini = close_held)
{
    webhook_start_limited(0, 0, 1);
    held[0] = tcp_open();
    const char part[] = "POST /v1/events/lead.created HTTP/1.1\r\nHost: x\r\n";
    cr_assert_eq(send(held[0], part, sizeof part - 1, 0), (ssize_t)(sizeof part - 1));
    char buf[256];
    cr_assert_eq(recv(held[0], buf, sizeof buf, 0), 0, "the connection is closed, not answered");
    close_held();
}

/* The amoCRM mapping on its own, no server: the form in a buffer of exactly its length (no NUL
 * after it, as a body need not have one), the default status table. Returns the leadId of the
 * first lead.created, or NULL when the form was refused (why says why). */
static char *amo_first_lead_id(const char *form, char *why, size_t why_len)
{
    funnel_webhook_config_t c;
    cr_assert_eq(funnel_webhook_config_defaults(&c), 0);
    size_t len = strlen(form);
    char *exact = malloc(len ? len : 1);
    cr_assert_not_null(exact);
    memcpy(exact, form, len);
    json_t *items = NULL;
    size_t ignored = 0;
    char *id = NULL;
    if (funnel_amocrm_map(&c, exact, len, 1700000000000, &items, &ignored, why, why_len) == 0) {
        const char *s = json_string_value(
            json_object_get(json_object_get(json_array_get(items, 0), "event"), "leadId"));
        cr_assert_not_null(s, "no lead.created for %s", form);
        id = strdup(s);
        json_decref(items);
    }
    free(exact);
    funnel_webhook_config_clear(&c);
    return id;
}

Test(webhook_map, amocrm_percent_escape_is_exactly_two_hex_digits)
{
    /* sscanf's %2x read a sign, "0x" or blanks too: "%+41" became byte 4 then "1", "%-1" a
     * 0xff byte. An escape is '%' and two hex digits; anything else stays as sent ('+' is
     * still a space). */
    static const struct {
        const char *value, *id;
    } cases[] = {
        {"%41%62c", "Abc"}, {"%+41", "% 41"}, {"% 41", "% 41"}, {"%-1z", "%-1z"},
        {"%0x41", "%0x41"}, {"a%4", "a%4"},   {"%zz", "%zz"},   {"x%", "x%"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char form[128], why[256] = "";
        snprintf(form, sizeof form, "leads[add][0][id]=%s", cases[i].value);
        char *id = amo_first_lead_id(form, why, sizeof why);
        cr_assert_not_null(id, "%s refused: %s", form, why);
        cr_assert_str_eq(id, cases[i].id, "%s", form);
        free(id);
    }
}

/* Maps a Stripe event body as the server does, without the server. */
static int stripe_map_text(const char *body, char *why, size_t why_len)
{
    json_t *ev = json_loads(body, 0, NULL);
    cr_assert_not_null(ev, "%s", body);
    json_t *items = NULL;
    size_t ignored = 0;
    int rc = funnel_stripe_map(ev, &items, &ignored, why, why_len);
    json_decref(items);
    json_decref(ev);
    return rc;
}

Test(webhook_map, times_whose_milliseconds_overflow_are_refused)
{
    /* Providers send seconds; funneld takes milliseconds. Seconds beyond INT64_MAX / 1000
     * overflowed the multiplication (undefined behaviour); no real event is dated there, so
     * the request is refused. The largest that fits still maps (funneld judges the time).
     * Found by fuzz_webhook_map. */
    static const char *const amo[] = {
        "leads[status][0][id]=1&leads[status][0][status_id]=142"
        "&leads[status][0][last_modified]=9223372036854776",
        "leads[add][0][id]=1&leads[add][0][date_create]=-9223372036854776",
        "leads[status][0][id]=1&leads[status][0][status_id]=142"
        "&leads[status][0][updated_at]=99999999999999999999",
    };
    for (size_t i = 0; i < sizeof amo / sizeof amo[0]; i++) {
        char why[256] = "";
        char *id = amo_first_lead_id(amo[i], why, sizeof why);
        cr_assert_null(id, "%s was mapped", amo[i]);
        cr_assert(strstr(why, "not a Unix time"), "%s: %s", amo[i], why);
    }
    static const char *const stripe[] = {
        "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\",\"created\":9223372036854776,"
        "\"data\":{\"object\":{\"id\":\"pi_1\",\"amount\":5,\"currency\":\"usd\","
        "\"customer\":\"c\"}}}",
        "{\"id\":\"evt_2\",\"type\":\"refund.created\",\"created\":1700000000,\"data\":{\"object\":"
        "{\"id\":\"re_1\",\"amount\":5,\"currency\":\"usd\",\"payment_intent\":\"pi_1\","
        "\"created\":-9223372036854776,\"metadata\":{\"client_id\":\"c\"}}}}",
        "{\"id\":\"evt_3\",\"type\":\"charge.refunded\",\"created\":1700000000,\"data\":{"
        "\"object\":"
        "{\"id\":\"ch_1\",\"amount_refunded\":5,\"currency\":\"usd\",\"customer\":\"c\","
        "\"created\":9223372036854776}}}",
    };
    for (size_t i = 0; i < sizeof stripe / sizeof stripe[0]; i++) {
        char why[256] = "";
        cr_assert_eq(stripe_map_text(stripe[i], why, sizeof why), FUNNEL_EINVAL, "%s", stripe[i]);
        cr_assert(strstr(why, "created"), "%s: %s", stripe[i], why);
    }
    char why[256] = "";
    char *id = amo_first_lead_id("leads[add][0][id]=7&leads[add][0][date_create]=9223372036854775",
                                 why, sizeof why);
    cr_assert_str_eq(id ? id : "(refused)", "7", "%s", why);
    free(id);
    cr_assert_eq(
        stripe_map_text(
            "{\"id\":\"evt_4\",\"type\":\"payment_intent.succeeded\",\"created\":9223372036854775,"
            "\"data\":{\"object\":{\"id\":\"pi_1\",\"amount\":5,\"currency\":\"usd\","
            "\"customer\":\"c\"}}}",
            why, sizeof why),
        0, "%s", why);
}

/* ---- config: key and server_key ----------------------------------------------------------- */

static void config_setup(void)
{
    fx_tmpdir_make(&tmp);
}

static void config_teardown(void)
{
    fx_tmpdir_remove(&tmp);
}

TestSuite(webhook_config, .init = config_setup, .fini = config_teardown, .timeout = 60);

Test(webhook_config, key_and_server_key_are_checked_at_start)
{
    funnel_webhook_config_t c;
    char key[300], pub[300], conf[300], err[512];
    fx_curve_config_check(FUNNEL_WEBHOOK_PATH, tmp.path, conf, key, pub, sizeof key);
    cr_assert_eq(funnel_webhook_config_defaults(&c), 0);
    cr_expect_str_eq(c.key, "", "no CURVE by default");
    int rc = funnel_webhook_config_load(conf, &c, err, sizeof err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect_str_eq(c.key, key);
    cr_expect_str_eq(c.server_key, pub);
    funnel_webhook_config_clear(&c);
}
