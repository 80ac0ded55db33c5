/* statement.c — a rep's commission statement as JSON and as CSV (funnelctl statement --json,
 * --csv, and funnel-web's /api/v1/statements/{rep}). */
#include "funnel/report.h"

#include "funnel/date.h"

static json_t *line_json(const funnel_ledger_posting_t *p)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I}", "entry_id", p->entry_id,
                     "kind", p->kind, "role", p->role, "client_id", p->client_id, "cause_event_id",
                     p->cause_event_id, "subject_event_id", p->subject_event_id, "amount",
                     funnel_report_int(p->amount), "rate_bp", (json_int_t)p->rate_bp,
                     "effective_ms", (json_int_t)p->effective_ms, "posted_at_ms",
                     (json_int_t)p->posted_at_ms);
}

static json_t *section_json(const funnel_ledger_section_t *sec)
{
    json_t *lines = json_array();
    for (size_t k = 0; lines && k < sec->n_lines; k++)
        if (json_array_append_new(lines, line_json(&sec->lines[k]))) {
            json_decref(lines);
            return NULL;
        }
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:b, s:o}", "currency", sec->currency,
                     "opening", funnel_report_int(sec->opening), "accruals",
                     funnel_report_int(sec->accruals), "clawbacks",
                     funnel_report_int(sec->clawbacks), "payouts", funnel_report_int(sec->payouts),
                     "closing", funnel_report_int(sec->closing), "reconciles", sec->reconciles,
                     "lines", lines ? lines : json_null());
}

json_t *funnel_report_statement_json(const char *rep, const char *period,
                                     const funnel_ledger_statement_t *st)
{
    json_t *root = json_pack("{s:s, s:s, s:I, s:I, s:[]}", "rep", rep, "period", period, "from_ms",
                             (json_int_t)st->from_ms, "to_ms", (json_int_t)st->to_ms, "currencies");
    json_t *list = root ? json_object_get(root, "currencies") : NULL;
    for (size_t i = 0; list && i < st->n_sections; i++)
        if (json_array_append_new(list, section_json(&st->sections[i]))) {
            json_decref(root);
            return NULL;
        }
    return root;
}

/* One CSV row: a summary row has only row, currency and amount. */
static void csv_row(FILE *out, const char *row, const char *currency,
                    const funnel_ledger_posting_t *p, int64_t amount)
{
    char num[32], rate[32], day[16] = "";
    snprintf(num, sizeof num, "%lld", (long long)amount);
    snprintf(rate, sizeof rate, "%lld", p ? (long long)p->rate_bp : 0LL);
    if (p)
        funnel_date_format(p->effective_ms, day, sizeof day);
    const char *fields[] = {row,
                            currency,
                            day,
                            p ? p->kind : "",
                            p ? p->role : "",
                            p ? p->client_id : "",
                            p ? p->entry_id : "",
                            p ? p->cause_event_id : "",
                            p ? p->subject_event_id : "",
                            p ? rate : "",
                            num};
    size_t n = sizeof fields / sizeof fields[0];
    for (size_t i = 0; i < n; i++)
        funnel_report_csv_field(out, fields[i], i + 1 == n ? "\n" : ",");
}

void funnel_report_statement_csv(const funnel_ledger_statement_t *st, FILE *out)
{
    fprintf(out, "row,currency,date,kind,role,client_id,entry_id,cause_event_id,"
                 "subject_event_id,rate_bp,amount\n");
    for (size_t i = 0; i < st->n_sections; i++) {
        const funnel_ledger_section_t *sec = &st->sections[i];
        csv_row(out, "opening", sec->currency, NULL, sec->opening);
        for (size_t k = 0; k < sec->n_lines; k++)
            csv_row(out, "posting", sec->currency, &sec->lines[k], sec->lines[k].amount);
        csv_row(out, "accruals", sec->currency, NULL, sec->accruals);
        csv_row(out, "clawbacks", sec->currency, NULL, sec->clawbacks);
        csv_row(out, "payouts", sec->currency, NULL, sec->payouts);
        csv_row(out, "closing", sec->currency, NULL, sec->closing);
    }
}
