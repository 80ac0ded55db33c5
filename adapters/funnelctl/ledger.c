/* ledger.c — `funnelctl payout`, `funnelctl statement` and `funnelctl ledger check`.
 *
 * payout goes through funneld like any publisher (a commission.paid event on the submit
 * socket): funneld is the ledger's one writer. statement and check only read the database.
 * Dates are UTC: a period "2026-11" is [2026-11-01 00:00, 2026-12-01 00:00); --through
 * "2026-11-30" includes the whole day, "2026-11" the whole month. */
#include "funnelctl.h"

#include "funnel/client.h"
#include "funnel/date.h"
#include "funnel/error.h"
#include "funnel/ledger_report.h"
#include "funnel/report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks the --rep and date options every ledger command needs and parses the date. */
static bool rep_and_date(const fctl_t *ctl, const char *date, const char *option, int64_t *start,
                         int64_t *end)
{
    if (!ctl->rep || !*ctl->rep || !date) {
        fprintf(stderr, "funnelctl: --rep and %s are required\n", option);
        return false;
    }
    if (funnel_date_parse(date, start, end)) {
        fprintf(stderr, "funnelctl: %s '%s' is not a UTC date YYYY-MM-DD or month YYYY-MM\n",
                option, date);
        return false;
    }
    return true;
}

/* Builds the commission.paid envelope; ids are derived from rep and date so that running the
 * same payout twice is a duplicate funneld ignores. */
static funnel_envelope_t *payout_envelope(const fctl_t *ctl, int64_t through_ms)
{
    char id[FUNNEL_ID_MAX + 2];
    int n = snprintf(id, sizeof id, "payout:%s:%s", ctl->rep, ctl->through);
    if (n < 0 || n > FUNNEL_ID_MAX) {
        fprintf(stderr, "funnelctl: rep name too long for a payout id\n");
        return NULL;
    }
    funnel_envelope_t *env = malloc(sizeof *env);
    Funnel__V1__CommissionPaid *paid = malloc(sizeof *paid);
    if (!env || !paid) {
        free(env);
        free(paid);
        return NULL;
    }
    funnel__v1__envelope__init(env);
    funnel__v1__commission_paid__init(paid);
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID;
    env->commission_paid = paid;
    paid->through_ms = through_ms;
    env->occurred_at_ms = fctl_now_ms();
    /* Each string is set only when its copy succeeded, so free_unpacked never meets the
     * protobuf-c shared empty default as something to free. */
    char *s;
    if ((s = strdup(id)))
        env->event_id = s;
    if (s && (s = strdup(id)))
        paid->payout_id = s;
    if (s && (s = strdup(ctl->rep)))
        paid->rep = s;
    if (s && (s = strdup(ctl->source)))
        env->source = s;
    if (!s)
        funnel_envelope_free(&env);
    return env;
}

int fctl_cmd_payout(fctl_t *ctl)
{
    int64_t start, through_end;
    if (!rep_and_date(ctl, ctl->through, "--through", &start, &through_end))
        return FCTL_USAGE;
    /* Paying through days still to come would pay postings dated in the future before their
     * events are final. A month is allowed once its last day is today or past. */
    int64_t today_start, today_end;
    char today[16];
    funnel_date_format(fctl_now_ms(), today, sizeof today);
    if (!funnel_date_parse(today, &today_start, &today_end) && through_end > today_end) {
        fprintf(stderr,
                "funnelctl: --through %s ends after today (%s UTC): a payout cannot cover "
                "days still to come\n",
                ctl->through, today);
        return FCTL_USAGE;
    }
    funnel_envelope_t *env = payout_envelope(ctl, through_end - 1);
    if (!env)
        return FCTL_REFUSED;
    int status = fctl_submit(ctl, "commission.paid", env);
    funnel_envelope_free(&env);
    return status;
}

/* ---- statement ------------------------------------------------------------------------- */

static void date_of(int64_t ms, char *out, size_t len)
{
    funnel_date_format(ms, out, len);
}

