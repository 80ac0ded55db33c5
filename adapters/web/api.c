/* api.c — the read API and the acknowledgement, over the report library funnelctl uses
 * (funnel/report.h), so the page and the terminal show the same figures.
 *
 * Roles: a rep sees their own statement and the SLA instances they own, nothing else; a
 * manager sees everything and may acknowledge; an admin also sees rejected input. Bad
 * parameters are 400 with the reason; times and amounts are decimal strings. */
#include "web.h"

#include "funnel/date.h"
#include "funnel/error.h"
#include "funnel/report.h"
#include "store.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>

typedef struct route {
    const char *method;
    const char *prefix; /* sub starts with it */
    const char *suffix; /* and ends with it ("" : exact prefix match when exact) */
    bool has_param;     /* a path segment between prefix and suffix */
    funnel_web_role_t min_role;
    funnel_web_route_t id;
    void (*run)(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                funnel_web_reply_t *r);
} route_t;

static bool is_rep(const funnel_web_req_t *req)
{
    return req->who->role == FUNNEL_WEB_ROLE_REP;
}

/* A store failure: the reason goes to the log, a short one to the caller. */
static void store_failed(const funnel_web_req_t *req, funnel_store_t *st, int rc,
                         funnel_web_reply_t *r)
{
    (void)req;
    funnel_web_reply_error(r, rc == FUNNEL_ENOMEM ? 500 : 503,
                           "reading the database failed: %s (%s)", funnel_strerror(rc),
                           funnel_store_errmsg(st));
}

/* Whether the model is read whole; otherwise answers 503 with Retry-After (see
 * funnel_web_model_ready): the page shows the section as loading and asks again. */
static bool model_ready(const funnel_web_req_t *req, funnel_web_model_t model,
                        funnel_web_reply_t *r)
{
    if (funnel_web_model_ready(req->web, model))
        return true;
    funnel_web_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                           "the %s model is still being read from the recorded events",
                           model == FUNNEL_WEB_M_FUNNEL ? "funnel" : "attribution");
    r->retry_after_s = 1;
    return false;
}

/* Whether r is filled with the answer kept for key (cache.c); *marker: what to keep a fresh
 * answer under. */
static bool answer_kept(const funnel_web_req_t *req, const char *key, funnel_web_reply_t *r,
                        int64_t *marker)
{
    funnel_web_cache_t *c = funnel_web_answers(req->web);
    *marker = -1;
    if (c && req->keeper) /* nothing to answer: only whether to compute it again */
        return funnel_web_cache_fresh(c, key, req->now_ms, FUNNEL_WEB_KEEP_REFRESH_MS, marker);
    return c && funnel_web_cache_get(c, key, req->now_ms, r, marker);
}

static void answer_keep(const funnel_web_req_t *req, const char *key, int64_t marker,
                        int64_t valid_until_ms, const funnel_web_reply_t *r)
{
    funnel_web_cache_t *c = funnel_web_answers(req->web);
    if (c)
        funnel_web_cache_put(c, key, marker, valid_until_ms, req->now_ms, req->keeper, r);
}

/* ?from= and ?to= (UTC dates or months, inclusive) into [*from, *to). */
static bool date_range(const funnel_web_req_t *req, int64_t *from, int64_t *to,
                       funnel_web_reply_t *r)
{
    const char *f = funnel_web_arg(req, "from"), *t = funnel_web_arg(req, "to");
    int64_t ignored;
    *from = INT64_MIN;
    *to = INT64_MAX;
    const char *bad = f && funnel_date_parse(f, from, &ignored) ? "from"
                      : t && funnel_date_parse(t, &ignored, to) ? "to"
                                                                : NULL;
    if (bad) {
        funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST,
                               "%s: a UTC date YYYY-MM-DD or month YYYY-MM", bad);
        return false;
    }
    if (*from >= *to) {
        funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "from is after to");
        return false;
    }
    return true;
}

static bool parse_id(const char *text, int64_t *out)
{
    char *end;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || v <= 0)
        return false;
    *out = v;
    return true;
}

