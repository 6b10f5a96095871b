/**
 * Chase's answers read as processor outcomes (chase.ts sends, this file decides what they mean).
 *
 * A payment answer carries `transactionState` (AUTHORIZED, CAPTURED, CLOSED, VOIDED, DECLINED,
 * ERROR, PENDING, COMPLETED) with `responseStatus` / `responseCode` / `responseMessage`; an error
 * answer only the last three. A decline is a 200/201 with `responseStatus: "DENIED"` and
 * `transactionState: "DECLINED"`, a normal business result.
 */
import { z } from 'zod';
import { maskPans } from '../log/redact.js';
import { parseRetryAfterMs, type HttpResponse } from './http.js';
import type {
  AuthoriseOutcome,
  AuthoriseRequest,
  CaptureOutcome,
  LookupOutcome,
  RefundLookupOutcome,
  RefundOutcome,
  VoidOutcome,
} from './types.js';

const paymentSchema = z.object({
  transactionId: z.string().min(1),
  requestId: z.string().nullish(),
  transactionState: z.string(),
  responseStatus: z.string().nullish(),
  responseCode: z.string().nullish(),
  responseMessage: z.string().nullish(),
  amount: z.number().int().nullish(),
  currency: z.string().nullish(),
});
export type ChasePayment = z.infer<typeof paymentSchema>;

const errorSchema = z.object({
  responseStatus: z.string().nullish(),
  responseCode: z.string().nullish(),
  responseMessage: z.string().nullish(),
});

