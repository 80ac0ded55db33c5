/* web_fx.c — see web_fx.h. */
#include "web_fx.h"

#include "funnel/date.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char funneld_conf[] =
    "engines = \"ledger,attribution,sla\";\n"
    "commission = { default_rate_bp = 1000; };\n"
    "sla = {\n"
    "  policies = ( {\n"
    "    name = \"sql_contact\"; start = \"lead.qualified stage=SQL\"; key = \"lead_id\";\n"
    "    owner = \"owner\"; stop = [\"lead.contacted\", \"lead.closed\"]; target = \"1h\";\n"
    "    calendar = \"24x7\"; warning = \"50%\";\n"
    "    escalation = ( { after = \"0\"; notify = \"team-lead\"; },\n"
    "                   { after = \"30m\"; notify = \"head-of-sales\"; } );\n"
    "  } );\n"
    "  quotas = ( { name = \"mql_monthly\"; count = \"lead.qualified stage=MQL\";\n"
    "    period = \"month\"; calendar = \"24x7\"; minimum = 10; pace = \"50%\"; } );\n"
    "  late_grace = \"0\";\n" /* an SLA started 2 h ago escalates at once (test_web) */
    "};\n";

void fx_web_publish(const fx_web_t *w, const char *topic, const char *json)
{
    char out[2048];
    const char *args[] = {"publish", topic, json, NULL};
    int rc = fx_ctl(&w->d, out, sizeof out, args);
    cr_assert_eq(rc, 0, "funnelctl publish %s %s: %s", topic, json, out);
}

/* Publishes topic with the JSON body made by fmt; occurred_at_ms is at. */
static void publish_at(const fx_web_t *w, const char *topic, const char *id, int64_t at,
                       const char *body)
{
    char json[2048];
    snprintf(json, sizeof json, "{\"event_id\":\"%s\",\"occurred_at_ms\":%lld,%s}", id,
             (long long)at, body);
    fx_web_publish(w, topic, json);
}

static void touch_json(char *out, size_t len, const char *campaign, const char *source,
                       const char *medium, const char *channel, int64_t at)
{
    snprintf(out, len,
             "{\"campaign\":\"%s\",\"source\":\"%s\",\"medium\":\"%s\",\"channel\":\"%s\","
             "\"at_ms\":%lld}",
             campaign, source, medium, channel, (long long)at);
}

