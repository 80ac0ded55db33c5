/* test_e2e.c — the real funneld binary on ephemeral loopback ports, real ZeroMQ sockets. */
#include "harness.h"
#include "http_fx.h"
#include "ledger_fx.h"
#include "sql_fx.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "store.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_client_t *client;
static void *zctx;

static void start_default(void)
{
    fx_tmpdir_make(&tmp);
    memset(&fd, 0, sizeof fd);
    cr_assert_eq(funnel_client_new(&client), 0);
    zctx = zmq_ctx_new();
    /* FUNNEL_TEST_DEBUG=1 makes funneld log at debug level (with FUNNEL_TEST_KEEP=1). */
    const char *args[] = {"--log-level", getenv("FUNNEL_TEST_DEBUG") ? "debug" : "info", NULL};
    fx_daemon_start(&fd, tmp.path, args);
}

/* Sockets a test opened and has not closed: closed by the fini, so zmq_ctx_term cannot hang
 * after a failed assertion skipped a test's own clean-up. */
static void *open_sockets[64];

static void close_socket(void *s)
{
    for (size_t i = 0; i < 64; i++)
        if (open_sockets[i] == s)
            open_sockets[i] = NULL;
    zmq_close(s);
}

/* A small filesystem a test mounted (and may have filled); unmounted by the fini, after funneld
 * stopped, before the temporary directory holding it is removed. */
static char small_fs[320];

static void stop_all(void)
{
    for (size_t i = 0; i < 64; i++)
        if (open_sockets[i])
            close_socket(open_sockets[i]);
    /* A graceful stop also checks the shutdown path and lets funneld report leaks. */
    fx_daemon_finish(&fd);
    if (small_fs[0] && umount2(small_fs, MNT_DETACH))
        fprintf(stderr, "FUNNEL TEST ERROR: umount %s: %s\n", small_fs, strerror(errno));
    small_fs[0] = '\0';
    funnel_client_destroy(&client);
    if (zctx)
        zmq_ctx_term(zctx);
    zctx = NULL;
    fx_tmpdir_remove(&tmp);
}

TestSuite(e2e, .init = start_default, .fini = stop_all, .timeout = 120);

/* A socket registered for clean-up, not yet connected (options like HWM go first). */
static void *make_socket(int type)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0, timeout = 5000;
    cr_assert_not_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    for (size_t i = 0; i < 64; i++)
        if (!open_sockets[i]) {
            open_sockets[i] = s;
            break;
        }
    return s;
}

static void *connect_socket(int type, const char *endpoint)
{
    void *s = make_socket(type);
    cr_assert_eq(zmq_connect(s, endpoint), 0);
    return s;
}

/* Sends one lead.created without waiting for its ack (pipelined submit), or publishes it on a
 * PUB socket: the frames are the same. */
static void dealer_send_lead(void *dealer, const char *event_id, int64_t now)
{
    funnel_envelope_t *env = fx_lead_created(event_id, "lead-p", now);
    size_t len;
    uint8_t *buf = fx_pack(env, &len);
    zmq_send(dealer, "lead.created", 12, ZMQ_SNDMORE);
    zmq_send(dealer, buf, len, 0);
    free(buf);
    funnel_envelope_free(&env);
}

static void submit_lead(const char *event_id, const char *lead_id, funnel_submit_status_t want)
{
    fx_submit(client, &fd, fx_lead_created(event_id, lead_id, fx_now_ms()), (int)want);
}

