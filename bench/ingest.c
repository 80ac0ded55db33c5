/* ingest.c — how close funneld's acknowledged ingest comes to the raw limits beneath it.
 *
 * One run builds N lead.created envelopes of exactly ENVELOPE_BYTES with UUIDv7 event ids in
 * time order, then measures, with those same bytes:
 *   1. funneld: the real daemon in a temporary directory; a DEALER keeps W submits in flight
 *      and counts "ok" acks. Events/s, and submit→ack latency percentiles. Engines off, plain
 *      and with `security` (CURVE, one client key: its rate against the plain one's, target
 *      70%), then every engine on.
 *   2. ZeroMQ: PUB→SUB over TCP loopback, two threads of this process. Messages/s received.
 *   3. SQLite: the rows funneld writes per event (the events row with its unique event_id and
 *      the outbox row), SQL_BATCH events per transaction, WAL + synchronous=NORMAL, prepared
 *      statements. Events/s.
 * and prints funneld's ratio to each limit and to the smaller one, against the target: at least
 * half of the smaller raw limit.
 *
 * Exit status: 0 when every measurement completed, whatever the ratios (machines are noisy);
 * 1 on an error; 2 on a usage error. Every process, socket and file it creates is gone when it
 * returns, on error paths and after SIGINT/SIGTERM too. */
#include "bench.h"

#include "funnel/codec.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "funnel/keyfile.h"
#include "store.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define ENVELOPE_BYTES     200 /* the size the raw limits in DESIGN.md were measured at */
#define TOPIC              "lead.created"
#define DEFAULT_EVENTS     200000
#define DEFAULT_WINDOW     1000
#define MAX_EVENTS         10000000 /* ~2 GB of envelopes; more is a typo */
#define MAX_WINDOW         100000   /* funneld queues at most this many replies per peer */
#define SQL_BATCH          1000     /* events per SQLite transaction, as funneld's batch_max */
#define STALL_TIMEOUT_MS   15000    /* no progress for this long: the measurement failed */
#define WARMUP_TIMEOUT_MS  5000
#define TARGET_RATIO       0.5 /* funneld must reach half of the smaller raw limit */
#define CURVE_TARGET_RATIO 0.7 /* with security on, at least this much of the plain rate */

/* ---- the workload ---------------------------------------------------------------------- */

/* The N events every measurement uses, built once so all three move the same bytes. */
typedef struct workload {
    size_t n;
    char (*ids)[37];    /* UUIDv7 event ids, strictly increasing (events are 1 ms apart) */
    uint8_t *envelopes; /* n packed Envelopes of env_len bytes each, back to back */
    size_t env_len;
    int64_t base_ms; /* occurred_at_ms of event 0 */
} workload_t;

static const uint8_t *workload_envelope(const workload_t *w, size_t i)
{
    return w->envelopes + i * w->env_len;
}

/* Packs event i, padding the touch's content with `pad` bytes, into out; with out == NULL only
 * returns the packed size. A realistic lead: one UTM touch, owner and segment set. */
static size_t envelope_pack(const char *event_id, size_t i, int64_t at_ms, size_t pad, uint8_t *out)
{
    char lead_id[32], content[ENVELOPE_BYTES + 1];
    Funnel__V1__Touch touch = FUNNEL__V1__TOUCH__INIT;
    Funnel__V1__Touch *touches[] = {&touch};
    Funnel__V1__LeadCreated lead = FUNNEL__V1__LEAD_CREATED__INIT;
    funnel_envelope_t env = FUNNEL__V1__ENVELOPE__INIT;

    snprintf(lead_id, sizeof lead_id, "lead-%010zu", i); /* fixed width: fixed size */
    memset(content, 'x', pad);
    content[pad] = '\0';
    touch.channel = "paid_search";
    touch.source = "google";
    touch.medium = "cpc";
    touch.campaign = "spring-launch";
    touch.content = content;
    touch.term = "crm software";
    touch.at_ms = at_ms - 60000;
    lead.lead_id = lead_id;
    lead.owner = "marketing";
    lead.segment = "smb";
    lead.n_touches = 1;
    lead.touches = touches;
    env.event_id = (char *)event_id;
    env.occurred_at_ms = at_ms;
    env.source = "bench";
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED;
    env.lead_created = &lead;
    return out ? funnel__v1__envelope__pack(&env, out)
               : funnel__v1__envelope__get_packed_size(&env);
}

