/* funnel.c — the funnel per campaign, channel, source, medium, segment or month: how many leads
 * reached each stage, the conversion between stages, the median times between them, and the
 * revenue (payments minus refunds) of the clients those leads became.
 *
 * No engine keeps these figures, so they are read from the recorded events: a model holds one
 * small record per lead (its first touch, segment and the first time of each stage) and is
 * brought up to date by reading only the events recorded since its last refresh (events.seq).
 * funnelctl builds one from scratch per run; funnel-web keeps one and refreshes it per request.
 * Every figure is a minimum or a sum over the events, so it depends on the set of events, not
 * on their arrival order.
 *
 * A lead's group is its earliest touch (lead.created's touches and lead.touched), the segment
 * of lead.created, or the UTC month of its creation. Stages count leads that reached them:
 * "mql" counts leads qualified MQL or SQL (an SQL has passed marketing), "won" and "lost" the
 * leads closed so (won wins when both happened). A payment belongs to the lead its client was
 * handed off from; a client never handed off is in no group's revenue. --from/--to select
 * leads by their creation time. */
#include "funnel/grow.h"
#include "funnel/report.h"

#include "funnel/codec.h"
#include "funnel/date.h"
#include "funnel/error.h"
#include "idmap.h"
#include "select.h"
#include "store.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define NONE   INT64_MAX
#define NO_STR UINT32_MAX

typedef struct lead {
    int64_t created, mql, sql, contacted, won, lost;     /* first time of each; NONE: never */
    int64_t touch_at;                                    /* of the earliest touch; NONE: none */
    uint32_t campaign, channel, source, medium, segment; /* interned; NO_STR: none */
} lead_t;

typedef struct money {
    uint32_t client;   /* ordinal in clients */
    uint32_t currency; /* interned */
    int64_t minor;     /* negative for a refund */
} money_t;

struct funnel_report_funnel {
    pthread_mutex_t lock;
    int64_t last_seq;   /* events read up to here */
    funnel_idmap_t ids; /* lead_id -> ordinal in leads */
    lead_t *leads;
    size_t cap_leads;
    funnel_idmap_t clients; /* client_id -> ordinal in client_lead */
    uint32_t *client_lead;  /* lead ordinal + 1; 0: not handed off */
    size_t cap_clients;
    funnel_idmap_t strs; /* interned group values and currencies */
    money_t *money;
    size_t n_money, cap_money;
};

static const char *const groups[] = {"campaign", "channel", "source", "medium", "segment", "month"};
#define N_GROUPS (sizeof groups / sizeof groups[0])

const char *funnel_report_funnel_group(const char *by)
{
    for (size_t i = 0; by && i < N_GROUPS; i++)
        if (!strcmp(by, groups[i]))
            return groups[i];
    return NULL;
}

