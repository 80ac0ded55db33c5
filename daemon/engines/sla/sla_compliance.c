/* sla_compliance.c — the SQL functions that keep sla_compliance.times (sla_times.h), the sorted
 * stop times of the met instances of one (day, policy, owner), which the triggers of migration 11
 * (sla.c) update with every write of sla_instance.
 *
 * The triggers run on funneld's connection, so every connection that writes sla_instance needs
 * the functions (funnel_sla_sql_functions): a missing one fails the write loudly. */
#include "sla_internal.h"
#include "sla_times.h"
#include "funnel/error.h"
#include "funnel/grow.h"

#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The values v[0..n) (sorted) as a blob result. */
static void times_result(sqlite3_context *ctx, const int64_t *v, size_t n)
{
    unsigned char *blob = sqlite3_malloc64(n ? n * SLA_TIMES_SIZE : 1);
    if (!blob) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    for (size_t i = 0; i < n; i++)
        sla_times_put(blob, i, v[i]);
    sqlite3_result_blob64(ctx, blob, n * SLA_TIMES_SIZE, sqlite3_free);
}

/* The first index of v[0..n) (sorted) not below x. */
static size_t lower_bound(const int64_t *v, size_t n, int64_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* sla_times(times, remove, add): times (a blob, or NULL for none) without one value `remove`
 * and with `add` (either NULL for nothing). Removing a value the blob does not hold is an
 * error: the aggregate would no longer be the instances' own. */
static void sla_times_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *blob = sqlite3_value_blob(argv[0]);
    size_t n = blob ? (size_t)sqlite3_value_bytes(argv[0]) / SLA_TIMES_SIZE : 0;
    int64_t *v = malloc((n + 1) * sizeof *v);
    if (!v) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    if (n)
        sla_times_read(blob, n, v);
    if (sqlite3_value_type(argv[1]) != SQLITE_NULL) {
        int64_t x = sqlite3_value_int64(argv[1]);
        size_t at = lower_bound(v, n, x);
        if (at == n || v[at] != x) {
            free(v);
            sqlite3_result_error(ctx, "sla_times: a stop time missing from sla_compliance", -1);
            return;
        }
        memmove(&v[at], &v[at + 1], (--n - at) * sizeof *v);
    }
    if (sqlite3_value_type(argv[2]) != SQLITE_NULL) {
        int64_t x = sqlite3_value_int64(argv[2]);
        size_t at = lower_bound(v, n, x);
        memmove(&v[at + 1], &v[at], (n++ - at) * sizeof *v);
        v[at] = x;
    }
    times_result(ctx, v, n);
    free(v);
}

/* sla_times_of(x): the blob of every non-NULL x of the group (the migration's fill). */
typedef struct times_acc {
    int64_t *v;
    size_t n, cap;
    bool failed;
} times_acc_t;

static void sla_times_of_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    times_acc_t *a = sqlite3_aggregate_context(ctx, sizeof *a);
    if (!a || a->failed || sqlite3_value_type(argv[0]) == SQLITE_NULL)
        return;
    if (funnel_grow(&a->v, &a->cap, a->n + 1, sizeof *a->v, 64)) {
        a->failed = true;
        return;
    }
    a->v[a->n++] = sqlite3_value_int64(argv[0]);
}

static void sla_times_of_final(sqlite3_context *ctx)
{
    times_acc_t *a = sqlite3_aggregate_context(ctx, 0);
    if (a && a->failed)
        sqlite3_result_error_nomem(ctx);
    else if (a && a->n)
        qsort(a->v, a->n, sizeof *a->v, cmp_i64);
    if (!a || !a->failed)
        times_result(ctx, a ? a->v : NULL, a ? a->n : 0);
    if (a)
        free(a->v);
}

int funnel_sla_sql_functions(sqlite3 *db)
{
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
    if (sqlite3_create_function(db, "sla_times", 3, flags, NULL, sla_times_fn, NULL, NULL) !=
            SQLITE_OK ||
        sqlite3_create_function(db, "sla_times_of", 1, flags, NULL, NULL, sla_times_of_step,
                                sla_times_of_final) != SQLITE_OK)
        return FUNNEL_ESTORE;
    return 0;
}
