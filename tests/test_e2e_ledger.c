/* test_e2e_ledger.c — the commission ledger through the real funneld: a config file with a
 * commission plan, events over the submit socket, then funnelctl payout, statement and ledger
 * check as a payroll clerk would run them, checked to the minor unit. */
#include "harness.h"
#include "sql_fx.h"
#include "ledger_fx.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/date.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_client_t *client;

static const char plan_text[] =
    "commission = {\n"
    "  default_rate_bp = 1000;\n"
    "  account_manager_rate_bp = 100;\n"
    "  term_months = 0;\n"
    "  cap_minor = 0;\n"
    "  rates = ( { rep = \"alice\"; rate_bp = 1200; from = \"2026-09-01\"; } );\n"
    "};\n";

static void start(void)
{
    char conf[300];
    fx_suite_start(&tmp, &fd, &client, plan_text, conf);
}

static void stop(void)
{
    fx_suite_stop(&tmp, &fd, &client);
}

TestSuite(e2e_ledger, .init = start, .fini = stop, .timeout = 120);

static int64_t at(int64_t m, int64_t d)
{
    return funnel_date_utc_ms(2026, m, d) + 10 * 3600 * 1000LL;
}

static void submit(funnel_envelope_t *env, funnel_submit_status_t want)
{
    fx_submit(client, &fd, env, (int)want);
}

/* Runs funnelctl against the test's funneld with args (NULL-terminated); returns its status. */
static int ctl(char *out, size_t out_len, const char *const *args)
{
    return fx_ctl(&fd, out, out_len, args);
}

/* The statement of rep for period as JSON; asserts funnelctl succeeded. Caller decrefs. */
static json_t *statement(const char *rep, const char *period)
{
    static char out[65536];
    const char *args[] = {"statement", "--rep", rep, "--period", period, "--json", NULL};
    int status = ctl(out, sizeof out, args);
    cr_assert_eq(status, 0, "statement exited %d: %s", status, out);
    json_error_t err;
    json_t *doc = json_loads(out, 0, &err);
    cr_assert_not_null(doc, "not JSON (%s): %s", err.text, out);
    return doc;
}

/* The currency section of a statement, with its totals checked. */
static json_t *expect_section(json_t *doc, const char *currency, int64_t opening, int64_t accruals,
                              int64_t clawbacks, int64_t payouts, int64_t closing)
{
    json_t *list = json_object_get(doc, "currencies"), *sec = NULL;
    for (size_t i = 0; i < json_array_size(list) && !sec; i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(list, i), "currency")),
                    currency))
            sec = json_array_get(list, i);
    cr_assert_not_null(sec, "no %s section", currency);
    cr_assert_eq(fx_json_minor(json_object_get(sec, "opening")), opening);
    cr_assert_eq(fx_json_minor(json_object_get(sec, "accruals")), accruals);
    cr_assert_eq(fx_json_minor(json_object_get(sec, "clawbacks")), clawbacks);
    cr_assert_eq(fx_json_minor(json_object_get(sec, "payouts")), payouts);
    cr_assert_eq(fx_json_minor(json_object_get(sec, "closing")), closing);
    json_t *lines = json_object_get(sec, "lines");
    for (size_t i = 0; i < json_array_size(lines); i++)
        fx_json_minor(json_object_get(json_array_get(lines, i), "amount"));
    cr_assert(json_is_true(json_object_get(sec, "reconciles")));
    return sec;
}

