/* attribution.c — revenue per campaign, source, medium or channel under each attribution model,
 * summed from funneld's attribution.credited postings (reversals and refunds included) by their
 * event time: a payment's credits count on the payment's day, a refund's on the refund's day.
 * Whole days come from the engine's day sums (attr_sums, schema 6): a year costs a few
 * thousand rows, not every posting; older databases are read row by row (attr_posts_by_time).
 * Amounts are minor units per currency; currencies never mix. */
#include "funnel/grow.h"
#include "funnel/report.h"

#include "funnel/error.h"
#include "idmap.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define NM FUNNEL_ATTR_MODEL_COUNT_

/* The groupings, in the order of the columns the queries below read. */
static const char *const groups[] = {"campaign", "source", "medium", "channel"};

const char *funnel_report_attr_group(const char *by)
{
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

/* ---- the sums ------------------------------------------------------------------------------ */

#define DAY_MS 86400000LL

/* The report needs no state between calls: each adds the day sums of its own days, so a period
 * costs its number of days, not its number of postings. The model only serialises callers. */
struct funnel_report_attr_model {
    pthread_mutex_t lock;
};

int funnel_report_attr_model_new(funnel_report_attr_model_t **out)
{
    funnel_report_attr_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return FUNNEL_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

void funnel_report_attr_model_destroy(funnel_report_attr_model_t **mp)
{
    funnel_report_attr_model_t *m = *mp;
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
    *mp = NULL;
}

/* One row of the table being built: the totals of one (value, currency). */
typedef struct cell {
    uint32_t group, currency; /* interned in sums_t.strs */
    __int128 total[NM];
} cell_t;

typedef struct sums {
    funnel_idmap_t strs;  /* values and currencies */
    funnel_idmap_t index; /* "group|currency" -> cell */
    cell_t *cells;
    size_t cap;
} sums_t;

static void sums_clear(sums_t *s)
{
    funnel_idmap_clear(&s->strs);
    funnel_idmap_clear(&s->index);
    free(s->cells);
}

static int intern(sums_t *s, const unsigned char *t, uint32_t *ord)
{
    const char *v = t ? (const char *)t : "";
    return funnel_idmap_add(&s->strs, v, strlen(v), ord, NULL);
}

/* The cell of (value, currency), added when new; NULL when out of memory. */
static cell_t *cell_of(sums_t *s, const unsigned char *value, const unsigned char *currency)
{
    uint32_t group, cur, ord;
    bool added;
    if (intern(s, value, &group) || intern(s, currency, &cur) ||
        funnel_grow(&s->cells, &s->cap, s->index.n + 1, sizeof *s->cells, 64))
        return NULL;
    char key[32];
    int n = snprintf(key, sizeof key, "%u|%u", group, cur);
    if (funnel_idmap_add(&s->index, key, (size_t)n, &ord, &added))
        return NULL;
    if (added)
        s->cells[ord] = (cell_t){.group = group, .currency = cur};
    return &s->cells[ord];
}

/* The first UTC midnight at or after t: a credit counts in [from, to) when its day starts
 * there, that is when its time is in [day_ceil(from), day_ceil(to)). */
static int64_t day_ceil(int64_t t)
{
    if (t > INT64_MAX - DAY_MS)
        return INT64_MAX;
    if (t <= INT64_MIN + DAY_MS)
        return INT64_MIN;                      /* before any day a credit can have */
    int64_t d = t / DAY_MS - (t % DAY_MS < 0); /* floor */
    return d * DAY_MS == t ? t : (d + 1) * DAY_MS;
}

/* Each reads a value (column col) and currency (4) per row: the day sums (schema 6) and the
 * rows of schema 4 the nine credits in columns 5.., older schemas one model (5) and its credit
 * (6) per row. */
static const char sql_days[] =
    "SELECT g.campaign, g.source, g.medium, g.channel, s.currency, s.c0, s.c1, s.c2, s.c3, s.c4,"
    " s.c5, s.c6, s.c7, s.c8 FROM attr_sums s JOIN attr_tags g ON g.id = s.tag_id"
    " WHERE s.day >= ?1 AND s.day < ?2";
static const char sql_rows[] =
    "SELECT l.campaign, l.source, l.medium, l.channel, p.currency, p.c0, p.c1, p.c2, p.c3, p.c4,"
    " p.c5, p.c6, p.c7, p.c8 FROM attr_posts p JOIN attr_lines l ON l.id = p.line_id"
    " WHERE p.at_ms >= ?1 AND p.at_ms < ?2 ORDER BY p.at_ms";
static const char sql_postings[] =
    "SELECT campaign, source, medium, channel, currency, model, credit"
    " FROM " FUNNEL_ATTR_POSTINGS_TABLE " WHERE at_ms >= ?1 AND at_ms < ?2";

/* A day sum that went past int64 (SQLite made it REAL): the postings must be read instead. */
#define INEXACT 1

static int row_add(sums_t *s, sqlite3_stmt *q, uint8_t col, unsigned models, bool wide)
{
    cell_t *c = cell_of(s, sqlite3_column_text(q, col), sqlite3_column_text(q, 4));
    if (!c)
        return FUNNEL_ENOMEM;
    if (!wide) {
        funnel_attribution_model_t m;
        if (!funnel_attribution_model_parse((const char *)sqlite3_column_text(q, 5), &m) &&
            (models & (1u << m)))
            c->total[m] += sqlite3_column_int64(q, 6);
        return 0; /* a model this reader does not know is left out */
    }
    for (unsigned m = 0; m < NM; m++) {
        if (!(models & (1u << m)))
            continue;
        if (sqlite3_column_type(q, 5 + (int)m) == SQLITE_FLOAT)
            return INEXACT;
        c->total[m] += sqlite3_column_int64(q, 5 + (int)m); /* NULL reads as 0 */
    }
    return 0;
}

/* Adds the rows of query sql with ?1 = lo, ?2 = hi per value of column col and currency. */
static int sums_query(sums_t *s, funnel_store_t *st, const char *sql, int64_t lo, int64_t hi,
                      const funnel_report_attr_t *r, uint8_t col, char *err, size_t err_len)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(funnel_store_db(st), sql, -1, &q, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "%s", funnel_store_errmsg(st));
        return FUNNEL_ESTORE;
    }
    sqlite3_bind_int64(q, 1, lo);
    sqlite3_bind_int64(q, 2, hi);
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW)
        bad = row_add(s, q, col, r->models, sql != sql_postings);
    if (!bad && rc != SQLITE_DONE)
        snprintf(err, err_len, "%s", funnel_store_errmsg(st));
    sqlite3_finalize(q);
    return bad ? bad : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Whole days [lo, hi) from the day sums; a period open at the end stops at INT64_MAX, which is
 * no midnight: the part of its last day before it comes from the rows. */
