/* test_bench_mix.c — the workload generator of bench_workload (bench/support/mix.h): the same
 * seed gives the same events, in event-time order with increasing ids; every event is one
 * funneld accepts and refers to what came before it (an SQL to its MQL, a handoff to a won
 * lead, a payment to a handed-off client, a refund to a payment of the same client and
 * currency); the shares are the documented ones; and the real funneld, configured as the
 * benchmark configures it, answers "ok" to every event, with its statement profile on
 * (bench_workload --profile) in a file the benchmark's reader and tables take. */
#include "bench.h"
#include "harness.h"
#include "mix.h"
#include "profile.h"

#include "funnel/codec.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define END_MS 1764547200000LL /* 2025-12-01 00:00 UTC: fixed, so runs are comparable */
#define SMALL  300             /* leads in the reference checks */

static bench_mix_t *mix_open(uint64_t leads, uint64_t seed)
{
    bench_mix_t *m = NULL;
    cr_assert_eq(bench_mix_new(leads, seed, END_MS, &m), 0);
    return m;
}

/* FNV-1a over every event's id, topic and bytes: equal digests, equal streams. */
static uint64_t mix_digest(uint64_t leads, uint64_t seed, uint64_t *events)
{
    bench_mix_t *m = mix_open(leads, seed);
    bench_mix_event_t ev;
    uint64_t h = 1469598103934665603ull;
    *events = 0;
    while (bench_mix_next(m, &ev) > 0) {
        const uint8_t *parts[] = {(const uint8_t *)ev.event_id, (const uint8_t *)ev.topic, ev.data};
        size_t lens[] = {strlen(ev.event_id), strlen(ev.topic), ev.len};
        for (int p = 0; p < 3; p++)
            for (size_t i = 0; i < lens[p]; i++)
                h = (h ^ parts[p][i]) * 1099511628211ull;
        (*events)++;
    }
    bench_mix_destroy(&m);
    cr_assert_null(m);
    return h;
}

Test(mix, same_seed_same_events)
{
    uint64_t n1, n2, n3;
    uint64_t a = mix_digest(SMALL, 7, &n1), b = mix_digest(SMALL, 7, &n2);
    uint64_t c = mix_digest(SMALL, 8, &n3);
    cr_assert_gt(n1, SMALL, "a lead makes at least its lead.created");
    cr_assert_eq(n1, n2);
    cr_assert_eq(a, b, "one seed, two different streams");
    cr_assert_neq(a, c, "seeds 7 and 8 made the same stream");
}

Test(mix, event_time_order_and_ids)
{
    bench_mix_t *m = mix_open(SMALL, 1);
    bench_mix_event_t ev;
    char prev_id[37] = "";
    int64_t prev_at = 0;
    uint64_t n = 0, index;
    while (bench_mix_next(m, &ev) > 0) {
        cr_assert_eq(ev.index, n, "index %llu at event %llu", (unsigned long long)ev.index,
                     (unsigned long long)n);
        cr_assert_geq(ev.at_ms, prev_at, "event %llu goes back in time", (unsigned long long)n);
        cr_assert_leq(ev.at_ms, END_MS);
        cr_assert_gt(ev.at_ms, END_MS - BENCH_MIX_YEAR_MS);
        cr_assert_eq(strlen(ev.event_id), 36);
        cr_assert_gt(strcmp(ev.event_id, prev_id), 0, "id %s after %s", ev.event_id, prev_id);
        cr_assert(bench_mix_index_of(ev.event_id, 36, &index), "%s not read back", ev.event_id);
        cr_assert_eq(index, n);
        snprintf(prev_id, sizeof prev_id, "%s", ev.event_id);
        prev_at = ev.at_ms;
        n++;
    }
    bench_mix_destroy(&m);
    cr_assert_not(bench_mix_index_of("0192a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b", 36, &index),
                  "a random UUIDv7 is not one of the generator's ids");
    cr_assert_not(bench_mix_index_of("lead-1", 6, &index));
}

Test(mix, refuses_no_leads)
{
    static char not_null;
    bench_mix_t *m = (bench_mix_t *)&not_null;
    cr_assert_neq(bench_mix_new(0, 1, END_MS, &m), 0);
    cr_assert_null(m);
}

