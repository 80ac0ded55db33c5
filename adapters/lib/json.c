/* json.c — the proto3 JSON mapping, driven by protobuf-c descriptors alone.
 *
 * Nothing here knows a funnel message by name except funnel_json_envelope_build: every other
 * function walks ProtobufCMessageDescriptor / ProtobufCFieldDescriptor, so a field added to
 * funnel.proto is mapped without touching this file.
 *
 * Memory: messages built here are freed by protobuf_c_message_free_unpacked(msg, NULL), so
 * everything is allocated with malloc and laid out the way that function expects: a string is
 * freed unless it equals the field's default_value (proto3 strings default to
 * protobuf_c_empty_string), a repeated array is freed together with its first n_* elements,
 * and a oneof member is freed only while the *_case quantifier names it. Every store below
 * keeps the message in that freeable shape, so an error at any point is cleaned up by one
 * free_unpacked of the half-built message. */
#include "funnel/json.h"
#include "funnel/error.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEPTH_MAX 64  /* nested messages; bounds recursion on hostile input */
#define JSON_PATH_MAX  256 /* bytes of "touches[1].atMs"; longer paths are truncated */

/* State of one JSON-to-message conversion: where we are and where errors go. */
typedef struct json_in {
    char path[JSON_PATH_MAX]; /* JSON path of the value being read, as the sender spelled it */
    size_t path_len;          /* strlen(path) */
    char *err;                /* caller's buffer for the error sentence; may be NULL */
    size_t err_len;           /* its size in bytes */
    int depth;                /* messages currently open */
} json_in_t;

/* ---- errors and paths ---- */

static void json_in_init(json_in_t *in, char *err, size_t err_len)
{
    in->path[0] = '\0';
    in->path_len = 0;
    in->err = err;
    in->err_len = err_len;
    in->depth = 0;
    if (err && err_len > 0)
        err[0] = '\0';
}

static void err_vwrite(json_in_t *in, const char *prefix, const char *fmt, va_list ap)
{
    if (!in->err || in->err_len == 0)
        return;
    size_t n = 0;
    if (prefix) {
        int w = snprintf(in->err, in->err_len, "%s: ", prefix);
        if (w < 0 || (size_t)w >= in->err_len)
            return;
        n = (size_t)w;
    }
    vsnprintf(in->err + n, in->err_len - n, fmt, ap);
}

/* Writes "path: sentence" and returns FUNNEL_EINVAL, so refusals are one-line returns. */
__attribute__((format(printf, 2, 3))) static int in_fail(json_in_t *in, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vwrite(in, in->path_len ? in->path : "(root)", fmt, ap);
    va_end(ap);
    return FUNNEL_EINVAL;
}

/* Writes a sentence that is about the call, not about a place in the JSON. */
__attribute__((format(printf, 3, 4))) static int in_fail_plain(json_in_t *in, int rc,
                                                               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vwrite(in, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static int in_nomem(json_in_t *in)
{
    return in_fail_plain(in, FUNNEL_ENOMEM, "out of memory");
}

/* Appends ".key" (or "key" at the root) to the path; returns the length to restore. */
static size_t path_push_key(json_in_t *in, const char *key)
{
    size_t saved = in->path_len;
    int w = snprintf(in->path + saved, sizeof in->path - saved, "%s%s", saved ? "." : "", key);
    if (w > 0)
        in->path_len = strlen(in->path);
    return saved;
}

static size_t path_push_index(json_in_t *in, size_t index)
{
    size_t saved = in->path_len;
    int w = snprintf(in->path + saved, sizeof in->path - saved, "[%zu]", index);
    if (w > 0)
        in->path_len = strlen(in->path);
    return saved;
}

static void path_pop(json_in_t *in, size_t saved)
{
    in->path_len = saved;
    in->path[saved] = '\0';
}

/* ---- descriptor helpers ---- */

static void *member_at(void *msg, unsigned offset)
{
    return (char *)msg + offset;
}

static const void *member_at_const(const void *msg, unsigned offset)
{
    return (const char *)msg + offset;
}

/* Size of one element of a repeated field; the same table protobuf-c uses when unpacking. */
static size_t type_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

static bool field_is_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

static char ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* proto3's json_name: drop each '_' and upper-case the character after it, so "at_ms" is
 * "atMs". Returns a malloc'd string or NULL. */
static char *json_name_dup(const char *name)
{
    char *out = malloc(strlen(name) + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    bool upper = false;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        out[j++] = upper ? ascii_upper(*p) : *p;
        upper = false;
    }
    out[j] = '\0';
    return out;
}

/* Whether key is the json_name of the proto field name, without allocating. */
static bool json_name_eq(const char *name, const char *key)
{
    bool upper = false;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        if (*key++ != (upper ? ascii_upper(*p) : *p))
            return false;
        upper = false;
    }
    return *key == '\0';
}

/* The field a JSON key names: the original proto name first, then the lowerCamelCase one. */
static const ProtobufCFieldDescriptor *field_find(const ProtobufCMessageDescriptor *desc,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, key);
    if (f)
        return f;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        if (json_name_eq(desc->fields[i].name, key))
            return &desc->fields[i];
    }
    return NULL;
}

