/* codec.c — ingest topics, decoding and validation.
 *
 * Validation is driven by the protobuf-c descriptors plus one small table per topic naming the
 * required fields and which strings are ids, so adding a topic is one table row, not new code. */
#include "funnel/codec.h"
#include "funnel/error.h"
#include "funnel/money.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX     1024           /* bytes, for free-text fields (reason, campaign, ...) */
#define EPOCH_MIN_MS 946684800000LL /* 2000-01-01: anything earlier is a unit mistake */

/* One ingest topic: its name, its body, the fields that must be set and the ids. */
typedef struct topic_rule {
    const char *name;
    funnel_body_t body;
    const char *required[4]; /* fields that must be non-empty / non-zero / present */
    const char *ids[6];      /* string fields held to FUNNEL_ID_MAX */
} topic_rule_t;

static const topic_rule_t topic_rules[] = {
    {"lead.created",
     FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED,
     {"lead_id"},
     {"lead_id", "owner", "segment"}},
    {"lead.touched", FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED, {"lead_id", "touch"}, {"lead_id"}},
    {"lead.qualified",
     FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED,
     {"lead_id", "stage"},
     {"lead_id", "owner"}},
    {"lead.contacted",
     FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED,
     {"lead_id", "rep"},
     {"lead_id", "rep"}},
    {"lead.closed", FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED, {"lead_id", "outcome"}, {"lead_id"}},
    {"client.handed_off",
     FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF,
     {"client_id", "lead_id", "from_rep"},
     {"client_id", "lead_id", "from_rep", "account_manager"}},
    {"payment.received",
     FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED,
     {"payment_id", "client_id", "amount"},
     {"payment_id", "client_id"}},
    {"payment.refunded",
     FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED,
     {"refund_id", "payment_id", "client_id", "amount"},
     {"refund_id", "payment_id", "client_id"}},
    {"commission.paid",
     FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID,
     {"payout_id", "rep", "through_ms"},
     {"payout_id", "rep"}},
    {"escalation.acknowledged",
     FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED,
     {"sla_id"},
     {"sla_id", "by"}},
    {"request.opened",
     FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED,
     {"request_id", "from_team", "to_team", "kind"},
     {"request_id", "from_team", "to_team", "kind", "queue", "owner"}},
    {"request.assigned",
     FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED,
     {"request_id", "owner"},
     {"request_id", "owner"}},
    {"request.answered",
     FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED,
     {"request_id"},
     {"request_id", "by"}},
    {"request.closed",
     FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED,
     {"request_id", "resolution"},
     {"request_id"}},
    {"request.reopened",
     FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED,
     {"request_id"},
     {"request_id"}},
};
#define TOPIC_RULES (sizeof topic_rules / sizeof topic_rules[0])

