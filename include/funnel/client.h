/* client.h — the client side of funneld's sockets, used by funnelctl, the adapters and tests.
 *
 * A funnel_client_t owns one ZeroMQ context and the sockets it opens; one thread at a time.
 * Calls block up to the timeouts given; none reads global state. */
#ifndef FUNNEL_CLIENT_H
#define FUNNEL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "funnel/codec.h"

typedef struct funnel_client funnel_client_t;

int funnel_client_new(funnel_client_t **out);
/* Closes everything and wipes the CURVE secret key from memory. */
void funnel_client_destroy(funnel_client_t **client);

/* CURVE (libzmq's CurveZMQ) on every socket the client opens from now on: the submit DEALER,
 * the live SUB and the replay DEALER authenticate funneld by its public key and present the
 * client's key pair (which funneld's clients file must list). key_file is the client's own
 * .key (both keys; readable by its owner only, see funnel_keyfile_read), server_key_file
 * funneld's .pub or .key (only its public key is read). NULL (or "") for both turns CURVE off
 * again.
 * Returns 0; FUNNEL_EINVAL when only one of them is given or libzmq has no CURVE;
 * FUNNEL_EIO / FUNNEL_ECONFIG with the key file's message in err (the path in it) when a file
 * cannot be read or is not a key file. On failure the client keeps its previous setting.
 *
 * A funneld that refuses the handshake (an unknown key, a wrong server key, no CURVE on its
 * side) never answers: requests then fail with FUNNEL_ETIMEDOUT, and funnel_client_error says
 * that the handshake failed when libzmq reported it, or that it may have. */
int funnel_client_set_curve(funnel_client_t *client, const char *key_file,
                            const char *server_key_file, char *err, size_t err_len);

/* What funnel_client_set_curve would refuse, without a client: for config readers, so that a
 * bad key file stops an adapter at start rather than at its first request. Same returns. */
int funnel_client_curve_check(const char *key_file, const char *server_key_file, char *err,
                              size_t err_len);

typedef enum funnel_submit_status {
    FUNNEL_SUBMIT_OK = 0,        /* committed by funneld */
    FUNNEL_SUBMIT_DUPLICATE = 1, /* committed earlier under the same event_id */
    FUNNEL_SUBMIT_REJECTED = 2,  /* refused; reason says why; retrying will not help */
} funnel_submit_status_t;

typedef struct funnel_submit_result {
    funnel_submit_status_t status;
    char reason[256]; /* the text after "rejected: ", or empty */
} funnel_submit_result_t;

typedef struct funnel_submit_options {
    int timeout_ms; /* wait for an ack per attempt (default 2000) */
    int attempts;   /* attempts in all, each with the same event_id (default 3) */
    int backoff_ms; /* pause before the 2nd attempt, doubled each time up to
                       FUNNEL_CLIENT_BACKOFF_MAX_MS (default 100) */
} funnel_submit_options_t;

/* Submits env under topic to funneld's submit endpoint and waits for its ack, resending the
 * same bytes (same event_id) when an attempt times out or funneld answers "unavailable: ..."
 * (disk full: nothing was recorded). Returns 0 with *res filled, FUNNEL_ETIMEDOUT when funneld
 * never answered, FUNNEL_EAGAIN when its last answer was "unavailable" (res->reason says why:
 * retry later), FUNNEL_EBUS / FUNNEL_ENOMEM. opts may be NULL. */
int funnel_client_submit(funnel_client_t *client, const char *endpoint, const char *topic,
                         const funnel_envelope_t *env, const funnel_submit_options_t *opts,
                         funnel_submit_result_t *res);

/* The pause before attempt `attempt` of funnel_client_submit (0 is the first, which has none):
 * base_ms, doubled for each attempt after the second, at most FUNNEL_CLIENT_BACKOFF_MAX_MS, so
 * any number of attempts is safe. */
#define FUNNEL_CLIENT_BACKOFF_MAX_MS 30000
int funnel_client_backoff_ms(int base_ms, int attempt);

/* Why the last submit or follow failed, "" when it did not: the reason funneld gave in an
 * [error] reply (a failed replay), or, after FUNNEL_ETIMEDOUT, what the silence may mean
 * (a refused CURVE handshake). Valid until the next call on client. */
const char *funnel_client_error(const funnel_client_t *client);

/* One output message, valid during the callback. Return non-zero to stop following. */
typedef int (*funnel_client_msg_cb)(uint64_t seq, const char *topic, const uint8_t *envelope,
                                    size_t len, void *arg);

typedef struct funnel_follow_options {
    const char *prefix;     /* deliver topics starting with this ("" or NULL: all) */
    uint64_t from_seq;      /* first sequence wanted; 0 or 1: from the oldest retained */
    int idle_timeout_ms;    /* return 0 after this long without a message; <= 0: never */
    int request_timeout_ms; /* a replay that does not answer in this long fails (default 5000) */
    /* A file holding the last sequence processed (see funnel_cursor_load). When it exists it
     * overrides from_seq; it is rewritten after every message the callback processed. NULL:
     * no cursor file. */
    const char *cursor_path;
    int rcvhwm;       /* ZMQ_RCVHWM of the live socket; <= 0: ZeroMQ's default (tests shrink it) */
    int gap_probe_ms; /* when the stream is quiet this long, ask replay whether the tail of the
                         stream was lost (a gap nothing later reveals); <= 0: 1000 */
} funnel_follow_options_t;

/* Replays from from_seq (or the cursor), then follows the live stream, delivering every output
 * message once and in sequence order: a gap in the live stream, or a quiet spell, triggers a
 * replay of the missing range. The callback returns 0 to go on, > 0 to stop after this message
 * (both count it as processed and advance the cursor), < 0 to stop without processing it (the
 * cursor stays before it, so a later follow delivers it again).
 * Returns the callback's non-zero value, 0 on idle timeout, FUNNEL_ETIMEDOUT when the replay
 * endpoint does not answer, FUNNEL_EINVAL when funneld answered a replay with an error
 * (funnel_client_error says why), FUNNEL_EBUS on socket errors, FUNNEL_EIO when the cursor file
 * cannot be read or written. */
int funnel_client_follow(funnel_client_t *client, const char *publish_ep, const char *replay_ep,
                         const funnel_follow_options_t *opts, funnel_client_msg_cb cb, void *arg);

/* ---- cursor files ---------------------------------------------------------------------- */

/* Reads the sequence stored at path (decimal text). Returns 0 with *seq, 0 with *seq = 0 when
 * the file does not exist (nothing processed yet), FUNNEL_EIO when it cannot be read or does
 * not hold a number (a corrupt cursor is not silently reset: that would replay everything). */
int funnel_cursor_load(const char *path, uint64_t *seq);

/* Stores seq at path atomically: written to path.tmp, fsync'ed, renamed over path, and the
 * directory fsync'ed, so after a crash the file holds either the old or the new value.
 * Returns 0 or FUNNEL_EIO. */
int funnel_cursor_save(const char *path, uint64_t seq);

#endif
