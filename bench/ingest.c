/* ingest.c — how close funneld's acknowledged ingest comes to the raw limits beneath it.
 *
 * One run builds N lead.created envelopes of exactly ENVELOPE_BYTES with UUIDv7 event ids in
 * time order, then measures, with those same bytes:
 *   1. funneld: the real daemon in a temporary directory; a DEALER keeps W submits in flight
 *      and counts "ok" acks. Events/s, and submit→ack latency percentiles.
 *   2. ZeroMQ: PUB→SUB over TCP loopback, two threads of this process. Messages/s received.
 *   3. SQLite: the rows funneld writes per event (the events row with its unique event_id and
 *      the outbox row), SQL_BATCH events per transaction, WAL + synchronous=NORMAL, prepared
 *      statements. Events/s.
 * and prints funneld's ratio to each limit and to the smaller one, against the target: at least
 * half of the smaller raw limit.
 *
 * Exit status: 0 when every measurement completed, whatever the ratios (machines are noisy);
 * 1 on an error; 2 on a usage error. Every process, socket and file it creates is gone when it
 * returns, on error paths and after SIGINT/SIGTERM too. */
#include "funnel/codec.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "funnel/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define ENVELOPE_BYTES    200 /* the size the raw limits in DESIGN.md were measured at */
#define TOPIC             "lead.created"
#define DEFAULT_EVENTS    200000
#define DEFAULT_WINDOW    1000
#define MAX_EVENTS        10000000 /* ~2 GB of envelopes; more is a typo */
#define MAX_WINDOW        100000   /* funneld queues at most this many replies per peer */
#define SQL_BATCH         1000     /* events per SQLite transaction, as funneld's batch_max */
#define READY_TIMEOUT_MS  20000
#define STOP_TIMEOUT_MS   15000
#define STALL_TIMEOUT_MS  15000 /* no progress for this long: the measurement failed */
#define WARMUP_TIMEOUT_MS 5000
#define TARGET_RATIO      0.5 /* funneld must reach half of the smaller raw limit */

/* Set by SIGINT/SIGTERM; every wait loop checks it so the run unwinds and cleans up. */
static volatile sig_atomic_t interrupted;

static int bench_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints one error line; returns -1 so callers can `return bench_error(...)`. */
static int bench_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_ingest: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* No SA_RESTART: blocking calls return EINTR and the loops around them see the flag. */
static void signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- clocks ---------------------------------------------------------------------------- */

/* Intervals use the monotonic clock: NTP steps must not bend a measurement. */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Event times are wall-clock milliseconds, as publishers stamp them. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double seconds(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* ---- the workload ---------------------------------------------------------------------- */

/* The N events every measurement uses, built once so all three move the same bytes. */
typedef struct workload {
    size_t n;
    char (*ids)[37];    /* UUIDv7 event ids, strictly increasing (events are 1 ms apart) */
    uint8_t *envelopes; /* n packed Envelopes of env_len bytes each, back to back */
    size_t env_len;
    int64_t base_ms; /* occurred_at_ms of event 0 */
} workload_t;

static const uint8_t *workload_envelope(const workload_t *w, size_t i)
{
    return w->envelopes + i * w->env_len;
}

/* Packs event i, padding the touch's content with `pad` bytes, into out; with out == NULL only
 * returns the packed size. A realistic lead: one UTM touch, owner and segment set. */
static size_t envelope_pack(const char *event_id, size_t i, int64_t at_ms, size_t pad, uint8_t *out)
{
    char lead_id[32], content[ENVELOPE_BYTES + 1];
    Funnel__V1__Touch touch = FUNNEL__V1__TOUCH__INIT;
    Funnel__V1__Touch *touches[] = {&touch};
    Funnel__V1__LeadCreated lead = FUNNEL__V1__LEAD_CREATED__INIT;
    funnel_envelope_t env = FUNNEL__V1__ENVELOPE__INIT;

    snprintf(lead_id, sizeof lead_id, "lead-%010zu", i); /* fixed width: fixed size */
    memset(content, 'x', pad);
    content[pad] = '\0';
    touch.channel = "paid_search";
    touch.source = "google";
    touch.medium = "cpc";
    touch.campaign = "spring-launch";
    touch.content = content;
    touch.term = "crm software";
    touch.at_ms = at_ms - 60000;
    lead.lead_id = lead_id;
    lead.owner = "marketing";
    lead.segment = "smb";
    lead.n_touches = 1;
    lead.touches = touches;
    env.event_id = (char *)event_id;
    env.occurred_at_ms = at_ms;
    env.source = "bench";
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED;
    env.lead_created = &lead;
    return out ? funnel__v1__envelope__pack(&env, out)
               : funnel__v1__envelope__get_packed_size(&env);
}

static void workload_free(workload_t *w)
{
    free(w->ids);
    free(w->envelopes);
    memset(w, 0, sizeof *w);
}

/* Event ids are UUIDv7 one millisecond apart, ending now: each insert lands at the right edge
 * of the unique index, as with a real publisher, and sorted order allows binary search. */
static int workload_ids(workload_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (funnel_uuid7(w->base_ms + (int64_t)i, w->ids[i]))
            return bench_error("funnel_uuid7 failed");
        if (i && strcmp(w->ids[i - 1], w->ids[i]) >= 0)
            return bench_error("event ids are not increasing at %zu", i);
    }
    return 0;
}

