/**
 * Handling LHV's answers (docs/payouts.md "Handling responses"). LHV queues one or more pain.002
 * reports per request on one message queue per account; `GET /messages/next` always returns the
 * OLDEST undeleted message, so one message we refuse to delete blocks every later one. Hence:
 *
 *   - ONE poller in the fleet (lease `payout-responses`, any ready worker may hold it), whatever
 *     shard the batch belongs to: no two workers apply the same report at once, and the queue's
 *     order is kept. Its commits are fenced by that lease and version-checked per payout.
 *   - match by OrgnlMsgId (= our batch key, stored before sending) + EndToEndId, never by the
 *     Message-Request-Id alone: after a lost 202 the bank may answer a retry under a new id.
 *   - only FINAL statuses (ACSC -> PAID, RJCT -> REJECTED) change a payout; ACSP/PDNG are noted
 *     in the log and the message deleted; the final one follows in a later report.
 *   - a report for a batch still PENDING/UNCERTAIN proves LHV accepted it: the batch becomes
 *     INITIATED first (so the initiator stops resending), then its payouts move; a payout still
 *     INITIATION_PENDING walks INITIATED on the way (PAYOUT_INITIATED, then PAYOUT_PAID/FAILED).
 *   - a duplicate rejection (GrpSts RJCT + DU01/AM05/DUPL) is about the repeat, never the payouts:
 *     counted on the batch, nothing rejected.
 *   - DELETE only after every commit for the message succeeded. A crash before it re-delivers the
 *     message; final payouts are skipped, so applying it again changes nothing. A DELETE whose
 *     answer was lost may or may not have removed the message: it is repeated (404 = gone already);
 *     if it still fails, the next read may return the same message, which is applied again (no-op).
 *   - draining does not wait for readiness or shards: the poller runs from the worker's start, so
 *     reports keep being applied while ingestion is gated (not ready, no shard held). A holder that
 *     keeps failing (it cannot reach LHV, its commits fail) gives the lease up after
 *     GIVE_UP_AFTER_FAILURES steps in a row, so a worker that can drain takes over rather than wait
 *     for a lease that is renewed on time but useless:
 *
 *       X (cut off from LHV): read ✗ ✗ ✗ ✗ ✗ ─ release ─────── wait leaseBackoffMs ─ acquire ✗ (Y holds it)
 *       Y:                    acquire ✗ (X holds it) … acquire ✓ ─ read ─ apply ─ DELETE ─ read …
 *   - a message we cannot use (unreadable XML, unknown OrgnlMsgId / EndToEndId) is PARKED: stored
 *     as an UNMATCHED_LHV_MESSAGE row in `batches` (IBANs masked), alerted, then deleted. Keeping it
 *     on LHV's queue would block every payout behind it. This assumes the LHV Connect account's
 *     message queue is payfleet's alone.
 */
