/* profile.c — see profile.h. */
#include "profile.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define COMMIT_SQL "COMMIT"
#define SQL_SHOWN  90 /* characters of a statement's text in the table */

/* ---- reading ----------------------------------------------------------------------------- */

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 16;
    void *p = realloc(*v, c * size);
    if (!p)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

void bench_profile_span_clear(bench_prof_span_t *span)
{
    for (size_t i = 0; i < span->n_stmts; i++)
        free(span->stmts[i].sql);
    free(span->stmts);
    free(span->pages);
    memset(span, 0, sizeof *span);
}

void bench_profile_clear(bench_profile_t *p)
{
    for (size_t i = 0; i < p->n_snaps; i++)
        bench_profile_span_clear(&p->snaps[i]);
    free(p->snaps);
    memset(p, 0, sizeof *p);
}

/* The reader's state: the snapshot being read and the capacities of its arrays. */
typedef struct reader {
    bench_profile_t *p;
    size_t cap_snaps, cap_stmts, cap_pages;
    bool open; /* a snapshot line came, its end line not yet */
} reader_t;

static int line_stmt(reader_t *r, const char *rest)
{
    bench_prof_span_t *s = &r->p->snaps[r->p->n_snaps - 1];
    bench_prof_stmt_t st = {0};
    int used = 0;
    if (sscanf(rest,
               "%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%n",
               &st.calls, &st.ns, &st.steps, &st.hits, &st.misses, &st.writes, &used) != 6 ||
        !used || grow((void **)&s->stmts, &r->cap_stmts, s->n_stmts, sizeof *s->stmts) ||
        !(st.sql = strdup(rest + used)))
        return -1;
    s->stmts[s->n_stmts++] = st;
    return 0;
}

static int line_wal(reader_t *r, const char *rest)
{
    bench_prof_span_t *s = &r->p->snaps[r->p->n_snaps - 1];
    bench_prof_page_t pg;
    if (sscanf(rest, "%" SCNu32 "\t%" SCNu64, &pg.pgno, &pg.frames) != 2 ||
        (s->n_pages && s->pages[s->n_pages - 1].pgno >= pg.pgno) ||
        grow((void **)&s->pages, &r->cap_pages, s->n_pages, sizeof *s->pages))
        return -1;
    s->pages[s->n_pages++] = pg;
    return 0;
}

static int line_snapshot(reader_t *r, const char *rest)
{
    bench_prof_span_t s = {.snapshots = 1};
    if (sscanf(rest, "%*u\t%" SCNd64 "\t%" SCNd64, &s.from_ms, &s.to_ms) != 2 ||
        grow((void **)&r->p->snaps, &r->cap_snaps, r->p->n_snaps, sizeof *r->p->snaps))
        return -1;
    r->p->snaps[r->p->n_snaps++] = s;
    r->cap_stmts = r->cap_pages = 0;
    r->open = true;
    return 0;
}

static int line_read(reader_t *r, char *line)
{
    line[strcspn(line, "\n")] = '\0';
    char *tab = strchr(line, '\t');
    if (!tab)
        return -1;
    *tab = '\0';
    const char *rest = tab + 1;
    if (!strcmp(line, "snapshot"))
        return r->open ? -1 : line_snapshot(r, rest);
    if (!r->open)
        return -1;
    if (!strcmp(line, "stmt"))
        return line_stmt(r, rest);
    if (!strcmp(line, "wal"))
        return line_wal(r, rest);
    if (!strcmp(line, "end")) {
        r->open = false;
        return 0;
    }
    return -1;
}

int bench_profile_read(const char *path, bench_profile_t *p)
{
    reader_t r = {.p = p};
    char *line = NULL;
    size_t cap = 0;
    long n = 0;
    int rc = 0;
    memset(p, 0, sizeof *p);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "profile %s: cannot open it\n", path);
        return -1;
    }
    while (!rc && getline(&line, &cap, f) > 0) {
        n++;
        if ((rc = line_read(&r, line)))
            fprintf(stderr, "profile %s: line %ld is malformed\n", path, n);
    }
    if (!rc && r.open) /* the last snapshot was cut short: funneld did not stop cleanly */
        bench_profile_span_clear(&p->snaps[--p->n_snaps]);
    free(line);
    fclose(f);
    if (rc)
        bench_profile_clear(p);
    return rc;
}