/* ---- reading scalars ---- */

/* The text of a JSON string, or "" when it has an embedded NUL (possible with JSON_ALLOW_NUL
 * or json_stringn), so "12\u0000junk" cannot pass as "12". "" is refused by every caller. */
static const char *string_plain(const json_t *v)
{
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : "";
}

/* Parses a whole decimal integer string. strtoll alone would accept leading blanks, a '+' and
 * trailing junk, and strtoull would silently wrap "-1"; proto3 JSON means plain digits. */
static int decimal_parse(const char *s, bool is_signed, int64_t *sv, uint64_t *uv, bool *range)
{
    const char *digits = (is_signed && s[0] == '-') ? s + 1 : s;
    if (*digits < '0' || *digits > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    if (is_signed)
        *sv = strtoll(s, &end, 10);
    else
        *uv = strtoull(s, &end, 10);
    if (*end != '\0')
        return -1;
    *range = errno == ERANGE;
    return 0;
}

/* Reads an integral JSON value into int64: a JSON integer, an integral JSON real (1e3), or a
 * decimal string, which is how proto3 JSON carries 64-bit values past double precision. */
static int signed_read(json_in_t *in, const json_t *v, int64_t min, int64_t max,
                       const char *type_name, int64_t *out)
{
    int64_t x = 0;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != trunc(d))
            return in_fail(in, "expected an integer, not a fraction");
        if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return in_fail(in, "out of range for %s", type_name);
        x = (int64_t)d;
    } else if (json_is_string(v)) {
        bool range = false;
        uint64_t unused;
        if (decimal_parse(string_plain(v), true, &x, &unused, &range) != 0)
            return in_fail(in, "expected an integer");
        if (range)
            return in_fail(in, "out of range for %s", type_name);
    } else {
        return in_fail(in, "expected an integer");
    }
    if (x < min || x > max)
        return in_fail(in, "out of range for %s", type_name);
    *out = x;
    return 0;
}

static int unsigned_read(json_in_t *in, const json_t *v, uint64_t max, const char *type_name,
                         uint64_t *out)
{
    uint64_t x = 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0)
            return in_fail(in, "out of range for %s", type_name);
        x = (uint64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != trunc(d))
            return in_fail(in, "expected an integer, not a fraction");
        if (d < 0 || d >= 18446744073709551616.0)
            return in_fail(in, "out of range for %s", type_name);
        x = (uint64_t)d;
    } else if (json_is_string(v)) {
        const char *s = string_plain(v);
        bool range = false;
        int64_t unused;
        if (s[0] == '-' && s[1] >= '0' && s[1] <= '9')
            return in_fail(in, "out of range for %s", type_name);
        if (decimal_parse(s, false, &unused, &x, &range) != 0)
            return in_fail(in, "expected an integer");
        if (range)
            return in_fail(in, "out of range for %s", type_name);
    } else {
        return in_fail(in, "expected an integer");
    }
    if (x > max)
        return in_fail(in, "out of range for %s", type_name);
    *out = x;
    return 0;
}

