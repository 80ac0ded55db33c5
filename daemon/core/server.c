/* server.c — funneld's loop: ingest → batch → one transaction → COMMIT → ack + publish.
 *
 * Everything runs on one thread. Messages read from the SUB and submit sockets are decoded and
 * validated at once (refusals are answered after the batch commits, like everything else) and
 * queued in the batch. The batch is committed when it is full, when the loop has drained what
 * arrived together (batch_delay_ms = 0) or when the delay expires. Only after COMMIT are acks
 * sent and outbox rows published, so nothing unacknowledged is ever claimed and nothing
 * uncommitted is ever published.
 *
 * This file holds the life cycle (new, run, destroy), signals, reload, stop and set-up; the
 * other jobs are in server_ingest.c, server_replay.c, server_timers.c and
 * server_housekeeping.c (server_internal.h). */
#include "server_internal.h"
#include "server.h"
#include "bus.h"
#include "engine.h"
#include "funnel/error.h"
#include "router.h"
#include "metrics.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static int64_t real_clock(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t server_now_ms(funnel_server_t *srv)
{
    return srv->opts.clock(srv->opts.clock_arg);
}

/* ---- signals, reload, stop ----------------------------------------------------------- */

/* Above max_message_bytes a message is still read, refused with a reason and dead-lettered;
 * past this hard limit ZeroMQ drops the connection before buffering it at all. It applies to
 * connections made after it is set. */
static void set_hard_limit(funnel_server_t *srv, funnel_zsock_t *zs)
{
    int64_t soft = srv->cfg.max_message_bytes;
    int64_t hard = 2 * soft > soft + 4096 ? 2 * soft : soft + 4096;
    if (zs)
        zmq_setsockopt(funnel_zsock_raw(zs), ZMQ_MAXMSGSIZE, &hard, sizeof hard);
}

static void reload(funnel_server_t *srv)
{
    funnel_config_t fresh = {0};
    char err[512] = "";
    sd_notify(0, "RELOADING=1");
    /* Checked whole, exactly as at start-up: one bad value refuses the whole file. */
    if (funnel_server_config_read(srv->opts.config_path, srv->cfg.registry, srv->opts.overrides,
                                  srv->opts.n_overrides, &fresh, err, sizeof err)) {
        funnel_log_error(srv->log, "config reload refused, keeping the running config: %s", err);
    } else {
        int changed = funnel_config_reload(&srv->cfg, &fresh, srv->log);
        srv->log->level = srv->cfg.log_level;
        set_hard_limit(srv, srv->sub); /* max_message_bytes may have changed */
        set_hard_limit(srv, srv->submit);
        funnel_log_info(srv->log, "config reloaded: %d option(s) changed", changed);
        funnel_config_clear(&fresh);
    }
    server_security_reload(srv); /* a file of its own: reloaded even when the config is not */
    sd_notify(0, "READY=1");
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* For the graceful stop: closes every handle but the signal watchers, which stay until the
 * process exits (a stop request repeated during shutdown would otherwise meet the default
 * action and end funneld with 143 before it has finished); unreferenced, they do not keep
 * uv_run from returning. funnel_server_destroy closes them. */
static void close_handle_keep_signals(uv_handle_t *h, void *arg)
{
    if (h->type == UV_SIGNAL)
        uv_unref(h);
    else
        close_handle(h, arg);
}

/* Graceful stop: take no more input, commit and publish what was read, persist the publish
 * cursor, then close every handle so uv_run returns. */
static void server_shutdown(funnel_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    sd_notify(0, "STOPPING=1");
    funnel_log_info(srv->log, "stopping: committing %zu pending events", srv->n_batch);
    funnel_zsock_pause(srv->sub);
    funnel_zsock_pause(srv->submit);
    /* Stopping, each flush commits or gives up (and counts) one slice: this ends. */
    while (srv->n_batch)
        server_batch_flush(srv);
    /* The stop's last write: with it the next start may skip quick_check. */
    if (funnel_store_begin(srv->store) == 0 &&
        (funnel_store_published_set(srv->store, srv->published_seq) ||
         funnel_store_clean_stop_set(srv->store, true) || funnel_store_commit(srv->store)))
        funnel_store_rollback(srv->store);
    srv->n_replays = 0; /* plain values: nothing to free */
    /* Give queued output a moment to leave before the sockets close. */
    int linger = 1000;
    zmq_setsockopt(funnel_zsock_raw(srv->pub), ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(funnel_zsock_raw(srv->submit), ZMQ_LINGER, &linger, sizeof linger);
    funnel_zsock_destroy(&srv->sub);
    funnel_zsock_destroy(&srv->submit);
    funnel_zsock_destroy(&srv->pub);
    funnel_zsock_destroy(&srv->replay_sock);
    funnel_zsock_destroy(&srv->zap);
    uv_walk(&srv->loop, close_handle_keep_signals, NULL);
    funnel_log_info(
        srv->log, "stopped: %llu accepted, %llu duplicates, %llu published, %llu batches",
        (unsigned long long)srv->stats.accepted, (unsigned long long)srv->stats.duplicates,
        (unsigned long long)srv->stats.published, (unsigned long long)srv->stats.batches);
}

static void on_signal(uv_signal_t *h, int signum)
{
    funnel_server_t *srv = h->data;
    if (srv->stopping)
        funnel_log_info(srv->log, "%s ignored: already stopping",
                        signum == SIGHUP   ? "SIGHUP"
                        : signum == SIGINT ? "SIGINT"
                                           : "SIGTERM");
    else if (signum == SIGHUP)
        reload(srv);
    else
        server_shutdown(srv);
}

void funnel_server_stop(funnel_server_t *srv)
{
    server_shutdown(srv);
}

/* ---- set-up -------------------------------------------------------------------------- */

/* True when name is an element of the comma-separated list. */
static bool list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len;
        if (!*p)
            return false;
    }
}

