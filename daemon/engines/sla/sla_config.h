/* sla_config.h — the `sla { ... }` config section: business calendars, SLA policies and lead
 * quotas, plus the event matching both engines parts share.
 *
 * Plain data, parsed and printed here; the engine (sla.h) runs it. Strings and arrays are owned
 * by the structs and freed by funnel_sla_config_clear. A policy carries its own definition text
 * (its calendar inlined) and a hash of it: the engine stores the text as a numbered version the
 * first time it sees that hash, so running instances keep the rules they started under. */
#ifndef FUNNEL_SLA_CONFIG_H
#define FUNNEL_SLA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "calendar.h"
#include "funnel/codec.h"

#define FUNNEL_SLA_MAX_FILTERS 4 /* field = value filters per topic match */
#define FUNNEL_SLA_MAX_MATCHES 8 /* topics per stop/reset/pause/resume list */
#define FUNNEL_SLA_MAX_LEVELS  8 /* escalation levels per policy */

/* "lead.qualified stage=SQL": a topic and field filters on its body, all of which must hold.
 * A filter compares the field's text: strings as they are, enums by value name. */
typedef struct funnel_sla_match {
    char *text; /* as configured; owned */
    funnel_body_t body;
    size_t n_filters;
    char *field[FUNNEL_SLA_MAX_FILTERS]; /* owned */
    char *value[FUNNEL_SLA_MAX_FILTERS]; /* owned */
} funnel_sla_match_t;

typedef struct funnel_sla_match_list {
    funnel_sla_match_t items[FUNNEL_SLA_MAX_MATCHES];
    size_t n;
} funnel_sla_match_list_t;

typedef struct funnel_sla_level {
    int64_t after_ms; /* business time after the due time (0: at the due time) */
    char *notify;     /* opaque target passed through to sla.escalation; owned */
} funnel_sla_level_t;

/* How a policy's instances are due to be taken (README, "Requests and processing order"). */
typedef enum funnel_sla_order {
    FUNNEL_SLA_ORDER_NONE = 0,
    FUNNEL_SLA_ORDER_FIFO, /* oldest first within a queue (and priority) */
} funnel_sla_order_t;

typedef struct funnel_sla_policy {
    char *name;                     /* owned */
    funnel_sla_match_list_t start;  /* events that start an instance */
    funnel_sla_match_list_t reopen; /* start one for a key whose last instance is met, with its
                                       owner, queue and priority */
    char *key;                      /* body field keying instances: lead_id, client_id */
    char *owner; /* body field of the start (and assign) event naming the owner */
    funnel_sla_match_list_t assign;  /* events whose `owner` field becomes the instance's owner */
    char *process;                   /* human title of the process; owned, the name by default */
    char *responsible;               /* team or person answerable for it; owned, may be NULL */
    funnel_sla_order_t order;        /* FIFO: sla.order_violated when taken out of order */
    char *queue;                     /* body field of the start naming the queue; owned or NULL */
    char *priority;                  /* body field of the start with the priority; owned or NULL */
    funnel_sla_match_list_t stop;    /* met */
    funnel_sla_match_list_t reset;   /* restart the clock (next-response targets) */
    funnel_sla_match_list_t pause;   /* stop the clock */
    funnel_sla_match_list_t resume;  /* run it again */
    int64_t target_ms;               /* business time on the calendar */
    funnel_calendar_spec_t calendar; /* resolved copy: the version keeps it */
    int64_t warn_ms;                 /* warn this much business time before due; 0: no */
    int64_t warn_pct;                /* or this percentage of the target before due; 0: no */
    funnel_sla_level_t levels[FUNNEL_SLA_MAX_LEVELS]; /* ascending after_ms */
    size_t n_levels;
    int64_t repeat_count;    /* repeats of the last level after it fired */
    int64_t repeat_every_ms; /* business time between them */
    char *definition;        /* the policy printed with its calendar inlined; owned */
    uint64_t hash;           /* FNV-1a of definition */
} funnel_sla_policy_t;

/* A minimum number of matching events per calendar week or month. */
typedef struct funnel_sla_quota {
    char *name; /* owned */
    funnel_sla_match_t count;
    funnel_period_t period;
    funnel_calendar_spec_t calendar; /* resolved copy; its time zone bounds the periods */
    int64_t minimum;
    int64_t pace_pct; /* warn when this much of the period passed below as much of the
                         minimum; 0: no pace warning */
} funnel_sla_quota_t;

/* The default of late_grace (funnel_sla_config_t.late_grace_ms). */
#define FUNNEL_SLA_LATE_GRACE_MS 60000

/* The default of horizon (funnel_sla_config_t.horizon_ms): a year and a month of slack. */
#define FUNNEL_SLA_HORIZON_MS (400LL * 24 * 3600 * 1000)

typedef struct funnel_sla_config {
    funnel_calendar_spec_t *calendars; /* owned */
    size_t n_calendars;
    funnel_sla_policy_t *policies; /* owned */
    size_t n_policies;
    funnel_sla_quota_t *quotas; /* owned */
    size_t n_quotas;
    /* `late_grace`: the wall-clock timer fires an instance's steps only once this long has
     * passed since the instance's last event arrived, so the rest of a stream that arrives
     * close behind (a backfill in several batches) is applied first: steps due before an event
     * come out before it either way, and one a stop makes moot never does. 0: at their due time.
     * A step due later than the arrival plus the grace fires at its due time (README, "Late
     * grace"). */
    int64_t late_grace_ms;
    /* `horizon`: how far in event time before the latest event seen (the watermark) the
     * engine keeps met instances and their log; older ones are pruned by the timer, and an
     * event older than the horizon for a key with no instance kept from before it is refused
     * (README, "SLA state retention"). 0: keep everything. */
    int64_t horizon_ms;
} funnel_sla_config_t;

/* Section hooks of the engine registry (core/engine.h) (void * is a funnel_sla_config_t *). The
 * defaults are empty: no policies, no quotas, late_grace FUNNEL_SLA_LATE_GRACE_MS, horizon
 * FUNNEL_SLA_HORIZON_MS. parse writes the section only on success. */
int funnel_sla_config_defaults(void *sec);
struct config_setting_t;
int funnel_sla_config_parse(const struct config_setting_t *group, void *sec, char *err,
                            size_t err_len);
void funnel_sla_config_clear(void *sec);
void funnel_sla_config_print(const void *sec, FILE *out);

/* Parses a policy from its stored definition (the text of funnel_sla_policy_t.definition) into
 * a zeroed policy. 0, FUNNEL_ECONFIG with err, or FUNNEL_ENOMEM. */
int funnel_sla_policy_from_text(const char *definition, funnel_sla_policy_t *p, char *err,
                                size_t err_len);
void funnel_sla_policy_clear(funnel_sla_policy_t *p);

/* Whether env is the topic of m and passes its filters. */
bool funnel_sla_match(const funnel_sla_match_t *m, const funnel_envelope_t *env);
bool funnel_sla_match_any(const funnel_sla_match_list_t *list, const funnel_envelope_t *env);

/* The text of the body field named field into buf, or a pointer into env; "" when absent or
 * empty. A field with a documented default reads as it when empty (request_opened.queue reads as
 * to_team). */
const char *funnel_sla_field(const funnel_envelope_t *env, const char *field, char *buf,
                             size_t buf_len);

#endif
