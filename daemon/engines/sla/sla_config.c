/* sla_config.c — the `sla { ... }` section: calendars, policies, quotas, event matching.
 *
 * Strings in this section are names and notify targets; quotes, backslashes and control
 * characters are refused in them, so printing needs no escaping and a printed policy reads back
 * to the same policy (the engine stores that text as the policy's version). */
#include "sla_config.h"
#include "funnel/error.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#define WORD_MAX 128 /* bytes of a name, field, value or notify target */

/* ---- event matching ------------------------------------------------------------------- */

/* The descriptor of the body message a body case carries, or NULL. */
static const ProtobufCMessageDescriptor *body_descriptor(funnel_body_t body)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&funnel__v1__envelope__descriptor, (unsigned)body);
    return f && f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
}

/* Fields whose empty value means another field's (docs/protocol.md). */
static const struct field_default {
    funnel_body_t body;
    const char *field, *from;
} field_defaults[] = {
    {FUNNEL__V1__ENVELOPE__BODY_REQUEST_OPENED, "queue", "to_team"},
};

static const char *field_text(const funnel_envelope_t *env, const char *field, char *buf,
                              size_t buf_len);

const char *funnel_sla_field(const funnel_envelope_t *env, const char *field, char *buf,
                             size_t buf_len)
{
    const char *v = field_text(env, field, buf, buf_len);
    for (size_t i = 0; !*v && i < sizeof field_defaults / sizeof field_defaults[0]; i++)
        if (env->body_case == field_defaults[i].body && !strcmp(field, field_defaults[i].field))
            v = field_text(env, field_defaults[i].from, buf, buf_len);
    return v;
}

static const char *field_text(const funnel_envelope_t *env, const char *field, char *buf,
                              size_t buf_len)
{
    const ProtobufCMessage *body = funnel_envelope_body(env);
    const ProtobufCFieldDescriptor *f =
        body ? protobuf_c_message_descriptor_get_field_by_name(body->descriptor, field) : NULL;
    buf[0] = '\0';
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
        return buf;
    const char *member = (const char *)body + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return s ? s : buf;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)member);
        snprintf(buf, buf_len, "%s", v ? v->name : "");
        return buf;
    }
    case PROTOBUF_C_TYPE_INT64:
        snprintf(buf, buf_len, "%lld", (long long)*(const int64_t *)member);
        return buf;
    case PROTOBUF_C_TYPE_INT32:
        snprintf(buf, buf_len, "%d", *(const int32_t *)member);
        return buf;
    case PROTOBUF_C_TYPE_BOOL:
        snprintf(buf, buf_len, "%s", *(const protobuf_c_boolean *)member ? "true" : "false");
        return buf;
    default:
        return buf;
    }
}

bool funnel_sla_match(const funnel_sla_match_t *m, const funnel_envelope_t *env)
{
    char buf[64];
    if (env->body_case != m->body)
        return false;
    for (size_t i = 0; i < m->n_filters; i++)
        if (strcmp(funnel_sla_field(env, m->field[i], buf, sizeof buf), m->value[i]) != 0)
            return false;
    return true;
}

bool funnel_sla_match_any(const funnel_sla_match_list_t *list, const funnel_envelope_t *env)
{
    for (size_t i = 0; i < list->n; i++)
        if (funnel_sla_match(&list->items[i], env))
            return true;
    return false;
}

/* ---- parsing helpers ----------------------------------------------------------------- */

static int bad(char *err, size_t err_len, const char *where, const char *what)
{
    snprintf(err, err_len, "%s: %s", where, what);
    return FUNNEL_ECONFIG;
}

/* A name, field or target: 1..WORD_MAX bytes, nothing that would need escaping. */
static bool word_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > WORD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == '\\' || s[i] == 0x7f)
            return false;
    return true;
}

static int dup_word(const char *s, char **out, const char *where, char *err, size_t err_len)
{
    if (!word_ok(s))
        return bad(err, err_len, where, "expected a non-empty string without quotes");
    return (*out = strdup(s)) ? 0 : FUNNEL_ENOMEM;
}

static int get_word(const config_setting_t *g, const char *name, const char *def, char **out,
                    char *err, size_t err_len)
{
    const char *s = def;
    const config_setting_t *m = config_setting_get_member(g, name);
    if (m && !(s = config_setting_get_string(m)))
        return bad(err, err_len, name, "expected a string");
    if (!s)
        return bad(err, err_len, name, "missing");
    return dup_word(s, out, name, err, err_len);
}

