/**
 * The shard pool: which shards of one kind (`ledger-shard#NNN`, `payout-shard#NNN`) this process
 * works on, and one loop per held shard. The ledger emitter (one send loop per shard) and the
 * payout worker (one initiation loop per shard) plug their per-shard work in as `runShard(slot)`.
 *
 * Every `periodMs` (jittered) the pool ticks:
 *   1. heartbeats this process's entry in the membership row and learns the live members (one
 *      UpdateItem; membership.ts);
 *   2. target = ceil(shards / live members), capped by maxShardsPerProcess when set;
 *   3. above target: stops the loops of its newest shards (each finishes the step in flight) and
 *      only then releases their leases, so a newcomer takes them at its next tick;
 *   4. below target: tries free shards in random order, one conditional write each (the keeper's
 *      acquire). A shard found held is not tried again before min(its holder's expiry, a back-off
 *      from one period doubling up to the lease length): no hammering a busy fleet's rows, a dead
 *      holder's shard is taken as soon as its lease lapses, and a shard given back early is seen
 *      within a few periods. A change in membership resets the back-off.
 *
 *   process A  ── holds 0..7 ──────── tick: 2 members, target 4 ── releases 4..7 ───────── holds 0..3
 *   process B         start ── tick: target 4; 0..7 held -> back off ── tick: acquires 4..7 ── holds 4..7
 *   A SIGKILLed: its leases run out ── B's first tick after their expiry acquires 0..3
 *
 * A slot's `stop` signal fires when its loop must start nothing new (lease lost, rebalance,
 * shutdown); its `abort` signal when a call in flight must be abandoned (lease lost, or the grace
 * period is over). The lease's own signal feeds both: the keeper aborts it the instant the lease can
 * no longer be trusted (renew refused, or about to expire unrenewed). Whatever a loop writes is
 * fenced by the lease anyway; the signals only stop it working, and calling out, under a dead lease.
 *
 * stop(graceMs): no more ticks; every loop is told to stop and given `graceMs` to finish its step
 * (then aborted); only then is each lease released (released earlier, two processes could work one
 * shard at once) and the membership entry removed, so the others take the shards at their next tick
 * instead of waiting for the leases to expire.
 */
import { backoffMs, type BackoffPolicy } from './backoff.js';
import { systemClock, type Clock } from './clock.js';
import type { HeldLease, LeaseKeeper } from './lease-keeper.js';
import type { Membership } from './membership.js';
import type { Lease } from './ports.js';
import type { Logger } from '../log/logger.js';
import { jitter, pause, settlesWithin } from './timers.js';

/** A held shard, as the work on it sees it. */
export interface ShardSlot {
  readonly shard: string;
  /** The lease as last renewed (owner and fencing token never change); every commit carries it. */
  readonly fence: { lease(): Lease };
  /** Start nothing new (lease lost, rebalance, shutdown). */
  readonly stop: AbortSignal;
  /** Abandon calls in flight (lease lost, or the grace period is over). */
  readonly abort: AbortSignal;
}

export interface ShardPoolOptions {
  /** Names the pool in its log lines: `<label> shard acquired`, `<label> shard released`, … */
  readonly label: string;
  readonly keeper: LeaseKeeper;
  readonly membership: Membership;
  readonly ownerId: string;
  /** Lease keys of every shard of this kind. */
  readonly shards: readonly string[];
  /** Tick period: membership heartbeat, release above target, acquire below it. */
  readonly periodMs: number;
  /** Lease length: the longest back-off before a shard found held is tried again. */
  readonly leaseMs: number;
  /** How long a membership entry counts as alive without a heartbeat. @default 3 × periodMs */
  readonly memberTtlMs?: number;
  /** Cap on shards per process; 0 = fair share only. */
  readonly maxShardsPerProcess: number;
  /** Time a loop gets to finish its step when a rebalance gives its shard back. */
  readonly rebalanceGraceMs: number;
  /** What becomes of shards no process may hold (members × cap < shards); logged once. */
  readonly uncovered?: string;
  /** The work of one held shard; resolves once `slot.stop` (or `slot.abort`) ended it. */
  readonly runShard: (slot: ShardSlot) => Promise<void>;
  /** Called whenever the usable held shards changed, with their number. */
  readonly onChange?: (held: number) => void;
  /** Once aborted, no shard is taken any more (shutdown began); held ones are kept until stop(). */
  readonly stopping?: AbortSignal;
  readonly log: Logger;
  readonly now?: Clock;
}

