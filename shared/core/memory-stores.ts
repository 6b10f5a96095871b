/**
 * The ports of ports.ts in memory: LeaseStore, IdempotencyStore and OutcomeStore with the
 * semantics of their DynamoDB adapters (dynamo-leases.ts, dynamo-idempotency.ts,
 * dynamo-outcomes.ts), held to them by one conformance suite run against both
 * (test/core/stores.conformance.ts). For unit tests at the ports — decision tables, the lease
 * keeper, processOnce — with no emulator and no I/O.
 *
 * One MemoryDatabase is "the tables": rows with the same attribute names as the DynamoDB rows
 * (so `existing` and `holder` evidence reads the same). Each store is one process' view of it, with
 * its own clock, as two workers share the tables but not their clocks:
 *
 *   db ─┬─ A: acquire(c1) tok 7 ─ begin(r1, 7) ░░ paused: clock A frozen ░░ commit(fence c1/7) ✗ LeaseLostError
 *       └─ B:               (clock B 31 s on) acquire(c1) tok 8 ─ begin(r1, 8) takes over ─ commit ✓
 *
 * Every operation runs to completion without awaiting anything, so racing calls are serialised
 * exactly as conditional writes on one item (or one transaction) are, and a commit is all or
 * nothing. Values are copied in and out, as a round trip through DynamoDB would (undefined dropped).
 *
 * What DynamoDB does that these stores never do: lose answers (so there is no acquire-id /
 * attempt-id recognition of a resend, and no reclaim of a lease whose release was not sent),
 * TransactionConflict between racing transactions, throttling, TTL expiry.
 */
import { randomUUID } from 'node:crypto';
import { TABLES, type ResourceNames, type TableKey } from '../resources.js';
import { systemClock, type Clock } from './clock.js';
import { commitFingerprint, definedOnly, stableJson, validateCommit } from './commit-request.js';
import { toRecord } from './dynamo-idempotency.js';
import { toHolder } from './dynamo-leases.js';
import { ConflictError, LeaseLostError } from './errors.js';
import { createOutbox, DEFAULT_LEDGER_SHARDS } from './outbox.js';
import type { CommitResult, IdempotencyStore, LeaseStore, OpenResult, OutcomeStore, RowWorkStore, WorkItemState } from './ports.js';
import {
  CREATED_BY,
  entityOf,
  LEASE_ACQUIRE_ID,
  LEASE_ACQUIRED_AT,
  LEASE_EXPIRES,
  LEASE_OWNER,
  LEASE_TOKEN,
  rowHolder,
  rowLeaseLive,
  rowWorkItem,
  sameRow,
  workAttribute,
} from './row-lease.js';

type Item = Record<string, unknown>;

/** The tables, in memory. Test set-up may write rows directly (a stray row, a shard lease row). */
export interface MemoryDatabase {
  /** A copy of the row at `key` (its key attributes), or undefined. */
  get(table: TableKey, key: Item): Item | undefined;
  /** Write `item` as it is, replacing any row at its key. */
  put(table: TableKey, item: Item): void;
  delete(table: TableKey, key: Item): void;
  /** Copies of the rows whose partition key is `partitionValue`, by sort key (a resource's events). */
  query(table: TableKey, partitionValue: unknown): Item[];
}

export function createMemoryDatabase(): MemoryDatabase {
  const tables = new Map<TableKey, Map<string, Item>>();
  const rows = (table: TableKey) => {
    const t = tables.get(table) ?? new Map<string, Item>();
    tables.set(table, t);
    return t;
  };
  const keyNames = (table: TableKey) => {
    const def = TABLES[table];
    return [def.partitionKey.name, ...(def.sortKey ? [def.sortKey.name] : [])];
  };
  const idOf = (table: TableKey, key: Item) => {
    const values = keyNames(table).map((k) => key[k]);
    if (values.some((v) => v === undefined || v === '')) throw new TypeError(`${table}: key needs ${keyNames(table).join(' + ')}`);
    return stableJson(values);
  };
  return {
    get: (table, key) => {
      const row = rows(table).get(idOf(table, key));
      return row ? copy(row) : undefined;
    },
    put: (table, item) => void rows(table).set(idOf(table, item), copy(item)),
    delete: (table, key) => void rows(table).delete(idOf(table, key)),
    query: (table, partitionValue) => {
      const [pk, sk] = keyNames(table);
      const found = [...rows(table).values()].filter((r) => r[pk!] === partitionValue).map(copy);
      return sk ? found.sort((a, b) => (a[sk]! < b[sk]! ? -1 : a[sk]! > b[sk]! ? 1 : 0)) : found;
    },
  };
}