static void workload_free(workload_t *w)
{
    free(w->ids);
    free(w->envelopes);
    memset(w, 0, sizeof *w);
}

/* Event ids are UUIDv7 one millisecond apart, ending now: each insert lands at the right edge
 * of the unique index, as with a real publisher, and sorted order allows binary search. */
static int workload_ids(workload_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (funnel_uuid7(w->base_ms + (int64_t)i, w->ids[i]))
            return bench_error("funnel_uuid7 failed");
        if (i && strcmp(w->ids[i - 1], w->ids[i]) >= 0)
            return bench_error("event ids are not increasing at %zu", i);
    }
    return 0;
}

/* Builds n events. Ids, lead ids and timestamps have fixed widths, so one padding gives every
 * envelope exactly ENVELOPE_BYTES; each packed size is checked anyway. */
static int workload_build(workload_t *w, size_t n)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->base_ms = bench_wall_ms() - (int64_t)n;
    if (!(w->ids = malloc(n * sizeof *w->ids)))
        return bench_error("out of memory for %zu event ids", n);
    if (workload_ids(w))
        goto fail;
    size_t pad = 0;
    while (pad < ENVELOPE_BYTES &&
           envelope_pack(w->ids[0], 0, w->base_ms, pad, NULL) < ENVELOPE_BYTES)
        pad++;
    w->env_len = envelope_pack(w->ids[0], 0, w->base_ms, pad, NULL);
    if (!(w->envelopes = malloc(n * w->env_len))) {
        bench_error("out of memory for %zu envelopes", n);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *dst = w->envelopes + i * w->env_len;
        if (envelope_pack(w->ids[i], i, w->base_ms + (int64_t)i, pad, dst) != w->env_len) {
            bench_error("envelope %zu does not pack to %zu bytes", i, w->env_len);
            goto fail;
        }
    }
    return 0;
fail:
    workload_free(w);
    return -1;
}

