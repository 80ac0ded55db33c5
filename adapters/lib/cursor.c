/* cursor.c — the follow cursor on disk: one decimal sequence number, replaced atomically. */
#include "funnel/client.h"
#include "funnel/error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int funnel_cursor_load(const char *path, uint64_t *seq)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *seq = 0;
        return errno == ENOENT ? 0 : FUNNEL_EIO;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return FUNNEL_EIO;
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || (*end && *end != '\n'))
        return FUNNEL_EIO;
    *seq = v;
    return 0;
}

/* fsync of the directory makes the rename itself durable, not only the file's bytes. */
static int dir_sync(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return FUNNEL_EIO;
    int rc = fsync(fd) ? FUNNEL_EIO : 0;
    close(fd);
    return rc;
}

int funnel_cursor_save(const char *path, uint64_t seq)
{
    char tmp[4096], text[32];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return FUNNEL_EIO;
    int len = snprintf(text, sizeof text, "%" PRIu64 "\n", seq);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return FUNNEL_EIO;
    int rc = write(fd, text, (size_t)len) == len && fsync(fd) == 0 ? 0 : FUNNEL_EIO;
    if (close(fd))
        rc = FUNNEL_EIO;
    if (!rc && rename(tmp, path))
        rc = FUNNEL_EIO;
    if (rc)
        unlink(tmp);
    return rc ? rc : dir_sync(path);
}
