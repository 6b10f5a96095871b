/**
 * Payout worker processes on the embedded stack: the attempt-budget check at start, readiness
 * gating, shard takeover after SIGKILL, graceful SIGTERM handing a shard over at once, and batching
 * 250 payouts of one shard into three requests of at most 100. The LHV sandbox's
 * initiationsPerPaymentId is the at-most-once oracle.
 */
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, describe, expect, it } from 'vitest';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import type { Lease } from '../../shared/core/ports.js';
import { toEndToEndId } from '../../workers/payout/lhv/pain001.js';
import { RESPONSES_LEASE_KEY } from '../../workers/payout/leases.js';
import { payoutShardKey } from '../../shared/resources.js';
import type { LhvSandbox } from '../../cli/sandbox/lhv-server.js';
import { drain, eventually } from '../support/sqs.js';
import type { TestStack } from '../support/stack.js';
import {
  allPayouts,
  approval,
  finalPayout,
  readEvents,
  readPayout,
  opsPort,
  payoutFixtures,
  sendEvents,
  startPayoutWorker,
  waitReady,
} from './support.js';

const fixtures = payoutFixtures();
afterAll(() => fixtures.cleanup());
const { track, env } = fixtures;

function expectInitiatedOnce(bank: LhvSandbox, paymentIds: readonly string[]): void {
  const per = bank.stats().initiationsPerPaymentId;
  for (const id of paymentIds) expect(per[toEndToEndId(id)], `initiations of ${id}`).toBe(1);
  expect(Object.values(per).every((n) => n === 1)).toBe(true);
}

async function leaseRow(stack: TestStack, leaseKey: string) {
  const r = await stack.clients.doc.send(
    new GetCommand({ TableName: stack.names.table('leases'), Key: { leaseKey }, ConsistentRead: true }),
  );
  return r.Item as { owner?: string; expiresAtMs: number; fencingToken: number } | undefined;
}


/** Requests the bank has served on `route` so far (e.g. `GET /heartbeat`). */
const served = (bank: LhvSandbox, route: string) => bank.stats().byRoute[route] ?? 0;

