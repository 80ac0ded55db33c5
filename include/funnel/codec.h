/* codec.h — topics, decoding and validation of ingest Envelopes.
 *
 * The codec is pure: no sockets, no clock (the caller passes now_ms), no allocation beyond
 * the decoded message it returns. Every refusal carries a stable reason code (for counters)
 * and a human sentence naming the field at fault (for the sender and the log). */
#ifndef FUNNEL_CODEC_H
#define FUNNEL_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "funnel/v1/funnel.pb-c.h"

typedef Funnel__V1__Envelope funnel_envelope_t;
typedef Funnel__V1__Envelope__BodyCase funnel_body_t;

#define FUNNEL_ID_MAX    128 /* bytes, for event_id and every entity id */
#define FUNNEL_TOPIC_MAX 64  /* bytes, for a topic frame */

/* Why an ingest message was refused. Stable order: used as counter indexes. */
typedef enum funnel_refusal_code {
    FUNNEL_REFUSE_NONE = 0,
    FUNNEL_REFUSE_OVERSIZE,       /* larger than max_message_bytes */
    FUNNEL_REFUSE_FRAMES,         /* wrong number of frames */
    FUNNEL_REFUSE_UNKNOWN_TOPIC,  /* topic is not an ingest topic */
    FUNNEL_REFUSE_DECODE,         /* bytes are not a protobuf Envelope */
    FUNNEL_REFUSE_TOPIC_MISMATCH, /* body does not match the topic */
    FUNNEL_REFUSE_MISSING_FIELD,  /* a required field is empty */
    FUNNEL_REFUSE_BAD_ID,         /* an id is over FUNNEL_ID_MAX or has control bytes */
    FUNNEL_REFUSE_BAD_TIME,       /* occurred_at_ms absent, negative or too far ahead */
    FUNNEL_REFUSE_BAD_MONEY,      /* amount not positive */
    FUNNEL_REFUSE_BAD_CURRENCY,   /* not an ISO 4217 code */
    FUNNEL_REFUSE_BAD_ENUM,       /* enum value unset or unknown */
    FUNNEL_REFUSE_BAD_UTF8,       /* a string field is not valid UTF-8 */
    FUNNEL_REFUSE_OVERFLOW,       /* valid, but an engine's sum would not fit in int64 */
    FUNNEL_REFUSE_ENGINE,         /* valid, but an engine cannot apply it (router.h) */
    FUNNEL_REFUSE_FORBIDDEN,      /* the authenticated client may not publish this topic */
    FUNNEL_REFUSE_COUNT_
} funnel_refusal_code_t;

typedef struct funnel_refusal {
    funnel_refusal_code_t code;
    char text[192]; /* e.g. "missing field: lead_created.lead_id" */
} funnel_refusal_t;

/* Short snake_case name of a refusal code, for metrics labels and dead-letter rows. */
const char *funnel_refusal_name(funnel_refusal_code_t code);

/* Topic name of a body case ("lead.created"), or NULL for an unknown case. Static string. */
const char *funnel_topic_name(funnel_body_t body);

/* Looks up an ingest topic by name (not NUL-terminated). Returns 0 and sets *out, or
 * FUNNEL_ENOTFOUND. Output-only topics (sla.*, ...) are not ingest topics. */
int funnel_topic_lookup(const char *name, size_t len, funnel_body_t *out);

/* Limits the codec enforces. */
typedef struct funnel_codec_limits {
    size_t max_message_bytes; /* refuse larger envelopes; 0 means no limit */
    int64_t max_future_ms;    /* refuse occurred_at_ms later than now + this */
} funnel_codec_limits_t;

/* Decodes and validates one ingest message. On success returns 0 and *out owns the envelope
 * (free with funnel_envelope_free). On refusal returns FUNNEL_EINVAL, fills *why and leaves
 * *out NULL; on allocation failure returns FUNNEL_ENOMEM. */
int funnel_codec_decode(const funnel_codec_limits_t *limits, const char *topic, size_t topic_len,
                        const uint8_t *data, size_t len, int64_t now_ms, funnel_envelope_t **out,
                        funnel_refusal_t *why);

/* Memory for decoded envelopes that is given back all at once: protobuf-c otherwise makes an
 * allocation for every field of every envelope, and later as many frees. Zero-initialised, it is
 * empty and ready. The struct may be copied or moved while it holds envelopes (their memory is
 * elsewhere); funnel_envelope_arena_clear() frees them all and leaves it empty again. */
typedef struct funnel_envelope_arena {
    struct funnel_arena_block *blocks; /* newest first; NULL when empty */
} funnel_envelope_arena_t;

/* funnel_codec_decode with the envelope's memory taken from arena: *out is valid until the
 * arena is cleared and must not be passed to funnel_envelope_free. */
int funnel_codec_decode_in(funnel_envelope_arena_t *arena, const funnel_codec_limits_t *limits,
                           const char *topic, size_t topic_len, const uint8_t *data, size_t len,
                           int64_t now_ms, funnel_envelope_t **out, funnel_refusal_t *why);
void funnel_envelope_arena_clear(funnel_envelope_arena_t *arena);

/* Validates an already-decoded envelope for the given topic. 0 or FUNNEL_EINVAL with *why. */
int funnel_codec_validate(const funnel_codec_limits_t *limits, funnel_body_t topic,
                          const funnel_envelope_t *env, int64_t now_ms, funnel_refusal_t *why);

/* The body message of an envelope (borrowed from it), or NULL if none is set. */
const ProtobufCMessage *funnel_envelope_body(const funnel_envelope_t *env);

/* The length of the valid UTF-8 sequence (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF) that starts s[0..len), or 0 when none does (len 0 included). proto3 `string` fields
 * must be valid UTF-8: the codec refuses others, and writers that show stored bytes use this to
 * tell valid text from bytes to escape. */
size_t funnel_utf8_seq_len(const char *s, size_t len);

/* The length of the longest prefix of s[0..len) that is valid UTF-8: len when all of it is. */
size_t funnel_utf8_valid_len(const char *s, size_t len);

/* Frees a decoded envelope; NULL is allowed. Sets *env to NULL. */
void funnel_envelope_free(funnel_envelope_t **env);

/* 8-byte big-endian sequence numbers, as in output frames. */
void funnel_seq_encode(uint64_t seq, uint8_t out[8]);
uint64_t funnel_seq_decode(const uint8_t in[8]);

/* One frame of a multipart message, borrowed from whoever received it. */
typedef struct funnel_frame {
    const void *data;
    size_t len;
} funnel_frame_t;

/* Parses a replay request, the n frames after the routing envelope:
 * [replay][from_seq: 8 bytes big-endian], from_seq at most INT64_MAX (sequences are SQLite
 * integers). Returns 0 with *from_seq, or FUNNEL_EINVAL with *why, a static sentence to send
 * back. Only frames[0..n) are read, and only when n is 2. */
int funnel_replay_request_parse(const funnel_frame_t *frames, size_t n, uint64_t *from_seq,
                                const char **why);

#endif
