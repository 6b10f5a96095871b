import { randomUUID } from 'node:crypto';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Charge } from '../../shared/charges/charge.js';
import { readCharge, readEvents } from '../support/charges.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

/**
 * A refund worker SIGKILLed between REFUND_SUBMITTED and the processor's answer, with real
 * processes (test/refund/fake-processor-worker.ts: one fake processor, its record in DynamoDB):
 *
 *   victim   commit REFUND_SUBMITTED (+ amount taken) ─ refund at the processor ─ ✗ SIGKILL (answer lost)
 *            or:  commit REFUND_SUBMITTED ─ ✗ SIGKILL (processor never asked)
 *   rescuer  ... row lease expires, the message comes back ─ REFUND_SUBMITTED: look up first ─
 *            found: REFUNDED without a second call · not found: refund under the same key ─ REFUNDED
 *
 * Either way the processor is asked to refund exactly once.
 */
let stack: TestStack;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('refundkill');
});
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  stack?.close();
});

function startWorker(crashAt?: 'after-refund' | 'before-call'): WorkerProcess {
  const p = startProcess('test/refund/fake-processor-worker.ts', [], {
    ...stack.env,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '4',
    PAYFLEET_HEARTBEAT_SEC: '1',
    PAYFLEET_LEASE_MS: '2000',
    PAYFLEET_LEASE_RENEW_MS: '500',
    PAYFLEET_SHUTDOWN_GRACE_MS: '3000',
    PAYFLEET_FORCE_EXIT_MS: '6000',
    PAYFLEET_RETRY_BASE_MS: '200',
    PAYFLEET_RETRY_MAX_MS: '1000',
    PAYFLEET_MAX_ATTEMPTS: '20',
    PAYFLEET_CONCURRENCY: '4',
    PAYFLEET_LOG_LEVEL: 'info',
    REFUND_CONFIRMATION_DELAY_SECONDS: '1',
    ...(crashAt ? { REFUND_TEST_CRASH_AT: crashAt } : {}),
  });
  procs.push(p);
  return p;
}

async function seedCaptured(chargeId: string): Promise<void> {
  const at = new Date().toISOString();
  const charge: Charge = {
    chargeId,
    gatewayAccountId: 'gw-1',
    processor: 'sandbox',
    amount: 1000,
    currency: 'GBP',
    reference: `ref-${chargeId}`,
    description: 'refund crash test',
    status: 'CAPTURED',
    live: false,
    version: 4,
    eventSeq: 4,
    createdAt: at,
    updatedAt: at,
    history: [{ status: 'CAPTURED', at }],
    processorRef: `pi_${chargeId}`,
  };
  await stack.clients.doc.send(new PutCommand({ TableName: stack.names.table('charges'), Item: charge }));
}

const refundRow = async (refundId: string) =>
  (
    await stack.clients.doc.send(
      new GetCommand({ TableName: stack.names.table('refunds'), Key: { refundId }, ConsistentRead: true }),
    )
  ).Item;

/** What the fake processor holds for a refund key: undefined if it never refunded. */
const atProcessor = async (refundRequestId: string) =>
  (
    await stack.clients.doc.send(
      new GetCommand({
        TableName: stack.names.table('leases'),
        Key: { leaseKey: `fake-refund#payfleet-refund-${refundRequestId}` },
        ConsistentRead: true,
      }),
    )
  ).Item as { calls: number; amount: number } | undefined;

describe('refund worker killed between REFUND_SUBMITTED and the answer', () => {
  it.each([
    { crashAt: 'after-refund' as const, callsBeforeRescue: 1 },
    { crashAt: 'before-call' as const, callsBeforeRescue: 0 },
  ])(
    'SIGKILL $crashAt: the next worker looks the refund up first; the processor refunds once',
    async ({ crashAt, callsBeforeRescue }) => {
      const chargeId = `c-${randomUUID()}`;
      const refundId = `r-${randomUUID()}`;
      const refundRequestId = randomUUID();
      await seedCaptured(chargeId);
      const body = {
        type: 'RefundRequested',
        refundRequestId,
        refundId,
        chargeId,
        amount: 700,
        requestedAt: new Date().toISOString(),
      };
      await sendAll(stack.clients.sqs, stack.url(stack.names.queue('refund-requests')), [
        { body: JSON.stringify(body), groupId: chargeId, dedupId: refundRequestId },
      ]);

      const victim = startWorker(crashAt);
      expect(await victim.exited).toBe('SIGKILL');
      expect((await refundRow(refundId))?.status).toBe('REFUND_SUBMITTED');
      expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(700);
      expect((await atProcessor(refundRequestId))?.calls ?? 0).toBe(callsBeforeRescue);

      const rescuer = startWorker();
      try {
        await eventually(async () => (await refundRow(refundId))?.status === 'REFUNDED', 60_000, `${refundId} to be REFUNDED`);
        expect(await atProcessor(refundRequestId)).toMatchObject({ calls: 1, amount: 700 });
        expect(
          rescuer.lines.some(
            (l) => l.refundId === refundId && String(l.msg).startsWith('refund was REFUND_SUBMITTED: looked it up'),
          ),
        ).toBe(true);
        expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(700);
        expect((await readEvents(stack, refundId)).map((e) => e.eventType)).toEqual([
          'REFUND_CREATED',
          'REFUND_SUBMITTED',
          'REFUND_SUCCEEDED',
        ]);
      } finally {
        // Stopped either way: a rescuer left running would take the next test's message from its victim.
        rescuer.kill('SIGTERM');
      }
      expect(await rescuer.exited).toBe(0);
    },
  );
});
