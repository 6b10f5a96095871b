/**
 * The charge state graph (docs/contract.md §3), shared by the auth and capture workers. Only the edges
 * below are allowed; each names the ledger event it emits, or `null` for internal lock states.
 *
 *   (new) ──PAYMENT_CREATED──▶ CREATED ──▶ AUTHORISATION_READY ─┬─AUTHORISATION_SUCCEEDED─▶ AUTHORISATION_SUCCESS
 *                                            (written before     ├─AUTHORISATION_REJECTED──▶ AUTHORISATION_REJECTED
 *                                             the processor call)└─AUTHORISATION_ERROR─────▶ AUTHORISATION_ERROR
 *
 *   AUTHORISATION_SUCCESS ──USER_APPROVED_FOR_CAPTURE──▶ CAPTURE_APPROVED ──▶ CAPTURE_READY ─┬─CAPTURE_CONFIRMED─▶ CAPTURED
 *   CAPTURE_APPROVED_RETRY ──────────────────────────────────────────────────▶ CAPTURE_READY ├─CAPTURE_SUBMITTED─▶ CAPTURE_SUBMITTED ─CAPTURE_CONFIRMED─▶ CAPTURED
 *                                                                                            ├──────────────────▶ CAPTURE_APPROVED_RETRY
 *                                                                                            └─CAPTURE_ERRORED──▶ CAPTURE_ERROR
 *   CAPTURE_APPROVED_RETRY ──CAPTURE_ABANDONED_AFTER_TOO_MANY_RETRIES──▶ CAPTURE_ERROR
 *
 *   AUTHORISATION_ERROR ──CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR──▶ AUTHORISATION_ERROR_CANCELLED
 *     (an authorisation the processor holds but the fleet will not use — AMOUNT_MISMATCH — voided)
 *
 * AUTHORISATION_READY and CAPTURE_READY are committed *before* the processor is called: a charge
 * found in either state after a crash means "a request may have gone out; look it up first".
 * The same holds for a void: AUTHORISATION_ERROR is committed with `authorisationVoid.state`
 * PENDING before the processor is asked to void, so whoever finds a PENDING void finishes it.
 *
 * A transition becomes a commit in one place, ./transition.ts (`moveCharge`): it checks the edge
 * here, appends the history and takes the edge's event.
 */
export const CHARGE_STATUSES = [
  'CREATED',
  'AUTHORISATION_READY',
  'AUTHORISATION_SUCCESS',
  'AUTHORISATION_REJECTED',
  'AUTHORISATION_ERROR',
  'AUTHORISATION_ERROR_CANCELLED',
  'CAPTURE_APPROVED',
  'CAPTURE_APPROVED_RETRY',
  'CAPTURE_READY',
  'CAPTURE_SUBMITTED',
  'CAPTURED',
  'CAPTURE_ERROR',
] as const;
export type ChargeStatus = (typeof CHARGE_STATUSES)[number];

export type ChargeEventType =
  | 'PAYMENT_CREATED'
  | 'AUTHORISATION_SUCCEEDED'
  | 'AUTHORISATION_REJECTED'
  | 'AUTHORISATION_ERROR'
  | 'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR'
  | 'USER_APPROVED_FOR_CAPTURE'
  | 'CAPTURE_SUBMITTED'
  | 'CAPTURE_CONFIRMED'
  | 'CAPTURE_ERRORED'
  | 'CAPTURE_ABANDONED_AFTER_TOO_MANY_RETRIES';

/** from -> to -> event emitted (null: internal state, no event). */
const EDGES: Readonly<Partial<Record<ChargeStatus, Readonly<Partial<Record<ChargeStatus, ChargeEventType | null>>>>>> = {
  CREATED: { AUTHORISATION_READY: null },
  AUTHORISATION_READY: {
    AUTHORISATION_SUCCESS: 'AUTHORISATION_SUCCEEDED',
    AUTHORISATION_REJECTED: 'AUTHORISATION_REJECTED',
    AUTHORISATION_ERROR: 'AUTHORISATION_ERROR',
  },
  // The one edge out of a final error: the processor released an authorisation we will not use.
  AUTHORISATION_ERROR: { AUTHORISATION_ERROR_CANCELLED: 'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR' },
  AUTHORISATION_SUCCESS: { CAPTURE_APPROVED: 'USER_APPROVED_FOR_CAPTURE' },
  CAPTURE_APPROVED: { CAPTURE_READY: null },
  CAPTURE_APPROVED_RETRY: { CAPTURE_READY: null, CAPTURE_ERROR: 'CAPTURE_ABANDONED_AFTER_TOO_MANY_RETRIES' },
  CAPTURE_READY: {
    CAPTURED: 'CAPTURE_CONFIRMED',
    CAPTURE_SUBMITTED: 'CAPTURE_SUBMITTED',
    CAPTURE_APPROVED_RETRY: null,
    CAPTURE_ERROR: 'CAPTURE_ERRORED',
  },
  CAPTURE_SUBMITTED: { CAPTURED: 'CAPTURE_CONFIRMED' },
};

