/* clients.c — the clients file: keys, names, publish patterns, subscribe prefixes (clients.h). */
#include "clients.h"
#include "funnel/codec.h"
#include "funnel/error.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct funnel_clients {
    funnel_clients_entry_t *entries;
    size_t n;
};

/* Where an error is: the file and line, and the client by name once it has one. */
typedef struct parse_ctx {
    const char *origin;
    char *err;
    size_t err_len;
} parse_ctx_t;

static int fail(const parse_ctx_t *p, const config_setting_t *s, const char *who, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static int fail(const parse_ctx_t *p, const config_setting_t *s, const char *who, const char *fmt,
                ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->err_len, "%s:%d: %s%s%s", p->origin, s ? config_setting_source_line(s) : 0,
             who ? who : "", who ? ": " : "", detail);
    return FUNNEL_ECONFIG;
}

static void entry_clear(funnel_clients_entry_t *e)
{
    for (size_t i = 0; i < e->n_publish; i++)
        free(e->publish[i]);
    for (size_t i = 0; i < e->n_subscribe; i++)
        free(e->subscribe[i]);
    free(e->publish);
    free(e->subscribe);
    memset(e, 0, sizeof *e);
}

void funnel_clients_destroy(funnel_clients_t **cp)
{
    if (!cp || !*cp)
        return;
    for (size_t i = 0; i < (*cp)->n; i++)
        entry_clear(&(*cp)->entries[i]);
    free((*cp)->entries);
    free(*cp);
    *cp = NULL;
}

static bool topic_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* A publish pattern: topic characters, optionally ending in one `*`; not empty. A subscribe
 * prefix: topic characters only, possibly none (every topic). Returns the reason or NULL. */
static const char *pattern_problem(const char *s, bool pattern)
{
    size_t len = strlen(s);
    if (len > FUNNEL_TOPIC_MAX)
        return "is longer than a topic";
    if (pattern && len == 0)
        return "is empty (use \"*\" for every topic)";
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '*' && pattern && i + 1 == len)
            continue;
        if (s[i] == '*')
            return pattern ? "has '*' before its end ('*' matches the rest of a topic)"
                           : "has '*': subscribe entries are prefixes (\"sla.\", not \"sla.*\")";
        if (!topic_char(s[i]))
            return "has a character outside A-Z a-z 0-9 . _ -";
    }
    return NULL;
}

/* Reads the string array `member` of a client into *list; a missing member is an empty list. */
static int list_read(const parse_ctx_t *p, const config_setting_t *client, const char *who,
                     const char *member, bool pattern, char ***list, size_t *n)
{
    config_setting_t *s = config_setting_get_member(client, member);
    if (!s)
        return 0;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
        return fail(p, s, who, "%s: expected a list of strings [\"...\"]", member);
    int len = config_setting_length(s);
    if (len && !(*list = calloc((size_t)len, sizeof **list)))
        return FUNNEL_ENOMEM;
    for (int i = 0; i < len; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v =
            config_setting_type(e) == CONFIG_TYPE_STRING ? config_setting_get_string(e) : NULL;
        if (!v)
            return fail(p, s, who, "%s: expected a list of strings [\"...\"]", member);
        const char *problem = pattern_problem(v, pattern);
        if (problem)
            return fail(p, e, who, "%s entry \"%.*s\" %s", member, FUNNEL_TOPIC_MAX, v, problem);
        if (!((*list)[i] = strdup(v)))
            return FUNNEL_ENOMEM;
        (*n)++;
    }
    return 0;
}

static const char *name_problem(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > FUNNEL_CLIENT_NAME_MAX)
        return "name must be 1..64 characters";
    for (size_t i = 0; i < len; i++)
        if (!topic_char(name[i]))
            return "name has a character outside A-Z a-z 0-9 . _ -";
    return NULL;
}

static const char *const MEMBERS[] = {"name", "public_key", "publish", "subscribe"};

/* One `{ name = ...; ... }` of the list, checked against the entries before it. */
static int entry_read(const parse_ctx_t *p, const config_setting_t *s, size_t index,
                      const funnel_clients_t *done, funnel_clients_entry_t *e)
{
    char pos[32];
    snprintf(pos, sizeof pos, "client #%zu", index + 1);
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return fail(p, s, pos, "expected a group { name = ...; public_key = ...; }");
    const char *name = NULL, *key = NULL;
    if (!config_setting_lookup_string(s, "name", &name))
        return fail(p, s, pos, "needs name = \"...\"");
    const char *problem = name_problem(name);
    if (problem)
        return fail(p, s, pos, "%s", problem);
    snprintf(e->name, sizeof e->name, "%s", name);
    for (int i = 0; i < config_setting_length(s); i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        bool known = false;
        for (size_t k = 0; k < sizeof MEMBERS / sizeof MEMBERS[0]; k++)
            known = known || strcmp(config_setting_name(m), MEMBERS[k]) == 0;
        if (!known)
            return fail(p, m, e->name, "unknown setting '%s'", config_setting_name(m));
    }
    if (funnel_clients_by_name(done, name))
        return fail(p, s, e->name, "a second client of that name");
    if (!config_setting_lookup_string(s, "public_key", &key))
        return fail(p, s, e->name, "needs public_key = \"<Z85>\" (its NAME.pub)");
    if (!funnel_key_valid(key))
        return fail(p, s, e->name, "public_key is not a 40-character Z85 key");
    snprintf(e->key_z85, sizeof e->key_z85, "%s", key);
    zmq_z85_decode(e->key, key);
    const funnel_clients_entry_t *twin = funnel_clients_by_key(done, e->key);
    if (twin)
        return fail(p, s, e->name, "public_key is already client %s's", twin->name);
    int rc = list_read(p, s, e->name, "publish", true, &e->publish, &e->n_publish);
    return rc ? rc : list_read(p, s, e->name, "subscribe", false, &e->subscribe, &e->n_subscribe);
}

