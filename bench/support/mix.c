/* mix.c — the realistic funnel generator (see mix.h for the distribution). */
#include "mix.h"

#include "funnel/codec.h"
#include "funnel/error.h"
#include "timerheap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS (60LL * 1000)
#define HOUR_MS   (60 * MINUTE_MS)
#define DAY_MS    (24 * HOUR_MS)
#define REPS      30
#define MANAGERS  6

/* Each decision about a lead has its own salt, so adding one does not shift the others. */
enum salt {
    S_CREATED_AT,
    S_SEGMENT,
    S_TOUCHES,
    S_TOUCH_AT,
    S_CAMPAIGN,
    S_LATER,
    S_LATER_AT,
    S_MQL,
    S_MQL_AT,
    S_SQL,
    S_SQL_AT,
    S_OWNER,
    S_CONTACT_AT,
    S_DISQUALIFIED_AT,
    S_WON,
    S_CLOSE_AT,
    S_HANDOFF_AT,
    S_MANAGER,
    S_PRICE,
    S_CURRENCY,
    S_MONTHS,
    S_PAY_AT,
    S_REFUND,
    S_REFUND_AT,
    S_REFUND_PART,
};

typedef struct campaign {
    const char *channel, *source, *medium, *campaign;
} campaign_t;

static const campaign_t campaigns[] = {
    {"paid_search", "google", "cpc", "brand"},
    {"paid_search", "google", "cpc", "crm-generic"},
    {"paid_search", "bing", "cpc", "crm-generic"},
    {"paid_social", "linkedin", "paid", "abm-enterprise"},
    {"paid_social", "facebook", "paid", "retargeting"},
    {"email", "newsletter", "email", "monthly-digest"},
    {"organic_search", "google", "organic", "seo"},
    {"referral", "partners", "referral", "partner-program"},
    {"display", "gdn", "display", "retargeting"},
    {"events", "webinar", "event", "webinar-series"},
};
#define CAMPAIGNS (sizeof campaigns / sizeof campaigns[0])

static const int64_t prices[] = {2900, 4900, 9900, 19900, 49900, 99900}; /* minor units */

static const char *const kind_names[BENCH_MIX_KINDS_] = {
    [BENCH_MIX_CREATED] = "lead.created",
    [BENCH_MIX_TOUCHED] = "lead.touched",
    [BENCH_MIX_MQL] = "lead.qualified stage=MQL",
    [BENCH_MIX_SQL] = "lead.qualified stage=SQL",
    [BENCH_MIX_CONTACTED] = "lead.contacted",
    [BENCH_MIX_DISQUALIFIED] = "lead.closed DISQUALIFIED",
    [BENCH_MIX_WON] = "lead.closed WON",
    [BENCH_MIX_LOST] = "lead.closed LOST",
    [BENCH_MIX_HANDED_OFF] = "client.handed_off",
    [BENCH_MIX_PAYMENT] = "payment.received",
    [BENCH_MIX_REFUND] = "payment.refunded",
};

/* A pending event: enough to rebuild it, since every detail is a hash of (seed, lead, salt).
 * It lives in the queue as (at_ms, id) with id = lead << 32 | kind << 16 | n: the queue orders
 * by time, then id, a total order, so ties come out the same way every run. */
typedef struct pending {
    int64_t at_ms;
    uint32_t lead;
    uint16_t kind;
    uint16_t n; /* later touch or payment number */
} pending_t;

struct bench_mix {
    uint64_t leads, seed;
    int64_t start_ms, end_ms;
    funnel_timerheap_t *queue; /* the pending events, earliest first */
    uint64_t emitted;
    uint8_t *buf; /* the packed envelope of the last event */
    size_t buf_cap;
    char event_id[37], ids[3][48], text[2][32];
};

/* ---- hashing: every decision is a pure function of (seed, lead, salt, n) ----------------- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t mix_hash(const bench_mix_t *m, uint32_t lead, enum salt salt, unsigned n)
{
    uint64_t x = splitmix(m->seed);
    x = splitmix(x ^ lead);
    return splitmix(x ^ ((uint64_t)salt << 32 | n));
}

/* Uniform in [lo, hi]. */
static int64_t mix_range(const bench_mix_t *m, uint32_t lead, enum salt salt, unsigned n,
                         int64_t lo, int64_t hi)
{
    return lo + (int64_t)(mix_hash(m, lead, salt, n) % (uint64_t)(hi - lo + 1));
}

