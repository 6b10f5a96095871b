/**
 * Unit: the `npm start` summary (cli/demo/summary.ts) is an oracle, so it must be able to fail.
 * Prepare a world where everything held, then break one guarantee at a time.
 */
import { describe, expect, it } from 'vitest';
import type { DeadLetterView } from '../../cli/commands/dlq-letters.js';
import { planDemo } from '../../cli/demo/load.js';
import type { ProcessorRefunds, StoredRefund } from '../../cli/demo/refund-checks.js';
import { checkInvariants, renderSummary, type SummaryInput } from '../../cli/demo/summary.js';

const plan = planDemo({ charges: 24, payouts: 10 });
/** The refunds the plan expects REFUNDED, and the refused ones. */
const refunded = plan.refunds.filter((r) => 'status' in r.expect);
const refused = plan.refunds.filter((r) => 'dlq' in r.expect);

function letter(queue: string, code: string, body: string, i: number): { view: DeadLetterView; body: string } {
  return {
    body,
    view: {
      messageId: `m-${i}`,
      sourceMessageId: `s-${i}`,
      code,
      detail: `because ${code}`,
      worker: queue.split('-')[0]!,
      attempts: 1,
      failedAt: new Date().toISOString(),
      sourceQueue: `payfleet-${queue}.fifo`,
      groupId: `g-${i}`,
      movedBySqs: false,
      sentAt: null,
      bodyBytes: body.length,
      redrives: 0,
      lineage: [],
      redriveRun: null,
    },
  };
}

/** Everything as it should be. */
function healthy(): SummaryInput {
  const charges = new Map<
    string,
    {
      status: string;
      processor: string;
      processorRef?: string;
      authIdempotencyKey?: string;
      amount?: number;
      refundedAmount?: number;
    }
  >();
  const stripe: Record<string, { created: number; authorised: number; captured: number } & ProcessorRefunds> = {};
  const worldpay: Record<string, { authorisations: number; captures: number; duplicateRefunds: number } & ProcessorRefunds> = {};
  const chase: Record<string, { created: number; authorised: number; captured: number } & ProcessorRefunds> = {};
  for (const c of plan.charges) {
    const status = c.expect[0]!;
    const mine = refunded.filter((r) => r.chargeId === c.chargeId);
    const refundedAmount = mine.reduce((n, r) => n + r.amount, 0);
    charges.set(c.chargeId, {
      status,
      processor: c.processor,
      processorRef: `ref-${c.chargeId}`,
      authIdempotencyKey: `key-${c.chargeId}`,
      amount: c.amount,
      ...(refundedAmount > 0 ? { refundedAmount } : {}),
    });
    const approved = !status.startsWith('AUTHORISATION_REJECTED');
    const captured = status === 'CAPTURED' || status === 'CAPTURE_SUBMITTED' ? 1 : 0;
    const refunds = { refunds: mine.length, refunded: refundedAmount, capturedAmount: captured ? c.amount : 0 };
    if (c.processor === 'stripe') stripe[c.chargeId] = { created: 1, authorised: approved ? 1 : 0, captured, ...refunds };
    if (c.processor === 'worldpay')
      worldpay[`key-${c.chargeId}`] = { authorisations: approved ? 1 : 0, captures: captured, duplicateRefunds: 0, ...refunds };
    if (c.processor === 'chase') chase[c.chargeId] = { created: 1, authorised: approved ? 1 : 0, captured, ...refunds };
  }
  const refundRows = new Map<string, StoredRefund>(
    refunded.map((r) => [
      r.refundId,
      { status: 'REFUNDED', chargeId: r.chargeId, amount: r.amount, refundRequestId: r.refundRequestId },
    ]),
  );
  const ledgerRefunds = new Map(
    refunded.map((r) => [
      r.refundId,
      { types: ['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_SUCCEEDED'], parents: [r.chargeId, r.chargeId, r.chargeId] },
    ]),
  );
  for (const b of plan.bad) if (b.charge) charges.set(b.charge.chargeId, { status: b.charge.expect, processor: 'stripe' });
  const payouts = new Map(plan.payouts.map((p) => [p.paymentId, p.expect as string | undefined]));
  const perResource = new Map<string, number>([...charges.keys(), ...payouts.keys()].map((id) => [id, 3]));
  const dlq = new Map<string, { view: DeadLetterView; body: string }[]>();
  plan.bad.forEach((b, i) => {
    dlq.set(b.queue, [...(dlq.get(b.queue) ?? []), letter(b.queue, b.code, b.body, i)]);
  });
  refused.forEach((r, i) => {
    const code = 'dlq' in r.expect ? r.expect.dlq : '';
    dlq.set('refund-requests', [...(dlq.get('refund-requests') ?? []), letter('refund-requests', code, r.body, 500 + i)]);
  });
  return {
    plan,
    charges,
    refunds: refundRows,
    payouts,
    stripe,
    worldpay,
    chase,
    lhvInitiations: Object.fromEntries(plan.payouts.map((p) => [p.paymentId, 1])),
    lhvRequests: 3,
    payoutShards: 4,
    outbox: { perResource, pending: 0, total: perResource.size * 3 },
    ledger: {
      received: perResource.size * 3,
      unique: perResource.size * 3,
      resources: perResource.size,
      duplicates: [],
      invalid: [],
      mismatches: [],
      gaps: [],
      reorders: [],
    },
    ledgerMissing: [],
    ledgerRefunds,
    dlq,
    haystacks: new Map([['auth log', '{"msg":"authorisation recorded","last4":"4242"}']]),
  };
}

