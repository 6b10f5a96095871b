import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Charge } from '../../shared/charges/charge.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { authEnv, startAuthSandboxes, startAuthWorker, startCrashingAuthWorker, type AuthSandboxes } from './support.js';

/**
 * The row lease's windows between write 1 and the processor call, with real processes:
 *
 *   auth     write 1 (charge AUTHORISATION_READY, lease + work item on the row) ─ ✗ SIGKILL ─ (processor never asked)
 *   rescuer  ... the row lease expires (3 s), the message comes back ─ write 1 takes the lease over (token + 1,
 *            attempt 2) ─ READY it did not create: look up first (nothing) ─ authorise ─ write 2
 *   capture  commit CAPTURE_READY ─ ✗ SIGKILL ─ rescuer: look up first ─ capture with the same key ─ CAPTURED
 *
 * Never a blind second call: the rescuer logs its lookup-first path, and the Stripe sandbox counts one
 * authorisation and one capture per charge. One worker consumes at a time, so the victim is certainly
 * the one that takes the message.
 */
let stack: TestStack;
let sb: AuthSandboxes;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('rowkill');
  sb = await startAuthSandboxes();
});
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await sb?.close();
  stack?.close();
});

const row = async (chargeId: string) => (await readCharge(stack, chargeId)) as (Charge & Record<string, unknown>) | undefined;

async function statusOf(chargeId: string, wanted: string) {
  await eventually(async () => (await row(chargeId))?.status === wanted, 60_000, `${chargeId} to be ${wanted}`);
  return (await row(chargeId))!;
}

function startCapture(extra: Record<string, string> = {}, script = 'bin/payfleet.js', args = ['worker', 'capture']): WorkerProcess {
  const p = startProcess(script, args, {
    ...authEnv(stack, sb),
    CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '4',
    AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
    CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '2',
    ...extra,
  });
  procs.push(p);
  return p;
}

describe('row lease: a worker killed between write 1 and the processor call', () => {
  it('auth: the next worker takes the row lease over and resolves by lookup; one authorisation at the processor', async () => {
    const chargeId = 'kill-before-authorise';
    const victim = startCrashingAuthWorker(stack, sb, 'before-authorise');
    procs.push(victim);
    await victim.waitForLine((l) => l.msg === 'worker started', 30_000);
    const req = authRequest({ chargeId, processor: 'stripe' });
    await sendAll(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), [
      { body: JSON.stringify(req), groupId: chargeId, dedupId: req.authRequestId },
    ]);
    await victim.waitForLine((l) => l.msg === 'test crash' && l.chargeId === chargeId, 30_000);
    expect(await victim.exited).toBe('SIGKILL');

    // What write 1 left: the charge READY, its lease and open work item on the row, nothing emitted
    // yet (PAYMENT_CREATED goes out with the outcome), nothing asked of the processor.
    const left = (await row(chargeId))!;
    expect(left.status).toBe('AUTHORISATION_READY');
    expect(left.leaseOwner).toMatch(/^auth-/);
    expect(left.leaseToken).toBe(1);
    expect(left[`work:auth#${req.authRequestId}`]).toMatchObject({ status: 'IN_PROGRESS', attempts: 1 });
    expect(await readEvents(stack, chargeId)).toEqual([]);
    expect(sb.stripe.stats().charges[chargeId]?.authorised ?? 0).toBe(0);

    const rescuer = startAuthWorker(stack, sb);
    procs.push(rescuer);
    const done = await statusOf(chargeId, 'AUTHORISATION_SUCCESS');
    await rescuer.waitForLine(
      (l) => l.chargeId === chargeId && l.msg === 'charge was AUTHORISATION_READY: resolving the earlier attempt before anything else',
      5000,
    );
    // Taken over on the row: a new token, the work item's second attempt, completed; the lease released.
    expect(done.leaseToken).toBe(2);
    expect(done.leaseOwner).toBeUndefined();
    expect(done[`work:auth#${req.authRequestId}`]).toMatchObject({ status: 'COMPLETED', attempts: 2, result: { status: 'AUTHORISATION_SUCCESS' } });
    expect((await readEvents(stack, chargeId)).map((e) => [e.sequence, e.eventType])).toEqual([
      [1, 'PAYMENT_CREATED'],
      [2, 'AUTHORISATION_SUCCEEDED'],
    ]);
    expect(sb.stripe.stats().charges[chargeId]).toMatchObject({ created: 1, authorised: 1 });
    rescuer.kill('SIGTERM');
    await rescuer.exited;
  }, 180_000);

  it('capture: killed after CAPTURE_READY, the next worker looks up first and captures once', async () => {
    const chargeId = 'kill-before-capture';
    const auth = startAuthWorker(stack, sb);
    procs.push(auth);
    const req = authRequest({ chargeId, processor: 'stripe' });
    await sendAll(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), [
      { body: JSON.stringify(req), groupId: chargeId, dedupId: req.authRequestId },
    ]);
    await statusOf(chargeId, 'AUTHORISATION_SUCCESS');
    auth.kill('SIGTERM');
    await auth.exited;

    const victim = startCapture({ CAPTURE_TEST_CRASH_AT: 'before-capture' }, 'test/capture/crash-worker.ts', []);
    await victim.waitForLine((l) => l.msg === 'worker started', 30_000);
    const body = { type: 'CaptureRequested', captureRequestId: randomUUID(), chargeId, requestedAt: new Date().toISOString() };
    await sendAll(stack.clients.sqs, stack.url(stack.names.queue('capture-requests')), [
      { body: JSON.stringify(body), groupId: chargeId, dedupId: body.captureRequestId },
    ]);
    await victim.waitForLine((l) => l.msg === 'test crash' && l.chargeId === chargeId, 30_000);
    expect(await victim.exited).toBe('SIGKILL');
    const left = (await row(chargeId))!;
    expect(left.status).toBe('CAPTURE_READY');
    expect(sb.stripe.stats().charges[chargeId]?.captured ?? 0).toBe(0);

    const rescuer = startCapture();
    const done = await statusOf(chargeId, 'CAPTURED');
    await rescuer.waitForLine(
      (l) => l.chargeId === chargeId && l.msg === 'charge was CAPTURE_READY: looking up the earlier attempt before capturing again',
      5000,
    );
    expect(done.history.filter((h) => h.status === 'CAPTURE_READY')).toHaveLength(1);
    expect(done[`work:capture#${body.captureRequestId}`]).toMatchObject({ status: 'COMPLETED', attempts: 2 });
    expect(sb.stripe.stats().charges[chargeId]).toMatchObject({ authorised: 1, captured: 1 });
    rescuer.kill('SIGTERM');
    await rescuer.exited;
  }, 180_000);
});
