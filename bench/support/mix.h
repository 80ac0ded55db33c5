/* mix.h — a deterministic, seeded generator of a realistic funnel: a year of leads with
 * campaign touches, MQL/SQL qualification, first contacts, closes, handoffs of won clients,
 * monthly payments and a few refunds, in several currencies, emitted lazily in event-time
 * order.
 *
 * The distribution (per lead, each decision drawn from a hash of the seed, the lead and the
 * decision, so it does not depend on anything else):
 *   - lead.created, evenly over the year, with 1-3 touches up to 14 days earlier;
 *   - 0-4 lead.touched, 1 hour to 60 days after creation;
 *   - 50% qualify MQL (lead.qualified stage=MQL, owner "marketing") 1 hour to 14 days after
 *     creation; the others end there;
 *   - 40% of MQLs qualify SQL 30 minutes to 3 days later with an owner (one of 30 reps); the
 *     other MQLs are closed DISQUALIFIED 1 hour to 5 days later;
 *   - every SQL is contacted by its owner 5 minutes to 8 hours later (lead.contacted), and
 *     closed 7 to 45 days after the SQL: 30% WON, the rest LOST;
 *   - a won lead is handed off (client.handed_off: from_rep = the owner, one of 6 account
 *     managers) 1 hour to 3 days after the close;
 *   - the client pays a monthly price (29, 49, 99, 199, 499 or 999 in USD 50%, EUR 30%, GBP
 *     12%, RUB 8% at 90 times the amount) for 1-36 months: the first payment 1 to 35 days after
 *     the handoff, then every 30 days plus up to 2 days;
 *   - 3% of payments are refunded 1 hour to 14 days later, half in whole and half in part
 *     (10-90%), in the payment's currency.
 * Events after the end of the year (end_ms) are not emitted, nor anything that would follow
 * them. Event ids are UUIDv7-shaped: the event time, then the event's index in the stream, so
 * they increase strictly and the index can be read back from an id.
 *
 * Memory: one 16-byte queue entry per pending event (about 2 per live lead), not per event. */
#ifndef FUNNEL_BENCH_MIX_H
#define FUNNEL_BENCH_MIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MIX_YEAR_MS (365LL * 86400000LL)

/* What happened, finer than the topic (qualification and close each have two kinds). */
typedef enum bench_mix_kind {
    BENCH_MIX_CREATED,
    BENCH_MIX_TOUCHED,
    BENCH_MIX_MQL,
    BENCH_MIX_SQL,
    BENCH_MIX_CONTACTED,
    BENCH_MIX_DISQUALIFIED,
    BENCH_MIX_WON,
    BENCH_MIX_LOST,
    BENCH_MIX_HANDED_OFF,
    BENCH_MIX_PAYMENT,
    BENCH_MIX_REFUND,
    BENCH_MIX_KINDS_
} bench_mix_kind_t;

/* One generated event; the pointers stay valid until the next bench_mix_next. */
typedef struct bench_mix_event {
    bench_mix_kind_t kind;
    const char *topic;    /* the ingest topic, e.g. "lead.qualified" */
    const char *event_id; /* 36 characters */
    const uint8_t *data;  /* the packed Envelope */
    size_t len;
    uint64_t index; /* 0, 1, 2, ... in emission order */
    int64_t at_ms;  /* occurred_at_ms, never decreasing */
} bench_mix_event_t;

typedef struct bench_mix bench_mix_t;

/* A generator of `leads` leads whose year ends at end_ms. Returns 0, FUNNEL_EINVAL for no
 * leads or more than UINT32_MAX, FUNNEL_ENOMEM. *out is freed with bench_mix_destroy. */
int bench_mix_new(uint64_t leads, uint64_t seed, int64_t end_ms, bench_mix_t **out);
void bench_mix_destroy(bench_mix_t **mix);

/* The next event in event-time order: 1 and *ev filled, 0 when the year is over, or a negative
 * error code (FUNNEL_ENOMEM). */
int bench_mix_next(bench_mix_t *mix, bench_mix_event_t *ev);

/* bench_mix_next in the shape of a bench_source_t's next (bench.h): the event's topic, bytes
 * and index; *ev gets the whole event. Same return values. */
int bench_mix_next_message(bench_mix_t *mix, bench_mix_event_t *ev, const char **topic,
                           const void **data, size_t *len, uint64_t *index);

/* The index encoded in one of this generator's event ids (len bytes); false for other ids. */
bool bench_mix_index_of(const void *id, size_t len, uint64_t *index);

/* "lead.created", "lead.qualified stage=MQL", ...: a kind's name for tables. */
const char *bench_mix_kind_name(bench_mix_kind_t kind);

#endif
