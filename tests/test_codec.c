/* test_codec.c — unit tests for the ingest codec: topics, decoding, validation, sequences.
 *
 * Envelopes are built on the stack with the generated protobuf-c API, packed to bytes and fed
 * through funnel_codec_decode exactly as the bus does, so every case exercises the wire path
 * and the validator together. The clock is a constant: the codec never reads the real one. */
#include <criterion/criterion.h>

#include "funnel/codec.h"
#include "funnel/error.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS        1795000000000LL /* 2026-11-18, fixed so tests never depend on the clock */
#define DAY_MS        86400000LL
#define EPOCH_2000_MS 946684800000LL /* the codec's lower bound for any time */
#define TEXT_MAX      1024           /* codec.c's limit for free-text fields */

static const funnel_codec_limits_t limits = {.max_message_bytes = 65536, .max_future_ms = DAY_MS};

/* The fifteen ingest topics: body case, topic name and the Envelope field carrying the body
 * (which is also the first element of every field path in refusal texts). */
static const struct topic_case {
    funnel_body_t body;
    const char *topic;
    const char *field;
} topics[] = {
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "lead.created", "lead_created"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED, "lead.touched", "lead_touched"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED, "lead.qualified", "lead_qualified"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, "lead.contacted", "lead_contacted"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED, "lead.closed", "lead_closed"},
    {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "client.handed_off", "client_handed_off"},
    {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, "payment.received", "payment_received"},
    {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "payment.refunded", "payment_refunded"},
    {FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID, "commission.paid", "commission_paid"},
    {FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED, "escalation.acknowledged",
     "escalation_acknowledged"},
    {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "request.opened", "request_opened"},
    {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED, "request.assigned", "request_assigned"},
    {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED, "request.answered", "request_answered"},
    {FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED, "request.closed", "request_closed"},
    {FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED, "request.reopened", "request_reopened"},
};
#define N_TOPICS (sizeof topics / sizeof topics[0])

static const struct topic_case *topic_of(funnel_body_t body)
{
    for (size_t i = 0; i < N_TOPICS; i++)
        if (topics[i].body == body)
            return &topics[i];
    cr_assert_fail("no test topic for body %d", (int)body);
    return NULL;
}

/* Every message a test may need, on the stack: no allocation, nothing to free. Only the body
 * chosen by fixture_init is linked into env; the others stay unused. */
typedef struct fixture {
    funnel_envelope_t env;
    Funnel__V1__LeadCreated lead_created;
    Funnel__V1__LeadTouched lead_touched;
    Funnel__V1__LeadQualified lead_qualified;
    Funnel__V1__LeadContacted lead_contacted;
    Funnel__V1__LeadClosed lead_closed;
    Funnel__V1__ClientHandedOff client_handed_off;
    Funnel__V1__PaymentReceived payment_received;
    Funnel__V1__PaymentRefunded payment_refunded;
    Funnel__V1__CommissionPaid commission_paid;
    Funnel__V1__EscalationAcknowledged escalation_acknowledged;
    Funnel__V1__RequestOpened request_opened;
    Funnel__V1__RequestAssigned request_assigned;
    Funnel__V1__RequestAnswered request_answered;
    Funnel__V1__RequestClosed request_closed;
    Funnel__V1__RequestReopened request_reopened;
    Funnel__V1__Touch touch[2]; /* lead_touched.touch is touch[0]; lead_created has both */
    Funnel__V1__Touch *touches[2];
    Funnel__V1__Money money;
} fixture_t;

/* Fills fx with a valid envelope for body, every optional field set too, so a test that
 * breaks one field knows that field is the only thing wrong. */
static void fixture_init(fixture_t *fx, funnel_body_t body)
{
    memset(fx, 0, sizeof *fx);
    funnel__v1__envelope__init(&fx->env);
    fx->env.event_id = "01JD3W6Y3V0K8M2N4P5R7T9XQA";
    fx->env.occurred_at_ms = NOW_MS - 60000;
    fx->env.source = "hubspot";

    for (int i = 0; i < 2; i++) {
        funnel__v1__touch__init(&fx->touch[i]);
        fx->touch[i].channel = "email";
        fx->touch[i].source = "newsletter";
        fx->touch[i].medium = "email";
        fx->touch[i].campaign = "spring-2026";
        fx->touch[i].content = "hero-banner";
        fx->touch[i].term = "crm software";
        fx->touch[i].at_ms = NOW_MS - 3600000 + i;
        fx->touches[i] = &fx->touch[i];
    }
    funnel__v1__money__init(&fx->money);
    fx->money.minor = 1999900;
    fx->money.currency = "RUB";

    fx->env.body_case = body;
    switch (body) {
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED:
        funnel__v1__lead_created__init(&fx->lead_created);
        fx->lead_created.lead_id = "L-1001";
        fx->lead_created.owner = "marketing";
        fx->lead_created.segment = "smb";
        fx->lead_created.n_touches = 2;
        fx->lead_created.touches = fx->touches;
        fx->env.lead_created = &fx->lead_created;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED:
        funnel__v1__lead_touched__init(&fx->lead_touched);
        fx->lead_touched.lead_id = "L-1001";
        fx->lead_touched.touch = &fx->touch[0];
        fx->env.lead_touched = &fx->lead_touched;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED:
        funnel__v1__lead_qualified__init(&fx->lead_qualified);
        fx->lead_qualified.lead_id = "L-1001";
        fx->lead_qualified.stage = FUNNEL__V1__STAGE__MQL;
        fx->lead_qualified.owner = "sales-team-2";
        fx->env.lead_qualified = &fx->lead_qualified;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED:
        funnel__v1__lead_contacted__init(&fx->lead_contacted);
        fx->lead_contacted.lead_id = "L-1001";
        fx->lead_contacted.rep = "rep-ivanova";
        fx->env.lead_contacted = &fx->lead_contacted;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED:
        funnel__v1__lead_closed__init(&fx->lead_closed);
        fx->lead_closed.lead_id = "L-1001";
        fx->lead_closed.outcome = FUNNEL__V1__OUTCOME__WON;
        fx->lead_closed.reason = "signed the annual plan";
        fx->env.lead_closed = &fx->lead_closed;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF:
        funnel__v1__client_handed_off__init(&fx->client_handed_off);
        fx->client_handed_off.client_id = "C-77";
        fx->client_handed_off.lead_id = "L-1001";
        fx->client_handed_off.from_rep = "rep-ivanova";
        fx->client_handed_off.account_manager = "am-petrov";
        fx->env.client_handed_off = &fx->client_handed_off;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED:
        funnel__v1__payment_received__init(&fx->payment_received);
        fx->payment_received.payment_id = "P-5001";
        fx->payment_received.client_id = "C-77";
        fx->payment_received.amount = &fx->money;
        fx->env.payment_received = &fx->payment_received;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED:
        funnel__v1__payment_refunded__init(&fx->payment_refunded);
        fx->payment_refunded.refund_id = "R-9";
        fx->payment_refunded.payment_id = "P-5001";
        fx->payment_refunded.client_id = "C-77";
        fx->payment_refunded.amount = &fx->money;
        fx->env.payment_refunded = &fx->payment_refunded;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID:
        funnel__v1__commission_paid__init(&fx->commission_paid);
        fx->commission_paid.payout_id = "payout:rep-ivanova:2026-05";
        fx->commission_paid.rep = "rep-ivanova";
        fx->commission_paid.through_ms = NOW_MS - DAY_MS;
        fx->env.commission_paid = &fx->commission_paid;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED:
        funnel__v1__escalation_acknowledged__init(&fx->escalation_acknowledged);
        fx->escalation_acknowledged.sla_id = "42";
        fx->escalation_acknowledged.by = "oncall-bob";
        fx->env.escalation_acknowledged = &fx->escalation_acknowledged;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED:
        funnel__v1__request_opened__init(&fx->request_opened);
        fx->request_opened.request_id = "REQ-7";
        fx->request_opened.from_team = "sales";
        fx->request_opened.to_team = "marketing";
        fx->request_opened.kind = "materials";
        fx->request_opened.queue = "marketing-emea";
        fx->request_opened.priority = 2;
        fx->request_opened.owner = "mkt-petrova";
        fx->request_opened.subject = "Case study for the retail deck";
        fx->env.request_opened = &fx->request_opened;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED:
        funnel__v1__request_assigned__init(&fx->request_assigned);
        fx->request_assigned.request_id = "REQ-7";
        fx->request_assigned.owner = "mkt-sidorov";
        fx->env.request_assigned = &fx->request_assigned;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED:
        funnel__v1__request_answered__init(&fx->request_answered);
        fx->request_answered.request_id = "REQ-7";
        fx->request_answered.by = "mkt-sidorov";
        fx->env.request_answered = &fx->request_answered;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED:
        funnel__v1__request_closed__init(&fx->request_closed);
        fx->request_closed.request_id = "REQ-7";
        fx->request_closed.resolution = FUNNEL__V1__RESOLUTION__DONE;
        fx->env.request_closed = &fx->request_closed;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED:
        funnel__v1__request_reopened__init(&fx->request_reopened);
        fx->request_reopened.request_id = "REQ-7";
        fx->env.request_reopened = &fx->request_reopened;
        break;
    default:
        cr_assert_fail("fixture_init: body %d", (int)body);
    }
}

