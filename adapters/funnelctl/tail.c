/* tail.c — `funnelctl tail [PREFIX]`: the output stream as JSON lines, replay then live. */
#include "funnelctl.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"

#include <stdio.h>

typedef struct tail_state {
    int64_t left; /* messages still wanted; <0: unlimited */
} tail_state_t;

/* Prints {"seq":N,"topic":"...","event":{...}}; an undecodable envelope is shown as null. */
static int print_message(uint64_t seq, const char *topic, const uint8_t *envelope, size_t len,
                         void *arg)
{
    tail_state_t *st = arg;
    json_t *line = json_object();
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, len, envelope);
    json_object_set_new(line, "seq", json_integer((json_int_t)seq));
    json_object_set_new(line, "topic", json_string(topic));
    json_object_set_new(line, "event", env ? funnel_json_from_message(&env->base) : json_null());
    char *text = json_dumps(line, JSON_COMPACT);
    if (text)
        printf("%s\n", text);
    fflush(stdout);
    free(text);
    json_decref(line);
    funnel_envelope_free(&env);
    return st->left > 0 && --st->left == 0 ? 1 : 0;
}

int fctl_cmd_tail(fctl_t *ctl)
{
    funnel_client_t *client;
    tail_state_t st = {ctl->count ? ctl->count : -1};
    funnel_follow_options_t opts = {
        .prefix = ctl->n_args ? ctl->args[0] : "",
        .from_seq = ctl->from_seq ? ctl->from_seq : 1,
        .idle_timeout_ms = ctl->idle_ms,
        .request_timeout_ms = ctl->timeout_ms,
    };
    int status = fctl_client_new(ctl, &client);
    if (status != FCTL_OK)
        return status;
    int rc =
        funnel_client_follow(client, ctl->cfg.publish, ctl->cfg.replay, &opts, print_message, &st);
    char why[256];
    snprintf(why, sizeof why, "%s", funnel_client_error(client));
    funnel_client_destroy(&client);
    if (rc == FUNNEL_ETIMEDOUT) {
        fprintf(stderr, "funnelctl: funneld's replay endpoint %s did not answer within %d ms%s%s\n",
                ctl->cfg.replay, ctl->timeout_ms, why[0] ? ": " : "", why);
        return FCTL_UNREACHABLE;
    }
    if (rc < 0) {
        fprintf(stderr, "funnelctl: %s\n", why[0] ? why : funnel_strerror(rc));
        return FCTL_REFUSED;
    }
    return FCTL_OK;
}
