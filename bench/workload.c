/* workload.c — funneld on a year of a realistic funnel, as a new user's backfill would be.
 *
 * The generator (support/mix.h, which documents the distribution) produces, for --leads leads
 * and --seed, leads with campaign touches, MQL/SQL qualifications, first contacts, closes,
 * handoffs of won clients, monthly payments and refunds, in event-time order over the year
 * that ends at today's 00:00 UTC. A first pass only counts them (the table of the mix, and
 * the size of each fifth). Then, each in a fresh database:
 *   1. funneld with every engine on, a paying commission plan (5% to the rep for 36 months,
 *      1% to the account manager) and the example config's SLA policies and attribution
 *      models: every event through the submit socket with --window in flight, answers
 *      counted (any refusal is a bug of the generator and is printed). Per fifth of the
 *      events: events/s and p50/p99 submit→ack. At the end: database + WAL bytes per event,
 *      peak RSS (VmHWM), output messages by topic (the outbox, read-only after the stop), and
 *      the time a restart on the final database takes until funneld is ready.
 *   2. the same events with engines = "none": the reference the first run is a ratio of.
 * It prints the figures beside the targets of issue 11 with PASS/FAIL marks; with --profile,
 * funneld's sql_profile is on in run 1 and, for its first and last fifth, where the writer's
 * time and WAL pages went (support/profile.h). Exit status: 0
 * when the run completed, whatever the figures; 1 on an error or a refused event; 2 on a
 * usage error. Everything it starts is stopped and its temporary directory removed (--keep
 * DIR runs in DIR and keeps the databases). */
#include "bench.h"
#include "mix.h"
#include "profile.h"

#include "funnel/error.h"
#include "store.h"

#include <errno.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_LEADS  1000000
#define DEFAULT_WINDOW 1000
#define DEFAULT_SEED   1
#define MAX_LEADS      100000000
#define MAX_WINDOW     100000 /* funneld queues at most this many replies per peer */
#define FIFTHS         5
#define MAX_TOPICS     32
#define MAX_SHOWN      10 /* refusals printed in full; the rest are counted */
#define DAY_MS         86400000LL

#define ENGINES_ALL       "ledger,attribution,sla"
#define TARGET_FLAT       0.80
#define TARGET_RATE       40000.0
#define TARGET_BYTES      600.0
#define TARGET_PER_PAY    10.0
#define TARGET_RSS_MB     500.0
#define TARGET_RESTART_S  3.0
#define TARGET_LEADS_NOTE "the targets are set for --leads 1000000 on a 2-core machine"
#define PROFILE_TOP       15 /* statements and tables shown by --profile */

typedef struct options {
    uint64_t leads, seed, window;
    bool skip_reference;
    bool profile;        /* funneld's sql_profile on for the all-engines run */
    const char *keep;    /* run in this directory and keep it; NULL for a temporary one */
    const char *engines; /* the engines of the measured run */
} options_t;

/* What the counting pass found. */
typedef struct mix_count {
    uint64_t by_kind[BENCH_MIX_KINDS_];
    uint64_t events;
    int64_t first_ms, last_ms;
} mix_count_t;

typedef struct fifth {
    uint64_t events;
    double rate;
    uint64_t p50_ns, p99_ns;
    double cpu_us; /* funneld's CPU time (user + system) per event: what the load of other
                      processes on the machine does not change, unlike the rate */
} fifth_t;

typedef struct topic_count {
    char topic[64];
    uint64_t messages;
} topic_count_t;

/* --profile: the first and the last fifth of funneld's statement profile, and which table or
 * index owns each page of the final database. */
typedef struct profile_fifths {
    bench_prof_span_t first, last;
    bench_prof_owners_t owners;
} profile_fifths_t;

/* One run's figures. */
typedef struct run_result {
    fifth_t fifths[FIFTHS], whole;
    int64_t begins_ms[FIFTHS + 1]; /* wall clock when each fifth began, and when the last ended */
    uint64_t ok, refused;
    uint64_t disk_bytes;
    double rss_mb, restart_s;
    topic_count_t topics[MAX_TOPICS];
    size_t n_topics;
    uint64_t messages;
    profile_fifths_t profile; /* filled when the run had a profile */
} run_result_t;

/* ---- the mix --------------------------------------------------------------------------- */

/* The year ends at today's 00:00 UTC: every event is in the past, and two runs on one day
 * generate the same events at the same times. */
