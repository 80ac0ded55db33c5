/* web.h — funnel-web: the read API and the departments' page over funneld's database.
 *
 * One libmicrohttpd daemon serves each connection on a thread of its own (at most
 * max_connections), so a live stream (Server-Sent Events) holds only its own connection. Every
 * read opens nothing new: a request borrows one of a small pool of read-only database
 * connections (SQLite WAL readers never block funneld). Writes (acknowledging an escalation) go
 * through funneld's submit socket as events, never to the database. A follower thread reads
 * funneld's output stream through the client library into a ring the stream requests read.
 *
 * Modules: config.c (options), users.c (users file, passwords, API tokens), session.c (login
 * sessions and CSRF tokens), server.c (HTTP, routing, auth, metrics), api.c (the read API),
 * stream.c (follower and SSE), bus.c (the one place that uses funneld's client library),
 * assets (the page, embedded at build time). */
#ifndef FUNNEL_WEB_H
#define FUNNEL_WEB_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "funnel/log.h"
#include "funnel/report.h"

typedef struct funnel_store funnel_store_t;

/* ---- config ------------------------------------------------------------------------------ */

/* funnel-web's configuration; strings are owned (freed by funnel_web_config_clear). */
typedef struct funnel_web_config {
    char *listen_addr;          /* IPv4 address to bind (default 127.0.0.1) */
    int64_t port;               /* TCP port (default 8080); 0 picks a free one */
    char *database;             /* funneld's database, opened read-only */
    char *submit;               /* funneld's submit endpoint (acknowledgements) */
    char *publish;              /* funneld's publish endpoint (the live stream) */
    char *replay;               /* funneld's replay endpoint (catch-up after a gap) */
    char *users;                /* the users file (libconfig), reloaded on SIGHUP */
    char *funneld_config;       /* funneld's config: the quotas' minimums ("": no quotas) */
    char *key, *server_key;     /* CURVE: our .key, funneld's .pub or .key ("": no CURVE) */
    int64_t secure_cookies;     /* 1 when browsers reach the page over TLS (a proxy in front) */
    int64_t session_ttl_s;      /* a login lasts this long */
    int64_t max_connections;    /* open connections (each its own thread) in all */
    int64_t readers;            /* read-only database connections in the pool */
    int64_t submit_timeout_ms;  /* wait for funneld's ack per attempt */
    int64_t stream_backlog;     /* output messages kept for reconnecting browsers */
    int64_t warm_up;            /* 1: read the report models at start; 0: at the first request */
    int64_t answers_cache;      /* 1: keep answers until funneld commits (cache.c); 0: never,
                                   every request computes its answer as after a commit */
    int64_t answers_max_age_ms; /* the page's default answers, recomputed in the background after
                                   each commit, are served up to this old meanwhile (0: never) */
    funnel_log_level_t log_level;
} funnel_web_config_t;

int funnel_web_config_defaults(funnel_web_config_t *cfg);
/* Reads a libconfig file over the defaults already in cfg. 0 or FUNNEL_ECONFIG with err. */
int funnel_web_config_load(const char *path, funnel_web_config_t *cfg, char *err, size_t err_len);
void funnel_web_config_clear(funnel_web_config_t *cfg);

/* ---- users ------------------------------------------------------------------------------- */

typedef enum funnel_web_role {
    FUNNEL_WEB_ROLE_NONE = 0,
    FUNNEL_WEB_ROLE_REP,     /* own statement and own SLA instances */
    FUNNEL_WEB_ROLE_MANAGER, /* everything read-only, may acknowledge escalations */
    FUNNEL_WEB_ROLE_ADMIN,   /* a manager who also sees rejected input */
} funnel_web_role_t;

/* "rep", "manager", "admin"; NULL for NONE. */
const char *funnel_web_role_name(funnel_web_role_t role);
/* The role of a name, or FUNNEL_WEB_ROLE_NONE. */
funnel_web_role_t funnel_web_role_parse(const char *name);

#define FUNNEL_WEB_NAME_MAX 64

/* Who a request acts as. */
typedef struct funnel_web_principal {
    char name[FUNNEL_WEB_NAME_MAX + 1];
    funnel_web_role_t role;
} funnel_web_principal_t;

typedef struct funnel_web_users funnel_web_users_t;

/* Loads path (a missing file is an empty set of users). Returns 0 with *out,
 * FUNNEL_ECONFIG with err, FUNNEL_ENOMEM. */
