/* sla.c — the SLA engine (see sla.h for the contract).
 *
 * An instance is a row; what it does next is one number, `step`: 0 the warning, 1..L the
 * escalation levels, L+1..L+R the repeats of the last level. The time a step fires is derived
 * from the row (anchor, business time consumed, due time) and the policy version, and stored as
 * next_at so the heap can be rebuilt with one indexed scan. Firing a step emits its output with
 * the step's own time as occurred_at_ms and moves to the next step, so a step is never skipped:
 * after downtime they all come out at once, in order, with their original times. An event of
 * the instance's key first fires the steps due before it (steps_before), so a burst of events
 * that arrives after their steps were due publishes what the clock would have published.
 *
 * This file holds the statements, policy versions, event dispatch, timers and life cycle; the
 * other jobs are in sla_instance.c, sla_held.c, sla_recompute.c, sla_order.c and sla_quota.c
 * (sla_internal.h). */
#include "sla_internal.h"
#include "funnel/grow.h"
#include "funnel/error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* What a met instance row r counts in sla_compliance (migration 11): its opening's UTC day, on
 * time or not, and its time to stop, the business time at the stop else, for rows met before
 * migration 9, the wall-clock time from opening (as adapters/report/compliance.c reads rows).
 * Unformatted: clang-format would split the SQL in the middle of its clauses. */
// clang-format off
#define CMP_OPENED(r)  "coalesce(" r ".opened_at, " r ".started_at)"
#define IDLE_AT        "coalesce(paused_at, anchor_at)" /* sla_idle_at */
#define CMP_DAY(r)     "(" CMP_OPENED(r) " - (" CMP_OPENED(r) " % 86400000 + 86400000) % 86400000)"
#define CMP_EXPIRED(r) "(" r ".stop_event IS NULL)"
#define CMP_ON_TIME(r) "(" r ".stop_event IS NOT NULL AND coalesce(" r ".on_time, 0) <> 0)"
#define CMP_LATE(r)    "(" r ".stop_event IS NOT NULL AND coalesce(" r ".on_time, 0) = 0)"
#define CMP_TIME(r)                                                                                \
    "CASE WHEN " r ".stop_event IS NOT NULL THEN coalesce(" r ".stop_business_ms,"                 \
    " max(coalesce(" r ".stopped_at, 0) - " CMP_OPENED(r) ", 0)) END"
#define CMP_WHERE(r) "day = " CMP_DAY(r) " AND policy = " r ".policy AND owner = " r ".owner"
/* Trigger steps: OLD leaves its row (dropped once empty) when it was met; NEW joins its row
 * when it is met. */
#define CMP_REMOVE                                                                                 \
    "UPDATE sla_compliance SET on_time = on_time - " CMP_ON_TIME("OLD") ","                        \
    " late = late - " CMP_LATE("OLD") ", expired = expired - " CMP_EXPIRED("OLD") ","              \
    " times = sla_times(times, " CMP_TIME("OLD") ", NULL)"                                         \
    " WHERE " CMP_WHERE("OLD") " AND OLD.state = 'met';"                                           \
    "DELETE FROM sla_compliance WHERE " CMP_WHERE("OLD") " AND on_time + late + expired = 0;"
#define CMP_ADD                                                                                    \
    "INSERT INTO sla_compliance (day, policy, owner, on_time, late, expired, times)"               \
    " SELECT " CMP_DAY("NEW") ", NEW.policy, NEW.owner,"                                           \
    " " CMP_ON_TIME("NEW") ", " CMP_LATE("NEW") ", " CMP_EXPIRED("NEW") ","                        \
    " sla_times(NULL, NULL, " CMP_TIME("NEW") ") WHERE NEW.state = 'met'"                          \
    " ON CONFLICT DO UPDATE SET on_time = on_time + excluded.on_time,"                             \
    " late = late + excluded.late, expired = expired + excluded.expired,"                          \
    " times = sla_times(times, NULL, " CMP_TIME("NEW") ");"
#define CMP_UPDATE_OF                                                                              \
    "AFTER UPDATE OF state, policy, owner, opened_at, started_at, stopped_at, on_time,"            \
    " stop_business_ms, stop_event ON sla_instance"
/* 11: compliance kept as it goes (adapters/report/compliance.c). Per UTC day of opening, policy
 * and owner, the met instances on time, late and expired (closed by the retention: no stop
 * event, sla_retention.c) and the sorted stop times of those stopped (sla_times.h), kept by
 * triggers in the transaction of every write of sla_instance, so a recomputation or a prune that
 * rewrites instances moves them too. Filled from the rows met so far. Then the live instances by
 * their last clock change (sla_idle_at), the order the retention expires them in. */
#define MIGRATION_11                                                                               \
    "CREATE TABLE sla_compliance ("                                                                \
    "  day INTEGER NOT NULL, policy TEXT NOT NULL, owner TEXT NOT NULL,"                           \
    "  on_time INTEGER NOT NULL, late INTEGER NOT NULL, times BLOB NOT NULL,"                      \
    "  expired INTEGER NOT NULL,"                                                                  \
    "  PRIMARY KEY (day, policy, owner)) WITHOUT ROWID;"                                           \
    "INSERT INTO sla_compliance (day, policy, owner, on_time, late, expired, times)"               \
    " SELECT " CMP_DAY("i") ", policy, owner, sum(" CMP_ON_TIME("i") "), sum(" CMP_LATE("i") "),"  \
    " sum(" CMP_EXPIRED("i") "), sla_times_of(" CMP_TIME("i") ")"                                  \
    " FROM sla_instance i WHERE state = 'met' GROUP BY 1, 2, 3;"                                   \
    "CREATE TRIGGER sla_compliance_insert AFTER INSERT ON sla_instance WHEN NEW.state = 'met'"     \
    " BEGIN " CMP_ADD " END;"                                                                      \
    "CREATE TRIGGER sla_compliance_delete AFTER DELETE ON sla_instance WHEN OLD.state = 'met'"     \
    " BEGIN " CMP_REMOVE " END;"                                                                   \
    "CREATE TRIGGER sla_compliance_update " CMP_UPDATE_OF                                         \
    " WHEN OLD.state = 'met' OR NEW.state = 'met' BEGIN " CMP_REMOVE " " CMP_ADD " END;"          \
    "CREATE INDEX sla_instance_idle ON sla_instance (" IDLE_AT ") WHERE state <> 'met';"