static int64_t history_end_ms(void)
{
    int64_t now = bench_wall_ms();
    return now - now % DAY_MS;
}

static int mix_count(const options_t *o, int64_t end_ms, mix_count_t *c)
{
    bench_mix_t *mix;
    bench_mix_event_t ev;
    int got;
    memset(c, 0, sizeof *c);
    if (bench_mix_new(o->leads, o->seed, end_ms, &mix))
        return bench_error("cannot create the generator");
    while ((got = bench_mix_next(mix, &ev)) > 0) {
        if (!c->events++)
            c->first_ms = ev.at_ms;
        c->last_ms = ev.at_ms;
        c->by_kind[ev.kind]++;
        if ((c->events & 65535) == 0 && bench_interrupted)
            break;
    }
    bench_mix_destroy(&mix);
    if (got < 0 || bench_interrupted)
        return bench_error(got < 0 ? "the generator failed: %s" : "interrupted%s",
                           got < 0 ? funnel_strerror(got) : "");
    return 0;
}

static void date_text(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d", &tm);
}

static void print_mix(const options_t *o, const mix_count_t *c)
{
    char a[32], b[32], from[16], to[16];
    date_text(c->first_ms, from, sizeof from);
    date_text(c->last_ms, to, sizeof to);
    printf("\nthe generated mix: %s leads, seed %llu, events from %s to %s (UTC)\n\n",
           bench_fmt_count((double)o->leads, a, sizeof a), (unsigned long long)o->seed, from, to);
    printf("  %-28s %12s %10s\n", "kind", "events", "per lead");
    for (int k = 0; k < BENCH_MIX_KINDS_; k++)
        printf("  %-28s %12s %10.3f\n", bench_mix_kind_name((bench_mix_kind_t)k),
               bench_fmt_count((double)c->by_kind[k], a, sizeof a),
               (double)c->by_kind[k] / (double)o->leads);
    printf("  %-28s %12s %10.3f\n", "total", bench_fmt_count((double)c->events, b, sizeof b),
           (double)c->events / (double)o->leads);
}

/* ---- one run: the mix through funneld's submit socket ------------------------------------ */

/* The generator as a submit source, and the answers it gets. */
typedef struct run_source {
    bench_mix_t *mix;
    const mix_count_t *count;
    uint8_t *kinds;                 /* the kind of each event, to name refused ones */
    uint64_t *lat_ns;               /* submit→ack of each answer, in answer order */
    uint64_t answered;              /* answers so far */
    uint64_t ends_ns[FIFTHS];       /* when the last answer of each fifth came */
    pid_t pid;                      /* funneld's */
    uint64_t cpu_ticks[FIFTHS + 1]; /* its CPU time at the start and at the end of each fifth */
    int64_t begins_ms[FIFTHS + 1];  /* the wall clock then: the profile's snapshots are stamped
                                       with it */
    uint64_t ok, refused;
} run_source_t;

static int source_next(void *ctx, const char **topic, const void **data, size_t *len,
                       uint64_t *index)
{
    run_source_t *s = ctx;
    bench_mix_event_t ev;
    int got = bench_mix_next_message(s->mix, &ev, topic, data, len, index);
    if (got < 0)
        return bench_error("the generator failed: %s", funnel_strerror(got));
    if (got > 0 && ev.index >= s->count->events)
        return bench_error("the generator made more events than it counted (%llu)",
                           (unsigned long long)s->count->events);
    if (got > 0)
        s->kinds[ev.index] = (uint8_t)ev.kind;
    return got;
}

static bool source_index_of(void *ctx, const void *id, size_t len, uint64_t *index)
{
    const run_source_t *s = ctx;
    return bench_mix_index_of(id, len, index) && *index < s->count->events;
}

/* The CPU time (user + system, in clock ticks) process pid has used so far; 0 if unknown. */
static uint64_t cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long utime = 0, stime = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    /* Fields 14 and 15, counted after the command name's closing parenthesis. */
    const char *p = strrchr(buf, ')');
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return 0;
    return utime + stime;
}