int funnel_web_users_new(const char *path, funnel_web_users_t **out, char *err, size_t err_len);
void funnel_web_users_destroy(funnel_web_users_t **users);
/* Reads the file again; on an error the users loaded before stay in force. */
int funnel_web_users_reload(funnel_web_users_t *users, char *err, size_t err_len);
/* Checks a name and password (Argon2id, constant work whether or not the user exists).
 * Returns 0 with *who, FUNNEL_EINVAL when they do not match. */
int funnel_web_users_login(funnel_web_users_t *users, const char *name, const char *password,
                           funnel_web_principal_t *who);
/* Finds the user an API token belongs to. 0 with *who, or FUNNEL_EINVAL. */
int funnel_web_users_token(funnel_web_users_t *users, const char *token,
                           funnel_web_principal_t *who);
/* The current role of name (after a reload a session follows the file), or NONE. */
funnel_web_role_t funnel_web_users_role(funnel_web_users_t *users, const char *name);

/* `funnel-web --users FILE --add-user NAME --role ROLE`: sets NAME's role and password (from
 * password, replacing an existing user's), adds a new API token whose hash only is stored and
 * writes the token to token_out (hex, 64 chars + NUL). The file is rewritten atomically.
 * Returns 0, FUNNEL_EINVAL with err for a bad name, role or empty password, FUNNEL_ECONFIG,
 * FUNNEL_EIO, FUNNEL_ENOMEM. */
int funnel_web_users_add(const char *path, const char *name, const char *role, const char *password,
                         char token_out[65], char *err, size_t err_len);

/* ---- sessions ---------------------------------------------------------------------------- */

typedef struct funnel_web_sessions funnel_web_sessions_t;

int funnel_web_sessions_new(int64_t ttl_ms, funnel_web_sessions_t **out);
void funnel_web_sessions_destroy(funnel_web_sessions_t **s);
/* Starts a session for name as of now_ms: id and csrf receive 64 hex chars + NUL. */
int funnel_web_sessions_start(funnel_web_sessions_t *s, const char *name, int64_t now_ms,
                              char id[65], char csrf[65]);
/* Finds a live session: 0 with name and csrf (either may be NULL), FUNNEL_ENOTFOUND when the id
 * is unknown or expired. */
int funnel_web_sessions_find(funnel_web_sessions_t *s, const char *id, int64_t now_ms,
                             char name[FUNNEL_WEB_NAME_MAX + 1], char csrf[65]);
void funnel_web_sessions_end(funnel_web_sessions_t *s, const char *id);

/* ---- funneld (the client library, in one place so its key options are wired once) ------- */

typedef struct funnel_web_bus {
    const char *submit, *publish, *replay; /* endpoints (borrowed from the config) */
    int submit_timeout_ms;
    const char *key, *server_key; /* CURVE key files ("": plain), borrowed from the config */
} funnel_web_bus_t;

/* Submits escalation.acknowledged for sla_id by `by`; event_id names both, so a repeated click
 * is a duplicate. Returns 0 with *status (FUNNEL_SUBMIT_*) and reason, FUNNEL_ETIMEDOUT or
 * FUNNEL_EAGAIN when funneld did not take it, FUNNEL_EBUS, FUNNEL_ENOMEM. */
int funnel_web_bus_ack(const funnel_web_bus_t *bus, const char *sla_id, const char *by,
                       int64_t now_ms, int *status, char *reason, size_t reason_len);

/* Follows the output stream from from_seq until stop() returns true, calling cb per message
 * (funnel_client_msg_cb semantics). Returns 0 when stopped, or the client library's error. */
int funnel_web_bus_follow(const funnel_web_bus_t *bus, uint64_t from_seq,
                          int (*cb)(uint64_t seq, const char *topic, const uint8_t *env, size_t len,
                                    void *arg),
                          bool (*stop)(void *arg), void *arg);

/* ---- the live stream -------------------------------------------------------------------- */

typedef struct funnel_web_stream funnel_web_stream_t;

/* Starts the follower thread from the last backlog messages of the database's outbox. */
int funnel_web_stream_new(const funnel_web_bus_t *bus, funnel_store_t *store, size_t backlog,
                          const funnel_log_t *log, funnel_web_stream_t **out);
/* Wakes every reader (they end their streams) and stops the follower; destroy after the
 * readers are gone. */
void funnel_web_stream_stop(funnel_web_stream_t *s);
void funnel_web_stream_destroy(funnel_web_stream_t **s);

