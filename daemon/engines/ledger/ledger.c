/* ledger.c — the commission ledger engine (see ledger.h for the contract).
 *
 * Every relevant event first lands as a fact row (handoff, payment, refund, payout). Then the
 * client's desired commission sums are recomputed from all its facts in event-time order and
 * compared with what is posted; each difference becomes one new balanced posting. That is what
 * makes arrival order irrelevant: the desired state never depends on it, and postings only ever
 * close the gap. The cost per event is one pass over its client's facts: a fixed number of
 * queries (payments, refunds, frozen rates, posted sums), each read once, whatever the history's
 * length; refunds are found per payment by binary search, so the pass is O(n log n) in memory. */
#include "ledger.h"
#include "funnel/grow.h"
#include "funnel/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_BUF    (FUNNEL_ID_MAX + 1)
#define SOURCE    "funneld.ledger"
#define TOPIC_OUT "commission.posted"

/* The triggers that keep the books append-only (steps 1 and 4 create them). */
#define LEDGER_APPEND_ONLY                                                                         \
    "CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry"                          \
    "  BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only'); END;"                             \
    "CREATE TRIGGER ledger_entry_no_delete BEFORE DELETE ON ledger_entry"                          \
    "  BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only'); END;"                             \
    "CREATE TRIGGER ledger_line_no_update BEFORE UPDATE ON ledger_line"                            \
    "  BEGIN SELECT RAISE(ABORT, 'ledger_line is append-only'); END;"                              \
    "CREATE TRIGGER ledger_line_no_delete BEFORE DELETE ON ledger_line"                            \
    "  BEGIN SELECT RAISE(ABORT, 'ledger_line is append-only'); END;"

/* Moves ledger_payment into a table keyed by client in event-time order, its event_id declared
 * as decl, with the index by payment_id (steps 5 and 6). */
#define LEDGER_PAYMENT_BY_CLIENT(decl)                                                             \
    "CREATE TABLE ledger_payment_new ("                                                            \
    "  client_id TEXT NOT NULL, at_ms INTEGER NOT NULL, event_id " decl ","                        \
    "  payment_id TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,"                 \
    "  PRIMARY KEY (client_id, at_ms, event_id)) WITHOUT ROWID;"                                   \
    "INSERT INTO ledger_payment_new(client_id, at_ms, event_id, payment_id, currency, amount)"     \
    "  SELECT client_id, at_ms, event_id, payment_id, currency, amount FROM ledger_payment;"       \
    "DROP TABLE ledger_payment;"                                                                   \
    "ALTER TABLE ledger_payment_new RENAME TO ledger_payment;"                                     \
    "CREATE INDEX ledger_payment_id ON ledger_payment(payment_id, at_ms, event_id);"

/* Drops the frozen rates a posted accrual holds (step 6). */
#define LEDGER_RATES_POSTED_DROP                                                                   \
    "DELETE FROM ledger_rate WHERE (payment_event_id, role, rep) IN ("                             \
    "  SELECT subject_event_id, role, rep FROM ledger_entry WHERE kind = 'ACCRUAL');"

/* A posting an event made on another subject than itself (a correction): the postings indexed by
 * client (step 8). The others are found through the range of their fact's row. */
#define NOT_SELF "subject_event_id <> cause_event_id"

/* Schema steps of the "ledger" module. Never edit one that has shipped: add a step. */
static const char *const ledger_steps[] = {
    /* 1: facts, frozen plan, postings, lines, balances */
    "CREATE TABLE ledger_handoff ("
    "  id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, client_id TEXT NOT NULL,"
    "  from_rep TEXT NOT NULL, account_manager TEXT NOT NULL, at_ms INTEGER NOT NULL);"
    "CREATE INDEX ledger_handoff_client ON ledger_handoff(client_id, at_ms, event_id);"
    "CREATE TABLE ledger_payment ("
    "  id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, payment_id TEXT NOT NULL,"
    "  client_id TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE INDEX ledger_payment_client ON ledger_payment(client_id, at_ms, event_id);"
    "CREATE INDEX ledger_payment_id ON ledger_payment(client_id, payment_id, at_ms, event_id);"
    "CREATE TABLE ledger_refund ("
    "  id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, refund_id TEXT NOT NULL,"
    "  payment_id TEXT NOT NULL, client_id TEXT NOT NULL, currency TEXT NOT NULL,"
    "  amount INTEGER NOT NULL, at_ms INTEGER NOT NULL);"
    "CREATE INDEX ledger_refund_client ON ledger_refund(client_id, at_ms, event_id);"
    "CREATE INDEX ledger_refund_id ON ledger_refund(client_id, refund_id, at_ms, event_id);"
    "CREATE TABLE ledger_client ("
    "  client_id TEXT PRIMARY KEY, term_months INTEGER NOT NULL, cap_minor INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE ledger_rate ("
    "  payment_event_id TEXT NOT NULL, role TEXT NOT NULL, rep TEXT NOT NULL,"
    "  rate_bp INTEGER NOT NULL, PRIMARY KEY (payment_event_id, role, rep)) WITHOUT ROWID;"
    "CREATE TABLE ledger_payout ("
    "  payout_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, rep TEXT NOT NULL,"
    "  through_ms INTEGER NOT NULL, at_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE ledger_entry ("
    "  seq INTEGER PRIMARY KEY, entry_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,"
    "  role TEXT NOT NULL, rep TEXT NOT NULL, client_id TEXT NOT NULL,"
    "  cause_event_id TEXT NOT NULL, subject_event_id TEXT NOT NULL, currency TEXT NOT NULL,"
    "  amount INTEGER NOT NULL, rate_bp INTEGER NOT NULL, effective_ms INTEGER NOT NULL,"
    "  posted_at_ms INTEGER NOT NULL);"
    "CREATE INDEX ledger_entry_client ON ledger_entry(client_id);"
    "CREATE INDEX ledger_entry_rep ON ledger_entry(rep, currency, effective_ms);"
    "CREATE TABLE ledger_line ("
    "  entry_seq INTEGER NOT NULL, account TEXT NOT NULL, rep TEXT NOT NULL,"
    "  currency TEXT NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (entry_seq, account))"
    "  WITHOUT ROWID;"
    "CREATE INDEX ledger_line_account ON ledger_line(account, rep, currency);"
    "CREATE TABLE ledger_balance ("
    "  account TEXT NOT NULL, rep TEXT NOT NULL, currency TEXT NOT NULL,"
    "  balance INTEGER NOT NULL, PRIMARY KEY (account, rep, currency)) WITHOUT ROWID;"
    /* The books are append-only: a correction is a new posting, never an edit. */
    LEDGER_APPEND_ONLY,
    /* 2: payment_id and refund_id are global (one payment, whichever client it names): the
     * canonical row is chosen across clients, so the lookups are by id alone. */
    "DROP INDEX ledger_payment_id;"
    "CREATE INDEX ledger_payment_id ON ledger_payment(payment_id, at_ms, event_id);"
    "DROP INDEX ledger_refund_id;"
    "CREATE INDEX ledger_refund_id ON ledger_refund(refund_id, at_ms, event_id);"
    "CREATE INDEX ledger_refund_payment ON ledger_refund(payment_id);",
    /* 3: what each person has accrued on a client per currency (every ACCRUAL posting, any
     * role), kept beside the postings in the same transaction: a payment's settle reads one
     * row where summing the postings read the rep's whole history. The sum is taken in two
     * halves (see Q_DUE) so a history whose running sum passes INT64_MAX still migrates. */
    "CREATE TABLE ledger_accrued ("
    "  client_id TEXT NOT NULL, person TEXT NOT NULL, currency TEXT NOT NULL,"
    "  accrued INTEGER NOT NULL, PRIMARY KEY (client_id, person, currency)) WITHOUT ROWID;"
    "INSERT INTO ledger_accrued(client_id, person, currency, accrued)"
    "  SELECT client_id, rep, currency,"
    "  SUM(amount >> 32) * 4294967296 + SUM(amount & 4294967295) FROM ledger_entry"
    "  WHERE kind = 'ACCRUAL' GROUP BY client_id, rep, currency;",
    /* 4: smaller books. An entry's id is "ledger:<cause_event_id>#<entry_n>": only n is kept
     * (and no index of the text, which nothing looks up). A line's rep and currency are its
     * entry's, so the line keeps only its account and amount, and no index by account: the
     * balances beside the lines answer that, and `ledger check` sums the lines in one pass.
     * Dropping a table drops its indexes and triggers; both are made again as step 1 had
     * them. */
    "CREATE TABLE ledger_entry_new ("
    "  seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, role TEXT NOT NULL, rep TEXT NOT NULL,"
    "  client_id TEXT NOT NULL, cause_event_id TEXT NOT NULL, entry_n INTEGER NOT NULL,"
    "  subject_event_id TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,"
    "  rate_bp INTEGER NOT NULL, effective_ms INTEGER NOT NULL, posted_at_ms INTEGER NOT NULL);"
    "INSERT INTO ledger_entry_new SELECT seq, kind, role, rep, client_id, cause_event_id,"
    "  CAST(substr(entry_id, length(cause_event_id) + 9) AS INTEGER), subject_event_id,"
    "  currency, amount, rate_bp, effective_ms, posted_at_ms FROM ledger_entry;"
    "CREATE TABLE ledger_line_new ("
    "  entry_seq INTEGER NOT NULL, account TEXT NOT NULL, amount INTEGER NOT NULL,"
    "  PRIMARY KEY (entry_seq, account)) WITHOUT ROWID;"
    "INSERT INTO ledger_line_new SELECT entry_seq, account, amount FROM ledger_line;"
    "DROP TABLE ledger_entry;"
    "DROP TABLE ledger_line;"
    "ALTER TABLE ledger_entry_new RENAME TO ledger_entry;"
    "ALTER TABLE ledger_line_new RENAME TO ledger_line;"
    "CREATE INDEX ledger_entry_client ON ledger_entry(client_id);"
    "CREATE INDEX ledger_entry_rep ON ledger_entry(rep, currency, effective_ms);"
    /* Made again: dropping the tables dropped them. */
    LEDGER_APPEND_ONLY,
    /* 5: a payment is stored by its client, in event-time order: the rows are what the index by
     * client was, so recording a payment writes one B-tree fewer (no rowid table) and a settle
     * reads the client's payments from the table itself. Dropping the table dropped the index
     * by payment_id; it is made again as step 2 had it. */
    LEDGER_PAYMENT_BY_CLIENT("TEXT NOT NULL UNIQUE"),
    /* 6: a payment's event_id is unique by the router's deduplication, and nothing looks a
     * payment up by it alone: its UNIQUE index was a third B-tree written per payment. A rate
     * whose accrual is posted is frozen in that posting (every accrual of a key carries the
     * rate it was computed at), so ledger_rate keeps only the rates no posting holds (an
     * accrual of 0, e.g. past the cap); its other rows repeated the postings, two per
     * payment. */
    LEDGER_PAYMENT_BY_CLIENT("TEXT NOT NULL") LEDGER_RATES_POSTED_DROP,
    /* 7: a statement's opening balance sums every posting of the rep before the period; with
     * kind and amount in the index it reads the index alone instead of seeking each posting's
     * row (a month of one rep at 1M leads: 0.17-0.35 s -> 0.06-0.09 s). */
    "DROP INDEX ledger_entry_rep;"
    "CREATE INDEX ledger_entry_rep ON ledger_entry(rep, currency, effective_ms, kind, amount);",
    /* 8: the index by rep had a right edge per rep and currency (144 in a year of 30 reps, 6
     * account managers and 4 currencies), so nearly every posting of a batch wrote a page of
     * its own at commit; the postings indexed in event time grow at one edge. A statement reads
     * the rep's postings out of every rep's, from the index alone (a year at 1M leads, 540k
     * postings: ~0.2 s); a payout reads what the payable balance holds and the postings after
     * its through_ms (Q_DUE). */
    "DROP INDEX ledger_entry_rep;"
    "CREATE INDEX ledger_entry_time ON ledger_entry(effective_ms, rep, currency, kind, amount);"
    /* The index by client was a page per payment at commit too: a settle finds the postings
     * an event made on its own payment or refund (subject = cause, the whole of a backfill)
     * through the range of entry seqs the fact's row keeps (written with the row, or updated
     * in the same event), and only the others (corrections by a later event) through the index
     * by client. Existing rows get the range of the postings their event caused. */
    "ALTER TABLE ledger_payment ADD COLUMN posted_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE ledger_payment ADD COLUMN posted_n INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE ledger_refund ADD COLUMN posted_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE ledger_refund ADD COLUMN posted_n INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX ledger_entry_cause_tmp ON ledger_entry(cause_event_id);"
    "UPDATE ledger_payment SET (posted_seq, posted_n) = (SELECT MIN(seq), COUNT(*)"
    "  FROM ledger_entry WHERE cause_event_id = ledger_payment.event_id)"
    "  WHERE event_id IN (SELECT cause_event_id FROM ledger_entry);"
    "UPDATE ledger_refund SET (posted_seq, posted_n) = (SELECT MIN(seq), COUNT(*)"
    "  FROM ledger_entry WHERE cause_event_id = ledger_refund.event_id)"
    "  WHERE event_id IN (SELECT cause_event_id FROM ledger_entry);"
    "DROP INDEX ledger_entry_cause_tmp;"
    "DROP INDEX ledger_entry_client;"
    "CREATE INDEX ledger_entry_client ON ledger_entry(client_id) WHERE " NOT_SELF ";"
    /* ledger_accrued was a third B-tree a payment wrote at a random place: what the client's
     * rep and account manager have accrued on it in a currency now sits in the client's latest
     * payment row of that currency (rep_used, am_used; NULL: not known, settle the client
     * whole), which the payment writes anyway, beside its client's others. */
    "ALTER TABLE ledger_payment ADD COLUMN rep_used INTEGER;"
    "ALTER TABLE ledger_payment ADD COLUMN am_used INTEGER;"
    "UPDATE ledger_payment SET (rep_used, am_used) = (SELECT"
    "  IFNULL((SELECT accrued FROM ledger_accrued a WHERE a.client_id = h.client_id"
    "   AND a.currency = ledger_payment.currency AND a.person = h.from_rep), 0),"
    "  IFNULL((SELECT accrued FROM ledger_accrued a WHERE a.client_id = h.client_id"
    "   AND a.currency = ledger_payment.currency AND a.person = h.account_manager), 0)"
    "  FROM ledger_handoff h WHERE h.client_id = ledger_payment.client_id"
    "  ORDER BY h.at_ms, h.event_id LIMIT 1)"
    " WHERE NOT EXISTS (SELECT 1 FROM ledger_payment q"
    "  WHERE q.client_id = ledger_payment.client_id AND q.currency = ledger_payment.currency"
    "  AND (q.at_ms > ledger_payment.at_ms"
    "  OR (q.at_ms = ledger_payment.at_ms AND q.event_id > ledger_payment.event_id)));"
    "DROP TABLE ledger_accrued;",
};
#define LEDGER_STEPS (int)(sizeof ledger_steps / sizeof ledger_steps[0])

