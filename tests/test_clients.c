/* test_clients.c — the clients file (clients.c) and the ZAP answers made from it (zap.c). */
#include "clients.h"
#include "zap.h"

#include "funnel/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static funnel_keypair_t k1, k2;

static void keys(void)
{
    cr_assert_eq(funnel_keypair_new(&k1), 0);
    cr_assert_eq(funnel_keypair_new(&k2), 0);
}

TestSuite(clients, .init = keys);

/* The table of text; asserts it loads. */
static funnel_clients_t *load(const char *fmt)
{
    char text[2048], err[256] = "";
    snprintf(text, sizeof text, fmt, k1.public_key, k2.public_key);
    funnel_clients_t *t = NULL;
    cr_assert_eq(funnel_clients_parse(text, "clients.conf", &t, err, sizeof err), 0, "%s", err);
    return t;
}

/* Asserts text (with k1 and k2 in its %s) is refused with a reason containing want. */
static void refused(const char *fmt, const char *want)
{
    char text[2048], err[256] = "";
    snprintf(text, sizeof text, fmt, k1.public_key, k2.public_key);
    funnel_clients_t *t = NULL;
    cr_assert_eq(funnel_clients_parse(text, "clients.conf", &t, err, sizeof err), FUNNEL_ECONFIG,
                 "accepted: %s", text);
    cr_assert_null(t);
    cr_assert(strstr(err, want), "'%s' does not say '%s'", err, want);
}

static const char billing_crm[] =
    "clients = (\n"
    "  { name = \"billing\"; public_key = \"%s\"; publish = [\"payment.*\"];\n"
    "    subscribe = [\"sla.\"]; },\n"
    "  { name = \"crm\"; public_key = \"%s\"; publish = [\"lead.*\", \"client.handed_off\"]; }\n"
    ");\n";

Test(clients, publish_patterns_match_the_rest_of_a_topic_or_all_of_it)
{
    funnel_clients_t *t = load(billing_crm);
    const funnel_clients_entry_t *billing = funnel_clients_by_name(t, "billing");
    const funnel_clients_entry_t *crm = funnel_clients_by_name(t, "crm");
    cr_assert(funnel_clients_may_publish(billing, "payment.received"));
    cr_assert(funnel_clients_may_publish(billing, "payment.refunded"));
    cr_assert_not(funnel_clients_may_publish(billing, "payment"));
    cr_assert_not(funnel_clients_may_publish(billing, "lead.created"));
    cr_assert(funnel_clients_may_publish(crm, "lead.created"));
    cr_assert(funnel_clients_may_publish(crm, "client.handed_off"));
    cr_assert_not(funnel_clients_may_publish(crm, "client.handed_off2"));
    cr_assert_not(funnel_clients_may_publish(crm, "commission.paid"));
    cr_assert_not(funnel_clients_may_publish(NULL, "lead.created"));
    funnel_clients_destroy(&t);
    cr_assert_null(t);
}

Test(clients, keys_and_names_find_their_client)
{
    funnel_clients_t *t = load(billing_crm);
    uint8_t raw[32];
    cr_assert_not_null(zmq_z85_decode(raw, k2.public_key));
    cr_assert_str_eq(funnel_clients_by_key(t, raw)->name, "crm");
    cr_assert_eq(funnel_clients_count(t), 2);
    cr_assert_null(funnel_clients_by_name(t, "payroll"));
    cr_assert_null(funnel_clients_by_name(t, NULL));
    raw[0] ^= 1;
    cr_assert_null(funnel_clients_by_key(t, raw));
    funnel_clients_destroy(&t);
}

static funnel_sub_decision_t decide(const funnel_clients_entry_t *c, const char *prefix)
{
    return funnel_clients_subscription(c, (const uint8_t *)prefix, strlen(prefix));
}