/* The body message linked into fx->env, for generic field surgery through descriptors. */
static ProtobufCMessage *fixture_body(fixture_t *fx)
{
    switch (fx->env.body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED:
        return &fx->lead_created.base;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED:
        return &fx->lead_touched.base;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED:
        return &fx->lead_qualified.base;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED:
        return &fx->lead_contacted.base;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED:
        return &fx->lead_closed.base;
    case FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF:
        return &fx->client_handed_off.base;
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED:
        return &fx->payment_received.base;
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED:
        return &fx->payment_refunded.base;
    case FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID:
        return &fx->commission_paid.base;
    case FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED:
        return &fx->escalation_acknowledged.base;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED:
        return &fx->request_opened.base;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED:
        return &fx->request_assigned.base;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED:
        return &fx->request_answered.base;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED:
        return &fx->request_closed.base;
    case FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED:
        return &fx->request_reopened.base;
    default:
        cr_assert_fail("fixture_body: body %d", (int)fx->env.body_case);
        return NULL;
    }
}

/* Clears one top-level body field to its proto3 default, which is what "absent" means on
 * the wire: the empty string, enum 0, or no sub-message. */
static void fixture_clear(fixture_t *fx, const char *field)
{
    ProtobufCMessage *body = fixture_body(fx);
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(body->descriptor, field);
    cr_assert_not_null(f, "no field %s in %s", field, body->descriptor->name);
    void *member = (char *)body + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        *(char **)member = "";
        break;
    case PROTOBUF_C_TYPE_ENUM:
        *(int *)member = 0;
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        *(void **)member = NULL;
        break;
    case PROTOBUF_C_TYPE_INT64:
        *(int64_t *)member = 0;
        break;
    default:
        cr_assert_fail("fixture_clear: unexpected type of %s", field);
    }
}

/* Packs env into a fresh heap buffer of *len bytes; the caller frees it. */
static uint8_t *pack(const funnel_envelope_t *env, size_t *len)
{
    *len = funnel__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    cr_assert_not_null(buf);
    cr_assert_eq(funnel__v1__envelope__pack(env, buf), *len);
    return buf;
}

/* funnel_codec_decode_in must agree with funnel_codec_decode on every input the tests feed:
 * the same verdict and sentence, an envelope that packs to the same bytes, and an arena that
 * is empty once cleared (ASan reports anything it leaks). */
static void expect_same_in_arena(const funnel_codec_limits_t *lim, const char *topic,
                                 size_t topic_len, const uint8_t *data, size_t len, int rc,
                                 const funnel_envelope_t *out, const funnel_refusal_t *why)
{
    static funnel_envelope_t poison;
    funnel_envelope_arena_t arena = {0};
    funnel_envelope_t *env = &poison;
    funnel_refusal_t why_in = {0};
    int rc_in =
        funnel_codec_decode_in(&arena, lim, topic, topic_len, data, len, NOW_MS, &env, &why_in);
    cr_assert_eq(rc_in, rc, "decode_in returned %d, decode %d", rc_in, rc);
    if (rc == 0) {
        size_t a_len, b_len;
        uint8_t *a = pack(out, &a_len), *b = pack(env, &b_len);
        cr_assert(a_len == b_len && memcmp(a, b, a_len) == 0, "arena envelope differs");
        free(a);
        free(b);
    } else {
        cr_assert_null(env, "a refusal must leave *out NULL");
        cr_assert_eq(why_in.code, why->code);
        cr_assert_str_eq(why_in.text, why->text);
    }
    funnel_envelope_arena_clear(&arena);
    cr_assert_null(arena.blocks, "a cleared arena is empty");
}

/* Runs raw bytes through the codec and checks the ownership contract on either outcome: a
 * success hands back a fresh envelope (freed here), a refusal returns FUNNEL_EINVAL, leaves
 * *out NULL even if it held something, and fills a code and a sentence. */
static int decode_bytes(const funnel_codec_limits_t *lim, const char *topic, size_t topic_len,
                        const uint8_t *data, size_t len, funnel_refusal_t *why)
{
    static funnel_envelope_t poison; /* a non-NULL *out the codec must overwrite */
    funnel_envelope_t *out = &poison;
    memset(why, 0, sizeof *why);
    int rc = funnel_codec_decode(lim, topic, topic_len, data, len, NOW_MS, &out, why);
    expect_same_in_arena(lim, topic, topic_len, data, len, rc, out, why);
    if (rc == 0) {
        cr_assert(out != NULL && out != &poison, "success must hand back a fresh envelope");
        funnel_envelope_free(&out);
        cr_assert_null(out, "funnel_envelope_free must NULL the caller's pointer");
        return 0;
    }
    cr_assert_eq(rc, FUNNEL_EINVAL, "a refusal returns FUNNEL_EINVAL, got %d", rc);
    cr_assert_null(out, "a refusal must leave *out NULL");
    cr_assert(why->code > FUNNEL_REFUSE_NONE && why->code < FUNNEL_REFUSE_COUNT_,
              "refusal code %d out of range", (int)why->code);
    cr_assert(why->text[0] != '\0', "a refusal must say why");
    cr_assert(memchr(why->text, '\0', sizeof why->text) != NULL, "reason not terminated");
    return rc;
}

/* Packs env and decodes it under topic with the standard limits. */
static int decode_env(const funnel_envelope_t *env, const char *topic, funnel_refusal_t *why)
{
    size_t len;
    uint8_t *buf = pack(env, &len);
    int rc = decode_bytes(&limits, topic, strlen(topic), buf, len, why);
    free(buf);
    return rc;
}

/* Macros rather than functions so a failure points at the line of the case that broke. */
#define expect_accept(env, topic)                                                                  \
    do {                                                                                           \
        funnel_refusal_t why_;                                                                     \
        int rc_ = decode_env((env), (topic), &why_);                                               \
        cr_assert_eq(rc_, 0, "%s refused: %s (%s)", (topic), funnel_refusal_name(why_.code),       \
                     why_.text);                                                                   \
    } while (0)

#define expect_refuse(env, topic, want, needle)                                                    \
    do {                                                                                           \
        funnel_refusal_t why_;                                                                     \
        int rc_ = decode_env((env), (topic), &why_);                                               \
        cr_assert_eq(rc_, FUNNEL_EINVAL, "%s accepted, want %s", (topic),                          \
                     funnel_refusal_name(want));                                                   \
        cr_assert_eq(why_.code, (want), "%s: got %s (%s), want %s", (topic),                       \
                     funnel_refusal_name(why_.code), why_.text, funnel_refusal_name(want));        \
        cr_assert(strstr(why_.text, (needle)) != NULL, "reason '%s' does not mention '%s'",        \
                  why_.text, (needle));                                                            \
    } while (0)

/* A string of n copies of c, on the heap; the caller frees it. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- topics and names ------------------------------------------------------------------- */

Test(codec_topics, name_and_lookup_round_trip)
{
    for (size_t i = 0; i < N_TOPICS; i++) {
        const char *name = funnel_topic_name(topics[i].body);
        cr_assert_not_null(name, "no name for %s", topics[i].topic);
        cr_assert_str_eq(name, topics[i].topic);
        funnel_body_t b = FUNNEL__V1__ENVELOPE__BODY__NOT_SET;
        cr_assert_eq(funnel_topic_lookup(name, strlen(name), &b), 0, "%s", name);
        cr_assert_eq(b, topics[i].body, "%s", name);
    }
}

