/**
 * The payout domain: rows of the `payouts` and `batches` tables, the payout state graph with the
 * ledger event of each edge, and the EntityChanges the commits are built from (docs/payouts.md).
 *
 *   RECEIVED ──(pin to a batch; no event)──▶ INITIATION_PENDING ──202──▶ INITIATED ──ACSC──▶ PAID
 *       │                                         │                         │
 *       └── invalid ──▶ REJECTED ◀── 4xx ─────────┘                         └──RJCT──▶ REJECTED
 *
 *   events: PAYOUT_CREATED (ingestion), PAYOUT_INITIATED, PAYOUT_PAID, PAYOUT_FAILED.
 *   A bank report can overtake the 202's commit: INITIATION_PENDING -> PAID then walks
 *   INITIATED on the way and emits PAYOUT_INITIATED + PAYOUT_PAID in the same commit.
 *
 * `initiableShard` (the sparse GSI `initiable`) is set exactly while a payout is RECEIVED or
 * INITIATION_PENDING: it is how a shard's initiator finds what it still has to send or resume.
 */
import { createHash } from 'node:crypto';
import type { EntityChange, NewEvent } from '../../shared/core/ports.js';
import { normalizeIban } from './lhv/pain001.js';
import { maskIban, type PayoutInstruction } from './lhv/types.js';

export const PAYOUT_STATUSES = ['RECEIVED', 'INITIATION_PENDING', 'INITIATED', 'PAID', 'REJECTED'] as const;
export type PayoutStatus = (typeof PAYOUT_STATUSES)[number];

export const PAYOUT_EVENT = {
  created: 'PAYOUT_CREATED',
  initiated: 'PAYOUT_INITIATED',
  paid: 'PAYOUT_PAID',
  failed: 'PAYOUT_FAILED',
} as const;

/** Allowed edges and the event each emits (null: an internal lock state, no event). */
const EDGES: Readonly<Record<PayoutStatus, Partial<Record<PayoutStatus, string | null>>>> = {
  RECEIVED: { INITIATION_PENDING: null, REJECTED: PAYOUT_EVENT.failed },
  INITIATION_PENDING: { INITIATED: PAYOUT_EVENT.initiated, REJECTED: PAYOUT_EVENT.failed },
  INITIATED: { PAID: PAYOUT_EVENT.paid, REJECTED: PAYOUT_EVENT.failed },
  PAID: {},
  REJECTED: {},
};

const WAITING: ReadonlySet<PayoutStatus> = new Set(['RECEIVED', 'INITIATION_PENDING']);
export const FINAL: ReadonlySet<PayoutStatus> = new Set(['PAID', 'REJECTED']);

/** Why a payout was REJECTED: the bank's report, the bank refusing the request, or our own checks. */
export interface PayoutFailure {
  readonly source: 'BANK_REPORT' | 'REQUEST_REJECTED' | 'INVALID_PAYOUT';
  /** ISO reason code (AC04, AM04...) or `HTTP_400` / `INVALID_PAYOUT`. */
  readonly code: string;
  /** Human readable, IBANs masked. */
  readonly reason: string;
}

/**
 * A row of the `payouts` table (PK paymentId). The row is its own uniqueness claim: it is created
 * conditioned on not existing, so one paymentId has one payout whichever shard took it.
 */
export interface Payout {
  readonly paymentId: string;
  /** The shard whose holder ingested it and initiates it (the `initiable` index's partition). */
  readonly shard: string;
  readonly kind: 'PAYOUT';
  /** eventId of the CheckoutApprovalAccepted that created it. */
  readonly eventId: string;
  /** {@link payoutFingerprint} of its content: a later event with the same paymentId must match it. */
  readonly fingerprint: string;
  readonly amount: number;
  readonly currency: 'EUR';
  readonly creditor: { readonly name: string; readonly iban: string; readonly bic?: string };
  readonly remittanceInformation: string;
  readonly approvedAt: string;
  /** When we stored it (ISO); the `initiable` index sorts by it. */
  readonly receivedAt: string;
  readonly status: PayoutStatus;
  /** = shard while RECEIVED or INITIATION_PENDING; absent otherwise (sparse index). */
  readonly initiableShard?: string;
  /** The batch (= idempotency key = MsgId) this payout is pinned to, from INITIATION_PENDING on. */
  readonly batchId?: string;
  readonly messageRequestId?: string;
  /** Last final status code from LHV (ACSC / RJCT). */
  readonly bankStatus?: string;
  readonly failure?: PayoutFailure;
  readonly live: boolean;
  readonly history: readonly { readonly status: PayoutStatus; readonly at: string }[];
  readonly updatedAt: string;
  readonly version: number;
  readonly eventSeq: number;
}

