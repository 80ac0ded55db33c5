/* zap.h — answers to ZeroMQ's authentication requests (ZAP, RFC 27) from the clients table.
 *
 * libzmq asks the handler bound at inproc://zeromq.zap.01 about every connection to a CURVE
 * socket, and admits everyone while no handler is bound: funneld binds one before any CURVE
 * socket (server_security.c). This file is the pure part: one request's frames in, one answer
 * out, no sockets, no logs, so it can be fuzzed and unit-tested.
 *
 * A request (after the routing envelope) is [version "1.0"][request id][domain][address]
 * [routing id][mechanism][credentials...]; for CURVE one 32-byte credentials frame, the client's
 * public key. The answer is 200 with the client's name as the User-Id for a listed key, 400
 * for any other key or mechanism, 500 for a request that is not a ZAP request at all. */
#ifndef FUNNEL_ZAP_H
#define FUNNEL_ZAP_H

#include <stddef.h>

#include "clients.h"
#include "funnel/codec.h"

#define FUNNEL_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define FUNNEL_ZAP_DOMAIN   "funneld"

typedef enum funnel_zap_outcome {
    FUNNEL_ZAP_ALLOWED,   /* 200 */
    FUNNEL_ZAP_DENIED,    /* 400: unknown key or not CURVE */
    FUNNEL_ZAP_MALFORMED, /* 500 */
} funnel_zap_outcome_t;

typedef struct funnel_zap_answer {
    funnel_zap_outcome_t outcome;
    const char *status_code; /* "200", "400" or "500" */
    char status_text[128];
    char user_id[FUNNEL_CLIENT_NAME_MAX + 1]; /* the client's name; empty unless allowed */
    char key_z85[FUNNEL_KEY_Z85_LEN + 1];     /* the key asked about; empty if none was */
    funnel_frame_t request_id;                /* borrowed from the request; empty if none */
} funnel_zap_answer_t;

/* Answers the request frames[0..n) against clients (NULL: nobody is listed). Never fails:
 * every input gets an answer. */
void funnel_zap_answer(const funnel_clients_t *clients, const funnel_frame_t *frames, size_t n,
                       funnel_zap_answer_t *out);

#endif
