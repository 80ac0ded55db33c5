/* test_client_curve.c — the client library against in-test servers: CURVE on every socket it
 * opens (a ROUTER and a PUB with ZMQ_CURVE_SERVER and no ZAP handler, so any client key is
 * accepted, or a ZAP handler that refuses every key), the key file errors, and a follow over a
 * stream whose sequence has gaps because the server filters topics (as funneld does per
 * client with `subscribe`). */
#include "curve_fx.h"
#include "harness.h"
#include "http_fx.h"
#include "webhook.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/keyfile.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

static fx_tmpdir_t tmp;
static funnel_client_t *client;
/* tmp/NAME.key and tmp/NAME.pub of three pairs: funneld's, the client's, and a stranger's. */
static char server_key[300], server_pub[300], client_key[300], other_pub[300];
static funnel_keypair_t server_pair;

static void setup(void)
{
    fx_tmpdir_make(&tmp);
    fx_keys_make(tmp.path, "funneld", &server_pair, server_key, server_pub, 300);
    fx_keys_make(tmp.path, "billing", NULL, client_key, NULL, 300);
    fx_keys_make(tmp.path, "stranger", NULL, NULL, other_pub, 300);
    cr_assert_eq(funnel_client_new(&client), 0);
}

/* ---- the in-test server ---------------------------------------------------------------------
 * One thread, one ROUTER and one PUB on 127.0.0.1:*. The ROUTER acks every submit "ok" and
 * answers [replay][from] like funneld's replay with a filter: of the stream 1..committed it
 * sends only the sequences permitted() lets through, then [end][committed] (the last sequence
 * it considered). After the first replay it publishes the rest of the stream, up to `total`,
 * one sequence per turn, the permitted ones only. */
typedef struct fake {
    void *zctx, *router, *pub, *zap;
    char router_ep[64], pub_ep[64];
    uint64_t committed, total;
    bool curve, refuse_all;
    atomic_int replays;         /* replay requests answered */
    atomic_uint_fast64_t froms; /* from_seq of the last one */
    atomic_int connections;     /* replay requests from a routing id other than the last's */
    char last_id[256];          /* the routing id of the last replay request */
    atomic_bool stop;
    pthread_t thread;
} fake_t;

static fake_t fake;

static bool permitted(uint64_t seq)
{
    return seq % 3 == 0;
}

static void fake_row(void *sock, const zmq_msg_t *id, uint64_t seq)
{
    uint8_t s8[8];
    funnel_seq_encode(seq, s8);
    if (id)
        zmq_send(sock, zmq_msg_data((zmq_msg_t *)id), zmq_msg_size((zmq_msg_t *)id), ZMQ_SNDMORE);
    zmq_send(sock, "lead.created", 12, ZMQ_SNDMORE);
    zmq_send(sock, s8, 8, ZMQ_SNDMORE);
    zmq_send(sock, "envelope", 8, 0);
}

/* ZAP (rfc.zeromq.org/spec/27): every key is refused with status 400. */
static void fake_zap(fake_t *f)
{
    zmq_msg_t fr[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&fr[n]);
        zmq_msg_recv(&fr[n], f->zap, 0);
        more = zmq_msg_more(&fr[n++]);
    }
    zmq_send(f->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(f->zap, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), ZMQ_SNDMORE);
    zmq_send(f->zap, "400", 3, ZMQ_SNDMORE);
    zmq_send(f->zap, "unknown key", 11, ZMQ_SNDMORE);
    zmq_send(f->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(f->zap, "", 0, 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&fr[i]);
}

/* One request on the ROUTER: [id][replay][from] or [id][topic][Envelope]; anything else is
 * dropped (this runs on the server's thread, where Criterion cannot assert). */
