/* test_sla_requests.c — the SLA engine on internal requests: first-answer and resolution
 * policies on a business calendar, reassignment, reopening, early events, processing order
 * (sla.order_violated) and the figures of `sla next` and `sla status` (sla_report.h). Driven
 * directly like test_sla.c: a temporary store, the real router, an injected clock. */
#include "engine_fx.h"
#include "harness.h"
#include "sla_fx.h"
#include "sql_fx.h"

#include "funnel/error.h"
#include "funnel/sla_report.h"
#include "sla.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MN 60000LL
#define H  3600000LL

/* Mon 2026-06-01 00:00 UTC = 02:00 in Berlin; the office works 09:00-17:00 there (07:00-15:00
 * UTC), so one business day is 8h. */
static const int64_t T0 = 1780272000000LL;
#define OPEN9 (T0 + 7 * H) /* Monday 09:00 Berlin */

#define CALENDAR                                                                                   \
    "calendars = { office = { time_zone = \"Europe/Berlin\"; weekdays = [\"09:00-17:00\"]; }; };"

/* The README's example policies for requests. */
#define POLICIES                                                                                   \
    "policies = ("                                                                                 \
    " { name = \"materials_answer\"; process = \"Materials for sales\";"                           \
    "   responsible = \"marketing\"; start = \"request.opened kind=materials\";"                   \
    "   key = \"request_id\"; assign = [\"request.assigned\"]; stop = [\"request.answered\"];"     \
    "   target = \"8h\"; calendar = \"office\"; warning = \"25%\";"                                \
    "   escalation = ( { after = \"0\"; notify = \"head-of-marketing\"; } ); },"                   \
    " { name = \"materials_done\"; process = \"Materials for sales\";"                             \
    "   responsible = \"marketing\"; start = \"request.opened kind=materials\";"                   \
    "   reopen = [\"request.reopened\"]; key = \"request_id\"; assign = [\"request.assigned\"];"   \
    "   stop = [\"request.closed\"]; target = \"24h\"; calendar = \"office\";"                     \
    "   order = \"fifo\"; queue = \"queue\"; priority = \"priority\";"                             \
    "   escalation = ( { after = \"0\"; notify = \"head-of-marketing\"; } ); },"

/* SQLs taken oldest first per owner, paused while a lead is LOST (until requalified MQL). */
#define POLICY_SQL_FIFO                                                                            \
    " { name = \"sql_fifo\"; start = \"lead.qualified stage=SQL\"; key = \"lead_id\";"             \
    "   stop = [\"lead.contacted\"]; pause = [\"lead.closed outcome=LOST\"];"                      \
    "   resume = [\"lead.qualified stage=MQL\"]; target = \"8h\"; order = \"fifo\";"               \
    "   queue = \"owner\"; process = \"SQL follow-up\"; responsible = \"sales\"; } );"

static fx_tmpdir_t tmp;
static funnel_store_t *store;
static funnel_router_t *router;
static funnel_sla_t *sla;
static funnel_sla_config_t cfg;
static fx_engine_t eng = {.keep = "sla."};

static void setup(void)
{
    char err[512], path[400];
    fx_tmpdir_make(&tmp);
    snprintf(path, sizeof path, "%s/sla.db", tmp.path);
    cr_assert_eq(funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err),
                 0, "%s", err);
    funnel_sla_config_defaults(&cfg);
    fx_sla_cfg_set(CALENDAR POLICIES POLICY_SQL_FIFO, &cfg);
    funnel_engine_t engine;
    cr_assert_eq(funnel_sla_new(store, &cfg, NULL, &sla), 0);
    funnel_sla_hooks(sla, &engine);
    cr_assert_eq(funnel_router_new(store, &router), 0);
    cr_assert_eq(funnel_router_add_engine(router, &engine), 0);
    eng.store = store;
    eng.router = router;
}

static void teardown(void)
{
    funnel_router_destroy(&router);
    funnel_sla_destroy(&sla);
    funnel_store_destroy(&store);
    funnel_sla_config_clear(&cfg);
    fx_engine_out_clear(&eng);
    fx_tmpdir_remove(&tmp);
}

TestSuite(sla_req, .init = setup, .fini = teardown, .timeout = 60);