static int64_t count_events(int64_t *dead)
{
    funnel_store_t *st;
    char err[256];
    int64_t events = -1, dl = -1;
    cr_assert_eq(funnel_store_open(fd.db, true, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(funnel_store_event_count(st, &events, &dl), 0);
    funnel_store_destroy(&st);
    if (dead)
        *dead = dl;
    return events;
}

/* Sends [frames...] on a DEALER and returns the status frame of the reply in out. */
static void raw_submit(const void *const *frames, const size_t *lens, size_t n, char *out,
                       size_t out_len)
{
    void *s = connect_socket(ZMQ_DEALER, fd.submit);
    for (size_t i = 0; i < n; i++)
        cr_assert_geq(zmq_send(s, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0), 0);
    char id[256];
    int r = zmq_recv(s, id, sizeof id, 0);
    cr_assert_geq(r, 0, "no reply from funneld");
    int more;
    size_t ml = sizeof more;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    cr_assert(more, "reply has no status frame");
    r = zmq_recv(s, out, out_len - 1, 0);
    cr_assert_geq(r, 0);
    out[(size_t)r < out_len - 1 ? (size_t)r : out_len - 1] = '\0';
    close_socket(s);
}

/* Sends [replay][from] on s. */
static void replay_request(void *s, uint64_t from)
{
    uint8_t b[8];
    funnel_seq_encode(from, b);
    cr_assert_eq(zmq_send(s, "replay", 6, ZMQ_SNDMORE), 6);
    cr_assert_eq(zmq_send(s, b, 8, 0), 8);
}

/* Pipelines `total` lead.created submits (500 in flight) and returns how many were acked ok. */
static int submit_many(const char *prefix, int total)
{
    return (int)fx_submit_pipelined(fd.submit, (size_t)total, 500, fx_numbered_lead, (void *)prefix,
                                    NULL, NULL);
}

/* Replays from `from` and collects up to max sequences until [end]; returns how many rows came,
 * *last the end. */
static size_t replay_seqs(uint64_t from, uint64_t *seqs, size_t max, uint64_t *last)
{
    void *s = connect_socket(ZMQ_DEALER, fd.replay);
    replay_request(s, from);
    size_t n = 0;
    for (;;) {
        zmq_msg_t m[3];
        int k = 0, more = 1;
        while (more) {
            zmq_msg_init(&m[k < 3 ? k : 2]);
            cr_assert_geq(zmq_msg_recv(&m[k < 3 ? k : 2], s, 0), 0, "replay timed out");
            more = zmq_msg_more(&m[k < 3 ? k : 2]);
            k++;
        }
        cr_assert(k == 2 || k == 3, "unexpected %d frames", k);
        bool end = k == 2 && zmq_msg_size(&m[0]) == 3 && !memcmp(zmq_msg_data(&m[0]), "end", 3);
        uint64_t seq = funnel_seq_decode(zmq_msg_data(&m[1]));
        for (int i = 0; i < k; i++)
            zmq_msg_close(&m[i]);
        if (end) {
            *last = seq;
            break;
        }
        if (k == 3 && n < max)
            seqs[n] = seq;
        n += k == 3; /* counts every row, also those past max */
    }
    close_socket(s);
    return n;
}

Test(e2e, submit_records_once_and_acks_duplicates)
{
    submit_lead("evt-1", "lead-1", FUNNEL_SUBMIT_OK);
    submit_lead("evt-1", "lead-1", FUNNEL_SUBMIT_DUPLICATE);
    submit_lead("evt-2", "lead-2", FUNNEL_SUBMIT_OK);
    cr_assert_eq(count_events(NULL), 2);
    uint64_t seqs[8], last = 0;
    size_t n = replay_seqs(1, seqs, 8, &last);
    cr_assert_eq(n, 2, "a duplicate must not be republished");
    cr_assert_eq(seqs[0], 1);
    cr_assert_eq(seqs[1], 2);
    cr_assert_eq(last, 2);
}

Test(e2e, publish_through_sub_socket_is_recorded_and_republished)
{
    void *out = connect_socket(ZMQ_SUB, fd.publish);
    zmq_setsockopt(out, ZMQ_SUBSCRIBE, "lead.", 5);
    void *pub = connect_socket(ZMQ_PUB, fd.ingest);
    funnel_envelope_t *env = fx_lead_created("evt-pub-1", "lead-9", fx_now_ms());
    size_t len;
    uint8_t *buf = fx_pack(env, &len);
    /* PUB/SUB has no handshake: resend until the subscriber sees it; dedup keeps one. */
    char topic[32] = "";
    uint8_t seq[8];
    for (int i = 0; i < 100 && !topic[0]; i++) {
        zmq_send(pub, "lead.created", 12, ZMQ_SNDMORE);
        zmq_send(pub, buf, len, 0);
        int t = 100;
        zmq_setsockopt(out, ZMQ_RCVTIMEO, &t, sizeof t);
        int r = zmq_recv(out, topic, sizeof topic - 1, 0);
        if (r > 0) {
            topic[r] = '\0';
            cr_assert_eq(zmq_recv(out, seq, 8, 0), 8);
            uint8_t body[512];
            cr_assert_eq(zmq_recv(out, body, sizeof body, 0), (int)len);
            cr_assert_eq(memcmp(body, buf, len), 0, "republished bytes differ");
        }
    }
    cr_assert_str_eq(topic, "lead.created");
    cr_assert_eq(funnel_seq_decode(seq), 1);
    submit_lead("evt-pub-1", "lead-9", FUNNEL_SUBMIT_DUPLICATE);
    cr_assert_eq(count_events(NULL), 1);
    free(buf);
    funnel_envelope_free(&env);
    close_socket(pub);
    close_socket(out);
}

/* One bad message per row: what is sent and what the reason must mention. */
typedef struct bad_case {
    const char *topic;
    funnel_envelope_t *env; /* packed when set; else `raw` is sent */
    const char *raw;
    const char *expect;
} bad_case_t;

static funnel_envelope_t *mutated_payment(int which)
{
    funnel_envelope_t *env = fx_payment("evt-bad", "pay-1", "client-1", 1000, "EUR", fx_now_ms());
    switch (which) {
    case 0:
        env->payment_received->amount->minor = 0;
        break;
    case 1:
        env->payment_received->amount->minor = -5;
        break;
    case 2:
        free(env->payment_received->amount->currency);
        env->payment_received->amount->currency = strdup("ZZZ");
        break;
    case 3:
        free(env->payment_received->client_id);
        env->payment_received->client_id = strdup("");
        break;
    case 4:
        free(env->event_id);
        env->event_id = strdup("");
        break;
    case 5:
        free(env->event_id);
        env->event_id = malloc(200);
        memset(env->event_id, 'x', 199);
        env->event_id[199] = '\0';
        break;
    case 6:
        env->occurred_at_ms = fx_now_ms() + 10LL * 86400000;
        break;
    }
    return env;
}

Test(e2e, bad_input_is_refused_with_reason_and_dead_lettered)
{
    bad_case_t cases[] = {
        {"payment.received", NULL, "\xff\xff\xff\xff garbage", "decode"},
        {"lead.exploded", mutated_payment(-1), NULL, "unknown topic"},
        {"lead.created", mutated_payment(-1), NULL, "carries a payment.received body"},
        {"payment.received", mutated_payment(0), NULL, "amount.minor"},
        {"payment.received", mutated_payment(1), NULL, "amount.minor"},
        {"payment.received", mutated_payment(2), NULL, "ISO 4217"},
        {"payment.received", mutated_payment(3), NULL, "client_id"},
        {"payment.received", mutated_payment(4), NULL, "event_id"},
        {"payment.received", mutated_payment(5), NULL, "event_id"},
        {"payment.received", mutated_payment(6), NULL, "occurred_at_ms"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *buf = cases[i].env ? fx_pack(cases[i].env, &len) : NULL;
        const void *frames[] = {cases[i].topic, buf ? (const void *)buf : cases[i].raw};
        size_t lens[] = {strlen(cases[i].topic), buf ? len : strlen(cases[i].raw)};
        char status[512];
        raw_submit(frames, lens, 2, status, sizeof status);
        cr_assert(strncmp(status, "rejected: ", 10) == 0, "case %zu: got '%s'", i, status);
        cr_assert(strstr(status, cases[i].expect), "case %zu: '%s' lacks '%s'", i, status,
                  cases[i].expect);
        free(buf);
        funnel_envelope_free(&cases[i].env);
    }
    /* Wrong frame count and an oversize message. */
    char status[512];
    const void *one[] = {"lead.created"};
    size_t one_len[] = {12};
    raw_submit(one, one_len, 1, status, sizeof status);
    cr_assert(strstr(status, "frames"), "%s", status);
    size_t big = 70 * 1024;
    char *huge = malloc(big);
    memset(huge, 'a', big);
    const void *hf[] = {"lead.created", huge};
    size_t hl[] = {12, big};
    raw_submit(hf, hl, 2, status, sizeof status);
    cr_assert(strstr(status, "exceeds"), "%s", status);
    free(huge);

    int64_t dead = 0;
    cr_assert_eq(count_events(&dead), 0, "refused input must not be recorded");
    cr_assert_eq(dead, (int64_t)n + 2);
    /* The loop is still healthy. */
    submit_lead("evt-after-bad", "lead-1", FUNNEL_SUBMIT_OK);
    cr_assert(fx_daemon_log_has(&fd, "refused payment.received event_id=evt-bad", 1000));
}

/* The client library (funnelctl, funnel-webhook) matches a reply to its submit by the exact
 * event_id: a refusal must echo an over-long id whole, not cut to FUNNEL_ID_MAX, or the sender
 * never recognises it and retries until it gives up. */
Test(e2e, refusal_of_an_over_long_event_id_reaches_the_sender)
{
    const size_t lens[] = {FUNNEL_ID_MAX + 1, 5000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char *id = malloc(lens[i] + 1);
        cr_assert_not_null(id);
        memset(id, 'L', lens[i]);
        id[lens[i]] = '\0';
        funnel_envelope_t *env = fx_lead_created(id, "lead-long", fx_now_ms());
        /* One attempt: without the echo it would wait out the timeout and fail. */
        funnel_submit_options_t opts = {.timeout_ms = 10000, .attempts = 1, .backoff_ms = 0};
        funnel_submit_result_t res;
        int rc = funnel_client_submit(client, fd.submit, "lead.created", env, &opts, &res);
        cr_assert_eq(rc, 0, "%zu-byte id: %s", lens[i], funnel_strerror(rc));
        cr_assert_eq(res.status, FUNNEL_SUBMIT_REJECTED);
        cr_assert(strstr(res.reason, "event_id"), "%s", res.reason);
        funnel_envelope_free(&env);
        free(id);
    }
    int64_t dead = 0;
    cr_assert_eq(count_events(&dead), 0);
    cr_assert_eq(dead, 2);
}

/* Replays from `from` and copies the envelope of the first row into buf; returns its length. */
static size_t replay_first_envelope(uint64_t from, uint8_t *buf, size_t cap)
{
    void *s = connect_socket(ZMQ_DEALER, fd.replay);
    replay_request(s, from);
    char topic[64];
    uint8_t seq[8];
    cr_assert_geq(zmq_recv(s, topic, sizeof topic, 0), 0, "replay timed out");
    cr_assert_eq(zmq_recv(s, seq, sizeof seq, 0), 8);
    int n = zmq_recv(s, buf, cap, 0);
    cr_assert(n >= 0 && (size_t)n <= cap, "replay row of %d bytes", n);
    close_socket(s);
    return (size_t)n;
}

/* A UUID id is kept in 16 bytes and the envelope without its copy of it (event_form.h): a
 * resend is a duplicate before and after a restart, and replay sends the bytes submitted. */
Test(e2e, uuid_id_dedupes_across_a_restart_and_replays_the_bytes_submitted)
{
    static const char id[] = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    int64_t at = fx_now_ms();
    funnel_envelope_t *env = fx_lead_created(id, "lead-u", at);
    size_t len = 0;
    uint8_t *sent = fx_pack(env, &len), got[512];
    funnel_envelope_free(&env);
    fx_submit(client, &fd, fx_lead_created(id, "lead-u", at), FUNNEL_SUBMIT_OK);
    fx_submit(client, &fd, fx_lead_created(id, "lead-u", at), FUNNEL_SUBMIT_DUPLICATE);
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    cr_assert_eq(fx_db_int(fd.db, "SELECT count(*) FROM events WHERE typeof(event_id) = 'blob'"),
                 1);
    fx_daemon_start(&fd, tmp.path, NULL);
    fx_submit(client, &fd, fx_lead_created(id, "lead-u", at), FUNNEL_SUBMIT_DUPLICATE);
    cr_assert_eq(count_events(NULL), 1);
    cr_assert_eq(replay_first_envelope(1, got, sizeof got), len);
    cr_assert_eq(memcmp(got, sent, len), 0, "replay sends the submitted bytes");
    free(sent);
}

Test(e2e, replay_from_a_sequence)
{
    char id[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(id, sizeof id, "evt-r%d", i);
        submit_lead(id, "lead-r", FUNNEL_SUBMIT_OK);
    }
    uint64_t seqs[8], last = 0;
    size_t n = replay_seqs(3, seqs, 8, &last);
    cr_assert_eq(n, 3);
    cr_assert_eq(seqs[0], 3);
    cr_assert_eq(seqs[2], 5);
    cr_assert_eq(last, 5);
    n = replay_seqs(6, seqs, 8, &last);
    cr_assert_eq(n, 0);
    cr_assert_eq(last, 5, "end names the last sequence even when nothing is replayed");

    void *s = connect_socket(ZMQ_DEALER, fd.replay);
    zmq_send(s, "rewind", 6, 0);
    char buf[128];
    int r = zmq_recv(s, buf, sizeof buf, 0);
    cr_assert_eq(r, 5);
    cr_assert_eq(memcmp(buf, "error", 5), 0);
    close_socket(s);
}

/* A replay client that never reads: the smallest queue, so funneld's sends to it block soon. */
static void *hostile_replayer(void)
{
    void *s = make_socket(ZMQ_DEALER);
    int hwm = 1, rcvbuf = 4096;
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    cr_assert_eq(zmq_connect(s, fd.replay), 0);
    return s;
}

/* funneld's user + system CPU time in clock ticks (/proc/<pid>/stat fields 14 and 15). */
static unsigned long long cpu_ticks(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)fd.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    cr_assert_not_null(p);
    unsigned long long ut = 0, st = 0;
    cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st),
                 2);
    return ut + st;
}