static const char *const refusal_names[FUNNEL_REFUSE_COUNT_] = {
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

const char *funnel_refusal_name(funnel_refusal_code_t code)
{
    if ((unsigned)code >= FUNNEL_REFUSE_COUNT_)
        return "unknown";
    return refusal_names[code];
}

static const topic_rule_t *rule_by_body(funnel_body_t body)
{
    for (size_t i = 0; i < TOPIC_RULES; i++)
        if (topic_rules[i].body == body)
            return &topic_rules[i];
    return NULL;
}

const char *funnel_topic_name(funnel_body_t body)
{
    const topic_rule_t *rule = rule_by_body(body);
    return rule ? rule->name : NULL;
}

int funnel_topic_lookup(const char *name, size_t len, funnel_body_t *out)
{
    for (size_t i = 0; i < TOPIC_RULES; i++) {
        if (strlen(topic_rules[i].name) == len && memcmp(topic_rules[i].name, name, len) == 0) {
            *out = topic_rules[i].body;
            return 0;
        }
    }
    return FUNNEL_ENOTFOUND;
}

static int refuse(funnel_refusal_t *why, funnel_refusal_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(funnel_refusal_t *why, funnel_refusal_code_t code, const char *fmt, ...)
{
    if (why) {
        va_list ap;
        why->code = code;
        va_start(ap, fmt);
        vsnprintf(why->text, sizeof why->text, fmt, ap);
        va_end(ap);
    }
    return FUNNEL_EINVAL;
}

static bool name_in(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n && list[i]; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

/* Context of one validation walk: limits, clock and where we are, for messages. */
typedef struct walk {
    const funnel_codec_limits_t *limits;
    int64_t now_ms;
    const topic_rule_t *rule; /* NULL below the body's top level */
    funnel_refusal_t *why;
} walk_t;

/* Where a field sits ("lead_created.touches[1].term"), as a chain from the field up to the top
 * level. It is turned into text only when a refusal names it: most messages are valid, and
 * formatting the path of every field they carry used to cost more than checking it. */
typedef struct field_path {
    const struct field_path *parent; /* NULL at the top level */
    const char *name;
    long index; /* position within a repeated field, or -1 */
} field_path_t;

#define PATH_TEXT_MAX 128 /* bytes of a path in a refusal; longer ones are cut */

/* Writes p as dotted text into out[0..len) and returns out. */
static const char *path_text(const field_path_t *p, char *out, size_t len)
{
    if (p->parent)
        path_text(p->parent, out, len);
    else
        out[0] = '\0';
    size_t n = strlen(out);
    snprintf(out + n, len - n, "%s%s", n ? "." : "", p->name);
    n = strlen(out);
    if (p->index >= 0)
        snprintf(out + n, len - n, "[%ld]", p->index);
    return out;
}

static int check_time(const walk_t *w, const field_path_t *p, int64_t ms)
{
    char at[PATH_TEXT_MAX];
    /* An absent time is a time problem, not a generic missing field: codec.h files "absent,
     * negative or too far ahead" under BAD_TIME, and counters must agree with the header. */
    if (ms == 0)
        return refuse(w->why, FUNNEL_REFUSE_BAD_TIME, "missing field: %s",
                      path_text(p, at, sizeof at));
    if (ms < EPOCH_MIN_MS || ms > w->now_ms + w->limits->max_future_ms)
        return refuse(w->why, FUNNEL_REFUSE_BAD_TIME,
                      "%s: %lld ms is not a plausible time (milliseconds since 1970, not in the "
                      "future)",
                      path_text(p, at, sizeof at), (long long)ms);
    return 0;
}

static int check_string(const walk_t *w, const field_path_t *p, const char *s, bool is_id)
{
    char at[PATH_TEXT_MAX];
    size_t len = strlen(s);
    size_t max = is_id ? FUNNEL_ID_MAX : TEXT_MAX;
    if (len > max)
        return refuse(w->why, FUNNEL_REFUSE_BAD_ID, "%s: %zu bytes, at most %zu allowed",
                      path_text(p, at, sizeof at), len, max);
    for (size_t i = 0; is_id && i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return refuse(w->why, FUNNEL_REFUSE_BAD_ID, "%s: control character in an id",
                          path_text(p, at, sizeof at));
    return 0;
}

static int check_money(const walk_t *w, const field_path_t *p, const Funnel__V1__Money *m)
{
    char at[PATH_TEXT_MAX];
    if (m->minor <= 0)
        return refuse(w->why, FUNNEL_REFUSE_BAD_MONEY,
                      "%s.minor: %lld is not a positive amount of minor units",
                      path_text(p, at, sizeof at), (long long)m->minor);
    if (!funnel_currency_valid(m->currency))
        return refuse(w->why, FUNNEL_REFUSE_BAD_CURRENCY,
                      "%s.currency: '%.8s' is not an ISO 4217 code", path_text(p, at, sizeof at),
                      m->currency);
    return 0;
}

static int check_message(const walk_t *w, const field_path_t *p, const ProtobufCMessage *msg);

/* Checks one singular field found at p; `set` tells whether it holds a non-default value. */
static int check_field(const walk_t *w, const field_path_t *p, const ProtobufCFieldDescriptor *f,
                       const void *member, bool *set)
{
    char at[PATH_TEXT_MAX];
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        *set = s && *s;
        bool is_id = w->rule && name_in(f->name, w->rule->ids, 6);
        return *set ? check_string(w, p, s, is_id) : 0;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)member;
        *set = v != 0;
        if (*set && !protobuf_c_enum_descriptor_get_value(f->descriptor, v))
            return refuse(w->why, FUNNEL_REFUSE_BAD_ENUM, "%s: unknown value %d",
                          path_text(p, at, sizeof at), v);
        return 0;
    }
    case PROTOBUF_C_TYPE_INT64: {
        int64_t v = *(const int64_t *)member;
        *set = v != 0;
        /* A payout through a negative time would pay nothing while taking its payout_id. */
        if (v < 0 && strcmp(f->name, "through_ms") == 0)
            return refuse(w->why, FUNNEL_REFUSE_BAD_TIME, "%s: %lld is negative",
                          path_text(p, at, sizeof at), (long long)v);
        /* A touch without at_ms happened when its event did (the engines read 0 so). */
        return v && strcmp(f->name, "at_ms") == 0 ? check_time(w, p, v) : 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
        *set = sub != NULL;
        if (!sub)
            return 0;
        if (sub->descriptor == &funnel__v1__money__descriptor)
            return check_money(w, p, (const Funnel__V1__Money *)sub);
        walk_t inner = *w;
        inner.rule = NULL;
        return check_message(&inner, p, sub);
    }
    default:
        *set = true;
        return 0;
    }
}

/* Walks every field of msg (found at p); at the body's top level also enforces the topic's
 * required list. */
static int check_message(const walk_t *w, const field_path_t *p, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)msg + f->offset;
        field_path_t sub = {p, f->name, -1};
        bool set = false;
        int rc;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)msg + f->quantifier_offset);
            for (size_t k = 0; k < n; k++) {
                size_t width = f->type == PROTOBUF_C_TYPE_MESSAGE  ? sizeof(void *)
                               : f->type == PROTOBUF_C_TYPE_STRING ? sizeof(char *)
                                                                   : sizeof(int64_t);
                const void *elem = *(char *const *)base + k * width;
                sub.index = (long)k;
                if ((rc = check_field(w, &sub, f, elem, &set)))
                    return rc;
            }
            continue;
        }
        if ((rc = check_field(w, &sub, f, base, &set)))
            return rc;
        if (!set && w->rule && name_in(f->name, w->rule->required, 4)) {
            char at[PATH_TEXT_MAX];
            return refuse(w->why,
                          f->type == PROTOBUF_C_TYPE_ENUM ? FUNNEL_REFUSE_BAD_ENUM
                                                          : FUNNEL_REFUSE_MISSING_FIELD,
                          "missing field: %s", path_text(&sub, at, sizeof at));
        }
    }
    return 0;
}

