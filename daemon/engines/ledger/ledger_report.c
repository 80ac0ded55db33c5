/* ledger_report.c — statements and the books check, read-only over the ledger's tables.
 *
 * Kept apart from the engine because funnelctl runs them on a read-only connection, outside
 * funneld: they only SELECT, and they recompute every total from the postings themselves
 * rather than trusting the stored balances (that is what the check is for). */
#include "funnel/grow.h"
#include "funnel/ledger_report.h"
#include "store.h"
#include "funnel/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A posting's effect on what the company owes the rep. */
#define OWED_SQL "CASE kind WHEN 'ACCRUAL' THEN amount ELSE -amount END"

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t len)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, len, "%s", t ? (const char *)t : "");
}

/* Prepares sql on the store's connection; NULL on failure. */
static sqlite3_stmt *prepare(funnel_store_t *store, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(funnel_store_db(store), sql, -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* Prepares a query over rep's postings with ?1 = rep, ?2 = from_ms, ?3 = to_ms bound. */
static sqlite3_stmt *prepare_period(funnel_store_t *store, const char *sql, const char *rep,
                                    const funnel_ledger_statement_t *st)
{
    sqlite3_stmt *s = prepare(store, sql);
    if (s) {
        sqlite3_bind_text(s, 1, rep, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, st->from_ms);
        sqlite3_bind_int64(s, 3, st->to_ms);
    }
    return s;
}

/* Opens one read transaction around a report's queries, so every query sees the same
 * snapshot: as separate autocommit reads, a commit by funneld between two of them could make
 * a statement's totals disagree with its lines (a false "does not reconcile"). *own tells
 * read_end whether to close it; a caller already inside a transaction has one snapshot. */
static int read_begin(funnel_store_t *store, bool *own)
{
    *own = !funnel_store_in_transaction(store);
    if (*own && sqlite3_exec(funnel_store_db(store), "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return FUNNEL_ESTORE;
    return 0;
}

/* Ends what read_begin opened; returns rc, or FUNNEL_ESTORE when only the end failed. Nothing
 * was written, so COMMIT only releases the snapshot. */
static int read_end(funnel_store_t *store, bool own, int rc)
{
    sqlite3 *db = funnel_store_db(store);
    if (own && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc ? rc : FUNNEL_ESTORE;
    }
    return rc;
}

void funnel_ledger_statement_free(funnel_ledger_statement_t **st)
{
    if (!st || !*st)
        return;
    for (size_t i = 0; i < (*st)->n_sections; i++)
        free((*st)->sections[i].lines);
    free((*st)->sections);
    free(*st);
    *st = NULL;
}

/* A total that fits in int64 into *out; FUNNEL_EINVAL when it does not (no wrapped figure). */
static int total_fit(__int128 total, int64_t *out)
{
    if (total > INT64_MAX || total < INT64_MIN)
        return FUNNEL_EINVAL;
    *out = (int64_t)total;
    return 0;
}

/* The exact sum of a column summed as its high (col) and low (col + 1) 32 bits. */
static __int128 split_sum(sqlite3_stmt *s, int col)
{
    return (__int128)sqlite3_column_int64(s, col) * ((__int128)1 << 32) +
           sqlite3_column_int64(s, col + 1);
}

/* Fills the opening balance (before from) and the reconciliation total (before to) of each
 * currency the rep has postings in, up to the period's end. Rows come in event-time order,
 * where accruals may run past INT64_MAX before the clawbacks that net them back, and SQLite's
 * SUM fails on that: each amount's high and low 32 bits are summed apart (split_sum). */
static int sections_load(funnel_store_t *store, const char *rep, funnel_ledger_statement_t *st)
{
    sqlite3_stmt *s = prepare_period(store,
                                     "SELECT currency, SUM(o >> 32), SUM(o & 4294967295),"
                                     " SUM(a >> 32), SUM(a & 4294967295) FROM ("
                                     " SELECT currency, CASE WHEN effective_ms < ?2 THEN " OWED_SQL
                                     " ELSE 0 END AS o, " OWED_SQL " AS a"
                                     " FROM ledger_entry WHERE rep = ?1 AND effective_ms < ?3)"
                                     " GROUP BY currency ORDER BY currency",
                                     rep, st);
    if (!s)
        return FUNNEL_ESTORE;
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (funnel_grow(&st->sections, &cap, st->n_sections + 1, sizeof *st->sections, 4)) {
            rc = FUNNEL_ENOMEM;
            break;
        }
        funnel_ledger_section_t *sec = &st->sections[st->n_sections++];
        memset(sec, 0, sizeof *sec);
        col_copy(s, 0, sec->currency, sizeof sec->currency);
        /* The total is stashed in closing until the lines are summed, then compared. */
        if ((rc = total_fit(split_sum(s, 1), &sec->opening)) ||
            (rc = total_fit(split_sum(s, 3), &sec->closing)))
            break;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : rc < 0 ? rc : FUNNEL_ESTORE;
}

static funnel_ledger_section_t *section_of(funnel_ledger_statement_t *st, const char *currency)
{
    for (size_t i = 0; i < st->n_sections; i++)
        if (strcmp(st->sections[i].currency, currency) == 0)
            return &st->sections[i];
    return NULL;
}

static int line_append(funnel_ledger_section_t *sec, size_t *cap, const funnel_ledger_posting_t *p)
{
    if (funnel_grow(&sec->lines, cap, sec->n_lines + 1, sizeof *sec->lines, 16))
        return FUNNEL_ENOMEM;
    sec->lines[sec->n_lines++] = *p;
    return 0;
}

/* Whether the rep has a posting at any time (an empty statement may just be a quiet period):
 * every posting has a line in its rep's payable account, whose balance row is never deleted
 * (`ledger check` reports postings without a balance). The postings are indexed in event time,
 * where looking for an unknown rep would read them all. */
static int rep_known_load(funnel_store_t *store, const char *rep, funnel_ledger_statement_t *st)
{
    sqlite3_stmt *s = prepare(store, "SELECT EXISTS (SELECT 1 FROM ledger_balance"
                                     " WHERE account = 'payable' AND rep = ?1)");
    if (!s)
        return FUNNEL_ESTORE;
    sqlite3_bind_text(s, 1, rep, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    st->rep_known = rc == SQLITE_ROW && sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
}

/* Stores a section's kind totals (accruals, clawbacks, payouts), each if it fits. */
static int kind_totals_set(funnel_ledger_section_t *sec, const __int128 *totals)
{
    if (!sec)
        return 0;
    int rc = total_fit(totals[0], &sec->accruals);
    if (!rc)
        rc = total_fit(totals[1], &sec->clawbacks);
    if (!rc)
        rc = total_fit(totals[2], &sec->payouts);
    return rc;
}

/* An entry's id, "ledger:<cause>#<n>": the ledger keeps only n. */
#define ENTRY_ID_SQL "'ledger:' || cause_event_id || '#' || entry_n"

/* Reads the period's postings into their sections and sums them by kind, exactly (in 128 bits,
 * so no order of corrections can overflow a running sum): a total that does not fit is
 * reported as an error, not wrapped. */
static int lines_load(funnel_store_t *store, const char *rep, funnel_ledger_statement_t *st)
{
    sqlite3_stmt *s =
        prepare_period(store,
                       "SELECT " ENTRY_ID_SQL ", kind, role, client_id, cause_event_id,"
                       " subject_event_id,"
                       " currency, amount, rate_bp, effective_ms, posted_at_ms FROM ledger_entry"
                       " WHERE rep = ?1 AND effective_ms >= ?2 AND effective_ms < ?3"
                       " ORDER BY currency, effective_ms, seq",
                       rep, st);
    if (!s)
        return FUNNEL_ESTORE;
    int rc;
    size_t cap = 0;
    funnel_ledger_section_t *cur = NULL;
    __int128 totals[3] = {0}; /* of cur: accruals, clawbacks, payouts */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        funnel_ledger_posting_t p;
        col_copy(s, 0, p.entry_id, sizeof p.entry_id);
        col_copy(s, 1, p.kind, sizeof p.kind);
        col_copy(s, 2, p.role, sizeof p.role);
        col_copy(s, 3, p.client_id, sizeof p.client_id);
        col_copy(s, 4, p.cause_event_id, sizeof p.cause_event_id);
        col_copy(s, 5, p.subject_event_id, sizeof p.subject_event_id);
        col_copy(s, 6, p.currency, sizeof p.currency);
        p.amount = sqlite3_column_int64(s, 7);
        p.rate_bp = sqlite3_column_int64(s, 8);
        p.effective_ms = sqlite3_column_int64(s, 9);
        p.posted_at_ms = sqlite3_column_int64(s, 10);
        if (!cur || strcmp(cur->currency, p.currency)) {
            if ((rc = kind_totals_set(cur, totals)))
                break;
            cur = section_of(st, p.currency);
            cap = 0;
            totals[0] = totals[1] = totals[2] = 0;
        }
        if (!cur) { /* cannot happen: sections_load saw every currency before to_ms */
            rc = FUNNEL_ESTORE;
            break;
        }
        totals[strcmp(p.kind, "ACCRUAL") == 0    ? 0
               : strcmp(p.kind, "CLAWBACK") == 0 ? 1
                                                 : 2] += p.amount;
        if ((rc = line_append(cur, &cap, &p)))
            break;
    }
    if (rc == SQLITE_DONE) {
        int fit = kind_totals_set(cur, totals);
        rc = fit ? fit : SQLITE_DONE;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : rc < 0 ? rc : FUNNEL_ESTORE;
}

int funnel_ledger_statement(funnel_store_t *store, const char *rep, int64_t from_ms, int64_t to_ms,
                            funnel_ledger_statement_t **out)
{
    *out = NULL;
    funnel_ledger_statement_t *st = calloc(1, sizeof *st);
    if (!st)
        return FUNNEL_ENOMEM;
    st->from_ms = from_ms;
    st->to_ms = to_ms;
    bool own;
    int rc = read_begin(store, &own);
    if (!rc) {
        rc = sections_load(store, rep, st);
        if (!rc)
            rc = lines_load(store, rep, st);
        if (!rc)
            rc = rep_known_load(store, rep, st);
        rc = read_end(store, own, rc);
    }
    for (size_t i = 0; !rc && i < st->n_sections; i++) {
        funnel_ledger_section_t *sec = &st->sections[i];
        int64_t total = sec->closing, closing;
        bool ok = !__builtin_add_overflow(sec->opening, sec->accruals, &closing) &&
                  !__builtin_sub_overflow(closing, sec->clawbacks, &closing) &&
                  !__builtin_sub_overflow(closing, sec->payouts, &closing);
        sec->closing = ok ? closing : total;
        sec->reconciles = ok && closing == total;
    }
    if (rc) {
        funnel_ledger_statement_free(&st);
        return rc;
    }
    *out = st;
    return 0;
}

/* Runs one check query whose rows are problems: column 0 names the subject, the others are
 * numbers shown after it. Returns the rows found, or -1 when the query failed. */
static int64_t check_query(funnel_store_t *store, const char *sql, const char *what,
                           funnel_ledger_problem_cb cb, void *arg)
{
    sqlite3_stmt *s = prepare(store, sql);
    if (!s)
        return -1;
    int64_t found = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char text[512];
        int n =
            snprintf(text, sizeof text, "%s: %s", what, (const char *)sqlite3_column_text(s, 0));
        for (int i = 1; i < sqlite3_column_count(s) && n > 0 && (size_t)n < sizeof text; i++)
            n += snprintf(text + n, sizeof text - (size_t)n, " %s=%s", sqlite3_column_name(s, i),
                          sqlite3_column_type(s, i) == SQLITE_NULL
                              ? "none"
                              : (const char *)sqlite3_column_text(s, i));
        if (cb)
            cb(text, arg);
        found++;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? found : -1;
}

/* Counts rows of a table into *out (when out is not NULL). */
static int count_rows(funnel_store_t *store, const char *sql, int64_t *out)
{
    if (!out)
        return 0;
    sqlite3_stmt *s = prepare(store, sql);
    if (!s)
        return FUNNEL_ESTORE;
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
}

/* An entry's id, "ledger:<cause>#<n>" (the ledger keeps n only), of ledger_entry as e. */
#define ENTRY_ID_OF_E "'ledger:' || e.cause_event_id || '#' || e.entry_n"
/* The sum of the lines of each (account, rep, currency): a line's rep and currency are its
 * posting's. */
#define LINE_SUMS_SQL                                                                              \
    "SELECT l.account, e.rep, e.currency, SUM(l.amount) AS postings FROM ledger_line l"            \
    " JOIN ledger_entry e ON e.seq = l.entry_seq GROUP BY l.account, e.rep, e.currency"

/* The checks and counts of funnel_ledger_check, run inside its read transaction. */
static int check_run(funnel_store_t *store, funnel_ledger_problem_cb cb, void *arg,
                     int64_t *problems, int64_t *postings, int64_t *balances)
{
    static const struct {
        const char *what, *sql;
    } checks[] = {
        {"posting does not balance",
         "SELECT " ENTRY_ID_OF_E ", COUNT(l.entry_seq) AS lines, COALESCE(SUM(l.amount), 0) AS sum"
         " FROM ledger_entry e LEFT JOIN ledger_line l ON l.entry_seq = e.seq GROUP BY e.seq"
         " HAVING COUNT(l.entry_seq) <> 2 OR SUM(l.amount) <> 0 ORDER BY e.seq"},
        {"posting's lines do not match its amount or kind",
         "SELECT " ENTRY_ID_OF_E ", e.amount FROM ledger_entry e WHERE NOT EXISTS ("
         " SELECT 1 FROM ledger_line l WHERE l.entry_seq = e.seq AND l.amount = e.amount"
         " AND l.account ="
         " CASE e.kind WHEN 'ACCRUAL' THEN 'expense' ELSE 'payable' END) ORDER BY e.seq"},
        {"line without a posting",
         "SELECT l.entry_seq, l.account, l.amount FROM ledger_line l"
         " LEFT JOIN ledger_entry e ON e.seq = l.entry_seq WHERE e.seq IS NULL"},
        {"balance differs from the sum of its postings",
         "SELECT b.account || ' ' || b.rep || ' ' || b.currency, b.balance,"
         " COALESCE(t.postings, 0) AS postings FROM ledger_balance b LEFT JOIN (" LINE_SUMS_SQL
         ") t ON t.account = b.account AND t.rep = b.rep AND t.currency = b.currency"
         " WHERE b.balance <> COALESCE(t.postings, 0) ORDER BY b.account, b.rep, b.currency"},
        {"postings without a balance",
         "SELECT t.account || ' ' || t.rep || ' ' || t.currency, t.postings FROM (" LINE_SUMS_SQL
         ") t WHERE NOT EXISTS (SELECT 1 FROM ledger_balance b"
         " WHERE b.account = t.account AND b.rep = t.rep AND b.currency = t.currency)"
         " ORDER BY t.account, t.rep, t.currency"},
    };
    int64_t found = 0;
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        int64_t n = check_query(store, checks[i].sql, checks[i].what, cb, arg);
        if (n < 0)
            return FUNNEL_ESTORE;
        found += n;
    }
    *problems = found;
    if (count_rows(store, "SELECT COUNT(*) FROM ledger_entry", postings) ||
        count_rows(store, "SELECT COUNT(*) FROM ledger_balance", balances))
        return FUNNEL_ESTORE;
    return 0;
}

int funnel_ledger_check(funnel_store_t *store, funnel_ledger_problem_cb cb, void *arg,
                        int64_t *problems, int64_t *postings, int64_t *balances)
{
    bool own;
    int rc = read_begin(store, &own);
    return rc ? rc : read_end(store, own, check_run(store, cb, arg, problems, postings, balances));
}

/* The canonical refunds (first per refund_id) whose canonical payment (first per payment_id) is
 * missing or names another client or currency: what the engine holds (see ledger.h). */
static const char unmatched_sql[] =
    "SELECT r.refund_id, r.event_id AS event, r.client_id AS client, r.currency AS currency,"
    " r.payment_id AS payment, p.client_id AS payment_client, p.currency AS payment_currency"
    " FROM ledger_refund r LEFT JOIN ledger_payment p ON p.payment_id = r.payment_id"
    "  AND NOT EXISTS (SELECT 1 FROM ledger_payment q WHERE q.payment_id = p.payment_id"
    "  AND (q.at_ms < p.at_ms OR (q.at_ms = p.at_ms AND q.event_id < p.event_id)))"
    " WHERE NOT EXISTS (SELECT 1 FROM ledger_refund q WHERE q.refund_id = r.refund_id"
    "  AND (q.at_ms < r.at_ms OR (q.at_ms = r.at_ms AND q.event_id < r.event_id)))"
    " AND (p.event_id IS NULL OR p.client_id <> r.client_id OR p.currency <> r.currency)"
    " ORDER BY r.at_ms, r.event_id";

int funnel_ledger_unmatched_refunds(funnel_store_t *store, funnel_ledger_problem_cb cb, void *arg,
                                    int64_t *found)
{
    bool own;
    int rc = read_begin(store, &own);
    if (rc)
        return rc;
    *found = check_query(store, unmatched_sql, "unmatched refund", cb, arg);
    return read_end(store, own, *found < 0 ? FUNNEL_ESTORE : 0);
}
