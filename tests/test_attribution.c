/* test_attribution.c — the attribution models, the largest-remainder split, and the engine
 * behind a real router and store: exact sums, refunds, the unattributed bucket, late arrivals in
 * every order, deterministic output, and the config section.
 *
 * Engine tests build a "world" (temporary database, router, engine) per run and feed it events
 * built from JSON; what the engine published is collected from the committed outbox. */
#include <criterion/criterion.h>

#include "attribution.h"
#include "funnel/report.h"
#include "config.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "funnel/money.h"
#include "router.h"
#include "store.h"
#include "config_fx.h"
#include "engine_fx.h"
#include "harness.h"
#include "sections.h"
#include "sql_fx.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY    86400000LL
#define T0     1700000000000LL /* the handoff of most journeys */
#define NOW_MS (T0 + 30 * DAY) /* arrival time: never used for attribution */
#define NM     FUNNEL_ATTR_MODEL_COUNT_

/* ---- the split ----------------------------------------------------------------------- */

static int64_t sum_of(const int64_t *v, size_t n)
{
    int64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

static void assert_parts(const int64_t *got, const int64_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "part %zu: got %lld, want %lld", i, (long long)got[i],
                     (long long)want[i]);
}

Test(split, one_minor_unit_goes_to_the_largest_remainder)
{
    uint64_t w[] = {1, 1, 1};
    int64_t p[3];
    cr_assert_eq(funnel_money_split(1, w, 3, p), 0);
    assert_parts(p, (int64_t[]){1, 0, 0}, 3); /* equal remainders: lowest index */
    uint64_t w2[] = {1, 5, 2};
    cr_assert_eq(funnel_money_split(1, w2, 3, p), 0);
    assert_parts(p, (int64_t[]){0, 1, 0}, 3);
}

Test(split, primes_sum_exactly_and_ties_go_to_the_earlier_part)
{
    uint64_t w[] = {1, 1, 1, 1, 1, 1, 1};
    int64_t p[7];
    cr_assert_eq(funnel_money_split(1000003, w, 7, p), 0);
    /* 1000003 = 7 * 142857 + 4: the first four get one more */
    assert_parts(p, (int64_t[]){142858, 142858, 142858, 142858, 142857, 142857, 142857}, 7);
    uint64_t w2[] = {13, 17, 19, 23};
    cr_assert_eq(funnel_money_split(97, w2, 4, p), 0);
    cr_assert_eq(sum_of(p, 4), 97);
    /* 97*13/72 = 17.51, 97*17/72 = 22.90, 97*19/72 = 25.60, 97*23/72 = 30.99 */
    assert_parts(p, (int64_t[]){17, 23, 26, 31}, 4);
}

Test(split, int64_limits_and_negative_amounts)
{
    uint64_t w[] = {1, 2, 3};
    int64_t p[3], q[3];
    cr_assert_eq(funnel_money_split(INT64_MAX, w, 3, p), 0);
    cr_assert_eq((uint64_t)p[0] + (uint64_t)p[1] + (uint64_t)p[2], (uint64_t)INT64_MAX);
    cr_assert_eq(funnel_money_split(-INT64_MAX, w, 3, q), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(q[i], -p[i], "split(-a) must be -split(a)");
    cr_assert_eq(funnel_money_split(INT64_MIN, w, 3, p), 0);
    cr_assert_eq((uint64_t)p[0] + (uint64_t)p[1] + (uint64_t)p[2], (uint64_t)INT64_MIN);
    uint64_t one[] = {5};
    cr_assert_eq(funnel_money_split(INT64_MIN, one, 1, p), 0);
    cr_assert_eq(p[0], INT64_MIN);
    uint64_t huge[] = {UINT64_MAX, UINT64_MAX, 1};
    cr_assert_eq(funnel_money_split(INT64_MAX, huge, 3, p), 0);
    cr_assert_eq((uint64_t)p[0] + (uint64_t)p[1] + (uint64_t)p[2], (uint64_t)INT64_MAX);
    cr_assert_eq(p[2], 0);
}

Test(split, zero_weights_get_nothing_and_bad_input_is_refused)
{
    uint64_t w[] = {0, 3, 0};
    int64_t p[3] = {9, 9, 9};
    cr_assert_eq(funnel_money_split(10, w, 3, p), 0);
    assert_parts(p, (int64_t[]){0, 10, 0}, 3);
    uint64_t z[] = {0, 0};
    cr_assert_eq(funnel_money_split(10, z, 2, p), FUNNEL_EINVAL);
    cr_assert_eq(funnel_money_split(10, w, 0, p), FUNNEL_EINVAL);
    cr_assert_eq(funnel_money_split(0, w, 3, p), 0);
    assert_parts(p, (int64_t[]){0, 0, 0}, 3);
}

/* ---- the models ---------------------------------------------------------------------- */

/* The parts per million each model gives a journey. */
static void model_ppm(funnel_attribution_model_t m, const funnel_attribution_journey_t *j,
                      int64_t *ppm)
{
    uint64_t w[64];
    cr_assert_eq(funnel_attribution_weights(m, j, w), 0);
    cr_assert_eq(funnel_money_split(1000000, w, j->n, ppm), 0);
}

/* want[model][touch] in ppm; n touches. */
static void assert_models(const funnel_attribution_journey_t *j, const int64_t want[NM][8])
{
    for (int m = 0; m < NM; m++) {
        int64_t got[64];
        model_ppm(m, j, got);
        for (size_t i = 0; i < j->n; i++)
            cr_assert_eq(got[i], want[m][i], "%s touch %zu: got %lld ppm, want %lld",
                         funnel_attribution_model_name(m), i, (long long)got[i],
                         (long long)want[m][i]);
    }
}

/* A journey of n touches with a 7-day half-life; created/sql are the moments' times, or
 * NO_MOMENT when unknown. */
#define NO_MOMENT INT64_MIN
static funnel_attribution_journey_t journey_of(const int64_t *at, size_t n, int64_t created,
                                               int64_t sql)
{
    return (funnel_attribution_journey_t){.touch_at_ms = at,
                                          .n = n,
                                          .has_created = created != NO_MOMENT,
                                          .created_at_ms = created,
                                          .has_sql = sql != NO_MOMENT,
                                          .sql_at_ms = sql,
                                          .half_life_ms = 7 * DAY};
}

Test(models, one_touch_gets_everything_in_every_model)
{
    int64_t at[] = {T0 - DAY};
    funnel_attribution_journey_t j = journey_of(at, 1, NO_MOMENT, NO_MOMENT);
    int64_t want[NM][8];
    for (int m = 0; m < NM; m++)
        want[m][0] = 1000000;
    assert_models(&j, want);
    j.has_created = j.has_sql = true;
    j.created_at_ms = j.sql_at_ms = T0 - 50 * DAY; /* before the touch: falls back to first */
    assert_models(&j, want);
}

Test(models, two_touches_created_at_the_first)
{
    int64_t at[] = {T0 - 8 * DAY, T0 - DAY};
    funnel_attribution_journey_t j = journey_of(at, 2, at[0], NO_MOMENT);
    const int64_t want[NM][8] = {
        [FUNNEL_ATTR_FIRST_TOUCH] = {1000000, 0},
        [FUNNEL_ATTR_LAST_TOUCH] = {0, 1000000},
        [FUNNEL_ATTR_LINEAR] = {500000, 500000},
        [FUNNEL_ATTR_U_SHAPED] = {800000, 200000},   /* the second is a middle touch */
        [FUNNEL_ATTR_W_SHAPED] = {666667, 333333},   /* sql unknown: the last touch */
        [FUNNEL_ATTR_FULL_PATH] = {500000, 500000},  /* 45% + 45%, no middle */
        [FUNNEL_ATTR_TIME_DECAY] = {333333, 666667}, /* one half-life apart */
        [FUNNEL_ATTR_J_SHAPED] = {250000, 750000},
        [FUNNEL_ATTR_INVERSE_J] = {750000, 250000},
    };
    assert_models(&j, want);
}

Test(models, two_touches_created_at_the_second)
{
    int64_t at[] = {T0 - 8 * DAY, T0 - DAY};
    funnel_attribution_journey_t j = journey_of(at, 2, at[1] + 1, at[0]);
    int64_t got[8];
    model_ppm(FUNNEL_ATTR_U_SHAPED, &j, got);
    assert_parts(got, (int64_t[]){500000, 500000}, 2);
    model_ppm(FUNNEL_ATTR_W_SHAPED, &j, got); /* first + sql on 0, created on 1 */
    assert_parts(got, (int64_t[]){666667, 333333}, 2);
}

Test(models, three_touches_with_every_moment)
{
    int64_t at[] = {T0 - 14 * DAY, T0 - 7 * DAY, T0};
    funnel_attribution_journey_t j = journey_of(at, 3, at[1], at[2]);
    const int64_t want[NM][8] = {
        [FUNNEL_ATTR_FIRST_TOUCH] = {1000000, 0, 0},
        [FUNNEL_ATTR_LAST_TOUCH] = {0, 0, 1000000},
        [FUNNEL_ATTR_LINEAR] = {333334, 333333, 333333},
        [FUNNEL_ATTR_U_SHAPED] = {400000, 400000, 200000},
        [FUNNEL_ATTR_W_SHAPED] = {333334, 333333, 333333},
        [FUNNEL_ATTR_FULL_PATH] = {250000, 250000, 500000}, /* sql and last coincide */
        /* 1/4 : 1/2 : 1 of 7/4 = 1/7, 2/7, 4/7 */
        [FUNNEL_ATTR_TIME_DECAY] = {142857, 285714, 571429},
        [FUNNEL_ATTR_J_SHAPED] = {200000, 200000, 600000},
        [FUNNEL_ATTR_INVERSE_J] = {600000, 200000, 200000},
    };
    assert_models(&j, want);
    /* created and sql on the same touch add their shares */
    j.sql_at_ms = at[1];
    int64_t got[8];
    model_ppm(FUNNEL_ATTR_W_SHAPED, &j, got);
    assert_parts(got, (int64_t[]){300000, 600000, 100000}, 3);
}

Test(models, many_touches_split_the_middle_equally)
{
    int64_t at[6];
    for (int i = 0; i < 6; i++)
        at[i] = T0 - (6 - i) * DAY;
    funnel_attribution_journey_t j = journey_of(at, 6, at[2], at[4] + 10);
    const int64_t want[NM][8] = {
        [FUNNEL_ATTR_FIRST_TOUCH] = {1000000, 0, 0, 0, 0, 0},
        [FUNNEL_ATTR_LAST_TOUCH] = {0, 0, 0, 0, 0, 1000000},
        [FUNNEL_ATTR_LINEAR] = {166667, 166667, 166667, 166667, 166666, 166666},
        [FUNNEL_ATTR_U_SHAPED] = {400000, 50000, 400000, 50000, 50000, 50000},
        [FUNNEL_ATTR_W_SHAPED] = {300000, 33334, 300000, 33333, 300000, 33333},
        [FUNNEL_ATTR_FULL_PATH] = {225000, 50000, 225000, 50000, 225000, 225000},
        [FUNNEL_ATTR_J_SHAPED] = {200000, 50000, 50000, 50000, 50000, 600000},
        [FUNNEL_ATTR_INVERSE_J] = {600000, 50000, 50000, 50000, 50000, 200000},
    };
    for (int m = 0; m < NM; m++) {
        if (m == FUNNEL_ATTR_TIME_DECAY)
            continue;
        int64_t got[8];
        model_ppm(m, &j, got);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(got[i], want[m][i], "%s touch %d: %lld", funnel_attribution_model_name(m),
                         i, (long long)got[i]);
    }
    /* a journey of 40 touches: every model still sums to 100% */
    int64_t many[40];
    for (int i = 0; i < 40; i++)
        many[i] = T0 - (40 - i) * 3600000LL;
    j.touch_at_ms = many;
    j.n = 40;
    for (int m = 0; m < NM; m++) {
        int64_t got[64];
        model_ppm(m, &j, got);
        cr_assert_eq(sum_of(got, 40), 1000000);
    }
}

Test(models, time_decay_matches_hand_computed_values)
{
    const int64_t h = 7 * DAY;
    cr_assert_eq(funnel_attribution_decay_q62(0, h), 1ULL << 62);
    cr_assert_eq(funnel_attribution_decay_q62(h, h), 1ULL << 61);
    cr_assert_eq(funnel_attribution_decay_q62(3 * h, h), 1ULL << 59);
    cr_assert_eq(funnel_attribution_decay_q62(-5, h), 1ULL << 62);
    cr_assert_eq(funnel_attribution_decay_q62(100 * h, h), 0);
    /* 2^-0.5 = 0.70710678118654752; 2^-0.25 = 0.84089641525371454 */
    uint64_t half = funnel_attribution_decay_q62(h / 2, h);
    uint64_t quarter = funnel_attribution_decay_q62(h / 4, h);
    uint64_t want_half = 3260954456333195553ULL, want_quarter = 3877950241171266237ULL;
    cr_assert_lt(half > want_half ? half - want_half : want_half - half, 1ULL << 34);
    cr_assert_lt(quarter > want_quarter ? quarter - want_quarter : want_quarter - quarter,
                 1ULL << 34);
    /* Two touches half a half-life apart: 1 : 0.7071 -> 585786.44 : 414213.56 ppm. */
    int64_t at[] = {T0 - h / 2, T0};
    funnel_attribution_journey_t j = {.touch_at_ms = at, .n = 2, .half_life_ms = h};
    int64_t got[2];
    model_ppm(FUNNEL_ATTR_TIME_DECAY, &j, got);
    assert_parts(got, (int64_t[]){414214, 585786}, 2);
    /* 0, 1 and 2 half-lives before the last: 1/7, 2/7, 4/7 of 700 */
    int64_t at3[] = {T0 - 2 * h, T0 - h, T0};
    uint64_t w[3];
    int64_t p[3];
    j.touch_at_ms = at3;
    j.n = 3;
    cr_assert_eq(funnel_attribution_weights(FUNNEL_ATTR_TIME_DECAY, &j, w), 0);
    cr_assert_eq(funnel_money_split(700, w, 3, p), 0);
    assert_parts(p, (int64_t[]){100, 200, 400}, 3);
}

/* Every time_decay credit of amounts up to 10^15 minor units lies within 1 minor unit of the
 * real-valued split A * 2^(-age_i/h) / sum_j 2^(-age_j/h), for ages that are not whole
 * half-lives (where the fraction of the exponent matters). The reference is computed in long
 * double (64-bit mantissa: about 10^-4 units at 10^15); the allowance above 1 unit is for it. */
Test(models, time_decay_credits_match_the_real_split_up_to_1e15)
{
    static const int64_t amounts[] = {10000000000LL, 123456789012345LL, 999999999999999LL,
                                      1000000000000000LL, 987654321098765LL};
    static const int64_t ages_s[][5] = {
        {0, 1, 86399, 3 * 86400 + 12345, 59 * 86400 + 7},
        {0, 37, 4 * 86400 + 1, 9 * 86400 + 99, 20 * 86400 + 321},
        {0, 600, 1800, 7 * 86400 - 1, 13 * 86400 + 4321},
    };
    static const int64_t half_lives[] = {7 * DAY, DAY + 1, 30 * DAY + 12345};
    for (size_t hl = 0; hl < 3; hl++)
        for (size_t g = 0; g < 3; g++) {
            int64_t at[5];
            for (size_t i = 0; i < 5; i++)
                at[i] = T0 - ages_s[g][4 - i] * 1000;
            funnel_attribution_journey_t j = {
                .touch_at_ms = at, .n = 5, .half_life_ms = half_lives[hl]};
            uint64_t w[5];
            cr_assert_eq(funnel_attribution_weights(FUNNEL_ATTR_TIME_DECAY, &j, w), 0);
            long double real_w[5], total = 0;
            for (size_t i = 0; i < 5; i++) {
                real_w[i] = exp2l(-(long double)(T0 - at[i]) / (long double)half_lives[hl]);
                total += real_w[i];
            }
            for (size_t a = 0; a < sizeof amounts / sizeof amounts[0]; a++) {
                int64_t credit[5];
                cr_assert_eq(funnel_money_split(amounts[a], w, 5, credit), 0);
                for (size_t i = 0; i < 5; i++) {
                    long double want = (long double)amounts[a] * real_w[i] / total;
                    long double off = fabsl((long double)credit[i] - want);
                    cr_assert_leq(off, 1.001L,
                                  "amount %lld, touch %zu, half-life %lld: %lld vs %.3Lf",
                                  (long long)amounts[a], i, (long long)half_lives[hl],
                                  (long long)credit[i], want);
                }
            }
        }
}

Test(models, names_parse_and_bad_input_is_refused)
{
    for (int m = 0; m < NM; m++) {
        funnel_attribution_model_t back;
        cr_assert_eq(funnel_attribution_model_parse(funnel_attribution_model_name(m), &back), 0);
        cr_assert_eq((int)back, m);
    }
    funnel_attribution_model_t x;
    cr_assert_eq(funnel_attribution_model_parse("position_based", &x), FUNNEL_ENOTFOUND);
    cr_assert_eq(funnel_attribution_model_parse(NULL, &x), FUNNEL_ENOTFOUND);
    cr_assert_null(funnel_attribution_model_name(NM));
    uint64_t w[1];
    int64_t at[] = {T0};
    funnel_attribution_journey_t j = {.touch_at_ms = at, .n = 0, .half_life_ms = DAY};
    cr_assert_eq(funnel_attribution_weights(FUNNEL_ATTR_LINEAR, &j, w), FUNNEL_EINVAL);
    j.n = 1;
    cr_assert_eq(funnel_attribution_weights(NM, &j, w), FUNNEL_EINVAL);
    j.half_life_ms = 0;
    cr_assert_eq(funnel_attribution_weights(FUNNEL_ATTR_TIME_DECAY, &j, w), FUNNEL_EINVAL);
}

/* ---- the engine ---------------------------------------------------------------------- */

typedef struct world {
    fx_tmpdir_t dir;
    funnel_config_t cfg;
    funnel_store_t *store;
    funnel_router_t *router;
    funnel_engine_t engine;
    fx_engine_t eng; /* its outputs: attribution.credited published, in order */
} world_t;

/* Worlds still open, closed by the fini when an assertion cut a test short. */
static world_t *open_worlds[4];

static void world_close(world_t *w)
{
    fx_engine_out_clear(&w->eng);
    if (w->engine.self)
        funnel_attribution_engine_destroy(w->engine.self);
    w->engine.self = NULL;
    funnel_router_destroy(&w->router);
    funnel_store_destroy(&w->store);
    funnel_config_clear(&w->cfg);
    if (w->dir.path[0])
        fx_tmpdir_remove(&w->dir);
    w->dir.path[0] = '\0';
    for (size_t i = 0; i < 4; i++)
        if (open_worlds[i] == w)
            open_worlds[i] = NULL;
}

static void close_all(void)
{
    for (size_t i = 0; i < 4; i++)
        if (open_worlds[i])
            world_close(open_worlds[i]);
}

static void world_open(world_t *w, unsigned models)
{
    char path[320], err[512];
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < 4; i++)
        if (!open_worlds[i]) {
            open_worlds[i] = w;
            break;
        }
    fx_tmpdir_make(&w->dir);
    snprintf(path, sizeof path, "%s/attr.db", w->dir.path);
    cr_assert_eq(funnel_config_defaults(&w->cfg, &funnel_engine_registry), 0);
    ATTRIBUTION(w->cfg)->models = models;
    cr_assert_eq(
        funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &w->store, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(funnel_router_new(w->store, &w->router), 0);
    cr_assert_eq(funnel_attribution_engine_create(w->store, ATTRIBUTION(w->cfg), NULL, &w->engine),
                 0);
    cr_assert_eq(funnel_router_add_engine(w->router, &w->engine), 0);
    w->eng = (fx_engine_t){.store = w->store, .router = w->router, .keep = "attribution.credited"};
}

/* The credits of every attribution.credited message published under model (NULL: all), summed;
 * *reversals (when not NULL) counts the reversal credits among them. */
static int64_t stream_sum(const world_t *w, const char *model, size_t *reversals)
{
    int64_t sum = 0;
    for (size_t i = 0; i < w->eng.n_out; i++) {
        const Funnel__V1__AttributionCredited *c = w->eng.out[i]->attribution_credited;
        funnel_attr_credit_t *credits;
        size_t n;
        cr_assert_eq(funnel_attribution_credits(c, &credits, &n), 0,
                     "every credit names a touch of its message");
        for (size_t k = 0; k < n; k++) {
            if (model && strcmp(funnel_attribution_model_name(credits[k].model), model))
                continue;
            sum += credits[k].minor;
            if (reversals)
                *reversals += credits[k].reversal;
        }
        free(credits);
    }
    return sum;
}

static funnel_envelope_t *build(const char *topic, const char *json)
{
    funnel_body_t body;
    funnel_envelope_t *env;
    char err[256];
    cr_assert_eq(funnel_topic_lookup(topic, strlen(topic), &body), 0, "%s", topic);
    cr_assert_eq(funnel_json_envelope_build(body, json, T0, &env, err, sizeof err), 0, "%s: %s",
                 json, err);
    return env;
}

/* Applies one event in its own batch; rolled back instead of committed when `rollback`. */
static void world_apply_as(world_t *w, const char *topic, const char *json, bool rollback)
{
    funnel_envelope_t *env = build(topic, json);
    int rc = rollback ? fx_engine_route_undone(&w->eng, env, NOW_MS)
                      : fx_engine_route(&w->eng, env, NOW_MS);
    cr_assert_eq(rc, 0, "%s: %s (%s)", json, funnel_strerror(rc), funnel_store_errmsg(w->store));
}

static void world_apply(world_t *w, const char *topic, const char *json)
{
    world_apply_as(w, topic, json, false);
}

/* One row per line of one query's result, "a|b|c\n", appended to out. */
static void query_text(world_t *w, const char *sql, char *out, size_t out_len)
{
    sqlite3_stmt *st;
    size_t used = 0;
    out[0] = '\0';
    cr_assert_eq(sqlite3_prepare_v2(funnel_store_db(w->store), sql, -1, &st, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(funnel_store_db(w->store)));
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const unsigned char *t = sqlite3_column_text(st, c);
            used += (size_t)snprintf(out + used, out_len - used, "%s%s", c ? "|" : "",
                                     t ? (const char *)t : "NULL");
            cr_assert_lt(used, out_len);
        }
        used += (size_t)snprintf(out + used, out_len - used, "\n");
        cr_assert_lt(used, out_len);
    }
    sqlite3_finalize(st);
}

