/* fuzz_keyfile.c — the key file reader, funnel_keyfile_read, on a file's bytes: funneld's
 * server key (want_secret) and the adapters' server public key (without).
 *
 * Input: the file's bytes, handed over as an anonymous memory file (memfd, mode 0600) read
 * through /proc/self/fd, so nothing is left on disk. Invariants: a key read is a valid Z85
 * key; a secret is read only when asked for; a failure zeroes the pair and says why. */
#include "fuzz.h"

#include "funnel/keyfile.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void read_as(const char *path, bool want_secret)
{
    funnel_keypair_t kp;
    char err[512] = "";
    int rc = funnel_keyfile_read(path, want_secret, &kp, err, sizeof err);
    if (rc) {
        static const funnel_keypair_t zero;
        FUZZ_CHECK(err[0] && memcmp(&kp, &zero, sizeof kp) == 0);
        return;
    }
    FUZZ_CHECK(funnel_key_valid(kp.public_key));
    FUZZ_CHECK(want_secret ? funnel_key_valid(kp.secret_key) : kp.secret_key[0] == '\0');
    funnel_keypair_wipe(&kp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("funnel-fuzz-keyfile", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(fchmod(fd, 0600) == 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    read_as(path, false);
    read_as(path, true);
    close(fd);
    return 0;
}
