/* sla.c — `funnelctl sla list` and `funnelctl sla show ID`: read-only views of the SLA engine's
 * rows. "breached" is not stored: it is a live instance whose due time has passed by the clock
 * of whoever asks, so it is computed here. */
#include "funnelctl.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_LIMIT 50

static const char select_cols[] =
    "SELECT i.id, i.policy, i.version, i.key, i.owner, i.state, i.started_at, i.due_at,"
    " i.next_at, i.step, i.acked_by, i.start_event, i.stopped_at, i.on_time, i.late_ms,"
    " i.stop_event, p.definition FROM sla_instance i"
    " LEFT JOIN sla_policy p ON p.name = i.policy AND p.version = i.version";

/* The state shown: met, breached (live and past due), paused or open. */
static const char *shown_state(sqlite3_stmt *s, int64_t now)
{
    const char *state = (const char *)sqlite3_column_text(s, 5);
    bool past_due = sqlite3_column_type(s, 7) != SQLITE_NULL && sqlite3_column_int64(s, 7) <= now;
    if (!state || !strcmp(state, "met"))
        return "met";
    return past_due && !strcmp(state, "open") ? "breached" : state;
}

static json_t *col_json(sqlite3_stmt *s, int col)
{
    switch (sqlite3_column_type(s, col)) {
    case SQLITE_NULL:
        return json_null();
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(s, col));
    default:
        return json_string((const char *)sqlite3_column_text(s, col));
    }
}

/* One instance row as a JSON object; with_definition adds the policy version's text. */
static json_t *row_json(sqlite3_stmt *s, int64_t now, bool with_definition)
{
    static const char *const names[] = {
        "sla_id",        "policy",    "version",    "key",        "owner",     "state",
        "started_at_ms", "due_at_ms", "next_at_ms", "step",       "acked_by",  "start_event",
        "stopped_at_ms", "on_time",   "late_ms",    "stop_event", "definition"};
    json_t *o = json_object();
    int n = with_definition ? 17 : 16;
    for (int i = 0; i < n; i++)
        json_object_set_new(o, names[i],
                            i == 5 ? json_string(shown_state(s, now)) : col_json(s, i));
    if (json_is_integer(json_object_get(o, "on_time")))
        json_object_set_new(o, "on_time",
                            json_boolean(json_integer_value(json_object_get(o, "on_time"))));
    return o;
}

static sqlite3_stmt *prepare(funnel_store_t *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(funnel_store_db(st), sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "funnelctl: no SLA data in this database (%s)\n",
                sqlite3_errmsg(funnel_store_db(st)));
        return NULL;
    }
    return s;
}

/* Reports a failed step (a locked or corrupt database): it must not pass for the end of the
 * rows, or a partial list would look complete. Returns FCTL_REFUSED. */
static int step_failed(funnel_store_t *st)
{
    fprintf(stderr, "funnelctl: reading SLA data failed: %s\n",
            sqlite3_errmsg(funnel_store_db(st)));
    return FCTL_REFUSED;
}

/* A time in Unix milliseconds, or "-" for none. */
static void fmt_time(json_t *v, char *out, size_t len)
{
    if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else
        snprintf(out, len, "-");
}

static int sla_list(fctl_t *ctl, funnel_store_t *st)
{
    const char *want = ctl->state;
    if (want && strcmp(want, "open") && strcmp(want, "breached") && strcmp(want, "met")) {
        fprintf(stderr, "funnelctl: --state must be open, breached or met\n");
        return FCTL_USAGE;
    }
    char sql[1024];
    snprintf(sql, sizeof sql, "%s ORDER BY i.id", select_cols);
    sqlite3_stmt *s = prepare(st, sql);
    if (!s)
        return FCTL_REFUSED;
    int64_t now = fctl_now_ms(), limit = ctl->limit ? ctl->limit : DEFAULT_LIMIT, shown = 0;
    int rc = SQLITE_DONE;
    if (!ctl->json)
        printf("%-8s %-20s %-4s %-24s %-9s %-14s %-14s %s\n", "SLA_ID", "POLICY", "VER", "KEY",
               "STATE", "STARTED_MS", "DUE_MS", "OWNER");
    while (shown < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *state = shown_state(s, now);
        /* "open" lists every live instance that is not breached, paused ones included. */
        if (want && strcmp(want, state) && !(!strcmp(want, "open") && !strcmp(state, "paused")))
            continue;
        json_t *o = row_json(s, now, false);
        if (ctl->json) {
            char *text = json_dumps(o, JSON_COMPACT);
            if (text)
                printf("%s\n", text);
            free(text);
        } else {
            char started[24], due[24];
            fmt_time(json_object_get(o, "started_at_ms"), started, sizeof started);
            fmt_time(json_object_get(o, "due_at_ms"), due, sizeof due);
            printf("%-8lld %-20s %-4lld %-24s %-9s %-14s %-14s %s\n",
                   (long long)sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
                   (long long)sqlite3_column_int64(s, 2), (const char *)sqlite3_column_text(s, 3),
                   state, started, due, (const char *)sqlite3_column_text(s, 4));
        }
        json_decref(o);
        shown++;
    }
    int status = rc == SQLITE_ROW || rc == SQLITE_DONE ? FCTL_OK : step_failed(st);
    sqlite3_finalize(s);
    return status;
}

static int sla_show(fctl_t *ctl, funnel_store_t *st, const char *id)
{
    char sql[1024], *end;
    long long v = strtoll(id, &end, 10);
    if (end == id || *end) {
        fprintf(stderr, "funnelctl: '%s' is not an sla_id\n", id);
        return FCTL_USAGE;
    }
    snprintf(sql, sizeof sql, "%s WHERE i.id = ?", select_cols);
    sqlite3_stmt *s = prepare(st, sql);
    if (!s)
        return FCTL_REFUSED;
    sqlite3_bind_int64(s, 1, v);
    int status = FCTL_REFUSED, rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        json_t *o = row_json(s, fctl_now_ms(), true);
        char *text = json_dumps(o, ctl->json ? JSON_COMPACT : JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(o);
        status = FCTL_OK;
    } else if (rc == SQLITE_DONE) {
        fprintf(stderr, "funnelctl: no SLA instance %s\n", id);
    } else {
        status = step_failed(st);
    }
    sqlite3_finalize(s);
    return status;
}

int fctl_cmd_sla(fctl_t *ctl)
{
    const char *sub = ctl->args[0];
    bool list = !strcmp(sub, "list"), show = !strcmp(sub, "show");
    if ((!list && !show) || (list && ctl->n_args != 1) || (show && ctl->n_args != 2)) {
        fprintf(stderr, "usage: funnelctl sla list [--state open|breached|met] [--json]\n"
                        "       funnelctl sla show ID [--json]\n");
        return FCTL_USAGE;
    }
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    int status = list ? sla_list(ctl, st) : sla_show(ctl, st, ctl->args[1]);
    funnel_store_destroy(&st);
    return status;
}
