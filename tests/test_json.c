/* test_json.c — the proto3 JSON mapping (adapters/lib/json.c).
 *
 * Every expectation is an exact value or an exact error sentence, so a change in the mapping
 * or in the wording shows up here. The funnel bodies cover string, int64, enum, nested and
 * repeated messages and oneofs; a hand-written descriptor (test.Scalars) covers the scalar
 * types funnel.proto does not use yet. Run under ASan/LSan, the error cases also check that
 * half-built messages are freed. */
#include <criterion/criterion.h>

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "funnel/codec.h"
#include "funnel/error.h"
#include "funnel/json.h"

#if defined(__SANITIZE_ADDRESS__) /* GCC */
#define JSON_TEST_ASAN 1
#elif defined(__has_feature) /* clang */
#if __has_feature(address_sanitizer)
#define JSON_TEST_ASAN 1
#endif
#endif
#if defined(JSON_TEST_ASAN)
#include <sanitizer/lsan_interface.h>
#define LEAKS_FOUND() __lsan_do_recoverable_leak_check()
#else
#define LEAKS_FOUND() 0
#endif

#define NOW_MS 1700000000000LL /* 0x18bcfe56800 */

/* LeakSanitizer reports only at exit, after Criterion has already counted the test as passed
 * (and an assertion in a .fini hook does not fail it either), so every test ends with an
 * explicit leak check: a leak fails the test that caused it. */
static void expect_no_leaks(void)
{
    cr_assert_eq(LEAKS_FOUND(), 0, "memory leaked: see the LeakSanitizer report above");
}

#define LEAK_CHECKED_TEST(suite, name)                                                             \
    static void suite##_##name##_body(void);                                                       \
    Test(suite, name)                                                                              \
    {                                                                                              \
        suite##_##name##_body();                                                                   \
        expect_no_leaks();                                                                         \
    }                                                                                              \
    static void suite##_##name##_body(void)

/* ---- helpers ---- */

static json_t *json_parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    cr_assert_not_null(j, "test JSON does not parse: %s: %s", text, jerr.text);
    return j;
}

/* Maps text to a message of type desc and insists on success. */
static ProtobufCMessage *message_from_text(const ProtobufCMessageDescriptor *desc, const char *text)
{
    json_t *j = json_parse(text);
    char err[256] = "untouched";
    ProtobufCMessage *m = NULL;
    int rc = funnel_json_to_message(desc, j, &m, err, sizeof err);
    json_decref(j);
    cr_assert_eq(rc, 0, "%s: rc %d: %s", text, rc, err);
    cr_assert_not_null(m);
    return m;
}

/* Maps text to a message of type desc and insists on the exact refusal. */
static void expect_refusal(const ProtobufCMessageDescriptor *desc, const char *text,
                           const char *want)
{
    json_t *j = json_parse(text);
    char err[256] = "";
    ProtobufCMessage *m = (ProtobufCMessage *)&m; /* must be reset to NULL */
    int rc = funnel_json_to_message(desc, j, &m, err, sizeof err);
    json_decref(j);
    cr_assert_eq(rc, FUNNEL_EINVAL, "%s: rc %d", text, rc);
    cr_assert_null(m, "%s: *out not NULL on error", text);
    cr_assert_str_eq(err, want, "%s", text);
}

/* The compact JSON text of msg; caller frees. */
static char *message_to_text(const ProtobufCMessage *msg)
{
    json_t *j = funnel_json_from_message(msg);
    cr_assert_not_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    cr_assert_not_null(s);
    return s;
}

static void expect_text(const ProtobufCMessage *msg, const char *want)
{
    char *s = message_to_text(msg);
    cr_expect_str_eq(s, want);
    free(s);
}

/* Packs and unpacks msg, so a round trip also crosses the wire format. */
static ProtobufCMessage *wire_round_trip(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    cr_assert_not_null(buf);
    cr_assert_eq(protobuf_c_message_pack(msg, buf), n);
    ProtobufCMessage *back = protobuf_c_message_unpack(msg->descriptor, NULL, n, buf);
    free(buf);
    cr_assert_not_null(back);
    return back;
}

static funnel_envelope_t *envelope_from_text(funnel_body_t topic, const char *text)
{
    char err[256] = "untouched";
    funnel_envelope_t *env = NULL;
    int rc = funnel_json_envelope_build(topic, text, NOW_MS, &env, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: rc %d: %s", text, rc, err);
    cr_assert_not_null(env);
    return env;
}

static void expect_envelope_refusal(funnel_body_t topic, const char *text, const char *want)
{
    char err[256] = "";
    funnel_envelope_t *env = (funnel_envelope_t *)&env; /* must be reset to NULL */
    int rc = funnel_json_envelope_build(topic, text, NOW_MS, &env, err, sizeof err);
    cr_assert_eq(rc, FUNNEL_EINVAL, "%s: rc %d", text, rc);
    cr_assert_null(env, "%s: *out not NULL on error", text);
    cr_assert_str_eq(err, want, "%s", text);
}

/* ---- every ingest body, in its canonical output form ---- */

typedef struct body_case {
    funnel_body_t body;
    const ProtobufCMessageDescriptor *desc;
    const char *json; /* canonical: camelCase, field-number order, int64 as strings */
} body_case_t;

static const body_case_t bodies[] = {
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, &funnel__v1__lead_created__descriptor,
     "{\"leadId\":\"L-1\",\"owner\":\"ann\",\"segment\":\"smb\",\"touches\":["
     "{\"channel\":\"paid\",\"source\":\"google\",\"medium\":\"cpc\",\"campaign\":\"spring\","
     "\"content\":\"ad1\",\"term\":\"crm\",\"atMs\":\"1700000000000\"},"
     "{\"channel\":\"email\",\"atMs\":\"1700000100000\"}]}"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED, &funnel__v1__lead_touched__descriptor,
     "{\"leadId\":\"L-1\",\"touch\":{\"channel\":\"social\",\"source\":\"x\","
     "\"atMs\":\"1700000200000\"}}"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED, &funnel__v1__lead_qualified__descriptor,
     "{\"leadId\":\"L-1\",\"stage\":\"SQL\",\"owner\":\"bob\"}"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, &funnel__v1__lead_contacted__descriptor,
     "{\"leadId\":\"L-1\",\"rep\":\"bob\"}"},
    {FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED, &funnel__v1__lead_closed__descriptor,
     "{\"leadId\":\"L-1\",\"outcome\":\"WON\",\"reason\":\"signed\"}"},
    {FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF, &funnel__v1__client_handed_off__descriptor,
     "{\"clientId\":\"C-1\",\"leadId\":\"L-1\",\"fromRep\":\"bob\",\"accountManager\":\"eve\"}"},
    {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED, &funnel__v1__payment_received__descriptor,
     "{\"paymentId\":\"P-1\",\"clientId\":\"C-1\","
     "\"amount\":{\"minor\":\"129900\",\"currency\":\"EUR\"}}"},
    {FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED, &funnel__v1__payment_refunded__descriptor,
     "{\"refundId\":\"R-1\",\"paymentId\":\"P-1\",\"clientId\":\"C-1\","
     "\"amount\":{\"minor\":\"500\",\"currency\":\"EUR\"}}"},
};
#define BODIES (sizeof bodies / sizeof bodies[0])

