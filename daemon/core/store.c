/* store.c — SQLite persistence for funneld.
 *
 * Keys are chosen so inserts land at the right edge of their B-trees: events and outbox rows are
 * keyed by an increasing integer; the one random-order index is events.event_id, which publishers
 * keep time-ordered by using UUIDv7/ULID ids (see docs/protocol.md).
 *
 * Each input envelope is stored once, in events: its republication in the outbox names the
 * events row (event_seq) and keeps an empty topic and envelope (from schema 4 on; rows written
 * before keep their topic text, which readers ignore), and the events row keeps the event's id
 * once, compactly (event_form.h). Events are the dedupe record and are kept
 * for good (exactly-once holds for a repeat however late); the outbox is pruned by retention. */
#include "store.h"

#include "checkpointer.h"
#include "event_form.h"
#include "funnel/grow.h"
#include "funnel/error.h"
#include "sqlprofile.h"
#include "walbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Each migration takes the schema from version i to i+1. Never edit one that has shipped. */
static const char *const migrations[] = {
    /* 1: the foundation */
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY,"
    "  event_id TEXT NOT NULL UNIQUE,"
    "  topic TEXT NOT NULL,"
    "  occurred_at_ms INTEGER NOT NULL,"
    "  received_at_ms INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  envelope BLOB NOT NULL);"
    "CREATE TABLE outbox ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  topic TEXT NOT NULL,"
    "  created_at_ms INTEGER NOT NULL,"
    "  envelope BLOB NOT NULL);"
    "CREATE TABLE dead_letters ("
    "  id INTEGER PRIMARY KEY,"
    "  received_at_ms INTEGER NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  event_id TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  detail TEXT NOT NULL,"
    "  payload BLOB,"
    "  payload_size INTEGER NOT NULL);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO meta VALUES ('published_seq', 0);",
    /* 2: with `security`, source is the authenticated client; what the envelope claimed is
     * kept beside it for audit (NULL: the event came without security, source is the claim) */
    "ALTER TABLE events ADD COLUMN claimed_source TEXT;",
    /* 3: the republished input is stored once. Its outbox row names the events row (event_seq)
     * and keeps an empty envelope; readers take the bytes from events. Rows written before keep
     * their copy (event_seq NULL) until retention prunes them: no rewrite of the table. */
    "ALTER TABLE outbox ADD COLUMN event_seq INTEGER;",
    /* 4: each event's id is kept once, compactly (event_form.h): a UUID id as its 16 bytes in
     * event_id and its index, and the stored envelope without the leading id field. Rows are
     * copied into a new table in seq order (UUIDv7 ids then append to the new index), which
     * also leaves the table's pages full. */
    "CREATE TABLE events_v4 ("
    "  seq INTEGER PRIMARY KEY,"
    "  event_id TEXT NOT NULL UNIQUE,"
    "  topic TEXT NOT NULL,"
    "  occurred_at_ms INTEGER NOT NULL,"
    "  received_at_ms INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  envelope BLOB NOT NULL,"
    "  claimed_source TEXT);"
    "INSERT INTO events_v4 SELECT seq, funnel_event_key(event_id), topic, occurred_at_ms, "
    "  received_at_ms, source, funnel_envelope_pack(event_id, envelope), claimed_source "
    "  FROM events ORDER BY seq;"
    "DROP TABLE events;"
    "ALTER TABLE events_v4 RENAME TO events;",
};
#define MIGRATIONS (int)(sizeof migrations / sizeof migrations[0])

/* The bytes of one dead letter as dead_letter_max_bytes counts them (CAST: length() of TEXT
 * counts characters). */
#define DEAD_BYTES                                                                                 \
    "coalesce(length(payload), 0) + length(CAST(topic AS BLOB)) + "                                \
    "length(CAST(event_id AS BLOB)) + length(CAST(reason AS BLOB)) + "                             \
    "length(CAST(detail AS BLOB))"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_EVENT_INSERT,
    ST_DEAD_INSERT,
    ST_OUTBOX_INSERT,
    ST_OUTBOX_READ,
    ST_OUTBOX_FIRST,
    ST_OUTBOX_LAST,
    ST_OUTBOX_PRUNE,
    ST_DEAD_PRUNE,
    ST_META_GET,
    ST_META_SET,
    ST_META_PUT,
    ST_EVENTS_LIST,
    ST_DEAD_LIST,
    ST_DEAD_USAGE,
    ST_DEAD_OLDEST,
    ST_DEAD_TRIM,
    ST_COUNTS,
    ST_COUNT_
};

