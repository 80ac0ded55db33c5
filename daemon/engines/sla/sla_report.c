/* sla_report.c — read-only views of the SLA engine's instances (see sla_report.h).
 *
 * Kept apart from the engine, as ledger_report.c is from the ledger, because funnelctl runs it
 * on a read-only connection outside funneld: it only SELECTs, and it uses nothing of the
 * engine's runtime (calendars, timer heap, loop), so it links without them. Each view is one
 * statement, so it reads one snapshot however funneld commits meanwhile. */
#include "funnel/sla_report.h"
#include "funnel/error.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The instance columns in funnel_sla_row_t's order, then the shown state: "breached" is a
 * running ('open') instance whose due time is at or before ?1 (the reader's clock). */
#define ROW_SELECT                                                                                 \
    "SELECT i.id, i.policy, i.version, i.key, i.owner, i.started_at, i.due_at, i.next_at,"         \
    " i.step, i.acked_by, i.start_event, i.stopped_at, i.on_time, i.late_ms, i.stop_event,"        \
    " CASE WHEN i.state IS NULL OR i.state = 'met' THEN 'met'"                                     \
    " WHEN i.state = 'open' AND i.due_at IS NOT NULL AND i.due_at <= ?1 THEN 'breached'"           \
    " ELSE i.state END AS shown"

/* ?2 shown state wanted (NULL: any; 'open' takes paused ones too), ?3 policy, ?4 owner (NULL:
 * any), ?5 limit (-1: all). */
static const char list_sql[] =
    "SELECT * FROM (" ROW_SELECT " FROM sla_instance i"
    " WHERE (?3 IS NULL OR i.policy = ?3) AND (?4 IS NULL OR i.owner = ?4))"
    " WHERE ?2 IS NULL OR shown = ?2 OR (?2 = 'open' AND shown = 'paused')"
    " ORDER BY id LIMIT ?5";

/* ?2 sla_id. */
static const char show_sql[] = ROW_SELECT ", p.definition FROM sla_instance i"
                                          " LEFT JOIN sla_policy p ON p.name = i.policy AND"
                                          " p.version = i.version WHERE i.id = ?2";

enum { C_SHOWN = 15, C_DEFINITION = 16 };

static const char *const state_filter_names[] = {
    [FUNNEL_SLA_REPORT_ANY] = NULL,
    [FUNNEL_SLA_REPORT_OPEN] = "open",
    [FUNNEL_SLA_REPORT_BREACHED] = "breached",
    [FUNNEL_SLA_REPORT_MET] = "met",
};

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t len)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, len, "%s", t ? (const char *)t : "");
}

static int64_t col_int(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? FUNNEL_SLA_REPORT_NONE
                                                    : sqlite3_column_int64(s, i);
}

/* Fills r from the current row of a ROW_SELECT statement; definition is left alone. */
static void row_read(sqlite3_stmt *s, funnel_sla_row_t *r)
{
    r->sla_id = sqlite3_column_int64(s, 0);
    col_copy(s, 1, r->policy, sizeof r->policy);
    r->version = sqlite3_column_int64(s, 2);
    col_copy(s, 3, r->key, sizeof r->key);
    col_copy(s, 4, r->owner, sizeof r->owner);
    r->started_at_ms = sqlite3_column_int64(s, 5);
    r->due_at_ms = col_int(s, 6);
    r->next_at_ms = col_int(s, 7);
    r->step = sqlite3_column_int64(s, 8);
    col_copy(s, 9, r->acked_by, sizeof r->acked_by);
    col_copy(s, 10, r->start_event, sizeof r->start_event);
    r->stopped_at_ms = col_int(s, 11);
    r->on_time = sqlite3_column_type(s, 12) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 12) != 0;
    r->late_ms = col_int(s, 13);
    col_copy(s, 14, r->stop_event, sizeof r->stop_event);
    col_copy(s, C_SHOWN, r->state, sizeof r->state);
}

