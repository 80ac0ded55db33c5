/* event_form.c — the stored form of an event's id and envelope (see event_form.h). */
#include "event_form.h"

#include "funnel/uuid.h"

#include <stdbool.h>
#include <string.h>

#define ID_TAG     0x0a /* field 1 (event_id), wire type 2 (length-delimited) */
#define MARK       0x00 /* no protobuf tag: "the whole envelope follows" */
#define VARINT_MAX 10

size_t funnel_event_key_pack(const char *id, size_t len, uint8_t key[FUNNEL_EVENT_KEY_UUID])
{
    return len == FUNNEL_UUID_TEXT && funnel_uuid_pack(id, key) ? FUNNEL_EVENT_KEY_UUID : 0;
}

/* The id field as a conforming encoder writes it first: tag, minimal varint length. Returns the
 * header's bytes (the id's own bytes follow it). */
static size_t id_header(size_t id_len, uint8_t hdr[1 + VARINT_MAX])
{
    size_t n = 0;
    hdr[n++] = ID_TAG;
    do {
        hdr[n++] = (uint8_t)((id_len & 0x7f) | (id_len > 0x7f ? 0x80 : 0));
        id_len >>= 7;
    } while (id_len);
    return n;
}

long funnel_event_envelope_skip(const char *id, size_t id_len, const uint8_t *env, size_t len)
{
    uint8_t hdr[1 + VARINT_MAX];
    size_t h = id_header(id_len, hdr);
    if (len >= h + id_len && memcmp(env, hdr, h) == 0 && memcmp(env + h, id, id_len) == 0) {
        size_t skip = h + id_len;
        /* What is left must not read as one of the other two forms. */
        if (skip == len || (env[skip] != MARK && env[skip] != ID_TAG))
            return (long)skip;
    }
    return len && env[0] == ID_TAG ? 0 : -1;
}

/* ---- SQL functions ------------------------------------------------------------------------- */

/* The id of an event_id column value as text: a UUID key's canonical text, else the text. */
static const char *id_of(sqlite3_value *v, char buf[FUNNEL_UUID_TEXT + 1], size_t *len)
{
    if (sqlite3_value_type(v) == SQLITE_BLOB && sqlite3_value_bytes(v) == FUNNEL_EVENT_KEY_UUID) {
        funnel_uuid_text(sqlite3_value_blob(v), buf);
        *len = FUNNEL_UUID_TEXT;
        return buf;
    }
    const char *text = (const char *)sqlite3_value_text(v);
    *len = (size_t)sqlite3_value_bytes(v);
    return text;
}

static void sql_event_id(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    char buf[FUNNEL_UUID_TEXT + 1];
    size_t len = 0;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL)
        return; /* NULL in, NULL out */
    const char *id = id_of(argv[0], buf, &len);
    if (!id)
        sqlite3_result_error_nomem(cx);
    else
        sqlite3_result_text(cx, id, (int)len, SQLITE_TRANSIENT);
}

static void sql_envelope(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[1]) == SQLITE_NULL)
        return;
    const uint8_t *stored = sqlite3_value_blob(argv[1]);
    size_t n = (size_t)sqlite3_value_bytes(argv[1]);
    if (n && stored[0] == ID_TAG) {
        sqlite3_result_blob(cx, stored, (int)n, SQLITE_TRANSIENT);
        return;
    }
    if (n && stored[0] == MARK) {
        sqlite3_result_blob(cx, stored + 1, (int)n - 1, SQLITE_TRANSIENT);
        return;
    }
    char buf[FUNNEL_UUID_TEXT + 1];
    size_t id_len = 0;
    const char *id = id_of(argv[0], buf, &id_len);
    uint8_t hdr[1 + VARINT_MAX];
    size_t h = id_header(id_len, hdr);
    uint8_t *out = id ? sqlite3_malloc64(h + id_len + n + 1) : NULL;
    if (!out) {
        sqlite3_result_error_nomem(cx);
        return;
    }
    memcpy(out, hdr, h);
    memcpy(out + h, id, id_len);
    if (n)
        memcpy(out + h + id_len, stored, n);
    sqlite3_result_blob64(cx, out, h + id_len + n, sqlite3_free);
}

static void sql_event_key(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    uint8_t key[FUNNEL_EVENT_KEY_UUID];
    const char *id = (const char *)sqlite3_value_text(argv[0]);
    size_t len = (size_t)sqlite3_value_bytes(argv[0]);
    if (id && funnel_event_key_pack(id, len, key))
        sqlite3_result_blob(cx, key, sizeof key, SQLITE_TRANSIENT);
    else
        sqlite3_result_value(cx, argv[0]);
}

static void sql_envelope_pack(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *id = (const char *)sqlite3_value_text(argv[0]);
    size_t id_len = (size_t)sqlite3_value_bytes(argv[0]);
    const uint8_t *env = sqlite3_value_blob(argv[1]);
    size_t len = (size_t)sqlite3_value_bytes(argv[1]);
    long skip = id ? funnel_event_envelope_skip(id, id_len, env, len) : 0;
    if (skip >= 0) {
        sqlite3_result_blob(cx, len ? env + skip : (const void *)"", (int)(len - (size_t)skip),
                            SQLITE_TRANSIENT);
        return;
    }
    uint8_t *out = sqlite3_malloc64(len + 1);
    if (!out) {
        sqlite3_result_error_nomem(cx);
        return;
    }
    out[0] = MARK;
    if (len)
        memcpy(out + 1, env, len);
    sqlite3_result_blob64(cx, out, len + 1, sqlite3_free);
}

int funnel_event_form_register(sqlite3 *db)
{
    static const struct {
        const char *name;
        int argc;
        void (*fn)(sqlite3_context *, int, sqlite3_value **);
    } fns[] = {
        {"funnel_event_id", 1, sql_event_id},
        {"funnel_envelope", 2, sql_envelope},
        {"funnel_event_key", 1, sql_event_key},
        {"funnel_envelope_pack", 2, sql_envelope_pack},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        int rc = sqlite3_create_function_v2(db, fns[i].name, fns[i].argc,
                                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                            NULL, fns[i].fn, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}
