/* server.c — funnel-web's HTTP side: libmicrohttpd with a thread per connection, the embedded
 * page, login and logout, authentication (session cookie or Bearer token) and CSRF checks in
 * front of the API (api.c), the live stream, and request counts and latency per route.
 *
 * Every refusal is JSON: 401 when the caller is not known (no or bad credentials), 403 when a
 * known caller may not do it (role, missing CSRF token). */
#include "web.h"

#include "funnel/error.h"
#include "funnel/promhttp.h"
#include "store.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WEB_MMAP_BYTES "1073741824" /* per reader connection; address space, not memory */

#define MAX_BODY       65536
#define COOKIE         "fw_session"
#define STREAM_WAIT_MS 15000

/* Latency buckets of the histogram, in seconds. */
static const double bucket_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5};
#define N_BUCKETS (sizeof bucket_s / sizeof bucket_s[0])

typedef struct route_stats {
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t errors;                /* answers 4xx and 5xx */
    atomic_uint_fast64_t bucket[N_BUCKETS + 1]; /* the last: +Inf */
    atomic_uint_fast64_t sum_us;
} route_stats_t;

struct funnel_web {
    const funnel_web_config_t *cfg;
    const funnel_log_t *log;
    struct MHD_Daemon *httpd;
    funnel_web_users_t *users;
    funnel_web_sessions_t *sessions;
    funnel_web_stream_t *stream;
    funnel_web_bus_t bus;
    funnel_report_funnel_t *funnel;   /* the funnel model, kept up to date per request */
    funnel_report_attr_model_t *attr; /* the attribution sums, likewise */
    pthread_t warm;                   /* reads both models once (funnel_web_model_ready),
                                         then runs the keeper until stopped */
    atomic_bool warming;              /* the thread was started (joined at the end) */
    pthread_mutex_t keep_lock;
    pthread_cond_t keep_wake; /* signalled with stopping set */
    bool stopping;
    atomic_bool ready[2];              /* per funnel_web_model_t: read whole once */
    funnel_report_quota_def_t *quotas; /* owned; from funneld's config */
    size_t n_quotas;
    funnel_web_cache_t *answers; /* answers kept while the database has not changed */
    pthread_mutex_t pool_lock;
    funnel_store_t **pool; /* idle read-only connections; owned */
    size_t n_pool;
    route_stats_t stats[FUNNEL_WEB_R_COUNT_];
};

/* Per request: when it started, the route, the body read so far. */
typedef struct req_state {
    funnel_web_t *web;
    bool recorded; /* counted in the metrics (when its answer was queued) */
    struct timespec t0;
    funnel_web_route_t route;
    unsigned status;
    char *body; /* owned */
    size_t len;
    bool too_big;
} req_state_t;

static const char *const route_names[FUNNEL_WEB_R_COUNT_] = {
    [FUNNEL_WEB_R_UNKNOWN] = "unknown",
    [FUNNEL_WEB_R_ASSET] = "asset",
    [FUNNEL_WEB_R_HEALTHZ] = "healthz",
    [FUNNEL_WEB_R_METRICS] = "metrics",
    [FUNNEL_WEB_R_LOGIN] = "login",
    [FUNNEL_WEB_R_LOGOUT] = "logout",
    [FUNNEL_WEB_R_ME] = "me",
    [FUNNEL_WEB_R_STREAM] = "stream",
    [FUNNEL_WEB_R_SLA_LIST] = "sla_list",
    [FUNNEL_WEB_R_SLA_SHOW] = "sla_show",
    [FUNNEL_WEB_R_SLA_ACK] = "sla_ack",
    [FUNNEL_WEB_R_SLA_COMPLIANCE] = "sla_compliance",
    [FUNNEL_WEB_R_SLA_FILTERS] = "sla_filters",
    [FUNNEL_WEB_R_QUOTA] = "quota",
    [FUNNEL_WEB_R_FUNNEL] = "funnel",
    [FUNNEL_WEB_R_ATTRIBUTION] = "attribution",
    [FUNNEL_WEB_R_STATEMENT] = "statement",
    [FUNNEL_WEB_R_REJECTED] = "rejected",
};

