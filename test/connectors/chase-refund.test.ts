import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { manualClock, type ManualClock } from '../../shared/core/clock.js';
import { createChaseConnector, type ChaseConnector } from '../../shared/connectors/chase.js';
import { CHASE_PROCESSING_WINDOW_MS } from '../../shared/connectors/chase-window.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { RefundRequest } from '../../shared/connectors/types.js';
import { startChaseSandbox, type ChaseSandbox } from '../../cli/sandbox/chase-server.js';

let fake: ChaseSandbox;
const open: ChaseConnector[] = [];

/** A connector with its own manual clock; a short deadline for the tests where the fake never answers. */
function connector(timeoutMs = 5_000): { chase: ChaseConnector; clock: ManualClock } {
  const clock = manualClock(Date.parse('2026-11-26T10:00:00Z'));
  const chase = createChaseConnector({
    baseUrl: fake.url,
    tokenUrl: fake.tokenUrl,
    clientId: fake.clientId,
    clientSecret: fake.clientSecret,
    merchantId: fake.merchantId,
    timeoutMs,
    clock: clock.now,
  });
  open.push(chase);
  return { chase, clock };
}

beforeAll(async () => {
  fake = await startChaseSandbox();
});
afterAll(async () => {
  await Promise.all(open.map((c) => c.close()));
  await fake.close();
});
afterEach(() => {
  fake.faults.reset();
  fake.release('drop');
});

/** A payment authorised (and captured unless `capture: false`) for 1250 GBP. */
async function payment(chase: ChaseConnector, opts: { capture?: boolean } = {}): Promise<{ chargeId: string; ref: string }> {
  const chargeId = `ch_${randomUUID().slice(0, 8)}`;
  const card = new SensitiveCard({
    number: '4242424242424242',
    exp_month: 12,
    exp_year: 2030,
    cvc: '123',
    cardholder_name: 'Jo',
  });
  const auth = await chase.authorise({
    chargeId,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'REF',
    description: 'refund test',
    idempotencyKey: `payfleet-auth-${randomUUID()}`,
    card,
  });
  if (auth.kind !== 'approved') throw new Error(`expected approved, got ${JSON.stringify(auth)}`);
  if (opts.capture !== false) {
    const cap = await chase.capture({
      chargeId,
      processorRef: auth.processorRef,
      amount: 1250,
      currency: 'GBP',
      idempotencyKey: `payfleet-capture-${chargeId}`,
    });
    expect(cap.kind).toBe('captured');
  }
  return { chargeId, ref: auth.processorRef };
}

const refundOf = (p: { chargeId: string; ref: string }, amount: number): RefundRequest => ({
  chargeId: p.chargeId,
  refundId: `rf-${randomUUID().slice(0, 8)}`,
  processorRef: p.ref,
  amount,
  currency: 'GBP',
  idempotencyKey: `payfleet-refund-${randomUUID()}`,
});

const statsOf = (chargeId: string) => fake.stats().charges[chargeId];