LEAK_CHECKED_TEST(json, round_trip_every_body)
{
    for (size_t i = 0; i < BODIES; i++) {
        ProtobufCMessage *m = message_from_text(bodies[i].desc, bodies[i].json);
        ProtobufCMessage *back = wire_round_trip(m);
        expect_text(m, bodies[i].json);
        expect_text(back, bodies[i].json);
        protobuf_c_message_free_unpacked(m, NULL);
        protobuf_c_message_free_unpacked(back, NULL);
    }
}

/* lead_created -> leadCreated, written independently of json.c to check it. */
static void camel_case(const char *name, char out[64])
{
    size_t o = 0;
    for (const char *p = name; *p && o < 63; p++) {
        if (*p != '_')
            out[o++] = (p > name && p[-1] == '_') ? (char)(*p - 'a' + 'A') : *p;
    }
    out[o] = '\0';
}

/* Each body inside a whole Envelope, through funnel_json_envelope_build and the wire. */
LEAK_CHECKED_TEST(json, round_trip_every_envelope)
{
    for (size_t i = 0; i < BODIES; i++) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
            &funnel__v1__envelope__descriptor, bodies[i].body);
        cr_assert_not_null(f);
        char member[64];
        camel_case(f->name, member);
        char text[1024];
        snprintf(text, sizeof text,
                 "{\"eventId\":\"E-%zu\",\"occurredAtMs\":\"1700000000000\",\"source\":\"crm\","
                 "\"%s\":%s}",
                 i, member, bodies[i].json);
        funnel_envelope_t *env = envelope_from_text(bodies[i].body, text);
        cr_expect_eq(env->body_case, bodies[i].body);
        ProtobufCMessage *back = wire_round_trip(&env->base);
        expect_text(&env->base, text);
        expect_text(back, text);
        funnel_envelope_free(&env);
        protobuf_c_message_free_unpacked(back, NULL);
    }
}

LEAK_CHECKED_TEST(json, fields_land_in_the_struct)
{
    Funnel__V1__LeadCreated *lc = (Funnel__V1__LeadCreated *)message_from_text(
        &funnel__v1__lead_created__descriptor, bodies[0].json);
    cr_assert_str_eq(lc->lead_id, "L-1");
    cr_assert_str_eq(lc->owner, "ann");
    cr_assert_eq(lc->n_touches, 2);
    cr_assert_str_eq(lc->touches[0]->campaign, "spring");
    cr_assert_eq(lc->touches[0]->at_ms, 1700000000000LL);
    cr_assert_str_eq(lc->touches[1]->channel, "email");
    cr_assert_str_eq(lc->touches[1]->source, "");
    cr_assert_eq(lc->touches[1]->at_ms, 1700000100000LL);
    protobuf_c_message_free_unpacked(&lc->base, NULL);

    Funnel__V1__PaymentReceived *pr = (Funnel__V1__PaymentReceived *)message_from_text(
        &funnel__v1__payment_received__descriptor, bodies[6].json);
    cr_assert_not_null(pr->amount);
    cr_assert_eq(pr->amount->minor, 129900);
    cr_assert_str_eq(pr->amount->currency, "EUR");
    protobuf_c_message_free_unpacked(&pr->base, NULL);
}

LEAK_CHECKED_TEST(json, snake_case_input)
{
    ProtobufCMessage *m = message_from_text(
        &funnel__v1__lead_created__descriptor,
        "{\"lead_id\":\"L-1\",\"owner\":\"ann\",\"segment\":\"smb\",\"touches\":["
        "{\"channel\":\"paid\",\"source\":\"google\",\"medium\":\"cpc\",\"campaign\":\"spring\","
        "\"content\":\"ad1\",\"term\":\"crm\",\"at_ms\":\"1700000000000\"},"
        "{\"channel\":\"email\",\"at_ms\":1700000100000}]}");
    expect_text(m, bodies[0].json);
    protobuf_c_message_free_unpacked(m, NULL);

    m = message_from_text(&funnel__v1__client_handed_off__descriptor,
                          "{\"client_id\":\"C-1\",\"lead_id\":\"L-1\",\"from_rep\":\"bob\","
                          "\"account_manager\":\"eve\"}");
    expect_text(m, bodies[5].json);
    protobuf_c_message_free_unpacked(m, NULL);

    /* Both spellings may be mixed, one per field. */
    m = message_from_text(&funnel__v1__payment_refunded__descriptor,
                          "{\"refund_id\":\"R-1\",\"paymentId\":\"P-1\",\"client_id\":\"C-1\","
                          "\"amount\":{\"minor\":500,\"currency\":\"EUR\"}}");
    expect_text(m, bodies[7].json);
    protobuf_c_message_free_unpacked(m, NULL);
}

