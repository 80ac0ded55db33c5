/* fuzz_zap.c — funneld's ZAP handler, funnel_zap_answer, on the request frames libzmq (or
 * anything else in the process) sends to inproc://zeromq.zap.01.
 *
 * Input: frames, each one length byte then that many bytes (the last may be short), against a
 * table of one client whose public key is 32 bytes of 'K'. Invariants: every request gets one
 * of the three answers; 200 only for a well-formed CURVE request with that key, with the
 * client's name; the request id echoed is the request's own second frame. */
#include "fuzz.h"

#include "zap.h"

#include <string.h>
#include <zmq.h>

#define MAX_FRAMES 10

static funnel_clients_t *table(void)
{
    static funnel_clients_t *t;
    if (!t) {
        uint8_t key[32];
        char z85[41], text[256], err[256];
        memset(key, 'K', sizeof key);
        FUZZ_CHECK(zmq_z85_encode(z85, key, sizeof key));
        snprintf(text, sizeof text, "clients = ( { name = \"billing\"; public_key = \"%s\"; } );",
                 z85);
        FUZZ_CHECK(funnel_clients_parse(text, "fuzz", &t, err, sizeof err) == 0);
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    funnel_frame_t frames[MAX_FRAMES] = {{NULL, 0}};
    size_t n = fuzz_frames(data, size, frames, MAX_FRAMES);
    funnel_zap_answer_t a;
    funnel_zap_answer(table(), frames, n, &a);
    FUZZ_CHECK(a.status_code && strlen(a.status_code) == 3 && a.status_text[0]);
    if (n >= 2)
        FUZZ_CHECK(a.request_id.data == frames[1].data && a.request_id.len == frames[1].len);
    else
        FUZZ_CHECK(a.request_id.len == 0);
    if (a.outcome == FUNNEL_ZAP_ALLOWED) {
        uint8_t key[32];
        memset(key, 'K', sizeof key);
        FUZZ_CHECK(!strcmp(a.status_code, "200") && !strcmp(a.user_id, "billing"));
        FUZZ_CHECK(n == 7 && frames[5].len == 5 && !memcmp(frames[5].data, "CURVE", 5));
        FUZZ_CHECK(frames[6].len == 32 && !memcmp(frames[6].data, key, 32));
    } else {
        FUZZ_CHECK(a.outcome == FUNNEL_ZAP_DENIED || a.outcome == FUNNEL_ZAP_MALFORMED);
        FUZZ_CHECK(strcmp(a.status_code, "200") && a.user_id[0] == '\0');
    }
    return 0;
}
