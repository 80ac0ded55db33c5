/* config_fx.h — funneld's configuration read from a text, the way funneld reads its file. */
#ifndef FUNNEL_TEST_CONFIG_FX_H
#define FUNNEL_TEST_CONFIG_FX_H

#include <stddef.h>

#include "config.h"

/* Writes text to a file in a fresh temporary directory (removed before returning) and loads it
 * into cfg with funnel_config_load; returns its result, err its message. */
int fx_config_load_text(const char *text, funnel_config_t *cfg, char *err, size_t err_len);

#endif
