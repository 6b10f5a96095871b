/**
 * What each worker may touch, as data: the source of its least-privilege IAM task role, and what
 * test/infra checks the synthesised policies against. Derived from the code each worker runs:
 *
 * - every consumer (shared/core/consumer.ts on sqs-consumer, sqs-batcher.ts): ReceiveMessage,
 *   DeleteMessage(Batch), ChangeMessageVisibility(Batch) on its queue; GetQueueUrl and
 *   GetQueueAttributes (worker-kit resolves URLs and its readiness check reads the queue);
 *   SendMessage + GetQueueUrl on its own DLQ (shared/core/dlq.ts).
 * - the worker kit: leases (dynamo-leases.ts: UpdateItem acquire/renew/release, GetItem inspect and
 *   the DynamoDB breaker's probe, ConditionCheckItem as the fence inside every commit), events (the
 *   commit Puts outbox rows: PutItem only). No worker reaches the `idempotency` table: every once()
 *   item of auth, capture and refund carries its row (the lease and the work item live on the
 *   entity row, dynamo-row-work.ts), and payout and the ledger do not use once() at all.
 * - entity tables through the commit (dynamo-outcomes.ts: Put for a new entity, Update for the
 *   next version) and the repositories (GetItem, consistent reads); auth alone deletes, and only the
 *   charge row its own attempt created (dynamo-row-work.ts discard, conditioned on that attempt).
 * - ledger (workers/ledger/dynamo-outbox.ts, sqs-publisher.ts): Query/Scan on events/index/pending,
 *   Query on events (a resource's earlier events), BatchWriteItem (mark emitted: whole-row Puts,
 *   25 per call; IAM cannot limit it to Puts, so it could delete events rows too: the one such
 *   grant, on rows this role may already rewrite with UpdateItem), UpdateItem (mark a row it did
 *   not read, back-off, rehome),
 *   UpdateItem on the membership row in leases; SendMessage(Batch) to ledger-events.
 *
 * DynamoDB has no TransactWriteItems permission of its own: each item of a transaction is
 * authorised by its own action (PutItem, UpdateItem, ConditionCheckItem), so those are listed.
 */
import type { QueueKey, TableKey } from '../shared/resources.js';
import type { WorkerName } from './config.js';

export type TableAction =
  | 'GetItem'
  | 'BatchGetItem'
  | 'BatchWriteItem'
  | 'PutItem'
  | 'UpdateItem'
  | 'DeleteItem'
  | 'ConditionCheckItem'
  | 'Query'
  | 'Scan';
export type IndexAction = 'Query' | 'Scan';

export interface TableGrant {
  readonly table: TableKey;
  readonly actions: readonly TableAction[];
  /** Per index: the read actions allowed on `table/index/<name>`. */
  readonly indexes?: Readonly<Record<string, readonly IndexAction[]>>;
}

export interface WorkerAccess {
  /** The queue the worker consumes (its DLQ comes with it). */
  readonly consumes?: QueueKey;
  /** Queues the worker sends to (besides its own DLQ). */
  readonly sendsTo: readonly QueueKey[];
  readonly tables: readonly TableGrant[];
}

/** SQS actions of a consumer on its source queue. */
export const CONSUMER_QUEUE_ACTIONS = [
  'sqs:ReceiveMessage',
  'sqs:DeleteMessage',
  'sqs:ChangeMessageVisibility',
  'sqs:GetQueueUrl',
  'sqs:GetQueueAttributes',
] as const;
/** SQS actions of a consumer on its own DLQ. */
export const DLQ_ACTIONS = ['sqs:SendMessage', 'sqs:GetQueueUrl'] as const;
/** SQS actions of a producer on a queue it sends to. */
export const PRODUCER_QUEUE_ACTIONS = ['sqs:SendMessage', 'sqs:GetQueueUrl', 'sqs:GetQueueAttributes'] as const;

/** Every worker fences commits on, renews and releases leases. */
const LEASES: TableGrant = { table: 'leases', actions: ['GetItem', 'UpdateItem', 'ConditionCheckItem'] };
/** Every state change writes its ledger events into the outbox, in the same transaction. */
const OUTBOX_WRITE: TableGrant = { table: 'events', actions: ['PutItem'] };

export const WORKER_ACCESS: Readonly<Record<WorkerName, WorkerAccess>> = {
  auth: {
    consumes: 'auth-requests',
    sendsTo: [],
    tables: [
      LEASES,
      // DeleteItem: a request refused before any processor call (token unknown or expired) takes
      // back the charge its own write 1 created — a conditional delete on this attempt's id and its
      // live lease (shared/core/dynamo-row-work.ts discard), so it cannot remove any other row.
      { table: 'charges', actions: ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem'] },
      OUTBOX_WRITE,
    ],
  },
  capture: {
    consumes: 'capture-requests',
    sendsTo: [],
    tables: [
      LEASES,
      // awaiting-capture: the overdue-captures gauge and the retry schedule read it.
      { table: 'charges', actions: ['GetItem', 'PutItem', 'UpdateItem'], indexes: { 'awaiting-capture': ['Query'] } },
      OUTBOX_WRITE,
    ],
  },
  refund: {
    consumes: 'refund-requests',
    sendsTo: [],
    tables: [
      LEASES,
      // workers/refund: the refund row is opened, leased and committed with UpdateItem only; a
      // reservation that never became a refund is left to the table's TTL, not deleted.
      { table: 'refunds', actions: ['GetItem', 'UpdateItem'] },
      // The charge is read, and its refundedAmount written in the refund's commit (UpdateItem only).
      { table: 'charges', actions: ['GetItem', 'UpdateItem'] },
      OUTBOX_WRITE,
    ],
  },
  payout: {
    consumes: 'payout-events',
    sendsTo: [],
    tables: [
      LEASES,
      // workers/payout/repo.ts: payouts by paymentId (one, or a batch's worth with BatchGetItem);
      // initiable lists what a shard may put in the next batch.
      {
        table: 'payouts',
        actions: ['GetItem', 'BatchGetItem', 'PutItem', 'UpdateItem'],
        indexes: { initiable: ['Query'] },
      },
      { table: 'batches', actions: ['GetItem', 'PutItem', 'UpdateItem'], indexes: { 'by-message-request': ['Query'] } },
      OUTBOX_WRITE,
    ],
  },
  ledger: {
    sendsTo: ['ledger-events'],
    tables: [
      LEASES,
      { table: 'events', actions: ['BatchWriteItem', 'GetItem', 'Query', 'UpdateItem'], indexes: { pending: ['Query', 'Scan'] } },
    ],
  },
};

/** The one-off bootstrap task verifies structure (CDK owns it) and writes the shard rows only. */
export const BOOTSTRAP_ACCESS = {
  queueActions: ['sqs:GetQueueUrl', 'sqs:GetQueueAttributes'],
  tableActions: ['dynamodb:DescribeTable', 'dynamodb:DescribeTimeToLive'],
  /** Shard rows are conditional Puts into the leases table. */
  leaseRowActions: ['dynamodb:PutItem'],
} as const;