LEAK_CHECKED_TEST(json, same_field_under_both_names_is_refused)
{
    expect_refusal(&funnel__v1__lead_contacted__descriptor, "{\"leadId\":\"a\",\"lead_id\":\"b\"}",
                   "leadId: given twice, as lead_id and leadId");
    expect_refusal(&funnel__v1__lead_contacted__descriptor,
                   "{\"lead_id\":\"a\",\"rep\":\"r\",\"leadId\":\"b\"}",
                   "lead_id: given twice, as lead_id and leadId");
}

/* ---- int64 ---- */

static int64_t at_ms_of(const char *value)
{
    char text[128];
    snprintf(text, sizeof text, "{\"atMs\":%s}", value);
    Funnel__V1__Touch *t =
        (Funnel__V1__Touch *)message_from_text(&funnel__v1__touch__descriptor, text);
    int64_t v = t->at_ms;
    protobuf_c_message_free_unpacked(&t->base, NULL);
    return v;
}

LEAK_CHECKED_TEST(json, int64_as_string_or_number)
{
    cr_expect_eq(at_ms_of("\"1700000000000\""), 1700000000000LL);
    cr_expect_eq(at_ms_of("1700000000000"), 1700000000000LL);
    cr_expect_eq(at_ms_of("\"-5\""), -5);
    cr_expect_eq(at_ms_of("-5"), -5);
    cr_expect_eq(at_ms_of("1e3"), 1000);
    cr_expect_eq(at_ms_of("\"9223372036854775807\""), INT64_MAX);
    cr_expect_eq(at_ms_of("-9223372036854775808"), INT64_MIN);
    cr_expect_eq(at_ms_of("\"-9223372036854775808\""), INT64_MIN);
}

LEAK_CHECKED_TEST(json, int64_refusals_name_the_path)
{
    const ProtobufCMessageDescriptor *d = &funnel__v1__touch__descriptor;
    expect_refusal(d, "{\"atMs\":1.5}", "atMs: expected an integer, not a fraction");
    expect_refusal(d, "{\"atMs\":\"12abc\"}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":\"12\\u0000\"}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":\" 12\"}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":\"+12\"}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":\"1.5\"}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":\"\"}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":true}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":[1]}", "atMs: expected an integer");
    expect_refusal(d, "{\"atMs\":\"9223372036854775808\"}", "atMs: out of range for int64");
    expect_refusal(d, "{\"atMs\":1e19}", "atMs: out of range for int64");
    expect_refusal(&funnel__v1__lead_created__descriptor,
                   "{\"leadId\":\"L\",\"touches\":[{\"atMs\":\"1\"},{\"atMs\":\"soon\"}]}",
                   "touches[1].atMs: expected an integer");
    expect_refusal(&funnel__v1__payment_received__descriptor, "{\"amount\":{\"minor\":0.25}}",
                   "amount.minor: expected an integer, not a fraction");
}

/* ---- enums ---- */

static int stage_of(const char *value)
{
    char text[128];
    snprintf(text, sizeof text, "{\"stage\":%s}", value);
    Funnel__V1__LeadQualified *q = (Funnel__V1__LeadQualified *)message_from_text(
        &funnel__v1__lead_qualified__descriptor, text);
    int v = (int)q->stage;
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return v;
}

LEAK_CHECKED_TEST(json, enums_by_name_or_number)
{
    cr_expect_eq(stage_of("\"SQL\""), FUNNEL__V1__STAGE__SQL);
    cr_expect_eq(stage_of("\"MQL\""), FUNNEL__V1__STAGE__MQL);
    cr_expect_eq(stage_of("2"), FUNNEL__V1__STAGE__SQL);
    cr_expect_eq(stage_of("\"STAGE_UNSPECIFIED\""), 0);
    /* proto3 enums are open: an unnamed number is kept, and funneld's validation refuses it. */
    cr_expect_eq(stage_of("7"), 7);

    ProtobufCMessage *m =
        message_from_text(&funnel__v1__lead_qualified__descriptor, "{\"stage\":1}");
    expect_text(m, "{\"stage\":\"MQL\"}");
    protobuf_c_message_free_unpacked(m, NULL);
    m = message_from_text(&funnel__v1__lead_qualified__descriptor, "{\"stage\":7}");
    expect_text(m, "{\"stage\":7}");
    protobuf_c_message_free_unpacked(m, NULL);
}

LEAK_CHECKED_TEST(json, enum_refusals)
{
    const ProtobufCMessageDescriptor *d = &funnel__v1__lead_qualified__descriptor;
    expect_refusal(d, "{\"stage\":\"BOGUS\"}",
                   "stage: unknown enum value \"BOGUS\" for funnel.v1.Stage");
    expect_refusal(d, "{\"stage\":\"sql\"}",
                   "stage: unknown enum value \"sql\" for funnel.v1.Stage");
    expect_refusal(&funnel__v1__lead_closed__descriptor, "{\"outcome\":\"MQL\"}",
                   "outcome: unknown enum value \"MQL\" for funnel.v1.Outcome");
    expect_refusal(d, "{\"stage\":true}", "stage: expected an enum name or number");
    expect_refusal(d, "{\"stage\":1.5}", "stage: expected an integer, not a fraction");
    expect_refusal(d, "{\"stage\":3000000000}", "stage: out of range for enum");
}

/* ---- refusals ---- */