Test(codec_topics, lookup_uses_length_not_terminator)
{
    /* Topic frames from ZeroMQ are not NUL-terminated: only the first len bytes count. */
    funnel_body_t b = FUNNEL__V1__ENVELOPE__BODY__NOT_SET;
    const char frame[] = "lead.closedXXXX";
    cr_assert_eq(funnel_topic_lookup(frame, 11, &b), 0);
    cr_assert_eq(b, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    cr_assert_eq(funnel_topic_lookup(frame, 10, &b), FUNNEL_ENOTFOUND, "prefix must not match");
    cr_assert_eq(funnel_topic_lookup(frame, 12, &b), FUNNEL_ENOTFOUND, "suffix must not match");
}

Test(codec_topics, lookup_refuses_non_ingest_names)
{
    static const char *const names[] = {
        "",
        "lead",
        "lead.",
        "lead.create",
        "lead.createdd",
        "Lead.Created",
        "LEAD.CREATED",
        " lead.created",
        "lead.created ",
        "lead_created",
        "sla.breached",
        "commission.accrued",
        "attribution.credited",
        "payment",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        funnel_body_t b = FUNNEL__V1__ENVELOPE__BODY__NOT_SET;
        cr_assert_eq(funnel_topic_lookup(names[i], strlen(names[i]), &b), FUNNEL_ENOTFOUND,
                     "'%s' must not be an ingest topic", names[i]);
    }
    funnel_body_t b;
    cr_assert_eq(funnel_topic_lookup("lead.created\0", 13, &b), FUNNEL_ENOTFOUND,
                 "a trailing NUL is part of the frame, so the name differs");
}

Test(codec_topics, name_of_unknown_body_is_null)
{
    cr_assert_null(funnel_topic_name(FUNNEL__V1__ENVELOPE__BODY__NOT_SET));
    cr_assert_null(funnel_topic_name((funnel_body_t)25)); /* reserved, not yet a topic */
    cr_assert_null(funnel_topic_name((funnel_body_t)40)); /* output bodies are not ingest */
    cr_assert_null(funnel_topic_name((funnel_body_t)-1));
}

Test(codec_refusal, names_are_exact_and_distinct)
{
    /* The names are metrics labels and dead-letter column values: renaming one breaks
     * dashboards, so the exact strings are pinned here. */
    static const char *const want[FUNNEL_REFUSE_COUNT_] = {
        [FUNNEL_REFUSE_NONE] = "none",
        [FUNNEL_REFUSE_OVERSIZE] = "oversize",
        [FUNNEL_REFUSE_FRAMES] = "frames",
        [FUNNEL_REFUSE_UNKNOWN_TOPIC] = "unknown_topic",
        [FUNNEL_REFUSE_DECODE] = "decode",
        [FUNNEL_REFUSE_TOPIC_MISMATCH] = "topic_mismatch",
        [FUNNEL_REFUSE_MISSING_FIELD] = "missing_field",
        [FUNNEL_REFUSE_BAD_ID] = "bad_id",
        [FUNNEL_REFUSE_BAD_TIME] = "bad_time",
        [FUNNEL_REFUSE_BAD_MONEY] = "bad_money",
        [FUNNEL_REFUSE_BAD_CURRENCY] = "bad_currency",
        [FUNNEL_REFUSE_BAD_ENUM] = "bad_enum",
        [FUNNEL_REFUSE_BAD_UTF8] = "bad_utf8",
        [FUNNEL_REFUSE_OVERFLOW] = "overflow",
        [FUNNEL_REFUSE_ENGINE] = "refused_by_engine",
        [FUNNEL_REFUSE_FORBIDDEN] = "forbidden",
    };
    for (int c = 0; c < FUNNEL_REFUSE_COUNT_; c++) {
        const char *name = funnel_refusal_name((funnel_refusal_code_t)c);
        cr_assert_not_null(name, "code %d has no name", c);
        cr_assert_not_null(want[c], "code %d was added without updating this test", c);
        cr_assert_str_eq(name, want[c], "code %d", c);
        for (int d = 0; d < c; d++)
            cr_assert_str_neq(name, funnel_refusal_name((funnel_refusal_code_t)d),
                              "codes %d and %d share a name", c, d);
    }
}

Test(codec_refusal, name_of_out_of_range_code_is_not_null)
{
    /* A corrupt code must still produce a printable label, never a NULL to printf. */
    cr_assert_str_eq(funnel_refusal_name(FUNNEL_REFUSE_COUNT_), "unknown");
    cr_assert_str_eq(funnel_refusal_name((funnel_refusal_code_t)-1), "unknown");
    cr_assert_str_eq(funnel_refusal_name((funnel_refusal_code_t)1000), "unknown");
}

/* ---- valid messages ----------------------------------------------------------------------- */

Test(codec_accept, every_ingest_topic)
{
    for (size_t i = 0; i < N_TOPICS; i++) {
        fixture_t fx;
        fixture_init(&fx, topics[i].body);
        expect_accept(&fx.env, topics[i].topic);
    }
}

Test(codec_accept, every_topic_with_only_required_fields)
{
    /* Optional fields (source, owner, segment, touches, reason, account_manager) may be
     * absent: a minimal publisher must not be refused. */
    for (size_t i = 0; i < N_TOPICS; i++) {
        fixture_t fx;
        fixture_init(&fx, topics[i].body);
        fx.env.source = "";
        fx.lead_created.owner = "";
        fx.lead_created.segment = "";
        fx.lead_created.n_touches = 0;
        fx.lead_created.touches = NULL;
        fx.lead_qualified.owner = "";
        fx.lead_closed.reason = "";
        fx.client_handed_off.account_manager = "";
        fx.escalation_acknowledged.by = "";
        for (int t = 0; t < 2; t++) {
            fx.touch[t].channel = fx.touch[t].source = fx.touch[t].medium = "";
            fx.touch[t].campaign = fx.touch[t].content = fx.touch[t].term = "";
        }
        expect_accept(&fx.env, topics[i].topic);
    }
}

Test(codec_accept, decoded_envelope_carries_the_values)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED);
    size_t len;
    uint8_t *buf = pack(&fx.env, &len);
    funnel_envelope_t *out = NULL;
    funnel_refusal_t why = {0};
    int rc = funnel_codec_decode(&limits, "payment.refunded", 16, buf, len, NOW_MS, &out, &why);
    free(buf); /* the envelope must not point into the caller's frame */
    cr_assert_eq(rc, 0, "%s", why.text);
    cr_assert_not_null(out);
    cr_assert_str_eq(out->event_id, fx.env.event_id);
    cr_assert_eq(out->occurred_at_ms, fx.env.occurred_at_ms);
    cr_assert_str_eq(out->source, "hubspot");
    cr_assert_eq(out->body_case, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED);
    cr_assert_str_eq(out->payment_refunded->refund_id, "R-9");
    cr_assert_str_eq(out->payment_refunded->payment_id, "P-5001");
    cr_assert_str_eq(out->payment_refunded->client_id, "C-77");
    cr_assert_eq(out->payment_refunded->amount->minor, 1999900);
    cr_assert_str_eq(out->payment_refunded->amount->currency, "RUB");
    funnel_envelope_free(&out);
    cr_assert_null(out);
    funnel_envelope_free(&out); /* freeing NULL is allowed */
    funnel_envelope_free(NULL);
}

Test(codec_accept, validate_agrees_with_decode)
{
    /* funnel_codec_validate is the same check without the bytes: an in-memory envelope the
     * daemon built itself must pass or fail exactly as its packed form would. */
    for (size_t i = 0; i < N_TOPICS; i++) {
        fixture_t fx;
        fixture_init(&fx, topics[i].body);
        funnel_refusal_t why = {0};
        cr_assert_eq(funnel_codec_validate(&limits, topics[i].body, &fx.env, NOW_MS, &why), 0,
                     "%s: %s", topics[i].topic, why.text);
    }
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
    fx.lead_contacted.rep = "";
    funnel_refusal_t why = {0};
    cr_assert_eq(funnel_codec_validate(&limits, fx.env.body_case, &fx.env, NOW_MS, &why),
                 FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_MISSING_FIELD);
    cr_assert_str_eq(why.text, "missing field: lead_contacted.rep");
    /* why is optional: the caller may only want the verdict. */
    cr_assert_eq(funnel_codec_validate(&limits, fx.env.body_case, &fx.env, NOW_MS, NULL),
                 FUNNEL_EINVAL);
}

