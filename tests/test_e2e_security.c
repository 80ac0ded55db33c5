/* test_e2e_security.c — the real funneld with `security`: CURVE handshakes against the ZAP
 * handler, per-client publish rights on ingest and submit, subscribe rights on the publish
 * socket and on replay, SIGHUP reload of the clients file, the recorded source, and the
 * start-up refusals (non-loopback without security, a secret key open to others).
 *
 * Clients are raw ZeroMQ sockets with the CURVE options set directly; handshake outcomes are
 * read from socket monitors, so no assertion waits for a quiet spell. */
#include "harness.h"
#include "http_fx.h"
#include "ledger_fx.h"
#include "sla_fx.h"
#include "sql_fx.h"

#include "funnel/keyfile.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

enum { BILLING, CRM, PAYROLL, ONCALL, BI, STRANGER, N_KEYS };
static const char *const names[N_KEYS] = {"billing", "crm", "payroll", "oncall", "bi", "stranger"};

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static void *zctx;
static funnel_keypair_t server, keys[N_KEYS];
static char conf[300], clients_path[300], server_key_path[300];

/* One clients entry per listed key (the stranger is never listed); without `billing` when
 * drop_billing, for the reload test. */
static void clients_write(bool drop_billing)
{
    static const char *const rights[N_KEYS] = {
        [BILLING] = "publish = [\"payment.*\"]; subscribe = [\"sla.\"];",
        [CRM] = "publish = [\"lead.*\", \"client.handed_off\"];",
        [PAYROLL] = "publish = [\"commission.paid\"]; subscribe = [\"commission.\"];",
        [ONCALL] = "publish = [\"escalation.acknowledged\"]; subscribe = [\"sla.\"];",
        [BI] = "subscribe = [\"\"];",
    };
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "clients = (\n");
    for (int i = 0; i < STRANGER; i++) {
        if (i == BILLING && drop_billing)
            continue;
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "  { name = \"%s\"; public_key = \"%s\"; %s },\n", names[i],
                              keys[i].public_key, rights[i]);
    }
    text[n - 2] = '\n'; /* no comma after the last */
    snprintf(text + n - 1, sizeof text - n + 1, ");\n");
    fx_file_write(tmp.path, "clients.conf", text, clients_path, sizeof clients_path);
}

/* The SLA policy gives the on-call subscriber something it may see: lead.contacted after an
 * SQL qualification emits sla.met. */
static void setup(void)
{
    fx_tmpdir_make(&tmp);
    char base[280];
    snprintf(base, sizeof base, "%s/server", tmp.path);
    char err[256];
    cr_assert_eq(funnel_keypair_new(&server), 0);
    cr_assert_eq(funnel_keyfile_write(base, &server, err, sizeof err), 0, "%s", err);
    snprintf(server_key_path, sizeof server_key_path, "%s.key", base);
    for (int i = 0; i < N_KEYS; i++)
        cr_assert_eq(funnel_keypair_new(&keys[i]), 0);
    clients_write(false);
    char text[2048];
    snprintf(text, sizeof text,
             "security = { server_key = \"%s\"; clients = \"%s\"; };\n"
             "metrics = \"127.0.0.1:0\";\n"
             "sla = { policies = ( { name = \"sql\"; start = \"lead.qualified stage=SQL\"; "
             "key = \"lead_id\"; stop = [\"lead.contacted\"]; target = \"1h\"; calendar = "
             "\"24x7\"; warning = \"30m\"; escalation = ( { after = \"1h\"; notify = \"tl\"; } ); "
             "} ); };\n",
             server_key_path, clients_path);
    fx_file_write(tmp.path, "funneld.conf", text, conf, sizeof conf);
    zctx = zmq_ctx_new();
}

static void start(void)
{
    setup();
    const char *args[] = {"--config", conf, NULL};
    fx_daemon_start(&fd, tmp.path, args);
}

/* Every socket a test opens, closed by stop() even when an assertion ended the test early
 * (zmq_ctx_term would wait for them for ever). */
