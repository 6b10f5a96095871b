/**
 * The engine's shard pool (shared/core/shard-pool.ts) with fakes at its ports: an in-memory lease
 * store behind the real LeaseKeeper, an in-memory membership row, a clock moved by hand. Ticks are
 * driven by the test (`tick()`), so every step is proven by who holds what, never by waiting.
 * The ledger emitter and the payout worker run on it; test/ledger/processes.test.ts and
 * test/payout/payout-shards.test.ts prove the same through real processes.
 */
import { describe, expect, it } from 'vitest';
import { manualClock } from '../../shared/core/clock.js';
import { LeaseLostError } from '../../shared/core/errors.js';
import { createLeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { Membership } from '../../shared/core/membership.js';
import type { LeaseHolder, LeaseStore } from '../../shared/core/ports.js';
import { createShardPool, repeatWhileHeld, type ShardPoolOptions, type ShardSlot } from '../../shared/core/shard-pool.js';
import { createLogger } from '../../shared/log/logger.js';

const SHARDS = Array.from({ length: 8 }, (_, i) => `test-shard#${i}`);
const PERIOD_MS = 1000;

/** One leases table and one membership row, shared by the pools of a test; `events` records the order of things. */
function world() {
  const events: string[] = [];
  const rows = new Map<string, { owner: string | undefined; expiresAtMs: number; fencingToken: number }>();
  const store: LeaseStore = {
    async acquire(key, owner, leaseMs) {
      const r = rows.get(key);
      if (r?.owner !== undefined && r.expiresAtMs > Date.now()) return { acquired: false, holder: { ...r } };
      const lease = { key, owner, fencingToken: (r?.fencingToken ?? 0) + 1, expiresAtMs: Date.now() + leaseMs };
      rows.set(key, { owner, expiresAtMs: lease.expiresAtMs, fencingToken: lease.fencingToken });
      return { acquired: true, lease };
    },
    async renew(lease, leaseMs) {
      const r = rows.get(lease.key);
      if (r?.owner !== lease.owner || r.fencingToken !== lease.fencingToken) throw new LeaseLostError(lease, r ? { ...r } : undefined);
      r.expiresAtMs = Date.now() + leaseMs;
      return { ...lease, expiresAtMs: r.expiresAtMs };
    },
    async release(lease) {
      const r = rows.get(lease.key);
      if (r?.owner !== lease.owner || r.fencingToken !== lease.fencingToken) return;
      rows.set(lease.key, { owner: undefined, expiresAtMs: 0, fencingToken: r.fencingToken });
      events.push(`release ${lease.key}`);
    },
    async inspect(key): Promise<LeaseHolder | undefined> {
      return rows.get(key);
    },
  };
  const alive = new Map<string, number>();
  const left: string[] = [];
  const membership: Membership = {
    async heartbeat(owner, ttlMs) {
      alive.set(owner, Date.now() + ttlMs);
      return [...alive].filter(([, until]) => until > Date.now()).map(([o]) => o).sort();
    },
    async leave(owner) {
      alive.delete(owner);
      left.push(owner);
    },
  };
  const clock = manualClock();
  return { events, rows, store, membership, left, clock };
}

type World = ReturnType<typeof world>;

function logs() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    worker: 'test',
    level: 'debug',
    destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  });
  return { log, lines };
}

const aborted = (signal: AbortSignal) =>
  new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));

