/* test_config.c — unit tests for the option table: defaults, the libconfig reader and its
 * error messages, command-line overrides, SIGHUP reload rules, --check-config output and --help.
 *
 * Files are written into a per-test temporary directory. Every config a test fills is cleared
 * at the end, so LeakSanitizer (run at process exit, reported through ctest) sees every string
 * the module allocates come back. Error texts are compared exactly: they are what an operator
 * reads when funneld refuses to start. */
#include <criterion/criterion.h>

#include "config.h"
#include "server.h"
#include "funnel/error.h"
#include "funnel/log.h"
#include "harness.h"
#include "sections.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERR_LEN 512

/* Every option, in table order; a new option must be added here (help/print tests count). */
static const char *const option_names[] = {
    "database",
    "ingest",
    "submit",
    "publish",
    "replay",
    "connect",
    "max_message_bytes",
    "batch_max",
    "batch_delay_ms",
    "retention_days",
    "max_future_ms",
    "publish_hwm",
    "disk_full_buffer_bytes",
    "dead_letter_max_rows",
    "dead_letter_max_bytes",
    "refusal_log_per_minute",
    "refusal_budget_per_peer",
    "log_level",
    "sync",
    "quick_check",
    "metrics",
    "engines",
    "sql_profile",
    "allow_insecure",
};
/* Options printed inside the security group, when it is set, rather than one a line. */
#define N_SECURITY_OPTIONS 2
#define N_OPTIONS          (sizeof option_names / sizeof option_names[0])

static fx_tmpdir_t tmp;
static char cfg_path[320];
static funnel_config_t cfg, want; /* cleared by teardown whatever happened */

static void setup(void)
{
    fx_tmpdir_make(&tmp);
    snprintf(cfg_path, sizeof cfg_path, "%s/funneld.conf", tmp.path);
    memset(&cfg, 0, sizeof cfg);
    memset(&want, 0, sizeof want);
}

static void teardown(void)
{
    funnel_config_clear(&cfg);
    funnel_config_clear(&want);
    fx_tmpdir_remove(&tmp);
}

TestSuite(config_defaults, .init = setup, .fini = teardown);
TestSuite(config_load, .init = setup, .fini = teardown);
TestSuite(config_set, .init = setup, .fini = teardown);
TestSuite(config_reload, .init = setup, .fini = teardown);
TestSuite(config_print, .init = setup, .fini = teardown);

static void write_file(const char *path, const char *text)
{
    fx_file_put(path, text);
}

static void defaults(funnel_config_t *c)
{
    cr_assert_eq(funnel_config_defaults(c, &funnel_engine_registry), 0);
}

static void set(funnel_config_t *c, const char *name, const char *value)
{
    char err[ERR_LEN] = "";
    int rc = funnel_config_set(c, name, value, err, sizeof err);
    cr_assert_eq(rc, 0, "set %s=%s: %d %s", name, value, rc, err);
}

/* Writes text to the test's config file and loads it into c; returns the result. */
static int load_text(const char *text, funnel_config_t *c, char *err)
{
    write_file(cfg_path, text);
    err[0] = '\0';
    return funnel_config_load(cfg_path, &funnel_engine_registry, c, err, ERR_LEN);
}

/* Loads text, which must fail, and checks err is exactly "<file>:<line>: <what>". */
#define expect_load_error(text, line, what)                                                        \
    do {                                                                                           \
        char err_[ERR_LEN], want_[ERR_LEN];                                                        \
        int rc_ = load_text((text), &cfg, err_);                                                   \
        cr_assert_eq(rc_, FUNNEL_ECONFIG, "accepted: %s", (text));                                 \
        snprintf(want_, sizeof want_, "%s:%d: %s", cfg_path, (line), (what));                      \
        cr_assert_str_eq(err_, want_, "for: %s", (text));                                          \
    } while (0)

/* Field-by-field equality, with the first difference in the failure message. */
static void assert_config_eq(const funnel_config_t *a, const funnel_config_t *b)
{
    cr_assert_str_eq(a->database, b->database);
    cr_assert_str_eq(a->ingest, b->ingest);
    cr_assert_str_eq(a->submit, b->submit);
    cr_assert_str_eq(a->publish, b->publish);
    cr_assert_str_eq(a->replay, b->replay);
    cr_assert_eq(a->n_connect, b->n_connect);
    for (size_t i = 0; i < a->n_connect; i++)
        cr_assert_str_eq(a->connect[i], b->connect[i], "connect[%zu]", i);
    for (size_t i = a->n_connect; i < FUNNEL_CONFIG_MAX_CONNECT; i++)
        cr_assert_null(a->connect[i], "connect[%zu] beyond n_connect", i);
    cr_assert_eq(a->max_message_bytes, b->max_message_bytes);
    cr_assert_eq(a->batch_max, b->batch_max);
    cr_assert_eq(a->batch_delay_ms, b->batch_delay_ms);
    cr_assert_eq(a->retention_days, b->retention_days);
    cr_assert_eq(a->max_future_ms, b->max_future_ms);
    cr_assert_eq(a->publish_hwm, b->publish_hwm);
    cr_assert_eq(a->log_level, b->log_level);
    cr_assert_eq(a->sync, b->sync);
    cr_assert_eq(a->allow_insecure, b->allow_insecure);
    cr_assert_eq(!a->server_key, !b->server_key);
    if (a->server_key)
        cr_assert_str_eq(a->server_key, b->server_key);
    cr_assert_eq(!a->clients, !b->clients);
    if (a->clients)
        cr_assert_str_eq(a->clients, b->clients);
}