describe('payout worker', () => {
  describe('start-up', () => {
    it('refuses to start when PAYFLEET_MAX_ATTEMPTS is not below the maxReceiveCount of payout-events: exit 2, one line naming the variable', async () => {
      // SQS would dead-letter at its 5th receive, before the worker's 5th attempt: without a reason.
      const { stack, bank } = await env('pbudget', 1, { maxReceiveCount: 5 });
      const w = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1', PAYFLEET_MAX_ATTEMPTS: '5' }));
      const started = w.waitForLine((l) => l.msg === 'worker started', 60_000).then(() => 'started' as const);
      expect(await Promise.race([w.exited, started])).toBe(2);
      const problems = w
        .raw()
        .split('\n')
        .filter((l) => l.startsWith('  - '));
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^ {2}- PAYFLEET_MAX_ATTEMPTS: must be below the maxReceiveCount \(5\) of \S*payout-events\.fifo/);
      expect(w.lines.some((l) => l.msg === 'worker started' || l.msg === 'payout shard acquired')).toBe(false);
      expect(served(bank, 'GET /heartbeat')).toBe(0);
    });
  });

  describe('readiness gating', () => {
    it('while LHV heartbeats fail nothing is received (no attempts, nothing redriven); once ready every event is paid', async () => {
      // maxReceiveCount 3 (attempts 2, below it): a worker that received and put back while not
      // ready would get these messages redriven to the DLQ by SQS itself within three receives.
      const { stack, bank } = await env('pgate', 1, { maxReceiveCount: 3 });
      bank.faults.update({ rate5xx: 1, paths: ['/heartbeat'] });
      const w = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1', PAYFLEET_MAX_ATTEMPTS: '2' }));
      const ids = Array.from({ length: 20 }, (_, i) => `gate-${i}`);
      await sendEvents(
        stack,
        ids.map((id) => approval(id)),
      );
      await w.waitForLine((l) => l.msg === 'payout worker not ready');
      const port = await opsPort(w);
      // Eight more failed readiness passes (one GET /heartbeat each, every 300 ms), with the consumer
      // started all along (its long polls last 1 s): ample occasions to receive, had it not been paused.
      const before = served(bank, 'GET /heartbeat');
      await eventually(() => served(bank, 'GET /heartbeat') >= before + 8, 60_000, 'eight more failed readiness passes');
      const notReady = await fetch(`http://127.0.0.1:${port}/health/ready`);
      expect(notReady.status).toBe(503);
      const body = (await notReady.json()) as { consumer?: { pausedFor?: string | null; inFlight?: number } };
      expect(JSON.stringify(body)).toContain('lhv:heartbeat');
      // The consumer runWorker built is paused by the worker's gate, not waiting on a dependency.
      expect(body.consumer).toMatchObject({ inFlight: 0, pausedFor: expect.stringMatching(/^not ready for processing/) });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).not.toMatch(/^payfleet_messages_received_total\{[^}]*\} [1-9]/m);
      expect(await allPayouts(stack)).toHaveLength(0);
      expect(
        w.lines.some((l) => l.msg === 'payout shard acquired' || l.msg === 'ingestion started: receiving CheckoutApprovalAccepted'),
      ).toBe(false);
      const attrs = await stack.clients.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: stack.url(stack.names.queue('payout-events')),
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      expect(Number(attrs.Attributes?.ApproximateNumberOfMessages)).toBe(20);
      expect(Number(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible)).toBe(0);
      expect(await drain(stack.clients.sqs, stack.url(stack.names.dlq('payout-events')))).toHaveLength(0);

      bank.faults.reset();
      await waitReady(w);
      for (const id of ids) expect((await finalPayout(stack, id)).status).toBe('PAID');
      expect(await drain(stack.clients.sqs, stack.url(stack.names.dlq('payout-events')))).toHaveLength(0);
      expect((await fetch(`http://127.0.0.1:${port}/health/ready`)).status).toBe(200);
      expectInitiatedOnce(bank, ids);
    }, 120_000);
  });

  describe('shard takeover', () => {
    it('after SIGKILL mid-initiation the next holder resends the batch under its stored key; after SIGTERM the shard is released at once and the next worker resumes', async () => {
      const { stack, bank } = await env('ptake', 1);
      // LHV's report for an accepted batch would settle it by itself (the response poller runs ready
      // or not) and the resend would never be needed. The test holds the poller's lease from the
      // start until both resends happened, so what is proven is each new holder's resend under the
      // stored key, whatever the machine's load: no race between a resend and the bank's report.
      const leases = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') });
      const held = await leases.acquire(RESPONSES_LEASE_KEY, 'test-holds-the-reports', 300_000);
      if (!held.acquired) throw new Error('the response poller lease is taken before any worker started');
      const reports: Lease = held.lease;
      const a = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1', LHV_TIMEOUT_MS: '20000' }));
      await waitReady(a);
      const b = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1' }));
      await b.waitForLine((l) => l.msg === 'payout worker ready: all readiness checks passed', 60_000);

      // Phase 1: A sends, the bank accepts, the 202 never comes; A is killed; B takes the shard once
      // A's lease lapsed and resends the identical request under the stored key.
      bank.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/payment'] });
      const first = ['kill-1', 'kill-2', 'kill-3'];
      await sendEvents(
        stack,
        first.map((id) => approval(id)),
      );
      await eventually(() => bank.stats().initiations === 1, 30_000, 'A initiation accepted at the bank');
      const batchId = (await readPayout(stack, 'kill-1'))?.batchId;
      expect(batchId).toMatch(/^[0-9a-f]{32}$/);
      expect((await readPayout(stack, 'kill-1'))?.status).toBe('INITIATION_PENDING');
      a.kill('SIGKILL');
      await a.exited;
      bank.faults.reset();
      await b.waitForLine((l) => l.msg === 'resuming a batch with its stored idempotency key' && l.batchId === batchId, 60_000);
      // The resend's (replayed) 202 initiated the batch: no report can have, none was read.
      await eventually(
        async () => (await Promise.all(first.map((id) => readPayout(stack, id)))).every((p) => p?.status === 'INITIATED'),
        30_000,
        'the batch initiated by the resend',
      );
      expect(bank.stats().duplicatesDeduplicated).toBeGreaterThanOrEqual(1);
      expect(bank.initiations().map((i) => i.msgId)).toEqual([batchId]);
      expectInitiatedOnce(bank, first);

      // Phase 2: B is mid-send when SIGTERM comes: it abandons the request safely, releases the
      // shard and exits 0; C takes the shard at once (no lease expiry to wait for) and resumes.
      bank.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/payment'] });
      const second = ['term-1', 'term-2'];
      await sendEvents(
        stack,
        second.map((id) => approval(id)),
      );
      await eventually(() => bank.stats().initiations === 2, 30_000, 'B initiation accepted at the bank');
      const secondBatch = (await readPayout(stack, 'term-1'))?.batchId;
      b.kill('SIGTERM');
      expect(await b.exited).toBe(0);
      // "At once": the row is released (not left to expire), so the next worker needs no wait.
      expect(b.lines.some((l) => l.msg === 'payout shard released')).toBe(true);
      const row = await leaseRow(stack, payoutShardKey(0));
      expect(row?.owner).toBeUndefined();
      expect(row?.expiresAtMs).toBe(0);
      bank.faults.reset();
      const c = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1' }));
      await waitReady(c, 60_000);
      await c.waitForLine((l) => l.msg === 'resuming a batch with its stored idempotency key' && l.batchId === secondBatch, 60_000);

      // Reports flow again: every payout settles, each initiated once, with its three events.
      await leases.release(reports);
      for (const id of [...first, ...second]) {
        const p = await finalPayout(stack, id);
        expect(p.status).toBe('PAID');
        expect((await readEvents(stack, id)).map((e) => e.eventType)).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED', 'PAYOUT_PAID']);
      }
      expect((await readPayout(stack, 'kill-1'))?.batchId).toBe(batchId);
      expectInitiatedOnce(bank, [...first, ...second]);
      c.kill('SIGTERM');
      expect(await c.exited).toBe(0);
    }, 180_000);
  });

  describe('batching', () => {
    it('250 payouts in one shard become 3 requests of at most 100, each payout in exactly one', async () => {
      const { stack, bank } = await env('p250', 1);
      const w = track(
        startPayoutWorker(stack, bank, {
          PAYFLEET_PAYOUT_SHARDS: '1',
          // Full batches go at once; the last partial one only after 8 s without arrivals, so even a
          // long stall of the loaded test machine mid-ingestion cannot split the 250 differently.
          PAYFLEET_PAYOUT_BATCH_QUIET_MS: '8000',
          PAYFLEET_PAYOUT_BATCH_MAX_WAIT_MS: '60000',
          PAYFLEET_CONCURRENCY: '32',
        }),
      );
      await waitReady(w);
      const ids = Array.from({ length: 250 }, (_, i) => `bulk-${String(i).padStart(3, '0')}`);
      await sendEvents(
        stack,
        ids.map((id) => approval(id)),
      );
      await eventually(async () => (await allPayouts(stack)).filter((p) => p.status === 'PAID').length === 250, 80_000, '250 PAID');
      const requests = bank.initiations();
      expect(requests.map((r) => r.endToEndIds.length).sort((x, y) => y - x)).toEqual([100, 100, 50]);
      expect(requests.flatMap((r) => r.endToEndIds).sort()).toEqual([...ids].sort());
      expectInitiatedOnce(bank, ids);
      const events = await readEvents(stack, 'bulk-000');
      expect(events.map((e) => e.sequence)).toEqual([1, 2, 3]);
      w.kill('SIGTERM');
      expect(await w.exited).toBe(0);
    }, 120_000);
  });
});
