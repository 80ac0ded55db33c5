/* test_sla.c — the SLA engine driven directly: a temporary store, the real router, the engine
 * and an injected clock. Every output is decoded and checked for its times, level, target and
 * version; "now" only moves when a test says so. */
#include "engine_fx.h"
#include "harness.h"
#include "sla_fx.h"
#include "sql_fx.h"

#include "funnel/error.h"
#include "funnel/report.h"
#include "funnel/sla_report.h"
#include "sla.h"

#include <criterion/criterion.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MN 60000LL
#define H  3600000LL

static fx_tmpdir_t tmp;
static funnel_store_t *store;
static funnel_router_t *router;
static funnel_sla_t *sla;
static funnel_sla_config_t cfg;
static char db_path[400];

/* The engine in its transactions; its outputs (sla.* only), decoded, are freed by the fini. */
static fx_engine_t eng = {.keep = "sla."};

/* Mon 2026-06-01 00:00 UTC: every scenario starts from here. */
static const int64_t T0 = 1780272000000LL;

#define POLICY_SQL                                                                                 \
    "name = \"sql_contact\"; start = \"lead.qualified stage=SQL\"; key = \"lead_id\";"             \
    "stop = [\"lead.contacted\"]; reset = [\"lead.touched\"];"                                     \
    "pause = [\"lead.closed outcome=LOST\"]; resume = [\"lead.qualified stage=MQL\"];"             \
    "warning = \"15m\";"                                                                           \
    "escalation = ( { after = \"0\"; notify = \"team-lead\"; },"                                   \
    "               { after = \"30m\"; notify = \"head-of-sales\"; } );"                           \
    "repeat = { count = 2; every = \"1h\"; };"

/* Replaces the section with `sla = { ... }` built from body (a reload does the same). */
static void cfg_set(const char *body)
{
    fx_sla_cfg_set(body, &cfg);
}

static void policy_set(const char *policy, const char *target)
{
    char body[3000];
    snprintf(body, sizeof body,
             "calendars = { office = { time_zone = \"Europe/Berlin\";"
             " weekdays = [\"09:00-18:00\"]; }; };"
             "policies = ( { %s target = \"%s\"; } );",
             policy, target);
    cfg_set(body);
}

static void engine_open(void)
{
    funnel_engine_t engine;
    cr_assert_eq(funnel_sla_new(store, &cfg, NULL, &sla), 0, "%s", funnel_store_errmsg(store));
    funnel_sla_hooks(sla, &engine);
    cr_assert_eq(funnel_router_new(store, &router), 0);
    cr_assert_eq(funnel_router_add_engine(router, &engine), 0);
    eng.store = store;
    eng.router = router;
}

static void engine_close(void)
{
    funnel_router_destroy(&router);
    funnel_sla_destroy(&sla);
}

static void setup(void)
{
    char err[512];
    fx_tmpdir_make(&tmp);
    snprintf(db_path, sizeof db_path, "%s/sla.db", tmp.path);
    cr_assert_eq(
        funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err), 0,
        "%s", err);
    funnel_sla_config_defaults(&cfg);
    policy_set(POLICY_SQL, "1h");
    engine_open();
}

static void teardown(void)
{
    engine_close();
    funnel_store_destroy(&store);
    funnel_sla_config_clear(&cfg);
    fx_engine_out_clear(&eng);
    fx_tmpdir_remove(&tmp);
}

TestSuite(sla, .init = setup, .fini = teardown, .timeout = 60);

/* Routes one event in its own transaction at arrival time now, as funneld's batch does, and
 * frees it. */
static void send_at(funnel_envelope_t *env, int64_t now)
{
    int rc = fx_engine_route(&eng, env, now);
    cr_assert_eq(rc, 0, "%s: %s", funnel_strerror(rc), funnel_store_errmsg(store));
}

/* Routes one event the engine must refuse: FUNNEL_EREFUSED, and nothing of it stays. */
static void send_refused(funnel_envelope_t *env, int64_t now)
{
    int rc = fx_engine_route(&eng, env, now);
    cr_assert_eq(rc, FUNNEL_EREFUSED, "answered %s", funnel_strerror(rc));
}

/* Routes one event that arrives the moment it occurred. */
static void send(funnel_envelope_t *env)
{
    send_at(env, env->occurred_at_ms);
}

/* The clock reaches now: runs the timers the way funneld's engine timer does. */
static void tick(int64_t now)
{
    fx_engine_tick(&eng, now);
}

/* The next unseen output; asserts there is one. */
static funnel_envelope_t *next_out(const char *topic)
{
    return fx_engine_next(&eng, topic);
}

static void no_more_out(void)
{
    fx_engine_no_more(&eng);
}

static void expect_escalation(int64_t at, int level, const char *notify, int repeat)
{
    funnel_envelope_t *e = next_out("sla.escalation");
    cr_assert_eq(e->occurred_at_ms, at, "level %d repeat %d at %lld, want %lld", level, repeat,
                 (long long)e->occurred_at_ms, (long long)at);
    cr_assert_eq(e->sla_escalation->level, level);
    cr_assert_str_eq(e->sla_escalation->notify, notify);
    cr_assert_eq(e->sla_escalation->repeat, repeat);
}

#define SQL FUNNEL__V1__STAGE__SQL
#define MQL FUNNEL__V1__STAGE__MQL

/* ---- tests ---------------------------------------------------------------------------- */

Test(sla, warning_each_level_and_repeats_in_order)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    tick(T0 + 44 * MN);
    no_more_out();
    tick(T0 + 45 * MN);
    funnel_envelope_t *w = next_out("sla.warning");
    cr_assert_eq(w->occurred_at_ms, T0 + 45 * MN);
    cr_assert_str_eq(w->sla_warning->sla->policy, "sql_contact");
    cr_assert_eq(w->sla_warning->sla->policy_version, 1);
    cr_assert_str_eq(w->sla_warning->sla->key, "L1");
    cr_assert_str_eq(w->sla_warning->sla->owner, "rep-anna");
    cr_assert_eq(w->sla_warning->sla->started_at_ms, T0);
    cr_assert_eq(w->sla_warning->sla->due_at_ms, T0 + H);
    tick(T0 + H);
    expect_escalation(T0 + H, 1, "team-lead", 0);
    tick(T0 + H + 30 * MN);
    expect_escalation(T0 + H + 30 * MN, 2, "head-of-sales", 0);
    tick(T0 + 2 * H + 30 * MN);
    expect_escalation(T0 + 2 * H + 30 * MN, 2, "head-of-sales", 1);
    tick(T0 + 3 * H + 30 * MN);
    expect_escalation(T0 + 3 * H + 30 * MN, 2, "head-of-sales", 2);
    tick(T0 + 100 * H);
    no_more_out();
    cr_assert_eq(funnel_router_next_deadline(router), INT64_MAX);
}

/* Every step of an instance of POLICY_SQL started at T0, each with its own due time. */
static void expect_every_step_of_t0(void)
{
    cr_assert_eq(next_out("sla.warning")->occurred_at_ms, T0 + 45 * MN);
    expect_escalation(T0 + H, 1, "team-lead", 0);
    expect_escalation(T0 + H + 30 * MN, 2, "head-of-sales", 0);
    expect_escalation(T0 + 2 * H + 30 * MN, 2, "head-of-sales", 1);
    expect_escalation(T0 + 3 * H + 30 * MN, 2, "head-of-sales", 2);
    no_more_out();
}

Test(sla, overdue_steps_fire_at_once_with_their_original_times)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    tick(T0 + 10 * H);
    expect_every_step_of_t0();
}

Test(sla, acknowledgement_stops_further_levels)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    tick(T0 + H);
    next_out("sla.warning");
    funnel_envelope_t *e = next_out("sla.escalation");
    char sla_id[32];
    snprintf(sla_id, sizeof sla_id, "%s", e->sla_escalation->sla->sla_id);
    send(fx_acked("a1", sla_id, T0 + H + 5 * MN));
    tick(T0 + 10 * H);
    no_more_out();
    /* An acknowledgement naming nothing is refused, and changes nothing. */
    send_refused(fx_acked("a2", "999999", T0 + H + 6 * MN), T0 + H + 6 * MN);
    /* The instance is still open until its stop, which is late. */
    send(fx_contacted("c1", "L1", T0 + 2 * H));
    funnel_envelope_t *m = next_out("sla.met");
    cr_assert_not(m->sla_met->on_time);
    cr_assert_eq(m->sla_met->late_ms, H);
}

Test(sla, stop_in_time_met_and_silent_afterwards)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 30 * MN));
    funnel_envelope_t *m = next_out("sla.met");
    cr_assert(m->sla_met->on_time);
    cr_assert_eq(m->sla_met->late_ms, 0);
    cr_assert_str_eq(m->sla_met->stop_event_id, "c1");
    cr_assert_eq(m->occurred_at_ms, T0 + 30 * MN);
    tick(T0 + 10 * H);
    no_more_out();
    cr_assert_eq(funnel_router_next_deadline(router), INT64_MAX);
}

Test(sla, late_arriving_stop_that_occurred_before_due_is_on_time)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    tick(T0 + 2 * H); /* warning and two levels went out meanwhile */
    cr_assert_eq(eng.n_out, 3);
    eng.seen = 3;
    send(fx_contacted("c1", "L1", T0 + 50 * MN));
    funnel_envelope_t *m = next_out("sla.met");
    cr_assert(m->sla_met->on_time, "it occurred before the due time");
    tick(T0 + 10 * H);
    no_more_out();
}

Test(sla, late_stop_reports_lateness_in_business_time)
{
    policy_set(POLICY_SQL " calendar = \"office\";", "8h");
    engine_close();
    engine_open();
    /* Fri Jun 5 15:00 CEST (13:00Z) + 8 business hours (09-18) = Mon Jun 8 14:00 CEST. */
    int64_t fri = T0 + 4 * 24 * H + 13 * H, mon_due = T0 + 7 * 24 * H + 12 * H;
    send(fx_qualified("q1", "L1", SQL, fri));
    tick(mon_due - 15 * MN);
    funnel_envelope_t *w = next_out("sla.warning");
    cr_assert_eq(w->sla_warning->sla->due_at_ms, mon_due);
    cr_assert_eq(w->occurred_at_ms, mon_due - 15 * MN);
    /* Contacted Tue Jun 9 10:00 CEST: 4h Monday afternoon + 1h Tuesday morning late. The
     * levels and repeats due before it come out first, with their times. */
    send(fx_contacted("c1", "L1", T0 + 8 * 24 * H + 8 * H));
    expect_escalation(mon_due, 1, "team-lead", 0);
    expect_escalation(mon_due + 30 * MN, 2, "head-of-sales", 0);
    expect_escalation(mon_due + 90 * MN, 2, "head-of-sales", 1);
    expect_escalation(mon_due + 150 * MN, 2, "head-of-sales", 2);
    funnel_envelope_t *m = next_out("sla.met");
    cr_assert_not(m->sla_met->on_time);
    cr_assert_eq(m->sla_met->late_ms, 5 * H);
}

Test(sla, pause_and_resume_move_the_due_time)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_closed("p1", "L1", FUNNEL__V1__OUTCOME__LOST, T0 + 20 * MN));
    tick(T0 + 5 * H);
    no_more_out();
    cr_assert_eq(funnel_router_next_deadline(router), INT64_MAX);
    /* 40 minutes left when the clock runs again at 3h. */
    send(fx_qualified("r1", "L1", MQL, T0 + 3 * H));
    tick(T0 + 3 * H + 25 * MN);
    funnel_envelope_t *w = next_out("sla.warning");
    cr_assert_eq(w->occurred_at_ms, T0 + 3 * H + 25 * MN);
    cr_assert_eq(w->sla_warning->sla->due_at_ms, T0 + 3 * H + 40 * MN);
    send(fx_contacted("c1", "L1", T0 + 3 * H + 30 * MN));
    cr_assert(next_out("sla.met")->sla_met->on_time);
    no_more_out();
}

Test(sla, reset_restarts_the_clock_and_the_steps)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    tick(T0 + H);
    next_out("sla.warning");
    expect_escalation(T0 + H, 1, "team-lead", 0);
    send(fx_touched("t1", "L1", T0 + H + 10 * MN));
    tick(T0 + 2 * H + 10 * MN);
    funnel_envelope_t *w = next_out("sla.warning");
    cr_assert_eq(w->occurred_at_ms, T0 + H + 55 * MN);
    cr_assert_eq(w->sla_warning->sla->started_at_ms, T0 + H + 10 * MN);
    expect_escalation(T0 + 2 * H + 10 * MN, 1, "team-lead", 0);
    no_more_out();
}

Test(sla, repeated_start_does_not_open_a_second_instance)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_qualified("q2", "L1", SQL, T0 + 10 * MN));
    tick(T0 + 45 * MN);
    cr_assert_eq(next_out("sla.warning")->sla_warning->sla->started_at_ms, T0);
    no_more_out();
}

