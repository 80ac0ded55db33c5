/* metrics.c — see metrics.h for the threading rule: the loop writes atomics, the HTTP thread
 * reads them. */
#include "metrics.h"
#include "funnel/error.h"
#include "funnel/promhttp.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_SLOTS 80 /* body case numbers (proto field numbers) below this; 0 is "other" */

static const uint64_t size_bounds[] = {1, 10, 100, 1000, 10000};
#define N_SIZE (sizeof size_bounds / sizeof size_bounds[0])
static const uint64_t latency_bounds_us[] = {500,   1000,   5000,   10000,
                                             50000, 100000, 500000, 1000000};
#define N_LATENCY (sizeof latency_bounds_us / sizeof latency_bounds_us[0])
static const uint64_t lag_bounds_ms[] = {1, 5, 10, 50, 100, 1000, 10000};
#define N_LAG (sizeof lag_bounds_ms / sizeof lag_bounds_ms[0])

/* A histogram: per-bucket counts (not cumulative; the +Inf bucket last), sum and count. */
typedef struct histogram {
    _Atomic uint64_t buckets[16];
    _Atomic uint64_t sum;
    _Atomic uint64_t count;
} histogram_t;

struct funnel_metrics {
    funnel_prom_server_t *http; /* serves /metrics (render below) and /healthz */
    const funnel_log_t *log;
    _Atomic uint64_t accepted[TOPIC_SLOTS];
    _Atomic uint64_t duplicate[TOPIC_SLOTS];
    _Atomic uint64_t refused[TOPIC_SLOTS][FUNNEL_REFUSE_COUNT_];
    _Atomic uint64_t published;
    _Atomic uint64_t last_seq;  /* last sequence published */
    _Atomic uint64_t first_seq; /* oldest sequence retained in the outbox */
    _Atomic uint64_t commit_failures[FUNNEL_METRICS_COMMIT_COUNT_]; /* [COMMITTED] unused */
    _Atomic uint64_t lost[FUNNEL_METRICS_LOST_COUNT_];
    _Atomic uint64_t denied[FUNNEL_METRICS_DENIED_COUNT_];
    histogram_t batch_size;
    histogram_t commit_us;
    histogram_t timer_lag_ms;
    /* Per engine: its name (published before its first value) and open items. */
    _Atomic(const char *) engine_name[FUNNEL_METRICS_ENGINES];
    _Atomic int64_t engine_open[FUNNEL_METRICS_ENGINES];
};

static void add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static uint64_t get(const _Atomic uint64_t *v)
{
    return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
}

static void observe(histogram_t *h, const uint64_t *bounds, size_t n, uint64_t v)
{
    size_t i = 0;
    while (i < n && v > bounds[i])
        i++;
    add(&h->buckets[i], 1);
    add(&h->sum, v);
    add(&h->count, 1);
}

static size_t topic_slot(const char *topic)
{
    funnel_body_t body;
    if (!topic || funnel_topic_lookup(topic, strlen(topic), &body) || (int)body <= 0 ||
        (int)body >= TOPIC_SLOTS)
        return 0;
    return (size_t)body;
}

void funnel_metrics_event(funnel_metrics_t *m, const char *topic, funnel_metrics_result_t result,
                          funnel_refusal_code_t reason)
{
    if (!m)
        return;
    size_t t = topic_slot(topic);
    if (result == FUNNEL_METRICS_ACCEPTED)
        add(&m->accepted[t], 1);
    else if (result == FUNNEL_METRICS_DUPLICATE)
        add(&m->duplicate[t], 1);
    else if ((unsigned)reason < FUNNEL_REFUSE_COUNT_)
        add(&m->refused[t][reason], 1);
}

void funnel_metrics_commit(funnel_metrics_t *m, size_t n, uint64_t latency_us,
                           funnel_metrics_commit_result_t result)
{
    if (!m)
        return;
    if (result != FUNNEL_METRICS_COMMITTED && (unsigned)result < FUNNEL_METRICS_COMMIT_COUNT_)
        add(&m->commit_failures[result], 1);
    observe(&m->batch_size, size_bounds, N_SIZE, n);
    observe(&m->commit_us, latency_bounds_us, N_LATENCY, latency_us);
}

void funnel_metrics_lost(funnel_metrics_t *m, funnel_metrics_lost_reason_t reason, size_t n)
{
    if (m && (unsigned)reason < FUNNEL_METRICS_LOST_COUNT_)
        add(&m->lost[reason], n);
}

