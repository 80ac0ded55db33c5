/* config.c — the option table and the libconfig reader.
 *
 * Every option lives in one table row: adding an option is a struct field plus a row, and
 * defaults, bounds checks, --help text, --check-config output and reload rules follow. */
#include "config.h"
#include "engine.h"
#include "funnel/error.h"

#include <errno.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type {
    OPT_STRING,
    OPT_INT,
    OPT_LOG_LEVEL,
    OPT_SYNC,
    OPT_STRLIST,
    OPT_BOOL
} opt_type_t;

typedef struct opt {
    const char *name;
    opt_type_t type;
    size_t offset;    /* of the field in funnel_config_t */
    const char *def;  /* default, as text; NULL: unset (the security section's files) */
    int64_t min, max; /* bounds for OPT_INT */
    bool reloadable;  /* SIGHUP may change it */
    const char *help;
} opt_t;

#define F(field)        offsetof(funnel_config_t, field)
#define SECURITY        "security"
#define SECURITY_PREFIX SECURITY "."

static const opt_t options[] = {
    {"database", OPT_STRING, F(database), "./var/funneld.db", 0, 0, false,
     "SQLite database file (created if missing)"},
    {"ingest", OPT_STRING, F(ingest), "tcp://127.0.0.1:7600", 0, 0, false,
     "SUB endpoint funneld binds; publishers' PUB sockets connect to it"},
    {"submit", OPT_STRING, F(submit), "tcp://127.0.0.1:7601", 0, 0, false,
     "ROUTER endpoint for acknowledged ingest"},
    {"publish", OPT_STRING, F(publish), "tcp://127.0.0.1:7602", 0, 0, false,
     "PUB endpoint of the output stream"},
    {"replay", OPT_STRING, F(replay), "tcp://127.0.0.1:7603", 0, 0, false,
     "ROUTER endpoint answering replay requests"},
    {"connect", OPT_STRLIST, F(connect), "", 0, 0, false,
     "publisher endpoints the SUB socket also connects out to"},
    {"max_message_bytes", OPT_INT, F(max_message_bytes), "65536", 64, 16 << 20, true,
     "larger ingest messages are refused"},
    {"batch_max", OPT_INT, F(batch_max), "1000", 1, 100000, true,
     "events committed in one transaction at most"},
    {"batch_delay_ms", OPT_INT, F(batch_delay_ms), "0", 0, 1000, true,
     "wait for more events before a commit; 0 commits what one loop pass read"},
    {"retention_days", OPT_INT, F(retention_days), "30", 1, 3650, true,
     "days output messages stay available for replay"},
    {"max_future_ms", OPT_INT, F(max_future_ms), "86400000", 0, 31LL * 86400000, true,
     "how far ahead of the clock occurred_at_ms may be"},
    {"publish_hwm", OPT_INT, F(publish_hwm), "100000", 100, 10000000, false,
     "messages queued per slow subscriber before it starts losing them"},
    {"disk_full_buffer_bytes", OPT_INT, F(disk_full_buffer_bytes), "67108864", 0, 1LL << 40, true,
     "SUB input kept in memory while the disk is full, committed when space returns; beyond it "
     "is lost"},
    {"dead_letter_max_rows", OPT_INT, F(dead_letter_max_rows), "50000", 1, 1000000000, true,
     "dead letters kept at most; beyond, the oldest are deleted"},
    {"dead_letter_max_bytes", OPT_INT, F(dead_letter_max_bytes), "16777216", 4096, 1LL << 40, true,
     "payload and text bytes of the dead letters at most; beyond, the oldest are deleted"},
    {"refusal_log_per_minute", OPT_INT, F(refusal_log_per_minute), "20", 0, 1000000, true,
     "refusal log lines per reason a minute; the rest are counted in one summary line"},
    {"refusal_budget_per_peer", OPT_INT, F(refusal_budget_per_peer), "100", 1, 1000000, true,
     "refusals of one submit peer dead-lettered a minute; beyond, they are answered and counted "
     "only"},
    {"log_level", OPT_LOG_LEVEL, F(log_level), "info", 0, 0, true, "error, warn, info or debug"},
    {"sync", OPT_SYNC, F(sync), "normal", 0, 0, false,
     "normal (survives crashes) or full (also survives power loss, slower)"},
    {"quick_check", OPT_INT, F(quick_check), "1", 0, 2, false,
     "PRAGMA quick_check at start refuses a damaged file: 1 after a stop that was not clean "
     "(a crash), 2 at every start (reads the whole file), 0 never"},
    {"metrics", OPT_STRING, F(metrics), "off", 0, 0, false,
     "address:port of the Prometheus endpoint (/metrics, /healthz), or off"},
    {"engines", OPT_STRING, F(engines), "ledger,attribution,sla", 0, 0, false,
     "comma-separated engines to run (ledger, attribution, sla), or none"},
    {"sql_profile", OPT_STRING, F(sql_profile), "off", 0, 0, false,
     "file the writer appends a statement profile to once a second (time, steps, pages and "
     "WAL pages per statement; see README), or off"},
    {"allow_insecure", OPT_BOOL, F(allow_insecure), "false", 0, 0, false,
     "true lets endpoints bind non-loopback addresses without security (a warning at every "
     "start)"},
    /* The members of the `security` group: both or neither (security_read). */
    {SECURITY_PREFIX "server_key", OPT_STRING, F(server_key), NULL, 0, 0, false,
     "the server's key file (.key, mode 0600); turns CURVE on for every socket"},
    {SECURITY_PREFIX "clients", OPT_STRING, F(clients), NULL, 0, 0, false,
     "the clients file: keys, names, publish patterns, subscribe prefixes (reloaded on SIGHUP)"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* Engine sections: a libconfig group (`sla { ... };`) owned by one engine of cfg->registry.
 * A section is always reloadable (engines read it per event) and is replaced whole on SIGHUP. */
static size_t registry_size(const funnel_engine_registry_t *reg)
{
    return reg ? reg->n : 0;
}

/* The registry entry owning the section called name, with its index; NULL when none. */
static const funnel_engine_def_t *section_find(const funnel_engine_registry_t *reg,
                                               const char *name, size_t *index)
{
    for (size_t i = 0; i < registry_size(reg); i++) {
        if (reg->defs[i].section && strcmp(reg->defs[i].section, name) == 0) {
            *index = i;
            return &reg->defs[i];
        }
    }
    return NULL;
}

void *funnel_config_section(const funnel_config_t *cfg, const char *name)
{
    size_t i;
    return section_find(cfg->registry, name, &i) ? cfg->sections[i] : NULL;
}

/* "commission, attribution, sla": the section names, for error messages. */
static void section_names(const funnel_engine_registry_t *reg, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < registry_size(reg) && used < len; i++)
        if (reg->defs[i].section)
            used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "",
                                     reg->defs[i].section);
}

