/* error.c — descriptions of the funnel error codes. */
#include "funnel/error.h"

const char *funnel_strerror(int err)
{
    switch (err) {
    case FUNNEL_OK:
        return "success";
    case FUNNEL_EINVAL:
        return "invalid argument or input";
    case FUNNEL_ENOMEM:
        return "out of memory";
    case FUNNEL_EDUP:
        return "duplicate";
    case FUNNEL_ESTORE:
        return "database error";
    case FUNNEL_EBUS:
        return "messaging error";
    case FUNNEL_ECONFIG:
        return "configuration error";
    case FUNNEL_ETIMEDOUT:
        return "timed out";
    case FUNNEL_ENOTFOUND:
        return "not found";
    case FUNNEL_EIO:
        return "i/o error";
    case FUNNEL_EAGAIN:
        return "try again";
    case FUNNEL_EREFUSED:
        return "refused by engine";
    default:
        return "unknown error";
    }
}
