import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { manualClock, type ManualClock } from '../../shared/core/clock.js';
import {
  buildChasePayment,
  chaseRequestId,
  createChaseConnector,
  type ChaseConnector,
  type ChaseConnectorOptions,
} from '../../shared/connectors/chase.js';
import { CHASE_PROCESSING_WINDOW_MS } from '../../shared/connectors/chase-window.js';
import { createProcessorRegistry, processorEnvShape, processorRegistryConfigFromEnv } from '../../shared/connectors/registry.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { AuthoriseOutcome, AuthoriseRequest } from '../../shared/connectors/types.js';
import { CHASE_SANDBOX_MISMATCH_AMOUNT, startChaseSandbox, type ChaseSandbox } from '../../cli/sandbox/chase-server.js';
import { z } from 'zod';

let fake: ChaseSandbox;
const open: ChaseConnector[] = [];
const logged: string[] = [];

/** A connector on the fake with its own manual clock; `timeoutMs` short for the tests where the fake never answers. */
function connector(overrides: Partial<ChaseConnectorOptions> = {}): { chase: ChaseConnector; clock: ManualClock } {
  const clock = manualClock(Date.parse('2026-11-26T10:00:00Z'));
  const sink = new Writable({
    write: (chunk, _enc, done) => {
      logged.push(String(chunk));
      done();
    },
  });
  const chase = createChaseConnector({
    baseUrl: fake.url,
    tokenUrl: fake.tokenUrl,
    clientId: fake.clientId,
    clientSecret: fake.clientSecret,
    merchantId: fake.merchantId,
    timeoutMs: 5_000,
    clock: clock.now,
    logger: pino({ level: 'debug' }, sink),
    ...overrides,
  });
  open.push(chase);
  return { chase, clock };
}

function request(overrides: Partial<Omit<AuthoriseRequest, 'card'>> & { number?: string } = {}): AuthoriseRequest {
  const { number = '4242424242424242', ...rest } = overrides;
  const chargeId = rest.chargeId ?? `ch_${randomUUID().slice(0, 8)}`;
  return {
    chargeId,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'REF-1',
    description: 'Test payment',
    idempotencyKey: `payfleet-auth-${randomUUID()}`,
    card: new SensitiveCard({ number, exp_month: 12, exp_year: 2030, cvc: '123', cardholder_name: 'Jo Bloggs' }),
    ...rest,
  };
}

const statsOf = (chargeId: string) =>
  fake.stats().charges[chargeId] ?? { received: 0, created: 0, authorised: 0, captured: 0, voided: 0, refunds: 0, replays: 0 };

