/* attribution.c — the attribution engine: journeys in SQLite, credits through the outbox.
 *
 * Every event that can change a payment's credits (see attribution.h) stores its facts, then
 * "settles" each payment it affects: the wanted lines are computed from the stored facts alone
 * and compared with the sums already posted; a difference is posted as reversals plus the new
 * lines. Because the wanted lines depend only on the set of stored facts, arrival order cannot
 * change the final credits, and a batch retried after a rollback posts the same rows with the
 * same posting ids (hence the same event_ids). */
#include "attribution.h"
#include "funnel/grow.h"
#include "funnel/error.h"
#include "funnel/money.h"
#include "funnel/uuid.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_CREDITED "attribution.credited"
#define DAY_MS         86400000LL
#define PPM            1000000

/* The nine models' columns of attr_posts, in the order of funnel_attribution_model_t: c<k> the
 * credit, w<k> the weight in parts per million. Spelled out for the schema's SQL text. */
#define MODEL_COLUMNS(p)                                                                           \
#p "0 INTEGER, " #p "1 INTEGER, " #p "2 INTEGER, " #p "3 INTEGER, " #p "4 INTEGER, " #p        \
       "5 INTEGER, " #p "6 INTEGER, " #p "7 INTEGER, " #p "8 INTEGER"
#define MODEL_NAMES(p)                                                                             \
#p "0, " #p "1, " #p "2, " #p "3, " #p "4, " #p "5, " #p "6, " #p "7, " #p "8"
#define MODEL_PIVOT1(f, col, name) #f "(CASE model WHEN '" name "' THEN " #col " END)"
#define MODEL_PIVOT(f, col)                                                                                                                \
    MODEL_PIVOT1(f, col, "first_touch")                                                                                                    \
    ", " MODEL_PIVOT1(f, col, "last_touch") ", " MODEL_PIVOT1(f, col, "linear") ", " MODEL_PIVOT1(f, col, "u_shaped") ", " MODEL_PIVOT1(   \
        f, col,                                                                                                                            \
        "w_shaped") ", " MODEL_PIVOT1(f, col,                                                                                              \
                                      "full_path") ", " MODEL_PIVOT1(f, col,                                                               \
                                                                     "time_decay") ","                                                     \
                                                                                   " " MODEL_PIVOT1(f, col, "j_shaped") ", " MODEL_PIVOT1( \
                                                                                       f, col,                                             \
                                                                                       "inverse_"                                          \
                                                                                       "j")
#define MODEL_ROWS                                                                                 \
    "(0, 'first_touch'), (1, 'last_touch'), (2, 'linear'), (3, 'u_shaped'), (4, 'w_shaped'),"      \
    " (5, 'full_path'), (6, 'time_decay'), (7, 'j_shaped'), (8, 'inverse_j')"
#define MODEL_CASE(p)                                                                              \
    "CASE m.k WHEN 0 THEN p." #p "0 WHEN 1 THEN p." #p "1 WHEN 2 THEN p." #p "2 WHEN 3 THEN p." #p \
    "3 WHEN 4 THEN p." #p "4 WHEN 5 THEN p." #p "5 WHEN 6 THEN p." #p "6 WHEN 7 THEN p." #p        \
    "7 WHEN 8 THEN p." #p "8 END"

/* Adds a row's nine credits to the day sum it falls on (SQLite's + turns REAL on overflow). */
#define SUMS_ADD                                                                                   \
    "c0 = c0 + excluded.c0, c1 = c1 + excluded.c1, c2 = c2 + excluded.c2,"                         \
    " c3 = c3 + excluded.c3, c4 = c4 + excluded.c4, c5 = c5 + excluded.c5,"                        \
    " c6 = c6 + excluded.c6, c7 = c7 + excluded.c7, c8 = c8 + excluded.c8"

/* Schema steps of module "attribution"; never edit one that has shipped. */
static const char *const schema[] = {
    /* 1 */
    "CREATE TABLE attr_touches ("
    "  touch_id TEXT PRIMARY KEY, lead_id TEXT NOT NULL, at_ms INTEGER NOT NULL,"
    "  channel TEXT NOT NULL, source TEXT NOT NULL, medium TEXT NOT NULL,"
    "  campaign TEXT NOT NULL);"
    "CREATE INDEX attr_touches_by_lead ON attr_touches(lead_id, at_ms, touch_id);"
    "CREATE TABLE attr_leads (lead_id TEXT PRIMARY KEY, created_at_ms INTEGER,"
    "  sql_at_ms INTEGER);"
    "CREATE TABLE attr_handoffs (client_id TEXT NOT NULL, event_id TEXT NOT NULL,"
    "  lead_id TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (client_id, event_id));"
    "CREATE INDEX attr_handoffs_by_lead ON attr_handoffs(lead_id);"
    "CREATE TABLE attr_payments (payment_id TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
    "  client_id TEXT NOT NULL, minor INTEGER NOT NULL, currency TEXT NOT NULL,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE INDEX attr_payments_by_client ON attr_payments(client_id, at_ms);"
    "CREATE TABLE attr_refunds (refund_id TEXT PRIMARY KEY, event_id TEXT NOT NULL,"
    "  payment_id TEXT NOT NULL, minor INTEGER NOT NULL, currency TEXT NOT NULL,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE INDEX attr_refunds_by_payment ON attr_refunds(payment_id);"
    "CREATE TABLE attr_postings (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  payment_id TEXT NOT NULL, refund_id TEXT NOT NULL, model TEXT NOT NULL,"
    "  line_key TEXT NOT NULL, client_id TEXT NOT NULL, lead_id TEXT NOT NULL,"
    "  campaign TEXT NOT NULL, source TEXT NOT NULL, medium TEXT NOT NULL,"
    "  channel TEXT NOT NULL, touch_at_ms INTEGER NOT NULL, currency TEXT NOT NULL,"
    "  credit INTEGER NOT NULL, weight_ppm INTEGER NOT NULL, reversal INTEGER NOT NULL,"
    "  at_ms INTEGER NOT NULL, cause_event_id TEXT NOT NULL);"
    "CREATE INDEX attr_postings_by_payment ON attr_postings(payment_id, model, refund_id,"
    "  line_key);"
    "CREATE INDEX attr_postings_by_time ON attr_postings(at_ms);",
    /* 2: touches and leads are looked up only by their text keys, so a rowid table plus a
     * primary-key index was two B-tree writes per row where one does (measured on ingest). */
    "CREATE TABLE attr_touches_new ("
    "  touch_id TEXT PRIMARY KEY, lead_id TEXT NOT NULL, at_ms INTEGER NOT NULL,"
    "  channel TEXT NOT NULL, source TEXT NOT NULL, medium TEXT NOT NULL,"
    "  campaign TEXT NOT NULL) WITHOUT ROWID;"
    "INSERT INTO attr_touches_new SELECT * FROM attr_touches;"
    "DROP TABLE attr_touches;"
    "ALTER TABLE attr_touches_new RENAME TO attr_touches;"
    "CREATE INDEX attr_touches_by_lead ON attr_touches(lead_id, at_ms);"
    "CREATE TABLE attr_leads_new (lead_id TEXT PRIMARY KEY, created_at_ms INTEGER,"
    "  sql_at_ms INTEGER) WITHOUT ROWID;"
    "INSERT INTO attr_leads_new SELECT * FROM attr_leads;"
    "DROP TABLE attr_leads;"
    "ALTER TABLE attr_leads_new RENAME TO attr_leads;",
    /* 3: a line's touch columns (key, lead, campaign, source, medium, channel, time) were
     * repeated on every posting of it, nine models times every re-post: they are stored once
     * in attr_lines and a posting names its line. attr_postings stays as a view with the old
     * columns for the readers (funnelctl attribution). Posting ids carry over, and with them
     * the AUTOINCREMENT sequence behind the credits' event_ids. */
    "CREATE TABLE attr_lines (id INTEGER PRIMARY KEY, line_key TEXT NOT NULL,"
    "  lead_id TEXT NOT NULL, campaign TEXT NOT NULL, source TEXT NOT NULL,"
    "  medium TEXT NOT NULL, channel TEXT NOT NULL, touch_at_ms INTEGER NOT NULL,"
    "  UNIQUE (line_key, lead_id, campaign, source, medium, channel, touch_at_ms));"
    "INSERT INTO attr_lines (line_key, lead_id, campaign, source, medium, channel, touch_at_ms)"
    "  SELECT DISTINCT line_key, lead_id, campaign, source, medium, channel, touch_at_ms"
    "  FROM attr_postings;"
    "CREATE TABLE attr_credits (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  payment_id TEXT NOT NULL, refund_id TEXT NOT NULL, model TEXT NOT NULL,"
    "  line_id INTEGER NOT NULL REFERENCES attr_lines(id), client_id TEXT NOT NULL,"
    "  currency TEXT NOT NULL, credit INTEGER NOT NULL, weight_ppm INTEGER NOT NULL,"
    "  reversal INTEGER NOT NULL, at_ms INTEGER NOT NULL, cause_event_id TEXT NOT NULL);"
    "INSERT INTO attr_credits SELECT p.id, p.payment_id, p.refund_id, p.model, l.id,"
    "  p.client_id, p.currency, p.credit, p.weight_ppm, p.reversal, p.at_ms, p.cause_event_id"
    "  FROM attr_postings p JOIN attr_lines l USING (line_key, lead_id, campaign, source,"
    "  medium, channel, touch_at_ms) ORDER BY p.id;"
    "DELETE FROM sqlite_sequence WHERE name = 'attr_credits';"
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'attr_credits', seq FROM sqlite_sequence"
    "  WHERE name = 'attr_postings';"
    "DROP TABLE attr_postings;"
    "CREATE INDEX attr_credits_by_payment ON attr_credits(payment_id, model, refund_id,"
    "  line_id);"
    "CREATE INDEX attr_credits_by_time ON attr_credits(at_ms);"
    "CREATE VIEW attr_postings AS SELECT c.id, c.payment_id, c.refund_id, c.model,"
    "  l.line_key, c.client_id, l.lead_id, l.campaign, l.source, l.medium, l.channel,"
    "  l.touch_at_ms, c.currency, c.credit, c.weight_ppm, c.reversal, c.at_ms,"
    "  c.cause_event_id FROM attr_credits c JOIN attr_lines l ON l.id = c.line_id;",
    /* 4: one row per (entry, line) of a settlement with the nine models' credits and weights as
     * columns (NULL: the model posted nothing there), instead of one row per model: 9x fewer
     * rows and index entries, rows appended in order of posting. The posting ids behind the
     * credits' event_ids (the old AUTOINCREMENT sequence) carry on in attr_counter; the
     * attr_postings view keeps the old shape (its id orders the credits of one model and entry
     * as before). Same credits, same reports. */
    "CREATE TABLE attr_posts (id INTEGER PRIMARY KEY, payment_id TEXT NOT NULL,"
    "  refund_id TEXT NOT NULL, line_id INTEGER NOT NULL, client_id TEXT NOT NULL,"
    "  currency TEXT NOT NULL, reversal INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
    "  cause_event_id TEXT NOT NULL, " MODEL_COLUMNS(c) ", " MODEL_COLUMNS(
        w) ");"
           "INSERT INTO attr_posts (payment_id, refund_id, line_id, client_id, currency, reversal,"
           "  at_ms, cause_event_id, " MODEL_NAMES(c) ", " MODEL_NAMES(
               w) ")"
                  "  SELECT payment_id, refund_id, line_id, client_id, currency, reversal, at_ms,"
                  "  cause_event_id, " MODEL_PIVOT(sum, credit) ", " MODEL_PIVOT(
                      max, weight_ppm) "  FROM attr_credits GROUP BY payment_id, refund_id, "
                                       "line_id, client_id, currency, reversal,"
                                       "  at_ms, cause_event_id ORDER BY min(id);"
                                       "CREATE TABLE attr_counter (id INTEGER PRIMARY KEY CHECK "
                                       "(id = 1), last INTEGER NOT NULL);"
                                       "INSERT INTO attr_counter SELECT 1, max(coalesce((SELECT "
                                       "seq FROM sqlite_sequence"
                                       "  WHERE name = 'attr_credits'), 0), coalesce((SELECT "
                                       "max(id) FROM attr_credits), 0));"
                                       "DROP VIEW attr_postings;"
                                       "DROP TABLE attr_credits;"
                                       "CREATE INDEX attr_posts_by_payment ON "
                                       "attr_posts(payment_id);"
                                       "CREATE INDEX attr_posts_by_time ON attr_posts(at_ms);"
                                       "CREATE TABLE attr_models (k INTEGER PRIMARY KEY, name TEXT "
                                       "NOT NULL);"
                                       "INSERT INTO attr_models VALUES " MODEL_ROWS ";"
                                       "CREATE VIEW attr_postings AS SELECT * FROM (SELECT p.id * "
                                       "16 + m.k AS id, p.payment_id,"
                                       "  p.refund_id, m.name AS model, l.line_key, p.client_id, "
                                       "l.lead_id, l.campaign, l.source,"
                                       "  l.medium, l.channel, l.touch_at_ms, "
                                       "p.currency, " MODEL_CASE(c) " AS credit, " MODEL_CASE(
                                           w) " AS weight_ppm, p.reversal, p.at_ms, "
                                              "p.cause_event_id"
                                              "  FROM attr_posts p JOIN attr_lines l ON l.id = "
                                              "p.line_id CROSS JOIN attr_models m)"
                                              "  WHERE credit IS NOT NULL;",
    /* 5: touches were the largest state left (150 B per event at 20k leads): a row named its
     * four touch columns as text, a touch_id key and a by-lead index. Now one B-tree keyed the
     * way journeys read it, the touch columns once per distinct set in attr_tags, and new
     * touch ids of the common UUID form as 16 bytes (touch_id_pack; older rows stay text). */
    "CREATE TABLE attr_tags (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
    "  source TEXT NOT NULL, medium TEXT NOT NULL, campaign TEXT NOT NULL,"
    "  UNIQUE (channel, source, medium, campaign));"
    "INSERT INTO attr_tags (channel, source, medium, campaign)"
    "  SELECT DISTINCT channel, source, medium, campaign FROM attr_touches;"
    "CREATE TABLE attr_touches_new (lead_id TEXT NOT NULL, at_ms INTEGER NOT NULL,"
    "  touch_id NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (lead_id, at_ms, touch_id))"
    "  WITHOUT ROWID;"
    "INSERT INTO attr_touches_new SELECT t.lead_id, t.at_ms, t.touch_id, g.id"
    "  FROM attr_touches t JOIN attr_tags g USING (channel, source, medium, campaign);"
    "DROP TABLE attr_touches;"
    "ALTER TABLE attr_touches_new RENAME TO attr_touches;",
    /* 6: the report of a long period read every posting of it (955 ms for all time at 1M
     * leads). The credits are also summed per (day, tags, currency) in the transaction that
     * posts them; the report adds whole days. Sums do not depend on the order of the posts. A
     * sum past int64 becomes REAL in SQLite's addition: the report then reads the postings.
     * The tags of the unattributed line join attr_tags here. */
    "CREATE TABLE attr_sums (day INTEGER NOT NULL, tag_id INTEGER NOT NULL,"
    "  currency TEXT NOT NULL, " MODEL_COLUMNS(
        c) ", PRIMARY KEY (day, tag_id, currency))"
           "  WITHOUT ROWID;"
           "INSERT OR IGNORE INTO attr_tags (channel, source, medium, campaign)"
           "  SELECT DISTINCT channel, source, medium, campaign FROM attr_lines;"
           "INSERT INTO attr_sums SELECT CASE WHEN p.at_ms >= 0 THEN p.at_ms / 86400000"
           "  ELSE -((-(p.at_ms + 1)) / 86400000) - 1 END, g.id, p.currency, coalesce(p.c0, 0),"
           "  coalesce(p.c1, 0), coalesce(p.c2, 0), coalesce(p.c3, 0), coalesce(p.c4, 0),"
           "  coalesce(p.c5, 0), coalesce(p.c6, 0), coalesce(p.c7, 0), coalesce(p.c8, 0)"
           "  FROM attr_posts p JOIN attr_lines l ON l.id = p.line_id JOIN attr_tags g"
           "  ON g.channel = l.channel AND g.source = l.source AND g.medium = l.medium"
           "  AND g.campaign = l.campaign WHERE true ON CONFLICT DO UPDATE SET " SUMS_ADD ";",
    /* 7: a commit wrote about one page per row for every B-tree a batch inserts into at a
     * random place (a lead's, client's or payment's key), and those were most of the engine's
     * pages late in a year. Touches are keyed by their span of 16 UTC days first: a batch's
     * touches land on the pages of their span, and a journey reads its window span by span
     * (7 seeks for 90 days). Shorter spans wrote a little fewer pages but cost more seeks:
     * 4-day spans took 24 seeks, 136 us a journey read at 1M leads, read for nearly every
     * payment there (54k clients outnumber the kept journeys), 15 us per event in the last
     * fifth; one-day spans 91. A touch's time is kept as the milliseconds into its span (under
     * 2^31): 4 bytes, not 6, pay for the span's 2.
     * The ids of a
     * payment's posts, appended in runs by each settlement, are listed in its row
     * ("first:count,..."), so attr_posts needs no index by payment. (The payment row stays in
     * a rowid table, appended at its end: one wide row keyed by payment id cost more pages
     * than the narrow index of the ids.) */
    "CREATE TABLE attr_touches_new (span INTEGER NOT NULL, lead_id TEXT NOT NULL,"
    "  ms INTEGER NOT NULL, touch_id NOT NULL, tag_id INTEGER NOT NULL,"
    "  PRIMARY KEY (span, lead_id, ms, touch_id)) WITHOUT ROWID;"
    "INSERT INTO attr_touches_new SELECT span, lead_id, at_ms - span * 1382400000, touch_id,"
    "  tag_id FROM (SELECT CASE WHEN at_ms >= 0 THEN at_ms / 1382400000"
    "  ELSE -((-(at_ms + 1)) / 1382400000) - 1 END AS span, * FROM attr_touches);"
    "DROP TABLE attr_touches;"
    "ALTER TABLE attr_touches_new RENAME TO attr_touches;"
    "ALTER TABLE attr_payments ADD COLUMN posts TEXT NOT NULL DEFAULT '';"
    "UPDATE attr_payments SET posts = r.posts FROM (SELECT payment_id,"
    "  group_concat(first || ':' || n, ',') AS posts FROM (SELECT payment_id, min(id) AS first,"
    "  count(*) AS n FROM (SELECT payment_id, id, id - row_number() OVER (PARTITION BY"
    "  payment_id ORDER BY id) AS run FROM attr_posts) GROUP BY payment_id, run"
    "  ORDER BY payment_id, first) GROUP BY payment_id) r"
    "  WHERE r.payment_id = attr_payments.payment_id;"
    "DROP INDEX IF EXISTS attr_posts_by_payment;",
};

