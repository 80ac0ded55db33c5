/* alert.c — funnel-alert's loop: follow, render, route, deliver with retries, dead-letter.
 *
 * The callback of funnel_client_follow does the whole delivery of one message before it
 * returns, so the cursor (advanced by the client library when the callback returns >= 0)
 * never passes a message that was neither delivered nor dead-lettered. A stop signal during a
 * retry pause returns < 0: the message stays before the cursor and is sent by the next run. */
#include "alert.h"

#include "funnel/client.h"
#include "funnel/codec.h"
#include "funnel/error.h"
#include "funnel/json.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct alert {
    const funnel_alert_config_t *cfg;
    const funnel_log_t *log;
    const sigset_t *stop;
    funnel_alert_metrics_t *metrics; /* NULL when off */
    CURL *curl;
    unsigned int seed; /* for the retry jitter (rand_r) */
    bool stopping;     /* a stop signal arrived */
    int fatal;         /* a FUNNEL_E* that ends the run (dead letter or cursor unwritable) */
} alert_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to ms for a stop signal; true (and stopping set) when one came. Doubles as the
 * retry pause, so a stop never waits for a backoff to run out. */
static bool stop_wait(alert_t *a, int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    int sig;
    do
        sig = sigtimedwait(a->stop, NULL, &ts);
    while (sig < 0 && errno == EINTR);
    if (sig > 0)
        a->stopping = true;
    return a->stopping;
}

/* ---- text ------------------------------------------------------------------------------- */

/* "3d 4h", "2h 5m", "5m 3s", "12s", "400ms". */
static void duration_text(int64_t ms, char *out, size_t len)
{
    int64_t s = ms / 1000, d = s / 86400, h = s % 86400 / 3600, m = s % 3600 / 60;
    if (d)
        snprintf(out, len, "%lldd %lldh", (long long)d, (long long)h);
    else if (h)
        snprintf(out, len, "%lldh %lldm", (long long)h, (long long)m);
    else if (m)
        snprintf(out, len, "%lldm %llds", (long long)m, (long long)(s % 60));
    else if (s)
        snprintf(out, len, "%llds", (long long)s);
    else
        snprintf(out, len, "%lldms", (long long)ms);
}

/* A proto3 JSON int64 (a decimal string) or integer member. */
static int64_t int64_at(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v)  ? json_integer_value(v)
           : json_is_string(v) ? strtoll(json_string_value(v), NULL, 10)
                               : 0;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : dflt;
}

/* An SLA message: what is late (or due), by how much, whose it is, which level. A warning or
 * an escalation is late (or due) as of now_ms; sla.met tells how it ended, in business time
 * (late_ms), however late it is delivered. */
static void sla_text(const char *topic, const json_t *body, const json_t *sla, int64_t now_ms,
                     char *text, size_t len)
{
    char dur[32], state[48], lvl[48] = "";
    if (!strcmp(topic, "sla.met")) {
        duration_text(int64_at(body, "lateMs"), dur, sizeof dur);
        /* expired: the retention horizon closed it; late_ms says nothing of a stop. */
        if (json_is_true(json_object_get(body, "expired")))
            snprintf(state, sizeof state, "expired unstopped (counted as breached)");
        else if (json_is_true(json_object_get(body, "onTime")))
            snprintf(state, sizeof state, "met on time");
        else
            snprintf(state, sizeof state, "met late by %s", dur);
    } else {
        int64_t late = now_ms - int64_at(sla, "dueAtMs");
        duration_text(late >= 0 ? late : -late, dur, sizeof dur);
        snprintf(state, sizeof state, "%s %s", late >= 0 ? "late by" : "due in", dur);
    }
    int64_t level = int64_at(body, "level"), repeat = int64_at(body, "repeat");
    int at = level ? snprintf(lvl, sizeof lvl, ", level %lld", (long long)level) : 0;
    if (repeat)
        snprintf(lvl + at, sizeof lvl - (size_t)at, ", repeat %lld", (long long)repeat);
    snprintf(text, len, "[%s] %s: %s %s, owner %s%s", topic, str_or(sla, "policy", "SLA"),
             str_or(sla, "key", "?"), state, str_or(sla, "owner", "unassigned"), lvl);
}

/* Any other message: its scalar body fields, as far as they fit. */
static void generic_text(const char *topic, const json_t *body, char *text, size_t len)
{
    size_t at = (size_t)snprintf(text, len, "[%s]", topic);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        char num[32];
        const char *s = json_string_value(v);
        if (json_is_integer(v))
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v)), s = num;
        if (s && at < len)
            at += (size_t)snprintf(text + at, len - at, " %s=%s", key, s);
    }
}