static int sums_days(sums_t *s, funnel_store_t *st, int64_t lo, int64_t hi,
                     const funnel_report_attr_t *r, uint8_t col, char *err, size_t err_len)
{
    int64_t last = INT64_MAX / DAY_MS; /* the day of INT64_MAX */
    int64_t day_lo = lo == INT64_MIN ? INT64_MIN : lo / DAY_MS;
    int64_t day_hi = hi == INT64_MAX ? last : hi / DAY_MS;
    int rc = sums_query(s, st, sql_days, day_lo, day_hi, r, col, err, err_len);
    if (!rc && hi == INT64_MAX)
        rc = sums_query(s, st, sql_rows, lo > last * DAY_MS ? lo : last * DAY_MS, hi, r, col, err,
                        err_len);
    return rc;
}

/* Sums the credits of r's days per value of column col and currency. */
static int sums_read(sums_t *s, funnel_store_t *st, const funnel_report_attr_t *r, uint8_t col,
                     char *err, size_t err_len)
{
    int version = funnel_store_module_version(st, "attribution");
    if (version <= 0)
        return 0; /* funneld never ran the engine on this database: nothing credited */
    int64_t lo = day_ceil(r->from), hi = day_ceil(r->to);
    if (lo >= hi)
        return 0;
    if (version >= 6) {
        int rc = sums_days(s, st, lo, hi, r, col, err, err_len);
        if (rc != INEXACT)
            return rc;
        sums_clear(s);
        *s = (sums_t){0};
    }
    return sums_query(s, st, version >= 4 ? sql_rows : sql_postings, lo, hi, r, col, err, err_len);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const funnel_idmap_t *sort_strs; /* for qsort's comparator, under the model's lock */

static int cmp_cell(const void *a, const void *b)
{
    const cell_t *x = a, *y = b;
    int c = strcmp(sort_strs->keys[x->group], sort_strs->keys[y->group]);
    return c ? c : strcmp(sort_strs->keys[x->currency], sort_strs->keys[y->currency]);
}

/* The rows of r from the cells, in (value, currency) order; a total over int64 is an error. */
static int rows_fill(sums_t *s, funnel_report_attr_t *r, char *err, size_t err_len)
{
    size_t n = s->index.n;
    cell_t *cells = s->cells;
    if (!n)
        return 0;
    sort_strs = &s->strs;
    qsort(cells, n, sizeof *cells, cmp_cell);
    if (!(r->rows = calloc(n, sizeof *r->rows)))
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        funnel_report_attr_row_t *row = &r->rows[r->n];
        row->group = strdup(s->strs.keys[cells[i].group]);
        row->currency = strdup(s->strs.keys[cells[i].currency]);
        if (!row->group || !row->currency) {
            free(row->group);
            free(row->currency);
            return FUNNEL_ENOMEM;
        }
        r->n++;
        for (unsigned k = 0; k < NM; k++) {
            __int128 t = cells[i].total[k];
            if (!(r->models & (1u << k)))
                continue;
            if (t > INT64_MAX || t < INT64_MIN) {
                snprintf(err, err_len,
                         "the %s credits of '%s' in %s do not fit in a 64-bit integer of minor "
                         "units; narrow the period",
                         funnel_attribution_model_name(k), row->group, row->currency);
                return FUNNEL_EINVAL;
            }
            row->credit[k] = (int64_t)t;
        }
    }
    return 0;
}

/* Sums every credit in 128 bits, so the result does not depend on the order of the rows (a
 * running int64 sum of a large credit and its reversal could overflow in one order only). */
int funnel_report_attribution(funnel_report_attr_model_t *m, funnel_store_t *st,
                              funnel_report_attr_t *r, char *err, size_t err_len)
{
    const char *by = funnel_report_attr_group(r->by);
    if (!by) {
        snprintf(err, err_len, "group by campaign, source, medium or channel");
        return FUNNEL_EINVAL;
    }
    uint8_t col = 0;
    while (strcmp(groups[col], by))
        col++;
    sums_t sums = {0};
    pthread_mutex_lock(&m->lock);
    int rc = sums_read(&sums, st, r, col, err, err_len);
    rc = rc ? rc : rows_fill(&sums, r, err, err_len);
    pthread_mutex_unlock(&m->lock);
    sums_clear(&sums);
    if (rc)
        funnel_report_attribution_clear(r);
    return rc;
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
