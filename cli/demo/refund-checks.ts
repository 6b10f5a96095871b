/**
 * The refund checks of the `npm start` summary (docs/contract.md §3, §4.1, §5, §6), judged from
 * outside the refund worker: the refunds and charges tables, the refund DLQ, the processors'
 * sandboxes (refunds performed and amounts refunded per charge) and the reference Ledger consumer.
 */
import type { PlannedRefund } from './refund-load.js';
import type { Check, SummaryInput } from './summary.js';

/** What a processor sandbox did for one charge: refunds performed (replays apart), amount refunded, amount captured. */
export interface ProcessorRefunds {
  readonly refunds: number;
  readonly refunded: number;
  readonly capturedAmount: number;
}

/** A row of the refunds table (bare reservations, which are no refund, left out). */
export interface StoredRefund {
  readonly status: string;
  readonly chargeId: string;
  readonly amount: number;
  readonly refundRequestId: string;
}

/** The Ledger consumer's events of one refund. */
export interface LedgerRefund {
  readonly types: readonly string[];
  readonly parents: readonly string[];
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const sum = (xs: Iterable<number>) => [...xs].reduce((a, b) => a + b, 0);
const some = (problems: readonly string[]) =>
  `${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; (+${problems.length - 3} more)` : ''}`;
const toRefund = (r: PlannedRefund): r is PlannedRefund & { expect: { status: 'REFUNDED' } } => 'status' in r.expect;

/** The refunds of a charge the plan expects REFUNDED, by chargeId. */
function plannedByCharge(i: SummaryInput): Map<string, PlannedRefund[]> {
  const m = new Map<string, PlannedRefund[]>();
  for (const r of i.plan.refunds) if (toRefund(r)) m.set(r.chargeId, [...(m.get(r.chargeId) ?? []), r]);
  return m;
}

/** Worldpay's per-order counters summed per charge (an order belongs to a charge by its orderCode). */
export function worldpayRefundsByCharge(i: SummaryInput): Map<string, ProcessorRefunds & { duplicateRefunds: number }> {
  const orderToCharge = new Map<string, string>();
  for (const [chargeId, c] of i.charges) {
    if (c.processor !== 'worldpay') continue;
    if (c.authIdempotencyKey) orderToCharge.set(c.authIdempotencyKey, chargeId);
    if (c.processorRef) orderToCharge.set(c.processorRef, chargeId);
  }
  const out = new Map<string, ProcessorRefunds & { duplicateRefunds: number }>();
  for (const [orderCode, o] of Object.entries(i.worldpay)) {
    const chargeId = orderToCharge.get(orderCode);
    if (!chargeId) continue;
    const t = out.get(chargeId) ?? { refunds: 0, duplicateRefunds: 0, refunded: 0, capturedAmount: 0 };
    out.set(chargeId, {
      refunds: t.refunds + o.refunds,
      duplicateRefunds: t.duplicateRefunds + o.duplicateRefunds,
      refunded: t.refunded + o.refunded,
      capturedAmount: t.capturedAmount + o.capturedAmount,
    });
  }
  return out;
}

/** Every refund request ended as planned: REFUNDED (one refund per refundId), or dead-lettered with its code and no refund. */
function refundsAsPlanned(i: SummaryInput): Check {
  const problems: string[] = [];
  const letters = i.dlq.get('refund-requests') ?? [];
  for (const r of i.plan.refunds) {
    const row = i.refunds.get(r.refundId);
    const e = r.expect;
    if ('status' in e) {
      if (row?.status !== 'REFUNDED')
        problems.push(`${r.refundId} (${r.kind}, ${r.processor}) is ${row?.status ?? 'missing'}, expected REFUNDED`);
      else if (row.amount !== r.amount || row.chargeId !== r.chargeId || row.refundRequestId !== r.refundRequestId)
        problems.push(`${r.refundId}: stored as ${row.amount} of ${row.chargeId} by ${row.refundRequestId}, not as sent`);
      continue;
    }
    const found = letters.filter((l) => l.body === r.body);
    if (found.length !== 1) problems.push(`${r.refundId} (${r.kind}): ${found.length} letters in the refund DLQ, expected 1`);
    else if (found[0]!.view.code !== e.dlq)
      problems.push(`${r.refundId} (${r.kind}): code ${found[0]!.view.code}, expected ${e.dlq}`);
    else if (!found[0]!.view.detail || found[0]!.view.attempts === null)
      problems.push(`${r.refundId}: failure attributes incomplete`);
    if (row) problems.push(`${r.refundId} (${r.kind}) was refused but a refund ${row.status} exists`);
  }
  const done = i.plan.refunds.filter(toRefund);
  const kinds = new Map<string, number>();
  for (const r of done) kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
  const codes = new Map<string, number>();
  for (const r of i.plan.refunds) {
    const e = r.expect;
    if ('dlq' in e) codes.set(e.dlq, (codes.get(e.dlq) ?? 0) + 1);
  }
  const processors = new Set(done.map((r) => r.processor));
  return {
    name: 'every refund reached its planned outcome',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${plural(done.length, 'refund')} REFUNDED (${[...kinds].map(([k, n]) => `${n} ${k}`).join(', ')}; at ${[...processors].join(', ')}); dead-lettered with no refund made: ${[...codes].map(([c, n]) => `${n} ${c}`).join(', ') || 'none'}`
        : some(problems),
  };
}

