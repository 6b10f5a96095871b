/**
 * Worldpay refunds (the refund worker's half of the Worldpay connector; docs/worldpay.md → Refunds):
 *
 *   refund        <modify><orderModification orderCode><refund reference={idempotencyKey}><amount/>
 *                 -> <ok><refundReceived orderCode><amount/>      `submitted` (Worldpay confirms later)
 *   lookupRefund  <inquiry><orderInquiry orderCode/>             the refund journal with our reference
 *
 * Worldpay never refunds synchronously: `refundReceived` means accepted, and the order's refund journal
 * (SENT_FOR_REFUND, then REFUNDED or REFUND_FAILED) says how it ended, so REFUND_SUBMITTED stays until a
 * lookup finds REFUNDED. The refund's `reference` is payfleet's idempotency key and its `refundRef`:
 * Worldpay answers a repeated refund modification with the same reference and amount `refundReceived`
 * again without refunding twice (as it de-duplicates a repeated capture).
 *
 *   refund(K) ──▶ Worldpay   refund K recorded, answer lost      -> 'ambiguous'
 *   lookupRefund(K) ──▶ inquiry: journal K SENT_FOR_REFUND       -> 'pending' (keep REFUND_SUBMITTED)
 *   lookupRefund(K) ──▶ inquiry: journal K REFUNDED              -> 'refunded'
 *
 * An inquiry reply without refund journals (Worldpay reports them in order notifications; an inquiry
 * may not carry them) is read at the order level: lastEvent SENT_FOR_REFUND / REFUNDED / REFUND_FAILED.
 * That is exact for an order with one refund; with several partial refunds it reports the latest.
 */
import type {
  LookupOutcome,
  RefundLookupOutcome,
  RefundLookupRequest,
  RefundOutcome,
  RefundPort,
  RefundRequest,
} from './types.js';
import {
  amountMatches,
  buildOrderInquiry,
  buildRefund,
  currencyExponent,
  type WorldpayAmount,
  type WorldpayRefundJournal,
  type WorldpayReply,
} from './worldpay-xml.js';

type Err = { kind: 'error'; retryable: boolean; code: string; message: string; retryAfterMs?: number };
type Ambiguous = { kind: 'ambiguous'; reason: string };
type OrderStatus = Extract<WorldpayReply, { type: 'orderStatus' }>;

/** What worldpay.ts lends the refunds: its exchange, its order-state reading and its checks. */
export interface WorldpayRefundDeps {
  readonly merchantCode: string;
  exchange(
    op: string,
    orderCode: string,
    xml: string,
    chargeId: string,
    signal?: AbortSignal,
  ): Promise<{ readonly reply: WorldpayReply } | { readonly done: Err | Ambiguous }>;
  /** An order status as the port's LookupOutcome (authorised, captured, declined, voided...). */
  fromOrderStatus(reply: OrderStatus): LookupOutcome;
  /** A message naming what is invalid about orderCode/amount/currency, or undefined. */
  validate(orderCode: string, amount: number, currency: string): string | undefined;
  /** Worldpay `<error code>` as an error outcome (1 and 9 retryable). */
  worldpayErr(code: string, orderCode: string): Err;
}