/* Statements a read-only connection needs are marked; writers prepare all. */
static const struct {
    const char *sql;
    bool read;
} stmt_sql[ST_COUNT_] = {
    [ST_BEGIN] = {"BEGIN IMMEDIATE", false},
    [ST_COMMIT] = {"COMMIT", false},
    [ST_ROLLBACK] = {"ROLLBACK", false},
    [ST_SAVEPOINT] = {"SAVEPOINT ev", false},
    [ST_RELEASE] = {"RELEASE ev", false},
    [ST_ROLLBACK_TO] = {"ROLLBACK TO ev", false},
    [ST_EVENT_INSERT] = {"INSERT INTO events(event_id, topic, occurred_at_ms, received_at_ms, "
                         "source, envelope, claimed_source) VALUES (?,?,?,?,?,?,?) "
                         "ON CONFLICT(event_id) DO NOTHING",
                         false},
    [ST_DEAD_INSERT] = {"INSERT INTO dead_letters(received_at_ms, topic, event_id, reason, detail, "
                        "payload, payload_size) VALUES (?,?,?,?,?,?,?)",
                        false},
    [ST_OUTBOX_INSERT] = {"INSERT INTO outbox(topic, created_at_ms, envelope, event_seq) "
                          "VALUES (?,?,?,?)",
                          false},
    /* A row naming an event reads its topic and envelope there: NULL (caught by the reader)
     * would mean the event is gone, which the events' retention never allows while the outbox
     * names it. */
    [ST_OUTBOX_READ] =
        {"SELECT o.seq, CASE WHEN o.event_seq IS NULL THEN o.topic ELSE e.topic END, "
         "CASE WHEN o.event_seq IS NULL THEN o.envelope ELSE "
         "funnel_envelope(e.event_id, e.envelope) END, o.event_seq FROM outbox o "
         "LEFT JOIN events e ON e.seq = o.event_seq WHERE o.seq >= ? ORDER BY o.seq "
         "LIMIT ?",
         true},
    [ST_OUTBOX_FIRST] = {"SELECT min(seq), max(seq) FROM outbox", true},
    [ST_OUTBOX_LAST] = {"SELECT seq FROM sqlite_sequence WHERE name = 'outbox'", true},
    [ST_OUTBOX_PRUNE] = {"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE "
                         "created_at_ms < ? AND seq <= ? ORDER BY seq LIMIT ?)",
                         false},
    /* Chunked like the outbox prune, so one pass never holds the write lock for long. */
    [ST_DEAD_PRUNE] = {"DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE "
                       "received_at_ms < ? ORDER BY id LIMIT ?)",
                       false},
    [ST_META_GET] = {"SELECT value FROM meta WHERE key = ?", true},
    [ST_META_SET] = {"UPDATE meta SET value = ? WHERE key = ?", false},
    [ST_META_PUT] = {"INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", false},
    [ST_EVENTS_LIST] = {"SELECT * FROM (SELECT seq, funnel_event_id(event_id), topic, "
                        "occurred_at_ms, received_at_ms, source, funnel_envelope(event_id, "
                        "envelope), claimed_source FROM events ORDER BY seq DESC LIMIT ?) "
                        "ORDER BY seq",
                        true},
    [ST_DEAD_LIST] = {"SELECT * FROM (SELECT id, received_at_ms, topic, event_id, reason, detail, "
                      "payload, payload_size FROM dead_letters ORDER BY id DESC LIMIT ?) "
                      "ORDER BY id",
                      true},
    /* What dead_letter_max_bytes counts: payload and text bytes (DEAD_BYTES), not SQLite's
     * page overhead, so a sender can predict it; funnel_dead_letter_bytes is the same sum. */
    [ST_DEAD_USAGE] = {"SELECT count(*), coalesce(sum(" DEAD_BYTES "), 0) FROM dead_letters", true},
    [ST_DEAD_OLDEST] = {"SELECT count(*), coalesce(sum(" DEAD_BYTES "), 0) FROM (SELECT * FROM "
                        "dead_letters ORDER BY id LIMIT ?)",
                        true},
    [ST_DEAD_TRIM] = {"DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY "
                      "id LIMIT ?)",
                      false},
    [ST_COUNTS] = {"SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM dead_letters)",
                   true},
};

/* An outbox row appended in the open transaction, kept so it can be published after COMMIT
 * without reading it back. Its bytes are in the store's arena, named by offset because the
 * arena moves when it grows. */
typedef struct pending_row {
    uint64_t seq;
    size_t topic;    /* arena offset of the NUL-terminated topic */
    size_t envelope; /* arena offset of the envelope bytes, right after the topic */
    size_t len;      /* envelope bytes */
} pending_row_t;

/* Checkpoints once funnel_store_checkpoint() has taken them over (see store.h): it asks the
 * checkpointer thread for a pass once the WAL holds WAL_CHECKPOINT_PAGES frames, then after every
 * WAL_PASS_PAGES more. A page that several batches rewrite (a B-tree's right edge, an index's
 * inner pages) is copied once per pass, not once per batch; passes asked back to back after every
 * batch copied the hot pages again and again.
 *
 * The WAL starts over (its frames are overwritten from the first) only at a write transaction that
 * finds every frame copied back, which never happens behind a writer that commits while the thread
 * copies. So from WAL_RESTART_PAGES on, the pass asked for is the one the WAL restarts after: the
 * caller holds its next commit until funnel_store_checkpoint_pending() says the pass is done (a
 * few batches' frames and the fsyncs), and that commit restarts the WAL. The file is then
 * overwritten in place, never cut and grown again; journal_size_limit cuts it back only after a
 * reader kept it from restarting in time. COMMIT checkpoints by itself from WAL_HARD_PAGES on, so
 * a caller that stops calling cannot make the WAL grow without bound. */
#define WAL_CHECKPOINT_PAGES 4000
#define WAL_PASS_PAGES       2000
#define WAL_RESTART_PAGES    (WAL_CHECKPOINT_PAGES + 2 * WAL_PASS_PAGES)
#define WAL_HARD_PAGES       (2 * WAL_RESTART_PAGES)
/* The WAL at a restart: WAL_RESTART_PAGES frames, the batches committed while the pass ran (a
 * few thousand frames at most) and the headers. */
#define WAL_LIMIT_BYTES "45000000"

#define BUSY_WAIT_MS 5000 /* read-only connections and migrations wait this long for a lock */

#define ARENA_MIN      (64 * 1024)   /* first arena: a typical batch fits without regrowing */
#define ARENA_KEEP_MAX (1024 * 1024) /* a larger arena is freed at the next begin */

struct funnel_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT_];
    bool in_txn;         /* between begin and commit/rollback */
    pending_row_t *rows; /* outbox rows of the open (or last committed) transaction */
    size_t n_rows, cap_rows;
    uint8_t *arena; /* the bytes of rows[], back to back: one buffer reused by every batch
                       rather than two allocations per row */
    size_t arena_used, arena_cap;
    size_t savepoint_mark;     /* n_rows when the current savepoint was taken */
    bool committed;            /* rows[] belong to a committed transaction */
    funnel_outbox_row_t *view; /* rows[] as the public rows, for callers */
    size_t cap_view;
    uint8_t *scratch; /* an envelope's stored form when it is not a slice of the received */
    size_t cap_scratch;
    bool ckpt_deferred;          /* funnel_store_checkpoint() runs checkpoints, not COMMIT */
    funnel_checkpointer_t *ckpt; /* the thread that runs them; NULL: they run inline */
    int wal_pages;               /* frames in the WAL after the last commit, once deferred */
    int wal_asked;               /* wal_pages when the last pass was asked for */
    bool restart_pending;        /* the pass the WAL restarts after is asked for or running */
    int cache_kib;               /* the writer's page cache now; grown by cache_adapt() */
    char err[256];               /* message of the last failure; "" since begin/savepoint */
    bool txn_broken; /* a savepoint could not be released or rolled back: the transaction
                        holds an unknown part of an event, so only ROLLBACK is left */
    bool busy;       /* the last failure was SQLITE_BUSY/LOCKED: worth trying again */
    bool full;       /* the last failure was SQLITE_FULL: worth trying once space returns */
};