/* True with probability pct / 100. */
static bool mix_chance(const bench_mix_t *m, uint32_t lead, enum salt salt, unsigned n,
                       unsigned pct)
{
    return mix_hash(m, lead, salt, n) % 100 < pct;
}

/* ---- the queue of pending events ---------------------------------------------------------- */

/* Queues an event unless it falls after the year. */
static int mix_push(bench_mix_t *m, int64_t at_ms, uint32_t lead, bench_mix_kind_t kind, unsigned n)
{
    if (at_ms > m->end_ms)
        return 0;
    return funnel_timerheap_push(m->queue, at_ms,
                                 (int64_t)((uint64_t)lead << 32 | (uint64_t)kind << 16 | n));
}

static pending_t mix_pop(bench_mix_t *m)
{
    funnel_timer_entry_t e;
    funnel_timerheap_pop(m->queue, &e); /* the caller checked it is not empty */
    uint64_t id = (uint64_t)e.id;
    return (pending_t){e.at, (uint32_t)(id >> 32), (uint16_t)(id >> 16), (uint16_t)id};
}

/* ---- what follows what --------------------------------------------------------------------- */

/* Lead i is created in the i-th of `leads` equal slots of the year, somewhere inside it, so
 * creations come in order without knowing the next one's time in advance. */
static int64_t lead_created_at(const bench_mix_t *m, uint32_t lead)
{
    int64_t slot = BENCH_MIX_YEAR_MS / (int64_t)m->leads;
    return m->start_ms + (int64_t)lead * slot + mix_range(m, lead, S_CREATED_AT, 0, 0, slot - 1);
}

/* Payments come every 30 days plus this jitter (k = 0 for the first): removing payment k's
 * jitter from its time gives the base the next one adds its period to. */
static int64_t payment_jitter(const bench_mix_t *m, uint32_t lead, unsigned k)
{
    return mix_range(m, lead, S_PAY_AT, k + 1, 0, 2 * DAY_MS);
}

static int64_t payment_amount(const bench_mix_t *m, uint32_t lead, const char **currency)
{
    uint64_t c = mix_hash(m, lead, S_CURRENCY, 0) % 100;
    int64_t price = prices[mix_hash(m, lead, S_PRICE, 0) % (sizeof prices / sizeof prices[0])];
    *currency = c < 50 ? "USD" : c < 80 ? "EUR" : c < 92 ? "GBP" : "RUB";
    return c < 92 ? price : price * 90;
}

/* Half of the refunds return the whole payment, the others 10-90% of it. */
static int64_t refund_amount(const bench_mix_t *m, uint32_t lead, unsigned k, int64_t amount)
{
    if (mix_chance(m, lead, S_REFUND_PART, k, 50))
        return amount;
    int64_t part = amount * mix_range(m, lead, S_REFUND_PART, k + 1000, 10, 90) / 100;
    return part > 0 ? part : 1;
}

static int follow_created(bench_mix_t *m, const pending_t *p)
{
    uint32_t lead = p->lead;
    int rc = 0;
    if (lead + 1 < m->leads)
        rc = mix_push(m, lead_created_at(m, lead + 1), lead + 1, BENCH_MIX_CREATED, 0);
    int later = (int)mix_range(m, lead, S_LATER, 0, 0, 4);
    for (int k = 0; !rc && k < later; k++)
        rc = mix_push(m, p->at_ms + mix_range(m, lead, S_LATER_AT, k, HOUR_MS, 60 * DAY_MS), lead,
                      BENCH_MIX_TOUCHED, k);
    if (!rc && mix_chance(m, lead, S_MQL, 0, 50))
        rc = mix_push(m, p->at_ms + mix_range(m, lead, S_MQL_AT, 0, HOUR_MS, 14 * DAY_MS), lead,
                      BENCH_MIX_MQL, 0);
    return rc;
}

static int follow_mql(bench_mix_t *m, const pending_t *p)
{
    if (mix_chance(m, p->lead, S_SQL, 0, 40))
        return mix_push(m,
                        p->at_ms + mix_range(m, p->lead, S_SQL_AT, 0, 30 * MINUTE_MS, 3 * DAY_MS),
                        p->lead, BENCH_MIX_SQL, 0);
    return mix_push(m, p->at_ms + mix_range(m, p->lead, S_DISQUALIFIED_AT, 0, HOUR_MS, 5 * DAY_MS),
                    p->lead, BENCH_MIX_DISQUALIFIED, 0);
}

