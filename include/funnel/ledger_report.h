/* ledger_report.h — the commission ledger's read side: statements, the books' check and the
 * held refunds, on any connection to the database (funnelctl opens it read-only). The engine
 * itself is daemon/engines/ledger/ledger.h. */
#ifndef FUNNEL_LEDGER_REPORT_H
#define FUNNEL_LEDGER_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "funnel/codec.h"

typedef struct funnel_store funnel_store_t;

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
