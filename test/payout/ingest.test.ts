/**
 * Ingestion in process, on the embedded DynamoDB: events handed over together are stored in ONE
 * transaction fenced by a shard lease; the payout row keyed by paymentId is the only claim (a
 * duplicate is answered from the row, a conflicting one dead-lettered, whatever else the transaction
 * carried is stored); a holder paused past its shard lease stores nothing.
 */
import { TransactWriteCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import type { Lease } from '../../shared/core/ports.js';
import type { ShardSlot } from '../../shared/core/shard-pool.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createIngestHandler, NOT_READY } from '../../workers/payout/ingest.js';
import { createIngestStore } from '../../workers/payout/ingest-store.js';
import { createPayoutMetrics } from '../../workers/payout/metrics.js';
import { CheckoutApprovalAccepted } from '../../workers/payout/schema.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { allPayouts, approval, readEvents, readPayout } from './support.js';

let stack: TestStack;
const log = silentLogger();
const metrics = createPayoutMetrics(new Registry());

beforeAll(async () => {
  stack = await setupTestStack('pingest', { payoutShards: 4 });
});
afterAll(() => stack?.close());

const ctx = (): HandlerContext => ({
  messageId: 'm',
  groupId: 'g',
  receiveCount: 1,
  signal: new AbortController().signal,
  log,
  setAttempts: () => undefined,
});

/** A shard lease taken by `owner`; `pastMs` back-dates the taker's clock (its lease then lapsed that long ago). */
async function lease(shard: string, owner: string, pastMs = 0): Promise<Lease> {
  const store = createDynamoLeaseStore({
    doc: stack.clients.doc,
    tableName: stack.names.table('leases'),
    now: () => Date.now() - pastMs,
  });
  const got = await store.acquire(shard, owner, 30_000);
  if (!got.acquired) throw new Error(`${shard} is held`);
  return got.lease;
}

const slotOf = (shard: string, l: Lease): ShardSlot => ({
  shard,
  fence: { lease: () => l },
  stop: new AbortController().signal,
  abort: new AbortController().signal,
});

/** The ingestion handler over a document client whose TransactWriteItems are counted. */
function handler(pick: () => ShardSlot | undefined) {
  const counted = { transactions: 0, stored: [] as { shard: string; count: number }[] };
  const doc = {
    send(command: unknown) {
      if (command instanceof TransactWriteCommand) counted.transactions++;
      return stack.clients.doc.send(command as TransactWriteCommand);
    },
  } as unknown as DynamoDBDocumentClient;
  const handle = createIngestHandler({
    pick,
    store: createIngestStore({ doc, names: stack.names }),
    metrics,
    live: false,
    log,
    onStored: (shard, count) => counted.stored.push({ shard, count }),
  });
  const ingest = (events: Record<string, unknown>[]): Promise<HandlerResult[]> =>
    Promise.all(events.map((e) => handle(CheckoutApprovalAccepted.parse(e), ctx())));
  return { counted, ingest };
}

describe('Ingestion: one fenced transaction per batch of events', () => {
  it('20 events handed over together are stored by ONE transaction: 20 rows RECEIVED, 20 PAYOUT_CREATED, every message acknowledged', async () => {
    const shard = 'payout-shard#000';
    const slot = slotOf(shard, await lease(shard, 'worker-A'));
    const { counted, ingest } = handler(() => slot);
    const ids = Array.from({ length: 20 }, (_, i) => `batch-${i}`);
    const results = await ingest(ids.map((id) => approval(id)));
    expect(results).toEqual(ids.map(() => ({ action: 'ack' })));
    expect(counted.transactions).toBe(1);
    expect(counted.stored).toEqual([{ shard, count: 20 }]);
    for (const id of ids) {
      expect(await readPayout(stack, id)).toMatchObject({
        status: 'RECEIVED',
        shard,
        initiableShard: shard,
        version: 1,
        eventSeq: 1,
      });
      expect((await readEvents(stack, id)).map((e) => [e.sequence, e.eventType])).toEqual([[1, 'PAYOUT_CREATED']]);
    }
  });

  it('duplicates in a transaction are answered from the stored row (same content: ack; different: PAYOUT_CONFLICT) and the rest is stored; one row per paymentId across shards', async () => {
    const a = slotOf('payout-shard#001', await lease('payout-shard#001', 'worker-A'));
    const b = slotOf('payout-shard#002', await lease('payout-shard#002', 'worker-B'));
    const first = approval('dup-1');
    const other = approval('dup-2');
    expect(await handler(() => a).ingest([first, other])).toEqual([{ action: 'ack' }, { action: 'ack' }]);
    // Another worker holding another shard receives a re-send, a conflicting event and new payouts.
    const { counted, ingest } = handler(() => b);
    const results = await ingest([
      { ...first, eventId: crypto.randomUUID() },
      { ...other, eventId: crypto.randomUUID(), amount: 999_999 },
      approval('dup-3'),
      approval('dup-4'),
    ]);
    expect(results[0]).toEqual({ action: 'ack' });
    expect(results[1]).toMatchObject({ action: 'dead-letter', code: 'PAYOUT_CONFLICT' });
    expect(results.slice(2)).toEqual([{ action: 'ack' }, { action: 'ack' }]);
    // The cancelled transaction named both duplicates at once; the second one stored the new payouts.
    expect(counted.transactions).toBe(2);
    const rows = (await allPayouts(stack)).filter((p) => p.paymentId.startsWith('dup-'));
    expect(rows.map((p) => [p.paymentId, p.shard, p.amount]).sort()).toEqual([
      ['dup-1', 'payout-shard#001', 1250],
      ['dup-2', 'payout-shard#001', 1250],
      ['dup-3', 'payout-shard#002', 1250],
      ['dup-4', 'payout-shard#002', 1250],
    ]);
    for (const id of ['dup-1', 'dup-2', 'dup-3', 'dup-4']) expect(await readEvents(stack, id)).toHaveLength(1);
  });
});

describe('Ingestion: the shard lease fences the transaction', () => {
  it('a holder paused past its shard lease stores nothing once another worker took the shard; the new holder stores the same events', async () => {
    const shard = 'payout-shard#003';
    // A's lease ran out an hour ago (its clock was paused); B takes the shard (token + 1).
    const stale = await lease(shard, 'worker-A', 3_600_000);
    const fresh = await lease(shard, 'worker-B');
    expect(fresh.fencingToken).toBe(stale.fencingToken + 1);
    const events = [approval('fence-1'), approval('fence-2')];

    const paused = handler(() => slotOf(shard, stale));
    expect(await paused.ingest(events)).toEqual([NOT_READY, NOT_READY]);
    expect(paused.counted.transactions).toBeGreaterThan(0);
    expect(paused.counted.stored).toEqual([]);
    for (const id of ['fence-1', 'fence-2']) {
      expect(await readPayout(stack, id)).toBeUndefined();
      expect(await readEvents(stack, id)).toEqual([]);
    }

    const holder = handler(() => slotOf(shard, fresh));
    expect(await holder.ingest(events)).toEqual([{ action: 'ack' }, { action: 'ack' }]);
    for (const id of ['fence-1', 'fence-2']) expect((await readPayout(stack, id))?.status).toBe('RECEIVED');
  });
});
