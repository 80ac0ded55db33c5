/* test_alert.c — funnel-alert (the real executable) against a real funneld and a local HTTP
 * receiver that fails several times before it accepts: every message delivered exactly once,
 * across restarts of the adapter and of funneld; dead letters after max_attempts; message
 * text and routing. */
#include "alert.h"
#include "curve_fx.h"
#include "harness.h"
#include "sql_fx.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_HITS 64

/* What the receiver saw. */
typedef struct hit {
    char path[128];
    char body[1024];
    unsigned long long seq; /* X-Funnel-Seq */
    unsigned status;        /* what it answered */
} hit_t;

typedef struct receiver {
    struct MHD_Daemon *httpd;
    int port;
    pthread_mutex_t lock;
    int fail_left; /* answer 500 this many more times */
    hit_t hits[MAX_HITS];
    size_t n_hits;
    char buf[1024]; /* the request body being received (one request at a time) */
    size_t len;
} receiver_t;

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static receiver_t rx;       /* every channel's receiver ... */
static receiver_t slack_rx; /* ... but the Slack one's when this one is started */
static pid_t alert_pid;
static char conf[300], cursor[300], dead[300], ready[300], daemon_conf[300];

/* funneld's SLA policy, on the 24x7 calendar in real time: the warning at half the 1 s target,
 * level 1 at the due time for the team lead, level 2 a second later for the head of sales. */
static const char sla_policy[] =
    "sla = {\n"
    "  policies = ( {\n"
    "    name = \"first-contact\"; start = \"lead.qualified stage=SQL\"; key = \"lead_id\";\n"
    "    stop = [\"lead.contacted\"]; target = \"1s\"; calendar = \"24x7\"; warning = \"50%\";\n"
    "    escalation = ( { after = \"0\"; notify = \"team-lead\"; },\n"
    "                   { after = \"1s\"; notify = \"head-of-sales\"; } );\n"
    "  } );\n"
    "  late_grace = \"0\";\n" /* a warning due 0.5 s after the start comes then, not after 60 s */
    "};\n";

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    receiver_t *r = cls;
    (void)method;
    (void)version;
    if (!*state) {
        *state = r;
        r->len = 0;
        return MHD_YES;
    }
    if (*upload_len) {
        size_t n = *upload_len < sizeof r->buf - 1 - r->len ? *upload_len : 0;
        memcpy(r->buf + r->len, upload, n);
        r->len += n;
        r->buf[r->len] = '\0';
        *upload_len = 0;
        return MHD_YES;
    }
    const char *seq = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Funnel-Seq");
    pthread_mutex_lock(&r->lock);
    unsigned status = r->fail_left > 0 ? 500 : 200;
    r->fail_left -= r->fail_left > 0;
    if (r->n_hits < MAX_HITS) {
        hit_t *h = &r->hits[r->n_hits++];
        snprintf(h->path, sizeof h->path, "%s", url);
        snprintf(h->body, sizeof h->body, "%s", r->buf);
        h->seq = seq ? strtoull(seq, NULL, 10) : 0;
        h->status = status;
    }
    pthread_mutex_unlock(&r->lock);
    struct MHD_Response *resp = MHD_create_response_from_buffer(2, "{}", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void receiver_start(receiver_t *r, int fail)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->fail_left = fail;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    r->httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, r,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_END);
    cr_assert_not_null(r->httpd);
    r->port = MHD_get_daemon_info(r->httpd, MHD_DAEMON_INFO_BIND_PORT)->port;
}

/* Successful deliveries so far. */
static size_t delivered(receiver_t *r)
{
    size_t n = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n_hits; i++)
        n += r->hits[i].status == 200;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static bool wait_for(receiver_t *r, size_t (*what)(receiver_t *), size_t want, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (what(r) >= want)
            return true;
        usleep(20000);
    }
    return what(r) >= want;
}

/* Waits until the adapter's cursor file says `want`: it saves the cursor only after a message
 * is delivered, so every delivery (and any repeat of one) up to want has happened by then. */
static bool wait_cursor(uint64_t want, int timeout_ms)
{
    uint64_t at = 0;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (funnel_cursor_load(cursor, &at) == 0 && at >= want)
            return at == want;
        usleep(20000);
    }
    return false;
}

