/* bench.c — the helpers every funneld benchmark shares (see bench.h). */
#include "bench.h"

#include "store.h"

#include <libconfig.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef FUNNELD_PATH
#error "FUNNELD_PATH must name the funneld binary"
#endif
#ifndef FUNNEL_SOURCE_DIR
#error "FUNNEL_SOURCE_DIR must name the source tree (for examples/funneld.conf)"
#endif

#define BENCH_EXAMPLE_CONFIG FUNNEL_SOURCE_DIR "/examples/funneld.conf"
#define READY_TIMEOUT_MS     20000
#define STOP_TIMEOUT_MS      15000
#define STALL_TIMEOUT_MS     15000 /* no answer for this long: the measurement failed */

volatile sig_atomic_t bench_interrupted;
static const char *program = "bench";

static void on_signal(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

void bench_init(const char *name)
{
    struct sigaction sa;
    program = name;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int bench_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

/* ---- clocks and numbers ---------------------------------------------------------------- */

uint64_t bench_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t bench_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bench_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

double bench_seconds(uint64_t ns)
{
    return (double)ns / 1e9;
}

const char *bench_fmt_count(double v, char *buf, size_t len)
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

bool bench_parse_count(const char *text, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < 1 || v > max)
        return false;
    *out = (uint64_t)v;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void bench_sort_u64(uint64_t *v, size_t n)
{
    if (n)
        qsort(v, n, sizeof *v, cmp_u64);
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned pct)
{
    if (!n)
        return 0;
    size_t rank = (n * pct + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

/* ---- temporary directory --------------------------------------------------------------- */

int bench_tmpdir_make(char *path, size_t len)
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
        bench_error("cannot remove %s: %s", path, strerror(errno));
    return 0; /* keep going: remove as much as possible */
}

void bench_tmpdir_remove(char *path)
{
    if (path[0])
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    path[0] = '\0';
}

/* ---- the funneld process --------------------------------------------------------------- */

/* The child side of the fork: never returns. */
static void daemon_exec(const bench_daemon_t *d, pid_t parent)
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
        NULL, NULL, /* --set sql_profile=FILE */
        NULL, NULL, /* --config FILE */
        NULL,
    };
    /* clang-format on */
    size_t n = sizeof argv / sizeof argv[0] - 5;
    if (d->profile[0]) {
        argv[n++] = "--set";
        argv[n++] = d->profile;
    }
    if (d->config[0]) {
        argv[n++] = "--config";
        argv[n++] = d->config;
    }
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
static bool daemon_read_ready(bench_daemon_t *d)
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
static int daemon_wait(bench_daemon_t *d, int timeout_ms)
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
        bench_sleep_ms(10);
    }
}

int bench_daemon_stop(bench_daemon_t *d)
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

int bench_daemon_start(bench_daemon_t *d, const char *dir, const char *label, const char *engines,
                       const char *config)
{
    return bench_daemon_start_profiled(d, dir, label, engines, config, NULL);
}

int bench_daemon_start_profiled(bench_daemon_t *d, const char *dir, const char *label,
                                const char *engines, const char *config, const char *profile)
{
    memset(d, 0, sizeof *d);
    if (profile)
        snprintf(d->profile, sizeof d->profile, "sql_profile=%s", profile);
    snprintf(d->db, sizeof d->db, "%s/funneld-%s.db", dir, label);
    snprintf(d->log, sizeof d->log, "%s/funneld-%s.log", dir, label);
    snprintf(d->ready, sizeof d->ready, "%s/ready-%s", dir, label);
    snprintf(d->engines, sizeof d->engines, "engines=%s", engines);
    snprintf(d->config, sizeof d->config, "%s", config ? config : "");
    /* A restart reuses the label: the previous run's ready file must not count. */
    if (unlink(d->ready) && errno != ENOENT)
        return bench_error("remove %s: %s", d->ready, strerror(errno));
    pid_t parent = getpid();
    fflush(NULL); /* the child must not flush our buffered output a second time */
    pid_t pid = fork();
    if (pid < 0)
        return bench_error("fork: %s", strerror(errno));
    if (pid == 0)
        daemon_exec(d, parent);
    d->pid = pid;
    for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 1) {
        if (daemon_read_ready(d))
            return 0;
        if (bench_interrupted) {
            bench_daemon_stop(d);
            return bench_error("interrupted");
        }
        int status = daemon_wait(d, 0);
        if (status >= 0)
            return bench_error("funneld exited with status %d before it was ready", status);
        bench_sleep_ms(1); /* fine-grained: restart-to-ready is measured through this loop */
    }
    bench_daemon_stop(d);
    return bench_error("funneld was not ready within %d ms", READY_TIMEOUT_MS);
}

int bench_verify_stored(const char *db, uint64_t expected, uint64_t expected_dead)
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
    if (events != (int64_t)expected || dead != (int64_t)expected_dead)
        return bench_error(
            "funneld stored %lld events and %lld dead letters, expected %llu and %llu",
            (long long)events, (long long)dead, (unsigned long long)expected,
            (unsigned long long)expected_dead);
    return 0;
}

