/**
 * The sweeper: the safety net behind the shard loops.
 *
 * pay-connector keeps unsent events in memory and sweeps its database for events never emitted
 * after 1800 s. payfleet's shard loops already re-read every pending outbox row on every pass, so
 * an event is never forgotten by a loop that can see it. What a loop cannot see, the sweeper
 * handles — every `sweepIntervalMs`, in one process of the fleet at a time (the `ledger-sweeper`
 * lease), it scans the sparse `pending` index for events written more than `sweepAgeMs` ago:
 *
 *   - in a shard nobody can hold (pendingShard outside ledger-shard#000..N-1: a worker ran with a
 *     different PAYFLEET_LEDGER_SHARDS): every pending event of that shard is re-homed to its
 *     resource's proper shard (conditional on it still being there), whose holder emits it in order;
 *   - in a valid shard with no live holder (more shards than emitters × maxShardsPerProcess, or
 *     no emitter at all for a while): the sweeper takes that shard's lease like any emitter and
 *     runs ordinary passes on it (same ordering rules), then gives the lease back;
 *   - in a shard a live emitter holds: stuck behind a failure (doNotRetryUntil, counted as
 *     `backoff`) or behind a holder that is alive but not progressing (`held`). Nothing is sent
 *     around the holder (that would be two senders on one shard); it is reported in
 *     payfleet_ledger_sweeper_stale_events and the logs, beside the emission-lag alert.
 *
 * Events in back-off are never re-emitted before their doNotRetryUntil by anyone: their
 * resource's later events wait behind them (order beats latency for a ledger).
 */