/* A JSON number, or one of the strings proto3 uses for values JSON numbers cannot hold. */
static int double_read(json_in_t *in, const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return in_fail(in, "expected a number");
    const char *s = string_plain(v);
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
    } else if (strcmp(s, "Infinity") == 0) {
        *out = INFINITY;
    } else if (strcmp(s, "-Infinity") == 0) {
        *out = -INFINITY;
    } else {
        /* Decimal notation only: strtod alone would also take blanks, hex, "inf" and "nan". */
        if (s[0] == '\0' || s[strspn(s, "0123456789+-.eE")] != '\0')
            return in_fail(in, "expected a number");
        char *end = NULL;
        errno = 0;
        double d = strtod(s, &end);
        if (*end != '\0' || end == s)
            return in_fail(in, "expected a number");
        if (errno == ERANGE && isinf(d))
            return in_fail(in, "out of range for double");
        *out = d;
    }
    return 0;
}

static int float_read(json_in_t *in, const json_t *v, float *out)
{
    double d = 0;
    int rc = double_read(in, v, &d);
    if (rc)
        return rc;
    if (isfinite(d) && fabs(d) > FLT_MAX)
        return in_fail(in, "out of range for float");
    *out = (float)d;
    return 0;
}

static int bool_read(json_in_t *in, const json_t *v, protobuf_c_boolean *out)
{
    if (!json_is_boolean(v))
        return in_fail(in, "expected a boolean");
    *out = json_is_true(v) ? 1 : 0;
    return 0;
}

/* An enum by value name, or by number. Numbers need not be named: proto3 enums are open, and
 * funneld's validation is where an unnamed value is refused. */
static int enum_read(json_in_t *in, const ProtobufCEnumDescriptor *ed, const json_t *v, int *out)
{
    if (json_is_string(v)) {
        const char *name = string_plain(v);
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, name);
        if (!ev)
            return in_fail(in, "unknown enum value \"%s\" for %s", name, ed->name);
        *out = ev->value;
        return 0;
    }
    if (!json_is_number(v))
        return in_fail(in, "expected an enum name or number");
    int64_t x = 0;
    int rc = signed_read(in, v, INT32_MIN, INT32_MAX, "enum", &x);
    if (rc)
        return rc;
    *out = (int)x;
    return 0;
}

/* Copies a JSON string into malloc'd storage. When the caller passes empty (the field's own
 * default_value, which is ""), an empty string stores that pointer instead: free_unpacked skips
 * exactly that pointer, and it is what protobuf_c_message_init left there anyway. */
static int string_read(json_in_t *in, const json_t *v, const char *empty, char **slot)
{
    if (!json_is_string(v))
        return in_fail(in, "expected a string");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (memchr(s, '\0', len))
        return in_fail(in, "contains a NUL character");
    if (len == 0 && empty) {
        *slot = (char *)empty;
        return 0;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return in_nomem(in);
    memcpy(copy, s, len + 1);
    *slot = copy;
    return 0;
}

/* The value of a base64 digit in either the standard or the URL-safe alphabet, or -1. */
static int base64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* proto3 JSON bytes: base64, standard or URL-safe, padding optional. */
static int bytes_read(json_in_t *in, const json_t *v, ProtobufCBinaryData *slot)
{
    if (!json_is_string(v))
        return in_fail(in, "expected a base64 string");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v), pad = 0;
    while (len > 0 && pad < 2 && s[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad && (len + pad) % 4 != 0))
        return in_fail(in, "invalid base64");
    size_t out_len = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    uint8_t *data = out_len ? malloc(out_len) : NULL;
    if (out_len && !data)
        return in_nomem(in);
    uint32_t acc = 0;
    size_t bits = 0, j = 0;
    for (size_t i = 0; i < len; i++) {
        int d = base64_digit((unsigned char)s[i]);
        if (d < 0) {
            free(data);
            return in_fail(in, "invalid base64");
        }
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            data[j++] = (uint8_t)(acc >> bits);
        }
    }
    slot->data = data;
    slot->len = out_len;
    return 0;
}

