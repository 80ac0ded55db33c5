/* attribution.c — revenue per campaign, source, medium or channel under each attribution model,
 * summed from funneld's attribution.credited postings (reversals and refunds included) by their
 * event time: a payment's credits count on the payment's day, a refund's on the refund's day.
 * Amounts are minor units per currency; currencies never mix. */
#include "funnel/report.h"

#include "funnel/error.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define NM FUNNEL_ATTR_MODEL_COUNT_

const char *funnel_report_attr_group(const char *by)
{
    static const char *const groups[] = {"campaign", "source", "medium", "channel"};
    for (size_t i = 0; by && i < sizeof groups / sizeof groups[0]; i++)
        if (!strcmp(by, groups[i]))
            return groups[i];
    return NULL;
}

void funnel_report_attribution_clear(funnel_report_attr_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->rows[i].group);
        free(r->rows[i].currency);
    }
    free(r->rows);
    r->rows = NULL;
    r->n = 0;
}

/* The row for (group, currency): the last one, since the query returns them in order. */
static funnel_report_attr_row_t *report_row(funnel_report_attr_t *r, const char *group,
                                            const char *currency)
{
    funnel_report_attr_row_t *last = r->n ? &r->rows[r->n - 1] : NULL;
    if (last && !strcmp(last->group, group) && !strcmp(last->currency, currency))
        return last;
    /* One realloc per group: reports hold dozens of groups, not millions. */
    funnel_report_attr_row_t *rows = realloc(r->rows, (r->n + 1) * sizeof *rows);
    if (!rows)
        return NULL;
    r->rows = rows;
    funnel_report_attr_row_t *row = &r->rows[r->n];
    memset(row, 0, sizeof *row);
    row->group = strdup(group);
    row->currency = strdup(currency);
    if (!row->group || !row->currency) {
        free(row->group);
        free(row->currency);
        return NULL;
    }
    r->n++;
    return row;
}

/* The exact total of a group's credits from the sums of their high and low 32 bits. */
static __int128 total_of(sqlite3_stmt *q, int hi_col, int lo_col)
{
    return (__int128)sqlite3_column_int64(q, hi_col) * ((__int128)1 << 32) +
           sqlite3_column_int64(q, lo_col);
}

/* A total that does not fit is an error naming it; one that fits is stored. */
static int credit_set(funnel_report_attr_row_t *row, funnel_attribution_model_t m, __int128 total,
                      char *err, size_t err_len)
{
    if (total > INT64_MAX || total < INT64_MIN) {
        snprintf(err, err_len,
                 "the %s credits of '%s' in %s do not fit in a 64-bit integer of minor units; "
                 "narrow the period",
                 funnel_attribution_model_name(m), row->group, row->currency);
        return FUNNEL_EINVAL;
    }
    row->credit[m] = (int64_t)total;
    return 0;
}

/* SQLite's sum() is int64 and fails as soon as a running sum overflows, which depends on row
 * order (a large credit and its reversal), so each credit is summed as its high 32 bits
 * (arithmetic shift) and low 32 bits, sums that cannot overflow below 2^31 rows, and the total
 * is rebuilt in 128 bits. The grouped column comes from a fixed list, never from the caller's
 * text as such, so it can be spliced into the SQL. */
int funnel_report_attribution(funnel_store_t *st, funnel_report_attr_t *r, char *err,
                              size_t err_len)
{
    const char *by = funnel_report_attr_group(r->by);
    if (!by) {
        snprintf(err, err_len, "group by campaign, source, medium or channel");
        return FUNNEL_EINVAL;
    }
    if (funnel_store_module_version(st, "attribution") <= 0)
        return 0; /* funneld never ran the engine on this database: nothing credited */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, currency, model, sum(credit >> 32), sum(credit & 4294967295) "
             "FROM " FUNNEL_ATTR_POSTINGS_TABLE
             " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY 1, 2, 3 ORDER BY 1, 2",
             by);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(funnel_store_db(st), sql, -1, &q, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "%s", funnel_store_errmsg(st));
        return FUNNEL_ESTORE;
    }
    sqlite3_bind_int64(q, 1, r->from);
    sqlite3_bind_int64(q, 2, r->to);
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *group = (const char *)sqlite3_column_text(q, 0);
        const char *currency = (const char *)sqlite3_column_text(q, 1);
        funnel_attribution_model_t m;
        if (funnel_attribution_model_parse((const char *)sqlite3_column_text(q, 2), &m))
            continue; /* a model this reader does not know */
        if (!(r->models & (1u << m)))
            continue; /* not shown: its totals need not fit */
        funnel_report_attr_row_t *row = report_row(r, group ? group : "", currency ? currency : "");
        if (!row) {
            sqlite3_finalize(q);
            return FUNNEL_ENOMEM;
        }
        bad = credit_set(row, m, total_of(q, 3, 4), err, err_len);
    }
    if (!bad && rc != SQLITE_DONE)
        snprintf(err, err_len, "%s", funnel_store_errmsg(st));
    sqlite3_finalize(q);
    return bad ? bad : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

void funnel_report_attribution_csv(const funnel_report_attr_t *r, FILE *out)
{
    funnel_report_csv_field(out, r->by, ",currency");
    for (unsigned m = 0; m < NM; m++)
        if (r->models & (1u << m))
            fprintf(out, ",%s", funnel_attribution_model_name(m));
    fprintf(out, "\n");
    for (size_t i = 0; i < r->n; i++) {
        funnel_report_csv_field(out, r->rows[i].group, ",");
        funnel_report_csv_field(out, r->rows[i].currency, "");
        for (unsigned m = 0; m < NM; m++)
            if (r->models & (1u << m))
                fprintf(out, ",%lld", (long long)r->rows[i].credit[m]);
        fprintf(out, "\n");
    }
}

json_t *funnel_report_attribution_json(const funnel_report_attr_t *r)
{
    json_t *rows = json_array();
    json_t *root = json_pack("{s:s, s:I, s:I, s:o}", "by", r->by, "from_ms", (json_int_t)r->from,
                             "to_ms", (json_int_t)r->to, "rows", rows);
    for (size_t i = 0; root && i < r->n; i++) {
        json_t *credits = json_object();
        for (unsigned m = 0; credits && m < NM; m++)
            if (r->models & (1u << m))
                json_object_set_new(credits, funnel_attribution_model_name(m),
                                    funnel_report_int(r->rows[i].credit[m]));
        if (json_array_append_new(rows,
                                  json_pack("{s:s, s:s, s:o*}", r->by, r->rows[i].group, "currency",
                                            r->rows[i].currency, "credits", credits))) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}
