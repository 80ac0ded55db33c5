/* funnelctl.h — shared state of the funnelctl commands.
 *
 * main.c parses every option into one fctl_t (one getopt table for all commands, so a command
 * is a function plus a table row) and dispatches on the command word. Commands return an exit
 * code: FCTL_OK, FCTL_REFUSED, FCTL_USAGE or FCTL_UNREACHABLE. */
#ifndef FUNNELCTL_H
#define FUNNELCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "funnel/client.h"
#include "funnel/codec.h"
#include "config.h"
#include "store.h"

enum {
    FCTL_OK = 0,          /* done; for publish: ok or duplicate */
    FCTL_REFUSED = 1,     /* funneld refused the event, or the command failed */
    FCTL_USAGE = 2,       /* bad command line */
    FCTL_UNREACHABLE = 3, /* funneld did not answer in time */
};

typedef struct fctl {
    funnel_config_t cfg;     /* endpoints and database, from --config and overrides */
    int timeout_ms;          /* per request to funneld */
    int64_t limit;           /* --limit: rows at most (0: command default) */
    uint64_t from_seq;       /* --from-seq */
    int64_t count;           /* --count: stop after this many messages (0: never) */
    int idle_ms;             /* --idle-timeout-ms: stop after this long without a message */
    const char *source;      /* --source for publish */
    bool json;               /* --json */
    bool csv;                /* --csv */
    const char *rep;         /* --rep for payout and statement */
    const char *through;     /* --through DATE for payout (UTC, inclusive) */
    const char *period;      /* --period YYYY-MM or YYYY-MM-DD for statement (UTC) */
    const char *by;          /* --by campaign|source|medium|channel for attribution */
    const char *model;       /* --model M for attribution */
    bool all_models;         /* --all-models for attribution: every model side by side */
    const char *from;        /* --from DATE for attribution (UTC, inclusive) */
    const char *to;          /* --to DATE for attribution (UTC, inclusive) */
    const char *state;       /* --state open|breached|met for sla list */
    const char *policy;      /* --policy P for sla next */
    const char *queue;       /* --queue Q for sla next */
    bool week;               /* --week for sla compliance: a row per owner or policy per week */
    const char *config_path; /* --config: funneld's file (quota reads the minimums there) */

    /* CURVE: --key or $FUNNEL_KEY, our .key; --server-key or $FUNNEL_SERVER_KEY, funneld's
     * .pub or .key. NULL (or empty): no CURVE. */
    const char *key, *server_key;

    char **args; /* positional arguments after the command word */
    int n_args;
} fctl_t;

/* Opens the configured database read-only; prints the reason and returns NULL on failure. */
funnel_store_t *fctl_store_open(const fctl_t *ctl);

/* Current time in Unix milliseconds. */
int64_t fctl_now_ms(void);

/* Prints doc (dumped with flags) and a newline, and releases it. Returns 0, or FUNNEL_ENOMEM
 * when doc is NULL or cannot be dumped: nothing printed then. */
int fctl_print_json(json_t *doc, size_t flags);

int fctl_cmd_publish(fctl_t *ctl);
int fctl_cmd_keygen(fctl_t *ctl);
int fctl_cmd_tail(fctl_t *ctl);
int fctl_cmd_events(fctl_t *ctl);
int fctl_cmd_rejected(fctl_t *ctl);
int fctl_cmd_payout(fctl_t *ctl);
int fctl_cmd_statement(fctl_t *ctl);
int fctl_cmd_ledger(fctl_t *ctl);
int fctl_cmd_attribution(fctl_t *ctl);
int fctl_cmd_sla(fctl_t *ctl);
int fctl_cmd_funnel(fctl_t *ctl);
int fctl_cmd_quota(fctl_t *ctl);
/* `sla compliance`, run by fctl_cmd_sla. */
int fctl_sla_compliance(fctl_t *ctl);

/* A client for talking to funneld, with CURVE when --key and --server-key (or their variables)
 * are given. Returns FCTL_OK with *out, or prints why and returns FCTL_USAGE (a key file
 * missing or bad, one of the two without the other) or FCTL_REFUSED (out of memory). */
int fctl_client_new(const fctl_t *ctl, funnel_client_t **out);

/* Submits env under topic to funneld and prints its answer ("ok ID", "duplicate ID",
 * "rejected ID: why"). Returns FCTL_OK, FCTL_REFUSED or FCTL_UNREACHABLE. */
int fctl_submit(const fctl_t *ctl, const char *topic, const funnel_envelope_t *env);

#endif
