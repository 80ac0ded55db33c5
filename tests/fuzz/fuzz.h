/* fuzz.h — what the libFuzzer harnesses in tests/fuzz/ share with the replay driver.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput (libFuzzer's entry point). Built with clang
 * and -fsanitize=fuzzer it is a fuzzer (`make fuzz`); built with replay_main.c it feeds every
 * file of its corpus to that function once, under the sanitizers of the test build (`make
 * test`). A harness aborts on a broken invariant so that both builds report it. */
#ifndef FUNNEL_FUZZ_H
#define FUNNEL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "funnel/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed clock of every harness, so that a corpus file always takes the same path. */
#define FUZZ_NOW_MS INT64_C(1700000000000)

/* A broken invariant: libFuzzer reports the abort as a crash and saves the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FUNNEL FUZZ ERROR: %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* One piece of a harness input cut by fuzz_take. */
typedef struct fuzz_piece {
    const uint8_t *data;
    size_t len;
} fuzz_piece_t;

/* Cuts the next piece off *data: up to the next NUL (dropped), or everything left. Returns
 * false when nothing is left. Harness inputs with several fields (headers, frames) are these
 * fields separated by NUL bytes, which keeps the corpus files readable. */
static inline int fuzz_take(const uint8_t **data, size_t *size, fuzz_piece_t *out)
{
    if (!*size)
        return 0;
    size_t n = 0;
    while (n < *size && (*data)[n])
        n++;
    out->data = *data;
    out->len = n;
    size_t used = n < *size ? n + 1 : n;
    *data += used;
    *size -= used;
    return 1;
}

/* Cuts data into at most max frames, each one length byte then that many bytes (the last may
 * be short): the input form of the harnesses of multipart messages. Returns the count. */
static inline size_t fuzz_frames(const uint8_t *data, size_t size, funnel_frame_t *frames,
                                 size_t max)
{
    size_t n = 0;
    while (size && n < max) {
        size_t len = data[0] < size - 1 ? data[0] : size - 1;
        frames[n++] = (funnel_frame_t){data + 1, len};
        data += len + 1;
        size -= len + 1;
    }
    return n;
}

/* A NUL-terminated copy of a piece (NUL bytes inside are kept). NULL on ENOMEM. */
static inline char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        for (size_t i = 0; i < len; i++)
            s[i] = (char)data[i];
        s[len] = '\0';
    }
    return s;
}

/* The packed bytes of env in a heap buffer of exactly *len bytes (the caller frees it). */
static inline uint8_t *fuzz_pack(const funnel_envelope_t *env, size_t *len)
{
    *len = funnel__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    FUZZ_CHECK(buf);
    funnel__v1__envelope__pack(env, buf);
    return buf;
}

#endif