export interface MemoryStoreOptions {
  readonly db: MemoryDatabase;
  /** This process' clock. @default Date.now */
  readonly now?: Clock;
  /** Table names as errors report them (ConflictError.table), like the DynamoDB stores. @default the table key */
  readonly names?: Pick<ResourceNames, 'table'>;
}

/** LeaseStore over `db`: see dynamo-leases.ts for the row and its timeline. */
export function createMemoryLeaseStore(options: MemoryStoreOptions): LeaseStore {
  const { db } = options;
  const now = options.now ?? systemClock;
  return {
    async acquire(key, owner, leaseMs) {
      assertLeaseMs(leaseMs);
      const t = now();
      const row = db.get('leases', { leaseKey: key });
      // Free if it never existed, was released (expiresAtMs 0) or expired by our clock.
      if (row && !lessThan(row.expiresAtMs, t)) return { acquired: false, holder: toHolder(row) };
      // The token only ever grows (DynamoDB's ADD): across releases, expiries and takeovers.
      const fencingToken = num(row?.fencingToken) + 1;
      const expiresAtMs = t + leaseMs;
      db.put('leases', { ...row, leaseKey: key, owner, fencingToken, expiresAtMs, acquiredAtMs: t });
      return { acquired: true, lease: { key, owner, fencingToken, expiresAtMs } };
    },

    async renew(lease, leaseMs) {
      assertLeaseMs(leaseMs);
      const expiresAtMs = now() + leaseMs;
      const row = db.get('leases', { leaseKey: lease.key });
      // Renewing after our own expiry is fine if nobody acquired meanwhile: any acquire bumps the token.
      if (!row || row.owner !== lease.owner || row.fencingToken !== lease.fencingToken) {
        throw new LeaseLostError(lease, row ? toHolder(row) : undefined);
      }
      db.put('leases', { ...row, expiresAtMs });
      return { ...lease, expiresAtMs };
    },

    async release(lease) {
      const row = db.get('leases', { leaseKey: lease.key });
      // Lost already (someone else holds it, or it is gone): nothing of ours to give back.
      if (!row || row.owner !== lease.owner || row.fencingToken !== lease.fencingToken) return;
      const { owner: _owner, acquireId: _id, ...kept } = row;
      db.put('leases', { ...kept, expiresAtMs: 0 }); // the token stays: the next acquire adds to it
    },

    async inspect(key) {
      const row = db.get('leases', { leaseKey: key });
      return row ? toHolder(row) : undefined;
    },
  };
}

/** IdempotencyStore over `db`: see dynamo-idempotency.ts for the record and its timeline. */
export function createMemoryIdempotencyStore(options: MemoryStoreOptions & { readonly newAttemptId?: () => string }): IdempotencyStore {
  const { db } = options;
  const now = options.now ?? systemClock;
  const newAttemptId = options.newAttemptId ?? randomUUID;
  const table = tableName(options, 'idempotency');
  return {
    async begin(idempotencyKey, { deadlineMs, fencingToken }) {
      const t = now();
      const item = db.get('idempotency', { idempotencyKey });
      const fenced = fencingToken !== undefined;
      // Take over an IN_PROGRESS attempt when it ran out of time, or when we hold a newer fence
      // (its holder lost the lease, so it cannot commit anyway). COMPLETED is never taken over.
      const takeover =
        item?.status === 'IN_PROGRESS' && (lessThan(item.expiresAtMs, t) || (fenced && lessThan(item.fencingToken, fencingToken)));
      if (item && !takeover) {
        const record = toRecord(item);
        if (record.status === 'COMPLETED') return { status: 'completed', result: record.result, record } satisfies WorkItemState;
        return { status: 'busy', record } satisfies WorkItemState;
      }
      const attemptId = newAttemptId();
      // progress is kept on takeover: it is the note the previous attempt left for this one.
      const { fencingToken: _old, ...rest } = item ?? {};
      const next: Item = {
        ...rest,
        idempotencyKey,
        status: 'IN_PROGRESS',
        attemptId,
        expiresAtMs: deadlineMs,
        startedAtMs: t,
        attempts: num(item?.attempts) + 1,
        ...(fenced ? { fencingToken } : {}),
      };
      db.put('idempotency', next);
      const record = toRecord(next);
      return { status: 'started', attemptId, attempts: record.attempts, record } satisfies WorkItemState;
    },

    async note(idempotencyKey, attemptId, progress) {
      const item = db.get('idempotency', { idempotencyKey });
      if (!item || item.attemptId !== attemptId || item.status !== 'IN_PROGRESS') {
        // Our attempt was taken over (or completed by another): stop, like a lost lease.
        throw new ConflictError({ part: 'workItem', key: { idempotencyKey }, table, reason: 'condition', ...(item ? { existing: item } : {}) });
      }
      db.put('idempotency', { ...item, progress });
    },

    async get(idempotencyKey) {
      const item = db.get('idempotency', { idempotencyKey });
      return item ? toRecord(item) : undefined;
    },
  };
}

