/* users.c — the users file: per user a name, a role, an Argon2id password hash
 * (crypto_pwhash_str) and the hashes of its API tokens.
 *
 *   users = ( { name = "ann"; role = "manager"; password = "$argon2id$v=19$...";
 *               tokens = [ "<hex BLAKE2b-256 of a token>" ]; } );
 *
 * A token is 32 random bytes shown once as hex; only its hash is stored, so the file leaks no
 * credential a client could replay. Tokens are high-entropy, so a fast hash is enough for them;
 * passwords are chosen by people, hence Argon2id. The set is swapped whole on reload under a
 * write lock; readers (every request) take the read lock. */
#include "web.h"

#include "funnel/error.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOKEN_BYTES 32

typedef struct user {
    char name[FUNNEL_WEB_NAME_MAX + 1];
    funnel_web_role_t role;
    char pwhash[crypto_pwhash_STRBYTES];
    unsigned char (*tokens)[TOKEN_BYTES]; /* owned; hashes */
    size_t n_tokens;
} user_t;

typedef struct user_set {
    user_t *users; /* owned */
    size_t n;
} user_set_t;

struct funnel_web_users {
    char *path;
    pthread_rwlock_t lock;
    user_set_t set;
    char dummy[crypto_pwhash_STRBYTES]; /* verified against for unknown names: same work */
};

static const char *const role_names[] = {
    [FUNNEL_WEB_ROLE_REP] = "rep",
    [FUNNEL_WEB_ROLE_MANAGER] = "manager",
    [FUNNEL_WEB_ROLE_ADMIN] = "admin",
};

const char *funnel_web_role_name(funnel_web_role_t role)
{
    return role > FUNNEL_WEB_ROLE_NONE && role <= FUNNEL_WEB_ROLE_ADMIN ? role_names[role] : NULL;
}

funnel_web_role_t funnel_web_role_parse(const char *name)
{
    for (int r = FUNNEL_WEB_ROLE_REP; name && r <= FUNNEL_WEB_ROLE_ADMIN; r++)
        if (!strcmp(name, role_names[r]))
            return (funnel_web_role_t)r;
    return FUNNEL_WEB_ROLE_NONE;
}

/* Names go into cookies' sessions, logs and event payloads (`by`): a short plain alphabet. */
static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > FUNNEL_WEB_NAME_MAX)
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("._@-", *c)))
            return false;
    return true;
}

static void token_hash(const char *token, unsigned char out[TOKEN_BYTES])
{
    crypto_generichash(out, TOKEN_BYTES, (const unsigned char *)token, strlen(token), NULL, 0);
}

static void set_clear(user_set_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->users[i].tokens);
    free(s->users);
    s->users = NULL;
    s->n = 0;
}

static int bad(char *err, size_t err_len, const char *path, int i, const char *what)
{
    snprintf(err, err_len, "%s: users[%d]: %s", path, i, what);
    return FUNNEL_ECONFIG;
}

/* Reads one user group into u. */
static int user_read(config_setting_t *g, int i, const char *path, user_t *u, char *err,
                     size_t err_len)
{
    const char *name, *role, *pw;
    if (!config_setting_is_group(g) || !config_setting_lookup_string(g, "name", &name) ||
        !config_setting_lookup_string(g, "role", &role) ||
        !config_setting_lookup_string(g, "password", &pw))
        return bad(err, err_len, path, i, "needs name, role and password");
    if (!name_valid(name))
        return bad(err, err_len, path, i, "name: 1-64 of A-Z a-z 0-9 . _ @ -");
    if ((u->role = funnel_web_role_parse(role)) == FUNNEL_WEB_ROLE_NONE)
        return bad(err, err_len, path, i, "role: admin, manager or rep");
    if (strlen(pw) >= sizeof u->pwhash || strncmp(pw, "$argon2id$", 10))
        return bad(err, err_len, path, i, "password: an Argon2id hash (funnel-web --add-user)");
    snprintf(u->name, sizeof u->name, "%s", name);
    snprintf(u->pwhash, sizeof u->pwhash, "%s", pw);
    const config_setting_t *toks = config_setting_lookup(g, "tokens");
    int n = toks ? config_setting_length(toks) : 0;
    if (toks && !config_setting_is_array(toks))
        return bad(err, err_len, path, i, "tokens: an array of hashes");
    if (n && !(u->tokens = calloc((size_t)n, sizeof *u->tokens)))
        return FUNNEL_ENOMEM;
    for (int k = 0; k < n; k++) {
        const char *hex = config_setting_get_string_elem(toks, k);
        size_t got = 0;
        if (!hex || strlen(hex) != 2 * TOKEN_BYTES ||
            sodium_hex2bin(u->tokens[k], TOKEN_BYTES, hex, strlen(hex), NULL, &got, NULL) ||
            got != TOKEN_BYTES)
            return bad(err, err_len, path, i, "tokens: 64 hex digits each");
    }
    u->n_tokens = (size_t)n;
    return 0;
}