/* The log rows instance rows stand for (vlog, migration 12): a start as sla_log_event would
 * have logged it, and a stop of kinds K_STOP alone. */
#define VLOG_START(where)                                                                          \
    "SELECT policy, key, opened_at, 0, start_event, 0, owner, coalesce(queue, ''), priority, 0"   \
    " FROM sla_instance WHERE " where "vlog & 1"
#define VLOG_STOP(where)                                                                           \
    "SELECT policy, key, stopped_at, 1, stop_event, 1, NULL, NULL, 0, 0"                           \
    " FROM sla_instance WHERE " where "vlog & 2"
#define VLOG_KEY "key = ?2 AND policy = ?1 AND "
// clang-format on

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE sla_policy ("
    "  name TEXT NOT NULL, version INTEGER NOT NULL, hash INTEGER NOT NULL,"
    "  definition TEXT NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID;"
    "CREATE TABLE sla_instance ("
    "  id INTEGER PRIMARY KEY, policy TEXT NOT NULL, version INTEGER NOT NULL,"
    "  key TEXT NOT NULL, owner TEXT NOT NULL, state TEXT NOT NULL,"
    "  started_at INTEGER NOT NULL, anchor_at INTEGER NOT NULL, consumed_ms INTEGER NOT NULL,"
    "  due_at INTEGER, paused_at INTEGER, step INTEGER NOT NULL, next_at INTEGER,"
    "  acked_by TEXT, start_event TEXT NOT NULL, stopped_at INTEGER, on_time INTEGER,"
    "  late_ms INTEGER, stop_event TEXT);"
    "CREATE INDEX sla_instance_live ON sla_instance (key) WHERE state <> 'met';"
    "CREATE INDEX sla_instance_next ON sla_instance (next_at) WHERE next_at IS NOT NULL;"
    "CREATE TABLE sla_quota ("
    "  policy TEXT NOT NULL, period_start INTEGER NOT NULL, period_end INTEGER NOT NULL,"
    "  actual INTEGER NOT NULL, pace_done INTEGER NOT NULL DEFAULT 0,"
    "  closed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (policy, period_start)) WITHOUT ROWID;",
    /* 2: events that arrived before the start of their instance (see sla_hold()), and the original
     * start time of each instance, which a reset does not move. Rows from before this step
     * take started_at, the best value they kept. */
    "ALTER TABLE sla_instance ADD COLUMN opened_at INTEGER;"
    "UPDATE sla_instance SET opened_at = started_at;"
    "CREATE TABLE sla_held ("
    "  id INTEGER PRIMARY KEY, policy TEXT NOT NULL, key TEXT NOT NULL,"
    "  occurred_at INTEGER NOT NULL, event_id TEXT NOT NULL, kinds INTEGER NOT NULL,"
    "  UNIQUE (policy, key, event_id));"
    "CREATE INDEX sla_held_key ON sla_held (policy, key, occurred_at);"
    "CREATE INDEX sla_held_age ON sla_held (occurred_at);",
    /* 3: every start, stop, reset, pause and resume of a (policy, key) that has had a start, so
     * an event arriving out of event-time order can recompute the key's instances (recompute()).
     * rank puts a start before the other events of the same millisecond, as a held event of that
     * time is applied after its start. Keys started before this step have no log: their late
     * events are applied as they come, as before (sla_late_event()). */
    "CREATE TABLE sla_log ("
    "  policy TEXT NOT NULL, key TEXT NOT NULL, occurred_at INTEGER NOT NULL,"
    "  rank INTEGER NOT NULL, event_id TEXT NOT NULL, kinds INTEGER NOT NULL, owner TEXT,"
    "  PRIMARY KEY (policy, key, occurred_at, rank, event_id)) WITHOUT ROWID;"
    "CREATE INDEX sla_instance_key ON sla_instance (key, policy);"
    /* The highest sla_id a recomputation deleted: ids are never reused, so an acknowledgement
     * or an output naming a deleted instance never names another one. */
    "CREATE TABLE sla_deleted_max (id INTEGER NOT NULL);"
    "INSERT INTO sla_deleted_max VALUES (0);",
    /* 4: per clock of an instance (its start or a reset), the first step not yet published, so
     * a recomputation that replays a clock publishes what that clock has not (step_publish).
     * Rows from before this step know only their current clock: its steps before `step`. */
    "CREATE TABLE sla_fired ("
    "  id INTEGER NOT NULL, clock INTEGER NOT NULL, next_step INTEGER NOT NULL,"
    "  PRIMARY KEY (id, clock)) WITHOUT ROWID;"
    "INSERT INTO sla_fired SELECT id, started_at, step FROM sla_instance;",
    /* 5: per quota, the periods funneld has opened: from the first period of its first run
     * (since) to the end of the last one (through). A period in between that has no row yet is
     * created and reports, even when a later period got a row first (quota_ensure). Quotas from
     * before this step take the span of their rows. */
    "CREATE TABLE sla_quota_span ("
    "  policy TEXT PRIMARY KEY, since INTEGER NOT NULL, through INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO sla_quota_span SELECT policy, min(period_start), max(period_end) FROM sla_quota"
    "  GROUP BY policy;",
    /* 6: requests and processing order. Each instance's queue and priority (from its start, or
     * the key's previous instance for a start without them: a reopen); the owner of a held or
     * logged reassignment; the start's queue and priority in the log and which of owner (1),
     * queue (2) and priority (4) it inherits; and the order violations published (sla_order:
     * `current` says whether the pair is in the set recomputed from event time now); each policy
     * version's process and responsible, for readers that do not parse definitions (sla_report). */
    "ALTER TABLE sla_instance ADD COLUMN queue TEXT;"
    "ALTER TABLE sla_instance ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    /* A queue's live instances by age (sla next, the older ones an instance skipped) and its
     * met ones by stop time (those to check again after an event, the skipped ones stopped
     * later): neither grows with the queue's history of met instances. */
    "CREATE INDEX sla_instance_queue ON sla_instance (policy, queue, priority, opened_at)"
    "  WHERE queue IS NOT NULL AND state <> 'met';"
    "CREATE INDEX sla_instance_taken ON sla_instance (policy, queue, priority, stopped_at)"
    "  WHERE queue IS NOT NULL AND state = 'met';"
    "ALTER TABLE sla_held ADD COLUMN owner TEXT;"
    "ALTER TABLE sla_log ADD COLUMN queue TEXT;"
    "ALTER TABLE sla_log ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sla_log ADD COLUMN inherit INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sla_policy ADD COLUMN process TEXT;"
    "ALTER TABLE sla_policy ADD COLUMN responsible TEXT;"
    "CREATE TABLE sla_order ("
    "  taken INTEGER NOT NULL, skipped INTEGER NOT NULL, current INTEGER NOT NULL,"
    "  PRIMARY KEY (taken, skipped)) WITHOUT ROWID;",
    /* 7: when each instance's last event arrived (wall clock), which the late grace counts from
     * (sla_timer_at). Rows from before this step have none (NULL, read as 0): their steps fire
     * at their due times, as they did. */
    "ALTER TABLE sla_instance ADD COLUMN arrived_at INTEGER;",
    /* 8: per quota, the count of each local day (the quota calendar's time zone), so a reader
     * can draw the count so far within a period. Like sla_quota.actual a sum over the events
     * matched, whatever their order. Periods counted before this step have no days. */
    "CREATE TABLE sla_quota_day ("
    "  policy TEXT NOT NULL, day_start INTEGER NOT NULL, count INTEGER NOT NULL,"
    "  PRIMARY KEY (policy, day_start)) WITHOUT ROWID;",
    /* 9: the business time on a met instance's clock at its stop (since its start or last
     * reset, pauses excluded), which compliance reports; a met row's consumed_ms holds the same
     * (S_MET). NULL in rows met before this step, whose consumed_ms is what it was before the
     * stop. */
    "ALTER TABLE sla_instance ADD COLUMN stop_business_ms INTEGER;",
    /* 10: retention (sla_retention.c). The highest event time the engine has seen as of the last
     * prune (NULL: none yet), from which the horizon counts; rows from before this step take
     * their log's latest. Met instances by stop time, the order they are pruned in. */
    "CREATE TABLE sla_watermark (at INTEGER);"
    "INSERT INTO sla_watermark SELECT max(occurred_at) FROM sla_log;"
    "CREATE INDEX sla_instance_met ON sla_instance (stopped_at) WHERE state = 'met';",
    /* 11 */
    MIGRATION_11,
    /* 12: the log rows an instance row stands for (vlog, sla_recompute.c): its start (1) and
     * its stop (2), which the row records itself (opened_at, start_event, owner, queue, priority;
     * stopped_at, stop_event), are not written to sla_log, whose rows of a key sit at a random
     * place of its B-tree (a page written per row per commit). sla_log_all is the whole log.
     * Rows from before this step stand for none: their rows are in sla_log. */
    "ALTER TABLE sla_instance ADD COLUMN vlog INTEGER NOT NULL DEFAULT 0;"
    "CREATE VIEW sla_log_all AS"
    " SELECT policy, key, occurred_at, rank, event_id, kinds, owner, queue, priority, inherit"
    " FROM sla_log UNION ALL " VLOG_START("") " UNION ALL " VLOG_STOP(
        "") ";"
            /* Whether an instance's start is in no log (one from before migration 3): such a key's
             * late start takes the live path, which finds its events only in sla_held (sla_hold).
             */
            "CREATE TABLE sla_prelog (yes INTEGER NOT NULL);"
            "INSERT INTO sla_prelog SELECT 1 WHERE EXISTS (SELECT 1 FROM sla_instance i WHERE NOT "
            "EXISTS"
            " (SELECT 1 FROM sla_log l WHERE l.policy = i.policy AND l.key = i.key AND l.rank = 0 "
            "AND"
            " l.event_id = i.start_event));"
            /* An instance that becomes met only joins its compliance row: the update of a live one
             * (S_MET, most of them) skips the removal's two lookups. */
            "DROP TRIGGER sla_compliance_update;"
            "CREATE TRIGGER sla_compliance_update " CMP_UPDATE_OF
            " WHEN OLD.state = 'met' BEGIN " CMP_REMOVE " " CMP_ADD " END;"
            "CREATE TRIGGER sla_compliance_met " CMP_UPDATE_OF " WHEN OLD.state <> 'met' AND"
            " NEW.state = 'met' BEGIN " CMP_ADD " END;",
};

