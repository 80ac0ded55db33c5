/* bus.c — ZeroMQ sockets driven by libuv (see bus.h for the edge-trigger rules). */
#include "bus.h"
#include "funnel/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct funnel_zsock {
    void *sock;       /* the ZeroMQ socket; NULL once closed */
    uv_poll_t poll;   /* readable on ZMQ_FD means "look at ZMQ_EVENTS" */
    uv_idle_t idle;   /* continues a drain cut short by the budget */
    int open_handles; /* uv handles not yet closed; struct freed at 0 */
    bool started, paused;
    unsigned budget; /* messages per drain pass */
    funnel_zsock_recv_cb recv_cb;
    void *arg;
};

int funnel_zsock_new(uv_loop_t *loop, void *zctx, int type, funnel_zsock_t **out)
{
    funnel_zsock_t *zs = calloc(1, sizeof *zs);
    if (!zs)
        return FUNNEL_ENOMEM;
    if (!(zs->sock = zmq_socket(zctx, type)))
        goto fail_sock;
    int linger = 0;
    zmq_setsockopt(zs->sock, ZMQ_LINGER, &linger, sizeof linger);
    int fd;
    size_t fd_len = sizeof fd;
    if (zmq_getsockopt(zs->sock, ZMQ_FD, &fd, &fd_len))
        goto fail_fd;
    if (uv_poll_init(loop, &zs->poll, fd))
        goto fail_fd;
    uv_idle_init(loop, &zs->idle);
    zs->poll.data = zs->idle.data = zs;
    zs->open_handles = 2;
    *out = zs;
    return 0;

fail_fd:
    zmq_close(zs->sock);
fail_sock:
    free(zs);
    return FUNNEL_EBUS;
}

static void on_close(uv_handle_t *h)
{
    funnel_zsock_t *zs = h->data;
    if (--zs->open_handles == 0)
        free(zs);
}

void funnel_zsock_destroy(funnel_zsock_t **zsp)
{
    if (!zsp || !*zsp)
        return;
    funnel_zsock_t *zs = *zsp;
    /* Stop watching the fd before ZeroMQ closes it, as libuv requires. */
    uv_poll_stop(&zs->poll);
    uv_idle_stop(&zs->idle);
    zmq_close(zs->sock);
    zs->sock = NULL;
    uv_close((uv_handle_t *)&zs->poll, on_close);
    uv_close((uv_handle_t *)&zs->idle, on_close);
    *zsp = NULL;
}

void *funnel_zsock_raw(funnel_zsock_t *zs)
{
    return zs->sock;
}

int funnel_zsock_bind(funnel_zsock_t *zs, const char *endpoint, char *resolved, size_t len)
{
    if (zmq_bind(zs->sock, endpoint))
        return FUNNEL_EBUS;
    if (resolved && len) {
        size_t n = len;
        if (zmq_getsockopt(zs->sock, ZMQ_LAST_ENDPOINT, resolved, &n))
            return FUNNEL_EBUS;
    }
    return 0;
}

int funnel_zsock_connect(funnel_zsock_t *zs, const char *endpoint)
{
    return zmq_connect(zs->sock, endpoint) ? FUNNEL_EBUS : 0;
}

static int events_of(funnel_zsock_t *zs)
{
    int ev = 0;
    size_t len = sizeof ev;
    if (!zs->sock || zmq_getsockopt(zs->sock, ZMQ_EVENTS, &ev, &len))
        return 0;
    return ev;
}

/* Reads one whole multipart message and hands it to the callback. Returns false when there was
 * none (EAGAIN): the input queue is empty. */
static bool recv_one(funnel_zsock_t *zs)
{
    zmq_msg_t frames[FUNNEL_ZSOCK_MAX_FRAMES];
    size_t n = 0;
    bool overflow = false;
    int more = 1;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *m = n < FUNNEL_ZSOCK_MAX_FRAMES ? &frames[n] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, zs->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(m);
            break; /* EAGAIN mid-message cannot happen: ZeroMQ delivers messages whole */
        }
        more = zmq_msg_more(m);
        if (m == &scratch) {
            overflow = true;
            zmq_msg_close(m);
        } else {
            n++;
        }
    }
    if (n && zs->recv_cb)
        zs->recv_cb(zs, frames, n, overflow, zs->arg);
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&frames[i]);
    return n > 0;
}