static void source_answered(void *ctx, uint64_t index, const char *status, size_t len,
                            uint64_t lat_ns, uint64_t now_ns)
{
    run_source_t *s = ctx;
    uint64_t n = s->count->events;
    s->lat_ns[s->answered++] = lat_ns;
    for (int k = 0; k < FIFTHS; k++)
        if (s->answered == n * (uint64_t)(k + 1) / FIFTHS) {
            s->ends_ns[k] = now_ns;
            s->cpu_ticks[k + 1] = cpu_ticks(s->pid);
            s->begins_ms[k + 1] = bench_wall_ms();
        }
    if (len == 2 && !memcmp(status, "ok", 2)) {
        s->ok++;
        return;
    }
    if (s->refused++ < MAX_SHOWN)
        bench_error("event %llu (%s) answered: %.*s", (unsigned long long)index,
                    bench_mix_kind_name((bench_mix_kind_t)s->kinds[index]), (int)len, status);
}

/* Rate and latency percentiles of answers [from, to), which ended at end_ns after start_ns. */
static void fifth_measure(uint64_t *lat, uint64_t from, uint64_t to, uint64_t start_ns,
                          uint64_t end_ns, fifth_t *f)
{
    f->events = to - from;
    bench_sort_u64(lat + from, (size_t)(to - from));
    f->rate = end_ns > start_ns ? (double)f->events / bench_seconds(end_ns - start_ns) : 0;
    f->p50_ns = bench_percentile(lat + from, (size_t)(to - from), 50);
    f->p99_ns = bench_percentile(lat + from, (size_t)(to - from), 99);
}

static void run_summarize(run_source_t *s, uint64_t first_ns, run_result_t *r)
{
    uint64_t n = s->count->events, start = first_ns;
    double us_per_tick = 1e6 / (double)sysconf(_SC_CLK_TCK);
    for (int k = 0; k < FIFTHS; k++) {
        fifth_measure(s->lat_ns, n * (uint64_t)k / FIFTHS, n * (uint64_t)(k + 1) / FIFTHS, start,
                      s->ends_ns[k], &r->fifths[k]);
        r->fifths[k].cpu_us = (double)(s->cpu_ticks[k + 1] - s->cpu_ticks[k]) * us_per_tick /
                              (double)r->fifths[k].events;
        start = s->ends_ns[k];
    }
    fifth_measure(s->lat_ns, 0, n, first_ns, s->ends_ns[FIFTHS - 1], &r->whole);
    r->whole.cpu_us = (double)(s->cpu_ticks[FIFTHS] - s->cpu_ticks[0]) * us_per_tick / (double)n;
    r->ok = s->ok;
    r->refused = s->refused;
    memcpy(r->begins_ms, s->begins_ms, sizeof r->begins_ms);
}

/* Submits the whole mix to d and fills the rates, latencies and answer counts of r. */
static int run_submit(const options_t *o, int64_t end_ms, const mix_count_t *count,
                      const bench_daemon_t *d, run_result_t *r)
{
    run_source_t s = {.count = count, .pid = d->pid};
    bench_source_t src = {&s, source_next, source_index_of, source_answered};
    uint64_t first_ns = 0;
    int rc = -1;
    s.kinds = malloc(count->events);
    s.lat_ns = malloc(count->events * sizeof *s.lat_ns);
    if (!s.kinds || !s.lat_ns) {
        bench_error("out of memory for %llu events", (unsigned long long)count->events);
        goto out;
    }
    if (bench_mix_new(o->leads, o->seed, end_ms, &s.mix)) {
        bench_error("cannot create the generator");
        goto out;
    }
    s.cpu_ticks[0] = cpu_ticks(d->pid);
    s.begins_ms[0] = bench_wall_ms();
    if (bench_submit(d->submit, o->window, &src, &first_ns))
        goto out;
    if (s.answered != count->events) {
        bench_error("%llu events answered, %llu counted: the generator is not deterministic",
                    (unsigned long long)s.answered, (unsigned long long)count->events);
        goto out;
    }
    run_summarize(&s, first_ns, r);
    rc = 0;
out:
    bench_mix_destroy(&s.mix);
    free(s.kinds);
    free(s.lat_ns);
    return rc;
}

/* ---- measurements of the process and its files -------------------------------------------- */

static uint64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The database and its WAL as they are while funneld runs (a stop may checkpoint the WAL). */
static uint64_t disk_bytes(const char *db)
{
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", db);
    return file_size(db) + file_size(wal);
}

/* Peak resident set (VmHWM) of pid in MB; 0 when /proc does not say. */
static double peak_rss_mb(pid_t pid)
{
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return (double)kb / 1024.0;
}

