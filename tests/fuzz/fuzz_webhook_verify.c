/* fuzz_webhook_verify.c — the webhook signature headers (adapters/webhook/verify.c): Stripe's
 * "t=...,v1=..." and HubSpot's v3 signature with its millisecond timestamp.
 *
 * Input: 's' then Stripe-Signature NUL body, or 'h' then timestamp NUL signature NUL URI NUL
 * body. The secrets are fixed, so a seed signed with them reaches the accepting path.
 * Invariant: a refusal always says why. */
#include "fuzz.h"

#include "webhook.h"

#include "funnel/error.h"

#define STRIPE_SECRET  "whsec_fuzz"
#define HUBSPOT_SECRET "hs-fuzz"

static void check_result(int rc, const char *why)
{
    FUZZ_CHECK(rc == 0 || rc == FUNNEL_EINVAL);
    FUZZ_CHECK(rc == 0 || why[0]);
}

static void stripe(const uint8_t *data, size_t size)
{
    fuzz_piece_t header = {0}, body = {0};
    fuzz_take(&data, &size, &header);
    body.data = data;
    body.len = size;
    char *h = fuzz_strndup(header.data, header.len);
    char *b = fuzz_strndup(body.data, body.len), why[256] = "";
    FUZZ_CHECK(h && b);
    int rc = funnel_stripe_verify(STRIPE_SECRET, h, b, body.len, FUZZ_NOW_MS / 1000, 300, why,
                                  sizeof why);
    check_result(rc, why);
    free(b);
    free(h);
}

static void hubspot(const uint8_t *data, size_t size)
{
    fuzz_piece_t ts = {0}, sig = {0}, uri = {0};
    fuzz_take(&data, &size, &ts);
    fuzz_take(&data, &size, &sig);
    fuzz_take(&data, &size, &uri);
    char *t = fuzz_strndup(ts.data, ts.len), *s = fuzz_strndup(sig.data, sig.len);
    char *u = fuzz_strndup(uri.data, uri.len), *b = fuzz_strndup(data, size), why[256] = "";
    FUZZ_CHECK(t && s && u && b);
    int rc = funnel_hubspot_verify(HUBSPOT_SECRET, "POST", u, b, size, t, s, FUZZ_NOW_MS,
                                   300 * 1000, why, sizeof why);
    check_result(rc, why);
    free(b);
    free(u);
    free(s);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    if (data[0] == 's')
        stripe(data + 1, size - 1);
    else if (data[0] == 'h')
        hubspot(data + 1, size - 1);
    return 0;
}