static size_t attempts(receiver_t *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n_hits;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* prefixes: the list's elements; extra: more settings, appended. */
static void write_config(int max_attempts, const char *prefixes, const char *extra)
{
    snprintf(conf, sizeof conf, "%s/alert.conf", tmp.path);
    snprintf(cursor, sizeof cursor, "%s/alert.cursor", tmp.path);
    snprintf(dead, sizeof dead, "%s/alert.dead", tmp.path);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "publish = \"%s\";\nreplay = \"%s\";\ncursor = \"%s\";\ndead_letter = \"%s\";\n"
            "prefixes = [%s];\nmax_attempts = %d;\nbackoff_ms = 20;\n"
            "backoff_max_ms = 100;\nhttp_timeout_ms = 2000;\nlog_level = \"debug\";\n"
            "channels = (\n"
            "  { name = \"sales\"; type = \"slack\"; url = \"http://127.0.0.1:%d/slack\"; },\n"
            "  { name = \"tg\"; type = \"telegram\"; url = \"http://127.0.0.1:%d\";\n"
            "    bot_token = \"123:ABC\"; },\n"
            "  { name = \"hook\"; type = \"webhook\"; url = \"http://127.0.0.1:%d/hook\"; }\n"
            ");\n"
            "routes = (\n"
            "  { target = \"anna\"; channel = \"tg\"; chat_id = \"42\"; },\n"
            "  { target = \"bob\"; channel = \"hook\"; },\n"
            "  { target = \"team-lead\"; channel = \"hook\"; },\n"
            "  { target = \"head-of-sales\"; channel = \"sales\"; },\n"
            "  { target = \"*\"; channel = \"sales\"; }\n"
            ");\n%s",
            fd.publish, fd.replay, cursor, dead, prefixes, max_attempts,
            slack_rx.httpd ? slack_rx.port : rx.port, rx.port, rx.port, extra);
    fclose(f);
}

static char alert_log[300];

static void alert_start(void)
{
    snprintf(alert_log, sizeof alert_log, "%s/alert.log", tmp.path);
    snprintf(ready, sizeof ready, "%s/alert.ready", tmp.path);
    unlink(ready);
    const char *argv[] = {FUNNEL_ALERT_PATH, "--config", conf, "--ready-file", ready, NULL};
    alert_pid = fx_spawn(argv, alert_log);
}

/* SIGTERM and wait; returns the exit status. The adapter's log goes to our stderr when it has
 * a sanitizer report, where ctest sees it. */
static int alert_stop(void)
{
    return fx_stop_child(&alert_pid, alert_log);
}

/* funneld with the SLA policy; a restart reuses the ports. */
static void daemon_start(void)
{
    const char *args[] = {"--config", daemon_conf, NULL};
    fx_daemon_start(&fd, tmp.path, args);
}

static void setup(void)
{
    fx_tmpdir_make(&tmp);
    memset(&fd, 0, sizeof fd);
    fx_file_write(tmp.path, "funneld.conf", sla_policy, daemon_conf, sizeof daemon_conf);
    daemon_start();
}

static void receiver_stop(receiver_t *r)
{
    if (r->httpd) {
        MHD_stop_daemon(r->httpd);
        pthread_mutex_destroy(&r->lock);
        r->httpd = NULL;
    }
}

static void teardown(void)
{
    alert_stop();
    receiver_stop(&rx);
    receiver_stop(&slack_rx);
    int status = fx_daemon_stop(&fd);
    if (status > 0)
        fprintf(stderr, "FUNNEL TEST ERROR: funneld exited with status %d\n", status);
    fx_tmpdir_remove(&tmp);
}

TestSuite(alert, .init = setup, .fini = teardown, .timeout = 120);

/* The key publish() submits with (NULL: plain), and funneld's public key, under security. */
static const char *publish_key;
static char server_pub[300];

