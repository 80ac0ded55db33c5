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
 * wall-clock time from opening to the stop. */
#include "funnel/grow.h"
#include "funnel/report.h"

#include "funnel/date.h"
#include "funnel/error.h"
#include "idmap.h"
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

/* What one instance counts as in its row. */
enum { K_OPEN, K_BREACHED, K_ON_TIME, K_LATE };

/* One instance read: its group (an index into the names), week, kind and time to stop. */
typedef struct inst {
    uint32_t group;
    uint8_t kind;
    int64_t week, to_stop;
} inst_t;

/* The instances of the range and their group names, each name once. Sorting the instances here
 * rather than in SQL spares SQLite a temporary B-tree of every row (sla_instance has no index on
 * the opening time, owner or policy). */
typedef struct scan {
    inst_t *inst;
    size_t n, cap;
    funnel_idmap_t names;
    const char **sorted; /* the names in byte order once scan_sort ran; borrowed from names */
    int64_t next_breach; /* the earliest due time after now of an instance counted open */
} scan_t;

static void scan_clear(scan_t *s)
{
    funnel_idmap_clear(&s->names);
    free(s->sorted);
    free(s->inst);
}

static int inst_add(scan_t *s, sqlite3_stmt *q, bool per_week, int64_t now_ms)
{
    const char *group = (const char *)sqlite3_column_text(q, 0);
    group = group ? group : "";
    uint32_t g;
    if (funnel_idmap_add(&s->names, group, strlen(group), &g, NULL))
        return FUNNEL_ENOMEM;
    if (funnel_grow(&s->inst, &s->cap, s->n + 1, sizeof *s->inst, 1024))
        return FUNNEL_ENOMEM;
    int64_t opened = sqlite3_column_int64(q, 1), stopped = sqlite3_column_int64(q, 4);
    const char *state = (const char *)sqlite3_column_text(q, 2);
    inst_t *i = &s->inst[s->n++];
    *i = (inst_t){.group = g, .week = per_week ? week_of(opened) : FUNNEL_REPORT_NONE};
    if (state && !strcmp(state, "met")) {
        i->kind = sqlite3_column_int(q, 5) ? K_ON_TIME : K_LATE;
        i->to_stop = sqlite3_column_type(q, 6) != SQLITE_NULL ? sqlite3_column_int64(q, 6)
                     : stopped > opened                       ? stopped - opened
                                                              : 0;
        return 0;
    }
    /* a running instance with a due time is breached from then on; paused ones are not */
    bool running = state && !strcmp(state, "open") && sqlite3_column_type(q, 3) != SQLITE_NULL;
    int64_t due = running ? sqlite3_column_int64(q, 3) : INT64_MAX;
    i->kind = due <= now_ms ? K_BREACHED : K_OPEN;
    if (due > now_ms && due < s->next_breach)
        s->next_breach = due;
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

static int cmp_inst(const void *a, const void *b)
{
    const inst_t *x = a, *y = b;
    if (x->group != y->group)
        return (x->group > y->group) - (x->group < y->group);
    return (x->week > y->week) - (x->week < y->week);
}

/* Renumbers the names in byte order (SQLite's BINARY), then sorts the instances by group and
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
            s->inst[k].group = rank[s->inst[k].group];
        qsort(s->inst, s->n, sizeof *s->inst, cmp_inst);
    }
    free(rank);
    free(order);
    return rc;
}

/* Sums the sorted instances into c's rows. */
static int scan_sum(const scan_t *s, funnel_report_compliance_t *c)
{
    int64_t *times = malloc((s->n ? s->n : 1) * sizeof *times);
    if (!times)
        return FUNNEL_ENOMEM;
    funnel_report_compliance_row_t *r = NULL;
    size_t n_times = 0;
    for (size_t k = 0; k < s->n; k++) {
        const inst_t *i = &s->inst[k];
        if (!r || i->group != s->inst[k - 1].group || r->week_ms != i->week) {
            if (r)
                row_close(r, times, n_times);
            n_times = 0;
            if (!(r = row_open(c, s->sorted[i->group], i->week))) {
                free(times);
                return FUNNEL_ENOMEM;
            }
        }
        r->instances++;
        r->met_on_time += i->kind == K_ON_TIME;
        r->met_late += i->kind == K_LATE;
        r->breached += i->kind == K_BREACHED;
        r->open += i->kind == K_OPEN;
        if (i->kind == K_ON_TIME || i->kind == K_LATE)
            times[n_times++] = i->to_stop;
    }
    if (r)
        row_close(r, times, n_times);
    free(times);
    return 0;
}

/* Whether sla_instance has the business time at the stop (an older funneld's has not). */
static bool has_stop_business(sqlite3 *db)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM pragma_table_info('sla_instance')"
                           " WHERE name = 'stop_business_ms'",
                           -1, &q, NULL) != SQLITE_OK)
        return false;
    bool has = sqlite3_step(q) == SQLITE_ROW;
    sqlite3_finalize(q);
    return has;
}

static int read_rows(funnel_store_t *st, funnel_report_compliance_t *c, int64_t now_ms)
{
    char sql[512];
    sqlite3 *db = funnel_store_db(st);
    snprintf(sql, sizeof sql,
             "SELECT %s, coalesce(opened_at, started_at) AS o, state, due_at, stopped_at, on_time,"
             " %s FROM sla_instance WHERE o >= ?1 AND o < ?2",
             c->by, has_stop_business(db) ? "stop_business_ms" : "NULL");
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return FUNNEL_ESTORE;
    sqlite3_bind_int64(q, 1, c->from);
    sqlite3_bind_int64(q, 2, c->to);
    scan_t s = {.next_breach = INT64_MAX};
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW)
        bad = inst_add(&s, q, c->per_week, now_ms);
    sqlite3_finalize(q);
    if (!bad && rc != SQLITE_DONE)
        bad = FUNNEL_ESTORE;
    bad = bad ? bad : scan_sort(&s);
    bad = bad ? bad : scan_sum(&s, c);
    c->valid_until_ms = s.next_breach;
    scan_clear(&s);
    return bad;
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
    *c = (funnel_report_compliance_t){
        .by = group, .per_week = per_week, .from = from, .to = to, .valid_until_ms = INT64_MAX};
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