/* ---- topic and framing -------------------------------------------------------------------- */

Test(codec_topic, unknown_topic_is_refused)
{
    static const char *const names[] = {"lead.deleted", "sla.breached", "lead.create", "",
                                        "LEAD.CREATED"};
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        expect_refuse(&fx.env, names[i], FUNNEL_REFUSE_UNKNOWN_TOPIC, "unknown topic");
        if (names[i][0])
            expect_refuse(&fx.env, names[i], FUNNEL_REFUSE_UNKNOWN_TOPIC, names[i]);
    }
}

Test(codec_topic, long_unknown_topic_is_truncated_in_reason)
{
    /* A hostile 4 KiB topic frame must not overflow or fill the reason: it is cut. */
    char *topic = repeat('t', 4096);
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    size_t len;
    uint8_t *buf = pack(&fx.env, &len);
    funnel_refusal_t why;
    cr_assert_eq(decode_bytes(&limits, topic, 4096, buf, len, &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_UNKNOWN_TOPIC);
    cr_assert_not_null(strstr(why.text, "unknown topic"));
    cr_assert_null(strstr(why.text, topic + 4096 - FUNNEL_TOPIC_MAX - 1),
                   "more than FUNNEL_TOPIC_MAX bytes of the topic were echoed");
    free(buf);
    free(topic);
}

Test(codec_topic, body_must_match_topic)
{
    /* Every topic against the body of the next one: the publisher mislabelled its message. */
    for (size_t i = 0; i < N_TOPICS; i++) {
        const struct topic_case *want = &topics[i];
        const struct topic_case *got = &topics[(i + 1) % N_TOPICS];
        fixture_t fx;
        fixture_init(&fx, got->body);
        expect_refuse(&fx.env, want->topic, FUNNEL_REFUSE_TOPIC_MISMATCH, want->topic);
        expect_refuse(&fx.env, want->topic, FUNNEL_REFUSE_TOPIC_MISMATCH, got->topic);
    }
}

Test(codec_topic, missing_body_is_a_mismatch)
{
    for (size_t i = 0; i < N_TOPICS; i++) {
        fixture_t fx;
        fixture_init(&fx, topics[i].body);
        fx.env.body_case = FUNNEL__V1__ENVELOPE__BODY__NOT_SET;
        expect_refuse(&fx.env, topics[i].topic, FUNNEL_REFUSE_TOPIC_MISMATCH, topics[i].topic);
    }
}

Test(codec_topic, empty_message_is_a_mismatch)
{
    /* Zero bytes is a valid protobuf Envelope with every field at its default, so the
     * refusal is about the absent body, not about decoding. */
    funnel_refusal_t why;
    static const uint8_t none[1];
    cr_assert_eq(decode_bytes(&limits, "lead.created", 12, none, 0, &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_TOPIC_MISMATCH, "%s", why.text);
    cr_assert_not_null(strstr(why.text, "lead.created"), "%s", why.text);
}

Test(codec_topic, validate_refuses_non_ingest_topic)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    funnel_refusal_t why = {0};
    cr_assert_eq(
        funnel_codec_validate(&limits, FUNNEL__V1__ENVELOPE__BODY__NOT_SET, &fx.env, NOW_MS, &why),
        FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_UNKNOWN_TOPIC);
}

Test(codec_topic, validate_refuses_body_case_without_body)
{
    /* A hand-built envelope can name a body case yet hold no body; validate is public, so it
     * must refuse that rather than walk a NULL message. */
    for (size_t i = 0; i < N_TOPICS; i++) {
        fixture_t fx;
        fixture_init(&fx, topics[i].body);
        fx.env.lead_created = NULL; /* the union: clears whichever body is set */
        funnel_refusal_t why = {0};
        cr_assert_eq(funnel_codec_validate(&limits, topics[i].body, &fx.env, NOW_MS, &why),
                     FUNNEL_EINVAL, "%s", topics[i].topic);
        cr_assert_eq(why.code, FUNNEL_REFUSE_TOPIC_MISMATCH, "%s: %s", topics[i].topic, why.text);
        cr_assert_not_null(strstr(why.text, topics[i].topic), "%s", why.text);
    }
}

/* ---- bytes that are not an Envelope ------------------------------------------------------- */

Test(codec_decode, garbage_is_refused)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } cases[] = {
        {"unterminated varint tag",
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         11},
        {"wire type 7", {0x0f, 0x00}, 2},
        {"string longer than the buffer", {0x0a, 0x10, 'a'}, 3},
        {"body longer than the buffer", {0x52, 0x05, 0x0a}, 3},
        {"event_id with varint wire type", {0x08, 0x01}, 2},
        {"field number 0", {0x02, 0x00}, 2},
        {"length with no bytes after the tag", {0x0a}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        funnel_refusal_t why;
        cr_assert_eq(decode_bytes(&limits, "lead.created", 12, cases[i].bytes, cases[i].len, &why),
                     FUNNEL_EINVAL, "%s", cases[i].what);
        cr_assert_eq(why.code, FUNNEL_REFUSE_DECODE, "%s: got %s (%s)", cases[i].what,
                     funnel_refusal_name(why.code), why.text);
        cr_assert_not_null(strstr(why.text, "Envelope"), "%s", why.text);
    }
}

Test(codec_decode, field_number_0_in_a_longer_tag_is_refused)
{
    /* protobuf-c refuses field number 0 only when its tag takes one byte: written in two
     * (0x85 0x00: 0 with wire type 5, padded) it is kept as an unknown field, and packed
     * again it is the one-byte 0x05 that protobuf-c refuses. An envelope that is re-encoded
     * (its source replaced, say) would reach subscribers undecodable. Found by fuzz_codec. */
    static const struct {
        const char *what;
        uint8_t bytes[8];
        size_t len;
    } tails[] = {
        {"fixed32", {0x85, 0x00, 1, 2, 3, 4}, 6},
        {"varint", {0x80, 0x00, 0x01}, 3},
        {"three-byte tag, length-delimited", {0x82, 0x80, 0x00, 0x01, 'x'}, 5},
    };
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
        size_t len;
        uint8_t *good = pack(&fx.env, &len), *buf = malloc(len + tails[i].len);
        cr_assert_not_null(buf);
        memcpy(buf, good, len);
        memcpy(buf + len, tails[i].bytes, tails[i].len);
        funnel_refusal_t why;
        cr_assert_eq(decode_bytes(&limits, "lead.contacted", 14, buf, len + tails[i].len, &why),
                     FUNNEL_EINVAL, "%s", tails[i].what);
        cr_assert_eq(why.code, FUNNEL_REFUSE_DECODE, "%s: got %s (%s)", tails[i].what,
                     funnel_refusal_name(why.code), why.text);
        cr_assert_not_null(strstr(why.text, "field number 0"), "%s", why.text);
        free(buf);
        free(good);
    }
}

Test(codec_decode, random_bytes_are_refused_without_crash)
{
    /* Fixed-seed noise: deterministic, so the exact outcome below is reproducible. Each
     * buffer is heap-allocated at its exact size so ASan catches any over-read. */
    uint64_t x = 0x9e3779b97f4a7c15u;
    int decode_refusals = 0;
    for (int round = 0; round < 3000; round++) {
        size_t len = 1 + (size_t)(round % 97);
        uint8_t *buf = malloc(len);
        cr_assert_not_null(buf);
        for (size_t k = 0; k < len; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[k] = (uint8_t)(x >> 24);
        }
        funnel_refusal_t why;
        int rc = decode_bytes(&limits, "payment.received", 16, buf, len, &why);
        free(buf);
        cr_assert_eq(rc, FUNNEL_EINVAL, "round %d: noise was accepted", round);
        decode_refusals += why.code == FUNNEL_REFUSE_DECODE;
    }
    cr_assert_gt(decode_refusals, 2000, "most noise must fail to decode, %d did", decode_refusals);
}