/* ---- reading messages ---- */

static int message_read(json_in_t *in, const ProtobufCMessageDescriptor *desc, const json_t *v,
                        ProtobufCMessage **out);

/* Reads one value of field f's type into slot (a singular member or an array element). The
 * slot is written only on success, so a failure leaves the message freeable as it was. */
static int value_read(json_in_t *in, const ProtobufCFieldDescriptor *f, const json_t *v, void *slot,
                      const char *empty)
{
    int64_t s = 0;
    uint64_t u = 0;
    int rc = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((rc = signed_read(in, v, INT32_MIN, INT32_MAX, "int32", &s)) == 0)
            *(int32_t *)slot = (int32_t)s;
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if ((rc = signed_read(in, v, INT64_MIN, INT64_MAX, "int64", &s)) == 0)
            *(int64_t *)slot = s;
        return rc;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((rc = unsigned_read(in, v, UINT32_MAX, "uint32", &u)) == 0)
            *(uint32_t *)slot = (uint32_t)u;
        return rc;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if ((rc = unsigned_read(in, v, UINT64_MAX, "uint64", &u)) == 0)
            *(uint64_t *)slot = u;
        return rc;
    case PROTOBUF_C_TYPE_FLOAT:
        return float_read(in, v, slot);
    case PROTOBUF_C_TYPE_DOUBLE:
        return double_read(in, v, slot);
    case PROTOBUF_C_TYPE_BOOL:
        return bool_read(in, v, slot);
    case PROTOBUF_C_TYPE_ENUM:
        return enum_read(in, f->descriptor, v, slot);
    case PROTOBUF_C_TYPE_STRING:
        return string_read(in, v, empty, slot);
    case PROTOBUF_C_TYPE_BYTES:
        return bytes_read(in, v, slot);
    case PROTOBUF_C_TYPE_MESSAGE:
        return message_read(in, f->descriptor, v, slot);
    }
    return in_fail(in, "field type %d is not supported", (int)f->type);
}

/* A JSON array into a repeated field. The array is attached at once with a count of zero and
 * the count grows with each element read, so free_unpacked frees exactly what was built. */
static int array_read(json_in_t *in, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                      const json_t *v)
{
    if (!json_is_array(v))
        return in_fail(in, "expected an array");
    size_t n = json_array_size(v), size = type_size(f->type);
    if (n == 0)
        return 0;
    void *arr = calloc(n, size);
    if (!arr)
        return in_nomem(in);
    size_t *count = member_at(msg, f->quantifier_offset);
    *(void **)member_at(msg, f->offset) = arr;
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        size_t saved = path_push_index(in, i);
        int rc = value_read(in, f, json_array_get(v, i), (char *)arr + i * size, NULL);
        path_pop(in, saved);
        if (rc)
            return rc;
        (*count)++;
    }
    return 0;
}

/* The pointer to store for "": the field's own default when that is "" and the field has no
 * presence to record; NULL (allocate) otherwise. */
static const char *string_empty_for(const ProtobufCFieldDescriptor *f)
{
    const char *def = f->default_value;
    if (f->type != PROTOBUF_C_TYPE_STRING || f->label != PROTOBUF_C_LABEL_NONE || field_is_oneof(f))
        return NULL;
    return (def && def[0] == '\0') ? def : NULL;
}

