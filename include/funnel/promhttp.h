/* promhttp.h — the one Prometheus HTTP side of funneld and the adapters: text exposition
 * (format 0.0.4), the answers to GET /metrics and GET /healthz, a stand-alone endpoint serving
 * just those two, and the ready file that reports a bound port.
 *
 * funnel-webhook answers /metrics and /healthz on its own port through funnel_prom_answer;
 * funneld (daemon/core/metrics.c) and funnel-alert run a funnel_prom_server_t on the address of
 * their `metrics` option. Either way the render callback runs on libmicrohttpd's internal
 * thread, so it may only read what is safe to read from there: C11 atomics the worker thread
 * writes, or a copy taken under a lock. */
#ifndef FUNNEL_PROMHTTP_H
#define FUNNEL_PROMHTTP_H

#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>

#include "funnel/log.h"

/* Writes the whole exposition to out. */
typedef void (*funnel_prom_render_fn)(FILE *out, void *arg);

/* "# HELP name help" and "# TYPE name type" (counter, gauge). */
void funnel_prom_family(FILE *out, const char *name, const char *type, const char *help);

/* One sample: `name v`, or `name{label="value"} v` when label is not NULL (the value escaped
 * as the format wants: backslash, double quote, newline). */
void funnel_prom_u64(FILE *out, const char *name, const char *label, const char *value, uint64_t v);
void funnel_prom_f64(FILE *out, const char *name, const char *label, const char *value, double v);

/* Answers GET /metrics (render's text) and GET /healthz ("ok") on conn. Returns the result of
 * queueing the response (MHD_YES or MHD_NO), or -1 when the request is neither: the caller
 * answers it. */
int funnel_prom_answer(struct MHD_Connection *conn, const char *method, const char *url,
                       funnel_prom_render_fn render, void *arg);

typedef struct funnel_prom_server funnel_prom_server_t;

/* 0 when listen is an "IPv4:port" funnel_prom_server_new accepts, else FUNNEL_ECONFIG. */
int funnel_prom_listen_check(const char *listen);

/* Serves /metrics and /healthz (other paths 404, other methods 405) on listen, "IPv4:port";
 * port 0 picks a free one (see funnel_prom_server_port). render(out, arg) is called for each
 * scrape until the server is destroyed. Returns 0 with *out, FUNNEL_ECONFIG for a malformed
 * address, FUNNEL_EIO when it cannot be bound, FUNNEL_ENOMEM. */
int funnel_prom_server_new(const char *listen, funnel_prom_render_fn render, void *arg,
                           const funnel_log_t *log, funnel_prom_server_t **out);
/* The bound port, or 0 for NULL. */
int funnel_prom_server_port(const funnel_prom_server_t *srv);
/* Stops the HTTP thread (after the scrape in progress) and frees; NULL is fine. */
void funnel_prom_server_destroy(funnel_prom_server_t **srv);

/* Writes a ready file, "key=value" lines as fmt makes them, to path.tmp and renames it over
 * path, so a reader polling for it never sees half of it. 0 or FUNNEL_EIO. */
int funnel_ready_write(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
