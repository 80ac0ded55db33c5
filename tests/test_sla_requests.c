/* test_sla_requests.c — the SLA engine on internal requests: first-answer and resolution
 * policies on a business calendar, reassignment, reopening, early events, processing order
 * (sla.order_violated) and the figures of `sla next` and `sla status` (sla_report.h). Driven
 * directly like test_sla.c: a temporary store, the real router, an injected clock. */
#include "engine_fx.h"
#include "harness.h"
#include "sla_fx.h"

#include "funnel/error.h"
#include "funnel/sla_report.h"
#include "sla.h"

#include <criterion/criterion.h>
#include <libconfig.h>
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
    "   escalation = ( { after = \"0\"; notify = \"head-of-marketing\"; } ); } );"

static fx_tmpdir_t tmp;
static funnel_store_t *store;
static funnel_router_t *router;
static funnel_sla_t *sla;
static funnel_sla_config_t cfg;
static fx_engine_t eng = {.keep = "sla."};

static void cfg_set(const char *body)
{
    config_t lc;
    char text[8192], err[512] = "";
    snprintf(text, sizeof text, "sla = { %s };", body);
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE, "%s", config_error_text(&lc));
    int rc = funnel_sla_config_parse(config_lookup(&lc, "sla"), &cfg, err, sizeof err);
    config_destroy(&lc);
    cr_assert_eq(rc, 0, "%s", err);
}

static void setup(void)
{
    char err[512], path[400];
    fx_tmpdir_make(&tmp);
    snprintf(path, sizeof path, "%s/sla.db", tmp.path);
    cr_assert_eq(funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err),
                 0, "%s", err);
    funnel_sla_config_defaults(&cfg);
    cfg_set(CALENDAR POLICIES);
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
    fx_engine_tick(&eng, OPEN9 + 7 * H);
    cr_assert_str_eq(expect("sla.warning", "materials_answer", OPEN9 + 6 * H)->owner,
                     "mkt-sidorov");
    fx_engine_no_more(&eng);
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

Test(sla_req, an_answer_before_its_open_is_held_until_the_open_arrives)
{
    send_at(fx_req_answered("a1", "R1", OPEN9 + H), OPEN9 + H);
    fx_engine_no_more(&eng);
    send_at(fx_req_opened("o1", "R1", "materials", "q", 0, "mkt-petrova", OPEN9), OPEN9 + 2 * H);
    funnel_envelope_t *met = next_out("sla.met");
    cr_assert_str_eq(met->sla_met->sla->policy, "materials_answer");
    cr_assert(met->sla_met->on_time);
    cr_assert_str_eq(met->sla_met->stop_event_id, "a1");
    fx_engine_no_more(&eng);
}
