/** Keys derived from a refund request: the same on every attempt and every redelivery of it. */

/**
 * The processor idempotency key of a refund (Stripe Idempotency-Key, Worldpay's refund reference,
 * the source of Chase's request-id). Stored on the refund when it is created, so a later request
 * for the same refundId follows the first request's key, never a new one.
 */
export const refundIdempotencyKey = (refundRequestId: string): string => `payfleet-refund-${refundRequestId}`;

/** The request's work item, kept on the refund row. */
export const refundWorkItemKey = (refundRequestId: string): string => `refund#${refundRequestId}`;

/** The row lease of a refund: one request at a time per refundId. */
export const refundLeaseKey = (refundId: string): string => `refund#${refundId}`;
