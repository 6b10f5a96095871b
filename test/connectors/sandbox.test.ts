import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { connectorConfigFromEnv, connectorEnvShape, createProcessorRegistry } from '../../shared/connectors/registry.js';
import { createSandboxConnector, luhnValid, SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { AuthoriseRequest } from '../../shared/connectors/types.js';
import { TerminalError } from '../../shared/errors.js';

function request(number: string, idempotencyKey = `auth-${number}`): AuthoriseRequest {
  return {
    chargeId: `ch-${number}`,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'ref',
    description: 'desc',
    idempotencyKey,
    card: new SensitiveCard({ number, exp_month: 12, exp_year: 2030, cvc: '123', cardholder_name: 'S' }),
  };
}

const sandbox = createSandboxConnector({ slowMs: 80 });

async function approvedRef(number: string): Promise<string> {
  const out = await sandbox.authorise(request(number));
  if (out.kind !== 'approved') throw new Error(`expected approved, got ${out.kind}`);
  return out.processorRef;
}

describe('Connector: sandbox', () => {
  it('every magic number is Luhn-valid', () => {
    for (const n of Object.values(SANDBOX_CARDS)) expect(luhnValid(n), n).toBe(true);
  });

  it('approve: 4242... and any other Luhn-valid number', async () => {
    const out = await sandbox.authorise(request(SANDBOX_CARDS.approve));
    expect(out).toMatchObject({ kind: 'approved', amount: 1250, currency: 'GBP' });
    expect(out.processorRef).toMatch(/^sbx_approve_[0-9a-f]{24}$/);
    expect(await sandbox.authorise(request('5555555555554444'))).toMatchObject({ kind: 'approved' });
  });

  it('the processorRef is derived from the request: same key, same ref, in any process', async () => {
    const a = await sandbox.authorise(request(SANDBOX_CARDS.approve, 'k-1'));
    const b = await createSandboxConnector().authorise(request(SANDBOX_CARDS.approve, 'k-1'));
    const c = await sandbox.authorise(request(SANDBOX_CARDS.approve, 'k-2'));
    expect(a.processorRef).toBe(b.processorRef);
    expect(a.processorRef).not.toBe(c.processorRef);
  });

  it.each([
    [SANDBOX_CARDS.decline, 'card_declined'],
    [SANDBOX_CARDS.insufficientFunds, 'insufficient_funds'],
    [SANDBOX_CARDS.expiredCard, 'expired_card'],
    ['4242424242424241', 'incorrect_number'],
  ])('decline: %s -> %s', async (number, code) => {
    const out = await sandbox.authorise(request(number));
    expect(out).toMatchObject({ kind: 'declined', code });
  });

  it('error, retryable and not', async () => {
    expect(await sandbox.authorise(request(SANDBOX_CARDS.errorRetryable))).toMatchObject({
      kind: 'error',
      retryable: true,
      code: 'processing_error',
    });
    expect(await sandbox.authorise(request(SANDBOX_CARDS.errorNonRetryable))).toMatchObject({
      kind: 'error',
      retryable: false,
      code: 'PROCESSOR_REJECTED',
    });
  });

  it('timeout after charge: ambiguous, then lookup finds it authorised with the original; without the card or a ref it cannot tell', async () => {
    const req = request(SANDBOX_CARDS.timeoutAfterCharge, 'auth-timeout-1');
    expect(await sandbox.authorise(req)).toMatchObject({ kind: 'ambiguous' });
    const base = { chargeId: req.chargeId, idempotencyKey: req.idempotencyKey, amount: 1250, currency: 'GBP' };
    const withOriginal = await createSandboxConnector().lookup({ ...base, original: req });
    expect(withOriginal).toMatchObject({ kind: 'authorised', amount: 1250, currency: 'GBP' });
    // Stateless: a lookup with neither the card nor a reference (the token expired after a crash)
    // must not guess "authorised" for a charge that may never have been sent.
    expect(await createSandboxConnector().lookup(base)).toMatchObject({ kind: 'unknown' });
    // The ref it reports is stable and capturable.
    if (withOriginal.kind !== 'authorised') throw new Error('unreachable');
    expect(
      await sandbox.capture({
        chargeId: req.chargeId,
        processorRef: withOriginal.processorRef,
        amount: 1250,
        currency: 'GBP',
        idempotencyKey: 'c',
      }),
    ).toEqual({
      kind: 'captured',
      processorRef: withOriginal.processorRef,
    });
  });

  it('lookup with the original tells declines and errors apart', async () => {
    const decline = request(SANDBOX_CARDS.decline);
    const error = request(SANDBOX_CARDS.errorRetryable);
    const look = (r: AuthoriseRequest) =>
      sandbox.lookup({ chargeId: r.chargeId, idempotencyKey: r.idempotencyKey, amount: 1, currency: 'GBP', original: r });
    expect(await look(decline)).toMatchObject({ kind: 'declined', code: 'card_declined' });
    expect(await look(error)).toEqual({ kind: 'not_found' });
  });

  it('lookup by processorRef', async () => {
    const ref = await approvedRef(SANDBOX_CARDS.approve);
    expect(await sandbox.lookup({ chargeId: 'c', processorRef: ref, idempotencyKey: 'x', amount: 99, currency: 'EUR' })).toEqual({
      kind: 'authorised',
      processorRef: ref,
      amount: 99,
      currency: 'EUR',
    });
    expect(
      await sandbox.lookup({ chargeId: 'c', processorRef: 'pi_foreign', idempotencyKey: 'x', amount: 1, currency: 'GBP' }),
    ).toEqual({ kind: 'not_found' });
  });

  it('slow: waits slowMs then approves; an abort during the wait charges nothing', async () => {
    const t0 = Date.now();
    expect(await sandbox.authorise(request(SANDBOX_CARDS.slow))).toMatchObject({ kind: 'approved' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(75);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 10);
    expect(await sandbox.authorise(request(SANDBOX_CARDS.slow), ac.signal)).toMatchObject({
      kind: 'error',
      retryable: true,
      code: 'ABORTED',
    });
  });

  it('capture: approve -> captured; the capture-fail card -> retryable error; the async card -> submitted', async () => {
    const cap = (processorRef: string) =>
      sandbox.capture({ chargeId: 'c', processorRef, amount: 1250, currency: 'GBP', idempotencyKey: 'cap' });
    expect(await cap(await approvedRef(SANDBOX_CARDS.approve))).toMatchObject({ kind: 'captured' });
    expect(await cap(await approvedRef(SANDBOX_CARDS.captureFailsRetryable))).toMatchObject({ kind: 'error', retryable: true });
    expect(await cap(await approvedRef(SANDBOX_CARDS.captureSubmitted))).toMatchObject({ kind: 'submitted' });
    expect(await cap('sbx_decline_000000000000000000000000')).toMatchObject({
      kind: 'error',
      retryable: false,
      code: 'NOT_CAPTURABLE',
    });
    expect(await cap('pi_123')).toMatchObject({ kind: 'error', retryable: false, code: 'NOT_CAPTURABLE' });
  });

  it('void', async () => {
    const ref = await approvedRef(SANDBOX_CARDS.approve);
    expect(await sandbox.void({ chargeId: 'c', processorRef: ref, idempotencyKey: 'v' })).toEqual({ kind: 'voided' });
    expect(await sandbox.void({ chargeId: 'c', processorRef: 'nope', idempotencyKey: 'v' })).toMatchObject({
      kind: 'error',
      retryable: false,
    });
  });

  it('outcomes carry no card data', async () => {
    const outs = await Promise.all(
      Object.values(SANDBOX_CARDS)
        .filter((n) => n !== SANDBOX_CARDS.slow)
        .map((n) => sandbox.authorise(request(n))),
    );
    const text = JSON.stringify(outs);
    for (const n of Object.values(SANDBOX_CARDS)) expect(text).not.toContain(n);
  });
});

describe('processor registry', () => {
  it('returns configured connectors and refuses unknown or unconfigured ones', async () => {
    const registry = createProcessorRegistry({ stripe: { apiKey: 'sk_test_x', baseUrl: 'http://127.0.0.1:9' } });
    expect(registry.get('sandbox').name).toBe('sandbox');
    expect(registry.get('stripe').name).toBe('stripe');
    expect(registry.has('worldpay')).toBe(false);
    expect(() => registry.get('worldpay')).toThrow(TerminalError);
    expect(() => registry.get('worldpay')).toThrow(/not configured/);
    for (const name of ['paypal', 'toString', '__proto__', '']) {
      try {
        registry.get(name);
        throw new Error('expected a throw');
      } catch (err) {
        expect(err).toBeInstanceOf(TerminalError);
        expect(err).toMatchObject({ code: 'UNKNOWN_PROCESSOR' });
      }
    }
    await registry.close();
    await registry.close();
  });

  it('can disable the sandbox', () => {
    const registry = createProcessorRegistry({ sandbox: false });
    expect(() => registry.get('sandbox')).toThrow(TerminalError);
  });

  it('builds its config from the environment: a processor is on when its credentials are set', () => {
    const parse = (env: Record<string, string>) => connectorConfigFromEnv(z.object(connectorEnvShape).parse(env));
    const base = { PAYMENT_TOKEN_SERVICE_URL: 'http://127.0.0.1:1/', PAYMENT_TOKEN_SERVICE_API_KEY: 'k' };
    const minimal = parse(base);
    expect(minimal.registry).toMatchObject({ sandbox: {}, stripe: undefined, worldpay: undefined });
    expect(minimal.tokenService).toMatchObject({ baseUrl: 'http://127.0.0.1:1', apiKey: 'k', timeoutMs: 5_000 });
    const full = parse({
      ...base,
      STRIPE_API_KEY: 'sk_test_1',
      WORLDPAY_API_BASE_URL: 'https://wp.example',
      WORLDPAY_MERCHANT_CODE: 'M',
      WORLDPAY_USERNAME: 'u',
      WORLDPAY_PASSWORD: 'p',
      PAYFLEET_SANDBOX_PROCESSOR_ENABLED: 'false',
    });
    expect(full.registry.sandbox).toBe(false);
    expect(full.registry.stripe).toMatchObject({ apiKey: 'sk_test_1', baseUrl: 'https://api.stripe.com', timeoutMs: 20_000 });
    expect(full.registry.worldpay).toMatchObject({ baseUrl: 'https://wp.example', merchantCode: 'M' });
  });
});
