/* ledger_fx.c — see ledger_fx.h. */
#include "ledger_fx.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static char *copy(const char *s)
{
    char *p = strdup(s);
    cr_assert_not_null(p);
    return p;
}

/* An envelope with the common fields set; the caller attaches the body. */
static funnel_envelope_t *envelope(const char *event_id, int64_t at_ms)
{
    funnel_envelope_t *env = calloc(1, sizeof *env);
    cr_assert_not_null(env);
    funnel__v1__envelope__init(env);
    env->event_id = copy(event_id);
    env->occurred_at_ms = at_ms;
    env->source = copy("test");
    return env;
}

funnel_envelope_t *fx_handoff(const char *event_id, const char *client, const char *rep,
                              const char *am, int64_t at_ms)
{
    funnel_envelope_t *env = envelope(event_id, at_ms);
    Funnel__V1__ClientHandedOff *h = calloc(1, sizeof *h);
    cr_assert_not_null(h);
    funnel__v1__client_handed_off__init(h);
    h->client_id = copy(client);
    h->lead_id = copy(client);
    h->from_rep = copy(rep);
    if (am[0])
        h->account_manager = copy(am);
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF;
    env->client_handed_off = h;
    return env;
}

funnel_envelope_t *fx_refund(const char *event_id, const char *refund_id, const char *payment_id,
                             const char *client, int64_t minor, const char *currency, int64_t at_ms)
{
    funnel_envelope_t *env = envelope(event_id, at_ms);
    Funnel__V1__PaymentRefunded *r = calloc(1, sizeof *r);
    Funnel__V1__Money *m = calloc(1, sizeof *m);
    cr_assert(r && m);
    funnel__v1__payment_refunded__init(r);
    funnel__v1__money__init(m);
    r->refund_id = copy(refund_id);
    r->payment_id = copy(payment_id);
    r->client_id = copy(client);
    m->minor = minor;
    m->currency = copy(currency);
    r->amount = m;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED;
    env->payment_refunded = r;
    return env;
}

funnel_envelope_t *fx_commission_paid(const char *event_id, const char *payout_id, const char *rep,
                                      int64_t through_ms, int64_t at_ms)
{
    funnel_envelope_t *env = envelope(event_id, at_ms);
    Funnel__V1__CommissionPaid *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    funnel__v1__commission_paid__init(p);
    p->payout_id = copy(payout_id);
    p->rep = copy(rep);
    p->through_ms = through_ms;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID;
    env->commission_paid = p;
    return env;
}

int64_t fx_json_minor(const json_t *v)
{
    const char *s = json_string_value(v);
    cr_assert_not_null(s, "an amount is not a JSON string");
    char *end;
    long long n = strtoll(s, &end, 10);
    cr_assert(*s && !*end, "'%s' is not a decimal integer", s);
    return n;
}
