/* attribution.c — revenue per campaign, source, medium or channel under each attribution model,
 * summed from funneld's attribution.credited postings (reversals and refunds included) by their
 * event time: a payment's credits count on the payment's day, a refund's on the refund's day.
 * Amounts are minor units per currency; currencies never mix. */
#include "funnel/grow.h"
#include "funnel/report.h"

#include "funnel/error.h"
#include "idmap.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define NM FUNNEL_ATTR_MODEL_COUNT_

/* The groupings, in the order of attr_postings' columns. */
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

/* ---- the model: sums per grouping, value, currency, model and day ------------------------- */

#define DAY_MS 86400000LL

/* One bucket: the credits of one (grouping, value, currency, model) on one UTC day. */
typedef struct bucket {
    uint32_t group;    /* interned value */
    uint32_t currency; /* interned */
    int32_t day;       /* days since 1970-01-01 */
    uint8_t col;       /* index in groups[] */
    uint8_t model;
    __int128 sum;
} bucket_t;

struct funnel_report_attr_model {
    pthread_mutex_t lock;
    int64_t last_id;     /* postings read up to this attr_postings.id */
    funnel_idmap_t strs; /* group values and currencies */
    funnel_idmap_t keys; /* bucket key text -> ordinal in buckets */
    bucket_t *buckets;
    size_t cap;
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
    funnel_idmap_clear(&m->strs);
    funnel_idmap_clear(&m->keys);
    free(m->buckets);
    pthread_mutex_destroy(&m->lock);
    free(m);
    *mp = NULL;
}

static int intern(funnel_report_attr_model_t *m, const unsigned char *s, uint32_t *ord)
{
    const char *t = s ? (const char *)s : "";
    return funnel_idmap_add(&m->strs, t, strlen(t), ord, NULL);
}

/* Adds credit to the bucket of (col, group, currency, model, day). */
static int bucket_add(funnel_report_attr_model_t *m, uint8_t col, uint32_t group, uint32_t currency,
                      uint8_t model, int32_t day, int64_t credit)
{
    char key[64];
    int n = snprintf(key, sizeof key, "%u|%u|%u|%u|%d", col, group, currency, model, day);
    uint32_t ord;
    bool added;
    if (funnel_grow(&m->buckets, &m->cap, m->keys.n + 1, sizeof *m->buckets, 4096))
        return FUNNEL_ENOMEM;
    if (funnel_idmap_add(&m->keys, key, (size_t)n, &ord, &added))
        return FUNNEL_ENOMEM;
    if (added)
        m->buckets[ord] = (bucket_t){group, currency, day, col, model, 0};
    m->buckets[ord].sum += credit;
    return 0;
}

/* Applies one posting row (campaign, source, medium, channel, currency, model, credit, at_ms)
 * to every grouping. */
static int posting_add(funnel_report_attr_model_t *m, sqlite3_stmt *q)
{
    funnel_attribution_model_t model;
    if (funnel_attribution_model_parse((const char *)sqlite3_column_text(q, 6), &model))
        return 0; /* a model this reader does not know */
    uint32_t currency, group;
    int64_t at = sqlite3_column_int64(q, 8);
    int32_t day = (int32_t)(at >= 0 ? at / DAY_MS : -((-at + DAY_MS - 1) / DAY_MS));
    if (intern(m, sqlite3_column_text(q, 5), &currency))
        return FUNNEL_ENOMEM;
    for (uint8_t col = 0; col < 4; col++)
        if (intern(m, sqlite3_column_text(q, 1 + col), &group) ||
            bucket_add(m, col, group, currency, (uint8_t)model, day, sqlite3_column_int64(q, 7)))
            return FUNNEL_ENOMEM;
    return 0;
}

/* Reads the postings added since the last refresh (attr_postings is append-only: a correction
 * is a new, negative line), so a reader that keeps the model reads each row once. */
