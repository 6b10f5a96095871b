/**
 * Which ledger shards this process works on, and one send loop per held shard.
 *
 * Every `rebalanceMs` (jittered) the manager:
 *   1. heartbeats its membership entry and learns the live emitters (one UpdateItem),
 *   2. computes its share: target = ceil(shards / live emitters), capped by maxShardsPerProcess,
 *   3. above target: stops the loops of its newest shards (each finishes the call in flight and
 *      marks it) and releases their leases, so a newcomer can take them at its next tick;
 *   4. below target: tries free shards in random order (conditional-write leases via the keeper).
 *      A shard found held is not tried again before min(its holder's expiry, an exponential
 *      back-off from one period up to the lease length): no hammering a busy fleet's rows, and a
 *      shard given back early is seen within a few periods. Membership changes reset the back-off.
 *
 *   emitter A  ── holds 0..7 ──────────── tick: 2 members -> target 4 -> release 4..7 ─── holds 0..3
 *   emitter B        start ─ tick: target 4, all held (back off) ─ tick: acquires 4..7 ─ holds 4..7
 *
 * A shard's loop runs passes (shard-emitter.ts) while its lease holds. The lease's signal stops
 * it the instant the keeper gives the lease up (renew refused, or about to expire unrenewed): no
 * new send starts, and a send in flight is aborted (ambiguous: its events stay pending and the
 * next holder resends them — SQS and the consumer de-duplicate by event_id). A shard is never sent
 * by two processes at once as long as leases hold; docs/design.md shows why even a paused holder
 * whose lease lapsed mid-send cannot reorder a resource.
 *
 * stop(graceMs): no more ticks; every loop stops starting sends; calls in flight finish and are
 * marked within graceMs (else aborted: their events stay pending for the next holder); every
 * shard lease is released and the membership entry removed, so the others take over at once.
 * Nothing is held in memory only: the outbox rows are the queue.
 */
