/* clients.h — who may talk to funneld when `security` is on: the clients file.
 *
 * A libconfig file listing every client key and what it may do:
 *
 *     clients = (
 *         { name = "billing"; public_key = "<Z85, 40 characters>";
 *           publish = ["payment.*"]; subscribe = ["sla."]; },
 *         { name = "crm"; public_key = "..."; publish = ["lead.*", "client.handed_off"]; }
 *     );
 *
 * - name: 1..FUNNEL_CLIENT_NAME_MAX characters of [A-Za-z0-9._-], unique. It is the ZAP
 *   User-Id of the client's connections and the recorded `source` of what it publishes.
 * - public_key: the client's CURVE public key in Z85 (its NAME.pub), unique.
 * - publish (optional, default none): topic patterns the client may put on ingest and submit.
 *   A pattern is a topic ("client.handed_off") or ends in `*`, which matches the rest of a
 *   topic ("payment.*", "*"); `*` elsewhere is an error.
 * - subscribe (optional, default none): output topic prefixes the client may receive, live and
 *   by replay ("sla.", "payment.received"); "" is every topic. No `*` here: they are prefixes.
 * Nothing else: an unknown setting, a duplicate name or key, a bad key, pattern or prefix is an
 * error naming the client (its name, or its position when the name is the problem).
 *
 * A table is immutable once loaded; a reload builds a new one and swaps it. Errors: 0 or a
 * negative FUNNEL_E* code with a one-line reason in err. No thread rules: no shared state. */
#ifndef FUNNEL_CLIENTS_H
#define FUNNEL_CLIENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "funnel/keyfile.h"

#define FUNNEL_CLIENT_NAME_MAX  64
#define FUNNEL_CLIENT_KEY_BYTES 32 /* a CURVE public key, binary */

typedef struct funnel_clients funnel_clients_t;

/* One client of the file; owned by its table. */
typedef struct funnel_clients_entry {
    char name[FUNNEL_CLIENT_NAME_MAX + 1];
    char key_z85[FUNNEL_KEY_Z85_LEN + 1];
    uint8_t key[FUNNEL_CLIENT_KEY_BYTES];
    char **publish; /* patterns, n_publish of them */
    size_t n_publish;
    char **subscribe; /* prefixes, n_subscribe of them */
    size_t n_subscribe;
} funnel_clients_entry_t;

/* Reads the clients file at path. Returns 0 with *out (free with funnel_clients_destroy),
 * FUNNEL_ECONFIG (err: the file, line and client at fault), FUNNEL_ENOMEM. */
int funnel_clients_load(const char *path, funnel_clients_t **out, char *err, size_t err_len);

/* The same from the text of a file (tests, fuzzing); origin names it in errors. */
int funnel_clients_parse(const char *text, const char *origin, funnel_clients_t **out, char *err,
                         size_t err_len);

/* NULL-safe; sets *clients to NULL. */
void funnel_clients_destroy(funnel_clients_t **clients);

size_t funnel_clients_count(const funnel_clients_t *clients);
const funnel_clients_entry_t *funnel_clients_at(const funnel_clients_t *clients, size_t i);

/* The client with this binary public key, or this name (NUL-terminated); NULL when none. */
const funnel_clients_entry_t *funnel_clients_by_key(const funnel_clients_t *clients,
                                                    const uint8_t key[FUNNEL_CLIENT_KEY_BYTES]);
const funnel_clients_entry_t *funnel_clients_by_name(const funnel_clients_t *clients,
                                                     const char *name);

/* True when topic (NUL-terminated) matches one of the client's publish patterns. */
bool funnel_clients_may_publish(const funnel_clients_entry_t *c, const char *topic);

/* True when topic starts with one of the client's subscribe prefixes. */
bool funnel_clients_may_see(const funnel_clients_entry_t *c, const char *topic, size_t len);

/* What to do with a subscription (or unsubscription) to prefix[0..len) the client sent. */
typedef enum funnel_sub_decision {
    FUNNEL_SUB_APPLY,  /* inside a permitted prefix: apply it as it is */
    FUNNEL_SUB_NARROW, /* a prefix of permitted prefixes: apply those (funnel_clients_narrow) */
    FUNNEL_SUB_DENY,   /* neither: not applied */
} funnel_sub_decision_t;

funnel_sub_decision_t funnel_clients_subscription(const funnel_clients_entry_t *c,
                                                  const uint8_t *prefix, size_t len);

/* With FUNNEL_SUB_NARROW: the i-th permitted prefix that starts with prefix, or NULL past the
 * last. Loop from i = 0 until NULL. */
const char *funnel_clients_narrow(const funnel_clients_entry_t *c, const uint8_t *prefix,
                                  size_t len, size_t *i);

#endif