LEAK_CHECKED_TEST(json, unknown_fields_are_refused)
{
    expect_refusal(&funnel__v1__lead_created__descriptor, "{\"leadId\":\"L\",\"colour\":\"x\"}",
                   "colour: unknown field of funnel.v1.LeadCreated");
    expect_refusal(&funnel__v1__lead_created__descriptor,
                   "{\"touches\":[{\"channel\":\"a\"},{\"colour\":\"x\"}]}",
                   "touches[1].colour: unknown field of funnel.v1.Touch");
    expect_refusal(&funnel__v1__payment_received__descriptor, "{\"amount\":{\"cents\":5}}",
                   "amount.cents: unknown field of funnel.v1.Money");
    /* Only exact json_names are aliases: no case folding. */
    expect_refusal(&funnel__v1__lead_contacted__descriptor, "{\"LeadId\":\"L\"}",
                   "LeadId: unknown field of funnel.v1.LeadContacted");
}

LEAK_CHECKED_TEST(json, wrong_types_are_refused)
{
    expect_refusal(&funnel__v1__lead_created__descriptor, "{\"leadId\":5}",
                   "leadId: expected a string");
    expect_refusal(&funnel__v1__lead_created__descriptor, "{\"touches\":{}}",
                   "touches: expected an array");
    expect_refusal(&funnel__v1__lead_created__descriptor, "{\"touches\":[\"x\"]}",
                   "touches[0]: expected a JSON object for funnel.v1.Touch");
    expect_refusal(&funnel__v1__lead_created__descriptor, "{\"touches\":[{},null]}",
                   "touches[1]: expected a JSON object for funnel.v1.Touch");
    expect_refusal(&funnel__v1__lead_touched__descriptor, "{\"touch\":[]}",
                   "touch: expected a JSON object for funnel.v1.Touch");
    expect_refusal(&funnel__v1__lead_created__descriptor, "[1,2]",
                   "(root): expected a JSON object for funnel.v1.LeadCreated");
    expect_refusal(&funnel__v1__lead_created__descriptor, "\"text\"",
                   "(root): expected a JSON object for funnel.v1.LeadCreated");
}

/* Refusals deep inside a message, after strings, arrays and submessages were allocated: under
 * LSan a leak of the half-built message fails this test. */
LEAK_CHECKED_TEST(json, refusal_frees_the_half_built_message)
{
    expect_refusal(&funnel__v1__lead_created__descriptor,
                   "{\"leadId\":\"L\",\"owner\":\"o\",\"touches\":[{\"channel\":\"a\","
                   "\"source\":\"b\",\"atMs\":\"1\"},{\"channel\":\"c\",\"atMs\":\"x\"}]}",
                   "touches[1].atMs: expected an integer");
    expect_refusal(&funnel__v1__envelope__descriptor,
                   "{\"eventId\":\"E\",\"leadCreated\":{\"leadId\":\"L\"},"
                   "\"leadTouched\":{\"leadId\":\"L\"}}",
                   "leadTouched: only one member of a oneof may be set, and lead_created "
                   "already is");
    expect_refusal(&funnel__v1__envelope__descriptor,
                   "{\"source\":\"s\",\"paymentReceived\":{\"paymentId\":\"P\","
                   "\"amount\":{\"currency\":\"EUR\",\"minor\":\"x\"}}}",
                   "paymentReceived.amount.minor: expected an integer");
}

LEAK_CHECKED_TEST(json, null_means_default)
{
    ProtobufCMessage *m = message_from_text(&funnel__v1__lead_created__descriptor,
                                            "{\"leadId\":null,\"touches\":null,\"owner\":\"o\"}");
    Funnel__V1__LeadCreated *lc = (Funnel__V1__LeadCreated *)m;
    cr_expect_str_eq(lc->lead_id, "");
    cr_expect_eq(lc->n_touches, 0);
    expect_text(m, "{\"owner\":\"o\"}");
    protobuf_c_message_free_unpacked(m, NULL);
}

LEAK_CHECKED_TEST(json, oneof_member_sets_the_case)
{
    Funnel__V1__Envelope *env = (Funnel__V1__Envelope *)message_from_text(
        &funnel__v1__envelope__descriptor, "{\"lead_contacted\":{}}");
    cr_expect_eq(env->body_case, FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED);
    cr_assert_not_null(env->lead_contacted);
    cr_expect_str_eq(env->lead_contacted->lead_id, "");
    /* A selected member is written even when it is empty. */
    expect_text(&env->base, "{\"leadContacted\":{}}");
    protobuf_c_message_free_unpacked(&env->base, NULL);
}

LEAK_CHECKED_TEST(json, bad_arguments)
{
    char err[64];
    ProtobufCMessage *m = NULL;
    json_t *obj = json_object();
    cr_expect_eq(funnel_json_to_message(NULL, obj, &m, err, sizeof err), FUNNEL_EINVAL);
    cr_expect_str_eq(err, "no message descriptor");
    cr_expect_eq(funnel_json_to_message(&funnel__v1__touch__descriptor, NULL, &m, err, sizeof err),
                 FUNNEL_EINVAL);
    cr_expect_str_eq(err, "no JSON value");
    cr_expect_eq(funnel_json_to_message(&funnel__v1__touch__descriptor, obj, NULL, err, 0),
                 FUNNEL_EINVAL);
    /* No error buffer at all is allowed. */
    cr_expect_eq(funnel_json_to_message(&funnel__v1__lead_created__descriptor, obj, &m, NULL, 0),
                 0);
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(obj);
    cr_expect_null(funnel_json_from_message(NULL));
}

/* ---- output ---- */

