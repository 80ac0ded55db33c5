/* keyfile.c — czmq-compatible CURVE certificate files (see keyfile.h). */
#include "funnel/keyfile.h"

#include "funnel/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* A certificate is a few hundred bytes; anything far larger is not one. */
#define KEYFILE_MAX (64 * 1024)
#define ZPL_INDENT  4 /* ZPL: four spaces per level */

bool funnel_key_valid(const char *text)
{
    uint8_t raw[32];
    if (!text || strlen(text) != FUNNEL_KEY_Z85_LEN)
        return false;
    return zmq_z85_decode(raw, text) != NULL;
}

void funnel_keypair_wipe(funnel_keypair_t *kp)
{
    if (kp)
        explicit_bzero(kp->secret_key, sizeof kp->secret_key);
}

int funnel_keypair_new(funnel_keypair_t *out)
{
    memset(out, 0, sizeof *out);
    if (zmq_curve_keypair(out->public_key, out->secret_key) != 0) {
        funnel_keypair_wipe(out);
        return FUNNEL_EINVAL;
    }
    return 0;
}

/* Parsing state of one file: which level-0 section the line is in, what was found. */
typedef struct zpl {
    const char *path;
    bool want_secret;
    bool in_curve;
    funnel_keypair_t *kp;
    char *err;
    size_t err_len;
} zpl_t;

static int zpl_fail(zpl_t *z, int line, const char *what)
{
    snprintf(z->err, z->err_len, "%s:%d: %s", z->path, line, what);
    return FUNNEL_ECONFIG;
}

/* Reads the value after "name =": quoted (czmq always quotes; Z85 has no quote characters) or
 * bare up to a blank or a comment. Points *val at it, NUL-terminated in place. */
static int zpl_value(zpl_t *z, int line, char *p, char **val)
{
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '"' || *p == '\'') {
        char *end = strchr(p + 1, *p);
        if (!end)
            return zpl_fail(z, line, "a quoted value is not closed");
        *end = '\0';
        *val = p + 1;
        return 0;
    }
    *val = p;
    p += strcspn(p, " \t#");
    *p = '\0';
    return 0;
}

static int zpl_key(zpl_t *z, int line, const char *name, const char *val)
{
    bool secret = strcmp(name, "secret-key") == 0;
    if (!secret && strcmp(name, "public-key") != 0)
        return 0; /* czmq may add entries; they are not ours to judge */
    if (secret && !z->want_secret)
        return 0;
    char *dst = secret ? z->kp->secret_key : z->kp->public_key;
    if (dst[0])
        return zpl_fail(z, line, secret ? "secret-key given twice" : "public-key given twice");
    if (!funnel_key_valid(val))
        return zpl_fail(z, line,
                        secret ? "secret-key is not a 40-character Z85 key"
                               : "public-key is not a 40-character Z85 key");
    memcpy(dst, val, FUNNEL_KEY_Z85_LEN + 1);
    return 0;
}

static int zpl_line(zpl_t *z, int line, char *s)
{
    size_t spaces = strspn(s, " ");
    char *p = s + spaces;
    if (*p == '\0' || *p == '#' || *p == '\r')
        return 0;
    if (*p == '\t')
        return zpl_fail(z, line, "indented with a tab: ZPL indents with four spaces");
    if (spaces % ZPL_INDENT)
        return zpl_fail(z, line, "indentation is not a multiple of four spaces");
    size_t level = spaces / ZPL_INDENT;
    size_t name_len = strcspn(p, " \t=#\r");
    char name[64];
    if (name_len == 0 || name_len >= sizeof name)
        return zpl_fail(z, line, "expected a name");
    memcpy(name, p, name_len);
    name[name_len] = '\0';
    if (level == 0) {
        z->in_curve = strcmp(name, "curve") == 0;
        return 0;
    }
    if (level > 1 || !z->in_curve)
        return 0;
    p += name_len;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '=')
        return 0; /* a subsection under curve: nothing of ours */
    char *val;
    int rc = zpl_value(z, line, p + 1, &val);
    return rc ? rc : zpl_key(z, line, name, val);
}