/* ---- references between events ------------------------------------------------------------ */

/* What the checker knows of one lead so far. */
typedef struct lead_seen {
    bool created, mql, sql, won, handed_off;
    char owner[32];
} lead_seen_t;

typedef struct payment_seen {
    char payment_id[48], client_id[48], currency[4];
    int64_t minor;
} payment_seen_t;

typedef struct refs {
    lead_seen_t leads[SMALL];
    payment_seen_t payments[4096];
    size_t n_payments;
} refs_t;

static lead_seen_t *lead_of(refs_t *r, const char *id, const char *prefix)
{
    unsigned i;
    char tail;
    size_t plen = strlen(prefix);
    cr_assert_eq(strncmp(id, prefix, plen), 0, "id %s is not %s<n>", id, prefix);
    cr_assert_eq(sscanf(id + plen, "%u%c", &i, &tail), 1, "id %s is not %s<n>", id, prefix);
    cr_assert_lt(i, SMALL, "%s names no generated lead", id);
    return &r->leads[i];
}

static const payment_seen_t *payment_of(const refs_t *r, const char *payment_id)
{
    for (size_t i = 0; i < r->n_payments; i++)
        if (!strcmp(r->payments[i].payment_id, payment_id))
            return &r->payments[i];
    return NULL;
}

static void check_qualified(refs_t *r, const Funnel__V1__LeadQualified *q)
{
    lead_seen_t *l = lead_of(r, q->lead_id, "lead-");
    if (q->stage == FUNNEL__V1__STAGE__MQL) {
        cr_assert(l->created && !l->mql, "%s: MQL without creation, or twice", q->lead_id);
        l->mql = true;
        return;
    }
    cr_assert(l->mql && !l->sql, "%s: SQL without MQL, or twice", q->lead_id);
    cr_assert_neq(q->owner[0], '\0', "%s: SQL without an owner", q->lead_id);
    snprintf(l->owner, sizeof l->owner, "%s", q->owner);
    l->sql = true;
}

static void check_money(refs_t *r, const funnel_envelope_t *env)
{
    if (env->body_case == FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED) {
        const Funnel__V1__PaymentReceived *p = env->payment_received;
        cr_assert(lead_of(r, p->client_id, "client-")->handed_off, "%s pays before its handoff",
                  p->client_id);
        cr_assert_null(payment_of(r, p->payment_id), "payment %s twice", p->payment_id);
        cr_assert_lt(r->n_payments, sizeof r->payments / sizeof r->payments[0]);
        payment_seen_t *s = &r->payments[r->n_payments++];
        snprintf(s->payment_id, sizeof s->payment_id, "%s", p->payment_id);
        snprintf(s->client_id, sizeof s->client_id, "%s", p->client_id);
        snprintf(s->currency, sizeof s->currency, "%s", p->amount->currency);
        s->minor = p->amount->minor;
        return;
    }
    const Funnel__V1__PaymentRefunded *f = env->payment_refunded;
    const payment_seen_t *s = payment_of(r, f->payment_id);
    cr_assert_not_null(s, "refund %s of an unknown payment %s", f->refund_id, f->payment_id);
    cr_assert_str_eq(s->client_id, f->client_id);
    cr_assert_str_eq(s->currency, f->amount->currency);
    cr_assert_leq(f->amount->minor, s->minor, "refund %s exceeds its payment", f->refund_id);
}

