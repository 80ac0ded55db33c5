/* cfgtab.h — table-driven options for the adapters' libconfig files, so each adapter declares
 * its scalar options as rows (name, type, field, default, bounds) and shares the reading,
 * defaults and freeing. funneld's own config.c has the richer table (reload rules, help). */
#ifndef FUNNEL_CFGTAB_H
#define FUNNEL_CFGTAB_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "funnel/log.h"

typedef struct funnel_cfgtab_opt {
    const char *name;
    bool is_string;   /* a char * field (owned), else an int64_t field */
    size_t offset;    /* of the field in the adapter's config struct */
    const char *def;  /* default, as text */
    int64_t min, max; /* bounds of an integer */
} funnel_cfgtab_opt_t;

/* Writes every default into base (strings strdup'ed). 0 or FUNNEL_ENOMEM (base then holds
 * what was set; clear it). */
int funnel_cfgtab_defaults(const funnel_cfgtab_opt_t *opts, size_t n, void *base);

/* Frees every string field and NULLs it. */
void funnel_cfgtab_clear(const funnel_cfgtab_opt_t *opts, size_t n, void *base);

/* Reads one top-level setting when the table has its name. Returns 0 when read,
 * FUNNEL_ENOTFOUND when the name is not in the table, FUNNEL_ECONFIG with err ("line 3: port:
 * expected an integer in 0..65535") or FUNNEL_ENOMEM. */
int funnel_cfgtab_read(const funnel_cfgtab_opt_t *opts, size_t n, const config_setting_t *set,
                       void *base, char *err, size_t err_len);

/* The last resort of an adapter's setting reader: "log_level" sets *level; any other name is
 * an unknown option. Returns 0 or FUNNEL_ECONFIG with err. */
int funnel_cfgtab_read_rest(const config_setting_t *set, funnel_log_level_t *level, char *err,
                            size_t err_len);

/* The adapters' `key` and `server_key` options (CURVE: the adapter's .key, funneld's .pub or
 * .key; both or neither, "" is neither): 0 when funnel_client_set_curve will take them, else
 * its error with "key, server_key: " before the message (which names the file). Called at the
 * end of a config load, so a bad key file stops the adapter at start. */
int funnel_cfgtab_check_curve(const char *key, const char *server_key, char *err, size_t err_len);

/* Opens path and calls each(setting, arg) for every top-level setting, stopping at the first
 * non-zero return. Returns that, 0, or FUNNEL_ECONFIG with err for a syntax error. */
int funnel_cfgtab_load(const char *path, int (*each)(const config_setting_t *set, void *arg),
                       void *arg, char *err, size_t err_len);

/* One "--name VALUE" option of an adapter's command line: its value lands in *value. */
typedef struct funnel_cli_opt {
    const char *name; /* with the dashes: "--config" */
    const char **value;
} funnel_cli_opt_t;

/* Parses argv[1..] as "--name VALUE" pairs of opts (a later one wins). Returns 0, 1 for
 * --help (the caller prints its usage on stdout and exits 0), or -1 for an unknown option or
 * a missing value (usage on stderr, exit 2). Values point into argv. */
int funnel_cli_parse(int argc, char **argv, const funnel_cli_opt_t *opts, size_t n);

#endif
