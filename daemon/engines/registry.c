/* registry.c — the one table of engines: name, config section and its hooks, create/destroy.
 *
 * The only file that includes every engine header. Adding an engine is a directory under
 * daemon/engines/ and a row here; the config reader, --check-config, reloads and the server
 * follow from the row. */
#include "registry.h"
#include "attribution.h"
#include "ledger.h"
#include "ledger_plan.h"
#include "sla.h"
#include "sla_config.h"

#include <stddef.h>

static const funnel_engine_def_t defs[] = {
    {
        .name = "ledger",
        .section = "commission",
        .section_size = sizeof(funnel_commission_config_t),
        .section_defaults = funnel_commission_config_defaults,
        .section_parse = funnel_commission_config_parse,
        .section_clear = funnel_commission_config_clear,
        .section_print = funnel_commission_config_print,
        .lists = {{"rates", offsetof(funnel_commission_config_t, n_rates)}},
        .create = funnel_ledger_engine_create,
        .destroy = funnel_ledger_engine_destroy,
    },
    {
        .name = "attribution",
        .section = "attribution",
        .section_size = sizeof(funnel_attribution_config_t),
        .section_defaults = funnel_attribution_config_defaults,
        .section_parse = funnel_attribution_config_parse,
        .section_clear = funnel_attribution_config_clear,
        .section_print = funnel_attribution_config_print,
        .create = funnel_attribution_engine_create,
        .destroy = funnel_attribution_engine_destroy,
    },
    {
        .name = "sla",
        .section = "sla",
        .section_size = sizeof(funnel_sla_config_t),
        .section_defaults = funnel_sla_config_defaults,
        .section_parse = funnel_sla_config_parse,
        .section_clear = funnel_sla_config_clear,
        .section_print = funnel_sla_config_print,
        .lists = {{"policies", offsetof(funnel_sla_config_t, n_policies)},
                  {"quotas", offsetof(funnel_sla_config_t, n_quotas)}},
        .create = funnel_sla_engine_create,
        .destroy = funnel_sla_engine_destroy,
    },
};

const funnel_engine_registry_t funnel_engine_registry = {defs, sizeof defs / sizeof defs[0]};
