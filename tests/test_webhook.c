/* test_webhook.c — funnel-webhook over real HTTP on loopback against a real funneld: signature
 * vectors computed independently (fixed ones from another HMAC implementation, live ones with
 * OpenSSL over the test's own framing), provider payload mappings, refusals, and 503 when
 * funneld cannot be reached. */
#include "harness.h"
#include "http_fx.h"
#include "webhook.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Starts the webhook in-process on a free port, submitting to submit_ep. */
static void webhook_start(const char *submit_ep, int timeout_ms, int attempts)
{
    cr_assert_eq(funnel_webhook_config_defaults(&cfg), 0);
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
    fx_tmpdir_make(&tmp);
    memset(&fd, 0, sizeof fd);
    fx_daemon_start(&fd, tmp.path, NULL);
    webhook_start(fd.submit, 3000, 2);
}

static void teardown(void)
{
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    int status = fx_daemon_stop(&fd);
    if (status > 0)
        fprintf(stderr, "FUNNEL TEST ERROR: funneld exited with status %d\n", status);
    fx_tmpdir_remove(&tmp);
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

static http_reply_t post_hubspot(const char *body, const char *secret, long long ts)
{
    char tsbuf[32], tshdr[64], sighdr[128], *msg = NULL;
    unsigned char mac[32], b64[48];
    unsigned int n = 32;
    snprintf(tsbuf, sizeof tsbuf, "%lld", ts);
    int len = asprintf(&msg, "POST%s/v1/hubspot%s%s", HUBSPOT_BASE, body, tsbuf);
    cr_assert_geq(len, 0);
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)msg, (size_t)len, mac, &n);
    free(msg);
    EVP_EncodeBlock(b64, mac, 32);
    snprintf(tshdr, sizeof tshdr, "X-HubSpot-Request-Timestamp: %s", tsbuf);
    snprintf(sighdr, sizeof sighdr, "X-HubSpot-Signature-v3: %s", b64);
    const char *hdrs[] = {"Content-Type: application/json", tshdr, sighdr, NULL};
    return http("/v1/hubspot", body, strlen(body), hdrs);
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
    cr_assert_eq(s.count, 3, "%s", s.text);
    cr_assert(strstr(s.text, "payment.received {\"eventId\":\"evt_3OoXyZ2eZvKYlo2C1\""), "%s",
              s.text);
    cr_assert(strstr(s.text, "\"paymentId\":\"pi_3OoXyZ2eZvKYlo2C\",\"clientId\":\"cus_PdQ9\","
                             "\"amount\":{\"minor\":\"129900\",\"currency\":\"EUR\"}"),
              "%s", s.text);
    cr_assert(strstr(s.text, "\"paymentId\":\"pi_inv_1\",\"clientId\":\"C-77\",\"amount\":{"
                             "\"minor\":\"5000\",\"currency\":\"USD\"}"),
              "%s", s.text);
    cr_assert(strstr(s.text, "payment.refunded {\"eventId\":\"evt_ref_1\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"refundId\":\"re_2\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"minor\":\"20000\""), "%s", s.text);
    funnel_webhook_stats_t st;
    funnel_webhook_stats(wh, &st);
    cr_assert_eq(st.ignored, 1);
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
             "\"propertyValue\":\"a@b.c\"}]",
             now, now + 1, now + 2, now + 3, now + 4);
    http_reply_t r = post_hubspot(body, HUBSPOT_SECRET, now);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"accepted\":4") && strstr(r.body, "\"ignored\":1"), "%s", r.body);
    cr_assert_eq(post_hubspot(body, "wrong", now).status, 400);
    cr_assert_eq(post_hubspot(body, HUBSPOT_SECRET, now - 301000).status, 400, "stale");
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 4, "%s", s.text);
    cr_assert(strstr(s.text, "lead.created {\"eventId\":\"hubspot-1001\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"source\":\"hubspot\",\"leadCreated\":{\"leadId\":\"123\"}"), "%s",
              s.text);
    cr_assert(strstr(s.text, "\"stage\":\"MQL\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"stage\":\"SQL\""), "%s", s.text);
    cr_assert(strstr(s.text, "lead.closed {\"eventId\":\"hubspot-1004\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"outcome\":\"WON\""), "%s", s.text);
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
             "&account[id]=29085955&account[subdomain]=example",
             now, now + 1, now + 2);
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    http_reply_t r = http("/v1/amocrm?token=amo-token", body, strlen(body), hdrs);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, "\"accepted\":3") && strstr(r.body, "\"ignored\":1"), "%s", r.body);
    r = http("/v1/amocrm?token=amo-token", body, strlen(body), hdrs);
    cr_assert(strstr(r.body, "\"duplicates\":3"), "amoCRM's retry: %s", r.body);
    cr_assert_eq(http("/v1/amocrm?token=nope", body, strlen(body), hdrs).status, 400);
    cr_assert_eq(http("/v1/amocrm?token=amo-token", "x=1", 3, hdrs).status, 400);
    const char *json[] = {"Content-Type: application/json", NULL};
    cr_assert_eq(http("/v1/amocrm?token=amo-token", body, strlen(body), json).status, 415);
    stream_t s;
    read_stream(&s);
    cr_assert_eq(s.count, 3, "%s", s.text);
    cr_assert(strstr(s.text, "lead.created {\"eventId\":\"amocrm-4711-add\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"4711\",\"owner\":\"555\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"4711\",\"stage\":\"SQL\""), "%s", s.text);
    cr_assert(strstr(s.text, "\"leadId\":\"4712\",\"outcome\":\"LOST\""), "%s", s.text);
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
    FILE *f = fopen(bad, "w");
    fputs("port = 8090;\nstripe_secret = 5;\n", f);
    fclose(f);
    const char *badargv[] = {FUNNEL_WEBHOOK_PATH, "--config", bad, NULL};
    cr_assert_eq(fx_run(badargv, out, sizeof out), 1);
    cr_assert(strstr(out, "stripe_secret: expected a string"), "%s", out);

    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        execl(FUNNEL_WEBHOOK_PATH, FUNNEL_WEBHOOK_PATH, "--config", conf, "--port", "0",
              "--ready-file", ready, (char *)NULL);
        _exit(127);
    }
    int waited = 0;
    for (f = NULL; !(f = fopen(ready, "r")) && waited < 10000; waited += 10)
        usleep(10000);
    cr_assert_not_null(f, "funnel-webhook did not become ready");
    cr_assert_eq(fscanf(f, "port=%d", &port), 1);
    fclose(f);
    http_reply_t r = http("/healthz", NULL, 0, NULL);
    cr_assert_eq(r.status, 200);
    r = post_json("/v1/stripe", "{}", NULL);
    cr_assert_eq(r.status, 404, "an empty secret disables the endpoint: %s", r.body);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}
