/**
 * The exactly-once stores in memory (shared/core/memory-stores.ts, held to the DynamoDB adapters by
 * the conformance suite) for unit tests of once() and of the handlers' decision tables: no emulator,
 * one process, a manual clock. Charges go through the row lease (lease + work item on the charge
 * row); other items through the leases and idempotency tables, as in production.
 */
import type { Charge } from '../../shared/charges/charge.js';
import type { ChargeRepository } from '../../shared/charges/repo.js';
import { manualClock, type ManualClock } from '../../shared/core/clock.js';
import { createLeaseKeeper, type LeaseKeeper } from '../../shared/core/lease-keeper.js';
import { createMemoryStores, type MemoryDatabase } from '../../shared/core/memory-stores.js';
import type {
  CommitRequest,
  IdempotencyStore,
  LeaseStore,
  NewEvent,
  OutcomeStore,
  RowRef,
  RowWorkStore,
  WorkItemRecord,
} from '../../shared/core/ports.js';
import {
  entityOf,
  LEASE_EXPIRES,
  LEASE_OWNER,
  LEASE_TOKEN,
  routeLeases,
  rowWorkItem,
  workAttribute,
} from '../../shared/core/row-lease.js';
import { createOnce, type Once } from '../../shared/core/work.js';

export interface FakeOnceStores {
  readonly clock: ManualClock;
  readonly db: MemoryDatabase;
  readonly leases: LeaseStore;
  readonly idempotency: IdempotencyStore;
  readonly rows: RowWorkStore;
  readonly outcomes: OutcomeStore;
  readonly keeper: LeaseKeeper;
  /** once() over these stores, as the worker kit builds it. */
  readonly once: Once;
  /** Charges as committed (read side for the handlers). */
  readonly charges: ChargeRepository;
  /** Every commit that was applied, in order. */
  readonly commits: CommitRequest[];
  /** Every write 1 (row open) made, in order: its row and work item. */
  readonly opens: { readonly row: RowRef; readonly workKey: string }[];
  /** Ledger events by resource id, in sequence. */
  events(resourceId: string): (NewEvent & { sequence: number })[];
  /** Work items by key, wherever they live (a charge row or the idempotency table). */
  readonly workItems: {
    get(key: string): WorkItemRecord | undefined;
    /** Forget every work item (as after their TTL, or a row written before they were kept there). */
    clear(): void;
  };
  /** Put a charge as if committed earlier (a starting state of a decision table row). */
  seedCharge(charge: Charge): void;
  /** Let another owner take `key` (as after this process paused past its lease). */
  steal(key: string, owner: string): void;
}

export function fakeOnceStores(options: { leaseMs?: number; attemptDeadlineMs?: number; ownerId?: string } = {}): FakeOnceStores {
  const clock = manualClock(Date.parse('2026-11-21T12:00:00Z'));
  const base = createMemoryStores({ now: clock.now });
  const { db } = base;
  const leaseMs = options.leaseMs ?? 30_000;
  const commits: CommitRequest[] = [];
  const opens: { row: RowRef; workKey: string }[] = [];
  const chargeIds = new Set<string>();
  const tableKeys = new Set<string>();

  const outcomes: OutcomeStore = {
    async commit(req) {
      const r = await base.outcomes.commit(req);
      commits.push(req);
      return r;
    },
  };
  const rows: RowWorkStore = {
    ...base.rows,
    async open(req) {
      if (req.row.table === 'charges' && req.row.key.chargeId) chargeIds.add(req.row.key.chargeId);
      opens.push({ row: req.row, workKey: req.workKey });
      return base.rows.open(req);
    },
  };
  const idempotency: IdempotencyStore = {
    ...base.idempotency,
    async begin(key, o) {
      tableKeys.add(key);
      return base.idempotency.begin(key, o);
    },
  };
  const keeper = createLeaseKeeper({ store: routeLeases(base.leases, rows), leaseMs, renewMs: leaseMs / 3, now: clock.now });
  const once = createOnce({
    keeper,
    idempotency,
    outcomes,
    rows,
    ownerId: options.ownerId ?? 'unit-test',
    attemptDeadlineMs: options.attemptDeadlineMs ?? leaseMs,
    leaseMs,
    now: clock.now,
  });
  const chargeRow = (chargeId: string) => db.get('charges', { chargeId });
  return {
    clock,
    db,
    leases: base.leases,
    idempotency,
    rows,
    outcomes,
    keeper,
    once,
    charges: {
      async get(chargeId) {
        const row = chargeRow(chargeId);
        return row ? (entityOf(row) as unknown as Charge) : undefined;
      },
    },
    commits,
    opens,
    events: (id) =>
      db.query('events', id).map((e) => ({ eventType: String(e.eventType), details: e.details as Record<string, unknown>, sequence: Number(e.sequence) })),
    workItems: {
      get(key) {
        for (const chargeId of chargeIds) {
          const row = chargeRow(chargeId);
          const item = row ? rowWorkItem(row, key) : undefined;
          if (item) return item;
        }
        const item = db.get('idempotency', { idempotencyKey: key });
        return item ? (item as unknown as WorkItemRecord) : undefined;
      },
      clear() {
        for (const chargeId of chargeIds) {
          const row = chargeRow(chargeId);
          if (!row) continue;
          db.put('charges', Object.fromEntries(Object.entries(row).filter(([k]) => !k.startsWith(workAttribute('')))));
        }
        for (const key of tableKeys) db.delete('idempotency', { idempotencyKey: key });
      },
    },
    seedCharge(charge) {
      chargeIds.add(charge.chargeId);
      db.put('charges', structuredClone({ ...charge }) as unknown as Record<string, unknown>);
    },
    steal(key, owner) {
      const chargeId = key.startsWith('charge#') ? key.slice('charge#'.length) : undefined;
      const row = chargeId ? chargeRow(chargeId) : undefined;
      if (chargeId && row) {
        const token = typeof row[LEASE_TOKEN] === 'number' ? row[LEASE_TOKEN] : 0;
        db.put('charges', { ...row, [LEASE_OWNER]: owner, [LEASE_TOKEN]: token + 1, [LEASE_EXPIRES]: clock.now() + leaseMs });
        return;
      }
      const lease = db.get('leases', { leaseKey: key });
      const token = typeof lease?.fencingToken === 'number' ? lease.fencingToken : 0;
      db.put('leases', { ...lease, leaseKey: key, owner, fencingToken: token + 1, expiresAtMs: clock.now() + leaseMs });
    },
  };
}