static void print_text(const fctl_t *ctl, const funnel_ledger_statement_t *st)
{
    char from[16], last[16];
    date_of(st->from_ms, from, sizeof from);
    date_of(st->to_ms - 1, last, sizeof last);
    printf("statement rep=%s period=%s (UTC %s .. %s), amounts in minor units\n", ctl->rep,
           ctl->period, from, last);
    for (size_t i = 0; i < st->n_sections; i++) {
        const funnel_ledger_section_t *sec = &st->sections[i];
        printf("\n%s\n  opening    %20lld\n", sec->currency, (long long)sec->opening);
        for (size_t k = 0; k < sec->n_lines; k++) {
            const funnel_ledger_posting_t *p = &sec->lines[k];
            char day[16];
            date_of(p->effective_ms, day, sizeof day);
            printf("  %s %-8s %12lld  rate_bp=%lld role=%s client=%s entry=%s cause=%s "
                   "subject=%s\n",
                   day, p->kind, (long long)p->amount, (long long)p->rate_bp,
                   p->role[0] ? p->role : "-", p->client_id[0] ? p->client_id : "-", p->entry_id,
                   p->cause_event_id, p->subject_event_id);
        }
        printf("  accruals   %20lld\n  clawbacks  %20lld\n  payouts    %20lld\n"
               "  closing    %20lld%s\n",
               (long long)sec->accruals, (long long)sec->clawbacks, (long long)sec->payouts,
               (long long)sec->closing, sec->reconciles ? "" : "  DOES NOT RECONCILE");
    }
}

int fctl_cmd_statement(fctl_t *ctl)
{
    int64_t from, to;
    if (!rep_and_date(ctl, ctl->period, "--period", &from, &to))
        return FCTL_USAGE;
    if (ctl->json && ctl->csv) {
        fprintf(stderr, "funnelctl: --json and --csv exclude each other\n");
        return FCTL_USAGE;
    }
    funnel_store_t *store = fctl_store_open(ctl);
    if (!store)
        return FCTL_REFUSED;
    funnel_ledger_statement_t *st = NULL;
    int rc = funnel_ledger_statement(store, ctl->rep, from, to, &st);
    int status = FCTL_REFUSED;
    if (rc == FUNNEL_EINVAL) {
        fprintf(stderr,
                "funnelctl: a total of %s's statement for %s does not fit in a 64-bit integer "
                "of minor units\n",
                ctl->rep, ctl->period);
    } else if (rc) {
        fprintf(stderr, "funnelctl: statement failed: %s: %s\n", funnel_strerror(rc),
                funnel_store_errmsg(store));
    } else if (!st->rep_known) {
        /* No posting ever is most likely a misspelt name, which an empty statement hides. */
        fprintf(stderr, "funnelctl: rep %s has no postings (check the name)\n", ctl->rep);
    } else {
        if (ctl->json)
            fctl_print_json(funnel_report_statement_json(ctl->rep, ctl->period, st),
                            JSON_INDENT(2));
        else if (ctl->csv)
            funnel_report_statement_csv(st, stdout);
        else
            print_text(ctl, st);
        status = FCTL_OK;
        for (size_t i = 0; i < st->n_sections; i++)
            if (!st->sections[i].reconciles)
                status = FCTL_REFUSED;
    }
    funnel_ledger_statement_free(&st);
    funnel_store_destroy(&store);
    return status;
}

/* ---- ledger check ---------------------------------------------------------------------- */

static void print_problem(const char *problem, void *arg)
{
    (void)arg;
    printf("problem: %s\n", problem);
}

static void print_held(const char *held, void *arg)
{
    (void)arg;
    printf("held: %s\n", held);
}

/* Refunds that claw back nothing are not a fault of the books (a refund may simply precede its
 * payment), so they are listed without failing the check. */
static int print_unmatched_refunds(funnel_store_t *store)
{
    int64_t n = 0;
    int rc = funnel_ledger_unmatched_refunds(store, print_held, NULL, &n);
    if (!rc && n)
        printf("%lld unmatched refund(s) held: a refund claws back only from a payment of its "
               "own client and currency\n",
               (long long)n);
    return rc;
}

int fctl_cmd_ledger(fctl_t *ctl)
{
    if (strcmp(ctl->args[0], "check") != 0) {
        fprintf(stderr, "funnelctl: unknown ledger command '%s' (try: ledger check)\n",
                ctl->args[0]);
        return FCTL_USAGE;
    }
    funnel_store_t *store = fctl_store_open(ctl);
    if (!store)
        return FCTL_REFUSED;
    int64_t problems = 0, postings = 0, balances = 0;
    int rc = funnel_ledger_check(store, print_problem, NULL, &problems, &postings, &balances);
    rc = rc ? rc : print_unmatched_refunds(store);
    int status = FCTL_REFUSED;
    if (rc)
        fprintf(stderr, "funnelctl: ledger check could not run: %s\n", funnel_store_errmsg(store));
    else if (problems)
        printf("ledger check FAILED: %lld problem(s) in %lld postings, %lld balances\n",
               (long long)problems, (long long)postings, (long long)balances);
    else {
        printf("ledger check ok: %lld postings balance, %lld balances equal their postings\n",
               (long long)postings, (long long)balances);
        status = FCTL_OK;
    }
    funnel_store_destroy(&store);
    return status;
}