const failing = (i: SummaryInput) =>
  checkInvariants(i)
    .filter((c) => !c.ok)
    .map((c) => c.name);

describe('checkInvariants', () => {
  it('passes a run where every guarantee held, and renders PASS lines', () => {
    const checks = checkInvariants(healthy());
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks).toHaveLength(10);
    expect(renderSummary(checks)).toMatch(/^PASS {2}every good message reached its final state/);
  });

  it('fails "no double charge" on a second Stripe capture or a second Worldpay order', () => {
    const a = healthy();
    const stripeCharge = plan.charges.find((c) => c.processor === 'stripe' && c.expect.includes('CAPTURED'))!;
    (a.stripe as Record<string, { created: number; authorised: number; captured: number }>)[stripeCharge.chargeId]!.captured = 2;
    expect(failing(a)).toEqual(['no double charge (Stripe, Worldpay and Chase counters)']);

    const b = healthy();
    const wp = plan.charges.find((c) => c.processor === 'worldpay')!;
    // A second order for the same charge: its processorRef is another orderCode that also authorised.
    (b.worldpay as Record<string, { authorisations: number; captures: number; duplicateRefunds: number } & ProcessorRefunds>)[`ref-${wp.chargeId}`] = {
      authorisations: 1,
      captures: 0,
      duplicateRefunds: 0,
      refunds: 0,
      refunded: 0,
      capturedAmount: 0,
    };
    expect(failing(b)).toEqual(['no double charge (Stripe, Worldpay and Chase counters)']);

    const c = healthy();
    const chaseCharge = plan.charges.find((x) => x.processor === 'chase' && x.expect.includes('CAPTURED'))!;
    (c.chase as Record<string, { created: number; authorised: number; captured: number }>)[chaseCharge.chargeId]!.created = 2;
    expect(failing(c)).toEqual(['no double charge (Stripe, Worldpay and Chase counters)']);
  });

  it('fails "no double payout" on a second initiation, and final states on a missing payout', () => {
    const a = healthy();
    (a.lhvInitiations as Record<string, number>)[plan.payouts[0]!.paymentId] = 2;
    expect(failing(a)).toEqual(['no double payout (LHV initiations per payment)']);
    const b = healthy();
    (b.payouts as Map<string, string | undefined>).set(plan.payouts[1]!.paymentId, 'INITIATED');
    expect(failing(b)).toEqual(['every good message reached its final state']);
  });

  it('fails "every event delivered" on a gap, a reorder, an unemitted event or a missing resource', () => {
    const gap = { ...healthy(), ledger: { ...healthy().ledger, gaps: [{ resourceId: 'x', missing: [2] }] } };
    const order = { ...healthy(), ledger: { ...healthy().ledger, reorders: [{ resourceId: 'x', sequence: 2, after: 3 }] } };
    const pending = { ...healthy(), outbox: { ...healthy().outbox, pending: 1 } };
    const missing = { ...healthy(), ledgerMissing: ['ch-1: expected sequences 1..3, got 2 (highest 2)'] };
    for (const i of [gap, order, pending, missing])
      expect(failing(i)).toEqual(['every event delivered (Ledger consumer: once, in order)']);
  });

  it('fails the DLQ check on a missing letter, a wrong code, a changed body or an unexpected letter', () => {
    const firstQueue = plan.bad[0]!.queue;
    const mutate = (f: (letters: { view: DeadLetterView; body: string }[]) => void) => {
      const i = healthy();
      const letters = [...(i.dlq.get(firstQueue) ?? [])];
      f(letters);
      (i.dlq as Map<string, unknown>).set(firstQueue, letters);
      return failing(i);
    };
    const dlqCheck = ['every bad message in a DLQ with its reason'];
    expect(mutate((l) => l.shift())).toEqual(dlqCheck);
    expect(mutate((l) => (l[0] = { ...l[0]!, view: { ...l[0]!.view, code: 'RETRIES_EXHAUSTED' } }))).toEqual(dlqCheck);
    expect(mutate((l) => (l[0] = { ...l[0]!, body: `${l[0]!.body} ` }))).toEqual(dlqCheck);
    expect(mutate((l) => l.push(letter(firstQueue, 'RETRIES_EXHAUSTED', '{"good":"message"}', 99)))).toEqual(dlqCheck);
  });

  it('fails the card-data check when a card number shows up anywhere', () => {
    const i = healthy();
    (i.haystacks as Map<string, string>).set('capture log', `{"msg":"oops ${plan.cardNumbers[0]}"}`);
    expect(failing(i)).toEqual(['no card number in logs, tables, events or DLQs']);
  });
});

