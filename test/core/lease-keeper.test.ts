/**
 * The LeaseKeeper (shared/core/lease-keeper.ts) at the LeaseStore port: in-memory stores (held to
 * the DynamoDB ones by the conformance suite) and vitest's fake timers, so "renews every 100 ms",
 * "gives up 100 ms before expiry" and "one loop, not two" are counted on a clock the test moves,
 * never measured on the wall clock.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LeaseHeldError, LeaseLostError } from '../../shared/core/errors.js';
import { createLeaseKeeper } from '../../shared/core/lease-keeper.js';
import { createMemoryStores } from '../../shared/core/memory-stores.js';
import type { Lease, LeaseStore } from '../../shared/core/ports.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

/** A store at the port that only counts renews (no lease rows needed for the bookkeeping). */
function countingStore(renewed: number[]): LeaseStore {
  return {
    acquire: async () => ({ acquired: false, holder: { owner: undefined, expiresAtMs: 0, fencingToken: 0 } }),
    renew: async (l, ms) => {
      renewed.push(l.fencingToken);
      return { ...l, expiresAtMs: Date.now() + ms };
    },
    release: async () => undefined,
    inspect: async () => undefined,
  };
}

describe('LeaseKeeper', () => {
  describe('createLeaseKeeper()', () => {
    it('refuses a renew period longer than half the lease', () => {
      const { leases: store } = createMemoryStores();
      expect(() => createLeaseKeeper({ store, leaseMs: 30_000, renewMs: 20_000 })).toThrow(/renewMs \(20000\) must be > 0 and <= leaseMs \/ 2/);
      expect(() => createLeaseKeeper({ store, leaseMs: 30_000, renewMs: 15_000 })).not.toThrow();
    });
  });

  describe('hold()', () => {
    it('renews in the background past the original expiry; releaseAll gives the rows back', async () => {
      // Prepare
      const { leases: store } = createMemoryStores();
      const keeper = createLeaseKeeper({ store, leaseMs: 1_500, renewMs: 250 });
      // Act
      const got = await keeper.acquire('keep#1', 'w1');
      if (!got.held) throw new Error('should acquire');
      const firstExpiry = got.held.lease.expiresAtMs;
      await vi.advanceTimersByTimeAsync(2_000);
      // Assess: still ours, past the first expiry, nobody else can take it.
      expect(got.held.signal.aborted).toBe(false);
      expect(got.held.lease.expiresAtMs).toBeGreaterThan(firstExpiry);
      expect((await store.inspect('keep#1'))?.expiresAtMs).toBe(got.held.lease.expiresAtMs);
      expect(got.held.lease.expiresAtMs).toBe(Date.now() + 1_500);
      const other = await keeper.acquire('keep#1', 'w2');
      expect(other.held).toBeUndefined();
      expect(other.held === undefined && other.error).toBeInstanceOf(LeaseHeldError);
      await keeper.releaseAll();
      expect(keeper.size).toBe(0);
      expect(await store.inspect('keep#1')).toEqual({ owner: undefined, expiresAtMs: 0, fencingToken: 1 });
      expect(got.held.signal.aborted).toBe(true);
    });

    it('aborts the signal at the first renew that finds the lease taken, long before it would expire', async () => {
      // Prepare
      const { db, leases: store } = createMemoryStores();
      const lost: Lease[] = [];
      const keeper = createLeaseKeeper({ store, leaseMs: 2_000, renewMs: 100, onLost: (l) => lost.push(l) });
      const got = await keeper.acquire('keep#2', 'w1');
      if (!got.held) throw new Error('should acquire');
      // Act: someone else takes the row (as a takeover after a partition would).
      const row = db.get('leases', { leaseKey: 'keep#2' })!;
      db.put('leases', { ...row, owner: 'thief', fencingToken: Number(row.fencingToken) + 1 });
      await vi.advanceTimersByTimeAsync(99);
      expect(got.held.signal.aborted).toBe(false);
      await vi.advanceTimersByTimeAsync(1); // the next renew, 1.9 s before the lease would expire
      // Assess
      expect(got.held.signal.aborted).toBe(true);
      expect(got.held.signal.reason).toBeInstanceOf(LeaseLostError);
      expect((got.held.signal.reason as LeaseLostError).holder?.owner).toBe('thief');
      expect(lost.map((l) => l.key)).toEqual(['keep#2']);
      expect(keeper.size).toBe(0);
      await keeper.releaseAll();
      expect((await store.inspect('keep#2'))?.owner).toBe('thief');
    });

    it('gives the lease up marginMs before expiry when no renew lands in time (renew hangs)', async () => {
      // Prepare: a store whose renew never answers (a partition, a stuck socket).
      const { leases: real } = createMemoryStores();
      const hanging: LeaseStore = { ...real, renew: () => new Promise(() => undefined) };
      const keeper = createLeaseKeeper({ store: hanging, leaseMs: 800, renewMs: 200, marginMs: 100 });
      const got = await keeper.acquire('keep#3', 'w1');
      if (!got.held) throw new Error('should acquire');
      const expiresAtMs = got.held.lease.expiresAtMs;
      // Act + Assess: live until 100 ms before expiry, given up at that point.
      await vi.advanceTimersByTimeAsync(699);
      expect(got.held.signal.aborted).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      expect(got.held.signal.aborted).toBe(true);
      expect(Date.now()).toBe(expiresAtMs - 100);
      expect(got.held.signal.reason).toBeInstanceOf(LeaseLostError);
      expect((got.held.signal.reason as LeaseLostError).message).toContain('about to expire with no renew landed');
    });

    it('holding the same lease twice keeps one loop; a newer token supersedes (and aborts) the older', async () => {
      // Prepare
      const renewed: number[] = [];
      const keeper = createLeaseKeeper({ store: countingStore(renewed), leaseMs: 10_000, renewMs: 50 });
      const lease: Lease = { key: 'k', owner: 'w1', fencingToken: 3, expiresAtMs: Date.now() + 10_000 };
      // Act
      const h1 = keeper.hold(lease);
      const h2 = keeper.hold({ ...lease });
      await vi.advanceTimersByTimeAsync(175);
      const h3 = keeper.hold({ ...lease, fencingToken: 4 });
      // Assess
      expect(h2.signal).toBe(h1.signal);
      expect(keeper.size).toBe(1);
      expect(h1.signal.aborted).toBe(true);
      expect(h1.signal.reason).toMatchObject({ code: 'LEASE_LOST', holder: { fencingToken: 4 } });
      expect(h3.signal.aborted).toBe(false);
      // One renewal loop for token 3 while it was kept (renews at 50, 100, 150 ms; two loops would
      // make six), and none after it was superseded.
      expect(renewed.filter((t) => t === 3)).toHaveLength(3);
      await vi.advanceTimersByTimeAsync(120);
      expect(renewed.filter((t) => t === 3)).toHaveLength(3);
      await keeper.releaseAll();
      expect(h3.signal.aborted).toBe(true);
    });

    it('renews a lease recognised with little time left halfway to its guard, not a full period later', async () => {
      // Prepare: a lease adopted from a lost acquire (dynamo-leases.ts), 5 s before expiry, under a
      // 60 s / 20 s keeper: its guard gives it up at 4 s, a full period would renew at 20 s.
      const renewed: number[] = [];
      const keeper = createLeaseKeeper({ store: countingStore(renewed), leaseMs: 60_000, renewMs: 20_000 });
      const held = keeper.hold({ key: 'charge#adopted', owner: 'worker-a', fencingToken: 4, expiresAtMs: Date.now() + 5_000 });
      // Act
      await vi.advanceTimersByTimeAsync(1_999);
      expect(renewed).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      // Assess
      expect(renewed).toEqual([4]);
      expect(held.signal.aborted).toBe(false);
      await keeper.releaseAll();
    });
  });

  describe('timers', () => {
    const procs: WorkerProcess[] = [];
    afterAll(() => {
      for (const p of procs) p.kill('SIGKILL');
    });

    it('keep no process alive: a process holding a lease and doing nothing else exits by itself', async () => {
      vi.useRealTimers();
      // Were the renew timer ref'd, the child would renew every second for ever and never exit
      // (the case would then fail by its own timeout).
      const p = startProcess('test/support/idle-keeper.ts', [], {});
      procs.push(p);
      expect(await p.exited).toBe(0);
      expect(p.lines).toContainEqual({ msg: 'holding', fencingToken: 1 });
    });
  });
});
