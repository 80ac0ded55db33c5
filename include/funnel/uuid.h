/* uuid.h — the canonical text of a UUID (8-4-4-4-12 lowercase hex, 36 characters) and its 16
 * bytes, for keys that keep such ids compactly. Only lowercase text packs: the upper-case text
 * of the same UUID is another id to funnel (ids compare byte for byte), kept as it came. */
#ifndef FUNNEL_UUID_H
#define FUNNEL_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define FUNNEL_UUID_TEXT  36
#define FUNNEL_UUID_BYTES 16

/* True, with out filled, when the first 36 characters of text are a canonical lowercase UUID
 * (text may go on after them; the caller decides what that means). */
bool funnel_uuid_pack(const char *text, uint8_t out[FUNNEL_UUID_BYTES]);

/* The canonical text of 16 bytes, NUL-terminated. */
void funnel_uuid_text(const uint8_t bytes[FUNNEL_UUID_BYTES], char out[FUNNEL_UUID_TEXT + 1]);

#endif
