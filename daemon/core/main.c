/* main.c — the funneld process: command line, configuration, then the server loop. */
#include "config.h"
#include "funnel/error.h"
#include "funnel/log.h"
#include "registry.h"
#include "server.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OVERRIDES 64

static void usage(FILE *out)
{
    fprintf(out,
            "usage: funneld [--config FILE] [options]\n"
            "\n"
            "funneld records marketing, sales and billing events once, in SQLite, and\n"
            "republishes them with derived SLA, attribution and commission events.\n"
            "\n"
            "  -c, --config FILE     configuration file (libconfig syntax; see\n"
            "                        examples/funneld.conf). Without it, defaults are used.\n"
            "  -d, --database PATH   override 'database'\n"
            "      --ingest EP       override 'ingest' (ZeroMQ endpoint, e.g. tcp://127.0.0.1:*)\n"
            "      --submit EP       override 'submit'\n"
            "      --publish EP      override 'publish'\n"
            "      --replay EP       override 'replay'\n"
            "      --connect EPS     override 'connect' (comma-separated publisher endpoints)\n"
            "  -l, --log-level LVL   override 'log_level' (error, warn, info, debug)\n"
            "  -s, --set NAME=VALUE  override any option\n"
            "      --ready-file PATH write the bound endpoints and pid here once ready\n"
            "      --check-config    validate the configuration, print it and exit\n"
            "  -V, --version         print the version and exit\n"
            "  -h, --help            print this help and exit\n"
            "\n"
            "Options (config file keys; --set NAME=VALUE overrides any):\n");
    funnel_config_help(out);
    fprintf(out, "\nSignals: SIGTERM/SIGINT stop gracefully, SIGHUP reloads the configuration.\n");
}

/* Maps a long option that overrides a config key to that key. */
static const char *override_key(int opt)
{
    switch (opt) {
    case 'd':
        return "database";
    case 1001:
        return "ingest";
    case 1002:
        return "submit";
    case 1003:
        return "publish";
    case 1004:
        return "replay";
    case 1005:
        return "connect";
    case 'l':
        return "log_level";
    default:
        return NULL;
    }
}

/* Once the loop has returned, funneld has stopped and only releases memory and files. A stop
 * request that arrives now is already satisfied, and destroying the server removes its signal
 * watchers: blocked, such a request can no longer cut the clean-up short (status 143 instead
 * of 0). The other threads left (ZeroMQ's, the store's checkpointer) block every signal
 * themselves. */
static void block_stop_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},   {"database", required_argument, NULL, 'd'},
        {"ingest", required_argument, NULL, 1001},  {"submit", required_argument, NULL, 1002},
        {"publish", required_argument, NULL, 1003}, {"replay", required_argument, NULL, 1004},
        {"connect", required_argument, NULL, 1005}, {"log-level", required_argument, NULL, 'l'},
        {"set", required_argument, NULL, 's'},      {"ready-file", required_argument, NULL, 1006},
        {"check-config", no_argument, NULL, 1007},  {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},           {0, 0, 0, 0},
    };
    funnel_server_options_t opts = {0};
    char *overrides[MAX_OVERRIDES];
    size_t n_overrides = 0;
    bool check_only = false;
    int opt, status = 1;

    while ((opt = getopt_long(argc, argv, "c:d:l:s:Vh", longopts, NULL)) != -1) {
        const char *key = override_key(opt);
        if (key || opt == 's') {
            if (n_overrides == MAX_OVERRIDES) {
                fprintf(stderr, "funneld: too many overrides\n");
                goto out;
            }
            size_t len = strlen(optarg) + (key ? strlen(key) + 2 : 1);
            if (!(overrides[n_overrides] = malloc(len)))
                goto out;
            snprintf(overrides[n_overrides++], len, "%s%s%s", key ? key : "", key ? "=" : "",
                     optarg);
            continue;
        }
        switch (opt) {
        case 'c':
            opts.config_path = optarg;
            break;
        case 1006:
            opts.ready_file = optarg;
            break;
        case 1007:
            check_only = true;
            break;
        case 'V':
            printf("funneld %s\n", FUNNEL_VERSION);
            status = 0;
            goto out;
        case 'h':
            usage(stdout);
            status = 0;
            goto out;
        default:
            usage(stderr);
            status = 2;
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "funneld: unexpected argument '%s'\n", argv[optind]);
        status = 2;
        goto out;
    }
    opts.overrides = (const char *const *)overrides;
    opts.n_overrides = n_overrides;

    funnel_log_t log = {.level = FUNNEL_LOG_INFO, .out = stderr};
    funnel_config_t cfg = {0};
    char err[512] = "";
    int rc = funnel_server_config_read(opts.config_path, &funnel_engine_registry, opts.overrides,
                                       n_overrides, &cfg, err, sizeof err);
    if (rc) {
        fprintf(stderr, "funneld: %s\n", err[0] ? err : funnel_strerror(rc));
        goto out;
    }
    if (check_only) {
        funnel_config_print(&cfg, stdout);
        funnel_config_clear(&cfg);
        fprintf(stderr, "funneld: configuration OK\n");
        status = 0;
        goto out;
    }
    funnel_server_t *srv;
    if (funnel_server_new(&cfg, &opts, &log, &srv) == 0) {
        status = funnel_server_run(srv) == 0 ? 0 : 1;
        block_stop_signals();
        funnel_server_destroy(&srv);
    } else {
        funnel_config_clear(&cfg);
    }
out:
    for (size_t i = 0; i < n_overrides; i++)
        free(overrides[i]);
    return status;
}
