import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STRIPE_REFUND_TEST_CARDS } from '../../cli/sandbox/stripe-server.js';
import { CHASE_PROCESSING_WINDOW_MS } from '../../shared/connectors/chase-window.js';
import { SANDBOX_CARDS, SANDBOX_REFUND_AMOUNTS } from '../../shared/connectors/sandbox.js';
import { readCharge, readEvents } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import {
  PROCESSORS,
  RefundE2e,
  startAuth,
  startCapture,
  startRefund,
  startRefundSandboxes,
  started,
  type Processor,
  type RefundSandboxes,
} from './e2e-support.js';

/**
 * Refunds end to end (issue 17 "Done when"): the auth, capture and refund workers as processes on
 * the embedded stack, against each processor — the in-process sandbox, and the Stripe, Worldpay and
 * Chase sandbox servers — judged by what each processor counted (test/refund/e2e-support.ts):
 *
 *   full refund · partial refunds up to the captured amount, then one more: REFUND_AMOUNT_UNAVAILABLE
 *   a refund of an authorised-only charge: NOT_REFUNDABLE
 *   Stripe and Worldpay refunds confirmed later: REFUND_SUBMITTED (deferred, looked up), then REFUNDED
 *   a timeout after the refund went through: looked up, one refund at the processor
 *   a SIGKILL between REFUND_SUBMITTED and the answer: the next worker looks up; one refund
 *     (Chase: the request is dropped unprocessed, J.P. Morgan's 70-second expiry; the next worker
 *     looks up and waits, and re-sends only once its clock is moved past the window)
 *
 * The cases without faults run concurrently on distinct charges; the fault cases one kind at a time.
 */
let stack: TestStack;
let sb: RefundSandboxes;
let h: RefundE2e;
let auth: WorkerProcess;
let capture: WorkerProcess;
let refund: WorkerProcess;
const dir = mkdtempSync(join(tmpdir(), 'payfleet-refund-e2e-'));

beforeAll(async () => {
  stack = await setupTestStack('refunde2e');
  sb = await startRefundSandboxes();
  h = new RefundE2e(stack, sb);
  auth = startAuth(stack, sb);
  capture = startCapture(stack, sb);
  refund = startRefund(stack, sb, join(dir, 'clock-0'));
  h.refundWorkers.push(refund);
  await Promise.all([started(auth), started(capture), started(refund)]);
}, 120_000);
afterAll(async () => {
  const all = [auth, capture, ...(h?.refundWorkers ?? [])].filter(Boolean);
  for (const p of all) p.kill('SIGTERM');
  await Promise.all(all.map((p) => p.exited));
  await sb?.close();
  stack?.close();
});

const refundEvents = async (refundId: string) => (await readEvents(stack, refundId)).map((e) => e.eventType);
const SUCCEEDED = ['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_SUCCEEDED'];
/** Stripe with this card, and Worldpay always, accept a refund and confirm it later. */
const cardFor = (p: Processor) => (p === 'stripe' ? STRIPE_REFUND_TEST_CARDS.pendingThenSucceeded : undefined);