static void *socks[32];

static void *track(void *s)
{
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        if (!socks[i])
            return socks[i] = s;
    cr_assert_fail("more than %zu sockets", sizeof socks / sizeof socks[0]);
    return s;
}

static void sock_close(void *s)
{
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        if (socks[i] == s)
            socks[i] = NULL;
    zmq_close(s);
}

static void stop(void)
{
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        if (socks[i])
            sock_close(socks[i]);
    if (zctx)
        zmq_ctx_term(zctx);
    zctx = NULL;
    fx_daemon_finish(&fd);
    fx_tmpdir_remove(&tmp);
}

TestSuite(e2e_security, .init = start, .fini = stop, .timeout = 120);

/* A socket of client `who` (-1: no CURVE at all) connected to endpoint. */
static void *client_sock(int who, int type, const char *endpoint)
{
    if (who < 0)
        return track(fx_zsock_connect(zctx, type, endpoint));
    return track(fx_zsock_connect_curve(zctx, type, endpoint, keys[who].public_key,
                                        keys[who].secret_key, server.public_key));
}

/* An unconnected socket of a client key (NULL keys: plain), tracked. */
static void *curve_sock(void *ctx, int type, const char *pub, const char *sec, const char *srv)
{
    return track(fx_zsock_curve(ctx, type, pub, sec, srv));
}

/* Connects s to endpoint under a monitor and returns the handshake's outcome: the
 * ZMQ_EVENT_HANDSHAKE_* event that ended it (asserts one came). */
static int handshake(void *s, const char *endpoint)
{
    static int serial;
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://security-monitor-%d", serial++);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    cr_assert_eq(zmq_socket_monitor(s, mon_ep, events), 0);
    void *mon = track(fx_zsock_connect(zctx, ZMQ_PAIR, mon_ep));
    cr_assert_eq(zmq_connect(s, endpoint), 0);
    uint8_t ev[6];
    char addr[256];
    int r = zmq_recv(mon, ev, sizeof ev, 0);
    cr_assert_eq(r, 6, "no handshake event within the monitor's timeout");
    cr_assert_geq(zmq_recv(mon, addr, sizeof addr, 0), 0);
    sock_close(mon);
    zmq_socket_monitor(s, NULL, 0);
    return ev[0] | ev[1] << 8;
}

