/* main.c — funnelctl: talk to funneld and read its database. */
#include "funnelctl.h"

#include "funnel/error.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct command {
    const char *name;
    int (*run)(fctl_t *ctl);
    int min_args, max_args;
    const char *synopsis;
} command_t;

static const command_t commands[] = {
    {"publish", fctl_cmd_publish, 2, 2,
     "publish TOPIC JSON     submit one event, print funneld's answer"},
    {"tail", fctl_cmd_tail, 0, 1,
     "tail [PREFIX]          output messages as JSON lines: replay, then live"},
    {"events", fctl_cmd_events, 0, 0,
     "events                 recorded events, newest last (--limit N, default 20)"},
    {"rejected", fctl_cmd_rejected, 0, 0,
     "rejected               dead-lettered input, newest last (--limit N, default 20)"},
    {"payout", fctl_cmd_payout, 0, 0,
     "payout --rep R --through DATE   pay R's commission through DATE (via funneld)"},
    {"statement", fctl_cmd_statement, 0, 0,
     "statement --rep R --period P    R's commission statement (--json, --csv)"},
    {"ledger", fctl_cmd_ledger, 1, 1,
     "ledger check           prove every posting balances and every balance adds up"},
    {"attribution", fctl_cmd_attribution, 0, 0,
     "attribution --by G     attributed revenue per group (--model M | --all-models)"},
    {"sla", fctl_cmd_sla, 1, 2,
     "sla list | sla show ID | sla next | sla status   SLA instances, the next to take"
     " (--policy P --queue Q), per process (--from DATE)"},
    {"keygen", fctl_cmd_keygen, 1, 1,
     "keygen NAME            new CURVE key pair: NAME.key (secret) and NAME.pub"},
    {"funnel", fctl_cmd_funnel, 0, 0,
     "funnel --by G          leads per stage, conversion, medians, revenue (--json, --csv)"},
    {"quota", fctl_cmd_quota, 0, 0,
     "quota                  SLA quotas: current and last period against minimum and pace"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: funnelctl [options] COMMAND [args]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %s\n", commands[i].synopsis);
    fprintf(out,
            "\noptions:\n"
            "  -c, --config FILE       read endpoints and database from funneld's config\n"
            "      --db PATH           database file (default from the config)\n"
            "      --submit EP         funneld's submit endpoint\n"
            "      --publish EP        funneld's publish endpoint\n"
            "      --replay EP         funneld's replay endpoint\n"
            "      --ready-file PATH   read endpoints and database from the ready file of a\n"
            "                          running funneld (needed when it binds `*` ports)\n"
            "      --timeout-ms N      wait this long for funneld (default 3000)\n"
            "      --key FILE          CURVE: this client's .key (default $FUNNEL_KEY)\n"
            "      --server-key FILE   CURVE: funneld's .pub or .key (default\n"
            "                          $FUNNEL_SERVER_KEY); both or neither\n"
            "      --source NAME       publish: the envelope's source (default funnelctl)\n"
            "      --from-seq N        tail: start at this sequence (default 1: all retained)\n"
            "      --count N           tail: exit after N messages\n"
            "      --idle-timeout-ms N tail: exit after N ms without a message\n"
            "  -n, --limit N           events/rejected: rows to show\n"
            "      --rep R             payout/statement: the rep\n"
            "      --through DATE      payout: YYYY-MM-DD or YYYY-MM, inclusive, UTC\n"
            "      --period P          statement: YYYY-MM or YYYY-MM-DD, UTC\n"
            "      --json, --csv       statement: machine-readable output\n"
            "      --by G              attribution: campaign, source, medium or channel;\n"
            "                          funnel: also segment or month; sla compliance: policy\n"
            "                          or owner\n"
            "      --week              sla compliance: a row per week too\n"
            "      --model M           attribution: one model (default linear)\n"
            "      --all-models        attribution: every model side by side\n"
            "      --from, --to DATE   attribution, funnel, sla compliance: YYYY-MM-DD or\n"
            "                          YYYY-MM, inclusive, UTC; sla status: the period's first\n"
            "                          day (default: this week's Monday, UTC)\n"
            "      --state S           sla list: open, breached, live, met or expired\n"
            "      --policy P          sla next: the policy\n"
            "      --queue Q           sla next: the queue\n"
            "  -h, --help              this help\n"
            "\nexit codes: 0 ok, 1 refused or failed, 2 usage error, 3 funneld unreachable or\n"
            "unavailable (disk full): try again later\n");
}

funnel_store_t *fctl_store_open(const fctl_t *ctl)
{
    funnel_store_t *st;
    char err[512];
    if (funnel_store_open(ctl->cfg.database, true, FUNNEL_STORE_SYNC_NORMAL, &st, err,
                          sizeof err)) {
        fprintf(stderr, "funnelctl: %s\n", err);
        return NULL;
    }
    return st;
}

int64_t fctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fctl_print_json(json_t *doc, size_t flags)
{
    char *text = doc ? json_dumps(doc, flags) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    json_decref(doc);
    return text ? 0 : FUNNEL_ENOMEM;
}

static bool parse_int(const char *s, int64_t min, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < min)
        return false;
    *out = v;
    return true;
}