export const BATCH_STATUSES = ['ASSIGNING', 'PENDING', 'INITIATED', 'REJECTED', 'UNCERTAIN'] as const;
/**
 * ASSIGNING: key chosen, payouts being pinned in chunks (never sent in this state).
 * PENDING: every payout pinned; the request may be (re)sent, always with this key and these bytes.
 * INITIATED: LHV answered 202 (or a report for this MsgId arrived); never sent again.
 * REJECTED: LHV refused the request itself with a 4xx on a first, unambiguous attempt.
 * UNCERTAIN: refused after an attempt whose fate is unknown: not resent, not rejected; a report
 *   for the MsgId resolves it, otherwise an operator does (docs/payouts.md).
 */
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** A row of the `batches` table for one pain.001 request. batchId = MsgId = X-Idempotency-Key. */
export interface Batch {
  readonly batchId: string;
  readonly kind: 'BATCH';
  readonly shard: string;
  readonly status: BatchStatus;
  /** In request order; frozen once PENDING. */
  readonly paymentIds: readonly string[];
  /** GrpHdr/CreDtTm and ReqdExctnDt: stored so every resend has identical bytes. */
  readonly createdAt: string;
  readonly requestedExecutionDate: string;
  /** Send sequences begun (written before the first HTTP attempt of each): > 0 means "may have reached LHV". */
  readonly sendAttempts: number;
  readonly lastSentAt?: string;
  readonly messageRequestId?: string;
  readonly initiatedAt?: string;
  readonly rejection?: { readonly httpStatus?: number; readonly code: string; readonly reason: string };
  readonly duplicateReports?: number;
  readonly updatedAt: string;
  readonly version: number;
}

export const unmatchedKey = (messageResponseId: string): string => `lhv-message#${messageResponseId}`;

/** What two CheckoutApprovalAccepted events for one paymentId must agree on. */
export function payoutFingerprint(p: Pick<Payout, 'amount' | 'currency' | 'creditor' | 'remittanceInformation'>): string {
  const canonical = JSON.stringify([
    p.amount,
    p.currency,
    normalizeIban(p.creditor.iban),
    p.creditor.name.trim(),
    (p.creditor.bic ?? '').replace(/\s+/g, '').toUpperCase(),
    p.remittanceInformation,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}

export function toInstruction(p: Payout): PayoutInstruction {
  return {
    paymentId: p.paymentId,
    amount: p.amount,
    currency: p.currency,
    creditor: { name: p.creditor.name, iban: p.creditor.iban, ...(p.creditor.bic ? { bic: p.creditor.bic } : {}) },
    remittanceInformation: p.remittanceInformation,
  };
}

export function canMove(from: PayoutStatus, to: PayoutStatus): boolean {
  return to in EDGES[from];
}

/**
 * Walk `path` from the payout's status (e.g. ['INITIATED', 'PAID']), collecting each edge's event
 * with `details(status)`. Throws on an edge the graph does not have: a bug, never data.
 */
export function advance(
  p: Payout,
  path: readonly PayoutStatus[],
  at: string,
  details: (status: PayoutStatus) => Record<string, unknown>,
  patch: Partial<Pick<Payout, 'batchId' | 'messageRequestId' | 'bankStatus' | 'failure'>> = {},
): { readonly after: Payout; readonly events: NewEvent[] } {
  let from = p.status;
  const events: NewEvent[] = [];
  const history = [...p.history];
  for (const to of path) {
    const event = EDGES[from][to];
    if (event === undefined) throw new Error(`payout ${p.paymentId}: no edge ${from} -> ${to}`);
    if (event !== null) events.push({ eventType: event, details: details(to) });
    history.push({ status: to, at });
    from = to;
  }
  const { initiableShard: _drop, ...rest } = p;
  const after: Payout = {
    ...rest,
    ...patch,
    status: from,
    ...(WAITING.has(from) ? { initiableShard: p.shard } : {}),
    history,
    updatedAt: at,
  };
  return { after, events };
}

/** The commit part for a payout going from `before` to `after` with `events`. */
export function payoutChange(before: Payout | undefined, after: Payout, events: readonly NewEvent[]): EntityChange {
  const { version: _v, eventSeq: _s, paymentId, ...set } = after;
  return {
    table: 'payouts',
    key: { paymentId },
    expectedVersion: before?.version ?? 0,
    set,
    ...(before?.initiableShard !== undefined && after.initiableShard === undefined ? { remove: ['initiableShard'] } : {}),
    resource: { type: 'payout', id: paymentId, live: after.live },
    currentEventSeq: before?.eventSeq ?? 0,
    events,
  };
}

export function batchChange(before: Batch | undefined, after: Batch): EntityChange {
  const { version: _v, batchId, ...set } = after;
  return { table: 'batches', key: { batchId }, expectedVersion: before?.version ?? 0, set };
}

/** Items a change occupies in a transaction: the entity plus one per event. */
export const itemsOf = (c: EntityChange): number => 1 + (c.resource ? (c.events?.length ?? 0) : 0);

/**
 * Split changes into transactions of at most `limit` items, `reserved` of which each transaction
 * needs for itself (the lease fence, a batch row). Order is kept.
 */
export function chunkChanges(changes: readonly EntityChange[], reserved: number, limit = 100): EntityChange[][] {
  const out: EntityChange[][] = [];
  let cur: EntityChange[] = [];
  let used = reserved;
  for (const c of changes) {
    const n = itemsOf(c);
    if (reserved + n > limit) throw new Error(`one change needs ${n} items; the transaction limit is ${limit}`);
    if (used + n > limit) {
      out.push(cur);
      cur = [];
      used = reserved;
    }
    cur.push(c);
    used += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Ledger details of a payout's creation (no full IBAN: the Ledger needs to know which, not to pay). */
export function createdDetails(p: Payout): Record<string, unknown> {
  return {
    amount: p.amount,
    currency: p.currency,
    creditor_name: p.creditor.name,
    creditor_iban_last4: maskIban(p.creditor.iban).slice(-4),
    remittance_information: p.remittanceInformation,
    approved_at: p.approvedAt,
    source_event_id: p.eventId,
  };
}
