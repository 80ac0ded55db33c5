/* funnel.c — `funnelctl funnel`, `funnelctl sla compliance` and `funnelctl quota`: the figures
 * funnel-web's page shows, from the same report library (funnel/report.h), in the terminal. */
#include "funnelctl.h"

#include "funnel/date.h"
#include "funnel/error.h"
#include "funnel/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --from/--to (UTC dates or months, inclusive) into [*from, *to); prints why not. */
static bool date_range(const fctl_t *ctl, int64_t *from, int64_t *to)
{
    int64_t ignored;
    *from = INT64_MIN;
    *to = INT64_MAX;
    const char *bad = ctl->from && funnel_date_parse(ctl->from, from, &ignored) ? ctl->from
                      : ctl->to && funnel_date_parse(ctl->to, &ignored, to)     ? ctl->to
                                                                                : NULL;
    if (bad)
        fprintf(stderr, "funnelctl: '%s' is not a UTC date YYYY-MM-DD or month YYYY-MM\n", bad);
    else if (*from >= *to)
        fprintf(stderr, "funnelctl: --from %s is after --to %s\n", ctl->from, ctl->to);
    return !bad && *from < *to;
}

static const char *shown(const char *group)
{
    return *group ? group : "(none)";
}

static void print_ms(int64_t v)
{
    if (v == FUNNEL_REPORT_NONE)
        printf("  %12s", "-");
    else
        printf("  %12lld", (long long)v);
}

static void funnel_text(const funnel_report_funnel_table_t *t)
{
    printf("%-24s %7s %7s %7s %9s %7s %7s  %12s  %12s  %12s  %s\n", t->by, "leads", "mql", "sql",
           "contacted", "won", "lost", "mql_sql_ms", "sql_contact", "sql_won_ms", "revenue");
    for (size_t i = 0; i < t->n; i++) {
        const funnel_report_funnel_row_t *r = &t->rows[i];
        printf("%-24s %7lld %7lld %7lld %9lld %7lld %7lld", shown(r->group), (long long)r->leads,
               (long long)r->mql, (long long)r->sql, (long long)r->contacted, (long long)r->won,
               (long long)r->lost);
        print_ms(r->median_mql_sql_ms);
        print_ms(r->median_sql_contact_ms);
        print_ms(r->median_sql_won_ms);
        for (size_t k = 0; k < r->n_revenue; k++)
            printf("  %s %lld", r->revenue[k].currency, (long long)r->revenue[k].net);
        printf("\n");
    }
    printf("(median times in ms; revenue = payments - refunds, minor units)\n");
}

int fctl_cmd_funnel(fctl_t *ctl)
{
    int64_t from, to;
    if (!funnel_report_funnel_group(ctl->by)) {
        fprintf(stderr, "funnelctl: funnel needs --by campaign, channel, source, medium, "
                        "segment or month\n");
        return FCTL_USAGE;
    }
    if (!date_range(ctl, &from, &to))
        return FCTL_USAGE;
    if (ctl->json && ctl->csv) {
        fprintf(stderr, "funnelctl: --json and --csv exclude each other\n");
        return FCTL_USAGE;
    }
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    funnel_report_funnel_t *m = NULL;
    funnel_report_funnel_table_t *t = NULL;
    char err[512] = "";
    int rc = funnel_report_funnel_new(&m);
    rc = rc ? rc : funnel_report_funnel_refresh(m, st);
    rc = rc ? rc : funnel_report_funnel_table(m, ctl->by, from, to, &t, err, sizeof err);
    if (rc)
        fprintf(stderr, "funnelctl: %s\n",
                *err                  ? err
                : rc == FUNNEL_ESTORE ? funnel_store_errmsg(st)
                                      : funnel_strerror(rc));
    else if (ctl->json)
        rc = fctl_print_json(funnel_report_funnel_json(t), JSON_INDENT(2));
    else if (ctl->csv)
        funnel_report_funnel_csv(t, stdout);
    else
        funnel_text(t);
    funnel_report_funnel_table_free(&t);
    funnel_report_funnel_destroy(&m);
    funnel_store_destroy(&st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}

static void compliance_text(const funnel_report_compliance_t *c)
{
    printf("%-24s %-10s %9s %8s %8s %6s %8s %8s  %14s  %14s\n", c->by, "week", "instances",
           "on_time", "late", "open", "breached", "on_time%", "median_ms", "p90_ms");
    for (size_t i = 0; i < c->n; i++) {
        const funnel_report_compliance_row_t *r = &c->rows[i];
        char week[16] = "-", pct[16] = "-";
        int64_t met = r->met_on_time + r->met_late;
        if (r->week_ms != FUNNEL_REPORT_NONE)
            funnel_date_format(r->week_ms, week, sizeof week);
        json_t *p = funnel_report_compliance_pct(r);
        if (json_is_string(p))
            snprintf(pct, sizeof pct, "%s", json_string_value(p));
        json_decref(p);
        (void)met;
        printf("%-24s %-10s %9lld %8lld %8lld %6lld %8lld %8s", shown(r->group), week,
               (long long)r->instances, (long long)r->met_on_time, (long long)r->met_late,
               (long long)r->open, (long long)r->breached, pct);
        print_ms(r->median_ms);
        print_ms(r->p90_ms);
        printf("\n");
    }
    printf("(times from opening to the stop, wall-clock ms)\n");
}

int fctl_sla_compliance(fctl_t *ctl)
{
    int64_t from, to;
    if (!funnel_report_compliance_group(ctl->by)) {
        fprintf(stderr, "funnelctl: sla compliance needs --by policy or owner\n");
        return FCTL_USAGE;
    }
    if (!date_range(ctl, &from, &to))
        return FCTL_USAGE;
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    funnel_report_compliance_t *c = NULL;
    int rc = funnel_report_compliance(st, ctl->by, ctl->week, from, to, fctl_now_ms(), &c);
    if (rc)
        fprintf(stderr, "funnelctl: %s\n",
                rc == FUNNEL_ESTORE ? funnel_store_errmsg(st) : funnel_strerror(rc));
    else if (ctl->json)
        rc = fctl_print_json(funnel_report_compliance_json(c), JSON_INDENT(2));
    else
        compliance_text(c);
    funnel_report_compliance_free(&c);
    funnel_store_destroy(&st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}

int fctl_cmd_quota(fctl_t *ctl)
{
    if (!ctl->config_path) {
        fprintf(stderr, "funnelctl: quota needs --config (funneld's file: the minimums)\n");
        return FCTL_USAGE;
    }
    funnel_report_quota_def_t *defs;
    size_t n;
    char err[512];
    if (funnel_report_quota_defs(ctl->config_path, &defs, &n, err, sizeof err)) {
        fprintf(stderr, "funnelctl: %s\n", err);
        return FCTL_REFUSED;
    }
    funnel_store_t *st = fctl_store_open(ctl);
    int rc = FUNNEL_ESTORE;
    if (st) {
        json_t *doc = funnel_report_quota_json(st, defs, n, fctl_now_ms());
        if (!doc)
            fprintf(stderr, "funnelctl: reading quotas failed: %s\n", funnel_store_errmsg(st));
        rc = doc ? fctl_print_json(doc, JSON_INDENT(2)) : FUNNEL_ESTORE;
    }
    funnel_store_destroy(&st);
    free(defs);
    return rc ? FCTL_REFUSED : FCTL_OK;
}
