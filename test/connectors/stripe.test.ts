import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import { buildAuthoriseForm, createStripeConnector, type StripeConnector } from '../../shared/connectors/stripe.js';
import type { AuthoriseOutcome, AuthoriseRequest } from '../../shared/connectors/types.js';
import { startHttpServer } from '../../cli/sandbox/http-server.js';
import { startStripeSandbox, STRIPE_SANDBOX_MISMATCH_AMOUNT, type StripeSandbox } from '../../cli/sandbox/stripe-server.js';

let fake: StripeSandbox;
let stripe: StripeConnector;
/** A short deadline, for the tests where the fake never answers. */
let quick: StripeConnector;

function request(overrides: Partial<Omit<AuthoriseRequest, 'card'>> & { number?: string } = {}): AuthoriseRequest {
  const { number = '4242424242424242', ...rest } = overrides;
  const chargeId = rest.chargeId ?? `ch_${randomUUID()}`;
  return {
    chargeId,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'REF-1',
    description: 'Test payment',
    idempotencyKey: `auth-${chargeId}`,
    card: new SensitiveCard({ number, exp_month: 12, exp_year: 2030, cvc: '123', cardholder_name: 'Jo Bloggs' }),
    ...rest,
  };
}

const statsOf = (chargeId: string) =>
  fake.stats().charges[chargeId] ?? { created: 0, authorised: 0, declined: 0, captured: 0, canceled: 0, replays: 0 };

function approved(out: AuthoriseOutcome): string {
  if (out.kind !== 'approved') throw new Error(`expected approved, got ${JSON.stringify(out)}`);
  return out.processorRef;
}

beforeAll(async () => {
  fake = await startStripeSandbox();
  stripe = createStripeConnector({ apiKey: fake.apiKey, baseUrl: fake.url, timeoutMs: 5_000 });
  quick = createStripeConnector({ apiKey: fake.apiKey, baseUrl: fake.url, timeoutMs: 400 });
});
afterAll(async () => {
  await stripe.close();
  await quick.close();
  await fake.close();
});
afterEach(() => fake.faults.reset());

