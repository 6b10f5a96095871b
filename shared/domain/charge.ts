/**
 * The charge state graph (CONTRACT.md §3), shared by the auth and capture workers. Only the edges
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
 * AUTHORISATION_READY and CAPTURE_READY are committed *before* the processor is called: a charge
 * found in either state after a crash means "a request may have gone out; look it up first".
 */
export const CHARGE_STATUSES = [
  'CREATED',
  'AUTHORISATION_READY',
  'AUTHORISATION_SUCCESS',
  'AUTHORISATION_REJECTED',
  'AUTHORISATION_ERROR',
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

export const TERMINAL_STATUSES: ReadonlySet<ChargeStatus> = new Set(['AUTHORISATION_REJECTED', 'AUTHORISATION_ERROR', 'CAPTURED', 'CAPTURE_ERROR']);

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

/** The charge as stored in the charges table. No card data: only last4/brand for display. */
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
  readonly version: number;
  readonly eventSeq: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly history: readonly ChargeHistoryEntry[];
  readonly authRequestId?: string;
  /** Derived from authRequestId; reused on every retry of that authorisation. */
  readonly authIdempotencyKey?: string;
  readonly processorRef?: string;
  readonly cardLast4?: string;
  readonly cardBrand?: string;
  readonly declineCode?: string;
  readonly errorCode?: string;
  /** Capture bookkeeping (capture worker). */
  readonly captureAttempts?: number;
  readonly captureRequestId?: string;
}

/** Number of capture attempts so far, counted from the charge's own history (CONTRACT.md §3). */
export function captureAttemptsFromHistory(history: readonly ChargeHistoryEntry[]): number {
  return history.filter((h) => h.status === 'CAPTURE_READY').length;
}