/* Reads one base-128 varint at *pos; false if it runs past len or past 64 bits. */
static bool wire_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Refuses a NUL byte inside any string field of the wire bytes p[0..len) of a message d, and
 * field number 0 anywhere the scan reaches.
 *
 * protobuf-c copies a string's bytes verbatim and appends a NUL, so "evt-1\0a" decodes to a C
 * string every reader sees as "evt-1": distinct ids collapse into one (the second event is
 * dropped as a duplicate) and "\0evt" reads as a missing id. The decoded message cannot show
 * this because the length is gone, so the bytes are scanned, every string at every depth,
 * using the descriptors to know which fields are strings and which are sub-messages. Runs
 * only on bytes protobuf-c already accepted: anything malformed just ends the scan. Recursion
 * depth is bounded by the schema, which has no recursive messages. */
static int check_wire_strings(funnel_refusal_t *why, const field_path_t *path,
                              const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len)
{
    size_t seen[32] = {0}; /* elements met so far per repeated field, for "touches[1]" */
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, n;
        if (!wire_varint(p, len, &pos, &key))
            return 0;
        /* protobuf-c refuses field number 0 in a one-byte tag but keeps it, as an unknown
         * field, from a longer one (0x85 0x00), which it packs again as the one byte it
         * refuses: a re-encoded envelope would not decode. Such a tag ends in a zero byte,
         * so this scan always meets it. */
        if (key >> 3 == 0)
            return refuse(why, FUNNEL_REFUSE_DECODE, "not a funnel.v1.Envelope (field number 0)");
        switch (key & 7) {
        case 0:
            if (!wire_varint(p, len, &pos, &n))
                return 0;
            continue;
        case 1:
            if (len - pos < 8)
                return 0;
            pos += 8;
            continue;
        case 5:
            if (len - pos < 4)
                return 0;
            pos += 4;
            continue;
        case 2:
            break;
        default:
            return 0;
        }
        if (!wire_varint(p, len, &pos, &n) || n > len - pos)
            return 0;
        const uint8_t *value = p + pos;
        pos += (size_t)n;
        const ProtobufCFieldDescriptor *f =
            (key >> 3) <= 0x1fffffff
                ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                : NULL;
        if (!f || (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE))
            continue; /* unknown fields and bytes are never read as C strings */
        size_t idx = (size_t)(f - d->fields);
        field_path_t sub = {path, f->name, -1};
        if (f->label == PROTOBUF_C_LABEL_REPEATED && idx < sizeof seen / sizeof seen[0])
            sub.index = (long)seen[idx]++;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            char at[PATH_TEXT_MAX];
            if (memchr(value, 0, (size_t)n))
                return refuse(why, FUNNEL_REFUSE_BAD_ID, "%s: NUL byte inside the string",
                              path_text(&sub, at, sizeof at));
            continue;
        }
        int rc = check_wire_strings(why, &sub, f->descriptor, value, (size_t)n);
        if (rc)
            return rc;
    }
    return 0;
}

