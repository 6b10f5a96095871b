import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { STRIPE_SANDBOX_MISMATCH_AMOUNT } from '../../shared/sandbox/stripe-server.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { startAuthSandboxes, startAuthWorker, type AuthSandboxes } from './support.js';

let stack: TestStack;
let sb: AuthSandboxes;
let worker: WorkerProcess;
const dead = new Map<string, Record<string, string>>();

beforeAll(async () => {
  stack = await setupTestStack('auth');
  sb = await startAuthSandboxes();
  worker = startAuthWorker(stack, sb);
  await worker.waitForLine((l) => l.msg === 'worker started', 30_000);
});
afterAll(async () => {
  worker?.kill('SIGTERM');
  await worker?.exited;
  await sb?.close();
  stack?.close();
});

const queue = () => stack.url(stack.names.queue('auth-requests'));
const dlq = () => stack.url(stack.names.dlq('auth-requests'));

async function send(body: Record<string, unknown> | string, groupId: string, dedupId: string) {
  await sendAll(stack.clients.sqs, queue(), [{ body: typeof body === 'string' ? body : JSON.stringify(body), groupId, dedupId }]);
}

/** Read the DLQ into `dead` (keyed by groupId attribute) until `chargeId` shows up. */
async function deadLetterFor(chargeId: string): Promise<Record<string, string>> {
  await eventually(
    async () => {
      for (const m of await drain(stack.clients.sqs, dlq())) {
        const attrs: Record<string, string> = { body: m.Body ?? '' };
        for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) attrs[k] = v.StringValue ?? '';
        dead.set(attrs[DLQ_ATTRIBUTES.groupId] ?? '', attrs);
      }
      return dead.has(chargeId);
    },
    30_000,
    `a dead letter for ${chargeId}`,
  );
  return dead.get(chargeId)!;
}

async function finalCharge(chargeId: string, statuses = ['AUTHORISATION_SUCCESS', 'AUTHORISATION_REJECTED', 'AUTHORISATION_ERROR']) {
  await eventually(async () => statuses.includes((await readCharge(stack, chargeId))?.status ?? ''), 30_000, `${chargeId} to be final`);
  return (await readCharge(stack, chargeId))!;
}