/* Refuses members not in names (NULL-terminated): a typo must not become a silent default. */
static int only_members(const config_setting_t *g, const char *const *names, char *err,
                        size_t err_len)
{
    for (int i = 0; i < config_setting_length(g); i++) {
        const char *n = config_setting_name(config_setting_get_elem(g, (unsigned)i));
        const char *const *k = names;
        while (*k && strcmp(*k, n ? n : ""))
            k++;
        if (!*k)
            return bad(err, err_len, n ? n : "?", "unknown member");
    }
    return 0;
}

/* A duration member, or def_ms when absent; allow_zero accepts "0" (an offset at due). */
static int get_duration(const config_setting_t *g, const char *name, int64_t def_ms,
                        bool allow_zero, int64_t *out, char *err, size_t err_len)
{
    const config_setting_t *m = config_setting_get_member(g, name);
    const char *s = m ? config_setting_get_string(m) : NULL;
    *out = def_ms;
    if (!m)
        return 0;
    if (s && allow_zero && (strcmp(s, "0") == 0 || strcmp(s, "0s") == 0)) {
        *out = 0;
        return 0;
    }
    if (!s)
        return bad(err, err_len, name, "expected a duration such as \"90s\", \"30m\", \"8h\"");
    if (funnel_duration_parse(s, out)) {
        snprintf(err, err_len, "%s: \"%s\" is not a duration such as \"90s\", \"30m\", \"8h\"",
                 name, s);
        return FUNNEL_ECONFIG;
    }
    return 0;
}

static void match_clear(funnel_sla_match_t *m)
{
    free(m->text);
    for (size_t i = 0; i < m->n_filters; i++) {
        free(m->field[i]);
        free(m->value[i]);
    }
    memset(m, 0, sizeof *m);
}

/* Parses "topic field=value ...": the topic must be an ingest topic, each field must exist in
 * its body and an enum value must be one of the enum's names. */
static int match_parse(const char *text, const char *where, funnel_sla_match_t *m, char *err,
                       size_t err_len)
{
    char buf[512], *save = NULL;
    memset(m, 0, sizeof *m);
    if (!text || strlen(text) >= sizeof buf || !word_ok(text))
        return bad(err, err_len, where, "expected \"topic [field=value ...]\"");
    snprintf(buf, sizeof buf, "%s", text);
    char *topic = strtok_r(buf, " ", &save);
    if (!topic || funnel_topic_lookup(topic, strlen(topic), &m->body)) {
        snprintf(err, err_len, "%s: '%s' is not an ingest topic", where, topic ? topic : "");
        return FUNNEL_ECONFIG;
    }
    const ProtobufCMessageDescriptor *d = body_descriptor(m->body);
    int rc = (m->text = strdup(text)) ? 0 : FUNNEL_ENOMEM;
    for (char *tok; !rc && (tok = strtok_r(NULL, " ", &save));) {
        char *eq = strchr(tok, '=');
        const ProtobufCFieldDescriptor *f = NULL;
        if (eq) {
            *eq = '\0';
            f = protobuf_c_message_descriptor_get_field_by_name(d, tok);
        }
        if (!f || !eq[1] || m->n_filters == FUNNEL_SLA_MAX_FILTERS ||
            (f->type == PROTOBUF_C_TYPE_ENUM &&
             !protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, eq + 1))) {
            snprintf(err, err_len, "%s: filter '%s' is not field=value of %s (at most %d)", where,
                     tok, topic, FUNNEL_SLA_MAX_FILTERS);
            rc = FUNNEL_ECONFIG;
            break;
        }
        size_t i = m->n_filters++;
        if (!(m->field[i] = strdup(tok)) || !(m->value[i] = strdup(eq + 1)))
            rc = FUNNEL_ENOMEM;
    }
    if (rc)
        match_clear(m);
    return rc;
}

static int match_list_parse(const config_setting_t *g, const char *name,
                            funnel_sla_match_list_t *list, char *err, size_t err_len)
{
    const config_setting_t *m = config_setting_get_member(g, name);
    if (!m)
        return 0;
    if (config_setting_type(m) == CONFIG_TYPE_STRING) { /* one match, as `start` always took */
        int rc = match_parse(config_setting_get_string(m), name, &list->items[0], err, err_len);
        list->n = rc ? 0 : 1;
        return rc;
    }
    int n = config_setting_length(m);
    if ((config_setting_type(m) != CONFIG_TYPE_ARRAY &&
         config_setting_type(m) != CONFIG_TYPE_LIST) ||
        n > FUNNEL_SLA_MAX_MATCHES)
        return bad(err, err_len, name, "expected a list of at most 8 topic matches");
    for (int i = 0; i < n; i++) {
        int rc =
            match_parse(config_setting_get_string_elem(m, i), name, &list->items[i], err, err_len);
        if (rc)
            return rc;
        list->n++;
    }
    return 0;
}

