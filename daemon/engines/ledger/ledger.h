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
 *   negative amount. Balances per (account, rep, currency) are kept beside the lines.
 * - Payouts: commission.paid {payout_id, rep, through_ms} posts, per currency, what is payable
 *   for postings with event time <= through_ms minus everything paid before, when positive. A
 *   repeated payout_id changes nothing. A payout is a fact of its arrival: events arriving later
 *   are paid by the next payout.
 * - Output: one commission.posted per posting, event_id = entry_id = "ledger:<cause>#<n>",
 *   occurred_at_ms = the posting's event time.
 * - Engines never read the clock or touch sockets; every write happens in the router's batch
 *   transaction. Errors: FUNNEL_ESTORE (SQLite), FUNNEL_EREFUSED (an amount would overflow int64:
 *   refused through funnel_router_refuse, the event is not recorded), FUNNEL_ENOMEM. */
#ifndef FUNNEL_LEDGER_H
#define FUNNEL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger_plan.h"
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

/* --- reports: read-only, on any connection to the database ------------------------------- */

/* One posting as a statement line. */
typedef struct funnel_ledger_posting {
    char entry_id[FUNNEL_ID_MAX + 32];
    char kind[12];                     /* ACCRUAL, CLAWBACK, PAYOUT */
    char role[20];                     /* rep, account_manager, or empty for payouts */
    char client_id[FUNNEL_ID_MAX + 1]; /* empty for payouts */
    char cause_event_id[FUNNEL_ID_MAX + 1];
    char subject_event_id[FUNNEL_ID_MAX + 1];
    char currency[4];
    int64_t amount; /* signed: a correction is negative */
    int64_t rate_bp;
    int64_t effective_ms; /* event time: the period the posting belongs to */
    int64_t posted_at_ms; /* when funneld posted it */
} funnel_ledger_posting_t;

/* One currency of a statement: opening + accruals - clawbacks - payouts = closing, where the
 * balance is what the company owes the rep (payable). */
typedef struct funnel_ledger_section {
    char currency[4];
    int64_t opening, accruals, clawbacks, payouts, closing;
    bool reconciles; /* closing equals the sum of every posting before the period's end */
    funnel_ledger_posting_t *lines; /* the period's postings, in event-time order; owned */
    size_t n_lines;
} funnel_ledger_section_t;

typedef struct funnel_ledger_statement {
    int64_t from_ms, to_ms;            /* [from, to) */
    funnel_ledger_section_t *sections; /* one per currency the rep had before to_ms, sorted;
                                          owned */
    size_t n_sections;
    bool rep_known; /* the rep has a posting at any time, also after the period */
} funnel_ledger_statement_t;

/* Builds rep's statement for [from_ms, to_ms). *out is owned by the caller (free with
 * funnel_ledger_statement_free). Totals are summed exactly, whatever the order of the postings;
 * FUNNEL_EINVAL when one of them does not fit in int64, FUNNEL_ESTORE (e.g. no ledger tables),
 * FUNNEL_ENOMEM. */
int funnel_ledger_statement(funnel_store_t *store, const char *rep, int64_t from_ms, int64_t to_ms,
                            funnel_ledger_statement_t **out);
void funnel_ledger_statement_free(funnel_ledger_statement_t **st);

/* Called with one sentence per problem found. */
typedef void (*funnel_ledger_problem_cb)(const char *problem, void *arg);

/* Proves the books: every posting has two lines in its rep's accounts summing to zero and
 * matching its amount, no line lacks a posting, and every stored balance equals the sum of its
 * lines. *problems receives how many were found (0: sound); *postings and *balances (optional)
 * how many were checked. Returns 0, or FUNNEL_ESTORE when the checks could not run. */
int funnel_ledger_check(funnel_store_t *store, funnel_ledger_problem_cb cb, void *arg,
                        int64_t *problems, int64_t *postings, int64_t *balances);

/* Lists the refunds that claw back nothing and are held: those whose payment is unknown, or
 * belongs to another client or is in another currency (a refund claws back only from a payment
 * of its own client and currency). One sentence per refund to cb (may be NULL), naming the
 * refund, its client and payment and, when known, the payment's client and currency; *found
 * receives how many. Not a problem of the books: funnel_ledger_check does not count them.
 * Returns 0 or FUNNEL_ESTORE. */
int funnel_ledger_unmatched_refunds(funnel_store_t *store, funnel_ledger_problem_cb cb, void *arg,
                                    int64_t *found);

#endif
