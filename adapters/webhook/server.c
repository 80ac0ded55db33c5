/* server.c — funnel-webhook's HTTP side: libmicrohttpd with a thread per connection.
 *
 * A request blocks its connection's thread while it waits for funneld's acks (bounded by
 * submit_timeout_ms times submit_attempts); the others keep being answered, so a slow funneld
 * does not hold /healthz or the next sender. Not MHD's thread pool: it ties a connection to a
 * pool thread when accepting it, so a request accepted by a thread that then blocks waits behind
 * the slow one (measured: 4 requests answered after 2, 2, 2 and 4 s). libmicrohttpd's own limits
 * (connections in all and per address, a timeout for slow headers and bodies) bound the threads
 * and keep trickling clients from taking every connection. Shared state: the counters (one
 * mutex) and the client pool (another). */
#include "webhook.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "funnel/promhttp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct funnel_webhook {
    const funnel_webhook_config_t *cfg;
    const funnel_log_t *log;
    /* `threads` clients, each lent to one request at a time (funnel_client_t is for one thread
     * at a time, and a ZeroMQ socket must stay on one thread). idle[0..n_idle) are free; past
     * `threads` submitting requests, a borrower waits on returned. */
    pthread_mutex_t pool_lock;
    pthread_cond_t returned;
    funnel_client_t **clients, **idle;
    size_t n_clients, n_idle;
    struct MHD_Daemon *httpd;
    pthread_mutex_t lock; /* guards stats, which other threads read */
    funnel_webhook_stats_t stats;
};

/* A request being received: the body, capped at max_body_bytes. */
typedef struct request {
    char *uri; /* the request target as sent, query string included; NULL if it could not be kept */
    bool started; /* the headers' call of on_request is done; the body follows */
    char *body;
    size_t len;
    bool too_large;
} request_t;

/* What a request ends with. */
typedef struct reply {
    unsigned int status;
    char body[512];
    bool retry_after;
} reply_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count(funnel_webhook_t *wh, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&wh->lock);
    *field += n;
    pthread_mutex_unlock(&wh->lock);
}

static const unsigned int refusal_statuses[] = FUNNEL_WEBHOOK_REFUSAL_STATUSES;
_Static_assert(sizeof refusal_statuses / sizeof refusal_statuses[0] ==
                   FUNNEL_WEBHOOK_N_REFUSAL_STATUSES,
               "one counter per refusal status");

/* Counts a refusal under the status it was sent with, so the metric's label is the status
 * the sender saw (a 500 used to be counted as a 4xx). */
static void count_refusal(funnel_webhook_t *wh, unsigned int status)
{
    size_t i = 0;
    while (i < FUNNEL_WEBHOOK_N_REFUSAL_STATUSES && refusal_statuses[i] != status)
        i++;
    pthread_mutex_lock(&wh->lock);
    if (i < FUNNEL_WEBHOOK_N_REFUSAL_STATUSES)
        wh->stats.by_status[i]++;
    wh->stats.refused += status >= 400 && status < 500;
    wh->stats.unavailable += status == MHD_HTTP_SERVICE_UNAVAILABLE;
    pthread_mutex_unlock(&wh->lock);
}

/* A {"error": why} reply; the refusal is logged with the request line. */
static void refuse(funnel_webhook_t *wh, reply_t *r, unsigned int status, const char *method,
                   const char *url, const char *why)
{
    json_t *o = json_pack("{s:s}", "error", why);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    r->status = status;
    snprintf(r->body, sizeof r->body, "%s", text ? text : "{}");
    free(text);
    json_decref(o);
    funnel_log_warn(wh->log, "refused %s %s: %u %s", method, url, status, why);
    count_refusal(wh, status);
    r->retry_after = status == MHD_HTTP_SERVICE_UNAVAILABLE;
}

