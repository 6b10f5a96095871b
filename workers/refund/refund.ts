/**
 * A refund: its own resource (refundId), child of its charge (docs/contract.md §3). Only the edges
 * below exist; each names the ledger event it emits (resource_type `refund`, parent = the charge).
 *
 *   (reserved row) ─REFUND_CREATED─▶ REFUND_CREATED ─REFUND_SUBMITTED─▶ REFUND_SUBMITTED ─┬─REFUND_SUCCEEDED─▶ REFUNDED
 *        one commit, with the charge's refundedAmount + amount, BEFORE the processor call ─┘└─REFUND_ERROR─────▶ REFUND_ERROR
 *                                                                                          (amount given back to the charge)
 *
 * REFUND_CREATED and REFUND_SUBMITTED are always committed together: the refund exists only once
 * its amount is taken from the charge and its idempotency key is on it, so a refund found
 * REFUND_SUBMITTED means "a request may have reached the processor: look it up first".
 *
 * The row: write 1 of a request's first attempt creates a bare *reservation* (no status, no
 * chargeId) that carries only the row lease and the request's work item. It becomes a refund with
 * the commit above; until then it is not a refund (the CLI, the by-charge index and the sum of a
 * charge's refunds ignore it). A request refused before that commit (an over-refund, an uncaptured
 * charge) leaves its reservation to the table's TTL: the worker deletes nothing (its role has no
 * DeleteItem), and the commit that makes a reservation a refund removes the `ttl`.
 */
import type { EntityChange, NewEvent } from '../../shared/core/ports.js';
import { ttlSeconds } from '../../shared/core/clock.js';
import type { Charge } from '../../shared/charges/charge.js';

export const REFUND_STATUSES = ['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUNDED', 'REFUND_ERROR'] as const;
export type RefundStatus = (typeof REFUND_STATUSES)[number];
export type RefundEventType = 'REFUND_CREATED' | 'REFUND_SUBMITTED' | 'REFUND_SUCCEEDED' | 'REFUND_ERROR';

const EDGES: Readonly<Partial<Record<RefundStatus, Readonly<Partial<Record<RefundStatus, RefundEventType>>>>>> = {
  REFUND_CREATED: { REFUND_SUBMITTED: 'REFUND_SUBMITTED' },
  REFUND_SUBMITTED: { REFUNDED: 'REFUND_SUCCEEDED', REFUND_ERROR: 'REFUND_ERROR' },
};

/** Statuses whose amount counts against the charge (all but REFUND_ERROR). */
export const HOLDS_AMOUNT: ReadonlySet<RefundStatus> = new Set(['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUNDED']);

export class IllegalRefundTransitionError extends Error {
  constructor(
    readonly from: RefundStatus,
    readonly to: RefundStatus,
  ) {
    super(`illegal refund transition ${from} -> ${to}`);
    this.name = 'IllegalRefundTransitionError';
  }
}

/** The refund as stored in the refunds table (no card data). */
export interface Refund {
  readonly refundId: string;
  readonly chargeId: string;
  /** The request that created the refund (a later request for the same refundId follows it). */
  readonly refundRequestId: string;
  readonly amount: number;
  /** The charge's. */
  readonly currency: string;
  readonly processor: string;
  readonly gatewayAccountId: string;
  readonly live: boolean;
  readonly reference?: string;
  readonly requestedAt: string;
  readonly status: RefundStatus;
  readonly version: number;
  readonly eventSeq: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly history: readonly { readonly status: RefundStatus; readonly at: string }[];
  /** Derived from refundRequestId; reused on every retry and lookup. */
  readonly idempotencyKey: string;
  /** The charge's processor reference, as the refund was made against it. */
  readonly chargeProcessorRef: string;
  /** The processor's id of the refund, once it answered with one. */
  readonly refundRef?: string;
  /** REFUND_ERROR: the dead-letter code (PROCESSOR_REJECTED) and the processor's own code and message. */
  readonly errorCode?: string;
  readonly processorCode?: string;
  readonly errorMessage?: string;
}

/** The refund on a row as write 1 read it, or undefined for a bare reservation (not a refund yet). */
export function refundOf(entity: Record<string, unknown> | undefined): Refund | undefined {
  return entity && typeof entity.status === 'string' && typeof entity.chargeId === 'string'
    ? (entity as unknown as Refund)
    : undefined;
}

/** How long a reservation that never became a refund is kept (then DynamoDB's TTL removes it). */
export const RESERVATION_TTL_SEC = 7 * 24 * 3600;

/** What write 1 creates when the refund row is absent: the reservation (version 1, no events yet, a TTL). */
export function reservationRow(atMs: number): Record<string, unknown> {
  return { version: 1, eventSeq: 0, createdAt: new Date(atMs).toISOString(), ttl: ttlSeconds(atMs, RESERVATION_TTL_SEC) };
}