static void match_list_clear(funnel_sla_match_list_t *list)
{
    for (size_t i = 0; i < list->n; i++)
        match_clear(&list->items[i]);
    list->n = 0;
}

/* A percentage "25%" (1..100) of `whole` into *pct, or a duration into *ms. An error quotes
 * the value and says which of the two it failed to be. */
static int get_share(const config_setting_t *g, const char *name, const char *whole, int64_t *ms,
                     int64_t *pct, char *err, size_t err_len)
{
    const config_setting_t *m = config_setting_get_member(g, name);
    const char *s = m ? config_setting_get_string(m) : NULL;
    char why[160] = "is neither a duration (\"2h\") nor a percentage (\"25%\")";
    char *end;
    *ms = *pct = 0;
    if (!m)
        return 0;
    if (!s)
        return bad(err, err_len, name, "expected a duration (\"2h\") or a percentage (\"25%\")");
    if (*s && s[strlen(s) - 1] == '%') {
        long v = strtol(s, &end, 10);
        if (end == s + strlen(s) - 1 && v >= 1 && v <= 100) {
            *pct = v;
            return 0;
        }
        if (end == s + strlen(s) - 1)
            snprintf(why, sizeof why, "is %s%% of the %s: a share must be 1%%..100%%",
                     v > 100 ? "more than 100" : "less than 1", whole);
    } else if (funnel_duration_parse(s, ms) == 0) {
        return 0;
    }
    snprintf(err, err_len, "%s: \"%s\" %s", name, s, why);
    return FUNNEL_ECONFIG;
}

/* Resolves a calendar by name: an inline calendar_def group (stored versions), one of the
 * configured calendars, or the built-in 24x7. */
static int calendar_resolve(const config_setting_t *g, const funnel_sla_config_t *cfg,
                            funnel_calendar_spec_t *out, char *err, size_t err_len)
{
    const char *name = FUNNEL_CALENDAR_24X7;
    const config_setting_t *def = config_setting_get_member(g, "calendar_def");
    config_setting_lookup_string(g, "calendar", &name);
    if (def)
        return funnel_calendar_spec_parse(def, name, out, err, err_len);
    for (size_t i = 0; cfg && i < cfg->n_calendars; i++)
        if (strcmp(cfg->calendars[i].name, name) == 0)
            return funnel_calendar_spec_copy(out, &cfg->calendars[i]);
    if (strcmp(name, FUNNEL_CALENDAR_24X7) == 0)
        return funnel_calendar_spec_24x7(out);
    snprintf(err, err_len, "calendar: '%s' is not defined in sla.calendars", name);
    return FUNNEL_ECONFIG;
}

/* ---- policies ------------------------------------------------------------------------ */

void funnel_sla_policy_clear(funnel_sla_policy_t *p)
{
    free(p->name);
    free(p->key);
    free(p->owner);
    free(p->definition);
    free(p->process);
    free(p->responsible);
    free(p->queue);
    free(p->priority);
    match_list_clear(&p->start);
    match_list_clear(&p->assign);
    match_list_clear(&p->reopen);
    match_list_clear(&p->stop);
    match_list_clear(&p->reset);
    match_list_clear(&p->pause);
    match_list_clear(&p->resume);
    funnel_calendar_spec_clear(&p->calendar);
    for (size_t i = 0; i < p->n_levels; i++)
        free(p->levels[i].notify);
    memset(p, 0, sizeof *p);
}

static void print_list(const char *indent, const char *name, const funnel_sla_match_list_t *l,
                       FILE *out)
{
    fprintf(out, "%s%s = [", indent, name);
    for (size_t i = 0; i < l->n; i++)
        fprintf(out, "%s\"%s\"", i ? ", " : "", l->items[i].text);
    fprintf(out, "];\n");
}

/* The members added for requests and processing order, printed only when set: a policy without
 * them prints (and hashes) as before, so an upgrade adds no policy version. */