static int follow_sql(bench_mix_t *m, const pending_t *p)
{
    bool won = mix_chance(m, p->lead, S_WON, 0, 30);
    int rc =
        mix_push(m, p->at_ms + mix_range(m, p->lead, S_CONTACT_AT, 0, 5 * MINUTE_MS, 8 * HOUR_MS),
                 p->lead, BENCH_MIX_CONTACTED, 0);
    if (!rc)
        rc = mix_push(m, p->at_ms + mix_range(m, p->lead, S_CLOSE_AT, 0, 7 * DAY_MS, 45 * DAY_MS),
                      p->lead, won ? BENCH_MIX_WON : BENCH_MIX_LOST, 0);
    return rc;
}

static int follow_payment(bench_mix_t *m, const pending_t *p)
{
    int rc = 0;
    unsigned k = p->n, months = (unsigned)mix_range(m, p->lead, S_MONTHS, 0, 1, 36);
    if (mix_chance(m, p->lead, S_REFUND, k, 3))
        rc = mix_push(m, p->at_ms + mix_range(m, p->lead, S_REFUND_AT, k, HOUR_MS, 14 * DAY_MS),
                      p->lead, BENCH_MIX_REFUND, k);
    if (!rc && k + 1 < months)
        rc = mix_push(m,
                      p->at_ms - payment_jitter(m, p->lead, k) + 30 * DAY_MS +
                          payment_jitter(m, p->lead, k + 1),
                      p->lead, BENCH_MIX_PAYMENT, k + 1);
    return rc;
}

/* Queues what the event p makes happen later. */
static int mix_follow(bench_mix_t *m, const pending_t *p)
{
    switch ((bench_mix_kind_t)p->kind) {
    case BENCH_MIX_CREATED:
        return follow_created(m, p);
    case BENCH_MIX_MQL:
        return follow_mql(m, p);
    case BENCH_MIX_SQL:
        return follow_sql(m, p);
    case BENCH_MIX_WON:
        return mix_push(m, p->at_ms + mix_range(m, p->lead, S_HANDOFF_AT, 0, HOUR_MS, 3 * DAY_MS),
                        p->lead, BENCH_MIX_HANDED_OFF, 0);
    case BENCH_MIX_HANDED_OFF:
        return mix_push(m,
                        p->at_ms + mix_range(m, p->lead, S_PAY_AT, 0, DAY_MS, 35 * DAY_MS) +
                            payment_jitter(m, p->lead, 0),
                        p->lead, BENCH_MIX_PAYMENT, 0);
    case BENCH_MIX_PAYMENT:
        return follow_payment(m, p);
    default:
        return 0; /* touches, contacts, lost and disqualified closes and refunds end a chain */
    }
}

/* ---- the envelope of one event -------------------------------------------------------------- */

static void touch_fill(const bench_mix_t *m, uint32_t lead, unsigned n, int64_t at_ms,
                       Funnel__V1__Touch *t)
{
    const campaign_t *c = &campaigns[mix_hash(m, lead, S_CAMPAIGN, n) % CAMPAIGNS];
    t->channel = (char *)c->channel;
    t->source = (char *)c->source;
    t->medium = (char *)c->medium;
    t->campaign = (char *)c->campaign;
    t->at_ms = at_ms;
}

static const char *rep_name(const bench_mix_t *m, uint32_t lead, char *buf)
{
    snprintf(buf, 32, "rep-%02u", (unsigned)(mix_hash(m, lead, S_OWNER, 0) % REPS));
    return buf;
}

/* Packs env into m->buf. */
static int mix_pack(bench_mix_t *m, const funnel_envelope_t *env, size_t *len)
{
    size_t need = funnel__v1__envelope__get_packed_size(env);
    if (need > m->buf_cap) {
        uint8_t *buf = realloc(m->buf, need);
        if (!buf)
            return FUNNEL_ENOMEM;
        m->buf = buf;
        m->buf_cap = need;
    }
    *len = funnel__v1__envelope__pack(env, m->buf);
    return 0;
}

static const char *const segments[] = {"smb",        "smb",        "smb",
                                       "mid-market", "mid-market", "enterprise"};

static int pack_created(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__Touch t[3], *tp[3];
    Funnel__V1__LeadCreated body = FUNNEL__V1__LEAD_CREATED__INIT;
    int n = (int)mix_range(m, p->lead, S_TOUCHES, 0, 1, 3);
    for (int k = 0; k < n; k++) {
        funnel__v1__touch__init(&t[k]);
        touch_fill(m, p->lead, 100 + k,
                   p->at_ms - mix_range(m, p->lead, S_TOUCH_AT, k, 0, 14 * DAY_MS), &t[k]);
        tp[k] = &t[k];
    }
    body.lead_id = m->ids[0];
    body.owner = "marketing";
    body.segment = (char *)segments[mix_hash(m, p->lead, S_SEGMENT, 0) % 6];
    body.n_touches = (size_t)n;
    body.touches = tp;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED;
    env->lead_created = &body;
    return mix_pack(m, env, len);
}