int funnel_report_funnel_new(funnel_report_funnel_t **out)
{
    funnel_report_funnel_t *m = calloc(1, sizeof *m);
    if (!m)
        return FUNNEL_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

void funnel_report_funnel_destroy(funnel_report_funnel_t **mp)
{
    funnel_report_funnel_t *m = *mp;
    if (!m)
        return;
    funnel_idmap_clear(&m->ids);
    funnel_idmap_clear(&m->clients);
    funnel_idmap_clear(&m->strs);
    free(m->leads);
    free(m->client_lead);
    free(m->money);
    pthread_mutex_destroy(&m->lock);
    free(m);
    *mp = NULL;
}

/* Makes room for index n in an array of elem-sized items. */
static int reserve(void **arr, size_t *cap, size_t n, size_t elem)
{
    return funnel_grow(arr, cap, n + 1, elem, 1024);
}

static lead_t *lead_of(funnel_report_funnel_t *m, const char *id)
{
    uint32_t ord;
    bool added;
    if (!id || funnel_idmap_add(&m->ids, id, strlen(id), &ord, &added) ||
        reserve((void **)&m->leads, &m->cap_leads, ord, sizeof *m->leads))
        return NULL;
    lead_t *l = &m->leads[ord];
    if (added)
        *l = (lead_t){NONE, NONE,   NONE,   NONE,   NONE,   NONE,
                      NONE, NO_STR, NO_STR, NO_STR, NO_STR, NO_STR};
    return l;
}

static uint32_t client_of(funnel_report_funnel_t *m, const char *id)
{
    uint32_t ord;
    bool added;
    if (funnel_idmap_add(&m->clients, id, strlen(id), &ord, &added) ||
        reserve((void **)&m->client_lead, &m->cap_clients, ord, sizeof *m->client_lead))
        return NO_STR;
    if (added)
        m->client_lead[ord] = 0;
    return ord;
}

static uint32_t intern(funnel_report_funnel_t *m, const char *s)
{
    uint32_t ord;
    if (!s || !*s)
        return NO_STR;
    return funnel_idmap_add(&m->strs, s, strlen(s), &ord, NULL) ? NO_STR : ord;
}

static void first_at(int64_t *slot, int64_t at)
{
    if (at < *slot)
        *slot = at;
}

/* The earliest touch names the lead's campaign, channel, source and medium; ties go to the
 * lexically smaller campaign, so the order events arrive in does not matter. */
static int touch(funnel_report_funnel_t *m, lead_t *l, const Funnel__V1__Touch *t, int64_t at)
{
    if (!t)
        return 0;
    int64_t when = t->at_ms ? t->at_ms : at;
    uint32_t campaign = intern(m, t->campaign);
    if (when > l->touch_at)
        return 0;
    if (when == l->touch_at && l->campaign != NO_STR &&
        (campaign == NO_STR || strcmp(m->strs.keys[campaign], m->strs.keys[l->campaign]) >= 0))
        return 0;
    l->touch_at = when;
    l->campaign = campaign;
    l->channel = intern(m, t->channel);
    l->source = intern(m, t->source);
    l->medium = intern(m, t->medium);
    return 0;
}

static int money_add(funnel_report_funnel_t *m, const char *client, const Funnel__V1__Money *a,
                     bool refund)
{
    if (!a || !client)
        return 0;
    if (reserve((void **)&m->money, &m->cap_money, m->n_money, sizeof *m->money))
        return FUNNEL_ENOMEM;
    uint32_t c = client_of(m, client), cur = intern(m, a->currency);
    if (c == NO_STR || cur == NO_STR)
        return c == NO_STR ? FUNNEL_ENOMEM : 0;
    m->money[m->n_money++] = (money_t){c, cur, refund ? -a->minor : a->minor};
    return 0;
}

/* Applies one recorded event to the model. */
static int apply(funnel_report_funnel_t *m, const funnel_envelope_t *env)
{
    int64_t at = env->occurred_at_ms;
    lead_t *l;
    switch (env->body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED:
        if (!(l = lead_of(m, env->lead_created->lead_id)))
            return FUNNEL_ENOMEM;
        first_at(&l->created, at);
        if (env->lead_created->segment && *env->lead_created->segment)
            l->segment = intern(m, env->lead_created->segment);
        for (size_t i = 0; i < env->lead_created->n_touches; i++)
            touch(m, l, env->lead_created->touches[i], at);
        return 0;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED:
        if (!(l = lead_of(m, env->lead_touched->lead_id)))
            return FUNNEL_ENOMEM;
        return touch(m, l, env->lead_touched->touch, at);
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED:
        if (!(l = lead_of(m, env->lead_qualified->lead_id)))
            return FUNNEL_ENOMEM;
        if (env->lead_qualified->stage == FUNNEL__V1__STAGE__SQL)
            first_at(&l->sql, at);
        first_at(&l->mql, at);
        return 0;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED:
        if (!(l = lead_of(m, env->lead_contacted->lead_id)))
            return FUNNEL_ENOMEM;
        first_at(&l->contacted, at);
        return 0;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED:
        if (!(l = lead_of(m, env->lead_closed->lead_id)))
            return FUNNEL_ENOMEM;
        if (env->lead_closed->outcome == FUNNEL__V1__OUTCOME__WON)
            first_at(&l->won, at);
        else if (env->lead_closed->outcome == FUNNEL__V1__OUTCOME__LOST)
            first_at(&l->lost, at);
        return 0;
    case FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF: {
        uint32_t c = client_of(m, env->client_handed_off->client_id);
        uint32_t ord;
        if (c == NO_STR || !lead_of(m, env->client_handed_off->lead_id))
            return FUNNEL_ENOMEM;
        funnel_idmap_find(&m->ids, env->client_handed_off->lead_id,
                          strlen(env->client_handed_off->lead_id), &ord);
        /* A client handed off twice keeps the lead with the smaller id: order-free. */
        uint32_t old = m->client_lead[c];
        if (!old || strcmp(m->ids.keys[ord], m->ids.keys[old - 1]) < 0)
            m->client_lead[c] = ord + 1;
        return 0;
    }
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED:
        return money_add(m, env->payment_received->client_id, env->payment_received->amount, false);
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED:
        return money_add(m, env->payment_refunded->client_id, env->payment_refunded->amount, true);
    default:
        return 0;
    }
}

int funnel_report_funnel_refresh(funnel_report_funnel_t *m, funnel_store_t *st)
{
    static const char sql[] =
        "SELECT seq, funnel_envelope(event_id, envelope) FROM events WHERE seq > ?1 AND topic IN "
        "('lead.created',"
        " 'lead.touched', 'lead.qualified', 'lead.contacted', 'lead.closed',"
        " 'client.handed_off', 'payment.received', 'payment.refunded') ORDER BY seq";
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(funnel_store_db(st), sql, -1, &q, NULL) != SQLITE_OK)
        return FUNNEL_ESTORE;
    pthread_mutex_lock(&m->lock);
    sqlite3_bind_int64(q, 1, m->last_seq);
    int rc, bad = 0;
    int64_t last = m->last_seq;
    while (!bad && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        funnel_envelope_t *env = funnel__v1__envelope__unpack(
            NULL, (size_t)sqlite3_column_bytes(q, 1), sqlite3_column_blob(q, 1));
        if (env) /* funneld recorded only what decoded; a row that does not is not ours */
            bad = apply(m, env);
        funnel_envelope_free(&env);
        last = sqlite3_column_int64(q, 0);
    }
    /* What was applied stays applied: the next refresh goes on after it. */
    m->last_seq = last;
    pthread_mutex_unlock(&m->lock);
    sqlite3_finalize(q);
    return bad ? bad : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* ---- the table ----------------------------------------------------------------------------- */

typedef struct durations {
    int64_t *v;
    size_t n, cap;
} durations_t;

typedef struct acc {
    funnel_report_funnel_row_t row;
    durations_t d[3]; /* MQL->SQL, SQL->contact, SQL->won */
    __int128 *net;    /* per interned currency, sized to the interned strings */
} acc_t;

static int duration_add(durations_t *d, int64_t from, int64_t to)
{
    if (from == NONE || to == NONE)
        return 0;
    if (reserve((void **)&d->v, &d->cap, d->n, sizeof *d->v))
        return FUNNEL_ENOMEM;
    d->v[d->n++] = to > from ? to - from : 0;
    return 0;
}

/* The lower median; FUNNEL_REPORT_NONE for none. */
static int64_t median(durations_t *d)
{
    if (!d->n)
        return FUNNEL_REPORT_NONE;
    return funnel_select_nth(d->v, d->n, (d->n - 1) / 2);
}

/* The interned value of lead l under group g (NO_STR: none, or g is the month). */
static uint32_t group_str(const lead_t *l, size_t g)
{
    return g == 0   ? l->campaign
           : g == 1 ? l->channel
           : g == 2 ? l->source
           : g == 3 ? l->medium
           : g == 4 ? l->segment
                    : NO_STR;
}

/* The group value of lead l under group g (month text in buf). */
static const char *group_of(const funnel_report_funnel_t *m, const lead_t *l, size_t g, char *buf,
                            size_t len)
{
    uint32_t s = group_str(l, g);
    if (g == 5) {
        if (l->created == NONE)
            return "";
        funnel_date_format(l->created, buf, len);
        buf[7] = '\0'; /* YYYY-MM */
        return buf;
    }
    return s == NO_STR ? "" : m->strs.keys[s];
}

void funnel_report_funnel_table_free(funnel_report_funnel_table_t **tp)
{
    funnel_report_funnel_table_t *t = *tp;
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->rows[i].group);
        free(t->rows[i].revenue);
    }
    free(t->rows);
    free(t);
    *tp = NULL;
}

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const funnel_report_funnel_row_t *)a)->group,
                  ((const funnel_report_funnel_row_t *)b)->group);
}

