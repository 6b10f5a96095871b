/**
 * Stripe refunds (the refund worker's half of the Stripe connector; docs/connectors.md → Refunds):
 *
 *   refund        POST /v1/refunds                           payment_intent, amount, metadata; Idempotency-Key
 *   lookupRefund  GET  /v1/refunds/{id}                      when the refund's id (`re_…`) is known
 *                 GET  /v1/refunds?payment_intent={pi}       otherwise: the refund whose metadata[refundKey]
 *                                                            is the request's idempotency key
 *
 * Exactly once: the Idempotency-Key is the refund request's key, so a re-sent refund is replayed by
 * Stripe (or answered 409 while the first is still running), never performed twice, for 24 hours.
 * The list is strongly consistent (unlike search), so "no refund carries this key" is a safe
 * `not_found`: a refund still being executed by Stripe cannot be duplicated by a re-send under the
 * same key, and after 24 hours none can still be running.
 *
 * A refund may complete later: `pending` is `submitted` (REFUND_SUBMITTED stays) until a lookup
 * finds it `succeeded` (or `failed`/`canceled`).
 */
import { z } from 'zod';
import { formEncode, parseJsonBody, type HttpResponse } from './http.js';
import type { RefundLookupOutcome, RefundLookupRequest, RefundOutcome, RefundPort, RefundRequest } from './types.js';

/** How the connector sends one request (stripe.ts): POST with a form and key, GET without a body. */
export type StripeCall = (
  op: string,
  path: string,
  body?: string,
  key?: string,
  signal?: AbortSignal,
) => Promise<{ ok: true; res: HttpResponse } | { ok: false; kind: 'not_sent' | 'ambiguous'; reason: string }>;

/** Stripe's answers that are not business results (409, 429, 5xx, 401, other 4xx), as stripe.ts maps them. */
export type StripeErrorOutcome = (
  res: HttpResponse,
  e: StripeApiError | undefined,
) => { kind: 'error'; retryable: boolean; code: string; message: string; retryAfterMs?: number };

const refundSchema = z.object({
  id: z.string().min(1),
  status: z.string().nullish(),
  amount: z.number().int(),
  currency: z.string().nullish(),
  payment_intent: z.string().nullish(),
  failure_reason: z.string().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
});
type StripeRefund = z.infer<typeof refundSchema>;
const refundListSchema = z.object({ data: z.array(refundSchema), has_more: z.boolean().nullish() });
const errorSchema = z.object({
  error: z.object({ type: z.string(), code: z.string().nullish(), message: z.string().nullish() }),
});
export type StripeApiError = z.infer<typeof errorSchema>['error'];

/** The metadata key that carries the refund request's idempotency key (what a lookup matches on). */
export const STRIPE_REFUND_KEY_METADATA = 'refundKey';
/** Pages of 100 refunds a lookup reads for one PaymentIntent before it gives up (`unknown`). */
const MAX_LIST_PAGES = 10;

/** The refund form. Pure: a retry under the same key must carry exactly the same parameters. */
export function buildRefundForm(req: RefundRequest): string {
  return formEncode({
    payment_intent: req.processorRef,
    amount: req.amount,
    metadata: { chargeId: req.chargeId, refundId: req.refundId, [STRIPE_REFUND_KEY_METADATA]: req.idempotencyKey },
  });
}

