/* sla_quota.c — SLA quotas: events counted into local week or month periods, periods closed
 * and reported below their minimum, pace checks within a period (see sla.h for the contract). */
#include "sla_internal.h"
#include "funnel/error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

quota_state_t *sla_quota_state(funnel_sla_t *sla, const funnel_sla_quota_t *q, bool create)
{
    char err[256];
    quota_state_t *qs = NULL;
    for (size_t i = 0; i < sla->n_quotas && !qs; i++)
        if (strcmp(sla->quotas[i].name, q->name) == 0)
            qs = &sla->quotas[i];
    if (!qs && create) {
        quota_state_t *arr = realloc(sla->quotas, (sla->n_quotas + 1) * sizeof *arr);
        if (!arr)
            return NULL;
        sla->quotas = arr;
        qs = &arr[sla->n_quotas];
        memset(qs, 0, sizeof *qs);
        qs->next_at = INT64_MIN;
        if (!(qs->name = strdup(q->name)))
            return NULL;
        sla->n_quotas++;
    }
    /* A reload may move the quota to another time zone: periods follow it. */
    if (qs && (!qs->time_zone || strcmp(qs->time_zone, q->calendar.time_zone))) {
        /* Replace the pair only once both are built: time_zone names the zone cal was compiled
         * for, so after a failure the old pair stays (or none), never a zone without a calendar,
         * and the next call tries again. */
        funnel_calendar_t *cal = NULL;
        char *tz = strdup(q->calendar.time_zone);
        if (!tz || funnel_calendar_new(&q->calendar, &cal, err, sizeof err)) {
            free(tz);
            return NULL;
        }
        funnel_calendar_destroy(&qs->cal);
        free(qs->time_zone);
        qs->time_zone = tz;
        qs->cal = cal;
    }
    return qs;
}

static void quota_key(sqlite3_stmt *s, const char *name, int64_t start, int64_t end)
{
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, start);
    sqlite3_bind_int64(s, 3, end);
}

/* The span of periods the quota has opened (sla_quota_span); *since = NONE before its first
 * run. */
static int quota_span(funnel_sla_t *sla, const char *name, int64_t *since, int64_t *through)
{
    sqlite3_stmt *s = sla_stmt(sla, S_SPAN_GET);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *since = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : NONE;
    *through = rc == SQLITE_ROW ? sqlite3_column_int64(s, 1) : NONE;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Counts the event into its local day too (sla_quota_day), so a reader can draw the count so
 * far within a period: a sum, like the period's, whatever the order the events came in. */
static int quota_day_count(funnel_sla_t *sla, quota_state_t *qs, const char *name,
                           const funnel_envelope_t *env)
{
    int64_t ds, de;
    funnel_calendar_period(qs->cal, FUNNEL_PERIOD_DAY, env->occurred_at_ms, &ds, &de);
    sqlite3_stmt *s = sla_stmt(sla, S_QUOTA_DAY);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, ds);
    return sla_step_done(s);
}

/* Counts the event into its period of every quota it matches (event time, local periods). A
 * late event for a period that has a row counts there (a report already made stays made). A
 * period without a row that has already ended is recorded closed, reporting nothing, only when
 * it began before the quota's first run (it predates the quota); one after that is a period
 * funneld was down for, and the next timer pass closes and reports it (quota_run). */
int sla_quota_count(funnel_sla_t *sla, const funnel_envelope_t *env, int64_t now_ms)
{
    for (size_t i = 0; i < sla->cfg->n_quotas; i++) {
        const funnel_sla_quota_t *q = &sla->cfg->quotas[i];
        if (!funnel_sla_match(&q->count, env))
            continue;
        quota_state_t *qs = sla_quota_state(sla, q, true);
        int64_t ps, pe;
        if (!qs)
            return FUNNEL_ENOMEM;
        funnel_calendar_period(qs->cal, q->period, env->occurred_at_ms, &ps, &pe);
        int64_t since, through;
        int rc = quota_span(sla, q->name, &since, &through);
        if (rc)
            return rc;
        sqlite3_stmt *s = sla_stmt(sla, S_QUOTA_COUNT);
        quota_key(s, q->name, ps, pe);
        sqlite3_bind_int(s, 4, pe <= now_ms && (since == NONE || ps < since));
        if ((rc = sla_step_done(s)) || (rc = quota_day_count(sla, qs, q->name, env)))
            return rc;
    }
    return 0;
}

