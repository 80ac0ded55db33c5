/* stream.c — the live stream: one follower thread reads funneld's output through the client
 * library (bus.c) into a ring of the last `backlog` messages, each already turned into the
 * JSON a browser receives; every /api/v1/stream connection reads the ring from its own
 * position (Last-Event-ID), so a thousand browsers cost funneld one subscriber.
 *
 * Who sees what: a rep only the sla.* messages of instances they own and their own
 * commission.posted; managers and admins everything. */
#include "web.h"

#include "funnel/codec.h"
#include "funnel/error.h"
#include "funnel/json.h"
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    uint64_t seq;
    char *frame;                         /* owned; the SSE frame */
    bool reps_see;                       /* a rep may see it when owner is theirs */
    char owner[FUNNEL_WEB_NAME_MAX + 1]; /* the SLA owner or the commission's rep */
} entry_t;

struct funnel_web_stream {
    funnel_web_bus_t bus;
    const funnel_log_t *log;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t grew;
    entry_t *ring; /* owned; ring[seq % cap] */
    size_t cap;
    uint64_t first, last; /* sequences held: first..last (0, 0: none) */
    bool stopping;
    uint64_t from_seq;
};

/* Who a message belongs to, for reps: the owner of an SLA instance, the rep of a posting.
 * Returns false when no rep may see it. */
static bool rep_owner(const funnel_envelope_t *env, char *owner, size_t len)
{
    const Funnel__V1__SlaRef *ref = NULL;
    switch (env->body_case) {
    case FUNNEL__V1__ENVELOPE__BODY_SLA_WARNING:
        ref = env->sla_warning->sla;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_SLA_ESCALATION:
        ref = env->sla_escalation->sla;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_SLA_MET:
        ref = env->sla_met->sla;
        break;
    case FUNNEL__V1__ENVELOPE__BODY_COMMISSION_POSTED:
        snprintf(owner, len, "%s", env->commission_posted->rep);
        return true;
    default:
        return false;
    }
    if (!ref)
        return false;
    snprintf(owner, len, "%s", ref->owner);
    return true;
}

/* The frame of one message: id, event (the topic) and the message as proto3 JSON. */
static char *frame_make(uint64_t seq, const char *topic, const funnel_envelope_t *env)
{
    json_t *doc = json_pack("{s:o, s:s, s:o}", "seq", json_sprintf("%llu", (unsigned long long)seq),
                            "topic", topic, "message", funnel_json_from_message(&env->base));
    char *data = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    char *frame = NULL;
    if (data && asprintf(&frame, "id: %llu\nevent: message\ndata: %s\n\n", (unsigned long long)seq,
                         data) < 0)
        frame = NULL;
    free(data);
    return frame;
}

static int on_message(uint64_t seq, const char *topic, const uint8_t *bytes, size_t len, void *arg)
{
    funnel_web_stream_t *s = arg;
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, len, bytes);
    if (!env)
        return 0; /* funneld only publishes what it encoded; nothing to show */
    entry_t e = {.seq = seq};
    e.reps_see = rep_owner(env, e.owner, sizeof e.owner);
    e.frame = frame_make(seq, topic, env);
    funnel_envelope_free(&env);
    if (!e.frame) {
        funnel_log_error(s->log, "stream: out of memory for message %llu", (unsigned long long)seq);
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    if (seq <= s->last) { /* a replay after a pruned range: already held */
        pthread_mutex_unlock(&s->lock);
        free(e.frame);
        return 0;
    }
    entry_t *slot = &s->ring[seq % s->cap];
    free(slot->frame);
    *slot = e;
    s->last = seq;
    if (!s->first)
        s->first = seq;
    if (s->last - s->first >= s->cap) /* the slot of the oldest was taken */
        s->first = s->last - s->cap + 1;
    pthread_cond_broadcast(&s->grew);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static bool should_stop(void *arg)
{
    funnel_web_stream_t *s = arg;
    pthread_mutex_lock(&s->lock);
    bool stop = s->stopping;
    pthread_mutex_unlock(&s->lock);
    return stop;
}

static void *follower(void *arg)
{
    funnel_web_stream_t *s = arg;
    int rc = funnel_web_bus_follow(&s->bus, s->from_seq, on_message, should_stop, s);
    if (rc)
        funnel_log_error(s->log, "stream: following funneld stopped: %s", funnel_strerror(rc));
    return NULL;
}

int funnel_web_stream_new(const funnel_web_bus_t *bus, funnel_store_t *store, size_t backlog,
                          const funnel_log_t *log, funnel_web_stream_t **out)
{
    funnel_web_stream_t *s = calloc(1, sizeof *s);
    if (!s || !(s->ring = calloc(backlog, sizeof *s->ring))) {
        free(s);
        return FUNNEL_ENOMEM;
    }
    s->bus = *bus;
    s->log = log;
    s->cap = backlog;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->grew, &ca);
    pthread_condattr_destroy(&ca);
    /* The backlog ends at what is committed now, so a page loaded now can resume from it. */
    uint64_t first = 0, last = 0;
    if (funnel_store_outbox_bounds(store, &first, &last) == 0 && last)
        s->from_seq = last >= backlog && last - backlog + 1 > first ? last - backlog + 1 : first;
    if (pthread_create(&s->thread, NULL, follower, s)) {
        funnel_web_stream_destroy(&s);
        return FUNNEL_ENOMEM;
    }
    s->started = true;
    *out = s;
    return 0;
}

void funnel_web_stream_stop(funnel_web_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->grew);
    pthread_mutex_unlock(&s->lock);
}

void funnel_web_stream_destroy(funnel_web_stream_t **sp)
{
    funnel_web_stream_t *s = *sp;
    if (!s)
        return;
    funnel_web_stream_stop(s);
    if (s->started)
        pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->cap; i++)
        free(s->ring[i].frame);
    free(s->ring);
    pthread_cond_destroy(&s->grew);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *sp = NULL;
}

uint64_t funnel_web_stream_last(funnel_web_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t last = s->last;
    pthread_mutex_unlock(&s->lock);
    return last;
}

static bool visible(const entry_t *e, const funnel_web_principal_t *who)
{
    if (who->role != FUNNEL_WEB_ROLE_REP)
        return true;
    return e->reps_see && !strcmp(e->owner, who->name);
}

int funnel_web_stream_next(funnel_web_stream_t *s, const funnel_web_principal_t *who,
                           uint64_t after, int wait_ms, char **frame, uint64_t *seq)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = FUNNEL_ETIMEDOUT;
    *seq = after;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->stopping) {
            rc = FUNNEL_EBUS;
            break;
        }
        /* Older than the backlog holds: from the oldest held (the page reloads its tables
         * on connect, so nothing it shows is stale). */
        uint64_t next = after + 1 < s->first ? s->first : after + 1;
        for (; s->last && next <= s->last; next++) {
            const entry_t *e = &s->ring[next % s->cap];
            if (e->seq != next || !visible(e, who))
                continue;
            *frame = strdup(e->frame);
            *seq = next;
            rc = *frame ? 0 : FUNNEL_ENOMEM;
            break;
        }
        if (rc != FUNNEL_ETIMEDOUT)
            break;
        /* Everything up to last was looked at: skip it next time, even when none was shown. */
        if (s->last > after)
            *seq = after = s->last;
        if (pthread_cond_timedwait(&s->grew, &s->lock, &until))
            break;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}