/* Reads path into set; a file that does not exist is no users. */
static int set_load(const char *path, user_set_t *set, char *err, size_t err_len)
{
    memset(set, 0, sizeof *set);
    if (access(path, F_OK) && errno == ENOENT)
        return 0;
    config_t c;
    config_init(&c);
    int rc = 0;
    if (!config_read_file(&c, path)) {
        snprintf(err, err_len, "%s:%d: %s", path, config_error_line(&c), config_error_text(&c));
        rc = FUNNEL_ECONFIG;
        goto out;
    }
    const config_setting_t *list = config_lookup(&c, "users");
    int n = list ? config_setting_length(list) : 0;
    if (list && !config_setting_is_list(list)) {
        snprintf(err, err_len, "%s: users: a list ( {...}, ... )", path);
        rc = FUNNEL_ECONFIG;
        goto out;
    }
    if (n && !(set->users = calloc((size_t)n, sizeof *set->users))) {
        rc = FUNNEL_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n && !rc; i++, set->n++) {
        rc = user_read(config_setting_get_elem(list, (unsigned)i), i, path, &set->users[i], err,
                       err_len);
        for (size_t k = 0; !rc && k < set->n; k++)
            if (!strcmp(set->users[k].name, set->users[i].name))
                rc = bad(err, err_len, path, i, "a name listed twice");
    }
    if (rc)
        set_clear(set);
out:
    config_destroy(&c);
    return rc;
}

int funnel_web_users_new(const char *path, funnel_web_users_t **out, char *err, size_t err_len)
{
    if (sodium_init() < 0) {
        snprintf(err, err_len, "libsodium cannot start");
        return FUNNEL_ENOMEM;
    }
    funnel_web_users_t *u = calloc(1, sizeof *u);
    if (!u || !(u->path = strdup(path))) {
        free(u);
        return FUNNEL_ENOMEM;
    }
    pthread_rwlock_init(&u->lock, NULL);
    char salt_pw[32];
    randombytes_buf(salt_pw, sizeof salt_pw - 1);
    salt_pw[sizeof salt_pw - 1] = '\0';
    int rc =
        crypto_pwhash_str(u->dummy, salt_pw, sizeof salt_pw - 1, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE)
            ? FUNNEL_ENOMEM
            : set_load(path, &u->set, err, err_len);
    if (rc) {
        funnel_web_users_destroy(&u);
        return rc;
    }
    *out = u;
    return 0;
}

void funnel_web_users_destroy(funnel_web_users_t **users)
{
    funnel_web_users_t *u = *users;
    if (!u)
        return;
    set_clear(&u->set);
    pthread_rwlock_destroy(&u->lock);
    free(u->path);
    free(u);
    *users = NULL;
}

int funnel_web_users_reload(funnel_web_users_t *users, char *err, size_t err_len)
{
    user_set_t fresh;
    int rc = set_load(users->path, &fresh, err, err_len);
    if (rc)
        return rc;
    pthread_rwlock_wrlock(&users->lock);
    user_set_t old = users->set;
    users->set = fresh;
    pthread_rwlock_unlock(&users->lock);
    set_clear(&old);
    return 0;
}

static const user_t *find(const user_set_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->users[i].name, name))
            return &s->users[i];
    return NULL;
}

static void principal_set(funnel_web_principal_t *who, const user_t *u)
{
    snprintf(who->name, sizeof who->name, "%s", u->name);
    who->role = u->role;
}

int funnel_web_users_login(funnel_web_users_t *users, const char *name, const char *password,
                           funnel_web_principal_t *who)
{
    char hash[crypto_pwhash_STRBYTES];
    user_t copy = {0};
    pthread_rwlock_rdlock(&users->lock);
    const user_t *u = find(&users->set, name);
    if (u) {
        copy = *u;
        copy.tokens = NULL;
    }
    snprintf(hash, sizeof hash, "%s", u ? u->pwhash : users->dummy);
    pthread_rwlock_unlock(&users->lock);
    /* Verified outside the lock: Argon2id takes a tenth of a second on purpose. */
    int ok = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
    if (!ok || !copy.name[0])
        return FUNNEL_EINVAL;
    principal_set(who, &copy);
    return 0;
}