Test(codec_decode, every_truncation_of_a_valid_message_is_refused)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    size_t len;
    uint8_t *full = pack(&fx.env, &len);
    /* The body is packed last (field 10): one tag byte, the length varint, then the body.
     * Any cut after the tag byte leaves a length-delimited field short: a decode error. */
    size_t body = funnel__v1__lead_created__get_packed_size(&fx.lead_created);
    size_t varint = 1;
    for (size_t v = body; v >= 0x80; v >>= 7)
        varint++;
    size_t body_start = len - body - varint - 1;
    cr_assert_eq(full[body_start], (10 << 3) | 2, "tag of lead_created not where expected");
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *buf = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        cr_assert_not_null(buf);
        memcpy(buf, full, cut);
        funnel_refusal_t why;
        int rc = decode_bytes(&limits, "lead.created", 12, buf, cut, &why);
        free(buf);
        cr_assert_eq(rc, FUNNEL_EINVAL, "truncated to %zu of %zu bytes was accepted", cut, len);
        if (cut > body_start)
            cr_assert_eq(why.code, FUNNEL_REFUSE_DECODE, "cut at %zu: %s (%s)", cut,
                         funnel_refusal_name(why.code), why.text);
    }
    free(full);
}

/* ---- size ----------------------------------------------------------------------------------- */

Test(codec_size, oversize_is_refused_before_decoding)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    char *reason = repeat('r', 70000);
    fx.lead_closed.reason = reason;
    expect_refuse(&fx.env, "lead.closed", FUNNEL_REFUSE_OVERSIZE, "65536");

    /* Size is checked first: 65537 bytes of noise under a bad topic is still "oversize",
     * so a flood of huge junk costs a length compare, not a protobuf parse. */
    funnel_refusal_t why;
    cr_assert_eq(decode_bytes(&limits, "nope", 4, (const uint8_t *)reason, 65537, &why),
                 FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_OVERSIZE);
    cr_assert_not_null(strstr(why.text, "65537"), "%s", why.text);
    free(reason);
}

Test(codec_size, limit_is_inclusive)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    size_t len;
    uint8_t *buf = pack(&fx.env, &len);
    funnel_codec_limits_t exact = limits;
    exact.max_message_bytes = len;
    funnel_refusal_t why;
    cr_assert_eq(decode_bytes(&exact, "lead.created", 12, buf, len, &why), 0, "%s", why.text);
    exact.max_message_bytes = len - 1;
    cr_assert_eq(decode_bytes(&exact, "lead.created", 12, buf, len, &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_OVERSIZE);
    free(buf);
}

Test(codec_size, zero_limit_means_unlimited)
{
    /* 80 touches of 1000-byte campaigns: every field within its own limit, the whole over
     * 64 KiB. Refused under the standard limits, accepted when the limit is 0. */
    enum { N = 80 };
    Funnel__V1__Touch touch[N];
    Funnel__V1__Touch *ptr[N];
    char *campaign = repeat('c', 1000);
    for (int i = 0; i < N; i++) {
        funnel__v1__touch__init(&touch[i]);
        touch[i].campaign = campaign;
        touch[i].at_ms = NOW_MS - 1000 * (i + 1);
        ptr[i] = &touch[i];
    }
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    fx.lead_created.n_touches = N;
    fx.lead_created.touches = ptr;
    size_t len;
    uint8_t *buf = pack(&fx.env, &len);
    cr_assert_gt(len, limits.max_message_bytes);
    funnel_refusal_t why;
    cr_assert_eq(decode_bytes(&limits, "lead.created", 12, buf, len, &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_OVERSIZE);
    funnel_codec_limits_t unlimited = limits;
    unlimited.max_message_bytes = 0;
    cr_assert_eq(decode_bytes(&unlimited, "lead.created", 12, buf, len, &why), 0, "%s", why.text);
    free(buf);
    free(campaign);
}

/* ---- event_id and other ids ---------------------------------------------------------------- */

Test(codec_id, missing_event_id_is_refused)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
    fx.env.event_id = "";
    expect_refuse(&fx.env, "lead.contacted", FUNNEL_REFUSE_MISSING_FIELD, "event_id");
}

Test(codec_id, event_id_length_limit)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
    char *id = repeat('e', FUNNEL_ID_MAX + 1);

    fx.env.event_id = id + 1; /* exactly FUNNEL_ID_MAX bytes */
    expect_accept(&fx.env, "lead.contacted");
    fx.env.event_id = id + FUNNEL_ID_MAX; /* one byte: the shortest valid id */
    expect_accept(&fx.env, "lead.contacted");
    fx.env.event_id = id;
    expect_refuse(&fx.env, "lead.contacted", FUNNEL_REFUSE_BAD_ID, "event_id");
    expect_refuse(&fx.env, "lead.contacted", FUNNEL_REFUSE_BAD_ID, "129");
    free(id);
}

Test(codec_id, entity_id_length_limit)
{
    /* Every id field of every topic is held to FUNNEL_ID_MAX, not to the free-text limit. */
    static const struct {
        funnel_body_t body;
        const char *field;
    } ids[] = {
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "lead_id"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "owner"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "segment"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED, "lead_id"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED, "lead_id"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED, "owner"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, "lead_id"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, "rep"},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED, "lead_id"},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "client_id"},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "lead_id"},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "from_rep"},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "account_manager"},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, "payment_id"},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, "client_id"},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "refund_id"},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "payment_id"},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "client_id"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "request_id"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "from_team"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "to_team"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "kind"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "queue"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "owner"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED, "request_id"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED, "owner"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED, "request_id"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED, "by"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED, "request_id"},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED, "request_id"},
    };
    char *id = repeat('i', FUNNEL_ID_MAX + 1);
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        const struct topic_case *tc = topic_of(ids[i].body);
        char path[96];
        snprintf(path, sizeof path, "%s.%s", tc->field, ids[i].field);
        fixture_t fx;
        fixture_init(&fx, ids[i].body);
        ProtobufCMessage *body = fixture_body(&fx);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(body->descriptor, ids[i].field);
        cr_assert_not_null(f, "%s", path);
        char **member = (char **)((char *)body + f->offset);

        *member = id + 1;
        expect_accept(&fx.env, tc->topic);
        *member = id;
        expect_refuse(&fx.env, tc->topic, FUNNEL_REFUSE_BAD_ID, path);
        *member = "ok\x01id";
        expect_refuse(&fx.env, tc->topic, FUNNEL_REFUSE_BAD_ID, path);
    }
    free(id);
}

Test(codec_id, source_is_held_to_the_id_limit)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    char *source = repeat('s', FUNNEL_ID_MAX + 1);
    fx.env.source = source + 1;
    expect_accept(&fx.env, "lead.created");
    fx.env.source = source;
    expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_ID, "source");
    fx.env.source = "billing\r\n";
    expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_ID, "source");
    free(source);
}

Test(codec_id, control_bytes_in_ids_are_refused)
{
    /* Ids end up in log lines, SQL keys and file names: a control byte there is either a
     * bug in the publisher or an injection attempt. DEL (0x7f) counts too. */
    static char *const bad[] = {"\x01",        "evt\n1",  "evt\t1", "evt\r",
                                "\x1b[31mred", "evt\x7f", "\x1f"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
        fx.env.event_id = bad[i];
        expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_ID, "event_id");
        expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_ID, "control");
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
        fx.lead_created.lead_id = bad[i];
        expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_ID, "lead_created.lead_id");
    }
}

Test(codec_id, printable_and_utf8_ids_are_accepted)
{
    /* Bytes >= 0x80 are UTF-8, not control bytes: Cyrillic ids are normal for this shop. */
    static char *const good[] = {"a",
                                 "~",
                                 " x ",
                                 "01JD3W6Y3V0K8M2N4P5R7T9XQA",
                                 "018f6b2e-7c1a-7def-8abc-0123456789ab",
                                 "\xd0\xbb\xd0\xb8\xd0\xb4-1",
                                 "mail:a@b.c/x?y=z#w"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
        fx.env.event_id = good[i];
        fx.lead_created.lead_id = good[i];
        expect_accept(&fx.env, "lead.created");
    }
}

