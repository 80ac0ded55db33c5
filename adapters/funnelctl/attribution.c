/* attribution.c — `funnelctl attribution`: revenue per campaign, source, medium or channel under
 * one attribution model or all of them side by side, read from the database read-only.
 *
 * The credits summed are funneld's attribution.credited postings (reversals and refunds
 * included), filtered by their event time: a payment's credits count on the payment's day, a
 * refund's on the refund's day. Amounts are minor units per currency; currencies never mix. */
#include "funnelctl.h"

#include "funnel/attribution_report.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "funnel/report.h"
#include "funnel/date.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NM FUNNEL_ATTR_MODEL_COUNT_

typedef funnel_report_attr_t report_t;

static const char *shown(const char *group)
{
    return *group ? group : "(none)";
}

static void print_text(const report_t *r)
{
    int width = (int)strlen(r->by);
    for (size_t i = 0; i < r->n; i++) {
        int w = (int)strlen(shown(r->rows[i].group));
        width = w > width ? w : width;
    }
    printf("%-*s  %-8s", width, r->by, "currency");
    for (unsigned m = 0; m < NM; m++)
        if (r->models & (1u << m))
            printf("  %14s", funnel_attribution_model_name(m));
    printf("\n");
    for (size_t i = 0; i < r->n; i++) {
        printf("%-*s  %-8s", width, shown(r->rows[i].group), r->rows[i].currency);
        for (unsigned m = 0; m < NM; m++)
            if (r->models & (1u << m))
                printf("  %14lld", (long long)r->rows[i].credit[m]);
        printf("\n");
    }
    printf("(amounts in minor units of each currency)\n");
}

/* Reads --by, --model/--all-models and --from/--to into r; prints why not and returns false. */
static bool report_options(const fctl_t *ctl, report_t *r)
{
    int64_t ignored;
    if (!(r->by = funnel_report_attr_group(ctl->by))) {
        fprintf(stderr, "funnelctl: attribution needs --by campaign, source, medium or channel\n");
        return false;
    }
    funnel_attribution_model_t m = FUNNEL_ATTR_LINEAR;
    if (ctl->model && ctl->all_models) {
        fprintf(stderr, "funnelctl: --model and --all-models exclude each other\n");
        return false;
    }
    if (ctl->model && funnel_attribution_model_parse(ctl->model, &m)) {
        fprintf(stderr, "funnelctl: unknown model '%s'\n", ctl->model);
        return false;
    }
    r->models = ctl->all_models ? FUNNEL_ATTR_ALL_MODELS : 1u << m;
    r->from = INT64_MIN;
    r->to = INT64_MAX;
    const char *bad = ctl->from && funnel_date_parse(ctl->from, &r->from, &ignored) ? ctl->from
                      : ctl->to && funnel_date_parse(ctl->to, &ignored, &r->to)     ? ctl->to
                                                                                    : NULL;
    if (bad) {
        fprintf(stderr, "funnelctl: '%s' is not a UTC date YYYY-MM-DD or month YYYY-MM\n", bad);
        return false;
    }
    if (r->from >= r->to) {
        fprintf(stderr, "funnelctl: --from %s is after --to %s\n", ctl->from, ctl->to);
        return false;
    }
    if (ctl->json && ctl->csv) {
        fprintf(stderr, "funnelctl: --json and --csv exclude each other\n");
        return false;
    }
    return true;
}

int fctl_cmd_attribution(fctl_t *ctl)
{
    report_t r = {0};
    if (!report_options(ctl, &r))
        return FCTL_USAGE;
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    char err[512];
    funnel_report_attr_model_t *m = NULL;
    int rc = funnel_report_attr_model_new(&m);
    rc = rc ? rc : funnel_report_attribution(m, st, &r, err, sizeof err);
    funnel_report_attr_model_destroy(&m);
    if (rc)
        fprintf(stderr, "funnelctl: %s\n", rc == FUNNEL_ENOMEM ? funnel_strerror(rc) : err);
    if (!rc && ctl->json)
        rc = fctl_print_json(funnel_report_attribution_json(&r), JSON_INDENT(2));
    else if (!rc && ctl->csv)
        funnel_report_attribution_csv(&r, stdout);
    else if (!rc)
        print_text(&r);
    funnel_report_attribution_clear(&r);
    funnel_store_destroy(&st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}
