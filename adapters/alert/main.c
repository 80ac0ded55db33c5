/* main.c — funnel-alert: reads its config, delivers until SIGTERM/SIGINT. */
#include "alert.h"

#include "funnel/cfgtab.h"
#include "funnel/promhttp.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: funnel-alert [--config FILE] [--ready-file PATH]\n"
                 "  --config FILE      libconfig file (see examples/funnel-alert.conf)\n"
                 "  --ready-file PATH  writes pid=N (and metrics=PORT) there once running\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *ready = NULL;
    const funnel_cli_opt_t opts[] = {{"--config", &config}, {"--ready-file", &ready}};
    int args = funnel_cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (args) {
        usage(args > 0 ? stdout : stderr);
        return args > 0 ? 0 : 2;
    }
    funnel_alert_config_t cfg;
    funnel_alert_metrics_t *metrics = NULL;
    funnel_log_t log = {FUNNEL_LOG_INFO, NULL};
    char err[512];
    int status = 1;
    if (funnel_alert_config_defaults(&cfg))
        return 1;
    if (config && funnel_alert_config_load(config, &cfg, err, sizeof err)) {
        funnel_log_error(&log, "config: %s", err);
        goto done;
    }
    log.level = cfg.log_level;
    /* Stop signals are blocked and taken with sigtimedwait between and during deliveries; the
     * metrics thread, started after, inherits the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if (funnel_alert_metrics_new(&cfg, &log, &metrics))
        goto done;
    char line[32] = "";
    if (metrics)
        snprintf(line, sizeof line, "metrics=%d\n", funnel_alert_metrics_port(metrics));
    if (ready && funnel_ready_write(ready, "pid=%ld\n%s", (long)getpid(), line)) {
        funnel_log_error(&log, "cannot write %s", ready);
        goto done;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT))
        goto done;
    sd_notify(0, "READY=1");
    status = funnel_alert_run(&cfg, &log, &stop, metrics) ? 1 : 0;
    sd_notify(0, "STOPPING=1");
    funnel_log_info(&log, "stopped");
    curl_global_cleanup();
done:
    funnel_alert_metrics_destroy(&metrics);
    funnel_alert_config_clear(&cfg);
    return status;
}
