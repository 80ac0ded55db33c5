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
#include "funnel/date.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NM FUNNEL_ATTR_MODEL_COUNT_

/* One report row: a group value in one currency, a total per model. */
typedef struct report_row {
    char *group;    /* owned */
    char *currency; /* owned */
    int64_t credit[NM];
} report_row_t;

typedef struct report {
    const char *by;     /* the column grouped by */
    unsigned models;    /* bit per model shown */
    int64_t from, to;   /* [from, to) in Unix ms */
    report_row_t *rows; /* sorted by group, currency (the query's order) */
    size_t n;
} report_t;

static void report_clear(report_t *r)
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
static report_row_t *report_row(report_t *r, const char *group, const char *currency)
{
    report_row_t *last = r->n ? &r->rows[r->n - 1] : NULL;
    if (last && !strcmp(last->group, group) && !strcmp(last->currency, currency))
        return last;
    /* One realloc per group: reports hold dozens of groups, not millions. */
    report_row_t *rows = realloc(r->rows, (r->n + 1) * sizeof *rows);
    if (!rows)
        return NULL;
    r->rows = rows;
    report_row_t *row = &r->rows[r->n];
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
static int credit_set(report_row_t *row, funnel_attribution_model_t m, __int128 total)
{
    if (total > INT64_MAX || total < INT64_MIN) {
        fprintf(stderr,
                "funnelctl: the %s credits of '%s' in %s do not fit in a 64-bit integer of "
                "minor units; narrow the period with --from/--to\n",
                funnel_attribution_model_name(m), row->group, row->currency);
        return FUNNEL_EINVAL;
    }
    row->credit[m] = (int64_t)total;
    return 0;
}

/* Sums the postings per group, currency and model. SQLite's sum() is int64 and fails as soon as
 * a running sum overflows, which depends on row order (a large credit and its reversal), so each
 * credit is summed as its high 32 bits (arithmetic shift) and low 32 bits, sums that cannot
 * overflow below 2^31 rows, and the total is rebuilt in 128 bits. The grouped column comes from
 * a fixed list, never from the command line as such, so it can be spliced into the SQL. */
static int report_read(funnel_store_t *st, report_t *r)
{
    if (funnel_store_module_version(st, "attribution") <= 0)
        return 0; /* funneld never ran the engine on this database: nothing credited */
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, currency, model, sum(credit >> 32), sum(credit & 4294967295) "
             "FROM " FUNNEL_ATTR_POSTINGS_TABLE
             " WHERE at_ms >= ?1 AND at_ms < ?2 GROUP BY 1, 2, 3 ORDER BY 1, 2",
             r->by);
    sqlite3 *db = funnel_store_db(st);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return FUNNEL_ESTORE;
    sqlite3_bind_int64(q, 1, r->from);
    sqlite3_bind_int64(q, 2, r->to);
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *group = (const char *)sqlite3_column_text(q, 0);
        const char *currency = (const char *)sqlite3_column_text(q, 1);
        funnel_attribution_model_t m;
        if (funnel_attribution_model_parse((const char *)sqlite3_column_text(q, 2), &m))
            continue; /* a model this funnelctl does not know */
        if (!(r->models & (1u << m)))
            continue; /* not shown: its totals need not fit */
        report_row_t *row = report_row(r, group ? group : "", currency ? currency : "");
        if (!row) {
            sqlite3_finalize(q);
            return FUNNEL_ENOMEM;
        }
        bad = credit_set(row, m, total_of(q, 3, 4));
    }
    sqlite3_finalize(q);
    return bad ? bad : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

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

/* A CSV field per RFC 4180: quoted, with quotes doubled, when it holds , " CR or LF. */
static void print_csv_text(const char *s, const char *after)
{
    if (!strpbrk(s, ",\"\r\n")) {
        printf("%s%s", s, after);
        return;
    }
    printf("\"");
    for (const char *q; (q = strchr(s, '"')); s = q + 1)
        printf("%.*s\"\"", (int)(q - s), s);
    printf("%s\"%s", s, after);
}

static void print_csv(const report_t *r)
{
    print_csv_text(r->by, ",currency");
    for (unsigned m = 0; m < NM; m++)
        if (r->models & (1u << m))
            printf(",%s", funnel_attribution_model_name(m));
    printf("\n");
    for (size_t i = 0; i < r->n; i++) {
        print_csv_text(r->rows[i].group, ",");
        print_csv_text(r->rows[i].currency, "");
        for (unsigned m = 0; m < NM; m++)
            if (r->models & (1u << m))
                printf(",%lld", (long long)r->rows[i].credit[m]);
        printf("\n");
    }
}

/* {"by": G, "from_ms": .., "to_ms": .., "rows": [{G: value, "currency": .., "credits":
 * {model: "minor", ...}}]}; amounts as decimal strings (fctl_json_minor). */
static int print_json(const report_t *r)
{
    json_t *rows = json_array();
    json_t *root = json_pack("{s:s, s:I, s:I, s:o}", "by", r->by, "from_ms", (json_int_t)r->from,
                             "to_ms", (json_int_t)r->to, "rows", rows);
    for (size_t i = 0; root && i < r->n; i++) {
        json_t *credits = json_object();
        for (unsigned m = 0; credits && m < NM; m++)
            if (r->models & (1u << m))
                json_object_set_new(credits, funnel_attribution_model_name(m),
                                    fctl_json_minor(r->rows[i].credit[m]));
        json_array_append_new(rows, json_pack("{s:s, s:s, s:o*}", r->by, r->rows[i].group,
                                              "currency", r->rows[i].currency, "credits", credits));
    }
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(root);
    return text ? 0 : FUNNEL_ENOMEM;
}

/* Reads --by, --model/--all-models and --from/--to into r; prints why not and returns false. */
static bool report_options(const fctl_t *ctl, report_t *r)
{
    static const char *const groups[] = {"campaign", "source", "medium", "channel"};
    int64_t ignored;
    for (size_t i = 0; ctl->by && i < sizeof groups / sizeof groups[0]; i++)
        if (!strcmp(ctl->by, groups[i]))
            r->by = groups[i];
    if (!r->by) {
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
    int rc = report_read(st, &r);
    if (rc && rc != FUNNEL_EINVAL) /* EINVAL: report_read named the total that does not fit */
        fprintf(stderr, "funnelctl: %s\n",
                rc == FUNNEL_ESTORE ? funnel_store_errmsg(st) : funnel_strerror(rc));
    if (!rc && ctl->json)
        rc = print_json(&r);
    else if (!rc && ctl->csv)
        print_csv(&r);
    else if (!rc)
        print_text(&r);
    report_clear(&r);
    funnel_store_destroy(&st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}