/* ---- SLA ---------------------------------------------------------------------------------- */

/* ?after=DUE:ID, the `next` of the page before, into f; false when it is not one. */
static bool sla_cursor_parse(const char *text, funnel_sla_report_filter_t *f)
{
    char *end;
    long long due = strtoll(text, &end, 10);
    if (end == text || *end != ':' || !parse_id(end + 1, &f->after_id))
        return false;
    f->after_due = due;
    return true;
}

/* The cursor of the page's last row when the page is full (more may follow), else null. */
static json_t *sla_cursor_json(const funnel_sla_report_filter_t *f,
                               const funnel_sla_report_list_t *list)
{
    if (!f->limit || list->n_rows < (size_t)f->limit)
        return json_null();
    const funnel_sla_row_t *last = &list->rows[list->n_rows - 1];
    return json_sprintf("%lld:%lld",
                        (long long)(last->due_at_ms == FUNNEL_SLA_REPORT_NONE
                                        ? FUNNEL_SLA_REPORT_DUE_LAST
                                        : last->due_at_ms),
                        (long long)last->sla_id);
}

/* The list's filter from the query; replies 400 (403 for a rep asking for another's) and
 * returns false when it is not valid. */
static bool sla_filter(const funnel_web_req_t *req, funnel_sla_report_filter_t *f,
                       funnel_web_reply_t *r)
{
    const char *state = funnel_web_arg(req, "state"), *limit = funnel_web_arg(req, "limit");
    const char *order = funnel_web_arg(req, "order"), *after = funnel_web_arg(req, "after");
    *f = (funnel_sla_report_filter_t){.policy = funnel_web_arg(req, "policy"),
                                      .owner = funnel_web_arg(req, "owner"),
                                      .limit = 500,
                                      .by_due = order && !strcmp(order, "due")};
    const char *bad =
        state && *state && funnel_sla_report_state_parse(state, &f->state)
            ? "state: " FUNNEL_SLA_REPORT_STATE_NAMES
        : limit && (!parse_id(limit, &f->limit) || f->limit > 10000) ? "limit: 1..10000"
        : order && !f->by_due && strcmp(order, "id")                 ? "order: id or due"
        : after && !f->by_due                                        ? "after: needs order=due"
        : after && !sla_cursor_parse(after, f) ? "after: the next of the page before (DUE:ID)"
                                               : NULL;
    if (bad) {
        funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "%s", bad);
        return false;
    }
    if (f->policy && !*f->policy)
        f->policy = NULL;
    if (f->owner && !*f->owner)
        f->owner = NULL;
    if (is_rep(req)) {
        if (f->owner && strcmp(f->owner, req->who->name)) {
            funnel_web_reply_error(r, MHD_HTTP_FORBIDDEN,
                                   "a rep sees only the SLA instances they own");
            return false;
        }
        f->owner = req->who->name;
    }
    return true;
}

/* GET sla: instances as `funnelctl sla list`; with order=due, pages by due time: `next` is the
 * after= of the next page (null after the last) and `total` how many pass the filter. */
static void sla_list(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                     funnel_web_reply_t *r)
{
    (void)param;
    funnel_sla_report_filter_t f;
    funnel_sla_report_list_t *list;
    int64_t total = 0;
    if (!sla_filter(req, &f, r))
        return;
    int rc = funnel_sla_report_list(st, &f, req->now_ms, &list);
    if (!rc && f.by_due && (rc = funnel_sla_report_count(st, &f, req->now_ms, &total)))
        funnel_sla_report_list_free(&list);
    if (rc == FUNNEL_ESTORE && funnel_store_module_version(st, "sla") <= 0)
        return funnel_web_reply_json(r, MHD_HTTP_OK, json_pack("{s:[]}", "instances"));
    if (rc)
        return store_failed(req, st, rc, r);
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < list->n_rows; i++)
        json_array_append_new(rows, funnel_report_sla_json(&list->rows[i], false, true));
    json_t *doc =
        json_pack("{s:o*, s:o}", "instances", rows, "now_ms", funnel_report_int(req->now_ms));
    if (doc && f.by_due) {
        json_object_set_new(doc, "next", sla_cursor_json(&f, list));
        json_object_set_new(doc, "total", json_integer(total));
    }
    funnel_sla_report_list_free(&list);
    funnel_web_reply_json(r, MHD_HTTP_OK, doc);
}

