/* store.h — SQLite persistence: events, dead letters, the transactional outbox.
 *
 * One connection, owned by one thread (funneld's loop thread). Writes happen only between
 * funnel_store_begin() and funnel_store_commit(): the caller groups a batch of events into one
 * transaction (group commit); should an event fail, it runs the batch again with each event in a
 * savepoint so that one does not sink its neighbours. Outbox rows appended in a transaction become
 * visible to the caller through funnel_store_outbox_pending() only after COMMIT succeeded — that
 * list is what may be published.
 * Errors: FUNNEL_ESTORE with the SQLite message available from funnel_store_errmsg(); whether
 * that failure is worth retrying unchanged from funnel_store_busy(). */
#ifndef FUNNEL_STORE_H
#define FUNNEL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

typedef struct funnel_store funnel_store_t;

typedef enum funnel_store_sync {
    FUNNEL_STORE_SYNC_NORMAL = 1, /* WAL + NORMAL: survives process crashes, not power loss */
    FUNNEL_STORE_SYNC_FULL = 2,   /* fsync every commit: survives power loss, ~5x slower */
} funnel_store_sync_t;

/* Opens (creating if needed, unless read_only) and migrates the database at path. On failure
 * returns FUNNEL_ESTORE and writes the reason into err. *out is owned by the caller and freed
 * with funnel_store_destroy. A database written by a newer funneld is refused. */
int funnel_store_open(const char *path, bool read_only, funnel_store_sync_t sync,
                      funnel_store_t **out, char *err, size_t err_len);
/* The writer's funnel_store_open with the statement profiler (sqlprofile.h) on from the
 * connection's first statement, appending to the file at profile (not NULL): funneld's
 * sql_profile option. A profile that cannot be opened fails the open (FUNNEL_EIO, err). */
int funnel_store_open_profiled(const char *path, funnel_store_sync_t sync, const char *profile,
                               funnel_store_t **out, char *err, size_t err_len);
void funnel_store_destroy(funnel_store_t **store);

/* Runs PRAGMA quick_check: every page and B-tree of the file is read and checked (not the
 * indexes' contents). Returns 0 when the file is sound, FUNNEL_ESTORE with the first problem
 * SQLite found (or why the check could not run) in err. Reads the whole file: seconds per GB. */
int funnel_store_quick_check(funnel_store_t *store, char *err, size_t err_len);

/* The stop marker, so a start can tell whether the last writer stopped cleanly: false while a
 * writer runs (set at start), true once a clean stop committed it (set as the stop's last
 * write). get answers false for a database without a marker (made by an older build). set runs
 * inside the open transaction, or as its own when there is none; FUNNEL_EINVAL read-only. */
int funnel_store_clean_stop_get(funnel_store_t *store, bool *clean);
int funnel_store_clean_stop_set(funnel_store_t *store, bool clean);

/* The last SQLite error message of this connection; valid until the next call. */
const char *funnel_store_errmsg(const funnel_store_t *store);

/* True when the last failure was SQLITE_BUSY or SQLITE_LOCKED: another connection (another
 * process, say `sqlite3` or a backup) held the lock. A writer does not wait for it (busy timeout
 * 0, so the loop never blocks; read-only connections and migrations wait up to 5 s). Nothing was
 * written; the same transaction may succeed later, unlike after an I/O error. Valid, like
 * funnel_store_errmsg(), until the next begin. */
bool funnel_store_busy(const funnel_store_t *store);

/* True when the last failure was SQLITE_FULL (the disk, or the file's size limit): nothing was
 * written and the transaction was rolled back; it may succeed once space returns. */
bool funnel_store_full(const funnel_store_t *store);

/* The raw handle, for engines only: they prepare statements on their own tables and run them
 * inside the batch transaction. Transactions themselves belong to the store: begin, commit,
 * savepoints and their state go through the functions below, never through the handle. */
sqlite3 *funnel_store_db(funnel_store_t *store);

/* The schema version this build migrates to, and the one the open database has. */
int funnel_store_schema_latest(void);
int funnel_store_schema_version(funnel_store_t *store);

/* Engines keep their own tables: each names itself (module, e.g. "ledger") and lists its
 * schema steps, never edited once shipped. Missing steps are applied, each in its own
 * transaction; the module's version lives in the meta table. Call outside a batch (at engine
 * creation). Returns 0, FUNNEL_ESTORE (err says why, e.g. a newer schema) or FUNNEL_EINVAL. */
