/**
 * The processor port: one interface every card processor connector implements (sandbox, stripe,
 * worldpay, chase). Connectors speak HTTP/XML to the processor; callers (auth and capture
 * workers) only ever see these types.
 *
 * Outcomes are values, not exceptions: the worker must treat an ambiguous outcome differently
 * from an error, and a decline is a normal business result.
 *
 *   ambiguous: the request went out and no answer came back (read timeout, reset after send).
 *   The money may have moved. The worker never sends a fresh authorisation; it calls `lookup`
 *   (or repeats the same request under the same idempotency key, which processors replay) first.
 */
import type { SensitiveCard } from './sensitive-card.js';

export type ProcessorName = 'sandbox' | 'stripe' | 'worldpay' | 'chase';

export interface AuthoriseRequest {
  readonly chargeId: string;
  readonly gatewayAccountId: string;
  /** Minor units, > 0. */
  readonly amount: number;
  /** ISO 4217, upper case. */
  readonly currency: string;
  readonly reference: string;
  readonly description: string;
  /**
   * Derived from `authRequestId` by the worker and reused on every retry of that request
   * (Stripe `Idempotency-Key`, Worldpay `orderCode`, Chase `request-id` derived from it).
   */
  readonly idempotencyKey: string;
  readonly card: SensitiveCard;
}

export interface CaptureRequest {
  readonly chargeId: string;
  /** The processor's reference from the authorisation (PaymentIntent id, Worldpay orderCode). */
  readonly processorRef: string;
  readonly amount: number;
  readonly currency: string;
  /** Derived from the charge and attempt-independent, so a retried capture is de-duplicated. */
  readonly idempotencyKey: string;
}

export interface LookupRequest {
  readonly chargeId: string;
  /** Known after an approved authorisation; absent when resolving an ambiguous authorise. */
  readonly processorRef?: string;
  /** The idempotency key of the authorise being resolved. */
  readonly idempotencyKey: string;
  readonly amount: number;
  readonly currency: string;
  /**
   * The authorise request being resolved (card freshly decrypted), when the caller can rebuild it.
   * Processors whose lookup is an idempotent replay need it (Stripe compares every parameter of a
   * replay with the first request); connectors that look up by reference ignore it.
   */
  readonly original?: AuthoriseRequest;
}

/** Common to every outcome: what the processor said, safe to store (no card data). */
interface OutcomeBase {
  /** Processor-side reference, when one exists. */
  readonly processorRef?: string;
}

export type AuthoriseOutcome =
  | (OutcomeBase & { readonly kind: 'approved'; readonly processorRef: string; readonly amount: number; readonly currency: string })
  | (OutcomeBase & { readonly kind: 'declined'; readonly code: string; readonly message: string })
  | (OutcomeBase & { readonly kind: 'error'; readonly retryable: boolean; readonly code: string; readonly message: string; readonly retryAfterMs?: number })
  | (OutcomeBase & { readonly kind: 'ambiguous'; readonly reason: string });

export type CaptureOutcome =
  | (OutcomeBase & { readonly kind: 'captured' })
  /** Accepted; the processor confirms asynchronously (Worldpay captureReceived). */
  | (OutcomeBase & { readonly kind: 'submitted' })
  | (OutcomeBase & { readonly kind: 'error'; readonly retryable: boolean; readonly code: string; readonly message: string; readonly retryAfterMs?: number })
  | (OutcomeBase & { readonly kind: 'ambiguous'; readonly reason: string });

/** What a lookup found at the processor for an authorisation. */
export type LookupOutcome =
  | { readonly kind: 'not_found' }
  | { readonly kind: 'authorised'; readonly processorRef: string; readonly amount: number; readonly currency: string }
  | { readonly kind: 'declined'; readonly processorRef?: string; readonly code: string; readonly message: string }
  | { readonly kind: 'captured'; readonly processorRef: string; readonly amount: number; readonly currency: string }
  | { readonly kind: 'capture_submitted'; readonly processorRef: string }
  | { readonly kind: 'voided'; readonly processorRef: string }
  | { readonly kind: 'unknown'; readonly reason: string };

