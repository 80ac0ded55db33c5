/* server_internal.h — what the files of funneld's server share; private to daemon/server*.c.
 *
 * One server object (struct funnel_server), one loop, one thread, split by job: server.c
 * (new/destroy/run, signals, reload, stop, readiness, engine set-up), server_ingest.c (reading
 * the ingest and submit sockets, batches, commit, answers, retry), server_replay.c (catch-up
 * from a sequence), server_timers.c (engine deadlines), server_housekeeping.c (retention
 * prune, watchdog, backlog publish, metrics gauges). The contract of each function is written
 * above its definition. */
#ifndef FUNNEL_SERVER_INTERNAL_H
#define FUNNEL_SERVER_INTERNAL_H

#include "server.h"
#include "bus.h"
#include "metrics.h"
#include "router.h"
#include "store.h"
#include "engine.h"
#include "ratelimit.h"
#include "clients.h"
#include "funnel/keyfile.h"

#include <stdbool.h>
#include <stdint.h>

#define IDENT_MAX       256           /* ZeroMQ routing ids are at most 255 bytes */
#define DRAIN_BUDGET    1000          /* messages per socket per loop pass */
#define REPLAY_CHUNK    256           /* outbox rows read per replay pass */
#define PRUNE_CHUNK     500           /* rows of each table per prune transaction */
#define PRUNE_BUDGET_NS (5 * 1000000) /* prune transactions start within this much loop time */
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
#define REFUSAL_LOG_WINDOW_MS 60000 /* refusal_log_per_minute counts per this window */
#define PEER_BUDGET_SLOTS                                                                          \
    256 /* submit peers tracked for refusal_budget_per_peer: a hash table whose slot goes to       \
           the newest peer on a collision, so memory stays fixed whatever the peers do */
#define BUSY_RETRY_MIN_MS 100  /* first retry of a batch the database was too busy for */
#define BUSY_RETRY_MAX_MS 1000 /* the doubling retry delay stops growing here */
#define CKPT_POLL_MS      1    /* a batch held for the checkpointer's pass looks again this often */

typedef enum item_status {
    ITEM_OK,
    ITEM_DUPLICATE,
    ITEM_REFUSED,
    ITEM_FAILED,
    ITEM_UNAVAILABLE /* not attempted: the disk is full; the submitter retries later */
} item_status_t;

/* Where a reply goes: a ROUTER peer, with or without a REQ-style empty delimiter. */
typedef struct peer {
    uint8_t ident[IDENT_MAX];
    size_t ident_len; /* 0: no reply (SUB input) */
    bool delimiter;   /* the peer is a REQ socket: replies carry an empty frame */
} peer_t;

/* A submit peer's refusals in the current minute (refusal_budget_per_peer). */
typedef struct peer_budget {
    peer_t peer;
    funnel_ratelimit_t refusals;
} peer_budget_t;

/* One ingest message waiting for the batch to commit. */
typedef struct item {
    funnel_envelope_t *env;      /* NULL when refused; lives in mem */
    funnel_envelope_arena_t mem; /* env's memory: one allocation, not one per field */
    char topic[FUNNEL_TOPIC_MAX + 1];
    char event_id[FUNNEL_ID_MAX + 1]; /* for replies and logs; may be empty if undecodable */
    /* A refused event_id longer than event_id holds, whole and as received: senders match a
     * reply by exact id, so a cut one would never be recognised. NULL otherwise; owned. */
    char *long_id;
    zmq_msg_t body;  /* the envelope frame, taken over from ZeroMQ rather than copied; empty for
                        an oversize refusal. Relocated only with zmq_msg_move (batch_grow). */
    size_t raw_size; /* bytes received */
    funnel_refusal_t why;
    item_status_t status;
    peer_t peer;
    bool over_budget; /* its submit peer spent refusal_budget_per_peer: no dead letter */
    /* With security: the authenticated client's name, env->source once accepted (owned), and
     * the source the envelope claimed (in mem). NULL without security. */
    char *auth_source;
    const char *claimed_source;
} item_t;

/* A replay in progress: [truncated] if due, outbox rows from next_seq on a chunk per loop pass,
 * then [end] (or [error] after a read failure). Each stage is sent again after EAGAIN, so a full
 * peer parks the replay at the frame it could not take. */
