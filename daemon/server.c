/* server.c — funneld's loop: ingest → batch → one transaction → COMMIT → ack + publish.
 *
 * Everything runs on one thread. Messages read from the SUB and submit sockets are decoded and
 * validated at once (refusals are answered after the batch commits, like everything else) and
 * queued in the batch. The batch is committed when it is full, when the loop has drained what
 * arrived together (batch_delay_ms = 0) or when the delay expires. Only after COMMIT are acks
 * sent and outbox rows published, so nothing unacknowledged is ever claimed and nothing
 * uncommitted is ever published. */
#include "funnel/server.h"
#include "funnel/attribution.h"
#include "funnel/bus.h"
#include "funnel/error.h"
#include "funnel/ledger.h"
#include "funnel/router.h"
#include "funnel/sla.h"
#include "funnel/metrics.h"
#include "funnel/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define IDENT_MAX       256  /* ZeroMQ routing ids are at most 255 bytes */
#define DRAIN_BUDGET    1000 /* messages per socket per loop pass */
#define REPLAY_CHUNK    256  /* outbox rows read per replay pass */
#define PRUNE_CHUNK     10000
#define PRUNE_PERIOD_MS (3600 * 1000)
#define REPLY_HWM       100000 /* queued replies per ROUTER peer */
#define REPLAY_HWM                                                                                 \
    1024              /* queued replay rows per peer: a few chunks keep it busy, and               \
                         bound the memory a client that never reads can pin */
#define REPLAY_MAX 64 /* replays in progress at once; more get [error][busy: ...] */
#define REPLAY_RETRY_MS                                                                            \
    75                              /* parked replays retry on a timer: POLLOUT on a ROUTER means  \
                                       "some peer has room", not "this one has" */
#define REPLAY_STALL_MS       30000 /* a replay whose peer took nothing for this long is dropped */
#define DEAD_PAYLOADS_PER_MIN 100   /* refusals per minute whose payload is stored */
#define BUSY_RETRY_MIN_MS     100   /* first retry of a batch the database was too busy for */
#define BUSY_RETRY_MAX_MS     1000  /* the doubling retry delay stops growing here */

typedef enum item_status { ITEM_OK, ITEM_DUPLICATE, ITEM_REFUSED, ITEM_FAILED } item_status_t;

/* Where a reply goes: a ROUTER peer, with or without a REQ-style empty delimiter. */
typedef struct peer {
    uint8_t ident[IDENT_MAX];
    size_t ident_len; /* 0: no reply (SUB input) */
    bool delimiter;   /* the peer is a REQ socket: replies carry an empty frame */
} peer_t;

/* One ingest message waiting for the batch to commit. */
typedef struct item {
    funnel_envelope_t *env;      /* NULL when refused; lives in mem */
    funnel_envelope_arena_t mem; /* env's memory: one allocation, not one per field */
    char topic[FUNNEL_TOPIC_MAX + 1];
    char event_id[FUNNEL_ID_MAX + 1]; /* for replies and logs; may be empty if undecodable */
    zmq_msg_t body;  /* the envelope frame, taken over from ZeroMQ rather than copied; empty for
                        an oversize refusal. Relocated only with zmq_msg_move (batch_grow). */
    size_t raw_size; /* bytes received */
    funnel_refusal_t why;
    item_status_t status;
    peer_t peer;
} item_t;

/* A replay in progress: [truncated] if due, outbox rows from next_seq on a chunk per loop pass,
 * then [end] (or [error] after a read failure). Each stage is sent again after EAGAIN, so a full
 * peer parks the replay at the frame it could not take. */
typedef struct replay {
    peer_t peer;
    uint64_t next_seq;
    uint64_t last_sent;
    uint64_t truncated;  /* first available seq, while [truncated] is still to be sent; else 0 */
    bool rows_done;      /* every row was sent: [end] is next */
    const char *error;   /* a read failed: [error][error] is next, instead of [end] */
    bool parked;         /* the peer was full: wait for the retry timer */
    uint64_t stalled_at; /* uv_now when the peer last refused with no progress since; 0: none */
} replay_t;

struct funnel_server {
    uv_loop_t loop;
    funnel_config_t cfg;
    funnel_server_options_t opts;
    funnel_log_t *log;
    void *zctx;
    funnel_zsock_t *sub, *submit, *pub, *replay_sock;
    char bound[4][256]; /* resolved ingest, submit, publish, replay endpoints */
    funnel_store_t *store;
    funnel_router_t *router;
    void *engines[FUNNEL_ROUTER_MAX_ENGINES]; /* running engines, in router order */
    const struct engine_def *engine_defs[FUNNEL_ROUTER_MAX_ENGINES]; /* their definitions */
    size_t n_engines;
    item_t *batch;
    size_t n_batch, cap_batch;
    uv_timer_t flush_timer; /* commits after batch_delay_ms; at 0, on the next loop pass */
    uint64_t busy_retry_ms; /* the delay before the kept batch's next attempt; 0: none kept */
    bool ingest_held;       /* sub and submit are not read: the kept batch is full */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog, prune_timer;
    uv_timer_t engine_timer;      /* the earliest engine deadline (SLA timers) */
    uv_idle_t replay_idle;        /* runs a chunk of every unparked replay per loop pass */
    uv_timer_t replay_timer;      /* unparks replays whose peers were full */
    replay_t replays[REPLAY_MAX]; /* in arrival order; at most one per routing identity */
    size_t n_replays;
    int64_t dead_window_ms; /* start of the current minute of dead-letter payload budget */
    unsigned dead_payloads; /* payloads stored in that minute */
    uint64_t published_seq; /* last sequence handed to the PUB socket */
    funnel_server_stats_t stats;
    funnel_metrics_t *metrics; /* the Prometheus endpoint; NULL when `metrics` is off */
    bool stopping;
};

static int64_t real_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(funnel_server_t *srv)
{
    return srv->opts.clock(srv->opts.clock_arg);
}

static funnel_codec_limits_t limits_of(const funnel_server_t *srv)
{
    return (funnel_codec_limits_t){
        .max_message_bytes = (size_t)srv->cfg.max_message_bytes,
        .max_future_ms = srv->cfg.max_future_ms,
    };
}

/* ---- replies ------------------------------------------------------------------------- */

/* Sends [ident][delimiter?][parts...] on a ROUTER socket. */
static int peer_send(funnel_zsock_t *zs, const peer_t *peer, const void *const *parts,
                     const size_t *lens, size_t n)
{
    const void *p[8];
    size_t l[8];
    size_t k = 0;
    p[k] = peer->ident;
    l[k++] = peer->ident_len;
    if (peer->delimiter) {
        p[k] = "";
        l[k++] = 0;
    }
    for (size_t i = 0; i < n && k < 8; i++, k++) {
        p[k] = parts[i];
        l[k] = lens[i];
    }
    return funnel_zsock_sendv(zs, p, l, k);
}

