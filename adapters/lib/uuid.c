/* uuid.c — UUIDv7 event ids: time-ordered, so funneld's unique index grows at its right edge. */
#include "funnel/error.h"
#include "funnel/json.h"

#include <stdio.h>
#include <sys/random.h>

int funnel_uuid7(int64_t now_ms, char out[37])
{
    uint8_t b[16];
    if (getrandom(b + 6, 10, 0) != 10)
        return FUNNEL_EIO;
    uint64_t ms = (uint64_t)now_ms;
    for (int i = 5; i >= 0; i--) {
        b[i] = (uint8_t)(ms & 0xff);
        ms >>= 8;
    }
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f)); /* version 7 */
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f)); /* RFC 9562 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}