import { isoMicros, ledgerShardOf } from '../../shared/core/outbox.js';
import type { LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { LeaseStore } from '../../shared/core/ports.js';
import type { Logger } from '../../shared/log/logger.js';
import { ledgerShardKey } from '../../shared/resources.js';
import type { BackgroundTask } from '../../shared/runtime/worker-kit.js';
import type { LedgerSettings } from './config.js';
import type { LedgerMetrics } from './metrics.js';
import type { LedgerOutbox, OutboxEvent } from './ports.js';
import type { ShardEmitter } from './shard-emitter.js';
import { jitter, pause, settlesWithin } from '../../shared/core/timers.js';
import { epochMs } from './util.js';

/** Lease that makes one sweeper run at a time fleet-wide. */
export const SWEEPER_LEASE_KEY = 'ledger-sweeper';

export interface SweepReport {
  /** False when another process holds the sweeper lease. */
  readonly ran: boolean;
  readonly stale: number;
  readonly rehomed: number;
  readonly sweptShards: readonly string[];
  readonly sent: number;
  readonly heldElsewhere: number;
  readonly inBackoff: number;
}

export interface SweeperOptions {
  readonly keeper: LeaseKeeper;
  readonly leases: Pick<LeaseStore, 'inspect'>;
  readonly outbox: LedgerOutbox;
  readonly emitter: ShardEmitter;
  readonly metrics: LedgerMetrics;
  readonly log: Logger;
  readonly ownerId: string;
  readonly ledgerShards: number;
  readonly settings: Pick<LedgerSettings, 'sweepAgeMs' | 'sweepIntervalMs' | 'sweepMaxEvents'>;
  readonly now?: () => number;
}

export interface Sweeper extends BackgroundTask {
  sweepOnce(): Promise<SweepReport>;
}

/** Passes the sweeper runs on one unheld shard per sweep, at most. */
const MAX_PASSES_PER_SHARD = 50;

export function createSweeper(options: SweeperOptions): Sweeper {
  const { keeper, leases, outbox, emitter, metrics, log, ownerId, settings } = options;
  const now = options.now ?? Date.now;
  const valid = new Set(Array.from({ length: options.ledgerShards }, (_, i) => ledgerShardKey(i)));
  const stopController = new AbortController();
  let running: Promise<SweepReport> | undefined;
  let loop: Promise<void> | undefined;

  async function rehomeShard(shard: string, stale: readonly OutboxEvent[]): Promise<number> {
    // Every pending event of the orphan shard, not only the stale ones: they are all unreachable.
    const rest = await outbox.pendingInShard(shard, settings.sweepMaxEvents);
    const all = new Map([...stale, ...rest.events].map((e) => [e.eventId, e]));
    let moved = 0;
    for (const e of all.values()) {
      const to = ledgerShardOf(e.resourceId, options.ledgerShards);
      if (await outbox.rehome(e, shard, to)) moved++;
    }
    metrics.sweeperActions.inc({ action: 'rehomed' }, moved);
    log.warn(
      { shard, moved },
      'ledger sweeper: re-homed events from a shard no emitter serves (check PAYFLEET_LEDGER_SHARDS on every worker)',
    );
    return moved;
  }

  async function sweepShard(shard: string): Promise<number | undefined> {
    const r = await keeper.acquire(shard, ownerId);
    if (!r.held) return undefined;
    const held = r.held;
    let sent = 0;
    try {
      const stop = AbortSignal.any([held.signal, stopController.signal]);
      for (let i = 0; i < MAX_PASSES_PER_SHARD && !stop.aborted; i++) {
        const p = await emitter.pass({
          shard,
          stop,
          abort: held.signal,
          via: 'sweeper',
          lease: { owner: ownerId, fencingToken: held.lease.fencingToken },
        });
        sent += p.sent;
        if (!p.more) break;
      }
    } finally {
      await held.release();
    }
    metrics.sweeperActions.inc({ action: 'shard_swept' });
    log.warn({ shard, sent }, 'ledger sweeper: emitted stale events of a shard no emitter held');
    return sent;
  }

  async function sweep(): Promise<SweepReport> {
    const lease = await keeper.acquire(SWEEPER_LEASE_KEY, ownerId);
    if (!lease.held) return { ran: false, stale: 0, rehomed: 0, sweptShards: [], sent: 0, heldElsewhere: 0, inBackoff: 0 };
    try {
      const t = now();
      const cutoff = isoMicros((t - settings.sweepAgeMs) * 1000);
      const stale = await outbox.stalePending(cutoff, settings.sweepMaxEvents);
      const byShard = new Map<string, OutboxEvent[]>();
      for (const e of stale) {
        const shard = e.pendingShard ?? '';
        byShard.set(shard, [...(byShard.get(shard) ?? []), e]);
      }
      let rehomed = 0;
      let sent = 0;
      let heldElsewhere = 0;
      let inBackoff = 0;
      const sweptShards: string[] = [];
      for (const [shard, events] of byShard) {
        if (lease.held.signal.aborted || stopController.signal.aborted) break;
        if (!valid.has(shard)) {
          rehomed += await rehomeShard(shard, events);
          continue;
        }
        const holder = await leases.inspect(shard);
        const backoff = events.filter((e) => epochMs(e.doNotRetryUntil) > t).length;
        inBackoff += backoff;
        if (holder?.owner !== undefined && holder.expiresAtMs > now()) {
          heldElsewhere += events.length - backoff;
          if (events.length > backoff) {
            log.warn(
              { shard, holder: holder.owner, stale: events.length - backoff },
              'ledger sweeper: stale events in a held shard (its emitter is not progressing)',
            );
          }
          continue;
        }
        const n = await sweepShard(shard);
        if (n !== undefined) {
          sweptShards.push(shard);
          sent += n;
        }
      }
      metrics.staleEvents.set({ state: 'backoff' }, inBackoff);
      metrics.staleEvents.set({ state: 'held' }, heldElsewhere);
      metrics.staleEvents.set({ state: 'total' }, stale.length);
      if (stale.length > 0)
        log.info({ stale: stale.length, rehomed, sweptShards, sent, heldElsewhere, inBackoff }, 'ledger sweep done');
      return { ran: true, stale: stale.length, rehomed, sweptShards, sent, heldElsewhere, inBackoff };
    } finally {
      await lease.held.release();
    }
  }

  function sweepOnce(): Promise<SweepReport> {
    running ??= sweep().finally(() => {
      running = undefined;
    });
    return running;
  }

  return {
    name: 'ledger-sweeper',
    sweepOnce,
    start() {
      loop ??= (async () => {
        while (!stopController.signal.aborted) {
          await pause(jitter(settings.sweepIntervalMs), stopController.signal);
          if (stopController.signal.aborted) break;
          try {
            await sweepOnce();
          } catch (err) {
            log.warn({ err }, 'ledger sweep failed; next one in a period');
          }
        }
      })();
    },
    async stop(graceMs) {
      stopController.abort();
      await settlesWithin(Promise.allSettled([loop, running]), graceMs);
    },
  };
}
