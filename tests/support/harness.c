/* harness.c — see harness.h. */
#include "harness.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "store.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

int64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fx_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void fx_tmpdir_make(fx_tmpdir_t *dir)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir->path, sizeof dir->path, "%s/funnel-test-XXXXXX", base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(dir->path), "mkdtemp: %s", strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fx_tmpdir_remove(fx_tmpdir_t *dir)
{
    /* FUNNEL_TEST_KEEP=1 leaves the directory (database, funneld.log) for a post-mortem. */
    if (dir->path[0] && !getenv("FUNNEL_TEST_KEEP"))
        nftw(dir->path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    dir->path[0] = '\0';
}

/* Reads "key=value" lines of the ready file into the daemon's endpoint fields. */
static bool read_ready(fx_daemon_t *d, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (!strcmp(line, "metrics"))
            d->metrics_port = atoi(eq + 1);
        char *dst = !strcmp(line, "ingest")    ? d->ingest
                    : !strcmp(line, "submit")  ? d->submit
                    : !strcmp(line, "publish") ? d->publish
                    : !strcmp(line, "replay")  ? d->replay
                                               : NULL;
        if (dst)
            snprintf(dst, 128, "%s", eq + 1);
    }
    fclose(f);
    return true;
}

pid_t fx_spawn(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* A test program that ctest kills on a timeout must not leave its daemons running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(127);
        int fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

bool fx_wait_file(const char *path, pid_t pid, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (access(path, F_OK) == 0)
            return true;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false; /* exited (and reaped): the caller's assertion says so */
        fx_sleep_ms(10);
    }
    return false;
}

void fx_daemon_spawn(fx_daemon_t *d, const char *dir, const char *const *extra)
{
    char ready[300];
    const char *argv[64];
    int n = 0;
    bool restart = d->ingest[0] != '\0';
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    snprintf(d->db, sizeof d->db, "%s/funneld.db", dir);
    snprintf(d->log, sizeof d->log, "%s/funneld.log", dir);
    snprintf(ready, sizeof ready, "%s/ready", dir);
    unlink(ready);
    argv[n++] = FUNNELD_PATH;
    argv[n++] = "--database";
    argv[n++] = d->db;
    argv[n++] = "--ingest";
    argv[n++] = restart ? d->ingest : "tcp://127.0.0.1:*";
    argv[n++] = "--submit";
    argv[n++] = restart ? d->submit : "tcp://127.0.0.1:*";
    argv[n++] = "--publish";
    argv[n++] = restart ? d->publish : "tcp://127.0.0.1:*";
    argv[n++] = "--replay";
    argv[n++] = restart ? d->replay : "tcp://127.0.0.1:*";
    argv[n++] = "--ready-file";
    argv[n++] = ready;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    d->pid = fx_spawn(argv, d->log);
}

/* inotify wakes us the moment funneld renames the ready file into place, as systemd or a
 * script would notice it; the 10 ms poll timeout is only for noticing an early exit. */
void fx_daemon_wait_ready(fx_daemon_t *d)
{
    char ready[300];
    snprintf(ready, sizeof ready, "%s/ready", d->dir);
    int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    cr_assert_geq(in, 0, "inotify_init1: %s", strerror(errno));
    cr_assert_geq(inotify_add_watch(in, d->dir, IN_MOVED_TO | IN_CLOSE_WRITE), 0,
                  "inotify_add_watch %s: %s", d->dir, strerror(errno));
    for (int64_t deadline = fx_now_ms() + 20000; fx_now_ms() < deadline;) {
        int status;
        char events[4096];
        if (read_ready(d, ready)) {
            close(in);
            return;
        }
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            d->pid = 0;
            close(in);
            cr_assert_fail("funneld exited before it was ready (status %d); see %s", status,
                           d->log);
        }
        struct pollfd p = {in, POLLIN, 0};
        if (poll(&p, 1, 10) > 0)
            while (read(in, events, sizeof events) > 0)
                ;
    }
    close(in);
    fx_daemon_kill(d);
    cr_assert_fail("funneld did not become ready in 20 s; see %s", d->log);
}

void fx_daemon_start(fx_daemon_t *d, const char *dir, const char *const *extra)
{
    fx_daemon_spawn(d, dir, extra);
    fx_daemon_wait_ready(d);
}

/* Copies sanitizer reports from funneld's log to our stderr, where ctest's
 * FAIL_REGULAR_EXPRESSION sees them: a leak in the daemon fails the test that ran it. */
static void report_sanitizer_errors(const char *log)
{
    FILE *f = log ? fopen(log, "r") : NULL;
    char line[2048];
    bool dump = false;
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        dump = dump || strstr(line, "Sanitizer") || strstr(line, "runtime error:");
        if (dump)
            fputs(line, stderr);
    }
    fclose(f);
}

