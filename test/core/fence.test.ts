/**
 * The fence (docs/contract.md §4.3): a worker whose lease was lost — paused past its expiry,
 * partitioned — cannot commit, and nothing it tried to write becomes visible.
 *
 *   A  acquire(c1) tok n ─ begin(r1, n) ─ ░░░░░ paused (its clock frozen) ░░░░░ ─ commit ✗ LeaseLostError
 *   B                              (31 s later) acquire(c1) tok n+1 ─ begin(r1, n+1) ─ commit ✓
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock, type ManualClock } from '../../shared/core/clock.js';
import { createDynamoIdempotencyStore } from '../../shared/core/dynamo-idempotency.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { LeaseLostError } from '../../shared/core/errors.js';
import type { CommitRequest, Lease } from '../../shared/core/ports.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await setupTestStack('fence');
});
afterAll(() => stack?.close());

const uniq = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`;

/** One worker process: its own clock and its own adapters. */
function worker(clock: ManualClock | undefined) {
  const now = clock?.now;
  const doc = stack.clients.doc;
  return {
    leases: createDynamoLeaseStore({ doc, tableName: stack.names.table('leases'), ...(now ? { now } : {}) }),
    idem: createDynamoIdempotencyStore({ doc, tableName: stack.names.table('idempotency'), ...(now ? { now } : {}) }),
    outcomes: createDynamoOutcomeStore({ doc, names: stack.names, ...(now ? { now } : {}) }),
  };
}

async function snapshot(chargeId: string, workItemKey: string) {
  const doc = stack.clients.doc;
  const [charge, events, item] = await Promise.all([
    doc.send(new GetCommand({ TableName: stack.names.table('charges'), Key: { chargeId }, ConsistentRead: true })),
    doc.send(
      new QueryCommand({
        TableName: stack.names.table('events'),
        KeyConditionExpression: 'resourceId = :r',
        ExpressionAttributeValues: { ':r': chargeId },
        ConsistentRead: true,
      }),
    ),
    doc.send(
      new GetCommand({ TableName: stack.names.table('idempotency'), Key: { idempotencyKey: workItemKey }, ConsistentRead: true }),
    ),
  ]);
  return { charge: charge.Item, events: events.Items ?? [], workItem: item.Item };
}

/** A charge c1 at version 1 with PAYMENT_CREATED, and an authorisation commit under `lease`. */
async function seedCharge(chargeId: string) {
  await worker(undefined).outcomes.commit({
    changes: [
      {
        table: 'charges',
        key: { chargeId },
        expectedVersion: 0,
        set: { status: 'AUTHORISATION_READY' },
        resource: { type: 'payment', id: chargeId, gatewayAccountId: 'gw', live: false },
        events: [{ eventType: 'PAYMENT_CREATED', details: {} }],
      },
    ],
  });
}

function authorise(
  chargeId: string,
  lease: Lease,
  workItem: { idempotencyKey: string; attemptId: string },
  status: string,
): CommitRequest {
  return {
    lease,
    workItem: { ...workItem, result: { status } },
    changes: [
      {
        table: 'charges',
        key: { chargeId },
        expectedVersion: 1,
        currentEventSeq: 1,
        set: { status },
        resource: { type: 'payment', id: chargeId, gatewayAccountId: 'gw', live: false },
        events: [
          { eventType: status === 'AUTHORISATION_SUCCESS' ? 'AUTHORISATION_SUCCEEDED' : 'AUTHORISATION_REJECTED', details: {} },
        ],
      },
    ],
  };
}

