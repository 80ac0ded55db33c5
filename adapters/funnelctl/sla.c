/* sla.c — `funnelctl sla list` and `funnelctl sla show ID`: argument parsing and printing over
 * the SLA report API (funnel/sla_report.h), which reads the engine's rows and computes the
 * state shown ("breached" by this caller's clock). */
#include "funnelctl.h"

#include "funnel/date.h"
#include "funnel/error.h"
#include "funnel/report.h"
#include "funnel/sla_report.h"

#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LIMIT 50

static json_t *opt_int(int64_t v)
{
    return v == FUNNEL_SLA_REPORT_NONE ? json_null() : json_integer(v);
}

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
    printf("%-8lld %-24s %-4lld %-24s %-9s %-14s %-14s %-16s %-24s %s\n", (long long)r->sla_id,
           r->policy, (long long)r->version, r->key, r->state, started, due, r->owner, r->process,
           r->responsible);
}

static int sla_list(fctl_t *ctl, funnel_store_t *st)
{
    funnel_sla_report_filter_t f = {.limit = ctl->limit ? ctl->limit : DEFAULT_LIMIT};
    if (ctl->state && funnel_sla_report_state_parse(ctl->state, &f.state)) {
        fprintf(stderr, "funnelctl: --state must be " FUNNEL_SLA_REPORT_STATE_NAMES "\n");
        return FCTL_USAGE;
    }
    funnel_sla_report_list_t *list;
    int rc = funnel_sla_report_list(st, &f, fctl_now_ms(), &list);
    if (rc)
        return report_failed(st, rc);
    if (!ctl->json)
        printf("%-8s %-24s %-4s %-24s %-9s %-14s %-14s %-16s %-24s %s\n", "SLA_ID", "POLICY", "VER",
               "KEY", "STATE", "STARTED_MS", "DUE_MS", "OWNER", "PROCESS", "RESPONSIBLE");
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

/* Prints one JSON value compactly and drops it. */
static void json_print(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(o);
}

/* `sla next --policy P --queue Q`: the instance to take now and the queue's length. */
static int sla_next(fctl_t *ctl, funnel_store_t *st)
{
    funnel_sla_next_t nx;
    int rc = funnel_sla_report_next(st, ctl->policy, ctl->queue, fctl_now_ms(), &nx);
    if (rc)
        return report_failed(st, rc);
    if (ctl->json) {
        json_print(
            json_pack("{s:s, s:s, s:I, s:I, s:o}", "policy", ctl->policy, "queue", ctl->queue,
                      "length", (json_int_t)nx.length, "paused", (json_int_t)nx.paused, "next",
                      nx.found ? funnel_report_sla_json(&nx.row, false, false) : json_null()));
        return FCTL_OK;
    }
    printf("queue %s of %s: %lld waiting (%lld paused)\n", ctl->queue, ctl->policy,
           (long long)nx.length, (long long)nx.paused);
    if (nx.found)
        printf("next: sla %lld, key %s, priority %lld, opened_at_ms %lld, due_at_ms %lld, "
               "owner %s\n",
               (long long)nx.row.sla_id, nx.row.key, (long long)nx.row.priority,
               (long long)nx.row.opened_at_ms, (long long)nx.row.due_at_ms,
               nx.row.owner[0] ? nx.row.owner : "-");
    else
        printf("next: nothing to take\n");
    return FCTL_OK;
}

/* Monday 00:00 UTC of the week of at_ms. */
static int64_t week_start_utc(int64_t at_ms)
{
    const int64_t day = 86400000LL;
    int64_t days = at_ms / day; /* 1970-01-01 was a Thursday */
    return (days - (days + 3) % 7) * day;
}

/* `sla status [--from DATE]`: per process, the figures a joint weekly meeting starts from. */
static int sla_status(fctl_t *ctl, funnel_store_t *st)
{
    int64_t now = fctl_now_ms(), since = week_start_utc(now), end;
    if (ctl->from && funnel_date_parse(ctl->from, &since, &end)) {
        fprintf(stderr, "funnelctl: --from '%s' is not YYYY-MM-DD or YYYY-MM\n", ctl->from);
        return FCTL_USAGE;
    }
    funnel_sla_status_t *s;
    int rc = funnel_sla_report_status(st, since, now, &s);
    if (rc)
        return report_failed(st, rc);
    if (!ctl->json)
        printf("%-24s %-24s %-16s %6s %8s %9s %8s %8s %12s\n", "PROCESS", "POLICY", "RESPONSIBLE",
               "OPEN", "AT_RISK", "BREACHED", "ON_TIME", "LATE", "OLDEST_OPEN");
    for (size_t i = 0; i < s->n_rows; i++) {
        const funnel_sla_status_row_t *r = &s->rows[i];
        if (ctl->json) {
            json_print(json_pack(
                "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "process", r->process,
                "policy", r->policy, "responsible", r->responsible, "since_ms", (json_int_t)since,
                "open", (json_int_t)r->open, "at_risk", (json_int_t)r->at_risk, "breached",
                (json_int_t)r->breached, "met_on_time", (json_int_t)r->met_on_time, "met_late",
                (json_int_t)r->met_late, "oldest_open_age_ms", opt_int(r->oldest_open_age_ms)));
            continue;
        }
        char age[24] = "-";
        if (r->oldest_open_age_ms != FUNNEL_SLA_REPORT_NONE)
            snprintf(age, sizeof age, "%lldh%02lldm", (long long)(r->oldest_open_age_ms / 3600000),
                     (long long)(r->oldest_open_age_ms / 60000 % 60));
        printf("%-24s %-24s %-16s %6lld %8lld %9lld %8lld %8lld %12s\n", r->process, r->policy,
               r->responsible[0] ? r->responsible : "-", (long long)r->open, (long long)r->at_risk,
               (long long)r->breached, (long long)r->met_on_time, (long long)r->met_late, age);
    }
    funnel_sla_report_status_free(&s);
    return FCTL_OK;
}

int fctl_cmd_sla(fctl_t *ctl)
{
    const char *sub = ctl->args[0];
    bool list = !strcmp(sub, "list"), show = !strcmp(sub, "show"), next = !strcmp(sub, "next"),
         status = !strcmp(sub, "status");
    if (!strcmp(sub, "compliance") && ctl->n_args == 1)
        return fctl_sla_compliance(ctl);
    if ((!list && !show && !next && !status) || (show ? ctl->n_args != 2 : ctl->n_args != 1) ||
        (next && (!ctl->policy || !ctl->queue))) {
        fprintf(stderr,
                "usage: funnelctl sla list [--state open|breached|live|met|expired] [--json]\n"
                "       funnelctl sla show ID [--json]\n"
                "       funnelctl sla next --policy P --queue Q [--json]\n"
                "       funnelctl sla status [--from DATE] [--json]\n"
                "       funnelctl sla compliance --by policy|owner [--week] [--json]\n");
        return FCTL_USAGE;
    }
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    int rc = list   ? sla_list(ctl, st)
             : show ? sla_show(ctl, st, ctl->args[1])
             : next ? sla_next(ctl, st)
                    : sla_status(ctl, st);
    funnel_store_destroy(&st);
    return rc;
}