static void item_reply(funnel_server_t *srv, const item_t *it)
{
    char status[sizeof it->why.text + 16];
    if (!it->peer.ident_len || it->status == ITEM_FAILED)
        return;
    if (it->status == ITEM_OK)
        snprintf(status, sizeof status, "ok");
    else if (it->status == ITEM_DUPLICATE)
        snprintf(status, sizeof status, "duplicate");
    else
        snprintf(status, sizeof status, "rejected: %s", it->why.text);
    const void *parts[] = {it->event_id, status};
    size_t lens[] = {strlen(it->event_id), strlen(status)};
    peer_send(srv->submit, &it->peer, parts, lens, 2);
}

/* ---- batch ---------------------------------------------------------------------------- */

/* Releases what an item holds; the slot is initialised again by batch_slot before reuse. */
static void item_clear(item_t *it)
{
    it->env = NULL;
    funnel_envelope_arena_clear(&it->mem);
    zmq_msg_close(&it->body);
}

/* The kept envelope bytes of an item: NULL and 0 when none were kept. */
static const uint8_t *item_bytes(item_t *it, size_t *len)
{
    *len = zmq_msg_size(&it->body);
    return *len ? zmq_msg_data(&it->body) : NULL;
}

static void publish_row(funnel_server_t *srv, const funnel_outbox_row_t *row)
{
    uint8_t seq[8];
    funnel_seq_encode(row->seq, seq);
    const void *parts[] = {row->topic, seq, row->envelope};
    size_t lens[] = {strlen(row->topic), 8, row->len};
    /* PUB never blocks: a subscriber over its high-water mark loses messages and replays. */
    funnel_zsock_sendv(srv->pub, parts, lens, 3);
    srv->published_seq = row->seq;
    srv->stats.published++;
    funnel_metrics_published(srv->metrics, row->seq);
}

/* Stores a refused item as a dead letter inside the open transaction. A flood of refusals must
 * not fill the disk: only the first DEAD_PAYLOADS_PER_MIN payloads a minute are stored; later
 * ones keep their metadata and size only. */
static void dead_letter_add(funnel_server_t *srv, item_t *it, int64_t now)
{
    size_t len;
    const uint8_t *raw = item_bytes(it, &len);
    int64_t mono = (int64_t)uv_now(&srv->loop);
    if (mono - srv->dead_window_ms >= 60000) {
        srv->dead_window_ms = mono;
        srv->dead_payloads = 0;
    }
    if (len && srv->dead_payloads++ >= DEAD_PAYLOADS_PER_MIN) {
        raw = NULL;
        len = 0;
    }
    funnel_dead_letter_t dl = {
        .received_at_ms = now,
        .topic = it->topic,
        .event_id = it->event_id,
        .reason = funnel_refusal_name(it->why.code),
        .detail = it->why.text,
        .payload = raw,
        .payload_len = len,
        .payload_size = it->raw_size,
    };
    if (funnel_store_dead_letter_add(srv->store, &dl))
        funnel_log_error(srv->log, "dead letter not recorded: %s", funnel_store_errmsg(srv->store));
}

/* Writes one item inside the open transaction: a refusal as a dead letter, an event through the
 * router. Guarded, the event runs in its own savepoint, so a failure undoes its rows alone, marks
 * it failed and is logged; an engine's refusal (FUNNEL_EREFUSED) undoes them too and turns the
 * item into a dead-lettered refusal; 0 is returned. Unguarded, a failure or refusal leaves the
 * event's partial rows in the transaction and is returned for batch_txn to roll everything
 * back. */
static int route_item(funnel_server_t *srv, item_t *it, int64_t now, bool guarded)
{
    funnel_store_t *st = srv->store;
    size_t len;
    const uint8_t *raw = item_bytes(it, &len);
    if (!it->env) {
        dead_letter_add(srv, it, now);
        return 0;
    }
    int rc = guarded ? funnel_store_savepoint(st) : 0;
    if (!rc)
        rc = funnel_router_apply(srv->router, it->env, it->topic, raw, len, now);
    if (rc == 0 || rc == FUNNEL_EDUP) {
        if (guarded)
            funnel_store_savepoint_release(st);
        it->status = rc ? ITEM_DUPLICATE : ITEM_OK;
        return 0;
    }
    if (!guarded)
        return rc;
    funnel_store_savepoint_rollback(st);
    funnel_router_rolled_back(srv->router);
    if (rc == FUNNEL_EREFUSED) {
        it->why = *funnel_router_refusal(srv->router);
        it->status = ITEM_REFUSED;
        dead_letter_add(srv, it, now);
        return 0;
    }
    it->status = ITEM_FAILED;
    funnel_log_error(srv->log, "event %s (%s) not recorded: %s: %s", it->event_id, it->topic,
                     funnel_strerror(rc), funnel_store_errmsg(st));
    return 0;
}

/* One attempt at the batch's transaction: route every item, persist the publish cursor, commit.
 * Returns 0 once committed, FUNNEL_EAGAIN when an unguarded event failed, or the error that
 * failed the transaction; on any error the transaction is rolled back. */
static int batch_txn(funnel_server_t *srv, int64_t now, bool guarded)
{
    funnel_store_t *st = srv->store;
    int rc = funnel_store_begin(st);
    for (size_t i = 0; !rc && i < srv->n_batch; i++)
        if (route_item(srv, &srv->batch[i], now, guarded))
            rc = FUNNEL_EAGAIN;
    rc = rc ? rc : funnel_store_published_set(st, srv->published_seq);
    rc = rc ? rc : funnel_store_commit(st);
    if (rc) {
        funnel_store_rollback(st);
        funnel_router_rolled_back(srv->router);
    }
    return rc;
}

/* Publishes the outbox rows of the transaction just committed; returns how many. */
static size_t publish_pending(funnel_server_t *srv)
{
    const funnel_outbox_row_t *rows;
    size_t n = funnel_store_outbox_pending(srv->store, &rows);
    for (size_t i = 0; i < n; i++)
        publish_row(srv, &rows[i]);
    funnel_store_outbox_pending_clear(srv->store);
    return n;
}

static void timers_arm(funnel_server_t *srv);
static void on_flush_timer(uv_timer_t *h);
static void on_ingest(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);
static void on_submit(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);

/* Stops (hold) or resumes reading the sub and submit sockets. Held, their messages wait in
 * ZeroMQ's queues up to the high-water marks, which then push back on the senders, so memory
 * stays bounded while the database is locked. bus.h's pause is one-way (for shutdown), so a
 * socket is held by restarting it without a callback, which drains its edge without reading;
 * resuming restarts it with its callback and reads what waits at once. */