/* A singular field: store the value, then record presence (the oneof case or has_*). */
static int singular_read(json_in_t *in, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                         const json_t *v)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    uint32_t *oneof_case = field_is_oneof(f) ? member_at(msg, f->quantifier_offset) : NULL;
    if (oneof_case && *oneof_case != 0 && *oneof_case != f->id) {
        const ProtobufCFieldDescriptor *other =
            protobuf_c_message_descriptor_get_field(desc, *oneof_case);
        return in_fail(in, "only one member of a oneof may be set, and %s already is",
                       other ? other->name : "another");
    }
    int rc = value_read(in, f, v, member_at(msg, f->offset), string_empty_for(f));
    if (rc)
        return rc;
    if (oneof_case) {
        *oneof_case = f->id;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
               f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *(protobuf_c_boolean *)member_at(msg, f->quantifier_offset) = 1;
    }
    return 0;
}

/* Refuses a field given under both its names ("lead_id" and "leadId"): which one would win is
 * arbitrary, and storing both would leak the first. */
static int spelling_check(json_in_t *in, const ProtobufCFieldDescriptor *f, const json_t *obj,
                          const char *key)
{
    if (strcmp(key, f->name) != 0)
        return json_object_get(obj, f->name)
                   ? in_fail(in, "given twice, as %s and %s", f->name, key)
                   : 0;
    char *camel = json_name_dup(f->name);
    if (!camel)
        return in_nomem(in);
    int rc = 0;
    if (strcmp(camel, key) != 0 && json_object_get(obj, camel))
        rc = in_fail(in, "given twice, as %s and %s", key, camel);
    free(camel);
    return rc;
}

static int key_read(json_in_t *in, ProtobufCMessage *msg, const json_t *obj, const char *key,
                    size_t key_len, const json_t *v)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    /* A key with an embedded NUL would otherwise match the field named by its prefix. */
    const ProtobufCFieldDescriptor *f = strlen(key) == key_len ? field_find(desc, key) : NULL;
    if (!f)
        return in_fail(in, "unknown field of %s", desc->name);
    int rc = spelling_check(in, f, obj, key);
    if (rc)
        return rc;
    if (json_is_null(v))
        return 0; /* proto3 JSON: null means "the default", i.e. leave the field unset */
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return array_read(in, msg, f, v);
    return singular_read(in, msg, f, v);
}

/* Every key of obj, in the sender's order, so the first error reported is the first one. */
static int fields_read(json_in_t *in, ProtobufCMessage *msg, const json_t *obj)
{
    const char *key;
    size_t key_len;
    json_t *v;
    /* jansson's iterators take json_t *; iterating does not modify the object. */
    json_t *o = (json_t *)obj;
    json_object_keylen_foreach(o, key, key_len, v)
    {
        size_t saved = path_push_key(in, key);
        int rc = key_read(in, msg, obj, key, key_len, v);
        path_pop(in, saved);
        if (rc)
            return rc;
    }
    return 0;
}

/* A JSON object into a new message of type desc; on failure nothing is left allocated. */
static int message_read(json_in_t *in, const ProtobufCMessageDescriptor *desc, const json_t *v,
                        ProtobufCMessage **out)
{
    if (!json_is_object(v))
        return in_fail(in, "expected a JSON object for %s", desc->name);
    if (in->depth >= JSON_DEPTH_MAX)
        return in_fail(in, "messages nested deeper than %d", JSON_DEPTH_MAX);
    ProtobufCMessage *msg = malloc(desc->sizeof_message);
    if (!msg)
        return in_nomem(in);
    protobuf_c_message_init(desc, msg);
    in->depth++;
    int rc = fields_read(in, msg, v);
    in->depth--;
    if (rc) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    *out = msg;
    return 0;
}

