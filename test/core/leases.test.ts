import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { manualClock } from '../../shared/core/clock.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { LeaseHeldError, LeaseLostError } from '../../shared/core/errors.js';
import { createLeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { Lease, LeaseStore } from '../../shared/core/ports.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { ledgerShardKey, payoutShardKey } from '../../shared/resources.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let table: string;
/** A client of its own whose every DynamoDB call is recorded (no second read must happen). */
let counted: AwsClients;
const calls: string[] = [];

beforeAll(async () => {
  stack = await setupTestStack('leases');
  table = stack.names.table('leases');
  counted = createAwsClients(stack.aws, { credentials: EMBEDDED_CREDENTIALS });
  counted.doc.middlewareStack.add(
    (next, context) => async (args) => {
      calls.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
});
afterAll(() => {
  counted?.destroy();
  stack?.close();
});

/** Milliseconds until `signal` aborts; fails after `limitMs`. */
function abortedWithin(signal: AbortSignal, limitMs: number): Promise<number> {
  const start = Date.now();
  if (signal.aborted) return Promise.resolve(0);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`signal not aborted within ${limitMs} ms`)), limitMs);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve(Date.now() - start);
    });
  });
}

const uniq = (label: string) => `${label}#${Math.random().toString(36).slice(2, 10)}`;

