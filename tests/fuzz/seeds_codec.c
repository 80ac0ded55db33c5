/* seeds_codec.c — makes the fuzz_codec seed corpus from the fuzz_json one, so the envelope seeds
 * are the JSON seeds as funneld receives them: [topic] NUL [packed Envelope].
 *
 *   fuzz_seeds_codec tests/fuzz/corpus/json tests/fuzz/corpus/codec
 *
 * Each JSON seed is one byte (the topic's body case) then the JSON text; one that does not build
 * an Envelope is skipped with a note. */
#include "funnel/codec.h"
#include "funnel/json.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEEDS_NOW_MS INT64_C(1700000000000)

/* Writes [topic] NUL [packed env] to path. Returns 0 or -1. */
static int write_seed(const char *path, funnel_body_t body, const funnel_envelope_t *env)
{
    const char *topic = funnel_topic_name(body);
    size_t len = funnel__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    FILE *f = buf ? fopen(path, "wb") : NULL;
    int rc = -1;
    if (!f)
        goto out;
    funnel__v1__envelope__pack(env, buf);
    if (fwrite(topic, 1, strlen(topic) + 1, f) == strlen(topic) + 1 &&
        fwrite(buf, 1, len, f) == len)
        rc = 0;
    if (fclose(f))
        rc = -1;
out:
    free(buf);
    return rc;
}

static int seed_one(const char *in_path, const char *out_path)
{
    char text[65536];
    FILE *f = fopen(in_path, "rb");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    funnel_envelope_t *env = NULL;
    char err[256];
    if (n < 1 || funnel_json_envelope_build((funnel_body_t)(unsigned char)text[0], text + 1,
                                            SEEDS_NOW_MS, &env, err, sizeof err)) {
        fprintf(stderr, "%s: skipped: %s\n", in_path, n ? err : "empty");
        return 0;
    }
    int rc = write_seed(out_path, (funnel_body_t)(unsigned char)text[0], env);
    funnel_envelope_free(&env);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s JSON_CORPUS_DIR OUT_DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d)
        return 1;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char in[4096], out[4096];
        snprintf(in, sizeof in, "%s/%s", argv[1], e->d_name);
        snprintf(out, sizeof out, "%s/%s", argv[2], e->d_name);
        if (seed_one(in, out)) {
            fprintf(stderr, "%s: cannot write %s\n", in, out);
            rc = 1;
        }
    }
    closedir(d);
    return rc;
}