static void fake_request(fake_t *f)
{
    zmq_msg_t fr[3];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t scratch, *m = n < 3 ? &fr[n] : &scratch;
        zmq_msg_init(m);
        zmq_msg_recv(m, f->router, 0);
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            n++;
    }
    if (n == 3 && zmq_msg_size(&fr[1]) == 6 && !memcmp(zmq_msg_data(&fr[1]), "replay", 6)) {
        uint64_t from = funnel_seq_decode(zmq_msg_data(&fr[2]));
        for (uint64_t s = from; s <= f->committed; s++)
            if (permitted(s))
                fake_row(f->router, &fr[0], s);
        uint8_t s8[8];
        funnel_seq_encode(f->committed, s8);
        zmq_send(f->router, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), ZMQ_SNDMORE);
        zmq_send(f->router, "end", 3, ZMQ_SNDMORE);
        zmq_send(f->router, s8, 8, 0);
        atomic_store(&f->froms, from);
        atomic_fetch_add(&f->replays, 1);
        size_t idlen = zmq_msg_size(&fr[0]) < 255 ? zmq_msg_size(&fr[0]) : 255;
        if (memcmp(f->last_id, zmq_msg_data(&fr[0]), idlen) || f->last_id[idlen]) {
            atomic_fetch_add(&f->connections, 1);
            memset(f->last_id, 0, sizeof f->last_id);
            memcpy(f->last_id, zmq_msg_data(&fr[0]), idlen);
        }
    } else if (n == 3) {
        funnel_envelope_t *env =
            funnel__v1__envelope__unpack(NULL, zmq_msg_size(&fr[2]), zmq_msg_data(&fr[2]));
        if (env) {
            zmq_send(f->router, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), ZMQ_SNDMORE);
            zmq_send(f->router, env->event_id, strlen(env->event_id), ZMQ_SNDMORE);
            zmq_send(f->router, "ok", 2, 0);
            funnel_envelope_free(&env);
        }
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&fr[i]);
}

static void *fake_run(void *arg)
{
    fake_t *f = arg;
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t items[2] = {{f->router, 0, ZMQ_POLLIN, 0}, {f->zap, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, f->zap ? 2 : 1, 20) < 0)
            break;
        if (items[0].revents)
            fake_request(f);
        if (f->zap && items[1].revents)
            fake_zap(f);
        if (!items[0].revents && atomic_load(&f->replays) && f->committed < f->total &&
            permitted(++f->committed))
            fake_row(f->pub, NULL, f->committed);
    }
    return NULL;
}

static void *fake_bind(fake_t *f, int type, char *ep)
{
    void *s = zmq_socket(f->zctx, type);
    int one = 1, linger = 0;
    size_t len = 64;
    cr_assert_not_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (f->curve) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, server_pair.secret_key, FUNNEL_KEY_Z85_LEN + 1);
    }
    cr_assert_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len);
    return s;
}

static void fake_start(bool curve, bool refuse_all, uint64_t committed, uint64_t total)
{
    fake_t *f = &fake;
    f->zctx = zmq_ctx_new();
    f->curve = curve;
    f->refuse_all = refuse_all;
    f->committed = committed;
    f->total = total;
    if (refuse_all) { /* bound first: libzmq admits every key while no handler is bound */
        int linger = 0;
        f->zap = zmq_socket(f->zctx, ZMQ_REP);
        zmq_setsockopt(f->zap, ZMQ_LINGER, &linger, sizeof linger);
        cr_assert_eq(zmq_bind(f->zap, "inproc://zeromq.zap.01"), 0);
    }
    f->router = fake_bind(f, ZMQ_ROUTER, f->router_ep);
    f->pub = fake_bind(f, ZMQ_PUB, f->pub_ep);
    cr_assert_eq(pthread_create(&f->thread, NULL, fake_run, f), 0);
}

static void fake_stop(void)
{
    fake_t *f = &fake;
    if (!f->zctx)
        return;
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    zmq_close(f->router);
    zmq_close(f->pub);
    if (f->zap)
        zmq_close(f->zap);
    zmq_ctx_term(f->zctx);
    memset(f, 0, sizeof *f);
}

static void teardown(void)
{
    funnel_client_destroy(&client);
    fake_stop();
    funnel_keypair_wipe(&server_pair);
    fx_tmpdir_remove(&tmp);
}

TestSuite(client_curve, .init = setup, .fini = teardown, .timeout = 60);

static int submit(int timeout_ms)
{
    funnel_envelope_t *env = fx_lead_created("e-1", "lead-1", fx_now_ms());
    funnel_submit_options_t o = {.timeout_ms = timeout_ms, .attempts = 1};
    funnel_submit_result_t res;
    int rc = funnel_client_submit(client, fake.router_ep, "lead.created", env, &o, &res);
    funnel_envelope_free(&env);
    if (!rc)
        cr_assert_eq(res.status, FUNNEL_SUBMIT_OK);
    return rc;
}