static long vm_rss_kb(void)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)fd.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

Test(e2e, replay_client_that_never_reads_does_not_block_other_replays)
{
    const int total = 3000;
    cr_assert_eq(submit_many("evt-hostile", total), total);
    void *hostile = hostile_replayer();
    /* Each request queues every row again, until the hostile peer's queue and TCP buffers are
     * full (~8 MB here, more than the kernel buffers can take) and funneld's sends to it fail. */
    for (int i = 0; i < 30; i++) {
        replay_request(hostile, 1);
        usleep(50 * 1000);
    }

    uint64_t last = 0;
    size_t n = replay_seqs(1, NULL, 0, &last);
    cr_assert_geq(n, (size_t)total, "the second replay got every row");
    cr_assert_geq(last, (uint64_t)total, "and reached the end");

    /* The parked replay waits on a timer, not a busy loop: funneld is nearly idle. */
    unsigned long long before = cpu_ticks();
    usleep(1000 * 1000);
    unsigned long long used = cpu_ticks() - before;
    cr_assert_lt(used, (unsigned long long)sysconf(_SC_CLK_TCK) / 2, "funneld spun: %llu ticks",
                 used);
    close_socket(hostile);
}

Test(e2e, repeated_replay_requests_keep_one_replay_per_client)
{
    cr_assert_eq(submit_many("evt-repeat", 1000), 1000);
    void *hostile = hostile_replayer();
    for (int i = 0; i < 10000; i++)
        replay_request(hostile, 1);
    uint64_t last = 0;
    replay_seqs(1, NULL, 0, &last);
    cr_assert_geq(last, 1000u, "another client still gets its replay");
    long rss = vm_rss_kb();
    cr_assert(rss > 0 && rss < 600 * 1024, "funneld uses %ld kB", rss);
    close_socket(hostile);
}

Test(e2e, replay_from_beyond_int64_is_an_error)
{
    submit_lead("evt-big-from", "lead-b", FUNNEL_SUBMIT_OK);
    void *s = connect_socket(ZMQ_DEALER, fd.replay);
    replay_request(s, UINT64_MAX);
    char buf[128];
    int r = zmq_recv(s, buf, sizeof buf, 0);
    cr_assert_eq(r, 5, "no error reply");
    cr_assert_eq(memcmp(buf, "error", 5), 0);
    close_socket(s);
}

/* Waits for a monitor event of `want` on the monitor PAIR socket mon; false on timeout. */
static bool monitor_wait(void *mon, uint16_t want)
{
    for (;;) {
        uint8_t ev[6];
        char addr[256];
        if (zmq_recv(mon, ev, sizeof ev, 0) != 6 || zmq_recv(mon, addr, sizeof addr, 0) < 0)
            return false;
        uint16_t got;
        memcpy(&got, ev, sizeof got);
        if (got == want)
            return true;
    }
}

Test(e2e, message_over_the_hard_limit_drops_the_peer_not_funneld)
{
    /* Default max_message_bytes is 64 KiB, so the hard limit is 128 KiB. The sender watches its
     * own connection: funneld must drop it, not read the message (which would dead-letter it). */
    void *s = make_socket(ZMQ_DEALER);
    cr_assert_eq(zmq_socket_monitor(s, "inproc://hard-limit-mon",
                                    ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED),
                 0);
    void *mon = connect_socket(ZMQ_PAIR, "inproc://hard-limit-mon");
    cr_assert_eq(zmq_connect(s, fd.submit), 0);
    cr_assert(monitor_wait(mon, ZMQ_EVENT_CONNECTED), "never connected");
    size_t big = 1024 * 1024;
    char *huge = calloc(1, big);
    cr_assert_not_null(huge);
    zmq_send(s, "lead.created", 12, ZMQ_SNDMORE);
    zmq_send(s, huge, big, 0);
    free(huge);
    cr_assert(monitor_wait(mon, ZMQ_EVENT_DISCONNECTED), "funneld did not drop the peer");
    zmq_socket_monitor(s, NULL, 0);
    close_socket(mon);
    close_socket(s);
    submit_lead("evt-after-huge", "lead-h", FUNNEL_SUBMIT_OK);
    int64_t dead = -1;
    cr_assert_eq(count_events(&dead), 1);
    cr_assert_eq(dead, 0, "a message past the hard limit never reaches funneld's loop");
}

Test(e2e, req_socket_clients_get_replies_with_delimiter)
{
    void *s = connect_socket(ZMQ_REQ, fd.submit);
    funnel_envelope_t *env = fx_lead_created("evt-req", "lead-req", fx_now_ms());
    size_t len;
    uint8_t *buf = fx_pack(env, &len);
    zmq_send(s, "lead.created", 12, ZMQ_SNDMORE);
    zmq_send(s, buf, len, 0);
    char id[64], st[64];
    int r = zmq_recv(s, id, sizeof id, 0);
    cr_assert_eq(r, 7);
    r = zmq_recv(s, st, sizeof st, 0);
    cr_assert_eq(r, 2);
    cr_assert_eq(memcmp(st, "ok", 2), 0);
    free(buf);
    funnel_envelope_free(&env);
    close_socket(s);
}

/* The event_id of a published message [topic][seq][Envelope] received on s into id; false on
 * timeout. */
static bool sub_recv_event_id(void *s, char *id, size_t id_len)
{
    zmq_msg_t m;
    bool got = false;
    for (int more = 1, k = 0; more; k++) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            return false;
        }
        if (k == 2) {
            funnel_envelope_t *env =
                funnel__v1__envelope__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
            got = env != NULL;
            snprintf(id, id_len, "%s", env ? env->event_id : "");
            funnel_envelope_free(&env);
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return got;
}