/* Keeps the message of a failure: the ROLLBACK that follows it would otherwise leave
 * sqlite3_errmsg() saying "not an error". */
static int fail(funnel_store_t *s)
{
    int code = sqlite3_errcode(s->db) & 0xff; /* primary code: SQLITE_BUSY_SNAPSHOT is busy too */
    snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
    s->busy = code == SQLITE_BUSY || code == SQLITE_LOCKED;
    s->full = code == SQLITE_FULL;
    return FUNNEL_ESTORE;
}

/* After SQLITE_FULL, IOERR or NOMEM SQLite may roll the whole transaction back by itself.
 * Writing on would then autocommit row by row, outside the batch: refuse until rollback. A
 * broken savepoint leaves the transaction open but holding part of an event: refused alike. */
static bool txn_lost(funnel_store_t *s)
{
    return s->in_txn && (s->txn_broken || sqlite3_get_autocommit(s->db));
}

static int lost(funnel_store_t *s)
{
    if (!s->err[0])
        snprintf(s->err, sizeof s->err, "transaction rolled back by SQLite after an error");
    s->busy = false; /* SQLite gives a transaction up after FULL, IOERR or NOMEM, not BUSY */
    return FUNNEL_ESTORE;
}

/* Runs a cached statement that returns no rows. */
static int exec_stmt(funnel_store_t *s, enum stmt_id id)
{
    sqlite3_stmt *st = s->stmt[id];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : fail(s);
}

int funnel_store_quick_check(funnel_store_t *s, char *err, size_t err_len)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "%s", sqlite3_errmsg(s->db));
        return FUNNEL_ESTORE;
    }
    int rc = sqlite3_step(st);
    const char *verdict = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    bool ok = verdict && strcmp(verdict, "ok") == 0;
    if (!ok)
        snprintf(err, err_len, "%s", verdict ? verdict : sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return ok ? 0 : FUNNEL_ESTORE;
}

const char *funnel_store_errmsg(const funnel_store_t *store)
{
    if (!store || !store->db)
        return "no database";
    return store->err[0] ? store->err : sqlite3_errmsg(store->db);
}

bool funnel_store_busy(const funnel_store_t *store)
{
    return store->busy;
}

bool funnel_store_full(const funnel_store_t *store)
{
    return store->full;
}

sqlite3 *funnel_store_db(funnel_store_t *store)
{
    return store->db;
}

bool funnel_store_in_transaction(const funnel_store_t *store)
{
    return !sqlite3_get_autocommit(store->db);
}

int funnel_store_schema_latest(void)
{
    return MIGRATIONS;
}

static int pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int funnel_store_schema_version(funnel_store_t *store)
{
    return pragma_int(store->db, "PRAGMA user_version");
}

/* The schema version of the core (module NULL, kept in PRAGMA user_version) or of an engine
 * module (kept in meta as 'schema.<module>'); 0 when never migrated, -1 on error. */
static int schema_version_get(sqlite3 *db, const char *module)
{
    if (!module)
        return pragma_int(db, "PRAGMA user_version");
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema.' || ?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : rc == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return v;
}

/* Applies the steps the database lacks, each in its own transaction together with the new
 * version number, so a crash leaves the schema at a whole version. */
static int migrate_schema(sqlite3 *db, const char *module, const char *const *steps, int n,
                          char *err, size_t err_len)
{
    const char *what = module ? module : "funneld";
    int have = schema_version_get(db, module);
    if (have < 0) {
        snprintf(err, err_len, "cannot read %s schema version: %s", what, sqlite3_errmsg(db));
        return FUNNEL_ESTORE;
    }
    if (have > n) {
        snprintf(err, err_len,
                 "database %s schema version %d is newer than this funneld understands (%d)", what,
                 have, n);
        return FUNNEL_ESTORE;
    }
    for (int v = have; v < n; v++) {
        char sql[192];
        char *msg = NULL;
        if (module)
            snprintf(sql, sizeof sql,
                     "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema.%s', %d); COMMIT;",
                     module, v + 1);
        else
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d; COMMIT;", v + 1);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, steps[v], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, err_len, "migration of %s to schema %d failed: %s", what, v + 1,
                     msg ? msg : sqlite3_errmsg(db));
            sqlite3_free(msg);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return FUNNEL_ESTORE;
        }
    }
    return 0;
}

/* Migrations run before the loop starts (or at engine creation): they may wait for another
 * process's lock as a read-only connection does. Afterwards the writer never waits (busy timeout
 * 0): it runs on funneld's loop thread, where waiting would stop acks, publishes, replays and
 * timers; a busy batch is kept and retried on a timer instead. */
static int migrate_waiting(sqlite3 *db, const char *module, const char *const *steps, int n,
                           char *err, size_t err_len)
{
    sqlite3_busy_timeout(db, BUSY_WAIT_MS);
    int rc = migrate_schema(db, module, steps, n, err, err_len);
    sqlite3_busy_timeout(db, 0);
    return rc;
}

static int migrate(sqlite3 *db, char *err, size_t err_len)
{
    return migrate_waiting(db, NULL, migrations, MIGRATIONS, err, err_len);
}

int funnel_store_migrate_module(funnel_store_t *store, const char *module, const char *const *steps,
                                int n, char *err, size_t err_len)
{
    if (store->in_txn) {
        snprintf(err, err_len, "%s: migrations cannot run inside a batch", module);
        return FUNNEL_EINVAL;
    }
    return migrate_waiting(store->db, module, steps, n, err, err_len);
}

int funnel_store_module_version(funnel_store_t *store, const char *module)
{
    return schema_version_get(store->db, module);
}

