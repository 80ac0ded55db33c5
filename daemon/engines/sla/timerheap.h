/* timerheap.h — a binary min-heap of (fire time, id) pairs: the next deadline among millions.
 *
 * Entries are never updated or removed in place. A caller whose deadline moves pushes the new
 * one and treats an entry popped later as stale when its time no longer matches what the
 * database holds for that id ("lazy deletion"): 16 bytes per entry, no index from id to
 * position. funnel_timerheap_clear empties it for a rebuild. Not thread-safe. */
#ifndef FUNNEL_TIMERHEAP_H
#define FUNNEL_TIMERHEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct funnel_timer_entry {
    int64_t at; /* fire time, event-time milliseconds */
    int64_t id; /* the owner's row id */
} funnel_timer_entry_t;

typedef struct funnel_timerheap funnel_timerheap_t;

/* 0 or FUNNEL_ENOMEM; free with funnel_timerheap_destroy. */
int funnel_timerheap_new(funnel_timerheap_t **out);
void funnel_timerheap_destroy(funnel_timerheap_t **heap);

/* Adds an entry; 0 or FUNNEL_ENOMEM (the heap is unchanged). */
int funnel_timerheap_push(funnel_timerheap_t *heap, int64_t at, int64_t id);

/* The earliest entry without removing it; 0, or FUNNEL_ENOTFOUND when empty. */
int funnel_timerheap_peek(const funnel_timerheap_t *heap, funnel_timer_entry_t *out);

/* Removes and returns the earliest entry; 0, or FUNNEL_ENOTFOUND when empty. */
int funnel_timerheap_pop(funnel_timerheap_t *heap, funnel_timer_entry_t *out);

size_t funnel_timerheap_size(const funnel_timerheap_t *heap);
void funnel_timerheap_clear(funnel_timerheap_t *heap);

#endif