/* Waits up to timeout_ms for the child, then kills it; returns its exit status. When insist is
 * set, every pass also sends SIGTERM or SIGINT (alternately), so stop requests keep landing at
 * every instant of the shutdown. */
static int reap(pid_t *pid, const char *log, int timeout_ms, bool insist)
{
    int status = 0, pass_us = insist ? 200 : 10000;
    if (!*pid)
        return -1;
    for (int64_t waited_us = 0; waitpid(*pid, &status, WNOHANG) == 0; waited_us += pass_us) {
        if (waited_us >= (int64_t)timeout_ms * 1000) {
            fprintf(stderr, "FUNNEL TEST ERROR: pid %d did not stop within %d ms\n", (int)*pid,
                    timeout_ms);
            kill(*pid, SIGKILL);
            waitpid(*pid, &status, 0);
            break;
        }
        if (insist)
            kill(*pid, waited_us / pass_us % 2 ? SIGINT : SIGTERM);
        nanosleep(&(struct timespec){0, pass_us * 1000L}, NULL);
    }
    *pid = 0;
    report_sanitizer_errors(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int wait_exit(fx_daemon_t *d, int timeout_ms, bool insist)
{
    return reap(&d->pid, d->log, timeout_ms, insist);
}

int fx_stop_child(pid_t *pid, const char *log)
{
    if (!*pid)
        return -1;
    kill(*pid, SIGTERM);
    return reap(pid, log, 15000, false);
}

int fx_daemon_stop(fx_daemon_t *d)
{
    if (!d->pid)
        return -1;
    kill(d->pid, SIGTERM);
    return wait_exit(d, 15000, false);
}

int fx_daemon_stop_insisting(fx_daemon_t *d)
{
    if (!d->pid)
        return -1;
    kill(d->pid, SIGTERM);
    return wait_exit(d, 15000, true);
}

int fx_daemon_wait_exit(fx_daemon_t *d)
{
    return wait_exit(d, 15000, false);
}

void fx_daemon_kill(fx_daemon_t *d)
{
    if (!d->pid)
        return;
    kill(d->pid, SIGKILL);
    wait_exit(d, 15000, false);
}

void fx_daemon_signal(fx_daemon_t *d, int sig)
{
    if (d->pid)
        kill(d->pid, sig);
}

bool fx_daemon_log_has(const fx_daemon_t *d, const char *needle, int timeout_ms)
{
    for (int waited = 0;; waited += 20) {
        FILE *f = fopen(d->log, "r");
        if (f) {
            char line[2048];
            bool found = false;
            while (!found && fgets(line, sizeof line, f))
                found = strstr(line, needle) != NULL;
            fclose(f);
            if (found)
                return true;
        }
        if (waited >= timeout_ms)
            return false;
        fx_sleep_ms(20);
    }
}

int fx_run(const char *const *argv, char *out, size_t out_len)
{
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    ssize_t r;
    char sink[4096];
    while ((r = read(pipefd[0], out_len - used > 1 ? out + used : sink,
                     out_len - used > 1 ? out_len - used - 1 : sizeof sink)) > 0)
        if (out_len - used > 1)
            used += (size_t)r;
    if (out_len)
        out[used] = '\0';
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int fx_run_funneld_on(const char *db, const char *set, char *out, size_t out_len)
{
    const char *argv[] = {FUNNELD_PATH,
                          "--database",
                          db,
                          "--ingest",
                          "tcp://127.0.0.1:*",
                          "--submit",
                          "tcp://127.0.0.1:*",
                          "--publish",
                          "tcp://127.0.0.1:*",
                          "--replay",
                          "tcp://127.0.0.1:*",
                          set ? "--set" : NULL,
                          set,
                          NULL};
    return fx_run(argv, out, out_len);
}

static char *dup_str(const char *s)
{
    char *p = strdup(s);
    cr_assert_not_null(p);
    return p;
}

funnel_envelope_t *fx_lead_created(const char *event_id, const char *lead_id, int64_t at_ms)
{
    funnel_envelope_t *env = calloc(1, sizeof *env);
    Funnel__V1__LeadCreated *lc = calloc(1, sizeof *lc);
    cr_assert(env && lc);
    funnel__v1__envelope__init(env);
    funnel__v1__lead_created__init(lc);
    env->event_id = dup_str(event_id);
    env->occurred_at_ms = at_ms;
    env->source = dup_str("test");
    lc->lead_id = dup_str(lead_id);
    lc->owner = dup_str("marketing");
    lc->segment = dup_str("smb");
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED;
    env->lead_created = lc;
    return env;
}

funnel_envelope_t *fx_payment(const char *event_id, const char *payment_id, const char *client,
                              int64_t minor, const char *currency, int64_t at_ms)
{
    funnel_envelope_t *env = calloc(1, sizeof *env);
    Funnel__V1__PaymentReceived *p = calloc(1, sizeof *p);
    Funnel__V1__Money *m = calloc(1, sizeof *m);
    cr_assert(env && p && m);
    funnel__v1__envelope__init(env);
    funnel__v1__payment_received__init(p);
    funnel__v1__money__init(m);
    env->event_id = dup_str(event_id);
    env->occurred_at_ms = at_ms;
    env->source = dup_str("billing");
    p->payment_id = dup_str(payment_id);
    p->client_id = dup_str(client);
    m->minor = minor;
    m->currency = dup_str(currency);
    p->amount = m;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED;
    env->payment_received = p;
    return env;
}

uint8_t *fx_pack(const funnel_envelope_t *env, size_t *len)
{
    *len = funnel__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    cr_assert_not_null(buf);
    funnel__v1__envelope__pack(env, buf);
    return buf;
}

void fx_file_write(const char *dir, const char *name, const char *text, char *path, size_t path_len)
{
    snprintf(path, path_len, "%s/%s", dir, name);
    fx_file_put(path, text);
}

void fx_file_put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0, "%s: %s", path, strerror(errno));
}

void fx_daemon_finish(fx_daemon_t *d)
{
    int status = fx_daemon_stop(d);
    if (status > 0)
        fprintf(stderr, "FUNNEL TEST ERROR: funneld exited with status %d\n", status);
}

void fx_daemon_suite_start(fx_tmpdir_t *tmp, fx_daemon_t *d, const char *const *extra_args)
{
    fx_tmpdir_make(tmp);
    memset(d, 0, sizeof *d);
    fx_daemon_start(d, tmp->path, extra_args);
}

void fx_daemon_suite_stop(fx_tmpdir_t *tmp, fx_daemon_t *d)
{
    fx_daemon_finish(d);
    fx_tmpdir_remove(tmp);
}

void fx_suite_start(fx_tmpdir_t *tmp, fx_daemon_t *d, funnel_client_t **client,
                    const char *config_text, char *conf)
{
    fx_tmpdir_make(tmp);
    memset(d, 0, sizeof *d);
    fx_file_write(tmp->path, "funneld.conf", config_text, conf, 300);
    cr_assert_eq(funnel_client_new(client), 0);
    const char *args[] = {"--config", conf, NULL};
    fx_daemon_start(d, tmp->path, args);
}

void fx_suite_stop(fx_tmpdir_t *tmp, fx_daemon_t *d, funnel_client_t **client)
{
    funnel_client_destroy(client);
    fx_daemon_suite_stop(tmp, d);
}

funnel_submit_result_t fx_submit(funnel_client_t *client, const fx_daemon_t *d,
                                 funnel_envelope_t *env, int want)
{
    funnel_submit_result_t res;
    char id[160];
    snprintf(id, sizeof id, "%s", env->event_id ? env->event_id : "");
    int rc =
        funnel_client_submit(client, d->submit, funnel_topic_name(env->body_case), env, NULL, &res);
    funnel_envelope_free(&env);
    cr_assert_eq(rc, 0, "submit %s: %s", id, funnel_strerror(rc));
    if (want >= 0)
        cr_assert_eq((int)res.status, want, "%s: status %d (%s)", id, res.status, res.reason);
    return res;
}

static void send_envelope(void *dealer, funnel_envelope_t *env)
{
    size_t len;
    uint8_t *buf = fx_pack(env, &len);
    const char *topic = funnel_topic_name(env->body_case);
    cr_assert_geq(zmq_send(dealer, topic, strlen(topic), ZMQ_SNDMORE), 0);
    cr_assert_geq(zmq_send(dealer, buf, len, 0), 0);
    free(buf);
    funnel_envelope_free(&env);
}

void fx_answer_recv(void *dealer, fx_answer_t *a)
{
    int r = zmq_recv(dealer, a->event_id, sizeof a->event_id - 1, 0);
    cr_assert_geq(r, 0, "no answer from funneld");
    a->event_id[r < (int)sizeof a->event_id - 1 ? r : (int)sizeof a->event_id - 1] = '\0';
    r = zmq_recv(dealer, a->status, sizeof a->status - 1, 0);
    cr_assert_geq(r, 0, "an answer without a status (%s)", a->event_id);
    a->status[r < (int)sizeof a->status - 1 ? r : (int)sizeof a->status - 1] = '\0';
}

/* Reads answer i into a; unless want is NULL, asserts it says want. True when it says ok. */
static bool recv_answer(void *dealer, size_t i, const char *want, fx_answer_t *a)
{
    fx_answer_recv(dealer, a);
    if (want)
        cr_assert_str_eq(a->status, want, "answer %zu (%s)", i, a->event_id);
    return !strcmp(a->status, "ok");
}

funnel_envelope_t *fx_numbered_lead(size_t i, void *prefix)
{
    char id[96], lead[96];
    snprintf(id, sizeof id, "%s-%05zu", (const char *)prefix, i);
    snprintf(lead, sizeof lead, "lead-%s", (const char *)prefix);
    return fx_lead_created(id, lead, fx_now_ms());
}

void *fx_zsock_curve(void *zctx, int type, const char *client_public, const char *client_secret,
                     const char *server_public)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0, timeout = 10000;
    cr_assert_not_null(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (client_public) {
        cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_public, 40), 0);
        cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client_public, 40), 0);
        cr_assert_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client_secret, 40), 0);
    }
    return s;
}