static int add_live_name(bool owner, const char *name, void *doc)
{
    return json_array_append_new(json_object_get(doc, owner ? "owners" : "policies"),
                                 json_string(name))
               ? FUNNEL_ENOMEM
               : 0;
}

/* GET sla/filters: the board's policy and owner choices, from every live instance the user
 * may see (a rep: their own), not only the rows of the pages read so far. */
static void sla_filters(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                        funnel_web_reply_t *r)
{
    (void)param;
    json_t *doc = json_pack("{s:[], s:[]}", "policies", "owners");
    int rc = doc ? funnel_sla_report_live_names(st, is_rep(req) ? req->who->name : NULL,
                                                add_live_name, doc)
                 : FUNNEL_ENOMEM;
    if (rc && (rc != FUNNEL_ESTORE || funnel_store_module_version(st, "sla") > 0)) {
        json_decref(doc);
        return store_failed(req, st, rc, r);
    }
    funnel_web_reply_json(r, MHD_HTTP_OK, doc); /* no SLA tables yet: nothing to choose */
}

/* Finds instance param and checks a rep owns it; replies and returns NULL otherwise. */
static funnel_sla_row_t *sla_get(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                                 funnel_web_reply_t *r)
{
    int64_t id;
    funnel_sla_row_t *row = NULL;
    if (!parse_id(param, &id)) {
        funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "'%s' is not an sla_id", param);
        return NULL;
    }
    int rc = funnel_sla_report_show(st, id, req->now_ms, &row);
    if (rc == FUNNEL_ENOTFOUND ||
        (rc == FUNNEL_ESTORE && funnel_store_module_version(st, "sla") <= 0))
        funnel_web_reply_error(r, MHD_HTTP_NOT_FOUND, "no SLA instance %s", param);
    else if (rc)
        store_failed(req, st, rc, r);
    else if (is_rep(req) && strcmp(row->owner, req->who->name))
        funnel_web_reply_error(r, MHD_HTTP_FORBIDDEN, "SLA instance %s is not yours", param);
    else
        return row;
    funnel_sla_report_row_free(&row);
    return NULL;
}

static void sla_show(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                     funnel_web_reply_t *r)
{
    funnel_sla_row_t *row = sla_get(req, st, param, r);
    if (!row)
        return;
    funnel_web_reply_json(r, MHD_HTTP_OK, funnel_report_sla_json(row, true, true));
    funnel_sla_report_row_free(&row);
}

/* POST sla/{id}/ack: escalation.acknowledged through funneld, by = the user's name. */
static void sla_ack(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                    funnel_web_reply_t *r)
{
    funnel_sla_row_t *row = sla_get(req, st, param, r);
    if (!row)
        return;
    char id[24], reason[256] = "";
    snprintf(id, sizeof id, "%lld", (long long)row->sla_id);
    funnel_sla_report_row_free(&row);
    int status = 0;
    int rc = funnel_web_bus_ack(funnel_web_bus(req->web), id, req->who->name, req->now_ms, &status,
                                reason, sizeof reason);
    if (rc == FUNNEL_ETIMEDOUT || rc == FUNNEL_EAGAIN || rc == FUNNEL_EBUS)
        return funnel_web_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                                      "funneld did not take the acknowledgement%s%s; try again",
                                      *reason ? ": " : "", reason);
    if (rc)
        return funnel_web_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", funnel_strerror(rc));
    static const char *const answers[] = {"ok", "duplicate", "rejected"};
    if (status == 2)
        return funnel_web_reply_error(r, MHD_HTTP_CONFLICT, "funneld refused: %s", reason);
    funnel_web_reply_json(r, MHD_HTTP_OK,
                          json_pack("{s:s, s:s, s:s}", "sla_id", id, "by", req->who->name, "answer",
                                    answers[status]));
}

