/* test_keyfile.c — CURVE key files: czmq's format both ways, the secret's mode, bad files,
 * and `funnelctl keygen`. */
#include "harness.h"

#include "funnel/error.h"
#include "funnel/keyfile.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

static fx_tmpdir_t tmp;

static void setup(void)
{
    fx_tmpdir_make(&tmp);
}

static void teardown(void)
{
    fx_tmpdir_remove(&tmp);
}

TestSuite(keyfile, .init = setup, .fini = teardown, .timeout = 30);

/* Writes text to tmp/name with mode; the path goes to path. */
static void put(const char *name, const char *text, mode_t mode, char *path, size_t len)
{
    fx_file_write(tmp.path, name, text, path, len);
    cr_assert_eq(chmod(path, mode), 0);
}

static int read_err(const char *name, const char *text, mode_t mode, bool secret, char *err)
{
    char path[512];
    funnel_keypair_t kp;
    put(name, text, mode, path, sizeof path);
    return funnel_keyfile_read(path, secret, &kp, err, 512);
}

Test(keyfile, a_written_pair_reads_back_from_key_and_pub)
{
    funnel_keypair_t kp, back;
    char base[512], path[520], err[512];
    cr_assert_eq(funnel_keypair_new(&kp), 0);
    cr_assert(funnel_key_valid(kp.public_key) && funnel_key_valid(kp.secret_key));
    snprintf(base, sizeof base, "%s/billing", tmp.path);
    cr_assert_eq(funnel_keyfile_write(base, &kp, err, sizeof err), 0, "%s", err);

    snprintf(path, sizeof path, "%s.key", base);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(funnel_keyfile_read(path, true, &back, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(back.public_key, kp.public_key);
    cr_assert_str_eq(back.secret_key, kp.secret_key);

    snprintf(path, sizeof path, "%s.pub", base);
    cr_assert_eq(funnel_keyfile_read(path, false, &back, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(back.public_key, kp.public_key);
    cr_assert_str_eq(back.secret_key, "", "a .pub carries no secret");
    cr_assert_eq(funnel_keyfile_read(path, true, &back, err, sizeof err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, "no secret-key"), "%s", err);

    /* The secret key of the .key file is not even read when only the public one is wanted. */
    snprintf(path, sizeof path, "%s.key", base);
    cr_assert_eq(funnel_keyfile_read(path, false, &back, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(back.secret_key, "");

    /* A key in use is never replaced. */
    cr_assert_eq(funnel_keyfile_write(base, &kp, err, sizeof err), FUNNEL_EIO);
    cr_assert(strstr(err, "never replaced"), "%s", err);
}

/* As czmq's zcert_save writes it (with metadata), and by hand with single quotes and comments.
 * The pair is the one in the ZeroMQ RFC 26 test vectors, so the public key must match. */
Test(keyfile, reads_czmq_certificates)
{
    static const char czmq[] =
        "#   ****  Generated on 2026-12-01 12:00:00 by CZMQ  ****\n"
        "#   ZeroMQ CURVE **Secret** Certificate\n"
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
        "\n"
        "metadata\n"
        "    name = \"billing\"\n"
        "    public-key = \"this is metadata, not the key\"\n"
        "curve\n"
        "    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n"
        "    secret-key = \"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6\"\n";
    char path[512], err[512];
    funnel_keypair_t kp;
    put("czmq.key", czmq, 0600, path, sizeof path);
    cr_assert_eq(funnel_keyfile_read(path, true, &kp, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(kp.public_key, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    cr_assert_str_eq(kp.secret_key, "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6");
    char derived[41];
    cr_assert_eq(zmq_curve_public(derived, kp.secret_key), 0);
    cr_assert_str_eq(derived, kp.public_key, "the pair belongs together");

    static const char hand[] = "# public part only\n"
                               "curve   # the section\n"
                               "    public-key = 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'\n";
    put("hand.pub", hand, 0644, path, sizeof path);
    cr_assert_eq(funnel_keyfile_read(path, false, &kp, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(kp.public_key, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
}

Test(keyfile, a_secret_open_to_others_is_refused_with_the_remedy)
{
    funnel_keypair_t kp;
    char base[512], path[520], err[512];
    cr_assert_eq(funnel_keypair_new(&kp), 0);
    snprintf(base, sizeof base, "%s/open", tmp.path);
    cr_assert_eq(funnel_keyfile_write(base, &kp, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s.key", base);
    cr_assert_eq(chmod(path, 0640), 0);
    cr_assert_eq(funnel_keyfile_read(path, true, &kp, err, sizeof err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, "mode 0640") && strstr(err, "chmod 600"), "%s", err);
    cr_assert_str_eq(kp.secret_key, "", "nothing is handed out on failure");
    cr_assert_eq(funnel_keyfile_read(path, false, &kp, err, sizeof err), 0,
                 "the public part of it is no secret");
}

Test(keyfile, bad_files_are_refused_with_the_line)
{
    char err[512];
    cr_assert_eq(read_err("tab.key", "curve\n\tpublic-key = \"x\"\n", 0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "tab.key:2:") && strstr(err, "tab"), "%s", err);
    cr_assert_eq(read_err("indent.key", "curve\n  public-key = \"x\"\n", 0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "four spaces"), "%s", err);
    cr_assert_eq(read_err("quote.key", "curve\n    public-key = \"abc\n", 0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "not closed"), "%s", err);
    cr_assert_eq(read_err("short.key", "curve\n    public-key = \"abc\"\n", 0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "not a 40-character Z85 key"), "%s", err);
    /* 40 characters, but '~' is outside Z85's alphabet. */
    cr_assert_eq(read_err("alpha.key",
                          "curve\n    public-key = \"~q:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n",
                          0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert_eq(read_err("twice.key",
                          "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n"
                          "    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n",
                          0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "twice"), "%s", err);
    cr_assert_eq(read_err("none.key", "metadata\n    public-key = \"x\"\n", 0600, false, err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "no public-key in a curve section"), "%s", err);
    cr_assert_eq(read_err("nul.key", "", 0600, false, err), FUNNEL_ECONFIG);

    funnel_keypair_t kp;
    char path[512];
    snprintf(path, sizeof path, "%s/missing.key", tmp.path);
    cr_assert_eq(funnel_keyfile_read(path, true, &kp, err, sizeof err), FUNNEL_EIO);
    cr_assert(strstr(err, "missing.key") && strstr(err, "No such file"), "%s", err);
    cr_assert_eq(funnel_keyfile_read(tmp.path, false, &kp, err, sizeof err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, "not a regular file"), "%s", err);
}

Test(keyfile, funnelctl_keygen_writes_both_files_and_prints_the_public_key)
{
    char base[512], path[520], out[4096], err[512];
    snprintf(base, sizeof base, "%s/crm", tmp.path);
    const char *argv[] = {FUNNELCTL_PATH, "keygen", base, NULL};
    cr_assert_eq(fx_run(argv, out, sizeof out), 0, "%s", out);
    funnel_keypair_t kp;
    snprintf(path, sizeof path, "%s.key", base);
    cr_assert_eq(funnel_keyfile_read(path, true, &kp, err, sizeof err), 0, "%s", err);
    char line[FUNNEL_KEY_Z85_LEN + 3];
    snprintf(line, sizeof line, "\n%s\n", kp.public_key);
    cr_assert(strstr(out, line) || strncmp(out, line + 1, sizeof line - 2) == 0,
              "the public key on a line of its own: %s", out);
    char derived[41];
    cr_assert_eq(zmq_curve_public(derived, kp.secret_key), 0);
    cr_assert_str_eq(derived, kp.public_key);

    cr_assert_eq(fx_run(argv, out, sizeof out), 1, "a second keygen must not replace the key");
    cr_assert(strstr(out, "never replaced"), "%s", out);
    const char *usage[] = {FUNNELCTL_PATH, "keygen", NULL};
    cr_assert_eq(fx_run(usage, out, sizeof out), 2);
}
