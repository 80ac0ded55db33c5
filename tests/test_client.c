/* test_client.c — the client library against a real funneld: gap-free follow with a tiny
 * receive queue, the cursor file, and resuming from it after the subscriber and funneld
 * restart. */
#include "harness.h"

#include "funnel/client.h"
#include "funnel/error.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_client_t *client;

static void setup(void)
{
    const char *args[] = {"--set", "publish_hwm=100", NULL};
    fx_daemon_suite_start(&tmp, &fd, args);
    cr_assert_eq(funnel_client_new(&client), 0);
}

static void teardown(void)
{
    funnel_client_destroy(&client);
    fx_daemon_suite_stop(&tmp, &fd);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 120);

/* Submits n lead.created events named prefix-00000... pipelined on one DEALER socket and waits
 * for every ack, so the output stream grows faster than a slow subscriber reads it. */
static void submit_many(const char *prefix, int n)
{
    fx_submit_pipelined(fd.submit, (size_t)n, 500, fx_numbered_lead, (void *)prefix, "ok", NULL);
}

static void submit_one(const char *event_id)
{
    fx_submit(client, &fd, fx_lead_created(event_id, "lead-1", fx_now_ms()), FUNNEL_SUBMIT_OK);
}

/* What a test's callback saw. */
typedef struct seen {
    uint64_t first, last; /* sequences */
    size_t count;
    bool out_of_order;
    size_t stop_after; /* return 1 at this count; 0: never */
    size_t fail_at;    /* return -1 (not processed) at this count; 0: never */
    int burst;         /* submit this many events from inside the first callback */
} seen_t;

static int on_msg(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    seen_t *s = arg;
    (void)topic;
    (void)env;
    (void)len;
    if (s->fail_at && s->count + 1 == s->fail_at)
        return -1;
    if (s->count && seq != s->last + 1)
        s->out_of_order = true;
    if (!s->count)
        s->first = seq;
    s->last = seq;
    s->count++;
    if (s->burst && s->count == 1) {
        /* The live socket is not read while this runs: with RCVHWM 1 and publish_hwm 100,
         * most of the burst is dropped before it and must come back through replay. */
        submit_many("burst", s->burst);
    }
    return s->stop_after && s->count == s->stop_after ? 1 : 0;
}

static int follow(const char *cursor, uint64_t from, int idle_ms, seen_t *s)
{
    funnel_follow_options_t o = {.prefix = "lead.",
                                 .from_seq = from,
                                 .idle_timeout_ms = idle_ms,
                                 .request_timeout_ms = 5000,
                                 .cursor_path = cursor,
                                 .rcvhwm = 1,
                                 .gap_probe_ms = 200};
    return funnel_client_follow(client, fd.publish, fd.replay, &o, on_msg, s);
}

Test(client, cursor_file_round_trip_and_corruption)
{
    char path[400];
    uint64_t v = 99;
    snprintf(path, sizeof path, "%s/cursor", tmp.path);
    cr_assert_eq(funnel_cursor_load(path, &v), 0);
    cr_assert_eq(v, 0, "a missing file means nothing processed");
    cr_assert_eq(funnel_cursor_save(path, 18446744073709551615ULL), 0);
    cr_assert_eq(funnel_cursor_load(path, &v), 0);
    cr_assert_eq(v, 18446744073709551615ULL);
    cr_assert_eq(funnel_cursor_save(path, 42), 0);
    cr_assert_eq(funnel_cursor_load(path, &v), 0);
    cr_assert_eq(v, 42);
    char tmpfile[410];
    snprintf(tmpfile, sizeof tmpfile, "%s.tmp", path);
    cr_assert_neq(access(tmpfile, F_OK), 0, "the temporary file is renamed away");
    fx_file_put(path, "forty-two\n");
    cr_assert_eq(funnel_cursor_load(path, &v), FUNNEL_EIO, "corruption is not a reset");
    cr_assert_eq(funnel_cursor_save("/nonexistent/dir/cursor", 1), FUNNEL_EIO);
}