Test(sla, reload_applies_to_new_instances_only)
{
    send(fx_qualified("q1", "A", SQL, T0));
    /* SIGHUP replaces the section in place: the engine sees the new target for new starts. */
    funnel_sla_config_clear(&cfg);
    policy_set(POLICY_SQL, "2h");
    send(fx_qualified("q2", "B", SQL, T0));
    funnel_sla_config_clear(&cfg);
    policy_set(POLICY_SQL, "2h"); /* the same definition again: no new version */
    send(fx_qualified("q3", "C", SQL, T0));
    tick(T0 + 45 * MN);
    funnel_envelope_t *a = next_out("sla.warning");
    cr_assert_str_eq(a->sla_warning->sla->key, "A");
    cr_assert_eq(a->sla_warning->sla->policy_version, 1);
    cr_assert_eq(a->sla_warning->sla->due_at_ms, T0 + H);
    no_more_out();
    tick(T0 + H + 45 * MN);
    expect_escalation(T0 + H, 1, "team-lead", 0); /* A's levels, under version 1 */
    expect_escalation(T0 + H + 30 * MN, 2, "head-of-sales", 0);
    for (int i = 0; i < 2; i++) {
        funnel_envelope_t *w = next_out("sla.warning");
        cr_assert_eq(w->sla_warning->sla->policy_version, 2);
        cr_assert_eq(w->sla_warning->sla->due_at_ms, T0 + 2 * H);
    }
    no_more_out();
}

Test(sla, restart_rebuilds_the_timers_from_the_rows)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_qualified("q2", "L2", SQL, T0 + MN));
    send(fx_contacted("c2", "L2", T0 + 2 * MN));
    next_out("sla.met");
    engine_close();
    engine_open();
    cr_assert_eq(funnel_sla_timers(sla), 1, "only the open instance has a timer");
    cr_assert_eq(funnel_router_next_deadline(router), T0 + 45 * MN);
    tick(T0 + 10 * H);
    cr_assert_eq(eng.n_out - eng.seen, 5);
}

Test(sla, rollback_forgets_timers_of_undone_rows)
{
    funnel_envelope_t *env = fx_qualified("q1", "L1", SQL, T0);
    size_t len;
    uint8_t *raw = fx_pack(env, &len);
    cr_assert_eq(funnel_store_begin(store), 0);
    cr_assert_eq(funnel_router_apply(router, env, "lead.qualified", raw, len, T0), 0);
    cr_assert_eq(funnel_router_next_deadline(router), T0 + 45 * MN);
    funnel_store_rollback(store);
    funnel_router_rolled_back(router);
    free(raw);
    /* The same event again (funneld retries a failed batch) starts it once: the undone row's
     * entry stays in the heap (lazy deletion) with the same id and time, and is dropped. */
    send(env);
    tick(T0 + 45 * MN);
    next_out("sla.warning");
    no_more_out();
    /* An undone row's entry alone fires nothing when it comes due. */
    env = fx_qualified("q2", "L2", SQL, T0 + H);
    raw = fx_pack(env, &len);
    cr_assert_eq(funnel_store_begin(store), 0);
    cr_assert_eq(funnel_router_apply(router, env, "lead.qualified", raw, len, T0 + H), 0);
    funnel_store_rollback(store);
    funnel_router_rolled_back(router);
    free(raw);
    funnel_envelope_free(&env);
    tick(T0 + H + 45 * MN);
    expect_escalation(T0 + H, 1, "team-lead", 0); /* L1's, not L2's warning */
    expect_escalation(T0 + H + 30 * MN, 2, "head-of-sales", 0);
    no_more_out();
}

/* Routes env in a transaction that is then rolled back, as for an event that failed. */
static void send_failed(funnel_envelope_t *env, int64_t now)
{
    cr_assert_eq(fx_engine_route_undone(&eng, env, now), 0);
}

Test(sla, failing_events_do_not_reload_the_engine_state)
{
    size_t loads0, rebuilds0, loads, rebuilds;
    char id[32], lead[32];
    send(fx_qualified("q0", "L0", SQL, T0));
    /* The first rollback after a change ends the engine's doubt about it (no transaction left). */
    send_failed(fx_touched("t0", "L0", T0 + MN), T0 + MN);
    funnel_sla_reloads(sla, &loads0, &rebuilds0);
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof id, "q%d", i + 1);
        snprintf(lead, sizeof lead, "L%d", i + 1);
        send_failed(fx_qualified(id, lead, SQL, T0 + 2 * MN), T0 + 2 * MN);
    }
    funnel_sla_reloads(sla, &loads, &rebuilds);
    cr_assert_eq(loads, loads0, "no policy version was added: none recompiled");
    cr_assert_eq(rebuilds, rebuilds0, "no timer was popped: no heap rebuild");
    /* Only the committed instance is open, and only it fires. */
    /* q0's, plus the undone reset's and starts' entries, stale. */
    cr_assert_eq(funnel_sla_timers(sla), 52);
    tick(T0 + 50 * MN);
    next_out("sla.warning");
    no_more_out();
    cr_assert_eq(funnel_sla_timers(sla), 1);
}

/* Routes env inside the open transaction under a savepoint, released or rolled back as ok says
 * (funneld's batch re-run), and frees it. */
static void send_guarded(funnel_envelope_t *env, int64_t now, bool ok)
{
    cr_assert_eq(fx_engine_route_guarded(&eng, env, now, !ok), 0);
}

static int64_t count_rows(const char *sql)
{
    return fx_sql_int(funnel_store_db(store), sql, NULL);
}

/* How often the engine read the last log row of a key from the store. */
static size_t log_reads(void)
{
    size_t log, held;
    funnel_sla_store_reads(sla, &log, &held);
    return log;
}

/* How often a start read the events held for it from the store. */
static size_t held_reads(void)
{
    size_t log, held;
    funnel_sla_store_reads(sla, &log, &held);
    return held;
}

/* A key's events find its last log row in memory: the store is read once per key. */
Test(sla, a_keys_last_log_row_is_read_from_the_store_once)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_touched("t1", "L1", T0 + MN));
    send(fx_touched("t2", "L1", T0 + 2 * MN));
    send(fx_contacted("c1", "L1", T0 + 3 * MN));
    send(fx_contacted("c2", "L2", T0 + 4 * MN)); /* never started: held */
    send(fx_touched("t3", "L2", T0 + 5 * MN));
    cr_assert_eq(log_reads(), 2, "one read for L1, one for L2");
    /* A touch that occurred before L1's stop is late, in memory as in the store. */
    send_at(fx_touched("t0", "L1", T0 + 2 * MN + 30000), T0 + 6 * MN);
    cr_assert_eq(log_reads(), 2);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log_all WHERE key = 'L1'"), 5);
    cr_assert_eq(count_rows("SELECT 1 FROM sla_instance WHERE key = 'L1' AND state = 'met'"), 1);
}

/* A start of a key with nothing held skips reading the held events; one with an event held
 * before it reads and applies them. */
Test(sla, a_start_reads_held_events_only_when_its_key_may_have_some)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    cr_assert_eq(held_reads(), 0, "L1 had nothing held");
    send(fx_contacted("c2", "L2", T0 + MN)); /* held: L2 has no start yet */
    send(fx_qualified("q2", "L2", SQL, T0));
    cr_assert_eq(held_reads(), 1);
    cr_assert_eq(count_rows("SELECT 1 FROM sla_instance WHERE key = 'L2' AND state = 'met'"), 1);
}

/* A key with a log keeps its later events in the log only: a start that arrives later and
 * occurred before them replays the log, and one that occurred after them takes none of them,
 * so holding them too would only cost writes. A key never started still holds its events. */
Test(sla, events_of_a_logged_key_are_logged_not_held)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 10 * MN));
    send(fx_contacted("c2", "L1", T0 + 40 * MN)); /* no live instance takes it */
    send(fx_contacted("c3", "L2", T0 + 40 * MN)); /* L2 never started */
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_held WHERE key = 'L1'"), 0);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_held WHERE key = 'L2'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log_all WHERE key = 'L1'"), 3);
    /* A second start between the first stop and c2, arriving last: c2 meets it. */
    send_at(fx_qualified("q2", "L1", SQL, T0 + 30 * MN), T0 + H);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE key = 'L1' AND"
                            " state = 'met' AND stop_event = 'c2'"),
                 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_held WHERE key = 'L1'"), 0);
}

/* An instance row stands for its start's and its stop's log rows (sla_log_all): a key's log
 * costs a write of its own only for the events no instance records; a recomputation writes the
 * rows out before it rewrites the instances. */
Test(sla, an_instance_row_stands_for_its_start_and_stop_in_the_log)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 10 * MN));
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log WHERE key = 'L1'"), 0);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log_all WHERE key = 'L1'"), 2);
    send(fx_touched("t1", "L1", T0 + 20 * MN)); /* after the stop: no instance records it */
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log WHERE key = 'L1'"), 1);
    send_at(fx_touched("t0", "L1", T0 + 5 * MN), T0 + H); /* a reset, late: recomputed */
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log WHERE key = 'L1'"), 4);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log_all WHERE key = 'L1'"), 4);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE key = 'L1' AND"
                            " state = 'met' AND started_at = 1780272300000 AND vlog = 0"),
                 1);
}

/* After a restart, memory knows no log row: a key whose log is only what its instance rows stand
 * for still tells a late event from the store. */
Test(sla, a_restart_reads_the_last_log_row_an_instance_row_stands_for)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 10 * MN));
    engine_close();
    engine_open();
    send_at(fx_touched("t0", "L1", T0 + 5 * MN), T0 + H); /* a reset before the stop */
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE key = 'L1' AND"
                            " state = 'met' AND started_at = 1780272300000"),
                 1);
}

/* A rollback may have undone log rows memory holds: the next event of the key reads the store,
 * and a start whose first attempt was undone still takes the events held for it. */
Test(sla, a_rollback_forgets_the_last_log_rows_in_memory)
{
    send(fx_contacted("c1", "L1", T0 + 10 * MN)); /* held */
    send_failed(fx_qualified("q1", "L1", SQL, T0), T0 + 11 * MN);
    size_t reads = log_reads();
    send_at(fx_qualified("q1", "L1", SQL, T0), T0 + 12 * MN);
    cr_assert_eq(log_reads(), reads + 1, "read again after the rollback");
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_log_all WHERE key = 'L1'"), 2);
    cr_assert_eq(count_rows("SELECT 1 FROM sla_instance WHERE key = 'L1' AND state = 'met'"), 1);
    next_out("sla.met");
    no_more_out();
}

Test(sla, batch_rollback_after_a_savepoint_rollback_restores_versions_and_count)
{
    funnel_engine_t engine;
    funnel_sla_hooks(sla, &engine);
    send(fx_qualified("q1", "L1", SQL, T0));
    /* A reload changes the policy; in one batch, a start stores version 2 (released), a later
     * event fails (savepoint rollback), then the whole batch rolls back. */
    funnel_sla_config_clear(&cfg);
    policy_set(POLICY_SQL, "2h");
    cr_assert_eq(funnel_store_begin(store), 0);
    send_guarded(fx_qualified("q2", "L2", SQL, T0 + MN), T0 + MN, true);
    send_guarded(fx_qualified("q3", "L3", SQL, T0 + MN), T0 + MN, false);
    cr_assert_eq(engine.open_items(sla), 2, "inside the batch q2 is open");
    funnel_store_rollback(store);
    funnel_router_rolled_back(router);
    cr_assert_eq(engine.open_items(sla), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_policy"), 1);
    /* The next start stores version 2 again instead of naming a row that is gone. */
    send(fx_qualified("q4", "L4", SQL, T0 + 2 * MN));
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_policy WHERE version = 2"), 1);
    cr_assert_eq(engine.open_items(sla), 2);
    fx_engine_out_clear(&eng);
    tick(T0 + 2 * MN + 105 * MN); /* q4's warning, 15 minutes before its 2h target */
    const Funnel__V1__SlaRef *ref = NULL;
    for (size_t i = 0; i < eng.n_out; i++)
        if (strcmp(eng.topic[i], "sla.warning") == 0 &&
            strcmp(eng.out[i]->sla_warning->sla->key, "L4") == 0)
            ref = eng.out[i]->sla_warning->sla;
    cr_assert_not_null(ref);
    cr_assert_eq(ref->policy_version, 2);
    cr_assert_eq(ref->due_at_ms, T0 + 2 * MN + 2 * H);
}

Test(sla, timer_rollback_restores_the_popped_timers)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    cr_assert_eq(funnel_store_begin(store), 0);
    cr_assert_eq(funnel_router_fire_timers(router, T0 + 45 * MN), 0);
    funnel_store_rollback(store);
    funnel_router_rolled_back(router);
    funnel_store_outbox_pending_clear(store);
    cr_assert_eq(funnel_router_next_deadline(router), T0 + 45 * MN, "the warning is due again");
    tick(T0 + 45 * MN);
    next_out("sla.warning");
    no_more_out();
}

