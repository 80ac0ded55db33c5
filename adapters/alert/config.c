/* config.c — funnel-alert's configuration file: scalar options from one table, plus the
 * prefixes, channels and routes lists. */
#include "alert.h"

#include "funnel/cfgtab.h"
#include "funnel/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(funnel_alert_config_t, field)

static const funnel_cfgtab_opt_t options[] = {
    {"publish", true, F(publish), "tcp://127.0.0.1:7602", 0, 0},
    {"replay", true, F(replay), "tcp://127.0.0.1:7603", 0, 0},
    {"key", true, F(key), "", 0, 0},
    {"server_key", true, F(server_key), "", 0, 0},
    {"cursor", true, F(cursor), "./var/funnel-alert.cursor", 0, 0},
    {"dead_letter", true, F(dead_letter), "./var/funnel-alert.dead.jsonl", 0, 0},
    {"max_attempts", false, F(max_attempts), "8", 1, 1000},
    {"backoff_ms", false, F(backoff_ms), "500", 1, 3600000},
    {"backoff_max_ms", false, F(backoff_max_ms), "60000", 1, 86400000},
    {"http_timeout_ms", false, F(http_timeout_ms), "10000", 10, 600000},
    {"metrics", true, F(metrics), "off", 0, 0},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static const funnel_cfgtab_opt_t channel_options[] = {
    {"name", true, offsetof(funnel_alert_channel_t, name), "", 0, 0},
    {"url", true, offsetof(funnel_alert_channel_t, url), "", 0, 0},
    {"bot_token", true, offsetof(funnel_alert_channel_t, bot_token), "", 0, 0},
};
#define N_CHANNEL_OPTIONS (sizeof channel_options / sizeof channel_options[0])

static const funnel_cfgtab_opt_t route_options[] = {
    {"target", true, offsetof(funnel_alert_route_t, target), "*", 0, 0},
    {"channel", true, offsetof(funnel_alert_route_t, channel), "", 0, 0},
    {"chat_id", true, offsetof(funnel_alert_route_t, chat_id), "", 0, 0},
};
#define N_ROUTE_OPTIONS (sizeof route_options / sizeof route_options[0])

static const char *const kind_names[] = {"slack", "telegram", "webhook"};

static void clear_lists(funnel_alert_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_prefixes; i++)
        free(cfg->prefixes[i]);
    for (size_t i = 0; i < cfg->n_channels; i++)
        funnel_cfgtab_clear(channel_options, N_CHANNEL_OPTIONS, &cfg->channels[i]);
    for (size_t i = 0; i < cfg->n_routes; i++)
        funnel_cfgtab_clear(route_options, N_ROUTE_OPTIONS, &cfg->routes[i]);
    cfg->n_prefixes = cfg->n_channels = cfg->n_routes = 0;
}

void funnel_alert_config_clear(funnel_alert_config_t *cfg)
{
    funnel_cfgtab_clear(options, N_OPTIONS, cfg);
    clear_lists(cfg);
    memset(cfg, 0, sizeof *cfg);
}

int funnel_alert_config_defaults(funnel_alert_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = FUNNEL_LOG_INFO;
    if (funnel_cfgtab_defaults(options, N_OPTIONS, cfg) || !(cfg->prefixes[0] = strdup("sla."))) {
        funnel_alert_config_clear(cfg);
        return FUNNEL_ENOMEM;
    }
    cfg->n_prefixes = 1;
    return 0;
}

typedef struct load_ctx {
    funnel_alert_config_t *cfg;
    char *err;
    size_t err_len;
} load_ctx_t;

/* Reads one group of a list into item through its table; "type" of a channel is an enum. */
static int read_group(const config_setting_t *g, const funnel_cfgtab_opt_t *opts, size_t n,
                      void *item, funnel_channel_kind_t *kind, load_ctx_t *c)
{
    int rc = funnel_cfgtab_defaults(opts, n, item);
    for (int i = 0; !rc && i < config_setting_length(g); i++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        rc = funnel_cfgtab_read(opts, n, m, item, c->err, c->err_len);
        if (rc == FUNNEL_ENOTFOUND && kind && !strcmp(config_setting_name(m), "type")) {
            const char *v = config_setting_get_string(m);
            size_t k = 0;
            while (v && k < 3 && strcmp(v, kind_names[k]))
                k++;
            *kind = (funnel_channel_kind_t)k;
            rc = k < 3 ? 0 : FUNNEL_ECONFIG;
            if (rc)
                snprintf(c->err, c->err_len, "line %d: type: slack, telegram or webhook",
                         config_setting_source_line(m));
        } else if (rc == FUNNEL_ENOTFOUND) {
            snprintf(c->err, c->err_len, "line %d: unknown option '%s'",
                     config_setting_source_line(m), config_setting_name(m));
            rc = FUNNEL_ECONFIG;
        }
    }
    return rc;
}