static void policy_print_requests(const funnel_sla_policy_t *p, const char *in, FILE *out)
{
    if (p->assign.n)
        print_list(in, "assign", &p->assign, out);
    if (p->reopen.n)
        print_list(in, "reopen", &p->reopen, out);
    if (strcmp(p->process, p->name))
        fprintf(out, "%sprocess = \"%s\";\n", in, p->process);
    if (p->responsible)
        fprintf(out, "%sresponsible = \"%s\";\n", in, p->responsible);
    if (p->order == FUNNEL_SLA_ORDER_FIFO)
        fprintf(out, "%sorder = \"fifo\";\n", in);
    if (p->queue)
        fprintf(out, "%squeue = \"%s\";\n", in, p->queue);
    if (p->priority)
        fprintf(out, "%spriority = \"%s\";\n", in, p->priority);
}

/* Writes the members of a policy group; with inline_calendar also its calendar's definition,
 * which is what makes a stored version self-contained. */
static void policy_print(const funnel_sla_policy_t *p, const char *in, bool inline_calendar,
                         FILE *out)
{
    char d[32];
    fprintf(out, "%sname = \"%s\";\n", in, p->name);
    /* One start prints as the string it always was, so existing policies keep their hash. */
    if (p->start.n == 1)
        fprintf(out, "%sstart = \"%s\";\n", in, p->start.items[0].text);
    else
        print_list(in, "start", &p->start, out);
    fprintf(out, "%skey = \"%s\";\n%sowner = \"%s\";\n", in, p->key, in, p->owner);
    policy_print_requests(p, in, out);
    print_list(in, "stop", &p->stop, out);
    print_list(in, "reset", &p->reset, out);
    print_list(in, "pause", &p->pause, out);
    print_list(in, "resume", &p->resume, out);
    funnel_duration_format(p->target_ms, d, sizeof d);
    fprintf(out, "%starget = \"%s\";\n%scalendar = \"%s\";\n", in, d, in, p->calendar.name);
    if (inline_calendar) {
        char deeper[64];
        snprintf(deeper, sizeof deeper, "%s  ", in);
        fprintf(out, "%scalendar_def = {\n", in);
        funnel_calendar_spec_print(&p->calendar, deeper, out);
        fprintf(out, "%s};\n", in);
    }
    if (p->warn_pct)
        fprintf(out, "%swarning = \"%lld%%\";\n", in, (long long)p->warn_pct);
    else if (p->warn_ms) {
        funnel_duration_format(p->warn_ms, d, sizeof d);
        fprintf(out, "%swarning = \"%s\";\n", in, d);
    }
    fprintf(out, "%sescalation = (", in);
    for (size_t i = 0; i < p->n_levels; i++) {
        funnel_duration_format(p->levels[i].after_ms, d, sizeof d);
        fprintf(out, "%s{ after = \"%s\"; notify = \"%s\"; }", i ? ", " : "", d,
                p->levels[i].notify);
    }
    fprintf(out, ");\n");
    if (p->repeat_count) {
        funnel_duration_format(p->repeat_every_ms, d, sizeof d);
        fprintf(out, "%srepeat = { count = %lld; every = \"%s\"; };\n", in,
                (long long)p->repeat_count, d);
    }
}

/* process, responsible, order, queue and priority. A fifo order needs a queue field; a queue
 * or priority field must be a field of a start topic's body, else a typo would put every
 * instance in one queue. A start without it (a reopen) keeps the key's earlier values. */
static int parse_requests(const config_setting_t *g, funnel_sla_policy_t *p, char *err,
                          size_t err_len)
{
    const char *order = NULL;
    int rc;
    if ((rc = get_word(g, "process", p->name, &p->process, err, err_len)) ||
        (config_setting_get_member(g, "responsible") &&
         (rc = get_word(g, "responsible", NULL, &p->responsible, err, err_len))) ||
        (config_setting_get_member(g, "queue") &&
         (rc = get_word(g, "queue", NULL, &p->queue, err, err_len))) ||
        (config_setting_get_member(g, "priority") &&
         (rc = get_word(g, "priority", NULL, &p->priority, err, err_len))))
        return rc;
    if (config_setting_lookup_string(g, "order", &order) && strcmp(order, "fifo"))
        return bad(err, err_len, "order", "expected \"fifo\" (or no order)");
    if (config_setting_get_member(g, "order") && !order)
        return bad(err, err_len, "order", "expected \"fifo\" (or no order)");
    p->order = order ? FUNNEL_SLA_ORDER_FIFO : FUNNEL_SLA_ORDER_NONE;
    if (p->order == FUNNEL_SLA_ORDER_FIFO && !p->queue)
        return bad(err, err_len, "queue",
                   "order = \"fifo\" needs the queue field (e.g. \"queue\")");
    const char *fields[] = {p->queue, p->priority};
    for (size_t f = 0; f < 2; f++) {
        bool found = !fields[f];
        for (size_t i = 0; !found && i < p->start.n; i++)
            found = protobuf_c_message_descriptor_get_field_by_name(
                        body_descriptor(p->start.items[i].body), fields[f]) != NULL;
        if (!found)
            return bad(err, err_len, f ? "priority" : "queue", "not a field of any start topic");
    }
    return 0;
}