/* The net credits after everything: what any arrival order must end with. */
static void net_credits(world_t *w, char *out, size_t out_len)
{
    query_text(w,
               "SELECT payment_id, refund_id, model, line_key, campaign, at_ms, sum(credit) "
               "FROM attr_postings GROUP BY payment_id, refund_id, model, line_key, at_ms "
               "HAVING sum(credit) != 0 ORDER BY 1, 2, 3, 4, 6",
               out, out_len);
}

/* Sum of one model's net credits on one campaign (or all campaigns with NULL). */
static int64_t net_of(world_t *w, const char *model, const char *campaign)
{
    const char *params[] = {model, campaign, NULL};
    return fx_sql_int(funnel_store_db(w->store),
                      "SELECT coalesce(sum(credit), 0) FROM attr_postings WHERE "
                      "model = ?1 AND (?2 IS NULL OR campaign = ?2)",
                      params);
}

/* Every entry (payment or refund) of every model sums exactly to its amount. */
static void assert_entries_exact(world_t *w, const char *want_rows)
{
    char got[16384];
    query_text(w,
               "SELECT payment_id, refund_id, count(DISTINCT model), min(s), max(s) FROM "
               "(SELECT payment_id, refund_id, model, sum(credit) AS s FROM attr_postings "
               "GROUP BY 1, 2, 3) GROUP BY 1, 2 ORDER BY 1, 2",
               got, sizeof got);
    cr_assert_str_eq(got, want_rows);
}

static char ev[64][512];
static const char *ev_topic[64];

/* The journey of client C1 (lead L1, handoff at T0) plus an unknown client's payment. */
static size_t journey_events(void)
{
    size_t n = 0;
#define EV(topic, ...)                                                                             \
    do {                                                                                           \
        ev_topic[n] = topic;                                                                       \
        snprintf(ev[n++], sizeof ev[0], __VA_ARGS__);                                              \
    } while (0)
    EV("lead.created",
       "{\"eventId\":\"e-created\",\"occurredAtMs\":%lld,\"leadId\":\"L1\",\"touches\":["
       "{\"campaign\":\"search\",\"source\":\"google\",\"medium\":\"cpc\",\"channel\":\"paid\","
       "\"atMs\":%lld},{\"campaign\":\"webinar\",\"source\":\"site\",\"medium\":\"event\","
       "\"channel\":\"owned\"}]}",
       T0 - 20 * DAY, T0 - 30 * DAY);
    EV("lead.touched",
       "{\"eventId\":\"e-t1\",\"occurredAtMs\":%lld,\"leadId\":\"L1\",\"touch\":{\"campaign\":"
       "\"newsletter\",\"medium\":\"email\",\"atMs\":%lld}}",
       T0 - 10 * DAY, T0 - 10 * DAY);
    EV("lead.touched",
       "{\"eventId\":\"e-t-old\",\"occurredAtMs\":%lld,\"leadId\":\"L1\",\"touch\":{"
       "\"campaign\":\"ancient\",\"atMs\":%lld}}",
       T0 - 200 * DAY, T0 - 200 * DAY);
    EV("lead.touched",
       "{\"eventId\":\"e-t2\",\"occurredAtMs\":%lld,\"leadId\":\"L1\",\"touch\":{\"campaign\":"
       "\"retarget\",\"source\":\"facebook\",\"atMs\":%lld}}",
       T0 - 5 * DAY, T0 - 5 * DAY);
    EV("lead.touched",
       "{\"eventId\":\"e-t-after\",\"occurredAtMs\":%lld,\"leadId\":\"L1\",\"touch\":{"
       "\"campaign\":\"after\",\"atMs\":%lld}}",
       T0 + 3600000, T0 + 3600000);
    EV("lead.qualified",
       "{\"eventId\":\"e-sql\",\"occurredAtMs\":%lld,\"leadId\":\"L1\",\"stage\":\"SQL\"}",
       T0 - 8 * DAY);
    EV("client.handed_off",
       "{\"eventId\":\"e-handoff\",\"occurredAtMs\":%lld,\"clientId\":\"C1\",\"leadId\":\"L1\","
       "\"fromRep\":\"rep1\"}",
       T0);
    EV("payment.received",
       "{\"eventId\":\"e-p1\",\"occurredAtMs\":%lld,\"paymentId\":\"P1\",\"clientId\":\"C1\","
       "\"amount\":{\"minor\":100003,\"currency\":\"EUR\"}}",
       T0 + DAY);
    EV("payment.received",
       "{\"eventId\":\"e-p2\",\"occurredAtMs\":%lld,\"paymentId\":\"P2\",\"clientId\":\"C1\","
       "\"amount\":{\"minor\":7,\"currency\":\"EUR\"}}",
       T0 + 2 * DAY);
    EV("payment.refunded",
       "{\"eventId\":\"e-r1\",\"occurredAtMs\":%lld,\"refundId\":\"R1\",\"paymentId\":\"P1\","
       "\"clientId\":\"C1\",\"amount\":{\"minor\":33331,\"currency\":\"EUR\"}}",
       T0 + 3 * DAY);
    EV("payment.refunded",
       "{\"eventId\":\"e-r2\",\"occurredAtMs\":%lld,\"refundId\":\"R2\",\"paymentId\":\"P1\","
       "\"clientId\":\"C1\",\"amount\":{\"minor\":50000,\"currency\":\"EUR\"}}",
       T0 + 4 * DAY);
    EV("payment.received",
       "{\"eventId\":\"e-p3\",\"occurredAtMs\":%lld,\"paymentId\":\"P3\",\"clientId\":\"C2\","
       "\"amount\":{\"minor\":999,\"currency\":\"USD\"}}",
       T0);
#undef EV
    return n;
}

