/* test_walbuf.c — walbuf (daemon/core/walbuf.c) under WAL write faults (its own program: the
 * fault VFS must be the default before walbuf registers, once per process).
 *
 * A fault VFS is made the default VFS before walbuf registers, so walbuf wraps it: it passes
 * everything to the unix VFS, except that a write to a WAL file fails (SQLITE_FULL, as a full
 * disk) while `fail_wal` is set, or once after the next WAL sync while `fail_after_sync` is set. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "walbuf.h"

static sqlite3_vfs fault_vfs, *unix_vfs;
static int fail_wal, fail_after_sync, armed, wal_write_faults;

typedef struct fault_file {
    sqlite3_file base;
    sqlite3_file *real;
    int is_wal;
} fault_file_t;

#define REAL(f) (((fault_file_t *)(f))->real)
static int f_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}
static int f_read(sqlite3_file *f, void *d, int n, sqlite3_int64 o)
{
    return REAL(f)->pMethods->xRead(REAL(f), d, n, o);
}
static int f_write(sqlite3_file *f, const void *d, int n, sqlite3_int64 o)
{
    fault_file_t *ff = (fault_file_t *)f;
    if (ff->is_wal && (fail_wal || armed)) {
        armed = 0;
        wal_write_faults++;
        return SQLITE_FULL;
    }
    return REAL(f)->pMethods->xWrite(REAL(f), d, n, o);
}
static int f_truncate(sqlite3_file *f, sqlite3_int64 s)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), s);
}
static int f_sync(sqlite3_file *f, int fl)
{
    if (((fault_file_t *)f)->is_wal && fail_after_sync)
        armed = 1;
    return REAL(f)->pMethods->xSync(REAL(f), fl);
}
static int f_size(sqlite3_file *f, sqlite3_int64 *s)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), s);
}
static int f_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}
static int f_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}
static int f_reserved(sqlite3_file *f, int *o)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), o);
}
static int f_fcntl(sqlite3_file *f, int op, void *a)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, a);
}
static int f_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}
static int f_dc(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int f_shm_map(sqlite3_file *f, int p, int s, int e, void volatile **o)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), p, s, e, o);
}
static int f_shm_lock(sqlite3_file *f, int o, int n, int fl)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl);
}
static void f_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}
static int f_shm_unmap(sqlite3_file *f, int d)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), d);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p)
{
    return REAL(f)->pMethods->xFetch(REAL(f), o, n, p);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), o, p);
}

static const sqlite3_io_methods fault_io = {
    3,          f_close,       f_read,      f_write, f_truncate, f_sync, f_size,
    f_lock,     f_unlock,      f_reserved,  f_fcntl, f_sector,   f_dc,   f_shm_map,
    f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

static int f_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags, int *out)
{
    (void)v;
    fault_file_t *ff = (fault_file_t *)file;
    memset(ff, 0, sizeof *ff);
    ff->real = (sqlite3_file *)(ff + 1);
    ff->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = unix_vfs->xOpen(unix_vfs, name, ff->real, flags, out);
    if (rc == SQLITE_OK)
        ff->base.pMethods = &fault_io;
    else if (ff->real->pMethods)
        ff->real->pMethods->xClose(ff->real);
    return rc;
}
static int f_delete(sqlite3_vfs *v, const char *n, int s)
{
    (void)v;
    return unix_vfs->xDelete(unix_vfs, n, s);
}
static int f_access(sqlite3_vfs *v, const char *n, int fl, int *o)
{
    (void)v;
    return unix_vfs->xAccess(unix_vfs, n, fl, o);
}
static int f_full(sqlite3_vfs *v, const char *n, int k, char *o)
{
    (void)v;
    return unix_vfs->xFullPathname(unix_vfs, n, k, o);
}
static int f_rand(sqlite3_vfs *v, int n, char *o)
{
    (void)v;
    return unix_vfs->xRandomness(unix_vfs, n, o);
}
static int f_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return unix_vfs->xSleep(unix_vfs, us);
}
static int f_time(sqlite3_vfs *v, double *o)
{
    (void)v;
    return unix_vfs->xCurrentTime(unix_vfs, o);
}
static int f_err(sqlite3_vfs *v, int n, char *o)
{
    (void)v;
    return unix_vfs->xGetLastError(unix_vfs, n, o);
}
static int f_time64(sqlite3_vfs *v, sqlite3_int64 *o)
{
    (void)v;
    return unix_vfs->xCurrentTimeInt64(unix_vfs, o);
}

/* The fault VFS as the default, then walbuf over it (walbuf wraps the default once). */
static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    unix_vfs = sqlite3_vfs_find("unix");
    fault_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fault_file_t) + unix_vfs->szOsFile,
        .mxPathname = unix_vfs->mxPathname,
        .zName = "fault",
        .xOpen = f_open,
        .xDelete = f_delete,
        .xAccess = f_access,
        .xFullPathname = f_full,
        .xRandomness = f_rand,
        .xSleep = f_sleep,
        .xCurrentTime = f_time,
        .xGetLastError = f_err,
        .xCurrentTimeInt64 = f_time64,
    };
    cr_assert_eq(sqlite3_vfs_register(&fault_vfs, 1), SQLITE_OK);
    cr_assert_eq(funnel_walbuf_register(), SQLITE_OK);
}