enum stmt_id {
    Q_HANDOFF_ADD,
    Q_PAYMENT_ADD,
    Q_REFUND_ADD,
    Q_PAYOUT_ADD,
    Q_CLIENT_PLAN,
    Q_CLIENT_FREEZE,
    Q_PAYMENTS,
    Q_REFUNDS,
    Q_CLIENTS_OF,
    Q_UNMATCHED,
    Q_RATE_FREEZE,
    Q_RATES,
    Q_POSTED,
    Q_DUE,
    Q_ENTRY_ADD,
    Q_BALANCE_GET,
    Q_PAYMENT_ALONE,
    Q_PAYMENT_POSTED,
    Q_REFUND_POSTED,
    Q_CURRENCIES,
    Q_USED_SET,
    Q_COUNT_
};

/* The rows an event writes besides its entries, kept in memory while it settles and written
 * when it is done, up to ROWS_MAX rows per statement (rows_flush): a statement per row made a
 * payment run 15 statements. */
enum rows_id { R_LINES, R_BALANCES, R_COUNT_ };
#define ROWS_MAX 4

/* col + excluded.col, or NULL (which the NOT NULL column refuses) when the sum would leave the
 * int64 range: SQLite turns an overflowing integer sum into a REAL instead of failing. */
#define CHECKED_ADD(col)                                                                           \
    "CASE WHEN excluded." col " >= 0 THEN CASE WHEN " col                                          \
    " <= 9223372036854775807 - excluded." col " THEN " col " + excluded." col " END WHEN " col     \
    " >= -9223372036854775807 - 1 - excluded." col " THEN " col " + excluded." col " END"

/* What Q_POSTED reads of a posting (ledger_entry as e), and the postings facts (as f) of client
 * ?1 made on themselves. */
#define POSTED_COLS                                                                                \
    "e.subject_event_id, e.role, e.rep, e.kind, e.currency, e.amount, e.rate_bp, e.effective_ms"
#define POSTED_RANGE                                                                               \
    " JOIN ledger_entry e ON e.seq >= f.posted_seq AND e.seq < f.posted_seq + f.posted_n"          \
    " WHERE f.client_id = ?1 AND f.posted_n > 0 AND e.subject_event_id = e.cause_event_id"

/* cols of client ?1's latest payment in currency ?5, the row that holds the running totals; as a
 * scalar subquery, not a join, which SQLite would materialize in a temporary table. */
#define LATEST_IN_CURRENCY(cols)                                                                   \
    "SELECT " cols " FROM ledger_payment WHERE client_id = ?1 AND currency = ?5"                   \
    " ORDER BY at_ms DESC, event_id DESC LIMIT 1"

#define USED_UNKNOWN "(" LATEST_IN_CURRENCY("rep_used IS NULL") ")" /* NULL: no payment */
#define REP_USED     "(" LATEST_IN_CURRENCY("rep_used") ")"
#define AM_USED      "(" LATEST_IN_CURRENCY("am_used") ")"

