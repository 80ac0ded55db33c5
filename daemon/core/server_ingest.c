/* server_ingest.c — input to COMMIT to answers: messages read from the SUB and submit sockets
 * are decoded and validated at once, queued in the batch, committed in one transaction (with a
 * savepoint per event only after a failure), then acknowledged and their outputs published. A
 * database busy or full keeps the batch and retries it without blocking the loop. */
#include "server_internal.h"
#include "funnel/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static funnel_codec_limits_t limits_of(const funnel_server_t *srv)
{
    return (funnel_codec_limits_t){
        .max_message_bytes = (size_t)srv->cfg.max_message_bytes,
        .max_future_ms = srv->cfg.max_future_ms,
    };
}

/* ---- replies ------------------------------------------------------------------------- */

/* Sends [ident][delimiter?][parts...] on a ROUTER socket. */
int server_peer_send(funnel_zsock_t *zs, const peer_t *peer, const void *const *parts,
                     const size_t *lens, size_t n)
{
    const void *p[8];
    size_t l[8];
    size_t k = 0;
    p[k] = peer->ident;
    l[k++] = peer->ident_len;
    if (peer->delimiter) {
        p[k] = "";
        l[k++] = 0;
    }
    for (size_t i = 0; i < n && k < 8; i++, k++) {
        p[k] = parts[i];
        l[k] = lens[i];
    }
    return funnel_zsock_sendv(zs, p, l, k);
}

static void item_reply(funnel_server_t *srv, const item_t *it)
{
    char status[sizeof it->why.text + 16];
    if (!it->peer.ident_len || it->status == ITEM_FAILED)
        return;
    if (it->status == ITEM_OK)
        snprintf(status, sizeof status, "ok");
    else if (it->status == ITEM_DUPLICATE)
        snprintf(status, sizeof status, "duplicate");
    else if (it->status == ITEM_UNAVAILABLE)
        snprintf(status, sizeof status, "unavailable: disk full");
    else
        snprintf(status, sizeof status, "rejected: %s", it->why.text);
    const char *id = it->long_id ? it->long_id : it->event_id;
    const void *parts[] = {id, status};
    size_t lens[] = {strlen(id), strlen(status)};
    server_peer_send(srv->submit, &it->peer, parts, lens, 2);
}

/* ---- batch ---------------------------------------------------------------------------- */

/* Releases what an item holds; the slot is initialised again by batch_slot before reuse. */
void server_item_clear(item_t *it)
{
    it->env = NULL;
    free(it->long_id);
    it->long_id = NULL;
    free(it->auth_source);
    it->auth_source = NULL;
    it->claimed_source = NULL;
    funnel_envelope_arena_clear(&it->mem);
    zmq_msg_close(&it->body);
}

/* The kept envelope bytes of an item: NULL and 0 when none were kept. */
static const uint8_t *item_bytes(item_t *it, size_t *len)
{
    *len = zmq_msg_size(&it->body);
    return *len ? zmq_msg_data(&it->body) : NULL;
}

void server_publish_row(funnel_server_t *srv, const funnel_outbox_row_t *row)
{
    uint8_t seq[8];
    funnel_seq_encode(row->seq, seq);
    const void *parts[] = {row->topic, seq, row->envelope};
    size_t lens[] = {strlen(row->topic), 8, row->len};
    /* PUB never blocks: a subscriber over its high-water mark loses messages and replays. */
    funnel_zsock_sendv(srv->pub, parts, lens, 3);
    srv->published_seq = row->seq;
    srv->stats.published++;
    funnel_metrics_published(srv->metrics, row->seq);
}

/* Stores a refused item as a dead letter inside the open transaction. A flood of refusals must
 * not fill the disk: only the first DEAD_PAYLOADS_PER_MIN payloads a minute are stored, later
 * ones keep their metadata and size only; a submit peer over its budget stores nothing; and
 * past dead_letter_max_rows or _bytes the oldest rows go (server_dead_letters_bound). */