#define COLS                                                                                       \
    "id, policy, version, key, owner, state, started_at, anchor_at, consumed_ms, due_at,"          \
    " paused_at, step, next_at, acked_by, opened_at, start_event, stopped_at, on_time, late_ms,"   \
    " stop_event, queue, priority, arrived_at"

static const char *const stmt_sql[S_COUNT_] = {
    [S_VERSIONS] = "SELECT name, version, definition FROM sla_policy ORDER BY name, version",
    [S_VERSION_ADD] = "INSERT INTO sla_policy (name, version, hash, definition, process,"
                      " responsible) VALUES (?,?,?,?,?,?)",
    [S_VERSION_EXISTS] = "SELECT 1 FROM sla_policy WHERE name = ? AND version = ?",
    [S_INSERT] = "INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at,"
                 " anchor_at, consumed_ms, due_at, step, next_at, start_event, opened_at, queue,"
                 " priority, arrived_at, vlog) VALUES (max(coalesce((SELECT max(id) FROM"
                 " sla_instance), 0), (SELECT id FROM sla_deleted_max)) + 1,?,?,?,?,'open',?,?,0,?,"
                 "?,?,?,?,?,?,?,?)",
    [S_LIVE] = "SELECT " COLS " FROM sla_instance WHERE key = ? AND state <> 'met'",
    [S_BY_ID] = "SELECT " COLS " FROM sla_instance WHERE id = ?",
    [S_UPDATE] = "UPDATE sla_instance SET state = ?, started_at = ?, anchor_at = ?,"
                 " consumed_ms = ?, due_at = ?, paused_at = ?, step = ?, next_at = ?,"
                 " acked_by = ?, owner = ?, arrived_at = ? WHERE id = ?",
    [S_MET] = "UPDATE sla_instance SET state = 'met', next_at = NULL, stopped_at = ?,"
              " on_time = ?, late_ms = ?, stop_event = ?, consumed_ms = ?5, stop_business_ms = ?5,"
              " step = ?6, owner = ?8, vlog = vlog | ?9 WHERE id = ?7",
    [S_TIMERS] = "SELECT id, next_at, arrived_at FROM sla_instance WHERE next_at IS NOT NULL",
    [S_OPEN_COUNT] = "SELECT count(*) FROM sla_instance WHERE state <> 'met'",
    [S_QUOTA_COUNT] = "INSERT INTO sla_quota (policy, period_start, period_end, actual, closed)"
                      " VALUES (?,?,?,1,?) ON CONFLICT (policy, period_start)"
                      " DO UPDATE SET actual = actual + 1",
    [S_QUOTA_DAY] = "INSERT INTO sla_quota_day (policy, day_start, count) VALUES (?,?,1)"
                    " ON CONFLICT (policy, day_start) DO UPDATE SET count = count + 1",
    [S_QUOTA_ENSURE] = "INSERT OR IGNORE INTO sla_quota (policy, period_start, period_end, actual)"
                       " VALUES (?,?,?,0)",
    [S_QUOTA_OPEN] = "SELECT period_start, period_end, actual, pace_done FROM sla_quota"
                     " WHERE policy = ? AND closed = 0 ORDER BY period_start LIMIT 64",
    [S_QUOTA_MARK] = "UPDATE sla_quota SET pace_done = ?, closed = ? WHERE policy = ? AND"
                     " period_start = ?",
    [S_HOLD] = "INSERT OR IGNORE INTO sla_held (policy, key, occurred_at, event_id, kinds, owner)"
               " VALUES (?,?,?,?,?,?)",
    [S_HOLD_PRUNE] = "DELETE FROM sla_held WHERE id IN (SELECT id FROM sla_held"
                     " WHERE occurred_at < ? ORDER BY occurred_at LIMIT 16)",
    [S_HELD] = "SELECT id, occurred_at, event_id, kinds, owner FROM sla_held WHERE policy = ? AND"
               " key = ? AND occurred_at >= ? ORDER BY occurred_at, event_id LIMIT 64",
    [S_HELD_DROP] = "DELETE FROM sla_held WHERE id = ?",
    [S_LOG_LAST] = "SELECT occurred_at, rank, event_id FROM sla_log WHERE policy = ? AND key = ?"
                   " ORDER BY occurred_at DESC, rank DESC, event_id DESC LIMIT 1",
    [S_LOG_VLAST] = "SELECT opened_at, start_event, vlog & 2, stopped_at, stop_event FROM"
                    " sla_instance WHERE key = ?2 AND policy = ?1 AND vlog <> 0",
    [S_LOG_ADD] = "INSERT OR IGNORE INTO sla_log (policy, key, occurred_at, rank, event_id, kinds,"
                  " owner, queue, priority, inherit) VALUES (?,?,?,?,?,?,?,?,?,?)",
    [S_LOG_HELD] =
        "INSERT OR IGNORE INTO sla_log (policy, key, occurred_at, rank, event_id, kinds,"
        " owner) SELECT policy, key, occurred_at, 1, event_id, kinds, owner FROM sla_held"
        " WHERE policy = ? AND key = ?",
    [S_LOG_READ] = "SELECT occurred_at, rank, event_id, kinds, owner, queue, priority, inherit"
                   " FROM sla_log"
                   " WHERE policy = ? AND key = ? ORDER BY occurred_at, rank, event_id",
    [S_LOG_FOREIGN] = "SELECT 1 FROM sla_instance i WHERE i.key = ?2 AND i.policy = ?1 AND"
                      " NOT (i.vlog & 1) AND NOT EXISTS (SELECT 1 FROM sla_log l WHERE"
                      " l.policy = ?1 AND l.key = ?2 AND"
                      " l.rank = 0 AND l.event_id = i.start_event) LIMIT 1",
    /* A key's rows of the log that its instance rows stand for (vlog) go to sla_log. */
    [S_LOG_SOLID] =
        "INSERT OR IGNORE INTO sla_log (policy, key, occurred_at, rank, event_id, kinds,"
        " owner, queue, priority, inherit) " VLOG_START(VLOG_KEY) " UNION ALL " VLOG_STOP(VLOG_KEY),
    [S_PRELOG] = "SELECT count(*) FROM sla_prelog",
    [S_LOG_UNVIRT] =
        "UPDATE sla_instance SET vlog = 0 WHERE key = ?2 AND policy = ?1 AND vlog <> 0",
    [S_KEY_ROWS] = "SELECT " COLS " FROM sla_instance WHERE key = ? AND policy = ? ORDER BY id",
    [S_ORDER_QUEUES] = "SELECT DISTINCT queue, priority FROM sla_instance WHERE key = ? AND"
                       " policy = ? AND queue IS NOT NULL",
    [S_ORDER_TAKEN] = "SELECT " COLS " FROM sla_instance WHERE policy = ? AND queue = ? AND"
                      " priority = ? AND state = 'met' AND stopped_at >= ? AND stop_event IS NOT"
                      " NULL ORDER BY id", /* an expiry takes nothing */
    /* B skipped when A (opened ?4, stopped ?5) was taken: older, not stopped by then, and its
     * last pause (4), resume (8) or reset (2) up to then, if any, was not a pause. */
    [S_ORDER_SKIPPED] =
        "SELECT " COLS " FROM (SELECT * FROM sla_instance WHERE policy = ?1 AND queue = ?2 AND"
        " priority = ?3 AND state <> 'met' AND opened_at < ?4 UNION ALL SELECT * FROM"
        " sla_instance WHERE policy = ?1 AND queue = ?2 AND priority = ?3 AND state = 'met' AND"
        " stopped_at > ?5 AND opened_at < ?4) b WHERE coalesce((SELECT l.kinds FROM sla_log l"
        " WHERE l.policy = b.policy AND l.key = b.key AND l.rank = 1 AND (l.kinds & 14) <> 0 AND"
        " l.occurred_at >= b.opened_at AND l.occurred_at <= ?5 ORDER BY l.occurred_at DESC,"
        " l.event_id DESC LIMIT 1), 8) & 10 <> 0 ORDER BY opened_at, start_event LIMIT ?6",
    [S_ORDER_ADD] = "INSERT OR IGNORE INTO sla_order (taken, skipped, current) VALUES (?,?,1)",
    [S_ORDER_CURRENT] = "UPDATE sla_order SET current = 1 WHERE taken = ? AND skipped = ?",
    [S_ORDER_FORGET_TAKEN] = "UPDATE sla_order SET current = 0 WHERE taken = ?",
    [S_ORDER_FORGET] = "UPDATE sla_order SET current = 0 WHERE taken = ?1 OR skipped = ?1",
    [S_KEY_LAST] = "SELECT " COLS " FROM sla_instance WHERE key = ? AND policy = ?"
                   " ORDER BY opened_at DESC, id DESC LIMIT 1",
    [S_DELETE] = "DELETE FROM sla_instance WHERE id = ?",
    [S_HELD_CLEAR] = "DELETE FROM sla_held WHERE policy = ? AND key = ?",
    [S_DELETED_MAX] = "UPDATE sla_deleted_max SET id = max(id, ?)",
    [S_FIRED_NEXT] = "SELECT next_step FROM sla_fired WHERE id = ? AND clock = ?",
    [S_FIRED_SET] = "INSERT INTO sla_fired (id, clock, next_step) VALUES (?,?,?)"
                    " ON CONFLICT (id, clock) DO UPDATE SET"
                    " next_step = max(next_step, excluded.next_step)",
    [S_FIRED_DROP] = "DELETE FROM sla_fired WHERE id = ?",
    [S_ID_ISSUED] = "SELECT ?1 BETWEEN 1 AND max(coalesce((SELECT max(id) FROM sla_instance), 0),"
                    " (SELECT id FROM sla_deleted_max))",
    [S_MARK_GET] = "SELECT at FROM sla_watermark",
    [S_MARK_SET] = "UPDATE sla_watermark SET at = max(coalesce(at, ?1), ?1)",
    [S_PRUNE_NEXT] = "SELECT key, policy, id, stopped_at FROM sla_instance WHERE state = 'met'"
                     " AND stopped_at < ? ORDER BY stopped_at",
    [S_KEY_FIRST] = "SELECT " COLS " FROM sla_instance WHERE key = ? AND policy = ?"
                    " ORDER BY opened_at, id LIMIT 1",
    [S_LOG_PRUNE] = "DELETE FROM sla_log WHERE policy = ? AND key = ? AND occurred_at <= ?",
    [S_ORDER_PRUNE] = "DELETE FROM sla_order WHERE taken = ?",
    [S_IDLE_NEXT] = "SELECT id, " IDLE_AT " FROM sla_instance WHERE state <> 'met' AND " IDLE_AT
                    " < ?1 ORDER BY " IDLE_AT " LIMIT ?2",
    [S_SPAN_GET] = "SELECT since, through FROM sla_quota_span WHERE policy = ?",
    [S_SPAN_SET] = "INSERT INTO sla_quota_span (policy, since, through) VALUES (?1,?2,?3)"
                   " ON CONFLICT (policy) DO UPDATE SET through = max(through, ?3)",
};