/* The index of event id (36 bytes, not NUL-terminated) in the sorted id table. */
static bool workload_find(const workload_t *w, const void *id, size_t len, size_t *index)
{
    size_t lo = 0, hi = w->n;
    if (len != 36)
        return false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(w->ids[mid], id, 36);
        if (c == 0) {
            *index = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* ---- 1. funneld: acknowledged submit ----------------------------------------------------- */

typedef struct funneld_result {
    double rate;             /* "ok" acks per second, first submit to last ack */
    uint64_t p50_ns, p99_ns; /* submit→ack latency */
    uint64_t max_ns;
} funneld_result_t;

/* The workload as a submit source, and what came back. */
typedef struct submit_tally {
    const workload_t *w;
    size_t next;      /* the next envelope to hand out */
    uint64_t *lat_ns; /* submit→ack of each answered event, in answer order */
    size_t n_answered, ok;
    uint64_t last_ack_ns;
    char refusal[256]; /* the first answer that was not "ok" */
} submit_tally_t;

static int tally_next(void *ctx, const char **topic, const void **data, size_t *len,
                      uint64_t *index)
{
    submit_tally_t *t = ctx;
    if (t->next >= t->w->n)
        return 0;
    *topic = TOPIC;
    *data = workload_envelope(t->w, t->next);
    *len = t->w->env_len;
    *index = t->next++;
    return 1;
}

static bool tally_index_of(void *ctx, const void *id, size_t len, uint64_t *index)
{
    size_t i;
    if (!workload_find(((submit_tally_t *)ctx)->w, id, len, &i))
        return false;
    *index = i;
    return true;
}

static void tally_answered(void *ctx, uint64_t index, const char *status, size_t len,
                           uint64_t lat_ns, uint64_t now_ns)
{
    submit_tally_t *t = ctx;
    t->lat_ns[t->n_answered++] = lat_ns;
    t->last_ack_ns = now_ns;
    if (len == 2 && !memcmp(status, "ok", 2))
        t->ok++;
    else if (!t->refusal[0])
        snprintf(t->refusal, sizeof t->refusal, "%.*s: %.*s", 36, t->w->ids[index], (int)len,
                 status);
}

/* Submits every event with `window` in flight (as a CURVE client when curve is set); fills out
 * when all were answered "ok". */
static int submit_all(const workload_t *w, size_t window, const char *endpoint,
                      const bench_curve_t *curve, funneld_result_t *out)
{
    submit_tally_t t = {.w = w};
    bench_source_t src = {&t, tally_next, tally_index_of, tally_answered};
    uint64_t first_ns = 0;
    int rc = -1;
    if (!(t.lat_ns = malloc(w->n * sizeof *t.lat_ns))) {
        bench_error("out of memory for %zu timestamps", w->n);
        goto out;
    }
    if (bench_submit_as(endpoint, window, &src, curve, &first_ns))
        goto out;
    if (t.ok != w->n) {
        bench_error("%zu of %zu events answered \"ok\"; first other answer: %s", t.ok, w->n,
                    t.refusal);
        goto out;
    }
    bench_sort_u64(t.lat_ns, t.n_answered);
    out->rate = (double)t.ok / bench_seconds(t.last_ack_ns - first_ns);
    out->p50_ns = bench_percentile(t.lat_ns, t.n_answered, 50);
    out->p99_ns = bench_percentile(t.lat_ns, t.n_answered, 99);
    out->max_ns = t.lat_ns[t.n_answered - 1];
    rc = 0;
out:
    free(t.lat_ns);
    return rc;
}

/* Writes dir/curve.conf (its path into conf): `security` with a fresh server key and a
 * clients file admitting one client, whose keys go to curve, to publish anything. */
static int curve_config_write(const char *dir, char *conf, size_t len, bench_curve_t *curve)
{
    funnel_keypair_t server, client;
    char base[PATH_MAX], err[512], text[3 * PATH_MAX], clients[PATH_MAX];
    snprintf(base, sizeof base, "%s/server", dir);
    if (funnel_keypair_new(&server) || funnel_keypair_new(&client))
        return bench_error("this libzmq has no CURVE");
    if (funnel_keyfile_write(base, &server, err, sizeof err))
        return bench_error("%s", err);
    snprintf(curve->server_public, sizeof curve->server_public, "%s", server.public_key);
    snprintf(curve->client_public, sizeof curve->client_public, "%s", client.public_key);
    snprintf(curve->client_secret, sizeof curve->client_secret, "%s", client.secret_key);
    snprintf(clients, sizeof clients, "%s/clients.conf", dir);
    snprintf(conf, len, "%s/curve.conf", dir);
    snprintf(text, sizeof text,
             "clients = ( { name = \"bench\"; public_key = \"%s\"; publish = [\"*\"]; } );\n",
             client.public_key);
    FILE *f = fopen(clients, "w");
    if (!f || fputs(text, f) < 0 || fclose(f))
        return bench_error("%s: %s", clients, strerror(errno));
    snprintf(text, sizeof text, "security = { server_key = \"%s.key\"; clients = \"%s\"; };\n",
             base, clients);
    if (!(f = fopen(conf, "w")) || fputs(text, f) < 0 || fclose(f))
        return bench_error("%s: %s", conf, strerror(errno));
    funnel_keypair_wipe(&server);
    return 0;
}

/* One funneld run: engines as given, plain or (curve) with security on. */
static int bench_funneld(const workload_t *w, size_t window, const char *dir, const char *label,
                         const char *engines, bool curve, funneld_result_t *out)
{
    bench_daemon_t d;
    bench_curve_t keys;
    char conf[PATH_MAX];
    if (curve && curve_config_write(dir, conf, sizeof conf, &keys))
        return -1;
    fprintf(stderr, "funneld (%s): submitting %zu events, window %zu...\n", label, w->n, window);
    if (bench_daemon_start(&d, dir, label, engines, curve ? conf : NULL)) {
        bench_daemon_dump_log(&d);
        return -1;
    }
    int rc = submit_all(w, window, d.submit, curve ? &keys : NULL, out);
    int status = bench_daemon_stop(&d);
    if (!rc && status)
        rc = bench_error("funneld exited with status %d after SIGTERM", status);
    if (!rc)
        rc = bench_verify_stored(d.db, w->n, 0);
    if (rc)
        bench_daemon_dump_log(&d);
    return rc;
}

/* ---- 2. raw ZeroMQ PUB→SUB --------------------------------------------------------------- */

/* The subscriber thread's state. The publisher waits for `live` before it starts the clock. */
typedef struct sub_thread {
    char endpoint[256];
    atomic_bool live;   /* a warm-up message arrived: the subscription reached the PUB */
    atomic_bool abort;  /* the publisher gave up: stop waiting */
    size_t received;    /* TOPIC messages; read after join */
    uint64_t last_ns;   /* when the last of them arrived */
    atomic_bool failed; /* error[] is set; the thread is ending */
    char error[256];
} sub_thread_t;

/* Receives one [topic][payload] message; returns the topic frame's first bytes in topic. */
static int sub_recv(void *sock, char *topic, size_t topic_len)
{
    zmq_msg_t m;
    int more = 1, first = 1;
    topic[0] = '\0';
    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return -1;
        }
        if (first) {
            size_t n = zmq_msg_size(&m) < topic_len - 1 ? zmq_msg_size(&m) : topic_len - 1;
            memcpy(topic, zmq_msg_data(&m), n);
            topic[n] = '\0';
            first = 0;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return 0;
}

/* Counts TOPIC messages until "end", an abort, or STALL_TIMEOUT_MS of silence. */
static void sub_loop(sub_thread_t *t, void *sock)
{
    uint64_t last_msg = bench_mono_ns();
    for (;;) {
        char topic[32];
        if (sub_recv(sock, topic, sizeof topic)) {
            int err = zmq_errno();
            if (err != EAGAIN && err != EINTR) {
                snprintf(t->error, sizeof t->error, "recv: %s", zmq_strerror(err));
                return;
            }
            if (atomic_load(&t->abort) || bench_interrupted)
                return;
            if (bench_mono_ns() - last_msg > (uint64_t)STALL_TIMEOUT_MS * 1000000u) {
                snprintf(t->error, sizeof t->error, "no message for %d ms after %zu",
                         STALL_TIMEOUT_MS, t->received);
                return;
            }
            continue;
        }
        last_msg = bench_mono_ns();
        if (!strcmp(topic, TOPIC)) {
            t->received++;
            t->last_ns = last_msg;
        } else if (!strcmp(topic, "warmup")) {
            atomic_store(&t->live, true);
        } else if (!strcmp(topic, "end")) {
            return;
        }
    }
}

static void *sub_main(void *arg)
{
    sub_thread_t *t = arg;
    int zero = 0, timeout = 100;
    /* Its own context (its own I/O thread), like a subscriber in another process. */
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sock) {
        snprintf(t->error, sizeof t->error, "SUB socket: %s", zmq_strerror(zmq_errno()));
    } else {
        /* Unlimited queue: the count must not depend on drops, only on speed. */
        zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
        if (zmq_connect(sock, t->endpoint))
            snprintf(t->error, sizeof t->error, "connect: %s", zmq_strerror(zmq_errno()));
        else
            sub_loop(t, sock);
    }
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    atomic_store(&t->failed, t->error[0] != '\0');
    return NULL;
}

static int pub_send(void *sock, const char *topic, const void *data, size_t len)
{
    if (zmq_send(sock, topic, strlen(topic), ZMQ_SNDMORE) < 0 || zmq_send(sock, data, len, 0) < 0)
        return bench_error("PUB send: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* Sends warm-up messages until the subscriber has one: before that, PUB drops everything. */
static int pub_warm_up(void *sock, sub_thread_t *t, const workload_t *w)
{
    for (int waited = 0; !atomic_load(&t->live); waited++) {
        if (bench_interrupted)
            return bench_error("bench_interrupted");
        if (atomic_load(&t->failed) || waited >= WARMUP_TIMEOUT_MS)
            return bench_error("ZeroMQ subscriber not connected after %d ms", waited);
        if (pub_send(sock, "warmup", workload_envelope(w, 0), w->env_len))
            return -1;
        bench_sleep_ms(1);
    }
    return 0;
}

/* Publishes every envelope and the end marker; *t0 is when the first one left. */
static int pub_run(void *sock, const workload_t *w, uint64_t *t0)
{
    *t0 = bench_mono_ns();
    for (size_t i = 0; i < w->n; i++) {
        if ((i & 4095) == 0 && bench_interrupted)
            return bench_error("bench_interrupted");
        if (pub_send(sock, TOPIC, workload_envelope(w, i), w->env_len))
            return -1;
    }
    return pub_send(sock, "end", "", 0);
}

static int pub_open(void **ctx, void **sock, char *endpoint, size_t len)
{
    int zero = 0;
    if (!(*ctx = zmq_ctx_new()) || !(*sock = zmq_socket(*ctx, ZMQ_PUB)))
        return bench_error("PUB socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(*sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(*sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(*sock, "tcp://127.0.0.1:*") ||
        zmq_getsockopt(*sock, ZMQ_LAST_ENDPOINT, endpoint, &len))
        return bench_error("PUB bind: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* PUB in this thread, SUB in another, over TCP loopback; *rate counts received messages. */
static int bench_zmq(const workload_t *w, double *rate)
{
    sub_thread_t t = {.received = 0};
    void *ctx = NULL, *sock = NULL;
    pthread_t thread;
    bool started = false;
    uint64_t t0 = 0;
    int rc = -1;
    atomic_init(&t.live, false);
    atomic_init(&t.abort, false);
    atomic_init(&t.failed, false);
    fprintf(stderr, "zeromq: PUB->SUB %zu messages...\n", w->n);
    if (pub_open(&ctx, &sock, t.endpoint, sizeof t.endpoint))
        goto out;
    if (pthread_create(&thread, NULL, sub_main, &t)) {
        bench_error("pthread_create failed");
        goto out;
    }
    started = true;
    if (pub_warm_up(sock, &t, w) || pub_run(sock, w, &t0))
        goto out;
    rc = 0;
out:
    if (rc)
        atomic_store(&t.abort, true);
    if (started)
        pthread_join(thread, NULL);
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    if (!rc && t.error[0])
        rc = bench_error("ZeroMQ subscriber: %s", t.error);
    if (!rc && t.received == 0)
        rc = bench_error("ZeroMQ subscriber received nothing");
    if (!rc) {
        *rate = (double)t.received / bench_seconds(t.last_ns - t0);
        if (t.received != w->n)
            fprintf(stderr, "zeromq: %zu of %zu messages arrived (counted as received)\n",
                    t.received, w->n);
    }
    return rc;
}

/* ---- 3. raw SQLite ---------------------------------------------------------------------- */

/* The statements funneld's store runs per event (daemon/core/store.c), unchanged. */
static const char event_sql[] =
    "INSERT INTO events(event_id, topic, occurred_at_ms, received_at_ms, source, envelope) "
    "VALUES (?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING";
static const char outbox_sql[] =
    "INSERT INTO outbox(topic, created_at_ms, envelope) VALUES (?,?,?)";

enum { SQ_BEGIN, SQ_COMMIT, SQ_EVENT, SQ_OUTBOX, SQ_COUNT_ };

static int step_reset(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : bench_error("sqlite: %s", sqlite3_errmsg(db));
}

/* Inserts events [from, to) in one transaction. */
static int sqlite_batch(sqlite3 *db, sqlite3_stmt **st, const workload_t *w, size_t from, size_t to)
{
    int64_t now = bench_wall_ms(); /* funneld too reads the clock once per batch */
    if (step_reset(db, st[SQ_BEGIN]))
        return -1;
    for (size_t i = from; i < to; i++) {
        const uint8_t *env = workload_envelope(w, i);
        sqlite3_stmt *ev = st[SQ_EVENT], *ob = st[SQ_OUTBOX];
        sqlite3_bind_text(ev, 1, w->ids[i], 36, SQLITE_STATIC);
        sqlite3_bind_text(ev, 2, TOPIC, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ev, 3, w->base_ms + (int64_t)i);
        sqlite3_bind_int64(ev, 4, now);
        sqlite3_bind_text(ev, 5, "bench", -1, SQLITE_STATIC);
        sqlite3_bind_blob(ev, 6, env, (int)w->env_len, SQLITE_STATIC);
        sqlite3_bind_text(ob, 1, TOPIC, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ob, 2, now);
        sqlite3_bind_blob(ob, 3, env, (int)w->env_len, SQLITE_STATIC);
        if (step_reset(db, ev) || step_reset(db, ob))
            return -1;
    }
    return step_reset(db, st[SQ_COMMIT]);
}

/* The store's own open gives the exact schema funneld has (migrations included); the pragmas
 * that matter are checked rather than trusted. */
static int sqlite_check_pragmas(sqlite3 *db)
{
    sqlite3_stmt *st;
    char mode[16] = "";
    int sync = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            sync = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (strcmp(mode, "wal") || sync != 1)
        return bench_error("raw SQLite database has journal_mode=%s synchronous=%d, expected "
                           "wal and 1 (NORMAL)",
                           mode, sync);
    return 0;
}

static int sqlite_prepare(sqlite3 *db, sqlite3_stmt **st)
{
    const char *sql[SQ_COUNT_] = {"BEGIN IMMEDIATE", "COMMIT", event_sql, outbox_sql};
    for (int i = 0; i < SQ_COUNT_; i++)
        if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL))
            return bench_error("prepare %s: %s", sql[i], sqlite3_errmsg(db));
    return 0;
}

/* Every event as funneld stores it, SQL_BATCH per transaction; *rate in events per second. */
static int bench_sqlite(const workload_t *w, const char *dir, double *rate)
{
    char path[PATH_MAX], err[512];
    funnel_store_t *store = NULL;
    sqlite3_stmt *st[SQ_COUNT_] = {0};
    int rc = -1;
    fprintf(stderr, "sqlite: inserting %zu events, %d per transaction...\n", w->n, SQL_BATCH);
    snprintf(path, sizeof path, "%s/raw.db", dir);
    if (funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err)) {
        bench_error("open %s: %s", path, err);
        goto out;
    }
    sqlite3 *db = funnel_store_db(store);
    if (sqlite_check_pragmas(db) || sqlite_prepare(db, st))
        goto out;
    uint64_t t0 = bench_mono_ns();
    for (size_t i = 0; i < w->n; i += SQL_BATCH) {
        if (bench_interrupted) {
            bench_error("bench_interrupted");
            goto out;
        }
        if (sqlite_batch(db, st, w, i, i + SQL_BATCH < w->n ? i + SQL_BATCH : w->n))
            goto out;
    }
    *rate = (double)w->n / bench_seconds(bench_mono_ns() - t0);
    rc = 0;
out:
    if (store && !sqlite3_get_autocommit(funnel_store_db(store)))
        sqlite3_exec(funnel_store_db(store), "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < SQ_COUNT_; i++)
        sqlite3_finalize(st[i]); /* before the close, which refuses while statements live */
    funnel_store_destroy(&store);
    return rc;
}

/* ---- report ------------------------------------------------------------------------------ */

static void print_funneld_row(const char *what, const funneld_result_t *f)
{
    char a[32];
    printf("  %-40s %12s %-8s %7.2fms %7.2fms %7.2fms\n", what,
           bench_fmt_count(f->rate, a, sizeof a), "events/s", (double)f->p50_ns / 1e6,
           (double)f->p99_ns / 1e6, (double)f->max_ns / 1e6);
}

/* core: funneld with engines off, writing exactly the rows the raw SQLite run writes (event +
 * outbox), so the ratio against the raw limits is like for like; that one has the target.
 * full: every engine on (attribution adds a lead and a touch row per lead.created), for
 * information. */
static void print_report(const workload_t *w, size_t window, const funneld_result_t *core,
                         const funneld_result_t *curve, const funneld_result_t *full,
                         double zmq_rate, double sql_rate)
{
    char a[32], b[32], c[32], d[32];
    double floor = zmq_rate < sql_rate ? zmq_rate : sql_rate;
    double ratio = core->rate / floor;
    printf("\nfunneld ingest benchmark: %s %s events, %zu-byte envelopes, window %s\n",
           bench_fmt_count((double)w->n, a, sizeof a), TOPIC, w->env_len,
           bench_fmt_count((double)window, b, sizeof b));
    printf("funneld: default batching, sync=normal, log level warn\n\n");
    printf("  %-40s %12s %-8s %9s %9s %9s\n", "measurement", "rate", "", "p50", "p99", "max");
    print_funneld_row("funneld submit -> ack, engines off", core);
    print_funneld_row("funneld submit -> ack, engines off, CURVE", curve);
    print_funneld_row("funneld submit -> ack, all engines on", full);
    printf("  %-40s %12s %s\n", "raw ZeroMQ PUB -> SUB, TCP loopback",
           bench_fmt_count(zmq_rate, b, sizeof b), "msg/s");
    printf("  %-40s %12s %s\n", "raw SQLite events+outbox rows, 1000/txn",
           bench_fmt_count(sql_rate, c, sizeof c), "events/s");
    printf("\n  %-40s %8s %8s %8s\n", "ratio (engines off)", "value", "target", "result");
    printf("  %-40s %7.1f%%\n", "funneld / ZeroMQ", 100.0 * core->rate / zmq_rate);
    printf("  %-40s %7.1f%%\n", "funneld / SQLite", 100.0 * core->rate / sql_rate);
    snprintf(d, sizeof d, ">=%.0f%%", 100.0 * TARGET_RATIO);
    printf("  %-40s %7.1f%% %8s %8s\n", "funneld / min(ZeroMQ, SQLite)", 100.0 * ratio, d,
           ratio >= TARGET_RATIO ? "PASS" : "BELOW");
    printf("  %-40s %7.1f%%   (engines write more rows than the raw run; no target)\n",
           "all engines on / min(ZeroMQ, SQLite)", 100.0 * full->rate / floor);
    double curve_ratio = curve->rate / core->rate;
    snprintf(d, sizeof d, ">=%.0f%%", 100.0 * CURVE_TARGET_RATIO);
    printf("  %-40s %7.1f%% %8s %8s\n", "CURVE / plain (engines off)", 100.0 * curve_ratio, d,
           curve_ratio >= CURVE_TARGET_RATIO ? "PASS" : "BELOW");
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_ingest [--events N] [--window W]\n"
            "\n"
            "Measures funneld's acknowledged-ingest throughput and latency against the raw\n"
            "limits under it, all with the same %d-byte %s envelopes:\n"
            "  1. funneld (%s) in a temporary directory, N submits over a DEALER,\n"
            "     W in flight, counting \"ok\" acks; engines off plain and with CURVE\n"
            "     (security on: one client key), then all engines on;\n"
            "  2. ZeroMQ PUB->SUB over TCP loopback, two threads of this process;\n"
            "  3. SQLite: the events row and outbox row funneld writes per event,\n"
            "     %d events per transaction, WAL, synchronous=NORMAL.\n"
            "Then prints funneld's ratio to each, and to the smaller one against the target\n"
            "(>= %.0f%%). Exits 0 whenever the run completed, whatever the ratios.\n"
            "\n"
            "  -n, --events N   events per measurement (default %d, at most %d)\n"
            "  -w, --window W   submits in flight (default %d, at most %d)\n"
            "  -h, --help       print this help and exit\n"
            "\n"
            "TMPDIR chooses where the temporary directory goes (default /tmp).\n",
            ENVELOPE_BYTES, TOPIC, FUNNELD_PATH, SQL_BATCH, 100.0 * TARGET_RATIO, DEFAULT_EVENTS,
            MAX_EVENTS, DEFAULT_WINDOW, MAX_WINDOW);
}

/* Returns 0, or 2 for a usage error, or 1 after --help (exit 0 without running). */
static int parse_args(int argc, char **argv, uint64_t *events, uint64_t *window)
{
    static const struct option longopts[] = {
        {"events", required_argument, NULL, 'n'},
        {"window", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "n:w:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 1;
        }
        if (opt == 'n' && bench_parse_count(optarg, MAX_EVENTS, events))
            continue;
        if (opt == 'w' && bench_parse_count(optarg, MAX_WINDOW, window))
            continue;
        if (opt == 'n' || opt == 'w')
            fprintf(stderr, "bench_ingest: --%s: '%s' is not a count in 1..%d\n",
                    opt == 'n' ? "events" : "window", optarg, opt == 'n' ? MAX_EVENTS : MAX_WINDOW);
        usage(stderr);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "bench_ingest: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t events = DEFAULT_EVENTS, window = DEFAULT_WINDOW;
    int args = parse_args(argc, argv, &events, &window);
    if (args)
        return args == 1 ? 0 : 2;
    bench_init("bench_ingest");

    workload_t w;
    char dir[PATH_MAX] = "";
    funneld_result_t core = {0}, curve = {0}, full = {0};
    double zmq_rate = 0, sql_rate = 0;
    if (workload_build(&w, events))
        return 1;
    int rc = bench_tmpdir_make(dir, sizeof dir);
    if (!rc)
        rc = bench_funneld(&w, window, dir, "core", "none", false, &core);
    if (!rc)
        rc = bench_funneld(&w, window, dir, "curve", "none", true, &curve);
    if (!rc)
        rc = bench_funneld(&w, window, dir, "full", "ledger,attribution,sla", false, &full);
    if (!rc)
        rc = bench_zmq(&w, &zmq_rate);
    if (!rc)
        rc = bench_sqlite(&w, dir, &sql_rate);
    if (!rc)
        print_report(&w, window, &core, &curve, &full, zmq_rate, sql_rate);
    bench_tmpdir_remove(dir);
    workload_free(&w);
    return rc ? 1 : 0;
}