static void publish(const char *topic, const char *json)
{
    funnel_body_t body;
    funnel_envelope_t *env = NULL;
    char err[256];
    funnel_client_t *c;
    funnel_submit_result_t res;
    cr_assert_eq(funnel_topic_lookup(topic, strlen(topic), &body), 0);
    cr_assert_eq(funnel_json_envelope_build(body, json, fx_now_ms(), &env, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(funnel_client_new(&c), 0);
    if (publish_key)
        cr_assert_eq(funnel_client_set_curve(c, publish_key, server_pub, err, sizeof err), 0, "%s",
                     err);
    int rc = funnel_client_submit(c, fd.submit, topic, env, NULL, &res);
    funnel_client_destroy(&c);
    funnel_envelope_free(&env);
    cr_assert_eq(rc, 0);
    cr_assert_eq(res.status, FUNNEL_SUBMIT_OK, "%s", res.reason);
}

/* Waits for the adapter's ready file and reads it into text. */
static void ready_wait(char *text, size_t len)
{
    cr_assert(fx_wait_file(ready, alert_pid, 10000), "funnel-alert did not become ready");
    FILE *f = fopen(ready, "r");
    cr_assert_not_null(f);
    size_t n = fread(text, 1, len - 1, f);
    text[n] = '\0';
    fclose(f);
}

/* GETs path from the adapter's metrics endpoint; *body (caller frees) gets what came back. */
static long scrape(int port, const char *path, char **body)
{
    char url[128];
    size_t len = 0;
    long status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    FILE *out = open_memstream(body, &len);
    CURL *c = curl_easy_init();
    cr_assert(out && c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out); /* libcurl's default writer is fwrite */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    fclose(out);
    cr_assert_eq(rc, CURLE_OK, "%s", curl_easy_strerror(rc));
    return status;
}

/* Scrapes /metrics until the cursor gauge shows seq (20 s at most); returns the samples, the
 * comment lines dropped (caller frees). */
static char *scrape_at_cursor(int port, unsigned long long seq)
{
    char want[64], *body = NULL;
    snprintf(want, sizeof want, "\nfunnel_alert_cursor_seq %llu\n", seq);
    for (int waited = 0; waited < 20000; waited += 20) {
        cr_assert_eq(scrape(port, "/metrics", &body), 200);
        if (strstr(body, want))
            break;
        free(body);
        body = NULL;
        usleep(20000);
    }
    cr_assert_not_null(body, "the cursor never reached %llu", seq);
    char *w = body;
    for (char *line = body, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        cr_assert_not_null(nl, "unterminated line: %s", line);
        if (*line != '#')
            w += sprintf(w, "%.*s", (int)(nl - line + 1), line);
    }
    *w = '\0';
    return body;
}

/* The text and target of the envelope JSON env at now_ms are want_text and want_target. */
static void assert_text(const char *topic, const char *env_json, int64_t now_ms,
                        const char *want_text, const char *want_target)
{
    json_t *env = json_loads(env_json, 0, NULL);
    char text[256], target[64];
    cr_assert_not_null(env, "%s", env_json);
    cr_assert_eq(funnel_alert_text(topic, env, now_ms, text, sizeof text, target, sizeof target),
                 0);
    json_decref(env);
    cr_assert_str_eq(text, want_text);
    cr_assert_str_eq(target, want_target);
}

#define SLA_REF                                                                                    \
    "{\"slaId\":\"9\",\"policy\":\"first-contact\",\"key\":\"L-7\",\"dueAtMs\":\"1000000\","       \
    "\"owner\":\"anna\"}"

Test(alert, text_says_what_is_late_by_how_much_whose_and_which_level)
{
    /* notify wins over the owner */
    assert_text(
        "sla.escalation",
        "{\"eventId\":\"sla-9\",\"occurredAtMs\":\"1000000\",\"slaEscalation\":{\"sla\":" SLA_REF
        ",\"level\":2,\"notify\":\"sales-lead\"}}",
        1000000 + 2 * 3600000 + 5 * 60000,
        "[sla.escalation] first-contact: L-7 late by 2h 5m, owner anna, level 2", "sales-lead");
    assert_text("sla.escalation",
                "{\"slaEscalation\":{\"sla\":" SLA_REF
                ",\"level\":3,\"notify\":\"x\",\"repeat\":2}}",
                1000400,
                "[sla.escalation] first-contact: L-7 late by 400ms, owner anna, level 3, "
                "repeat 2",
                "x");
    assert_text("sla.warning", "{\"slaWarning\":{\"sla\":" SLA_REF "}}", 1000000 - 90000,
                "[sla.warning] first-contact: L-7 due in 1m 30s, owner anna", "anna");
    /* How it ended (business time), not how long before its delivery the due time was. */
    assert_text("sla.met", "{\"slaMet\":{\"sla\":" SLA_REF ",\"lateMs\":\"90000\"}}",
                1000000 + 86400000, "[sla.met] first-contact: L-7 met late by 1m 30s, owner anna",
                "anna");
    assert_text("sla.met", "{\"slaMet\":{\"sla\":" SLA_REF ",\"onTime\":true}}", 1000000 + 5000,
                "[sla.met] first-contact: L-7 met on time, owner anna", "anna");
    /* Closed by the retention horizon, never stopped: not a stop that came late. */
    assert_text(
        "sla.met", "{\"slaMet\":{\"sla\":" SLA_REF ",\"lateMs\":\"90000\",\"expired\":true}}",
        1000000 + 86400000,
        "[sla.met] first-contact: L-7 expired unstopped (counted as breached), owner anna", "anna");
    assert_text("lead.contacted",
                "{\"eventId\":\"e\",\"leadContacted\":{\"leadId\":\"L-1\",\"rep\":\"bob\"}}", 0,
                "[lead.contacted] leadId=L-1 rep=bob", "bob");
}

Test(alert, text_cut_to_fit_never_splits_a_character)
{
    /* A long free-text value is cut at a byte count; half a character would make the text
     * invalid UTF-8, which no JSON document (delivery or dead letter) can carry. */
    char reason[1200] = "", env_json[1400], text[512], target[64];
    for (size_t i = 0; i + 2 < sizeof reason; i += 2)
        memcpy(reason + i, "\xd0\xbb", 2), reason[i + 2] = '\0';
    snprintf(env_json, sizeof env_json,
             "{\"leadClosed\":{\"leadId\":\"L-9\",\"outcome\":\"WON\",\"reason\":\"%s\"}}", reason);
    json_t *env = json_loads(env_json, 0, NULL);
    cr_assert_not_null(env);
    for (size_t len = 40; len <= sizeof text; len += 1) {
        cr_assert_eq(funnel_alert_text("lead.closed", env, 0, text, len, target, sizeof target), 0);
        json_t *s = json_string(text);
        cr_assert_not_null(s, "a text of %zu bytes is not UTF-8: %s", strlen(text), text);
        json_decref(s);
    }
    json_decref(env);
}

static bool has_hit(const receiver_t *r, const char *path, const char *needle,
                    unsigned long long seq)
{
    bool found = false;
    for (size_t i = 0; i < r->n_hits && !found; i++)
        found = r->hits[i].status == 200 && !strcmp(r->hits[i].path, path) &&
                strstr(r->hits[i].body, needle) && r->hits[i].seq == seq;
    return found;
}

/* The one successful delivery to r's path whose body has needle (asserts there is exactly
 * one). */
static const hit_t *only_hit(const receiver_t *r, const char *path, const char *needle)
{
    const hit_t *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < r->n_hits; i++) {
        const hit_t *h = &r->hits[i];
        if (h->status == 200 && !strcmp(h->path, path) && strstr(h->body, needle))
            found = h, n++;
    }
    cr_assert_eq(n, 1, "%zu deliveries to %s with %s", n, path, needle);
    return found;
}

/* seq 1: L-1 for anna (the tg route), seq 2: L-1 contacted by bob (hook), seq 3: L-2 for carl
 * (the default route, sales). */
static void publish_leads(void)
{
    publish("lead.created", "{\"leadId\":\"L-1\",\"owner\":\"anna\"}");
    publish("lead.contacted", "{\"leadId\":\"L-1\",\"rep\":\"bob\"}");
    publish("lead.created", "{\"leadId\":\"L-2\",\"owner\":\"carl\"}");
}

Test(alert, every_message_delivered_once_through_failures_and_restarts)
{
    receiver_start(&rx, 3);
    write_config(10, "\"lead.\"", "");
    publish_leads();
    alert_start();
    cr_assert(wait_for(&rx, delivered, 3, 20000), "only %zu delivered", delivered(&rx));
    cr_assert(wait_cursor(3, 20000), "the cursor did not reach 3");
    cr_assert_eq(alert_stop(), 0);
    uint64_t cur;
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 3);

    /* funneld restarts and more arrives while the adapter is down; then it fails again. */
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    daemon_start();
    publish("lead.created", "{\"leadId\":\"L-3\",\"owner\":\"anna\"}");
    publish("lead.closed", "{\"leadId\":\"L-2\",\"outcome\":\"WON\"}");
    pthread_mutex_lock(&rx.lock);
    rx.fail_left = 2;
    pthread_mutex_unlock(&rx.lock);
    alert_start();
    cr_assert(wait_for(&rx, delivered, 5, 20000), "only %zu delivered", delivered(&rx));
    cr_assert(wait_cursor(5, 20000), "the cursor did not reach 5");
    cr_assert_eq(alert_stop(), 0);

    pthread_mutex_lock(&rx.lock);
    size_t per_seq[8] = {0};
    for (size_t i = 0; i < rx.n_hits; i++)
        if (rx.hits[i].status == 200 && rx.hits[i].seq < 8)
            per_seq[rx.hits[i].seq]++;
    for (int s = 1; s <= 5; s++)
        cr_assert_eq(per_seq[s], 1, "seq %d delivered %zu times", s, per_seq[s]);
    cr_assert_eq(rx.n_hits, 5 + 3 + 2, "5 deliveries and 5 failures");
    cr_assert(has_hit(&rx, "/bot123:ABC/sendMessage", "\"chat_id\":\"42\"", 1));
    cr_assert(has_hit(&rx, "/bot123:ABC/sendMessage", "leadId=L-3", 4));
    cr_assert(has_hit(&rx, "/hook", "\"target\":\"bob\"", 2));
    cr_assert(has_hit(&rx, "/hook", "\"leadContacted\":{", 2));
    cr_assert(has_hit(&rx, "/slack", "{\"text\":\"[lead.created] leadId=L-2 owner=carl", 3));
    cr_assert(has_hit(&rx, "/slack", "outcome=WON", 5), "no target: the default route");
    pthread_mutex_unlock(&rx.lock);
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 5);
    cr_assert_neq(access(dead, F_OK), 0, "nothing dead-lettered");
}