/** A pool on `w` whose shard loops run until their slot stops (or, `stubborn`, until aborted). */
function pool(w: World, owner: string, extra: Partial<ShardPoolOptions> & { stubborn?: boolean; leaseMs?: number; renewMs?: number } = {}) {
  const leaseMs = extra.leaseMs ?? 60_000;
  const keeper = createLeaseKeeper({ store: w.store, leaseMs, renewMs: extra.renewMs ?? leaseMs / 4 });
  const { log, lines } = logs();
  const started: string[] = [];
  const counts: number[] = [];
  const p = createShardPool({
    label: 'test',
    keeper,
    membership: w.membership,
    ownerId: owner,
    shards: SHARDS,
    periodMs: PERIOD_MS,
    leaseMs,
    maxShardsPerProcess: 0,
    rebalanceGraceMs: 60_000,
    runShard: async (slot) => {
      started.push(slot.shard);
      w.events.push(`start ${owner} ${slot.shard}`);
      await aborted(extra.stubborn ? slot.abort : slot.stop);
      w.events.push(`end ${owner} ${slot.shard}${slot.abort.aborted ? ' (aborted)' : ''}`);
    },
    onChange: (held) => counts.push(held),
    log,
    now: w.clock.now,
    ...extra,
  });
  return { pool: p, keeper, lines, started, counts, shards: () => p.held().map((h) => h.shard) };
}

/** The index of the first event starting with `prefix`, failing the test when there is none. */
function at(events: readonly string[], prefix: string): number {
  const i = events.findIndex((e) => e.startsWith(prefix));
  expect(i, `event "${prefix}" in ${JSON.stringify(events)}`).toBeGreaterThanOrEqual(0);
  return i;
}

describe('ShardPool', () => {
  describe('fair shares', () => {
    it('a newcomer gets half: the holder gives back its newest shards, each only after its loop ended, and the newcomer takes exactly those', async () => {
      const w = world();
      const a = pool(w, 'A');
      const b = pool(w, 'B');
      await a.pool.tick();
      expect(a.shards()).toHaveLength(8);
      await b.pool.tick();
      expect(b.shards()).toEqual([]); // all held: B backs off instead of hammering the rows
      await a.pool.tick(); // A sees two members: target 4
      expect(a.shards()).toEqual(a.started.slice(0, 4));
      const givenBack = a.started.slice(4);
      for (const shard of givenBack) expect(at(w.events, `end A ${shard}`)).toBeLessThan(at(w.events, `release ${shard}`));
      w.clock.advance(PERIOD_MS); // B's back-off on the shards it found held ends
      await b.pool.tick();
      expect(b.shards().sort()).toEqual([...givenBack].sort());
      expect(w.events.some((e) => e.includes('(aborted)'))).toBe(false);
      expect(a.counts.at(-1)).toBe(4);
      await Promise.all([a.pool.stop(1000), b.pool.stop(1000)]);
    });

    it('a cap below the fair share holds that many and says once that some shards have no holder', async () => {
      const w = world();
      const a = pool(w, 'A', { maxShardsPerProcess: 3, uncovered: 'they wait' });
      await a.pool.tick();
      await a.pool.tick();
      expect(a.shards()).toHaveLength(3);
      const warnings = a.lines.filter((l) => l.msg === 'test processes cannot hold every shard; they wait');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ members: 1, maxShardsPerProcess: 3, shards: 8 });
      await a.pool.stop(1000);
    });

    it('pick() hands out every usable shard in turn', async () => {
      const w = world();
      const a = pool(w, 'A', { maxShardsPerProcess: 3 });
      await a.pool.tick();
      const picked = new Set(Array.from({ length: 3 }, () => a.pool.pick()?.shard));
      expect([...picked].sort()).toEqual(a.shards().sort());
      await a.pool.stop(1000);
      expect(a.pool.pick()).toBeUndefined();
    });
  });

  describe('lost leases', () => {
    it('a shard whose lease another process took stops its loop, is no longer picked or counted, and is not retaken while held', async () => {
      const w = world();
      const a = pool(w, 'A', { leaseMs: 2000, renewMs: 100, maxShardsPerProcess: 2 });
      await a.pool.tick();
      const [victim, kept] = a.shards() as [string, string];
      const row = w.rows.get(victim)!;
      // Another process holds the row now (say A was paused past its expiry): A's next renew fails.
      w.rows.set(victim, { owner: 'thief', expiresAtMs: Date.now() + 600_000, fencingToken: row.fencingToken + 1 });
      const ended = w.events.length;
      await new Promise<void>((resolve) => {
        const check = () => (w.events.slice(ended).some((e) => e.startsWith(`end A ${victim}`)) ? resolve() : setTimeout(check, 10));
        check();
      });
      expect(a.shards()).toEqual([kept]);
      expect(new Set(Array.from({ length: 4 }, () => a.pool.pick()?.shard))).toEqual(new Set([kept]));
      expect(a.lines.some((l) => l.msg === 'test shard lease lost; its work stopped' && l.shard === victim)).toBe(true);
      w.clock.advance(PERIOD_MS);
      await a.pool.tick();
      expect(a.shards()).not.toContain(victim);
      expect(w.rows.get(victim)?.owner).toBe('thief');
      await a.pool.stop(1000);
    });
  });

  describe('stop()', () => {
    it('loops that finish in the grace period are not aborted; every lease is released after its loop ended; the membership entry is removed', async () => {
      const w = world();
      const a = pool(w, 'A');
      await a.pool.tick();
      await a.pool.stop(60_000);
      for (const shard of SHARDS) expect(at(w.events, `end A ${shard}`)).toBeLessThan(at(w.events, `release ${shard}`));
      expect(w.events.some((e) => e.includes('(aborted)'))).toBe(false);
      expect([...w.rows.values()].every((r) => r.owner === undefined && r.expiresAtMs === 0)).toBe(true);
      expect(w.left).toEqual(['A']);
    });

    it('a loop still working when the grace period is over is aborted, and only then is its lease released', async () => {
      const w = world();
      const a = pool(w, 'A', { stubborn: true, maxShardsPerProcess: 1 });
      await a.pool.tick();
      const [shard] = a.shards() as [string];
      await a.pool.stop(10);
      expect(at(w.events, `end A ${shard} (aborted)`)).toBeLessThan(at(w.events, `release ${shard}`));
      expect(a.lines.some((l) => l.msg === 'test shard work still in flight after the grace period; aborting it')).toBe(true);
    });

    it('once shutdown began (the stopping signal), no shard is taken', async () => {
      const w = world();
      const stopping = new AbortController();
      const a = pool(w, 'A', { stopping: stopping.signal });
      stopping.abort();
      await a.pool.tick();
      expect(a.shards()).toEqual([]);
      expect([...w.rows.values()].filter((r) => r.owner !== undefined)).toEqual([]);
      await a.pool.stop(1000);
    });
  });
});

