/* cfgtab.c — see cfgtab.h. */
#include "funnel/cfgtab.h"
#include "funnel/client.h"
#include "funnel/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char **str_field(void *base, const funnel_cfgtab_opt_t *o)
{
    return (char **)((char *)base + o->offset);
}

static int64_t *int_field(void *base, const funnel_cfgtab_opt_t *o)
{
    return (int64_t *)((char *)base + o->offset);
}

int funnel_cfgtab_defaults(const funnel_cfgtab_opt_t *opts, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (!opts[i].is_string)
            *int_field(base, &opts[i]) = strtoll(opts[i].def, NULL, 10);
        else if (!(*str_field(base, &opts[i]) = strdup(opts[i].def)))
            return FUNNEL_ENOMEM;
    }
    return 0;
}

void funnel_cfgtab_clear(const funnel_cfgtab_opt_t *opts, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].is_string) {
            free(*str_field(base, &opts[i]));
            *str_field(base, &opts[i]) = NULL;
        }
}

int funnel_cfgtab_read(const funnel_cfgtab_opt_t *opts, size_t n, const config_setting_t *set,
                       void *base, char *err, size_t err_len)
{
    const char *name = config_setting_name(set);
    size_t k = 0;
    while (k < n && strcmp(name, opts[k].name))
        k++;
    if (k == n)
        return FUNNEL_ENOTFOUND;
    const funnel_cfgtab_opt_t *o = &opts[k];
    int line = config_setting_source_line(set);
    if (o->is_string) {
        const char *v = config_setting_get_string(set);
        if (!v) {
            snprintf(err, err_len, "line %d: %s: expected a string", line, o->name);
            return FUNNEL_ECONFIG;
        }
        char *copy = strdup(v);
        if (!copy)
            return FUNNEL_ENOMEM;
        free(*str_field(base, o));
        *str_field(base, o) = copy;
        return 0;
    }
    int t = config_setting_type(set);
    long long v = config_setting_get_int64(set);
    if ((t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) || v < o->min || v > o->max) {
        snprintf(err, err_len, "line %d: %s: expected an integer in %lld..%lld", line, o->name,
                 (long long)o->min, (long long)o->max);
        return FUNNEL_ECONFIG;
    }
    *int_field(base, o) = v;
    return 0;
}

int funnel_cfgtab_read_rest(const config_setting_t *set, funnel_log_level_t *level, char *err,
                            size_t err_len)
{
    const char *name = config_setting_name(set);
    if (strcmp(name, "log_level")) {
        snprintf(err, err_len, "line %d: unknown option '%s'", config_setting_source_line(set),
                 name);
        return FUNNEL_ECONFIG;
    }
    const char *v = config_setting_get_string(set);
    if (v && !funnel_log_level_parse(v, level))
        return 0;
    snprintf(err, err_len, "line %d: log_level: error, warn, info or debug",
             config_setting_source_line(set));
    return FUNNEL_ECONFIG;
}

int funnel_cfgtab_check_curve(const char *key, const char *server_key, char *err, size_t err_len)
{
    char why[480];
    int rc = funnel_client_curve_check(key, server_key, why, sizeof why);
    if (rc)
        snprintf(err, err_len, "key, server_key: %s", why);
    return rc;
}

int funnel_cfgtab_load(const char *path, int (*each)(const config_setting_t *set, void *arg),
                       void *arg, char *err, size_t err_len)
{
    config_t lc;
    config_init(&lc);
    int rc = 0;
    if (!config_read_file(&lc, path)) {
        snprintf(err, err_len, "%s:%d: %s", config_error_file(&lc) ? config_error_file(&lc) : path,
                 config_error_line(&lc), config_error_text(&lc));
        rc = FUNNEL_ECONFIG;
    }
    const config_setting_t *root = rc ? NULL : config_root_setting(&lc);
    for (int i = 0; root && !rc && i < config_setting_length(root); i++)
        rc = each(config_setting_get_elem(root, (unsigned)i), arg);
    config_destroy(&lc);
    return rc;
}

int funnel_cli_parse(int argc, char **argv, const funnel_cli_opt_t *opts, size_t n)
{
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--help"))
            return 1;
        size_t k = 0;
        while (k < n && strcmp(argv[i], opts[k].name) != 0)
            k++;
        if (k == n || i + 1 >= argc)
            return -1;
        *opts[k].value = argv[i + 1];
    }
    return 0;
}
