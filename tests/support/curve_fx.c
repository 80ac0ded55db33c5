/* curve_fx.c — see curve_fx.h. */
#include "curve_fx.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>

void fx_keys_make(const char *dir, const char *name, funnel_keypair_t *kp, char *key, char *pub,
                  size_t path_len)
{
    funnel_keypair_t pair;
    char base[512], err[512];
    cr_assert_eq(funnel_keypair_new(&pair), 0);
    snprintf(base, sizeof base, "%s/%s", dir, name);
    cr_assert_eq(funnel_keyfile_write(base, &pair, err, sizeof err), 0, "%s", err);
    if (key)
        snprintf(key, path_len, "%s.key", base);
    if (pub)
        snprintf(pub, path_len, "%s.pub", base);
    if (kp)
        *kp = pair;
    funnel_keypair_wipe(&pair);
}

void fx_curve_config_check(const char *exe, const char *dir, char *conf, char *key, char *pub,
                           size_t path_len)
{
    char missing[512], text[2048], out[4096];
    fx_keys_make(dir, "adapter", NULL, key, pub, path_len);
    snprintf(missing, sizeof missing, "%s/missing.key", dir);
    const char *argv[] = {exe, "--config", conf, NULL};

    snprintf(text, sizeof text, "key = \"%s\";\nserver_key = \"%s\";\n", missing, pub);
    fx_file_write(dir, "curve.conf", text, conf, path_len);
    cr_assert_eq(fx_run(argv, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "key, server_key: ") && strstr(out, missing), "%s", out);

    snprintf(text, sizeof text, "key = \"%s\";\nserver_key = \"%s\";\n", key, missing);
    fx_file_write(dir, "curve.conf", text, conf, path_len);
    cr_assert_eq(fx_run(argv, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, missing), "%s", out);

    snprintf(text, sizeof text, "key = \"%s\";\n", key);
    fx_file_write(dir, "curve.conf", text, conf, path_len);
    cr_assert_eq(fx_run(argv, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "both"), "%s", out);

    snprintf(text, sizeof text, "key = \"%s\";\nserver_key = \"%s\";\n", key, pub);
    fx_file_write(dir, "ok.conf", text, conf, path_len);
}
