/* sla_instance.c — SLA instances: their rows, their schedule (the step an instance does next and
 * when), the outputs a step or a stop publishes, and the live path of an event through the
 * instances of its key (see sla.c for the model, sla_internal.h for the files). */
#include "sla_internal.h"
#include "funnel/error.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *const state_names[] = {"open", "paused", "met"};

void sla_inst_read(sqlite3_stmt *s, inst_t *in)
{
    const unsigned char *state = sqlite3_column_text(s, 5);
    in->vlog = 0; /* not read: only an insert writes it */
    in->id = sqlite3_column_int64(s, 0);
    sla_col_text(s, 1, in->policy);
    in->version = sqlite3_column_int64(s, 2);
    sla_col_text(s, 3, in->key);
    sla_col_text(s, 4, in->owner);
    in->state = !state || !strcmp((const char *)state, "met") ? ST_MET
                : !strcmp((const char *)state, "paused")      ? ST_PAUSED
                                                              : ST_OPEN;
    in->started_at = sqlite3_column_int64(s, 6);
    in->anchor_at = sqlite3_column_int64(s, 7);
    in->consumed_ms = sqlite3_column_int64(s, 8);
    in->due_at = sla_col_time(s, 9);
    in->paused_at = sla_col_time(s, 10);
    in->step = sqlite3_column_int64(s, 11);
    in->next_at = sla_col_time(s, 12);
    sla_col_text(s, 13, in->acked_by);
    in->opened_at = sqlite3_column_int64(s, 14);
    sla_col_text(s, 15, in->start_event);
    in->stopped_at = sla_col_time(s, 16);
    in->on_time = sqlite3_column_int(s, 17) != 0;
    in->late_ms = sqlite3_column_int64(s, 18);
    sla_col_text(s, 19, in->stop_event);
    sla_col_text(s, 20, in->queue);
    in->priority = sqlite3_column_int64(s, 21);
    in->arrived_at = sqlite3_column_int64(s, 22);
}

/* Writes the mutable columns of a live instance back. */
int sla_inst_write(funnel_sla_t *sla, const inst_t *in)
{
    sqlite3_stmt *s = sla_stmt(sla, S_UPDATE);
    sqlite3_bind_text(s, 1, state_names[in->state], -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, in->started_at);
    sqlite3_bind_int64(s, 3, in->anchor_at);
    sqlite3_bind_int64(s, 4, in->consumed_ms);
    sla_bind_time(s, 5, in->due_at);
    sla_bind_time(s, 6, in->paused_at);
    sqlite3_bind_int64(s, 7, in->step);
    sla_bind_time(s, 8, in->next_at);
    if (in->acked_by[0])
        sqlite3_bind_text(s, 9, in->acked_by, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 10, in->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, in->arrived_at);
    sqlite3_bind_int64(s, 12, in->id);
    int rc = sla_step_done(s);
    if (!rc && in->next_at != NONE)
        rc = funnel_timerheap_push(sla->heap, sla_timer_at(sla, in), in->id);
    if (!rc)
        sla_idle_seen(sla, in);
    return rc;
}

int sla_inst_load(funnel_sla_t *sla, int64_t id, inst_t *in)
{
    sqlite3_stmt *s = sla_stmt(sla, S_BY_ID);
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        sla_inst_read(s, in);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? FUNNEL_ENOTFOUND : FUNNEL_ESTORE;
}

/* Moves the open count by delta (see D_OPEN). */
void sla_open_add(funnel_sla_t *sla, int64_t delta)
{
    sla->open += delta;
    sla->dirty |= D_OPEN;
}

/* ---- steps ---------------------------------------------------------------------------- */

static int64_t warn_lead(const funnel_sla_policy_t *p)
{
    return p->warn_pct ? p->target_ms * p->warn_pct / 100 : p->warn_ms;
}

static int64_t first_step(const funnel_sla_policy_t *p)
{
    return warn_lead(p) > 0 ? 0 : 1;
}

/* Business time on the clock at which step fires, counted from the start of the clock: the
 * warning before the target, a level or repeat after it. */
