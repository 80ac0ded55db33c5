/* test_bus.c — unit tests for the ZeroMQ-in-libuv socket wrapper (daemon/core/bus.c). */
#include "bus.h"
#include "funnel/error.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>
#include <zmq.h>

/* The failed-allocation test needs malloc to answer NULL for an absurd size, as it does without
 * AddressSanitizer, rather than ASan stopping the process. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static uv_loop_t loop;
static void *zctx, *pull;
static funnel_zsock_t *push;

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_not_null(zctx = zmq_ctx_new());
    cr_assert_eq(funnel_zsock_new(&loop, zctx, ZMQ_PUSH, &push), 0);
    char bound[256];
    cr_assert_eq(funnel_zsock_bind(push, "inproc://bus-test", bound, sizeof bound), 0);
    cr_assert_not_null(pull = zmq_socket(zctx, ZMQ_PULL));
    int timeout = 5000, linger = 0;
    zmq_setsockopt(pull, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(pull, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(pull, "inproc://bus-test"), 0);
}

static void teardown(void)
{
    if (pull)
        zmq_close(pull);
    pull = NULL;
    funnel_zsock_destroy(&push);
    uv_run(&loop, UV_RUN_DEFAULT); /* releases the wrapper's handles */
    uv_loop_close(&loop);
    if (zctx)
        zmq_ctx_term(zctx);
    zctx = NULL;
}

TestSuite(bus, .init = setup, .fini = teardown, .timeout = 30);

/* Receives one whole message into out (frames joined by '|'); returns the frame count. */
static int recv_joined(char *out, size_t out_len)
{
    int frames = 0, more = 1;
    size_t used = 0;
    out[0] = '\0';
    while (more) {
        char buf[64];
        int r = zmq_recv(pull, buf, sizeof buf, 0);
        cr_assert_geq(r, 0, "no message: %s", zmq_strerror(zmq_errno()));
        used += (size_t)snprintf(out + used, out_len - used, "%s%.*s", frames ? "|" : "", r, buf);
        size_t ml = sizeof more;
        zmq_getsockopt(pull, ZMQ_RCVMORE, &more, &ml);
        frames++;
    }
    return frames;
}

/* A frame after the first that cannot be queued (here: its copy cannot be allocated) must not
 * leave the frames before it queued as the start of a message: the next message would be glued
 * to them and reach the peer with the wrong frames. */
Test(bus, a_failed_frame_sends_nothing_of_its_message)
{
    const char *ok[] = {"b", "c"};
    const size_t ok_lens[] = {1, 1};
    const void *bad[] = {"a", "x"};
    const size_t bad_lens[] = {1, SIZE_MAX / 4};
    cr_assert_neq(funnel_zsock_sendv(push, bad, bad_lens, 2), 0);
    cr_assert_eq(funnel_zsock_sendv(push, (const void *const *)ok, ok_lens, 2), 0);
    char got[256];
    cr_assert_eq(recv_joined(got, sizeof got), 2, "got '%s'", got);
    cr_assert_str_eq(got, "b|c");
}
