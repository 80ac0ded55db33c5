/* attribution_model.c — the nine attribution models as pure integer functions.
 *
 * Nothing here touches money: the models produce relative weights and funnel_money_split turns
 * them into minor units. Weights are integers so that the result is the same on every machine;
 * even time decay is computed in fixed point. */
#include "attribution.h"
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

/* 2^64 * 2^(-2^-k) for k = 1..63, rounded to nearest (computed with 100-digit decimals); for
 * k >= 64 the factor rounds to 1. */
static const uint64_t decay_steps[63] = {
    13043817825332782212ULL, 15511800964685064948ULL, 16915738899553466671ULL,
    17664662643191237676ULL, 18051468387014017850ULL, 18248035989933441397ULL,
    18347121020861646924ULL, 18396865112328554661ULL, 18421787711448657618ULL,
    18434261669329232140ULL, 18440501815349552982ULL, 18443622680442407998ULL,
    18445183311048607332ULL, 18445963675871538004ULL, 18446353870663572145ULL,
    18446548971154807802ULL, 18446646522174239825ULL, 18446695297877410579ULL,
    18446719685777359791ULL, 18446731879739425374ULL, 18446737976723480912ULL,
    18446741025216264368ULL, 18446742549462845018ULL, 18446743311586182574ULL,
    18446743692647863159ULL, 18446743883178706404ULL, 18446743978444128764ULL,
    18446744026076840128ULL, 18446744049893195857ULL, 18446744061801373733ULL,
    18446744067755462673ULL, 18446744070732507144ULL, 18446744072221029380ULL,
    18446744072965290498ULL, 18446744073337421057ULL, 18446744073523486337ULL,
    18446744073616518976ULL, 18446744073663035296ULL, 18446744073686293456ULL,
    18446744073697922536ULL, 18446744073703737076ULL, 18446744073706644346ULL,
    18446744073708097981ULL, 18446744073708824799ULL, 18446744073709188207ULL,
    18446744073709369912ULL, 18446744073709460764ULL, 18446744073709506190ULL,
    18446744073709528903ULL, 18446744073709540259ULL, 18446744073709545938ULL,
    18446744073709548777ULL, 18446744073709550196ULL, 18446744073709550906ULL,
    18446744073709551261ULL, 18446744073709551439ULL, 18446744073709551527ULL,
    18446744073709551572ULL, 18446744073709551594ULL, 18446744073709551605ULL,
    18446744073709551610ULL, 18446744073709551613ULL, 18446744073709551615ULL,
};

/* w * s / 2^64 for w in Q127 (at most 2^127) and a factor s in Q64: the product is 191 bits, so
 * it is taken in two halves; floor is exact since w's high half times s is an integer. */
static unsigned __int128 q127_scale(unsigned __int128 w, uint64_t s)
{
    uint64_t hi = (uint64_t)(w >> 64), lo = (uint64_t)w;
    return (unsigned __int128)hi * s + (((unsigned __int128)lo * s) >> 64);
}

/* age/half_life = whole + frac; 2^-whole is a shift, 2^-frac the product of the steps whose
 * bits are set in frac (taken to 63 binary places). The product is kept in Q127, so its 63
 * truncations and the steps' roundings cost about 2^-58 relative in all; the Q62 result is
 * rounded once. That keeps every credit of a split within 1 minor unit of the real-valued split
 * for amounts up to 10^15 (a Q62 product carried ~34 good bits: 10^10 was already off). */
uint64_t funnel_attribution_decay_q62(int64_t age_ms, int64_t half_life_ms)
{
    if (half_life_ms <= 0)
        return 0;
    if (age_ms < 0)
        age_ms = 0;
    int64_t whole = age_ms / half_life_ms;
    if (whole >= 62)
        return 0;
    uint64_t frac = (uint64_t)(((unsigned __int128)(uint64_t)(age_ms % half_life_ms) << 63) /
                               (uint64_t)half_life_ms);
    unsigned __int128 w = (unsigned __int128)1 << 127;
    for (int k = 1; k <= 63; k++)
        if (frac & ((uint64_t)1 << (63 - k)))
            w = q127_scale(w, decay_steps[k - 1]);
    int shift = 65 + (int)whole; /* Q127 to Q62, then 2^-whole */
    return (uint64_t)((w + ((unsigned __int128)1 << (shift - 1))) >> shift);
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
