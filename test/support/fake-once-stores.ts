/**
 * Small in-memory fakes of the exactly-once ports (LeaseStore, IdempotencyStore, OutcomeStore) for
 * unit tests of once() and of the handlers' decision tables: no emulator, one process, a manual clock.
 * They keep the rules the handlers rely on — a commit is refused unless its lease is held with its
 * token and unexpired, a work item completes only for its own in-progress attempt, entities move
 * under their version, events number on from `eventSeq` — and nothing else (no TTLs, no lost answers).
 *
 * Stand-ins until the in-memory stores with their conformance suite (shared/core/memory-stores.ts)
 * are on main; tests use {@link fakeOnceStores} only, so switching is a change to this file.
 */
import { randomUUID } from 'node:crypto';
import type { Charge } from '../../shared/charges/charge.js';
import type { ChargeRepository } from '../../shared/charges/repo.js';
import { manualClock, type ManualClock } from '../../shared/core/clock.js';
import { ConflictError, LeaseLostError } from '../../shared/core/errors.js';
import { createLeaseKeeper, type LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type {
  CommitRequest,
  IdempotencyStore,
  LeaseHolder,
  LeaseStore,
  NewEvent,
  OutcomeStore,
  WorkItemRecord,
} from '../../shared/core/ports.js';
import { createOnce, type Once } from '../../shared/core/work.js';

export interface FakeOnceStores {
  readonly clock: ManualClock;
  readonly leases: LeaseStore;
  readonly idempotency: IdempotencyStore;
  readonly outcomes: OutcomeStore;
  readonly keeper: LeaseKeeper;
  /** once() over these stores, as the worker kit builds it. */
  readonly once: Once;
  /** Charges as committed (read side for the handlers). */
  readonly charges: ChargeRepository;
  /** Every commit that was applied, in order. */
  readonly commits: CommitRequest[];
  /** Ledger events by resource id, in sequence. */
  events(resourceId: string): (NewEvent & { sequence: number })[];
  /** Work items by key (tests delete one to play an expired item, or rewrite its result). */
  readonly workItems: Map<string, WorkItemRecord>;
  /** Put a charge as if committed earlier (a starting state of a decision table row). */
  seedCharge(charge: Charge): void;
  /** Let another owner take `key` (as after this process paused past its lease). */
  steal(key: string, owner: string): void;
}

export function fakeOnceStores(options: { leaseMs?: number; attemptDeadlineMs?: number; ownerId?: string } = {}): FakeOnceStores {
  const clock = manualClock(Date.parse('2026-11-21T12:00:00Z'));
  const leaseRows = new Map<string, { owner: string | undefined; fencingToken: number; expiresAtMs: number }>();
  const workItems = new Map<string, WorkItemRecord>();
  const entities = new Map<string, Record<string, unknown>>();
  const events = new Map<string, (NewEvent & { sequence: number })[]>();
  const commits: CommitRequest[] = [];
  const holderOf = (key: string): LeaseHolder | undefined => leaseRows.get(key);

  const leases: LeaseStore = {
    async acquire(key, owner, leaseMs) {
      const row = leaseRows.get(key);
      if (row?.owner && row.expiresAtMs > clock.now()) return { acquired: false, holder: { ...row } };
      const next = { owner, fencingToken: (row?.fencingToken ?? 0) + 1, expiresAtMs: clock.now() + leaseMs };
      leaseRows.set(key, next);
      return { acquired: true, lease: { key, owner, fencingToken: next.fencingToken, expiresAtMs: next.expiresAtMs } };
    },
    async renew(lease, leaseMs) {
      const row = leaseRows.get(lease.key);
      if (!row || row.owner !== lease.owner || row.fencingToken !== lease.fencingToken || row.expiresAtMs <= clock.now()) {
        throw new LeaseLostError(lease, holderOf(lease.key));
      }
      row.expiresAtMs = clock.now() + leaseMs;
      return { ...lease, expiresAtMs: row.expiresAtMs };
    },
    async release(lease) {
      const row = leaseRows.get(lease.key);
      if (row && row.owner === lease.owner && row.fencingToken === lease.fencingToken) {
        leaseRows.set(lease.key, { owner: undefined, fencingToken: row.fencingToken, expiresAtMs: 0 });
      }
    },
    async inspect(key) {
      return holderOf(key);
    },
  };

  const idempotency: IdempotencyStore = {
    async begin(key, o) {
      const rec = workItems.get(key);
      if (rec?.status === 'COMPLETED') return { status: 'completed', result: rec.result, record: rec };
      const takeOver =
        !rec ||
        (rec.expiresAtMs ?? 0) <= clock.now() ||
        (o.fencingToken !== undefined && o.fencingToken > (rec.fencingToken ?? Number.NEGATIVE_INFINITY));
      if (!takeOver) return { status: 'busy', record: rec };
      const started: WorkItemRecord = {
        ...(rec ?? {}),
        idempotencyKey: key,
        status: 'IN_PROGRESS',
        attemptId: randomUUID(),
        attempts: (rec?.attempts ?? 0) + 1,
        expiresAtMs: o.deadlineMs,
        ...(o.fencingToken !== undefined ? { fencingToken: o.fencingToken } : {}),
      };
      workItems.set(key, started);
      return { status: 'started', attemptId: started.attemptId!, attempts: started.attempts, record: started };
    },
    async note(key, attemptId, progress) {
      const rec = workItems.get(key);
      if (rec?.attemptId !== attemptId)
        throw new ConflictError({ part: 'workItem', key: { idempotencyKey: key }, reason: 'condition' });
      workItems.set(key, { ...rec, progress });
    },
    async get(key) {
      return workItems.get(key);
    },
  };

  const outcomes: OutcomeStore = {
    async commit(req) {
      // Check everything first: a refused commit changes nothing.
      if (req.lease) {
        const row = leaseRows.get(req.lease.key);
        if (
          !row ||
          row.owner !== req.lease.owner ||
          row.fencingToken !== req.lease.fencingToken ||
          row.expiresAtMs <= clock.now()
        ) {
          throw new LeaseLostError(req.lease, holderOf(req.lease.key));
        }
      }
      if (req.workItem) {
        const rec = workItems.get(req.workItem.idempotencyKey);
        if (rec?.status !== 'IN_PROGRESS' || rec.attemptId !== req.workItem.attemptId) {
          throw new ConflictError({
            part: 'workItem',
            key: { idempotencyKey: req.workItem.idempotencyKey },
            reason: 'condition',
            ...(rec ? { existing: { ...rec } } : {}),
          });
        }
      }
      for (const c of req.changes) {
        const cur = entities.get(entityKey(c.table, c.key));
        const ok =
          c.expectedVersion === 0
            ? cur === undefined
            : cur?.version === c.expectedVersion && (!c.resource || (cur.eventSeq ?? 0) === (c.currentEventSeq ?? 0));
        if (!ok)
          throw new ConflictError({
            part: 'entity',
            table: c.table,
            key: c.key,
            reason: 'condition',
            ...(cur ? { existing: cur } : {}),
          });
      }
      const versions: number[] = [];
      for (const c of req.changes) {
        const k = entityKey(c.table, c.key);
        const next: Record<string, unknown> = {
          ...(c.expectedVersion === 0 ? {} : entities.get(k)),
          ...c.set,
          ...c.key,
          version: c.expectedVersion + 1,
        };
        for (const attr of c.remove ?? []) delete next[attr];
        if (c.resource) {
          const seq = c.currentEventSeq ?? 0;
          next.eventSeq = seq + (c.events?.length ?? 0);
          const list = events.get(c.resource.id) ?? [];
          for (const [i, e] of (c.events ?? []).entries()) list.push({ ...e, sequence: seq + i + 1 });
          events.set(c.resource.id, list);
        }
        entities.set(k, structuredClone(next));
        versions.push(c.expectedVersion + 1);
      }
      if (req.workItem) {
        const rec = workItems.get(req.workItem.idempotencyKey)!;
        workItems.set(rec.idempotencyKey, {
          ...rec,
          status: 'COMPLETED',
          ...(req.workItem.result ? { result: structuredClone(req.workItem.result) } : {}),
        });
      }
      commits.push(req);
      return { events: [], versions };
    },
  };

  const leaseMs = options.leaseMs ?? 30_000;
  const keeper = createLeaseKeeper({ store: leases, leaseMs, renewMs: leaseMs / 3, now: clock.now });
  const once = createOnce({
    keeper,
    idempotency,
    outcomes,
    ownerId: options.ownerId ?? 'unit-test',
    attemptDeadlineMs: options.attemptDeadlineMs ?? leaseMs,
    now: clock.now,
  });
  return {
    clock,
    leases,
    idempotency,
    outcomes,
    keeper,
    once,
    charges: {
      async get(chargeId) {
        const row = entities.get(entityKey('charges', { chargeId }));
        return row ? (structuredClone(row) as unknown as Charge) : undefined;
      },
    },
    commits,
    events: (id) => [...(events.get(id) ?? [])],
    workItems,
    seedCharge(charge) {
      entities.set(
        entityKey('charges', { chargeId: charge.chargeId }),
        structuredClone({ ...charge }) as unknown as Record<string, unknown>,
      );
    },
    steal(key, owner) {
      const row = leaseRows.get(key);
      leaseRows.set(key, { owner, fencingToken: (row?.fencingToken ?? 0) + 1, expiresAtMs: clock.now() + leaseMs });
    },
  };
}

const entityKey = (table: string, key: Record<string, string>) => `${table}|${JSON.stringify(key)}`;
