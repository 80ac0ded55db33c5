/* test_web_cache.c — funnel-web's kept answers (adapters/web/cache.c) with an injected clock: an
 * answer goes at the next commit of another connection, except the keeper's, which is served
 * up to max_age_ms past it (saying how old) and then goes too. */
#include "harness.h"
#include "web.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fx_tmpdir_t tmp;
static char db_path[300];
static sqlite3 *writer; /* funneld's part: commits */
static funnel_web_cache_t *cache;

#define MAX_AGE_MS 10000

static void start(void)
{
    fx_tmpdir_make(&tmp);
    snprintf(db_path, sizeof db_path, "%s/db", tmp.path);
    cr_assert_eq(sqlite3_open(db_path, &writer), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(writer, "PRAGMA journal_mode = WAL; CREATE TABLE t (x)", NULL, NULL, NULL),
        SQLITE_OK);
    cr_assert_eq(funnel_web_cache_new(db_path, MAX_AGE_MS, &cache), 0);
}

static void stop(void)
{
    funnel_web_cache_destroy(&cache);
    sqlite3_close(writer);
    fx_tmpdir_remove(&tmp);
}

TestSuite(web_cache, .init = start, .fini = stop);

static void commit(void)
{
    cr_assert_eq(sqlite3_exec(writer, "INSERT INTO t VALUES (1)", NULL, NULL, NULL), SQLITE_OK);
}

/* Files body for key as computed at now_ms (kept: by the keeper). */
static void put(const char *key, const char *body, int64_t now_ms, bool kept)
{
    funnel_web_reply_t r = {0};
    int64_t marker;
    cr_assert_not(funnel_web_cache_get(cache, key, now_ms, &r, &marker), "%s is not kept yet", key);
    r = (funnel_web_reply_t){.status = 200, .body = (char *)body, .len = strlen(body)};
    funnel_web_cache_put(cache, key, marker, INT64_MAX, now_ms, kept, &r);
}

/* Whether key is served at now_ms; *age_s: -1 when current, else how old (the Age header). */
static bool served(const char *key, int64_t now_ms, const char *want, int *age_s)
{
    funnel_web_reply_t r = {0};
    int64_t marker;
    if (!funnel_web_cache_get(cache, key, now_ms, &r, &marker))
        return false;
    cr_assert_str_eq(r.body, want);
    *age_s = r.behind ? (int)r.age_s : -1;
    free(r.body);
    return true;
}

Test(web_cache, a_request_answer_goes_at_the_next_commit)
{
    int age;
    put("funnel", "{\"a\":1}", 1000, false);
    cr_assert(served("funnel", 1500, "{\"a\":1}", &age));
    cr_assert_eq(age, -1, "current until a commit");
    commit();
    cr_assert_not(served("funnel", 1600, "{\"a\":1}", &age), "never served from before a commit");
}

Test(web_cache, the_keepers_answer_is_served_up_to_max_age_past_a_commit_saying_how_old)
{
    int age;
    int64_t marker;
    put("page", "{\"p\":1}", 1000, true);
    cr_assert(funnel_web_cache_fresh(cache, "page", 1100, 1000, &marker), "nothing to redo");
    commit();
    cr_assert(served("page", 4000, "{\"p\":1}", &age), "the keeper recomputes it meanwhile");
    cr_assert_eq(age, 3, "3 s old");
    cr_assert(funnel_web_cache_fresh(cache, "page", 1500, 1000, &marker),
              "the keeper computes it at most once per refresh interval");
    cr_assert_not(funnel_web_cache_fresh(cache, "page", 4000, 1000, &marker),
                  "and again after the commit");
    cr_assert_not(served("page", 1000 + MAX_AGE_MS + 1, "{\"p\":1}", &age), "too old: gone");
    put("page", "{\"p\":2}", 12000, true);
    cr_assert(served("page", 12001, "{\"p\":2}", &age));
    cr_assert_eq(age, -1);
    uint64_t kept = funnel_web_cache_kept(cache);
    cr_assert_eq(kept, 2, "the keeper filed two answers (%llu)", (unsigned long long)kept);
}