describe.concurrent('refunds end to end, at each processor', () => {
  it.each(PROCESSORS)('%s: a full refund: REFUNDED, refunded once at the processor, the charge carries it', async (p) => {
    const chargeId = `${p}-full`;
    await h.charge(p, chargeId, 1000);
    const r = await h.refund(chargeId, 1000);
    const row = await h.refundStatus(r.refundId, ['REFUNDED', 'REFUND_ERROR']);
    expect(row.status).toBe('REFUNDED');
    expect((row.history as { status: string }[]).map((s) => s.status)).toEqual([
      'REFUND_CREATED',
      'REFUND_SUBMITTED',
      'REFUNDED',
    ]);
    expect(await refundEvents(r.refundId)).toEqual(SUCCEEDED);
    expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(1000);
    expect(await h.processorRefunds(p, chargeId)).toEqual({ refunds: 1, refunded: 1000, capturedAmount: 1000 });
    // Worldpay confirms every refund later: REFUND_SUBMITTED stayed while the worker deferred and looked it up.
    if (p === 'worldpay') expect(h.pendings(r.refundId)).toBeGreaterThanOrEqual(1);
  });

  it.each(PROCESSORS)(
    '%s: partial refunds up to the captured amount, then one more: dead-lettered REFUND_AMOUNT_UNAVAILABLE, nothing sent',
    async (p) => {
      const chargeId = `${p}-partial`;
      await h.charge(p, chargeId, 1000);
      const [r1, r2, r3, over] = await h.refunds(chargeId, [300, 300, 400, 100]);
      for (const r of [r1!, r2!, r3!])
        expect((await h.refundStatus(r.refundId, ['REFUNDED', 'REFUND_ERROR'])).status).toBe('REFUNDED');
      const letter = await h.deadLetter(over!.refundId);
      expect(h.deadCode(letter)).toBe('REFUND_AMOUNT_UNAVAILABLE');
      // Refused before a refund existed: the row is a bare reservation, no events, nothing taken.
      expect((await h.refundRow(over!.refundId))?.status).toBeUndefined();
      expect(await readEvents(stack, over!.refundId)).toEqual([]);
      expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(1000);
      expect(await h.processorRefunds(p, chargeId)).toEqual({ refunds: 3, refunded: 1000, capturedAmount: 1000 });
      for (const r of [r1!, r2!, r3!]) expect(await refundEvents(r.refundId)).toEqual(SUCCEEDED);
    },
  );

  it.each(PROCESSORS)(
    '%s: a refund of an authorised, uncaptured charge: dead-lettered NOT_REFUNDABLE, nothing sent',
    async (p) => {
      const chargeId = `${p}-uncaptured`;
      await h.charge(p, chargeId, 1000, { capture: false });
      const r = await h.refund(chargeId, 500);
      expect(h.deadCode(await h.deadLetter(r.refundId))).toBe('NOT_REFUNDABLE');
      expect((await h.refundRow(r.refundId))?.status).toBeUndefined();
      expect((await readCharge(stack, chargeId))?.status).toBe('AUTHORISATION_SUCCESS');
      expect((await readCharge(stack, chargeId))?.refundedAmount ?? 0).toBe(0);
      expect((await h.processorRefunds(p, chargeId)).refunds).toBe(0);
    },
  );

  it('stripe: a refund Stripe answers pending stays REFUND_SUBMITTED, is looked up again, and is REFUNDED once Stripe confirms it', async () => {
    const chargeId = 'stripe-pending';
    await h.charge('stripe', chargeId, 1000, { card: cardFor('stripe')! });
    const r = await h.refund(chargeId, 600);
    const row = await h.refundStatus(r.refundId, ['REFUNDED', 'REFUND_ERROR']);
    expect(row.status).toBe('REFUNDED');
    expect(h.pendings(r.refundId)).toBeGreaterThanOrEqual(1);
    expect(h.lookups(r.refundId)).toContain('refunded');
    expect(await refundEvents(r.refundId)).toEqual(SUCCEEDED);
    expect(await h.processorRefunds('stripe', chargeId)).toEqual({ refunds: 1, refunded: 600, capturedAmount: 1000 });
  });
});