TestSuite(engine, .fini = close_all);

/* Opens w with models and applies every event of journey_events in order. */
static void world_journey(world_t *w, unsigned models)
{
    world_open(w, models);
    size_t n = journey_events();
    for (size_t i = 0; i < n; i++)
        world_apply(w, ev_topic[i], ev[i]);
}

Test(engine, in_order_journey_credits_exactly_with_refunds_and_unattributed)
{
    static world_t w;
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    /* Every model: P1 100003, its refunds -33331 and -50000, P2 7, P3 999 unattributed. */
    assert_entries_exact(&w, "P1||9|100003|100003\n"
                             "P1|R1|9|-33331|-33331\n"
                             "P1|R2|9|-50000|-50000\n"
                             "P2||9|7|7\n"
                             "P3||9|999|999\n");
    /* Journey: search(-30d) webinar(-20d, created) newsletter(-10d) retarget(-5d); SQL at -8d
     * falls on newsletter. "ancient" is outside the 90-day lookback, "after" after handoff. */
    cr_assert_eq(net_of(&w, "linear", "ancient"), 0);
    cr_assert_eq(net_of(&w, "linear", "after"), 0);
    /* first_touch: everything net of refunds to search: 100003 - 83331 + 7 */
    cr_assert_eq(net_of(&w, "first_touch", "search"), 16679);
    cr_assert_eq(net_of(&w, "last_touch", "retarget"), 16679);
    cr_assert_eq(net_of(&w, "first_touch", FUNNEL_ATTR_UNATTRIBUTED), 999);
    /* w_shaped on P1 before refunds: 30/30/30/10 -> 30001, 30001, 30001, 10000 */
    char got[4096];
    query_text(&w,
               "SELECT campaign, credit, weight_ppm FROM attr_postings WHERE payment_id = 'P1' "
               "AND refund_id = '' AND model = 'w_shaped' ORDER BY id",
               got, sizeof got);
    cr_assert_str_eq(got, "search|30001|300000\nwebinar|30001|300000\n"
                          "newsletter|30001|300000\nretarget|10000|100000\n");
    /* The stream says the same as the table. */
    int64_t stream = stream_sum(&w, "linear", NULL);
    cr_assert_eq(stream, net_of(&w, "linear", NULL));
    cr_assert_eq(stream, 100003 - 83331 + 7 + 999);
    world_close(&w);
}

Test(engine, refunds_reverse_in_proportion_and_a_full_refund_zeroes_every_line)
{
    static world_t w;
    world_open(&w, 1u << FUNNEL_ATTR_LINEAR);
    size_t n = journey_events();
    for (size_t i = 0; i < n; i++)
        if (strcmp(ev_topic[i], "payment.refunded"))
            world_apply(&w, ev_topic[i], ev[i]);
    /* P1 = 100003 over 4 touches: 25001 25001 25001 25000 */
    world_apply(&w, "payment.refunded",
                "{\"eventId\":\"rf1\",\"occurredAtMs\":1700300000000,\"refundId\":\"RF1\","
                "\"paymentId\":\"P1\",\"clientId\":\"C1\",\"amount\":{\"minor\":50001,"
                "\"currency\":\"EUR\"}}");
    char got[4096];
    query_text(&w, "SELECT campaign, credit FROM attr_postings WHERE refund_id = 'RF1' ORDER BY id",
               got, sizeof got);
    /* net after: split(50002 by 25001,25001,25001,25000) = 12501,12501,12500,12500 */
    cr_assert_str_eq(got, "search|-12500\nwebinar|-12500\nnewsletter|-12501\nretarget|-12500\n");
    /* a refund in another currency is not applied */
    world_apply(&w, "payment.refunded",
                "{\"eventId\":\"rf-usd\",\"occurredAtMs\":1700300000001,\"refundId\":\"RFX\","
                "\"paymentId\":\"P1\",\"clientId\":\"C1\",\"amount\":{\"minor\":5,"
                "\"currency\":\"USD\"}}");
    /* more than what is left: capped at the payment */
    world_apply(&w, "payment.refunded",
                "{\"eventId\":\"rf2\",\"occurredAtMs\":1700300000002,\"refundId\":\"RF2\","
                "\"paymentId\":\"P1\",\"clientId\":\"C1\",\"amount\":{\"minor\":90000,"
                "\"currency\":\"EUR\"}}");
    query_text(&w,
               "SELECT campaign, sum(credit) FROM attr_postings WHERE payment_id = 'P1' "
               "GROUP BY line_key HAVING sum(credit) != 0",
               got, sizeof got);
    cr_assert_str_eq(got, "", "a full refund leaves no line: %s", got);
    world_close(&w);
}

Test(engine, late_handoff_reverses_the_unattributed_credit)
{
    static world_t w;
    world_open(&w, FUNNEL_ATTR_ALL_MODELS);
    size_t n = journey_events();
    world_apply(&w, ev_topic[7], ev[7]); /* P1 before anything: unattributed */
    cr_assert_eq(w.eng.n_out, 1, "one message carries every model's credits");
    const Funnel__V1__AttributionCredited *c = w.eng.out[0]->attribution_credited;
    cr_assert_eq(w.eng.out[0]->occurred_at_ms, T0 + DAY, "credits carry the payment's time");
    cr_assert_str_eq(c->payment_id, "P1");
    cr_assert_eq(c->n_touches, 1);
    cr_assert_str_eq(c->touches[0]->campaign, FUNNEL_ATTR_UNATTRIBUTED);
    cr_assert_str_eq(c->touches[0]->touch_id, "");
    cr_assert_str_eq(c->currency, "EUR");
    cr_assert_eq(c->n_runs, NM, "one run per model");
    funnel_attr_credit_t *cr;
    size_t n_cr;
    cr_assert_eq(funnel_attribution_credits(c, &cr, &n_cr), 0);
    cr_assert_eq(n_cr, NM);
    for (size_t k = 0; k < n_cr; k++) {
        cr_assert_eq(cr[k].touch, 0);
        cr_assert_eq(cr[k].minor, 100003);
        cr_assert_str_eq(cr[k].currency, "EUR");
        cr_assert_str_eq(cr[k].client_id, "C1");
        cr_assert_eq(cr[k].weight_ppm, 1000000);
        cr_assert_eq(cr[k].model, k);
        cr_assert_not(cr[k].reversal);
    }
    free(cr);
    for (size_t i = 0; i < n; i++)
        if (i != 7)
            world_apply(&w, ev_topic[i], ev[i]);
    size_t reversals = 0;
    stream_sum(&w, NULL, &reversals);
    cr_assert_eq(reversals, NM, "the handoff reverses each model's unattributed line");
    cr_assert_eq(net_of(&w, "linear", FUNNEL_ATTR_UNATTRIBUTED), 999, "only P3 stays");
    cr_assert_eq(net_of(&w, "first_touch", "search"), 16679);
    world_close(&w);
}

/* Applies the journey in the order perm gives and returns the net credits as text. */
static void run_order(const size_t *perm, size_t n, char *out, size_t out_len)
{
    static world_t w;
    world_open(&w, FUNNEL_ATTR_ALL_MODELS);
    for (size_t i = 0; i < n; i++)
        world_apply(&w, ev_topic[perm[i]], ev[perm[i]]);
    net_credits(&w, out, out_len);
    assert_entries_exact(&w, "P1||9|100003|100003\n"
                             "P1|R1|9|-33331|-33331\n"
                             "P1|R2|9|-50000|-50000\n"
                             "P2||9|7|7\n"
                             "P3||9|999|999\n");
    world_close(&w);
}

Test(engine, any_arrival_order_ends_in_the_same_credits, .timeout = 120)
{
    size_t n = journey_events(), perm[64];
    static char want[65536], got[65536];
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    run_order(perm, n, want, sizeof want);
    cr_assert_gt(strlen(want), 100);
    /* reversed, then shuffles from a fixed seed (Fisher-Yates on an LCG) */
    for (size_t i = 0; i < n; i++)
        perm[i] = n - 1 - i;
    run_order(perm, n, got, sizeof got);
    cr_assert_str_eq(got, want, "reverse order differs");
    uint64_t seed = 42;
    for (int round = 0; round < 12; round++) {
        for (size_t i = 0; i < n; i++)
            perm[i] = i;
        for (size_t i = n - 1; i > 0; i--) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t k = (size_t)((seed >> 33) % (i + 1));
            size_t t = perm[i];
            perm[i] = perm[k];
            perm[k] = t;
        }
        run_order(perm, n, got, sizeof got);
        cr_assert_str_eq(got, want, "shuffle %d differs", round);
    }
}

Test(engine, output_is_deterministic_even_after_a_rolled_back_batch)
{
    static world_t a, b;
    size_t n = journey_events();
    world_open(&a, FUNNEL_ATTR_ALL_MODELS);
    world_open(&b, FUNNEL_ATTR_ALL_MODELS);
    for (size_t i = 0; i < n; i++) {
        world_apply(&a, ev_topic[i], ev[i]);
        world_apply_as(&b, ev_topic[i], ev[i], true); /* a failed batch, then its retry */
        world_apply(&b, ev_topic[i], ev[i]);
    }
    cr_assert_eq(a.eng.n_out, b.eng.n_out);
    for (size_t i = 0; i < a.eng.n_out; i++) {
        size_t la = funnel__v1__envelope__get_packed_size(a.eng.out[i]);
        size_t lb = funnel__v1__envelope__get_packed_size(b.eng.out[i]);
        uint8_t *pa = fx_pack(a.eng.out[i], &la), *pb = fx_pack(b.eng.out[i], &lb);
        cr_assert(la == lb && !memcmp(pa, pb, la), "output %zu (%s) differs", i,
                  a.eng.out[i]->event_id);
        free(pa);
        free(pb);
    }
    world_close(&a);
    world_close(&b);
}

/* Gives w a new router and attribution engine on the same store: what a restart does, so the
 * engine's schema steps run again. */
static void world_restart_engine(world_t *w)
{
    funnel_attribution_engine_destroy(w->engine.self);
    w->engine.self = NULL;
    funnel_router_destroy(&w->router);
    cr_assert_eq(funnel_router_new(w->store, &w->router), 0);
    cr_assert_eq(funnel_attribution_engine_create(w->store, ATTRIBUTION(w->cfg), NULL, &w->engine),
                 0, "%s", funnel_store_errmsg(w->store));
    cr_assert_eq(funnel_router_add_engine(w->router, &w->engine), 0);
    w->eng.router = w->router;
}

#define P9_JSON                                                                                    \
    "{\"eventId\":\"p-after\",\"occurredAtMs\":1700086400009,\"paymentId\":\"P9\","                \
    "\"clientId\":\"C1\",\"amount\":{\"minor\":900,\"currency\":\"EUR\"}}"

/* Pays 900 more on C1 and asserts its credits go out as attribution-<id>: posting ids (the
 * credits' event_ids) are never reused across a schema step. */
static void assert_next_event_id(world_t *w, int64_t id)
{
    char want[64];
    snprintf(want, sizeof want, "attribution-%lld", (long long)id);
    fx_engine_out_clear(&w->eng);
    world_apply(w, "payment.received", P9_JSON);
    cr_assert_eq(w->eng.n_out, 1);
    cr_assert_str_eq(w->eng.out[0]->event_id, want);
    fx_engine_out_clear(&w->eng);
}