/** The charge's totals as a refund's events report them. */
export function chargeTotals(charge: Pick<Charge, 'amount' | 'refundedAmount'>, refundedAmount = charge.refundedAmount ?? 0) {
  return { charge_refunded_amount: refundedAmount, charge_refund_available: charge.amount - refundedAmount };
}

export interface NewRefund {
  readonly refundId: string;
  readonly refundRequestId: string;
  readonly amount: number;
  readonly reference?: string;
  readonly requestedAt: string;
  readonly idempotencyKey: string;
}

/**
 * The one commit that makes a refund: the reservation (version `reservedVersion`) becomes a refund
 * REFUND_CREATED -> REFUND_SUBMITTED with both events, and the charge's refundedAmount grows by the
 * amount — under the charge's version as read, so the commit applies only while the charge is
 * exactly what the caller checked (refundable, `refundedAmount + amount <= amount`).
 */
export function createRefund(
  charge: Charge,
  r: NewRefund,
  o: { readonly at: string; readonly createdAt: string; readonly reservedVersion: number },
) {
  const refundedAmount = (charge.refundedAmount ?? 0) + r.amount;
  if (refundedAmount > charge.amount)
    throw new RangeError(`refund ${r.refundId}: ${refundedAmount} would exceed the captured ${charge.amount}`);
  const refund: Refund = {
    refundId: r.refundId,
    chargeId: charge.chargeId,
    refundRequestId: r.refundRequestId,
    amount: r.amount,
    currency: charge.currency,
    processor: charge.processor,
    gatewayAccountId: charge.gatewayAccountId,
    live: charge.live,
    ...(r.reference !== undefined ? { reference: r.reference } : {}),
    requestedAt: r.requestedAt,
    status: 'REFUND_SUBMITTED',
    version: o.reservedVersion + 1,
    eventSeq: 2,
    createdAt: o.createdAt,
    updatedAt: o.at,
    history: [
      { status: 'REFUND_CREATED', at: o.at },
      { status: 'REFUND_SUBMITTED', at: o.at },
    ],
    idempotencyKey: r.idempotencyKey,
    chargeProcessorRef: charge.processorRef ?? '',
  };
  const events: NewEvent[] = [
    {
      eventType: 'REFUND_CREATED',
      details: {
        amount: r.amount,
        currency: charge.currency,
        ...(r.reference !== undefined ? { reference: r.reference } : {}),
        refund_request_id: r.refundRequestId,
        requested_at: r.requestedAt,
        processor: charge.processor,
      },
    },
    { eventType: 'REFUND_SUBMITTED', details: { amount: r.amount, ...chargeTotals(charge, refundedAmount) } },
  ];
  // The reservation's TTL goes: from now on the row is a refund, kept for good.
  const created: EntityChange = { ...refundChange(refund, o.reservedVersion, 0, events), remove: ['ttl'] };
  return { refund, refundedAmount, changes: [created, chargeChange(charge, refundedAmount, o.at)] as const };
}

/** Move a refund along an edge (its event with `details`); `fields` are recorded with it. */
export function moveRefund(
  refund: Refund,
  to: RefundStatus,
  o: {
    readonly at: string;
    readonly details?: Record<string, unknown>;
    readonly fields?: Partial<Pick<Refund, 'refundRef' | 'errorCode' | 'processorCode' | 'errorMessage'>>;
  },
): { readonly after: Refund; readonly change: EntityChange } {
  const eventType = EDGES[refund.status]?.[to];
  if (!eventType) throw new IllegalRefundTransitionError(refund.status, to);
  const after: Refund = {
    ...refund,
    ...o.fields,
    status: to,
    updatedAt: o.at,
    history: [...refund.history, { status: to, at: o.at }],
    version: refund.version + 1,
    eventSeq: refund.eventSeq + 1,
  };
  return { after, change: refundChange(after, refund.version, refund.eventSeq, [{ eventType, details: o.details ?? {} }]) };
}

/** Record the processor's refund id on a refund without moving it (no event). */
export function amendRefund(refund: Refund, o: { readonly at: string; readonly refundRef: string }): EntityChange {
  return refundChange({ ...refund, refundRef: o.refundRef, updatedAt: o.at }, refund.version, refund.eventSeq, []);
}

/** The charge's refundedAmount set to `refundedAmount`, under the charge's version as read. */
export function chargeChange(charge: Charge, refundedAmount: number, at: string): EntityChange {
  return {
    table: 'charges',
    key: { chargeId: charge.chargeId },
    expectedVersion: charge.version,
    set: { refundedAmount, updatedAt: at },
  };
}

function refundChange(
  refund: Refund,
  expectedVersion: number,
  currentEventSeq: number,
  events: readonly NewEvent[],
): EntityChange {
  const { refundId, version: _v, eventSeq: _e, ...set } = refund;
  return {
    table: 'refunds',
    key: { refundId },
    expectedVersion,
    set,
    resource: {
      type: 'refund',
      id: refundId,
      parentId: refund.chargeId,
      gatewayAccountId: refund.gatewayAccountId,
      live: refund.live,
    },
    currentEventSeq,
    events,
  };
}
