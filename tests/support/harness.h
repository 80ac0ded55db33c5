/* harness.h — shared helpers for the Criterion tests: temporary directories, a real funneld
 * process on ephemeral loopback ports, and envelope builders.
 *
 * Every resource a helper creates is released by its matching stop/cleanup call; tests call
 * those from their fini so nothing is left behind when an assertion fails. */
#ifndef FUNNEL_TEST_HARNESS_H
#define FUNNEL_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "funnel/client.h"
#include "funnel/codec.h"

/* A temporary directory under $TMPDIR (or /tmp), removed recursively by fx_tmpdir_remove. */
typedef struct fx_tmpdir {
    char path[256];
} fx_tmpdir_t;

void fx_tmpdir_make(fx_tmpdir_t *dir);
void fx_tmpdir_remove(fx_tmpdir_t *dir);

/* A funneld child process. */
typedef struct fx_daemon {
    pid_t pid;     /* 0 when not running */
    char dir[256]; /* its working directory (database, log, ready file) */
    char db[300];
    char log[300];
    char ingest[128], submit[128], publish[128], replay[128];
    int metrics_port; /* the metrics port the ready file names; 0: none */
} fx_daemon_t;

/* Starts funneld with its database in dir, every endpoint on 127.0.0.1:* and the extra
 * arguments (NULL-terminated, may be NULL), and waits until it is ready (asserts on failure).
 * When d->ingest etc. are already set (a restart), the same ports are reused. */
void fx_daemon_start(fx_daemon_t *d, const char *dir, const char *const *extra_args);
/* fx_daemon_start in two steps: spawn returns at once, wait_ready returns the moment the ready
 * file appears (for tests that race against readiness). */
void fx_daemon_spawn(fx_daemon_t *d, const char *dir, const char *const *extra_args);
void fx_daemon_wait_ready(fx_daemon_t *d);
/* SIGTERM and wait (15 s at most, then SIGKILL and an error line on stderr); returns the exit
 * status (or 128+signal). Sanitizer reports in funneld's log are copied to stderr, where
 * ctest's FAIL_REGULAR_EXPRESSION turns them into a failure. */
int fx_daemon_stop(fx_daemon_t *d);
/* Like fx_daemon_stop, but keeps sending SIGTERM and SIGINT, alternately, until funneld has
 * exited: a repeated stop request at any instant of shutdown must not change the outcome. */
int fx_daemon_stop_insisting(fx_daemon_t *d);
/* Waits (15 s at most, then SIGKILL and an error line) for funneld to exit after a signal the
 * test sent; returns what fx_daemon_stop returns. */
int fx_daemon_wait_exit(fx_daemon_t *d);
/* SIGKILL and wait. */
void fx_daemon_kill(fx_daemon_t *d);
/* Sends a signal without waiting. */
void fx_daemon_signal(fx_daemon_t *d, int sig);
/* True when the log contains needle (polls up to timeout_ms). */
bool fx_daemon_log_has(const fx_daemon_t *d, const char *needle, int timeout_ms);

/* A child process other than funneld (an adapter's executable). fx_spawn starts argv
 * (NULL-terminated, argv[0] a path) with stdout and stderr appended to log (NULL: inherited)
 * and returns its pid. fx_wait_file waits until the file at path exists (true), or the child
 * exits or timeout_ms pass (false). fx_stop_child sends SIGTERM and waits (15 s, then SIGKILL
 * and an error line), copies sanitizer reports in log (may be NULL) to stderr, sets *pid to 0
 * and returns the exit status (or 128+signal); -1 when *pid is 0. */
pid_t fx_spawn(const char *const *argv, const char *log);
bool fx_wait_file(const char *path, pid_t pid, int timeout_ms);
int fx_stop_child(pid_t *pid, const char *log);

/* Runs a command (argv NULL-terminated) capturing stdout and stderr into out (NUL-terminated,
 * truncated to out_len); returns its exit status. */
int fx_run(const char *const *argv, char *out, size_t out_len);
/* Runs funneld on the database at db with every endpoint on an ephemeral port and one optional
 * --set (NULL: none), for a test that expects it to refuse to start: returns its exit status
 * with its output in out (fx_run). */
int fx_run_funneld_on(const char *db, const char *set, char *out, size_t out_len);

/* Envelope builders: heap-allocated with protobuf-c's allocator, freed with
 * funnel_envelope_free. Times are fixed so tests are reproducible unless given. */
funnel_envelope_t *fx_lead_created(const char *event_id, const char *lead_id, int64_t at_ms);
funnel_envelope_t *fx_payment(const char *event_id, const char *payment_id, const char *client,
                              int64_t minor, const char *currency, int64_t at_ms);

/* Packs env into a fresh malloc'd buffer; *len receives the size. */
uint8_t *fx_pack(const funnel_envelope_t *env, size_t *len);

/* Sleeps ms milliseconds; for polling loops only, never to wait for time-dependent logic. */
void fx_sleep_ms(int ms);

/* Current real time in ms (events must be near now for funneld to accept them). */
int64_t fx_now_ms(void);

