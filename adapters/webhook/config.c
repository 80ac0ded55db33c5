/* config.c — funnel-webhook's configuration file (libconfig syntax), one table of options like
 * funneld's, plus the amoCRM status table. */
#include "webhook.h"

#include "funnel/cfgtab.h"
#include "funnel/error.h"

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(funnel_webhook_config_t, field)

static const funnel_cfgtab_opt_t options[] = {
    {"listen_addr", true, F(listen_addr), "127.0.0.1", 0, 0},
    {"port", false, F(port), "8090", 0, 65535},
    {"submit", true, F(submit), "tcp://127.0.0.1:7601", 0, 0},
    {"key", true, F(key), "", 0, 0},
    {"server_key", true, F(server_key), "", 0, 0},
    {"token", true, F(token), "", 0, 0},
    {"max_body_bytes", false, F(max_body_bytes), "1048576", 1024, 64 << 20},
    {"submit_timeout_ms", false, F(submit_timeout_ms), "2000", 10, 600000},
    {"submit_attempts", false, F(submit_attempts), "3", 1, 100},
    {"retry_after_s", false, F(retry_after_s), "5", 1, 3600},
    {"tolerance_s", false, F(tolerance_s), "300", 1, 86400},
    {"stripe_secret", true, F(stripe_secret), "", 0, 0},
    {"hubspot_secret", true, F(hubspot_secret), "", 0, 0},
    {"hubspot_base_url", true, F(hubspot_base_url), "", 0, 0},
    {"amocrm_token", true, F(amocrm_token), "", 0, 0},
    {"stripe_id_prefix", true, F(stripe_id_prefix), "", 0, 0},
    {"hubspot_id_prefix", true, F(hubspot_id_prefix), "", 0, 0},
    {"amocrm_id_prefix", true, F(amocrm_id_prefix), "", 0, 0},
    {"threads", false, F(threads), "4", 1, 64},
    {"max_connections", false, F(max_connections), "256", 1, 65536},
    {"max_per_ip", false, F(max_per_ip), "16", 1, 65536},
    {"connection_timeout_s", false, F(connection_timeout_s), "10", 1, 3600},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static const char *const amo_stage_names[] = {"mql", "sql", "won", "lost"};

int funnel_webhook_config_defaults(funnel_webhook_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (funnel_cfgtab_defaults(options, N_OPTIONS, cfg)) {
        funnel_webhook_config_clear(cfg);
        return FUNNEL_ENOMEM;
    }
    /* amoCRM's two fixed statuses of every pipeline: 142 "successfully realised", 143 "lost". */
    cfg->amo_statuses[0] = (funnel_amo_status_t){142, FUNNEL_AMO_WON};
    cfg->amo_statuses[1] = (funnel_amo_status_t){143, FUNNEL_AMO_LOST};
    cfg->n_amo_statuses = 2;
    cfg->log_level = FUNNEL_LOG_INFO;
    return 0;
}

void funnel_webhook_config_clear(funnel_webhook_config_t *cfg)
{
    funnel_cfgtab_clear(options, N_OPTIONS, cfg);
    memset(cfg, 0, sizeof *cfg);
}

/* Reads `amocrm_statuses = ( { id = 31337; stage = "sql"; }, ... );`, replacing the defaults. */
static int read_amo_statuses(const config_setting_t *list, funnel_webhook_config_t *cfg, char *err,
                             size_t err_len)
{
    int n = config_setting_length(list);
    if (!config_setting_is_list(list) || n > FUNNEL_WEBHOOK_MAX_AMO_STATUSES) {
        snprintf(err, err_len, "amocrm_statuses: a list of at most %d groups",
                 FUNNEL_WEBHOOK_MAX_AMO_STATUSES);
        return FUNNEL_ECONFIG;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        long long id;
        const char *stage = NULL;
        size_t s = 0;
        if (!config_setting_lookup_int64(g, "id", &id) ||
            !config_setting_lookup_string(g, "stage", &stage)) {
            snprintf(err, err_len, "amocrm_statuses[%d]: needs id and stage", i);
            return FUNNEL_ECONFIG;
        }
        while (s < 4 && strcmp(stage, amo_stage_names[s]))
            s++;
        if (s == 4) {
            snprintf(err, err_len, "amocrm_statuses[%d].stage: '%s' is not mql, sql, won or lost",
                     i, stage);
            return FUNNEL_ECONFIG;
        }
        cfg->amo_statuses[i] = (funnel_amo_status_t){id, (funnel_amo_stage_t)s};
    }
    cfg->n_amo_statuses = (size_t)n;
    return 0;
}

typedef struct load_ctx {
    funnel_webhook_config_t *cfg;
    char *err;
    size_t err_len;
} load_ctx_t;

/* One top-level setting: a table option, the status table or the log level. */
static int load_setting(const config_setting_t *set, void *arg)
{
    load_ctx_t *c = arg;
    const char *name = config_setting_name(set);
    int rc = funnel_cfgtab_read(options, N_OPTIONS, set, c->cfg, c->err, c->err_len);
    if (rc != FUNNEL_ENOTFOUND)
        return rc;
    if (!strcmp(name, "amocrm_statuses"))
        return read_amo_statuses(set, c->cfg, c->err, c->err_len);
    return funnel_cfgtab_read_rest(set, &c->cfg->log_level, c->err, c->err_len);
}

int funnel_webhook_config_load(const char *path, funnel_webhook_config_t *cfg, char *err,
                               size_t err_len)
{
    load_ctx_t c = {cfg, err, err_len};
    int rc = funnel_cfgtab_load(path, load_setting, &c, err, err_len);
    return rc ? rc : funnel_cfgtab_check_curve(cfg->key, cfg->server_key, err, err_len);
}