/* Touches and payments back to their shape before schema 7. */
#define BEFORE_7                                                                                   \
    "CREATE TABLE old_t (lead_id TEXT NOT NULL, at_ms INTEGER NOT NULL, touch_id NOT NULL,"        \
    "  tag_id INTEGER NOT NULL, PRIMARY KEY (lead_id, at_ms, touch_id)) WITHOUT ROWID;"            \
    "INSERT INTO old_t SELECT lead_id, span * 1382400000 + ms, touch_id, tag_id FROM "             \
    "attr_touches;"                                                                                \
    "DROP TABLE attr_touches; ALTER TABLE old_t RENAME TO attr_touches;"                           \
    "ALTER TABLE attr_payments DROP COLUMN posts;"                                                 \
    "CREATE INDEX attr_posts_by_payment ON attr_posts(payment_id);"

/* Touches back to their shape before schema 5 (the tests' touch ids are all text). */
#define TOUCHES_BEFORE_5                                                                           \
    "CREATE TABLE old_t (touch_id TEXT PRIMARY KEY, lead_id TEXT NOT NULL,"                        \
    "  at_ms INTEGER NOT NULL, channel TEXT NOT NULL, source TEXT NOT NULL,"                       \
    "  medium TEXT NOT NULL, campaign TEXT NOT NULL) WITHOUT ROWID;"                               \
    "INSERT INTO old_t SELECT t.touch_id, t.lead_id, t.at_ms, g.channel, g.source, g.medium,"      \
    "  g.campaign FROM attr_touches t JOIN attr_tags g ON g.id = t.tag_id;"                        \
    "DROP TABLE attr_touches; DROP TABLE attr_tags; ALTER TABLE old_t RENAME TO attr_touches;"     \
    "CREATE INDEX attr_touches_by_lead ON attr_touches(lead_id, at_ms);"

#define ALL_POSTING_COLUMNS                                                                        \
    "id, payment_id, refund_id, model, line_key, client_id, lead_id, campaign, source, medium, "   \
    "channel, touch_at_ms, currency, credit, weight_ppm, reversal, at_ms, cause_event_id"

Test(engine, schema_3_stores_each_line_once_and_keeps_every_posting_and_its_id)
{
    static world_t w;
    static char before[65536], after[65536];
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    query_text(&w, "SELECT " ALL_POSTING_COLUMNS " FROM attr_postings ORDER BY id", before,
               sizeof before);
    int64_t last = fx_sql_int(funnel_store_db(w.store), "SELECT max(id) FROM attr_postings", NULL);
    /* Back to the shape of schema 2: one wide row per posting. The sequence runs 5 past the
     * last row, as AUTOINCREMENT allows: the next id must still follow it. */
    char *msg = NULL;
    char sql[4096];
    snprintf(
        sql, sizeof sql,
        BEFORE_7
        "CREATE TABLE old_p AS SELECT " ALL_POSTING_COLUMNS " FROM attr_postings;"
        "DROP VIEW attr_postings; DROP TABLE attr_posts; DROP TABLE attr_lines;"
        "DROP TABLE attr_counter; DROP TABLE attr_models; DROP TABLE attr_sums;" TOUCHES_BEFORE_5
        "CREATE TABLE attr_postings (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  payment_id TEXT NOT NULL, refund_id TEXT NOT NULL, model TEXT NOT NULL,"
        "  line_key TEXT NOT NULL, client_id TEXT NOT NULL, lead_id TEXT NOT NULL,"
        "  campaign TEXT NOT NULL, source TEXT NOT NULL, medium TEXT NOT NULL,"
        "  channel TEXT NOT NULL, touch_at_ms INTEGER NOT NULL, currency TEXT NOT NULL,"
        "  credit INTEGER NOT NULL, weight_ppm INTEGER NOT NULL, reversal INTEGER NOT NULL,"
        "  at_ms INTEGER NOT NULL, cause_event_id TEXT NOT NULL);"
        "INSERT INTO attr_postings SELECT * FROM old_p ORDER BY id; DROP TABLE old_p;"
        "UPDATE sqlite_sequence SET seq = %lld WHERE name = 'attr_postings';"
        "UPDATE meta SET value = 2 WHERE key = 'schema.attribution';",
        (long long)last + 5);
    cr_assert_eq(sqlite3_exec(funnel_store_db(w.store), sql, NULL, NULL, &msg), SQLITE_OK, "%s",
                 msg);
    world_restart_engine(&w);
    cr_assert_eq(funnel_store_module_version(w.store, "attribution"), 7);
    query_text(&w, "SELECT " ALL_POSTING_COLUMNS " FROM attr_postings ORDER BY id", after,
               sizeof after);
    cr_assert_str_eq(after, before, "every posting survives the steps as it was");
    cr_assert_lt(fx_sql_int(funnel_store_db(w.store), "SELECT count(*) FROM attr_lines", NULL),
                 fx_sql_int(funnel_store_db(w.store), "SELECT count(*) FROM attr_postings", NULL),
                 "a line is stored once, not once per posting");
    assert_next_event_id(&w, last + 6);
    world_close(&w);
}

/* The report by campaign over every model and all time, as CSV. */
static void report_text(world_t *w, char *out, size_t out_len)
{
    funnel_report_attr_model_t *m = NULL;
    funnel_report_attr_t r = {
        .by = "campaign", .models = FUNNEL_ATTR_ALL_MODELS, .from = INT64_MIN, .to = INT64_MAX};
    char err[256] = "", *text = NULL;
    size_t len = 0;
    cr_assert_eq(funnel_report_attr_model_new(&m), 0);
    cr_assert_eq(funnel_report_attribution(m, w->store, &r, err, sizeof err), 0, "%s", err);
    FILE *mem = open_memstream(&text, &len);
    funnel_report_attribution_csv(&r, mem);
    fclose(mem);
    cr_assert_lt(len, out_len);
    memcpy(out, text, len + 1);
    free(text);
    funnel_report_attribution_clear(&r);
    funnel_report_attr_model_destroy(&m);
}

/* Every event of the journey in reverse order (reversals and reposts on the way), then one
 * refund more: what the step must carry over and what must settle after it. */
static void schema_4_world(world_t *w, bool back_to_3)
{
    size_t n = journey_events();
    for (size_t i = n; i-- > 0;)
        world_apply(w, ev_topic[i], ev[i]);
    if (back_to_3) {
        int64_t last =
            fx_sql_int(funnel_store_db(w->store), "SELECT max(id) FROM attr_postings", NULL);
        char *msg = NULL;
        char sql[8192];
        /* Back to schema 3 as the baseline build leaves it: a row per model, the sequence 5
         * past the last row. */
        snprintf(sql, sizeof sql,
                 BEFORE_7
                 "CREATE TABLE attr_credits (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                 "  payment_id TEXT NOT NULL, refund_id TEXT NOT NULL, model TEXT NOT NULL,"
                 "  line_id INTEGER NOT NULL REFERENCES attr_lines(id), client_id TEXT NOT NULL,"
                 "  currency TEXT NOT NULL, credit INTEGER NOT NULL, weight_ppm INTEGER NOT NULL,"
                 "  reversal INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
                 "  cause_event_id TEXT NOT NULL);"
                 "INSERT INTO attr_credits SELECT v.id, v.payment_id, v.refund_id, v.model, l.id,"
                 "  v.client_id, v.currency, v.credit, v.weight_ppm, v.reversal, v.at_ms,"
                 "  v.cause_event_id FROM attr_postings v JOIN attr_lines l USING (line_key,"
                 "  lead_id, campaign, source, medium, channel, touch_at_ms) ORDER BY v.id;"
                 "CREATE INDEX attr_credits_by_payment ON attr_credits(payment_id, model,"
                 "  refund_id, line_id);"
                 "CREATE INDEX attr_credits_by_time ON attr_credits(at_ms);"
                 "DROP VIEW attr_postings; DROP TABLE attr_posts; DROP TABLE attr_counter;"
                 "DROP TABLE attr_models; DROP TABLE attr_sums;" TOUCHES_BEFORE_5
                 "CREATE VIEW attr_postings AS SELECT c.id, c.payment_id, c.refund_id, c.model,"
                 "  l.line_key, c.client_id, l.lead_id, l.campaign, l.source, l.medium, l.channel,"
                 "  l.touch_at_ms, c.currency, c.credit, c.weight_ppm, c.reversal, c.at_ms,"
                 "  c.cause_event_id FROM attr_credits c JOIN attr_lines l ON l.id = c.line_id;"
                 "UPDATE sqlite_sequence SET seq = %lld WHERE name = 'attr_credits';"
                 "UPDATE meta SET value = 3 WHERE key = 'schema.attribution';",
                 (long long)last + 5);
        cr_assert_eq(sqlite3_exec(funnel_store_db(w->store), sql, NULL, NULL, &msg), SQLITE_OK,
                     "%s", msg);
        world_restart_engine(w);
        cr_assert_eq(funnel_store_module_version(w->store, "attribution"), 7);
        assert_next_event_id(w, last + 6);
    } else {
        world_apply(w, "payment.received", P9_JSON);
    }
    world_apply(w, "payment.refunded",
                "{\"eventId\":\"e-r3\",\"occurredAtMs\":1700400000000,\"refundId\":\"R3\","
                "\"paymentId\":\"P1\",\"clientId\":\"C1\",\"amount\":{\"minor\":9,"
                "\"currency\":\"EUR\"}}");
    world_apply(w, "lead.touched",
                "{\"eventId\":\"e-t-late\",\"occurredAtMs\":1699000000000,\"leadId\":\"L1\","
                "\"touch\":{\"campaign\":\"late\",\"atMs\":1699000000000}}");
}

Test(engine, schema_4_carries_every_credit_the_report_and_the_ids_of_a_schema_3_database)
{
    static world_t a, b;
    static char pa[1 << 20], pb[1 << 20], ra[8192], rb[8192];
    world_open(&a, FUNNEL_ATTR_ALL_MODELS);
    world_open(&b, FUNNEL_ATTR_ALL_MODELS);
    schema_4_world(&a, true);
    schema_4_world(&b, false);
    /* Ids aside (the migrated database went on from its own sequence), the same postings. */
    static const char q[] = "SELECT payment_id, refund_id, model, line_key, client_id, lead_id,"
                            " campaign, touch_at_ms, currency, credit, weight_ppm, reversal, at_ms,"
                            " cause_event_id FROM attr_postings ORDER BY payment_id, refund_id,"
                            " model, id";
    query_text(&a, q, pa, sizeof pa);
    query_text(&b, q, pb, sizeof pb);
    cr_assert_str_eq(pa, pb);
    report_text(&a, ra, sizeof ra);
    report_text(&b, rb, sizeof rb);
    cr_assert_str_eq(ra, rb);
    cr_assert(strstr(ra, "late,EUR,"), "%s", ra);
    world_close(&a);
    world_close(&b);
}

static int count_step(void *arg)
{
    ++*(long *)arg;
    return 0;
}

/* Applies n payments of client C1 in EUR, a millisecond apart from at, with ids made of tag
 * (e-TAG-i, payment PTAG-i) and amounts 1000 + i. */
static void payments_apply(world_t *w, const char *tag, int n, int64_t at)
{
    for (int i = 0; i < n; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"eventId\":\"e-%s-%d\",\"occurredAtMs\":%lld,\"paymentId\":\"P%s-%d\","
                 "\"clientId\":\"C1\",\"amount\":{\"minor\":%d,\"currency\":\"EUR\"}}",
                 tag, i, (long long)(at + i), tag, i, 1000 + i);
        world_apply(w, "payment.received", json);
    }
}

/* SQLite virtual-machine steps of the report of one period. */
static long report_steps(world_t *w, int64_t from, int64_t to)
{
    funnel_report_attr_model_t *m = NULL;
    funnel_report_attr_t r = {
        .by = "campaign", .models = FUNNEL_ATTR_ALL_MODELS, .from = from, .to = to};
    char err[256] = "";
    long steps = 0;
    cr_assert_eq(funnel_report_attr_model_new(&m), 0);
    sqlite3_progress_handler(funnel_store_db(w->store), 1, count_step, &steps);
    cr_assert_eq(funnel_report_attribution(m, w->store, &r, err, sizeof err), 0, "%s", err);
    sqlite3_progress_handler(funnel_store_db(w->store), 0, NULL, NULL);
    cr_assert_eq(r.n, 5, "the four campaigns of P1 and P2, P3 unattributed");
    funnel_report_attribution_clear(&r);
    funnel_report_attr_model_destroy(&m);
    return steps;
}

Test(engine, the_report_of_a_period_reads_only_that_period)
{
    static world_t w;
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    int64_t from = T0 - T0 % DAY, to = from + 10 * DAY;
    long before = report_steps(&w, from, to);
    /* Forty payments a year later: history the report of the first days must not read. */
    payments_apply(&w, "later", 40, T0 + 365 * DAY);
    long after = report_steps(&w, from, to);
    /* Reading them would cost hundreds of steps (40 payments x 4 lines); a seek in a deeper
     * index a few. */
    cr_assert_lt(after, before + 20, "the later rows were not read: %ld steps, then %ld", before,
                 after);
    world_close(&w);
}

/* Hands client off from lead at handoff_at, then pays minor EUR at paid_at (event ids e-h, e-p,
 * payment P-<client>): the one message the payment publishes. */