static void dead_letter_add(funnel_server_t *srv, item_t *it, int64_t now)
{
    if (it->over_budget)
        return;
    size_t len;
    const uint8_t *raw = item_bytes(it, &len);
    int64_t mono = (int64_t)uv_now(&srv->loop);
    if (mono - srv->dead_window_ms >= 60000) {
        srv->dead_window_ms = mono;
        srv->dead_payloads = 0;
    }
    if (len && srv->dead_payloads++ >= DEAD_PAYLOADS_PER_MIN) {
        raw = NULL;
        len = 0;
    }
    funnel_dead_letter_t dl = {
        .received_at_ms = now,
        .topic = it->topic,
        .event_id = it->event_id,
        .reason = funnel_refusal_name(it->why.code),
        .detail = it->why.text,
        .payload = raw,
        .payload_len = len,
        .payload_size = it->raw_size,
    };
    if (funnel_store_dead_letter_add(srv->store, &dl)) {
        funnel_log_error(srv->log, "dead letter not recorded: %s", funnel_store_errmsg(srv->store));
        return;
    }
    srv->dead_rows++;
    srv->dead_bytes += (int64_t)funnel_dead_letter_bytes(&dl);
    /* A failed trim leaves the rows: the bound is crossed until the next refusal or prune. */
    if (server_dead_letters_bound(srv))
        funnel_log_error(srv->log, "dead-letter trim failed: %s", funnel_store_errmsg(srv->store));
}

/* Logs a refusal: at most refusal_log_per_minute lines per reason a minute, then one summary
 * line with the count, so a flood of bad input costs a bounded log. */
static void refusal_log(funnel_server_t *srv, const item_t *it)
{
    uint64_t summary;
    bool line = funnel_ratelimit_hit(&srv->refusal_log[it->why.code], server_now_ms(srv),
                                     REFUSAL_LOG_WINDOW_MS,
                                     (uint64_t)srv->cfg.refusal_log_per_minute, &summary);
    if (summary)
        funnel_log_warn(srv->log,
                        "refused %llu more messages (%s) in the last minute: log lines "
                        "suppressed beyond refusal_log_per_minute=%lld",
                        (unsigned long long)summary, funnel_refusal_name(it->why.code),
                        (long long)srv->cfg.refusal_log_per_minute);
    if (line)
        funnel_log_warn(srv->log, "refused %s event_id=%s: %s", it->topic[0] ? it->topic : "-",
                        it->event_id[0] ? it->event_id : "-", it->why.text);
}

/* Writes one item inside the open transaction: a refusal as a dead letter, an event through the
 * router. Guarded, the event runs in its own savepoint, so a failure undoes its rows alone, marks
 * it failed and is logged; an engine's refusal (FUNNEL_EREFUSED) undoes them too and turns the
 * item into a dead-lettered refusal; 0 is returned. Unguarded, a failure or refusal leaves the
 * event's partial rows in the transaction and is returned for batch_txn to roll everything
 * back; so is a savepoint that could not be released or rolled back, since the transaction then
 * holds an unknown part of an event (the store refuses to commit it). */
static int route_item(funnel_server_t *srv, item_t *it, int64_t now, bool guarded)
{
    funnel_store_t *st = srv->store;
    size_t len;
    const uint8_t *raw = item_bytes(it, &len);
    if (!it->env) {
        dead_letter_add(srv, it, now);
        return 0;
    }
    int rc = guarded ? funnel_store_savepoint(st) : 0;
    if (!rc)
        rc = funnel_router_apply_claimed(srv->router, it->env, it->claimed_source, it->topic, raw,
                                         len, now);
    if (rc == 0 || rc == FUNNEL_EDUP) {
        if (guarded && funnel_store_savepoint_release(st))
            return FUNNEL_ESTORE;
        it->status = rc ? ITEM_DUPLICATE : ITEM_OK;
        return 0;
    }
    if (!guarded)
        return rc;
    int undone = funnel_store_savepoint_rollback(st);
    funnel_router_rolled_back(srv->router);
    if (undone)
        return undone;
    if (rc == FUNNEL_EREFUSED) {
        it->why = *funnel_router_refusal(srv->router);
        it->status = ITEM_REFUSED;
        dead_letter_add(srv, it, now);
        return 0;
    }
    it->status = ITEM_FAILED;
    funnel_log_error(srv->log, "event %s (%s) not recorded: %s: %s", it->event_id, it->topic,
                     funnel_strerror(rc), funnel_store_errmsg(st));
    return 0;
}