/* prefixes = ["sla.", ...]; channels = ( {...}, ... ); routes = ( {...}, ... ). */
static int read_list(const config_setting_t *set, load_ctx_t *c)
{
    funnel_alert_config_t *cfg = c->cfg;
    const char *name = config_setting_name(set);
    int n = config_setting_length(set), rc = 0;
    bool prefixes = !strcmp(name, "prefixes"), channels = !strcmp(name, "channels");
    size_t max = prefixes   ? FUNNEL_ALERT_MAX_PREFIXES
                 : channels ? FUNNEL_ALERT_MAX_CHANNELS
                            : FUNNEL_ALERT_MAX_ROUTES;
    if ((!config_setting_is_array(set) && !config_setting_is_list(set)) || (size_t)n > max) {
        snprintf(c->err, c->err_len, "line %d: %s: a list of at most %zu",
                 config_setting_source_line(set), name, max);
        return FUNNEL_ECONFIG;
    }
    for (int i = 0; !rc && i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(set, (unsigned)i);
        if (prefixes) {
            const char *v = config_setting_get_string(e);
            rc = v ? ((cfg->prefixes[cfg->n_prefixes] = strdup(v)) ? 0 : FUNNEL_ENOMEM)
                   : FUNNEL_ECONFIG;
            cfg->n_prefixes += !rc;
            if (rc == FUNNEL_ECONFIG)
                snprintf(c->err, c->err_len, "prefixes: strings expected");
        } else if (channels) {
            funnel_alert_channel_t *ch = &cfg->channels[cfg->n_channels++];
            rc = read_group(e, channel_options, N_CHANNEL_OPTIONS, ch, &ch->kind, c);
        } else {
            rc = read_group(e, route_options, N_ROUTE_OPTIONS, &cfg->routes[cfg->n_routes++], NULL,
                            c);
        }
    }
    return rc;
}

static int load_setting(const config_setting_t *set, void *arg)
{
    load_ctx_t *c = arg;
    const char *name = config_setting_name(set);
    int rc = funnel_cfgtab_read(options, N_OPTIONS, set, c->cfg, c->err, c->err_len);
    if (rc != FUNNEL_ENOTFOUND)
        return rc;
    if (!strcmp(name, "prefixes") || !strcmp(name, "channels") || !strcmp(name, "routes")) {
        /* A list in the file replaces the default one. */
        if (!strcmp(name, "prefixes")) {
            for (size_t i = 0; i < c->cfg->n_prefixes; i++)
                free(c->cfg->prefixes[i]);
            c->cfg->n_prefixes = 0;
        }
        return read_list(set, c);
    }
    return funnel_cfgtab_read_rest(set, &c->cfg->log_level, c->err, c->err_len);
}

/* Every route must name a configured channel; a Telegram route needs its chat. */
static int check_routes(const funnel_alert_config_t *cfg, char *err, size_t err_len)
{
    for (size_t r = 0; r < cfg->n_routes; r++) {
        size_t k = 0;
        while (k < cfg->n_channels && strcmp(cfg->channels[k].name, cfg->routes[r].channel))
            k++;
        if (k == cfg->n_channels) {
            snprintf(err, err_len, "routes[%zu]: no channel named '%s'", r, cfg->routes[r].channel);
            return FUNNEL_ECONFIG;
        }
        if (cfg->channels[k].kind == FUNNEL_CHANNEL_TELEGRAM && !cfg->routes[r].chat_id[0]) {
            snprintf(err, err_len, "routes[%zu]: a telegram route needs chat_id", r);
            return FUNNEL_ECONFIG;
        }
    }
    return 0;
}

int funnel_alert_config_load(const char *path, funnel_alert_config_t *cfg, char *err,
                             size_t err_len)
{
    load_ctx_t c = {cfg, err, err_len};
    int rc = funnel_cfgtab_load(path, load_setting, &c, err, err_len);
    if (!rc)
        rc = funnel_cfgtab_check_curve(cfg->key, cfg->server_key, err, err_len);
    return rc ? rc : check_routes(cfg, err, err_len);
}