function approved(out: AuthoriseOutcome): string {
  if (out.kind !== 'approved') throw new Error(`expected approved, got ${JSON.stringify(out)}`);
  return out.processorRef;
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

describe('Connector: chase — requests', () => {
  it('derives a request-id of at most 40 characters from the idempotency key, the same on every call', () => {
    const key = `payfleet-auth-${randomUUID()}`;
    expect(chaseRequestId(key)).toHaveLength(40);
    expect(chaseRequestId(key)).toBe(chaseRequestId(key));
    expect(chaseRequestId(key)).not.toBe(chaseRequestId(`${key}x`));
  });

  it('builds a manual-capture payment with the card under paymentMethodType', () => {
    const body = buildChasePayment(request({ chargeId: 'ch-1' }));
    expect(body).toMatchObject({
      captureMethod: 'MANUAL',
      amount: 1250,
      currency: 'GBP',
      merchantOrderNumber: 'ch-1',
      paymentMethodType: { card: { accountNumber: '4242424242424242', expiry: { month: 12, year: 2030 }, cvv: '123' } },
    });
  });
});

describe('Connector: chase — authorise', () => {
  it('approves: one payment at Chase, its transactionId as the reference', async () => {
    const { chase } = connector();
    const req = request();
    const ref = approved(await chase.authorise(req));
    expect(ref).toMatch(/^[0-9a-f]{24}$/);
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, authorised: 1 });
  });

  it("declines (responseStatus DENIED) as a business result with Chase's code", async () => {
    const { chase } = connector();
    const req = request({ number: '4000000000000002' });
    expect(await chase.authorise(req)).toMatchObject({ kind: 'declined', code: 'DECLINED' });
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, declined: 1 });
  });

  it('an approval for another amount is AMOUNT_MISMATCH with the reference to void', async () => {
    const { chase } = connector();
    const out = await chase.authorise(request({ amount: CHASE_SANDBOX_MISMATCH_AMOUNT }));
    expect(out).toMatchObject({ kind: 'error', retryable: false, code: 'AMOUNT_MISMATCH' });
    expect(out.processorRef).toMatch(/^[0-9a-f]{24}$/);
  });

  it('a 5xx is retryable and nothing is created; the retry under the same request-id creates one payment', async () => {
    const { chase } = connector();
    const req = request();
    fake.faults.update({ rate5xx: 1 });
    expect(await chase.authorise(req)).toMatchObject({ kind: 'error', retryable: true, code: 'PROCESSOR_ERROR' });
    fake.faults.reset();
    // Chase answered: nothing is left processing, so "nothing found" is final at once (no 70 s wait).
    expect(
      await chase.lookup({
        chargeId: req.chargeId,
        idempotencyKey: req.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
        original: req,
      }),
    ).toEqual({ kind: 'not_found' });
    approved(await chase.authorise(req));
    approved(await chase.authorise(req));
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1, authorised: 1, replays: 1 });
  });

  it('a 429 is retryable with Retry-After', async () => {
    const { chase } = connector();
    fake.faults.update({ rate429: 1, retryAfterSec: 3 });
    expect(await chase.authorise(request())).toMatchObject({
      kind: 'error',
      retryable: true,
      code: 'RATE_LIMITED',
      retryAfterMs: 3000,
    });
  });

  it('a timeout after the payment is ambiguous; the lookup by request-id finds it and a repeat is replayed: one payment', async () => {
    const { chase } = connector({ timeoutMs: 400 });
    const req = request();
    fake.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/payments'] });
    expect(await chase.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    const found = await chase.lookup({
      chargeId: req.chargeId,
      idempotencyKey: req.idempotencyKey,
      amount: 1250,
      currency: 'GBP',
      original: req,
    });
    expect(found).toMatchObject({ kind: 'authorised', amount: 1250, currency: 'GBP' });
    approved(await chase.authorise(req));
    expect(statsOf(req.chargeId)).toMatchObject({ received: 2, created: 1, replays: 1 });
  });
});

