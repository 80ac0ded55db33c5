/* ratelimit.c — fixed windows, not a token bucket: "N lines a minute, then one summary" is
 * what an operator reads, and a window needs two counters, no division. */
#include "ratelimit.h"

bool funnel_ratelimit_hit(funnel_ratelimit_t *rl, int64_t now_ms, int64_t window_ms, uint64_t limit,
                          uint64_t *summary)
{
    *summary = 0;
    bool fresh = rl->seen == 0 || now_ms < rl->start_ms || now_ms - rl->start_ms >= window_ms;
    if (fresh) {
        *summary = funnel_ratelimit_drain(rl);
        rl->start_ms = now_ms;
    }
    if (rl->seen++ < limit)
        return true;
    rl->suppressed++;
    return false;
}

uint64_t funnel_ratelimit_drain(funnel_ratelimit_t *rl)
{
    uint64_t n = rl->suppressed;
    rl->seen = 0;
    rl->suppressed = 0;
    return n;
}
