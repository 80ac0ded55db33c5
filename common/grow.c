/* grow.c — see grow.h. */
#include "funnel/grow.h"

#include "funnel/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int funnel_grow(void *arrp, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : (first ? first : 1);
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return FUNNEL_ENOMEM;
        c *= 2;
    }
    if (elem && c > SIZE_MAX / elem)
        return FUNNEL_ENOMEM;
    /* The pointer is copied through memcpy: arrp points at a pointer of some other type. */
    void *old;
    memcpy(&old, arrp, sizeof old);
    void *p = realloc(old, c * elem);
    if (!p)
        return FUNNEL_ENOMEM;
    memcpy(arrp, &p, sizeof p);
    *cap = c;
    return 0;
}