import { backoffMs } from '../../shared/core/backoff.js';
import { ConflictError } from '../../shared/core/errors.js';
import type { HeldLease, LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { OutcomeStore } from '../../shared/core/ports.js';
import { jitter, pause, settlesWithin } from '../../shared/core/timers.js';
import { classify, TerminalError } from '../../shared/errors.js';
import type { LhvClient } from './lhv/client.js';
import { toEndToEndId } from './lhv/pain001.js';
import { isDuplicateRejection, parsePain002 } from './lhv/pain002.js';
import {
  FINAL_TRANSACTION_STATUSES,
  maskIbans,
  type LhvMessage,
  type Pain002Report,
  type TransactionStatus,
} from './lhv/types.js';
import type { Logger } from '../../shared/log/logger.js';
import type { BatchStore, Fence } from './batches.js';
import { RESPONSES_LEASE_KEY } from './leases.js';
import type { PayoutMetrics } from './metrics.js';
import { FINAL, unmatchedKey, type Batch, type PayoutStatus } from './model.js';
import type { PayoutRepository } from './repo.js';

/** Tries of one DELETE before the message is left to be read (and applied, a no-op) again. */
const DELETE_ATTEMPTS = 4;
/** Failed steps in a row after which the holder releases the poller lease for another worker. */
export const GIVE_UP_AFTER_FAILURES = 5;

type Stage = 'read' | 'apply' | 'delete';

export interface ResponsePollerDeps {
  readonly lhv: LhvClient;
  readonly repo: PayoutRepository;
  readonly batches: BatchStore;
  readonly outcomes: OutcomeStore;
  readonly keeper: LeaseKeeper;
  readonly ownerId: string;
  readonly metrics: PayoutMetrics;
  readonly log: Logger;
  readonly pollMs: number;
  /** Wait before trying the poller lease again when another worker holds it. */
  readonly leaseBackoffMs: number;
}

export interface ResponsePoller {
  start(): void;
  /** Finish the message in hand (within graceMs, else abort it: it is re-delivered), release the lease. */
  stop(graceMs: number): Promise<void>;
  holding(): boolean;
  /** Apply one message under `fence` (tests). */
  handle(msg: LhvMessage, fence: Fence, signal?: AbortSignal): Promise<string>;
}

export function createResponsePoller(deps: ResponsePollerDeps): ResponsePoller {
  const { lhv, repo, batches, metrics, log } = deps;
  const soft = new AbortController();
  const hard = new AbortController();
  let held: HeldLease | undefined;
  let loop: Promise<void> | undefined;
  /** Where the current step is, for the failure metric (one step at a time per poller). */
  let stage: Stage = 'read';

  /**
   * DELETE after the commits, repeated when the answer is lost or a 5xx comes back: a lost answer may
   * hide a completed delete, and then the repeat gets 404, which counts as done.
   */
  async function deleteAfterCommit(messageResponseId: string, signal?: AbortSignal): Promise<void> {
    stage = 'delete';
    for (let attempt = 1; ; attempt++) {
      try {
        await lhv.deleteMessage(messageResponseId, signal ? { signal } : {});
        return;
      } catch (err) {
        if (attempt >= DELETE_ATTEMPTS || signal?.aborted || classify(err) === 'terminal') throw err;
        metrics.bankMessageFailures.inc({ stage: 'delete' });
        await pause(backoffMs(attempt, { baseMs: 100, maxMs: 1000 }), signal);
      }
    }
  }

  async function park(msg: LhvMessage, fence: Fence, reason: string, detail: string): Promise<void> {
    try {
      await deps.outcomes.commit({
        lease: fence.lease(),
        changes: [
          {
            table: 'batches',
            key: { batchId: unmatchedKey(msg.messageResponseId) },
            expectedVersion: 0,
            set: {
              kind: 'UNMATCHED_LHV_MESSAGE',
              reason,
              detail: maskIbans(detail).slice(0, 1000),
              messageRequestId: msg.messageRequestId,
              messageResponseId: msg.messageResponseId,
              responseType: msg.responseType,
              contentType: msg.contentType ?? null,
              body: maskIbans(msg.body).slice(0, 300_000),
              receivedAt: new Date().toISOString(),
            },
          },
        ],
      });
    } catch (err) {
      // Parked already (a re-delivery after a crash between park and delete).
      if (!(err instanceof ConflictError && err.reason === 'condition')) throw err;
    }
    log.error(
      {
        alert: 'LHV_MESSAGE_UNMATCHED',
        reason,
        messageRequestId: msg.messageRequestId,
        messageResponseId: msg.messageResponseId,
      },
      'LHV message could not be matched to a batch; parked in the batches table for an operator',
    );
  }

  /** Make the batch INITIATED: a report for its MsgId proves LHV accepted it. */
  async function settleBatch(fence: Fence, batch: Batch, messageRequestId: string): Promise<Batch> {
    let b = batch;
    for (let round = 1; b.status !== 'INITIATED' && b.status !== 'REJECTED'; round++) {
      const at = new Date().toISOString();
      try {
        b = await batches.saveBatch(fence, b, {
          ...b,
          status: 'INITIATED',
          messageRequestId: b.messageRequestId ?? messageRequestId,
          initiatedAt: b.initiatedAt ?? at,
          updatedAt: at,
        });
      } catch (err) {
        const fresh = err instanceof ConflictError && round < 6 ? await repo.getBatch(b.batchId) : undefined;
        if (!fresh) throw err;
        b = fresh;
      }
    }
    return b;
  }

  async function countDuplicate(fence: Fence, batch: Batch): Promise<void> {
    let b = batch;
    for (let round = 1; ; round++) {
      try {
        await batches.saveBatch(fence, b, {
          ...b,
          duplicateReports: (b.duplicateReports ?? 0) + 1,
          updatedAt: new Date().toISOString(),
        });
        return;
      } catch (err) {
        const fresh = err instanceof ConflictError && round < 6 ? await repo.getBatch(b.batchId) : undefined;
        if (!fresh) throw err;
        b = fresh;
      }
    }
  }

  /** Statuses of a report; a whole-request RJCT without transactions rejects every payout of the batch. */
  function statusesOf(report: Pain002Report, batch: Batch): readonly TransactionStatus[] {
    if (report.transactions.length > 0 || report.groupStatus !== 'RJCT') return report.transactions;
    return batch.paymentIds.map((id) => ({
      endToEndId: toEndToEndId(id),
      instrId: undefined,
      status: 'RJCT',
      ...(report.groupReasonCode !== undefined ? { reasonCode: report.groupReasonCode } : {}),
      ...(report.groupReasonText !== undefined ? { reasonText: report.groupReasonText } : {}),
    }));
  }

  async function handle(msg: LhvMessage, fence: Fence, signal?: AbortSignal): Promise<string> {
    const mlog = log.child({ messageRequestId: msg.messageRequestId, messageResponseId: msg.messageResponseId });
    stage = 'apply';
    const done = async (outcome: string) => {
      await deleteAfterCommit(msg.messageResponseId, signal);
      metrics.bankReports.inc({ outcome });
      return outcome;
    };
    let report: Pain002Report;
    try {
      report = parsePain002(msg.body);
    } catch (err) {
      if (!(err instanceof TerminalError)) throw err;
      await park(msg, fence, 'UNREADABLE', err.message);
      return done('unreadable');
    }
    const batch = await repo.getBatch(report.originalMsgId);
    if (!batch) {
      await park(msg, fence, 'UNKNOWN_ORIGINAL_MSG_ID', `OrgnlMsgId ${report.originalMsgId.slice(0, 40)} is not a batch of ours`);
      return done('unmatched');
    }
    const blog = mlog.child({ batchId: batch.batchId, shard: batch.shard });
    if (isDuplicateRejection(report)) {
      await countDuplicate(fence, batch);
      blog.info(
        { reasonCode: report.groupReasonCode },
        'LHV answered a repeated MsgId as a duplicate; the original request decides its payouts',
      );
      return done('duplicate_rejection');
    }
    const byEndToEnd = new Map(batch.paymentIds.map((id) => [toEndToEndId(id), id] as const));
    const final = new Map<string, TransactionStatus>();
    const unknown: string[] = [];
    const pending: string[] = [];
    for (const tx of statusesOf(report, batch)) {
      const id = byEndToEnd.get(tx.endToEndId);
      if (!id) unknown.push(tx.endToEndId);
      else if (FINAL_TRANSACTION_STATUSES.has(tx.status)) final.set(id, tx);
      else pending.push(`${id}:${tx.status}`);
    }
    const settled = await settleBatch(fence, batch, msg.messageRequestId);
    const messageRequestId = settled.messageRequestId ?? msg.messageRequestId;
    const moved = await batches.movePayouts(fence, [...final.keys()], (p) => {
      const tx = final.get(p.paymentId);
      if (!tx || p.batchId !== batch.batchId || FINAL.has(p.status)) return undefined;
      const outcome: PayoutStatus = tx.status === 'ACSC' ? 'PAID' : 'REJECTED';
      const path: PayoutStatus[] | undefined =
        p.status === 'INITIATION_PENDING' ? ['INITIATED', outcome] : p.status === 'INITIATED' ? [outcome] : undefined;
      if (!path) return undefined;
      const reason = maskIbans(tx.reasonText ?? '') || 'rejected by the bank';
      return {
        path,
        patch: {
          bankStatus: tx.status,
          messageRequestId: p.messageRequestId ?? messageRequestId,
          ...(outcome === 'REJECTED'
            ? { failure: { source: 'BANK_REPORT' as const, code: tx.reasonCode ?? 'RJCT', reason } }
            : {}),
        },
        details: (status) =>
          status === 'INITIATED'
            ? { batch_id: batch.batchId, message_request_id: messageRequestId, initiated_at: settled.initiatedAt ?? null }
            : status === 'PAID'
              ? { batch_id: batch.batchId, bank_status: tx.status, message_response_id: msg.messageResponseId }
              : {
                  batch_id: batch.batchId,
                  bank_status: tx.status,
                  reason_code: tx.reasonCode ?? null,
                  reason,
                  source: 'BANK_REPORT',
                  message_response_id: msg.messageResponseId,
                },
      };
    });
    if (unknown.length > 0) {
      await park(
        msg,
        fence,
        'UNKNOWN_END_TO_END_ID',
        `EndToEndIds not in batch ${batch.batchId}: ${unknown.slice(0, 20).join(', ')}`,
      );
    }
    blog.info(
      { groupStatus: report.groupStatus ?? null, final: final.size, moved, notFinal: pending.length },
      'bank report applied',
    );
    return done('applied');
  }

  async function release(h: HeldLease | undefined): Promise<void> {
    held = undefined;
    metrics.responsePoller.set(0);
    await h?.release();
  }

  async function run(): Promise<void> {
    let failures = 0;
    while (!soft.signal.aborted) {
      if (!held || held.signal.aborted) {
        if (held) log.warn('LHV response poller lease lost; polling stops until it is taken again');
        held = undefined;
        metrics.responsePoller.set(0);
        const got = await deps.keeper.acquire(RESPONSES_LEASE_KEY, deps.ownerId).catch((err: unknown) => {
          log.warn({ err }, 'could not try the response poller lease');
          return undefined;
        });
        if (!got?.held) {
          const untilFree = got && !got.held ? got.holder.expiresAtMs - Date.now() : deps.leaseBackoffMs;
          await pause(jitter(Math.max(50, Math.min(deps.leaseBackoffMs, untilFree + 50))), soft.signal);
          continue;
        }
        held = got.held;
        metrics.responsePoller.set(1);
        log.info({ fencingToken: held.lease.fencingToken }, 'LHV response poller lease acquired');
      }
      const h = held;
      const fence: Fence = { lease: () => h.lease };
      const signal = AbortSignal.any([h.signal, hard.signal]);
      try {
        stage = 'read';
        const msg = await lhv.nextMessage({ responseType: 'PAYMENT' }, { signal });
        if (!msg) {
          failures = 0;
          await pause(jitter(deps.pollMs), AbortSignal.any([soft.signal, h.signal]));
          continue;
        }
        await handle(msg, fence, signal);
        failures = 0;
      } catch (err) {
        if (soft.signal.aborted && signal.aborted) break;
        failures++;
        metrics.bankMessageFailures.inc({ stage });
        const delayMs = backoffMs(failures, { baseMs: 250, maxMs: Math.max(1000, deps.pollMs * 2) });
        log.warn({ err, stage, failures, delayMs }, 'handling LHV messages failed; the message stays on LHV and is retried');
        if (failures >= GIVE_UP_AFTER_FAILURES) {
          // Maybe only this process cannot reach LHV or commit: let another worker drain.
          log.warn({ failures }, 'LHV response poller gives its lease up after failing repeatedly; any worker may take it');
          failures = 0;
          await release(h).catch((e: unknown) => log.warn({ err: e }, 'releasing the response poller lease failed'));
          await pause(jitter(deps.leaseBackoffMs), soft.signal);
          continue;
        }
        await pause(delayMs, soft.signal);
      }
    }
  }

  return {
    start() {
      loop ??= run();
    },
    async stop(graceMs) {
      soft.abort();
      if (!(await settlesWithin(loop ?? Promise.resolve(), graceMs))) {
        log.warn({ graceMs }, 'LHV message still being applied after the grace period; aborting it (LHV re-delivers it)');
        hard.abort();
        await loop;
      }
      await release(held);
    },
    holding: () => held !== undefined && !held.signal.aborted,
    handle,
  };
}