Test(clients, subscriptions_are_applied_narrowed_or_denied)
{
    funnel_clients_t *t = load("clients = ( { name = \"oncall\"; public_key = \"%s\";\n"
                               "  subscribe = [\"sla.\", \"escalation.\"]; },\n"
                               "  { name = \"bi\"; public_key = \"%s\"; subscribe = [\"\"]; } );");
    const funnel_clients_entry_t *oncall = funnel_clients_by_name(t, "oncall");
    cr_assert_eq(decide(oncall, "sla."), FUNNEL_SUB_APPLY);
    cr_assert_eq(decide(oncall, "sla.met"), FUNNEL_SUB_APPLY);
    cr_assert_eq(decide(oncall, "payment."), FUNNEL_SUB_DENY);
    cr_assert_eq(decide(oncall, "sl_"), FUNNEL_SUB_DENY);
    cr_assert_eq(decide(oncall, ""), FUNNEL_SUB_NARROW);
    cr_assert_eq(decide(oncall, "s"), FUNNEL_SUB_NARROW);
    size_t i = 0;
    cr_assert_str_eq(funnel_clients_narrow(oncall, (const uint8_t *)"", 0, &i), "sla.");
    cr_assert_str_eq(funnel_clients_narrow(oncall, (const uint8_t *)"", 0, &i), "escalation.");
    cr_assert_null(funnel_clients_narrow(oncall, (const uint8_t *)"", 0, &i));
    i = 0;
    cr_assert_str_eq(funnel_clients_narrow(oncall, (const uint8_t *)"s", 1, &i), "sla.");
    cr_assert_null(funnel_clients_narrow(oncall, (const uint8_t *)"s", 1, &i));
    cr_assert(funnel_clients_may_see(oncall, "sla.met", 7));
    cr_assert_not(funnel_clients_may_see(oncall, "payment.received", 16));
    const funnel_clients_entry_t *bi = funnel_clients_by_name(t, "bi");
    cr_assert_eq(decide(bi, ""), FUNNEL_SUB_APPLY);
    cr_assert(funnel_clients_may_see(bi, "payment.received", 16));
    funnel_clients_destroy(&t);
}

Test(clients, a_client_without_lists_may_do_nothing)
{
    funnel_clients_t *t = load("clients = ( { name = \"mute\"; public_key = \"%s\"; } );%.0s");
    const funnel_clients_entry_t *c = funnel_clients_by_name(t, "mute");
    cr_assert_not(funnel_clients_may_publish(c, "lead.created"));
    cr_assert_eq(decide(c, ""), FUNNEL_SUB_DENY);
    funnel_clients_destroy(&t);
}

Test(clients, errors_name_the_client_and_the_setting)
{
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; publsh = [\"x\"]; } );%.0s",
            "clients.conf:1: a: unknown setting 'publsh'");
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; },\n"
            "  { name = \"a\"; public_key = \"%s\"; } );",
            "clients.conf:2: a: a second client of that name");
    char twice[512], err[256];
    funnel_clients_t *t = NULL;
    snprintf(twice, sizeof twice,
             "clients = ( { name = \"a\"; public_key = \"%s\"; },\n"
             "  { name = \"b\"; public_key = \"%s\"; } );",
             k1.public_key, k1.public_key);
    cr_assert_eq(funnel_clients_parse(twice, "c", &t, err, sizeof err), FUNNEL_ECONFIG);
    cr_assert(strstr(err, "c:2: b: public_key is already client a's"), "%s", err);
    refused("clients = ( { name = \"a\"; public_key = \"short\"; } );%.0s%.0s",
            "a: public_key is not a 40-character Z85 key");
    refused("clients = ( { public_key = \"%s\"; } );%.0s", "client #1: needs name");
    refused("clients = ( { name = \"has space\"; public_key = \"%s\"; } );%.0s",
            "client #1: name has a character outside");
    refused("clients = ( { name = \"a\"; } );%.0s%.0s", "a: needs public_key");
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; publish = [\"pay*ment\"]; } );%.0s",
            "a: publish entry \"pay*ment\" has '*' before its end");
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; publish = [\"\"]; } );%.0s",
            "publish entry \"\" is empty");
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; subscribe = [\"sla.*\"]; } );%.0s",
            "subscribe entries are prefixes");
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; subscribe = \"sla.\"; } );%.0s",
            "a: subscribe: expected a list of strings");
    refused("clients = ( { name = \"a\"; public_key = \"%s\"; publish = [1]; } );%.0s",
            "a: publish: expected a list of strings");
    refused("clients = ( 1 );%.0s%.0s", "client #1: expected a group");
    refused("clients = { };%.0s%.0s", "clients: expected a list");
    refused("clientz = ( );%.0s%.0s", "unknown setting 'clientz'");
    refused("%.0s%.0s", "no clients = ( ... ); list");
    refused("clients = ( { name = \"a\" ) ;%.0s%.0s", "clients.conf:1: syntax error");
}