/* The next message after `after` that who may see, as an SSE frame ("id: N\nevent: message\n
 * data: {...}\n\n", owned by the caller), waiting up to wait_ms. Returns 0 with *frame and
 * *seq; FUNNEL_ETIMEDOUT when none came (*seq then is where to resume: messages up to it were
 * looked at and hidden from who); FUNNEL_EBUS when the stream is stopping. */
int funnel_web_stream_next(funnel_web_stream_t *s, const funnel_web_principal_t *who,
                           uint64_t after, int wait_ms, char **frame, uint64_t *seq);
/* The highest sequence seen (0: none). */
uint64_t funnel_web_stream_last(funnel_web_stream_t *s);

/* ---- answers cache (cache.c) ------------------------------------------------------------ */

typedef struct funnel_web_cache funnel_web_cache_t;
typedef struct funnel_web_reply funnel_web_reply_t;

/* A cache whose change marker reads database (read-only); the keeper's answers may be served
 * up to max_age_ms past a commit (0: never). 0, FUNNEL_ENOMEM, FUNNEL_EIO. */
int funnel_web_cache_new(const char *database, int64_t max_age_ms, funnel_web_cache_t **out);
void funnel_web_cache_destroy(funnel_web_cache_t **c);
/* Fills r with the answer kept for key when the database has not changed since (or the keeper
 * filed it at most max_age_ms ago: r->behind and r->age_s then say so) and now_ms is before the
 * answer's valid_until_ms; *marker receives the change marker to file a fresh answer under
 * (read before the answer is computed). */
bool funnel_web_cache_get(funnel_web_cache_t *c, const char *key, int64_t now_ms,
                          funnel_web_reply_t *r, int64_t *marker);
/* For the keeper: whether key's answer needs no recomputing now (computed since the last
 * commit, or less than min_interval_ms ago), with *marker as funnel_web_cache_get's. */
bool funnel_web_cache_fresh(funnel_web_cache_t *c, const char *key, int64_t now_ms,
                            int64_t min_interval_ms, int64_t *marker);
/* Keeps r (a 200) for key under marker until valid_until_ms (INT64_MAX: no clock limit),
 * computed at now_ms; kept: by the keeper (see funnel_web_cache_get). */
void funnel_web_cache_put(funnel_web_cache_t *c, const char *key, int64_t marker,
                          int64_t valid_until_ms, int64_t now_ms, bool kept,
                          const funnel_web_reply_t *r);
/* Answers served from the cache so far, and answers the keeper filed (the metrics). */
uint64_t funnel_web_cache_hits(funnel_web_cache_t *c);
uint64_t funnel_web_cache_kept(funnel_web_cache_t *c);

/* ---- the server -------------------------------------------------------------------------- */

typedef struct funnel_web funnel_web_t;

/* Starts serving cfg (borrowed until destroy). Returns 0 with *out, FUNNEL_EIO when the port
 * cannot be bound or the database not opened, FUNNEL_ECONFIG, FUNNEL_ENOMEM. */
int funnel_web_new(const funnel_web_config_t *cfg, const funnel_log_t *log, funnel_web_t **out);
void funnel_web_destroy(funnel_web_t **web);
int funnel_web_port(const funnel_web_t *web);
/* SIGHUP: reads the users file again. */
void funnel_web_reload(funnel_web_t *web);

/* ---- requests (server.c hands each API request to api.c) ------------------------------- */

/* One answer: status, content type and body (owned). */
struct funnel_web_reply {
    unsigned status;
    const char *content_type;
    char *body;
    size_t len;
    const char *disposition; /* Content-Disposition, or NULL */
    unsigned retry_after_s;  /* Retry-After on a 503, 0 for none */
    bool behind;             /* a keeper's answer from before funneld's last commit (cache.c) */
    unsigned age_s;          /* behind: how old it is (the Age header) */
};

/* What a handler sees of a request. */
typedef struct funnel_web_req {
    funnel_web_t *web;
    struct MHD_Connection *conn; /* NULL for the keeper's own requests (args instead) */
    const char *method;
    const char *path; /* without the query */
    const funnel_web_principal_t *who;
    int64_t now_ms;
    const char *const *args; /* without conn: the query, name, value, ..., NULL */
    bool keeper;             /* the keeper's: compute and file the answer unless it is fresh */
} funnel_web_req_t;