/* SQLite answers "PRAGMA journal_mode = WAL" with the mode it kept, without an error, when it
 * cannot switch (an in-memory database, a VFS without shared memory). The writer relies on WAL
 * (readers beside it, the checkpoint hook), so another mode refuses the open. */
static int wal_verify(sqlite3 *db, char *err, size_t err_len)
{
    sqlite3_stmt *st;
    char mode[32] = "?";
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "cannot read journal_mode: %s", sqlite3_errmsg(db));
        return FUNNEL_ESTORE;
    }
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (sqlite3_stricmp(mode, "wal") == 0)
        return 0;
    snprintf(err, err_len,
             "journal_mode is '%s', not WAL: funneld needs a database file on a "
             "local file system",
             mode);
    return FUNNEL_ESTORE;
}

/* The writer's page cache. SQLite's default (2 MB) holds a sliver of a database that has seen
 * a year of a funnel: every engine reads per lead or per client, all over the file, so the
 * kernel copied pages in and out (pread/pwrite dominated a profile of a 90k-event backfill) and
 * each event got slower as the file grew. But a big cache from the start costs appending: each
 * new page is a fresh allocation, never a recycled one (bench_ingest lost a fifth of its rate,
 * funneld's CPU time grew by 80%, its RSS from 19 to 145 MB). So the writer starts at SQLite's
 * default and doubles the cache after each transaction that read more than CACHE_GROW_MISSES
 * pages from the file, up to CACHE_MAX_KIB, which keeps peak RSS well below 500 MB. */
#define CACHE_GROW_MISSES 16
#define CACHE_MAX_KIB     262144

/* After a commit: grows the cache when the transaction had to read pages back (misses count
 * only pages read from the file or the WAL, not new ones). Best effort: a refused PRAGMA only
 * leaves the cache as it was. */
static void cache_adapt(funnel_store_t *s)
{
    int misses = 0, high = 0;
    if (s->cache_kib >= CACHE_MAX_KIB ||
        sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_MISS, &misses, &high, 1) != SQLITE_OK ||
        misses <= CACHE_GROW_MISSES)
        return;
    int kib = s->cache_kib > CACHE_MAX_KIB / 2 ? CACHE_MAX_KIB : 2 * s->cache_kib;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%d", kib);
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK)
        s->cache_kib = kib;
}

/* The cache in KiB as the connection has it now: a negative cache_size is KiB already, a
 * positive one counts pages. */
static int cache_kib_of(sqlite3 *db)
{
    int v = pragma_int(db, "PRAGMA cache_size");
    return v < 0 ? -v : (int)((int64_t)v * pragma_int(db, "PRAGMA page_size") / 1024);
}

static int configure(sqlite3 *db, bool read_only, funnel_store_sync_t sync, char *err,
                     size_t err_len)
{
    char *msg = NULL;
    /* journal_size_limit: a WAL that grew to WAL_HARD_PAGES while a backfill kept the
     * checkpointer behind is cut back to WAL_CHECKPOINT_PAGES once it starts over. */
    const char *sql = read_only ? ""
                      : sync == FUNNEL_STORE_SYNC_FULL
                          ? "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                            " PRAGMA journal_size_limit = " WAL_LIMIT_BYTES ";"
                          : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                            " PRAGMA journal_size_limit = " WAL_LIMIT_BYTES ";";
    sqlite3_busy_timeout(db, BUSY_WAIT_MS);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, err_len, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return FUNNEL_ESTORE;
    }
    return read_only ? 0 : wal_verify(db, err, err_len);
}

/* Process-wide SQLite settings, before its first use. Nothing here reads SQLite's memory
 * statistics, and keeping them costs a global mutex around every allocation, which SQLite builds
 * without lookaside memory (Debian's) make several times per statement. If SQLite is already
 * initialised the call is refused and changes nothing. */
static void sqlite_setup(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* The writer's VFS: its WAL appends go to the kernel in large writes (walbuf.h); SQLite's own
 * VFS if that one cannot be set up. Readers never append to the WAL. */
static const char *writer_vfs(void)
{
    return funnel_walbuf_register() == SQLITE_OK ? FUNNEL_WALBUF_VFS : NULL;
}

/* An existing file must already be a funneld database: one that is empty (truncated) or holds
 * something else would otherwise be turned into a new database, restarting the sequence numbers
 * subscribers rely on and forgetting every event_id seen. An unfinished first start (the file
 * created, the first migration not committed) is refused too; the message says what to do. */
static int existing_check(sqlite3 *db, const char *path, char *err, size_t err_len)
{
    static const char remedy[] = "restore it from a backup, or delete it (and its -wal file) to "
                                 "start a new, empty database";
    struct stat sb;
    if (stat(path, &sb) == 0 && sb.st_size == 0) {
        snprintf(err, err_len, "database %s exists but is empty (0 bytes): %s", path, remedy);
        return FUNNEL_ESTORE;
    }
    sqlite3_stmt *st = NULL;
    int found = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name IN ('events', 'outbox', 'meta')",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        found = sqlite3_column_int(st, 0);
    const char *why = found < 0 ? sqlite3_errmsg(db) : "it lacks funneld's tables";
    sqlite3_finalize(st);
    if (found == 3)
        return 0;
    snprintf(err, err_len, "%s is not a funneld database (%s): %s", path, why, remedy);
    return FUNNEL_ESTORE;
}

static int store_open(const char *path, bool read_only, funnel_store_sync_t sync,
                      const char *profile, funnel_store_t **out, char *err, size_t err_len)
{
    static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
    int rc = FUNNEL_ESTORE;
    *out = NULL;
    pthread_once(&sqlite_once, sqlite_setup);
    funnel_store_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return FUNNEL_ENOMEM;
    }
    /* A database is created only where no file exists: an empty or foreign file in its place
     * is refused before anything (journal_mode=WAL, migrations) writes to it. */
    struct stat sb;
    bool create = !read_only && stat(path, &sb) != 0 && errno == ENOENT;
    int flags = read_only ? SQLITE_OPEN_READONLY
                          : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX,
                        read_only ? NULL : writer_vfs()) != SQLITE_OK) {
        snprintf(err, err_len, "cannot open database %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail_db;
    }
    if (profile && (rc = funnel_sqlprofile_install(s->db, profile, NULL, NULL, err, err_len)))
        goto fail_db;
    if (!read_only && !create && (rc = existing_check(s->db, path, err, err_len)))
        goto fail_db;
    if (funnel_event_form_register(s->db) != SQLITE_OK) {
        snprintf(err, err_len, "cannot register functions: %s", sqlite3_errmsg(s->db));
        rc = FUNNEL_ESTORE;
        goto fail_db;
    }
    if ((rc = configure(s->db, read_only, sync, err, err_len)))
        goto fail_db;
    if (!read_only && (rc = migrate(s->db, err, err_len)))
        goto fail_db;
    s->cache_kib = cache_kib_of(s->db);
    if (read_only && pragma_int(s->db, "PRAGMA user_version") != MIGRATIONS) {
        snprintf(err, err_len, "database %s has schema %d, this build expects %d", path,
                 pragma_int(s->db, "PRAGMA user_version"), MIGRATIONS);
        rc = FUNNEL_ESTORE;
        goto fail_db;
    }
    for (int i = 0; i < ST_COUNT_; i++) {
        if (read_only && !stmt_sql[i].read)
            continue;
        if (sqlite3_prepare_v3(s->db, stmt_sql[i].sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, err_len, "cannot prepare statement: %s", sqlite3_errmsg(s->db));
            rc = FUNNEL_ESTORE;
            goto fail_stmts;
        }
    }
    *out = s;
    return 0;

fail_stmts:
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(s->stmt[i]);
fail_db:
    sqlite3_close(s->db);
    free(s);
    return rc;
}

