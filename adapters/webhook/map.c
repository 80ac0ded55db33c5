/* map.c — provider payloads to funnel events. Each mapper emits {"topic", "event"} items in the
 * JSON form funnel_json_envelope_build reads, so the one generic proto3 mapper builds every
 * envelope and funneld validates it; the mappers only know the providers' shapes.
 *
 * Event ids come from the provider wherever it has one, so its retries are duplicates here. */
#include "webhook.h"

#include "funnel/codec.h"
#include "funnel/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends {"topic": topic, "event": event} to out, taking the reference to event. */
static int push(json_t *out, const char *topic, json_t *event)
{
    json_t *item = event ? json_pack("{s:s, s:o}", "topic", topic, "event", event) : NULL;
    if (!item || json_array_append_new(out, item))
        return FUNNEL_ENOMEM;
    return 0;
}

static const char *str_at(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* An integer member, also accepted as a decimal string (HubSpot sends both forms). */
static bool int_at(const json_t *obj, const char *key, json_int_t *out)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    const char *s = json_string_value(v);
    char *end;
    if (!s || !*s)
        return false;
    *out = strtoll(s, &end, 10);
    return *end == '\0';
}

/* Whether Unix seconds s can be multiplied into milliseconds: providers date events in seconds,
 * funneld in milliseconds, and past this no real event is dated anyway. */
static bool seconds_fit(json_int_t s)
{
    return s <= INT64_MAX / 1000 && s >= INT64_MIN / 1000;
}

/* ---- Stripe ------------------------------------------------------------------------------ */

/* The amount, currency (upper-cased: Stripe sends "usd", ISO 4217 and funneld want "USD") and
 * client of a Stripe object. The client is metadata.client_id when the integration set one,
 * else the Stripe customer id. */
static json_t *stripe_money(const json_t *obj, json_int_t minor)
{
    char cur[8] = "";
    const char *c = str_at(obj, "currency");
    for (size_t i = 0; c && c[i] && i < sizeof cur - 1; i++)
        cur[i] = (char)toupper((unsigned char)c[i]), cur[i + 1] = '\0';
    return json_pack("{s:I, s:s}", "minor", minor, "currency", cur);
}

static const char *stripe_client(const json_t *obj)
{
    const char *meta = str_at(json_object_get(obj, "metadata"), "client_id");
    const char *cust = str_at(obj, "customer");
    return meta ? meta : cust ? cust : "";
}

/* Appends the payment.refunded of one Stripe refund object, or counts it ignored: a refund
 * that failed or was canceled never reached the charge's amount_refunded, and one whose client
 * is unknown (refund objects carry no customer: metadata.client_id, else the charge's when it
 * came in a charge's list) cannot be matched to its payment. The event id is the refund's, not
 * the Stripe event's, so the same refund seen in charge.refunded lists, refund.created and
 * refund.updated is one event: funneld answers the others duplicate. */
static int stripe_refund_object(const json_t *refund, const json_t *charge, json_int_t created,
                                json_t *out, size_t *ignored, char *why, size_t why_len)
{
    const char *id = str_at(refund, "id"), *status = str_at(refund, "status");
    const char *pi = str_at(refund, "payment_intent"), *ch = str_at(refund, "charge");
    const char *client = str_at(json_object_get(refund, "metadata"), "client_id");
    json_int_t minor, at = created;
    if (!id || !int_at(refund, "amount", &minor)) {
        snprintf(why, why_len, "a Stripe refund object needs id and amount");
        return FUNNEL_EINVAL;
    }
    client = client ? client : charge ? stripe_client(charge) : NULL;
    if (charge && !pi && !ch) { /* listed in the charge: the charge's payment */
        pi = str_at(charge, "payment_intent");
        ch = str_at(charge, "id");
    }
    if (!client || !*client || minor <= 0 || !(pi || ch) ||
        (status && (!strcmp(status, "failed") || !strcmp(status, "canceled")))) {
        ++*ignored;
        return 0;
    }
    if (int_at(refund, "created", &at) && !seconds_fit(at)) {
        snprintf(why, why_len, "Stripe refund %s: created is not a Unix time", id);
        return FUNNEL_EINVAL;
    }
    char event_id[FUNNEL_WEBHOOK_ID_MAX + 16];
    snprintf(event_id, sizeof event_id, "stripe-%s", id);
    return push(
        out, "payment.refunded",
        json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:o}", "eventId", event_id, "occurredAtMs",
                  at * 1000, "source", "stripe", "refundId", id, "paymentId", pi ? pi : ch,
                  "clientId", client, "amount",
                  stripe_money(charge && !str_at(refund, "currency") ? charge : refund, minor)));
}

