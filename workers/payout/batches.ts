/**
 * Chunked, fenced commits of batches and their payouts. DynamoDB allows 100 items per transaction;
 * a batch of 100 payouts with one event each is 200 items plus the fence, so a batch's state change
 * cannot be one transaction. The batch row is the source of truth and every step is idempotent:
 *
 *   pin (ASSIGNING -> PENDING)      each chunk: fence + batch row (version-checked) + <= 98 payouts
 *                                   RECEIVED -> INITIATION_PENDING (batchId set). Only the LAST
 *                                   chunk makes the batch PENDING, and only a PENDING batch is ever
 *                                   sent, so a crash mid-pinning can never send a partial batch: the
 *                                   next holder finds a pinned payout (initiable index), loads its
 *                                   ASSIGNING batch and finishes (or trims) the pinning.
 *   initiated / rejected            1) the batch row alone (fence + row): from here on the batch is
 *                                   never sent again; 2) payouts in chunks of <= 49 (payout + its
 *                                   event). A crash between chunks leaves INITIATION_PENDING payouts
 *                                   pointing at an INITIATED/REJECTED batch: the next cycle of the
 *                                   shard's holder sees them and finishes the marking (no send).
 *   bank report (responses.ts)      the batch row (PENDING/UNCERTAIN -> INITIATED) first, then the
 *                                   payouts in chunks (<= 3 items each); the LHV message is deleted
 *                                   only after the last chunk, so a crash re-applies the report and
 *                                   the already final payouts are skipped.
 *
 * Every payout write is conditioned on the version read (consistent read just before), every
 * transaction on the lease it is made under; a ConflictError means someone else moved a payout
 * (the response poller and a shard's initiator may meet on one): re-read and redo what is left.
 */
import { ConflictError } from '../../shared/core/errors.js';
import type { EntityChange, Lease, OutcomeStore } from '../../shared/core/ports.js';
import type { Logger } from '../../shared/log/logger.js';
import type { PayoutMetrics } from './metrics.js';
import { advance, batchChange, chunkChanges, payoutChange, type Batch, type Payout, type PayoutStatus } from './model.js';
import type { PayoutRepository } from './repo.js';

/** The lease a series of commits is made under (its current view: renewals move the expiry). */
export interface Fence {
  lease(): Lease;
}

/** What to do with one payout: the path to walk from its status, the patch, the event details. */
export interface PayoutMove {
  readonly path: readonly PayoutStatus[];
  readonly patch?: Partial<Pick<Payout, 'batchId' | 'messageRequestId' | 'bankStatus' | 'failure'>>;
  readonly details: (status: PayoutStatus) => Record<string, unknown>;
}

export interface BatchStore {
  /** Commit `changes` in one fenced transaction; counts the payout statuses reached. */
  commit(fence: Fence, changes: readonly EntityChange[]): Promise<readonly number[]>;
  /** Write the batch row alone (version-checked). Returns it with its new version. */
  saveBatch(fence: Fence, before: Batch | undefined, after: Batch): Promise<Batch>;
  /**
   * Pin `toPin` (RECEIVED) to `batch` in chunks; the last chunk makes it PENDING with
   * `batch.paymentIds`. `before` is the stored row (undefined for a new batch).
   */
  pin(fence: Fence, before: Batch | undefined, batch: Batch, toPin: readonly Payout[]): Promise<Batch>;
  /** Apply `decide` to the batch's payouts, chunk by chunk, re-reading after a conflict. Returns payouts moved. */
  movePayouts(
    fence: Fence,
    shard: string,
    paymentIds: readonly string[],
    decide: (p: Payout) => PayoutMove | undefined,
  ): Promise<number>;
}

const PIN_CHUNK = 98; // + fence + batch row = 100 items
const MAX_ROUNDS = 6;

export function createBatchStore(deps: {
  outcomes: OutcomeStore;
  repo: PayoutRepository;
  metrics: PayoutMetrics;
  log: Logger;
}): BatchStore {
  const { outcomes, repo, metrics } = deps;

  const store: BatchStore = {
    async commit(fence, changes) {
      const r = await outcomes.commit({ lease: fence.lease(), changes });
      for (const c of changes) {
        const status = c.table === 'payouts' ? c.set.status : undefined;
        // Every payout change this worker makes is a status change.
        if (typeof status === 'string') metrics.payouts.inc({ status });
      }
      return r.versions;
    },

    async saveBatch(fence, before, after) {
      const [version] = await store.commit(fence, [batchChange(before, after)]);
      return { ...after, version: version ?? after.version };
    },

    async pin(fence, before, batch, toPin) {
      const at = new Date().toISOString();
      const groups: Payout[][] = [];
      for (let i = 0; i < toPin.length; i += PIN_CHUNK) groups.push(toPin.slice(i, i + PIN_CHUNK));
      if (groups.length === 0) groups.push([]);
      let stored = before;
      for (const [i, group] of groups.entries()) {
        const last = i === groups.length - 1;
        const next: Batch = { ...batch, status: last ? 'PENDING' : 'ASSIGNING', updatedAt: at, version: stored?.version ?? 0 };
        const changes: EntityChange[] = [batchChange(stored, next)];
        for (const p of group) {
          const { after } = advance(p, ['INITIATION_PENDING'], at, () => ({}), { batchId: batch.batchId });
          changes.push(payoutChange(p, after, []));
        }
        const [version] = await store.commit(fence, changes);
        stored = { ...next, version: version ?? next.version + 1 };
      }
      return stored!;
    },

    async movePayouts(fence, shard, paymentIds, decide) {
      let moved = 0;
      for (let round = 1; ; round++) {
        const rows = await repo.getPayouts(shard, paymentIds);
        const at = new Date().toISOString();
        const changes: EntityChange[] = [];
        for (const id of paymentIds) {
          const p = rows.get(id);
          const move = p && decide(p);
          if (!p || !move) continue;
          const { after, events } = advance(p, move.path, at, move.details, move.patch ?? {});
          changes.push(payoutChange(p, after, events));
        }
        if (changes.length === 0) return moved;
        try {
          for (const chunk of chunkChanges(changes, 1)) {
            await store.commit(fence, chunk);
            moved += chunk.length;
          }
          return moved;
        } catch (err) {
          // Another writer moved one of them (the response poller and the shard's initiator meet
          // on a batch): what committed stays committed; re-read and do what is still to do.
          if (!(err instanceof ConflictError) || round >= MAX_ROUNDS) throw err;
          deps.log.debug({ shard, round, part: err.part }, 'payout moved concurrently; re-reading');
        }
      }
    },
  };
  return store;
}
