/* ledger_plan.c — the commission plan: config section, rates, terms, rounding. */
#include "ledger_plan.h"
#include "funnel/date.h"
#include "funnel/error.h"
#include "funnel/money.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_DAY 86400000LL
#define TERM_MAX   1200 /* months: a century is "for ever" in all but name */

/* A term runs whole calendar months from its start; the date arithmetic is common/date.c's. */
int64_t funnel_commission_term_end(int64_t start_ms, int64_t months)
{
    return months <= 0 ? INT64_MAX : funnel_date_add_months(start_ms, months);
}

/* --- rates and rounding ------------------------------------------------------------------- */

int64_t funnel_commission_rate_at(const funnel_commission_config_t *plan, const char *rep,
                                  int64_t at_ms)
{
    int64_t rate = plan->default_rate_bp, best_from = INT64_MIN;
    for (size_t i = 0; i < plan->n_rates; i++) {
        const funnel_commission_rate_t *r = &plan->rates[i];
        if (r->from_ms <= at_ms && r->from_ms >= best_from && strcmp(r->rep, rep) == 0) {
            best_from = r->from_ms;
            rate = r->rate_bp;
        }
    }
    return rate;
}

int funnel_commission_accrual(int64_t amount, int64_t rate_bp, int64_t *out)
{
    return funnel_money_scale(amount, rate_bp, FUNNEL_BP_MAX, FUNNEL_ROUND_DOWN, out);
}

int funnel_commission_clawback_total(int64_t accrued, int64_t refunded, int64_t paid, int64_t *out)
{
    if (paid <= 0 || refunded < 0)
        return FUNNEL_EINVAL;
    /* A refund beyond the payment claws back the whole accrual, never more. */
    return funnel_money_scale(accrued, refunded < paid ? refunded : paid, paid, FUNNEL_ROUND_UP,
                              out);
}

/* --- the config section ------------------------------------------------------------------ */

int funnel_commission_config_defaults(void *sec)
{
    funnel_commission_config_t *c = sec;
    memset(c, 0, sizeof *c);
    return 0;
}

void funnel_commission_config_clear(void *sec)
{
    funnel_commission_config_t *c = sec;
    for (size_t i = 0; i < c->n_rates; i++)
        free(c->rates[i].rep);
    free(c->rates);
    memset(c, 0, sizeof *c);
}

static int rate_cmp(const void *a, const void *b)
{
    const funnel_commission_rate_t *x = a, *y = b;
    int c = strcmp(x->rep, y->rep);
    if (c)
        return c;
    return (x->from_ms > y->from_ms) - (x->from_ms < y->from_ms);
}

/* Reads an integer member of group within min..max; absent keeps *out. */
static int get_int(const config_setting_t *g, const char *name, int64_t min, int64_t max,
                   int64_t *out, char *err, size_t err_len)
{
    const config_setting_t *s = config_setting_get_member(g, name);
    if (!s)
        return 0;
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        snprintf(err, err_len, "%s: expected an integer", name);
        return FUNNEL_ECONFIG;
    }
    long long v = config_setting_get_int64(s);
    if (v < min || v > max) {
        snprintf(err, err_len, "%s: %lld is outside %lld..%lld", name, v, (long long)min,
                 (long long)max);
        return FUNNEL_ECONFIG;
    }
    *out = v;
    return 0;
}

/* Refuses members of g not in names: a typo must not silently become a default. */
static int check_members(const config_setting_t *g, const char *const *names, const char *where,
                         char *err, size_t err_len)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        const char *n = config_setting_name(config_setting_get_elem(g, (unsigned)i));
        bool known = false;
        for (const char *const *k = names; *k && !known; k++)
            known = n && strcmp(n, *k) == 0;
        if (!known) {
            snprintf(err, err_len, "%s: unknown option '%s'", where, n ? n : "?");
            return FUNNEL_ECONFIG;
        }
    }
    return 0;
}

