/* sqlprofile.c — see sqlprofile.h. Runs inside the writer's statements (its trace callback),
 * on the writer's thread: no locking, and nothing here may fail a statement. */
#include "sqlprofile.h"

#include "funnel/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define STMT_SLOTS     1024 /* prepared statements remembered; a power of two */
#define TEXTS_FIRST    256  /* statement texts: the first table; a power of two */
#define TEXTS_MAX      4096 /* texts kept at most; beyond, they share OTHER_TEXT */
#define OTHER_TEXT     "(other statements)"
#define WAL_HEADER     32
#define FRAME_HEADER   24
#define WAL_MAGIC_MASK 0xfffffffeu
#define WAL_MAGIC      0x377f0682u

/* What one statement text cost in the current snapshot. */
typedef struct text_cost {
    char *sql; /* NULL: a free slot */
    uint32_t hash;
    bool may_commit; /* a write or a COMMIT: in autocommit mode it ends a transaction */
    uint64_t calls, ns, steps, hits, misses, writes;
} text_cost_t;

/* A prepared statement seen before, so its text is hashed once rather than at every run. */
typedef struct stmt_slot {
    const sqlite3_stmt *stmt; /* NULL: a free slot */
    size_t text;              /* index in texts */
    uint64_t started_ns;      /* when its current run began; 0 between runs */
} stmt_slot_t;

/* The WAL as the last commit left it: where the next frame goes and which generation (the
 * salts change each time the WAL starts over from its first frame). */
typedef struct wal_cursor {
    int fd;     /* -1 until the file exists */
    char *path; /* NULL: the database has none */
    uint32_t salt1, salt2, page_size;
    off_t next; /* offset of the first frame no commit has claimed yet */
} wal_cursor_t;

typedef struct sqlprofile {
    sqlite3 *db;
    FILE *out;
    funnel_sqlprofile_clock_fn clock;
    void *clock_ctx;
    uint64_t seq, snapshot_ns;
    int64_t snapshot_ms; /* wall clock when the current snapshot began */
    stmt_slot_t slots[STMT_SLOTS];
    size_t n_slots;
    text_cost_t *texts;
    size_t n_texts, cap_texts;
    int hits, misses, writes; /* the connection's counters as last read */
    wal_cursor_t wal;
    uint32_t *pages; /* page numbers of the frames committed in this snapshot */
    size_t n_pages, cap_pages;
} sqlprofile_t;

static uint64_t mono_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint32_t text_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* ---- statement texts --------------------------------------------------------------------- */

/* The slot of text in table (cap a power of two): its own, or the free one it would take. */
static size_t text_probe(const text_cost_t *table, size_t cap, const char *sql, uint32_t hash)
{
    size_t i = hash & (cap - 1);
    while (table[i].sql && (table[i].hash != hash || strcmp(table[i].sql, sql)))
        i = (i + 1) & (cap - 1);
    return i;
}

static int texts_grow(sqlprofile_t *p)
{
    size_t cap = p->cap_texts ? 2 * p->cap_texts : TEXTS_FIRST;
    text_cost_t *t = calloc(cap, sizeof *t);
    if (!t)
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < p->cap_texts; i++)
        if (p->texts[i].sql)
            t[text_probe(t, cap, p->texts[i].sql, p->texts[i].hash)] = p->texts[i];
    free(p->texts);
    p->texts = t;
    p->cap_texts = cap;
    /* The slots point into the old table. */
    memset(p->slots, 0, sizeof p->slots);
    p->n_slots = 0;
    return 0;
}

static bool ends_transaction(const char *sql)
{
    return !strncasecmp(sql, "COMMIT", 6) || !strncasecmp(sql, "END", 3) ||
           !strncasecmp(sql, "RELEASE", 7);
}

/* The index of sql's entry, made on first sight; -1 when out of memory. Past TEXTS_MAX texts
 * (a caller formatting values into its SQL) the rest share one entry. */
static long text_find(sqlprofile_t *p, sqlite3_stmt *stmt, const char *sql)
{
    if (2 * (p->n_texts + 1) > p->cap_texts && p->n_texts < TEXTS_MAX && texts_grow(p))
        return -1;
    if (p->n_texts >= TEXTS_MAX)
        sql = OTHER_TEXT;
    uint32_t hash = text_hash(sql);
    size_t i = text_probe(p->texts, p->cap_texts, sql, hash);
    if (p->texts[i].sql)
        return (long)i;
    if (!(p->texts[i].sql = strdup(sql)))
        return -1;
    p->texts[i].hash = hash;
    p->texts[i].may_commit = !sqlite3_stmt_readonly(stmt) || ends_transaction(sql);
    p->n_texts++;
    return (long)i;
}

/* ---- prepared statements ----------------------------------------------------------------- */

/* Where stmt's slot is, or the free one it would take. */
static stmt_slot_t *slot_of(sqlprofile_t *p, const sqlite3_stmt *stmt)
{
    size_t i = (size_t)(((uintptr_t)stmt >> 4) * 0x9e3779b97f4a7c15ull >> 54) & (STMT_SLOTS - 1);
    while (p->slots[i].stmt && p->slots[i].stmt != stmt)
        i = (i + 1) & (STMT_SLOTS - 1);
    return &p->slots[i];
}

