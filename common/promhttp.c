/* promhttp.c — see promhttp.h: exposition helpers, /metrics and /healthz answers, the
 * stand-alone endpoint and the ready file, shared by funneld, funnel-webhook and funnel-alert. */
#include "funnel/promhttp.h"
#include "funnel/error.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROM_TEXT "text/plain; version=0.0.4"

struct funnel_prom_server {
    struct MHD_Daemon *httpd;
    funnel_prom_render_fn render;
    void *arg;
};

/* ---- exposition --------------------------------------------------------------------------- */

void funnel_prom_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `name ` or `name{label="value"} `: what precedes a sample's value. */
static void sample_head(FILE *out, const char *name, const char *label, const char *value)
{
    fputs(name, out);
    if (label) {
        fprintf(out, "{%s=\"", label);
        for (const char *p = value; p && *p; p++) {
            if (*p == '\n')
                fputs("\\n", out);
            else if (*p == '\\' || *p == '"')
                fprintf(out, "\\%c", *p);
            else
                fputc(*p, out);
        }
        fputs("\"}", out);
    }
    fputc(' ', out);
}

void funnel_prom_u64(FILE *out, const char *name, const char *label, const char *value, uint64_t v)
{
    sample_head(out, name, label, value);
    fprintf(out, "%llu\n", (unsigned long long)v);
}

void funnel_prom_f64(FILE *out, const char *name, const char *label, const char *value, double v)
{
    sample_head(out, name, label, value);
    fprintf(out, "%g\n", v);
}

/* ---- answers ------------------------------------------------------------------------------ */

/* render's text as a response libmicrohttpd frees; NULL when out of memory. */
static struct MHD_Response *rendered(funnel_prom_render_fn render, void *arg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return NULL;
    render(out, arg);
    struct MHD_Response *resp =
        fclose(out) ? NULL : MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(text);
    return resp;
}

/* Queues resp (NULL when it could not be made) as Prometheus text and drops our reference. */
static int queue(struct MHD_Connection *conn, unsigned int status, struct MHD_Response *resp)
{
    int ret = MHD_NO;
    if (resp && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, PROM_TEXT) == MHD_YES)
        ret = MHD_queue_response(conn, status, resp);
    if (resp)
        MHD_destroy_response(resp);
    return ret;
}

int funnel_prom_answer(struct MHD_Connection *conn, const char *method, const char *url,
                       funnel_prom_render_fn render, void *arg)
{
    if (strcmp(method, MHD_HTTP_METHOD_GET))
        return -1;
    if (!strcmp(url, "/metrics"))
        return queue(conn, MHD_HTTP_OK, rendered(render, arg));
    /* Liveness only: answered while the process lives; systemd's watchdog covers a stall. */
    if (!strcmp(url, "/healthz"))
        return queue(conn, MHD_HTTP_OK,
                     MHD_create_response_from_buffer(3, "ok\n", MHD_RESPMEM_PERSISTENT));
    return -1;
}

/* ---- the stand-alone endpoint ------------------------------------------------------------- */

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *upload,
                             size_t *upload_len, void **state)
{
    const funnel_prom_server_t *srv = cls;
    (void)version;
    (void)upload;
    (void)state;
    int ret = funnel_prom_answer(conn, method, url, srv->render, srv->arg);
    if (ret < 0) {
        unsigned int status =
            strcmp(method, MHD_HTTP_METHOD_GET) ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
        *upload_len = 0; /* a body is not read: the answer is queued at the headers */
        ret = queue(conn, status, MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT));
    }
    return ret == MHD_YES ? MHD_YES : MHD_NO;
}

/* "IPv4:port" into addr; FUNNEL_ECONFIG when it is not that. */
static int parse_listen(const char *listen, struct sockaddr_in *addr)
{
    const char *colon = strrchr(listen, ':');
    char host[INET_ADDRSTRLEN], *end = NULL;
    size_t n = colon ? (size_t)(colon - listen) : sizeof host;
    if (n >= sizeof host)
        return FUNNEL_ECONFIG;
    memcpy(host, listen, n);
    host[n] = '\0';
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port > 65535 || inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return FUNNEL_ECONFIG;
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    return 0;
}

int funnel_prom_listen_check(const char *listen)
{
    struct sockaddr_in addr;
    return parse_listen(listen, &addr);
}

int funnel_prom_server_new(const char *listen, funnel_prom_render_fn render, void *arg,
                           const funnel_log_t *log, funnel_prom_server_t **out)
{
    struct sockaddr_in addr = {0};
    funnel_prom_server_t *srv = NULL;
    int rc = parse_listen(listen, &addr);
    if (rc)
        funnel_log_error(log, "metrics: '%s' is not an IPv4 address:port", listen);
    else if (!(srv = calloc(1, sizeof *srv)))
        rc = FUNNEL_ENOMEM;
    if (rc)
        return rc;
    *srv = (funnel_prom_server_t){.render = render, .arg = arg};
    srv->httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                                  NULL, serve, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                  MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!srv->httpd) {
        funnel_log_error(log, "metrics: cannot listen on %s", listen);
        free(srv);
        return FUNNEL_EIO;
    }
    funnel_log_info(log, "metrics on http://%.*s:%d/metrics", (int)(strrchr(listen, ':') - listen),
                    listen, funnel_prom_server_port(srv));
    *out = srv;
    return 0;
}

int funnel_prom_server_port(const funnel_prom_server_t *srv)
{
    const union MHD_DaemonInfo *info =
        srv ? MHD_get_daemon_info(srv->httpd, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    return info ? (int)info->port : 0;
}

void funnel_prom_server_destroy(funnel_prom_server_t **srvp)
{
    if (!srvp || !*srvp)
        return;
    MHD_stop_daemon((*srvp)->httpd);
    free(*srvp);
    *srvp = NULL;
}

/* ---- ready file --------------------------------------------------------------------------- */

int funnel_ready_write(const char *path, const char *fmt, ...)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return FUNNEL_EIO;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return FUNNEL_EIO;
    va_list ap;
    va_start(ap, fmt);
    int written = vfprintf(f, fmt, ap);
    va_end(ap);
    bool ok = !fclose(f) && written >= 0 && !rename(tmp, path);
    if (!ok)
        unlink(tmp);
    return ok ? 0 : FUNNEL_EIO;
}
