/**
 * Payment initiation for one held shard (docs/payouts.md "Initiation"). One cycle:
 *
 *   list initiable payouts (GSI, ALL projected; ─┬─ pinned to a batch? resume that batch:
 *   may lag: every write below is conditioned    │    ASSIGNING -> finish pinning -> send
 *   on the version the row showed)               │    PENDING   -> send (stored key, stored bytes)
 *                                                │    INITIATED / REJECTED -> finish marking payouts
 *                                                └─ RECEIVED: groups of <= batchSize ->
 *                                                     new key (32 hex) -> pin + sendAttempts 1 (stored BEFORE sending) -> send
 *
 *   send:  (a resumed batch: sendAttempts+1 written) ─▶ POST /payment (X-Idempotency-Key = MsgId = batchId)
 *            202 ─────────────▶ batch INITIATED (+Message-Request-Id) with the first chunk of payouts
 *                               INITIATED + PAYOUT_INITIATED, then the other chunks
 *            429/5xx/timeout ─▶ backoff (<= retryMaxMs), SAME key; between tries, a bank report that
 *                               arrived meanwhile (batch no longer PENDING) ends the retrying
 *            400/413/422 ─────▶ first, unambiguous attempt: batch + payouts REJECTED (PAYOUT_FAILED)
 *                               after an attempt that may have reached LHV: UNCERTAIN (never resent)
 *            401/403/other ───▶ our credentials/config: stays PENDING, alert, next cycle
 *          not acknowledged after `sendAttempts`: a warning; the batch stays PENDING with its key and
 *          the next cycle (or the next holder of the shard) resends the identical request.
 *
 * A partial batch (< batchSize) waits until its shard has been quiet for `quietMs` or its oldest
 * payout waited `maxWaitMs`, so a burst becomes full batches instead of a stream of small ones.
 */
import { backoffMs } from '../../shared/core/backoff.js';
import { repeatWhileHeld, type ShardSlot } from '../../shared/core/shard-pool.js';
import { jitter, pause } from '../../shared/core/timers.js';
import { ConflictError, LeaseLostError } from '../../shared/core/errors.js';
import { AmbiguousError, RetryableError, TerminalError } from '../../shared/errors.js';
import type { LhvClient } from './lhv/client.js';
import { buildPain001, newBatchIdempotencyKey, toEndToEndId } from './lhv/pain001.js';
import { LhvErrorCode, LhvRequestRejectedError, type DebtorAccount } from './lhv/types.js';
import type { Logger } from '../../shared/log/logger.js';
import type { BatchStore, PayoutMove } from './batches.js';
import type { PayoutSettings } from './config.js';
import type { PayoutMetrics } from './metrics.js';
import { toInstruction, type Batch, type Payout } from './model.js';
import type { PayoutRepository } from './repo.js';

/** A held shard as the initiator and ingestion see it: a slot of the engine's shard pool. */
export type { ShardSlot } from '../../shared/core/shard-pool.js';

export interface InitiatorDeps {
  readonly lhv: LhvClient;
  readonly repo: PayoutRepository;
  readonly batches: BatchStore;
  readonly metrics: PayoutMetrics;
  readonly log: Logger;
  readonly debtor: DebtorAccount;
  readonly settings: PayoutSettings['initiation'];
}

/** Failures that prove the request never reached LHV's processing (refused connection, 429). */
const DEFINITELY_NOT_PROCESSED: ReadonlySet<string> = new Set([LhvErrorCode.Unreachable, LhvErrorCode.Throttled]);
/** 4xx statuses that reject the request's content (as opposed to our credentials or the URL). */
const CONTENT_REJECTED: ReadonlySet<number> = new Set([400, 413, 422]);

/**
 * How long an empty shard waits before listing again when no ingestion in this process woke it. A
 * shard's waiting payouts only ever come from its holder's own ingestion (fenced by the shard's
 * lease), so the wake-up is what matters; this re-list is a safety net, not the way work is found.
 */
export const IDLE_RELIST_MS = 60_000;

export interface CycleResult {
  readonly idleMs: number;
  /** Nothing waits in the shard. */
  readonly empty?: boolean;
  /** A partial batch waits to fill: `fresh` payouts listed, the newest received at `newestMs`, due by `deadlineMs`. */
  readonly waiting?: { readonly fresh: number; readonly newestMs: number; readonly deadlineMs: number };
}

