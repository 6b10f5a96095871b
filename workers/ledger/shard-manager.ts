/**
 * Which ledger shards this process works on: the engine's shard pool (shared/core/shard-pool.ts:
 * membership, fair shares, back-off, release on shutdown) with one send loop per held shard.
 *
 * A shard's loop runs passes (shard-emitter.ts) while its lease holds. The lease's signal stops it
 * the instant the keeper gives the lease up (renew refused, or about to expire unrenewed): no new
 * send starts, and a send in flight is aborted (ambiguous: its events stay pending and the next
 * holder resends them — SQS and the consumer de-duplicate by event_id). A shard is never sent by
 * two processes at once as long as leases hold; docs/design.md shows why even a paused holder whose
 * lease lapsed mid-send cannot reorder a resource.
 *
 * stop(graceMs): no more rebalancing; every loop stops starting sends; calls in flight finish and
 * are marked within graceMs (else aborted: their events stay pending for the next holder); every
 * shard lease is released and the membership entry removed, so the others take over at once.
 * Nothing is held in memory only: the outbox rows are the queue.
 */
import type { Clock } from '../../shared/core/clock.js';
import type { LeaseKeeper } from '../../shared/core/lease-keeper.js';
import { createShardPool, repeatWhileHeld, type ShardSlot } from '../../shared/core/shard-pool.js';
import type { Logger } from '../../shared/log/logger.js';
import { ledgerShardKey } from '../../shared/resources.js';
import type { BackgroundTask } from '../../shared/runtime/worker-kit.js';
import type { LedgerSettings } from './config.js';
import type { LedgerMetrics } from './metrics.js';
import type { Membership } from './ports.js';
import type { ShardEmitter } from './shard-emitter.js';

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
  readonly now?: Clock;
}

export interface ShardManager extends BackgroundTask {
  /** Shards held now, with their fencing tokens. */
  held(): { shard: string; fencingToken: number }[];
  /** Live emitters at the last heartbeat. */
  members(): number;
  /** Run one rebalance now (tests). */
  tick(): Promise<void>;
}

export function createShardManager(options: ShardManagerOptions): ShardManager {
  const { emitter, metrics, log, ownerId, settings } = options;

  /** Passes over one held shard until its slot stops; a failed pass backs off (events stay pending). */
  async function runShard(slot: ShardSlot): Promise<void> {
    const { shard } = slot;
    try {
      await repeatWhileHeld(
        slot,
        async () => {
          const { fencingToken } = slot.fence.lease();
          const r = await emitter.pass({
            shard,
            stop: slot.stop,
            abort: slot.abort,
            via: 'main',
            lease: { owner: ownerId, fencingToken },
          });
          return { idleMs: r.more ? 0 : settings.pollMs };
        },
        {
          backoff: { baseMs: Math.max(100, settings.retryBaseMs), maxMs: 30_000 },
          onFailure: ({ err, delayMs }) =>
            log.warn({ shard, err, delayMs }, 'ledger shard pass failed; backing off (events stay pending)'),
        },
      );
    } finally {
      metrics.lag.remove({ shard });
    }
  }

  const pool = createShardPool({
    label: 'ledger',
    keeper: options.keeper,
    membership: options.membership,
    ownerId,
    shards: Array.from({ length: options.ledgerShards }, (_, i) => ledgerShardKey(i)),
    periodMs: settings.rebalanceMs,
    leaseMs: options.leaseMs,
    maxShardsPerProcess: settings.maxShardsPerProcess,
    rebalanceGraceMs: settings.pollMs + 5000,
    uncovered: 'the sweeper emits the rest after the sweep age',
    runShard,
    onChange: (held) => metrics.shardsHeld.set(held),
    log,
    ...(options.now ? { now: options.now } : {}),
  });

  return {
    name: 'ledger-shards',
    start: () => pool.start(),
    stop: (graceMs) => pool.stop(graceMs),
    held: () => pool.held(),
    members: () => pool.members(),
    tick: () => pool.tick(),
  };
}