static void on_idle(uv_idle_t *h);

/* One drain pass: up to budget messages; an idle pass continues if input remains, so a busy
 * socket cannot starve the others or the timers.
 *
 * Input is read until a non-blocking receive finds nothing rather than asking ZMQ_EVENTS before
 * every message: that getsockopt costs a poll() on the socket's mailbox each time. The final
 * EAGAIN re-arms the edge just as ZMQ_EVENTS would, because libzmq processes the pending commands
 * (and so drains ZMQ_FD) before it answers EAGAIN. ZMQ_EVENTS is still asked on sockets not
 * being read, so their edge is drained too. */
static void drain(funnel_zsock_t *zs)
{
    unsigned left = zs->budget;
    uv_idle_stop(&zs->idle);
    while (zs->sock) {
        if (zs->paused || !zs->recv_cb) {
            events_of(zs); /* drains ZMQ_FD all the same, or the loop would spin on it */
            break;
        }
        if (left-- == 0) {
            uv_idle_start(&zs->idle, on_idle);
            break;
        }
        if (!recv_one(zs))
            break;
    }
}

static void on_idle(uv_idle_t *h)
{
    drain(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

int funnel_zsock_start(funnel_zsock_t *zs, funnel_zsock_recv_cb recv_cb, void *arg, unsigned budget)
{
    zs->recv_cb = recv_cb;
    zs->arg = arg;
    zs->budget = budget ? budget : 1;
    if (uv_poll_start(&zs->poll, UV_READABLE, on_poll))
        return FUNNEL_EBUS;
    zs->started = true;
    drain(zs);
    return 0;
}

void funnel_zsock_pause(funnel_zsock_t *zs)
{
    zs->paused = true;
}

/* Sends one frame, again when a signal interrupted libzmq's command processing (the frame is
 * kept on failure). */
static int frame_send(void *sock, zmq_msg_t *frame, int flags)
{
    int r;
    while ((r = zmq_msg_send(frame, sock, flags)) < 0 && zmq_errno() == EINTR)
        ;
    return r;
}

/* Every frame is copied into a zmq_msg_t before the first is sent: a copy that cannot be made
 * then refuses the message whole. Once the first frame is queued, ZeroMQ takes the rest without
 * allocating or checking the high-water mark, so the peer never sees half a message glued to
 * the next one; only a terminating context (the socket is unusable then) can still interrupt. */
int funnel_zsock_sendv(funnel_zsock_t *zs, const void *const *parts, const size_t *lens, size_t n)
{
    zmq_msg_t frames[FUNNEL_ZSOCK_SEND_MAX_FRAMES];
    size_t built = 0;
    int rc = n <= FUNNEL_ZSOCK_SEND_MAX_FRAMES ? 0 : FUNNEL_EINVAL;
    for (; !rc && built < n; built++) {
        if (zmq_msg_init_size(&frames[built], lens[built])) {
            rc = FUNNEL_ENOMEM;
            break;
        }
        if (lens[built])
            memcpy(zmq_msg_data(&frames[built]), parts[built], lens[built]);
    }
    for (size_t i = 0; !rc && i < n; i++)
        if (frame_send(zs->sock, &frames[i], ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0)) < 0)
            rc = zmq_errno() == EAGAIN ? FUNNEL_EAGAIN : FUNNEL_EBUS;
    for (size_t i = 0; i < built; i++)
        zmq_msg_close(&frames[i]); /* sent ones are empty already */
    /* A send may have consumed the edge that announced input: look again next pass. */
    if (zs->started)
        uv_idle_start(&zs->idle, on_idle);
    return rc;
}