/* ---- statements ------------------------------------------------------------------------ */

sqlite3_stmt *sla_stmt(funnel_sla_t *sla, enum stmt_id id)
{
    sqlite3_stmt *s = sla->st[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no rows; 0 or FUNNEL_ESTORE. */
int sla_step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

void sla_bind_time(sqlite3_stmt *s, int col, int64_t v)
{
    if (v == NONE)
        sqlite3_bind_null(s, col);
    else
        sqlite3_bind_int64(s, col, v);
}

int64_t sla_col_time(sqlite3_stmt *s, int col)
{
    return sqlite3_column_type(s, col) == SQLITE_NULL ? NONE : sqlite3_column_int64(s, col);
}

void sla_col_text(sqlite3_stmt *s, int col, char *out)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(out, ID_BUF, "%s", t ? (const char *)t : "");
}

/* ---- policy versions ------------------------------------------------------------------- */

static void versions_clear(funnel_sla_t *sla)
{
    for (size_t i = 0; i < sla->n_vers; i++) {
        funnel_sla_policy_clear(&sla->vers[i].pol);
        funnel_calendar_destroy(&sla->vers[i].cal);
    }
    sla->n_vers = 0;
}

/* Compiles a stored definition and appends it to the cache. A definition this build cannot
 * read any more is logged and skipped: its instances then wait, untouched, for a fix. */
static int version_add(funnel_sla_t *sla, const char *definition, int64_t version)
{
    char err[256];
    if (funnel_grow(&sla->vers, &sla->cap_vers, sla->n_vers + 1, sizeof *sla->vers, 8))
        return FUNNEL_ENOMEM;
    pver_t *v = &sla->vers[sla->n_vers];
    memset(v, 0, sizeof *v);
    int rc = funnel_sla_policy_from_text(definition, &v->pol, err, sizeof err);
    if (!rc && (rc = funnel_calendar_new(&v->pol.calendar, &v->cal, err, sizeof err)))
        funnel_sla_policy_clear(&v->pol);
    if (rc == FUNNEL_ENOMEM)
        return rc;
    if (rc) {
        funnel_log_error(sla->log, "sla: stored policy version %lld is unreadable: %s",
                         (long long)version, err);
        return 0;
    }
    v->version = version;
    sla->n_vers++;
    return 0;
}

/* (Re)loads every stored version: at start and after a rollback undid a new one. */
static int versions_load(funnel_sla_t *sla)
{
    versions_clear(sla);
    sla->version_loads++;
    sqlite3_stmt *s = sla_stmt(sla, S_VERSIONS);
    int rc, err = 0;
    while (!err && (rc = sqlite3_step(s)) == SQLITE_ROW)
        err = version_add(sla, (const char *)sqlite3_column_text(s, 2), sqlite3_column_int64(s, 1));
    sqlite3_reset(s);
    sla->n_vers_known = sla->n_vers;
    return err ? err : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* After a rollback: drops the versions cached since the last known commit whose rows are gone,
 * one primary-key lookup each (versions are added by config reloads: a handful). */
static int versions_check(funnel_sla_t *sla)
{
    size_t keep = sla->n_vers_known;
    int err = 0;
    for (size_t i = sla->n_vers_known; i < sla->n_vers; i++) {
        pver_t *v = &sla->vers[i];
        sqlite3_stmt *s = sla_stmt(sla, S_VERSION_EXISTS);
        sqlite3_bind_text(s, 1, v->pol.name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, v->version);
        int rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc == SQLITE_DONE) {
            funnel_sla_policy_clear(&v->pol);
            funnel_calendar_destroy(&v->cal);
        } else {
            err = rc == SQLITE_ROW ? err : FUNNEL_ESTORE; /* kept: checked again next time */
            sla->vers[keep++] = *v;
        }
    }
    sla->n_vers = keep;
    return err;
}

pver_t *sla_version_find(funnel_sla_t *sla, const char *name, int64_t version)
{
    for (size_t i = 0; i < sla->n_vers; i++)
        if (sla->vers[i].version == version && strcmp(sla->vers[i].pol.name, name) == 0)
            return &sla->vers[i];
    return NULL;
}

/* The version new instances of p start under: the latest stored one when its definition is
 * p's, else a new version row (inside the caller's transaction). */
int sla_version_current(funnel_sla_t *sla, const funnel_sla_policy_t *p, pver_t **out)
{
    pver_t *latest = NULL;
    for (size_t i = 0; i < sla->n_vers; i++)
        if (strcmp(sla->vers[i].pol.name, p->name) == 0 &&
            (!latest || sla->vers[i].version > latest->version))
            latest = &sla->vers[i];
    if (latest && latest->pol.hash == p->hash) {
        *out = latest;
        return 0;
    }
    int64_t version = latest ? latest->version + 1 : 1;
    sqlite3_stmt *s = sla_stmt(sla, S_VERSION_ADD);
    sqlite3_bind_text(s, 1, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, version);
    sqlite3_bind_int64(s, 3, (int64_t)p->hash);
    sqlite3_bind_text(s, 4, p->definition, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, p->process, -1, SQLITE_STATIC);
    if (p->responsible)
        sqlite3_bind_text(s, 6, p->responsible, -1, SQLITE_STATIC);
    size_t before = sla->n_vers;
    int rc = sla_step_done(s);
    if (!rc)
        rc = version_add(sla, p->definition, version);
    if (!rc && sla->n_vers == before)
        rc = FUNNEL_EINVAL; /* the definition does not read back: a bug, refuse the event */
    if (!rc) {
        *out = &sla->vers[sla->n_vers - 1];
        funnel_log_info(sla->log, "sla: policy %s version %lld in force for new instances", p->name,
                        (long long)version);
    }
    return rc;
}

/* Whether funneld ever issued sla_id id: ids are given in increasing order and never reused,
 * so every id up to the highest one given (kept or deleted by a recomputation) was. */
static int id_issued(funnel_sla_t *sla, int64_t id, bool *issued)
{
    sqlite3_stmt *s = sla_stmt(sla, S_ID_ISSUED);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    *issued = rc == SQLITE_ROW && sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
}

/* escalation.acknowledged: no further levels or repeats for that instance. One naming an
 * sla_id funneld never issued is refused with its reason: the sender has a wrong id, and an
 * `ok` would tell it the escalation was stopped. One for a met instance, or for one a
 * recomputation replaced (its outputs stay published), changes nothing. */
static int acknowledge(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env)
{
    const Funnel__V1__EscalationAcknowledged *ack = env->escalation_acknowledged;
    char *end;
    inst_t in;
    bool issued = false;
    int64_t id = strtoll(ack->sla_id, &end, 10);
    int rc = *end || end == ack->sla_id ? 0 : id_issued(sla, id, &issued);
    if (rc)
        return rc;
    if (!issued)
        return funnel_router_refuse(router, FUNNEL_REFUSE_ENGINE,
                                    "escalation_acknowledged.sla_id: unknown sla_id '%s'",
                                    ack->sla_id);
    if ((rc = sla_inst_load(sla, id, &in)) == FUNNEL_ENOTFOUND || (!rc && in.state == ST_MET)) {
        funnel_log_info(sla->log, "sla: acknowledgement %s for SLA %s, no longer open",
                        env->event_id, ack->sla_id);
        return 0;
    }
    if (rc)
        return rc;
    snprintf(in.acked_by, sizeof in.acked_by, "%s", ack->by[0] ? ack->by : "-");
    in.next_at = NONE;
    return sla_inst_write(sla, &in);
}

static int sla_on_event(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                        int64_t now_ms)
{
    funnel_sla_t *sla = self;
    /* The timer transaction before this event has ended (a rollback of it was reported). */
    sla->dirty &= ~(unsigned)D_POPPED;
    if (env->body_case == FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED)
        return acknowledge(sla, router, env);
    bool late;
    sla->watermark_before = sla->watermark;
    int rc = sla_horizon_check(sla, router, env);
    rc = rc ? rc : sla_log_event(sla, env, &late);
    if (!rc && late)
        rc = sla_late_event(sla, router, env, now_ms, &late);
    if (!rc && !late)
        rc = sla_hold(sla, env, now_ms, sla->logged);
    rc = rc || late ? rc : sla_key_events(sla, router, env, now_ms);
    for (size_t i = 0; !rc && !late && i < sla->cfg->n_policies; i++)
        if (sla_starts(&sla->cfg->policies[i], env))
            rc = sla_start(sla, router, &sla->cfg->policies[i], env, now_ms);
    rc = rc ? rc : sla_log_flush(sla, env); /* the log rows no instance row claimed */
    rc = rc ? rc : sla_order_event(sla, router, env, now_ms);
    rc = rc ? rc : sla_quota_count(sla, env, now_ms);
    if (!rc)
        sla_watermark_raise(sla, env->occurred_at_ms);
    return rc;
}

/* ---- timers ------------------------------------------------------------------------------ */

static int64_t sla_next_deadline(void *self)
{
    funnel_sla_t *sla = self;
    funnel_timer_entry_t top;
    if (sla->cfg->late_grace_ms != sla->grace_ms)
        return 0; /* a reload changed the grace: on_timer rebuilds the heap at once */
    int64_t next = funnel_timerheap_peek(sla->heap, &top) ? NONE : top.at;
    for (size_t i = 0; i < sla->cfg->n_quotas; i++) {
        quota_state_t *qs = sla_quota_state(sla, &sla->cfg->quotas[i], false);
        /* A quota not yet run (new, reloaded, or after a rollback) runs at once. */
        int64_t at = qs && qs->next_at != INT64_MIN ? qs->next_at : 0;
        next = at < next ? at : next;
    }
    int64_t prune = sla_prune_deadline(sla);
    return prune < next ? prune : next;
}

static int heap_rebuild(funnel_sla_t *sla);

/* Fires what is due: the earliest timers first, at most FUNNEL_SLA_TIMER_BATCH steps, each with
 * its own due time. Heap entries whose time no longer matches the row are stale and dropped. */
static int sla_on_timer(void *self, funnel_router_t *router, int64_t now_ms)
{
    funnel_sla_t *sla = self;
    funnel_timer_entry_t top;
    int rc = 0;
    /* Every earlier transaction has ended, committed or rolled back and reported: memory
     * matches the committed rows. */
    sla->n_vers_known = sla->n_vers;
    sla->dirty = 0;
    /* The heap's times count the grace in force when they were pushed: after a reload changed
     * it, they are recomputed from the rows before anything fires. */
    if (sla->cfg->late_grace_ms != sla->grace_ms) {
        int64_t was = sla->grace_ms;
        sla->grace_ms = sla->cfg->late_grace_ms;
        if ((rc = heap_rebuild(sla))) {
            sla->grace_ms = was; /* next_deadline asks for another pass, which rebuilds again */
            return rc;
        }
    }
    for (int fired = 0; !rc && fired < FUNNEL_SLA_TIMER_BATCH &&
                        !funnel_timerheap_peek(sla->heap, &top) && top.at <= now_ms;) {
        inst_t in;
        funnel_timerheap_pop(sla->heap, &top);
        sla->dirty |= D_POPPED;
        if ((rc = sla_inst_load(sla, top.id, &in)) == FUNNEL_ENOTFOUND) {
            rc = 0;
            continue;
        }
        pver_t *v = rc ? NULL : sla_version_find(sla, in.policy, in.version);
        if (rc || !v || sla_timer_at(sla, &in) != top.at)
            continue;
        fire_ctx_t fc = {sla, router, now_ms, 0};
        rc = sla_steps_before(v, &in, now_ms + 1, sla_fire_step, &fc);
        fired += fc.fired;
        rc = rc ? rc : sla_inst_write(sla, &in);
    }
    for (size_t i = 0; !rc && i < sla->cfg->n_quotas; i++) {
        const funnel_sla_quota_t *q = &sla->cfg->quotas[i];
        quota_state_t *qs = sla_quota_state(sla, q, true);
        if (!qs)
            rc = FUNNEL_ENOMEM;
        else if (qs->next_at <= now_ms)
            rc = sla_quota_run(sla, router, q, now_ms);
    }
    return rc || sla_prune_deadline(sla) > now_ms ? rc : sla_prune(sla, router, now_ms);
}

/* Recounts the instances not met: one scan of the partial index sla_instance_live. */
static int open_recount(funnel_sla_t *sla)
{
    sqlite3_stmt *s = sla_stmt(sla, S_OPEN_COUNT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        sla->open = sqlite3_column_int64(s, 0);
    sqlite3_reset(s); /* a statement left on a row would pin a read snapshot */
    if (rc != SQLITE_ROW)
        return FUNNEL_ESTORE;
    return 0;
}

/* Rebuilds the in-memory view (timer heap, open count) from the rows: at start, when a rollback
 * undid pops, and to shed stale entries (sla_on_rollback). */
static int heap_rebuild(funnel_sla_t *sla)
{
    int rc = open_recount(sla), err = 0;
    if (rc)
        return rc;
    sqlite3_stmt *s = sla_stmt(sla, S_TIMERS);
    funnel_timerheap_clear(sla->heap);
    sla->heap_rebuilds++;
    while (!err && (rc = sqlite3_step(s)) == SQLITE_ROW)
        err = funnel_timerheap_push(
            sla->heap, sla_grace_at(sla, sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)),
            sqlite3_column_int64(s, 0));
    sqlite3_reset(s);
    rc = err ? err : rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
    if (!rc)
        sla->dirty &= ~(unsigned)D_POPPED;
    return rc;
}

/* Stale entries beyond which a rollback rebuilds the heap: a row has at most one live entry,
 * so past this most of the heap is garbage, and rebuilding costs no more than the pushes that
 * made it (amortised O(1) per push) while keeping memory bounded under repeated failures. */
static bool heap_bloated(const funnel_sla_t *sla)
{
    return funnel_timerheap_size(sla->heap) > 2 * (size_t)(sla->open > 0 ? sla->open : 0) + 1024;
}

/* Called for every failed event, so it costs what the rollback can have broken, not the size of
 * the SLA state: entries pushed for undone rows stay in the heap and are dropped when popped;
 * the open count is recounted only if it moved; only versions added since the last known commit
 * are looked up. */
static void sla_on_rollback(void *self)
{
    funnel_sla_t *sla = self;
    /* A rollback to a savepoint leaves the batch's transaction open: what is read now may still
     * be undone, so nothing is marked committed and no entry may be dropped by a rebuild. */
    bool ended = !funnel_store_in_transaction(sla->store);
    /* Quotas recompute from their rows on the next timer pass. */
    for (size_t i = 0; i < sla->n_quotas; i++)
        sla->quotas[i].next_at = INT64_MIN;
    sla_log_last_clear(sla); /* the undone work may have logged rows or pruned them */
    int rc = versions_check(sla);
    if (!rc && (sla->dirty & D_OPEN))
        rc = open_recount(sla);
    if (!rc && ((sla->dirty & D_POPPED) || (ended && heap_bloated(sla))))
        rc = heap_rebuild(sla);
    /* The watermark as stored (lower is safe, see sla_retention.c), or before the event undone;
     * a pass to count the oldest stop again, as the undone prune may have moved it. */
    if (!rc && ended)
        rc = sla_watermark_load(sla);
    else
        sla->watermark = sla->watermark_before;
    sla->prune_at = 0;
    if (rc)
        funnel_log_error(sla->log, "sla: restoring state after a rollback failed: %s",
                         funnel_store_errmsg(sla->store));
    else if (ended) {
        sla->n_vers_known = sla->n_vers;
        sla->dirty = 0;
    }
}

/* ---- life cycle ------------------------------------------------------------------------- */

/* Reads whether instances from before the log exist (migration 12). */
static int prelog_load(funnel_sla_t *sla)
{
    sqlite3_stmt *s = sla_stmt(sla, S_PRELOG);
    int rc = sqlite3_step(s);
    sla->prelog = rc == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : FUNNEL_ESTORE;
}

int funnel_sla_new(funnel_store_t *store, const funnel_sla_config_t *cfg, const funnel_log_t *log,
                   funnel_sla_t **out)
{
    char err[512];
    int rc = FUNNEL_ENOMEM;
    *out = NULL;
    funnel_sla_t *sla = calloc(1, sizeof *sla);
    if (!sla || !(sla->log_last = calloc(LOG_LAST_SLOTS, sizeof *sla->log_last)) ||
        funnel_timerheap_new(&sla->heap))
        goto fail;
    sla->store = store;
    sla->db = funnel_store_db(store);
    sla->cfg = cfg;
    sla->grace_ms = cfg->late_grace_ms;
    sla->log = log;
    if ((rc = funnel_sla_sql_functions(sla->db)))
        goto fail;
    if ((rc = funnel_store_migrate_module(store, "sla", migrations,
                                          (int)(sizeof migrations / sizeof migrations[0]), err,
                                          sizeof err))) {
        funnel_log_error(log, "sla: %s", err);
        goto fail;
    }
    for (int i = 0; i < S_COUNT_; i++) {
        if (sqlite3_prepare_v3(sla->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sla->st[i],
                               NULL) != SQLITE_OK) {
            funnel_log_error(log, "sla: %s", sqlite3_errmsg(sla->db));
            rc = FUNNEL_ESTORE;
            goto fail;
        }
    }
    if ((rc = versions_load(sla)) || (rc = prelog_load(sla)) || (rc = heap_rebuild(sla)) ||
        (rc = sla_watermark_load(sla)) || (rc = sla_oldest_stop_load(sla))) {
        funnel_log_error(log, "sla: loading state failed: %s", funnel_store_errmsg(store));
        goto fail;
    }
    funnel_log_info(log, "sla: %zu policies, %zu quotas, %zu timers pending", cfg->n_policies,
                    cfg->n_quotas, funnel_timerheap_size(sla->heap));
    *out = sla;
    return 0;
fail:
    funnel_sla_destroy(&sla);
    return rc;
}

void funnel_sla_destroy(funnel_sla_t **slap)
{
    if (!slap || !*slap)
        return;
    funnel_sla_t *sla = *slap;
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(sla->st[i]);
    versions_clear(sla);
    free(sla->vers);
    for (size_t i = 0; i < sla->n_quotas; i++) {
        free(sla->quotas[i].name);
        free(sla->quotas[i].time_zone);
        funnel_calendar_destroy(&sla->quotas[i].cal);
    }
    free(sla->quotas);
    funnel_timerheap_destroy(&sla->heap);
    free(sla->log_last);
    free(sla->logged);
    free(sla->pend);
    free(sla);
    *slap = NULL;
}

static int64_t sla_open_items(void *self)
{
    return ((funnel_sla_t *)self)->open;
}

void funnel_sla_hooks(funnel_sla_t *sla, funnel_engine_t *engine)
{
    *engine = (funnel_engine_t){
        .name = "sla",
        .self = sla,
        .on_event = sla_on_event,
        .next_deadline = sla_next_deadline,
        .on_timer = sla_on_timer,
        .on_rollback = sla_on_rollback,
        .open_items = sla_open_items,
    };
}

size_t funnel_sla_timers(const funnel_sla_t *sla)
{
    return funnel_timerheap_size(sla->heap);
}

void funnel_sla_reloads(const funnel_sla_t *sla, size_t *version_loads, size_t *heap_rebuilds)
{
    *version_loads = sla->version_loads;
    *heap_rebuilds = sla->heap_rebuilds;
}

void funnel_sla_store_reads(const funnel_sla_t *sla, size_t *log_reads, size_t *held_reads)
{
    *log_reads = sla->log_reads;
    *held_reads = sla->held_reads;
}

int funnel_sla_engine_create(funnel_store_t *store, const void *section, const funnel_log_t *log,
                             funnel_engine_t *engine)
{
    funnel_sla_t *sla;
    int rc = funnel_sla_new(store, section, log, &sla);
    if (!rc)
        funnel_sla_hooks(sla, engine);
    return rc;
}

void funnel_sla_engine_destroy(void *self)
{
    funnel_sla_t *sla = self;
    funnel_sla_destroy(&sla);
}
