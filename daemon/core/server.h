/* server.h — the funneld process core: one libuv loop owning the sockets, the store and the
 * router; group commit; publish after COMMIT; replay; signals; systemd notifications.
 *
 * Life cycle: funnel_server_new (opens the store, binds every socket) → funnel_server_run
 * (blocks until SIGTERM/SIGINT or funnel_server_stop) → funnel_server_destroy. Single thread. */
#ifndef FUNNEL_SERVER_H
#define FUNNEL_SERVER_H

#include <stdint.h>

#include "funnel/codec.h"
#include "config.h"
#include "funnel/log.h"

typedef struct funnel_server funnel_server_t;

/* Where "now" comes from; tests inject their own. */
typedef int64_t (*funnel_clock_fn)(void *arg);

typedef struct funnel_server_options {
    const char *config_path; /* re-read on SIGHUP; NULL: defaults only, no reload */
    const char *ready_file;  /* if set, the bound endpoints are written here once ready */
    /* Command-line overrides, re-applied after every reload: name=value pairs. */
    const char *const *overrides;
    size_t n_overrides;
    funnel_clock_fn clock; /* NULL: the real-time clock */
    void *clock_arg;
} funnel_server_options_t;

/* Counters, for logs and metrics. Index refused[] by funnel_refusal_code_t. */
typedef struct funnel_server_stats {
    uint64_t accepted;
    uint64_t duplicates;
    uint64_t refused[FUNNEL_REFUSE_COUNT_];
    uint64_t published;
    uint64_t batches;
    uint64_t commit_failures;
    uint64_t replays;
} funnel_server_stats_t;

/* Checks what only the server knows about a configuration: the engine names, that every tcp://
 * endpoint has a usable port and that `metrics` is an address:port or off. Returns 0 or
 * FUNNEL_ECONFIG with err. */
int funnel_server_config_check(const funnel_config_t *cfg, char *err, size_t err_len);

/* funnel_config_read (file, then overrides) followed by funnel_server_config_check: what
 * start-up, --check-config and every SIGHUP reload accept, the same in all three. registry is
 * the engines' table (engines/registry.h at start-up; a reload reuses the running config's).
 * cfg is only written on success (zero or clear it beforehand). */
int funnel_server_config_read(const char *path, const funnel_engine_registry_t *registry,
                              const char *const *overrides, size_t n, funnel_config_t *cfg,
                              char *err, size_t err_len);

/* Takes ownership of *cfg (moved: *cfg is zeroed). On failure returns a negative code, logs the
 * reason and frees everything it set up. */
int funnel_server_new(funnel_config_t *cfg, const funnel_server_options_t *opts, funnel_log_t *log,
                      funnel_server_t **out);

/* Runs the loop until stopped. Returns 0 after a graceful stop. */
int funnel_server_run(funnel_server_t *srv);

/* Asks the loop to stop gracefully (what SIGTERM does). */
void funnel_server_stop(funnel_server_t *srv);

const funnel_server_stats_t *funnel_server_stats(const funnel_server_t *srv);

void funnel_server_destroy(funnel_server_t **srv);

#endif