/* Output messages by topic: the outbox, read-only, after funneld stopped. */
static int outbox_count(const char *db, run_result_t *r)
{
    funnel_store_t *store;
    sqlite3_stmt *st = NULL;
    char err[512];
    int rc = -1;
    if (funnel_store_open(db, true, FUNNEL_STORE_SYNC_NORMAL, &store, err, sizeof err))
        return bench_error("reopen %s: %s", db, err);
    if (sqlite3_prepare_v2(funnel_store_db(store),
                           /* a republished input's row names its events row, topic and all */
                           "SELECT CASE WHEN o.event_seq IS NULL THEN o.topic ELSE e.topic END "
                           "AS t, count(*) FROM outbox o LEFT JOIN events e ON e.seq = "
                           "o.event_seq GROUP BY t ORDER BY t",
                           -1, &st, NULL) != SQLITE_OK) {
        bench_error("count the outbox: %s", sqlite3_errmsg(funnel_store_db(store)));
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW && r->n_topics < MAX_TOPICS) {
        topic_count_t *t = &r->topics[r->n_topics++];
        snprintf(t->topic, sizeof t->topic, "%s", (const char *)sqlite3_column_text(st, 0));
        t->messages = (uint64_t)sqlite3_column_int64(st, 1);
        r->messages += t->messages;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    funnel_store_destroy(&store);
    return rc;
}

static void profile_fifths_clear(profile_fifths_t *pf)
{
    bench_profile_span_clear(&pf->first);
    bench_profile_span_clear(&pf->last);
    bench_profile_owners_clear(&pf->owners);
}

/* The snapshots of the profile at path stamped inside the first and the last fifth of r, and
 * the owners of db's pages (dbstat). */
static int profile_fifths_read(const char *path, const char *db, run_result_t *r)
{
    bench_profile_t p;
    if (bench_profile_read(path, &p))
        return bench_error("cannot read funneld's profile %s", path);
    int rc =
        bench_profile_sum(&p, r->begins_ms[0], r->begins_ms[1], &r->profile.first) ||
        bench_profile_sum(&p, r->begins_ms[FIFTHS - 1], r->begins_ms[FIFTHS], &r->profile.last) ||
        bench_profile_owners_read(db, &r->profile.owners);
    bench_profile_clear(&p);
    return rc ? bench_error("cannot sum funneld's profile %s", path) : 0;
}

/* Starts funneld again on the final database and times it until ready, then stops it. */
static int restart_measure(const char *dir, const char *label, const char *engines,
                           const char *config, run_result_t *r)
{
    bench_daemon_t d;
    uint64_t t0 = bench_mono_ns();
    if (bench_daemon_start(&d, dir, label, engines, config)) {
        bench_daemon_dump_log(&d);
        return -1;
    }
    r->restart_s = bench_seconds(bench_mono_ns() - t0);
    int status = bench_daemon_stop(&d);
    return status ? bench_error("funneld exited with status %d after the restart", status) : 0;
}

/* One whole run in a fresh database named for label; restart: measure a restart after it;
 * profile: funneld's sql_profile goes to that file (NULL: off). */
static int run_one(const options_t *o, int64_t end_ms, const mix_count_t *count, const char *dir,
                   const char *config, const char *label, const char *engines, bool restart,
                   const char *profile, run_result_t *r)
{
    bench_daemon_t d;
    memset(r, 0, sizeof *r);
    fprintf(stderr, "funneld (%s): submitting %llu events, window %llu...\n", engines,
            (unsigned long long)count->events, (unsigned long long)o->window);
    if (bench_daemon_start_profiled(&d, dir, label, engines, config, profile)) {
        bench_daemon_dump_log(&d);
        return -1;
    }
    int rc = run_submit(o, end_ms, count, &d, r);
    if (!rc) {
        r->disk_bytes = disk_bytes(d.db);
        r->rss_mb = peak_rss_mb(d.pid);
    }
    int status = bench_daemon_stop(&d);
    if (!rc && status)
        rc = bench_error("funneld exited with status %d after SIGTERM", status);
    if (!rc)
        rc = bench_verify_stored(d.db, r->ok, r->refused);
    if (!rc)
        rc = outbox_count(d.db, r);
    if (!rc && profile)
        rc = profile_fifths_read(profile, d.db, r);
    if (!rc && restart)
        rc = restart_measure(dir, label, engines, config, r);
    if (rc)
        bench_daemon_dump_log(&d);
    return rc;
}

/* ---- report ------------------------------------------------------------------------------ */

static void print_fifth(const char *what, const fifth_t *f, const fifth_t *ref)
{
    char a[32], b[32], c[32];
    printf("  %-10s %10s %10s %8.1fms %8.1fms %8.1f", what,
           bench_fmt_count((double)f->events, a, sizeof a), bench_fmt_count(f->rate, b, sizeof b),
           (double)f->p50_ns / 1e6, (double)f->p99_ns / 1e6, f->cpu_us);
    if (ref)
        printf("   %10s %8.1fms %8.1fms %8.1f", bench_fmt_count(ref->rate, c, sizeof c),
               (double)ref->p50_ns / 1e6, (double)ref->p99_ns / 1e6, ref->cpu_us);
    printf("\n");
}

static void print_fifths(const run_result_t *full, const run_result_t *core)
{
    static const char *const names[FIFTHS] = {"1st fifth", "2nd fifth", "3rd fifth", "4th fifth",
                                              "5th fifth"};
    printf("\nthroughput, submit->ack latency and funneld's CPU microseconds per event, per fifth "
           "of the events (in event-time order)\n\n");
    printf("  %-10s %10s %10s %10s %10s %8s", "", "events", "on/s", "p50", "p99", "cpu us");
    if (core)
        printf("   %10s %10s %10s %8s", "off/s", "p50", "p99", "cpu us");
    printf("\n");
    for (int k = 0; k < FIFTHS; k++)
        print_fifth(names[k], &full->fifths[k], core ? &core->fifths[k] : NULL);
    print_fifth("whole run", &full->whole, core ? &core->whole : NULL);
}

static uint64_t topic_messages(const run_result_t *r, const char *topic)
{
    for (size_t i = 0; i < r->n_topics; i++)
        if (!strcmp(r->topics[i].topic, topic))
            return r->topics[i].messages;
    return 0;
}

static void print_outbox(const run_result_t *r, const mix_count_t *c)
{
    char a[32];
    double events = (double)c->events, payments = (double)c->by_kind[BENCH_MIX_PAYMENT];
    printf("\noutput messages (outbox rows by topic, all engines on)\n\n");
    printf("  %-28s %12s %10s %12s\n", "topic", "messages", "per event", "per payment");
    for (size_t i = 0; i < r->n_topics; i++)
        printf("  %-28s %12s %10.3f %12.3f\n", r->topics[i].topic,
               bench_fmt_count((double)r->topics[i].messages, a, sizeof a),
               (double)r->topics[i].messages / events,
               payments > 0 ? (double)r->topics[i].messages / payments : 0);
    printf("  %-28s %12s %10.3f %12.3f\n", "total",
           bench_fmt_count((double)r->messages, a, sizeof a), (double)r->messages / events,
           payments > 0 ? (double)r->messages / payments : 0);
}

/* One line of the targets table: the value as text, the target as text, and whether it met. */
static void print_target(const char *what, const char *value, const char *target, bool pass)
{
    printf("  %-44s %14s %12s   %s\n", what, value, target, pass ? "PASS" : "FAIL");
}

static void print_targets(const run_result_t *full, const run_result_t *core, const mix_count_t *c)
{
    char v[64];
    double first = full->fifths[0].rate, last = full->fifths[FIFTHS - 1].rate;
    double flat = first > 0 ? last / first : 0;
    double per_event = (double)full->disk_bytes / (double)c->events;
    uint64_t payments = c->by_kind[BENCH_MIX_PAYMENT];
    uint64_t money =
        topic_messages(full, "attribution.credited") + topic_messages(full, "commission.posted");
    double per_payment = payments ? (double)money / (double)payments : 0;
    printf("\nfigures against the targets of issue 11 (%s)\n\n", TARGET_LEADS_NOTE);
    printf("  %-44s %14s %12s   %s\n", "measure", "value", "target", "result");
    snprintf(v, sizeof v, "%.1f%%", 100.0 * flat);
    print_target("last fifth / first fifth, events/s", v, ">= 80%", flat >= TARGET_FLAT);
    /* The same ratio from CPU time per event, which a loaded machine does not blur. */
    double cpu_flat = full->fifths[FIFTHS - 1].cpu_us > 0
                          ? full->fifths[0].cpu_us / full->fifths[FIFTHS - 1].cpu_us
                          : 0;
    snprintf(v, sizeof v, "%.1f%%", 100.0 * cpu_flat);
    print_target("first / last fifth, funneld CPU per event", v, ">= 80%", cpu_flat >= TARGET_FLAT);
    print_target("events/s over the whole run", bench_fmt_count(full->whole.rate, v, sizeof v),
                 ">= 40,000", full->whole.rate >= TARGET_RATE);
    snprintf(v, sizeof v, "%.0f B", per_event);
    print_target("bytes on disk per event (database + WAL)", v, "<= 600 B",
                 per_event <= TARGET_BYTES);
    snprintf(v, sizeof v, "%.2f", per_payment);
    print_target("attribution + commission messages per payment", v, "<= 10",
                 payments && per_payment <= TARGET_PER_PAY);
    snprintf(v, sizeof v, "%.1f MB", full->rss_mb);
    print_target("peak RSS of funneld (VmHWM)", v, "<= 500 MB", full->rss_mb <= TARGET_RSS_MB);
    snprintf(v, sizeof v, "%.3f s", full->restart_s);
    print_target("restart to ready on the final database", v, "<= 3 s",
                 full->restart_s <= TARGET_RESTART_S);
    if (core)
        printf("  %-44s %13.1f%%   (reference: engines off on the same mix, %s events/s)\n",
               "all engines on / engines off", 100.0 * full->whole.rate / core->whole.rate,
               bench_fmt_count(core->whole.rate, v, sizeof v));
    printf("  %-44s %14llu %12s   %s\n", "events refused by funneld",
           (unsigned long long)full->refused, "0",
           full->refused || (core && core->refused) ? "FAIL" : "PASS");
}

static void print_report(const options_t *o, const mix_count_t *c, const run_result_t *full,
                         const run_result_t *core)
{
    char a[32], b[32], w[32];
    printf("\nfunneld workload benchmark: %s events of %s leads, window %s\n",
           bench_fmt_count((double)c->events, a, sizeof a),
           bench_fmt_count((double)o->leads, b, sizeof b),
           bench_fmt_count((double)o->window, w, sizeof w));
    printf("funneld: engines %s (reference: none), commission %d bp for %d months + %d bp to the "
           "account manager, "
           "the SLA policies and attribution models of examples/funneld.conf, sync=normal\n",
           o->engines, BENCH_RATE_BP, BENCH_TERM_MONTHS, BENCH_MANAGER_RATE_BP);
    print_fifths(full, core);
    print_outbox(full, c);
    print_targets(full, core, c);
    if (o->profile &&
        bench_profile_report(stdout, &full->profile.first, &full->profile.last, "1st fifth",
                             "5th fifth", &full->profile.owners, PROFILE_TOP))
        printf("\nthe profile holds no events in the first or the last fifth: a fifth shorter "
               "than its 1 s snapshots (try more --leads)\n");
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_workload [--leads N] [--seed S] [--window W] [--skip-reference]\n"
            "                      [--keep DIR] [--engines LIST] [--profile]\n"
            "\n"
            "Generates a year of a realistic funnel (see bench/support/mix.h) and submits it to\n"
            "funneld (%s) with all engines on, then the same events with engines off;\n"
            "prints throughput per fifth, submit->ack latency, bytes on disk per event, output\n"
            "messages per event and per payment, peak RSS and restart time beside the targets.\n"
            "Exits 0 whenever the run completed, whatever the figures.\n"
            "\n"
            "  -l, --leads N        leads in the year (default %d)\n"
            "  -s, --seed S         the generator's seed (default %d)\n"
            "  -w, --window W       submits in flight (default %d, at most %d)\n"
            "  -r, --skip-reference no engines-off run\n"
            "  -k, --keep DIR       run in DIR (created if missing) and keep the databases there\n"
            "  -e, --engines LIST   engines of the measured run, funneld's engines= syntax\n"
            "                       (default %s): one engine alone shows what it costs\n"
            "  -p, --profile        funneld's sql_profile on in the measured run: prints where\n"
            "                       its writer's time and WAL pages go in the first and the\n"
            "                       last fifth (statements, tables and indexes)\n"
            "  -h, --help           print this help and exit\n"
            "\n"
            "TMPDIR chooses where the temporary directory goes (default /tmp).\n",
            FUNNELD_PATH, DEFAULT_LEADS, DEFAULT_SEED, DEFAULT_WINDOW, MAX_WINDOW, ENGINES_ALL);
}