static const opt_t *opt_find(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static void *field(funnel_config_t *cfg, const opt_t *o)
{
    return (char *)cfg + o->offset;
}

static const void *cfield(const funnel_config_t *cfg, const opt_t *o)
{
    return (const char *)cfg + o->offset;
}

static void strlist_clear(funnel_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_connect; i++) {
        free(cfg->connect[i]);
        cfg->connect[i] = NULL;
    }
    cfg->n_connect = 0;
}

/* Appends one element to a string-list option; comma-separated text adds several. */
static int strlist_add(funnel_config_t *cfg, const char *value, char *err, size_t err_len)
{
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n) {
            if (cfg->n_connect == FUNNEL_CONFIG_MAX_CONNECT) {
                snprintf(err, err_len, "connect: at most %d endpoints", FUNNEL_CONFIG_MAX_CONNECT);
                return FUNNEL_ECONFIG;
            }
            if (!(cfg->connect[cfg->n_connect] = strndup(p, n)))
                return FUNNEL_ENOMEM;
            cfg->n_connect++;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

static int set_int(funnel_config_t *cfg, const opt_t *o, const char *value, char *err,
                   size_t err_len)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end) {
        snprintf(err, err_len, "%s: '%s' is not an integer", o->name, value);
        return FUNNEL_ECONFIG;
    }
    if (v < o->min || v > o->max) {
        snprintf(err, err_len, "%s: %lld is outside %lld..%lld", o->name, v, (long long)o->min,
                 (long long)o->max);
        return FUNNEL_ECONFIG;
    }
    *(int64_t *)field(cfg, o) = v;
    return 0;
}