static const Funnel__V1__AttributionCredited *handed_off_then_paid(world_t *w, const char *client,
                                                                   const char *lead,
                                                                   int64_t handoff_at,
                                                                   int64_t paid_at, int64_t minor)
{
    char json[512];
    snprintf(json, sizeof json,
             "{\"eventId\":\"e-h\",\"occurredAtMs\":%lld,\"clientId\":\"%s\","
             "\"leadId\":\"%s\",\"fromRep\":\"rep1\"}",
             (long long)handoff_at, client, lead);
    world_apply(w, "client.handed_off", json);
    fx_engine_out_clear(&w->eng);
    snprintf(json, sizeof json,
             "{\"eventId\":\"e-p\",\"occurredAtMs\":%lld,\"paymentId\":\"P-%s\","
             "\"clientId\":\"%s\",\"amount\":{\"minor\":%lld,\"currency\":\"EUR\"}}",
             (long long)paid_at, client, client, (long long)minor);
    world_apply(w, "payment.received", json);
    cr_assert_eq(w->eng.n_out, 1);
    return w->eng.out[0]->attribution_credited;
}

Test(engine, uuid_touch_ids_are_stored_in_16_bytes_and_come_back_as_sent)
{
    static world_t w;
    world_open(&w, 1u << FUNNEL_ATTR_LINEAR);
    /* Three touches at one time: two of a lead.created (ids "<uuid>#0", "<uuid>#1"), one of a
     * lead.touched whose id sorts between them as text, and one id that is not a UUID. */
    world_apply(&w, "lead.created",
                "{\"eventId\":\"019ad744-1803-7000-8000-00000000000b\",\"occurredAtMs\":"
                "1699999000000,\"leadId\":\"L1\",\"touches\":[{\"campaign\":\"a\"},"
                "{\"campaign\":\"b\"}]}");
    world_apply(&w, "lead.touched",
                "{\"eventId\":\"019ad744-1803-7000-8000-00000000000a\",\"occurredAtMs\":"
                "1699999000000,\"leadId\":\"L1\",\"touch\":{\"campaign\":\"c\"}}");
    world_apply(&w, "lead.touched",
                "{\"eventId\":\"019AD744-upper\",\"occurredAtMs\":1699999000000,"
                "\"leadId\":\"L1\",\"touch\":{\"campaign\":\"d\"}}");
    const Funnel__V1__AttributionCredited *c =
        handed_off_then_paid(&w, "C1", "L1", 1700000000000, 1700000000001, 400);
    static const char *const want[] = {"019AD744-upper", "019ad744-1803-7000-8000-00000000000a",
                                       "019ad744-1803-7000-8000-00000000000b#0",
                                       "019ad744-1803-7000-8000-00000000000b#1"};
    cr_assert_eq(c->n_touches, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(c->touches[i]->touch_id, want[i], "touch %zu", i);
    char got[1024];
    query_text(&w, "SELECT typeof(touch_id), length(touch_id) FROM attr_touches ORDER BY 2, 1", got,
               sizeof got);
    cr_assert_str_eq(got, "text|14\nblob|16\nblob|18\nblob|18\n");
    world_close(&w);
}

Test(engine, a_line_of_an_entry_is_one_row_with_every_model)
{
    static world_t w;
    world_open(&w, FUNNEL_ATTR_ALL_MODELS);
    size_t n = journey_events();
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ev_topic[i], "payment.received") && strstr(ev[i], "\"P1\"")) {
            world_apply(&w, ev_topic[i], ev[i]);
            break;
        } else {
            world_apply(&w, ev_topic[i], ev[i]);
        }
    /* P1 over the four journey touches: four rows, one per line, 9 models' credits on each
     * where the model gives the line anything. */
    sqlite3 *db = funnel_store_db(w.store);
    cr_assert_eq(fx_sql_int(db, "SELECT count(*) FROM attr_posts WHERE payment_id = 'P1'", NULL),
                 4);
    cr_assert_eq(fx_sql_int(db,
                            "SELECT count(*) FROM attr_postings WHERE payment_id = 'P1' AND "
                            "model = 'linear'",
                            NULL),
                 4);
    cr_assert_eq(fx_sql_int(db, "SELECT sum(c2) FROM attr_posts WHERE payment_id = 'P1'", NULL),
                 100003);
    world_close(&w);
}

/* One event of a small scenario: topic and JSON body. */
typedef struct scene_event {
    const char *topic, *json;
} scene_event_t;

/* Applies ev[order[0..n)] to a fresh world and returns the net postings, client included, as
 * text: a re-pointed refund or payment must leave nothing behind where it was. */
static void scene_net(const scene_event_t *ev_list, const size_t *order, size_t n, char *out,
                      size_t out_len)
{
    static world_t w;
    /* One model: the re-pointing logic is the same for each. */
    world_open(&w, 1u << FUNNEL_ATTR_LINEAR);
    for (size_t i = 0; i < n; i++)
        world_apply(&w, ev_list[order[i]].topic, ev_list[order[i]].json);
    query_text(&w,
               "SELECT payment_id, refund_id, model, client_id, line_key, currency, sum(credit) "
               "FROM attr_postings GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(credit) != 0 "
               "ORDER BY 1, 2, 3, 4, 5, 6",
               out, out_len);
    world_close(&w);
}

/* Runs a scenario in order and reversed; both must end in want. */
static void scene_both_orders(const scene_event_t *ev_list, size_t n, const char *want)
{
    static char fwd[16384], rev[16384];
    size_t order[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    scene_net(ev_list, order, n, fwd, sizeof fwd);
    for (size_t i = 0; i < n; i++)
        order[i] = n - 1 - i;
    scene_net(ev_list, order, n, rev, sizeof rev);
    cr_assert_str_eq(fwd, rev, "order dependent:\nforward:\n%s\nreversed:\n%s", fwd, rev);
    cr_assert_str_eq(fwd, want);
}

#define PAY(ev, at, pay, client, minor, cur)                                                       \
    {                                                                                              \
        "payment.received", "{\"eventId\":\"" ev "\",\"occurredAtMs\":" at ",\"paymentId\":\"" pay \
                            "\",\"clientId\":\"" client "\",\"amount\":{\"minor\":" minor          \
                            ",\"currency\":\"" cur "\"}}"                                          \
    }
#define REFUND(ev, at, ref, pay, minor, cur)                                                       \
    {                                                                                              \
        "payment.refunded", "{\"eventId\":\"" ev "\",\"occurredAtMs\":" at ",\"refundId\":\"" ref  \
                            "\",\"paymentId\":\"" pay "\",\"clientId\":\"C1\",\"amount\":{"        \
                            "\"minor\":" minor ",\"currency\":\"" cur "\"}}"                       \
    }

/* A refund_id seen again with an earlier time names another payment: the refund moves, and
 * the payment it left must have its refund credits reversed (reviewer's case). */
Test(engine, a_refund_moved_to_another_payment_leaves_nothing_behind)
{
    const scene_event_t e[] = {
        PAY("pa", "1700000000000", "PA", "C1", "1000", "EUR"),
        PAY("pb", "1700000000000", "PB", "C1", "1000", "EUR"),
        REFUND("r-late", "1700000500000", "R", "PA", "400", "EUR"),
        REFUND("r-early", "1700000100000", "R", "PB", "400", "EUR"),
    };
    /* Unattributed everywhere (no handoff): one line per entry. */
    const char *want = "PA||linear|C1|" FUNNEL_ATTR_UNATTRIBUTED "|EUR|1000\n"
                       "PB||linear|C1|" FUNNEL_ATTR_UNATTRIBUTED "|EUR|1000\n"
                       "PB|R|linear|C1|" FUNNEL_ATTR_UNATTRIBUTED "|EUR|-400\n";
    scene_both_orders(e, 4, want);
}

/* An earlier duplicate payment_id in another currency: the refund in the old currency no
 * longer applies to the payment, so its credits must be reversed whatever the order. */
Test(engine, a_payment_changing_currency_drops_its_refunds_in_the_old_one)
{
    const scene_event_t e[] = {
        PAY("p-late", "1700000500000", "P", "C1", "1000", "EUR"),
        REFUND("r", "1700000600000", "R", "P", "400", "EUR"),
        PAY("p-early", "1700000100000", "P", "C1", "1000", "USD"),
    };
    const char *want = "P||linear|C1|" FUNNEL_ATTR_UNATTRIBUTED "|USD|1000\n";
    scene_both_orders(e, 3, want);
}

/* An earlier duplicate payment_id for another client: the lines match key for key (both
 * clients are unattributed) but must be re-posted under the client that now owns it. */
Test(engine, a_payment_moved_to_another_client_is_reposted_under_it)
{
    const scene_event_t e[] = {
        PAY("p-late", "1700000500000", "P", "C1", "1000", "EUR"),
        PAY("p-early", "1700000100000", "P", "C2", "1000", "EUR"),
    };
    const char *want = "P||linear|C2|" FUNNEL_ATTR_UNATTRIBUTED "|EUR|1000\n";
    scene_both_orders(e, 2, want);
}

#undef PAY
#undef REFUND

Test(engine, only_configured_models_and_awkward_amounts)
{
    static world_t w;
    world_open(&w, (1u << FUNNEL_ATTR_TIME_DECAY) | (1u << FUNNEL_ATTR_U_SHAPED));
    size_t n = journey_events();
    for (size_t i = 0; i < 7; i++) /* the journey and the handoff */
        world_apply(&w, ev_topic[i], ev[i]);
    world_apply(&w, "payment.received",
                "{\"eventId\":\"big\",\"occurredAtMs\":1700086400000,\"paymentId\":\"PB\","
                "\"clientId\":\"C1\",\"amount\":{\"minor\":\"9223372036854775807\","
                "\"currency\":\"EUR\"}}");
    world_apply(&w, "payment.received",
                "{\"eventId\":\"one\",\"occurredAtMs\":1700086400001,\"paymentId\":\"P-1\","
                "\"clientId\":\"C1\",\"amount\":{\"minor\":1,\"currency\":\"EUR\"}}");
    assert_entries_exact(&w, "P-1||2|1|1\nPB||2|9223372036854775807|9223372036854775807\n");
    for (size_t i = 0; i < w.eng.n_out; i++) {
        funnel_attr_credit_t *cr;
        size_t n_cr;
        cr_assert_eq(funnel_attribution_credits(w.eng.out[i]->attribution_credited, &cr, &n_cr), 0);
        for (size_t k = 0; k < n_cr; k++) {
            funnel_attribution_model_t m = cr[k].model;
            cr_assert(m == FUNNEL_ATTR_TIME_DECAY || m == FUNNEL_ATTR_U_SHAPED, "model %d", m);
            cr_assert_neq(cr[k].minor, 0, "no zero lines");
        }
        free(cr);
    }
    /* one minor unit under u_shaped (40/40/10/10): the first touch (largest remainder, then
     * the earlier touch) */
    char got[1024];
    query_text(&w,
               "SELECT campaign, credit FROM attr_postings WHERE payment_id = 'P-1' AND "
               "model = 'u_shaped'",
               got, sizeof got);
    cr_assert_str_eq(got, "search|1\n");
    (void)n;
    world_close(&w);
}

/* ---- the config section ---------------------------------------------------------------- */

static int load_text(const char *text, funnel_config_t *cfg, char *err, size_t err_len)
{
    return fx_config_load_text(text, cfg, err, err_len);
}

/* ---- the journey cache ------------------------------------------------------------------ */

/* Statements run whose SQL holds `needle`, counted by SQLITE_TRACE_STMT (sql_count). */
typedef struct sql_counter {
    const char *needle;
    int n;
} sql_counter_t;

static int sql_count(unsigned type, void *ctx, void *p, void *x)
{
    sql_counter_t *c = ctx;
    (void)type;
    (void)x;
    c->n += strstr(sqlite3_sql(p), c->needle) != NULL;
    return 0;
}

#define PAY_JSON(id, at, pay)                                                                      \
    "{\"eventId\":\"" id "\",\"occurredAtMs\":" at ",\"paymentId\":\"" pay "\","                   \
    "\"clientId\":\"C1\",\"amount\":{\"minor\":1000,\"currency\":\"EUR\"}}"

/* A client's monthly payments are the bulk of the engine's work late in a year: the journey,
 * which no payment changes, is read once and kept, not read again for every payment. */
Test(engine, a_clients_next_payment_does_not_read_its_journey_again)
{
    static world_t w;
    sql_counter_t reads = {.needle = "FROM attr_touches"};
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    sqlite3_trace_v2(funnel_store_db(w.store), SQLITE_TRACE_STMT, sql_count, &reads);
    world_apply(&w, "payment.received", PAY_JSON("e-m1", "1700090000000", "M1"));
    world_apply(&w, "payment.received", PAY_JSON("e-m2", "1700190000000", "M2"));
    sqlite3_trace_v2(funnel_store_db(w.store), 0, NULL, NULL);
    cr_assert_eq(reads.n, 0, "the journey was read %d times", reads.n);
    world_close(&w);
}

/* Applies one event to a (whose engine lives on, journeys cached) and to b (whose engine
 * restarts first, so it reads every journey afresh): both must publish the same bytes. */
static void cache_step(world_t *a, world_t *b, const char *topic, const char *json, bool rollback)
{
    fx_engine_out_clear(&a->eng);
    fx_engine_out_clear(&b->eng);
    world_apply_as(a, topic, json, rollback);
    world_restart_engine(b);
    world_apply_as(b, topic, json, rollback);
    cr_assert_eq(a->eng.n_out, b->eng.n_out, "%s", json);
    for (size_t i = 0; i < a->eng.n_out; i++) {
        size_t la, lb;
        uint8_t *pa = fx_pack(a->eng.out[i], &la), *pb = fx_pack(b->eng.out[i], &lb);
        cr_assert(la == lb && !memcmp(pa, pb, la), "%s: output %zu differs", json, i);
        free(pa);
        free(pb);
    }
}

/* Everything a journey depends on changes between two payments of its client: a touch, an
 * SQL qualification, an earlier handoff to another lead, a rolled-back touch, the
 * configuration. The kept journey must follow each as a fresh read does. */
Test(engine, a_kept_journey_follows_every_change_like_a_fresh_read)
{
    static world_t a, b;
    world_journey(&a, FUNNEL_ATTR_ALL_MODELS);
    world_journey(&b, FUNNEL_ATTR_ALL_MODELS);
    const char *step[][2] = {
        {"payment.received", PAY_JSON("e-m1", "1700090000000", "M1")},
        {"lead.touched", "{\"eventId\":\"e-t3\",\"occurredAtMs\":1699990000000,\"leadId\":\"L1\","
                         "\"touch\":{\"campaign\":\"late\",\"atMs\":1699990000000}}"},
        {"payment.received", PAY_JSON("e-m2", "1700190000000", "M2")},
        {"lead.qualified", "{\"eventId\":\"e-sql0\",\"occurredAtMs\":1699000000000,\"leadId\":"
                           "\"L1\",\"stage\":\"SQL\"}"},
        {"payment.received", PAY_JSON("e-m3", "1700290000000", "M3")},
        {"lead.created", "{\"eventId\":\"e-l2\",\"occurredAtMs\":1699500000000,\"leadId\":\"L2\","
                         "\"touches\":[{\"campaign\":\"other\",\"atMs\":1699400000000}]}"},
        {"client.handed_off", "{\"eventId\":\"e-h0\",\"occurredAtMs\":1699600000000,\"clientId\":"
                              "\"C1\",\"leadId\":\"L2\",\"fromRep\":\"rep1\"}"},
        {"payment.received", PAY_JSON("e-m4", "1700390000000", "M4")},
    };
    for (size_t i = 0; i < sizeof step / sizeof step[0]; i++)
        cache_step(&a, &b, step[i][0], step[i][1], false);
    cache_step(&a, &b, "lead.touched",
               "{\"eventId\":\"e-t4\",\"occurredAtMs\":1699590000000,\"leadId\":\"L2\","
               "\"touch\":{\"campaign\":\"undone\",\"atMs\":1699590000000}}",
               true);
    cache_step(&a, &b, "payment.received", PAY_JSON("e-m5", "1700490000000", "M5"), false);
    ATTRIBUTION(a.cfg)->lookback_days = ATTRIBUTION(b.cfg)->lookback_days = 1;
    ATTRIBUTION(a.cfg)->half_life_days = ATTRIBUTION(b.cfg)->half_life_days = 2;
    cache_step(&a, &b, "payment.received", PAY_JSON("e-m6", "1700590000000", "M6"), false);
    ATTRIBUTION(a.cfg)->models = ATTRIBUTION(b.cfg)->models = 1u << FUNNEL_ATTR_LINEAR;
    cache_step(&a, &b, "payment.received", PAY_JSON("e-m7", "1700690000000", "M7"), false);
    world_close(&a);
    world_close(&b);
}

#define TOUCH_JSON(id, lead, campaign)                                                             \
    "{\"eventId\":\"" id "\",\"occurredAtMs\":1699990000000,\"leadId\":\"" lead "\","              \
    "\"touch\":{\"campaign\":\"" campaign "\",\"source\":\"google\",\"atMs\":1699990000000}}"

/* Most touches name a channel, source, medium and campaign seen before: their attr_tags row is
 * known without a lookup. */
Test(engine, a_touch_with_known_tags_does_not_look_them_up)
{
    static world_t w;
    sql_counter_t reads = {.needle = "SELECT id FROM attr_tags"};
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    world_apply(&w, "lead.touched", TOUCH_JSON("e-k1", "L7", "known"));
    sqlite3_trace_v2(funnel_store_db(w.store), SQLITE_TRACE_STMT, sql_count, &reads);
    world_apply(&w, "lead.touched", TOUCH_JSON("e-k2", "L8", "known"));
    sqlite3_trace_v2(funnel_store_db(w.store), 0, NULL, NULL);
    cr_assert_eq(reads.n, 0, "the tags were looked up %d times", reads.n);
    world_close(&w);
}

/* A tag first stored by a rolled-back batch is gone: a later touch with it stores it again and
 * the journey names it as a fresh read does. */
Test(engine, a_tag_of_a_rolled_back_touch_is_stored_again)
{
    static world_t a, b;
    world_journey(&a, FUNNEL_ATTR_ALL_MODELS);
    world_journey(&b, FUNNEL_ATTR_ALL_MODELS);
    cache_step(&a, &b, "lead.touched", TOUCH_JSON("e-u1", "L1", "undone"), true);
    cache_step(&a, &b, "lead.touched", TOUCH_JSON("e-u2", "L1", "undone"), false);
    cr_assert_eq(fx_sql_int(funnel_store_db(a.store),
                            "SELECT count(*) FROM attr_touches t LEFT JOIN attr_tags g"
                            " ON g.id = t.tag_id WHERE g.id IS NULL",
                            NULL),
                 0);
    world_close(&a);
    world_close(&b);
}

/* Touches are 40% of the events and almost all of their leads have no client yet; payments
 * are most of the rest and almost none is refunded. Neither looks up what it does not have,
 * also after a restart, and one that has it is still settled. */
Test(engine, a_touch_without_handoff_or_a_payment_without_refund_looks_up_nothing)
{
    static world_t w;
    sql_counter_t clients = {.needle = "FROM attr_handoffs WHERE lead_id"};
    sql_counter_t refunds = {.needle = "FROM attr_refunds WHERE payment_id"};
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    world_restart_engine(&w);
    sqlite3 *db = funnel_store_db(w.store);
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT, sql_count, &clients);
    world_apply(&w, "lead.touched", TOUCH_JSON("e-n1", "L-new", "fresh"));
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT, sql_count, &refunds);
    world_apply(&w, "payment.received", PAY_JSON("e-n2", "1700090000000", "P-new"));
    sqlite3_trace_v2(db, 0, NULL, NULL);
    cr_assert_eq(clients.n, 0, "the clients of a lead without handoff were looked up");
    cr_assert_eq(refunds.n, 0, "the refunds of a payment without refund were looked up");
    /* L1 has a client, P1 refunds, both from before the restart: still settled */
    fx_engine_out_clear(&w.eng);
    world_apply(&w, "lead.touched",
                "{\"eventId\":\"e-n3\",\"occurredAtMs\":1699990000000,\"leadId\":\"L1\","
                "\"touch\":{\"campaign\":\"late\",\"atMs\":1699990000000}}");
    cr_assert_gt(w.eng.n_out, 0, "the touch re-settles L1's client");
    world_restart_engine(&w);
    fx_engine_out_clear(&w.eng);
    world_apply(&w, "payment.refunded",
                "{\"eventId\":\"e-n4\",\"occurredAtMs\":1700500000000,\"refundId\":\"R1\","
                "\"paymentId\":\"P1\",\"clientId\":\"C1\",\"amount\":{\"minor\":33331,"
                "\"currency\":\"EUR\"}}");
    cr_assert_eq(w.eng.n_out, 0, "a duplicate refund changes nothing");
    world_close(&w);
}