enum stmt_id {
    S_TOUCH_ADD,
    S_TAG_GET,
    S_TAG_ADD,
    S_LEAD_CREATED,
    S_LEAD_SQL,
    S_HANDOFF_ADD,
    S_PAYMENT_ADD,
    S_REFUND_ADD,
    S_REFUND_PAYMENT,
    S_CLIENTS_OF_LEAD,
    S_PAYMENTS_OF_CLIENT,
    S_HANDOFF_GET,
    S_LEAD_GET,
    S_TOUCHES_GET,
    S_PAYMENT_GET,
    S_PAYMENT_POSTED,
    S_REFUNDS_GET,
    S_POSTS_GET,
    S_ROW_ADD,
    S_COUNTER_GET,
    S_COUNTER_SET,
    S_LINE_GET,
    S_LINE_ADD,
    S_SUM_ADD,
    S_HANDOFF_LEADS,
    S_REFUND_PAYMENTS,
    S_COUNT_
};

/* Earliest (at_ms, event_id) wins for a repeated payment or refund id: an order-free rule. */
static const char *const stmt_sql[S_COUNT_] = {
    [S_TOUCH_ADD] = "INSERT INTO attr_touches VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
    [S_TAG_GET] = "SELECT id FROM attr_tags WHERE channel = ? AND source = ? AND medium = ? AND"
                  " campaign = ?",
    [S_TAG_ADD] = "INSERT INTO attr_tags (channel, source, medium, campaign) VALUES (?,?,?,?)",
    [S_LEAD_CREATED] = "INSERT INTO attr_leads(lead_id, created_at_ms) VALUES (?1, ?2) "
                       "ON CONFLICT(lead_id) DO UPDATE SET created_at_ms = ?2 "
                       "WHERE created_at_ms IS NULL OR ?2 < created_at_ms",
    [S_LEAD_SQL] = "INSERT INTO attr_leads(lead_id, sql_at_ms) VALUES (?1, ?2) "
                   "ON CONFLICT(lead_id) DO UPDATE SET sql_at_ms = ?2 "
                   "WHERE sql_at_ms IS NULL OR ?2 < sql_at_ms",
    [S_HANDOFF_ADD] = "INSERT INTO attr_handoffs VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
    [S_PAYMENT_ADD] = "INSERT INTO attr_payments (payment_id, event_id, client_id, minor,"
                      " currency, at_ms) VALUES (?1,?2,?3,?4,?5,?6) "
                      "ON CONFLICT(payment_id) DO UPDATE SET event_id = ?2, client_id = ?3, "
                      "minor = ?4, currency = ?5, at_ms = ?6 WHERE (?6, ?2) < (at_ms, event_id)",
    [S_REFUND_ADD] = "INSERT INTO attr_refunds VALUES (?1,?2,?3,?4,?5,?6) "
                     "ON CONFLICT(refund_id) DO UPDATE SET event_id = ?2, payment_id = ?3, "
                     "minor = ?4, currency = ?5, at_ms = ?6 WHERE (?6, ?2) < (at_ms, event_id)",
    [S_REFUND_PAYMENT] = "SELECT payment_id FROM attr_refunds WHERE refund_id = ?",
    [S_CLIENTS_OF_LEAD] = "SELECT DISTINCT client_id FROM attr_handoffs WHERE lead_id = ? "
                          "ORDER BY client_id",
    [S_PAYMENTS_OF_CLIENT] = "SELECT payment_id FROM attr_payments WHERE client_id = ? "
                             "ORDER BY at_ms, payment_id",
    [S_HANDOFF_GET] = "SELECT lead_id, at_ms FROM attr_handoffs WHERE client_id = ? "
                      "ORDER BY at_ms, event_id LIMIT 1",
    [S_LEAD_GET] = "SELECT created_at_ms, sql_at_ms FROM attr_leads WHERE lead_id = ?",
    /* The lead's touches in [?4, ?5], one seek per span ?2..?3 of it, in time order; touch_ids
     * of one time are put in order after decoding (journey_touches). */
    [S_TOUCHES_GET] = "WITH RECURSIVE d(span) AS (SELECT ?2 UNION ALL SELECT span + 1 FROM d"
                      " WHERE span < ?3) SELECT t.touch_id, t.span * 1382400000 + t.ms AS at_ms,"
                      " g.channel, g.source, g.medium, g.campaign FROM d CROSS JOIN"
                      " attr_touches t JOIN attr_tags g ON g.id = t.tag_id WHERE t.span = d.span"
                      " AND t.lead_id = ?1 AND at_ms BETWEEN ?4 AND ?5 ORDER BY at_ms",
    [S_PAYMENT_GET] = "SELECT client_id, minor, currency, at_ms, posts FROM attr_payments "
                      "WHERE payment_id = ?",
    /* Appends a run of post ids "first:count" to the payment's list (schema 7). */
    [S_PAYMENT_POSTED] = "UPDATE attr_payments SET posts = CASE posts WHEN '' THEN ?2"
                         " ELSE posts || ',' || ?2 END WHERE payment_id = ?1",
    [S_REFUNDS_GET] = "SELECT refund_id, minor, at_ms FROM attr_refunds "
                      "WHERE payment_id = ? AND currency = ? ORDER BY at_ms, refund_id",
    /* One run of the ids of a payment's posts (its row lists them all), read once per
     * settlement that is not the first: the sums per model and entry are taken in memory
     * (posted_read, refunds_posted). */
    [S_POSTS_GET] =
        "SELECT p.refund_id, l.line_key, p.currency, l.lead_id, l.campaign, l.source,"
        " l.medium, l.channel, p.client_id, l.touch_at_ms, p.line_id, p.at_ms, " MODEL_NAMES(
            p.c) ", " MODEL_NAMES(p.w) " FROM attr_posts p JOIN attr_lines l ON l.id = p.line_id"
                                       " WHERE p.id BETWEEN ? AND ?",
    [S_ROW_ADD] = "INSERT INTO attr_posts (payment_id, refund_id, line_id, client_id, currency,"
                  " reversal, at_ms, cause_event_id, " MODEL_NAMES(c) ", " MODEL_NAMES(
                      w) ")"
                         " VALUES (?,?,?,?,?,?,?,?, ?,?,?,?,?,?,?,?,?, ?,?,?,?,?,?,?,?,?)",
    [S_COUNTER_GET] = "SELECT last FROM attr_counter",
    [S_COUNTER_SET] = "UPDATE attr_counter SET last = ?",
    [S_LINE_GET] = "SELECT id FROM attr_lines WHERE line_key = ? AND lead_id = ? AND"
                   " campaign = ? AND source = ? AND medium = ? AND channel = ? AND"
                   " touch_at_ms = ?",
    [S_LINE_ADD] = "INSERT INTO attr_lines(line_key, lead_id, campaign, source, medium, channel,"
                   " touch_at_ms) VALUES (?,?,?,?,?,?,?)",
    [S_SUM_ADD] = "INSERT INTO attr_sums VALUES (?,?,?, ?,?,?,?,?,?,?,?,?)"
                  " ON CONFLICT DO UPDATE SET " SUMS_ADD,
    [S_HANDOFF_LEADS] = "SELECT lead_id FROM attr_handoffs",
    [S_REFUND_PAYMENTS] = "SELECT payment_id FROM attr_refunds",
};