void bench_daemon_dump_log(const bench_daemon_t *d)
{
    char buf[4096];
    size_t n;
    FILE *f = bench_interrupted ? NULL : fopen(d->log, "r");
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

/* ---- the workload's config ------------------------------------------------------------- */

static int config_set_int(config_t *lc, const char *group, const char *name, int value)
{
    config_setting_t *g = config_lookup(lc, group);
    config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
    if (g && !s)
        s = config_setting_add(g, name, CONFIG_TYPE_INT);
    if (!s || config_setting_set_int(s, value) != CONFIG_TRUE)
        return bench_error("%s: cannot set %s.%s", BENCH_EXAMPLE_CONFIG, group, name);
    return 0;
}

int bench_config_write(const char *dir, char *path, size_t len)
{
    config_t lc;
    int rc = -1;
    config_init(&lc);
    snprintf(path, len, "%s/funneld.conf", dir);
    if (config_read_file(&lc, BENCH_EXAMPLE_CONFIG) != CONFIG_TRUE) {
        bench_error("%s:%d: %s", BENCH_EXAMPLE_CONFIG, config_error_line(&lc),
                    config_error_text(&lc));
        goto out;
    }
    config_setting_t *policies = config_lookup(&lc, "sla.policies");
    if (!policies || config_setting_length(policies) == 0) {
        bench_error("%s has no sla.policies: the bench needs the example policies",
                    BENCH_EXAMPLE_CONFIG);
        goto out;
    }
    if (config_set_int(&lc, "commission", "default_rate_bp", BENCH_RATE_BP) ||
        config_set_int(&lc, "commission", "term_months", BENCH_TERM_MONTHS) ||
        config_set_int(&lc, "commission", "account_manager_rate_bp", BENCH_MANAGER_RATE_BP))
        goto out;
    if (config_write_file(&lc, path) != CONFIG_TRUE) {
        bench_error("cannot write %s", path);
        goto out;
    }
    rc = 0;
out:
    config_destroy(&lc);
    return rc;
}

/* ---- windowed, acknowledged submit ------------------------------------------------------ */

/* A message in flight: the ring slot of index i is i & mask, so at most `mask + 1`
 * consecutive indexes can be outstanding; sending waits while the next one's slot is taken. */
typedef struct flight {
    uint64_t index_1; /* index + 1, 0 when the slot is free */
    uint64_t sent_ns; /* when the submit was handed to ZeroMQ */
} flight_t;

typedef struct submit_run {
    const bench_source_t *src;
    size_t window; /* submits in flight at most */
    void *sock;
    flight_t *ring;
    uint64_t mask;
    size_t in_flight;
    bool pending, done; /* a message taken from src and not sent yet; src has no more */
    const char *topic;
    const void *data;
    size_t len;
    uint64_t index;
    uint64_t first_ns;
} submit_run_t;

/* Takes the next message from the source unless one is already waiting. */
static int submit_take(submit_run_t *r)
{
    if (r->pending || r->done)
        return 0;
    int got = r->src->next(r->src->ctx, &r->topic, &r->data, &r->len, &r->index);
    if (got < 0)
        return -1;
    r->pending = got > 0;
    r->done = got == 0;
    return 0;
}

static bool submit_can_send(submit_run_t *r)
{
    return r->pending && r->in_flight < r->window && !r->ring[r->index & r->mask].index_1;
}

/* Sends until the window is full, the source is empty, or the socket is full (EAGAIN). */
static int submit_send_some(submit_run_t *r)
{
    for (;;) {
        if (submit_take(r))
            return -1;
        if (!submit_can_send(r))
            return 0;
        uint64_t now = bench_mono_ns();
        if (zmq_send(r->sock, r->topic, strlen(r->topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            if (zmq_errno() == EAGAIN || zmq_errno() == EINTR)
                return 0;
            return bench_error("submit: %s", zmq_strerror(zmq_errno()));
        }
        /* Once the first frame is queued, ZeroMQ takes the rest of the message. */
        if (zmq_send(r->sock, r->data, r->len, ZMQ_DONTWAIT) < 0)
            return bench_error("submit: %s", zmq_strerror(zmq_errno()));
        if (!r->first_ns)
            r->first_ns = now;
        r->ring[r->index & r->mask] = (flight_t){r->index + 1, now};
        r->in_flight++;
        r->pending = false;
    }
}

/* Books one answer [event_id][status]. Unknown ids and repeats are ignored. */
static void submit_answer(submit_run_t *r, zmq_msg_t *id, zmq_msg_t *status, uint64_t now)
{
    uint64_t i;
    if (!r->src->index_of(r->src->ctx, zmq_msg_data(id), zmq_msg_size(id), &i))
        return;
    flight_t *f = &r->ring[i & r->mask];
    if (f->index_1 != i + 1)
        return;
    f->index_1 = 0;
    r->in_flight--;
    r->src->answered(r->src->ctx, i, status ? zmq_msg_data(status) : "",
                     status ? zmq_msg_size(status) : 0, now - f->sent_ns, now);
}

/* Reads one whole multipart message into frames[0..1] (later frames are dropped); *n is the
 * number of frames kept. Returns 1 for a message, 0 when none is queued, -1 on an error. */
static int submit_recv_one(void *sock, zmq_msg_t frames[2], size_t *n)
{
    int more = 1;
    *n = 0;
    while (more) {
        zmq_msg_t scratch, *m = *n < 2 ? &frames[*n] : &scratch;
        zmq_msg_init(m);
        /* Only the first frame can be absent: later frames arrive with it. */
        if (zmq_msg_recv(m, sock, *n ? 0 : ZMQ_DONTWAIT) < 0) {
            int err = zmq_errno();
            zmq_msg_close(m);
            for (size_t k = 0; k < *n; k++)
                zmq_msg_close(&frames[k]);
            if (*n == 0 && (err == EAGAIN || err == EINTR))
                return 0;
            return bench_error("ack: %s", zmq_strerror(err));
        }
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            (*n)++;
    }
    return 1;
}

/* Reads every answer already queued. */
static int submit_recv_all(submit_run_t *r)
{
    for (;;) {
        zmq_msg_t frames[2];
        size_t n;
        int got = submit_recv_one(r->sock, frames, &n);
        if (got > 0 && n > 0)
            submit_answer(r, &frames[0], n > 1 ? &frames[1] : NULL, bench_mono_ns());
        for (size_t k = 0; got > 0 && k < n; k++)
            zmq_msg_close(&frames[k]);
        if (got <= 0)
            return got;
    }
}

/* Keeps the window full until every message is answered; fails after STALL_TIMEOUT_MS without
 * an answer. Polls for output only while there is something to send. */
static int submit_loop(submit_run_t *r)
{
    uint64_t last_progress = bench_mono_ns();
    while (!r->done || r->pending || r->in_flight) {
        if (bench_interrupted)
            return bench_error("interrupted");
        if (submit_send_some(r))
            return -1;
        short events = (short)(ZMQ_POLLIN | (submit_can_send(r) ? ZMQ_POLLOUT : 0));
        zmq_pollitem_t item = {r->sock, 0, events, 0};
        if (zmq_poll(&item, 1, 100) < 0 && zmq_errno() != EINTR)
            return bench_error("zmq_poll: %s", zmq_strerror(zmq_errno()));
        size_t before = r->in_flight;
        if (submit_recv_all(r))
            return -1;
        if (r->in_flight != before || !r->in_flight)
            last_progress = bench_mono_ns();
        else if (bench_mono_ns() - last_progress > (uint64_t)STALL_TIMEOUT_MS * 1000000u)
            return bench_error("no answer from funneld for %d ms (%zu in flight)", STALL_TIMEOUT_MS,
                               r->in_flight);
    }
    return 0;
}

/* Opens a DEALER on its own context, as a separate publisher process would have. Its queues
 * hold a whole window both ways so the window, not a high-water mark, is what limits. */
static int dealer_open(const char *endpoint, size_t window, const bench_curve_t *curve, void **ctx,
                       void **sock)
{
    int hwm = (int)window + 1000, linger = 0;
    if (!(*ctx = zmq_ctx_new()))
        return bench_error("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (!(*sock = zmq_socket(*ctx, ZMQ_DEALER)))
        return bench_error("zmq_socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(*sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(*sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(*sock, ZMQ_LINGER, &linger, sizeof linger);
    if (curve && (zmq_setsockopt(*sock, ZMQ_CURVE_SERVERKEY, curve->server_public, 40) ||
                  zmq_setsockopt(*sock, ZMQ_CURVE_PUBLICKEY, curve->client_public, 40) ||
                  zmq_setsockopt(*sock, ZMQ_CURVE_SECRETKEY, curve->client_secret, 40)))
        return bench_error("CURVE options: %s", zmq_strerror(zmq_errno()));
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

int bench_submit(const char *endpoint, size_t window, const bench_source_t *src, uint64_t *first_ns)
{
    return bench_submit_as(endpoint, window, src, NULL, first_ns);
}

int bench_submit_as(const char *endpoint, size_t window, const bench_source_t *src,
                    const bench_curve_t *curve, uint64_t *first_ns)
{
    submit_run_t r = {.src = src, .window = window};
    void *ctx = NULL;
    uint64_t slots = 1;
    while (slots < 4 * (uint64_t)window) /* room for answers that come back out of order */
        slots <<= 1;
    r.mask = slots - 1;
    if (!(r.ring = calloc(slots, sizeof *r.ring)))
        return bench_error("out of memory for a window of %zu", window);
    int rc = dealer_open(endpoint, window, curve, &ctx, &r.sock);
    if (!rc)
        rc = submit_loop(&r);
    *first_ns = r.first_ns;
    dealer_close(&ctx, &r.sock);
    free(r.ring);
    return rc;
}