size_t funnel_utf8_seq_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = len ? p[0] : 0x80;
    size_t n = c < 0x80                 ? 1
               : c >= 0xC2 && c <= 0xDF ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (!n || n > len)
        return 0;
    /* The second byte's range excludes overlong forms (E0, F0), surrogates (ED) and code
     * points past U+10FFFF (F4); the later ones are plain continuation bytes. */
    unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (n > 1 && (p[1] < lo || p[1] > hi))
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

size_t funnel_utf8_valid_len(const char *s, size_t len)
{
    size_t at = 0, n;
    while (at < len && (n = funnel_utf8_seq_len(s + at, len - at)))
        at += n;
    return at;
}

/* Refuses a string field of msg (found at p; NULL for the envelope itself) that is not valid
 * UTF-8, at any depth. proto3 requires it and protobuf-c does not check: such a message was
 * stored and republished, and Google's runtimes refuse to parse it, so every conforming
 * subscriber stalled at it. The walk follows the descriptors, so no field (envelope, body,
 * touches, money) can be forgotten, including ones added to the schema later. The reason
 * gives the field and byte offset, never the bytes, which would make the log line and the
 * dead letter's detail invalid text in turn. */
static int check_utf8(funnel_refusal_t *why, const field_path_t *p, const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)msg + f->offset;
        bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        /* A oneof's members share storage: only the member set is what the type says. */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)msg + f->quantifier_offset) != f->id)
            continue;
        size_t n = repeated ? *(const size_t *)((const char *)msg + f->quantifier_offset) : 1;
        const void *const *elems =
            repeated ? *(const void *const *const *)base : (const void *const *)base;
        for (size_t k = 0; k < n; k++) {
            field_path_t sub = {p, f->name, repeated ? (long)k : -1};
            int rc = 0;
            if (!elems[k])
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                rc = check_utf8(why, &sub, elems[k]);
            } else {
                const char *s = elems[k];
                size_t len = strlen(s), at = funnel_utf8_valid_len(s, len);
                char where[PATH_TEXT_MAX];
                if (at < len)
                    rc = refuse(why, FUNNEL_REFUSE_BAD_UTF8, "%s: not valid UTF-8 at byte %zu",
                                path_text(&sub, where, sizeof where), at);
            }
            if (rc)
                return rc;
        }
    }
    return 0;
}

