/**
 * Which payout shards this process holds, and one initiation loop per held shard (the reference's
 * "Can lock shard / Row cannot be locked" loop, plus fair shares across workers). Modelled on the
 * ledger's shard manager.
 *
 * Every `backoffMs` (jittered), once the worker is ready:
 *   1. heartbeat the membership row; learn how many payout workers are alive;
 *   2. target = ceil(shards / live workers), capped by maxShardsPerProcess when set;
 *   3. above target: stop the newest shards' loops (each finishes its step in flight) and release
 *      their leases, so a newcomer takes them at its next tick;
 *   4. below target: try free shards in random order, one conditional write each (the keeper's
 *      acquire). A shard found held is tried again after one period, doubling up to the lease
 *      length, and never later than its holder's expiry; a membership change resets that.
 *
 * A shard's lease signal fires the moment the keeper gives the lease up (renew refused, or about to
 * expire unrenewed): its loop stops starting steps and the send in flight is aborted (ambiguous:
 * the batch stays PENDING with its key, the next holder resends it). Commits are fenced anyway.
 *
 *   worker A  holds 0..7 ─ tick: 2 members, target 4 ─ releases 4..7 ───────────── holds 0..3
 *   worker B  start ─ ready ─ tick: all held (wait) ─ tick: acquires 4..7 ─────────── holds 4..7
 *   A SIGKILLed: its leases run out ─ B's tick after their expiry acquires 0..3 ─ resumes stored keys
 */
