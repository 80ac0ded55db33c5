/* compliance.c — SLA compliance per policy or owner (optionally per week): how many instances
 * were opened, met on time, met late, are open or breached, the on-time share of those met,
 * and the median and 90th percentile time from opening to the stop.
 *
 * States as the SLA report shows them (funnel/sla_report.h): "breached" is a running instance
 * past its due time by the caller's clock. Instances are selected by when they were opened
 * (the first start, which a reset does not move). Times to stop are business time: what the
 * instance's clock had used at the stop (since its start or last reset, pauses left out), as
 * the SLA engine stores it (sla_instance.stop_business_ms). A row met by a funneld from before
 * that column has none, and a reader has no calendar to recompute it: its time to stop is the
 * wall-clock time from opening to the stop.
 *
 * The SLA engine keeps the met instances' figures per UTC day of opening, policy and owner
 * (sla_compliance, its migration 11): a range of whole days reads those rows and the live
 * instances only; a database without them, or a range that cuts a day, reads every instance. */
#include "funnel/grow.h"
#include "funnel/report.h"

#include "funnel/date.h"
#include "funnel/error.h"
#include "idmap.h"
#include "select.h"
#include "sla_times.h"
#include "store.h"

#include <stddef.h>
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

/* Closes the row being summed: its percentiles from the times collected (the nearest rank of
 * the sorted times: median the ((n - 1) / 2)-th, p90 the ceil(0.9 n)-th). */
static void row_close(funnel_report_compliance_row_t *r, int64_t *times, size_t n)
{
    r->median_ms = r->p90_ms = FUNNEL_REPORT_NONE;
    if (!n)
        return;
    r->p90_ms = funnel_select_nth(times, n, (n * 9 + 9) / 10 - 1);
    r->median_ms = funnel_select_nth(times, n, (n - 1) / 2);
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

/* What goes into one row from one source: an instance, or a row of sla_compliance (the met
 * instances of a day, policy and owner). Its group (an index into the names), week, counts, and
 * its stop times, times[t0, t0 + nt) of the scan. */
typedef struct part {
    uint32_t group;
    int64_t week;
    int64_t on_time, late, open, breached;
    size_t t0, nt;
} part_t;

/* The parts of the range and their group names, each name once. Sorting the parts here rather
 * than in SQL spares SQLite a temporary B-tree of every row (sla_instance has no index on the
 * opening time, owner or policy). */
typedef struct scan {
    bool per_week;
    part_t *parts;
    size_t n, cap;
    int64_t *times;
    size_t n_times, cap_times;
    funnel_idmap_t names;
    const char **sorted; /* the names in byte order once scan_sort ran; borrowed from names */
    int64_t next_breach; /* the earliest due time after now of an instance counted open */
} scan_t;

static void scan_clear(scan_t *s)
{
    funnel_idmap_clear(&s->names);
    free(s->sorted);
    free(s->parts);
    free(s->times);
}

/* A new part of the group in column 0 of q, opened at `opened` (column 1), with room for nt
 * more stop times; NULL when memory runs out. */
static part_t *part_add(scan_t *s, sqlite3_stmt *q, size_t nt)
{
    const char *group = (const char *)sqlite3_column_text(q, 0);
    group = group ? group : "";
    uint32_t g;
    if (funnel_idmap_add(&s->names, group, strlen(group), &g, NULL) ||
        funnel_grow(&s->parts, &s->cap, s->n + 1, sizeof *s->parts, 1024) ||
        funnel_grow(&s->times, &s->cap_times, s->n_times + nt, sizeof *s->times, 1024))
        return NULL;
    part_t *p = &s->parts[s->n++];
    int64_t opened = sqlite3_column_int64(q, 1);
    *p = (part_t){
        .group = g, .week = s->per_week ? week_of(opened) : FUNNEL_REPORT_NONE, .t0 = s->n_times};
    return p;
}

static void time_add(scan_t *s, part_t *p, int64_t t)
{
    s->times[s->n_times++] = t;
    p->nt++;
}

/* One instance: group, opening, state, due_at, stopped_at, on_time, expired, stop_business_ms.
 * An expired instance (met by the retention, without a stop) counts as breached. */
static int inst_add(scan_t *s, sqlite3_stmt *q, int64_t now_ms)
{
    part_t *p = part_add(s, q, 1);
    if (!p)
        return FUNNEL_ENOMEM;
    int64_t opened = sqlite3_column_int64(q, 1), stopped = sqlite3_column_int64(q, 4);
    const char *state = (const char *)sqlite3_column_text(q, 2);
    if (state && !strcmp(state, "met") && sqlite3_column_int(q, 6)) {
        p->breached = 1;
        return 0;
    }
    if (state && !strcmp(state, "met")) {
        *(sqlite3_column_int(q, 5) ? &p->on_time : &p->late) = 1;
        time_add(s, p,
                 sqlite3_column_type(q, 7) != SQLITE_NULL ? sqlite3_column_int64(q, 7)
                 : stopped > opened                       ? stopped - opened
                                                          : 0);
        return 0;
    }
    /* a running instance with a due time is breached from then on; paused ones are not */
    bool running = state && !strcmp(state, "open") && sqlite3_column_type(q, 3) != SQLITE_NULL;
    int64_t due = running ? sqlite3_column_int64(q, 3) : INT64_MAX;
    *(due <= now_ms ? &p->breached : &p->open) = 1;
    if (due > now_ms && due < s->next_breach)
        s->next_breach = due;
    return 0;
}

/* One row of sla_compliance: group, day, on_time, late, times (sla_times.h), expired. */
static int agg_add(scan_t *s, sqlite3_stmt *q, int64_t now_ms)
{
    (void)now_ms;
    const unsigned char *blob = sqlite3_column_blob(q, 4);
    size_t nt = blob ? (size_t)sqlite3_column_bytes(q, 4) / SLA_TIMES_SIZE : 0;
    part_t *p = part_add(s, q, nt);
    if (!p)
        return FUNNEL_ENOMEM;
    p->on_time = sqlite3_column_int64(q, 2);
    p->late = sqlite3_column_int64(q, 3);
    p->breached = sqlite3_column_int64(q, 5);
    if (nt) /* a row of expired instances only has no times */
        sla_times_read(blob, nt, &s->times[s->n_times]);
    s->n_times += nt;
    p->nt = nt;
    return 0;
}

typedef struct named {
    const char *name;
    uint32_t index;
} named_t;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named_t *)a)->name, ((const named_t *)b)->name);
}

