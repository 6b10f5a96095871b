import { randomUUID } from 'node:crypto';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll, sleep } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { startAuthSandboxes, startAuthWorker, type AuthSandboxes } from './support.js';

/**
 * 1,000 AuthorisationRequested sends over 200 charges (each request sent five times under
 * different deduplication ids, so SQS delivers every copy), Stripe answering slowly and
 * sometimes timing out after charging, while auth worker processes are SIGKILLed at random and
 * restarted. Oracle: every charge ends authorised or rejected, the fake Stripe created at most one
 * PaymentIntent per charge (exactly one for every charge it saw), nothing is in the DLQ, and each
 * charge has exactly its two events.
 */
const CHARGES = 200;
const COPIES = 5;

let stack: TestStack;
let sb: AuthSandboxes;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('authchaos');
  sb = await startAuthSandboxes();
});
afterAll(async () => {
  for (const w of workers) w.kill('SIGKILL');
  await sb?.close();
  stack?.close();
});

describe('auth worker under duplicates and SIGKILL', () => {
  it('1,000 requests over 200 charges: zero double authorisations, zero lost messages', async () => {
    sb.stripe.faults.update({ latencyMs: 20, latencyJitterMs: 60, rateTimeoutAfterSuccess: 0.03, rate5xx: 0.03, paths: ['/v1/payment_intents'] });
    const messages = [];
    const expectStatus = new Map<string, string>();
    for (let i = 0; i < CHARGES; i++) {
      const chargeId = `chaos-${i}`;
      const decline = i % 10 === 0;
      const processor = i % 4 === 0 ? 'sandbox' : 'stripe';
      const req = authRequest({ chargeId, processor, authRequestId: randomUUID(), paymentTokenId: `tok_${decline ? SANDBOX_CARDS.decline : SANDBOX_CARDS.approve}_${i}` });
      expectStatus.set(chargeId, decline ? 'AUTHORISATION_REJECTED' : 'AUTHORISATION_SUCCESS');
      for (let c = 0; c < COPIES; c++) messages.push({ body: JSON.stringify(req), groupId: chargeId, dedupId: `${req.authRequestId}-${c}` });
    }
    // Interleave copies so duplicates of one charge arrive far apart.
    messages.sort(() => Math.random() - 0.5);
    const start = (n: number) => {
      for (let i = 0; i < n; i++) {
        workers.push(
          startAuthWorker(stack, sb, {
            PAYFLEET_CONCURRENCY: '24',
            // Generous for a shared 2-core machine; the production defaults are 30 s / 10 s.
            PAYFLEET_LEASE_MS: '10000',
            PAYFLEET_LEASE_RENEW_MS: '3000',
            PAYMENT_TOKEN_SERVICE_TIMEOUT_MS: '10000',
            PAYFLEET_PROCESSOR_TIMEOUT_MS: '3000',
          }),
        );
      }
    };
    start(3);
    await Promise.all(workers.map((w) => w.waitForLine((l) => l.msg === 'worker started', 30_000)));
    await sendAll(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), messages);

    // Kill a random live worker every ~1.5 s and start a fresh one, for as long as work remains.
    let kills = 0;
    // One paginated Scan per check: 200 reads every poll would compete with the workers for CPU.
    const statuses = async () => {
      const out = new Map<string, string>();
      let start: Record<string, unknown> | undefined;
      do {
        const page = await stack.clients.doc.send(
          new ScanCommand({ TableName: stack.names.table('charges'), ProjectionExpression: 'chargeId, #s', ExpressionAttributeNames: { '#s': 'status' }, ExclusiveStartKey: start, ConsistentRead: true }),
        );
        for (const item of page.Items ?? []) out.set(item.chargeId as string, item.status as string);
        start = page.LastEvaluatedKey;
      } while (start);
      return out;
    };
    const done = async () => [...(await statuses()).values()].filter((s) => s === 'AUTHORISATION_SUCCESS' || s === 'AUTHORISATION_REJECTED').length === CHARGES;
    const deadline = Date.now() + 150_000;
    while (!(await done())) {
      if (Date.now() > deadline) {
        const byStatus: Record<string, number> = {};
        const now = await statuses();
        for (const id of expectStatus.keys()) {
          const st = now.get(id) ?? 'MISSING';
          byStatus[st] = (byStatus[st] ?? 0) + 1;
        }
        const warnings: Record<string, number> = {};
        for (const w of workers) for (const l of w.lines) if (l.level !== 'info') warnings[`${l.msg} ${l.code ?? ''}`] = (warnings[`${l.msg} ${l.code ?? ''}`] ?? 0) + 1;
        throw new Error(`charges did not all reach a final state in time: ${JSON.stringify(byStatus)}; warnings ${JSON.stringify(warnings)}; kills ${kills}`);
      }
      await sleep(2000);
      if (kills < 12) {
        const live = workers.filter((w) => w.child.exitCode === null && w.child.signalCode === null);
        const victim = live[Math.floor(Math.random() * live.length)];
        if (victim) {
          victim.kill('SIGKILL');
          kills++;
          start(1);
        }
      }
    }
    sb.stripe.faults.update({ latencyMs: 0, latencyJitterMs: 0, rateTimeoutAfterSuccess: 0, rate5xx: 0 });
    // Let the duplicates still queued drain, then stop the survivors cleanly.
    await eventually(async () => (await drain(stack.clients.sqs, stack.url(stack.names.queue('auth-requests')), { max: 1 })).length === 0, 60_000, 'the queue to drain');
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.kill('SIGTERM');

    const stats = sb.stripe.stats();
    for (const [chargeId, status] of expectStatus) {
      const charge = await readCharge(stack, chargeId);
      expect(charge?.status, chargeId).toBe(status);
      const events = await readEvents(stack, chargeId);
      expect(events.map((e) => e.sequence), chargeId).toEqual([1, 2]);
      if (charge!.processor === 'stripe') expect(stats.charges[chargeId]?.created, `PaymentIntents for ${chargeId}`).toBe(1);
    }
    const dead = await drain(stack.clients.sqs, stack.url(stack.names.dlq('auth-requests')));
    expect(dead.map((d) => d.MessageAttributes?.['payfleet-error-code']?.StringValue)).toEqual([]);
    expect(kills).toBeGreaterThanOrEqual(3);
    const raw = workers.map((w) => w.raw()).join('\n');
    expect(raw).not.toContain(SANDBOX_CARDS.approve);
    expect(raw).not.toContain(SANDBOX_CARDS.decline);
    console.info(`[auth-chaos] ${CHARGES} charges, ${CHARGES * COPIES} sends, ${kills} SIGKILLs, ${stats.totals.replays} Stripe replays, ${stats.totals.created} PaymentIntents`);
  }, 240_000);
});