static int64_t step_offset(const funnel_sla_policy_t *p, int64_t step)
{
    int64_t levels = (int64_t)p->n_levels;
    if (step == 0)
        return p->target_ms - warn_lead(p);
    if (step <= levels)
        return p->target_ms + p->levels[step - 1].after_ms;
    return p->target_ms + p->levels[levels - 1].after_ms + (step - levels) * p->repeat_every_ms;
}

/* When step fires for this instance, NONE when it never does (paused, acknowledged, past the
 * last repeat). Offsets are business time on the version's calendar, walked from the running
 * clock (anchor_at, consumed_ms) rather than from due_at: a pause after the due time keeps
 * due_at (inst_schedule) but still stops the clock the levels count on. */
int64_t sla_step_at(pver_t *v, const inst_t *in, int64_t step)
{
    const funnel_sla_policy_t *p = &v->pol;
    if (in->state != ST_OPEN || in->acked_by[0] || step > (int64_t)p->n_levels + p->repeat_count)
        return NONE;
    int64_t left = step_offset(p, step) - in->consumed_ms;
    return funnel_calendar_add(v->cal, in->anchor_at, left > 0 ? left : 0);
}

/* When the wall-clock timer fires a step due at next_at of an instance whose last event arrived
 * at arrived_at: at its due time, but not before the late grace has passed since that arrival.
 * During a backfill every step is due on arrival; the grace lets the events that arrive close
 * behind (the stop, a pause) be applied first, so what comes out does not depend on whether a
 * timer pass fell between the batches. A step due after the grace is not delayed at all, and
 * one due before a later event still comes out before that event (sla_steps_before). */
int64_t sla_grace_at(const funnel_sla_t *sla, int64_t next_at, int64_t arrived_at)
{
    int64_t until = arrived_at + sla->grace_ms;
    return next_at == NONE || next_at >= until ? next_at : until;
}

/* The heap time of an instance's next step (sla_grace_at); NONE for none. */
int64_t sla_timer_at(const funnel_sla_t *sla, const inst_t *in)
{
    return sla_grace_at(sla, in->next_at, in->arrived_at);
}

/* Recomputes the due time from the running clock, and the next step's time. Once the clock has
 * used the whole target the instance is due and due_at never moves again: a pause after the due
 * time and its resume leave it where the escalations said it was. */
static void inst_schedule(pver_t *v, inst_t *in)
{
    int64_t left = v->pol.target_ms - in->consumed_ms;
    if (left > 0)
        in->due_at = funnel_calendar_add(v->cal, in->anchor_at, left);
    in->next_at = sla_step_at(v, in, in->step);
}

/* Passes the instance over every step due before t (event time), oldest first, calling fn for
 * each, so the steps between two events of a key come out as if the clock had run between them,
 * however the events were batched. Returns fn's first error. */
int sla_steps_before(pver_t *v, inst_t *in, int64_t t, step_fn fn, void *arg)
{
    int rc = 0;
    while (!rc && in->next_at != NONE && in->next_at < t) {
        rc = fn(arg, v, in);
        in->step++;
        in->next_at = sla_step_at(v, in, in->step);
    }
    return rc;
}

/* ---- outputs --------------------------------------------------------------------------- */

/* Fills the SlaRef naming an instance of version v (NULL: a version this build cannot read);
 * sla_id is the caller's buffer of 24 bytes. */
void sla_ref_fill(Funnel__V1__SlaRef *ref, char *sla_id, const pver_t *v, const inst_t *in)
{
    funnel__v1__sla_ref__init(ref);
    snprintf(sla_id, 24, "%" PRId64, in->id);
    ref->sla_id = sla_id;
    ref->policy = (char *)in->policy;
    ref->policy_version = (int32_t)in->version;
    ref->key = (char *)in->key;
    ref->started_at_ms = in->started_at;
    ref->due_at_ms = in->due_at == NONE ? 0 : in->due_at;
    ref->owner = (char *)in->owner;
    ref->process = v ? v->pol.process : (char *)in->policy;
    ref->responsible = v && v->pol.responsible ? v->pol.responsible : "";
    ref->queue = (char *)in->queue;
    ref->priority = (int32_t)in->priority;
}