static int cmp_part(const void *a, const void *b)
{
    const part_t *x = a, *y = b;
    if (x->group != y->group)
        return (x->group > y->group) - (x->group < y->group);
    return (x->week > y->week) - (x->week < y->week);
}

/* Renumbers the names in byte order (SQLite's BINARY), then sorts the parts by group and
 * week. */
static int scan_sort(scan_t *s)
{
    size_t n = s->names.n ? s->names.n : 1;
    named_t *order = malloc(n * sizeof *order);
    uint32_t *rank = malloc(n * sizeof *rank);
    s->sorted = malloc(n * sizeof *s->sorted);
    int rc = order && rank && s->sorted ? 0 : FUNNEL_ENOMEM;
    if (!rc) {
        for (size_t i = 0; i < s->names.n; i++)
            order[i] = (named_t){s->names.keys[i], (uint32_t)i};
        qsort(order, s->names.n, sizeof *order, cmp_named);
        for (size_t i = 0; i < s->names.n; i++) {
            rank[order[i].index] = (uint32_t)i;
            s->sorted[i] = order[i].name;
        }
        for (size_t k = 0; k < s->n; k++)
            s->parts[k].group = rank[s->parts[k].group];
        qsort(s->parts, s->n, sizeof *s->parts, cmp_part);
    }
    free(rank);
    free(order);
    return rc;
}

/* Sums the sorted parts into c's rows. */
static int scan_sum(const scan_t *s, funnel_report_compliance_t *c)
{
    int64_t *times = malloc((s->n_times ? s->n_times : 1) * sizeof *times);
    if (!times)
        return FUNNEL_ENOMEM;
    funnel_report_compliance_row_t *r = NULL;
    size_t n_times = 0;
    for (size_t k = 0; k < s->n; k++) {
        const part_t *p = &s->parts[k];
        if (!r || p->group != s->parts[k - 1].group || r->week_ms != p->week) {
            if (r)
                row_close(r, times, n_times);
            n_times = 0;
            if (!(r = row_open(c, s->sorted[p->group], p->week))) {
                free(times);
                return FUNNEL_ENOMEM;
            }
        }
        r->instances += p->on_time + p->late + p->open + p->breached;
        r->met_on_time += p->on_time;
        r->met_late += p->late;
        r->breached += p->breached;
        r->open += p->open;
        /* s->times is NULL while no part has a stop time: memcpy's source must not be. */
        if (p->nt)
            memcpy(&times[n_times], &s->times[p->t0], p->nt * sizeof *times);
        n_times += p->nt;
    }
    if (r)
        row_close(r, times, n_times);
    free(times);
    return 0;
}

/* Whether the database has a table or column: `sql` returns a row when it has. */
static bool schema_has(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return false;
    bool has = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return has;
}