Test(e2e, slow_subscriber_does_not_block_ingest)
{
    /* A subscriber that stops reading, with the smallest queues ZeroMQ and the kernel allow. */
    fx_daemon_stop(&fd);
    const char *args[] = {"--set", "publish_hwm=100", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    void *slow = make_socket(ZMQ_SUB);
    int hwm = 1, rcvbuf = 4096, timeout = 200;
    zmq_setsockopt(slow, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(slow, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    zmq_setsockopt(slow, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq(zmq_connect(slow, fd.publish), 0);
    /* It is subscribed once it gets a message: until then PUB drops. */
    char id[256] = "";
    int warm_n = 0;
    for (; warm_n < 200 && !id[0]; warm_n++) {
        char warm[32];
        snprintf(warm, sizeof warm, "evt-slow-warm-%d", warm_n);
        submit_lead(warm, "lead-w", FUNNEL_SUBMIT_OK);
        zmq_pollitem_t p = {slow, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&p, 1, 50) > 0)
            cr_assert(sub_recv_event_id(slow, id, sizeof id));
    }
    cr_assert_neq(id[0], '\0', "the subscriber never got a message");

    const int total = 5000;
    cr_assert_eq(submit_many("evt-slow", total), total);
    cr_assert_eq(count_events(NULL), warm_n + total);
    /* Now it reads. What reaches it before a later marker is what funneld queued for it rather
     * than waiting: some of the burst, not all (else it was never slow). A marker published
     * while its queue is still full is dropped too, so markers go on until one arrives. */
    zmq_setsockopt(slow, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int delivered = 0;
    bool marker = false;
    for (int i = 0; i < 100 && !marker; i++) {
        char mark[32];
        snprintf(mark, sizeof mark, "evt-slow-marker-%d", i);
        submit_lead(mark, "lead-m", FUNNEL_SUBMIT_OK);
        while (!marker && sub_recv_event_id(slow, id, sizeof id)) {
            marker = strncmp(id, "evt-slow-marker-", 16) == 0;
            delivered += strncmp(id, "evt-slow-", 9) == 0 && id[9] >= '0' && id[9] <= '9';
        }
    }
    cr_assert(marker, "the subscriber never caught up");
    cr_assert_lt(delivered, total, "funneld queued all %d for a subscriber that did not read",
                 total);
    close_socket(slow);
}

Test(e2e, graceful_stop_commits_and_exits_zero)
{
    submit_lead("evt-g1", "lead-g", FUNNEL_SUBMIT_OK);
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    cr_assert(fx_daemon_log_has(&fd, "stopped: 1 accepted", 0));
    cr_assert_eq(count_events(NULL), 1);
    /* A restart keeps the sequence going. */
    fx_daemon_start(&fd, tmp.path, NULL);
    submit_lead("evt-g2", "lead-g", FUNNEL_SUBMIT_OK);
    uint64_t seqs[4], last;
    cr_assert_eq(replay_seqs(1, seqs, 4, &last), 2);
    cr_assert_eq(last, 2);
}

Test(e2e, sighup_reload_refuses_bad_config_and_keeps_running)
{
    char path[512];
    fx_file_write(tmp.path, "reload.conf", "log_level = \"debug\";\n", path, sizeof path);
    fx_daemon_stop(&fd);
    const char *args[] = {"--config", path, NULL};
    fx_daemon_start(&fd, tmp.path, args);
    fx_file_put(path, "batch_max = \"many\";\n");
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "config reload refused", 5000));
    submit_lead("evt-h1", "lead-h", FUNNEL_SUBMIT_OK);
    fx_file_put(path, "log_level = \"warn\";\nbatch_max = 10;\n");
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "config reload: batch_max changed", 5000));
    submit_lead("evt-h2", "lead-h", FUNNEL_SUBMIT_OK);
}

Test(e2e, command_line_version_help_and_check_config)
{
    char out[8192];
    const char *ver[] = {FUNNELD_PATH, "--version", NULL};
    cr_assert_eq(fx_run(ver, out, sizeof out), 0);
    cr_assert(strstr(out, "funneld "));
    const char *help[] = {FUNNELD_PATH, "--help", NULL};
    cr_assert_eq(fx_run(help, out, sizeof out), 0);
    cr_assert(strstr(out, "--check-config") && strstr(out, "batch_max"));
    const char *check[] = {FUNNELD_PATH, "--config", FUNNEL_SOURCE_DIR "/examples/funneld.conf",
                           "--check-config", NULL};
    cr_assert_eq(fx_run(check, out, sizeof out), 0);
    cr_assert(strstr(out, "database = "));
    const char *missing[] = {FUNNELD_PATH, "--config", "/nonexistent/funneld.conf",
                             "--check-config", NULL};
    cr_assert_eq(fx_run(missing, out, sizeof out), 1);
    const char *bad_opt[] = {FUNNELD_PATH, "--no-such-flag", NULL};
    cr_assert_eq(fx_run(bad_opt, out, sizeof out), 2);
    const char *bad_val[] = {FUNNELD_PATH, "--set", "batch_max=0", "--check-config", NULL};
    cr_assert_eq(fx_run(bad_val, out, sizeof out), 1);
    const char *bad_engine[] = {FUNNELD_PATH, "--set", "engines=ledger,atribution",
                                "--check-config", NULL};
    cr_assert_eq(fx_run(bad_engine, out, sizeof out), 1);
    cr_assert(strstr(out, "unknown engine 'atribution'"), "%s", out);
}

static int mark_found(const funnel_event_row_t *row, void *arg)
{
    int *found = arg;
    int idx;
    if (sscanf(row->event_id, "evt-k-%d", &idx) == 1)
        found[idx]++;
    return 0;
}

/* lead.created number *first + i with 8 touches of 400 bytes: about one WAL page per event. */
static funnel_envelope_t *page_sized_lead(size_t i, void *first)
{
    enum { TOUCHES = 8 };
    static char text[101];
    memset(text, 'c', sizeof text - 1);
    funnel_envelope_t *env = fx_numbered_lead(*(size_t *)first + i, "wal");
    Funnel__V1__LeadCreated *lc = env->lead_created;
    lc->touches = calloc(TOUCHES, sizeof *lc->touches);
    cr_assert_not_null(lc->touches);
    for (lc->n_touches = 0; lc->n_touches < TOUCHES; lc->n_touches++) {
        Funnel__V1__Touch *t = calloc(1, sizeof *t);
        cr_assert_not_null(t);
        funnel__v1__touch__init(t);
        t->channel = strdup(text);
        t->source = strdup(text);
        t->medium = strdup(text);
        t->campaign = strdup(text);
        cr_assert(t->channel && t->source && t->medium && t->campaign);
        t->at_ms = env->occurred_at_ms;
        lc->touches[lc->n_touches] = t;
    }
    return env;
}

/* A backfill that never pauses: the WAL starts over every few thousand pages, the commit after
 * the checkpointer's restart pass waiting for it (store.h), so its file stays under the limit
 * and is overwritten in place; it used to grow to 16,000 pages (64 MB), be cut back and grow
 * again. */
Test(e2e, the_wal_starts_over_in_place_during_a_backfill)
{
    char wal[sizeof fd.db + 8];
    snprintf(wal, sizeof wal, "%s-wal", fd.db);
    off_t wal_max = 0;
    int cuts = 0;
    for (size_t first = 0; first < 14000; first += 1000) {
        cr_assert_eq(fx_submit_pipelined(fd.submit, 1000, 500, page_sized_lead, &first, "ok", NULL),
                     1000);
        struct stat st;
        off_t size = stat(wal, &st) == 0 ? st.st_size : 0;
        cuts += size < wal_max;
        wal_max = size > wal_max ? size : wal_max;
    }
    cr_assert_eq(cuts, 0, "the WAL file was cut back %d times", cuts);
    cr_assert_leq(wal_max, 45000000, "the WAL grew to %lld bytes", (long long)wal_max);
}

Test(e2e, kill_9_mid_stream_loses_nothing_acked_and_leaves_no_gap)
{
    enum { TOTAL = 6000, KILL_AFTER = 1500 };
    static int acked[TOTAL], found[TOTAL];
    memset(acked, 0, sizeof acked);
    memset(found, 0, sizeof found);
    void *dealer = connect_socket(ZMQ_DEALER, fd.submit);
    int timeout = 3000;
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int64_t now = fx_now_ms();
    int sent = 0, acks = 0;
    bool killed = false;
    while (!killed || acks < sent) {
        /* Keep up to 500 in flight so the kill lands in the middle of batches. */
        while (!killed && sent < TOTAL && sent - acks < 500) {
            char id[32];
            snprintf(id, sizeof id, "evt-k-%d", sent++);
            dealer_send_lead(dealer, id, now);
        }
        char id[64], st[64];
        int r = zmq_recv(dealer, id, sizeof id - 1, 0);
        if (r < 0) {
            cr_assert(killed, "funneld stopped answering before the kill (%d sent, %d acks)", sent,
                      acks);
            break; /* the rest died with the process */
        }
        id[r] = '\0';
        r = zmq_recv(dealer, st, sizeof st, 0);
        int idx;
        if (r == 2 && !memcmp(st, "ok", 2) && sscanf(id, "evt-k-%d", &idx) == 1)
            acked[idx] = 1;
        acks++;
        if (!killed && acks == KILL_AFTER) {
            fx_daemon_kill(&fd);
            killed = true;
        }
    }
    close_socket(dealer);
    int n_acked = 0;
    for (int i = 0; i < TOTAL; i++)
        n_acked += acked[i];
    cr_assert_geq(n_acked, KILL_AFTER - 1);

    fx_daemon_start(&fd, tmp.path, NULL);
    funnel_store_t *st;
    char err[256];
    cr_assert_eq(funnel_store_open(fd.db, true, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err), 0);
    cr_assert_eq(funnel_store_events_list(st, 0, mark_found, found), 0);
    funnel_store_destroy(&st);
    int64_t recorded = 0;
    for (int i = 0; i < TOTAL; i++) {
        cr_assert_leq(found[i], 1, "event %d recorded twice", i);
        cr_assert(!acked[i] || found[i] == 1, "event %d was acked ok but is missing", i);
        recorded += found[i];
    }
    /* The output sequence is gap-free: 1..recorded, one row per recorded event. */
    static uint64_t seqs[TOTAL];
    uint64_t last = 0;
    size_t n = replay_seqs(1, seqs, TOTAL, &last);
    cr_assert_eq((int64_t)n, recorded);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(seqs[i], i + 1, "gap at %zu", i);
    cr_assert_eq(last, n);
}