/* Fills the revenue of a row from its net sums per currency, in currency order. */
static int revenue_set(const funnel_report_funnel_t *m, acc_t *a, char *err, size_t err_len)
{
    size_t n = 0;
    for (size_t c = 0; c < m->strs.n; c++)
        n += a->net[c] != 0;
    if (n && !(a->row.revenue = calloc(n, sizeof *a->row.revenue)))
        return FUNNEL_ENOMEM;
    for (size_t c = 0; c < m->strs.n; c++) {
        if (!a->net[c])
            continue;
        if (a->net[c] > INT64_MAX || a->net[c] < INT64_MIN) {
            snprintf(err, err_len, "the revenue of '%s' in %s does not fit in 64 bits",
                     a->row.group, m->strs.keys[c]);
            return FUNNEL_EINVAL;
        }
        funnel_report_money_t *r = &a->row.revenue[a->row.n_revenue++];
        snprintf(r->currency, sizeof r->currency, "%s", m->strs.keys[c]);
        r->net = (int64_t)a->net[c];
    }
    /* interned order is arrival order: sort by code */
    for (size_t i = 1; i < a->row.n_revenue; i++)
        for (size_t k = i;
             k && strcmp(a->row.revenue[k - 1].currency, a->row.revenue[k].currency) > 0; k--) {
            funnel_report_money_t t = a->row.revenue[k];
            a->row.revenue[k] = a->row.revenue[k - 1];
            a->row.revenue[k - 1] = t;
        }
    return 0;
}