export type VoidOutcome =
  | { readonly kind: 'voided' }
  | { readonly kind: 'error'; readonly retryable: boolean; readonly code: string; readonly message: string }
  | { readonly kind: 'ambiguous'; readonly reason: string };

/**
 * A card processor: authorise, capture, void and look up payments, and refund them ({@link RefundPort},
 * declared below), so the registry hands every worker one connector per processor.
 */
export interface ProcessorConnector extends RefundPort {
  readonly name: ProcessorName;
  authorise(req: AuthoriseRequest, signal?: AbortSignal): Promise<AuthoriseOutcome>;
  capture(req: CaptureRequest, signal?: AbortSignal): Promise<CaptureOutcome>;
  void(req: { chargeId: string; processorRef: string; idempotencyKey: string }, signal?: AbortSignal): Promise<VoidOutcome>;
  lookup(req: LookupRequest, signal?: AbortSignal): Promise<LookupOutcome>;
}

/**
 * Refunds (the refund worker). Every connector implements this port as part of ProcessorConnector.
 * The idempotency key is derived from `refundRequestId` and reused on every retry of that request
 * (Stripe `Idempotency-Key`, Worldpay's refund `reference`, Chase `request-id` derived from it), so
 * a resend after a lost answer is de-duplicated by the processor — but, as for authorisations, an
 * ambiguous answer is looked up first where the processor offers a lookup.
 */
export interface RefundRequest {
  readonly chargeId: string;
  /** payfleet's id of the refund (upstream's `refundId`). */
  readonly refundId: string;
  /** The charge's processor reference (PaymentIntent id, Worldpay orderCode, Chase payment id). */
  readonly processorRef: string;
  /** Minor units, > 0, at most what is left to refund of the captured amount. */
  readonly amount: number;
  /** The charge's currency (ISO 4217, upper case). */
  readonly currency: string;
  readonly idempotencyKey: string;
}

export type RefundOutcome =
  /** The processor has refunded (Stripe `succeeded`, Chase `SUCCESS`). */
  | { readonly kind: 'refunded'; readonly refundRef: string }
  /** Accepted; the processor confirms later (Stripe `pending`, Worldpay `refundReceived`). */
  | { readonly kind: 'submitted'; readonly refundRef?: string }
  /** Refused for good (e.g. more than is left, charge disputed): the refund ends REFUND_ERROR. */
  | { readonly kind: 'rejected'; readonly code: string; readonly message: string; readonly refundRef?: string }
  | { readonly kind: 'error'; readonly retryable: boolean; readonly code: string; readonly message: string; readonly retryAfterMs?: number }
  /** The request went out and no answer came back: the money may be moving. Look it up first. */
  | { readonly kind: 'ambiguous'; readonly reason: string };

export interface RefundLookupRequest extends RefundRequest {
  /** Known once the processor answered the refund (Stripe `re_…`, Chase refund id). */
  readonly refundRef?: string;
}

/** What a lookup found at the processor for one refund request. */
export type RefundLookupOutcome =
  | { readonly kind: 'not_found' }
  | { readonly kind: 'refunded'; readonly refundRef: string; readonly amount: number }
  | { readonly kind: 'pending'; readonly refundRef?: string; readonly amount: number }
  | { readonly kind: 'failed'; readonly refundRef?: string; readonly code: string; readonly message: string }
  /** Not conclusive yet (e.g. Chase's 70-second window, a lookup that itself failed). */
  | { readonly kind: 'unknown'; readonly reason: string };

export interface RefundPort {
  refund(req: RefundRequest, signal?: AbortSignal): Promise<RefundOutcome>;
  lookupRefund(req: RefundLookupRequest, signal?: AbortSignal): Promise<RefundLookupOutcome>;
}