/* Checks one decoded event against what came before it. */
static void check_refs(refs_t *r, const funnel_envelope_t *env)
{
    lead_seen_t *l;
    switch (env->body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED:
        l = lead_of(r, env->lead_created->lead_id, "lead-");
        cr_assert_not(l->created, "lead %s created twice", env->lead_created->lead_id);
        cr_assert_geq(env->lead_created->n_touches, 1);
        l->created = true;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED:
        cr_assert(lead_of(r, env->lead_touched->lead_id, "lead-")->created);
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED:
        check_qualified(r, env->lead_qualified);
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CONTACTED:
        l = lead_of(r, env->lead_contacted->lead_id, "lead-");
        cr_assert(l->sql, "contact before the SQL");
        cr_assert_str_eq(env->lead_contacted->rep, l->owner, "contacted by someone else");
        break;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CLOSED:
        l = lead_of(r, env->lead_closed->lead_id, "lead-");
        cr_assert(l->mql, "closed before qualification");
        l->won = env->lead_closed->outcome == FUNNEL__V1__OUTCOME__WON;
        cr_assert(!l->won || l->sql, "won without an SQL");
        break;
    case FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF:
        l = lead_of(r, env->client_handed_off->lead_id, "lead-");
        cr_assert(l->won && !l->handed_off, "handoff of a lead not won, or twice");
        cr_assert_eq(lead_of(r, env->client_handed_off->client_id, "client-"), l);
        cr_assert_str_eq(env->client_handed_off->from_rep, l->owner);
        l->handed_off = true;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED:
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED:
        check_money(r, env);
        break;
    default:
        cr_assert_fail("unexpected body %d", (int)env->body_case);
    }
}

Test(mix, every_event_valid_and_referenced)
{
    static refs_t refs;
    funnel_codec_limits_t limits = {.max_message_bytes = 65536, .max_future_ms = 86400000};
    bench_mix_t *m = mix_open(SMALL, 3);
    bench_mix_event_t ev;
    memset(&refs, 0, sizeof refs);
    while (bench_mix_next(m, &ev) > 0) {
        funnel_envelope_t *env = NULL;
        funnel_refusal_t why = {0};
        int rc = funnel_codec_decode(&limits, ev.topic, strlen(ev.topic), ev.data, ev.len, END_MS,
                                     &env, &why);
        cr_assert_eq(rc, 0, "event %llu (%s) refused: %s", (unsigned long long)ev.index,
                     bench_mix_kind_name(ev.kind), why.text);
        check_refs(&refs, env);
        funnel_envelope_free(&env);
    }
    bench_mix_destroy(&m);
    cr_assert_gt(refs.n_payments, 0, "no payment in %d leads", SMALL);
}

/* ---- the documented shares ---------------------------------------------------------------- */

static void assert_share(const char *what, uint64_t part, uint64_t whole, double want, double tol)
{
    double got = whole ? (double)part / (double)whole : 0;
    cr_assert(got >= want - tol && got <= want + tol, "%s: %.3f, documented %.3f", what, got, want);
}

Test(mix, documented_shares)
{
    uint64_t by[BENCH_MIX_KINDS_] = {0}, leads = 20000;
    bench_mix_t *m = mix_open(leads, 1);
    bench_mix_event_t ev;
    while (bench_mix_next(m, &ev) > 0)
        by[ev.kind]++;
    bench_mix_destroy(&m);
    cr_assert_eq(by[BENCH_MIX_CREATED], leads);
    /* 0-4 later touches (mean 2); the last weeks' leads lose some to the year's end */
    assert_share("touches per lead", by[BENCH_MIX_TOUCHED], leads, 1.9, 0.15);
    /* MQLs, SQLs and closes late in the year are cut off by its end: hence the tolerances */
    assert_share("MQL per lead", by[BENCH_MIX_MQL], leads, 0.5, 0.03);
    assert_share("SQL per MQL", by[BENCH_MIX_SQL], by[BENCH_MIX_MQL], 0.4, 0.03);
    assert_share("contacts per SQL", by[BENCH_MIX_CONTACTED], by[BENCH_MIX_SQL], 1.0, 0.01);
    assert_share("won per close after SQL", by[BENCH_MIX_WON],
                 by[BENCH_MIX_WON] + by[BENCH_MIX_LOST], 0.3, 0.03);
    assert_share("refunds per payment", by[BENCH_MIX_REFUND], by[BENCH_MIX_PAYMENT], 0.03, 0.01);
}

/* ---- the real funneld -------------------------------------------------------------------- */

typedef struct answers {
    bench_mix_t *mix;
    uint64_t sent, ok;
    char first_refusal[256];
} answers_t;

static int answers_next(void *ctx, const char **topic, const void **data, size_t *len,
                        uint64_t *index)
{
    answers_t *a = ctx;
    bench_mix_event_t ev;
    int got = bench_mix_next_message(a->mix, &ev, topic, data, len, index);
    a->sent += got > 0;
    return got;
}