/* Sets one option from text: the single path for defaults, files and the command line. */
static int opt_set(funnel_config_t *cfg, const opt_t *o, const char *value, char *err,
                   size_t err_len)
{
    switch (o->type) {
    case OPT_STRING: {
        if (!*value) {
            snprintf(err, err_len, "%s: must not be empty", o->name);
            return FUNNEL_ECONFIG;
        }
        char *copy = strdup(value);
        if (!copy)
            return FUNNEL_ENOMEM;
        char **slot = field(cfg, o);
        free(*slot);
        *slot = copy;
        return 0;
    }
    case OPT_INT:
        return set_int(cfg, o, value, err, err_len);
    case OPT_LOG_LEVEL:
        if (funnel_log_level_parse(value, field(cfg, o))) {
            snprintf(err, err_len, "%s: '%s' is not error, warn, info or debug", o->name, value);
            return FUNNEL_ECONFIG;
        }
        return 0;
    case OPT_SYNC:
        if (strcmp(value, "normal") && strcmp(value, "full")) {
            snprintf(err, err_len, "%s: '%s' is not normal or full", o->name, value);
            return FUNNEL_ECONFIG;
        }
        *(funnel_store_sync_t *)field(cfg, o) =
            value[0] == 'f' ? FUNNEL_STORE_SYNC_FULL : FUNNEL_STORE_SYNC_NORMAL;
        return 0;
    case OPT_BOOL:
        if (strcmp(value, "true") && strcmp(value, "false")) {
            snprintf(err, err_len, "%s: '%s' is not true or false", o->name, value);
            return FUNNEL_ECONFIG;
        }
        *(bool *)field(cfg, o) = value[0] == 't';
        return 0;
    case OPT_STRLIST: {
        /* Built aside so a refused list (too many endpoints) leaves the old one in place. */
        funnel_config_t list = {0};
        int rc = strlist_add(&list, value, err, err_len);
        if (rc) {
            strlist_clear(&list);
            return rc;
        }
        strlist_clear(cfg);
        memcpy(cfg->connect, list.connect, sizeof list.connect);
        cfg->n_connect = list.n_connect;
        return 0;
    }
    }
    return FUNNEL_ECONFIG;
}

