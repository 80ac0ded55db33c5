/* bench.h — what every funneld benchmark needs: an error line, signals that unwind a run,
 * clocks, a temporary directory, a funneld child process and a windowed, acknowledged submit
 * over a DEALER.
 *
 * Ownership: every resource a helper creates is released by its matching call (tmpdir_remove,
 * daemon_stop); a benchmark that is interrupted (SIGINT/SIGTERM) sees bench_interrupted and
 * unwinds through those calls. */
#ifndef FUNNEL_BENCH_H
#define FUNNEL_BENCH_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Set by SIGINT/SIGTERM once bench_init ran; every wait loop checks it. */
extern volatile sig_atomic_t bench_interrupted;

/* Names the program in error lines and installs the signal handlers (no SA_RESTART, so
 * blocking calls return EINTR and the loops around them see the flag). */
void bench_init(const char *program);

/* Prints "program: message" to stderr; returns -1 so callers can `return bench_error(...)`. */
int bench_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Intervals: the monotonic clock, so NTP steps do not bend a measurement. */
uint64_t bench_mono_ns(void);
/* Event times: wall-clock milliseconds, as publishers stamp them. */
int64_t bench_wall_ms(void);
void bench_sleep_ms(int ms);
double bench_seconds(uint64_t ns);

/* 1234567.8 → "1,234,568" in buf; returns buf. */
const char *bench_fmt_count(double v, char *buf, size_t len);
/* Parses a decimal count in [1, max]. */
bool bench_parse_count(const char *text, uint64_t max, uint64_t *out);
/* Nearest-rank percentile (pct in 0..100) of n sorted values; 0 when n is 0. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned pct);
/* Sorts n values in place (ascending). */
void bench_sort_u64(uint64_t *v, size_t n);

/* A fresh directory under $TMPDIR (or /tmp); path is "" when it failed. */
int bench_tmpdir_make(char *path, size_t len);
/* Removes path recursively (as much as it can) and empties the string. */
void bench_tmpdir_remove(char *path);

/* A funneld child with its files under one directory, named for a label. */
typedef struct bench_daemon {
    pid_t pid; /* 0 when not running */
    char db[PATH_MAX], log[PATH_MAX], ready[PATH_MAX];
    char config[PATH_MAX];       /* --config file, "" for none */
    char submit[256];            /* the resolved submit endpoint, from the ready file */
    char engines[64];            /* "--set" argument: engines=none or a list */
    char profile[PATH_MAX + 16]; /* "--set" argument: sql_profile=FILE, "" for none */
} bench_daemon_t;

/* Starts funneld on dir/funneld-<label>.db (kept across starts with the same label, so a second
 * start is a restart on the same database), every endpoint on 127.0.0.1:*, log level warn,
 * sync=normal, the given engines and config file (NULL for none), and waits until its ready
 * file names the submit endpoint. On failure nothing is left running. */
int bench_daemon_start(bench_daemon_t *d, const char *dir, const char *label, const char *engines,
                       const char *config);
/* bench_daemon_start with funneld's statement profile (sql_profile) appended to the file at
 * profile (NULL: none); it is complete once funneld stopped. */
int bench_daemon_start_profiled(bench_daemon_t *d, const char *dir, const char *label,
                                const char *engines, const char *config, const char *profile);
/* SIGTERM, then SIGKILL after 15 s. Returns the exit status (non-zero is a failure), 0 if
 * nothing was running. Not interruptible: it is cleanup. */
int bench_daemon_stop(bench_daemon_t *d);
/* After a stop: the database holds exactly `events` events and `dead_letters` dead letters. */
int bench_verify_stored(const char *db, uint64_t events, uint64_t dead_letters);
/* Copies the end of funneld's log to stderr, so a failed run says why. */
void bench_daemon_dump_log(const bench_daemon_t *d);

/* The commission plan of the workload's config: it pays, so the ledger posts. */
#define BENCH_RATE_BP         500 /* to the rep who brought the client */
#define BENCH_TERM_MONTHS     36
#define BENCH_MANAGER_RATE_BP 100 /* to the account manager who received it */

/* Writes dir/funneld.conf (its path into path): examples/funneld.conf of the source tree (its
 * calendars, SLA policies, quota and attribution models) with the commission plan above.
 * Fails when the example has no SLA policy. */
int bench_config_write(const char *dir, char *path, size_t len);

/* Where a windowed submit takes its messages from and reports its answers to. */
typedef struct bench_source {
    void *ctx;
    /* The next message: returns 1 and sets topic (NUL-terminated), data, len and index (0, 1,
     * 2, ... in order), 0 when there is none left, or -1 on an error. The pointers stay valid
     * until the next call. */
    int (*next)(void *ctx, const char **topic, const void **data, size_t *len, uint64_t *index);
    /* The index of the message an answer's event id (len bytes, not NUL-terminated) belongs
     * to; false for an id this source never sent. */
    bool (*index_of)(void *ctx, const void *id, size_t len, uint64_t *index);
    /* The first answer to message index: status (len bytes, e.g. "ok") after lat_ns; now_ns is
     * when it arrived (bench_mono_ns). Repeated answers are not reported. */
    void (*answered)(void *ctx, uint64_t index, const char *status, size_t len, uint64_t lat_ns,
                     uint64_t now_ns);
} bench_source_t;

/* Submits every message of src to funneld's submit endpoint over one DEALER with at most
 * window in flight, until each is answered. *first_ns is when the first message was handed to
 * ZeroMQ. Fails after 15 s without an answer, or when interrupted. */
int bench_submit(const char *endpoint, size_t window, const bench_source_t *src,
                 uint64_t *first_ns);

/* A client's CURVE keys and the server's public key, Z85, NUL-terminated. */
typedef struct bench_curve {
    char client_public[41], client_secret[41], server_public[41];
} bench_curve_t;

/* bench_submit as a CURVE client (curve NULL: plain). */
int bench_submit_as(const char *endpoint, size_t window, const bench_source_t *src,
                    const bench_curve_t *curve, uint64_t *first_ns);

#endif
