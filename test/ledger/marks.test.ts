import { BatchWriteCommand, GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { toLedgerMessage } from '../../shared/core/outbox.js';
import type { LeaseStore } from '../../shared/core/ports.js';
import { ledgerShardKey } from '../../shared/resources.js';
import { createDynamoLedgerOutbox } from '../../workers/ledger/dynamo-outbox.js';
import type { LedgerPublisher, OutboxEvent } from '../../workers/ledger/ports.js';
import { createSqsLedgerPublisher } from '../../workers/ledger/sqs-publisher.js';
import { LedgerConsumer } from '../support/ledger-consumer.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { inProcessEmitter, outboxRows, outcomeStore, writeEvents, type InProcessEmitter } from './support/harness.js';

/**
 * How sent events leave the outbox: whole-row Puts in one BatchWriteItem per 25 events
 * (workers/ledger/dynamo-outbox.ts), unfenced, and why that is safe for a holder that was paused
 * past its shard lease.
 */
let stack: TestStack;
const running: InProcessEmitter[] = [];

beforeAll(async () => {
  stack = await setupTestStack('ledgermarks');
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((e) => e.stop().catch(() => undefined)));
});
afterAll(() => {
  stack?.close();
});

const ids = (label: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${label}-${i}-${Math.random().toString(36).slice(2, 7)}`);

/** A DocumentClient that records the name of every command sent through it. */
function countingDoc(): { doc: DynamoDBDocumentClient; sent: string[] } {
  const sent: string[] = [];
  const doc = {
    send: (command: { constructor: { name: string } }) => {
      sent.push(command.constructor.name);
      return stack.clients.doc.send(command as never);
    },
  } as unknown as DynamoDBDocumentClient;
  return { doc, sent };
}

/** The pending events of `resources`, across all shards, as the adapter reads them from the index. */
async function readPending(outbox: ReturnType<typeof createDynamoLedgerOutbox>, resources: readonly string[], shards = 8) {
  const mine = new Set(resources);
  const out: OutboxEvent[] = [];
  for (let i = 0; i < shards; i++) {
    const page = await outbox.pendingInShard(ledgerShardKey(i), 1000);
    out.push(...page.events.filter((e) => mine.has(e.resourceId)));
  }
  return out;
}

/** A lease store whose calls stop landing while paused (a process stopped by the OS, a GC pause). */
function pausable(store: LeaseStore) {
  let gate: Promise<void> | undefined;
  let open = () => {};
  const wait = async () => {
    while (gate) await gate;
  };
  const wrapped: LeaseStore = {
    acquire: async (...a) => {
      await wait();
      return store.acquire(...a);
    },
    renew: async (...a) => {
      await wait();
      return store.renew(...a);
    },
    release: async (...a) => {
      await wait();
      return store.release(...a);
    },
    inspect: (...a) => store.inspect(...a),
  };
  return {
    wrapped,
    pause() {
      gate ??= new Promise<void>((r) => {
        open = r;
      });
    },
    resume() {
      gate = undefined;
      open();
    },
  };
}

describe('ledger marks', () => {
  it('markEmitted: one BatchWriteItem per 25 events; the rows leave the pending index and keep every other attribute', async () => {
    // Prepare: 30 resources with one pending event each; one row carries an attribute the adapter
    // knows nothing about and a send failure with a back-off.
    const resources = ids('batch', 30);
    await writeEvents([outcomeStore(stack)], resources, 1);
    const odd = resources[0]!;
    await stack.clients.doc.send(
      new UpdateCommand({
        TableName: stack.names.table('events'),
        Key: { resourceId: odd, sequence: 1 },
        UpdateExpression: 'SET extra = :x, sendFailures = :n, doNotRetryUntil = :u',
        ExpressionAttributeValues: { ':x': 'kept', ':n': 2, ':u': '2099-01-01T00:00:00.000Z' },
      }),
    );
    const { doc, sent } = countingDoc();
    const outbox = createDynamoLedgerOutbox({ doc, names: stack.names });
    let pending: OutboxEvent[] = [];
    await eventually(
      async () => {
        pending = await readPending(outbox, resources);
        return pending.length === 30 && pending.some((e) => e.resourceId === odd && e.sendFailures === 2);
      },
      10_000,
      'all 30 visible in the index',
    );
    const before = await outboxRows(stack, resources);
    sent.length = 0;
    // Act
    const at = '2026-11-26T10:00:00.000Z';
    const done = await outbox.markEmitted(pending, at);
    // Assess: two calls (25 + 5), every event recorded.
    expect(sent).toEqual(['BatchWriteCommand', 'BatchWriteCommand']);
    expect([...done].sort()).toEqual(pending.map((e) => e.eventId).sort());
    const after = await outboxRows(stack, resources);
    expect(after.every((r) => r.pendingShard === undefined && r.pendingKey === undefined && r.emittedAt === at)).toBe(true);
    // The events themselves are untouched: the same §5 body before and after.
    expect(after.map((r) => toLedgerMessage(r))).toEqual(before.map((r) => toLedgerMessage(r)));
    const raw = await stack.clients.doc.send(
      new GetCommand({ TableName: stack.names.table('events'), Key: { resourceId: odd, sequence: 1 }, ConsistentRead: true }),
    );
    expect(raw.Item).toMatchObject({ extra: 'kept', sendFailures: 2, emittedAt: at });
    expect(raw.Item?.doNotRetryUntil).toBeUndefined();
    await eventually(async () => (await readPending(outbox, resources)).length === 0, 10_000, 'index empty for them');

    // An event this adapter did not read (no row to rewrite) is marked by a conditional UpdateItem.
    const [late] = ids('single', 1);
    await writeEvents([outcomeStore(stack)], [late!], 1);
    const other = createDynamoLedgerOutbox({ doc: stack.clients.doc, names: stack.names });
    const [event] = await other.resourceEvents(late!);
    sent.length = 0;
    expect(await outbox.markEmitted([event!], at)).toEqual([event!.eventId]);
    expect(sent).toEqual(['UpdateCommand']);
    const [marked] = await outboxRows(stack, [late!]);
    expect(marked?.emittedAt).toBe(at);
    expect(marked?.pendingShard).toBeUndefined();
  });

  it('markEmitted: entries DynamoDB leaves unprocessed are resent; one that stays unprocessed is not reported and stays pending', async () => {
    // Prepare: a DocumentClient whose BatchWriteItem leaves `flaky` unprocessed once and `stubborn`
    // every time (what throttling does), writing the rest.
    const [stubborn, flaky, fine] = ids('unprocessed', 3);
    await writeEvents([outcomeStore(stack)], [stubborn!, flaky!, fine!], 1);
    const table = stack.names.table('events');
    const calls: number[] = [];
    let flakyHeld = false;
    const doc = {
      send: async (command: unknown) => {
        if (!(command instanceof BatchWriteCommand)) return stack.clients.doc.send(command as never);
        const requests = command.input.RequestItems?.[table] ?? [];
        calls.push(requests.length);
        const held = requests.filter((r) => {
          const id = r.PutRequest?.Item?.resourceId;
          if (id === flaky && !flakyHeld) {
            flakyHeld = true;
            return true;
          }
          return id === stubborn;
        });
        const through = requests.filter((r) => !held.includes(r));
        if (through.length > 0) await stack.clients.doc.send(new BatchWriteCommand({ RequestItems: { [table]: through } }));
        return { UnprocessedItems: held.length > 0 ? { [table]: held } : {} };
      },
    } as unknown as DynamoDBDocumentClient;
    const outbox = createDynamoLedgerOutbox({ doc, names: stack.names });
    const events = (await Promise.all([stubborn!, flaky!, fine!].map((id) => outbox.resourceEvents(id)))).flat();
    // Act
    const done = await outbox.markEmitted(events, '2026-11-26T10:00:00.000Z');
    // Assess: the first call, then the two left over, then `stubborn` until the resends run out.
    expect(calls).toEqual([3, 2, 1, 1, 1]);
    expect([...done].sort()).toEqual(events.filter((e) => e.resourceId !== stubborn).map((e) => e.eventId).sort());
    const rows = await outboxRows(stack, [stubborn!, flaky!, fine!]);
    expect(rows.map((r) => [r.resourceId, r.emittedAt !== undefined, r.pendingShard !== undefined])).toEqual([
      [stubborn, false, true],
      [flaky, true, false],
      [fine, true, false],
    ]);
  });

  it('a holder paused past its shard lease: its late marks cover only what SQS accepted from it; pending events of the next holder stay pending and go out in order', async () => {
    // Prepare: one shard, so the holders meet on it. R#1 and R#2 pending.
    const shard = ledgerShardKey(0);
    const [r] = ids('paused', 1);
    const writer = outcomeStore(stack, { ledgerShards: 1 });
    await writeEvents([writer], [r!], 2);
    const [r1, r2] = await outboxRows(stack, [r!]);
    const queueUrl = stack.url(stack.names.queue('ledger-events'));
    const sqs = createSqsLedgerPublisher({ sqs: stack.clients.sqs, queueUrl: async () => queueUrl });
    const leases = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') });

    // A sends R#1, then its process stops (no lease call lands) until the test resumes it.
    const lease = pausable(leases);
    let resumed = false;
    let callsAfterResume = 0;
    let paused: Promise<void> | undefined;
    let resumeA = () => {};
    const publisherA: LedgerPublisher = {
      publish: async (entries, signal) => {
        if (resumed) callsAfterResume++;
        return sqs.publish(entries, signal);
      },
    };
    const a = inProcessEmitter(stack, {
      ownerId: 'holder-A',
      ledgerShards: 1,
      leaseMs: 1500,
      publisher: publisherA,
      wrapLeases: () => lease.wrapped,
      hooks: {
        afterSend: async ({ eventIds }) => {
          if (paused || !eventIds.includes(r1!.eventId)) return;
          lease.pause();
          paused = new Promise<void>((res) => {
            resumeA = res;
          });
          await paused;
        },
      },
    });
    running.push(a);
    for (const t of a.ledger.tasks) t.start();
    await eventually(() => paused !== undefined, 20_000, 'A sent R#1 and paused');

    // Act: A's lease lapses; another process takes the shard (it has not sent anything yet), and a
    // further change commits R#3. Then A resumes and finishes its pass.
    await eventually(
      async () => {
        const h = await leases.inspect(shard);
        return h === undefined || h.expiresAtMs < Date.now();
      },
      20_000,
      "A's lease lapsed",
    );
    const taken = await leases.acquire(shard, 'holder-B', 60_000);
    expect(taken.acquired).toBe(true);
    await writeEvents([writer], [r!], 1, 2);
    resumed = true;
    lease.resume();
    resumeA();
    await a.stop();

    // Assess: A marked R#1 (SQS accepted it from A), sent nothing more, and left R#2 and R#3
    // pending for the holder of the shard.
    expect(callsAfterResume).toBe(0);
    const rows = await outboxRows(stack, [r!]);
    expect(rows.map((x) => [x.sequence, x.emittedAt !== undefined, x.pendingShard])).toEqual([
      [1, true, undefined],
      [2, false, shard],
      [3, false, shard],
    ]);
    expect(toLedgerMessage(rows[0]!)).toEqual(toLedgerMessage(r1!));
    expect(toLedgerMessage(rows[1]!)).toEqual(toLedgerMessage(r2!));

    // The shard's next holder sends them: the consumer sees 1, 2, 3 once each, in order.
    if (taken.acquired) await leases.release(taken.lease);
    const c = inProcessEmitter(stack, { ownerId: 'holder-C', ledgerShards: 1 });
    running.push(c);
    for (const t of c.ledger.tasks) t.start();
    const consumer = new LedgerConsumer({ sqs: stack.clients.sqs, queueUrl, scope: (id) => id === r });
    await consumer.drainUntil((x) => x.uniqueCount >= 3, { timeoutMs: 30_000 });
    expect(consumer.sequences(r!)).toEqual([1, 2, 3]);
    expect(consumer.report()).toMatchObject({ unique: 3, gaps: [], reorders: [], invalid: [], mismatches: [] });
  });
});
