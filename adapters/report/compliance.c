/* compliance.c — SLA compliance per policy or owner (optionally per week): how many instances
 * were opened, met on time, met late, are open or breached, the on-time share of those met,
 * and the median and 90th percentile time from opening to the stop.
 *
 * States as the SLA report shows them (funnel/sla_report.h): "breached" is a running instance
 * past its due time by the caller's clock. Instances are selected by when they were opened
 * (the first start, which a reset does not move). Times to stop are wall-clock milliseconds:
 * the business time the engine computes at the stop is not stored, and a reader has no
 * calendar to recompute it. */
#include "funnel/report.h"

#include "funnel/date.h"
#include "funnel/error.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define DAY_MS 86400000LL

const char *funnel_report_compliance_group(const char *by)
{
    return by && !strcmp(by, "policy") ? "policy" : by && !strcmp(by, "owner") ? "owner" : NULL;
}

/* The Monday (UTC) that starts the week of at. */
static int64_t week_of(int64_t at)
{
    int64_t day = at >= 0 ? at / DAY_MS : -((-at + DAY_MS - 1) / DAY_MS);
    int64_t since_monday = ((day + 3) % 7 + 7) % 7; /* 1970-01-01 was a Thursday */
    return (day - since_monday) * DAY_MS;
}

void funnel_report_compliance_free(funnel_report_compliance_t **cp)
{
    funnel_report_compliance_t *c = *cp;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->rows[i].group);
    free(c->rows);
    free(c);
    *cp = NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Closes the row being summed: its percentiles from the times collected. */
static void row_close(funnel_report_compliance_row_t *r, int64_t *times, size_t n)
{
    r->median_ms = r->p90_ms = FUNNEL_REPORT_NONE;
    if (!n)
        return;
    qsort(times, n, sizeof *times, cmp_i64);
    r->median_ms = times[(n - 1) / 2];
    r->p90_ms = times[(n * 9 + 9) / 10 - 1]; /* nearest rank: ceil(0.9 n) */
}

/* A new row for (group, week) at the end of c. */
static funnel_report_compliance_row_t *row_open(funnel_report_compliance_t *c, const char *group,
                                                int64_t week)
{
    funnel_report_compliance_row_t *rows = realloc(c->rows, (c->n + 1) * sizeof *rows);
    if (!rows)
        return NULL;
    c->rows = rows;
    funnel_report_compliance_row_t *r = &rows[c->n];
    memset(r, 0, sizeof *r);
    r->week_ms = week;
    if (!(r->group = strdup(group)))
        return NULL;
    c->n++;
    return r;
}

static int read_rows(funnel_store_t *st, funnel_report_compliance_t *c, int64_t now_ms)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, coalesce(opened_at, started_at) AS o, state, due_at, stopped_at, on_time"
             " FROM sla_instance WHERE o >= ?1 AND o < ?2 ORDER BY 1, 2",
             c->by);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(funnel_store_db(st), sql, -1, &q, NULL) != SQLITE_OK)
        return FUNNEL_ESTORE;
    sqlite3_bind_int64(q, 1, c->from);
    sqlite3_bind_int64(q, 2, c->to);
    int64_t *times = NULL;
    size_t n_times = 0, cap = 0;
    funnel_report_compliance_row_t *r = NULL;
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *group = (const char *)sqlite3_column_text(q, 0);
        int64_t opened = sqlite3_column_int64(q, 1);
        int64_t week = c->per_week ? week_of(opened) : FUNNEL_REPORT_NONE;
        const char *state = (const char *)sqlite3_column_text(q, 2);
        group = group ? group : "";
        if (!r || strcmp(r->group, group) || r->week_ms != week) {
            if (r)
                row_close(r, times, n_times);
            n_times = 0;
            if (!(r = row_open(c, group, week))) {
                bad = FUNNEL_ENOMEM;
                break;
            }
        }
        r->instances++;
        if (state && !strcmp(state, "met")) {
            if (sqlite3_column_int(q, 5))
                r->met_on_time++;
            else
                r->met_late++;
            if (n_times == cap) {
                int64_t *grown = realloc(times, (cap = cap ? cap * 2 : 256) * sizeof *times);
                if (!grown) {
                    bad = FUNNEL_ENOMEM;
                    break;
                }
                times = grown;
            }
            int64_t stopped = sqlite3_column_int64(q, 4);
            times[n_times++] = stopped > opened ? stopped - opened : 0;
        } else if (state && !strcmp(state, "open") && sqlite3_column_type(q, 3) != SQLITE_NULL &&
                   sqlite3_column_int64(q, 3) <= now_ms) {
            r->breached++;
        } else {
            r->open++;
        }
    }
    if (r && !bad)
        row_close(r, times, n_times);
    free(times);
    sqlite3_finalize(q);
    return bad ? bad : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

int funnel_report_compliance(funnel_store_t *st, const char *by, bool per_week, int64_t from,
                             int64_t to, int64_t now_ms, funnel_report_compliance_t **out)
{
    const char *group = funnel_report_compliance_group(by);
    if (!group)
        return FUNNEL_EINVAL;
    funnel_report_compliance_t *c = calloc(1, sizeof *c);
    if (!c)
        return FUNNEL_ENOMEM;
    *c = (funnel_report_compliance_t){.by = group, .per_week = per_week, .from = from, .to = to};
    int rc = funnel_store_module_version(st, "sla") > 0 ? read_rows(st, c, now_ms) : 0;
    if (rc)
        funnel_report_compliance_free(&c);
    *out = c;
    return rc;
}

json_t *funnel_report_compliance_pct(const funnel_report_compliance_row_t *r)
{
    int64_t met = r->met_on_time + r->met_late;
    if (!met)
        return json_null();
    int64_t tenths = (r->met_on_time * 2000 / met + 1) / 2;
    return json_sprintf("%lld.%lld", (long long)(tenths / 10), (long long)(tenths % 10));
}

static json_t *opt(int64_t v)
{
    return v == FUNNEL_REPORT_NONE ? json_null() : funnel_report_int(v);
}

json_t *funnel_report_compliance_json(const funnel_report_compliance_t *c)
{
    json_t *rows = json_array();
    json_t *root = json_pack("{s:s, s:b, s:o}", "by", c->by, "per_week", c->per_week, "rows", rows);
    for (size_t i = 0; root && i < c->n; i++) {
        const funnel_report_compliance_row_t *r = &c->rows[i];
        char week[16] = "";
        if (r->week_ms != FUNNEL_REPORT_NONE)
            funnel_date_format(r->week_ms, week, sizeof week);
        json_t *row = json_pack(
            "{s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", c->by, r->group, "week",
            *week ? json_string(week) : json_null(), "instances", (json_int_t)r->instances,
            "met_on_time", (json_int_t)r->met_on_time, "met_late", (json_int_t)r->met_late, "open",
            (json_int_t)r->open, "breached", (json_int_t)r->breached, "on_time_pct",
            funnel_report_compliance_pct(r), "median_time_to_stop_ms", opt(r->median_ms),
            "p90_time_to_stop_ms", opt(r->p90_ms));
        if (json_array_append_new(rows, row)) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}
