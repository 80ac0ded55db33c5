/* test_grow.c — funnel_grow: doubling from the first capacity, keeping the contents, and
 * refusing a size that would overflow without touching the array. */
#include "funnel/error.h"
#include "funnel/grow.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

Test(grow, doubles_from_first_and_keeps_the_contents)
{
    int *v = NULL;
    size_t cap = 0;
    cr_assert_eq(funnel_grow(&v, &cap, 1, sizeof *v, 4), 0);
    cr_assert_eq(cap, 4);
    for (int i = 0; i < 4; i++)
        v[i] = i;
    cr_assert_eq(funnel_grow(&v, &cap, 4, sizeof *v, 4), 0, "room enough: nothing to do");
    cr_assert_eq(cap, 4);
    cr_assert_eq(funnel_grow(&v, &cap, 9, sizeof *v, 4), 0);
    cr_assert_eq(cap, 16, "doubled until need fits");
    for (int i = 0; i < 4; i++)
        cr_assert_eq(v[i], i);
    free(v);
}

Test(grow, an_overflowing_size_is_refused_and_changes_nothing)
{
    char *v = NULL;
    size_t cap = 0;
    cr_assert_eq(funnel_grow(&v, &cap, 8, 1, 8), 0);
    char *before = v;
    cr_assert_eq(funnel_grow(&v, &cap, SIZE_MAX, 1, 8), FUNNEL_ENOMEM);
    cr_assert_eq(funnel_grow(&v, &cap, SIZE_MAX / 4, 16, 8), FUNNEL_ENOMEM);
    cr_assert_eq(v, before);
    cr_assert_eq(cap, 8);
    free(v);
}