describe('Connector: stripe — authorise', () => {
  it('approves (requires_capture) and sends the PaymentIntent Stripe expects', async () => {
    const req = request();
    const out = await stripe.authorise(req);
    expect(out).toMatchObject({ kind: 'approved', amount: 1250, currency: 'GBP' });
    const ref = approved(out);
    expect(ref).toMatch(/^pi_/);
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, authorised: 1 });
    const pi = (await (
      await fetch(`${fake.url}/v1/payment_intents/${ref}`, { headers: { authorization: `Bearer ${fake.apiKey}` } })
    ).json()) as Record<string, unknown>;
    expect(pi).toMatchObject({
      status: 'requires_capture',
      capture_method: 'manual',
      currency: 'gbp',
      amount: 1250,
      description: 'Test payment',
    });
    expect(pi.metadata).toMatchObject({ chargeId: req.chargeId, reference: 'REF-1' });
  });

  it('builds the form with nested keys, lower-case currency, confirm and manual capture', () => {
    const form = new URLSearchParams(buildAuthoriseForm(request({ chargeId: 'ch_1' })));
    expect(Object.fromEntries(form)).toMatchObject({
      amount: '1250',
      currency: 'gbp',
      confirm: 'true',
      capture_method: 'manual',
      'payment_method_types[0]': 'card',
      'payment_method_data[type]': 'card',
      'payment_method_data[card][number]': '4242424242424242',
      'payment_method_data[card][exp_month]': '12',
      'payment_method_data[card][exp_year]': '2030',
      'payment_method_data[card][cvc]': '123',
      'payment_method_data[billing_details][name]': 'Jo Bloggs',
      'metadata[chargeId]': 'ch_1',
      description: 'Test payment',
    });
  });

  it.each([
    ['4000000000000002', 'generic_decline'],
    ['4000000000009995', 'insufficient_funds'],
    ['4000000000000069', 'expired_card'],
  ])('402 card_error for %s -> declined %s, with the PaymentIntent as reference', async (number, code) => {
    const req = request({ number });
    const out = await stripe.authorise(req);
    expect(out).toMatchObject({ kind: 'declined', code });
    expect(out.processorRef).toMatch(/^pi_/);
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, declined: 1, authorised: 0 });
  });

  it('an incorrect number is declined before a PaymentIntent exists', async () => {
    const out = await stripe.authorise(request({ number: '4242424242424241' }));
    expect(out).toMatchObject({ kind: 'declined', code: 'incorrect_number' });
    expect(out.processorRef).toBeUndefined();
  });

  it('3-D Secure required (requires_action) -> declined authentication_required', async () => {
    expect(await stripe.authorise(request({ number: '4000002500003155' }))).toMatchObject({
      kind: 'declined',
      code: 'authentication_required',
    });
  });

  it('429 -> retryable (Retry-After honoured), then the retry under the same key succeeds once', async () => {
    const req = request();
    fake.faults.update({ rate429: 1, retryAfterSec: 3 });
    expect(await stripe.authorise(req)).toMatchObject({
      kind: 'error',
      retryable: true,
      code: 'RATE_LIMITED',
      retryAfterMs: 3000,
    });
    expect(statsOf(req.chargeId).created).toBe(0);
    fake.faults.reset();
    expect(await stripe.authorise(req)).toMatchObject({ kind: 'approved' });
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, replays: 0 });
  });

  it('5xx -> retryable', async () => {
    fake.faults.update({ rate5xx: 1 });
    expect(await stripe.authorise(request())).toMatchObject({ kind: 'error', retryable: true, code: 'PROCESSOR_ERROR' });
  });

  it('a repeated authorise is replayed: same PaymentIntent, one creation', async () => {
    const req = request();
    const a = approved(await stripe.authorise(req));
    const b = approved(await stripe.authorise(req));
    expect(b).toBe(a);
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, authorised: 1, replays: 1 });
  });

  it('same key, different parameters -> non-retryable idempotency error', async () => {
    const req = request();
    approved(await stripe.authorise(req));
    expect(await stripe.authorise({ ...req, amount: 999 })).toMatchObject({
      kind: 'error',
      retryable: false,
      code: 'IDEMPOTENCY_KEY_REUSED',
    });
    expect(statsOf(req.chargeId).created).toBe(1);
  });

  it('same key while the first request is in flight -> 409 idempotency_key_in_use, retryable', async () => {
    // Whichever of the two arrives first is processed for 2 s; the other arrives inside that window.
    const slowFake = await startStripeSandbox({ processingDelayMs: 2_000 });
    const s = createStripeConnector({ apiKey: slowFake.apiKey, baseUrl: slowFake.url, timeoutMs: 20_000 });
    const req = request();
    const answers = await Promise.all([s.authorise(req), s.authorise(req)]);
    const kinds = answers.map((a) => a.kind).sort();
    expect(kinds).toEqual(['approved', 'error']);
    expect(answers.find((a) => a.kind === 'error')).toMatchObject({ kind: 'error', retryable: true, code: 'idempotency_key_in_use' });
    expect(slowFake.stats().charges[req.chargeId]).toMatchObject({ created: 1 });
    await s.close();
    await slowFake.close();
  });

  it('amount mismatch in the answer -> non-retryable AMOUNT_MISMATCH, never approved', async () => {
    const req = request({ amount: STRIPE_SANDBOX_MISMATCH_AMOUNT });
    const out = await stripe.authorise(req);
    expect(out).toMatchObject({ kind: 'error', retryable: false, code: 'AMOUNT_MISMATCH' });
    expect(out.processorRef).toMatch(/^pi_/);
  });

  it('timeout after success -> ambiguous; lookup (replay) finds it authorised; one creation', async () => {
    const req = request();
    fake.faults.update({ rateTimeoutAfterSuccess: 1 });
    expect(await quick.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    expect(statsOf(req.chargeId).created).toBe(1);
    fake.faults.reset();
    const look = await stripe.lookup({
      chargeId: req.chargeId,
      idempotencyKey: req.idempotencyKey,
      amount: 1250,
      currency: 'GBP',
      original: req,
    });
    expect(look).toMatchObject({ kind: 'authorised', amount: 1250, currency: 'GBP' });
    // Search by chargeId (no original) finds the same PaymentIntent.
    const searched = await stripe.lookup({
      chargeId: req.chargeId,
      idempotencyKey: req.idempotencyKey,
      amount: 1250,
      currency: 'GBP',
    });
    expect(searched).toEqual(look);
    // And a plain retry of the authorise is the same PaymentIntent too.
    expect(approved(await stripe.authorise(req))).toBe(look.kind === 'authorised' ? look.processorRef : 'x');
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, authorised: 1 });
  });

  it('reset after success -> ambiguous, and the effect was recorded once', async () => {
    const req = request();
    fake.faults.update({ rateResetAfterSuccess: 1 });
    expect(await stripe.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    expect(
      await stripe.lookup({
        chargeId: req.chargeId,
        idempotencyKey: req.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
        original: req,
      }),
    ).toMatchObject({
      kind: 'authorised',
    });
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1 });
  });

  it("lookup of an ambiguous authorise that never reached Stripe's core performs it once", async () => {
    const req = request();
    fake.faults.update({ rateReset: 1 });
    expect(await stripe.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    expect(statsOf(req.chargeId).created).toBe(0);
    fake.faults.reset();
    expect(
      await stripe.lookup({ chargeId: req.chargeId, idempotencyKey: req.idempotencyKey, amount: 1250, currency: 'GBP' }),
    ).toMatchObject({ kind: 'unknown' });
    expect(
      await stripe.lookup({
        chargeId: req.chargeId,
        idempotencyKey: req.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
        original: req,
      }),
    ).toMatchObject({
      kind: 'authorised',
    });
    expect(statsOf(req.chargeId).created).toBe(1);
  });

  it('nothing listening -> retryable PROCESSOR_UNREACHABLE (not sent)', async () => {
    const dead = await startHttpServer((_q, r) => r.end());
    await dead.close();
    const s = createStripeConnector({ apiKey: 'k', baseUrl: dead.url, timeoutMs: 500 });
    expect(await s.authorise(request())).toMatchObject({ kind: 'error', retryable: true, code: 'PROCESSOR_UNREACHABLE' });
    await s.close();
  });

  it('a wrong API key is reported without the key', async () => {
    const s = createStripeConnector({ apiKey: 'sk_test_wrong_secret', baseUrl: fake.url });
    const out = await s.authorise(request());
    expect(out).toMatchObject({ kind: 'error', code: 'PROCESSOR_UNAUTHORISED' });
    expect(JSON.stringify(out)).not.toContain('wrong_secret');
    await s.close();
  });

  it('no outcome carries card data', async () => {
    const outs = await Promise.all(
      ['4242424242424242', '4000000000000002', '4242424242424241'].map((number) => stripe.authorise(request({ number }))),
    );
    const text = JSON.stringify(outs);
    expect(text).not.toMatch(/424242424242|400000000000/);
  });
});

