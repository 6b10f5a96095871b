/** Keys derived from an authorisation request: the same on every attempt and every redelivery of it. */

/** The processor idempotency key of an authorisation (Stripe Idempotency-Key, Worldpay orderCode). */
export const authIdempotencyKey = (authRequestId: string): string => `payfleet-auth-${authRequestId}`;

/** The processor idempotency key of the void of that authorisation. */
export const voidIdempotencyKey = (authRequestId: string): string => `payfleet-void-${authRequestId}`;

/** The request's work item in the idempotency table. */
export const authWorkItemKey = (authRequestId: string): string => `auth#${authRequestId}`;
