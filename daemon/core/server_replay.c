/* server_replay.c — catch-up on the replay socket: [replay][from_seq] gets [truncated] when
 * retention pruned the start, the outbox rows from from_seq a chunk per loop pass, then [end]
 * (or [error]). A full peer parks its replay; a peer that takes nothing for long is dropped. */
#include "server_internal.h"
#include "funnel/error.h"

#include <stdio.h>
#include <string.h>

/* What one replay step achieved. */
typedef enum replay_step {
    REPLAY_MORE,    /* sent a chunk; more to come next pass */
    REPLAY_BLOCKED, /* the peer is full: park until the retry timer */
    REPLAY_DONE,    /* finished, or the peer went away: drop it */
} replay_step_t;

typedef struct replay_pass {
    funnel_server_t *srv;
    replay_t *rp;
    const funnel_clients_entry_t *who; /* with security: whose subscribe prefixes filter */
    size_t read;                       /* rows considered, sent or filtered out */
    size_t sent;
} replay_pass_t;

static int replay_send_row(const funnel_outbox_row_t *row, void *arg)
{
    replay_pass_t *pass = arg;
    funnel_server_t *srv = pass->srv;
    replay_t *rp = pass->rp;
    if (pass->who && !funnel_clients_may_see(pass->who, row->topic, strlen(row->topic))) {
        rp->next_seq = row->seq + 1;
        rp->last_seen = row->seq;
        pass->read++;
        return 0;
    }
    uint8_t seq[8];
    funnel_seq_encode(row->seq, seq);
    const void *parts[] = {row->topic, seq, row->envelope};
    size_t lens[] = {strlen(row->topic), 8, row->len};
    int rc = server_peer_send(srv->replay_sock, &rp->peer, parts, lens, 3);
    if (rc)
        return rc;
    rp->next_seq = row->seq + 1;
    rp->last_seen = row->seq;
    pass->read++;
    pass->sent++;
    return 0;
}

/* Sends [what][seq]. Returns 0, FUNNEL_EAGAIN (peer full: try again later) or FUNNEL_EBUS. */
static int replay_send_marker(funnel_server_t *srv, const replay_t *rp, const char *what,
                              uint64_t seq)
{
    uint8_t buf[8];
    funnel_seq_encode(seq, buf);
    const void *parts[] = {what, buf};
    size_t lens[] = {strlen(what), 8};
    return server_peer_send(srv->replay_sock, &rp->peer, parts, lens, 2);
}

/* Answers a request with [error][reason]; a full peer misses it, as it would any reply. */
static int replay_send_error(funnel_server_t *srv, const peer_t *peer, const char *reason)
{
    const void *parts[] = {"error", reason};
    size_t lens[] = {5, strlen(reason)};
    return server_peer_send(srv->replay_sock, peer, parts, lens, 2);
}

/* Maps a send result onto the step outcome; 0 means carry on. */
static replay_step_t replay_sent(int rc, bool *progress)
{
    if (rc == FUNNEL_EAGAIN)
        return REPLAY_BLOCKED;
    if (rc)
        return REPLAY_DONE; /* the peer went away (ROUTER_MANDATORY: EHOSTUNREACH) */
    *progress = true;
    return REPLAY_MORE;
}

/* Advances one replay by at most a chunk of rows; *progress tells whether anything was sent. */
static replay_step_t replay_step(funnel_server_t *srv, replay_t *rp, bool *progress)
{
    replay_step_t st;
    if (rp->truncated) {
        if ((st = replay_sent(replay_send_marker(srv, rp, "truncated", rp->truncated), progress)) !=
            REPLAY_MORE)
            return st;
        rp->truncated = 0;
    }
    replay_pass_t pass = {srv, rp, NULL, 0, 0};
    if (rp->client[0] && !(pass.who = funnel_clients_by_name(srv->clients, rp->client)) &&
        !rp->error[0]) { /* removed by a reload since the request: its next chunk is refused */
        char name[sizeof rp->client];
        memcpy(name, rp->client, sizeof name);
        snprintf(rp->error, sizeof rp->error, "forbidden: %s is no longer a listed client", name);
    }
    if (!rp->rows_done && !rp->error[0]) {
        int rc = funnel_store_outbox_read(srv->store, rp->next_seq, REPLAY_CHUNK, replay_send_row,
                                          &pass);
        *progress |= pass.read > 0;
        if (rc == FUNNEL_EAGAIN || rc == FUNNEL_EBUS)
            return replay_sent(rc, progress);
        if (rc) {
            /* The client is told SQLite's reason too: "malformed" says restore, "busy" retry. */
            snprintf(rp->error, sizeof rp->error, "replay read failed at seq %llu: %s",
                     (unsigned long long)rp->next_seq, funnel_store_errmsg(srv->store));
            funnel_log_error(srv->log, "%s", rp->error);
        } else if (pass.read < REPLAY_CHUNK) {
            rp->rows_done = true;
        } else {
            return REPLAY_MORE;
        }
    }
    /* After a failed read, [end] would claim rows the client never got: it must not skip them.
     * [end] names the last row considered, sent or not: rows the client may not see are gaps
     * it must not ask for again (docs/protocol.md). */
    int rc = rp->error[0] ? replay_send_error(srv, &rp->peer, rp->error)
                          : replay_send_marker(srv, rp, "end",
                                               rp->last_seen ? rp->last_seen : srv->published_seq);
    st = replay_sent(rc, progress);
    return st == REPLAY_MORE ? REPLAY_DONE : st;
}

