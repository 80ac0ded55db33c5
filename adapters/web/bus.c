/* bus.c — funnel-web's one use of funneld's client library: the acknowledgement it submits and
 * the output stream it follows. Keeping both here means the client's connection options (keys,
 * when funneld's sockets require them) are set in one place. */
#include "web.h"

#include "funnel/client.h"
#include "funnel/codec.h"
#include "funnel/error.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* A client with the bus's keys. The files were checked when the config was read; one that went
 * bad since is an error here (logged by the caller with funnel_strerror). */
static int bus_client_new(const funnel_web_bus_t *bus, funnel_client_t **out)
{
    char err[512];
    int rc = funnel_client_new(out);
    if (!rc && (rc = funnel_client_set_curve(*out, bus->key, bus->server_key, err, sizeof err)))
        funnel_client_destroy(out);
    return rc;
}

int funnel_web_bus_ack(const funnel_web_bus_t *bus, const char *sla_id, const char *by,
                       int64_t now_ms, int *status, char *reason, size_t reason_len)
{
    char event_id[FUNNEL_ID_MAX + 2];
    int n = snprintf(event_id, sizeof event_id, "web-ack:%s:%s", sla_id, by);
    if (n < 0 || n > FUNNEL_ID_MAX)
        return FUNNEL_EINVAL;
    Funnel__V1__EscalationAcknowledged ack;
    funnel__v1__escalation_acknowledged__init(&ack);
    ack.sla_id = (char *)sla_id;
    ack.by = (char *)by;
    funnel_envelope_t env;
    funnel__v1__envelope__init(&env);
    env.event_id = event_id;
    env.occurred_at_ms = now_ms;
    env.source = "funnel-web";
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_ESCALATION_ACKNOWLEDGED;
    env.escalation_acknowledged = &ack;

    funnel_client_t *client;
    int rc = bus_client_new(bus, &client);
    if (rc)
        return rc;
    funnel_submit_options_t opts = {
        .timeout_ms = bus->submit_timeout_ms, .attempts = 3, .backoff_ms = 100};
    funnel_submit_result_t res;
    rc = funnel_client_submit(client, bus->submit, "escalation.acknowledged", &env, &opts, &res);
    funnel_client_destroy(&client);
    if (!rc) {
        *status = (int)res.status;
        snprintf(reason, reason_len, "%s", res.reason);
    } else if (rc == FUNNEL_EAGAIN) {
        snprintf(reason, reason_len, "%s", res.reason);
    }
    return rc;
}

typedef struct follow_ctx {
    int (*cb)(uint64_t, const char *, const uint8_t *, size_t, void *);
    bool (*stop)(void *);
    void *arg;
    uint64_t last;
} follow_ctx_t;

static int on_message(uint64_t seq, const char *topic, const uint8_t *env, size_t len, void *arg)
{
    follow_ctx_t *c = arg;
    if (c->stop(c->arg))
        return 1; /* not delivered; nothing follows */
    int rc = c->cb(seq, topic, env, len, c->arg);
    c->last = seq;
    return rc;
}

/* Follows in short rounds (an idle timeout of half a second) so a stop request is seen soon
 * even on a quiet stream; each round resumes after the last message delivered. A funneld that
 * is down is retried after a pause, for as long as funnel-web runs. */
int funnel_web_bus_follow(const funnel_web_bus_t *bus, uint64_t from_seq,
                          int (*cb)(uint64_t seq, const char *topic, const uint8_t *env, size_t len,
                                    void *arg),
                          bool (*stop)(void *arg), void *arg)
{
    funnel_client_t *client;
    int rc = bus_client_new(bus, &client);
    if (rc)
        return rc;
    follow_ctx_t c = {cb, stop, arg, from_seq ? from_seq - 1 : 0};
    while (!stop(arg)) {
        funnel_follow_options_t opts = {
            .from_seq = c.last + 1, .idle_timeout_ms = 500, .request_timeout_ms = 2000};
        rc = funnel_client_follow(client, bus->publish, bus->replay, &opts, on_message, &c);
        if (rc == FUNNEL_ETIMEDOUT || rc == FUNNEL_EBUS) {
            /* funneld down or restarting: a fresh client, after the pause the replay took */
            funnel_client_destroy(&client);
            if ((rc = bus_client_new(bus, &client)))
                return rc;
        } else if (rc == FUNNEL_EINVAL) {
            /* the range was pruned: go on from the oldest message funneld still has */
            c.last = 0;
            nanosleep(&(struct timespec){0, 200 * 1000000L}, NULL);
        } else if (rc < 0 || rc == 1) {
            break;
        }
        rc = 0;
    }
    funnel_client_destroy(&client);
    return rc < 0 ? rc : 0;
}