typedef struct replay {
    peer_t peer;
    char client[FUNNEL_CLIENT_NAME_MAX + 1]; /* with security: whose rights filter the rows */
    uint64_t next_seq;
    uint64_t last_seen;  /* the last row considered, sent or filtered out: [end] carries it */
    uint64_t truncated;  /* first available seq, while [truncated] is still to be sent; else 0 */
    bool rows_done;      /* every row was sent: [end] is next */
    char error[192];     /* a read failed: [error][this reason] is next, instead of [end] */
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
    /* security (server_security.c): all NULL or empty without it */
    funnel_zsock_t *zap;         /* the ZAP handler, bound before any CURVE socket */
    funnel_clients_t *clients;   /* the clients file; replaced whole on SIGHUP */
    funnel_keypair_t server_key; /* the server's CURVE key pair */
    funnel_ratelimit_t security_log[FUNNEL_METRICS_DENIED_COUNT_]; /* log lines per kind */
    char bound[4][256]; /* resolved ingest, submit, publish, replay endpoints */
    funnel_store_t *store;
    funnel_router_t *router;
    void *engines[FUNNEL_ROUTER_MAX_ENGINES]; /* running engines, in router order */
    const funnel_engine_def_t *engine_defs[FUNNEL_ROUTER_MAX_ENGINES]; /* their definitions */
    size_t n_engines;
    item_t *batch;
    size_t n_batch, cap_batch;
    uv_timer_t flush_timer; /* commits after batch_delay_ms; at 0, on the next loop pass */
    uint64_t busy_retry_ms; /* the delay before the kept batch's next attempt; 0: none kept */
    bool ingest_held;       /* sub and submit are not read: the kept batch is full */
    bool disk_full;         /* the last attempt met a full disk: submits are answered
                               "unavailable", SUB input is kept in memory */
    uint64_t kept_bytes;    /* memory the kept SUB input takes while the disk is full */
    uint64_t full_lost;     /* SUB messages dropped beyond disk_full_buffer_bytes this spell */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog, prune_timer;
    uv_timer_t engine_timer;      /* the earliest engine deadline (SLA timers) */
    uv_idle_t replay_idle;        /* runs a chunk of every unparked replay per loop pass */
    uv_timer_t replay_timer;      /* unparks replays whose peers were full */
    replay_t replays[REPLAY_MAX]; /* in arrival order; at most one per routing identity */
    size_t n_replays;
    int64_t dead_window_ms; /* start of the current minute of dead-letter payload budget */
    unsigned dead_payloads; /* payloads stored in that minute */
    /* The dead letters' rows and bytes (funnel_dead_letter_bytes), read once at start and after
     * each prune, counted per refusal in between: the bounds cost no scan per refusal. */
    int64_t dead_rows, dead_bytes;
    funnel_ratelimit_t refusal_log[FUNNEL_REFUSE_COUNT_]; /* log lines per refusal reason */
    peer_budget_t peer_budget[PEER_BUDGET_SLOTS]; /* dead-lettered refusals per submit peer */
    uint64_t published_seq;                       /* last sequence handed to the PUB socket */
    funnel_server_stats_t stats;
    funnel_metrics_t *metrics; /* the Prometheus endpoint; NULL when `metrics` is off */
    bool stopping;
};

/* ---- server.c ----------------------------------------------------------------------------- */

/* The current time on the injected clock (funnel_server_options_t.clock), Unix ms. */
int64_t server_now_ms(funnel_server_t *srv);

/* ---- server_ingest.c: sockets in, batches, commit, answers -------------------------------- */

int server_peer_send(funnel_zsock_t *zs, const peer_t *peer, const void *const *parts,
                     const size_t *lens, size_t n);
void server_item_clear(item_t *it);
void server_publish_row(funnel_server_t *srv, const funnel_outbox_row_t *row);
size_t server_publish_pending(funnel_server_t *srv);
void server_batch_flush(funnel_server_t *srv);
void server_on_ingest(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);
size_t server_peer_parse(zmq_msg_t *frames, size_t n, peer_t *peer);
void server_on_submit(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);

/* ---- server_security.c: CURVE, ZAP, per-client rights ------------------------------------- */

/* Reads the server key and the clients file and binds the ZAP handler, when `security` is on;
 * warns about allow_insecure otherwise. Before any socket is bound. 0 or an error (logged). */
int server_security_start(funnel_server_t *srv);
/* Makes raw (of type) a CURVE server in funneld's ZAP domain; XPUB gets manual subscriptions.
 * Nothing without security. 0 or FUNNEL_EBUS (logged). */
int server_security_socket(funnel_server_t *srv, void *raw, int type);
/* SIGHUP: a new clients table, or the old one kept and the reason logged. */
void server_security_reload(funnel_server_t *srv);
void server_security_destroy(funnel_server_t *srv);
void server_on_zap(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);
void server_on_subscription(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow,
                            void *arg);
/* The ZAP User-Id libzmq attached to a received message; NULL without security (not looked
 * up: it would cost every message). */
const char *server_security_user(const funnel_server_t *srv, const zmq_msg_t *msg);
/* 0 when the client named user (NULL: none) may publish topic; FUNNEL_EREFUSED with a
 * `forbidden` refusal otherwise (also when user is no longer in the table). */
int server_security_publish_check(funnel_server_t *srv, const char *user, const char *topic,
                                  funnel_refusal_t *why);
/* For a replay request from user: its name into name (empty without security), or
 * FUNNEL_EREFUSED with the reason for [error] in why (logged, counted). */
int server_security_replay_client(funnel_server_t *srv, const char *user, char *name,
                                  size_t name_len, char *why, size_t why_len);

/* ---- server_replay.c ---------------------------------------------------------------------- */

void server_on_replay(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);

/* ---- server_timers.c: engine deadlines ---------------------------------------------------- */

void server_timers_arm(funnel_server_t *srv);

/* ---- server_housekeeping.c ---------------------------------------------------------------- */

void server_on_watchdog(uv_timer_t *h);
void server_metrics_outbox_refresh(funnel_server_t *srv);
void server_on_prune(uv_timer_t *h);
void server_publish_backlog(funnel_server_t *srv);
int server_dead_letters_usage(funnel_server_t *srv);
int server_dead_letters_bound(funnel_server_t *srv);

#endif