static void known_stream(fx_web_t *w)
{
    int64_t t0 = w->t0, d = FX_DAY_MS, h = FX_HOUR_MS, m = 60000;
    char t[512], body[1024];
    touch_json(t, sizeof t, "spring", "google", "cpc", "paid", t0 - 10 * d);
    snprintf(body, sizeof body,
             "\"lead_id\":\"L1\",\"owner\":\"ann\",\"segment\":\"smb\",\"touches\":[%s]", t);
    publish_at(w, "lead.created", "e-l1", t0 - 10 * d, body);
    publish_at(w, "lead.qualified", "e-l1-mql", t0 - 9 * d, "\"lead_id\":\"L1\",\"stage\":\"MQL\"");
    touch_json(t, sizeof t, "autumn", "facebook", "social", "paid_social", t0 - 3 * h);
    snprintf(body, sizeof body, "\"lead_id\":\"L1\",\"touch\":%s", t);
    publish_at(w, "lead.touched", "e-l1-touch", t0 - 3 * h, body);
    publish_at(w, "lead.qualified", "e-l1-sql", t0 - 2 * h,
               "\"lead_id\":\"L1\",\"stage\":\"SQL\",\"owner\":\"ann\"");

    touch_json(t, sizeof t, "webinar", "newsletter", "email", "email", t0 - 8 * d);
    snprintf(body, sizeof body,
             "\"lead_id\":\"L2\",\"owner\":\"bob\",\"segment\":\"enterprise\",\"touches\":[%s]", t);
    publish_at(w, "lead.created", "e-l2", t0 - 8 * d, body);
    publish_at(w, "lead.qualified", "e-l2-mql", t0 - 7 * d, "\"lead_id\":\"L2\",\"stage\":\"MQL\"");
    publish_at(w, "lead.qualified", "e-l2-sql", t0 - 6 * d,
               "\"lead_id\":\"L2\",\"stage\":\"SQL\",\"owner\":\"bob\"");
    publish_at(w, "lead.contacted", "e-l2-contact", t0 - 6 * d + 30 * m,
               "\"lead_id\":\"L2\",\"rep\":\"bob\"");
    publish_at(w, "lead.closed", "e-l2-won", t0 - 5 * d, "\"lead_id\":\"L2\",\"outcome\":\"WON\"");

    touch_json(t, sizeof t, "spring", "google", "cpc", "paid", t0 - 4 * d);
    snprintf(body, sizeof body, "\"lead_id\":\"L3\",\"owner\":\"ann\",\"touches\":[%s]", t);
    publish_at(w, "lead.created", "e-l3", t0 - 4 * d, body);
    publish_at(w, "lead.qualified", "e-l3-mql", t0 - 3 * d, "\"lead_id\":\"L3\",\"stage\":\"MQL\"");
    publish_at(w, "lead.closed", "e-l3-lost", t0 - 2 * d,
               "\"lead_id\":\"L3\",\"outcome\":\"LOST\"");

    publish_at(w, "lead.qualified", "e-l5-sql", t0 - 2 * h,
               "\"lead_id\":\"L5\",\"stage\":\"SQL\",\"owner\":\"bob\"");

    publish_at(w, "client.handed_off", "e-c1", t0 - 5 * d,
               "\"client_id\":\"C1\",\"lead_id\":\"L2\",\"from_rep\":\"bob\","
               "\"account_manager\":\"carl\"");
    publish_at(w, "payment.received", "e-p1", t0 - 75 * m,
               "\"payment_id\":\"P1\",\"client_id\":\"C1\",\"amount\":{\"minor\":120000,"
               "\"currency\":\"EUR\"}");
    publish_at(w, "payment.refunded", "e-r1", t0 - 70 * m,
               "\"refund_id\":\"R1\",\"payment_id\":\"P1\",\"client_id\":\"C1\","
               "\"amount\":{\"minor\":20000,\"currency\":\"EUR\"}");
    publish_at(w, "client.handed_off", "e-c2", t0 - 90 * m,
               "\"client_id\":\"C2\",\"lead_id\":\"L1\",\"from_rep\":\"ann\","
               "\"account_manager\":\"carl\"");
    publish_at(w, "payment.received", "e-p2", t0 - 80 * m,
               "\"payment_id\":\"P2\",\"client_id\":\"C2\",\"amount\":{\"minor\":50000,"
               "\"currency\":\"EUR\"}");
    char day[16];
    funnel_date_format(t0 - 80 * m, day, sizeof day);
    snprintf(w->period_ann, sizeof w->period_ann, "%.7s", day);
    funnel_date_format(t0 - 75 * m, day, sizeof day);
    snprintf(w->period_bob, sizeof w->period_bob, "%.7s", day);
}

void fx_web_add_user(const char *users, const char *name, const char *role, const char *password,
                     char token[65])
{
    char out[4096];
    const char *argv[] = {"/bin/sh",
                          "-c",
                          "printf '%s\\n' \"$1\" | \"$2\" --users \"$3\" --add-user \"$4\" "
                          "--role \"$5\"",
                          "sh",
                          password,
                          FUNNEL_WEB_PATH,
                          users,
                          name,
                          role,
                          NULL};
    int rc = fx_run(argv, out, sizeof out);
    cr_assert_eq(rc, 0, "funnel-web --add-user %s: %s", name, out);
    /* stdout (the token) and stderr (the notice) share out: the token is the 64-hex line */
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        size_t n = 0;
        while (isxdigit((unsigned char)line[n]))
            n++;
        if (n == 64 && !line[n]) {
            memcpy(token, line, 65);
            return;
        }
    }
    cr_assert_fail("funnel-web --add-user %s printed no token", name);
}

/* Reads http=PORT from the ready file. */
static int ready_port(const char *path)
{
    char line[128];
    int port = 0;
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "http=", 5))
            port = atoi(line + 5);
    fclose(f);
    cr_assert_gt(port, 0, "no http= in %s", path);
    return port;
}