/* One attempt at the transaction of the batch's first n items: route each, persist the publish
 * cursor, commit. Returns 0 once committed, FUNNEL_EAGAIN when an unguarded event failed, or the
 * error that failed the transaction; on any error the transaction is rolled back. */
static int batch_txn(funnel_server_t *srv, size_t n, int64_t now, bool guarded)
{
    funnel_store_t *st = srv->store;
    int64_t dead_rows = srv->dead_rows, dead_bytes = srv->dead_bytes;
    int rc = funnel_store_begin(st);
    for (size_t i = 0; !rc && i < n; i++)
        if (route_item(srv, &srv->batch[i], now, guarded))
            rc = FUNNEL_EAGAIN;
    rc = rc ? rc : funnel_store_published_set(st, srv->published_seq);
    rc = rc ? rc : funnel_store_commit(st);
    if (rc) {
        funnel_store_rollback(st);
        funnel_router_rolled_back(srv->router);
        srv->dead_rows = dead_rows; /* the rolled-back dead letters and trims never were */
        srv->dead_bytes = dead_bytes;
    }
    return rc;
}

/* Publishes the outbox rows of the transaction just committed; returns how many. */
size_t server_publish_pending(funnel_server_t *srv)
{
    const funnel_outbox_row_t *rows;
    size_t n = funnel_store_outbox_pending(srv->store, &rows);
    for (size_t i = 0; i < n; i++)
        server_publish_row(srv, &rows[i]);
    funnel_store_outbox_pending_clear(srv->store);
    return n;
}

void server_timers_arm(funnel_server_t *srv);
static void on_flush_timer(uv_timer_t *h);
void server_on_ingest(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);
void server_on_submit(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg);

/* Stops (hold) or resumes reading the sub and submit sockets. Held, their messages wait in
 * ZeroMQ's queues up to the high-water marks, which then push back on the senders, so memory
 * stays bounded while the database is locked. bus.h's pause is one-way (for shutdown), so a
 * socket is held by restarting it without a callback, which drains its edge without reading;
 * resuming restarts it with its callback and reads what waits at once. */
static void ingest_hold(funnel_server_t *srv, bool hold)
{
    if (srv->ingest_held == hold || srv->stopping)
        return;
    srv->ingest_held = hold;
    funnel_log_info(srv->log,
                    hold ? "batch full while the database is busy: input held" : "input resumed");
    funnel_zsock_t *socks[] = {srv->sub, srv->submit};
    funnel_zsock_recv_cb cbs[] = {server_on_ingest, server_on_submit};
    /* Resuming reads at once, which may fill a batch, meet a busy database again and hold
     * input from inside this loop: then the remaining socket must stay held. */
    for (size_t i = 0; i < 2 && srv->ingest_held == hold; i++)
        if (funnel_zsock_start(socks[i], hold ? NULL : cbs[i], srv, DRAIN_BUDGET))
            funnel_log_error(srv->log, "cannot %s ingest socket %zu", hold ? "hold" : "resume", i);
}

/* Moves an item to another slot. Items hold a zmq_msg_t, which libzmq allows to be relocated
 * only with zmq_msg_move; the source slot is left empty, to be initialised again before reuse. */
static void item_move(item_t *dst, item_t *src)
{
    *dst = *src;
    zmq_msg_init(&dst->body);
    zmq_msg_move(&dst->body, &src->body);
}