/* Builds n events. Ids, lead ids and timestamps have fixed widths, so one padding gives every
 * envelope exactly ENVELOPE_BYTES; each packed size is checked anyway. */
static int workload_build(workload_t *w, size_t n)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->base_ms = wall_ms() - (int64_t)n;
    if (!(w->ids = malloc(n * sizeof *w->ids)))
        return bench_error("out of memory for %zu event ids", n);
    if (workload_ids(w))
        goto fail;
    size_t pad = 0;
    while (pad < ENVELOPE_BYTES &&
           envelope_pack(w->ids[0], 0, w->base_ms, pad, NULL) < ENVELOPE_BYTES)
        pad++;
    w->env_len = envelope_pack(w->ids[0], 0, w->base_ms, pad, NULL);
    if (!(w->envelopes = malloc(n * w->env_len))) {
        bench_error("out of memory for %zu envelopes", n);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *dst = w->envelopes + i * w->env_len;
        if (envelope_pack(w->ids[i], i, w->base_ms + (int64_t)i, pad, dst) != w->env_len) {
            bench_error("envelope %zu does not pack to %zu bytes", i, w->env_len);
            goto fail;
        }
    }
    return 0;
fail:
    workload_free(w);
    return -1;
}

/* The index of event id (36 bytes, not NUL-terminated) in the sorted id table. */
static bool workload_find(const workload_t *w, const void *id, size_t len, size_t *index)
{
    size_t lo = 0, hi = w->n;
    if (len != 36)
        return false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(w->ids[mid], id, 36);
        if (c == 0) {
            *index = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* ---- temporary directory --------------------------------------------------------------- */

static int tmpdir_make(char *path, size_t len)
{
    const char *base = getenv("TMPDIR");
    snprintf(path, len, "%s/funnel-bench-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path)) {
        path[0] = '\0';
        return bench_error("mkdtemp: %s", strerror(errno));
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path))
        fprintf(stderr, "bench_ingest: cannot remove %s: %s\n", path, strerror(errno));
    return 0; /* keep going: remove as much as possible */
}

static void tmpdir_remove(char *path)
{
    if (path[0])
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    path[0] = '\0';
}

/* ---- the funneld process --------------------------------------------------------------- */

/* A funneld child with its files in the bench's temporary directory. */
typedef struct daemon_proc {
    pid_t pid; /* 0 when not running */
    char db[PATH_MAX], log[PATH_MAX], ready[PATH_MAX];
    char submit[256]; /* the resolved submit endpoint, from the ready file */
    char engines[64]; /* "--set" argument: engines=none or the full list */
} daemon_proc_t;

/* The child side of the fork: never returns. */
static void daemon_exec(const daemon_proc_t *d, pid_t parent)
{
    /* clang-format off */
    const char *argv[] = {
        FUNNELD_PATH,
        "--database", d->db,
        "--ingest", "tcp://127.0.0.1:*",
        "--submit", "tcp://127.0.0.1:*",
        "--publish", "tcp://127.0.0.1:*",
        "--replay", "tcp://127.0.0.1:*",
        "--ready-file", d->ready,
        "--log-level", "warn",
        "--set", "sync=normal", /* explicit: a changed default must not skew the comparison */
        "--set", d->engines,
        NULL,
    };
    /* clang-format on */
    /* If the bench is killed outright (no chance to clean up), funneld goes with it. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
    }
    execv(FUNNELD_PATH, (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", FUNNELD_PATH, strerror(errno));
    _exit(127);
}

/* Reads the submit endpoint from the ready file; false until funneld has written it. */
static bool daemon_read_ready(daemon_proc_t *d)
{
    FILE *f = fopen(d->ready, "r");
    char line[512];
    if (!f)
        return false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "submit=", 7))
            snprintf(d->submit, sizeof d->submit, "%.255s", line + 7);
    }
    fclose(f);
    return d->submit[0] != '\0';
}

/* Waits up to timeout_ms for the child; returns its exit status, or -1 if still running. */
static int daemon_wait(daemon_proc_t *d, int timeout_ms)
{
    int status;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid || (r < 0 && errno == ECHILD)) {
            d->pid = 0;
            if (r < 0)
                return 128;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (waited >= timeout_ms)
            return -1;
        sleep_ms(10);
    }
}