export interface Initiator {
  /** Run cycles for `slot` until it stops. */
  runShard(slot: ShardSlot): Promise<void>;
  /** One cycle; resolves with how long to wait before the next (tests). */
  cycle(slot: ShardSlot): Promise<CycleResult>;
  /** This process stored `count` payouts in `shard` (ingestion): that shard's waiting loop looks again. */
  ingested(shard: string, count: number): void;
}

export function createInitiator(deps: InitiatorDeps): Initiator {
  const { lhv, repo, batches, metrics, settings } = deps;
  const nowIso = () => new Date().toISOString();

  /** Ingestions per shard in this process, and the wake-up of a shard loop waiting while empty. */
  const ingestions = new Map<string, { count: number; lastAtMs: number }>();
  const wakers = new Map<string, AbortController>();

  async function cycle(slot: ShardSlot): Promise<CycleResult> {
    const { shard } = slot;
    const listed = await repo.listInitiable(shard, settings.batchSize * 10);
    if (listed.items.length === 0) {
      metrics.reportWaiting(shard, { count: 0, oldestSeconds: 0 });
      return { idleMs: settings.pollMs, empty: true };
    }
    // The index may lag. Nothing is sent on its word: a new batch pins its payouts under the
    // version the index showed (a stale row fails that condition, and is re-read), and a resumed
    // batch is read from its own row.
    const live = listed.items
      .filter((p) => p.initiableShard === shard && (p.status === 'RECEIVED' || p.status === 'INITIATION_PENDING'))
      .sort((a, b) => (a.receivedAt < b.receivedAt ? -1 : a.receivedAt > b.receivedAt ? 1 : 0));
    const now = Date.now();
    metrics.reportWaiting(shard, {
      count: live.length,
      oldestSeconds: live[0] ? Math.max(0, (now - Date.parse(live[0].receivedAt)) / 1000) : 0,
    });

    // 1. Batches already keyed (pinned payouts): resume them first, with their stored key.
    const pinned = [...new Set(live.filter((p) => p.status === 'INITIATION_PENDING' && p.batchId).map((p) => p.batchId!))];
    let resumed = 0;
    for (const batchId of pinned) {
      if (slot.stop.aborted) return { idleMs: 0 };
      const r = await resume(slot, batchId);
      if (r === 'not-acknowledged') return { idleMs: settings.pollMs };
      if (r === 'progress') resumed++;
    }
    // Resuming may have pinned payouts this read still shows as RECEIVED: list again first.
    if (resumed > 0) return { idleMs: 0 };

    // 2. New batches of RECEIVED payouts, oldest first.
    const fresh = live.filter((p) => p.status === 'RECEIVED' && !p.batchId);
    let sent = 0;
    while (fresh.length > 0 && !slot.stop.aborted) {
      if (fresh.length < settings.batchSize) {
        const newest = Date.parse(fresh[fresh.length - 1]!.receivedAt);
        const oldest = Date.parse(fresh[0]!.receivedAt);
        const quietFor = now - newest;
        const waited = now - oldest;
        const quiet = !listed.more && quietFor >= settings.quietMs;
        if (!quiet && waited < settings.maxWaitMs) {
          // Re-list at once after sending (the rest may fill a batch now), else wait for the
          // shard to go quiet or the oldest payout to reach its maximum wait.
          if (sent > 0) return { idleMs: 0 };
          const untilQuiet = listed.more ? settings.pollMs : settings.quietMs - quietFor;
          return {
            idleMs: Math.max(10, Math.min(settings.pollMs, untilQuiet, settings.maxWaitMs - waited)),
            ...(listed.more
              ? {}
              : { waiting: { fresh: fresh.length, newestMs: newest, deadlineMs: oldest + settings.maxWaitMs } }),
          };
        }
      }
      const group = fresh.splice(0, settings.batchSize);
      sent++;
      if (!(await startBatch(slot, group))) return { idleMs: settings.pollMs };
    }
    return { idleMs: sent > 0 || listed.more ? 0 : settings.pollMs };
  }

  /** Resume a keyed batch: progress made, nothing to do (UNCERTAIN, missing), or not acknowledged by LHV. */
  async function resume(slot: ShardSlot, batchId: string): Promise<'progress' | 'idle' | 'not-acknowledged'> {
    const batch = await repo.getBatch(batchId);
    if (!batch || batch.shard !== slot.shard) {
      deps.log.error(
        { alert: 'PAYOUT_BATCH_MISSING', shard: slot.shard, batchId },
        'payouts point at a batch that does not exist in this shard',
      );
      return 'idle';
    }
    const sent = async (b: Batch) => ((await send(slot, b)) ? 'progress' : 'not-acknowledged');
    switch (batch.status) {
      case 'ASSIGNING': {
        const sealed = await finishPinning(slot, batch);
        return sealed ? sent(sealed) : 'idle';
      }
      case 'PENDING':
        deps.log.info(
          { shard: slot.shard, batchId, sendAttempts: batch.sendAttempts },
          'resuming a batch with its stored idempotency key',
        );
        return sent(batch);
      case 'INITIATED':
        await finishInitiated(slot, batch);
        return 'progress';
      case 'REJECTED':
        await finishRejected(slot, batch);
        return 'progress';
      case 'UNCERTAIN':
        return 'idle'; // neither resent nor rejected: a bank report or an operator resolves it
    }
  }

  /** An ASSIGNING batch left by a crash: pin what is still free, drop what is not, seal it. */
  async function finishPinning(slot: ShardSlot, batch: Batch): Promise<Batch | undefined> {
    const rows = await repo.getPayouts(batch.paymentIds);
    const keep: string[] = [];
    const toPin: Payout[] = [];
    for (const id of batch.paymentIds) {
      const p = rows.get(id);
      if (p?.batchId === batch.batchId) keep.push(id);
      else if (p && p.status === 'RECEIVED' && !p.batchId && p.initiableShard === batch.shard) {
        keep.push(id);
        toPin.push(p);
      }
    }
    if (keep.length === 0) return undefined;
    deps.log.info(
      { shard: slot.shard, batchId: batch.batchId, pinning: toPin.length, payouts: keep.length },
      'finishing an interrupted batch assignment',
    );
    // Never sent while ASSIGNING, so trimming its payout list is safe.
    return (await batches.pin(slot.fence, batch, { ...batch, paymentIds: keep }, toPin)).batch;
  }

  /** Reject payouts that can never be sent; the rest form the batch. */
  async function dropInvalid(slot: ShardSlot, group: Payout[]): Promise<Payout[]> {
    try {
      buildPain001({ msgId: 'validation', debtor: deps.debtor, payouts: group.map(toInstruction) });
      return group;
    } catch (err) {
      if (!(err instanceof TerminalError)) throw err;
    }
    const ok: Payout[] = [];
    const bad = new Map<string, string>();
    const ids = new Set<string>();
    for (const p of group) {
      try {
        buildPain001({ msgId: 'validation', debtor: deps.debtor, payouts: [toInstruction(p)] });
        const e2e = toEndToEndId(p.paymentId);
        if (ids.has(e2e))
          throw new TerminalError(LhvErrorCode.InvalidPayout, `EndToEndId ${e2e} is used by another payout of the batch`);
        ids.add(e2e);
        ok.push(p);
      } catch (err) {
        bad.set(p.paymentId, err instanceof Error ? err.message : String(err));
      }
    }
    await batches.movePayouts(slot.fence, [...bad.keys()], (p) =>
      p.status === 'RECEIVED' && !p.batchId
        ? {
            path: ['REJECTED'],
            patch: {
              failure: { source: 'INVALID_PAYOUT', code: LhvErrorCode.InvalidPayout, reason: bad.get(p.paymentId) ?? 'invalid' },
            },
            details: () => ({ reason_code: LhvErrorCode.InvalidPayout, reason: bad.get(p.paymentId), source: 'INVALID_PAYOUT' }),
          }
        : undefined,
    );
    deps.log.warn(
      { alert: 'PAYOUT_INVALID', shard: slot.shard, paymentIds: [...bad.keys()] },
      'payouts that cannot be sent were REJECTED',
    );
    return ok;
  }

  async function startBatch(slot: ShardSlot, candidates: Payout[]): Promise<boolean> {
    let group = await dropInvalid(slot, candidates);
    if (group.length === 0) return true;
    const at = new Date();
    const batchId = newBatchIdempotencyKey();
    const draft = (payouts: readonly Payout[]): Batch => ({
      batchId,
      kind: 'BATCH',
      shard: slot.shard,
      status: 'ASSIGNING',
      paymentIds: payouts.map((p) => p.paymentId),
      createdAt: at.toISOString(),
      requestedExecutionDate: at.toISOString().slice(0, 10),
      sendAttempts: 0,
      updatedAt: at.toISOString(),
      version: 0,
    });
    let formed: Awaited<ReturnType<BatchStore['pin']>>;
    for (let round = 1; ; round++) {
      try {
        // The key, the payout list and the first send are stored before anything is sent.
        formed = await batches.pin(slot.fence, undefined, draft(group), group, { beginSend: true });
        break;
      } catch (err) {
        // The index showed a stale row (the payout moved on): nothing of this chunk was written.
        if (!(err instanceof ConflictError) || round > 2) throw err;
        // Over 98 payouts, an earlier chunk may have stored the batch: the next cycle finishes it.
        if (await repo.getBatch(batchId)) return true;
        const rows = await repo.getPayouts(group.map((p) => p.paymentId));
        group = group.flatMap((p) => {
          const now = rows.get(p.paymentId);
          return now && now.status === 'RECEIVED' && !now.batchId && now.initiableShard === slot.shard ? [now] : [];
        });
        if (group.length === 0) return true;
      }
    }
    deps.log.info({ shard: slot.shard, batchId, payouts: group.length }, 'batch formed; idempotency key stored before sending');
    return send(slot, formed.batch, formed.pinned);
  }

  /**
   * Send a PENDING batch under its stored key. false = not acknowledged this cycle. `pinned`: the
   * payouts as this process just pinned them, when the sealing commit already counted this send.
   */
  async function send(slot: ShardSlot, batch: Batch, pinned?: ReadonlyMap<string, Payout>): Promise<boolean> {
    const log = deps.log.child({ shard: slot.shard, batchId: batch.batchId });
    const rows = pinned ?? (await repo.getPayouts(batch.paymentIds));
    const payouts = batch.paymentIds.map((id) => rows.get(id));
    if (payouts.some((p) => p === undefined)) {
      // The identical request cannot be rebuilt: never send a different one under this key.
      await saveStatus(slot, batch, 'UNCERTAIN', { code: 'BATCH_INCOMPLETE', reason: 'payouts of the batch are missing' });
      log.error({ alert: 'PAYOUT_BATCH_UNCERTAIN' }, 'batch references missing payouts; marked UNCERTAIN');
      return true;
    }
    // A new batch's sealing commit counted this send already (sendAttempts 1); a resumed one counts
    // it below. Either way: did an EARLIER send sequence begin (the batch "may have reached LHV")?
    const mayHaveReached = pinned ? batch.sendAttempts > 1 : batch.sendAttempts > 0;
    let xml: string;
    try {
      xml = buildPain001({
        msgId: batch.batchId,
        debtor: deps.debtor,
        payouts: (payouts as Payout[]).map(toInstruction),
        requestedExecutionDate: batch.requestedExecutionDate,
        createdAt: new Date(batch.createdAt),
      });
    } catch (err) {
      if (!(err instanceof TerminalError) || mayHaveReached) throw err;
      const rejected = await saveStatus(slot, batch, 'REJECTED', { code: err.code, reason: err.message });
      await finishRejected(slot, rejected);
      return true;
    }
    // Written before the first byte goes out: from now on this batch "may have reached LHV".
    const at = nowIso();
    const current = pinned
      ? batch
      : await batches.saveBatch(slot.fence, batch, {
          ...batch,
          sendAttempts: batch.sendAttempts + 1,
          lastSentAt: at,
          updatedAt: at,
        });
    let uncertain = mayHaveReached;
    for (let attempt = 1; attempt <= settings.sendAttempts; attempt++) {
      if (slot.abort.aborted) return false;
      try {
        const { messageRequestId } = await lhv.initiatePayment(xml, batch.batchId, { signal: slot.abort });
        metrics.initiationRequests.inc({ outcome: 'accepted' });
        metrics.batchSize.observe(batch.paymentIds.length);
        await accepted(slot, current, messageRequestId, pinned);
        return true;
      } catch (err) {
        if (err instanceof LhvRequestRejectedError) return refused(slot, current, err, uncertain, pinned);
        let outcome: string;
        if (err instanceof AmbiguousError) {
          outcome = 'ambiguous';
          uncertain = true;
        } else if (err instanceof RetryableError && !(err instanceof LeaseLostError)) {
          outcome = 'retryable';
          if (!DEFINITELY_NOT_PROCESSED.has(err.code)) uncertain = true;
        } else if (err instanceof TerminalError) {
          metrics.initiationRequests.inc({ outcome: 'refused' });
          log.error({ err, code: err.code }, 'initiation could not be attempted; the batch stays PENDING with its key');
          return false;
        } else {
          throw err;
        }
        metrics.initiationRequests.inc({ outcome });
        metrics.initiationRetries.inc({ code: err.code });
        if (slot.stop.aborted || attempt === settings.sendAttempts) {
          log.warn({ attempt, code: err.code }, 'initiation not acknowledged; the batch keeps its key for the next attempt');
          break;
        }
        // A report for this MsgId may have arrived meanwhile: it proves acceptance.
        const fresh = await repo.getBatch(batch.batchId);
        if (fresh && fresh.status !== 'PENDING') {
          log.info({ status: fresh.status }, 'batch settled by a bank report while retrying');
          return (await resume(slot, batch.batchId)) !== 'not-acknowledged';
        }
        const hinted = err instanceof RetryableError ? Math.min(err.retryAfterMs ?? 0, 60_000) : 0;
        const delayMs = Math.max(hinted, backoffMs(attempt, { baseMs: settings.retryBaseMs, maxMs: settings.retryMaxMs }));
        log.warn(
          { attempt, code: err.code, delayMs, sameKey: true },
          'initiation not acknowledged; retrying with the same idempotency key',
        );
        await pause(delayMs, slot.stop);
      }
    }
    return false;
  }

  /** The 202: batch INITIATED in the same commit as the first chunk of its payouts' PAYOUT_INITIATED. */
  async function accepted(
    slot: ShardSlot,
    batch: Batch,
    messageRequestId: string,
    known?: ReadonlyMap<string, Payout>,
  ): Promise<void> {
    const at = nowIso();
    const b = await batches.settle(
      slot.fence,
      batch,
      // The response poller may have settled it from a report first: then the row stays as stored.
      (stored) =>
        stored.status === 'PENDING'
          ? { ...stored, status: 'INITIATED', messageRequestId, initiatedAt: at, updatedAt: at }
          : undefined,
      initiatedMove,
      known,
    );
    deps.log.info(
      { shard: slot.shard, batchId: b.batchId, messageRequestId: b.messageRequestId, payouts: b.paymentIds.length },
      'batch initiated',
    );
  }

  async function refused(
    slot: ShardSlot,
    batch: Batch,
    err: LhvRequestRejectedError,
    uncertain: boolean,
    known?: ReadonlyMap<string, Payout>,
  ): Promise<boolean> {
    const info = { httpStatus: err.status, code: `HTTP_${err.status}`, reason: err.reason };
    const log = deps.log.child({ shard: slot.shard, batchId: batch.batchId, httpStatus: err.status });
    if (CONTENT_REJECTED.has(err.status) && !uncertain) {
      metrics.initiationRequests.inc({ outcome: 'rejected' });
      log.warn(
        { alert: 'PAYOUT_BATCH_REJECTED', reason: err.reason },
        'LHV rejected the initiation request; its payouts are REJECTED',
      );
      await batches.settle(
        slot.fence,
        batch,
        (stored) =>
          stored.status === 'PENDING' ? { ...stored, status: 'REJECTED', rejection: info, updatedAt: nowIso() } : undefined,
        rejectedMove,
        known,
      );
      return true;
    }
    if (CONTENT_REJECTED.has(err.status) || err.status === 409) {
      metrics.initiationRequests.inc({ outcome: 'uncertain' });
      await saveStatus(slot, batch, 'UNCERTAIN', info);
      log.error(
        { alert: 'PAYOUT_BATCH_UNCERTAIN', reason: err.reason },
        'LHV refused a request an earlier attempt may have delivered: not resent, not rejected; waiting for its report or an operator',
      );
      return true;
    }
    metrics.initiationRequests.inc({ outcome: 'refused' });
    log.error(
      { alert: 'LHV_REFUSED', reason: err.reason },
      'LHV refused the request (credentials or configuration); the batch stays PENDING with its key',
    );
    return false;
  }

  async function saveStatus(
    slot: ShardSlot,
    batch: Batch,
    status: 'REJECTED' | 'UNCERTAIN',
    rejection: NonNullable<Batch['rejection']>,
  ): Promise<Batch> {
    return batches.saveBatch(slot.fence, batch, { ...batch, status, rejection, updatedAt: nowIso() });
  }

  /** A payout pinned to an INITIATED batch: INITIATED + PAYOUT_INITIATED. */
  function initiatedMove(p: Payout, b: Batch): PayoutMove | undefined {
    if (b.status !== 'INITIATED' || p.status !== 'INITIATION_PENDING' || p.batchId !== b.batchId) return undefined;
    return {
      path: ['INITIATED'],
      ...(b.messageRequestId ? { patch: { messageRequestId: b.messageRequestId } } : {}),
      details: () => ({
        batch_id: b.batchId,
        message_request_id: b.messageRequestId ?? null,
        initiated_at: b.initiatedAt ?? nowIso(),
      }),
    };
  }

  /** A payout pinned to a REJECTED batch: REJECTED + PAYOUT_FAILED with the request's reason. */
  function rejectedMove(p: Payout, b: Batch): PayoutMove | undefined {
    if (b.status !== 'REJECTED' || p.status !== 'INITIATION_PENDING' || p.batchId !== b.batchId) return undefined;
    const r = b.rejection ?? { code: 'REQUEST_REJECTED', reason: 'rejected by LHV' };
    return {
      path: ['REJECTED'],
      patch: { failure: { source: 'REQUEST_REJECTED', code: r.code, reason: r.reason } },
      details: () => ({ batch_id: b.batchId, reason_code: r.code, reason: r.reason, source: 'REQUEST_REJECTED' }),
    };
  }

  async function finishInitiated(slot: ShardSlot, b: Batch): Promise<void> {
    await batches.movePayouts(slot.fence, b.paymentIds, (p) => initiatedMove(p, b));
  }

  async function finishRejected(slot: ShardSlot, b: Batch): Promise<void> {
    await batches.movePayouts(slot.fence, b.paymentIds, (p) => rejectedMove(p, b));
  }

  /**
   * A cycle, then a wait that needs no listing. Only this shard's holder ingests into it (its
   * commits are fenced by the shard's lease), so this process knows when the shard gets new payouts:
   *   - found empty: wait until an ingestion into the shard (or IDLE_RELIST_MS, a safety net);
   *   - a partial batch waiting to fill: wait in memory until it is full (listed + ingested since),
   *     the shard has been quiet for quietMs (its last ingestion here), or the oldest reached maxWaitMs.
   * The ingestion counters are read before the listing, so one that lands during it is never missed.
   */
  async function step(slot: ShardSlot): Promise<{ idleMs: number }> {
    const { shard } = slot;
    const seen = ingestions.get(shard)?.count ?? 0;
    const r = await cycle(slot);
    if (!r.empty && !r.waiting) return r;
    const wait = async (ms: number) => {
      const wake = new AbortController();
      wakers.set(shard, wake);
      try {
        await pause(ms, AbortSignal.any([slot.stop, wake.signal]));
      } finally {
        if (wakers.get(shard) === wake) wakers.delete(shard);
      }
    };
    if (r.empty) {
      if ((ingestions.get(shard)?.count ?? 0) === seen) await wait(jitter(Math.max(settings.pollMs, IDLE_RELIST_MS)));
      return { idleMs: 0 };
    }
    const { fresh, newestMs, deadlineMs } = r.waiting!;
    while (!slot.stop.aborted) {
      const since = ingestions.get(shard);
      if (fresh + (since?.count ?? 0) - seen >= settings.batchSize) break;
      const wakeAt = Math.min(deadlineMs, Math.max(newestMs, since?.lastAtMs ?? 0) + settings.quietMs);
      const now = Date.now();
      if (now >= wakeAt) break;
      await wait(wakeAt - now);
    }
    return { idleMs: 0 };
  }

  function ingested(shard: string, count: number): void {
    const was = ingestions.get(shard);
    ingestions.set(shard, { count: (was?.count ?? 0) + count, lastAtMs: Date.now() });
    wakers.get(shard)?.abort();
  }

  async function runShard(slot: ShardSlot): Promise<void> {
    await repeatWhileHeld(slot, () => step(slot), {
      backoff: { baseMs: 250, maxMs: Math.max(1000, settings.pollMs * 2) },
      onFailure: ({ err, failures, delayMs }) =>
        deps.log.warn(
          { shard: slot.shard, err, failures, delayMs },
          'payout initiation cycle failed; backing off (nothing is lost: keys are stored)',
        ),
    });
    metrics.reportWaiting(slot.shard, undefined);
  }

  return { runShard, cycle, ingested };
}
