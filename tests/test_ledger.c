/* test_ledger.c — the commission ledger driven directly: a temporary store, the real router,
 * the ledger engine and an injected clock. Unit tests for the plan arithmetic (rates, terms,
 * rounding, dates, config) and the engine (caps, effective dates, refunds, order, payouts,
 * reports), then a property test over random shuffled streams with duplicates. */
#include "config_fx.h"
#include "engine_fx.h"
#include "harness.h"
#include "sections.h"
#include "ledger_fx.h"
#include "sql_fx.h"

#include "config.h"
#include "funnel/date.h"
#include "funnel/error.h"
#include "ledger.h"
#include "funnel/money.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL

static fx_tmpdir_t tmp;
static funnel_store_t *store;
static funnel_router_t *router;
static funnel_ledger_t *ledger;
static funnel_commission_config_t plan;
static int64_t now_ms;
static fx_engine_t eng; /* keeps no output: tests read the ledger's tables */
static int n_dbs;

#define MAX_EVENTS 64

/* One generated stream of the property test; freed by the fini even when an assertion fails. */
typedef struct stream {
    funnel_envelope_t *ev[MAX_EVENTS];
    size_t n;
} stream_t;
static stream_t stream;

/* Times of the scenarios: well in the past, fixed, so results never depend on the clock. */
static int64_t day(int64_t y, int64_t m, int64_t d)
{
    return funnel_date_utc_ms(y, m, d) + 12 * 3600 * 1000LL; /* noon UTC */
}