/* A config where every option differs from its default. */
static void customise(funnel_config_t *c)
{
    defaults(c);
    set(c, "database", "/srv/funnel/custom.db");
    set(c, "ingest", "tcp://0.0.0.0:8600");
    set(c, "submit", "ipc:///run/funnel/submit");
    set(c, "publish", "tcp://*:8602");
    set(c, "replay", "tcp://127.0.0.1:8603");
    set(c, "connect", "tcp://crm:5556,tcp://billing:5557");
    set(c, "max_message_bytes", "1024");
    set(c, "batch_max", "77");
    set(c, "batch_delay_ms", "5");
    set(c, "retention_days", "9");
    set(c, "max_future_ms", "60000");
    set(c, "publish_hwm", "500");
    set(c, "log_level", "warn");
    set(c, "sync", "full");
    set(c, "allow_insecure", "true");
    set(c, "security.server_key", "/etc/funnel/server.key");
    set(c, "security.clients", "/etc/funnel/clients \"quoted\".conf");
}

/* ---- defaults ------------------------------------------------------------------------------ */

Test(config_defaults, are_sane)
{
    defaults(&cfg);
    cr_assert_str_eq(cfg.database, "./var/funneld.db");
    cr_assert_str_eq(cfg.ingest, "tcp://127.0.0.1:7600");
    cr_assert_str_eq(cfg.submit, "tcp://127.0.0.1:7601");
    cr_assert_str_eq(cfg.publish, "tcp://127.0.0.1:7602");
    cr_assert_str_eq(cfg.replay, "tcp://127.0.0.1:7603");
    cr_assert_eq(cfg.n_connect, 0);
    for (size_t i = 0; i < FUNNEL_CONFIG_MAX_CONNECT; i++)
        cr_assert_null(cfg.connect[i]);
    cr_assert_eq(cfg.max_message_bytes, 65536);
    cr_assert_eq(cfg.batch_max, 1000);
    cr_assert_eq(cfg.batch_delay_ms, 0);
    cr_assert_eq(cfg.retention_days, 30);
    cr_assert_eq(cfg.max_future_ms, 86400000);
    cr_assert_eq(cfg.publish_hwm, 100000);
    cr_assert_eq(cfg.log_level, FUNNEL_LOG_INFO);
    cr_assert_eq(cfg.sync, FUNNEL_STORE_SYNC_NORMAL);
}

Test(config_defaults, defaults_over_a_zeroed_config_twice_and_clear)
{
    defaults(&cfg);
    funnel_config_clear(&cfg);
    defaults(&cfg);
    set(&cfg, "connect", "tcp://a:1,tcp://b:2");
    funnel_config_clear(&cfg);
    funnel_config_t zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(memcmp(&cfg, &zero, sizeof cfg), 0, "clear must zero the config");
    funnel_config_clear(&cfg); /* clearing twice is harmless */
    cr_assert_null(cfg.database);
}

/* ---- loading files ------------------------------------------------------------------------- */

