import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { STRIPE_SANDBOX_MISMATCH_AMOUNT } from '../../cli/sandbox/stripe-server.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { startAuthSandboxes, startAuthWorker, worldpayOrders, type AuthSandboxes } from './support.js';

let stack: TestStack;
let sb: AuthSandboxes;
let worker: WorkerProcess;
/** Every dead letter read so far, keyed by its source group (the chargeId), in arrival order. */
const dead = new Map<string, Record<string, string>[]>();

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

/** Move what the DLQ holds into `dead`. */
async function readDlq(): Promise<void> {
  for (const m of await drain(stack.clients.sqs, dlq())) {
    const attrs: Record<string, string> = { body: m.Body ?? '' };
    for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) attrs[k] = v.StringValue ?? '';
    const group = attrs[DLQ_ATTRIBUTES.groupId] ?? '';
    dead.set(group, [...(dead.get(group) ?? []), attrs]);
  }
}

/** Read the DLQ until `chargeId` has its `nth` dead letter (1-based); return that letter. */
async function deadLetterFor(chargeId: string, nth = 1): Promise<Record<string, string>> {
  await eventually(
    async () => {
      await readDlq();
      return (dead.get(chargeId)?.length ?? 0) >= nth;
    },
    30_000,
    `dead letter #${nth} for ${chargeId}`,
  );
  return dead.get(chargeId)![nth - 1]!;
}

async function finalCharge(
  chargeId: string,
  statuses = ['AUTHORISATION_SUCCESS', 'AUTHORISATION_REJECTED', 'AUTHORISATION_ERROR'],
) {
  await eventually(
    async () => statuses.includes((await readCharge(stack, chargeId))?.status ?? ''),
    30_000,
    `${chargeId} to be final`,
  );
  return (await readCharge(stack, chargeId))!;
}