Test(sla, bad_policies_are_refused)
{
    const char *bad[] = {
        "policies = ( { name = \"x\"; start = \"lead.nope\"; key = \"lead_id\"; stop = "
        "[\"lead.closed\"]; target = \"1h\"; } );",
        "policies = ( { name = \"x\"; start = \"lead.qualified stage=XQL\"; key = \"lead_id\"; "
        "stop = [\"lead.closed\"]; target = \"1h\"; } );",
        "policies = ( { name = \"x\"; start = \"lead.qualified\"; key = \"lead_id\"; "
        "stop = [\"lead.closed\"]; target = \"1h\"; calendar = \"nowhere\"; } );",
        "policies = ( { name = \"x\"; start = \"lead.qualified\"; key = \"lead_id\"; "
        "stop = []; target = \"1h\"; } );",
        "policies = ( { name = \"x\"; start = \"lead.qualified\"; key = \"lead_id\"; "
        "stop = [\"lead.closed\"]; target = \"1h\"; warning = \"150%\"; } );",
        "policies = ( { name = \"x\"; start = \"lead.qualified\"; key = \"lead_id\"; "
        "stop = [\"lead.closed\"]; target = \"1h\"; tagret = \"2h\"; } );",
        "quotas = ( { name = \"q\"; count = \"lead.qualified\"; period = \"year\"; "
        "minimum = 5; } );",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config_t lc;
        char text[1024], err[512] = "";
        funnel_sla_config_t c = {0};
        snprintf(text, sizeof text, "sla = { %s };", bad[i]);
        config_init(&lc);
        cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE);
        int rc = funnel_sla_config_parse(config_lookup(&lc, "sla"), &c, err, sizeof err);
        config_destroy(&lc);
        cr_assert_eq(rc, FUNNEL_ECONFIG, "accepted: %s", bad[i]);
        cr_assert_neq(err[0], '\0');
    }
}

/* ---- arrival order ------------------------------------------------------------------------ */

/* The instance rows whose key starts with prefix and opened at or after since, one line each
 * with the prefix cut off (so two runs under different prefixes compare), then how many held
 * events remain for the prefix. */
static void rows_since(const char *prefix, int64_t since, char *buf, size_t len)
{
    sqlite3 *db = funnel_store_db(store);
    sqlite3_stmt *s;
    size_t used = 0, plen = strlen(prefix);
    const char *sql[] = {
        "SELECT key, state, started_at, due_at, stopped_at, on_time, late_ms, consumed_ms,"
        " paused_at, opened_at FROM sla_instance WHERE substr(key, 1, ?2) = ?1"
        " AND opened_at >= ?3 ORDER BY key, opened_at",
        "SELECT 'held', count(*) FROM sla_held WHERE substr(key, 1, ?2) = ?1",
    };
    buf[0] = '\0';
    for (size_t q = 0; q < 2; q++) {
        cr_assert_eq(sqlite3_prepare_v2(db, sql[q], -1, &s, NULL), SQLITE_OK, "%s",
                     sqlite3_errmsg(db));
        sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 2, (int)plen);
        if (q == 0)
            sqlite3_bind_int64(s, 3, since);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *key = (const char *)sqlite3_column_text(s, 0);
            used += (size_t)snprintf(buf + used, len - used, "%s", q ? key : key + plen);
            for (int c = 1; c < sqlite3_column_count(s); c++) {
                const unsigned char *v = sqlite3_column_text(s, c);
                used += (size_t)snprintf(buf + used, len - used, " %s", v ? (const char *)v : "-");
            }
            used += (size_t)snprintf(buf + used, len - used, "\n");
            cr_assert_lt(used, len);
        }
        cr_assert_eq(rc, SQLITE_DONE, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(s);
    }
}

/* Every instance row of the keys starting with prefix (see rows_since). */
static void rows_of(const char *prefix, char *buf, size_t len)
{
    rows_since(prefix, INT64_MIN, buf, len);
}

/* The rows of the instances opened at or after since under prefixes a and b are the same. */
static void expect_same_rows_since(const char *a, const char *b, int64_t since)
{
    char ra[8192], rb[8192];
    rows_since(a, since, ra, sizeof ra);
    rows_since(b, since, rb, sizeof rb);
    /* Two empty results are equal too: the reference must hold instances to prove anything. */
    cr_assert(strncmp(ra, "held ", 5) != 0, "%s has no instance rows", a);
    cr_assert_str_eq(ra, rb, "%s:\n%s\n%s:\n%s", a, ra, b, rb);
}

static void expect_same_rows(const char *a, const char *b)
{
    expect_same_rows_since(a, b, INT64_MIN);
}

/* The compliance the engine keeps as it goes (sla_compliance) is exact: a report from it equals
 * the report from every instance, by owner and by policy, per week and not, with the states of
 * the clock now; and its rows are those a fill from the instances (migration 11) makes. */
static void expect_kept_compliance_exact(int64_t now)
{
    static const char *const by[] = {"owner", "policy"};
    for (int k = 0; k < 4; k++) {
        funnel_report_compliance_t *kept = NULL, *scan = NULL;
        cr_assert_eq(
            funnel_report_compliance(store, by[k / 2], k % 2, INT64_MIN, INT64_MAX, now, &kept), 0);
        cr_assert_eq(funnel_report_compliance_scan(store, by[k / 2], k % 2, INT64_MIN, INT64_MAX,
                                                   now, &scan),
                     0);
        cr_assert_eq(kept->n, scan->n, "%s: %zu rows, %zu scanned", by[k / 2], kept->n, scan->n);
        cr_assert_eq(kept->valid_until_ms, scan->valid_until_ms);
        for (size_t i = 0; i < kept->n; i++) {
            const funnel_report_compliance_row_t *a = &kept->rows[i], *b = &scan->rows[i];
            cr_assert_str_eq(a->group, b->group);
            int64_t fa[] = {a->week_ms, a->instances, a->met_on_time, a->met_late,
                            a->open,    a->breached,  a->median_ms,   a->p90_ms};
            int64_t fb[] = {b->week_ms, b->instances, b->met_on_time, b->met_late,
                            b->open,    b->breached,  b->median_ms,   b->p90_ms};
            for (size_t f = 0; f < sizeof fa / sizeof fa[0]; f++)
                cr_assert_eq(fa[f], fb[f], "%s %s field %zu: kept %lld, scanned %lld", by[k / 2],
                             a->group, f, (long long)fa[f], (long long)fb[f]);
        }
        funnel_report_compliance_free(&kept);
        funnel_report_compliance_free(&scan);
    }
    static const char fill[] =
        "SELECT day, policy, owner, sum(on_time AND NOT x), sum(NOT on_time AND NOT x),"
        " sla_times_of(t), sum(x) FROM (SELECT opened_at - (opened_at % 86400000 + 86400000) %"
        " 86400000 AS day, policy, owner, coalesce(on_time, 0) <> 0 AS on_time, stop_event IS"
        " NULL AS x, CASE WHEN stop_event IS NOT NULL THEN stop_business_ms END AS t"
        " FROM sla_instance WHERE state = 'met') GROUP BY 1, 2, 3";
    char sql[sizeof fill * 2 + 200];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM (SELECT * FROM (%s) EXCEPT SELECT * FROM"
             " sla_compliance)) + (SELECT count(*) FROM (SELECT * FROM sla_compliance EXCEPT"
             " SELECT * FROM (%s)))",
             fill, fill);
    cr_assert_eq(count_rows(sql), 0, "sla_compliance is not what its instances make");
}

/* sla.met of the given key among the unseen outputs. */
static funnel_envelope_t *met_of(const char *key)
{
    for (size_t i = eng.seen; i < eng.n_out; i++)
        if (strcmp(eng.topic[i], "sla.met") == 0 && strcmp(eng.out[i]->sla_met->sla->key, key) == 0)
            return eng.out[i];
    cr_assert_fail("no sla.met for %s", key);
    return NULL;
}

static void expect_same_met(const char *a, const char *b, bool on_time, int64_t late_ms)
{
    funnel_envelope_t *ma = met_of(a), *mb = met_of(b);
    cr_assert_eq(ma->sla_met->on_time, on_time, "%s", a);
    cr_assert_eq(ma->sla_met->late_ms, late_ms, "%s", a);
    cr_assert_eq(mb->sla_met->on_time, on_time, "%s", b);
    cr_assert_eq(mb->sla_met->late_ms, late_ms, "%s", b);
    cr_assert_eq(ma->occurred_at_ms, mb->occurred_at_ms);
    cr_assert_eq(ma->sla_met->sla->due_at_ms, mb->sla_met->sla->due_at_ms);
}

Test(sla, stop_before_start_in_either_order_is_the_same)
{
    /* On time (30m of 1h) and late (2h: 1h late), each in order (a) and stop first (b). */
    int64_t stops[2] = {30 * MN, 2 * H};
    for (int i = 0; i < 2; i++) {
        char a[16], b[16], id[4][16];
        snprintf(a, sizeof a, "a%d", i);
        snprintf(b, sizeof b, "b%d", i);
        for (int k = 0; k < 4; k++)
            snprintf(id[k], sizeof id[k], "e%d-%d", i, k);
        int64_t now = T0 + 3 * H; /* both arrive after the fact: no timer pass in between */
        send_at(fx_qualified(id[0], a, SQL, T0), now);
        send_at(fx_contacted(id[1], a, T0 + stops[i]), now);
        send_at(fx_contacted(id[2], b, T0 + stops[i]), now);
        send_at(fx_qualified(id[3], b, SQL, T0), now);
        expect_same_met(a, b, i == 0, i == 0 ? 0 : H);
        expect_same_rows(a, b);
    }
    eng.seen = eng.n_out;
    tick(T0 + 100 * H);
    no_more_out(); /* no warning or escalation ever, for either order */
    cr_assert_eq(funnel_router_next_deadline(router), INT64_MAX);
}

Test(sla, held_stop_from_before_the_start_does_not_meet_it)
{
    send(fx_contacted("c0", "L1", T0 - 10 * MN));
    send(fx_qualified("q1", "L1", SQL, T0));
    no_more_out();
    tick(T0 + 45 * MN);
    cr_assert_eq(next_out("sla.warning")->sla_warning->sla->due_at_ms, T0 + H);
    /* Arriving after the start changes nothing either: it is not this instance's. */
    send(fx_contacted("c1", "L1", T0 - 5 * MN));
    no_more_out();
    send(fx_contacted("c2", "L1", T0 + 50 * MN));
    cr_assert_str_eq(next_out("sla.met")->sla_met->stop_event_id, "c2");
}

Test(sla, pause_resume_and_reset_before_start)
{
    int64_t now = T0 + 10 * MN; /* everything below arrives before any of it is due */
    /* Paused from 20m to 3h: 40 minutes left at 3h, due 3h40m; stop at 3h30m is on time. */
    send_at(fx_qualified("a-q", "a", SQL, T0), now);
    send_at(fx_closed("a-p", "a", FUNNEL__V1__OUTCOME__LOST, T0 + 20 * MN), now);
    send_at(fx_qualified("a-r", "a", MQL, T0 + 3 * H), now);
    send_at(fx_contacted("a-c", "a", T0 + 3 * H + 30 * MN), now);
    send_at(fx_contacted("b-c", "b", T0 + 3 * H + 30 * MN), now);
    send_at(fx_qualified("b-r", "b", MQL, T0 + 3 * H), now);
    send_at(fx_closed("b-p", "b", FUNNEL__V1__OUTCOME__LOST, T0 + 20 * MN), now);
    send_at(fx_qualified("b-q", "b", SQL, T0), now);
    expect_same_met("a", "b", true, 0);
    cr_assert_eq(met_of("b")->sla_met->sla->due_at_ms, T0 + 3 * H + 40 * MN);
    expect_same_rows("a", "b");
    eng.seen = eng.n_out;
    /* A reset held for the start restarts its clock: due 1h after the touch. */
    send_at(fx_touched("c-t", "c", T0 + H + 10 * MN), now);
    send_at(fx_qualified("c-q", "c", SQL, T0), now);
    /* The first clock's steps due before the touch come out as the start is applied. */
    cr_assert_eq(next_out("sla.warning")->occurred_at_ms, T0 + 45 * MN);
    expect_escalation(T0 + H, 1, "team-lead", 0);
    tick(T0 + 2 * H + 10 * MN);
    funnel_envelope_t *w = next_out("sla.warning");
    cr_assert_str_eq(w->sla_warning->sla->key, "c");
    cr_assert_eq(w->sla_warning->sla->started_at_ms, T0 + H + 10 * MN);
    cr_assert_eq(w->occurred_at_ms, T0 + H + 55 * MN);
    expect_escalation(T0 + 2 * H + 10 * MN, 1, "team-lead", 0);
    no_more_out();
}

Test(sla, start_arriving_late_fires_overdue_steps_with_their_times)
{
    send_at(fx_qualified("q1", "L1", SQL, T0), T0 + 10 * H);
    no_more_out();
    /* Every step is overdue: the timer waits the late grace after the arrival. */
    cr_assert_eq(funnel_router_next_deadline(router), T0 + 10 * H + FUNNEL_SLA_LATE_GRACE_MS);
    tick(T0 + 10 * H + FUNNEL_SLA_LATE_GRACE_MS);
    expect_every_step_of_t0();
}

