/* test_store.c — unit tests for the SQLite store: migrations, deduplication, the transactional
 * outbox, dead letters, listings, and faults (failed commits, a full disk, crashes mid-write).
 *
 * Every test gets its own temporary directory; the "store" suite also opens a writer on a fresh
 * database there. The crash tests fork a child that writes through its own connection and dies
 * without committing, then check in the parent, SQLite-style, that the file is intact and holds
 * exactly what was committed. Children never call Criterion: they report through exit codes. */
#include <criterion/criterion.h>

#include "funnel/error.h"
#include "router.h"
#include "store.h"
#include "harness.h"
#include "sql_fx.h"

#include <signal.h>
#include <stddef.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ERR_LEN 512

static fx_tmpdir_t tmp;
static char db_path[320];
static funnel_store_t *store; /* the writer of the "store" suites; NULL elsewhere */
/* Non-NULL values for out-parameters a call must overwrite with NULL. */
static max_align_t poison;
static const funnel_outbox_row_t poison_row;

static void dir_setup(void)
{
    fx_tmpdir_make(&tmp);
    snprintf(db_path, sizeof db_path, "%s/funnel.db", tmp.path);
    store = NULL;
}

/* Opens path, asserting success; the caller destroys the store. */
static funnel_store_t *open_at(const char *path, bool read_only)
{
    char err[ERR_LEN] = "";
    funnel_store_t *s = NULL;
    int rc = funnel_store_open(path, read_only, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err);
    cr_assert_eq(rc, 0, "open %s (%s) failed: %d %s", path, read_only ? "ro" : "rw", rc, err);
    cr_assert_not_null(s);
    return s;
}

static void store_setup(void)
{
    dir_setup();
    store = open_at(db_path, false);
}

static void teardown(void)
{
    funnel_store_destroy(&store);
    fx_tmpdir_remove(&tmp);
}

/* One integer from a query on the store's own connection. */
static int64_t sql_int(funnel_store_t *s, const char *sql)
{
    return fx_sql_int(funnel_store_db(s), sql, NULL);
}

static void sql_exec(funnel_store_t *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(funnel_store_db(s), sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
}

/* PRAGMA integrity_check must answer the single row "ok". */
static void assert_integrity(funnel_store_t *s)
{
    sqlite3_stmt *st;
    sqlite3 *db = funnel_store_db(s);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    char verdict[256];
    snprintf(verdict, sizeof verdict, "%s", (const char *)sqlite3_column_text(st, 0));
    int next = sqlite3_step(st);
    sqlite3_finalize(st);
    cr_assert_str_eq(verdict, "ok", "integrity_check: %s", verdict);
    cr_assert_eq(next, SQLITE_DONE, "integrity_check reported more than one line");
}

static int64_t n_events(funnel_store_t *s)
{
    int64_t ev = -1, dl = -1;
    cr_assert_eq(funnel_store_event_count(s, &ev, &dl), 0);
    return ev;
}

static int64_t n_dead(funnel_store_t *s)
{
    int64_t ev = -1, dl = -1;
    cr_assert_eq(funnel_store_event_count(s, &ev, &dl), 0);
    return dl;
}

static int64_t n_outbox(funnel_store_t *s)
{
    return sql_int(s, "SELECT count(*) FROM outbox");
}

/* Records an event whose envelope is the text "env:<id>" and topic/source are fixed unless
 * given; returns the store's result. */
static int record_as(funnel_store_t *s, const char *id, const char *topic, int64_t at_ms)
{
    char env[128];
    int n = snprintf(env, sizeof env, "env:%s", id);
    funnel_event_row_t row = {
        .event_id = id,
        .topic = topic,
        .occurred_at_ms = at_ms,
        .received_at_ms = at_ms + 5,
        .source = "crm",
        .envelope = (const uint8_t *)env,
        .envelope_len = (size_t)n,
    };
    return funnel_store_event_record(s, &row, NULL);
}

static int record(funnel_store_t *s, const char *id)
{
    return record_as(s, id, "lead.created", 1000);
}

static bool event_exists(funnel_store_t *s, const char *id)
{
    const char *params[] = {id, NULL};
    int64_t n =
        fx_sql_int(funnel_store_db(s),
                   "SELECT count(*) FROM events WHERE funnel_event_id(event_id) = ?", params);
    cr_assert(n == 0 || n == 1, "event_id %s stored %lld times", id, (long long)n);
    return n == 1;
}

/* Appends an outbox row whose envelope is the text body; asserts success, returns its seq. */
static uint64_t append_at(funnel_store_t *s, const char *topic, const char *body, int64_t at_ms)
{
    uint64_t seq = 0;
    int rc = funnel_store_outbox_append(s, topic, (const uint8_t *)body, strlen(body), at_ms, &seq);
    cr_assert_eq(rc, 0, "append %s: %d %s", body, rc, funnel_store_errmsg(s));
    cr_assert_gt(seq, 0);
    return seq;
}

static uint64_t append(funnel_store_t *s, const char *body)
{
    return append_at(s, "sla.breached", body, 1000);
}

static void begin(funnel_store_t *s)
{
    int rc = funnel_store_begin(s);
    cr_assert_eq(rc, 0, "begin: %d %s", rc, funnel_store_errmsg(s));
}

static void commit(funnel_store_t *s)
{
    int rc = funnel_store_commit(s);
    cr_assert_eq(rc, 0, "commit: %d %s", rc, funnel_store_errmsg(s));
}

static void bounds(funnel_store_t *s, uint64_t *first, uint64_t *last)
{
    *first = *last = 12345; /* poison: both must be written */
    cr_assert_eq(funnel_store_outbox_bounds(s, first, last), 0, "%s", funnel_store_errmsg(s));
}

static uint64_t published(funnel_store_t *s)
{
    uint64_t seq = 12345;
    cr_assert_eq(funnel_store_published_get(s, &seq), 0, "%s", funnel_store_errmsg(s));
    return seq;
}

/* Rows collected by outbox_read, copied out of the callback. */
#define MAX_ROWS 64
typedef struct collected {
    size_t n;
    int stop_after; /* return 77 after this many rows; 0: never stop */
    uint64_t seq[MAX_ROWS];
    char topic[MAX_ROWS][32];
    char body[MAX_ROWS][32];
} collected_t;

static int collect_row(const funnel_outbox_row_t *row, void *arg)
{
    collected_t *c = arg;
    cr_assert_lt(c->n, MAX_ROWS);
    c->seq[c->n] = row->seq;
    snprintf(c->topic[c->n], sizeof c->topic[0], "%s", row->topic);
    snprintf(c->body[c->n], sizeof c->body[0], "%.*s", (int)row->len, (const char *)row->envelope);
    c->n++;
    return c->stop_after && (int)c->n == c->stop_after ? 77 : 0;
}

/* One row's envelope, copied out of the callback (which stops the read: 1). */
typedef struct first_row {
    size_t len;
    uint8_t bytes[512];
} first_row_t;

static void first_row_set(first_row_t *out, const uint8_t *bytes, size_t len)
{
    cr_assert_leq(len, sizeof out->bytes);
    out->len = len;
    if (len) /* a zero-length BLOB comes as NULL */
        memcpy(out->bytes, bytes, len);
}

static int copy_first_row(const funnel_outbox_row_t *row, void *arg)
{
    first_row_set(arg, row->envelope, row->len);
    return 1;
}

/* Records an event whose envelope is body and republishes it by reference, as the router does;
 * returns the outbox seq, *event_seq (optional) the events row. */
static uint64_t record_republished(funnel_store_t *s, const char *id, const char *body,
                                   int64_t *event_seq)
{
    int64_t ev = 0;
    uint64_t seq = 0;
    size_t len = strlen(body);
    funnel_event_row_t row = {.event_id = id,
                              .topic = "lead.created",
                              .source = "crm",
                              .envelope = (const uint8_t *)body,
                              .envelope_len = len};
    cr_assert_eq(funnel_store_event_record(s, &row, &ev), 0, "%s", funnel_store_errmsg(s));
    cr_assert_eq(funnel_store_outbox_append_event(s, ev, "lead.created", (const uint8_t *)body, len,
                                                  1000, &seq),
                 0, "%s", funnel_store_errmsg(s));
    if (event_seq)
        *event_seq = ev;
    return seq;
}

/* ---- open and migrations ------------------------------------------------------------------ */

TestSuite(store_open, .init = dir_setup, .fini = teardown);

/* In a test body, not in the fini: Criterion ignores assertions in a .fini hook. */
Test(store_open, destroy_nulls_the_pointer_and_accepts_null)
{
    funnel_store_t *s = open_at(db_path, false);
    funnel_store_destroy(&s);
    cr_assert_null(s, "funnel_store_destroy must NULL the caller's pointer");
    funnel_store_destroy(&s);
    funnel_store_destroy(NULL);
}

Test(store_open, creates_and_migrates_to_latest)
{
    cr_assert_gt(funnel_store_schema_latest(), 0);
    store = open_at(db_path, false);
    cr_assert_eq(funnel_store_schema_version(store), funnel_store_schema_latest());
    cr_assert_eq(access(db_path, F_OK), 0, "the database file must be created");
    cr_assert_eq(n_events(store), 0);
    cr_assert_eq(n_dead(store), 0);
    cr_assert_eq(published(store), 0);
    uint64_t first, last;
    bounds(store, &first, &last);
    cr_assert_eq(first, 0);
    cr_assert_eq(last, 0);
    /* The writer runs in WAL mode with NORMAL sync, as DESIGN.md measured. */
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM pragma_journal_mode WHERE "
                                "journal_mode = 'wal'"),
                 1);
    cr_assert_eq(sql_int(store, "PRAGMA synchronous"), 1);
    assert_integrity(store);
}

Test(store_open, full_sync_is_applied)
{
    char err[ERR_LEN] = "";
    cr_assert_eq(funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_FULL, &store, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(sql_int(store, "PRAGMA synchronous"), 2);
}

Test(store_open, reopen_is_idempotent_and_keeps_data)
{
    store = open_at(db_path, false);
    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    append(store, "one");
    cr_assert_eq(funnel_store_published_set(store, 1), 0);
    commit(store);
    funnel_store_destroy(&store);

    for (int i = 0; i < 3; i++) {
        store = open_at(db_path, false);
        cr_assert_eq(funnel_store_schema_version(store), funnel_store_schema_latest());
        cr_assert_eq(n_events(store), 1);
        cr_assert(event_exists(store, "ev-1"));
        cr_assert_eq(n_outbox(store), 1);
        cr_assert_eq(published(store), 1);
        cr_assert_eq(sql_int(store, "SELECT count(*) FROM meta"), 1,
                     "re-running migrations must not duplicate seed rows");
        assert_integrity(store);
        funnel_store_destroy(&store);
    }
}

/* A writer open that must fail: the message names the file and says what to do. */
static void assert_refused_and_untouched(const char *what, off_t size_before)
{
    char err[ERR_LEN] = "";
    funnel_store_t *s = (funnel_store_t *)&poison;
    cr_assert_eq(funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err),
                 FUNNEL_ESTORE, "%s must be refused", what);
    cr_assert_null(s);
    cr_assert(strstr(err, db_path) != NULL, "the error must name the file: %s", err);
    cr_assert(strstr(err, "backup") != NULL && strstr(err, "delete") != NULL,
              "the error must say what to do: %s", err);
    struct stat sb;
    cr_assert_eq(stat(db_path, &sb), 0);
    cr_assert_eq(sb.st_size, size_before, "%s must be left as it was", what);
}

