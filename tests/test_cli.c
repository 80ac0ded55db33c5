/* test_cli.c — the adapters' shared command-line reader (funnel_cli_parse), and the exit codes
 * the adapters give for what it returns. */
#include "harness.h"

#include "funnel/cfgtab.h"

#include <criterion/criterion.h>

static int parse(char **argv, int argc, const char **config, const char **ready)
{
    const funnel_cli_opt_t opts[] = {{"--config", config}, {"--ready-file", ready}};
    return funnel_cli_parse(argc, argv, opts, 2);
}

Test(cli, pairs_land_in_their_options_and_a_later_one_wins)
{
    char *argv[] = {"x", "--ready-file", "r", "--config", "a", "--config", "b", NULL};
    const char *config = NULL, *ready = NULL;
    cr_assert_eq(parse(argv, 7, &config, &ready), 0);
    cr_assert_str_eq(config, "b");
    cr_assert_str_eq(ready, "r");
    char *none[] = {"x", NULL};
    config = ready = NULL;
    cr_assert_eq(parse(none, 1, &config, &ready), 0);
    cr_assert_null(config);
}

Test(cli, help_unknown_options_and_missing_values)
{
    const char *config = NULL, *ready = NULL;
    char *help[] = {"x", "--config", "a", "--help", NULL};
    cr_assert_eq(parse(help, 4, &config, &ready), 1);
    char *unknown[] = {"x", "--confg", "a", NULL};
    cr_assert_eq(parse(unknown, 3, &config, &ready), -1);
    char *missing[] = {"x", "--config", NULL};
    cr_assert_eq(parse(missing, 2, &config, &ready), -1);
    /* A value that looks like an option is still the value. */
    char *value[] = {"x", "--config", "--help", NULL};
    cr_assert_eq(parse(value, 3, &config, &ready), 0);
    cr_assert_str_eq(config, "--help");
}

Test(cli, adapters_exit_0_on_help_and_2_on_a_bad_option)
{
    char out[4096];
    const char *const exes[] = {FUNNEL_WEBHOOK_PATH, FUNNEL_ALERT_PATH, FUNNEL_WEB_PATH};
    for (size_t i = 0; i < 3; i++) {
        const char *help[] = {exes[i], "--help", NULL};
        cr_assert_eq(fx_run(help, out, sizeof out), 0, "%s --help: %s", exes[i], out);
        cr_assert(strstr(out, "usage:"), "%s", out);
        const char *bad[] = {exes[i], "--bogus", "1", NULL};
        cr_assert_eq(fx_run(bad, out, sizeof out), 2, "%s --bogus: %s", exes[i], out);
        const char *missing[] = {exes[i], "--config", NULL};
        cr_assert_eq(fx_run(missing, out, sizeof out), 2, "%s --config: %s", exes[i], out);
    }
}