static bool answers_index_of(void *ctx, const void *id, size_t len, uint64_t *index)
{
    (void)ctx;
    return bench_mix_index_of(id, len, index);
}

static void answers_answered(void *ctx, uint64_t index, const char *status, size_t len,
                             uint64_t lat_ns, uint64_t now_ns)
{
    answers_t *a = ctx;
    (void)lat_ns;
    (void)now_ns;
    if (len == 2 && !memcmp(status, "ok", 2))
        a->ok++;
    else if (!a->first_refusal[0])
        snprintf(a->first_refusal, sizeof a->first_refusal, "event %llu: %.*s",
                 (unsigned long long)index, (int)len, status);
}

static fx_tmpdir_t tmp;
static fx_daemon_t fd;

static void e2e_stop(void)
{
    fx_daemon_finish(&fd);
    fx_tmpdir_remove(&tmp);
}

TestSuite(e2e_mix, .fini = e2e_stop, .timeout = 240);

/* The profile funneld wrote, once stopped, in bench_workload --profile's tables: its events
 * are the events funneld stored, and its WAL pages belong to funneld's tables. */
static void profile_check(const char *path, const char *db, uint64_t events)
{
    bench_profile_t p;
    bench_prof_span_t all;
    bench_prof_owners_t owners;
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(bench_profile_read(path, &p), 0, "funneld's profile does not parse");
    cr_assert_eq(bench_profile_sum(&p, INT64_MIN, INT64_MAX, &all), 0);
    bench_profile_clear(&p);
    cr_assert_eq(bench_profile_events(&all), events, "the profile counts %llu events of %llu",
                 (unsigned long long)bench_profile_events(&all), (unsigned long long)events);
    const bench_prof_stmt_t *commit = bench_profile_stmt(&all, "COMMIT");
    cr_assert(commit && commit->calls > 0 && commit->writes > 0, "no store COMMIT that wrote");
    cr_assert_eq(bench_profile_owners_read(db, &owners), 0);
    cr_assert_gt(bench_profile_owner_frames(&all, &owners, "events"), 0,
                 "no WAL page of the events table");
    /* Every statement and table shown, so what is printed does not depend on timings. */
    FILE *out = open_memstream(&text, &len);
    cr_assert_eq(bench_profile_report(out, &all, &all, "run", "run", &owners, SIZE_MAX), 0);
    fclose(out);
    cr_assert_not_null(strstr(text, BENCH_PROFILE_EVENT_SQL), "%s", text);
    cr_assert_not_null(strstr(text, "  COMMIT\n"), "%s", text);
    cr_assert_not_null(strstr(text, "  events\n"), "%s", text);
    free(text);
    bench_profile_owners_clear(&owners);
    bench_profile_span_clear(&all);
}

/* A year of SMALL leads, ending yesterday as the benchmark's does, through the benchmark's
 * config and submit loop: funneld accepts every event. */
Test(e2e_mix, funneld_accepts_every_event)
{
    char conf[300], set[400], profile[300];
    int64_t now = fx_now_ms();
    answers_t a = {0};
    bench_source_t src = {&a, answers_next, answers_index_of, answers_answered};
    uint64_t first_ns;
    fx_tmpdir_make(&tmp);
    cr_assert_eq(bench_config_write(tmp.path, conf, sizeof conf), 0);
    snprintf(profile, sizeof profile, "%s/funneld.profile", tmp.path);
    snprintf(set, sizeof set, "sql_profile=%s", profile);
    const char *const args[] = {"--config", conf, "--set", set, NULL};
    fx_daemon_start(&fd, tmp.path, args);
    cr_assert_eq(bench_mix_new(SMALL, 1, now - now % 86400000LL, &a.mix), 0);
    int rc = bench_submit(fd.submit, 500, &src, &first_ns);
    bench_mix_destroy(&a.mix);
    cr_assert_eq(rc, 0, "the submit loop failed");
    cr_assert_gt(a.sent, SMALL);
    cr_assert_eq(a.ok, a.sent, "%llu of %llu ok; first other answer: %s", (unsigned long long)a.ok,
                 (unsigned long long)a.sent, a.first_refusal);
    cr_assert_eq(fx_daemon_stop(&fd), 0); /* its close writes the last snapshot */
    profile_check(profile, fd.db, a.sent);
}