Test(e2e_ledger, payout_statement_and_check)
{
    /* August: handoff, a payment at 10 %. September: alice's rate is 12 %, a partial refund,
     * and a refund that arrives before its payment (held, then posted). mark is the account
     * manager at 1 %. */
    submit(fx_handoff("h1", "acme", "alice", "mark", at(8, 10)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p1", "pay-1", "acme", 10000, "EUR", at(8, 20)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p2", "pay-2", "acme", 20000, "EUR", at(9, 15)), FUNNEL_SUBMIT_OK);
    submit(fx_refund("r1", "ref-1", "pay-2", "acme", 5000, "EUR", at(9, 20)), FUNNEL_SUBMIT_OK);
    submit(fx_refund("r0", "ref-0", "pay-3", "acme", 500, "EUR", at(9, 26)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p3", "pay-3", "acme", 1000, "EUR", at(9, 25)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p1", "pay-1", "acme", 10000, "EUR", at(8, 20)), FUNNEL_SUBMIT_DUPLICATE);

    json_t *doc = statement("alice", "2026-09");
    /* opening 1000 (August); accruals 2400 + 120; clawbacks ceil(2400/4) + ceil(120/2). */
    json_t *sec = expect_section(doc, "EUR", 1000, 2520, 660, 0, 2860);
    json_t *lines = json_object_get(sec, "lines");
    cr_assert_eq(json_array_size(lines), 4);
    json_t *first = json_array_get(lines, 0);
    cr_assert_str_eq(json_string_value(json_object_get(first, "subject_event_id")), "p2");
    cr_assert_eq(json_integer_value(json_object_get(first, "rate_bp")), 1200);
    json_t *held = json_array_get(lines, 3);
    cr_assert_str_eq(json_string_value(json_object_get(held, "kind")), "CLAWBACK");
    cr_assert_str_eq(json_string_value(json_object_get(held, "subject_event_id")), "r0");
    cr_assert_str_eq(json_string_value(json_object_get(held, "cause_event_id")), "p3",
                     "posted when the payment it waited for arrived");
    json_decref(doc);
    doc = statement("mark", "2026-09");
    expect_section(doc, "EUR", 100, 210, 55, 0, 255);
    json_decref(doc);

    /* Payroll pays alice through September, through funneld; running it again is a no-op. */
    char out[8192];
    const char *payout[] = {"payout", "--rep", "alice", "--through", "2026-09-30", NULL};
    cr_assert_eq(ctl(out, sizeof out, payout), 0, "%s", out);
    cr_assert(strstr(out, "ok payout:alice:2026-09-30"), "%s", out);
    cr_assert_eq(ctl(out, sizeof out, payout), 0, "%s", out);
    cr_assert(strstr(out, "duplicate payout:alice:2026-09-30"), "%s", out);

    /* The payout is posted at its own time: the statement of its month shows it. That month is
     * read from the posting, not from today's date, which may have turned since. */
    char period[16];
    cr_assert_eq(fx_db_int(fd.db, "SELECT count(*) FROM ledger_entry WHERE kind = 'PAYOUT'"
                                  " AND rep = 'alice'"),
                 1, "one payout posting");
    funnel_date_format(fx_db_int(fd.db, "SELECT effective_ms FROM ledger_entry"
                                        " WHERE kind = 'PAYOUT' AND rep = 'alice'"),
                       period, sizeof period);
    period[7] = '\0';
    doc = statement("alice", period);
    expect_section(doc, "EUR", 2860, 0, 0, 2860, 0);
    json_decref(doc);

    const char *csv[] = {"statement", "--rep", "alice", "--period", "2026-09", "--csv", NULL};
    cr_assert_eq(ctl(out, sizeof out, csv), 0, "%s", out);
    cr_assert(strstr(out, "opening,EUR,,,,,,,,,1000\n"), "%s", out);
    cr_assert(strstr(out, "closing,EUR,,,,,,,,,2860\n"), "%s", out);
    cr_assert(strstr(out, "posting,EUR,2026-09-15,ACCRUAL,rep,acme,ledger:p2#1,p2,p2,1200,2400\n"),
              "%s", out);
    const char *text[] = {"statement", "--rep", "alice", "--period", "2026-09", NULL};
    cr_assert_eq(ctl(out, sizeof out, text), 0, "%s", out);
    cr_assert(strstr(out, "closing") && strstr(out, "2860"), "%s", out);

    const char *check[] = {"ledger", "check", NULL};
    cr_assert_eq(ctl(out, sizeof out, check), 0, "%s", out);
    cr_assert(strstr(out, "ledger check ok: 11 postings"), "%s", out);

    /* Usage errors are refused before anything is sent. */
    const char *bad_date[] = {"payout", "--rep", "alice", "--through", "2026-02-30", NULL};
    cr_assert_eq(ctl(out, sizeof out, bad_date), 2, "%s", out);
    const char *no_rep[] = {"statement", "--period", "2026-09", NULL};
    cr_assert_eq(ctl(out, sizeof out, no_rep), 2, "%s", out);
    const char *bad_sub[] = {"ledger", "fix", NULL};
    cr_assert_eq(ctl(out, sizeof out, bad_sub), 2, "%s", out);

    /* A balance edited behind funneld's back: the check says so and fails. */
    cr_assert_eq(fx_daemon_stop(&fd), 0);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(fd.db, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "UPDATE ledger_balance SET balance = balance - 1"
                              " WHERE account = 'payable' AND rep = 'mark'",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(ctl(out, sizeof out, check), 1, "%s", out);
    cr_assert(strstr(out, "balance differs from the sum of its postings: payable mark EUR"), "%s",
              out);
}

/* Sends n events on one DEALER without waiting, then checks each reply's status starts with
 * want[i] (replies may come in any order: they are matched by event_id). Frees the events. */
static void pipeline_expect(funnel_envelope_t **ev, const char *const *want, size_t n)
{
    char event_id[8][64];
    fx_answer_t answers[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++)
        snprintf(event_id[i], sizeof event_id[i], "%s", ev[i]->event_id);
    fx_submit_burst(fd.submit, ev, n, NULL, answers);
    for (size_t i = 0; i < n; i++) {
        const char *st = NULL;
        for (size_t k = 0; k < n && !st; k++)
            if (!strcmp(answers[k].event_id, event_id[i]))
                st = answers[k].status;
        cr_assert_not_null(st, "%s: no answer", event_id[i]);
        cr_assert(!strncmp(st, want[i], strlen(want[i])), "%s: %s", event_id[i], st);
    }
}

/* A valid event the ledger cannot hold (alice's accruals on acme would pass INT64_MAX) is
 * answered "rejected" with the reason, dead-lettered and changes nothing; the events around it
 * are recorded, and sending it again is refused again rather than taken for a duplicate. */
Test(e2e_ledger, unappliable_event_is_refused_with_a_reason)
{
    char id[32], pay[32];
    submit(fx_handoff("h1", "acme", "alice", "", at(10, 1)), FUNNEL_SUBMIT_OK);
    /* At 12 % each payment of INT64_MAX accrues about 1.1e18: eight fit, the ninth does not. */
    for (int i = 1; i <= 8; i++) {
        snprintf(id, sizeof id, "p%d", i);
        snprintf(pay, sizeof pay, "pay-%d", i);
        submit(fx_payment(id, pay, "acme", INT64_MAX, "EUR", at(10, 1 + i)), FUNNEL_SUBMIT_OK);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        funnel_envelope_t *env = fx_payment("p9", "pay-9", "acme", INT64_MAX, "EUR", at(10, 20));
        funnel_submit_result_t res;
        int rc = funnel_client_submit(client, fd.submit, "payment.received", env, NULL, &res);
        funnel_envelope_free(&env);
        cr_assert_eq(rc, 0, "no answer to an event the ledger cannot apply");
        cr_assert_eq(res.status, FUNNEL_SUBMIT_REJECTED, "status %d", res.status);
        cr_assert(strstr(res.reason, "overflow: ledger: the accruals of alice in EUR"), "%s",
                  res.reason);
    }
    /* Sent together they share a batch: the refusal sinks p9 alone. */
    funnel_envelope_t *burst[] = {
        fx_payment("p10", "pay-10", "acme", 1000, "EUR", at(10, 21)),
        fx_payment("p9", "pay-9", "acme", INT64_MAX, "EUR", at(10, 20)),
        fx_payment("p1", "pay-1", "acme", INT64_MAX, "EUR", at(10, 2)),
        fx_payment("p11", "pay-11", "acme", 2000, "EUR", at(10, 22)),
    };
    const char *want[] = {"ok", "rejected: overflow: ledger:", "duplicate", "ok"};
    pipeline_expect(burst, want, 4);

    char out[16384];
    const char *rejected[] = {"rejected", NULL};
    cr_assert_eq(ctl(out, sizeof out, rejected), 0, "%s", out);
    cr_assert(strstr(out, "\"p9\"") && strstr(out, "\"overflow\""), "%s", out);
    cr_assert(!strstr(out, "\"p10\"") && !strstr(out, "\"p11\""), "%s", out);
    json_t *doc = statement("alice", "2026-10");
    json_t *list = json_object_get(doc, "currencies");
    json_t *lines = json_object_get(json_array_get(list, 0), "lines");
    cr_assert_eq(json_array_size(lines), 10, "8 large payments, p10 and p11");
    json_decref(doc);
    const char *check[] = {"ledger", "check", NULL};
    cr_assert_eq(ctl(out, sizeof out, check), 0, "%s", out);
    cr_assert(fx_daemon_log_has(&fd, "refused payment.received event_id=p9: overflow", 5000));
}

/* A refund naming another client's payment claws back nothing: the sender is answered ok (the
 * fact is kept), the log says once why it is held, and `ledger check` lists it without failing. */
Test(e2e_ledger, refund_of_another_clients_payment_is_held_and_listed)
{
    submit(fx_handoff("h1", "acme", "alice", "", at(10, 1)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p1", "pay-1", "acme", 10000, "EUR", at(10, 2)), FUNNEL_SUBMIT_OK);
    submit(fx_refund("r1", "ref-1", "pay-1", "globex", 5000, "EUR", at(10, 3)), FUNNEL_SUBMIT_OK);
    json_t *doc = statement("alice", "2026-10");
    expect_section(doc, "EUR", 0, 1200, 0, 0, 1200);
    json_decref(doc);
    char out[8192];
    const char *check[] = {"ledger", "check", NULL};
    cr_assert_eq(ctl(out, sizeof out, check), 0, "%s", out);
    cr_assert(strstr(out, "held: unmatched refund: ref-1 event=r1 client=globex currency=EUR "
                          "payment=pay-1 payment_client=acme payment_currency=EUR"),
              "%s", out);
    cr_assert(strstr(out, "1 unmatched refund(s) held"), "%s", out);
    cr_assert(fx_daemon_log_has(&fd, "refund ref-1 of client globex in EUR is held", 5000));
}

/* Decisions of issue 9: a payout through a negative time or a day still to come is refused, and
 * a statement of a rep who never had a posting fails saying so instead of printing nothing. */
Test(e2e_ledger, payouts_through_the_future_and_unknown_reps_are_refused)
{
    submit(fx_commission_paid("pay-neg", "payout-neg", "alice", -1, at(10, 1)),
           FUNNEL_SUBMIT_REJECTED);
    char out[8192], tomorrow[16], today[16];
    int64_t now = fx_now_ms();
    funnel_date_format(now + 86400000LL, tomorrow, sizeof tomorrow);
    funnel_date_format(now, today, sizeof today);
    const char *future[] = {"payout", "--rep", "alice", "--through", tomorrow, NULL};
    cr_assert_eq(ctl(out, sizeof out, future), 2, "%s", out);
    cr_assert(strstr(out, "after today"), "%s", out);
    const char *now_ok[] = {"payout", "--rep", "alice", "--through", today, NULL};
    cr_assert_eq(ctl(out, sizeof out, now_ok), 0, "%s", out);

    submit(fx_handoff("h1", "acme", "alice", "", at(10, 1)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p1", "pay-1", "acme", 10000, "EUR", at(10, 2)), FUNNEL_SUBMIT_OK);
    const char *nobody[] = {"statement", "--rep", "nobody", "--period", "2026-10", NULL};
    cr_assert_eq(ctl(out, sizeof out, nobody), 1, "%s", out);
    cr_assert(strstr(out, "nobody has no postings"), "%s", out);
    /* A rep with postings, only in other periods, gets a statement (opening balance only). */
    const char *quiet[] = {"statement", "--rep", "alice", "--period", "2026-09", NULL};
    cr_assert_eq(ctl(out, sizeof out, quiet), 0, "%s", out);
}

/* `--through 2026-10` is the whole month (README): a payout pays the accrual of a payment at its
 * last millisecond and not that of one at the next midnight. */
Test(e2e_ledger, payout_through_a_month_pays_its_last_millisecond_and_nothing_after)
{
    const int64_t nov1 = funnel_date_utc_ms(2026, 11, 1);
    submit(fx_handoff("h1", "acme", "alice", "", at(9, 1)), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p-in", "pay-in", "acme", 10000, "EUR", nov1 - 1), FUNNEL_SUBMIT_OK);
    submit(fx_payment("p-out", "pay-out", "acme", 20000, "EUR", nov1), FUNNEL_SUBMIT_OK);
    char out[8192];
    const char *payout[] = {"payout", "--rep", "alice", "--through", "2026-10", NULL};
    cr_assert_eq(ctl(out, sizeof out, payout), 0, "%s", out);
    cr_assert(strstr(out, "ok payout:alice:2026-10"), "%s", out);
    int64_t in = fx_db_int(fd.db, "SELECT amount FROM ledger_entry WHERE kind = 'ACCRUAL'"
                                  " AND subject_event_id = 'p-in' AND rep = 'alice'");
    cr_assert_gt(in, 0);
    cr_assert_eq(fx_db_int(fd.db, "SELECT -balance FROM ledger_balance WHERE account = 'paid'"
                                  " AND rep = 'alice' AND currency = 'EUR'"),
                 in, "paid through October: p-in's accrual only");
}
