/* records.c — `funnelctl events` and `funnelctl rejected`: read-only views of the database. */
#include "funnelctl.h"

#include "funnel/error.h"
#include "funnel/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 20

/* A JSON string for text read from the database, where not every byte need be UTF-8: a dead
 * letter keeps the event_id of a message refused for bad UTF-8, and rows stored before funneld
 * refused such input hold it too. jansson refuses invalid UTF-8, which used to drop the whole
 * row without a word; here each byte that is not part of valid UTF-8 is shown as \xHH. */
static json_t *text_json(const char *s)
{
    size_t len = strlen(s), o = 0;
    if (len > (SIZE_MAX - 1) / 4)
        return NULL;
    char *out = malloc(len * 4 + 1);
    if (!out)
        return NULL;
    for (size_t at = 0; at < len;) {
        size_t n = funnel_utf8_seq_len(s + at, len - at);
        if (n) {
            memcpy(out + o, s + at, n);
            o += n;
            at += n;
        } else {
            o += (size_t)snprintf(out + o, 5, "\\x%02x", (unsigned char)s[at++]);
        }
    }
    json_t *j = json_stringn(out, o);
    free(out);
    return j;
}

/* Prints one row as a JSON line; FUNNEL_ENOMEM (which ends the listing with an error) when it
 * cannot be built, so no row is ever left out silently. */
static int print_line(json_t *line)
{
    return fctl_print_json(line, JSON_COMPACT);
}

static int print_event(const funnel_event_row_t *row, void *arg)
{
    (void)arg;
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, row->envelope_len, row->envelope);
    json_t *line = json_pack("{s:I, s:o, s:o, s:I, s:I, s:o, s:o}", "seq", (json_int_t)row->seq,
                             "event_id", text_json(row->event_id), "topic", text_json(row->topic),
                             "occurred_at_ms", (json_int_t)row->occurred_at_ms, "received_at_ms",
                             (json_int_t)row->received_at_ms, "source", text_json(row->source),
                             "event", env ? funnel_json_from_message(&env->base) : json_null());
    /* With security, source is the authenticated client; what the envelope claimed is shown
     * beside it (README "Security"). */
    if (line && row->claimed_source &&
        json_object_set_new(line, "claimed_source", text_json(row->claimed_source))) {
        json_decref(line);
        line = NULL;
    }
    funnel_envelope_free(&env);
    return print_line(line);
}

static int print_dead_letter(const funnel_dead_letter_t *dl, void *arg)
{
    (void)arg;
    return print_line(json_pack("{s:I, s:I, s:o, s:o, s:o, s:o, s:I}", "id", (json_int_t)dl->id,
                                "received_at_ms", (json_int_t)dl->received_at_ms, "topic",
                                text_json(dl->topic), "event_id", text_json(dl->event_id), "reason",
                                text_json(dl->reason), "detail", text_json(dl->detail),
                                "payload_size", (json_int_t)dl->payload_size));
}

/* Ends a listing: says why it stopped early, if it did, and closes the database. */
static int listing_end(funnel_store_t **st, int rc)
{
    if (rc)
        fprintf(stderr, "funnelctl: %s\n",
                rc == FUNNEL_ENOMEM ? "out of memory" : funnel_store_errmsg(*st));
    funnel_store_destroy(st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}

int fctl_cmd_events(fctl_t *ctl)
{
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    return listing_end(
        &st, funnel_store_events_list(st, (size_t)(ctl->limit ? ctl->limit : DEFAULT_LIMIT),
                                      print_event, NULL));
}

int fctl_cmd_rejected(fctl_t *ctl)
{
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    return listing_end(
        &st, funnel_store_dead_letters_list(st, (size_t)(ctl->limit ? ctl->limit : DEFAULT_LIMIT),
                                            print_dead_letter, NULL));
}