LEAK_CHECKED_TEST(json, output_omits_defaults_and_writes_int64_as_string)
{
    Funnel__V1__LeadQualified q = FUNNEL__V1__LEAD_QUALIFIED__INIT;
    expect_text(&q.base, "{}");
    q.owner = "bob";
    expect_text(&q.base, "{\"owner\":\"bob\"}");

    Funnel__V1__Touch t = FUNNEL__V1__TOUCH__INIT;
    expect_text(&t.base, "{}");
    t.at_ms = 9007199254740993LL; /* 2^53 + 1: not representable as a double */
    expect_text(&t.base, "{\"atMs\":\"9007199254740993\"}");

    Funnel__V1__Money money = FUNNEL__V1__MONEY__INIT;
    money.minor = -5;
    expect_text(&money.base, "{\"minor\":\"-5\"}");

    Funnel__V1__LeadCreated lc = FUNNEL__V1__LEAD_CREATED__INIT;
    lc.lead_id = "L";
    expect_text(&lc.base, "{\"leadId\":\"L\"}"); /* no empty "touches":[] */

    Funnel__V1__LeadContacted contacted = FUNNEL__V1__LEAD_CONTACTED__INIT;
    Funnel__V1__Envelope env = FUNNEL__V1__ENVELOPE__INIT;
    env.occurred_at_ms = 1;
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED;
    env.lead_contacted = &contacted;
    expect_text(&env.base, "{\"occurredAtMs\":\"1\",\"leadContacted\":{}}");
}

/* ---- funnel_json_envelope_build ---- */

LEAK_CHECKED_TEST(envelope, body_form_camel_case)
{
    funnel_envelope_t *env = envelope_from_text(
        FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED,
        "{\"eventId\":\"E-1\",\"leadId\":\"L-1\",\"occurredAtMs\":\"1600000000000\","
        "\"source\":\"crm\",\"owner\":\"ann\"}");
    cr_expect_str_eq(env->event_id, "E-1");
    cr_expect_eq(env->occurred_at_ms, 1600000000000LL);
    cr_expect_str_eq(env->source, "crm");
    cr_assert_eq(env->body_case, FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED);
    cr_expect_str_eq(env->lead_created->lead_id, "L-1");
    cr_expect_str_eq(env->lead_created->owner, "ann");
    funnel_envelope_free(&env);
    cr_expect_null(env);
}

LEAK_CHECKED_TEST(envelope, body_form_snake_case)
{
    funnel_envelope_t *env = envelope_from_text(
        FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED,
        "{\"event_id\":\"E-2\",\"occurred_at_ms\":1600000000001,\"payment_id\":\"P-1\","
        "\"client_id\":\"C-1\",\"amount\":{\"minor\":\"100\",\"currency\":\"USD\"}}");
    cr_expect_str_eq(env->event_id, "E-2");
    cr_expect_eq(env->occurred_at_ms, 1600000000001LL);
    cr_expect_str_eq(env->source, "");
    cr_assert_eq(env->body_case, FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED);
    cr_expect_str_eq(env->payment_received->payment_id, "P-1");
    cr_expect_eq(env->payment_received->amount->minor, 100);
    cr_expect_str_eq(env->payment_received->amount->currency, "USD");
    funnel_envelope_free(&env);
}

LEAK_CHECKED_TEST(envelope, whole_form_both_spellings)
{
    funnel_envelope_t *env =
        envelope_from_text(FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED,
                           "{\"eventId\":\"E-3\",\"occurredAtMs\":\"1600000000002\","
                           "\"leadClosed\":{\"leadId\":\"L-1\",\"outcome\":\"LOST\"}}");
    cr_expect_str_eq(env->event_id, "E-3");
    cr_expect_eq(env->occurred_at_ms, 1600000000002LL);
    cr_assert_eq(env->body_case, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    cr_expect_eq(env->lead_closed->outcome, FUNNEL__V1__OUTCOME__LOST);
    funnel_envelope_free(&env);

    env = envelope_from_text(FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED,
                             "{\"event_id\":\"E-4\",\"lead_closed\":{\"lead_id\":\"L-2\","
                             "\"outcome\":3}}");
    cr_expect_str_eq(env->event_id, "E-4");
    cr_expect_eq(env->occurred_at_ms, NOW_MS);
    cr_assert_eq(env->body_case, FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED);
    cr_expect_str_eq(env->lead_closed->lead_id, "L-2");
    cr_expect_eq(env->lead_closed->outcome, FUNNEL__V1__OUTCOME__DISQUALIFIED);
    funnel_envelope_free(&env);
}

/* A UUIDv7 for NOW_MS: 48-bit millisecond prefix, version nibble 7, RFC 9562 variant. */
static void expect_uuid7(const char *id)
{
    cr_assert_eq(strlen(id), 36, "%s", id);
    cr_expect_eq(strncmp(id, "018bcfe5-6800-7", 15), 0, "%s: wrong time prefix or version", id);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_expect_eq(id[i], '-', "%s", id);
        else
            cr_expect(strchr("0123456789abcdef", id[i]) && id[i], "%s: char %d", id, i);
    }
    cr_expect(strchr("89ab", id[19]) && id[19], "%s: variant", id);
}

LEAK_CHECKED_TEST(envelope, generated_event_id_and_time)
{
    funnel_envelope_t *a =
        envelope_from_text(FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED, "{\"leadId\":\"L\"}");
    expect_uuid7(a->event_id);
    cr_expect_eq(a->occurred_at_ms, NOW_MS);

    /* Empty and zero count as absent; the random part differs between ids. */
    funnel_envelope_t *b =
        envelope_from_text(FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED,
                           "{\"eventId\":\"\",\"occurredAtMs\":0,\"leadId\":\"L\",\"rep\":\"r\"}");
    expect_uuid7(b->event_id);
    cr_expect_eq(b->occurred_at_ms, NOW_MS);
    cr_expect_str_neq(a->event_id, b->event_id);
    cr_expect_str_eq(b->lead_contacted->rep, "r");
    funnel_envelope_free(&a);
    funnel_envelope_free(&b);

    funnel_envelope_t *c = envelope_from_text(FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED,
                                              "{\"leadContacted\":{\"leadId\":\"L\"}}");
    expect_uuid7(c->event_id);
    cr_expect_eq(c->occurred_at_ms, NOW_MS);
    funnel_envelope_free(&c);
}