static int set_curve(const char *key, const char *server, char *err)
{
    return funnel_client_set_curve(client, key, server, err, 512);
}

Test(client_curve, submit_with_the_right_server_key_is_answered)
{
    char err[512];
    fake_start(true, false, 0, 0);
    cr_assert_eq(set_curve(client_key, server_pub, err), 0, "%s", err);
    cr_assert_eq(submit(10000), 0, "%s", funnel_client_error(client));
    /* funneld's .key serves as well: only its public key is read. */
    cr_assert_eq(set_curve(client_key, server_key, err), 0, "%s", err);
    cr_assert_eq(submit(10000), 0, "%s", funnel_client_error(client));
}

/* A CURVE submit with server as funneld's key, which must time out; returns what the client
 * says about it. */
static const char *timeout_why(const char *server)
{
    char err[512];
    cr_assert_eq(set_curve(client_key, server, err), 0, "%s", err);
    cr_assert_eq(submit(300), FUNNEL_ETIMEDOUT);
    return funnel_client_error(client);
}

Test(client_curve, a_wrong_server_key_times_out_with_the_curve_hint)
{
    fake_start(true, false, 0, 0);
    const char *why = timeout_why(other_pub);
    cr_assert(strstr(why, "CURVE handshake with funneld failed") && strstr(why, "server_key"), "%s",
              why);
}

Test(client_curve, a_refused_client_key_says_so)
{
    fake_start(true, true, 0, 0);
    const char *why = timeout_why(server_pub);
    cr_assert(strstr(why, "refused this client's key") && strstr(why, "400"), "%s", why);
}

Test(client_curve, silence_with_curve_on_still_names_the_handshake)
{
    fake_start(false, false, 0, 0);
    /* A plain server fails the handshake too; nobody at all answers on port 1. */
    const char *why = timeout_why(server_pub);
    cr_assert(strstr(why, "CURVE handshake with funneld failed"), "%s", why);
    snprintf(fake.router_ep, sizeof fake.router_ep, "tcp://127.0.0.1:1");
    why = timeout_why(server_pub);
    cr_assert_str_eq(why,
                     "no answer from funneld (CURVE handshake refused? check key and server_key)");
}

Test(client_curve, curve_off_again_with_null_null)
{
    char err[512];
    fake_start(true, false, 0, 0);
    cr_assert_eq(set_curve(client_key, server_pub, err), 0, "%s", err);
    cr_assert_eq(set_curve(NULL, NULL, err), 0);
    cr_assert_eq(submit(300), FUNNEL_ETIMEDOUT, "a plain client cannot talk to a CURVE server");
    const char *why = funnel_client_error(client);
    cr_assert(strstr(why, "security on") && strstr(why, "server_key"), "%s", why);
}

/* After its first handshake failed, a plain DEALER has no connection to queue on: a second
 * attempt used to block in zmq_send for as long as funneld ran (funnelctl hung for minutes). */
Test(client_curve, a_plain_client_of_a_curve_server_gives_up_after_its_attempts)
{
    fake_start(true, false, 0, 0);
    funnel_envelope_t *env = fx_lead_created("e-1", "lead-1", fx_now_ms());
    funnel_submit_options_t o = {.timeout_ms = 300, .attempts = 3, .backoff_ms = 0};
    funnel_submit_result_t res;
    cr_assert_eq(funnel_client_submit(client, fake.router_ep, "lead.created", env, &o, &res),
                 FUNNEL_ETIMEDOUT);
    funnel_envelope_free(&env);
    cr_assert(strstr(funnel_client_error(client), "security on"), "%s",
              funnel_client_error(client));
}