static void acc_free(acc_t *a)
{
    for (int k = 0; k < 3; k++)
        free(a->d[k].v);
    free(a->net);
    free(a->row.group);
    free(a->row.revenue);
}

/* Adds lead l to its group's accumulator. */
static int acc_lead(const funnel_report_funnel_t *m, acc_t *a, const lead_t *l)
{
    funnel_report_funnel_row_t *r = &a->row;
    r->leads++;
    r->mql += l->mql != NONE;
    r->sql += l->sql != NONE;
    r->contacted += l->contacted != NONE;
    r->won += l->won != NONE;
    r->lost += l->lost != NONE && l->won == NONE;
    (void)m;
    int rc = duration_add(&a->d[0], l->mql, l->sql);
    rc = rc ? rc : duration_add(&a->d[1], l->sql, l->contacted);
    return rc ? rc : duration_add(&a->d[2], l->sql, l->won);
}

/* Finds the accumulator of each lead's group without hashing its text per lead (at a million
 * leads that was most of a table's time): an interned value maps by its ordinal, a month by the
 * range of the last month met (leads are read about in creation order). */
typedef struct grouper {
    funnel_idmap_t names; /* group text -> accumulator */
    uint32_t *by_str;     /* per interned value, then one for none: accumulator + 1; 0: not yet */
    int64_t month_from, month_to; /* the last month met, [from, to) */
    uint32_t month;               /* its accumulator */
} grouper_t;

/* The accumulator of lead l's group in *ord; *added when the group is new (its text is then
 * gr->names.keys[*ord]). 0 or FUNNEL_ENOMEM. */
