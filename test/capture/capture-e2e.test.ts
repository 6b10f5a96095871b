import { randomUUID } from 'node:crypto';
import type { Message } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll, sleep } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { authEnv, startAuthSandboxes, startAuthWorker, type AuthSandboxes } from '../auth/support.js';

let stack: TestStack;
let sb: AuthSandboxes;
let auth: WorkerProcess;
let capture: WorkerProcess;
const RETRY_DELAY_SEC = 2;

function startCapture(): WorkerProcess {
  return startProcess('bin/payfleet.js', ['worker', 'capture'], {
    ...authEnv(stack, sb),
    CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '8',
    AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
    CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: String(RETRY_DELAY_SEC),
    CAPTURE_PROCESS_MAXIMUM_RETRIES: '3',
    PAYFLEET_CAPTURE_GAUGE_REFRESH_MS: '500',
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '8000',
  });
}

beforeAll(async () => {
  stack = await setupTestStack('capture');
  sb = await startAuthSandboxes();
  auth = startAuthWorker(stack, sb);
  capture = startCapture();
  await Promise.all([
    auth.waitForLine((l) => l.msg === 'worker started', 30_000),
    capture.waitForLine((l) => l.msg === 'worker started', 30_000),
  ]);
});
afterAll(async () => {
  for (const p of [auth, capture]) p?.kill('SIGTERM');
  await Promise.all([auth?.exited, capture?.exited]);
  await sb?.close();
  stack?.close();
});

async function authorise(chargeId: string, opts: { processor?: string; card?: string } = {}) {
  const req = authRequest({
    chargeId,
    processor: opts.processor ?? 'sandbox',
    paymentTokenId: `tok_${opts.card ?? SANDBOX_CARDS.approve}_${chargeId}`,
  });
  await sendAll(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), [
    { body: JSON.stringify(req), groupId: chargeId, dedupId: req.authRequestId },
  ]);
  return req;
}

async function requestCapture(chargeId: string, captureRequestId = randomUUID(), dedup = captureRequestId) {
  const body = { type: 'CaptureRequested', captureRequestId, chargeId, requestedAt: new Date().toISOString() };
  await sendAll(stack.clients.sqs, stack.url(stack.names.queue('capture-requests')), [
    { body: JSON.stringify(body), groupId: chargeId, dedupId: dedup },
  ]);
  return body;
}

async function statusOf(chargeId: string, wanted: string, timeoutMs = 30_000) {
  await eventually(async () => (await readCharge(stack, chargeId))?.status === wanted, timeoutMs, `${chargeId} to be ${wanted}`);
  return (await readCharge(stack, chargeId))!;
}

const eventTypes = async (id: string) => (await readEvents(stack, id)).map((e) => e.eventType);

/** The dead letters of one charge among `messages` (read from the capture DLQ). */
const lettersFor = (chargeId: string, messages: Message[]) =>
  messages.filter((m) => m.MessageAttributes?.[DLQ_ATTRIBUTES.groupId]?.StringValue === chargeId);