static void send_at(funnel_envelope_t *env, int64_t now)
{
    int rc = fx_engine_route(&eng, env, now);
    cr_assert_eq(rc, 0, "%s: %s", funnel_strerror(rc), funnel_store_errmsg(store));
}

static void send(funnel_envelope_t *env)
{
    send_at(env, env->occurred_at_ms);
}

static funnel_envelope_t *next_out(const char *topic)
{
    return fx_engine_next(&eng, topic);
}

/* The SlaRef of any sla.* output. */
static const Funnel__V1__SlaRef *ref_of(const funnel_envelope_t *e)
{
    switch (e->body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_SLA_WARNING:
        return e->sla_warning->sla;
    case FUNNEL__V1__ENVELOPE__BODY_SLA_ESCALATION:
        return e->sla_escalation->sla;
    case FUNNEL__V1__ENVELOPE__BODY_SLA_MET:
        return e->sla_met->sla;
    case FUNNEL__V1__ENVELOPE__BODY_SLA_ORDER_VIOLATED:
        return e->sla_order_violated->sla;
    default:
        cr_assert_fail("not an sla output: %d", (int)e->body_case);
        return NULL;
    }
}

/* The next output, which must be topic for policy at time at. */
static const Funnel__V1__SlaRef *expect(const char *topic, const char *policy, int64_t at)
{
    funnel_envelope_t *e = next_out(topic);
    const Funnel__V1__SlaRef *r = ref_of(e);
    cr_assert_str_eq(r->policy, policy, "%s", topic);
    cr_assert_eq(e->occurred_at_ms, at, "%s of %s at %lld, want %lld", topic, policy,
                 (long long)e->occurred_at_ms, (long long)at);
    return r;
}

/* ---- request lifecycle -------------------------------------------------------------------- */

Test(sla_req, first_answer_and_resolution_run_on_business_hours_and_name_their_process)
{
    /* Opened Monday 16:00 Berlin: 1h of Monday left, so the answer is due Tuesday 16:00 and
     * the resolution (3 business days) Thursday 16:00. */
    int64_t opened = OPEN9 + 7 * H;
    send(fx_req_opened("o1", "R1", "materials", "", 0, "mkt-petrova", opened));
    fx_engine_tick(&eng, OPEN9 + 24 * H + 5 * H); /* Tuesday 14:00: the warning (2h before) */
    const Funnel__V1__SlaRef *r = expect("sla.warning", "materials_answer", OPEN9 + 24 * H + 5 * H);
    cr_assert_eq(r->due_at_ms, OPEN9 + 24 * H + 7 * H);
    cr_assert_str_eq(r->process, "Materials for sales");
    cr_assert_str_eq(r->responsible, "marketing");
    cr_assert_str_eq(r->owner, "mkt-petrova");
    cr_assert_str_eq(r->queue, "", "the answer policy has no queue");
    fx_engine_no_more(&eng);
    send(fx_req_answered("a1", "R1", OPEN9 + 24 * H + 6 * H));
    funnel_envelope_t *met = next_out("sla.met");
    cr_assert(met->sla_met->on_time);
    cr_assert_str_eq(met->sla_met->sla->policy, "materials_answer");
    send(fx_req_closed("c1", "R1", OPEN9 + 72 * H + 8 * H)); /* Thursday 17:00: 1h late */
    expect("sla.escalation", "materials_done", OPEN9 + 72 * H + 7 * H);
    met = next_out("sla.met");
    cr_assert_str_eq(met->sla_met->sla->policy, "materials_done");
    cr_assert_eq(met->sla_met->sla->due_at_ms, OPEN9 + 72 * H + 7 * H);
    cr_assert_not(met->sla_met->on_time);
    cr_assert_eq(met->sla_met->late_ms, H);
    cr_assert_str_eq(met->sla_met->sla->process, "Materials for sales");
    cr_assert_str_eq(met->sla_met->sla->queue, "marketing", "an empty queue is to_team");
    fx_engine_tick(&eng, OPEN9 + 30 * 24 * H);
    fx_engine_no_more(&eng);
}

