/* registry.h — the one table of funneld's engines, for main() to hand to the config reader and
 * the server (the core includes no engine header). */
#ifndef FUNNEL_REGISTRY_H
#define FUNNEL_REGISTRY_H

#include "engine.h"

/* ledger, attribution, sla: the order each event reaches them. */
extern const funnel_engine_registry_t funnel_engine_registry;

#endif
