/* fuzz_replay.c — the replay request funneld's replay socket takes after the routing envelope,
 * funnel_replay_request_parse.
 *
 * Input: frames, each one length byte then that many bytes (the last may be short). Invariant:
 * an accepted request is exactly [replay][8 bytes] naming a sequence SQLite can bind. */
#include "fuzz.h"

#include "funnel/codec.h"
#include "funnel/error.h"

#include <string.h>

#define MAX_FRAMES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    funnel_frame_t frames[MAX_FRAMES] = {{NULL, 0}}; /* gcc -O2 cannot see n bounds the reads */
    size_t n = fuzz_frames(data, size, frames, MAX_FRAMES);
    uint64_t from_seq = UINT64_MAX;
    const char *why = NULL;
    int rc = funnel_replay_request_parse(frames, n, &from_seq, &why);
    if (rc == 0) {
        FUZZ_CHECK(n == 2 && frames[0].len == 6 && !memcmp(frames[0].data, "replay", 6));
        FUZZ_CHECK(frames[1].len == 8 && from_seq == funnel_seq_decode(frames[1].data));
        FUZZ_CHECK(from_seq <= (uint64_t)INT64_MAX);
    } else {
        FUZZ_CHECK(rc == FUNNEL_EINVAL && why && why[0] && from_seq == UINT64_MAX);
    }
    return 0;
}
