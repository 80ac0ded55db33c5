/* json.h — the proto3 JSON mapping for any protobuf-c message, driven by its descriptor.
 *
 * One generic mapper serves every message: funnelctl, the webhook bridge and the tests use it.
 * Follows the proto3 JSON rules: lowerCamelCase names on output, both lowerCamelCase and the
 * original field names accepted on input; int64/uint64 written as decimal strings, read from
 * strings or integers; enums written as names, read from names or numbers; repeated fields
 * are arrays; a oneof member is a field of its parent; unknown fields are an error; fields at
 * their default value are omitted on output. Not thread-safe per call beyond jansson's rules. */
#ifndef FUNNEL_JSON_H
#define FUNNEL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "funnel/codec.h"

/* Builds a message of type desc from a JSON object. On success returns 0 and *out owns the
 * message (free with protobuf_c_message_free_unpacked(*out, NULL)). On a mapping error returns
 * FUNNEL_EINVAL and writes a sentence naming the JSON path at fault into err (e.g.
 * "touches[1].atMs: expected an integer"); FUNNEL_ENOMEM on allocation failure. */
int funnel_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *obj,
                           ProtobufCMessage **out, char *err, size_t err_len);

/* Returns a new JSON object for msg (caller owns the reference), or NULL on ENOMEM. */
json_t *funnel_json_from_message(const ProtobufCMessage *msg);

/* Builds the Envelope of an ingest topic from user JSON, as `funnelctl publish` and the webhook
 * bridge take it. The JSON is either the body message itself, optionally with the envelope keys
 * "eventId"/"event_id", "occurredAtMs"/"occurred_at_ms" and "source" beside the body's fields,
 * or a whole Envelope whose body member matches the topic. When absent, event_id is generated
 * (a UUIDv7 from now_ms and random bytes) and occurred_at_ms is now_ms. The result is not
 * validated beyond the mapping: funneld validates. Same return contract as
 * funnel_json_to_message; *out is freed with funnel_envelope_free. */
int funnel_json_envelope_build(funnel_body_t topic, const char *json_text, int64_t now_ms,
                               funnel_envelope_t **out, char *err, size_t err_len);

/* Writes a UUIDv7 (RFC 9562) for now_ms into out as 36 characters plus NUL. Randomness from
 * getrandom(2). Returns 0 or FUNNEL_EIO. */
int funnel_uuid7(int64_t now_ms, char out[37]);

#endif