/* Kept journeys, one slot per hash of the client id (a newer journey takes the slot): bounds
 * them to this many, about 2 KB each. A client's next payment comes a month later, after every
 * other paying client's: with 54,000 clients (1M leads a year) 16,384 slots kept almost none
 * of them (a journey read, ~60 us, per payment); 65,536 keep about half (RSS 345 -> 410 MB at
 * 1M leads, last fifth 78.7 -> 65.3 us per event). Kept tags likewise, by hash of their four
 * columns. */
#define JOURNEY_SLOTS 65536
#define TAG_SLOTS     1024
/* Bits of an id filter (128 KiB): under 1% false hits with 50,000 ids. */
#define FILTER_BITS (1u << 20)

typedef struct kept_journey kept_journey_t;
typedef struct kept_tag kept_tag_t;

struct funnel_attribution {
    funnel_store_t *store;                  /* borrowed */
    const funnel_attribution_config_t *cfg; /* borrowed; the live section */
    const funnel_log_t *log;                /* borrowed */
    sqlite3_stmt *st[S_COUNT_];
    kept_journey_t **kept; /* JOURNEY_SLOTS, each NULL or a journey (journey_get) */
    kept_tag_t **tags;     /* TAG_SLOTS, each NULL or an attr_tags row (tag_of) */
    /* Id filters (filter_has): the leads with a handoff, the payments with a refund. */
    uint64_t *handoff_leads, *refunded;
};

/* One line of credit: a journey touch, the unattributed bucket, or a line already posted. */
typedef struct line {
    const char *key; /* touch id or FUNNEL_ATTR_UNATTRIBUTED */
    const char *lead_id, *campaign, *source, *medium, *channel;
    const char *currency, *client_id; /* posted lines only */
    int64_t touch_at_ms;
    int64_t line_id;    /* its row in attr_lines */
    int64_t sum;        /* posted lines: what has been credited so far */
    int32_t weight_ppm; /* posted lines: as last posted */
    int64_t at_ms;      /* posted lines: the time of the entry they were posted under */
    char *mem;          /* owns the strings above, except lead_id of journey touches */
} line_t;

/* A client's journey with every configured model's weights. */
typedef struct journey {
    char lead_id[FUNNEL_ID_MAX + 1]; /* "" when no handoff is known */
    line_t *lines;                   /* n touches, or the one unattributed line */
    size_t n;
    uint64_t *weights[FUNNEL_ATTR_MODEL_COUNT_]; /* n each, for configured models */
    int64_t *ppm[FUNNEL_ATTR_MODEL_COUNT_];      /* n each, summing to PPM */
} journey_t;

typedef struct payment {
    char id[FUNNEL_ID_MAX + 1];
    char client_id[FUNNEL_ID_MAX + 1];
    char currency[8];
    int64_t minor;
    int64_t at_ms;
    char *posts; /* the runs of its posts' ids, "first:count,..."; NULL when none */
} payment_t;

typedef struct refund {
    char id[FUNNEL_ID_MAX + 1];
    int64_t minor;
    int64_t at_ms;
} refund_t;

/* A touch named by the credits of an outgoing message; its strings are copies. */
typedef struct out_touch {
    Funnel__V1__AttributionTouch pb;
    char *mem; /* owns the strings of pb */
} out_touch_t;

/* A run of an outgoing message: consecutive credits of one model, direction, currency and
 * client (see AttributionRun in the proto), with the storage its pointers name once
 * published. */
typedef struct out_run {
    Funnel__V1__AttributionRun pb;
    uint32_t *touch;
    int64_t *minor;
    int32_t *ppm;
    size_t n, cap;
    char currency[8];                  /* "" when it is the message's */
    char client_id[FUNNEL_ID_MAX + 1]; /* "" when it is the message's */
} out_run_t;

/* One attribution.credited message being gathered: the credits of one entry (the payment or one
 * refund) under every model, published when the payment is settled. */
typedef struct out_msg {
    char refund_id[FUNNEL_ID_MAX + 1];
    int64_t at_ms;    /* the entry's event time */
    int64_t first_id; /* posting id of its first credit: the message's event_id */
    out_touch_t *touches;
    size_t n_touches, cap_touches;
    out_run_t *runs;
    size_t n_runs, cap_runs;
} out_msg_t;

/* A stored attr_posts row of the payment being settled: one line of one entry with what each
 * model posted on it. */
typedef struct stored {
    line_t line; /* key, lead, touch columns, currency, client; line.mem owns the strings */
    const char *refund_id;
    int64_t at_ms;
    unsigned has; /* bit m: the model m posted credit[m] at weight[m] here */
    int64_t credit[FUNNEL_ATTR_MODEL_COUNT_];
    int32_t weight[FUNNEL_ATTR_MODEL_COUNT_];
} stored_t;

/* One credit posted by the settlement under way; rows are written when it ends (rows_write). */
typedef struct post {
    char refund_id[FUNNEL_ID_MAX + 1];
    int64_t at_ms;
    line_t line; /* borrows its strings from the journey or the stored rows */
    size_t pos;  /* wanted lines: the index in the journey */
    const char *client_id, *currency;
    funnel_attribution_model_t model;
    int64_t credit;
    int32_t weight_ppm;
    bool reversal;
} post_t;

/* One event's pass through the engine. */
typedef struct run {
    funnel_attribution_t *a;
    funnel_router_t *router;
    const funnel_envelope_t *cause;
    int64_t now_ms;
    const funnel_attribution_config_t *cfg;
    out_msg_t *out; /* the messages of the payment being settled */
    size_t n_out, cap_out;
    stored_t *stored; /* what was posted for the payment before this settlement (none for a new
                         payment, the usual case, which then reads nothing back) */
    size_t n_stored, cap_stored;
    post_t *posts; /* what this settlement posts, in the order of the posting ids */
    size_t n_posts, cap_posts;
    int64_t last_id; /* the last posting id given out */
} run_t;

/* Where a set of lines is posted: one payment, model and entry (the payment or a refund). */
typedef struct entry {
    const payment_t *pay;
    funnel_attribution_model_t model;
    const char *refund_id; /* "" for the payment itself */
    int64_t at_ms;         /* event time of the entry */
} entry_t;

/* A list of ids read from one statement, so no cursor stays open while others write. */
typedef struct id_list {
    char (*ids)[FUNNEL_ID_MAX + 1];
    size_t n, cap;
} id_list_t;

/* ---- statement helpers --------------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    return funnel_grow(arr, cap, need, elem, 16);
}

/* Resets statement id and binds fmt's arguments to ?1.. ('s' text, 'i' int64). */
static sqlite3_stmt *stmt_bind(funnel_attribution_t *a, enum stmt_id id, const char *fmt, ...)
{
    sqlite3_stmt *st = a->st[id];
    va_list ap;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    va_start(ap, fmt);
    for (int i = 1; fmt[i - 1]; i++) {
        if (fmt[i - 1] == 's') {
            const char *s = va_arg(ap, const char *);
            sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
        }
    }
    va_end(ap);
    return st;
}

/* Steps a statement that returns no rows. */
static int stmt_run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* The end of a read loop: SQLITE_DONE is success, anything else a store error. */
static int stmt_done(sqlite3_stmt *st, int step_rc)
{
    sqlite3_reset(st);
    return step_rc == SQLITE_DONE || step_rc == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
}

static const char *col_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? (const char *)t : "";
}

static void copy_id(char *dst, const char *src)
{
    snprintf(dst, FUNNEL_ID_MAX + 1, "%s", src ? src : "");
}

/* Reads column 0 of every row of st into list. */
static int id_list_read(sqlite3_stmt *st, id_list_t *list)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&list->ids, &list->cap, list->n + 1, sizeof *list->ids)) {
            sqlite3_reset(st);
            return FUNNEL_ENOMEM;
        }
        copy_id(list->ids[list->n++], col_text(st, 0));
    }
    return stmt_done(st, rc);
}

/* Copies text[0..n) into one allocation (*mem) and points *out[i] at each copy. */
static int strings_copy(const char *const *text, const char **const *out, size_t n, char **mem)
{
    size_t len[12], total = 0;
    for (size_t i = 0; i < n; i++)
        total += (len[i] = strlen(text[i])) + 1;
    char *p = malloc(total);
    if (!p)
        return FUNNEL_ENOMEM;
    *mem = p;
    for (size_t i = 0; i < n; i++) {
        memcpy(p, text[i], len[i] + 1);
        *out[i] = p;
        p += len[i] + 1;
    }
    return 0;
}

/* Copies the text of columns cols[0..n) of st's current row: see strings_copy. */
static int row_strings(sqlite3_stmt *st, const int *cols, const char **const *out, size_t n,
                       char **mem)
{
    const char *text[12];
    for (size_t i = 0; i < n; i++)
        text[i] = col_text(st, cols[i]);
    return strings_copy(text, out, n, mem);
}

/* The touches' key: spans of 16 UTC days since 1970 (schema 7). */
#define TOUCH_SPAN_MS (16 * DAY_MS)

/* The period of `len` ms a time falls in, rounded down also before 1970 (as schema steps 6
 * and 7). */