/* A refund that comes before its payment, with a restart between: the payment still finds it. */
Test(engine, a_refund_before_its_payment_and_a_restart_is_still_found)
{
    static world_t a, b;
    static const char refund[] =
        "{\"eventId\":\"e-rf\",\"occurredAtMs\":1700500000000,\"refundId\":\"RF\","
        "\"paymentId\":\"PF\",\"clientId\":\"C1\",\"amount\":{\"minor\":100,"
        "\"currency\":\"EUR\"}}";
    world_journey(&a, FUNNEL_ATTR_ALL_MODELS);
    world_journey(&b, FUNNEL_ATTR_ALL_MODELS);
    world_apply(&a, "payment.refunded", refund);
    world_apply(&b, "payment.refunded", refund);
    world_restart_engine(&a);
    world_apply(&a, "payment.received", PAY_JSON("e-pf", "1700090000000", "PF"));
    world_apply(&b, "payment.received", PAY_JSON("e-pf", "1700090000000", "PF"));
    cr_assert_eq(net_of(&a, "linear", NULL), net_of(&b, "linear", NULL));
    cr_assert_eq(fx_sql_int(funnel_store_db(a.store),
                            "SELECT count(*) FROM attr_posts WHERE refund_id = 'RF'", NULL),
                 4, "the refund's entry, one row per line");
    world_close(&a);
    world_close(&b);
}

#undef TOUCH_JSON
#undef PAY_JSON