static int quota_emit(funnel_router_t *router, const funnel_sla_quota_t *q, int64_t ps, int64_t pe,
                      int64_t actual, bool pace, int64_t at, int64_t now_ms)
{
    funnel_envelope_t env;
    Funnel__V1__SlaQuotaMissed m;
    char event_id[200];
    funnel__v1__envelope__init(&env);
    funnel__v1__sla_quota_missed__init(&m);
    snprintf(event_id, sizeof event_id, "quota-%s-%" PRId64 "%s", q->name, ps, pace ? "-pace" : "");
    env.event_id = event_id;
    env.occurred_at_ms = at;
    env.source = "funneld";
    m.policy = q->name;
    m.period_start_ms = ps;
    m.period_end_ms = pe;
    m.minimum = pace ? q->minimum * q->pace_pct / 100 : q->minimum;
    m.actual = actual;
    m.pace = pace;
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_QUOTA_MISSED;
    env.sla_quota_missed = &m;
    return funnel_router_emit(router, "sla.quota_missed", &env, now_ms);
}

/* Creates every period row from the end of the span opened so far up to the period containing
 * now, so a period in which nothing was counted still reports, also after downtime, and also
 * when an event dated in a later period gave that one a row first: the span, not the latest
 * row, says where funneld stopped. */
static int quota_ensure(funnel_sla_t *sla, const funnel_sla_quota_t *q, quota_state_t *qs,
                        int64_t now_ms)
{
    int64_t since, from;
    int rc = quota_span(sla, q->name, &since, &from);
    if (rc)
        return rc;
    if (since == NONE) {
        int64_t pe;
        funnel_calendar_period(qs->cal, q->period, now_ms, &since, &pe);
        from = since;
    }
    int64_t through = from;
    for (int k = 0; k < QUOTA_BATCH && from <= now_ms; k++) {
        int64_t ps;
        funnel_calendar_period(qs->cal, q->period, from, &ps, &through);
        sqlite3_stmt *s = sla_stmt(sla, S_QUOTA_ENSURE);
        quota_key(s, q->name, ps, through);
        if ((rc = sla_step_done(s)))
            return rc;
        from = through;
    }
    sqlite3_stmt *s = sla_stmt(sla, S_SPAN_SET);
    quota_key(s, q->name, since, through);
    return sla_step_done(s);
}

/* Closes ended periods (sla.quota_missed below the minimum), runs due pace checks, and
 * computes when this quota next has work. */
int sla_quota_run(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_quota_t *q,
                  int64_t now_ms)
{
    quota_state_t *qs = sla_quota_state(sla, q, true);
    if (!qs)
        return FUNNEL_ENOMEM;
    int rc = quota_ensure(sla, q, qs, now_ms);
    struct {
        int64_t ps, pe, actual, pace_done;
    } rows[QUOTA_BATCH];
    size_t n = 0;
    sqlite3_stmt *s = sla_stmt(sla, S_QUOTA_OPEN);
    sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
    int step = SQLITE_DONE;
    while (!rc && n < QUOTA_BATCH && (step = sqlite3_step(s)) == SQLITE_ROW) {
        rows[n].ps = sqlite3_column_int64(s, 0);
        rows[n].pe = sqlite3_column_int64(s, 1);
        rows[n].actual = sqlite3_column_int64(s, 2);
        rows[n++].pace_done = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    /* A failed step is not the end of the periods: closing only some would skip reports. */
    if (!rc && step != SQLITE_ROW && step != SQLITE_DONE)
        rc = FUNNEL_ESTORE;
    qs->next_at = NONE;
    for (size_t i = 0; !rc && i < n; i++) {
        int64_t pace_at = rows[i].ps + (rows[i].pe - rows[i].ps) * q->pace_pct / 100;
        bool pace_due = q->pace_pct && !rows[i].pace_done;
        bool closing = rows[i].pe <= now_ms;
        if (pace_due && pace_at <= now_ms) {
            /* Past the period's end the full check below says it all: no pace line. */
            if (!closing && rows[i].actual < q->minimum * q->pace_pct / 100)
                rc = quota_emit(router, q, rows[i].ps, rows[i].pe, rows[i].actual, true, pace_at,
                                now_ms);
            pace_due = false;
        }
        if (!rc && closing && rows[i].actual < q->minimum)
            rc = quota_emit(router, q, rows[i].ps, rows[i].pe, rows[i].actual, false, rows[i].pe,
                            now_ms);
        if (rc)
            break;
        s = sla_stmt(sla, S_QUOTA_MARK);
        sqlite3_bind_int(s, 1, !pace_due);
        sqlite3_bind_int(s, 2, closing);
        sqlite3_bind_text(s, 3, q->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, rows[i].ps);
        rc = sla_step_done(s);
        int64_t next = closing ? NONE : pace_due ? pace_at : rows[i].pe;
        qs->next_at = next < qs->next_at ? next : qs->next_at;
    }
    if (n == QUOTA_BATCH)
        qs->next_at = now_ms; /* more periods wait: run again at once */
    return rc;
}