/* Fills the envelope and SlaRef common to every instance output. */
static void envelope_init(funnel_envelope_t *env, Funnel__V1__SlaRef *ref, char *sla_id,
                          char *event_id, const pver_t *v, const inst_t *in, const char *suffix,
                          int64_t at)
{
    funnel__v1__envelope__init(env);
    snprintf(event_id, 96, "sla-%" PRId64 "-%s-%" PRId64, in->id, suffix, at);
    env->event_id = event_id;
    env->occurred_at_ms = at;
    env->source = "funneld";
    sla_ref_fill(ref, sla_id, v, in);
}

/* Emits step in->step of an instance, which came due at `at`. */
static int emit_step(funnel_router_t *router, pver_t *v, const inst_t *in, int64_t at,
                     int64_t now_ms)
{
    funnel_envelope_t env;
    Funnel__V1__SlaRef ref;
    char sla_id[24], event_id[96], suffix[32];
    int64_t levels = (int64_t)v->pol.n_levels;
    snprintf(suffix, sizeof suffix, "s%" PRId64, in->step);
    envelope_init(&env, &ref, sla_id, event_id, v, in, suffix, at);
    if (in->step == 0) {
        Funnel__V1__SlaWarning w;
        funnel__v1__sla_warning__init(&w);
        w.sla = &ref;
        env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_WARNING;
        env.sla_warning = &w;
        return funnel_router_emit(router, "sla.warning", &env, now_ms);
    }
    Funnel__V1__SlaEscalation e;
    funnel__v1__sla_escalation__init(&e);
    int64_t level = in->step <= levels ? in->step : levels;
    e.sla = &ref;
    e.level = (int32_t)level;
    e.notify = v->pol.levels[level - 1].notify;
    e.repeat = (int32_t)(in->step - level);
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_ESCALATION;
    env.sla_escalation = &e;
    return funnel_router_emit(router, "sla.escalation", &env, now_ms);
}

/* The first step of the clock (instance id, clock start) not yet published; 0 for none. */
int sla_fired_next(funnel_sla_t *sla, int64_t id, int64_t clock, int64_t *next)
{
    sqlite3_stmt *s = sla_stmt(sla, S_FIRED_NEXT);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, clock);
    int rc = sqlite3_step(s);
    *next = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Publishes step in->step, due at in->next_at, unless its clock already did (a recomputation
 * passes over steps the live path published), and records it. */
int sla_step_publish(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, const inst_t *in,
                     int64_t now_ms)
{
    int64_t next;
    int rc = sla_fired_next(sla, in->id, in->started_at, &next);
    if (rc || in->step < next)
        return rc;
    if ((rc = emit_step(router, v, in, in->next_at, now_ms)))
        return rc;
    sqlite3_stmt *s = sla_stmt(sla, S_FIRED_SET);
    sqlite3_bind_int64(s, 1, in->id);
    sqlite3_bind_int64(s, 2, in->started_at);
    sqlite3_bind_int64(s, 3, in->step + 1);
    return sla_step_done(s);
}

int sla_fire_step(void *arg, pver_t *v, const inst_t *in)
{
    fire_ctx_t *c = arg;
    c->fired++;
    return sla_step_publish(c->sla, c->router, v, in, c->now_ms);
}

/* ---- reacting to events ------------------------------------------------------------------ */

int sla_kinds_of(const funnel_sla_policy_t *p, const funnel_envelope_t *env)
{
    return (funnel_sla_match_any(&p->stop, env) ? K_STOP : 0) |
           (funnel_sla_match_any(&p->reset, env) ? K_RESET : 0) |
           (funnel_sla_match_any(&p->pause, env) ? K_PAUSE : 0) |
           (funnel_sla_match_any(&p->resume, env) ? K_RESUME : 0) |
           (funnel_sla_match_any(&p->assign, env) ? K_ASSIGN : 0);
}

/* What inst_change did to an instance. */
enum { CH_NONE, CH_WRITE, CH_MET };

/* Applies a stop, reset, pause or resume (kinds, see kinds_of) that occurred at t to a live
 * instance of version v, in memory only, so the live path (inst_apply) and a recomputation
 * (recompute) share every rule. A stop meets the instance, on time when it occurred (or the
 * clock was paused) at or before the due time, whenever it arrives; lateness is the business
 * time the clock ran past the target. Returns what the caller must write. */