/* Reads the whole file into buf (NUL-terminated), checking the mode when the secret matters. */
static int keyfile_slurp(const char *path, mode_t *mode, char *buf, size_t cap, char *err,
                         size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return FUNNEL_EIO;
    }
    struct stat st;
    int rc = 0;
    *mode = 0;
    if (fstat(fd, &st) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        rc = FUNNEL_EIO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "%s: not a regular file", path);
        rc = FUNNEL_ECONFIG;
    } else if ((size_t)st.st_size >= cap) {
        snprintf(err, err_len, "%s: %lld bytes is too large for a key file", path,
                 (long long)st.st_size);
        rc = FUNNEL_ECONFIG;
    }
    size_t len = 0;
    while (rc == 0 && len < cap - 1) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, err_len, "%s: %s", path, strerror(errno));
            rc = FUNNEL_EIO;
        }
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    *mode = st.st_mode;
    buf[len] = '\0';
    close(fd);
    if (rc == 0 && strlen(buf) != len) {
        snprintf(err, err_len, "%s: contains a NUL byte: not a key file", path);
        rc = FUNNEL_ECONFIG;
    }
    return rc;
}

int funnel_keyfile_read(const char *path, bool want_secret, funnel_keypair_t *out, char *err,
                        size_t err_len)
{
    memset(out, 0, sizeof *out);
    char buf[KEYFILE_MAX];
    mode_t mode;
    int rc = keyfile_slurp(path, &mode, buf, sizeof buf, err, err_len);
    zpl_t z = {.path = path, .want_secret = want_secret, .kp = out, .err = err, .err_len = err_len};
    int line = 1;
    for (char *s = buf, *nl; rc == 0 && s; s = nl ? nl + 1 : NULL, line++) {
        nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        rc = zpl_line(&z, line, s);
    }
    if (rc == 0 && !out->public_key[0])
        rc = zpl_fail(&z, line - 1, "no public-key in a curve section: not a key file");
    if (rc == 0 && want_secret && !out->secret_key[0])
        rc = zpl_fail(&z, line - 1,
                      "no secret-key: this is a public key file (.pub), the "
                      "secret one (.key) is needed here");
    /* Checked once the file is known to hold a secret, so a .pub given by mistake is named
     * as such rather than as a mode problem. */
    if (rc == 0 && want_secret && (mode & 077)) {
        snprintf(err, err_len,
                 "%s: holds a secret key but is open to group or others (mode %04o); "
                 "run chmod 600 %s",
                 path, (unsigned)(mode & 07777), path);
        rc = FUNNEL_ECONFIG;
    }
    explicit_bzero(buf, sizeof buf);
    if (rc)
        explicit_bzero(out, sizeof *out);
    return rc;
}

/* Creates path exclusively with mode and writes a czmq-style certificate into it. */
static int keyfile_put(const char *path, mode_t mode, const funnel_keypair_t *kp, bool secret,
                       char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s%s", path, strerror(errno),
                 errno == EEXIST ? " (a key in use is never replaced: remove it first)" : "");
        return FUNNEL_EIO;
    }
    char stamp[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S UTC", &tm);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return FUNNEL_EIO;
    }
    fprintf(f, "#   ****  Generated on %s by funnelctl keygen  ****\n", stamp);
    if (secret)
        fprintf(f, "#   ZeroMQ CURVE **Secret** Certificate\n"
                   "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n");
    else
        fprintf(f, "#   ZeroMQ CURVE Public Certificate\n"
                   "#   Exchange securely, or use a secure mechanism to verify the contents\n"
                   "#   of this file after exchange. Store public certificates in your home\n"
                   "#   directory, in the .curve subdirectory.\n");
    fprintf(f, "\nmetadata\ncurve\n    public-key = \"%s\"\n", kp->public_key);
    if (secret)
        fprintf(f, "    secret-key = \"%s\"\n", kp->secret_key);
    int bad = ferror(f);
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad) {
        snprintf(err, err_len, "%s: write failed: %s", path, strerror(errno));
        unlink(path);
        return FUNNEL_EIO;
    }
    return 0;
}

int funnel_keyfile_write(const char *base, const funnel_keypair_t *kp, char *err, size_t err_len)
{
    char key[4096], pub[4096];
    if (!funnel_key_valid(kp->public_key) || !funnel_key_valid(kp->secret_key)) {
        snprintf(err, err_len, "not a valid key pair");
        return FUNNEL_EINVAL;
    }
    if ((size_t)snprintf(key, sizeof key, "%s.key", base) >= sizeof key ||
        (size_t)snprintf(pub, sizeof pub, "%s.pub", base) >= sizeof pub) {
        snprintf(err, err_len, "%.64s...: name too long", base);
        return FUNNEL_EINVAL;
    }
    if (access(pub, F_OK) == 0) {
        snprintf(err, err_len, "%s: exists (a key in use is never replaced: remove it first)", pub);
        return FUNNEL_EIO;
    }
    int rc = keyfile_put(key, 0600, kp, true, err, err_len);
    if (rc == 0 && (rc = keyfile_put(pub, 0644, kp, false, err, err_len)) != 0)
        unlink(key);
    return rc;
}