static int parse_rate(const config_setting_t *e, int idx, funnel_commission_rate_t *r, char *err,
                      size_t err_len)
{
    static const char *const names[] = {"rep", "rate_bp", "from", NULL};
    char where[32], why[160];
    snprintf(where, sizeof where, "rates[%d]", idx);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
        snprintf(err, err_len, "%s: expected a group { rep = ...; rate_bp = ...; from = ...; }",
                 where);
        return FUNNEL_ECONFIG;
    }
    int rc = check_members(e, names, where, err, err_len);
    if (rc)
        return rc;
    const char *rep = NULL, *from = NULL;
    int64_t end;
    r->rate_bp = -1;
    if (!config_setting_lookup_string(e, "rep", &rep) || !*rep ||
        !config_setting_lookup_string(e, "from", &from)) {
        snprintf(err, err_len, "%s: needs rep and from (strings) and rate_bp", where);
        return FUNNEL_ECONFIG;
    }
    if ((rc = get_int(e, "rate_bp", 0, FUNNEL_BP_MAX, &r->rate_bp, why, sizeof why))) {
        snprintf(err, err_len, "%s.%s", where, why);
        return rc;
    }
    if (r->rate_bp < 0) {
        snprintf(err, err_len, "%s: rate_bp is missing", where);
        return FUNNEL_ECONFIG;
    }
    if (funnel_date_parse(from, &r->from_ms, &end) || strlen(from) != 10) {
        snprintf(err, err_len, "%s.from: '%.40s' is not a date YYYY-MM-DD", where, from);
        return FUNNEL_ECONFIG;
    }
    if (!(r->rep = strdup(rep)))
        return FUNNEL_ENOMEM;
    return 0;
}

int funnel_commission_config_parse(const config_setting_t *g, void *sec, char *err, size_t err_len)
{
    static const char *const names[] = {"default_rate_bp",         "term_months", "cap_minor",
                                        "account_manager_rate_bp", "rates",       NULL};
    funnel_commission_config_t tmp;
    funnel_commission_config_defaults(&tmp);
    int rc;
    if ((rc = check_members(g, names, "commission", err, err_len)) ||
        (rc =
             get_int(g, "default_rate_bp", 0, FUNNEL_BP_MAX, &tmp.default_rate_bp, err, err_len)) ||
        (rc = get_int(g, "term_months", 0, TERM_MAX, &tmp.term_months, err, err_len)) ||
        (rc = get_int(g, "cap_minor", 0, INT64_MAX, &tmp.cap_minor, err, err_len)) ||
        (rc = get_int(g, "account_manager_rate_bp", 0, FUNNEL_BP_MAX, &tmp.account_manager_rate_bp,
                      err, err_len)))
        goto fail;
    const config_setting_t *rates = config_setting_get_member(g, "rates");
    if (rates) {
        int n = config_setting_length(rates);
        if (config_setting_type(rates) != CONFIG_TYPE_LIST) {
            snprintf(err, err_len, "rates: expected a list ( { ... }, ... )");
            rc = FUNNEL_ECONFIG;
            goto fail;
        }
        if (n > 0 && !(tmp.rates = calloc((size_t)n, sizeof *tmp.rates))) {
            rc = FUNNEL_ENOMEM;
            goto fail;
        }
        for (int i = 0; i < n; i++) {
            if ((rc = parse_rate(config_setting_get_elem(rates, (unsigned)i), i,
                                 &tmp.rates[tmp.n_rates], err, err_len)))
                goto fail;
            tmp.n_rates++;
        }
        if (tmp.n_rates > 1) /* an empty list has no array to sort */
            qsort(tmp.rates, tmp.n_rates, sizeof *tmp.rates, rate_cmp);
        for (size_t i = 1; i < tmp.n_rates; i++) {
            if (rate_cmp(&tmp.rates[i - 1], &tmp.rates[i]) == 0) {
                snprintf(err, err_len, "rates: two rates for rep '%.64s' from the same date",
                         tmp.rates[i].rep);
                rc = FUNNEL_ECONFIG;
                goto fail;
            }
        }
    }
    funnel_commission_config_clear(sec);
    memcpy(sec, &tmp, sizeof tmp);
    return 0;
fail:
    funnel_commission_config_clear(&tmp);
    return rc;
}

/* Writes a string as a libconfig literal; rep names come from the config file itself. */
static void print_string(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void funnel_commission_config_print(const void *sec, FILE *out)
{
    const funnel_commission_config_t *c = sec;
    fprintf(out,
            "commission = {\n  default_rate_bp = %lld;\n  term_months = %lld;\n"
            "  cap_minor = %lldL;\n  account_manager_rate_bp = %lld;\n  rates = (",
            (long long)c->default_rate_bp, (long long)c->term_months, (long long)c->cap_minor,
            (long long)c->account_manager_rate_bp);
    for (size_t i = 0; i < c->n_rates; i++) {
        char day[16];
        funnel_date_format(c->rates[i].from_ms, day, sizeof day);
        fprintf(out, "%s\n    { rep = ", i ? "," : "");
        print_string(c->rates[i].rep, out);
        fprintf(out, "; rate_bp = %lld; from = \"%s\"; }", (long long)c->rates[i].rate_bp, day);
    }
    fprintf(out, "%s);\n};\n", c->n_rates ? "\n  " : "");
}
