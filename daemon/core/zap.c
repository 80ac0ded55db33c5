/* zap.c — one ZAP request, one answer (zap.h). */
#include "zap.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

static bool frame_is(const funnel_frame_t *f, const char *s)
{
    return f->len == strlen(s) && memcmp(f->data, s, f->len) == 0;
}

static void answer(funnel_zap_answer_t *out, funnel_zap_outcome_t outcome, const char *text)
{
    static const char *const codes[] = {"200", "400", "500"};
    out->outcome = outcome;
    out->status_code = codes[outcome];
    snprintf(out->status_text, sizeof out->status_text, "%s", text);
}

void funnel_zap_answer(const funnel_clients_t *clients, const funnel_frame_t *frames, size_t n,
                       funnel_zap_answer_t *out)
{
    memset(out, 0, sizeof *out);
    if (n >= 2)
        out->request_id = frames[1];
    if (n < 6 || !frame_is(&frames[0], "1.0")) {
        answer(out, FUNNEL_ZAP_MALFORMED, "not a ZAP 1.0 request");
        return;
    }
    if (!frame_is(&frames[5], "CURVE")) {
        answer(out, FUNNEL_ZAP_DENIED, "only CURVE clients are admitted");
        return;
    }
    if (n != 7 || frames[6].len != FUNNEL_CLIENT_KEY_BYTES) {
        answer(out, FUNNEL_ZAP_MALFORMED, "a CURVE request carries one 32-byte key");
        return;
    }
    uint8_t key[FUNNEL_CLIENT_KEY_BYTES];
    memcpy(key, frames[6].data, sizeof key);
    zmq_z85_encode(out->key_z85, key, sizeof key);
    const funnel_clients_entry_t *c = funnel_clients_by_key(clients, key);
    if (!c) {
        answer(out, FUNNEL_ZAP_DENIED, "unknown key");
        return;
    }
    snprintf(out->user_id, sizeof out->user_id, "%s", c->name);
    answer(out, FUNNEL_ZAP_ALLOWED, "OK");
}