static const char *const stmt_sql[Q_COUNT_] = {
    [Q_HANDOFF_ADD] = "INSERT INTO ledger_handoff(event_id, client_id, from_rep, account_manager,"
                      " at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    /* posted_seq and posted_n: the entries the event has made so far; rep_used and am_used:
     * what payment_settle_alone left the running totals at, or NULL (fact_add). */
    [Q_PAYMENT_ADD] = "INSERT INTO ledger_payment(event_id, payment_id, client_id, currency,"
                      " amount, at_ms, posted_seq, posted_n, rep_used, am_used)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [Q_REFUND_ADD] = "INSERT INTO ledger_refund(event_id, refund_id, payment_id, client_id,"
                     " currency, amount, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_PAYOUT_ADD] = "INSERT INTO ledger_payout(payout_id, event_id, rep, through_ms, at_ms)"
                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(payout_id) DO NOTHING",
    /* The client's first handoff and its frozen term and cap (NULL until frozen). */
    [Q_CLIENT_PLAN] = "SELECT h.from_rep, h.account_manager, h.at_ms, c.term_months, c.cap_minor"
                      " FROM ledger_handoff h LEFT JOIN ledger_client c"
                      " ON c.client_id = h.client_id WHERE h.client_id = ?1"
                      " ORDER BY h.at_ms, h.event_id LIMIT 1",
    [Q_CLIENT_FREEZE] = "INSERT INTO ledger_client(client_id, term_months, cap_minor)"
                        " VALUES (?1, ?2, ?3)",
    /* The canonical payments (first per payment_id by event time, whichever client a
     * duplicate names: a payment_id is one payment), in event-time order. */
    [Q_PAYMENTS] = "SELECT p.event_id, p.payment_id, p.currency, p.amount, p.at_ms"
                   " FROM ledger_payment p WHERE p.client_id = ?1 AND NOT EXISTS ("
                   "  SELECT 1 FROM ledger_payment q WHERE q.payment_id = p.payment_id"
                   "  AND (q.at_ms < p.at_ms OR (q.at_ms = p.at_ms AND q.event_id < p.event_id)))"
                   " ORDER BY p.at_ms, p.event_id",
    /* The canonical refunds (first per refund_id, across clients) the client sent for its
     * payments: a refund claws back only from a payment of its own client (and currency,
     * checked by clawbacks_add); one naming another client's payment is held. */
    [Q_REFUNDS] = "SELECT r.event_id, r.payment_id, r.currency, r.amount, r.at_ms"
                  " FROM ledger_refund r WHERE r.client_id = ?1 AND r.payment_id IN ("
                  "  SELECT payment_id FROM ledger_payment WHERE client_id = ?1)"
                  " AND NOT EXISTS ("
                  "  SELECT 1 FROM ledger_refund q WHERE q.refund_id = r.refund_id"
                  "  AND (q.at_ms < r.at_ms OR (q.at_ms = r.at_ms AND q.event_id < r.event_id)))"
                  " ORDER BY r.at_ms, r.event_id",
    /* Every client a payment (?1) or a refund (?2) can affect: each client with a row of the
     * payment_id, or of a payment_id the refund_id has ever named. Settling them all reverses
     * what a client earned before an earlier duplicate moved the payment or refund away. The
     * rows may repeat a client and come unsorted (other_client_row and clients_settle sort and
     * fold them): DISTINCT over an OR of the two lookups ran ~1.2 ms a refund. */
    [Q_CLIENTS_OF] = "SELECT client_id FROM ledger_payment WHERE payment_id = ?1 UNION ALL"
                     " SELECT p.client_id FROM ledger_refund r JOIN ledger_payment p"
                     " ON p.payment_id = r.payment_id WHERE r.refund_id = ?2",
    /* Refunds of payment ?2 that this event (?1, the refund or the canonical payment) leaves
     * held because their client or currency differs from the canonical payment's. */
    [Q_UNMATCHED] = "SELECT r.refund_id, r.client_id, r.currency, p.client_id, p.currency,"
                    " r.payment_id"
                    " FROM ledger_refund r JOIN ledger_payment p ON p.payment_id = r.payment_id"
                    " WHERE r.payment_id = ?2 AND (r.event_id = ?1 OR p.event_id = ?1)"
                    " AND (p.client_id <> r.client_id OR p.currency <> r.currency)"
                    " AND NOT EXISTS (SELECT 1 FROM ledger_payment q"
                    "  WHERE q.payment_id = p.payment_id AND (q.at_ms < p.at_ms"
                    "  OR (q.at_ms = p.at_ms AND q.event_id < p.event_id)))",
    [Q_RATE_FREEZE] = "INSERT INTO ledger_rate(payment_event_id, role, rep, rate_bp)"
                      " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    /* Every frozen rate of the client's payments, read once per settle: one lookup per
     * payment and beneficiary made the statements per event grow with the history. */
    [Q_RATES] = "SELECT r.payment_event_id, r.role, r.rep, r.rate_bp FROM ledger_payment p"
                " JOIN ledger_rate r ON r.payment_event_id = p.event_id WHERE p.client_id = ?1",
    /* The client's postings: corrections through the index by client, and what each of its
     * payments and refunds posted on itself through the range of entries its event made. */
    [Q_POSTED] = "SELECT subject_event_id, role, rep, kind, currency, SUM(amount), MAX(rate_bp),"
                 " MIN(effective_ms) FROM ("
                 " SELECT " POSTED_COLS " FROM ledger_entry e WHERE client_id = ?1 AND " NOT_SELF
                 " UNION ALL SELECT " POSTED_COLS " FROM ledger_payment f" POSTED_RANGE
                 " UNION ALL SELECT " POSTED_COLS " FROM ledger_refund f" POSTED_RANGE
                 ") WHERE kind IN ('ACCRUAL', 'CLAWBACK')"
                 " GROUP BY subject_event_id, role, rep, kind, currency",
    /* Per currency: owed for postings through ?2, minus every payout so far. Everything owed
     * (accruals less clawbacks and payouts) is minus the payable balance; what postings after
     * ?2 add to it is taken back out, read from the index in event time, so a payout reads
     * the postings after its through_ms, not the rep's history. They come in event-time order,
     * where accruals may run past INT64_MAX before the clawbacks that net them back, and
     * SQLite's int64 SUM fails on that: the high and low 32 bits of each amount are summed
     * apart, and due_row adds them up in 128 bits. */
    [Q_DUE] = "SELECT b.currency, b.balance, SUM(e.v >> 32), SUM(e.v & 4294967295)"
              " FROM ledger_balance b LEFT JOIN (SELECT currency, CASE kind WHEN 'ACCRUAL'"
              " THEN amount WHEN 'CLAWBACK' THEN -amount ELSE 0 END AS v FROM ledger_entry"
              " WHERE effective_ms > ?2 AND rep = ?1) e ON e.currency = b.currency"
              " WHERE b.account = 'payable' AND b.rep = ?1 GROUP BY b.currency"
              " ORDER BY b.currency",
    [Q_ENTRY_ADD] = "INSERT INTO ledger_entry(entry_n, kind, role, rep, client_id,"
                    " cause_event_id, subject_event_id, currency, amount, rate_bp, effective_ms,"
                    " posted_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [Q_BALANCE_GET] = "SELECT balance FROM ledger_balance WHERE account = ?1 AND rep = ?2"
                      " AND currency = ?3",
    /* What payment_settle_alone needs of payment event ?3 (payment_id ?2, client ?1, at ?4,
     * currency ?5), before its row is written, in one statement: the client's plan as
     * Q_CLIENT_PLAN reads it; 1 when no row has the payment's payment_id, no refund names that
     * payment_id, no payment of the client is later in event time and the client's latest
     * payment in the currency knows its running totals (or there is none); and those totals,
     * what the rep and the account manager have accrued on the client (NULL: nothing). */
    [Q_PAYMENT_ALONE] =
        "SELECT h.from_rep, h.account_manager, h.at_ms, c.term_months, c.cap_minor,"
        " NOT EXISTS (SELECT 1 FROM ledger_payment WHERE payment_id = ?2)"
        " AND NOT EXISTS (SELECT 1 FROM ledger_refund WHERE payment_id = ?2)"
        " AND NOT EXISTS (SELECT 1 FROM ledger_payment WHERE client_id = ?1"
        "  AND (at_ms > ?4 OR (at_ms = ?4 AND event_id > ?3)))"
        " AND NOT IFNULL(" USED_UNKNOWN ", 0), " REP_USED ", " AM_USED
        " FROM ledger_handoff h LEFT JOIN ledger_client c ON c.client_id = h.client_id"
        " WHERE h.client_id = ?1 ORDER BY h.at_ms, h.event_id LIMIT 1",
    /* The entries a payment's or a refund's event made, when it settled after its row was
     * written. */
    [Q_PAYMENT_POSTED] = "UPDATE ledger_payment SET posted_seq = ?4, posted_n = ?5"
                         " WHERE client_id = ?1 AND at_ms = ?2 AND event_id = ?3",
    [Q_REFUND_POSTED] = "UPDATE ledger_refund SET posted_seq = ?4, posted_n = ?5"
                        " WHERE event_id = ?3",
    /* Repeated as many times as the client paid in it (currency_row keeps each once): DISTINCT
     * builds a temporary table, a file of its own to open (~50 us). */
    [Q_CURRENCIES] = "SELECT currency FROM ledger_payment WHERE client_id = ?1",
    /* The running totals into the client's latest payment of currency ?5, when they changed. */
    [Q_USED_SET] = "UPDATE ledger_payment SET rep_used = ?2, am_used = ?3 WHERE client_id = ?1"
                   " AND currency = ?5 AND (rep_used IS NOT ?2 OR am_used IS NOT ?3)"
                   " AND event_id = (" LATEST_IN_CURRENCY("event_id") ")",
};

/* A multi-row INSERT: head, then row repeated 1 to ROWS_MAX times, then tail. */
static const struct rows_sql {
    const char *head, *row, *tail;
    int cols;
} rows_sql[R_COUNT_] = {
    /* A posting's debit and credit lines. */
    [R_LINES] = {"INSERT INTO ledger_line(entry_seq, account, amount) VALUES ", "(?, ?, ?)", "", 3},
    /* Lines into the balances of their accounts, in posting order (a key repeated within the
     * statement adds to what its earlier row left); a sum that would leave int64 fails the
     * statement whole (CHECKED_ADD). */
    [R_BALANCES] =
        {"INSERT INTO ledger_balance(account, rep, currency, balance) VALUES ", "(?, ?, ?, ?)",
         " ON CONFLICT(account, rep, currency) DO UPDATE SET balance = " CHECKED_ADD("balance"), 4},
};

struct funnel_ledger {
    funnel_store_t *store;                  /* borrowed */
    sqlite3 *db;                            /* the store's connection */
    const funnel_commission_config_t *plan; /* borrowed, live */
    const funnel_log_t *log;                /* borrowed */
    sqlite3_stmt *stmt[Q_COUNT_];
    sqlite3_stmt *rows[R_COUNT_][ROWS_MAX]; /* [id][k - 1] writes k rows */
};

typedef enum kind { KIND_ACCRUAL, KIND_CLAWBACK, KIND_PAYOUT } kind_t;
static const char *const kind_names[] = {"ACCRUAL", "CLAWBACK", "PAYOUT"};
static const Funnel__V1__CommissionKind kind_wire[] = {FUNNEL__V1__COMMISSION_KIND__ACCRUAL,
                                                       FUNNEL__V1__COMMISSION_KIND__CLAWBACK,
                                                       FUNNEL__V1__COMMISSION_KIND__PAYOUT};

typedef enum role { ROLE_NONE, ROLE_REP, ROLE_AM } role_t;
static const char *const role_names[] = {"", "rep", "account_manager"};
static const Funnel__V1__CommissionRole role_wire[] = {
    FUNNEL__V1__COMMISSION_ROLE__COMMISSION_ROLE_UNSPECIFIED,
    FUNNEL__V1__COMMISSION_ROLE__COMMISSION_ROLE_REP,
    FUNNEL__V1__COMMISSION_ROLE__COMMISSION_ROLE_ACCOUNT_MANAGER};

/* One posting to make, or one desired sum: the key is (subject, kind, role, rep, currency). */
typedef struct posting {
    char subject[ID_BUF]; /* payment, refund or payout event */
    kind_t kind;
    role_t role;
    char rep[ID_BUF];
    char currency[4];
    int64_t amount;
    int64_t rate_bp;
    int64_t effective_ms;
} posting_t;

/* A growable array of T; `n` used, `cap` allocated. */
#define VEC(T)                                                                                     \
    struct {                                                                                       \
        T *v;                                                                                      \
        size_t n, cap;                                                                             \
    }

/* One line of a posting (R_LINES). */
typedef struct line_row {
    int64_t seq;
    const char *account; /* static */
    int64_t amount;
} line_row_t;

/* One line into the balance of its account (R_BALANCES), in posting order. */
typedef struct balance_row {
    const char *account; /* static */
    char rep[ID_BUF], currency[4];
    int64_t delta;
} balance_row_t;

/* The state of one event's run: where postings go and how they are numbered. */
typedef struct run {
    funnel_ledger_t *lg;
    funnel_router_t *router;
    const funnel_envelope_t *cause;
    const char *client_id; /* "" for payouts */
    int64_t now_ms;
    int n_posted;      /* numbers entry ids: "ledger:<cause>#<n>" */
    int64_t first_seq; /* of the event's first entry; the others follow it */
    /* What payment_settle_alone left the client's running totals at, for the payment's row. */
    bool used_known;
    int64_t rep_used, am_used;
    /* Written when the event is done (run_flush): nothing the event reads. */
    VEC(line_row_t) lines;
    VEC(balance_row_t) balances;
} run_t;

typedef struct payment {
    char event_id[ID_BUF];
    char payment_id[ID_BUF];
    char currency[4];
    int64_t amount, at_ms;
} payment_t;

/* Makes room for one more element of size `size`; 0 or FUNNEL_ENOMEM. */
static int vec_reserve(void **v, size_t *cap, size_t n, size_t size)
{
    return funnel_grow(v, cap, n + 1, size, 16);
}
#define VEC_PUSH(vec) vec_reserve((void **)&(vec).v, &(vec).cap, (vec).n, sizeof *(vec).v)

/* ---- small SQLite helpers -------------------------------------------------------------- */

static sqlite3_stmt *q(funnel_ledger_t *lg, enum stmt_id id)
{
    sqlite3_stmt *s = lg->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

/* Copies src (NULL: "") into dst of size bytes, cut to fit: what snprintf("%s") does, without
 * parsing a format for each of the ids a settle copies. */
static void str_copy(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t len)
{
    str_copy(dst, len, (const char *)sqlite3_column_text(s, i));
}

/* Steps a statement that returns no rows. */
static int exec_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* The result of a row loop: SQLITE_DONE is success, a negative code is ours, else SQLite's. */
static int step_end(int rc)
{
    return rc == SQLITE_DONE ? 0 : rc < 0 ? rc : FUNNEL_ESTORE;
}

/* Steps a bound statement through its rows, calling row for each; a non-zero (negative) return
 * stops. Resets the statement, so no cursor stays open. 0 or the first error. */
static int rows_each(sqlite3_stmt *s, int (*row)(sqlite3_stmt *s, void *arg), void *arg)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((rc = row(s, arg)))
            break;
    sqlite3_reset(s);
    return step_end(rc);
}

static bool add_ok(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* ---- postings ---------------------------------------------------------------------------- */

/* Binds a row of rows_sql[id] from its parameter `first` on. */
typedef void (*row_bind_fn)(sqlite3_stmt *s, int first, const void *row);

/* Writes n rows (row i at rows + i * size) with the statements of rows_sql[id], up to ROWS_MAX
 * rows each. 0, or FUNNEL_ESTORE with *failed the index of the first row of the statement that
 * failed: that statement wrote nothing, the ones before it stay. */
static int rows_flush(funnel_ledger_t *lg, enum rows_id id, const void *rows, size_t n, size_t size,
                      row_bind_fn bind, size_t *failed)
{
    for (size_t i = 0; i < n;) {
        size_t k = n - i < ROWS_MAX ? n - i : ROWS_MAX;
        sqlite3_stmt *s = lg->rows[id][k - 1];
        sqlite3_reset(s);
        for (size_t j = 0; j < k; j++)
            bind(s, (int)j * rows_sql[id].cols + 1, (const char *)rows + (i + j) * size);
        if (exec_done(s)) {
            *failed = i;
            return FUNNEL_ESTORE;
        }
        i += k;
    }
    return 0;
}

static void line_bind(sqlite3_stmt *s, int first, const void *row)
{
    const line_row_t *l = row;
    sqlite3_bind_int64(s, first, l->seq);
    bind_text(s, first + 1, l->account);
    sqlite3_bind_int64(s, first + 2, l->amount);
}

static void balance_bind(sqlite3_stmt *s, int first, const void *row)
{
    const balance_row_t *b = row;
    bind_text(s, first, b->account);
    bind_text(s, first + 1, b->rep);
    bind_text(s, first + 2, b->currency);
    sqlite3_bind_int64(s, first + 3, b->delta);
}

/* The stored balance of b's account, rep and currency (0 without a row). */
static int balance_get(funnel_ledger_t *lg, const balance_row_t *b, int64_t *out)
{
    sqlite3_stmt *s = q(lg, Q_BALANCE_GET);
    bind_text(s, 1, b->account);
    bind_text(s, 2, b->rep);
    bind_text(s, 3, b->currency);
    int rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* After rows[0..n) failed to write as one statement: refuses the event (router.h) naming the
 * first row whose balance would leave the int64 range, in posting order. The event is valid,
 * but these books cannot hold it. */
static int balances_refuse(run_t *run, const balance_row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t bal;
        int rc = balance_get(run->lg, &rows[i], &bal);
        if (rc)
            return rc;
        /* Earlier rows of the same key were added first, and fit. */
        for (size_t j = 0; j < i; j++)
            if (!strcmp(rows[j].account, rows[i].account) && !strcmp(rows[j].rep, rows[i].rep) &&
                !strcmp(rows[j].currency, rows[i].currency))
                bal += rows[j].delta;
        if (!add_ok(bal, rows[i].delta, &bal))
            return funnel_router_refuse(
                run->router, FUNNEL_REFUSE_OVERFLOW,
                "ledger: the %s balance of %s in %s would leave the int64 range", rows[i].account,
                rows[i].rep, rows[i].currency);
    }
    funnel_log_error(run->lg->log, "ledger: the balances of %s in %s refused a posting that fits",
                     rows[0].rep, rows[0].currency);
    return FUNNEL_ESTORE;
}

/* Writes the event's lines and balances. A balance that would leave int64 fails its statement
 * whole (NOT NULL, see CHECKED_ADD) and refuses the event. */
static int run_flush(run_t *run)
{
    funnel_ledger_t *lg = run->lg;
    size_t failed;
    int rc = rows_flush(lg, R_LINES, run->lines.v, run->lines.n, sizeof *run->lines.v, line_bind,
                        &failed);
    if (rc)
        return rc;
    if (rows_flush(lg, R_BALANCES, run->balances.v, run->balances.n, sizeof *run->balances.v,
                   balance_bind, &failed)) {
        if (sqlite3_extended_errcode(lg->db) != SQLITE_CONSTRAINT_NOTNULL)
            return FUNNEL_ESTORE;
        size_t k = run->balances.n - failed < ROWS_MAX ? run->balances.n - failed : ROWS_MAX;
        return balances_refuse(run, run->balances.v + failed, k);
    }
    return 0;
}

static void run_free(run_t *run)
{
    free(run->lines.v);
    free(run->balances.v);
}

/* Notes a posting's two lines, amount to the debit account and -amount to the credit account,
 * for its entry seq, and the same into their balances. */
static int lines_note(run_t *run, int64_t seq, const char *debit, const char *credit,
                      const posting_t *p)
{
    const char *account[2] = {debit, credit};
    for (int i = 0; i < 2; i++) {
        if (VEC_PUSH(run->lines) || VEC_PUSH(run->balances))
            return FUNNEL_ENOMEM;
        int64_t amount = i == 0 ? p->amount : -p->amount;
        run->lines.v[run->lines.n++] = (line_row_t){seq, account[i], amount};
        balance_row_t *b = &run->balances.v[run->balances.n++];
        b->account = account[i];
        str_copy(b->rep, sizeof b->rep, p->rep);
        str_copy(b->currency, sizeof b->currency, p->currency);
        b->delta = amount;
    }
    return 0;
}

static int emit(run_t *run, const char *entry_id, const posting_t *p)
{
    Funnel__V1__Money money = FUNNEL__V1__MONEY__INIT;
    Funnel__V1__CommissionPosted body = FUNNEL__V1__COMMISSION_POSTED__INIT;
    funnel_envelope_t env = FUNNEL__V1__ENVELOPE__INIT;
    money.minor = p->amount;
    money.currency = (char *)p->currency;
    /* The body repeats neither the entry id (the envelope's event_id) nor a subject that is
     * the cause (a payment settling itself, a payout): about 80 of its ~235 bytes. */
    body.rep = (char *)p->rep;
    body.client_id = (char *)run->client_id;
    body.cause_event_id = run->cause->event_id;
    body.kind = kind_wire[p->kind];
    body.amount = &money;
    body.rate_bp = (int32_t)p->rate_bp;
    if (strcmp(p->subject, run->cause->event_id))
        body.subject_event_id = (char *)p->subject;
    body.role = role_wire[p->role];
    env.event_id = (char *)entry_id;
    env.occurred_at_ms = p->effective_ms;
    env.source = SOURCE;
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_COMMISSION_POSTED;
    env.commission_posted = &body;
    return funnel_router_emit(run->router, TOPIC_OUT, &env, run->now_ms);
}

/* Appends one balanced posting (its entry now, its lines and balances when the event is done:
 * run_flush) and publishes it. The debit goes to expense for an accrual and to payable
 * otherwise; the credit to payable, expense or paid. */
static int post(run_t *run, const posting_t *p)
{
    static const char *const debit[] = {"expense", "payable", "payable"};
    static const char *const credit[] = {"payable", "expense", "paid"};
    funnel_ledger_t *lg = run->lg;
    char entry_id[FUNNEL_ID_MAX + 32];
    snprintf(entry_id, sizeof entry_id, "ledger:%s#%d", run->cause->event_id, ++run->n_posted);
    sqlite3_stmt *s = q(lg, Q_ENTRY_ADD);
    sqlite3_bind_int(s, 1, run->n_posted);
    bind_text(s, 2, kind_names[p->kind]);
    bind_text(s, 3, role_names[p->role]);
    bind_text(s, 4, p->rep);
    bind_text(s, 5, run->client_id);
    bind_text(s, 6, run->cause->event_id);
    bind_text(s, 7, p->subject);
    bind_text(s, 8, p->currency);
    sqlite3_bind_int64(s, 9, p->amount);
    sqlite3_bind_int64(s, 10, p->rate_bp);
    sqlite3_bind_int64(s, 11, p->effective_ms);
    sqlite3_bind_int64(s, 12, run->now_ms);
    int rc = exec_done(s);
    if (rc)
        return rc;
    int64_t seq = sqlite3_last_insert_rowid(lg->db);
    if (run->n_posted == 1)
        run->first_seq = seq;
    if ((rc = lines_note(run, seq, debit[p->kind], credit[p->kind], p)))
        return rc;
    funnel_log_debug(lg->log, "ledger: %s %s %lld %s to %s (cause %s)", entry_id,
                     kind_names[p->kind], (long long)p->amount, p->currency, p->rep,
                     run->cause->event_id);
    return emit(run, entry_id, p);
}

/* ---- the desired state of one client ---------------------------------------------------- */

static int posting_cmp(const void *a, const void *b)
{
    const posting_t *x = a, *y = b;
    int c;
    if ((c = strcmp(x->subject, y->subject)))
        return c;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->role != y->role)
        return x->role < y->role ? -1 : 1;
    if ((c = strcmp(x->rep, y->rep)))
        return c;
    return strcmp(x->currency, y->currency);
}

/* Posting order within one event: event time first, so the feed reads like the books. */
static int posting_time_cmp(const void *a, const void *b)
{
    const posting_t *x = a, *y = b;
    if (x->effective_ms != y->effective_ms)
        return x->effective_ms < y->effective_ms ? -1 : 1;
    return posting_cmp(a, b);
}

typedef VEC(posting_t) postings_t;
typedef VEC(payment_t) payments_t;

/* A refund is a payment-shaped fact pointing at its payment (payment_id holds that id). */
typedef payment_t refund_t;
typedef payments_t refunds_t;

/* The client's plan: its first handoff, and the term and cap frozen when it was first used. */
typedef struct client_plan {
    bool handed_off;
    char rep[ID_BUF], am[ID_BUF];
    int64_t start_ms, end_ms, cap, term_months;
} client_plan_t;

/* Reads a client's plan from columns 0-4 of s, shaped as Q_CLIENT_PLAN returns them; *frozen
 * says whether the term and cap were frozen (else they are the live plan's). */
static void client_plan_row(funnel_ledger_t *lg, sqlite3_stmt *s, client_plan_t *cp, bool *frozen)
{
    int64_t term = lg->plan->term_months;
    cp->handed_off = true;
    col_copy(s, 0, cp->rep, sizeof cp->rep);
    col_copy(s, 1, cp->am, sizeof cp->am);
    cp->start_ms = sqlite3_column_int64(s, 2);
    *frozen = sqlite3_column_type(s, 3) != SQLITE_NULL;
    if (*frozen) {
        term = sqlite3_column_int64(s, 3);
        cp->cap = sqlite3_column_int64(s, 4);
    } else {
        cp->cap = lg->plan->cap_minor;
    }
    cp->end_ms = funnel_commission_term_end(cp->start_ms, term);
    cp->term_months = term;
}

/* Freezes the client's term and cap as client_plan_row read them from the live plan: a later
 * reload then changes new clients only, never re-rates history. */
static int client_plan_freeze(funnel_ledger_t *lg, const char *client, const client_plan_t *cp)
{
    sqlite3_stmt *s = q(lg, Q_CLIENT_FREEZE);
    bind_text(s, 1, client);
    sqlite3_bind_int64(s, 2, cp->term_months);
    sqlite3_bind_int64(s, 3, cp->cap);
    return exec_done(s);
}

static int client_plan_load(funnel_ledger_t *lg, const char *client, client_plan_t *cp)
{
    memset(cp, 0, sizeof *cp);
    sqlite3_stmt *s = q(lg, Q_CLIENT_PLAN);
    bind_text(s, 1, client);
    int rc = sqlite3_step(s);
    bool frozen = true;
    if (rc == SQLITE_ROW)
        client_plan_row(lg, s, cp, &frozen);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
    return frozen ? 0 : client_plan_freeze(lg, client, cp);
}

static int fact_row(sqlite3_stmt *s, void *arg)
{
    payments_t *out = arg;
    if (VEC_PUSH(*out))
        return FUNNEL_ENOMEM;
    payment_t *p = &out->v[out->n++];
    col_copy(s, 0, p->event_id, sizeof p->event_id);
    col_copy(s, 1, p->payment_id, sizeof p->payment_id);
    col_copy(s, 2, p->currency, sizeof p->currency);
    p->amount = sqlite3_column_int64(s, 3);
    p->at_ms = sqlite3_column_int64(s, 4);
    return 0;
}

/* Loads payment-shaped rows (payments or refunds) of a client, in event-time order. */
static int facts_load(funnel_ledger_t *lg, enum stmt_id id, const char *client, payments_t *out)
{
    sqlite3_stmt *s = q(lg, id);
    bind_text(s, 1, client);
    return rows_each(s, fact_row, out);
}

/* One frozen rate, keyed by (payment event, role, rep). */
typedef struct rate {
    char payment_event_id[ID_BUF];
    role_t role;
    char rep[ID_BUF];
    int64_t rate_bp;
} rate_t;
typedef VEC(rate_t) rates_t;

static int rate_cmp(const void *a, const void *b)
{
    const rate_t *x = a, *y = b;
    int c;
    if ((c = strcmp(x->payment_event_id, y->payment_event_id)))
        return c;
    if (x->role != y->role)
        return x->role < y->role ? -1 : 1;
    return strcmp(x->rep, y->rep);
}

static int rate_row(sqlite3_stmt *s, void *arg)
{
    rates_t *out = arg;
    if (VEC_PUSH(*out))
        return FUNNEL_ENOMEM;
    rate_t *r = &out->v[out->n++];
    col_copy(s, 0, r->payment_event_id, sizeof r->payment_event_id);
    const char *role = (const char *)sqlite3_column_text(s, 1);
    r->role = role && strcmp(role, role_names[ROLE_REP]) == 0 ? ROLE_REP : ROLE_AM;
    col_copy(s, 2, r->rep, sizeof r->rep);
    r->rate_bp = sqlite3_column_int64(s, 3);
    return 0;
}

/* Loads the client's frozen rates, sorted by rate_cmp for rate_of's binary search: the rows of
 * ledger_rate, and the rate of each accrual posted (posted, from posted_load), which is the
 * rate frozen for its key when it was first computed. */
static int rates_load(funnel_ledger_t *lg, const char *client, const postings_t *posted,
                      rates_t *out)
{
    sqlite3_stmt *s = q(lg, Q_RATES);
    bind_text(s, 1, client);
    int rc = rows_each(s, rate_row, out);
    for (size_t i = 0; i < posted->n && !rc; i++) {
        const posting_t *p = &posted->v[i];
        if (p->kind != KIND_ACCRUAL)
            continue;
        if (VEC_PUSH(*out))
            return FUNNEL_ENOMEM;
        rate_t *r = &out->v[out->n++];
        str_copy(r->payment_event_id, sizeof r->payment_event_id, p->subject);
        r->role = p->role;
        str_copy(r->rep, sizeof r->rep, p->rep);
        r->rate_bp = p->rate_bp;
    }
    if (!rc && out->n) /* qsort wants a valid pointer even for nothing */
        qsort(out->v, out->n, sizeof *out->v, rate_cmp);
    return rc;
}

/* The rate of one beneficiary on one payment: frozen the first time it is computed, so the
 * plan in force then stays the rate of that payment whatever later reloads say. rates holds
 * what was frozen before this settle (*frozen: found there); a rate computed here is frozen by
 * the caller (rate_freeze when it posts nothing, else its posting), and each key is asked for
 * once per settle, so it need not be added to rates. */
static void rate_of(funnel_ledger_t *lg, const rates_t *rates, const payment_t *p, role_t role,
                    const char *rep, int64_t *rate, bool *frozen)
{
    rate_t key = {.role = role};
    str_copy(key.payment_event_id, sizeof key.payment_event_id, p->event_id);
    str_copy(key.rep, sizeof key.rep, rep);
    const rate_t *hit =
        rates->n ? bsearch(&key, rates->v, rates->n, sizeof *rates->v, rate_cmp) : NULL;
    *frozen = hit != NULL;
    if (hit)
        *rate = hit->rate_bp;
    else
        *rate = role == ROLE_REP ? funnel_commission_rate_at(lg->plan, rep, p->at_ms)
                                 : lg->plan->account_manager_rate_bp;
}

/* Keeps a rate no posting will hold (its accrual is 0): the next settle must find it frozen. */
static int rate_freeze(funnel_ledger_t *lg, const payment_t *p, role_t role, const char *rep,
                       int64_t rate)
{
    sqlite3_stmt *s = q(lg, Q_RATE_FREEZE);
    bind_text(s, 1, p->event_id);
    bind_text(s, 2, role_names[role]);
    bind_text(s, 3, rep);
    sqlite3_bind_int64(s, 4, rate);
    return exec_done(s);
}

/* Accrual cap used so far by one person in one currency, whatever their roles. */
typedef struct cap_use {
    const char *person; /* borrowed from the client's plan */
    char currency[4];
    int64_t used;
} cap_use_t;
typedef VEC(cap_use_t) cap_uses_t;

static int64_t *cap_slot(cap_uses_t *uses, const char *person, const char *currency)
{
    for (size_t i = 0; i < uses->n; i++)
        if (!strcmp(uses->v[i].person, person) && !strcmp(uses->v[i].currency, currency))
            return &uses->v[i].used;
    if (VEC_PUSH(*uses))
        return NULL;
    cap_use_t *u = &uses->v[uses->n++];
    u->person = person;
    str_copy(u->currency, sizeof u->currency, currency);
    u->used = 0;
    return &u->used;
}

/* What person has used of the cap in currency (0 before any accrual). */
static int64_t cap_used(const cap_uses_t *uses, const char *person, const char *currency)
{
    for (size_t i = 0; i < uses->n; i++)
        if (!strcmp(uses->v[i].person, person) && !strcmp(uses->v[i].currency, currency))
            return uses->v[i].used;
    return 0;
}

static int target_add(postings_t *out, const char *subject, kind_t kind, role_t role,
                      const char *rep, const char *currency, int64_t amount, int64_t rate,
                      int64_t at_ms)
{
    if (amount == 0)
        return 0;
    if (VEC_PUSH(*out))
        return FUNNEL_ENOMEM;
    posting_t *t = &out->v[out->n++];
    str_copy(t->subject, sizeof t->subject, subject);
    str_copy(t->rep, sizeof t->rep, rep);
    str_copy(t->currency, sizeof t->currency, currency);
    t->kind = kind;
    t->role = role;
    t->amount = amount;
    t->rate_bp = rate;
    t->effective_ms = at_ms;
    return 0;
}

/* Refunds grouped by payment, each group in event-time order: a payment finds its refunds by
 * binary search instead of scanning every refund of the client (payments x refunds). */
static int refund_cmp(const void *a, const void *b)
{
    const refund_t *x = a, *y = b;
    int c;
    if ((c = strcmp(x->payment_id, y->payment_id)))
        return c;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return strcmp(x->event_id, y->event_id);
}

/* The index of the first refund of payment_id in refunds sorted by refund_cmp (n if none). */
static size_t refunds_first(const refunds_t *refunds, const char *payment_id)
{
    size_t lo = 0, hi = refunds->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(refunds->v[mid].payment_id, payment_id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Clawbacks of one payment's accrual: each refund of it, in event-time order, claws the
 * difference of the cumulative clawback (rounded up) before and after it. refunds is sorted
 * by refund_cmp. */
static int clawbacks_add(const payment_t *p, int64_t accrued, int64_t rate, role_t role,
                         const char *rep, const refunds_t *refunds, postings_t *out)
{
    int64_t refunded = 0, clawed = 0;
    for (size_t i = refunds_first(refunds, p->payment_id);
         i < refunds->n && refunded < p->amount && !strcmp(refunds->v[i].payment_id, p->payment_id);
         i++) {
        const refund_t *r = &refunds->v[i];
        if (strcmp(r->currency, p->currency))
            continue;
        /* Saturating: refunds beyond the payment claw back the whole accrual, never more. */
        refunded = r->amount >= p->amount - refunded ? p->amount : refunded + r->amount;
        int64_t total;
        int rc = funnel_commission_clawback_total(accrued, refunded, p->amount, &total);
        if (!rc)
            rc = target_add(out, r->event_id, KIND_CLAWBACK, role, rep, r->currency, total - clawed,
                            rate, r->at_ms);
        if (rc)
            return rc;
        clawed = total;
    }
    return 0;
}

static int posted_row(sqlite3_stmt *s, void *arg)
{
    postings_t *out = arg;
    if (VEC_PUSH(*out))
        return FUNNEL_ENOMEM;
    posting_t *p = &out->v[out->n++];
    memset(p, 0, sizeof *p);
    col_copy(s, 0, p->subject, sizeof p->subject);
    const char *role = (const char *)sqlite3_column_text(s, 1);
    p->role = role && strcmp(role, "rep") == 0 ? ROLE_REP : ROLE_AM;
    col_copy(s, 2, p->rep, sizeof p->rep);
    const char *kind = (const char *)sqlite3_column_text(s, 3);
    p->kind = kind && strcmp(kind, "ACCRUAL") == 0 ? KIND_ACCRUAL : KIND_CLAWBACK;
    col_copy(s, 4, p->currency, sizeof p->currency);
    p->amount = sqlite3_column_int64(s, 5);
    p->rate_bp = sqlite3_column_int64(s, 6);
    p->effective_ms = sqlite3_column_int64(s, 7);
    return 0;
}

/* What is posted on the client per (subject, kind, role, rep, currency): the sum, the rate and
 * the earliest event time. */
static int posted_load(funnel_ledger_t *lg, const char *client, postings_t *out)
{
    sqlite3_stmt *s = q(lg, Q_POSTED);
    bind_text(s, 1, client);
    return rows_each(s, posted_row, out);
}

/* What one settle reads of a client, each in one query: payments in event-time order, refunds
 * sorted by refund_cmp, frozen rates sorted by rate_cmp (from ledger_rate and the postings). */
typedef struct client_facts {
    payments_t pays;
    refunds_t refunds;
    rates_t rates;
} client_facts_t;

static int client_facts_load(funnel_ledger_t *lg, const char *client, const postings_t *posted,
                             client_facts_t *f)
{
    int rc;
    if ((rc = facts_load(lg, Q_PAYMENTS, client, &f->pays)) ||
        (rc = facts_load(lg, Q_REFUNDS, client, &f->refunds)) ||
        (rc = rates_load(lg, client, posted, &f->rates)))
        return rc;
    if (f->refunds.n)
        qsort(f->refunds.v, f->refunds.n, sizeof *f->refunds.v, refund_cmp);
    return 0;
}

static void client_facts_free(client_facts_t *f)
{
    free(f->pays.v);
    free(f->refunds.v);
    free(f->rates.v);
}

/* One beneficiary's accrual on one payment, under what is left of their cap, and its
 * clawbacks. */
static int role_targets(run_t *run, const client_plan_t *cp, role_t role, const char *rep,
                        const payment_t *p, const client_facts_t *f, cap_uses_t *uses,
                        postings_t *out)
{
    int64_t rate, accrued, *used;
    bool frozen;
    rate_of(run->lg, &f->rates, p, role, rep, &rate, &frozen);
    int rc = funnel_commission_accrual(p->amount, rate, &accrued);
    if (rc)
        return rc;
    if (!(used = cap_slot(uses, rep, p->currency)))
        return FUNNEL_ENOMEM;
    if (cp->cap > 0 && accrued > cp->cap - *used)
        accrued = cp->cap - *used;
    if (!add_ok(*used, accrued, used))
        return funnel_router_refuse(run->router, FUNNEL_REFUSE_OVERFLOW,
                                    "ledger: the accruals of %s in %s on client %s would leave "
                                    "the int64 range",
                                    rep, p->currency, run->client_id);
    if (!frozen && accrued == 0 && (rc = rate_freeze(run->lg, p, role, rep, rate)))
        return rc;
    if ((rc = target_add(out, p->event_id, KIND_ACCRUAL, role, rep, p->currency, accrued, rate,
                         p->at_ms)))
        return rc;
    return clawbacks_add(p, accrued, rate, role, rep, &f->refunds, out);
}

/* The desired sums of a client: accruals on eligible payments in event-time order, the rep's
 * before the account manager's on each, under the cap of each person (one cap for a person in
 * both roles), and their clawbacks. */
static int client_targets(run_t *run, const client_plan_t *cp, const client_facts_t *f,
                          cap_uses_t *uses, postings_t *out)
{
    int rc = 0;
    for (size_t i = 0; i < f->pays.n && !rc; i++) {
        const payment_t *p = &f->pays.v[i];
        if (p->at_ms < cp->start_ms || p->at_ms >= cp->end_ms)
            continue;
        rc = role_targets(run, cp, ROLE_REP, cp->rep, p, f, uses, out);
        if (!rc && cp->am[0])
            rc = role_targets(run, cp, ROLE_AM, cp->am, p, f, uses, out);
    }
    return rc;
}

typedef struct currency {
    char code[4];
} currency_t;
typedef VEC(currency_t) currencies_t;

static int currency_row(sqlite3_stmt *s, void *arg)
{
    currencies_t *out = arg;
    const char *c = (const char *)sqlite3_column_text(s, 0);
    for (size_t i = 0; i < out->n; i++)
        if (!strcmp(out->v[i].code, c ? c : ""))
            return 0;
    if (VEC_PUSH(*out))
        return FUNNEL_ENOMEM;
    col_copy(s, 0, out->v[out->n++].code, sizeof out->v[0].code);
    return 0;
}

/* Keeps what the rep and the account manager have accrued on the client after a whole settle
 * (uses: the cap used per person and currency) in its latest payment row of each currency it
 * paid in, where payment_settle_alone reads them. */
static int used_store(run_t *run, const client_plan_t *cp, const cap_uses_t *uses)
{
    currencies_t cur = {0};
    sqlite3_stmt *s = q(run->lg, Q_CURRENCIES);
    bind_text(s, 1, run->client_id);
    int rc = rows_each(s, currency_row, &cur);
    for (size_t i = 0; i < cur.n && !rc; i++) {
        s = q(run->lg, Q_USED_SET);
        bind_text(s, 1, run->client_id);
        sqlite3_bind_int64(s, 2, cap_used(uses, cp->rep, cur.v[i].code));
        sqlite3_bind_int64(s, 3, cp->am[0] ? cap_used(uses, cp->am, cur.v[i].code) : 0);
        bind_text(s, 5, cur.v[i].code);
        rc = exec_done(s);
    }
    free(cur.v);
    return rc;
}

/* Turns targets into the postings that close the gap to what is posted: a posted sum without
 * a target is reversed, a target is topped up or corrected. Targets end up holding deltas. */
static int deltas_compute(const postings_t *posted, postings_t *targets)
{
    if (targets->n) /* qsort and bsearch want a valid pointer even for nothing */
        qsort(targets->v, targets->n, sizeof *targets->v, posting_cmp);
    size_t n_targets = targets->n;
    for (size_t i = 0; i < posted->n; i++) {
        const posting_t *key = &posted->v[i];
        posting_t *t =
            n_targets ? bsearch(key, targets->v, n_targets, sizeof *targets->v, posting_cmp) : NULL;
        if (t) {
            t->amount -= key->amount; /* both are bounded by the payment: no overflow */
            continue;
        }
        if (VEC_PUSH(*targets))
            return FUNNEL_ENOMEM;
        targets->v[targets->n] = *key;
        targets->v[targets->n++].amount = -key->amount;
    }
    return 0;
}

/* Recomputes a client's desired sums and posts the differences. */
static int client_settle(run_t *run)
{
    funnel_ledger_t *lg = run->lg;
    client_plan_t cp;
    client_facts_t facts = {0};
    postings_t posted = {0}, targets = {0};
    cap_uses_t uses = {0};
    int rc;
    if ((rc = client_plan_load(lg, run->client_id, &cp)) ||
        (rc = posted_load(lg, run->client_id, &posted)))
        goto out;
    if (cp.handed_off) {
        if ((rc = client_facts_load(lg, run->client_id, &posted, &facts)) ||
            (rc = client_targets(run, &cp, &facts, &uses, &targets)))
            goto out;
    }
    if ((rc = deltas_compute(&posted, &targets)))
        goto out;
    if (targets.n)
        qsort(targets.v, targets.n, sizeof *targets.v, posting_time_cmp);
    for (size_t i = 0; i < targets.n && !rc; i++)
        if (targets.v[i].amount)
            rc = post(run, &targets.v[i]);
    if (!rc && cp.handed_off)
        rc = used_store(run, &cp, &uses);
out:
    free(posted.v);
    free(targets.v);
    free(uses.v);
    client_facts_free(&facts);
    return rc;
}

/* ---- inputs ----------------------------------------------------------------------------- */

/* Steps an insert of a fact row; a store failure is reported with SQLite's reason. */
static int fact_insert(funnel_ledger_t *lg, sqlite3_stmt *s)
{
    int rc = exec_done(s);
    if (rc)
        funnel_log_error(lg->log, "ledger: %s", sqlite3_errmsg(lg->db));
    return rc;
}

static int on_handoff(run_t *run, const Funnel__V1__ClientHandedOff *h)
{
    sqlite3_stmt *s = q(run->lg, Q_HANDOFF_ADD);
    bind_text(s, 1, run->cause->event_id);
    bind_text(s, 2, h->client_id);
    bind_text(s, 3, h->from_rep);
    bind_text(s, 4, h->account_manager);
    sqlite3_bind_int64(s, 5, run->cause->occurred_at_ms);
    run->client_id = h->client_id;
    int rc = fact_insert(run->lg, s);
    return rc ? rc : client_settle(run);
}

/* Settles the event's own client, then every other client the payment or refund can affect
 * (see Q_CLIENTS_OF). The list is read before any posting, so no cursor is open meanwhile. */
typedef struct client_id {
    char id[ID_BUF];
} client_id_t;

/* The clients other than `own` named by Q_CLIENTS_OF. */
typedef struct other_clients {
    const char *own;
    VEC(client_id_t) list;
} other_clients_t;

static int other_client_row(sqlite3_stmt *s, void *arg)
{
    other_clients_t *o = arg;
    const char *c = (const char *)sqlite3_column_text(s, 0);
    if (!c || strcmp(c, o->own) == 0)
        return 0;
    for (size_t i = 0; i < o->list.n; i++)
        if (!strcmp(o->list.v[i].id, c))
            return 0;
    if (VEC_PUSH(o->list))
        return FUNNEL_ENOMEM;
    col_copy(s, 0, o->list.v[o->list.n++].id, ID_BUF);
    return 0;
}

static int client_id_cmp(const void *a, const void *b)
{
    return strcmp(((const client_id_t *)a)->id, ((const client_id_t *)b)->id);
}

static int clients_settle(run_t *run, const char *payment_id, const char *refund_id)
{
    const char *own = run->client_id;
    other_clients_t o = {.own = own};
    sqlite3_stmt *s = q(run->lg, Q_CLIENTS_OF);
    if (payment_id)
        bind_text(s, 1, payment_id);
    if (refund_id)
        bind_text(s, 2, refund_id);
    int rc = rows_each(s, other_client_row, &o);
    if (!rc && o.list.n) /* in client_id order, as SQLite's BINARY collation sorts */
        qsort(o.list.v, o.list.n, sizeof *o.list.v, client_id_cmp);
    if (!rc)
        rc = client_settle(run);
    for (size_t i = 0; i < o.list.n && !rc; i++) {
        run->client_id = o.list.v[i].id;
        rc = client_settle(run);
    }
    run->client_id = own;
    free(o.list.v);
    return rc;
}

static int unmatched_row(sqlite3_stmt *s, void *arg)
{
    const run_t *run = arg;
    funnel_log_warn(run->lg->log,
                    "ledger: refund %s of client %s in %s is held: it names payment %s of client "
                    "%s in %s, and a refund claws back only from its own client's payment in "
                    "its currency",
                    sqlite3_column_text(s, 0), sqlite3_column_text(s, 1), sqlite3_column_text(s, 2),
                    sqlite3_column_text(s, 5), sqlite3_column_text(s, 3),
                    sqlite3_column_text(s, 4));
    return 0;
}

/* Logs, once (when the refund or its payment arrives), each refund the event leaves held for
 * naming another client's payment or currency; `ledger check` lists them all later. */
static int unmatched_log(run_t *run, const char *payment_id)
{
    sqlite3_stmt *s = q(run->lg, Q_UNMATCHED);
    bind_text(s, 1, run->cause->event_id);
    bind_text(s, 2, payment_id);
    return rows_each(s, unmatched_row, run);
}

/* Seeds the cap use of person in currency with what they accrued on the client so far: column
 * col of s, a running total of the client's latest payment in the currency (none: 0). */
static int accrued_seed(sqlite3_stmt *s, int col, cap_uses_t *uses, const char *person,
                        const char *currency)
{
    int64_t *used = cap_slot(uses, person, currency);
    if (!used)
        return FUNNEL_ENOMEM;
    *used = sqlite3_column_int64(s, col);
    return 0;
}

/* Reads what payment_settle_alone needs of p in one statement (Q_PAYMENT_ALONE): the client's
 * plan into cp, whether p settles alone, and the rep's and the account manager's running
 * totals into uses. Freezes the client's plan if it was not. */
static int payment_alone_load(run_t *run, const payment_t *p, client_plan_t *cp, bool *alone,
                              cap_uses_t *uses)
{
    memset(cp, 0, sizeof *cp);
    *alone = false;
    sqlite3_stmt *s = q(run->lg, Q_PAYMENT_ALONE);
    bind_text(s, 1, run->client_id);
    bind_text(s, 2, p->payment_id);
    bind_text(s, 3, p->event_id);
    sqlite3_bind_int64(s, 4, p->at_ms);
    bind_text(s, 5, p->currency);
    int rc = sqlite3_step(s);
    bool frozen = true;
    if (rc == SQLITE_ROW) {
        client_plan_row(run->lg, s, cp, &frozen);
        *alone = sqlite3_column_int(s, 5) == 1;
        if (!(rc = accrued_seed(s, 6, uses, cp->rep, p->currency)) && cp->am[0])
            rc = accrued_seed(s, 7, uses, cp->am, p->currency);
        rc = rc ? rc : SQLITE_ROW;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : rc < 0 ? rc : FUNNEL_ESTORE;
    return frozen ? 0 : client_plan_freeze(run->lg, run->client_id, cp);
}

/* A settle of the client limited to payment p, the usual case of a backfill or of live
 * traffic: a payment's accruals depend on no later payment (the cap is consumed in event-time
 * order), and when p is the only row of its payment_id, has no refund and is the client's
 * latest payment, the whole-client settle would post exactly p's accruals, in this order,
 * after what each person accrued before: the running totals of the client's latest payment in
 * the currency, which are what the cap has used and what the int64 overflow check adds to. The
 * other payments' postings already equal their targets. Sets *done when it applied; otherwise the
 * caller settles the whole client. Reading the client's whole history on every payment made the
 * cost of a payment grow with the client's age. */
static int payment_settle_alone(run_t *run, const payment_t *p, bool *done)
{
    client_plan_t cp;
    client_facts_t none = {0};
    cap_uses_t uses = {0};
    postings_t targets = {0};
    bool alone;
    *done = false;
    int rc = payment_alone_load(run, p, &cp, &alone, &uses);
    if (rc || !cp.handed_off || !alone)
        goto out;
    *done = true;
    if (p->at_ms < cp.start_ms || p->at_ms >= cp.end_ms)
        goto out; /* outside the term: the whole settle would post nothing either */
    rc = role_targets(run, &cp, ROLE_REP, cp.rep, p, &none, &uses, &targets);
    if (!rc && cp.am[0])
        rc = role_targets(run, &cp, ROLE_AM, cp.am, p, &none, &uses, &targets);
    if (!rc && targets.n)
        qsort(targets.v, targets.n, sizeof *targets.v, posting_time_cmp);
    for (size_t i = 0; i < targets.n && !rc; i++)
        if (targets.v[i].amount)
            rc = post(run, &targets.v[i]);
out:
    if (!rc && *done) { /* what the payment's row keeps (fact_add) */
        run->used_known = true;
        run->rep_used = cap_used(&uses, cp.rep, p->currency);
        run->am_used = cp.am[0] ? cap_used(&uses, cp.am, p->currency) : 0;
    }
    free(targets.v);
    free(uses.v);
    return rc;
}

/* Writes the row of a payment or a refund (ids: payment_id, or refund_id and payment_id, in the
 * column order of its insert); a payment's row takes the range of the entries the event has
 * made so far (none, or those of payment_settle_alone). */
static int fact_add(run_t *run, enum stmt_id id, const char *const *ids, int n_ids,
                    const Funnel__V1__Money *m)
{
    sqlite3_stmt *s = q(run->lg, id);
    int col = 1;
    bind_text(s, col++, run->cause->event_id);
    for (int i = 0; i < n_ids; i++)
        bind_text(s, col++, ids[i]);
    bind_text(s, col++, run->client_id);
    bind_text(s, col++, m->currency);
    sqlite3_bind_int64(s, col++, m->minor);
    sqlite3_bind_int64(s, col++, run->cause->occurred_at_ms);
    if (id == Q_PAYMENT_ADD) {
        sqlite3_bind_int64(s, col++, run->n_posted ? run->first_seq : 0);
        sqlite3_bind_int(s, col++, run->n_posted);
        if (run->used_known) { /* else NULL, until the client's settle stores them */
            sqlite3_bind_int64(s, col, run->rep_used);
            sqlite3_bind_int64(s, col + 1, run->am_used);
        }
    }
    return fact_insert(run->lg, s);
}

/* Keeps in the row of the event's payment or refund (id: Q_PAYMENT_POSTED or Q_REFUND_POSTED)
 * the range of the entries its settles made, which Q_POSTED reads them through. */
static int fact_posted(run_t *run, enum stmt_id id)
{
    if (!run->n_posted)
        return 0;
    sqlite3_stmt *s = q(run->lg, id);
    bind_text(s, 1, run->client_id);
    sqlite3_bind_int64(s, 2, run->cause->occurred_at_ms);
    bind_text(s, 3, run->cause->event_id);
    sqlite3_bind_int64(s, 4, run->first_seq);
    sqlite3_bind_int(s, 5, run->n_posted);
    return exec_done(s);
}

/* Records a payment or a refund (ids as fact_add has them) and settles every client it affects.
 * A payment that settles alone is written after its postings, with their range. */
static int money_fact(run_t *run, enum stmt_id id, const char *const *ids, int n_ids,
                      const char *client, const Funnel__V1__Money *m)
{
    int rc;
    run->client_id = client;
    /* A payment that settles alone has no refund, so none of them is held (unmatched_log). */
    if (n_ids == 1) {
        payment_t p = {.amount = m->minor, .at_ms = run->cause->occurred_at_ms};
        str_copy(p.event_id, sizeof p.event_id, run->cause->event_id);
        str_copy(p.payment_id, sizeof p.payment_id, ids[0]);
        str_copy(p.currency, sizeof p.currency, m->currency ? m->currency : "");
        bool done;
        if ((rc = payment_settle_alone(run, &p, &done)))
            return rc;
        if (done)
            return fact_add(run, id, ids, n_ids, m);
    }
    if ((rc = fact_add(run, id, ids, n_ids, m)) || (rc = unmatched_log(run, ids[n_ids - 1])))
        return rc;
    rc = n_ids == 1 ? clients_settle(run, ids[0], NULL) : clients_settle(run, NULL, ids[0]);
    return rc ? rc : fact_posted(run, n_ids == 1 ? Q_PAYMENT_POSTED : Q_REFUND_POSTED);
}

/* Pays what is due through through_ms, per currency; a payout_id seen before does nothing. */
/* What a payout pays, per currency: collected from Q_DUE rows. */
typedef struct due {
    run_t *run;
    const char *rep;
    postings_t postings;
} due_t;

static int due_row(sqlite3_stmt *s, void *arg)
{
    due_t *d = arg;
    char currency[4];
    col_copy(s, 0, currency, sizeof currency);
    __int128 later =
        (__int128)sqlite3_column_int64(s, 2) * ((__int128)1 << 32) + sqlite3_column_int64(s, 3);
    __int128 due = -(__int128)sqlite3_column_int64(s, 1) - later;
    /* Nothing due, or the rep owes (clawbacks after a payout): carried forward. */
    if (due <= 0)
        return 0;
    if (due > INT64_MAX)
        return funnel_router_refuse(d->run->router, FUNNEL_REFUSE_OVERFLOW,
                                    "ledger: what %s is owed in %s through through_ms does not "
                                    "fit in int64; pay through an earlier time first",
                                    d->rep, currency);
    return target_add(&d->postings, d->run->cause->event_id, KIND_PAYOUT, ROLE_NONE, d->rep,
                      currency, (int64_t)due, 0, d->run->cause->occurred_at_ms);
}

static int on_paid(run_t *run, const Funnel__V1__CommissionPaid *p)
{
    funnel_ledger_t *lg = run->lg;
    sqlite3_stmt *s = q(lg, Q_PAYOUT_ADD);
    bind_text(s, 1, p->payout_id);
    bind_text(s, 2, run->cause->event_id);
    bind_text(s, 3, p->rep);
    sqlite3_bind_int64(s, 4, p->through_ms);
    sqlite3_bind_int64(s, 5, run->cause->occurred_at_ms);
    int rc = fact_insert(lg, s);
    if (rc)
        return rc;
    if (sqlite3_changes(lg->db) == 0) {
        funnel_log_info(lg->log, "ledger: payout %s was already made; nothing paid", p->payout_id);
        return 0;
    }
    due_t due = {.run = run, .rep = p->rep};
    s = q(lg, Q_DUE);
    bind_text(s, 1, p->rep);
    sqlite3_bind_int64(s, 2, p->through_ms);
    rc = rows_each(s, due_row, &due);
    run->client_id = "";
    for (size_t i = 0; i < due.postings.n && !rc; i++)
        rc = post(run, &due.postings.v[i]);
    free(due.postings.v);
    return rc;
}

/* Applies one input event. */
static int ledger_apply(run_t *run, const funnel_envelope_t *env)
{
    switch (env->body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF:
        return on_handoff(run, env->client_handed_off);
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED: {
        const Funnel__V1__PaymentReceived *p = env->payment_received;
        const char *ids[] = {p->payment_id};
        /* The codec guarantees an amount; a hand-built envelope without one earns nothing. */
        return p->amount ? money_fact(run, Q_PAYMENT_ADD, ids, 1, p->client_id, p->amount) : 0;
    }
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED: {
        const Funnel__V1__PaymentRefunded *r = env->payment_refunded;
        const char *ids[] = {r->refund_id, r->payment_id};
        return r->amount ? money_fact(run, Q_REFUND_ADD, ids, 2, r->client_id, r->amount) : 0;
    }
    case FUNNEL__V1__ENVELOPE__BODY_COMMISSION_PAID:
        return on_paid(run, env->commission_paid);
    default:
        return 0;
    }
}

int funnel_ledger_on_event(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                           int64_t now_ms)
{
    run_t run = {.lg = self, .router = router, .cause = env, .client_id = "", .now_ms = now_ms};
    int rc = ledger_apply(&run, env);
    if (!rc)
        rc = run_flush(&run);
    run_free(&run);
    return rc;
}

/* ---- life cycle ------------------------------------------------------------------------- */

static int stmt_prepare(funnel_ledger_t *lg, const char *sql, sqlite3_stmt **out, char *err,
                        size_t err_len)
{
    if (sqlite3_prepare_v3(lg->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) == SQLITE_OK)
        return 0;
    snprintf(err, err_len, "ledger: cannot prepare %s: %s", sql, sqlite3_errmsg(lg->db));
    return FUNNEL_ESTORE;
}

/* Prepares the statement of rs that writes k rows. */
static int rows_prepare(funnel_ledger_t *lg, const struct rows_sql *rs, int k, sqlite3_stmt **out,
                        char *err, size_t err_len)
{
    char sql[1024];
    int len = snprintf(sql, sizeof sql, "%s", rs->head);
    for (int i = 0; i < k && len > 0 && (size_t)len < sizeof sql; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, "%s%s", i ? ", " : "", rs->row);
    if (len > 0 && (size_t)len < sizeof sql)
        len += snprintf(sql + len, sizeof sql - (size_t)len, "%s", rs->tail);
    if (len <= 0 || (size_t)len >= sizeof sql) {
        snprintf(err, err_len, "ledger: a statement of %d rows is longer than %zu bytes", k,
                 sizeof sql);
        return FUNNEL_ESTORE;
    }
    return stmt_prepare(lg, sql, out, err, err_len);
}

int funnel_ledger_new(funnel_store_t *store, const funnel_commission_config_t *plan,
                      const funnel_log_t *log, funnel_ledger_t **out, char *err, size_t err_len)
{
    *out = NULL;
    int rc = funnel_store_migrate_module(store, "ledger", ledger_steps, LEDGER_STEPS, err, err_len);
    if (rc)
        return rc;
    funnel_ledger_t *lg = calloc(1, sizeof *lg);
    if (!lg) {
        snprintf(err, err_len, "out of memory");
        return FUNNEL_ENOMEM;
    }
    lg->store = store;
    lg->db = funnel_store_db(store);
    lg->plan = plan;
    lg->log = log;
    for (int i = 0; i < Q_COUNT_; i++)
        if ((rc = stmt_prepare(lg, stmt_sql[i], &lg->stmt[i], err, err_len)))
            goto fail;
    for (int i = 0; i < R_COUNT_; i++)
        for (int k = 1; k <= ROWS_MAX; k++)
            if ((rc = rows_prepare(lg, &rows_sql[i], k, &lg->rows[i][k - 1], err, err_len)))
                goto fail;
    *out = lg;
    return 0;
fail:
    funnel_ledger_destroy(&lg);
    return rc;
}

void funnel_ledger_destroy(funnel_ledger_t **ledger)
{
    if (!ledger || !*ledger)
        return;
    for (int i = 0; i < Q_COUNT_; i++)
        sqlite3_finalize((*ledger)->stmt[i]);
    for (int i = 0; i < R_COUNT_; i++)
        for (int k = 0; k < ROWS_MAX; k++)
            sqlite3_finalize((*ledger)->rows[i][k]);
    free(*ledger);
    *ledger = NULL;
}

int funnel_ledger_engine_create(funnel_store_t *store, const void *section, const funnel_log_t *log,
                                funnel_engine_t *engine)
{
    char err[512];
    funnel_ledger_t *lg;
    int rc = funnel_ledger_new(store, section, log, &lg, err, sizeof err);
    if (rc) {
        funnel_log_error(log, "%s", err);
        return rc;
    }
    *engine = (funnel_engine_t){.name = "ledger", .self = lg, .on_event = funnel_ledger_on_event};
    return 0;
}

void funnel_ledger_engine_destroy(void *self)
{
    funnel_ledger_t *lg = self;
    funnel_ledger_destroy(&lg);
}