Test(config, attribution_section_defaults_parse_and_refusals)
{
    funnel_config_t cfg;
    char err[512] = "";
    cr_assert_eq(funnel_config_defaults(&cfg, &funnel_engine_registry), 0);
    cr_assert_eq(ATTRIBUTION(cfg)->models, FUNNEL_ATTR_ALL_MODELS);
    cr_assert_eq(ATTRIBUTION(cfg)->lookback_days, 90);
    cr_assert_eq(ATTRIBUTION(cfg)->half_life_days, 7);
    cr_assert_eq(load_text("attribution = { models = [\"linear\", \"time_decay\"]; "
                           "lookback_days = 30; half_life_days = 3; };\n",
                           &cfg, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(ATTRIBUTION(cfg)->models,
                 (1u << FUNNEL_ATTR_LINEAR) | (1u << FUNNEL_ATTR_TIME_DECAY));
    cr_assert_eq(ATTRIBUTION(cfg)->lookback_days, 30);
    cr_assert_eq(ATTRIBUTION(cfg)->half_life_days, 3);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    funnel_config_print(&cfg, mem);
    fclose(mem);
    cr_assert(strstr(text, "models = [\"linear\", \"time_decay\"]"), "%s", text);
    free(text);
    static const char *const bad[] = {
        "attribution = { models = [\"pagerank\"]; };",
        "attribution = { models = []; };",
        "attribution = { lookback_days = 0; };",
        "attribution = { half_life_days = \"week\"; };",
        "attribution = { colour = 1; };",
        "attribution = 5;",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(load_text(bad[i], &cfg, err, sizeof err), FUNNEL_ECONFIG, "%s", bad[i]);
        cr_assert(strstr(err, "attribution"), "%s: %s", bad[i], err);
    }
    /* a refused file left the loaded values alone */
    cr_assert_eq(ATTRIBUTION(cfg)->lookback_days, 30);
    funnel_config_clear(&cfg);
}

/* ---- the day sums behind the report ----------------------------------------------------- */

/* The first UTC midnight at or after t, as the report counts days. */
static int64_t ceil_day(int64_t t)
{
    if (t > INT64_MAX - DAY)
        return INT64_MAX;
    if (t <= INT64_MIN + DAY)
        return INT64_MIN;
    int64_t d = t / DAY - (t % DAY < 0);
    return d * DAY == t ? t : (d + 1) * DAY;
}

/* The report as text, one "group|currency|c0|..|c8" line per row. */
static void report_rows(world_t *w, const char *by, int64_t from, int64_t to, char *out,
                        size_t out_len)
{
    funnel_report_attr_model_t *m = NULL;
    funnel_report_attr_t r = {.by = by, .models = FUNNEL_ATTR_ALL_MODELS, .from = from, .to = to};
    char err[256] = "";
    size_t used = 0;
    cr_assert_eq(funnel_report_attr_model_new(&m), 0);
    cr_assert_eq(funnel_report_attribution(m, w->store, &r, err, sizeof err), 0, "%s", err);
    out[0] = '\0';
    for (size_t i = 0; i < r.n; i++) {
        used += (size_t)snprintf(out + used, out_len - used, "%s|%s", r.rows[i].group,
                                 r.rows[i].currency);
        for (unsigned k = 0; k < NM; k++)
            used += (size_t)snprintf(out + used, out_len - used, "|%lld",
                                     (long long)r.rows[i].credit[k]);
        used += (size_t)snprintf(out + used, out_len - used, "\n");
        cr_assert_lt(used, out_len);
    }
    funnel_report_attribution_clear(&r);
    funnel_report_attr_model_destroy(&m);
}

/* Appends one report line of raw_rows: "group|currency|c0|..|c8". */
static size_t raw_line(char *out, size_t out_len, const char *group, const char *currency,
                       const __int128 *total)
{
    size_t used = (size_t)snprintf(out, out_len, "%s|%s", group, currency);
    for (unsigned k = 0; k < NM; k++) {
        cr_assert(total[k] <= INT64_MAX && total[k] >= INT64_MIN);
        used += (size_t)snprintf(out + used, out_len - used, "|%lld", (long long)total[k]);
    }
    used += (size_t)snprintf(out + used, out_len - used, "\n");
    cr_assert_lt(used, out_len);
    return used;
}

/* The same figures summed in 128 bits from every raw posting of the period, as the report
 * counts it. */
static void raw_rows(world_t *w, const char *by, int64_t from, int64_t to, char *out,
                     size_t out_len)
{
    char sql[512], group[256] = "", currency[16] = "";
    sqlite3_stmt *st;
    __int128 total[NM] = {0};
    size_t used = 0;
    bool any = false;
    snprintf(sql, sizeof sql,
             "SELECT %s, currency, model, credit FROM attr_postings WHERE at_ms >= %lld AND"
             " at_ms < %lld ORDER BY 1, 2",
             by, (long long)ceil_day(from), (long long)ceil_day(to));
    cr_assert_eq(sqlite3_prepare_v2(funnel_store_db(w->store), sql, -1, &st, NULL), SQLITE_OK);
    out[0] = '\0';
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *g = (const char *)sqlite3_column_text(st, 0);
        const char *c = (const char *)sqlite3_column_text(st, 1);
        if (any && (strcmp(g, group) || strcmp(c, currency))) {
            used += raw_line(out + used, out_len - used, group, currency, total);
            memset(total, 0, sizeof total);
        }
        any = true;
        snprintf(group, sizeof group, "%s", g);
        snprintf(currency, sizeof currency, "%s", c);
        funnel_attribution_model_t m;
        cr_assert_eq(funnel_attribution_model_parse((const char *)sqlite3_column_text(st, 2), &m),
                     0);
        total[m] += sqlite3_column_int64(st, 3);
    }
    cr_assert_eq(rc, SQLITE_DONE);
    if (any)
        raw_line(out + used, out_len - used, group, currency, total);
    sqlite3_finalize(st);
}

static uint64_t lcg(uint64_t *seed)
{
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return *seed >> 33;
}

#define MIX_MAX 96

/* A mixed stream over 90 days: leads with touches of several tags, SQL qualifications,
 * handoffs, payments in two currencies, refunds (some before their payment, some in the other
 * currency, some moved to another payment by a repeated refund_id). */
static size_t mixed_events(uint64_t seed, char (*evs)[512], const char **topics)
{
    static const char *const campaigns[] = {"spring", "summer", "brand"};
    static const char *const sources[] = {"google", "meta"};
    static const char *const cur[] = {"EUR", "USD"};
    const int64_t base = T0 - 40 * DAY;
    size_t n = 0;
#define MIX(topic, ...)                                                                            \
    do {                                                                                           \
        topics[n] = topic;                                                                         \
        snprintf(evs[n++], 512, __VA_ARGS__);                                                      \
    } while (0)
    for (int l = 0; l < 5; l++) {
        int64_t at = base + (int64_t)(lcg(&seed) % (20 * DAY));
        MIX("lead.created",
            "{\"eventId\":\"mc-%d\",\"occurredAtMs\":%lld,\"leadId\":\"ML%d\",\"touches\":["
            "{\"campaign\":\"%s\",\"source\":\"%s\",\"atMs\":%lld}]}",
            l, (long long)at, l, campaigns[lcg(&seed) % 3], sources[lcg(&seed) % 2],
            (long long)(at - 3 * DAY));
        for (int t = 0; t < 3; t++)
            MIX("lead.touched",
                "{\"eventId\":\"mt-%d-%d\",\"occurredAtMs\":%lld,\"leadId\":\"ML%d\",\"touch\":"
                "{\"campaign\":\"%s\",\"source\":\"%s\",\"medium\":\"cpc\"}}",
                l, t, (long long)(at + (int64_t)(lcg(&seed) % (9 * DAY))), l,
                campaigns[lcg(&seed) % 3], sources[lcg(&seed) % 2]);
        if (l % 2)
            MIX("lead.qualified",
                "{\"eventId\":\"mq-%d\",\"occurredAtMs\":%lld,\"leadId\":\"ML%d\","
                "\"stage\":\"SQL\"}",
                l, (long long)(at + 4 * DAY), l);
        if (l < 4)
            MIX("client.handed_off",
                "{\"eventId\":\"mh-%d\",\"occurredAtMs\":%lld,\"clientId\":\"MC%d\","
                "\"leadId\":\"ML%d\",\"fromRep\":\"rep1\"}",
                l, (long long)(at + 10 * DAY), l, l);
    }
    for (int p = 0; p < 24; p++)
        MIX("payment.received",
            "{\"eventId\":\"mp-%d\",\"occurredAtMs\":%lld,\"paymentId\":\"MP%d\","
            "\"clientId\":\"MC%d\",\"amount\":{\"minor\":%llu,\"currency\":\"%s\"}}",
            p, (long long)(T0 - 10 * DAY + (int64_t)(lcg(&seed) % (60 * DAY))), p,
            (int)(lcg(&seed) % 5), (unsigned long long)(1 + lcg(&seed) % 100000),
            cur[lcg(&seed) % 2]);
    for (int k = 0; k < 10; k++)
        MIX("payment.refunded",
            "{\"eventId\":\"mr-%d\",\"occurredAtMs\":%lld,\"refundId\":\"MR%d\","
            "\"paymentId\":\"MP%d\",\"clientId\":\"MC0\",\"amount\":{\"minor\":%llu,"
            "\"currency\":\"%s\"}}",
            k, (long long)(T0 + (int64_t)(lcg(&seed) % (50 * DAY))), k % 8, (int)(lcg(&seed) % 24),
            (unsigned long long)(1 + lcg(&seed) % 60000), cur[lcg(&seed) % 2]);
#undef MIX
    cr_assert_leq(n, MIX_MAX);
    return n;
}

/* A random period: all time, open at either end, or between two instants (not midnights). */
static void random_range(uint64_t *seed, int64_t *from, int64_t *to)
{
    int64_t lo = T0 - 50 * DAY + (int64_t)(lcg(seed) % (110 * DAY));
    int64_t hi = lo + (int64_t)(lcg(seed) % (70 * DAY));
    switch (lcg(seed) % 5) {
    case 0:
        *from = INT64_MIN, *to = INT64_MAX;
        break;
    case 1:
        *from = INT64_MIN, *to = hi;
        break;
    case 2:
        *from = lo, *to = INT64_MAX;
        break;
    default:
        *from = lo, *to = hi;
    }
}

/* Whatever the arrival order, the report of any period and grouping equals the sum of the raw
 * postings of that period, and the day sums themselves are the same (but for sums that came
 * back to zero: a line posted and reversed in one order only). */
Test(engine, the_report_equals_the_raw_postings_for_any_period_order_and_refund, .timeout = 240)
{
    static world_t w;
    static char evs[MIX_MAX][512], got[32768], want[32768], sums0[65536], sums[65536];
    static const char *topics[MIX_MAX];
    static const char *const by[] = {"campaign", "source", "medium", "channel"};
    uint64_t seed = 7;
    for (int round = 0; round < 6; round++) {
        size_t n = mixed_events(11, evs, topics), perm[MIX_MAX];
        for (size_t i = 0; i < n; i++)
            perm[i] = i;
        for (size_t i = n - 1; round && i > 0; i--) {
            size_t k = (size_t)(lcg(&seed) % (i + 1)), t = perm[i];
            perm[i] = perm[k];
            perm[k] = t;
        }
        world_open(&w, FUNNEL_ATTR_ALL_MODELS);
        for (size_t i = 0; i < n; i++)
            world_apply(&w, topics[perm[i]], evs[perm[i]]);
        cr_assert_gt(fx_sql_int(funnel_store_db(w.store),
                                "SELECT count(*) FROM attr_postings WHERE reversal", NULL),
                     0, "the orders make reversals");
        for (int q = 0; q < 40; q++) {
            int64_t from, to;
            random_range(&seed, &from, &to);
            const char *g = by[q % 4];
            report_rows(&w, g, from, to, got, sizeof got);
            raw_rows(&w, g, from, to, want, sizeof want);
            cr_assert_str_eq(got, want, "round %d, by %s, [%lld, %lld)", round, g, (long long)from,
                             (long long)to);
        }
        query_text(&w,
                   "SELECT s.day, g.campaign, g.source, g.medium, g.channel, s.currency, s.c0,"
                   " s.c1, s.c2, s.c3, s.c4, s.c5, s.c6, s.c7, s.c8 FROM attr_sums s JOIN"
                   " attr_tags g ON g.id = s.tag_id WHERE s.c0 OR s.c1 OR s.c2 OR s.c3 OR s.c4"
                   " OR s.c5 OR s.c6 OR s.c7 OR s.c8 ORDER BY 1, 2, 3, 4, 5, 6",
                   round ? sums : sums0, sizeof sums);
        if (round)
            cr_assert_str_eq(sums, sums0, "round %d: the day sums depend on the order", round);
        world_close(&w);
    }
}

/* The report of all time adds up one row per day and tag: it does not read the postings, so
 * a year of payments costs it no more than a day of them. */
Test(engine, the_report_of_all_time_reads_day_sums_not_postings)
{
    static world_t w;
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    long before = report_steps(&w, INT64_MIN, INT64_MAX);
    payments_apply(&w, "day", 60, T0 + 3 * DAY);
    long after = report_steps(&w, INT64_MIN, INT64_MAX);
    /* Sixty payments of four lines each would be hundreds of steps; their day sums one row
     * per tag of that day. */
    cr_assert_lt(after, before + 60, "%ld steps, then %ld", before, after);
    world_close(&w);
}

/* Sums too large for 64 bits on one day (a later refund brings the period back in range) give
 * the same report as the raw postings, which are summed in 128 bits. */
Test(engine, a_day_sum_past_int64_gives_the_raw_figures)
{
    static world_t w;
    static char got[8192], want[8192];
    world_journey(&w, 1u << FUNNEL_ATTR_FIRST_TOUCH);
    for (int i = 0; i < 2; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"eventId\":\"e-big-%d\",\"occurredAtMs\":%lld,\"paymentId\":\"PB%d\","
                 "\"clientId\":\"C1\",\"amount\":{\"minor\":5000000000000000000,"
                 "\"currency\":\"EUR\"}}",
                 i, T0 + 5 * DAY + i, i);
        world_apply(&w, "payment.received", json);
    }
    world_apply(&w, "payment.refunded",
                "{\"eventId\":\"e-big-r\",\"occurredAtMs\":1700900000000,\"refundId\":\"RB\","
                "\"paymentId\":\"PB1\",\"clientId\":\"C1\",\"amount\":{\"minor\":"
                "5000000000000000000,\"currency\":\"EUR\"}}");
    report_rows(&w, "campaign", INT64_MIN, INT64_MAX, got, sizeof got);
    raw_rows(&w, "campaign", INT64_MIN, INT64_MAX, want, sizeof want);
    cr_assert_str_eq(got, want);
    world_close(&w);
}

/* A database of schema 5 (no day sums) gets them from its postings when the engine starts,
 * and reports and goes on exactly as one that had them from the start. */
Test(engine, schema_6_fills_the_day_sums_from_a_schema_5_database)
{
    static world_t a, b;
    static char evs[MIX_MAX][512], ra[32768], rb[32768];
    static const char *topics[MIX_MAX];
    size_t n = mixed_events(5, evs, topics);
    world_open(&a, FUNNEL_ATTR_ALL_MODELS);
    world_open(&b, FUNNEL_ATTR_ALL_MODELS);
    for (size_t i = 0; i < n; i++) {
        world_apply(&a, topics[i], evs[i]);
        world_apply(&b, topics[i], evs[i]);
        if (i != n / 2)
            continue;
        char *msg = NULL;
        cr_assert_eq(sqlite3_exec(funnel_store_db(a.store),
                                  BEFORE_7
                                  "DROP TABLE attr_sums; DELETE FROM attr_tags WHERE id NOT IN"
                                  " (SELECT tag_id FROM attr_touches);"
                                  "UPDATE meta SET value = 5 WHERE key = 'schema.attribution';",
                                  NULL, NULL, &msg),
                     SQLITE_OK, "%s", msg);
        world_restart_engine(&a);
        cr_assert_eq(funnel_store_module_version(a.store, "attribution"), 7);
    }
    static const char *const by[] = {"campaign", "source", "medium", "channel"};
    uint64_t seed = 3;
    for (int q = 0; q < 16; q++) {
        int64_t from, to;
        random_range(&seed, &from, &to);
        report_rows(&a, by[q % 4], from, to, ra, sizeof ra);
        report_rows(&b, by[q % 4], from, to, rb, sizeof rb);
        cr_assert_str_eq(ra, rb);
        raw_rows(&a, by[q % 4], from, to, rb, sizeof rb);
        cr_assert_str_eq(ra, rb);
    }
    world_close(&a);
    world_close(&b);
}

/* Drops the lines of report text whose nine credits are all zero, in place. */
static void drop_zero_rows(char *text)
{
    static const char zeros[] = "|0|0|0|0|0|0|0|0|0\n";
    char *out = text;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t len = (size_t)(end - line) + 1;
        bool zero = len >= sizeof zeros - 1 &&
                    !memcmp(end + 1 - (sizeof zeros - 1), zeros, sizeof zeros - 1);
        if (!zero) {
            memmove(out, line, len);
            out += len;
        }
        line = end + 1;
    }
    *out = '\0';
}

#define REFUND_JSON(id, at)                                                                        \
    "{\"eventId\":\"" id "\",\"occurredAtMs\":" at ",\"refundId\":\"RD\",\"paymentId\":\"P1\","    \
    "\"clientId\":\"C1\",\"amount\":{\"minor\":500,\"currency\":\"EUR\"}}"

/* A refund repeated with an earlier time (the earliest wins) moves its credits to that day in
 * either order: a credit is never left on the day of the later duplicate. */
