/* fuzz_json.c — the proto3 JSON mapper (adapters/lib/json.c) as `funnelctl publish` and
 * funnel-webhook use it: funnel_json_envelope_build, then funnel_json_from_message.
 *
 * Input: one byte choosing the topic (its body case), then the JSON text. Invariant: an
 * Envelope built from JSON, written back as JSON, builds the same Envelope again. */
#include "fuzz.h"

#include "funnel/codec.h"
#include "funnel/json.h"

#include <string.h>

static void check_round_trip(funnel_body_t topic, const funnel_envelope_t *env)
{
    json_t *obj = funnel_json_from_message(&env->base);
    FUZZ_CHECK(obj);
    char *text = json_dumps(obj, JSON_COMPACT);
    FUZZ_CHECK(text);
    funnel_envelope_t *again = NULL;
    char err[256];
    int rc = funnel_json_envelope_build(topic, text, FUZZ_NOW_MS, &again, err, sizeof err);
    if (rc)
        fprintf(stderr, "written JSON refused: %s: %s\n", err, text);
    FUZZ_CHECK(rc == 0);
    size_t a_len, b_len;
    uint8_t *a = fuzz_pack(env, &a_len), *b = fuzz_pack(again, &b_len);
    if (a_len != b_len || memcmp(a, b, a_len))
        fprintf(stderr, "JSON round trip changed the envelope: %s\n", text);
    FUZZ_CHECK(a_len == b_len && memcmp(a, b, a_len) == 0);
    free(a);
    free(b);
    funnel_envelope_free(&again);
    free(text);
    json_decref(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    funnel_body_t topic = (funnel_body_t)data[0];
    const char *name = funnel_topic_name(topic);
    funnel_body_t found;
    if (!name || funnel_topic_lookup(name, strlen(name), &found) || found != topic)
        return 0; /* not an ingest topic: nothing takes JSON for it */
    char *text = fuzz_strndup(data + 1, size - 1);
    FUZZ_CHECK(text);
    funnel_envelope_t *env = NULL;
    char err[256];
    if (funnel_json_envelope_build(topic, text, FUZZ_NOW_MS, &env, err, sizeof err) == 0)
        check_round_trip(topic, env);
    else
        FUZZ_CHECK(env == NULL && err[0]);
    funnel_envelope_free(&env);
    free(text);
    return 0;
}