/* A new-shape charge.refunded without previous_attributes: only the cumulative level L is
 * known, and no stateless choice of records per level with positive amounts can sum to the
 * final level (the records of a lower level would have to be a subset of every higher
 * level's: one per minor unit). Instead every level is recorded under one refund id per charge,
 * "<charge>:refunded", with the amount L, and the engines' rule for a repeated refund_id picks
 * the level that counts: they keep the refund_id's first event by (occurred_at_ms, event_id).
 * All levels are dated at the charge's own `created` (the same for every event of the
 * charge), and the event id carries 10^15 - L in fixed width, so the highest level sorts first:
 * whatever arrives in whatever order, the record that counts is the final amount_refunded.
 * The price: the refund is dated at its payment's time, not its own. */
static int stripe_refund_level(const json_t *charge, const char *ch, const char *pi,
                               json_int_t level, json_t *out)
{
    json_int_t charged;
    char refund_id[FUNNEL_WEBHOOK_ID_MAX + 16], event_id[sizeof refund_id + 32];
    if (!int_at(charge, "created", &charged) || !seconds_fit(charged))
        return FUNNEL_EINVAL;
    snprintf(refund_id, sizeof refund_id, "%s:refunded", ch);
    snprintf(event_id, sizeof event_id, "stripe-%s-%015lld", refund_id,
             1000000000000000LL - (long long)level);
    return push(out, "payment.refunded",
                json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:o}", "eventId", event_id,
                          "occurredAtMs", charged * 1000, "source", "stripe", "refundId", refund_id,
                          "paymentId", pi ? pi : ch, "clientId", stripe_client(charge), "amount",
                          stripe_money(charge, level)));
}

/* charge.refunded. Before API version 2022-11-15 (or with data.object.refunds expanded) the
 * charge lists its refunds, newest first: each is recorded under its own refund id, so every
 * delivery of every such event names the same refunds. Since 2022-11-15 only the cumulative
 * amount_refunded is there. When previous_attributes.amount_refunded says what it was before
 * this event, the event records the step between the two, under the refund id
 * "<charge>:<before>-<after>", dated at the event: the steps of one charge chain from 0 to its
 * final amount_refunded, so they sum to it whatever the order and repetition of the deliveries
 * (the engines count each refund_id once). Without it, see stripe_refund_level. */
