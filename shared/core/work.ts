import { RetryableError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { systemClock, type Clock } from './clock.js';
import type { HandlerContext, HandlerResult } from './consumer.js';
import type { HeldLease, LeaseKeeper } from './lease-keeper.js';
import type { CommitResult, EntityChange, IdempotencyStore, OutcomeStore, WorkItemRecord } from './ports.js';

// ─────────────────────── processOnce: the lease and the work item ───────────────────────

/** One attempt on a work item, as {@link processOnce} runs it under its lease. */
export interface WorkAttempt {
  readonly held: HeldLease;
  readonly attemptId: string;
  /**
   * Attempts begun on this work item, this one included, less the re-runs after a dependency
   * outage (`HandlerContext.uncountedAttempts`: those are not the message's failures).
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

export interface AttemptDeps {
  readonly keeper: LeaseKeeper;
  readonly idempotency: IdempotencyStore;
  readonly ownerId: string;
  /** Our own deadline for an in-progress attempt. */
  readonly attemptDeadlineMs: number;
  /** @default Date.now */
  readonly now?: Clock;
}

/**
 * Run `work` at most once to completion for `idempotencyKey`, under the lease `leaseKey`:
 *
 *   acquire lease (fencing token t) ─▶ begin work item (fenced by t) ─▶ work (commit fenced by t) ─▶ release
 *        │ held by another: LeaseHeldError, retry when it expires
 *                                      │ completed before: 'duplicate' (redo nothing)
 *                                      │ busy (a live attempt under a newer token): retry later
 *
 * The primitive under {@link createOnce}. Work run here must itself commit with
 * `lease: held.lease` and `workItem: { idempotencyKey, attemptId }`; handlers use once(), whose
 * work context adds both, and which answers duplicates itself.
 */
export async function processOnce<R>(
  deps: AttemptDeps,
  keys: { leaseKey: string; idempotencyKey: string },
  hctx: Pick<HandlerContext, 'signal' | 'setAttempts' | 'uncountedAttempts'>,
  work: (attempt: WorkAttempt) => Promise<R>,
): Promise<WorkOutcome<R>> {
  const now = deps.now ?? systemClock;
  const got = await deps.keeper.acquire(keys.leaseKey, deps.ownerId);
  if (!got.held) throw got.error;
  const held = got.held;
  try {
    const state = await deps.idempotency.begin(keys.idempotencyKey, {
      deadlineMs: now() + deps.attemptDeadlineMs,
      fencingToken: held.lease.fencingToken,
    });
    if (state.status === 'completed') return { status: 'duplicate', record: state.record };
    if (state.status === 'busy') {
      throw new RetryableError('WORK_ITEM_BUSY', `work item ${keys.idempotencyKey} is in progress elsewhere`, {
        retryAfterMs: Math.max(0, (state.record.expiresAtMs ?? now()) - now()),
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

// ─────────────────────── once(): exactly-once as the handler sees it ───────────────────────

/** A message's final answer: acknowledged, or dead-lettered with a code. */
export type Verdict = Extract<HandlerResult, { action: 'ack' | 'dead-letter' }>;

/**
 * What a completed work item keeps (its `result`): the state the work left its subject in and the
 * verdict the message got. Every later delivery of the same request gets that verdict again.
 */
export type WorkVerdict = Verdict & { readonly status: string };

/** A verdict given earlier to this request, seen again on its subject (the work item itself is gone). */
export interface EarlierVerdict {
  readonly status: string;
  readonly code: string;
  /** What the first letter said. */
  readonly detail?: string;
}

declare const completedBrand: unique symbol;
/** A verdict whose work item is completed with it. Only {@link WorkContext.complete} and `repeat` make one. */
export type Completed = Verdict & { readonly [completedBrand]: true };

/** A deferral: the message comes back later and the work item stays open for it. */
export type Deferral = Extract<HandlerResult, { action: 'defer' }>;

/**
 * What the work of once() answers. An ack or a dead letter exists only as {@link Completed}, so no
 * path can end a message while leaving its work item open; failures are thrown.
 */
export type WorkAnswer = Completed | Deferral;

/** What once()'s work sees: the attempt, and the only two ways it writes. */
export interface WorkContext extends WorkAttempt {
  /** The handler's logger (the one given to once() in its context). */
  readonly log: Logger;
  /**
   * Commit `changes` under the lease; the work item stays open. For states that must be durable
   * before an outbound call (AUTHORISATION_READY, CAPTURE_READY, a PENDING void) and for a failed
   * attempt recorded on the entity (CAPTURE_APPROVED_RETRY) whose message comes back.
   */
  commit(changes: readonly EntityChange[]): Promise<CommitResult>;
  /**
   * Commit `changes` under the lease and complete the work item with `verdict`, in one
   * transaction: the state change, its events and "this request is answered" are one fact.
   * Returns the verdict for the handler to return.
   */
  complete(changes: readonly EntityChange[], verdict: WorkVerdict): Promise<Completed>;
  /**
   * This delivery met its subject already in the final state an earlier answer to this request
   * left (its work item expired or was lost): complete the work item with that earlier verdict and
   * dead-letter this delivery again exactly as a duplicate of it is (see {@link repeatedLetter}).
   */
  repeat(earlier: EarlierVerdict): Promise<Completed>;
}

/** One unit of exactly-once work: which lease fences it and which work item it completes. */
export interface OnceItem {
  /** The lease every commit is fenced by, one holder at a time (e.g. `charge#c1`). */
  readonly leaseKey: string;
  /** The request's work item (e.g. `auth#<authRequestId>`). */
  readonly idempotencyKey: string;
  /** What the work acts on, as repeated letters name it (e.g. `charge c1`). */
  readonly subject: string;
  /**
   * For a completed work item that kept its status but no code (written before codes were kept):
   * the code its later deliveries are dead-lettered with, if that status was a dead-lettered one.
   */
  readonly codeOfOlderItem?: (status: string) => Promise<string | undefined>;
}

/** The part of the consumer's context once() uses; `log` is the handler's (e.g. a child with the ids). */
export type OnceContext = Pick<HandlerContext, 'signal' | 'setAttempts' | 'uncountedAttempts' | 'log'>;

/**
 * Exactly-once as one call:
 *
 *   once(item, ctx, work)
 *     lease item.leaseKey ─ begin item.idempotencyKey ─ work(w) ─ release
 *        w.commit(changes)            fenced by the lease, work item left open
 *        w.complete(changes, verdict) fenced by the lease + work item completed with the verdict
 *     a completed work item (a duplicate, a redrive): its kept verdict is given again —
 *        an ack is acknowledged; a dead letter is dead-lettered again with its code, never
 *        acknowledged (acknowledging would delete the only letter of an open question)
 */
export type Once = (item: OnceItem, ctx: OnceContext, work: (w: WorkContext) => Promise<WorkAnswer>) => Promise<HandlerResult>;

export interface OnceDeps extends AttemptDeps {
  readonly outcomes: OutcomeStore;
}

/** Build once() over the stores (the worker kit does, once per process). */
export function createOnce(deps: OnceDeps): Once {
  return async (item, ctx, work) => {
    const outcome = await processOnce(deps, item, ctx, (attempt) => work(workContext(deps.outcomes, item, attempt, ctx.log)));
    if (outcome.status === 'done') return outcome.result;
    return replay(item, outcome.record, ctx.log);
  };
}

function workContext(outcomes: OutcomeStore, item: OnceItem, attempt: WorkAttempt, log: Logger): WorkContext {
  // `held.lease` is read at each write: the keeper renews it in between (same token, later expiry).
  const completing = (changes: readonly EntityChange[], result: Record<string, unknown>) =>
    outcomes.commit({
      lease: attempt.held.lease,
      workItem: { idempotencyKey: item.idempotencyKey, attemptId: attempt.attemptId, result },
      changes,
    });
  return {
    ...attempt,
    log,
    commit: (changes) => outcomes.commit({ lease: attempt.held.lease, changes }),
    complete: async (changes, verdict) => {
      const { status, ...answer } = verdict;
      await completing(changes, kept(status, answer));
      return completed(answer);
    },
    repeat: async (earlier) => {
      await completing([], kept(earlier.status, { action: 'dead-letter', code: earlier.code, detail: earlier.detail ?? '' }));
      return completed({ action: 'dead-letter', ...repeatedLetter(item.subject, earlier) });
    },
  };
}

/** The stored form of a verdict, `{ status, code?, detail? }`: what work items have always kept. */
function kept(status: string, v: Verdict): Record<string, unknown> {
  if (v.action === 'ack') return { status };
  return { status, code: v.code, ...(v.detail ? { detail: v.detail } : {}) };
}

/** The one place a verdict becomes {@link Completed}: called only once its work item is committed COMPLETED. */
function completed(answer: Verdict): Completed {
  return answer as Completed;
}

/** Read a completed work item's kept verdict (fields of other shapes are ignored). */
export function keptVerdictOf(result: Record<string, unknown> | undefined): { status?: string; code?: string; detail?: string } {
  const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  const [status, code, detail] = [text(result?.status), text(result?.code), text(result?.detail)];
  return { ...(status ? { status } : {}), ...(code ? { code } : {}), ...(detail ? { detail } : {}) };
}

/**
 * The letter a request gets when it was answered with a dead letter before: the same code, and a
 * detail that says so and carries what the first letter said.
 */
export function repeatedLetter(
  subject: string,
  earlier: { readonly status?: string; readonly code: string; readonly detail?: string },
): { code: string; detail: string } {
  const said = earlier.detail ? `; it said: ${earlier.detail}` : '';
  return {
    code: earlier.code,
    detail: `${subject} is already ${earlier.status ?? 'answered'} (${earlier.code}); this request was not processed again${said}`,
  };
}

async function replay(item: OnceItem, record: WorkItemRecord, log: Logger): Promise<HandlerResult> {
  const earlier = keptVerdictOf(record.result);
  const code = earlier.code ?? (earlier.status && item.codeOfOlderItem ? await item.codeOfOlderItem(earlier.status) : undefined);
  if (!code) {
    log.info({ idempotencyKey: item.idempotencyKey }, 'request already completed; acknowledging the duplicate');
    return { action: 'ack' };
  }
  log.warn(
    { idempotencyKey: item.idempotencyKey, code },
    'request already completed with a dead letter; dead-lettering it again, not acknowledging',
  );
  return { action: 'dead-letter', ...repeatedLetter(item.subject, { ...earlier, code }) };
}