static void ingest_hold(funnel_server_t *srv, bool hold)
{
    if (srv->ingest_held == hold || srv->stopping)
        return;
    srv->ingest_held = hold;
    funnel_log_info(srv->log,
                    hold ? "batch full while the database is busy: input held" : "input resumed");
    funnel_zsock_t *socks[] = {srv->sub, srv->submit};
    funnel_zsock_recv_cb cbs[] = {on_ingest, on_submit};
    /* Resuming reads at once, which may fill a batch, meet a busy database again and hold
     * input from inside this loop: then the remaining socket must stay held. */
    for (size_t i = 0; i < 2 && srv->ingest_held == hold; i++)
        if (funnel_zsock_start(socks[i], hold ? NULL : cbs[i], srv, DRAIN_BUDGET))
            funnel_log_error(srv->log, "cannot %s ingest socket %zu", hold ? "hold" : "resume", i);
}

/* The database was locked by another connection past the busy timeout: nothing was written and
 * the same batch may well commit a moment later. Dropping it would lose the SUB input, whose
 * publishers expect no ack and never resend, so it is kept (unanswered) and tried again after a
 * delay doubling from BUSY_RETRY_MIN_MS to BUSY_RETRY_MAX_MS. New input joins it meanwhile, up
 * to batch_max; then reading stops until a commit succeeds. */
static void batch_keep(funnel_server_t *srv)
{
    uint64_t delay = srv->busy_retry_ms ? 2 * srv->busy_retry_ms : BUSY_RETRY_MIN_MS;
    srv->busy_retry_ms = delay < BUSY_RETRY_MAX_MS ? delay : BUSY_RETRY_MAX_MS;
    funnel_log_warn(srv->log, "database busy (%s): %zu events kept, retrying in %llu ms",
                    funnel_store_errmsg(srv->store), srv->n_batch,
                    (unsigned long long)srv->busy_retry_ms);
    uv_timer_start(&srv->flush_timer, on_flush_timer, srv->busy_retry_ms, 0);
    if ((int64_t)srv->n_batch >= srv->cfg.batch_max)
        ingest_hold(srv, true);
}

/* Commits the batch in one transaction, then acks and publishes.
 *
 * A savepoint per event costs two statements and makes SQLite copy every page the event
 * touches into the sub-journal, so the batch first runs without any. Only when an event fails
 * is that transaction rolled back and the batch run again with a savepoint per event, so the
 * failure sinks that event alone, as before. Engines may thus see an event twice, the first
 * time in a transaction that is rolled back (router.h). A database too busy to begin is no
 * failure of the batch: it is kept and tried again (batch_keep). */
static void batch_flush(funnel_server_t *srv)
{
    uv_timer_stop(&srv->flush_timer);
    if (srv->n_batch == 0)
        return;
    int64_t now = now_ms(srv);
    funnel_store_t *st = srv->store;
    uint64_t started_ns = uv_hrtime(); /* commit latency for metrics, not engine time */
    int rc = batch_txn(srv, now, false);
    if (rc == FUNNEL_EAGAIN)
        rc = batch_txn(srv, now, true);
    bool busy = rc && funnel_store_busy(st);
    funnel_metrics_commit(srv->metrics, srv->n_batch, (uv_hrtime() - started_ns) / 1000,
                          !rc    ? FUNNEL_METRICS_COMMITTED
                          : busy ? FUNNEL_METRICS_COMMIT_BUSY
                                 : FUNNEL_METRICS_COMMIT_ERROR);
    if (rc)
        srv->stats.commit_failures++;
    /* Once stopping there is no later attempt to wait for: the batch is given up. */
    if (busy && !srv->stopping) {
        batch_keep(srv);
        return;
    }
    srv->busy_retry_ms = 0;
    if (rc) {
        /* Publishers that asked for an ack get none and retry with the same event_id. */
        funnel_log_error(srv->log, "commit of %zu events failed: %s; none acknowledged",
                         srv->n_batch, funnel_store_errmsg(st));
        for (size_t i = 0; i < srv->n_batch; i++)
            srv->batch[i].status = ITEM_FAILED;
    } else {
        size_t n = publish_pending(srv);
        srv->stats.batches++;
        funnel_log_debug(srv->log, "committed a batch of %zu messages, published %zu", srv->n_batch,
                         n);
    }
    size_t lost = 0;
    for (size_t i = 0; i < srv->n_batch; i++) {
        item_t *it = &srv->batch[i];
        lost += it->status == ITEM_FAILED && !it->peer.ident_len;
        if (!rc && it->status == ITEM_REFUSED && it->env) {
            /* Refused by an engine: counted and logged once, now that the refusal is final. */
            srv->stats.refused[it->why.code]++;
            funnel_log_warn(srv->log, "refused %s event_id=%s: %s", it->topic, it->event_id,
                            it->why.text);
        }
        srv->stats.accepted += it->status == ITEM_OK;
        srv->stats.duplicates += it->status == ITEM_DUPLICATE;
        if (it->status != ITEM_FAILED)
            funnel_metrics_event(srv->metrics, it->topic,
                                 it->status == ITEM_OK          ? FUNNEL_METRICS_ACCEPTED
                                 : it->status == ITEM_DUPLICATE ? FUNNEL_METRICS_DUPLICATE
                                                                : FUNNEL_METRICS_REFUSED,
                                 it->why.code);
        item_reply(srv, it);
        item_clear(it);
    }
    /* Only SUB input is lost for good: a submitter that got no ack sends again. */
    funnel_metrics_lost(srv->metrics, rc ? FUNNEL_METRICS_LOST_COMMIT : FUNNEL_METRICS_LOST_EVENT,
                        lost);
    srv->n_batch = 0;
    timers_arm(srv); /* the batch may have added or settled engine deadlines */
    /* The acks are on their way: copying the WAL back now delays no one waiting for them. */
    if (funnel_store_checkpoint(st))
        funnel_log_warn(srv->log, "checkpoint failed: %s", funnel_store_errmsg(st));
    /* Last: reading again may fill and flush a new batch from inside this call. */
    ingest_hold(srv, false);
}

static void on_flush_timer(uv_timer_t *h)
{
    batch_flush(h->data);
}

/* Doubles the batch array. Items hold a zmq_msg_t, which libzmq allows to be relocated only
 * with zmq_msg_move, so they are moved one by one instead of realloc'ed. Happens only while the
 * array grows towards batch_max. */
static int batch_grow(funnel_server_t *srv)
{
    size_t cap = srv->cap_batch ? srv->cap_batch * 2 : 64;
    item_t *b = malloc(cap * sizeof *b);
    if (!b)
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < srv->n_batch; i++) {
        b[i] = srv->batch[i];
        zmq_msg_init(&b[i].body);
        zmq_msg_move(&b[i].body, &srv->batch[i].body);
    }
    free(srv->batch); /* the moved-from messages are empty: nothing to close */
    srv->batch = b;
    srv->cap_batch = cap;
    return 0;
}

static item_t *batch_slot(funnel_server_t *srv)
{
    if (srv->n_batch == srv->cap_batch && batch_grow(srv))
        return NULL;
    item_t *it = &srv->batch[srv->n_batch];
    memset(it, 0, sizeof *it);
    zmq_msg_init(&it->body);
    return it;
}