export function createStripeRefunds(
  call: StripeCall,
  errorOutcome: StripeErrorOutcome,
  safe: (m?: string | null) => string,
): RefundPort {
  async function refund(req: RefundRequest, signal?: AbortSignal): Promise<RefundOutcome> {
    const sent = await call('refund', '/v1/refunds', buildRefundForm(req), req.idempotencyKey, signal);
    if (!sent.ok)
      return sent.kind === 'ambiguous'
        ? { kind: 'ambiguous', reason: sent.reason }
        : { kind: 'error', retryable: true, code: 'PROCESSOR_UNREACHABLE', message: sent.reason };
    const { res } = sent;
    if (res.status === 200) {
      const r = parseJsonBody(refundSchema, res.body);
      // Created (or replayed) but unreadable: only a lookup can tell what Stripe holds.
      if (!r) return { kind: 'ambiguous', reason: 'stripe answered 200 with an unreadable refund' };
      switch (r.status) {
        case 'succeeded':
          return { kind: 'refunded', refundRef: r.id };
        case 'pending':
        case 'requires_action':
          return { kind: 'submitted', refundRef: r.id };
        case 'failed':
        case 'canceled':
          return {
            kind: 'rejected',
            refundRef: r.id,
            code: r.failure_reason ?? r.status,
            message: `stripe refund ${r.id} ${r.status}`,
          };
        default:
          return { kind: 'ambiguous', reason: `stripe refund ${r.id} in status ${r.status ?? 'none'}` };
      }
    }
    const e = parseJsonBody(errorSchema, res.body)?.error;
    if (res.status === 400 && e?.type === 'idempotency_error')
      return {
        kind: 'error',
        retryable: false,
        code: 'IDEMPOTENCY_KEY_REUSED',
        message: 'the idempotency key was used with different parameters',
      };
    // Stripe refused this refund for good: more than is left (amount_too_large), already refunded,
    // disputed, not captured (payment_intent_unexpected_state), no such PaymentIntent (resource_missing).
    // A malformed request of ours (parameter_*) stays an error: it is a bug, not Stripe's decision.
    if (
      (res.status === 400 || res.status === 404) &&
      e?.type === 'invalid_request_error' &&
      e.code &&
      !e.code.startsWith('parameter_')
    )
      return { kind: 'rejected', code: e.code, message: safe(e.message) };
    return errorOutcome(res, e);
  }

  async function lookupRefund(req: RefundLookupRequest, signal?: AbortSignal): Promise<RefundLookupOutcome> {
    if (req.refundRef !== undefined) {
      const sent = await call('lookup-refund', `/v1/refunds/${encodeURIComponent(req.refundRef)}`, undefined, undefined, signal);
      if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
      if (sent.res.status === 404) return { kind: 'not_found' };
      if (sent.res.status !== 200) return { kind: 'unknown', reason: `stripe answered HTTP ${sent.res.status}` };
      const r = parseJsonBody(refundSchema, sent.res.body);
      return r ? fromRefund(r) : { kind: 'unknown', reason: 'stripe answered 200 with an unreadable refund' };
    }
    let after: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
      const query = `payment_intent=${encodeURIComponent(req.processorRef)}&limit=100${after ? `&starting_after=${encodeURIComponent(after)}` : ''}`;
      const sent = await call('lookup-refund-list', `/v1/refunds?${query}`, undefined, undefined, signal);
      if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
      if (sent.res.status !== 200) return { kind: 'unknown', reason: `stripe refund list answered HTTP ${sent.res.status}` };
      const list = parseJsonBody(refundListSchema, sent.res.body);
      if (!list) return { kind: 'unknown', reason: 'stripe refund list answered with an unreadable body' };
      const mine = list.data.find((r) => r.metadata?.[STRIPE_REFUND_KEY_METADATA] === req.idempotencyKey);
      if (mine) return fromRefund(mine);
      if (!list.has_more || list.data.length === 0) return { kind: 'not_found' };
      after = list.data[list.data.length - 1]?.id;
    }
    return { kind: 'unknown', reason: `more than ${MAX_LIST_PAGES * 100} refunds on ${req.processorRef}` };
  }

  function fromRefund(r: StripeRefund): RefundLookupOutcome {
    switch (r.status) {
      case 'succeeded':
        return { kind: 'refunded', refundRef: r.id, amount: r.amount };
      case 'pending':
      case 'requires_action':
        return { kind: 'pending', refundRef: r.id, amount: r.amount };
      case 'failed':
      case 'canceled':
        return {
          kind: 'failed',
          refundRef: r.id,
          code: r.failure_reason ?? r.status,
          message: `stripe refund ${r.id} ${r.status}`,
        };
      default:
        return { kind: 'unknown', reason: `stripe refund ${r.id} in status ${r.status ?? 'none'}` };
    }
  }

  return { refund, lookupRefund };
}