describe('repeatWhileHeld', () => {
  const slot = (stop = new AbortController()): ShardSlot & { stopper: AbortController } => ({
    shard: 's',
    fence: { lease: () => ({ key: 's', owner: 'o', fencingToken: 1, expiresAtMs: 0 }) },
    stop: stop.signal,
    abort: new AbortController().signal,
    stopper: stop,
  });

  it('backs off after failures, counting them in a row, and a success resets the count', async () => {
    const s = slot();
    const failures: number[] = [];
    let calls = 0;
    await repeatWhileHeld(
      s,
      async () => {
        calls++;
        if (calls === 5) s.stopper.abort();
        if (calls === 1 || calls === 2 || calls === 4) throw new Error(`step ${calls}`);
        return { idleMs: 0 };
      },
      { backoff: { baseMs: 1, maxMs: 2 }, onFailure: (f) => failures.push(f.failures) },
    );
    expect(calls).toBe(5);
    expect(failures).toEqual([1, 2, 1]);
  });

  it('a step that fails because its slot stopped ends the loop quietly', async () => {
    const s = slot();
    const failures: unknown[] = [];
    await repeatWhileHeld(
      s,
      async () => {
        s.stopper.abort();
        throw new Error('aborted mid-step');
      },
      { backoff: { baseMs: 1, maxMs: 2 }, onFailure: (f) => failures.push(f) },
    );
    expect(failures).toEqual([]);
  });
});
