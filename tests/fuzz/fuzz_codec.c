/* fuzz_codec.c — the ingest decoder: funnel_codec_decode (topic lookup, protobuf decode, wire
 * string checks, funnel_codec_validate) on the malloc and the arena paths.
 *
 * Input: the topic frame, a NUL, then the envelope frame (any bytes). Invariants: both paths
 * agree, and an accepted envelope encoded again is accepted again. funneld republishes input as
 * received today, but an envelope re-encoded after decoding (its source replaced by the
 * authenticated client's name, as issue 10 plans) must still reach subscribers decodable. */
#include "fuzz.h"

#include "funnel/codec.h"

static const funnel_codec_limits_t limits = {256 * 1024, 24 * 3600 * 1000};

/* A re-encoded envelope must pass what the original passed. */
static void check_repack(const fuzz_piece_t *topic, const funnel_envelope_t *env)
{
    size_t len;
    uint8_t *buf = fuzz_pack(env, &len);
    funnel_envelope_t *again = NULL;
    funnel_refusal_t why;
    int rc = funnel_codec_decode(&limits, (const char *)topic->data, topic->len, buf, len,
                                 FUZZ_NOW_MS, &again, &why);
    if (rc)
        fprintf(stderr, "repacked envelope refused: %s\n", why.text);
    FUZZ_CHECK(rc == 0);
    funnel_envelope_free(&again);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_piece_t topic;
    if (!fuzz_take(&data, &size, &topic))
        return 0;
    funnel_envelope_t *env = NULL, *in_arena = NULL;
    funnel_refusal_t why, why_arena;
    int rc = funnel_codec_decode(&limits, (const char *)topic.data, topic.len, data, size,
                                 FUZZ_NOW_MS, &env, &why);
    funnel_envelope_arena_t arena = {0};
    int rc_arena = funnel_codec_decode_in(&arena, &limits, (const char *)topic.data, topic.len,
                                          data, size, FUZZ_NOW_MS, &in_arena, &why_arena);
    FUZZ_CHECK(rc == rc_arena);
    FUZZ_CHECK((env == NULL) == (rc != 0) && (in_arena == NULL) == (rc_arena != 0));
    if (rc)
        FUZZ_CHECK(why.code == why_arena.code && why.code != FUNNEL_REFUSE_NONE);
    else
        check_repack(&topic, env);
    funnel_envelope_arena_clear(&arena);
    funnel_envelope_free(&env);
    return 0;
}
