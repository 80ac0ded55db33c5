/* error.h — the error codes every funneld function returns.
 *
 * Functions return 0 on success or one of these negative codes. They are stable: tests
 * and tools compare against them. funnel_strerror() never returns NULL. */
#ifndef FUNNEL_ERROR_H
#define FUNNEL_ERROR_H

enum {
    FUNNEL_OK = 0,
    FUNNEL_EINVAL = -1,    /* bad argument or refused input */
    FUNNEL_ENOMEM = -2,    /* allocation failed */
    FUNNEL_EDUP = -3,      /* idempotency key seen before: nothing changed */
    FUNNEL_ESTORE = -4,    /* SQLite failed; the transaction was rolled back */
    FUNNEL_EBUS = -5,      /* ZeroMQ or libuv failed */
    FUNNEL_ECONFIG = -6,   /* configuration unreadable or invalid */
    FUNNEL_ETIMEDOUT = -7, /* the peer did not answer in time */
    FUNNEL_ENOTFOUND = -8, /* no such row, key or file */
    FUNNEL_EIO = -9,       /* a file could not be read or written */
    FUNNEL_EAGAIN = -10,   /* try again later (socket full) */
    FUNNEL_EREFUSED = -11, /* refused by engine with a reason: the event is valid but cannot be
                              applied (an overflow, an unknown reference); it is answered
                              "rejected", dead-lettered and counted (router.h) */
};

/* A short English description of err; a static string. */
const char *funnel_strerror(int err);

#endif
