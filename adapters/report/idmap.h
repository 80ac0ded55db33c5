/* idmap.h — string keys to dense ordinals, for the report library's in-memory models. */
#ifndef FUNNEL_IDMAP_H
#define FUNNEL_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct funnel_idmap {
    uint32_t *slots; /* ordinal per slot, UINT32_MAX when free; cap is a power of two */
    size_t cap;
    char **keys; /* owned; keys[ordinal] */
    size_t n;
} funnel_idmap_t;

/* The ordinal of key[0..len), or FUNNEL_ENOTFOUND. */
int funnel_idmap_find(const funnel_idmap_t *m, const char *key, size_t len, uint32_t *ord);
/* The ordinal of key, added (the next ordinal) when new; *added (may be NULL) says which.
 * 0 or FUNNEL_ENOMEM. */
int funnel_idmap_add(funnel_idmap_t *m, const char *key, size_t len, uint32_t *ord, bool *added);
void funnel_idmap_clear(funnel_idmap_t *m);

#endif