Test(client_curve, bad_key_files_are_refused_with_the_key_file_error)
{
    char err[512], path[512];
    fake_start(true, false, 0, 0);
    snprintf(path, sizeof path, "%s/missing.key", tmp.path);
    cr_assert_eq(set_curve(path, server_pub, err), FUNNEL_EIO);
    cr_assert(strstr(err, path), "%s", err);
    cr_assert_eq(set_curve(client_key, path, err), FUNNEL_EIO);
    cr_assert(strstr(err, path), "%s", err);

    fx_file_write(tmp.path, "junk.key", "not a certificate\n", path, sizeof path);
    cr_assert_eq(chmod(path, 0600), 0);
    cr_assert_eq(set_curve(path, server_pub, err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, path), "%s", err);
    /* A .pub has no secret key: it cannot be the client's own key. */
    cr_assert_eq(set_curve(server_pub, server_pub, err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, server_pub), "%s", err);
    cr_assert_eq(chmod(client_key, 0640), 0);
    cr_assert_eq(set_curve(client_key, server_pub, err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, client_key), "%s", err);
    cr_assert_eq(chmod(client_key, 0600), 0);
    cr_assert_eq(set_curve(client_key, NULL, err), FUNNEL_EINVAL);
    cr_assert_eq(set_curve(NULL, server_pub, err), FUNNEL_EINVAL);

    /* A failed call keeps the setting in force. */
    cr_assert_eq(set_curve(client_key, server_pub, err), 0, "%s", err);
    cr_assert_eq(set_curve(path, server_pub, err), FUNNEL_ECONFIG);
    cr_assert_eq(submit(10000), 0, "%s", funnel_client_error(client));
}

/* What a follow delivered. */
typedef struct seen {
    uint64_t seqs[64];
    size_t count;
} seen_t;

static int on_msg(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    seen_t *s = arg;
    (void)topic;
    (void)env;
    (void)len;
    cr_assert_lt(s->count, 64);
    s->seqs[s->count++] = seq;
    return 0;
}

/* Follows the fake server until 500 ms pass without a message; asserts every permitted
 * sequence of 1..total came once, in order, and that the follow ended on its idle timeout. */
static void follow_all(uint64_t total)
{
    funnel_follow_options_t o = {
        .idle_timeout_ms = 500, .request_timeout_ms = 5000, .gap_probe_ms = 100};
    seen_t s = {0};
    int rc = funnel_client_follow(client, fake.pub_ep, fake.router_ep, &o, on_msg, &s);
    cr_assert_eq(rc, 0, "%s %s", funnel_strerror(rc), funnel_client_error(client));
    size_t k = 0;
    for (uint64_t seq = 1; seq <= total; seq++)
        if (permitted(seq)) {
            cr_assert_lt(k, s.count, "sequence %llu missing", (unsigned long long)seq);
            cr_assert_eq(s.seqs[k++], seq);
        }
    cr_assert_eq(s.count, k, "nothing twice, nothing filtered");
}

Test(client_curve, follow_over_curve_sub_and_replay)
{
    char err[512];
    fake_start(true, false, 20, 40);
    cr_assert_eq(set_curve(client_key, server_pub, err), 0, "%s", err);
    follow_all(40);
}

/* Filtered gaps are not losses: after [end][last] the client continues after last, so it
 * neither re-asks for a filtered range nor follows forever. Replays: the first, at most one
 * per live message (a gap before it), and the quiet-spell probes (idle 500 / probe 100). */
Test(client_curve, follow_skips_filtered_gaps_without_replaying_them)
{
    fake_start(false, false, 20, 41);
    follow_all(41);
    int replays = atomic_load(&fake.replays);
    cr_assert_leq(replays, 1 + 7 + 6 + 2, "%d replays", replays);
    /* 40 and 41 are filtered out: the probes ask for what comes after them. */
    cr_assert_eq(atomic_load(&fake.froms), 42);
    /* Every replay ended with [end], so all of them used one connection (with CURVE, one
     * handshake rather than one per probe). */
    cr_assert_eq(atomic_load(&fake.connections), 1, "%d replays over %d connections", replays,
                 atomic_load(&fake.connections));
}

/* ---- funnelctl --key / --server-key ------------------------------------------------------ */

/* Runs funnelctl against the fake server with up to 8 arguments, after `--key client_key
 * --server-key server` unless server is NULL; returns the exit status. */
static int ctl(char *out, const char *server, const char *const *args)
{
    const char *argv[24] = {FUNNELCTL_PATH, "--submit",  fake.router_ep, "--replay", fake.router_ep,
                            "--publish",    fake.pub_ep, "--timeout-ms", "500"};
    size_t n = 9;
    if (server) {
        argv[n++] = "--key";
        argv[n++] = client_key;
        argv[n++] = "--server-key";
        argv[n++] = server;
    }
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return fx_run(argv, out, 4096);
}