/** The payment (or capture, refund) in a body, or undefined when there is none or it is unreadable. */
export function paymentOf(body: string): ChasePayment | undefined {
  try {
    const r = paymentSchema.safeParse(JSON.parse(body));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

const CAPTURED = new Set(['CAPTURED', 'CLOSED', 'COMPLETED']);
/** States of a refund transaction that mean the money went back. */
const REFUNDED = new Set(['COMPLETED', 'CLOSED', 'CAPTURED', 'REFUNDED']);

/** Chase's human message, PAN-masked and bounded: it ends up in tables and DLQ attributes. */
const safe = (m: string | null | undefined, fallback: string) => maskPans(m ?? fallback).slice(0, 300);

type ErrorOutcome = Extract<AuthoriseOutcome, { kind: 'error' }>;

/** Why no token could be had, as the error code of the call that needed it. */
const TOKEN_CODES = {
  refused: 'PROCESSOR_UNAUTHORISED',
  unavailable: 'PROCESSOR_ERROR',
  unreachable: 'PROCESSOR_UNREACHABLE',
} as const;

export const chaseOutcomes = {
  /** "Nothing under this request-id": an empty 200 (Chase's "the payment status response returns as empty"). */
  isEmpty(body: string): boolean {
    const t = body.trim();
    if (t === '' || t === '{}' || t === '[]') return true;
    try {
      const v = JSON.parse(t) as unknown;
      return typeof v === 'object' && v !== null && !('transactionId' in v);
    } catch {
      return false;
    }
  },

  /** An answer that leaves the request still processing at Chase: a gateway timeout, or a PENDING transaction. */
  inFlight(res: HttpResponse): boolean {
    if (res.status === 504) return true;
    return (res.status === 200 || res.status === 201) && paymentOf(res.body)?.transactionState === 'PENDING';
  },

  isCaptured(p: ChasePayment): boolean {
    return CAPTURED.has(p.transactionState);
  },

  authorise(p: ChasePayment, req: AuthoriseRequest): AuthoriseOutcome {
    const processorRef = p.transactionId;
    switch (p.transactionState) {
      case 'AUTHORIZED':
      case 'CAPTURED':
      case 'CLOSED': {
        const amount = p.amount ?? req.amount;
        const currency = (p.currency ?? req.currency).toUpperCase();
        // Never report an approval for another amount than asked: the worker records it and voids it.
        if (amount !== req.amount || currency !== req.currency.toUpperCase()) {
          return {
            kind: 'error',
            retryable: false,
            code: 'AMOUNT_MISMATCH',
            message: `chase authorised ${amount} ${currency} for a request of ${req.amount} ${req.currency.toUpperCase()}`,
            processorRef,
          };
        }
        return { kind: 'approved', processorRef, amount, currency };
      }
      case 'DECLINED':
        return {
          kind: 'declined',
          processorRef,
          code: p.responseCode ?? 'DECLINED',
          message: safe(p.responseMessage, 'declined'),
        };
      case 'PENDING':
        return { kind: 'ambiguous', reason: 'chase reports the payment still processing', processorRef };
      case 'VOIDED':
        return {
          kind: 'error',
          retryable: false,
          code: 'VOIDED',
          message: 'chase reports the authorisation voided',
          processorRef,
        };
      default:
        return {
          kind: 'error',
          retryable: false,
          code: p.responseCode ?? 'UNEXPECTED_STATUS',
          message: safe(p.responseMessage, `payment in state ${p.transactionState}`),
          processorRef,
        };
    }
  },

  capture(p: ChasePayment, processorRef: string): CaptureOutcome {
    if (CAPTURED.has(p.transactionState)) return { kind: 'captured', processorRef };
    if (p.transactionState === 'PENDING') return { kind: 'submitted', processorRef };
    return {
      kind: 'error',
      retryable: false,
      code: p.responseCode ?? 'UNEXPECTED_STATUS',
      message: safe(p.responseMessage, `capture left the payment in state ${p.transactionState}`),
      processorRef,
    };
  },

  voided(p: ChasePayment): VoidOutcome {
    if (p.transactionState === 'VOIDED') return { kind: 'voided' };
    return {
      kind: 'error',
      retryable: false,
      code: 'NOT_VOIDABLE',
      message: `chase left the payment in state ${p.transactionState}`,
    };
  },

  /** A refund transaction as the answer to the refund. */
  refund(p: ChasePayment): RefundOutcome {
    const refundRef = p.transactionId;
    if (REFUNDED.has(p.transactionState)) return { kind: 'refunded', refundRef };
    if (p.transactionState === 'PENDING') return { kind: 'submitted', refundRef };
    return {
      kind: 'rejected',
      refundRef,
      code: p.responseCode ?? 'REFUND_REFUSED',
      message: safe(p.responseMessage, `refund in state ${p.transactionState}`),
    };
  },

  /**
   * A refund refused for good: 400/404/422 with Chase's code (INVALID_AMOUNT = more than is left,
   * INVALID_TRANSACTION_STATE = not captured, NOT_FOUND = no such payment). Undefined for answers
   * that are not Chase's decision on this refund (401/403/409/429/5xx, see {@link error}).
   */
  refundRefused(res: HttpResponse): Extract<RefundOutcome, { kind: 'rejected' }> | undefined {
    if (res.status !== 400 && res.status !== 404 && res.status !== 422) return undefined;
    const { code, message } = chaseOutcomes.error(res);
    return { kind: 'rejected', code, message };
  },

  /** A refund transaction found by a lookup. */
  refundLookup(p: ChasePayment, requested: number): RefundLookupOutcome {
    const refundRef = p.transactionId;
    const amount = p.amount ?? requested;
    if (REFUNDED.has(p.transactionState)) return { kind: 'refunded', refundRef, amount };
    if (p.transactionState === 'PENDING') return { kind: 'pending', refundRef, amount };
    return {
      kind: 'failed',
      refundRef,
      code: p.responseCode ?? p.transactionState,
      message: safe(p.responseMessage, `refund in state ${p.transactionState}`),
    };
  },

  lookup(p: ChasePayment): LookupOutcome {
    const processorRef = p.transactionId;
    const amount = p.amount ?? 0;
    const currency = (p.currency ?? '').toUpperCase();
    switch (p.transactionState) {
      case 'AUTHORIZED':
        return { kind: 'authorised', processorRef, amount, currency };
      case 'CAPTURED':
      case 'CLOSED':
      case 'COMPLETED':
        return { kind: 'captured', processorRef, amount, currency };
      case 'VOIDED':
        return { kind: 'voided', processorRef };
      case 'DECLINED':
      case 'ERROR':
        // Final and not authorised: nothing is held for this request.
        return {
          kind: 'declined',
          processorRef,
          code: p.responseCode ?? p.transactionState,
          message: safe(p.responseMessage, 'declined'),
        };
      default:
        return { kind: 'unknown', reason: `chase payment ${processorRef} in state ${p.transactionState}` };
    }
  },

  /** Statuses that are not business results. */
  error(res: HttpResponse): ErrorOutcome {
    const status = res.status;
    let e: z.infer<typeof errorSchema> | undefined;
    try {
      const r = errorSchema.safeParse(JSON.parse(res.body));
      e = r.success ? r.data : undefined;
    } catch {
      e = undefined;
    }
    const retryAfterMs = parseRetryAfterMs(res.headers['retry-after']);
    const message = e?.responseMessage ? safe(e.responseMessage, '') : `chase answered HTTP ${status}`;
    const code = e?.responseCode ?? undefined;
    if (status === 429) return { kind: 'error', retryable: true, code: 'RATE_LIMITED', message, retryAfterMs };
    // 409: a request with this request-id is being processed; asking again later is exactly right.
    if (status === 409) return { kind: 'error', retryable: true, code: code ?? 'REQUEST_IN_PROGRESS', message, retryAfterMs };
    if (status >= 500) return { kind: 'error', retryable: true, code: 'PROCESSOR_ERROR', message, retryAfterMs };
    // A 401 that survived a token refresh, or a 403 for this merchant-id: a deployment fault that a
    // credentials fix (and bounded retries) outlasts.
    if (status === 401 || status === 403)
      return {
        kind: 'error',
        retryable: true,
        code: 'PROCESSOR_UNAUTHORISED',
        message: `chase refused the credentials for this merchant (${status})`,
      };
    return { kind: 'error', retryable: false, code: code ?? `HTTP_${status}`, message };
  },

  /** No answer: not sent (retry is safe), ambiguous (look it up), or no token (nothing sent: retry later). */
  transport(
    sent:
      | { kind: 'not_sent' | 'ambiguous'; reason: string }
      | { kind: 'no_token'; reason: string; why: 'unreachable' | 'refused' | 'unavailable' },
  ): ErrorOutcome | { kind: 'ambiguous'; reason: string } {
    if (sent.kind === 'ambiguous') return { kind: 'ambiguous', reason: sent.reason };
    const code = sent.kind !== 'no_token' ? 'PROCESSOR_UNREACHABLE' : TOKEN_CODES[sent.why];
    return { kind: 'error', retryable: true, code, message: sent.reason };
  },
};
