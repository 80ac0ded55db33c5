/* test_sla_report.c — the SLA report API over known rows: a database given the SLA engine's
 * schema (by the engine's own migrations), filled with instance and policy rows whose every
 * column is chosen here, then read through a read-only store as funnelctl reads it. Each test
 * names the rows it expects, whole. */
#include "harness.h"

#include "funnel/error.h"
#include "sla.h"
#include "funnel/report.h"
#include "funnel/sla_report.h"
#include "select.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define NONE FUNNEL_SLA_REPORT_NONE

static fx_tmpdir_t tmp;
static char db_path[400];
static funnel_store_t *ro; /* the read-only store the reports run on */

/* Columns: id, policy, version, key, owner, state, started_at, anchor_at, consumed_ms, due_at,
 * paused_at, step, next_at, acked_by, start_event, stopped_at, on_time, late_ms, stop_event,
 * opened_at. Row 2 is paused after its due time (not breached: its clock stands), row 4 is
 * running past its due time and acknowledged (breached), row 5 runs under a version whose row
 * is missing. */
static const char rows_sql[] =
    "INSERT INTO sla_policy (name, version, hash, definition) VALUES ('first_call', 1, 11, 'target "
    "= \"1h\";'),"
    " ('first_call', 2, 12, 'target = \"2h\";'), ('renewal', 1, 21, 'target = \"1d\";');"
    "INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at, anchor_at,"
    " consumed_ms, due_at, paused_at, step, next_at, acked_by, start_event, stopped_at, on_time,"
    " late_ms, stop_event, opened_at) VALUES"
    " (1, 'first_call', 1, 'L-1', 'anna', 'open', 1000, 1000, 0, 5000, NULL, 0, 4000, NULL,"
    "  'q-1', NULL, NULL, NULL, NULL, 1000),"
    " (2, 'first_call', 2, 'L-2', 'bob', 'paused', 2000, 2000, 500, 3000, 2500, 1, NULL, NULL,"
    "  'q-2', NULL, NULL, NULL, NULL, 2000),"
    " (3, 'first_call', 1, 'L-3', 'anna', 'met', 1500, 1500, 0, 6000, NULL, 1, NULL, NULL,"
    "  'q-3', 2600, 1, 0, 'c-3', 1500),"
    " (4, 'renewal', 1, 'C-4', 'bob', 'open', 100, 100, 0, 200, NULL, 2, 300, 'oncall-bob',"
    "  's-4', NULL, NULL, NULL, NULL, 100),"
    " (5, 'renewal', 3, 'C-5', 'anna', 'met', 8000, 8000, 0, 8300, NULL, 1, NULL, NULL,"
    "  's-5', 9000, 0, 700, 'p-5', 8000);";

static void setup(void)
{
    char err[512];
    funnel_store_t *rw;
    funnel_sla_t *sla;
    funnel_sla_config_t cfg;
    fx_tmpdir_make(&tmp);
    snprintf(db_path, sizeof db_path, "%s/sla.db", tmp.path);
    cr_assert_eq(funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &rw, err, sizeof err),
                 0, "%s", err);
    funnel_sla_config_defaults(&cfg);
    cr_assert_eq(funnel_sla_new(rw, &cfg, NULL, &sla), 0, "%s", funnel_store_errmsg(rw));
    funnel_sla_destroy(&sla);
    funnel_sla_config_clear(&cfg);
    cr_assert_eq(sqlite3_exec(funnel_store_db(rw), rows_sql, NULL, NULL, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(funnel_store_db(rw)));
    funnel_store_destroy(&rw);
    cr_assert_eq(funnel_store_open(db_path, true, FUNNEL_STORE_SYNC_NORMAL, &ro, err, sizeof err),
                 0, "%s", err);
}

static void teardown(void)
{
    funnel_store_destroy(&ro);
    fx_tmpdir_remove(&tmp);
}

TestSuite(sla_report, .init = setup, .fini = teardown, .timeout = 60);