#define LEAD "{\"eventId\":\"e-1\",\"leadId\":\"L-1\"}"

static const char *const publish_lead[] = {"publish", "lead.created", LEAD, NULL};

Test(client_curve, funnelctl_publishes_and_tails_with_keys)
{
    char out[4096];
    fake_start(true, false, 6, 6);
    cr_assert_eq(ctl(out, server_pub, publish_lead), 0, "%s", out);
    cr_assert_str_eq(out, "ok e-1\n");
    const char *tail[] = {"--count", "2", "tail", NULL};
    cr_assert_eq(ctl(out, server_pub, tail), 0, "%s", out);
    cr_assert(strstr(out, "\"seq\":3") && strstr(out, "\"seq\":6"), "%s", out);

    /* The same from the environment; an explicit flag wins over it. */
    setenv("FUNNEL_KEY", client_key, 1);
    setenv("FUNNEL_SERVER_KEY", other_pub, 1);
    const char *env_publish[] = {"--server-key", server_pub, "publish", "lead.created", LEAD, NULL};
    int rc = ctl(out, NULL, env_publish);
    unsetenv("FUNNEL_KEY");
    unsetenv("FUNNEL_SERVER_KEY");
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert_str_eq(out, "ok e-1\n");
}

Test(client_curve, funnelctl_names_a_refused_handshake)
{
    char out[4096];
    fake_start(true, false, 0, 0);
    cr_assert_eq(ctl(out, other_pub, publish_lead), 3, "%s", out);
    cr_assert(strstr(out, "did not answer") && strstr(out, "CURVE handshake"), "%s", out);
    const char *tail[] = {"tail", NULL};
    cr_assert_eq(ctl(out, other_pub, tail), 3, "%s", out);
    cr_assert(strstr(out, "did not answer") && strstr(out, "CURVE handshake"), "%s", out);
}

Test(client_curve, funnelctl_refuses_bad_key_options_before_sending)
{
    char out[4096], missing[512];
    fake_start(true, false, 0, 0);
    snprintf(missing, sizeof missing, "%s/nope.key", tmp.path);
    const char *bad_key[] = {"--key",   missing,        "--server-key", server_pub,
                             "publish", "lead.created", LEAD,           NULL};
    cr_assert_eq(ctl(out, NULL, bad_key), 2, "%s", out);
    cr_assert(strstr(out, missing) && strstr(out, "--key"), "%s", out);
    const char *bad_server[] = {"--key", client_key, "--server-key", missing, "tail", NULL};
    cr_assert_eq(ctl(out, NULL, bad_server), 2, "%s", out);
    cr_assert(strstr(out, missing), "%s", out);
    const char *alone[] = {"--key", client_key, "publish", "lead.created", LEAD, NULL};
    cr_assert_eq(ctl(out, NULL, alone), 2, "%s", out);
    cr_assert(strstr(out, "both"), "%s", out);
}

/* ---- funnel-webhook with `key` and `server_key` ------------------------------------------ */

Test(client_curve, webhook_submits_over_curve)
{
    funnel_webhook_config_t cfg;
    funnel_webhook_t *wh = NULL;
    funnel_log_t quiet = {FUNNEL_LOG_ERROR, NULL};
    char conf[512], text[2048], err[512];
    static fx_http_reply_t r;
    fake_start(true, false, 0, 0);
    snprintf(text, sizeof text,
             "port = 0;\nsubmit = \"%s\";\ntoken = \"t\";\nkey = \"%s\";\nserver_key = \"%s\";\n",
             fake.router_ep, client_key, server_pub);
    fx_file_write(tmp.path, "webhook.conf", text, conf, sizeof conf);
    cr_assert_eq(funnel_webhook_config_defaults(&cfg), 0);
    cr_assert_eq(funnel_webhook_config_load(conf, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(funnel_webhook_new(&cfg, &quiet, &wh), 0);
    const char *hdrs[] = {"Content-Type: application/json", "Authorization: Bearer t", NULL};
    fx_http(funnel_webhook_port(wh), "/v1/events/lead.created", LEAD, strlen(LEAD), hdrs, &r);
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
}
