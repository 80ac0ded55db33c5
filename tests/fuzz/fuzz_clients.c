/* fuzz_clients.c — the clients file reader, funnel_clients_parse (the same path as the file
 * funneld loads at start and on SIGHUP, from text).
 *
 * Input: the file's text. Invariants: a refusal says why; a table that loads holds only valid
 * keys and names, each found again by name and by key, and every publish pattern without `*`
 * admits exactly its own topic. */
#include "fuzz.h"

#include "clients.h"

#include <string.h>
#include <zmq.h>

/* libconfig's own leak on syntax errors (see fuzz_config.c): not ours to fix. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static void check_entry(const funnel_clients_t *t, const funnel_clients_entry_t *c)
{
    FUZZ_CHECK(c->name[0] && strlen(c->name) <= FUNNEL_CLIENT_NAME_MAX);
    FUZZ_CHECK(funnel_key_valid(c->key_z85));
    FUZZ_CHECK(funnel_clients_by_name(t, c->name) == c);
    FUZZ_CHECK(funnel_clients_by_key(t, c->key) == c);
    for (size_t i = 0; i < c->n_publish; i++) {
        const char *p = c->publish[i];
        FUZZ_CHECK(p[0]);
        char *star = strchr(p, '*');
        FUZZ_CHECK(!star || star[1] == '\0');
        if (!star)
            FUZZ_CHECK(funnel_clients_may_publish(c, p));
    }
    for (size_t i = 0; i < c->n_subscribe; i++) {
        const char *p = c->subscribe[i];
        FUZZ_CHECK(!strchr(p, '*'));
        FUZZ_CHECK(funnel_clients_may_see(c, p, strlen(p)));
        FUZZ_CHECK(funnel_clients_subscription(c, (const uint8_t *)p, strlen(p)) ==
                   FUNNEL_SUB_APPLY);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    FUZZ_CHECK(text);
    char err[512] = "";
    funnel_clients_t *t = NULL;
    int rc = funnel_clients_parse(text, "fuzz", &t, err, sizeof err);
    if (rc) {
        FUZZ_CHECK(!t && err[0]);
    } else {
        for (size_t i = 0; i < funnel_clients_count(t); i++)
            check_entry(t, funnel_clients_at(t, i));
    }
    funnel_clients_destroy(&t);
    FUZZ_CHECK(!t);
    free(text);
    return 0;
}