/** Per charge: refundedAmount = the sum of its refunds, never above the captured amount, here and at the processor. */
function refundedWithinCaptured(i: SummaryInput): Check {
  const problems: string[] = [];
  const planned = plannedByCharge(i);
  const rowsOf = new Map<string, StoredRefund[]>();
  for (const row of i.refunds.values()) rowsOf.set(row.chargeId, [...(rowsOf.get(row.chargeId) ?? []), row]);
  const wp = worldpayRefundsByCharge(i);
  let charges = 0;
  for (const [chargeId, c] of i.charges) {
    const stored = c.refundedAmount ?? 0;
    const rows = rowsOf.get(chargeId) ?? [];
    const expected = sum((planned.get(chargeId) ?? []).map((r) => r.amount));
    if (stored === 0 && rows.length === 0 && expected === 0) continue;
    charges += 1;
    const live = sum(rows.filter((r) => r.status !== 'REFUND_ERROR').map((r) => r.amount));
    if (stored !== live) problems.push(`${chargeId}: refundedAmount ${stored}, its refunds add up to ${live}`);
    if (stored !== expected) problems.push(`${chargeId}: refundedAmount ${stored}, the plan refunds ${expected}`);
    if (c.amount === undefined || stored > c.amount)
      problems.push(`${chargeId}: refunded ${stored} of a captured ${c.amount ?? '?'}`);
    const at =
      c.processor === 'stripe'
        ? i.stripe[chargeId]
        : c.processor === 'chase'
          ? i.chase[chargeId]
          : c.processor === 'worldpay'
            ? wp.get(chargeId)
            : undefined;
    if (c.processor === 'sandbox') continue;
    if (!at) problems.push(`${chargeId}: ${c.processor} has no record of the charge`);
    else {
      if (at.refunded > at.capturedAmount)
        problems.push(`${c.processor} ${chargeId}: refunded ${at.refunded} of a captured ${at.capturedAmount}`);
      if (at.refunded !== stored) problems.push(`${c.processor} ${chargeId}: refunded ${at.refunded}, the charge says ${stored}`);
    }
  }
  return {
    name: 'refunded never more than captured (charges and processors)',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${plural(charges, 'charge')} refunded: each charge's refundedAmount is the sum of its refunds and at most its captured amount, and so it is at Stripe, Worldpay and Chase`
        : some(problems),
  };
}