int sla_inst_change(pver_t *v, inst_t *in, const change_t *c)
{
    const funnel_sla_policy_t *p = &v->pol;
    int kinds = c->kinds;
    int64_t t = c->t;
    /* A reassignment changes whose the instance is, not its clock: outputs after it carry the
     * new owner. It may come with another kind (one topic in two lists); both apply. */
    bool assigned = (kinds & K_ASSIGN) && c->owner && *c->owner && strcmp(in->owner, c->owner);
    if (assigned)
        snprintf(in->owner, sizeof in->owner, "%s", c->owner);
    if (kinds & (K_STOP | K_EXPIRE)) {
        /* While paused the clock stands at the pause: a stop then counts from there. */
        int64_t end = in->state == ST_PAUSED && in->paused_at < t ? in->paused_at : t;
        int64_t used = in->consumed_ms + funnel_calendar_between(v->cal, in->anchor_at, end);
        /* On time iff at or before the due time, even when no business time passed after it
         * (a stop at 19:00 after a due time of 18:00 is late by 0 business ms); an expiry, which
         * nobody stopped, never is. */
        in->on_time = end <= in->due_at && !(kinds & K_EXPIRE);
        in->late_ms = in->on_time || used <= p->target_ms ? 0 : used - p->target_ms;
        in->stopped_at = t;
        in->consumed_ms = used; /* the whole clock at the stop, stored as stop_business_ms */
        snprintf(in->stop_event, sizeof in->stop_event, "%s", c->event_id);
        in->state = ST_MET; /* held events after the stop are not this instance's (apply_held) */
        in->next_at = NONE;
        return CH_MET;
    }
    if (kinds & K_RESET) {
        if (t < in->started_at)
            return assigned ? CH_WRITE : CH_NONE; /* older than the clock it would restart */
        in->state = ST_OPEN;
        in->started_at = in->anchor_at = t;
        in->consumed_ms = 0;
        in->paused_at = NONE;
        in->acked_by[0] = '\0';
        in->step = first_step(p);
    } else if ((kinds & K_PAUSE) && in->state == ST_OPEN) {
        t = t > in->anchor_at ? t : in->anchor_at;
        in->consumed_ms += funnel_calendar_between(v->cal, in->anchor_at, t);
        in->state = ST_PAUSED;
        in->paused_at = t;
        in->next_at = NONE;
        return CH_WRITE;
    } else if ((kinds & K_RESUME) && in->state == ST_PAUSED) {
        in->state = ST_OPEN;
        in->anchor_at = t > in->paused_at ? t : in->paused_at;
        in->paused_at = NONE;
    } else {
        return assigned ? CH_WRITE : CH_NONE;
    }
    inst_schedule(v, in);
    return CH_WRITE;
}

/* Stores the met columns inst_change filled in. `first` says the instance was live until now:
 * only then is sla.met published (once per instance; a later correction of a met instance
 * updates the row, not the subscribers) and the open count lowered. */
