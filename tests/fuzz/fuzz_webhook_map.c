/* fuzz_webhook_map.c — funnel-webhook's provider mappings (adapters/webhook/map.c) and what a
 * request body goes through after them: Stripe and HubSpot JSON (parsed as the server parses
 * it), amoCRM's form encoding, the id prefixes, then every mapped event built into an Envelope
 * and decoded by funneld's codec, as funneld would receive it.
 *
 * Input: one byte choosing the provider ('s' Stripe, 'h' HubSpot, anything else amoCRM), then
 * the request body. Invariant: a mapping either refuses with a reason or yields items that all
 * name an ingest topic. */
#include "fuzz.h"

#include "webhook.h"

#include "funnel/codec.h"
#include "funnel/json.h"

#include <string.h>

static const funnel_codec_limits_t limits = {1 << 20, 24 * 3600 * 1000};

/* One mapped item the way submit_event sends it: JSON text → Envelope → packed → funneld. */
static void submit_item(const json_t *item)
{
    const char *topic = json_string_value(json_object_get(item, "topic"));
    FUZZ_CHECK(topic);
    funnel_body_t body;
    FUZZ_CHECK(funnel_topic_lookup(topic, strlen(topic), &body) == 0);
    char *text = json_dumps(json_object_get(item, "event"), JSON_COMPACT);
    FUZZ_CHECK(text);
    funnel_envelope_t *env = NULL, *decoded = NULL;
    char err[256];
    if (funnel_json_envelope_build(body, text, FUZZ_NOW_MS, &env, err, sizeof err) == 0) {
        size_t len;
        uint8_t *buf = fuzz_pack(env, &len);
        funnel_refusal_t why;
        funnel_codec_decode(&limits, topic, strlen(topic), buf, len, FUZZ_NOW_MS, &decoded, &why);
        funnel_envelope_free(&decoded);
        free(buf);
    }
    funnel_envelope_free(&env);
    free(text);
}

/* Parses the body as the server's map_json_body does and maps it. */
static int map_json(const uint8_t *data, size_t size,
                    int (*map)(const json_t *, json_t **, size_t *, char *, size_t), json_t **out,
                    size_t *ignored, char *why, size_t why_len)
{
    json_t *ev = json_loadb((const char *)data, size, 0, NULL);
    if (!ev)
        return -1;
    int rc = map(ev, out, ignored, why, why_len);
    json_decref(ev);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size)
        return 0;
    funnel_webhook_config_t cfg;
    FUZZ_CHECK(funnel_webhook_config_defaults(&cfg) == 0);
    cfg.amo_statuses[2] = (funnel_amo_status_t){1001, FUNNEL_AMO_MQL};
    cfg.amo_statuses[3] = (funnel_amo_status_t){1002, FUNNEL_AMO_SQL};
    cfg.n_amo_statuses = 4;
    json_t *items = NULL;
    size_t ignored = 0;
    char why[256] = "";
    int rc;
    if (data[0] == 's')
        rc = map_json(data + 1, size - 1, funnel_stripe_map, &items, &ignored, why, sizeof why);
    else if (data[0] == 'h')
        rc = map_json(data + 1, size - 1, funnel_hubspot_map, &items, &ignored, why, sizeof why);
    else
        rc = funnel_amocrm_map(&cfg, (const char *)data + 1, size - 1, FUZZ_NOW_MS, &items,
                               &ignored, why, sizeof why);
    if (rc == 0) {
        FUZZ_CHECK(json_is_array(items));
        FUZZ_CHECK(funnel_webhook_prefix_ids(items, "fz:") == 0);
        size_t i;
        const json_t *item;
        json_array_foreach(items, i, item) submit_item(item);
    } else if (rc != -1) {
        FUZZ_CHECK(items == NULL && why[0]);
    }
    json_decref(items);
    funnel_webhook_config_clear(&cfg);
    return 0;
}
