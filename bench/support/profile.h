/* profile.h — reads funneld's sql_profile file (daemon/core/sqlprofile.h has the format) and
 * turns the snapshots of two spans of a run into the two tables that say where the writer's
 * time and pages go: statements by wall time per event, and WAL pages per event by table or
 * index (page numbers named by dbstat on the final database).
 *
 * Events are the runs of the event-insert statement (BENCH_PROFILE_EVENT_SQL): the profile's
 * own count of what the span stored, whatever its snapshots' edges. */
#ifndef FUNNEL_BENCH_PROFILE_H
#define FUNNEL_BENCH_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_PROFILE_EVENT_SQL "INSERT INTO events(" /* store.c's ST_EVENT_INSERT */

typedef struct bench_prof_stmt {
    char *sql;
    uint64_t calls, ns, steps, hits, misses, writes;
} bench_prof_stmt_t;

typedef struct bench_prof_page {
    uint32_t pgno;
    uint64_t frames;
} bench_prof_page_t;

/* One snapshot, or the sum of several (from_ms of the first, to_ms of the last). */
typedef struct bench_prof_span {
    int64_t from_ms, to_ms;
    size_t snapshots;
    bench_prof_stmt_t *stmts;
    size_t n_stmts;
    bench_prof_page_t *pages; /* ascending page numbers */
    size_t n_pages;
} bench_prof_span_t;

typedef struct bench_profile {
    bench_prof_span_t *snaps; /* in file order */
    size_t n_snaps;
} bench_profile_t;

/* Reads every complete snapshot of path. A malformed line, or a snapshot without its end line
 * but followed by more, fails (-1 with a message on stderr). */
int bench_profile_read(const char *path, bench_profile_t *p);
void bench_profile_clear(bench_profile_t *p);

/* Sums the snapshots whose middle falls in [from_ms, to_ms) into span (cleared first): the
 * same statement text and the same page add up. */
int bench_profile_sum(const bench_profile_t *p, int64_t from_ms, int64_t to_ms,
                      bench_prof_span_t *span);
void bench_profile_span_clear(bench_prof_span_t *span);

/* The statement of span whose text is sql (NULL: none), and the events the span stored. */
const bench_prof_stmt_t *bench_profile_stmt(const bench_prof_span_t *span, const char *sql);
uint64_t bench_profile_events(const bench_prof_span_t *span);

/* Page number -> the table or index that owns it, from dbstat on a database file. */
typedef struct bench_prof_owners {
    uint32_t *owner; /* by page number: index into names + 1, 0 for none (free pages) */
    size_t n_pages;
    char **names;
    size_t n_names;
} bench_prof_owners_t;

int bench_profile_owners_read(const char *db, bench_prof_owners_t *o);
void bench_profile_owners_clear(bench_prof_owners_t *o);
/* The owner of pgno: a table or index name, or "(free)" for a page no B-tree holds now. */
const char *bench_profile_owner(const bench_prof_owners_t *o, uint32_t pgno);

/* The WAL frames of span whose page owner names. */
uint64_t bench_profile_owner_frames(const bench_prof_span_t *span, const bench_prof_owners_t *o,
                                    const char *owner);

/* Prints the two tables for spans a and b (the first and the last fifth, named by the labels):
 * the top statements of b by wall us per event with calls/event, us/call, VM steps/call and
 * pages touched (hits + misses)/call in both, COMMIT's share of the statement time, and the WAL
 * pages per event by owner. Returns -1 when a span holds no events. */
int bench_profile_report(FILE *out, const bench_prof_span_t *a, const bench_prof_span_t *b,
                         const char *label_a, const char *label_b,
                         const bench_prof_owners_t *owners, size_t top);

#endif