static const funnel_engine_def_t *engine_def_find(const funnel_engine_registry_t *reg,
                                                  const char *name, size_t len)
{
    for (size_t i = 0; reg && i < reg->n; i++)
        if (strlen(reg->defs[i].name) == len && strncmp(reg->defs[i].name, name, len) == 0)
            return &reg->defs[i];
    return NULL;
}

/* Every name in the `engines` option must be a known engine: a typo must not silently turn
 * the commission ledger off. */
static int engines_check(const funnel_config_t *cfg, char *err, size_t err_len)
{
    const char *list = cfg->engines;
    if (strcmp(list, "none") == 0)
        return 0;
    for (const char *p = list;; p += strcspn(p, ",") + 1) {
        size_t len = strcspn(p, ",");
        if (!engine_def_find(cfg->registry, p, len)) {
            char known[128] = "";
            for (size_t i = 0, used = 0; cfg->registry && i < cfg->registry->n; i++)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s, ",
                                         cfg->registry->defs[i].name);
            snprintf(err, err_len, "engines: unknown engine '%.*s' (known: %sor none)", (int)len, p,
                     known);
            return FUNNEL_ECONFIG;
        }
        if (!p[len])
            return 0;
    }
}

/* A tcp:// endpoint needs a port ZeroMQ can bind or connect to: 1..65535, or * for any.
 * Other transports (ipc://, inproc://) carry no port. */
static int endpoint_check(const char *name, const char *ep, char *err, size_t err_len)
{
    if (strncmp(ep, "tcp://", 6) != 0)
        return 0;
    const char *colon = strrchr(ep + 6, ':'), *port = colon ? colon + 1 : "";
    char *end;
    long v = strtol(port, &end, 10);
    if (strcmp(port, "*") == 0 || (*port && !*end && v >= 1 && v <= 65535))
        return 0;
    snprintf(err, err_len, "%s: '%s' needs a port 1..65535 or * after its last ':'", name, ep);
    return FUNNEL_ECONFIG;
}