/* Runs sql over [c->from, c->to) and adds each row to s with add. */
static int scan_query(sqlite3 *db, const char *sql, const funnel_report_compliance_t *c,
                      int (*add)(scan_t *, sqlite3_stmt *, int64_t), scan_t *s, int64_t now_ms)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return FUNNEL_ESTORE;
    sqlite3_bind_int64(q, 1, c->from);
    sqlite3_bind_int64(q, 2, c->to);
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW)
        bad = add(s, q, now_ms);
    sqlite3_finalize(q);
    return bad ? bad : rc != SQLITE_DONE ? FUNNEL_ESTORE : 0;
}

#define INST_COLS                                                                                  \
    "%s, coalesce(opened_at, started_at) AS o, state, due_at, stopped_at, on_time,"                \
    " state = 'met' AND stop_event IS NULL"

/* Every instance opened in the range. */
static int scan_instances(sqlite3 *db, const funnel_report_compliance_t *c, scan_t *s,
                          int64_t now_ms)
{
    char sql[512];
    bool business = schema_has(db, "SELECT 1 FROM pragma_table_info('sla_instance')"
                                   " WHERE name = 'stop_business_ms'");
    snprintf(sql, sizeof sql, "SELECT " INST_COLS ", %s FROM sla_instance WHERE o >= ?1 AND o < ?2",
             c->by, business ? "stop_business_ms" : "NULL");
    return scan_query(db, sql, c, inst_add, s, now_ms);
}

/* The met instances from sla_compliance (a row per day, policy and owner), the live ones from
 * the index of live instances: neither reads the met history row by row. Exact for a range of
 * whole UTC days, the rows' unit. */
static int scan_kept(sqlite3 *db, const funnel_report_compliance_t *c, scan_t *s, int64_t now_ms)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, day, on_time, late, times, expired FROM sla_compliance WHERE day >= ?1 AND"
             " day < ?2",
             c->by);
    int rc = scan_query(db, sql, c, agg_add, s, now_ms);
    snprintf(sql, sizeof sql,
             "SELECT " INST_COLS ", NULL FROM sla_instance INDEXED BY sla_instance_live"
             " WHERE state <> 'met' AND o >= ?1 AND o < ?2",
             c->by);
    return rc ? rc : scan_query(db, sql, c, inst_add, s, now_ms);
}

static bool day_bound(int64_t t)
{
    return t == INT64_MIN || t == INT64_MAX || t % DAY_MS == 0;
}

static int read_rows(funnel_store_t *st, funnel_report_compliance_t *c, int64_t now_ms, bool kept)
{
    sqlite3 *db = funnel_store_db(st);
    scan_t s = {.per_week = c->per_week, .next_breach = INT64_MAX};
    int bad = kept ? scan_kept(db, c, &s, now_ms) : scan_instances(db, c, &s, now_ms);
    bad = bad ? bad : scan_sort(&s);
    bad = bad ? bad : scan_sum(&s, c);
    c->valid_until_ms = s.next_breach;
    scan_clear(&s);
    return bad;
}

/* The report, from the kept figures (sla_compliance) when the database has them and the range
 * is of whole days, else (`scan`) from every instance. */
static int compliance(funnel_store_t *st, const char *by, bool per_week, int64_t from, int64_t to,
                      int64_t now_ms, bool scan, funnel_report_compliance_t **out)
{
    *out = NULL;
    const char *group = funnel_report_compliance_group(by);
    if (!group)
        return FUNNEL_EINVAL;
    funnel_report_compliance_t *c = calloc(1, sizeof *c);
    if (!c)
        return FUNNEL_ENOMEM;
    *c = (funnel_report_compliance_t){
        .by = group, .per_week = per_week, .from = from, .to = to, .valid_until_ms = INT64_MAX};
    int rc = 0;
    if (funnel_store_module_version(st, "sla") > 0) {
        bool kept = !scan && day_bound(from) && day_bound(to) &&
                    schema_has(funnel_store_db(st), "SELECT 1 FROM sqlite_schema WHERE"
                                                    " name = 'sla_compliance'");
        rc = read_rows(st, c, now_ms, kept);
    }
    if (rc)
        funnel_report_compliance_free(&c);
    *out = c;
    return rc;
}

int funnel_report_compliance(funnel_store_t *st, const char *by, bool per_week, int64_t from,
                             int64_t to, int64_t now_ms, funnel_report_compliance_t **out)
{
    return compliance(st, by, per_week, from, to, now_ms, false, out);
}

int funnel_report_compliance_scan(funnel_store_t *st, const char *by, bool per_week, int64_t from,
                                  int64_t to, int64_t now_ms, funnel_report_compliance_t **out)
{
    return compliance(st, by, per_week, from, to, now_ms, true, out);
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