/* Every column of row `id` as the rows above have it, with the state shown at now 4500. */
static funnel_sla_row_t expected(int64_t id)
{
    switch (id) {
    case 1:
        return (funnel_sla_row_t){1,  "first_call", 1,     "L-1", "anna", "open", 1000, 5000, 4000,
                                  0,  "",           "q-1", NONE,  -1,     NONE,   "",   NULL, "",
                                  "", "",           0,     0};
    case 2:
        return (funnel_sla_row_t){2,  "first_call", 2,     "L-2", "bob", "paused", 2000, 3000, NONE,
                                  1,  "",           "q-2", NONE,  -1,    NONE,     "",   NULL, "",
                                  "", "",           0,     0};
    case 3:
        return (funnel_sla_row_t){3,  "first_call", 1,     "L-3", "anna", "met", 1500,  6000, NONE,
                                  1,  "",           "q-3", 2600,  1,      0,     "c-3", NULL, "",
                                  "", "",           0,     0};
    case 4:
        return (funnel_sla_row_t){4,  "renewal",    1,     "C-4", "bob", "breached", 100, 200,  300,
                                  2,  "oncall-bob", "s-4", NONE,  -1,    NONE,       "",  NULL, "",
                                  "", "",           0,     0};
    default:
        return (funnel_sla_row_t){5,    "renewal", 3,  "C-5", "anna", "met", 8000, 8300,
                                  NONE, 1,         "", "s-5", 9000,   0,     700,  "p-5",
                                  NULL, "",        "", "",    0,      0};
    }
}

static void row_check(const funnel_sla_row_t *got, const funnel_sla_row_t *want)
{
    cr_assert_eq(got->sla_id, want->sla_id);
    cr_assert_str_eq(got->policy, want->policy, "sla_id %lld", (long long)want->sla_id);
    cr_assert_eq(got->version, want->version, "sla_id %lld", (long long)want->sla_id);
    cr_assert_str_eq(got->key, want->key);
    cr_assert_str_eq(got->owner, want->owner);
    cr_assert_str_eq(got->state, want->state, "sla_id %lld", (long long)want->sla_id);
    cr_assert_eq(got->started_at_ms, want->started_at_ms);
    cr_assert_eq(got->due_at_ms, want->due_at_ms, "sla_id %lld", (long long)want->sla_id);
    cr_assert_eq(got->next_at_ms, want->next_at_ms, "sla_id %lld", (long long)want->sla_id);
    cr_assert_eq(got->step, want->step);
    cr_assert_str_eq(got->acked_by, want->acked_by);
    cr_assert_str_eq(got->start_event, want->start_event);
    cr_assert_eq(got->stopped_at_ms, want->stopped_at_ms, "sla_id %lld", (long long)want->sla_id);
    cr_assert_eq(got->on_time, want->on_time, "sla_id %lld", (long long)want->sla_id);
    cr_assert_eq(got->late_ms, want->late_ms, "sla_id %lld", (long long)want->sla_id);
    cr_assert_str_eq(got->stop_event, want->stop_event);
}

/* Lists with filter f at now and checks the result is exactly the rows ids[0..n), whole. */
static void list_check(const funnel_sla_report_filter_t *f, int64_t now, const int64_t *ids,
                       size_t n)
{
    funnel_sla_report_list_t *list;
    cr_assert_eq(funnel_sla_report_list(ro, f, now, &list), 0);
    cr_assert_eq(list->n_rows, n, "%zu rows, want %zu", list->n_rows, n);
    for (size_t i = 0; i < n; i++) {
        funnel_sla_row_t want = expected(ids[i]);
        if (now != 4500 && !strcmp(want.state, "open") && want.due_at_ms <= now)
            snprintf(want.state, sizeof want.state, "breached");
        row_check(&list->rows[i], &want);
        cr_assert_null(list->rows[i].definition, "a list carries no definitions");
    }
    funnel_sla_report_list_free(&list);
    cr_assert_null(list);
}

Test(sla_report, lists_every_instance_in_sla_id_order_with_the_state_shown_now)
{
    list_check(NULL, 4500, (int64_t[]){1, 2, 3, 4, 5}, 5);
}

