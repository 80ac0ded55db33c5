/* walbuf.c — the WAL's appends in large writes (see walbuf.h). */
#include "walbuf.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bytes per write: ~30 frames of 4 KiB. The unix VFS writes at most 128 KiB - 1 bytes per call
 * (seekAndWrite masks the count with 0x1ffff, assuming no larger write ever comes). */
#define WALBUF_BYTES     (120 * 1024)
#define WAL_HEADER_BYTES 32 /* the WAL file's own header, before the first frame */
#define FRAME_HDR_BYTES  24 /* a frame's header: page, db size if commit, salts, sums */

typedef struct walbuf_file walbuf_file_t;
struct walbuf_file {
    sqlite3_file base;  /* pMethods: &walbuf_io, or NULL when the open failed */
    sqlite3_file *real; /* the wrapped VFS's file, in the same allocation after this struct */
    walbuf_file_t *wal; /* a database file: its connection's WAL file while open */
    walbuf_file_t *db;  /* a WAL file: its database's file */
    bool is_wal;        /* appends are buffered */
    uint8_t *buf;       /* pending bytes [off, off + len) of the file, not yet written */
    size_t len;
    sqlite3_int64 off;
    sqlite3_int64 commit_page; /* offset of the page of a commit frame just begun, or -1 */
    bool committed; /* a commit frame is written: what follows it (padding copies of it, a
                       frame cut at a sync point) goes straight to the file until the next
                       transaction's first frame or a new WAL's header */
};

static sqlite3_vfs walbuf_vfs;
static const sqlite3_io_methods walbuf_io;

static sqlite3_vfs *inner_vfs(void)
{
    return walbuf_vfs.pAppData;
}

static int flush(walbuf_file_t *f)
{
    if (!f->len)
        return SQLITE_OK;
    int rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
    f->len = 0; /* written or failed: a failed commit is rolled back, its frames never count */
    return rc;
}

/* The WAL of a database file's connection, flushed before SQLite's shared memory (the WAL
 * index, which tells other connections which frames exist) is touched. */
static int flush_wal_of(walbuf_file_t *db)
{
    return db->wal ? flush(db->wal) : SQLITE_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int wb_write(sqlite3_file *file, const void *data, int amt, sqlite3_int64 off)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    if (!f->is_wal)
        return f->real->pMethods->xWrite(f->real, data, amt, off);
    int rc = SQLITE_OK;
    if (f->len && (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)amt > WALBUF_BYTES))
        rc = flush(f);
    if (rc)
        return rc;
    bool ends_commit = off == f->commit_page;
    f->commit_page = -1;
    const uint8_t *bytes = data;
    if (amt == FRAME_HDR_BYTES && off >= WAL_HEADER_BYTES) {
        if (be32(bytes) && be32(bytes + 4)) /* a page and a database size: a commit frame */
            f->commit_page = off + FRAME_HDR_BYTES;
        else
            f->committed = false; /* the next transaction's frames */
    } else if (off < WAL_HEADER_BYTES) {
        f->committed = false; /* the WAL starts over */
    }
    if (!f->buf)
        f->buf = malloc(WALBUF_BYTES);
    /* Written at once: too large to buffer, no buffer, a commit frame's header that starts
     * nothing to append to (a checksum rewrite, or a commit of one page), or anything after a
     * commit frame: with synchronous=FULL on storage without powersafe overwrite SQLite pads
     * the commit with copies of its frame and syncs inside the last one, and a tail kept here
     * would reach the file only after SQLite published the commit, its error lost. */
    if (f->committed || !f->buf || (size_t)amt > WALBUF_BYTES || (f->commit_page >= 0 && !f->len))
        return f->real->pMethods->xWrite(f->real, data, amt, off);
    if (!f->len)
        f->off = off;
    memcpy(f->buf + f->len, data, (size_t)amt);
    f->len += (size_t)amt;
    if (!ends_commit)
        return SQLITE_OK;
    f->committed = true;
    return flush(f);
}