LEAK_CHECKED_TEST(envelope, topic_mismatch)
{
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED,
                            "{\"eventId\":\"E\",\"leadTouched\":{\"leadId\":\"L\"}}",
                            "leadTouched: topic lead.created carries leadCreated, not leadTouched");
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED,
                            "{\"payment_received\":{}}",
                            "paymentReceived: topic payment.refunded carries paymentRefunded, "
                            "not paymentReceived");
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED,
                            "{\"eventId\":\"E\",\"leadCreated\":null}",
                            "(root): topic lead.created carries leadCreated, which is missing");
}

LEAK_CHECKED_TEST(envelope, bad_json_reports_line_and_column)
{
    /* Written out, not computed with jansson: the reply a sender reads is what is checked. */
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"leadId\": }", "invalid JSON at line 1, column 12: unexpected token near '}'"},
        {"{\"leadId\":\"a\",\n\"leadId\":\"b\"}",
         "invalid JSON at line 2, column 8: duplicate object key near '\"leadId\"'"},
        {"", "invalid JSON at line 1, column 0: unexpected token near end of file"},
        {"{\"leadId\":\"a\"} trailing",
         "invalid JSON at line 1, column 23: end of file expected near 'trailing'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, cases[i].text,
                                cases[i].want);
    /* The line really is reported (jansson counts from 1). */
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "{\n\"leadId\": }",
                            "invalid JSON at line 2, column 11: unexpected token near '}'");
}

LEAK_CHECKED_TEST(envelope, non_object_is_refused)
{
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "[1,2]",
                            "(root): expected a JSON object");
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "42",
                            "(root): expected a JSON object");
    expect_envelope_refusal(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, "null",
                            "(root): expected a JSON object");
}

LEAK_CHECKED_TEST(envelope, mapping_errors_name_the_key_as_written)
{
    funnel_body_t lc = FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED;
    expect_envelope_refusal(lc, "{\"leadId\":\"L\",\"touches\":[{\"atMs\":true}]}",
                            "touches[0].atMs: expected an integer");
    expect_envelope_refusal(lc, "{\"occurredAtMs\":\"soon\",\"leadId\":\"L\"}",
                            "occurredAtMs: expected an integer");
    expect_envelope_refusal(lc, "{\"event_id\":7,\"leadId\":\"L\"}", "event_id: expected a string");
    expect_envelope_refusal(lc, "{\"leadId\":\"L\",\"colour\":\"red\"}",
                            "colour: unknown field of funnel.v1.LeadCreated");
    expect_envelope_refusal(lc, "{\"leadCreated\":{\"leadId\":\"L\",\"colour\":\"red\"}}",
                            "leadCreated.colour: unknown field of funnel.v1.LeadCreated");
    expect_envelope_refusal(lc, "{\"eventId\":\"a\",\"event_id\":\"b\",\"leadId\":\"L\"}",
                            "eventId: given twice, as event_id and eventId");
}

LEAK_CHECKED_TEST(envelope, bad_topic_or_arguments)
{
    char err[128];
    funnel_envelope_t *env = NULL;
    cr_expect_eq(funnel_json_envelope_build(0, "{}", NOW_MS, &env, err, sizeof err), FUNNEL_EINVAL);
    cr_expect_str_eq(err, "topic 0 has no envelope body");
    /* Field 3 of Envelope is "source", not a body. */
    cr_expect_eq(funnel_json_envelope_build(3, "{}", NOW_MS, &env, err, sizeof err), FUNNEL_EINVAL);
    cr_expect_str_eq(err, "topic 3 has no envelope body");
    cr_expect_eq(funnel_json_envelope_build(FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED, NULL, NOW_MS,
                                            &env, err, sizeof err),
                 FUNNEL_EINVAL);
    cr_expect_str_eq(err, "no JSON text");
    cr_expect_null(env);
}

/* ---- scalar types funnel.proto does not use yet, via a hand-written descriptor ---- */

typedef struct scalars {
    ProtobufCMessage base;
    int32_t i32;
    uint32_t u32;
    uint64_t u64;
    protobuf_c_boolean flag;
    double ratio;
    float weight;
    ProtobufCBinaryData blob;
    size_t n_tags;
    char **tags;
    size_t n_counts;
    int64_t *counts;
    protobuf_c_boolean has_opt_num;
    int32_t opt_num;
    uint32_t pick_case;
    union {
        char *pick_name;
        int64_t pick_num;
    };
} scalars_t;

#define FIELD(name, id, label, type, quantifier, member, flags)                                    \
    {                                                                                              \
        name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, quantifier,                    \
            offsetof(scalars_t, member), NULL, NULL, flags, 0, NULL, NULL                          \
    }

static const ProtobufCFieldDescriptor scalars_fields[12] = {
    FIELD("i32", 1, NONE, INT32, 0, i32, 0),
    FIELD("u32", 2, NONE, UINT32, 0, u32, 0),
    FIELD("u64", 3, NONE, UINT64, 0, u64, 0),
    FIELD("flag", 4, NONE, BOOL, 0, flag, 0),
    FIELD("ratio", 5, NONE, DOUBLE, 0, ratio, 0),
    FIELD("weight", 6, NONE, FLOAT, 0, weight, 0),
    FIELD("blob", 7, NONE, BYTES, 0, blob, 0),
    FIELD("tags", 8, REPEATED, STRING, offsetof(scalars_t, n_tags), tags, 0),
    FIELD("counts", 9, REPEATED, INT64, offsetof(scalars_t, n_counts), counts, 0),
    FIELD("opt_num", 10, OPTIONAL, INT32, offsetof(scalars_t, has_opt_num), opt_num, 0),
    FIELD("pick_name", 11, NONE, STRING, offsetof(scalars_t, pick_case), pick_name,
          PROTOBUF_C_FIELD_FLAG_ONEOF),
    FIELD("pick_num", 12, NONE, INT64, offsetof(scalars_t, pick_case), pick_num,
          PROTOBUF_C_FIELD_FLAG_ONEOF),
};
static const unsigned scalars_by_name[12] = {6, 8, 3, 0, 9, 10, 11, 4, 7, 1, 2, 5};
static const ProtobufCIntRange scalars_ranges[2] = {{1, 0}, {0, 12}};

