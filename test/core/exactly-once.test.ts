import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually, sendAll } from '../support/sqs.js';

/**
 * The core's guarantees with real worker processes (test/support/counter-worker.ts): each op adds
 * its amount to a counter exactly once, with exactly one outbox event, whatever is delivered twice,
 * whoever races, and whoever is SIGKILLed mid-item.
 */
let stack: TestStack;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('once');
});
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  stack.close();
});

function worker(extraEnv: Record<string, string> = {}): WorkerProcess {
  const p = startProcess('test/support/counter-worker.ts', [], {
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
    PAYFLEET_CONCURRENCY: '8',
    PAYFLEET_MAX_ATTEMPTS: '50',
    PAYFLEET_LOG_LEVEL: 'info',
    ...extraEnv,
  });
  procs.push(p);
  return p;
}

async function counter(id: string) {
  const item = (await stack.clients.doc.send(new GetCommand({ TableName: stack.names.table('charges'), Key: { chargeId: id }, ConsistentRead: true })))
    .Item as { total?: number; eventSeq?: number } | undefined;
  const events = (
    await stack.clients.doc.send(
      new QueryCommand({
        TableName: stack.names.table('events'),
        KeyConditionExpression: 'resourceId = :r',
        ExpressionAttributeValues: { ':r': id },
        ConsistentRead: true,
      }),
    )
  ).Items as { sequence: number; details: { opId: string } }[];
  return { total: item?.total ?? 0, eventSeq: item?.eventSeq ?? 0, events };
}

const queueUrl = () => stack.url(stack.names.queue('auth-requests'));
const op = (opId: string, counterId: string, amount: number, dedup = opId) => ({
  body: JSON.stringify({ opId, counterId, amount }),
  groupId: counterId,
  dedupId: dedup,
});