static int wb_close(sqlite3_file *file)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush(f);
    free(f->buf);
    f->buf = NULL;
    if (f->db)
        f->db->wal = NULL;
    if (f->wal)
        f->wal->db = NULL;
    int closed = f->real->pMethods->xClose(f->real);
    return rc ? rc : closed;
}

static int wb_read(sqlite3_file *file, void *data, int amt, sqlite3_int64 off)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush(f);
    return rc ? rc : f->real->pMethods->xRead(f->real, data, amt, off);
}

static int wb_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush(f);
    return rc ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wb_sync(sqlite3_file *file, int flags)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush(f);
    return rc ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wb_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush(f);
    return rc ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wb_lock(sqlite3_file *file, int lock)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    return f->real->pMethods->xLock(f->real, lock);
}

static int wb_unlock(sqlite3_file *file, int lock)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    return f->real->pMethods->xUnlock(f->real, lock);
}

static int wb_check_reserved(sqlite3_file *file, int *out)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wb_file_control(sqlite3_file *file, int op, void *arg)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    if (op == SQLITE_FCNTL_VFSNAME) { /* say this VFS is in the stack, as shims do */
        char *inner = NULL;
        f->real->pMethods->xFileControl(f->real, op, &inner);
        *(char **)arg = sqlite3_mprintf("%s/%s", FUNNEL_WALBUF_VFS, inner ? inner : "?");
        sqlite3_free(inner);
        return SQLITE_OK;
    }
    int rc = flush(f);
    return rc ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wb_sector_size(sqlite3_file *file)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int wb_device_characteristics(sqlite3_file *file)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int wb_shm_map(sqlite3_file *file, int page, int size, int extend, void volatile **out)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush_wal_of(f);
    return rc ? rc : f->real->pMethods->xShmMap(f->real, page, size, extend, out);
}

/* The WAL write lock's slot in SQLite's shared-memory locks (WAL_WRITE_LOCK in wal.c). */
#define SHM_WRITE_LOCK 0

/* A lock taken first writes what is buffered. An unlock is never refused (SQLite ignores its
 * result, and a refused one would leave the lock held) and writes nothing: every commit's
 * frames reach the file at its commit frame, so what is still buffered when the write lock is
 * released is a rolled-back transaction's, which no reader may see and none needs. */
static int wb_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    if (flags & SQLITE_SHM_UNLOCK) {
        if (f->wal && offset <= SHM_WRITE_LOCK && offset + n > SHM_WRITE_LOCK &&
            (flags & SQLITE_SHM_EXCLUSIVE))
            f->wal->len = 0;
        return f->real->pMethods->xShmLock(f->real, offset, n, flags);
    }
    int rc = flush_wal_of(f);
    return rc ? rc : f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

/* SQLite publishes a commit in the WAL index around this barrier. The commit's frames were
 * written when its commit frame was (wb_write), so this flush finds nothing in SQLite's write
 * sequence; it stays as the guard that no frame the index names is still in memory. */
static void wb_shm_barrier(sqlite3_file *file)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    flush_wal_of(f);
    f->real->pMethods->xShmBarrier(f->real);
}

static int wb_shm_unmap(sqlite3_file *file, int delete_flag)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush_wal_of(f);
    return rc ? rc : f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int wb_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **out)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    int rc = flush(f);
    return rc ? rc : f->real->pMethods->xFetch(f->real, off, amt, out);
}

