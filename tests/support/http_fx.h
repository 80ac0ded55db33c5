/* http_fx.h — a blocking HTTP client for tests (libcurl), shared by the adapter and metrics
 * tests. */
#ifndef FUNNEL_TEST_HTTP_FX_H
#define FUNNEL_TEST_HTTP_FX_H

#include <stddef.h>

typedef struct fx_http_reply {
    long status;
    char body[65536]; /* NUL-terminated, truncated to fit */
    size_t len;
    char retry_after[32]; /* the Retry-After header's value, if any */
    char set_cookie[256]; /* the Set-Cookie header's value, if any */
    char age[32];         /* the Age header's value, if any */
} fx_http_reply_t;

/* POSTs body (len bytes) to http://127.0.0.1:port/path, or GETs it when body is NULL, with
 * extra headers (NULL-terminated list, may be NULL). Asserts the transfer itself worked.
 * The reply is large: callers keep it static or on the heap. */
void fx_http(int port, const char *path, const char *body, size_t len, const char *const *hdrs,
             fx_http_reply_t *reply);

/* A libcurl write callback's body: appends data (len bytes) to buf (cap bytes, *used of them
 * taken), truncating to fit and keeping it NUL-terminated; returns len (all taken). */
size_t fx_http_append(char *buf, size_t cap, size_t *used, const char *data, size_t len);

/* The value of the Prometheus sample named exactly series ("name{labels}") in text, or -1. */
double fx_metric(const char *text, const char *series);

/* Scrapes http://127.0.0.1:port/metrics into reply; asserts it answered 200. */
void fx_metrics_scrape(int port, fx_http_reply_t *reply);

#endif