/* Opens a fresh database and ledger over the current plan. */
static void ledger_open(void)
{
    char path[400], err[512];
    snprintf(path, sizeof path, "%s/ledger-%d.db", tmp.path, n_dbs++);
    cr_assert_eq(funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(funnel_ledger_new(store, &plan, NULL, &ledger, err, sizeof err), 0, "%s", err);
    cr_assert_eq(funnel_router_new(store, &router), 0);
    funnel_engine_t engine = {.name = "ledger", .self = ledger, .on_event = funnel_ledger_on_event};
    cr_assert_eq(funnel_router_add_engine(router, &engine), 0);
    eng.store = store;
    eng.router = router;
}

static void ledger_close(void)
{
    funnel_router_destroy(&router);
    funnel_ledger_destroy(&ledger);
    funnel_store_destroy(&store);
}

static void setup(void)
{
    fx_tmpdir_make(&tmp);
    funnel_commission_config_defaults(&plan);
    plan.default_rate_bp = 1000; /* 10 % unless a test says otherwise */
    now_ms = day(2026, 11, 1);
    ledger_open();
}

static void stream_free(stream_t *st);

static void teardown(void)
{
    stream_free(&stream);
    ledger_close();
    funnel_commission_config_clear(&plan);
    fx_tmpdir_remove(&tmp);
}

TestSuite(ledger, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(ledger_plan);

/* Adds a rate override to the plan (owned by it, freed by the config clear). */
static void plan_rate(const char *rep, int64_t rate_bp, int64_t from_ms)
{
    funnel_commission_rate_t *r = realloc(plan.rates, (plan.n_rates + 1) * sizeof *r);
    cr_assert_not_null(r);
    plan.rates = r;
    r[plan.n_rates].rep = strdup(rep);
    r[plan.n_rates].rate_bp = rate_bp;
    r[plan.n_rates].from_ms = from_ms;
    plan.n_rates++;
}

/* Routes one event in its own transaction, as funneld's batch does, and frees it. Returns the
 * router's answer (0 or FUNNEL_EDUP). */
static int apply_in_txn(funnel_envelope_t *env, bool own_txn)
{
    return own_txn ? fx_engine_route(&eng, env, now_ms)
                   : fx_engine_route_guarded(&eng, env, now_ms, false);
}

static int apply(funnel_envelope_t *env)
{
    return apply_in_txn(env, true);
}

static void must(funnel_envelope_t *env)
{
    int rc = apply(env);
    cr_assert_eq(rc, 0, "apply: %s (%s)", funnel_strerror(rc), funnel_router_refusal(router)->text);
}

/* One integer from a query with up to two text parameters; 0 when there is no row or NULL. */
static int64_t query_int(const char *sql, const char *a, const char *b)
{
    const char *params[] = {a, b, NULL};
    return fx_sql_int(funnel_store_db(store), sql, params);
}

/* What the company owes rep in currency, from the stored balance of the payable account. */
static int64_t owed(const char *rep, const char *currency)
{
    return -query_int("SELECT balance FROM ledger_balance WHERE account = 'payable' AND rep = ?1"
                      " AND currency = ?2",
                      rep, currency);
}

static int64_t kind_sum(const char *rep, const char *kind)
{
    return query_int("SELECT SUM(amount) FROM ledger_entry WHERE rep = ?1 AND kind = ?2", rep,
                     kind);
}

static int64_t postings(void)
{
    return query_int("SELECT COUNT(*) FROM ledger_entry", NULL, NULL);
}

/* What person (a column of the canonical handoff h) accrued on the client in the currency of the
 * payment row p. */
#define ACCRUED_OF(person)                                                                         \
    "IFNULL((SELECT SUM(amount) FROM ledger_entry e WHERE e.kind = 'ACCRUAL'"                      \
    " AND e.client_id = p.client_id AND e.currency = p.currency AND e.rep = h." person "), 0)"
/* The latest payment row of each client and currency whose running totals differ from the
 * accruals of the client's rep and account manager (or are missing, once handed off). */
#define RUNNING_TOTALS_WRONG                                                                       \
    "SELECT COUNT(*) FROM ledger_payment p JOIN ledger_handoff h ON h.event_id = ("                \
    " SELECT event_id FROM ledger_handoff WHERE client_id = p.client_id"                           \
    " ORDER BY at_ms, event_id LIMIT 1) WHERE NOT EXISTS (SELECT 1 FROM ledger_payment q"          \
    " WHERE q.client_id = p.client_id AND q.currency = p.currency AND (q.at_ms > p.at_ms"          \
    " OR (q.at_ms = p.at_ms AND q.event_id > p.event_id))) AND (p.rep_used IS NOT " ACCRUED_OF(    \
        "from_rep") " OR (h.account_manager <> '' AND p.am_used IS NOT " ACCRUED_OF("account_"     \
                                                                                    "manager") ")" \
                                                                                               ")"

static void expect_books_sound(void)
{
    int64_t problems = -1;
    cr_assert_eq(funnel_ledger_check(store, NULL, NULL, &problems, NULL, NULL), 0);
    cr_assert_eq(problems, 0, "the books do not balance");
    cr_assert_eq(query_int(RUNNING_TOTALS_WRONG, NULL, NULL), 0,
                 "a running total of a latest payment differs from its postings");
}

/* Applies events (freed) to a fresh database, in their order or reversed, and checks the
 * books. */
static void scene_feed(funnel_envelope_t **events, size_t n, bool reversed)
{
    ledger_close();
    ledger_open();
    for (size_t i = 0; i < n; i++)
        must(events[reversed ? n - 1 - i : i]);
    expect_books_sound();
}

/* ---- plan arithmetic ------------------------------------------------------------------- */

Test(ledger_plan, rounding_rule)
{
    int64_t v;
    cr_assert_eq(funnel_commission_accrual(1999, 500, &v), 0);
    cr_assert_eq(v, 99, "99.95 rounds down to 99");
    cr_assert_eq(funnel_commission_accrual(10000, 1, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(funnel_commission_accrual(9999, 1, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(funnel_commission_accrual(INT64_MAX, 10000, &v), 0);
    cr_assert_eq(v, INT64_MAX, "computed in 128 bits, no wrap");
    cr_assert_eq(funnel_commission_accrual(-1, 100, &v), FUNNEL_EINVAL);
    /* Clawbacks round up and never exceed what was accrued. */
    cr_assert_eq(funnel_commission_clawback_total(99, 1, 999, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(funnel_commission_clawback_total(99, 999, 999, &v), 0);
    cr_assert_eq(v, 99);
    cr_assert_eq(funnel_commission_clawback_total(99, 5000, 999, &v), 0);
    cr_assert_eq(v, 99);
    cr_assert_eq(funnel_commission_clawback_total(99, 0, 999, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(funnel_commission_clawback_total(99, 1, 0, &v), FUNNEL_EINVAL);
    cr_assert_eq(funnel_money_scale(INT64_MAX, 2, 1, FUNNEL_ROUND_DOWN, &v), FUNNEL_EINVAL);
    cr_assert_eq(funnel_money_scale(7, 1, 2, FUNNEL_ROUND_UP, &v), 0);
    cr_assert_eq(v, 4);
}

Test(ledger_plan, terms_in_months)
{
    cr_assert_eq(funnel_commission_term_end(day(2026, 1, 31), 1), day(2026, 2, 28));
    cr_assert_eq(funnel_commission_term_end(day(2024, 1, 31), 1), day(2024, 2, 29));
    cr_assert_eq(funnel_commission_term_end(day(2026, 3, 15), 12), day(2027, 3, 15));
    cr_assert_eq(funnel_commission_term_end(day(2026, 11, 30), 3), day(2027, 2, 28));
    cr_assert_eq(funnel_commission_term_end(day(2026, 3, 15), 0), INT64_MAX);
}

Test(ledger_plan, utc_dates)
{
    int64_t a, b;
    char text[16];
    cr_assert_eq(funnel_date_parse("2026-11", &a, &b), 0);
    cr_assert_eq(a, 1793491200000LL);
    cr_assert_eq(b, 1796083200000LL);
    cr_assert_eq(funnel_date_parse("2026-11-30", &a, &b), 0);
    cr_assert_eq(a, 1796083200000LL - DAY_MS);
    cr_assert_eq(b, 1796083200000LL);
    cr_assert_eq(funnel_date_parse("2024-02-29", &a, &b), 0);
    cr_assert_eq(funnel_date_parse("2026-02-29", &a, &b), FUNNEL_EINVAL);
    cr_assert_eq(funnel_date_parse("2026-13", &a, &b), FUNNEL_EINVAL);
    cr_assert_eq(funnel_date_parse("2026-1-01", &a, &b), FUNNEL_EINVAL);
    cr_assert_eq(funnel_date_parse("", &a, &b), FUNNEL_EINVAL);
    cr_assert_eq(funnel_date_parse(NULL, &a, &b), FUNNEL_EINVAL);
    cr_assert_eq(funnel_date_parse("2026-11-30x", &a, &b), FUNNEL_EINVAL);
    funnel_date_format(1796083200000LL - 1, text, sizeof text);
    cr_assert_str_eq(text, "2026-11-30");
}

Test(ledger_plan, effective_dated_rates)
{
    funnel_commission_config_t p;
    funnel_commission_config_defaults(&p);
    p.default_rate_bp = 500;
    funnel_commission_rate_t rates[] = {
        {"alice", 700, funnel_date_utc_ms(2026, 3, 1)},
        {"alice", 900, funnel_date_utc_ms(2026, 6, 1)},
    };
    p.rates = rates;
    p.n_rates = 2;
    cr_assert_eq(funnel_commission_rate_at(&p, "alice", day(2026, 2, 28)), 500);
    cr_assert_eq(funnel_commission_rate_at(&p, "alice", funnel_date_utc_ms(2026, 3, 1)), 700);
    cr_assert_eq(funnel_commission_rate_at(&p, "alice", day(2026, 5, 31)), 700);
    cr_assert_eq(funnel_commission_rate_at(&p, "alice", day(2026, 6, 1)), 900);
    cr_assert_eq(funnel_commission_rate_at(&p, "bob", day(2026, 6, 1)), 500);
}

/* Writes text to a file in a fresh temporary directory and loads it as funneld's config. */
static int load_config(const char *text, funnel_config_t *cfg, char *err, size_t err_len)
{
    memset(cfg, 0, sizeof *cfg);
    return fx_config_load_text(text, cfg, err, err_len);
}

Test(ledger_plan, config_section)
{
    funnel_config_t cfg;
    char err[512] = "";
    int rc = load_config("commission = { default_rate_bp = 250; term_months = 24;"
                         " cap_minor = 5000000000L; account_manager_rate_bp = 50;"
                         " rates = ( { rep = \"zoe\"; rate_bp = 300; from = \"2026-06-01\"; },"
                         " { rep = \"al\"; rate_bp = 700; from = \"2026-01-01\"; } ); };",
                         &cfg, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(COMMISSION(cfg)->default_rate_bp, 250);
    cr_assert_eq(COMMISSION(cfg)->term_months, 24);
    cr_assert_eq(COMMISSION(cfg)->cap_minor, 5000000000LL);
    cr_assert_eq(COMMISSION(cfg)->account_manager_rate_bp, 50);
    cr_assert_eq(COMMISSION(cfg)->n_rates, 2);
    cr_assert_str_eq(COMMISSION(cfg)->rates[0].rep, "al", "sorted by rep");
    cr_assert_eq(COMMISSION(cfg)->rates[1].from_ms, funnel_date_utc_ms(2026, 6, 1));
    /* --check-config prints a section that reads back. */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    funnel_config_print(&cfg, mem);
    fclose(mem);
    cr_assert(strstr(text, "from = \"2026-06-01\""), "%s", text);
    funnel_config_t again;
    cr_assert_eq(load_config(text, &again, err, sizeof err), 0, "%s\n%s", err, text);
    cr_assert_eq(COMMISSION(again)->cap_minor, 5000000000LL);
    cr_assert_eq(COMMISSION(again)->n_rates, 2);
    free(text);
    funnel_config_clear(&again);
    funnel_config_clear(&cfg);
    cr_assert_eq(funnel_config_defaults(&cfg, &funnel_engine_registry), 0);
    cr_assert_eq(COMMISSION(cfg)->default_rate_bp, 0, "nothing is paid until a plan is set");
    funnel_config_clear(&cfg);
}

Test(ledger_plan, config_errors)
{
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"commission = { default_rate_bp = 10001; };", "default_rate_bp"},
        {"commission = { rate = 5; };", "unknown option 'rate'"},
        {"commission = { term_months = \"x\"; };", "term_months: expected an integer"},
        {"commission = { cap_minor = -1; };", "cap_minor"},
        {"commission = { rates = ( { rep = \"a\"; rate_bp = 1; from = \"2026-02-30\"; } ); };",
         "rates[0].from"},
        {"commission = { rates = ( { rep = \"a\"; from = \"2026-02-01\"; } ); };", "rate_bp"},
        {"commission = { rates = ( { rate_bp = 1; from = \"2026-02-01\"; } ); };", "needs rep"},
        {"commission = { rates = ( { rep = \"a\"; rate_bp = 1; from = \"2026-02-01\"; },"
         " { rep = \"a\"; rate_bp = 2; from = \"2026-02-01\"; } ); };",
         "same date"},
        {"commission = { rates = ( 5 ); };", "expected a group"},
        {"commission = 5;", "expected a group"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        funnel_config_t cfg;
        char err[512] = "";
        cr_assert_eq(load_config(bad[i].text, &cfg, err, sizeof err), FUNNEL_ECONFIG, "%s",
                     bad[i].text);
        cr_assert(strstr(err, bad[i].needle), "%s: got '%s'", bad[i].text, err);
    }
}

/* ---- the engine ------------------------------------------------------------------------ */

Test(ledger, accrues_on_payments_after_the_handoff)
{
    must(fx_payment("p0", "pay-0", "c1", 50000, "EUR", day(2026, 1, 5))); /* the first deal */
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 10)));
    must(fx_payment("p1", "pay-1", "c1", 12345, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1234, "10 %% of 12345, rounded down");
    cr_assert_eq(postings(), 1, "the payment before the handoff earns nothing");
    /* The output message names everything a subscriber needs. */
    must(fx_payment("p2", "pay-2", "c1", 1000, "USD", day(2026, 2, 2)));
    cr_assert_eq(owed("alice", "USD"), 100, "balances are per currency");
    cr_assert_eq(owed("alice", "EUR"), 1234);
    expect_books_sound();
}

/* Reads the newest commission.posted from the outbox. */
static int last_posted(const funnel_outbox_row_t *row, void *arg)
{
    if (strcmp(row->topic, "commission.posted") == 0) {
        funnel_envelope_t **out = arg;
        funnel_envelope_free(out);
        *out = funnel__v1__envelope__unpack(NULL, row->len, row->envelope);
    }
    return 0;
}

Test(ledger, publishes_commission_posted)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 10)));
    must(fx_payment("p1", "pay-1", "c1", 20000, "EUR", day(2026, 2, 1)));
    funnel_envelope_t *env = NULL;
    cr_assert_eq(funnel_store_outbox_read(store, 1, 100, last_posted, &env), 0);
    cr_assert_not_null(env);
    cr_assert_eq(env->body_case, FUNNEL__V1__ENVELOPE__BODY_COMMISSION_POSTED);
    const Funnel__V1__CommissionPosted *cp = env->commission_posted;
    cr_assert_str_eq(env->event_id, "ledger:p1#1");
    cr_assert_str_eq(cp->entry_id, "", "the entry id is the envelope's event_id, not repeated");
    cr_assert_eq(env->occurred_at_ms, day(2026, 2, 1), "event time, not arrival time");
    cr_assert_str_eq(cp->rep, "alice");
    cr_assert_str_eq(cp->client_id, "c1");
    cr_assert_str_eq(cp->cause_event_id, "p1");
    cr_assert_str_eq(cp->subject_event_id, "", "the payment is its own cause: not repeated");
    cr_assert_eq(cp->kind, FUNNEL__V1__COMMISSION_KIND__ACCRUAL);
    cr_assert_eq(cp->amount->minor, 2000);
    cr_assert_str_eq(cp->amount->currency, "EUR");
    cr_assert_eq(cp->rate_bp, 1000);
    cr_assert_eq(cp->role, FUNNEL__V1__COMMISSION_ROLE__COMMISSION_ROLE_REP);
    funnel_envelope_free(&env);
    /* A late handoff settles the payment it did not cause: the subject is named. */
    must(fx_payment("p2", "pay-2", "c2", 20000, "EUR", day(2026, 2, 1)));
    must(fx_handoff("h2", "c2", "alice", "", day(2026, 1, 10)));
    cr_assert_eq(funnel_store_outbox_read(store, 1, 100, last_posted, &env), 0);
    cr_assert_not_null(env);
    cp = env->commission_posted;
    cr_assert_str_eq(env->event_id, "ledger:h2#1");
    cr_assert_str_eq(cp->cause_event_id, "h2");
    cr_assert_str_eq(cp->subject_event_id, "p2");
    funnel_envelope_free(&env);
}

Test(ledger, effective_dated_rate_at_payment_time)
{
    plan_rate("alice", 700, funnel_date_utc_ms(2026, 3, 1));
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 10)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 28)));
    must(fx_payment("p2", "pay-2", "c1", 10000, "EUR", funnel_date_utc_ms(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000 + 700);
    cr_assert_eq(
        query_int("SELECT rate_bp FROM ledger_entry WHERE subject_event_id = 'p2'", NULL, NULL),
        700);
}

Test(ledger, term_ends_months_after_the_handoff)
{
    plan.term_months = 2;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 31)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 3, 30)));
    must(fx_payment("p2", "pay-2", "c1", 10000, "EUR", day(2026, 3, 31)));
    must(fx_payment("p3", "pay-3", "c1", 10000, "EUR", day(2026, 4, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000, "Jan 31 + 2 months ends on Mar 31");
}

Test(ledger, cap_per_client_and_currency)
{
    plan.cap_minor = 2500;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_handoff("h2", "c2", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    must(fx_payment("p2", "pay-2", "c1", 10000, "EUR", day(2026, 3, 1)));
    must(fx_payment("p3", "pay-3", "c1", 10000, "EUR", day(2026, 4, 1)));
    must(fx_payment("p4", "pay-4", "c1", 10000, "EUR", day(2026, 5, 1)));
    must(fx_payment("p5", "pay-5", "c2", 10000, "EUR", day(2026, 5, 1)));
    cr_assert_eq(owed("alice", "EUR"), 2500 + 1000, "c1 stops at its cap, c2 has its own");
    cr_assert_eq(
        query_int("SELECT amount FROM ledger_entry WHERE subject_event_id = 'p3'", NULL, NULL),
        500);
    cr_assert_eq(postings(), 4, "p4 earns nothing and posts nothing");
}

Test(ledger, account_manager_rate)
{
    plan.account_manager_rate_bp = 150;
    must(fx_handoff("h1", "c1", "alice", "mark", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000);
    cr_assert_eq(owed("mark", "EUR"), 150);
    must(fx_handoff("h2", "c2", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p2", "pay-2", "c2", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("mark", "EUR"), 150, "no account manager on c2");
}

Test(ledger, repeated_partial_refunds_claw_back_exactly)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 999, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("alice", "EUR"), 99);
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 333, "EUR", day(2026, 2, 2)));
    cr_assert_eq(owed("alice", "EUR"), 66, "ceil(99 * 333 / 999) = 33 clawed");
    must(fx_refund("r2", "ref-2", "pay-1", "c1", 1, "EUR", day(2026, 2, 3)));
    cr_assert_eq(owed("alice", "EUR"), 65, "ceil(99 * 334 / 999) = 34: one more");
    must(fx_refund("r3", "ref-3", "pay-1", "c1", 1, "EUR", day(2026, 2, 4)));
    cr_assert_eq(owed("alice", "EUR"), 65, "ceil(99 * 335 / 999) is still 34");
    must(fx_refund("r4", "ref-4", "pay-1", "c1", 5000, "EUR", day(2026, 2, 5)));
    cr_assert_eq(owed("alice", "EUR"), 0, "over-refunds claw back what was accrued, no more");
    must(fx_refund("r5", "ref-5", "pay-1", "c1", 100, "EUR", day(2026, 2, 6)));
    cr_assert_eq(owed("alice", "EUR"), 0);
    cr_assert_eq(kind_sum("alice", "CLAWBACK"), 99);
    expect_books_sound();
}

Test(ledger, clawback_at_the_original_rate)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    plan.default_rate_bp = 2000; /* a reload after the payment */
    plan_rate("alice", 3000, funnel_date_utc_ms(2026, 1, 1));
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 5000, "EUR", day(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 500, "half of the 1000 accrued at 10 %%");
    cr_assert_eq(query_int("SELECT rate_bp FROM ledger_entry WHERE kind = 'CLAWBACK'", NULL, NULL),
                 1000);
}