/* Prepares sql with the reader's clock bound as ?1; NULL when the database has no SLA tables
 * (or cannot be read). */
static sqlite3_stmt *prepare(funnel_store_t *store, const char *sql, int64_t now_ms)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(funnel_store_db(store), sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return NULL;
    }
    sqlite3_bind_int64(s, 1, now_ms);
    return s;
}

static void bind_opt_text(sqlite3_stmt *s, int col, const char *v)
{
    if (v)
        sqlite3_bind_text(s, col, v, -1, SQLITE_STATIC);
}

/* Appends the current row to list; FUNNEL_ENOMEM when it cannot grow. */
static int list_append(funnel_sla_report_list_t *list, size_t *cap, sqlite3_stmt *s)
{
    if (list->n_rows == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        funnel_sla_row_t *rows = realloc(list->rows, c * sizeof *rows);
        if (!rows)
            return FUNNEL_ENOMEM;
        list->rows = rows;
        *cap = c;
    }
    funnel_sla_row_t *r = &list->rows[list->n_rows++];
    memset(r, 0, sizeof *r);
    row_read(s, r);
    return 0;
}

int funnel_sla_report_list(funnel_store_t *store, const funnel_sla_report_filter_t *filter,
                           int64_t now_ms, funnel_sla_report_list_t **out)
{
    static const funnel_sla_report_filter_t all = {0};
    const funnel_sla_report_filter_t *f = filter ? filter : &all;
    *out = NULL;
    if ((unsigned)f->state > FUNNEL_SLA_REPORT_MET || f->limit < 0)
        return FUNNEL_EINVAL;
    funnel_sla_report_list_t *list = calloc(1, sizeof *list);
    sqlite3_stmt *s = list ? prepare(store, list_sql, now_ms) : NULL;
    int rc = !list ? FUNNEL_ENOMEM : !s ? FUNNEL_ESTORE : 0, step = SQLITE_DONE;
    size_t cap = 0;
    if (rc)
        goto out;
    bind_opt_text(s, 2, state_filter_names[f->state]);
    bind_opt_text(s, 3, f->policy);
    bind_opt_text(s, 4, f->owner);
    sqlite3_bind_int64(s, 5, f->limit ? f->limit : -1);
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = list_append(list, &cap, s);
    if (!rc && step != SQLITE_DONE)
        rc = FUNNEL_ESTORE;
out:
    sqlite3_finalize(s);
    if (rc)
        funnel_sla_report_list_free(&list);
    *out = list;
    return rc;
}

void funnel_sla_report_list_free(funnel_sla_report_list_t **list)
{
    if (!list || !*list)
        return;
    free((*list)->rows);
    free(*list);
    *list = NULL;
}

int funnel_sla_report_show(funnel_store_t *store, int64_t sla_id, int64_t now_ms,
                           funnel_sla_row_t **out)
{
    *out = NULL;
    funnel_sla_row_t *r = calloc(1, sizeof *r);
    sqlite3_stmt *s = r ? prepare(store, show_sql, now_ms) : NULL;
    int rc = !r ? FUNNEL_ENOMEM : !s ? FUNNEL_ESTORE : 0;
    if (rc)
        goto out;
    sqlite3_bind_int64(s, 2, sla_id);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        rc = FUNNEL_ENOTFOUND;
    } else if (step != SQLITE_ROW) {
        rc = FUNNEL_ESTORE;
    } else {
        row_read(s, r);
        const unsigned char *def = sqlite3_column_text(s, C_DEFINITION);
        if (def && !(r->definition = strdup((const char *)def)))
            rc = FUNNEL_ENOMEM;
    }
out:
    sqlite3_finalize(s);
    if (rc)
        funnel_sla_report_row_free(&r);
    *out = r;
    return rc;
}

void funnel_sla_report_row_free(funnel_sla_row_t **row)
{
    if (!row || !*row)
        return;
    free((*row)->definition);
    free(*row);
    *row = NULL;
}
