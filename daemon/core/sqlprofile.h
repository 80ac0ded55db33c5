/* sqlprofile.h — where the writer's time and pages go: funneld's `sql_profile` option.
 *
 * Installed on one connection (funneld's writer), it aggregates per statement text: calls,
 * wall nanoseconds from the first step to the reset, VM steps, page-cache hits, misses and
 * pages written (the connection's sqlite3_db_status counters, read without reset, each delta
 * charged to the statement that just ended), and after each commit the WAL frames that commit
 * appended (the page number in each new frame header of the -wal file, read-only). Once a
 * second (at the end of a statement) it appends a snapshot to the file and starts over; the
 * connection's close appends the last one. Without it nothing is installed: off costs nothing.
 *
 * The file, one snapshot after another, each line tab-separated:
 *   snapshot SEQ FROM_MS TO_MS          wall-clock (Unix ms) span the snapshot covers
 *   stmt CALLS NS STEPS HITS MISSES WRITES SQL   one per statement text run in the span; SQL
 *                                       on one line (tabs and line breaks as spaces)
 *   wal PGNO FRAMES                     pages the span's commits appended to the WAL, by page
 *   end SEQ                             the snapshot is complete
 * Times are wall time of one thread, preempted or not: use them for shares, and the calls,
 * steps and pages for what a change saves. */
#ifndef FUNNEL_SQLPROFILE_H
#define FUNNEL_SQLPROFILE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define FUNNEL_SQLPROFILE_INTERVAL_NS 1000000000ull /* a snapshot a second */

/* The monotonic clock the profiler reads, in ns; injectable for tests. */
typedef uint64_t (*funnel_sqlprofile_clock_fn)(void *ctx);

/* Installs the profiler on db, appending to the file at path (created if missing). The
 * connection owns it from then on: its close writes the last snapshot and frees it. It is the
 * connection's sqlite3_trace_v2 callback, so nothing else may trace that connection. clock
 * NULL: CLOCK_MONOTONIC. Returns 0, FUNNEL_EIO when path cannot be opened for appending (err
 * says why) or FUNNEL_ENOMEM. */
int funnel_sqlprofile_install(sqlite3 *db, const char *path, funnel_sqlprofile_clock_fn clock,
                              void *clock_ctx, char *err, size_t err_len);

#endif