Test(alert, slack_gets_event_values_escaped_telegram_and_webhooks_get_them_verbatim)
{
    /* A lead id that would ping the channel and show a disguised link in Slack, and an owner
     * with an ampersand (the default route: Slack). Slack's formatting rules: &, < and > in
     * text are written &amp; &lt; &gt;. Telegram is sent without parse_mode, so it shows any
     * text as it is; the generic webhook carries plain JSON. */
    receiver_start(&rx, 0);
    write_config(3, "\"lead.\"", "");
    publish("lead.created",
            "{\"leadId\":\"<!channel> pay now <https://x|invoice>\",\"owner\":\"carl & co\"}");
    publish("lead.created", "{\"leadId\":\"<b>L&2</b>\",\"owner\":\"anna\"}");
    publish("lead.contacted", "{\"leadId\":\"<!here>\",\"rep\":\"bob\"}");
    alert_start();
    cr_assert(wait_for(&rx, delivered, 3, 20000), "only %zu delivered", delivered(&rx));
    cr_assert_eq(alert_stop(), 0);
    pthread_mutex_lock(&rx.lock);
    const hit_t *slack = only_hit(&rx, "/slack", "[lead.created]");
    cr_assert(strstr(slack->body, "{\"text\":\"[lead.created] leadId=&lt;!channel&gt; pay now "
                                  "&lt;https://x|invoice&gt; owner=carl &amp; co\"}"),
              "%s", slack->body);
    cr_assert_null(strstr(slack->body, "<"), "%s", slack->body);
    const hit_t *tg = only_hit(&rx, "/bot123:ABC/sendMessage", "[lead.created]");
    cr_assert(strstr(tg->body, "\"text\":\"[lead.created] leadId=<b>L&2</b> owner=anna\""), "%s",
              tg->body);
    cr_assert_null(strstr(tg->body, "parse_mode"), "%s", tg->body);
    const hit_t *hook = only_hit(&rx, "/hook", "lead.contacted");
    cr_assert(strstr(hook->body, "\"text\":\"[lead.contacted] leadId=<!here> rep=bob\""), "%s",
              hook->body);
    pthread_mutex_unlock(&rx.lock);
}

