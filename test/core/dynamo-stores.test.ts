/**
 * The DynamoDB stores (shared/core/dynamo-*.ts) on DynamoDB Local: the conformance suite every
 * store implementation passes (stores.conformance.ts), then what only the DynamoDB adapters do —
 * evidence from the failed write itself (no second read), TTLs, shard rows, the ClientRequestToken.
 */
import { DeleteCommand, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { manualClock } from '../../shared/core/clock.js';
import { createDynamoIdempotencyStore } from '../../shared/core/dynamo-idempotency.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { createDynamoRowWorkStore } from '../../shared/core/dynamo-row-work.js';
import { CommitTooLargeError, InvalidCommitError } from '../../shared/core/errors.js';
import type { CommitRequest, EntityChange } from '../../shared/core/ports.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { ledgerShardKey, payoutShardKey, type TableKey } from '../../shared/resources.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { rejection, uniq } from '../support/unique.js';
import { describeStoreConformance, type StoreHarness } from './stores.conformance.js';

let stack: TestStack;
/** A client of its own whose every call is recorded, and which can lose the next TransactWriteItems answer after it applied. */
let counted: AwsClients;
const calls: string[] = [];
let loseNextResponse = false;

beforeAll(async () => {
  stack = await setupTestStack('stores');
  counted = createAwsClients(stack.aws, { credentials: EMBEDDED_CREDENTIALS });
  counted.doc.middlewareStack.add(
    (next, context) => async (args) => {
      calls.push(String(context.commandName));
      const out = await next(args);
      if (loseNextResponse && context.commandName === 'TransactWriteItemsCommand') {
        loseNextResponse = false;
        // Applied on the server, answer lost on the way back (a timeout after the request went out).
        throw Object.assign(new Error('socket hang up after request was sent'), { name: 'TimeoutError' });
      }
      return out;
    },
    { step: 'initialize', name: 'countAndLose' },
  );
});
afterAll(() => {
  counted?.destroy();
  stack?.close();
});

function dynamoHarness(): StoreHarness {
  const doc = stack.clients.doc;
  const table = (k: TableKey) => stack.names.table(k);
  return {
    process: ({ now, newAttemptId } = {}) => ({
      leases: createDynamoLeaseStore({ doc, tableName: table('leases'), now }),
      idempotency: createDynamoIdempotencyStore({ doc, tableName: table('idempotency'), now, newAttemptId }),
      outcomes: createDynamoOutcomeStore({ doc, names: stack.names, ledgerShards: 8, now }),
      rows: createDynamoRowWorkStore({ doc, names: stack.names, now }),
    }),
    table,
    row: async (t, key) => (await doc.send(new GetCommand({ TableName: table(t), Key: key, ConsistentRead: true }))).Item,
    events: async (resourceId) =>
      (
        await doc.send(
          new QueryCommand({
            TableName: table('events'),
            KeyConditionExpression: 'resourceId = :r',
            ExpressionAttributeValues: { ':r': resourceId },
            ConsistentRead: true,
          }),
        )
      ).Items ?? [],
    put: async (t, item) => void (await doc.send(new PutCommand({ TableName: table(t), Item: item }))),
    delete: async (t, key) => void (await doc.send(new DeleteCommand({ TableName: table(t), Key: key }))),
  };
}

describeStoreConformance(
  { leases: 'DynamoLeaseStore', idempotency: 'DynamoIdempotencyStore', outcomes: 'DynamoOutcomeStore', rows: 'DynamoRowWorkStore' },
  dynamoHarness,
);

const create = (chargeId: string, events = 1): EntityChange => ({
  table: 'charges',
  key: { chargeId },
  expectedVersion: 0,
  set: { status: 'CREATED' },
  resource: { type: 'payment', id: chargeId, live: false },
  events: Array.from({ length: events }, (_, i) => ({ eventType: `E${i}`, details: {} })),
});
const readCharge = async (chargeId: string) =>
  (await stack.clients.doc.send(new GetCommand({ TableName: stack.names.table('charges'), Key: { chargeId }, ConsistentRead: true }))).Item;

describe('DynamoLeaseStore', () => {
  describe('acquire()', () => {
    it('reports the holder of a held key from the failed write itself, with no second read', async () => {
      // Prepare
      const clock = manualClock(2_000_000);
      const leases = createDynamoLeaseStore({ doc: counted.doc, tableName: stack.names.table('leases'), now: clock.now });
      const key = uniq('charge');
      await leases.acquire(key, 'w1', 30_000);
      calls.length = 0;
      // Act
      clock.advance(5_000);
      const b = await leases.acquire(key, 'w2', 30_000);
      // Assess
      expect(b).toEqual({ acquired: false, holder: { owner: 'w1', expiresAtMs: 2_030_000, fencingToken: 1 } });
      expect(calls).toEqual(['UpdateItemCommand']);
    });

    it('takes shard rows pre-created by bootstrap like any other lease, and never gives them a TTL', async () => {
      // Prepare
      const table = stack.names.table('leases');
      const leases = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table });
      for (const key of [payoutShardKey(0), ledgerShardKey(7)]) {
        expect(await leases.inspect(key)).toEqual({ owner: undefined, expiresAtMs: 0, fencingToken: 0 });
        // Act
        const a = await leases.acquire(key, 'w1', 10_000);
        // Assess
        expect(a.acquired && a.lease.fencingToken).toBe(1);
        const row = await stack.clients.doc.send(new GetCommand({ TableName: table, Key: { leaseKey: key } }));
        expect(row.Item).toMatchObject({ kind: 'shard', owner: 'w1' });
        expect(row.Item?.ttl).toBeUndefined();
        if (a.acquired) await leases.release(a.lease);
      }
    });
  });
});

