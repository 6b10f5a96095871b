import { RetryableError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { systemClock, type Clock } from './clock.js';
import type { HandlerContext, HandlerResult } from './consumer.js';
import { LeaseHeldError } from './errors.js';
import type { HeldLease, LeaseKeeper } from './lease-keeper.js';
import type { CommitResult, EntityChange, IdempotencyStore, OutcomeStore, RowRef, RowWorkStore, WorkItemRecord } from './ports.js';

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
  /**
   * A row lease's entity as write 1 left it (created from `item.row.create` if it was absent), so
   * the work needs no read of its own. Undefined for work under a leases-table lease.
   */
  readonly entity?: Record<string, unknown>;
  /** Write 1 of this very attempt created the row (row leases only). */
  readonly created: boolean;
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
    const result = await work({ held, attemptId: state.attemptId, attempts, progress: state.record.progress, signal, created: false });
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
  /**
   * Delete the row this attempt's write 1 created, before anything was committed on it (a request
   * refused before any outbound call leaves nothing behind). Row leases only; throws otherwise.
   */
  discard(): Promise<void>;
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
  /**
   * The row lease: the lease and the work item live on this entity row (write 1 takes both and
   * reads the row; write 2 commits, completes and releases). Without it, the leases and
   * idempotency tables are used (three more calls per attempt).
   */
  readonly row?: RowItem;
}

/** Where a row-leased item lives and what write 1 does when the row is not there. */
export interface RowItem {
  readonly ref: RowRef;
  /** The entity to create if absent (every attribute but the key, `version`/`eventSeq` included). */
  readonly create?: Record<string, unknown>;
  /** The error when the row is absent and nothing is created (e.g. "not authorised yet"). */
  readonly missing?: () => Error;
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
  /** The row lease store, for items with `row` (the keeper's store must route row leases to it). */
  readonly rows?: RowWorkStore;
  /** Length of a row lease taken by write 1. @default attemptDeadlineMs */
  readonly leaseMs?: number;
}

/** Build once() over the stores (the worker kit does, once per process). */
export function createOnce(deps: OnceDeps): Once {
  return async (item, ctx, work) => {
    if (item.row) {
      const outcome = await processRowOnce(deps, item, item.row, ctx, work);
      if (outcome.status === 'done') return outcome.result;
      return replay(item, outcome.record, ctx.log);
    }
    const outcome = await processOnce(deps, item, ctx, (attempt) =>
      work(workContext(deps.outcomes, item, attempt, ctx.log, { release: false, discard: undefined })),
    );
    if (outcome.status === 'done') return outcome.result;
    return replay(item, outcome.record, ctx.log);
  };
}

/**
 * once() on a row lease — two writes on the happy path:
 *
 *   write 1  rows.open: lease + work item on the entity row (+ the entity created), ALL_NEW = the read
 *            completed: 'duplicate' (nothing written) · held: LeaseHeldError · missing: item.row.missing()
 *   work(w)  w.commit: fenced on the row, lease kept · w.complete/repeat: write 2, which also completes
 *            the work item and releases the lease — so no release call follows
 *   a throw, a deferral: the lease is released (one more write, off the happy path)
 */
async function processRowOnce(
  deps: OnceDeps,
  item: OnceItem,
  row: RowItem,
  hctx: OnceContext,
  work: (w: WorkContext) => Promise<WorkAnswer>,
): Promise<WorkOutcome<WorkAnswer>> {
  const now = deps.now ?? systemClock;
  if (!deps.rows) throw new TypeError(`once(${item.leaseKey}): a row-leased item needs the row store`);
  const rows = deps.rows;
  const opened = await rows.open({
    row: row.ref,
    leaseKey: item.leaseKey,
    workKey: item.idempotencyKey,
    owner: deps.ownerId,
    leaseMs: deps.leaseMs ?? deps.attemptDeadlineMs,
    ...(row.create ? { create: row.create } : {}),
  });
  switch (opened.status) {
    case 'completed':
      return { status: 'duplicate', record: opened.record };
    case 'held':
      throw new LeaseHeldError(item.leaseKey, opened.holder, now());
    case 'missing':
      throw row.missing?.() ?? new RetryableError('ROW_MISSING', `${item.subject} does not exist`);
    default:
      break;
  }
  const held = deps.keeper.hold(opened.lease);
  let gone = false;
  try {
    hctx.setAttempts(opened.attempts);
    const attempts = Math.max(1, opened.attempts - (hctx.uncountedAttempts ?? 0));
    const signal = AbortSignal.any([held.signal, hctx.signal]);
    const attempt: WorkAttempt = {
      held,
      attemptId: opened.attemptId,
      attempts,
      progress: opened.progress,
      signal,
      entity: opened.entity,
      created: opened.created,
    };
    const w = workContext(deps.outcomes, item, attempt, hctx.log, {
      release: true,
      onReleased: () => {
        gone = true;
      },
      discard: async () => {
        await rows.discard(held.lease, opened.attemptId);
        gone = true;
      },
    });
    return { status: 'done', result: await work(w) };
  } finally {
    // Released by write 2 (or the row discarded): stop the keeper, write nothing more.
    if (gone) held.drop();
    else await held.release();
  }
}

interface RowMode {
  /** complete()/repeat() release the lease in their commit (row leases). */
  readonly release: boolean;
  readonly onReleased?: () => void;
  readonly discard: (() => Promise<void>) | undefined;
}

function workContext(outcomes: OutcomeStore, item: OnceItem, attempt: WorkAttempt, log: Logger, mode: RowMode): WorkContext {
  // `held.lease` is read at each write: the keeper renews it in between (same token, later expiry).
  const completing = async (changes: readonly EntityChange[], result: Record<string, unknown>) => {
    const r = await outcomes.commit({
      lease: attempt.held.lease,
      workItem: { idempotencyKey: item.idempotencyKey, attemptId: attempt.attemptId, result },
      changes,
      ...(mode.release ? { release: true } : {}),
    });
    mode.onReleased?.();
    return r;
  };
  return {
    ...attempt,
    log,
    commit: (changes) => outcomes.commit({ lease: attempt.held.lease, changes }),
    discard: async () => {
      if (!mode.discard) throw new TypeError(`${item.subject}: discard() needs a row lease`);
      await mode.discard();
    },
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