void funnel_metrics_denied(funnel_metrics_t *m, funnel_metrics_denial_t what)
{
    if (m && (unsigned)what < FUNNEL_METRICS_DENIED_COUNT_)
        add(&m->denied[what], 1);
}

void funnel_metrics_published(funnel_metrics_t *m, uint64_t seq)
{
    if (!m)
        return;
    add(&m->published, 1);
    atomic_store_explicit(&m->last_seq, seq, memory_order_relaxed);
    /* An outbox that was empty at the last look starts with this message. */
    uint64_t none = 0;
    atomic_compare_exchange_strong(&m->first_seq, &none, seq);
}

void funnel_metrics_outbox_first(funnel_metrics_t *m, uint64_t first_seq)
{
    if (m)
        atomic_store_explicit(&m->first_seq, first_seq, memory_order_relaxed);
}

/* ---- exposition ------------------------------------------------------------------------ */

void funnel_metrics_engine_open(funnel_metrics_t *m, size_t slot, const char *engine, int64_t open)
{
    if (!m || slot >= FUNNEL_METRICS_ENGINES)
        return;
    atomic_store_explicit(&m->engine_open[slot], open, memory_order_relaxed);
    atomic_store_explicit(&m->engine_name[slot], engine, memory_order_release);
}

void funnel_metrics_timer_lag(funnel_metrics_t *m, uint64_t lag_ms)
{
    if (m)
        observe(&m->timer_lag_ms, lag_bounds_ms, N_LAG, lag_ms);
}

static const char *topic_label(size_t slot)
{
    const char *name = slot ? funnel_topic_name((funnel_body_t)slot) : NULL;
    return name ? name : "other";
}

/* Writes a histogram; scale divides values for the le labels and the sum (1e6: seconds). */
static void write_histogram(FILE *f, const char *name, const char *help, const histogram_t *h,
                            const uint64_t *bounds, size_t n, double scale)
{
    uint64_t cum = 0;
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i <= n; i++) {
        cum += get(&h->buckets[i]);
        if (i < n)
            fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds[i] / scale,
                    (unsigned long long)cum);
        else
            fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    fprintf(f, "%s_sum %g\n%s_count %llu\n", name, (double)get(&h->sum) / scale, name,
            (unsigned long long)get(&h->count));
}

