/* test_e2e_abuse.c — a flood of undecodable messages against the real funneld, over SUB and over
 * submit: every submit is answered, the dead letters stay within dead_letter_max_rows and
 * dead_letter_max_bytes, and the log keeps at most refusal_log_per_minute lines per reason
 * plus summary lines. */
#include "harness.h"
#include "sql_fx.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define FLOOD            400
#define LOG_LINES        5
#define MAX_ROWS         50
#define MAX_BYTES        20000
#define JUNK_SIZE        1000
#define PEER_BUDGET      30
#define PEER_BUDGET_TEXT "30"

/* What dead_letter_max_bytes counts (README "Configuration reference"). */
#define DEAD_BYTES_SQL                                                                             \
    "SELECT coalesce(sum(coalesce(length(payload), 0) + length(CAST(topic AS BLOB)) + "            \
    "length(CAST(event_id AS BLOB)) + length(CAST(reason AS BLOB)) + "                             \
    "length(CAST(detail AS BLOB))), 0) FROM dead_letters"

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static void *zctx, *sock;

static void start(const char *max_rows, const char *max_bytes, const char *peer_budget)
{
    char rows[64], bytes[64], lines[64], budget[64];
    snprintf(budget, sizeof budget, "refusal_budget_per_peer=%s", peer_budget);
    snprintf(rows, sizeof rows, "dead_letter_max_rows=%s", max_rows);
    snprintf(bytes, sizeof bytes, "dead_letter_max_bytes=%s", max_bytes);
    snprintf(lines, sizeof lines, "refusal_log_per_minute=%d", LOG_LINES);
    const char *args[] = {"--set", rows, "--set", bytes, "--set", lines, "--set", budget, NULL};
    fx_daemon_suite_start(&tmp, &fd, args);
    zctx = zmq_ctx_new();
}

static void stop(void)
{
    if (sock)
        zmq_close(sock);
    sock = NULL;
    if (zctx)
        zmq_ctx_term(zctx);
    zctx = NULL;
    fx_daemon_suite_stop(&tmp, &fd);
}

/* [lead.created][JUNK_SIZE bytes that are no protobuf Envelope] */
static void send_junk(void *s)
{
    static uint8_t junk[JUNK_SIZE];
    memset(junk, 0xff, sizeof junk);
    cr_assert_geq(zmq_send(s, "lead.created", 12, ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(s, junk, sizeof junk, 0), 0);
}

static void send_lead(void *s, const char *event_id)
{
    size_t len;
    funnel_envelope_t *env = fx_lead_created(event_id, "lead-a", fx_now_ms());
    uint8_t *buf = fx_pack(env, &len);
    cr_assert_geq(zmq_send(s, "lead.created", 12, ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(s, buf, len, 0), 0);
    free(buf);
    funnel_envelope_free(&env);
}

static int64_t events(void)
{
    return fx_db_int(fd.db, "SELECT count(*) FROM events");
}

/* Lines of funneld's log containing needle. */
static int log_count(const char *needle)
{
    FILE *f = fopen(fd.log, "r");
    cr_assert_not_null(f, "%s", fd.log);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* The refusal lines of one reason: at most LOG_LINES a minute, and one summary per minute with
 * suppressed lines. The flood takes well under two minutes, so it may straddle one boundary. */
static void assert_log_bounded(void)
{
    int lines = log_count("refused lead.created"), summaries = log_count("log lines suppressed");
    cr_assert_geq(lines, 1, "refusals are still logged");
    cr_assert_leq(lines, 2 * LOG_LINES, "%d refusal lines", lines);
    cr_assert_leq(summaries, 2, "%d summary lines", summaries);
}

static void assert_dead_letters_bounded(int64_t max_rows, int64_t max_bytes)
{
    int64_t rows = fx_db_int(fd.db, "SELECT count(*) FROM dead_letters");
    int64_t bytes = fx_db_int(fd.db, DEAD_BYTES_SQL);
    cr_assert_gt(rows, 0);
    cr_assert_leq(rows, max_rows, "%lld dead letters", (long long)rows);
    cr_assert_leq(bytes, max_bytes, "%lld dead-letter bytes", (long long)bytes);
    /* Trimmed oldest first: the first refusals went, the last stayed. */
    cr_assert_gt(fx_db_int(fd.db, "SELECT min(id) FROM dead_letters"), 1);
}

/* Sends FLOOD junk messages on a fresh DEALER and asserts each one is answered "rejected". */
static void flood_submit(void)
{
    void *dealer = fx_zsock_connect(zctx, ZMQ_DEALER, fd.submit);
    for (int i = 0; i < FLOOD; i++)
        send_junk(dealer);
    fx_answer_t a;
    for (int i = 0; i < FLOOD; i++) {
        fx_answer_recv(dealer, &a);
        cr_assert(strncmp(a.status, "rejected: ", 10) == 0, "answer %d: %s", i, a.status);
    }
    zmq_close(dealer);
}

TestSuite(abuse, .fini = stop, .timeout = 120);

Test(abuse, submit_flood_is_answered_and_bounded_by_rows)
{
    start("50", "67108864", "1000");
    flood_submit();
    assert_dead_letters_bounded(MAX_ROWS, 67108864);
    assert_log_bounded();
}

Test(abuse, sub_flood_is_bounded_by_bytes)
{
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%d", MAX_BYTES);
    start("1000000", bytes, "1000");
    sock = fx_zsock_connect(zctx, ZMQ_PUB, fd.ingest);
    /* PUB/SUB has no handshake: resend a first event until it is recorded (dedup keeps one). */
    for (int i = 0; i < 500 && events() == 0; i++) {
        send_lead(sock, "evt-first");
        fx_sleep_ms(20);
    }
    cr_assert_eq(events(), 1);
    for (int i = 0; i < FLOOD; i++)
        send_junk(sock);
    /* One connection keeps its order: once the marker is recorded, the flood was read. */
    send_lead(sock, "evt-last");
    for (int i = 0; i < 500 && events() < 2; i++)
        fx_sleep_ms(20);
    cr_assert_eq(events(), 2);
    assert_dead_letters_bounded(1000000, MAX_BYTES);
    assert_log_bounded();
}

Test(abuse, a_peer_beyond_its_budget_is_answered_but_not_dead_lettered)
{
    start("1000000", "67108864", PEER_BUDGET_TEXT);
    flood_submit();
    /* One window, or two if the flood straddles a minute boundary. */
    int64_t rows = fx_db_int(fd.db, "SELECT count(*) FROM dead_letters");
    cr_assert_geq(rows, PEER_BUDGET);
    cr_assert_leq(rows, 2 * PEER_BUDGET, "%lld dead letters from one peer", (long long)rows);
    /* Another peer has a budget of its own: the flooder did not spend it. */
    flood_submit();
    int64_t more = fx_db_int(fd.db, "SELECT count(*) FROM dead_letters") - rows;
    cr_assert_geq(more, PEER_BUDGET);
    cr_assert_leq(more, 2 * PEER_BUDGET);
}