static int group_find(const funnel_report_funnel_t *m, grouper_t *gr, size_t g, const lead_t *l,
                      uint32_t *ord, bool *added)
{
    uint32_t s = group_str(l, g);
    size_t slot = s == NO_STR ? m->strs.n : s;
    bool month = g == 5 && l->created != NONE;
    *added = false;
    if (month && l->created >= gr->month_from && l->created < gr->month_to) {
        *ord = gr->month;
        return 0;
    }
    if (!month && gr->by_str[slot]) {
        *ord = gr->by_str[slot] - 1;
        return 0;
    }
    char buf[32];
    const char *name = group_of(m, l, g, buf, sizeof buf);
    if (funnel_idmap_add(&gr->names, name, strlen(name), ord, added))
        return FUNNEL_ENOMEM;
    int64_t from, to;
    if (!month)
        gr->by_str[slot] = *ord + 1;
    else if (!funnel_date_parse(name, &from, &to)) { /* one that does not: looked up each time */
        gr->month_from = from;
        gr->month_to = to;
        gr->month = *ord;
    }
    return 0;
}

static int table_build(funnel_report_funnel_t *m, size_t g, funnel_report_funnel_table_t *t,
                       char *err, size_t err_len)
{
    grouper_t gr = {.by_str = calloc(m->strs.n + 1, sizeof *gr.by_str), .month_to = INT64_MIN};
    acc_t *accs = NULL;
    size_t cap = 0;
    uint32_t *lead_group = calloc(m->ids.n ? m->ids.n : 1, sizeof *lead_group);
    int rc = lead_group && gr.by_str ? 0 : FUNNEL_ENOMEM;
    for (size_t i = 0; !rc && i < m->ids.n; i++) {
        const lead_t *l = &m->leads[i];
        lead_group[i] = NO_STR;
        if ((t->from != INT64_MIN || t->to != INT64_MAX) &&
            (l->created == NONE || l->created < t->from || l->created >= t->to))
            continue;
        uint32_t ord;
        bool added;
        /* room for a new group first, so every group in gr.names has an accumulator */
        if ((rc = reserve((void **)&accs, &cap, gr.names.n, sizeof *accs)) ||
            (rc = group_find(m, &gr, g, l, &ord, &added)))
            break;
        if (added) {
            memset(&accs[ord], 0, sizeof accs[ord]);
            accs[ord].net = calloc(m->strs.n ? m->strs.n : 1, sizeof *accs[ord].net);
            accs[ord].row.group = strdup(gr.names.keys[ord]);
            if (!accs[ord].net || !accs[ord].row.group) {
                rc = FUNNEL_ENOMEM;
                break;
            }
        }
        lead_group[i] = ord;
        rc = acc_lead(m, &accs[ord], l);
    }
    for (size_t i = 0; !rc && i < m->n_money; i++) {
        uint32_t lead = m->client_lead[m->money[i].client];
        if (lead && lead_group[lead - 1] != NO_STR)
            accs[lead_group[lead - 1]].net[m->money[i].currency] += m->money[i].minor;
    }
    if (!rc && gr.names.n && !(t->rows = calloc(gr.names.n, sizeof *t->rows)))
        rc = FUNNEL_ENOMEM;
    for (size_t i = 0; i < gr.names.n; i++) {
        if (!rc && !(rc = revenue_set(m, &accs[i], err, err_len))) {
            accs[i].row.median_mql_sql_ms = median(&accs[i].d[0]);
            accs[i].row.median_sql_contact_ms = median(&accs[i].d[1]);
            accs[i].row.median_sql_won_ms = median(&accs[i].d[2]);
            t->rows[t->n++] = accs[i].row;
            accs[i].row.group = NULL;
            accs[i].row.revenue = NULL;
        }
        acc_free(&accs[i]);
    }
    if (t->n)
        qsort(t->rows, t->n, sizeof *t->rows, cmp_row);
    free(accs);
    free(lead_group);
    free(gr.by_str);
    funnel_idmap_clear(&gr.names);
    return rc;
}

int funnel_report_funnel_table(funnel_report_funnel_t *m, const char *by, int64_t from, int64_t to,
                               funnel_report_funnel_table_t **out, char *err, size_t err_len)
{
    size_t g = 0;
    while (g < N_GROUPS && (!by || strcmp(by, groups[g])))
        g++;
    if (g == N_GROUPS) {
        snprintf(err, err_len, "group by campaign, channel, source, medium, segment or month");
        return FUNNEL_EINVAL;
    }
    funnel_report_funnel_table_t *t = calloc(1, sizeof *t);
    if (!t)
        return FUNNEL_ENOMEM;
    t->by = groups[g];
    t->from = from;
    t->to = to;
    pthread_mutex_lock(&m->lock);
    int rc = table_build(m, g, t, err, err_len);
    pthread_mutex_unlock(&m->lock);
    if (rc)
        funnel_report_funnel_table_free(&t);
    *out = t;
    return rc;
}