/* A rate whose accrual is posted is frozen in the posting: ledger_rate keeps only the rates no
 * posting holds. At a cap of 10.00, p2 (40.00 at 10 %) earns nothing behind p1, so its rate is
 * kept; when p1's payment_id turns out to be c2's (an earlier row of it), p1's accrual is
 * reversed and p2 earns at the rate frozen before the reload, not at the new 20 %. */
Test(ledger, rates_are_frozen_in_their_postings)
{
    plan.cap_minor = 1000;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    must(fx_payment("p2", "pay-2", "c1", 4000, "EUR", day(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000);
    cr_assert_eq(
        query_int("SELECT COUNT(*) FROM ledger_rate WHERE payment_event_id = 'p1'", NULL, NULL), 0,
        "p1's rate is in its posting");
    cr_assert_eq(query_int("SELECT rate_bp FROM ledger_rate WHERE payment_event_id = 'p2'"
                           " AND role = 'rep' AND rep = 'alice'",
                           NULL, NULL),
                 1000, "p2 posted nothing: its rate is kept");
    plan.default_rate_bp = 2000; /* a reload */
    must(fx_payment("p0", "pay-1", "c2", 10000, "EUR", day(2026, 1, 15)));
    cr_assert_eq(owed("alice", "EUR"), 400, "p2 at its frozen 10 %%, under the cap");
    cr_assert_eq(
        query_int("SELECT rate_bp FROM ledger_entry WHERE subject_event_id = 'p2'", NULL, NULL),
        1000);
    /* A settle after the reload reads p1's rate from its postings. */
    must(fx_payment("p9", "pay-1", "c1", 10000, "EUR", day(2026, 1, 20)));
    cr_assert_eq(owed("alice", "EUR"), 400, "a repeat of pay-1 earns nothing");
    expect_books_sound();
}

Test(ledger, refund_in_another_currency_is_ignored)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 5000, "USD", day(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000);
    cr_assert_eq(postings(), 1);
}

/* Collects the unmatched refunds funnel_ledger_unmatched_refunds reports, one per line. */
static void collect_text(const char *text, void *arg)
{
    char *buf = arg;
    size_t n = strlen(buf);
    snprintf(buf + n, 2048 - n, "%s\n", text);
}

/* A refund claws back only from a payment of its own client (and currency): one naming another
 * client's payment is held, claws back nothing in either order, and is listed as unmatched. */
Test(ledger, refund_naming_another_clients_payment_is_held)
{
    for (int reversed = 0; reversed < 2; reversed++) {
        funnel_envelope_t *ev[] = {
            fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)),
            fx_handoff("h2", "c2", "bob", "", day(2026, 1, 1)),
            fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)),
            fx_refund("r1", "ref-1", "pay-1", "c2", 5000, "EUR", day(2026, 3, 1)),
        };
        scene_feed(ev, 4, reversed);
        cr_assert_eq(owed("alice", "EUR"), 1000, "a refund of client c2 clawed back from c1");
        cr_assert_eq(kind_sum("alice", "CLAWBACK"), 0);
        cr_assert_eq(kind_sum("bob", "CLAWBACK"), 0);
        char text[2048] = "";
        int64_t found = -1;
        cr_assert_eq(funnel_ledger_unmatched_refunds(store, collect_text, text, &found), 0);
        cr_assert_eq(found, 1, "%s", text);
        cr_assert(strstr(text, "ref-1") && strstr(text, "client=c2") &&
                      strstr(text, "payment_client=c1"),
                  "%s", text);
    }
    /* The same client's refund of it claws back as usual, and is not unmatched. */
    must(fx_refund("r2", "ref-2", "pay-1", "c1", 5000, "EUR", day(2026, 3, 2)));
    cr_assert_eq(owed("alice", "EUR"), 500);
    int64_t found = -1;
    cr_assert_eq(funnel_ledger_unmatched_refunds(store, NULL, NULL, &found), 0);
    cr_assert_eq(found, 1);
}

Test(ledger, held_until_the_missing_event_arrives)
{
    /* Refund first, then its payment, then the handoff: nothing can be posted until the end. */
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 2500, "EUR", day(2026, 2, 10)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(postings(), 0);
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    cr_assert_eq(owed("alice", "EUR"), 750);
    cr_assert_eq(kind_sum("alice", "ACCRUAL"), 1000);
    cr_assert_eq(kind_sum("alice", "CLAWBACK"), 250);
    cr_assert_eq(
        query_int("SELECT COUNT(*) FROM ledger_entry WHERE cause_event_id = 'h1'", NULL, NULL), 2,
        "both named after the event that released them");
}

Test(ledger, duplicates_change_nothing)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(apply(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1))),
                 FUNNEL_EDUP);
    /* The same payment_id under a new event_id (a re-sent webhook) counts once. */
    must(fx_payment("p1-again", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000);
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 5000, "EUR", day(2026, 3, 1)));
    must(fx_refund("r1-again", "ref-1", "pay-1", "c1", 5000, "EUR", day(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 500);
    cr_assert_eq(postings(), 2);
}

Test(ledger, late_earlier_payment_corrects_the_cap)
{
    plan.cap_minor = 1500;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p2", "pay-2", "c1", 10000, "EUR", day(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1000);
    /* An earlier payment arrives late: in event-time order it takes the cap first. */
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("alice", "EUR"), 1500);
    cr_assert_eq(
        query_int("SELECT SUM(amount) FROM ledger_entry WHERE subject_event_id = 'p1'", NULL, NULL),
        1000);
    cr_assert_eq(
        query_int("SELECT SUM(amount) FROM ledger_entry WHERE subject_event_id = 'p2'", NULL, NULL),
        500, "p2's accrual is corrected down, as in event-time order");
    cr_assert_eq(query_int("SELECT amount FROM ledger_entry WHERE cause_event_id = 'p1'"
                           " AND subject_event_id = 'p2'",
                           NULL, NULL),
                 -500, "the correction is a new posting, the old one is untouched");
    cr_assert_eq(
        query_int("SELECT amount FROM ledger_entry WHERE cause_event_id = 'p2' AND entry_n = 1",
                  NULL, NULL),
        1000);
    expect_books_sound();
}

Test(ledger, earlier_handoff_moves_the_commission)
{
    must(fx_handoff("h2", "c1", "bob", "", day(2026, 1, 20)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("bob", "EUR"), 1000);
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 10)));
    cr_assert_eq(owed("bob", "EUR"), 0, "the first handoff decides who brought the client");
    cr_assert_eq(owed("alice", "EUR"), 1000);
    expect_books_sound();
}

Test(ledger, payouts_move_payable_to_paid_idempotently)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 10, 15)));
    must(fx_payment("p2", "pay-2", "c1", 20000, "EUR", day(2026, 11, 15)));
    int64_t through = funnel_date_utc_ms(2026, 11, 1) - 1;
    must(fx_commission_paid("pay-oct", "payout-oct", "alice", through, day(2026, 11, 2)));
    cr_assert_eq(kind_sum("alice", "PAYOUT"), 1000, "only October is paid");
    cr_assert_eq(owed("alice", "EUR"), 2000);
    cr_assert_eq(
        query_int("SELECT -balance FROM ledger_balance WHERE account = 'paid'", NULL, NULL), 1000);
    /* The same payout again (new event id, same payout_id), or a later run through the same
     * date, pays nothing more. */
    must(fx_commission_paid("pay-oct-2", "payout-oct", "alice", through, day(2026, 11, 2)));
    must(fx_commission_paid("pay-oct-3", "payout-oct-b", "alice", through, day(2026, 11, 3)));
    cr_assert_eq(kind_sum("alice", "PAYOUT"), 1000);
    /* A refund after the payout leaves the rep owing; the next payout nets it. */
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 10000, "EUR", day(2026, 11, 20)));
    cr_assert_eq(owed("alice", "EUR"), 1000);
    must(fx_commission_paid("pay-nov", "payout-nov", "alice", funnel_date_utc_ms(2026, 12, 1) - 1,
                            day(2026, 12, 1)));
    cr_assert_eq(kind_sum("alice", "PAYOUT"), 2000);
    cr_assert_eq(owed("alice", "EUR"), 0);
    must(fx_commission_paid("pay-bob", "payout-bob", "bob", through, day(2026, 12, 1)));
    cr_assert_eq(postings(), 5, "2 accruals, 1 clawback, 2 payouts; bob had nothing due");
    expect_books_sound();
}

Test(ledger, statement_reconciles)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 10, 15)));
    must(fx_payment("p2", "pay-2", "c1", 20000, "EUR", day(2026, 11, 15)));
    must(fx_payment("p3", "pay-3", "c1", 30000, "USD", day(2026, 11, 16)));
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 5000, "EUR", day(2026, 11, 20)));
    must(fx_commission_paid("po", "po-1", "alice", day(2026, 10, 31), day(2026, 11, 25)));
    int64_t from, to;
    cr_assert_eq(funnel_date_parse("2026-11", &from, &to), 0);
    funnel_ledger_statement_t *st;
    cr_assert_eq(funnel_ledger_statement(store, "alice", from, to, &st), 0);
    cr_assert_eq(st->n_sections, 2);
    const funnel_ledger_section_t *eur = &st->sections[0], *usd = &st->sections[1];
    cr_assert_str_eq(eur->currency, "EUR");
    cr_assert_eq(eur->opening, 1000);
    cr_assert_eq(eur->accruals, 2000);
    cr_assert_eq(eur->clawbacks, 500);
    cr_assert_eq(eur->payouts, 1000);
    cr_assert_eq(eur->closing, 1500);
    cr_assert(eur->reconciles);
    cr_assert_eq(eur->n_lines, 3);
    cr_assert_str_eq(eur->lines[0].cause_event_id, "p2");
    cr_assert_str_eq(eur->lines[1].kind, "CLAWBACK");
    cr_assert_str_eq(eur->lines[1].subject_event_id, "r1");
    cr_assert_str_eq(usd->currency, "USD");
    cr_assert_eq(usd->opening, 0);
    cr_assert_eq(usd->closing, 3000);
    funnel_ledger_statement_free(&st);
    cr_assert_null(st);
}

/* What the trace below saw: report reads, and those run outside a transaction. */
typedef struct read_trace {
    int selects, autocommit_selects;
} read_trace_t;

static int trace_select(unsigned type, void *arg, void *p, void *x)
{
    (void)type;
    (void)x;
    read_trace_t *t = arg;
    sqlite3_stmt *s = p;
    if (sqlite3_stmt_readonly(s) && strncmp(sqlite3_sql(s), "SELECT", 6) == 0) {
        t->selects++;
        t->autocommit_selects += sqlite3_get_autocommit(sqlite3_db_handle(s)) != 0;
    }
    return 0;
}

/* A statement's totals and lines (and the check's queries) are separate SELECTs: they must
 * share one snapshot, or a commit by funneld between them could make a statement "not
 * reconcile". Interleaving a commit deterministically is not possible from here, so this
 * checks the mechanism: every report read runs inside a transaction that is closed after. */