import type { HeldLease, LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { Logger } from '../../shared/log/logger.js';
import { payoutShardKey } from '../../shared/resources.js';
import type { ShardSlot } from './initiator.js';
import { jitter, pause, type Membership } from './leases.js';
import type { PayoutMetrics } from './metrics.js';

export interface ShardManagerOptions {
  readonly keeper: LeaseKeeper;
  readonly membership: Membership;
  readonly ownerId: string;
  readonly shards: number;
  readonly backoffMs: number;
  readonly leaseMs: number;
  readonly maxShardsPerProcess: number;
  readonly metrics: PayoutMetrics;
  readonly log: Logger;
  /** The work of one held shard; resolves when the slot stops. */
  readonly runShard: (slot: ShardSlot) => Promise<void>;
  /** Called after the set of held shards changed. */
  readonly onChange?: () => void;
}

export interface ShardManager {
  /** Start ticking (call once ready). */
  start(): void;
  /** Stop acquiring (shutdown, first stage). */
  stopTicking(): Promise<void>;
  /** Stop every shard loop (soft, then hard after graceMs), release every lease, leave the membership. */
  stop(graceMs: number): Promise<void>;
  /** A usable held shard for ingestion (round robin), or undefined. */
  pick(): ShardSlot | undefined;
  held(): { shard: string; fencingToken: number }[];
  tick(): Promise<void>;
}

interface Slot extends ShardSlot {
  readonly lease: HeldLease;
  readonly stopping: AbortController;
  readonly hard: AbortController;
  loop: Promise<void>;
}

export function createShardManager(options: ShardManagerOptions): ShardManager {
  const { keeper, membership, ownerId, metrics, log } = options;
  const all = Array.from({ length: options.shards }, (_, i) => payoutShardKey(i));
  const slots = new Map<string, Slot>();
  const skip = new Map<string, { until: number; failures: number }>();
  const stopTicks = new AbortController();
  let members: readonly string[] = [ownerId];
  let ticking: Promise<void> | undefined;
  let runner: Promise<void> | undefined;
  let next = 0;

  function changed(): void {
    metrics.shardsHeld.set(slots.size);
    options.onChange?.();
  }

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
    log.info({ shard, fencingToken: lease.lease.fencingToken }, 'payout shard acquired');
    lease.signal.addEventListener(
      'abort',
      () => {
        if (!stopping.signal.aborted)
          log.warn({ shard, fencingToken: lease.lease.fencingToken }, 'payout shard lease lost; its work stopped');
        changed();
      },
      { once: true },
    );
    slot.loop = options
      .runShard(slot)
      .catch((err: unknown) => log.error({ shard, err }, 'payout shard loop crashed'))
      .finally(() => {
        if (slots.get(shard) === slot) slots.delete(shard);
        changed();
      });
    changed();
  }

  async function releaseSlot(slot: Slot, graceMs: number): Promise<void> {
    slot.stopping.abort();
    options.onChange?.();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      slot.loop.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, graceMs));
      }),
    ]);
    clearTimeout(timer);
    if (!finished) {
      log.warn(
        { shard: slot.shard, graceMs },
        'payout shard step still in flight after the grace period; aborting it (the batch keeps its key)',
      );
      slot.hard.abort();
      await slot.loop;
    }
    // Only now: a shard released with its loop still running could be sent by two workers.
    await slot.lease.release();
    log.info({ shard: slot.shard, fencingToken: slot.lease.lease.fencingToken }, 'payout shard released');
  }

  async function tickOnce(): Promise<void> {
    try {
      const live = await membership.heartbeat(ownerId, 3 * options.backoffMs + options.leaseMs);
      const now = live.includes(ownerId) ? live : [...live, ownerId].sort();
      if (now.join('|') !== members.join('|')) {
        log.info({ members: now.length }, 'payout workers changed');
        skip.clear();
      }
      members = now;
    } catch (err) {
      log.warn({ err }, 'payout membership heartbeat failed; keeping the last known members');
    }
    const fair = Math.ceil(all.length / Math.max(1, members.length));
    const target = options.maxShardsPerProcess > 0 ? Math.min(options.maxShardsPerProcess, fair) : fair;
    const live = [...slots.values()].filter((s) => !s.stop.aborted);
    if (live.length > target) {
      const excess = live.slice(target);
      log.info({ target, releasing: excess.map((s) => s.shard) }, 'payout rebalancing: giving shards back');
      await Promise.all(excess.map((s) => releaseSlot(s, options.backoffMs + 10_000)));
    }
    const t = Date.now();
    const free = all.filter((s) => !slots.has(s) && (skip.get(s)?.until ?? 0) <= t);
    for (let i = free.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [free[i], free[j]] = [free[j]!, free[i]!];
    }
    for (const shard of free) {
      if (slots.size >= target || stopTicks.signal.aborted) break;
      const r = await keeper.acquire(shard, ownerId);
      if (r.held) {
        if (stopTicks.signal.aborted) {
          await r.held.release();
          break;
        }
        skip.delete(shard);
        startSlot(shard, r.held);
      } else {
        // Held: try again after one period, doubling up to the lease length, but never later than
        // the holder's expiry (a dead holder's shard is taken as soon as it lapses; a rebalanced
        // one within a few periods).
        const failures = (skip.get(shard)?.failures ?? 0) + 1;
        const step = Math.min(options.backoffMs * 2 ** (failures - 1), options.leaseMs);
        const untilExpiry = Math.max(50, r.holder.expiresAtMs - Date.now());
        skip.set(shard, { failures, until: Date.now() + Math.min(step, untilExpiry) });
      }
    }
  }

  function tick(): Promise<void> {
    ticking ??= tickOnce()
      .catch((err: unknown) => log.warn({ err }, 'payout shard tick failed; retrying next period'))
      .finally(() => {
        ticking = undefined;
      });
    return ticking;
  }

  return {
    start() {
      runner ??= (async () => {
        while (!stopTicks.signal.aborted) {
          await tick();
          await pause(jitter(options.backoffMs), stopTicks.signal);
        }
      })();
    },
    async stopTicking() {
      stopTicks.abort();
      await ticking;
      await runner;
    },
    async stop(graceMs) {
      stopTicks.abort();
      await ticking;
      await runner;
      await Promise.all([...slots.values()].map((s) => releaseSlot(s, graceMs)));
      await membership.leave(ownerId).catch((err: unknown) => log.warn({ err }, 'payout: could not leave the membership row'));
    },
    pick() {
      const usable = [...slots.values()].filter((s) => !s.stop.aborted);
      if (usable.length === 0) return undefined;
      next = (next + 1) % usable.length;
      return usable[next];
    },
    held: () =>
      [...slots.values()]
        .filter((s) => !s.stop.aborted)
        .map((s) => ({ shard: s.shard, fencingToken: s.lease.lease.fencingToken })),
    tick,
  };
}
