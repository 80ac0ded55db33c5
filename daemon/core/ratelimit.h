/* ratelimit.h — "the first N a minute, then a count": a fixed-window limiter for log lines.
 *
 * A flood of refusals must not grow the log without bound, yet an operator needs to see that
 * it happened and how big it was. One funnel_ratelimit_t per kind of line (per refusal reason):
 * the first `limit` hits of a window are let through, the rest only counted, and the count is
 * handed back once, with the first hit after the window ended, for one summary line. The clock
 * is passed in (`now_ms`), so tests drive the windows. Plain data: zero it, no destroy. */
#ifndef FUNNEL_RATELIMIT_H
#define FUNNEL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct funnel_ratelimit {
    int64_t start_ms;    /* start of the current window; 0 with seen == 0: none yet */
    uint64_t seen;       /* hits in the current window */
    uint64_t suppressed; /* of which not let through */
} funnel_ratelimit_t;

/* Counts one hit at now_ms against at most `limit` let through per window of window_ms. Returns
 * true when this hit may be logged. *summary receives the number of hits suppressed in a window
 * that has just ended (0: no summary due); the caller logs it before this hit's own line. A
 * clock that went backwards starts a new window, like one that went forward past it. */
bool funnel_ratelimit_hit(funnel_ratelimit_t *rl, int64_t now_ms, int64_t window_ms, uint64_t limit,
                          uint64_t *summary);

/* The count suppressed so far in the current window (a final summary at shutdown) and a fresh
 * window; 0 when none was suppressed. */
uint64_t funnel_ratelimit_drain(funnel_ratelimit_t *rl);

#endif