Test(sla, held_events_are_idempotent_and_survive_rollback)
{
    /* A batch that held an event and was rolled back holds nothing; run again, it holds once. */
    funnel_envelope_t *env = fx_contacted("c1", "L1", T0 + 30 * MN);
    size_t len;
    uint8_t *raw = fx_pack(env, &len);
    cr_assert_eq(funnel_store_begin(store), 0);
    cr_assert_eq(funnel_router_apply(router, env, "lead.contacted", raw, len, T0 + H), 0);
    funnel_store_rollback(store);
    funnel_router_rolled_back(router);
    char rows[512];
    rows_of("L", rows, sizeof rows);
    cr_assert_str_eq(rows, "held 0\n");
    send_at(env, T0 + H);
    /* A duplicate is refused by the router; the same stop again changes nothing. */
    env = fx_contacted("c1", "L1", T0 + 30 * MN);
    raw = (free(raw), fx_pack(env, &len));
    cr_assert_eq(funnel_store_begin(store), 0);
    cr_assert_eq(funnel_router_apply(router, env, "lead.contacted", raw, len, T0 + H), FUNNEL_EDUP);
    cr_assert_eq(funnel_store_commit(store), 0);
    free(raw);
    funnel_envelope_free(&env);
    rows_of("L", rows, sizeof rows);
    cr_assert_str_eq(rows, "held 1\n");
    send_at(fx_qualified("q1", "L1", SQL, T0), T0 + H);
    cr_assert(next_out("sla.met")->sla_met->on_time);
    no_more_out();
    rows_of("L", rows, sizeof rows);
    cr_assert(strstr(rows, "held 0\n"), "%s", rows);
    cr_assert_eq(funnel_sla_timers(sla), 0, "a start met at once arms no timer");
}

Test(sla, held_events_expire_after_the_retention)
{
    send_at(fx_contacted("c1", "L1", T0), T0);
    /* A later hold, past the retention, drops it: the start then opens an instance. */
    send_at(fx_contacted("c2", "L2", T0 + FUNNEL_SLA_HOLD_MS + H), T0 + FUNNEL_SLA_HOLD_MS + H);
    send_at(fx_qualified("q1", "L1", SQL, T0 - MN), T0 + FUNNEL_SLA_HOLD_MS + H);
    no_more_out();
    char rows[512];
    rows_of("L1", rows, sizeof rows);
    cr_assert(strstr(rows, " open ") && strstr(rows, "held 0\n"), "%s", rows);
}

/* One key's events in event-time order: a stop from before the start (never this instance's),
 * the start, a pause, a resume, sometimes a reset, sometimes the stop. */
#define PROP_KEYS   4
#define PROP_EVENTS 6
typedef struct prop_ev {
    int key, kind; /* kind: 0 early stop, 1 start, 2 pause, 3 resume, 4 reset, 5 stop */
    int64_t at;
} prop_ev_t;

static uint32_t prop_rand(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u; /* a local LCG: a seed replays exactly */
    return *state >> 8;
}

static size_t prop_stream(uint32_t *rnd, prop_ev_t *ev)
{
    size_t n = 0;
    for (int k = 0; k < PROP_KEYS; k++) {
        int64_t s = T0 + k * 7 * MN, at = s;
        ev[n++] = (prop_ev_t){k, 0, s - 5 * MN};
        ev[n++] = (prop_ev_t){k, 1, s};
        for (int kind = 2; kind <= 5; kind++) {
            at += (5 + (int64_t)(prop_rand(rnd) % 120)) * MN;
            if (kind < 4 || prop_rand(rnd) % 3)
                ev[n++] = (prop_ev_t){k, kind, at};
        }
    }
    return n;
}

/* The event of kind (see prop_ev_t) for key, as the test policies read it. */
static funnel_envelope_t *kind_event(int kind, const char *id, const char *key, int64_t at)
{
    return kind == 1   ? fx_qualified(id, key, SQL, at)
           : kind == 2 ? fx_closed(id, key, FUNNEL__V1__OUTCOME__LOST, at)
           : kind == 3 ? fx_qualified(id, key, MQL, at)
           : kind == 4 ? fx_touched(id, key, at)
                       : fx_contacted(id, key, at);
}

static void prop_send(const char *prefix, const prop_ev_t *e, int i)
{
    char id[32], key[32];
    snprintf(id, sizeof id, "%s-%d", prefix, i);
    snprintf(key, sizeof key, "%s%d", prefix, e->key);
    /* one arrival time for all: no timer pass between events */
    send_at(kind_event(e->kind, id, key, e->at), T0 + 24 * H);
}

Test(sla, any_arrival_order_ends_in_the_same_instances)
{
    for (uint32_t seed = 1; seed <= 12; seed++) {
        prop_ev_t ev[PROP_KEYS * PROP_EVENTS];
        uint32_t rnd = seed;
        size_t n = prop_stream(&rnd, ev);
        char in_order[16], shuffled[16];
        snprintf(in_order, sizeof in_order, "o%u-", seed);
        snprintf(shuffled, sizeof shuffled, "s%u-", seed);
        for (size_t i = 0; i < n; i++)
            prop_send(in_order, &ev[i], (int)i);
        /* Per key, a random part of its events (those that occurred first) arrives before its
         * start in any order (Fisher-Yates), the rest after it in event-time order: the engine
         * reconciles events that arrive before their start, not a live instance's events among
         * themselves. Keys interleave at random. */
        prop_ev_t per[PROP_KEYS][PROP_EVENTS], starts[PROP_KEYS], arr[PROP_KEYS * PROP_EVENTS];
        size_t len[PROP_KEYS] = {0}, next[PROP_KEYS] = {0};
        for (size_t i = 0; i < n; i++)
            if (ev[i].kind == 1)
                starts[ev[i].key] = ev[i];
            else
                per[ev[i].key][len[ev[i].key]++] = ev[i];
        for (int k = 0; k < PROP_KEYS; k++) {
            size_t cut = prop_rand(&rnd) % (len[k] + 1);
            for (size_t i = cut; i-- > 1;) {
                size_t j = prop_rand(&rnd) % (i + 1);
                prop_ev_t t = per[k][i];
                per[k][i] = per[k][j];
                per[k][j] = t;
            }
            memmove(&per[k][cut + 1], &per[k][cut], (len[k] - cut) * sizeof per[k][0]);
            per[k][cut] = starts[k];
            len[k]++;
        }
        for (size_t i = 0; i < n;) {
            int k = (int)(prop_rand(&rnd) % PROP_KEYS);
            if (next[k] < len[k])
                arr[i++] = per[k][next[k]++];
        }
        for (size_t i = 0; i < n; i++)
            prop_send(shuffled, &arr[i], (int)i);
        expect_same_rows(in_order, shuffled);
        expect_kept_compliance_exact(T0 + 24 * H);
    }
}

/* Every event of every key, starts included, in any order: several instances per key (a start
 * while one is live is a repeated start), pauses, resumes, resets and stops at random. Timers
 * run between arrivals of the shuffled run, so recomputations meet instances with published
 * steps. The final instance rows and held events must be those of event-time order. */
#define ALL_KEYS   4
#define ALL_EVENTS 12
Test(sla, any_arrival_order_of_all_events_ends_in_the_same_instances)
{
    for (uint32_t seed = 1; seed <= 16; seed++) {
        prop_ev_t ev[ALL_KEYS * ALL_EVENTS];
        uint32_t rnd = seed * 7919u;
        size_t n = 0;
        for (int k = 0; k < ALL_KEYS; k++) {
            int64_t at = T0 + k * 3 * MN;
            for (int i = 0; i < ALL_EVENTS; i++, at += (1 + (int64_t)(prop_rand(&rnd) % 90)) * MN)
                ev[n++] = (prop_ev_t){
                    k, i == 0 || prop_rand(&rnd) % 4 == 0 ? 1 : 2 + (int)(prop_rand(&rnd) % 4), at};
        }
        char in_order[16], shuffled[16];
        snprintf(in_order, sizeof in_order, "O%u-", seed);
        snprintf(shuffled, sizeof shuffled, "S%u-", seed);
        for (size_t i = 0; i < n; i++)
            prop_send(in_order, &ev[i], (int)i);
        for (size_t i = n; i-- > 1;) {
            size_t j = prop_rand(&rnd) % (i + 1);
            prop_ev_t t = ev[i];
            ev[i] = ev[j];
            ev[j] = t;
        }
        fx_engine_out_clear(&eng);
        for (size_t i = 0; i < n; i++) {
            prop_send(shuffled, &ev[i], (int)i);
            tick(T0 + 24 * H);
        }
        expect_same_rows(in_order, shuffled);
        expect_kept_compliance_exact(T0 + (int64_t)seed * H);
        /* One sla.met per instance, however often it was recomputed. */
        for (size_t i = 0; i < eng.n_out; i++)
            for (size_t j = i + 1; j < eng.n_out; j++)
                cr_assert(
                    strcmp(eng.topic[i], "sla.met") || strcmp(eng.topic[j], "sla.met") ||
                        strcmp(eng.out[i]->sla_met->sla->sla_id, eng.out[j]->sla_met->sla->sla_id),
                    "seed %u: two sla.met for one instance", seed);
        fx_engine_out_clear(&eng);
    }
}

Test(sla, pause_arriving_after_a_later_resume_is_reconciled)
{
    /* The pause last (b) and in order (a): paused 20m..3h, due 3h40m, stop at 3h30m on time. */
    send(fx_qualified("b-q", "b", SQL, T0));
    tick(T0 + H);
    eng.seen = eng.n_out; /* b: warning and level 1 went out; a is paused */
    send_at(fx_qualified("b-r", "b", MQL, T0 + 3 * H), T0 + 3 * H);
    /* The steps due before the resume come out with it, as the clock would have fired them. */
    expect_escalation(T0 + H + 30 * MN, 2, "head-of-sales", 0);
    expect_escalation(T0 + 2 * H + 30 * MN, 2, "head-of-sales", 1);
    send_at(fx_closed("b-p", "b", FUNNEL__V1__OUTCOME__LOST, T0 + 20 * MN), T0 + 3 * H);
    no_more_out();
    /* b keeps its published steps: the next one is the last repeat, 2h30m after the new due
     * time (3h40m). */
    tick(T0 + 6 * H + 9 * MN);
    no_more_out();
    tick(T0 + 6 * H + 10 * MN);
    funnel_envelope_t *e = next_out("sla.escalation");
    cr_assert_str_eq(e->sla_escalation->sla->key, "b");
    cr_assert_eq(e->occurred_at_ms, T0 + 6 * H + 10 * MN);
    cr_assert_eq(e->sla_escalation->level, 2);
    cr_assert_eq(e->sla_escalation->repeat, 2);
    cr_assert_eq(e->sla_escalation->sla->due_at_ms, T0 + 3 * H + 40 * MN);
    no_more_out();
    send(fx_qualified("a-q", "a", SQL, T0));
    send(fx_closed("a-p", "a", FUNNEL__V1__OUTCOME__LOST, T0 + 20 * MN));
    send(fx_qualified("a-r", "a", MQL, T0 + 3 * H));
    send(fx_contacted("a-c", "a", T0 + 3 * H + 30 * MN));
    send_at(fx_contacted("b-c", "b", T0 + 3 * H + 30 * MN), T0 + 5 * H);
    expect_same_met("a", "b", true, 0);
    expect_same_rows("a", "b");
}

Test(sla, second_start_arriving_before_the_first_is_reconciled)
{
    /* a in order: the start at 2h is a repeated start of the instance opened at 0. */
    send_at(fx_qualified("a-1", "a", SQL, T0), T0 + 3 * H);
    send_at(fx_qualified("a-2", "a", SQL, T0 + 2 * H), T0 + 3 * H);
    send_at(fx_qualified("b-2", "b", SQL, T0 + 2 * H), T0 + 3 * H);
    send_at(fx_qualified("b-1", "b", SQL, T0), T0 + 3 * H);
    expect_same_rows("a", "b");
    char rows[512], want[128];
    rows_of("b", rows, sizeof rows);
    snprintf(want, sizeof want, " open %lld %lld - - - 0 - %lld\nheld 0\n", (long long)T0,
             (long long)(T0 + H), (long long)T0);
    cr_assert_str_eq(rows, want, "one instance, opened by the first start");
    /* The met instance in between: stops at 30m and 2h30m meet one instance each. */
    send_at(fx_qualified("c-2", "c", SQL, T0 + 2 * H), T0 + 3 * H);
    send_at(fx_contacted("c-s2", "c", T0 + 2 * H + 30 * MN), T0 + 3 * H);
    send_at(fx_contacted("c-s1", "c", T0 + 30 * MN), T0 + 3 * H);
    send_at(fx_qualified("c-1", "c", SQL, T0), T0 + 3 * H);
    send_at(fx_qualified("d-1", "d", SQL, T0), T0 + 3 * H);
    send_at(fx_contacted("d-s1", "d", T0 + 30 * MN), T0 + 3 * H);
    send_at(fx_qualified("d-2", "d", SQL, T0 + 2 * H), T0 + 3 * H);
    send_at(fx_contacted("d-s2", "d", T0 + 2 * H + 30 * MN), T0 + 3 * H);
    expect_same_rows("c", "d");
}