/* SIGTERM (a graceful stop commits what is pending), then SIGKILL if it hangs. Returns the
 * exit status (non-zero is a failure), 0 if nothing was running. Not interruptible: cleanup. */
static int daemon_stop(daemon_proc_t *d)
{
    if (!d->pid)
        return 0;
    kill(d->pid, SIGTERM);
    int status = daemon_wait(d, STOP_TIMEOUT_MS);
    if (status < 0) {
        bench_error("funneld did not stop within %d ms; killing it", STOP_TIMEOUT_MS);
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
        return 128 + SIGKILL;
    }
    return status;
}

/* Starts funneld in dir and waits until its ready file names the submit endpoint. */
/* Starts funneld with its files under dir, named for the engines variant (label). */
static int daemon_start(daemon_proc_t *d, const char *dir, const char *label, const char *engines)
{
    memset(d, 0, sizeof *d);
    snprintf(d->db, sizeof d->db, "%s/funneld-%s.db", dir, label);
    snprintf(d->log, sizeof d->log, "%s/funneld-%s.log", dir, label);
    snprintf(d->ready, sizeof d->ready, "%s/ready-%s", dir, label);
    snprintf(d->engines, sizeof d->engines, "engines=%s", engines);
    pid_t parent = getpid();
    fflush(NULL); /* the child must not flush our buffered output a second time */
    pid_t pid = fork();
    if (pid < 0)
        return bench_error("fork: %s", strerror(errno));
    if (pid == 0)
        daemon_exec(d, parent);
    d->pid = pid;
    for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 10) {
        if (daemon_read_ready(d))
            return 0;
        if (interrupted) {
            daemon_stop(d);
            return bench_error("interrupted");
        }
        int status = daemon_wait(d, 0);
        if (status >= 0)
            return bench_error("funneld exited with status %d before it was ready", status);
        sleep_ms(10);
    }
    daemon_stop(d);
    return bench_error("funneld was not ready within %d ms", READY_TIMEOUT_MS);
}

/* Copies the end of funneld's log to stderr, so a failed run says why. Says nothing after an
 * interrupt (the user knows why) or when the log is empty. */
static void daemon_dump_log(const daemon_proc_t *d)
{
    char buf[4096];
    size_t n;
    FILE *f = interrupted ? NULL : fopen(d->log, "r");
    if (!f)
        return;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    if (size > 0) {
        fseek(f, size > (long)sizeof buf ? -(long)sizeof buf : -size, SEEK_END);
        fprintf(stderr, "---- the end of funneld's log ----\n");
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, stderr);
        fprintf(stderr, "---- end of funneld's log ----\n");
    }
    fclose(f);
}

/* ---- 1. funneld: acknowledged submit ----------------------------------------------------- */

typedef struct funneld_result {
    double rate;             /* "ok" acks per second, first submit to last ack */
    uint64_t p50_ns, p99_ns; /* submit→ack latency */
    uint64_t max_ns;
} funneld_result_t;

/* A windowed submit run over one DEALER. */
typedef struct submit_run {
    const workload_t *w;
    size_t window; /* submits in flight at most */
    void *sock;
    uint64_t *sent_ns; /* when each event's submit was handed to ZeroMQ */
    uint64_t *lat_ns;  /* submit→ack of each answered event, in answer order */
    uint8_t *answered; /* 1 once event i was answered: a repeated answer counts once */
    size_t sent, n_answered, ok;
    uint64_t last_ack_ns;
    char refusal[256]; /* the first answer that was not "ok" */
} submit_run_t;

