/* config.h — funneld's configuration: one table of options (name, type, default, bounds,
 * reloadable), read from a libconfig file and overridden from the command line.
 *
 * A funnel_config_t owns its strings; free with funnel_config_clear. Loading never half-applies:
 * on error the target is left as it was and err names the file, line and option at fault. */
#ifndef FUNNEL_CONFIG_H
#define FUNNEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "funnel/log.h"
#include "store.h"

#define FUNNEL_CONFIG_MAX_CONNECT  16
#define FUNNEL_CONFIG_MAX_SECTIONS 8 /* engine sections: registry entries at most */

typedef struct funnel_engine_registry funnel_engine_registry_t;

typedef struct funnel_config {
    char *database; /* SQLite file */
    char *ingest;   /* SUB bind endpoint, tools' PUB sockets connect here */
    char *submit;   /* ROUTER bind endpoint, acknowledged ingest */
    char *publish;  /* PUB bind endpoint, the output stream */
    char *replay;   /* ROUTER bind endpoint, catch-up from a sequence */
    char *connect[FUNNEL_CONFIG_MAX_CONNECT]; /* publishers the SUB socket connects out to */
    size_t n_connect;
    int64_t max_message_bytes;       /* larger ingest messages are refused */
    int64_t batch_max;               /* events per transaction at most */
    int64_t batch_delay_ms;          /* wait this long for more events before committing */
    int64_t retention_days;          /* outbox rows kept for replay */
    int64_t max_future_ms;           /* occurred_at_ms may be at most this far ahead of now */
    int64_t publish_hwm;             /* PUB high-water mark per subscriber, messages */
    int64_t disk_full_buffer_bytes;  /* SUB input kept in memory while the disk is full */
    int64_t dead_letter_max_rows;    /* dead letters kept at most; the oldest go first */
    int64_t dead_letter_max_bytes;   /* their payload and text bytes at most; the same */
    int64_t refusal_log_per_minute;  /* refusal log lines per reason a minute, then a count */
    int64_t refusal_budget_per_peer; /* dead-lettered refusals per submit peer a minute */
    funnel_log_level_t log_level;
    funnel_store_sync_t sync;
    int64_t quick_check; /* at start: 1 after an unclean stop, 2 always, 0 never */
    char *metrics;       /* "127.0.0.1:9464": Prometheus /metrics and /healthz; "off" disables */
    char *engines;       /* "ledger,attribution,sla" (the default), a subset, or "none" */
    char *sql_profile;   /* file the writer's statement profile goes to (sqlprofile.h), or off */
    /* `security = { server_key = "FILE"; clients = "FILE"; };`: CURVE on every socket with the
     * server's .key, and the clients file (clients.h). Both NULL without the section, both set
     * with it. */
    char *server_key;
    char *clients;
    bool allow_insecure; /* without security, endpoints may bind non-loopback addresses */
    /* The engines whose sections this config holds (engine.h); NULL: none, as for funnelctl,
     * which reads the core options and skips the engines' groups. Not owned. */
    const funnel_engine_registry_t *registry;
    /* registry->defs[i]'s section (`commission { ... }`, `sla { ... }`), allocated from its
     * section_size; NULL for a registry entry without a section. Owned. A reload rewrites a
     * section in place, so an engine holding its pointer sees the new one. */
    void *sections[FUNNEL_CONFIG_MAX_SECTIONS];
} funnel_config_t;

/* Fills cfg with the defaults, the sections of registry's engines (may be NULL) included.
 * Returns 0 or FUNNEL_ENOMEM. */
int funnel_config_defaults(funnel_config_t *cfg, const funnel_engine_registry_t *registry);

/* Frees every string of cfg and zeroes it. */
void funnel_config_clear(funnel_config_t *cfg);

/* Reads path over the defaults into cfg. Unknown options, wrong types and values out of bounds
 * are errors; a group is the section of registry's engine of that name, an error when registry
 * has none, and skipped unread when registry is NULL (funnelctl runs no engine). Returns 0,
 * FUNNEL_ECONFIG (err says why) or FUNNEL_ENOMEM. cfg is only written on success (it must be
 * cleared or zeroed beforehand). */
int funnel_config_load(const char *path, const funnel_engine_registry_t *registry,
                       funnel_config_t *cfg, char *err, size_t err_len);

/* The effective configuration: the defaults, the file at path (NULL: none), then the
 * command-line overrides, "name=value" each; a dotted name reaches an engine section
 * ("attribution.half_life_days=14") and wins over the file's value there. The one path for
 * start-up, --check-config and every reload, so overrides survive reloads. Returns 0,
 * FUNNEL_ECONFIG (err names the file or the override) or FUNNEL_ENOMEM; cfg is only written
 * on success (clear or zero it beforehand). */
int funnel_config_read(const char *path, const funnel_engine_registry_t *registry,
                       const char *const *overrides, size_t n, funnel_config_t *cfg, char *err,
                       size_t err_len);

/* The section named name (a registry entry's `section`: "sla", "commission"), to be cast to
 * that engine's section struct; NULL when cfg's registry has no such section. */
void *funnel_config_section(const funnel_config_t *cfg, const char *name);

/* Sets one option from text, as a command-line override does ("batch_max", "500").
 * Returns 0 or FUNNEL_ECONFIG with err. */
int funnel_config_set(funnel_config_t *cfg, const char *name, const char *value, char *err,
                      size_t err_len);

/* Moves the reloadable options of fresh into cur; options that need a restart and differ are
 * left as they are and logged as warnings. Engine sections are moved whole (fresh keeps an
 * empty section; clear it as usual). Returns how many scalar options changed. */
int funnel_config_reload(funnel_config_t *cur, funnel_config_t *fresh, const funnel_log_t *log);

/* Writes the effective configuration in the file syntax, for --check-config. */
void funnel_config_print(const funnel_config_t *cfg, FILE *out);

/* One line of help per option: name, default, bounds, whether reloadable. */
void funnel_config_help(FILE *out);

#endif