/* Writes text to the file at path, replacing it (asserts on failure). */
void fx_file_put(const char *path, const char *text);
/* Writes text to dir/name (asserts on failure) and puts that path into path[0..path_len). */
void fx_file_write(const char *dir, const char *name, const char *text, char *path,
                   size_t path_len);

/* fx_daemon_stop for a fini: a non-zero exit becomes a "FUNNEL TEST ERROR" line on stderr,
 * which ctest turns into a failure even though the test itself has already passed. */
void fx_daemon_finish(fx_daemon_t *d);

typedef struct funnel_client funnel_client_t;

/* A suite's set-up in one call: a temp dir, config_text written to dir/funneld.conf (its path
 * in conf, which must hold 300 bytes), funneld started with --config on it, and a client. */
void fx_suite_start(fx_tmpdir_t *tmp, fx_daemon_t *d, funnel_client_t **client,
                    const char *config_text, char *conf);
/* The matching tear-down: fx_daemon_finish, the client, the temp dir. */
void fx_suite_stop(fx_tmpdir_t *tmp, fx_daemon_t *d, funnel_client_t **client);

/* A suite's set-up without a config file: a temp dir and funneld started in it with the extra
 * arguments (NULL-terminated, may be NULL). fx_daemon_suite_stop is its tear-down. */
void fx_daemon_suite_start(fx_tmpdir_t *tmp, fx_daemon_t *d, const char *const *extra_args);
void fx_daemon_suite_stop(fx_tmpdir_t *tmp, fx_daemon_t *d);

/* Submits env on its topic through client to d's submit socket and frees it; asserts the
 * request itself worked and, unless want is negative, that the answer was want. Returns the
 * answer (its reason included). */
funnel_submit_result_t fx_submit(funnel_client_t *client, const fx_daemon_t *d,
                                 funnel_envelope_t *env, int want);

/* Builds the i-th envelope of a pipelined submit (owned by the caller of the builder). */
typedef funnel_envelope_t *(*fx_envelope_fn)(size_t i, void *arg);

/* One answer of the submit socket: the id frame and the status frame, as received. */
typedef struct fx_answer {
    char event_id[160];
    char status[256];
} fx_answer_t;

/* An fx_envelope_fn: lead.created number i, event_id "<prefix>-0000i" (prefix is arg, a
 * string), on lead "lead-<prefix>", at the current time. */
funnel_envelope_t *fx_numbered_lead(size_t i, void *prefix);

/* A ZeroMQ socket of type in zctx, connected to endpoint, that never lingers and waits 10 s at
 * most for a message (asserts on failure); the caller closes it. */
void *fx_zsock_connect(void *zctx, int type, const char *endpoint);

/* A socket like fx_zsock_connect's, not yet connected, that will use CURVE towards a server
 * whose public key is server_public (Z85) as the client of key pair `client` (both keys, Z85).
 * client NULL: plain, no CURVE. Connect it with zmq_connect (after a zmq_socket_monitor, say). */
void *fx_zsock_curve(void *zctx, int type, const char *client_public, const char *client_secret,
                     const char *server_public);
/* fx_zsock_curve, connected to endpoint. */
void *fx_zsock_connect_curve(void *zctx, int type, const char *endpoint, const char *client_public,
                             const char *client_secret, const char *server_public);

/* Reads one answer from a DEALER socket into a; asserts it came within the socket's timeout. */
void fx_answer_recv(void *dealer, fx_answer_t *a);

/* Sends n envelopes made by make on one DEALER socket to endpoint, at most window unanswered
 * (0: all at once, so they land in one batch), and reads every answer: asserts each one came
 * and, unless want is NULL, that each says exactly want ("ok"). answers (NULL, or room for n)
 * receives them in arrival order. Returns the number of answers that said "ok". */
size_t fx_submit_pipelined(const char *endpoint, size_t n, size_t window, fx_envelope_fn make,
                           void *arg, const char *want, fx_answer_t *answers);

/* The same for envelopes already built: sends envs[0..n) in one go and frees them. */
size_t fx_submit_burst(const char *endpoint, funnel_envelope_t **envs, size_t n, const char *want,
                       fx_answer_t *answers);

/* Runs funnelctl against d (its database and every endpoint, --timeout-ms 3000, each of which
 * args may override) with args (NULL-terminated) after them; returns the exit status. */
int fx_ctl(const fx_daemon_t *d, char *out, size_t out_len, const char *const *args);

/* The sequence of the last output row funneld has committed (0: none), read from its database:
 * after the acks of what a test submitted, the end of the stream those events produced. */
uint64_t fx_daemon_last_seq(const fx_daemon_t *d);

/* Follows d's output from opts->from_seq (opts may be NULL: from the oldest) with opts' other
 * settings, passing each message to cb, until the message of fx_daemon_last_seq has been
 * delivered: "done" is that sequence, not a quiet spell. cb returns 0 to go on, non-zero to
 * stop at once (returned as is). Asserts when the stream stops first (30 s without a message).
 * Returns 0 once the end was reached. */
int fx_follow_to_end(const fx_daemon_t *d, funnel_client_t *client,
                     const funnel_follow_options_t *opts, funnel_client_msg_cb cb, void *arg);

#endif