Test(sla_req, reassignment_changes_the_owner_of_later_outputs_in_any_arrival_order)
{
    send(fx_req_opened("o1", "R1", "materials", "q", 0, "", OPEN9));
    send(fx_req_assigned("g1", "R1", "mkt-sidorov", OPEN9 + H));
    fx_engine_tick(&eng, OPEN9 + 6 * H);
    cr_assert_str_eq(expect("sla.warning", "materials_answer", OPEN9 + 6 * H)->owner,
                     "mkt-sidorov");
    /* The same, the assignment arriving after the warning time it precedes. */
    send_at(fx_req_opened("o2", "R2", "materials", "q", 0, "", OPEN9), OPEN9 + 7 * H);
    send_at(fx_req_assigned("g2", "R2", "mkt-sidorov", OPEN9 + H), OPEN9 + 7 * H);
    fx_engine_tick(&eng, OPEN9 + 7 * H + FUNNEL_SLA_LATE_GRACE_MS); /* overdue: after the grace */
    cr_assert_str_eq(expect("sla.warning", "materials_answer", OPEN9 + 6 * H)->owner,
                     "mkt-sidorov");
    fx_engine_no_more(&eng);
}

/* One event that both reassigns and meets an instance (its topic in assign and stop): the met
 * row is the new owner's, as its sla.met says, so reports and compliance by owner count it
 * there. In event-time order and with the assignment recomputed after a late event. */
Test(sla_req, an_event_that_reassigns_and_meets_stores_the_new_owner)
{
    fx_sla_cfg_set(CALENDAR "policies = ( { name = \"pick_up\"; start = \"request.opened\";"
                            " key = \"request_id\"; assign = [\"request.assigned\"];"
                            " stop = [\"request.assigned\"]; target = \"8h\"; } );",
                   &cfg);
    send(fx_req_opened("o1", "R1", "materials", "q", 0, "", OPEN9));
    send(fx_req_assigned("g1", "R1", "mkt-sidorov", OPEN9 + H));
    cr_assert_str_eq(next_out("sla.met")->sla_met->sla->owner, "mkt-sidorov");
    cr_assert_eq(fx_sql_int(funnel_store_db(store),
                            "SELECT count(*) FROM sla_instance WHERE key = 'R1' AND state = 'met'"
                            " AND owner = 'mkt-sidorov'",
                            NULL),
                 1, "the met row keeps the owner its sla.met names");
    send_at(fx_req_assigned("g0", "R1", "mkt-petrova", OPEN9 + 30 * MN), OPEN9 + 2 * H);
    cr_assert_eq(fx_sql_int(funnel_store_db(store),
                            "SELECT count(*) FROM sla_instance WHERE key = 'R1' AND state = 'met'"
                            " AND owner = 'mkt-petrova' AND stop_event = 'g0'",
                            NULL),
                 1, "recomputed: met by the earlier assignment, to its owner");
}

Test(sla_req, reopen_restarts_the_resolution_clock_with_the_same_owner_and_queue)
{
    send(fx_req_opened("o1", "R1", "materials", "emea", 3, "mkt-petrova", OPEN9));
    send(fx_req_answered("a1", "R1", OPEN9 + H));
    expect("sla.met", "materials_answer", OPEN9 + H);
    send(fx_req_closed("c1", "R1", OPEN9 + 2 * H));
    expect("sla.met", "materials_done", OPEN9 + 2 * H);
    send(fx_req_reopened("r1", "R1", OPEN9 + 24 * H));
    fx_engine_tick(&eng, OPEN9 + 4 * 24 * H);
    /* 24 business hours from Tuesday 09:00: Thursday 17:00. */
    const Funnel__V1__SlaRef *r = expect("sla.escalation", "materials_done", OPEN9 + 80 * H);
    cr_assert_eq(r->started_at_ms, OPEN9 + 24 * H, "the clock counts from the reopen");
    cr_assert_str_eq(r->owner, "mkt-petrova");
    cr_assert_str_eq(r->queue, "emea");
    cr_assert_eq(r->priority, 3);
    fx_engine_no_more(&eng); /* the first answer is not reopened: its policy has no reopen */
    /* A reopen of a request never seen opens nothing. */
    send(fx_req_reopened("r2", "R9", OPEN9 + 24 * H));
    fx_engine_tick(&eng, OPEN9 + 30 * 24 * H);
    fx_engine_no_more(&eng);
}