/* Memory an item kept while the disk is full takes: its slot and its envelope. */
static uint64_t item_footprint(const item_t *it)
{
    return sizeof *it + it->raw_size;
}

static bool full_divert(funnel_server_t *srv, item_t *it);

/* The batch as the disk-full rules want it (full_divert, item by item): submitters answered and
 * dropped, SUB input kept up to disk_full_buffer_bytes. */
static void batch_trim_for_full(funnel_server_t *srv)
{
    size_t kept = 0;
    srv->kept_bytes = 0;
    for (size_t i = 0; i < srv->n_batch; i++) {
        item_t *it = &srv->batch[i];
        if (full_divert(srv, it))
            continue;
        if (kept != i)
            item_move(&srv->batch[kept], it);
        kept++;
    }
    srv->n_batch = kept;
}

/* A failed attempt that may succeed later unchanged: the database was locked by another
 * connection (busy), or the disk was full. Nothing was written. Dropping the batch would lose
 * the SUB input, whose publishers expect no ack and never resend, so it is kept and tried again
 * on a timer, after a delay doubling from BUSY_RETRY_MIN_MS to BUSY_RETRY_MAX_MS; the loop
 * never waits for the database.
 * Busy: the kept batch stays unanswered; new input joins it up to batch_max, then reading stops
 * until a commit succeeds (a lock is short-lived). Disk full: it may last hours, so submitters
 * get a retryable "unavailable: disk full" at once and reading goes on; SUB input is kept in
 * memory up to disk_full_buffer_bytes (batch_add), and each attempt commits at most batch_max
 * of it, so a failed attempt writes at most one batch into the WAL instead of all of it. */
static void batch_keep(funnel_server_t *srv, bool full)
{
    uint64_t delay = srv->busy_retry_ms ? 2 * srv->busy_retry_ms : BUSY_RETRY_MIN_MS;
    srv->busy_retry_ms = delay < BUSY_RETRY_MAX_MS ? delay : BUSY_RETRY_MAX_MS;
    if (full && !srv->disk_full)
        funnel_log_error(srv->log,
                         "disk full (%s): submits are answered \"unavailable: disk full\"; up to "
                         "%lld bytes of SUB input are kept in memory until space returns",
                         funnel_store_errmsg(srv->store),
                         (long long)srv->cfg.disk_full_buffer_bytes);
    srv->disk_full = full;
    if (full)
        batch_trim_for_full(srv);
    funnel_log_warn(srv->log, "%s (%s): %zu events kept, retrying in %llu ms",
                    full ? "disk full" : "database busy", funnel_store_errmsg(srv->store),
                    srv->n_batch, (unsigned long long)srv->busy_retry_ms);
    uv_timer_start(&srv->flush_timer, on_flush_timer, srv->busy_retry_ms, 0);
    ingest_hold(srv, !full && (int64_t)srv->n_batch >= srv->cfg.batch_max);
}

/* Drops the first n (finished) items: the rest move to the front. */
static void batch_shift(funnel_server_t *srv, size_t n)
{
    for (size_t i = n; i < srv->n_batch; i++)
        item_move(&srv->batch[i - n], &srv->batch[i]);
    srv->n_batch -= n;
}

/* The first commit after a full disk: say what the spell cost. */
static void disk_full_over(funnel_server_t *srv)
{
    funnel_log_info(srv->log,
                    "disk space is back: committing the kept SUB input; %llu SUB messages were "
                    "lost beyond disk_full_buffer_bytes",
                    (unsigned long long)srv->full_lost);
    srv->disk_full = false;
    srv->kept_bytes = 0;
    srv->full_lost = 0;
}

/* Commits the batch in one transaction, then acks and publishes.
 *
 * A savepoint per event costs two statements and makes SQLite copy every page the event
 * touches into the sub-journal, so the batch first runs without any. Only when an event fails
 * is that transaction rolled back and the batch run again with a savepoint per event, so the
 * failure sinks that event alone, as before. Engines may thus see an event twice, the first
 * time in a transaction that is rolled back (router.h). A database busy or full is no failure
 * of the batch: it is kept and tried again (batch_keep); input kept while the disk was full is
 * committed batch_max at a time. */