static int pack_touched(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__Touch t = FUNNEL__V1__TOUCH__INIT;
    Funnel__V1__LeadTouched body = FUNNEL__V1__LEAD_TOUCHED__INIT;
    touch_fill(m, p->lead, p->n, p->at_ms, &t);
    body.lead_id = m->ids[0];
    body.touch = &t;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED;
    env->lead_touched = &body;
    return mix_pack(m, env, len);
}

static int pack_qualified(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__LeadQualified body = FUNNEL__V1__LEAD_QUALIFIED__INIT;
    bool sql = p->kind == BENCH_MIX_SQL;
    body.lead_id = m->ids[0];
    body.stage = sql ? FUNNEL__V1__STAGE__SQL : FUNNEL__V1__STAGE__MQL;
    body.owner = sql ? (char *)rep_name(m, p->lead, m->text[0]) : "marketing";
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED;
    env->lead_qualified = &body;
    return mix_pack(m, env, len);
}

static int pack_contacted(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__LeadContacted body = FUNNEL__V1__LEAD_CONTACTED__INIT;
    body.lead_id = m->ids[0];
    body.rep = (char *)rep_name(m, p->lead, m->text[0]);
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED;
    env->lead_contacted = &body;
    return mix_pack(m, env, len);
}

static int pack_closed(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__LeadClosed body = FUNNEL__V1__LEAD_CLOSED__INIT;
    body.lead_id = m->ids[0];
    body.outcome = p->kind == BENCH_MIX_WON    ? FUNNEL__V1__OUTCOME__WON
                   : p->kind == BENCH_MIX_LOST ? FUNNEL__V1__OUTCOME__LOST
                                               : FUNNEL__V1__OUTCOME__DISQUALIFIED;
    body.reason = p->kind == BENCH_MIX_WON ? "" : "no budget";
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED;
    env->lead_closed = &body;
    return mix_pack(m, env, len);
}

static int pack_handed_off(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__ClientHandedOff body = FUNNEL__V1__CLIENT_HANDED_OFF__INIT;
    snprintf(m->text[1], sizeof m->text[1], "am-%u",
             (unsigned)(mix_hash(m, p->lead, S_MANAGER, 0) % MANAGERS));
    body.client_id = m->ids[1];
    body.lead_id = m->ids[0];
    body.from_rep = (char *)rep_name(m, p->lead, m->text[0]);
    body.account_manager = m->text[1];
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF;
    env->client_handed_off = &body;
    return mix_pack(m, env, len);
}

static int pack_payment(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__PaymentReceived body = FUNNEL__V1__PAYMENT_RECEIVED__INIT;
    Funnel__V1__Money amount = FUNNEL__V1__MONEY__INIT;
    const char *currency;
    amount.minor = payment_amount(m, p->lead, &currency);
    amount.currency = (char *)currency;
    body.payment_id = m->ids[2];
    body.client_id = m->ids[1];
    body.amount = &amount;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED;
    env->payment_received = &body;
    return mix_pack(m, env, len);
}

static int pack_refund(bench_mix_t *m, const pending_t *p, funnel_envelope_t *env, size_t *len)
{
    Funnel__V1__PaymentRefunded body = FUNNEL__V1__PAYMENT_REFUNDED__INIT;
    Funnel__V1__Money amount = FUNNEL__V1__MONEY__INIT;
    const char *currency;
    amount.minor = refund_amount(m, p->lead, p->n, payment_amount(m, p->lead, &currency));
    amount.currency = (char *)currency;
    snprintf(m->text[0], sizeof m->text[0], "refund-%u-%u", (unsigned)p->lead, (unsigned)p->n);
    body.refund_id = m->text[0];
    body.payment_id = m->ids[2];
    body.client_id = m->ids[1];
    body.amount = &amount;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED;
    env->payment_refunded = &body;
    return mix_pack(m, env, len);
}

typedef int (*pack_fn)(bench_mix_t *, const pending_t *, funnel_envelope_t *, size_t *);