describe('auth worker', () => {
  describe('end to end', () => {
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
      expect((await readEvents(stack, 'ch-decline')).map((e) => e.eventType)).toEqual([
        'PAYMENT_CREATED',
        'AUTHORISATION_REJECTED',
      ]);
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
      expect(worker.lines.some((l) => l.chargeId === 'ch-5xx' || l.msg === 'attempt failed; retrying after backoff')).toBe(true);
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

    it('Stripe authorises another amount: processorRef recorded, the PaymentIntent cancelled once, ledger event, DLQ AMOUNT_MISMATCH, alert says so', async () => {
      const req = authRequest({ chargeId: 'ch-mismatch', processor: 'stripe', amount: STRIPE_SANDBOX_MISMATCH_AMOUNT });
      await send(req, req.chargeId, req.authRequestId);
      const letter = await deadLetterFor('ch-mismatch');
      expect(letter[DLQ_ATTRIBUTES.code]).toBe('AMOUNT_MISMATCH');
      const charge = await finalCharge('ch-mismatch', ['AUTHORISATION_ERROR_CANCELLED']);
      expect(charge.errorCode).toBe('AMOUNT_MISMATCH');
      expect(charge.processorRef).toMatch(/^pi_/);
      expect(charge.authorisationVoid).toMatchObject({
        state: 'VOIDED',
        processorRef: charge.processorRef,
        idempotencyKey: `payfleet-void-${req.authRequestId}`,
      });
      expect(letter[DLQ_ATTRIBUTES.detail]).toContain(`voided at the processor (ref ${charge.processorRef})`);
      expect(sb.stripe.stats().charges['ch-mismatch']).toMatchObject({ created: 1, authorised: 1, canceled: 1, captured: 0 });
      const events = await readEvents(stack, 'ch-mismatch');
      expect(events.map((e) => e.eventType)).toEqual([
        'PAYMENT_CREATED',
        'AUTHORISATION_ERROR',
        'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR',
      ]);
      expect(events[1]!.details).toMatchObject({ error_code: 'AMOUNT_MISMATCH', processor_ref: charge.processorRef });
      const alert = await worker.waitForLine((l) => l.alert === 'AMOUNT_MISMATCH' && l.chargeId === 'ch-mismatch', 5000);
      expect(alert).toMatchObject({
        level: 'error',
        void: 'VOIDED',
        processorRef: charge.processorRef,
        status: 'AUTHORISATION_ERROR_CANCELLED',
      });
      expect(String(alert.msg)).toContain(`voided at the processor (ref ${charge.processorRef})`);
    });

    it('Worldpay answers another amount: the orderCode recorded, the order cancelled once, DLQ AMOUNT_MISMATCH', async () => {
      // 4000000000000036: the Worldpay sandbox reports amount + 1 (docs/worldpay.md).
      const req = authRequest({ chargeId: 'ch-wp-mismatch', processor: 'worldpay', paymentTokenId: 'tok_4000000000000036' });
      const orderCode = `payfleet-auth-${req.authRequestId}`;
      worldpayOrders.set(orderCode, req.chargeId);
      await send(req, req.chargeId, req.authRequestId);
      expect((await deadLetterFor('ch-wp-mismatch'))[DLQ_ATTRIBUTES.code]).toBe('AMOUNT_MISMATCH');
      const charge = await finalCharge('ch-wp-mismatch', ['AUTHORISATION_ERROR_CANCELLED']);
      expect(charge.processorRef).toBe(orderCode);
      expect(sb.worldpay.stats().byCharge['ch-wp-mismatch']).toEqual({
        orders: 1,
        authorisations: 1,
        captures: 0,
        cancels: 1,
        capturedAmount: 0,
        refunds: 0,
        refunded: 0,
      });
      expect(sb.worldpay.order(orderCode)?.lastEvent).toBe('CANCELLED');
      expect((await readEvents(stack, 'ch-wp-mismatch')).map((e) => e.eventType)).toEqual([
        'PAYMENT_CREATED',
        'AUTHORISATION_ERROR',
        'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR',
      ]);
      await worker.waitForLine(
        (l) => l.alert === 'AMOUNT_MISMATCH' && l.chargeId === 'ch-wp-mismatch' && l.void === 'VOIDED',
        5000,
      );
    });

    it('a redriven copy of the AMOUNT_MISMATCH request is dead-lettered again with AMOUNT_MISMATCH, never acknowledged; nothing is voided twice', async () => {
      const letter = await deadLetterFor('ch-mismatch');
      // What `payfleet dlq redrive` sends: the body byte for byte, the source group, a fresh deduplication id.
      await send(letter.body!, 'ch-mismatch', 'redrive-1');
      const again = await deadLetterFor('ch-mismatch', 2);
      expect(again[DLQ_ATTRIBUTES.code]).toBe('AMOUNT_MISMATCH');
      expect(again[DLQ_ATTRIBUTES.detail]).toContain('is already AUTHORISATION_ERROR_CANCELLED (AMOUNT_MISMATCH)');
      expect(again[DLQ_ATTRIBUTES.detail]).toContain('voided at the processor');
      expect(again.body).toBe(letter.body);
      expect(sb.stripe.stats().charges['ch-mismatch']).toMatchObject({ created: 1, canceled: 1 });
      expect(await readEvents(stack, 'ch-mismatch')).toHaveLength(3);
      await worker.waitForLine(
        (l) =>
          l.chargeId === 'ch-mismatch' &&
          l.msg === 'request already completed with a dead letter; dead-lettering it again, not acknowledging',
        5000,
      );
      expect(
        worker.lines.some(
          (l) => l.chargeId === 'ch-mismatch' && l.msg === 'request already completed; acknowledging the duplicate',
        ),
      ).toBe(false);
    });

    it('a duplicate delivery after completion is acknowledged without a second authorisation', async () => {
      const req = authRequest({ chargeId: 'ch-dup', processor: 'stripe' });
      await send(req, req.chargeId, `${req.authRequestId}-a`);
      await finalCharge('ch-dup');
      await send(req, req.chargeId, `${req.authRequestId}-b`);
      await worker.waitForLine(
        (l) => l.msg === 'request already completed; acknowledging the duplicate' && l.chargeId === 'ch-dup',
        15_000,
      );
      expect(sb.stripe.stats().charges['ch-dup']?.created).toBe(1);
      expect(await readEvents(stack, 'ch-dup')).toHaveLength(2);
      await readDlq();
      expect(dead.has('ch-dup')).toBe(false);
    });

    it('wrote no card number or CVC to any log line', () => {
      const raw = worker.raw();
      for (const pan of Object.values(SANDBOX_CARDS)) expect(raw).not.toContain(pan);
      expect(raw).not.toMatch(/"cvc":"\d{3,4}"/);
      expect(raw).not.toContain('pts_sandbox_key');
      expect(raw).not.toContain(sb.stripe.apiKey);
    });
  });
});
