/* ledger.h — the commission ledger engine: trailing commission on handed-off clients,
 * clawbacks on refunds, payouts, and the reports funnelctl prints.
 *
 * Contract
 * - Inputs: client.handed_off, payment.received, payment.refunded and commission.paid, each
 *   seen once (the router deduplicates by event_id). The engine keeps the facts it needs in its
 *   own tables, so a payment that arrives before its handoff, or a refund before its payment,
 *   is held and posted when the missing event arrives.
 * - Desired state: for a client, the ledger's ACCRUAL and CLAWBACK sums per (payment or refund
 *   event, beneficiary) are a pure function of the set of facts known (plus the plan, frozen per
 *   client and per payment the first time it is used). Every input recomputes that function
 *   for its client and posts the difference to what is already posted, so the same set of
 *   events in any arrival order ends with the same sums and balances; only the number of
 *   postings and their cause_event_id differ (a late event causes corrections).
 * - Canonical facts: a client's handoff is its earliest (occurred_at_ms, event_id); a repeated
 *   payment_id or refund_id counts once, the earliest, across clients (an id names one payment
 *   or refund whichever client a duplicate names; the client that loses it is settled again,
 *   so what it earned is reversed). A refund claws back from the payment it names only when that
 *   payment's canonical row has the refund's client and currency; otherwise it is held (logged
 *   once, listed by funnel_ledger_unmatched_refunds). A payment earns when it occurred at or
 *   after the handoff and before the term's end. The cap is consumed by payments in event-time
 *   order (occurred_at_ms, event_id), per client, beneficiary and currency, by accruals; a
 *   refund claws back from its own payment and does not reopen the cap.
 * - Rounding: see funnel_commission_accrual / funnel_commission_clawback_total (ledger_plan.h).
 * - Postings are append-only (SQLite triggers refuse UPDATE and DELETE) and double-entry: each
 *   has two lines in the accounts expense, payable and paid of one rep and currency, signed
 *   debit-positive, summing to zero. A correction is a new posting of the same kind with a
 *   negative amount. Balances per (account, rep, currency) are kept beside the lines, and what
 *   the client's rep and account manager have accrued on it per currency in the client's latest
 *   payment row of that currency: what a payment in event-time order needs of the history, read
 *   from the row beside the one it writes. A rate is frozen in the postings of its accrual;
 *   ledger_rate holds only the rates of accruals of 0.
 * - Payouts: commission.paid {payout_id, rep, through_ms} posts, per currency, what is payable
 *   for postings with event time <= through_ms minus everything paid before, when positive. A
 *   repeated payout_id changes nothing. A payout is a fact of its arrival: events arriving later
 *   are paid by the next payout.
 * - Output: one commission.posted per posting, event_id = the entry id "ledger:<cause>#<n>",
 *   occurred_at_ms = the posting's event time; the body leaves entry_id empty, and
 *   subject_event_id empty when the subject is the cause (docs/protocol.md).
 * - Engines never read the clock or touch sockets; every write happens in the router's batch
 *   transaction. Errors: FUNNEL_ESTORE (SQLite), FUNNEL_EREFUSED (an amount would overflow int64:
 *   refused through funnel_router_refuse, the event is not recorded), FUNNEL_ENOMEM. */
#ifndef FUNNEL_LEDGER_H
#define FUNNEL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger_plan.h"
#include "funnel/ledger_report.h"
#include "funnel/log.h"
#include "router.h"
#include "store.h"

typedef struct funnel_ledger funnel_ledger_t;

/* Migrates the ledger's tables (outside a batch) and prepares its statements. plan and log are
 * borrowed and read per event (a reload may change *plan in place); store must outlive the
 * ledger. On failure returns FUNNEL_ESTORE/FUNNEL_ENOMEM with err filled. */
int funnel_ledger_new(funnel_store_t *store, const funnel_commission_config_t *plan,
                      const funnel_log_t *log, funnel_ledger_t **out, char *err, size_t err_len);
void funnel_ledger_destroy(funnel_ledger_t **ledger);

/* The engine callback (funnel_engine_t.on_event); self is a funnel_ledger_t. */
int funnel_ledger_on_event(void *self, funnel_router_t *router, const funnel_envelope_t *env,
                           int64_t now_ms);

/* The registry's hooks (engines/registry.c): section is the live funnel_commission_config_t. */
int funnel_ledger_engine_create(funnel_store_t *store, const void *section, const funnel_log_t *log,
                                funnel_engine_t *engine);
void funnel_ledger_engine_destroy(void *self);

#endif
