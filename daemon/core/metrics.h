/* metrics.h — funneld's counters in Prometheus text exposition, served over HTTP.
 *
 * Threads: the libuv loop thread is the only writer (funnel_metrics_event and friends); the
 * HTTP server is libmicrohttpd with its own internal polling thread, which only reads. Every
 * value is a C11 atomic updated with relaxed ordering, so the loop never waits for a scrape
 * and a scrape never touches the loop, the store or the sockets. (A libuv TCP handler would
 * have kept one thread, at the price of an HTTP parser of our own.)
 *
 * Every function takes a NULL funnel_metrics_t and then does nothing: metrics are optional. */
#ifndef FUNNEL_METRICS_H
#define FUNNEL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "funnel/codec.h"
#include "funnel/log.h"

typedef struct funnel_metrics funnel_metrics_t;

/* Starts serving GET /metrics and GET /healthz on listen ("127.0.0.1:9464"; port 0 picks a
 * free one). Returns 0 with *out, FUNNEL_ECONFIG for a malformed address, FUNNEL_EIO when the
 * port cannot be bound, FUNNEL_ENOMEM. */
/* Checks a `metrics` value ("127.0.0.1:9464" or "off") without opening anything: 0 or
 * FUNNEL_ECONFIG with err. --check-config and reloads refuse what funnel_metrics_new would. */
int funnel_metrics_listen_check(const char *listen, char *err, size_t err_len);

int funnel_metrics_new(const char *listen, const funnel_log_t *log, funnel_metrics_t **out);

/* Stops the HTTP thread and frees; *m becomes NULL. */
void funnel_metrics_destroy(funnel_metrics_t **m);

/* The bound port (for ready files and tests), or 0. */
int funnel_metrics_port(const funnel_metrics_t *m);

typedef enum funnel_metrics_result {
    FUNNEL_METRICS_ACCEPTED,
    FUNNEL_METRICS_DUPLICATE,
    FUNNEL_METRICS_REFUSED,
} funnel_metrics_result_t;

/* One ingest message settled by a batch: topic is its topic frame (an unknown one is counted
 * as "other"), reason matters for REFUSED only. */
void funnel_metrics_event(funnel_metrics_t *m, const char *topic, funnel_metrics_result_t result,
                          funnel_refusal_code_t reason);

/* How one attempt at a batch's transaction ended. */
typedef enum funnel_metrics_commit_result {
    FUNNEL_METRICS_COMMITTED,
    FUNNEL_METRICS_COMMIT_BUSY,  /* the database was locked by another process: retried later */
    FUNNEL_METRICS_COMMIT_FULL,  /* the disk was full: kept and retried once space returns */
    FUNNEL_METRICS_COMMIT_ERROR, /* anything else (I/O): the batch is given up */
    FUNNEL_METRICS_COMMIT_COUNT_
} funnel_metrics_commit_result_t;

/* A batch attempt with n messages ended as `result` after latency_us microseconds. */
void funnel_metrics_commit(funnel_metrics_t *m, size_t n, uint64_t latency_us,
                           funnel_metrics_commit_result_t result);

/* Why fire-and-forget (SUB) input was lost: its publisher expects no ack and never resends. */
typedef enum funnel_metrics_lost_reason {
    FUNNEL_METRICS_LOST_COMMIT,    /* its batch failed with a non-transient error */
    FUNNEL_METRICS_LOST_EVENT,     /* the event alone failed (its savepoint was rolled back) */
    FUNNEL_METRICS_LOST_NOMEM,     /* no memory to queue it */
    FUNNEL_METRICS_LOST_DISK_FULL, /* disk full and disk_full_buffer_bytes of it already kept */
    FUNNEL_METRICS_LOST_COUNT_
} funnel_metrics_lost_reason_t;

/* n SUB messages were lost for `reason`. Submitted ones are not counted: their senders retry. */
void funnel_metrics_lost(funnel_metrics_t *m, funnel_metrics_lost_reason_t reason, size_t n);

/* What the security layer turned away (README "Security"). */
typedef enum funnel_metrics_denial {
    FUNNEL_METRICS_DENIED_KEY,          /* a CURVE handshake with a key not in the clients file */
    FUNNEL_METRICS_DENIED_ZAP,          /* a ZAP request that was not one (answered 500) */
    FUNNEL_METRICS_DENIED_SUBSCRIPTION, /* a subscription outside the client's prefixes */
    FUNNEL_METRICS_DENIED_REPLAY,       /* a replay request of a client no longer listed */
    FUNNEL_METRICS_DENIED_COUNT_
} funnel_metrics_denial_t;

void funnel_metrics_denied(funnel_metrics_t *m, funnel_metrics_denial_t what);

/* An output message with sequence seq went to the PUB socket. */
void funnel_metrics_published(funnel_metrics_t *m, uint64_t seq);

/* The oldest sequence still in the outbox (retained for replay); 0 when it is empty. */
void funnel_metrics_outbox_first(funnel_metrics_t *m, uint64_t first_seq);

#define FUNNEL_METRICS_ENGINES 8

/* Items engine `slot` holds open (SLA instances not yet met); engine is a static name. */
void funnel_metrics_engine_open(funnel_metrics_t *m, size_t slot, const char *engine, int64_t open);

/* An engine timer (SLA warning, level, quota) ran lag_ms after its deadline. */
void funnel_metrics_timer_lag(funnel_metrics_t *m, uint64_t lag_ms);

#endif