enum {
    OPT_DB = 1000,
    OPT_SUBMIT,
    OPT_PUBLISH,
    OPT_REPLAY,
    OPT_TIMEOUT,
    OPT_SOURCE,
    OPT_FROM_SEQ,
    OPT_COUNT,
    OPT_IDLE,
    OPT_JSON,
    OPT_CSV,
    OPT_REP,
    OPT_THROUGH,
    OPT_PERIOD,
    OPT_BY,
    OPT_MODEL,
    OPT_ALL_MODELS,
    OPT_FROM,
    OPT_TO,
    OPT_STATE,
    OPT_POLICY,
    OPT_QUEUE,
    OPT_READY_FILE,
    OPT_KEY,
    OPT_SERVER_KEY,
    OPT_WEEK
};

/* Applies one option; returns false on a bad value (message printed). */
static bool apply_option(fctl_t *ctl, int opt, const char *arg)
{
    static const char *const keys[] = {[OPT_DB - OPT_DB] = "database",
                                       [OPT_SUBMIT - OPT_DB] = "submit",
                                       [OPT_PUBLISH - OPT_DB] = "publish",
                                       [OPT_REPLAY - OPT_DB] = "replay"};
    char err[256];
    int64_t v;
    switch (opt) {
    case OPT_DB:
    case OPT_SUBMIT:
    case OPT_PUBLISH:
    case OPT_REPLAY:
        if (funnel_config_set(&ctl->cfg, keys[opt - OPT_DB], arg, err, sizeof err)) {
            fprintf(stderr, "funnelctl: %s\n", err);
            return false;
        }
        return true;
    case OPT_TIMEOUT:
    case OPT_IDLE:
        if (!parse_int(arg, 1, &v) || v > 86400000) {
            fprintf(stderr, "funnelctl: '%s' is not a number of milliseconds\n", arg);
            return false;
        }
        *(opt == OPT_TIMEOUT ? &ctl->timeout_ms : &ctl->idle_ms) = (int)v;
        return true;
    case OPT_FROM_SEQ:
    case OPT_COUNT:
    case 'n':
        if (!parse_int(arg, 1, &v)) {
            fprintf(stderr, "funnelctl: '%s' is not a positive integer\n", arg);
            return false;
        }
        if (opt == OPT_FROM_SEQ)
            ctl->from_seq = (uint64_t)v;
        else if (opt == OPT_COUNT)
            ctl->count = v;
        else
            ctl->limit = v;
        return true;
    case OPT_SOURCE:
        ctl->source = arg;
        return true;
    case OPT_JSON:
        ctl->json = true;
        return true;
    case OPT_CSV:
        ctl->csv = true;
        return true;
    case OPT_REP:
        ctl->rep = arg;
        return true;
    case OPT_THROUGH:
        ctl->through = arg;
        return true;
    case OPT_PERIOD:
        ctl->period = arg;
        return true;
    case OPT_BY:
        ctl->by = arg;
        return true;
    case OPT_MODEL:
        ctl->model = arg;
        return true;
    case OPT_ALL_MODELS:
        ctl->all_models = true;
        return true;
    case OPT_FROM:
        ctl->from = arg;
        return true;
    case OPT_TO:
        ctl->to = arg;
        return true;
    case OPT_POLICY:
        ctl->policy = arg;
        return true;
    case OPT_QUEUE:
        ctl->queue = arg;
        return true;
    case OPT_STATE:
        ctl->state = arg;
        return true;
    case OPT_KEY:
        ctl->key = arg;
        return true;
    case OPT_SERVER_KEY:
        ctl->server_key = arg;
        return true;
    case OPT_WEEK:
        ctl->week = true;
        return true;
    default:
        return false;
    }
}

/* Takes the endpoints and the database from a running funneld's ready file (key=value lines),
 * over the config file and under explicit options. Only funneld knows the ports it bound to
 * `*`, so a missing file means it is not running (or not ready): FCTL_UNREACHABLE. */