void server_batch_flush(funnel_server_t *srv)
{
    uv_timer_stop(&srv->flush_timer);
    if (srv->n_batch == 0)
        return;
    funnel_store_t *st = srv->store;
    if (!srv->stopping && !srv->disk_full && funnel_store_checkpoint_pending(st)) {
        /* The WAL starts over only at a commit that finds it all copied back: this one waits
         * for the checkpointer's pass (store.h), reading on up to batch_max meanwhile. */
        uv_timer_start(&srv->flush_timer, on_flush_timer, CKPT_POLL_MS, 0);
        ingest_hold(srv, (int64_t)srv->n_batch >= srv->cfg.batch_max);
        return;
    }
    int64_t now = server_now_ms(srv);
    /* Only input kept while the disk was full outgrows batch_max: it goes a slice at a time. */
    size_t n = srv->n_batch;
    if ((int64_t)n > srv->cfg.batch_max)
        n = (size_t)srv->cfg.batch_max;
    uint64_t started_ns = uv_hrtime(); /* commit latency for metrics, not engine time */
    int rc = batch_txn(srv, n, now, false);
    if (rc == FUNNEL_EAGAIN)
        rc = batch_txn(srv, n, now, true);
    bool busy = rc && funnel_store_busy(st), full = rc && funnel_store_full(st);
    funnel_metrics_commit(srv->metrics, n, (uv_hrtime() - started_ns) / 1000,
                          !rc    ? FUNNEL_METRICS_COMMITTED
                          : busy ? FUNNEL_METRICS_COMMIT_BUSY
                          : full ? FUNNEL_METRICS_COMMIT_FULL
                                 : FUNNEL_METRICS_COMMIT_ERROR);
    if (rc)
        srv->stats.commit_failures++;
    /* Once stopping there is no later attempt to wait for: the batch is given up. */
    if ((busy || full) && !srv->stopping) {
        batch_keep(srv, full);
        return;
    }
    srv->busy_retry_ms = 0;
    if (!rc && srv->disk_full)
        disk_full_over(srv);
    if (rc) {
        /* Publishers that asked for an ack get none and retry with the same event_id. */
        funnel_log_error(srv->log, "commit of %zu events failed: %s; none acknowledged", n,
                         funnel_store_errmsg(st));
        for (size_t i = 0; i < n; i++)
            srv->batch[i].status = ITEM_FAILED;
    } else {
        size_t published = server_publish_pending(srv);
        srv->stats.batches++;
        funnel_log_debug(srv->log, "committed a batch of %zu messages, published %zu", n,
                         published);
    }
    size_t lost = 0;
    for (size_t i = 0; i < n; i++) {
        item_t *it = &srv->batch[i];
        lost += it->status == ITEM_FAILED && !it->peer.ident_len;
        if (!rc && it->status == ITEM_REFUSED && it->env) {
            /* Refused by an engine: counted and logged once, now that the refusal is final. */
            srv->stats.refused[it->why.code]++;
            refusal_log(srv, it);
        }
        srv->stats.accepted += it->status == ITEM_OK;
        srv->stats.duplicates += it->status == ITEM_DUPLICATE;
        if (it->status != ITEM_FAILED)
            funnel_metrics_event(srv->metrics, it->topic,
                                 it->status == ITEM_OK          ? FUNNEL_METRICS_ACCEPTED
                                 : it->status == ITEM_DUPLICATE ? FUNNEL_METRICS_DUPLICATE
                                                                : FUNNEL_METRICS_REFUSED,
                                 it->why.code);
        item_reply(srv, it);
        server_item_clear(it);
    }
    /* Only SUB input is lost for good: a submitter that got no ack sends again. */
    funnel_metrics_lost(srv->metrics, rc ? FUNNEL_METRICS_LOST_COMMIT : FUNNEL_METRICS_LOST_EVENT,
                        lost);
    batch_shift(srv, n);
    if (srv->n_batch) /* input kept while the disk was full: the next slice on the next pass */
        uv_timer_start(&srv->flush_timer, on_flush_timer, 0, 0);
    server_timers_arm(srv); /* the batch may have added or settled engine deadlines */
    /* The acks are on their way: copying the WAL back now delays no one waiting for them. */
    if (funnel_store_checkpoint(st))
        funnel_log_warn(srv->log, "checkpoint failed: %s", funnel_store_errmsg(st));
    /* Last: reading again may fill and flush a new batch from inside this call. */
    ingest_hold(srv, false);
}