const ProtobufCMessage *funnel_envelope_body(const funnel_envelope_t *env)
{
    const ProtobufCMessageDescriptor *d = env->base.descriptor;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(d, (unsigned)env->body_case);
    if (!f)
        return NULL;
    return *(ProtobufCMessage *const *)((const char *)env + f->offset);
}

int funnel_codec_validate(const funnel_codec_limits_t *limits, funnel_body_t topic,
                          const funnel_envelope_t *env, int64_t now_ms, funnel_refusal_t *why)
{
    const topic_rule_t *rule = rule_by_body(topic);
    if (!rule)
        return refuse(why, FUNNEL_REFUSE_UNKNOWN_TOPIC, "not an ingest topic");
    if (env->body_case != topic) {
        const char *got = funnel_topic_name(env->body_case);
        return refuse(why, FUNNEL_REFUSE_TOPIC_MISMATCH, "topic %s carries a %s body", rule->name,
                      got ? got : "missing");
    }
    /* Only a hand-built envelope can name a body case yet hold no body; unpack never does. */
    const ProtobufCMessage *body = funnel_envelope_body(env);
    if (!body)
        return refuse(why, FUNNEL_REFUSE_TOPIC_MISMATCH, "topic %s carries no body", rule->name);
    int rc = check_utf8(why, NULL, &env->base);
    if (rc)
        return rc;
    walk_t w = {.limits = limits, .now_ms = now_ms, .rule = NULL, .why = why};
    size_t id_len = strlen(env->event_id);
    if (id_len == 0)
        return refuse(why, FUNNEL_REFUSE_MISSING_FIELD, "missing field: event_id");
    if (id_len > FUNNEL_ID_MAX)
        return refuse(why, FUNNEL_REFUSE_BAD_ID, "event_id: %zu bytes, at most %d allowed", id_len,
                      FUNNEL_ID_MAX);
    static const field_path_t event_id = {NULL, "event_id", -1}, source = {NULL, "source", -1},
                              occurred = {NULL, "occurred_at_ms", -1};
    if ((rc = check_string(&w, &event_id, env->event_id, true)) ||
        (rc = check_string(&w, &source, env->source, true)) ||
        (rc = check_time(&w, &occurred, env->occurred_at_ms)))
        return rc;
    const ProtobufCFieldDescriptor *bf =
        protobuf_c_message_descriptor_get_field(env->base.descriptor, (unsigned)env->body_case);
    field_path_t top = {NULL, bf->name, -1};
    w.rule = rule;
    return check_message(&w, &top, body);
}

/* funnel_codec_decode with the envelope's memory from alloc (NULL: malloc). */
static int decode(ProtobufCAllocator *alloc, const funnel_codec_limits_t *limits, const char *topic,
                  size_t topic_len, const uint8_t *data, size_t len, int64_t now_ms,
                  funnel_envelope_t **out, funnel_refusal_t *why)
{
    funnel_body_t body;
    *out = NULL;
    if (limits->max_message_bytes && len > limits->max_message_bytes)
        return refuse(why, FUNNEL_REFUSE_OVERSIZE,
                      "message of %zu bytes exceeds the %zu byte limit", len,
                      limits->max_message_bytes);
    if (funnel_topic_lookup(topic, topic_len, &body))
        return refuse(why, FUNNEL_REFUSE_UNKNOWN_TOPIC, "unknown topic '%.*s'",
                      (int)(topic_len > FUNNEL_TOPIC_MAX ? FUNNEL_TOPIC_MAX : topic_len), topic);
    funnel_envelope_t *env = funnel__v1__envelope__unpack(alloc, len, data);
    if (!env)
        return refuse(why, FUNNEL_REFUSE_DECODE,
                      "not a funnel.v1.Envelope (protobuf decode failed)");
    /* A NUL inside a string is a zero byte of data, and most messages hold none at all (proto3
     * omits zero values and a varint's last byte is non-zero): scan only when there is one. */
    bool zero = len && memchr(data, 0, len);
    int rc = zero ? check_wire_strings(why, NULL, env->base.descriptor, data, len) : 0;
    if (!rc)
        rc = funnel_codec_validate(limits, body, env, now_ms, why);
    if (rc) {
        funnel__v1__envelope__free_unpacked(env, alloc);
        return rc;
    }
    *out = env;
    return 0;
}

