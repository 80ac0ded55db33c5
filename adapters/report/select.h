/* select.h — the k-th smallest of an array, for the report library's medians and percentiles. */
#ifndef FUNNEL_SELECT_H
#define FUNNEL_SELECT_H

#include <stddef.h>
#include <stdint.h>

/* The k-th smallest (0-based) of v[0..n), n > 0 and k < n; v is reordered. Quickselect rather
 * than a sort: a group of a big database has hundreds of thousands of durations and only one
 * or two ranks of them are wanted. */
int64_t funnel_select_nth(int64_t *v, size_t n, size_t k);

#endif
