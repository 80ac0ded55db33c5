/* metrics.c — funnel-alert's counters (see alert.h for the threading rule: the delivering
 * thread writes atomics, the HTTP thread of the shared promhttp endpoint reads them). */
#include "alert.h"

#include "funnel/error.h"
#include "funnel/promhttp.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct funnel_alert_metrics {
    const funnel_alert_config_t *cfg; /* labels: prefixes and channel names (read-only) */
    funnel_prom_server_t *http;
    _Atomic uint64_t received[FUNNEL_ALERT_MAX_PREFIXES];
    _Atomic uint64_t attempted[FUNNEL_ALERT_MAX_CHANNELS];
    _Atomic uint64_t succeeded[FUNNEL_ALERT_MAX_CHANNELS];
    _Atomic uint64_t failed[FUNNEL_ALERT_MAX_CHANNELS];
    _Atomic uint64_t retried;
    _Atomic uint64_t dead_lettered;
    _Atomic uint64_t cursor;
    _Atomic uint64_t backoff_ms;
};

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
}

void funnel_alert_metrics_count(funnel_alert_metrics_t *m, funnel_alert_counter_t counter,
                                size_t index)
{
    if (!m)
        return;
    _Atomic uint64_t *v = NULL;
    bool per_channel = index < FUNNEL_ALERT_MAX_CHANNELS;
    switch (counter) {
    case FUNNEL_ALERT_RECEIVED:
        v = index < FUNNEL_ALERT_MAX_PREFIXES ? &m->received[index] : NULL;
        break;
    case FUNNEL_ALERT_ATTEMPTED:
        v = per_channel ? &m->attempted[index] : NULL;
        break;
    case FUNNEL_ALERT_SUCCEEDED:
        v = per_channel ? &m->succeeded[index] : NULL;
        break;
    case FUNNEL_ALERT_FAILED:
        v = per_channel ? &m->failed[index] : NULL;
        break;
    case FUNNEL_ALERT_RETRIED:
        v = &m->retried;
        break;
    case FUNNEL_ALERT_DEAD_LETTERED:
        v = &m->dead_lettered;
        break;
    }
    if (v)
        atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

void funnel_alert_metrics_cursor(funnel_alert_metrics_t *m, uint64_t seq)
{
    if (m)
        atomic_store_explicit(&m->cursor, seq, memory_order_relaxed);
}

void funnel_alert_metrics_backoff(funnel_alert_metrics_t *m, int64_t ms)
{
    if (m)
        atomic_store_explicit(&m->backoff_ms, ms > 0 ? (uint64_t)ms : 0, memory_order_relaxed);
}

/* One counter family labelled by channel. */
static void per_channel(FILE *out, const funnel_alert_metrics_t *m, const char *name,
                        const char *help, const _Atomic uint64_t *values)
{
    funnel_prom_family(out, name, "counter", help);
    for (size_t i = 0; i < m->cfg->n_channels; i++)
        funnel_prom_u64(out, name, "channel", m->cfg->channels[i].name, load(&values[i]));
}

static void render(FILE *out, void *arg)
{
    const funnel_alert_metrics_t *m = arg;
    funnel_prom_family(out, "funnel_alert_messages_total", "counter",
                       "Messages taken from the output stream, by the prefix they matched.");
    for (size_t i = 0; i < m->cfg->n_prefixes; i++)
        funnel_prom_u64(out, "funnel_alert_messages_total", "prefix", m->cfg->prefixes[i],
                        load(&m->received[i]));
    per_channel(out, m, "funnel_alert_delivery_attempts_total",
                "Delivery requests made to a channel.", m->attempted);
    per_channel(out, m, "funnel_alert_deliveries_succeeded_total",
                "Delivery requests answered 2xx.", m->succeeded);
    per_channel(out, m, "funnel_alert_deliveries_failed_total",
                "Delivery requests that failed (transport error or non-2xx answer).", m->failed);
    funnel_prom_family(out, "funnel_alert_retries_total", "counter",
                       "Delivery attempts after the first of a message.");
    funnel_prom_u64(out, "funnel_alert_retries_total", NULL, NULL, load(&m->retried));
    funnel_prom_family(out, "funnel_alert_dead_lettered_total", "counter",
                       "Messages written to the dead-letter file.");
    funnel_prom_u64(out, "funnel_alert_dead_lettered_total", NULL, NULL, load(&m->dead_lettered));
    funnel_prom_family(out, "funnel_alert_cursor_seq", "gauge",
                       "The cursor: the last sequence handled.");
    funnel_prom_u64(out, "funnel_alert_cursor_seq", NULL, NULL, load(&m->cursor));
    funnel_prom_family(out, "funnel_alert_backoff_seconds", "gauge",
                       "The retry pause in progress, 0 when none.");
    funnel_prom_f64(out, "funnel_alert_backoff_seconds", NULL, NULL,
                    (double)load(&m->backoff_ms) / 1000);
}

int funnel_alert_metrics_new(const funnel_alert_config_t *cfg, const funnel_log_t *log,
                             funnel_alert_metrics_t **out)
{
    *out = NULL;
    if (!strcmp(cfg->metrics, "off"))
        return 0;
    funnel_alert_metrics_t *m = calloc(1, sizeof *m);
    if (!m)
        return FUNNEL_ENOMEM;
    m->cfg = cfg;
    int rc = funnel_prom_server_new(cfg->metrics, render, m, log, &m->http);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int funnel_alert_metrics_port(const funnel_alert_metrics_t *m)
{
    return m ? funnel_prom_server_port(m->http) : 0;
}

void funnel_alert_metrics_destroy(funnel_alert_metrics_t **mp)
{
    if (!mp || !*mp)
        return;
    funnel_prom_server_destroy(&(*mp)->http); /* its thread reads only the atomics */
    free(*mp);
    *mp = NULL;
}