Test(alert, dead_letter_after_max_attempts_then_the_cursor_moves_on)
{
    receiver_start(&rx, 3);
    write_config(3, "\"lead.\"", "");
    publish("lead.created", "{\"leadId\":\"L-1\",\"owner\":\"anna\"}");
    publish("lead.created", "{\"leadId\":\"L-2\",\"owner\":\"anna\"}");
    alert_start();
    char text[128];
    ready_wait(text, sizeof text);
    cr_assert(!strncmp(text, "pid=", 4) && !strstr(text, "metrics="), "metrics are off: %s", text);
    cr_assert(wait_for(&rx, delivered, 1, 20000));
    cr_assert_eq(alert_stop(), 0);
    cr_assert_eq(attempts(&rx), 4, "3 failed attempts for seq 1, then seq 2 delivered");
    FILE *f = fopen(dead, "r");
    char line[1024] = "";
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strstr(line, "\"seq\":1") && strstr(line, "\"reason\":\"HTTP 500\"") &&
                  strstr(line, "leadId=L-1"),
              "%s", line);
    uint64_t cur;
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 2);
}

Test(alert, bad_config_is_refused)
{
    fx_file_write(tmp.path, "bad.conf", "routes = ( { target = \"x\"; channel = \"nope\"; } );\n",
                  conf, sizeof conf);
    char out[1024];
    const char *argv[] = {FUNNEL_ALERT_PATH, "--config", conf, NULL};
    cr_assert_eq(fx_run(argv, out, sizeof out), 1);
    cr_assert(strstr(out, "no channel named 'nope'"), "%s", out);
}

