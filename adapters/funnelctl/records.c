/* records.c — `funnelctl events` and `funnelctl rejected`: read-only views of the database. */
#include "funnelctl.h"

#include "funnel/json.h"

#include <stdio.h>

#define DEFAULT_LIMIT 20

static void print_line(json_t *line)
{
    char *text = json_dumps(line, JSON_COMPACT);
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(line);
}

static int print_event(const funnel_event_row_t *row, void *arg)
{
    (void)arg;
    funnel_envelope_t *env = funnel__v1__envelope__unpack(NULL, row->envelope_len, row->envelope);
    print_line(json_pack("{s:I, s:s, s:s, s:I, s:I, s:s, s:o}", "seq", (json_int_t)row->seq,
                         "event_id", row->event_id, "topic", row->topic, "occurred_at_ms",
                         (json_int_t)row->occurred_at_ms, "received_at_ms",
                         (json_int_t)row->received_at_ms, "source", row->source, "event",
                         env ? funnel_json_from_message(&env->base) : json_null()));
    funnel_envelope_free(&env);
    return 0;
}

static int print_dead_letter(const funnel_dead_letter_t *dl, void *arg)
{
    (void)arg;
    print_line(json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:I}", "id", (json_int_t)dl->id,
                         "received_at_ms", (json_int_t)dl->received_at_ms, "topic", dl->topic,
                         "event_id", dl->event_id, "reason", dl->reason, "detail", dl->detail,
                         "payload_size", (json_int_t)dl->payload_size));
    return 0;
}

int fctl_cmd_events(fctl_t *ctl)
{
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    int rc = funnel_store_events_list(st, (size_t)(ctl->limit ? ctl->limit : DEFAULT_LIMIT),
                                      print_event, NULL);
    if (rc)
        fprintf(stderr, "funnelctl: %s\n", funnel_store_errmsg(st));
    funnel_store_destroy(&st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}

int fctl_cmd_rejected(fctl_t *ctl)
{
    funnel_store_t *st = fctl_store_open(ctl);
    if (!st)
        return FCTL_REFUSED;
    int rc = funnel_store_dead_letters_list(st, (size_t)(ctl->limit ? ctl->limit : DEFAULT_LIMIT),
                                            print_dead_letter, NULL);
    if (rc)
        fprintf(stderr, "funnelctl: %s\n", funnel_store_errmsg(st));
    funnel_store_destroy(&st);
    return rc ? FCTL_REFUSED : FCTL_OK;
}
