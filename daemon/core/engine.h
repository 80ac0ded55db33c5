/* engine.h — what the core knows of an engine: one descriptor per engine, kept in one table
 * (daemon/engines/registry.c), which the config reader and the server iterate.
 *
 * The core includes no engine header: an engine's config section is an opaque block of
 * section_size bytes the core allocates, fills through the section hooks and hands to create;
 * everything else the engine does reaches the core through funnel_engine_t (router.h). */
#ifndef FUNNEL_ENGINE_H
#define FUNNEL_ENGINE_H

#include <stddef.h>
#include <stdio.h>

#include "funnel/log.h"
#include "router.h"
#include "store.h"

struct config_setting_t;

/* A list inside a section that makes its engine act (SLA policies, commission rates): a reload
 * that empties it is warned about, since the engine then goes quiet. */
typedef struct funnel_engine_list {
    const char *what;    /* "policies" */
    size_t count_offset; /* of the list's size_t count inside the section */
} funnel_engine_list_t;

#define FUNNEL_ENGINE_MAX_LISTS 2

typedef struct funnel_engine_def {
    const char *name;    /* as the `engines` option lists it */
    const char *section; /* the libconfig group it owns ("commission" for the ledger) */
    size_t section_size; /* bytes of the section struct; moved whole on reload */
    /* Fills defaults into a zeroed section; 0 or FUNNEL_ENOMEM. */
    int (*section_defaults)(void *sec);
    /* Reads the group over the defaults; 0 or FUNNEL_ECONFIG with err ("rate_bp: ..."). */
    int (*section_parse)(const struct config_setting_t *group, void *sec, char *err,
                         size_t err_len);
    /* Frees what defaults/parse allocated and zeroes the section. */
    void (*section_clear)(void *sec);
    /* Writes the group in file syntax, for --check-config and to compare sections. */
    void (*section_print)(const void *sec, FILE *out);
    funnel_engine_list_t lists[FUNNEL_ENGINE_MAX_LISTS]; /* acting lists; what NULL ends them */
    /* Creates the engine: runs its schema migrations on store and keeps section, its live
     * config (a reload rewrites it in place), and log. Fills *engine. 0, or an error it has
     * logged. */
    int (*create)(funnel_store_t *store, const void *section, const funnel_log_t *log,
                  funnel_engine_t *engine);
    void (*destroy)(void *self);
} funnel_engine_def_t;

/* The engines funneld knows, in the order each event reaches them. */
typedef struct funnel_engine_registry {
    const funnel_engine_def_t *defs;
    size_t n;
} funnel_engine_registry_t;

#endif