/* Allocates and fills the default section of every registry entry that has one. */
static int sections_defaults(funnel_config_t *cfg)
{
    if (registry_size(cfg->registry) > FUNNEL_CONFIG_MAX_SECTIONS)
        return FUNNEL_EINVAL;
    for (size_t i = 0; i < registry_size(cfg->registry); i++) {
        const funnel_engine_def_t *def = &cfg->registry->defs[i];
        if (!def->section)
            continue;
        if (!(cfg->sections[i] = calloc(1, def->section_size)))
            return FUNNEL_ENOMEM;
        int rc = def->section_defaults(cfg->sections[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int funnel_config_defaults(funnel_config_t *cfg, const funnel_engine_registry_t *registry)
{
    char err[128];
    memset(cfg, 0, sizeof *cfg);
    cfg->registry = registry;
    int rc = sections_defaults(cfg);
    if (rc) {
        funnel_config_clear(cfg);
        return rc;
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].type == OPT_STRLIST || !options[i].def)
            continue;
        int rc = opt_set(cfg, &options[i], options[i].def, err, sizeof err);
        if (rc) {
            funnel_config_clear(cfg);
            return rc == FUNNEL_ENOMEM ? rc : FUNNEL_ECONFIG;
        }
    }
    return 0;
}

void funnel_config_clear(funnel_config_t *cfg)
{
    for (size_t i = 0; i < registry_size(cfg->registry); i++) {
        if (cfg->sections[i]) {
            cfg->registry->defs[i].section_clear(cfg->sections[i]);
            free(cfg->sections[i]);
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_STRING)
            free(*(char **)field(cfg, &options[i]));
    strlist_clear(cfg);
    memset(cfg, 0, sizeof *cfg);
}

int funnel_config_set(funnel_config_t *cfg, const char *name, const char *value, char *err,
                      size_t err_len)
{
    const opt_t *o = opt_find(name);
    if (!o) {
        snprintf(err, err_len, "unknown option '%s'", name);
        return FUNNEL_ECONFIG;
    }
    return opt_set(cfg, o, value, err, err_len);
}

/* Converts one libconfig setting to the option's text form and sets it. */
static int setting_apply(funnel_config_t *cfg, const opt_t *o, config_setting_t *s, char *err,
                         size_t err_len)
{
    int type = config_setting_type(s);
    char num[32];
    if (o->type == OPT_INT) {
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
            goto wrong;
        snprintf(num, sizeof num, "%lld", config_setting_get_int64(s));
        return opt_set(cfg, o, num, err, err_len);
    }
    if (o->type == OPT_BOOL) {
        if (type != CONFIG_TYPE_BOOL)
            goto wrong;
        return opt_set(cfg, o, config_setting_get_bool(s) ? "true" : "false", err, err_len);
    }
    if (o->type == OPT_STRLIST) {
        if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY)
            goto wrong;
        strlist_clear(cfg);
        for (int i = 0; i < config_setting_length(s); i++) {
            const char *v = config_setting_get_string_elem(s, i);
            if (!v)
                goto wrong;
            int rc = strlist_add(cfg, v, err, err_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (type != CONFIG_TYPE_STRING)
        goto wrong;
    return opt_set(cfg, o, config_setting_get_string(s), err, err_len);
wrong:
    snprintf(err, err_len, "%s: expected %s", o->name,
             o->type == OPT_INT       ? "an integer"
             : o->type == OPT_STRLIST ? "a list of strings"
             : o->type == OPT_BOOL    ? "true or false"
                                      : "a string");
    return FUNNEL_ECONFIG;
}

/* The `security` group: server_key and clients, both of them and nothing else, since one
 * without the other cannot run (no clients: nobody is admitted; no key: no CURVE). */
static int security_read(config_setting_t *g, const char *path, funnel_config_t *tmp, char *err,
                         size_t err_len)
{
    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        snprintf(err, err_len,
                 "%s:%d: security: expected a group { server_key = ...; clients = "
                 "...; }",
                 path, config_setting_source_line(g));
        return FUNNEL_ECONFIG;
    }
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char name[64], why[256];
        snprintf(name, sizeof name, SECURITY_PREFIX "%s", config_setting_name(s));
        const opt_t *o = opt_find(name);
        int rc = o ? setting_apply(tmp, o, s, why, sizeof why) : FUNNEL_ECONFIG;
        if (!o)
            snprintf(why, sizeof why, "unknown option '%s' (server_key, clients)", name);
        if (rc) {
            snprintf(err, err_len, "%s:%d: %s", path, config_setting_source_line(s), why);
            return rc;
        }
    }
    if (!tmp->server_key || !tmp->clients) {
        snprintf(err, err_len, "%s:%d: security: needs both server_key and clients", path,
                 config_setting_source_line(g));
        return FUNNEL_ECONFIG;
    }
    return 0;
}

/* Reads every root setting of lc over the defaults into tmp; path names the file in errors. */
static int settings_apply(config_t *lc, const char *path, funnel_config_t *tmp, char *err,
                          size_t err_len)
{
    config_setting_t *root = config_root_setting(lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        if (strcmp(config_setting_name(s), SECURITY) == 0) {
            int rc = security_read(s, path, tmp, err, err_len);
            if (rc)
                return rc;
            continue;
        }
        const opt_t *o = opt_find(config_setting_name(s));
        size_t k;
        const funnel_engine_def_t *sec =
            o ? NULL : section_find(tmp->registry, config_setting_name(s), &k);
        char why[256];
        int rc;
        if (sec) {
            if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
                snprintf(err, err_len, "%s:%d: %s: expected a group { ... }", path,
                         config_setting_source_line(s), sec->section);
                return FUNNEL_ECONFIG;
            }
            if ((rc = sec->section_parse(s, tmp->sections[k], why, sizeof why))) {
                snprintf(err, err_len, "%s: %s: %s", path, sec->section, why);
                return rc;
            }
            continue;
        }
        /* Without engines every group is some engine's section, not this reader's business. */
        if (!o && !tmp->registry && config_setting_type(s) == CONFIG_TYPE_GROUP)
            continue;
        if (!o) {
            snprintf(err, err_len, "%s:%d: unknown option '%s'", path,
                     config_setting_source_line(s), config_setting_name(s));
            return FUNNEL_ECONFIG;
        }
        if ((rc = setting_apply(tmp, o, s, why, sizeof why))) {
            snprintf(err, err_len, "%s:%d: %s", path, config_setting_source_line(s), why);
            return rc;
        }
    }
    return 0;
}

/* Adds a deep copy of src to parent under name (NULL inside lists and arrays). */
static int setting_copy(config_setting_t *parent, const char *name, const config_setting_t *src)
{
    int type = config_setting_type(src);
    config_setting_t *d = config_setting_add(parent, name, type);
    if (!d)
        return FUNNEL_ECONFIG;
    switch (type) {
    case CONFIG_TYPE_INT:
        return config_setting_set_int(d, config_setting_get_int(src)) ? 0 : FUNNEL_ECONFIG;
    case CONFIG_TYPE_INT64:
        return config_setting_set_int64(d, config_setting_get_int64(src)) ? 0 : FUNNEL_ECONFIG;
    case CONFIG_TYPE_FLOAT:
        return config_setting_set_float(d, config_setting_get_float(src)) ? 0 : FUNNEL_ECONFIG;
    case CONFIG_TYPE_BOOL:
        return config_setting_set_bool(d, config_setting_get_bool(src)) ? 0 : FUNNEL_ECONFIG;
    case CONFIG_TYPE_STRING:
        return config_setting_set_string(d, config_setting_get_string(src)) ? 0 : FUNNEL_ECONFIG;
    default: /* group, list, array */
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            int rc = setting_copy(d, type == CONFIG_TYPE_GROUP ? config_setting_name(e) : NULL, e);
            if (rc)
                return rc;
        }
        return 0;
    }
}

/* Puts value under the dotted path in lc, replacing what the file had there. The value is read
 * as libconfig text (14, "x", [1, 2], { ... }); text that does not parse is a plain string, so
 * `--set attribution.models=linear` needs no quotes. */
static int setting_put(config_t *lc, char *path, const char *value)
{
    config_setting_t *parent = config_root_setting(lc);
    char *name = path, *dot;
    while ((dot = strchr(name, '.'))) {
        *dot = '\0';
        config_setting_t *g = config_setting_get_member(parent, name);
        if (!g)
            g = config_setting_add(parent, name, CONFIG_TYPE_GROUP);
        if (!g || config_setting_type(g) != CONFIG_TYPE_GROUP)
            return FUNNEL_ECONFIG;
        parent = g;
        name = dot + 1;
    }
    if (config_setting_get_member(parent, name))
        config_setting_remove(parent, name);
    config_t v;
    config_init(&v);
    char *text = NULL;
    int rc = FUNNEL_ENOMEM;
    if (asprintf(&text, "v = %s;", value) >= 0) {
        const config_setting_t *parsed =
            config_read_string(&v, text) == CONFIG_TRUE ? config_lookup(&v, "v") : NULL;
        if (parsed) {
            rc = setting_copy(parent, name, parsed);
        } else {
            config_setting_t *s = config_setting_add(parent, name, CONFIG_TYPE_STRING);
            rc = s && config_setting_set_string(s, value) ? 0 : FUNNEL_ECONFIG;
        }
    }
    free(text);
    config_destroy(&v);
    return rc;
}

/* Splits one override "name=value"; false when it has no '=' or the name is too long. */
static bool override_split(const char *kv, char *name, size_t name_len, const char **value)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || (size_t)(eq - kv) >= name_len)
        return false;
    snprintf(name, name_len, "%.*s", (int)(eq - kv), kv);
    *value = eq + 1;
    return true;
}