static int parse_levels(const config_setting_t *g, funnel_sla_policy_t *p, char *err,
                        size_t err_len)
{
    static const char *const names[] = {"after", "notify", NULL};
    const config_setting_t *esc = config_setting_get_member(g, "escalation");
    int rc = 0;
    if (!esc)
        return 0;
    if (config_setting_type(esc) != CONFIG_TYPE_LIST ||
        config_setting_length(esc) > FUNNEL_SLA_MAX_LEVELS)
        return bad(err, err_len, "escalation",
                   "expected a list ( { after; notify; }, ... ) of 8 at most");
    for (int i = 0; !rc && i < config_setting_length(esc); i++) {
        const config_setting_t *lv = config_setting_get_elem(esc, (unsigned)i);
        funnel_sla_level_t *l = &p->levels[i];
        if (config_setting_type(lv) != CONFIG_TYPE_GROUP)
            return bad(err, err_len, "escalation", "each level is a group { after; notify; }");
        if ((rc = only_members(lv, names, err, err_len)) ||
            (rc = get_duration(lv, "after", 0, true, &l->after_ms, err, err_len)) ||
            (rc = get_word(lv, "notify", NULL, &l->notify, err, err_len)))
            return rc;
        p->n_levels++;
        if (i && l->after_ms < p->levels[i - 1].after_ms)
            return bad(err, err_len, "escalation", "levels must be in ascending order of after");
    }
    return 0;
}

static int parse_repeat(const config_setting_t *g, funnel_sla_policy_t *p, char *err,
                        size_t err_len)
{
    static const char *const names[] = {"count", "every", NULL};
    const config_setting_t *r = config_setting_get_member(g, "repeat");
    int count = 0, rc;
    if (!r)
        return 0;
    if (config_setting_type(r) != CONFIG_TYPE_GROUP)
        return bad(err, err_len, "repeat", "expected { count = N; every = \"1h\"; }");
    if ((rc = only_members(r, names, err, err_len)) ||
        (rc = get_duration(r, "every", 0, false, &p->repeat_every_ms, err, err_len)))
        return rc;
    config_setting_lookup_int(r, "count", &count);
    if (count < 0 || count > 1000 || (count > 0 && !p->repeat_every_ms) || (count && !p->n_levels))
        return bad(err, err_len, "repeat",
                   "count must be 0..1000 and needs escalation levels and an interval `every`");
    p->repeat_count = count;
    return 0;
}

/* Finishes a parsed policy: its definition text (calendar inlined) and the hash of it. */
static int policy_seal(funnel_sla_policy_t *p)
{
    size_t len = 0;
    FILE *f = open_memstream(&p->definition, &len);
    if (!f)
        return FUNNEL_ENOMEM;
    policy_print(p, "", true, f);
    if (fclose(f) || !p->definition)
        return FUNNEL_ENOMEM;
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *c = (const unsigned char *)p->definition; *c; c++)
        h = (h ^ *c) * 1099511628211ULL;
    p->hash = h;
    return 0;
}

