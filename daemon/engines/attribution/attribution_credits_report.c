/* attribution_credits_report.c — the credit lines of an attribution.credited message: its runs
 * (consecutive credits of one model, direction, currency and client, packed) unpacked into the
 * lines funneld posted, for any reader of the output stream. */
#include "funnel/attribution_report.h"
#include "funnel/codec.h"
#include "funnel/error.h"

#include <stdlib.h>

/* 0 when run u is well formed for a message of n_touches touches. */
static int run_check(const Funnel__V1__AttributionRun *u, size_t n_touches)
{
    if ((unsigned)u->model >= FUNNEL_ATTR_MODEL_COUNT_ || u->n_weight_ppm != u->n_minor ||
        (u->n_touch && u->n_touch != u->n_minor))
        return FUNNEL_EINVAL;
    for (size_t k = 0; k < u->n_minor; k++)
        if ((u->n_touch ? u->touch[k] : k) >= n_touches)
            return FUNNEL_EINVAL;
    return 0;
}

int funnel_attribution_credits(const Funnel__V1__AttributionCredited *msg,
                               funnel_attr_credit_t **out, size_t *n)
{
    size_t total = 0;
    *out = NULL;
    *n = 0;
    for (size_t i = 0; i < msg->n_runs; i++) {
        if (run_check(msg->runs[i], msg->n_touches))
            return FUNNEL_EINVAL;
        total += msg->runs[i]->n_minor;
    }
    funnel_attr_credit_t *c = malloc((total ? total : 1) * sizeof *c);
    if (!c)
        return FUNNEL_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < msg->n_runs; i++) {
        const Funnel__V1__AttributionRun *u = msg->runs[i];
        const char *currency = u->currency && u->currency[0] ? u->currency : msg->currency;
        const char *client = u->client_id && u->client_id[0] ? u->client_id : msg->client_id;
        for (size_t j = 0; j < u->n_minor; j++)
            c[k++] = (funnel_attr_credit_t){.model = (funnel_attribution_model_t)u->model,
                                            .touch = u->n_touch ? u->touch[j] : (uint32_t)j,
                                            .minor = u->minor[j],
                                            .currency = currency ? currency : "",
                                            .weight_ppm = u->weight_ppm[j],
                                            .reversal = u->reversal,
                                            .client_id = client ? client : ""};
    }
    *out = c;
    *n = total;
    return 0;
}