void *fx_zsock_connect_curve(void *zctx, int type, const char *endpoint, const char *client_public,
                             const char *client_secret, const char *server_public)
{
    void *s = fx_zsock_curve(zctx, type, client_public, client_secret, server_public);
    cr_assert_eq(zmq_connect(s, endpoint), 0, "%s", endpoint);
    return s;
}

void *fx_zsock_connect(void *zctx, int type, const char *endpoint)
{
    return fx_zsock_connect_curve(zctx, type, endpoint, NULL, NULL, NULL);
}

size_t fx_submit_pipelined(const char *endpoint, size_t n, size_t window, fx_envelope_fn make,
                           void *arg, const char *want, fx_answer_t *answers)
{
    void *zctx = zmq_ctx_new();
    void *dealer = fx_zsock_connect(zctx, ZMQ_DEALER, endpoint);
    size_t sent = 0, answered = 0, ok = 0;
    fx_answer_t scratch;
    while (answered < n) {
        while (sent < n && (!window || sent - answered < window))
            send_envelope(dealer, make(sent++, arg));
        ok += recv_answer(dealer, answered, want, answers ? &answers[answered] : &scratch);
        answered++;
    }
    zmq_close(dealer);
    zmq_ctx_term(zctx);
    return ok;
}

static funnel_envelope_t *take_envelope(size_t i, void *arg)
{
    funnel_envelope_t **envs = arg;
    funnel_envelope_t *env = envs[i];
    envs[i] = NULL;
    return env;
}

