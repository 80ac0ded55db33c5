/* sql_fx.h — one value from a SQL query, for tests that look into a database. */
#ifndef FUNNEL_TEST_SQL_FX_H
#define FUNNEL_TEST_SQL_FX_H

#include <sqlite3.h>
#include <stdint.h>

/* One integer from sql on db, with text parameters ?1, ?2... from params (NULL-terminated, may
 * be NULL). Asserts the query prepares and runs; 0 when it returns no row or NULL. */
int64_t fx_sql_int(sqlite3 *db, const char *sql, const char *const *params);

/* fx_sql_int on a read-only connection of its own to the database at path, which waits for a
 * writer's commit (busy timeout) rather than failing beside a running funneld. */
int64_t fx_db_int(const char *path, const char *sql);

#endif