/* ---- sums -------------------------------------------------------------------------------- */

static int stmt_add(bench_prof_span_t *s, size_t *cap, const bench_prof_stmt_t *st)
{
    for (size_t i = 0; i < s->n_stmts; i++) {
        bench_prof_stmt_t *t = &s->stmts[i];
        if (strcmp(t->sql, st->sql))
            continue;
        t->calls += st->calls;
        t->ns += st->ns;
        t->steps += st->steps;
        t->hits += st->hits;
        t->misses += st->misses;
        t->writes += st->writes;
        return 0;
    }
    if (grow((void **)&s->stmts, cap, s->n_stmts, sizeof *s->stmts))
        return -1;
    s->stmts[s->n_stmts] = *st;
    if (!(s->stmts[s->n_stmts].sql = strdup(st->sql)))
        return -1;
    s->n_stmts++;
    return 0;
}

static int cmp_page(const void *a, const void *b)
{
    uint32_t x = ((const bench_prof_page_t *)a)->pgno, y = ((const bench_prof_page_t *)b)->pgno;
    return x < y ? -1 : x > y;
}

/* Sorts the pages and adds up repeated page numbers. */
static void pages_merge(bench_prof_span_t *s)
{
    size_t k = 0;
    if (s->n_pages)
        qsort(s->pages, s->n_pages, sizeof *s->pages, cmp_page);
    for (size_t i = 0; i < s->n_pages; i++) {
        if (k && s->pages[k - 1].pgno == s->pages[i].pgno)
            s->pages[k - 1].frames += s->pages[i].frames;
        else
            s->pages[k++] = s->pages[i];
    }
    s->n_pages = k;
}

int bench_profile_sum(const bench_profile_t *p, int64_t from_ms, int64_t to_ms,
                      bench_prof_span_t *span)
{
    size_t cap_stmts = 0, n_pages = 0;
    memset(span, 0, sizeof *span);
    for (size_t i = 0; i < p->n_snaps; i++) {
        const bench_prof_span_t *s = &p->snaps[i];
        int64_t mid = s->from_ms + (s->to_ms - s->from_ms) / 2;
        if (mid < from_ms || mid >= to_ms)
            continue;
        if (!span->snapshots++)
            span->from_ms = s->from_ms;
        span->to_ms = s->to_ms;
        for (size_t j = 0; j < s->n_stmts; j++)
            if (stmt_add(span, &cap_stmts, &s->stmts[j]))
                goto fail;
        n_pages += s->n_pages;
    }
    if (n_pages && !(span->pages = malloc(n_pages * sizeof *span->pages)))
        goto fail;
    for (size_t i = 0; i < p->n_snaps; i++) {
        const bench_prof_span_t *s = &p->snaps[i];
        int64_t mid = s->from_ms + (s->to_ms - s->from_ms) / 2;
        if (mid >= from_ms && mid < to_ms && s->n_pages) {
            memcpy(span->pages + span->n_pages, s->pages, s->n_pages * sizeof *s->pages);
            span->n_pages += s->n_pages;
        }
    }
    pages_merge(span);
    return 0;
fail:
    bench_profile_span_clear(span);
    return -1;
}

const bench_prof_stmt_t *bench_profile_stmt(const bench_prof_span_t *span, const char *sql)
{
    for (size_t i = 0; i < span->n_stmts; i++)
        if (!strcmp(span->stmts[i].sql, sql))
            return &span->stmts[i];
    return NULL;
}

uint64_t bench_profile_events(const bench_prof_span_t *span)
{
    uint64_t n = 0;
    for (size_t i = 0; i < span->n_stmts; i++)
        if (!strncmp(span->stmts[i].sql, BENCH_PROFILE_EVENT_SQL, strlen(BENCH_PROFILE_EVENT_SQL)))
            n += span->stmts[i].calls;
    return n;
}

/* ---- page owners ------------------------------------------------------------------------- */

void bench_profile_owners_clear(bench_prof_owners_t *o)
{
    for (size_t i = 0; i < o->n_names; i++)
        free(o->names[i]);
    free(o->names);
    free(o->owner);
    memset(o, 0, sizeof *o);
}