Test(sla, instances_from_before_the_log_keep_the_live_path)
{
    /* An instance as migration 2 left it: its start is in no log, so it cannot be replayed. */
    send(fx_qualified("q0", "P", SQL, T0));
    char *err = NULL;
    cr_assert_eq(sqlite3_exec(funnel_store_db(store),
                              "DELETE FROM sla_log; UPDATE sla_instance SET vlog = 0", NULL, NULL,
                              &err),
                 SQLITE_OK, "%s", err);
    /* A repeated start logs the key; a pause that occurred before it then arrives late. */
    send_at(fx_qualified("q1", "P", SQL, T0 + 2 * H), T0 + 2 * H);
    send_at(fx_closed("p1", "P", FUNNEL__V1__OUTCOME__LOST, T0 + H), T0 + 2 * H);
    char rows[512], want[128];
    rows_of("P", rows, sizeof rows);
    snprintf(want, sizeof want, " paused %lld %lld - - - %lld %lld %lld\nheld 0\n", (long long)T0,
             (long long)(T0 + H), (long long)H, (long long)(T0 + H), (long long)T0);
    cr_assert_str_eq(rows, want, "the old instance is kept and paused");
}

/* ---- quotas ----------------------------------------------------------------------------- */

static void quota_set(void)
{
    funnel_sla_config_clear(&cfg);
    cfg_set("quotas = ( { name = \"mql_week\"; count = \"lead.qualified stage=MQL\";"
            " period = \"week\"; calendar = \"24x7\"; minimum = 4; pace = \"50%\"; } );");
}

Test(sla, quota_pace_warning_and_missed_week)
{
    quota_set();
    tick(T0 + H); /* the quota's first run opens the week of Jun 1 */
    send(fx_qualified("m1", "L1", MQL, T0 + 2 * H));
    send(fx_qualified("s1", "L2", SQL, T0 + 3 * H)); /* not an MQL: not counted */
    tick(T0 + 3 * 24 * H + 12 * H);                  /* Thursday noon: half the week */
    funnel_envelope_t *p = next_out("sla.quota_missed");
    cr_assert(p->sla_quota_missed->pace);
    cr_assert_eq(p->sla_quota_missed->actual, 1);
    cr_assert_eq(p->sla_quota_missed->minimum, 2);
    cr_assert_eq(p->occurred_at_ms, T0 + 3 * 24 * H + 12 * H);
    no_more_out();
    /* A late MQL that occurred in the week still counts before the week ends. */
    send(fx_qualified("m2", "L3", MQL, T0 + 4 * 24 * H));
    tick(T0 + 7 * 24 * H);
    funnel_envelope_t *m = next_out("sla.quota_missed");
    cr_assert_not(m->sla_quota_missed->pace);
    cr_assert_str_eq(m->sla_quota_missed->policy, "mql_week");
    cr_assert_eq(m->sla_quota_missed->period_start_ms, T0);
    cr_assert_eq(m->sla_quota_missed->period_end_ms, T0 + 7 * 24 * H);
    cr_assert_eq(m->sla_quota_missed->minimum, 4);
    cr_assert_eq(m->sla_quota_missed->actual, 2);
    no_more_out();
}

Test(sla, quota_met_is_silent_and_empty_weeks_after_downtime_still_report)
{
    quota_set();
    tick(T0);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", i);
        send(fx_qualified(id, id, MQL, T0 + (i + 1) * H));
    }
    tick(T0 + 7 * 24 * H);
    no_more_out();
    /* Down for two weeks: both empty weeks report, each at its own end. */
    engine_close();
    engine_open();
    tick(T0 + 21 * 24 * H + H);
    int64_t ends[2] = {T0 + 14 * 24 * H, T0 + 21 * 24 * H};
    for (int i = 0; i < 2; i++) {
        funnel_envelope_t *m = next_out("sla.quota_missed");
        if (m->sla_quota_missed->pace)
            m = next_out("sla.quota_missed");
        cr_assert_eq(m->occurred_at_ms, ends[i]);
        cr_assert_eq(m->sla_quota_missed->actual, 0);
    }
}

/* ---- steps due between the events of one batch ------------------------------------------ */

/* Mon 2026-11-02 00:00 UTC (CET, UTC+1, from Oct 25) and the arrival time of the bursts. */
static const int64_t NOV2 = T0 + 154 * 24 * H;
#define BURST_AT (NOV2 + 29 * 24 * H)

/* Berlin, 09:00-13:00 and 14:00-18:00; 8h target, warning 2h before, a level at the due time. */
static void berlin_policy(void)
{
    funnel_sla_config_clear(&cfg);
    cfg_set("calendars = { berlin = { time_zone = \"Europe/Berlin\";"
            " weekdays = [\"09:00-13:00\", \"14:00-18:00\"]; }; };"
            "policies = ( { name = \"first_call\"; start = \"lead.qualified stage=SQL\";"
            " key = \"lead_id\"; stop = [\"lead.contacted\"]; reset = [\"lead.touched\"];"
            " pause = [\"lead.closed outcome=LOST\"]; resume = [\"lead.qualified stage=MQL\"];"
            " target = \"8h\"; calendar = \"berlin\"; warning = \"2h\";"
            " escalation = ( { after = \"0\"; notify = \"team-lead\"; } ); } );");
    engine_close();
    engine_open();
}

typedef struct step_ev {
    int kind; /* as prop_ev_t */
    int64_t at;
} step_ev_t;

/* Routes the events in one transaction arriving at now, as one funneld batch does. */
static void send_batch(const char *key, const step_ev_t *ev, const size_t *order, size_t n,
                       int64_t now)
{
    cr_assert_eq(funnel_store_begin(store), 0);
    for (size_t i = 0; i < n; i++) {
        char id[80];
        size_t len;
        snprintf(id, sizeof id, "%s-%zu", key, order[i]);
        funnel_envelope_t *env = kind_event(ev[order[i]].kind, id, key, ev[order[i]].at);
        uint8_t *raw = fx_pack(env, &len);
        int rc = funnel_router_apply(router, env, funnel_topic_name(env->body_case), raw, len, now);
        cr_assert_eq(rc, 0, "%s: %s", funnel_strerror(rc), funnel_store_errmsg(store));
        free(raw);
        funnel_envelope_free(&env);
    }
    cr_assert_eq(funnel_store_commit(store), 0);
    fx_engine_collect(&eng);
}

/* The SlaRef of an instance output. */
static const Funnel__V1__SlaRef *ref_of(const funnel_envelope_t *e)
{
    return e->body_case == FUNNEL__V1__ENVELOPE__BODY_SLA_WARNING      ? e->sla_warning->sla
           : e->body_case == FUNNEL__V1__ENVELOPE__BODY_SLA_ESCALATION ? e->sla_escalation->sla
                                                                       : e->sla_met->sla;
}

/* Appends one output's line to buf: topic, time, level, clock start, due time. */
static void line_add(char *buf, size_t len, const char *topic, int64_t at, int level,
                     int64_t started, int64_t due)
{
    size_t used = strlen(buf);
    used += (size_t)snprintf(buf + used, len - used, "%s %lld level %d started %lld due %lld\n",
                             topic, (long long)at, level, (long long)started, (long long)due);
    cr_assert_lt(used, len);
}

/* The lines of every collected output of key, in publish order. */
static void outputs_of(const char *key, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t i = 0; i < eng.n_out; i++) {
        if (!strcmp(eng.topic[i], "sla.quota_missed") || strcmp(ref_of(eng.out[i])->key, key))
            continue;
        const Funnel__V1__SlaRef *r = ref_of(eng.out[i]);
        int level = !strcmp(eng.topic[i], "sla.escalation") ? eng.out[i]->sla_escalation->level : 0;
        line_add(buf, len, eng.topic[i], eng.out[i]->occurred_at_ms, level, r->started_at_ms,
                 r->due_at_ms);
    }
}

/* The lines of a clock's warning and its level at the due time. */
static void clock_lines(char *buf, size_t len, int64_t warn, int64_t started, int64_t due)
{
    line_add(buf, len, "sla.warning", warn, 0, started, due);
    line_add(buf, len, "sla.escalation", due, 1, started, due);
}

/* Runs the events (in event-time order) one at a time with the clock running between them,
 * then in one batch arriving later in every order, and expects the same outputs each time:
 * `want`. */
static void expect_batching_does_not_matter(const char *name, const step_ev_t *ev, size_t n,
                                            const char *want)
{
    char key[32], got[2048];
    size_t order[8], perms = 1;
    for (size_t i = 2; i <= n; i++)
        perms *= i;
    snprintf(key, sizeof key, "%s-live", name);
    for (size_t i = 0; i < n; i++) {
        char id[80];
        snprintf(id, sizeof id, "%s-%zu", key, i);
        tick(ev[i].at - 1);
        send_at(kind_event(ev[i].kind, id, key, ev[i].at), ev[i].at);
    }
    tick(BURST_AT);
    outputs_of(key, got, sizeof got);
    cr_assert_str_eq(got, want, "%s one at a time", name);
    for (size_t k = 0; k < perms; k++) {
        fx_permutation(n, k, order);
        snprintf(key, sizeof key, "%s-b%zu", name, k);
        send_batch(key, ev, order, n, BURST_AT);
        tick(BURST_AT + FUNNEL_SLA_LATE_GRACE_MS); /* the steps after the last event: late grace */
        outputs_of(key, got, sizeof got);
        cr_assert_str_eq(got, want, "%s in one batch, order %zu%zu%zu", name, order[0],
                         n > 1 ? order[1] : 0, n > 2 ? order[2] : 0);
    }
}

Test(sla, steps_due_between_events_of_a_batch_come_out_at_their_times)
{
    berlin_policy();
    char want[1024] = "";
    int64_t start = NOV2 + 10 * H, warn = NOV2 + 17 * H, due = NOV2 + 34 * H;
    /* Mon 11:00 CET start, 18:10 pause, 23:10 resume: warning Mon 18:00, due Tue 11:00. */
    step_ev_t pause_resume[] = {
        {1, start}, {2, NOV2 + 17 * H + 10 * MN}, {3, NOV2 + 22 * H + 10 * MN}};
    clock_lines(want, sizeof want, warn, start, due);
    expect_batching_does_not_matter("pr", pause_resume, 3, want);
    /* The same without the resume: the warning, and nothing more. */
    want[0] = '\0';
    line_add(want, sizeof want, "sla.warning", warn, 0, start, due);
    expect_batching_does_not_matter("p", pause_resume, 2, want);
    /* Mon Nov 9 09:00 CET start, reset Tue 00:01: both clocks' warning and level. */
    int64_t nov9 = NOV2 + 7 * 24 * H, reset = nov9 + 23 * H + MN;
    step_ev_t resets[] = {{1, nov9 + 8 * H}, {4, reset}};
    want[0] = '\0';
    clock_lines(want, sizeof want, nov9 + 15 * H, nov9 + 8 * H, nov9 + 17 * H);
    clock_lines(want, sizeof want, nov9 + 39 * H, reset, nov9 + 41 * H);
    expect_batching_does_not_matter("r", resets, 2, want);
}

/* ---- the late grace (README, "Late grace") ------------------------------------------------ */

/* A year after NOV2: a backfill's arrival time, when every step of its instances is due. */
#define BACKFILL_AT (NOV2 + 365 * 24 * H)
#define GRACE       FUNNEL_SLA_LATE_GRACE_MS

/* Mon Nov 2 11:00 CET start (warning Mon 18:00, due Tue 11:00) and its stop at 13:00, on time. */
static const step_ev_t backfill[] = {{1, NOV2 + 10 * H}, {0, NOV2 + 12 * H}};

/* The stop only: what the stream publishes when no step is moot. */
static void met_line(char *want, size_t len)
{
    want[0] = '\0';
    line_add(want, len, "sla.met", NOV2 + 12 * H, 0, NOV2 + 10 * H, NOV2 + 34 * H);
}

Test(sla, a_timer_pass_within_the_grace_between_two_batches_of_a_backfill_changes_nothing)
{
    berlin_policy();
    static const size_t order[] = {0, 1};
    char got[1024], want[256];
    met_line(want, sizeof want);
    /* One batch. */
    send_batch("one", backfill, order, 2, BACKFILL_AT);
    tick(BACKFILL_AT + GRACE);
    outputs_of("one", got, sizeof got);
    cr_assert_str_eq(got, want, "one batch");
    /* The start, a timer pass 30 s later (every step is due by then), then the stop. */
    send_batch("two", backfill, order, 1, BACKFILL_AT);
    tick(BACKFILL_AT + GRACE / 2);
    send_batch("two", backfill, order + 1, 1, BACKFILL_AT + GRACE * 3 / 4);
    tick(BACKFILL_AT + 10 * GRACE);
    outputs_of("two", got, sizeof got);
    cr_assert_str_eq(got, want, "two batches with a timer pass between them");
}