/* Sends until the window is full, every event is out, or the socket is full (EAGAIN). */
static int submit_send_some(submit_run_t *r)
{
    const workload_t *w = r->w;
    while (r->sent < w->n && r->sent - r->n_answered < r->window) {
        size_t i = r->sent;
        r->sent_ns[i] = mono_ns();
        if (zmq_send(r->sock, TOPIC, strlen(TOPIC), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (zmq_errno() == EAGAIN || zmq_errno() == EINTR)
                return 0;
            return bench_error("submit: %s", zmq_strerror(zmq_errno()));
        }
        /* Once the first frame is queued, ZeroMQ takes the rest of the message. */
        if (zmq_send(r->sock, workload_envelope(w, i), w->env_len, ZMQ_DONTWAIT) < 0)
            return bench_error("submit: %s", zmq_strerror(zmq_errno()));
        r->sent++;
    }
    return 0;
}

/* Books one answer [event_id][status]. Unknown ids and repeats are ignored. */
static void submit_answer(submit_run_t *r, zmq_msg_t *id, zmq_msg_t *status, uint64_t now)
{
    size_t i;
    if (!workload_find(r->w, zmq_msg_data(id), zmq_msg_size(id), &i) || r->answered[i])
        return;
    r->answered[i] = 1;
    r->lat_ns[r->n_answered++] = now - r->sent_ns[i];
    r->last_ack_ns = now;
    const char *s = status ? zmq_msg_data(status) : "";
    size_t len = status ? zmq_msg_size(status) : 0;
    if (len == 2 && !memcmp(s, "ok", 2))
        r->ok++;
    else if (!r->refusal[0])
        snprintf(r->refusal, sizeof r->refusal, "%.*s: %.*s", 36, r->w->ids[i], (int)len, s);
}

/* Reads every answer already queued. */
static int submit_recv_all(submit_run_t *r)
{
    for (;;) {
        zmq_msg_t frames[2];
        size_t n = 0;
        int more = 1;
        zmq_msg_init(&frames[0]);
        zmq_msg_init(&frames[1]);
        while (more) {
            zmq_msg_t scratch, *m = n < 2 ? &frames[n] : &scratch;
            if (m == &scratch)
                zmq_msg_init(m);
            /* Only the first frame can be absent: later frames arrive with it. */
            if (zmq_msg_recv(m, r->sock, n ? 0 : ZMQ_DONTWAIT) < 0) {
                int err = zmq_errno();
                if (m == &scratch)
                    zmq_msg_close(m);
                zmq_msg_close(&frames[0]);
                zmq_msg_close(&frames[1]);
                if (n == 0 && (err == EAGAIN || err == EINTR))
                    return 0;
                return bench_error("ack: %s", zmq_strerror(err));
            }
            more = zmq_msg_more(m);
            if (m == &scratch)
                zmq_msg_close(m);
            else
                n++;
        }
        submit_answer(r, &frames[0], n > 1 ? &frames[1] : NULL, mono_ns());
        zmq_msg_close(&frames[0]);
        zmq_msg_close(&frames[1]);
    }
}

/* Keeps the window full until every event is answered; fails after STALL_TIMEOUT_MS without
 * an answer. Polls for output only while there is something to send. */
static int submit_loop(submit_run_t *r)
{
    uint64_t last_progress = mono_ns();
    while (r->n_answered < r->w->n) {
        if (interrupted)
            return bench_error("interrupted");
        if (submit_send_some(r))
            return -1;
        bool can_send = r->sent < r->w->n && r->sent - r->n_answered < r->window;
        zmq_pollitem_t item = {r->sock, 0, (short)(ZMQ_POLLIN | (can_send ? ZMQ_POLLOUT : 0)), 0};
        if (zmq_poll(&item, 1, 100) < 0 && zmq_errno() != EINTR)
            return bench_error("zmq_poll: %s", zmq_strerror(zmq_errno()));
        size_t before = r->n_answered;
        if (submit_recv_all(r))
            return -1;
        if (r->n_answered != before)
            last_progress = mono_ns();
        else if (mono_ns() - last_progress > (uint64_t)STALL_TIMEOUT_MS * 1000000u)
            return bench_error("no ack from funneld for %d ms (%zu of %zu sent, %zu answered)",
                               STALL_TIMEOUT_MS, r->sent, r->w->n, r->n_answered);
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (n * pct + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

static void submit_summarize(submit_run_t *r, funneld_result_t *out)
{
    size_t n = r->n_answered;
    qsort(r->lat_ns, n, sizeof *r->lat_ns, cmp_u64);
    out->rate = (double)r->ok / seconds(r->last_ack_ns - r->sent_ns[0]);
    out->p50_ns = percentile(r->lat_ns, n, 50);
    out->p99_ns = percentile(r->lat_ns, n, 99);
    out->max_ns = r->lat_ns[n - 1];
}

/* Opens a DEALER on its own context, as a separate publisher process would have. Its queues
 * hold a whole window both ways so the window, not a high-water mark, is what limits. */
static int dealer_open(const char *endpoint, size_t window, void **ctx, void **sock)
{
    int hwm = (int)window + 1000, linger = 0;
    if (!(*ctx = zmq_ctx_new()))
        return bench_error("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (!(*sock = zmq_socket(*ctx, ZMQ_DEALER)))
        return bench_error("zmq_socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(*sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(*sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(*sock, endpoint))
        return bench_error("connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    return 0;
}

static void dealer_close(void **ctx, void **sock)
{
    if (*sock)
        zmq_close(*sock);
    if (*ctx)
        zmq_ctx_term(*ctx);
    *sock = *ctx = NULL;
}

/* Submits every event with `window` in flight; fills out when all were answered "ok". */
static int submit_all(const workload_t *w, size_t window, const char *endpoint,
                      funneld_result_t *out)
{
    submit_run_t r = {.w = w, .window = window};
    void *ctx = NULL;
    int rc = -1;
    r.sent_ns = malloc(w->n * sizeof *r.sent_ns);
    r.lat_ns = malloc(w->n * sizeof *r.lat_ns);
    r.answered = calloc(w->n, 1);
    if (!r.sent_ns || !r.lat_ns || !r.answered) {
        bench_error("out of memory for %zu timestamps", w->n);
        goto out;
    }
    if (dealer_open(endpoint, window, &ctx, &r.sock) || submit_loop(&r))
        goto out;
    if (r.ok != w->n) {
        bench_error("%zu of %zu events answered \"ok\"; first other answer: %s", r.ok, w->n,
                    r.refusal);
        goto out;
    }
    submit_summarize(&r, out);
    rc = 0;
out:
    dealer_close(&ctx, &r.sock);
    free(r.sent_ns);
    free(r.lat_ns);
    free(r.answered);
    return rc;
}

/* After the stop: every event is in funneld's database once, and nothing was dead-lettered. */
static int verify_stored(const workload_t *w, const char *db)
{
    funnel_store_t *store;
    char err[512];
    int64_t events = 0, dead = 0;
    if (funnel_store_open(db, true, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err))
        return bench_error("reopen %s: %s", db, err);
    int rc = funnel_store_event_count(store, &events, &dead);
    funnel_store_destroy(&store);
    if (rc)
        return bench_error("count events in %s failed", db);
    if (events != (int64_t)w->n || dead != 0)
        return bench_error("funneld stored %lld events and %lld dead letters, expected %zu and 0",
                           (long long)events, (long long)dead, w->n);
    return 0;
}

static int bench_funneld(const workload_t *w, size_t window, const char *dir, const char *label,
                         const char *engines, funneld_result_t *out)
{
    daemon_proc_t d;
    fprintf(stderr, "funneld (%s): submitting %zu events, window %zu...\n", label, w->n, window);
    if (daemon_start(&d, dir, label, engines)) {
        daemon_dump_log(&d);
        return -1;
    }
    int rc = submit_all(w, window, d.submit, out);
    int status = daemon_stop(&d);
    if (!rc && status)
        rc = bench_error("funneld exited with status %d after SIGTERM", status);
    if (!rc)
        rc = verify_stored(w, d.db);
    if (rc)
        daemon_dump_log(&d);
    return rc;
}

/* ---- 2. raw ZeroMQ PUB→SUB --------------------------------------------------------------- */

/* The subscriber thread's state. The publisher waits for `live` before it starts the clock. */
typedef struct sub_thread {
    char endpoint[256];
    atomic_bool live;   /* a warm-up message arrived: the subscription reached the PUB */
    atomic_bool abort;  /* the publisher gave up: stop waiting */
    size_t received;    /* TOPIC messages; read after join */
    uint64_t last_ns;   /* when the last of them arrived */
    atomic_bool failed; /* error[] is set; the thread is ending */
    char error[256];
} sub_thread_t;

/* Receives one [topic][payload] message; returns the topic frame's first bytes in topic. */
static int sub_recv(void *sock, char *topic, size_t topic_len)
{
    zmq_msg_t m;
    int more = 1, first = 1;
    topic[0] = '\0';
    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return -1;
        }
        if (first) {
            size_t n = zmq_msg_size(&m) < topic_len - 1 ? zmq_msg_size(&m) : topic_len - 1;
            memcpy(topic, zmq_msg_data(&m), n);
            topic[n] = '\0';
            first = 0;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return 0;
}

/* Counts TOPIC messages until "end", an abort, or STALL_TIMEOUT_MS of silence. */
static void sub_loop(sub_thread_t *t, void *sock)
{
    uint64_t last_msg = mono_ns();
    for (;;) {
        char topic[32];
        if (sub_recv(sock, topic, sizeof topic)) {
            int err = zmq_errno();
            if (err != EAGAIN && err != EINTR) {
                snprintf(t->error, sizeof t->error, "recv: %s", zmq_strerror(err));
                return;
            }
            if (atomic_load(&t->abort) || interrupted)
                return;
            if (mono_ns() - last_msg > (uint64_t)STALL_TIMEOUT_MS * 1000000u) {
                snprintf(t->error, sizeof t->error, "no message for %d ms after %zu",
                         STALL_TIMEOUT_MS, t->received);
                return;
            }
            continue;
        }
        last_msg = mono_ns();
        if (!strcmp(topic, TOPIC)) {
            t->received++;
            t->last_ns = last_msg;
        } else if (!strcmp(topic, "warmup")) {
            atomic_store(&t->live, true);
        } else if (!strcmp(topic, "end")) {
            return;
        }
    }
}

static void *sub_main(void *arg)
{
    sub_thread_t *t = arg;
    int zero = 0, timeout = 100;
    /* Its own context (its own I/O thread), like a subscriber in another process. */
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sock) {
        snprintf(t->error, sizeof t->error, "SUB socket: %s", zmq_strerror(zmq_errno()));
    } else {
        /* Unlimited queue: the count must not depend on drops, only on speed. */
        zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
        if (zmq_connect(sock, t->endpoint))
            snprintf(t->error, sizeof t->error, "connect: %s", zmq_strerror(zmq_errno()));
        else
            sub_loop(t, sock);
    }
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    atomic_store(&t->failed, t->error[0] != '\0');
    return NULL;
}

static int pub_send(void *sock, const char *topic, const void *data, size_t len)
{
    if (zmq_send(sock, topic, strlen(topic), ZMQ_SNDMORE) < 0 || zmq_send(sock, data, len, 0) < 0)
        return bench_error("PUB send: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* Sends warm-up messages until the subscriber has one: before that, PUB drops everything. */
static int pub_warm_up(void *sock, sub_thread_t *t, const workload_t *w)
{
    for (int waited = 0; !atomic_load(&t->live); waited++) {
        if (interrupted)
            return bench_error("interrupted");
        if (atomic_load(&t->failed) || waited >= WARMUP_TIMEOUT_MS)
            return bench_error("ZeroMQ subscriber not connected after %d ms", waited);
        if (pub_send(sock, "warmup", workload_envelope(w, 0), w->env_len))
            return -1;
        sleep_ms(1);
    }
    return 0;
}

/* Publishes every envelope and the end marker; *t0 is when the first one left. */
static int pub_run(void *sock, const workload_t *w, uint64_t *t0)
{
    *t0 = mono_ns();
    for (size_t i = 0; i < w->n; i++) {
        if ((i & 4095) == 0 && interrupted)
            return bench_error("interrupted");
        if (pub_send(sock, TOPIC, workload_envelope(w, i), w->env_len))
            return -1;
    }
    return pub_send(sock, "end", "", 0);
}

static int pub_open(void **ctx, void **sock, char *endpoint, size_t len)
{
    int zero = 0;
    if (!(*ctx = zmq_ctx_new()) || !(*sock = zmq_socket(*ctx, ZMQ_PUB)))
        return bench_error("PUB socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(*sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(*sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(*sock, "tcp://127.0.0.1:*") ||
        zmq_getsockopt(*sock, ZMQ_LAST_ENDPOINT, endpoint, &len))
        return bench_error("PUB bind: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* PUB in this thread, SUB in another, over TCP loopback; *rate counts received messages. */
static int bench_zmq(const workload_t *w, double *rate)
{
    sub_thread_t t = {.received = 0};
    void *ctx = NULL, *sock = NULL;
    pthread_t thread;
    bool started = false;
    uint64_t t0 = 0;
    int rc = -1;
    atomic_init(&t.live, false);
    atomic_init(&t.abort, false);
    atomic_init(&t.failed, false);
    fprintf(stderr, "zeromq: PUB->SUB %zu messages...\n", w->n);
    if (pub_open(&ctx, &sock, t.endpoint, sizeof t.endpoint))
        goto out;
    if (pthread_create(&thread, NULL, sub_main, &t)) {
        bench_error("pthread_create failed");
        goto out;
    }
    started = true;
    if (pub_warm_up(sock, &t, w) || pub_run(sock, w, &t0))
        goto out;
    rc = 0;
out:
    if (rc)
        atomic_store(&t.abort, true);
    if (started)
        pthread_join(thread, NULL);
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    if (!rc && t.error[0])
        rc = bench_error("ZeroMQ subscriber: %s", t.error);
    if (!rc && t.received == 0)
        rc = bench_error("ZeroMQ subscriber received nothing");
    if (!rc) {
        *rate = (double)t.received / seconds(t.last_ns - t0);
        if (t.received != w->n)
            fprintf(stderr, "zeromq: %zu of %zu messages arrived (counted as received)\n",
                    t.received, w->n);
    }
    return rc;
}

/* ---- 3. raw SQLite ---------------------------------------------------------------------- */

/* The statements funneld's store runs per event (daemon/store.c), unchanged. */
static const char event_sql[] =
    "INSERT INTO events(event_id, topic, occurred_at_ms, received_at_ms, source, envelope) "
    "VALUES (?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING";
static const char outbox_sql[] =
    "INSERT INTO outbox(topic, created_at_ms, envelope) VALUES (?,?,?)";

enum { SQ_BEGIN, SQ_COMMIT, SQ_EVENT, SQ_OUTBOX, SQ_COUNT_ };

static int step_reset(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : bench_error("sqlite: %s", sqlite3_errmsg(db));
}

/* Inserts events [from, to) in one transaction. */
static int sqlite_batch(sqlite3 *db, sqlite3_stmt **st, const workload_t *w, size_t from, size_t to)
{
    int64_t now = wall_ms(); /* funneld too reads the clock once per batch */
    if (step_reset(db, st[SQ_BEGIN]))
        return -1;
    for (size_t i = from; i < to; i++) {
        const uint8_t *env = workload_envelope(w, i);
        sqlite3_stmt *ev = st[SQ_EVENT], *ob = st[SQ_OUTBOX];
        sqlite3_bind_text(ev, 1, w->ids[i], 36, SQLITE_STATIC);
        sqlite3_bind_text(ev, 2, TOPIC, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ev, 3, w->base_ms + (int64_t)i);
        sqlite3_bind_int64(ev, 4, now);
        sqlite3_bind_text(ev, 5, "bench", -1, SQLITE_STATIC);
        sqlite3_bind_blob(ev, 6, env, (int)w->env_len, SQLITE_STATIC);
        sqlite3_bind_text(ob, 1, TOPIC, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ob, 2, now);
        sqlite3_bind_blob(ob, 3, env, (int)w->env_len, SQLITE_STATIC);
        if (step_reset(db, ev) || step_reset(db, ob))
            return -1;
    }
    return step_reset(db, st[SQ_COMMIT]);
}

/* The store's own open gives the exact schema funneld has (migrations included); the pragmas
 * that matter are checked rather than trusted. */
static int sqlite_check_pragmas(sqlite3 *db)
{
    sqlite3_stmt *st;
    char mode[16] = "";
    int sync = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            sync = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (strcmp(mode, "wal") || sync != 1)
        return bench_error("raw SQLite database has journal_mode=%s synchronous=%d, expected "
                           "wal and 1 (NORMAL)",
                           mode, sync);
    return 0;
}

static int sqlite_prepare(sqlite3 *db, sqlite3_stmt **st)
{
    const char *sql[SQ_COUNT_] = {"BEGIN IMMEDIATE", "COMMIT", event_sql, outbox_sql};
    for (int i = 0; i < SQ_COUNT_; i++)
        if (sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL))
            return bench_error("prepare %s: %s", sql[i], sqlite3_errmsg(db));
    return 0;
}

/* Every event as funneld stores it, SQL_BATCH per transaction; *rate in events per second. */
static int bench_sqlite(const workload_t *w, const char *dir, double *rate)
{
    char path[PATH_MAX], err[512];
    funnel_store_t *store = NULL;
    sqlite3_stmt *st[SQ_COUNT_] = {0};
    int rc = -1;
    fprintf(stderr, "sqlite: inserting %zu events, %d per transaction...\n", w->n, SQL_BATCH);
    snprintf(path, sizeof path, "%s/raw.db", dir);
    if (funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err)) {
        bench_error("open %s: %s", path, err);
        goto out;
    }
    sqlite3 *db = funnel_store_db(store);
    if (sqlite_check_pragmas(db) || sqlite_prepare(db, st))
        goto out;
    uint64_t t0 = mono_ns();
    for (size_t i = 0; i < w->n; i += SQL_BATCH) {
        if (interrupted) {
            bench_error("interrupted");
            goto out;
        }
        if (sqlite_batch(db, st, w, i, i + SQL_BATCH < w->n ? i + SQL_BATCH : w->n))
            goto out;
    }
    *rate = (double)w->n / seconds(mono_ns() - t0);
    rc = 0;
out:
    if (store && !sqlite3_get_autocommit(funnel_store_db(store)))
        sqlite3_exec(funnel_store_db(store), "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < SQ_COUNT_; i++)
        sqlite3_finalize(st[i]); /* before the close, which refuses while statements live */
    funnel_store_destroy(&store);
    return rc;
}

/* ---- report ------------------------------------------------------------------------------ */

/* 1234567.8 → "1,234,568" */
static const char *fmt_count(double v, char *buf, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%.0f", v < 0 ? 0 : v);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < len; i++) {
        if (i && (n - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
    return buf;
}

static void print_funneld_row(const char *what, const funneld_result_t *f)
{
    char a[32];
    printf("  %-40s %12s %-8s %7.2fms %7.2fms %7.2fms\n", what, fmt_count(f->rate, a, sizeof a),
           "events/s", (double)f->p50_ns / 1e6, (double)f->p99_ns / 1e6, (double)f->max_ns / 1e6);
}

/* core: funneld with engines off, writing exactly the rows the raw SQLite run writes (event +
 * outbox), so the ratio against the raw limits is like for like; that one has the target.
 * full: every engine on (attribution adds a lead and a touch row per lead.created), for
 * information. */
static void print_report(const workload_t *w, size_t window, const funneld_result_t *core,
                         const funneld_result_t *full, double zmq_rate, double sql_rate)
{
    char a[32], b[32], c[32], d[32];
    double floor = zmq_rate < sql_rate ? zmq_rate : sql_rate;
    double ratio = core->rate / floor;
    printf("\nfunneld ingest benchmark: %s %s events, %zu-byte envelopes, window %s\n",
           fmt_count((double)w->n, a, sizeof a), TOPIC, w->env_len,
           fmt_count((double)window, b, sizeof b));
    printf("funneld: default batching, sync=normal, log level warn\n\n");
    printf("  %-40s %12s %-8s %9s %9s %9s\n", "measurement", "rate", "", "p50", "p99", "max");
    print_funneld_row("funneld submit -> ack, engines off", core);
    print_funneld_row("funneld submit -> ack, all engines on", full);
    printf("  %-40s %12s %s\n", "raw ZeroMQ PUB -> SUB, TCP loopback",
           fmt_count(zmq_rate, b, sizeof b), "msg/s");
    printf("  %-40s %12s %s\n", "raw SQLite events+outbox rows, 1000/txn",
           fmt_count(sql_rate, c, sizeof c), "events/s");
    printf("\n  %-40s %8s %8s %8s\n", "ratio (engines off)", "value", "target", "result");
    printf("  %-40s %7.1f%%\n", "funneld / ZeroMQ", 100.0 * core->rate / zmq_rate);
    printf("  %-40s %7.1f%%\n", "funneld / SQLite", 100.0 * core->rate / sql_rate);
    snprintf(d, sizeof d, ">=%.0f%%", 100.0 * TARGET_RATIO);
    printf("  %-40s %7.1f%% %8s %8s\n", "funneld / min(ZeroMQ, SQLite)", 100.0 * ratio, d,
           ratio >= TARGET_RATIO ? "PASS" : "BELOW");
    printf("  %-40s %7.1f%%   (engines write more rows than the raw run; no target)\n",
           "all engines on / min(ZeroMQ, SQLite)", 100.0 * full->rate / floor);
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_ingest [--events N] [--window W]\n"
            "\n"
            "Measures funneld's acknowledged-ingest throughput and latency against the raw\n"
            "limits under it, all with the same %d-byte %s envelopes:\n"
            "  1. funneld (%s) in a temporary directory, N submits over a DEALER,\n"
            "     W in flight, counting \"ok\" acks;\n"
            "  2. ZeroMQ PUB->SUB over TCP loopback, two threads of this process;\n"
            "  3. SQLite: the events row and outbox row funneld writes per event,\n"
            "     %d events per transaction, WAL, synchronous=NORMAL.\n"
            "Then prints funneld's ratio to each, and to the smaller one against the target\n"
            "(>= %.0f%%). Exits 0 whenever the run completed, whatever the ratios.\n"
            "\n"
            "  -n, --events N   events per measurement (default %d, at most %d)\n"
            "  -w, --window W   submits in flight (default %d, at most %d)\n"
            "  -h, --help       print this help and exit\n"
            "\n"
            "TMPDIR chooses where the temporary directory goes (default /tmp).\n",
            ENVELOPE_BYTES, TOPIC, FUNNELD_PATH, SQL_BATCH, 100.0 * TARGET_RATIO, DEFAULT_EVENTS,
            MAX_EVENTS, DEFAULT_WINDOW, MAX_WINDOW);
}

/* Parses a decimal count in [1, max]. */
static bool parse_count(const char *text, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < 1 || v > max)
        return false;
    *out = (size_t)v;
    return true;
}

/* Returns 0, or 2 for a usage error, or 1 after --help (exit 0 without running). */
static int parse_args(int argc, char **argv, size_t *events, size_t *window)
{
    static const struct option longopts[] = {
        {"events", required_argument, NULL, 'n'},
        {"window", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "n:w:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return 1;
        }
        if (opt == 'n' && parse_count(optarg, MAX_EVENTS, events))
            continue;
        if (opt == 'w' && parse_count(optarg, MAX_WINDOW, window))
            continue;
        if (opt == 'n' || opt == 'w')
            fprintf(stderr, "bench_ingest: --%s: '%s' is not a count in 1..%d\n",
                    opt == 'n' ? "events" : "window", optarg, opt == 'n' ? MAX_EVENTS : MAX_WINDOW);
        usage(stderr);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "bench_ingest: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t events = DEFAULT_EVENTS, window = DEFAULT_WINDOW;
    int args = parse_args(argc, argv, &events, &window);
    if (args)
        return args == 1 ? 0 : 2;
    signals_install();

    workload_t w;
    char dir[PATH_MAX] = "";
    funneld_result_t core = {0}, full = {0};
    double zmq_rate = 0, sql_rate = 0;
    if (workload_build(&w, events))
        return 1;
    int rc = tmpdir_make(dir, sizeof dir);
    if (!rc)
        rc = bench_funneld(&w, window, dir, "core", "none", &core);
    if (!rc)
        rc = bench_funneld(&w, window, dir, "full", "ledger,attribution,sla", &full);
    if (!rc)
        rc = bench_zmq(&w, &zmq_rate);
    if (!rc)
        rc = bench_sqlite(&w, dir, &sql_rate);
    if (!rc)
        print_report(&w, window, &core, &full, zmq_rate, sql_rate);
    tmpdir_remove(dir);
    workload_free(&w);
    return rc ? 1 : 0;
}