/* Cuts text back to its longest valid UTF-8 prefix. snprintf cuts a long value at a byte
 * count, possibly inside a character, and half a character makes the text invalid UTF-8,
 * which no JSON document (the delivery, the dead letter) can carry. */
static void utf8_trim(char *text)
{
    text[funnel_utf8_valid_len(text, strlen(text))] = '\0';
}

int funnel_alert_text(const char *topic, const json_t *env, int64_t now_ms, char *text,
                      size_t text_len, char *target, size_t target_len)
{
    const char *key;
    const json_t *v, *body = NULL;
    /* The oneof body is the envelope's one object member. */
    json_object_foreach((json_t *)env, key, v)
    {
        if (json_is_object(v))
            body = v;
    }
    if (!body)
        return FUNNEL_EINVAL;
    const json_t *sla = json_object_get(body, "sla");
    const char *t = str_or(body, "notify", NULL);
    t = t ? t : str_or(sla, "owner", NULL);
    t = t ? t : str_or(body, "owner", NULL);
    t = t ? t : str_or(body, "rep", "");
    snprintf(target, target_len, "%s", t);
    if (json_is_object(sla))
        sla_text(topic, body, sla, now_ms, text, text_len);
    else
        generic_text(topic, body, text, text_len);
    utf8_trim(text);
    utf8_trim(target);
    return 0;
}

/* ---- delivery ----------------------------------------------------------------------------- */

/* Response bodies are not needed (only the status is), and libcurl would print them. */
static size_t discard(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* POSTs a JSON document; 0 on a 2xx answer, else FUNNEL_EAGAIN with why. */
static int http_post(alert_t *a, const char *url, const json_t *doc, uint64_t seq, char *why,
                     size_t why_len)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    char seq_hdr[48];
    struct curl_slist *h = NULL;
    long status = 0;
    if (!body)
        return FUNNEL_ENOMEM;
    /* Receivers that can deduplicate get the sequence as an idempotency key. */
    snprintf(seq_hdr, sizeof seq_hdr, "X-Funnel-Seq: %llu", (unsigned long long)seq);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, seq_hdr);
    curl_easy_reset(a->curl);
    curl_easy_setopt(a->curl, CURLOPT_URL, url);
    curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, (long)a->cfg->http_timeout_ms);
    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(a->curl);
    curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    free(body);
    if (rc != CURLE_OK)
        snprintf(why, why_len, "%s", curl_easy_strerror(rc));
    else if (status < 200 || status > 299)
        snprintf(why, why_len, "HTTP %ld", status);
    else
        return 0;
    return FUNNEL_EAGAIN;
}

/* The route of a target: its own, else the "*" route; NULL when neither exists. */
static const funnel_alert_route_t *route_of(const funnel_alert_config_t *cfg, const char *target)
{
    const funnel_alert_route_t *any = NULL;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        if (!strcmp(cfg->routes[i].target, target))
            return &cfg->routes[i];
        if (!any && !strcmp(cfg->routes[i].target, "*"))
            any = &cfg->routes[i];
    }
    return any;
}

static const funnel_alert_channel_t *channel_of(const funnel_alert_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_channels; i++)
        if (!strcmp(cfg->channels[i].name, name))
            return &cfg->channels[i];
    return NULL;
}

/* text as Slack must receive it: its formatting reads <...> as a link or a mention
 * (<!channel> pings everyone) and & as the start of an entity, so &, < and > are sent as
 * &amp;, &lt; and &gt;, the three escapes Slack documents. The templates around the values
 * contain none of the three, so escaping the whole text escapes exactly what came from the
 * event. Returns a malloc'd string (caller frees) or NULL. */
static char *slack_escape(const char *text)
{
    size_t len = strlen(text), o = 0;
    char *out = len < SIZE_MAX / 5 ? malloc(len * 5 + 1) : NULL;
    for (size_t i = 0; out && i < len; i++) {
        const char *e = text[i] == '&'   ? "&amp;"
                        : text[i] == '<' ? "&lt;"
                        : text[i] == '>' ? "&gt;"
                                         : NULL;
        if (e) {
            memcpy(out + o, e, strlen(e));
            o += strlen(e);
        } else {
            out[o++] = text[i];
        }
    }
    if (out)
        out[o] = '\0';
    return out;
}

/* One attempt at a delivery through ch. Telegram gets no parse_mode, so it shows the text
 * as plain text whatever it holds; the generic webhook's receiver escapes for its own sink. */