int funnel_store_open(const char *path, bool read_only, funnel_store_sync_t sync,
                      funnel_store_t **out, char *err, size_t err_len)
{
    return store_open(path, read_only, sync, NULL, out, err, err_len);
}

int funnel_store_open_profiled(const char *path, funnel_store_sync_t sync, const char *profile,
                               funnel_store_t **out, char *err, size_t err_len)
{
    return store_open(path, false, sync, profile, out, err, err_len);
}

/* Forgets the pending rows after the first `keep`, and their bytes. */
static void rows_truncate(funnel_store_t *s, size_t keep)
{
    if (keep >= s->n_rows)
        return;
    s->n_rows = keep;
    s->arena_used = keep ? s->rows[keep - 1].envelope + s->rows[keep - 1].len : 0;
}

void funnel_store_destroy(funnel_store_t **store)
{
    if (!store || !*store)
        return;
    funnel_store_t *s = *store;
    if (s->in_txn)
        funnel_store_rollback(s);
    free(s->rows);
    free(s->arena);
    free(s->view);
    free(s->scratch);
    /* Before the writer's connection: the last one to close checkpoints and removes the WAL. */
    funnel_checkpointer_destroy(&s->ckpt);
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    free(s);
    *store = NULL;
}

int funnel_store_begin(funnel_store_t *s)
{
    if (s->in_txn)
        return FUNNEL_EINVAL;
    rows_truncate(s, 0);
    if (s->arena_cap > ARENA_KEEP_MAX) { /* one batch of huge rows must not pin the memory */
        free(s->arena);
        s->arena = NULL;
        s->arena_cap = 0;
    }
    s->committed = false;
    s->err[0] = '\0';
    s->busy = s->full = false;
    if (exec_stmt(s, ST_BEGIN))
        return FUNNEL_ESTORE;
    s->in_txn = true;
    return 0;
}

int funnel_store_commit(funnel_store_t *s)
{
    if (!s->in_txn)
        return FUNNEL_EINVAL;
    if (txn_lost(s) ? lost(s) : exec_stmt(s, ST_COMMIT)) {
        funnel_store_rollback(s);
        return FUNNEL_ESTORE;
    }
    s->in_txn = false;
    s->committed = true;
    cache_adapt(s);
    return 0;
}

void funnel_store_rollback(funnel_store_t *s)
{
    if (s->in_txn && !sqlite3_get_autocommit(s->db))
        exec_stmt(s, ST_ROLLBACK);
    s->in_txn = false;
    s->txn_broken = false;
    s->committed = false;
    rows_truncate(s, 0);
}

int funnel_store_savepoint(funnel_store_t *s)
{
    /* Outside BEGIN, SAVEPOINT would open a transaction behind the store's back. */
    if (!s->in_txn)
        return FUNNEL_EINVAL;
    if (txn_lost(s))
        return lost(s);
    s->err[0] = '\0';
    s->savepoint_mark = s->n_rows;
    return exec_stmt(s, ST_SAVEPOINT);
}

int funnel_store_savepoint_release(funnel_store_t *s)
{
    int rc = exec_stmt(s, ST_RELEASE);
    s->txn_broken = s->txn_broken || rc;
    return rc;
}

int funnel_store_savepoint_rollback(funnel_store_t *s)
{
    /* Keep the message of whatever failed (an engine's own statement, say) before the
     * rollback overwrites it. */
    if (!s->err[0] && sqlite3_errcode(s->db) != SQLITE_OK)
        fail(s);
    /* ROLLBACK TO keeps the savepoint open; RELEASE closes it with nothing left in it. */
    int rc = txn_lost(s) ? lost(s) : exec_stmt(s, ST_ROLLBACK_TO);
    if (!rc)
        rc = exec_stmt(s, ST_RELEASE);
    s->txn_broken = s->txn_broken || rc;
    rows_truncate(s, s->savepoint_mark);
    return rc;
}

/* The insert functions bind every parameter on every call, so their statements are never run
 * with a stale binding and need no sqlite3_clear_bindings (SQLITE_STATIC pointers left behind
 * after a call are never read). */
static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* Binds the event's id as its key (event_form.h): a UUID's 16 bytes (key is the caller's
 * buffer, alive until the step), any other id as its text. */
static void bind_event_key(sqlite3_stmt *st, int i, const char *id,
                           uint8_t key[FUNNEL_EVENT_KEY_UUID])
{
    id = id ? id : "";
    if (funnel_event_key_pack(id, strlen(id), key))
        sqlite3_bind_blob(st, i, key, FUNNEL_EVENT_KEY_UUID, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, i, id, -1, SQLITE_STATIC);
}