const char *funnel_web_route_name(funnel_web_route_t route)
{
    return route < FUNNEL_WEB_R_COUNT_ ? route_names[route] : "unknown";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- replies ------------------------------------------------------------------------------- */

static void record(req_state_t *st);

void funnel_web_reply_json(funnel_web_reply_t *r, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        funnel_web_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    free(r->body);
    r->status = status;
    r->content_type = "application/json";
    r->body = text;
    r->len = strlen(text);
}

void funnel_web_reply_error(funnel_web_reply_t *r, unsigned status, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    json_t *doc = json_pack("{s:s}", "error", why);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    free(r->body);
    r->status = status;
    r->content_type = "application/json";
    r->body = text;
    r->len = text ? strlen(text) : 0;
}

/* Headers every answer carries: nothing is framed, sniffed or loaded from elsewhere. */
static void security_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, req_state_t *st,
                                  funnel_web_reply_t *r, const char *cookie)
{
    if (!r->body)
        funnel_web_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    struct MHD_Response *resp =
        r->body ? MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp) {
        free(r->body);
        r->body = NULL;
        return MHD_NO;
    }
    r->body = NULL; /* the response owns it now */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->disposition)
        MHD_add_response_header(resp, "Content-Disposition", r->disposition);
    char retry[16];
    snprintf(retry, sizeof retry, "%u", r->retry_after_s);
    if (r->retry_after_s)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    char age[16];
    snprintf(age, sizeof age, "%u", r->age_s);
    if (r->behind) /* a kept answer from before funneld's last commit: how old */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_AGE, age);
    if (cookie)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    security_headers(resp);
    st->status = r->status;
    record(st);
    enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Queues resp as 200 with its type, caching rule and the security headers, and drops our
 * reference. */
static enum MHD_Result send_ok(struct MHD_Connection *conn, req_state_t *st,
                               struct MHD_Response *resp, const char *type, const char *cache)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
    security_headers(resp);
    st->status = MHD_HTTP_OK;
    record(st);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_asset(struct MHD_Connection *conn, req_state_t *st,
                                  const funnel_web_asset_t *a)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    return resp ? send_ok(conn, st, resp, a->content_type, "no-cache") : MHD_NO;
}

/* ---- the store pool ------------------------------------------------------------------------ */

funnel_store_t *funnel_web_store_get(funnel_web_t *web)
{
    funnel_store_t *st = NULL;
    pthread_mutex_lock(&web->pool_lock);
    if (web->n_pool)
        st = web->pool[--web->n_pool];
    pthread_mutex_unlock(&web->pool_lock);
    char err[512];
    if (st)
        return st;
    if (funnel_store_open(web->cfg->database, true, FUNNEL_STORE_SYNC_NORMAL, &st, err,
                          sizeof err)) {
        funnel_log_error(web->log, "database: %s", err);
        return NULL;
    }
    /* Reports scan whole tables (compliance reads every instance): mapped pages are read in
     * place from the OS cache instead of copied into each connection's own small cache. */
    sqlite3_exec(funnel_store_db(st), "PRAGMA mmap_size = " WEB_MMAP_BYTES, NULL, NULL, NULL);
    return st;
}

void funnel_web_store_put(funnel_web_t *web, funnel_store_t *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&web->pool_lock);
    if (web->n_pool < (size_t)web->cfg->readers) {
        web->pool[web->n_pool++] = st;
        st = NULL;
    }
    pthread_mutex_unlock(&web->pool_lock);
    funnel_store_destroy(&st); /* more readers at once than the pool keeps */
}

const funnel_web_bus_t *funnel_web_bus(const funnel_web_t *web)
{
    return &web->bus;
}

funnel_report_attr_model_t *funnel_web_attribution(const funnel_web_t *web)
{
    return web->attr;
}

funnel_report_funnel_t *funnel_web_funnel(const funnel_web_t *web)
{
    return web->funnel;
}

funnel_web_cache_t *funnel_web_answers(const funnel_web_t *web)
{
    return web->answers;
}

const funnel_report_quota_def_t *funnel_web_quotas(const funnel_web_t *web, size_t *n)
{
    *n = web->n_quotas;
    return web->quotas;
}

/* ---- requests ----------------------------------------------------------------------------- */