export interface ShardPool {
  /** Start ticking. Idempotent. */
  start(): void;
  /** Take no new shard; resolves once a tick in progress ended. */
  stopAcquiring(): Promise<void>;
  /** Stop every loop (finish within graceMs, else abort), release every lease, leave the membership. */
  stop(graceMs: number): Promise<void>;
  /** A usable held shard, round robin (payout ingestion), or undefined. */
  pick(): ShardSlot | undefined;
  /** Usable held shards with their fencing tokens. */
  held(): { shard: string; fencingToken: number }[];
  /** Live members at the last heartbeat (this process included). */
  members(): number;
  /** One tick now (tests). */
  tick(): Promise<void>;
}

interface Slot extends ShardSlot {
  readonly lease: HeldLease;
  readonly stopping: AbortController;
  readonly hard: AbortController;
  loop: Promise<void>;
}

export function createShardPool(options: ShardPoolOptions): ShardPool {
  const { keeper, membership, ownerId, log, label } = options;
  const now = options.now ?? systemClock;
  const memberTtlMs = options.memberTtlMs ?? 3 * options.periodMs;
  const slots = new Map<string, Slot>();
  const skip = new Map<string, { until: number; failures: number }>();
  const stopTicks = new AbortController();
  const noMore = options.stopping ? AbortSignal.any([stopTicks.signal, options.stopping]) : stopTicks.signal;
  let members: readonly string[] = [ownerId];
  let ticking: Promise<void> | undefined;
  let runner: Promise<void> | undefined;
  let next = 0;
  let warnedUncovered = false;

  const usable = () => [...slots.values()].filter((s) => !s.stop.aborted);
  const changed = () => options.onChange?.(usable().length);

  function startSlot(shard: string, lease: HeldLease): void {
    const stopping = new AbortController();
    const hard = new AbortController();
    const slot: Slot = {
      shard,
      lease,
      stopping,
      hard,
      fence: { lease: () => lease.lease },
      stop: AbortSignal.any([lease.signal, stopping.signal]),
      abort: AbortSignal.any([lease.signal, hard.signal]),
      loop: Promise.resolve(),
    };
    slots.set(shard, slot);
    log.info({ shard, fencingToken: lease.lease.fencingToken }, `${label} shard acquired`);
    lease.signal.addEventListener(
      'abort',
      () => {
        if (!stopping.signal.aborted)
          log.warn({ shard, fencingToken: lease.lease.fencingToken }, `${label} shard lease lost; its work stopped`);
        changed();
      },
      { once: true },
    );
    slot.loop = options
      .runShard(slot)
      .catch((err: unknown) => log.error({ shard, err }, `${label} shard loop crashed`))
      .finally(() => {
        if (slots.get(shard) === slot) slots.delete(shard);
        changed();
      });
    changed();
  }

  async function releaseSlot(slot: Slot, graceMs: number): Promise<void> {
    slot.stopping.abort();
    changed();
    if (!(await settlesWithin(slot.loop, graceMs))) {
      log.warn({ shard: slot.shard, graceMs }, `${label} shard work still in flight after the grace period; aborting it`);
      slot.hard.abort();
      await slot.loop;
    }
    // Only now: a shard released while its loop still runs could be worked by two processes.
    await slot.lease.release();
    log.info({ shard: slot.shard, fencingToken: slot.lease.lease.fencingToken }, `${label} shard released`);
  }

  async function heartbeat(): Promise<void> {
    try {
      const live = await membership.heartbeat(ownerId, memberTtlMs);
      const seen = live.includes(ownerId) ? live : [...live, ownerId].sort();
      if (seen.join('|') !== members.join('|')) {
        log.info({ members: seen.length }, `${label} members changed`);
        skip.clear();
      }
      members = seen;
    } catch (err) {
      log.warn({ err }, `${label} membership heartbeat failed; keeping the last known members`);
    }
  }

  function targetShare(): number {
    const cap = options.maxShardsPerProcess;
    const fair = Math.ceil(options.shards.length / Math.max(1, members.length));
    if (cap > 0 && members.length * cap < options.shards.length && !warnedUncovered) {
      warnedUncovered = true;
      log.warn(
        { members: members.length, maxShardsPerProcess: cap, shards: options.shards.length },
        `${label} processes cannot hold every shard${options.uncovered ? `; ${options.uncovered}` : ''}`,
      );
    }
    return cap > 0 ? Math.min(cap, fair) : fair;
  }

  async function tickOnce(): Promise<void> {
    await heartbeat();
    const target = targetShare();
    const live = usable();
    if (live.length > target) {
      // Newest first: the oldest holdings stay put, so a rebalance moves as little as possible.
      const excess = live.slice(target);
      log.info({ target, releasing: excess.map((s) => s.shard) }, `${label} rebalancing: giving shards back`);
      await Promise.all(excess.map((s) => releaseSlot(s, options.rebalanceGraceMs)));
    }
    const t = now();
    const free = options.shards.filter((s) => !slots.has(s) && (skip.get(s)?.until ?? 0) <= t);
    for (let i = free.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [free[i], free[j]] = [free[j]!, free[i]!];
    }
    for (const shard of free) {
      if (slots.size >= target || noMore.aborted) break;
      const r = await keeper.acquire(shard, ownerId);
      if (r.held) {
        if (noMore.aborted) {
          await r.held.release();
          break;
        }
        skip.delete(shard);
        startSlot(shard, r.held);
      } else {
        const failures = (skip.get(shard)?.failures ?? 0) + 1;
        const step = Math.min(options.periodMs * 2 ** (failures - 1), options.leaseMs);
        const untilExpiry = Math.max(50, r.holder.expiresAtMs - now());
        skip.set(shard, { failures, until: now() + Math.min(step, untilExpiry) });
      }
    }
  }

  function tick(): Promise<void> {
    ticking ??= tickOnce()
      .catch((err: unknown) => log.warn({ err }, `${label} shard tick failed; retrying next period`))
      .finally(() => {
        ticking = undefined;
      });
    return ticking;
  }

  async function stopAcquiring(): Promise<void> {
    stopTicks.abort();
    await ticking;
    await runner;
  }

  return {
    start() {
      runner ??= (async () => {
        while (!noMore.aborted) {
          await tick();
          await pause(jitter(options.periodMs), noMore);
        }
      })();
    },
    stopAcquiring,
    async stop(graceMs) {
      await stopAcquiring();
      await Promise.all([...slots.values()].map((s) => releaseSlot(s, graceMs)));
      await membership.leave(ownerId).catch((err: unknown) => log.warn({ err }, `${label}: could not leave the membership row`));
    },
    pick() {
      const live = usable();
      if (live.length === 0) return undefined;
      next = (next + 1) % live.length;
      return live[next];
    },
    held: () => usable().map((s) => ({ shard: s.shard, fencingToken: s.lease.lease.fencingToken })),
    members: () => members.length,
    tick,
  };
}

/** How a shard's loop reports a failed step. */
export interface StepFailure {
  readonly err: unknown;
  /** Failures in a row, this one included. */
  readonly failures: number;
  /** The back-off before the next step. */
  readonly delayMs: number;
}

/**
 * The loop most shard work is: run `step` until the slot stops, waiting (jittered) the idle time
 * each step asks for, and backing off exponentially after failures (reset by a success). A failed
 * step after `stop` ends the loop quietly: it was abandoned, not broken.
 */
export async function repeatWhileHeld(
  slot: ShardSlot,
  step: () => Promise<{ idleMs: number }>,
  options: { readonly backoff: BackoffPolicy; readonly onFailure: (failure: StepFailure) => void },
): Promise<void> {
  let failures = 0;
  while (!slot.stop.aborted) {
    try {
      const { idleMs } = await step();
      failures = 0;
      if (idleMs > 0) await pause(jitter(idleMs), slot.stop);
    } catch (err) {
      if (slot.stop.aborted) break;
      failures++;
      const delayMs = backoffMs(failures, options.backoff);
      options.onFailure({ err, failures, delayMs });
      await pause(delayMs, slot.stop);
    }
  }
}
