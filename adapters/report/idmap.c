/* idmap.c — string keys to dense ordinals (0, 1, 2, ... in order of first insertion), open
 * addressing with linear probing. The funnel report keeps a million leads in one: a key costs
 * its bytes plus two words. */
#include "idmap.h"

#include "funnel/error.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a: short ids, no adversary who could choose keys that the report cares about. */
static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

void funnel_idmap_clear(funnel_idmap_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int grow(funnel_idmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint32_t *slots = malloc(cap * sizeof *slots);
    char **keys = realloc(m->keys, (cap / 2) * sizeof *keys);
    if (!slots || !keys) {
        free(slots);
        if (keys)
            m->keys = keys;
        return FUNNEL_ENOMEM;
    }
    m->keys = keys;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; i < m->n; i++) {
        size_t at = hash(keys[i], strlen(keys[i])) & (cap - 1);
        while (slots[at] != UINT32_MAX)
            at = (at + 1) & (cap - 1);
        slots[at] = (uint32_t)i;
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int funnel_idmap_find(const funnel_idmap_t *m, const char *key, size_t len, uint32_t *ord)
{
    if (!m->cap)
        return FUNNEL_ENOTFOUND;
    for (size_t at = hash(key, len) & (m->cap - 1); m->slots[at] != UINT32_MAX;
         at = (at + 1) & (m->cap - 1)) {
        const char *k = m->keys[m->slots[at]];
        if (!strncmp(k, key, len) && k[len] == '\0') {
            *ord = m->slots[at];
            return 0;
        }
    }
    return FUNNEL_ENOTFOUND;
}

int funnel_idmap_add(funnel_idmap_t *m, const char *key, size_t len, uint32_t *ord, bool *added)
{
    if (added)
        *added = false;
    if (!funnel_idmap_find(m, key, len, ord))
        return 0;
    if ((m->n + 1) * 2 > m->cap && grow(m))
        return FUNNEL_ENOMEM;
    char *copy = strndup(key, len);
    if (!copy)
        return FUNNEL_ENOMEM;
    size_t at = hash(key, len) & (m->cap - 1);
    while (m->slots[at] != UINT32_MAX)
        at = (at + 1) & (m->cap - 1);
    m->slots[at] = (uint32_t)m->n;
    m->keys[m->n] = copy;
    *ord = (uint32_t)m->n++;
    if (added)
        *added = true;
    return 0;
}