/* stmt's slot, made on first sight: also when a finalized statement's address came back with
 * another text. NULL when out of memory. */
static stmt_slot_t *slot_find(sqlprofile_t *p, sqlite3_stmt *stmt)
{
    const char *sql = sqlite3_sql(stmt);
    stmt_slot_t *s = slot_of(p, stmt);
    if (!sql)
        sql = "";
    if (s->stmt && !strcmp(p->texts[s->text].sql, sql))
        return s;
    long t = text_find(p, stmt, sql); /* may regrow the texts, which empties the slots */
    if (t < 0)
        return NULL;
    if (2 * (p->n_slots + 1) > STMT_SLOTS) {
        /* Statements prepared once each (sqlite3_exec) filled them: forget them all. */
        memset(p->slots, 0, sizeof p->slots);
        p->n_slots = 0;
    }
    s = slot_of(p, stmt);
    p->n_slots += !s->stmt;
    *s = (stmt_slot_t){.stmt = stmt, .text = (size_t)t};
    return s;
}

/* ---- the WAL ----------------------------------------------------------------------------- */

static void pages_add(sqlprofile_t *p, uint32_t pgno)
{
    if (p->n_pages == p->cap_pages) {
        size_t cap = p->cap_pages ? 2 * p->cap_pages : 4096;
        uint32_t *v = realloc(p->pages, cap * sizeof *v);
        if (!v)
            return; /* the page goes uncounted; the snapshot says fewer */
        p->pages = v;
        p->cap_pages = cap;
    }
    p->pages[p->n_pages++] = pgno;
}

/* Reads the frame headers appended since the last commit: through the last commit frame they
 * belong to the commits that just ended (frames after it are a rolled-back transaction's
 * spill, overwritten later). record false: only moves past them (frames written before the
 * profiler started). A WAL that started over has new salts: its frames begin at the top. */
static void wal_scan(sqlprofile_t *p, bool record)
{
    wal_cursor_t *w = &p->wal;
    unsigned char h[WAL_HEADER];
    if (!w->path || (w->fd < 0 && (w->fd = open(w->path, O_RDONLY | O_CLOEXEC)) < 0))
        return;
    if (pread(w->fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
        (be32(h) & WAL_MAGIC_MASK) != WAL_MAGIC)
        return;
    uint32_t page_size = be32(h + 8) == 1 ? 65536 : be32(h + 8);
    if (be32(h + 16) != w->salt1 || be32(h + 20) != w->salt2 || page_size != w->page_size) {
        w->salt1 = be32(h + 16);
        w->salt2 = be32(h + 20);
        w->page_size = page_size;
        w->next = WAL_HEADER;
    }
    size_t kept = p->n_pages;
    unsigned char f[FRAME_HEADER];
    for (off_t at = w->next; pread(w->fd, f, sizeof f, at) == (ssize_t)sizeof f &&
                             be32(f + 8) == w->salt1 && be32(f + 12) == w->salt2;
         at += FRAME_HEADER + (off_t)page_size) {
        if (record)
            pages_add(p, be32(f));
        if (be32(f + 4)) { /* a commit frame: the database's size after that commit */
            w->next = at + FRAME_HEADER + (off_t)page_size;
            kept = p->n_pages;
        }
    }
    p->n_pages = kept;
}

/* ---- snapshots --------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sql_write(FILE *out, const char *sql)
{
    for (; *sql; sql++)
        fputc(*sql == '\t' || *sql == '\n' || *sql == '\r' ? ' ' : *sql, out);
    fputc('\n', out);
}

static void snapshot_write(sqlprofile_t *p, uint64_t now_ns)
{
    int64_t now_ms = wall_ms();
    fprintf(p->out, "snapshot\t%llu\t%lld\t%lld\n", (unsigned long long)p->seq,
            (long long)p->snapshot_ms, (long long)now_ms);
    for (size_t i = 0; i < p->cap_texts; i++) {
        text_cost_t *t = &p->texts[i];
        if (!t->sql || !t->calls)
            continue;
        fprintf(p->out, "stmt\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t", (unsigned long long)t->calls,
                (unsigned long long)t->ns, (unsigned long long)t->steps,
                (unsigned long long)t->hits, (unsigned long long)t->misses,
                (unsigned long long)t->writes);
        sql_write(p->out, t->sql);
        t->calls = t->ns = t->steps = t->hits = t->misses = t->writes = 0;
    }
    if (p->n_pages)
        qsort(p->pages, p->n_pages, sizeof *p->pages, cmp_u32);
    for (size_t i = 0, j; i < p->n_pages; i = j) {
        for (j = i; j < p->n_pages && p->pages[j] == p->pages[i]; j++)
            ;
        fprintf(p->out, "wal\t%u\t%zu\n", p->pages[i], j - i);
    }
    fprintf(p->out, "end\t%llu\n", (unsigned long long)p->seq++);
    fflush(p->out);
    p->n_pages = 0;
    p->snapshot_ns = now_ns;
    p->snapshot_ms = now_ms;
}

/* ---- the trace callback ------------------------------------------------------------------ */

/* The growth of one of the connection's counters since it was last read. Someone else may
 * reset it (store.c resets CACHE_MISS after commits): then all of it is new. */
static uint64_t status_delta(sqlite3 *db, int op, int *last)
{
    int cur = 0, high = 0;
    if (sqlite3_db_status(db, op, &cur, &high, 0) != SQLITE_OK)
        return 0;
    uint64_t d = (uint64_t)(cur >= *last ? cur - *last : cur);
    *last = cur;
    return d;
}

static void stmt_started(sqlprofile_t *p, sqlite3_stmt *stmt)
{
    stmt_slot_t *s = slot_find(p, stmt);
    if (s && !s->started_ns) /* a trigger's program starts again inside its statement */
        s->started_ns = p->clock(p->clock_ctx);
}

static void stmt_ended(sqlprofile_t *p, sqlite3_stmt *stmt, uint64_t sqlite_ns)
{
    uint64_t now = p->clock(p->clock_ctx);
    stmt_slot_t *s = slot_find(p, stmt);
    if (!s)
        return;
    text_cost_t *t = &p->texts[s->text];
    /* SQLite's own figure counts whole milliseconds: only when the start was not seen. */
    t->ns += s->started_ns ? now - s->started_ns : sqlite_ns;
    s->started_ns = 0;
    t->calls++;
    t->steps += (uint64_t)sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_VM_STEP, 1);
    t->hits += status_delta(p->db, SQLITE_DBSTATUS_CACHE_HIT, &p->hits);
    t->misses += status_delta(p->db, SQLITE_DBSTATUS_CACHE_MISS, &p->misses);
    t->writes += status_delta(p->db, SQLITE_DBSTATUS_CACHE_WRITE, &p->writes);
    if (t->may_commit && sqlite3_get_autocommit(p->db))
        wal_scan(p, true);
    if (now - p->snapshot_ns >= FUNNEL_SQLPROFILE_INTERVAL_NS)
        snapshot_write(p, now);
}

