/* attribution_model.c — the nine attribution models as pure integer functions.
 *
 * Nothing here touches money: the models produce relative weights and funnel_money_split turns
 * them into minor units. Weights are integers so that the result is the same on every machine;
 * even time decay is computed in fixed point. */
#include "funnel/attribution.h"
#include "funnel/error.h"

#include <string.h>

static const char *const model_names[FUNNEL_ATTR_MODEL_COUNT_] = {
    [FUNNEL_ATTR_FIRST_TOUCH] = "first_touch", [FUNNEL_ATTR_LAST_TOUCH] = "last_touch",
    [FUNNEL_ATTR_LINEAR] = "linear",           [FUNNEL_ATTR_U_SHAPED] = "u_shaped",
    [FUNNEL_ATTR_W_SHAPED] = "w_shaped",       [FUNNEL_ATTR_FULL_PATH] = "full_path",
    [FUNNEL_ATTR_TIME_DECAY] = "time_decay",   [FUNNEL_ATTR_J_SHAPED] = "j_shaped",
    [FUNNEL_ATTR_INVERSE_J] = "inverse_j",
};

const char *funnel_attribution_model_name(funnel_attribution_model_t model)
{
    if ((unsigned)model >= FUNNEL_ATTR_MODEL_COUNT_)
        return NULL;
    return model_names[model];
}

int funnel_attribution_model_parse(const char *name, funnel_attribution_model_t *out)
{
    for (unsigned m = 0; name && m < FUNNEL_ATTR_MODEL_COUNT_; m++)
        if (strcmp(name, model_names[m]) == 0) {
            *out = (funnel_attribution_model_t)m;
            return 0;
        }
    return FUNNEL_ENOTFOUND;
}

/* The last touch at or before t; `fallback` when t precedes every touch. */
static size_t last_at_or_before(const funnel_attribution_journey_t *j, int64_t t, size_t fallback)
{
    size_t found = fallback;
    for (size_t i = 0; i < j->n && j->touch_at_ms[i] <= t; i++)
        found = i;
    return found;
}

funnel_attribution_moments_t funnel_attribution_moments_find(const funnel_attribution_journey_t *j)
{
    funnel_attribution_moments_t m = {.first = 0, .last = j->n ? j->n - 1 : 0};
    m.created = j->has_created ? last_at_or_before(j, j->created_at_ms, 0) : 0;
    m.sql = j->has_sql ? last_at_or_before(j, j->sql_at_ms, 0) : m.last;
    return m;
}

/* A position-based model: per-mille shares of its key moments plus the middle share. */
typedef struct shape {
    unsigned first, created, sql, last, middle;
} shape_t;

static const shape_t shapes[FUNNEL_ATTR_MODEL_COUNT_] = {
    [FUNNEL_ATTR_FIRST_TOUCH] = {1000, 0, 0, 0, 0},
    [FUNNEL_ATTR_LAST_TOUCH] = {0, 0, 0, 1000, 0},
    [FUNNEL_ATTR_U_SHAPED] = {400, 400, 0, 0, 200},
    [FUNNEL_ATTR_W_SHAPED] = {300, 300, 300, 0, 100},
    [FUNNEL_ATTR_FULL_PATH] = {225, 225, 225, 225, 100},
    [FUNNEL_ATTR_J_SHAPED] = {200, 0, 0, 600, 200},
    [FUNNEL_ATTR_INVERSE_J] = {600, 0, 0, 200, 200},
};

/* Moment shares add up on the touch they fall on; the middle share is split equally over the
 * touches that carry no moment share. To stay in integers every moment share is multiplied by
 * the number of middle touches m, and each middle touch gets the middle share itself: the
 * ratios are those of the model. With m == 0 the middle share is left out and the moment
 * shares keep their proportions. */
static void shape_weights(const shape_t *s, const funnel_attribution_moments_t *mo, size_t n,
                          uint64_t *w)
{
    memset(w, 0, n * sizeof *w);
    w[mo->first] += s->first;
    w[mo->created] += s->created;
    w[mo->sql] += s->sql;
    w[mo->last] += s->last;
    size_t middle = 0;
    for (size_t i = 0; i < n; i++)
        middle += w[i] == 0;
    if (middle == 0 || s->middle == 0)
        return;
    for (size_t i = 0; i < n; i++)
        w[i] = w[i] ? w[i] * middle : s->middle;
}

/* 2^62 * 2^(-2^-k) for k = 1..32, rounded to nearest (computed with 60-digit decimals). */
static const uint64_t decay_steps[32] = {
    3260954456333195553ULL, 3877950241171266237ULL, 4228934724888366668ULL, 4416165660797809419ULL,
    4512867096753504463ULL, 4562008997483360349ULL, 4586780255215411731ULL, 4599216278082138665ULL,
    4605446927862164404ULL, 4608565417332308035ULL, 4610125453837388245ULL, 4610905670110601999ULL,
    4611295827762151833ULL, 4611490918967884501ULL, 4611588467665893036ULL, 4611637242788701951ULL,
    4611661630543559956ULL, 4611673824469352645ULL, 4611679921444339948ULL, 4611682969934856344ULL,
    4611684494180870228ULL, 4611685256304066092ULL, 4611685637365711255ULL, 4611685827896545643ULL,
    4611685923161965790ULL, 4611685970794676601ULL, 4611685994611032191ULL, 4611686006519210032ULL,
    4611686012473298964ULL, 4611686015450343433ULL, 4611686016938865668ULL, 4611686017683126786ULL,
};

#define Q62 ((uint64_t)1 << 62)

/* age/half_life = whole + frac; 2^-whole is a shift, 2^-frac the product of the steps whose
 * bits are set in frac (taken to 32 binary places). */
uint64_t funnel_attribution_decay_q62(int64_t age_ms, int64_t half_life_ms)
{
    if (half_life_ms <= 0)
        return 0;
    if (age_ms < 0)
        age_ms = 0;
    int64_t whole = age_ms / half_life_ms;
    if (whole >= 62)
        return 0;
    uint64_t frac = (uint64_t)(((unsigned __int128)(uint64_t)(age_ms % half_life_ms) << 32) /
                               (uint64_t)half_life_ms);
    uint64_t w = Q62;
    for (int k = 0; k < 32; k++)
        if (frac & ((uint64_t)1 << (31 - k)))
            w = (uint64_t)(((unsigned __int128)w * decay_steps[k]) >> 62);
    return w >> whole;
}

int funnel_attribution_weights(funnel_attribution_model_t model,
                               const funnel_attribution_journey_t *j, uint64_t *weights)
{
    if (!j || j->n == 0 || (unsigned)model >= FUNNEL_ATTR_MODEL_COUNT_ || j->half_life_ms <= 0)
        return FUNNEL_EINVAL;
    if (model == FUNNEL_ATTR_LINEAR) {
        for (size_t i = 0; i < j->n; i++)
            weights[i] = 1;
        return 0;
    }
    if (model == FUNNEL_ATTR_TIME_DECAY) {
        /* Ages are taken from the youngest touch instead of the handoff: the ratios are the
         * same, and the youngest touch always keeps the full weight 2^62, so a journey never
         * decays to all zeros however long ago it was. */
        int64_t youngest = j->touch_at_ms[j->n - 1];
        for (size_t i = 0; i < j->n; i++)
            weights[i] =
                funnel_attribution_decay_q62(youngest - j->touch_at_ms[i], j->half_life_ms);
        return 0;
    }
    funnel_attribution_moments_t mo = funnel_attribution_moments_find(j);
    shape_weights(&shapes[model], &mo, j->n, weights);
    return 0;
}