static fx_tmpdir_t dir;
static char path[300];

static void fresh_db(void)
{
    fx_tmpdir_make(&dir);
    snprintf(path, sizeof path, "%s/db", dir.path);
}

static void cleanup(void)
{
    fx_tmpdir_remove(&dir);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

/* A transaction large enough to spill frames to the WAL (cache of 10 pages), rolled back while
 * the disk is full: wb_shm_lock flushes the rolled-back transaction's buffered frames before the
 * UNLOCK of the WAL write lock, the flush fails, and wb_shm_lock returns without unlocking
 * (SQLite ignores the unlock's result). The write lock stays held until this connection's next
 * write transaction: another connection's write is SQLITE_BUSY meanwhile. With SQLite's own VFS
 * a rollback writes nothing to the WAL and the same sequence succeeds. */
static void spill_rollback_on_full_disk(const char *vfs)
{
    setup();
    fresh_db();
    sqlite3 *db = NULL, *other = NULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                 SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode = WAL; PRAGMA cache_size = 10;"
                " CREATE TABLE t (x BLOB); PRAGMA wal_checkpoint(TRUNCATE); BEGIN IMMEDIATE;");
    for (int i = 0; i < 50; i++)
        exec_ok(db, "INSERT INTO t VALUES (randomblob(1500))");
    fail_wal = 1; /* the disk is full now */
    wal_write_faults = 0;
    int rc = sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    fail_wal = 0; /* and has space again */
    cr_log_info("%s: ROLLBACK returned %d; WAL writes that failed during it: %d", vfs, rc,
                wal_write_faults);
    cr_assert_eq(rc, SQLITE_OK);

    cr_assert_eq(sqlite3_open_v2(path, &other, SQLITE_OPEN_READWRITE, "fault"), SQLITE_OK);
    sqlite3_busy_timeout(other, 200);
    int rc_other = sqlite3_exec(other, "INSERT INTO t VALUES (2)", NULL, NULL, NULL);
    rc = sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT;", NULL, NULL, NULL);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    sqlite3_close(db);
    cleanup();
    cr_expect_eq(rc, SQLITE_OK, "%s: the writer's next transaction failed: %d (%s)", vfs, rc,
                 sqlite3_errstr(rc));
    cr_expect_eq(rc_other, SQLITE_OK, "%s: another connection's write failed: %d (%s)", vfs,
                 rc_other, sqlite3_errstr(rc_other));
}

Test(walbuf_fault, control_sqlite_vfs_spill_rollback_on_full_disk_keeps_writing)
{
    spill_rollback_on_full_disk("fault");
}