describe('Connector: chase — refunds', () => {
  it('full refund -> refunded with the refund transaction id; both lookups find it; one refund at Chase', async () => {
    const { chase } = connector();
    const p = await payment(chase);
    const r = refundOf(p, 1250);
    const out = await chase.refund(r);
    expect(out).toMatchObject({ kind: 'refunded', refundRef: expect.stringMatching(/^[0-9a-f]{24}$/) });
    const refundRef = out.kind === 'refunded' ? out.refundRef : '';
    expect(await chase.lookupRefund({ ...r, refundRef })).toEqual({ kind: 'refunded', refundRef, amount: 1250 });
    expect(await chase.lookupRefund(r)).toEqual({ kind: 'refunded', refundRef, amount: 1250 });
    expect(statsOf(p.chargeId)).toMatchObject({ capturedAmount: 1250, refunds: 1, refunded: 1250 });
  });

  it('partial refunds up to the captured amount; more is rejected INVALID_AMOUNT', async () => {
    const { chase } = connector();
    const p = await payment(chase);
    expect(await chase.refund(refundOf(p, 500))).toMatchObject({ kind: 'refunded' });
    expect(await chase.refund(refundOf(p, 700))).toMatchObject({ kind: 'refunded' });
    expect(await chase.refund(refundOf(p, 51))).toMatchObject({ kind: 'rejected', code: 'INVALID_AMOUNT' });
    expect(await chase.refund(refundOf(p, 50))).toMatchObject({ kind: 'refunded' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 3, refunded: 1250 });
  });

  it('an over-refund, an uncaptured payment and an unknown one are rejected, and refund nothing', async () => {
    const { chase } = connector();
    const p = await payment(chase);
    expect(await chase.refund(refundOf(p, 1251))).toMatchObject({ kind: 'rejected', code: 'INVALID_AMOUNT' });
    const u = await payment(chase, { capture: false });
    expect(await chase.refund(refundOf(u, 100))).toMatchObject({ kind: 'rejected', code: 'INVALID_TRANSACTION_STATE' });
    expect(await chase.refund(refundOf({ chargeId: 'x', ref: 'nope' }, 100))).toMatchObject({
      kind: 'rejected',
      code: 'NOT_FOUND',
    });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 0 });
    expect(statsOf(u.chargeId)).toMatchObject({ refunds: 0 });
  });

  it('a retry (same request-id) is replayed: the same refund, one at Chase', async () => {
    const { chase } = connector();
    const p = await payment(chase);
    const r = refundOf(p, 400);
    const first = await chase.refund(r);
    expect(await chase.refund(r)).toEqual(first);
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 400, replays: 1 });
  });

  it('timeout after the refund -> ambiguous; lookup by request-id finds it; the retry is looked up, not re-sent', async () => {
    const { chase } = connector(400);
    const p = await payment(chase);
    const r = refundOf(p, 600);
    fake.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/refunds'] });
    expect(await chase.refund(r)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    const found = await chase.lookupRefund(r);
    expect(found).toMatchObject({ kind: 'refunded', amount: 600 });
    expect(await chase.refund(r)).toEqual({ kind: 'refunded', refundRef: found.kind === 'refunded' ? found.refundRef : '' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 600 });
  });

  it('5xx and 429 are retryable and refund nothing', async () => {
    const { chase } = connector();
    const p = await payment(chase);
    fake.faults.update({ rate5xx: 1, paths: ['/refunds'] });
    expect(await chase.refund(refundOf(p, 100))).toMatchObject({ kind: 'error', retryable: true, code: 'PROCESSOR_ERROR' });
    fake.faults.update({ rate5xx: 0, rate429: 1 });
    expect(await chase.refund(refundOf(p, 100))).toMatchObject({ kind: 'error', retryable: true, code: 'RATE_LIMITED' });
    fake.faults.reset();
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 0 });
  });
});

describe('Connector: chase — refunds and the 70-second rule', () => {
  it('nothing found inside the window is unknown and nothing is re-sent; after it, not_found and the retry refunds once', async () => {
    const { chase, clock } = connector(400);
    const p = await payment(chase);
    const r = refundOf(p, 700);
    fake.hold(1, 'refunds');
    expect(await chase.refund(r)).toMatchObject({ kind: 'ambiguous' });
    expect(fake.held).toBe(1);
    clock.advance(10_000);
    expect(await chase.lookupRefund(r)).toMatchObject({
      kind: 'unknown',
      reason: expect.stringContaining('may still be processing'),
    });
    // A repeat inside the window looks up instead of sending: Chase could process it as a second refund.
    const before = fake.stats().totals.requests;
    expect(await chase.refund(r)).toMatchObject({ kind: 'ambiguous' });
    expect(fake.stats().totals.requests - before).toBe(1); // the lookup only
    clock.advance(CHASE_PROCESSING_WINDOW_MS - 10_001);
    expect(await chase.lookupRefund(r)).toMatchObject({ kind: 'unknown' });
    // Chase's expiry drops the request without a record; 70 s after the send "nothing" is final.
    expect(fake.release('drop')).toBe(1);
    clock.advance(1);
    expect(await chase.lookupRefund(r)).toEqual({ kind: 'not_found' });
    expect(await chase.refund(r)).toMatchObject({ kind: 'refunded' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 700 });
  });

  it('a refund that finishes processing late is found by the next lookup: one refund', async () => {
    const { chase, clock } = connector(400);
    const p = await payment(chase);
    const r = refundOf(p, 300);
    fake.hold(1, 'refunds');
    expect(await chase.refund(r)).toMatchObject({ kind: 'ambiguous' });
    fake.release('record');
    clock.advance(5_000);
    // Inside the window the retry looks the request-id up first, and finds the late refund.
    expect(await chase.refund(r)).toMatchObject({ kind: 'refunded' });
    expect(await chase.lookupRefund(r)).toMatchObject({ kind: 'refunded', amount: 300 });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 300, replays: 0 });
  });

  it('a process that never sent the refund (its sender died) waits 70 s from its own first lookup', async () => {
    const { chase, clock } = connector();
    const r = refundOf({ chargeId: 'ch-x', ref: 'whatever' }, 100);
    expect(await chase.lookupRefund(r)).toMatchObject({ kind: 'unknown' });
    clock.advance(CHASE_PROCESSING_WINDOW_MS - 1);
    expect(await chase.lookupRefund(r)).toMatchObject({ kind: 'unknown' });
    clock.advance(1);
    expect(await chase.lookupRefund(r)).toEqual({ kind: 'not_found' });
  });
});
