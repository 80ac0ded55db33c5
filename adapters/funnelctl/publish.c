/* publish.c — `funnelctl publish TOPIC JSON`: one acknowledged submit. */
#include "funnelctl.h"

#include "funnel/client.h"
#include "funnel/error.h"
#include "funnel/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fctl_cmd_publish(fctl_t *ctl)
{
    const char *topic = ctl->args[0];
    funnel_body_t body;
    if (funnel_topic_lookup(topic, strlen(topic), &body)) {
        fprintf(stderr, "funnelctl: '%s' is not an ingest topic\n", topic);
        return FCTL_USAGE;
    }
    funnel_envelope_t *env = NULL;
    char err[512];
    if (funnel_json_envelope_build(body, ctl->args[1], fctl_now_ms(), &env, err, sizeof err)) {
        fprintf(stderr, "funnelctl: %s\n", err);
        return FCTL_REFUSED;
    }
    /* An empty source keeps protobuf-c's shared default string, so nothing is leaked. */
    if (!env->source[0] && !(env->source = strdup(ctl->source))) {
        funnel_envelope_free(&env);
        return FCTL_REFUSED;
    }
    int status = fctl_submit(ctl, topic, env);
    funnel_envelope_free(&env);
    return status;
}

int fctl_client_new(const fctl_t *ctl, funnel_client_t **out)
{
    char err[512];
    if (funnel_client_new(out))
        return FCTL_REFUSED;
    if (funnel_client_set_curve(*out, ctl->key, ctl->server_key, err, sizeof err)) {
        fprintf(stderr, "funnelctl: %s (--key, --server-key)\n", err);
        funnel_client_destroy(out);
        return FCTL_USAGE;
    }
    return FCTL_OK;
}

int fctl_submit(const fctl_t *ctl, const char *topic, const funnel_envelope_t *env)
{
    funnel_client_t *client;
    funnel_submit_result_t res;
    funnel_submit_options_t opts = {
        .timeout_ms = ctl->timeout_ms, .attempts = 3, .backoff_ms = 100};
    int status = fctl_client_new(ctl, &client);
    if (status == FCTL_OK) {
        status = FCTL_REFUSED;
        int rc = funnel_client_submit(client, ctl->cfg.submit, topic, env, &opts, &res);
        if (rc == FUNNEL_ETIMEDOUT) {
            const char *why = funnel_client_error(client);
            fprintf(stderr, "funnelctl: funneld at %s did not answer within %d ms (3 tries)%s%s\n",
                    ctl->cfg.submit, ctl->timeout_ms, why[0] ? ": " : "", why);
            status = FCTL_UNREACHABLE;
        } else if (rc == FUNNEL_EAGAIN) {
            fprintf(stderr,
                    "funnelctl: funneld is unavailable (%s): nothing was recorded, try "
                    "again later\n",
                    res.reason);
            status = FCTL_UNREACHABLE;
        } else if (rc) {
            fprintf(stderr, "funnelctl: %s: %s\n", ctl->cfg.submit, funnel_strerror(rc));
            status = FCTL_UNREACHABLE;
        } else if (res.status == FUNNEL_SUBMIT_REJECTED) {
            printf("rejected %s: %s\n", env->event_id, res.reason);
        } else {
            printf("%s %s\n", res.status == FUNNEL_SUBMIT_OK ? "ok" : "duplicate", env->event_id);
            status = FCTL_OK;
        }
        funnel_client_destroy(&client);
    }
    return status;
}
