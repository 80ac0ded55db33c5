/* walbuf.h — a VFS that hands SQLite's WAL appends to the kernel in large writes.
 *
 * SQLite writes each WAL frame with two write calls (its 24-byte header, then the page), so a
 * commit of 700 pages costs 1400 pwrite syscalls; on a paravirtual VM a syscall and the partial
 * block write of each header cost ~5 us per page, against ~0.7 us per page in writes of 30 frames.
 * This VFS wraps the default one and buffers the appends to a WAL file, in order, and writes them
 * out as one call when they stop being contiguous, when the buffer is full, before anything else
 * touches the file (read, sync, size, truncate, close), and right after the page of a commit
 * frame (a frame whose header holds the database size): so a commit's frames are in the file,
 * and a failure to write them is COMMIT's error, before SQLite publishes the commit in the
 * WAL index for readers and the checkpointer. What was not written when the process dies
 * belongs to a commit that had not returned: recovery ignores frames without a commit frame
 * after them, as it always does. The database and every other file pass through untouched.
 *
 * Thread rules: one connection per file object, as SQLite's own VFS. */
#ifndef FUNNEL_WALBUF_H
#define FUNNEL_WALBUF_H

#define FUNNEL_WALBUF_VFS "funnel-walbuf"

/* Registers the VFS (not as the default) over the default one; idempotent. Returns an SQLite
 * result code. */
int funnel_walbuf_register(void);

#endif