static bool parse_seed(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-')
        return false;
    *out = v;
    return true;
}

/* Returns 0, 2 for a usage error, or 1 after --help (exit 0 without running). */
static int parse_args(int argc, char **argv, options_t *o)
{
    static const struct option longopts[] = {
        {"leads", required_argument, NULL, 'l'},
        {"seed", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"skip-reference", no_argument, NULL, 'r'},
        {"keep", required_argument, NULL, 'k'},
        {"engines", required_argument, NULL, 'e'},
        {"profile", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "l:s:w:rk:e:ph", longopts, NULL)) != -1) {
        bool ok = true;
        if (opt == 'h') {
            usage(stdout);
            return 1;
        } else if (opt == 'l') {
            ok = bench_parse_count(optarg, MAX_LEADS, &o->leads);
        } else if (opt == 's') {
            ok = parse_seed(optarg, &o->seed);
        } else if (opt == 'w') {
            ok = bench_parse_count(optarg, MAX_WINDOW, &o->window);
        } else if (opt == 'r') {
            o->skip_reference = true;
        } else if (opt == 'k') {
            o->keep = optarg;
        } else if (opt == 'e') {
            o->engines = optarg;
        } else if (opt == 'p') {
            o->profile = true;
        } else {
            usage(stderr);
            return 2;
        }
        if (!ok) {
            bench_error("-%c: '%s' is out of range (see --help)", opt, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        bench_error("unexpected argument '%s'", argv[optind]);
        return 2;
    }
    return 0;
}

/* The working directory: --keep's (which must not hold an earlier run's database) or a
 * temporary one, removed at the end. */
static int workdir_make(const options_t *o, char *dir, size_t len)
{
    char db[PATH_MAX + 32];
    if (!o->keep)
        return bench_tmpdir_make(dir, len);
    if (mkdir(o->keep, 0755) && errno != EEXIST)
        return bench_error("mkdir %s: %s", o->keep, strerror(errno));
    snprintf(db, sizeof db, "%s/funneld-full.db", o->keep);
    if (access(db, F_OK) == 0)
        return bench_error("%s already holds a run (%s): choose an empty directory", o->keep, db);
    snprintf(dir, len, "%s", o->keep);
    return 0;
}

static int bench_run(const options_t *o, const char *dir)
{
    mix_count_t count;
    run_result_t full, core;
    char config[PATH_MAX], profile[PATH_MAX + 32];
    int64_t end_ms = history_end_ms();
    int rc = -1;
    snprintf(profile, sizeof profile, "%s/funneld-full.profile", dir);
    if (o->profile && unlink(profile) && errno != ENOENT)
        return bench_error("remove %s: %s", profile, strerror(errno));
    fprintf(stderr, "counting the mix of %llu leads...\n", (unsigned long long)o->leads);
    if (mix_count(o, end_ms, &count))
        return -1;
    print_mix(o, &count);
    if (bench_config_write(dir, config, sizeof config))
        return -1;
    if (run_one(o, end_ms, &count, dir, config, "full", o->engines, true,
                o->profile ? profile : NULL, &full))
        goto out;
    if (!o->skip_reference &&
        run_one(o, end_ms, &count, dir, config, "core", "none", false, NULL, &core))
        goto out;
    print_report(o, &count, &full, o->skip_reference ? NULL : &core);
    rc = full.refused || (!o->skip_reference && core.refused)
             ? bench_error("funneld refused generated events: the generator has a bug")
             : 0;
out:
    profile_fifths_clear(&full.profile);
    return rc;
}

int main(int argc, char **argv)
{
    options_t o = {.leads = DEFAULT_LEADS,
                   .seed = DEFAULT_SEED,
                   .window = DEFAULT_WINDOW,
                   .engines = ENGINES_ALL};
    char dir[PATH_MAX] = "";
    bench_init("bench_workload"); /* first: usage errors name the program too */
    int args = parse_args(argc, argv, &o);
    if (args)
        return args == 1 ? 0 : 2;
    if (workdir_make(&o, dir, sizeof dir))
        return 1;
    int rc = bench_run(&o, dir);
    if (o.keep)
        fprintf(stderr, "kept %s\n", dir);
    else
        bench_tmpdir_remove(dir);
    return rc ? 1 : 0;
}