/* Engine-section overrides ("attribution.half_life_days=14") go into the parsed file, so the
 * section's own parser checks them together with the rest of the section. */
static int overrides_put(config_t *lc, const funnel_engine_registry_t *reg,
                         const char *const *overrides, size_t n, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        char name[128];
        const char *value;
        if (!override_split(overrides[i], name, sizeof name, &value)) {
            snprintf(err, err_len, "override '%s' is not NAME=VALUE", overrides[i]);
            return FUNNEL_ECONFIG;
        }
        size_t head = strcspn(name, ".");
        if (!name[head])
            continue; /* a plain option: set after the file is read */
        name[head] = '\0';
        size_t k;
        if (strcmp(name, SECURITY) && !section_find(reg, name, &k)) {
            char known[128];
            section_names(reg, known, sizeof known);
            snprintf(err, err_len, "override '%s': no section '%s' (%s)", overrides[i], name,
                     known);
            return FUNNEL_ECONFIG;
        }
        name[head] = '.';
        int rc = setting_put(lc, name, value);
        if (rc) {
            snprintf(err, err_len, "override '%s': cannot be set", overrides[i]);
            return rc;
        }
    }
    return 0;
}

static int overrides_set(funnel_config_t *cfg, const char *const *overrides, size_t n, char *err,
                         size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        char name[128];
        const char *value = NULL;
        override_split(overrides[i], name, sizeof name, &value); /* checked by overrides_put */
        if (strchr(name, '.'))
            continue;
        int rc = funnel_config_set(cfg, name, value, err, err_len);
        if (rc)
            return rc;
    }
    return 0;
}