/* ---- attribution and statements ---------------------------------------------------------- */

static void attribution(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                        funnel_web_reply_t *r)
{
    (void)param;
    const char *model = funnel_web_arg(req, "model");
    funnel_report_attr_t a = {.by = funnel_report_attr_group(funnel_web_arg(req, "by"))};
    funnel_attribution_model_t m = FUNNEL_ATTR_LINEAR;
    if (!a.by)
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST,
                                      "by: campaign, source, medium or channel");
    if (model && strcmp(model, "all") && funnel_attribution_model_parse(model, &m))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "model: a model name or all");
    a.models = model && !strcmp(model, "all") ? FUNNEL_ATTR_ALL_MODELS : 1u << m;
    if (!date_range(req, &a.from, &a.to, r) || !model_ready(req, FUNNEL_WEB_M_ATTRIBUTION, r))
        return;
    /* The sums change only with what funneld commits. */
    char key[160], err[512];
    int64_t marker;
    snprintf(key, sizeof key, "attribution %s %x %lld %lld", a.by, a.models, (long long)a.from,
             (long long)a.to);
    if (answer_kept(req, key, r, &marker))
        return;
    int rc = funnel_report_attribution(funnel_web_attribution(req->web), st, &a, err, sizeof err);
    if (rc == FUNNEL_EINVAL)
        funnel_web_reply_error(r, MHD_HTTP_UNPROCESSABLE_CONTENT, "%s", err);
    else if (rc)
        store_failed(req, st, rc, r);
    else
        funnel_web_reply_json(r, MHD_HTTP_OK, funnel_report_attribution_json(&a));
    answer_keep(req, key, marker, INT64_MAX, r);
    funnel_report_attribution_clear(&a);
}

static void statement(const funnel_web_req_t *req, funnel_store_t *st, const char *rep,
                      funnel_web_reply_t *r)
{
    const char *period = funnel_web_arg(req, "period"), *format = funnel_web_arg(req, "format");
    int64_t from, to;
    if (is_rep(req) && strcmp(rep, req->who->name))
        return funnel_web_reply_error(r, MHD_HTTP_FORBIDDEN, "a rep sees only their own statement");
    if (!period || funnel_date_parse(period, &from, &to))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST,
                                      "period: a UTC month YYYY-MM or day YYYY-MM-DD");
    if (format && strcmp(format, "csv") && strcmp(format, "json"))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "format: json or csv");
    funnel_ledger_statement_t *s = NULL;
    int rc = funnel_ledger_statement(st, rep, from, to, &s);
    if (rc == FUNNEL_EINVAL)
        funnel_web_reply_error(r, MHD_HTTP_UNPROCESSABLE_CONTENT,
                               "a total does not fit in a 64-bit integer of minor units");
    else if (rc)
        store_failed(req, st, rc, r);
    else if (!s->rep_known)
        funnel_web_reply_error(r, MHD_HTTP_NOT_FOUND, "rep %s has no postings", rep);
    else if (!format || !strcmp(format, "json"))
        funnel_web_reply_json(r, MHD_HTTP_OK, funnel_report_statement_json(rep, period, s));
    else {
        FILE *out = open_memstream(&r->body, &r->len);
        if (out) {
            funnel_report_statement_csv(s, out);
            fclose(out);
        }
        r->status = MHD_HTTP_OK;
        r->content_type = "text/csv; charset=utf-8";
        r->disposition = "attachment; filename=\"statement.csv\"";
    }
    funnel_ledger_statement_free(&s);
}

/* ---- funnel, compliance, quotas ----------------------------------------------------------- */

