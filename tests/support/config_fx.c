/* config_fx.c — see config_fx.h. */
#include "config_fx.h"

#include "harness.h"
#include "registry.h"

int fx_config_load_text(const char *text, funnel_config_t *cfg, char *err, size_t err_len)
{
    fx_tmpdir_t dir;
    char path[320];
    fx_tmpdir_make(&dir);
    fx_file_write(dir.path, "funneld.conf", text, path, sizeof path);
    int rc = funnel_config_load(path, &funnel_engine_registry, cfg, err, err_len);
    fx_tmpdir_remove(&dir);
    return rc;
}