/* The whole exposition, on the HTTP thread: reads only atomics. */
static void render(FILE *f, void *arg)
{
    const funnel_metrics_t *m = arg;
    fprintf(f, "# HELP funnel_events_total Ingest messages settled by a commit, by result.\n"
               "# TYPE funnel_events_total counter\n");
    for (size_t t = 0; t < TOPIC_SLOTS; t++) {
        uint64_t a = get(&m->accepted[t]), d = get(&m->duplicate[t]);
        if (a)
            fprintf(f, "funnel_events_total{topic=\"%s\",result=\"accepted\"} %llu\n",
                    topic_label(t), (unsigned long long)a);
        if (d)
            fprintf(f, "funnel_events_total{topic=\"%s\",result=\"duplicate\"} %llu\n",
                    topic_label(t), (unsigned long long)d);
    }
    fprintf(f, "# HELP funnel_events_refused_total Ingest messages refused, by reason.\n"
               "# TYPE funnel_events_refused_total counter\n");
    for (size_t t = 0; t < TOPIC_SLOTS; t++)
        for (int r = 0; r < FUNNEL_REFUSE_COUNT_; r++)
            if (get(&m->refused[t][r]))
                fprintf(f, "funnel_events_refused_total{topic=\"%s\",reason=\"%s\"} %llu\n",
                        topic_label(t), funnel_refusal_name((funnel_refusal_code_t)r),
                        (unsigned long long)get(&m->refused[t][r]));
    uint64_t last = get(&m->last_seq), first = get(&m->first_seq);
    fprintf(f,
            "# HELP funnel_published_total Output messages handed to the PUB socket.\n"
            "# TYPE funnel_published_total counter\nfunnel_published_total %llu\n"
            "# HELP funnel_output_last_seq Sequence of the last output message published.\n"
            "# TYPE funnel_output_last_seq gauge\nfunnel_output_last_seq %llu\n"
            "# HELP funnel_outbox_backlog Output messages kept in the outbox for replay.\n"
            "# TYPE funnel_outbox_backlog gauge\nfunnel_outbox_backlog %llu\n",
            (unsigned long long)get(&m->published), (unsigned long long)last,
            (unsigned long long)(first && last >= first ? last - first + 1 : 0));
    /* Every label value is always written, zeros included, so alerts can use rate() from the
     * first scrape on. */
    fprintf(f,
            "# HELP funnel_commit_failures_total Batch transactions that failed, by kind (busy: "
            "retried).\n# TYPE funnel_commit_failures_total counter\n"
            "funnel_commit_failures_total{kind=\"busy\"} %llu\n"
            "funnel_commit_failures_total{kind=\"disk_full\"} %llu\n"
            "funnel_commit_failures_total{kind=\"error\"} %llu\n"
            "# HELP funnel_events_lost_total SUB input lost (no ack, so never resent), by reason.\n"
            "# TYPE funnel_events_lost_total counter\n"
            "funnel_events_lost_total{reason=\"commit_failed\"} %llu\n"
            "funnel_events_lost_total{reason=\"event_failed\"} %llu\n"
            "funnel_events_lost_total{reason=\"out_of_memory\"} %llu\n"
            "funnel_events_lost_total{reason=\"disk_full\"} %llu\n",
            (unsigned long long)get(&m->commit_failures[FUNNEL_METRICS_COMMIT_BUSY]),
            (unsigned long long)get(&m->commit_failures[FUNNEL_METRICS_COMMIT_FULL]),
            (unsigned long long)get(&m->commit_failures[FUNNEL_METRICS_COMMIT_ERROR]),
            (unsigned long long)get(&m->lost[FUNNEL_METRICS_LOST_COMMIT]),
            (unsigned long long)get(&m->lost[FUNNEL_METRICS_LOST_EVENT]),
            (unsigned long long)get(&m->lost[FUNNEL_METRICS_LOST_NOMEM]),
            (unsigned long long)get(&m->lost[FUNNEL_METRICS_LOST_DISK_FULL]));
    fprintf(f,
            "# HELP funnel_security_denied_total What the security layer turned away, by kind.\n"
            "# TYPE funnel_security_denied_total counter\n"
            "funnel_security_denied_total{kind=\"unknown_key\"} %llu\n"
            "funnel_security_denied_total{kind=\"malformed_zap\"} %llu\n"
            "funnel_security_denied_total{kind=\"subscription\"} %llu\n"
            "funnel_security_denied_total{kind=\"replay\"} %llu\n",
            (unsigned long long)get(&m->denied[FUNNEL_METRICS_DENIED_KEY]),
            (unsigned long long)get(&m->denied[FUNNEL_METRICS_DENIED_ZAP]),
            (unsigned long long)get(&m->denied[FUNNEL_METRICS_DENIED_SUBSCRIPTION]),
            (unsigned long long)get(&m->denied[FUNNEL_METRICS_DENIED_REPLAY]));
    write_histogram(f, "funnel_commit_batch_size", "Messages per committed batch.", &m->batch_size,
                    size_bounds, N_SIZE, 1);
    write_histogram(f, "funnel_commit_seconds", "Time from BEGIN to COMMIT of a batch.",
                    &m->commit_us, latency_bounds_us, N_LATENCY, 1e6);
    write_histogram(f, "funnel_timer_lag_seconds",
                    "How late engine timers (SLA warnings, levels) ran after their deadline.",
                    &m->timer_lag_ms, lag_bounds_ms, N_LAG, 1e3);
    fprintf(f, "# HELP funnel_engine_open Items an engine holds open (SLA: instances not met).\n"
               "# TYPE funnel_engine_open gauge\n");
    for (size_t i = 0; i < FUNNEL_METRICS_ENGINES; i++) {
        const char *name = atomic_load_explicit(&m->engine_name[i], memory_order_acquire);
        if (name)
            fprintf(f, "funnel_engine_open{engine=\"%s\"} %lld\n", name,
                    (long long)atomic_load_explicit(&m->engine_open[i], memory_order_relaxed));
    }
}

int funnel_metrics_listen_check(const char *listen, char *err, size_t err_len)
{
    if (strcmp(listen, "off") == 0 || funnel_prom_listen_check(listen) == 0)
        return 0;
    snprintf(err, err_len, "metrics: '%s' is not an IPv4 address:port (or off)", listen);
    return FUNNEL_ECONFIG;
}

int funnel_metrics_new(const char *listen, const funnel_log_t *log, funnel_metrics_t **out)
{
    funnel_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return FUNNEL_ENOMEM;
    m->log = log;
    int rc = funnel_prom_server_new(listen, render, m, log, &m->http);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int funnel_metrics_port(const funnel_metrics_t *m)
{
    return m ? funnel_prom_server_port(m->http) : 0;
}

void funnel_metrics_destroy(funnel_metrics_t **mp)
{
    if (!mp || !*mp)
        return;
    funnel_prom_server_destroy(&(*mp)->http);
    free(*mp);
    *mp = NULL;
}