describe('Connector: chase — the 70-second rule', () => {
  it('a lookup that finds nothing is inconclusive until 70 s after the send, and nothing is re-sent before', async () => {
    const { chase, clock } = connector({ timeoutMs: 400 });
    const req = request();
    fake.hold();
    expect(await chase.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    expect(fake.held).toBe(1);
    const lookup = () =>
      chase.lookup({ chargeId: req.chargeId, idempotencyKey: req.idempotencyKey, amount: 1250, currency: 'GBP', original: req });
    clock.advance(10_000);
    expect(await lookup()).toMatchObject({ kind: 'unknown', reason: expect.stringContaining('may still be processing') });
    // A repeat inside the window looks up instead of sending: Chase would process it as a second payment.
    expect(await chase.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    clock.advance(CHASE_PROCESSING_WINDOW_MS - 10_001);
    expect(await lookup()).toMatchObject({ kind: 'unknown' });
    expect(statsOf(req.chargeId).received).toBe(1);
    // Chase's expiry: the request is dropped without a record. 70 s after the send, "nothing" is final.
    expect(fake.release('drop')).toBe(1);
    clock.advance(1);
    expect(await lookup()).toEqual({ kind: 'not_found' });
    approved(await chase.authorise(req));
    expect(statsOf(req.chargeId)).toMatchObject({ received: 2, created: 1, authorised: 1 });
  });

  it('a request that finishes processing late is found by the next lookup: one payment', async () => {
    const { chase, clock } = connector({ timeoutMs: 400 });
    const req = request();
    fake.hold();
    expect(await chase.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    clock.advance(5_000);
    expect(await chase.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    fake.release('record');
    clock.advance(5_000);
    approved(await chase.authorise(req));
    expect(statsOf(req.chargeId)).toMatchObject({ received: 1, created: 1, authorised: 1 });
  });

  it('a process that never sent the request (its sender died) waits 70 s from its own first lookup', async () => {
    const { chase, clock } = connector();
    const key = `payfleet-auth-${randomUUID()}`;
    const lookup = () => chase.lookup({ chargeId: 'ch-x', idempotencyKey: key, amount: 1250, currency: 'GBP' });
    expect(await lookup()).toMatchObject({ kind: 'unknown' });
    clock.advance(CHASE_PROCESSING_WINDOW_MS - 1);
    expect(await lookup()).toMatchObject({ kind: 'unknown' });
    clock.advance(1);
    expect(await lookup()).toEqual({ kind: 'not_found' });
  });

  it('a capture whose answer was lost is looked up, not re-sent, inside the window', async () => {
    const { chase, clock } = connector({ timeoutMs: 400 });
    const req = request();
    const ref = approved(await chase.authorise(req));
    const cap = {
      chargeId: req.chargeId,
      processorRef: ref,
      amount: 1250,
      currency: 'GBP',
      idempotencyKey: `payfleet-capture-${req.chargeId}`,
    };
    fake.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/payments/'] });
    expect(await chase.capture(cap)).toMatchObject({ kind: 'ambiguous' });
    fake.faults.reset();
    clock.advance(1_000);
    expect(await chase.capture(cap)).toEqual({ kind: 'captured', processorRef: ref });
    // Found by its request-id, not sent again (a re-send would show as a replay).
    expect(statsOf(req.chargeId)).toMatchObject({ captured: 1, replays: 0 });
  });
});

describe('Connector: chase — capture, void, refund, lookup', () => {
  it('captures once; a repeat (same request-id) is replayed; a capture under another key finds it captured', async () => {
    const { chase } = connector();
    const req = request();
    const ref = approved(await chase.authorise(req));
    const cap = {
      chargeId: req.chargeId,
      processorRef: ref,
      amount: 1250,
      currency: 'GBP',
      idempotencyKey: `payfleet-capture-${req.chargeId}`,
    };
    expect(await chase.capture(cap)).toEqual({ kind: 'captured', processorRef: ref });
    expect(await chase.capture(cap)).toEqual({ kind: 'captured', processorRef: ref });
    expect(await chase.capture({ ...cap, idempotencyKey: 'another' })).toEqual({ kind: 'captured', processorRef: ref });
    expect(statsOf(req.chargeId)).toMatchObject({ captured: 1 });
    expect(
      await chase.lookup({
        chargeId: req.chargeId,
        processorRef: ref,
        idempotencyKey: cap.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
      }),
    ).toMatchObject({ kind: 'captured', processorRef: ref });
  });

  it('a capture of an unknown payment is NOT_CAPTURABLE', async () => {
    const { chase } = connector();
    expect(
      await chase.capture({
        chargeId: 'c',
        processorRef: 'nope',
        amount: 1,
        currency: 'GBP',
        idempotencyKey: `k-${randomUUID()}`,
      }),
    ).toMatchObject({
      kind: 'error',
      retryable: false,
      code: 'NOT_CAPTURABLE',
    });
  });

  it('voids with PATCH isVoid; a repeat is voided without a second void', async () => {
    const { chase } = connector();
    const req = request();
    const ref = approved(await chase.authorise(req));
    const v = { chargeId: req.chargeId, processorRef: ref, idempotencyKey: `payfleet-void-${randomUUID()}` };
    expect(await chase.void(v)).toEqual({ kind: 'voided' });
    expect(await chase.void({ ...v, idempotencyKey: 'other-void-key' })).toEqual({ kind: 'voided' });
    expect(statsOf(req.chargeId)).toMatchObject({ voided: 1 });
    expect(
      await chase.lookup({
        chargeId: req.chargeId,
        processorRef: ref,
        idempotencyKey: req.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
        original: req,
      }),
    ).toMatchObject({ kind: 'voided' });
  });

  it('refunds a captured payment once per request-id and refuses more than was captured', async () => {
    const { chase } = connector();
    const req = request();
    const ref = approved(await chase.authorise(req));
    await chase.capture({
      chargeId: req.chargeId,
      processorRef: ref,
      amount: 1250,
      currency: 'GBP',
      idempotencyKey: `cap-${randomUUID()}`,
    });
    const r = {
      chargeId: req.chargeId,
      refundId: 'rf-1',
      processorRef: ref,
      amount: 1000,
      currency: 'GBP',
      idempotencyKey: `payfleet-refund-${randomUUID()}`,
    };
    expect(await chase.refund(r)).toMatchObject({ kind: 'refunded' });
    expect(await chase.refund(r)).toMatchObject({ kind: 'refunded' });
    expect(await chase.refund({ ...r, idempotencyKey: `payfleet-refund-${randomUUID()}` })).toMatchObject({
      kind: 'rejected',
      code: 'INVALID_AMOUNT',
    });
    expect(statsOf(req.chargeId)).toMatchObject({ refunds: 1, refunded: 1000 });
  });
});

describe('Connector: chase — OAuth2 tokens', () => {
  it('fetches one token for concurrent first calls and reuses it', async () => {
    const { chase } = connector();
    const before = fake.stats().totals.tokens;
    await Promise.all([1, 2, 3, 4, 5].map(() => chase.authorise(request())));
    await chase.authorise(request());
    expect(fake.stats().totals.tokens - before).toBe(1);
  });

  it('refreshes a token before it expires, by the injected clock', async () => {
    const short = await startChaseSandbox({ tokenTtlSec: 300 });
    try {
      const { chase, clock } = connector({ baseUrl: short.url, tokenUrl: short.tokenUrl });
      await chase.authorise(request());
      clock.advance(200_000);
      await chase.authorise(request());
      expect(short.stats().totals.tokens).toBe(1);
      // 60 s before expiry the next call fetches a new one.
      clock.advance(41_000);
      await chase.authorise(request());
      expect(short.stats().totals.tokens).toBe(2);
      expect(short.stats().totals.unauthorised).toBe(0);
    } finally {
      await short.close();
    }
  });

  it('a 401 (token revoked early) refreshes once and repeats the call: one payment', async () => {
    const { chase } = connector();
    await chase.authorise(request());
    const before = fake.stats().totals;
    fake.expireTokens();
    const req = request();
    approved(await chase.authorise(req));
    const after = fake.stats().totals;
    expect(after.tokens - before.tokens).toBe(1);
    expect(after.unauthorised - before.unauthorised).toBe(1);
    expect(statsOf(req.chargeId)).toMatchObject({ created: 1 });
  });

  it('wrong client credentials are a retryable PROCESSOR_UNAUTHORISED; nothing reaches the API', async () => {
    const { chase } = connector({ clientSecret: 'wrong-secret-value' });
    const before = fake.stats().totals.requests;
    expect(await chase.authorise(request())).toMatchObject({ kind: 'error', retryable: true, code: 'PROCESSOR_UNAUTHORISED' });
    expect(fake.stats().totals.requests).toBe(before);
  });

  it('never logs the client secret, an access token or a card number', () => {
    const all = logged.join('');
    expect(all).toContain('chase');
    expect(all).not.toContain(fake.clientSecret);
    expect(all).not.toContain('wrong-secret-value');
    expect(all).not.toMatch(/jpm_[0-9a-f]{32}/);
    expect(all).not.toContain('4242424242424242');
  });
});

describe('Registry: chase', () => {
  it('is configured by its five variables and selected by processor "chase"', async () => {
    const env = z.object(processorEnvShape).parse({
      CHASE_API_BASE_URL: fake.url,
      CHASE_TOKEN_URL: fake.tokenUrl,
      CHASE_CLIENT_ID: fake.clientId,
      CHASE_CLIENT_SECRET: fake.clientSecret,
      CHASE_MERCHANT_ID: fake.merchantId,
    });
    const registry = createProcessorRegistry(processorRegistryConfigFromEnv(env));
    try {
      expect(registry.get('chase').name).toBe('chase');
      approved(await registry.get('chase').authorise(request()));
    } finally {
      await registry.close();
    }
    const without = createProcessorRegistry({});
    expect(() => without.get('chase')).toThrow(/processor "chase" is not configured/);
    await without.close();
  });
});
