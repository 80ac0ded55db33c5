/* client.c — acknowledged submit and gap-free follow over funneld's sockets. */
#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/keyfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct funnel_client {
    void *zctx;
    bool curve;                              /* every new socket is a CURVE client */
    funnel_keypair_t own;                    /* with curve: this client's pair */
    char server_key[FUNNEL_KEY_Z85_LEN + 1]; /* with curve: funneld's public key */
    unsigned monitors;                       /* names each monitor's inproc endpoint */
    char error[256]; /* why the last call failed (funnel_client_error); "" when it did not */
};

/* The handshake failures a monitor reports (see explain_timeout). */
#define HANDSHAKE_FAILED                                                                           \
    (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

int funnel_client_new(funnel_client_t **out)
{
    funnel_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return FUNNEL_ENOMEM;
    if (!(c->zctx = zmq_ctx_new())) {
        free(c);
        return FUNNEL_EBUS;
    }
    *out = c;
    return 0;
}

void funnel_client_destroy(funnel_client_t **client)
{
    if (!client || !*client)
        return;
    zmq_ctx_term((*client)->zctx);
    funnel_keypair_wipe(&(*client)->own);
    free(*client);
    *client = NULL;
}

const char *funnel_client_error(const funnel_client_t *c)
{
    return c->error;
}

static bool given(const char *path)
{
    return path && path[0];
}

/* Reads both key files into own and server (see funnel_client_set_curve); own is wiped by the
 * caller, also on failure. */
static int curve_read(const char *key_file, const char *server_key_file, funnel_keypair_t *own,
                      funnel_keypair_t *server, char *err, size_t err_len)
{
    if (!given(key_file) || !given(server_key_file)) {
        snprintf(err, err_len, "CURVE needs both the client's key and funneld's server key");
        return FUNNEL_EINVAL;
    }
    if (!zmq_has("curve")) {
        snprintf(err, err_len, "this libzmq was built without CURVE");
        return FUNNEL_EINVAL;
    }
    int rc = funnel_keyfile_read(key_file, true, own, err, err_len);
    return rc ? rc : funnel_keyfile_read(server_key_file, false, server, err, err_len);
}

int funnel_client_set_curve(funnel_client_t *c, const char *key_file, const char *server_key_file,
                            char *err, size_t err_len)
{
    funnel_keypair_t own, server;
    if (!given(key_file) && !given(server_key_file)) {
        funnel_keypair_wipe(&c->own);
        c->curve = false;
        return 0;
    }
    int rc = curve_read(key_file, server_key_file, &own, &server, err, err_len);
    if (!rc) {
        funnel_keypair_wipe(&c->own);
        c->own = own;
        memcpy(c->server_key, server.public_key, sizeof c->server_key);
        c->curve = true;
    }
    funnel_keypair_wipe(&own);
    return rc;
}

int funnel_client_curve_check(const char *key_file, const char *server_key_file, char *err,
                              size_t err_len)
{
    funnel_keypair_t own, server;
    if (!given(key_file) && !given(server_key_file))
        return 0;
    int rc = curve_read(key_file, server_key_file, &own, &server, err, err_len);
    funnel_keypair_wipe(&own);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_curve(const funnel_client_t *c, void *s)
{
    size_t len = FUNNEL_KEY_Z85_LEN + 1; /* Z85 text with its NUL, as libzmq takes it */
    return zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server_key, len) ||
           zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->own.public_key, len) ||
           zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->own.secret_key, len);
}

/* A PAIR socket receiving s's failed handshakes, so that a request that times out can tell a
 * refused key, or a plain client of a CURVE funneld, from a silent funneld; NULL when it cannot
 * be made (the timeout then only hints at the handshake). Made before s connects: the first
 * connection's events count. */
static void *monitor_open(funnel_client_t *c, void *s)
{
    char ep[64];
    int linger = 0;
    snprintf(ep, sizeof ep, "inproc://funnel-client-monitor-%u", c->monitors++);
    if (zmq_socket_monitor(s, ep, HANDSHAKE_FAILED))
        return NULL;
    void *mon = zmq_socket(c->zctx, ZMQ_PAIR);
    if (mon)
        zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
    if (mon && zmq_connect(mon, ep) == 0)
        return mon;
    if (mon)
        zmq_close(mon);
    zmq_socket_monitor(s, NULL, 0);
    return NULL;
}