/* True when ep reaches this machine only: ipc:// and inproc://, or tcp:// on 127.0.0.0/8, ::1
 * or localhost. A connect endpoint's "source;destination" form is judged by its destination. */
static bool endpoint_is_local(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
        return true;
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *host = strchr(ep, ';') ? strchr(ep, ';') + 1 : ep + 6;
    const char *colon = strrchr(host, ':');
    char buf[INET6_ADDRSTRLEN + 2];
    size_t len = colon ? (size_t)(colon - host) : strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len >= sizeof buf)
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, buf, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, buf, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return strcmp(buf, "localhost") == 0;
}

/* Without CURVE anyone who reaches a port is trusted with money: only this machine may, unless
 * the operator said otherwise in so many words (allow_insecure, warned at every start). */
static int endpoints_local_check(const funnel_config_t *cfg, const char *const *names,
                                 const char *const *eps, size_t n, char *err, size_t err_len)
{
    if (cfg->server_key || cfg->allow_insecure)
        return 0;
    for (size_t i = 0; i < n + cfg->n_connect; i++) {
        const char *ep = i < n ? eps[i] : cfg->connect[i - n];
        if (endpoint_is_local(ep))
            continue;
        snprintf(err, err_len,
                 "%s: '%s' is not a loopback address: without security { ... } (CURVE) funneld "
                 "binds and connects only to 127.0.0.1, ::1, localhost, ipc:// or inproc://; "
                 "set allow_insecure = true to accept anyone who reaches it",
                 i < n ? names[i] : "connect", ep);
        return FUNNEL_ECONFIG;
    }
    return 0;
}

int funnel_server_config_check(const funnel_config_t *cfg, char *err, size_t err_len)
{
    const char *names[] = {"ingest", "submit", "publish", "replay"};
    const char *eps[] = {cfg->ingest, cfg->submit, cfg->publish, cfg->replay};
    int rc = engines_check(cfg, err, err_len);
    for (size_t i = 0; !rc && i < 4; i++)
        rc = endpoint_check(names[i], eps[i], err, err_len);
    for (size_t i = 0; !rc && i < cfg->n_connect; i++)
        rc = endpoint_check("connect", cfg->connect[i], err, err_len);
    rc = rc ? rc : endpoints_local_check(cfg, names, eps, 4, err, err_len);
    return rc ? rc : funnel_metrics_listen_check(cfg->metrics, err, err_len);
}

int funnel_server_config_read(const char *path, const funnel_engine_registry_t *registry,
                              const char *const *overrides, size_t n, funnel_config_t *cfg,
                              char *err, size_t err_len)
{
    funnel_config_t fresh = {0};
    int rc = funnel_config_read(path, registry, overrides, n, &fresh, err, err_len);
    if (!rc && !(rc = funnel_server_config_check(&fresh, err, err_len))) {
        funnel_config_clear(cfg);
        *cfg = fresh;
        return 0;
    }
    funnel_config_clear(&fresh);
    return rc;
}

static int engines_start(funnel_server_t *srv)
{
    char err[256];
    int rc = funnel_server_config_check(&srv->cfg, err, sizeof err);
    if (rc) {
        funnel_log_error(srv->log, "%s", err);
        return rc;
    }
    for (size_t i = 0; srv->cfg.registry && i < srv->cfg.registry->n; i++) {
        const funnel_engine_def_t *def = &srv->cfg.registry->defs[i];
        if (!list_has(srv->cfg.engines, def->name))
            continue;
        funnel_engine_t engine;
        int rc = def->create(srv->store, srv->cfg.sections[i], srv->log, &engine);
        if (rc) {
            funnel_log_error(srv->log, "engine %s failed to start: %s", def->name,
                             funnel_strerror(rc));
            return rc;
        }
        srv->engine_defs[srv->n_engines] = def;
        srv->engines[srv->n_engines++] = engine.self;
        if ((rc = funnel_router_add_engine(srv->router, &engine)))
            return rc;
        funnel_log_info(srv->log, "engine %s started", def->name);
    }
    return 0;
}