int sla_inst_met(funnel_sla_t *sla, funnel_router_t *router, const inst_t *in, bool first,
                 int64_t now_ms)
{
    sqlite3_stmt *s = sla_stmt(sla, S_MET);
    sqlite3_bind_int64(s, 1, in->stopped_at);
    sqlite3_bind_int(s, 2, in->on_time);
    sqlite3_bind_int64(s, 3, in->late_ms);
    if (in->stop_event[0]) /* none: expired (K_EXPIRE), which compliance counts as breached */
        sqlite3_bind_text(s, 4, in->stop_event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, in->consumed_ms);
    sqlite3_bind_int64(s, 6, in->step); /* the steps passed before the stop (inst_apply) */
    sqlite3_bind_int64(s, 7, in->id);
    /* the stop may come with a reassignment (sla_inst_change): sla.met names the new owner */
    sqlite3_bind_text(s, 8, in->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int(
        s, 9, in->stop_event[0] ? sla_log_claim(sla, in->policy, in->stop_event, V_STOP) : 0);
    int rc = sla_step_done(s);
    if (!rc && in->stopped_at < sla->oldest_stop)
        sla->oldest_stop = in->stopped_at; /* a rollback leaves it lower: one idle prune pass */
    if (rc || !first)
        return rc;
    sla_open_add(sla, -1);
    funnel_envelope_t env;
    Funnel__V1__SlaRef ref;
    Funnel__V1__SlaMet met;
    char sla_id[24], out_id[96];
    envelope_init(&env, &ref, sla_id, out_id, sla_version_find(sla, in->policy, in->version), in,
                  "met", in->stopped_at);
    funnel__v1__sla_met__init(&met);
    met.sla = &ref;
    met.on_time = in->on_time;
    met.late_ms = in->late_ms;
    met.stop_event_id = (char *)in->stop_event;
    met.expired = !in->stop_event[0];
    env.body_case = FUNNEL__V1__ENVELOPE__BODY_SLA_MET;
    env.sla_met = &met;
    return funnel_router_emit(router, "sla.met", &env, now_ms);
}

/* Applies an event (kinds, see kinds_of) that occurred at t to one live instance of its version
 * and stores the result. The steps that came due before t are published first, with their own
 * times: the event may arrive long after them, in one batch with the events before it, before
 * a timer pass could fire them. */
int sla_inst_apply(funnel_sla_t *sla, funnel_router_t *router, pver_t *v, inst_t *in,
                   const change_t *c, int64_t now_ms)
{
    fire_ctx_t fc = {sla, router, now_ms, 0};
    int rc = sla_steps_before(v, in, c->t, sla_fire_step, &fc);
    int ch = rc ? CH_NONE : sla_inst_change(v, in, c);
    in->arrived_at = now_ms; /* the late grace counts from the last event (sla_grace_at) */
    if (!rc && (ch == CH_WRITE || (ch == CH_NONE && fc.fired)))
        rc = sla_inst_write(sla, in);
    return !rc && ch == CH_MET ? sla_inst_met(sla, router, in, true, now_ms) : rc;
}

/* Reads the live instances of one key (bounded), so rows can be updated after the scan. */
int sla_live_read(funnel_sla_t *sla, const char *key, inst_t *out, size_t *n)
{
    sqlite3_stmt *s = sla_stmt(sla, S_LIVE);
    int rc;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    *n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < LIVE_MAX)
        sla_inst_read(s, &out[(*n)++]);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Whether an event that occurred at t belongs to a live instance: one opened at or before t.
 * An event from before an instance's start is not that instance's, whatever the arrival order. */
bool sla_inst_takes(const inst_t *in, int64_t t)
{
    return in->opened_at <= t;
}

/* Whether a stored version keyed by field is something other than a start to env: only then
 * can a live instance of that key take it (most events are nothing to any policy). */
static bool key_concerned(const funnel_sla_t *sla, const char *field, const funnel_envelope_t *env)
{
    for (size_t i = 0; i < sla->n_vers; i++)
        if (strcmp(sla->vers[i].pol.key, field) == 0 && sla_kinds_of(&sla->vers[i].pol, env))
            return true;
    return false;
}

/* Every live instance keyed by a field of this event and opened by the time it occurred gets
 * the event. Key fields are those of the stored versions (only they have instances); each is
 * looked up once, and only when a version keyed by it has the event in a list. */
int sla_key_events(funnel_sla_t *sla, funnel_router_t *router, const funnel_envelope_t *env,
                   int64_t now_ms)
{
    inst_t *live = malloc(LIVE_MAX * sizeof *live);
    int rc = live ? 0 : FUNNEL_ENOMEM;
    for (size_t i = 0; !rc && i < sla->n_vers; i++) {
        const char *field = sla->vers[i].pol.key;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(sla->vers[j].pol.key, field) == 0;
        char buf[64];
        const char *key = seen || !key_concerned(sla, field, env)
                              ? ""
                              : funnel_sla_field(env, field, buf, sizeof buf);
        size_t n = 0;
        if (!*key || (rc = sla_live_read(sla, key, live, &n)))
            continue;
        for (size_t k = 0; !rc && k < n; k++) {
            pver_t *v = sla_version_find(sla, live[k].policy, live[k].version);
            int kinds = v ? sla_kinds_of(&v->pol, env) : 0;
            char obuf[64];
            change_t c = {kinds, env->occurred_at_ms, env->event_id,
                          kinds & K_ASSIGN ? funnel_sla_field(env, v->pol.owner, obuf, sizeof obuf)
                                           : NULL};
            if (kinds && strcmp(v->pol.key, field) == 0 &&
                sla_inst_takes(&live[k], env->occurred_at_ms))
                rc = sla_inst_apply(sla, router, v, &live[k], &c, now_ms);
        }
    }
    free(live);
    return rc;
}

/* Whether the body of env has a field named field (NULL: the policy has none, so nothing to
 * inherit either). */
static bool has_field(const funnel_envelope_t *env, const char *field)
{
    const ProtobufCMessage *body = funnel_envelope_body(env);
    return !field ||
           (body && protobuf_c_message_descriptor_get_field_by_name(body->descriptor, field));
}

/* Whether env starts (or reopens) an instance of p. */
bool sla_starts(const funnel_sla_policy_t *p, const funnel_envelope_t *env)
{
    return funnel_sla_match_any(&p->start, env) || funnel_sla_match_any(&p->reopen, env);
}

/* What the start env gives an instance of p; the I_* bits for the fields its topic lacks. A
 * reopen inherits everything and needs a previous instance. */
void sla_start_attrs(const funnel_sla_policy_t *p, const funnel_envelope_t *env, start_attrs_t *a)
{
    char buf[64];
    memset(a, 0, sizeof *a);
    if (!funnel_sla_match_any(&p->start, env)) {
        a->inherit = I_OWNER | I_QUEUE | I_PRIORITY | I_REOPEN;
        return;
    }
    snprintf(a->owner, sizeof a->owner, "%.128s", funnel_sla_field(env, p->owner, buf, sizeof buf));
    if (p->queue)
        snprintf(a->queue, sizeof a->queue, "%.128s",
                 funnel_sla_field(env, p->queue, buf, sizeof buf));
    if (p->priority)
        a->priority = strtoll(funnel_sla_field(env, p->priority, buf, sizeof buf), NULL, 10);
    a->inherit = (has_field(env, p->owner) ? 0 : I_OWNER) |
                 (has_field(env, p->queue) ? 0 : I_QUEUE) |
                 (has_field(env, p->priority) ? 0 : I_PRIORITY);
}

/* Takes the values a inherits from the key's previous instance prev (NULL: none). */
void sla_attrs_inherit(start_attrs_t *a, const inst_t *prev)
{
    if (!prev)
        return;
    /* The precision bounds what GCC's Release build cannot see is a terminated ID_BUF. */
    if (a->inherit & I_OWNER)
        snprintf(a->owner, sizeof a->owner, "%.128s", prev->owner);
    if (a->inherit & I_QUEUE)
        snprintf(a->queue, sizeof a->queue, "%.128s", prev->queue);
    if (a->inherit & I_PRIORITY)
        a->priority = prev->priority;
}

/* A new instance of version v for key, opened by the start event_id that occurred at t; the
 * row is not written yet (inst_insert). */
void sla_inst_fresh(inst_t *in, pver_t *v, const char *key, const start_attrs_t *a, int64_t t,
                    const char *event_id)
{
    *in = (inst_t){.state = ST_OPEN, .version = v->version, .paused_at = NONE, .stopped_at = NONE};
    snprintf(in->policy, sizeof in->policy, "%s", v->pol.name);
    snprintf(in->key, sizeof in->key, "%s", key);
    snprintf(in->owner, sizeof in->owner, "%.128s", a->owner);
    snprintf(in->queue, sizeof in->queue, "%.128s", a->queue);
    in->priority = a->priority;
    snprintf(in->start_event, sizeof in->start_event, "%s", event_id);
    in->started_at = in->anchor_at = in->opened_at = t;
    in->step = first_step(&v->pol);
    inst_schedule(v, in);
}

/* Inserts a fresh instance as an open row (counted open) and sets its id; arms no timer. */
int sla_inst_insert(funnel_sla_t *sla, inst_t *in)
{
    sqlite3_stmt *s = sla_stmt(sla, S_INSERT);
    sqlite3_bind_text(s, 1, in->policy, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, in->version);
    sqlite3_bind_text(s, 3, in->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, in->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, in->started_at);
    sqlite3_bind_int64(s, 6, in->anchor_at);
    sla_bind_time(s, 7, in->due_at);
    sqlite3_bind_int64(s, 8, in->step);
    sla_bind_time(s, 9, in->next_at);
    sqlite3_bind_text(s, 10, in->start_event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 11, in->opened_at);
    if (in->queue[0])
        sqlite3_bind_text(s, 12, in->queue, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 13, in->priority);
    sqlite3_bind_int64(s, 14, in->arrived_at);
    sqlite3_bind_int(s, 15, in->vlog);
    int rc = sla_step_done(s);
    if (!rc) {
        in->id = sqlite3_last_insert_rowid(sla->db);
        sla_open_add(sla, 1);
        sla_idle_seen(sla, in);
    }
    return rc;
}

/* Reads the first (S_KEY_FIRST) or latest (S_KEY_LAST) instance of (policy, key) into in;
 * *found says whether there is one. 0 or FUNNEL_ESTORE. */
int sla_key_row(funnel_sla_t *sla, enum stmt_id id, const char *policy, const char *key, inst_t *in,
                bool *found)
{
    sqlite3_stmt *s = sla_stmt(sla, id);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, policy, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if ((*found = rc == SQLITE_ROW))
        sla_inst_read(s, in);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FUNNEL_ESTORE;
}

/* Lets a take what it inherits from the latest instance of (policy, key); in is scratch. */
static int key_last(funnel_sla_t *sla, const char *policy, const char *key, inst_t *in,
                    start_attrs_t *a)
{
    bool found;
    int rc = sla_key_row(sla, S_KEY_LAST, policy, key, in, &found);
    sla_attrs_inherit(a, found ? in : NULL);
    if (!rc && !found && (a->inherit & I_REOPEN))
        return FUNNEL_ENOTFOUND; /* nothing to reopen */
    return rc;
}

/* Starts an instance of p for this event unless one is already live for its key, then lets it
 * catch up on the events held for it. */
int sla_start(funnel_sla_t *sla, funnel_router_t *router, const funnel_sla_policy_t *p,
              const funnel_envelope_t *env, int64_t now_ms)
{
    char kbuf[64];
    const char *key = funnel_sla_field(env, p->key, kbuf, sizeof kbuf);
    start_attrs_t a;
    inst_t *live = malloc(LIVE_MAX * sizeof *live);
    size_t n = 0;
    pver_t *v = NULL;
    bool applied = false;
    int rc = live ? 0 : FUNNEL_ENOMEM;
    if (rc || !*key || strlen(key) > FUNNEL_ID_MAX || (rc = sla_live_read(sla, key, live, &n)))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (strcmp(live[i].policy, p->name) == 0)
            goto out; /* a repeated start does not restart the clock; reset topics do */
    if ((rc = sla_version_current(sla, p, &v)))
        goto out;
    inst_t in;
    sla_start_attrs(p, env, &a);
    if (a.inherit && (rc = key_last(sla, p->name, key, &in, &a))) {
        rc = rc == FUNNEL_ENOTFOUND ? 0 : rc;
        goto out;
    }
    sla_inst_fresh(&in, v, key, &a, env->occurred_at_ms, env->event_id);
    in.arrived_at = now_ms;
    /* The row records what the start's log row holds unless it inherits or may be reassigned. */
    if (!a.inherit && !v->pol.assign.n)
        in.vlog = sla_log_claim(sla, p->name, env->event_id, V_START);
    if ((rc = sla_inst_insert(sla, &in)))
        goto out;
    /* Every held event applied was written through inst_write, which arms the timer. */
    rc = sla_apply_held(sla, router, v, &in, now_ms, &applied);
    if (!rc && !applied && in.next_at != NONE)
        rc = funnel_timerheap_push(sla->heap, sla_timer_at(sla, &in), in.id);
out:
    free(live);
    return rc;
}