Test(ledger, reports_read_one_snapshot)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    sqlite3 *db = funnel_store_db(store);
    read_trace_t t = {0};
    cr_assert_eq(sqlite3_trace_v2(db, SQLITE_TRACE_STMT, trace_select, &t), SQLITE_OK);
    funnel_ledger_statement_t *st = NULL;
    int64_t problems = -1;
    int rc_st = funnel_ledger_statement(store, "alice", day(2026, 1, 1), day(2026, 3, 1), &st);
    int rc_check = funnel_ledger_check(store, NULL, NULL, &problems, NULL, NULL);
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(rc_st, 0);
    cr_assert_eq(rc_check, 0);
    bool reconciles = st && st->n_sections == 1 && st->sections[0].reconciles;
    funnel_ledger_statement_free(&st);
    cr_assert(reconciles);
    cr_assert_eq(problems, 0);
    cr_assert_geq(t.selects, 2 + 5, "the statement's and the check's reads were traced");
    cr_assert_eq(t.autocommit_selects, 0, "%d report reads ran outside a transaction",
                 t.autocommit_selects);
    cr_assert(sqlite3_get_autocommit(db), "the read transaction was left open");
    /* Inside a caller's transaction the reports use it rather than nest one. */
    cr_assert_eq(funnel_store_begin(store), 0);
    cr_assert_eq(funnel_ledger_check(store, NULL, NULL, &problems, NULL, NULL), 0);
    cr_assert_not(sqlite3_get_autocommit(db), "the caller's transaction is still open");
    funnel_store_rollback(store);
}

static void count_problem(const char *problem, void *arg)
{
    (void)problem;
    ++*(int *)arg;
}

Test(ledger, check_finds_tampering)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    int64_t problems = -1, n_postings = 0, n_balances = 0;
    cr_assert_eq(funnel_ledger_check(store, NULL, NULL, &problems, &n_postings, &n_balances), 0);
    cr_assert_eq(problems, 0);
    cr_assert_eq(n_postings, 1);
    cr_assert_eq(n_balances, 2);
    sqlite3 *db = funnel_store_db(store);
    /* Postings are append-only: the database itself refuses edits. */
    cr_assert_neq(sqlite3_exec(db, "UPDATE ledger_entry SET amount = 1", NULL, NULL, NULL),
                  SQLITE_OK);
    cr_assert_neq(sqlite3_exec(db, "DELETE FROM ledger_line", NULL, NULL, NULL), SQLITE_OK);
    /* A stored balance that drifted from its postings is found. */
    cr_assert_eq(
        sqlite3_exec(db, "UPDATE ledger_balance SET balance = balance + 1", NULL, NULL, NULL),
        SQLITE_OK);
    int seen = 0;
    cr_assert_eq(funnel_ledger_check(store, count_problem, &seen, &problems, NULL, NULL), 0);
    cr_assert_eq(problems, 2);
    cr_assert_eq(seen, 2);
    /* So is a line added by hand that unbalances its posting. */
    cr_assert_eq(
        sqlite3_exec(db, "INSERT INTO ledger_line VALUES (1, 'paid', 5)", NULL, NULL, NULL),
        SQLITE_OK);
    cr_assert_eq(funnel_ledger_check(store, NULL, NULL, &problems, NULL, NULL), 0);
    cr_assert_eq(problems, 4, "the posting, and the paid line without a balance row");
}

/* ---- migrations ----------------------------------------------------------------------- */

/* What step 8 changed, as the steps before it left it, for the older databases below: the
 * indexes of the postings by rep (cols: its columns) and by client (all of them), payments and
 * refunds without the range of their entries, payments without running totals, and those in
 * ledger_accrued (step 3), summed from the postings. */
#define POSTINGS_INDEXED_BY_REP(cols)                                                              \
    "DROP INDEX ledger_entry_time;"                                                                \
    "CREATE INDEX ledger_entry_rep ON ledger_entry(" cols ");"                                     \
    "DROP INDEX ledger_entry_client;"                                                              \
    "CREATE INDEX ledger_entry_client ON ledger_entry(client_id);"
#define POSTINGS_BY_REP_V6 POSTINGS_INDEXED_BY_REP("rep, currency, effective_ms")
#define FACTS_WITHOUT_RANGE(table)                                                                 \
    "ALTER TABLE " table " DROP COLUMN posted_seq; ALTER TABLE " table " DROP COLUMN posted_n;"
#define PAYMENTS_V7                                                                                \
    FACTS_WITHOUT_RANGE("ledger_payment")                                                          \
    "ALTER TABLE ledger_payment DROP COLUMN rep_used;"                                             \
    "ALTER TABLE ledger_payment DROP COLUMN am_used;"
#define ACCRUED_V3                                                                                 \
    "CREATE TABLE ledger_accrued ("                                                                \
    "  client_id TEXT NOT NULL, person TEXT NOT NULL, currency TEXT NOT NULL,"                     \
    "  accrued INTEGER NOT NULL, PRIMARY KEY (client_id, person, currency)) WITHOUT ROWID;"        \
    "INSERT INTO ledger_accrued SELECT client_id, rep, currency, SUM(amount) FROM ledger_entry"    \
    "  WHERE kind = 'ACCRUAL' GROUP BY client_id, rep, currency;"

/* The books as ledger migrations 1-2 stored them (entry ids in full, lines with their rep and
 * currency; the constraints do not matter here): alice accrued 1000 + 500 on c1 and 300 on c2,
 * a correction took 200 back from the 500, and she was paid 1000. The other tables stay as the
 * current schema has them. */
static const char books_v2[] =
    "DROP TABLE ledger_entry; DROP TABLE ledger_line;"
    "CREATE TABLE ledger_entry (seq INTEGER PRIMARY KEY, entry_id UNIQUE, kind, role, rep,"
    "  client_id, cause_event_id, subject_event_id, currency, amount, rate_bp, effective_ms,"
    "  posted_at_ms);"
    "CREATE TABLE ledger_line (entry_seq, account, rep, currency, amount,"
    "  PRIMARY KEY (entry_seq, account)) WITHOUT ROWID;"
    "INSERT INTO ledger_entry VALUES"
    " (1, 'ledger:p1#1', 'ACCRUAL', 'rep', 'alice', 'c1', 'p1', 'p1', 'EUR', 1000, 1000, 10, 11),"
    " (2, 'ledger:p2#1', 'ACCRUAL', 'rep', 'alice', 'c1', 'p2', 'p2', 'EUR', 500, 1000, 20, 21),"
    " (3, 'ledger:p3#1', 'ACCRUAL', 'rep', 'alice', 'c2', 'p3', 'p3', 'EUR', 300, 1000, 30, 31),"
    " (4, 'ledger:h1#12', 'ACCRUAL', 'rep', 'alice', 'c1', 'h1', 'p2', 'EUR', -200, 1000, 20, 41),"
    " (5, 'ledger:paid-1#1', 'PAYOUT', '', 'alice', '', 'paid-1', 'paid-1', 'EUR', 1000, 0, 50,"
    "  51);"
    "INSERT INTO ledger_line VALUES"
    " (1, 'expense', 'alice', 'EUR', 1000), (1, 'payable', 'alice', 'EUR', -1000),"
    " (2, 'expense', 'alice', 'EUR', 500), (2, 'payable', 'alice', 'EUR', -500),"
    " (3, 'expense', 'alice', 'EUR', 300), (3, 'payable', 'alice', 'EUR', -300),"
    " (4, 'expense', 'alice', 'EUR', -200), (4, 'payable', 'alice', 'EUR', 200),"
    " (5, 'payable', 'alice', 'EUR', 1000), (5, 'paid', 'alice', 'EUR', -1000);"
    "INSERT INTO ledger_balance VALUES ('expense', 'alice', 'EUR', 1600),"
    " ('payable', 'alice', 'EUR', -600), ('paid', 'alice', 'EUR', -1000);" PAYMENTS_V7
        FACTS_WITHOUT_RANGE(
            "ledger_refund") "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema.ledger', 2);";

/* A database the ledger of migration 2 wrote keeps its books through migrations 3 and 4: the
 * same entry ids in the statement, lines that balance, the same balances, and running totals
 * equal to the accruals. */
/* Turns the store into what an older ledger wrote (older_schema) and opens a ledger on it,
 * which must migrate it to the current step. */
static void migrate_from(const char *older_schema)
{
    char *msg = NULL, err[512];
    cr_assert_eq(sqlite3_exec(funnel_store_db(store), older_schema, NULL, NULL, &msg), SQLITE_OK,
                 "%s", msg);
    funnel_ledger_t *lg;
    cr_assert_eq(funnel_ledger_new(store, &plan, NULL, &lg, err, sizeof err), 0, "%s", err);
    funnel_ledger_destroy(&lg);
    cr_assert_eq(funnel_store_module_version(store, "ledger"), 8);
}

Test(ledger, migrations_keep_the_books_of_an_older_database)
{
    sqlite3 *db = funnel_store_db(store);
    migrate_from(books_v2);
    funnel_ledger_statement_t *st = NULL;
    cr_assert_eq(funnel_ledger_statement(store, "alice", 0, 100, &st), 0);
    cr_assert_eq(st->n_sections, 1);
    const funnel_ledger_section_t *sec = &st->sections[0];
    cr_assert_eq(sec->n_lines, 5);
    cr_assert_str_eq(sec->lines[0].entry_id, "ledger:p1#1");
    cr_assert_str_eq(sec->lines[2].entry_id, "ledger:h1#12");
    cr_assert_str_eq(sec->lines[4].entry_id, "ledger:paid-1#1");
    cr_assert_eq(sec->accruals, 1600);
    cr_assert_eq(sec->payouts, 1000);
    cr_assert(sec->reconciles);
    funnel_ledger_statement_free(&st);
    expect_books_sound(); /* balances and lines */
    cr_assert_eq(query_int("SELECT COUNT(*) FROM ledger_line", NULL, NULL), 10);
    cr_assert_neq(sqlite3_exec(db, "DELETE FROM ledger_line", NULL, NULL, NULL), SQLITE_OK,
                  "the lines stay append-only");
    cr_assert_neq(sqlite3_exec(db, "UPDATE ledger_entry SET amount = 0", NULL, NULL, NULL),
                  SQLITE_OK, "the postings stay append-only");
}

/* The payments of a database the ledger of migration 4 wrote (a rowid table beside an index by
 * client) are moved into the table keyed by client: each keeps its fields, and a refund that
 * arrives after the upgrade claws back from a payment recorded before it (c1's, 100.00 EUR on
 * 2026-01-02). */
static const char payments_v4[] =
    "DROP TABLE ledger_payment;"
    "CREATE TABLE ledger_payment ("
    "  id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, payment_id TEXT NOT NULL,"
    "  client_id TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE INDEX ledger_payment_client ON ledger_payment(client_id, at_ms, event_id);"
    "CREATE INDEX ledger_payment_id ON ledger_payment(payment_id, at_ms, event_id);"
    "INSERT INTO ledger_payment VALUES (1, 'p1', 'pay-1', 'c1', 'EUR', 10000, "
    "1767312000000);" POSTINGS_BY_REP_V6 ACCRUED_V3 FACTS_WITHOUT_RANGE(
        "ledger_refund") "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema.ledger', 4);";