static void funnel(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                   funnel_web_reply_t *r)
{
    (void)param;
    const char *by = funnel_web_arg(req, "by");
    int64_t from, to;
    if (!funnel_report_funnel_group(by))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST,
                                      "by: campaign, channel, source, medium, segment or month");
    if (!date_range(req, &from, &to, r) || !model_ready(req, FUNNEL_WEB_M_FUNNEL, r))
        return;
    /* A table sums every lead of the range; it changes only with what funneld commits. */
    char key[160];
    int64_t marker;
    snprintf(key, sizeof key, "funnel %s %lld %lld", funnel_report_funnel_group(by),
             (long long)from, (long long)to);
    if (answer_kept(req, key, r, &marker))
        return;
    funnel_report_funnel_t *m = funnel_web_funnel(req->web);
    funnel_report_funnel_table_t *t = NULL;
    char err[512];
    int rc = funnel_report_funnel_refresh(m, st);
    if (rc)
        return store_failed(req, st, rc, r);
    rc = funnel_report_funnel_table(m, by, from, to, &t, err, sizeof err);
    if (rc == FUNNEL_EINVAL)
        funnel_web_reply_error(r, MHD_HTTP_UNPROCESSABLE_CONTENT, "%s", err);
    else if (rc)
        funnel_web_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", funnel_strerror(rc));
    else
        funnel_web_reply_json(r, MHD_HTTP_OK, funnel_report_funnel_json(t));
    answer_keep(req, key, marker, INT64_MAX, r);
    funnel_report_funnel_table_free(&t);
}

static void compliance(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                       funnel_web_reply_t *r)
{
    (void)param;
    const char *by = funnel_web_arg(req, "by"), *per = funnel_web_arg(req, "per");
    int64_t from, to;
    if (!funnel_report_compliance_group(by))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "by: policy or owner");
    if (per && strcmp(per, "week"))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "per: week");
    if (!date_range(req, &from, &to, r))
        return;
    /* Every instance opened in the range is read (a year: most of history), so the answer is
     * kept until funneld commits or an open instance in it reaches its due time. */
    char key[160];
    int64_t marker;
    snprintf(key, sizeof key, "compliance %s %d %lld %lld", funnel_report_compliance_group(by),
             per != NULL, (long long)from, (long long)to);
    if (answer_kept(req, key, r, &marker))
        return;
    funnel_report_compliance_t *c = NULL;
    int rc = funnel_report_compliance(st, by, per != NULL, from, to, req->now_ms, &c);
    if (rc)
        return store_failed(req, st, rc, r);
    funnel_web_reply_json(r, MHD_HTTP_OK, funnel_report_compliance_json(c));
    answer_keep(req, key, marker, c->valid_until_ms, r);
    funnel_report_compliance_free(&c);
}

static void quota(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                  funnel_web_reply_t *r)
{
    (void)param;
    size_t n;
    const funnel_report_quota_def_t *defs = funnel_web_quotas(req->web, &n);
    json_t *doc = funnel_report_quota_json(st, defs, n, req->now_ms);
    if (!doc)
        return store_failed(req, st, FUNNEL_ESTORE, r);
    funnel_web_reply_json(r, MHD_HTTP_OK, doc);
}

/* ---- rejected input (admins) -------------------------------------------------------------- */

static int add_dead_letter(const funnel_dead_letter_t *dl, void *arg)
{
    json_t *row =
        json_pack("{s:o, s:o, s:s%, s:s%, s:s%, s:s%, s:I}", "id", funnel_report_int(dl->id),
                  "received_at_ms", funnel_report_int(dl->received_at_ms), "topic", dl->topic,
                  strlen(dl->topic), "event_id", dl->event_id, strlen(dl->event_id), "reason",
                  dl->reason, strlen(dl->reason), "detail", dl->detail, strlen(dl->detail),
                  "payload_size", (json_int_t)dl->payload_size);
    /* A row whose text is not UTF-8 is still counted: shown without its text. */
    if (!row)
        row = json_pack("{s:o, s:s}", "id", funnel_report_int(dl->id), "topic", "(not UTF-8)");
    return json_array_append_new(arg, row) ? FUNNEL_ENOMEM : 0;
}

