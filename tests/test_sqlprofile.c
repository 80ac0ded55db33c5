/* test_sqlprofile.c — funneld's statement profiler (daemon/core/sqlprofile.h): what it counts
 * per statement, the pages each commit appended to the WAL, its snapshots and their format
 * (read back with the benchmark's reader, bench/support/profile.h, which is what uses it), and
 * the sql_profile option from the store to funneld's start.
 *
 * The profiler reads an injected clock that moves CLOCK_STEP_NS at each read: a statement run
 * alone (one read as it starts, one as it ends) costs exactly one step. */
#include <criterion/criterion.h>

#include "funnel/error.h"
#include "harness.h"
#include "profile.h"
#include "sqlprofile.h"
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_LEN    512
#define ROWS       1000
#define ROW_BYTES  200
#define INSERT_SQL "INSERT INTO t(v) VALUES (zeroblob(200))"
#define SELECT_ALL "SELECT count(*) FROM t WHERE length(v) > 0"

static fx_tmpdir_t tmp;
static char db_path[320], prof_path[320];
static uint64_t clock_now, clock_step;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return clock_now += clock_step;
}

static void setup(void)
{
    fx_tmpdir_make(&tmp);
    snprintf(db_path, sizeof db_path, "%s/p.db", tmp.path);
    snprintf(prof_path, sizeof prof_path, "%s/p.profile", tmp.path);
    clock_now = 0;
    clock_step = 1000;
}

static void teardown(void)
{
    fx_tmpdir_remove(&tmp);
}

TestSuite(sqlprofile, .init = setup, .fini = teardown);

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg ? msg : "");
}

/* A WAL database with the profiler on, clocked by fake_clock; SQLite's default checkpoints
 * off, so the WAL keeps every frame until a test checkpoints. */
static sqlite3 *profiled_open(void)
{
    sqlite3 *db = NULL;
    char err[ERR_LEN] = "";
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    exec(db, "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0");
    cr_assert_eq(funnel_sqlprofile_install(db, prof_path, fake_clock, NULL, err, sizeof err), 0,
                 "%s", err);
    return db;
}

static void insert_rows(sqlite3 *db, int n)
{
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, INSERT_SQL, -1, &st, NULL), SQLITE_OK);
    exec(db, "BEGIN");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    exec(db, "COMMIT");
    sqlite3_finalize(st);
}

/* The whole profile as one span, after the connection closed. */
static void profile_total(bench_prof_span_t *all, size_t *snapshots)
{
    bench_profile_t p;
    cr_assert_eq(bench_profile_read(prof_path, &p), 0, "the profile does not parse");
    *snapshots = p.n_snaps;
    cr_assert_eq(bench_profile_sum(&p, INT64_MIN, INT64_MAX, all), 0);
    bench_profile_clear(&p);
}

static uint64_t frames_total(const bench_prof_span_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < s->n_pages; i++)
        n += s->pages[i].frames;
    return n;
}

/* Frames of the span whose page the final database gives to owner. */
static uint64_t frames_of(const bench_prof_span_t *s, const char *owner)
{
    bench_prof_owners_t o;
    cr_assert_eq(bench_profile_owners_read(db_path, &o), 0);
    uint64_t n = bench_profile_owner_frames(s, &o, owner);
    bench_profile_owners_clear(&o);
    return n;
}

static int64_t query_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Counts, time and VM steps per statement text; every page of a new table written once by
 * the commit that filled it (its root page twice: CREATE TABLE wrote it first). */