static void on_flush_timer(uv_timer_t *h)
{
    server_batch_flush(h->data);
}

/* Doubles the batch array. Items hold a zmq_msg_t, which libzmq allows to be relocated only
 * with zmq_msg_move, so they are moved one by one instead of realloc'ed. Happens only while the
 * array grows towards batch_max. */
static int batch_grow(funnel_server_t *srv)
{
    size_t cap = srv->cap_batch ? srv->cap_batch * 2 : 64;
    item_t *b = malloc(cap * sizeof *b);
    if (!b)
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < srv->n_batch; i++)
        item_move(&b[i], &srv->batch[i]);
    free(srv->batch); /* the moved-from messages are empty: nothing to close */
    srv->batch = b;
    srv->cap_batch = cap;
    return 0;
}

static item_t *batch_slot(funnel_server_t *srv)
{
    if (srv->n_batch == srv->cap_batch && batch_grow(srv))
        return NULL;
    item_t *it = &srv->batch[srv->n_batch];
    memset(it, 0, sizeof *it);
    zmq_msg_init(&it->body);
    return it;
}

/* The event_id of bytes that decode but failed validation: cut to fit it->event_id for the
 * log and the dead letter, and kept whole in it->long_id for the reply when it does not fit (if
 * that copy fails, the reply carries the cut id: the sender times out as it would on a lost
 * reply, and the refusal is still logged and dead-lettered). */
static void event_id_of(item_t *it, const uint8_t *data, size_t len)
{
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, len, data);
    if (!env)
        return;
    snprintf(it->event_id, sizeof it->event_id, "%s", env->event_id);
    if (strlen(env->event_id) >= sizeof it->event_id)
        it->long_id = strdup(env->event_id);
    funnel_envelope_free(&env);
}

static void copy_printable(char *dst, size_t dst_len, const void *src, size_t len)
{
    size_t n = len < dst_len - 1 ? len : dst_len - 1;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    dst[n] = '\0';
}

/* While the disk is full, an item is not kept like others: a submitter is answered at once (it
 * retries later, so nothing of it needs keeping) and SUB input is kept while it fits in
 * disk_full_buffer_bytes; beyond, it is lost, counted and logged once per spell. Returns true
 * when the item was not kept (and is cleared). */
static bool full_divert(funnel_server_t *srv, item_t *it)
{
    if (it->peer.ident_len) {
        it->status = ITEM_UNAVAILABLE;
        item_reply(srv, it);
    } else if (srv->kept_bytes + item_footprint(it) <= (uint64_t)srv->cfg.disk_full_buffer_bytes) {
        srv->kept_bytes += item_footprint(it);
        return false;
    } else {
        if (srv->full_lost++ == 0)
            funnel_log_error(srv->log,
                             "disk full and disk_full_buffer_bytes (%lld) reached: SUB input is "
                             "lost from now on until space returns",
                             (long long)srv->cfg.disk_full_buffer_bytes);
        funnel_metrics_lost(srv->metrics, FUNNEL_METRICS_LOST_DISK_FULL, 1);
    }
    server_item_clear(it);
    return true;
}

