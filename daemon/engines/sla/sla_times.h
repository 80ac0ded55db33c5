/* sla_times.h — the stop times of sla_compliance.times: a blob of int64 values, 8 bytes each,
 * little-endian, in ascending order (one canonical blob per multiset, whatever the order the
 * instances were met in). Written by the engine's SQL functions (sla_compliance.c) and read by
 * the compliance report (adapters/report/compliance.c). */
#ifndef FUNNEL_SLA_TIMES_H
#define FUNNEL_SLA_TIMES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SLA_TIMES_SIZE 8 /* bytes per value */

static inline int64_t sla_times_get(const unsigned char *blob, size_t i)
{
    const unsigned char *p = blob + i * SLA_TIMES_SIZE;
    uint64_t v = 0;
    for (int b = SLA_TIMES_SIZE - 1; b >= 0; b--)
        v = v << 8 | p[b];
    return (int64_t)v;
}

static inline void sla_times_put(unsigned char *blob, size_t i, int64_t value)
{
    unsigned char *p = blob + i * SLA_TIMES_SIZE;
    uint64_t v = (uint64_t)value;
    for (int b = 0; b < SLA_TIMES_SIZE; b++, v >>= 8)
        p[b] = (unsigned char)v;
}

/* The n values of blob into out[0..n): a copy where the host is little-endian too. */
static inline void sla_times_read(const unsigned char *blob, size_t n, int64_t *out)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(out, blob, n * SLA_TIMES_SIZE);
#else
    for (size_t i = 0; i < n; i++)
        out[i] = sla_times_get(blob, i);
#endif
}

#endif