/* Receives datagrams on the notify socket until one contains `want` or timeout_ms passes. */
static bool notify_wait(int sock, const char *want, int timeout_ms)
{
    int64_t deadline = fx_now_ms() + timeout_ms;
    while (fx_now_ms() < deadline) {
        struct pollfd p = {sock, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        char buf[512];
        ssize_t n = recv(sock, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        if (strstr(buf, want))
            return true;
    }
    return false;
}

Test(e2e, systemd_notifications_ready_watchdog_reloading_stopping)
{
    fx_daemon_stop(&fd);
    char path[100]; /* sun_path holds 108 bytes */
    cr_assert_lt(snprintf(path, sizeof path, "%s/notify.sock", tmp.path), (int)sizeof path);
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(sock, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(sock, (struct sockaddr *)&addr, sizeof addr), 0, "%s", strerror(errno));
    /* What systemd would set for Type=notify with WatchdogSec=0.2s. */
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "200000", 1);
    fx_daemon_start(&fd, tmp.path, NULL);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    cr_assert(notify_wait(sock, "READY=1", 5000));
    cr_assert(notify_wait(sock, "WATCHDOG=1", 5000));
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(notify_wait(sock, "RELOADING=1", 5000));
    fx_daemon_signal(&fd, SIGTERM);
    cr_assert(notify_wait(sock, "STOPPING=1", 5000));
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    close(sock);
}

/* systemd and scripts signal funneld as soon as it reports ready: the signal watchers must
 * already be in place then (SIGHUP's default action would end the process). The race is a few
 * microseconds wide, so the test repeats it; fx_daemon_wait_ready wakes on the file's rename. */
Test(e2e, sighup_the_moment_ready_appears_reloads_instead_of_killing)
{
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    for (int i = 0; i < 20; i++) {
        /* Fresh ports each time: a port given back by the last funneld can be taken by any
         * other process on a busy machine before the next one binds it. */
        fd.ingest[0] = '\0';
        fx_daemon_spawn(&fd, tmp.path, NULL);
        fx_daemon_wait_ready(&fd);
        fx_daemon_signal(&fd, SIGHUP);
        int status = fx_daemon_stop(&fd);
        cr_assert_eq(status, 0, "try %d: funneld exited with status %d", i + 1, status);
    }
    fx_daemon_start(&fd, tmp.path, NULL); /* for the fini's graceful stop */
}

/* Receives one published message [topic][seq][envelope]; returns its sequence, 0 on timeout. */
static uint64_t sub_recv_seq(void *sub)
{
    uint64_t seq = 0;
    for (int more = 1, k = 0; more; k++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sub, 0) < 0) {
            zmq_msg_close(&m);
            return 0;
        }
        if (k == 1 && zmq_msg_size(&m) == 8)
            seq = funnel_seq_decode(zmq_msg_data(&m));
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return seq;
}

/* A second SIGTERM (or a SIGINT) during the graceful stop used to land after the watchers were
 * closed and end funneld with status 143 before it had finished. Stop requests keep coming
 * through the whole shutdown here; funneld must still exit 0 having committed the input it had
 * read and published every committed row. */
