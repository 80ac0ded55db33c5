/* curve_fx.h — CURVE key files for tests. */
#ifndef FUNNEL_TEST_CURVE_FX_H
#define FUNNEL_TEST_CURVE_FX_H

#include <stddef.h>

#include "funnel/keyfile.h"

/* A new pair written to dir/name.key and dir/name.pub (asserts on failure); their paths go to
 * key and pub (each NULL or room for path_len bytes), the pair to kp (NULL: wiped). */
void fx_keys_make(const char *dir, const char *name, funnel_keypair_t *kp, char *key, char *pub,
                  size_t path_len);

/* The adapter executable exe with a config (written to dir/curve.conf) that names a key file
 * that does not exist, or a key without a server key, must stop at start: asserts exit 1 and
 * the missing path (or "both") in its output. Then writes dir/ok.conf with key and server_key
 * set to a new valid pair (their paths to key and pub, the file's to conf; each path_len). */
void fx_curve_config_check(const char *exe, const char *dir, char *conf, char *key, char *pub,
                           size_t path_len);

#endif
