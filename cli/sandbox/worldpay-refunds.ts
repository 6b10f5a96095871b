/**
 * The Worldpay sandbox's refunds (worldpay-server.ts routes the `refund` order modification here).
 *
 * As Worldpay: a refund is accepted (`refundReceived`) and confirmed later. The order's refund journal
 * shows it SENT_FOR_REFUND, then REFUNDED `refundSettleMs` later (read lazily), or at once on
 * `settleRefunds()` / `POST /__sandbox/refunds/settle` (`{"end":"failed"}` makes them REFUND_FAILED).
 * The order's lastEvent follows: SENT_FOR_REFUND while one is pending, then the last one's ending.
 *
 * Refused with `<error code="5">` (nothing recorded): an unknown order, one not captured, another
 * currency, or more than is left of the captured amount (refunds that failed give their amount back).
 * The same reference again with the same amount is answered `refundReceived` again and not performed
 * (`duplicateRefunds`); with another amount it is refused.
 */

export type RefundJournalType = 'SENT_FOR_REFUND' | 'REFUNDED' | 'REFUND_FAILED';

export interface SandboxRefund {
  readonly reference: string;
  readonly amount: number;
  journalType: RefundJournalType;
  dueAt: number;
}

/** What of an order the refunds read and change. */
export interface RefundableOrder {
  readonly currency: string;
  readonly exponent: number;
  lastEvent: string;
  capturedAmount?: number;
  readonly refundList: SandboxRefund[];
  refunds: number;
  duplicateRefunds: number;
}

/** What a refund modification does to an order: received (performed or de-duplicated) or refused (error 5 text). */
export function refundOrder(
  o: RefundableOrder,
  req: { reference: string; amount: { value: number; currencyCode: string; exponent: string } },
  settleMs: number,
): { received: true } | { refused: string } {
  const { reference, amount } = req;
  const sameMoney = amount.currencyCode === o.currency && amount.exponent === String(o.exponent);
  const earlier = o.refundList.find((r) => r.reference === reference);
  if (earlier) {
    if (!sameMoney || earlier.amount !== amount.value) return { refused: `Refund reference ${reference} already used` };
    o.duplicateRefunds += 1;
    return { received: true };
  }
  if (reference === '') return { refused: 'Refund reference is required' };
  if (o.capturedAmount === undefined) return { refused: `Order in state ${o.lastEvent} cannot be refunded` };
  if (!sameMoney || amount.value <= 0) return { refused: 'Refund amount is not valid for this order' };
  if (refundedOf(o) + amount.value > o.capturedAmount)
    return { refused: 'Refund amount exceeds the amount available for refund' };
  o.refundList.push({ reference, amount: amount.value, journalType: 'SENT_FOR_REFUND', dueAt: Date.now() + settleMs });
  o.refunds += 1;
  o.lastEvent = 'SENT_FOR_REFUND';
  return { received: true };
}

/** Settle the refunds that are due (or all, with `force`), and the order's lastEvent with them. */
export function settleRefunds(o: RefundableOrder, force?: 'REFUNDED' | 'REFUND_FAILED'): number {
  const now = Date.now();
  let n = 0;
  let last: RefundJournalType | undefined;
  for (const r of o.refundList) {
    if (r.journalType !== 'SENT_FOR_REFUND' || (!force && now < r.dueAt)) continue;
    r.journalType = force ?? 'REFUNDED';
    last = r.journalType;
    n += 1;
  }
  if (last && o.lastEvent === 'SENT_FOR_REFUND' && !o.refundList.some((r) => r.journalType === 'SENT_FOR_REFUND'))
    o.lastEvent = last;
  return n;
}

/** Amount refunded or being refunded (failed refunds excluded). */
export function refundedOf(o: RefundableOrder): number {
  return o.refundList.filter((r) => r.journalType !== 'REFUND_FAILED').reduce((sum, r) => sum + r.amount, 0);
}

/** The `<journal>` elements of an order's refunds, shaped like Worldpay's order notifications. */
export function refundJournals(
  o: RefundableOrder,
  amountOf: (value: number) => Record<string, string>,
): Record<string, unknown>[] {
  return o.refundList.map((r) => ({
    '@_journalType': r.journalType,
    accountTx: { '@_accountType': 'IN_PROCESS_CAPTURED', amount: { ...amountOf(r.amount), '@_debitCreditIndicator': 'debit' } },
    journalReference: { '@_type': 'refund', '@_reference': r.reference },
  }));
}
