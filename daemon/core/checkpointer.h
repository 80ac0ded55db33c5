/* checkpointer.h — copies the WAL back into the database on a thread of its own.
 *
 * A checkpoint reads every page the WAL holds and writes it into the database file, then
 * fsyncs: at a backfill's pace that is tens of milliseconds per thousand pages, which the one
 * writer thread would otherwise spend between batches instead of ingesting. SQLite lets another
 * connection run a PASSIVE checkpoint while the writer goes on appending to the WAL, so the
 * copy moves to a second core. The writer never waits for it: a request while a checkpoint
 * runs is remembered and served when it ends.
 *
 * Thread rules: new/request/wait/destroy are called from one thread (the store's owner); the
 * checkpointer thread only touches its own connection. */
#ifndef FUNNEL_CHECKPOINTER_H
#define FUNNEL_CHECKPOINTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct funnel_checkpointer funnel_checkpointer_t;

/* Opens its own read-write connection to the database at `path` (which must exist, in WAL
 * mode) and starts the thread. Returns 0, FUNNEL_ESTORE (err says why) or FUNNEL_ENOMEM. */
int funnel_checkpointer_new(const char *path, funnel_checkpointer_t **out, char *err,
                            size_t err_len);

/* Asks for a PASSIVE checkpoint and returns at once. Returns the number of checkpoints that
 * failed (other than SQLITE_BUSY: another connection checkpointing is as good) since the
 * previous request or wait, with the message of the last one in err (may be NULL). */
uint64_t funnel_checkpointer_request(funnel_checkpointer_t *ck, char *err, size_t err_len);

/* True while a checkpoint runs or is asked for; never blocks. */
bool funnel_checkpointer_busy(funnel_checkpointer_t *ck);

/* Blocks until no checkpoint is running or asked for; returns failures as request does. */
uint64_t funnel_checkpointer_wait(funnel_checkpointer_t *ck, char *err, size_t err_len);

/* Lets a running checkpoint finish, stops the thread, closes the connection; NULLs *ck. */
void funnel_checkpointer_destroy(funnel_checkpointer_t **ck);

#endif