describe('DynamoIdempotencyStore', () => {
  describe('begin()', () => {
    it('a completed record expires 7 days after its completion (TTL in epoch seconds)', async () => {
      const clock = manualClock(5_000_000);
      const table = stack.names.table('idempotency');
      const idem = createDynamoIdempotencyStore({ doc: stack.clients.doc, tableName: table, now: clock.now });
      const outcomes = createDynamoOutcomeStore({ doc: stack.clients.doc, names: stack.names, now: clock.now });
      const key = uniq('auth');
      const first = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
      if (first.status !== 'started') throw new Error('should start');
      await outcomes.commit({ workItem: { idempotencyKey: key, attemptId: first.attemptId, result: { ok: true } }, changes: [] });
      const raw = await stack.clients.doc.send(new GetCommand({ TableName: table, Key: { idempotencyKey: key } }));
      expect(raw.Item?.ttl).toBe(Math.floor(clock.now() / 1000) + 7 * 24 * 3600);
    });
  });
});

describe('DynamoOutcomeStore', () => {
  describe('commit()', () => {
    it('sends the same commit twice with one ClientRequestToken, applied once; a commit whose answer was lost is resent and applied once', async () => {
      // Prepare
      const store = createDynamoOutcomeStore({ doc: counted.doc, names: stack.names, resendDelayMs: 10 });
      const id = uniq('ch');
      await store.commit({ changes: [create(id)] });
      const advance = (version: number, status: string): CommitRequest => ({
        changes: [
          {
            table: 'charges',
            key: { chargeId: id },
            expectedVersion: version,
            set: { status },
            resource: { type: 'payment', id, live: false },
            currentEventSeq: version,
            events: [{ eventType: status, details: {} }],
          },
        ],
      });
      const request = advance(1, 'AUTHORISATION_SUCCESS');
      calls.length = 0;
      // Act: the caller repeats the same commit (e.g. after an AmbiguousError).
      const first = await store.commit(request);
      const second = await store.commit(request);
      // Assess: both went to DynamoDB; the second was accepted without a second application.
      expect(calls).toEqual(['TransactWriteItemsCommand', 'TransactWriteItemsCommand']);
      expect(second).toEqual(first);
      expect(await readCharge(id)).toMatchObject({ version: 2, eventSeq: 2 });

      // Act: the answer of the next commit is lost after it applied; commit() resends the same input.
      calls.length = 0;
      loseNextResponse = true;
      const third = await store.commit(advance(2, 'CAPTURE_APPROVED'));
      // Assess
      expect(calls).toEqual(['TransactWriteItemsCommand', 'TransactWriteItemsCommand']);
      expect(third.versions).toEqual([3]);
      expect(await readCharge(id)).toMatchObject({ version: 3, eventSeq: 3, status: 'CAPTURE_APPROVED' });
    });

    it('refuses an invalid or too large request before sending anything', async () => {
      const store = createDynamoOutcomeStore({ doc: counted.doc, names: stack.names });
      const id = uniq('ch');
      calls.length = 0;
      expect(await rejection(store.commit({ changes: [create(id, 100)] }))).toBeInstanceOf(CommitTooLargeError);
      const card = { changes: [{ ...create(id), set: { status: 'CREATED', note: '4242 4242 4242 4242' } }] };
      expect(await rejection(store.commit(card))).toBeInstanceOf(InvalidCommitError);
      expect(await rejection(store.commit({ changes: [] }))).toBeInstanceOf(InvalidCommitError);
      expect(calls).toEqual([]);
    });
  });
});