Test(walbuf_fault, spill_rollback_on_full_disk_must_not_leave_the_write_lock_held)
{
    spill_rollback_on_full_disk(FUNNEL_WALBUF_VFS);
}

/* synchronous = FULL on a file without powersafe overwrite (psow=0): SQLite pads the commit to
 * a sector with copies of the commit frame and syncs mid-way through the last one
 * (walWriteToLog). The part after the sync point stays in walbuf's buffer, flushed only by
 * wb_shm_barrier, which ignores a failure; SQLite then publishes the frame. COMMIT says OK while
 * a frame the WAL index names is not in the file: a reader fails (short read) and, once the
 * next commit writes past the hole, reads zeros as page content. */
static void padded_commit_tail_fails(const char *vfs, int *commit_rc, int *read_rc, char *check,
                                     size_t check_len)
{
    setup();
    fresh_db();
    char uri[320];
    snprintf(uri, sizeof uri, "file:%s?psow=0", path);
    sqlite3 *db = NULL, *reader = NULL;
    cr_assert_eq(sqlite3_open_v2(uri, &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI, vfs),
                 SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                " PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x TEXT); CREATE TABLE u (x TEXT);"
                " INSERT INTO t VALUES ('first');");
    fail_after_sync = 1; /* the first WAL write after the next WAL sync fails */
    armed = 0;
    wal_write_faults = 0;
    *commit_rc = sqlite3_exec(db, "INSERT INTO t VALUES ('second')", NULL, NULL, NULL);
    fail_after_sync = 0;
    armed = 0;
    cr_log_info("%s: COMMIT returned %d; WAL writes that failed: %d", vfs, *commit_rc,
                wal_write_faults);
    /* the next commit (of another table's page) writes past the frame: the hole reads as 0 */
    sqlite3_exec(db, "INSERT INTO u VALUES ('third')", NULL, NULL, NULL);

    cr_assert_eq(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, "unix"), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    *read_rc =
        sqlite3_prepare_v2(reader,
                           "SELECT coalesce((SELECT group_concat(x) FROM t), 'NULL') || ' / ' ||"
                           " (SELECT group_concat(integrity_check, '; ') FROM"
                           " pragma_integrity_check)",
                           -1, &st, NULL);
    snprintf(check, check_len, "?");
    if (*read_rc == SQLITE_OK && (*read_rc = sqlite3_step(st)) == SQLITE_ROW) {
        snprintf(check, check_len, "%s", (const char *)sqlite3_column_text(st, 0));
        *read_rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    sqlite3_close(reader);
    sqlite3_close(db);
    cleanup();
}

Test(walbuf_fault, a_commit_that_returned_ok_is_readable_after_a_padded_sync)
{
    int commit_rc, read_rc;
    char check[256];
    padded_commit_tail_fails(FUNNEL_WALBUF_VFS, &commit_rc, &read_rc, check, sizeof check);
    cr_log_info("walbuf: commit %d, reader %d, integrity_check '%s'", commit_rc, read_rc, check);
    if (commit_rc == SQLITE_OK)
        cr_expect(read_rc == SQLITE_OK && strcmp(check, "first,second / ok") == 0,
                  "COMMIT said OK but a reader gets %d (%s), integrity_check '%s'", read_rc,
                  sqlite3_errstr(read_rc), check);
}

Test(walbuf_fault, control_sqlite_vfs_padded_sync_fault_fails_the_commit)
{
    int commit_rc, read_rc;
    char check[256];
    padded_commit_tail_fails("fault", &commit_rc, &read_rc, check, sizeof check);
    cr_log_info("sqlite vfs: commit %d, reader %d, integrity_check '%s'", commit_rc, read_rc,
                check);
    cr_expect_neq(commit_rc, SQLITE_OK, "SQLite's own VFS reports the write's failure");
    cr_expect(read_rc == SQLITE_OK && strcmp(check, "first / ok") == 0);
}
