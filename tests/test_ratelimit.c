/* test_ratelimit.c — the refusal log limiter: first N a window, then one summary with the count,
 * driven by an injected clock. */
#include "ratelimit.h"

#include <criterion/criterion.h>

#define MIN 60000

/* Hits at now_ms; returns how many of n were let through, the last summary in *summary. */
static unsigned hits(funnel_ratelimit_t *rl, int64_t now_ms, unsigned n, uint64_t limit,
                     uint64_t *summary)
{
    unsigned passed = 0;
    uint64_t s, last = 0;
    for (unsigned i = 0; i < n; i++) {
        passed += funnel_ratelimit_hit(rl, now_ms, MIN, limit, &s);
        last = s ? s : last;
    }
    *summary = last;
    return passed;
}

Test(ratelimit, first_n_a_window_pass_the_rest_are_counted)
{
    funnel_ratelimit_t rl = {0};
    uint64_t summary;
    cr_assert_eq(hits(&rl, 1000, 50, 20, &summary), 20);
    cr_assert_eq(summary, 0, "no summary before the window ends");
    cr_assert_eq(hits(&rl, 1000 + MIN - 1, 5, 20, &summary), 0, "still the same window");
    /* The first hit of the next window hands over the count once and is itself let through. */
    cr_assert_eq(hits(&rl, 1000 + MIN, 1, 20, &summary), 1);
    cr_assert_eq(summary, 35);
    cr_assert_eq(hits(&rl, 1000 + MIN + 1, 19, 20, &summary), 19);
    cr_assert_eq(summary, 0, "the summary is handed over once");
}

Test(ratelimit, a_quiet_window_gives_no_summary)
{
    funnel_ratelimit_t rl = {0};
    uint64_t summary;
    cr_assert_eq(hits(&rl, 5, 3, 20, &summary), 3);
    cr_assert_eq(hits(&rl, 5 + 10 * MIN, 3, 20, &summary), 3);
    cr_assert_eq(summary, 0);
}

Test(ratelimit, a_clock_going_back_starts_a_new_window)
{
    funnel_ratelimit_t rl = {0};
    uint64_t summary;
    cr_assert_eq(hits(&rl, 10 * MIN, 4, 2, &summary), 2);
    cr_assert_eq(hits(&rl, 9 * MIN, 1, 2, &summary), 1);
    cr_assert_eq(summary, 2);
}

Test(ratelimit, zero_lets_nothing_through_and_drain_gives_the_count)
{
    funnel_ratelimit_t rl = {0};
    uint64_t summary;
    cr_assert_eq(hits(&rl, 0, 7, 0, &summary), 0);
    cr_assert_eq(funnel_ratelimit_drain(&rl), 7);
    cr_assert_eq(funnel_ratelimit_drain(&rl), 0);
}