static void engines_stop(funnel_server_t *srv)
{
    while (srv->n_engines > 0) {
        srv->n_engines--;
        srv->engine_defs[srv->n_engines]->destroy(srv->engines[srv->n_engines]);
    }
}

static int open_socket(funnel_server_t *srv, int type, const char *endpoint, int slot,
                       funnel_zsock_t **out)
{
    int rc = funnel_zsock_new(&srv->loop, srv->zctx, type, out);
    if (rc)
        return rc;
    void *raw = funnel_zsock_raw(*out);
    int hwm = (int)srv->cfg.publish_hwm, on = 1;
    if (type == ZMQ_SUB || type == ZMQ_ROUTER)
        set_hard_limit(srv, *out);
    if (type == ZMQ_SUB)
        zmq_setsockopt(raw, ZMQ_SUBSCRIBE, "", 0);
    /* The stream queues publish_hwm messages per subscriber; acks and replies get a fixed,
     * generous queue so a client pipelining thousands of submits loses no ack. */
    if (type == ZMQ_ROUTER)
        hwm = slot == 3 ? REPLAY_HWM : REPLY_HWM;
    if (type == ZMQ_PUB || type == ZMQ_XPUB || type == ZMQ_ROUTER)
        zmq_setsockopt(raw, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (slot == 3) /* replay: learn about full or vanished peers instead of dropping */
        zmq_setsockopt(raw, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    if ((rc = server_security_socket(srv, raw, type)))
        return rc;
    if ((rc = funnel_zsock_bind(*out, endpoint, srv->bound[slot], sizeof srv->bound[slot]))) {
        funnel_log_error(srv->log, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return rc;
    }
    funnel_log_info(srv->log, "listening on %s", srv->bound[slot]);
    return 0;
}

static int write_ready_file(funnel_server_t *srv)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", srv->opts.ready_file);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        funnel_log_error(srv->log, "cannot write %s: %s", tmp, strerror(errno));
        return FUNNEL_EIO;
    }
    /* The database's absolute path: funnelctl --ready-file reads it from any directory. */
    char *db = realpath(srv->cfg.database, NULL);
    fprintf(f, "ingest=%s\nsubmit=%s\npublish=%s\nreplay=%s\npid=%ld\ndatabase=%s\n", srv->bound[0],
            srv->bound[1], srv->bound[2], srv->bound[3], (long)getpid(),
            db ? db : srv->cfg.database);
    free(db);
    if (srv->metrics)
        fprintf(f, "metrics=%d\n", funnel_metrics_port(srv->metrics));
    if (fclose(f) || rename(tmp, srv->opts.ready_file)) {
        funnel_log_error(srv->log, "cannot write %s: %s", srv->opts.ready_file, strerror(errno));
        return FUNNEL_EIO;
    }
    return 0;
}

/* Started before the ready file is written: whoever waits for it (systemd, a script) may
 * signal at once, and SIGHUP's default action would end the process. A signal that arrives
 * before uv_run is queued by libuv and handled on the loop's first pass. */
static void signals_start(funnel_server_t *srv)
{
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_start(&srv->sig_hup, on_signal, SIGHUP);
}

static int open_sockets(funnel_server_t *srv)
{
    int rc;
    if ((rc = open_socket(srv, ZMQ_SUB, srv->cfg.ingest, 0, &srv->sub)) ||
        (rc = open_socket(srv, ZMQ_ROUTER, srv->cfg.submit, 1, &srv->submit)) ||
        /* With security, XPUB: subscriptions are read and applied as the client may see */
        (rc =
             open_socket(srv, srv->clients ? ZMQ_XPUB : ZMQ_PUB, srv->cfg.publish, 2, &srv->pub)) ||
        (rc = open_socket(srv, ZMQ_ROUTER, srv->cfg.replay, 3, &srv->replay_sock)))
        return rc;
    for (size_t i = 0; i < srv->cfg.n_connect; i++) {
        if ((rc = funnel_zsock_connect(srv->sub, srv->cfg.connect[i]))) {
            funnel_log_error(srv->log, "cannot connect to %s: %s", srv->cfg.connect[i],
                             zmq_strerror(zmq_errno()));
            return rc;
        }
        funnel_log_info(srv->log, "subscribed to publisher %s", srv->cfg.connect[i]);
    }
    return 0;
}

/* A damaged file must not become ready: it would take writes and fail replays part-way. The
 * check reads the whole file (12 s at 540 MB), so by default it runs only when the last writer
 * did not stop cleanly (a crash, kill -9, a power loss: when damage is likeliest) and on the
 * first start of a database made by an older build; quick_check = 2 runs it at every start.
 * Its duration is logged. Then the marker says "running" until a clean stop. */
static int store_check(funnel_server_t *srv)
{
    char err[512];
    bool clean = false;
    int rc = funnel_store_clean_stop_get(srv->store, &clean);
    if (rc) {
        funnel_log_error(srv->log, "database %s: cannot read the stop marker: %s",
                         srv->cfg.database, funnel_store_errmsg(srv->store));
        return rc;
    }
    if (!srv->cfg.quick_check || (clean && srv->cfg.quick_check == 1)) {
        funnel_log_info(srv->log, "database %s: quick_check skipped (%s)", srv->cfg.database,
                        srv->cfg.quick_check ? "the last stop was clean" : "quick_check = 0");
    } else {
        uint64_t started = uv_hrtime();
        rc = funnel_store_quick_check(srv->store, err, sizeof err);
        unsigned long long ms = (unsigned long long)((uv_hrtime() - started) / 1000000);
        if (rc) {
            funnel_log_error(srv->log,
                             "database %s is damaged (PRAGMA quick_check: %s): restore it from a "
                             "backup; funneld will not start on it",
                             srv->cfg.database, err);
            return rc;
        }
        funnel_log_info(srv->log, "database %s: quick_check ok in %llu ms (%s)", srv->cfg.database,
                        ms, clean ? "quick_check = 2" : "the last stop was not clean");
    }
    if ((rc = funnel_store_clean_stop_set(srv->store, false)))
        funnel_log_error(srv->log, "database %s: cannot write the stop marker: %s",
                         srv->cfg.database, funnel_store_errmsg(srv->store));
    return rc;
}

static void init_handles(funnel_server_t *srv)
{
    uv_timer_init(&srv->loop, &srv->flush_timer);
    uv_timer_init(&srv->loop, &srv->watchdog);
    uv_timer_init(&srv->loop, &srv->prune_timer);
    uv_timer_init(&srv->loop, &srv->engine_timer);
    uv_idle_init(&srv->loop, &srv->replay_idle);
    uv_timer_init(&srv->loop, &srv->replay_timer);
    uv_signal_init(&srv->loop, &srv->sig_term);
    uv_signal_init(&srv->loop, &srv->sig_int);
    uv_signal_init(&srv->loop, &srv->sig_hup);
    srv->flush_timer.data = srv->watchdog.data = srv;
    srv->prune_timer.data = srv->replay_idle.data = srv->engine_timer.data = srv;
    srv->replay_timer.data = srv;
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
}

int funnel_server_new(funnel_config_t *cfg, const funnel_server_options_t *opts, funnel_log_t *log,
                      funnel_server_t **out)
{
    char err[512];
    int rc = FUNNEL_ENOMEM;
    *out = NULL;
    funnel_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return rc;
    srv->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    srv->opts = *opts;
    if (!srv->opts.clock)
        srv->opts.clock = real_clock;
    srv->log = log;
    log->level = srv->cfg.log_level;
    if (uv_loop_init(&srv->loop)) {
        rc = FUNNEL_EBUS;
        goto fail_loop;
    }
    init_handles(srv);
    rc = strcmp(srv->cfg.sql_profile, "off")
             ? funnel_store_open_profiled(srv->cfg.database, srv->cfg.sync, srv->cfg.sql_profile,
                                          &srv->store, err, sizeof err)
             : funnel_store_open(srv->cfg.database, false, srv->cfg.sync, &srv->store, err,
                                 sizeof err);
    if (rc) {
        funnel_log_error(log, "%s", err);
        goto fail;
    }
    if ((rc = store_check(srv)))
        goto fail;
    if ((rc = funnel_router_new(srv->store, &srv->router)) ||
        (rc = funnel_store_published_get(srv->store, &srv->published_seq)) ||
        (rc = server_dead_letters_usage(srv)) || (rc = engines_start(srv)))
        goto fail;
    if (!(srv->zctx = zmq_ctx_new())) {
        rc = FUNNEL_EBUS;
        goto fail;
    }
    if ((rc = server_security_start(srv)) || (rc = open_sockets(srv)))
        goto fail;
    if (strcmp(srv->cfg.metrics, "off") &&
        (rc = funnel_metrics_new(srv->cfg.metrics, log, &srv->metrics)))
        goto fail;
    server_metrics_outbox_refresh(srv);
    signals_start(srv);
    if (srv->opts.ready_file && (rc = write_ready_file(srv)))
        goto fail;
    *out = srv;
    return 0;

fail:
    funnel_server_destroy(&srv);
    return rc;
fail_loop:
    funnel_config_clear(&srv->cfg);
    free(srv);
    return rc;
}

int funnel_server_run(funnel_server_t *srv)
{
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000)
        uv_timer_start(&srv->watchdog, server_on_watchdog, 0, wd_usec / 2000);
    uv_timer_start(&srv->prune_timer, server_on_prune, 0, 0);
    server_timers_arm(srv); /* deadlines that passed while funneld was down fire at once */
    server_publish_backlog(srv);
    if (funnel_zsock_start(srv->sub, server_on_ingest, srv, DRAIN_BUDGET) ||
        funnel_zsock_start(srv->submit, server_on_submit, srv, DRAIN_BUDGET) ||
        funnel_zsock_start(srv->pub, srv->clients ? server_on_subscription : NULL, srv,
                           DRAIN_BUDGET) ||
        funnel_zsock_start(srv->replay_sock, server_on_replay, srv, DRAIN_BUDGET) ||
        (srv->zap && funnel_zsock_start(srv->zap, server_on_zap, srv, DRAIN_BUDGET))) {
        funnel_log_error(srv->log, "cannot watch sockets");
        server_shutdown(srv);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        return FUNNEL_EBUS;
    }
    sd_notify(0, "READY=1");
    funnel_log_info(srv->log, "funneld %s ready (database %s, last published sequence %llu)",
                    FUNNEL_VERSION, srv->cfg.database, (unsigned long long)srv->published_seq);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    return 0;
}

const funnel_server_stats_t *funnel_server_stats(const funnel_server_t *srv)
{
    return &srv->stats;
}

void funnel_server_destroy(funnel_server_t **srvp)
{
    if (!srvp || !*srvp)
        return;
    funnel_server_t *srv = *srvp;
    funnel_zsock_destroy(&srv->sub);
    funnel_zsock_destroy(&srv->submit);
    funnel_zsock_destroy(&srv->pub);
    funnel_zsock_destroy(&srv->replay_sock);
    server_security_destroy(srv);
    funnel_metrics_destroy(&srv->metrics); /* its thread reads only its own atomics */
    uv_walk(&srv->loop, close_handle, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT); /* runs the close callbacks */
    uv_loop_close(&srv->loop);
    if (srv->zctx)
        zmq_ctx_term(srv->zctx);
    for (size_t i = 0; i < srv->n_batch; i++)
        server_item_clear(&srv->batch[i]);
    free(srv->batch);
    srv->n_replays = 0; /* plain values: nothing to free */
    funnel_router_destroy(&srv->router);
    engines_stop(srv);
    funnel_store_destroy(&srv->store);
    funnel_config_clear(&srv->cfg);
    free(srv);
    *srvp = NULL;
}
