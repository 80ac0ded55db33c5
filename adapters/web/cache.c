/* cache.c — answers of the read routes that scan history (SLA compliance over every instance
 * opened in the range), kept while the database has not changed, so a dashboard that asks
 * every few seconds costs one scan per change of the data instead of one per request.
 *
 * The change marker is SQLite's PRAGMA data_version on a connection of the cache's own: it
 * changes whenever another connection (funneld) commits, and costs no table read. The marker
 * is read before the answer is computed, so an answer computed from a newer snapshot is filed
 * under an older marker and merely recomputed once more, never served stale. An answer whose
 * figures depend on the clock also says until when it holds (valid_until_ms).
 *
 * The one exception: the page's default queries, which the keeper (keeper.c) recomputes in
 * the background after each commit. While it does, a request is served the keeper's last
 * answer if that is at most max_age_ms old (its reply says how old), so no page waits on a
 * cold computation while funneld commits. */
#include "web.h"

#include "funnel/error.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS   32
#define CACHE_KEY_MAX 192

typedef struct slot {
    char key[CACHE_KEY_MAX];
    int64_t marker, valid_until_ms;
    int64_t at_ms; /* when it was computed */
    bool kept;     /* filed by the keeper: may be served up to max_age_ms past a commit */
    char *body;    /* owned; NULL: free slot */
    size_t len;
} slot_t;

struct funnel_web_cache {
    pthread_mutex_t lock;
    int64_t max_age_ms;
    sqlite3 *db; /* the marker's connection, read-only */
    slot_t slots[CACHE_SLOTS];
    size_t next; /* the slot a new key takes (round robin) */
    uint64_t hits, kept;
};

int funnel_web_cache_new(const char *database, int64_t max_age_ms, funnel_web_cache_t **out)
{
    funnel_web_cache_t *c = calloc(1, sizeof *c);
    if (!c)
        return FUNNEL_ENOMEM;
    c->max_age_ms = max_age_ms;
    pthread_mutex_init(&c->lock, NULL);
    if (sqlite3_open_v2(database, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        funnel_web_cache_destroy(&c);
        return FUNNEL_EIO;
    }
    *out = c;
    return 0;
}

void funnel_web_cache_destroy(funnel_web_cache_t **cp)
{
    funnel_web_cache_t *c = *cp;
    if (!c)
        return;
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        free(c->slots[i].body);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->lock);
    free(c);
    *cp = NULL;
}

/* The database's change counter as the cache's connection sees it; -1 when unreadable (then
 * nothing is served from or filed in the cache). Called with the lock held. */
static int64_t marker_read(funnel_web_cache_t *c)
{
    sqlite3_stmt *q;
    int64_t v = -1;
    if (sqlite3_prepare_v2(c->db, "PRAGMA data_version", -1, &q, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static slot_t *slot_find(funnel_web_cache_t *c, const char *key)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++)
        if (c->slots[i].body && !strcmp(c->slots[i].key, key))
            return &c->slots[i];
    return NULL;
}

bool funnel_web_cache_get(funnel_web_cache_t *c, const char *key, int64_t now_ms,
                          funnel_web_reply_t *r, int64_t *marker)
{
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    *marker = marker_read(c);
    const slot_t *s = *marker >= 0 ? slot_find(c, key) : NULL;
    bool current = s && s->marker == *marker;
    bool recent = s && s->kept && now_ms - s->at_ms <= c->max_age_ms;
    if (s && (current || recent) && now_ms < s->valid_until_ms && (r->body = malloc(s->len + 1))) {
        memcpy(r->body, s->body, s->len + 1);
        r->len = s->len;
        r->status = 200;
        r->content_type = "application/json";
        r->behind = !current;
        r->age_s = (unsigned)((now_ms - s->at_ms) / 1000);
        c->hits++;
        hit = true;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

bool funnel_web_cache_fresh(funnel_web_cache_t *c, const char *key, int64_t now_ms,
                            int64_t min_interval_ms, int64_t *marker)
{
    pthread_mutex_lock(&c->lock);
    *marker = marker_read(c);
    const slot_t *s = *marker >= 0 ? slot_find(c, key) : NULL;
    /* without a marker nothing can be kept: computing it again would be for nothing */
    bool fresh = *marker < 0 || (s && now_ms < s->valid_until_ms &&
                                 (s->marker == *marker || now_ms - s->at_ms < min_interval_ms));
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

void funnel_web_cache_put(funnel_web_cache_t *c, const char *key, int64_t marker,
                          int64_t valid_until_ms, int64_t now_ms, bool kept,
                          const funnel_web_reply_t *r)
{
    if (marker < 0 || r->status != 200 || !r->body || strlen(key) >= CACHE_KEY_MAX)
        return;
    char *body = malloc(r->len + 1);
    if (!body)
        return; /* not kept: the next request computes it again */
    memcpy(body, r->body, r->len);
    body[r->len] = '\0';
    pthread_mutex_lock(&c->lock);
    slot_t *s = slot_find(c, key);
    if (!s) {
        s = &c->slots[c->next];
        c->next = (c->next + 1) % CACHE_SLOTS;
    }
    c->kept += kept;
    /* a key the keeper keeps stays its own when a request computed it first */
    kept = kept || (s->body && s->kept && !strcmp(s->key, key));
    free(s->body);
    *s = (slot_t){.marker = marker,
                  .valid_until_ms = valid_until_ms,
                  .at_ms = now_ms,
                  .kept = kept,
                  .body = body,
                  .len = r->len};
    snprintf(s->key, sizeof s->key, "%s", key);
    pthread_mutex_unlock(&c->lock);
}

uint64_t funnel_web_cache_hits(funnel_web_cache_t *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t n = c->hits;
    pthread_mutex_unlock(&c->lock);
    return n;
}

uint64_t funnel_web_cache_kept(funnel_web_cache_t *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t n = c->kept;
    pthread_mutex_unlock(&c->lock);
    return n;
}