Test(clients, a_missing_file_is_an_error_naming_it)
{
    funnel_clients_t *t = NULL;
    char err[256];
    cr_assert_eq(funnel_clients_load("/nonexistent/clients.conf", &t, err, sizeof err),
                 FUNNEL_ECONFIG);
    cr_assert(strstr(err, "/nonexistent/clients.conf: cannot read"), "%s", err);
}

/* ---- ZAP ---------------------------------------------------------------------------------- */

static funnel_frame_t fr(const void *data, size_t len)
{
    return (funnel_frame_t){data, len};
}

static void zap(const funnel_clients_t *t, const char *mechanism, const uint8_t *key, size_t n,
                funnel_zap_answer_t *a)
{
    funnel_frame_t f[] = {fr("1.0", 3),       fr("7", 1), fr("funneld", 7),
                          fr("127.0.0.1", 9), fr("", 0),  fr(mechanism, strlen(mechanism)),
                          fr(key, 32)};
    funnel_zap_answer(t, f, n, a);
}

Test(clients, zap_admits_listed_keys_with_their_name_and_refuses_the_rest)
{
    funnel_clients_t *t = load(billing_crm);
    uint8_t key[32];
    zmq_z85_decode(key, k1.public_key);
    funnel_zap_answer_t a;
    zap(t, "CURVE", key, 7, &a);
    cr_assert_eq(a.outcome, FUNNEL_ZAP_ALLOWED);
    cr_assert_str_eq(a.status_code, "200");
    cr_assert_str_eq(a.user_id, "billing");
    cr_assert_eq(a.request_id.len, 1);
    key[5] ^= 0x40;
    zap(t, "CURVE", key, 7, &a);
    cr_assert_eq(a.outcome, FUNNEL_ZAP_DENIED);
    cr_assert_str_eq(a.status_code, "400");
    cr_assert_str_eq(a.user_id, "");
    cr_assert_eq(strlen(a.key_z85), 40);
    zap(t, "NULL", key, 6, &a);
    cr_assert_eq(a.outcome, FUNNEL_ZAP_DENIED);
    zap(NULL, "CURVE", key, 7, &a);
    cr_assert_eq(a.outcome, FUNNEL_ZAP_DENIED);
    funnel_clients_destroy(&t);
}

Test(clients, zap_answers_a_malformed_request_with_500)
{
    uint8_t key[32] = {0};
    funnel_zap_answer_t a;
    zap(NULL, "CURVE", key, 5, &a);
    cr_assert_str_eq(a.status_code, "500");
    zap(NULL, "CURVE", key, 6, &a); /* CURVE without its key */
    cr_assert_str_eq(a.status_code, "500");
    funnel_frame_t v2[] = {fr("2.0", 3), fr("1", 1),     fr("", 0),  fr("", 0),
                           fr("", 0),    fr("CURVE", 5), fr(key, 32)};
    funnel_zap_answer(NULL, v2, 7, &a);
    cr_assert_str_eq(a.status_code, "500");
    funnel_zap_answer(NULL, NULL, 0, &a);
    cr_assert_str_eq(a.status_code, "500");
    cr_assert_eq(a.request_id.len, 0);
}