int funnel_json_to_message(const ProtobufCMessageDescriptor *desc, const json_t *obj,
                           ProtobufCMessage **out, char *err, size_t err_len)
{
    json_in_t in;
    json_in_init(&in, err, err_len);
    if (!out)
        return in_fail_plain(&in, FUNNEL_EINVAL, "no output pointer");
    *out = NULL;
    if (!desc || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return in_fail_plain(&in, FUNNEL_EINVAL, "no message descriptor");
    if (!obj)
        return in_fail_plain(&in, FUNNEL_EINVAL, "no JSON value");
    return message_read(&in, desc, obj, out);
}

/* ---- writing ---- */

/* A JSON string for s. protobuf-c does not check UTF-8 when unpacking and jansson refuses
 * invalid UTF-8, so bad bytes become U+FFFD instead of failing the whole message. */
static json_t *string_write(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *clean = malloc(len * 3 + 1);
    if (!clean)
        return NULL;
    size_t o = 0;
    for (const char *p = s, *end = s + len; p < end;) {
        size_t n = funnel_utf8_seq_len(p, (size_t)(end - p));
        if (n) {
            memcpy(clean + o, p, n);
            o += n;
            p += n;
        } else {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
        }
    }
    clean[o] = '\0';
    j = json_string(clean);
    free(clean);
    return j;
}

static json_t *bytes_write(const ProtobufCBinaryData *b)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!b->data || b->len == 0)
        return json_string("");
    if (b->len > SIZE_MAX / 4 - 1)
        return NULL;
    size_t out_len = (b->len + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < b->len; i += 3) {
        size_t rest = b->len - i;
        uint32_t w = (uint32_t)b->data[i] << 16;
        if (rest > 1)
            w |= (uint32_t)b->data[i + 1] << 8;
        if (rest > 2)
            w |= b->data[i + 2];
        out[o++] = alphabet[(w >> 18) & 63];
        out[o++] = alphabet[(w >> 12) & 63];
        out[o++] = rest > 1 ? alphabet[(w >> 6) & 63] : '=';
        out[o++] = rest > 2 ? alphabet[w & 63] : '=';
    }
    out[o] = '\0';
    json_t *j = json_string(out);
    free(out);
    return j;
}

/* JSON numbers cannot hold NaN or the infinities; proto3 writes them as these strings. */
static json_t *double_write(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

static json_t *enum_write(const ProtobufCEnumDescriptor *ed, int value)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, value);
    return ev ? json_string(ev->name) : json_integer(value);
}

static json_t *message_write(const ProtobufCMessage *msg);

/* One value of field f's type at slot. 64-bit integers are decimal strings, as proto3 JSON
 * requires: a JSON number is read as a double by most consumers and loses digits past 2^53. */
static json_t *value_write(const ProtobufCFieldDescriptor *f, const void *slot)
{
    char buf[24];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)slot);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)slot);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)slot);
        return json_string(buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)slot);
        return json_string(buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return double_write(*(const float *)slot);
    case PROTOBUF_C_TYPE_DOUBLE:
        return double_write(*(const double *)slot);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)slot);
    case PROTOBUF_C_TYPE_ENUM:
        return enum_write(f->descriptor, *(const int *)slot);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)slot;
        return string_write(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return bytes_write(slot);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)slot;
        return sub ? message_write(sub) : json_object();
    }
    }
    return NULL;
}

static bool bytes_all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i])
            return false;
    }
    return true;
}

/* Whether field f is written: oneof members while selected, repeated fields when non-empty,
 * fields with presence when present, proto3 plain fields when not at their default. The
 * string and bytes rules mirror what protobuf-c's packer treats as "not set". */
static bool field_is_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const void *slot = member_at_const(msg, f->offset);
    const void *quantifier = member_at_const(msg, f->quantifier_offset);
    if (field_is_oneof(f))
        return *(const uint32_t *)quantifier == f->id;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)quantifier > 0;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(ProtobufCMessage *const *)slot != NULL;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)slot;
        if (!s)
            return false;
        if (f->label == PROTOBUF_C_LABEL_NONE)
            return s[0] != '\0';
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
            return s != f->default_value;
        return true;
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)quantifier != 0;
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (f->type == PROTOBUF_C_TYPE_BYTES)
        return ((const ProtobufCBinaryData *)slot)->len > 0;
    /* Bitwise, as protobuf-c packs: -0.0 is not the default. */
    return !bytes_all_zero(slot, type_size(f->type));
}

