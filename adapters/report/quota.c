/* quota.c — the SLA quotas' periods as a reader sees them: the count funneld keeps per period
 * (sla_quota), against the minimum and the pace line from funneld's config.
 *
 * The pace expected now is the minimum times the share of the period that has passed (a straight
 * line from 0 at the start to the minimum at the end); funneld's own pace check (`pace = "50%"`)
 * is one point of that line. */
#include "funnel/report.h"

#include "funnel/error.h"
#include "store.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

int funnel_report_quota_defs(const char *path, funnel_report_quota_def_t **defs, size_t *n,
                             char *err, size_t err_len)
{
    *defs = NULL;
    *n = 0;
    config_t c;
    config_init(&c);
    int rc = 0;
    if (!config_read_file(&c, path)) {
        snprintf(err, err_len, "%s:%d: %s", path, config_error_line(&c), config_error_text(&c));
        config_destroy(&c);
        return FUNNEL_ECONFIG;
    }
    const config_setting_t *list = config_lookup(&c, "sla.quotas");
    int len = list ? config_setting_length(list) : 0;
    if (len && !(*defs = calloc((size_t)len, sizeof **defs)))
        rc = FUNNEL_ENOMEM;
    for (int i = 0; !rc && i < len; i++) {
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
        const char *name = NULL, *pace = NULL;
        long long minimum = 0;
        funnel_report_quota_def_t *d = &(*defs)[*n];
        if (!config_setting_lookup_string(g, "name", &name) ||
            !config_setting_lookup_int64(g, "minimum", &minimum) || minimum < 1) {
            snprintf(err, err_len, "%s: sla.quotas[%d]: needs a name and a minimum", path, i);
            rc = FUNNEL_ECONFIG;
            break;
        }
        snprintf(d->name, sizeof d->name, "%s", name);
        d->minimum = minimum;
        if (config_setting_lookup_string(g, "pace", &pace))
            d->pace_pct = strtoll(pace, NULL, 10);
        (*n)++;
    }
    config_destroy(&c);
    if (rc) {
        free(*defs);
        *defs = NULL;
        *n = 0;
    }
    return rc;
}

/* The period's local days that counted something (sla_quota_day, kept by funneld since its
 * migration 8), oldest first, as [{day_start_ms, count}]; *in_days gets their sum. An older
 * database has no such table: no days. */
static json_t *days_json(sqlite3 *db, const char *name, int64_t start, int64_t end,
                         int64_t *in_days)
{
    static const char sql[] = "SELECT day_start, count FROM sla_quota_day WHERE policy = ?1 AND"
                              " day_start >= ?2 AND day_start < ?3 ORDER BY day_start";
    json_t *days = json_array();
    sqlite3_stmt *q;
    *in_days = 0;
    if (!days || sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return days;
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, start);
    sqlite3_bind_int64(q, 3, end);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(q, 1);
        *in_days += n;
        if (json_array_append_new(days, json_pack("{s:o, s:I}", "day_start_ms",
                                                  funnel_report_int(sqlite3_column_int64(q, 0)),
                                                  "count", (json_int_t)n)))
            break;
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        json_decref(days);
        return NULL;
    }
    return days;
}

/* One period: its count against the minimum, the pace line at now (or at its end), and the
 * count per local day for a cumulative chart; `before_days` is the part of the count that has
 * no day (counted by a funneld older than the per-day counts), drawn at the period's start. */
static json_t *period_json(sqlite3 *db, const funnel_report_quota_def_t *d, int64_t start,
                           int64_t end, int64_t count, int64_t now_ms)
{
    int64_t at = now_ms < end ? now_ms : end, in_days;
    __int128 expected = (__int128)d->minimum * (at > start ? at - start : 0) / (end - start);
    json_t *days = days_json(db, d->name, start, end, &in_days);
    if (!days)
        return NULL;
    return json_pack("{s:o, s:o, s:I, s:I, s:o, s:b, s:o, s:I}", "period_start_ms",
                     funnel_report_int(start), "period_end_ms", funnel_report_int(end), "count",
                     (json_int_t)count, "minimum", (json_int_t)d->minimum, "pace_expected_now",
                     funnel_report_int((int64_t)expected), "on_pace", count >= (int64_t)expected,
                     "days", days, "before_days",
                     (json_int_t)(count > in_days ? count - in_days : 0));
}

/* The current and the last closed period of d from sla_quota. */
static json_t *quota_json(sqlite3 *db, const funnel_report_quota_def_t *d, int64_t now_ms)
{
    static const char sql[] =
        "SELECT period_start, period_end, actual FROM sla_quota WHERE policy = ?1 AND"
        " period_start <= ?2 ORDER BY period_start DESC LIMIT 2";
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(q, 1, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, now_ms);
    json_t *current = json_null(), *last = json_null();
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        int64_t s = sqlite3_column_int64(q, 0), e = sqlite3_column_int64(q, 1);
        json_t *p = period_json(db, d, s, e, sqlite3_column_int64(q, 2), now_ms);
        if (!p) {
            rc = SQLITE_ERROR;
            break;
        }
        if (now_ms < e && json_is_null(current) && json_is_null(last)) {
            current = p;
        } else if (json_is_null(last)) {
            last = p;
            break;
        } else {
            json_decref(p);
        }
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        json_decref(current);
        json_decref(last);
        return NULL;
    }
    return json_pack("{s:s, s:I, s:I, s:o, s:o}", "name", d->name, "minimum",
                     (json_int_t)d->minimum, "pace_pct", (json_int_t)d->pace_pct, "current",
                     current, "last", last);
}

json_t *funnel_report_quota_json(funnel_store_t *st, const funnel_report_quota_def_t *defs,
                                 size_t n, int64_t now_ms)
{
    json_t *list = json_array();
    bool tables = funnel_store_module_version(st, "sla") > 0;
    for (size_t i = 0; list && i < n; i++) {
        json_t *q = tables ? quota_json(funnel_store_db(st), &defs[i], now_ms)
                           : json_pack("{s:s, s:I, s:I, s:n, s:n}", "name", defs[i].name, "minimum",
                                       (json_int_t)defs[i].minimum, "pace_pct",
                                       (json_int_t)defs[i].pace_pct, "current", "last");
        if (!q || json_array_append_new(list, q)) {
            json_decref(list);
            return NULL;
        }
    }
    json_t *root =
        list ? json_pack("{s:o, s:o}", "now_ms", funnel_report_int(now_ms), "quotas", list) : NULL;
    return root;
}
