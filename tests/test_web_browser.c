/* test_web_browser.c — the browser tests (tests/browser/web.test.mjs: playwright-core driving
 * Debian's chromium) against a real funneld and funnel-web on the known stream of web_fx.h.
 * This program sets the world up, hands its addresses to node and asserts node's verdict. The
 * screenshots go to the build directory (web-screenshots/); docs/img/ holds copies. */
#include "web_fx.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static fx_web_t w;

static void start(void)
{
    fx_web_start(&w);
}

static void stop(void)
{
    fx_web_stop(&w);
}

TestSuite(web_browser, .init = start, .fini = stop, .timeout = 240);

Test(web_browser, page_in_chromium)
{
    char modules[512];
    snprintf(modules, sizeof modules, "%s/tests/browser/node_modules/playwright-core/package.json",
             FUNNEL_SOURCE_DIR);
    cr_assert_eq(access(modules, R_OK), 0,
                 "playwright-core is not installed: run `make deps` (npm ci in tests/browser)");
    cr_assert_eq(access("/usr/bin/chromium", X_OK), 0,
                 "Debian's chromium is not installed: run `make deps`");

    static char out[65536];
    char csv[400], url[64], ctl[2048], shots[300];
    const char *st_csv[] = {"statement", "--rep", "ann", "--period", w.period_ann, "--csv", NULL};
    cr_assert_eq(fx_ctl(&w.d, out, sizeof out, st_csv), 0, "%s", out);
    fx_file_write(w.tmp.path, "expected.csv", out, csv, sizeof csv);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", w.port);
    snprintf(ctl, sizeof ctl, "%s\n--submit\n%s\n--timeout-ms\n5000", FUNNELCTL_PATH, w.d.submit);
    snprintf(shots, sizeof shots, "web-screenshots");
    mkdir(shots, 0755);
    setenv("FW_URL", url, 1);
    setenv("FW_CTL", ctl, 1);
    setenv("FW_CSV", csv, 1);
    setenv("FW_PERIOD", w.period_ann, 1);
    setenv("FW_SHOTS", shots, 1);
    setenv("FW_TMP", w.tmp.path, 1);
    char script[512];
    snprintf(script, sizeof script, "%s/tests/browser/web.test.mjs", FUNNEL_SOURCE_DIR);
    const char *argv[] = {"/usr/bin/env", "node", script, NULL};
    int rc = fx_run(argv, out, sizeof out);
    fprintf(stderr, "%s", out);
    cr_assert_eq(rc, 0, "the browser tests failed (output above)");
}
