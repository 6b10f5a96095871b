/**
 * Domain errors of the exactly-once core (leases, work items, the atomic commit). They extend the
 * three branches of shared/errors.ts and carry the evidence the caller needs to decide — the
 * current lease holder, the existing item a condition failed on — taken from the failed write
 * itself (ReturnValuesOnConditionCheckFailure: ALL_OLD), never from a follow-up read.
 *
 * What each means for a worker:
 * - {@link LeaseLostError}: stop; hand the message back (visibility 0 or let it lapse). Never DLQ.
 * - {@link LeaseHeldError}: someone else is working on this key; defer until `retryAfterMs`.
 * - {@link ConflictError}: nothing was written; re-read and decide again (or, for part 'workItem',
 *   look at `existing`: COMPLETED means another attempt finished the job).
 * - {@link InvalidCommitError} / {@link CommitTooLargeError}: a bug in the caller; terminal.
 * - {@link CommitOutcomeUnknownError}: the commit may have been applied; call commit() again with
 *   the same request within 10 minutes (same ClientRequestToken, applied at most once).
 */
import { AmbiguousError, RetryableError, TerminalError } from '../errors.js';
import type { CommitConflictPart, Lease, LeaseHolder } from './ports.js';

/**
 * Our attempt lost its fence: the lease row names another owner or a newer fencing token, or it
 * expired by the committing process' clock. Retryable: the work must be handed back, not
 * dead-lettered (the new holder, or a later delivery, will do it).
 */
export class LeaseLostError extends RetryableError {
  readonly part = 'lease' as const;
  readonly leaseKey: string;
  /** The token we held. */
  readonly fencingToken: number;
  /** Who holds the row now, from the failed write (undefined if the row is gone). */
  readonly holder: LeaseHolder | undefined;
  constructor(
    lease: Pick<Lease, 'key' | 'owner' | 'fencingToken'>,
    holder: LeaseHolder | undefined,
    options?: { cause?: unknown; detail?: string },
  ) {
    const now = holder
      ? `now ${holder.owner ?? '(nobody)'} / token ${holder.fencingToken}, expires ${holder.expiresAtMs}`
      : 'row missing';
    super(
      'LEASE_LOST',
      `lease ${lease.key} (token ${lease.fencingToken}, owner ${lease.owner}) lost: ${options?.detail ?? now}`,
      options,
    );
    this.leaseKey = lease.key;
    this.fencingToken = lease.fencingToken;
    this.holder = holder;
  }
}

/** Another live owner holds the lease; `retryAfterMs` is how long until it would expire. */
export class LeaseHeldError extends RetryableError {
  readonly leaseKey: string;
  readonly holder: LeaseHolder;
  constructor(leaseKey: string, holder: LeaseHolder, nowMs: number) {
    super(
      'LEASE_HELD',
      `lease ${leaseKey} held by ${holder.owner ?? '(nobody)'} (token ${holder.fencingToken}) until ${holder.expiresAtMs}`,
      {
        retryAfterMs: Math.max(0, holder.expiresAtMs - nowMs),
      },
    );
    this.leaseKey = leaseKey;
    this.holder = holder;
  }
}

export type ConflictReason =
  /** A condition failed: the item changed since it was read (version, attemptId, existence). */
  | 'condition'
  /** DynamoDB's TransactionConflict: another transaction or write touched the item meanwhile. */
  | 'transaction';

/**
 * Optimistic concurrency lost, or a transaction conflict. Nothing of the request was written.
 * `part` names which part of the request refused, `key` its item key, `existing` the item as it
 * was when the condition failed (absent when the item does not exist or the reason is 'transaction').
 */
export class ConflictError extends RetryableError {
  readonly part: CommitConflictPart;
  readonly table: string | undefined;
  readonly key: Readonly<Record<string, unknown>>;
  readonly existing: Readonly<Record<string, unknown>> | undefined;
  readonly reason: ConflictReason;
  constructor(init: {
    part: CommitConflictPart;
    key: Record<string, unknown>;
    table?: string;
    existing?: Record<string, unknown>;
    reason: ConflictReason;
    cause?: unknown;
  }) {
    const what = init.reason === 'transaction' ? 'transaction conflict' : 'condition failed';
    super('CONFLICT', `${what} on ${init.part} ${JSON.stringify(init.key)}${init.table ? ` in ${init.table}` : ''}`, {
      cause: init.cause,
    });
    this.part = init.part;
    this.table = init.table;
    this.key = init.key;
    this.existing = init.existing;
    this.reason = init.reason;
  }
}

/** A commit request that can never succeed as written (caller bug). Terminal; nothing was sent. */
export class InvalidCommitError extends TerminalError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'INVALID_COMMIT', `invalid commit: ${problems.join('; ')}`, options);
    this.problems = problems;
  }
}

/** More than 100 items in one transaction (DynamoDB's limit). Terminal; nothing was sent. */
export class CommitTooLargeError extends InvalidCommitError {
  readonly itemCount: number;
  constructor(itemCount: number, limit: number) {
    super([`${itemCount} items exceed the transaction limit of ${limit}`], { code: 'COMMIT_TOO_LARGE' });
    this.itemCount = itemCount;
  }
}

/**
 * The commit was sent and no answer came back (timeouts, connection reset, 5xx after retries).
 * It may have been applied. Calling commit() again with the same request within 10 minutes
 * resends the identical TransactWriteItems with the same ClientRequestToken, so it is applied at
 * most once; after that window the commit's own conditions (work item, versions) refuse a repeat.
 */
export class CommitOutcomeUnknownError extends AmbiguousError {
  readonly clientRequestToken: string;
  constructor(clientRequestToken: string, options?: { cause?: unknown }) {
    super(
      'COMMIT_OUTCOME_UNKNOWN',
      `commit ${clientRequestToken}: outcome unknown; retry the same request to resolve it`,
      options,
    );
    this.clientRequestToken = clientRequestToken;
  }
}