static void rejected(const funnel_web_req_t *req, funnel_store_t *st, const char *param,
                     funnel_web_reply_t *r)
{
    (void)param;
    const char *limit = funnel_web_arg(req, "limit");
    int64_t n = 50;
    if (limit && (!parse_id(limit, &n) || n > 1000))
        return funnel_web_reply_error(r, MHD_HTTP_BAD_REQUEST, "limit: 1..1000");
    json_t *rows = json_array();
    int rc =
        rows ? funnel_store_dead_letters_list(st, (size_t)n, add_dead_letter, rows) : FUNNEL_ENOMEM;
    if (rc) {
        json_decref(rows);
        return store_failed(req, st, rc, r);
    }
    funnel_web_reply_json(r, MHD_HTTP_OK, json_pack("{s:o}", "rejected", rows));
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static const route_t routes[] = {
    {"GET", "sla", "", false, FUNNEL_WEB_ROLE_REP, FUNNEL_WEB_R_SLA_LIST, sla_list},
    {"GET", "sla/compliance", "", false, FUNNEL_WEB_ROLE_MANAGER, FUNNEL_WEB_R_SLA_COMPLIANCE,
     compliance},
    {"GET", "sla/filters", "", false, FUNNEL_WEB_ROLE_REP, FUNNEL_WEB_R_SLA_FILTERS, sla_filters},
    {"GET", "quota", "", false, FUNNEL_WEB_ROLE_MANAGER, FUNNEL_WEB_R_QUOTA, quota},
    {"GET", "funnel", "", false, FUNNEL_WEB_ROLE_MANAGER, FUNNEL_WEB_R_FUNNEL, funnel},
    {"POST", "sla/", "/ack", true, FUNNEL_WEB_ROLE_MANAGER, FUNNEL_WEB_R_SLA_ACK, sla_ack},
    {"GET", "sla/", "", true, FUNNEL_WEB_ROLE_REP, FUNNEL_WEB_R_SLA_SHOW, sla_show},
    {"GET", "attribution", "", false, FUNNEL_WEB_ROLE_MANAGER, FUNNEL_WEB_R_ATTRIBUTION,
     attribution},
    {"GET", "statements/", "", true, FUNNEL_WEB_ROLE_REP, FUNNEL_WEB_R_STATEMENT, statement},
    {"GET", "rejected", "", false, FUNNEL_WEB_ROLE_ADMIN, FUNNEL_WEB_R_REJECTED, rejected},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* Whether sub matches rt; *param receives the path segment of a route that has one. */
static bool route_match(const route_t *rt, const char *sub, char *param, size_t param_len)
{
    size_t lp = strlen(rt->prefix), ls = strlen(rt->suffix), n = strlen(sub);
    if (strncmp(sub, rt->prefix, lp))
        return false;
    if (!rt->has_param)
        return n == lp;
    if (n <= lp + ls || strcmp(sub + n - ls, rt->suffix))
        return false;
    size_t len = n - lp - ls;
    if (len >= param_len || memchr(sub + lp, '/', len))
        return false;
    memcpy(param, sub + lp, len);
    param[len] = '\0';
    return true;
}

funnel_web_route_t funnel_web_api(const funnel_web_req_t *req, const char *sub,
                                  funnel_web_reply_t *r)
{
    char param[256];
    const route_t *rt = NULL;
    bool other_method = false;
    for (size_t i = 0; !rt && i < N_ROUTES; i++)
        if (route_match(&routes[i], sub, param, sizeof param)) {
            if (!strcmp(routes[i].method, req->method))
                rt = &routes[i];
            else
                other_method = true;
        }
    if (!rt) {
        funnel_web_reply_error(r, other_method ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND,
                               "no such resource: %s /api/v1/%s", req->method, sub);
        return FUNNEL_WEB_R_UNKNOWN;
    }
    if (req->who->role < rt->min_role) {
        funnel_web_reply_error(r, MHD_HTTP_FORBIDDEN, "this needs the %s role (you are %s)",
                               funnel_web_role_name(rt->min_role),
                               funnel_web_role_name(req->who->role));
        return rt->id;
    }
    funnel_store_t *st = funnel_web_store_get(req->web);
    if (!st) {
        funnel_web_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "the database cannot be opened");
        return rt->id;
    }
    rt->run(req, st, param, r);
    funnel_web_store_put(req->web, st);
    return rt->id;
}