static int64_t period_of(int64_t at_ms, int64_t len)
{
    return at_ms / len - (at_ms % len < 0);
}

static int64_t day_of(int64_t at_ms)
{
    return period_of(at_ms, DAY_MS);
}

/* ---- touch ids ------------------------------------------------------------------------- */

/* A touch id that starts with a lowercase UUID (every event id funnel's adapters make, and
 * "<event_id>#<index>") is stored as its 16 bytes and the rest of the id: 40 bytes become 18.
 * Any other id stays text. *len is the size of out; false when the id stays text. */
static bool touch_id_pack(const char *id, unsigned char *out, size_t *len)
{
    size_t n = strlen(id);
    if (n < FUNNEL_UUID_TEXT || n - FUNNEL_UUID_TEXT > FUNNEL_ID_MAX || !funnel_uuid_pack(id, out))
        return false;
    memcpy(out + FUNNEL_UUID_BYTES, id + FUNNEL_UUID_TEXT, n - FUNNEL_UUID_TEXT);
    *len = FUNNEL_UUID_BYTES + n - FUNNEL_UUID_TEXT;
    return true;
}

/* The text of a stored touch id (column col of st) into out, FUNNEL_ID_MAX + 32 bytes. */
static void touch_id_read(sqlite3_stmt *st, int col, char *out)
{
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    const unsigned char *b = sqlite3_column_blob(st, col);
    if (sqlite3_column_type(st, col) != SQLITE_BLOB || n < FUNNEL_UUID_BYTES) {
        snprintf(out, FUNNEL_ID_MAX + 32, "%s", col_text(st, col));
        return;
    }
    funnel_uuid_text(b, out);
    n -= FUNNEL_UUID_BYTES;
    if (n > FUNNEL_ID_MAX)
        n = FUNNEL_ID_MAX;
    memcpy(out + FUNNEL_UUID_TEXT, b + FUNNEL_UUID_BYTES, n);
    out[FUNNEL_UUID_TEXT + n] = '\0';
}

static void lines_free(line_t *lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i].mem);
    free(lines);
}

/* ---- journeys ------------------------------------------------------------------------ */

static void journey_clear(journey_t *j)
{
    lines_free(j->lines, j->n);
    for (int m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++) {
        free(j->weights[m]);
        free(j->ppm[m]);
    }
    memset(j, 0, sizeof *j);
}

/* Reads the journey's touches in [from, to] into j->lines. */
static int journey_touches(run_t *r, journey_t *j, int64_t from, int64_t to)
{
    sqlite3_stmt *st =
        stmt_bind(r->a, S_TOUCHES_GET, "siiii", j->lead_id, period_of(from, TOUCH_SPAN_MS),
                  period_of(to, TOUCH_SPAN_MS), from, to);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&j->lines, &cap, j->n + 1, sizeof *j->lines)) {
            sqlite3_reset(st);
            return FUNNEL_ENOMEM;
        }
        line_t *l = &j->lines[j->n];
        memset(l, 0, sizeof *l);
        char key[FUNNEL_ID_MAX + 32];
        touch_id_read(st, 0, key);
        const char *text[] = {key, col_text(st, 2), col_text(st, 3), col_text(st, 4),
                              col_text(st, 5)};
        const char **const out[] = {&l->key, &l->channel, &l->source, &l->medium, &l->campaign};
        if (strings_copy(text, out, 5, &l->mem)) {
            sqlite3_reset(st);
            return FUNNEL_ENOMEM;
        }
        l->lead_id = j->lead_id;
        l->touch_at_ms = sqlite3_column_int64(st, 1);
        j->n++;
    }
    /* Rows come in time order; ids of one time are ordered as text, which packed ids are not. */
    for (size_t i = 1; i < j->n; i++)
        for (size_t k = i; k > 0 && j->lines[k - 1].touch_at_ms == j->lines[k].touch_at_ms &&
                           strcmp(j->lines[k - 1].key, j->lines[k].key) > 0;
             k--) {
            line_t t = j->lines[k];
            j->lines[k] = j->lines[k - 1];
            j->lines[k - 1] = t;
        }
    return stmt_done(st, rc);
}

/* The journey as one unattributed line: no handoff, or no touch in the lookback window. */
static int journey_unattributed(journey_t *j)
{
    if (!(j->lines = calloc(1, sizeof *j->lines)))
        return FUNNEL_ENOMEM;
    line_t *l = &j->lines[0];
    l->key = l->campaign = l->source = l->medium = l->channel = FUNNEL_ATTR_UNATTRIBUTED;
    l->lead_id = j->lead_id;
    j->n = 1;
    return 0;
}

/* Fills every configured model's weights and parts per million. */
static int journey_weigh(run_t *r, journey_t *j, const funnel_attribution_journey_t *mj)
{
    for (unsigned m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++) {
        if (!(r->cfg->models & (1u << m)))
            continue;
        j->weights[m] = malloc(j->n * sizeof *j->weights[m]);
        j->ppm[m] = malloc(j->n * sizeof *j->ppm[m]);
        if (!j->weights[m] || !j->ppm[m])
            return FUNNEL_ENOMEM;
        int rc = funnel_attribution_weights(m, mj, j->weights[m]);
        if (!rc)
            rc = funnel_money_split(PPM, j->weights[m], j->n, j->ppm[m]);
        if (rc)
            return rc;
    }
    return 0;
}

/* Finds or adds the attr_lines row of each journey line, which its postings name. */
static int journey_line_ids(run_t *r, journey_t *j)
{
    for (size_t i = 0; i < j->n; i++) {
        line_t *l = &j->lines[i];
        const char *cols = "ssssssi";
        sqlite3_stmt *st = stmt_bind(r->a, S_LINE_GET, cols, l->key, l->lead_id, l->campaign,
                                     l->source, l->medium, l->channel, l->touch_at_ms);
        int rc = sqlite3_step(st);
        l->line_id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        if ((rc = stmt_done(st, rc)))
            return rc;
        if (l->line_id)
            continue;
        if (stmt_run(stmt_bind(r->a, S_LINE_ADD, cols, l->key, l->lead_id, l->campaign, l->source,
                               l->medium, l->channel, l->touch_at_ms)))
            return FUNNEL_ESTORE;
        l->line_id = sqlite3_last_insert_rowid(funnel_store_db(r->a->store));
    }
    return 0;
}

/* Loads the client's journey (see attribution.h for what belongs to it). */
static int journey_load(run_t *r, const char *client_id, journey_t *j)
{
    funnel_attribution_journey_t mj = {.half_life_ms = r->cfg->half_life_days * DAY_MS};
    int64_t *times = NULL;
    memset(j, 0, sizeof *j);
    sqlite3_stmt *st = stmt_bind(r->a, S_HANDOFF_GET, "s", client_id);
    int rc = sqlite3_step(st);
    int64_t handoff_at = 0;
    if (rc == SQLITE_ROW) {
        copy_id(j->lead_id, col_text(st, 0));
        handoff_at = sqlite3_column_int64(st, 1);
    }
    if ((rc = stmt_done(st, rc)))
        return rc;
    if (j->lead_id[0]) {
        st = stmt_bind(r->a, S_LEAD_GET, "s", j->lead_id);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            mj.has_created = sqlite3_column_type(st, 0) != SQLITE_NULL;
            mj.created_at_ms = sqlite3_column_int64(st, 0);
            mj.has_sql = sqlite3_column_type(st, 1) != SQLITE_NULL;
            mj.sql_at_ms = sqlite3_column_int64(st, 1);
        }
        if ((rc = stmt_done(st, rc)) ||
            (rc = journey_touches(r, j, handoff_at - r->cfg->lookback_days * DAY_MS, handoff_at)))
            return rc;
    }
    if (j->n == 0 && (rc = journey_unattributed(j)))
        return rc;
    if ((rc = journey_line_ids(r, j)))
        return rc;
    if (!(times = malloc(j->n * sizeof *times)))
        return FUNNEL_ENOMEM;
    for (size_t i = 0; i < j->n; i++)
        times[i] = j->lines[i].touch_at_ms;
    mj.touch_at_ms = times;
    mj.n = j->n;
    rc = journey_weigh(r, j, &mj);
    free(times);
    return rc;
}

/* ---- kept journeys ----------------------------------------------------------------------
 *
 * A client's journey is read for each of its payments, and monthly payments are most of a
 * year's late events; nothing a payment or refund does changes it. So it is kept in memory:
 * every event that can change a journey (a touch, lead.created, an SQL qualification of its
 * lead, a handoff of its client) settles the client through client_recompute, which reads the
 * journey afresh and keeps that; a rolled-back transaction drops them all (its attr_lines ids
 * and the facts read may be gone); a kept journey read under another configuration is read
 * again. */

struct kept_journey {
    char client_id[FUNNEL_ID_MAX + 1]; /* "" while not valid */
    funnel_attribution_config_t cfg;   /* the configuration it was read under */
    journey_t j;                       /* lines point into j.lead_id: never moved */
};

/* A hash (FNV-1a) of text[0..n), each with its terminator, modulo slots. */
static size_t kept_slot(const char *const *text, size_t n, size_t slots)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)text[i];
        do
            h = (h ^ *p) * 1099511628211ULL;
        while (*p++);
    }
    return (size_t)(h % slots);
}

/* ---- id filters --------------------------------------------------------------------------
 *
 * Most touches are of leads without a client and most payments have no refund: looking for
 * them costs a statement per event. A filter holds a bit per hash of every id that has one;
 * a clear bit means none, a set bit means look. Bits are set when a row is stored and never
 * cleared: a rolled-back row leaves a bit that only costs a look. Filled from the tables when
 * the engine starts. */

/* The bit of id (NULL reads as "", as stmt_bind binds it). */
static size_t filter_bit(const char *id)
{
    const char *text = id ? id : "";
    return kept_slot(&text, 1, FILTER_BITS);
}

static void filter_add(uint64_t *f, const char *id)
{
    size_t b = filter_bit(id);
    f[b / 64] |= 1ull << (b % 64);
}

static bool filter_has(const uint64_t *f, const char *id)
{
    size_t b = filter_bit(id);
    return f[b / 64] >> (b % 64) & 1;
}

/* A new filter of every id in column 0 of statement id. */
static int filter_fill(funnel_attribution_t *a, enum stmt_id id, uint64_t **out)
{
    uint64_t *f = calloc(FILTER_BITS / 64, sizeof *f);
    if (!(*out = f))
        return FUNNEL_ENOMEM;
    sqlite3_stmt *st = a->st[id];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        filter_add(f, col_text(st, 0));
    return stmt_done(st, rc);
}

static bool config_same(const funnel_attribution_config_t *x, const funnel_attribution_config_t *y)
{
    return x->models == y->models && x->lookback_days == y->lookback_days &&
           x->half_life_days == y->half_life_days;
}

/* Forgets every kept journey and tag: after a rollback, what they name may be gone. */
static void kept_drop_all(funnel_attribution_t *a)
{
    for (size_t i = 0; a->kept && i < JOURNEY_SLOTS; i++) {
        if (a->kept[i])
            journey_clear(&a->kept[i]->j);
        free(a->kept[i]);
        a->kept[i] = NULL;
    }
    for (size_t i = 0; a->tags && i < TAG_SLOTS; i++) {
        free(a->tags[i]);
        a->tags[i] = NULL;
    }
}

/* The client's journey: the kept one unless `fresh` (the event may have changed it) or it was
 * read under another configuration, else read and kept. Valid until the next journey_get. */
