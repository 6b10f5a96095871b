/**
 * Ports of the exactly-once core. They speak the domain (leases, work items, outcomes); the
 * DynamoDB adapters beside them speak the SDK. Workers depend on these types only.
 *
 * How the pieces fence each other (one attempt of one work item):
 *
 *   worker A  acquire(charge#c1) -> token 7 ─ begin(auth#r1, token 7) ─ processor call ─ commit(fence: c1/7) ✓
 *   worker B                 acquire(charge#c1) ✗ held by A until t+30s (returned with the failure)
 *
 *   paused A  token 7 ──────── (GC pause, lease expires) ───────────────────── commit(fence c1/7) ✗ LeaseLostError
 *   worker B            acquire -> token 8 ─ begin(auth#r1, token 8: takes over A's IN_PROGRESS) ─ commit ✓
 */
import type { PayfleetError } from '../errors.js';

// ───────────────────────────── leases ─────────────────────────────

/** A lease held by this process. The fencing token grows by one on every successful acquire. */
export interface Lease {
  readonly key: string;
  readonly owner: string;
  readonly fencingToken: number;
  /** Epoch ms, by the acquiring process' clock. */
  readonly expiresAtMs: number;
  /**
   * A row lease: the lease lives on this entity row itself (RowWorkStore), not in the leases
   * table. Renew, release and the commit's fence then act on that row.
   */
  readonly row?: RowRef;
}

/** An entity row (a charge): the table and its key. */
export interface RowRef {
  readonly table: EntityTable;
  readonly key: Record<string, string>;
}

export type EntityTable = 'charges' | 'refunds' | 'payouts' | 'batches';

export interface LeaseHolder {
  readonly owner: string | undefined;
  readonly expiresAtMs: number;
  readonly fencingToken: number;
}

export type AcquireResult =
  | { readonly acquired: true; readonly lease: Lease }
  /** Who holds it and until when, taken from the failed conditional write itself (no second read). */
  | { readonly acquired: false; readonly holder: LeaseHolder };

export interface LeaseStore {
  /**
   * Take `key` if it is free, expired, or never existed. An acquire whose write applied but whose
   * answer was lost is recognised when it is retried (the same acquire, not merely the same owner)
   * and reported as acquired, with the row's fencing token; a lease held by anyone else —
   * another owner, or another acquire of the same owner — is reported as held.
   */
  acquire(key: string, owner: string, leaseMs: number): Promise<AcquireResult>;
  /** Extend a held lease. Throws {@link LeaseLostError} if another owner or token holds it now. */
  renew(lease: Lease, leaseMs: number): Promise<Lease>;
  /** Give a lease up (keeps the token so it stays monotonic). Never throws for a lease already lost. */
  release(lease: Lease): Promise<void>;
  /** Read a lease row (operators, tests). */
  inspect(key: string): Promise<LeaseHolder | undefined>;
}

// ─────────────────────── idempotency (work items) ───────────────────────

export type WorkItemState =
  /** First time seen, or taken over from an attempt whose holder lost its lease or deadline. */
  | { readonly status: 'started'; readonly attemptId: string; readonly attempts: number; readonly record: WorkItemRecord }
  /** Done before: acknowledge the message without redoing anything. */
  | { readonly status: 'completed'; readonly result: Record<string, unknown> | undefined; readonly record: WorkItemRecord }
  /** Another live attempt holds it (its deadline has not passed and it has the current fence). */
  | { readonly status: 'busy'; readonly record: WorkItemRecord };

export interface WorkItemRecord {
  readonly idempotencyKey: string;
  readonly status: 'IN_PROGRESS' | 'COMPLETED';
  readonly attemptId?: string;
  /** How many attempts began on this item (counts across deliveries and processes). */
  readonly attempts: number;
  /** Our own deadline for an IN_PROGRESS attempt, epoch ms (there is no Lambda context). */
  readonly expiresAtMs?: number;
  readonly fencingToken?: number;
  readonly result?: Record<string, unknown>;
  /** Free-form progress notes an attempt leaves for the next one (e.g. "authorise sent"). */
  readonly progress?: Record<string, unknown>;
}

export interface BeginOptions {
  /** Deadline for this attempt; after it another attempt may take over. */
  readonly deadlineMs: number;
  /** When the item is processed under a lease: a newer token may take over an older IN_PROGRESS at once. */
  readonly fencingToken?: number;
}

export interface IdempotencyStore {
  /**
   * Start (or take over) an attempt on a work item. A begin whose write applied but whose answer
   * was lost is recognised when it is retried (its own attemptId on the item) and reported as
   * `started`, never as `busy`; any other live attempt is `busy`.
   */
  begin(idempotencyKey: string, options: BeginOptions): Promise<WorkItemState>;
  /** Record progress on an in-progress attempt (fenced by attemptId). */
  note(idempotencyKey: string, attemptId: string, progress: Record<string, unknown>): Promise<void>;
  /** Read without changing (tests, CLI). */
  get(idempotencyKey: string): Promise<WorkItemRecord | undefined>;
}

// ─────────────────── row leases: lease + work item on the entity row ───────────────────

/**
 * What write 1 of an attempt asks for: take the row's lease and begin (or take over) the request's
 * work item on it, creating the row from `create` if it does not exist yet — one UpdateItem.
 */
export interface OpenRequest {
  readonly row: RowRef;
  /** The lease's name in errors, logs and the keeper (e.g. `charge#c1`). */
  readonly leaseKey: string;
  /** The request's work item (e.g. `auth#<authRequestId>`), kept on the row. */
  readonly workKey: string;
  readonly owner: string;
  readonly leaseMs: number;
  /**
   * The entity to create if the row does not exist (every attribute but the key; `version` and
   * `eventSeq` included). Absent: a missing row is reported `missing` and nothing is written.
   */
  readonly create?: Record<string, unknown>;
}