/* The index + 1 of name in o->names, added if new; 0 when out of memory. */
static uint32_t owner_name(bench_prof_owners_t *o, size_t *cap, const char *name)
{
    if (o->n_names && !strcmp(o->names[o->n_names - 1], name)) /* dbstat lists a tree at once */
        return (uint32_t)o->n_names;
    for (size_t i = 0; i < o->n_names; i++)
        if (!strcmp(o->names[i], name))
            return (uint32_t)i + 1;
    if (grow((void **)&o->names, cap, o->n_names, sizeof *o->names) ||
        !(o->names[o->n_names] = strdup(name)))
        return 0;
    return (uint32_t)++o->n_names;
}

int bench_profile_owners_read(const char *db, bench_prof_owners_t *o)
{
    sqlite3 *con = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc = -1;
    memset(o, 0, sizeof *o);
    if (sqlite3_open_v2(db, &con, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(con, "SELECT pageno, name FROM dbstat ORDER BY pageno", -1, &st, NULL) !=
            SQLITE_OK) {
        fprintf(stderr, "dbstat on %s: %s\n", db, con ? sqlite3_errmsg(con) : "out of memory");
        goto out;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t pgno = sqlite3_column_int64(st, 0);
        uint32_t name = owner_name(o, &cap, (const char *)sqlite3_column_text(st, 1));
        if (pgno <= 0 || !name)
            goto out;
        if ((size_t)pgno >= o->n_pages) {
            size_t n = 2 * (size_t)pgno + 1;
            uint32_t *v = realloc(o->owner, n * sizeof *v);
            if (!v)
                goto out;
            memset(v + o->n_pages, 0, (n - o->n_pages) * sizeof *v);
            o->owner = v;
            o->n_pages = n;
        }
        o->owner[pgno] = name;
    }
    rc = step == SQLITE_DONE ? 0 : -1;
    if (rc)
        fprintf(stderr, "dbstat on %s: %s\n", db, sqlite3_errmsg(con));
out:
    sqlite3_finalize(st);
    sqlite3_close(con);
    if (rc)
        bench_profile_owners_clear(o);
    return rc;
}

const char *bench_profile_owner(const bench_prof_owners_t *o, uint32_t pgno)
{
    return pgno < o->n_pages && o->owner[pgno] ? o->names[o->owner[pgno] - 1] : "(free)";
}

uint64_t bench_profile_owner_frames(const bench_prof_span_t *span, const bench_prof_owners_t *o,
                                    const char *owner)
{
    uint64_t n = 0;
    for (size_t i = 0; i < span->n_pages; i++)
        if (!strcmp(bench_profile_owner(o, span->pages[i].pgno), owner))
            n += span->pages[i].frames;
    return n;
}

/* ---- the tables -------------------------------------------------------------------------- */

static uint64_t span_ns(const bench_prof_span_t *s)
{
    uint64_t ns = 0;
    for (size_t i = 0; i < s->n_stmts; i++)
        ns += s->stmts[i].ns;
    return ns;
}

static double per(uint64_t x, uint64_t n)
{
    return n ? (double)x / (double)n : 0;
}

static int cmp_ns_desc(const void *a, const void *b)
{
    const bench_prof_stmt_t *x = *(bench_prof_stmt_t *const *)a,
                            *y = *(bench_prof_stmt_t *const *)b;
    return x->ns > y->ns ? -1 : x->ns < y->ns;
}

static void span_line(FILE *out, const char *label, const bench_prof_span_t *s, uint64_t events)
{
    const bench_prof_stmt_t *c = bench_profile_stmt(s, COMMIT_SQL);
    uint64_t total = span_ns(s), commit = c ? c->ns : 0;
    fprintf(out,
            "  %-10s %3zu snapshots, %8" PRIu64 " events: statements %6.1f us/event; COMMIT "
            "%5.1f us/event = %4.1f%% of it, %.0f events and %.0f pages written a commit\n",
            label, s->snapshots, events, per(total, events) / 1000, per(commit, events) / 1000,
            100 * per(commit, total), per(events, c ? c->calls : 0),
            per(c ? c->writes : 0, c ? c->calls : 0));
}

static void stmt_row(FILE *out, const bench_prof_stmt_t *x, uint64_t ex, const bench_prof_stmt_t *y,
                     uint64_t ey)
{
    static const bench_prof_stmt_t none = {0};
    if (!x)
        x = &none;
    fprintf(out,
            "  %6.2f ->%6.2f  %6.3f ->%6.3f  %8.1f ->%8.1f  %6.0f ->%6.0f  %6.1f ->%6.1f  %.*s\n",
            per(x->ns, ex) / 1000, per(y->ns, ey) / 1000, per(x->calls, ex), per(y->calls, ey),
            per(x->ns, x->calls) / 1000, per(y->ns, y->calls) / 1000, per(x->steps, x->calls),
            per(y->steps, y->calls), per(x->hits + x->misses, x->calls),
            per(y->hits + y->misses, y->calls), SQL_SHOWN, y->sql);
}

static int stmts_table(FILE *out, const bench_prof_span_t *a, const bench_prof_span_t *b,
                       uint64_t ea, uint64_t eb, size_t top)
{
    const bench_prof_stmt_t **order = malloc((b->n_stmts + 1) * sizeof *order);
    if (!order)
        return -1;
    for (size_t i = 0; i < b->n_stmts; i++)
        order[i] = &b->stmts[i];
    qsort(order, b->n_stmts, sizeof *order, cmp_ns_desc);
    fprintf(out, "\n  %-16s %-16s %-20s %-16s %-16s %s\n", "us/event", "calls/event", "us/call",
            "VM steps/call", "pages/call", "statement (by us/event in the last)");
    for (size_t i = 0; i < b->n_stmts && i < top; i++)
        stmt_row(out, bench_profile_stmt(a, order[i]->sql), ea, order[i], eb);
    free(order);
    return 0;
}

/* Frames by owner in span s, into counts (one per owner name, then one for free pages). */
static void owner_frames(const bench_prof_span_t *s, const bench_prof_owners_t *o, uint64_t *counts)
{
    for (size_t i = 0; i < s->n_pages; i++) {
        uint32_t pg = s->pages[i].pgno;
        counts[pg < o->n_pages && o->owner[pg] ? o->owner[pg] - 1 : o->n_names] +=
            s->pages[i].frames;
    }
}

static int pages_table(FILE *out, const bench_prof_span_t *a, const bench_prof_span_t *b,
                       uint64_t ea, uint64_t eb, const bench_prof_owners_t *o, size_t top)
{
    size_t n = o->n_names + 1;
    uint64_t *ca = calloc(n, sizeof *ca), *cb = calloc(n, sizeof *cb), ta = 0, tb = 0;
    bool *shown = calloc(n, sizeof *shown);
    if (!ca || !cb || !shown) {
        free(ca);
        free(cb);
        free(shown);
        return -1;
    }
    owner_frames(a, o, ca);
    owner_frames(b, o, cb);
    for (size_t i = 0; i < n; i++) {
        ta += ca[i];
        tb += cb[i];
    }
    fprintf(out,
            "\n  WAL pages (frames) per event by table or index (dbstat of the final database)\n");
    fprintf(out, "  %7.3f -> %7.3f  total\n", per(ta, ea), per(tb, eb));
    for (size_t k = 0; k < top && k < n; k++) { /* the largest of b not shown yet */
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!shown[i] && (ca[i] || cb[i]) && (best == n || cb[i] > cb[best]))
                best = i;
        if (best == n)
            break;
        shown[best] = true;
        fprintf(out, "  %7.3f -> %7.3f  %s\n", per(ca[best], ea), per(cb[best], eb),
                best < o->n_names ? o->names[best] : "(free)");
    }
    free(ca);
    free(cb);
    free(shown);
    return 0;
}

int bench_profile_report(FILE *out, const bench_prof_span_t *a, const bench_prof_span_t *b,
                         const char *label_a, const char *label_b,
                         const bench_prof_owners_t *owners, size_t top)
{
    uint64_t ea = bench_profile_events(a), eb = bench_profile_events(b);
    if (!ea || !eb)
        return -1;
    fprintf(out, "\nwhere funneld's writer spends its time (sql_profile, wall time), %s -> %s\n\n",
            label_a, label_b);
    span_line(out, label_a, a, ea);
    span_line(out, label_b, b, eb);
    if (stmts_table(out, a, b, ea, eb, top) || pages_table(out, a, b, ea, eb, owners, top))
        return -1;
    return 0;
}
