/* main.c — funnel-web: reads its config, serves until SIGTERM/SIGINT, reloads the users file on
 * SIGHUP; or, with --add-user, writes one user to the users file and prints its API token. */
#include "web.h"

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
    fprintf(out, "usage: funnel-web [--config FILE] [--port N] [--ready-file PATH]\n"
                 "       funnel-web [--config FILE] [--users FILE] --add-user NAME --role ROLE\n"
                 "  --config FILE      libconfig file (see examples/funnel-web.conf)\n"
                 "  --port N           overrides the file's port; 0 picks a free one\n"
                 "  --ready-file PATH  writes http=PORT and pid=N there once listening\n"
                 "  --users FILE       the users file (default: the config's `users`)\n"
                 "  --add-user NAME    add NAME (or set a new password and role), reading the\n"
                 "                     password from stdin; prints a new API token once\n"
                 "  --role ROLE        admin, manager or rep\n");
}

/* Reads the password: the first line of stdin, without its line end. */
static int read_password(char *buf, size_t len)
{
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "password: ");
    if (!fgets(buf, (int)len, stdin))
        return FUNNEL_EIO;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int add_user(const char *users, const char *name, const char *role)
{
    char password[1024], token[65], err[512];
    if (read_password(password, sizeof password)) {
        fprintf(stderr, "funnel-web: no password on stdin\n");
        return 1;
    }
    int rc = funnel_web_users_add(users, name, role, password, token, err, sizeof err);
    memset(password, 0, sizeof password);
    if (rc) {
        fprintf(stderr, "funnel-web: %s\n", rc == FUNNEL_ENOMEM ? "out of memory" : err);
        return rc == FUNNEL_EINVAL ? 2 : 1;
    }
    printf("%s\n", token);
    fprintf(stderr,
            "funnel-web: %s (%s) written to %s; the line above is their API token, shown only "
            "now (send SIGHUP to a running funnel-web to load the change)\n",
            name, role, users);
    return 0;
}

static int serve(funnel_web_config_t *cfg, const char *ready)
{
    funnel_log_t log = {cfg->log_level, NULL};
    funnel_web_t *web = NULL;
    /* Signals are taken synchronously by this thread; the HTTP threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (funnel_web_new(cfg, &log, &web))
        return 1;
    if (ready &&
        funnel_ready_write(ready, "http=%d\npid=%ld\n", funnel_web_port(web), (long)getpid())) {
        funnel_log_error(&log, "cannot write %s", ready);
        funnel_web_destroy(&web);
        return 1;
    }
    sd_notify(0, "READY=1");
    int sig;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
        sd_notify(0, "RELOADING=1");
        funnel_web_reload(web);
        sd_notify(0, "READY=1");
    }
    sd_notify(0, "STOPPING=1");
    funnel_log_info(&log, "stopping on signal %d", sig);
    funnel_web_destroy(&web);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *ready = NULL, *port = NULL, *users = NULL, *add = NULL,
               *role = NULL;
    const funnel_cli_opt_t opts[] = {{"--config", &config}, {"--ready-file", &ready},
                                     {"--port", &port},     {"--users", &users},
                                     {"--add-user", &add},  {"--role", &role}};
    int args = funnel_cli_parse(argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (args) {
        usage(args > 0 ? stdout : stderr);
        return args > 0 ? 0 : 2;
    }
    if ((add != NULL) != (role != NULL)) {
        fprintf(stderr, "funnel-web: --add-user and --role go together\n");
        return 2;
    }
    funnel_web_config_t cfg;
    char err[512];
    char *end = NULL;
    int status = 1;
    if (funnel_web_config_defaults(&cfg))
        return 1;
    if (config && funnel_web_config_load(config, &cfg, err, sizeof err)) {
        fprintf(stderr, "funnel-web: config: %s\n", err);
        goto done;
    }
    if (port) {
        long p = strtol(port, &end, 10);
        if (end == port || *end || p < 0 || p > 65535) {
            fprintf(stderr, "funnel-web: --port: 0..65535\n");
            status = 2;
            goto done;
        }
        cfg.port = p;
    }
    if (users) {
        free(cfg.users);
        if (!(cfg.users = strdup(users)))
            goto done;
    }
    status = add ? add_user(cfg.users, add, role) : serve(&cfg, ready);
done:
    funnel_web_config_clear(&cfg);
    return status;
}
