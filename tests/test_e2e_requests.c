/* test_e2e_requests.c — requests through the real funneld: the request topics acknowledged and
 * refused, an answer held until its open, a reassignment, a violation of processing order, and
 * what `funnelctl sla next` and `sla status` print for that stream. Event times are in the past
 * on the 24x7 calendar, so every figure is known whatever the test's clock. */
#include "harness.h"
#include "sla_fx.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fx_tmpdir_t tmp;
static fx_daemon_t fd;
static funnel_client_t *client;
static char conf[300];

static const char config_text[] =
    "sla = {\n"
    "  policies = ( {\n"
    "    name = \"materials_first_answer\"; process = \"Materials for sales\";\n"
    "    responsible = \"marketing\"; start = \"request.opened kind=materials\";\n"
    "    key = \"request_id\"; assign = [\"request.assigned\"];\n"
    "    stop = [\"request.answered\", \"request.closed\"]; target = \"8h\";\n"
    "    escalation = ( { after = \"0\"; notify = \"head-of-marketing\"; } );\n"
    "  }, {\n"
    "    name = \"materials_done\"; process = \"Materials for sales\";\n"
    "    responsible = \"marketing\"; start = \"request.opened kind=materials\";\n"
    "    reopen = [\"request.reopened\"]; key = \"request_id\"; assign = [\"request.assigned\"];\n"
    "    stop = [\"request.closed\"]; target = \"24h\"; order = \"fifo\"; queue = \"queue\";\n"
    "    priority = \"priority\";\n"
    "  } );\n"
    "};\n";

static void start(void)
{
    fx_suite_start(&tmp, &fd, &client, config_text, conf);
}

static void stop(void)
{
    fx_suite_stop(&tmp, &fd, &client);
}

TestSuite(e2e_requests, .init = start, .fini = stop, .timeout = 120);

/* Mon 2026-06-01 09:00 UTC. */
static const int64_t T = 1780304400000LL, MN = 60000LL;

static void submit(funnel_envelope_t *env)
{
    fx_submit(client, &fd, env, FUNNEL_SUBMIT_OK);
}

/* The sla.order_violated rows committed so far, as "TAKEN>SKIPPED" lines, and the owner of the
 * last sla.met of key `owner_of` (when not NULL). */
typedef struct seen {
    char pairs[512];
    const char *owner_of;
    char owner[64];
} seen_t;

static int seen_row(const funnel_outbox_row_t *row, void *arg)
{
    seen_t *s = arg;
    funnel_envelope_t *e = funnel__v1__envelope__unpack(NULL, row->len, row->envelope);
    cr_assert_not_null(e);
    if (e->body_case == FUNNEL__V1__ENVELOPE__BODY_SLA_ORDER_VIOLATED) {
        const Funnel__V1__SlaOrderViolated *ov = e->sla_order_violated;
        for (size_t i = 0; i < ov->n_skipped; i++) {
            size_t n = strlen(s->pairs);
            snprintf(s->pairs + n, sizeof s->pairs - n, "%s>%s ", ov->sla->key,
                     ov->skipped[i]->key);
        }
    }
    if (e->body_case == FUNNEL__V1__ENVELOPE__BODY_SLA_MET && s->owner_of &&
        !strcmp(e->sla_met->sla->key, s->owner_of))
        snprintf(s->owner, sizeof s->owner, "%s", e->sla_met->sla->owner);
    funnel_envelope_free(&e);
    return 0;
}

/* Reads the committed outputs: an event's outputs are committed before its acknowledgement. */
static void outputs_seen(seen_t *s)
{
    funnel_store_t *st;
    char err[256];
    s->pairs[0] = s->owner[0] = '\0';
    cr_assert_eq(funnel_store_open(fd.db, true, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(funnel_store_outbox_read(st, 1, 100000, seen_row, s), 0);
    funnel_store_destroy(&st);
}

Test(e2e_requests, lifecycle_order_violation_next_and_status)
{
    /* An empty id is refused with the field named; nothing of it is recorded. */
    funnel_submit_result_t res =
        fx_submit(client, &fd, fx_req_answered("bad", "", T), FUNNEL_SUBMIT_REJECTED);
    cr_assert(strstr(res.reason, "missing field: request_answered.request_id"), "%s", res.reason);

    /* R9's answer arrives before its open: held, then met on time when the open comes. */
    submit(fx_req_answered("a9", "R9", T + 5 * MN));
    submit(fx_req_opened("o9", "R9", "materials", "apac", 0, "mkt-petrova", T));
    /* Queue emea: R1, R2, R3 opened 10 minutes apart; R1 assigned; R3 closed first. */
    submit(fx_req_opened("o1", "R1", "materials", "emea", 0, "", T));
    submit(fx_req_opened("o2", "R2", "materials", "emea", 0, "", T + 10 * MN));
    submit(fx_req_opened("o3", "R3", "materials", "emea", 0, "", T + 20 * MN));
    submit(fx_req_assigned("g1", "R1", "mkt-sidorov", T + 30 * MN));
    submit(fx_req_closed("c3", "R3", T + 60 * MN));
    submit(fx_req_answered("a1", "R1", T + 90 * MN));
    seen_t s = {.owner_of = "R1"};
    outputs_seen(&s);
    cr_assert_str_eq(s.pairs, "R3>R1 R3>R2 ", "%s", s.pairs);
    cr_assert_str_eq(s.owner, "mkt-sidorov", "the answer's sla.met names the new owner");

    char out[8192];
    const char *next[] = {"sla",     "next", "--policy", "materials_done",
                          "--queue", "emea", "--json",   NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, next), 0, "%s", out);
    cr_assert(strstr(out, "\"length\":2"), "%s", out);
    cr_assert(strstr(out, "\"key\":\"R1\""), "the oldest running: %s", out);
    cr_assert(strstr(out, "\"owner\":\"mkt-sidorov\""), "%s", out);
    const char *status[] = {"sla", "status", "--from", "2026-06-01", "--json", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, status), 0, "%s", out);
    /* Answers: R9 and R1 on time, R2 and R3 open and long past due. Done: R3 on time; R1, R2
     * and R9 open, past due. */
    cr_assert(strstr(out, "\"process\":\"Materials for sales\",\"policy\":"
                          "\"materials_done\",\"responsible\":\"marketing\""),
              "%s", out);
    cr_assert(strstr(out, "\"policy\":\"materials_first_answer\""), "%s", out);
    cr_assert(strstr(out, "\"open\":2,\"at_risk\":0,\"breached\":2,\"met_on_time\":2,"
                          "\"met_late\":0"),
              "answers: %s", out);
    cr_assert(strstr(out, "\"open\":3,\"at_risk\":0,\"breached\":3,\"met_on_time\":1,"
                          "\"met_late\":0"),
              "done: %s", out);
    const char *list[] = {"sla", "list", NULL};
    cr_assert_eq(fx_ctl(&fd, out, sizeof out, list), 0, "%s", out);
    cr_assert(strstr(out, "Materials for sales") && strstr(out, "marketing"), "%s", out);
}