static int policy_parse(const config_setting_t *g, const funnel_sla_config_t *cfg,
                        funnel_sla_policy_t *p, char *err, size_t err_len)
{
    static const char *const names[] = {
        "name",       "start",    "key",    "owner",    "stop",         "reset",
        "pause",      "resume",   "target", "calendar", "calendar_def", "warning",
        "escalation", "repeat",   "assign", "process",  "responsible",  "order",
        "queue",      "priority", "reopen", NULL};
    int rc;
    memset(p, 0, sizeof *p);
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(err, err_len, "policies", "each policy is a group { name = ...; ... }");
    if ((rc = only_members(g, names, err, err_len)) ||
        (rc = get_word(g, "name", NULL, &p->name, err, err_len)) ||
        (rc = match_list_parse(g, "start", &p->start, err, err_len)) ||
        (!p->start.n &&
         (rc = bad(err, err_len, "start", "expected \"topic [field=value ...]\""))) ||
        (rc = get_word(g, "key", NULL, &p->key, err, err_len)) ||
        (rc = get_word(g, "owner", "owner", &p->owner, err, err_len)) ||
        (rc = match_list_parse(g, "assign", &p->assign, err, err_len)) ||
        (rc = match_list_parse(g, "reopen", &p->reopen, err, err_len)) ||
        (rc = parse_requests(g, p, err, err_len)) ||
        (rc = match_list_parse(g, "stop", &p->stop, err, err_len)) ||
        (rc = match_list_parse(g, "reset", &p->reset, err, err_len)) ||
        (rc = match_list_parse(g, "pause", &p->pause, err, err_len)) ||
        (rc = match_list_parse(g, "resume", &p->resume, err, err_len)) ||
        (rc = get_duration(g, "target", -1, false, &p->target_ms, err, err_len)) ||
        (rc = calendar_resolve(g, cfg, &p->calendar, err, err_len)) ||
        (rc = get_share(g, "warning", "target", &p->warn_ms, &p->warn_pct, err, err_len)) ||
        (rc = parse_levels(g, p, err, err_len)) || (rc = parse_repeat(g, p, err, err_len)))
        goto fail;
    if (p->target_ms <= 0) {
        rc = bad(err, err_len, "target", "missing (a duration such as \"8h\")");
        goto fail;
    }
    /* A warning longer than the target would be due before the instance started. */
    if (p->warn_ms > p->target_ms) {
        const char *warning = "", *target = "";
        config_setting_lookup_string(g, "warning", &warning);
        config_setting_lookup_string(g, "target", &target);
        snprintf(err, err_len, "warning: \"%s\" is longer than the target \"%s\"", warning, target);
        rc = FUNNEL_ECONFIG;
        goto fail;
    }
    if (!p->stop.n) {
        rc = bad(err, err_len, "stop", "at least one topic must stop the SLA");
        goto fail;
    }
    if ((rc = policy_seal(p)))
        goto fail;
    return 0;
fail:
    funnel_sla_policy_clear(p);
    return rc;
}

int funnel_sla_policy_from_text(const char *definition, funnel_sla_policy_t *p, char *err,
                                size_t err_len)
{
    config_t lc;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return FUNNEL_ENOMEM;
    fprintf(f, "p = {\n%s};\n", definition);
    if (fclose(f) || !text)
        return FUNNEL_ENOMEM;
    config_init(&lc);
    int rc = FUNNEL_ECONFIG;
    if (config_read_string(&lc, text) != CONFIG_TRUE)
        snprintf(err, err_len, "line %d: %s", config_error_line(&lc), config_error_text(&lc));
    else
        rc = policy_parse(config_lookup(&lc, "p"), NULL, p, err, err_len);
    config_destroy(&lc);
    free(text);
    return rc;
}

/* ---- quotas --------------------------------------------------------------------------- */

static void quota_clear(funnel_sla_quota_t *q)
{
    free(q->name);
    match_clear(&q->count);
    funnel_calendar_spec_clear(&q->calendar);
    memset(q, 0, sizeof *q);
}

static int quota_parse(const config_setting_t *g, const funnel_sla_config_t *cfg,
                       funnel_sla_quota_t *q, char *err, size_t err_len)
{
    static const char *const names[] = {"name",    "count", "period", "calendar",
                                        "minimum", "pace",  NULL};
    const char *count = NULL, *period = NULL;
    long long minimum = 0;
    int64_t pace_ms = 0;
    int rc;
    memset(q, 0, sizeof *q);
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(err, err_len, "quotas", "each quota is a group { name = ...; ... }");
    config_setting_lookup_string(g, "count", &count);
    config_setting_lookup_string(g, "period", &period);
    config_setting_lookup_int64(g, "minimum", &minimum);
    if ((rc = only_members(g, names, err, err_len)) ||
        (rc = get_word(g, "name", NULL, &q->name, err, err_len)) ||
        (rc = match_parse(count, "count", &q->count, err, err_len)) ||
        (rc = calendar_resolve(g, cfg, &q->calendar, err, err_len)) ||
        (rc = get_share(g, "pace", "period", &pace_ms, &q->pace_pct, err, err_len)))
        goto fail;
    q->period = period && !strcmp(period, "week")    ? FUNNEL_PERIOD_WEEK
                : period && !strcmp(period, "month") ? FUNNEL_PERIOD_MONTH
                                                     : 0;
    q->minimum = minimum;
    if (!q->period) {
        snprintf(err, err_len, "period: \"%s\" is not \"week\" or \"month\"", period ? period : "");
        rc = FUNNEL_ECONFIG;
    } else if (minimum < 1) {
        snprintf(err, err_len, "minimum: %lld is below 1", minimum);
        rc = FUNNEL_ECONFIG;
    } else if (pace_ms) {
        rc = bad(err, err_len, "pace", "must be a percentage (\"50%\"), not a duration");
    }
    if (rc)
        goto fail;
    return 0;
fail:
    quota_clear(q);
    return rc;
}