static int journey_get(run_t *r, const char *client_id, bool fresh, const journey_t **out)
{
    funnel_attribution_t *a = r->a;
    if (!a->kept && !(a->kept = calloc(JOURNEY_SLOTS, sizeof *a->kept)))
        return FUNNEL_ENOMEM;
    kept_journey_t **slot = &a->kept[kept_slot(&client_id, 1, JOURNEY_SLOTS)];
    kept_journey_t *k = *slot;
    if (!fresh && k && !strcmp(k->client_id, client_id) && config_same(&k->cfg, r->cfg)) {
        *out = &k->j;
        return 0;
    }
    if (!k && !(k = *slot = calloc(1, sizeof *k)))
        return FUNNEL_ENOMEM;
    journey_clear(&k->j);
    k->client_id[0] = '\0';
    int rc = journey_load(r, client_id, &k->j);
    if (rc) {
        journey_clear(&k->j);
        return rc;
    }
    copy_id(k->client_id, client_id);
    k->cfg = *r->cfg;
    *out = &k->j;
    return 0;
}

/* ---- outgoing messages ----------------------------------------------------------------- */

static void out_msg_clear(out_msg_t *m)
{
    for (size_t i = 0; i < m->n_touches; i++)
        free(m->touches[i].mem);
    free(m->touches);
    for (size_t i = 0; i < m->n_runs; i++) {
        free(m->runs[i].touch);
        free(m->runs[i].minor);
        free(m->runs[i].ppm);
    }
    free(m->runs);
    memset(m, 0, sizeof *m);
}

static void out_clear(run_t *r)
{
    for (size_t i = 0; i < r->n_out; i++)
        out_msg_clear(&r->out[i]);
    r->n_out = 0;
}

/* The message gathering entry e's credits, added after the others when new. */
static out_msg_t *out_msg_of(run_t *r, const entry_t *e, int64_t posting_id)
{
    for (size_t i = 0; i < r->n_out; i++)
        if (!strcmp(r->out[i].refund_id, e->refund_id) && r->out[i].at_ms == e->at_ms)
            return &r->out[i];
    if (grow((void **)&r->out, &r->cap_out, r->n_out + 1, sizeof *r->out))
        return NULL;
    out_msg_t *m = &r->out[r->n_out++];
    memset(m, 0, sizeof *m);
    copy_id(m->refund_id, e->refund_id);
    m->at_ms = e->at_ms;
    m->first_id = posting_id;
    return m;
}

static bool str_eq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

/* The index of line l's touch in m, added when new; -1 when out of memory. lead_id is left
 * empty when it is the journey's (the message's). */
static long out_touch_of(out_msg_t *m, const line_t *l, const char *touch_id, const char *lead_id)
{
    for (size_t i = 0; i < m->n_touches; i++) {
        const Funnel__V1__AttributionTouch *t = &m->touches[i].pb;
        if (str_eq(t->touch_id, touch_id) && t->touch_at_ms == l->touch_at_ms &&
            str_eq(t->campaign, l->campaign) && str_eq(t->source, l->source) &&
            str_eq(t->medium, l->medium) && str_eq(t->channel, l->channel) &&
            str_eq(t->lead_id, lead_id))
            return (long)i;
    }
    if (grow((void **)&m->touches, &m->cap_touches, m->n_touches + 1, sizeof *m->touches))
        return -1;
    const char *src[] = {touch_id, l->campaign, l->source, l->medium, l->channel, lead_id};
    size_t len[6], total = 0;
    for (int k = 0; k < 6; k++)
        total += (len[k] = strlen(src[k] ? src[k] : "")) + 1;
    char *p = malloc(total);
    if (!p)
        return -1;
    out_touch_t *t = &m->touches[m->n_touches];
    funnel__v1__attribution_touch__init(&t->pb);
    t->mem = p;
    char **dst[] = {&t->pb.touch_id, &t->pb.campaign, &t->pb.source,
                    &t->pb.medium,   &t->pb.channel,  &t->pb.lead_id};
    for (int k = 0; k < 6; k++) {
        memcpy(p, src[k] ? src[k] : "", len[k] + 1);
        *dst[k] = p;
        p += len[k] + 1;
    }
    t->pb.touch_at_ms = l->touch_at_ms;
    return (long)m->n_touches++;
}

/* The run of m that a credit of model, direction, currency and client ("" when the message's)
 * joins: the last one when it matches, else a new one; NULL when out of memory. */
static out_run_t *out_run_of(out_msg_t *m, funnel_attribution_model_t model, bool reversal,
                             const char *currency, const char *client_id)
{
    out_run_t *u = m->n_runs ? &m->runs[m->n_runs - 1] : NULL;
    if (u && u->pb.model == (Funnel__V1__AttributionModel)model && u->pb.reversal == reversal &&
        !strcmp(u->currency, currency) && !strcmp(u->client_id, client_id))
        return u;
    if (grow((void **)&m->runs, &m->cap_runs, m->n_runs + 1, sizeof *m->runs))
        return NULL;
    u = &m->runs[m->n_runs++];
    memset(u, 0, sizeof *u);
    funnel__v1__attribution_run__init(&u->pb);
    u->pb.model = (Funnel__V1__AttributionModel)model;
    u->pb.reversal = reversal;
    snprintf(u->currency, sizeof u->currency, "%s", currency);
    copy_id(u->client_id, client_id);
    return u;
}

/* Room for one more credit in each of u's lists. */
static int out_run_reserve(out_run_t *u)
{
    if (u->n < u->cap)
        return 0;
    size_t cap = u->cap ? 2 * u->cap : 8;
    uint32_t *touch = realloc(u->touch, cap * sizeof *touch);
    if (touch)
        u->touch = touch;
    int64_t *minor = realloc(u->minor, cap * sizeof *minor);
    if (minor)
        u->minor = minor;
    int32_t *ppm = realloc(u->ppm, cap * sizeof *ppm);
    if (ppm)
        u->ppm = ppm;
    if (!touch || !minor || !ppm)
        return FUNNEL_ENOMEM;
    u->cap = cap;
    return 0;
}

/* Adds one credit to the message of its entry. */
static int out_add(run_t *r, const entry_t *e, const line_t *l, const char *client_id,
                   const char *journey_lead, const char *currency, int64_t credit, int64_t ppm,
                   bool reversal, int64_t posting_id)
{
    out_msg_t *m = out_msg_of(r, e, posting_id);
    if (!m)
        return FUNNEL_ENOMEM;
    const char *touch_id = strcmp(l->key, FUNNEL_ATTR_UNATTRIBUTED) ? l->key : "";
    long t = out_touch_of(m, l, touch_id, str_eq(l->lead_id, journey_lead) ? "" : l->lead_id);
    out_run_t *u = t < 0 ? NULL
                         : out_run_of(m, e->model, reversal,
                                      strcmp(currency, e->pay->currency) ? currency : "",
                                      strcmp(client_id, e->pay->client_id) ? client_id : "");
    if (!u || out_run_reserve(u))
        return FUNNEL_ENOMEM;
    u->touch[u->n] = (uint32_t)t;
    u->minor[u->n] = credit;
    u->ppm[u->n++] = (int32_t)ppm;
    return 0;
}

/* Journey order (time, then id), whatever model named a touch first. */
static int out_touch_cmp(const Funnel__V1__AttributionTouch *a,
                         const Funnel__V1__AttributionTouch *b)
{
    if (a->touch_at_ms != b->touch_at_ms)
        return a->touch_at_ms < b->touch_at_ms ? -1 : 1;
    int c = strcmp(a->touch_id, b->touch_id);
    c = c ? c : strcmp(a->lead_id, b->lead_id);
    c = c ? c : strcmp(a->campaign, b->campaign);
    c = c ? c : strcmp(a->source, b->source);
    c = c ? c : strcmp(a->medium, b->medium);
    return c ? c : strcmp(a->channel, b->channel);
}

/* Lists m's touches in journey order and renumbers the credits' touches: most runs then name
 * touch k at credit k and need no touch list. */
static int out_touches_sort(out_msg_t *m)
{
    size_t n = m->n_touches;
    uint32_t *rank = malloc((n ? n : 1) * sizeof *rank);
    out_touch_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!rank || !sorted) {
        free(rank);
        free(sorted);
        return FUNNEL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) { /* insertion: a message names a handful of touches */
        size_t k = i;
        for (; k > 0 && out_touch_cmp(&m->touches[i].pb, &sorted[k - 1].pb) < 0; k--)
            sorted[k] = sorted[k - 1];
        sorted[k] = m->touches[i];
    }
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < n; i++)
            if (sorted[k].mem == m->touches[i].mem)
                rank[i] = (uint32_t)k;
    for (size_t r = 0; r < m->n_runs; r++)
        for (size_t c = 0; c < m->runs[r].n; c++)
            m->runs[r].touch[c] = rank[m->runs[r].touch[c]];
    memcpy(m->touches, sorted, n * sizeof *sorted);
    free(sorted);
    free(rank);
    return 0;
}

/* Points the runs' protobuf fields at their storage; the touch list is left out when credit k
 * names touch k. */
static Funnel__V1__AttributionRun **out_runs_pack(out_msg_t *m)
{
    if (out_touches_sort(m))
        return NULL;
    Funnel__V1__AttributionRun **runs = malloc((m->n_runs ? m->n_runs : 1) * sizeof *runs);
    for (size_t i = 0; runs && i < m->n_runs; i++) {
        out_run_t *u = &m->runs[i];
        bool in_order = true;
        for (size_t c = 0; c < u->n; c++)
            in_order = in_order && u->touch[c] == c;
        u->pb.n_touch = in_order ? 0 : u->n;
        u->pb.touch = u->touch;
        u->pb.n_minor = u->pb.n_weight_ppm = u->n;
        u->pb.minor = u->minor;
        u->pb.weight_ppm = u->ppm;
        u->pb.currency = u->currency;
        u->pb.client_id = u->client_id;
        runs[i] = &u->pb;
    }
    return runs;
}

/* Publishes the gathered messages of payment pay, whose journey is j, and forgets them. */
static int out_flush(run_t *r, const payment_t *pay, const journey_t *j)
{
    int rc = 0;
    for (size_t k = 0; !rc && k < r->n_out; k++) {
        out_msg_t *m = &r->out[k];
        Funnel__V1__AttributionRun **runs = out_runs_pack(m);
        Funnel__V1__AttributionTouch **touches = malloc(m->n_touches * sizeof *touches);
        if (!runs || !touches) {
            free(runs);
            free(touches);
            rc = FUNNEL_ENOMEM;
            break;
        }
        for (size_t i = 0; i < m->n_touches; i++)
            touches[i] = &m->touches[i].pb;
        char event_id[40];
        snprintf(event_id, sizeof event_id, "attribution-%lld", (long long)m->first_id);
        Funnel__V1__AttributionCredited body = FUNNEL__V1__ATTRIBUTION_CREDITED__INIT;
        body.payment_id = (char *)pay->id;
        body.client_id = (char *)pay->client_id;
        body.lead_id = (char *)j->lead_id;
        body.refund_id = m->refund_id;
        body.cause_event_id = r->cause->event_id;
        body.n_touches = m->n_touches;
        body.touches = touches;
        body.currency = (char *)pay->currency;
        body.n_runs = m->n_runs;
        body.runs = runs;
        funnel_envelope_t env = FUNNEL__V1__ENVELOPE__INIT;
        env.event_id = event_id;
        env.occurred_at_ms = m->at_ms;
        env.source = (char *)"funneld";
        env.body_case = FUNNEL__V1__ENVELOPE__BODY_ATTRIBUTION_CREDITED;
        env.attribution_credited = &body;
        rc = funnel_router_emit(r->router, TOPIC_CREDITED, &env, r->now_ms);
        free(runs);
        free(touches);
    }
    out_clear(r);
    return rc;
}

/* ---- posting ------------------------------------------------------------------------- */

/* Records one credit line under the next posting id; it is stored with the settlement's rows
 * (rows_write) and goes out with the payment's message for its entry (out_flush). journey_lead
 * is the lead of the journey being settled; pos orders wanted lines (their journey index). */
