/**
 * Every queue and table of the fleet, as data. Bootstrap creates them from this; infra/ (CDK)
 * declares them from this; workers resolve names from it. One source of truth for names and keys.
 *
 * Table design (the contract leaves it to us; docs/design.md explains it):
 *
 * | table        | PK             | SK          | GSIs                                        | TTL   |
 * |--------------|----------------|-------------|---------------------------------------------|-------|
 * | leases       | leaseKey  S    | -           | -                                           | ttl   |
 * | idempotency  | idempotencyKey | -           | -                                           | ttl   |
 * | charges      | chargeId  S    | -           | awaiting-capture (captureQueue S, captureDueAt S) | - |
 * | refunds      | refundId  S    | -           | by-charge (chargeId S, createdAt S)         | ttl   |
 * | events       | resourceId S   | sequence N  | pending (pendingShard S, pendingKey S)      | -     |
 * | payouts      | paymentId S    | -           | initiable (initiableShard S, receivedAt S)  | -     |
 * | batches      | batchId S      | -           | by-message-request (messageRequestId S)     | -     |
 */

export const QUEUE_KEYS = ['auth-requests', 'capture-requests', 'refund-requests', 'payout-events', 'ledger-events'] as const;
export type QueueKey = (typeof QUEUE_KEYS)[number];

/** Queues that have a DLQ (docs/contract.md §1): the four the fleet consumes. */
export const QUEUES_WITH_DLQ: readonly QueueKey[] = ['auth-requests', 'capture-requests', 'refund-requests', 'payout-events'];

export const TABLE_KEYS = ['leases', 'idempotency', 'charges', 'refunds', 'events', 'payouts', 'batches'] as const;
export type TableKey = (typeof TABLE_KEYS)[number];

export type AttrType = 'S' | 'N';

export interface IndexDef {
  readonly name: string;
  readonly partitionKey: { readonly name: string; readonly type: AttrType };
  readonly sortKey?: { readonly name: string; readonly type: AttrType };
}

export interface TableDef {
  readonly key: TableKey;
  readonly partitionKey: { readonly name: string; readonly type: AttrType };
  readonly sortKey?: { readonly name: string; readonly type: AttrType };
  readonly indexes: readonly IndexDef[];
  /** Attribute holding an epoch-seconds expiry, when records expire. */
  readonly ttlAttribute?: string;
}

export const TABLES: Readonly<Record<TableKey, TableDef>> = {
  leases: {
    key: 'leases',
    partitionKey: { name: 'leaseKey', type: 'S' },
    indexes: [],
    ttlAttribute: 'ttl',
  },
  idempotency: {
    key: 'idempotency',
    partitionKey: { name: 'idempotencyKey', type: 'S' },
    indexes: [],
    ttlAttribute: 'ttl',
  },
  charges: {
    key: 'charges',
    partitionKey: { name: 'chargeId', type: 'S' },
    indexes: [
      {
        name: 'awaiting-capture',
        partitionKey: { name: 'captureQueue', type: 'S' },
        sortKey: { name: 'captureDueAt', type: 'S' },
      },
    ],
  },
  refunds: {
    key: 'refunds',
    // Keyed by refundId: the row is the refund (its lease and its requests' work items live on it);
    // by-charge lists a charge's refunds (only rows that became refunds carry chargeId).
    partitionKey: { name: 'refundId', type: 'S' },
    indexes: [
      {
        name: 'by-charge',
        partitionKey: { name: 'chargeId', type: 'S' },
        sortKey: { name: 'createdAt', type: 'S' },
      },
    ],
    // Only a bare reservation carries `ttl` (a row a request opened but never turned into a refund,
    // e.g. one refused as an over-refund); the commit that makes it a refund removes it.
    ttlAttribute: 'ttl',
  },
  events: {
    key: 'events',
    partitionKey: { name: 'resourceId', type: 'S' },
    sortKey: { name: 'sequence', type: 'N' },
    indexes: [
      {
        name: 'pending',
        partitionKey: { name: 'pendingShard', type: 'S' },
        sortKey: { name: 'pendingKey', type: 'S' },
      },
    ],
  },
  payouts: {
    key: 'payouts',
    // Keyed by paymentId: the row itself is the "one payout per paymentId" claim (docs/payouts.md §1).
    partitionKey: { name: 'paymentId', type: 'S' },
    indexes: [
      {
        name: 'initiable',
        partitionKey: { name: 'initiableShard', type: 'S' },
        sortKey: { name: 'receivedAt', type: 'S' },
      },
    ],
  },
  batches: {
    key: 'batches',
    partitionKey: { name: 'batchId', type: 'S' },
    indexes: [{ name: 'by-message-request', partitionKey: { name: 'messageRequestId', type: 'S' } }],
  },
};

export interface ResourceNames {
  readonly prefix: string;
  /** Queue name (with `.fifo`) for a queue key. */
  queue(key: QueueKey): string;
  /** DLQ name for a queue key. */
  dlq(key: QueueKey): string;
  table(key: TableKey): string;
}

export function resourceNames(prefix: string): ResourceNames {
  return Object.freeze({
    prefix,
    queue: (key: QueueKey) => `${prefix}${key}.fifo`,
    dlq: (key: QueueKey) => `${prefix}${key}-dlq.fifo`,
    table: (key: TableKey) => `${prefix}${key}`,
  });
}

/** Map a queue name (with or without prefix, with or without .fifo, or a DLQ name) to its key. */
export function parseQueueKey(input: string, prefix: string): { key: QueueKey; dlq: boolean } | undefined {
  let name = input.includes('/') ? input.slice(input.lastIndexOf('/') + 1) : input;
  if (name.startsWith(prefix)) name = name.slice(prefix.length);
  name = name.replace(/\.fifo$/, '');
  const dlq = name.endsWith('-dlq');
  if (dlq) name = name.slice(0, -4);
  return (QUEUE_KEYS as readonly string[]).includes(name) ? { key: name as QueueKey, dlq } : undefined;
}

/** Lease key of payout shard `n` (rows created by bootstrap; the "configuration table"). */
export const payoutShardKey = (n: number): string => `payout-shard#${String(n).padStart(3, '0')}`;
/** Lease key of ledger outbox shard `n`. */
export const ledgerShardKey = (n: number): string => `ledger-shard#${String(n).padStart(3, '0')}`;