/* Counts a refusal against its submit peer's budget (refusal_budget_per_peer a minute); true
 * when the budget is spent. libzmq cannot drop one peer of a ROUTER (docs/protocol.md), so a
 * peer over budget is still answered, counted and (rate-limited) logged, but no longer
 * dead-lettered: one flooder cannot evict the other senders' dead letters. SUB input has no
 * peer identity without CURVE: only the global bounds apply to it. */
static bool peer_over_budget(funnel_server_t *srv, const peer_t *peer)
{
    if (!peer->ident_len)
        return false;
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (size_t i = 0; i < peer->ident_len; i++)
        h = (h ^ peer->ident[i]) * 1099511628211ULL;
    peer_budget_t *slot = &srv->peer_budget[h % PEER_BUDGET_SLOTS];
    if (slot->peer.ident_len != peer->ident_len ||
        memcmp(slot->peer.ident, peer->ident, peer->ident_len)) {
        memset(slot, 0, sizeof *slot);
        slot->peer = *peer;
    }
    uint64_t summary;
    return !funnel_ratelimit_hit(&slot->refusals, server_now_ms(srv), REFUSAL_LOG_WINDOW_MS,
                                 (uint64_t)srv->cfg.refusal_budget_per_peer, &summary);
}

/* With security, an accepted event's source is the client's name, in the event row and in the
 * bytes recorded, republished and replayed; the claimed one is kept for the row's
 * claimed_source. The envelope is packed again with the new source: subscribers must not see
 * a claim funneld did not check. Returns 0 or FUNNEL_ENOMEM (the item is then refused). */
static int item_authenticate(item_t *it, const char *user)
{
    zmq_msg_t packed;
    if (!(it->auth_source = strdup(user)))
        return FUNNEL_ENOMEM;
    it->claimed_source = it->env->source;
    it->env->source = it->auth_source;
    size_t len = funnel__v1__envelope__get_packed_size(it->env);
    if (zmq_msg_init_size(&packed, len)) {
        it->env->source = (char *)it->claimed_source;
        return FUNNEL_ENOMEM;
    }
    funnel__v1__envelope__pack(it->env, zmq_msg_data(&packed));
    zmq_msg_close(&it->body);
    zmq_msg_init(&it->body);
    zmq_msg_move(&it->body, &packed);
    return 0;
}

/* Decodes one ingest message into the batch and schedules the commit. user is the ZAP User-Id
 * of the sender (NULL without security): with security a topic outside its publish patterns is
 * refused `forbidden` before anything else is looked at. */