/* "12.5": a share in percent with one decimal, rounded half up, from integers; NULL for 0/0. */
static json_t *pct(int64_t part, int64_t whole)
{
    if (!whole)
        return json_null();
    int64_t tenths = (part * 2000 / whole + 1) / 2;
    return json_sprintf("%lld.%lld", (long long)(tenths / 10), (long long)(tenths % 10));
}

static json_t *opt_ms(int64_t v)
{
    return v == FUNNEL_REPORT_NONE ? json_null() : funnel_report_int(v);
}

static json_t *row_json(const char *by, const funnel_report_funnel_row_t *r)
{
    json_t *revenue = json_object();
    for (size_t i = 0; revenue && i < r->n_revenue; i++)
        json_object_set_new(revenue, r->revenue[i].currency, funnel_report_int(r->revenue[i].net));
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:o, s:o, s:o, s:o}, s:{s:o, s:o, s:o}, s:o*}", by,
        r->group, "leads", (json_int_t)r->leads, "mql", (json_int_t)r->mql, "sql",
        (json_int_t)r->sql, "contacted", (json_int_t)r->contacted, "won", (json_int_t)r->won,
        "lost", (json_int_t)r->lost, "conversion_pct", "lead_mql", pct(r->mql, r->leads), "mql_sql",
        pct(r->sql, r->mql), "sql_contacted", pct(r->contacted, r->sql), "sql_won",
        pct(r->won, r->sql), "median_ms", "mql_sql", opt_ms(r->median_mql_sql_ms), "sql_contact",
        opt_ms(r->median_sql_contact_ms), "sql_won", opt_ms(r->median_sql_won_ms), "revenue",
        revenue);
}

json_t *funnel_report_funnel_json(const funnel_report_funnel_table_t *t)
{
    json_t *rows = json_array();
    json_t *root =
        json_pack("{s:s, s:o, s:o, s:o}", "by", t->by, "from_ms",
                  t->from == INT64_MIN ? json_null() : funnel_report_int(t->from), "to_ms",
                  t->to == INT64_MAX ? json_null() : funnel_report_int(t->to), "rows", rows);
    for (size_t i = 0; root && i < t->n; i++)
        if (json_array_append_new(rows, row_json(t->by, &t->rows[i]))) {
            json_decref(root);
            return NULL;
        }
    return root;
}

void funnel_report_funnel_csv(const funnel_report_funnel_table_t *t, FILE *out)
{
    fprintf(out,
            "%s,leads,mql,sql,contacted,won,lost,median_mql_sql_ms,median_sql_contact_ms,"
            "median_sql_won_ms,currency,revenue\n",
            t->by);
    for (size_t i = 0; i < t->n; i++) {
        const funnel_report_funnel_row_t *r = &t->rows[i];
        size_t lines = r->n_revenue ? r->n_revenue : 1;
        for (size_t k = 0; k < lines; k++) {
            funnel_report_csv_field(out, r->group, ",");
            fprintf(out, "%lld,%lld,%lld,%lld,%lld,%lld,", (long long)r->leads, (long long)r->mql,
                    (long long)r->sql, (long long)r->contacted, (long long)r->won,
                    (long long)r->lost);
            int64_t ms[] = {r->median_mql_sql_ms, r->median_sql_contact_ms, r->median_sql_won_ms};
            for (int j = 0; j < 3; j++)
                if (ms[j] == FUNNEL_REPORT_NONE)
                    fputc(',', out);
                else
                    fprintf(out, "%lld,", (long long)ms[j]);
            if (r->n_revenue)
                fprintf(out, "%s,%lld\n", r->revenue[k].currency, (long long)r->revenue[k].net);
            else
                fprintf(out, ",\n");
        }
    }
}