/* Sends env on topic (NULL: its own) and frees it. */
static void send_env(void *s, const char *topic, funnel_envelope_t *env)
{
    size_t len;
    uint8_t *buf = fx_pack(env, &len);
    topic = topic ? topic : funnel_topic_name(env->body_case);
    cr_assert_geq(zmq_send(s, topic, strlen(topic), ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(s, buf, len, 0), 0);
    free(buf);
    funnel_envelope_free(&env);
}

/* Submits env on topic through a DEALER of `who` and returns the answer's status. */
static void submit_as(void *dealer, const char *topic, funnel_envelope_t *env, fx_answer_t *a)
{
    send_env(dealer, topic, env);
    fx_answer_recv(dealer, a);
}

/* A DEALER of `who` on the replay socket that has asked for everything from sequence 1. */
static void *replay_from_start(int who)
{
    void *replay = client_sock(who, ZMQ_DEALER, fd.replay);
    uint8_t from[8];
    funnel_seq_encode(1, from);
    cr_assert_geq(zmq_send(replay, "replay", 6, ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(replay, from, 8, 0), 0);
    return replay;
}

static int64_t db_int(const char *sql)
{
    return fx_db_int(fd.db, sql);
}

Test(e2e_security, no_key_means_no_handshake_and_nothing_recorded)
{
    void *dealer = curve_sock(zctx, ZMQ_DEALER, NULL, NULL, NULL);
    void *pub = curve_sock(zctx, ZMQ_PUB, NULL, NULL, NULL);
    cr_assert_neq(handshake(dealer, fd.submit), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    cr_assert_neq(handshake(pub, fd.ingest), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    send_env(pub, NULL, fx_payment("anon-pay", "p-anon", "c-1", 100000000, "EUR", fx_now_ms()));
    sock_close(pub);
    sock_close(dealer);
    /* A listed client's event after them: once it is answered, anything the anonymous sockets
     * had managed to deliver would have been recorded before it. */
    void *billing = client_sock(BILLING, ZMQ_DEALER, fd.submit);
    fx_answer_t a;
    submit_as(billing, NULL, fx_payment("pay-1", "p-1", "c-1", 5000, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "ok");
    sock_close(billing);
    cr_assert_eq(db_int("SELECT count(*) FROM events"), 1);
    cr_assert_eq(db_int("SELECT count(*) FROM events WHERE event_id = 'anon-pay'"), 0);
}

Test(e2e_security, unknown_key_fails_the_handshake_and_is_logged_with_its_key)
{
    void *s = curve_sock(zctx, ZMQ_DEALER, keys[STRANGER].public_key, keys[STRANGER].secret_key,
                         server.public_key);
    cr_assert_eq(handshake(s, fd.submit), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    sock_close(s);
    char needle[128];
    snprintf(needle, sizeof needle, "unknown key %s", keys[STRANGER].public_key);
    cr_assert(fx_daemon_log_has(&fd, needle, 5000), "no log line with the refused key");
    static fx_http_reply_t scrape;
    fx_metrics_scrape(fd.metrics_port, &scrape);
    cr_assert_geq(fx_metric(scrape.body, "funnel_security_denied_total{kind=\"unknown_key\"}"), 1,
                  "%s", scrape.body);
    void *ok =
        curve_sock(zctx, ZMQ_DEALER, keys[CRM].public_key, keys[CRM].secret_key, server.public_key);
    cr_assert_eq(handshake(ok, fd.submit), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    sock_close(ok);
}

Test(e2e_security, billing_publishes_payments_and_is_refused_leads)
{
    void *billing = client_sock(BILLING, ZMQ_DEALER, fd.submit);
    fx_answer_t a;
    submit_as(billing, NULL, fx_payment("pay-1", "p-1", "c-1", 5000, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "ok");
    submit_as(billing, NULL, fx_lead_created("lead-1", "L-1", fx_now_ms()), &a);
    cr_assert_str_eq(a.event_id, "lead-1");
    cr_assert_str_eq(a.status, "rejected: forbidden: billing may not publish lead.created");
    sock_close(billing);
    cr_assert_eq(db_int("SELECT count(*) FROM events WHERE event_id = 'lead-1'"), 0);
    cr_assert_eq(db_int("SELECT count(*) FROM dead_letters WHERE reason = 'forbidden' AND "
                        "event_id = 'lead-1'"),
                 1);
    cr_assert(fx_daemon_log_has(&fd, "billing may not publish lead.created", 5000));
}

/* A PUB drops messages until the SUB's subscription reached it, which comes after the
 * handshake: the event is sent again until funneld's log shows its refusal. */
static void publish_until_logged(void *pub, funnel_envelope_t *(*make)(void), const char *needle)
{
    for (int tries = 0; tries < 100; tries++) {
        send_env(pub, NULL, make());
        if (fx_daemon_log_has(&fd, needle, 100))
            return;
    }
    cr_assert_fail("funneld never logged \"%s\"", needle);
}

static funnel_envelope_t *paid_on_ingest(void)
{
    return fx_commission_paid("paid-2", "po-2", "mallory", fx_now_ms(), fx_now_ms());
}

Test(e2e_security, crm_cannot_pay_commissions_on_submit_or_ingest)
{
    void *crm = client_sock(CRM, ZMQ_DEALER, fd.submit);
    fx_answer_t a;
    submit_as(crm, NULL, fx_commission_paid("paid-1", "po-1", "mallory", fx_now_ms(), fx_now_ms()),
              &a);
    cr_assert_str_eq(a.status, "rejected: forbidden: crm may not publish commission.paid");
    void *pub =
        curve_sock(zctx, ZMQ_PUB, keys[CRM].public_key, keys[CRM].secret_key, server.public_key);
    cr_assert_eq(handshake(pub, fd.ingest), ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    publish_until_logged(pub, paid_on_ingest,
                         "event_id=paid-2: forbidden: crm may not publish commission.paid");
    sock_close(pub);
    sock_close(crm);
    cr_assert_eq(db_int("SELECT count(*) FROM events WHERE topic = 'commission.paid'"), 0);
}

/* Receives the next message of a SUB socket: its topic (at most 63 bytes) and envelope. */
static bool sub_next(void *sub, char *topic, funnel_envelope_t **env)
{
    uint8_t seq[8], body[4096];
    int tl = zmq_recv(sub, topic, 63, 0);
    if (tl < 0)
        return false;
    topic[tl] = '\0';
    cr_assert_eq(zmq_recv(sub, seq, sizeof seq, 0), 8);
    int bl = zmq_recv(sub, body, sizeof body, 0);
    cr_assert_geq(bl, 0);
    *env = funnel__v1__envelope__unpack(NULL, (size_t)bl, body);
    return true;
}

Test(e2e_security, recorded_source_is_the_authenticated_name_and_the_claim_is_kept)
{
    void *billing = client_sock(BILLING, ZMQ_DEALER, fd.submit);
    funnel_envelope_t *env = fx_payment("pay-src", "p-src", "c-1", 700, "EUR", fx_now_ms());
    free(env->source);
    env->source = strdup("stripe-but-really-mallory");
    fx_answer_t a;
    submit_as(billing, NULL, env, &a);
    cr_assert_str_eq(a.status, "ok");
    sock_close(billing);
    cr_assert_eq(db_int("SELECT count(*) FROM events WHERE event_id = 'pay-src' AND source = "
                        "'billing' AND claimed_source = 'stripe-but-really-mallory'"),
                 1);
    char out[8192];
    const char *args[] = {"events", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, args), 0, "%s", out);
    cr_assert(strstr(out, "\"source\":\"billing\"") &&
                  strstr(out, "\"claimed_source\":\"stripe-but-really-mallory\""),
              "%s", out);
    /* The envelope replayed (the outbox row, which is also what was published live) says
     * billing too. */
    char topic[64];
    void *replay = replay_from_start(BI);
    uint8_t seq[8], body[4096];
    int tl = zmq_recv(replay, topic, sizeof topic - 1, 0);
    cr_assert_gt(tl, 0);
    topic[tl] = '\0';
    cr_assert_str_eq(topic, "payment.received");
    cr_assert_eq(zmq_recv(replay, seq, sizeof seq, 0), 8);
    int bl = zmq_recv(replay, body, sizeof body, 0);
    funnel_envelope_t *got = funnel__v1__envelope__unpack(NULL, (size_t)bl, body);
    cr_assert_not_null(got);
    cr_assert_str_eq(got->source, "billing");
    funnel_envelope_free(&got);
    sock_close(replay);
}

/* lead.qualified (SQL) then lead.contacted for lead: the SLA engine emits sla.met. */
static void sla_met(void *crm, const char *lead)
{
    char q[64], c[64];
    snprintf(q, sizeof q, "q-%s", lead);
    snprintf(c, sizeof c, "c-%s", lead);
    fx_answer_t a;
    int64_t now = fx_now_ms();
    submit_as(crm, NULL, fx_qualified(q, lead, FUNNEL__V1__STAGE__SQL, now - 1000), &a);
    cr_assert_str_eq(a.status, "ok");
    submit_as(crm, NULL, fx_contacted(c, lead, now), &a);
    cr_assert_str_eq(a.status, "ok");
}

/* Until both subscribers' subscriptions are applied, what is published may miss them: an
 * sla.met both may see is produced again until each has received one. */
static void subscriptions_sync(void *crm, void *oncall, void *bi)
{
    int timeout = 200;
    zmq_setsockopt(oncall, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(bi, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    bool seen_oncall = false, seen_bi = false;
    for (int i = 0; i < 50 && !(seen_oncall && seen_bi); i++) {
        char lead[32], topic[64];
        snprintf(lead, sizeof lead, "sync-%d", i);
        sla_met(crm, lead);
        funnel_envelope_t *env = NULL;
        while (!seen_oncall && sub_next(oncall, topic, &env)) {
            seen_oncall = strcmp(topic, "sla.met") == 0;
            funnel_envelope_free(&env);
        }
        while (!seen_bi && sub_next(bi, topic, &env)) {
            seen_bi = strcmp(topic, "sla.met") == 0;
            funnel_envelope_free(&env);
        }
    }
    cr_assert(seen_oncall && seen_bi, "the subscriptions never took effect");
    timeout = 10000;
    zmq_setsockopt(oncall, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(bi, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
}

/* Reads bi's stream up to the first message of topic; asserts it comes. */
static void sub_skip_to(void *sub, const char *want)
{
    char topic[64];
    funnel_envelope_t *env = NULL;
    while (sub_next(sub, topic, &env)) {
        funnel_envelope_free(&env);
        if (strcmp(topic, want) == 0)
            return;
    }
    cr_assert_fail("no %s on the stream", want);
}

Test(e2e_security, an_sla_subscriber_never_sees_a_payment_live_or_by_replay)
{
    void *crm = client_sock(CRM, ZMQ_DEALER, fd.submit);
    void *billing = client_sock(BILLING, ZMQ_DEALER, fd.submit);
    /* Two clients with different rights on the same socket, both asking for everything. */
    void *oncall = client_sock(ONCALL, ZMQ_SUB, fd.publish);
    void *bi = client_sock(BI, ZMQ_SUB, fd.publish);
    zmq_setsockopt(oncall, ZMQ_SUBSCRIBE, "", 0);
    zmq_setsockopt(bi, ZMQ_SUBSCRIBE, "", 0);
    /* An explicit ask outside its prefixes is not applied either. */
    zmq_setsockopt(oncall, ZMQ_SUBSCRIBE, "payment.", 8);
    subscriptions_sync(crm, oncall, bi);
    fx_answer_t a;
    submit_as(billing, NULL, fx_payment("pay-live", "p-live", "c-1", 900, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "ok");
    sla_met(crm, "after-payment");
    /* bi sees the payment, so it was published; oncall's next message is the sla.met after it. */
    sub_skip_to(bi, "payment.received");
    char topic[64];
    funnel_envelope_t *env = NULL;
    do {
        cr_assert(sub_next(oncall, topic, &env), "oncall got nothing");
        cr_assert(strncmp(topic, "sla.", 4) == 0, "oncall received %s", topic);
        bool marker = env && env->body_case == FUNNEL__V1__ENVELOPE__BODY_SLA_MET &&
                      strcmp(env->sla_met->stop_event_id, "c-after-payment") == 0;
        funnel_envelope_free(&env);
        if (marker)
            break;
    } while (true);
    cr_assert(fx_daemon_log_has(&fd, "oncall may not subscribe to \"payment.\"", 5000));
    /* The stream ends with a row oncall may not see: [end] must still name it. */
    submit_as(billing, NULL, fx_payment("pay-tail", "p-tail", "c-1", 900, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "ok");

    /* Replay from the start: only sla.* rows, and [end] names the last sequence of all. */
    void *replay = replay_from_start(ONCALL);
    size_t rows = 0;
    for (;;) {
        uint8_t seq[8], body[4096];
        int tl = zmq_recv(replay, topic, sizeof topic - 1, 0);
        cr_assert_gt(tl, 0, "the replay stopped");
        topic[tl] = '\0';
        cr_assert_eq(zmq_recv(replay, seq, sizeof seq, 0), 8);
        if (strcmp(topic, "end") == 0) {
            cr_assert_eq(funnel_seq_decode(seq), fx_daemon_last_seq(&fd));
            break;
        }
        cr_assert(strncmp(topic, "sla.", 4) == 0, "replayed %s to oncall", topic);
        cr_assert_geq(zmq_recv(replay, body, sizeof body, 0), 0);
        rows++;
    }
    cr_assert_gt(rows, 0);
    sock_close(replay);
    sock_close(oncall);
    sock_close(bi);
    sock_close(billing);
    sock_close(crm);
}

Test(e2e_security, a_key_removed_by_reload_is_refused_on_its_next_message)
{
    void *billing = client_sock(BILLING, ZMQ_DEALER, fd.submit);
    fx_answer_t a;
    submit_as(billing, NULL, fx_payment("pay-a", "p-a", "c-1", 100, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "ok");
    clients_write(true);
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "clients reloaded", 10000));
    submit_as(billing, NULL, fx_payment("pay-b", "p-b", "c-1", 100, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "rejected: forbidden: billing may not publish payment.received");
    sock_close(billing);
    void *again = curve_sock(zctx, ZMQ_DEALER, keys[BILLING].public_key, keys[BILLING].secret_key,
                             server.public_key);
    cr_assert_eq(handshake(again, fd.submit), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    sock_close(again);
    cr_assert_eq(db_int("SELECT count(*) FROM events WHERE event_id = 'pay-b'"), 0);
}

Test(e2e_security, a_bad_clients_file_on_reload_keeps_the_running_table)
{
    fx_file_put(clients_path, "clients = ( { name = \"x\"; public_key = \"short\"; } );\n");
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "clients reload refused, keeping the running table", 10000));
    cr_assert(fx_daemon_log_has(&fd, "public_key is not a 40-character Z85 key", 0));
    void *billing = client_sock(BILLING, ZMQ_DEALER, fd.submit);
    fx_answer_t a;
    submit_as(billing, NULL, fx_payment("pay-k", "p-k", "c-1", 100, "EUR", fx_now_ms()), &a);
    cr_assert_str_eq(a.status, "ok");
    sock_close(billing);
}

/* ---- start-up refusals: funneld run to its exit ---------------------------------------- */

TestSuite(e2e_security_start, .init = setup, .fini = stop, .timeout = 60);

/* Runs funneld with args until it exits (it must not get ready); returns its status. */
static int run_funneld(const char *const *args, char *out, size_t out_len)
{
    const char *argv[16] = {FUNNELD_PATH, "--database", fd.db};
    snprintf(fd.db, sizeof fd.db, "%s/funneld.db", tmp.path);
    int n = 3;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return fx_run(argv, out, out_len);
}

Test(e2e_security_start, a_non_loopback_bind_without_security_is_refused)
{
    char out[4096];
    const char *args[] = {"--ingest", "tcp://0.0.0.0:*", NULL};
    cr_assert_neq(run_funneld(args, out, sizeof out), 0);
    cr_assert(strstr(out, "ingest: 'tcp://0.0.0.0:*' is not a loopback address"), "%s", out);
}

Test(e2e_security_start, allow_insecure_binds_anything_with_a_warning)
{
    const char *args[] = {"--ingest", "tcp://0.0.0.0:*", "--set", "allow_insecure=true", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    cr_assert(fx_daemon_log_has(&fd, "allow_insecure = true and no security section", 0));
}

Test(e2e_security_start, a_bad_clients_file_is_refused_at_start)
{
    fx_file_put(clients_path, "clients = ( { name = \"crm\"; public_key = \"x\"; role = 1; } );\n");
    char out[4096];
    const char *args[] = {"--config", conf, NULL};
    cr_assert_neq(run_funneld(args, out, sizeof out), 0);
    cr_assert(strstr(out, "clients.conf:1: crm: unknown setting 'role'"), "%s", out);
}

Test(e2e_security_start, a_secret_key_readable_by_others_is_refused)
{
    cr_assert_eq(chmod(server_key_path, 0644), 0);
    char out[4096];
    const char *args[] = {"--config", conf, NULL};
    cr_assert_neq(run_funneld(args, out, sizeof out), 0);
    cr_assert(strstr(out, server_key_path), "%s", out);
    cr_assert(strstr(out, "group or others"), "%s", out);
}