Test(ledger, migration_keys_the_payments_by_client)
{
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    migrate_from(payments_v4);
    /* Without a rowid: the rows are the index by client, one B-tree fewer to write. */
    cr_assert_neq(
        sqlite3_exec(funnel_store_db(store), "SELECT rowid FROM ledger_payment", NULL, NULL, NULL),
        SQLITE_OK);
    cr_assert_eq(query_int("SELECT COUNT(*) FROM ledger_payment WHERE event_id = 'p1' AND"
                           " payment_id = 'pay-1' AND client_id = 'c1' AND currency = 'EUR'"
                           " AND amount = 10000 AND at_ms = ?1",
                           "1767312000000", NULL),
                 1);
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 5000, "EUR", day(2026, 1, 3)));
    cr_assert_eq(owed("alice", "EUR"), 1000 - 500);
    expect_books_sound();
}

/* A database the ledger of migration 5 wrote: payments with a UNIQUE index of their event id,
 * and a frozen rate for every key, posted or not (p1's accrual is posted at 10 %, p2 earned
 * nothing behind the cap of 10.00). */
static const char rates_v5[] =
    "CREATE TABLE ledger_payment_v5 ("
    "  client_id TEXT NOT NULL, at_ms INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE,"
    "  payment_id TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,"
    "  PRIMARY KEY (client_id, at_ms, event_id)) WITHOUT ROWID;"
    "INSERT INTO ledger_payment_v5 SELECT client_id, at_ms, event_id, payment_id, currency,"
    "  amount FROM ledger_payment;"
    "DROP TABLE ledger_payment;"
    "ALTER TABLE ledger_payment_v5 RENAME TO ledger_payment;"
    "CREATE INDEX ledger_payment_id ON ledger_payment(payment_id, at_ms, event_id);"
    "INSERT INTO ledger_rate VALUES ('p1', 'rep', 'alice', 1000);" POSTINGS_BY_REP_V6 ACCRUED_V3
        FACTS_WITHOUT_RANGE(
            "ledger_refund") "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema.ledger', 5);";

/* Migration 6 drops the rates the postings hold and the index of the payments' event ids, and
 * the books go on as before: p1's reversal and p2's accrual at their frozen 10 % after a
 * reload to 20 %. */
Test(ledger, migration_keeps_only_the_rates_no_posting_holds)
{
    plan.cap_minor = 1000;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    must(fx_payment("p2", "pay-2", "c1", 4000, "EUR", day(2026, 3, 1)));
    migrate_from(rates_v5);
    cr_assert_eq(
        query_int("SELECT COUNT(*) FROM ledger_rate WHERE payment_event_id = 'p2'", NULL, NULL), 1);
    cr_assert_eq(query_int("SELECT COUNT(*) FROM ledger_rate", NULL, NULL), 1);
    cr_assert_eq(query_int("SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'ledger_payment'"
                           " AND type = 'index'",
                           NULL, NULL),
                 1, "only the index by payment_id");
    cr_assert_eq(query_int("SELECT COUNT(*) FROM ledger_payment", NULL, NULL), 2);
    plan.default_rate_bp = 2000;
    must(fx_payment("p0", "pay-1", "c2", 10000, "EUR", day(2026, 1, 15)));
    cr_assert_eq(owed("alice", "EUR"), 400);
    expect_books_sound();
}

/* The books as the ledger of migration 7 kept them: every posting indexed by client and by
 * rep, currency and event time. */
static const char postings_by_rep_v7[] =
    POSTINGS_INDEXED_BY_REP("rep, currency, effective_ms, kind, amount")
        ACCRUED_V3 PAYMENTS_V7 FACTS_WITHOUT_RANGE(
            "ledger_refund") "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema.ledger', 7);";

/* Whether an index named name exists. */
static bool index_exists(const char *name)
{
    return query_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?1", name,
                     NULL) == 1;
}

/* Migration 8 indexes the postings in event time instead of by rep, and gives each payment and
 * refund the range of the entries its event made, through which a settle finds them: the books
 * read the same (a statement and a payout of the postings made before it), and a later event
 * corrects what was posted before instead of posting it again (a late earlier payment moves
 * the cap: p2's 1500 becomes 500, and a refund of p1 claws back its 1000). */
Test(ledger, migration_indexes_the_postings_in_event_time)
{
    plan.cap_minor = 2500;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    must(fx_payment("p2", "pay-2", "c1", 20000, "EUR", day(2026, 3, 1)));
    must(fx_refund("r9", "ref-9", "pay-9", "c1", 100, "EUR", day(2026, 3, 2)));
    migrate_from(postings_by_rep_v7);
    cr_assert(index_exists("ledger_entry_time"));
    cr_assert_not(index_exists("ledger_entry_rep"));
    cr_assert_eq(query_int("SELECT COUNT(*) FROM ledger_payment WHERE posted_n = 1 AND posted_seq ="
                           " (SELECT seq FROM ledger_entry WHERE cause_event_id = event_id)",
                           NULL, NULL),
                 2);
    funnel_ledger_statement_t *st = NULL;
    cr_assert_eq(
        funnel_ledger_statement(store, "alice", day(2026, 3, 1) - DAY_MS, day(2026, 4, 1), &st), 0);
    cr_assert_eq(st->n_sections, 1);
    cr_assert_eq(st->sections[0].opening, 1000);
    cr_assert_eq(st->sections[0].n_lines, 1);
    cr_assert_eq(st->sections[0].closing, 2500);
    cr_assert(st->sections[0].reconciles);
    funnel_ledger_statement_free(&st);
    must(fx_commission_paid("paid-1", "payout-1", "alice", day(2026, 2, 15), day(2026, 3, 2)));
    cr_assert_eq(kind_sum("alice", "PAYOUT"), 1000, "February only");
    must(fx_payment("p0", "pay-0", "c1", 10000, "EUR", day(2026, 1, 15)));
    cr_assert_eq(owed("alice", "EUR"), 2500 - 1000);
    cr_assert_eq(
        query_int("SELECT SUM(amount) FROM ledger_entry WHERE subject_event_id = 'p2'", NULL, NULL),
        500);
    must(fx_refund("r1", "ref-1", "pay-1", "c1", 10000, "EUR", day(2026, 3, 3)));
    cr_assert_eq(owed("alice", "EUR"), 2500 - 1000 - 1000);
    expect_books_sound();
}

/* The entries of a B-tree (dbstat: the cells of its leaf pages). */
static int64_t btree_entries(const char *name)
{
    return query_int("SELECT SUM(ncell) FROM dbstat WHERE name = ?1 AND pagetype = 'leaf'", name,
                     NULL);
}

/* c1, handed off to alice (account manager dave at 2 %) with a cap of 25.00, pays 100.00 in
 * February and 200.00 in March: alice earns 10.00 + 15.00 (capped), dave 2.00 + 4.00. */
static void capped_payments_in_order(void)
{
    plan.cap_minor = 2500;
    plan.account_manager_rate_bp = 200;
    must(fx_handoff("h1", "c1", "alice", "dave", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)));
    must(fx_payment("p2", "pay-2", "c1", 20000, "EUR", day(2026, 3, 1)));
}

/* What a payment or a refund posts on itself is found through its row (the range of its
 * entries), so a backfill's postings are not indexed by client: that index was a page per
 * payment at commit. Only a later event's corrections are (the late p0 moves the cap away from
 * p1 and p2). */
Test(ledger, postings_on_their_own_cause_are_not_indexed_by_client)
{
    capped_payments_in_order();
    must(fx_refund("r2", "ref-2", "pay-2", "c1", 20000, "EUR", day(2026, 3, 2)));
    cr_assert_eq(postings(), 6);
    cr_assert_eq(btree_entries("ledger_entry_client"), 0);
    must(fx_payment("p0", "pay-0", "c1", 10000, "EUR", day(2026, 1, 15)));
    cr_assert_eq(owed("alice", "EUR"), 1000 + 1000 + 500 - 500, "p2 refunded in whole");
    cr_assert_gt(btree_entries("ledger_entry_client"), 0);
    cr_assert_eq(btree_entries("ledger_entry_client"),
                 query_int("SELECT COUNT(*) FROM ledger_entry WHERE cause_event_id = 'p0'"
                           " AND subject_event_id <> 'p0'",
                           NULL, NULL));
    expect_books_sound();
}

/* What the rep and the account manager have accrued on a client in a currency (the cap used,
 * and what the int64 check adds to) is kept in the client's latest payment row of that
 * currency, which the payment writes anyway: a table of running totals was one more page per
 * payment at commit. A whole settle (a late earlier payment moves the cap) stores them again. */
Test(ledger, a_payment_keeps_the_running_totals_in_its_row)
{
    capped_payments_in_order();
    cr_assert_eq(
        query_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'ledger_accrued'", NULL, NULL),
        0);
    cr_assert_eq(query_int("SELECT rep_used FROM ledger_payment WHERE event_id = 'p2'", NULL, NULL),
                 1000 + 1500);
    cr_assert_eq(query_int("SELECT am_used FROM ledger_payment WHERE event_id = 'p2'", NULL, NULL),
                 200 + 400);
    must(fx_payment("p0", "pay-0", "c1", 10000, "EUR", day(2026, 1, 15)));
    cr_assert_eq(query_int("SELECT am_used FROM ledger_payment WHERE event_id = 'p2'", NULL, NULL),
                 200 + 200 + 400);
    expect_books_sound();
    /* The check of the books sees a running total that is off. */
    cr_assert_eq(sqlite3_exec(funnel_store_db(store),
                              "UPDATE ledger_payment SET rep_used = 1 WHERE event_id = 'p2'", NULL,
                              NULL, NULL),
                 SQLITE_OK);
    cr_assert_eq(query_int(RUNNING_TOTALS_WRONG, NULL, NULL), 1);
}

/* An index of the postings with a right edge per rep and currency wrote a page per posting at
 * commit (a batch's postings land on all those edges): no index of ledger_entry starts with
 * the rep. */
Test(ledger, no_index_of_the_postings_has_an_edge_per_rep)
{
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(funnel_store_db(store),
                                    "SELECT il.name, ii.name FROM pragma_index_list('ledger_entry')"
                                    " il, pragma_index_info(il.name) ii WHERE ii.seqno = 0",
                                    -1, &s, NULL),
                 SQLITE_OK);
    int n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        n++;
        cr_assert_str_neq((const char *)sqlite3_column_text(s, 1), "rep", "index %s",
                          (const char *)sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    cr_assert_gt(n, 0);
}

/* ---- cost: statements per event do not grow with the client's history ----------------- */

static int count_stmt(unsigned type, void *arg, void *p, void *x)
{
    (void)type;
    (void)p;
    (void)x;
    ++*(int *)arg;
    return 0;
}

/* Feeds one payment and one refund of it (the i-th pair, a minute apart) and returns how many
 * SQL statements (top-level and trigger programs) the pair ran. */