static int deliver_once(alert_t *a, const funnel_alert_channel_t *ch, const funnel_alert_route_t *r,
                        uint64_t seq, const char *topic, const char *target, const char *text,
                        const json_t *env, char *why, size_t why_len)
{
    json_t *doc = NULL;
    char url[2048];
    snprintf(url, sizeof url, "%s", ch->url);
    if (ch->kind == FUNNEL_CHANNEL_SLACK) {
        char *safe = slack_escape(text);
        doc = safe ? json_pack("{s:s}", "text", safe) : NULL;
        free(safe);
    } else if (ch->kind == FUNNEL_CHANNEL_TELEGRAM) {
        snprintf(url, sizeof url, "%s/bot%s/sendMessage", ch->url, ch->bot_token);
        doc = json_pack("{s:s, s:s}", "chat_id", r->chat_id, "text", text);
    } else {
        doc = json_pack("{s:I, s:s, s:s, s:s, s:O}", "seq", (json_int_t)seq, "topic", topic,
                        "target", target, "text", text, "event", env);
    }
    int rc = doc ? http_post(a, url, doc, seq, why, why_len) : FUNNEL_ENOMEM;
    json_decref(doc);
    return rc;
}

/* Appends one JSON line to the dead-letter file and syncs it: the cursor moves past the
 * message right after, so the line must be on disk first. */
static int dead_letter(alert_t *a, uint64_t seq, const char *topic, const char *target,
                       const char *text, const char *why)
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I}", "seq", (json_int_t)seq, "topic", topic,
                          "target", target, "text", text, "reason", why, "failedAtMs",
                          (json_int_t)wall_ms());
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line)
        return FUNNEL_ENOMEM;
    int fd = open(a->cfg->dead_letter, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    size_t n = strlen(line);
    line[n] = '\n';
    int rc = fd >= 0 && write(fd, line, n + 1) == (ssize_t)(n + 1) && !fsync(fd) ? 0 : FUNNEL_EIO;
    if (fd >= 0)
        close(fd);
    free(line);
    if (!rc)
        funnel_alert_metrics_count(a->metrics, FUNNEL_ALERT_DEAD_LETTERED, 0);
    funnel_log_error(a->log, "dead-lettered seq %llu (%s, target '%s'): %s%s",
                     (unsigned long long)seq, topic, target, why,
                     rc ? "; and the dead-letter file could not be written" : "");
    return rc;
}

/* Pause before attempt n (1-based, n >= 2): backoff * 2^(n-2), capped, times a random factor
 * in [0.5, 1), so adapters restarted together do not retry in step. */
static int64_t backoff_of(alert_t *a, int n)
{
    int64_t d = a->cfg->backoff_ms;
    for (int i = 2; i < n && d < a->cfg->backoff_max_ms; i++)
        d *= 2;
    d = d < a->cfg->backoff_max_ms ? d : a->cfg->backoff_max_ms;
    return d / 2 + (int64_t)(rand_r(&a->seed) % (unsigned)(d / 2 + 1));
}

/* The retry pause, shown as the backoff gauge while it lasts; true when a stop came. */
static bool retry_pause(alert_t *a, int64_t ms)
{
    funnel_alert_metrics_backoff(a->metrics, ms);
    bool stopped = stop_wait(a, ms);
    funnel_alert_metrics_backoff(a->metrics, 0);
    return stopped;
}

/* Delivers with retries; 0 once delivered or dead-lettered, < 0 to leave it for later. */
static int deliver(alert_t *a, uint64_t seq, const char *topic, const json_t *env)
{
    char text[512], target[FUNNEL_ID_MAX + 1], why[256] = "no route for the target";
    if (funnel_alert_text(topic, env, wall_ms(), text, sizeof text, target, sizeof target))
        return dead_letter(a, seq, topic, "", "", "no body in the envelope");
    const funnel_alert_route_t *r = route_of(a->cfg, target);
    const funnel_alert_channel_t *ch = r ? channel_of(a->cfg, r->channel) : NULL;
    size_t c = ch ? (size_t)(ch - a->cfg->channels) : 0;
    for (int n = 1; ch && n <= a->cfg->max_attempts; n++) {
        if (n > 1 && retry_pause(a, backoff_of(a, n)))
            return -1;
        funnel_alert_metrics_count(a->metrics, FUNNEL_ALERT_ATTEMPTED, c);
        if (n > 1)
            funnel_alert_metrics_count(a->metrics, FUNNEL_ALERT_RETRIED, 0);
        int rc = deliver_once(a, ch, r, seq, topic, target, text, env, why, sizeof why);
        funnel_alert_metrics_count(a->metrics, rc ? FUNNEL_ALERT_FAILED : FUNNEL_ALERT_SUCCEEDED,
                                   c);
        if (!rc) {
            funnel_log_info(a->log, "delivered seq %llu (%s) to %s: %s", (unsigned long long)seq,
                            topic, ch->name, text);
            return 0;
        }
        funnel_log_warn(a->log, "delivery of seq %llu to %s failed (attempt %d of %lld): %s",
                        (unsigned long long)seq, ch->name, n, (long long)a->cfg->max_attempts, why);
    }
    return dead_letter(a, seq, topic, target, text, why);
}

