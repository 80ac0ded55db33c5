/* main.c — funnel-alert: reads its config, delivers until SIGTERM/SIGINT. */
#include "alert.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

int main(int argc, char **argv)
{
    const char *config = NULL;
    if (argc == 2 && !strcmp(argv[1], "--help")) {
        printf("usage: funnel-alert [--config FILE]  (see examples/funnel-alert.conf)\n");
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--config"))
        config = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: funnel-alert [--config FILE]\n");
        return 2;
    }
    funnel_alert_config_t cfg;
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
    /* Stop signals are blocked and taken with sigtimedwait between and during deliveries. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT))
        goto done;
    sd_notify(0, "READY=1");
    status = funnel_alert_run(&cfg, &log, &stop) ? 1 : 0;
    sd_notify(0, "STOPPING=1");
    funnel_log_info(&log, "stopped");
    curl_global_cleanup();
done:
    funnel_alert_config_clear(&cfg);
    return status;
}