Test(sqlprofile, counts_statements_and_the_pages_their_commit_wrote)
{
    sqlite3 *db = profiled_open();
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    insert_rows(db, ROWS);
    sqlite3_close(db);

    bench_prof_span_t all;
    size_t snapshots;
    profile_total(&all, &snapshots);
    cr_assert_eq(snapshots, 1, "one snapshot (at close) expected, %zu", snapshots);
    const bench_prof_stmt_t *ins = bench_profile_stmt(&all, INSERT_SQL);
    cr_assert_not_null(ins, "no line for the insert");
    cr_assert_eq(ins->calls, ROWS);
    cr_assert_eq(ins->ns, ROWS * clock_step, "each run is one clock step: %llu ns",
                 (unsigned long long)ins->ns);
    cr_assert_geq(ins->steps, 5 * ROWS, "VM steps per insert: %llu in all",
                  (unsigned long long)ins->steps);
    cr_assert_gt(ins->hits + ins->misses, 0);
    const bench_prof_stmt_t *commit = bench_profile_stmt(&all, "COMMIT");
    cr_assert_not_null(commit);
    cr_assert_eq(commit->calls, 1);

    int64_t pages_t = query_int("SELECT count(*) FROM dbstat WHERE name = 't'");
    cr_assert_geq(pages_t * 4096, ROWS * ROW_BYTES, "t has %lld pages", (long long)pages_t);
    cr_assert_eq(frames_of(&all, "t"), (uint64_t)pages_t + 1, "t: %llu frames for %lld pages",
                 (unsigned long long)frames_of(&all, "t"), (long long)pages_t);
    /* Page 1 (the schema and the file's size) by both commits. */
    cr_assert_eq(frames_of(&all, "sqlite_schema"), 2);
    cr_assert_eq(frames_total(&all), (uint64_t)pages_t + 3);
    cr_assert_eq(commit->writes, (uint64_t)pages_t + 1, "COMMIT wrote %llu pages",
                 (unsigned long long)commit->writes);
    bench_profile_span_clear(&all);
}

/* The writer's store resets the miss counter after commits (cache_adapt): the profiler reads
 * it without resetting and counts a drop as a fresh start, never as a wrap-around. */
Test(sqlprofile, a_miss_counter_reset_by_someone_else_is_not_a_wrap)
{
    sqlite3 *db = profiled_open();
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    insert_rows(db, ROWS);
    sqlite3_close(db);
    int64_t pages = query_int("SELECT count(*) FROM dbstat WHERE name = 't'");

    db = profiled_open();
    for (int round = 0; round < 2; round++) {
        int cur = 0, high = 0;
        sqlite3_db_release_memory(db); /* the next read misses every page */
        exec(db, SELECT_ALL);
        sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_MISS, &cur, &high, 1);
    }
    sqlite3_close(db);

    bench_prof_span_t all;
    size_t snapshots;
    profile_total(&all, &snapshots);
    const bench_prof_stmt_t *sel = bench_profile_stmt(&all, SELECT_ALL);
    cr_assert_not_null(sel);
    cr_assert_eq(sel->calls, 2);
    cr_assert(sel->misses >= 2 * (uint64_t)pages && sel->misses <= 2 * (uint64_t)pages + 8,
              "%llu misses for two reads of %lld pages", (unsigned long long)sel->misses,
              (long long)pages);
    bench_profile_span_clear(&all);
}

/* Frames of per-commit counts SQLite's WAL hook reports (the WAL's size after each commit;
 * it starts from 0 after a restart). */
static int wal_frames_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    int *sizes = arg;
    sizes[++sizes[0]] = frames;
    return SQLITE_OK;
}

/* A WAL that starts over (a checkpoint that truncates it) has new salts: the next commit's
 * frames are read from its top, not from where the old WAL ended. */
Test(sqlprofile, a_wal_that_starts_over_is_read_from_its_top)
{
    int sizes[8] = {0};
    sqlite3 *db = profiled_open();
    sqlite3_wal_hook(db, wal_frames_hook, sizes);
    exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    insert_rows(db, ROWS);
    cr_assert_eq(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
                 SQLITE_OK);
    insert_rows(db, 10);
    sqlite3_close(db);
    cr_assert_eq(sizes[0], 3, "three commits");
    uint64_t want = (uint64_t)sizes[2] + (uint64_t)sizes[3]; /* sizes[1] is in sizes[2] */

    bench_prof_span_t all;
    size_t snapshots;
    profile_total(&all, &snapshots);
    cr_assert_eq(frames_total(&all), want, "%llu frames counted, the WAL hook says %llu",
                 (unsigned long long)frames_total(&all), (unsigned long long)want);
    bench_profile_span_clear(&all);
}