int funnel_config_read(const char *path, const funnel_engine_registry_t *registry,
                       const char *const *overrides, size_t n, funnel_config_t *cfg, char *err,
                       size_t err_len)
{
    config_t lc;
    funnel_config_t tmp;
    int rc = funnel_config_defaults(&tmp, registry);
    if (rc)
        return rc;
    config_init(&lc);
    errno = 0; /* libconfig refuses a directory without an errno of its own */
    if (path && config_read_file(&lc, path) != CONFIG_TRUE) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            snprintf(err, err_len, "%s: cannot read: %s", path,
                     errno ? strerror(errno) : "not a regular file");
        else
            snprintf(err, err_len, "%s:%d: %s", path, config_error_line(&lc),
                     config_error_text(&lc));
        rc = FUNNEL_ECONFIG;
        goto out;
    }
    if ((rc = overrides_put(&lc, registry, overrides, n, err, err_len)) ||
        (rc = settings_apply(&lc, path ? path : "--set", &tmp, err, err_len)) ||
        (rc = overrides_set(&tmp, overrides, n, err, err_len)))
        goto out;
    funnel_config_clear(cfg);
    *cfg = tmp;
    memset(&tmp, 0, sizeof tmp);
out:
    funnel_config_clear(&tmp);
    config_destroy(&lc);
    return rc;
}

int funnel_config_load(const char *path, const funnel_engine_registry_t *registry,
                       funnel_config_t *cfg, char *err, size_t err_len)
{
    return funnel_config_read(path, registry, NULL, 0, cfg, err, err_len);
}

