/* webhook.h — funnel-webhook: CRMs and billing call it over HTTP, it submits to funneld.
 *
 * One libmicrohttpd daemon serves each connection on a thread of its own (at most
 * max_connections), so a request waiting for a slow funneld holds only its own connection. A
 * request that submits borrows one of `threads` funnel_client_t for the time it talks to funneld;
 * the counters are guarded by one mutex.
 * A request is answered 2xx only after funneld acknowledged every event it carried: the sender
 * keeps retrying otherwise, and event ids make those retries harmless.
 *
 * The signature checks and the provider mappings are plain functions, tested on their own. */
#ifndef FUNNEL_WEBHOOK_H
#define FUNNEL_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "funnel/log.h"

#define FUNNEL_WEBHOOK_MAX_AMO_STATUSES 64
#define FUNNEL_WEBHOOK_ID_MAX           129 /* an id as funneld takes it, plus NUL */

/* What an amoCRM pipeline status means for the funnel. */
typedef enum funnel_amo_stage {
    FUNNEL_AMO_MQL,
    FUNNEL_AMO_SQL,
    FUNNEL_AMO_WON,
    FUNNEL_AMO_LOST,
} funnel_amo_stage_t;

typedef struct funnel_amo_status {
    int64_t status_id; /* amoCRM's pipeline status id (142 is "won", 143 "lost" by default) */
    funnel_amo_stage_t stage;
} funnel_amo_status_t;

/* The webhook's configuration; strings are owned (freed by funnel_webhook_config_clear). */
typedef struct funnel_webhook_config {
    char *listen_addr;         /* IPv4 address to bind, normally 127.0.0.1 behind a proxy */
    int64_t port;              /* TCP port; 0 picks a free one (see funnel_webhook_port) */
    char *submit;              /* funneld's submit endpoint */
    char *key, *server_key;    /* CURVE: our .key, funneld's .pub or .key ("": no CURVE) */
    char *token;               /* bearer token for /v1/events; empty: the endpoint is disabled */
    int64_t max_body_bytes;    /* larger requests get 413 */
    int64_t submit_timeout_ms; /* wait for funneld's ack per attempt */
    int64_t submit_attempts;   /* attempts before answering 503 */
    int64_t retry_after_s;     /* Retry-After of a 503 */
    int64_t tolerance_s;       /* signed timestamps older (or newer) than this are refused */
    char *stripe_secret;       /* Stripe endpoint secret (whsec_...); empty: disabled */
    char *hubspot_secret;      /* HubSpot app client secret; empty: disabled */
    char *hubspot_base_url;    /* scheme://host the public URL HubSpot calls starts with */
    char *amocrm_token;        /* ?token= amoCRM must send (it cannot sign); empty: disabled */
    /* Prepended to the event ids and record ids (lead, payment, refund) each mapping takes
     * from its provider, so lead 42 of two CRMs are two leads; "" (the default): none. */
    char *stripe_id_prefix, *hubspot_id_prefix, *amocrm_id_prefix;
    int64_t threads;              /* requests submitting to funneld at once (funnel clients) */
    int64_t max_connections;      /* open connections in all, beyond which new ones are closed */
    int64_t max_per_ip;           /* open connections per client address */
    int64_t connection_timeout_s; /* an idle or trickling connection is closed after this */
    funnel_amo_status_t amo_statuses[FUNNEL_WEBHOOK_MAX_AMO_STATUSES];
    size_t n_amo_statuses;
    funnel_log_level_t log_level;
} funnel_webhook_config_t;

/* Fills the defaults. Returns 0 or FUNNEL_ENOMEM. */
int funnel_webhook_config_defaults(funnel_webhook_config_t *cfg);
/* Reads a libconfig file over the defaults already in cfg. 0 or FUNNEL_ECONFIG with err. */
int funnel_webhook_config_load(const char *path, funnel_webhook_config_t *cfg, char *err,
                               size_t err_len);
