/* report.c — what every report shares: decimal int64 values and CSV fields. */
#include "funnel/report.h"

#include <string.h>

json_t *funnel_report_int(int64_t v)
{
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)v);
    return json_string(text);
}

void funnel_report_csv_field(FILE *out, const char *s, const char *after)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fprintf(out, "%s%s", s, after);
        return;
    }
    fputc('"', out);
    for (const char *q; (q = strchr(s, '"')); s = q + 1)
        fprintf(out, "%.*s\"\"", (int)(q - s), s);
    fprintf(out, "%s\"%s", s, after);
}