static const pack_fn packers[BENCH_MIX_KINDS_] = {
    [BENCH_MIX_CREATED] = pack_created,
    [BENCH_MIX_TOUCHED] = pack_touched,
    [BENCH_MIX_MQL] = pack_qualified,
    [BENCH_MIX_SQL] = pack_qualified,
    [BENCH_MIX_CONTACTED] = pack_contacted,
    [BENCH_MIX_DISQUALIFIED] = pack_closed,
    [BENCH_MIX_WON] = pack_closed,
    [BENCH_MIX_LOST] = pack_closed,
    [BENCH_MIX_HANDED_OFF] = pack_handed_off,
    [BENCH_MIX_PAYMENT] = pack_payment,
    [BENCH_MIX_REFUND] = pack_refund,
};

/* Event ids: the event time in the UUIDv7 timestamp, the stream index in the last 48 bits. */
static void mix_event_id(bench_mix_t *m, int64_t at_ms, uint64_t index)
{
    uint64_t ms = (uint64_t)at_ms;
    snprintf(m->event_id, sizeof m->event_id, "%08x-%04x-7000-8000-%012llx", (unsigned)(ms >> 16),
             (unsigned)(ms & 0xffff), (unsigned long long)(index & 0xffffffffffffull));
}

/* The envelope of p in m->buf, with the ids every body draws from, and its topic. */
static int mix_envelope(bench_mix_t *m, const pending_t *p, size_t *len, const char **topic)
{
    funnel_envelope_t env = FUNNEL__V1__ENVELOPE__INIT;
    snprintf(m->ids[0], sizeof m->ids[0], "lead-%u", (unsigned)p->lead);
    snprintf(m->ids[1], sizeof m->ids[1], "client-%u", (unsigned)p->lead);
    snprintf(m->ids[2], sizeof m->ids[2], "pay-%u-%u", (unsigned)p->lead, (unsigned)p->n);
    mix_event_id(m, p->at_ms, m->emitted);
    env.event_id = m->event_id;
    env.occurred_at_ms = p->at_ms;
    env.source = "bench";
    int rc = packers[p->kind](m, p, &env, len);
    *topic = funnel_topic_name(env.body_case);
    return rc;
}

/* ---- the public side ------------------------------------------------------------------------ */

int bench_mix_new(uint64_t leads, uint64_t seed, int64_t end_ms, bench_mix_t **out)
{
    *out = NULL;
    if (leads == 0 || leads > UINT32_MAX)
        return FUNNEL_EINVAL;
    bench_mix_t *m = calloc(1, sizeof *m);
    if (!m)
        return FUNNEL_ENOMEM;
    m->leads = leads;
    m->seed = seed;
    m->end_ms = end_ms;
    m->start_ms = end_ms - BENCH_MIX_YEAR_MS;
    int rc = funnel_timerheap_new(&m->queue);
    if (!rc)
        rc = mix_push(m, lead_created_at(m, 0), 0, BENCH_MIX_CREATED, 0);
    if (rc) {
        bench_mix_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void bench_mix_destroy(bench_mix_t **mix)
{
    if (!*mix)
        return;
    funnel_timerheap_destroy(&(*mix)->queue);
    free((*mix)->buf);
    free(*mix);
    *mix = NULL;
}

int bench_mix_next(bench_mix_t *m, bench_mix_event_t *ev)
{
    if (!funnel_timerheap_size(m->queue))
        return 0;
    pending_t p = mix_pop(m);
    size_t len;
    int rc = mix_follow(m, &p);
    if (!rc)
        rc = mix_envelope(m, &p, &len, &ev->topic);
    if (rc)
        return rc;
    ev->kind = (bench_mix_kind_t)p.kind;
    ev->event_id = m->event_id;
    ev->data = m->buf;
    ev->len = len;
    ev->index = m->emitted++;
    ev->at_ms = p.at_ms;
    return 1;
}

int bench_mix_next_message(bench_mix_t *m, bench_mix_event_t *ev, const char **topic,
                           const void **data, size_t *len, uint64_t *index)
{
    int got = bench_mix_next(m, ev);
    if (got > 0) {
        *topic = ev->topic;
        *data = ev->data;
        *len = ev->len;
        *index = ev->index;
    }
    return got;
}

bool bench_mix_index_of(const void *id, size_t len, uint64_t *index)
{
    const char *s = id;
    uint64_t v = 0;
    if (len != 36 || memcmp(s + 14, "7000-8000-", 10))
        return false;
    for (size_t i = 24; i < 36; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *index = v;
    return true;
}

const char *bench_mix_kind_name(bench_mix_kind_t kind)
{
    return (unsigned)kind < BENCH_MIX_KINDS_ ? kind_names[kind] : "unknown";
}
