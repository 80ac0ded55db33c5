/* sla.c — `funnelctl sla list` and `funnelctl sla show ID`: argument parsing and printing over
 * the SLA report API (funnel/sla_report.h), which reads the engine's rows and computes the
 * state shown ("breached" by this caller's clock). */
#include "funnelctl.h"

#include "funnel/error.h"
#include "funnel/report.h"
#include "funnel/sla_report.h"

#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LIMIT 50

/* Reports a failed report (no SLA tables, a locked or corrupt database): it must not pass for
 * an empty list. Returns FCTL_REFUSED. */
static int report_failed(funnel_store_t *st, int rc)
{
    fprintf(stderr, "funnelctl: reading SLA data failed: %s (%s)\n", funnel_strerror(rc),
            sqlite3_errmsg(funnel_store_db(st)));
    return FCTL_REFUSED;
}

/* A time in Unix milliseconds, or "-" for none. */
static void fmt_time(int64_t v, char *out, size_t len)
{
    if (v != FUNNEL_SLA_REPORT_NONE)
        snprintf(out, len, "%lld", (long long)v);
    else
        snprintf(out, len, "-");
}

static void row_print(const fctl_t *ctl, const funnel_sla_row_t *r)
{
    if (ctl->json) {
        fctl_print_json(funnel_report_sla_json(r, false, false), JSON_COMPACT);
        return;
    }
    char started[24], due[24];
    fmt_time(r->started_at_ms, started, sizeof started);
    fmt_time(r->due_at_ms, due, sizeof due);
    printf("%-8lld %-20s %-4lld %-24s %-9s %-14s %-14s %s\n", (long long)r->sla_id, r->policy,
           (long long)r->version, r->key, r->state, started, due, r->owner);
}

static int sla_list(fctl_t *ctl, funnel_store_t *st)
{
    static const char *const states[] = {
        [FUNNEL_SLA_REPORT_OPEN] = "open",
        [FUNNEL_SLA_REPORT_BREACHED] = "breached",
        [FUNNEL_SLA_REPORT_MET] = "met",
    };
    funnel_sla_report_filter_t f = {.limit = ctl->limit ? ctl->limit : DEFAULT_LIMIT};
    for (int i = FUNNEL_SLA_REPORT_OPEN; ctl->state && i <= FUNNEL_SLA_REPORT_MET; i++)
        if (!strcmp(ctl->state, states[i]))
            f.state = (funnel_sla_report_state_t)i;
    if (ctl->state && f.state == FUNNEL_SLA_REPORT_ANY) {
        fprintf(stderr, "funnelctl: --state must be open, breached or met\n");
        return FCTL_USAGE;
    }
    funnel_sla_report_list_t *list;
    int rc = funnel_sla_report_list(st, &f, fctl_now_ms(), &list);
    if (rc)
        return report_failed(st, rc);
    if (!ctl->json)
        printf("%-8s %-20s %-4s %-24s %-9s %-14s %-14s %s\n", "SLA_ID", "POLICY", "VER", "KEY",
               "STATE", "STARTED_MS", "DUE_MS", "OWNER");
    for (size_t i = 0; i < list->n_rows; i++)
        row_print(ctl, &list->rows[i]);
    funnel_sla_report_list_free(&list);
    return FCTL_OK;
}

static int sla_show(fctl_t *ctl, funnel_store_t *st, const char *id)
{
    char *end;
    long long v = strtoll(id, &end, 10);
    if (end == id || *end) {
        fprintf(stderr, "funnelctl: '%s' is not an sla_id\n", id);
        return FCTL_USAGE;
    }
    funnel_sla_row_t *row;
    int rc = funnel_sla_report_show(st, v, fctl_now_ms(), &row);
    if (rc == FUNNEL_ENOTFOUND) {
        fprintf(stderr, "funnelctl: no SLA instance %s\n", id);
        return FCTL_REFUSED;
    }
    if (rc)
        return report_failed(st, rc);
    fctl_print_json(funnel_report_sla_json(row, true, false),
                    ctl->json ? JSON_COMPACT : JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    funnel_sla_report_row_free(&row);
    return FCTL_OK;
}

int fctl_cmd_sla(fctl_t *ctl)
{
    const char *sub = ctl->args[0];
    bool list = !strcmp(sub, "list"), show = !strcmp(sub, "show");
    if (!strcmp(sub, "compliance") && ctl->n_args == 1)
        return fctl_sla_compliance(ctl);
    if ((!list && !show) || (list && ctl->n_args != 1) || (show && ctl->n_args != 2)) {
        fprintf(stderr, "usage: funnelctl sla list [--state open|breached|met] [--json]\n"
                        "       funnelctl sla show ID [--json]\n"
                        "       funnelctl sla compliance --by policy|owner [--week] [--json]\n");
        return FCTL_USAGE;
    }
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    int status = list ? sla_list(ctl, st) : sla_show(ctl, st, ctl->args[1]);
    funnel_store_destroy(&st);
    return status;
}