Test(alert, metrics_count_a_known_stream_exactly)
{
    receiver_start(&rx, 5);
    write_config(4, "\"lead.created\", \"lead.contacted\"", "metrics = \"127.0.0.1:0\";\n");
    /* seq 1 to tg: 4 failures, dead-lettered; seq 2 to hook: a failure, then delivered; seq 3
     * to sales: delivered; seq 4 matches no prefix. */
    publish_leads();
    publish("lead.closed", "{\"leadId\":\"L-2\",\"outcome\":\"WON\"}");
    alert_start();
    char text[128];
    int port = 0;
    ready_wait(text, sizeof text);
    cr_assert(strstr(text, "metrics=") && sscanf(strstr(text, "metrics="), "metrics=%d", &port),
              "%s", text);
    cr_assert_gt(port, 0, "port 0 in the config: the bound one is reported");

    char *samples = scrape_at_cursor(port, 4);
    cr_assert_str_eq(samples, "funnel_alert_messages_total{prefix=\"lead.created\"} 2\n"
                              "funnel_alert_messages_total{prefix=\"lead.contacted\"} 1\n"
                              "funnel_alert_delivery_attempts_total{channel=\"sales\"} 1\n"
                              "funnel_alert_delivery_attempts_total{channel=\"tg\"} 4\n"
                              "funnel_alert_delivery_attempts_total{channel=\"hook\"} 2\n"
                              "funnel_alert_deliveries_succeeded_total{channel=\"sales\"} 1\n"
                              "funnel_alert_deliveries_succeeded_total{channel=\"tg\"} 0\n"
                              "funnel_alert_deliveries_succeeded_total{channel=\"hook\"} 1\n"
                              "funnel_alert_deliveries_failed_total{channel=\"sales\"} 0\n"
                              "funnel_alert_deliveries_failed_total{channel=\"tg\"} 4\n"
                              "funnel_alert_deliveries_failed_total{channel=\"hook\"} 1\n"
                              "funnel_alert_retries_total 4\n"
                              "funnel_alert_dead_lettered_total 1\n"
                              "funnel_alert_cursor_seq 4\n"
                              "funnel_alert_backoff_seconds 0\n");
    free(samples);
    cr_assert_eq(attempts(&rx), 7, "the receiver saw what the counters say");
    char *body = NULL;
    cr_assert_eq(scrape(port, "/metrics", &body), 200);
    cr_assert(strstr(body, "# TYPE funnel_alert_retries_total counter\n") &&
                  strstr(body, "# TYPE funnel_alert_cursor_seq gauge\n"),
              "%s", body);
    free(body);
    cr_assert_eq(scrape(port, "/healthz", &body), 200);
    cr_assert_str_eq(body, "ok\n");
    free(body);
    cr_assert_eq(scrape(port, "/nope", &body), 404);
    free(body);
    cr_assert_eq(alert_stop(), 0);

    /* A restarted adapter counts from zero but shows the cursor it resumes from. */
    alert_start();
    ready_wait(text, sizeof text);
    cr_assert_eq(sscanf(strstr(text, "metrics="), "metrics=%d", &port), 1, "%s", text);
    samples = scrape_at_cursor(port, 4);
    cr_assert(strstr(samples, "funnel_alert_messages_total{prefix=\"lead.created\"} 0\n") &&
                  strstr(samples, "funnel_alert_delivery_attempts_total{channel=\"tg\"} 0\n") &&
                  strstr(samples, "funnel_alert_dead_lettered_total 0\n"),
              "%s", samples);
    free(samples);
    cr_assert_eq(alert_stop(), 0);
}

