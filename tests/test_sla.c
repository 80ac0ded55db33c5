/* test_sla.c — the SLA engine driven directly: a temporary store, the real router, the engine
 * and an injected clock. Every output is decoded and checked for its times, level, target and
 * version; "now" only moves when a test says so. */
#include "harness.h"
#include "sla_fx.h"

#include "funnel/error.h"
#include "funnel/sla.h"

#include <criterion/criterion.h>
#include <libconfig.h>
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

/* Outputs of the engine (sla.* only), decoded; freed by the fini. */
#define MAX_OUT 256
static funnel_envelope_t *out[MAX_OUT];
static char out_topic[MAX_OUT][32];
static size_t n_out, seen_out;

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
    config_t lc;
    char text[4096], err[512] = "";
    snprintf(text, sizeof text, "sla = { %s };", body);
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE, "%s", config_error_text(&lc));
    int rc = funnel_sla_config_parse(config_lookup(&lc, "sla"), &cfg, err, sizeof err);
    config_destroy(&lc);
    cr_assert_eq(rc, 0, "%s", err);
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
    for (size_t i = 0; i < n_out; i++)
        funnel_envelope_free(&out[i]);
    n_out = seen_out = 0;
    fx_tmpdir_remove(&tmp);
}

TestSuite(sla, .init = setup, .fini = teardown, .timeout = 60);

/* Keeps the sla.* rows the last COMMIT produced. */
static void collect(void)
{
    const funnel_outbox_row_t *rows;
    size_t n = funnel_store_outbox_pending(store, &rows);
    for (size_t i = 0; i < n; i++) {
        if (strncmp(rows[i].topic, "sla.", 4) != 0)
            continue;
        cr_assert_lt(n_out, MAX_OUT);
        out[n_out] = funnel__v1__envelope__unpack(NULL, rows[i].len, rows[i].envelope);
        cr_assert_not_null(out[n_out]);
        snprintf(out_topic[n_out], sizeof out_topic[n_out], "%s", rows[i].topic);
        n_out++;
    }
    funnel_store_outbox_pending_clear(store);
}

/* Routes one event in its own transaction, as funneld's batch does, and frees it. */
static void send(funnel_envelope_t *env)
{
    size_t len;
    uint8_t *raw = fx_pack(env, &len);
    cr_assert_eq(funnel_store_begin(store), 0);
    int rc = funnel_router_apply(router, env, funnel_topic_name(env->body_case), raw, len,
                                 env->occurred_at_ms);
    cr_assert_eq(rc, 0, "%s: %s", funnel_strerror(rc), funnel_store_errmsg(store));
    cr_assert_eq(funnel_store_commit(store), 0);
    collect();
    free(raw);
    funnel_envelope_free(&env);
}

/* The clock reaches now: runs the timers the way funneld's engine timer does. */
static void tick(int64_t now)
{
    for (int pass = 0; pass < 100 && funnel_router_next_deadline(router) <= now; pass++) {
        cr_assert_eq(funnel_store_begin(store), 0);
        cr_assert_eq(funnel_router_fire_timers(router, now), 0, "%s", funnel_store_errmsg(store));
        cr_assert_eq(funnel_store_commit(store), 0);
        collect();
    }
}

/* The next unseen output; asserts there is one. */
static funnel_envelope_t *next_out(const char *topic)
{
    cr_assert_lt(seen_out, n_out, "expected %s, no more output", topic);
    cr_assert_str_eq(out_topic[seen_out], topic);
    return out[seen_out++];
}

static void no_more_out(void)
{
    cr_assert_eq(seen_out, n_out, "unexpected %s", seen_out < n_out ? out_topic[seen_out] : "");
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

Test(sla, overdue_steps_fire_at_once_with_their_original_times)
{
    send(fx_qualified("q1", "L1", SQL, T0));
    tick(T0 + 10 * H);
    cr_assert_eq(next_out("sla.warning")->occurred_at_ms, T0 + 45 * MN);
    expect_escalation(T0 + H, 1, "team-lead", 0);
    expect_escalation(T0 + H + 30 * MN, 2, "head-of-sales", 0);
    expect_escalation(T0 + 2 * H + 30 * MN, 2, "head-of-sales", 1);
    expect_escalation(T0 + 3 * H + 30 * MN, 2, "head-of-sales", 2);
    no_more_out();
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
    /* An acknowledgement naming nothing is harmless. */
    send(fx_acked("a2", "999999", T0 + H + 6 * MN));
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
    cr_assert_eq(n_out, 3);
    seen_out = 3;
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
    /* Contacted Tue Jun 9 10:00 CEST: 4h Monday afternoon + 1h Tuesday morning late. */
    send(fx_contacted("c1", "L1", T0 + 8 * 24 * H + 8 * H));
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
    cr_assert_eq(n_out - seen_out, 5);
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
    cr_assert_eq(funnel_router_next_deadline(router), INT64_MAX);
    free(raw);
    /* The same event again (funneld retries a failed batch) starts it once. */
    send(env);
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