Test(sla, steps_of_a_backfill_fire_at_their_due_times_once_the_grace_has_passed)
{
    berlin_policy();
    static const size_t order[] = {0};
    char got[1024], want[256] = "";
    send_batch("g", backfill, order, 1, BACKFILL_AT);
    tick(BACKFILL_AT + GRACE - 1);
    outputs_of("g", got, sizeof got);
    cr_assert_str_eq(got, "", "nothing before the grace has passed");
    tick(BACKFILL_AT + GRACE);
    outputs_of("g", got, sizeof got);
    clock_lines(want, sizeof want, NOV2 + 17 * H, NOV2 + 10 * H, NOV2 + 34 * H);
    cr_assert_str_eq(got, want, "every step, dated at its due time");
    /* Another event of the key is a change: its steps wait the grace again from its arrival. */
    send_batch("h", backfill, order, 1, BACKFILL_AT);
    send_at(kind_event(2, "h-pause", "h", NOV2 + 11 * H), BACKFILL_AT + GRACE / 2);
    send_at(kind_event(3, "h-resume", "h", NOV2 + 12 * H), BACKFILL_AT + GRACE);
    tick(BACKFILL_AT + 2 * GRACE - 1);
    outputs_of("h", got, sizeof got);
    cr_assert_str_eq(got, "", "the grace counts from the last event");
    tick(BACKFILL_AT + 2 * GRACE);
    outputs_of("h", got, sizeof got);
    cr_assert_neq(got[0], '\0', "the steps of the resumed clock after the grace");
}

Test(sla, a_live_step_fires_exactly_at_its_due_time)
{
    berlin_policy();
    int64_t start = NOV2 + 10 * H, warn = NOV2 + 17 * H;
    send(fx_qualified("live-1", "live", SQL, start));
    tick(warn - 1);
    char got[1024], want[256] = "";
    outputs_of("live", got, sizeof got);
    cr_assert_str_eq(got, "");
    tick(warn);
    line_add(want, sizeof want, "sla.warning", warn, 0, start, NOV2 + 34 * H);
    outputs_of("live", got, sizeof got);
    cr_assert_str_eq(got, want, "not delayed: due long after the arrival plus the grace");
}

Test(sla, a_restart_within_the_grace_keeps_it)
{
    berlin_policy();
    static const size_t order[] = {0, 1};
    char got[1024], want[256];
    send_batch("rs", backfill, order, 1, BACKFILL_AT);
    send_batch("rt", backfill, order, 1, BACKFILL_AT);
    engine_close();
    engine_open();
    tick(BACKFILL_AT + GRACE / 2);
    send_batch("rs", backfill, order + 1, 1, BACKFILL_AT + GRACE * 3 / 4);
    tick(BACKFILL_AT + 10 * GRACE);
    met_line(want, sizeof want);
    outputs_of("rs", got, sizeof got);
    cr_assert_str_eq(got, want, "the stored arrival time survives the restart");
    /* The instance that got no stop fires after the grace, at its due times. */
    want[0] = '\0';
    clock_lines(want, sizeof want, NOV2 + 17 * H, NOV2 + 10 * H, NOV2 + 34 * H);
    outputs_of("rt", got, sizeof got);
    cr_assert_str_eq(got, want);
}

Test(sla, a_grace_of_0_fires_at_the_due_time_and_a_reload_changes_the_timers)
{
    berlin_policy();
    static const size_t order[] = {0};
    char got[1024], want[256] = "";
    clock_lines(want, sizeof want, NOV2 + 17 * H, NOV2 + 10 * H, NOV2 + 34 * H);
    send_batch("z", backfill, order, 1, BACKFILL_AT);
    tick(BACKFILL_AT + 1);
    outputs_of("z", got, sizeof got);
    cr_assert_str_eq(got, "", "the default grace holds the steps");
    /* A reload to late_grace = "0" (in place, as funneld's reload does): the timers of
     * instances already waiting are recomputed, and fire at once. */
    funnel_sla_config_t next;
    funnel_sla_config_defaults(&next);
    fx_sla_cfg_set("late_grace = \"0\";", &next);
    cr_assert_eq(next.late_grace_ms, 0);
    cfg.late_grace_ms = next.late_grace_ms;
    funnel_sla_config_clear(&next);
    tick(BACKFILL_AT + 2);
    outputs_of("z", got, sizeof got);
    cr_assert_str_eq(got, want);
}

/* The duration member name of the section (the int64_t at field of the config): its default,
 * "2m" read and printed back, 0 taken, a bad value refused with the member named. */
static void expect_duration_member(const char *name, int64_t def, size_t field)
{
    funnel_sla_config_t c;
    char err[512], body[64], want[64], *text = NULL;
    size_t len = 0;
    int64_t *ms = (int64_t *)((char *)&c + field);
    funnel_sla_config_defaults(&c);
    cr_assert_eq(*ms, def, "%s", name);
    snprintf(body, sizeof body, "%s = \"0\";", name);
    cr_assert_eq(fx_sla_cfg_parse(body, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(*ms, 0, "%s", name);
    snprintf(body, sizeof body, "%s = \"2m\";", name);
    cr_assert_eq(fx_sla_cfg_parse(body, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(*ms, 2 * MN);
    FILE *mem = open_memstream(&text, &len);
    funnel_sla_config_print(&c, mem);
    fclose(mem);
    snprintf(want, sizeof want, "%s = \"2m\";", name);
    cr_assert(strstr(text, want), "%s", text);
    free(text);
    snprintf(body, sizeof body, "%s = \"soon\";", name);
    cr_assert_eq(fx_sla_cfg_parse(body, &c, err, sizeof err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, name), "the error names the setting: %s", err);
    cr_assert_eq(*ms, 2 * MN, "a refused section changes nothing");
    funnel_sla_config_clear(&c);
}

Test(sla, late_grace_and_horizon_are_durations_or_0_and_bad_ones_are_refused)
{
    expect_duration_member("late_grace", FUNNEL_SLA_LATE_GRACE_MS,
                           offsetof(funnel_sla_config_t, late_grace_ms));
    expect_duration_member("horizon", FUNNEL_SLA_HORIZON_MS,
                           offsetof(funnel_sla_config_t, horizon_ms));
}

Test(sla, a_late_reset_publishes_the_steps_of_the_clock_it_ends)
{
    berlin_policy();
    /* Start Mon 09:00 CET and a stop Wed 10:00 arrive first, the reset Tue 00:01 last: the
     * second clock (Tue 00:01, due Tue 18:00) ran until the stop, so its steps come out too. */
    int64_t nov9 = NOV2 + 7 * 24 * H, reset = nov9 + 23 * H + MN;
    send_at(fx_qualified("lr-1", "lr", SQL, nov9 + 8 * H), BURST_AT);
    send_at(fx_contacted("lr-2", "lr", nov9 + 57 * H), BURST_AT);
    send_at(fx_touched("lr-3", "lr", reset), BURST_AT);
    tick(BURST_AT);
    char got[2048], want[1024] = "";
    outputs_of("lr", got, sizeof got);
    clock_lines(want, sizeof want, nov9 + 15 * H, nov9 + 8 * H, nov9 + 17 * H);
    line_add(want, sizeof want, "sla.met", nov9 + 57 * H, 0, nov9 + 8 * H, nov9 + 17 * H);
    clock_lines(want, sizeof want, nov9 + 39 * H, reset, nov9 + 41 * H);
    cr_assert_str_eq(got, want);
}

Test(sla, a_pause_after_the_due_time_does_not_move_it)
{
    berlin_policy();
    /* Mon Nov 23 09:00 CET start, due 18:00; paused 19:00 until Wed 09:00; contacted 10:00. */
    int64_t mon = NOV2 + 21 * 24 * H, due = mon + 17 * H;
    send(fx_qualified("d-1", "d", SQL, mon + 8 * H));
    tick(mon + 18 * H);
    send(fx_closed("d-2", "d", FUNNEL__V1__OUTCOME__LOST, mon + 18 * H));
    send(fx_qualified("d-3", "d", MQL, mon + 56 * H));
    cr_assert_eq(count_rows("SELECT due_at FROM sla_instance WHERE key = 'd'"), due);
    send(fx_contacted("d-4", "d", mon + 57 * H));
    cr_assert_eq(next_out("sla.warning")->sla_warning->sla->due_at_ms, due);
    funnel_envelope_t *e = next_out("sla.escalation");
    cr_assert_eq(e->occurred_at_ms, due);
    cr_assert_eq(e->sla_escalation->sla->due_at_ms, due);
    funnel_envelope_t *m = next_out("sla.met");
    cr_assert_eq(m->sla_met->sla->due_at_ms, due, "sla.met says the due time the levels said");
    cr_assert_not(m->sla_met->on_time);
    cr_assert_eq(m->sla_met->late_ms, H, "Mon 18:00-19:00 and Wed 09:00-10:00 in business time");
    cr_assert_eq(count_rows("SELECT due_at FROM sla_instance WHERE key = 'd'"), due);
    no_more_out();
}

Test(sla, a_stop_after_the_due_time_is_late_even_with_no_business_time_between)
{
    berlin_policy();
    /* Mon Nov 2 09:00 CET start, due 18:00: stopped 18:00 on time, 19:00 late by 0. */
    send_at(fx_qualified("o-1", "o", SQL, NOV2 + 8 * H), NOV2 + 8 * H);
    send_at(fx_contacted("o-2", "o", NOV2 + 17 * H), NOV2 + 17 * H);
    send_at(fx_qualified("l-1", "l", SQL, NOV2 + 8 * H), NOV2 + 8 * H);
    send_at(fx_contacted("l-2", "l", NOV2 + 18 * H), NOV2 + 18 * H);
    funnel_envelope_t *on = met_of("o"), *late = met_of("l");
    cr_assert(on->sla_met->on_time, "a stop at the due time is on time");
    cr_assert_not(late->sla_met->on_time, "a stop after the due time is late");
    cr_assert_eq(late->sla_met->late_ms, 0, "late_ms is business time");
}

Test(sla, acknowledgement_of_an_unknown_sla_is_refused)
{
    send_refused(fx_acked("a1", "999999", T0), T0);
    send_refused(fx_acked("a2", "not-a-number", T0), T0);
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), 0);
    /* A known instance, met or not, takes it. */
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_acked("a3", "1", T0 + MN));
    send(fx_contacted("c1", "L1", T0 + 2 * MN));
    send(fx_acked("a4", "1", T0 + 3 * MN));
    /* So does one a recomputation deleted (an earlier start arrived late): it was issued. */
    send(fx_qualified("q3", "L2", SQL, T0 + 2 * H));
    send(fx_qualified("q2", "L2", SQL, T0));
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE id = 2"), 0);
    send(fx_acked("a5", "2", T0 + 3 * H));
    send_refused(fx_acked("a6", "4", T0 + 3 * H), T0 + 3 * H);
}

/* The error of parsing `sla = { body }`, which must fail. */
static void config_error(const char *body, char *err, size_t len)
{
    config_t lc;
    char text[2048];
    funnel_sla_config_t c = {0};
    snprintf(text, sizeof text, "sla = { %s };", body);
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE, "%s", config_error_text(&lc));
    err[0] = '\0';
    int rc = funnel_sla_config_parse(config_lookup(&lc, "sla"), &c, err, len);
    config_destroy(&lc);
    cr_assert_eq(rc, FUNNEL_ECONFIG, "accepted: %s", body);
}

#define POLICY_HEAD                                                                                \
    "policies = ( { name = \"ok\"; start = \"lead.qualified\"; key = \"lead_id\";"                 \
    " stop = [\"lead.contacted\"]; target = \"1h\"; },"                                            \
    " { name = \"first_call\"; start = \"lead.qualified\"; key = \"lead_id\";"                     \
    " stop = [\"lead.contacted\"]; "

