/* http_fx.c — see http_fx.h. */
#include "http_fx.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t fx_http_append(char *buf, size_t cap, size_t *used, const char *data, size_t len)
{
    size_t room = cap - 1 - *used, n = len < room ? len : room;
    memcpy(buf + *used, data, n);
    *used += n;
    buf[*used] = '\0';
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    fx_http_reply_t *r = arg;
    return fx_http_append(r->body, sizeof r->body, &r->len, data, size * n);
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    fx_http_reply_t *r = arg;
    size_t len = size * n;
    if (len > 15 && !strncasecmp(data, "Retry-After: ", 13))
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(len - 15), data + 13);
    if (len > 7 && !strncasecmp(data, "Age: ", 5))
        snprintf(r->age, sizeof r->age, "%.*s", (int)(len - 7), data + 5);
    if (len > 14 && !strncasecmp(data, "Set-Cookie: ", 12))
        snprintf(r->set_cookie, sizeof r->set_cookie, "%.*s", (int)(len - 14), data + 12);
    return len;
}

void fx_http(int port, const char *path, const char *body, size_t len, const char *const *hdrs,
             fx_http_reply_t *r)
{
    char url[256];
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    struct curl_slist *list = NULL;
    for (size_t i = 0; hdrs && hdrs[i]; i++)
        list = curl_slist_append(list, hdrs[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    cr_assert_eq(rc, CURLE_OK, "%s", curl_easy_strerror(rc));
}

double fx_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

void fx_metrics_scrape(int port, fx_http_reply_t *reply)
{
    fx_http(port, "/metrics", NULL, 0, NULL, reply);
    cr_assert_eq(reply->status, 200, "GET /metrics: %ld", reply->status);
}