int funnel_store_migrate_module(funnel_store_t *store, const char *module, const char *const *steps,
                                int n, char *err, size_t err_len);
/* The module's schema version: 0 when never migrated, -1 on error. */
int funnel_store_module_version(funnel_store_t *store, const char *module);

/* --- batches ----------------------------------------------------------------------------- */
int funnel_store_begin(funnel_store_t *store);
/* COMMIT. On failure the transaction is rolled back and the pending outbox is emptied. */
int funnel_store_commit(funnel_store_t *store);
void funnel_store_rollback(funnel_store_t *store);

/* A savepoint around one event. rollback undoes that event's rows, outbox rows included. When
 * release or rollback fails (FUNNEL_ESTORE), what the transaction holds of the event is unknown:
 * every later write and the commit are refused, and the caller must roll the transaction back. */
int funnel_store_savepoint(funnel_store_t *store);
int funnel_store_savepoint_release(funnel_store_t *store);
int funnel_store_savepoint_rollback(funnel_store_t *store);

/* True while a transaction is open on the connection: after begin, also after a savepoint was
 * rolled back; false once it was committed or rolled back, by the caller or by SQLite itself
 * (some I/O errors end a transaction on their own). */
bool funnel_store_in_transaction(const funnel_store_t *store);

/* Has the WAL copied back into the database by a thread of the store's own with its own
 * connection (PASSIVE checkpoints), so the caller's thread goes on with the next batch meanwhile:
 * a pass once the WAL has grown to 4000 pages, then one per 2000 more. By default SQLite does this
 * inside the COMMIT that crosses 1000 pages, so whatever waits for the COMMIT (acks, publishes)
 * waits for the copy and its fsyncs too. The first call hands checkpoints over to this function
 * for good: call it between transactions, after answering. From 8000 pages on the pass asked for
 * is the one after which the WAL starts over: funnel_store_checkpoint_pending() is then true until
 * it is done, and the caller should not commit before (a commit behind the pass keeps the WAL from
 * restarting; nothing breaks, the WAL grows until the next try 2000 pages later). COMMIT then
 * checkpoints by itself only past 16000 pages, so the WAL stays bounded if the calls stop. If the
 * thread cannot start, the first call returns FUNNEL_ESTORE saying so and later calls checkpoint
 * inline. Returns 0, FUNNEL_EINVAL inside a transaction or on a read-only store, or
 * FUNNEL_ESTORE when a checkpoint failed (the message says why; the committed data is safe in the
 * WAL all the same). */
int funnel_store_checkpoint(funnel_store_t *store);

/* True while the pass the WAL starts over after is asked for or running (see above); never
 * blocks. */
bool funnel_store_checkpoint_pending(funnel_store_t *store);

/* Waits until the checkpoint asked for by funnel_store_checkpoint() has run (tests; the store's
 * destroy waits by itself). Returns 0 or FUNNEL_ESTORE when one failed. */
int funnel_store_checkpoint_settle(funnel_store_t *store);

/* --- rows ------------------------------------------------------------------------------- */
typedef struct funnel_event_row {
    int64_t seq; /* ingest order; filled on read */
    const char *event_id;
    const char *topic;
    int64_t occurred_at_ms;
    int64_t received_at_ms;
    const char *source;      /* with security: the authenticated client's name */
    const uint8_t *envelope; /* the Envelope bytes as received (with security: the source
                                replaced by the client's name) */
    size_t envelope_len;
    const char *claimed_source; /* the source the envelope claimed, with security; else NULL */
} funnel_event_row_t;

/* Records an event once, its id and envelope in their compact stored form (event_form.h; the
 * listings and the outbox give the bytes back as received). Returns 0, FUNNEL_EDUP if event_id
 * is known (nothing written), FUNNEL_ENOMEM, or FUNNEL_ESTORE. Must be inside a transaction. *seq
 * (optional) receives the new row's seq, for funnel_store_outbox_append_event. */
int funnel_store_event_record(funnel_store_t *store, const funnel_event_row_t *row, int64_t *seq);

typedef struct funnel_dead_letter {
    int64_t id; /* filled on read */
    int64_t received_at_ms;
    const char *topic;    /* may be truncated/empty when the topic frame was unusable */
    const char *event_id; /* empty when it could not be decoded */
    const char *reason;   /* funnel_refusal_name() */
    const char *detail;   /* the human sentence sent back to the publisher */
    const uint8_t *payload;
    size_t payload_len;  /* bytes kept (oversize payloads are not kept) */
    size_t payload_size; /* bytes received */
} funnel_dead_letter_t;