/* Issue 6's promise with funneld's real sla.* output: a lead qualified as SQL is not contacted
 * within its 1 s target; the owner is warned, the team lead gets level 1 on a JSON webhook and
 * the head of sales level 2 on Slack (whose receiver fails twice first), each once and saying
 * what is late, by how much, whose it is and which level. Restarting both funnel-alert and
 * funneld then resends none of it, and the stop that arrived meanwhile still gets through. */
Test(alert, real_sla_escalations_reach_each_target_once_across_restarts)
{
    static const char tg[] = "/bot123:ABC/sendMessage"; /* anna's route */
    receiver_start(&rx, 0);
    receiver_start(&slack_rx, 2);
    write_config(10, "\"sla.\"", "");
    alert_start();
    publish("lead.qualified", "{\"leadId\":\"L-7\",\"stage\":\"SQL\",\"owner\":\"anna\"}");
    /* The warning at +0.5 s and level 1 at +1 s to rx, level 2 at +2 s to Slack, in order. */
    cr_assert(wait_for(&slack_rx, delivered, 1, 20000), "level 2 not delivered");
    cr_assert_eq(delivered(&rx), 2, "the warning and level 1 came before level 2");
    cr_assert_eq(alert_stop(), 0);
    cr_assert_eq(attempts(&slack_rx), 3, "two failures, then level 2 delivered");

    cr_assert_eq(fx_daemon_stop(&fd), 0);
    daemon_start();
    publish("lead.contacted", "{\"leadId\":\"L-7\",\"rep\":\"bob\"}"); /* the adapter is down */
    alert_start();
    cr_assert(wait_for(&rx, delivered, 3, 20000), "sla.met not delivered after the restarts");
    cr_assert_eq(alert_stop(), 0);
    /* Delivery is in sequence order: anything resent would have come before sla.met. */
    cr_assert_eq(attempts(&rx), 3, "the warning, level 1 and sla.met, nothing twice");
    cr_assert_eq(attempts(&slack_rx), 3, "level 2 not resent");

    pthread_mutex_lock(&rx.lock);
    /* Times in the texts are measured at delivery, so only their shape is checked: a loaded
     * machine may deliver later than the due time. */
    const hit_t *w = only_hit(&rx, tg, "\"[sla.warning] first-contact: L-7 ");
    cr_assert(strstr(w->body, ", owner anna\"") && strstr(w->body, "\"chat_id\":\"42\""), "%s",
              w->body);
    const hit_t *l1 = only_hit(&rx, "/hook", "\"[sla.escalation] first-contact: L-7 late by ");
    cr_assert(strstr(l1->body, ", owner anna, level 1\"") &&
                  strstr(l1->body, "\"target\":\"team-lead\"") &&
                  strstr(l1->body, "\"topic\":\"sla.escalation\"") &&
                  strstr(l1->body, "\"notify\":\"team-lead\""),
              "%s", l1->body);
    const hit_t *met = only_hit(&rx, tg, "\"[sla.met] first-contact: L-7 met late by ");
    cr_assert(strstr(met->body, ", owner anna\""), "%s", met->body);
    unsigned long long w_seq = w->seq, l1_seq = l1->seq, met_seq = met->seq;
    pthread_mutex_unlock(&rx.lock);
    pthread_mutex_lock(&slack_rx.lock);
    const hit_t *l2 =
        only_hit(&slack_rx, "/slack", "{\"text\":\"[sla.escalation] first-contact: L-7 late by ");
    cr_assert(strstr(l2->body, ", owner anna, level 2\"}"), "%s", l2->body);
    unsigned long long l2_seq = l2->seq;
    pthread_mutex_unlock(&slack_rx.lock);

    cr_assert(w_seq < l1_seq && l1_seq < l2_seq && l2_seq < met_seq, "%llu %llu %llu %llu", w_seq,
              l1_seq, l2_seq, met_seq);
    uint64_t cur;
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, met_seq);
    cr_assert_neq(access(dead, F_OK), 0, "nothing dead-lettered");
}

/* ---- key and server_key against funneld with security ------------------------------------ */

enum { ONCALL, BILLING, CRM, N_KEYS };
static char keys[N_KEYS][300];

/* funneld with the SLA policy and security: the alert runs as oncall (subscribe ["sla."]),
 * billing publishes payments, the CRM leads. */