Test(e2e, repeated_stop_signals_during_shutdown_exit_zero_and_publish_everything)
{
    enum { IN_FLIGHT = 300 };
    void *sub = make_socket(ZMQ_SUB);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq(zmq_connect(sub, fd.publish), 0);
    /* PUB drops until the subscription arrives: submit until one publish is seen. */
    uint64_t seen = 0;
    for (int i = 0; i < 200 && !seen; i++) {
        char id[32];
        snprintf(id, sizeof id, "evt-warm-%d", i);
        submit_lead(id, "lead-w", FUNNEL_SUBMIT_OK);
        zmq_pollitem_t p = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&p, 1, 50) > 0)
            seen = sub_recv_seq(sub);
    }
    cr_assert_gt(seen, 0, "the subscriber never got a message");
    void *dealer = connect_socket(ZMQ_DEALER, fd.submit);
    int64_t now = fx_now_ms();
    for (int i = 0; i < IN_FLIGHT; i++) {
        char id[32];
        snprintf(id, sizeof id, "evt-inflight-%d", i);
        dealer_send_lead(dealer, id, now);
    }
    char ack[64];
    cr_assert_gt(zmq_recv(dealer, ack, sizeof ack, 0), 0, "funneld is reading the stream");
    int status = fx_daemon_stop_insisting(&fd);
    cr_assert_eq(status, 0, "funneld exited with status %d", status);
    cr_assert(fx_daemon_log_has(&fd, "stopped:", 0), "the shutdown ran to its end");

    funnel_store_t *st;
    char err[256];
    uint64_t first = 0, last = 0, published = 0;
    cr_assert_eq(funnel_store_open(fd.db, true, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(funnel_store_outbox_bounds(st, &first, &last), 0);
    cr_assert_eq(funnel_store_published_get(st, &published), 0);
    funnel_store_destroy(&st);
    cr_assert_eq(published, last, "the publish cursor reached the last committed row");
    /* Every row after the first one seen arrives, in order, up to the last committed. */
    while (seen < last) {
        uint64_t seq = sub_recv_seq(sub);
        cr_assert_eq(seq, seen + 1, "after %llu: got %llu of %llu", (unsigned long long)seen,
                     (unsigned long long)seq, (unsigned long long)last);
        seen = seq;
    }
    close_socket(dealer);
    close_socket(sub);
    fx_daemon_start(&fd, tmp.path, NULL); /* for the fini's graceful stop */
}

Test(e2e, engines_can_be_switched_off)
{
    fx_daemon_stop(&fd);
    const char *args[] = {"--set", "engines=none", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    fx_submit(client, &fd, fx_payment("evt-pay-1", "pay-1", "client-1", 1000, "EUR", fx_now_ms()),
              FUNNEL_SUBMIT_OK);
    uint64_t seqs[16], last = 0;
    /* With engines on, attribution would credit the payment to (unattributed) per model. */
    cr_assert_eq(replay_seqs(1, seqs, 16, &last), 1, "no derived events without engines");
}

Test(e2e, connects_out_to_configured_publishers)
{
    /* A tool whose PUB socket binds: funneld's SUB connects to it (`connect`). */
    void *pub = make_socket(ZMQ_PUB);
    cr_assert_eq(zmq_bind(pub, "tcp://127.0.0.1:*"), 0);
    char endpoint[128];
    size_t len = sizeof endpoint;
    cr_assert_eq(zmq_getsockopt(pub, ZMQ_LAST_ENDPOINT, endpoint, &len), 0);
    fx_daemon_stop(&fd);
    const char *args[] = {"--connect", endpoint, NULL};
    fx_daemon_start(&fd, tmp.path, args);
    cr_assert(fx_daemon_log_has(&fd, "subscribed to publisher", 2000));

    funnel_envelope_t *env = fx_lead_created("evt-out-1", "lead-o", fx_now_ms());
    size_t n;
    uint8_t *buf = fx_pack(env, &n);
    /* PUB drops until the subscription arrives: resend until the event is recorded. */
    for (int i = 0; i < 200 && count_events(NULL) == 0; i++) {
        zmq_send(pub, "lead.created", 12, ZMQ_SNDMORE);
        zmq_send(pub, buf, n, 0);
        fx_sleep_ms(20);
    }
    cr_assert_eq(count_events(NULL), 1, "resends are duplicates: recorded once");
    free(buf);
    funnel_envelope_free(&env);
    close_socket(pub);
}

/* Another process (here the test, through SQLite) holds the write lock past funneld's busy
 * timeout (5 s). The batch is kept and retried, input is held once batch_max events wait, and
 * once the lock goes every event is recorded, SUB ones included (their publisher would never
 * resend them), and every submit is acked. */
Test(e2e, database_locked_by_another_process_loses_nothing, .timeout = 60)
{
    enum { N = 20 };
    fx_daemon_stop(&fd);
    /* batch_max fewer than the events: input waits */
    const char *args[] = {"--set", "batch_max=8", "--set", "metrics=127.0.0.1:0", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    void *pub = connect_socket(ZMQ_PUB, fd.ingest);
    void *dealer = connect_socket(ZMQ_DEALER, fd.submit);
    int timeout = 15000;
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int64_t now = fx_now_ms();
    /* PUB drops until the subscription arrives: resend until the event is recorded. */
    for (int i = 0; i < 200 && count_events(NULL) == 0; i++) {
        dealer_send_lead(pub, "evt-lock-warm", now);
        fx_sleep_ms(20);
    }
    cr_assert_eq(count_events(NULL), 1);

    sqlite3 *db;
    cr_assert_eq(sqlite3_open(fd.db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "evt-lock-pub-%d", i);
        dealer_send_lead(pub, id, now);
        snprintf(id, sizeof id, "evt-lock-sub-%d", i);
        dealer_send_lead(dealer, id, now);
    }
    bool busy = fx_daemon_log_has(&fd, "database busy", 10000);
    bool held = busy && fx_daemon_log_has(&fd, "input held", 3000);
    cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    cr_assert(busy, "the first commit met the lock");
    cr_assert(held, "input waits once batch_max events are kept");

    for (int i = 0; i < N; i++) {
        fx_answer_t a;
        fx_answer_recv(dealer, &a);
        cr_assert_str_eq(a.status, "ok", "%s: %s", a.event_id, a.status);
    }
    cr_assert_eq(count_events(NULL), 1 + 2 * N, "every SUB and submitted event is recorded");
    cr_assert(fx_daemon_log_has(&fd, "input resumed", 1000));
    static fx_http_reply_t m;
    fx_metrics_scrape(fd.metrics_port, &m);
    cr_assert_geq(fx_metric(m.body, "funnel_commit_failures_total{kind=\"busy\"}"), 1, "%s",
                  m.body);
    cr_assert_eq(fx_metric(m.body, "funnel_events_lost_total{reason=\"commit_failed\"}"), 0, "%s",
                 m.body);
    close_socket(dealer);
    close_socket(pub);
}

/* Runs funneld on fd's database with every endpoint on an ephemeral port, expecting it to refuse
 * to start; returns its exit status with its output in out. */
/* Runs funneld on the fixture's database with one optional --set (NULL: none). */
static int run_funneld_on_db_with(char *out, size_t out_len, const char *set)
{
    return fx_run_funneld_on(fd.db, set, out, out_len);
}

static int run_funneld_on_db(char *out, size_t out_len)
{
    return run_funneld_on_db_with(out, out_len, NULL);
}

Test(e2e, truncated_database_is_refused_at_start)
{
    submit_lead("evt-t1", "lead-t", FUNNEL_SUBMIT_OK);
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    cr_assert_eq(truncate(fd.db, 0), 0);
    char out[4096];
    cr_assert_eq(run_funneld_on_db(out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, fd.db) && strstr(out, "empty") && strstr(out, "backup"), "%s", out);
    struct stat sb;
    cr_assert_eq(stat(fd.db, &sb), 0);
    cr_assert_eq(sb.st_size, 0, "the refused file is left as it was");
}

/* Overwrites the root page of the outbox's B-tree with garbage, the way a bad sector or a
 * stray write would: every read of the outbox then fails. */
static void corrupt_outbox_root(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT rootpage, (SELECT page_size FROM pragma_page_size) "
                                    "FROM sqlite_master WHERE name = 'outbox'",
                                    -1, &st, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    long page = sqlite3_column_int64(st, 0), size = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    char junk[65536];
    memset(junk, 0xAB, sizeof junk);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (page - 1) * size, SEEK_SET), 0);
    cr_assert_eq(fwrite(junk, 1, (size_t)size, f), (size_t)size);
    cr_assert_eq(fclose(f), 0);
}

/* A crash (kill -9) leaves no clean-stop marker: the next start checks the file, whatever its
 * size, and a damaged one is refused. */
Test(e2e, damaged_database_after_a_crash_is_refused_at_start_and_tail_says_why)
{
    cr_assert_eq(submit_many("evt-dmg", 400), 400);
    fx_daemon_kill(&fd);
    corrupt_outbox_root(fd.db);
    char out[8192];
    cr_assert_eq(run_funneld_on_db(out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, fd.db) && strstr(out, "damaged") && strstr(out, "quick_check"), "%s",
              out);

    /* Skipped (a very large file), funneld starts; a replay then fails, and funnelctl tail says
     * what funneld said instead of "invalid argument". */
    const char *skip[] = {"--set", "quick_check=0", NULL};
    fx_daemon_start(&fd, tmp.path, skip);
    cr_assert(fx_daemon_log_has(&fd, "quick_check skipped (quick_check = 0)", 0));
    const char *tail[] = {FUNNELCTL_PATH, "--publish",         fd.publish, "--replay", fd.replay,
                          "tail",         "--idle-timeout-ms", "500",      NULL};
    int status = fx_run(tail, out, sizeof out);
    cr_assert_eq(status, 1, "%s", out);
    cr_assert(strstr(out, "replay read failed") && strstr(out, "malformed"), "%s", out);
}

/* After a clean stop the start skips the whole-file read (restart-to-ready stays short on a big
 * database); quick_check = 2 reads it at every start and still finds damage done since. */
Test(e2e, quick_check_runs_after_a_crash_not_after_a_clean_stop_unless_asked)
{
    cr_assert_eq(submit_many("evt-qc", 50), 50);
    fx_daemon_kill(&fd);
    cr_assert_eq(truncate(fd.log, 0), 0); /* the log is appended to: only this start's lines */
    fx_daemon_start(&fd, tmp.path, NULL);
    cr_assert(fx_daemon_log_has(&fd, "quick_check ok", 0), "a crash must be followed by a check");
    cr_assert(fx_daemon_log_has(&fd, "the last stop was not clean", 0));
    cr_assert_eq(fx_daemon_stop(&fd), 0);

    cr_assert_eq(truncate(fd.log, 0), 0);
    fx_daemon_start(&fd, tmp.path, NULL);
    cr_assert(fx_daemon_log_has(&fd, "quick_check skipped (the last stop was clean)", 0));
    cr_assert(!fx_daemon_log_has(&fd, "quick_check ok", 0));
    cr_assert_eq(fx_daemon_stop(&fd), 0);

    corrupt_outbox_root(fd.db);
    char out[8192];
    cr_assert_eq(run_funneld_on_db_with(out, sizeof out, "quick_check=2"), 1, "%s", out);
    cr_assert(strstr(out, "damaged") && strstr(out, "quick_check"), "%s", out);
}

/* Writes text to the test's reload.conf; path receives its name. */
static void reload_conf_write(char *path, size_t path_len, const char *text)
{
    fx_file_write(tmp.path, "reload.conf", text, path, path_len);
}

/* One bad value refuses the whole reload: checked as --check-config and start-up check it. */
Test(e2e, reload_with_an_invalid_value_applies_nothing)
{
    char path[512], out[8192];
    reload_conf_write(path, sizeof path, "batch_max = 10;\n");
    fx_daemon_stop(&fd);
    const char *args[] = {"--config", path, NULL};
    fx_daemon_start(&fd, tmp.path, args);
    reload_conf_write(path, sizeof path, "batch_max = 20;\nengines = \"ledger,bogus\";\n");
    const char *check[] = {FUNNELD_PATH, "--config", path, "--check-config", NULL};
    cr_assert_eq(fx_run(check, out, sizeof out), 1, "%s", out);
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "config reload refused", 5000));
    cr_assert(fx_daemon_log_has(&fd, "unknown engine 'bogus'", 0));
    /* The refusal and any change are logged by the same reload: nothing later can add one. */
    cr_assert_not(fx_daemon_log_has(&fd, "batch_max changed", 0), "a refused reload changed");
    submit_lead("evt-r1", "lead-r", FUNNEL_SUBMIT_OK);
}

Test(e2e, check_config_refuses_what_start_up_refuses)
{
    static const char *const bad[] = {"metrics=nonsense", "submit=tcp://127.0.0.1:99999",
                                      "connect=tcp://crm:70000", "ingest=tcp://127.0.0.1:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[8192];
        const char *check[] = {FUNNELD_PATH, "--set", bad[i], "--check-config", NULL};
        cr_assert_eq(fx_run(check, out, sizeof out), 1, "%s accepted: %s", bad[i], out);
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(bad[i], "="), bad[i]);
        cr_assert(strstr(out, name), "the error names %s: %s", name, out);
    }
}