void fx_web_start(fx_web_t *w)
{
    memset(w, 0, sizeof *w);
    w->t0 = fx_now_ms() / 1000 * 1000;
    fx_tmpdir_make(&w->tmp);
    fx_file_write(w->tmp.path, "funneld.conf", funneld_conf, w->conf, sizeof w->conf);
    const char *args[] = {"--config", w->conf, NULL};
    fx_daemon_start(&w->d, w->tmp.path, args);
    known_stream(w);

    snprintf(w->users, sizeof w->users, "%s/users", w->tmp.path);
    fx_web_add_user(w->users, "mia", "manager", "mia-password", w->token_mia);
    fx_web_add_user(w->users, "ann", "rep", "ann-password", w->token_ann);
    fx_web_add_user(w->users, "bob", "rep", "bob-password", w->token_bob);
    fx_web_add_user(w->users, "root", "admin", "root-password", w->token_root);

    fx_web_spawn(w, "");
    /* The tests ask for exact figures: they start once the models are read. */
    fx_web_wait_ready(w, "/api/v1/funnel?by=campaign");
    fx_web_wait_ready(w, "/api/v1/attribution?by=campaign");
}

long fx_web_wait_ready(const fx_web_t *w, const char *path)
{
    static fx_http_reply_t r; /* large: static */
    for (int i = 0; i < 600; i++) {
        fx_web_request(w, w->token_mia, path, NULL, NULL, &r);
        if (r.status != 503)
            break;
        fx_sleep_ms(100);
    }
    return r.status;
}

void fx_web_spawn(fx_web_t *w, const char *extra)
{
    char text[4096];
    snprintf(text, sizeof text,
             "port = 0;\ndatabase = \"%s\";\nsubmit = \"%s\";\npublish = \"%s\";\n"
             "replay = \"%s\";\nusers = \"%s\";\nfunneld_config = \"%s\";\n%s",
             w->d.db, w->d.submit, w->d.publish, w->d.replay, w->users, w->conf, extra);
    fx_file_write(w->tmp.path, "funnel-web.conf", text, w->web_conf, sizeof w->web_conf);
    snprintf(w->ready, sizeof w->ready, "%s/web.ready", w->tmp.path);
    snprintf(w->log, sizeof w->log, "%s/web.log", w->tmp.path);
    unlink(w->ready); /* a respawn's: the one before wrote it too */
    const char *argv[] = {FUNNEL_WEB_PATH, "--config", w->web_conf, "--ready-file", w->ready, NULL};
    w->pid = fx_spawn(argv, w->log);
    cr_assert(fx_wait_file(w->ready, w->pid, 30000), "funnel-web did not get ready (see %s)",
              w->log);
    w->port = ready_port(w->ready);
}

void fx_web_stop(fx_web_t *w)
{
    if (w->pid) {
        int rc = fx_stop_child(&w->pid, w->log);
        if (rc)
            fprintf(stderr, "FUNNEL TEST ERROR: funnel-web exited %d\n", rc);
    }
    fx_daemon_suite_stop(&w->tmp, &w->d);
}

void fx_web_request(const fx_web_t *w, const char *token, const char *path, const char *body,
                    const char *const *extra, fx_http_reply_t *r)
{
    char auth[128];
    const char *hdrs[8];
    size_t n = 0;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs[n++] = auth;
    }
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        hdrs[n++] = extra[i];
    hdrs[n] = NULL;
    fx_http(w->port, path, body, body ? strlen(body) : 0, hdrs, r);
}

static size_t on_sse(char *data, size_t size, size_t n, void *arg)
{
    fx_sse_buf_t *b = arg;
    return fx_http_append(b->text, sizeof b->text, &b->len, data, size * n);
}

void fx_web_sse_read(const fx_web_t *w, const char *token, const char *last_id, int ms,
                     fx_sse_buf_t *b)
{
    char url[128], auth[128], last[64];
    memset(b, 0, sizeof *b);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/stream", w->port);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    if (last_id) {
        snprintf(last, sizeof last, "Last-Event-ID: %s", last_id);
        h = curl_slist_append(h, last);
    }
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_sse);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ms);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cr_assert_eq(rc, CURLE_OPERATION_TIMEDOUT, "a stream does not end: %s", curl_easy_strerror(rc));
}
