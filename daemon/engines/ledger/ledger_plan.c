/* ledger_plan.c — the commission plan: config section, rates, terms, rounding, UTC dates. */
#include "ledger_plan.h"
#include "funnel/error.h"
#include "funnel/money.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_DAY 86400000LL
#define TERM_MAX   1200 /* months: a century is "for ever" in all but name */

/* --- UTC civil dates (Howard Hinnant's days_from_civil / civil_from_days) ------------------ */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp + (mp < 10 ? 3 : -9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t days_in_month(int64_t y, int64_t m)
{
    int64_t ny = m == 12 ? y + 1 : y, nm = m == 12 ? 1 : m + 1;
    return days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1);
}

/* Floor division: event times before 1970 are refused upstream, but dates need not be. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t funnel_date_utc_ms(int64_t y, int64_t m, int64_t d)
{
    return days_from_civil(y, m, d) * MS_PER_DAY;
}

static bool parse_digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int funnel_date_parse(const char *text, int64_t *start_ms, int64_t *end_ms)
{
    int64_t y, m, d = 1;
    size_t len = text ? strlen(text) : 0;
    if ((len != 7 && len != 10) || text[4] != '-' || !parse_digits(text, 4, &y) ||
        !parse_digits(text + 5, 2, &m) || m < 1 || m > 12 || y < 1970)
        return FUNNEL_EINVAL;
    if (len == 10 &&
        (text[7] != '-' || !parse_digits(text + 8, 2, &d) || d < 1 || d > days_in_month(y, m)))
        return FUNNEL_EINVAL;
    *start_ms = funnel_date_utc_ms(y, m, d);
    if (len == 10)
        *end_ms = *start_ms + MS_PER_DAY;
    else
        *end_ms = funnel_date_utc_ms(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1);
    return 0;
}

void funnel_date_format(int64_t at_ms, char *out, size_t out_len)
{
    int64_t y, m, d;
    civil_from_days(floor_div(at_ms, MS_PER_DAY), &y, &m, &d);
    snprintf(out, out_len, "%04lld-%02lld-%02lld", (long long)y, (long long)m, (long long)d);
}

int64_t funnel_commission_term_end(int64_t start_ms, int64_t months)
{
    if (months <= 0)
        return INT64_MAX;
    int64_t day = floor_div(start_ms, MS_PER_DAY), tod = start_ms - day * MS_PER_DAY;
    int64_t y, m, d;
    civil_from_days(day, &y, &m, &d);
    int64_t idx = y * 12 + (m - 1) + months;
    y = floor_div(idx, 12);
    m = idx - y * 12 + 1;
    int64_t dim = days_in_month(y, m);
    return days_from_civil(y, m, d < dim ? d : dim) * MS_PER_DAY + tod;
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