describe('the demo refunds (cli/demo/refund-load.ts)', () => {
  it('a 20-charge load (npm start test) has every refund kind, at all four processors', () => {
    const small = planDemo({ charges: 20, payouts: 0 });
    const kinds = new Set(small.refunds.map((r) => r.kind));
    expect([...kinds].sort()).toEqual(
      ['duplicate', 'full', 'not captured', 'over-refund: exceeds', 'over-refund: partial', 'partial'].sort(),
    );
    const processors = new Set(small.refunds.filter((r) => 'status' in r.expect).map((r) => r.processor));
    expect([...processors].sort()).toEqual(['chase', 'sandbox', 'stripe', 'worldpay']);
  });

  it('partials sum to the charge, an over-refund exceeds what is left by one, and refunds wait for the capture', () => {
    const big = planDemo({ charges: 140, payouts: 0 });
    const amountOf = new Map(big.charges.map((c) => [c.chargeId, c.amount]));
    const byCharge = new Map<string, typeof big.refunds>();
    for (const r of big.refunds) byCharge.set(r.chargeId, [...(byCharge.get(r.chargeId) ?? []), r]);
    for (const [chargeId, refunds] of byCharge) {
      const amount = amountOf.get(chargeId)!;
      const done = refunds.filter((r) => 'status' in r.expect).reduce((n, r) => n + r.amount, 0);
      const over = refunds.find((r) => r.kind === 'over-refund: exceeds');
      if (over) {
        const first = refunds.find((r) => r.kind === 'over-refund: partial')!;
        expect(over.afterRefund).toBe(first.refundId);
        expect(first.amount + over.amount).toBe(amount + 1);
        expect(over.expect).toEqual({ dlq: 'REFUND_AMOUNT_UNAVAILABLE' });
      } else if (refunds[0]!.kind === 'not captured') {
        expect(refunds[0]!.whenCharge).toEqual(['AUTHORISATION_SUCCESS']);
        expect(refunds[0]!.expect).toEqual({ dlq: 'NOT_REFUNDABLE' });
      } else expect(done).toBe(amount);
      for (const r of refunds) {
        if (r.kind !== 'not captured') expect(r.whenCharge).toEqual(['CAPTURED', 'CAPTURE_SUBMITTED']);
        // The sandbox processor's magic refund amounts (shared/connectors/sandbox.ts) would change the outcome.
        expect([7001, 7002, 7003, 7004, 7005]).not.toContain(r.amount);
        expect(JSON.parse(r.body)).toMatchObject({ type: 'RefundRequested', refundId: r.refundId, chargeId, amount: r.amount });
      }
    }
    // A share of the captured charges keeps its money.
    const captured = big.charges.filter(
      (c) => c.capture && c.expect.every((s) => s.startsWith('CAPTURE') && s !== 'CAPTURE_ERROR'),
    );
    const untouched = captured.filter((c) => !byCharge.has(c.chargeId));
    expect(untouched.length).toBeGreaterThan(0);
    expect(untouched.length).toBeLessThan(captured.length);
  });
});