/* The index of the first prefix topic starts with, or n_prefixes when none. */
static size_t prefix_match(const funnel_alert_config_t *cfg, const char *topic)
{
    size_t i = 0;
    while (i < cfg->n_prefixes && strncmp(topic, cfg->prefixes[i], strlen(cfg->prefixes[i])))
        i++;
    return i;
}

static int on_message(uint64_t seq, const char *topic, const uint8_t *bytes, size_t len, void *arg)
{
    alert_t *a = arg;
    if (stop_wait(a, 0))
        return -1;
    size_t p = prefix_match(a->cfg, topic);
    if (p == a->cfg->n_prefixes) {
        funnel_alert_metrics_cursor(a->metrics, seq);
        return 0;
    }
    funnel_alert_metrics_count(a->metrics, FUNNEL_ALERT_RECEIVED, p);
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, len, bytes);
    json_t *j = env ? funnel_json_from_message(&env->base) : NULL;
    int rc =
        j ? deliver(a, seq, topic, j) : dead_letter(a, seq, topic, "", "", "undecodable envelope");
    json_decref(j);
    funnel_envelope_free(&env);
    if (rc < 0 && !a->stopping)
        a->fatal = rc;
    if (rc >= 0) /* the client library records it in the cursor file right after */
        funnel_alert_metrics_cursor(a->metrics, seq);
    return rc < 0 ? -1 : 0;
}

int funnel_alert_run(const funnel_alert_config_t *cfg, const funnel_log_t *log,
                     const sigset_t *stop, funnel_alert_metrics_t *metrics)
{
    alert_t a = {.cfg = cfg, .log = log, .stop = stop, .metrics = metrics};
    funnel_client_t *client = NULL;
    uint64_t cursor;
    int rc = FUNNEL_ENOMEM;
    if (!funnel_cursor_load(cfg->cursor, &cursor)) /* an unreadable one fails the follow */
        funnel_alert_metrics_cursor(metrics, cursor);
    if (getrandom(&a.seed, sizeof a.seed, 0) != sizeof a.seed)
        a.seed = (unsigned int)wall_ms();
    if (!(a.curl = curl_easy_init()) || (rc = funnel_client_new(&client)))
        goto done;
    char err[512];
    if ((rc = funnel_client_set_curve(client, cfg->key, cfg->server_key, err, sizeof err))) {
        funnel_log_error(log, "key, server_key: %s", err);
        goto done;
    }
    funnel_follow_options_t o = {
        .prefix = cfg->n_prefixes == 1 ? cfg->prefixes[0] : "",
        .idle_timeout_ms = 1000, /* comes back to look at the stop signals */
        .request_timeout_ms = 5000,
        .cursor_path = cfg->cursor,
    };
    funnel_log_info(log, "following %s%s from the cursor in %s", cfg->publish,
                    cfg->key[0] ? " with CURVE" : "", cfg->cursor);
    rc = 0;
    while (!a.stopping && !a.fatal) {
        rc = funnel_client_follow(client, cfg->publish, cfg->replay, &o, on_message, &a);
        if (rc == FUNNEL_EIO) {
            funnel_log_error(log, "cursor file %s: cannot read or write it", cfg->cursor);
            a.fatal = rc;
        } else if (rc < 0 && !a.stopping && !a.fatal) {
            /* funneld restarting or unreachable: the client replays from the cursor. */
            const char *hint = funnel_client_error(client);
            funnel_log_warn(log, "following funneld: %s%s%s; retrying", funnel_strerror(rc),
                            hint[0] ? ": " : "", hint);
            stop_wait(&a, 1000);
        } else {
            stop_wait(&a, 0);
        }
    }
    rc = a.fatal;
done:
    funnel_client_destroy(&client);
    if (a.curl)
        curl_easy_cleanup(a.curl);
    return rc;
}
