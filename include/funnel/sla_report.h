/* sla_report.h — read-only views of the SLA engine's instances, for funnelctl and other readers.
 *
 * The report runs on any connection to the database, typically one opened read-only with
 * funnel_store_open(path, true, ...) outside funneld: it only SELECTs from the engine's tables
 * and needs none of the engine's runtime (no calendar, no loop), so a reader links it alone.
 * "breached" is not stored: it is a live instance whose due time has passed by the clock of
 * whoever asks (now_ms), so it is computed here, the same way for every reader. */
#ifndef FUNNEL_SLA_REPORT_H
#define FUNNEL_SLA_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "funnel/codec.h"
typedef struct funnel_store funnel_store_t; /* store.h: funnelctl opens it read-only */

/* A time or amount the row does not have (SQL NULL): not due, nothing scheduled, not met. */
#define FUNNEL_SLA_REPORT_NONE INT64_MIN

/* Which instances a list shows, by the state shown (funnel_sla_row_t.state). */
typedef enum funnel_sla_report_state {
    FUNNEL_SLA_REPORT_ANY = 0,
    FUNNEL_SLA_REPORT_OPEN,     /* live and not breached: "open" and "paused" rows */
    FUNNEL_SLA_REPORT_BREACHED, /* live, running (not paused) and past its due time */
    FUNNEL_SLA_REPORT_MET,
    FUNNEL_SLA_REPORT_LIVE,    /* OPEN and BREACHED together: every instance not met */
    FUNNEL_SLA_REPORT_EXPIRED, /* closed by the retention without a stop: not MET's */
} funnel_sla_report_state_t;

/* A due time that sorts after every other: the rows without one (paused) come last. */
#define FUNNEL_SLA_REPORT_DUE_LAST INT64_MAX

/* What to list; every field is optional (zero / NULL: no filter). */
typedef struct funnel_sla_report_filter {
    funnel_sla_report_state_t state;
    const char *policy; /* exact policy name */
    const char *owner;  /* exact owner */
    int64_t limit;      /* rows at most, in the order below; 0: all */
    /* false: in sla_id order. true: by due time (FUNNEL_SLA_REPORT_DUE_LAST for none), then
     * sla_id, from after (after_due, after_id): the last row of the previous page, a cursor
     * that stays right however rows come and go between the pages (after_id 0: from the
     * start). Cheap for the live states, which read the partial index of live instances. */
    bool by_due;
    int64_t after_due, after_id;
} funnel_sla_report_filter_t;

/* One instance as a reader sees it. Text fields are empty when the row has none (acked_by
 * before an acknowledgement, stop_event before the stop); numbers FUNNEL_SLA_REPORT_NONE. */
typedef struct funnel_sla_row {
    int64_t sla_id;
    char policy[FUNNEL_ID_MAX + 1];
    int64_t version; /* the policy version the instance runs under */
    char key[FUNNEL_ID_MAX + 1];
    char owner[FUNNEL_ID_MAX + 1];
    char state[12];        /* shown state: open, paused, breached, met or expired */
    int64_t started_at_ms; /* the start, or the last reset */
    int64_t due_at_ms;
    int64_t next_at_ms; /* when the next step fires */
    int64_t step;       /* the next step: 0 warning, 1.. escalation levels, then repeats */
    char acked_by[FUNNEL_ID_MAX + 1];
    char start_event[FUNNEL_ID_MAX + 1];
    int64_t stopped_at_ms; /* once met */
    int on_time;           /* once met: 1 or 0; -1 before */
    int64_t late_ms;       /* once met: business time past the target */
    char stop_event[FUNNEL_ID_MAX + 1];
    char *definition; /* owned; the policy version's text: set by funnel_sla_report_show only,
                         NULL when the version row is missing */
    char process[FUNNEL_ID_MAX + 1];     /* the version's process title (the policy's name) */
    char responsible[FUNNEL_ID_MAX + 1]; /* who answers for it; empty when not configured */
    char queue[FUNNEL_ID_MAX + 1];       /* empty when the policy has no queue */
    int64_t priority;                    /* 0 when the policy has no priority */
    int64_t opened_at_ms;                /* the start (a reset does not move it) */
} funnel_sla_row_t;

typedef struct funnel_sla_report_list {
    funnel_sla_row_t *rows; /* owned; in sla_id order; definition is NULL in each */
    size_t n_rows;
} funnel_sla_report_list_t;