/* Byte strings that are not UTF-8 (RFC 3629), each broken in a different way. */
static char *const not_utf8[] = {
    "evt-\xff\xfe-1",   /* bytes that never occur in UTF-8 */
    "\200abc",          /* a lone continuation byte (octal: "\x80abc" would be one escape) */
    "ab\xe2\x82",       /* a sequence cut short at the end */
    "\xe2\x82x",        /* ... and in the middle */
    "\xc0\xaf",         /* an overlong '/' */
    "\xe0\x80\xaf",     /* an overlong '/' in three bytes */
    "\xed\xa0\x80",     /* a UTF-16 surrogate */
    "\xf4\x90\x80\x80", /* past U+10FFFF */
    "\xf5\x80\x80\x80", /* a lead byte past U+10FFFF */
};
#define N_NOT_UTF8 (sizeof not_utf8 / sizeof not_utf8[0])

Test(codec_utf8, every_string_field_of_every_topic_refuses_bad_utf8)
{
    /* proto3 strings must be UTF-8: Google's runtimes refuse to parse a message holding
     * anything else, so one republished would stall every conforming subscriber. Each string
     * field of each body (found through the descriptor, so none is left out) and of the
     * envelope is broken in turn and must be refused as bad_utf8, naming the field. */
    for (size_t t = 0; t < N_TOPICS; t++) {
        for (size_t b = 0; b < N_NOT_UTF8; b++) {
            fixture_t fx;
            fixture_init(&fx, topics[t].body);
            ProtobufCMessage *body = fixture_body(&fx);
            const ProtobufCMessageDescriptor *d = body->descriptor;
            for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                if (f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
                    continue;
                char **member = (char **)((char *)body + f->offset), *keep = *member, path[96];
                *member = not_utf8[b];
                snprintf(path, sizeof path, "%s.%s: not valid UTF-8", topics[t].field, f->name);
                expect_refuse(&fx.env, topics[t].topic, FUNNEL_REFUSE_BAD_UTF8, path);
                *member = keep;
            }
            fx.env.event_id = not_utf8[b];
            expect_refuse(&fx.env, topics[t].topic, FUNNEL_REFUSE_BAD_UTF8, "event_id");
        }
    }
}

Test(codec_utf8, nested_and_envelope_strings_are_checked_with_their_path)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    fx.env.source = "hub\xc0\xafspot";
    expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_UTF8,
                  "source: not valid UTF-8 at byte 3");
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    fx.touch[1].term = "crm \xed\xa0\x80";
    expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_UTF8,
                  "lead_created.touches[1].term: not valid UTF-8 at byte 4");
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED);
    fx.touch[0].campaign = "spring\xff";
    expect_refuse(&fx.env, "lead.touched", FUNNEL_REFUSE_BAD_UTF8, "lead_touched.touch.campaign");
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED);
    fx.money.currency = "\xe2\x82";
    expect_refuse(&fx.env, "payment.refunded", FUNNEL_REFUSE_BAD_UTF8,
                  "payment_refunded.amount.currency");
}

Test(codec_utf8, every_kind_of_valid_utf8_is_accepted)
{
    /* One, two, three and four byte sequences at the edges of their ranges. */
    static char *const good[] = {"plain ASCII", "\xc2\x80\xdf\xbf",
                                 "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbd",
                                 "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
                                 "\xd0\xbb\xd0\xb8\xd0\xb4 \xe2\x82\xac \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
        fx.lead_closed.reason = good[i];
        expect_accept(&fx.env, "lead.closed");
    }
    /* The sequence length the writers rely on, including its bounds. */
    cr_assert_eq(funnel_utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
    cr_assert_eq(funnel_utf8_seq_len("\xf0\x9f\x98\x80", 3), 0, "cut short by len");
    cr_assert_eq(funnel_utf8_seq_len("\xe2\x82\xac", 3), 3);
    cr_assert_eq(funnel_utf8_seq_len("a", 1), 1);
    cr_assert_eq(funnel_utf8_seq_len("a", 0), 0);
    cr_assert_eq(funnel_utf8_seq_len("\xff", 1), 0);
}

/* Packs env, finds the bytes of `marked` (a field value containing one '#') and turns that
 * '#' into NUL before decoding: the only way to put an embedded NUL on the wire, since
 * protobuf-c strings are C strings. Searching for the whole value, not a lone '#', keeps a
 * varint that happens to contain 0x23 from being hit instead. */
static int decode_with_nul(const funnel_envelope_t *env, const char *topic, const char *marked,
                           funnel_refusal_t *why)
{
    size_t len;
    uint8_t *buf = pack(env, &len);
    uint8_t *at = memmem(buf, len, marked, strlen(marked));
    cr_assert_not_null(at, "'%s' not found in the packed bytes", marked);
    at[strchr(marked, '#') - marked] = '\0';
    int rc = decode_bytes(&limits, topic, strlen(topic), buf, len, why);
    free(buf);
    return rc;
}

Test(codec_id, embedded_nul_in_strings_is_refused)
{
    /* protobuf-c keeps the bytes after a NUL but every C reader stops at it, so "evt-1\0a"
     * and "evt-1\0b" would both be stored as "evt-1": the second event silently becomes a
     * duplicate of the first. The codec must refuse, naming the field. */
    fixture_t fx;
    funnel_refusal_t why;

    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    fx.env.event_id = "evt-1#a";
    cr_assert_eq(decode_with_nul(&fx.env, "lead.created", "evt-1#a", &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_BAD_ID, "%s (%s)", funnel_refusal_name(why.code),
                 why.text);
    cr_assert_not_null(strstr(why.text, "event_id"), "%s", why.text);

    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    fx.env.event_id = "#evt-1"; /* would otherwise read as a missing event_id */
    cr_assert_eq(decode_with_nul(&fx.env, "lead.created", "#evt-1", &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_BAD_ID, "%s (%s)", funnel_refusal_name(why.code),
                 why.text);

    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED);
    fx.payment_received.client_id = "C-77#other";
    cr_assert_eq(decode_with_nul(&fx.env, "payment.received", "C-77#other", &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_BAD_ID, "%s", why.text);
    cr_assert_not_null(strstr(why.text, "payment_received.client_id"), "%s", why.text);

    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED);
    fx.touch[0].campaign = "spring#hidden";
    cr_assert_eq(decode_with_nul(&fx.env, "lead.touched", "spring#hidden", &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_BAD_ID, "%s", why.text);
    cr_assert_not_null(strstr(why.text, "lead_touched.touch.campaign"), "%s", why.text);

    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    fx.touch[1].term = "crm#software"; /* the second touch: the index must be named */
    cr_assert_eq(decode_with_nul(&fx.env, "lead.created", "crm#software", &why), FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_BAD_ID, "%s", why.text);
    cr_assert_not_null(strstr(why.text, "lead_created.touches[1].term"), "%s", why.text);

    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED);
    fx.money.currency = "EUR#";
    cr_assert_eq(decode_with_nul(&fx.env, "payment.refunded", "EUR#", &why), FUNNEL_EINVAL);
    cr_assert_not_null(strstr(why.text, "payment_refunded.amount.currency"), "%s", why.text);
}

/* ---- required fields ---------------------------------------------------------------------- */

Test(codec_required, each_topic_refuses_each_missing_field)
{
    /* The required list of every topic, written out independently of codec.c's table, with
     * the code each absence earns: an unset enum is "bad_enum", everything else "missing". */
    static const struct {
        funnel_body_t body;
        const char *field;
        funnel_refusal_code_t code;
    } required[] = {
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "lead_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED, "lead_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED, "touch", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED, "lead_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED, "stage", FUNNEL_REFUSE_BAD_ENUM},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, "lead_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, "rep", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED, "lead_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED, "outcome", FUNNEL_REFUSE_BAD_ENUM},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "client_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "lead_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, "from_rep", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, "payment_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, "client_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, "amount", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "refund_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "payment_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "client_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, "amount", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID, "payout_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID, "rep", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID, "through_ms", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED, "sla_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "request_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "from_team", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "to_team", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "kind", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED, "request_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED, "owner", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED, "request_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED, "request_id", FUNNEL_REFUSE_MISSING_FIELD},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED, "resolution", FUNNEL_REFUSE_BAD_ENUM},
        {FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED, "request_id", FUNNEL_REFUSE_MISSING_FIELD},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const struct topic_case *tc = topic_of(required[i].body);
        char want[128];
        snprintf(want, sizeof want, "missing field: %s.%s", tc->field, required[i].field);
        fixture_t fx;
        fixture_init(&fx, required[i].body);
        fixture_clear(&fx, required[i].field);
        funnel_refusal_t why;
        cr_assert_eq(decode_env(&fx.env, tc->topic, &why), FUNNEL_EINVAL, "%s accepted", want);
        cr_assert_eq(why.code, required[i].code, "%s: got %s (%s)", want,
                     funnel_refusal_name(why.code), why.text);
        cr_assert_str_eq(why.text, want);
    }
}

/* ---- time --------------------------------------------------------------------------------- */

Test(codec_time, occurred_at_ms_bounds)
{
    static const struct {
        int64_t ms;
        funnel_refusal_code_t code; /* NONE: accepted */
    } cases[] = {
        {0, FUNNEL_REFUSE_BAD_TIME}, /* absent: the header files this under bad_time */
        {-1, FUNNEL_REFUSE_BAD_TIME},
        {-NOW_MS, FUNNEL_REFUSE_BAD_TIME},
        {INT64_MIN, FUNNEL_REFUSE_BAD_TIME},
        {1795000000, FUNNEL_REFUSE_BAD_TIME}, /* seconds sent as milliseconds */
        {EPOCH_2000_MS - 1, FUNNEL_REFUSE_BAD_TIME},
        {EPOCH_2000_MS, FUNNEL_REFUSE_NONE},
        {NOW_MS, FUNNEL_REFUSE_NONE},
        {NOW_MS + DAY_MS, FUNNEL_REFUSE_NONE}, /* clock skew allowance is inclusive */
        {NOW_MS + DAY_MS + 1, FUNNEL_REFUSE_BAD_TIME},
        {NOW_MS * 1000, FUNNEL_REFUSE_BAD_TIME}, /* microseconds sent as milliseconds */
        {INT64_MAX, FUNNEL_REFUSE_BAD_TIME},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
        fx.env.occurred_at_ms = cases[i].ms;
        funnel_refusal_t why;
        int rc = decode_env(&fx.env, "lead.contacted", &why);
        if (cases[i].code == FUNNEL_REFUSE_NONE) {
            cr_assert_eq(rc, 0, "%" PRId64 " refused: %s", cases[i].ms, why.text);
            continue;
        }
        cr_assert_eq(rc, FUNNEL_EINVAL, "%" PRId64 " accepted", cases[i].ms);
        cr_assert_eq(why.code, cases[i].code, "%" PRId64 ": got %s (%s)", cases[i].ms,
                     funnel_refusal_name(why.code), why.text);
        cr_assert_not_null(strstr(why.text, "occurred_at_ms"), "%s", why.text);
    }
}

Test(codec_time, future_bound_follows_now_and_limit)
{
    /* The bound is now + max_future_ms as passed in, not a constant. */
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
    fx.env.occurred_at_ms = NOW_MS + 1000;
    funnel_refusal_t why = {0};
    funnel_codec_limits_t tight = limits;
    tight.max_future_ms = 1000;
    cr_assert_eq(funnel_codec_validate(&tight, fx.env.body_case, &fx.env, NOW_MS, &why), 0, "%s",
                 why.text);
    tight.max_future_ms = 999;
    cr_assert_eq(funnel_codec_validate(&tight, fx.env.body_case, &fx.env, NOW_MS, &why),
                 FUNNEL_EINVAL);
    cr_assert_eq(why.code, FUNNEL_REFUSE_BAD_TIME);
    cr_assert_eq(funnel_codec_validate(&tight, fx.env.body_case, &fx.env, NOW_MS + 1, &why), 0,
                 "%s", why.text);
}

/* A payout through a negative time would pay nothing while taking its payout_id for good. */
Test(codec_time, commission_paid_through_ms_must_not_be_negative)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID);
    fx.commission_paid.through_ms = -1;
    expect_refuse(&fx.env, "commission.paid", FUNNEL_REFUSE_BAD_TIME,
                  "commission_paid.through_ms: -1 is negative");
    fx.commission_paid.through_ms = 1; /* any time at all after the epoch is a bound */
    expect_accept(&fx.env, "commission.paid");
}