/** At most one refund per request at each processor: refunds performed = refunds the fleet made, per charge. */
function oneRefundPerRequest(i: SummaryInput): Check {
  const problems: string[] = [];
  const made = new Map<string, number>();
  for (const row of i.refunds.values())
    if (row.status !== 'REFUND_ERROR') made.set(row.chargeId, (made.get(row.chargeId) ?? 0) + 1);
  const wp = worldpayRefundsByCharge(i);
  const count = { stripe: 0, worldpay: 0, chase: 0 };
  const judge = (processor: keyof typeof count, chargeId: string, performed: number) => {
    const n = made.get(chargeId) ?? 0;
    count[processor] += performed;
    if (performed !== n)
      problems.push(`${processor} ${chargeId}: ${plural(performed, 'refund')} performed for ${plural(n, 'refund request')}`);
  };
  for (const [chargeId, s] of Object.entries(i.stripe)) judge('stripe', chargeId, s.refunds);
  for (const [chargeId, s] of Object.entries(i.chase)) judge('chase', chargeId, s.refunds);
  for (const [chargeId, s] of wp) judge('worldpay', chargeId, s.refunds);
  const duplicates = i.plan.refunds.filter((r) => r.duplicate).length;
  const wpReplays = sum([...wp.values()].map((s) => s.duplicateRefunds));
  return {
    name: 'at most one refund per request at each processor',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `refunds performed = refunds made, per charge: Stripe ${count.stripe}, Worldpay ${count.worldpay} (${wpReplays} re-sent answered without a refund), Chase ${count.chase}; ${plural(duplicates, 'request')} re-sent at once, refunded once`
        : some(problems),
  };
}

/** The Ledger saw each refund: REFUND_CREATED, REFUND_SUBMITTED, REFUND_SUCCEEDED, parented to its charge; nothing for refused ones. */
function refundEventsDelivered(i: SummaryInput): Check {
  const problems: string[] = [];
  const want = ['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_SUCCEEDED'];
  for (const r of i.plan.refunds) {
    const seen = i.ledgerRefunds.get(r.refundId);
    if (!toRefund(r)) {
      if (seen) problems.push(`${r.refundId} (${r.kind}) was refused, yet the Ledger saw ${seen.types.join(', ')}`);
      continue;
    }
    const missing = want.filter((t) => !seen?.types.includes(t));
    if (missing.length > 0) problems.push(`${r.refundId} (${r.kind}): the Ledger never saw ${missing.join(', ')}`);
    if (seen?.types.includes('REFUND_ERROR')) problems.push(`${r.refundId}: the Ledger saw REFUND_ERROR`);
    if (seen?.parents.some((p) => p !== r.chargeId))
      problems.push(`${r.refundId}: parent_resource_external_id ${seen.parents.join(', ')}, not ${r.chargeId}`);
  }
  const n = i.plan.refunds.filter(toRefund).length;
  return {
    name: 'every refund seen by the Ledger (REFUND_* events)',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${plural(n, 'refund')}: REFUND_CREATED, REFUND_SUBMITTED and REFUND_SUCCEEDED each, parented to its charge; ${plural(i.plan.refunds.length - n, 'refused request')} without an event`
        : some(problems),
  };
}

/** The refund checks, in display order. */
export function refundChecks(i: SummaryInput): Check[] {
  return [refundsAsPlanned(i), refundedWithinCaptured(i), oneRefundPerRequest(i), refundEventsDelivered(i)];
}

/** DLQ letters a planned refund expects (so the bad-message check does not count them as unexpected). */
export function plannedRefundLetters(i: SummaryInput): Set<string> {
  const bodies = new Set(i.plan.refunds.filter((r) => 'dlq' in r.expect).map((r) => r.body));
  return new Set((i.dlq.get('refund-requests') ?? []).filter((l) => bodies.has(l.body)).map((l) => l.view.messageId));
}
