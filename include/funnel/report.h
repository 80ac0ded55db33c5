/* report.h — the figures funnelctl and funnel-web both show, built in one place so the terminal
 * and the page can never disagree: attribution per group and model, a rep's statement, SLA
 * instances, the funnel per group and SLA compliance.
 *
 * Every function reads a database opened read-only (funnel_store_open(path, true, ...)) and
 * builds plain data or a jansson value; the callers only print or serve it. int64 amounts are
 * decimal strings in JSON (readers that parse numbers as doubles lose digits above 2^53). */
#ifndef FUNNEL_REPORT_H
#define FUNNEL_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "funnel/attribution_report.h"
#include "funnel/ledger_report.h"
#include "funnel/sla_report.h"

typedef struct funnel_store funnel_store_t;

/* A new JSON string holding v in decimal; NULL when out of memory. */
json_t *funnel_report_int(int64_t v);

/* A CSV field per RFC 4180 (quoted, quotes doubled, when it holds , " CR or LF), then `after`. */
void funnel_report_csv_field(FILE *out, const char *s, const char *after);

/* ---- attribution ---------------------------------------------------------------------- */

/* One row: a group value in one currency, a total per model. */
typedef struct funnel_report_attr_row {
    char *group;    /* owned */
    char *currency; /* owned */
    int64_t credit[FUNNEL_ATTR_MODEL_COUNT_];
} funnel_report_attr_row_t;

typedef struct funnel_report_attr {
    const char *by;                 /* campaign, source, medium or channel (static) */
    unsigned models;                /* bit per model shown */
    int64_t from, to;               /* [from, to) in Unix ms */
    funnel_report_attr_row_t *rows; /* owned; sorted by group, currency */
    size_t n;
} funnel_report_attr_t;

/* The static name of an attribution grouping, or NULL when `by` is not one. */
const char *funnel_report_attr_group(const char *by);

/* Sums attribution.credited postings in [r->from, r->to) per r->by, currency and model into
 * r->rows (r->by, models, from and to set by the caller). Returns 0; FUNNEL_EINVAL with err
 * naming a total that does not fit in int64; FUNNEL_ESTORE; FUNNEL_ENOMEM. */
int funnel_report_attribution(funnel_store_t *st, funnel_report_attr_t *r, char *err,
                              size_t err_len);
void funnel_report_attribution_clear(funnel_report_attr_t *r);
/* {"by", "from_ms", "to_ms", "rows": [{G: value, "currency", "credits": {model: "minor"}}]}. */
json_t *funnel_report_attribution_json(const funnel_report_attr_t *r);
void funnel_report_attribution_csv(const funnel_report_attr_t *r, FILE *out);

/* ---- statements ------------------------------------------------------------------------ */

/* `funnelctl statement --json`'s document for rep and period. NULL when out of memory. */
json_t *funnel_report_statement_json(const char *rep, const char *period,
                                     const funnel_ledger_statement_t *st);
/* `funnelctl statement --csv`'s text. */
void funnel_report_statement_csv(const funnel_ledger_statement_t *st, FILE *out);

/* ---- SLA instances ---------------------------------------------------------------------- */

/* One instance as a JSON object; times as numbers, or as decimal strings when times_as_text
 * (funnel-web). A definition adds the policy version's text. NULL when out of memory. */
json_t *funnel_report_sla_json(const funnel_sla_row_t *r, bool with_definition, bool times_as_text);

#endif
