/**
 * The one place a charge transition becomes a commit. Every write of a charge goes through here:
 *
 *   createCharge(fields, { at })               (new) ─PAYMENT_CREATED─▶ CREATED
 *   moveCharge(charge, to, { at, details, fields })
 *       validates the edge against the graph (./charge.ts; IllegalTransitionError otherwise),
 *       appends { to, at } to the history, takes the edge's ledger event (with `details`),
 *       keeps the awaiting-capture index in step with the status, and builds the EntityChange
 *   amendCharge(charge, { at, fields })         same status, no event, no history (a void FAILED)
 *
 * Each returns a {@link ChargeMove}: `change` goes to the work context's commit()/complete(), and
 * `after` is the charge as that commit leaves it (version + 1, eventSeq + events). A move can be
 * continued before it is committed (`moveCharge(createCharge(...), 'AUTHORISATION_READY', …)`): one
 * commit then creates the charge, walks both edges and emits every event on the way.
 *
 * Time is the caller's `at` (from its injected clock): nothing here reads the clock.
 */
import type { EntityChange, NewEvent } from '../core/ports.js';
import {
  AWAITING_CAPTURE,
  AWAITING_CAPTURE_STATUSES,
  CREATION_EVENT,
  eventFor,
  type Charge,
  type ChargeFields,
  type ChargeStatus,
} from './charge.js';

/** A charge transition, ready to commit. */
export interface ChargeMove {
  /** The charge as read, or undefined when this move creates it. */
  readonly before: Charge | undefined;
  /** The charge once `change` is committed. */
  readonly after: Charge;
  /** Ledger events of the edges walked, in order. */
  readonly events: readonly NewEvent[];
  /** The commit part: versioned on `before`, events numbered from `before`'s eventSeq. */
  readonly change: EntityChange;
}

export interface MoveOptions {
  /** When it happened (ISO-8601), from the caller's clock. */
  readonly at: string;
  /** Details of the edge's ledger event (ignored by edges without one). @default {} */
  readonly details?: Record<string, unknown>;
  /** Fields the new state carries (processorRef, errorCode, authorisationVoid …). */
  readonly fields?: ChargeFields;
}

/** What a new charge is made of: the request's fields. */
export type NewCharge = Pick<
  Charge,
  'chargeId' | 'gatewayAccountId' | 'processor' | 'amount' | 'currency' | 'reference' | 'description' | 'live'
>;

/** A new charge, CREATED, with its PAYMENT_CREATED event (`requestedAt`: when the request was made). */
export function createCharge(fields: NewCharge, o: { readonly at: string; readonly requestedAt: string }): ChargeMove {
  const created: Charge = {
    ...fields,
    status: 'CREATED',
    version: 0,
    eventSeq: 0,
    createdAt: o.at,
    updatedAt: o.at,
    requestedAt: o.requestedAt,
    history: [{ status: 'CREATED', at: o.at }],
  };
  return build(undefined, created, [creationEvent(created)]);
}

/**
 * A new charge as write 1 of its authorisation creates it on the row (once()'s `row.create`):
 * already AUTHORISATION_READY (CREATED and READY walked at `at`), version 1, and `eventSeq` 0 —
 * its PAYMENT_CREATED is owed, and the first move out of it emits it ahead of its own event
 * (in write 2, with the outcome), so the ledger still sees PAYMENT_CREATED as sequence 1.
 */
export function openCharge(fields: NewCharge, o: { readonly at: string; readonly requestedAt: string; readonly fields?: ChargeFields }): Charge {
  return {
    ...fields,
    ...o.fields,
    status: 'AUTHORISATION_READY',
    version: 1,
    eventSeq: 0,
    createdAt: o.at,
    updatedAt: o.at,
    requestedAt: o.requestedAt,
    history: [
      { status: 'CREATED', at: o.at },
      { status: 'AUTHORISATION_READY', at: o.at },
    ],
  };
}

/** The entity attributes of {@link openCharge}'s charge, as once()'s `row.create` takes them. */
export function chargeRow(charge: Charge): Record<string, unknown> {
  const { chargeId: _id, ...rest } = charge;
  return rest as Record<string, unknown>;
}

/** PAYMENT_CREATED of a charge. */
function creationEvent(charge: Charge): NewEvent {
  return {
    eventType: CREATION_EVENT,
    details: {
      amount: charge.amount,
      currency: charge.currency,
      reference: charge.reference,
      description: charge.description,
      processor: charge.processor,
      requested_at: charge.requestedAt ?? charge.createdAt,
    },
  };
}

/**
 * Move `from` (a charge as read, or a move not committed yet) along the edge to `to`. Throws
 * IllegalTransitionError for an edge the graph does not have: a bug, never data.
 */
export function moveCharge(from: Charge | ChargeMove, to: ChargeStatus, o: MoveOptions): ChargeMove {
  const [before, state, events] = start(from);
  const eventType = eventFor(state.status, to);
  const next: Charge = {
    ...state,
    ...o.fields,
    status: to,
    updatedAt: o.at,
    history: [...state.history, { status: to, at: o.at }],
  };
  return build(before, next, eventType ? [...events, { eventType, details: o.details ?? {} }] : events, o.at);
}

/** Record `fields` on the charge without moving it: no event, no history entry. */
export function amendCharge(from: Charge | ChargeMove, o: { readonly at: string; readonly fields: ChargeFields }): ChargeMove {
  const [before, state, events] = start(from);
  return build(before, { ...state, ...o.fields, updatedAt: o.at }, events, o.at);
}

function start(from: Charge | ChargeMove): [Charge | undefined, Charge, readonly NewEvent[]] {
  if ('change' in from) return [from.before, from.after, from.events];
  // Opened by write 1 without its PAYMENT_CREATED (openCharge): the first move emits it first.
  return [from, from, from.eventSeq === 0 ? [creationEvent(from)] : []];
}

/**
 * The awaiting-capture index follows the status: set while the charge waits to be captured (its
 * sort key, the approval time, kept across retries), removed when it leaves those states.
 */
function build(before: Charge | undefined, next: Charge, events: readonly NewEvent[], at = next.updatedAt): ChargeMove {
  const awaiting = AWAITING_CAPTURE_STATUSES.has(next.status);
  const { captureQueue: _q, captureDueAt, ...rest } = next;
  const indexed: Charge = awaiting ? { ...rest, captureQueue: AWAITING_CAPTURE, captureDueAt: captureDueAt ?? at } : rest;
  const after: Charge = { ...indexed, version: (before?.version ?? 0) + 1, eventSeq: (before?.eventSeq ?? 0) + events.length };
  const { version: _v, eventSeq: _e, chargeId, ...set } = after;
  const leavesIndex = !awaiting && before?.captureQueue !== undefined;
  const change: EntityChange = {
    table: 'charges',
    key: { chargeId },
    expectedVersion: before?.version ?? 0,
    set,
    ...(leavesIndex ? { remove: ['captureQueue', 'captureDueAt'] } : {}),
    resource: { type: 'payment', id: chargeId, gatewayAccountId: after.gatewayAccountId, live: after.live },
    currentEventSeq: before?.eventSeq ?? 0,
    events,
  };
  return { before, after, events, change };
}
