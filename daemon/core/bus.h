/* bus.h — ZeroMQ sockets inside the libuv loop.
 *
 * A funnel_zsock_t owns one ZeroMQ socket and the uv handles that watch it. ZMQ_FD is
 * edge-triggered, so the socket is drained until a non-blocking receive finds nothing (which,
 * like ZMQ_EVENTS without POLLIN, means libzmq has processed its pending commands), at most
 * `budget` messages per pass (an idle handle continues the next pass so other sockets get their
 * turn), and drained again after every send and once right after start. Loop thread only.
 * Callbacks must not destroy the socket they are called for. */
#ifndef FUNNEL_BUS_H
#define FUNNEL_BUS_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>
#include <zmq.h>

#define FUNNEL_ZSOCK_MAX_FRAMES 10 /* a ZAP request: routing id, delimiter and 7 frames */

typedef struct funnel_zsock funnel_zsock_t;

/* One multipart message: frames[0..n). `overflow` is true when the message had more than
 * FUNNEL_ZSOCK_MAX_FRAMES frames (the rest were discarded). Valid during the callback only;
 * the callback may keep a frame by taking it with zmq_msg_move (the emptied frame is closed). */
typedef void (*funnel_zsock_recv_cb)(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow,
                                     void *arg);

/* Creates a socket of `type` (ZMQ_SUB, ZMQ_ROUTER, ...) in zctx. Not yet watched: set options,
 * bind/connect, then funnel_zsock_start. Returns 0, FUNNEL_EBUS or FUNNEL_ENOMEM. */
int funnel_zsock_new(uv_loop_t *loop, void *zctx, int type, funnel_zsock_t **out);

/* Closes the ZeroMQ socket now and the uv handles asynchronously (the loop must run once more
 * to release them). NULL-safe; sets *zs to NULL. */
void funnel_zsock_destroy(funnel_zsock_t **zs);

void *funnel_zsock_raw(funnel_zsock_t *zs);

/* Binds and writes the resolved endpoint (ZMQ_LAST_ENDPOINT, so "tcp://127.0.0.1:*" becomes a
 * real port) into resolved. Returns 0 or FUNNEL_EBUS (zmq_strerror(zmq_errno()) tells why). */
int funnel_zsock_bind(funnel_zsock_t *zs, const char *endpoint, char *resolved, size_t len);
int funnel_zsock_connect(funnel_zsock_t *zs, const char *endpoint);

/* Starts watching: recv_cb for every message (NULL for send-only sockets). `budget` bounds
 * messages per pass. Drains once before returning. A sender that gets FUNNEL_EAGAIN retries on
 * a timer of its own: on a ROUTER, POLLOUT means "some peer has room", not the one it wants. */
int funnel_zsock_start(funnel_zsock_t *zs, funnel_zsock_recv_cb recv_cb, void *arg,
                       unsigned budget);

/* Stops reading input (graceful stop); sends still work. */
void funnel_zsock_pause(funnel_zsock_t *zs);

/* Sends n frames (at most FUNNEL_ZSOCK_SEND_MAX_FRAMES) as one message without blocking: all
 * of it or nothing. Returns 0, FUNNEL_EAGAIN (HWM reached or, for ROUTER_MANDATORY, peer not
 * ready), FUNNEL_ENOMEM, FUNNEL_EINVAL (too many frames) or FUNNEL_EBUS (peer unknown...). */
#define FUNNEL_ZSOCK_SEND_MAX_FRAMES 8
int funnel_zsock_sendv(funnel_zsock_t *zs, const void *const *parts, const size_t *lens, size_t n);

#endif