/* Binds the stored form of the envelope (event_form.h): the received bytes after the id field
 * (no copy), or in the rare marked form a copy in the store's scratch buffer. */
static int bind_event_envelope(funnel_store_t *s, sqlite3_stmt *st, int i,
                               const funnel_event_row_t *row)
{
    const char *id = row->event_id ? row->event_id : "";
    long skip = funnel_event_envelope_skip(id, strlen(id), row->envelope, row->envelope_len);
    if (skip >= 0) {
        sqlite3_bind_blob(st, i, row->envelope + skip, (int)(row->envelope_len - (size_t)skip),
                          SQLITE_STATIC);
        return 0;
    }
    if (funnel_grow(&s->scratch, &s->cap_scratch, row->envelope_len + 1, 1, 256)) {
        snprintf(s->err, sizeof s->err, "out of memory for an envelope of %zu bytes",
                 row->envelope_len);
        return FUNNEL_ENOMEM;
    }
    s->scratch[0] = 0x00; /* the mark: the whole envelope follows */
    if (row->envelope_len)
        memcpy(s->scratch + 1, row->envelope, row->envelope_len);
    sqlite3_bind_blob(st, i, s->scratch, (int)row->envelope_len + 1, SQLITE_STATIC);
    return 0;
}

int funnel_store_event_record(funnel_store_t *s, const funnel_event_row_t *row, int64_t *seq)
{
    if (txn_lost(s))
        return lost(s);
    sqlite3_stmt *st = s->stmt[ST_EVENT_INSERT];
    uint8_t key[FUNNEL_EVENT_KEY_UUID];
    int rc = bind_event_envelope(s, st, 6, row);
    if (rc)
        return rc;
    bind_event_key(st, 1, row->event_id, key);
    bind_text(st, 2, row->topic);
    sqlite3_bind_int64(st, 3, row->occurred_at_ms);
    sqlite3_bind_int64(st, 4, row->received_at_ms);
    bind_text(st, 5, row->source);
    if (row->claimed_source)
        sqlite3_bind_text(st, 7, row->claimed_source, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 7);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return fail(s);
    if (sqlite3_changes(s->db) == 0)
        return FUNNEL_EDUP;
    if (seq)
        *seq = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int funnel_store_dead_letter_add(funnel_store_t *s, const funnel_dead_letter_t *dl)
{
    if (txn_lost(s))
        return lost(s);
    sqlite3_stmt *st = s->stmt[ST_DEAD_INSERT];
    sqlite3_bind_int64(st, 1, dl->received_at_ms);
    bind_text(st, 2, dl->topic);
    bind_text(st, 3, dl->event_id);
    bind_text(st, 4, dl->reason);
    bind_text(st, 5, dl->detail);
    if (dl->payload && dl->payload_len)
        sqlite3_bind_blob(st, 6, dl->payload, (int)dl->payload_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)dl->payload_size);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : fail(s);
}

/* Makes room for n more bytes in the arena. */
static int arena_reserve(funnel_store_t *s, size_t n)
{
    if (s->arena_cap - s->arena_used >= n)
        return 0;
    size_t cap = s->arena_cap ? s->arena_cap : ARENA_MIN;
    while (cap - s->arena_used < n)
        cap *= 2;
    uint8_t *arena = realloc(s->arena, cap);
    if (!arena)
        return FUNNEL_ENOMEM;
    s->arena = arena;
    s->arena_cap = cap;
    return 0;
}

/* Keeps a copy of an appended outbox row for publishing after COMMIT. */
static int rows_push(funnel_store_t *s, uint64_t seq, const char *topic, const uint8_t *env,
                     size_t len)
{
    size_t topic_size = strlen(topic) + 1;
    if (funnel_grow(&s->rows, &s->cap_rows, s->n_rows + 1, sizeof *s->rows, 256))
        return FUNNEL_ENOMEM;
    if (arena_reserve(s, topic_size + len))
        return FUNNEL_ENOMEM;
    pending_row_t *r = &s->rows[s->n_rows++];
    *r = (pending_row_t){seq, s->arena_used, s->arena_used + topic_size, len};
    memcpy(s->arena + r->topic, topic, topic_size);
    if (len)
        memcpy(s->arena + r->envelope, env, len);
    s->arena_used = r->envelope + len;
    return 0;
}

/* Inserts one outbox row: its own topic and envelope copy (event_seq 0), or a reference to the
 * events row holding the same topic and bytes. Either way the pending list keeps the bytes for the
 * publish. */