import { backoffMs } from '../../shared/core/backoff.js';
import type { HeldLease, LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { Logger } from '../../shared/log/logger.js';
import { ledgerShardKey } from '../../shared/resources.js';
import type { BackgroundTask } from '../../shared/runtime/worker-kit.js';
import type { LedgerSettings } from './config.js';
import type { LedgerMetrics } from './metrics.js';
import type { Membership } from './ports.js';
import type { ShardEmitter } from './shard-emitter.js';
import { jitter, pause } from './util.js';

export interface ShardManagerOptions {
  readonly keeper: LeaseKeeper;
  readonly membership: Membership;
  readonly emitter: ShardEmitter;
  readonly metrics: LedgerMetrics;
  readonly log: Logger;
  readonly ownerId: string;
  readonly ledgerShards: number;
  readonly leaseMs: number;
  readonly settings: Pick<LedgerSettings, 'maxShardsPerProcess' | 'pollMs' | 'rebalanceMs' | 'retryBaseMs'>;
  readonly now?: () => number;
}

export interface ShardManager extends BackgroundTask {
  /** Shards held now, with their fencing tokens. */
  held(): { shard: string; fencingToken: number }[];
  /** Live emitters at the last heartbeat. */
  members(): number;
  /** Run one rebalance now (tests). */
  tick(): Promise<void>;
}

interface Slot {
  readonly shard: string;
  readonly lease: HeldLease;
  /** Stop starting sends (rebalance, shutdown). */
  readonly stopping: AbortController;
  /** Abort the send in flight (grace over). */
  readonly hard: AbortController;
  loop: Promise<void>;
}

export function createShardManager(options: ShardManagerOptions): ShardManager {
  const { keeper, membership, emitter, metrics, log, ownerId, settings } = options;
  const now = options.now ?? Date.now;
  const shards = Array.from({ length: options.ledgerShards }, (_, i) => ledgerShardKey(i));
  const slots = new Map<string, Slot>();
  const skip = new Map<string, { until: number; failures: number }>();
  const stopController = new AbortController();
  let members: readonly string[] = [ownerId];
  let ticking: Promise<void> | undefined;
  let runner: Promise<void> | undefined;
  let warnedUncovered = false;

  async function runShard(slot: Slot): Promise<void> {
    const { shard, lease } = slot;
    const stop = AbortSignal.any([lease.signal, slot.stopping.signal]);
    const abort = AbortSignal.any([lease.signal, slot.hard.signal]);
    let errors = 0;
    while (!stop.aborted) {
      try {
        const r = await emitter.pass({
          shard,
          stop,
          abort,
          via: 'main',
          lease: { owner: ownerId, fencingToken: lease.lease.fencingToken },
        });
        errors = 0;
        if (!r.more) await pause(jitter(settings.pollMs), stop);
      } catch (err) {
        if (stop.aborted) break;
        errors++;
        const delayMs = backoffMs(errors, { baseMs: Math.max(100, settings.retryBaseMs), maxMs: 30_000 });
        log.warn({ shard, err, delayMs }, 'ledger shard pass failed; backing off (events stay pending)');
        await pause(delayMs, stop);
      }
    }
    if (lease.signal.aborted && !slot.stopping.signal.aborted) {
      log.warn({ shard, fencingToken: lease.lease.fencingToken }, 'ledger shard lease lost; stopped sending');
    }
  }

  function startSlot(shard: string, lease: HeldLease): void {
    const slot: Slot = { shard, lease, stopping: new AbortController(), hard: new AbortController(), loop: Promise.resolve() };
    slots.set(shard, slot);
    metrics.shardsHeld.set(slots.size);
    log.info({ shard, fencingToken: lease.lease.fencingToken }, 'ledger shard acquired');
    slot.loop = runShard(slot).finally(() => {
      if (slots.get(shard) === slot) slots.delete(shard);
      metrics.shardsHeld.set(slots.size);
      metrics.lag.remove({ shard });
    });
  }

  async function releaseSlot(slot: Slot, graceMs: number): Promise<void> {
    slot.stopping.abort();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      slot.loop.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!finished) {
      log.warn(
        { shard: slot.shard, graceMs },
        'ledger shard send still in flight after the grace period; aborting it (its events stay pending)',
      );
      slot.hard.abort();
      await slot.loop;
    }
    await slot.lease.release();
    log.info({ shard: slot.shard, fencingToken: slot.lease.lease.fencingToken }, 'ledger shard released');
  }

  async function tickOnce(): Promise<void> {
    try {
      const live = await membership.heartbeat(ownerId, 3 * settings.rebalanceMs);
      const next = live.includes(ownerId) ? live : [...live, ownerId].sort();
      if (next.join('|') !== members.join('|')) {
        log.info({ members: next.length }, 'ledger emitters changed');
        skip.clear();
      }
      members = next;
    } catch (err) {
      log.warn({ err }, 'ledger membership heartbeat failed; keeping the last known members');
    }
    const fair = Math.ceil(shards.length / Math.max(1, members.length));
    const target = settings.maxShardsPerProcess > 0 ? Math.min(settings.maxShardsPerProcess, fair) : fair;
    if (settings.maxShardsPerProcess > 0 && members.length * settings.maxShardsPerProcess < shards.length && !warnedUncovered) {
      warnedUncovered = true;
      log.warn(
        { members: members.length, maxShardsPerProcess: settings.maxShardsPerProcess, shards: shards.length },
        'ledger emitters cannot hold every shard; the sweeper emits the rest after the sweep age',
      );
    }

    if (slots.size > target) {
      // Newest first: the oldest holdings stay put, so a rebalance moves as little as possible.
      const excess = [...slots.values()].slice(target);
      log.info({ target, releasing: excess.map((s) => s.shard) }, 'ledger rebalancing: giving shards back');
      await Promise.all(excess.map((s) => releaseSlot(s, settings.pollMs + 5000)));
    }
    if (slots.size >= target || stopController.signal.aborted) return;

    const t = now();
    const free = shards.filter((s) => !slots.has(s) && (skip.get(s)?.until ?? 0) <= t);
    for (let i = free.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [free[i], free[j]] = [free[j]!, free[i]!];
    }
    for (const shard of free) {
      if (slots.size >= target || stopController.signal.aborted) break;
      const r = await keeper.acquire(shard, ownerId);
      if (r.held) {
        if (stopController.signal.aborted) {
          await r.held.release();
          break;
        }
        skip.delete(shard);
        startSlot(shard, r.held);
      } else {
        const failures = (skip.get(shard)?.failures ?? 0) + 1;
        const step = Math.min(settings.rebalanceMs * 2 ** (failures - 1), options.leaseMs);
        skip.set(shard, {
          failures,
          until: now() + Math.min(step, Math.max(settings.rebalanceMs, r.holder.expiresAtMs - now())),
        });
      }
    }
  }

  function tick(): Promise<void> {
    ticking ??= tickOnce()
      .catch((err: unknown) => log.warn({ err }, 'ledger rebalance failed; retrying next period'))
      .finally(() => {
        ticking = undefined;
      });
    return ticking;
  }

  return {
    name: 'ledger-shards',
    start() {
      runner ??= (async () => {
        while (!stopController.signal.aborted) {
          await tick();
          await pause(jitter(settings.rebalanceMs), stopController.signal);
        }
      })();
    },
    async stop(graceMs) {
      stopController.abort();
      await ticking;
      await runner;
      await Promise.all([...slots.values()].map((s) => releaseSlot(s, graceMs)));
      await membership.leave(ownerId).catch((err: unknown) => log.warn({ err }, 'ledger: could not leave the membership row'));
    },
    held: () => [...slots.values()].map((s) => ({ shard: s.shard, fencingToken: s.lease.lease.fencingToken })),
    members: () => members.length,
    tick,
  };
}
