/* keyfile.h — CURVE key pairs in czmq's certificate files (zcert, ZPL text).
 *
 * A key file is czmq's format, so keys made by czmq's tools (zcert_save, zmakecert) work here
 * and ours work there:
 *
 *     curve
 *         public-key = "Z85 public key, 40 characters"
 *         secret-key = "Z85 secret key, 40 characters"
 *
 * NAME.key holds both keys and must be readable by its owner only; NAME.pub holds the public
 * key alone and may be handed to anyone. Other sections (czmq writes `metadata`) are skipped.
 *
 * Errors: every function returns 0 or a negative FUNNEL_E* code and, where it takes err, writes
 * a one-line reason naming the file into it. Thread rules: none; no state is kept. */
#ifndef FUNNEL_KEYFILE_H
#define FUNNEL_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#define FUNNEL_KEY_Z85_LEN 40 /* a 32-byte CURVE key in Z85 */

typedef struct funnel_keypair {
    char public_key[FUNNEL_KEY_Z85_LEN + 1]; /* Z85, NUL-terminated */
    char secret_key[FUNNEL_KEY_Z85_LEN + 1]; /* Z85; empty when only the public key is known */
} funnel_keypair_t;

/* True when text is a 40-character Z85 string that decodes to 32 bytes. */
bool funnel_key_valid(const char *text);

/* A new random pair (libzmq's zmq_curve_keypair, backed by libsodium). FUNNEL_EINVAL when
 * libzmq was built without CURVE. */
int funnel_keypair_new(funnel_keypair_t *out);

/* Reads path. want_secret: the file must carry a secret key and must not be readable or
 * writable by group or others (FUNNEL_ECONFIG otherwise: a leaked secret key is an identity
 * anyone can use). Without want_secret the secret key is not read even when present, so a
 * .key and a .pub serve alike. FUNNEL_EIO: unreadable; FUNNEL_ECONFIG: not a key file. out is
 * zeroed on failure. */
int funnel_keyfile_read(const char *path, bool want_secret, funnel_keypair_t *out, char *err,
                        size_t err_len);

/* Writes base.key (mode 0600: both keys) and base.pub (mode 0644: the public key). Refuses
 * with FUNNEL_EIO to replace a file that exists: a key in use must not be lost by mistake. */
int funnel_keyfile_write(const char *base, const funnel_keypair_t *kp, char *err, size_t err_len);

/* Overwrites the secret key in memory (also after a failed read). */
void funnel_keypair_wipe(funnel_keypair_t *kp);

#endif