Test(sla_req, an_answer_or_assignment_before_its_open_is_held_until_the_open_arrives)
{
    send_at(fx_req_answered("a1", "R1", OPEN9 + H), OPEN9 + H);
    fx_engine_no_more(&eng);
    send_at(fx_req_opened("o1", "R1", "materials", "q", 0, "mkt-petrova", OPEN9), OPEN9 + 2 * H);
    funnel_envelope_t *met = next_out("sla.met");
    cr_assert_str_eq(met->sla_met->sla->policy, "materials_answer");
    cr_assert(met->sla_met->on_time);
    cr_assert_str_eq(met->sla_met->stop_event_id, "a1");
    fx_engine_no_more(&eng);
    /* An assignment before its open is held too: the open's outputs name the new owner. */
    send_at(fx_req_assigned("g2", "R2", "mkt-sidorov", OPEN9 + H), OPEN9 + 2 * H);
    send_at(fx_req_opened("o2", "R2", "materials", "q", 0, "", OPEN9), OPEN9 + 2 * H);
    fx_engine_tick(&eng, OPEN9 + 6 * H);
    cr_assert_str_eq(expect("sla.warning", "materials_answer", OPEN9 + 6 * H)->owner,
                     "mkt-sidorov");
    fx_engine_no_more(&eng);
}

/* ---- processing order --------------------------------------------------------------------- */

/* One event of a scenario: o open (request) or SQL (lead), c close or contact, p pause (LOST),
 * r resume (MQL), on request or lead `id` (suffixed per run) at T0 + at. */
typedef struct ev {
    char kind;
    const char *id;
    int priority;
    int64_t at;
} ev_t;

static funnel_envelope_t *ev_build(const ev_t *e, const char *run, bool lead)
{
    char key[64], id[96];
    snprintf(key, sizeof key, "%s-%s", run, e->id);
    snprintf(id, sizeof id, "%s-%c-%lld", key, e->kind, (long long)e->at);
    int64_t at = OPEN9 + e->at;
    switch (e->kind) {
    case 'o':
        return lead ? fx_qualified(id, key, FUNNEL__V1__STAGE__SQL, at)
                    : fx_req_opened(id, key, "materials", run, e->priority, "", at);
    case 'c':
        return lead ? fx_contacted(id, key, at) : fx_req_closed(id, key, at);
    case 'p':
        return fx_closed(id, key, FUNNEL__V1__OUTCOME__LOST, at);
    default:
        return fx_qualified(id, key, FUNNEL__V1__STAGE__MQL, at);
    }
}

/* The keys without the run prefix ("R3>R1"), sorted, one per line, into buf. */
static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lines_sorted(char **lines, size_t n, char *buf, size_t len)
{
    qsort(lines, n, sizeof *lines, line_cmp);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(buf, lines[i], len - strlen(buf) - 1);
        strncat(buf, "\n", len - strlen(buf) - 1);
        free(lines[i]);
    }
}

static const char *bare(const char *key)
{
    const char *dash = strrchr(key, '-');
    return dash ? dash + 1 : key;
}

/* The pairs of sla.order_violated published since the last call, for keys of this run. */
static void published(const char *run, char *buf, size_t len)
{
    char *lines[64];
    size_t n = 0;
    for (; eng.seen < eng.n_out; eng.seen++) {
        const funnel_envelope_t *e = eng.out[eng.seen];
        if (e->body_case != FUNNEL__V1__ENVELOPE__BODY_SLA_ORDER_VIOLATED ||
            strncmp(e->sla_order_violated->sla->key, run, strlen(run)))
            continue;
        const Funnel__V1__SlaOrderViolated *ov = e->sla_order_violated;
        for (size_t i = 0; i < ov->n_skipped && n < 64; i++) {
            cr_assert(
                asprintf(&lines[n++], "%s>%s", bare(ov->sla->key), bare(ov->skipped[i]->key)) > 0);
        }
    }
    lines_sorted(lines, n, buf, len);
}

