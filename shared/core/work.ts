import { RetryableError } from '../errors.js';
import type { HandlerContext } from './consumer.js';
import type { HeldLease, LeaseKeeper } from './lease-keeper.js';
import type { IdempotencyStore, WorkItemRecord } from './ports.js';

/** What a unit of work sees while it runs under its lease. */
export interface WorkContext {
  readonly held: HeldLease;
  readonly attemptId: string;
  /**
   * Attempts begun on this work item, this one included, less the re-runs after a dependency
   * outage (those are not the message's failures).
   */
  readonly attempts: number;
  /** What earlier attempts noted (e.g. "authorise sent with key k"): resolve before redoing. */
  readonly progress: Record<string, unknown> | undefined;
  /** Aborted on lease loss or shutdown: stop, do not commit. */
  readonly signal: AbortSignal;
}

export type WorkOutcome<R> =
  | { readonly status: 'done'; readonly result: R }
  /** Completed by an earlier delivery: acknowledge without redoing anything. */
  | { readonly status: 'duplicate'; readonly record: WorkItemRecord };

export interface OnceDeps {
  readonly keeper: LeaseKeeper;
  readonly idempotency: IdempotencyStore;
  readonly ownerId: string;
  /** Our own deadline for an in-progress attempt. */
  readonly attemptDeadlineMs: number;
}

/**
 * Run `work` at most once to completion for `idempotencyKey`, under the lease `leaseKey`:
 *
 *   acquire lease (fencing token t) ─▶ begin work item (fenced by t) ─▶ work (commit fenced by t) ─▶ release
 *        │ held by another: LeaseHeldError, retry when it expires
 *                                      │ completed before: 'duplicate' (ack, redo nothing)
 *                                      │ busy (a live attempt under a newer token): retry later
 *
 * The work itself must commit through OutcomeStore with `lease: ctx.held.lease` and
 * `workItem: { idempotencyKey, attemptId: ctx.attemptId }`, so a paused attempt cannot commit.
 */
export async function processOnce<R>(
  deps: OnceDeps,
  keys: { leaseKey: string; idempotencyKey: string },
  hctx: Pick<HandlerContext, 'signal' | 'setAttempts' | 'uncountedAttempts'>,
  work: (ctx: WorkContext) => Promise<R>,
): Promise<WorkOutcome<R>> {
  const got = await deps.keeper.acquire(keys.leaseKey, deps.ownerId);
  if (!got.held) throw got.error;
  const held = got.held;
  try {
    const state = await deps.idempotency.begin(keys.idempotencyKey, {
      deadlineMs: Date.now() + deps.attemptDeadlineMs,
      fencingToken: held.lease.fencingToken,
    });
    if (state.status === 'completed') return { status: 'duplicate', record: state.record };
    if (state.status === 'busy') {
      throw new RetryableError('WORK_ITEM_BUSY', `work item ${keys.idempotencyKey} is in progress elsewhere`, {
        retryAfterMs: Math.max(0, (state.record.expiresAtMs ?? Date.now()) - Date.now()),
      });
    }
    hctx.setAttempts(state.attempts);
    const attempts = Math.max(1, state.attempts - (hctx.uncountedAttempts ?? 0));
    const signal = AbortSignal.any([held.signal, hctx.signal]);
    const result = await work({ held, attemptId: state.attemptId, attempts, progress: state.record.progress, signal });
    return { status: 'done', result };
  } finally {
    // Always give the lease back: the next message of this resource should not wait for expiry.
    await held.release();
  }
}