static int table_read(const parse_ctx_t *p, config_t *lc, funnel_clients_t *t)
{
    config_setting_t *root = config_root_setting(lc);
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        if (strcmp(config_setting_name(s), "clients"))
            return fail(p, s, NULL, "unknown setting '%s' (only clients = ( ... );)",
                        config_setting_name(s));
    }
    config_setting_t *list = config_lookup(lc, "clients");
    if (!list)
        return fail(p, NULL, NULL, "no clients = ( ... ); list");
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(p, list, NULL, "clients: expected a list ( { ... }, ... )");
    size_t n = (size_t)config_setting_length(list);
    if (n && !(t->entries = calloc(n, sizeof *t->entries)))
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = entry_read(p, config_setting_get_elem(list, (unsigned)i), i, t, &t->entries[i]);
        if (rc) {
            entry_clear(&t->entries[i]);
            return rc;
        }
        t->n++;
    }
    return 0;
}

/* Reads lc (already parsed, or failed: parsed false) into a new table. */
static int table_build(const parse_ctx_t *p, config_t *lc, bool parsed, funnel_clients_t **out)
{
    if (!parsed) {
        if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
            snprintf(p->err, p->err_len, "%s: cannot read: %s", p->origin,
                     errno ? strerror(errno) : "not a regular file");
        else
            snprintf(p->err, p->err_len, "%s:%d: %s", p->origin, config_error_line(lc),
                     config_error_text(lc));
        return FUNNEL_ECONFIG;
    }
    funnel_clients_t *t = calloc(1, sizeof *t);
    if (!t)
        return FUNNEL_ENOMEM;
    int rc = table_read(p, lc, t);
    if (rc) {
        funnel_clients_destroy(&t);
        return rc;
    }
    *out = t;
    return 0;
}

int funnel_clients_load(const char *path, funnel_clients_t **out, char *err, size_t err_len)
{
    parse_ctx_t p = {path, err, err_len};
    config_t lc;
    config_init(&lc);
    errno = 0;
    int rc = table_build(&p, &lc, config_read_file(&lc, path) == CONFIG_TRUE, out);
    config_destroy(&lc);
    return rc;
}

int funnel_clients_parse(const char *text, const char *origin, funnel_clients_t **out, char *err,
                         size_t err_len)
{
    parse_ctx_t p = {origin, err, err_len};
    config_t lc;
    config_init(&lc);
    errno = 0;
    int rc = table_build(&p, &lc, config_read_string(&lc, text) == CONFIG_TRUE, out);
    config_destroy(&lc);
    return rc;
}

size_t funnel_clients_count(const funnel_clients_t *t)
{
    return t ? t->n : 0;
}

const funnel_clients_entry_t *funnel_clients_at(const funnel_clients_t *t, size_t i)
{
    return t && i < t->n ? &t->entries[i] : NULL;
}

/* A handful of clients: a scan costs less than a hash and needs no upkeep. */
const funnel_clients_entry_t *funnel_clients_by_key(const funnel_clients_t *t,
                                                    const uint8_t key[FUNNEL_CLIENT_KEY_BYTES])
{
    for (size_t i = 0; t && i < t->n; i++)
        if (memcmp(t->entries[i].key, key, FUNNEL_CLIENT_KEY_BYTES) == 0)
            return &t->entries[i];
    return NULL;
}

const funnel_clients_entry_t *funnel_clients_by_name(const funnel_clients_t *t, const char *name)
{
    for (size_t i = 0; t && name && i < t->n; i++)
        if (strcmp(t->entries[i].name, name) == 0)
            return &t->entries[i];
    return NULL;
}

bool funnel_clients_may_publish(const funnel_clients_entry_t *c, const char *topic)
{
    for (size_t i = 0; c && i < c->n_publish; i++) {
        const char *pat = c->publish[i];
        size_t len = strlen(pat);
        if (len && pat[len - 1] == '*' ? strncmp(topic, pat, len - 1) == 0
                                       : strcmp(topic, pat) == 0)
            return true;
    }
    return false;
}

/* True when a[0..alen) starts with b[0..blen). */
static bool starts_with(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen >= blen && memcmp(a, b, blen) == 0;
}

bool funnel_clients_may_see(const funnel_clients_entry_t *c, const char *topic, size_t len)
{
    for (size_t i = 0; c && i < c->n_subscribe; i++)
        if (starts_with(topic, len, c->subscribe[i], strlen(c->subscribe[i])))
            return true;
    return false;
}

funnel_sub_decision_t funnel_clients_subscription(const funnel_clients_entry_t *c,
                                                  const uint8_t *prefix, size_t len)
{
    if (funnel_clients_may_see(c, (const char *)prefix, len))
        return FUNNEL_SUB_APPLY;
    size_t i = 0;
    return funnel_clients_narrow(c, prefix, len, &i) ? FUNNEL_SUB_NARROW : FUNNEL_SUB_DENY;
}

const char *funnel_clients_narrow(const funnel_clients_entry_t *c, const uint8_t *prefix,
                                  size_t len, size_t *i)
{
    for (; c && *i < c->n_subscribe; (*i)++) {
        const char *p = c->subscribe[*i];
        if (starts_with(p, strlen(p), prefix, len)) {
            (*i)++;
            return p;
        }
    }
    return NULL;
}
