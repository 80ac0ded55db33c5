/* server_housekeeping.c — what keeps funneld tidy beside the traffic: the systemd watchdog,
 * retention pruning in small time-bounded transactions, the publish of output committed but not
 * published before a restart, and the outbox gauge. */
#include "server_internal.h"
#include "funnel/error.h"

#include <systemd/sd-daemon.h>

void server_on_watchdog(uv_timer_t *h)
{
    (void)h;
    sd_notify(0, "WATCHDOG=1");
}

/* Deletes published outbox rows older than the retention, a chunk at a time. */
/* The outbox's oldest retained sequence, for the backlog gauge; read at start and after a
 * prune, the only times it changes. */
void server_metrics_outbox_refresh(funnel_server_t *srv)
{
    uint64_t first = 0, last = 0;
    if (srv->metrics && funnel_store_outbox_bounds(srv->store, &first, &last) == 0)
        funnel_metrics_outbox_first(srv->metrics, first);
}

/* One small prune transaction; returns how many rows went (0 after a failure, logged). */
static size_t prune_chunk(funnel_server_t *srv, int64_t before)
{
    size_t deleted = 0, dead = 0;
    if (funnel_store_begin(srv->store))
        return 0;
    int rc =
        funnel_store_outbox_prune(srv->store, before, srv->published_seq, PRUNE_CHUNK, &deleted);
    if (!rc) /* same retention: refusals are diagnostics, not an archive */
        rc = funnel_store_dead_letters_prune(srv->store, before, PRUNE_CHUNK, &dead);
    if (rc || funnel_store_commit(srv->store)) {
        funnel_store_rollback(srv->store);
        funnel_log_error(srv->log, "retention prune failed: %s", funnel_store_errmsg(srv->store));
        return 0;
    }
    if (deleted || dead)
        funnel_log_debug(srv->log, "retention: pruned %zu output messages, %zu dead letters",
                         deleted, dead);
    return deleted > dead ? deleted : dead;
}

int server_dead_letters_usage(funnel_server_t *srv)
{
    int rc = funnel_store_dead_letters_usage(srv->store, &srv->dead_rows, &srv->dead_bytes);
    if (rc)
        funnel_log_error(srv->log, "dead letters not counted: %s", funnel_store_errmsg(srv->store));
    return rc;
}

static bool dead_letters_over(const funnel_server_t *srv)
{
    return srv->dead_rows > srv->cfg.dead_letter_max_rows ||
           srv->dead_bytes > srv->cfg.dead_letter_max_bytes;
}

/* How many of the oldest dead letters to delete to get under 90% of both bounds: trimming
 * below the bound, not to it, means a flood pays one trim per tenth of the bound instead of
 * one per refusal. Bytes are turned into rows at the average row size; the caller loops if the
 * oldest rows were smaller. At most PRUNE_CHUNK, so one statement stays short. */
static size_t dead_letters_excess(const funnel_server_t *srv)
{
    int64_t rows = srv->dead_rows - srv->cfg.dead_letter_max_rows / 10 * 9;
    int64_t bytes = srv->dead_bytes - srv->cfg.dead_letter_max_bytes / 10 * 9;
    int64_t avg = srv->dead_rows ? srv->dead_bytes / srv->dead_rows : 1;
    int64_t by_bytes = bytes > 0 ? bytes / (avg ? avg : 1) + 1 : 0;
    int64_t n = rows > by_bytes ? rows : by_bytes;
    return n < 1 ? 1 : n > PRUNE_CHUNK ? PRUNE_CHUNK : (size_t)n;
}

/* Inside the open transaction, deletes the oldest dead letters while either bound
 * (dead_letter_max_rows, dead_letter_max_bytes) is crossed. Returns 0 or the store's error. */
int server_dead_letters_bound(funnel_server_t *srv)
{
    while (dead_letters_over(srv)) {
        size_t deleted;
        int64_t bytes;
        int rc =
            funnel_store_dead_letters_trim(srv->store, dead_letters_excess(srv), &deleted, &bytes);
        if (rc)
            return rc;
        if (!deleted) /* the table is empty: the counts were off; they are exact again */
            return server_dead_letters_usage(srv);
        srv->dead_rows -= (int64_t)deleted;
        srv->dead_bytes -= bytes;
    }
    return 0;
}

/* After the age prune: the exact counts again, and the bounds applied (a reload may have
 * lowered them). */
static void dead_letters_recount(funnel_server_t *srv)
{
    if (server_dead_letters_usage(srv) || !dead_letters_over(srv))
        return;
    if (funnel_store_begin(srv->store))
        return;
    if (server_dead_letters_bound(srv) || funnel_store_commit(srv->store)) {
        funnel_store_rollback(srv->store);
        funnel_log_error(srv->log, "dead-letter trim failed: %s", funnel_store_errmsg(srv->store));
        server_dead_letters_usage(srv);
    }
}

/* Deletes published outbox rows and dead letters older than the retention. Everything else on
 * the loop (acks, publishes, replays, timers) waits while it runs, so it works in small
 * transactions for at most PRUNE_BUDGET_NS of loop time, then lets the loop run and goes on at
 * its next pass while a chunk came back full. */
void server_on_prune(uv_timer_t *h)
{
    funnel_server_t *srv = h->data;
    int64_t before = server_now_ms(srv) - srv->cfg.retention_days * 86400000LL;
    uint64_t started = uv_hrtime();
    bool more;
    do
        more = prune_chunk(srv, before) == PRUNE_CHUNK;
    while (more && uv_hrtime() - started < PRUNE_BUDGET_NS);
    dead_letters_recount(srv);
    server_metrics_outbox_refresh(srv);
    uv_timer_start(h, server_on_prune, more ? 0 : PRUNE_PERIOD_MS, 0);
}

/* Publishes what a previous run committed but may not have published before it died. */
static int publish_backlog_row(const funnel_outbox_row_t *row, void *arg)
{
    server_publish_row(arg, row);
    return 0;
}

void server_publish_backlog(funnel_server_t *srv)
{
    uint64_t from = srv->published_seq + 1, before;
    do {
        before = srv->stats.published;
        if (funnel_store_outbox_read(srv->store, from, REPLAY_CHUNK, publish_backlog_row, srv))
            break;
        from = srv->published_seq + 1;
    } while (srv->stats.published - before == REPLAY_CHUNK);
    if (srv->stats.published)
        funnel_log_info(srv->log,
                        "republished %llu committed output messages from before the "
                        "restart",
                        (unsigned long long)srv->stats.published);
}