/* A truncated database is not a new one: creating one there would restart the sequence numbers
 * subscribers hold and forget every event_id seen. */
Test(store_open, existing_empty_file_is_refused)
{
    FILE *f = fopen(db_path, "w");
    cr_assert_not_null(f);
    fclose(f);
    assert_refused_and_untouched("an empty file", 0);
}

Test(store_open, sqlite_file_of_another_program_is_refused)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "CREATE TABLE contacts(name TEXT)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct stat sb;
    cr_assert_eq(stat(db_path, &sb), 0);
    assert_refused_and_untouched("another program's database", sb.st_size);
}

/* The tables as schema 2 (the baseline before the outbox named events rows) made them. */
#define SCHEMA2_TABLES                                                                             \
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, topic TEXT NOT " \
    "NULL, occurred_at_ms INTEGER NOT NULL, received_at_ms INTEGER NOT NULL, source TEXT NOT "     \
    "NULL, envelope BLOB NOT NULL, claimed_source TEXT);"                                          \
    "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "            \
    "created_at_ms INTEGER NOT NULL, envelope BLOB NOT NULL);"                                     \
    "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_at_ms INTEGER NOT NULL, topic "   \
    "TEXT NOT NULL, event_id TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, payload "  \
    "BLOB, payload_size INTEGER NOT NULL);"                                                        \
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"

/* Writes a database file at db_path with sql, as an older build would have left it. */
static void db_make(const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* A database as the baseline (schema 2) left it: the outbox copies every republished input and
 * retention pruned its first rows, so the next seq comes from sqlite_sequence, not max(seq). */
static const char schema2_db[] = SCHEMA2_TABLES
    "INSERT INTO meta VALUES ('published_seq', 9);"
    "INSERT INTO events VALUES (1, 'old-1', 'lead.created', 1, 2, 'crm', x'0a01', NULL);"
    "INSERT INTO outbox VALUES (8, 'lead.created', 2, x'0a01');"
    "INSERT INTO outbox VALUES (9, 'sla.started', 2, x'0b02');"
    "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'outbox';"
    "PRAGMA user_version = 2;";

Test(store_open, schema_2_database_is_migrated_and_keeps_its_rows_and_seqs)
{
    db_make(schema2_db);

    store = open_at(db_path, false);
    cr_assert_eq(funnel_store_schema_version(store), funnel_store_schema_latest());
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM outbox WHERE event_seq IS NULL"), 2,
                 "rows written before keep their copies");
    begin(store);
    cr_assert_eq(record(store, "old-1"), FUNNEL_EDUP, "the dedupe record survives");
    cr_assert_eq(record_republished(store, "new-1", "NEW", NULL), 10,
                 "sequence numbers continue where the baseline left them");
    commit(store);

    collected_t c = {0};
    cr_assert_eq(funnel_store_outbox_read(store, 1, 10, collect_row, &c), 0);
    cr_assert_eq(c.n, 3);
    cr_assert_str_eq(c.body[0], "\n\x01");
    cr_assert_str_eq(c.body[1], "\x0b\x02");
    cr_assert_str_eq(c.body[2], "NEW");
    cr_assert_str_eq(c.topic[2], "lead.created");
    cr_assert_eq(c.seq[2], 10);
}

/* ---- the stored form of ids and envelopes (event_form.h) ---------------------------------- */

TestSuite(store_form, .init = store_setup, .fini = teardown);

#define UUID_A "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

/* An envelope as a conforming publisher encodes it: event_id (field 1) first, then
 * occurred_at_ms 1000 and source "crm". */
static size_t envelope_of(const char *id, uint8_t *out, size_t cap)
{
    static const uint8_t tail[] = {0x10, 0xe8, 0x07, 0x1a, 0x03, 'c', 'r', 'm'};
    size_t len = strlen(id);
    cr_assert_lt(len, 128);
    cr_assert_leq(2 + len + sizeof tail, cap);
    out[0] = 0x0a;
    out[1] = (uint8_t)len;
    memcpy(out + 2, id, len);
    memcpy(out + 2 + len, tail, sizeof tail);
    return 2 + len + sizeof tail;
}

/* Records the event (id, envelope bytes) and republishes it by reference as the router does;
 * returns the store's result of the record. */
static int record_bytes(funnel_store_t *s, const char *id, const uint8_t *env, size_t len)
{
    int64_t ev = 0;
    funnel_event_row_t row = {.event_id = id,
                              .topic = "lead.created",
                              .source = "crm",
                              .envelope = env,
                              .envelope_len = len};
    int rc = funnel_store_event_record(s, &row, &ev);
    if (!rc)
        cr_assert_eq(funnel_store_outbox_append_event(s, ev, "lead.created", env, len, 1000, NULL),
                     0, "%s", funnel_store_errmsg(s));
    return rc;
}

/* The last event as events_list gives it: id and envelope copied out. */
typedef struct listed_event {
    char id[160];
    first_row_t envelope;
} listed_event_t;

static int copy_event(const funnel_event_row_t *row, void *arg)
{
    listed_event_t *out = arg;
    snprintf(out->id, sizeof out->id, "%s", row->event_id);
    first_row_set(&out->envelope, row->envelope, row->envelope_len);
    return 0;
}

/* The newest event and the newest outbox row read back as id and the exact received bytes. */
static void assert_reads_back(funnel_store_t *s, const char *id, const uint8_t *env, size_t len)
{
    listed_event_t ev = {0};
    cr_assert_eq(funnel_store_events_list(s, 1, copy_event, &ev), 0, "%s", funnel_store_errmsg(s));
    cr_assert_str_eq(ev.id, id);
    cr_assert_eq(ev.envelope.len, len, "%s: envelope of %zu bytes listed as %zu", id, len,
                 ev.envelope.len);
    cr_assert(len == 0 || memcmp(ev.envelope.bytes, env, len) == 0, "%s: listed bytes differ", id);
    uint64_t first = 0, last = 0;
    bounds(s, &first, &last);
    first_row_t row = {0};
    cr_assert_eq(funnel_store_outbox_read(s, last, 1, copy_first_row, &row), 1, "%s",
                 funnel_store_errmsg(s));
    cr_assert_eq(row.len, len, "%s: envelope of %zu bytes replayed as %zu", id, len, row.len);
    cr_assert(len == 0 || memcmp(row.bytes, env, len) == 0, "%s: replayed bytes differ", id);
}

/* The id is the one thing every events row repeats three times as text (column, index and the
 * envelope's field 1): a UUID keeps 16 bytes in the column and the index, and none in the
 * envelope, and yet dedupes, lists and replays as received. */
Test(store_form, uuid_id_is_kept_once_in_16_bytes_and_reads_back_as_received)
{
    uint8_t env[128];
    size_t len = envelope_of(UUID_A, env, sizeof env);
    begin(store);
    cr_assert_eq(record_bytes(store, UUID_A, env, len), 0, "%s", funnel_store_errmsg(store));
    commit(store);
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM events WHERE typeof(event_id) = 'blob' AND "
                                "length(event_id) = 16"),
                 1, "a UUID id is kept as its 16 bytes");
    cr_assert_eq(sql_int(store, "SELECT length(envelope) FROM events"), (int64_t)len - 38,
                 "the envelope is kept without its id field (38 bytes)");
    assert_reads_back(store, UUID_A, env, len);
    cr_assert(event_exists(store, UUID_A));

    begin(store);
    cr_assert_eq(record_bytes(store, UUID_A, env, len), FUNNEL_EDUP, "a repeat is a duplicate");
    commit(store);
    cr_assert_eq(n_events(store), 1);
}

/* Only the canonical lowercase text is packed, so each id has one key: the upper-case text of
 * the same UUID is another id (as it always was), kept as text and deduped as text. */
Test(store_form, only_canonical_uuids_are_packed_and_every_id_keeps_its_own_key)
{
    static const char *const ids[] = {
        UUID_A,
        "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",  /* upper case */
        "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",      /* no dashes */
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",   /* short */
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5bc", /* long */
        "0190a1b2-c3d4-7e5f-8a9b_0c1d2e3f4a5b",  /* a dash elsewhere */
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g",  /* not hex */
        "lead-1",
    };
    size_t n = sizeof ids / sizeof ids[0];
    uint8_t env[160];
    begin(store);
    for (size_t i = 0; i < n; i++) {
        size_t len = envelope_of(ids[i], env, sizeof env);
        cr_assert_eq(record_bytes(store, ids[i], env, len), 0, "%s", ids[i]);
        assert_reads_back(store, ids[i], env, len);
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = envelope_of(ids[i], env, sizeof env);
        cr_assert_eq(record_bytes(store, ids[i], env, len), FUNNEL_EDUP, "%s", ids[i]);
    }
    commit(store);
    cr_assert_eq(n_events(store), (int64_t)n);
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM events WHERE typeof(event_id) = 'blob'"), 1);
}

/* Envelopes that do not start with their id as an encoder writes it are kept whole, and every
 * form reads back byte for byte. */
Test(store_form, every_envelope_reads_back_byte_identical)
{
    static const struct {
        const char *id;
        size_t len;
        uint8_t bytes[64];
    } cases[] = {
        /* only the id field */
        {"a", 3, {0x0a, 0x01, 'a'}},
        /* the id, then another field 1 (a later event_id wins in protobuf) */
        {"b", 6, {0x0a, 0x01, 'b', 0x0a, 0x01, 'x'}},
        /* the id, then a 0x00 byte */
        {"c", 4, {0x0a, 0x01, 'c', 0x00}},
        /* occurred_at first, the id after it */
        {"d", 5, {0x10, 0x01, 0x0a, 0x01, 'd'}},
        /* nothing at all */
        {"e", 0, {0}},
        /* a first field 1 that is another id */
        {"f", 5, {0x0a, 0x01, 'z', 0x10, 0x01}},
        /* the id's length as a longer varint than needed */
        {"g", 6, {0x0a, 0x81, 0x00, 'g', 0x10, 0x01}},
        /* a leading 0x00 */
        {"h", 2, {0x00, 0x10}},
        /* a UUID id after another field */
        {UUID_A, 40, {0x10, 0x01, 0x0a, 0x24, '0', '1', '9', '0', 'a', '1', 'b', '2', '-', 'c',
                      '3',  'd',  '4',  '-',  '7', 'e', '5', 'f', '-', '8', 'a', '9', 'b', '-',
                      '0',  'c',  '1',  'd',  '2', 'e', '3', 'f', '4', 'a', '5', 'b'}},
    };
    begin(store);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(record_bytes(store, cases[i].id, cases[i].bytes, cases[i].len), 0, "%s",
                     cases[i].id);
        assert_reads_back(store, cases[i].id, cases[i].bytes, cases[i].len);
    }
    commit(store);
}

