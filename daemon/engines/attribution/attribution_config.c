/* attribution_config.c — the `attribution { models = [...]; lookback_days; half_life_days; }`
 * section of funneld.conf, read through the engine registry (engines/registry.c). */
#include "attribution.h"
#include "funnel/error.h"

#include <libconfig.h>
#include <string.h>

#define DAYS_MAX 3650

int funnel_attribution_config_defaults(void *sec)
{
    funnel_attribution_config_t *c = sec;
    c->models = FUNNEL_ATTR_ALL_MODELS;
    c->lookback_days = 90;
    c->half_life_days = 7;
    return 0;
}

static int parse_models(const config_setting_t *s, unsigned *out, char *err, size_t err_len)
{
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) {
        snprintf(err, err_len, "models: expected a list of model names");
        return FUNNEL_ECONFIG;
    }
    unsigned models = 0;
    for (int i = 0; i < config_setting_length(s); i++) {
        const char *name = config_setting_get_string_elem(s, i);
        funnel_attribution_model_t m;
        if (!name || funnel_attribution_model_parse(name, &m)) {
            snprintf(err, err_len,
                     "models[%d]: '%s' is not first_touch, last_touch, linear, u_shaped, "
                     "w_shaped, full_path, time_decay, j_shaped or inverse_j",
                     i, name ? name : "(not a string)");
            return FUNNEL_ECONFIG;
        }
        models |= 1u << m;
    }
    if (!models) {
        snprintf(err, err_len, "models: name at least one model");
        return FUNNEL_ECONFIG;
    }
    *out = models;
    return 0;
}

static int parse_days(const config_setting_t *s, int64_t *out, char *err, size_t err_len)
{
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        snprintf(err, err_len, "%s: expected an integer", config_setting_name(s));
        return FUNNEL_ECONFIG;
    }
    long long v = config_setting_get_int64(s);
    if (v < 1 || v > DAYS_MAX) {
        snprintf(err, err_len, "%s: %lld is outside 1..%d", config_setting_name(s), v, DAYS_MAX);
        return FUNNEL_ECONFIG;
    }
    *out = v;
    return 0;
}

/* Reads into a copy so a refused group leaves sec as it was. */
int funnel_attribution_config_parse(const struct config_setting_t *group, void *sec, char *err,
                                    size_t err_len)
{
    funnel_attribution_config_t c = *(funnel_attribution_config_t *)sec;
    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        int rc;
        if (strcmp(name, "models") == 0)
            rc = parse_models(s, &c.models, err, err_len);
        else if (strcmp(name, "lookback_days") == 0)
            rc = parse_days(s, &c.lookback_days, err, err_len);
        else if (strcmp(name, "half_life_days") == 0)
            rc = parse_days(s, &c.half_life_days, err, err_len);
        else {
            snprintf(err, err_len,
                     "unknown option '%s' (models, lookback_days, half_life_days) at line %d", name,
                     config_setting_source_line(s));
            rc = FUNNEL_ECONFIG;
        }
        if (rc)
            return rc;
    }
    *(funnel_attribution_config_t *)sec = c;
    return 0;
}

void funnel_attribution_config_clear(void *sec)
{
    memset(sec, 0, sizeof(funnel_attribution_config_t));
}

void funnel_attribution_config_print(const void *sec, FILE *out)
{
    const funnel_attribution_config_t *c = sec;
    fprintf(out, "attribution = {\n  models = [");
    const char *sep = "";
    for (unsigned m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++)
        if (c->models & (1u << m)) {
            fprintf(out, "%s\"%s\"", sep, funnel_attribution_model_name(m));
            sep = ", ";
        }
    fprintf(out, "];\n  lookback_days = %lld;\n  half_life_days = %lld;\n};\n",
            (long long)c->lookback_days, (long long)c->half_life_days);
}