static void replay_remove(funnel_server_t *srv, size_t i)
{
    memmove(&srv->replays[i], &srv->replays[i + 1],
            (srv->n_replays - i - 1) * sizeof srv->replays[0]);
    srv->n_replays--;
}

static void on_replay_timer(uv_timer_t *h);

/* One step of every unparked replay, so a slow peer cannot hold up the others. With none left
 * runnable the idle handle stops (or the loop would spin) and parked ones wait for the timer. */
static void on_replay_idle(uv_idle_t *h)
{
    funnel_server_t *srv = h->data;
    bool runnable = false;
    for (size_t i = 0; i < srv->n_replays;) {
        replay_t *rp = &srv->replays[i];
        if (rp->parked) {
            i++;
            continue;
        }
        bool progress = false;
        replay_step_t st = replay_step(srv, rp, &progress);
        if (progress)
            rp->stalled_at = 0;
        if (st == REPLAY_DONE) {
            replay_remove(srv, i);
            continue;
        }
        if (st == REPLAY_BLOCKED) {
            rp->parked = true;
            if (!rp->stalled_at)
                rp->stalled_at = uv_now(&srv->loop);
        } else {
            runnable = true;
        }
        i++;
    }
    if (!runnable)
        uv_idle_stop(h);
    if (srv->n_replays && !runnable && !uv_is_active((uv_handle_t *)&srv->replay_timer))
        uv_timer_start(&srv->replay_timer, on_replay_timer, REPLAY_RETRY_MS, 0);
}

/* Unparks replays to try their peers again; drops those that took nothing for too long, so an
 * abandoned or hostile client cannot hold a slot forever. */
static void on_replay_timer(uv_timer_t *h)
{
    funnel_server_t *srv = h->data;
    uint64_t now = uv_now(&srv->loop);
    for (size_t i = 0; i < srv->n_replays;) {
        replay_t *rp = &srv->replays[i];
        if (rp->parked && rp->stalled_at && now - rp->stalled_at >= REPLAY_STALL_MS) {
            funnel_log_warn(srv->log,
                            "replay dropped: the client took nothing for %d s (at seq %llu)",
                            REPLAY_STALL_MS / 1000, (unsigned long long)rp->next_seq);
            replay_remove(srv, i);
            continue;
        }
        rp->parked = false;
        i++;
    }
    if (srv->n_replays)
        uv_idle_start(&srv->replay_idle, on_replay_idle);
}

static bool same_peer(const peer_t *a, const peer_t *b)
{
    return a->ident_len == b->ident_len && memcmp(a->ident, b->ident, a->ident_len) == 0;
}

void server_on_replay(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    (void)zs;
    funnel_server_t *srv = arg;
    replay_t req = {0};
    size_t first = server_peer_parse(frames, n, &req.peer);
    /* A message with more frames than the bus keeps (overflow) has a wrong count as well. */
    size_t nargs = overflow ? SIZE_MAX : n - first;
    funnel_frame_t args[2] = {{NULL, 0}, {NULL, 0}};
    for (size_t i = 0; i < n - first && i < 2; i++)
        args[i] =
            (funnel_frame_t){zmq_msg_data(&frames[first + i]), zmq_msg_size(&frames[first + i])};
    const char *why;
    if (funnel_replay_request_parse(args, nargs, &req.next_seq, &why)) {
        replay_send_error(srv, &req.peer, why);
        return;
    }
    char denied[128];
    if (server_security_replay_client(srv, server_security_user(srv, &frames[n - 1]), req.client,
                                      sizeof req.client, denied, sizeof denied)) {
        replay_send_error(srv, &req.peer, denied);
        return;
    }
    /* One replay per connection: a new request supersedes the old (the client gave up on it),
     * so repeated requests cannot pile up. */
    for (size_t i = 0; i < srv->n_replays; i++)
        if (same_peer(&srv->replays[i].peer, &req.peer)) {
            replay_remove(srv, i);
            break;
        }
    if (srv->n_replays == REPLAY_MAX) {
        replay_send_error(srv, &req.peer, "busy: too many replays in progress, retry later");
        return;
    }
    uint64_t first_seq = 0, last_seq = 0;
    funnel_store_outbox_bounds(srv->store, &first_seq, &last_seq);
    /* Rows pruned by retention are gone: say so rather than let the client guess. With
     * everything pruned, history starts after the last sequence ever handed out. */
    uint64_t oldest = first_seq ? first_seq : last_seq + 1;
    if (oldest > 1 && req.next_seq < oldest)
        req.truncated = oldest;
    srv->stats.replays++;
    srv->replays[srv->n_replays++] = req;
    uv_idle_start(&srv->replay_idle, on_replay_idle);
}
