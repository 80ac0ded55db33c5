/* bench/sla.c — the SLA engine at scale: 1,000,000 open SLA instances.
 *
 * A child process fills a fresh database through the real router and SLA engine (one start
 * event per instance, 10,000 per transaction). The last SLA_SOON instances come due a few
 * seconds after the fill, spread over SPREAD_MS. The parent then starts funneld's server
 * in-process (a thread runs the loop), and reports:
 *   - restart-to-ready: funnel_server_new (store open, engine heap rebuilt from 1M rows,
 *     sockets bound) — target <= 3 s;
 *   - resident memory after the start and after the due instances fired — target <= 300 MB;
 *   - lag from each deadline to the moment its sla.escalation arrives on a SUB socket,
 *     p50/p99/max — target p99 <= 10 ms.
 * Usage: bench_sla [instances] (default 1000000). */
#include "funnel/error.h"
#include "router.h"
#include "server.h"
#include "registry.h"
#include "sla.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define SLA_SOON  10000
#define LEAD_MS   15000 /* the first soon deadline, after the fill ends */
#define SPREAD_MS 3000
#define TXN_ROWS  10000
#define DAY_MS    86400000LL

static const char conf_text[] =
    "sla = { policies = ( {\n"
    "  name = \"bench\"; start = \"lead.qualified stage=SQL\"; key = \"lead_id\";\n"
    "  stop = [\"lead.contacted\"]; target = \"30d\"; calendar = \"24x7\";\n"
    "  escalation = ( { after = \"0\"; notify = \"bench-oncall\"; } );\n"
    "} ); };\n";

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Resident set of this process in MB, from /proc. */
static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024.0;
}

/* Loads the bench config with every endpoint on ipc:// in dir (no ports to discover). */
static int config_make(const char *dir, funnel_config_t *cfg)
{
    char path[512], err[512], val[600];
    static const char *const names[] = {"ingest", "submit", "publish", "replay"};
    snprintf(path, sizeof path, "%s/bench.conf", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(conf_text, f) < 0 || fclose(f)) {
        fprintf(stderr, "bench_sla: cannot write %s\n", path);
        return FUNNEL_EIO;
    }
    int rc = funnel_config_defaults(cfg, &funnel_engine_registry);
    rc = rc ? rc : funnel_config_load(path, &funnel_engine_registry, cfg, err, sizeof err);
    snprintf(val, sizeof val, "%s/funneld.db", dir);
    rc = rc ? rc : funnel_config_set(cfg, "database", val, err, sizeof err);
    for (int i = 0; !rc && i < 4; i++) {
        snprintf(val, sizeof val, "ipc://%s/%s", dir, names[i]);
        rc = funnel_config_set(cfg, names[i], val, err, sizeof err);
    }
    if (rc)
        fprintf(stderr, "bench_sla: config: %s\n", err);
    return rc;
}

/* One lead.qualified SQL start event, packed. */
static size_t start_event(size_t i, int64_t at, uint8_t *buf, funnel_envelope_t *env,
                          Funnel__V1__LeadQualified *q, char *id, char *lead)
{
    funnel__v1__envelope__init(env);
    funnel__v1__lead_qualified__init(q);
    snprintf(id, 32, "e%012zu", i);
    snprintf(lead, 32, "L%zu", i);
    env->event_id = id;
    env->occurred_at_ms = at;
    env->source = "bench";
    q->lead_id = lead;
    q->stage = FUNNEL__V1__STAGE__SQL;
    q->owner = "bench-rep";
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED;
    env->lead_qualified = q;
    return funnel__v1__envelope__pack(env, buf);
}

/* The child: fills the database, marks everything published, returns 0 on success. The
 * soon instances start 30 days minus LEAD_MS before "now" so they fall due shortly. */
static int fill(funnel_config_t *cfg, size_t n, int64_t *first_due)
{
    char err[512];
    funnel_store_t *st = NULL;
    funnel_sla_t *sla = NULL;
    funnel_router_t *router = NULL;
    funnel_engine_t engine;
    uint8_t buf[256];
    char id[32], lead[32];
    funnel_envelope_t env;
    Funnel__V1__LeadQualified q;
    int rc =
        funnel_store_open(cfg->database, false, FUNNEL_STORE_SYNC_NORMAL, &st, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_sla: %s\n", err);
        return rc;
    }
    if ((rc = funnel_sla_new(st, funnel_config_section(cfg, "sla"), NULL, &sla)) ||
        (rc = funnel_router_new(st, &router)))
        goto out;
    funnel_sla_hooks(sla, &engine);
    funnel_router_add_engine(router, &engine);
    int64_t now = wall_ms();
    double t = mono_s();
    for (size_t i = 0; !rc && i < n; i++) {
        if (i % TXN_ROWS == 0 && (rc = funnel_store_begin(st)))
            break;
        size_t soon = n - i <= SLA_SOON ? SLA_SOON - (n - i) : SIZE_MAX;
        if (soon == 0)
            *first_due = (now = wall_ms()) + LEAD_MS;
        int64_t at = soon == SIZE_MAX
                         ? now
                         : *first_due - 30 * DAY_MS + (int64_t)soon * SPREAD_MS / SLA_SOON;
        size_t len = start_event(i, at, buf, &env, &q, id, lead);
        rc = funnel_router_apply(router, &env, "lead.qualified", buf, len, now);
        if (!rc && (i + 1 == n || (i + 1) % TXN_ROWS == 0)) {
            uint64_t first, last;
            rc = funnel_store_outbox_bounds(st, &first, &last);
            rc = rc ? rc : funnel_store_published_set(st, last);
            rc = rc ? rc : funnel_store_commit(st);
            funnel_store_outbox_pending_clear(st);
        }
    }
    if (!rc)
        printf("fill: %zu instances in %.1f s (%.0f/s)\n", n, mono_s() - t, n / (mono_s() - t));
out:
    if (rc)
        fprintf(stderr, "bench_sla: fill failed: %s: %s\n", funnel_strerror(rc),
                funnel_store_errmsg(st));
    funnel_router_destroy(&router);
    funnel_sla_destroy(&sla);
    funnel_store_destroy(&st);
    return rc;
}