static int outbox_insert(funnel_store_t *s, const char *topic, const uint8_t *envelope, size_t len,
                         int64_t event_seq, int64_t created_at_ms, uint64_t *seq)
{
    if (!s->in_txn)
        return FUNNEL_EINVAL;
    if (txn_lost(s))
        return lost(s);
    sqlite3_stmt *st = s->stmt[ST_OUTBOX_INSERT];
    bind_text(st, 1, event_seq ? "" : topic); /* a reference reads the event's topic */
    sqlite3_bind_int64(st, 2, created_at_ms);
    if (event_seq) {
        sqlite3_bind_zeroblob(st, 3, 0);
        sqlite3_bind_int64(st, 4, event_seq);
    } else {
        sqlite3_bind_blob(st, 3, envelope, (int)len, SQLITE_STATIC);
        sqlite3_bind_null(st, 4);
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return fail(s);
    uint64_t assigned = (uint64_t)sqlite3_last_insert_rowid(s->db);
    if (seq)
        *seq = assigned;
    return rows_push(s, assigned, topic, envelope, len);
}

int funnel_store_outbox_append(funnel_store_t *s, const char *topic, const uint8_t *envelope,
                               size_t len, int64_t created_at_ms, uint64_t *seq)
{
    return outbox_insert(s, topic, envelope, len, 0, created_at_ms, seq);
}

int funnel_store_outbox_append_event(funnel_store_t *s, int64_t event_seq, const char *topic,
                                     const uint8_t *envelope, size_t len, int64_t created_at_ms,
                                     uint64_t *seq)
{
    if (event_seq <= 0)
        return FUNNEL_EINVAL;
    return outbox_insert(s, topic, envelope, len, event_seq, created_at_ms, seq);
}

size_t funnel_store_outbox_pending(const funnel_store_t *s, const funnel_outbox_row_t **rows)
{
    *rows = NULL;
    if (!s->committed || s->n_rows == 0)
        return 0;
    /* rows[] names bytes by arena offset; callers get pointers. The view only ever grows. */
    funnel_store_t *m = (funnel_store_t *)s;
    if (m->cap_view < s->n_rows) {
        funnel_outbox_row_t *view = realloc(m->view, s->n_rows * sizeof *view);
        if (!view)
            return 0;
        m->view = view;
        m->cap_view = s->n_rows;
    }
    for (size_t i = 0; i < s->n_rows; i++) {
        const pending_row_t *r = &s->rows[i];
        m->view[i] = (funnel_outbox_row_t){r->seq, (const char *)s->arena + r->topic,
                                           s->arena + r->envelope, r->len};
    }
    *rows = m->view;
    return s->n_rows;
}

void funnel_store_outbox_pending_clear(funnel_store_t *s)
{
    if (s->committed) {
        rows_truncate(s, 0);
        s->committed = false;
    }
}

/* The WAL hook of a connection whose checkpoints are deferred; installing it turns SQLite's
 * wal_autocheckpoint off. Notes the WAL's size and checkpoints inside COMMIT only past the hard
 * bound, as the default hook would past 1000 pages. */
static int wal_committed(void *arg, sqlite3 *db, const char *name, int pages)
{
    funnel_store_t *s = arg;
    s->wal_pages = pages;
    if (pages >= WAL_HARD_PAGES)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

int funnel_store_checkpoint(funnel_store_t *s)
{
    if (s->in_txn || !s->stmt[ST_BEGIN]) /* inside a batch, or a read-only store */
        return FUNNEL_EINVAL;
    if (!s->ckpt_deferred) {
        sqlite3_wal_hook(s->db, wal_committed, s);
        s->ckpt_deferred = true;
        char why[200];
        const char *path = sqlite3_db_filename(s->db, "main");
        if (path && *path && funnel_checkpointer_new(path, &s->ckpt, why, sizeof why)) {
            /* Said once, through the caller's warning; checkpoints then run in this call. */
            snprintf(s->err, sizeof s->err, "%.200s; checkpoints run inline", why);
            return FUNNEL_ESTORE;
        }
    }
    int pages = s->wal_pages;
    if (pages < s->wal_asked) /* the WAL started over */
        s->wal_asked = 0;
    if (pages < WAL_CHECKPOINT_PAGES || pages - s->wal_asked < WAL_PASS_PAGES)
        return 0;
    /* The restart pass is asked once the thread is free: a commit held for it would otherwise
     * wait for the pass still running too. */
    if (s->ckpt && pages >= WAL_RESTART_PAGES && funnel_checkpointer_busy(s->ckpt))
        return 0;
    s->wal_asked = pages;
    if (!s->ckpt) {
        int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        /* BUSY: another connection is checkpointing, which is as good. */
        return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : fail(s);
    }
    s->restart_pending = pages >= WAL_RESTART_PAGES;
    return funnel_checkpointer_request(s->ckpt, s->err, sizeof s->err) ? FUNNEL_ESTORE : 0;
}

bool funnel_store_checkpoint_pending(funnel_store_t *s)
{
    if (s->restart_pending && !funnel_checkpointer_busy(s->ckpt))
        s->restart_pending = false;
    return s->restart_pending;
}

int funnel_store_checkpoint_settle(funnel_store_t *s)
{
    if (!s->ckpt)
        return 0;
    return funnel_checkpointer_wait(s->ckpt, s->err, sizeof s->err) ? FUNNEL_ESTORE : 0;
}

int funnel_store_outbox_read(funnel_store_t *s, uint64_t from_seq, size_t limit,
                             funnel_outbox_cb cb, void *arg)
{
    sqlite3_stmt *st = s->stmt[ST_OUTBOX_READ];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)from_seq);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    int rc, stop = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        funnel_outbox_row_t row = {
            .seq = (uint64_t)sqlite3_column_int64(st, 0),
            .topic = (const char *)sqlite3_column_text(st, 1),
            .envelope = sqlite3_column_blob(st, 2),
            .len = (size_t)sqlite3_column_bytes(st, 2),
        };
        if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
            /* Publishing nothing in its place would hide the loss from every subscriber. */
            snprintf(s->err, sizeof s->err,
                     "outbox row %llu names event %lld, which the events table no longer holds",
                     (unsigned long long)row.seq, (long long)sqlite3_column_int64(st, 3));
            sqlite3_reset(st);
            return FUNNEL_ESTORE;
        }
        if ((stop = cb(&row, arg)))
            break;
    }
    sqlite3_reset(st);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : fail(s);
}

static int single_int64(funnel_store_t *s, sqlite3_stmt *st, int64_t *a, int64_t *b)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *a = sqlite3_column_int64(st, 0);
        if (b)
            *b = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s);
}

int funnel_store_outbox_bounds(funnel_store_t *s, uint64_t *first, uint64_t *last)
{
    int64_t lo = 0, hi = 0, ever = 0;
    int rc = single_int64(s, s->stmt[ST_OUTBOX_FIRST], &lo, &hi);
    if (!rc)
        rc = single_int64(s, s->stmt[ST_OUTBOX_LAST], &ever, NULL);
    *first = (uint64_t)lo;
    *last = (uint64_t)(ever > hi ? ever : hi);
    return rc;
}

/* Runs a bound DELETE and reports how many rows went. */
static int run_delete(funnel_store_t *s, sqlite3_stmt *st, size_t *deleted)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    *deleted = rc == SQLITE_DONE ? (size_t)sqlite3_changes(s->db) : 0;
    return rc == SQLITE_DONE ? 0 : fail(s);
}

int funnel_store_outbox_prune(funnel_store_t *s, int64_t before_ms, uint64_t published_seq,
                              size_t limit, size_t *deleted)
{
    sqlite3_stmt *st = s->stmt[ST_OUTBOX_PRUNE];
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)published_seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return run_delete(s, st, deleted);
}

