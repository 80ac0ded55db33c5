/* test_e2e_keys.c — the adapters' key options against the real funneld with `security` and a
 * clients file: funnelctl --key/--server-key (rights on publish and tail, and a plain funnelctl
 * told to use keys), funnel-webhook's `key`/`server_key` (the recorded source, and 503 without
 * an admitted key) and funnel-web's (the acknowledgement and the live stream). funnel-alert's
 * are in test_alert.c, next to its HTTP receiver. */
#include "curve_fx.h"
#include "harness.h"
#include "http_fx.h"
#include "sql_fx.h"
#include "web_fx.h"
#include "webhook.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

enum { CRM, WEB, STRANGER, N_KEYS };
static const char *const names[N_KEYS] = {"crm", "web", "stranger"};

static fx_web_t w; /* funneld (w.d) and, for the funnel-web test, funnel-web */
static char server_pub[300], key[N_KEYS][300];

/* The CRM publishes leads and reads them back; funnel-web acknowledges and shows the SLA
 * stream; the stranger's key is never listed. An escalation at once for an SQL lead gives
 * funnel-web something to acknowledge. */
static void start(void)
{
    fx_tmpdir_make(&w.tmp);
    char server_key[300], clients[300], text[4096];
    funnel_keypair_t kp[N_KEYS];
    fx_keys_make(w.tmp.path, "funneld", NULL, server_key, server_pub, sizeof server_pub);
    for (int i = 0; i < N_KEYS; i++)
        fx_keys_make(w.tmp.path, names[i], &kp[i], key[i], NULL, sizeof key[i]);
    snprintf(text, sizeof text,
             "clients = (\n"
             "  { name = \"crm\"; public_key = \"%s\"; publish = [\"lead.*\"]; "
             "subscribe = [\"lead.\"]; },\n"
             "  { name = \"web\"; public_key = \"%s\"; publish = [\"escalation.acknowledged\"]; "
             "subscribe = [\"sla.\", \"escalation.\"]; }\n);\n",
             kp[CRM].public_key, kp[WEB].public_key);
    fx_file_write(w.tmp.path, "clients.conf", text, clients, sizeof clients);
    snprintf(text, sizeof text,
             "security = { server_key = \"%s\"; clients = \"%s\"; };\n"
             "sla = { policies = ( { name = \"sql\"; start = \"lead.qualified stage=SQL\"; "
             "key = \"lead_id\"; owner = \"owner\"; stop = [\"lead.contacted\"]; target = \"1h\"; "
             "calendar = \"24x7\"; escalation = ( { after = \"0\"; notify = \"tl\"; } ); } );\n"
             /* leads qualified hours ago escalate at once, not a late grace after arrival */
             "late_grace = \"0\"; };\n",
             server_key, clients);
    fx_file_write(w.tmp.path, "funneld.conf", text, w.conf, sizeof w.conf);
    const char *args[] = {"--config", w.conf, NULL};
    fx_daemon_start(&w.d, w.tmp.path, args);
}

static void stop(void)
{
    fx_web_stop(&w);
}

TestSuite(e2e_keys, .init = start, .fini = stop, .timeout = 300);

/* funnelctl as `who` (-1: no keys) with args; returns its exit status. */
static int ctl_as(int who, char *out, size_t len, const char *const *args)
{
    const char *argv[24];
    size_t n = 0;
    if (who >= 0) {
        argv[n++] = "--key";
        argv[n++] = key[who];
        argv[n++] = "--server-key";
        argv[n++] = server_pub;
    }
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return fx_ctl(&w.d, out, len, argv);
}

/* Publishes topic json as the CRM through funnelctl; asserts "ok". */
static void crm_publish(const char *topic, const char *json)
{
    char out[4096];
    const char *args[] = {"publish", topic, json, NULL};
    cr_assert_eq(ctl_as(CRM, out, sizeof out, args), 0, "%s", out);
}

/* lead.qualified stage SQL for lead, owned by ann, an hour and a half late already: funneld
 * escalates it at once. */