/* --set reaches an engine section, and a reload re-applies it over the re-read file. */
Test(e2e, set_engine_option_survives_reload)
{
    char path[512], out[8192];
    reload_conf_write(path, sizeof path, "attribution = { half_life_days = 3; };\n");
    const char *check[] = {
        FUNNELD_PATH,     "--config", path, "--set", "attribution.half_life_days=14",
        "--check-config", NULL};
    cr_assert_eq(fx_run(check, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "half_life_days = 14;"), "%s", out);
    fx_daemon_stop(&fd);
    const char *args[] = {"--config", path, "--set", "attribution.half_life_days=14", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    reload_conf_write(path, sizeof path,
                      "batch_max = 10;\nattribution = { half_life_days = 3; };\n");
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "config reload: batch_max changed", 5000));
    cr_assert_not(fx_daemon_log_has(&fd, "section attribution replaced", 0),
                  "the command line's half_life_days was lost on reload");
}

/* Mounts a tmpfs of `size` on tmp.path/small: a disk that really fills (ENOSPC, which SQLite
 * reports as SQLITE_FULL). Tests run as root here and in CI; false where mounting is not
 * permitted (an unprivileged container), and the caller skips. */
static bool small_fs_mount(const char *size)
{
    char opts[64];
    snprintf(small_fs, sizeof small_fs, "%s/small", tmp.path);
    cr_assert_eq(mkdir(small_fs, 0755), 0);
    snprintf(opts, sizeof opts, "size=%s", size);
    if (mount("tmpfs", small_fs, "tmpfs", 0, opts) == 0)
        return true;
    small_fs[0] = '\0';
    return false;
}

/* Fills the small filesystem to the last byte with a file named filler. */
static void small_fs_fill(char *filler, size_t filler_len)
{
    static char chunk[65536];
    snprintf(filler, filler_len, "%s/filler", small_fs);
    FILE *f = fopen(filler, "w");
    cr_assert_not_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    for (size_t n = sizeof chunk; n >= 1; n /= 2)
        while (fwrite(chunk, 1, n, f) == n)
            ;
    fclose(f);
    struct statvfs vfs;
    cr_assert_eq(statvfs(small_fs, &vfs), 0);
    cr_assert_eq(vfs.f_bavail, 0, "the filesystem is full");
}

/* Waits (polling, up to 30 s) until the database holds n events. */
static bool events_reach(int64_t n)
{
    for (int i = 0; i < 1500 && count_events(NULL) < n; i++)
        fx_sleep_ms(20);
    return count_events(NULL) == n;
}

/* funneld with its database on a small filesystem, the extra arguments, and a PUB socket whose
 * subscription is known to have arrived (one event recorded). */
static void *disk_full_start(const char *const *extra)
{
    if (!small_fs_mount("8m"))
        cr_skip_test("cannot mount a tmpfs here (%s): disk-full path not tested", strerror(errno));
    char db[300];
    const char *args[8] = {"--database", db};
    for (size_t i = 0; extra && extra[i] && i < 5; i++)
        args[2 + i] = extra[i];
    snprintf(db, sizeof db, "%.260s/funneld.db", small_fs);
    fx_daemon_stop(&fd);
    fx_daemon_start(&fd, tmp.path, args);
    snprintf(fd.db, sizeof fd.db, "%.299s", db);
    void *pub = connect_socket(ZMQ_PUB, fd.ingest);
    int64_t now = fx_now_ms();
    for (int i = 0; i < 200 && count_events(NULL) == 0; i++) { /* until subscribed */
        dealer_send_lead(pub, "evt-full-warm", now);
        fx_sleep_ms(20);
    }
    cr_assert_eq(count_events(NULL), 1);
    return pub;
}

/* Fills the disk, publishes n events on pub and waits until funneld met the full disk. */
static void disk_full_publish(void *pub, int n, char *filler, size_t filler_len)
{
    small_fs_fill(filler, filler_len);
    int64_t now = fx_now_ms();
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "evt-full-pub-%d", i);
        dealer_send_lead(pub, id, now);
    }
    cr_assert(fx_daemon_log_has(&fd, "disk is full", 15000), "the commit met the full disk");
}

/* Disk full: submitters are answered at once with a retryable refusal, SUB input (never resent
 * by its publishers) is kept in memory and committed once space returns. */
Test(e2e, disk_full_answers_unavailable_and_keeps_sub_input, .timeout = 90)
{
    enum { N = 300 };
    char filler[400], out[4096];
    fx_answer_t a;
    void *pub = disk_full_start(NULL);
    disk_full_publish(pub, N, filler, sizeof filler);

    void *dealer = connect_socket(ZMQ_DEALER, fd.submit);
    dealer_send_lead(dealer, "evt-full-sub", fx_now_ms());
    fx_answer_recv(dealer, &a); /* a submit during disk full is answered */
    cr_assert_str_eq(a.status, "unavailable: disk full");
    const char *lead = "{\"eventId\":\"evt-full-ctl\",\"leadId\":\"L\"}";
    const char *ctl[] = {"--timeout-ms", "2000", "publish", "lead.created", lead, NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, ctl), 3, "funnelctl: retry later: %s", out);
    cr_assert(strstr(out, "disk full"), "%s", out);

    cr_assert_eq(unlink(filler), 0);
    cr_assert(events_reach(1 + N), "every SUB event is committed once space returns: %lld",
              (long long)count_events(NULL));
    dealer_send_lead(dealer, "evt-full-sub", fx_now_ms());
    fx_answer_recv(dealer, &a);
    cr_assert_str_eq(a.status, "ok", "the submitter's retry is accepted");
    close_socket(dealer);
    close_socket(pub);
}

/* Beyond disk_full_buffer_bytes SUB input is lost, and said to be; what was kept is committed. */
Test(e2e, disk_full_keeps_sub_input_only_up_to_the_bound, .timeout = 90)
{
    enum { N = 300 };
    char filler[400];
    const char *args[] = {"--set", "disk_full_buffer_bytes=40000", "--set", "metrics=127.0.0.1:0",
                          NULL};
    void *pub = disk_full_start(args);
    disk_full_publish(pub, N, filler, sizeof filler);
    cr_assert(fx_daemon_log_has(&fd, "disk_full_buffer_bytes (40000) reached", 15000));
    cr_assert_eq(unlink(filler), 0);
    cr_assert(fx_daemon_log_has(&fd, "disk space is back", 15000));
    int64_t kept = count_events(NULL) - 1;
    cr_assert(kept > 0 && kept < N, "%lld of %d kept", (long long)kept, N);
    char lost[128];
    snprintf(lost, sizeof lost, "%lld SUB messages were lost", (long long)(N - kept));
    cr_assert(fx_daemon_log_has(&fd, lost, 0), "the log counts what was lost: %s", lost);
    static fx_http_reply_t m;
    fx_metrics_scrape(fd.metrics_port, &m);
    cr_assert_eq(fx_metric(m.body, "funnel_events_lost_total{reason=\"disk_full\"}"), N - kept,
                 "%s", m.body);
    cr_assert_geq(fx_metric(m.body, "funnel_commit_failures_total{kind=\"disk_full\"}"), 1, "%s",
                  m.body);
    close_socket(pub);
}

/* One integer from the daemon's database, read through a connection of the test's own. */
static int64_t db_int(const char *sql)
{
    return fx_db_int(fd.db, sql);
}

/* Retention: far more expired rows than one prune transaction takes are all deleted (in small
 * transactions, while the loop keeps answering), and replay from the start says [truncated]. */
Test(e2e, retention_prunes_a_large_backlog_in_small_steps)
{
    enum { OLD = 6000 };
    fx_daemon_stop(&fd);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(fd.db, &db), SQLITE_OK);
    char sql[512];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO outbox(topic, created_at_ms, envelope) SELECT 'old', 1000, x'00' FROM n;"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO dead_letters(received_at_ms, topic, event_id, reason, detail, "
             "payload_size) SELECT 1000, 'x', 'e', 'r', 'd', 0 FROM n;"
             "UPDATE meta SET value = (SELECT max(seq) FROM outbox) WHERE key = 'published_seq';",
             OLD, OLD);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    const char *debug[] = {"--log-level", "debug", NULL};
    fx_daemon_start(&fd, tmp.path, debug);
    submit_lead("evt-ret-1", "lead-ret", FUNNEL_SUBMIT_OK);
    for (int i = 0; i < 1500 && db_int("SELECT count(*) FROM outbox WHERE created_at_ms = 1000") +
                                        db_int("SELECT count(*) FROM dead_letters") >
                                    0;
         i++)
        fx_sleep_ms(20);
    cr_assert_eq(db_int("SELECT count(*) FROM outbox WHERE created_at_ms = 1000"), 0);
    cr_assert_eq(db_int("SELECT count(*) FROM dead_letters"), 0);
    /* Every prune transaction was small: the loop went on between them. */
    size_t outbox = 0, dead = 0, steps = 0, a, b;
    FILE *log = fopen(fd.log, "r");
    cr_assert_not_null(log);
    char line[512];
    while (fgets(line, sizeof line, log)) {
        const char *p = strstr(line, "retention: pruned ");
        if (!p || sscanf(p, "retention: pruned %zu output messages, %zu dead letters", &a, &b) != 2)
            continue;
        cr_assert(a <= 500 && b <= 500, "one prune transaction took too much: %s", line);
        outbox += a;
        dead += b;
        steps++;
    }
    fclose(log);
    cr_assert_eq(outbox, OLD);
    cr_assert_eq(dead, OLD);
    cr_assert_geq(steps, OLD / 500);
    void *s = connect_socket(ZMQ_DEALER, fd.replay);
    replay_request(s, 1);
    char what[16];
    int r = zmq_recv(s, what, sizeof what, 0);
    cr_assert_eq(r, 9);
    cr_assert(!memcmp(what, "truncated", 9));
    /* [truncated][first_available_seq] (docs/protocol.md): where history now starts */
    uint8_t first[8];
    cr_assert_eq(zmq_recv(s, first, sizeof first, 0), 8);
    cr_assert_eq(funnel_seq_decode(first), (uint64_t)db_int("SELECT min(seq) FROM outbox"));
    close_socket(s);
}

