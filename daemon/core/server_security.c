/* server_security.c — CURVE on every socket, the ZAP handler, and the per-client rights of the
 * clients file applied to ingest, submit, the publish socket's subscriptions and replays.
 *
 * Without `security` nothing here runs but the allow_insecure warning. With it, start-up reads
 * the server's key and the clients file, then binds the ZAP handler (a ROUTER on
 * inproc://zeromq.zap.01 in funneld's context) before any CURVE socket binds: libzmq admits
 * every client while no handler is bound. The handler is one more socket of the loop, drained
 * like the others, and answers each request at once from the in-memory table (zap.c).
 *
 * The rights are checked per message against the ZAP User-Id libzmq attaches to it, looked up
 * by name in the current table: a reload (SIGHUP) that removes a client refuses its very next
 * message. What a reload cannot take back is a subscription already applied to a live
 * connection: libzmq offers no way to drop one pipe's subscriptions but through that pipe's
 * own (un)subscribe messages. A removed client keeps the live stream it was allowed until it
 * disconnects; it cannot reconnect (the handshake fails), and its new subscriptions and
 * replays are refused at once (README "Security"). */
#include "server_internal.h"
#include "funnel/error.h"
#include "zap.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A security log line, at most refusal_log_per_minute a minute per kind, then a count. */
static void security_log(funnel_server_t *srv, funnel_metrics_denial_t kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void security_log(funnel_server_t *srv, funnel_metrics_denial_t kind, const char *fmt, ...)
{
    static const char *const what[] = {"handshakes with unknown keys", "malformed ZAP requests",
                                       "subscriptions", "replays"};
    uint64_t summary;
    funnel_metrics_denied(srv->metrics, kind);
    bool line =
        funnel_ratelimit_hit(&srv->security_log[kind], server_now_ms(srv), REFUSAL_LOG_WINDOW_MS,
                             (uint64_t)srv->cfg.refusal_log_per_minute, &summary);
    if (summary)
        funnel_log_warn(srv->log, "refused %llu more %s in the last minute (log lines suppressed)",
                        (unsigned long long)summary, what[kind]);
    if (!line)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    funnel_log_warn(srv->log, "%s", text);
}

/* ---- start, reload -------------------------------------------------------------------- */

static int clients_load(funnel_server_t *srv, funnel_clients_t **out)
{
    char err[512];
    int rc = funnel_clients_load(srv->cfg.clients, out, err, sizeof err);
    if (rc)
        funnel_log_error(srv->log, "clients file: %s", err);
    return rc;
}

int server_security_start(funnel_server_t *srv)
{
    char err[512];
    if (!srv->cfg.server_key) {
        if (srv->cfg.allow_insecure)
            funnel_log_warn(srv->log,
                            "allow_insecure = true and no security section: anyone who reaches "
                            "funneld's ports may publish, submit and read everything");
        return 0;
    }
    int rc = funnel_keyfile_read(srv->cfg.server_key, true, &srv->server_key, err, sizeof err);
    if (rc) {
        funnel_log_error(srv->log, "security: %s", err);
        return rc;
    }
    if ((rc = clients_load(srv, &srv->clients)))
        return rc;
    /* Bound before any CURVE socket: with none bound, libzmq lets every client in. */
    if ((rc = funnel_zsock_new(&srv->loop, srv->zctx, ZMQ_ROUTER, &srv->zap)) ||
        (rc = funnel_zsock_bind(srv->zap, FUNNEL_ZAP_ENDPOINT, NULL, 0))) {
        funnel_log_error(srv->log, "cannot bind the ZAP handler on %s: %s", FUNNEL_ZAP_ENDPOINT,
                         zmq_strerror(zmq_errno()));
        return rc ? rc : FUNNEL_EBUS;
    }
    funnel_log_info(srv->log, "security on: CURVE with server key %s, %zu clients from %s",
                    srv->server_key.public_key, funnel_clients_count(srv->clients),
                    srv->cfg.clients);
    return 0;
}

int server_security_socket(funnel_server_t *srv, void *raw, int type)
{
    if (!srv->clients)
        return 0;
    int on = 1;
    if (zmq_setsockopt(raw, ZMQ_ZAP_DOMAIN, FUNNEL_ZAP_DOMAIN, strlen(FUNNEL_ZAP_DOMAIN)) ||
        zmq_setsockopt(raw, ZMQ_CURVE_SERVER, &on, sizeof on) ||
        zmq_setsockopt(raw, ZMQ_CURVE_SECRETKEY, srv->server_key.secret_key, FUNNEL_KEY_Z85_LEN) ||
        (type == ZMQ_XPUB && zmq_setsockopt(raw, ZMQ_XPUB_MANUAL, &on, sizeof on))) {
        funnel_log_error(srv->log, "cannot turn CURVE on: %s (libzmq built without CURVE?)",
                         zmq_strerror(zmq_errno()));
        return FUNNEL_EBUS;
    }
    return 0;
}

/* Names in old that are not in fresh: logged, since what happens to them is not obvious. */
static void clients_removed_log(funnel_server_t *srv, const funnel_clients_t *old,
                                const funnel_clients_t *fresh)
{
    for (size_t i = 0; i < funnel_clients_count(old); i++) {
        const char *name = funnel_clients_at(old, i)->name;
        if (!funnel_clients_by_name(fresh, name))
            funnel_log_warn(srv->log,
                            "clients reload: %s removed: its next message and replay are "
                            "refused, new connections fail the handshake; a live subscription "
                            "ends when it disconnects",
                            name);
    }
}

void server_security_reload(funnel_server_t *srv)
{
    if (!srv->clients)
        return;
    funnel_clients_t *fresh = NULL;
    if (clients_load(srv, &fresh)) {
        funnel_log_error(srv->log, "clients reload refused, keeping the running table of %zu",
                         funnel_clients_count(srv->clients));
        return;
    }
    clients_removed_log(srv, srv->clients, fresh);
    funnel_clients_destroy(&srv->clients);
    srv->clients = fresh;
    funnel_log_info(srv->log, "clients reloaded: %zu clients", funnel_clients_count(fresh));
}

void server_security_destroy(funnel_server_t *srv)
{
    funnel_zsock_destroy(&srv->zap);
    funnel_clients_destroy(&srv->clients);
    funnel_keypair_wipe(&srv->server_key);
}

/* ---- ZAP ------------------------------------------------------------------------------ */

/* [ident][""][request...] in, [ident][""][1.0][request id][code][text][user id][metadata]
 * out. A request too mangled to carry a routing envelope cannot be answered at all. */
void server_on_zap(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow, void *arg)
{
    funnel_server_t *srv = arg;
    peer_t peer;
    size_t first = server_peer_parse(frames, n, &peer);
    funnel_frame_t req[FUNNEL_ZSOCK_MAX_FRAMES];
    size_t nreq = 0;
    for (size_t i = first; i < n; i++)
        req[nreq++] = (funnel_frame_t){zmq_msg_data(&frames[i]), zmq_msg_size(&frames[i])};
    funnel_zap_answer_t a;
    funnel_zap_answer(srv->clients, req, overflow ? 0 : nreq, &a);
    if (overflow) /* the request id is still worth echoing */
        a.request_id = nreq >= 2 ? req[1] : (funnel_frame_t){NULL, 0};
    if (a.outcome == FUNNEL_ZAP_DENIED)
        security_log(srv, FUNNEL_METRICS_DENIED_KEY, "CURVE handshake refused: %s%s%s",
                     a.status_text, a.key_z85[0] ? " " : "", a.key_z85);
    else if (a.outcome == FUNNEL_ZAP_MALFORMED)
        security_log(srv, FUNNEL_METRICS_DENIED_ZAP, "malformed ZAP request (%zu frames): %s", nreq,
                     a.status_text);
    const void *parts[] = {"1.0",         a.request_id.data ? a.request_id.data : "",
                           a.status_code, a.status_text,
                           a.user_id,     ""};
    size_t lens[] = {3, a.request_id.len, 3, strlen(a.status_text), strlen(a.user_id), 0};
    if (server_peer_send(zs, &peer, parts, lens, 6))
        funnel_log_error(srv->log, "cannot answer a ZAP request: %s", zmq_strerror(zmq_errno()));
}

/* ---- per message ---------------------------------------------------------------------- */

const char *server_security_user(const funnel_server_t *srv, const zmq_msg_t *msg)
{
    /* Without security there is no User-Id, and the metadata lookup (a std::string and a map
     * search in libzmq) is a cost per message for nothing. */
    return srv->clients ? zmq_msg_gets((zmq_msg_t *)msg, "User-Id") : NULL;
}

int server_security_publish_check(funnel_server_t *srv, const char *user, const char *topic,
                                  funnel_refusal_t *why)
{
    const funnel_clients_entry_t *c = funnel_clients_by_name(srv->clients, user);
    if (c && funnel_clients_may_publish(c, topic))
        return 0;
    why->code = FUNNEL_REFUSE_FORBIDDEN;
    snprintf(why->text, sizeof why->text, "forbidden: %s may not publish %s",
             user ? user : "(no client)", topic[0] ? topic : "-");
    return FUNNEL_EREFUSED;
}

/* ---- the publish socket's subscriptions ----------------------------------------------- */

/* Applies or removes one prefix for the connection of the message last received. */
static void subscription_set(funnel_server_t *srv, bool subscribe, const void *prefix, size_t len)
{
    if (zmq_setsockopt(funnel_zsock_raw(srv->pub), subscribe ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE,
                       prefix, len))
        funnel_log_error(srv->log, "cannot apply a subscription: %s", zmq_strerror(zmq_errno()));
}

/* One (un)subscription from a client of the XPUB socket ([1|0][prefix]; ZMQ_XPUB_MANUAL). It is
 * applied only as far as the client's subscribe prefixes allow: inside one as it is, a prefix of
 * some (the client library subscribes "" to see every sequence) narrowed to those, anything else
 * not at all. In manual mode libzmq applies a ZMQ_SUBSCRIBE/UNSUBSCRIBE set on the socket to
 * `_last_pipe`, the connection whose subscription message the last zmq_recv returned (xpub.cpp:
 * xrecv pops it from `_pending_pipes`), so every prefix is set right here, before the next
 * receive. The unsubscriptions libzmq queues for a connection that went away carry no User-Id
 * and reset `_last_pipe`: there is nothing left to remove. libzmq before 4.3.5 (2df7ab6a) does
 * not check that the popped connection is still alive: README "Security". */
void server_on_subscription(funnel_zsock_t *zs, zmq_msg_t *frames, size_t n, bool overflow,
                            void *arg)
{
    (void)zs;
    (void)overflow;
    funnel_server_t *srv = arg;
    const uint8_t *data = zmq_msg_data(&frames[0]);
    size_t len = zmq_msg_size(&frames[0]);
    const char *user = server_security_user(srv, &frames[0]);
    if (n != 1 || len == 0 || data[0] > 1 || !user)
        return;
    bool subscribe = data[0] == 1;
    const uint8_t *prefix = data + 1;
    size_t plen = len - 1;
    const funnel_clients_entry_t *c = funnel_clients_by_name(srv->clients, user);
    funnel_sub_decision_t d = c ? funnel_clients_subscription(c, prefix, plen) : FUNNEL_SUB_DENY;
    if (d == FUNNEL_SUB_APPLY) {
        subscription_set(srv, subscribe, prefix, plen);
    } else if (d == FUNNEL_SUB_NARROW) {
        size_t i = 0;
        for (const char *p; (p = funnel_clients_narrow(c, prefix, plen, &i));)
            subscription_set(srv, subscribe, p, strlen(p));
    } else if (subscribe) {
        char shown[FUNNEL_TOPIC_MAX + 1];
        size_t k = plen < FUNNEL_TOPIC_MAX ? plen : FUNNEL_TOPIC_MAX;
        for (size_t i = 0; i < k; i++)
            shown[i] = prefix[i] >= 0x20 && prefix[i] < 0x7f ? (char)prefix[i] : '?';
        shown[k] = '\0';
        security_log(srv, FUNNEL_METRICS_DENIED_SUBSCRIPTION,
                     "subscription refused: %s may not subscribe to \"%s\"%s", user, shown,
                     c ? "" : " (no longer a listed client)");
    }
}

/* ---- replay --------------------------------------------------------------------------- */

int server_security_replay_client(funnel_server_t *srv, const char *user, char *name,
                                  size_t name_len, char *why, size_t why_len)
{
    name[0] = '\0';
    if (!srv->clients)
        return 0;
    if (!funnel_clients_by_name(srv->clients, user)) {
        snprintf(why, why_len, "forbidden: %s is not a listed client", user ? user : "(none)");
        security_log(srv, FUNNEL_METRICS_DENIED_REPLAY, "replay refused: %s", why);
        return FUNNEL_EREFUSED;
    }
    snprintf(name, name_len, "%s", user);
    return 0;
}