Test(codec_time, touch_at_ms_bounds)
{
    /* A touch without a plausible time cannot be placed in an attribution window; one
     * without at_ms (0) happened when its event did. Checked for the single touch of
     * lead.touched and for each element of lead.created.touches. */
    static const struct {
        int64_t ms;
        bool ok;
    } cases[] = {
        {0, true},
        {-5, false},
        {EPOCH_2000_MS - 1, false},
        {EPOCH_2000_MS, true},
        {NOW_MS + DAY_MS, true},
        {NOW_MS + DAY_MS + 1, false},
        {INT64_MAX, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED);
        fx.touch[0].at_ms = cases[i].ms;
        if (cases[i].ok)
            expect_accept(&fx.env, "lead.touched");
        else
            expect_refuse(&fx.env, "lead.touched", FUNNEL_REFUSE_BAD_TIME,
                          "lead_touched.touch.at_ms");

        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
        fx.touch[1].at_ms = cases[i].ms; /* the second element: the index must be named */
        if (cases[i].ok)
            expect_accept(&fx.env, "lead.created");
        else
            expect_refuse(&fx.env, "lead.created", FUNNEL_REFUSE_BAD_TIME,
                          "lead_created.touches[1].at_ms");
    }
}

/* ---- money ---------------------------------------------------------------------------------- */

Test(codec_money, amount_must_be_positive)
{
    static const int64_t bad[] = {0, -1, -1999900, INT64_MIN};
    for (size_t t = 0; t < 2; t++) {
        funnel_body_t body = t ? FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED
                               : FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED;
        const struct topic_case *tc = topic_of(body);
        char path[64];
        snprintf(path, sizeof path, "%s.amount.minor", tc->field);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            fixture_t fx;
            fixture_init(&fx, body);
            fx.money.minor = bad[i];
            expect_refuse(&fx.env, tc->topic, FUNNEL_REFUSE_BAD_MONEY, path);
        }
        fixture_t fx;
        fixture_init(&fx, body);
        fx.money.minor = 1; /* one kopeck is a real payment */
        expect_accept(&fx.env, tc->topic);
        fx.money.minor = INT64_MAX;
        expect_accept(&fx.env, tc->topic);
    }
}

Test(codec_money, currency_must_be_iso_4217)
{
    static char *const bad[] = {"usd", "Usd", "XXX",  "XTS",  "EURO",
                                "EU",  "",    " EUR", "EUR ", "E\xc3\xa9R"};
    for (size_t t = 0; t < 2; t++) {
        funnel_body_t body = t ? FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED
                               : FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED;
        const struct topic_case *tc = topic_of(body);
        char path[64];
        snprintf(path, sizeof path, "%s.amount.currency", tc->field);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            fixture_t fx;
            fixture_init(&fx, body);
            fx.money.currency = bad[i];
            expect_refuse(&fx.env, tc->topic, FUNNEL_REFUSE_BAD_CURRENCY, path);
        }
        static char *const good[] = {"USD", "EUR", "RUB", "JPY", "KZT"};
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            fixture_t fx;
            fixture_init(&fx, body);
            fx.money.currency = good[i];
            expect_accept(&fx.env, tc->topic);
        }
    }
}

Test(codec_money, long_currency_is_quoted_safely)
{
    /* The reason quotes the bad code; a 2 KiB "currency" must not overflow the reason. */
    char *cur = repeat('Q', 2048);
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED);
    fx.money.currency = cur;
    expect_refuse(&fx.env, "payment.received", FUNNEL_REFUSE_BAD_CURRENCY,
                  "payment_received.amount.currency");
    free(cur);
}

/* ---- enums ---------------------------------------------------------------------------------- */

Test(codec_enum, unknown_values_are_refused)
{
    /* proto3 enums are open: protobuf-c hands unknown numbers through, so the codec must
     * catch a publisher built against a newer schema. */
    static const int stages[] = {3, 4, 99, -1, INT32_MAX};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED);
        fx.lead_qualified.stage = (Funnel__V1__Stage)stages[i];
        char num[16];
        snprintf(num, sizeof num, "%d", stages[i]);
        expect_refuse(&fx.env, "lead.qualified", FUNNEL_REFUSE_BAD_ENUM, "lead_qualified.stage");
        expect_refuse(&fx.env, "lead.qualified", FUNNEL_REFUSE_BAD_ENUM, num);
    }
    static const int outcomes[] = {4, 5, 1000, -3};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
        fx.lead_closed.outcome = (Funnel__V1__Outcome)outcomes[i];
        expect_refuse(&fx.env, "lead.closed", FUNNEL_REFUSE_BAD_ENUM, "lead_closed.outcome");
    }
}