describe('auth worker end to end', () => {
  it('approves with the sandbox processor: AUTHORISATION_SUCCESS with PAYMENT_CREATED and AUTHORISATION_SUCCEEDED', async () => {
    const req = authRequest({ chargeId: 'ch-approve' });
    await send(req, req.chargeId, req.authRequestId);
    const charge = await finalCharge('ch-approve');
    expect(charge.status).toBe('AUTHORISATION_SUCCESS');
    expect(charge.cardLast4).toBe('4242');
    expect(charge.history.map((h) => h.status)).toEqual(['CREATED', 'AUTHORISATION_READY', 'AUTHORISATION_SUCCESS']);
    const events = await readEvents(stack, 'ch-approve');
    expect(events.map((e) => [e.sequence, e.eventType])).toEqual([
      [1, 'PAYMENT_CREATED'],
      [2, 'AUTHORISATION_SUCCEEDED'],
    ]);
    expect(JSON.stringify(charge)).not.toContain('4242424242424242');
    expect(JSON.stringify(events)).not.toContain('4242424242424242');
  });

  it('declines at Stripe (402 card_error): AUTHORISATION_REJECTED, one PaymentIntent created, not dead-lettered', async () => {
    const req = authRequest({ chargeId: 'ch-decline', processor: 'stripe', paymentTokenId: `tok_${SANDBOX_CARDS.decline}` });
    await send(req, req.chargeId, req.authRequestId);
    const charge = await finalCharge('ch-decline');
    expect(charge.status).toBe('AUTHORISATION_REJECTED');
    expect(charge.declineCode).toMatch(/decline/); // Stripe: code card_declined, decline_code generic_decline
    expect((await readEvents(stack, 'ch-decline')).map((e) => e.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_REJECTED']);
    expect(sb.stripe.stats().charges['ch-decline']?.created).toBe(1);
  });

  it('dead-letters an unknown token with TOKEN_UNKNOWN and creates no charge', async () => {
    const req = authRequest({ chargeId: 'ch-tok-unknown', paymentTokenId: 'tok_unknown_abc' });
    await send(req, req.chargeId, req.authRequestId);
    const letter = await deadLetterFor('ch-tok-unknown');
    expect(letter[DLQ_ATTRIBUTES.code]).toBe('TOKEN_UNKNOWN');
    expect(letter[DLQ_ATTRIBUTES.worker]).toBe('auth');
    expect(letter.body).toBe(JSON.stringify(req));
    expect(await readCharge(stack, 'ch-tok-unknown')).toBeUndefined();
  });

  it('dead-letters an expired token with TOKEN_EXPIRED', async () => {
    const req = authRequest({ chargeId: 'ch-tok-expired', paymentTokenId: 'tok_expired_1' });
    await send(req, req.chargeId, req.authRequestId);
    expect((await deadLetterFor('ch-tok-expired'))[DLQ_ATTRIBUTES.code]).toBe('TOKEN_EXPIRED');
  });

  it('dead-letters bad input: not JSON / schema failure (INVALID_MESSAGE) and unknown processor (UNKNOWN_PROCESSOR)', async () => {
    await send('{"type":"AuthorisationRequested", nope', 'ch-badjson', 'badjson-1');
    const badSchema = authRequest({ chargeId: 'ch-badschema', amount: -5 });
    await send(badSchema, 'ch-badschema', badSchema.authRequestId);
    const unknown = authRequest({ chargeId: 'ch-unknown-proc', processor: 'acme' });
    await send(unknown, 'ch-unknown-proc', unknown.authRequestId);
    expect((await deadLetterFor('ch-badjson'))[DLQ_ATTRIBUTES.code]).toBe('INVALID_MESSAGE');
    const schemaLetter = await deadLetterFor('ch-badschema');
    expect(schemaLetter[DLQ_ATTRIBUTES.code]).toBe('INVALID_MESSAGE');
    expect(schemaLetter[DLQ_ATTRIBUTES.detail]).toContain('amount');
    expect((await deadLetterFor('ch-unknown-proc'))[DLQ_ATTRIBUTES.code]).toBe('UNKNOWN_PROCESSOR');
  });

  it('retries a processor 5xx with backoff and then succeeds: exactly one PaymentIntent', async () => {
    sb.stripe.faults.update({ rate5xx: 1, paths: ['/v1/payment_intents'] });
    const req = authRequest({ chargeId: 'ch-5xx', processor: 'stripe' });
    await send(req, req.chargeId, req.authRequestId);
    await eventually(() => sb.stripe.stats().totals.requests >= 2, 20_000, 'two failed attempts');
    sb.stripe.faults.update({ rate5xx: 0 });
    const charge = await finalCharge('ch-5xx');
    expect(charge.status).toBe('AUTHORISATION_SUCCESS');
    expect(sb.stripe.stats().charges['ch-5xx']?.created).toBe(1);
    expect(worker.lines.some((l) => l.chargeId === 'ch-5xx' || (l.msg === 'attempt failed; retrying after backoff'))).toBe(true);
  });

  it('a processor that times out after charging: the outcome is looked up, never re-authorised; one PaymentIntent', async () => {
    sb.stripe.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/v1/payment_intents'] });
    const req = authRequest({ chargeId: 'ch-timeout', processor: 'stripe' });
    await send(req, req.chargeId, req.authRequestId);
    await eventually(() => (sb.stripe.stats().charges['ch-timeout']?.created ?? 0) >= 1, 20_000, 'the charge to reach Stripe');
    // Let the first answers be lost, then heal the network.
    await eventually(async () => (await readCharge(stack, 'ch-timeout'))?.status === 'AUTHORISATION_READY', 10_000);
    await new Promise((r) => setTimeout(r, 2000));
    sb.stripe.faults.update({ rateTimeoutAfterSuccess: 0 });
    const charge = await finalCharge('ch-timeout');
    expect(charge.status).toBe('AUTHORISATION_SUCCESS');
    const stats = sb.stripe.stats().charges['ch-timeout']!;
    expect(stats.created).toBe(1);
    expect(stats.replays).toBeGreaterThanOrEqual(1);
  });

  it('the in-process sandbox timeout-after-charge card resolves through lookup to AUTHORISATION_SUCCESS', async () => {
    const req = authRequest({ chargeId: 'ch-sbx-timeout', paymentTokenId: `tok_${SANDBOX_CARDS.timeoutAfterCharge}` });
    await send(req, req.chargeId, req.authRequestId);
    expect((await finalCharge('ch-sbx-timeout')).status).toBe('AUTHORISATION_SUCCESS');
  });

  it('an answer with a different amount is AUTHORISATION_ERROR, dead-lettered AMOUNT_MISMATCH and logged as an alert', async () => {
    const req = authRequest({ chargeId: 'ch-mismatch', processor: 'stripe', amount: STRIPE_SANDBOX_MISMATCH_AMOUNT });
    await send(req, req.chargeId, req.authRequestId);
    const charge = await finalCharge('ch-mismatch');
    expect(charge.status).toBe('AUTHORISATION_ERROR');
    expect((await deadLetterFor('ch-mismatch'))[DLQ_ATTRIBUTES.code]).toBe('AMOUNT_MISMATCH');
    expect((await readEvents(stack, 'ch-mismatch')).map((e) => e.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_ERROR']);
    await worker.waitForLine((l) => l.alert === 'AMOUNT_MISMATCH' && l.level === 'error', 5000);
  });

  it('a duplicate delivery after completion is acknowledged without a second authorisation', async () => {
    const req = authRequest({ chargeId: 'ch-dup', processor: 'stripe' });
    await send(req, req.chargeId, `${req.authRequestId}-a`);
    await finalCharge('ch-dup');
    await send(req, req.chargeId, `${req.authRequestId}-b`);
    await worker.waitForLine((l) => l.msg === 'authorisation already completed; acknowledging the duplicate' && l.chargeId === 'ch-dup', 15_000);
    expect(sb.stripe.stats().charges['ch-dup']?.created).toBe(1);
    expect(await readEvents(stack, 'ch-dup')).toHaveLength(2);
  });

  it('wrote no card number or CVC to any log line', () => {
    const raw = worker.raw();
    for (const pan of Object.values(SANDBOX_CARDS)) expect(raw).not.toContain(pan);
    expect(raw).not.toMatch(/"cvc":"\d{3,4}"/);
    expect(raw).not.toContain('pts_sandbox_key');
    expect(raw).not.toContain(sb.stripe.apiKey);
  });
});
