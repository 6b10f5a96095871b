import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import { createStripeConnector, type StripeConnector } from '../../shared/connectors/stripe.js';
import { buildRefundForm } from '../../shared/connectors/stripe-refunds.js';
import type { RefundRequest } from '../../shared/connectors/types.js';
import { startStripeSandbox, STRIPE_REFUND_TEST_CARDS, type StripeSandbox } from '../../cli/sandbox/stripe-server.js';

let fake: StripeSandbox;
let stripe: StripeConnector;
/** A short deadline, for the tests where the fake never answers. */
let quick: StripeConnector;

beforeAll(async () => {
  // Pending refunds stay pending until a test settles them.
  fake = await startStripeSandbox({ refundSettleMs: 3_600_000 });
  stripe = createStripeConnector({ apiKey: fake.apiKey, baseUrl: fake.url, timeoutMs: 5_000 });
  quick = createStripeConnector({ apiKey: fake.apiKey, baseUrl: fake.url, timeoutMs: 400 });
});
afterAll(async () => {
  await stripe.close();
  await quick.close();
  await fake.close();
});
afterEach(() => fake.faults.reset());

/** A PaymentIntent authorised (and captured unless `capture: false`) for 1250 GBP. */
async function payment(opts: { number?: string; capture?: boolean } = {}): Promise<{ chargeId: string; ref: string }> {
  const chargeId = `ch_${randomUUID()}`;
  const card = new SensitiveCard({
    number: opts.number ?? '4242424242424242',
    exp_month: 12,
    exp_year: 2030,
    cvc: '123',
    cardholder_name: 'Jo Bloggs',
  });
  const auth = await stripe.authorise({
    chargeId,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'REF',
    description: 'refund test',
    idempotencyKey: `auth-${chargeId}`,
    card,
  });
  if (auth.kind !== 'approved') throw new Error(`expected approved, got ${JSON.stringify(auth)}`);
  if (opts.capture !== false) {
    const cap = await stripe.capture({
      chargeId,
      processorRef: auth.processorRef,
      amount: 1250,
      currency: 'GBP',
      idempotencyKey: `cap-${chargeId}`,
    });
    expect(cap.kind).toBe('captured');
  }
  return { chargeId, ref: auth.processorRef };
}

const refundOf = (
  p: { chargeId: string; ref: string },
  amount: number,
  key = `payfleet-refund-${randomUUID()}`,
): RefundRequest => ({
  chargeId: p.chargeId,
  refundId: `rf-${randomUUID().slice(0, 8)}`,
  processorRef: p.ref,
  amount,
  currency: 'GBP',
  idempotencyKey: key,
});

const statsOf = (chargeId: string) => fake.stats().charges[chargeId];