static void batch_add(funnel_server_t *srv, const zmq_msg_t *topic, zmq_msg_t *body,
                      const peer_t *peer, const funnel_refusal_t *framing, const char *user)
{
    item_t *it = batch_slot(srv);
    if (!it) {
        funnel_log_error(srv->log, "out of memory: ingest message dropped");
        if (!peer) /* a submitter gets no ack and sends again; a publisher does not */
            funnel_metrics_lost(srv->metrics, FUNNEL_METRICS_LOST_NOMEM, 1);
        return;
    }
    if (peer)
        it->peer = *peer;
    funnel_codec_limits_t lim = limits_of(srv);
    const uint8_t *data = body ? zmq_msg_data(body) : NULL;
    size_t len = body ? zmq_msg_size(body) : 0;
    if (topic)
        copy_printable(it->topic, sizeof it->topic, zmq_msg_data((zmq_msg_t *)topic),
                       zmq_msg_size((zmq_msg_t *)topic));
    it->raw_size = len;
    if (framing) {
        it->why = *framing;
    } else if (srv->clients && server_security_publish_check(srv, user, it->topic, &it->why)) {
        event_id_of(it, data, len);
    } else {
        funnel_codec_decode_in(&it->mem, &lim, zmq_msg_data((zmq_msg_t *)topic),
                               zmq_msg_size((zmq_msg_t *)topic), data, len, server_now_ms(srv),
                               &it->env, &it->why);
        if (it->env) /* validated: at most FUNNEL_ID_MAX bytes */
            memcpy(it->event_id, it->env->event_id, strlen(it->env->event_id) + 1);
        else if (it->why.code > FUNNEL_REFUSE_DECODE)
            event_id_of(it, data, len);
    }
    /* Keep the bytes for the event row or the dead letter, except absurdly large ones. The frame
     * itself is taken over (bus.h allows it): no copy, and it lives until the batch is done. */
    if (len && len <= lim.max_message_bytes)
        zmq_msg_move(&it->body, body);
    if (it->env && srv->clients && item_authenticate(it, user)) {
        funnel_log_error(srv->log, "out of memory: event %s refused", it->event_id);
        it->env = NULL;
        it->why = (funnel_refusal_t){.code = FUNNEL_REFUSE_ENGINE};
        snprintf(it->why.text, sizeof it->why.text, "funneld is out of memory: send it again");
    }
    if (!it->env) {
        it->status = ITEM_REFUSED;
        it->over_budget = peer_over_budget(srv, &it->peer);
        srv->stats.refused[it->why.code]++;
        refusal_log(srv, it);
    }
    if (srv->disk_full && full_divert(srv, it))
        return;
    srv->n_batch++;
    /* A timer, not a check handle: a pending timer keeps the loop from blocking in poll, so a
     * zero delay commits right after the current drain pass, whatever woke the loop. */
    if ((int64_t)srv->n_batch >= srv->cfg.batch_max) {
        /* A kept batch has its retry timer. Busy: stop reading until it lands. Disk full: the
         * batch grows, up to disk_full_buffer_bytes (full_divert). */
        if (!srv->busy_retry_ms)
            server_batch_flush(srv);
        else if (!srv->disk_full)
            ingest_hold(srv, true);
    } else if (!uv_is_active((uv_handle_t *)&srv->flush_timer))
        uv_timer_start(&srv->flush_timer, on_flush_timer, (uint64_t)srv->cfg.batch_delay_ms, 0);
}

static funnel_refusal_t framing_refusal(size_t n_frames, size_t expected)
{
    funnel_refusal_t why = {.code = FUNNEL_REFUSE_FRAMES};
    snprintf(why.text, sizeof why.text, "expected %zu frames [topic][Envelope], got %zu", expected,
             n_frames);
    return why;
}

void server_on_ingest(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    (void)zs;
    funnel_server_t *srv = arg;
    const char *user = server_security_user(srv, &frames[n - 1]);
    if (n == 2 && !overflow) {
        batch_add(srv, &frames[0], &frames[1], NULL, NULL, user);
    } else {
        funnel_refusal_t why = framing_refusal(overflow ? n + 1 : n, 2);
        batch_add(srv, &frames[0], NULL, NULL, &why, user);
    }
}

/* Splits [ident][""?][args...] into the peer and its arguments. */
size_t server_peer_parse(zmq_msg_t *frames, size_t n, peer_t *peer)
{
    size_t id_len = zmq_msg_size(&frames[0]);
    peer->ident_len = id_len < IDENT_MAX ? id_len : IDENT_MAX - 1;
    memcpy(peer->ident, zmq_msg_data(&frames[0]), peer->ident_len);
    peer->delimiter = n > 1 && zmq_msg_size(&frames[1]) == 0;
    return peer->delimiter ? 2 : 1;
}

void server_on_submit(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    (void)zs;
    funnel_server_t *srv = arg;
    peer_t peer;
    size_t first = server_peer_parse(frames, n, &peer);
    size_t args = n - first;
    const char *user = server_security_user(srv, &frames[n - 1]);
    if (args == 2 && !overflow) {
        batch_add(srv, &frames[first], &frames[first + 1], &peer, NULL, user);
    } else {
        funnel_refusal_t why = framing_refusal(overflow ? args + 1 : args, 2);
        batch_add(srv, args ? &frames[first] : NULL, NULL, &peer, &why, user);
    }
}
