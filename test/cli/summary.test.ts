/**
 * Unit: the `npm start` summary (cli/demo/summary.ts) is an oracle, so it must be able to fail.
 * Prepare a world where everything held, then break one guarantee at a time.
 */
import { describe, expect, it } from 'vitest';
import type { DeadLetterView } from '../../cli/commands/dlq-letters.js';
import { planDemo } from '../../cli/demo/load.js';
import { checkInvariants, renderSummary, type SummaryInput } from '../../cli/demo/summary.js';

const plan = planDemo({ charges: 24, payouts: 10 });

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
  const charges = new Map<string, { status: string; processor: string; processorRef?: string; authIdempotencyKey?: string }>();
  const stripe: Record<string, { created: number; authorised: number; captured: number }> = {};
  const worldpay: Record<string, { authorisations: number; captures: number }> = {};
  const chase: Record<string, { created: number; authorised: number; captured: number }> = {};
  for (const c of plan.charges) {
    const status = c.expect[0]!;
    charges.set(c.chargeId, {
      status,
      processor: c.processor,
      processorRef: `ref-${c.chargeId}`,
      authIdempotencyKey: `key-${c.chargeId}`,
    });
    const approved = !status.startsWith('AUTHORISATION_REJECTED');
    const captured = status === 'CAPTURED' || status === 'CAPTURE_SUBMITTED' ? 1 : 0;
    if (c.processor === 'stripe') stripe[c.chargeId] = { created: 1, authorised: approved ? 1 : 0, captured };
    if (c.processor === 'worldpay') worldpay[`key-${c.chargeId}`] = { authorisations: approved ? 1 : 0, captures: captured };
    if (c.processor === 'chase') chase[c.chargeId] = { created: 1, authorised: approved ? 1 : 0, captured };
  }
  for (const b of plan.bad) if (b.charge) charges.set(b.charge.chargeId, { status: b.charge.expect, processor: 'stripe' });
  const payouts = new Map(plan.payouts.map((p) => [p.paymentId, p.expect as string | undefined]));
  const perResource = new Map<string, number>([...charges.keys(), ...payouts.keys()].map((id) => [id, 3]));
  const dlq = new Map<string, { view: DeadLetterView; body: string }[]>();
  plan.bad.forEach((b, i) => {
    dlq.set(b.queue, [...(dlq.get(b.queue) ?? []), letter(b.queue, b.code, b.body, i)]);
  });
  return {
    plan,
    charges,
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
    expect(checks).toHaveLength(6);
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
    (b.worldpay as Record<string, { authorisations: number; captures: number }>)[`ref-${wp.chargeId}`] = {
      authorisations: 1,
      captures: 0,
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
