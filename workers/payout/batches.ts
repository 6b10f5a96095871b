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
 *                                   ASSIGNING batch and finishes (or trims) the pinning. The sealing
 *                                   chunk also counts the first send (`sendAttempts` 1): the send
 *                                   follows it at once, so there is no separate "attempt" write.
 *   initiated / rejected (settle)   chunks of <= 49 payouts (payout + its event); the FIRST chunk
 *                                   also carries the batch row -> INITIATED/REJECTED, so from that
 *                                   commit on the batch is never sent again. A crash between chunks
 *                                   leaves INITIATION_PENDING payouts pointing at an INITIATED/REJECTED
 *                                   batch: the next cycle of the shard's holder finishes the marking.
 *   bank report (responses.ts)      the batch row (PENDING/UNCERTAIN -> INITIATED) first, then the
 *                                   payouts in chunks (<= 3 items each); the LHV message is deleted
 *                                   only after the last chunk, so a crash re-applies the report and
 *                                   the already final payouts are skipped.
 *
 * Every payout write is conditioned on the version it was decided on (the caller's rows, else a
 * consistent read), every transaction on the lease it is made under; a ConflictError means someone
 * else moved a payout or the batch (the response poller and a shard's initiator may meet on one):
 * re-read and redo what is left.
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
   * `batch.paymentIds` and, with `beginSend`, counts the send about to start (sendAttempts + 1).
   * `before` is the stored row (undefined for a new batch). Returns the stored batch and the pinned
   * payouts as written (so the 202's commit need not read them again).
   */
  pin(
    fence: Fence,
    before: Batch | undefined,
    batch: Batch,
    toPin: readonly Payout[],
    options?: { beginSend?: boolean },
  ): Promise<{ batch: Batch; pinned: ReadonlyMap<string, Payout> }>;
  /** Apply `decide` to the payouts, chunk by chunk, re-reading after a conflict. Returns payouts moved. */
  movePayouts(fence: Fence, paymentIds: readonly string[], decide: (p: Payout) => PayoutMove | undefined): Promise<number>;
  /**
   * The batch row `before` -> `next(before)` in the same transaction as the first chunk of its
   * payouts' moves (`decide`, given the batch as stored). `known` are rows just written by this
   * process (skips the read; a stale one fails its condition and is re-read). When the batch row
   * changed meanwhile, `next` is asked again with the stored row (undefined: leave the row as is).
   */
  settle(
    fence: Fence,
    before: Batch,
    next: (stored: Batch) => Batch | undefined,
    decide: (p: Payout, batch: Batch) => PayoutMove | undefined,
    known?: ReadonlyMap<string, Payout>,
  ): Promise<Batch>;
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

    async pin(fence, before, batch, toPin, options = {}) {
      const at = new Date().toISOString();
      const groups: Payout[][] = [];
      for (let i = 0; i < toPin.length; i += PIN_CHUNK) groups.push(toPin.slice(i, i + PIN_CHUNK));
      if (groups.length === 0) groups.push([]);
      let stored = before;
      const pinned = new Map<string, Payout>();
      for (const [i, group] of groups.entries()) {
        const last = i === groups.length - 1;
        const next: Batch = {
          ...batch,
          status: last ? 'PENDING' : 'ASSIGNING',
          ...(last && options.beginSend ? { sendAttempts: batch.sendAttempts + 1, lastSentAt: at } : {}),
          updatedAt: at,
          version: stored?.version ?? 0,
        };
        const changes: EntityChange[] = [batchChange(stored, next)];
        const afters: Payout[] = [];
        for (const p of group) {
          const { after } = advance(p, ['INITIATION_PENDING'], at, () => ({}), { batchId: batch.batchId });
          changes.push(payoutChange(p, after, []));
          afters.push(after);
        }
        const versions = await store.commit(fence, changes);
        stored = { ...next, version: versions[0] ?? next.version + 1 };
        for (const [k, a] of afters.entries()) pinned.set(a.paymentId, { ...a, version: versions[k + 1] ?? a.version + 1 });
      }
      return { batch: stored!, pinned };
    },

    movePayouts(fence, paymentIds, decide) {
      return move(fence, paymentIds, decide).then((r) => r.moved);
    },

    async settle(fence, before, next, decide, known) {
      let batch = before;
      let after = next(before);
      await move(fence, before.paymentIds, (p) => decide(p, after ?? batch), known, {
        change: () => (after ? batchChange(batch, after) : undefined),
        committed: (version) => {
          if (after) batch = { ...after, version };
          after = undefined;
        },
        async refresh() {
          const fresh = await repo.getBatch(before.batchId);
          if (!fresh) return false;
          batch = fresh;
          after = next(fresh);
          return true;
        },
      });
      return batch;
    },
  };

  /**
   * The engine of movePayouts and settle: decide, chunk (fence + batch row + <= 49 payouts with an
   * event each), commit; after a conflict re-read what moved (or the batch row) and redo the rest.
   */
  async function move(
    fence: Fence,
    paymentIds: readonly string[],
    decide: (p: Payout) => PayoutMove | undefined,
    known?: ReadonlyMap<string, Payout>,
    batchRow?: {
      change: () => EntityChange | undefined;
      committed: (version: number) => void;
      refresh: () => Promise<boolean>;
    },
  ): Promise<{ moved: number }> {
    let moved = 0;
    for (let round = 1; ; round++) {
      const rows = round === 1 && known ? known : await repo.getPayouts(paymentIds);
      const at = new Date().toISOString();
      const changes: EntityChange[] = [];
      for (const id of paymentIds) {
        const p = rows.get(id);
        const m = p && decide(p);
        if (!p || !m) continue;
        const { after, events } = advance(p, m.path, at, m.details, m.patch ?? {});
        changes.push(payoutChange(p, after, events));
      }
      const head = batchRow?.change();
      if (changes.length === 0 && !head) return { moved };
      const chunks = chunkChanges(changes, 2);
      if (chunks.length === 0) chunks.push([]);
      try {
        for (const [i, chunk] of chunks.entries()) {
          const withHead = i === 0 && head ? [head, ...chunk] : chunk;
          const versions = await store.commit(fence, withHead);
          if (i === 0 && head) batchRow?.committed(versions[0] ?? 0);
          moved += chunk.length;
        }
        return { moved };
      } catch (err) {
        // Another writer moved one of them (the response poller and the shard's initiator meet
        // on a batch): what committed stays committed; re-read and do what is still to do.
        if (!(err instanceof ConflictError) || round >= MAX_ROUNDS) throw err;
        if (batchRow && err.key.batchId !== undefined && !(await batchRow.refresh())) throw err;
        deps.log.debug({ round, part: err.part }, 'payout or batch moved concurrently; re-reading');
      }
    }
  }
  return store;
}