export type OpenResult =
  /** Lease taken, work item begun (first attempt or taken over); `entity` is the row as write 1 left it. */
  | {
      readonly status: 'started';
      readonly lease: Lease;
      readonly attemptId: string;
      readonly attempts: number;
      readonly progress: Record<string, unknown> | undefined;
      /** The entity's own attributes (lease and work items removed). */
      readonly entity: Record<string, unknown>;
      /** This very attempt created the row (from `create`). */
      readonly created: boolean;
    }
  /** The work item is COMPLETED: a duplicate, answered from its kept result; nothing was written. */
  | { readonly status: 'completed'; readonly record: WorkItemRecord }
  /** Another attempt holds the row's lease (from the failed write's ALL_OLD). */
  | { readonly status: 'held'; readonly holder: LeaseHolder }
  /** No such row and nothing to create. */
  | { readonly status: 'missing' };

/**
 * The row lease (docs/design.md "The row lease"): the lease (owner, fencing token, expiry) and the
 * work items of the requests about an entity live on the entity's own row. `open` is write 1;
 * the commit (OutcomeStore with `lease.row`) is write 2 — fenced by the row's own lease, completing
 * the work item and releasing the lease in the same transaction. `renew`/`release` serve the keeper.
 */
export interface RowWorkStore extends Pick<LeaseStore, 'renew' | 'release'> {
  open(request: OpenRequest): Promise<OpenResult>;
  /**
   * Delete a row this attempt created, before anything else was committed on it (a request refused
   * before any outbound call: nothing of it should remain). Fenced like a commit. Throws LeaseLostError.
   */
  discard(lease: Lease, attemptId: string): Promise<void>;
  /** The lease on a row (operators, tests). */
  inspect(row: RowRef): Promise<LeaseHolder | undefined>;
  /** A work item on a row (operators, tests). */
  workItem(row: RowRef, workKey: string): Promise<WorkItemRecord | undefined>;
}

// ───────────────────────────── outbox ─────────────────────────────

export type ResourceType = 'payment' | 'refund' | 'payout';

/** A ledger event as a worker asks for it; the commit assigns sequence, id and shard. */
export interface NewEvent {
  readonly eventType: string;
  readonly details: Record<string, unknown>;
}

/** A ledger event as stored in the outbox (events table). */
export interface StoredEvent {
  readonly eventId: string;
  readonly resourceType: ResourceType;
  readonly resourceId: string;
  /** The resource this one belongs to (a refund's chargeId); absent for top-level resources. */
  readonly parentResourceId?: string;
  readonly sequence: number;
  readonly eventType: string;
  /** ISO-8601 with microseconds. */
  readonly timestamp: string;
  readonly gatewayAccountId?: string;
  readonly live: boolean;
  readonly details: Record<string, unknown>;
  /** Present until the emitter has sent and marked the event. */
  readonly pendingShard?: string;
  readonly emittedAt?: string;
}

// ───────────────────────────── commit ─────────────────────────────

/** One entity a commit changes, under optimistic concurrency, with the ledger events it emits. */
export interface EntityChange {
  readonly table: EntityTable;
  readonly key: Record<string, string>;
  /** Version the caller read; 0 means "must not exist yet" (create). The commit writes expected+1. */
  readonly expectedVersion: number;
  /** Attributes to set (the full item for a create). Never card data. */
  readonly set: Record<string, unknown>;
  readonly remove?: readonly string[];
  /**
   * The ledger resource this entity is, when it emits events. Sequence numbers continue from the
   * entity's `eventSeq` attribute (read by the caller as `currentEventSeq`); the commit writes
   * `eventSeq = currentEventSeq + events.length`, so sequences have no gaps and no duplicates.
   */
  readonly resource?: {
    readonly type: ResourceType;
    readonly id: string;
    /** The parent resource (a refund's chargeId): `parent_resource_external_id` of its events. */
    readonly parentId?: string;
    readonly gatewayAccountId?: string;
    readonly live: boolean;
  };
  readonly currentEventSeq?: number;
  readonly events?: readonly NewEvent[];
}

export interface CommitRequest {
  /** The fence: the commit fails unless this lease is still held with this token (and unexpired). */
  readonly lease?: Lease;
  /** Completes a work item begun with IdempotencyStore.begin (fenced by attemptId). */
  readonly workItem?: { readonly idempotencyKey: string; readonly attemptId: string; readonly result?: Record<string, unknown> };
  /** Entities and their events; all-or-nothing. At most 100 items in all (DynamoDB's limit). */
  readonly changes: readonly EntityChange[];
  /**
   * A row lease (`lease.row`) is released by this very commit (the attempt's last write). Requires
   * `lease.row`; the work item, if any, is then the one on that row.
   */
  readonly release?: boolean;
}

export interface CommitResult {
  /** Events written, in the order of `changes` and then sequence. */
  readonly events: readonly StoredEvent[];
  /** New version of each change, in order. */
  readonly versions: readonly number[];
}

export interface OutcomeStore {
  /** One TransactWriteItems; idempotent on retry (ClientRequestToken). Throws a domain error on cancellation. */
  commit(change: CommitRequest): Promise<CommitResult>;
}

// ───────────────────────────── errors ─────────────────────────────

/** Which part of a commit refused it; carried by the commit errors. */
export type CommitConflictPart = 'lease' | 'workItem' | 'entity' | 'event' | 'extra';

export type CommitError = PayfleetError & { readonly part?: CommitConflictPart };