describe('Connector: stripe — refunds', () => {
  it('sends payment_intent, amount and the request key in metadata', () => {
    const form = new URLSearchParams(buildRefundForm(refundOf({ chargeId: 'ch-1', ref: 'pi_1' }, 500, 'k-1')));
    expect(Object.fromEntries(form)).toMatchObject({
      payment_intent: 'pi_1',
      amount: '500',
      'metadata[chargeId]': 'ch-1',
      'metadata[refundKey]': 'k-1',
    });
  });

  it('full refund -> refunded (re_…); lookup by id says refunded; one refund at Stripe', async () => {
    const p = await payment();
    const r = refundOf(p, 1250);
    const out = await stripe.refund(r);
    expect(out).toMatchObject({ kind: 'refunded', refundRef: expect.stringMatching(/^re_/) });
    const refundRef = out.kind === 'refunded' ? out.refundRef : '';
    expect(await stripe.lookupRefund({ ...r, refundRef })).toEqual({ kind: 'refunded', refundRef, amount: 1250 });
    expect(statsOf(p.chargeId)).toMatchObject({ capturedAmount: 1250, refunds: 1, refunded: 1250 });
  });

  it('partial refunds up to the captured amount; more is rejected, nothing refunded beyond it', async () => {
    const p = await payment();
    expect(await stripe.refund(refundOf(p, 500))).toMatchObject({ kind: 'refunded' });
    expect(await stripe.refund(refundOf(p, 700))).toMatchObject({ kind: 'refunded' });
    expect(await stripe.refund(refundOf(p, 51))).toMatchObject({ kind: 'rejected', code: 'amount_too_large' });
    expect(await stripe.refund(refundOf(p, 50))).toMatchObject({ kind: 'refunded' });
    expect(await stripe.refund(refundOf(p, 1))).toMatchObject({ kind: 'rejected', code: 'charge_already_refunded' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 3, refunded: 1250 });
  });

  it('an over-refund is rejected (amount_too_large) and creates nothing', async () => {
    const p = await payment();
    expect(await stripe.refund(refundOf(p, 1251))).toMatchObject({ kind: 'rejected', code: 'amount_too_large' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 0, refunded: 0 });
  });

  it('an uncaptured or unknown payment is rejected', async () => {
    const p = await payment({ capture: false });
    expect(await stripe.refund(refundOf(p, 100))).toMatchObject({ kind: 'rejected', code: 'payment_intent_unexpected_state' });
    expect(await stripe.refund(refundOf({ chargeId: 'x', ref: 'pi_nope' }, 100))).toMatchObject({
      kind: 'rejected',
      code: 'resource_missing',
    });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 0 });
  });

  it('a retry under the same key is replayed: the same refund, one at Stripe; other parameters -> IDEMPOTENCY_KEY_REUSED', async () => {
    const p = await payment();
    const r = refundOf(p, 400);
    const first = await stripe.refund(r);
    expect(await stripe.refund(r)).toEqual(first);
    expect(await stripe.refund({ ...r, amount: 401 })).toMatchObject({
      kind: 'error',
      retryable: false,
      code: 'IDEMPOTENCY_KEY_REUSED',
    });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 400, replays: 1 });
  });

  it('timeout after the refund -> ambiguous; lookup by key finds it; the retry is replayed: one refund', async () => {
    const p = await payment();
    const r = refundOf(p, 600);
    fake.faults.update({ rules: [{ method: 'POST', paths: ['/v1/refunds'], rateTimeoutAfterSuccess: 1 }] });
    expect(await quick.refund(r)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    const found = await stripe.lookupRefund(r);
    expect(found).toMatchObject({ kind: 'refunded', amount: 600, refundRef: expect.stringMatching(/^re_/) });
    const again = await stripe.refund(r);
    expect(again).toEqual({ kind: 'refunded', refundRef: found.kind === 'refunded' ? found.refundRef : '' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 600 });
  });

  it('a reset before Stripe acted -> ambiguous; lookup not_found; the retry refunds once', async () => {
    const p = await payment();
    const r = refundOf(p, 300);
    fake.faults.update({ rules: [{ method: 'POST', paths: ['/v1/refunds'], rateReset: 1 }] });
    expect(await stripe.refund(r)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    expect(await stripe.lookupRefund(r)).toEqual({ kind: 'not_found' });
    expect(await stripe.refund(r)).toMatchObject({ kind: 'refunded' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 300 });
  });

  it('5xx and 429 are retryable and create nothing', async () => {
    const p = await payment();
    fake.faults.update({ rate5xx: 1 });
    expect(await stripe.refund(refundOf(p, 100))).toMatchObject({ kind: 'error', retryable: true, code: 'PROCESSOR_ERROR' });
    fake.faults.update({ rate5xx: 0, rate429: 1, retryAfterSec: 2 });
    expect(await stripe.refund(refundOf(p, 100))).toMatchObject({
      kind: 'error',
      retryable: true,
      code: 'RATE_LIMITED',
      retryAfterMs: 2000,
    });
    fake.faults.reset();
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 0 });
  });

  it('a pending refund is submitted and stays pending until Stripe confirms it (refund test card 4000000000007726)', async () => {
    const p = await payment({ number: STRIPE_REFUND_TEST_CARDS.pendingThenSucceeded });
    const r = refundOf(p, 1250);
    const out = await stripe.refund(r);
    expect(out).toMatchObject({ kind: 'submitted', refundRef: expect.stringMatching(/^re_/) });
    const refundRef = out.kind === 'submitted' ? out.refundRef : undefined;
    expect(await stripe.lookupRefund({ ...r, refundRef })).toEqual({ kind: 'pending', refundRef, amount: 1250 });
    expect(await stripe.lookupRefund(r)).toEqual({ kind: 'pending', refundRef, amount: 1250 });
    // A pending refund holds its amount: nothing more can be refunded meanwhile.
    expect(await stripe.refund(refundOf(p, 1))).toMatchObject({ kind: 'rejected', code: 'charge_already_refunded' });
    expect(fake.settleRefunds()).toBe(1);
    expect(await stripe.lookupRefund({ ...r, refundRef })).toEqual({ kind: 'refunded', refundRef, amount: 1250 });
  });

  it('a refund that fails after submission (test card 4000000000005126) is failed, and its amount is free again', async () => {
    const p = await payment({ number: STRIPE_REFUND_TEST_CARDS.pendingThenFailed });
    const r = refundOf(p, 1000);
    expect(await stripe.refund(r)).toMatchObject({ kind: 'submitted' });
    fake.settleRefunds();
    expect(await stripe.lookupRefund(r)).toMatchObject({ kind: 'failed', code: 'expired_or_canceled_card' });
    expect(statsOf(p.chargeId)).toMatchObject({ refunds: 1, refunded: 0 });
  });

  it('POST /__sandbox/refunds/settle settles pending refunds over HTTP', async () => {
    fake.settleRefunds(); // those other tests left pending
    const p = await payment({ number: STRIPE_REFUND_TEST_CARDS.pendingThenSucceeded });
    const r = refundOf(p, 100);
    expect(await stripe.refund(r)).toMatchObject({ kind: 'submitted' });
    const res = await fetch(`${fake.url}/__sandbox/refunds/settle`, { method: 'POST' });
    expect(await res.json()).toEqual({ settled: 1 });
    expect(await stripe.lookupRefund(r)).toMatchObject({ kind: 'refunded', amount: 100 });
  });

  it('lookup of a refund never sent -> not_found; of an unknown id -> not_found', async () => {
    const p = await payment();
    expect(await stripe.lookupRefund(refundOf(p, 100))).toEqual({ kind: 'not_found' });
    expect(await stripe.lookupRefund({ ...refundOf(p, 100), refundRef: 're_nope' })).toEqual({ kind: 'not_found' });
  });
});
