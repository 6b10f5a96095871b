/**
 * The row lease's layout on an entity row, shared by its DynamoDB and in-memory adapters
 * (dynamo-row-work.ts, memory-stores.ts) and by the commit (dynamo-outcomes.ts).
 *
 * On the row, beside the entity's own attributes (a charge):
 *
 *   leaseOwner?        the holder (removed on release)        leaseToken N        the fencing token, ADDed, never SET
 *   leaseAcquireId?    which write 1 took it (lost answers)    leaseExpiresAtMs N  by the taker's clock (0 once released)
 *   leaseAcquiredAtMs  when                                    createdBy?          the attempt whose write 1 created the row
 *   work:<key>         one work item per request: { status IN_PROGRESS|COMPLETED, attemptId, attempts, startedAtMs,
 *                      progress?, result?, completedAtMs? }
 *
 *   write 1  open: UpdateItem   lease free or expired AND work:<key> absent -> lease taken (token + 1),
 *                               work item begun, the entity created if absent; ALL_NEW is the read
 *   write 2  commit: one TransactWriteItems   the entity under its version + its events
 *                               + work:<key> COMPLETED + lease released,
 *                               if leaseOwner = me AND leaseToken = t AND leaseExpiresAtMs > now AND attemptId = mine
 *
 * These attributes belong to the engine: a commit may not set or remove them through an entity
 * change (commit-request.ts), and the entity handed to the work never carries them.
 */
import type { LeaseHolder, LeaseStore, RowRef, RowWorkStore, WorkItemRecord } from './ports.js';

export const LEASE_OWNER = 'leaseOwner';
export const LEASE_TOKEN = 'leaseToken';
export const LEASE_EXPIRES = 'leaseExpiresAtMs';
export const LEASE_ACQUIRE_ID = 'leaseAcquireId';
export const LEASE_ACQUIRED_AT = 'leaseAcquiredAtMs';
export const CREATED_BY = 'createdBy';
const WORK_PREFIX = 'work:';

const ENGINE = new Set([LEASE_OWNER, LEASE_TOKEN, LEASE_EXPIRES, LEASE_ACQUIRE_ID, LEASE_ACQUIRED_AT, CREATED_BY]);

/** The attribute holding the work item `workKey` on its row. */
export function workAttribute(workKey: string): string {
  return `${WORK_PREFIX}${workKey}`;
}

/** Whether `name` is one of the engine's attributes on an entity row. */
export function isEngineAttribute(name: string): boolean {
  return ENGINE.has(name) || name.startsWith(WORK_PREFIX);
}

/** The entity's own attributes: the row without the lease and the work items. */
export function entityOf(row: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(row).filter(([k]) => !isEngineAttribute(k)));
}

/** The lease on a row, as a holder (owner undefined once released). */
export function rowHolder(row: Record<string, unknown>): LeaseHolder {
  return {
    owner: typeof row[LEASE_OWNER] === 'string' ? row[LEASE_OWNER] : undefined,
    expiresAtMs: typeof row[LEASE_EXPIRES] === 'number' ? row[LEASE_EXPIRES] : 0,
    fencingToken: typeof row[LEASE_TOKEN] === 'number' ? row[LEASE_TOKEN] : 0,
  };
}

/** Whether the row's lease is held by someone at `nowMs` (an owner, not yet expired). */
export function rowLeaseLive(row: Record<string, unknown>, nowMs: number): boolean {
  const h = rowHolder(row);
  return h.owner !== undefined && !(h.expiresAtMs < nowMs);
}

/** The work item `workKey` kept on `row`, as a record. */
export function rowWorkItem(row: Record<string, unknown>, workKey: string): WorkItemRecord | undefined {
  const raw = row[workAttribute(workKey)];
  if (!raw || typeof raw !== 'object') return undefined;
  const w = raw as Record<string, unknown>;
  return {
    idempotencyKey: workKey,
    status: w.status === 'COMPLETED' ? 'COMPLETED' : 'IN_PROGRESS',
    attempts: typeof w.attempts === 'number' ? w.attempts : 0,
    ...(typeof w.attemptId === 'string' ? { attemptId: w.attemptId } : {}),
    ...(w.result && typeof w.result === 'object' ? { result: w.result as Record<string, unknown> } : {}),
    ...(w.progress && typeof w.progress === 'object' ? { progress: w.progress as Record<string, unknown> } : {}),
  };
}

/** Whether two row references name the same row. */
export function sameRow(a: RowRef, b: { table: string; key: Record<string, string> }): boolean {
  if (a.table !== b.table) return false;
  const ka = Object.keys(a.key);
  return ka.length === Object.keys(b.key).length && ka.every((k) => a.key[k] === b.key[k]);
}

/**
 * One LeaseStore for the keeper over both kinds of lease: a row lease (`lease.row`) is renewed and
 * released on its row, any other in the leases table. Acquire and inspect are the table's.
 */
export function routeLeases(table: LeaseStore, rows: Pick<RowWorkStore, 'renew' | 'release'>): LeaseStore {
  return {
    acquire: (key, owner, leaseMs) => table.acquire(key, owner, leaseMs),
    renew: (lease, leaseMs) => (lease.row ? rows.renew(lease, leaseMs) : table.renew(lease, leaseMs)),
    release: (lease) => (lease.row ? rows.release(lease) : table.release(lease)),
    inspect: (key) => table.inspect(key),
  };
}
