/* main.c — funnel-webhook: reads its config, serves until SIGTERM/SIGINT. */
#include "webhook.h"

#include "funnel/cfgtab.h"
#include "funnel/error.h"
#include "funnel/promhttp.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: funnel-webhook [--config FILE] [--port N] [--ready-file PATH]\n"
                 "  --config FILE      libconfig file (see examples/funnel-webhook.conf)\n"
                 "  --port N           overrides the file's port; 0 picks a free one\n"
                 "  --ready-file PATH  writes pid=N and port=N there once listening\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *ready = NULL, *port = NULL;
    const funnel_cli_opt_t opts[] = {
        {"--config", &config}, {"--ready-file", &ready}, {"--port", &port}};
    int args = funnel_cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (args) {
        usage(args > 0 ? stdout : stderr);
        return args > 0 ? 0 : 2;
    }
    funnel_webhook_config_t cfg;
    funnel_log_t log = {FUNNEL_LOG_INFO, NULL};
    funnel_webhook_t *wh = NULL;
    char err[512];
    int status = 1;
    if (funnel_webhook_config_defaults(&cfg))
        return 1;
    if (config && funnel_webhook_config_load(config, &cfg, err, sizeof err)) {
        funnel_log_error(&log, "config: %s", err);
        goto done;
    }
    if (port)
        cfg.port = strtol(port, NULL, 10);
    log.level = cfg.log_level;
    /* Signals are taken synchronously by this thread; the HTTP thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (funnel_webhook_new(&cfg, &log, &wh))
        goto done;
    if (ready &&
        funnel_ready_write(ready, "pid=%ld\nport=%d\n", (long)getpid(), funnel_webhook_port(wh))) {
        funnel_log_error(&log, "cannot write %s", ready);
        goto done;
    }
    sd_notify(0, "READY=1");
    int sig;
    sigwait(&set, &sig);
    sd_notify(0, "STOPPING=1");
    funnel_log_info(&log, "stopping on signal %d", sig);
    status = 0;
done:
    funnel_webhook_destroy(&wh);
    funnel_webhook_config_clear(&cfg);
    return status;
}