static json_t *array_write(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    size_t n = *(const size_t *)member_at_const(msg, f->quantifier_offset);
    const char *arr = *(char *const *)member_at_const(msg, f->offset);
    size_t size = type_size(f->type);
    json_t *a = json_array();
    if (!a)
        return NULL;
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(a, value_write(f, arr + i * size)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *message_write(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (!field_is_present(msg, f))
            continue;
        json_t *v = f->label == PROTOBUF_C_LABEL_REPEATED
                        ? array_write(msg, f)
                        : value_write(f, member_at_const(msg, f->offset));
        char *name = json_name_dup(f->name);
        /* json_object_set_new takes v even when it fails, and refuses a NULL v. */
        if (!v || !name || json_object_set_new(obj, name, v) != 0) {
            if (!name)
                json_decref(v);
            free(name);
            json_decref(obj);
            return NULL;
        }
        free(name);
    }
    return obj;
}

json_t *funnel_json_from_message(const ProtobufCMessage *msg)
{
    if (!msg || !msg->descriptor)
        return NULL;
    return message_write(msg);
}

/* ---- envelopes ---- */

/* Whether the user wrote a whole Envelope: some key names one of its oneof body members. Any
 * member counts, not just the topic's, so a body for the wrong topic is reported as such. */
static const ProtobufCFieldDescriptor *envelope_body_key(const ProtobufCMessageDescriptor *ed,
                                                         const json_t *root)
{
    const char *key;
    json_t *v;
    json_t *o = (json_t *)root; /* iteration does not modify */
    json_object_foreach(o, key, v)
    {
        const ProtobufCFieldDescriptor *f = field_find(ed, key);
        if (f && field_is_oneof(f))
            return f;
    }
    return NULL;
}

/* The whole-Envelope form: map it as is, then insist that its body is the topic's. */
static int envelope_read_whole(json_in_t *in, const ProtobufCFieldDescriptor *body,
                               const json_t *root, ProtobufCMessage **out)
{
    const ProtobufCMessageDescriptor *ed = &funnel__v1__envelope__descriptor;
    ProtobufCMessage *env = NULL;
    int rc = message_read(in, ed, root, &env);
    if (rc)
        return rc;
    uint32_t got = *(const uint32_t *)member_at(env, body->quantifier_offset);
    if (got == body->id) {
        *out = env;
        return 0;
    }
    const ProtobufCFieldDescriptor *gf = protobuf_c_message_descriptor_get_field(ed, got);
    const char *topic = funnel_topic_name((funnel_body_t)body->id);
    char *want = json_name_dup(body->name);
    char *have = gf ? json_name_dup(gf->name) : NULL;
    if (!want || (gf && !have))
        rc = in_nomem(in);
    else if (have)
        rc = in_fail_plain(in, FUNNEL_EINVAL, "%s: topic %s carries %s, not %s", have,
                           topic ? topic : "?", want, have);
    else
        rc = in_fail_plain(in, FUNNEL_EINVAL, "(root): topic %s carries %s, which is missing",
                           topic ? topic : "?", want);
    free(want);
    free(have);
    protobuf_c_message_free_unpacked(env, NULL);
    return rc;
}

/* Splits the body form's keys: those naming an Envelope field (other than the body oneof) go
 * to env_obj, the rest to body_obj. Values are shared by reference, not copied. */
static int envelope_keys_split(json_in_t *in, const json_t *root, json_t *env_obj, json_t *body_obj)
{
    const ProtobufCMessageDescriptor *ed = &funnel__v1__envelope__descriptor;
    const char *key;
    size_t key_len;
    json_t *v;
    json_t *o = (json_t *)root; /* iteration does not modify */
    json_object_keylen_foreach(o, key, key_len, v)
    {
        const ProtobufCFieldDescriptor *f = strlen(key) == key_len ? field_find(ed, key) : NULL;
        json_t *target = (f && !field_is_oneof(f)) ? env_obj : body_obj;
        if (json_object_setn(target, key, key_len, v) != 0)
            return in_nomem(in);
    }
    return 0;
}

/* The body form: envelope keys beside the body's fields. Errors name the keys as the user
 * wrote them, at the top level, because that is where they are. */
static int envelope_read_split(json_in_t *in, const ProtobufCFieldDescriptor *body,
                               const json_t *root, ProtobufCMessage **out)
{
    json_t *env_obj = json_object(), *body_obj = json_object();
    ProtobufCMessage *env = NULL, *sub = NULL;
    int rc =
        (env_obj && body_obj) ? envelope_keys_split(in, root, env_obj, body_obj) : in_nomem(in);
    if (rc == 0)
        rc = message_read(in, &funnel__v1__envelope__descriptor, env_obj, &env);
    if (rc == 0)
        rc = message_read(in, body->descriptor, body_obj, &sub);
    if (rc == 0) {
        *(ProtobufCMessage **)member_at(env, body->offset) = sub;
        *(uint32_t *)member_at(env, body->quantifier_offset) = body->id;
        *out = env;
    } else {
        protobuf_c_message_free_unpacked(env, NULL);
    }
    json_decref(env_obj);
    json_decref(body_obj);
    return rc;
}

/* Fills what the publisher may leave out: a time-ordered event id and the event time. */
static int envelope_defaults_fill(json_in_t *in, funnel_envelope_t *env, int64_t now_ms)
{
    if (env->occurred_at_ms == 0)
        env->occurred_at_ms = now_ms;
    if (env->event_id && env->event_id[0] != '\0')
        return 0;
    char id[37];
    if (funnel_uuid7(now_ms, id) != 0)
        return in_fail_plain(in, FUNNEL_EIO, "cannot generate an event id: getrandom failed");
    char *copy = strdup(id);
    if (!copy)
        return in_nomem(in);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
        &funnel__v1__envelope__descriptor, "event_id");
    /* Free the old value exactly when free_unpacked would have. */
    if (env->event_id && (!f || env->event_id != f->default_value))
        free(env->event_id);
    env->event_id = copy;
    return 0;
}