static int ready_file_read(fctl_t *ctl, const char *path)
{
    static const char *const keys[] = {"submit", "publish", "replay", "database"};
    char line[4200], err[256];
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr,
                "funnelctl: cannot read ready file %s: %s (is funneld running with "
                "--ready-file %s?)\n",
                path, strerror(errno), path);
        return FCTL_UNREACHABLE;
    }
    int status = FCTL_OK;
    while (status == FCTL_OK && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(line, keys[i]) == 0 &&
                funnel_config_set(&ctl->cfg, keys[i], eq + 1, err, sizeof err)) {
                fprintf(stderr, "funnelctl: %s: %s\n", path, err);
                status = FCTL_REFUSED;
            }
    }
    fclose(f);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"db", required_argument, NULL, OPT_DB},
        {"submit", required_argument, NULL, OPT_SUBMIT},
        {"publish", required_argument, NULL, OPT_PUBLISH},
        {"replay", required_argument, NULL, OPT_REPLAY},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"from-seq", required_argument, NULL, OPT_FROM_SEQ},
        {"count", required_argument, NULL, OPT_COUNT},
        {"idle-timeout-ms", required_argument, NULL, OPT_IDLE},
        {"limit", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, OPT_JSON},
        {"csv", no_argument, NULL, OPT_CSV},
        {"rep", required_argument, NULL, OPT_REP},
        {"through", required_argument, NULL, OPT_THROUGH},
        {"period", required_argument, NULL, OPT_PERIOD},
        {"by", required_argument, NULL, OPT_BY},
        {"model", required_argument, NULL, OPT_MODEL},
        {"all-models", no_argument, NULL, OPT_ALL_MODELS},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"state", required_argument, NULL, OPT_STATE},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"ready-file", required_argument, NULL, OPT_READY_FILE},
        {"key", required_argument, NULL, OPT_KEY},
        {"server-key", required_argument, NULL, OPT_SERVER_KEY},
        {"week", no_argument, NULL, OPT_WEEK},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    fctl_t ctl = {.timeout_ms = 3000,
                  .source = "funnelctl",
                  .key = getenv("FUNNEL_KEY"),
                  .server_key = getenv("FUNNEL_SERVER_KEY")};
    const char *config_path = NULL, *ready_path = NULL;
    int opt, status = FCTL_USAGE;
    struct {
        int opt;
        const char *arg;
    } deferred[64];
    int n_deferred = 0;

    /* Options are collected first and applied after the config file is read, so an explicit
     * --db or endpoint wins over the file whatever the order on the command line. */
    while ((opt = getopt_long(argc, argv, "c:n:h", longopts, NULL)) != -1) {
        if (opt == 'c') {
            config_path = optarg;
        } else if (opt == OPT_READY_FILE) {
            ready_path = optarg;
        } else if (opt == 'h') {
            usage(stdout);
            return FCTL_OK;
        } else if (opt == '?' || n_deferred == 64) {
            usage(stderr);
            return FCTL_USAGE;
        } else {
            deferred[n_deferred].opt = opt;
            deferred[n_deferred++].arg = optarg;
        }
    }
    char err[512];
    /* No engine registry: funnelctl needs the endpoints and the database, and skips the
     * engines' sections of funneld.conf (reading them would link the engines' runtime). */
    if (funnel_config_defaults(&ctl.cfg, NULL)) {
        fprintf(stderr, "funnelctl: out of memory\n");
        return FCTL_REFUSED;
    }
    ctl.config_path = config_path;
    if (config_path && funnel_config_load(config_path, NULL, &ctl.cfg, err, sizeof err)) {
        fprintf(stderr, "funnelctl: %s\n", err);
        goto out;
    }
    if (ready_path && (status = ready_file_read(&ctl, ready_path)) != FCTL_OK)
        goto out;
    status = FCTL_USAGE;
    for (int i = 0; i < n_deferred; i++)
        if (!apply_option(&ctl, deferred[i].opt, deferred[i].arg))
            goto out;
    if (optind >= argc) {
        usage(stderr);
        goto out;
    }
    const char *name = argv[optind];
    ctl.args = argv + optind + 1;
    ctl.n_args = argc - optind - 1;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, name) != 0)
            continue;
        if (ctl.n_args < commands[i].min_args || ctl.n_args > commands[i].max_args) {
            fprintf(stderr, "usage: funnelctl %s\n", commands[i].synopsis);
            goto out;
        }
        status = commands[i].run(&ctl);
        goto out;
    }
    fprintf(stderr, "funnelctl: unknown command '%s'\n", name);
    usage(stderr);
out:
    funnel_config_clear(&ctl.cfg);
    return status;
}