/* The pairs the store holds as current for this run's queue. */
static void current(const char *run, char *buf, size_t len)
{
    char *lines[64];
    size_t n = 0;
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(funnel_store_db(store),
                                    "SELECT a.key, b.key FROM sla_order o JOIN sla_instance a ON"
                                    " a.id = o.taken JOIN sla_instance b ON b.id = o.skipped"
                                    " WHERE o.current = 1 AND substr(a.key, 1, length(?1)) = ?1",
                                    -1, &s, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(s, 1, run, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW && n < 64)
        cr_assert(asprintf(&lines[n++], "%s>%s", bare((const char *)sqlite3_column_text(s, 0)),
                           bare((const char *)sqlite3_column_text(s, 1))) > 0);
    sqlite3_finalize(s);
    lines_sorted(lines, n, buf, len);
}

/* Sends the scenario in the order given, one event per transaction or all in one batch, as
 * run `run`, arriving after every event occurred. */
static void run_order(const ev_t *ev, const size_t *order, size_t n, const char *run, bool lead,
                      bool batch)
{
    int64_t now = OPEN9 + 8 * H;
    if (batch)
        cr_assert_eq(funnel_store_begin(store), 0);
    for (size_t i = 0; i < n; i++) {
        funnel_envelope_t *env = ev_build(&ev[order[i]], run, lead);
        if (!batch) {
            send_at(env, now);
            continue;
        }
        size_t len;
        uint8_t *raw = fx_pack(env, &len);
        int rc = funnel_router_apply(router, env, funnel_topic_name(env->body_case), raw, len, now);
        cr_assert_eq(rc, 0, "%s: %s", funnel_strerror(rc), funnel_store_errmsg(store));
        free(raw);
        funnel_envelope_free(&env);
    }
    if (batch) {
        cr_assert_eq(funnel_store_commit(store), 0);
        fx_engine_collect(&eng);
    }
}

/* Every arrival order of the scenario, one by one and in one batch, ends with the same set of
 * violations as event-time order (`want`). With `exact`, what is published is that set too:
 * the scenario has no stop or pause that a late arrival could put before a published
 * violation's time. Without it, published pairs include the set and none is published twice. */
static void expect_any_order(const ev_t *ev, size_t n, bool lead, const char *want, bool exact)
{
    size_t order[8], perms = 1;
    for (size_t i = 2; i <= n; i++)
        perms *= i;
    for (size_t k = 0; k < perms; k++) {
        fx_permutation(n, k, order);
        for (int batch = 0; batch < 2; batch++) {
            char run[32], got[1024], pub[1024];
            snprintf(run, sizeof run, "x%zu%c", k, batch ? 'b' : 's');
            run_order(ev, order, n, run, lead, batch);
            current(run, got, sizeof got);
            cr_assert_str_eq(got, want, "order #%zu %s: current\n%s", k, batch ? "batch" : "single",
                             got);
            published(run, pub, sizeof pub);
            if (exact)
                cr_assert_str_eq(pub, want, "order #%zu: published\n%s", k, pub);
            for (const char *line = got; *line; line = strchr(line, '\n') + 1) {
                char one[64];
                snprintf(one, sizeof one, "%.*s", (int)(strchr(line, '\n') - line + 1), line);
                cr_assert(strstr(pub, one), "order #%zu: %s not published in\n%s", k, one, pub);
            }
            for (const char *line = pub; *line; line = strchr(line, '\n') + 1) {
                const char *again = strchr(line, '\n') + 1;
                cr_assert(strncmp(line, again, (size_t)(again - line)),
                          "order #%zu: published twice: %s", k, line);
            }
            fx_engine_out_clear(&eng);
        }
    }
}

Test(sla_req, fifo_takes_priority_into_account_and_is_the_same_in_any_arrival_order)
{
    /* R3 taken before R1 and R2 of its priority; R4, older but of another priority, is not
     * skipped by it. */
    static const ev_t ev[] = {
        {'o', "R1", 0, 0},      {'o', "R2", 0, 10 * MN}, {'o', "R3", 0, 20 * MN},
        {'o', "R4", 5, 5 * MN}, {'c', "R3", 0, H},
    };
    expect_any_order(ev, 5, false, "R3>R1\nR3>R2\n", true);
}

Test(sla_req, a_paused_or_stopped_older_instance_is_not_skipped)
{
    /* L1 paused (LOST) at 30m, resumed at 2h; L2 contacted at 50m skips nobody running; L3
     * contacted at 1h neither (L1 paused, L2 taken); L4 contacted at 3h skips L1, running
     * again. */
    static const ev_t ev[] = {
        {'o', "L1", 0, 0},       {'o', "L2", 0, 10 * MN},    {'o', "L3", 0, 20 * MN},
        {'p', "L1", 0, 30 * MN}, {'c', "L2", 0, 50 * MN},    {'c', "L3", 0, H},
        {'r', "L1", 0, 2 * H},   {'o', "L4", 0, 2 * H + MN}, {'c', "L4", 0, 3 * H},
    };
    size_t order[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    char got[1024], pub[1024];
    run_order(ev, order, 9, "inorder", true, false);
    current("inorder", got, sizeof got);
    cr_assert_str_eq(got, "L4>L1\n", "%s", got);
    published("inorder", pub, sizeof pub);
    cr_assert_str_eq(pub, got);
}

Test(sla_req, a_late_stop_corrects_the_set_and_publishes_nothing_twice)
{
    /* R2 taken at 50m (skipping R1), R3 at 1h (skipping R1). When R2's stop arrives after R3's,
     * R3>R2 was published and is no longer in the set; it is not published again. */
    static const ev_t ev[] = {
        {'o', "R1", 0, 0},       {'o', "R2", 0, 10 * MN}, {'o', "R3", 0, 20 * MN},
        {'c', "R2", 0, 50 * MN}, {'c', "R3", 0, H},
    };
    expect_any_order(ev, 5, false, "R2>R1\nR3>R1\n", false);
}

/* ---- sla next, sla status ------------------------------------------------------------------ */

Test(sla_req, next_is_the_oldest_running_of_the_highest_priority_and_status_counts_per_process)
{
    /* Queue emea: R1 (prio 0, 9:00), R2 (prio 2, 9:30), R3 (prio 2, 9:10), R4 (prio 2, 9:20)
     * closed at 10:00. Next: R3, the oldest running of priority 2; length 3. */
    send(fx_req_opened("o1", "R1", "materials", "emea", 0, "", OPEN9));
    send(fx_req_opened("o3", "R3", "materials", "emea", 2, "", OPEN9 + 10 * MN));
    send(fx_req_opened("o4", "R4", "materials", "emea", 2, "", OPEN9 + 20 * MN));
    send(fx_req_opened("o2", "R2", "materials", "emea", 2, "", OPEN9 + 30 * MN));
    send(fx_req_closed("c4", "R4", OPEN9 + H));
    funnel_sla_next_t nx;
    cr_assert_eq(funnel_sla_report_next(store, "materials_done", "emea", OPEN9 + 2 * H, &nx), 0);
    cr_assert(nx.found);
    cr_assert_str_eq(nx.row.key, "R3");
    cr_assert_eq(nx.row.priority, 2);
    cr_assert_str_eq(nx.row.process, "Materials for sales");
    cr_assert_eq(nx.length, 3);
    cr_assert_eq(nx.paused, 0);
    cr_assert_eq(funnel_sla_report_next(store, "materials_done", "apac", OPEN9 + 2 * H, &nx), 0);
    cr_assert_not(nx.found);
    cr_assert_eq(nx.length, 0);

    /* R1 answered on time, R3 late (Tuesday 10:00, due Tuesday 09:10). */
    send(fx_req_answered("a1", "R1", OPEN9 + H));
    send(fx_req_answered("a3", "R3", OPEN9 + 25 * H));
    fx_engine_tick(&eng, OPEN9 + 25 * H);
    funnel_sla_status_t *st;
    cr_assert_eq(funnel_sla_report_status(store, OPEN9, OPEN9 + 25 * H, &st), 0);
    cr_assert_eq(st->n_rows, 2);
    const funnel_sla_status_row_t *ans = &st->rows[0], *done = &st->rows[1];
    if (strcmp(ans->policy, "materials_answer"))
        ans = &st->rows[1], done = &st->rows[0];
    cr_assert_str_eq(ans->process, "Materials for sales");
    cr_assert_str_eq(ans->responsible, "marketing");
    /* Answers: R1 on time, R3 late; R2 and R4 open, both past due Tuesday 10:00. */
    cr_assert_eq(ans->met_on_time, 1);
    cr_assert_eq(ans->met_late, 1);
    cr_assert_eq(ans->open, 2);
    cr_assert_eq(ans->breached, 2);
    cr_assert_eq(ans->at_risk, 0);
    cr_assert_eq(ans->oldest_open_age_ms, 25 * H - 20 * MN);
    /* Resolutions (24 business hours): R4 met on time; R1, R2, R3 open, none warned. */
    cr_assert_eq(done->met_on_time, 1);
    cr_assert_eq(done->met_late, 0);
    cr_assert_eq(done->open, 3);
    cr_assert_eq(done->breached, 0);
    cr_assert_eq(done->oldest_open_age_ms, 25 * H);
    /* The period starts after the stops: nothing met in it. */
    funnel_sla_report_status_free(&st);
    cr_assert_eq(funnel_sla_report_status(store, OPEN9 + 26 * H, OPEN9 + 26 * H, &st), 0);
    for (size_t i = 0; i < st->n_rows; i++)
        cr_assert_eq(st->rows[i].met_on_time + st->rows[i].met_late, 0);
    funnel_sla_report_status_free(&st);
}

Test(sla_req, at_risk_counts_the_warned_not_yet_breached)
{
    send(fx_req_opened("o1", "R1", "materials", "emea", 0, "", OPEN9));
    fx_engine_tick(&eng, OPEN9 + 6 * H); /* the answer's warning: 2h before 17:00 */
    funnel_sla_status_t *st;
    cr_assert_eq(funnel_sla_report_status(store, OPEN9, OPEN9 + 6 * H, &st), 0);
    for (size_t i = 0; i < st->n_rows; i++) {
        bool answer = !strcmp(st->rows[i].policy, "materials_answer");
        cr_assert_eq(st->rows[i].at_risk, answer ? 1 : 0, "%s", st->rows[i].policy);
        cr_assert_eq(st->rows[i].breached, 0);
    }
    funnel_sla_report_status_free(&st);
}

/* ---- configuration ------------------------------------------------------------------------ */

/* The config error for one policy body, or "" when it parses. */
static void policy_error(const char *policy, char *err, size_t len)
{
    char body[2048];
    funnel_sla_config_t c;
    snprintf(body, sizeof body, "policies = ( { %s } );", policy);
    funnel_sla_config_defaults(&c);
    fx_sla_cfg_parse(body, &c, err, len);
    funnel_sla_config_clear(&c);
}

Test(sla_req, order_queue_and_priority_are_checked_at_load)
{
    static const struct {
        const char *members, *error;
    } cases[] = {
        {"order = \"lifo\"; queue = \"queue\";",
         "policy p: order: expected \"fifo\" (or no order)"},
        {"order = \"fifo\";", "policy p: queue: order = \"fifo\" needs the queue field"},
        {"order = \"fifo\"; queue = \"qeueu\";", "policy p: queue: not a field of any start topic"},
        {"priority = \"prio\";", "policy p: priority: not a field of any start topic"},
        {"reopen = [\"request.reopend\"];",
         "policy p: reopen: 'request.reopend' is not an ingest topic"},
        {"order = \"fifo\"; queue = \"queue\"; priority = \"priority\"; process = \"P\";", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char policy[1024], err[512];
        snprintf(policy, sizeof policy,
                 "name = \"p\"; start = \"request.opened\"; key = \"request_id\";"
                 " stop = [\"request.closed\"]; target = \"1h\"; %s",
                 cases[i].members);
        policy_error(policy, err, sizeof err);
        cr_assert(!strncmp(err, cases[i].error, strlen(cases[i].error)) &&
                      (*cases[i].error || !*err),
                  "%s: got '%s'", cases[i].members, err);
    }
}

/* A policy with the new members prints and reads back to the same definition (its stored
 * version), and one without them prints as before (no new version on upgrade). */
Test(sla_req, new_members_round_trip_and_old_policies_keep_their_text)
{
    for (size_t i = 0; i < cfg.n_policies; i++) {
        funnel_sla_policy_t back;
        char err[256];
        cr_assert_eq(
            funnel_sla_policy_from_text(cfg.policies[i].definition, &back, err, sizeof err), 0,
            "%s", err);
        cr_assert_str_eq(back.definition, cfg.policies[i].definition);
        funnel_sla_policy_clear(&back);
    }
    funnel_sla_config_t c;
    funnel_sla_config_defaults(&c);
    fx_sla_cfg_set("policies = ( { name = \"p\"; start = \"lead.qualified\"; key = \"lead_id\";"
                   " stop = [\"lead.contacted\"]; target = \"1h\"; } );",
                   &c);
    cr_assert_null(strstr(c.policies[0].definition, "process"), "%s", c.policies[0].definition);
    cr_assert(strstr(c.policies[0].definition, "start = \"lead.qualified\";"), "%s",
              c.policies[0].definition);
    funnel_sla_config_clear(&c);
}