/** The reference limit: like an orderCode, no whitespace or markup. */
const REFERENCE = /^[^\s<>&"']{1,128}$/;
const INVALID_REQUEST = '5';
const REFUNDED = new Set(['REFUNDED', 'REFUNDED_BY_MERCHANT']);

export function createWorldpayRefunds(deps: WorldpayRefundDeps): RefundPort {
  const { merchantCode, exchange } = deps;

  async function refund(req: RefundRequest, signal?: AbortSignal): Promise<RefundOutcome> {
    const orderCode = req.processorRef;
    const reference = req.idempotencyKey;
    const invalid =
      deps.validate(orderCode, req.amount, req.currency) ??
      (REFERENCE.test(reference) ? undefined : 'refund reference must be 1-128 characters without spaces or markup');
    if (invalid) return { kind: 'error', retryable: false, code: 'INVALID_REQUEST', message: invalid };
    const xml = buildRefund(merchantCode, orderCode, reference, req.amount, req.currency);
    const x = await exchange('refund', orderCode, xml, req.chargeId, signal);
    if ('done' in x) return x.done;
    const { reply } = x;
    switch (reply.type) {
      case 'refundReceived':
        if (reply.orderCode !== orderCode)
          return {
            kind: 'error',
            retryable: false,
            code: 'ORDER_CODE_MISMATCH',
            message: `Worldpay answered for another order than ${orderCode}`,
          };
        if (reply.amount && !amountMatches(reply.amount, req.amount, req.currency))
          return {
            kind: 'error',
            retryable: false,
            code: 'AMOUNT_MISMATCH',
            message: `Worldpay acknowledged refund ${reference} of order ${orderCode} for another amount`,
          };
        // Accepted; the order's journal shows REFUNDED later.
        return { kind: 'submitted', refundRef: reference };
      case 'error':
      case 'orderError':
        if (reply.code !== INVALID_REQUEST) return deps.worldpayErr(reply.code, orderCode);
        break;
      default:
        return { kind: 'ambiguous', reason: `unrecognised Worldpay reply to refund ${reference} of ${orderCode}` };
    }
    // Error 5: the refund is not allowed (order not captured, unknown, more than is left) — or this
    // reference exists with another amount. Worldpay's text is never classified; the order's state is.
    const status = await inquire(orderCode, req.chargeId, signal);
    if (status.kind === 'unknown')
      return {
        kind: 'error',
        retryable: true,
        code: 'WORLDPAY_ERROR_5',
        message: `Worldpay refused refund ${reference} of ${orderCode} (error 5); order state not known: ${status.reason}`,
      };
    if (status.kind === 'not_found')
      return { kind: 'rejected', code: 'NOT_REFUNDABLE', message: `Worldpay has no order ${orderCode}` };
    const mine = journalOf(status.reply, reference);
    if (mine) {
      const found = fromJournal(mine.journalType, reference, mine.amount, req);
      if (found.kind === 'refunded') return { kind: 'refunded', refundRef: reference };
      if (found.kind === 'pending') return { kind: 'submitted', refundRef: reference };
      if (found.kind === 'failed') return { kind: 'rejected', refundRef: reference, code: found.code, message: found.message };
    }
    const order = deps.fromOrderStatus(status.reply);
    if (order.kind !== 'captured')
      return {
        kind: 'rejected',
        code: 'NOT_REFUNDABLE',
        message: `Worldpay order ${orderCode} is ${order.kind}; it cannot be refunded`,
      };
    return {
      kind: 'rejected',
      code: 'WORLDPAY_ERROR_5',
      message: `Worldpay refused refund ${reference} of order ${orderCode} (error 5: e.g. more than is left to refund)`,
    };
  }

  async function lookupRefund(req: RefundLookupRequest, signal?: AbortSignal): Promise<RefundLookupOutcome> {
    const orderCode = req.processorRef;
    const reference = req.refundRef ?? req.idempotencyKey;
    const status = await inquire(orderCode, req.chargeId, signal);
    if (status.kind !== 'found') return status.kind === 'unknown' ? status : { kind: 'not_found' };
    const { reply } = status;
    if (reply.refunds.length > 0) {
      const mine = journalOf(reply, reference);
      // The order lists its refunds and ours is not among them: it never reached Worldpay (an answer
      // lost before Worldpay recorded it). Re-sending it under the same reference is safe.
      return mine ? fromJournal(mine.journalType, reference, mine.amount, req) : { kind: 'not_found' };
    }
    // No journals in the reply: the order's last event is all there is.
    const outcome = fromJournal(reply.lastEvent, reference, undefined, req);
    return outcome.kind === 'unknown' ? { kind: 'not_found' } : outcome;
  }

  async function inquire(
    orderCode: string,
    chargeId: string,
    signal?: AbortSignal,
  ): Promise<{ kind: 'found'; reply: OrderStatus } | { kind: 'not_found' } | { kind: 'unknown'; reason: string }> {
    if (deps.validate(orderCode, 1, 'GBP')) return { kind: 'unknown', reason: `invalid orderCode for a refund lookup` };
    const x = await exchange('inquiry', orderCode, buildOrderInquiry(merchantCode, orderCode), chargeId, signal);
    if ('done' in x) return { kind: 'unknown', reason: x.done.kind === 'error' ? x.done.message : x.done.reason };
    const { reply } = x;
    if (reply.type === 'orderStatus' && reply.orderCode === orderCode) return { kind: 'found', reply };
    if ((reply.type === 'error' || reply.type === 'orderError') && reply.code === INVALID_REQUEST) return { kind: 'not_found' };
    return { kind: 'unknown', reason: `unexpected Worldpay reply (${reply.type}) to an inquiry for ${orderCode}` };
  }

  return { refund, lookupRefund };
}

function journalOf(reply: OrderStatus, reference: string): WorldpayRefundJournal | undefined {
  // The latest journal of this reference decides (SENT_FOR_REFUND, then REFUNDED).
  return reply.refunds.filter((j) => j.reference === reference).at(-1);
}

/** A refund journal type (or an order's lastEvent) as a refund lookup outcome. */
function fromJournal(
  event: string,
  reference: string,
  amount: WorldpayAmount | undefined,
  req: RefundRequest,
): RefundLookupOutcome {
  const value = amount ? amount.value * 10 ** (currencyExponent(amount.currencyCode) - amount.exponent) : req.amount;
  if (REFUNDED.has(event)) return { kind: 'refunded', refundRef: reference, amount: value };
  if (event === 'SENT_FOR_REFUND') return { kind: 'pending', refundRef: reference, amount: value };
  if (event === 'REFUND_FAILED')
    return { kind: 'failed', refundRef: reference, code: 'REFUND_FAILED', message: `Worldpay refund ${reference} failed` };
  return { kind: 'unknown', reason: `Worldpay refund ${reference}: ${event || 'no event'}` };
}