Test(sla_report, open_takes_paused_ones_and_breached_is_live_running_and_past_due)
{
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_OPEN}, 4500,
               (int64_t[]){1, 2}, 2);
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_BREACHED}, 4500,
               (int64_t[]){4}, 1);
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_MET}, 4500,
               (int64_t[]){3, 5}, 2);
}

Test(sla_report, breached_follows_the_callers_clock_up_to_the_due_time_inclusive)
{
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_BREACHED}, 4999,
               (int64_t[]){4}, 1);
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_BREACHED}, 5000,
               (int64_t[]){1, 4}, 2);
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_OPEN}, 5000, (int64_t[]){2},
               1);
}

Test(sla_report, policy_owner_and_limit_filter_together)
{
    list_check(&(funnel_sla_report_filter_t){.policy = "first_call"}, 4500, (int64_t[]){1, 2, 3},
               3);
    list_check(&(funnel_sla_report_filter_t){.owner = "anna"}, 4500, (int64_t[]){1, 3, 5}, 3);
    list_check(&(funnel_sla_report_filter_t){.owner = "anna", .state = FUNNEL_SLA_REPORT_MET}, 4500,
               (int64_t[]){3, 5}, 2);
    list_check(&(funnel_sla_report_filter_t){.policy = "renewal", .owner = "bob"}, 4500,
               (int64_t[]){4}, 1);
    list_check(&(funnel_sla_report_filter_t){.policy = "none"}, 4500, NULL, 0);
    /* The limit counts rows that pass the filter, not rows read. */
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_MET, .limit = 1}, 4500,
               (int64_t[]){3}, 1);
    list_check(&(funnel_sla_report_filter_t){.limit = 2}, 4500, (int64_t[]){1, 2}, 2);
}

Test(sla_report, a_bad_filter_is_refused_and_returns_no_list)
{
    funnel_sla_report_list_t *list = (funnel_sla_report_list_t *)&tmp;
    cr_assert_eq(funnel_sla_report_list(ro, &(funnel_sla_report_filter_t){.limit = -1}, 0, &list),
                 FUNNEL_EINVAL);
    cr_assert_null(list);
    cr_assert_eq(funnel_sla_report_list(ro, &(funnel_sla_report_filter_t){.state = 9}, 0, &list),
                 FUNNEL_EINVAL);
    cr_assert_null(list);
}

Test(sla_report, show_has_the_instance_and_its_versions_definition)
{
    funnel_sla_row_t *row;
    cr_assert_eq(funnel_sla_report_show(ro, 2, 4500, &row), 0);
    funnel_sla_row_t want = expected(2);
    row_check(row, &want);
    cr_assert_str_eq(row->definition, "target = \"2h\";", "version 2's text, not version 1's");
    funnel_sla_report_row_free(&row);
    cr_assert_null(row);
    cr_assert_eq(funnel_sla_report_show(ro, 4, 4500, &row), 0);
    want = expected(4);
    row_check(row, &want);
    cr_assert_str_eq(row->definition, "target = \"1d\";");
    funnel_sla_report_row_free(&row);
}

Test(sla_report, show_of_a_version_without_its_row_has_no_definition)
{
    funnel_sla_row_t *row;
    cr_assert_eq(funnel_sla_report_show(ro, 5, 4500, &row), 0);
    funnel_sla_row_t want = expected(5);
    row_check(row, &want);
    cr_assert_null(row->definition);
    funnel_sla_report_row_free(&row);
}

Test(sla_report, show_of_an_unknown_sla_id_is_not_found)
{
    funnel_sla_row_t *row = (funnel_sla_row_t *)&tmp;
    cr_assert_eq(funnel_sla_report_show(ro, 424242, 4500, &row), FUNNEL_ENOTFOUND);
    cr_assert_null(row);
}

/* A database funneld never ran the SLA engine on has no SLA tables: an error, not an empty
 * list that would say "no instances". */
