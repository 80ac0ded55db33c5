/* server_timers.c — engine deadlines (SLA steps, quota periods): one uv timer armed for the
 * earliest, and the transaction that runs what is due and publishes it after COMMIT. */
#include "server_internal.h"
#include "funnel/error.h"

#define TIMER_RETRY_MS 1000 /* after a failed timer transaction */

static void on_engine_timer(uv_timer_t *h);

/* Publishes the engines' open-item counts to the metrics endpoint. */
static void metrics_engines(funnel_server_t *srv)
{
    const char *name;
    int64_t open;
    for (size_t i = 0; srv->metrics && i < FUNNEL_ROUTER_MAX_ENGINES; i++)
        if (funnel_router_open_items(srv->router, i, &name, &open) == 0)
            funnel_metrics_engine_open(srv->metrics, i, name, open);
}

/* Arms one uv timer for the earliest engine deadline. Deadlines are event times on the
 * injected clock, so the delay is computed against it; one already due fires on the next pass. */
void server_timers_arm(funnel_server_t *srv)
{
    metrics_engines(srv); /* runs after every batch and timer pass, when counts change */
    int64_t next = funnel_router_next_deadline(srv->router);
    if (next == INT64_MAX || srv->stopping) {
        uv_timer_stop(&srv->engine_timer);
        return;
    }
    int64_t delay = next - server_now_ms(srv);
    uv_timer_start(&srv->engine_timer, on_engine_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* Runs what the engines have due in one transaction, then publishes it. */
static void on_engine_timer(uv_timer_t *h)
{
    funnel_server_t *srv = h->data;
    int64_t now = server_now_ms(srv);
    int64_t due = funnel_router_next_deadline(srv->router);
    funnel_store_t *st = srv->store;
    if (due != INT64_MAX)
        funnel_metrics_timer_lag(srv->metrics, (uint64_t)(now > due ? now - due : 0));
    int rc = funnel_store_begin(st);
    if (!rc) {
        rc = funnel_router_fire_timers(srv->router, now);
        rc = rc ? rc : funnel_store_published_set(st, srv->published_seq);
        rc = rc ? rc : funnel_store_commit(st);
        if (rc) {
            funnel_store_rollback(st);
            funnel_router_rolled_back(srv->router);
        }
    }
    if (rc) {
        funnel_log_error(srv->log, "engine timers failed: %s: %s; retrying in %d ms",
                         funnel_strerror(rc), funnel_store_errmsg(st), TIMER_RETRY_MS);
        uv_timer_start(h, on_engine_timer, TIMER_RETRY_MS, 0);
        return;
    }
    server_publish_pending(srv);
    server_timers_arm(srv);
}