int funnel_json_envelope_build(funnel_body_t topic, const char *json_text, int64_t now_ms,
                               funnel_envelope_t **out, char *err, size_t err_len)
{
    json_in_t in;
    json_in_init(&in, err, err_len);
    if (!out)
        return in_fail_plain(&in, FUNNEL_EINVAL, "no output pointer");
    *out = NULL;
    if (!json_text)
        return in_fail_plain(&in, FUNNEL_EINVAL, "no JSON text");
    const ProtobufCMessageDescriptor *ed = &funnel__v1__envelope__descriptor;
    const ProtobufCFieldDescriptor *body =
        protobuf_c_message_descriptor_get_field(ed, (unsigned)topic);
    if (!body || !field_is_oneof(body) || body->type != PROTOBUF_C_TYPE_MESSAGE)
        return in_fail_plain(&in, FUNNEL_EINVAL, "topic %d has no envelope body", (int)topic);

    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return in_fail_plain(&in, FUNNEL_EINVAL, "invalid JSON at line %d, column %d: %s",
                             jerr.line, jerr.column, jerr.text);
    ProtobufCMessage *env = NULL;
    int rc;
    if (!json_is_object(root))
        rc = in_fail(&in, "expected a JSON object");
    else if (envelope_body_key(ed, root))
        rc = envelope_read_whole(&in, body, root, &env);
    else
        rc = envelope_read_split(&in, body, root, &env);
    json_decref(root);
    if (rc == 0)
        rc = envelope_defaults_fill(&in, (funnel_envelope_t *)env, now_ms);
    if (rc) {
        protobuf_c_message_free_unpacked(env, NULL);
        return rc;
    }
    *out = (funnel_envelope_t *)env;
    return 0;
}