static void profile_free(sqlprofile_t *p)
{
    if (p->out)
        fclose(p->out);
    if (p->wal.fd >= 0)
        close(p->wal.fd);
    for (size_t i = 0; i < p->cap_texts; i++)
        free(p->texts[i].sql);
    free(p->texts);
    free(p->pages);
    free(p->wal.path);
    free(p);
}

static int on_trace(unsigned type, void *ctx, void *a, void *b)
{
    sqlprofile_t *p = ctx;
    if (type == SQLITE_TRACE_STMT) {
        stmt_started(p, a);
    } else if (type == SQLITE_TRACE_PROFILE) {
        stmt_ended(p, a, (uint64_t) * (sqlite3_int64 *)b);
    } else if (type == SQLITE_TRACE_CLOSE) {
        snapshot_write(p, p->clock(p->clock_ctx));
        /* A close refused (statements left) keeps the connection: it must not call back. */
        sqlite3_trace_v2(p->db, 0, NULL, NULL);
        profile_free(p);
    }
    return 0;
}

/* The -wal file beside db's main file; NULL for a database without one (":memory:"). */
static char *wal_path_of(sqlite3 *db)
{
    const char *file = sqlite3_db_filename(db, "main");
    if (!file || !*file)
        return NULL;
    size_t len = strlen(file) + sizeof "-wal";
    char *path = malloc(len);
    if (path)
        snprintf(path, len, "%s-wal", file);
    return path;
}

int funnel_sqlprofile_install(sqlite3 *db, const char *path, funnel_sqlprofile_clock_fn clock,
                              void *clock_ctx, char *err, size_t err_len)
{
    sqlprofile_t *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err_len, "sql_profile: out of memory");
        return FUNNEL_ENOMEM;
    }
    p->wal.fd = -1;
    p->wal.path = wal_path_of(db);
    if (texts_grow(p)) {
        snprintf(err, err_len, "sql_profile: out of memory");
        profile_free(p);
        return FUNNEL_ENOMEM;
    }
    if (!(p->out = fopen(path, "ae"))) {
        snprintf(err, err_len, "sql_profile %s: %s", path, strerror(errno));
        profile_free(p);
        return FUNNEL_EIO;
    }
    p->db = db;
    p->clock = clock ? clock : mono_ns;
    p->clock_ctx = clock_ctx;
    p->snapshot_ns = p->clock(clock_ctx);
    p->snapshot_ms = wall_ms();
    status_delta(db, SQLITE_DBSTATUS_CACHE_HIT, &p->hits);
    status_delta(db, SQLITE_DBSTATUS_CACHE_MISS, &p->misses);
    status_delta(db, SQLITE_DBSTATUS_CACHE_WRITE, &p->writes);
    wal_scan(p, false);
    sqlite3_trace_v2(db, SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE | SQLITE_TRACE_CLOSE, on_trace,
                     p);
    return 0;
}