static void scalars_init(ProtobufCMessage *m);

static const ProtobufCMessageDescriptor scalars_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Scalars",
    "Scalars",
    "Scalars",
    "test",
    sizeof(scalars_t),
    12,
    scalars_fields,
    scalars_by_name,
    1,
    scalars_ranges,
    scalars_init,
    NULL,
    NULL,
    NULL,
};

static void scalars_init(ProtobufCMessage *m)
{
    memset(m, 0, sizeof(scalars_t));
    m->descriptor = &scalars_desc;
}

static scalars_t *scalars_from_text(const char *text)
{
    return (scalars_t *)message_from_text(&scalars_desc, text);
}

LEAK_CHECKED_TEST(scalars, round_trip)
{
    const char *text =
        "{\"i32\":-7,\"u32\":4000000000,\"u64\":\"18446744073709551615\",\"flag\":true,"
        "\"ratio\":2.5,\"weight\":0.5,\"blob\":\"aGVsbG8=\",\"tags\":[\"a\",\"\"],"
        "\"counts\":[\"1\",\"-2\"],\"optNum\":0,\"pickName\":\"x\"}";
    scalars_t *s = scalars_from_text(text);
    cr_expect_eq(s->i32, -7);
    cr_expect_eq(s->u32, 4000000000u);
    cr_expect_eq(s->u64, UINT64_MAX);
    cr_expect_eq(s->flag, 1);
    cr_expect_eq(s->ratio, 2.5);
    cr_expect_eq(s->weight, 0.5f);
    cr_assert_eq(s->blob.len, 5);
    cr_expect_eq(memcmp(s->blob.data, "hello", 5), 0);
    cr_assert_eq(s->n_tags, 2);
    cr_expect_str_eq(s->tags[0], "a");
    cr_expect_str_eq(s->tags[1], "");
    cr_assert_eq(s->n_counts, 2);
    cr_expect_eq(s->counts[1], -2);
    cr_expect_eq(s->has_opt_num, 1);
    cr_expect_eq(s->pick_case, 11);
    cr_expect_str_eq(s->pick_name, "x");
    expect_text(&s->base, text);
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

LEAK_CHECKED_TEST(scalars, defaults_and_presence)
{
    scalars_t *s = scalars_from_text("{\"i32\":0,\"flag\":false,\"blob\":\"\",\"tags\":[]}");
    cr_expect_eq(s->has_opt_num, 0);
    cr_expect_eq(s->pick_case, 0);
    expect_text(&s->base, "{}");
    protobuf_c_message_free_unpacked(&s->base, NULL);

    /* A oneof member or an optional field is written even at its zero value. */
    s = scalars_from_text("{\"pickNum\":\"0\",\"opt_num\":0}");
    cr_expect_eq(s->pick_case, 12);
    expect_text(&s->base, "{\"optNum\":0,\"pickNum\":\"0\"}");
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

LEAK_CHECKED_TEST(scalars, integers)
{
    scalars_t *s = scalars_from_text("{\"i32\":\"-2147483648\",\"u32\":\"42\",\"u64\":7}");
    cr_expect_eq(s->i32, INT32_MIN);
    cr_expect_eq(s->u32, 42);
    cr_expect_eq(s->u64, 7);
    expect_text(&s->base, "{\"i32\":-2147483648,\"u32\":42,\"u64\":\"7\"}");
    protobuf_c_message_free_unpacked(&s->base, NULL);

    expect_refusal(&scalars_desc, "{\"i32\":3000000000}", "i32: out of range for int32");
    expect_refusal(&scalars_desc, "{\"i32\":2.5}", "i32: expected an integer, not a fraction");
    expect_refusal(&scalars_desc, "{\"u32\":-1}", "u32: out of range for uint32");
    expect_refusal(&scalars_desc, "{\"u32\":4294967296}", "u32: out of range for uint32");
    expect_refusal(&scalars_desc, "{\"u64\":\"-1\"}", "u64: out of range for uint64");
    expect_refusal(&scalars_desc, "{\"u64\":\"18446744073709551616\"}",
                   "u64: out of range for uint64");
    expect_refusal(&scalars_desc, "{\"u64\":\"0x10\"}", "u64: expected an integer");
}

LEAK_CHECKED_TEST(scalars, floating_point)
{
    scalars_t *s = scalars_from_text("{\"ratio\":\"NaN\",\"weight\":\"-Infinity\"}");
    cr_expect(isnan(s->ratio));
    cr_expect(isinf(s->weight) && s->weight < 0);
    expect_text(&s->base, "{\"ratio\":\"NaN\",\"weight\":\"-Infinity\"}");
    protobuf_c_message_free_unpacked(&s->base, NULL);

    s = scalars_from_text("{\"ratio\":\"Infinity\",\"weight\":3}");
    expect_text(&s->base, "{\"ratio\":\"Infinity\",\"weight\":3.0}");
    protobuf_c_message_free_unpacked(&s->base, NULL);

    s = scalars_from_text("{\"ratio\":\"-0.25\"}");
    cr_expect_eq(s->ratio, -0.25);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    expect_refusal(&scalars_desc, "{\"weight\":1e39}", "weight: out of range for float");
    expect_refusal(&scalars_desc, "{\"ratio\":\"inf\"}", "ratio: expected a number");
    expect_refusal(&scalars_desc, "{\"ratio\":\"0x1p3\"}", "ratio: expected a number");
    expect_refusal(&scalars_desc, "{\"ratio\":true}", "ratio: expected a number");
}

LEAK_CHECKED_TEST(scalars, booleans)
{
    expect_refusal(&scalars_desc, "{\"flag\":\"true\"}", "flag: expected a boolean");
    expect_refusal(&scalars_desc, "{\"flag\":1}", "flag: expected a boolean");
}

LEAK_CHECKED_TEST(scalars, bytes_as_base64)
{
    scalars_t *s = scalars_from_text("{\"blob\":\"aGVsbG8\"}"); /* padding optional */
    cr_assert_eq(s->blob.len, 5);
    cr_expect_eq(memcmp(s->blob.data, "hello", 5), 0);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    s = scalars_from_text("{\"blob\":\"-_8=\"}"); /* URL-safe alphabet */
    cr_assert_eq(s->blob.len, 2);
    cr_expect_eq(s->blob.data[0], 0xfb);
    cr_expect_eq(s->blob.data[1], 0xff);
    expect_text(&s->base, "{\"blob\":\"+/8=\"}"); /* written in the standard alphabet */
    protobuf_c_message_free_unpacked(&s->base, NULL);

    expect_refusal(&scalars_desc, "{\"blob\":\"a\"}", "blob: invalid base64");
    expect_refusal(&scalars_desc, "{\"blob\":\"a*==\"}", "blob: invalid base64");
    expect_refusal(&scalars_desc, "{\"blob\":\"aGVsbG8==\"}", "blob: invalid base64");
    expect_refusal(&scalars_desc, "{\"blob\":5}", "blob: expected a base64 string");
}

LEAK_CHECKED_TEST(scalars, repeated_and_oneof_refusals)
{
    expect_refusal(&scalars_desc, "{\"tags\":[\"a\",null]}", "tags[1]: expected a string");
    expect_refusal(&scalars_desc, "{\"counts\":\"x\"}", "counts: expected an array");
    expect_refusal(&scalars_desc, "{\"counts\":[1,\"2.5\"]}", "counts[1]: expected an integer");
    expect_refusal(&scalars_desc, "{\"pickName\":\"a\",\"pickNum\":\"1\"}",
                   "pickNum: only one member of a oneof may be set, and pick_name already is");
    expect_refusal(&scalars_desc, "{\"pickName\":\"a\\u0000b\"}",
                   "pickName: contains a NUL character");
}

LEAK_CHECKED_TEST(scalars, key_with_embedded_nul_is_unknown)
{
    json_t *obj = json_object();
    cr_assert_eq(json_object_setn_new(obj, "i32\0x", 5, json_integer(1)), 0);
    char err[128];
    ProtobufCMessage *m = NULL;
    cr_expect_eq(funnel_json_to_message(&scalars_desc, obj, &m, err, sizeof err), FUNNEL_EINVAL);
    cr_expect_null(m);
    cr_expect_str_eq(err, "i32: unknown field of test.Scalars");
    json_decref(obj);
}

LEAK_CHECKED_TEST(scalars, invalid_utf8_is_replaced_on_output)
{
    scalars_t s;
    scalars_init(&s.base);
    s.pick_case = 11;
    s.pick_name = "a\xff"
                  "b";
    expect_text(&s.base, "{\"pickName\":\"a\xef\xbf\xbd"
                         "b\"}");
}

/* ---- a recursive message, to check the nesting bound and long paths ---- */

typedef struct node {
    ProtobufCMessage base;
    struct node *child;
} node_t;

static const ProtobufCMessageDescriptor node_desc;

static const ProtobufCFieldDescriptor node_fields[1] = {
    {"child", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, 0, offsetof(node_t, child),
     &node_desc, NULL, 0, 0, NULL, NULL},
};
static const unsigned node_by_name[1] = {0};
static const ProtobufCIntRange node_ranges[2] = {{1, 0}, {0, 1}};

static void node_init(ProtobufCMessage *m)
{
    memset(m, 0, sizeof(node_t));
    m->descriptor = &node_desc;
}

static const ProtobufCMessageDescriptor node_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Node",
    "Node",
    "Node",
    "test",
    sizeof(node_t),
    1,
    node_fields,
    node_by_name,
    1,
    node_ranges,
    node_init,
    NULL,
    NULL,
    NULL,
};

/* {"child":{"child":...{}}} with depth objects. */
static json_t *nodes_nested(int depth)
{
    json_t *j = json_object();
    for (int i = 1; i < depth; i++) {
        json_t *parent = json_object();
        cr_assert_eq(json_object_set_new(parent, "child", j), 0);
        j = parent;
    }
    return j;
}

LEAK_CHECKED_TEST(json, nesting_is_bounded)
{
    char err[1024];
    ProtobufCMessage *m = NULL;
    json_t *ok = nodes_nested(64);
    cr_assert_eq(funnel_json_to_message(&node_desc, ok, &m, err, sizeof err), 0, "%s", err);
    char *want = json_dumps(ok, JSON_COMPACT);
    expect_text(m, want);
    free(want);
    protobuf_c_message_free_unpacked(m, NULL);
    json_decref(ok);

    /* One deeper is refused; the path (64 "child" keys) is cut at 255 bytes. */
    json_t *deep = nodes_nested(65);
    m = NULL;
    cr_assert_eq(funnel_json_to_message(&node_desc, deep, &m, err, sizeof err), FUNNEL_EINVAL);
    cr_expect_null(m);
    json_decref(deep);
    char path[256] = "child";
    while (strlen(path) + 6 < sizeof path)
        strcat(path, ".child");
    strncat(path, ".child", sizeof path - strlen(path) - 1);
    char expected[1024];
    snprintf(expected, sizeof expected, "%s: messages nested deeper than 64", path);
    cr_expect_str_eq(err, expected);
}