int funnel_web_users_token(funnel_web_users_t *users, const char *token,
                           funnel_web_principal_t *who)
{
    unsigned char h[TOKEN_BYTES];
    token_hash(token, h);
    int rc = FUNNEL_EINVAL;
    pthread_rwlock_rdlock(&users->lock);
    for (size_t i = 0; i < users->set.n; i++)
        for (size_t k = 0; k < users->set.users[i].n_tokens; k++)
            if (sodium_memcmp(h, users->set.users[i].tokens[k], TOKEN_BYTES) == 0) {
                principal_set(who, &users->set.users[i]);
                rc = 0;
            }
    pthread_rwlock_unlock(&users->lock);
    return rc;
}

funnel_web_role_t funnel_web_users_role(funnel_web_users_t *users, const char *name)
{
    pthread_rwlock_rdlock(&users->lock);
    const user_t *u = find(&users->set, name);
    funnel_web_role_t role = u ? u->role : FUNNEL_WEB_ROLE_NONE;
    pthread_rwlock_unlock(&users->lock);
    return role;
}

/* ---- --add-user ---------------------------------------------------------------------------- */

/* The group of name in list, a new one when there is none. */
static config_setting_t *user_group(config_setting_t *list, const char *name)
{
    for (int i = 0; i < config_setting_length(list); i++) {
        config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        const char *n;
        if (config_setting_lookup_string(g, "name", &n) && !strcmp(n, name))
            return g;
    }
    config_setting_t *g = config_setting_add(list, NULL, CONFIG_TYPE_GROUP);
    config_setting_t *n = g ? config_setting_add(g, "name", CONFIG_TYPE_STRING) : NULL;
    return n && config_setting_set_string(n, name) ? g : NULL;
}

/* Sets g.key = text, adding the setting when missing. */
static bool set_text(config_setting_t *g, const char *key, const char *text)
{
    config_setting_t *s = config_setting_lookup(g, key);
    if (!s)
        s = config_setting_add(g, key, CONFIG_TYPE_STRING);
    return s && config_setting_set_string(s, text);
}

/* Writes c to path.tmp (mode 0600: password hashes), then renames it over path. */
static int write_atomic(config_t *c, const char *path, char *err, size_t err_len)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        return FUNNEL_EIO;
    }
    config_write(c, f);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return FUNNEL_EIO;
    }
    return 0;
}

int funnel_web_users_add(const char *path, const char *name, const char *role, const char *password,
                         char token_out[65], char *err, size_t err_len)
{
    if (sodium_init() < 0)
        return FUNNEL_ENOMEM;
    if (!name_valid(name) || funnel_web_role_parse(role) == FUNNEL_WEB_ROLE_NONE || !*password) {
        snprintf(err, err_len,
                 "a name of 1-64 of A-Z a-z 0-9 . _ @ -, a role (admin, manager, rep) and a "
                 "non-empty password are needed");
        return FUNNEL_EINVAL;
    }
    user_set_t check; /* the file must be valid before it is rewritten */
    int rc = set_load(path, &check, err, err_len);
    if (rc)
        return rc;
    set_clear(&check);
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE))
        return FUNNEL_ENOMEM;
    unsigned char raw[TOKEN_BYTES], h[TOKEN_BYTES];
    char hex[2 * TOKEN_BYTES + 1];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(token_out, 2 * TOKEN_BYTES + 1, raw, sizeof raw);
    token_hash(token_out, h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);

    config_t c;
    config_init(&c);
    rc = FUNNEL_ENOMEM;
    if (access(path, F_OK) == 0 && !config_read_file(&c, path)) {
        snprintf(err, err_len, "%s: %s", path, config_error_text(&c));
        rc = FUNNEL_ECONFIG;
        goto out;
    }
    config_setting_t *root = config_root_setting(&c);
    config_setting_t *list = config_setting_lookup(root, "users");
    if (!list)
        list = config_setting_add(root, "users", CONFIG_TYPE_LIST);
    config_setting_t *g = list ? user_group(list, name) : NULL;
    if (!g || !set_text(g, "role", role) || !set_text(g, "password", hash))
        goto out;
    config_setting_t *toks = config_setting_lookup(g, "tokens");
    if (!toks)
        toks = config_setting_add(g, "tokens", CONFIG_TYPE_ARRAY);
    if (!toks || !config_setting_set_string_elem(toks, -1, hex))
        goto out;
    rc = write_atomic(&c, path, err, err_len);
out:
    config_destroy(&c);
    sodium_memzero(raw, sizeof raw);
    return rc;
}