/* The event_id of bytes that decode but failed validation, for the reply and the log. */
static void event_id_of(const uint8_t *data, size_t len, char *out, size_t out_len)
{
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, len, data);
    if (env) {
        snprintf(out, out_len, "%s", env->event_id);
        funnel_envelope_free(&env);
    }
}

static void copy_printable(char *dst, size_t dst_len, const void *src, size_t len)
{
    size_t n = len < dst_len - 1 ? len : dst_len - 1;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    dst[n] = '\0';
}

/* Decodes one ingest message into the batch and schedules the commit. */
static void batch_add(funnel_server_t *srv, const zmq_msg_t *topic, zmq_msg_t *body,
                      const peer_t *peer, const funnel_refusal_t *framing)
{
    item_t *it = batch_slot(srv);
    if (!it) {
        funnel_log_error(srv->log, "out of memory: ingest message dropped");
        if (!peer) /* a submitter gets no ack and sends again; a publisher does not */
            funnel_metrics_lost(srv->metrics, FUNNEL_METRICS_LOST_NOMEM, 1);
        return;
    }
    if (peer)
        it->peer = *peer;
    funnel_codec_limits_t lim = limits_of(srv);
    const uint8_t *data = body ? zmq_msg_data(body) : NULL;
    size_t len = body ? zmq_msg_size(body) : 0;
    if (topic)
        copy_printable(it->topic, sizeof it->topic, zmq_msg_data((zmq_msg_t *)topic),
                       zmq_msg_size((zmq_msg_t *)topic));
    it->raw_size = len;
    if (framing) {
        it->why = *framing;
    } else {
        funnel_codec_decode_in(&it->mem, &lim, zmq_msg_data((zmq_msg_t *)topic),
                               zmq_msg_size((zmq_msg_t *)topic), data, len, now_ms(srv), &it->env,
                               &it->why);
        if (it->env) /* validated: at most FUNNEL_ID_MAX bytes */
            memcpy(it->event_id, it->env->event_id, strlen(it->env->event_id) + 1);
        else if (it->why.code > FUNNEL_REFUSE_DECODE)
            event_id_of(data, len, it->event_id, sizeof it->event_id);
    }
    /* Keep the bytes for the event row or the dead letter, except absurdly large ones. The frame
     * itself is taken over (bus.h allows it): no copy, and it lives until the batch is done. */
    if (len && len <= lim.max_message_bytes)
        zmq_msg_move(&it->body, body);
    if (!it->env) {
        it->status = ITEM_REFUSED;
        srv->stats.refused[it->why.code]++;
        funnel_log_warn(srv->log, "refused %s event_id=%s: %s", it->topic[0] ? it->topic : "-",
                        it->event_id[0] ? it->event_id : "-", it->why.text);
    }
    srv->n_batch++;
    /* A timer, not a check handle: a pending timer keeps the loop from blocking in poll, so a
     * zero delay commits right after the current drain pass, whatever woke the loop. */
    if ((int64_t)srv->n_batch >= srv->cfg.batch_max) {
        /* A batch kept for a busy database has its retry timer: stop reading until it lands. */
        if (srv->busy_retry_ms)
            ingest_hold(srv, true);
        else
            batch_flush(srv);
    } else if (!uv_is_active((uv_handle_t *)&srv->flush_timer))
        uv_timer_start(&srv->flush_timer, on_flush_timer, (uint64_t)srv->cfg.batch_delay_ms, 0);
}

static funnel_refusal_t framing_refusal(size_t n_frames, size_t expected)
{
    funnel_refusal_t why = {.code = FUNNEL_REFUSE_FRAMES};
    snprintf(why.text, sizeof why.text, "expected %zu frames [topic][Envelope], got %zu", expected,
             n_frames);
    return why;
}

static void on_ingest(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    (void)zs;
    funnel_server_t *srv = arg;
    if (n == 2 && !overflow) {
        batch_add(srv, &frames[0], &frames[1], NULL, NULL);
    } else {
        funnel_refusal_t why = framing_refusal(overflow ? n + 1 : n, 2);
        batch_add(srv, &frames[0], NULL, NULL, &why);
    }
}

/* Splits [ident][""?][args...] into the peer and its arguments. */
static size_t peer_parse(zmq_msg_t *frames, size_t n, peer_t *peer)
{
    size_t id_len = zmq_msg_size(&frames[0]);
    peer->ident_len = id_len < IDENT_MAX ? id_len : IDENT_MAX - 1;
    memcpy(peer->ident, zmq_msg_data(&frames[0]), peer->ident_len);
    peer->delimiter = n > 1 && zmq_msg_size(&frames[1]) == 0;
    return peer->delimiter ? 2 : 1;
}

static void on_submit(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    (void)zs;
    funnel_server_t *srv = arg;
    peer_t peer;
    size_t first = peer_parse(frames, n, &peer);
    size_t args = n - first;
    if (args == 2 && !overflow) {
        batch_add(srv, &frames[first], &frames[first + 1], &peer, NULL);
    } else {
        funnel_refusal_t why = framing_refusal(overflow ? args + 1 : args, 2);
        batch_add(srv, args ? &frames[first] : NULL, NULL, &peer, &why);
    }
}

/* ---- replay -------------------------------------------------------------------------- */

/* What one replay step achieved. */
typedef enum replay_step {
    REPLAY_MORE,    /* sent a chunk; more to come next pass */
    REPLAY_BLOCKED, /* the peer is full: park until the retry timer */
    REPLAY_DONE,    /* finished, or the peer went away: drop it */
} replay_step_t;

typedef struct replay_pass {
    funnel_server_t *srv;
    replay_t *rp;
    size_t sent;
} replay_pass_t;

static int replay_send_row(const funnel_outbox_row_t *row, void *arg)
{
    replay_pass_t *pass = arg;
    funnel_server_t *srv = pass->srv;
    replay_t *rp = pass->rp;
    uint8_t seq[8];
    funnel_seq_encode(row->seq, seq);
    const void *parts[] = {row->topic, seq, row->envelope};
    size_t lens[] = {strlen(row->topic), 8, row->len};
    int rc = peer_send(srv->replay_sock, &rp->peer, parts, lens, 3);
    if (rc)
        return rc;
    rp->next_seq = row->seq + 1;
    rp->last_sent = row->seq;
    pass->sent++;
    return 0;
}

/* Sends [what][seq]. Returns 0, FUNNEL_EAGAIN (peer full: try again later) or FUNNEL_EBUS. */
static int replay_send_marker(funnel_server_t *srv, const replay_t *rp, const char *what,
                              uint64_t seq)
{
    uint8_t buf[8];
    funnel_seq_encode(seq, buf);
    const void *parts[] = {what, buf};
    size_t lens[] = {strlen(what), 8};
    return peer_send(srv->replay_sock, &rp->peer, parts, lens, 2);
}

