/* timerheap.c — an array-backed binary min-heap ordered by (at, id). */
#include "timerheap.h"
#include "funnel/grow.h"
#include "funnel/error.h"

#include <stdlib.h>

struct funnel_timerheap {
    funnel_timer_entry_t *v; /* v[0] is the earliest */
    size_t n, cap;
};

int funnel_timerheap_new(funnel_timerheap_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : FUNNEL_ENOMEM;
}

void funnel_timerheap_destroy(funnel_timerheap_t **heap)
{
    if (heap && *heap) {
        free((*heap)->v);
        free(*heap);
        *heap = NULL;
    }
}

static int before(const funnel_timer_entry_t *a, const funnel_timer_entry_t *b)
{
    return a->at < b->at || (a->at == b->at && a->id < b->id);
}

int funnel_timerheap_push(funnel_timerheap_t *h, int64_t at, int64_t id)
{
    if (funnel_grow(&h->v, &h->cap, h->n + 1, sizeof *h->v, 1024))
        return FUNNEL_ENOMEM;
    funnel_timer_entry_t e = {at, id};
    size_t i = h->n++;
    while (i > 0 && before(&e, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return 0;
}

int funnel_timerheap_peek(const funnel_timerheap_t *h, funnel_timer_entry_t *out)
{
    if (!h->n)
        return FUNNEL_ENOTFOUND;
    *out = h->v[0];
    return 0;
}

int funnel_timerheap_pop(funnel_timerheap_t *h, funnel_timer_entry_t *out)
{
    if (!h->n)
        return FUNNEL_ENOTFOUND;
    *out = h->v[0];
    funnel_timer_entry_t last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return 0;
}

size_t funnel_timerheap_size(const funnel_timerheap_t *h)
{
    return h->n;
}

void funnel_timerheap_clear(funnel_timerheap_t *h)
{
    h->n = 0;
}
