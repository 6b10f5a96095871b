/**
 * Lost answers against the embedded DynamoDB Local and SQS, through the fault proxy
 * (test/support/fault-proxy.ts): a request the emulator APPLIED whose answer never reaches us.
 *
 * Proves: every AWS attempt has a real deadline (a never-answered call ends in TimeoutError and
 * the SDK resends the byte-identical request); a TransactWriteItems applied but unanswered commits
 * exactly once; a lease acquire and a work-item begin applied but unanswered are recognised as
 * our own on the resend (no waiting for expiry: a 10-minute lease still lets the work complete);
 * the fence is intact (another owner, another acquire/attempt of the same owner, a stale acquire
 * id are refused); a long poll is not cut by the short SQS deadline.
 */
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import type { AwsDeadlines } from '../../shared/aws/request-handler.js';
import { manualClock } from '../../shared/core/clock.js';
import { createDynamoIdempotencyStore } from '../../shared/core/dynamo-idempotency.js';
import { createDynamoLeaseStore, isOwnAcquire } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { createLeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { Lease } from '../../shared/core/ports.js';
import { processOnce } from '../../shared/core/work.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { startFaultProxy, type FaultProxy, type LoseRule } from '../support/fault-proxy.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let ddbProxy: FaultProxy;
let sqsProxy: FaultProxy;
/** Clients whose every request goes through the proxies, with short deadlines. */
let viaProxy: AwsClients;
const DEADLINES: AwsDeadlines = { dynamodbMs: 800, sqsMs: 300, sqsReceiveMarginMs: 2_000, maxAttempts: 3 };
const TEN_MINUTES = 600_000;

beforeAll(async () => {
  stack = await setupTestStack('lost');
  ddbProxy = await startFaultProxy(stack.aws.dynamodbEndpoint!);
  sqsProxy = await startFaultProxy(stack.aws.sqsEndpoint!);
  viaProxy = createAwsClients(
    { ...stack.aws, dynamodbEndpoint: ddbProxy.url, sqsEndpoint: sqsProxy.url, deadlines: DEADLINES },
    { credentials: EMBEDDED_CREDENTIALS },
  );
});
afterAll(async () => {
  viaProxy?.destroy();
  await Promise.all([ddbProxy?.close(), sqsProxy?.close()]);
  stack?.close();
});
beforeEach(() => ddbProxy.loseAnswers(undefined));

const uniq = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`;
/** Lose the answers of requests whose body names `marker` (a key unique to the test). */
const loseFor = (marker: string, rule: Omit<LoseRule, 'match'>) =>
  ddbProxy.loseAnswers({ ...rule, match: (r) => r.body.includes(marker) });
const requestsFor = (marker: string) => ddbProxy.requests.filter((r) => r.body.includes(marker));
const leasesTable = () => stack.names.table('leases');
const leaseStore = (opts: { now?: () => number; newAcquireId?: () => string } = {}) =>
  createDynamoLeaseStore({ doc: viaProxy.doc, tableName: leasesTable(), ...opts });
const readLeaseRow = async (key: string) =>
  (await stack.clients.doc.send(new GetCommand({ TableName: leasesTable(), Key: { leaseKey: key }, ConsistentRead: true }))).Item;

describe('AWS clients', () => {
  describe('deadlines', () => {
    it('an answer that never comes ends the attempt (TimeoutError) and the SDK resends the byte-identical request', async () => {
      // Prepare
      const key = uniq('deadline');
      loseFor(key, { operations: ['PutItem'], first: 1, how: 'hang' });
      // Act
      await viaProxy.doc.send(new PutCommand({ TableName: leasesTable(), Item: { leaseKey: key, fencingToken: 1 } }));
      // Assess
      const seen = requestsFor(key);
      expect(seen.map((r) => r.fate)).toEqual(['lost', 'answered']);
      expect(seen[1]!.body).toBe(seen[0]!.body);
    });

    it('a call none of whose attempts is answered fails with TimeoutError after maxAttempts, instead of waiting for ever', async () => {
      const key = uniq('deadline-all');
      loseFor(key, { operations: ['PutItem'], how: 'hang' });
      await expect(
        viaProxy.doc.send(new PutCommand({ TableName: leasesTable(), Item: { leaseKey: key, fencingToken: 1 } })),
      ).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(requestsFor(key).map((r) => r.fate)).toEqual(['lost', 'lost', 'lost']);
    });

    it('a ReceiveMessage long poll is not cut by the short SQS deadline: one request, open until the message arrived', async () => {
      // Prepare: the short SQS deadline is 300 ms; the poll waits up to 4 s.
      const queueUrl = stack.url(stack.names.queue('ledger-events'));
      const before = sqsProxy.stats().seen.ReceiveMessage ?? 0;
      // Act: the message is sent well after 300 ms, while the poll is open.
      const poll = viaProxy.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 4, MaxNumberOfMessages: 1 }),
      );
      await new Promise((r) => setTimeout(r, 1_200));
      await stack.clients.sqs.send(
        new SendMessageCommand({
          QueueUrl: queueUrl,
          MessageBody: 'long-poll',
          MessageGroupId: 'g',
          MessageDeduplicationId: uniq('d'),
        }),
      );
      const got = await poll;
      // Assess: answered by the same single request (a cut poll would have been retried: more requests).
      expect(got.Messages?.map((m) => m.Body)).toEqual(['long-poll']);
      expect((sqsProxy.stats().seen.ReceiveMessage ?? 0) - before).toBe(1);
    });
  });
});

describe('DynamoOutcomeStore', () => {
  describe('commit(): lost answers', () => {
    it('a TransactWriteItems applied but never answered is resent with its ClientRequestToken and applied exactly once', async () => {
      // Prepare
      const outcomes = createDynamoOutcomeStore({ doc: viaProxy.doc, names: stack.names, ledgerShards: 8 });
      const id = uniq('ch');
      loseFor(id, { operations: ['TransactWriteItems'], first: 1, how: 'hang' });
      // Act
      const result = await outcomes.commit({
        changes: [
          {
            table: 'charges',
            key: { chargeId: id },
            expectedVersion: 0,
            set: { status: 'CREATED' },
            resource: { type: 'payment', id, live: false },
            events: [{ eventType: 'PAYMENT_CREATED', details: {} }],
          },
        ],
      });
      // Assess
      expect(result.versions).toEqual([1]);
      const sent = requestsFor(id).filter((r) => r.operation === 'TransactWriteItems');
      expect(sent.map((r) => r.fate)).toEqual(['lost', 'answered']);
      expect(sent[1]!.body).toBe(sent[0]!.body);
      expect(JSON.parse(sent[0]!.body).ClientRequestToken).toEqual(expect.any(String));
      const charge = await stack.clients.doc.send(
        new GetCommand({ TableName: stack.names.table('charges'), Key: { chargeId: id }, ConsistentRead: true }),
      );
      expect(charge.Item).toMatchObject({ status: 'CREATED', version: 1, eventSeq: 1 });
    });
  });
});

describe('DynamoLeaseStore', () => {
  describe('acquire(): lost answers', () => {
    it.each(['hang', 'reset'] as const)(
      'a lease acquire applied but unanswered (%s) is recognised on the resend: acquired, with the row token',
      async (how) => {
        // Prepare
        const key = uniq('charge#own');
        loseFor(key, { operations: ['UpdateItem'], first: 1, how });
        // Act: a 10-minute lease — were the resend not recognised, it would be held for 10 minutes.
        const got = await leaseStore().acquire(key, 'worker-a', TEN_MINUTES);
        // Assess
        expect(requestsFor(key).map((r) => r.fate)).toEqual(['lost', 'answered']);
        expect(got.acquired).toBe(true);
        const row = await readLeaseRow(key);
        if (!got.acquired) return;
        expect(got.lease).toMatchObject({
          key,
          owner: 'worker-a',
          fencingToken: row!.fencingToken,
          expiresAtMs: row!.expiresAtMs,
        });
        expect(row).toMatchObject({ owner: 'worker-a', fencingToken: 1 });
      },
    );

    it('an acquire all of whose attempts went unanswered is recognised by the next acquire of the same key in this process', async () => {
      const key = uniq('charge#lost-call');
      const leases = leaseStore();
      loseFor(key, { operations: ['UpdateItem'], first: 3, how: 'hang' });
      await expect(leases.acquire(key, 'worker-a', TEN_MINUTES)).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(await readLeaseRow(key)).toMatchObject({ owner: 'worker-a', fencingToken: 1 }); // it did apply
      const again = await leases.acquire(key, 'worker-a', TEN_MINUTES);
      expect(again).toMatchObject({ acquired: true, lease: { owner: 'worker-a', fencingToken: 1 } });
    });
  });

  describe('release(): not sent', () => {
    it('a release that could not be sent (DynamoDB down) leaves a leftover the same store takes back at once on its next acquire', async () => {
      const key = uniq('charge#leftover');
      const leases = leaseStore();
      const got = await leases.acquire(key, 'worker-a', TEN_MINUTES);
      expect(got.acquired).toBe(true);
      const lease = (got as { lease: Lease }).lease;
      await ddbProxy.refuse();
      try {
        await expect(leases.release(lease)).rejects.toBeTruthy();
      } finally {
        await ddbProxy.pass();
      }
      expect(await readLeaseRow(key)).toMatchObject({ owner: 'worker-a', fencingToken: lease.fencingToken }); // still held
      // Another owner still finds it held; this store's next acquire reclaims it with a new token.
      expect(await leaseStore().acquire(key, 'worker-b', TEN_MINUTES)).toMatchObject({
        acquired: false,
        holder: { owner: 'worker-a' },
      });
      const again = await leases.acquire(key, 'worker-a', TEN_MINUTES);
      expect(again).toMatchObject({ acquired: true, lease: { owner: 'worker-a', fencingToken: lease.fencingToken + 1 } });
      // Reclaimed once only: the next acquire of the same owner is another acquire, and finds it held.
      expect(await leases.acquire(key, 'worker-a', TEN_MINUTES)).toMatchObject({ acquired: false });
    });

    it('a leftover is not reclaimed once someone acquired the row since (another token)', async () => {
      const clock = manualClock(Date.now());
      const a = leaseStore({ now: clock.now });
      const b = leaseStore({ now: clock.now });
      const key = uniq('charge#leftover-taken');
      const got = (await a.acquire(key, 'worker-a', 1_000)) as { lease: Lease };
      await ddbProxy.refuse();
      try {
        await expect(a.release(got.lease)).rejects.toBeTruthy();
      } finally {
        await ddbProxy.pass();
      }
      clock.advance(2_000);
      expect(await b.acquire(key, 'worker-b', TEN_MINUTES)).toMatchObject({ acquired: true, lease: { fencingToken: 2 } });
      expect(await a.acquire(key, 'worker-a', TEN_MINUTES)).toMatchObject({
        acquired: false,
        holder: { owner: 'worker-b', fencingToken: 2 },
      });
    });
  });

  describe('acquire(): the fence stays intact', () => {
    it('recognises its own acquire only by the same owner AND the same acquire id (isOwnAcquire)', () => {
      const row = { owner: 'A', acquireId: 'n1', fencingToken: 3, expiresAtMs: 1 };
      expect(isOwnAcquire(row, 'A', 'n1')).toBe(true);
      expect(isOwnAcquire(row, 'A', 'n2')).toBe(false);
      expect(isOwnAcquire(row, 'B', 'n1')).toBe(false);
      expect(isOwnAcquire({ fencingToken: 3, expiresAtMs: 0 }, 'A', 'n1')).toBe(false);
    });

    it('another owner, or another acquire of the same owner, still finds the lease held', async () => {
      const key = uniq('charge#fence');
      const first = await leaseStore().acquire(key, 'worker-a', TEN_MINUTES);
      expect(first.acquired).toBe(true);
      expect(await leaseStore().acquire(key, 'worker-b', TEN_MINUTES)).toMatchObject({
        acquired: false,
        holder: { owner: 'worker-a' },
      });
      // Same owner, a different acquire (a second task of the same process, or the same process later).
      expect(await leaseStore().acquire(key, 'worker-a', TEN_MINUTES)).toMatchObject({
        acquired: false,
        holder: { owner: 'worker-a' },
      });
    });

    it('a stale acquire id is refused once the lease was lost to another owner, and never resurrects an old token', async () => {
      // Prepare: A's acquires all carry id n1 (as a resend of one acquire would).
      const clock = manualClock(Date.now());
      const a = leaseStore({ now: clock.now, newAcquireId: () => 'n1' });
      const b = leaseStore({ now: clock.now });
      const key = uniq('charge#stale');
      expect(await a.acquire(key, 'worker-a', 1_000)).toMatchObject({ acquired: true, lease: { fencingToken: 1 } });
      clock.advance(2_000); // A's lease expires unrenewed
      expect(await b.acquire(key, 'worker-b', TEN_MINUTES)).toMatchObject({ acquired: true, lease: { fencingToken: 2 } });
      // Act + Assess: A comes back with the same id: B holds it.
      expect(await a.acquire(key, 'worker-a', TEN_MINUTES)).toMatchObject({
        acquired: false,
        holder: { owner: 'worker-b', fencingToken: 2 },
      });
      // After B releases, A's acquire is a fresh one (a new token), not a recognition of token 1.
      const released = await b.inspect(key);
      await b.release({ key, owner: 'worker-b', fencingToken: released!.fencingToken, expiresAtMs: 0 });
      expect(await readLeaseRow(key)).not.toHaveProperty('acquireId');
      expect(await a.acquire(key, 'worker-a', TEN_MINUTES)).toMatchObject({ acquired: true, lease: { fencingToken: 3 } });
    });
  });
});

describe('DynamoIdempotencyStore', () => {
  describe('begin(): lost answers', () => {
    it('a work-item begin applied but unanswered is recognised on the resend: started, not busy, attempts not doubled', async () => {
      // Prepare
      const idem = createDynamoIdempotencyStore({ doc: viaProxy.doc, tableName: stack.names.table('idempotency') });
      const key = uniq('auth#own');
      loseFor(key, { operations: ['UpdateItem'], first: 1, how: 'hang' });
      // Act
      const state = await idem.begin(key, { deadlineMs: Date.now() + TEN_MINUTES, fencingToken: 7 });
      // Assess
      expect(requestsFor(key).map((r) => r.fate)).toEqual(['lost', 'answered']);
      expect(state.status).toBe('started');
      if (state.status !== 'started') return;
      expect(state.record).toMatchObject({ attemptId: state.attemptId, attempts: 1, status: 'IN_PROGRESS' });
    });

    it('a begin all of whose attempts went unanswered is recognised by the next begin of the same item in this process', async () => {
      const idem = createDynamoIdempotencyStore({ doc: viaProxy.doc, tableName: stack.names.table('idempotency') });
      const key = uniq('auth#lost-call');
      loseFor(key, { operations: ['UpdateItem'], first: 3, how: 'hang' });
      await expect(idem.begin(key, { deadlineMs: Date.now() + TEN_MINUTES, fencingToken: 7 })).rejects.toMatchObject({
        name: 'TimeoutError',
      });
      const again = await idem.begin(key, { deadlineMs: Date.now() + TEN_MINUTES, fencingToken: 7 });
      expect(again).toMatchObject({ status: 'started', attempts: 1 });
      if (again.status === 'started') expect(again.record.attemptId).toBe(again.attemptId);
    });

    it('a begin by another attempt (another attemptId) is still busy', async () => {
      const ids = ['a1', 'a2'];
      const idem = createDynamoIdempotencyStore({
        doc: viaProxy.doc,
        tableName: stack.names.table('idempotency'),
        newAttemptId: () => ids.shift()!,
      });
      const key = uniq('auth#fence');
      expect(await idem.begin(key, { deadlineMs: Date.now() + TEN_MINUTES, fencingToken: 7 })).toMatchObject({
        status: 'started',
        attemptId: 'a1',
      });
      expect(await idem.begin(key, { deadlineMs: Date.now() + TEN_MINUTES, fencingToken: 7 })).toMatchObject({
        status: 'busy',
        record: { attemptId: 'a1' },
      });
    });
  });
});

describe('processOnce', () => {
  describe('lost answers', () => {
    it('acquire, begin, commit and release all losing their answers: with a 10-minute lease the work still commits under the row token', async () => {
      // Prepare
      const leases = leaseStore();
      const keeper = createLeaseKeeper({ store: leases, leaseMs: TEN_MINUTES, renewMs: TEN_MINUTES / 3 });
      const idempotency = createDynamoIdempotencyStore({ doc: viaProxy.doc, tableName: stack.names.table('idempotency') });
      const outcomes = createDynamoOutcomeStore({ doc: viaProxy.doc, names: stack.names, ledgerShards: 8 });
      const id = uniq('e2e');
      // Every distinct write naming `id` (acquire, begin, commit, release) loses its first answer;
      // its resend (the same body) is answered.
      const once = new Set<string>();
      ddbProxy.loseAnswers({
        operations: ['UpdateItem', 'TransactWriteItems'],
        match: (r) => r.body.includes(id) && !once.has(r.body) && once.add(r.body).size > 0,
        how: 'hang',
      });
      const hctx = { signal: new AbortController().signal, setAttempts: () => undefined };
      // Act
      const out = await processOnce(
        { keeper, idempotency, ownerId: 'worker-a', attemptDeadlineMs: TEN_MINUTES },
        { leaseKey: `charge#${id}`, idempotencyKey: `auth#${id}` },
        hctx,
        async (ctx) => {
          await outcomes.commit({
            lease: ctx.held.lease,
            workItem: { idempotencyKey: `auth#${id}`, attemptId: ctx.attemptId, result: { ok: true } },
            changes: [{ table: 'charges', key: { chargeId: id }, expectedVersion: 0, set: { status: 'CREATED' } }],
          });
          return ctx.held.lease.fencingToken;
        },
      );
      await keeper.releaseAll();
      // Assess
      expect(out).toEqual({ status: 'done', result: 1 });
      expect(requestsFor(id).map((r) => `${r.operation}:${r.fate}`)).toEqual([
        'UpdateItem:lost', // acquire
        'UpdateItem:answered', // its resend: recognised as our own lease
        'UpdateItem:lost', // begin
        'UpdateItem:answered', // its resend: recognised as our own attempt
        'TransactWriteItems:lost', // commit
        'TransactWriteItems:answered', // its resend: same ClientRequestToken, not applied twice
        'UpdateItem:lost', // release
        'UpdateItem:answered',
      ]);
      const item = await idempotency.get(`auth#${id}`);
      expect(item).toMatchObject({ status: 'COMPLETED', attempts: 1, fencingToken: 1 });
    });
  });
});