/* The state filter named name ("open", "breached", "met", "live" or "expired"), for
 * funnelctl's --state and funnel-web's state=: one list of names for both. Returns 0, or
 * FUNNEL_EINVAL for any other name (*out untouched). */
#define FUNNEL_SLA_REPORT_STATE_NAMES "open, breached, live, met or expired"
int funnel_sla_report_state_parse(const char *name, funnel_sla_report_state_t *out);

/* Lists the instances that pass filter (NULL: all), as of now_ms. *out is owned by the caller
 * (funnel_sla_report_list_free). Returns 0; FUNNEL_EINVAL for an unknown filter state;
 * FUNNEL_ESTORE when the database has no SLA tables or a read failed (then no partial list is
 * returned: a list cut short by a locked database must not look complete); FUNNEL_ENOMEM. */
int funnel_sla_report_list(funnel_store_t *store, const funnel_sla_report_filter_t *filter,
                           int64_t now_ms, funnel_sla_report_list_t **out);
/* How many instances pass filter (its state, policy and owner; not its limit or cursor) as
 * of now_ms, into *n. Returns 0, FUNNEL_EINVAL, FUNNEL_ESTORE. */
int funnel_sla_report_count(funnel_store_t *store, const funnel_sla_report_filter_t *filter,
                            int64_t now_ms, int64_t *n);
void funnel_sla_report_list_free(funnel_sla_report_list_t **list);

/* The distinct policies (owner false), then the distinct owners (owner true) of the live
 * instances, each in byte order, owned by only_owner when it is not NULL: what a list of live
 * instances can be filtered by, read from the partial index of live instances whatever the
 * history. Calls fn for each; returns 0, fn's first non-zero, FUNNEL_ESTORE. */
int funnel_sla_report_live_names(funnel_store_t *store, const char *only_owner,
                                 int (*fn)(bool owner, const char *name, void *arg), void *arg);

/* One instance with its policy version's definition, as of now_ms. *out is owned by the caller
 * (funnel_sla_report_row_free). Returns 0; FUNNEL_ENOTFOUND when there is no such sla_id;
 * FUNNEL_ESTORE, FUNNEL_ENOMEM. */
int funnel_sla_report_show(funnel_store_t *store, int64_t sla_id, int64_t now_ms,
                           funnel_sla_row_t **out);
void funnel_sla_report_row_free(funnel_sla_row_t **row);

/* `sla next`: the instance of a queue to take now and the queue's length. */
typedef struct funnel_sla_next {
    bool found;           /* false: nothing running in the queue (row is zeroed) */
    funnel_sla_row_t row; /* the running (open, not paused) instance of the highest priority,
                             oldest start first (ties by start event id); definition NULL */
    int64_t length;       /* instances of the queue not met, paused ones included */
    int64_t paused;       /* of which paused */
} funnel_sla_next_t;

/* Fills *out for policy and queue as of now_ms, in one read. Returns 0 (also for an unknown
 * policy or queue: an empty queue), FUNNEL_ESTORE. */
int funnel_sla_report_next(funnel_store_t *store, const char *policy, const char *queue,
                           int64_t now_ms, funnel_sla_next_t *out);

/* `sla status`: one line per policy (its process), as of now_ms, the period from since_ms. */
typedef struct funnel_sla_status_row {
    char policy[FUNNEL_ID_MAX + 1];
    char process[FUNNEL_ID_MAX + 1];     /* of the policy's latest version */
    char responsible[FUNNEL_ID_MAX + 1]; /* of the latest version; empty when none */
    int64_t open;                        /* not met: running or paused, breached included */
    int64_t at_risk;                     /* running, not breached, the warning published */
    int64_t breached;                    /* running and past due by now_ms */
    int64_t met_on_time;                 /* stopped at or after since_ms, on time */
    int64_t met_late;                    /* stopped at or after since_ms, late */
    int64_t oldest_open_age_ms; /* now_ms minus the earliest start of the open ones; NONE: none */
} funnel_sla_status_row_t;

typedef struct funnel_sla_status {
    funnel_sla_status_row_t *rows; /* owned; by process, then policy */
    size_t n_rows;
} funnel_sla_status_t;

/* Fills *out (owned by the caller: funnel_sla_report_status_free) in one read. Returns 0,
 * FUNNEL_ESTORE (no partial result), FUNNEL_ENOMEM. */
int funnel_sla_report_status(funnel_store_t *store, int64_t since_ms, int64_t now_ms,
                             funnel_sla_status_t **out);
void funnel_sla_report_status_free(funnel_sla_status_t **status);

#endif