int funnel_codec_decode(const funnel_codec_limits_t *limits, const char *topic, size_t topic_len,
                        const uint8_t *data, size_t len, int64_t now_ms, funnel_envelope_t **out,
                        funnel_refusal_t *why)
{
    return decode(NULL, limits, topic, topic_len, data, len, now_ms, out, why);
}

/* One block of an envelope arena; allocations are carved from data[] front to back. */
struct funnel_arena_block {
    struct funnel_arena_block *next; /* the block filled before this one */
    size_t used, size;               /* bytes of data[] */
    max_align_t data[];
};

#define ARENA_ALIGN sizeof(max_align_t)
#define ARENA_BLOCK 1024 /* bytes: a typical envelope decodes to about 3.5 times its wire size */

/* protobuf-c's alloc callback for an arena: a bump allocation, a new block when full. */
static void *arena_alloc(void *arg, size_t size)
{
    funnel_envelope_arena_t *arena = arg;
    struct funnel_arena_block *b = arena->blocks;
    size_t need = (size + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (need < size) /* wrapped around */
        return NULL;
    if (!b || b->size - b->used < need) {
        size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        *b = (struct funnel_arena_block){arena->blocks, 0, cap};
        arena->blocks = b;
    }
    void *p = (unsigned char *)b->data + b->used;
    b->used += need;
    return p;
}

/* protobuf-c's free callback: memory goes back only with the whole arena. */
static void arena_free(void *arg, void *p)
{
    (void)arg;
    (void)p;
}

int funnel_codec_decode_in(funnel_envelope_arena_t *arena, const funnel_codec_limits_t *limits,
                           const char *topic, size_t topic_len, const uint8_t *data, size_t len,
                           int64_t now_ms, funnel_envelope_t **out, funnel_refusal_t *why)
{
    ProtobufCAllocator alloc = {arena_alloc, arena_free, arena};
    return decode(&alloc, limits, topic, topic_len, data, len, now_ms, out, why);
}

void funnel_envelope_arena_clear(funnel_envelope_arena_t *arena)
{
    while (arena->blocks) {
        struct funnel_arena_block *b = arena->blocks;
        arena->blocks = b->next;
        free(b);
    }
}

void funnel_envelope_free(funnel_envelope_t **env)
{
    if (env && *env) {
        funnel__v1__envelope__free_unpacked(*env, NULL);
        *env = NULL;
    }
}

void funnel_seq_encode(uint64_t seq, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(seq & 0xff);
        seq >>= 8;
    }
}

uint64_t funnel_seq_decode(const uint8_t in[8])
{
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++)
        seq = (seq << 8) | in[i];
    return seq;
}

int funnel_replay_request_parse(const funnel_frame_t *frames, size_t n, uint64_t *from_seq,
                                const char **why)
{
    if (n != 2 || frames[0].len != 6 || memcmp(frames[0].data, "replay", 6) != 0 ||
        frames[1].len != 8) {
        *why = "expected [replay][from_seq: 8 bytes big-endian]";
        return FUNNEL_EINVAL;
    }
    uint64_t seq = funnel_seq_decode(frames[1].data);
    /* A larger one would be bound as a negative number. */
    if (seq > (uint64_t)INT64_MAX) {
        *why = "from_seq out of range: at most 2^63-1";
        return FUNNEL_EINVAL;
    }
    *from_seq = seq;
    return 0;
}
