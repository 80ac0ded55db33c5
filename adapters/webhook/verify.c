/* verify.c — webhook signatures: Stripe (hex HMAC-SHA256 of "t.body") and HubSpot v3 (base64
 * HMAC-SHA256 of method + URI + body + timestamp). The HMAC is OpenSSL's; only the framing of
 * what is signed lives here. Comparisons are constant-time so a forger learns nothing from
 * timing. */
#include "webhook.h"

#include "funnel/error.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HMAC-SHA256 over the concatenation of parts; out gets 32 bytes. Returns 0 or FUNNEL_ENOMEM. */
static int hmac_parts(const char *secret, const void *const *parts, const size_t *lens, size_t n,
                      unsigned char out[32])
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    unsigned char *msg = malloc(total ? total : 1);
    if (!msg)
        return FUNNEL_ENOMEM;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(msg + at, parts[i], lens[i]);
        at += lens[i];
    }
    unsigned int len = 32;
    unsigned char *r = HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, total, out, &len);
    free(msg);
    return r && len == 32 ? 0 : FUNNEL_ENOMEM;
}

/* Parses a decimal integer that must fill [s, s+len). */
static int parse_int(const char *s, size_t len, int64_t *out)
{
    char buf[24];
    if (!len || len >= sizeof buf)
        return FUNNEL_EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return FUNNEL_EINVAL;
    *out = v;
    return 0;
}

static bool within(int64_t t, int64_t now, int64_t tolerance)
{
    return t >= now - tolerance && t <= now + tolerance;
}

int funnel_stripe_verify(const char *secret, const char *header, const char *body, size_t len,
                         int64_t now_s, int64_t tolerance_s, char *why, size_t why_len)
{
    const char *t = NULL, *p = header;
    size_t t_len = 0;
    if (!header || !*header) {
        snprintf(why, why_len, "missing Stripe-Signature header");
        return FUNNEL_EINVAL;
    }
    /* First pass: the timestamp, needed before any v1 can be checked. */
    while (*p) {
        size_t item = strcspn(p, ",");
        if (item > 2 && p[0] == 't' && p[1] == '=') {
            t = p + 2;
            t_len = item - 2;
        }
        p += item + (p[item] == ',');
    }
    int64_t ts;
    if (!t || parse_int(t, t_len, &ts)) {
        snprintf(why, why_len, "Stripe-Signature has no valid timestamp");
        return FUNNEL_EINVAL;
    }
    if (!within(ts, now_s, tolerance_s)) {
        snprintf(why, why_len, "Stripe-Signature timestamp %lld is outside the %llds tolerance",
                 (long long)ts, (long long)tolerance_s);
        return FUNNEL_EINVAL;
    }
    unsigned char mac[32];
    char hex[65];
    const void *parts[] = {t, ".", body};
    size_t lens[] = {t_len, 1, len};
    if (hmac_parts(secret, parts, lens, 3, mac))
        return FUNNEL_ENOMEM;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    bool ok = false;
    for (p = header; *p;) {
        size_t item = strcspn(p, ",");
        /* Every v1 is compared, so a match does not end early and leak which one matched. */
        if (item == 3 + 64 && !strncmp(p, "v1=", 3))
            ok |= CRYPTO_memcmp(p + 3, hex, 64) == 0;
        p += item + (p[item] == ',');
    }
    if (!ok)
        snprintf(why, why_len, "no Stripe-Signature v1 signature matches");
    return ok ? 0 : FUNNEL_EINVAL;
}

int funnel_hubspot_verify(const char *secret, const char *method, const char *uri, const char *body,
                          size_t len, const char *timestamp, const char *signature, int64_t now_ms,
                          int64_t tolerance_ms, char *why, size_t why_len)
{
    int64_t ts;
    if (!signature || !timestamp) {
        snprintf(why, why_len, "missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp");
        return FUNNEL_EINVAL;
    }
    if (parse_int(timestamp, strlen(timestamp), &ts)) {
        snprintf(why, why_len, "X-HubSpot-Request-Timestamp is not a number");
        return FUNNEL_EINVAL;
    }
    /* HubSpot only says "older than 5 minutes"; a stamp far in the future is as suspect. */
    if (!within(ts, now_ms, tolerance_ms)) {
        snprintf(why, why_len, "X-HubSpot-Request-Timestamp %lld is outside the %llds tolerance",
                 (long long)ts, (long long)(tolerance_ms / 1000));
        return FUNNEL_EINVAL;
    }
    unsigned char mac[32];
    unsigned char b64[48]; /* 4 * ceil(32 / 3) + NUL = 45 */
    const void *parts[] = {method, uri, body, timestamp};
    size_t lens[] = {strlen(method), strlen(uri), len, strlen(timestamp)};
    if (hmac_parts(secret, parts, lens, 4, mac))
        return FUNNEL_ENOMEM;
    int n = EVP_EncodeBlock(b64, mac, 32);
    bool ok = strlen(signature) == (size_t)n && CRYPTO_memcmp(signature, b64, (size_t)n) == 0;
    if (!ok)
        snprintf(why, why_len, "X-HubSpot-Signature-v3 does not match");
    return ok ? 0 : FUNNEL_EINVAL;
}
