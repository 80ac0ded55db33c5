/* sla_report.c — read-only views of the SLA engine's instances (see sla_report.h).
 *
 * Kept apart from the engine, as ledger_report.c is from the ledger, because funnelctl runs it
 * on a read-only connection outside funneld: it only SELECTs, and it uses nothing of the
 * engine's runtime (calendars, timer heap, loop), so it links without them. Each view is one
 * statement, so it reads one snapshot however funneld commits meanwhile. */
#include "funnel/grow.h"
#include "funnel/sla_report.h"
#include "funnel/error.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The instance columns in funnel_sla_row_t's order, then the shown state: "breached" is a
 * running ('open') instance whose due time is at or before ?1 (the reader's clock), "expired"
 * one the retention closed without a stop (a met row without a stop event). */
#define ROW_SELECT                                                                                 \
    "SELECT i.id, i.policy, i.version, i.key, i.owner, i.started_at, i.due_at, i.next_at,"         \
    " i.step, i.acked_by, i.start_event, i.stopped_at, i.on_time, i.late_ms, "                     \
    "i.stop_event, " SHOWN_SQL " AS shown,"                                                        \
    " coalesce(p.process, i.policy), coalesce(p.responsible, ''), coalesce(i.queue, ''),"          \
    " i.priority, i.opened_at"
#define SHOWN_SQL                                                                                  \
    "CASE WHEN i.state = 'met' AND i.stop_event IS NULL THEN 'expired'"                            \
    " WHEN i.state IS NULL OR i.state = 'met' THEN 'met'"                                          \
    " WHEN i.state = 'open' AND i.due_at IS NOT NULL AND i.due_at <= ?1 THEN 'breached'"           \
    " ELSE i.state END"
#define ROW_FROM_INDEXED(index)                                                                    \
    " FROM sla_instance i" index " LEFT JOIN sla_policy p ON p.name = i.policy AND"                \
    " p.version = i.version"
#define ROW_FROM ROW_FROM_INDEXED("")

/* ?2 shown state wanted (NULL: any; 'open' takes paused ones too, 'live' every one not met),
 * ?3 policy, ?4 owner (NULL: any), ?5 limit (-1: all); by due time, ?6 and ?7 the due time and
 * sla_id of the row to go on after. */
#define STATE_WANTED                                                                               \
    " (?2 IS NULL OR shown = ?2 OR (?2 = 'open' AND shown = 'paused') OR"                          \
    " (?2 = 'live' AND shown NOT IN ('met', 'expired')))"
#define OWNED " (?3 IS NULL OR i.policy = ?3) AND (?4 IS NULL OR i.owner = ?4)"
#define ID_LIST_SQL(index, live)                                                                   \
    "SELECT * FROM (" ROW_SELECT ROW_FROM_INDEXED(index) " WHERE" OWNED live                       \
                                                         ") WHERE" STATE_WANTED                    \
                                                         " ORDER BY id LIMIT ?5"
/* By due time: the page's ids are found from the few columns that order and filter them, and
 * only those rows are read whole (sorting every live row whole cost 40 ms at a million leads). */
#define DUE_KEY "coalesce(due_at, 9223372036854775807)"
#define DUE_IDS(index, live)                                                                       \
    "SELECT id, " DUE_KEY " AS due_key, " SHOWN_SQL " AS shown FROM sla_instance i" index          \
    " WHERE" OWNED live
#define DUE_LIST_SQL(index, live)                                                                  \
    ROW_SELECT ROW_FROM " WHERE i.id IN (SELECT id FROM (" DUE_IDS(                                \
        index, live) ") WHERE" STATE_WANTED                                                        \
                     " AND (due_key, id) > (?6, ?7) ORDER BY due_key, id LIMIT ?5)"                \
                     " ORDER BY coalesce(i.due_at, 9223372036854775807), i.id"
#define COUNT_SQL(index, live) "SELECT count(*) FROM (" DUE_IDS(index, live) ") WHERE" STATE_WANTED
/* The open, paused and breached: read from the partial index of live instances
 * (sla_instance_live) instead of every instance ever opened, which keeps the SLA board's lists
 * cheap however much history the database holds. Named, because without statistics SQLite
 * prefers walking the table in id order to save the sort of a few rows. */
#define LIVE_INDEX " INDEXED BY sla_instance_live"
#define LIVE_AND   " AND i.state <> 'met'"
/* [live][by due] */
static const char *const list_sqls[2][2] = {
    {ID_LIST_SQL("", ""), DUE_LIST_SQL("", "")},
    {ID_LIST_SQL(LIVE_INDEX, LIVE_AND), DUE_LIST_SQL(LIVE_INDEX, LIVE_AND)}};
/* [live]; then every live one (state 'live'): the partial index's entries alone, no row read
 * (?1 and ?2 are not used). */
static const char *const count_sqls[3] = {COUNT_SQL("", ""), COUNT_SQL(LIVE_INDEX, LIVE_AND),
                                          "SELECT count(*) FROM sla_instance i" LIVE_INDEX
                                          " WHERE" OWNED LIVE_AND};

/* ?1 the only owner (NULL: any): the live instances' (policy, owner) pairs read once, then
 * the policies (0) and the owners (1) among them. */
static const char live_names_sql[] =
    "WITH l AS MATERIALIZED (SELECT i.policy, i.owner FROM sla_instance i" LIVE_INDEX
    " WHERE i.state <> 'met' AND (?1 IS NULL OR i.owner = ?1) GROUP BY 1, 2)"
    " SELECT 0, policy FROM l GROUP BY 2 UNION ALL SELECT 1, owner FROM l GROUP BY 2 ORDER BY 1, 2";

/* ?2 sla_id. */
static const char show_sql[] = ROW_SELECT ", p.definition" ROW_FROM " WHERE i.id = ?2";

/* ?2 policy, ?3 queue: the instance to take (NULLs when none), then the queue's counts. The
 * redundant state <> 'met' lets SQLite use the partial index of live queue members. */
static const char next_sql[] =
    "SELECT * FROM (" ROW_SELECT ROW_FROM " WHERE i.policy = ?2 AND i.queue = ?3 AND"
    " i.state = 'open' AND i.state <> 'met' ORDER BY i.priority DESC, i.opened_at,"
    " i.start_event LIMIT 1)"
    " RIGHT JOIN (SELECT count(*), coalesce(sum(state = 'paused'), 0) FROM sla_instance"
    " WHERE policy = ?2 AND queue = ?3 AND state <> 'met') ON 1";

/* ?2 since. The warning is published when the current clock's next step is past it. */
static const char status_sql[] =
    "SELECT i.policy,"
    " coalesce((SELECT p.process FROM sla_policy p WHERE p.name = i.policy"
    "  ORDER BY p.version DESC LIMIT 1), i.policy),"
    " coalesce((SELECT p.responsible FROM sla_policy p WHERE p.name = i.policy"
    "  ORDER BY p.version DESC LIMIT 1), ''),"
    " sum(i.state <> 'met'),"
    " sum(i.state = 'open' AND NOT coalesce(i.due_at <= ?1, 0) AND EXISTS (SELECT 1 FROM"
    "  sla_fired f WHERE f.id = i.id AND f.clock = i.started_at AND f.next_step >= 1)),"
    " sum(i.state = 'open' AND coalesce(i.due_at <= ?1, 0)),"
    " sum(i.state = 'met' AND i.stopped_at >= ?2 AND i.on_time AND i.stop_event IS NOT NULL),"
    " sum(i.state = 'met' AND i.stopped_at >= ?2 AND NOT i.on_time AND i.stop_event IS NOT NULL),"
    " ?1 - min(CASE WHEN i.state <> 'met' THEN i.opened_at END)"
    " FROM sla_instance i GROUP BY i.policy ORDER BY 2, 1";

enum { C_SHOWN = 15, C_PROCESS, C_RESPONSIBLE, C_QUEUE, C_PRIORITY, C_OPENED, C_DEFINITION };
#define ROW_COLS C_DEFINITION

static const char *const state_filter_names[] = {
    [FUNNEL_SLA_REPORT_ANY] = NULL,
    [FUNNEL_SLA_REPORT_OPEN] = "open",
    [FUNNEL_SLA_REPORT_BREACHED] = "breached",
    [FUNNEL_SLA_REPORT_MET] = "met",
    [FUNNEL_SLA_REPORT_LIVE] = "live",
    [FUNNEL_SLA_REPORT_EXPIRED] = "expired",
};

int funnel_sla_report_state_parse(const char *name, funnel_sla_report_state_t *out)
{
    for (int i = FUNNEL_SLA_REPORT_OPEN; name && i <= FUNNEL_SLA_REPORT_EXPIRED; i++)
        if (!strcmp(name, state_filter_names[i])) {
            *out = (funnel_sla_report_state_t)i;
            return 0;
        }
    return FUNNEL_EINVAL;
}

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
    col_copy(s, C_PROCESS, r->process, sizeof r->process);
    col_copy(s, C_RESPONSIBLE, r->responsible, sizeof r->responsible);
    col_copy(s, C_QUEUE, r->queue, sizeof r->queue);
    r->priority = sqlite3_column_int64(s, C_PRIORITY);
    r->opened_at_ms = sqlite3_column_int64(s, C_OPENED);
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

/* A new zeroed element at the end of *arr (of n elements, room for *cap, each of size), or NULL
 * when it cannot grow. */
static void *append(void **arr, size_t *n, size_t *cap, size_t size)
{
    if (funnel_grow(arr, cap, *n + 1, size, 16))
        return NULL;
    void *e = (char *)*arr + (*n)++ * size;
    memset(e, 0, size);
    return e;
}

/* Appends the current row to list; FUNNEL_ENOMEM when it cannot grow. */
static int list_append(funnel_sla_report_list_t *list, size_t *cap, sqlite3_stmt *s)
{
    funnel_sla_row_t *r = append((void **)&list->rows, &list->n_rows, cap, sizeof *r);
    if (!r)
        return FUNNEL_ENOMEM;
    row_read(s, r);
    return 0;
}

/* Prepares the list (count false) or count statement of f with its parameters bound; NULL
 * with *rc when f is not valid or the statement cannot be prepared. */
static sqlite3_stmt *list_prepare(funnel_store_t *store, const funnel_sla_report_filter_t *f,
                                  bool count, int64_t now_ms, int *rc)
{
    *rc = FUNNEL_EINVAL;
    if ((unsigned)f->state > FUNNEL_SLA_REPORT_EXPIRED || f->limit < 0)
        return NULL;
    bool live = f->state == FUNNEL_SLA_REPORT_OPEN || f->state == FUNNEL_SLA_REPORT_BREACHED ||
                f->state == FUNNEL_SLA_REPORT_LIVE;
    const char *sql = !count                               ? list_sqls[live][f->by_due]
                      : f->state == FUNNEL_SLA_REPORT_LIVE ? count_sqls[2]
                                                           : count_sqls[live];
    sqlite3_stmt *s = prepare(store, sql, now_ms);
    *rc = s ? 0 : FUNNEL_ESTORE;
    if (!s)
        return NULL;
    bind_opt_text(s, 2, state_filter_names[f->state]);
    bind_opt_text(s, 3, f->policy);
    bind_opt_text(s, 4, f->owner);
    if (count)
        return s;
    sqlite3_bind_int64(s, 5, f->limit ? f->limit : -1);
    if (f->by_due) {
        sqlite3_bind_int64(s, 6, f->after_id ? f->after_due : INT64_MIN);
        sqlite3_bind_int64(s, 7, f->after_id);
    }
    return s;
}

int funnel_sla_report_list(funnel_store_t *store, const funnel_sla_report_filter_t *filter,
                           int64_t now_ms, funnel_sla_report_list_t **out)
{
    static const funnel_sla_report_filter_t all = {0};
    const funnel_sla_report_filter_t *f = filter ? filter : &all;
    int rc, step = SQLITE_DONE;
    size_t cap = 0;
    *out = NULL;
    sqlite3_stmt *s = list_prepare(store, f, false, now_ms, &rc);
    funnel_sla_report_list_t *list = s ? calloc(1, sizeof *list) : NULL;
    if (s && !list)
        rc = FUNNEL_ENOMEM;
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = list_append(list, &cap, s);
    if (!rc && step != SQLITE_DONE)
        rc = FUNNEL_ESTORE;
    sqlite3_finalize(s);
    if (rc)
        funnel_sla_report_list_free(&list);
    *out = list;
    return rc;
}

int funnel_sla_report_count(funnel_store_t *store, const funnel_sla_report_filter_t *filter,
                            int64_t now_ms, int64_t *n)
{
    static const funnel_sla_report_filter_t all = {0};
    int rc;
    sqlite3_stmt *s = list_prepare(store, filter ? filter : &all, true, now_ms, &rc);
    if (s && sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    else if (!rc)
        rc = FUNNEL_ESTORE;
    sqlite3_finalize(s);
    return rc;
}

int funnel_sla_report_live_names(funnel_store_t *store, const char *only_owner,
                                 int (*fn)(bool owner, const char *name, void *arg), void *arg)
{
    sqlite3_stmt *s = NULL;
    int rc = 0, step = SQLITE_DONE;
    if (sqlite3_prepare_v2(funnel_store_db(store), live_names_sql, -1, &s, NULL) != SQLITE_OK)
        rc = FUNNEL_ESTORE;
    else
        bind_opt_text(s, 1, only_owner);
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(s, 1);
        rc = fn(sqlite3_column_int(s, 0) != 0, name ? (const char *)name : "", arg);
    }
    if (!rc && step != SQLITE_DONE)
        rc = FUNNEL_ESTORE;
    sqlite3_finalize(s);
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

int funnel_sla_report_next(funnel_store_t *store, const char *policy, const char *queue,
                           int64_t now_ms, funnel_sla_next_t *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = prepare(store, next_sql, now_ms);
    if (!s)
        return FUNNEL_ESTORE;
    sqlite3_bind_text(s, 2, policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, queue, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
    if (!rc) {
        out->found = sqlite3_column_type(s, 0) != SQLITE_NULL;
        if (out->found)
            row_read(s, &out->row);
        out->length = sqlite3_column_int64(s, ROW_COLS);
        out->paused = sqlite3_column_int64(s, ROW_COLS + 1);
    }
    sqlite3_finalize(s);
    return rc;
}

static void status_read(sqlite3_stmt *s, funnel_sla_status_row_t *r)
{
    int64_t *counts[] = {&r->open,        &r->at_risk,  &r->breached,
                         &r->met_on_time, &r->met_late, &r->oldest_open_age_ms};
    col_copy(s, 0, r->policy, sizeof r->policy);
    col_copy(s, 1, r->process, sizeof r->process);
    col_copy(s, 2, r->responsible, sizeof r->responsible);
    for (int i = 0; i < 6; i++)
        *counts[i] = col_int(s, 3 + i);
}

int funnel_sla_report_status(funnel_store_t *store, int64_t since_ms, int64_t now_ms,
                             funnel_sla_status_t **out)
{
    *out = NULL;
    funnel_sla_status_t *st = calloc(1, sizeof *st);
    sqlite3_stmt *s = st ? prepare(store, status_sql, now_ms) : NULL;
    int rc = !st ? FUNNEL_ENOMEM : !s ? FUNNEL_ESTORE : 0, step = SQLITE_DONE;
    size_t cap = 0;
    if (!rc)
        sqlite3_bind_int64(s, 2, since_ms);
    while (!rc && (step = sqlite3_step(s)) == SQLITE_ROW) {
        funnel_sla_status_row_t *r = append((void **)&st->rows, &st->n_rows, &cap, sizeof *r);
        if (r)
            status_read(s, r);
        else
            rc = FUNNEL_ENOMEM;
    }
    if (!rc && step != SQLITE_DONE)
        rc = FUNNEL_ESTORE;
    sqlite3_finalize(s);
    if (rc)
        funnel_sla_report_status_free(&st);
    *out = st;
    return rc;
}

void funnel_sla_report_status_free(funnel_sla_status_t **status)
{
    if (!status || !*status)
        return;
    free((*status)->rows);
    free(*status);
    *status = NULL;
}