Test(sla, config_errors_name_the_item_and_quote_the_value)
{
    static const struct {
        const char *body;
        const char *want[3];
    } cases[] = {
        {POLICY_HEAD "target = \"1h\"; warning = \"150%\"; } );",
         {"policy first_call", "\"150%\"", "more than 100%"}},
        {POLICY_HEAD "target = \"1h\"; warning = \"2h\"; } );",
         {"policy first_call", "\"2h\"", "longer than the target"}},
        {POLICY_HEAD "target = \"1h\"; warning = \"x%\"; } );",
         {"policy first_call", "\"x%\"", "neither a duration"}},
        {"policies = ( { name = \"a\"; start = \"lead.qualified\"; key = \"lead_id\";"
         " stop = [\"lead.contacted\"]; target = \"1h\"; },"
         " { name = \"a\"; start = \"lead.qualified\"; key = \"lead_id\";"
         " stop = [\"lead.contacted\"]; target = \"1h\"; } );",
         {"policy a", "twice"}},
        {POLICY_HEAD "target = \"8x\"; } );", {"policy first_call", "target", "\"8x\""}},
        {POLICY_HEAD "target = \"1h\"; tagret = \"2h\"; } );", {"policy first_call", "tagret"}},
        {"quotas = ( { name = \"mql_week\"; count = \"lead.qualified\"; period = \"year\";"
         " minimum = 5; } );",
         {"quota mql_week", "\"year\""}},
        {"quotas = ( { name = \"mql_week\"; count = \"lead.qualified\"; period = \"week\";"
         " minimum = 0; } );",
         {"quota mql_week", "minimum", "0"}},
        {"calendars = { office = { time_zone = \"Europe/Berlin\"; weekdays = [\"9-18\"]; }; };",
         {"calendar office", "9-18"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512];
        config_error(cases[i].body, err, sizeof err);
        cr_assert_null(strstr(err, "[0]"), "names by position: %s", err);
        cr_assert_null(strstr(err, "[1]"), "names by position: %s", err);
        for (size_t k = 0; k < 3 && cases[i].want[k]; k++)
            cr_assert(strstr(err, cases[i].want[k]), "case %zu: '%s' not in: %s", i,
                      cases[i].want[k], err);
    }
}

/* Mon 2027-01-11 00:00 UTC; New York weeks start at 05:00 UTC (EST). */
static const int64_t JAN11 = T0 + 224 * 24 * H;

Test(sla, quota_periods_skipped_by_a_later_event_still_report)
{
    funnel_sla_config_clear(&cfg);
    cfg_set("calendars = { ny = { time_zone = \"America/New_York\";"
            " weekdays = [\"09:00-17:00\"]; }; };"
            "quotas = ( { name = \"mql_ny\"; count = \"lead.qualified stage=MQL\";"
            " period = \"week\"; calendar = \"ny\"; minimum = 2; } );");
    engine_close();
    engine_open();
    int64_t wk = 7 * 24 * H, w11 = JAN11 + 5 * H, w18 = w11 + wk, w25 = w18 + wk;
    tick(JAN11 + 24 * H); /* the first run opens the week of Jan 11 */
    send(fx_qualified("m1", "L1", MQL, JAN11 + 30 * H));
    send(fx_qualified("m2", "L2", MQL, JAN11 + 31 * H));
    engine_close();
    /* Down from Jan 12 to Jan 27; an MQL of the current week and one of the ended week of
     * Jan 18 arrive before the first timer pass. */
    engine_open();
    send_at(fx_qualified("m3", "L3", MQL, w25 + 24 * H), w25 + 2 * 24 * H);
    send_at(fx_qualified("m4", "L4", MQL, w18 + 24 * H), w25 + 2 * 24 * H);
    tick(w25 + 2 * 24 * H);
    funnel_envelope_t *m = next_out("sla.quota_missed");
    cr_assert_eq(m->sla_quota_missed->period_start_ms, w18);
    cr_assert_eq(m->sla_quota_missed->period_end_ms, w25);
    cr_assert_eq(m->sla_quota_missed->actual, 1);
    cr_assert_eq(m->occurred_at_ms, w25);
    no_more_out();
    /* With an empty week before the late one: that week reports too, once. */
    engine_close();
    engine_open();
    send_at(fx_qualified("m5", "L5", MQL, w25 + 3 * wk), w25 + 3 * wk + H);
    tick(w25 + 3 * wk + H);
    for (int i = 0; i < 3; i++) {
        m = next_out("sla.quota_missed");
        cr_assert_eq(m->sla_quota_missed->period_start_ms, w25 + i * wk);
        cr_assert_eq(m->sla_quota_missed->actual, i == 0 ? 1 : 0);
    }
    no_more_out();
}

/* A month quota's periods are calendar months in its calendar's time zone (README): June in
 * Berlin runs from May 31 22:00 to June 30 22:00 UTC, an MQL at its last millisecond counts in
 * June and one at the next instant in July. */
Test(sla, month_quota_periods_follow_the_calendar_time_zone)
{
    funnel_sla_config_clear(&cfg);
    cfg_set("calendars = { berlin = { time_zone = \"Europe/Berlin\";"
            " weekdays = [\"09:00-18:00\"]; }; };"
            "quotas = ( { name = \"mql_month\"; count = \"lead.qualified stage=MQL\";"
            " period = \"month\"; calendar = \"berlin\"; minimum = 3; } );");
    const int64_t june = T0 - 2 * H, july = june + 30 * 24 * H, august = july + 31 * 24 * H;
    tick(T0); /* the quota's first run opens June */
    send(fx_qualified("m1", "L1", MQL, june));
    send(fx_qualified("m2", "L2", MQL, july - 1));
    send(fx_qualified("m3", "L3", MQL, july));
    tick(july);
    funnel_envelope_t *m = next_out("sla.quota_missed");
    cr_assert_str_eq(m->sla_quota_missed->policy, "mql_month");
    cr_assert_eq(m->sla_quota_missed->period_start_ms, june);
    cr_assert_eq(m->sla_quota_missed->period_end_ms, july);
    cr_assert_eq(m->sla_quota_missed->actual, 2);
    cr_assert_eq(m->sla_quota_missed->minimum, 3);
    cr_assert_eq(m->occurred_at_ms, july);
    no_more_out();
    tick(august);
    m = next_out("sla.quota_missed");
    cr_assert_eq(m->sla_quota_missed->period_start_ms, july);
    cr_assert_eq(m->sla_quota_missed->period_end_ms, august, "July has 31 days");
    cr_assert_eq(m->sla_quota_missed->actual, 1);
    no_more_out();
}

/* README limit: at most 16 live instances of one key are handled per event. Seventeen policies
 * open seventeen instances on one lead; its lead.contacted meets sixteen, and the one left is
 * still live and fires, rather than the event failing or reading without bound. */
Test(sla, one_event_handles_at_most_sixteen_live_instances_of_a_key)
{
    char body[4096];
    size_t used = (size_t)snprintf(body, sizeof body, "policies = (");
    for (int i = 0; i < 17; i++)
        used += (size_t)snprintf(body + used, sizeof body - used,
                                 "%s { name = \"p%02d\"; start = \"lead.qualified stage=SQL\";"
                                 " key = \"lead_id\"; stop = [\"lead.contacted\"];"
                                 " target = \"1h\"; calendar = \"24x7\";"
                                 " escalation = ( { after = \"0\"; notify = \"lead\"; } ); }",
                                 i ? "," : "", i);
    cr_assert_lt(used + 3, sizeof body);
    snprintf(body + used, sizeof body - used, " );");
    funnel_sla_config_clear(&cfg);
    cfg_set(body);
    send(fx_qualified("q1", "L1", SQL, T0));
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE key = 'L1'"), 17);
    send(fx_contacted("c1", "L1", T0 + 10 * MN));
    for (int i = 0; i < 16; i++)
        next_out("sla.met");
    no_more_out();
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE state <> 'met'"), 1);
    tick(T0 + H);
    funnel_envelope_t *e = next_out("sla.escalation");
    cr_assert_eq(e->occurred_at_ms, T0 + H, "the instance left live is due at its time");
}

/* ---- what readers of the tables get (funnel-web's compliance and quota chart) ------------- */

static int64_t stop_business_ms(const char *key)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(stop_business_ms, -1) FROM sla_instance WHERE key = '%s'", key);
    return count_rows(sql);
}

/* A met row keeps the business time its clock had used at the stop: the calendar's working
 * hours only, pauses left out. */
Test(sla, met_row_stores_the_business_time_at_the_stop)
{
    policy_set(POLICY_SQL " calendar = \"office\";", "8h");
    engine_close();
    engine_open();
    /* Fri Jun 5 15:00 CEST to Tue Jun 9 10:00 CEST: 3h Friday, 9h Monday, 1h Tuesday. */
    int64_t fri = T0 + 4 * 24 * H + 13 * H;
    send(fx_qualified("q1", "L1", SQL, fri));
    send(fx_contacted("c1", "L1", T0 + 8 * 24 * H + 8 * H));
    cr_assert_eq(stop_business_ms("L1"), 13 * H);
    /* 24x7: 20 minutes, paused from 00:20 to 03:00, 30 minutes more. */
    policy_set(POLICY_SQL, "1h");
    engine_close();
    engine_open();
    send(fx_qualified("q2", "L2", SQL, T0));
    send(fx_closed("p2", "L2", FUNNEL__V1__OUTCOME__LOST, T0 + 20 * MN));
    send(fx_qualified("r2", "L2", MQL, T0 + 3 * H));
    send(fx_contacted("c2", "L2", T0 + 3 * H + 30 * MN));
    cr_assert_eq(stop_business_ms("L2"), 50 * MN);
}

/* A pause that arrives after the stop but occurred before it recomputes the met row, and its
 * business time with it. */
Test(sla, recomputed_met_row_stores_the_recomputed_business_time)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 50 * MN));
    cr_assert_eq(stop_business_ms("L1"), 50 * MN);
    send_at(fx_closed("p1", "L1", FUNNEL__V1__OUTCOME__LOST, T0 + 10 * MN), T0 + H);
    send_at(fx_qualified("r1", "L1", MQL, T0 + 30 * MN), T0 + H);
    cr_assert_eq(stop_business_ms("L1"), 30 * MN);
}

static void quota_days_set(void)
{
    funnel_sla_config_clear(&cfg);
    cfg_set("calendars = { berlin = { time_zone = \"Europe/Berlin\";"
            " weekdays = [\"09:00-18:00\"]; }; };"
            "quotas = ( { name = \"mql_week\"; count = \"lead.qualified stage=MQL\";"
            " period = \"week\"; calendar = \"berlin\"; minimum = 4; } );");
}

/* The MQLs of quota_days_expect, in the order given by idx. */
static void quota_days_send(const int idx[5])
{
    /* Berlin days start at 22:00 UTC in June: 21:59Z is still Jun 1, 22:00Z is Jun 2. */
    const int64_t at[5] = {T0 + 2 * H, T0 + 21 * H + 59 * MN, T0 + 22 * H, T0 + 45 * H,
                           T0 + 4 * 24 * H};
    for (int k = 0; k < 5; k++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", idx[k]);
        send_at(fx_qualified(id, id, MQL, at[idx[k]]), T0 + 5 * 24 * H);
    }
}

static void quota_days_expect(void)
{
    const int64_t day = 24 * H, jun1 = T0 - 2 * H;
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_quota_day"), 3);
    cr_assert_eq(count_rows("SELECT actual FROM sla_quota WHERE policy = 'mql_week'"), 5);
    char sql[160];
    const int64_t want[3][2] = {{jun1, 2}, {jun1 + day, 2}, {jun1 + 4 * day, 1}};
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof sql,
                 "SELECT count FROM sla_quota_day WHERE policy = 'mql_week' AND day_start = %lld",
                 (long long)want[i][0]);
        cr_assert_eq(count_rows(sql), want[i][1], "day %d", i);
    }
}

/* Per-day counts are local days of the quota's calendar, and like the period's count they
 * depend on the events only, not on the order they arrive in. */
Test(sla, quota_counts_each_local_day)
{
    quota_days_set();
    quota_days_send((const int[5]){0, 1, 2, 3, 4});
    quota_days_expect();
}

Test(sla, quota_day_counts_do_not_depend_on_arrival_order)
{
    quota_days_set();
    quota_days_send((const int[5]){4, 2, 0, 3, 1});
    quota_days_expect();
}

Test(sla, a_met_row_keeps_the_steps_its_instance_passed)
{
    /* The stop arrives after the warning and both levels were due, with no timer pass between:
     * the event fires them (steps_before), then meets the instance. The row says step 3 (the
     * first repeat would have been next), as a timer pass before the stop leaves it (L2). */
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 100 * MN));
    cr_assert_eq(count_rows("SELECT step FROM sla_instance WHERE key = 'L1'"), 3);
    send(fx_qualified("q2", "L2", SQL, T0));
    tick(T0 + 100 * MN);
    send(fx_contacted("c2", "L2", T0 + 100 * MN));
    cr_assert_eq(count_rows("SELECT step FROM sla_instance WHERE key = 'L2'"), 3);
}

/* ---- retention -------------------------------------------------------------------------- */

#define D (24 * H)

static void horizon_set(const char *horizon)
{
    char body[3000];
    snprintf(body, sizeof body, "policies = ( { %s target = \"1h\"; } ); horizon = \"%s\";",
             POLICY_SQL, horizon);
    cfg_set(body);
}

static int64_t rows_of_key(const char *table, const char *key)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE key = '%s'", table, key);
    return count_rows(sql);
}