static void close_socket(void *s, void *mon)
{
    if (mon) {
        zmq_socket_monitor(s, NULL, 0);
        zmq_close(mon);
    }
    zmq_close(s);
}

/* Opens a socket of type connected to endpoint, with CURVE when it is on. rcvhwm > 0 sets
 * ZMQ_RCVHWM, which only applies to connections made after it is set. mon (NULL: not wanted)
 * receives the socket's handshake monitor (see monitor_open); close_socket closes both. */
static void *open_socket(funnel_client_t *c, int type, const char *endpoint, int rcvhwm, void **mon)
{
    void *s = zmq_socket(c->zctx, type);
    int linger = 0;
    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (rcvhwm > 0)
        zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    if (c->curve && set_curve(c, s)) {
        zmq_close(s);
        return NULL;
    }
    if (mon)
        *mon = monitor_open(c, s);
    if (zmq_connect(s, endpoint)) {
        close_socket(s, mon ? *mon : NULL);
        if (mon)
            *mon = NULL;
        return NULL;
    }
    return s;
}

/* Receives one multipart message into frames (at most max; extra frames dropped). Returns the
 * frame count, 0 on timeout, negative on error. Caller closes the frames. */
static int recv_frames(void *sock, zmq_msg_t *frames, int max, int timeout_ms)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc <= 0)
        return rc < 0 ? FUNNEL_EBUS : 0;
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t scratch, *m = n < max ? &frames[n] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            n++;
    }
    return n;
}

static void close_frames(zmq_msg_t *frames, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close(&frames[i]);
}

static bool frame_is(zmq_msg_t *m, const char *s)
{
    size_t len = strlen(s);
    return zmq_msg_size(m) == len && memcmp(zmq_msg_data(m), s, len) == 0;
}

/* After a request timed out with CURVE on: says in the client's error whether the monitor saw
 * a handshake fail, and how. funneld refuses an unknown key with a ZAP status (FAILED_AUTH);
 * a wrong server key makes funneld drop the connection mid-handshake (FAILED_NO_DETAIL); a
 * funneld without CURVE fails the mechanism (FAILED_PROTOCOL). */