describe('refunds whose answer is lost', () => {
  it('a processor timeout after the refund went through: looked up, never re-sent; one refund at each processor', async () => {
    const ids = Object.fromEntries(PROCESSORS.map((p) => [p, `${p}-timeout`])) as Record<Processor, string>;
    await Promise.all(PROCESSORS.map((p) => h.charge(p, ids[p], 9000)));
    // The refund is made and recorded; its answer never comes (the worker's call times out).
    sb.stripe.faults.update({ rules: [{ method: 'POST', paths: ['/v1/refunds'], rateTimeoutAfterSuccess: 1 }] });
    sb.worldpay.faults.update({
      rules: [{ paths: ['/jsp/merchant/xml/paymentService.jsp/refund'], rateTimeoutAfterSuccess: 1 }],
    });
    sb.chase.faults.update({ rules: [{ method: 'POST', paths: ['/refunds'], rateTimeoutAfterSuccess: 1 }] });
    // The in-process sandbox: its magic amount refunds and then answers "timed out".
    const amount = (p: Processor) => (p === 'sandbox' ? SANDBOX_REFUND_AMOUNTS.timeoutAfterRefund : 6000);
    const refunds = await Promise.all(PROCESSORS.map((p) => h.refund(ids[p], amount(p))));
    try {
      for (const r of refunds) expect((await h.refundStatus(r.refundId, ['REFUNDED', 'REFUND_ERROR'])).status).toBe('REFUNDED');
    } finally {
      for (const s of [sb.stripe, sb.worldpay, sb.chase]) s.faults.reset();
    }
    for (const [i, p] of PROCESSORS.entries()) {
      const r = refunds[i]!;
      expect(await h.processorRefunds(p, ids[p]), p).toEqual({ refunds: 1, refunded: amount(p), capturedAmount: 9000 });
      // The answer was lost, so the next attempt looked the refund up and found it.
      expect(h.lookups(r.refundId)[0], p).toMatch(/^(refunded|pending)$/);
      expect(await refundEvents(r.refundId), p).toEqual(SUCCEEDED);
      expect((await readCharge(stack, ids[p]))?.refundedAmount, p).toBe(amount(p));
    }
    expect(sb.stripe.stats().charges[ids.stripe]?.replays ?? 0, 'no second POST /v1/refunds').toBe(0);
    expect(sb.chase.stats().charges[ids.chase]?.replays ?? 0, 'no second POST /refunds').toBe(0);
    expect(h.sandboxCalls(ids.sandbox)).toHaveLength(1);
  });

  it('a refund worker SIGKILLed between REFUND_SUBMITTED and the answer: the next worker looks up first; one refund at each processor', async () => {
    const ids = Object.fromEntries(PROCESSORS.map((p) => [p, `${p}-kill`])) as Record<Processor, string>;
    await Promise.all(PROCESSORS.map((p) => h.charge(p, ids[p], 1000)));
    // Only the victim takes refunds from here on.
    refund.kill('SIGTERM');
    expect(await refund.exited).toBe(0);

    // Keep every call in flight: Stripe and Worldpay refund and never answer; Chase holds the request
    // unprocessed; the sandbox processor refunds and never answers (test/refund/e2e-worker.ts).
    sb.stripe.faults.update({ rules: [{ method: 'POST', paths: ['/v1/refunds'], rateTimeoutAfterSuccess: 1 }] });
    sb.worldpay.faults.update({
      rules: [{ paths: ['/jsp/merchant/xml/paymentService.jsp/refund'], rateTimeoutAfterSuccess: 1 }],
    });
    sb.chase.hold(1, 'refunds');
    const victim = startRefund(stack, sb, join(dir, 'clock-victim'), {
      PAYFLEET_PROCESSOR_TIMEOUT_MS: '300000',
      REFUND_TEST_HANG_AFTER_SANDBOX_REFUND: '1',
    });
    h.refundWorkers.push(victim);
    const refunds = Object.fromEntries(
      await Promise.all(PROCESSORS.map(async (p) => [p, await h.refund(ids[p], 700)] as const)),
    ) as unknown as Record<Processor, { refundId: string }>;
    await eventually(
      async () =>
        (await h.processorRefunds('stripe', ids.stripe)).refunds === 1 &&
        (await h.processorRefunds('worldpay', ids.worldpay)).refunds === 1 &&
        (await h.processorRefunds('sandbox', ids.sandbox)).refunds === 1 &&
        sb.chase.held === 1,
      60_000,
      'every refund call in flight',
    );
    for (const p of PROCESSORS) expect((await h.refundRow(refunds[p].refundId))?.status, p).toBe('REFUND_SUBMITTED');
    victim.kill('SIGKILL');
    expect(await victim.exited).toBe('SIGKILL');
    for (const s of [sb.stripe, sb.worldpay]) s.faults.reset();
    // J.P. Morgan's expiry: the held request ends without a record.
    expect(sb.chase.release('drop')).toBe(1);
    for (const p of PROCESSORS) expect((await h.refundRow(refunds[p].refundId))?.status, p).toBe('REFUND_SUBMITTED');

    const rescuerClock = join(dir, 'clock-rescuer');
    refund = startRefund(stack, sb, rescuerClock);
    h.refundWorkers.push(refund);
    for (const p of ['sandbox', 'stripe', 'worldpay'] as const) {
      expect((await h.refundStatus(refunds[p].refundId, ['REFUNDED', 'REFUND_ERROR'])).status, p).toBe('REFUNDED');
      // The refund was made before the kill: the rescuer found it and sent nothing.
      expect(h.lookups(refunds[p].refundId)[0], p).toMatch(/^(refunded|pending)$/);
    }
    // Chase: nothing found, but the request may still be processing: the rescuer waits, never re-sends...
    await eventually(
      () => h.lookups(refunds.chase.refundId).filter((f) => f === 'unknown').length >= 2,
      60_000,
      'two inconclusive Chase lookups',
    );
    expect((await h.processorRefunds('chase', ids.chase)).refunds).toBe(0);
    expect((await h.refundRow(refunds.chase.refundId))?.status).toBe('REFUND_SUBMITTED');
    // ...until 70 s have passed (its clock moved): then "not found" is conclusive and it re-sends under the same key.
    writeFileSync(rescuerClock, String(CHASE_PROCESSING_WINDOW_MS + 1_000));
    expect((await h.refundStatus(refunds.chase.refundId, ['REFUNDED', 'REFUND_ERROR'])).status).toBe('REFUNDED');

    for (const p of PROCESSORS) {
      expect(await h.processorRefunds(p, ids[p]), p).toEqual({ refunds: 1, refunded: 700, capturedAmount: 1000 });
      expect(await refundEvents(refunds[p].refundId), p).toEqual(SUCCEEDED);
      expect((await readCharge(stack, ids[p]))?.refundedAmount, p).toBe(700);
    }
    expect(sb.stripe.stats().charges[ids.stripe]?.replays ?? 0).toBe(0);
  });

  it('no card number, processor secret or access token in any worker log', () => {
    for (const p of [auth, capture, ...h.refundWorkers]) {
      const raw = p.raw();
      for (const pan of [...Object.values(SANDBOX_CARDS), '4444333322221111', STRIPE_REFUND_TEST_CARDS.pendingThenSucceeded])
        expect(raw).not.toContain(pan);
      expect(raw).not.toContain(sb.stripe.apiKey);
      expect(raw).not.toContain(sb.chase.clientSecret);
      expect(raw).not.toMatch(/jpm_[0-9a-f]{32}/);
    }
  });
});