Test(config_load, valid_file_overrides_options)
{
    char err[ERR_LEN];
    defaults(&want);
    int rc = load_text("# funneld.conf\n"
                       "database = \"/var/lib/funneld/events.db\";\n"
                       "batch_max = 500;   // fewer per commit\n"
                       "retention_days = 7;\n"
                       "max_future_ms = 2678400000L; /* the upper bound, beyond 32 bits */\n"
                       "log_level = \"debug\";\n"
                       "sync = \"full\";\n"
                       "connect = (\"tcp://crm:5556\", \"tcp://billing:5557\");\n",
                       &cfg, err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(cfg.database, "/var/lib/funneld/events.db");
    cr_assert_eq(cfg.batch_max, 500);
    cr_assert_eq(cfg.retention_days, 7);
    cr_assert_eq(cfg.max_future_ms, 2678400000LL);
    cr_assert_eq(cfg.log_level, FUNNEL_LOG_DEBUG);
    cr_assert_eq(cfg.sync, FUNNEL_STORE_SYNC_FULL);
    cr_assert_eq(cfg.n_connect, 2);
    cr_assert_str_eq(cfg.connect[0], "tcp://crm:5556");
    cr_assert_str_eq(cfg.connect[1], "tcp://billing:5557");
    /* everything else keeps its default */
    cr_assert_str_eq(cfg.ingest, want.ingest);
    cr_assert_str_eq(cfg.submit, want.submit);
    cr_assert_str_eq(cfg.publish, want.publish);
    cr_assert_str_eq(cfg.replay, want.replay);
    cr_assert_eq(cfg.max_message_bytes, want.max_message_bytes);
    cr_assert_eq(cfg.batch_delay_ms, want.batch_delay_ms);
    cr_assert_eq(cfg.publish_hwm, want.publish_hwm);
}

Test(config_load, empty_file_gives_the_defaults)
{
    char err[ERR_LEN];
    defaults(&want);
    cr_assert_eq(load_text("", &cfg, err), 0, "%s", err);
    assert_config_eq(&cfg, &want);
    cr_assert_eq(load_text("# only a comment\n\n", &cfg, err), 0, "%s", err);
    assert_config_eq(&cfg, &want);
}

Test(config_load, file_is_read_over_the_defaults_not_over_the_target)
{
    /* The target's previous values are replaced wholesale: an option removed from the file
     * goes back to its default. */
    char err[ERR_LEN];
    customise(&cfg);
    defaults(&want);
    set(&want, "batch_max", "3");
    cr_assert_eq(load_text("batch_max = 3;\n", &cfg, err), 0, "%s", err);
    assert_config_eq(&cfg, &want);
}

Test(config_load, array_and_empty_list_for_connect)
{
    char err[ERR_LEN];
    cr_assert_eq(load_text("connect = [\"tcp://a:1\", \"tcp://b:2\", \"tcp://c:3\"];\n", &cfg, err),
                 0, "%s", err);
    cr_assert_eq(cfg.n_connect, 3);
    cr_assert_str_eq(cfg.connect[2], "tcp://c:3");
    cr_assert_eq(load_text("connect = ();\n", &cfg, err), 0, "%s", err);
    cr_assert_eq(cfg.n_connect, 0);
    cr_assert_null(cfg.connect[0]);
}

Test(config_load, sixteen_connect_endpoints_at_most)
{
    char text[2048], err[ERR_LEN];
    size_t n = (size_t)snprintf(text, sizeof text, "batch_max = 10;\nconnect = (");
    for (int i = 0; i < FUNNEL_CONFIG_MAX_CONNECT; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%s\"tcp://p%d:5556\"", i ? ", " : "", i);
    snprintf(text + n, sizeof text - n, ");\n");
    cr_assert_eq(load_text(text, &cfg, err), 0, "%s", err);
    cr_assert_eq(cfg.n_connect, FUNNEL_CONFIG_MAX_CONNECT);
    cr_assert_str_eq(cfg.connect[15], "tcp://p15:5556");

    /* One more is refused, and the loaded config stays as it was. */
    defaults(&want);
    funnel_config_clear(&want);
    cr_assert_eq(load_text(text, &want, err), 0, "%s", err);
    snprintf(text + n, sizeof text - n, ", \"tcp://one-too-many:1\");\n");
    expect_load_error(text, 2, "connect: at most 16 endpoints");
    assert_config_eq(&cfg, &want);
}

Test(config_load, unknown_option_names_file_line_and_option)
{
    expect_load_error("batch_max = 5;\n\nbatchmax = 5;\n", 3, "unknown option 'batchmax'");
    expect_load_error("server = { port = 1; };\n", 1, "unknown option 'server'");
    expect_load_error("database = \"x.db\";\nDatabase = \"y.db\";\n", 2,
                      "unknown option 'Database'");
}

Test(config_load, wrong_type_names_file_line_and_expectation)
{
    expect_load_error("batch_max = \"500\";\n", 1, "batch_max: expected an integer");
    expect_load_error("\nretention_days = 7.5;\n", 2, "retention_days: expected an integer");
    expect_load_error("publish_hwm = true;\n", 1, "publish_hwm: expected an integer");
    expect_load_error("max_message_bytes = (1);\n", 1, "max_message_bytes: expected an integer");
    expect_load_error("database = 5;\n", 1, "database: expected a string");
    expect_load_error("log_level = 2;\n", 1, "log_level: expected a string");
    expect_load_error("sync = false;\n", 1, "sync: expected a string");
    expect_load_error("ingest = (\"tcp://a:1\");\n", 1, "ingest: expected a string");
    expect_load_error("replay = { x = 1; };\n", 1, "replay: expected a string");
    expect_load_error("connect = \"tcp://a:1\";\n", 1, "connect: expected a list of strings");
    expect_load_error("connect = (\"tcp://a:1\", 2);\n", 1, "connect: expected a list of strings");
    expect_load_error("connect = [1, 2];\n", 1, "connect: expected a list of strings");
}

Test(config_load, out_of_bounds_int_mentions_the_bounds)
{
    expect_load_error("batch_max = 0;\n", 1, "batch_max: 0 is outside 1..100000");
    expect_load_error("batch_max = 100001;\n", 1, "batch_max: 100001 is outside 1..100000");
    expect_load_error("batch_delay_ms = -1;\n", 1, "batch_delay_ms: -1 is outside 0..1000");
    expect_load_error("retention_days = 3651;\n", 1, "retention_days: 3651 is outside 1..3650");
    expect_load_error("max_message_bytes = 63;\n", 1,
                      "max_message_bytes: 63 is outside 64..16777216");
    expect_load_error("max_future_ms = 2678400001L;\n", 1,
                      "max_future_ms: 2678400001 is outside 0..2678400000");
    expect_load_error("publish_hwm = 99;\n", 1, "publish_hwm: 99 is outside 100..10000000");
    expect_load_error("publish_hwm = 10000000000L;\n", 1,
                      "publish_hwm: 10000000000 is outside 100..10000000");

    /* The bounds themselves are accepted. */
    char err[ERR_LEN];
    cr_assert_eq(load_text("batch_max = 1;\nbatch_delay_ms = 1000;\nretention_days = 3650;\n"
                           "max_message_bytes = 16777216;\nmax_future_ms = 0;\n"
                           "publish_hwm = 100;\n",
                           &cfg, err),
                 0, "%s", err);
    cr_assert_eq(cfg.batch_max, 1);
    cr_assert_eq(cfg.batch_delay_ms, 1000);
    cr_assert_eq(cfg.retention_days, 3650);
    cr_assert_eq(cfg.max_message_bytes, 16777216);
    cr_assert_eq(cfg.max_future_ms, 0);
    cr_assert_eq(cfg.publish_hwm, 100);
}

Test(config_load, bad_enum_and_empty_string_values)
{
    expect_load_error("log_level = \"verbose\";\n", 1,
                      "log_level: 'verbose' is not error, warn, info or debug");
    expect_load_error("log_level = \"INFO\";\n", 1,
                      "log_level: 'INFO' is not error, warn, info or debug");
    expect_load_error("sync = \"fast\";\n", 1, "sync: 'fast' is not normal or full");
    expect_load_error("sync = \"\";\n", 1, "sync: '' is not normal or full");
    expect_load_error("database = \"\";\n", 1, "database: must not be empty");
}

Test(config_load, missing_file_is_an_error)
{
    char missing[400], err[ERR_LEN] = "", want_err[ERR_LEN];
    snprintf(missing, sizeof missing, "%s/nope.conf", tmp.path);
    cr_assert_eq(funnel_config_load(missing, &funnel_engine_registry, &cfg, err, sizeof err),
                 FUNNEL_ECONFIG);
    snprintf(want_err, sizeof want_err, "%s: cannot read: No such file or directory", missing);
    cr_assert_str_eq(err, want_err);
    cr_assert_null(cfg.database, "a failed load must not write the target");
}

Test(config_load, unreadable_file_is_an_error)
{
    write_file(cfg_path, "batch_max = 5;\n");
    cr_assert_eq(chmod(cfg_path, 0), 0);
    if (geteuid() == 0)
        cr_skip_test("root reads any file");
    char err[ERR_LEN] = "", want_err[ERR_LEN];
    cr_assert_eq(funnel_config_load(cfg_path, &funnel_engine_registry, &cfg, err, sizeof err),
                 FUNNEL_ECONFIG);
    snprintf(want_err, sizeof want_err, "%s: cannot read: Permission denied", cfg_path);
    cr_assert_str_eq(err, want_err);
    cr_assert_null(cfg.database);
}

Test(config_load, directory_is_an_error)
{
    char err[ERR_LEN] = "";
    cr_assert_eq(funnel_config_load(tmp.path, &funnel_engine_registry, &cfg, err, sizeof err),
                 FUNNEL_ECONFIG);
    char want_err[ERR_LEN];
    snprintf(want_err, sizeof want_err, "%s: cannot read: not a regular file", tmp.path);
    cr_assert_str_eq(err, want_err);
    cr_assert_null(cfg.database);
}

Test(config_load, syntax_error_names_file_and_line)
{
    expect_load_error("batch_max = 5;\nretention_days = ;\n", 2, "syntax error");
    expect_load_error("batch_max = 5;\n\nretention_days = = 5;\n", 3, "syntax error");
    expect_load_error("batch_max = 5;\nretention_days = 7 8;\n", 2, "syntax error");
}

Test(config_load, duplicate_option_is_an_error)
{
    char err[ERR_LEN];
    cr_assert_eq(load_text("batch_max = 5;\nbatch_max = 6;\n", &cfg, err), FUNNEL_ECONFIG);
    char prefix[400];
    snprintf(prefix, sizeof prefix, "%s:2: ", cfg_path);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "error must point at line 2: %s", err);
    cr_assert(strstr(err, "duplicate") != NULL, "%s", err);
    cr_assert_null(cfg.database);
}

