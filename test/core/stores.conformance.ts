/**
 * ONE set of cases for the three stores of the exactly-once core (shared/core/ports.ts), run
 * against every implementation: the DynamoDB stores on DynamoDB Local (dynamo-stores.test.ts) and
 * the in-memory ones (memory-stores.test.ts). A unit test that uses the memory stores may trust
 * them exactly as far as these cases go: what is proven here holds for both.
 *
 * A harness gives one "process" (its own clock, its own store instances) over the shared tables,
 * so a case can pause one process (freeze its clock) while another moves on:
 *
 *   A  acquire(c1) tok n ─ begin(r1, n) ─ ░░░░░ paused (its clock frozen) ░░░░░ ─ commit ✗ LeaseLostError
 *   B                              (31 s later) acquire(c1) tok n+1 ─ begin(r1, n+1) ─ commit ✓
 */
import { describe } from 'vitest';
import type { Clock } from '../../shared/core/clock.js';
import type { IdempotencyStore, LeaseStore, OutcomeStore, RowWorkStore } from '../../shared/core/ports.js';
import type { TableKey } from '../../shared/resources.js';
import { commitCases } from './stores.conformance.commit.js';
import { idempotencyCases, leaseCases } from './stores.conformance.leases.js';
import { rowCases } from './stores.conformance.rows.js';

/** One process' stores over the harness' tables. */
export interface StoreProcess {
  readonly leases: LeaseStore;
  readonly idempotency: IdempotencyStore;
  readonly outcomes: OutcomeStore;
  readonly rows: RowWorkStore;
}

export type Row = Record<string, unknown>;

export interface StoreHarness {
  /** A process with its own clock (real time when none is given) and its own store instances. */
  process(options?: { now?: Clock; newAttemptId?: () => string }): StoreProcess;
  /** The table name errors report (ConflictError.table). */
  table(key: TableKey): string;
  /** A row as stored (a consistent read), or undefined. */
  row(table: TableKey, key: Row): Promise<Row | undefined>;
  /** A resource's outbox rows, by sequence. */
  events(resourceId: string): Promise<Row[]>;
  /** Write a row directly, around the stores (a stray row in a commit's way). */
  put(table: TableKey, item: Row): Promise<void>;
  delete(table: TableKey, key: Row): Promise<void>;
}

/** The unit names the cases are reported under: describe('DynamoLeaseStore') > describe('acquire()') > it(...). */
export interface StoreNames {
  readonly leases: string;
  readonly idempotency: string;
  readonly outcomes: string;
  readonly rows: string;
}

/**
 * Declare the conformance cases for one implementation. `harness` is called once, when the
 * first case runs (after the file's beforeAll: the DynamoDB harness needs its stack).
 */
export function describeStoreConformance(names: StoreNames, harness: () => StoreHarness): void {
  let made: StoreHarness | undefined;
  const get = () => {
    made ??= harness();
    return made;
  };
  const h: StoreHarness = {
    process: (o) => get().process(o),
    table: (k) => get().table(k),
    row: (t, k) => get().row(t, k),
    events: (r) => get().events(r),
    put: (t, i) => get().put(t, i),
    delete: (t, k) => get().delete(t, k),
  };
  describe(names.leases, () => leaseCases(h));
  describe(names.idempotency, () => idempotencyCases(h));
  describe(names.outcomes, () => commitCases(h));
  describe(names.rows, () => rowCases(h));
}