static void sql_lead(const char *lead)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"event_id\":\"q-%s\",\"occurred_at_ms\":%lld,\"lead_id\":\"%s\",\"stage\":\"SQL\","
             "\"owner\":\"ann\"}",
             lead, (long long)(fx_now_ms() - 90 * 60000), lead);
    crm_publish("lead.qualified", json);
}

#define LEAD(id) "{\"event_id\":\"" id "\",\"lead_id\":\"L-" id "\"}"

Test(e2e_keys, funnelctl_publishes_its_topics_is_refused_others_and_tails_its_prefixes)
{
    char out[65536];
    const char *lead[] = {"publish", "lead.created", LEAD("c-1"), NULL};
    cr_assert_eq(ctl_as(CRM, out, sizeof out, lead), 0, "%s", out);
    cr_assert_str_eq(out, "ok c-1\n");
    const char *pay[] = {"publish", "payment.received",
                         "{\"event_id\":\"p-1\",\"payment_id\":\"P1\",\"client_id\":\"C1\","
                         "\"amount\":{\"minor\":100,\"currency\":\"EUR\"}}",
                         NULL};
    cr_assert_eq(ctl_as(CRM, out, sizeof out, pay), 1, "%s", out);
    cr_assert(strstr(out, "rejected") &&
                  strstr(out, "forbidden: crm may not publish payment.received"),
              "%s", out);
    cr_assert_eq(fx_db_int(w.d.db, "SELECT count(*) FROM events WHERE event_id = 'p-1'"), 0);

    /* The stream holds leads and, after each SQL lead, SLA output the CRM may not see. */
    sql_lead("L-2");
    const char *lead3[] = {"publish", "lead.created", LEAD("c-3"), NULL};
    cr_assert_eq(ctl_as(CRM, out, sizeof out, lead3), 0, "%s", out);
    sql_lead("L-4");
    cr_assert_gt(fx_db_int(w.d.db, "SELECT count(*) FROM outbox WHERE topic LIKE 'sla.%'"), 0);
    const char *tail[] = {"--idle-timeout-ms", "1500", "tail", NULL};
    cr_assert_eq(ctl_as(CRM, out, sizeof out, tail), 0, "%s", out);
    cr_assert(strstr(out, "\"c-1\"") && strstr(out, "\"c-3\"") && strstr(out, "\"q-L-4\""), "%s",
              out);
    cr_assert_null(strstr(out, "\"sla."), "the CRM saw SLA output: %s", out);
    size_t lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_eq(lines, 4, "each lead once, no loop over the filtered gaps: %s", out);
}

Test(e2e_keys, funnelctl_without_keys_gives_up_naming_security)
{
    char out[4096];
    const char *lead[] = {"--timeout-ms", "500", "publish", "lead.created", LEAD("n-1"), NULL};
    cr_assert_eq(ctl_as(-1, out, sizeof out, lead), 3, "%s", out);
    cr_assert(strstr(out, "security"), "%s", out);
    cr_assert_eq(fx_db_int(w.d.db, "SELECT count(*) FROM events"), 0);
}

/* funnel-webhook in this process with the CRM's key (who: -1 for none), its submit short so a
 * refused handshake is answered soon; POSTs a lead.created and returns the status. */
