/* event_form.h — how an events row holds an event's id and envelope, and how the exact bytes
 * come back.
 *
 * The id is the dedupe key, kept in events.event_id and its UNIQUE index for good. A canonical
 * lowercase UUID text (36 characters: 8-4-4-4-12 lowercase hex, what UUIDv7 publishers send) is
 * kept as its 16 bytes, a BLOB; any other id stays TEXT as received. The mapping is one to one:
 * a TEXT value is never such a UUID, and SQLite never finds a BLOB equal to a TEXT, so an id is
 * a duplicate exactly when its key is.
 *
 * The envelope as received starts, from every conforming publisher, with its event_id (field 1,
 * tag 0x0a): the row's key holds those bytes already, so the stored envelope leaves them out.
 * The stored form is one of
 *   - the envelope after its leading id field, when that field is exactly the canonical encoding
 *     of the row's id: 0x0a, the length as a minimal varint, the id's bytes (what is left never
 *     starts with 0x00 or 0x0a: such an envelope is kept whole instead);
 *   - the whole envelope when it starts with 0x0a (some other first field 1);
 *   - 0x00 followed by the whole envelope otherwise (0x00 is no protobuf tag).
 * so reading it back is unambiguous and gives the received bytes. */
#ifndef FUNNEL_EVENT_FORM_H
#define FUNNEL_EVENT_FORM_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "funnel/uuid.h"

#define FUNNEL_EVENT_KEY_UUID FUNNEL_UUID_BYTES /* bytes of a UUID id's key */

/* Fills key and returns FUNNEL_EVENT_KEY_UUID when id (len bytes) is a canonical lowercase UUID;
 * returns 0 when the id is kept as its text. */
size_t funnel_event_key_pack(const char *id, size_t len, uint8_t key[FUNNEL_EVENT_KEY_UUID]);

/* How many leading bytes of the envelope its stored form leaves out (0: kept whole), or -1 when
 * the stored form is 0x00 followed by the whole envelope. */
long funnel_event_envelope_skip(const char *id, size_t id_len, const uint8_t *env, size_t len);

/* Registers, on the connection, the SQL functions every reader of the events table uses:
 *   funnel_event_id(event_id)             the id as text, from the column's TEXT or BLOB;
 *   funnel_envelope(event_id, envelope)   the envelope as received, from the stored form;
 * and for the migration that converted rows of the schema before:
 *   funnel_event_key(id_text)             what the event_id column holds for that id;
 *   funnel_envelope_pack(id_text, env)    the stored form of a whole envelope.
 * Returns SQLITE_OK or SQLite's error. */
int funnel_event_form_register(sqlite3 *db);

#endif