static int64_t pair_statements(int i)
{
    char ev[32], pay[32], ref[32], rid[32];
    snprintf(ev, sizeof ev, "p%d", i);
    snprintf(pay, sizeof pay, "pay-%d", i);
    snprintf(ref, sizeof ref, "r%d", i);
    snprintf(rid, sizeof rid, "ref-%d", i);
    int64_t at = day(2026, 1, 2) + i * 120000LL;
    sqlite3 *db = funnel_store_db(store);
    int n = 0;
    cr_assert_eq(sqlite3_trace_v2(db, SQLITE_TRACE_STMT, count_stmt, &n), SQLITE_OK);
    int rc_pay = apply(fx_payment(ev, pay, "c1", 10000, "EUR", at));
    int rc_ref = apply(fx_refund(ref, rid, pay, "c1", 2500, "EUR", at + 60000));
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(rc_pay, 0);
    cr_assert_eq(rc_ref, 0);
    return n;
}

/* What one(i) costs for i = 10 (*early) and i = 199 (*late), run for i = 0..199 in order. */
static void cost_early_late(int64_t (*one)(int i), int64_t *early, int64_t *late)
{
    for (int i = 0; i < 200; i++) {
        int64_t n = one(i);
        if (i == 10)
            *early = n;
        *late = n;
    }
}

/* Runs one(i) for i = 0..199 in order and expects the 200th run to cost no more than the 11th
 * (what says what one counts). */
static void expect_cost_flat(int64_t (*one)(int i), const char *what)
{
    int64_t early = 0, late = 0;
    cost_early_late(one, &early, &late);
    cr_assert_gt(early, 0);
    cr_assert_leq(late, early, "%s: %lld after 10 runs, %lld after 200", what, (long long)early,
                  (long long)late);
}

/* Each event settles its client from the client's facts. That must not cost SQL statements per
 * payment or refund of the history (one rate lookup per payment made a long-lived client slow
 * the single writer): a pair of events runs as many statements with 200 pairs behind it as with
 * 10. Counting statements instead of timing keeps the test deterministic. */
Test(ledger, statements_per_event_do_not_grow_with_history)
{
    plan.account_manager_rate_bp = 200;
    must(fx_handoff("h1", "c1", "alice", "dave", day(2026, 1, 1)));
    expect_cost_flat(pair_statements, "statements of a payment and a refund of one client");
    /* The cheaper settle computes the same books: 200 x (1000 - 250) for alice, x (200 - 50) for
     * the account manager. */
    cr_assert_eq(owed("alice", "EUR"), 200 * 750);
    cr_assert_eq(owed("dave", "EUR"), 200 * 150);
    expect_books_sound();
}

/* What a payment in event-time order costs in statements: the ledger's are the payment's row,
 * one read of what its settle needs, an entry per beneficiary, and the event's lines, balances
 * and running totals, several rows per statement (7); the other 8 are the router's and the
 * outbox's. A statement per row and per lookup (rates, running totals, balances) made it 23. */
Test(ledger, a_payment_in_order_runs_few_statements)
{
    plan.account_manager_rate_bp = 200;
    must(fx_handoff("h1", "c1", "alice", "dave", day(2026, 1, 1)));
    must(fx_payment("p0", "pay-0", "c1", 10000, "EUR", day(2026, 1, 2)));
    sqlite3 *db = funnel_store_db(store);
    int n = 0;
    cr_assert_eq(sqlite3_trace_v2(db, SQLITE_TRACE_STMT, count_stmt, &n), SQLITE_OK);
    int rc = apply(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 2)));
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(rc, 0);
    cr_assert_leq(n, 15, "a payment ran %d statements", n);
    cr_assert_eq(owed("alice", "EUR"), 2000);
    cr_assert_eq(owed("dave", "EUR"), 400);
    expect_books_sound();
}

/* Adds the virtual machine steps of each statement that finished to *arg: SQLite's own measure
 * of the work a statement did, rows scanned included, the same on every run. */
static int count_vm_steps(unsigned type, void *arg, void *p, void *x)
{
    (void)type;
    (void)x;
    *(int64_t *)arg += sqlite3_stmt_status(p, SQLITE_STMTSTATUS_VM_STEP, 1);
    return 0;
}

/* The VM steps applying env ran (it must be accepted). */
static int64_t vm_steps_of(funnel_envelope_t *env)
{
    sqlite3 *db = funnel_store_db(store);
    int64_t steps = 0;
    cr_assert_eq(sqlite3_trace_v2(db, SQLITE_TRACE_PROFILE, count_vm_steps, &steps), SQLITE_OK);
    int rc = apply(env);
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(rc, 0);
    return steps;
}

/* The VM steps the i-th monthly payment of client c1 ran. */
static int64_t payment_vm_steps(int i)
{
    char ev[32], pay[32];
    snprintf(ev, sizeof ev, "p%d", i);
    snprintf(pay, sizeof pay, "pay-%d", i);
    return vm_steps_of(fx_payment(ev, pay, "c1", 10000 + i, "EUR", day(2026, 1, 2) + i * DAY_MS));
}

/* A payment arriving in event-time order, the whole of a backfill, settles itself and not the
 * client's history: the rows a whole-client settle read (payments, rates, postings) made each
 * payment cost more than the one before. What remains is the running sum of what each person
 * accrued on the client (the int64 overflow check), one index entry per earlier accrual, and
 * accruals stop at the end of the commission term. */
Test(ledger, a_payment_in_order_does_not_read_the_clients_history)
{
    plan.account_manager_rate_bp = 200;
    plan.term_months = 600;
    must(fx_handoff("h1", "c1", "alice", "dave", day(2026, 1, 1)));
    int64_t early = 0, late = 0;
    cost_early_late(payment_vm_steps, &early, &late);
    cr_assert_gt(early, 0);
    cr_assert_lt(late - early, 190 * 40,
                 "a payment ran %lld VM steps after 10 payments, %lld after 200", (long long)early,
                 (long long)late);
    int64_t want_alice = 0, want_dave = 0;
    for (int i = 0; i < 200; i++) {
        want_alice += (10000 + i) / 10;
        want_dave += (10000 + i) * 2 / 100;
    }
    cr_assert_eq(owed("alice", "EUR"), want_alice);
    cr_assert_eq(owed("dave", "EUR"), want_dave);
    expect_books_sound();
}

/* The VM steps of the first payment of client c<i>, handed off to alice (account manager dave)
 * just before: the i-th of alice's clients. The handoff's event id is the client's, the
 * payment's its payment_id. */
static int64_t new_client_payment_vm_steps(int i)
{
    char c[32], pay[32];
    snprintf(c, sizeof c, "c%d", i);
    snprintf(pay, sizeof pay, "pay-%d", i);
    int64_t at = day(2026, 1, 2) + i * 120000LL;
    must(fx_handoff(c, c, "alice", "dave", at - 60000));
    return vm_steps_of(fx_payment(pay, pay, c, 10000, "EUR", at));
}

/* The VM steps of a payout to alice through the end of the month before payment i of client c1
 * (one a month), after that payment. */
static int64_t payout_vm_steps(int i)
{
    char ev[32], pay[32], paid[32];
    snprintf(ev, sizeof ev, "p%d", i);
    snprintf(pay, sizeof pay, "pay-%d", i);
    snprintf(paid, sizeof paid, "paid-%d", i);
    int64_t at = day(2026, 1, 2) + i * 30 * DAY_MS;
    must(fx_payment(ev, pay, "c1", 10000, "EUR", at));
    return vm_steps_of(fx_commission_paid(paid, paid, "alice", at - DAY_MS, at + 1000));
}

/* A payout pays what the payable balance holds less what the postings after its through_ms
 * added: it reads those postings, not the rep's history (through an index by rep, every payout
 * summed all of the rep's postings). */
Test(ledger, a_payout_does_not_read_the_reps_history)
{
    plan.term_months = 600;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    expect_cost_flat(payout_vm_steps, "VM steps of a monthly payout");
    cr_assert_eq(kind_sum("alice", "PAYOUT"), 199 * 1000, "each payout pays the month before");
    cr_assert_eq(owed("alice", "EUR"), 1000);
    expect_books_sound();
}

/* A payment costs the same whatever its rep earned on other clients: reading what the rep had
 * accrued on the client through an index of the rep's postings made every payment scan all of
 * the rep's history (the ledger's cost per event grew 4x over a year's backfill). The running
 * total per (client, person, currency) is one row. */
Test(ledger, a_payment_does_not_read_the_reps_other_clients)
{
    plan.account_manager_rate_bp = 200;
    expect_cost_flat(new_client_payment_vm_steps, "VM steps of a payment of the rep's next client");
    cr_assert_eq(owed("alice", "EUR"), 200 * 1000);
    cr_assert_eq(owed("dave", "EUR"), 200 * 200);
    expect_books_sound();
}

/* ---- property: order independence over random streams ----------------------------------- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rnd(rng_t *r)
{
    /* xorshift64*: fixed seeds make every failure reproducible. */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

static int64_t rnd_in(rng_t *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd(r) % (uint64_t)(hi - lo + 1));
}

static funnel_envelope_t *clone(const funnel_envelope_t *env)
{
    size_t len;
    uint8_t *raw = fx_pack(env, &len);
    funnel_envelope_t *c = funnel__v1__envelope__unpack(NULL, len, raw);
    free(raw);
    cr_assert_not_null(c);
    return c;
}

static const char *const reps[] = {"alice", "bob", "carol"};
static const char *const currencies[] = {"EUR", "USD"};

/* Handoffs (sometimes two for a client), payments (some re-sent under a new event id) and
 * refunds (some larger than their payment, some for payments never seen) over 3 clients. */
static void stream_make(rng_t *r, stream_t *st)
{
    char id[64], pid[64], client[16];
    int64_t base = day(2026, 1, 1);
    int n_pay = 0;
    st->n = 0;
    for (int c = 0; c < 3; c++) {
        snprintf(client, sizeof client, "c%d", c);
        int handoffs = (int)rnd_in(r, 0, 2);
        for (int h = 0; h < handoffs || (c == 0 && h == 0); h++) {
            snprintf(id, sizeof id, "h%d-%d", c, h);
            st->ev[st->n++] =
                fx_handoff(id, client, reps[rnd_in(r, 0, 2)], rnd_in(r, 0, 1) ? "mark" : "",
                           base + rnd_in(r, 0, 60) * DAY_MS);
        }
    }
    while (st->n < MAX_EVENTS - 2) {
        snprintf(client, sizeof client, "c%d", (int)rnd_in(r, 0, 2));
        int64_t at = base + rnd_in(r, 0, 400) * DAY_MS + rnd_in(r, 0, 1000);
        if (n_pay == 0 || rnd_in(r, 0, 2) > 0) {
            const char *cur = currencies[rnd_in(r, 0, 1)];
            snprintf(pid, sizeof pid, "pay-%d", n_pay);
            snprintf(id, sizeof id, "p%d", n_pay++);
            int64_t amount = rnd_in(r, 1, 3) == 1 ? rnd_in(r, 1, 99) : rnd_in(r, 100, 500000);
            st->ev[st->n++] = fx_payment(id, pid, client, amount, cur, at);
            if (rnd_in(r, 0, 9) == 0) { /* re-sent with a new event id and a later time */
                snprintf(id, sizeof id, "p%d-resent", n_pay - 1);
                st->ev[st->n++] = fx_payment(id, pid, client, amount, cur, at + 1000);
            }
        } else {
            int target = (int)rnd_in(r, 0, n_pay); /* n_pay: a payment never seen */
            const funnel_envelope_t *p = NULL;
            for (size_t i = 0; i < st->n && !p; i++) {
                snprintf(pid, sizeof pid, "pay-%d", target);
                if (st->ev[i]->body_case == FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED &&
                    strcmp(st->ev[i]->payment_received->payment_id, pid) == 0)
                    p = st->ev[i];
            }
            snprintf(id, sizeof id, "r%zu", st->n);
            snprintf(pid, sizeof pid, "pay-%d", target);
            const char *cl = p ? p->payment_received->client_id : client;
            const char *cur = p ? p->payment_received->amount->currency : "EUR";
            int64_t amount = p ? rnd_in(r, 1, p->payment_received->amount->minor * 3 / 2 + 1)
                               : rnd_in(r, 1, 1000);
            st->ev[st->n++] = fx_refund(id, id, pid, cl, amount, cur, at);
        }
    }
}