/**
 * RowWorkStore over `db`: see dynamo-row-work.ts for write 1 and its answers. Lost answers never
 * happen here, so an open is never recognised as a resend of our own.
 */
export function createMemoryRowWorkStore(options: MemoryStoreOptions & { readonly newAttemptId?: () => string }): RowWorkStore {
  const { db } = options;
  const now = options.now ?? systemClock;
  const newAttemptId = options.newAttemptId ?? randomUUID;
  return {
    async open(req) {
      assertLeaseMs(req.leaseMs);
      const t = now();
      const old = db.get(req.row.table, req.row.key);
      if (!old && !req.create) return { status: 'missing' } satisfies OpenResult;
      const item = old ? rowWorkItem(old, req.workKey) : undefined;
      if (item?.status === 'COMPLETED') return { status: 'completed', record: item } satisfies OpenResult;
      if (old && rowLeaseLive(old, t)) return { status: 'held', holder: rowHolder(old) } satisfies OpenResult;
      const attemptId = newAttemptId();
      const attempts = (item?.attempts ?? 0) + 1;
      const attr = workAttribute(req.workKey);
      const next: Item = { ...(old ? {} : { ...req.create, [CREATED_BY]: attemptId }), ...old, ...req.row.key };
      next[LEASE_OWNER] = req.owner;
      next[LEASE_ACQUIRE_ID] = attemptId;
      next[LEASE_EXPIRES] = t + req.leaseMs;
      next[LEASE_ACQUIRED_AT] = t;
      next[LEASE_TOKEN] = num(old?.[LEASE_TOKEN]) + 1;
      // progress is kept on takeover: it is the note the previous attempt left for this one.
      next[attr] = { ...(old?.[attr] as Item | undefined), status: 'IN_PROGRESS', attemptId, attempts, startedAtMs: t };
      db.put(req.row.table, next);
      const stored = db.get(req.row.table, req.row.key)!;
      return {
        status: 'started',
        lease: { key: req.leaseKey, owner: req.owner, fencingToken: num(stored[LEASE_TOKEN]), expiresAtMs: t + req.leaseMs, row: req.row },
        attemptId,
        attempts,
        progress: rowWorkItem(stored, req.workKey)?.progress,
        entity: entityOf(stored),
        created: req.create !== undefined && stored[CREATED_BY] === attemptId,
      } satisfies OpenResult;
    },

    async renew(lease, leaseMs) {
      assertLeaseMs(leaseMs);
      const row = lease.row ? db.get(lease.row.table, lease.row.key) : undefined;
      if (!lease.row || !row || row[LEASE_OWNER] !== lease.owner || row[LEASE_TOKEN] !== lease.fencingToken) {
        throw new LeaseLostError(lease, row ? rowHolder(row) : undefined);
      }
      const expiresAtMs = now() + leaseMs;
      db.put(lease.row.table, { ...row, [LEASE_EXPIRES]: expiresAtMs });
      return { ...lease, expiresAtMs };
    },

    async release(lease) {
      const row = lease.row ? db.get(lease.row.table, lease.row.key) : undefined;
      if (!lease.row || !row || row[LEASE_OWNER] !== lease.owner || row[LEASE_TOKEN] !== lease.fencingToken) return;
      const { [LEASE_OWNER]: _o, [LEASE_ACQUIRE_ID]: _a, ...kept } = row;
      db.put(lease.row.table, { ...kept, [LEASE_EXPIRES]: 0 });
    },

    async discard(lease, attemptId) {
      const row = lease.row ? db.get(lease.row.table, lease.row.key) : undefined;
      const ours =
        row?.[LEASE_OWNER] === lease.owner &&
        row[LEASE_TOKEN] === lease.fencingToken &&
        lessThan(now(), row[LEASE_EXPIRES]) &&
        row[CREATED_BY] === attemptId;
      if (!lease.row || !row || !ours) throw new LeaseLostError(lease, row ? rowHolder(row) : undefined, { detail: 'discard refused' });
      db.delete(lease.row.table, lease.row.key);
    },

    async inspect(row) {
      const r = db.get(row.table, row.key);
      return r ? rowHolder(r) : undefined;
    },

    async workItem(row, workKey) {
      const r = db.get(row.table, row.key);
      return r ? rowWorkItem(r, workKey) : undefined;
    },
  };
}