/* Sends a lead.created body under the lead.qualified topic: refused (topic_mismatch), and the
 * refusal is logged the moment funneld reads it. */
static void dealer_send_mismatch(void *dealer, const char *event_id)
{
    funnel_envelope_t *env = fx_lead_created(event_id, "lead-x", fx_now_ms());
    size_t len;
    uint8_t *buf = fx_pack(env, &len);
    cr_assert_geq(zmq_send(dealer, "lead.qualified", 14, ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(dealer, buf, len, 0), 0);
    free(buf);
    funnel_envelope_free(&env);
}

/* Waits until funneld has read everything sent before the mismatch event_id on the same socket:
 * one connection's messages are read in order, and the refusal is logged as it is read. */
static void wait_read_through(const char *mismatch_id)
{
    char needle[128];
    snprintf(needle, sizeof needle, "refused lead.qualified event_id=%s", mismatch_id);
    cr_assert(fx_daemon_log_has(&fd, needle, 10000), "funneld never read %s", mismatch_id);
}

/* README: SIGTERM/SIGINT stop taking input, commit what was read, publish it and exit 0. With
 * batch_delay_ms at its longest the event read is still in the open batch when the signal
 * lands: it is committed and answered ok, not dropped. */
static void stop_signal_commits_what_was_read(int sig)
{
    fx_daemon_stop(&fd);
    const char *args[] = {"--set", "batch_delay_ms=1000", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    void *dealer = connect_socket(ZMQ_DEALER, fd.submit);
    dealer_send_lead(dealer, "evt-inflight", fx_now_ms());
    dealer_send_mismatch(dealer, "evt-inflight-bad");
    wait_read_through("evt-inflight-bad");
    fx_daemon_signal(&fd, sig);
    bool ok = false;
    for (int i = 0; i < 2; i++) {
        fx_answer_t a;
        fx_answer_recv(dealer, &a);
        ok = ok || (!strcmp(a.event_id, "evt-inflight") && !strcmp(a.status, "ok"));
    }
    cr_assert(ok, "the event read before the signal is answered ok");
    cr_assert_eq(fx_daemon_wait_exit(&fd), 0);
    cr_assert(fx_daemon_log_has(&fd, "stopping: committing", 0));
    int64_t dead = 0;
    cr_assert_eq(count_events(&dead), 1, "committed before the exit");
    cr_assert_eq(dead, 1, "the refusal read with it is dead-lettered too");
    uint64_t seqs[4], last = 0;
    fx_daemon_start(&fd, tmp.path, NULL);
    cr_assert_eq(replay_seqs(1, seqs, 4, &last), 1, "and its output row is there to replay");
}

Test(e2e, sigterm_commits_input_already_read)
{
    stop_signal_commits_what_was_read(SIGTERM);
}

Test(e2e, sigint_commits_input_already_read)
{
    stop_signal_commits_what_was_read(SIGINT);
}

/* README: batch_delay_ms waits for more events before committing. At 1000 ms an event read
 * after the first is committed in the first one's batch (two events and a refusal: a batch of
 * 3); at 0 the first would have been committed on its own loop pass. A machine stalled for the
 * whole second between two sends splits them, so of three tries one must batch them. */
Test(e2e, batch_delay_ms_gathers_events_read_later_into_one_batch)
{
    fx_daemon_stop(&fd);
    const char *args[] = {"--set", "batch_delay_ms=1000", "--log-level", "debug", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    void *dealer = connect_socket(ZMQ_DEALER, fd.submit);
    bool batched = false;
    for (int try = 0; try < 3 && !batched; try++) {
        char first[32], bad[32], second[32];
        fx_answer_t a;
        snprintf(first, sizeof first, "evt-delay-a%d", try);
        snprintf(bad, sizeof bad, "evt-delay-bad%d", try);
        snprintf(second, sizeof second, "evt-delay-b%d", try);
        dealer_send_lead(dealer, first, fx_now_ms());
        dealer_send_mismatch(dealer, bad);
        wait_read_through(bad);
        dealer_send_lead(dealer, second, fx_now_ms());
        for (int i = 0; i < 3; i++)
            fx_answer_recv(dealer, &a);
        batched = fx_daemon_log_has(&fd, "committed a batch of 3 messages", 0);
    }
    cr_assert(batched, "events read within batch_delay_ms of each other share a batch");
}

/* The topics of everything d's output holds, one per line. */
static int add_topic(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    (void)seq;
    (void)env;
    (void)len;
    strncat(arg, topic, 4096 - strlen(arg) - 2);
    strcat(arg, "\n");
    return 0;
}

/* Runs funneld with engines = which and a handoff then a payment; out receives the topics. */
static void output_with_engines(const char *which, char *out)
{
    char set[64];
    snprintf(set, sizeof set, "engines=%s", which);
    fx_daemon_stop(&fd);
    /* the default plan pays nothing: a rate, so the ledger has something to post */
    const char *args[] = {"--set", set, "--set", "commission.default_rate_bp=1000", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    int64_t now = fx_now_ms();
    fx_submit(client, &fd, fx_handoff("evt-ho", "client-1", "alice", "", now - 60000),
              FUNNEL_SUBMIT_OK);
    fx_submit(client, &fd, fx_payment("evt-pay", "pay-1", "client-1", 100000, "EUR", now),
              FUNNEL_SUBMIT_OK);
    out[0] = '\0';
    cr_assert_eq(fx_follow_to_end(&fd, client, NULL, add_topic, out), 0);
}

/* README: `engines` is any subset. The ledger alone posts commission and credits nothing. */
Test(e2e, engines_subset_ledger_alone)
{
    char out[4096];
    output_with_engines("ledger", out);
    cr_assert(strstr(out, "commission.posted\n"), "%s", out);
    cr_assert_null(strstr(out, "attribution."), "%s", out);
}

/* ... and attribution with sla credits the payment and posts no commission. */
Test(e2e, engines_subset_attribution_and_sla)
{
    char out[4096];
    output_with_engines("attribution,sla", out);
    cr_assert(strstr(out, "attribution.credited\n"), "%s", out);
    cr_assert_null(strstr(out, "commission."), "%s", out);
}

/* README: command-line values override the file and survive reloads. A reload that re-reads a
 * file with other values for them changes only what the command line did not set. */
Test(e2e, command_line_values_survive_reload)
{
    char path[512];
    fx_file_write(tmp.path, "cmdline.conf", "log_level = \"warn\";\nbatch_max = 10;\n", path,
                  sizeof path);
    fx_daemon_stop(&fd);
    const char *args[] = {"--config", path, "--log-level", "debug", "--set", "batch_max=50", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    fx_file_put(path, "log_level = \"warn\";\nbatch_max = 20;\nbatch_delay_ms = 5;\n");
    fx_daemon_signal(&fd, SIGHUP);
    cr_assert(fx_daemon_log_has(&fd, "config reload: batch_delay_ms changed", 5000),
              "the file's own change applies, logged at info: the level is still debug");
    cr_assert_not(fx_daemon_log_has(&fd, "batch_max changed", 0), "--set batch_max=50 was lost");
    cr_assert_not(fx_daemon_log_has(&fd, "log_level changed", 0), "--log-level was lost");
}