/* ---- the section ------------------------------------------------------------------------ */

int funnel_sla_config_defaults(void *sec)
{
    memset(sec, 0, sizeof(funnel_sla_config_t));
    ((funnel_sla_config_t *)sec)->late_grace_ms = FUNNEL_SLA_LATE_GRACE_MS;
    ((funnel_sla_config_t *)sec)->horizon_ms = FUNNEL_SLA_HORIZON_MS;
    return 0;
}

void funnel_sla_config_clear(void *sec)
{
    funnel_sla_config_t *c = sec;
    for (size_t i = 0; i < c->n_calendars; i++)
        funnel_calendar_spec_clear(&c->calendars[i]);
    for (size_t i = 0; i < c->n_policies; i++)
        funnel_sla_policy_clear(&c->policies[i]);
    for (size_t i = 0; i < c->n_quotas; i++)
        quota_clear(&c->quotas[i]);
    free(c->calendars);
    free(c->policies);
    free(c->quotas);
    memset(c, 0, sizeof *c);
}

/* Parses every element of the list or group `name` with one of the parsers into a fresh array
 * of elements of `size` bytes. */
typedef int (*elem_parse_fn)(const config_setting_t *e, funnel_sla_config_t *c, void *out,
                             char *err, size_t err_len);

static int calendar_elem(const config_setting_t *e, funnel_sla_config_t *c, void *out, char *err,
                         size_t err_len)
{
    (void)c;
    const char *name = config_setting_name(e);
    if (config_setting_type(e) != CONFIG_TYPE_GROUP || !word_ok(name))
        return bad(err, err_len, "calendars", "each calendar is a named group name = { ... }");
    return funnel_calendar_spec_parse(e, name, out, err, err_len);
}

static int policy_elem(const config_setting_t *e, funnel_sla_config_t *c, void *out, char *err,
                       size_t err_len)
{
    return policy_parse(e, c, out, err, err_len);
}

static int quota_elem(const config_setting_t *e, funnel_sla_config_t *c, void *out, char *err,
                      size_t err_len)
{
    return quota_parse(e, c, out, err, err_len);
}

/* How an error names element i of the list `name`: by its own name (the group's, or its `name`
 * member) with the noun, "policy first_call", as the operator wrote it; by position only when it
 * has no usable name. */
static void elem_label(const config_setting_t *e, const char *noun, const char *name, int i,
                       char *out, size_t len)
{
    const char *own = NULL;
    if (!config_setting_lookup_string(e, "name", &own))
        own = config_setting_name(e);
    if (word_ok(own))
        snprintf(out, len, "%s %s", noun, own);
    else
        snprintf(out, len, "%s[%d]", name, i);
}

static int parse_array(const config_setting_t *g, const char *name, const char *noun,
                       funnel_sla_config_t *c, elem_parse_fn fn, size_t size, void **arr, size_t *n,
                       char *err, size_t err_len)
{
    const config_setting_t *m = config_setting_get_member(g, name);
    char why[256];
    if (!m)
        return 0;
    int len = config_setting_length(m);
    if (config_setting_type(m) != CONFIG_TYPE_LIST && config_setting_type(m) != CONFIG_TYPE_GROUP)
        return bad(err, err_len, name, "expected a list ( ... ) or a group { ... }");
    if (!(*arr = calloc(len ? (size_t)len : 1, size)))
        return FUNNEL_ENOMEM;
    for (int i = 0; i < len; i++) {
        int rc = fn(config_setting_get_elem(m, (unsigned)i), c, (char *)*arr + (size_t)i * size,
                    why, sizeof why);
        if (rc) {
            char label[160];
            elem_label(config_setting_get_elem(m, (unsigned)i), noun, name, i, label, sizeof label);
            snprintf(err, err_len, "%s: %s", label, why);
            return rc;
        }
        (*n)++;
    }
    return 0;
}

/* Names must be unique within each list: they key stored versions and quota rows. An error
 * names the first one given twice. */