static int model_refresh(funnel_report_attr_model_t *m, funnel_store_t *st, char *err,
                         size_t err_len)
{
    if (funnel_store_module_version(st, "attribution") <= 0)
        return 0; /* funneld never ran the engine on this database: nothing credited */
    static const char sql[] =
        "SELECT id, campaign, source, medium, channel, currency, model, credit, at_ms "
        "FROM " FUNNEL_ATTR_POSTINGS_TABLE " WHERE id > ?1 ORDER BY id";
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(funnel_store_db(st), sql, -1, &q, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "%s", funnel_store_errmsg(st));
        return FUNNEL_ESTORE;
    }
    sqlite3_bind_int64(q, 1, m->last_id);
    int rc, bad = 0;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        bad = posting_add(m, q);
        if (!bad)
            m->last_id = sqlite3_column_int64(q, 0);
    }
    if (!bad && rc != SQLITE_DONE)
        snprintf(err, err_len, "%s", funnel_store_errmsg(st));
    sqlite3_finalize(q);
    return bad ? bad : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* ---- the table ------------------------------------------------------------------------------ */

typedef struct cell {
    uint32_t group, currency;
    __int128 total[NM];
} cell_t;

static const funnel_idmap_t *sort_strs; /* for qsort's comparator, under the model's lock */

static int cmp_cell(const void *a, const void *b)
{
    const cell_t *x = a, *y = b;
    int c = strcmp(sort_strs->keys[x->group], sort_strs->keys[y->group]);
    return c ? c : strcmp(sort_strs->keys[x->currency], sort_strs->keys[y->currency]);
}

/* The buckets of r's grouping, day range and models, summed per (value, currency). */
static int cells_sum(const funnel_report_attr_model_t *m, const funnel_report_attr_t *r,
                     uint8_t col, cell_t **out, size_t *n_out)
{
    funnel_idmap_t index = {0}; /* "group|currency" -> cell */
    cell_t *cells = NULL;
    size_t cap = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i < m->keys.n; i++) {
        const bucket_t *b = &m->buckets[i];
        int64_t start = (int64_t)b->day * DAY_MS;
        if (b->col != col || !(r->models & (1u << b->model)) || start < r->from || start >= r->to)
            continue;
        char key[32];
        int n = snprintf(key, sizeof key, "%u|%u", b->group, b->currency);
        uint32_t ord;
        bool added;
        if (index.n == cap) {
            cell_t *grown = realloc(cells, (cap = cap ? cap * 2 : 64) * sizeof *grown);
            if (!grown) {
                rc = FUNNEL_ENOMEM;
                break;
            }
            cells = grown;
        }
        if ((rc = funnel_idmap_add(&index, key, (size_t)n, &ord, &added)))
            break;
        if (added) {
            memset(&cells[ord], 0, sizeof cells[ord]);
            cells[ord].group = b->group;
            cells[ord].currency = b->currency;
        }
        cells[ord].total[b->model] += b->sum;
    }
    *n_out = index.n;
    funnel_idmap_clear(&index);
    if (rc)
        free(cells);
    *out = rc ? NULL : cells;
    return rc;
}

/* The rows of r from the cells, in (value, currency) order; a total over int64 is an error. */
static int rows_fill(const funnel_report_attr_model_t *m, funnel_report_attr_t *r, cell_t *cells,
                     size_t n, char *err, size_t err_len)
{
    if (!n)
        return 0;
    sort_strs = &m->strs;
    qsort(cells, n, sizeof *cells, cmp_cell);
    if (!(r->rows = calloc(n, sizeof *r->rows)))
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        funnel_report_attr_row_t *row = &r->rows[r->n];
        row->group = strdup(m->strs.keys[cells[i].group]);
        row->currency = strdup(m->strs.keys[cells[i].currency]);
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
    pthread_mutex_lock(&m->lock);
    cell_t *cells = NULL;
    size_t n = 0;
    int rc = model_refresh(m, st, err, err_len);
    rc = rc ? rc : cells_sum(m, r, col, &cells, &n);
    rc = rc ? rc : rows_fill(m, r, cells, n, err, err_len);
    pthread_mutex_unlock(&m->lock);
    free(cells);
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