Test(sla_report, a_database_without_sla_tables_is_an_error_not_an_empty_list)
{
    char err[512], path[450];
    funnel_store_t *bare, *bare_ro;
    snprintf(path, sizeof path, "%s/bare.db", tmp.path);
    cr_assert_eq(funnel_store_open(path, false, FUNNEL_STORE_SYNC_NORMAL, &bare, err, sizeof err),
                 0, "%s", err);
    funnel_store_destroy(&bare);
    cr_assert_eq(funnel_store_open(path, true, FUNNEL_STORE_SYNC_NORMAL, &bare_ro, err, sizeof err),
                 0, "%s", err);
    funnel_sla_report_list_t *list = (funnel_sla_report_list_t *)&tmp;
    funnel_sla_row_t *row = (funnel_sla_row_t *)&tmp;
    cr_assert_eq(funnel_sla_report_list(bare_ro, NULL, 0, &list), FUNNEL_ESTORE);
    cr_assert_null(list);
    cr_assert_eq(funnel_sla_report_show(bare_ro, 1, 0, &row), FUNNEL_ESTORE);
    cr_assert_null(row);
    funnel_store_destroy(&bare_ro);
}

/* ---- compliance (funnel/report.h), over the same rows ------------------------------------ */

static void comp_check(const funnel_report_compliance_row_t *got, const char *group, int64_t week,
                       const int64_t want[7])
{
    cr_assert_str_eq(got->group, group);
    cr_assert_eq(got->week_ms, week, "%s: week %lld", group, (long long)got->week_ms);
    const int64_t have[7] = {got->instances, got->met_on_time, got->met_late, got->open,
                             got->breached,  got->median_ms,   got->p90_ms};
    for (int i = 0; i < 7; i++)
        cr_assert_eq(have[i], want[i], "%s: figure %d is %lld, not %lld", group, i,
                     (long long)have[i], (long long)want[i]);
}

/* At 4500: anna has 1 open (due 5000), 3 met on time after 1100 ms, 5 met late after 1000 ms;
 * bob has 2 paused (open) and 4 breached. Per policy and week: all in the week of 1969-12-29. */
Test(sla_report, compliance_per_owner_and_per_policy_and_week_is_exact)
{
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, INT64_MIN, INT64_MAX, 4500, &c), 0);
    cr_assert_eq(c->n, 2);
    comp_check(&c->rows[0], "anna", NONE, (int64_t[]){3, 1, 1, 1, 0, 1000, 1100});
    comp_check(&c->rows[1], "bob", NONE, (int64_t[]){2, 0, 0, 1, 1, NONE, NONE});
    funnel_report_compliance_free(&c);
    const int64_t week = -3 * 86400000LL;
    cr_assert_eq(funnel_report_compliance(ro, "policy", true, INT64_MIN, INT64_MAX, 4500, &c), 0);
    cr_assert_eq(c->n, 2);
    comp_check(&c->rows[0], "first_call", week, (int64_t[]){3, 1, 0, 2, 0, 1100, 1100});
    comp_check(&c->rows[1], "renewal", week, (int64_t[]){2, 0, 1, 0, 1, 1000, 1000});
    funnel_report_compliance_free(&c);
    /* Opened in [1500, 8000): 3 and 2 only. */
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, 1500, 8000, 4500, &c), 0);
    cr_assert_eq(c->n, 2);
    comp_check(&c->rows[0], "anna", NONE, (int64_t[]){1, 1, 0, 0, 0, 1100, 1100});
    comp_check(&c->rows[1], "bob", NONE, (int64_t[]){1, 0, 0, 1, 0, NONE, NONE});
    funnel_report_compliance_free(&c);
}

static int count_sorts(unsigned type, void *ctx, void *stmt, void *x)
{
    (void)x;
    if (type == SQLITE_TRACE_PROFILE)
        *(int *)ctx += sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_SORT, 0) +
                       sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_AUTOINDEX, 0);
    return 0;
}

/* sla_instance has no index on owner, policy or opening time (and funneld's schema is not the
 * reader's to change): an ORDER BY there sorts every instance in a temporary B-tree, which
 * took most of the 300-440 ms of a compliance request at 100,000 leads. The report sorts
 * compact rows itself, so SQLite must not sort; 300 owners added in reverse order still come
 * out in byte order ("Zed" before "anna"), each once. */