/* A database of schema 3 (main before the compact ids): its rows are converted at the upgrade,
 * a repeat of an old id is still a duplicate, and the old events list and replay as before. */
static const char schema3_db[] = SCHEMA2_TABLES
    "ALTER TABLE outbox ADD COLUMN event_seq INTEGER;"
    "INSERT INTO meta VALUES ('published_seq', 2);"
    "INSERT INTO events VALUES (1, '" UUID_A "', 'lead.created', 1000, 1005, 'crm', x'0a24' || "
    "CAST('" UUID_A "' AS BLOB) || x'10e8071a0363726d', NULL);"
    "INSERT INTO events VALUES (2, 'old-2', 'lead.created', 1000, 1005, 'crm', x'1001', 'x');"
    "INSERT INTO outbox VALUES (1, 'lead.created', 1005, x'', 1);"
    "INSERT INTO outbox VALUES (2, 'lead.created', 1005, x'', 2);"
    "PRAGMA user_version = 3;";

Test(store_open, schema_3_database_gets_compact_ids_and_keeps_dedupe_and_bytes)
{
    db_make(schema3_db);
    uint8_t env[128];
    size_t len = envelope_of(UUID_A, env, sizeof env);

    store = open_at(db_path, false);
    cr_assert_eq(funnel_store_schema_version(store), funnel_store_schema_latest());
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM events WHERE typeof(event_id) = 'blob'"), 1,
                 "the old UUID id is converted");
    cr_assert_eq(sql_int(store, "SELECT length(envelope) FROM events WHERE seq = 1"),
                 (int64_t)len - 38);
    begin(store);
    cr_assert_eq(record_bytes(store, UUID_A, env, len), FUNNEL_EDUP, "old UUID id: duplicate");
    cr_assert_eq(record(store, "old-2"), FUNNEL_EDUP, "old text id: duplicate");
    commit(store);

    collected_t c = {0};
    first_row_t row = {0};
    cr_assert_eq(funnel_store_outbox_read(store, 1, 1, copy_first_row, &row), 1);
    cr_assert_eq(row.len, len);
    cr_assert(memcmp(row.bytes, env, len) == 0, "replay of the old event is byte-identical");
    cr_assert_eq(funnel_store_outbox_read(store, 2, 10, collect_row, &c), 0);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.body[0], "\x10\x01");
    listed_event_t ev = {0};
    cr_assert_eq(funnel_store_events_list(store, 2, copy_event, &ev), 0);
    cr_assert_str_eq(ev.id, "old-2");
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM events WHERE claimed_source = 'x'"), 1);
    assert_integrity(store);
}

/* The stop marker: absent (a new database, or one of an older build) reads as not clean, so the
 * first start checks; it survives a reopen; a read-only store cannot write it. */
Test(store_open, clean_stop_marker_round_trips_and_starts_unknown)
{
    bool clean = true;
    store = open_at(db_path, false);
    cr_assert_eq(funnel_store_clean_stop_get(store, &clean), 0);
    cr_assert_not(clean, "no marker yet: not known to be clean");
    cr_assert_eq(funnel_store_clean_stop_set(store, true), 0, "%s", funnel_store_errmsg(store));
    funnel_store_destroy(&store);

    store = open_at(db_path, false);
    cr_assert_eq(funnel_store_clean_stop_get(store, &clean), 0);
    cr_assert(clean);
    begin(store); /* inside a batch it joins the transaction: a rollback undoes it */
    cr_assert_eq(funnel_store_clean_stop_set(store, false), 0);
    funnel_store_rollback(store);
    cr_assert_eq(funnel_store_clean_stop_get(store, &clean), 0);
    cr_assert(clean);
    cr_assert_eq(funnel_store_clean_stop_set(store, false), 0);
    funnel_store_t *ro = open_at(db_path, true);
    cr_assert_eq(funnel_store_clean_stop_get(ro, &clean), 0);
    cr_assert_not(clean);
    cr_assert_eq(funnel_store_clean_stop_set(ro, true), FUNNEL_EINVAL);
    funnel_store_destroy(&ro);
}

Test(store_open, newer_schema_is_refused)
{
    sqlite3 *db;
    funnel_store_t *made = open_at(db_path, false); /* a funneld database, then "upgraded" */
    funnel_store_destroy(&made);
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", funnel_store_schema_latest() + 1);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    char err[ERR_LEN] = "";
    funnel_store_t *s = (funnel_store_t *)&poison; /* must be overwritten with NULL */
    int rc = funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err);
    cr_assert_eq(rc, FUNNEL_ESTORE);
    cr_assert_null(s);
    cr_assert(strstr(err, "newer") != NULL, "error must say the database is newer: %s", err);

    /* Nothing was touched: the version is still the newer one. */
    cr_assert_eq(fx_db_int(db_path, "PRAGMA user_version"), funnel_store_schema_latest() + 1);
}

Test(store_open, not_a_database_is_refused)
{
    FILE *f = fopen(db_path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 512; i++)
        fputs("this is not an SQLite file ", f);
    fclose(f);
    char err[ERR_LEN] = "";
    funnel_store_t *s = NULL;
    cr_assert_eq(funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err),
                 FUNNEL_ESTORE);
    cr_assert_null(s);
    cr_assert(strstr(err, db_path) != NULL && strstr(err, "not a funneld database") != NULL,
              "the error must name the file and say why: %s", err);
}

Test(store_open, read_only_missing_file_fails_and_creates_nothing)
{
    char err[ERR_LEN] = "";
    funnel_store_t *s = NULL;
    cr_assert_eq(funnel_store_open(db_path, true, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err),
                 FUNNEL_ESTORE);
    cr_assert_null(s);
    cr_assert(strstr(err, db_path) != NULL, "error must name the file: %s", err);
    cr_assert_neq(access(db_path, F_OK), 0, "a read-only open must not create the file");
}

Test(store_open, read_only_refuses_unmigrated_database)
{
    FILE *f = fopen(db_path, "w");
    cr_assert_not_null(f);
    fclose(f);
    char err[ERR_LEN] = "";
    funnel_store_t *s = NULL;
    cr_assert_eq(funnel_store_open(db_path, true, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err),
                 FUNNEL_ESTORE);
    cr_assert_null(s);
    cr_assert(strstr(err, "schema 0") != NULL, "%s", err);
}