describe('capture worker', () => {
  describe('end to end', () => {
    it('captures an authorised charge: CAPTURED with USER_APPROVED_FOR_CAPTURE and CAPTURE_CONFIRMED', async () => {
      await authorise('cap-ok');
      await statusOf('cap-ok', 'AUTHORISATION_SUCCESS');
      await requestCapture('cap-ok');
      const charge = await statusOf('cap-ok', 'CAPTURED');
      expect(charge.history.map((h) => h.status)).toEqual([
        'CREATED',
        'AUTHORISATION_READY',
        'AUTHORISATION_SUCCESS',
        'CAPTURE_APPROVED',
        'CAPTURE_READY',
        'CAPTURED',
      ]);
      expect(await eventTypes('cap-ok')).toEqual([
        'PAYMENT_CREATED',
        'AUTHORISATION_SUCCEEDED',
        'USER_APPROVED_FOR_CAPTURE',
        'CAPTURE_CONFIRMED',
      ]);
      expect(charge.captureQueue).toBeUndefined();
    });

    it('records CAPTURE_SUBMITTED when the processor confirms later', async () => {
      await authorise('cap-async', { card: SANDBOX_CARDS.captureSubmitted });
      await statusOf('cap-async', 'AUTHORISATION_SUCCESS');
      await requestCapture('cap-async');
      await statusOf('cap-async', 'CAPTURE_SUBMITTED');
      expect((await eventTypes('cap-async')).at(-1)).toBe('CAPTURE_SUBMITTED');
    });

    it('a failed capture is CAPTURE_APPROVED_RETRY, deferred by the retry delay, then captured once', async () => {
      await authorise('cap-retry', { processor: 'stripe' });
      await statusOf('cap-retry', 'AUTHORISATION_SUCCESS');
      sb.stripe.faults.update({ rate5xx: 1 });
      await requestCapture('cap-retry');
      await statusOf('cap-retry', 'CAPTURE_APPROVED_RETRY', 20_000);
      const failedAt = Date.now();
      sb.stripe.faults.update({ rate5xx: 0 });
      const charge = await statusOf('cap-retry', 'CAPTURED', 20_000);
      // The retry waited for the deferred visibility, not the consumer's short backoff.
      expect(Date.now() - failedAt).toBeGreaterThanOrEqual(RETRY_DELAY_SEC * 1000 - 600);
      expect(charge.history.filter((h) => h.status === 'CAPTURE_READY')).toHaveLength(2);
      expect(sb.stripe.stats().charges['cap-retry']?.captured).toBe(1);
      await capture.waitForLine(
        (l) => l.msg === 'capture failed; deferring the message' && l.chargeId === 'cap-retry' && l.delaySec === RETRY_DELAY_SEC,
        5000,
      );
    });

    it('after the maximum attempts the charge is CAPTURE_ERROR with an ERROR line, and the message is deleted', async () => {
      await authorise('cap-fail', { card: SANDBOX_CARDS.captureFailsRetryable });
      await statusOf('cap-fail', 'AUTHORISATION_SUCCESS');
      const first = await requestCapture('cap-fail');
      const charge = await statusOf('cap-fail', 'CAPTURE_ERROR', 40_000);
      expect(charge.history.filter((h) => h.status === 'CAPTURE_READY')).toHaveLength(3);
      expect((await eventTypes('cap-fail')).at(-1)).toBe('CAPTURE_ABANDONED_AFTER_TOO_MANY_RETRIES');
      const alert = await capture.waitForLine((l) => l.alert === 'CAPTURE_ABANDONED' && l.chargeId === 'cap-fail', 5000);
      expect(alert.level).toBe('error');
      await sleep(RETRY_DELAY_SEC * 1000 + 500);
      expect(await drain(stack.clients.sqs, stack.url(stack.names.queue('capture-requests')))).toHaveLength(0);
      const dead = await drain(stack.clients.sqs, stack.url(stack.names.dlq('capture-requests')));
      expect(dead.filter((d) => d.MessageAttributes?.[DLQ_ATTRIBUTES.groupId]?.StringValue === 'cap-fail')).toHaveLength(0);
      // A re-send of that request gets what it got: acknowledged (the abandonment was never a letter).
      await requestCapture('cap-fail', first.captureRequestId, `${first.captureRequestId}-again`);
      await capture.waitForLine(
        (l) => l.chargeId === 'cap-fail' && l.msg === 'request already completed; acknowledging the duplicate',
        15_000,
      );
      expect(lettersFor('cap-fail', await drain(stack.clients.sqs, stack.url(stack.names.dlq('capture-requests'))))).toHaveLength(
        0,
      );
    });

    it('a refused capture (CAPTURE_ERROR, dead-lettered) is dead-lettered again when redelivered or requested anew, never acknowledged', async () => {
      await authorise('cap-refused', { processor: 'stripe' });
      const authorised = await statusOf('cap-refused', 'AUTHORISATION_SUCCESS');
      // Someone cancels the PaymentIntent at Stripe: the capture is refused for good (NOT_CAPTURABLE).
      const cancelled = await fetch(`${sb.stripe.url}/v1/payment_intents/${authorised.processorRef}/cancel`, {
        method: 'POST',
        headers: { authorization: `Bearer ${sb.stripe.apiKey}` },
      });
      expect(cancelled.status).toBe(200);
      const first = await requestCapture('cap-refused');
      await statusOf('cap-refused', 'CAPTURE_ERROR');
      const letters: Message[] = [];
      const lettersUntil = async (n: number) => {
        await eventually(
          async () =>
            letters.push(
              ...lettersFor('cap-refused', await drain(stack.clients.sqs, stack.url(stack.names.dlq('capture-requests')))),
            ) >= n,
          30_000,
          `${n} dead letters for cap-refused`,
        );
        return letters.map((l) => ({
          code: l.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue,
          detail: l.MessageAttributes?.[DLQ_ATTRIBUTES.detail]?.StringValue ?? '',
        }));
      };
      expect((await lettersUntil(1))[0]!.code).toBe('NOT_CAPTURABLE');

      // The redrive of that letter: same body and captureRequestId, fresh deduplication id.
      await requestCapture('cap-refused', first.captureRequestId, `redrive-${first.captureRequestId}`);
      const again = (await lettersUntil(2))[1]!;
      expect(again.code).toBe('NOT_CAPTURABLE');
      expect(again.detail).toContain('is already CAPTURE_ERROR (NOT_CAPTURABLE); this request was not processed again');
      // Another request for the same charge meets the same final error.
      await requestCapture('cap-refused');
      expect((await lettersUntil(3))[2]).toMatchObject({ code: 'NOT_CAPTURABLE' });
      expect(sb.stripe.stats().charges['cap-refused']?.captured ?? 0).toBe(0);
      expect((await eventTypes('cap-refused')).at(-1)).toBe('CAPTURE_ERRORED');
      expect(
        capture.lines.some(
          (l) => l.chargeId === 'cap-refused' && String(l.msg).startsWith('request already completed; acknowledging'),
        ),
      ).toBe(false);
    });

    it('a redelivered request for a CAPTURED charge makes no second capture call', async () => {
      await authorise('cap-dup', { processor: 'stripe' });
      await statusOf('cap-dup', 'AUTHORISATION_SUCCESS');
      const first = await requestCapture('cap-dup');
      await statusOf('cap-dup', 'CAPTURED');
      await requestCapture('cap-dup', first.captureRequestId, `${first.captureRequestId}-again`);
      await requestCapture('cap-dup'); // a new request id for the same charge
      await capture.waitForLine((l) => l.chargeId === 'cap-dup' && String(l.msg).startsWith('charge already captured'), 15_000);
      await capture.waitForLine(
        (l) => l.chargeId === 'cap-dup' && l.msg === 'request already completed; acknowledging the duplicate',
        15_000,
      );
      expect(sb.stripe.stats().charges['cap-dup']?.captured).toBe(1);
      expect((await eventTypes('cap-dup')).filter((e) => e === 'CAPTURE_CONFIRMED')).toHaveLength(1);
    });

    it('a capture request that arrives before its authorisation is retried, not lost', async () => {
      await requestCapture('cap-early');
      await sleep(1500);
      expect(await readCharge(stack, 'cap-early')).toBeUndefined();
      await authorise('cap-early');
      await statusOf('cap-early', 'CAPTURED', 40_000);
    });

    it('a capture for a charge that can never be captured goes to the DLQ with NOT_CAPTURABLE', async () => {
      await authorise('cap-declined', { card: SANDBOX_CARDS.decline });
      await statusOf('cap-declined', 'AUTHORISATION_REJECTED');
      await requestCapture('cap-declined');
      await eventually(
        async () =>
          (await drain(stack.clients.sqs, stack.url(stack.names.dlq('capture-requests')))).some(
            (d) =>
              d.MessageAttributes?.[DLQ_ATTRIBUTES.groupId]?.StringValue === 'cap-declined' &&
              d.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue === 'NOT_CAPTURABLE',
          ),
        20_000,
        'a NOT_CAPTURABLE dead letter',
      );
    });

    it('a capture worker SIGKILLed mid-capture: another process finishes it with exactly one capture at the processor', async () => {
      await authorise('cap-kill', { processor: 'stripe' });
      await statusOf('cap-kill', 'AUTHORISATION_SUCCESS');
      sb.stripe.faults.update({ latencyMs: 4000 });
      await requestCapture('cap-kill');
      await statusOf('cap-kill', 'CAPTURE_READY', 20_000);
      await sleep(300); // the capture request is on the wire
      capture.kill('SIGKILL');
      await capture.exited;
      sb.stripe.faults.update({ latencyMs: 0 });
      capture = startCapture();
      const charge = await statusOf('cap-kill', 'CAPTURED', 40_000);
      expect(sb.stripe.stats().charges['cap-kill']?.captured).toBe(1);
      expect(charge.history.filter((h) => h.status === 'CAPTURED')).toHaveLength(1);
      expect((await eventTypes('cap-kill')).filter((e) => e === 'CAPTURE_CONFIRMED')).toHaveLength(1);
    });
  });
});