static int post_line(run_t *r, const entry_t *e, const line_t *l, size_t pos, const char *client_id,
                     const char *journey_lead, const char *currency, int64_t credit, int64_t ppm,
                     bool reversal)
{
    if (grow((void **)&r->posts, &r->cap_posts, r->n_posts + 1, sizeof *r->posts))
        return FUNNEL_ENOMEM;
    post_t *p = &r->posts[r->n_posts++];
    copy_id(p->refund_id, e->refund_id);
    p->at_ms = e->at_ms;
    p->line = *l;
    p->line.mem = NULL;
    p->pos = pos;
    p->client_id = client_id;
    p->currency = currency;
    p->model = e->model;
    p->credit = credit;
    p->weight_ppm = (int32_t)ppm;
    p->reversal = reversal;
    return out_add(r, e, l, client_id, journey_lead, currency, credit, ppm, reversal, ++r->last_id);
}

/* Orders posted lines as the old per-model query did: key, currency, client, lead, weight. */
static int posted_cmp(const void *pa, const void *pb)
{
    const line_t *x = pa, *y = pb;
    int c = strcmp(x->key, y->key);
    c = c ? c : strcmp(x->currency, y->currency);
    c = c ? c : strcmp(x->client_id, y->client_id);
    c = c ? c : strcmp(x->lead_id, y->lead_id);
    c = c ? c : (x->weight_ppm > y->weight_ppm) - (x->weight_ppm < y->weight_ppm);
    c = c ? c : (x->at_ms > y->at_ms) - (x->at_ms < y->at_ms);
    return c ? c : (x->line_id > y->line_id) - (x->line_id < y->line_id);
}

/* The lines an entry holds under its model: the stored credits summed per line, currency,
 * client and weight, those not zero, sorted by posted_cmp. They borrow the stored strings. */
static int posted_read(run_t *r, const entry_t *e, line_t **out, size_t *n_out)
{
    line_t *lines = NULL;
    size_t n = 0, cap = 0;
    for (size_t k = 0; k < r->n_stored; k++) {
        const stored_t *s = &r->stored[k];
        if (!(s->has & (1u << e->model)) || strcmp(s->refund_id, e->refund_id))
            continue;
        size_t i = 0;
        while (i < n &&
               !(lines[i].line_id == s->line.line_id &&
                 lines[i].weight_ppm == s->weight[e->model] && lines[i].at_ms == s->at_ms &&
                 !strcmp(lines[i].currency, s->line.currency) &&
                 !strcmp(lines[i].client_id, s->line.client_id)))
            i++;
        if (i == n) {
            if (grow((void **)&lines, &cap, n + 1, sizeof *lines)) {
                free(lines);
                return FUNNEL_ENOMEM;
            }
            lines[n] = s->line;
            lines[n].mem = NULL;
            lines[n].sum = 0;
            lines[n].at_ms = s->at_ms;
            lines[n++].weight_ppm = s->weight[e->model];
        }
        lines[i].sum += s->credit[e->model];
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (lines[i].sum)
            lines[kept++] = lines[i];
    if (kept)
        qsort(lines, kept, sizeof *lines, posted_cmp);
    *out = lines;
    *n_out = kept;
    return 0;
}

/* The posted line for (key, currency), or NULL. */
static const line_t *posted_find(const line_t *posted, size_t n, const char *key,
                                 const char *currency)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(posted[mid].key, key);
        if (!c)
            c = strcmp(posted[mid].currency, currency);
        if (!c)
            return &posted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Makes the posted lines of an entry equal to want[0..j->n) (zeros mean no line). When they
 * already are, nothing is posted; otherwise every posted line is reversed exactly and the
 * wanted lines are posted afresh, so a subscriber can follow the change line by line. */
static int entry_settle(run_t *r, const entry_t *e, const journey_t *j, const int64_t *want)
{
    line_t *posted = NULL;
    size_t n_posted = 0, n_want = 0;
    bool same = true;
    int rc = posted_read(r, e, &posted, &n_posted);
    if (rc)
        return rc;
    for (size_t i = 0; i < j->n; i++) {
        if (!want[i])
            continue;
        n_want++;
        const line_t *p = posted_find(posted, n_posted, j->lines[i].key, e->pay->currency);
        /* The client, lead and weight are part of a line: a payment moved to another client
         * (an earlier duplicate payment_id) must re-post even when the amounts match. */
        same = same && p && p->sum == want[i] && !strcmp(p->client_id, e->pay->client_id) &&
               !strcmp(p->lead_id, j->lines[i].lead_id) && p->weight_ppm == j->ppm[e->model][i] &&
               p->at_ms == e->at_ms;
    }
    same = same && n_want == n_posted;
    /* A reversal is dated like the line it reverses: an earlier duplicate of the payment or
     * refund moves the entry in time, and the credits of each day must not depend on which
     * of the two came first. */
    for (size_t i = 0; !same && !rc && i < n_posted; i++) {
        entry_t back = *e;
        back.at_ms = posted[i].at_ms;
        rc = post_line(r, &back, &posted[i], 0, posted[i].client_id, j->lead_id, posted[i].currency,
                       -posted[i].sum, posted[i].weight_ppm, true);
    }
    for (size_t i = 0; !same && !rc && i < j->n; i++)
        if (want[i])
            rc = post_line(r, e, &j->lines[i], i, e->pay->client_id, j->lead_id, e->pay->currency,
                           want[i], j->ppm[e->model][i], false);
    lines_free(posted, n_posted);
    return rc;
}

static int refunds_read(run_t *r, const payment_t *pay, refund_t **out, size_t *n_out)
{
    refund_t *list = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *n_out = 0;
    if (!filter_has(r->a->refunded, pay->id))
        return 0;
    sqlite3_stmt *st = stmt_bind(r->a, S_REFUNDS_GET, "ss", pay->id, pay->currency);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&list, &cap, n + 1, sizeof *list)) {
            sqlite3_reset(st);
            free(list);
            return FUNNEL_ENOMEM;
        }
        copy_id(list[n].id, col_text(st, 0));
        list[n].minor = sqlite3_column_int64(st, 1);
        list[n].at_ms = sqlite3_column_int64(st, 2);
        n++;
    }
    *out = list;
    *n_out = n;
    return stmt_done(st, rc);
}

static bool refund_attached(const refund_t *refunds, size_t n, const char *refund_id)
{
    for (size_t k = 0; k < n; k++)
        if (!strcmp(refunds[k].id, refund_id))
            return true;
    return false;
}

/* A refund entry a payment holds credits for, dated at its latest posting. */
typedef struct stale {
    const char *id; /* borrowed from the stored rows */
    int64_t at_ms;
} stale_t;

static int stale_cmp(const void *a, const void *b)
{
    return strcmp(((const stale_t *)a)->id, ((const stale_t *)b)->id);
}

/* Reverses the credits of refund entries this payment and model still hold although the
 * refund no longer belongs to it (moved to another payment by an earlier duplicate
 * refund_id, or in another currency than the payment now has). Walking only the attached
 * refunds would leave those credits standing and make the result depend on arrival order.
 * The reversal is dated like the entry it reverses. zeros holds j->n words. */
static int stale_refunds_settle(run_t *r, const journey_t *j, const payment_t *pay,
                                funnel_attribution_model_t m, const refund_t *refunds,
                                size_t n_refunds, int64_t *zeros)
{
    stale_t *stale = NULL;
    size_t n = 0, cap = 0;
    for (size_t k = 0; k < r->n_stored; k++) {
        const stored_t *s = &r->stored[k];
        if (!(s->has & (1u << m)) || !s->refund_id[0] ||
            refund_attached(refunds, n_refunds, s->refund_id))
            continue;
        size_t i = 0;
        while (i < n && strcmp(stale[i].id, s->refund_id))
            i++;
        if (i == n) {
            if (grow((void **)&stale, &cap, n + 1, sizeof *stale)) {
                free(stale);
                return FUNNEL_ENOMEM;
            }
            stale[n++] = (stale_t){s->refund_id, s->at_ms};
        }
        if (s->at_ms > stale[i].at_ms)
            stale[i].at_ms = s->at_ms;
    }
    if (n)
        qsort(stale, n, sizeof *stale, stale_cmp);
    memset(zeros, 0, j->n * sizeof *zeros);
    int rc = 0;
    for (size_t k = 0; !rc && k < n; k++) {
        entry_t e = {.pay = pay, .model = m, .refund_id = stale[k].id, .at_ms = stale[k].at_ms};
        rc = entry_settle(r, &e, j, zeros);
    }
    free(stale);
    return rc;
}

/* One model's entries for a payment: the payment's credits, then each refund's change of the
 * net (see attribution.h, "Money"). scratch holds 5 * j->n words. */
static int model_settle(run_t *r, const journey_t *j, const payment_t *pay,
                        funnel_attribution_model_t m, const refund_t *refunds, size_t n_refunds,
                        int64_t *scratch)
{
    size_t n = j->n;
    int64_t *credit = scratch, *prev = scratch + n, *net = scratch + 2 * n, *want = scratch + 3 * n;
    uint64_t *shares = (uint64_t *)(scratch + 4 * n);
    entry_t e = {.pay = pay, .model = m, .refund_id = "", .at_ms = pay->at_ms};
    int rc = funnel_money_split(pay->minor, j->weights[m], n, credit);
    if (rc || (rc = entry_settle(r, &e, j, credit)))
        return rc;
    /* The payment's credits are non-negative and sum to it: they weigh what remains. */
    for (size_t i = 0; i < n; i++)
        shares[i] = (uint64_t)credit[i];
    memcpy(net, credit, n * sizeof *net);
    int64_t refunded = 0;
    for (size_t k = 0; k < n_refunds; k++) {
        int64_t left = pay->minor - refunded;
        refunded += refunds[k].minor < left ? refunds[k].minor : left;
        memcpy(prev, net, n * sizeof *prev);
        if (refunded == pay->minor)
            memset(net, 0, n * sizeof *net);
        else if ((rc = funnel_money_split(pay->minor - refunded, shares, n, net)))
            return rc;
        for (size_t i = 0; i < n; i++)
            want[i] = net[i] - prev[i];
        e.refund_id = refunds[k].id;
        e.at_ms = refunds[k].at_ms;
        if ((rc = entry_settle(r, &e, j, want)))
            return rc;
    }
    return stale_refunds_settle(r, j, pay, m, refunds, n_refunds, want);
}

/* ---- the settlement's rows ----------------------------------------------------------- */

static void stored_clear(run_t *r)
{
    for (size_t k = 0; k < r->n_stored; k++)
        free(r->stored[k].line.mem);
    r->n_stored = 0;
}

/* Reads the posts of ids first..last into r->stored. */
static int stored_run_load(run_t *r, int64_t first, int64_t last)
{
    sqlite3_stmt *st = stmt_bind(r->a, S_POSTS_GET, "ii", first, last);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&r->stored, &r->cap_stored, r->n_stored + 1, sizeof *r->stored))
            goto nomem;
        stored_t *s = &r->stored[r->n_stored];
        memset(s, 0, sizeof *s);
        line_t *l = &s->line;
        static const int cols[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
        const char **const out_s[] = {&s->refund_id, &l->key,      &l->currency,
                                      &l->lead_id,   &l->campaign, &l->source,
                                      &l->medium,    &l->channel,  &l->client_id};
        if (row_strings(st, cols, out_s, 9, &l->mem))
            goto nomem;
        r->n_stored++;
        l->touch_at_ms = sqlite3_column_int64(st, 9);
        l->line_id = sqlite3_column_int64(st, 10);
        s->at_ms = sqlite3_column_int64(st, 11);
        for (unsigned m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++) {
            if (sqlite3_column_type(st, 12 + (int)m) == SQLITE_NULL)
                continue;
            s->has |= 1u << m;
            s->credit[m] = sqlite3_column_int64(st, 12 + (int)m);
            s->weight[m] = sqlite3_column_int(st, 12 + FUNNEL_ATTR_MODEL_COUNT_ + (int)m);
        }
    }
    return stmt_done(st, rc);