/* A snapshot once a second of the injected clock, each with only what ran since the last;
 * the file is made of whole snapshots the reader accepts. */
Test(sqlprofile, a_snapshot_a_second_then_it_starts_over)
{
    clock_step = 300000000; /* 0.3 s a read: a run costs 0.3 s, a snapshot every second run */
    sqlite3 *db = profiled_open();
    for (int i = 0; i < 10; i++)
        exec(db, "SELECT 1");
    sqlite3_close(db);

    bench_profile_t p;
    cr_assert_eq(bench_profile_read(prof_path, &p), 0);
    cr_assert_geq(p.n_snaps, 5, "%zu snapshots for 10 runs of 0.6 s", p.n_snaps);
    uint64_t calls = 0;
    for (size_t i = 0; i < p.n_snaps; i++) {
        const bench_prof_stmt_t *st = bench_profile_stmt(&p.snaps[i], "SELECT 1");
        cr_assert_leq(st ? st->calls : 0, 2, "snapshot %zu has %llu runs", i,
                      (unsigned long long)(st ? st->calls : 0));
        cr_assert_leq(p.snaps[i].from_ms, p.snaps[i].to_ms);
        calls += st ? st->calls : 0;
    }
    cr_assert_eq(calls, 10);
    bench_profile_clear(&p);

    FILE *f = fopen(prof_path, "r");
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_eq(strncmp(line, "snapshot\t0\t", 11), 0, "first line: %s", line);
    fclose(f);
}

/* The store's writer with sql_profile on: its own statements are in the profile from its first
 * (the migrations); a file that cannot be opened fails the open, as a bad option should. */
Test(sqlprofile, the_store_writer_reports_its_statements)
{
    funnel_store_t *s = NULL;
    char err[ERR_LEN] = "";
    cr_assert_eq(funnel_store_open_profiled(db_path, FUNNEL_STORE_SYNC_NORMAL, prof_path, &s, err,
                                            sizeof err),
                 0, "%s", err);
    cr_assert_eq(funnel_store_begin(s), 0);
    cr_assert_eq(funnel_store_commit(s), 0);
    funnel_store_destroy(&s);

    bench_prof_span_t all;
    size_t snapshots;
    profile_total(&all, &snapshots);
    const bench_prof_stmt_t *begin = bench_profile_stmt(&all, "BEGIN IMMEDIATE");
    cr_assert_not_null(begin);
    cr_assert_geq(begin->calls, 1);
    cr_assert_gt(frames_total(&all), 0, "the migrations' commits wrote no page");
    bench_profile_span_clear(&all);
}

Test(sqlprofile, an_unwritable_profile_fails_the_open)
{
    funnel_store_t *s = NULL;
    char err[ERR_LEN] = "", bad[400];
    snprintf(bad, sizeof bad, "%s/no-such-dir/p.profile", tmp.path);
    cr_assert_eq(
        funnel_store_open_profiled(db_path, FUNNEL_STORE_SYNC_NORMAL, bad, &s, err, sizeof err),
        FUNNEL_EIO);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, bad), "%s", err);
}

/* funneld refuses to start, saying why, rather than running without the profile it was asked
 * for. */
Test(sqlprofile, funneld_with_an_unwritable_profile_does_not_start)
{
    char out[4096], set[400], db[400];
    snprintf(set, sizeof set, "sql_profile=%s/no-such-dir/p.profile", tmp.path);
    snprintf(db, sizeof db, "%s/f.db", tmp.path);
    int status = fx_run_funneld_on(db, set, out, sizeof out);
    cr_assert_neq(status, 0, "funneld started: %s", out);
    cr_assert_not_null(strstr(out, "no-such-dir/p.profile"), "%s", out);
}