static int names_unique(const void *arr, size_t n, size_t size, size_t name_offset,
                        const char *noun, char *err, size_t err_len)
{
    for (size_t i = 0; i < n; i++) {
        const char *a = *(char *const *)((const char *)arr + i * size + name_offset);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(a, *(char *const *)((const char *)arr + j * size + name_offset))) {
                snprintf(err, err_len, "%s %s: defined twice (names must be unique)", noun, a);
                return FUNNEL_ECONFIG;
            }
    }
    return 0;
}

int funnel_sla_config_parse(const config_setting_t *g, void *sec, char *err, size_t err_len)
{
    static const char *const names[] = {"calendars",  "policies", "quotas",
                                        "late_grace", "horizon",  NULL};
    funnel_sla_config_t c = {0};
    int rc;
    if ((rc = only_members(g, names, err, err_len)) ||
        (rc = get_duration(g, "late_grace", FUNNEL_SLA_LATE_GRACE_MS, true, &c.late_grace_ms, err,
                           err_len)) ||
        (rc = get_duration(g, "horizon", FUNNEL_SLA_HORIZON_MS, true, &c.horizon_ms, err,
                           err_len)) ||
        (rc = parse_array(g, "calendars", "calendar", &c, calendar_elem, sizeof *c.calendars,
                          (void **)&c.calendars, &c.n_calendars, err, err_len)) ||
        (rc = parse_array(g, "policies", "policy", &c, policy_elem, sizeof *c.policies,
                          (void **)&c.policies, &c.n_policies, err, err_len)) ||
        (rc = parse_array(g, "quotas", "quota", &c, quota_elem, sizeof *c.quotas,
                          (void **)&c.quotas, &c.n_quotas, err, err_len)))
        goto fail;
    if ((rc = names_unique(c.policies, c.n_policies, sizeof *c.policies,
                           offsetof(funnel_sla_policy_t, name), "policy", err, err_len)) ||
        (rc = names_unique(c.quotas, c.n_quotas, sizeof *c.quotas,
                           offsetof(funnel_sla_quota_t, name), "quota", err, err_len)))
        goto fail;
    /* Every calendar must compile (known time zone, some working hours) before it is used. */
    for (size_t i = 0; i < c.n_calendars; i++) {
        funnel_calendar_t *cal;
        if ((rc = funnel_calendar_new(&c.calendars[i], &cal, err, err_len))) {
            rc = rc == FUNNEL_ENOMEM ? rc : FUNNEL_ECONFIG;
            goto fail;
        }
        funnel_calendar_destroy(&cal);
    }
    funnel_sla_config_clear(sec);
    *(funnel_sla_config_t *)sec = c;
    return 0;
fail:
    funnel_sla_config_clear(&c);
    return rc;
}

void funnel_sla_config_print(const void *sec, FILE *out)
{
    const funnel_sla_config_t *c = sec;
    fprintf(out, "sla = {\n  calendars = {\n");
    for (size_t i = 0; i < c->n_calendars; i++) {
        fprintf(out, "    %s = {\n", c->calendars[i].name);
        funnel_calendar_spec_print(&c->calendars[i], "      ", out);
        fprintf(out, "    };\n");
    }
    fprintf(out, "  };\n  policies = (");
    for (size_t i = 0; i < c->n_policies; i++) {
        fprintf(out, "%s\n    {\n", i ? "," : "");
        policy_print(&c->policies[i], "      ", false, out);
        fprintf(out, "    }");
    }
    fprintf(out, "\n  );\n  quotas = (");
    for (size_t i = 0; i < c->n_quotas; i++) {
        const funnel_sla_quota_t *q = &c->quotas[i];
        fprintf(out,
                "%s\n    { name = \"%s\"; count = \"%s\"; period = \"%s\"; calendar = \"%s\"; "
                "minimum = %lld;",
                i ? "," : "", q->name, q->count.text,
                q->period == FUNNEL_PERIOD_WEEK ? "week" : "month", q->calendar.name,
                (long long)q->minimum);
        if (q->pace_pct)
            fprintf(out, " pace = \"%lld%%\";", (long long)q->pace_pct);
        fprintf(out, " }");
    }
    char grace[32], horizon[32];
    funnel_duration_format(c->late_grace_ms, grace, sizeof grace);
    funnel_duration_format(c->horizon_ms, horizon, sizeof horizon);
    fprintf(out, "\n  );\n  late_grace = \"%s\";\n  horizon = \"%s\";\n};\n", grace,
            horizon); /* 0: "0s" */
}