describe('processOnce in worker processes', () => {
  describe('start-up', () => {
    it('refuses to start when its attempt budget is not below the queue redrive limit (SQS would dead-letter without a reason)', async () => {
      const p = worker({ PAYFLEET_MAX_ATTEMPTS: '60' });
      expect(await p.exited).toBe(2);
      expect(p.raw()).toMatch(/PAYFLEET_MAX_ATTEMPTS: must be below the maxReceiveCount \(60\)/);
    });
  });

  describe('duplicates and racing processes', () => {
    it('commits each op once when every message is delivered twice and two processes race on the same groups', async () => {
      // Eight groups, and each process holds at most two messages at a time (concurrency 2, one
      // message per receive): neither can keep every group to itself, so the other one, waiting
      // in its long poll, receives the rest. Both take part by construction, however loaded the
      // machine (with concurrency 8 over 4 groups one process could hold them all).
      const counters = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8'];
      const messages = [];
      const expected = new Map<string, number>();
      for (let i = 0; i < 40; i++) {
        const c = counters[i % counters.length]!;
        const amount = i + 1;
        expected.set(c, (expected.get(c) ?? 0) + amount);
        // The same op twice, under different deduplication ids: SQS delivers both.
        messages.push(op(`op-${i}`, c, amount, `op-${i}-a`));
        messages.push(op(`op-${i}`, c, amount, `op-${i}-b`));
      }
      const racing = { PAYFLEET_CONCURRENCY: '2', PAYFLEET_BATCH_SIZE: '1' };
      const a = worker(racing);
      const b = worker(racing);
      await Promise.all([a.waitForLine((l) => l.msg === 'worker started'), b.waitForLine((l) => l.msg === 'worker started')]);
      await sendAll(stack.clients.sqs, queueUrl(), messages);

      await eventually(
        async () => {
          for (const c of counters) if ((await counter(c)).total !== expected.get(c)) return false;
          return true;
        },
        60_000,
        'every counter to reach its total',
      );
      a.kill('SIGTERM');
      b.kill('SIGTERM');
      expect(await a.exited).toBe(0);
      expect(await b.exited).toBe(0);

      for (const c of counters) {
        const s = await counter(c);
        expect(s.total).toBe(expected.get(c));
        expect(s.events).toHaveLength(5);
        expect(s.events.map((e) => e.sequence)).toEqual(Array.from({ length: 5 }, (_, i) => i + 1));
        expect(new Set(s.events.map((e) => e.details.opId)).size).toBe(5);
      }
      const duplicates = [...a.lines, ...b.lines].filter((l) => l.msg === 'duplicate acknowledged').length;
      expect(duplicates).toBeGreaterThanOrEqual(1);
      // Both processes took part: the race was real.
      const committedBy = new Set([...a.lines.filter((l) => l.msg === 'effect committed').map(() => 'a'), ...b.lines.filter((l) => l.msg === 'effect committed').map(() => 'b')]);
      expect(committedBy.size).toBe(2);
    });
  });

  describe('SIGKILL', () => {
    it('a worker killed mid-item: the message returns after its visibility timeout and another process completes it exactly once, on its first attempt', async () => {
      const victim = worker({ PAYFLEET_TEST_WORK_MS: '5000' });
      await victim.waitForLine((l) => l.msg === 'worker started');
      await sendAll(stack.clients.sqs, queueUrl(), [op('kill-1', 'k1', 7), op('kill-2', 'k1', 5)]);
      await victim.waitForLine((l) => l.msg === 'effect started' && l.opId === 'kill-1');
      victim.kill('SIGKILL');
      expect(await victim.exited).toBe('SIGKILL');
      expect((await counter('k1')).total).toBe(0);

      const rescuer = worker({ PAYFLEET_TEST_WORK_MS: '10' });
      await eventually(async () => (await counter('k1')).total === 12, 60_000, 'the rescuer to finish both ops');
      rescuer.kill('SIGTERM');
      expect(await rescuer.exited).toBe(0);

      const s = await counter('k1');
      expect(s.total).toBe(12);
      expect(s.events.map((e) => e.details.opId)).toEqual(['kill-1', 'kill-2']);
      // Order within the group held across the crash, and the rescuer did not wait for the dead
      // worker's 4 s visibility more than once: its first attempt at kill-1 (the work item's second,
      // after the victim's) took the item over and completed it; no attempt failed and was handed back.
      const started = rescuer.lines.filter((l) => l.msg === 'effect started');
      expect(started.map((l) => l.opId)).toEqual(['kill-1', 'kill-2']);
      expect(started[0]).toMatchObject({ opId: 'kill-1', attempts: 2 });
      expect(rescuer.lines.filter((l) => l.msg === 'attempt failed; retrying after backoff')).toEqual([]);
    });
  });

  describe('SIGTERM', () => {
    it('hands in-flight work back and releases leases so another process takes over at once', async () => {
      const first = worker({ PAYFLEET_TEST_WORK_MS: '20000', PAYFLEET_SHUTDOWN_GRACE_MS: '1500', PAYFLEET_FORCE_EXIT_MS: '8000', PAYFLEET_LEASE_MS: '60000', PAYFLEET_LEASE_RENEW_MS: '5000' });
      await first.waitForLine((l) => l.msg === 'worker started');
      await sendAll(stack.clients.sqs, queueUrl(), [op('term-1', 't1', 3)]);
      await first.waitForLine((l) => l.msg === 'effect started' && l.opId === 'term-1');
      first.kill('SIGTERM');
      // 0, not the 1 of the force-exit timer (8 s): the shutdown stages finished by themselves.
      expect(await first.exited).toBe(0);
      expect(first.lines.filter((l) => l.msg === 'shutdown took too long; forcing exit')).toEqual([]);
      // The in-flight message went back at once (visibility 0) and the lease (60 s) was released.
      const msgs = first.lines.map((l) => l.msg);
      const handedBack = first.lines.findIndex((l) => l.msg === 'attempt failed; retrying after backoff' && l.delaySec === 0);
      expect(handedBack).toBeGreaterThan(msgs.indexOf('grace period over; aborting in-flight work'));
      expect(msgs.indexOf('stopped')).toBeGreaterThan(handedBack);
      const lease = await stack.clients.doc.send(
        new GetCommand({ TableName: stack.names.table('leases'), Key: { leaseKey: 'counter#t1' }, ConsistentRead: true }),
      );
      expect(lease.Item).toMatchObject({ expiresAtMs: 0 });
      expect(lease.Item).not.toHaveProperty('owner');

      // So another process takes over without waiting for either.
      const second = worker({ PAYFLEET_TEST_WORK_MS: '10' });
      await eventually(async () => (await counter('t1')).total === 3, 45_000, 'the second worker to finish');
      second.kill('SIGTERM');
      expect(await second.exited).toBe(0);
      expect((await counter('t1')).events).toHaveLength(1);
    });
  });
});