Test(sla, the_horizon_prunes_met_history_and_refuses_older_events_of_pruned_keys)
{
    horizon_set("10d");
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 30 * MN)); /* met */
    send(fx_qualified("q2", "L2", SQL, T0));      /* never stopped */
    send(fx_qualified("q3", "L3", SQL, T0 + 11 * D));
    send(fx_contacted("c3", "L3", T0 + 11 * D + MN)); /* met inside the horizon */
    cr_assert_eq(rows_of_key("sla_log_all", "L1"), 2);
    /* The watermark is T0 + 11d + 1m: L1's instance stopped before the cutoff. */
    tick(T0 + 11 * D + MN);
    cr_assert_eq(rows_of_key("sla_instance", "L1"), 0);
    cr_assert_eq(rows_of_key("sla_log_all", "L1"), 0);
    cr_assert_eq(rows_of_key("sla_instance", "L2"), 1, "an idle instance is expired, and kept");
    cr_assert_eq(rows_of_key("sla_instance", "L3"), 1);
    cr_assert_eq(rows_of_key("sla_log_all", "L3"), 2);
    cr_assert_eq(funnel_router_next_deadline(router) > T0 + 11 * D + MN, true,
                 "nothing left to prune: no pass at once");
    /* A stop, a start or a reset older than the cutoff for a key with nothing kept from then is
     * refused with its reason, also after a restart (the prune pass stored the watermark). */
    engine_close();
    engine_open();
    send_refused(fx_contacted("c1b", "L1", T0 + 2 * H), T0 + 11 * D + 2 * MN);
    cr_assert(strstr(funnel_router_refusal(router)->text, "SLA horizon (10d before"), "%s",
              funnel_router_refusal(router)->text);
    send_refused(fx_qualified("q4", "L4", SQL, T0 + 3 * H), T0 + 11 * D + 2 * MN);
    cr_assert_eq(rows_of_key("sla_instance", "L4"), 0);
    /* Older than the cutoff but after the start of an instance kept: applied. */
    send_at(fx_contacted("c2", "L2", T0 + 2 * H), T0 + 11 * D + 2 * MN);
    cr_assert_eq(count_rows("SELECT state = 'met' FROM sla_instance WHERE key = 'L2'"), 1);
    /* An event no policy cares about is never refused; one inside the horizon neither. */
    send_at(fx_req_answered("a1", "R1", T0 + H), T0 + 11 * D + 2 * MN);
    send_at(fx_qualified("q5", "L5", SQL, T0 + 2 * D), T0 + 11 * D + 2 * MN);
    cr_assert_eq(rows_of_key("sla_instance", "L5"), 1);
    cr_assert_eq(count_rows("SELECT id FROM sla_deleted_max"), 1,
                 "the pruned id is never given again");
}

/* Under horizon: L1's instance met at T0 + 30m, then L3's started at T0 + later, and the timer
 * pass (the prune) at that time. */
static void met_then_start_later(const char *horizon, int64_t later)
{
    horizon_set(horizon);
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 30 * MN));
    send(fx_qualified("q3", "L3", SQL, T0 + later));
    tick(T0 + later);
}

/* A prune deletes log rows memory may hold: the next event of the key reads the store. */
Test(sla, a_prune_forgets_the_last_log_rows_of_its_keys)
{
    met_then_start_later("10d", 11 * D);
    cr_assert_eq(rows_of_key("sla_log_all", "L1"), 0);
    size_t reads = log_reads();
    send(fx_qualified("q2", "L1", SQL, T0 + 11 * D + MN));
    cr_assert_eq(log_reads(), reads + 1, "read again after the prune");
    cr_assert_eq(rows_of_key("sla_log_all", "L1"), 1);
    cr_assert_eq(count_rows("SELECT 1 FROM sla_instance WHERE key = 'L1' AND state = 'open'"), 1);
}

Test(sla, a_horizon_of_0_keeps_everything)
{
    met_then_start_later("0", 900 * D);
    cr_assert_eq(rows_of_key("sla_instance", "L1"), 1);
    send(fx_qualified("q4", "L4", SQL, T0)); /* nothing is beyond a horizon of 0 */
    cr_assert_eq(rows_of_key("sla_instance", "L4"), 1);
}

/* Sends, for each of the PROP_KEYS keys of prefix, an instance met 20 days before T0. */
static void old_history(const char *prefix)
{
    for (int k = 0; k < PROP_KEYS; k++) {
        prop_ev_t start = {k, 1, T0 - 20 * D + k * MN}, stop = {k, 5, T0 - 20 * D + 9 * MN};
        prop_send(prefix, &start, 100 + 2 * k);
        prop_send(prefix, &stop, 101 + 2 * k);
    }
}

/* Pruning changes nothing inside the horizon: the instances of a stream sent after the old
 * history of its keys was pruned, in event-time order or in reverse, are those of the same
 * stream sent while the same history was kept. */
#define PRUNE_SEEDS 8
static void prune_prefix(char *out, size_t len, char kind, uint32_t seed)
{
    snprintf(out, len, "%c%u-", kind, seed);
}

Test(sla, pruning_leaves_the_instances_inside_the_horizon_as_they_were)
{
    prop_ev_t ev[PRUNE_SEEDS][PROP_KEYS * PROP_EVENTS];
    size_t n[PRUNE_SEEDS];
    char kept[16], pruned[16], reversed[16];
    horizon_set("0");
    for (uint32_t seed = 1; seed <= PRUNE_SEEDS; seed++) {
        uint32_t rnd = seed;
        n[seed - 1] = prop_stream(&rnd, ev[seed - 1]);
        prune_prefix(kept, sizeof kept, 'k', seed);
        old_history(kept);
        for (size_t i = 0; i < n[seed - 1]; i++)
            prop_send(kept, &ev[seed - 1][i], (int)i);
        prune_prefix(pruned, sizeof pruned, 'p', seed);
        prune_prefix(reversed, sizeof reversed, 'r', seed);
        old_history(pruned);
        old_history(reversed);
    }
    horizon_set("10d");
    send_at(fx_qualified("wm", "wm", SQL, T0 + D), T0 + D); /* the watermark passes them all */
    tick(T0 + 24 * H);
    char sql[120];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM sla_instance WHERE opened_at < %lld",
             (long long)(T0 - 10 * D));
    cr_assert_eq(count_rows(sql), 0, "the old history is pruned, in passes of a batch each");
    for (uint32_t seed = 1; seed <= PRUNE_SEEDS; seed++) {
        prune_prefix(kept, sizeof kept, 'k', seed);
        prune_prefix(pruned, sizeof pruned, 'p', seed);
        prune_prefix(reversed, sizeof reversed, 'r', seed);
        for (size_t i = 0; i < n[seed - 1]; i++)
            prop_send(pruned, &ev[seed - 1][i], (int)i);
        for (size_t i = n[seed - 1]; i-- > 0;)
            prop_send(reversed, &ev[seed - 1][i], (int)i);
        expect_same_rows_since(kept, pruned, T0 - D);
        expect_same_rows_since(kept, reversed, T0 - D);
    }
    expect_kept_compliance_exact(T0 + D);
}

/* A database with instances from before the log (migration 3) keeps holding the events of a
 * logged key: a late start of such a key takes the live path, which finds them only there. */
Test(sla, a_database_with_instances_from_before_the_log_still_holds_logged_keys_events)
{
    send(fx_qualified("q0", "P", SQL, T0));
    engine_close();
    cr_assert_eq(sqlite3_exec(funnel_store_db(store),
                              "DELETE FROM sla_log; DROP VIEW sla_log_all; DROP TABLE sla_prelog;"
                              "DROP TRIGGER sla_compliance_met;"
                              "ALTER TABLE sla_instance DROP COLUMN vlog;"
                              "UPDATE meta SET value = 11 WHERE key = 'schema.sla';",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(funnel_store_db(store)));
    engine_open();
    send(fx_qualified("q1", "P", SQL, T0 + 2 * H)); /* a repeated start: P has a log now */
    send(fx_contacted("c1", "P", T0 + 3 * H));      /* meets q0 */
    send(fx_contacted("c2", "P", T0 + 4 * H));      /* no live instance takes it */
    send_at(fx_qualified("q2", "P", SQL, T0 + 3 * H + 30 * MN), T0 + 5 * H);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE key = 'P' AND"
                            " state = 'met' AND stop_event = 'c2'"),
                 1);
}

/* A database of the engine before migration 11 (no sla_compliance, triggers or idle index) gets the
 * kept compliance filled from its instances, on time, late and recomputed, and kept from then on.
 */
Test(sla, the_kept_compliance_is_filled_from_the_instances_of_an_older_database)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    send(fx_contacted("c1", "L1", T0 + 20 * MN)); /* on time */
    send(fx_qualified("q2", "L2", SQL, T0 + MN));
    send(fx_contacted("c2", "L2", T0 + 3 * H)); /* late */
    send(fx_qualified("q3", "L3", SQL, T0 + D));
    send(fx_qualified("q4", "L4", SQL, T0 + D)); /* open */
    engine_close();
    cr_assert_eq(sqlite3_exec(funnel_store_db(store),
                              "DROP TRIGGER sla_compliance_insert;"
                              "DROP TRIGGER sla_compliance_update; DROP TRIGGER sla_compliance_met;"
                              "DROP TRIGGER sla_compliance_delete; DROP TABLE sla_compliance;"
                              "DROP INDEX sla_instance_idle;"
                              /* and as before migration 12: the whole log in sla_log */
                              "INSERT OR IGNORE INTO sla_log SELECT * FROM sla_log_all;"
                              "DROP VIEW sla_log_all; ALTER TABLE sla_instance DROP COLUMN vlog;"
                              "DROP TABLE sla_prelog;"
                              "UPDATE meta SET value = 10 WHERE key = 'schema.sla';",
                              NULL, NULL, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(funnel_store_db(store)));
    engine_open();
    cr_assert_eq(count_rows("SELECT sum(on_time) FROM sla_compliance"), 1);
    cr_assert_eq(count_rows("SELECT sum(late) FROM sla_compliance"), 1);
    expect_kept_compliance_exact(T0 + D + 2 * H);
    send(fx_contacted("c3", "L3", T0 + D + 10 * MN));
    send_at(fx_touched("t1", "L1", T0 + 10 * MN), T0 + 2 * D); /* recomputes L1 */
    expect_kept_compliance_exact(T0 + D + 2 * H);
    cr_assert_eq(count_rows("SELECT sum(on_time) FROM sla_compliance"), 2);
}

/* An instance whose clock has not changed for the horizon is closed as expired, with the
 * injected clock: met at its last change plus the horizon, never on time, without a stop event,
 * published (sla.met, expired), shown as expired and counted breached by compliance; one paused
 * or reset inside the horizon is not; the expired one is pruned once the cutoff passes its
 * expiry, so an instance never stopped is kept at most twice the horizon. */
Test(sla, an_instance_idle_for_the_horizon_expires_as_breached_and_is_pruned_later)
{
    horizon_set("10d");
    send(fx_qualified("q1", "L1", SQL, T0)); /* never stopped */
    send(fx_qualified("q2", "L2", SQL, T0));
    send(fx_closed("p2", "L2", FUNNEL__V1__OUTCOME__LOST, T0 + 5 * D)); /* paused since */
    send(fx_qualified("q3", "L3", SQL, T0 + 11 * D));
    send(fx_contacted("c3", "L3", T0 + 11 * D + MN)); /* the watermark */
    fx_engine_out_clear(&eng);
    tick(T0 + 11 * D + MN);
    funnel_envelope_t *met = met_of("L1");
    cr_assert(met->sla_met->expired);
    cr_assert_not(met->sla_met->on_time);
    cr_assert_str_eq(met->sla_met->stop_event_id, "");
    cr_assert_eq(met->occurred_at_ms, T0 + 10 * D);
    cr_assert_eq(
        count_rows("SELECT count(*) FROM sla_instance WHERE key = 'L1' AND state = 'met'"
                   " AND stop_event IS NULL AND NOT on_time AND stopped_at = 1781136000000"),
        1);
    cr_assert_eq(count_rows("SELECT count(*) FROM sla_instance WHERE key = 'L2' AND"
                            " state = 'paused'"),
                 1, "paused inside the horizon: kept live");
    funnel_sla_report_list_t *list = NULL;
    cr_assert_eq(funnel_sla_report_list(store, NULL, T0 + 11 * D + MN, &list), 0);
    cr_assert_str_eq(list->rows[0].key, "L1");
    cr_assert_str_eq(list->rows[0].state, "expired");
    funnel_sla_report_list_free(&list);
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(store, "policy", false, INT64_MIN, INT64_MAX,
                                          T0 + 11 * D + MN, &c),
                 0);
    cr_assert_eq(c->rows[0].instances, 3);
    cr_assert_eq(c->rows[0].breached, 1, "the expired one");
    cr_assert_eq(c->rows[0].met_on_time, 1);
    cr_assert_eq(c->rows[0].open, 1, "the paused one");
    funnel_report_compliance_free(&c);
    expect_kept_compliance_exact(T0 + 11 * D + MN);
    /* Once the cutoff passes its expiry (T0 + 10d) it is pruned; L2 expires at T0 + 15d. */
    send(fx_qualified("q4", "L4", SQL, T0 + 20 * D + MN));
    tick(T0 + 20 * D + MN);
    cr_assert_eq(rows_of_key("sla_instance", "L1"), 0);
    cr_assert_eq(count_rows("SELECT stopped_at = 1781568000000 FROM sla_instance WHERE key = 'L2'"
                            " AND stop_event IS NULL"),
                 1);
    cr_assert(met_of("L2")->sla_met->expired);
    expect_kept_compliance_exact(T0 + 20 * D + MN);
}