static int stripe_charge_refunded(const json_t *ev, const json_t *charge, json_int_t created,
                                  json_t *out, size_t *ignored, char *why, size_t why_len)
{
    const json_t *list = json_object_get(json_object_get(charge, "refunds"), "data");
    const json_t *prev = json_object_get(json_object_get(ev, "data"), "previous_attributes");
    const char *pi = str_at(charge, "payment_intent"), *ch = str_at(charge, "id");
    json_int_t before, after;
    if (json_is_array(list)) {
        size_t i;
        const json_t *refund;
        json_array_foreach(list, i, refund)
        {
            int rc = stripe_refund_object(refund, charge, created, out, ignored, why, why_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (!ch || !int_at(charge, "amount_refunded", &after) || after < 0 ||
        after >= 1000000000000000LL) {
        snprintf(why, why_len, "charge.refunded needs data.object.id and amount_refunded");
        return FUNNEL_EINVAL;
    }
    if (!int_at(prev, "amount_refunded", &before)) {
        if (after == 0) {
            ++*ignored;
            return 0;
        }
        if (stripe_refund_level(charge, ch, pi, after, out) == FUNNEL_EINVAL) {
            snprintf(why, why_len,
                     "charge.refunded without a refunds list needs "
                     "data.object.created (a Unix time)");
            return FUNNEL_EINVAL;
        }
        return 0;
    }
    if (after <= before) {
        ++*ignored;
        return 0;
    }
    char refund_id[FUNNEL_WEBHOOK_ID_MAX + 48], event_id[sizeof refund_id + 16];
    snprintf(refund_id, sizeof refund_id, "%s:%lld-%lld", ch, (long long)before, (long long)after);
    snprintf(event_id, sizeof event_id, "stripe-%s", refund_id);
    return push(out, "payment.refunded",
                json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:o}", "eventId", event_id,
                          "occurredAtMs", created * 1000, "source", "stripe", "refundId", refund_id,
                          "paymentId", pi ? pi : ch, "clientId", stripe_client(charge), "amount",
                          stripe_money(charge, after - before)));
}

/* payment_intent.succeeded and invoice.paid. A payment of 0 (a free trial's invoice) moves no
 * money: it is counted ignored, not sent for funneld to refuse. */
static int stripe_payment(const json_t *obj, const char *event_id, json_int_t created, json_t *out,
                          size_t *ignored)
{
    const char *pi = str_at(obj, "payment_intent"), *oid = str_at(obj, "id");
    json_int_t minor = 0;
    /* A payment intent reports amount_received; an invoice amount_paid. */
    if (!int_at(obj, "amount_received", &minor) && !int_at(obj, "amount_paid", &minor))
        int_at(obj, "amount", &minor);
    if (minor == 0) {
        ++*ignored;
        return 0;
    }
    return push(out, "payment.received",
                json_pack("{s:s, s:I, s:s, s:s, s:s, s:o}", "eventId", event_id, "occurredAtMs",
                          created * 1000, "source", "stripe", "paymentId",
                          pi    ? pi
                          : oid ? oid
                                : "",
                          "clientId", stripe_client(obj), "amount", stripe_money(obj, minor)));
}

int funnel_stripe_map(const json_t *ev, json_t **out, size_t *ignored, char *why, size_t why_len)
{
    const char *id = str_at(ev, "id"), *type = str_at(ev, "type");
    const json_t *obj = json_object_get(json_object_get(ev, "data"), "object");
    json_int_t created = 0;
    int rc = 0;
    if (!id || !type || !json_is_object(obj) || !int_at(ev, "created", &created) ||
        !seconds_fit(created)) {
        snprintf(why, why_len,
                 "not a Stripe event: id, type, created (a Unix time) and data.object needed");
        return FUNNEL_EINVAL;
    }
    if (!(*out = json_array()))
        return FUNNEL_ENOMEM;
    if (!strcmp(type, "payment_intent.succeeded") || !strcmp(type, "invoice.paid"))
        rc = stripe_payment(obj, id, created, *out, ignored);
    else if (!strcmp(type, "charge.refunded"))
        rc = stripe_charge_refunded(ev, obj, created, *out, ignored, why, why_len);
    else if (!strcmp(type, "refund.created") || !strcmp(type, "refund.updated") ||
             !strcmp(type, "charge.refund.updated"))
        rc = stripe_refund_object(obj, NULL, created, *out, ignored, why, why_len);
    else
        ++*ignored;
    if (rc) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- HubSpot ----------------------------------------------------------------------------- */

/* lifecyclestage values (HubSpot's internal names) and what they mean here. */
static const struct {
    const char *value;
    const char *topic;
    const char *key, *enum_name; /* "stage" MQL/SQL or "outcome" WON */
} hubspot_stages[] = {
    {"marketingqualifiedlead", "lead.qualified", "stage", "MQL"},
    {"salesqualifiedlead", "lead.qualified", "stage", "SQL"},
    {"customer", "lead.closed", "outcome", "WON"},
    {"other", "lead.closed", "outcome", "DISQUALIFIED"},
};

/* Maps one HubSpot event into out; a type or property nothing maps only bumps *ignored. */
static int hubspot_one(const json_t *e, json_t *out, size_t *ignored, char *why, size_t why_len)
{
    json_int_t eid, oid, at;
    const char *type = str_at(e, "subscriptionType");
    if (!type || !int_at(e, "eventId", &eid) || !int_at(e, "objectId", &oid) ||
        !int_at(e, "occurredAt", &at)) {
        snprintf(why, why_len,
                 "not a HubSpot event: subscriptionType, eventId, objectId, occurredAt needed");
        return FUNNEL_EINVAL;
    }
    char event_id[64], lead[32];
    snprintf(event_id, sizeof event_id, "hubspot-%lld", (long long)eid);
    snprintf(lead, sizeof lead, "%lld", (long long)oid);
    if (!strcmp(type, "contact.creation"))
        return push(out, "lead.created",
                    json_pack("{s:s, s:I, s:s, s:s}", "eventId", event_id, "occurredAtMs", at,
                              "source", "hubspot", "leadId", lead));
    const char *prop = str_at(e, "propertyName"), *value = str_at(e, "propertyValue");
    if (!strcmp(type, "contact.propertyChange") && prop && value &&
        !strcmp(prop, "lifecyclestage")) {
        for (size_t i = 0; i < sizeof hubspot_stages / sizeof hubspot_stages[0]; i++)
            if (!strcmp(value, hubspot_stages[i].value))
                return push(out, hubspot_stages[i].topic,
                            json_pack("{s:s, s:I, s:s, s:s, s:s}", "eventId", event_id,
                                      "occurredAtMs", at, "source", "hubspot", "leadId", lead,
                                      hubspot_stages[i].key, hubspot_stages[i].enum_name));
    }
    ++*ignored;
    return 0;
}

int funnel_hubspot_map(const json_t *events, json_t **out, size_t *ignored, char *why,
                       size_t why_len)
{
    /* HubSpot batches up to 100 events per request as an array. */
    if (!json_is_array(events)) {
        snprintf(why, why_len, "a HubSpot webhook body is a JSON array of events");
        return FUNNEL_EINVAL;
    }
    if (!(*out = json_array()))
        return FUNNEL_ENOMEM;
    size_t i;
    const json_t *e;
    json_array_foreach(events, i, e)
    {
        int rc = hubspot_one(e, *out, ignored, why, why_len);
        if (rc) {
            json_decref(*out);
            *out = NULL;
            return rc;
        }
    }
    return 0;
}

/* ---- amoCRM ------------------------------------------------------------------------------ */

#define AMO_MAX_LEADS 64

/* The fields of one lead in leads[add][N][...] or leads[status][N][...]. */
typedef struct amo_lead {
    bool present;
    char id[FUNNEL_WEBHOOK_ID_MAX];
    char owner[FUNNEL_WEBHOOK_ID_MAX]; /* responsible_user_id */
    int64_t status_id;
    int64_t at_s; /* last_modified, updated_at or date_create: Unix seconds */
} amo_lead_t;

/* Decodes application/x-www-form-urlencoded text of len bytes into out (NUL-terminated, cut
 * to out_len - 1 bytes). Returns the length of the whole decoded value, which is larger than
 * what out holds when it was cut. */
static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* An escape is '%' and exactly two hex digits; anything else is kept as sent. (sscanf's %2x
 * also took a sign, "0x" or blanks, and read the rest of the buffer as a C string: past the end
 * of a body without a NUL, and quadratic in the number of '%'.) */
static size_t url_decode(const char *s, size_t len, char *out, size_t out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++, o++) {
        unsigned int c = (unsigned char)s[i];
        int hi, lo;
        if (s[i] == '+') {
            c = ' ';
        } else if (s[i] == '%' && i + 2 < len && (hi = hex_digit(s[i + 1])) >= 0 &&
                   (lo = hex_digit(s[i + 2])) >= 0) {
            c = (unsigned int)(hi << 4 | lo);
            i += 2;
        }
        if (o + 1 < out_len)
            out[o] = (char)c;
    }
    out[o < out_len ? o : out_len - 1] = '\0';
    return o;
}

/* Copies the decoded value v (len bytes in all) of the form field leads[kind][idx][field] into
 * an id. Form values are any bytes: one that is not UTF-8, holds a NUL or is longer than an id
 * may be cannot become one (proto3 strings are UTF-8; cut, it would be another id), and is
 * refused with FUNNEL_EINVAL and why. */
static int amo_id(const char *kind, unsigned idx, const char *field, const char *v, size_t len,
                  char out[FUNNEL_WEBHOOK_ID_MAX], char *why, size_t why_len)
{
    if (len >= FUNNEL_WEBHOOK_ID_MAX) { /* v holds only the first bytes of it */
        snprintf(why, why_len, "amoCRM leads[%s][%u][%s]: %zu bytes, at most %d allowed", kind, idx,
                 field, len, FUNNEL_WEBHOOK_ID_MAX - 1);
        return FUNNEL_EINVAL;
    }
    size_t at = funnel_utf8_valid_len(v, len);
    const char *nul = memchr(v, 0, at); /* valid UTF-8, but no C string can hold it */
    if (nul || at < len) {
        snprintf(why, why_len, "amoCRM leads[%s][%u][%s]: %s at byte %zu", kind, idx, field,
                 nul ? "NUL byte" : "not valid UTF-8", nul ? (size_t)(nul - v) : at);
        return FUNNEL_EINVAL;
    }
    memcpy(out, v, len + 1);
    return 0;
}

/* Files one decoded key=value (the value len bytes in all) into the add or status tables.
 * Unknown keys are ignored: amoCRM sends many more fields (account, custom fields) than the
 * funnel needs. Returns 0, or FUNNEL_EINVAL with why for an id that cannot be one. */
static int amo_field(const char *key, const char *value, size_t len, amo_lead_t *add,
                     amo_lead_t *status, char *why, size_t why_len)
{
    char kind[16], field[48];
    unsigned idx;
    if (sscanf(key, "leads[%15[a-z]][%u][%47[a-z_]]", kind, &idx, field) != 3 ||
        idx >= AMO_MAX_LEADS)
        return 0;
    amo_lead_t *l = !strcmp(kind, "add")      ? &add[idx]
                    : !strcmp(kind, "status") ? &status[idx]
                                              : NULL;
    if (!l)
        return 0;
    l->present = true;
    if (!strcmp(field, "id"))
        return amo_id(kind, idx, field, value, len, l->id, why, why_len);
    if (!strcmp(field, "responsible_user_id"))
        return amo_id(kind, idx, field, value, len, l->owner, why, why_len);
    if (!strcmp(field, "status_id")) {
        l->status_id = strtoll(value, NULL, 10);
    } else if (!strcmp(field, "last_modified") || !strcmp(field, "updated_at") ||
               (!strcmp(field, "date_create") && !l->at_s)) {
        l->at_s = strtoll(value, NULL, 10);
        if (!seconds_fit(l->at_s)) {
            snprintf(why, why_len, "amoCRM leads[%s][%u][%s]: not a Unix time", kind, idx, field);
            return FUNNEL_EINVAL;
        }
    }
    return 0;
}

static const char *const amo_stage_topic[] = {"lead.qualified", "lead.qualified", "lead.closed",
                                              "lead.closed"};
static const char *const amo_stage_key[] = {"stage", "stage", "outcome", "outcome"};
static const char *const amo_stage_value[] = {"MQL", "SQL", "WON", "LOST"};

/* Appends the event of a status change; a status the config does not map bumps *ignored. */
static int amo_status_event(const funnel_webhook_config_t *cfg, const amo_lead_t *l, int64_t now_ms,
                            json_t *out, size_t *ignored)
{
    for (size_t i = 0; i < cfg->n_amo_statuses; i++) {
        if (cfg->amo_statuses[i].status_id != l->status_id)
            continue;
        funnel_amo_stage_t st = cfg->amo_statuses[i].stage;
        char event_id[FUNNEL_WEBHOOK_ID_MAX + 64];
        /* amoCRM has no event id; lead, status and change time identify the change, and its
         * retries carry the same three. */
        snprintf(event_id, sizeof event_id, "amocrm-%s-status-%lld-%lld", l->id,
                 (long long)l->status_id, (long long)l->at_s);
        return push(out, amo_stage_topic[st],
                    json_pack("{s:s, s:I, s:s, s:s, s:s}", "eventId", event_id, "occurredAtMs",
                              l->at_s ? (json_int_t)l->at_s * 1000 : (json_int_t)now_ms, "source",
                              "amocrm", "leadId", l->id, amo_stage_key[st], amo_stage_value[st]));
    }
    ++*ignored;
    return 0;
}

int funnel_amocrm_map(const funnel_webhook_config_t *cfg, const char *form, size_t len,
                      int64_t now_ms, json_t **out, size_t *ignored, char *why, size_t why_len)
{
    amo_lead_t *add = calloc(2 * AMO_MAX_LEADS, sizeof *add), *status = add + AMO_MAX_LEADS;
    int rc = add ? 0 : FUNNEL_ENOMEM;
    *out = NULL;
    if (!rc && !(*out = json_array()))
        rc = FUNNEL_ENOMEM;
    for (size_t at = 0; !rc && at < len;) {
        size_t pair = 0;
        while (at + pair < len && form[at + pair] != '&')
            pair++;
        const char *eq = memchr(form + at, '=', pair);
        char key[128], value[FUNNEL_WEBHOOK_ID_MAX];
        if (eq) {
            url_decode(form + at, (size_t)(eq - form - at), key, sizeof key);
            size_t n = url_decode(eq + 1, pair - (size_t)(eq + 1 - form - at), value, sizeof value);
            rc = amo_field(key, value, n, add, status, why, why_len);
        }
        at += pair + 1;
    }
    bool any = false;
    for (size_t i = 0; !rc && i < AMO_MAX_LEADS; i++) {
        any = any || add[i].present || status[i].present;
        if ((add[i].present && !add[i].id[0]) || (status[i].present && !status[i].id[0])) {
            snprintf(why, why_len, "amoCRM lead %zu has no id", i);
            rc = FUNNEL_EINVAL;
            break;
        }
        if (add[i].present) {
            char event_id[FUNNEL_WEBHOOK_ID_MAX + 16];
            snprintf(event_id, sizeof event_id, "amocrm-%s-add", add[i].id);
            json_int_t at = add[i].at_s ? (json_int_t)add[i].at_s * 1000 : (json_int_t)now_ms;
            rc =
                push(*out, "lead.created",
                     json_pack("{s:s, s:I, s:s, s:s, s:s}", "eventId", event_id, "occurredAtMs", at,
                               "source", "amocrm", "leadId", add[i].id, "owner", add[i].owner));
        }
        if (!rc && status[i].present)
            rc = amo_status_event(cfg, &status[i], now_ms, *out, ignored);
    }
    if (!rc && !any) {
        snprintf(why, why_len, "no leads[add] or leads[status] in the amoCRM form");
        rc = FUNNEL_EINVAL;
    }
    free(add);
    if (rc && *out) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- id prefixes ------------------------------------------------------------------------- */

int funnel_webhook_prefix_ids(json_t *items, const char *prefix)
{
    static const char *const keys[] = {"eventId", "leadId", "paymentId", "refundId"};
    size_t i;
    json_t *item;
    if (!prefix || !*prefix)
        return 0;
    json_array_foreach(items, i, item)
    {
        json_t *event = json_object_get(item, "event");
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const char *id = str_at(event, keys[k]);
            char *prefixed = NULL;
            if (!id)
                continue;
            if (asprintf(&prefixed, "%s%s", prefix, id) < 0)
                return FUNNEL_ENOMEM;
            int rc = json_object_set_new(event, keys[k], json_string(prefixed));
            free(prefixed);
            if (rc)
                return FUNNEL_ENOMEM;
        }
    }
    return 0;
}