Test(sla_report, compliance_reads_without_an_sqlite_sort_and_orders_groups_bytewise)
{
    char err[512], sql[256];
    funnel_store_t *rw;
    funnel_store_destroy(&ro);
    cr_assert_eq(funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &rw, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(funnel_sla_sql_functions(funnel_store_db(rw)), 0); /* the triggers' */
    for (int i = 300; i > 0; i--) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at,"
                 " anchor_at, consumed_ms, step, start_event, opened_at) VALUES (%d, 'renewal', 1,"
                 " 'K-%d', '%s%03d', 'open', 10, 10, 0, 0, 'e-%d', 10)",
                 100 + i, i, i == 1 ? "Zed" : "o-", i, i);
        cr_assert_eq(sqlite3_exec(funnel_store_db(rw), sql, NULL, NULL, NULL), SQLITE_OK);
    }
    funnel_store_destroy(&rw);
    cr_assert_eq(funnel_store_open(db_path, true, FUNNEL_STORE_SYNC_NORMAL, &ro, err, sizeof err),
                 0, "%s", err);
    int sorts = 0;
    sqlite3_trace_v2(funnel_store_db(ro), SQLITE_TRACE_PROFILE, count_sorts, &sorts);
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", true, INT64_MIN, INT64_MAX, 4500, &c), 0);
    sqlite3_trace_v2(funnel_store_db(ro), 0, NULL, NULL);
    cr_assert_eq(sorts, 0, "SQLite sorted %d times", sorts);
    cr_assert_eq(c->n, 302);
    cr_assert_str_eq(c->rows[0].group, "Zed001");
    cr_assert_str_eq(c->rows[1].group, "anna");
    cr_assert_str_eq(c->rows[2].group, "bob");
    for (size_t i = 3; i < c->n; i++) {
        cr_assert_lt(strcmp(c->rows[i - 1].group, c->rows[i].group), 0);
        cr_assert_eq(c->rows[i].instances, 1);
    }
    funnel_report_compliance_free(&c);
}

/* Runs sql on the database read-write, then reopens the read-only store. */
static void rows_change(const char *sql)
{
    char err[512];
    funnel_store_t *rw;
    funnel_store_destroy(&ro);
    cr_assert_eq(funnel_store_open(db_path, false, FUNNEL_STORE_SYNC_NORMAL, &rw, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(funnel_sla_sql_functions(funnel_store_db(rw)), 0); /* the triggers' */
    cr_assert_eq(sqlite3_exec(funnel_store_db(rw), sql, NULL, NULL, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(funnel_store_db(rw)));
    funnel_store_destroy(&rw);
    cr_assert_eq(funnel_store_open(db_path, true, FUNNEL_STORE_SYNC_NORMAL, &ro, err, sizeof err),
                 0, "%s", err);
}

/* A whole day whose kept row holds expired instances only has no stop times at all (UBSan once
 * stopped funnel-web on such a window: a copy from a NULL array of none). */
Test(sla_report, a_day_of_expired_instances_only_is_all_breached)
{
    const int64_t day = 10 * 86400000LL;
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at,"
             " anchor_at, consumed_ms, step, start_event, stopped_at, on_time, opened_at)"
             " VALUES (90, 'renewal', 1, 'X-1', 'dora', 'met', %lld, %lld, 0, 1, 'x-1', %lld, 0,"
             " %lld)",
             (long long)day + 5, (long long)day + 5, (long long)day + 9, (long long)day + 5);
    rows_change(sql);
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, day, day + 86400000LL, day, &c), 0);
    cr_assert_eq(c->n, 1);
    comp_check(&c->rows[0], "dora", NONE, (int64_t[]){1, 0, 0, 0, 1, NONE, NONE});
    funnel_report_compliance_free(&c);
}