/* Replies: JSON (takes doc), {"error": why} with status, or raw text (copied). */
void funnel_web_reply_json(funnel_web_reply_t *r, unsigned status, json_t *doc);
void funnel_web_reply_error(funnel_web_reply_t *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The query argument name, or NULL. */
const char *funnel_web_arg(const funnel_web_req_t *req, const char *name);

/* A read-only database connection from the pool, returned with funnel_web_store_put. NULL
 * when none can be opened (reply 503). */
funnel_store_t *funnel_web_store_get(funnel_web_t *web);
void funnel_web_store_put(funnel_web_t *web, funnel_store_t *store);
const funnel_web_bus_t *funnel_web_bus(const funnel_web_t *web);
/* The report models funnel-web keeps, each refreshed by every request that reads it once it
 * has been read whole. That first read (every event, every posting: seconds on a big database)
 * runs on a thread of its own, started at start (warm_up = 1) or by the first request that
 * needs a model: until it is done, funnel_web_model_ready() says no and the route answers 503
 * with Retry-After instead of holding the request (and the page) for it. */
typedef enum funnel_web_model { FUNNEL_WEB_M_FUNNEL, FUNNEL_WEB_M_ATTRIBUTION } funnel_web_model_t;
bool funnel_web_model_ready(funnel_web_t *web, funnel_web_model_t model);
/* The attribution model funnel-web keeps (refreshed by each request that reads it). */
funnel_report_attr_model_t *funnel_web_attribution(const funnel_web_t *web);
/* The funnel model funnel-web keeps (refreshed by each request that reads it). */
funnel_report_funnel_t *funnel_web_funnel(const funnel_web_t *web);
/* Answers kept while the database has not changed (cache.c), or NULL when it could not be
 * set up (every request then computes its answer). */
funnel_web_cache_t *funnel_web_answers(const funnel_web_t *web);
/* The keeper (keeper.c). */
/* The keeper recomputes a default at most this often while funneld keeps committing. */
#define FUNNEL_WEB_KEEP_REFRESH_MS 1000
/* How often the keeper looks for a commit. */
#define FUNNEL_WEB_KEEP_POLL_MS 250

/* Computes and files (kept) every one of the page's default queries (what app.js asks for at
 * load, as a manager) whose answer is not fresh as of now_ms. */
void funnel_web_keep(funnel_web_t *web, int64_t now_ms);
/* The quotas of funneld's config, read at start; *n = 0 when none. */
const funnel_report_quota_def_t *funnel_web_quotas(const funnel_web_t *web, size_t *n);

/* The routes, as the metrics count them. */
typedef enum funnel_web_route {
    FUNNEL_WEB_R_UNKNOWN,
    FUNNEL_WEB_R_ASSET,
    FUNNEL_WEB_R_HEALTHZ,
    FUNNEL_WEB_R_METRICS,
    FUNNEL_WEB_R_LOGIN,
    FUNNEL_WEB_R_LOGOUT,
    FUNNEL_WEB_R_ME,
    FUNNEL_WEB_R_STREAM,
    FUNNEL_WEB_R_SLA_LIST,
    FUNNEL_WEB_R_SLA_SHOW,
    FUNNEL_WEB_R_SLA_ACK,
    FUNNEL_WEB_R_SLA_COMPLIANCE,
    FUNNEL_WEB_R_SLA_FILTERS,
    FUNNEL_WEB_R_QUOTA,
    FUNNEL_WEB_R_FUNNEL,
    FUNNEL_WEB_R_ATTRIBUTION,
    FUNNEL_WEB_R_STATEMENT,
    FUNNEL_WEB_R_REJECTED,
    FUNNEL_WEB_R_COUNT_
} funnel_web_route_t;

/* "sla_list", ...: the metrics' route label. */
const char *funnel_web_route_name(funnel_web_route_t route);

/* Answers an authenticated API request; sub is the path after "/api/v1/". Returns the route
 * matched (FUNNEL_WEB_R_UNKNOWN with a 404 when none). */
funnel_web_route_t funnel_web_api(const funnel_web_req_t *req, const char *sub,
                                  funnel_web_reply_t *r);

/* ---- assets ------------------------------------------------------------------------------ */

typedef struct funnel_web_asset {
    const char *path; /* "/", "/app.js", ... */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} funnel_web_asset_t;

/* The embedded asset at path, or NULL. */
const funnel_web_asset_t *funnel_web_asset_find(const char *path);

#endif
