/* session.c — login sessions: a random id (the cookie), the user's name, a CSRF token the page
 * sends back on every write, and an expiry. Kept in memory only: a restart logs everyone out,
 * which is the safe side. The role is not stored: each request reads it from the users file,
 * so a reload that demotes or removes a user takes effect at once. */
#include "web.h"

#include "funnel/grow.h"
#include "funnel/error.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct session {
    char id[65];
    char csrf[65];
    char name[FUNNEL_WEB_NAME_MAX + 1];
    int64_t expires_ms;
} session_t;

struct funnel_web_sessions {
    pthread_mutex_t lock;
    session_t *s; /* owned */
    size_t n, cap;
    int64_t ttl_ms;
};

int funnel_web_sessions_new(int64_t ttl_ms, funnel_web_sessions_t **out)
{
    funnel_web_sessions_t *s = calloc(1, sizeof *s);
    if (!s || sodium_init() < 0) {
        free(s);
        return FUNNEL_ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->ttl_ms = ttl_ms;
    *out = s;
    return 0;
}

void funnel_web_sessions_destroy(funnel_web_sessions_t **sp)
{
    funnel_web_sessions_t *s = *sp;
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->s);
    free(s);
    *sp = NULL;
}

static void random_hex(char out[65])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, 65, raw, sizeof raw);
}

/* Drops expired sessions (called under the lock). */
static void sweep(funnel_web_sessions_t *s, int64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->s[i].expires_ms > now_ms)
            s->s[k++] = s->s[i];
    s->n = k;
}

int funnel_web_sessions_start(funnel_web_sessions_t *s, const char *name, int64_t now_ms,
                              char id[65], char csrf[65])
{
    pthread_mutex_lock(&s->lock);
    sweep(s, now_ms);
    if (funnel_grow(&s->s, &s->cap, s->n + 1, sizeof *s->s, 16)) {
        pthread_mutex_unlock(&s->lock);
        return FUNNEL_ENOMEM;
    }
    session_t *e = &s->s[s->n++];
    random_hex(e->id);
    random_hex(e->csrf);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->expires_ms = now_ms + s->ttl_ms;
    memcpy(id, e->id, 65);
    memcpy(csrf, e->csrf, 65);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int funnel_web_sessions_find(funnel_web_sessions_t *s, const char *id, int64_t now_ms,
                             char name[FUNNEL_WEB_NAME_MAX + 1], char csrf[65])
{
    int rc = FUNNEL_ENOTFOUND;
    if (strlen(id) != 64)
        return rc;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        if (sodium_memcmp(s->s[i].id, id, 64) == 0 && s->s[i].expires_ms > now_ms) {
            if (name)
                memcpy(name, s->s[i].name, sizeof s->s[i].name);
            if (csrf)
                memcpy(csrf, s->s[i].csrf, 65);
            rc = 0;
        }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void funnel_web_sessions_end(funnel_web_sessions_t *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        if (strlen(id) == 64 && sodium_memcmp(s->s[i].id, id, 64) == 0)
            s->s[i] = s->s[--s->n];
    pthread_mutex_unlock(&s->lock);
}
