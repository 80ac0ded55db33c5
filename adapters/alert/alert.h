/* alert.h — funnel-alert: funneld's escalations (sla.* by default) out to people.
 *
 * Follows the output stream through the client library with a persisted cursor, routes each
 * message by its notify target to a channel (Slack-compatible incoming webhook, Telegram Bot
 * API sendMessage, generic JSON webhook) and posts it with libcurl. A delivery is retried with
 * exponential backoff and jitter; after max_attempts it is dead-lettered (a JSON line in a
 * file). Only then, or after a success, does the cursor move: a restart resends nothing that
 * was delivered, and loses nothing that was not. One delivering thread; with `metrics` on,
 * libmicrohttpd's thread serves the counters (see funnel_alert_metrics_new). */
#ifndef FUNNEL_ALERT_H
#define FUNNEL_ALERT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "funnel/log.h"

#define FUNNEL_ALERT_MAX_PREFIXES 8
#define FUNNEL_ALERT_MAX_CHANNELS 16
#define FUNNEL_ALERT_MAX_ROUTES   64

typedef enum funnel_channel_kind {
    FUNNEL_CHANNEL_SLACK,    /* POST {"text": ...} to url */
    FUNNEL_CHANNEL_TELEGRAM, /* POST {"chat_id", "text"} to url/bot<token>/sendMessage */
    FUNNEL_CHANNEL_WEBHOOK,  /* POST {"seq","topic","target","text","event"} to url */
} funnel_channel_kind_t;

typedef struct funnel_alert_channel {
    char *name;
    funnel_channel_kind_t kind;
    char *url;       /* the webhook URL; for Telegram the API base (https://api.telegram.org) */
    char *bot_token; /* Telegram only */
} funnel_alert_channel_t;

/* Where messages for one notify target go. */
typedef struct funnel_alert_route {
    char *target;  /* the escalation's notify target; "*" matches any (the default route) */
    char *channel; /* a channel's name */
    char *chat_id; /* Telegram chat of this target */
} funnel_alert_route_t;

typedef struct funnel_alert_config {
    char *publish, *replay; /* funneld's endpoints */
    char *key, *server_key; /* CURVE: our .key, funneld's .pub or .key ("": no CURVE) */
    char *cursor;           /* cursor file: last sequence handled */
    char *dead_letter;      /* JSON lines of messages that could not be delivered */
    char *prefixes[FUNNEL_ALERT_MAX_PREFIXES]; /* topics followed */
    size_t n_prefixes;
    int64_t max_attempts;    /* deliveries tried before dead-lettering */
    int64_t backoff_ms;      /* first retry pause; doubled each time, with jitter */
    int64_t backoff_max_ms;  /* cap of the pause */
    int64_t http_timeout_ms; /* per request */
    char *metrics;           /* "IPv4:port" of /metrics and /healthz (port 0: any), or "off" */
    funnel_alert_channel_t channels[FUNNEL_ALERT_MAX_CHANNELS];
    size_t n_channels;
    funnel_alert_route_t routes[FUNNEL_ALERT_MAX_ROUTES];
    size_t n_routes;
    funnel_log_level_t log_level;
} funnel_alert_config_t;

/* Defaults, then a libconfig file over them. 0, FUNNEL_ECONFIG with err, or FUNNEL_ENOMEM.
 * On error cfg may hold part of the file: clear it. */
int funnel_alert_config_defaults(funnel_alert_config_t *cfg);
int funnel_alert_config_load(const char *path, funnel_alert_config_t *cfg, char *err,
                             size_t err_len);
void funnel_alert_config_clear(funnel_alert_config_t *cfg);

/* The one-line text of a message (envelope JSON as funnel_json_from_message makes it) and its
 * notify target: the body's notify, else its SLA owner, owner or rep; "" when none. now_ms
 * tells how late an escalation is. Returns 0 or FUNNEL_ENOMEM. */
int funnel_alert_text(const char *topic, const json_t *envelope_json, int64_t now_ms, char *text,
                      size_t text_len, char *target, size_t target_len);

/* ---- metrics -----------------------------------------------------------------------------
 * The adapter's own counters, served in Prometheus text on /metrics (and liveness on /healthz)
 * at cfg->metrics by libmicrohttpd's internal thread. The delivering thread is the only writer:
 * every value is a C11 atomic updated with relaxed ordering, the HTTP thread only reads them,
 * so a scrape never waits for a delivery and a delivery never waits for a scrape. Every
 * function takes a NULL funnel_alert_metrics_t (metrics off) and then does nothing. */
typedef struct funnel_alert_metrics funnel_alert_metrics_t;

typedef enum funnel_alert_counter {
    FUNNEL_ALERT_RECEIVED,      /* a message matched a prefix; index: the prefix */
    FUNNEL_ALERT_ATTEMPTED,     /* a delivery request started; index: the channel */
    FUNNEL_ALERT_SUCCEEDED,     /* ... answered 2xx; index: the channel */
    FUNNEL_ALERT_FAILED,        /* ... failed (transport error, non-2xx); index: the channel */
    FUNNEL_ALERT_RETRIED,       /* an attempt after the first of a message; index unused */
    FUNNEL_ALERT_DEAD_LETTERED, /* a message went to the dead-letter file; index unused */
} funnel_alert_counter_t;

/* Starts serving when cfg->metrics is not "off" (*out NULL otherwise). cfg must outlive the
 * metrics: its prefixes and channel names are the labels. Returns 0, FUNNEL_ECONFIG (bad
 * address), FUNNEL_EIO (cannot bind) or FUNNEL_ENOMEM. Call with the stop signals blocked, so
 * the HTTP thread inherits the mask. */
int funnel_alert_metrics_new(const funnel_alert_config_t *cfg, const funnel_log_t *log,
                             funnel_alert_metrics_t **out);
/* The bound port (for the ready file and tests), or 0 when off. */
int funnel_alert_metrics_port(const funnel_alert_metrics_t *m);
void funnel_alert_metrics_destroy(funnel_alert_metrics_t **m);

void funnel_alert_metrics_count(funnel_alert_metrics_t *m, funnel_alert_counter_t counter,
                                size_t index);
/* The last sequence processed: the cursor. */
void funnel_alert_metrics_cursor(funnel_alert_metrics_t *m, uint64_t seq);
/* The retry pause in progress, 0 when none. */
void funnel_alert_metrics_backoff(funnel_alert_metrics_t *m, int64_t ms);

/* Follows until a signal in stop arrives (taken with sigtimedwait: the caller blocks them) or
 * a fatal error, counting into metrics (may be NULL). Returns 0 after a stop, or a negative
 * FUNNEL_E* code. */
int funnel_alert_run(const funnel_alert_config_t *cfg, const funnel_log_t *log,
                     const sigset_t *stop, funnel_alert_metrics_t *metrics);

#endif
