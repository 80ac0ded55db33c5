/* replay_main.c — runs every file of the corpus directories given on the command line through
 * LLVMFuzzerTestOneInput, in name order, once: the deterministic half of fuzzing that `make
 * test` runs under ASan and UBSan. An empty or unreadable directory fails, so a corpus that went
 * missing cannot pass unnoticed. */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file into an allocation of exactly its size, so ASan sees any read past it. */
static int read_all(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = -1;
    uint8_t *buf = NULL;
    long n;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        goto out;
    if (!(buf = malloc(n ? (size_t)n : 1)))
        goto out;
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        goto out;
    *out = buf;
    *len = (size_t)n;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

static int skip_dots(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int replay_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dots, alphasort);
    if (n <= 0) {
        fprintf(stderr, "%s: no corpus files\n", dir);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        uint8_t *data = NULL;
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (read_all(path, &data, &len)) {
            fprintf(stderr, "%s: cannot read\n", path);
            rc = -1;
        } else {
            LLVMFuzzerTestOneInput(data, len);
            free(data);
        }
        free(names[i]);
    }
    free(names);
    if (!rc)
        printf("%s: %d inputs replayed\n", dir, n);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (replay_dir(argv[i]))
            return 1;
    return 0;
}
