/* sections.h — typed views of a funnel_config_t's engine sections, for tests: the config keeps
 * them opaque (core/engine.h), the tests that read or set their fields name the type here. */
#ifndef FUNNEL_TEST_SECTIONS_H
#define FUNNEL_TEST_SECTIONS_H

#include "attribution.h"
#include "config.h"
#include "ledger_plan.h"
#include "registry.h"
#include "sla_config.h"

#define ATTRIBUTION(c) ((funnel_attribution_config_t *)funnel_config_section(&(c), "attribution"))
#define COMMISSION(c)  ((funnel_commission_config_t *)funnel_config_section(&(c), "commission"))
#define SLA(c)         ((funnel_sla_config_t *)funnel_config_section(&(c), "sla"))

#endif