/** The event of creating a charge (the edge from "nothing" to CREATED). */
export const CREATION_EVENT: ChargeEventType = 'PAYMENT_CREATED';

/**
 * Statuses no request moves on. AUTHORISATION_ERROR is one although it has an edge: only the
 * worker that recorded it (or the redelivery of that same request) follows it, to void the
 * authorisation it recorded as PENDING; no new request can.
 */
export const TERMINAL_STATUSES: ReadonlySet<ChargeStatus> = new Set([
  'AUTHORISATION_REJECTED',
  'AUTHORISATION_ERROR',
  'AUTHORISATION_ERROR_CANCELLED',
  'CAPTURED',
  'CAPTURE_ERROR',
]);

/**
 * Final statuses that mean "this went wrong". A request (a redelivery, a redrive, a late duplicate)
 * that meets its charge in one of them after the failure was dead-lettered is dead-lettered again
 * with the same code, never acknowledged: acknowledging would delete the only letter of an open
 * money question and clear the DLQ alarm.
 */
export const FINAL_ERROR_STATUSES: ReadonlySet<ChargeStatus> = new Set(['AUTHORISATION_ERROR', 'AUTHORISATION_ERROR_CANCELLED', 'CAPTURE_ERROR']);

/**
 * The code a request meeting this charge is dead-lettered with again, or undefined when the charge
 * is not in a final error that was dead-lettered. Every such failure records `errorCode`; the one
 * final error without it is a capture abandoned after the maximum attempts, whose message was
 * acknowledged by design (its signal is the CAPTURE_ABANDONED alert and ledger event).
 */
export function deadLetterCodeOf(charge: Pick<Charge, 'status' | 'errorCode'>): string | undefined {
  return FINAL_ERROR_STATUSES.has(charge.status) ? charge.errorCode : undefined;
}

