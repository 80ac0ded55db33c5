/* grow.h — room in a growing array, the one way every module grows one.
 *
 * arrp is the address of the array pointer (any element type: `&v->items`), *cap its capacity
 * in elements. funnel_grow makes room for at least need elements, doubling from first (or
 * from *cap), and updates both. Returns 0, or FUNNEL_ENOMEM when realloc fails or the size
 * would overflow size_t; the array and *cap are then untouched. Not thread-safe per array. */
#ifndef FUNNEL_GROW_H
#define FUNNEL_GROW_H

#include <stddef.h>

int funnel_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t first);

#endif