describe('checkInvariants: refunds', () => {
  const asPlanned = ['every refund reached its planned outcome'];
  const withinCaptured = ['refunded never more than captured (charges and processors)'];
  const oncePerRequest = ['at most one refund per request at each processor'];
  const ledgerSaw = ['every refund seen by the Ledger (REFUND_* events)'];
  const rows = (i: SummaryInput) => i.refunds as Map<string, StoredRefund>;

  it('fails "planned outcome" on a refund left REFUND_SUBMITTED, a missing or wrong-coded letter, or a refund made for a refused request', () => {
    const r = refunded[0]!;
    const a = healthy();
    rows(a).set(r.refundId, { ...rows(a).get(r.refundId)!, status: 'REFUND_SUBMITTED' });
    expect(failing(a)).toEqual(asPlanned);

    const b = healthy();
    (b.dlq as Map<string, unknown>).set('refund-requests', (b.dlq.get('refund-requests') ?? []).slice(1));
    expect(failing(b)).toEqual(asPlanned);

    const c = healthy();
    const letters = [...(c.dlq.get('refund-requests') ?? [])];
    letters[0] = { ...letters[0]!, view: { ...letters[0]!.view, code: 'RETRIES_EXHAUSTED' } };
    (c.dlq as Map<string, unknown>).set('refund-requests', letters);
    expect(failing(c)).toEqual(asPlanned);

    const d = healthy();
    const no = refused.find((x) => x.kind === 'over-refund: exceeds')!;
    rows(d).set(no.refundId, {
      status: 'REFUND_ERROR',
      chargeId: no.chargeId,
      amount: no.amount,
      refundRequestId: no.refundRequestId,
    });
    expect(failing(d)).toEqual(asPlanned);
  });

  it('a letter for a refund that should have been REFUNDED is unexpected in the DLQ check', () => {
    const i = healthy();
    const r = refunded[0]!;
    const letters = [...(i.dlq.get('refund-requests') ?? []), letter('refund-requests', 'PROCESSOR_REJECTED', r.body, 900)];
    (i.dlq as Map<string, unknown>).set('refund-requests', letters);
    expect(failing(i)).toEqual(['every bad message in a DLQ with its reason']);
  });

  it('fails "refunded never more than captured" on a charge or a processor refunding more than was captured', () => {
    const r = refunded.find((x) => x.processor === 'stripe')!;
    const a = healthy();
    const charges = a.charges as Map<string, { status: string; processor: string; amount?: number; refundedAmount?: number }>;
    const charge = charges.get(r.chargeId)!;
    charges.set(r.chargeId, { ...charge, refundedAmount: charge.amount! + 1 });
    expect(failing(a)).toEqual(withinCaptured);

    const b = healthy();
    const s = (b.stripe as Record<string, ProcessorRefunds>)[r.chargeId]!;
    (b.stripe as Record<string, ProcessorRefunds>)[r.chargeId] = { ...s, refunded: s.capturedAmount + 1 };
    expect(failing(b)).toEqual(withinCaptured);

    const w = refunded.find((x) => x.processor === 'worldpay')!;
    const c = healthy();
    const o = (c.worldpay as Record<string, ProcessorRefunds>)[`key-${w.chargeId}`]!;
    (c.worldpay as Record<string, ProcessorRefunds>)[`key-${w.chargeId}`] = { ...o, refunded: o.refunded - 1 };
    expect(failing(c)).toEqual(withinCaptured);
  });

  it('fails "at most one refund per request" when a processor performed a re-sent refund twice', () => {
    for (const processor of ['stripe', 'worldpay', 'chase'] as const) {
      const r = refunded.find((x) => x.processor === processor)!;
      const i = healthy();
      const table = i[processor] as Record<string, ProcessorRefunds>;
      const key = processor === 'worldpay' ? `key-${r.chargeId}` : r.chargeId;
      table[key] = { ...table[key]!, refunds: table[key]!.refunds + 1 };
      expect(failing(i), processor).toEqual(oncePerRequest);
    }
  });

  it('fails "seen by the Ledger" on a missing REFUND_SUCCEEDED, a wrong parent, or events for a refused request', () => {
    const r = refunded[0]!;
    const events = (i: SummaryInput) => i.ledgerRefunds as Map<string, { types: string[]; parents: string[] }>;
    const a = healthy();
    events(a).set(r.refundId, { types: ['REFUND_CREATED', 'REFUND_SUBMITTED'], parents: [r.chargeId, r.chargeId] });
    expect(failing(a)).toEqual(ledgerSaw);

    const b = healthy();
    events(b).set(r.refundId, { ...events(b).get(r.refundId)!, parents: [r.chargeId, r.chargeId, 'ch-other'] });
    expect(failing(b)).toEqual(ledgerSaw);

    const c = healthy();
    events(c).set(refused[0]!.refundId, { types: ['REFUND_CREATED'], parents: [refused[0]!.chargeId] });
    expect(failing(c)).toEqual(ledgerSaw);
  });
});