/* Times to stop are the business time the engine stored at the stop (row 5: 400 of its 1000
 * wall-clock ms); a met row without it (row 3, met by an older funneld) falls back to its
 * wall-clock 1100 ms. anna: [400, 1100], median 400, p90 1100. */
Test(sla_report, compliance_times_are_the_stored_business_time_else_wall_clock)
{
    rows_change("UPDATE sla_instance SET stop_business_ms = 400 WHERE id = 5");
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, INT64_MIN, INT64_MAX, 4500, &c), 0);
    comp_check(&c->rows[0], "anna", NONE, (int64_t[]){3, 1, 1, 1, 0, 400, 1100});
    funnel_report_compliance_free(&c);
    rows_change("UPDATE sla_instance SET stop_business_ms = 300 WHERE id = 3");
    cr_assert_eq(funnel_report_compliance(ro, "policy", false, INT64_MIN, INT64_MAX, 4500, &c), 0);
    comp_check(&c->rows[0], "first_call", NONE, (int64_t[]){3, 1, 0, 2, 0, 300, 300});
    comp_check(&c->rows[1], "renewal", NONE, (int64_t[]){2, 0, 1, 0, 1, 400, 400});
    funnel_report_compliance_free(&c);
}

/* A database of a funneld from before the column: wall-clock times, no error. */
Test(sla_report, compliance_on_a_database_without_the_business_time_column_is_wall_clock)
{
    rows_change("DROP TRIGGER sla_compliance_insert; DROP TRIGGER sla_compliance_update;"
                "DROP TRIGGER sla_compliance_met;"
                "DROP TRIGGER sla_compliance_delete; DROP TABLE sla_compliance;"
                "DROP INDEX sla_instance_idle;"
                "ALTER TABLE sla_instance DROP COLUMN stop_business_ms");
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, INT64_MIN, INT64_MAX, 4500, &c), 0);
    comp_check(&c->rows[0], "anna", NONE, (int64_t[]){3, 1, 1, 1, 0, 1000, 1100});
    funnel_report_compliance_free(&c);
}

static int count_vm_steps(unsigned type, void *ctx, void *stmt, void *x)
{
    (void)x;
    if (type == SQLITE_TRACE_PROFILE)
        *(int *)ctx += sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_VM_STEP, 0);
    return 0;
}

/* The SLA board lists the live instances (open, paused, breached), a few hundred among every
 * instance ever opened: such a list must read the live ones only, not step through the met
 * history (at 100,000 leads a scan of it took 230 ms a request). 5,000 met instances added:
 * the open and breached lists still come out exact in fewer VM steps than there are met rows. */
Test(sla_report, live_lists_do_not_read_the_met_history)
{
    rows_change("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
                " INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at,"
                " anchor_at, consumed_ms, step, start_event, stopped_at, on_time, opened_at)"
                " SELECT 100 + i, 'renewal', 1, 'M-' || i, 'anna', 'met', 10, 10, 0, 1, 'm-' || i,"
                " 20, 1, 10 FROM n");
    int steps = 0;
    sqlite3_trace_v2(funnel_store_db(ro), SQLITE_TRACE_PROFILE, count_vm_steps, &steps);
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_OPEN}, 4500,
               (int64_t[]){1, 2}, 2);
    list_check(&(funnel_sla_report_filter_t){.state = FUNNEL_SLA_REPORT_BREACHED, .owner = "bob"},
               4500, (int64_t[]){4}, 1);
    sqlite3_trace_v2(funnel_store_db(ro), 0, NULL, NULL);
    cr_assert_lt(steps, 5000, "%d VM steps for 4 live instances", steps);
}

/* Compliance is asked after every funneld commit under live ingest (funnel-web keeps an answer
 * only until then): it must not step through every instance ever met (at 1M leads that took
 * 400-630 ms a request). 5,000 met instances of one day, owner and policy added: whole-year
 * figures, per week and not, come out exact in fewer VM steps than there are met rows, from the
 * row the engine keeps for them; a range that cuts a day still reads the instances. */
