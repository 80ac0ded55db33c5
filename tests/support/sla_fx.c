/* sla_fx.c — see sla_fx.h. */
#include "sla_fx.h"

#include <criterion/criterion.h>
#include <libconfig.h>
#include <stdio.h>
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

/* A body message of the given descriptor, initialised, owned by env once linked. */
static void *body_new(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    cr_assert_not_null(m);
    protobuf_c_message_init(d, m);
    return m;
}

funnel_envelope_t *fx_req_opened(const char *id, const char *req, const char *kind,
                                 const char *queue, int priority, const char *owner, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__RequestOpened *o = body_new(&funnel__v1__request_opened__descriptor);
    o->request_id = strdup(req);
    o->from_team = strdup("sales");
    o->to_team = strdup("marketing");
    o->kind = strdup(kind);
    o->queue = strdup(queue);
    o->priority = priority;
    o->owner = strdup(owner);
    o->subject = strdup("a request");
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED;
    env->request_opened = o;
    return env;
}

funnel_envelope_t *fx_req_assigned(const char *id, const char *req, const char *owner, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__RequestAssigned *a = body_new(&funnel__v1__request_assigned__descriptor);
    a->request_id = strdup(req);
    a->owner = strdup(owner);
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_REQUEST_ASSIGNED;
    env->request_assigned = a;
    return env;
}

funnel_envelope_t *fx_req_answered(const char *id, const char *req, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__RequestAnswered *a = body_new(&funnel__v1__request_answered__descriptor);
    a->request_id = strdup(req);
    a->by = strdup("mkt-petrova");
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_REQUEST_ANSWERED;
    env->request_answered = a;
    return env;
}

funnel_envelope_t *fx_req_closed(const char *id, const char *req, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__RequestClosed *c = body_new(&funnel__v1__request_closed__descriptor);
    c->request_id = strdup(req);
    c->resolution = FUNNEL__V1__RESOLUTION__DONE;
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_REQUEST_CLOSED;
    env->request_closed = c;
    return env;
}

funnel_envelope_t *fx_req_reopened(const char *id, const char *req, int64_t at)
{
    funnel_envelope_t *env = envelope(id, at);
    Funnel__V1__RequestReopened *r = body_new(&funnel__v1__request_reopened__descriptor);
    r->request_id = strdup(req);
    env->body_case = FUNNEL__V1__ENVELOPE__BODY_REQUEST_REOPENED;
    env->request_reopened = r;
    return env;
}

int fx_sla_cfg_parse(const char *body, funnel_sla_config_t *cfg, char *err, size_t err_len)
{
    config_t lc;
    char *text = NULL;
    cr_assert(asprintf(&text, "sla = { %s };", body) > 0);
    config_init(&lc);
    cr_assert_eq(config_read_string(&lc, text), CONFIG_TRUE, "%s", config_error_text(&lc));
    err[0] = '\0';
    int rc = funnel_sla_config_parse(config_lookup(&lc, "sla"), cfg, err, err_len);
    config_destroy(&lc);
    free(text);
    return rc;
}

void fx_sla_cfg_set(const char *body, funnel_sla_config_t *cfg)
{
    char err[512];
    int rc = fx_sla_cfg_parse(body, cfg, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
}

void fx_permutation(size_t n, size_t k, size_t *idx)
{
    size_t pool[8], left = n;
    for (size_t i = 0; i < n; i++)
        pool[i] = i;
    for (size_t i = 0; i < n; i++) {
        size_t f = 1;
        for (size_t j = 2; j < left; j++)
            f *= j;
        size_t pick = k / f;
        k %= f;
        idx[i] = pool[pick];
        memmove(&pool[pick], &pool[pick + 1], (left - pick - 1) * sizeof pool[0]);
        left--;
    }
}