static long webhook_post(int who, const char *event_id)
{
    funnel_webhook_config_t cfg;
    funnel_webhook_t *wh = NULL;
    funnel_log_t quiet = {FUNNEL_LOG_ERROR, NULL};
    char conf[512], text[2048], keys[1024] = "", err[512], body[256];
    static fx_http_reply_t r;
    if (who >= 0)
        snprintf(keys, sizeof keys, "key = \"%s\";\nserver_key = \"%s\";\n", key[who], server_pub);
    snprintf(text, sizeof text,
             "port = 0;\nsubmit = \"%s\";\ntoken = \"t\";\nsubmit_timeout_ms = 500;\n"
             "submit_attempts = 1;\n%s",
             w.d.submit, keys);
    fx_file_write(w.tmp.path, "webhook.conf", text, conf, sizeof conf);
    cr_assert_eq(funnel_webhook_config_defaults(&cfg), 0);
    cr_assert_eq(funnel_webhook_config_load(conf, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(funnel_webhook_new(&cfg, &quiet, &wh), 0);
    const char *hdrs[] = {"Content-Type: application/json", "Authorization: Bearer t", NULL};
    snprintf(body, sizeof body, "{\"eventId\":\"%s\",\"leadId\":\"L-%s\"}", event_id, event_id);
    fx_http(funnel_webhook_port(wh), "/v1/events/lead.created", body, strlen(body), hdrs, &r);
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    return r.status;
}

Test(e2e_keys, webhook_with_a_listed_key_records_its_name_and_503s_without_one)
{
    cr_assert_eq(webhook_post(CRM, "wh-1"), 202);
    cr_assert_eq(fx_db_int(w.d.db, "SELECT count(*) FROM events WHERE event_id = 'wh-1' AND "
                                   "source = 'crm'"),
                 1);
    cr_assert_eq(webhook_post(-1, "wh-2"), 503);
    cr_assert_eq(webhook_post(STRANGER, "wh-3"), 503);
    cr_assert_eq(fx_db_int(w.d.db, "SELECT count(*) FROM events"), 1);
}

/* The sla_id of the first instance funnel-web lists. */
static void first_sla_id(const char *token, char *out, size_t len)
{
    static fx_http_reply_t r;
    fx_web_request(&w, token, "/api/v1/sla", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    const char *at = strstr(r.body, "\"sla_id\":\"");
    cr_assert_not_null(at, "no SLA instance: %s", r.body);
    at += strlen("\"sla_id\":\"");
    snprintf(out, len, "%.*s", (int)strcspn(at, "\""), at);
}

Test(e2e_keys, web_acknowledges_and_streams_with_its_key)
{
    char mia[65], text[1024], id[64], path[128];
    sql_lead("L-9");
    snprintf(w.users, sizeof w.users, "%s/users", w.tmp.path);
    fx_web_add_user(w.users, "mia", "manager", "mia-password", mia);
    snprintf(text, sizeof text, "key = \"%s\";\nserver_key = \"%s\";\n", key[WEB], server_pub);
    fx_web_spawn(&w, text);

    /* The stream: an escalation funneld produces after funnel-web started (what came before is
     * read from the database), so it came over CURVE. */
    sql_lead("L-10");
    static fx_sse_buf_t b;
    bool seen = false;
    for (int i = 0; i < 50 && !seen; i++) {
        fx_web_sse_read(&w, mia, "0", 300, &b);
        seen = strstr(b.text, "\"topic\":\"sla.escalation\"") && strstr(b.text, "\"L-10\"");
    }
    cr_assert(seen, "no escalation of L-10 on the stream: %.500s", b.text);

    first_sla_id(mia, id, sizeof id);
    snprintf(path, sizeof path, "/api/v1/sla/%s/ack", id);
    static fx_http_reply_t r;
    fx_web_request(&w, mia, path, "", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "\"answer\":\"ok\""), "%s", r.body);
    cr_assert_eq(fx_db_int(w.d.db, "SELECT count(*) FROM events WHERE topic = "
                                   "'escalation.acknowledged' AND source = 'web'"),
                 1);
}

/* ---- the config check at start ------------------------------------------------------------ */

static fx_tmpdir_t tmp;

static void config_setup(void)
{
    fx_tmpdir_make(&tmp);
}

static void config_teardown(void)
{
    fx_tmpdir_remove(&tmp);
}

TestSuite(web_config, .init = config_setup, .fini = config_teardown, .timeout = 60);

Test(web_config, key_and_server_key_are_checked_at_start)
{
    char conf[512], k[512], pub[512];
    fx_curve_config_check(FUNNEL_WEB_PATH, tmp.path, conf, k, pub, sizeof k);
}