Test(sla_report, compliance_does_not_read_the_met_history)
{
    rows_change("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
                " INSERT INTO sla_instance (id, policy, version, key, owner, state, started_at,"
                " anchor_at, consumed_ms, step, start_event, stopped_at, on_time, opened_at,"
                " stop_business_ms, stop_event) SELECT 100 + i, 'renewal', 1, 'M-' || i, 'carl',"
                " 'met', 10, 10, 0, 1, 'm-' || i, 20, i % 2, 10, i, 's-' || i FROM n");
    for (int week = 0; week < 2; week++) {
        int steps = 0;
        funnel_report_compliance_t *c = NULL;
        sqlite3_trace_v2(funnel_store_db(ro), SQLITE_TRACE_PROFILE, count_vm_steps, &steps);
        cr_assert_eq(funnel_report_compliance(ro, "owner", week, INT64_MIN, INT64_MAX, 4500, &c),
                     0);
        sqlite3_trace_v2(funnel_store_db(ro), 0, NULL, NULL);
        cr_assert_lt(steps, 5000, "%d VM steps for 5,000 met instances", steps);
        cr_assert_eq(c->n, 3);
        comp_check(&c->rows[2], "carl", week ? -3 * 86400000LL : NONE,
                   (int64_t[]){5000, 2500, 2500, 0, 0, 2500, 4500});
        funnel_report_compliance_free(&c);
    }
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, 5, INT64_MAX, 4500, &c), 0);
    comp_check(&c->rows[2], "carl", NONE, (int64_t[]){5000, 2500, 2500, 0, 0, 2500, 4500});
    funnel_report_compliance_free(&c);
}

/* The figures depend on the clock only through running instances reaching their due time: they
 * say until when they hold (funnel-web keeps an answer that long). At 4500 row 1 (running, due
 * 5000) counts open; from 5000 it is breached and nothing else can change by the clock alone
 * (row 2 is paused, row 4 already breached). */
Test(sla_report, compliance_says_until_when_its_figures_hold)
{
    funnel_report_compliance_t *c = NULL;
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, INT64_MIN, INT64_MAX, 4500, &c), 0);
    cr_assert_eq(c->valid_until_ms, 5000);
    funnel_report_compliance_free(&c);
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, INT64_MIN, INT64_MAX, 5000, &c), 0);
    cr_assert_eq(c->valid_until_ms, INT64_MAX);
    comp_check(&c->rows[0], "anna", NONE, (int64_t[]){3, 1, 1, 0, 1, 1000, 1100});
    funnel_report_compliance_free(&c);
    /* opened in [1500, 8000): row 1 is outside, nothing in range is running with a due time */
    cr_assert_eq(funnel_report_compliance(ro, "owner", false, 1500, 8000, 4500, &c), 0);
    cr_assert_eq(c->valid_until_ms, INT64_MAX);
    funnel_report_compliance_free(&c);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Compliance's percentiles and the funnel's medians take one rank by selection: every rank of
 * arrays with many repeats, runs and extremes equals the sorted array's. */
Test(sla_report, selection_gives_the_rank_a_sort_gives)
{
    enum { N = 301 };
    int64_t v[N], sorted[N], work[N];
    uint64_t x = 88172645463325252ULL;
    for (int shape = 0; shape < 4; shape++) {
        for (int i = 0; i < N; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v[i] = shape == 0   ? (int64_t)(x % 7)               /* many repeats */
                   : shape == 1 ? i                              /* sorted */
                   : shape == 2 ? N - i                          /* reversed */
                                : (int64_t)x * (x & 1 ? 1 : -1); /* extremes */
        }
        memcpy(sorted, v, sizeof v);
        qsort(sorted, N, sizeof *sorted, cmp_i64);
        for (size_t n = 1; n <= N; n += 50)
            for (size_t k = 0; k < n; k++) {
                memcpy(work, v, n * sizeof *v);
                memcpy(sorted, v, n * sizeof *v);
                qsort(sorted, n, sizeof *sorted, cmp_i64);
                cr_assert_eq(funnel_select_nth(work, n, k), sorted[k], "shape %d n %zu k %zu",
                             shape, n, k);
            }
    }
}