/** A successful commit is replayed, not re-applied, within this window (DynamoDB's token memory, as dynamo-outcomes.ts keeps it). */
const REPLAY_MS = 9 * 60_000;

/**
 * OutcomeStore over `db`: the one transaction of dynamo-outcomes.ts, checked in the order a
 * DynamoDB cancellation is reported (lease, work item, entities, events) and applied whole or not
 * at all. The same request committed again by this store within 9 minutes (real time) is
 * answered with the first result and not applied again, as its ClientRequestToken makes DynamoDB do.
 */
export function createMemoryOutcomeStore(options: MemoryStoreOptions & { readonly ledgerShards?: number }): OutcomeStore {
  const { db } = options;
  const now = options.now ?? systemClock;
  const outbox = createOutbox({ ledgerShards: options.ledgerShards ?? DEFAULT_LEDGER_SHARDS, now });
  const applied = new Map<string, { atMs: number; result: CommitResult }>();

  return {
    async commit(req) {
      validateCommit(req);
      const fingerprint = commitFingerprint(req);
      const replay = applied.get(fingerprint);
      if (replay && Date.now() - replay.atMs <= REPLAY_MS) return replay.result;
      const t = now();
      const writes: [TableKey, Item][] = [];

      const leasedRow = req.lease?.row;
      /** The row lease's own writes on its row: the work item completed, the lease released. */
      let onRow: ((item: Item) => void) | undefined;
      if (req.lease && leasedRow) {
        const row = db.get(leasedRow.table, leasedRow.key);
        const held =
          row?.[LEASE_OWNER] === req.lease.owner && row[LEASE_TOKEN] === req.lease.fencingToken && lessThan(t, row[LEASE_EXPIRES]);
        if (!held) throw new LeaseLostError(req.lease, row ? rowHolder(row) : undefined);
        const w = req.workItem;
        if (w) {
          const item = rowWorkItem(row, w.idempotencyKey);
          if (item?.attemptId !== w.attemptId || item.status !== 'IN_PROGRESS') throw conflict('workItem', leasedRow.table, leasedRow.key, row);
        }
        onRow = (item) => {
          if (w) {
            const attr = workAttribute(w.idempotencyKey);
            item[attr] = { ...(item[attr] as Item), status: 'COMPLETED', completedAtMs: t, ...(w.result ? { result: w.result } : {}) };
          }
          if (req.release) {
            delete item[LEASE_OWNER];
            delete item[LEASE_ACQUIRE_ID];
            item[LEASE_EXPIRES] = 0;
          }
        };
        if (!req.changes.some((c) => sameRow(leasedRow, c))) {
          const item = { ...row };
          onRow(item);
          writes.push([leasedRow.table, item]);
        }
      } else if (req.lease) {
        const row = db.get('leases', { leaseKey: req.lease.key });
        const held =
          row?.owner === req.lease.owner && row.fencingToken === req.lease.fencingToken && lessThan(t, row.expiresAtMs);
        // The fence: a lost lease explains every other refusal of the same request, so it is checked first.
        if (!held) throw new LeaseLostError(req.lease, row ? toHolder(row) : undefined);
      }
      if (req.workItem && !leasedRow) {
        const w = req.workItem;
        const key = { idempotencyKey: w.idempotencyKey };
        const item = db.get('idempotency', key);
        if (item?.attemptId !== w.attemptId || item.status !== 'IN_PROGRESS') throw conflict('workItem', 'idempotency', key, item);
        writes.push(['idempotency', { ...item, status: 'COMPLETED', completedAtMs: t, ...(w.result ? { result: w.result } : {}) }]);
      }
      const versions: number[] = [];
      const events: CommitResult['events'][number][] = [];
      for (const change of req.changes) {
        const newEvents = change.events ?? [];
        const cur = change.currentEventSeq ?? 0;
        const version = change.expectedVersion + 1;
        const emits = change.resource !== undefined && newEvents.length > 0;
        const existing = db.get(change.table, change.key);
        if (change.expectedVersion === 0) {
          if (existing) throw conflict('entity', change.table, change.key, existing);
          // A new resource starts its sequence here (0 when it emits nothing yet).
          const item = { ...definedOnly(change.set), ...change.key, version, ...(change.resource ? { eventSeq: newEvents.length } : {}) };
          writes.push([change.table, item]);
        } else {
          // The caller's currentEventSeq must be the stored one, or the sequence would gap.
          const seqOk = !emits || existing?.eventSeq === cur || (cur === 0 && existing?.eventSeq === undefined);
          if (!existing || existing.version !== change.expectedVersion || !seqOk) throw conflict('entity', change.table, change.key, existing);
          const item: Item = { ...existing };
          for (const [k, v] of Object.entries(definedOnly(change.set))) if (!(k in change.key)) item[k] = v;
          item.version = version;
          if (emits) item.eventSeq = cur + newEvents.length;
          for (const k of change.remove ?? []) delete item[k];
          if (leasedRow && sameRow(leasedRow, change)) onRow?.(item);
          writes.push([change.table, item]);
        }
        versions.push(version);
        if (emits && change.resource) events.push(...outbox.build(change.resource, cur, newEvents));
      }
      // Each event row must not exist yet: with the entity's sequence condition, no gap and no duplicate.
      for (const e of events) {
        const key = { resourceId: e.resourceId, sequence: e.sequence };
        const row = db.get('events', key);
        if (row) throw conflict('event', 'events', key, row);
      }

      for (const [table, item] of writes) db.put(table, item);
      for (const e of events) db.put('events', { ...e });
      const result: CommitResult = { events, versions };
      applied.set(fingerprint, { atMs: Date.now(), result });
      return result;
    },
  };

  function conflict(part: 'workItem' | 'entity' | 'event', table: TableKey, key: Item, existing: Item | undefined): ConflictError {
    if (part === 'workItem' && table !== 'idempotency') return new ConflictError({ part, key, table: tableName(options, table), reason: 'condition', ...(existing ? { existing } : {}) });
    return new ConflictError({ part, key, table: tableName(options, table), reason: 'condition', ...(existing ? { existing } : {}) });
  }
}