Test(codec_enum, unset_values_are_refused)
{
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED);
    fx.lead_qualified.stage = FUNNEL__V1__STAGE__STAGE_UNSPECIFIED;
    expect_refuse(&fx.env, "lead.qualified", FUNNEL_REFUSE_BAD_ENUM, "lead_qualified.stage");
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    fx.lead_closed.outcome = FUNNEL__V1__OUTCOME__OUTCOME_UNSPECIFIED;
    expect_refuse(&fx.env, "lead.closed", FUNNEL_REFUSE_BAD_ENUM, "lead_closed.outcome");
}

Test(codec_enum, every_defined_value_is_accepted)
{
    static const Funnel__V1__Stage stages[] = {FUNNEL__V1__STAGE__MQL, FUNNEL__V1__STAGE__SQL};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED);
        fx.lead_qualified.stage = stages[i];
        expect_accept(&fx.env, "lead.qualified");
    }
    static const Funnel__V1__Outcome outcomes[] = {
        FUNNEL__V1__OUTCOME__WON, FUNNEL__V1__OUTCOME__LOST, FUNNEL__V1__OUTCOME__DISQUALIFIED};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
        fx.lead_closed.outcome = outcomes[i];
        expect_accept(&fx.env, "lead.closed");
    }
}

/* ---- free text ------------------------------------------------------------------------------ */

Test(codec_text, reason_length_limit)
{
    /* Over-long free text has no code of its own; it shares bad_id ("a string too long or
     * malformed for its field"). What matters to the sender is the field name and limit. */
    char *reason = repeat('r', TEXT_MAX + 1);
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    fx.lead_closed.reason = reason + 1;
    expect_accept(&fx.env, "lead.closed");
    fx.lead_closed.reason = reason;
    expect_refuse(&fx.env, "lead.closed", FUNNEL_REFUSE_BAD_ID, "lead_closed.reason");
    expect_refuse(&fx.env, "lead.closed", FUNNEL_REFUSE_BAD_ID, "1025");
    expect_refuse(&fx.env, "lead.closed", FUNNEL_REFUSE_BAD_ID, "1024");
    free(reason);
}

Test(codec_text, touch_text_length_limit)
{
    static const char *const fields[] = {"channel",  "source",  "medium",
                                         "campaign", "content", "term"};
    char *text = repeat('t', TEXT_MAX + 1);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
            &funnel__v1__touch__descriptor, fields[i]);
        cr_assert_not_null(f, "%s", fields[i]);
        char path[64];
        snprintf(path, sizeof path, "lead_touched.touch.%s", fields[i]);
        fixture_t fx;
        fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED);
        char **member = (char **)((char *)&fx.touch[0] + f->offset);
        *member = text + 1; /* free text, so 1024 bytes is fine although ids stop at 128 */
        expect_accept(&fx.env, "lead.touched");
        *member = text;
        expect_refuse(&fx.env, "lead.touched", FUNNEL_REFUSE_BAD_ID, path);
    }
    free(text);
}

Test(codec_text, free_text_may_hold_line_breaks)
{
    /* Unlike ids, a reason is prose: newlines and tabs are content, not an attack. */
    fixture_t fx;
    fixture_init(&fx, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    fx.lead_closed.reason = "budget cut\n\tnext year maybe";
    expect_accept(&fx.env, "lead.closed");
}

/* ---- sequence numbers ----------------------------------------------------------------------- */

Test(codec_seq, round_trip)
{
    static const uint64_t values[] = {0,
                                      1,
                                      255,
                                      256,
                                      UINT32_MAX,
                                      (uint64_t)UINT32_MAX + 1,
                                      (uint64_t)1 << 63,
                                      ((uint64_t)1 << 63) - 1,
                                      UINT64_MAX - 1,
                                      UINT64_MAX};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint8_t b[8];
        funnel_seq_encode(values[i], b);
        cr_assert_eq(funnel_seq_decode(b), values[i], "%" PRIu64, values[i]);
    }
}

Test(codec_seq, exact_big_endian_bytes)
{
    static const struct {
        uint64_t seq;
        uint8_t bytes[8];
    } cases[] = {
        {0, {0, 0, 0, 0, 0, 0, 0, 0}},
        {1, {0, 0, 0, 0, 0, 0, 0, 1}},
        {0x0102030405060708u, {1, 2, 3, 4, 5, 6, 7, 8}},
        {(uint64_t)1 << 63, {0x80, 0, 0, 0, 0, 0, 0, 0}},
        {UINT64_MAX, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[8];
        memset(b, 0xaa, sizeof b);
        funnel_seq_encode(cases[i].seq, b);
        cr_assert_arr_eq(b, cases[i].bytes, 8, "encode %" PRIx64, cases[i].seq);
        cr_assert_eq(funnel_seq_decode(cases[i].bytes), cases[i].seq);
    }
}

Test(codec_seq, byte_order_matches_numeric_order)
{
    /* Big-endian is chosen so sequence frames compare with memcmp (and sort as blobs) in
     * numeric order; a little-endian slip would break that at 256. */
    static const uint64_t ordered[] = {
        0, 1, 255, 256, 65535, 65536, (uint64_t)1 << 32, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 1; i < sizeof ordered / sizeof ordered[0]; i++) {
        uint8_t a[8], b[8];
        funnel_seq_encode(ordered[i - 1], a);
        funnel_seq_encode(ordered[i], b);
        cr_assert_lt(memcmp(a, b, 8), 0, "%" PRIu64 " vs %" PRIu64, ordered[i - 1], ordered[i]);
    }
}

/* The replay request as funneld's replay socket parses it (after the routing envelope). */
static int replay_parse(const void *cmd, size_t cmd_len, const void *seq, size_t seq_len, size_t n,
                        uint64_t *from, const char **why)
{
    funnel_frame_t frames[3] = {{cmd, cmd_len}, {seq, seq_len}, {"x", 1}};
    return funnel_replay_request_parse(frames, n, from, why);
}

Test(codec_replay, request_names_a_sequence)
{
    uint8_t seq[8];
    uint64_t from = 0;
    const char *why = NULL;
    funnel_seq_encode(42, seq);
    cr_assert_eq(replay_parse("replay", 6, seq, 8, 2, &from, &why), 0);
    cr_assert_eq(from, 42);
    funnel_seq_encode(INT64_MAX, seq);
    cr_assert_eq(replay_parse("replay", 6, seq, 8, 2, &from, &why), 0);
    cr_assert_eq(from, (uint64_t)INT64_MAX, "the largest sequence SQLite can bind");
}

Test(codec_replay, malformed_requests_are_refused_with_the_expected_shape)
{
    uint8_t seq[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    static const struct {
        const char *cmd;
        size_t seq_len, n;
    } bad[] = {
        {"replay", 8, 1}, {"replay", 8, 3}, {"replay", 7, 2}, {"replaY", 8, 2}, {"replays", 8, 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t from = 7;
        const char *why = NULL;
        cr_assert_eq(replay_parse(bad[i].cmd, strlen(bad[i].cmd), seq, bad[i].seq_len, bad[i].n,
                                  &from, &why),
                     FUNNEL_EINVAL, "case %zu", i);
        cr_assert_str_eq(why, "expected [replay][from_seq: 8 bytes big-endian]", "case %zu", i);
        cr_assert_eq(from, 7, "nothing written on refusal (case %zu)", i);
    }
    const char *why = NULL;
    cr_assert_eq(funnel_replay_request_parse(NULL, 0, &(uint64_t){0}, &why), FUNNEL_EINVAL,
                 "no frames at all: nothing is read");
}

Test(codec_replay, sequence_beyond_int64_is_refused)
{
    uint8_t seq[8];
    uint64_t from = 7;
    const char *why = NULL;
    funnel_seq_encode((uint64_t)INT64_MAX + 1, seq);
    cr_assert_eq(replay_parse("replay", 6, seq, 8, 2, &from, &why), FUNNEL_EINVAL);
    cr_assert_str_eq(why, "from_seq out of range: at most 2^63-1");
    cr_assert_eq(from, 7);
}