describe('Connector: stripe — capture, void, lookup', () => {
  const cap = (processorRef: string, idempotencyKey: string, c: StripeConnector = stripe) =>
    c.capture({ chargeId: 'c', processorRef, amount: 1250, currency: 'GBP', idempotencyKey });

  it('capture -> captured, once, whatever the retries', async () => {
    const req = request();
    const ref = approved(await stripe.authorise(req));
    expect(await cap(ref, `cap-${req.chargeId}`)).toEqual({ kind: 'captured', processorRef: ref });
    expect(await cap(ref, `cap-${req.chargeId}`)).toEqual({ kind: 'captured', processorRef: ref }); // replay
    expect(await cap(ref, `cap-other-${req.chargeId}`)).toEqual({ kind: 'captured', processorRef: ref }); // already captured
    expect(statsOf(req.chargeId).captured).toBe(1);
    expect(
      await stripe.lookup({
        chargeId: req.chargeId,
        processorRef: ref,
        idempotencyKey: req.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
      }),
    ).toEqual({
      kind: 'captured',
      processorRef: ref,
      amount: 1250,
      currency: 'GBP',
    });
  });

  it('capture timeout after success -> ambiguous; lookup says captured; captured once', async () => {
    const req = request();
    const ref = approved(await stripe.authorise(req));
    fake.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/v1/payment_intents/'] });
    expect(await cap(ref, `cap-${req.chargeId}`, quick)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    expect(
      await stripe.lookup({ chargeId: req.chargeId, processorRef: ref, idempotencyKey: 'x', amount: 1250, currency: 'GBP' }),
    ).toMatchObject({ kind: 'captured' });
    expect(await cap(ref, `cap-${req.chargeId}`)).toMatchObject({ kind: 'captured' });
    expect(statsOf(req.chargeId).captured).toBe(1);
  });

  it('capture of an unknown PaymentIntent -> non-retryable NOT_CAPTURABLE', async () => {
    expect(await cap('pi_doesnotexist', 'cap-x')).toMatchObject({ kind: 'error', retryable: false, code: 'NOT_CAPTURABLE' });
  });

  it('void -> voided (idempotent); a voided authorisation cannot be captured', async () => {
    const req = request();
    const ref = approved(await stripe.authorise(req));
    expect(await stripe.void({ chargeId: req.chargeId, processorRef: ref, idempotencyKey: `void-${req.chargeId}` })).toEqual({
      kind: 'voided',
    });
    expect(await stripe.void({ chargeId: req.chargeId, processorRef: ref, idempotencyKey: `void2-${req.chargeId}` })).toEqual({
      kind: 'voided',
    });
    expect(statsOf(req.chargeId).canceled).toBe(1);
    expect(await cap(ref, `cap-${req.chargeId}`)).toMatchObject({ kind: 'error', retryable: false, code: 'NOT_CAPTURABLE' });
    expect(
      await stripe.lookup({ chargeId: req.chargeId, processorRef: ref, idempotencyKey: 'x', amount: 1250, currency: 'GBP' }),
    ).toEqual({ kind: 'voided', processorRef: ref });
  });

  it('void of an AMOUNT_MISMATCH authorisation: one cancel per key; a lost answer is repeated under the same key and replayed', async () => {
    const req = request({ amount: STRIPE_SANDBOX_MISMATCH_AMOUNT });
    const out = await stripe.authorise(req);
    expect(out).toMatchObject({ kind: 'error', code: 'AMOUNT_MISMATCH' });
    const v = { chargeId: req.chargeId, processorRef: out.processorRef!, idempotencyKey: `payfleet-void-${req.chargeId}` };
    fake.faults.update({ rateTimeoutAfterSuccess: 1, paths: [`/v1/payment_intents/${v.processorRef}/cancel`] });
    expect(await quick.void(v)).toMatchObject({ kind: 'ambiguous' });
    expect(statsOf(req.chargeId).canceled).toBe(1);
    fake.faults.reset();
    expect(await stripe.void(v)).toEqual({ kind: 'voided' });
    expect(statsOf(req.chargeId)).toMatchObject({ canceled: 1, replays: 1 });
  });

  it('lookup: unknown id -> not_found; a declined intent -> declined', async () => {
    expect(
      await stripe.lookup({ chargeId: 'c', processorRef: 'pi_nope', idempotencyKey: 'x', amount: 1, currency: 'GBP' }),
    ).toEqual({ kind: 'not_found' });
    const declined = await stripe.authorise(request({ number: '4000000000000002' }));
    const look = await stripe.lookup({
      chargeId: 'c',
      processorRef: declined.processorRef,
      idempotencyKey: 'x',
      amount: 1,
      currency: 'GBP',
    });
    expect(look).toMatchObject({ kind: 'declined', code: 'generic_decline' });
  });
});

describe('Sandbox: stripe-server', () => {
  const auth = () => ({ authorization: `Bearer ${fake.apiKey}`, 'content-type': 'application/x-www-form-urlencoded' });

  it('401 without the key; 400 invalid_request_error for a missing parameter (not stored under the key)', async () => {
    const noKey = await fetch(`${fake.url}/v1/payment_intents`, { method: 'POST', body: 'amount=1' });
    expect(noKey.status).toBe(401);
    const missing = await fetch(`${fake.url}/v1/payment_intents`, {
      method: 'POST',
      headers: { ...auth(), 'idempotency-key': 'k-missing' },
      body: 'amount=100',
    });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({
      error: { type: 'invalid_request_error', code: 'parameter_missing', param: 'currency' },
    });
    // The failed validation did not claim the key: a corrected request under it goes through.
    const form = buildAuthoriseForm(request());
    const ok = await fetch(`${fake.url}/v1/payment_intents`, {
      method: 'POST',
      headers: { ...auth(), 'idempotency-key': 'k-missing' },
      body: form,
    });
    expect(ok.status).toBe(200);
    const again = await fetch(`${fake.url}/v1/payment_intents`, {
      method: 'POST',
      headers: { ...auth(), 'idempotency-key': 'k-missing' },
      body: form,
    });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
  });

  it('serves stats and a validated fault admin endpoint', async () => {
    const stats = (await (await fetch(`${fake.url}/__sandbox/stats`)).json()) as { totals: { created: number } };
    expect(stats.totals.created).toBeGreaterThan(0);
    const set = await fetch(`${fake.url}/__sandbox/faults`, {
      method: 'POST',
      body: JSON.stringify({ rate5xx: 0.25, latencyMs: 5 }),
    });
    expect(((await set.json()) as { config: unknown }).config).toMatchObject({ rate5xx: 0.25, latencyMs: 5 });
    expect(fake.faults.config.rate5xx).toBe(0.25);
    const bad = await fetch(`${fake.url}/__sandbox/faults`, {
      method: 'POST',
      body: JSON.stringify({ rate5xx: 0.8, rate429: 0.5 }),
    });
    expect(bad.status).toBe(400);
    expect(fake.faults.config.rate429).toBe(0);
    await fetch(`${fake.url}/__sandbox/faults`, { method: 'DELETE' });
    expect(((await (await fetch(`${fake.url}/__sandbox/faults`)).json()) as { config: { rate5xx: number } }).config.rate5xx).toBe(
      0,
    );
  });
});
