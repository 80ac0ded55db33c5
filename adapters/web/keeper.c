/* keeper.c — the page's default queries, computed in the background at start and after each
 * commit, so that a page load never waits on a cold computation (the first load after start
 * used to wait seconds at a million leads for the attribution of all time and compliance).
 *
 * The keeper sends the page's own requests through the API (api.c) as an internal admin, so
 * its answers are the very ones a request would compute (the same figures as funnelctl's); the
 * cache files them as kept (cache.c): while the keeper recomputes one after a commit, a request
 * is served its last answer if that is recent enough, with an Age header. */
#include "web.h"

#include "funnel/date.h"

#include <stdlib.h>

/* The first day (UTC) of the last `weeks` Monday weeks: the page's compliance from= (app.js
 * weeksBack). */
static void weeks_back(int64_t now_ms, int weeks, char out[16])
{
    int64_t day = now_ms / 86400000, monday = day - (day + 3) % 7;
    funnel_date_format((monday - 7 * (weeks - 1)) * 86400000, out, 16);
}

void funnel_web_keep(funnel_web_t *web, int64_t now_ms)
{
    static const char *const by_campaign[] = {"by", "campaign", NULL};
    static const char *const by_channel[] = {"by", "channel", NULL};
    static const char *const all_models[] = {"by", "campaign", "model", "all", NULL};
    char from[16];
    weeks_back(now_ms, 4, from);
    const char *const four_weeks[] = {"by", "owner", "per", "week", "from", from, NULL};
    const struct {
        const char *sub;
        const char *const *args;
    } page[] = {{"funnel", by_campaign},
                {"funnel", by_channel},
                {"sla/compliance", four_weeks},
                {"attribution", all_models}};
    const funnel_web_principal_t who = {.name = "funnel-web", .role = FUNNEL_WEB_ROLE_ADMIN};
    for (size_t i = 0; i < sizeof page / sizeof page[0]; i++) {
        funnel_web_req_t req = {.web = web,
                                .method = "GET",
                                .path = page[i].sub,
                                .who = &who,
                                .now_ms = now_ms,
                                .args = page[i].args,
                                .keeper = true};
        funnel_web_reply_t r = {0};
        funnel_web_api(&req, page[i].sub, &r);
        free(r.body); /* filed in the cache by the route; a failure is retried next time */
    }
}