static void *loop_thread(void *arg)
{
    funnel_server_run(arg);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Receives the soon escalations on a SUB socket; fills lags[] (ms); returns how many came. */
static size_t collect_lags(const char *endpoint, int64_t until_ms, int64_t *lags)
{
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int timeout = 200, linger = 0;
    size_t n = 0;
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "sla.escalation", 14);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(sub, endpoint);
    while (n < SLA_SOON && wall_ms() < until_ms) {
        zmq_msg_t m[3];
        int parts = 0, more = 1;
        while (more && parts < 3) {
            zmq_msg_init(&m[parts]);
            if (zmq_msg_recv(&m[parts], sub, 0) < 0) {
                zmq_msg_close(&m[parts]);
                break;
            }
            more = zmq_msg_more(&m[parts++]);
        }
        int64_t got = wall_ms();
        if (parts == 3) {
            funnel_envelope_t *env =
                funnel__v1__envelope__unpack(NULL, zmq_msg_size(&m[2]), zmq_msg_data(&m[2]));
            if (env)
                lags[n++] = got - env->occurred_at_ms;
            funnel_envelope_free(&env);
        }
        for (int i = 0; i < parts; i++)
            zmq_msg_close(&m[i]);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    char dir[] = "/tmp/funnel-bench-sla-XXXXXX";
    funnel_config_t cfg;
    funnel_server_t *srv = NULL;
    funnel_log_t log = {.level = FUNNEL_LOG_WARN, .out = stderr};
    int64_t *lags = calloc(SLA_SOON, sizeof *lags), first_due = 0;
    int status = 1, pipefd[2];
    if (n < SLA_SOON || !lags || !mkdtemp(dir) || pipe(pipefd)) {
        fprintf(stderr, "usage: bench_sla [instances >= %d]\n", SLA_SOON);
        free(lags);
        return 2;
    }
    if (config_make(dir, &cfg))
        goto out;
    /* The fill runs in a child so the parent's memory is what funneld itself would hold. */
    pid_t pid = fork();
    if (pid == 0) {
        int rc = fill(&cfg, n, &first_due);
        fflush(stdout); /* _exit does not flush stdio */
        ssize_t w = write(pipefd[1], &first_due, sizeof first_due);
        _exit(rc || w != sizeof first_due ? 1 : 0);
    }
    int wst = 0;
    if (pid < 0 || read(pipefd[0], &first_due, sizeof first_due) != sizeof first_due ||
        waitpid(pid, &wst, 0) != pid || !WIFEXITED(wst) || WEXITSTATUS(wst)) {
        fprintf(stderr, "bench_sla: the fill failed\n");
        funnel_config_clear(&cfg);
        goto out;
    }
    char publish[600];
    snprintf(publish, sizeof publish, "%s", cfg.publish);
    double rss0 = rss_mb(), t = mono_s();
    funnel_server_options_t opts = {0};
    if (funnel_server_new(&cfg, &opts, &log, &srv)) {
        fprintf(stderr, "bench_sla: funneld did not start\n");
        goto out;
    }
    double ready_s = mono_s() - t, rss1 = rss_mb();
    pthread_t th;
    pthread_create(&th, NULL, loop_thread, srv);
    size_t got = collect_lags(publish, first_due + SPREAD_MS + 20000, lags);
    double rss2 = rss_mb();
    kill(getpid(), SIGTERM); /* the loop's signal handler stops it gracefully */
    pthread_join(th, NULL);
    qsort(lags, got, sizeof *lags, cmp_i64);
    printf("instances: %zu open; due during the run: %d, published: %zu\n", n, SLA_SOON, got);
    printf("restart-to-ready: %.2f s (target <= 3 s) %s\n", ready_s,
           ready_s <= 3 ? "ok" : "MISSED");
    printf("resident memory: %.0f MB before, %.0f MB ready, %.0f MB after firing (target <= 300 "
           "MB) %s\n",
           rss0, rss1, rss2, rss2 <= 300 ? "ok" : "MISSED");
    if (got) {
        int64_t p99 = lags[(got * 99) / 100 < got ? (got * 99) / 100 : got - 1];
        printf("deadline -> publish lag: p50 %lld ms, p99 %lld ms, max %lld ms (target p99 <= 10 "
               "ms) %s\n",
               (long long)lags[got / 2], (long long)p99, (long long)lags[got - 1],
               p99 <= 10 ? "ok" : "MISSED");
    }
    status = got == SLA_SOON ? 0 : 1;
out:
    funnel_server_destroy(&srv);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(lags);
    return status;
}
