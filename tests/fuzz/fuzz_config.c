/* fuzz_config.c — funneld's configuration reader, funnel_config_load, with every engine section
 * (commission, attribution, sla with calendars and time zones).
 *
 * Input: the file's text. It is handed over as an anonymous memory file (memfd) read through
 * /proc/self/fd, so the harness writes nothing to disk and leaves nothing behind. Invariant: a
 * configuration that loads prints (--check-config) a text that loads to the same print. */
#include "fuzz.h"

#include "config.h"
#include "registry.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* libconfig (1.5 in Debian 12, and upstream as of 1.7) leaks the string or name token that a
 * syntax error leaves unconsumed: its grammar has no %destructor for them. That is not ours to
 * fix; only those two allocation sites are exempt, so a leak of settings (a missing
 * config_destroy) or of anything of ours is still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

/* Loads bytes as a config file into cfg: funnel_config_load's result. */
static int load_bytes(const void *data, size_t size, funnel_config_t *cfg, char *err,
                      size_t err_len)
{
    int fd = memfd_create("funnel-fuzz-config", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int rc = funnel_config_load(path, &funnel_engine_registry, cfg, err, err_len);
    close(fd);
    return rc;
}

/* The --check-config text of cfg; the caller frees it. */
static char *print_text(const funnel_config_t *cfg, size_t *len)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    FUZZ_CHECK(out);
    funnel_config_print(cfg, out);
    FUZZ_CHECK(fclose(out) == 0);
    return text;
}

static void check_print_loads(const funnel_config_t *cfg)
{
    size_t len, again_len;
    char *text = print_text(cfg, &len), err[512] = "";
    funnel_config_t again = {0};
    int rc = load_bytes(text, len, &again, err, sizeof err);
    if (rc)
        fprintf(stderr, "printed config refused: %s\n%s", err, text);
    FUZZ_CHECK(rc == 0);
    char *text_again = print_text(&again, &again_len);
    if (len != again_len || memcmp(text, text_again, len))
        fprintf(stderr, "printed config changed when read back:\n%s---\n%s", text, text_again);
    FUZZ_CHECK(len == again_len && memcmp(text, text_again, len) == 0);
    free(text_again);
    funnel_config_clear(&again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    funnel_config_t cfg = {0};
    char err[512] = "";
    int rc = load_bytes(data, size, &cfg, err, sizeof err);
    if (rc == 0)
        check_print_loads(&cfg);
    else
        FUZZ_CHECK(err[0]);
    funnel_config_clear(&cfg);
    return 0;
}