static void keys_setup(void)
{
    static const char *const names[N_KEYS] = {"oncall", "billing", "crm"};
    static const char *const rights[N_KEYS] = {
        "subscribe = [\"sla.\"];", "publish = [\"payment.*\"];", "publish = [\"lead.*\"];"};
    funnel_keypair_t kp;
    char server_key[300], clients[300], text[4096];
    fx_tmpdir_make(&tmp);
    memset(&fd, 0, sizeof fd);
    fx_keys_make(tmp.path, "funneld", NULL, server_key, server_pub, sizeof server_pub);
    size_t n = (size_t)snprintf(text, sizeof text, "clients = (\n");
    for (int i = 0; i < N_KEYS; i++) {
        fx_keys_make(tmp.path, names[i], &kp, keys[i], NULL, sizeof keys[i]);
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "  { name = \"%s\"; public_key = \"%s\"; %s }%s\n", names[i],
                              kp.public_key, rights[i], i + 1 < N_KEYS ? "," : "");
    }
    snprintf(text + n, sizeof text - n, ");\n");
    fx_file_write(tmp.path, "clients.conf", text, clients, sizeof clients);
    snprintf(text, sizeof text, "security = { server_key = \"%s\"; clients = \"%s\"; };\n%s",
             server_key, clients, sla_policy);
    fx_file_write(tmp.path, "funneld.conf", text, daemon_conf, sizeof daemon_conf);
    daemon_start();
}

TestSuite(alert_keys, .init = keys_setup, .fini = teardown, .timeout = 120);

/* The alert asks for payments too (its prefixes), as a misconfigured one might, and would
 * deliver one (the "*" route): funneld sends the on-call key only sla.*, so what arrives is the
 * warning and level 1 that followed the payment, and nothing else. */
Test(alert_keys, an_sla_key_gets_escalations_and_never_a_payment)
{
    char extra[1024];
    receiver_start(&rx, 0);
    snprintf(extra, sizeof extra, "key = \"%s\";\nserver_key = \"%s\";\n", keys[ONCALL],
             server_pub);
    write_config(10, "\"sla.\", \"payment.\"", extra);
    alert_start();
    publish_key = keys[BILLING];
    publish("payment.received",
            "{\"paymentId\":\"P-1\",\"clientId\":\"C-1\",\"amount\":{\"minor\":100,"
            "\"currency\":\"EUR\"}}");
    publish_key = keys[CRM];
    publish("lead.qualified", "{\"leadId\":\"L-8\",\"stage\":\"SQL\",\"owner\":\"anna\"}");
    /* The warning (anna's route) and level 1 (the team lead's); in sequence order, so a
     * payment delivered would have come first. */
    cr_assert(wait_for(&rx, delivered, 2, 20000), "no escalation delivered");
    cr_assert_eq(alert_stop(), 0);
    unsigned long long paid = (unsigned long long)fx_db_int(
        fd.db, "SELECT o.seq FROM outbox o JOIN events e ON e.seq = o.event_seq WHERE e.topic = "
               "'payment.received'");
    cr_assert_gt(paid, 0);
    pthread_mutex_lock(&rx.lock);
    for (size_t i = 0; i < rx.n_hits; i++) {
        cr_assert_neq(rx.hits[i].seq, paid, "the payment was delivered: %s", rx.hits[i].body);
        cr_assert_gt(rx.hits[i].seq, paid, "%s", rx.hits[i].body);
        cr_assert(strstr(rx.hits[i].body, "[sla."), "%s", rx.hits[i].body);
    }
    pthread_mutex_unlock(&rx.lock);
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

TestSuite(alert_config, .init = config_setup, .fini = config_teardown, .timeout = 60);

Test(alert_config, key_and_server_key_are_checked_at_start)
{
    funnel_alert_config_t c;
    char key[300], pub[300], conf[300], err[512];
    fx_curve_config_check(FUNNEL_ALERT_PATH, tmp.path, conf, key, pub, sizeof key);
    cr_assert_eq(funnel_alert_config_defaults(&c), 0);
    cr_expect_str_eq(c.key, "", "no CURVE by default");
    int rc = funnel_alert_config_load(conf, &c, err, sizeof err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect_str_eq(c.key, key);
    cr_expect_str_eq(c.server_key, pub);
    funnel_alert_config_clear(&c);
}