describe('Class: DynamoLeaseStore', () => {
  it('Method: acquire/renew/release: a free key is taken, renewed, released keeping its token', async () => {
    // Prepare
    const clock = manualClock(1_000_000);
    const leases = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table, now: clock.now });
    const key = uniq('charge');
    // Act
    const a = await leases.acquire(key, 'w1', 30_000);
    // Assess
    expect(a.acquired).toBe(true);
    if (!a.acquired) return;
    expect(a.lease).toEqual({ key, owner: 'w1', fencingToken: 1, expiresAtMs: 1_030_000 });
    clock.advance(10_000);
    const renewed = await leases.renew(a.lease, 30_000);
    expect(renewed.expiresAtMs).toBe(1_040_000);
    expect(await leases.inspect(key)).toEqual({ owner: 'w1', expiresAtMs: 1_040_000, fencingToken: 1 });
    await leases.release(renewed);
    expect(await leases.inspect(key)).toEqual({ owner: undefined, expiresAtMs: 0, fencingToken: 1 });
    // A released lease is no longer renewable by its former holder.
    await expect(leases.renew(renewed, 30_000)).rejects.toBeInstanceOf(LeaseLostError);
  });

  it('Method: acquire: a held key reports holder and expiry from the failed write, with no second read', async () => {
    // Prepare
    const clock = manualClock(2_000_000);
    const leases = createDynamoLeaseStore({ doc: counted.doc, tableName: table, now: clock.now });
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

  it('Method: acquire: the fencing token grows across release/reacquire and across expiry takeovers', async () => {
    // Prepare
    const clock = manualClock(3_000_000);
    const leases = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table, now: clock.now });
    const key = uniq('charge');
    const tokens: number[] = [];
    // Act: take, release, take again, let it expire, another takes it over, and so on.
    for (let round = 0; round < 3; round++) {
      const r1 = await leases.acquire(key, 'w1', 1_000);
      if (!r1.acquired) throw new Error('w1 should acquire');
      tokens.push(r1.lease.fencingToken);
      await leases.release(r1.lease);
      const r2 = await leases.acquire(key, 'w2', 1_000);
      if (!r2.acquired) throw new Error('w2 should acquire a released lease');
      tokens.push(r2.lease.fencingToken);
      const blocked = await leases.acquire(key, 'w3', 1_000);
      expect(blocked.acquired).toBe(false);
      clock.advance(1_001); // w2 never renews: expired
      const r3 = await leases.acquire(key, 'w3', 1_000);
      if (!r3.acquired) throw new Error('w3 should take over an expired lease');
      tokens.push(r3.lease.fencingToken);
      // The expired holder can neither renew nor release the new holder's lease.
      await expect(leases.renew(r2.lease, 1_000)).rejects.toMatchObject({ code: 'LEASE_LOST', holder: { owner: 'w3' } });
      await leases.release(r2.lease);
      expect((await leases.inspect(key))?.owner).toBe('w3');
      await leases.release(r3.lease);
    }
    // Assess
    expect(tokens).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('Method: acquire: shard rows pre-created by bootstrap are leases like any other (and carry no TTL)', async () => {
    // Prepare
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

describe('Class: LeaseKeeper', () => {
  it('refuses a renew period longer than half the lease', () => {
    const store = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table });
    expect(() => createLeaseKeeper({ store, leaseMs: 30_000, renewMs: 20_000 })).toThrow(
      /renewMs \(20000\) must be > 0 and <= leaseMs \/ 2/,
    );
    expect(() => createLeaseKeeper({ store, leaseMs: 30_000, renewMs: 15_000 })).not.toThrow();
  });

  it('Method: hold: renews in the background past the original expiry; releaseAll gives the rows back', async () => {
    // Prepare
    const store = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table });
    const keeper = createLeaseKeeper({ store, leaseMs: 1_500, renewMs: 250 });
    const key = uniq('keep');
    // Act
    const got = await keeper.acquire(key, 'w1');
    if (!got.held) throw new Error('should acquire');
    const firstExpiry = got.held.lease.expiresAtMs;
    await sleep(2_000);
    // Assess: still ours, past the first expiry, nobody else can take it.
    expect(got.held.signal.aborted).toBe(false);
    expect(got.held.lease.expiresAtMs).toBeGreaterThan(firstExpiry);
    expect((await store.inspect(key))?.expiresAtMs).toBeGreaterThan(firstExpiry);
    const other = await keeper.acquire(key, 'w2');
    expect(other.held).toBeUndefined();
    expect(other.held === undefined && other.error).toBeInstanceOf(LeaseHeldError);
    await keeper.releaseAll();
    expect(keeper.size).toBe(0);
    expect(await store.inspect(key)).toEqual({ owner: undefined, expiresAtMs: 0, fencingToken: 1 });
    expect(got.held.signal.aborted).toBe(true);
  });

  it('Method: hold: aborts the signal as soon as a renew finds the lease taken', async () => {
    // Prepare
    const store = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table });
    const lost: Lease[] = [];
    const keeper = createLeaseKeeper({ store, leaseMs: 2_000, renewMs: 100, onLost: (l) => lost.push(l) });
    const key = uniq('keep');
    const got = await keeper.acquire(key, 'w1');
    if (!got.held) throw new Error('should acquire');
    // Act: someone else takes the row (as a takeover after a partition would).
    await stack.clients.doc.send(
      new UpdateCommand({
        TableName: table,
        Key: { leaseKey: key },
        UpdateExpression: 'SET #o = :o ADD fencingToken :one',
        ExpressionAttributeNames: { '#o': 'owner' },
        ExpressionAttributeValues: { ':o': 'thief', ':one': 1 },
      }),
    );
    const abortedAfterMs = await abortedWithin(got.held.signal, 5_000);
    // Assess: noticed at the next renew (every 100 ms), long before the 2 s lease would expire.
    expect(abortedAfterMs).toBeLessThan(1_500);
    expect(got.held.signal.reason).toBeInstanceOf(LeaseLostError);
    expect((got.held.signal.reason as LeaseLostError).holder?.owner).toBe('thief');
    expect(lost.map((l) => l.key)).toEqual([key]);
    expect(keeper.size).toBe(0);
    await keeper.releaseAll();
    expect((await store.inspect(key))?.owner).toBe('thief');
  });

  it('Method: hold: aborts before expiry when no renew lands in time (renew hangs)', async () => {
    // Prepare: a store whose renew never answers (a partition, a stuck socket).
    const real = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: table });
    const hanging: LeaseStore = { ...real, renew: () => new Promise(() => undefined) };
    const keeper = createLeaseKeeper({ store: hanging, leaseMs: 800, renewMs: 200, marginMs: 100 });
    const got = await keeper.acquire(uniq('keep'), 'w1');
    if (!got.held) throw new Error('should acquire');
    const expiresAtMs = got.held.lease.expiresAtMs;
    // Act
    const abortedAt = await new Promise<number>((resolve) =>
      got.held.signal.addEventListener('abort', () => resolve(Date.now())),
    );
    // Assess: stopped ~marginMs before the lease could have been taken by anyone else.
    expect(abortedAt).toBeLessThan(expiresAtMs);
    expect(got.held.signal.reason).toBeInstanceOf(LeaseLostError);
  });

  it('Method: hold: holding the same lease twice keeps one loop; a newer token supersedes (and aborts) the older', async () => {
    // Prepare: a fake store at the port (no DynamoDB needed for the bookkeeping).
    const renewed: number[] = [];
    const store: LeaseStore = {
      acquire: async () => {
        throw new Error('unused');
      },
      renew: async (l, ms) => {
        renewed.push(l.fencingToken);
        return { ...l, expiresAtMs: Date.now() + ms };
      },
      release: async () => undefined,
      inspect: async () => undefined,
    };
    const keeper = createLeaseKeeper({ store, leaseMs: 10_000, renewMs: 50 });
    const lease: Lease = { key: 'k', owner: 'w1', fencingToken: 3, expiresAtMs: Date.now() + 10_000 };
    // Act
    const h1 = keeper.hold(lease);
    const h2 = keeper.hold({ ...lease });
    await sleep(175);
    const h3 = keeper.hold({ ...lease, fencingToken: 4 });
    // Assess
    expect(h2.signal).toBe(h1.signal);
    expect(keeper.size).toBe(1);
    expect(h1.signal.aborted).toBe(true);
    expect(h1.signal.reason).toMatchObject({ code: 'LEASE_LOST', holder: { fencingToken: 4 } });
    expect(h3.signal.aborted).toBe(false);
    // One renewal loop for token 3 while it was kept (~3 renews in 175 ms; two loops would make ~6),
    // and none after it was superseded.
    const before = renewed.filter((t) => t === 3).length;
    expect(before).toBeLessThanOrEqual(4);
    await sleep(120);
    expect(renewed.filter((t) => t === 3).length).toBe(before);
    await keeper.releaseAll();
    expect(h3.signal.aborted).toBe(true);
  });

  it('keeps no process alive: its timers are unref’d', () => {
    // A child process holds a lease on a fake store and does nothing else; it must exit by itself.
    const script = `
      import { createLeaseKeeper } from './shared/core/lease-keeper.ts';
      const store = { acquire: async () => ({}), renew: async (l) => l, release: async () => {}, inspect: async () => undefined };
      const keeper = createLeaseKeeper({ store, leaseMs: 60000, renewMs: 1000 });
      keeper.hold({ key: 'k', owner: 'o', fencingToken: 1, expiresAtMs: Date.now() + 60000 });
    `;
    const started = Date.now();
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: process.cwd(),
      timeout: 20_000,
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
