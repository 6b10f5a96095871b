import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHASE_SANDBOX_MISMATCH_AMOUNT } from '../../cli/sandbox/chase-server.js';
import { CHASE_PROCESSING_WINDOW_MS } from '../../shared/connectors/chase-window.js';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { startChaseAuthWorker, startChaseCaptureWorker, startChaseSandboxes, type ChaseSandboxes } from './support.js';

/**
 * Chase end to end: the auth and capture workers as processes on the embedded stack, against the
 * Chase sandbox, through the same cases as Stripe's (test/auth/auth-e2e.test.ts,
 * test/capture/capture-e2e.test.ts), plus J.P. Morgan's 70-second rule with the auth worker's
 * processor clock moved by the test (test/chase/clock-worker.ts).
 */
let stack: TestStack;
let sb: ChaseSandboxes;
let auth: WorkerProcess;
let capture: WorkerProcess;
const clockFile = join(mkdtempSync(join(tmpdir(), 'payfleet-chase-')), 'clock-offset-ms');

beforeAll(async () => {
  stack = await setupTestStack('chase');
  sb = await startChaseSandboxes();
  auth = startChaseAuthWorker(stack, sb, clockFile);
  capture = startChaseCaptureWorker(stack, sb, 1);
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

async function authorise(chargeId: string, overrides: Record<string, unknown> = {}) {
  const req = authRequest({
    chargeId,
    processor: 'chase',
    paymentTokenId: `tok_${SANDBOX_CARDS.approve}_${chargeId}`,
    ...overrides,
  });
  await sendAll(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), [
    { body: JSON.stringify(req), groupId: chargeId, dedupId: req.authRequestId },
  ]);
  return req;
}

async function requestCapture(chargeId: string) {
  const body = { type: 'CaptureRequested', captureRequestId: randomUUID(), chargeId, requestedAt: new Date().toISOString() };
  await sendAll(stack.clients.sqs, stack.url(stack.names.queue('capture-requests')), [
    { body: JSON.stringify(body), groupId: chargeId, dedupId: body.captureRequestId },
  ]);
}

async function statusOf(chargeId: string, wanted: string[], timeoutMs = 30_000) {
  await eventually(
    async () => wanted.includes((await readCharge(stack, chargeId))?.status ?? ''),
    timeoutMs,
    `${chargeId} to be ${wanted.join(' or ')}`,
  );
  return (await readCharge(stack, chargeId))!;
}

const stats = (chargeId: string) => sb.chase.stats().charges[chargeId];
/** How many times the auth worker started resolving `chargeId`'s earlier attempt (each one a lookup first). */
const resolutions = (chargeId: string) =>
  auth.lines.filter(
    (l) =>
      l.chargeId === chargeId && l.msg === 'charge was AUTHORISATION_READY: resolving the earlier attempt before anything else',
  ).length;

describe('Chase end to end', () => {
  it('approves: AUTHORISATION_SUCCESS with the transactionId, then captures once: CAPTURED', async () => {
    await authorise('chase-ok');
    const charge = await statusOf('chase-ok', ['AUTHORISATION_SUCCESS']);
    expect(charge.processorRef).toMatch(/^[0-9a-f]{24}$/);
    expect((await readEvents(stack, 'chase-ok')).map((e) => e.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_SUCCEEDED']);
    await requestCapture('chase-ok');
    await statusOf('chase-ok', ['CAPTURED']);
    expect(stats('chase-ok')).toMatchObject({ created: 1, authorised: 1, captured: 1 });
  });

  it("declines: AUTHORISATION_REJECTED with Chase's code, one payment, not dead-lettered", async () => {
    await authorise('chase-decline', { paymentTokenId: `tok_${SANDBOX_CARDS.decline}` });
    const charge = await statusOf('chase-decline', ['AUTHORISATION_REJECTED', 'AUTHORISATION_ERROR']);
    expect(charge.status).toBe('AUTHORISATION_REJECTED');
    expect(charge.declineCode).toBe('DECLINED');
    expect(stats('chase-decline')).toMatchObject({ created: 1, declined: 1 });
  });

  it('a 5xx is retried with backoff and then succeeds: exactly one payment', async () => {
    sb.chase.faults.update({ rules: [{ method: 'POST', paths: ['/payments'], rate5xx: 1 }] });
    await authorise('chase-5xx');
    await eventually(() => sb.chase.faults.injected['5xx'] >= 2, 20_000, 'two failed attempts');
    sb.chase.faults.reset();
    await statusOf('chase-5xx', ['AUTHORISATION_SUCCESS']);
    expect(stats('chase-5xx')).toMatchObject({ created: 1, authorised: 1 });
  });

  it('a timeout after the payment: looked up by request-id, never re-authorised; one payment', async () => {
    sb.chase.faults.update({ rules: [{ method: 'POST', paths: ['/payments'], rateTimeoutAfterSuccess: 1 }] });
    await authorise('chase-timeout');
    await eventually(() => (stats('chase-timeout')?.created ?? 0) >= 1, 20_000, 'the payment to reach Chase');
    sb.chase.faults.reset();
    await statusOf('chase-timeout', ['AUTHORISATION_SUCCESS']);
    expect(stats('chase-timeout')).toMatchObject({ created: 1, authorised: 1 });
  });

  it('another amount authorised: recorded, voided once at Chase (PATCH isVoid), AUTHORISATION_ERROR_CANCELLED', async () => {
    await authorise('chase-mismatch', { amount: CHASE_SANDBOX_MISMATCH_AMOUNT });
    const charge = await statusOf('chase-mismatch', ['AUTHORISATION_ERROR_CANCELLED']);
    expect(charge.errorCode).toBe('AMOUNT_MISMATCH');
    expect(stats('chase-mismatch')).toMatchObject({ created: 1, authorised: 1, voided: 1, captured: 0 });
  });

  it('70-second rule: while Chase may still be processing, the worker looks up and waits; it re-sends only once 70 s have passed', async () => {
    sb.chase.hold();
    await authorise('chase-70s-drop');
    await eventually(() => resolutions('chase-70s-drop') >= 3, 30_000, 'three lookups of the held request');
    // Three attempts, each of which found nothing, and not one re-sent: a re-send now would be a
    // second payment if the first one finished processing.
    expect(stats('chase-70s-drop')).toMatchObject({ received: 1, created: 0 });
    expect((await readCharge(stack, 'chase-70s-drop'))?.status).toBe('AUTHORISATION_READY');
    // J.P. Morgan's expiry: the held request is dropped without a record. Move the worker's clock past it.
    expect(sb.chase.release('drop')).toBe(1);
    writeFileSync(clockFile, String(CHASE_PROCESSING_WINDOW_MS + 1_000));
    await statusOf('chase-70s-drop', ['AUTHORISATION_SUCCESS']);
    expect(stats('chase-70s-drop')).toMatchObject({ received: 2, created: 1, authorised: 1 });
  });

  it('70-second rule: a request that finishes processing late is found by a lookup, never sent twice', async () => {
    sb.chase.hold();
    await authorise('chase-70s-late');
    await eventually(() => resolutions('chase-70s-late') >= 2, 30_000, 'two lookups of the held request');
    expect(stats('chase-70s-late')).toMatchObject({ received: 1, created: 0 });
    expect(sb.chase.release('record')).toBe(1);
    await statusOf('chase-70s-late', ['AUTHORISATION_SUCCESS']);
    expect(stats('chase-70s-late')).toMatchObject({ received: 1, created: 1, authorised: 1 });
  });

  it('a capture whose answer is lost is looked up by its request-id, not sent again: captured once', async () => {
    await authorise('chase-cap-timeout');
    await statusOf('chase-cap-timeout', ['AUTHORISATION_SUCCESS']);
    sb.chase.faults.update({ rules: [{ method: 'POST', paths: ['/payments/'], rateTimeoutAfterSuccess: 1 }] });
    await requestCapture('chase-cap-timeout');
    await eventually(() => (stats('chase-cap-timeout')?.captured ?? 0) >= 1, 20_000, 'the capture to reach Chase');
    sb.chase.faults.reset();
    await statusOf('chase-cap-timeout', ['CAPTURED']);
    // Found by its request-id: no second capture request reached Chase (it would show as a replay).
    expect(stats('chase-cap-timeout')).toMatchObject({ captured: 1, replays: 0 });
  });

  it('a revoked token (401) is refreshed once and the request repeated: one payment', async () => {
    const before = sb.chase.stats().totals;
    sb.chase.expireTokens();
    await authorise('chase-token');
    await statusOf('chase-token', ['AUTHORISATION_SUCCESS']);
    const after = sb.chase.stats().totals;
    expect(after.unauthorised).toBeGreaterThan(before.unauthorised);
    expect(after.tokens).toBeGreaterThan(before.tokens);
    expect(stats('chase-token')).toMatchObject({ created: 1 });
  });

  it('no card number, client secret or access token in any worker log', () => {
    for (const p of [auth, capture]) {
      const raw = p.raw();
      for (const pan of Object.values(SANDBOX_CARDS)) expect(raw).not.toContain(pan);
      expect(raw).not.toContain(sb.chase.clientSecret);
      expect(raw).not.toMatch(/jpm_[0-9a-f]{32}/);
    }
  });
});