Test(config_load, errors_leave_the_target_unchanged)
{
    static const char *const bad[] = {
        "batch_max = 5;\nbogus = 1;\n",
        "batch_max = 5;\nretention_days = \"7\";\n",
        "batch_max = 5;\nretention_days = 0;\n",
        "batch_max = 5;\nretention_days = ;\n",
        "database = \"new.db\";\nconnect = (\"tcp://x:1\");\nsync = \"fast\";\n",
        "connect = (\"tcp://x:1\", 7);\n",
    };
    customise(&cfg);
    customise(&want);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERR_LEN];
        cr_assert_eq(load_text(bad[i], &cfg, err), FUNNEL_ECONFIG, "accepted: %s", bad[i]);
        assert_config_eq(&cfg, &want);
    }
    char err[ERR_LEN];
    char missing[400];
    snprintf(missing, sizeof missing, "%s/missing.conf", tmp.path);
    cr_assert_eq(funnel_config_load(missing, &funnel_engine_registry, &cfg, err, sizeof err),
                 FUNNEL_ECONFIG);
    assert_config_eq(&cfg, &want);
}

/* ---- command-line overrides ---------------------------------------------------------------- */

Test(config_set, every_type)
{
    defaults(&cfg);
    set(&cfg, "database", "/tmp/other.db");
    cr_assert_str_eq(cfg.database, "/tmp/other.db");
    set(&cfg, "database", "/tmp/third.db"); /* replacing frees the old string */
    cr_assert_str_eq(cfg.database, "/tmp/third.db");
    set(&cfg, "batch_max", "500");
    cr_assert_eq(cfg.batch_max, 500);
    set(&cfg, "max_future_ms", "2678400000");
    cr_assert_eq(cfg.max_future_ms, 2678400000LL);
    set(&cfg, "log_level", "error");
    cr_assert_eq(cfg.log_level, FUNNEL_LOG_ERROR);
    set(&cfg, "log_level", "warn");
    cr_assert_eq(cfg.log_level, FUNNEL_LOG_WARN);
    set(&cfg, "log_level", "debug");
    cr_assert_eq(cfg.log_level, FUNNEL_LOG_DEBUG);
    set(&cfg, "sync", "full");
    cr_assert_eq(cfg.sync, FUNNEL_STORE_SYNC_FULL);
    set(&cfg, "sync", "normal");
    cr_assert_eq(cfg.sync, FUNNEL_STORE_SYNC_NORMAL);
    set(&cfg, "connect", "tcp://crm:5556");
    cr_assert_eq(cfg.n_connect, 1);
    cr_assert_str_eq(cfg.connect[0], "tcp://crm:5556");
}

/* funnel_config_set must fail with exactly this message and leave cfg equal to want. */
#define expect_set_error(name, value, message)                                                     \
    do {                                                                                           \
        char err_[ERR_LEN] = "";                                                                   \
        cr_assert_eq(funnel_config_set(&cfg, (name), (value), err_, sizeof err_), FUNNEL_ECONFIG,  \
                     "%s=%s accepted", (name), (value));                                           \
        cr_assert_str_eq(err_, (message));                                                         \
        assert_config_eq(&cfg, &want);                                                             \
    } while (0)

Test(config_set, refusals_name_the_option_and_change_nothing)
{
    customise(&cfg);
    customise(&want);
    expect_set_error("nope", "1", "unknown option 'nope'");
    expect_set_error("", "1", "unknown option ''");
    expect_set_error("batch_max", "12x", "batch_max: '12x' is not an integer");
    expect_set_error("batch_max", "", "batch_max: '' is not an integer");
    expect_set_error("batch_max", "1.5", "batch_max: '1.5' is not an integer");
    expect_set_error("batch_max", "99999999999999999999",
                     "batch_max: '99999999999999999999' is not an integer");
    expect_set_error("batch_max", "0", "batch_max: 0 is outside 1..100000");
    expect_set_error("retention_days", "-5", "retention_days: -5 is outside 1..3650");
    expect_set_error("database", "", "database: must not be empty");
    expect_set_error("log_level", "loud", "log_level: 'loud' is not error, warn, info or debug");
    expect_set_error("sync", "FULL", "sync: 'FULL' is not normal or full");
}