int funnel_store_dead_letters_prune(funnel_store_t *s, int64_t before_ms, size_t limit,
                                    size_t *deleted)
{
    sqlite3_stmt *st = s->stmt[ST_DEAD_PRUNE];
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    return run_delete(s, st, deleted);
}

int funnel_store_dead_letters_usage(funnel_store_t *s, int64_t *rows, int64_t *bytes)
{
    return single_int64(s, s->stmt[ST_DEAD_USAGE], rows, bytes);
}

int funnel_store_dead_letters_trim(funnel_store_t *s, size_t limit, size_t *deleted, int64_t *bytes)
{
    int64_t rows = 0;
    sqlite3_stmt *oldest = s->stmt[ST_DEAD_OLDEST], *trim = s->stmt[ST_DEAD_TRIM];
    *deleted = 0;
    *bytes = 0;
    sqlite3_bind_int64(oldest, 1, (sqlite3_int64)limit);
    int rc = single_int64(s, oldest, &rows, bytes);
    if (rc)
        return rc;
    sqlite3_bind_int64(trim, 1, (sqlite3_int64)limit);
    return run_delete(s, trim, deleted);
}

size_t funnel_dead_letter_bytes(const funnel_dead_letter_t *dl)
{
    return dl->payload_len + strlen(dl->topic) + strlen(dl->event_id) + strlen(dl->reason) +
           strlen(dl->detail);
}

int funnel_store_published_get(funnel_store_t *s, uint64_t *seq)
{
    sqlite3_stmt *st = s->stmt[ST_META_GET];
    int64_t v = 0;
    bind_text(st, 1, "published_seq");
    int rc = single_int64(s, st, &v, NULL);
    sqlite3_clear_bindings(st);
    *seq = (uint64_t)v;
    return rc;
}

int funnel_store_published_set(funnel_store_t *s, uint64_t seq)
{
    if (txn_lost(s))
        return lost(s);
    sqlite3_stmt *st = s->stmt[ST_META_SET];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    bind_text(st, 2, "published_seq");
    int rc = exec_stmt(s, ST_META_SET);
    sqlite3_clear_bindings(st);
    return rc;
}

/* meta key of the stop marker: 1 written by a clean stop, 0 while a writer runs. */
#define CLEAN_STOP_KEY "clean_stop"

int funnel_store_clean_stop_get(funnel_store_t *s, bool *clean)
{
    sqlite3_stmt *st = s->stmt[ST_META_GET];
    int64_t v = 0; /* absent (a database of an older build): not known to be clean */
    bind_text(st, 1, CLEAN_STOP_KEY);
    int rc = single_int64(s, st, &v, NULL);
    sqlite3_clear_bindings(st);
    *clean = !rc && v == 1;
    return rc;
}

int funnel_store_clean_stop_set(funnel_store_t *s, bool clean)
{
    if (!s->stmt[ST_META_PUT])
        return FUNNEL_EINVAL; /* read-only */
    if (txn_lost(s))
        return lost(s);
    sqlite3_stmt *st = s->stmt[ST_META_PUT];
    bind_text(st, 1, CLEAN_STOP_KEY);
    sqlite3_bind_int64(st, 2, clean ? 1 : 0);
    /* Outside a batch the statement is its own transaction: it may wait for another process's
     * lock as migrations do (at start and at the stop, not on the loop's hot path). */
    if (!s->in_txn)
        sqlite3_busy_timeout(s->db, BUSY_WAIT_MS);
    int rc = exec_stmt(s, ST_META_PUT);
    if (!s->in_txn)
        sqlite3_busy_timeout(s->db, 0);
    sqlite3_clear_bindings(st);
    return rc;
}

static sqlite3_int64 sql_limit(size_t limit)
{
    return limit ? (sqlite3_int64)limit : -1; /* SQLite: a negative LIMIT means none */
}

int funnel_store_events_list(funnel_store_t *s, size_t limit, funnel_event_cb cb, void *arg)
{
    sqlite3_stmt *st = s->stmt[ST_EVENTS_LIST];
    sqlite3_bind_int64(st, 1, sql_limit(limit));
    int rc, stop = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        funnel_event_row_t row = {
            .seq = sqlite3_column_int64(st, 0),
            .event_id = (const char *)sqlite3_column_text(st, 1),
            .topic = (const char *)sqlite3_column_text(st, 2),
            .occurred_at_ms = sqlite3_column_int64(st, 3),
            .received_at_ms = sqlite3_column_int64(st, 4),
            .source = (const char *)sqlite3_column_text(st, 5),
            .envelope = sqlite3_column_blob(st, 6),
            .envelope_len = (size_t)sqlite3_column_bytes(st, 6),
            .claimed_source = (const char *)sqlite3_column_text(st, 7),
        };
        if ((stop = cb(&row, arg)))
            break;
    }
    sqlite3_reset(st);
    return stop ? stop : rc == SQLITE_DONE ? 0 : fail(s);
}

int funnel_store_dead_letters_list(funnel_store_t *s, size_t limit, funnel_dead_letter_cb cb,
                                   void *arg)
{
    sqlite3_stmt *st = s->stmt[ST_DEAD_LIST];
    sqlite3_bind_int64(st, 1, sql_limit(limit));
    int rc, stop = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        funnel_dead_letter_t dl = {
            .id = sqlite3_column_int64(st, 0),
            .received_at_ms = sqlite3_column_int64(st, 1),
            .topic = (const char *)sqlite3_column_text(st, 2),
            .event_id = (const char *)sqlite3_column_text(st, 3),
            .reason = (const char *)sqlite3_column_text(st, 4),
            .detail = (const char *)sqlite3_column_text(st, 5),
            .payload = sqlite3_column_blob(st, 6),
            .payload_len = (size_t)sqlite3_column_bytes(st, 6),
            .payload_size = (size_t)sqlite3_column_int64(st, 7),
        };
        if ((stop = cb(&dl, arg)))
            break;
    }
    sqlite3_reset(st);
    return stop ? stop : rc == SQLITE_DONE ? 0 : fail(s);
}

int funnel_store_event_count(funnel_store_t *s, int64_t *events, int64_t *dead_letters)
{
    return single_int64(s, s->stmt[ST_COUNTS], events, dead_letters);
}