int funnel_store_dead_letter_add(funnel_store_t *store, const funnel_dead_letter_t *dl);

/* Appends an output message. *seq (optional) receives its sequence number, strictly greater
 * than any sequence ever handed out by this database, even after retention pruned everything. */
int funnel_store_outbox_append(funnel_store_t *store, const char *topic, const uint8_t *envelope,
                               size_t len, int64_t created_at_ms, uint64_t *seq);

/* Appends the republication of the event recorded as event_seq in this transaction, whose
 * topic and envelope bytes are `topic` and `envelope` as recorded: the row names the events row
 * instead of copying them (stored once), and reads, replays and publishes exactly as a copy
 * would. FUNNEL_EINVAL when event_seq is not a seq. */
int funnel_store_outbox_append_event(funnel_store_t *store, int64_t event_seq, const char *topic,
                                     const uint8_t *envelope, size_t len, int64_t created_at_ms,
                                     uint64_t *seq);

/* One output message; memory owned by the store (pending list) or valid during a callback. */
typedef struct funnel_outbox_row {
    uint64_t seq;
    const char *topic;
    const uint8_t *envelope;
    size_t len;
} funnel_outbox_row_t;

/* The rows committed by the last successful COMMIT and not yet cleared, in sequence order. */
size_t funnel_store_outbox_pending(const funnel_store_t *store, const funnel_outbox_row_t **rows);
void funnel_store_outbox_pending_clear(funnel_store_t *store);

/* Called for each row; return non-zero to stop (that value is returned). */
typedef int (*funnel_outbox_cb)(const funnel_outbox_row_t *row, void *arg);

/* Reads committed rows with seq >= from_seq in order, at most limit of them. */
int funnel_store_outbox_read(funnel_store_t *store, uint64_t from_seq, size_t limit,
                             funnel_outbox_cb cb, void *arg);

/* First and last retained sequence (0, 0 when empty), and the last ever handed out. */
int funnel_store_outbox_bounds(funnel_store_t *store, uint64_t *first, uint64_t *last);

/* Deletes published rows created before before_ms, at most `limit` per call. */
int funnel_store_outbox_prune(funnel_store_t *store, int64_t before_ms, uint64_t published_seq,
                              size_t limit, size_t *deleted);

/* Deletes dead letters received before before_ms, oldest first, at most `limit` per call. They
 * are diagnostics, kept as long as the outbox (retention_days), not forever. */
int funnel_store_dead_letters_prune(funnel_store_t *store, int64_t before_ms, size_t limit,
                                    size_t *deleted);

/* The dead letters' row count and bytes (funnel_dead_letter_bytes summed): one scan, for start
 * and after a retention prune; in between the server keeps the sums itself. */
int funnel_store_dead_letters_usage(funnel_store_t *store, int64_t *rows, int64_t *bytes);

/* Deletes the oldest `limit` dead letters, whatever their age: the row and byte bounds
 * (dead_letter_max_rows, dead_letter_max_bytes). *deleted and *bytes receive what went. */
int funnel_store_dead_letters_trim(funnel_store_t *store, size_t limit, size_t *deleted,
                                   int64_t *bytes);

/* What one dead letter counts against dead_letter_max_bytes: its payload and text bytes. */
size_t funnel_dead_letter_bytes(const funnel_dead_letter_t *dl);

/* The last sequence known to have been handed to the PUB socket. Set inside a transaction. */
int funnel_store_published_get(funnel_store_t *store, uint64_t *seq);
int funnel_store_published_set(funnel_store_t *store, uint64_t seq);

/* --- read-only listings (funnelctl) ------------------------------------------------------ */
typedef int (*funnel_event_cb)(const funnel_event_row_t *row, void *arg);
typedef int (*funnel_dead_letter_cb)(const funnel_dead_letter_t *dl, void *arg);

/* The newest `limit` events (0: all), oldest first. */
int funnel_store_events_list(funnel_store_t *store, size_t limit, funnel_event_cb cb, void *arg);
int funnel_store_dead_letters_list(funnel_store_t *store, size_t limit, funnel_dead_letter_cb cb,
                                   void *arg);
/* Counts events with this event_id: 0 or 1. */
int funnel_store_event_count(funnel_store_t *store, int64_t *events, int64_t *dead_letters);

#endif