Test(store_open, read_only_alongside_writer_sees_only_commits)
{
    store = open_at(db_path, false);
    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    append(store, "one");
    append(store, "two");
    commit(store);

    funnel_store_t *ro = open_at(db_path, true);
    cr_assert_eq(funnel_store_schema_version(ro), funnel_store_schema_latest());
    uint64_t first, last;
    bounds(ro, &first, &last);
    cr_assert_eq(first, 1);
    cr_assert_eq(last, 2);
    cr_assert_eq(n_events(ro), 1);

    /* The writer holds an open transaction: the reader is not blocked and sees the old
     * snapshot (WAL), never the uncommitted rows. */
    begin(store);
    cr_assert_eq(record(store, "ev-2"), 0);
    append(store, "three");
    bounds(ro, &first, &last);
    cr_assert_eq(last, 2);
    cr_assert_eq(n_events(ro), 1);
    collected_t c = {0};
    cr_assert_eq(funnel_store_outbox_read(ro, 1, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 2);

    commit(store);
    bounds(ro, &first, &last);
    cr_assert_eq(first, 1);
    cr_assert_eq(last, 3);
    cr_assert_eq(n_events(ro), 2);
    memset(&c, 0, sizeof c);
    cr_assert_eq(funnel_store_outbox_read(ro, 3, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.body[0], "three");

    /* A read-only store cannot start a write transaction or append. */
    cr_assert_neq(funnel_store_begin(ro), 0);
    uint64_t seq = 0;
    cr_assert_eq(funnel_store_outbox_append(ro, "t", (const uint8_t *)"x", 1, 1, &seq),
                 FUNNEL_EINVAL);
    funnel_store_destroy(&ro);
    cr_assert_null(ro);
}

Test(store_open, destroy_tolerates_null)
{
    funnel_store_destroy(NULL);
    funnel_store_t *s = NULL;
    funnel_store_destroy(&s);
    cr_assert_null(s);
}

Test(store_open, destroy_rolls_back_an_open_transaction)
{
    store = open_at(db_path, false);
    begin(store);
    cr_assert_eq(record(store, "ev-lost"), 0);
    append(store, "lost");
    funnel_store_destroy(&store);
    store = open_at(db_path, false);
    cr_assert_eq(n_events(store), 0);
    cr_assert_eq(n_outbox(store), 0);
}

/* ---- deduplication ------------------------------------------------------------------------ */

TestSuite(store_dedup, .init = store_setup, .fini = teardown);

/* Checks the single stored event is the first version of ev-1. */
static int first_version_only(const funnel_event_row_t *row, void *arg)
{
    int *calls = arg;
    (*calls)++;
    cr_assert_str_eq(row->event_id, "ev-1");
    cr_assert_str_eq(row->topic, "lead.created", "a duplicate must not overwrite the original");
    cr_assert_eq(row->occurred_at_ms, 1000);
    return 0;
}

Test(store_dedup, repeat_in_a_later_transaction_changes_nothing)
{
    begin(store);
    cr_assert_eq(record_as(store, "ev-1", "lead.created", 1000), 0);
    commit(store);
    cr_assert_eq(n_events(store), 1);

    begin(store);
    cr_assert_eq(record_as(store, "ev-1", "lead.closed", 2000), FUNNEL_EDUP);
    commit(store);
    cr_assert_eq(n_events(store), 1);
    int calls = 0;
    cr_assert_eq(funnel_store_events_list(store, 0, first_version_only, &calls), 0);
    cr_assert_eq(calls, 1);
}

Test(store_dedup, repeat_in_the_same_transaction_changes_nothing)
{
    begin(store);
    cr_assert_eq(record_as(store, "ev-1", "lead.created", 1000), 0);
    cr_assert_eq(record_as(store, "ev-1", "lead.closed", 2000), FUNNEL_EDUP);
    cr_assert_eq(record_as(store, "ev-1", "lead.created", 1000), FUNNEL_EDUP);
    cr_assert_eq(record(store, "ev-2"), 0);
    commit(store);
    cr_assert_eq(n_events(store), 2);
    cr_assert(event_exists(store, "ev-1"));
    cr_assert(event_exists(store, "ev-2"));
    cr_assert_eq(n_outbox(store), 0);
}

Test(store_dedup, repeat_after_a_rolled_back_savepoint_is_new)
{
    /* A failed event leaves no trace, so its retry is recorded rather than refused. */
    begin(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-1"), 0);
    funnel_store_savepoint_rollback(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-1"), 0);
    cr_assert_eq(funnel_store_savepoint_release(store), 0);
    commit(store);
    cr_assert_eq(n_events(store), 1);
}

/* Rolls the open transaction back, checks that nothing of it stayed, and that the next
 * transaction records ev-1 (a failed event leaves no trace behind). */
static void expect_rolled_back_then_clean(void)
{
    funnel_store_rollback(store);
    cr_assert_eq(n_events(store), 0);
    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    commit(store);
    cr_assert_eq(n_events(store), 1);
}

/* A transaction with ev-1 recorded under a savepoint that is then released behind the store's
 * back, so that the store's own ROLLBACK TO or RELEASE meets "no such savepoint". */
static void savepoint_released_behind_the_store(void)
{
    begin(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-1"), 0);
    sql_exec(store, "RELEASE ev");
}

/* When ROLLBACK TO (or RELEASE) fails, the event's rows may still be in the transaction: the
 * store must refuse to commit it rather than commit part of an event reported failed. */
Test(store_dedup, failed_savepoint_rollback_refuses_the_commit)
{
    savepoint_released_behind_the_store();
    cr_assert_neq(funnel_store_savepoint_rollback(store), 0, "ROLLBACK TO failed");
    cr_assert_neq(record(store, "ev-2"), 0, "nothing more is written in that transaction");
    cr_assert_neq(funnel_store_commit(store), 0, "the transaction holds part of an event");
    expect_rolled_back_then_clean();
}

Test(store_dedup, failed_savepoint_release_refuses_the_commit)
{
    savepoint_released_behind_the_store();
    cr_assert_neq(funnel_store_savepoint_release(store), 0, "RELEASE failed");
    cr_assert_neq(funnel_store_commit(store), 0, "what the transaction holds is unknown");
    expect_rolled_back_then_clean();
}

Test(store_dedup, repeat_after_a_rolled_back_transaction_is_new)
{
    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    expect_rolled_back_then_clean();
}

/* The writer needs WAL (readers beside it, group commit): a database where SQLite answers the
 * pragma with another mode (":memory:" keeps "memory") must be refused, not run in it. */
Test(store_dedup, writer_refuses_a_database_that_cannot_be_wal)
{
    funnel_store_t *mem = NULL;
    char err[ERR_LEN] = "";
    int rc = funnel_store_open(":memory:", false, FUNNEL_STORE_SYNC_NORMAL, &mem, err, sizeof err);
    funnel_store_destroy(&mem);
    cr_assert_eq(rc, FUNNEL_ESTORE, "opened without WAL");
    cr_assert(strstr(err, "WAL"), "%s", err);
}

/* ---- the outbox ----------------------------------------------------------------------------- */

TestSuite(store_outbox, .init = store_setup, .fini = teardown);

Test(store_outbox, append_assigns_strictly_increasing_seqs)
{
    uint64_t prev = 0;
    for (int batch = 0; batch < 3; batch++) {
        begin(store);
        for (int i = 0; i < 5; i++) {
            uint64_t seq = append(store, "x");
            cr_assert_gt(seq, prev, "seq %llu after %llu", (unsigned long long)seq,
                         (unsigned long long)prev);
            prev = seq;
        }
        commit(store);
    }
    cr_assert_eq(prev, 15, "a fresh outbox numbers 1, 2, 3... without gaps");
    /* The seq pointer is optional. */
    begin(store);
    cr_assert_eq(funnel_store_outbox_append(store, "t", (const uint8_t *)"y", 1, 1, NULL), 0);
    commit(store);
    uint64_t first, last;
    bounds(store, &first, &last);
    cr_assert_eq(first, 1);
    cr_assert_eq(last, 16);
}

Test(store_outbox, pending_is_visible_only_after_commit)
{
    const funnel_outbox_row_t *rows = &poison_row;
    begin(store);
    uint64_t s1 = append_at(store, "sla.breached", "first", 10);
    uint64_t s2 = append_at(store, "commission.accrued", "second", 11);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0, "nothing before COMMIT");
    cr_assert_null(rows);
    commit(store);

    rows = NULL;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 2);
    cr_assert_not_null(rows);
    cr_assert_eq(rows[0].seq, s1);
    cr_assert_str_eq(rows[0].topic, "sla.breached");
    cr_assert_eq(rows[0].len, 5);
    cr_assert_eq(memcmp(rows[0].envelope, "first", 5), 0);
    cr_assert_eq(rows[1].seq, s2);
    cr_assert_str_eq(rows[1].topic, "commission.accrued");
    cr_assert_eq(rows[1].len, 6);
    cr_assert_eq(memcmp(rows[1].envelope, "second", 6), 0);
    /* Asking twice gives the same list. */
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 2);
    cr_assert_eq(rows[1].seq, s2);

    funnel_store_outbox_pending_clear(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0);
    cr_assert_null(rows);

    /* A rolled-back transaction never becomes pending, and leaves no row behind. */
    begin(store);
    append(store, "doomed");
    funnel_store_rollback(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0);
    cr_assert_null(rows);
    cr_assert_eq(n_outbox(store), 2);

    /* An empty committed transaction has nothing pending either. */
    begin(store);
    commit(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0);
}

Test(store_outbox, begin_discards_the_previous_pending_list)
{
    const funnel_outbox_row_t *rows;
    begin(store);
    append(store, "a");
    commit(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 1);
    begin(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0,
                 "rows of the open transaction are not publishable");
    uint64_t s = append(store, "b");
    commit(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 1);
    cr_assert_eq(rows[0].seq, s);
    cr_assert_eq(rows[0].len, 1);
    cr_assert_eq(memcmp(rows[0].envelope, "b", 1), 0);
}

Test(store_outbox, many_pending_rows_grow_the_list)
{
    /* More rows than the initial capacity of the pending list (256). */
    begin(store);
    for (int i = 0; i < 600; i++) {
        char body[16];
        snprintf(body, sizeof body, "m%d", i);
        cr_assert_eq(append(store, body), (uint64_t)i + 1);
    }
    commit(store);
    const funnel_outbox_row_t *rows;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 600);
    for (int i = 0; i < 600; i++) {
        char body[16];
        int n = snprintf(body, sizeof body, "m%d", i);
        cr_assert_eq(rows[i].seq, (uint64_t)i + 1);
        cr_assert_eq(rows[i].len, (size_t)n);
        cr_assert_eq(memcmp(rows[i].envelope, body, (size_t)n), 0, "row %d", i);
    }
    funnel_store_outbox_pending_clear(store);
}

Test(store_outbox, savepoint_rollback_removes_only_that_event)
{
    begin(store);
    /* event 1: kept */
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-1"), 0);
    uint64_t s1 = append(store, "out-1");
    cr_assert_eq(funnel_store_savepoint_release(store), 0);
    /* event 2: fails half-way, rolled back */
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-2"), 0);
    append(store, "out-2a");
    append(store, "out-2b");
    funnel_store_savepoint_rollback(store);
    /* event 3: kept */
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-3"), 0);
    uint64_t s3 = append(store, "out-3");
    cr_assert_eq(funnel_store_savepoint_release(store), 0);
    commit(store);

    const funnel_outbox_row_t *rows;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 2);
    cr_assert_eq(rows[0].seq, s1);
    cr_assert_eq(memcmp(rows[0].envelope, "out-1", 5), 0);
    cr_assert_eq(rows[1].seq, s3);
    cr_assert_eq(memcmp(rows[1].envelope, "out-3", 5), 0);
    /* The rolled-back rows took no sequence numbers: subscribers see no gap. */
    cr_assert_eq(s3, s1 + 1);

    cr_assert(event_exists(store, "ev-1"));
    cr_assert_not(event_exists(store, "ev-2"));
    cr_assert(event_exists(store, "ev-3"));
    collected_t c = {0};
    cr_assert_eq(funnel_store_outbox_read(store, 1, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_str_eq(c.body[0], "out-1");
    cr_assert_str_eq(c.body[1], "out-3");
}

Test(store_outbox, savepoint_rollback_of_the_first_event)
{
    begin(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    append(store, "gone");
    funnel_store_savepoint_rollback(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    uint64_t s = append(store, "kept");
    cr_assert_eq(funnel_store_savepoint_release(store), 0);
    commit(store);
    const funnel_outbox_row_t *rows;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 1);
    cr_assert_eq(rows[0].seq, s);
    cr_assert_eq(memcmp(rows[0].envelope, "kept", 4), 0);
}

/* Commits n rows "m1".."mn" with topics t1..tn, created at 1000 + i. */
static void fill(funnel_store_t *s, int n)
{
    begin(s);
    for (int i = 1; i <= n; i++) {
        char topic[16], body[16];
        snprintf(topic, sizeof topic, "t%d", i);
        snprintf(body, sizeof body, "m%d", i);
        append_at(s, topic, body, 1000 + i);
    }
    commit(s);
    funnel_store_outbox_pending_clear(s);
}

Test(store_outbox, read_from_a_seq_in_order_with_limit)
{
    fill(store, 10);
    collected_t c = {0};
    cr_assert_eq(funnel_store_outbox_read(store, 4, 3, collect_row, &c), 0);
    cr_assert_eq(c.n, 3);
    for (size_t i = 0; i < 3; i++) {
        char want[16];
        cr_assert_eq(c.seq[i], 4 + i);
        snprintf(want, sizeof want, "t%zu", 4 + i);
        cr_assert_str_eq(c.topic[i], want);
        snprintf(want, sizeof want, "m%zu", 4 + i);
        cr_assert_str_eq(c.body[i], want);
    }

    memset(&c, 0, sizeof c);
    cr_assert_eq(funnel_store_outbox_read(store, 0, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 10);
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(c.seq[i], i + 1);

    memset(&c, 0, sizeof c);
    cr_assert_eq(funnel_store_outbox_read(store, 9, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 2);
    cr_assert_eq(c.seq[0], 9);
    cr_assert_eq(c.seq[1], 10);

    memset(&c, 0, sizeof c);
    cr_assert_eq(funnel_store_outbox_read(store, 11, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 0, "nothing after the last row");

    memset(&c, 0, sizeof c);
    cr_assert_eq(funnel_store_outbox_read(store, 1, SIZE_MAX, collect_row, &c), 0);
    cr_assert_eq(c.n, 10, "a huge limit is no limit");
}

Test(store_outbox, read_stops_when_the_callback_says_so)
{
    fill(store, 5);
    collected_t c = {.stop_after = 2};
    cr_assert_eq(funnel_store_outbox_read(store, 1, 100, collect_row, &c), 77);
    cr_assert_eq(c.n, 2);
    /* The statement was reset: the next read starts afresh. */
    memset(&c, 0, sizeof c);
    cr_assert_eq(funnel_store_outbox_read(store, 1, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 5);
}

Test(store_outbox, bounds_follow_appends_and_prunes)
{
    uint64_t first, last;
    bounds(store, &first, &last);
    cr_assert_eq(first, 0);
    cr_assert_eq(last, 0);
    fill(store, 3);
    bounds(store, &first, &last);
    cr_assert_eq(first, 1);
    cr_assert_eq(last, 3);

    /* Uncommitted rows are visible to the writer's own connection. */
    begin(store);
    append(store, "m4");
    bounds(store, &first, &last);
    cr_assert_eq(last, 4);
    funnel_store_rollback(store);
    bounds(store, &first, &last);
    cr_assert_eq(first, 1);
    cr_assert_eq(last, 3);
}

Test(store_outbox, prune_deletes_only_published_rows_older_than_the_cutoff)
{
    fill(store, 10); /* seq i created at 1000 + i */
    size_t deleted = 99;

    begin(store);
    cr_assert_eq(funnel_store_outbox_prune(store, 1006, 7, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 5, "seqs 1..5 are older than 1006 and published");
    uint64_t first, last;
    bounds(store, &first, &last);
    cr_assert_eq(first, 6);
    cr_assert_eq(last, 10);

    /* Old but unpublished rows stay: subscribers have not had them yet. */
    begin(store);
    cr_assert_eq(funnel_store_outbox_prune(store, 5000, 7, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 2, "seqs 6 and 7");
    bounds(store, &first, &last);
    cr_assert_eq(first, 8);

    /* Published but recent rows stay: the cutoff is exclusive. */
    begin(store);
    cr_assert_eq(funnel_store_outbox_prune(store, 1008, 10, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 0, "seq 8 was created at 1008, not before");

    /* The limit caps one call; the oldest go first. */
    begin(store);
    cr_assert_eq(funnel_store_outbox_prune(store, 5000, 10, 2, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 2);
    bounds(store, &first, &last);
    cr_assert_eq(first, 10);
    cr_assert_eq(last, 10);
    collected_t c = {0};
    cr_assert_eq(funnel_store_outbox_read(store, 1, 100, collect_row, &c), 0);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(c.seq[0], 10);
    cr_assert_str_eq(c.body[0], "m10");
}

Test(store_outbox, seqs_keep_growing_after_everything_was_pruned)
{
    fill(store, 5);
    size_t deleted = 0;
    begin(store);
    cr_assert_eq(funnel_store_outbox_prune(store, INT64_MAX, 5, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 5);
    cr_assert_eq(n_outbox(store), 0);
    uint64_t first, last;
    bounds(store, &first, &last);
    cr_assert_eq(first, 0, "nothing retained");
    cr_assert_eq(last, 5, "the last sequence ever handed out survives pruning");

    begin(store);
    uint64_t s = append(store, "after");
    commit(store);
    cr_assert_eq(s, 6, "AUTOINCREMENT never reuses a pruned sequence");

    /* Nor after a restart. */
    begin(store);
    cr_assert_eq(funnel_store_outbox_prune(store, INT64_MAX, 6, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 1);
    funnel_store_destroy(&store);
    store = open_at(db_path, false);
    bounds(store, &first, &last);
    cr_assert_eq(first, 0);
    cr_assert_eq(last, 6);
    begin(store);
    cr_assert_eq(append(store, "after restart"), 7);
    commit(store);
}

Test(store_outbox, published_seq_round_trips)
{
    cr_assert_eq(published(store), 0);
    begin(store);
    cr_assert_eq(funnel_store_published_set(store, 42), 0);
    commit(store);
    cr_assert_eq(published(store), 42);

    begin(store);
    cr_assert_eq(funnel_store_published_set(store, 43), 0);
    cr_assert_eq(published(store), 43, "the writer sees its own uncommitted value");
    funnel_store_rollback(store);
    cr_assert_eq(published(store), 42, "a rollback restores the committed value");

    begin(store);
    cr_assert_eq(funnel_store_published_set(store, UINT64_C(1) << 40), 0);
    commit(store);
    funnel_store_destroy(&store);
    store = open_at(db_path, false);
    cr_assert_eq(published(store), UINT64_C(1) << 40);
}

/* The republished input (what the router appends after recording an event) is stored once:
 * its outbox row holds no copy of the envelope, yet pending, read and replay give the same
 * bytes, on the writer and on a read-only connection. */
Test(store_outbox, republished_input_is_stored_once_and_reads_back_identical)
{
    funnel_router_t *router = NULL;
    cr_assert_eq(funnel_router_new(store, &router), 0);
    funnel_envelope_t *env = fx_lead_created("once-1", "lead-1", 1000);
    size_t len = 0;
    uint8_t *raw = fx_pack(env, &len);
    begin(store);
    cr_assert_eq(funnel_router_apply(router, env, "lead.created", raw, len, 2000), 0, "%s",
                 funnel_store_errmsg(store));
    commit(store);

    const funnel_outbox_row_t *rows = NULL;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 1);
    cr_assert_eq(rows[0].len, len);
    cr_assert_eq(memcmp(rows[0].envelope, raw, len), 0, "the publish sends the received bytes");
    cr_assert_eq(sql_int(store, "SELECT coalesce(sum(length(envelope)), 0) FROM outbox"), 0,
                 "the outbox must not copy what events holds");
    cr_assert_eq(sql_int(store, "SELECT coalesce(sum(length(topic)), 0) FROM outbox"), 0,
                 "nor its topic");
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM outbox o JOIN events e ON "
                                "e.seq = o.event_seq AND e.event_id = 'once-1'"),
                 1);

    funnel_store_t *ro = open_at(db_path, true);
    funnel_store_t *readers[] = {store, ro};
    for (size_t i = 0; i < 2; i++) {
        first_row_t got = {0};
        cr_assert_eq(funnel_store_outbox_read(readers[i], 1, 10, copy_first_row, &got), 1);
        cr_assert_eq(got.len, len, "reader %zu", i);
        cr_assert_eq(memcmp(got.bytes, raw, len), 0, "reader %zu: same bytes", i);
        collected_t c = {0};
        cr_assert_eq(funnel_store_outbox_read(readers[i], 1, 10, collect_row, &c), 0);
        cr_assert_eq(c.n, 1);
        cr_assert_str_eq(c.topic[0], "lead.created", "reader %zu: the event's topic", i);
    }
    funnel_store_destroy(&ro);
    free(raw);
    funnel_envelope_free(&env);
    funnel_router_destroy(&router);
}

/* An outbox row naming an event that is gone is an error, never an empty message. */
Test(store_outbox, read_of_a_row_whose_event_is_gone_fails_loudly)
{
    begin(store);
    int64_t ev = 0;
    record_republished(store, "gone-1", "E", &ev);
    cr_assert_gt(ev, 0);
    cr_assert_eq(funnel_store_outbox_append_event(store, 0, "lead.created", (const uint8_t *)"E", 1,
                                                  1000, NULL),
                 FUNNEL_EINVAL);
    commit(store);
    sql_exec(store, "DELETE FROM events");
    collected_t c = {0};
    cr_assert_eq(funnel_store_outbox_read(store, 1, 10, collect_row, &c), FUNNEL_ESTORE);
    cr_assert_eq(c.n, 0);
    cr_assert(strstr(funnel_store_errmsg(store), "no longer holds"), "%s",
              funnel_store_errmsg(store));
}

/* ---- dead letters and listings ------------------------------------------------------------ */

TestSuite(store_list, .init = store_setup, .fini = teardown);

typedef struct dl_seen {
    size_t n;
    int64_t id[8];
    int64_t received[8];
    char topic[8][32], event_id[8][32], reason[8][32], detail[8][64];
    bool payload_null[8];
    char payload[8][32];
    size_t payload_len[8], payload_size[8];
} dl_seen_t;

static int collect_dead(const funnel_dead_letter_t *dl, void *arg)
{
    dl_seen_t *d = arg;
    size_t i = d->n++;
    cr_assert_lt(i, 8);
    d->id[i] = dl->id;
    d->received[i] = dl->received_at_ms;
    snprintf(d->topic[i], sizeof d->topic[i], "%s", dl->topic);
    snprintf(d->event_id[i], sizeof d->event_id[i], "%s", dl->event_id);
    snprintf(d->reason[i], sizeof d->reason[i], "%s", dl->reason);
    snprintf(d->detail[i], sizeof d->detail[i], "%s", dl->detail);
    d->payload_null[i] = dl->payload == NULL;
    snprintf(d->payload[i], sizeof d->payload[i], "%.*s", (int)dl->payload_len,
             dl->payload ? (const char *)dl->payload : "");
    d->payload_len[i] = dl->payload_len;
    d->payload_size[i] = dl->payload_size;
    return 0;
}

Test(store_list, dead_letters_keep_payload_or_only_its_size)
{
    begin(store);
    funnel_dead_letter_t kept = {
        .received_at_ms = 5000,
        .topic = "lead.created",
        .event_id = "ev-bad",
        .reason = "missing_field",
        .detail = "lead_created.lead_id is empty",
        .payload = (const uint8_t *)"raw-bytes",
        .payload_len = 9,
        .payload_size = 9,
    };
    funnel_dead_letter_t oversize = {
        .received_at_ms = 5001,
        .topic = "lead.closed",
        .event_id = "",
        .reason = "oversize",
        .detail = "message of 1048576 bytes exceeds 65536",
        .payload = NULL,
        .payload_len = 0,
        .payload_size = 1048576,
    };
    funnel_dead_letter_t undecodable = {
        .received_at_ms = 5002,
        .topic = NULL, /* NULL text is stored as empty */
        .event_id = NULL,
        .reason = "decode",
        .detail = "not a protobuf Envelope",
        .payload = (const uint8_t *)"\xff\xfe",
        .payload_len = 2,
        .payload_size = 2,
    };
    cr_assert_eq(funnel_store_dead_letter_add(store, &kept), 0);
    cr_assert_eq(funnel_store_dead_letter_add(store, &oversize), 0);
    cr_assert_eq(funnel_store_dead_letter_add(store, &undecodable), 0);
    commit(store);
    cr_assert_eq(n_dead(store), 3);
    cr_assert_eq(n_events(store), 0, "dead letters are not events");

    dl_seen_t d = {0};
    cr_assert_eq(funnel_store_dead_letters_list(store, 0, collect_dead, &d), 0);
    cr_assert_eq(d.n, 3);
    cr_assert_lt(d.id[0], d.id[1]);
    cr_assert_lt(d.id[1], d.id[2]);

    cr_assert_eq(d.received[0], 5000);
    cr_assert_str_eq(d.topic[0], "lead.created");
    cr_assert_str_eq(d.event_id[0], "ev-bad");
    cr_assert_str_eq(d.reason[0], "missing_field");
    cr_assert_str_eq(d.detail[0], "lead_created.lead_id is empty");
    cr_assert_not(d.payload_null[0]);
    cr_assert_str_eq(d.payload[0], "raw-bytes");
    cr_assert_eq(d.payload_len[0], 9);
    cr_assert_eq(d.payload_size[0], 9);

    cr_assert_eq(d.received[1], 5001);
    cr_assert_str_eq(d.reason[1], "oversize");
    cr_assert_str_eq(d.event_id[1], "");
    cr_assert(d.payload_null[1], "an oversize payload is not kept");
    cr_assert_eq(d.payload_len[1], 0);
    cr_assert_eq(d.payload_size[1], 1048576, "but its size is recorded");

    cr_assert_str_eq(d.topic[2], "");
    cr_assert_str_eq(d.event_id[2], "");
    cr_assert_eq(d.payload_len[2], 2);
    cr_assert_eq(memcmp(d.payload[2], "\xff\xfe", 2), 0);

    /* limit: the newest N, oldest first */
    memset(&d, 0, sizeof d);
    cr_assert_eq(funnel_store_dead_letters_list(store, 2, collect_dead, &d), 0);
    cr_assert_eq(d.n, 2);
    cr_assert_str_eq(d.reason[0], "oversize");
    cr_assert_str_eq(d.reason[1], "decode");
}

Test(store_list, dead_letters_prune_deletes_only_older_than_the_cutoff_in_chunks)
{
    begin(store);
    for (int64_t t = 1000; t < 1005; t++) {
        funnel_dead_letter_t dl = {.received_at_ms = t, .reason = "decode", .detail = "x"};
        cr_assert_eq(funnel_store_dead_letter_add(store, &dl), 0);
    }
    commit(store);
    size_t deleted = 0;
    /* The limit caps one call; the oldest go first. */
    begin(store);
    cr_assert_eq(funnel_store_dead_letters_prune(store, 1004, 2, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 2);
    dl_seen_t d = {0};
    cr_assert_eq(funnel_store_dead_letters_list(store, 0, collect_dead, &d), 0);
    cr_assert_eq(d.n, 3);
    cr_assert_eq(d.received[0], 1002);
    /* The cutoff is exclusive: the letter received at 1004 stays. */
    begin(store);
    cr_assert_eq(funnel_store_dead_letters_prune(store, 1004, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 2);
    cr_assert_eq(n_dead(store), 1);
    begin(store);
    cr_assert_eq(funnel_store_dead_letters_prune(store, 1004, 100, &deleted), 0);
    commit(store);
    cr_assert_eq(deleted, 0, "nothing older is left");
}

typedef struct ev_seen {
    size_t n;
    int stop_after;
    int64_t seq[16];
    char id[16][32];
} ev_seen_t;

static int collect_event(const funnel_event_row_t *row, void *arg)
{
    ev_seen_t *e = arg;
    size_t i = e->n++;
    cr_assert_lt(i, 16);
    e->seq[i] = row->seq;
    snprintf(e->id[i], sizeof e->id[i], "%s", row->event_id);
    /* Every field comes back as record() wrote it. */
    char env[64];
    int n = snprintf(env, sizeof env, "env:%s", row->event_id);
    cr_assert_str_eq(row->topic, "lead.created");
    cr_assert_str_eq(row->source, "crm");
    cr_assert_eq(row->received_at_ms, row->occurred_at_ms + 5);
    cr_assert_eq(row->envelope_len, (size_t)n);
    cr_assert_eq(memcmp(row->envelope, env, (size_t)n), 0);
    return e->stop_after && (int)e->n == e->stop_after ? 55 : 0;
}

Test(store_list, events_list_returns_the_newest_n_oldest_first)
{
    begin(store);
    for (int i = 1; i <= 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "ev-%d", i);
        cr_assert_eq(record_as(store, id, "lead.created", 1000 * i), 0);
    }
    commit(store);

    ev_seen_t e = {0};
    cr_assert_eq(funnel_store_events_list(store, 2, collect_event, &e), 0);
    cr_assert_eq(e.n, 2);
    cr_assert_str_eq(e.id[0], "ev-4");
    cr_assert_str_eq(e.id[1], "ev-5");
    cr_assert_lt(e.seq[0], e.seq[1]);

    memset(&e, 0, sizeof e);
    cr_assert_eq(funnel_store_events_list(store, 0, collect_event, &e), 0);
    cr_assert_eq(e.n, 5, "limit 0 lists everything");
    for (size_t i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "ev-%zu", i + 1);
        cr_assert_str_eq(e.id[i], id);
    }

    memset(&e, 0, sizeof e);
    cr_assert_eq(funnel_store_events_list(store, 50, collect_event, &e), 0);
    cr_assert_eq(e.n, 5);

    memset(&e, 0, sizeof e);
    e.stop_after = 1;
    cr_assert_eq(funnel_store_events_list(store, 0, collect_event, &e), 55);
    cr_assert_eq(e.n, 1);
}

Test(store_list, empty_listings)
{
    ev_seen_t e = {0};
    dl_seen_t d = {0};
    cr_assert_eq(funnel_store_events_list(store, 0, collect_event, &e), 0);
    cr_assert_eq(e.n, 0);
    cr_assert_eq(funnel_store_dead_letters_list(store, 0, collect_dead, &d), 0);
    cr_assert_eq(d.n, 0);
}

/* ---- misuse and failed commits ------------------------------------------------------------ */

TestSuite(store_fault, .init = store_setup, .fini = teardown);

Test(store_fault, transaction_misuse_is_einval)
{
    cr_assert_eq(funnel_store_commit(store), FUNNEL_EINVAL, "commit without begin");
    begin(store);
    cr_assert_eq(funnel_store_begin(store), FUNNEL_EINVAL, "begin twice");
    /* The first transaction is still open and usable. */
    cr_assert_eq(record(store, "ev-1"), 0);
    commit(store);
    cr_assert_eq(n_events(store), 1);
    cr_assert_eq(funnel_store_commit(store), FUNNEL_EINVAL, "commit twice");
    funnel_store_rollback(store); /* harmless outside a transaction */
    cr_assert_eq(n_events(store), 1);
}

Test(store_fault, append_outside_a_transaction_is_einval)
{
    uint64_t seq = 999;
    cr_assert_eq(funnel_store_outbox_append(store, "t", (const uint8_t *)"x", 1, 1, &seq),
                 FUNNEL_EINVAL);
    cr_assert_eq(seq, 999, "*seq is not written on failure");
    cr_assert_eq(n_outbox(store), 0);
    const funnel_outbox_row_t *rows;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0);
}

Test(store_fault, savepoint_outside_a_transaction_is_einval)
{
    /* SAVEPOINT outside BEGIN would silently open a transaction the store does not know of. */
    cr_assert_eq(funnel_store_savepoint(store), FUNNEL_EINVAL);
    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    commit(store);
    cr_assert_eq(n_events(store), 1);
}

Test(store_fault, failed_commit_rolls_back_and_empties_pending)
{
    /* An engine table with a deferred foreign key: the violation is only detected by COMMIT,
     * which is how a real COMMIT failure looks to the store. */
    sql_exec(store, "PRAGMA foreign_keys = ON;"
                    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                    "CREATE TABLE child (pid INTEGER REFERENCES parent(id) "
                    "DEFERRABLE INITIALLY DEFERRED);");
    fill(store, 1);

    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    append(store, "never published");
    cr_assert_eq(funnel_store_published_set(store, 2), 0);
    sql_exec(store, "INSERT INTO child VALUES (7)");
    cr_assert_eq(funnel_store_commit(store), FUNNEL_ESTORE);
    cr_assert(strstr(funnel_store_errmsg(store), "FOREIGN KEY") != NULL, "errmsg: %s",
              funnel_store_errmsg(store));

    const funnel_outbox_row_t *rows = &poison_row;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0);
    cr_assert_null(rows);
    cr_assert_eq(n_events(store), 0);
    cr_assert_eq(n_outbox(store), 1);
    cr_assert_eq(published(store), 0);
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM child"), 0);
    cr_assert(sqlite3_get_autocommit(funnel_store_db(store)), "no transaction may stay open");

    /* The store is usable again, and the failed rows took no sequence numbers. */
    begin(store);
    cr_assert_eq(record(store, "ev-1"), 0);
    cr_assert_eq(append(store, "second try"), 2);
    commit(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 1);
    assert_integrity(store);
}

Test(store_fault, disk_full_fails_the_whole_batch_and_nothing_autocommits)
{
    /* PRAGMA max_page_count caps the file: the next page allocation fails with SQLITE_FULL,
     * the way a full disk does. SQLite then rolls the whole transaction back by itself; the
     * store must notice and refuse further writes, which would otherwise autocommit one by
     * one outside the batch while the caller believes the batch failed. */
    fill(store, 1);
    begin(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-before"), 0);
    append(store, "before");
    cr_assert_eq(funnel_store_savepoint_release(store), 0);

    int64_t pages = sql_int(store, "PRAGMA page_count");
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
    sql_int(store, sql);

    cr_assert_eq(funnel_store_savepoint(store), 0);
    static uint8_t big[16384];
    memset(big, 'B', sizeof big);
    int rc = 0;
    for (int i = 0; i < 64 && rc == 0; i++)
        rc = funnel_store_outbox_append(store, "big", big, sizeof big, 1, NULL);
    cr_assert_eq(rc, FUNNEL_ESTORE, "the append must hit the page cap");
    cr_assert_eq(sqlite3_errcode(funnel_store_db(store)), SQLITE_FULL, "%s",
                 funnel_store_errmsg(store));
    funnel_store_savepoint_rollback(store);

    /* The next events of the batch are refused rather than autocommitted. */
    sql_int(store, "PRAGMA max_page_count = 1000000");
    cr_assert_eq(funnel_store_savepoint(store), FUNNEL_ESTORE);
    cr_assert_eq(record(store, "ev-after"), FUNNEL_ESTORE);
    uint64_t seq = 0;
    cr_assert_eq(funnel_store_outbox_append(store, "t", (const uint8_t *)"after", 5, 1, &seq),
                 FUNNEL_ESTORE);
    funnel_dead_letter_t dl = {.reason = "decode", .detail = "x", .payload_size = 1};
    cr_assert_eq(funnel_store_dead_letter_add(store, &dl), FUNNEL_ESTORE);
    cr_assert_eq(funnel_store_published_set(store, 99), FUNNEL_ESTORE);
    cr_assert_eq(funnel_store_commit(store), FUNNEL_ESTORE);
    cr_assert(strstr(funnel_store_errmsg(store), "full") != NULL,
              "the cause must survive the rollback: %s", funnel_store_errmsg(store));
    cr_assert(funnel_store_full(store) && !funnel_store_busy(store),
              "a full disk is worth retrying once space returns, unlike other errors");

    const funnel_outbox_row_t *rows = &poison_row;
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 0);
    cr_assert_null(rows);
    cr_assert_eq(n_events(store), 0);
    cr_assert_eq(n_dead(store), 0);
    cr_assert_eq(n_outbox(store), 1, "only the baseline row");
    cr_assert_eq(published(store), 0);
    assert_integrity(store);

    /* With space again, the retried batch goes through. */
    begin(store);
    cr_assert_eq(record(store, "ev-before"), 0);
    cr_assert_eq(append(store, "before"), 2);
    commit(store);
    cr_assert_eq(funnel_store_outbox_pending(store, &rows), 1);
    assert_integrity(store);
}

Test(store_fault, engine_error_message_survives_savepoint_rollback)
{
    /* An engine writing its own table fails; the store's ROLLBACK TO must not replace the
     * message the caller is about to log with "not an error". */
    sql_exec(store, "CREATE TABLE engine (k TEXT PRIMARY KEY)");
    begin(store);
    cr_assert_eq(funnel_store_savepoint(store), 0);
    sql_exec(store, "INSERT INTO engine VALUES ('a')");
    cr_assert_neq(
        sqlite3_exec(funnel_store_db(store), "INSERT INTO engine VALUES ('a')", NULL, NULL, NULL),
        SQLITE_OK);
    funnel_store_savepoint_rollback(store);
    cr_assert(strstr(funnel_store_errmsg(store), "UNIQUE") != NULL, "errmsg: %s",
              funnel_store_errmsg(store));
    /* The next event starts with a clean slate. */
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-1"), 0);
    cr_assert_eq(funnel_store_savepoint_release(store), 0);
    commit(store);
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM engine"), 0);
    cr_assert_eq(n_events(store), 1);
}

/* ---- crashes mid-transaction ------------------------------------------------------------- */

TestSuite(store_crash, .init = dir_setup, .fini = teardown);

/* Child exit codes: which step failed (0: reached the crash point as planned). */
enum { CHILD_OPEN = 10, CHILD_BEGIN, CHILD_WRITE, CHILD_COMMIT, CHILD_PIPE };

#define CHILD_EVENTS 3000

/* The child's writes: many events with outbox rows and a published_seq, with a tiny page
 * cache so dirty pages spill into the WAL before the crash. Returns 0 or an exit code. */
static int child_write(funnel_store_t *s, const char *prefix)
{
    if (sqlite3_exec(funnel_store_db(s), "PRAGMA cache_size = 8", NULL, NULL, NULL) != SQLITE_OK)
        return CHILD_WRITE;
    if (funnel_store_begin(s))
        return CHILD_BEGIN;
    static uint8_t env[512];
    memset(env, 'C', sizeof env);
    for (int i = 0; i < CHILD_EVENTS; i++) {
        char id[48];
        snprintf(id, sizeof id, "%s-%06d", prefix, i);
        funnel_event_row_t row = {
            .event_id = id,
            .topic = "lead.created",
            .occurred_at_ms = i,
            .received_at_ms = i,
            .source = "child",
            .envelope = env,
            .envelope_len = sizeof env,
        };
        if (funnel_store_savepoint(s) || funnel_store_event_record(s, &row, NULL) ||
            funnel_store_outbox_append(s, "child.out", env, sizeof env, i, NULL) ||
            funnel_store_savepoint_release(s))
            return CHILD_WRITE;
    }
    if (funnel_store_published_set(s, 1000000))
        return CHILD_WRITE;
    return 0;
}

/* Commits 3 events and 3 outbox rows, published up to 3, then closes the database. */
static void parent_commit_baseline(void)
{
    store = open_at(db_path, false);
    begin(store);
    for (int i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "base-%d", i);
        cr_assert_eq(record(store, id), 0);
        append(store, id);
    }
    cr_assert_eq(funnel_store_published_set(store, 3), 0);
    commit(store);
    funnel_store_destroy(&store);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Reopens after a crash and checks the file holds the baseline and nothing of the child's
 * uncommitted transaction (whose ids start with prefix). */
static void assert_recovered(const char *prefix, int64_t extra_committed)
{
    store = open_at(db_path, false);
    assert_integrity(store);
    cr_assert_eq(n_events(store), 3 + extra_committed);
    for (int i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "base-%d", i);
        cr_assert(event_exists(store, id), "committed %s lost", id);
    }
    char like[64];
    snprintf(like, sizeof like, "SELECT count(*) FROM events WHERE event_id LIKE '%s-%%'", prefix);
    cr_assert_eq(sql_int(store, like), 0, "uncommitted rows of the crashed child survived");
    cr_assert_eq(sql_int(store, "SELECT count(*) FROM outbox WHERE topic = 'child.out'"),
                 extra_committed);
    uint64_t first, last;
    bounds(store, &first, &last);
    cr_assert_eq(first, 1);
    cr_assert_eq(last, 3 + (uint64_t)extra_committed);
    cr_assert_eq(published(store), extra_committed ? 2000000 : 3);

    /* And the database keeps working: the next row follows the last committed one. */
    begin(store);
    cr_assert_eq(record(store, "after-crash"), 0);
    cr_assert_eq(append(store, "after-crash"), 4 + (uint64_t)extra_committed);
    commit(store);
    assert_integrity(store);
}

Test(store_crash, exit_mid_transaction_loses_only_uncommitted_rows)
{
    parent_commit_baseline();
    char wal[340];
    snprintf(wal, sizeof wal, "%s-wal", db_path);

    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        funnel_store_t *s = NULL;
        char err[ERR_LEN];
        if (funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err))
            _exit(CHILD_OPEN);
        int rc = child_write(s, "child");
        _exit(rc); /* no COMMIT, no close, no atexit: a crash */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "child died of signal %d", WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child failed at step %d", WEXITSTATUS(status));
    cr_assert_gt(file_size(wal), 1 << 20,
                 "the child should have spilled uncommitted pages into the WAL (size %lld)",
                 (long long)file_size(wal));
    assert_recovered("child", 0);
}

Test(store_crash, sigkill_mid_transaction_loses_only_uncommitted_rows)
{
    parent_commit_baseline();
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        funnel_store_t *s = NULL;
        char err[ERR_LEN];
        if (funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err))
            _exit(CHILD_OPEN);
        int rc = child_write(s, "killed");
        char byte = (char)rc;
        if (write(fds[1], &byte, 1) != 1)
            _exit(CHILD_PIPE);
        alarm(60); /* never outlive a parent that failed to kill us */
        for (;;)
            pause(); /* holding the write transaction open until killed */
    }
    close(fds[1]);
    char byte = -1;
    ssize_t got = read(fds[0], &byte, 1);
    close(fds[0]);

    /* While the child holds its transaction open, a reader sees only the baseline. Measured
     * before any assertion so a failure never leaves the child behind. */
    int64_t seen = -1;
    if (got == 1 && byte == 0) {
        funnel_store_t *ro = open_at(db_path, true);
        seen = n_events(ro);
        funnel_store_destroy(&ro);
    }
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert_eq(got, 1, "the child died before reaching the crash point");
    cr_assert_eq(byte, 0, "child failed at step %d", byte);
    cr_assert_eq(seen, 3, "a reader must not see the child's uncommitted rows");
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_recovered("killed", 0);
}

Test(store_crash, exit_after_commit_keeps_the_committed_batch)
{
    parent_commit_baseline();
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        funnel_store_t *s = NULL;
        char err[ERR_LEN];
        if (funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &s, err, sizeof err))
            _exit(CHILD_OPEN);
        /* One committed batch (acknowledged: must survive)... */
        if (funnel_store_begin(s))
            _exit(CHILD_BEGIN);
        static const uint8_t env[] = "committed";
        funnel_event_row_t row = {.event_id = "done-1",
                                  .topic = "lead.created",
                                  .source = "child",
                                  .envelope = env,
                                  .envelope_len = sizeof env};
        if (funnel_store_event_record(s, &row, NULL) ||
            funnel_store_outbox_append(s, "child.out", env, sizeof env, 1, NULL) ||
            funnel_store_published_set(s, 2000000))
            _exit(CHILD_WRITE);
        if (funnel_store_commit(s))
            _exit(CHILD_COMMIT);
        /* ...then a second one that dies half-way. */
        _exit(child_write(s, "child"));
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child failed at step %d", WEXITSTATUS(status));
    assert_recovered("child", 1);
    cr_assert(event_exists(store, "done-1"));
}

/* ---- checkpoints -------------------------------------------------------------------------- */

TestSuite(store_checkpoint, .init = store_setup, .fini = teardown);

/* Commits about `pages` WAL pages: outbox rows of 3 KB (one leaf page each), 100 to a
 * transaction. The pending list of each transaction outgrows the store's first arena. */
static void commit_pages(funnel_store_t *s, int pages)
{
    static char body[3000];
    memset(body, 'x', sizeof body - 1);
    for (int done = 0; done < pages; done += 100) {
        begin(s);
        for (int i = 0; i < 100; i++)
            append(s, body);
        commit(s);
    }
}

/* The WAL file's size when it starts over, as journal_size_limit keeps it (store.c). */
#define WAL_LIMIT 45000000

static void wal_name(char *wal, size_t len)
{
    snprintf(wal, len, "%s-wal", db_path);
}

Test(store_checkpoint, commit_checkpoints_by_default)
{
    /* Without funnel_store_checkpoint() SQLite's own policy stands: a 1000-page WAL is copied
     * back inside COMMIT (bench_ingest's raw SQLite figure relies on it being unchanged). */
    off_t before = file_size(db_path);
    commit_pages(store, 1500);
    cr_assert_gt(file_size(db_path), before + 500 * 4096);
}

Test(store_checkpoint, deferred_checkpoint_waits_for_the_call)
{
    cr_assert_eq(funnel_store_checkpoint(store), 0); /* takes checkpoints over */
    off_t before = file_size(db_path);
    commit_pages(store, 4500);
    cr_assert_eq(file_size(db_path), before, "COMMIT must leave the checkpoint to the caller");
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    cr_assert_eq(funnel_store_checkpoint_settle(store), 0);
    cr_assert_gt(file_size(db_path), before + 4000 * 4096, "the call must checkpoint");
    cr_assert_eq(n_outbox(store), 4500);
    assert_integrity(store);
}

/* Below the threshold the call asks for nothing: a small WAL is left to grow, so a page that
 * many batches rewrite is copied back once. */
Test(store_checkpoint, a_small_wal_is_left_for_later)
{
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    off_t before = file_size(db_path);
    commit_pages(store, 3000);
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    cr_assert_eq(funnel_store_checkpoint_settle(store), 0);
    cr_assert_eq(file_size(db_path), before);
}

Test(store_checkpoint, wal_stays_bounded_when_the_calls_stop)
{
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    off_t before = file_size(db_path);
    commit_pages(store, 16500); /* nobody calls funnel_store_checkpoint() any more */
    cr_assert_gt(file_size(db_path), before + 12000 * 4096, "COMMIT must checkpoint past 16000");
    /* Once the WAL is copied back and starts over, its file (grown past 64 MB) shrinks to the
     * limit. */
    char wal[sizeof db_path + 8];
    wal_name(wal, sizeof wal);
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    cr_assert_eq(funnel_store_checkpoint_settle(store), 0);
    commit_pages(store, 100);
    cr_assert_leq(file_size(wal), WAL_LIMIT, "the WAL file must be cut back");
}

/* A WAL a reader pinned past the hard bound, so that no pass could bring it to its end, starts
 * over once the reader is gone: the next call asks for the pass it restarts after, and the
 * commit after that pass starts at the first frame. */
Test(store_checkpoint, a_wal_a_reader_pinned_starts_over_after_the_next_pass)
{
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    off_t before = file_size(db_path);
    funnel_store_t *ro = open_at(db_path, true);
    sqlite3 *rdb = funnel_store_db(ro);
    cr_assert_eq(sqlite3_exec(rdb, "BEGIN; SELECT count(*) FROM outbox;", NULL, NULL, NULL),
                 SQLITE_OK);
    commit_pages(store, 16500); /* COMMIT's own checkpoint can copy nothing past the reader */
    cr_assert_lt(file_size(db_path), before + 1000 * 4096);
    cr_assert_eq(sqlite3_exec(rdb, "COMMIT;", NULL, NULL, NULL), SQLITE_OK);
    funnel_store_destroy(&ro);
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    cr_assert(funnel_store_checkpoint_pending(store), "the WAL's restart pass must be pending");
    cr_assert_eq(funnel_store_checkpoint_settle(store), 0);
    cr_assert_not(funnel_store_checkpoint_pending(store));
    cr_assert_gt(file_size(db_path), before + 16000 * 4096, "the pass must have copied it all");
    commit_pages(store, 100);
    char wal[sizeof db_path + 8];
    wal_name(wal, sizeof wal);
    cr_assert_leq(file_size(wal), WAL_LIMIT, "the WAL must have started over");
}

/* The loop's way: a checkpoint call after every batch, and no commit while the restart pass is
 * pending. The WAL then starts over every few thousand frames behind a writer that never pauses
 * and is overwritten in place: its file neither grows past the limit nor is cut back and grown
 * again (a truncate and re-extension cost the writer tens of milliseconds each time). */
Test(store_checkpoint, the_wal_starts_over_in_place_behind_a_writer_that_never_pauses)
{
    char wal[sizeof db_path + 8];
    wal_name(wal, sizeof wal);
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    off_t wal_max = 0, before = file_size(db_path);
    int cuts = 0;
    for (int batch = 0; batch < 200; batch++) {
        if (funnel_store_checkpoint_pending(store))
            cr_assert_eq(funnel_store_checkpoint_settle(store), 0);
        commit_pages(store, 100);
        cr_assert_eq(funnel_store_checkpoint(store), 0);
        off_t size = file_size(wal);
        cuts += size < wal_max;
        wal_max = size > wal_max ? size : wal_max;
    }
    cr_assert_eq(cuts, 0, "the WAL file was cut back %d times", cuts);
    cr_assert_leq(wal_max, WAL_LIMIT, "the WAL grew to %lld bytes", (long long)wal_max);
    cr_assert_gt(file_size(db_path), before + 15000 * 4096, "the passes must copy the WAL back");
    cr_assert_eq(n_outbox(store), 20000);
    assert_integrity(store);
}

/* The checkpointer's connection closes first: the writer's, the last, copies what is left and
 * removes the WAL, as a store without the thread does. */
Test(store_checkpoint, destroy_stops_the_checkpointer_and_removes_the_wal)
{
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    commit_pages(store, 4500);
    cr_assert_eq(funnel_store_checkpoint(store), 0); /* asked, maybe running: destroy waits */
    funnel_store_destroy(&store);
    char wal[sizeof db_path + 8];
    snprintf(wal, sizeof wal, "%s-wal", db_path);
    struct stat st;
    cr_assert_neq(stat(wal, &st), 0, "the WAL must be gone after the last close");
    store = open_at(db_path, false);
    cr_assert_eq(n_outbox(store), 4500);
    assert_integrity(store);
}

Test(store_checkpoint, refused_inside_a_transaction_and_read_only)
{
    begin(store);
    cr_assert_eq(funnel_store_checkpoint(store), FUNNEL_EINVAL);
    commit(store);
    funnel_store_t *ro = open_at(db_path, true);
    cr_assert_eq(funnel_store_checkpoint(ro), FUNNEL_EINVAL);
    funnel_store_destroy(&ro);
}

/* ---- the writer's WAL writes (walbuf.h) -------------------------------------------------- */

TestSuite(store_walbuf, .init = store_setup, .fini = teardown);

/* Write system calls of this process so far (the kernel counts every pwrite). */
static long long write_calls(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    cr_assert_not_null(f);
    char line[128];
    long long n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "syscw: %lld", &n) == 1)
            break;
    fclose(f);
    cr_assert_geq(n, 0, "no syscw in /proc/self/io");
    return n;
}

/* SQLite writes a frame's header and its page with a call each: 2000 calls for 1000 pages. */
Test(store_walbuf, a_commit_reaches_the_wal_in_few_large_writes)
{
    cr_assert_eq(funnel_store_checkpoint(store), 0); /* no checkpoint writes in between */
    long long before = write_calls();
    commit_pages(store, 1000);
    long long calls = write_calls() - before;
    cr_assert_lt(calls, 200, "%lld write calls for 1000 WAL pages", calls);
    cr_assert_eq(n_outbox(store), 1000);
    assert_integrity(store);
}

/* A transaction larger than the page cache writes frames before its COMMIT (a spill): the
 * writer reads them back, a rollback leaves nothing of them, and a reader of another connection
 * sees each commit whole the moment COMMIT has returned. */
Test(store_walbuf, spilled_frames_read_back_roll_back_and_commit_whole)
{
    static char body[3000];
    memset(body, 'y', sizeof body - 1);
    funnel_store_t *ro = open_at(db_path, true);
    cr_assert_eq(funnel_store_checkpoint(store), 0);
    begin(store);
    for (int i = 0; i < 1500; i++) /* 1500 pages of 3 KB rows: past the 2 MB cache */
        append(store, body);
    cr_assert_eq(n_outbox(store), 1500, "the spilled rows must read back");
    funnel_store_rollback(store);
    cr_assert_eq(n_outbox(ro), 0);
    commit_pages(store, 100);
    cr_assert_eq(n_outbox(ro), 100);
    begin(store);
    for (int i = 0; i < 1500; i++)
        append(store, body);
    commit(store);
    cr_assert_eq(n_outbox(ro), 1600);
    assert_integrity(ro);
    funnel_store_destroy(&ro);
    funnel_store_destroy(&store);
    store = open_at(db_path, false);
    cr_assert_eq(n_outbox(store), 1600);
    assert_integrity(store);
}

/* The writer runs on funneld's loop thread: waiting there for another process's lock would stop
 * acks, publishes, replays and timers (issue 14). It fails at once with busy and the caller
 * retries on a timer; read-only connections (funnelctl) may wait. */
Test(store_open, writer_never_waits_for_a_lock_readers_do)
{
    store = open_at(db_path, false);
    cr_assert_eq(sql_int(store, "PRAGMA busy_timeout"), 0);
    funnel_store_t *ro = open_at(db_path, true);
    cr_assert_eq(sql_int(ro, "PRAGMA busy_timeout"), 5000);
    funnel_store_destroy(&ro);

    sqlite3 *other;
    cr_assert_eq(sqlite3_open(db_path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    cr_assert_eq(funnel_store_begin(store), FUNNEL_ESTORE);
    cr_assert(funnel_store_busy(store) && !funnel_store_full(store));
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);
    cr_assert_eq(funnel_store_begin(store), 0);
    funnel_store_rollback(store);
}

/* A page in the middle of the file overwritten (a bad sector, a stray write): quick_check
 * finds it, where opening the file and reading its first page do not. */
Test(store_checkpoint, quick_check_finds_a_damaged_page_in_the_middle)
{
    char err[ERR_LEN] = "";
    commit_pages(store, 300);
    cr_assert_eq(funnel_store_quick_check(store, err, sizeof err), 0, "sound file: %s", err);
    int64_t size = sql_int(store, "PRAGMA page_size");
    int64_t middle = sql_int(store, "PRAGMA page_count") / 2;
    funnel_store_destroy(&store); /* the last connection copies the WAL into the file */
    static char junk[65536];
    memset(junk, 0xAB, sizeof junk);
    FILE *f = fopen(db_path, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (long)((middle - 1) * size), SEEK_SET), 0);
    cr_assert_eq(fwrite(junk, 1, (size_t)size, f), (size_t)size);
    cr_assert_eq(fclose(f), 0);
    store = open_at(db_path, false);
    cr_assert_eq(funnel_store_quick_check(store, err, sizeof err), FUNNEL_ESTORE);
    cr_assert_neq(err[0], '\0', "the damage is described");
}

/* Engines ask the store, not the connection, whether the batch's transaction is still open
 * (the SLA engine after a rollback): a savepoint rolled back leaves it open. */
Test(store_dedup, in_transaction_follows_begin_savepoints_and_the_end)
{
    cr_assert_not(funnel_store_in_transaction(store));
    begin(store);
    cr_assert(funnel_store_in_transaction(store));
    cr_assert_eq(funnel_store_savepoint(store), 0);
    cr_assert_eq(record(store, "ev-1"), 0);
    cr_assert_eq(funnel_store_savepoint_rollback(store), 0);
    cr_assert(funnel_store_in_transaction(store), "a savepoint's rollback keeps the batch open");
    commit(store);
    cr_assert_not(funnel_store_in_transaction(store));
    begin(store);
    funnel_store_rollback(store);
    cr_assert_not(funnel_store_in_transaction(store));
}

/* ---- the writer's page cache -------------------------------------------------------------- */

TestSuite(store_cache, .init = store_setup, .fini = teardown);

#define CACHE_EVENTS 30000 /* several MB: more than SQLite's default 2 MB cache holds */
#define CACHE_BATCH  1000

/* SQLite's own default cache_size, from a plain connection. */
static int64_t sqlite_default_cache(void)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
    int64_t v = fx_sql_int(db, "PRAGMA cache_size", NULL);
    sqlite3_close(db);
    return v;
}