/* True when the Content-Type's media type is want (parameters like charset ignored). */
static bool content_type_is(struct MHD_Connection *conn, const char *want)
{
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = strlen(want);
    return ct && !strncasecmp(ct, want, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Outcome of submitting a list of mapped events. */
typedef struct submit_tally {
    size_t ok, duplicate;
    bool unreachable;
    char rejected[300]; /* the first refusal, "event_id: reason" */
    char last_id[FUNNEL_WEBHOOK_ID_MAX];
} submit_tally_t;

static funnel_client_t *client_borrow(funnel_webhook_t *wh)
{
    pthread_mutex_lock(&wh->pool_lock);
    while (!wh->n_idle)
        pthread_cond_wait(&wh->returned, &wh->pool_lock);
    funnel_client_t *c = wh->idle[--wh->n_idle];
    pthread_mutex_unlock(&wh->pool_lock);
    return c;
}

static void client_return(funnel_webhook_t *wh, funnel_client_t *c)
{
    pthread_mutex_lock(&wh->pool_lock);
    wh->idle[wh->n_idle++] = c;
    pthread_cond_signal(&wh->returned);
    pthread_mutex_unlock(&wh->pool_lock);
}

/* Builds and submits one event through client; fills the tally. Returns 0, or FUNNEL_EINVAL
 * when the event did not map to an Envelope (why says so). */
static int submit_event(funnel_webhook_t *wh, funnel_client_t *client, const char *topic,
                        const char *json, submit_tally_t *t, char *why, size_t why_len)
{
    funnel_body_t body;
    funnel_envelope_t *env = NULL;
    if (funnel_topic_lookup(topic, strlen(topic), &body)) {
        snprintf(why, why_len, "'%s' is not an ingest topic", topic);
        return FUNNEL_EINVAL;
    }
    if (funnel_json_envelope_build(body, json, wall_ms(), &env, why, why_len))
        return FUNNEL_EINVAL;
    /* An empty source keeps protobuf-c's shared default string, so nothing is leaked. */
    if (!env->source[0] && !(env->source = strdup("webhook"))) {
        funnel_envelope_free(&env);
        return FUNNEL_ENOMEM;
    }
    funnel_submit_options_t o = {(int)wh->cfg->submit_timeout_ms, (int)wh->cfg->submit_attempts,
                                 100};
    funnel_submit_result_t res;
    int rc = funnel_client_submit(client, wh->cfg->submit, topic, env, &o, &res);
    snprintf(t->last_id, sizeof t->last_id, "%s", env->event_id);
    if (rc) {
        const char *hint = funnel_client_error(client);
        funnel_log_error(wh->log, "funneld at %s: %s%s%s (event %s)", wh->cfg->submit,
                         funnel_strerror(rc), hint[0] ? ": " : "", hint, env->event_id);
        t->unreachable = true;
    } else if (res.status == FUNNEL_SUBMIT_REJECTED && !t->rejected[0]) {
        snprintf(t->rejected, sizeof t->rejected, "%s: %s", env->event_id, res.reason);
    } else {
        t->ok += res.status == FUNNEL_SUBMIT_OK;
        t->duplicate += res.status == FUNNEL_SUBMIT_DUPLICATE;
    }
    funnel_envelope_free(&env);
    return 0;
}

/* Submits every {"topic","event"} item, stopping at the first one funneld cannot take. */
static int submit_all(funnel_webhook_t *wh, const json_t *items, submit_tally_t *t, char *why,
                      size_t why_len)
{
    size_t i;
    const json_t *item;
    int rc = 0;
    funnel_client_t *client = client_borrow(wh);
    json_array_foreach(items, i, item)
    {
        char *json = json_dumps(json_object_get(item, "event"), JSON_COMPACT);
        rc = json ? submit_event(wh, client, json_string_value(json_object_get(item, "topic")),
                                 json, t, why, why_len)
                  : FUNNEL_ENOMEM;
        free(json);
        if (rc || t->unreachable)
            break;
    }
    client_return(wh, client);
    return rc;
}

/* Turns the tally into the reply: 503 when funneld was not reached, 400 when it refused,
 * else success (ok_status when something new was recorded, 200 for duplicates only). */
static void answer_tally(funnel_webhook_t *wh, reply_t *r, const submit_tally_t *t,
                         unsigned int ok_status, size_t ignored, const char *method,
                         const char *url)
{
    count(wh, &wh->stats.accepted, t->ok);
    count(wh, &wh->stats.duplicates, t->duplicate);
    count(wh, &wh->stats.ignored, ignored);
    if (t->unreachable) {
        refuse(wh, r, MHD_HTTP_SERVICE_UNAVAILABLE, method, url, "funneld is unreachable");
        return;
    }
    if (t->rejected[0]) {
        refuse(wh, r, MHD_HTTP_BAD_REQUEST, method, url, t->rejected);
        return;
    }
    r->status = t->ok || !t->duplicate ? ok_status : MHD_HTTP_OK;
    json_t *o =
        json_pack("{s:s, s:I, s:I, s:I}", "eventId", t->last_id, "accepted", (json_int_t)t->ok,
                  "duplicates", (json_int_t)t->duplicate, "ignored", (json_int_t)ignored);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(r->body, sizeof r->body, "%s", text ? text : "{}");
    free(text);
    json_decref(o);
}

/* Constant-time comparison of a presented secret with the configured one. */
static bool secret_eq(const char *given, const char *want)
{
    size_t n = strlen(want);
    return given && strlen(given) == n && CRYPTO_memcmp(given, want, n) == 0;
}

/* POST /v1/events/{topic}: a funnel event as proto3 JSON, bearer-token protected. */
static void handle_events(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *url,
                          request_t *rq, reply_t *r)
{
    const char *topic = url + strlen("/v1/events/");
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    char why[256] = "";
    if (!wh->cfg->token[0] || !auth || strncmp(auth, "Bearer ", 7) ||
        !secret_eq(auth + 7, wh->cfg->token)) {
        refuse(wh, r, MHD_HTTP_UNAUTHORIZED, "POST", url, "missing or wrong bearer token");
        return;
    }
    if (!content_type_is(conn, "application/json")) {
        refuse(wh, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "POST", url,
               "Content-Type must be application/json");
        return;
    }
    submit_tally_t t = {0};
    funnel_client_t *client = client_borrow(wh);
    int rc = submit_event(wh, client, topic, rq->body, &t, why, sizeof why);
    client_return(wh, client);
    if (rc) {
        refuse(wh, r, MHD_HTTP_BAD_REQUEST, "POST", url, why);
        return;
    }
    answer_tally(wh, r, &t, MHD_HTTP_ACCEPTED, 0, "POST", url);
}

/* A provider webhook: verify, map, submit. mapped is NULL when verification or mapping refused
 * the request (r is then filled). */
typedef int (*provider_map_fn)(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *url,
                               request_t *rq, json_t **mapped, size_t *ignored, char *why,
                               size_t why_len);

/* Parses a verified JSON body and maps it with a provider's JSON mapper. */
static int map_json_body(request_t *rq,
                         int (*map)(const json_t *, json_t **, size_t *, char *, size_t),
                         json_t **mapped, size_t *ignored, char *why, size_t why_len)
{
    json_t *ev = json_loadb(rq->body, rq->len, 0, NULL);
    if (!ev) {
        snprintf(why, why_len, "body is not JSON");
        return FUNNEL_EINVAL;
    }
    int rc = map(ev, mapped, ignored, why, why_len);
    json_decref(ev);
    return rc;
}

static int map_stripe(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *url,
                      request_t *rq, json_t **mapped, size_t *ignored, char *why, size_t why_len)
{
    (void)url;
    const char *sig = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Stripe-Signature");
    int rc = funnel_stripe_verify(wh->cfg->stripe_secret, sig, rq->body, rq->len, wall_ms() / 1000,
                                  wh->cfg->tolerance_s, why, why_len);
    return rc ? rc : map_json_body(rq, funnel_stripe_map, mapped, ignored, why, why_len);
}

/* The URI HubSpot signs for a request target: the configured public base, then the target as
 * sent (query string included) with the characters HubSpot's v3 rules name decoded. */
static void hubspot_signed_uri(const char *base, const char *target, char *out, size_t len)
{
    static const char decoded[] = ":/?@!$'()*,;";
    size_t o = (size_t)snprintf(out, len, "%s", base);
    for (const char *p = target; *p && o + 1 < len; p++) {
        unsigned int c;
        if (*p == '%' && sscanf(p + 1, "%2x", &c) == 1 && isxdigit((unsigned char)p[1]) &&
            isxdigit((unsigned char)p[2]) && c && strchr(decoded, (int)c)) {
            out[o++] = (char)c;
            p += 2;
        } else {
            out[o++] = *p;
        }
    }
    out[o < len ? o : len - 1] = '\0';
}

static int map_hubspot(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *url,
                       request_t *rq, json_t **mapped, size_t *ignored, char *why, size_t why_len)
{
    /* HubSpot signs the full URL it called, query string included: the configured public base
     * plus the request target as it arrived. */
    char uri[4096];
    hubspot_signed_uri(wh->cfg->hubspot_base_url, rq->uri ? rq->uri : url, uri, sizeof uri);
    int rc = funnel_hubspot_verify(
        wh->cfg->hubspot_secret, "POST", uri, rq->body, rq->len,
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-HubSpot-Request-Timestamp"),
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-HubSpot-Signature-v3"), wall_ms(),
        wh->cfg->tolerance_s * 1000, why, why_len);
    return rc ? rc : map_json_body(rq, funnel_hubspot_map, mapped, ignored, why, why_len);
}

static int map_amocrm(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *url,
                      request_t *rq, json_t **mapped, size_t *ignored, char *why, size_t why_len)
{
    (void)url;
    /* amoCRM cannot sign its webhooks: a secret token in the URL it is given stands in. */
    const char *token = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
    if (!secret_eq(token, wh->cfg->amocrm_token)) {
        snprintf(why, why_len, "missing or wrong token");
        return FUNNEL_EINVAL;
    }
    return funnel_amocrm_map(wh->cfg, rq->body, rq->len, wall_ms(), mapped, ignored, why, why_len);
}

/* A provider's endpoint: its secret (empty: not configured), the Content-Type it sends, its
 * mapper and the prefix of the ids it mints. */
typedef struct provider {
    const char *secret, *content_type, *id_prefix;
    provider_map_fn map;
} provider_t;

static void handle_provider(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *url,
                            request_t *rq, reply_t *r, const provider_t *pv)
{
    const char *secret = pv->secret, *content_type = pv->content_type;
    char why[256] = "";
    json_t *mapped = NULL;
    size_t ignored = 0;
    if (!secret[0]) {
        refuse(wh, r, MHD_HTTP_NOT_FOUND, "POST", url, "endpoint not configured");
        return;
    }
    if (!content_type_is(conn, content_type)) {
        snprintf(why, sizeof why, "Content-Type must be %s", content_type);
        refuse(wh, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "POST", url, why);
        return;
    }
    int rc = pv->map(wh, conn, url, rq, &mapped, &ignored, why, sizeof why);
    if (!rc && funnel_webhook_prefix_ids(mapped, pv->id_prefix)) {
        json_decref(mapped);
        rc = FUNNEL_ENOMEM;
    }
    if (rc) {
        refuse(wh, r, rc == FUNNEL_ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST,
               "POST", url, rc == FUNNEL_ENOMEM ? "out of memory" : why);
        return;
    }
    submit_tally_t t = {0};
    if (submit_all(wh, mapped, &t, why, sizeof why))
        refuse(wh, r, MHD_HTTP_BAD_REQUEST, "POST", url, why);
    else
        answer_tally(wh, r, &t, MHD_HTTP_OK, ignored, "POST", url);
    json_decref(mapped);
}

/* GET /metrics: the counters in Prometheus text exposition (a copy taken on the lock). */
static void render_metrics(FILE *out, void *arg)
{
    funnel_webhook_stats_t s;
    funnel_webhook_stats(arg, &s);
    funnel_prom_family(out, "funnel_webhook_requests_total", "counter", "HTTP requests received.");
    funnel_prom_u64(out, "funnel_webhook_requests_total", NULL, NULL, s.requests);
    funnel_prom_family(out, "funnel_webhook_events_total", "counter",
                       "Provider events by what became of them.");
    funnel_prom_u64(out, "funnel_webhook_events_total", "result", "accepted", s.accepted);
    funnel_prom_u64(out, "funnel_webhook_events_total", "result", "duplicate", s.duplicates);
    funnel_prom_u64(out, "funnel_webhook_events_total", "result", "ignored", s.ignored);
    funnel_prom_family(out, "funnel_webhook_refused_total", "counter",
                       "Requests refused, by the HTTP status sent.");
    for (size_t i = 0; i < FUNNEL_WEBHOOK_N_REFUSAL_STATUSES; i++) {
        char code[8];
        snprintf(code, sizeof code, "%u", refusal_statuses[i]);
        funnel_prom_u64(out, "funnel_webhook_refused_total", "status", code, s.by_status[i]);
    }
}

static void route(funnel_webhook_t *wh, struct MHD_Connection *conn, const char *method,
                  const char *url, request_t *rq, reply_t *r)
{
    const funnel_webhook_config_t *c = wh->cfg;
    bool post = !strcmp(method, "POST");
    if (rq->too_large) {
        refuse(wh, r, MHD_HTTP_CONTENT_TOO_LARGE, method, url, "body over max_body_bytes");
    } else if (post && !strncmp(url, "/v1/events/", 11)) {
        handle_events(wh, conn, url, rq, r);
    } else if (post && !strcmp(url, "/v1/stripe")) {
        provider_t pv = {c->stripe_secret, "application/json", c->stripe_id_prefix, map_stripe};
        handle_provider(wh, conn, url, rq, r, &pv);
    } else if (post && !strcmp(url, "/v1/hubspot")) {
        provider_t pv = {c->hubspot_secret, "application/json", c->hubspot_id_prefix, map_hubspot};
        handle_provider(wh, conn, url, rq, r, &pv);
    } else if (post && !strcmp(url, "/v1/amocrm")) {
        provider_t pv = {c->amocrm_token, "application/x-www-form-urlencoded", c->amocrm_id_prefix,
                         map_amocrm};
        handle_provider(wh, conn, url, rq, r, &pv);
    } else {
        refuse(wh, r, MHD_HTTP_NOT_FOUND, method, url, "no such endpoint");
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    funnel_webhook_t *wh = cls;
    request_t *rq = *state;
    (void)version;
    if (!rq && !(rq = calloc(1, sizeof *rq))) /* uri_kept could not allocate */
        return MHD_NO;
    *state = rq;
    if (!rq->started) {
        /* First call: headers only. The body follows in later calls. */
        rq->started = true;
        return MHD_YES;
    }
    if (*upload_len) {
        /* Past the limit the rest is read and dropped, so the client gets its 413. */
        size_t n = *upload_len;
        *upload_len = 0;
        if (rq->too_large || rq->len + n > (size_t)wh->cfg->max_body_bytes) {
            rq->too_large = true;
            return MHD_YES;
        }
        char *grown = realloc(rq->body, rq->len + n + 1);
        if (!grown)
            return MHD_NO;
        memcpy(grown + rq->len, upload, n);
        rq->body = grown;
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (!rq->body && !(rq->body = calloc(1, 1)))
        return MHD_NO;
    count(wh, &wh->stats.requests, 1);
    int served = funnel_prom_answer(conn, method, url, render_metrics, wh);
    if (served >= 0)
        return served == MHD_YES ? MHD_YES : MHD_NO;
    reply_t r = {0};
    route(wh, conn, method, url, rq, &r);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(r.body), r.body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type",
                            r.body[0] == '{' ? "application/json" : "text/plain; version=0.0.4");
    if (r.retry_after) {
        char secs[16];
        snprintf(secs, sizeof secs, "%lld", (long long)wh->cfg->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", secs);
    }
    enum MHD_Result ret = MHD_queue_response(conn, r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* MHD's URI log callback, called once per request before parsing: the request target as sent
 * is kept, since the url on_request gets has lost its query string (which HubSpot signs). What
 * it returns is the request's state. */
static void *uri_kept(void *cls, const char *uri, struct MHD_Connection *conn)
{
    request_t *rq = calloc(1, sizeof *rq);
    (void)cls;
    (void)conn;
    if (rq)
        rq->uri = strdup(uri);
    return rq;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode why)
{
    request_t *rq = *state;
    (void)cls;
    (void)conn;
    (void)why;
    if (rq) {
        free(rq->uri);
        free(rq->body);
        free(rq);
        *state = NULL;
    }
}

/* Makes the n clients requests borrow, with CURVE when the config has keys. Returns 0,
 * FUNNEL_ENOMEM or the client's error (logged); pool_close frees what was made either way. */
static int pool_open(funnel_webhook_t *wh, size_t n)
{
    char err[512];
    wh->clients = calloc(n, sizeof *wh->clients);
    wh->idle = calloc(n, sizeof *wh->idle);
    if (!wh->clients || !wh->idle)
        return FUNNEL_ENOMEM;
    for (; wh->n_clients < n; wh->n_clients++) {
        funnel_client_t **c = &wh->clients[wh->n_clients];
        int rc = funnel_client_new(c);
        if (rc)
            return rc;
        rc = funnel_client_set_curve(*c, wh->cfg->key, wh->cfg->server_key, err, sizeof err);
        if (rc) {
            funnel_log_error(wh->log, "key, server_key: %s", err);
            return rc;
        }
        wh->idle[wh->n_idle++] = *c;
    }
    return 0;
}

/* Frees the clients; no request is being served any more. */
static void pool_close(funnel_webhook_t *wh)
{
    for (size_t i = 0; i < wh->n_clients; i++)
        funnel_client_destroy(&wh->clients[i]);
    free(wh->clients);
    free(wh->idle);
    wh->clients = wh->idle = NULL;
    wh->n_clients = wh->n_idle = 0;
}

int funnel_webhook_new(const funnel_webhook_config_t *cfg, const funnel_log_t *log,
                       funnel_webhook_t **out)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->listen_addr, &addr.sin_addr) != 1) {
        funnel_log_error(log, "listen_addr '%s' is not an IPv4 address", cfg->listen_addr);
        return FUNNEL_ECONFIG;
    }
    funnel_webhook_t *wh = calloc(1, sizeof *wh);
    if (!wh)
        return FUNNEL_ENOMEM;
    wh->cfg = cfg;
    wh->log = log;
    pthread_mutex_init(&wh->lock, NULL);
    pthread_mutex_init(&wh->pool_lock, NULL);
    pthread_cond_init(&wh->returned, NULL);
    int rc = pool_open(wh, (size_t)cfg->threads);
    if (rc)
        goto fail;
    wh->httpd = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
        (uint16_t)cfg->port, NULL, NULL, on_request, wh, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, wh,
        MHD_OPTION_URI_LOG_CALLBACK, uri_kept, wh, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)cfg->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)cfg->max_per_ip, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)cfg->connection_timeout_s, MHD_OPTION_END);
    if (!wh->httpd) {
        funnel_log_error(log, "cannot listen on %s:%lld", cfg->listen_addr, (long long)cfg->port);
        rc = FUNNEL_EIO;
        goto fail;
    }
    funnel_log_info(log, "listening on %s:%d, submitting to %s%s", cfg->listen_addr,
                    funnel_webhook_port(wh), cfg->submit, cfg->key[0] ? " with CURVE" : "");
    *out = wh;
    return 0;
fail:
    pool_close(wh);
    pthread_cond_destroy(&wh->returned);
    pthread_mutex_destroy(&wh->pool_lock);
    pthread_mutex_destroy(&wh->lock);
    free(wh);
    return rc;
}

int funnel_webhook_port(const funnel_webhook_t *wh)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(wh->httpd, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : -1;
}

void funnel_webhook_stats(funnel_webhook_t *wh, funnel_webhook_stats_t *out)
{
    pthread_mutex_lock(&wh->lock);
    *out = wh->stats;
    pthread_mutex_unlock(&wh->lock);
}

void funnel_webhook_destroy(funnel_webhook_t **whp)
{
    funnel_webhook_t *wh = whp ? *whp : NULL;
    if (!wh)
        return;
    MHD_stop_daemon(wh->httpd);
    pool_close(wh);
    pthread_cond_destroy(&wh->returned);
    pthread_mutex_destroy(&wh->pool_lock);
    pthread_mutex_destroy(&wh->lock);
    free(wh);
    *whp = NULL;
}
