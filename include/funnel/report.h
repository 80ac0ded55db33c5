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

#include <pthread.h>

typedef struct funnel_store funnel_store_t;

/* A time or duration a row does not have. */
#define FUNNEL_REPORT_NONE INT64_MIN

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

/* The reader of the attribution.credited postings. It keeps no sums: each report reads only
 * the postings of its own days, in time order, so a month costs the same on any size of
 * database. funnelctl builds one per run; funnel-web keeps one. Thread-safe. */
typedef struct funnel_report_attr_model funnel_report_attr_model_t;

int funnel_report_attr_model_new(funnel_report_attr_model_t **out);
void funnel_report_attr_model_destroy(funnel_report_attr_model_t **m);

/* Sums the credits in [r->from, r->to) (whole UTC days) per r->by,
 * currency and model into r->rows (r->by, models, from and to set by the caller). Returns 0;
 * FUNNEL_EINVAL with err naming a total that does not fit in int64; FUNNEL_ESTORE with err;
 * FUNNEL_ENOMEM. */
int funnel_report_attribution(funnel_report_attr_model_t *m, funnel_store_t *st,
                              funnel_report_attr_t *r, char *err, size_t err_len);
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

/* ---- the funnel ------------------------------------------------------------------------ */

/* The model of every lead's stages, built from the recorded events (see funnel.c for the
 * definitions). Thread-safe: refresh and table lock it. */
typedef struct funnel_report_funnel funnel_report_funnel_t;

int funnel_report_funnel_new(funnel_report_funnel_t **out);
void funnel_report_funnel_destroy(funnel_report_funnel_t **m);
/* Reads the events recorded since the last refresh (all of them the first time). 0,
 * FUNNEL_ESTORE, FUNNEL_ENOMEM. */
int funnel_report_funnel_refresh(funnel_report_funnel_t *m, funnel_store_t *st);
/* The static name of a funnel grouping (campaign, channel, source, medium, segment, month), or
 * NULL. */
const char *funnel_report_funnel_group(const char *by);

typedef struct funnel_report_money {
    char currency[4];
    int64_t net; /* payments minus refunds, minor units */
} funnel_report_money_t;

typedef struct funnel_report_funnel_row {
    char *group; /* owned; "" for leads without one */
    int64_t leads, mql, sql, contacted, won, lost;
    int64_t median_mql_sql_ms, median_sql_contact_ms, median_sql_won_ms; /* or NONE */
    funnel_report_money_t *revenue; /* owned; per currency, sorted; non-zero only */
    size_t n_revenue;
} funnel_report_funnel_row_t;

typedef struct funnel_report_funnel_table {
    const char *by;
    int64_t from, to;                 /* leads created in [from, to); INT64_MIN, INT64_MAX: all */
    funnel_report_funnel_row_t *rows; /* owned; sorted by group */
    size_t n;
} funnel_report_funnel_table_t;

/* The table of m per `by` for leads created in [from, to). *out owned by the caller. 0;
 * FUNNEL_EINVAL with err (bad `by`, a revenue over int64); FUNNEL_ENOMEM. */
int funnel_report_funnel_table(funnel_report_funnel_t *m, const char *by, int64_t from, int64_t to,
                               funnel_report_funnel_table_t **out, char *err, size_t err_len);
void funnel_report_funnel_table_free(funnel_report_funnel_table_t **t);
json_t *funnel_report_funnel_json(const funnel_report_funnel_table_t *t);
void funnel_report_funnel_csv(const funnel_report_funnel_table_t *t, FILE *out);

/* ---- SLA compliance -------------------------------------------------------------------- */

typedef struct funnel_report_compliance_row {
    char *group;     /* owned: the policy or owner */
    int64_t week_ms; /* the Monday (UTC) of the week, or NONE when not per week */
    int64_t instances, met_on_time, met_late, open, breached;
    int64_t median_ms, p90_ms; /* opening to stop, wall-clock, of those met; or NONE */
} funnel_report_compliance_row_t;

typedef struct funnel_report_compliance {
    const char *by; /* "policy" or "owner" */
    bool per_week;
    int64_t from, to;                     /* instances opened in [from, to) */
    funnel_report_compliance_row_t *rows; /* owned; by group, then week */
    size_t n;
    /* The figures hold for clocks before this (INT64_MAX: any later clock): the earliest due
     * time, after now_ms, of a running instance counted open, which then counts as breached. */
    int64_t valid_until_ms;
} funnel_report_compliance_t;

/* "policy" or "owner" (static), or NULL. */
const char *funnel_report_compliance_group(const char *by);
/* Compliance of the instances opened in [from, to), states as of now_ms. *out owned by the
 * caller. 0, FUNNEL_EINVAL (bad by), FUNNEL_ESTORE, FUNNEL_ENOMEM. */
int funnel_report_compliance(funnel_store_t *st, const char *by, bool per_week, int64_t from,
                             int64_t to, int64_t now_ms, funnel_report_compliance_t **out);
/* The same figures read from every instance opened in the range, not from the kept ones
 * (sla_compliance): what funnel_report_compliance must equal, for tests and for databases of an
 * older funneld (which funnel_report_compliance reads this way by itself). */
int funnel_report_compliance_scan(funnel_store_t *st, const char *by, bool per_week, int64_t from,
                                  int64_t to, int64_t now_ms, funnel_report_compliance_t **out);
void funnel_report_compliance_free(funnel_report_compliance_t **c);
json_t *funnel_report_compliance_json(const funnel_report_compliance_t *c);
/* "97.5": on time among those met, in percent with one decimal, rounded half up; JSON null
 * when none was met. */
json_t *funnel_report_compliance_pct(const funnel_report_compliance_row_t *r);

/* ---- quotas ----------------------------------------------------------------------------- */

/* A quota as funneld's config defines it (the database keeps only the counts). */
typedef struct funnel_report_quota_def {
    char name[FUNNEL_ID_MAX + 1];
    int64_t minimum;
    int64_t pace_pct; /* 0: no pace check */
} funnel_report_quota_def_t;

/* Reads sla.quotas (name, minimum, pace) from funneld's config file. *defs owned by the caller
 * (free()); none is fine. 0 or FUNNEL_ECONFIG with err, FUNNEL_ENOMEM. */
int funnel_report_quota_defs(const char *funneld_config, funnel_report_quota_def_t **defs,
                             size_t *n, char *err, size_t err_len);

/* Each quota's current period (the one now_ms falls in, null before its first count) and the
 * last closed one: count, minimum, the pace expected now (minimum times the share of the period
 * passed) and whether the count is on pace. NULL when out of memory or the read failed. */
json_t *funnel_report_quota_json(funnel_store_t *st, const funnel_report_quota_def_t *defs,
                                 size_t n, int64_t now_ms);

#endif