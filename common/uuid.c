/* uuid.c — canonical UUID text and its 16 bytes (see funnel/uuid.h). */
#include "funnel/uuid.h"

#include <stddef.h>

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool dash_at(size_t i)
{
    return i == 8 || i == 13 || i == 18 || i == 23;
}

bool funnel_uuid_pack(const char *text, uint8_t out[FUNNEL_UUID_BYTES])
{
    size_t k = 0;
    for (size_t i = 0; i < FUNNEL_UUID_TEXT; i++) {
        if (dash_at(i)) {
            if (text[i] != '-')
                return false;
            continue;
        }
        /* A NUL ends the text: hex_value refuses it before text[i + 1] is read. */
        int hi = hex_value(text[i]);
        int lo = hi < 0 ? -1 : hex_value(text[i + 1]);
        if (hi < 0 || lo < 0 || dash_at(i + 1))
            return false;
        out[k++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    return true;
}

void funnel_uuid_text(const uint8_t bytes[FUNNEL_UUID_BYTES], char out[FUNNEL_UUID_TEXT + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t t = 0;
    for (size_t k = 0; k < FUNNEL_UUID_BYTES; k++) {
        if (dash_at(t))
            out[t++] = '-';
        out[t++] = hex[bytes[k] >> 4];
        out[t++] = hex[bytes[k] & 0xf];
    }
    out[t] = '\0';
}
