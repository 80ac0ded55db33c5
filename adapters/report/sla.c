/* sla.c — one SLA instance as JSON, for funnelctl sla --json and funnel-web's /api/v1/sla. */
#include "funnel/report.h"

static json_t *opt_int(int64_t v, bool as_text)
{
    return v == FUNNEL_SLA_REPORT_NONE ? json_null()
           : as_text                   ? funnel_report_int(v)
                                       : json_integer(v);
}

static json_t *opt_text(const char *v)
{
    return v && *v ? json_string(v) : json_null();
}

json_t *funnel_report_sla_json(const funnel_sla_row_t *r, bool with_definition, bool times_as_text)
{
    bool t = times_as_text;
    json_t *o = json_pack(
        "{s:o, s:s, s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:o, s:s, s:o, s:o, s:o, s:o}",
        "sla_id", opt_int(r->sla_id, t), "policy", r->policy, "version", (json_int_t)r->version,
        "key", r->key, "owner", r->owner, "state", r->state, "started_at_ms",
        opt_int(r->started_at_ms, t), "due_at_ms", opt_int(r->due_at_ms, t), "next_at_ms",
        opt_int(r->next_at_ms, t), "step", (json_int_t)r->step, "acked_by", opt_text(r->acked_by),
        "start_event", r->start_event, "stopped_at_ms", opt_int(r->stopped_at_ms, t), "on_time",
        r->on_time < 0 ? json_null() : json_boolean(r->on_time), "late_ms", opt_int(r->late_ms, t),
        "stop_event", opt_text(r->stop_event));
    if (o)
        json_object_update_new(o, json_pack("{s:s, s:s, s:s, s:I, s:o}", "process", r->process,
                                            "responsible", r->responsible, "queue", r->queue,
                                            "priority", (json_int_t)r->priority, "opened_at_ms",
                                            opt_int(r->opened_at_ms, t)));
    if (o && with_definition)
        json_object_set_new(o, "definition", opt_text(r->definition));
    return o;
}