const char *funnel_web_arg(const funnel_web_req_t *req, const char *name)
{
    for (const char *const *a = req->conn ? NULL : req->args; a && *a; a += 2)
        if (!strcmp(a[0], name))
            return a[1];
    return req->conn ? MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

/* Who sent the request: a Bearer token, or a session cookie (then *csrf is the session's CSRF
 * token; empty for a token, which no browser sends by itself). 0 or FUNNEL_ENOTFOUND with why. */
static int authenticate(funnel_web_t *web, struct MHD_Connection *conn, int64_t now,
                        funnel_web_principal_t *who, char csrf[65], const char **why)
{
    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    csrf[0] = '\0';
    if (auth) {
        if (strncmp(auth, "Bearer ", 7) || funnel_web_users_token(web->users, auth + 7, who)) {
            *why = "invalid API token";
            return FUNNEL_ENOTFOUND;
        }
        return 0;
    }
    const char *sid = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
    if (!sid) {
        *why = "log in or send Authorization: Bearer TOKEN";
        return FUNNEL_ENOTFOUND;
    }
    if (funnel_web_sessions_find(web->sessions, sid, now, who->name, csrf)) {
        *why = "session expired; log in again";
        return FUNNEL_ENOTFOUND;
    }
    /* The role as the users file says now: a reload that removes a user ends their sessions. */
    if ((who->role = funnel_web_users_role(web->users, who->name)) == FUNNEL_WEB_ROLE_NONE) {
        *why = "user no longer exists";
        return FUNNEL_ENOTFOUND;
    }
    return 0;
}

static json_t *me_json(const funnel_web_principal_t *who, const char *csrf)
{
    return json_pack("{s:s, s:s, s:s}", "name", who->name, "role", funnel_web_role_name(who->role),
                     "csrf", csrf);
}

/* POST /api/v1/login {"name", "password"}: a session cookie and the CSRF token. JSON only, so a
 * cross-site form cannot log a browser in as someone else. */
static enum MHD_Result login(funnel_web_t *web, struct MHD_Connection *conn, req_state_t *st)
{
    funnel_web_reply_t r = {0};
    const char *type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    json_t *body = st->body ? json_loadb(st->body, st->len, 0, NULL) : NULL;
    const char *name = NULL, *password = NULL;
    funnel_web_principal_t who = {0};
    char sid[65], csrf[65], cookie[256];
    if (!type || strncmp(type, "application/json", 16)) {
        funnel_web_reply_error(&r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "send application/json");
    } else if (json_unpack(body, "{s:s, s:s}", "name", &name, "password", &password)) {
        funnel_web_reply_error(&r, MHD_HTTP_BAD_REQUEST, "send {\"name\": ..., \"password\": ...}");
    } else if (funnel_web_users_login(web->users, name, password, &who)) {
        funnel_log_warn(web->log, "login refused for '%.64s'", name);
        funnel_web_reply_error(&r, MHD_HTTP_UNAUTHORIZED, "wrong name or password");
    } else if (funnel_web_sessions_start(web->sessions, who.name, now_ms(), sid, csrf)) {
        funnel_web_reply_error(&r, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    } else {
        snprintf(cookie, sizeof cookie,
                 COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s", sid,
                 (long long)web->cfg->session_ttl_s, web->cfg->secure_cookies ? "; Secure" : "");
        funnel_web_reply_json(&r, MHD_HTTP_OK, me_json(&who, csrf));
        json_decref(body);
        return send_reply(conn, st, &r, cookie);
    }
    json_decref(body);
    return send_reply(conn, st, &r, NULL);
}

static enum MHD_Result logout(funnel_web_t *web, struct MHD_Connection *conn, req_state_t *st)
{
    const char *sid = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
    if (sid)
        funnel_web_sessions_end(web->sessions, sid);
    funnel_web_reply_t r = {0};
    funnel_web_reply_json(&r, MHD_HTTP_OK, json_pack("{s:b}", "ok", 1));
    return send_reply(conn, st, &r, COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
}

/* ---- the live stream (SSE) ---------------------------------------------------------------- */

typedef struct sse {
    funnel_web_t *web;
    funnel_web_principal_t who;
    uint64_t after;
    char *pending; /* owned: the frame being sent */
    size_t len, off;
} sse_t;

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    sse_t *s = cls;
    (void)pos;
    if (!s->pending) {
        char *frame = NULL;
        uint64_t seq = s->after;
        int rc =
            funnel_web_stream_next(s->web->stream, &s->who, s->after, STREAM_WAIT_MS, &frame, &seq);
        if (rc == FUNNEL_EBUS)
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->after = seq;
        /* A comment on a quiet stream: a browser that went away is noticed on the write. */
        s->pending = rc == 0 ? frame : strdup(": keep-alive\n\n");
        if (!s->pending)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        s->len = strlen(s->pending);
        s->off = 0;
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->pending + s->off, n);
    if ((s->off += n) == s->len) {
        free(s->pending);
        s->pending = NULL;
    }
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    sse_t *s = cls;
    free(s->pending);
    free(s);
}

/* GET /api/v1/stream: messages after Last-Event-ID (a reconnecting browser), or after the last
 * one seen now (a fresh page has just loaded its tables). */
static enum MHD_Result stream(funnel_web_t *web, struct MHD_Connection *conn, req_state_t *st,
                              const funnel_web_principal_t *who)
{
    const char *last = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    char *end = NULL;
    unsigned long long after = last ? strtoull(last, &end, 10) : 0;
    funnel_web_reply_t r = {0};
    if (last && (end == last || *end)) {
        funnel_web_reply_error(&r, MHD_HTTP_BAD_REQUEST, "Last-Event-ID: a sequence number");
        return send_reply(conn, st, &r, NULL);
    }
    sse_t *s = calloc(1, sizeof *s);
    if (!s)
        return MHD_NO;
    s->web = web;
    s->who = *who;
    s->after = last ? after : funnel_web_stream_last(web->stream);
    s->pending = strdup("retry: 1000\n: connected\n\n");
    s->len = s->pending ? strlen(s->pending) : 0;
    struct MHD_Response *resp =
        s->pending
            ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free)
            : NULL;
    if (!resp) {
        sse_free(s);
        return MHD_NO;
    }
    return send_ok(conn, st, resp, "text/event-stream", "no-store");
}

/* ---- metrics ------------------------------------------------------------------------------- */

static void render(FILE *out, void *arg)
{
    funnel_web_t *web = arg;
    funnel_prom_family(out, "funnel_web_requests_total", "counter", "HTTP requests per route");
    for (int i = 0; i < FUNNEL_WEB_R_COUNT_; i++)
        funnel_prom_u64(out, "funnel_web_requests_total", "route", route_names[i],
                        atomic_load(&web->stats[i].count));
    funnel_prom_family(out, "funnel_web_request_errors_total", "counter",
                       "HTTP answers 4xx or 5xx per route");
    for (int i = 0; i < FUNNEL_WEB_R_COUNT_; i++)
        funnel_prom_u64(out, "funnel_web_request_errors_total", "route", route_names[i],
                        atomic_load(&web->stats[i].errors));
    funnel_prom_family(out, "funnel_web_cache_hits_total", "counter",
                       "answers served from the cache, the database unchanged since");
    funnel_prom_u64(out, "funnel_web_cache_hits_total", NULL, NULL,
                    web->answers ? funnel_web_cache_hits(web->answers) : 0);
    funnel_prom_family(out, "funnel_web_answers_kept_total", "counter",
                       "the page's default answers computed in the background (keeper.c)");
    funnel_prom_u64(out, "funnel_web_answers_kept_total", NULL, NULL,
                    web->answers ? funnel_web_cache_kept(web->answers) : 0);
    funnel_prom_family(out, "funnel_web_request_seconds", "histogram",
                       "time from a request's headers to its answer being queued (a stream: to "
                       "its start)");
    for (int i = 0; i < FUNNEL_WEB_R_COUNT_; i++) {
        const route_stats_t *s = &web->stats[i];
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += atomic_load(&s->bucket[b]);
            if (b < N_BUCKETS)
                fprintf(out, "funnel_web_request_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                        route_names[i], bucket_s[b], (unsigned long long)cum);
            else
                fprintf(out, "funnel_web_request_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                        route_names[i], (unsigned long long)cum);
        }
        fprintf(out, "funnel_web_request_seconds_sum{route=\"%s\"} %.6f\n", route_names[i],
                (double)atomic_load(&s->sum_us) / 1e6);
        fprintf(out, "funnel_web_request_seconds_count{route=\"%s\"} %llu\n", route_names[i],
                (unsigned long long)cum);
    }
}

/* Counts a request in the metrics once, when its answer is queued (so a scrape after an answer
 * sees it), or when it ended without one. */
static void record(req_state_t *st)
{
    if (st->recorded)
        return;
    st->recorded = true;
    funnel_web_t *web = st->web;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t us =
        (uint64_t)((t1.tv_sec - st->t0.tv_sec) * 1000000LL + (t1.tv_nsec - st->t0.tv_nsec) / 1000);
    route_stats_t *s = &web->stats[st->route];
    size_t b = 0;
    while (b < N_BUCKETS && (double)us / 1e6 > bucket_s[b])
        b++;
    atomic_fetch_add(&s->count, 1);
    atomic_fetch_add(&s->bucket[b], 1);
    atomic_fetch_add(&s->sum_us, us);
    if (st->status >= 400)
        atomic_fetch_add(&s->errors, 1);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

/* An authenticated /api/v1/ request other than login and logout. Writes need the session's
 * CSRF token in X-CSRF-Token (a Bearer token is never sent by a browser on its own). */
static enum MHD_Result api(funnel_web_t *web, struct MHD_Connection *conn, const char *url,
                           const char *method, req_state_t *st)
{
    funnel_web_reply_t r = {0};
    funnel_web_principal_t who = {0};
    char csrf[65];
    const char *why = NULL;
    int64_t now = now_ms();
    const char *sub = url + strlen("/api/v1/");
    bool write = strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD);
    int auth = authenticate(web, conn, now, &who, csrf, &why);
    if (auth && !write && !strcmp(sub, "me")) {
        /* The page asks who it is before it shows the login form: not an error. */
        st->route = FUNNEL_WEB_R_ME;
        funnel_web_reply_json(&r, MHD_HTTP_OK, json_pack("{s:n, s:s}", "name", "reason", why));
        return send_reply(conn, st, &r, NULL);
    }
    if (auth) {
        st->route = FUNNEL_WEB_R_UNKNOWN;
        funnel_web_reply_error(&r, MHD_HTTP_UNAUTHORIZED, "%s", why);
        return send_reply(conn, st, &r, NULL);
    }
    const char *sent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
    if (write && csrf[0] && (!sent || strlen(sent) != 64 || memcmp(sent, csrf, 64))) {
        funnel_web_reply_error(&r, MHD_HTTP_FORBIDDEN, "missing or wrong X-CSRF-Token");
        return send_reply(conn, st, &r, NULL);
    }
    if (!strcmp(sub, "me") && !write) {
        st->route = FUNNEL_WEB_R_ME;
        funnel_web_reply_json(&r, MHD_HTTP_OK, me_json(&who, csrf));
        return send_reply(conn, st, &r, NULL);
    }
    if (!strcmp(sub, "stream") && !write) {
        st->route = FUNNEL_WEB_R_STREAM;
        return stream(web, conn, st, &who);
    }
    funnel_web_req_t req = {
        .web = web, .conn = conn, .method = method, .path = url, .who = &who, .now_ms = now};
    st->route = funnel_web_api(&req, sub, &r);
    return send_reply(conn, st, &r, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    funnel_web_t *web = cls;
    (void)version;
    req_state_t *st = *state;
    if (!st) { /* the headers: the body (if any) follows in the next calls */
        if (!(st = calloc(1, sizeof *st)))
            return MHD_NO;
        st->web = web;
        clock_gettime(CLOCK_MONOTONIC, &st->t0);
        *state = st;
        return MHD_YES;
    }
    if (*upload_len) {
        if (st->len + *upload_len > MAX_BODY) {
            st->too_big = true;
        } else {
            char *grown = realloc(st->body, st->len + *upload_len + 1);
            if (!grown)
                return MHD_NO;
            memcpy(grown + st->len, upload, *upload_len);
            st->body = grown;
            st->len += *upload_len;
            st->body[st->len] = '\0';
        }
        *upload_len = 0;
        return MHD_YES;
    }
    funnel_web_reply_t r = {0};
    if (st->too_big) {
        funnel_web_reply_error(&r, MHD_HTTP_CONTENT_TOO_LARGE, "body over %d bytes", MAX_BODY);
        return send_reply(conn, st, &r, NULL);
    }
    bool get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
    if (get && (!strcmp(url, "/healthz") || !strcmp(url, "/metrics"))) {
        st->route = url[1] == 'h' ? FUNNEL_WEB_R_HEALTHZ : FUNNEL_WEB_R_METRICS;
        st->status = MHD_HTTP_OK;
        record(st);
        return funnel_prom_answer(conn, method, url, render, web) == MHD_YES ? MHD_YES : MHD_NO;
    }
    const funnel_web_asset_t *asset = get ? funnel_web_asset_find(url) : NULL;
    if (asset) {
        st->route = FUNNEL_WEB_R_ASSET;
        return send_asset(conn, st, asset);
    }
    if (post && !strcmp(url, "/api/v1/login")) {
        st->route = FUNNEL_WEB_R_LOGIN;
        return login(web, conn, st);
    }
    if (post && !strcmp(url, "/api/v1/logout")) {
        st->route = FUNNEL_WEB_R_LOGOUT;
        return logout(web, conn, st);
    }
    if (!strncmp(url, "/api/v1/", 8) && (get || post))
        return api(web, conn, url, method, st);
    funnel_web_reply_error(&r, get || post ? MHD_HTTP_NOT_FOUND : MHD_HTTP_METHOD_NOT_ALLOWED,
                           "no such resource: %s %s", method, url);
    return send_reply(conn, st, &r, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode code)
{
    req_state_t *st = *state;
    (void)cls;
    (void)conn;
    (void)code;
    if (!st)
        return;
    record(st);
    free(st->body);
    free(st);
    *state = NULL;
}

/* ---- life ---------------------------------------------------------------------------------- */

/* Runs the keeper (keeper.c) every FUNNEL_WEB_KEEP_POLL_MS until funnel-web stops. */
static void keep(funnel_web_t *web)
{
    pthread_mutex_lock(&web->keep_lock);
    while (!web->stopping) {
        pthread_mutex_unlock(&web->keep_lock);
        funnel_web_keep(web, now_ms());
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += FUNNEL_WEB_KEEP_POLL_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&web->keep_lock);
        if (!web->stopping)
            pthread_cond_timedwait(&web->keep_wake, &web->keep_lock, &until);
    }
    pthread_mutex_unlock(&web->keep_lock);
}

/* Reads every recorded event and posting into the funnel and attribution models once at start,
 * so the first person to open the page does not wait for it (requests meanwhile wait on the
 * models' locks), then keeps the page's default answers computed. A failure is logged; the
 * next request retries where it stopped. */
static void *warm_up(void *arg)
{
    funnel_web_t *web = arg;
    funnel_store_t *st = funnel_web_store_get(web);
    char err[512] = "";
    funnel_report_attr_t none = {.by = "campaign", .from = 0, .to = 0};
    int rc = st ? funnel_report_funnel_refresh(web->funnel, st) : FUNNEL_ESTORE;
    /* Ready even after a failure: each request then refreshes the model itself, going on where
     * this read stopped, and reports the failure to its caller rather than waiting forever. */
    atomic_store(&web->ready[FUNNEL_WEB_M_FUNNEL], true);
    rc = rc ? rc : funnel_report_attribution(web->attr, st, &none, err, sizeof err);
    atomic_store(&web->ready[FUNNEL_WEB_M_ATTRIBUTION], true);
    if (rc)
        funnel_log_warn(web->log, "warming the report models: %s %s", funnel_strerror(rc), err);
    funnel_web_store_put(web, st);
    if (web->answers)
        keep(web);
    return NULL;
}

/* Starts the warm-up thread once, whoever asks first. Without a thread (pthread_create failed)
 * the models count as ready: requests read them themselves, as slowly as that is. */
static void warm_start(funnel_web_t *web)
{
    bool started = false;
    if (!atomic_compare_exchange_strong(&web->warming, &started, true))
        return;
    if (pthread_create(&web->warm, NULL, warm_up, web)) {
        atomic_store(&web->warming, false);
        atomic_store(&web->ready[FUNNEL_WEB_M_FUNNEL], true);
        atomic_store(&web->ready[FUNNEL_WEB_M_ATTRIBUTION], true);
    }
}

bool funnel_web_model_ready(funnel_web_t *web, funnel_web_model_t model)
{
    if (atomic_load(&web->ready[model]))
        return true;
    warm_start(web);
    return atomic_load(&web->ready[model]);
}

void funnel_web_reload(funnel_web_t *web)
{
    char err[512];
    if (funnel_web_users_reload(web->users, err, sizeof err))
        funnel_log_error(web->log, "users not reloaded, the old ones stay: %s", err);
    else
        funnel_log_info(web->log, "users reloaded from %s", web->cfg->users);
}

int funnel_web_new(const funnel_web_config_t *cfg, const funnel_log_t *log, funnel_web_t **out)
{
    funnel_web_t *web = calloc(1, sizeof *web);
    if (!web)
        return FUNNEL_ENOMEM;
    web->cfg = cfg;
    web->log = log;
    web->bus =
        (funnel_web_bus_t){cfg->submit, cfg->publish,   cfg->replay, (int)cfg->submit_timeout_ms,
                           cfg->key,    cfg->server_key};
    pthread_mutex_init(&web->pool_lock, NULL);
    pthread_mutex_init(&web->keep_lock, NULL);
    pthread_cond_init(&web->keep_wake, NULL);
    char err[512];
    int rc = FUNNEL_ENOMEM;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->listen_addr, &addr.sin_addr) != 1) {
        funnel_log_error(log, "listen_addr '%s' is not an IPv4 address", cfg->listen_addr);
        rc = FUNNEL_ECONFIG;
        goto fail;
    }
    if (!(web->pool = calloc((size_t)cfg->readers, sizeof *web->pool)))
        goto fail;
    if ((rc = funnel_web_users_new(cfg->users, &web->users, err, sizeof err))) {
        funnel_log_error(log, "users: %s", err);
        goto fail;
    }
    if ((rc = funnel_web_sessions_new(cfg->session_ttl_s * 1000, &web->sessions)) ||
        (rc = funnel_report_funnel_new(&web->funnel)) ||
        (rc = funnel_report_attr_model_new(&web->attr)))
        goto fail;
    if (*cfg->funneld_config && (rc = funnel_report_quota_defs(cfg->funneld_config, &web->quotas,
                                                               &web->n_quotas, err, sizeof err))) {
        funnel_log_error(log, "funneld_config: %s", err);
        goto fail;
    }
    funnel_store_t *st = funnel_web_store_get(web);
    if (!st) {
        rc = FUNNEL_EIO;
        goto fail;
    }
    rc = funnel_web_stream_new(&web->bus, st, (size_t)cfg->stream_backlog, log, &web->stream);
    funnel_web_store_put(web, st);
    if (rc)
        goto fail;
    if (cfg->answers_cache &&
        funnel_web_cache_new(cfg->database, cfg->answers_max_age_ms, &web->answers))
        funnel_log_warn(log, "no answers cache: each compliance request reads every instance");
    if (cfg->warm_up)
        warm_start(web);
    web->httpd = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
        (uint16_t)cfg->port, NULL, NULL, on_request, web, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, web,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->max_connections,
        /* an idle or trickling connection is closed; a live stream writes a comment every
         * STREAM_WAIT_MS, well within it */
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (!web->httpd) {
        funnel_log_error(log, "cannot listen on %s:%lld", cfg->listen_addr, (long long)cfg->port);
        rc = FUNNEL_EIO;
        goto fail;
    }
    funnel_log_info(log, "listening on http://%s:%d/, database %s, funneld %s", cfg->listen_addr,
                    funnel_web_port(web), cfg->database, cfg->submit);
    *out = web;
    return 0;
fail:
    funnel_web_destroy(&web);
    return rc;
}

void funnel_web_destroy(funnel_web_t **wp)
{
    funnel_web_t *web = *wp;
    if (!web)
        return;
    /* Streams end first, so stopping the HTTP daemon does not wait for their keep-alives. */
    if (web->stream)
        funnel_web_stream_stop(web->stream);
    if (web->httpd)
        MHD_stop_daemon(web->httpd);
    pthread_mutex_lock(&web->keep_lock);
    web->stopping = true;
    pthread_cond_signal(&web->keep_wake);
    pthread_mutex_unlock(&web->keep_lock);
    if (atomic_load(&web->warming))
        pthread_join(web->warm, NULL);
    funnel_web_stream_destroy(&web->stream);
    for (size_t i = 0; i < web->n_pool; i++)
        funnel_store_destroy(&web->pool[i]);
    free(web->pool);
    funnel_web_sessions_destroy(&web->sessions);
    funnel_report_funnel_destroy(&web->funnel);
    funnel_report_attr_model_destroy(&web->attr);
    funnel_web_cache_destroy(&web->answers);
    free(web->quotas);
    funnel_web_users_destroy(&web->users);
    pthread_mutex_destroy(&web->pool_lock);
    pthread_cond_destroy(&web->keep_wake);
    pthread_mutex_destroy(&web->keep_lock);
    free(web);
    *wp = NULL;
}

int funnel_web_port(const funnel_web_t *web)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(web->httpd, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : -1;
}