/* Records events first..first+n-1 (ids "ev-%08zu" in order), step apart, CACHE_BATCH per
 * transaction, as a batch of funneld would. */
static void record_range(funnel_store_t *s, size_t first, size_t n, size_t step)
{
    for (size_t i = 0; i < n;) {
        begin(s);
        for (size_t k = 0; k < CACHE_BATCH && i < n; k++, i++) {
            char id[32];
            snprintf(id, sizeof id, "ev-%08zu", first + i * step);
            int rc = record(s, id);
            cr_assert(rc == 0 || rc == FUNNEL_EDUP, "record %s: %d", id, rc);
        }
        commit(s);
    }
}

/* Appending reads nothing back: a big cache would only cost a fresh allocation per new page
 * (bench_ingest lost a fifth of its rate to that), so the writer keeps SQLite's default. */
Test(store_cache, appending_keeps_the_default_cache)
{
    int64_t before = sqlite_default_cache();
    record_range(store, 0, CACHE_EVENTS, 1);
    cr_assert_eq(sql_int(store, "PRAGMA cache_size"), before, "cache_size %lld, was %lld",
                 (long long)sql_int(store, "PRAGMA cache_size"), (long long)before);
}

/* Transactions that read pages from the file all over it (engines' lookups; here duplicates
 * of old ids on a cold cache) grow the cache, up to the ceiling. */
Test(store_cache, reads_from_the_file_grow_the_cache)
{
    int64_t before = sqlite_default_cache();
    record_range(store, 0, CACHE_EVENTS, 1);
    funnel_store_destroy(&store); /* a cold cache: every page is read again */
    store = open_at(db_path, false);
    record_range(store, 0, CACHE_EVENTS / 7, 7);
    int64_t after = sql_int(store, "PRAGMA cache_size");
    cr_assert_lt(after, before, "cache_size %lld, was %lld (negative: KiB)", (long long)after,
                 (long long)before);
    cr_assert_geq(after, -262144, "256 MiB is the ceiling");
    cr_assert_eq(n_events(store), CACHE_EVENTS);
}
