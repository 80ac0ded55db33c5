/* sql_fx.c — see sql_fx.h. */
#include "sql_fx.h"

#include <criterion/criterion.h>

int64_t fx_sql_int(sqlite3 *db, const char *sql, const char *const *params)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    for (int i = 0; params && params[i]; i++)
        sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    /* A failing query must fail the test, not read as 0. */
    cr_assert(rc == SQLITE_ROW || rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return v;
}

int64_t fx_db_int(const char *path, const char *sql)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK, "%s", path);
    sqlite3_busy_timeout(db, 5000);
    int64_t v = fx_sql_int(db, sql, NULL);
    sqlite3_close(db);
    return v;
}