static void stream_free(stream_t *st)
{
    for (size_t i = 0; i < st->n; i++)
        funnel_envelope_free(&st->ev[i]);
    st->n = 0;
}

/* The ledger's state that must not depend on arrival order: the net sum per (subject, kind,
 * role, rep, currency) and every balance. */
static char *state_dump(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    sqlite3_stmt *s;
    const char *sql =
        "SELECT subject_event_id || ' ' || kind || ' ' || role || ' ' || rep || ' ' || currency"
        " || ' ' || SUM(amount) FROM ledger_entry GROUP BY subject_event_id, kind, role, rep,"
        " currency HAVING SUM(amount) <> 0"
        " UNION ALL SELECT account || ' ' || rep || ' ' || currency || ' ' || balance"
        " FROM ledger_balance WHERE balance <> 0 ORDER BY 1";
    cr_assert_eq(sqlite3_prepare_v2(funnel_store_db(store), sql, -1, &s, NULL), SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
        fprintf(out, "%s\n", sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    fclose(out);
    return text;
}

/* Applies events[0..n) to a fresh database in the given order (forward or reversed) and
 * returns the order-independent state (see state_dump; the caller frees it). The events are
 * consumed. */
static char *scene_state(funnel_envelope_t **events, size_t n, bool reversed)
{
    scene_feed(events, n, reversed);
    return state_dump();
}

/* A payment_id re-sent under another client with an earlier time (a correction): one payment,
 * so one commission, to the rep of the client the earliest row names. The refund sent under
 * the client the payment left is held (same client and currency, or nothing is clawed back). */
static size_t scene_payment_moves(funnel_envelope_t **ev)
{
    ev[0] = fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1));
    ev[1] = fx_handoff("h2", "c2", "bob", "", day(2026, 1, 1));
    ev[2] = fx_payment("p-late", "pay-X", "c1", 10000, "EUR", day(2026, 2, 2));
    ev[3] = fx_refund("r1", "ref-1", "pay-X", "c1", 5000, "EUR", day(2026, 3, 1));
    ev[4] = fx_payment("p-early", "pay-X", "c2", 10000, "EUR", day(2026, 2, 1));
    return 5;
}

Test(ledger, payment_id_is_one_payment_across_clients_in_any_order)
{
    funnel_envelope_t *ev[8];
    char *fwd = scene_state(ev, scene_payment_moves(ev), false);
    cr_assert_eq(owed("alice", "EUR"), 0, "c1's accrual and clawback were reversed");
    cr_assert_eq(owed("bob", "EUR"), 1000);
    char *rev = scene_state(ev, scene_payment_moves(ev), true);
    cr_assert_str_eq(fwd, rev, "order dependent:\nforward:\n%s\nreversed:\n%s", fwd, rev);
    cr_assert_eq(kind_sum("bob", "ACCRUAL"), 1000);
    cr_assert_eq(kind_sum("bob", "CLAWBACK"), 0);
    free(fwd);
    free(rev);
}

/* A refund_id re-sent with an earlier time naming another client's payment: the refund moves,
 * and the clawback on the payment it left is reversed. */
static size_t scene_refund_moves(funnel_envelope_t **ev)
{
    ev[0] = fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1));
    ev[1] = fx_handoff("h2", "c2", "bob", "", day(2026, 1, 1));
    ev[2] = fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1));
    ev[3] = fx_payment("p2", "pay-2", "c2", 10000, "EUR", day(2026, 2, 1));
    ev[4] = fx_refund("r-late", "ref-1", "pay-1", "c1", 5000, "EUR", day(2026, 3, 2));
    ev[5] = fx_refund("r-early", "ref-1", "pay-2", "c2", 5000, "EUR", day(2026, 3, 1));
    return 6;
}

Test(ledger, refund_id_is_one_refund_across_clients_in_any_order)
{
    funnel_envelope_t *ev[8];
    char *fwd = scene_state(ev, scene_refund_moves(ev), false);
    char *rev = scene_state(ev, scene_refund_moves(ev), true);
    cr_assert_str_eq(fwd, rev, "order dependent:\nforward:\n%s\nreversed:\n%s", fwd, rev);
    cr_assert_eq(owed("alice", "EUR"), 1000, "pay-1 is not refunded");
    cr_assert_eq(owed("bob", "EUR"), 500);
    free(fwd);
    free(rev);
}

static int time_cmp(const void *a, const void *b)
{
    const funnel_envelope_t *x = *(funnel_envelope_t *const *)a;
    const funnel_envelope_t *y = *(funnel_envelope_t *const *)b;
    if (x->occurred_at_ms != y->occurred_at_ms)
        return x->occurred_at_ms < y->occurred_at_ms ? -1 : 1;
    return strcmp(x->event_id, y->event_id);
}

/* Feeds events (cloned) in batches of random size, each in one transaction like funneld. */
static void feed(rng_t *r, funnel_envelope_t *const *ev, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t batch = (size_t)rnd_in(r, 1, 8);
        cr_assert_eq(funnel_store_begin(store), 0);
        for (; batch && i < n; batch--, i++) {
            int rc = apply_in_txn(clone(ev[i]), false);
            cr_assert(rc == 0 || rc == FUNNEL_EDUP, "event %s: %s", ev[i]->event_id,
                      funnel_strerror(rc));
        }
        cr_assert_eq(funnel_store_commit(store), 0, "%s", funnel_store_errmsg(store));
        funnel_store_outbox_pending_clear(store);
    }
}

/* No beneficiary earns more on a payment than its rate times what was not refunded. */
static void expect_bounded(const stream_t *st)
{
    for (size_t i = 0; i < st->n; i++) {
        const funnel_envelope_t *p = st->ev[i];
        if (p->body_case != FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED ||
            strstr(p->event_id, "-resent")) /* a repeat of a payment_id earns nothing */
            continue;
        const Funnel__V1__PaymentReceived *pr = p->payment_received;
        int64_t refunded = 0;
        for (size_t k = 0; k < st->n; k++) {
            const funnel_envelope_t *r = st->ev[k];
            if (r->body_case == FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED &&
                !strcmp(r->payment_refunded->payment_id, pr->payment_id) &&
                !strcmp(r->payment_refunded->client_id, pr->client_id) &&
                !strcmp(r->payment_refunded->amount->currency, pr->amount->currency))
                refunded += r->payment_refunded->amount->minor;
        }
        int64_t net_paid = refunded >= pr->amount->minor ? 0 : pr->amount->minor - refunded;
        int64_t net = query_int("SELECT SUM(CASE kind WHEN 'ACCRUAL' THEN amount ELSE -amount END)"
                                " FROM ledger_entry WHERE subject_event_id = ?1 OR"
                                " subject_event_id IN (SELECT event_id FROM ledger_refund"
                                " WHERE payment_id = ?2 AND client_id = (SELECT client_id"
                                " FROM ledger_payment WHERE event_id = ?1))",
                                p->event_id, pr->payment_id);
        cr_assert_geq(net, 0, "%s: negative net commission", p->event_id);
        /* Every rate in the plan is at most 1500 + 300 bp (rep + account manager). */
        cr_assert_leq((__int128)net * FUNNEL_BP_MAX, (__int128)1800 * net_paid,
                      "%s: earned %lld on a net payment of %lld", p->event_id, (long long)net,
                      (long long)net_paid);
    }
}

Test(ledger, property_order_independence)
{
    plan.default_rate_bp = 1000;
    plan.term_months = 9;
    plan.cap_minor = 60000;
    plan.account_manager_rate_bp = 300;
    plan_rate("bob", 1500, funnel_date_utc_ms(2026, 4, 1));
    plan_rate("carol", 200, funnel_date_utc_ms(2026, 2, 1));
    for (uint64_t seed = 1; seed <= 12; seed++) {
        rng_t r = {seed * 0x9E3779B97F4A7C15ULL};
        stream_t *st = &stream;
        stream_make(&r, st);
        /* Reference: event-time order, each once. */
        funnel_envelope_t *order[MAX_EVENTS * 2];
        memcpy(order, st->ev, st->n * sizeof *order);
        qsort(order, st->n, sizeof *order, time_cmp);
        ledger_close();
        ledger_open();
        feed(&r, order, st->n);
        char *want = state_dump();
        /* Two empty ledgers are equal too: the reference must have posted commissions. */
        cr_assert_gt(postings(), 0, "seed %llu: the reference posted nothing",
                     (unsigned long long)seed);
        expect_books_sound();
        expect_bounded(st);
        cr_assert_eq(query_int("SELECT COUNT(*) FROM (SELECT SUM(amount) s FROM ledger_entry"
                               " WHERE kind = 'ACCRUAL' GROUP BY client_id, role, currency"
                               " HAVING s > 60000)",
                               NULL, NULL),
                     0, "seed %llu: a cap was exceeded", (unsigned long long)seed);
        for (int shuffle = 0; shuffle < 4; shuffle++) {
            /* Any order, every event possibly twice. */
            size_t n = st->n;
            memcpy(order, st->ev, n * sizeof *order);
            for (size_t i = 0; i < st->n; i++)
                if (rnd_in(&r, 0, 3) == 0)
                    order[n++] = st->ev[i];
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t)rnd_in(&r, 0, (int64_t)i);
                funnel_envelope_t *t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
            ledger_close();
            ledger_open();
            feed(&r, order, n);
            char *got = state_dump();
            cr_assert_str_eq(got, want, "seed %llu shuffle %d: the ledger depends on order",
                             (unsigned long long)seed, shuffle);
            free(got);
            expect_books_sound();
            /* Idempotency: the whole stream once more changes nothing. */
            int64_t before = postings();
            feed(&r, order, n);
            cr_assert_eq(postings(), before);
        }
        free(want);
        stream_free(st);
    }
}

/* The cap is per client, person and currency across roles: a person who is both the rep and
 * the account manager of a client earns at most the cap in all, in either arrival order. */