static bool opt_equal(const funnel_config_t *a, const funnel_config_t *b, const opt_t *o)
{
    switch (o->type) {
    case OPT_STRING: {
        const char *x = *(char *const *)cfield(a, o), *y = *(char *const *)cfield(b, o);
        return x && y ? strcmp(x, y) == 0 : x == y;
    }
    case OPT_BOOL:
        return *(const bool *)cfield(a, o) == *(const bool *)cfield(b, o);
    case OPT_INT:
        return *(const int64_t *)cfield(a, o) == *(const int64_t *)cfield(b, o);
    case OPT_LOG_LEVEL:
        return a->log_level == b->log_level;
    case OPT_SYNC:
        return a->sync == b->sync;
    case OPT_STRLIST:
        if (a->n_connect != b->n_connect)
            return false;
        for (size_t i = 0; i < a->n_connect; i++)
            if (strcmp(a->connect[i], b->connect[i]))
                return false;
        return true;
    }
    return false;
}

/* True when two section structs print the same: the file syntax is the section's canonical
 * form, so no per-section comparison hook is needed to keep an unchanged reload quiet. */
static bool section_same(const funnel_engine_def_t *sec, const void *a, const void *b)
{
    char *text[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    const void *which[2] = {a, b};
    bool ok = true;
    for (int i = 0; i < 2; i++) {
        FILE *f = open_memstream(&text[i], &len[i]);
        if (f)
            sec->section_print(which[i], f);
        ok = f && fclose(f) == 0 && ok;
    }
    /* Out of memory: say it changed, which only costs a log line. */
    bool same = ok && len[0] == len[1] && memcmp(text[0], text[1], len[0]) == 0;
    free(text[0]);
    free(text[1]);
    return same;
}

/* True when the section holds its defaults only: the file has no such group (any more). */
static bool section_is_default(const funnel_engine_def_t *sec, const void *s)
{
    void *d = calloc(1, sec->section_size);
    bool same = d && sec->section_defaults(d) == 0 && section_same(sec, s, d);
    if (d)
        sec->section_clear(d);
    free(d);
    return same;
}

/* Replaces one section in place, so engines holding its pointer read the new one. Dropping a
 * whole section (the commission plan, every SLA policy) is rarely meant and silently stops
 * commissions or SLA timers: it is a warning, not news. */
static void section_reload(const funnel_engine_def_t *sec, void *dst, void *src,
                           const funnel_log_t *log)
{
    bool same = section_same(sec, dst, src);
    bool removed = !same && section_is_default(sec, src);
    sec->section_clear(dst);
    memcpy(dst, src, sec->section_size);
    memset(src, 0, sec->section_size);
    if (removed)
        funnel_log_warn(log,
                        "config reload: section %s removed: its settings are back to the "
                        "defaults",
                        sec->section);
    else if (!same)
        funnel_log_info(log, "config reload: section %s replaced", sec->section);
}

/* Lists inside sections that make an engine act: emptied by a reload while the section stays,
 * the engine goes quiet as surely as if the section were removed. */
static void lists_emptied_warn(const funnel_engine_def_t *sec, const void *cur, const void *fresh,
                               const funnel_log_t *log)
{
    for (size_t i = 0; i < FUNNEL_ENGINE_MAX_LISTS && sec->lists[i].what; i++) {
        size_t had = *(const size_t *)((const char *)cur + sec->lists[i].count_offset);
        size_t has = *(const size_t *)((const char *)fresh + sec->lists[i].count_offset);
        if (had && !has)
            funnel_log_warn(log, "config reload: all %zu %s of section %s removed", had,
                            sec->lists[i].what, sec->section);
    }
}

/* Both configs were made from the same registry (a reload reads with the running one). */
static void sections_reload(funnel_config_t *cur, funnel_config_t *fresh, const funnel_log_t *log)
{
    for (size_t i = 0; i < registry_size(cur->registry); i++)
        if (cur->sections[i] && fresh->sections[i])
            lists_emptied_warn(&cur->registry->defs[i], cur->sections[i], fresh->sections[i], log);
    for (size_t i = 0; i < registry_size(cur->registry); i++)
        if (cur->sections[i] && fresh->sections[i])
            section_reload(&cur->registry->defs[i], cur->sections[i], fresh->sections[i], log);
}

int funnel_config_reload(funnel_config_t *cur, funnel_config_t *fresh, const funnel_log_t *log)
{
    int changed = 0;
    sections_reload(cur, fresh, log);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_t *o = &options[i];
        if (opt_equal(cur, fresh, o))
            continue;
        if (!o->reloadable) {
            funnel_log_warn(log,
                            "config reload: %s changed but needs a restart; keeping the "
                            "running value",
                            o->name);
            continue;
        }
        /* Only scalar options are reloadable, so a plain copy suffices. */
        memcpy(field(cur, o), cfield(fresh, o),
               o->type == OPT_INT    ? sizeof(int64_t)
               : o->type == OPT_BOOL ? sizeof(bool)
                                     : sizeof(int));
        funnel_log_info(log, "config reload: %s changed", o->name);
        changed++;
    }
    return changed;
}