describe('The fence', () => {
  it('a holder paused past its lease cannot commit once another worker took over; nothing of it is visible; the new holder commits', async () => {
    // Prepare
    const chargeId = uniq('c');
    const leaseKey = `charge#${chargeId}`;
    const itemKey = `auth#${uniq('r')}`;
    await seedCharge(chargeId);
    const clockA = manualClock(10_000_000);
    const clockB = manualClock(10_000_000);
    const A = worker(clockA);
    const B = worker(clockB);
    const a = await A.leases.acquire(leaseKey, 'worker-A', 30_000);
    if (!a.acquired) throw new Error('A should acquire');
    const aItem = await A.idem.begin(itemKey, { deadlineMs: clockA.now() + 60_000, fencingToken: a.lease.fencingToken });
    if (aItem.status !== 'started') throw new Error('A should start the work item');

    // Act 1: A pauses (its clock does not move). 31 s pass for everyone else; B takes the lease.
    clockB.advance(31_000);
    const b = await B.leases.acquire(leaseKey, 'worker-B', 30_000);
    if (!b.acquired) throw new Error('B should take over the expired lease');
    expect(b.lease.fencingToken).toBe(a.lease.fencingToken + 1);
    const before = await snapshot(chargeId, itemKey);

    // A wakes and commits, believing (by its own clock) that its lease is valid; the work item is still its own.
    const err = await A.outcomes
      .commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: aItem.attemptId }, 'AUTHORISATION_REJECTED'))
      .catch((e: unknown) => e);

    // Assess 1: refused by the lease alone, with the current holder as evidence; nothing visible.
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(err).toMatchObject({
      code: 'LEASE_LOST',
      kind: 'retryable',
      part: 'lease',
      holder: { owner: 'worker-B', fencingToken: b.lease.fencingToken },
    });
    expect(await snapshot(chargeId, itemKey)).toEqual(before);
    expect(before.charge).toMatchObject({ version: 1, status: 'AUTHORISATION_READY' });
    expect(before.workItem).toMatchObject({ status: 'IN_PROGRESS', attemptId: aItem.attemptId });

    // Act 2: B takes over the work item with its newer token at once, and commits.
    const bItem = await B.idem.begin(itemKey, { deadlineMs: clockB.now() + 60_000, fencingToken: b.lease.fencingToken });
    if (bItem.status !== 'started') throw new Error('B should take over the in-progress work item');
    await B.outcomes.commit(
      authorise(chargeId, b.lease, { idempotencyKey: itemKey, attemptId: bItem.attemptId }, 'AUTHORISATION_SUCCESS'),
    );

    // A tries again (same request): still refused, B's result stands.
    const again = await A.outcomes
      .commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: aItem.attemptId }, 'AUTHORISATION_REJECTED'))
      .catch((e: unknown) => e);
    expect(again).toBeInstanceOf(LeaseLostError);

    // Assess 2
    const after = await snapshot(chargeId, itemKey);
    expect(after.charge).toMatchObject({ version: 2, eventSeq: 2, status: 'AUTHORISATION_SUCCESS' });
    expect(after.events.map((e) => e.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_SUCCEEDED']);
    expect(after.workItem).toMatchObject({
      status: 'COMPLETED',
      attemptId: bItem.attemptId,
      result: { status: 'AUTHORISATION_SUCCESS' },
    });
    expect(await A.idem.begin(itemKey, { deadlineMs: clockA.now() + 60_000 })).toMatchObject({
      status: 'completed',
      result: { status: 'AUTHORISATION_SUCCESS' },
    });
  });

  it('a holder whose lease expired by its own clock cannot commit even if nobody took over', async () => {
    const chargeId = uniq('c');
    const itemKey = `auth#${uniq('r')}`;
    await seedCharge(chargeId);
    const clock = manualClock(20_000_000);
    const A = worker(clock);
    const a = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
    if (!a.acquired) throw new Error('A should acquire');
    const item = await A.idem.begin(itemKey, { deadlineMs: clock.now() + 60_000, fencingToken: a.lease.fencingToken });
    if (item.status !== 'started') throw new Error('should start');
    const before = await snapshot(chargeId, itemKey);
    clock.advance(30_000);
    const err = await A.outcomes
      .commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: item.attemptId }, 'AUTHORISATION_SUCCESS'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect((err as LeaseLostError).holder).toEqual({
      owner: 'worker-A',
      fencingToken: a.lease.fencingToken,
      expiresAtMs: 20_030_000,
    });
    expect(await snapshot(chargeId, itemKey)).toEqual(before);
  });

  it('the token fences too: the same owner re-acquiring after expiry fences out its own older attempt', async () => {
    // A process lost its lease (expired) and took it again under the same owner id: the attempt
    // still running under the old token must not commit; only the owner string would not tell.
    const chargeId = uniq('c');
    const itemKey = `auth#${uniq('r')}`;
    await seedCharge(chargeId);
    const clock = manualClock(30_000_000);
    const A = worker(clock);
    const old = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
    if (!old.acquired) throw new Error('A should acquire');
    const item = await A.idem.begin(itemKey, { deadlineMs: clock.now() + 600_000, fencingToken: old.lease.fencingToken });
    if (item.status !== 'started') throw new Error('should start');
    clock.advance(31_000);
    const fresh = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
    if (!fresh.acquired) throw new Error('A should re-acquire');
    const stale = { ...old.lease, expiresAtMs: fresh.lease.expiresAtMs };
    const err = await A.outcomes
      .commit(authorise(chargeId, stale, { idempotencyKey: itemKey, attemptId: item.attemptId }, 'AUTHORISATION_SUCCESS'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect(err).toMatchObject({
      fencingToken: old.lease.fencingToken,
      holder: { owner: 'worker-A', fencingToken: fresh.lease.fencingToken },
    });
    expect((await snapshot(chargeId, itemKey)).charge).toMatchObject({ version: 1 });
  });

  it('with real time: short lease, a sleep past it, a takeover — the sleeper is refused', async () => {
    const chargeId = uniq('c');
    const itemKey = `auth#${uniq('r')}`;
    await seedCharge(chargeId);
    const A = worker(undefined);
    const B = worker(undefined);
    const a = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 300);
    if (!a.acquired) throw new Error('A should acquire');
    const item = await A.idem.begin(itemKey, { deadlineMs: Date.now() + 60_000, fencingToken: a.lease.fencingToken });
    if (item.status !== 'started') throw new Error('should start');
    await sleep(350); // the "GC pause"
    const b = await B.leases.acquire(`charge#${chargeId}`, 'worker-B', 30_000);
    expect(b.acquired).toBe(true);
    const err = await A.outcomes
      .commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: item.attemptId }, 'AUTHORISATION_SUCCESS'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect((await snapshot(chargeId, itemKey)).charge).toMatchObject({ version: 1 });
  });
});