/* Answers a request with [error][reason]; a full peer misses it, as it would any reply. */
static int replay_send_error(funnel_server_t *srv, const peer_t *peer, const char *reason)
{
    const void *parts[] = {"error", reason};
    size_t lens[] = {5, strlen(reason)};
    return peer_send(srv->replay_sock, peer, parts, lens, 2);
}

/* Maps a send result onto the step outcome; 0 means carry on. */
static replay_step_t replay_sent(int rc, bool *progress)
{
    if (rc == FUNNEL_EAGAIN)
        return REPLAY_BLOCKED;
    if (rc)
        return REPLAY_DONE; /* the peer went away (ROUTER_MANDATORY: EHOSTUNREACH) */
    *progress = true;
    return REPLAY_MORE;
}

/* Advances one replay by at most a chunk of rows; *progress tells whether anything was sent. */
static replay_step_t replay_step(funnel_server_t *srv, replay_t *rp, bool *progress)
{
    replay_step_t st;
    if (rp->truncated) {
        if ((st = replay_sent(replay_send_marker(srv, rp, "truncated", rp->truncated), progress)) !=
            REPLAY_MORE)
            return st;
        rp->truncated = 0;
    }
    if (!rp->rows_done && !rp->error) {
        replay_pass_t pass = {srv, rp, 0};
        int rc = funnel_store_outbox_read(srv->store, rp->next_seq, REPLAY_CHUNK, replay_send_row,
                                          &pass);
        *progress |= pass.sent > 0;
        if (rc == FUNNEL_EAGAIN || rc == FUNNEL_EBUS)
            return replay_sent(rc, progress);
        if (rc) {
            funnel_log_error(srv->log, "replay read failed: %s", funnel_store_errmsg(srv->store));
            rp->error = "replay read failed: see funneld's log";
        } else if (pass.sent < REPLAY_CHUNK) {
            rp->rows_done = true;
        } else {
            return REPLAY_MORE;
        }
    }
    /* After a failed read, [end] would claim rows the client never got: it must not skip them. */
    int rc = rp->error ? replay_send_error(srv, &rp->peer, rp->error)
                       : replay_send_marker(srv, rp, "end",
                                            rp->last_sent ? rp->last_sent : srv->published_seq);
    st = replay_sent(rc, progress);
    return st == REPLAY_MORE ? REPLAY_DONE : st;
}

static void replay_remove(funnel_server_t *srv, size_t i)
{
    memmove(&srv->replays[i], &srv->replays[i + 1],
            (srv->n_replays - i - 1) * sizeof srv->replays[0]);
    srv->n_replays--;
}

static void on_replay_timer(uv_timer_t *h);

/* One step of every unparked replay, so a slow peer cannot hold up the others. With none left
 * runnable the idle handle stops (or the loop would spin) and parked ones wait for the timer. */
static void on_replay_idle(uv_idle_t *h)
{
    funnel_server_t *srv = h->data;
    bool runnable = false;
    for (size_t i = 0; i < srv->n_replays;) {
        replay_t *rp = &srv->replays[i];
        if (rp->parked) {
            i++;
            continue;
        }
        bool progress = false;
        replay_step_t st = replay_step(srv, rp, &progress);
        if (progress)
            rp->stalled_at = 0;
        if (st == REPLAY_DONE) {
            replay_remove(srv, i);
            continue;
        }
        if (st == REPLAY_BLOCKED) {
            rp->parked = true;
            if (!rp->stalled_at)
                rp->stalled_at = uv_now(&srv->loop);
        } else {
            runnable = true;
        }
        i++;
    }
    if (!runnable)
        uv_idle_stop(h);
    if (srv->n_replays && !runnable && !uv_is_active((uv_handle_t *)&srv->replay_timer))
        uv_timer_start(&srv->replay_timer, on_replay_timer, REPLAY_RETRY_MS, 0);
}

/* Unparks replays to try their peers again; drops those that took nothing for too long, so an
 * abandoned or hostile client cannot hold a slot forever. */
static void on_replay_timer(uv_timer_t *h)
{
    funnel_server_t *srv = h->data;
    uint64_t now = uv_now(&srv->loop);
    for (size_t i = 0; i < srv->n_replays;) {
        replay_t *rp = &srv->replays[i];
        if (rp->parked && rp->stalled_at && now - rp->stalled_at >= REPLAY_STALL_MS) {
            funnel_log_warn(srv->log,
                            "replay dropped: the client took nothing for %d s (at seq %llu)",
                            REPLAY_STALL_MS / 1000, (unsigned long long)rp->next_seq);
            replay_remove(srv, i);
            continue;
        }
        rp->parked = false;
        i++;
    }
    if (srv->n_replays)
        uv_idle_start(&srv->replay_idle, on_replay_idle);
}

static bool same_peer(const peer_t *a, const peer_t *b)
{
    return a->ident_len == b->ident_len && memcmp(a->ident, b->ident, a->ident_len) == 0;
}

static void on_replay(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    (void)zs;
    funnel_server_t *srv = arg;
    replay_t req = {0};
    size_t first = peer_parse(frames, n, &req.peer);
    /* A message with more frames than the bus keeps (overflow) has a wrong count as well. */
    size_t nargs = overflow ? SIZE_MAX : n - first;
    funnel_frame_t args[2] = {{NULL, 0}, {NULL, 0}};
    for (size_t i = 0; i < n - first && i < 2; i++)
        args[i] =
            (funnel_frame_t){zmq_msg_data(&frames[first + i]), zmq_msg_size(&frames[first + i])};
    const char *why;
    if (funnel_replay_request_parse(args, nargs, &req.next_seq, &why)) {
        replay_send_error(srv, &req.peer, why);
        return;
    }
    /* One replay per connection: a new request supersedes the old (the client gave up on it),
     * so repeated requests cannot pile up. */
    for (size_t i = 0; i < srv->n_replays; i++)
        if (same_peer(&srv->replays[i].peer, &req.peer)) {
            replay_remove(srv, i);
            break;
        }
    if (srv->n_replays == REPLAY_MAX) {
        replay_send_error(srv, &req.peer, "busy: too many replays in progress, retry later");
        return;
    }
    uint64_t first_seq = 0, last_seq = 0;
    funnel_store_outbox_bounds(srv->store, &first_seq, &last_seq);
    /* Rows pruned by retention are gone: say so rather than let the client guess. With
     * everything pruned, history starts after the last sequence ever handed out. */
    uint64_t oldest = first_seq ? first_seq : last_seq + 1;
    if (oldest > 1 && req.next_seq < oldest)
        req.truncated = oldest;
    srv->stats.replays++;
    srv->replays[srv->n_replays++] = req;
    uv_idle_start(&srv->replay_idle, on_replay_idle);
}

/* ---- engine timers ------------------------------------------------------------------ */

