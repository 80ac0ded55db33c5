/* web_fx.h — a funneld and a funnel-web on ephemeral loopback ports over a known event stream,
 * for the API tests (test_web.c) and the browser tests (test_web_browser.c).
 *
 * The stream, with t0 the time the fixture started (every figure below is asserted somewhere):
 *   L1  created (ann, smb) touch spring/google/cpc/paid at t0-10d; touched autumn/facebook/
 *       social/paid_social at t0-3h; MQL t0-9d; SQL (ann) t0-2h: its sql_contact instance is
 *       breached, both escalation levels fired. Client C2 handed off from L1 by ann at t0-90m;
 *       payment P2 of C2, 50000 EUR at t0-80m.
 *   L2  created (bob, enterprise) touch webinar/newsletter/email/email at t0-8d; MQL t0-7d;
 *       SQL (bob) t0-6d; contacted t0-6d+30m (met on time); won t0-5d. Client C1 handed off
 *       from L2 by bob at t0-5d; payment P1 of C1, 120000 EUR at t0-75m; refund R1 of P1,
 *       20000 EUR at t0-70m.
 *   L3  created (ann) touch spring at t0-4d; MQL t0-3d; lost t0-2d.
 *   L5  SQL (bob) at t0-2h without a creation: a breached instance owned by bob.
 * Commission 10% (1000 bp): ann accrues 5000 EUR; bob 12000 less a 2000 clawback.
 * Users: mia (manager), ann and bob (reps), root (admin); password "<name>-password". */
#ifndef FUNNEL_TEST_WEB_FX_H
#define FUNNEL_TEST_WEB_FX_H

#include "harness.h"
#include "http_fx.h"

#define FX_HOUR_MS (3600LL * 1000)
#define FX_DAY_MS  (24 * FX_HOUR_MS)

typedef struct fx_web {
    fx_tmpdir_t tmp;
    fx_daemon_t d;
    char conf[300];     /* funneld.conf */
    char users[300];    /* the users file */
    char web_conf[300]; /* funnel-web.conf */
    char ready[300], log[300];
    pid_t pid; /* funnel-web */
    int port;
    int64_t t0;
    char token_mia[65], token_ann[65], token_bob[65], token_root[65];
    char period_ann[8], period_bob[8]; /* YYYY-MM of ann's and bob's payments */
} fx_web_t;

/* Starts funneld, submits the known stream, adds the users and starts funnel-web. */
void fx_web_start(fx_web_t *w);
/* Writes w's funnel-web.conf (w->d's endpoints and database, w->users, w->conf, then the
 * settings in extra) and starts funnel-web on it; fx_web_start's last step. */
void fx_web_spawn(fx_web_t *w, const char *extra);
/* Asks for path as mia until it is not 503 (a report model still being read at start), at
 * most a minute; returns the last status. */
long fx_web_wait_ready(const fx_web_t *w, const char *path);
/* Stops both (a non-zero exit is a test error) and removes the directory. */
void fx_web_stop(fx_web_t *w);

/* `funnelctl publish topic json` against w's funneld; asserts "ok". */
void fx_web_publish(const fx_web_t *w, const char *topic, const char *json);
/* GET (body NULL) or POST path with "Authorization: Bearer token" (token NULL: none) and extra
 * (NULL-terminated, may be NULL) headers. */
void fx_web_request(const fx_web_t *w, const char *token, const char *path, const char *body,
                    const char *const *extra, fx_http_reply_t *r);

/* Adds name with role through `funnel-web --add-user` (password on stdin); the API token it
 * printed goes to token. */
void fx_web_add_user(const char *users, const char *name, const char *role, const char *password,
                     char token[65]);

/* What an SSE read received (NUL-terminated, truncated to fit). */
typedef struct fx_sse_buf {
    char text[65536];
    size_t len;
} fx_sse_buf_t;

/* Reads w's live stream as token for ms milliseconds, from after last_id (NULL: from now);
 * asserts the stream was still open when the time ran out. */
void fx_web_sse_read(const fx_web_t *w, const char *token, const char *last_id, int ms,
                     fx_sse_buf_t *b);

#endif
