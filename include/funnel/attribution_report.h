/* attribution_report.h — what a reader of the attribution engine's postings needs: the models'
 * names and order, and the table (funnelctl's `attribution` report). The engine and the models'
 * arithmetic are daemon/engines/attribution/attribution.h. */
#ifndef FUNNEL_ATTRIBUTION_REPORT_H
#define FUNNEL_ATTRIBUTION_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct Funnel__V1__AttributionCredited;

/* Stable order: the report's columns and the order credits are posted in. */
typedef enum funnel_attribution_model {
    FUNNEL_ATTR_FIRST_TOUCH,
    FUNNEL_ATTR_LAST_TOUCH,
    FUNNEL_ATTR_LINEAR,
    FUNNEL_ATTR_U_SHAPED,
    FUNNEL_ATTR_W_SHAPED,
    FUNNEL_ATTR_FULL_PATH,
    FUNNEL_ATTR_TIME_DECAY,
    FUNNEL_ATTR_J_SHAPED,
    FUNNEL_ATTR_INVERSE_J,
    FUNNEL_ATTR_MODEL_COUNT_
} funnel_attribution_model_t;

#define FUNNEL_ATTR_ALL_MODELS   ((1u << FUNNEL_ATTR_MODEL_COUNT_) - 1)
#define FUNNEL_ATTR_UNATTRIBUTED "(unattributed)"

/* "first_touch", ...; NULL for a value out of range. Static string. */
const char *funnel_attribution_model_name(funnel_attribution_model_t model);
/* 0 and *out, or FUNNEL_ENOTFOUND for an unknown name. */
int funnel_attribution_model_parse(const char *name, funnel_attribution_model_t *out);

/* The read side, for funnelctl: attr_postings has one row per credit with columns model,
 * campaign, source, medium, channel, currency, credit (minor units) and at_ms (event time of
 * the payment or refund). From schema 4 it is a view over attr_posts, one row per entry and
 * line with the credit of model k in column c<k>, indexed by at_ms, joined to attr_lines by
 * line_id: readers of a period read attr_posts. Version of the module's schema in a database:
 * see funnel_store_module_version(store, "attribution"). */
#define FUNNEL_ATTR_POSTINGS_TABLE "attr_postings"

/* One credit line of an attribution.credited message, as funneld posted it. */
typedef struct funnel_attr_credit {
    funnel_attribution_model_t model;
    uint32_t touch;        /* index into the message's touches */
    int64_t minor;         /* in `currency`; never zero */
    const char *currency;  /* borrowed from the message */
    int32_t weight_ppm;    /* the touch's share under the model, parts per million */
    bool reversal;         /* cancels a credit posted earlier */
    const char *client_id; /* borrowed; the message's client_id unless the run names another */
} funnel_attr_credit_t;

/* The credits of a message in posting order, its runs unpacked (docs/protocol.md): *out is
 * malloc'ed (free it), its strings point into msg. 0, FUNNEL_EINVAL for a malformed message (an
 * unknown model, lists of unequal length, a touch index past the touches) or FUNNEL_ENOMEM. */
int funnel_attribution_credits(const struct Funnel__V1__AttributionCredited *msg,
                               funnel_attr_credit_t **out, size_t *n);

#endif
