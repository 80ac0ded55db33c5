/* sla_fx.c — see sla_fx.h. */
#include "sla_fx.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static funnel_envelope_t *envelope(const char *event_id, int64_t at)
{
    funnel_envelope_t *env = calloc(1, sizeof *env);
    cr_assert_not_null(env);
    funnel__v1__envelope__init(env);
    env->event_id = strdup(event_id);
    env->occurred_at_ms = at;
    env->source = strdup("test");
    return env;
}

funnel_envelope_t *fx_qualified(const char *id, const char *lead, int stage, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__LeadQualified *q = calloc(1, sizeof *q);
    funnel__v1__lead_qualified__init(q);
    q->lead_id = strdup(lead);
    q->stage = stage;
    q->owner = strdup("rep-anna");
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED;
    env->lead_qualified = q;
    return env;
}

funnel_envelope_t *fx_contacted(const char *id, const char *lead, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__LeadContacted *c = calloc(1, sizeof *c);
    funnel__v1__lead_contacted__init(c);
    c->lead_id = strdup(lead);
    c->rep = strdup("rep-anna");
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED;
    env->lead_contacted = c;
    return env;
}

funnel_envelope_t *fx_touched(const char *id, const char *lead, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__LeadTouched *t = calloc(1, sizeof *t);
    Funnel__V1__Touch *touch = calloc(1, sizeof *touch);
    funnel__v1__lead_touched__init(t);
    funnel__v1__touch__init(touch);
    t->lead_id = strdup(lead);
    touch->channel = strdup("email");
    touch->at_ms = at;
    t->touch = touch;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED;
    env->lead_touched = t;
    return env;
}

funnel_envelope_t *fx_closed(const char *id, const char *lead, int outcome, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__LeadClosed *c = calloc(1, sizeof *c);
    funnel__v1__lead_closed__init(c);
    c->lead_id = strdup(lead);
    c->outcome = outcome;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED;
    env->lead_closed = c;
    return env;
}

funnel_envelope_t *fx_acked(const char *id, const char *sla_id, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__EscalationAcknowledged *a = calloc(1, sizeof *a);
    funnel__v1__escalation_acknowledged__init(a);
    a->sla_id = strdup(sla_id);
    a->by = strdup("oncall-bob");
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED;
    env->escalation_acknowledged = a;
    return env;
}
