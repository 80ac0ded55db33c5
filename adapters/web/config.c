/* config.c — funnel-web's configuration file (libconfig syntax), one table of options like the
 * other adapters'. */
#include "web.h"

#include "funnel/cfgtab.h"
#include "funnel/error.h"

#include <string.h>

#define F(field) offsetof(funnel_web_config_t, field)

static const funnel_cfgtab_opt_t options[] = {
    {"listen_addr", true, F(listen_addr), "127.0.0.1", 0, 0},
    {"port", false, F(port), "8080", 0, 65535},
    {"database", true, F(database), "var/funneld.db", 0, 0},
    {"submit", true, F(submit), "tcp://127.0.0.1:7601", 0, 0},
    {"publish", true, F(publish), "tcp://127.0.0.1:7602", 0, 0},
    {"replay", true, F(replay), "tcp://127.0.0.1:7603", 0, 0},
    {"users", true, F(users), "var/funnel-web.users", 0, 0},
    {"funneld_config", true, F(funneld_config), "", 0, 0},
    {"key", true, F(key), "", 0, 0},
    {"server_key", true, F(server_key), "", 0, 0},
    {"secure_cookies", false, F(secure_cookies), "0", 0, 1},
    {"session_ttl_s", false, F(session_ttl_s), "43200", 60, 31 * 86400},
    {"max_connections", false, F(max_connections), "256", 4, 65536},
    {"readers", false, F(readers), "4", 1, 64},
    {"submit_timeout_ms", false, F(submit_timeout_ms), "2000", 10, 600000},
    {"stream_backlog", false, F(stream_backlog), "4096", 16, 1 << 20},
    {"warm_up", false, F(warm_up), "1", 0, 1},
    {"answers_cache", false, F(answers_cache), "1", 0, 1},
    {"answers_max_age_ms", false, F(answers_max_age_ms), "10000", 0, 3600000},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

int funnel_web_config_defaults(funnel_web_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = FUNNEL_LOG_INFO;
    if (funnel_cfgtab_defaults(options, N_OPTIONS, cfg)) {
        funnel_web_config_clear(cfg);
        return FUNNEL_ENOMEM;
    }
    return 0;
}

void funnel_web_config_clear(funnel_web_config_t *cfg)
{
    funnel_cfgtab_clear(options, N_OPTIONS, cfg);
    memset(cfg, 0, sizeof *cfg);
}

typedef struct load_ctx {
    funnel_web_config_t *cfg;
    char *err;
    size_t err_len;
} load_ctx_t;

static int load_setting(const config_setting_t *set, void *arg)
{
    load_ctx_t *c = arg;
    int rc = funnel_cfgtab_read(options, N_OPTIONS, set, c->cfg, c->err, c->err_len);
    if (rc != FUNNEL_ENOTFOUND)
        return rc;
    return funnel_cfgtab_read_rest(set, &c->cfg->log_level, c->err, c->err_len);
}

int funnel_web_config_load(const char *path, funnel_web_config_t *cfg, char *err, size_t err_len)
{
    load_ctx_t c = {cfg, err, err_len};
    int rc = funnel_cfgtab_load(path, load_setting, &c, err, err_len);
    return rc ? rc : funnel_cfgtab_check_curve(cfg->key, cfg->server_key, err, err_len);
}
