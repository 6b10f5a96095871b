import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { STRIPE_SANDBOX_MISMATCH_AMOUNT } from '../../cli/sandbox/stripe-server.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { startAuthSandboxes, startAuthWorker, startCrashingAuthWorker, type AuthSandboxes } from './support.js';

/**
 * The void of an AMOUNT_MISMATCH authorisation survives a worker killed in either window:
 *
 *   after-mismatch: AUTHORISATION_ERROR + void PENDING committed, the processor not yet asked
 *   after-void:     the processor voided, the answer not committed
 *
 * Each time a fresh worker picks the redelivered request up, finishes the void under the same
 * idempotency key and dead-letters it AMOUNT_MISMATCH; Stripe's counters show one cancel.
 * One worker at a time consumes, so the victim is certainly the one that takes the message.
 */
let stack: TestStack;
let sb: AuthSandboxes;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('authvoidkill');
  sb = await startAuthSandboxes();
});
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await sb?.close();
  stack?.close();
});

async function deadLetters(chargeId: string, count: number): Promise<Record<string, string>[]> {
  const found: Record<string, string>[] = [];
  await eventually(
    async () => {
      for (const m of await drain(stack.clients.sqs, stack.url(stack.names.dlq('auth-requests')))) {
        const attrs: Record<string, string> = {};
        for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) attrs[k] = v.StringValue ?? '';
        if (attrs[DLQ_ATTRIBUTES.groupId] === chargeId) found.push(attrs);
      }
      return found.length >= count;
    },
    60_000,
    `${count} dead letter(s) for ${chargeId}`,
  );
  return found;
}

async function killedThenRescued(chargeId: string, crashAt: 'after-mismatch' | 'after-void') {
  const victim = startCrashingAuthWorker(stack, sb, crashAt);
  procs.push(victim);
  await victim.waitForLine((l) => l.msg === 'worker started', 30_000);
  const req = authRequest({ chargeId, processor: 'stripe', amount: STRIPE_SANDBOX_MISMATCH_AMOUNT });
  await sendAll(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), [
    { body: JSON.stringify(req), groupId: chargeId, dedupId: req.authRequestId },
  ]);
  await victim.waitForLine((l) => l.msg === 'test crash' && l.chargeId === chargeId, 30_000);
  expect(await victim.exited).toBe('SIGKILL');

  // What the victim left behind: the mismatch with its reference and a PENDING void.
  const left = (await readCharge(stack, chargeId))!;
  expect(left.status).toBe('AUTHORISATION_ERROR');
  expect(left.processorRef).toMatch(/^pi_/);
  expect(left.authorisationVoid).toMatchObject({ state: 'PENDING', processorRef: left.processorRef });
  expect(sb.stripe.stats().charges[chargeId]?.canceled ?? 0).toBe(crashAt === 'after-void' ? 1 : 0);

  const rescuer = startAuthWorker(stack, sb);
  procs.push(rescuer);
  const [letter] = await deadLetters(chargeId, 1);
  expect(letter![DLQ_ATTRIBUTES.code]).toBe('AMOUNT_MISMATCH');
  const charge = (await readCharge(stack, chargeId))!;
  expect(charge.status).toBe('AUTHORISATION_ERROR_CANCELLED');
  expect(charge.authorisationVoid).toMatchObject({ state: 'VOIDED', processorRef: left.processorRef });
  expect((await readEvents(stack, chargeId)).map((e) => e.eventType)).toEqual([
    'PAYMENT_CREATED',
    'AUTHORISATION_ERROR',
    'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR',
  ]);
  await rescuer.waitForLine((l) => l.chargeId === chargeId && l.msg === 'an earlier attempt left a PENDING void: finishing it first', 5000);
  await rescuer.waitForLine((l) => l.chargeId === chargeId && l.alert === 'AMOUNT_MISMATCH' && l.void === 'VOIDED', 5000);
  rescuer.kill('SIGTERM');
  await rescuer.exited;
  return sb.stripe.stats().charges[chargeId]!;
}

describe('auth worker: voiding a mismatched authorisation survives SIGKILL', () => {
  it('killed after the mismatch was recorded, before any void: the next worker voids it, exactly once', async () => {
    const stats = await killedThenRescued('kill-before-void', 'after-mismatch');
    expect(stats).toMatchObject({ created: 1, authorised: 1, canceled: 1, captured: 0 });
  }, 180_000);

  it('killed after the processor voided, before the answer was committed: the repeat is de-duplicated by its key', async () => {
    const stats = await killedThenRescued('kill-after-void', 'after-void');
    expect(stats).toMatchObject({ created: 1, authorised: 1, canceled: 1, captured: 0 });
    // The rescuer's cancel carried the same Idempotency-Key: Stripe replayed its stored answer.
    expect(stats.replays).toBeGreaterThanOrEqual(1);
  }, 180_000);
});