static void explain_timeout(funnel_client_t *c, void *mon)
{
    uint16_t event = 0, seen = 0;
    uint32_t value = 0, auth_status = 0;
    zmq_msg_t f[2];
    int n;
    while (mon && (n = recv_frames(mon, f, 2, 0)) > 0) {
        if (zmq_msg_size(&f[0]) == 6) { /* uint16 event, uint32 value, native byte order */
            memcpy(&event, zmq_msg_data(&f[0]), 2);
            memcpy(&value, (const char *)zmq_msg_data(&f[0]) + 2, 4);
            seen |= event;
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                auth_status = value;
        }
        close_frames(f, n);
    }
    if (!c->curve) {
        /* Without keys the one handshake that fails is a plain client meeting CURVE. */
        if (seen)
            snprintf(c->error, sizeof c->error,
                     "funneld refused the handshake: it runs with security on, so this client "
                     "needs its key and funneld's server_key");
        return;
    }
    if (seen & ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf(c->error, sizeof c->error,
                 "funneld refused this client's key in the CURVE handshake (status %u): is its "
                 "public key in funneld's clients file?",
                 (unsigned)auth_status);
    else if (seen)
        snprintf(c->error, sizeof c->error,
                 "the CURVE handshake with funneld failed (check server_key, and that funneld "
                 "runs with security on)");
    else
        snprintf(c->error, sizeof c->error,
                 "no answer from funneld (CURVE handshake refused? check key and server_key)");
}

/* Sends [a][b] waiting at most timeout_ms for room. A DEALER whose only connection failed its
 * handshake (a plain client of a CURVE funneld, a refused key) has no pipe to queue on and
 * would block in zmq_send until a handshake succeeds, that is forever. Returns 0,
 * FUNNEL_ETIMEDOUT or FUNNEL_EBUS. A message is sent whole or not at all. */
static int send_request(void *sock, const void *a, size_t alen, const void *b, size_t blen,
                        int timeout_ms)
{
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    if (zmq_send(sock, a, alen, ZMQ_SNDMORE) < 0)
        return errno == EAGAIN ? FUNNEL_ETIMEDOUT : FUNNEL_EBUS;
    return zmq_send(sock, b, blen, 0) < 0 ? FUNNEL_EBUS : 0;
}

/* Waits for the ack of event_id until deadline; acks of earlier attempts of other ids are
 * skipped. Returns 0 with *res, FUNNEL_EAGAIN when funneld answered "unavailable: <why>" (the
 * reason in res), or FUNNEL_ETIMEDOUT. */
static int await_ack(void *sock, const char *event_id, int64_t deadline,
                     funnel_submit_result_t *res)
{
    int64_t left;
    while ((left = deadline - mono_ms()) > 0) {
        zmq_msg_t f[2];
        int n = recv_frames(sock, f, 2, (int)left);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        bool mine = n == 2 && frame_is(&f[0], event_id);
        int rc = 0;
        if (mine) {
            const char *st = zmq_msg_data(&f[1]);
            size_t len = zmq_msg_size(&f[1]);
            memset(res, 0, sizeof *res);
            if (len > 13 && memcmp(st, "unavailable: ", 13) == 0) {
                snprintf(res->reason, sizeof res->reason, "%.*s", (int)(len - 13), st + 13);
                rc = FUNNEL_EAGAIN;
            } else if (len == 2 && memcmp(st, "ok", 2) == 0) {
                res->status = FUNNEL_SUBMIT_OK;
            } else if (len == 9 && memcmp(st, "duplicate", 9) == 0) {
                res->status = FUNNEL_SUBMIT_DUPLICATE;
            } else {
                size_t skip = len > 10 && memcmp(st, "rejected: ", 10) == 0 ? 10 : 0;
                res->status = FUNNEL_SUBMIT_REJECTED;
                snprintf(res->reason, sizeof res->reason, "%.*s", (int)(len - skip), st + skip);
            }
        }
        close_frames(f, n);
        if (mine)
            return rc;
    }
    return FUNNEL_ETIMEDOUT;
}

/* Doubles while below half the cap, so the int never overflows whatever the attempt count;
 * base_ms is at least 0 (funnel_client_submit clamps it). */
int funnel_client_backoff_ms(int base_ms, int attempt)
{
    if (attempt <= 0 || base_ms <= 0)
        return 0;
    int backoff = base_ms < FUNNEL_CLIENT_BACKOFF_MAX_MS ? base_ms : FUNNEL_CLIENT_BACKOFF_MAX_MS;
    for (int i = 1; i < attempt && backoff < FUNNEL_CLIENT_BACKOFF_MAX_MS; i++)
        backoff = backoff <= FUNNEL_CLIENT_BACKOFF_MAX_MS / 2 ? backoff * 2
                                                              : FUNNEL_CLIENT_BACKOFF_MAX_MS;
    return backoff;
}

int funnel_client_submit(funnel_client_t *c, const char *endpoint, const char *topic,
                         const funnel_envelope_t *env, const funnel_submit_options_t *opts,
                         funnel_submit_result_t *res)
{
    funnel_submit_options_t o = {2000, 3, 100};
    if (opts) {
        o.timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : o.timeout_ms;
        o.attempts = opts->attempts > 0 ? opts->attempts : o.attempts;
        o.backoff_ms = opts->backoff_ms >= 0 ? opts->backoff_ms : o.backoff_ms;
    }
    size_t len = funnel__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return FUNNEL_ENOMEM;
    funnel__v1__envelope__pack(env, buf);
    c->error[0] = '\0';
    void *mon = NULL;
    void *sock = open_socket(c, ZMQ_DEALER, endpoint, 0, &mon);
    int rc = sock ? FUNNEL_ETIMEDOUT : FUNNEL_EBUS;
    for (int attempt = 0; sock && attempt < o.attempts; attempt++) {
        int backoff = funnel_client_backoff_ms(o.backoff_ms, attempt);
        if (backoff) {
            struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        rc = send_request(sock, topic, strlen(topic), buf, len, o.timeout_ms);
        if (rc == FUNNEL_EBUS)
            break;
        if (rc == 0)
            rc = await_ack(sock, env->event_id, mono_ms() + o.timeout_ms, res);
        if (rc != FUNNEL_ETIMEDOUT && rc != FUNNEL_EAGAIN)
            break;
    }
    if (rc == FUNNEL_ETIMEDOUT)
        explain_timeout(c, mon);
    if (sock)
        close_socket(sock, mon);
    free(buf);
    return rc;
}

/* ---- follow -------------------------------------------------------------------------- */

typedef struct follow {
    const funnel_follow_options_t *o;
    funnel_client_msg_cb cb;
    void *arg;
    uint64_t next;  /* next sequence to deliver */
    uint64_t saved; /* last sequence written to the cursor file */
    size_t prefix_len;
    size_t delivered; /* messages taken from the stream, for the quiet-spell probe */
    /* The replay connection and its monitor, kept from one replay to the next once a replay
     * ended with [end]: a quiet spell probes every gap_probe_ms, and with CURVE each new
     * connection costs a handshake and an authentication on funneld's side. */
    void *rsock, *rmon;
} follow_t;

/* Records seq as processed in the cursor file, if there is one. */
static int cursor_advance(follow_t *f, uint64_t seq)
{
    if (!f->o->cursor_path || seq <= f->saved)
        return 0;
    int rc = funnel_cursor_save(f->o->cursor_path, seq);
    if (!rc)
        f->saved = seq;
    return rc;
}

/* Delivers one [topic][seq][envelope] message if it is the next one; non-zero stops. Messages
 * outside the prefix only move next: the cursor catches up with them at the next processed
 * message or on return, which spares an fsync per skipped message. */
static int deliver(follow_t *f, zmq_msg_t *frames)
{
    if (zmq_msg_size(&frames[1]) != 8)
        return 0;
    uint64_t seq = funnel_seq_decode(zmq_msg_data(&frames[1]));
    if (seq < f->next)
        return 0; /* already delivered */
    f->delivered++;
    size_t tlen = zmq_msg_size(&frames[0]);
    char topic[FUNNEL_TOPIC_MAX + 1];
    snprintf(topic, sizeof topic, "%.*s", (int)tlen, (const char *)zmq_msg_data(&frames[0]));
    if (f->prefix_len && strncmp(topic, f->o->prefix, f->prefix_len) != 0) {
        f->next = seq + 1;
        return 0;
    }
    int rc = f->cb(seq, topic, zmq_msg_data(&frames[2]), zmq_msg_size(&frames[2]), f->arg);
    if (rc < 0)
        return rc; /* not processed: next and the cursor stay before it */
    f->next = seq + 1;
    int crc = cursor_advance(f, seq);
    return crc ? crc : rc;
}

static void replay_close(follow_t *f)
{
    if (f->rsock)
        close_socket(f->rsock, f->rmon);
    f->rsock = f->rmon = NULL;
}

/* Replays [next, end] and delivers it. A replay that did not reach [end] (a timeout, an error,
 * a callback that stopped) may still be streaming rows: its connection is closed, so the next
 * request starts on a clean one. */
static int replay(funnel_client_t *c, const char *replay_ep, follow_t *f)
{
    if (!f->rsock && !(f->rsock = open_socket(c, ZMQ_DEALER, replay_ep, 0, &f->rmon)))
        return FUNNEL_EBUS;
    void *sock = f->rsock;
    bool ended = false;
    uint8_t seq[8];
    funnel_seq_encode(f->next, seq);
    int timeout = f->o->request_timeout_ms > 0 ? f->o->request_timeout_ms : 5000;
    int rc = send_request(sock, "replay", 6, seq, 8, timeout);
    while (!rc) {
        zmq_msg_t fr[3];
        int n = recv_frames(sock, fr, 3, timeout);
        if (n <= 0) {
            rc = n ? n : FUNNEL_ETIMEDOUT;
            break;
        }
        if (n == 3)
            rc = deliver(f, fr);
        else if (n == 2 && frame_is(&fr[0], "end")) {
            uint64_t last = zmq_msg_size(&fr[1]) == 8 ? funnel_seq_decode(zmq_msg_data(&fr[1])) : 0;
            if (last >= f->next)
                f->next = last + 1;
            close_frames(fr, n);
            ended = true;
            break;
        } else if (n == 2 && frame_is(&fr[0], "error")) {
            snprintf(c->error, sizeof c->error, "%.*s", (int)zmq_msg_size(&fr[1]),
                     (const char *)zmq_msg_data(&fr[1]));
            rc = FUNNEL_EINVAL;
        }
        /* "truncated" needs no action: the next row says where history starts. */
        close_frames(fr, n);
    }
    if (rc == FUNNEL_ETIMEDOUT)
        explain_timeout(c, f->rmon);
    if (!ended)
        replay_close(f);
    return rc;
}

/* Follows the live stream after the initial replay. A quiet spell of gap_probe_ms asks replay
 * for anything after next: when a slow subscriber lost the last messages of a burst, no later
 * message would reveal the gap. The idle timeout counts only spells in which the probe found
 * nothing either. */
static int follow_live(funnel_client_t *c, void *sub, const char *replay_ep, follow_t *f)
{
    const funnel_follow_options_t *o = f->o;
    int probe = o->gap_probe_ms > 0 ? o->gap_probe_ms : 1000;
    int64_t idle_since = mono_ms();
    int rc = 0;
    while (!rc) {
        int wait = probe;
        if (o->idle_timeout_ms > 0) {
            int64_t left = idle_since + o->idle_timeout_ms - mono_ms();
            wait = left < wait ? (int)(left > 0 ? left : 0) : wait;
        }
        zmq_msg_t fr[3];
        int n = recv_frames(sub, fr, 3, wait);
        if (n < 0)
            return n;
        if (n == 0) {
            size_t before = f->delivered;
            rc = replay(c, replay_ep, f);
            if (f->delivered != before)
                idle_since = mono_ms();
            else if (o->idle_timeout_ms > 0 && mono_ms() - idle_since >= o->idle_timeout_ms)
                break;
            continue;
        }
        idle_since = mono_ms();
        if (n == 3 && zmq_msg_size(&fr[1]) == 8 &&
            funnel_seq_decode(zmq_msg_data(&fr[1])) > f->next) {
            rc = replay(c, replay_ep, f); /* a gap: fetch what we missed first */
        }
        if (!rc && n == 3)
            rc = deliver(f, fr);
        close_frames(fr, n);
    }
    return rc;
}

int funnel_client_follow(funnel_client_t *c, const char *publish_ep, const char *replay_ep,
                         const funnel_follow_options_t *opts, funnel_client_msg_cb cb, void *arg)
{
    follow_t f = {.o = opts,
                  .cb = cb,
                  .arg = arg,
                  .next = opts->from_seq ? opts->from_seq : 1,
                  .prefix_len = opts->prefix ? strlen(opts->prefix) : 0};
    c->error[0] = '\0';
    if (opts->cursor_path) {
        uint64_t cur;
        if (funnel_cursor_load(opts->cursor_path, &cur))
            return FUNNEL_EIO;
        if (cur) {
            f.next = cur + 1;
            f.saved = cur;
        }
    }
    /* Subscribe to everything before replaying: sequence gaps can only be seen on the whole
     * stream, and live messages that arrive during the replay wait in the socket. */
    void *sub = open_socket(c, ZMQ_SUB, publish_ep, opts->rcvhwm, NULL);
    if (!sub)
        return FUNNEL_EBUS;
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    int rc = replay(c, replay_ep, &f);
    if (!rc)
        rc = follow_live(c, sub, replay_ep, &f);
    /* Skipped messages after the last processed one are done too: remember them. */
    if (rc >= 0 && f.next > 1) {
        int crc = cursor_advance(&f, f.next - 1);
        rc = crc ? crc : rc;
    }
    replay_close(&f);
    zmq_close(sub);
    return rc;
}