Test(engine, an_earlier_duplicate_moves_the_credits_to_its_day_in_any_order)
{
    static world_t a, b;
    static char ra[8192], rb[8192];
    const int64_t later = 1700600000000LL;
    world_journey(&a, FUNNEL_ATTR_ALL_MODELS);
    world_journey(&b, FUNNEL_ATTR_ALL_MODELS);
    world_apply(&a, "payment.refunded", REFUND_JSON("e-rd0", "1700500000000"));
    world_apply(&a, "payment.refunded", REFUND_JSON("e-rd1", "1700600000000"));
    world_apply(&b, "payment.refunded", REFUND_JSON("e-rd1", "1700600000000"));
    world_apply(&b, "payment.refunded", REFUND_JSON("e-rd0", "1700500000000"));
    raw_rows(&a, "campaign", later - later % DAY, later, ra, sizeof ra);
    raw_rows(&b, "campaign", later - later % DAY, later, rb, sizeof rb);
    drop_zero_rows(rb);
    cr_assert_str_eq(ra, "", "in order nothing is credited on the later day");
    cr_assert_str_eq(rb, ra);
    report_rows(&b, "campaign", INT64_MIN, INT64_MAX, rb, sizeof rb);
    report_rows(&a, "campaign", INT64_MIN, INT64_MAX, ra, sizeof ra);
    cr_assert_str_eq(rb, ra);
    world_close(&a);
    world_close(&b);
}

#undef REFUND_JSON

/* ---- the message's runs ------------------------------------------------------------------ */

/* One credit of a published message as text, keyed for sorting like the postings below. */
typedef struct msg_line {
    char key[256]; /* cause|payment|refund|at_ms */
    funnel_attribution_model_t model;
    size_t msg, k;
    char text[512];
} msg_line_t;

static int msg_line_cmp(const void *pa, const void *pb)
{
    const msg_line_t *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    if (c)
        return c;
    if (a->model != b->model)
        return a->model < b->model ? -1 : 1;
    if (a->msg != b->msg)
        return a->msg < b->msg ? -1 : 1;
    return (a->k > b->k) - (a->k < b->k);
}

/* Every credit of every published message, unpacked, as the lines query below prints them. */
static void published_credits(world_t *w, char *out, size_t out_len)
{
    msg_line_t *lines = NULL;
    size_t n = 0, used = 0;
    for (size_t i = 0; i < w->eng.n_out; i++) {
        const funnel_envelope_t *env = w->eng.out[i];
        const Funnel__V1__AttributionCredited *c = env->attribution_credited;
        funnel_attr_credit_t *cr;
        size_t n_cr;
        cr_assert_eq(funnel_attribution_credits(c, &cr, &n_cr), 0);
        lines = realloc(lines, (n + n_cr) * sizeof *lines);
        cr_assert(lines);
        for (size_t k = 0; k < n_cr; k++) {
            const Funnel__V1__AttributionTouch *t = c->touches[cr[k].touch];
            msg_line_t *l = &lines[n++];
            l->model = cr[k].model;
            l->msg = i;
            l->k = k;
            snprintf(l->key, sizeof l->key, "%s|%s|%s|%lld", c->cause_event_id, c->payment_id,
                     c->refund_id, (long long)env->occurred_at_ms);
            snprintf(l->text, sizeof l->text, "%s|%s|%s|%s|%s|%s|%s|%s|%lld|%s|%s|%lld|%d|%d\n",
                     l->key, funnel_attribution_model_name(cr[k].model),
                     t->touch_id[0] ? t->touch_id : FUNNEL_ATTR_UNATTRIBUTED,
                     !t->touch_id[0] ? ""
                     : t->lead_id[0] ? t->lead_id
                                     : c->lead_id,
                     t->campaign, t->source, t->medium, t->channel, (long long)t->touch_at_ms,
                     cr[k].currency, cr[k].client_id, (long long)cr[k].minor, cr[k].weight_ppm,
                     cr[k].reversal);
        }
        free(cr);
    }
    qsort(lines, n, sizeof *lines, msg_line_cmp);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(out + used, out_len - used, "%s", lines[i].text);
        cr_assert_lt(used, out_len);
    }
    free(lines);
}

/* What subscribers must recover from the messages: every posted credit, with its touch,
 * amount, currency, client, weight and direction, in posting order within its entry and
 * model. (The lead of an unattributed line is not told: an empty lead_id means the message's.) */
Test(engine, the_messages_carry_exactly_the_posted_credits)
{
    static world_t w;
    static char got[1 << 20], want[1 << 20];
    world_open(&w, FUNNEL_ATTR_ALL_MODELS);
    schema_4_world(&w, false);
    /* a payment moved to another client and in another currency by an earlier duplicate */
    world_apply(&w, "payment.received",
                "{\"eventId\":\"e-dup\",\"occurredAtMs\":1700000000001,\"paymentId\":\"P9\","
                "\"clientId\":\"C9\",\"amount\":{\"minor\":901,\"currency\":\"USD\"}}");
    published_credits(&w, got, sizeof got);
    query_text(&w,
               "SELECT cause_event_id || '|' || payment_id || '|' || refund_id || '|' || at_ms,"
               " model, line_key, CASE line_key WHEN '" FUNNEL_ATTR_UNATTRIBUTED "' THEN ''"
               " ELSE lead_id END, campaign, source, medium, channel, touch_at_ms,"
               " currency, client_id, credit, weight_ppm, reversal FROM attr_postings p"
               " JOIN attr_models m ON m.name = p.model ORDER BY 1, m.k, p.id",
               want, sizeof want);
    cr_assert_gt(strlen(want), 1000);
    cr_assert(strstr(want, "|C9|") && strstr(want, "|USD|"), "the test moves a payment");
    cr_assert_str_eq(got, want);
    world_close(&w);
}

/* The message of a payment over a 4-touch journey under nine models: the touches once, each
 * model's amounts and weights packed, the currency and client once. */
Test(engine, a_payments_message_packs_its_credits)
{
    static world_t w;
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    fx_engine_out_clear(&w.eng);
    world_apply(&w, "payment.received", P9_JSON);
    cr_assert_eq(w.eng.n_out, 1);
    const Funnel__V1__AttributionCredited *c = w.eng.out[0]->attribution_credited;
    cr_assert_eq(c->n_touches, 4);
    size_t len = funnel__v1__envelope__get_packed_size(w.eng.out[0]);
    /* 36 credits as one message each of model name, touch, Money, weight were 1,100 bytes */
    cr_assert_leq(len, 480, "%zu bytes", len);
    world_close(&w);
}

/* A batch's touches land on its lead's key wherever that lead is in a year of leads: one page
 * written per touch. Keyed by their span of 16 days first, a span's touches of every lead are
 * stored together. */
Test(engine, touches_are_stored_by_span_then_lead)
{
    static world_t w;
    world_open(&w, 1u << FUNNEL_ATTR_LINEAR);
    static const char *const touch[][3] = {{"e-a1", "LA", "1699000000000"},
                                           {"e-b2", "LB", "1700600000000"},
                                           {"e-a3", "LA", "1702200000000"}};
    for (size_t i = 0; i < 3; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"eventId\":\"%s\",\"occurredAtMs\":%s,\"leadId\":\"%s\",\"touch\":{"
                 "\"campaign\":\"c%zu\",\"atMs\":%s}}",
                 touch[i][0], touch[i][2], touch[i][1], i, touch[i][2]);
        world_apply(&w, "lead.touched", json);
    }
    char got[256];
    /* the table's own order, its primary key */
    query_text(&w, "SELECT lead_id, span * 1382400000 + ms FROM attr_touches", got, sizeof got);
    cr_assert_str_eq(got, "LA|1699000000000\nLB|1700600000000\nLA|1702200000000\n");
    world_close(&w);
}

#define EDGE_TOUCH(id, at)                                                                         \
    "{\"eventId\":\"" id "\",\"occurredAtMs\":" at ",\"leadId\":\"LE\",\"touch\":{"                \
    "\"campaign\":\"" id "\",\"atMs\":" at "}}"

/* The lookback window is read span by span: a touch on its first or last millisecond counts,
 * one a millisecond outside does not, across a span boundary and before 1970. */
Test(engine, the_journey_window_holds_its_edges_to_the_millisecond)
{
    static world_t w;
    world_open(&w, 1u << FUNNEL_ATTR_LINEAR);
    ATTRIBUTION(w.cfg)->lookback_days = 2;
    /* handoff at 1 day - 1 ms: the window is [-1 day - 1 ms, 1 day - 1 ms], spans -1 and 0 */
    world_apply(&w, "lead.touched", EDGE_TOUCH("before", "-86400002"));
    world_apply(&w, "lead.touched", EDGE_TOUCH("first", "-86400001"));
    world_apply(&w, "lead.touched", EDGE_TOUCH("end", "-1")); /* (0 would read as no time) */
    world_apply(&w, "lead.touched", EDGE_TOUCH("start", "1"));
    world_apply(&w, "lead.touched", EDGE_TOUCH("last", "86399999"));
    world_apply(&w, "lead.touched", EDGE_TOUCH("after", "86400000"));
    const Funnel__V1__AttributionCredited *c =
        handed_off_then_paid(&w, "CE", "LE", 86399999, 90000000, 300);
    cr_assert_eq(c->n_touches, 4);
    cr_assert_str_eq(c->touches[0]->campaign, "first");
    cr_assert_str_eq(c->touches[1]->campaign, "end");
    cr_assert_str_eq(c->touches[2]->campaign, "start");
    cr_assert_str_eq(c->touches[3]->campaign, "last");
    world_close(&w);
}

#undef EDGE_TOUCH

/* Posts were found by an index by payment, written at a random place for every post. Now
 * each settlement's posts are one run of ids, listed in the payment's row. */
Test(engine, a_payments_posts_are_found_by_the_ids_its_row_lists)
{
    static world_t w;
    world_journey(&w, FUNNEL_ATTR_ALL_MODELS);
    sqlite3 *db = funnel_store_db(w.store);
    cr_assert_eq(fx_sql_int(db,
                            "SELECT count(*) FROM sqlite_master WHERE tbl_name = 'attr_posts'"
                            " AND type = 'index'",
                            NULL),
                 1, "by time only");
    /* P1 (ids 1-4), P2 (5-8), P1's two refunds (9-12, 13-16), P3 (17): a run per
     * settlement */
    char got[256];
    query_text(&w, "SELECT posts FROM attr_payments ORDER BY payment_id", got, sizeof got);
    cr_assert_str_eq(got, "1:4,9:4,13:4\n5:4\n17:1\n");
    world_close(&w);
}

/* A database of schema 6 (touches by lead, payments by rowid, posts by payment) gets its
 * touches keyed by span and each payment's list of its posts when the engine starts, and goes
 * on publishing and reporting exactly as one made by schema 7: later payments read journeys
 * of migrated touches, later refunds the migrated lists. */
Test(engine, schema_7_carries_touches_and_posts_of_a_schema_6_database)
{
    static world_t a, b;
    static char evs[MIX_MAX][512], ra[1 << 16], rb[1 << 16];
    static const char *topics[MIX_MAX];
    size_t n = mixed_events(7, evs, topics);
    world_open(&a, FUNNEL_ATTR_ALL_MODELS);
    world_open(&b, FUNNEL_ATTR_ALL_MODELS);
    for (size_t i = 0; i < n; i++) {
        fx_engine_out_clear(&a.eng);
        fx_engine_out_clear(&b.eng);
        world_apply(&a, topics[i], evs[i]);
        world_apply(&b, topics[i], evs[i]);
        cr_assert_eq(a.eng.n_out, b.eng.n_out, "%s", evs[i]);
        for (size_t k = 0; k < a.eng.n_out; k++) {
            size_t la, lb;
            uint8_t *pa = fx_pack(a.eng.out[k], &la), *pb = fx_pack(b.eng.out[k], &lb);
            cr_assert(la == lb && !memcmp(pa, pb, la), "%s: output %zu differs", evs[i], k);
            free(pa);
            free(pb);
        }
        if (i != n - 12) /* most payments in, the refunds to come */
            continue;
        char *msg = NULL;
        cr_assert_eq(sqlite3_exec(funnel_store_db(a.store),
                                  BEFORE_7
                                  "UPDATE meta SET value = 6 WHERE key = 'schema.attribution';",
                                  NULL, NULL, &msg),
                     SQLITE_OK, "%s", msg);
        world_restart_engine(&a);
        world_restart_engine(&b);
        cr_assert_eq(funnel_store_module_version(a.store, "attribution"), 7);
    }
    query_text(&a, "SELECT payment_id, posts FROM attr_payments ORDER BY 1", ra, sizeof ra);
    query_text(&b, "SELECT payment_id, posts FROM attr_payments ORDER BY 1", rb, sizeof rb);
    cr_assert_str_eq(ra, rb);
    cr_assert(strstr(ra, ","), "a payment with several runs: %s", ra);
    query_text(&a, "SELECT * FROM attr_touches", ra, sizeof ra);
    query_text(&b, "SELECT * FROM attr_touches", rb, sizeof rb);
    cr_assert_str_eq(ra, rb);
    report_text(&a, ra, sizeof ra);
    report_text(&b, rb, sizeof rb);
    cr_assert_str_eq(ra, rb);
    world_close(&a);
    world_close(&b);
}