#define TIMER_RETRY_MS 1000 /* after a failed timer transaction */

static void on_engine_timer(uv_timer_t *h);

/* Publishes the engines' open-item counts to the metrics endpoint. */
static void metrics_engines(funnel_server_t *srv)
{
    const char *name;
    int64_t open;
    for (size_t i = 0; srv->metrics && i < FUNNEL_ROUTER_MAX_ENGINES; i++)
        if (funnel_router_open_items(srv->router, i, &name, &open) == 0)
            funnel_metrics_engine_open(srv->metrics, i, name, open);
}

/* Arms one uv timer for the earliest engine deadline. Deadlines are event times on the
 * injected clock, so the delay is computed against it; one already due fires on the next pass. */
static void timers_arm(funnel_server_t *srv)
{
    metrics_engines(srv); /* runs after every batch and timer pass, when counts change */
    int64_t next = funnel_router_next_deadline(srv->router);
    if (next == INT64_MAX || srv->stopping) {
        uv_timer_stop(&srv->engine_timer);
        return;
    }
    int64_t delay = next - now_ms(srv);
    uv_timer_start(&srv->engine_timer, on_engine_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* Runs what the engines have due in one transaction, then publishes it. */
static void on_engine_timer(uv_timer_t *h)
{
    funnel_server_t *srv = h->data;
    int64_t now = now_ms(srv);
    int64_t due = funnel_router_next_deadline(srv->router);
    funnel_store_t *st = srv->store;
    if (due != INT64_MAX)
        funnel_metrics_timer_lag(srv->metrics, (uint64_t)(now > due ? now - due : 0));
    int rc = funnel_store_begin(st);
    if (!rc) {
        rc = funnel_router_fire_timers(srv->router, now);
        rc = rc ? rc : funnel_store_published_set(st, srv->published_seq);
        rc = rc ? rc : funnel_store_commit(st);
        if (rc) {
            funnel_store_rollback(st);
            funnel_router_rolled_back(srv->router);
        }
    }
    if (rc) {
        funnel_log_error(srv->log, "engine timers failed: %s: %s; retrying in %d ms",
                         funnel_strerror(rc), funnel_store_errmsg(st), TIMER_RETRY_MS);
        uv_timer_start(h, on_engine_timer, TIMER_RETRY_MS, 0);
        return;
    }
    publish_pending(srv);
    timers_arm(srv);
}

/* ---- housekeeping -------------------------------------------------------------------- */

static void on_watchdog(uv_timer_t *h)
{
    (void)h;
    sd_notify(0, "WATCHDOG=1");
}

/* Deletes published outbox rows older than the retention, a chunk at a time. */
/* The outbox's oldest retained sequence, for the backlog gauge; read at start and after a
 * prune, the only times it changes. */
static void metrics_outbox_refresh(funnel_server_t *srv)
{
    uint64_t first = 0, last = 0;
    if (srv->metrics && funnel_store_outbox_bounds(srv->store, &first, &last) == 0)
        funnel_metrics_outbox_first(srv->metrics, first);
}

static void on_prune(uv_timer_t *h)
{
    funnel_server_t *srv = h->data;
    int64_t before = now_ms(srv) - srv->cfg.retention_days * 86400000LL;
    size_t deleted = 0, dead = 0;
    if (funnel_store_begin(srv->store) == 0) {
        int rc = funnel_store_outbox_prune(srv->store, before, srv->published_seq, PRUNE_CHUNK,
                                           &deleted);
        if (!rc) /* same retention: refusals are diagnostics, not an archive */
            rc = funnel_store_dead_letters_prune(srv->store, before, PRUNE_CHUNK, &dead);
        if (rc || funnel_store_commit(srv->store)) {
            funnel_store_rollback(srv->store);
            funnel_log_error(srv->log, "retention prune failed: %s",
                             funnel_store_errmsg(srv->store));
            deleted = dead = 0;
        }
    }
    if (deleted || dead)
        funnel_log_info(srv->log, "retention: pruned %zu output messages, %zu dead letters",
                        deleted, dead);
    metrics_outbox_refresh(srv);
    /* A full chunk means more is due: continue soon, in small transactions. */
    bool more = deleted == PRUNE_CHUNK || dead == PRUNE_CHUNK;
    uv_timer_start(h, on_prune, more ? 1000 : PRUNE_PERIOD_MS, 0);
}

/* Publishes what a previous run committed but may not have published before it died. */
static int publish_backlog_row(const funnel_outbox_row_t *row, void *arg)
{
    publish_row(arg, row);
    return 0;
}

static void publish_backlog(funnel_server_t *srv)
{
    uint64_t from = srv->published_seq + 1, before;
    do {
        before = srv->stats.published;
        if (funnel_store_outbox_read(srv->store, from, REPLAY_CHUNK, publish_backlog_row, srv))
            break;
        from = srv->published_seq + 1;
    } while (srv->stats.published - before == REPLAY_CHUNK);
    if (srv->stats.published)
        funnel_log_info(srv->log,
                        "republished %llu committed output messages from before the "
                        "restart",
                        (unsigned long long)srv->stats.published);
}

/* ---- signals, reload, stop ----------------------------------------------------------- */

static int config_read(funnel_server_t *srv, funnel_config_t *out, char *err, size_t err_len)
{
    int rc = funnel_config_defaults(out);
    if (!rc && srv->opts.config_path)
        rc = funnel_config_load(srv->opts.config_path, out, err, err_len);
    for (size_t i = 0; !rc && i < srv->opts.n_overrides; i++) {
        char name[64];
        const char *kv = srv->opts.overrides[i], *eq = strchr(kv, '=');
        if (!eq || (size_t)(eq - kv) >= sizeof name) {
            snprintf(err, err_len, "override '%s' is not name=value", kv);
            rc = FUNNEL_ECONFIG;
            break;
        }
        snprintf(name, sizeof name, "%.*s", (int)(eq - kv), kv);
        rc = funnel_config_set(out, name, eq + 1, err, err_len);
    }
    if (rc)
        funnel_config_clear(out);
    return rc;
}

/* Above max_message_bytes a message is still read, refused with a reason and dead-lettered;
 * past this hard limit ZeroMQ drops the connection before buffering it at all. It applies to
 * connections made after it is set. */
static void set_hard_limit(funnel_server_t *srv, funnel_zsock_t *zs)
{
    int64_t soft = srv->cfg.max_message_bytes;
    int64_t hard = 2 * soft > soft + 4096 ? 2 * soft : soft + 4096;
    if (zs)
        zmq_setsockopt(funnel_zsock_raw(zs), ZMQ_MAXMSGSIZE, &hard, sizeof hard);
}

static void reload(funnel_server_t *srv)
{
    funnel_config_t fresh;
    char err[512] = "";
    sd_notify(0, "RELOADING=1");
    if (config_read(srv, &fresh, err, sizeof err)) {
        funnel_log_error(srv->log, "config reload refused, keeping the running config: %s", err);
    } else {
        int changed = funnel_config_reload(&srv->cfg, &fresh, srv->log);
        srv->log->level = srv->cfg.log_level;
        set_hard_limit(srv, srv->sub); /* max_message_bytes may have changed */
        set_hard_limit(srv, srv->submit);
        funnel_log_info(srv->log, "config reloaded: %d option(s) changed", changed);
        funnel_config_clear(&fresh);
    }
    sd_notify(0, "READY=1");
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Graceful stop: take no more input, commit and publish what was read, persist the publish
 * cursor, then close every handle so uv_run returns. */
static void server_shutdown(funnel_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    sd_notify(0, "STOPPING=1");
    funnel_log_info(srv->log, "stopping: committing %zu pending events", srv->n_batch);
    funnel_zsock_pause(srv->sub);
    funnel_zsock_pause(srv->submit);
    batch_flush(srv);
    if (funnel_store_begin(srv->store) == 0 &&
        (funnel_store_published_set(srv->store, srv->published_seq) ||
         funnel_store_commit(srv->store)))
        funnel_store_rollback(srv->store);
    srv->n_replays = 0; /* plain values: nothing to free */
    /* Give queued output a moment to leave before the sockets close. */
    int linger = 1000;
    zmq_setsockopt(funnel_zsock_raw(srv->pub), ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(funnel_zsock_raw(srv->submit), ZMQ_LINGER, &linger, sizeof linger);
    funnel_zsock_destroy(&srv->sub);
    funnel_zsock_destroy(&srv->submit);
    funnel_zsock_destroy(&srv->pub);
    funnel_zsock_destroy(&srv->replay_sock);
    uv_walk(&srv->loop, close_handle, NULL);
    funnel_log_info(
        srv->log, "stopped: %llu accepted, %llu duplicates, %llu published, %llu batches",
        (unsigned long long)srv->stats.accepted, (unsigned long long)srv->stats.duplicates,
        (unsigned long long)srv->stats.published, (unsigned long long)srv->stats.batches);
}

static void on_signal(uv_signal_t *h, int signum)
{
    funnel_server_t *srv = h->data;
    if (signum == SIGHUP)
        reload(srv);
    else
        server_shutdown(srv);
}

void funnel_server_stop(funnel_server_t *srv)
{
    server_shutdown(srv);
}

/* ---- set-up -------------------------------------------------------------------------- */

/* The engines funneld runs, in the order each event reaches them. */
typedef struct engine_def {
    const char *name;
    /* Creates the engine: runs its schema migrations on store and keeps cfg, the live config
     * (reloads change it in place), and log. Fills *engine. 0, or an error it has logged. */
    int (*create)(funnel_store_t *store, const funnel_config_t *cfg, const funnel_log_t *log,
                  funnel_engine_t *engine);
    void (*destroy)(void *self);
} engine_def_t;

static const engine_def_t engine_defs[] = {
    {"ledger", funnel_ledger_engine_create, funnel_ledger_engine_destroy},
    {"attribution", funnel_attribution_engine_create, funnel_attribution_engine_destroy},
    {"sla", funnel_sla_engine_create, funnel_sla_engine_destroy},
    {NULL, NULL, NULL}, /* sentinel */
};

/* True when name is an element of the comma-separated list. */
static bool list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len;
        if (!*p)
            return false;
    }
}

static const engine_def_t *engine_def_find(const char *name, size_t len)
{
    for (const engine_def_t *def = engine_defs; def->name; def++)
        if (strlen(def->name) == len && strncmp(def->name, name, len) == 0)
            return def;
    return NULL;
}

/* Every name in the `engines` option must be a known engine: a typo must not silently turn
 * the commission ledger off. */
int funnel_server_config_check(const funnel_config_t *cfg, char *err, size_t err_len)
{
    const char *list = cfg->engines;
    if (strcmp(list, "none") == 0)
        return 0;
    for (const char *p = list;; p += strcspn(p, ",") + 1) {
        size_t len = strcspn(p, ",");
        if (!engine_def_find(p, len)) {
            snprintf(err, err_len,
                     "engines: unknown engine '%.*s' (known: ledger, attribution, sla; or none)",
                     (int)len, p);
            return FUNNEL_ECONFIG;
        }
        if (!p[len])
            return 0;
    }
}

static int engines_start(funnel_server_t *srv)
{
    char err[256];
    int rc = funnel_server_config_check(&srv->cfg, err, sizeof err);
    if (rc) {
        funnel_log_error(srv->log, "%s", err);
        return rc;
    }
    for (const engine_def_t *def = engine_defs; def->name; def++) {
        if (!list_has(srv->cfg.engines, def->name))
            continue;
        funnel_engine_t engine;
        int rc = def->create(srv->store, &srv->cfg, srv->log, &engine);
        if (rc) {
            funnel_log_error(srv->log, "engine %s failed to start: %s", def->name,
                             funnel_strerror(rc));
            return rc;
        }
        srv->engine_defs[srv->n_engines] = def;
        srv->engines[srv->n_engines++] = engine.self;
        if ((rc = funnel_router_add_engine(srv->router, &engine)))
            return rc;
        funnel_log_info(srv->log, "engine %s started", def->name);
    }
    return 0;
}

static void engines_stop(funnel_server_t *srv)
{
    while (srv->n_engines > 0) {
        srv->n_engines--;
        srv->engine_defs[srv->n_engines]->destroy(srv->engines[srv->n_engines]);
    }
}

static int open_socket(funnel_server_t *srv, int type, const char *endpoint, int slot,
                       funnel_zsock_t **out)
{
    int rc = funnel_zsock_new(&srv->loop, srv->zctx, type, out);
    if (rc)
        return rc;
    void *raw = funnel_zsock_raw(*out);
    int hwm = (int)srv->cfg.publish_hwm, on = 1;
    if (type == ZMQ_SUB || type == ZMQ_ROUTER)
        set_hard_limit(srv, *out);
    if (type == ZMQ_SUB)
        zmq_setsockopt(raw, ZMQ_SUBSCRIBE, "", 0);
    /* The stream queues publish_hwm messages per subscriber; acks and replies get a fixed,
     * generous queue so a client pipelining thousands of submits loses no ack. */
    if (type == ZMQ_ROUTER)
        hwm = slot == 3 ? REPLAY_HWM : REPLY_HWM;
    if (type == ZMQ_PUB || type == ZMQ_ROUTER)
        zmq_setsockopt(raw, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (slot == 3) /* replay: learn about full or vanished peers instead of dropping */
        zmq_setsockopt(raw, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    if ((rc = funnel_zsock_bind(*out, endpoint, srv->bound[slot], sizeof srv->bound[slot]))) {
        funnel_log_error(srv->log, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return rc;
    }
    funnel_log_info(srv->log, "listening on %s", srv->bound[slot]);
    return 0;
}

static int write_ready_file(funnel_server_t *srv)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", srv->opts.ready_file);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        funnel_log_error(srv->log, "cannot write %s: %s", tmp, strerror(errno));
        return FUNNEL_EIO;
    }
    fprintf(f, "ingest=%s\nsubmit=%s\npublish=%s\nreplay=%s\npid=%ld\n", srv->bound[0],
            srv->bound[1], srv->bound[2], srv->bound[3], (long)getpid());
    if (srv->metrics)
        fprintf(f, "metrics=%d\n", funnel_metrics_port(srv->metrics));
    if (fclose(f) || rename(tmp, srv->opts.ready_file)) {
        funnel_log_error(srv->log, "cannot write %s: %s", srv->opts.ready_file, strerror(errno));
        return FUNNEL_EIO;
    }
    return 0;
}

static int open_sockets(funnel_server_t *srv)
{
    int rc;
    if ((rc = open_socket(srv, ZMQ_SUB, srv->cfg.ingest, 0, &srv->sub)) ||
        (rc = open_socket(srv, ZMQ_ROUTER, srv->cfg.submit, 1, &srv->submit)) ||
        (rc = open_socket(srv, ZMQ_PUB, srv->cfg.publish, 2, &srv->pub)) ||
        (rc = open_socket(srv, ZMQ_ROUTER, srv->cfg.replay, 3, &srv->replay_sock)))
        return rc;
    for (size_t i = 0; i < srv->cfg.n_connect; i++) {
        if ((rc = funnel_zsock_connect(srv->sub, srv->cfg.connect[i]))) {
            funnel_log_error(srv->log, "cannot connect to %s: %s", srv->cfg.connect[i],
                             zmq_strerror(zmq_errno()));
            return rc;
        }
        funnel_log_info(srv->log, "subscribed to publisher %s", srv->cfg.connect[i]);
    }
    return 0;
}

static void init_handles(funnel_server_t *srv)
{
    uv_timer_init(&srv->loop, &srv->flush_timer);
    uv_timer_init(&srv->loop, &srv->watchdog);
    uv_timer_init(&srv->loop, &srv->prune_timer);
    uv_timer_init(&srv->loop, &srv->engine_timer);
    uv_idle_init(&srv->loop, &srv->replay_idle);
    uv_timer_init(&srv->loop, &srv->replay_timer);
    uv_signal_init(&srv->loop, &srv->sig_term);
    uv_signal_init(&srv->loop, &srv->sig_int);
    uv_signal_init(&srv->loop, &srv->sig_hup);
    srv->flush_timer.data = srv->watchdog.data = srv;
    srv->prune_timer.data = srv->replay_idle.data = srv->engine_timer.data = srv;
    srv->replay_timer.data = srv;
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
}

int funnel_server_new(funnel_config_t *cfg, const funnel_server_options_t *opts, funnel_log_t *log,
                      funnel_server_t **out)
{
    char err[512];
    int rc = FUNNEL_ENOMEM;
    *out = NULL;
    funnel_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return rc;
    srv->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    srv->opts = *opts;
    if (!srv->opts.clock)
        srv->opts.clock = real_clock;
    srv->log = log;
    log->level = srv->cfg.log_level;
    if (uv_loop_init(&srv->loop)) {
        rc = FUNNEL_EBUS;
        goto fail_loop;
    }
    init_handles(srv);
    if ((rc = funnel_store_open(srv->cfg.database, false, srv->cfg.sync, &srv->store, err,
                                sizeof err))) {
        funnel_log_error(log, "%s", err);
        goto fail;
    }
    if ((rc = funnel_router_new(srv->store, &srv->router)) ||
        (rc = funnel_store_published_get(srv->store, &srv->published_seq)) ||
        (rc = engines_start(srv)))
        goto fail;
    if (!(srv->zctx = zmq_ctx_new())) {
        rc = FUNNEL_EBUS;
        goto fail;
    }
    if ((rc = open_sockets(srv)))
        goto fail;
    if (strcmp(srv->cfg.metrics, "off") &&
        (rc = funnel_metrics_new(srv->cfg.metrics, log, &srv->metrics)))
        goto fail;
    metrics_outbox_refresh(srv);
    if (srv->opts.ready_file && (rc = write_ready_file(srv)))
        goto fail;
    *out = srv;
    return 0;

fail:
    funnel_server_destroy(&srv);
    return rc;
fail_loop:
    funnel_config_clear(&srv->cfg);
    free(srv);
    return rc;
}

int funnel_server_run(funnel_server_t *srv)
{
    uint64_t wd_usec = 0;
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_start(&srv->sig_hup, on_signal, SIGHUP);
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000)
        uv_timer_start(&srv->watchdog, on_watchdog, 0, wd_usec / 2000);
    uv_timer_start(&srv->prune_timer, on_prune, 0, 0);
    timers_arm(srv); /* deadlines that passed while funneld was down fire at once */
    publish_backlog(srv);
    if (funnel_zsock_start(srv->sub, on_ingest, srv, DRAIN_BUDGET) ||
        funnel_zsock_start(srv->submit, on_submit, srv, DRAIN_BUDGET) ||
        funnel_zsock_start(srv->pub, NULL, srv, DRAIN_BUDGET) ||
        funnel_zsock_start(srv->replay_sock, on_replay, srv, DRAIN_BUDGET)) {
        funnel_log_error(srv->log, "cannot watch sockets");
        server_shutdown(srv);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        return FUNNEL_EBUS;
    }
    sd_notify(0, "READY=1");
    funnel_log_info(srv->log, "funneld %s ready (database %s, last published sequence %llu)",
                    FUNNEL_VERSION, srv->cfg.database, (unsigned long long)srv->published_seq);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    return 0;
}

const funnel_server_stats_t *funnel_server_stats(const funnel_server_t *srv)
{
    return &srv->stats;
}

void funnel_server_destroy(funnel_server_t **srvp)
{
    if (!srvp || !*srvp)
        return;
    funnel_server_t *srv = *srvp;
    funnel_zsock_destroy(&srv->sub);
    funnel_zsock_destroy(&srv->submit);
    funnel_zsock_destroy(&srv->pub);
    funnel_zsock_destroy(&srv->replay_sock);
    funnel_metrics_destroy(&srv->metrics); /* its thread reads only its own atomics */
    uv_walk(&srv->loop, close_handle, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT); /* runs the close callbacks */
    uv_loop_close(&srv->loop);
    if (srv->zctx)
        zmq_ctx_term(srv->zctx);
    for (size_t i = 0; i < srv->n_batch; i++)
        item_clear(&srv->batch[i]);
    free(srv->batch);
    srv->n_replays = 0; /* plain values: nothing to free */
    funnel_router_destroy(&srv->router);
    engines_stop(srv);
    funnel_store_destroy(&srv->store);
    funnel_config_clear(&srv->cfg);
    free(srv);
    *srvp = NULL;
}