size_t fx_submit_burst(const char *endpoint, funnel_envelope_t **envs, size_t n, const char *want,
                       fx_answer_t *answers)
{
    return fx_submit_pipelined(endpoint, n, 0, take_envelope, envs, want, answers);
}

int fx_ctl(const fx_daemon_t *d, char *out, size_t out_len, const char *const *args)
{
    const char *argv[48] = {FUNNELCTL_PATH, "--submit",     d->submit, "--publish",
                            d->publish,     "--replay",     d->replay, "--db",
                            d->db,          "--timeout-ms", "3000"};
    size_t n = 11;
    for (size_t i = 0; args[i]; i++) {
        cr_assert_lt(n, 47, "too many funnelctl arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return fx_run(argv, out, out_len);
}

uint64_t fx_daemon_last_seq(const fx_daemon_t *d)
{
    funnel_store_t *st;
    char err[256];
    uint64_t first = 0, last = 0;
    cr_assert_eq(funnel_store_open(d->db, true, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err), 0,
                 "%s", err);
    int rc = funnel_store_outbox_bounds(st, &first, &last);
    funnel_store_destroy(&st);
    cr_assert_eq(rc, 0, "outbox bounds: %d", rc);
    return last;
}

/* What fx_follow_to_end's callback wraps. */
typedef struct follow_end {
    funnel_client_msg_cb cb;
    void *arg;
    uint64_t end, seen;
    int stopped; /* the test's callback stopped the follow with this */
} follow_end_t;

static int follow_end_cb(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    follow_end_t *f = arg;
    f->seen = seq;
    f->stopped = f->cb(seq, topic, env, len, f->arg);
    return f->stopped ? f->stopped : seq >= f->end;
}

int fx_follow_to_end(const fx_daemon_t *d, funnel_client_t *client,
                     const funnel_follow_options_t *opts, funnel_client_msg_cb cb, void *arg)
{
    follow_end_t f = {cb, arg, fx_daemon_last_seq(d), 0, 0};
    funnel_follow_options_t o = opts ? *opts : (funnel_follow_options_t){0};
    if (f.end == 0 || (o.from_seq > f.end && !o.cursor_path))
        return 0;              /* nothing to wait for */
    o.idle_timeout_ms = 30000; /* a failure guard, never the expected end */
    int rc = funnel_client_follow(client, d->publish, d->replay, &o, follow_end_cb, &f);
    if (f.stopped)
        return f.stopped;
    cr_assert_eq(rc, 1, "the stream stopped at seq %llu before %llu (%d)",
                 (unsigned long long)f.seen, (unsigned long long)f.end, rc);
    return 0;
}
