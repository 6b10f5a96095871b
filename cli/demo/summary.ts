/**
 * The closing summary of `npm start`: the fleet's guarantees (docs/contract.md §4, §6) checked against
 * what the outside world recorded — the sandboxes' effect counters, the tables, the DLQs, the
 * reference Ledger consumer — not against what the workers say about themselves.
 */
import type { DeadLetterView } from '../commands/dlq-letters.js';
import type { DemoPlan } from './load.js';
import {
  plannedRefundLetters,
  refundChecks,
  type LedgerRefund,
  type ProcessorRefunds,
  type StoredRefund,
} from './refund-checks.js';

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** The Ledger consumer's report (test/support/ledger-consumer.ts), the parts judged here. */
export interface LedgerReportLike {
  readonly received: number;
  readonly unique: number;
  readonly resources: number;
  readonly duplicates: readonly unknown[];
  readonly invalid: readonly unknown[];
  readonly mismatches: readonly string[];
  readonly gaps: readonly { readonly resourceId: string; readonly missing: readonly number[] }[];
  readonly reorders: readonly { readonly resourceId: string; readonly sequence: number; readonly after: number }[];
}

export interface SummaryInput {
  readonly plan: DemoPlan;
  /** chargeId -> stored charge (status, processor, processorRef, authIdempotencyKey, amount, refundedAmount). */
  readonly charges: ReadonlyMap<
    string,
    {
      status: string;
      processor: string;
      processorRef?: string;
      authIdempotencyKey?: string;
      amount?: number;
      refundedAmount?: number;
    }
  >;
  /** refundId -> the refunds table's row (bare reservations left out). */
  readonly refunds: ReadonlyMap<string, StoredRefund>;
  /** paymentId -> payout status (undefined: no payout row). */
  readonly payouts: ReadonlyMap<string, string | undefined>;
  /** Per-charge effect counters of the Stripe sandbox. */
  readonly stripe: Readonly<Record<string, { created: number; authorised: number; captured: number } & ProcessorRefunds>>;
  /** Worldpay orders: orderCode -> authorisations, captures and refunds performed. */
  readonly worldpay: Readonly<
    Record<string, { authorisations: number; captures: number; duplicateRefunds: number } & ProcessorRefunds>
  >;
  /** Per-charge effect counters of the Chase sandbox (by merchantOrderNumber, the chargeId). */
  readonly chase: Readonly<Record<string, { created: number; authorised: number; captured: number } & ProcessorRefunds>>;
  /** LHV initiations per paymentId (EndToEndId). */
  readonly lhvInitiations: Readonly<Record<string, number>> | undefined;
  readonly lhvRequests: number;
  /** Payout shards the payouts were spread over (for the detail text). */
  readonly payoutShards: number;
  /** Outbox rows: resourceId -> number of events, and how many are still not emitted. */
  readonly outbox: { readonly perResource: ReadonlyMap<string, number>; readonly pending: number; readonly total: number };
  readonly ledger: LedgerReportLike;
  /** Problems of the consumer's record against the outbox (LedgerConsumer.missingAgainst). */
  readonly ledgerMissing: readonly string[];
  /** refundId -> the event types and parent ids the Ledger consumer received for it. */
  readonly ledgerRefunds: ReadonlyMap<string, LedgerRefund>;
  /** Letters found per DLQ, with their bodies. */
  readonly dlq: ReadonlyMap<string, readonly { view: DeadLetterView; body: string }[]>;
  /** Where to look for card numbers: name -> text. */
  readonly haystacks: ReadonlyMap<string, string>;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function tally(values: Iterable<string>): string {
  const m = new Map<string, number>();
  for (const v of values) m.set(v, (m.get(v) ?? 0) + 1);
  return [...m]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
}

/** Good messages end in their expected state: no loss (docs/contract.md §4.2). */
function finalStates(i: SummaryInput): Check {
  const wrong: string[] = [];
  for (const c of i.plan.charges) {
    const status = i.charges.get(c.chargeId)?.status;
    if (!status || !c.expect.includes(status as never))
      wrong.push(`${c.chargeId} (${c.kind}) is ${status ?? 'missing'}, expected ${c.expect.join(' or ')}`);
  }
  for (const b of i.plan.bad) {
    if (!b.charge) continue;
    const status = i.charges.get(b.charge.chargeId)?.status;
    if (status !== b.charge.expect)
      wrong.push(`${b.charge.chargeId} (${b.label}) is ${status ?? 'missing'}, expected ${b.charge.expect}`);
  }
  for (const p of i.plan.payouts) {
    const status = i.payouts.get(p.paymentId);
    if (status !== p.expect) wrong.push(`payout ${p.paymentId} (${p.kind}) is ${status ?? 'missing'}, expected ${p.expect}`);
  }
  const chargeStates = tally(i.plan.charges.map((c) => i.charges.get(c.chargeId)?.status ?? 'missing'));
  const payoutStates =
    i.plan.payouts.length > 0
      ? `; ${plural(i.plan.payouts.length, 'payout')}: ${tally(i.plan.payouts.map((p) => i.payouts.get(p.paymentId) ?? 'missing'))}`
      : '';
  return {
    name: 'every good message reached its final state',
    ok: wrong.length === 0,
    detail:
      wrong.length === 0
        ? `${plural(i.plan.charges.length, 'charge')}: ${chargeStates}${payoutStates}`
        : `${wrong.length} not final: ${wrong.slice(0, 3).join('; ')}${wrong.length > 3 ? '; ...' : ''}`,
  };
}

/** At most one authorisation and one capture per charge at Stripe, Worldpay and Chase (docs/contract.md §4.1). */
function noDoubleCharge(i: SummaryInput): Check {
  const problems: string[] = [];
  for (const [chargeId, s] of Object.entries(i.stripe)) {
    if (s.created > 1 || s.authorised > 1 || s.captured > 1)
      problems.push(`stripe ${chargeId}: ${s.created} intents, ${s.authorised} authorisations, ${s.captured} captures`);
  }
  for (const [chargeId, s] of Object.entries(i.chase)) {
    if (s.created > 1 || s.authorised > 1 || s.captured > 1)
      problems.push(`chase ${chargeId}: ${s.created} payments, ${s.authorised} authorisations, ${s.captured} captures`);
  }
  const orderToCharge = new Map<string, string>();
  for (const [chargeId, c] of i.charges) {
    if (c.processor !== 'worldpay') continue;
    if (c.authIdempotencyKey) orderToCharge.set(c.authIdempotencyKey, chargeId);
    if (c.processorRef) orderToCharge.set(c.processorRef, chargeId);
  }
  const perCharge = new Map<string, { orders: number; authorisations: number; captures: number }>();
  for (const [orderCode, o] of Object.entries(i.worldpay)) {
    const chargeId = orderToCharge.get(orderCode);
    if (!chargeId) {
      if (o.authorisations > 0) problems.push(`worldpay order ${orderCode} was authorised but belongs to no recorded charge`);
      continue;
    }
    const t = perCharge.get(chargeId) ?? { orders: 0, authorisations: 0, captures: 0 };
    perCharge.set(chargeId, {
      orders: t.orders + 1,
      authorisations: t.authorisations + o.authorisations,
      captures: t.captures + o.captures,
    });
  }
  for (const [chargeId, t] of perCharge) {
    if (t.orders > 1 || t.authorisations > 1 || t.captures > 1)
      problems.push(`worldpay ${chargeId}: ${t.orders} orders, ${t.authorisations} authorisations, ${t.captures} captures`);
  }
  // ...and exactly once where the charge says it happened.
  for (const c of i.plan.charges) {
    const status = i.charges.get(c.chargeId)?.status;
    if (c.processor === 'stripe' && status === 'CAPTURED' && i.stripe[c.chargeId]?.captured !== 1)
      problems.push(`stripe ${c.chargeId} is CAPTURED but Stripe captured it ${i.stripe[c.chargeId]?.captured ?? 0} times`);
    if (c.processor === 'chase' && status === 'CAPTURED' && i.chase[c.chargeId]?.captured !== 1)
      problems.push(`chase ${c.chargeId} is CAPTURED but Chase captured it ${i.chase[c.chargeId]?.captured ?? 0} times`);
    if (
      c.processor === 'worldpay' &&
      (status === 'CAPTURED' || status === 'CAPTURE_SUBMITTED') &&
      perCharge.get(c.chargeId)?.captures !== 1
    ) {
      problems.push(
        `worldpay ${c.chargeId} is ${status} but Worldpay captured it ${perCharge.get(c.chargeId)?.captures ?? 0} times`,
      );
    }
  }
  const stripeCharges = Object.keys(i.stripe).length;
  const stripeCaptures = Object.values(i.stripe).reduce((n, s) => n + s.captured, 0);
  const wpCaptures = [...perCharge.values()].reduce((n, s) => n + s.captures, 0);
  const chaseCharges = Object.keys(i.chase).length;
  const chaseCaptures = Object.values(i.chase).reduce((n, s) => n + s.captured, 0);
  return {
    name: 'no double charge (Stripe, Worldpay and Chase counters)',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `Stripe: ${plural(stripeCharges, 'charge')}, ${stripeCaptures} captured once each; Worldpay: ${plural(perCharge.size, 'charge')}, ${wpCaptures} captured once each; Chase: ${plural(chaseCharges, 'charge')}, ${chaseCaptures} captured once each; none twice`
        : problems.slice(0, 3).join('; '),
  };
}

/** At most one initiation per payout at the bank (docs/contract.md §4.1). */
function noDoublePayout(i: SummaryInput): Check | undefined {
  if (i.plan.payouts.length === 0 || !i.lhvInitiations) return undefined;
  const problems: string[] = [];
  for (const [paymentId, n] of Object.entries(i.lhvInitiations)) if (n > 1) problems.push(`${paymentId} initiated ${n} times`);
  for (const p of i.plan.payouts) {
    const status = i.payouts.get(p.paymentId);
    if ((status === 'PAID' || status === 'REJECTED') && i.lhvInitiations[p.paymentId] !== 1) {
      problems.push(`${p.paymentId} is ${status} but the bank saw ${i.lhvInitiations[p.paymentId] ?? 0} initiations`);
    }
  }
  const total = Object.keys(i.lhvInitiations).length;
  return {
    name: 'no double payout (LHV initiations per payment)',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${plural(total, 'payout')} initiated once each, in ${plural(i.lhvRequests, 'pain.001 request')}, over ${plural(i.payoutShards, 'shard')}`
        : problems.slice(0, 3).join('; '),
  };
}

/** Every outbox event reached the Ledger, once after de-duplication, in per-resource order (docs/contract.md §4.4). */
function everyEventDelivered(i: SummaryInput): Check {
  const r = i.ledger;
  const problems = [
    ...(i.outbox.pending > 0 ? [`${i.outbox.pending} outbox events never emitted`] : []),
    ...i.ledgerMissing.slice(0, 3),
    ...(r.invalid.length > 0 ? [`${r.invalid.length} invalid bodies`] : []),
    ...r.mismatches.slice(0, 2),
    ...r.gaps.slice(0, 2).map((g) => `${g.resourceId} is missing sequence ${g.missing.join(', ')}`),
    ...r.reorders.slice(0, 2).map((o) => `${o.resourceId} #${o.sequence} arrived after #${o.after}`),
  ];
  return {
    name: 'every event delivered (Ledger consumer: once, in order)',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${i.outbox.total} outbox events for ${plural(i.outbox.perResource.size, 'resource')}: all received in sequence order (${r.received} deliveries, ${r.duplicates.length} duplicates dropped by event_id)`
        : problems.join('; '),
  };
}

/**
 * Every bad message is in its DLQ, body byte for byte, with the expected reason; nothing else is
 * (docs/contract.md §6) but the refused refunds of the plan, which the refund checks judge.
 */
function badMessagesInDlq(i: SummaryInput): Check {
  const problems: string[] = [];
  const matched = plannedRefundLetters(i);
  for (const b of i.plan.bad) {
    const letters = i.dlq.get(b.queue) ?? [];
    const found = letters.find((l) => l.body === b.body);
    if (!found) {
      problems.push(`${b.label}: not in the ${b.queue} DLQ`);
      continue;
    }
    matched.add(found.view.messageId);
    const v = found.view;
    if (v.code !== b.code) problems.push(`${b.label}: code ${v.code}, expected ${b.code}`);
    else if (!v.detail || !v.worker || v.attempts === null || !v.failedAt || !v.sourceQueue)
      problems.push(`${b.label}: failure attributes incomplete`);
  }
  const unexpected = [...i.dlq.values()].flat().filter((l) => !matched.has(l.view.messageId));
  for (const u of unexpected.slice(0, 3))
    problems.push(`unexpected dead letter ${u.view.messageId}: ${u.view.code}: ${u.view.detail.slice(0, 80)}`);
  return {
    name: 'every bad message in a DLQ with its reason',
    ok: problems.length === 0,
    detail:
      problems.length === 0
        ? `${plural(i.plan.bad.length, 'bad message')}, each in its DLQ with code and detail: ${tally(i.plan.bad.map((b) => b.code))}`
        : `${problems.slice(0, 4).join('; ')}${unexpected.length > 3 ? ` (+${unexpected.length - 3} more unexpected)` : ''}`,
  };
}

/** No card number in worker logs, tables, ledger events or DLQs (docs/contract.md §6). */
function noCardData(i: SummaryInput): Check {
  const hits: string[] = [];
  for (const [where, text] of i.haystacks) {
    for (const pan of i.plan.cardNumbers) if (text.includes(pan)) hits.push(`${pan.slice(0, 4)}…${pan.slice(-4)} in ${where}`);
  }
  return {
    name: 'no card number in logs, tables, events or DLQs',
    ok: hits.length === 0,
    detail:
      hits.length === 0
        ? `${plural(i.plan.cardNumbers.length, 'card number')} searched in ${[...i.haystacks.keys()].join(', ')}: none found`
        : hits.slice(0, 4).join('; '),
  };
}

/** Every check of the summary, in display order. */
export function checkInvariants(i: SummaryInput): Check[] {
  return [
    finalStates(i),
    noDoubleCharge(i),
    ...refundChecks(i),
    noDoublePayout(i),
    everyEventDelivered(i),
    badMessagesInDlq(i),
    noCardData(i),
  ].filter((c): c is Check => c !== undefined);
}

/**
 * The summary table: one PASS/FAIL line per check. Details wrap under their column to fit `width`;
 * on a narrow terminal they go on their own lines under the check instead.
 */
export function renderSummary(checks: readonly Check[], width = 160): string {
  const nameWidth = Math.max(...checks.map((c) => c.name.length));
  const beside = 6 + nameWidth + 2;
  const narrow = width - beside < 50;
  const indent = narrow ? 6 : beside;
  const room = Math.max(30, width - indent);
  const lines: string[] = [];
  for (const c of checks) {
    const parts = wrap(c.detail, room);
    const head = `${c.ok ? 'PASS' : 'FAIL'}  ${narrow ? c.name : c.name.padEnd(nameWidth)}`;
    if (narrow) lines.push(head);
    else lines.push(`${head}  ${parts.shift() ?? ''}`);
    for (const more of parts) lines.push(`${' '.repeat(indent)}${more}`);
  }
  const failed = checks.filter((c) => !c.ok).length;
  lines.push('');
  lines.push(failed === 0 ? `all ${checks.length} checks passed` : `${failed} of ${checks.length} checks FAILED`);
  return lines.join('\n');
}

/**
 * Word-wrap `text` to lines of at most `width` characters (a longer word gets a line of its own).
 * Breaks at `separator` (e.g. " · ") when given, so list items stay whole.
 */
export function wrap(text: string, width: number, separator = ' '): string[] {
  if (!Number.isFinite(width) || text.length <= width) return [text];
  const out: string[] = [];
  let line = '';
  for (const word of text.split(separator)) {
    if (line && line.length + separator.length + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line}${separator}${word}` : word;
  }
  if (line) out.push(line);
  return out;
}
