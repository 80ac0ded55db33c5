/* sla_fx.h — envelope builders for the SLA tests (engine and end-to-end). Each returns a
 * heap envelope owned by the caller (funnel_envelope_free), with source "test". */
#ifndef FUNNEL_TEST_SLA_FX_H
#define FUNNEL_TEST_SLA_FX_H

#include <stdint.h>

#include "funnel/codec.h"
#include "sla_config.h"

#include <stddef.h>

funnel_envelope_t *fx_qualified(const char *id, const char *lead, int stage, int64_t at);
funnel_envelope_t *fx_contacted(const char *id, const char *lead, int64_t at);
funnel_envelope_t *fx_touched(const char *id, const char *lead, int64_t at);
funnel_envelope_t *fx_closed(const char *id, const char *lead, int outcome, int64_t at);
funnel_envelope_t *fx_acked(const char *id, const char *sla_id, int64_t at);

/* Parses `sla = { body };` into cfg (replacing it, as a reload does); the error text, or ""
 * when it parses, into err. Returns the parser's answer. */
int fx_sla_cfg_parse(const char *body, funnel_sla_config_t *cfg, char *err, size_t err_len);
/* fx_sla_cfg_parse, asserted to succeed. */
void fx_sla_cfg_set(const char *body, funnel_sla_config_t *cfg);

/* The k-th permutation of 0..n-1 (k < n!, n <= 8) into idx. */
void fx_permutation(size_t n, size_t k, size_t *idx);

/* Requests: from sales to marketing; answered by mkt-petrova; closed DONE. */
funnel_envelope_t *fx_req_opened(const char *id, const char *req, const char *kind,
                                 const char *queue, int priority, const char *owner, int64_t at);
funnel_envelope_t *fx_req_assigned(const char *id, const char *req, const char *owner, int64_t at);
funnel_envelope_t *fx_req_answered(const char *id, const char *req, int64_t at);
funnel_envelope_t *fx_req_closed(const char *id, const char *req, int64_t at);
funnel_envelope_t *fx_req_reopened(const char *id, const char *req, int64_t at);

#endif