static int wb_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    walbuf_file_t *f = (walbuf_file_t *)file;
    return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods walbuf_io = {
    .iVersion = 3,
    .xClose = wb_close,
    .xRead = wb_read,
    .xWrite = wb_write,
    .xTruncate = wb_truncate,
    .xSync = wb_sync,
    .xFileSize = wb_file_size,
    .xLock = wb_lock,
    .xUnlock = wb_unlock,
    .xCheckReservedLock = wb_check_reserved,
    .xFileControl = wb_file_control,
    .xSectorSize = wb_sector_size,
    .xDeviceCharacteristics = wb_device_characteristics,
    .xShmMap = wb_shm_map,
    .xShmLock = wb_shm_lock,
    .xShmBarrier = wb_shm_barrier,
    .xShmUnmap = wb_shm_unmap,
    .xFetch = wb_fetch,
    .xUnfetch = wb_unfetch,
};

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                   int *out_flags)
{
    (void)vfs;
    walbuf_file_t *f = (walbuf_file_t *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    f->commit_page = -1;
    sqlite3_vfs *inner = inner_vfs();
    int rc = inner->xOpen(inner, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (f->real->pMethods)
            f->real->pMethods->xClose(f->real);
        return rc;
    }
    /* The wrapped file's methods must have what walbuf_io forwards to (the unix VFS's do). */
    if (f->real->pMethods->iVersion < walbuf_io.iVersion) {
        f->real->pMethods->xClose(f->real);
        return SQLITE_CANTOPEN;
    }
    f->base.pMethods = &walbuf_io;
    if ((flags & SQLITE_OPEN_WAL) && name) {
        sqlite3_file *db = sqlite3_database_file_object(name);
        if (db && db->pMethods == &walbuf_io) {
            f->db = (walbuf_file_t *)db;
            f->db->wal = f;
            f->is_wal = true;
        }
    }
    return SQLITE_OK;
}

/* The rest is the wrapped VFS's. */
static int wb_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return inner_vfs()->xDelete(inner_vfs(), name, sync_dir);
}

static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return inner_vfs()->xAccess(inner_vfs(), name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return inner_vfs()->xFullPathname(inner_vfs(), name, n, out);
}

static void *wb_dlopen(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return inner_vfs()->xDlOpen(inner_vfs(), name);
}

static void wb_dlerror(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    inner_vfs()->xDlError(inner_vfs(), n, out);
}

static void (*wb_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return inner_vfs()->xDlSym(inner_vfs(), h, sym);
}

static void wb_dlclose(sqlite3_vfs *v, void *h)
{
    (void)v;
    inner_vfs()->xDlClose(inner_vfs(), h);
}

static int wb_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return inner_vfs()->xRandomness(inner_vfs(), n, out);
}

static int wb_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return inner_vfs()->xSleep(inner_vfs(), us);
}

static int wb_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return inner_vfs()->xCurrentTime(inner_vfs(), out);
}

static int wb_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return inner_vfs()->xGetLastError(inner_vfs(), n, out);
}

static int wb_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return inner_vfs()->xCurrentTimeInt64(inner_vfs(), out);
}

static int register_rc = SQLITE_OK;

static void walbuf_setup(void)
{
    sqlite3_vfs *inner = sqlite3_vfs_find(NULL);
    if (!inner || inner->iVersion < 2 || !inner->xCurrentTimeInt64) {
        register_rc = SQLITE_ERROR;
        return;
    }
    walbuf_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(walbuf_file_t) + inner->szOsFile,
        .mxPathname = inner->mxPathname,
        .zName = FUNNEL_WALBUF_VFS,
        .pAppData = inner,
        .xOpen = wb_open,
        .xDelete = wb_delete,
        .xAccess = wb_access,
        .xFullPathname = wb_full_pathname,
        .xDlOpen = wb_dlopen,
        .xDlError = wb_dlerror,
        .xDlSym = wb_dlsym,
        .xDlClose = wb_dlclose,
        .xRandomness = wb_randomness,
        .xSleep = wb_sleep,
        .xCurrentTime = wb_current_time,
        .xGetLastError = wb_last_error,
        .xCurrentTimeInt64 = wb_current_time64,
    };
    register_rc = sqlite3_vfs_register(&walbuf_vfs, 0);
}

int funnel_walbuf_register(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, walbuf_setup);
    return register_rc;
}