export class IllegalTransitionError extends Error {
  constructor(
    readonly from: ChargeStatus,
    readonly to: ChargeStatus,
  ) {
    super(`illegal charge transition ${from} -> ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

export function canTransition(from: ChargeStatus, to: ChargeStatus): boolean {
  return EDGES[from]?.[to] !== undefined;
}

/** The event an edge emits (null for internal states). Throws on an edge the graph does not have. */
export function eventFor(from: ChargeStatus, to: ChargeStatus): ChargeEventType | null {
  const e = EDGES[from]?.[to];
  if (e === undefined) throw new IllegalTransitionError(from, to);
  return e;
}

/**
 * Walk a path of statuses (e.g. CREATED -> AUTHORISATION_READY) and return the events in order.
 * A commit that moves a charge several steps at once emits every event on the way.
 */
export function eventsAlong(path: readonly ChargeStatus[]): ChargeEventType[] {
  const events: ChargeEventType[] = [];
  for (let i = 1; i < path.length; i++) {
    const e = eventFor(path[i - 1]!, path[i]!);
    if (e) events.push(e);
  }
  return events;
}

/** Every edge, for docs, tests and `render-state-graph`-style output. */
export function allEdges(): { from: ChargeStatus; to: ChargeStatus; event: ChargeEventType | null }[] {
  const out: { from: ChargeStatus; to: ChargeStatus; event: ChargeEventType | null }[] = [];
  for (const [from, tos] of Object.entries(EDGES)) {
    for (const [to, event] of Object.entries(tos ?? {})) out.push({ from: from as ChargeStatus, to: to as ChargeStatus, event: event ?? null });
  }
  return out;
}

/** One entry of a charge's own history (kept on the charge item; capture attempts are counted from it). */
export interface ChargeHistoryEntry {
  readonly status: ChargeStatus;
  readonly at: string;
}

/**
 * The charge as stored in the charges table: every attribute any worker writes. No card data: only
 * last4/brand for display. Written only through ./transition.ts (status, history, the capture index,
 * version and eventSeq are that module's; the rest are {@link ChargeFields}).
 */
export interface Charge {
  readonly chargeId: string;
  readonly gatewayAccountId: string;
  readonly processor: string;
  readonly amount: number;
  readonly currency: string;
  readonly reference: string;
  readonly description: string;
  readonly status: ChargeStatus;
  readonly live: boolean;
  /** Written by the commit: expected + 1 on every change. */
  readonly version: number;
  /** Ledger events emitted so far: the next event's sequence is eventSeq + 1. */
  readonly eventSeq: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** When the authorisation was requested (PAYMENT_CREATED's requested_at, emitted with the first outcome). */
  readonly requestedAt?: string;
  readonly history: readonly ChargeHistoryEntry[];
  /** The request that authorised (or is authorising) the charge. */
  readonly authRequestId?: string;
  /** Derived from authRequestId; reused on every retry of that authorisation. */
  readonly authIdempotencyKey?: string;
  /** The processor's reference from any answer that carried one (approval, decline, error, mismatch). */
  readonly processorRef?: string;
  readonly cardLast4?: string;
  readonly cardBrand?: string;
  /** AUTHORISATION_REJECTED: the processor's decline code. */
  readonly declineCode?: string;
  /** A final error that was dead-lettered: its code (absent for a capture abandoned after the maximum attempts). */
  readonly errorCode?: string;
  /** The release of an authorisation the fleet will not use (auth worker, AMOUNT_MISMATCH). */
  readonly authorisationVoid?: AuthorisationVoid;
  /** The capture request that approved the capture (AUTHORISATION_SUCCESS -> CAPTURE_APPROVED). */
  readonly captureRequestId?: string;
  /**
   * The sparse `awaiting-capture` index (workers/capture/gauges.ts): {@link AWAITING_CAPTURE} exactly
   * while the status is one of {@link AWAITING_CAPTURE_STATUSES}, absent otherwise.
   */
  readonly captureQueue?: typeof AWAITING_CAPTURE;
  /** When the charge was approved for capture (the index's sort key); kept across retries. */
  readonly captureDueAt?: string;
  /**
   * Minor units of the charge's refunds not in REFUND_ERROR (submitted or refunded), written only by
   * the refund worker, in the same transaction that creates a refund (or ends one in REFUND_ERROR).
   * Never more than `amount`. Absent: nothing refunded.
   */
  readonly refundedAmount?: number;
}

/**
 * Statuses in which a charge can be refunded. CAPTURE_SUBMITTED counts: the processor has accepted
 * the capture and settles it on its own (Worldpay's captures always end here), and it takes a refund
 * against it, as GOV.UK Pay does; one it refuses ends REFUND_ERROR with the amount given back.
 */
export const REFUNDABLE_STATUSES: ReadonlySet<ChargeStatus> = new Set(['CAPTURED', 'CAPTURE_SUBMITTED']);

/** The fields a transition may set besides the status; the rest of a charge is the transition module's. */
export type ChargeFields = Partial<
  Pick<
    Charge,
    | 'authRequestId'
    | 'authIdempotencyKey'
    | 'processorRef'
    | 'cardLast4'
    | 'cardBrand'
    | 'declineCode'
    | 'errorCode'
    | 'authorisationVoid'
    | 'captureRequestId'
  >
>;

/** The partition value of the sparse `awaiting-capture` index. */
export const AWAITING_CAPTURE = 'AWAITING';
/** Statuses in which a charge waits to be captured, and so carries the index's key. */
export const AWAITING_CAPTURE_STATUSES: ReadonlySet<ChargeStatus> = new Set(['CAPTURE_APPROVED', 'CAPTURE_APPROVED_RETRY', 'CAPTURE_READY']);

/**
 * A void asked of the processor. Written PENDING in the same commit as the AUTHORISATION_ERROR that
 * needs it, *before* the processor is called, so a worker dying anywhere after that commit leaves a
 * visible obligation the next delivery of the request finishes (under the same idempotency key):
 *
 *   PENDING ── processor voided ──▶ VOIDED   (charge -> AUTHORISATION_ERROR_CANCELLED, ledger event)
 *      └───── refused for good, or still failing on the last attempt ──▶ FAILED  (a person must release it)
 */
export interface AuthorisationVoid {
  readonly state: 'PENDING' | 'VOIDED' | 'FAILED';
  /** The authorisation being released (PaymentIntent id, Worldpay orderCode, sandbox ref). */
  readonly processorRef: string;
  /** Derived from the authRequestId; the same on every attempt (Stripe de-duplicates the cancel by it). */
  readonly idempotencyKey: string;
  /** Why it is voided, in the worker's words (e.g. the amounts asked and answered); never card data. */
  readonly reason: string;
  readonly requestedAt: string;
  readonly settledAt?: string;
  /** FAILED: the processor's refusal (code and message; never card data). */
  readonly code?: string;
  readonly message?: string;
}

/** Number of capture attempts so far, counted from the charge's own history (docs/contract.md §3). */
export function captureAttemptsFromHistory(history: readonly ChargeHistoryEntry[]): number {
  return history.filter((h) => h.status === 'CAPTURE_READY').length;
}