Test(config_set, connect_is_a_comma_list_that_replaces)
{
    defaults(&cfg);
    set(&cfg, "connect", "tcp://a:1,tcp://b:2,ipc:///run/c");
    cr_assert_eq(cfg.n_connect, 3);
    cr_assert_str_eq(cfg.connect[0], "tcp://a:1");
    cr_assert_str_eq(cfg.connect[1], "tcp://b:2");
    cr_assert_str_eq(cfg.connect[2], "ipc:///run/c");

    set(&cfg, "connect", "tcp://d:4");
    cr_assert_eq(cfg.n_connect, 1, "a new list replaces the old one");
    cr_assert_str_eq(cfg.connect[0], "tcp://d:4");
    cr_assert_null(cfg.connect[1]);

    set(&cfg, "connect", ",tcp://e:5,,tcp://f:6,");
    cr_assert_eq(cfg.n_connect, 2, "empty elements are skipped");
    cr_assert_str_eq(cfg.connect[0], "tcp://e:5");
    cr_assert_str_eq(cfg.connect[1], "tcp://f:6");

    set(&cfg, "connect", "");
    cr_assert_eq(cfg.n_connect, 0, "an empty value clears the list");
    cr_assert_null(cfg.connect[0]);
}

Test(config_set, connect_holds_sixteen_endpoints_at_most)
{
    char list[1024];
    size_t n = 0;
    for (int i = 0; i < FUNNEL_CONFIG_MAX_CONNECT; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%stcp://p%d:1", i ? "," : "", i);
    defaults(&cfg);
    set(&cfg, "connect", list);
    cr_assert_eq(cfg.n_connect, 16);
    cr_assert_str_eq(cfg.connect[15], "tcp://p15:1");

    /* 17 are refused and the previous list stays whole. */
    set(&cfg, "connect", "tcp://old:1,tcp://old:2");
    defaults(&want);
    set(&want, "connect", "tcp://old:1,tcp://old:2");
    snprintf(list + n, sizeof list - n, ",tcp://p16:1");
    expect_set_error("connect", list, "connect: at most 16 endpoints");
    cr_assert_eq(cfg.n_connect, 2);
}

/* ---- reload ------------------------------------------------------------------------------ */

/* A log that writes into a memory buffer the test can read. */
typedef struct mem_log {
    funnel_log_t log;
    char *buf;
    size_t len;
} mem_log_t;

static void mem_log_open(mem_log_t *m)
{
    m->buf = NULL;
    m->len = 0;
    m->log.level = FUNNEL_LOG_DEBUG;
    m->log.out = open_memstream(&m->buf, &m->len);
    cr_assert_not_null(m->log.out);
}

static void mem_log_close(mem_log_t *m)
{
    fclose(m->log.out);
    free(m->buf);
}

static size_t count_lines_with(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

Test(config_reload, copies_reloadable_and_keeps_restart_only_options)
{
    funnel_config_t fresh;
    defaults(&cfg);
    defaults(&fresh);
    /* reloadable */
    set(&fresh, "max_message_bytes", "2048");
    set(&fresh, "batch_max", "10");
    set(&fresh, "batch_delay_ms", "50");
    set(&fresh, "retention_days", "5");
    set(&fresh, "max_future_ms", "1000");
    set(&fresh, "log_level", "debug");
    /* restart only */
    set(&fresh, "database", "/elsewhere.db");
    set(&fresh, "ingest", "tcp://127.0.0.1:9600");
    set(&fresh, "connect", "tcp://new:1");
    set(&fresh, "publish_hwm", "200");
    set(&fresh, "sync", "full");

    mem_log_t m;
    mem_log_open(&m);
    int changed = funnel_config_reload(&cfg, &fresh, &m.log);
    fflush(m.log.out);
    cr_assert_eq(changed, 6);

    cr_assert_eq(cfg.max_message_bytes, 2048);
    cr_assert_eq(cfg.batch_max, 10);
    cr_assert_eq(cfg.batch_delay_ms, 50);
    cr_assert_eq(cfg.retention_days, 5);
    cr_assert_eq(cfg.max_future_ms, 1000);
    cr_assert_eq(cfg.log_level, FUNNEL_LOG_DEBUG);

    cr_assert_str_eq(cfg.database, "./var/funneld.db");
    cr_assert_str_eq(cfg.ingest, "tcp://127.0.0.1:7600");
    cr_assert_eq(cfg.n_connect, 0);
    cr_assert_null(cfg.connect[0]);
    cr_assert_eq(cfg.publish_hwm, 100000);
    cr_assert_eq(cfg.sync, FUNNEL_STORE_SYNC_NORMAL);

    /* fresh is only read */
    cr_assert_str_eq(fresh.database, "/elsewhere.db");
    cr_assert_eq(fresh.n_connect, 1);

    static const char *const restart[] = {"database", "ingest", "connect", "publish_hwm", "sync"};
    for (size_t i = 0; i < 5; i++) {
        char line[128];
        snprintf(line, sizeof line, "config reload: %s changed but needs a restart", restart[i]);
        cr_assert_eq(count_lines_with(m.buf, line), 1, "no warning for %s in:\n%s", restart[i],
                     m.buf);
    }
    cr_assert_eq(count_lines_with(m.buf, "needs a restart"), 5, "%s", m.buf);
    cr_assert_eq(count_lines_with(m.buf, " warn "), 5, "%s", m.buf);
    cr_assert_eq(count_lines_with(m.buf, "config reload: batch_max changed\n"), 1, "%s", m.buf);

    /* Reloading the same file again changes nothing more (but still warns). */
    cr_assert_eq(funnel_config_reload(&cfg, &fresh, NULL), 0);
    cr_assert_eq(cfg.batch_max, 10);
    cr_assert_str_eq(cfg.database, "./var/funneld.db");

    mem_log_close(&m);
    funnel_config_clear(&fresh);
}

Test(config_reload, identical_configs_change_nothing_and_log_nothing)
{
    funnel_config_t fresh;
    customise(&cfg);
    customise(&fresh);
    customise(&want);
    mem_log_t m;
    mem_log_open(&m);
    cr_assert_eq(funnel_config_reload(&cfg, &fresh, &m.log), 0);
    fflush(m.log.out);
    cr_assert_eq(m.len, 0, "logged: %s", m.buf);
    assert_config_eq(&cfg, &want);
    mem_log_close(&m);
    funnel_config_clear(&fresh);
}

/* ---- --check-config and --help -------------------------------------------------------------- */

/* Prints c to the test's file and loads it back into out. */
static void print_and_reload(const funnel_config_t *c, funnel_config_t *out)
{
    FILE *f = fopen(cfg_path, "w");
    cr_assert_not_null(f);
    funnel_config_print(c, f);
    cr_assert_eq(fclose(f), 0);
    char err[ERR_LEN] = "";
    int rc = funnel_config_load(cfg_path, &funnel_engine_registry, out, err, sizeof err);
    cr_assert_eq(rc, 0, "printed config does not load: %s", err);
}

Test(config_print, defaults_round_trip)
{
    defaults(&want);
    print_and_reload(&want, &cfg);
    assert_config_eq(&cfg, &want);
}

Test(config_print, custom_values_round_trip)
{
    customise(&want);
    print_and_reload(&want, &cfg);
    assert_config_eq(&cfg, &want);

    /* Bounds, a value beyond 32 bits and every enum value. */
    set(&want, "max_future_ms", "2678400000");
    set(&want, "max_message_bytes", "16777216");
    set(&want, "batch_delay_ms", "0");
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    for (size_t i = 0; i < 4; i++) {
        set(&want, "log_level", levels[i]);
        set(&want, "sync", i % 2 ? "full" : "normal");
        funnel_config_clear(&cfg);
        print_and_reload(&want, &cfg);
        assert_config_eq(&cfg, &want);
    }
}

Test(config_print, sixteen_endpoints_round_trip)
{
    char list[1024];
    size_t n = 0;
    for (int i = 0; i < FUNNEL_CONFIG_MAX_CONNECT; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%stcp://p%d:1", i ? "," : "", i);
    defaults(&want);
    set(&want, "connect", list);
    print_and_reload(&want, &cfg);
    assert_config_eq(&cfg, &want);
}

Test(config_print, awkward_strings_round_trip)
{
    /* Paths may hold quotes, backslashes and even control characters: print must escape
     * them so --check-config output is a valid file with the same values. */
    defaults(&want);
    set(&want, "database", "/srv/\"quoted\" dir/back\\slash\\.db");
    set(&want, "ingest", "ipc:///run/funnel/tab\there");
    set(&want, "connect", "ipc:///run/a\"b,ipc:///run/c\\d");
    print_and_reload(&want, &cfg);
    assert_config_eq(&cfg, &want);
}

Test(config_print, every_option_exactly_once)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    defaults(&cfg);
    funnel_config_print(&cfg, f);
    fclose(f);
    /* Engine sections (groups) follow the options and are tested with their engines. */
    char *group = strstr(buf, " = {\n");
    if (group) {
        while (group > buf && group[-1] != '\n')
            group--;
        *group = '\0';
        len = (size_t)(group - buf);
    }
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    cr_assert_eq(lines, N_OPTIONS, "one line per option:\n%s", buf);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char start[64];
        snprintf(start, sizeof start, "\n%s = ", option_names[i]);
        bool first = strncmp(buf, start + 1, strlen(start + 1)) == 0;
        cr_assert_eq(first + count_lines_with(buf, start), 1, "%s not printed once:\n%s",
                     option_names[i], buf);
    }
    cr_assert(strstr(buf, "batch_max = 1000;\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "database = \"./var/funneld.db\";\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "connect = ();\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "log_level = \"info\";\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "sync = \"normal\";\n") != NULL, "%s", buf);
    free(buf);
}

Test(config_help, mentions_every_option_with_default_bounds_and_reloadability)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    funnel_config_help(f);
    fclose(f);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    cr_assert_eq(lines, N_OPTIONS + N_SECURITY_OPTIONS, "one line per option:\n%s", buf);
    cr_assert(strstr(buf, "  security.server_key ") && strstr(buf, "  security.clients "), "%s",
              buf);

    for (size_t i = 0; i < N_OPTIONS; i++) {
        /* The option's line: "  name<spaces>help (default ...)". */
        const char *line = NULL;
        for (const char *p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
            size_t n = strlen(option_names[i]);
            if (strncmp(p, "  ", 2) == 0 && strncmp(p + 2, option_names[i], n) == 0 &&
                p[2 + n] == ' ') {
                line = p;
                break;
            }
        }
        cr_assert_not_null(line, "--help does not mention %s:\n%s", option_names[i], buf);
        cr_assert(strstr(line, "(default \"") != NULL, "%s has no default", option_names[i]);
    }

    cr_assert(strstr(buf, "(default \"./var/funneld.db\")\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "(default \"1000\", 1..100000, reloadable)\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "(default \"30\", 1..3650, reloadable)\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "(default \"100000\", 100..10000000)\n") != NULL,
              "publish_hwm needs a restart:\n%s", buf);
    cr_assert(strstr(buf, "(default \"info\", reloadable)\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "(default \"normal\")\n") != NULL, "%s", buf);
    cr_assert_eq(count_lines_with(buf, "reloadable"), 11, "%s", buf);
    free(buf);
}

/* ---- funnel_config_read: file, then command-line overrides ---------------------------------- */

TestSuite(config_read, .init = setup, .fini = teardown);

static int read_with(const char *text, const char *const *overrides, size_t n, char *err)
{
    if (text)
        write_file(cfg_path, text);
    err[0] = '\0';
    return funnel_config_read(text ? cfg_path : NULL, &funnel_engine_registry, overrides, n, &cfg,
                              err, ERR_LEN);
}

Test(config_read, set_reaches_an_engine_section_over_the_file)
{
    static const char *const ov[] = {"attribution.half_life_days=14", "batch_max=5",
                                     "commission.default_rate_bp=250"};
    char err[ERR_LEN];
    int rc = read_with("batch_max = 7;\nattribution = { lookback_days = 30; half_life_days = 3; "
                       "};\n",
                       ov, 3, err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(ATTRIBUTION(cfg)->half_life_days, 14, "the override wins over the file");
    cr_assert_eq(ATTRIBUTION(cfg)->lookback_days, 30, "the rest of the file's section stays");
    cr_assert_eq(cfg.batch_max, 5);
    cr_assert_eq(COMMISSION(cfg)->default_rate_bp, 250, "a section absent from the file is made");
}

Test(config_read, set_reaches_an_engine_section_without_a_file)
{
    static const char *const ov[] = {"attribution.half_life_days=21"};
    char err[ERR_LEN];
    cr_assert_eq(read_with(NULL, ov, 1, err), 0, "%s", err);
    cr_assert_eq(ATTRIBUTION(cfg)->half_life_days, 21);
    cr_assert_eq(ATTRIBUTION(cfg)->lookback_days, 90, "the section's other defaults stay");
}

Test(config_read, bad_overrides_are_refused_and_name_the_override)
{
    static const struct {
        const char *ov, *want;
    } cases[] = {
        {"attribution.half_life_days=-3", "half_life_days"},
        {"attribution.bogus=1", "bogus"},
        {"nosuch.key=1", "nosuch"},
        {"batch_max", "batch_max"},
        {"batch_max=0", "batch_max"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[ERR_LEN];
        funnel_config_clear(&cfg);
        cr_assert_eq(read_with(NULL, &cases[i].ov, 1, err), FUNNEL_ECONFIG, "accepted %s",
                     cases[i].ov);
        cr_assert(strstr(err, cases[i].want), "%s: %s", cases[i].ov, err);
        cr_assert_null(cfg.database, "a refused read leaves the target as it was");
    }
}

Test(config_reload, removing_a_whole_section_warns_what_was_removed)
{
    funnel_config_t fresh;
    char err[ERR_LEN];
    cr_assert_eq(load_text("commission = { default_rate_bp = 500; };\n", &cfg, err), 0, "%s", err);
    defaults(&fresh); /* the file no longer has the section */
    mem_log_t m;
    mem_log_open(&m);
    funnel_config_reload(&cfg, &fresh, &m.log);
    fflush(m.log.out);
    cr_assert_eq(count_lines_with(m.buf, " warn "), 1, "%s", m.buf);
    cr_assert(strstr(m.buf, "section commission removed"), "%s", m.buf);
    cr_assert_eq(COMMISSION(cfg)->default_rate_bp, 0);
    mem_log_close(&m);
    funnel_config_clear(&fresh);
}

/* Emptying a list that makes an engine act (every SLA policy, every quota) while the section
 * stays is as silent a stop as removing the section: warned too, with what went. */
Test(config_reload, removing_every_policy_warns_what_was_removed)
{
    funnel_config_t fresh = {0};
    char err[ERR_LEN], line[128];
    cr_assert_eq(funnel_config_load(FUNNEL_SOURCE_DIR "/examples/funneld.conf",
                                    &funnel_engine_registry, &cfg, err, sizeof err),
                 0, "%s", err);
    size_t policies = SLA(cfg)->n_policies, quotas = SLA(cfg)->n_quotas;
    cr_assert_gt(policies, 0);
    cr_assert_gt(quotas, 0);
    cr_assert_eq(load_text("sla = { calendars = { office = { time_zone = \"UTC\"; weekdays = "
                           "[\"09:00-17:00\"]; }; }; };\n",
                           &fresh, err),
                 0, "%s", err);
    mem_log_t m;
    mem_log_open(&m);
    funnel_config_reload(&cfg, &fresh, &m.log);
    fflush(m.log.out);
    snprintf(line, sizeof line, "config reload: all %zu policies of section sla removed", policies);
    cr_assert(strstr(m.buf, line) && strstr(m.buf, " warn "), "%s", m.buf);
    snprintf(line, sizeof line, "config reload: all %zu quotas of section sla removed", quotas);
    cr_assert(strstr(m.buf, line), "%s", m.buf);
    mem_log_close(&m);
    funnel_config_clear(&fresh);
}

/* Engines keep the pointer to their section they were created with (core/engine.h): a reload
 * must rewrite that very section, not hand out a new one. */
Test(config_reload, a_section_is_replaced_in_place)
{
    funnel_config_t fresh = {0};
    char err[ERR_LEN];
    cr_assert_eq(load_text("commission = { default_rate_bp = 500; };\n", &cfg, err), 0, "%s", err);
    const funnel_commission_config_t *live = COMMISSION(cfg);
    cr_assert_eq(load_text("commission = { default_rate_bp = 700; };\n", &fresh, err), 0, "%s",
                 err);
    funnel_config_reload(&cfg, &fresh, NULL);
    cr_assert_eq(COMMISSION(cfg), live, "the engine's pointer stays valid");
    cr_assert_eq(live->default_rate_bp, 700, "and reads the new section");
    funnel_config_clear(&fresh);
}

/* funnelctl reads funneld.conf without the engines (no registry): their groups are skipped
 * unread, the core options are still checked, and no section is made. */
Test(config_load, without_engines_skips_their_sections_only)
{
    char err[ERR_LEN];
    write_file(cfg_path, "database = \"x.db\";\nsla = { bogus = 1; };\ncommission = { };\n");
    cr_assert_eq(funnel_config_load(cfg_path, NULL, &cfg, err, ERR_LEN), 0, "%s", err);
    cr_assert_str_eq(cfg.database, "x.db");
    cr_assert_null(funnel_config_section(&cfg, "sla"));
    write_file(cfg_path, "databse = \"x.db\";\n");
    cr_assert_eq(funnel_config_load(cfg_path, NULL, &want, err, ERR_LEN), FUNNEL_ECONFIG);
    cr_assert(strstr(err, "databse"), "%s", err);
    write_file(cfg_path, "sla = { bogus = 1; };\n");
    cr_assert_eq(funnel_config_load(cfg_path, &funnel_engine_registry, &want, err, ERR_LEN),
                 FUNNEL_ECONFIG, "with the engines their sections are checked");
}

/* ---- security and allow_insecure ---------------------------------------------------------- */

TestSuite(config_security, .init = setup, .fini = teardown);

Test(config_security, the_group_sets_both_files)
{
    char err[ERR_LEN];
    cr_assert_eq(load_text("security = { server_key = \"s.key\"; clients = \"c.conf\"; };\n"
                           "allow_insecure = true;\n",
                           &cfg, err),
                 0, "%s", err);
    cr_assert_str_eq(cfg.server_key, "s.key");
    cr_assert_str_eq(cfg.clients, "c.conf");
    cr_assert(cfg.allow_insecure);
}

Test(config_security, without_the_group_security_is_off)
{
    char err[ERR_LEN];
    cr_assert_eq(load_text("batch_max = 5;\n", &cfg, err), 0, "%s", err);
    cr_assert_null(cfg.server_key);
    cr_assert_null(cfg.clients);
    cr_assert_not(cfg.allow_insecure);
}

Test(config_security, errors_name_the_line_and_the_setting)
{
    expect_load_error("security = { server_key = \"s.key\"; };\n", 1,
                      "security: needs both server_key and clients");
    expect_load_error("\nsecurity = { server_key = \"s\"; clients = \"c\"; client = \"x\"; };\n", 2,
                      "unknown option 'security.client' (server_key, clients)");
    expect_load_error("security = \"on\";\n", 1,
                      "security: expected a group { server_key = ...; clients = ...; }");
    expect_load_error("security = { server_key = 1; clients = \"c\"; };\n", 1,
                      "security.server_key: expected a string");
    expect_load_error("allow_insecure = 1;\n", 1, "allow_insecure: expected true or false");
}

Test(config_security, set_reaches_the_group)
{
    static const char *const ov[] = {"security.clients=other.conf", "allow_insecure=true"};
    char err[ERR_LEN];
    write_file(cfg_path, "security = { server_key = \"s.key\"; clients = \"c.conf\"; };\n");
    int rc = funnel_config_read(cfg_path, &funnel_engine_registry, ov, 2, &cfg, err, ERR_LEN);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(cfg.clients, "other.conf");
    cr_assert_str_eq(cfg.server_key, "s.key");
    cr_assert(cfg.allow_insecure);
    funnel_config_clear(&cfg);
    static const char *const bad[] = {"allow_insecure=yes"};
    cr_assert_eq(funnel_config_read(NULL, &funnel_engine_registry, bad, 1, &cfg, err, ERR_LEN),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "allow_insecure: 'yes' is not true or false"), "%s", err);
}

/* What funneld itself checks on top (funnel_server_config_check): without security only
 * loopback endpoints, unless allow_insecure. */
static int server_check(const char *name, const char *ep, bool insecure, bool secure, char *err)
{
    funnel_config_clear(&cfg);
    defaults(&cfg);
    set(&cfg, name, ep);
    if (insecure)
        set(&cfg, "allow_insecure", "true");
    if (secure) {
        set(&cfg, "security.server_key", "s.key");
        set(&cfg, "security.clients", "c.conf");
    }
    err[0] = '\0';
    return funnel_server_config_check(&cfg, err, ERR_LEN);
}

Test(config_security, non_loopback_endpoints_need_security_or_allow_insecure)
{
    char err[ERR_LEN];
    static const char *const local[] = {"tcp://127.0.0.1:1",   "tcp://127.3.2.1:*",
                                        "tcp://localhost:5",   "tcp://[::1]:7",
                                        "ipc:///run/funnel/x", "inproc://x"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        cr_assert_eq(server_check("submit", local[i], false, false, err), 0, "%s: %s", local[i],
                     err);
    static const char *const remote[] = {
        "tcp://0.0.0.0:1", "tcp://*:2",         "tcp://10.0.0.5:3",          "tcp://[::]:4",
        "tcp://eth0:5",    "tcp://128.0.0.1:6", "tcp://localhost.evil.com:7"};
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
        cr_assert_eq(server_check("publish", remote[i], false, false, err), FUNNEL_ECONFIG, "%s",
                     remote[i]);
        char want[128];
        snprintf(want, sizeof want, "publish: '%s' is not a loopback address", remote[i]);
        cr_assert(strstr(err, want), "%s", err);
        cr_assert_eq(server_check("publish", remote[i], true, false, err), 0, "%s", err);
        cr_assert_eq(server_check("publish", remote[i], false, true, err), 0, "%s", err);
    }
    cr_assert_eq(server_check("connect", "tcp://crm:5556", false, false, err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, "connect: 'tcp://crm:5556' is not a loopback address"), "%s", err);
    cr_assert_eq(server_check("connect", "tcp://10.0.0.1:1;127.0.0.1:2", false, false, err), 0,
                 "%s", err);
}