nomem:
    sqlite3_reset(st);
    return FUNNEL_ENOMEM;
}

/* Reads every row posted for the payment into r->stored: each run of ids its row lists. A
 * list that does not parse is a damaged database: refused loudly, never read as empty. */
static int stored_load(run_t *r, const payment_t *pay)
{
    for (const char *p = pay->posts; p && *p;) {
        char *end;
        long long first = strtoll(p, &end, 10), n = *end == ':' ? strtoll(end + 1, &end, 10) : 0;
        if (n < 1 || (*end && *end != ',')) {
            funnel_log_error(r->a->log, "attribution: payment %s: bad post list '%s'", pay->id,
                             pay->posts);
            return FUNNEL_EINVAL;
        }
        int rc = stored_run_load(r, first, first + n - 1);
        if (rc)
            return rc;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* One attr_posts row being built: the posts of one entry, line, client, currency and
 * direction, at most one per model. */
typedef struct row {
    const post_t *p; /* the first post of the row: entry, line, client, currency */
    size_t entry;    /* the index of the entry's message: the order entries were posted in */
    unsigned has;
    int64_t credit[FUNNEL_ATTR_MODEL_COUNT_];
    int32_t weight[FUNNEL_ATTR_MODEL_COUNT_];
} row_t;

/* Rows in an order that lists every model's credits of an entry in the order they were
 * posted: reversals (by key, currency, client, lead) before wanted lines (journey order). */
static int row_cmp(const void *pa, const void *pb)
{
    const row_t *x = pa, *y = pb;
    const post_t *a = x->p, *b = y->p;
    if (x->entry != y->entry)
        return x->entry < y->entry ? -1 : 1;
    if (a->reversal != b->reversal)
        return a->reversal ? -1 : 1;
    if (!a->reversal)
        return (a->pos > b->pos) - (a->pos < b->pos);
    int c = strcmp(a->line.key, b->line.key);
    c = c ? c : strcmp(a->currency, b->currency);
    c = c ? c : strcmp(a->client_id, b->client_id);
    c = c ? c : strcmp(a->line.lead_id, b->line.lead_id);
    return c ? c : (a->line.line_id > b->line.line_id) - (a->line.line_id < b->line.line_id);
}

static bool row_takes(const row_t *w, size_t entry, const post_t *p)
{
    return w->entry == entry && !(w->has & (1u << p->model)) && w->p->reversal == p->reversal &&
           w->p->line.line_id == p->line.line_id && !strcmp(w->p->client_id, p->client_id) &&
           !strcmp(w->p->currency, p->currency);
}

/* The index of the message gathering the entry of p (out_msg_of made it). */
static size_t post_entry(const run_t *r, const post_t *p)
{
    size_t i = 0;
    while (i + 1 < r->n_out &&
           !(!strcmp(r->out[i].refund_id, p->refund_id) && r->out[i].at_ms == p->at_ms))
        i++;
    return i;
}

static int row_insert(run_t *r, const payment_t *pay, const row_t *w)
{
    const post_t *p = w->p;
    sqlite3_stmt *st =
        stmt_bind(r->a, S_ROW_ADD, "ssissiis", pay->id, p->refund_id, p->line.line_id, p->client_id,
                  p->currency, (int64_t)p->reversal, p->at_ms, r->cause->event_id);
    for (int m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++)
        if (w->has & (1u << m)) {
            sqlite3_bind_int64(st, 9 + m, w->credit[m]);
            sqlite3_bind_int64(st, 9 + FUNNEL_ATTR_MODEL_COUNT_ + m, w->weight[m]);
        }
    return stmt_run(st);
}

/* ---- the day sums ------------------------------------------------------------------------
 *
 * attr_sums holds the credits of every row summed per (UTC day of the entry, the line's tags,
 * currency), kept in the transaction that writes the rows: the report of a period adds whole
 * days instead of reading every posting (schema 6). */

typedef struct day_sum {
    int64_t day, tag;
    const char *currency; /* borrowed from the post */
    int64_t credit[FUNNEL_ATTR_MODEL_COUNT_];
} day_sum_t;

static int tag_id_of(run_t *r, const char *const *c, int64_t *tag);

/* Adds row w's credits into sums[0..*n), merging rows of one day, tag and currency. */
static int day_sum_add(run_t *r, const row_t *w, day_sum_t *sums, size_t *n)
{
    const line_t *l = &w->p->line;
    const char *tags[4] = {l->channel, l->source, l->medium, l->campaign};
    int64_t tag, day = day_of(w->p->at_ms);
    int rc = tag_id_of(r, tags, &tag);
    if (rc)
        return rc;
    for (size_t i = 0; i < *n; i++) {
        day_sum_t *s = &sums[i];
        if (s->day != day || s->tag != tag || strcmp(s->currency, w->p->currency))
            continue;
        int64_t t[FUNNEL_ATTR_MODEL_COUNT_];
        bool over = false;
        for (int m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++)
            over |= __builtin_add_overflow(s->credit[m], w->credit[m], &t[m]);
        if (over)
            continue; /* left to SQLite's addition, which marks the sum inexact */
        memcpy(s->credit, t, sizeof t);
        return 0;
    }
    day_sum_t *s = &sums[(*n)++];
    *s = (day_sum_t){.day = day, .tag = tag, .currency = w->p->currency};
    memcpy(s->credit, w->credit, sizeof s->credit);
    return 0;
}

/* Adds the settlement's rows[0..n) to their day sums. */
static int day_sums_write(run_t *r, const row_t *rows, size_t n)
{
    day_sum_t *sums = malloc(n * sizeof *sums);
    size_t k = 0;
    int rc = sums ? 0 : FUNNEL_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        rc = day_sum_add(r, &rows[i], sums, &k);
    for (size_t i = 0; !rc && i < k; i++) {
        sqlite3_stmt *st =
            stmt_bind(r->a, S_SUM_ADD, "iis", sums[i].day, sums[i].tag, sums[i].currency);
        for (int m = 0; m < FUNNEL_ATTR_MODEL_COUNT_; m++)
            sqlite3_bind_int64(st, 4 + m, sums[i].credit[m]);
        rc = stmt_run(st);
    }
    free(sums);
    return rc;
}

/* Adds the ids first..first+n-1 of the rows just inserted to the payment's list of its posts.
 * A rowid table gives consecutive inserts consecutive ids; should it ever not, the list would
 * miss posts, so that is an error. */
static int rows_list(run_t *r, const payment_t *pay, int64_t first, size_t n)
{
    sqlite3 *db = funnel_store_db(r->a->store);
    if (sqlite3_last_insert_rowid(db) != first + (int64_t)n - 1) {
        funnel_log_error(r->a->log, "attribution: payment %s: posts %lld.. not consecutive",
                         pay->id, (long long)first);
        return FUNNEL_EINVAL;
    }
    char run[48];
    snprintf(run, sizeof run, "%lld:%zu", (long long)first, n);
    int rc = stmt_run(stmt_bind(r->a, S_PAYMENT_POSTED, "ss", pay->id, run));
    return rc ? rc : sqlite3_changes(db) == 1 ? 0 : FUNNEL_ESTORE;
}

/* Stores the settlement's posts, one row per entry and line with every model's credit on it,
 * its day sums and the last posting id given out. */
static int rows_write(run_t *r, const payment_t *pay)
{
    if (!r->n_posts)
        return 0;
    row_t *rows = calloc(r->n_posts, sizeof *rows);
    size_t n = 0;
    if (!rows)
        return FUNNEL_ENOMEM;
    for (size_t k = 0; k < r->n_posts; k++) {
        const post_t *p = &r->posts[k];
        size_t entry = post_entry(r, p), i = 0;
        while (i < n && !row_takes(&rows[i], entry, p))
            i++;
        if (i == n)
            rows[n++] = (row_t){.p = p, .entry = entry};
        rows[i].has |= 1u << p->model;
        rows[i].credit[p->model] = p->credit;
        rows[i].weight[p->model] = p->weight_ppm;
    }
    qsort(rows, n, sizeof *rows, row_cmp);
    int rc = 0;
    int64_t first = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = row_insert(r, pay, &rows[i]);
        if (!i)
            first = sqlite3_last_insert_rowid(funnel_store_db(r->a->store));
    }
    rc = rc ? rc : rows_list(r, pay, first, n);
    rc = rc ? rc : day_sums_write(r, rows, n);
    free(rows);
    return rc ? rc : stmt_run(stmt_bind(r->a, S_COUNTER_SET, "i", r->last_id));
}

/* The last posting id given out; attr_counter always has its one row (schema 4). */
static int counter_read(run_t *r)
{
    sqlite3_stmt *st = stmt_bind(r->a, S_COUNTER_GET, "");
    int rc = sqlite3_step(st);
    bool found = rc == SQLITE_ROW;
    r->last_id = found ? sqlite3_column_int64(st, 0) : 0;
    rc = stmt_done(st, rc);
    return rc ? rc : found ? 0 : FUNNEL_ESTORE;
}

/* Brings every configured model's credits of one payment in line with the stored facts and
 * publishes what changed: one message per entry (the payment, each refund). */
static int payment_settle(run_t *r, const journey_t *j, const payment_t *pay)
{
    refund_t *refunds = NULL;
    size_t n_refunds = 0;
    int rc = refunds_read(r, pay, &refunds, &n_refunds);
    rc = rc ? rc : stored_load(r, pay);
    rc = rc ? rc : counter_read(r);
    int64_t *scratch = rc ? NULL : malloc(5 * j->n * sizeof *scratch);
    if (!rc && !scratch)
        rc = FUNNEL_ENOMEM;
    for (unsigned m = 0; !rc && m < FUNNEL_ATTR_MODEL_COUNT_; m++)
        if (r->cfg->models & (1u << m))
            rc = model_settle(r, j, pay, m, refunds, n_refunds, scratch);
    rc = rc ? rc : rows_write(r, pay);
    if (!rc)
        rc = out_flush(r, pay, j);
    out_clear(r);
    stored_clear(r);
    r->n_posts = 0;
    free(scratch);
    free(refunds);
    return rc;
}

/* ---- what an event affects ----------------------------------------------------------- */

/* Reads a stored payment; FUNNEL_ENOTFOUND when unknown (a refund may come first). On success
 * pay->posts is the caller's to free. */
static int payment_load(run_t *r, const char *payment_id, payment_t *pay)
{
    sqlite3_stmt *st = stmt_bind(r->a, S_PAYMENT_GET, "s", payment_id);
    int rc = sqlite3_step(st);
    pay->posts = NULL;
    if (rc == SQLITE_ROW) {
        copy_id(pay->id, payment_id);
        copy_id(pay->client_id, col_text(st, 0));
        pay->minor = sqlite3_column_int64(st, 1);
        snprintf(pay->currency, sizeof pay->currency, "%s", col_text(st, 2));
        pay->at_ms = sqlite3_column_int64(st, 3);
        const char *posts = col_text(st, 4);
        if (*posts && !(pay->posts = strdup(posts))) {
            sqlite3_reset(st);
            return FUNNEL_ENOMEM;
        }
    }
    int found = rc == SQLITE_ROW;
    if ((rc = stmt_done(st, rc))) {
        free(pay->posts);
        pay->posts = NULL;
        return rc;
    }
    return found ? 0 : FUNNEL_ENOTFOUND;
}

/* Settles every payment of a client against its journey, read afresh: the event may have
 * changed it. */
static int client_recompute(run_t *r, const char *client_id)
{
    const journey_t *j;
    id_list_t pays = {0};
    int rc = journey_get(r, client_id, true, &j);
    if (!rc)
        rc = id_list_read(stmt_bind(r->a, S_PAYMENTS_OF_CLIENT, "s", client_id), &pays);
    for (size_t i = 0; !rc && i < pays.n; i++) {
        payment_t pay;
        if ((rc = payment_load(r, pays.ids[i], &pay)))
            break;
        if (pay.minor > 0)
            rc = payment_settle(r, j, &pay);
        free(pay.posts);
    }
    free(pays.ids);
    return rc;
}

/* Settles one payment, if it is known. */
static int payment_recompute(run_t *r, const char *payment_id)
{
    payment_t pay;
    const journey_t *j;
    int rc = payment_load(r, payment_id, &pay);
    if (rc)
        return rc == FUNNEL_ENOTFOUND ? 0 : rc;
    if (pay.minor > 0 && !(rc = journey_get(r, pay.client_id, false, &j)))
        rc = payment_settle(r, j, &pay);
    free(pay.posts);
    return rc;
}

/* Settles the clients whose handoffs name the lead (usually none: a lead that has not closed). */
static int lead_recompute(run_t *r, const char *lead_id)
{
    id_list_t clients = {0};
    if (!filter_has(r->a->handoff_leads, lead_id))
        return 0;
    int rc = id_list_read(stmt_bind(r->a, S_CLIENTS_OF_LEAD, "s", lead_id), &clients);
    for (size_t i = 0; !rc && i < clients.n; i++)
        rc = client_recompute(r, clients.ids[i]);
    free(clients.ids);
    return rc;
}

/* ---- events -------------------------------------------------------------------------- */

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* An attr_tags row kept in memory (see "kept journeys"): a touch's tags are almost always a
 * set seen before. */
struct kept_tag {
    int64_t id;
    char cols[]; /* channel, source, medium, campaign, each NUL-terminated */
};

static bool tag_is(const kept_tag_t *k, const char *const *cols)
{
    const char *p = k->cols;
    for (int i = 0; i < 4; i++, p += strlen(p) + 1)
        if (strcmp(p, cols[i]))
            return false;
    return true;
}

/* Keeps tag `id` of cols in *slot; out of memory, it is just not kept. */
static void tag_keep(kept_tag_t **slot, const char *const *cols, int64_t id)
{
    size_t len[4], total = 0;
    for (int i = 0; i < 4; i++)
        total += (len[i] = strlen(cols[i])) + 1;
    kept_tag_t *k = malloc(sizeof *k + total);
    if (!k)
        return;
    k->id = id;
    char *p = k->cols;
    for (int i = 0; i < 4; p += len[i++] + 1)
        memcpy(p, cols[i], len[i] + 1);
    free(*slot);
    *slot = k;
}

/* The attr_tags row of channel, source, medium and campaign (c[0..4)), added when new. */
static int tag_id_of(run_t *r, const char *const *c, int64_t *tag)
{
    funnel_attribution_t *a = r->a;
    if (!a->tags && !(a->tags = calloc(TAG_SLOTS, sizeof *a->tags)))
        return FUNNEL_ENOMEM;
    kept_tag_t **slot = &a->tags[kept_slot(c, 4, TAG_SLOTS)];
    if (*slot && tag_is(*slot, c)) {
        *tag = (*slot)->id;
        return 0;
    }
    const char *cols = "ssss";
    sqlite3_stmt *st = stmt_bind(a, S_TAG_GET, cols, c[0], c[1], c[2], c[3]);
    int rc = sqlite3_step(st);
    *tag = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if ((rc = stmt_done(st, rc)))
        return rc;
    if (!*tag) {
        if (stmt_run(stmt_bind(a, S_TAG_ADD, cols, c[0], c[1], c[2], c[3])))
            return FUNNEL_ESTORE;
        *tag = sqlite3_last_insert_rowid(funnel_store_db(a->store));
    }
    tag_keep(slot, c, *tag);
    return 0;
}

static int tag_of(run_t *r, const Funnel__V1__Touch *t, int64_t *tag)
{
    const char *c[4] = {nz(t->channel), nz(t->source), nz(t->medium), nz(t->campaign)};
    return tag_id_of(r, c, tag);
}

static int touch_add(run_t *r, const char *lead_id, const char *touch_id,
                     const Funnel__V1__Touch *t)
{
    if (!t)
        return 0;
    /* A touch without its own time happened when the event carrying it did. */
    int64_t at = t->at_ms ? t->at_ms : r->cause->occurred_at_ms;
    int64_t tag;
    int rc = tag_of(r, t, &tag);
    if (rc)
        return rc;
    unsigned char packed[FUNNEL_UUID_BYTES + FUNNEL_ID_MAX + 32];
    size_t len;
    int64_t span = period_of(at, TOUCH_SPAN_MS);
    sqlite3_stmt *st =
        stmt_bind(r->a, S_TOUCH_ADD, "isi", span, lead_id, at - span * TOUCH_SPAN_MS);
    if (touch_id_pack(touch_id, packed, &len))
        sqlite3_bind_blob(st, 4, packed, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, 4, touch_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, tag);
    return stmt_run(st);
}

static int on_lead_created(run_t *r, const Funnel__V1__LeadCreated *b)
{
    const char *ev = r->cause->event_id;
    int rc = stmt_run(stmt_bind(r->a, S_LEAD_CREATED, "si", b->lead_id, r->cause->occurred_at_ms));
    for (size_t i = 0; !rc && i < b->n_touches; i++) {
        char touch_id[FUNNEL_ID_MAX + 32];
        snprintf(touch_id, sizeof touch_id, "%s#%zu", ev, i);
        rc = touch_add(r, b->lead_id, touch_id, b->touches[i]);
    }
    return rc ? rc : lead_recompute(r, b->lead_id);
}

static int on_refund(run_t *r, const Funnel__V1__PaymentRefunded *b)
{
    id_list_t before = {0};
    const Funnel__V1__Money *amt = b->amount;
    if (!amt)
        return 0;
    /* A repeated refund_id with an earlier time may move the refund to another payment. */
    int rc = id_list_read(stmt_bind(r->a, S_REFUND_PAYMENT, "s", b->refund_id), &before);
    filter_add(r->a->refunded, b->payment_id);
    if (!rc)
        rc = stmt_run(stmt_bind(r->a, S_REFUND_ADD, "sssisi", b->refund_id, r->cause->event_id,
                                b->payment_id, amt->minor, nz(amt->currency),
                                r->cause->occurred_at_ms));
    if (!rc)
        rc = payment_recompute(r, b->payment_id);
    if (!rc && before.n && strcmp(before.ids[0], b->payment_id))
        rc = payment_recompute(r, before.ids[0]);
    free(before.ids);
    return rc;
}

static int event_apply(run_t *r, const funnel_envelope_t *env)
{
    int64_t at = env->occurred_at_ms;
    int rc;
    switch (env->body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_CREATED:
        return env->lead_created ? on_lead_created(r, env->lead_created) : 0;
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_TOUCHED: {
        const Funnel__V1__LeadTouched *b = env->lead_touched;
        if (!b || (rc = touch_add(r, b->lead_id, env->event_id, b->touch)))
            return b ? rc : 0;
        return lead_recompute(r, b->lead_id);
    }
    case FUNNEL__V1__ENVELOPE__BODY_LEAD_QUALIFIED: {
        const Funnel__V1__LeadQualified *b = env->lead_qualified;
        if (!b || b->stage != FUNNEL__V1__STAGE__SQL)
            return 0;
        if ((rc = stmt_run(stmt_bind(r->a, S_LEAD_SQL, "si", b->lead_id, at))))
            return rc;
        return lead_recompute(r, b->lead_id);
    }
    case FUNNEL__V1__ENVELOPE__BODY_CLIENT_HANDED_OFF: {
        const Funnel__V1__ClientHandedOff *b = env->client_handed_off;
        if (b)
            filter_add(r->a->handoff_leads, b->lead_id);
        if (!b || (rc = stmt_run(stmt_bind(r->a, S_HANDOFF_ADD, "sssi", b->client_id, env->event_id,
                                           b->lead_id, at))))
            return b ? rc : 0;
        return client_recompute(r, b->client_id);
    }
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_RECEIVED: {
        const Funnel__V1__PaymentReceived *b = env->payment_received;
        if (!b || !b->amount)
            return 0;
        if ((rc = stmt_run(stmt_bind(r->a, S_PAYMENT_ADD, "sssisi", b->payment_id, env->event_id,
                                     b->client_id, b->amount->minor, nz(b->amount->currency), at))))
            return rc;
        return payment_recompute(r, b->payment_id);
    }
    case FUNNEL__V1__ENVELOPE__BODY_PAYMENT_REFUNDED:
        return env->payment_refunded ? on_refund(r, env->payment_refunded) : 0;
    default:
        return 0;
    }
}

int funnel_attribution_on_event(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                                int64_t now_ms)
{
    funnel_attribution_t *a = self;
    run_t r = {.a = a, .router = router, .cause = env, .now_ms = now_ms, .cfg = a->cfg};
    int rc = event_apply(&r, env);
    out_clear(&r);
    free(r.out);
    stored_clear(&r);
    free(r.stored);
    free(r.posts);
    if (rc == FUNNEL_ESTORE)
        funnel_log_error(a->log, "attribution: event %s: %s", env->event_id,
                         sqlite3_errmsg(funnel_store_db(a->store)));
    return rc;
}

/* ---- life cycle ---------------------------------------------------------------------- */

static void attribution_on_rollback(void *self)
{
    kept_drop_all(self);
}

int funnel_attribution_new(funnel_store_t *store, const funnel_attribution_config_t *cfg,
                           const funnel_log_t *log, funnel_attribution_t **out)
{
    char err[512];
    *out = NULL;
    funnel_attribution_t *a = calloc(1, sizeof *a);
    if (!a)
        return FUNNEL_ENOMEM;
    a->store = store;
    a->cfg = cfg;
    a->log = log;
    int rc = funnel_store_migrate_module(store, "attribution", schema,
                                         (int)(sizeof schema / sizeof schema[0]), err, sizeof err);
    if (rc) {
        funnel_log_error(log, "attribution: %s", err);
        goto fail;
    }
    for (int i = 0; i < S_COUNT_; i++) {
        if (sqlite3_prepare_v3(funnel_store_db(store), stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &a->st[i], NULL) != SQLITE_OK) {
            funnel_log_error(log, "attribution: cannot prepare statement %d: %s", i,
                             sqlite3_errmsg(funnel_store_db(store)));
            rc = FUNNEL_ESTORE;
            goto fail;
        }
    }
    if ((rc = filter_fill(a, S_HANDOFF_LEADS, &a->handoff_leads)) ||
        (rc = filter_fill(a, S_REFUND_PAYMENTS, &a->refunded)))
        goto fail;
    *out = a;
    return 0;
fail:
    funnel_attribution_destroy(&a);
    return rc;
}

void funnel_attribution_destroy(funnel_attribution_t **engine)
{
    if (!engine || !*engine)
        return;
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize((*engine)->st[i]);
    kept_drop_all(*engine);
    free((*engine)->kept);
    free((*engine)->tags);
    free((*engine)->handoff_leads);
    free((*engine)->refunded);
    free(*engine);
    *engine = NULL;
}

int funnel_attribution_engine_create(funnel_store_t *store, const void *section,
                                     const funnel_log_t *log, funnel_engine_t *engine)
{
    funnel_attribution_t *a;
    int rc = funnel_attribution_new(store, section, log, &a);
    if (rc)
        return rc;
    *engine = (funnel_engine_t){.name = "attribution",
                                .self = a,
                                .on_event = funnel_attribution_on_event,
                                .on_rollback = attribution_on_rollback};
    return 0;
}

void funnel_attribution_engine_destroy(void *self)
{
    funnel_attribution_t *a = self;
    funnel_attribution_destroy(&a);
}