/* Writes s as a libconfig string literal: quotes, backslashes and control characters are
 * escaped so the printed file reads back to the same value. */
static void print_quoted(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void opt_print(const funnel_config_t *cfg, const opt_t *o, FILE *out)
{
    switch (o->type) {
    case OPT_STRING:
        fprintf(out, "%s = ", o->name);
        print_quoted(*(char *const *)cfield(cfg, o), out);
        fprintf(out, ";\n");
        break;
    case OPT_BOOL:
        fprintf(out, "%s = %s;\n", o->name, *(const bool *)cfield(cfg, o) ? "true" : "false");
        break;
    case OPT_INT: {
        /* libconfig reads a plain literal as 32 bits (1.5 silently wraps larger ones): values
         * beyond that need the L suffix to read back. */
        long long v = (long long)*(const int64_t *)cfield(cfg, o);
        fprintf(out, "%s = %lld%s;\n", o->name, v, v < INT32_MIN || v > INT32_MAX ? "L" : "");
        break;
    }
    case OPT_LOG_LEVEL:
        fprintf(out, "%s = \"%s\";\n", o->name, funnel_log_level_name(cfg->log_level));
        break;
    case OPT_SYNC:
        fprintf(out, "%s = \"%s\";\n", o->name,
                cfg->sync == FUNNEL_STORE_SYNC_FULL ? "full" : "normal");
        break;
    case OPT_STRLIST:
        fprintf(out, "%s = (", o->name);
        for (size_t i = 0; i < cfg->n_connect; i++) {
            fprintf(out, "%s", i ? ", " : "");
            print_quoted(cfg->connect[i], out);
        }
        fprintf(out, ");\n");
        break;
    }
}

void funnel_config_print(const funnel_config_t *cfg, FILE *out)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (!strchr(options[i].name, '.'))
            opt_print(cfg, &options[i], out);
    if (cfg->server_key) {
        fprintf(out, SECURITY " = {\n    server_key = ");
        print_quoted(cfg->server_key, out);
        fprintf(out, ";\n    clients = ");
        print_quoted(cfg->clients, out);
        fprintf(out, ";\n};\n");
    }
    for (size_t i = 0; i < registry_size(cfg->registry); i++)
        if (cfg->sections[i])
            cfg->registry->defs[i].section_print(cfg->sections[i], out);
}

void funnel_config_help(FILE *out)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_t *o = &options[i];
        fprintf(out, "  %-18s %s (default \"%s\"", o->name, o->help, o->def ? o->def : "");
        if (o->type == OPT_INT)
            fprintf(out, ", %lld..%lld", (long long)o->min, (long long)o->max);
        fprintf(out, "%s)\n", o->reloadable ? ", reloadable" : "");
    }
}