void funnel_webhook_config_clear(funnel_webhook_config_t *cfg);

/* ---- signatures (pure; times passed in) ----------------------------------------------- */

/* Checks a Stripe-Signature header ("t=...,v1=...,v1=...") over body with secret: some v1 must
 * equal hex(HMAC-SHA256(secret, t + "." + body)) and t must be within tolerance_s of now_s.
 * Returns 0, or FUNNEL_EINVAL with a reason in why. */
int funnel_stripe_verify(const char *secret, const char *header, const char *body, size_t len,
                         int64_t now_s, int64_t tolerance_s, char *why, size_t why_len);

/* Checks X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + uri + body + timestamp))
 * where timestamp is X-HubSpot-Request-Timestamp (ms), refused when older than tolerance_ms.
 * Returns 0, or FUNNEL_EINVAL with why. */
int funnel_hubspot_verify(const char *secret, const char *method, const char *uri, const char *body,
                          size_t len, const char *timestamp, const char *signature, int64_t now_ms,
                          int64_t tolerance_ms, char *why, size_t why_len);

/* ---- mappings ----------------------------------------------------------------------------
 * Each turns a provider's payload into a JSON array of {"topic": "...", "event": {...}}, the
 * event in the form funnel_json_envelope_build takes. Returns 0 with *out (caller owns; an
 * empty array when nothing maps: *ignored counts what was skipped), or FUNNEL_EINVAL with why,
 * or FUNNEL_ENOMEM. */
int funnel_stripe_map(const json_t *event, json_t **out, size_t *ignored, char *why,
                      size_t why_len);
int funnel_hubspot_map(const json_t *events, json_t **out, size_t *ignored, char *why,
                       size_t why_len);
int funnel_amocrm_map(const funnel_webhook_config_t *cfg, const char *form, size_t len,
                      int64_t now_ms, json_t **out, size_t *ignored, char *why, size_t why_len);

/* Prepends prefix to eventId, leadId, paymentId and refundId of every mapped item's event
 * (client ids, the join key with the CRM's handoffs, and people are left alone). Returns 0 or
 * FUNNEL_ENOMEM. */
int funnel_webhook_prefix_ids(json_t *items, const char *prefix);

/* ---- the server --------------------------------------------------------------------------- */

typedef struct funnel_webhook funnel_webhook_t;

/* Every status a request can be refused with, in the order of by_status below. */
#define FUNNEL_WEBHOOK_REFUSAL_STATUSES                                                            \
    {                                                                                              \
        400, 401, 404, 413, 415, 500, 503                                                          \
    }
#define FUNNEL_WEBHOOK_N_REFUSAL_STATUSES 7

/* Counters, read by tests and served at GET /metrics. */
typedef struct funnel_webhook_stats {
    uint64_t requests;
    uint64_t accepted;    /* events funneld acked ok */
    uint64_t duplicates;  /* events funneld acked duplicate */
    uint64_t refused;     /* requests answered 4xx */
    uint64_t unavailable; /* requests answered 503 */
    uint64_t ignored;     /* provider events of a type nothing maps */
    /* requests refused, per status sent (FUNNEL_WEBHOOK_REFUSAL_STATUSES) */
    uint64_t by_status[FUNNEL_WEBHOOK_N_REFUSAL_STATUSES];
} funnel_webhook_stats_t;

/* Starts serving (cfg is copied where needed; it must outlive the webhook). */
int funnel_webhook_new(const funnel_webhook_config_t *cfg, const funnel_log_t *log,
                       funnel_webhook_t **out);
/* The port actually bound. */
int funnel_webhook_port(const funnel_webhook_t *wh);
/* A copy of the counters, taken on their lock. */
void funnel_webhook_stats(funnel_webhook_t *wh, funnel_webhook_stats_t *out);
/* Stops serving (waits for the requests in progress) and frees everything. */
void funnel_webhook_destroy(funnel_webhook_t **wh);

#endif