/** The three stores of one process over `db` (a fresh database unless one is given). */
export function createMemoryStores(
  options: Partial<MemoryStoreOptions> & { readonly newAttemptId?: () => string; readonly ledgerShards?: number } = {},
): { db: MemoryDatabase; leases: LeaseStore; idempotency: IdempotencyStore; outcomes: OutcomeStore; rows: RowWorkStore } {
  const o = { ...options, db: options.db ?? createMemoryDatabase() };
  return {
    db: o.db,
    rows: createMemoryRowWorkStore(o),
    leases: createMemoryLeaseStore(o),
    idempotency: createMemoryIdempotencyStore(o),
    outcomes: createMemoryOutcomeStore(o),
  };
}

function tableName(options: MemoryStoreOptions, table: TableKey): string {
  return options.names?.table(table) ?? table;
}

function assertLeaseMs(leaseMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs <= 0) throw new RangeError(`leaseMs must be a positive number, got ${leaseMs}`);
}

/** DynamoDB's `a < b`: false when either attribute is missing or not a number. */
function lessThan(a: unknown, b: unknown): boolean {
  return typeof a === 'number' && typeof b === 'number' && a < b;
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

/** A deep copy as a DynamoDB round trip makes it: undefined dropped; only plain data is storable. */
function copy<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.filter((v) => v !== undefined).map(copy) as T;
  if (value instanceof Set) return new Set([...value].map(copy)) as T;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) throw new TypeError(`not storable: ${proto?.constructor?.name ?? 'object'}`);
  return Object.fromEntries(
    Object.entries(value as Item)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, copy(v)]),
  ) as T;
}
