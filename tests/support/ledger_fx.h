/* ledger_fx.h — envelope builders for the commission ledger tests (unit and end-to-end).
 *
 * Same conventions as harness.h: heap-allocated with protobuf-c's allocator, freed with
 * funnel_envelope_free; strings are copied. */
#ifndef FUNNEL_TEST_LEDGER_FX_H
#define FUNNEL_TEST_LEDGER_FX_H

#include <jansson.h>
#include <stdint.h>

#include "funnel/codec.h"

/* client.handed_off; am may be "" (no account manager). */
funnel_envelope_t *fx_handoff(const char *event_id, const char *client, const char *rep,
                              const char *am, int64_t at_ms);
/* payment.refunded of payment_id. */
funnel_envelope_t *fx_refund(const char *event_id, const char *refund_id, const char *payment_id,
                             const char *client, int64_t minor, const char *currency,
                             int64_t at_ms);
/* commission.paid. */
funnel_envelope_t *fx_commission_paid(const char *event_id, const char *payout_id, const char *rep,
                                      int64_t through_ms, int64_t at_ms);

/* A money amount in funnelctl's JSON output: an int64 written as a decimal string (the proto3
 * JSON convention, so no JSON reader rounds it through a double). Asserts that it is one. */
int64_t fx_json_minor(const json_t *v);

#endif