Test(client, tiny_receive_queue_still_sees_every_message_once_in_order)
{
    submit_one("first");
    /* Done at the last message, not after a quiet spell: the idle timeout only guards. */
    seen_t s = {.burst = 3000, .stop_after = 3001};
    int rc = follow(NULL, 1, 30000, &s);
    cr_assert_eq(rc, 1, "%s", funnel_strerror(rc));
    cr_assert_not(s.out_of_order);
    cr_assert_eq(s.first, 1);
    cr_assert_eq(s.count, 3001);
    cr_assert_eq(s.last, 3001);
}

Test(client, cursor_resumes_after_subscriber_and_funneld_restart)
{
    char cursor[400];
    snprintf(cursor, sizeof cursor, "%s/alert.cursor", tmp.path);
    submit_many("a", 10);

    /* A first run processes 4 messages and stops, as a killed adapter would. */
    seen_t s1 = {.stop_after = 4};
    cr_assert_eq(follow(cursor, 0, 2000, &s1), 1);
    uint64_t cur;
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 4);

    /* The next run fails to process the 3rd message it gets: the cursor stays before it. */
    seen_t s2 = {.fail_at = 3};
    cr_assert_eq(follow(cursor, 1, 2000, &s2), -1, "from_seq is ignored once a cursor exists");
    cr_assert_eq(s2.first, 5);
    cr_assert_eq(s2.last, 6);
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 6);

    /* funneld restarts on the same ports and more arrives while nobody follows. */
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    const char *args[] = {"--set", "publish_hwm=100", NULL};
    fx_daemon_start(&fd, tmp.path, args);
    submit_many("b", 5);
    seen_t s3 = {.stop_after = 9};
    cr_assert_eq(follow(cursor, 0, 30000, &s3), 1);
    cr_assert_not(s3.out_of_order);
    cr_assert_eq(s3.first, 7);
    cr_assert_eq(s3.last, 15);
    cr_assert_eq(s3.count, 9);
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 15);
}

Test(client, skipped_topics_advance_the_cursor_on_return)
{
    char cursor[400];
    snprintf(cursor, sizeof cursor, "%s/c", tmp.path);
    submit_one("l-1");
    submit_many("more", 2);
    funnel_follow_options_t o = {.prefix = "lead.created",
                                 .idle_timeout_ms = 300,
                                 .cursor_path = cursor,
                                 .gap_probe_ms = 100};
    seen_t s = {.stop_after = 1};
    /* The first message is processed and stops the follow; the cursor says 1. */
    cr_assert_eq(funnel_client_follow(client, fd.publish, fd.replay, &o, on_msg, &s), 1);
    uint64_t cur;
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 1);
    /* Nothing matches a prefix of another topic: an idle return still records the skipped. */
    o.prefix = "lead.qualified";
    seen_t none = {0};
    cr_assert_eq(funnel_client_follow(client, fd.publish, fd.replay, &o, on_msg, &none), 0);
    cr_assert_eq(none.count, 0);
    cr_assert_eq(funnel_cursor_load(cursor, &cur), 0);
    cr_assert_eq(cur, 3);
}

/* Any number of attempts is safe: the pause doubles from base_ms up to a cap and never wraps
 * (an int doubled per attempt overflowed after about 25 attempts of 100 ms). */
Test(client, submit_backoff_doubles_to_a_cap_without_overflow)
{
    cr_assert_eq(funnel_client_backoff_ms(100, 0), 0, "the first attempt does not wait");
    cr_assert_eq(funnel_client_backoff_ms(100, 1), 100);
    cr_assert_eq(funnel_client_backoff_ms(100, 2), 200);
    cr_assert_eq(funnel_client_backoff_ms(100, 5), 1600);
    cr_assert_eq(funnel_client_backoff_ms(0, 7), 0);
    cr_assert_eq(funnel_client_backoff_ms(100, 40), FUNNEL_CLIENT_BACKOFF_MAX_MS);
    cr_assert_eq(funnel_client_backoff_ms(INT_MAX, 3), FUNNEL_CLIENT_BACKOFF_MAX_MS);
    int prev = 0;
    for (int attempt = 1; attempt < 100000; attempt++) {
        int b = funnel_client_backoff_ms(100, attempt);
        cr_assert(b >= prev && b <= FUNNEL_CLIENT_BACKOFF_MAX_MS, "attempt %d: %d ms", attempt, b);
        prev = b;
    }
}