Test(ledger, cap_is_per_person_across_roles)
{
    plan.cap_minor = 1500;
    plan.account_manager_rate_bp = 500;
    for (int reversed = 0; reversed < 2; reversed++) {
        funnel_envelope_t *ev[] = {
            fx_handoff("h1", "c1", "alice", "alice", day(2026, 1, 1)),
            fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 1)),
            fx_payment("p2", "pay-2", "c1", 10000, "EUR", day(2026, 3, 1)),
        };
        scene_feed(ev, 3, reversed);
        cr_assert_eq(owed("alice", "EUR"), 1500, "rep 1000 + 1000, manager 500 + 500, one cap");
        /* p1 earns 1000 as rep and 500 as manager; p2 finds the cap used up. */
        cr_assert_eq(query_int("SELECT SUM(amount) FROM ledger_entry WHERE subject_event_id = ?1",
                               "p2", NULL),
                     0);
    }
    /* Two people keep a cap each. */
    must(fx_handoff("h2", "c2", "bob", "mark", day(2026, 1, 1)));
    must(fx_payment("p3", "pay-3", "c2", 100000, "EUR", day(2026, 2, 1)));
    cr_assert_eq(owed("bob", "EUR"), 1500);
    cr_assert_eq(owed("mark", "EUR"), 1500);
}

static int engine_einval(void *self, funnel_router_t *r, const funnel_envelope_t *env, int64_t now)
{
    (void)self, (void)r, (void)env, (void)now;
    return FUNNEL_EINVAL;
}

/* Applies env, which the ledger must refuse as an overflow with reason text (after the code's
 * name), and checks that it posted nothing. */
static void expect_overflow_refused(funnel_envelope_t *env, const char *text)
{
    int64_t before = postings();
    cr_assert_eq(apply(env), FUNNEL_EREFUSED);
    const funnel_refusal_t *why = funnel_router_refusal(router);
    cr_assert_eq(why->code, FUNNEL_REFUSE_OVERFLOW);
    cr_assert(strncmp(why->text, "overflow: ", 10) == 0, "%s", why->text);
    cr_assert_str_eq(why->text + 10, text);
    cr_assert_eq(postings(), before);
}

/* An event the ledger cannot hold is refused with its reason (FUNNEL_EREFUSED, overflow) and
 * leaves nothing behind; an engine that fails with a bare FUNNEL_EINVAL is refused too, with a
 * reason naming it, so no engine can leave an event unanswered. */
Test(ledger, engines_refuse_what_they_cannot_apply)
{
    plan.default_rate_bp = FUNNEL_BP_MAX; /* 100 %: one INT64_MAX payment fills the int64 */
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", INT64_MAX, "EUR", day(2026, 2, 1)));
    expect_overflow_refused(fx_payment("p2", "pay-2", "c1", 1, "EUR", day(2026, 2, 2)),
                            "ledger: the accruals of alice in EUR on client c1 would leave the "
                            "int64 range");
    cr_assert_eq(query_int("SELECT COUNT(*) FROM ledger_payment WHERE event_id = 'p2'", NULL, NULL),
                 0);
    expect_books_sound();

    funnel_engine_t failing = {.name = "failing", .on_event = engine_einval};
    cr_assert_eq(funnel_router_add_engine(router, &failing), 0);
    cr_assert_eq(apply(fx_handoff("h2", "c2", "bob", "", day(2026, 1, 1))), FUNNEL_EREFUSED);
    const funnel_refusal_t *why = funnel_router_refusal(router);
    cr_assert_eq(why->code, FUNNEL_REFUSE_ENGINE);
    cr_assert_str_eq(why->text, "refused_by_engine: the failing engine cannot apply this event: "
                                "invalid argument or input");
}

/* A balance that would leave int64 refuses the event with the account that would wrap, and
 * leaves the books as they were: at 100 %, alice's expense balance holds INT64_MAX after c1's
 * payment, and c2's payment would add to it (each client's own accruals fit). */
Test(ledger, a_balance_past_int64_refuses_the_event)
{
    plan.default_rate_bp = FUNNEL_BP_MAX;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_handoff("h2", "c2", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", INT64_MAX, "EUR", day(2026, 2, 1)));
    expect_overflow_refused(fx_payment("p2", "pay-2", "c2", 7, "EUR", day(2026, 2, 2)),
                            "ledger: the expense balance of alice in EUR would leave the int64 "
                            "range");
    cr_assert_eq(owed("alice", "EUR"), INT64_MAX);
    expect_books_sound();
    /* The other way: a clawback larger than what alice's payable holds goes below zero only as
     * far as int64 allows; the refund of c1's payment brings it back to 0. */
    must(fx_refund("r1", "ref-1", "pay-1", "c1", INT64_MAX, "EUR", day(2026, 3, 1)));
    cr_assert_eq(owed("alice", "EUR"), 0);
    expect_books_sound();
}

/* At 100 %, alice accrues INT64_MAX on c1 in February and on c2 in March, and c1's payment is
 * refunded in April: in event-time order her postings run +MAX, +MAX, -MAX. */
static void postings_past_int64_in_event_order(void)
{
    plan.default_rate_bp = FUNNEL_BP_MAX;
    must(fx_handoff("h1", "c1", "alice", "", day(2026, 1, 1)));
    must(fx_handoff("h2", "c2", "alice", "", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", INT64_MAX, "EUR", day(2026, 2, 1)));
    must(fx_refund("r1", "ref-1", "pay-1", "c1", INT64_MAX, "EUR", day(2026, 4, 1)));
    must(fx_payment("p2", "pay-2", "c2", INT64_MAX, "EUR", day(2026, 3, 1)));
}

/* What a payout pays is summed exactly: in event-time order the accruals of two INT64_MAX
 * payments come before the clawback that nets them back to INT64_MAX, which a running int64 sum
 * (SQLite's) cannot hold. The payout pays INT64_MAX instead of failing unanswered. */
Test(ledger, payout_sums_large_postings_exactly)
{
    postings_past_int64_in_event_order();
    /* Through March, before the clawback, 2 * INT64_MAX would be due: refused, not wrapped. */
    cr_assert_eq(
        apply(fx_commission_paid("paid-0", "payout-0", "alice", day(2026, 3, 15), day(2026, 5, 1))),
        FUNNEL_EREFUSED);
    cr_assert(strstr(funnel_router_refusal(router)->text, "overflow: ledger: what alice is owed"));
    must(fx_commission_paid("paid-1", "payout-1", "alice", day(2026, 5, 1), day(2026, 5, 2)));
    cr_assert_eq(kind_sum("alice", "PAYOUT"), INT64_MAX);
    cr_assert_eq(owed("alice", "EUR"), 0);
    expect_books_sound();
}

/* A statement's totals are summed exactly: before May the rep's postings run +MAX, +MAX, -MAX
 * in event time, which a running int64 sum cannot hold although the opening balance (MAX)
 * fits. A period whose own accruals (2 * MAX) do not fit is an error, not a wrapped figure. */
Test(ledger, statement_sums_large_postings_exactly)
{
    postings_past_int64_in_event_order();
    funnel_ledger_statement_t *st = NULL;
    int rc = funnel_ledger_statement(store, "alice", funnel_date_utc_ms(2026, 5, 1),
                                     funnel_date_utc_ms(2026, 6, 1), &st);
    cr_assert_eq(rc, 0, "%s: %s", funnel_strerror(rc), funnel_store_errmsg(store));
    cr_assert_eq(st->n_sections, 1);
    cr_assert_eq(st->sections[0].opening, INT64_MAX);
    cr_assert_eq(st->sections[0].closing, INT64_MAX);
    cr_assert(st->sections[0].reconciles);
    funnel_ledger_statement_free(&st);
    /* February to April: accruals of 2 * MAX in the period itself. */
    cr_assert_eq(funnel_ledger_statement(store, "alice", funnel_date_utc_ms(2026, 2, 1),
                                         funnel_date_utc_ms(2026, 4, 1), &st),
                 FUNNEL_EINVAL);
    cr_assert_null(st);
}

/* Keeps the text of each statement that contains match (SQLITE_TRACE_STMT). */
struct sql_reads {
    const char *match;
    char sql[16][2048];
    int n;
};

static int keep_sql_read(unsigned type, void *arg, void *p, void *x)
{
    (void)type;
    (void)x;
    struct sql_reads *r = arg;
    const char *sql = sqlite3_sql(p);
    if (sql && strstr(sql, r->match) && r->n < 16)
        snprintf(r->sql[r->n++], sizeof r->sql[0], "%s", sql);
    return 0;
}

/* Whether a step of sql's query plan says what. */
static bool plan_says(sqlite3 *db, const char *sql, const char *what)
{
    char plan_sql[2100];
    snprintf(plan_sql, sizeof plan_sql, "EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(db, plan_sql, -1, &s, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(db));
    bool says = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *detail = (const char *)sqlite3_column_text(s, 3);
        says = says || (detail && strstr(detail, what));
    }
    sqlite3_finalize(s);
    return says;
}

/* A statement's opening balance sums every posting of the rep before the period, so at a
 * million leads (18,000 postings a rep) a seek per posting into the table was most of its
 * time: that sum must be read from an index alone (ledger_entry_time, in event time since step
 * 8; step 7 added kind and amount to the index by rep). The period's own postings are read whole,
 * as they are printed. */
Test(ledger, a_statement_reads_the_reps_postings_from_the_index_alone)
{
    must(fx_handoff("h1", "c1", "alice", "dave", day(2026, 1, 1)));
    must(fx_payment("p1", "pay-1", "c1", 10000, "EUR", day(2026, 2, 2)));
    sqlite3 *db = funnel_store_db(store);
    struct sql_reads r = {.match = "FROM ledger_entry WHERE rep = ?1 AND effective_ms < ?3)"};
    cr_assert_eq(sqlite3_trace_v2(db, SQLITE_TRACE_STMT, keep_sql_read, &r), SQLITE_OK);
    funnel_ledger_statement_t *st = NULL;
    int rc = funnel_ledger_statement(store, "alice", day(2026, 2, 1), day(2026, 3, 1), &st);
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(rc, 0);
    funnel_ledger_statement_free(&st);
    cr_assert_geq(r.n, 1, "the statement summed no postings by rep");
    for (int i = 0; i < r.n; i++)
        cr_assert(plan_says(db, r.sql[i], "COVERING INDEX ledger_entry_time"),
                  "not from the index alone: %s", r.sql[i]);
}

/* A payment in event-time order builds no temporary table: SQLite keeps one in a file of its
 * own, and a DISTINCT or a joined subquery with LIMIT that it materialized cost 50 us to 1 ms a
 * statement in funneld. */
Test(ledger, a_payment_in_order_builds_no_temporary_table)
{
    capped_payments_in_order();
    sqlite3 *db = funnel_store_db(store);
    struct sql_reads r = {.match = "ledger_"};
    cr_assert_eq(sqlite3_trace_v2(db, SQLITE_TRACE_STMT, keep_sql_read, &r), SQLITE_OK);
    int rc = apply(fx_payment("p3", "pay-3", "c1", 10000, "EUR", day(2026, 4, 1)));
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(rc, 0);
    cr_assert_geq(r.n, 4);
    for (int i = 0; i < r.n; i++)
        cr_assert(!plan_says(db, r.sql[i], "TEMP B-TREE") &&
                      !plan_says(db, r.sql[i], "MATERIALIZE"),
                  "a temporary table: %s", r.sql[i]);
}
