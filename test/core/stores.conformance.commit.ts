/**
 * Conformance cases of OutcomeStore.commit (see stores.conformance.ts): all or nothing; the lease
 * fence (owner + token + unexpired by the committing clock); the work item (attemptId +
 * IN_PROGRESS); entity versions; gapless, unique per-resource event sequences; the same errors
 * with the same `part`s; refusals before anything is written.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { manualClock } from '../../shared/core/clock.js';
import { CommitTooLargeError, ConflictError, InvalidCommitError, LeaseLostError } from '../../shared/core/errors.js';
import { eventIdFor, ledgerShardOf, toLedgerMessage } from '../../shared/core/outbox.js';
import type { CommitRequest, EntityChange, Lease } from '../../shared/core/ports.js';
import { rejection, uniq } from '../support/unique.js';
import type { StoreHarness } from './stores.conformance.js';

const payment = (id: string) => ({ type: 'payment' as const, id, gatewayAccountId: 'gw-1', live: false });

function create(chargeId: string, extra: Partial<EntityChange> = {}): EntityChange {
  return {
    table: 'charges',
    key: { chargeId },
    expectedVersion: 0,
    set: { status: 'CREATED', amount: 1250 },
    resource: payment(chargeId),
    currentEventSeq: 0,
    events: [{ eventType: 'PAYMENT_CREATED', details: { amount: 1250 } }],
    ...extra,
  };
}

function advance(chargeId: string, version: number, seq: number, status: string, eventTypes: string[] = [status]): EntityChange {
  return {
    table: 'charges',
    key: { chargeId },
    expectedVersion: version,
    set: { status },
    resource: payment(chargeId),
    currentEventSeq: seq,
    events: eventTypes.map((eventType) => ({ eventType, details: { status } })),
  };
}

/** The authorisation commit of charge `chargeId` (at version 1, one event) under `lease`. */
function authorise(chargeId: string, lease: Lease, workItem: { idempotencyKey: string; attemptId: string }, status: string): CommitRequest {
  const eventType = status === 'AUTHORISATION_SUCCESS' ? 'AUTHORISATION_SUCCEEDED' : 'AUTHORISATION_REJECTED';
  return { lease, workItem: { ...workItem, result: { status } }, changes: [advance(chargeId, 1, 1, status, [eventType])] };
}

export function commitCases(h: StoreHarness): void {
  const outcomes = () => h.process().outcomes;
  const charge = (chargeId: string) => h.row('charges', { chargeId });
  const snapshot = async (chargeId: string, workItemKey: string) => ({
    charge: await charge(chargeId),
    events: await h.events(chargeId),
    workItem: await h.row('idempotency', { idempotencyKey: workItemKey }),
  });
  /** Charge `chargeId` at version 1 with PAYMENT_CREATED (status AUTHORISATION_READY). */
  const seedCharge = (chargeId: string) => outcomes().commit({ changes: [create(chargeId, { set: { status: 'AUTHORISATION_READY' } })] });

  describe('commit()', () => {
    it('writes entity, version, eventSeq and outbox rows together', async () => {
      // Prepare
      const store = outcomes();
      const id = uniq('ch');
      // Act
      const created = await store.commit({ changes: [create(id)] });
      const updated = await store.commit({
        changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS', ['AUTHORISATION_SUCCEEDED', 'USER_APPROVED_FOR_CAPTURE'])],
      });
      // Assess
      expect(created.versions).toEqual([1]);
      expect(updated.versions).toEqual([2]);
      expect(await charge(id)).toMatchObject({ chargeId: id, status: 'AUTHORISATION_SUCCESS', amount: 1250, version: 2, eventSeq: 3 });
      const rows = await h.events(id);
      expect(rows.map((r) => [r.sequence, r.eventType])).toEqual([
        [1, 'PAYMENT_CREATED'],
        [2, 'AUTHORISATION_SUCCEEDED'],
        [3, 'USER_APPROVED_FOR_CAPTURE'],
      ]);
      const [first] = created.events;
      expect(first).toMatchObject({ eventId: eventIdFor('payment', id, 1), sequence: 1, pendingShard: ledgerShardOf(id, 8) });
      expect(first?.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      expect(rows[0]).toMatchObject({ eventId: first?.eventId, pendingKey: `${first?.timestamp}#${id}#0000000001` });
      // Timestamps strictly increase within one commit.
      expect(updated.events[0]!.timestamp < updated.events[1]!.timestamp).toBe(true);
      expect(toLedgerMessage(first!)).toEqual({
        event_id: first?.eventId,
        resource_type: 'payment',
        resource_external_id: id,
        sequence: 1,
        event_type: 'PAYMENT_CREATED',
        timestamp: first?.timestamp,
        gateway_account_id: 'gw-1',
        live: false,
        event_details: { amount: 1250 },
      });
    });

    it('two racers on the same version: exactly one wins, the other gets ConflictError(entity) and leaves no trace', async () => {
      // Prepare
      const id = uniq('ch');
      await outcomes().commit({ changes: [create(id)] });
      // Act: both read version 1 / eventSeq 1; one after the other.
      await outcomes().commit({ changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS', ['AUTHORISATION_SUCCEEDED'])] });
      const err = await rejection(outcomes().commit({ changes: [advance(id, 1, 1, 'AUTHORISATION_REJECTED')] }));
      // Assess
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({
        part: 'entity',
        reason: 'condition',
        key: { chargeId: id },
        table: h.table('charges'),
        existing: { version: 2, status: 'AUTHORISATION_SUCCESS' },
      });
      expect((err as ConflictError).kind).toBe('retryable');
      expect((await h.events(id)).map((r) => r.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_SUCCEEDED']);
    });

    it('the version alone refuses a stale change that emits no events', async () => {
      const id = uniq('batch');
      const batch = (expectedVersion: number, status: string): EntityChange => ({
        table: 'batches',
        key: { batchId: id },
        expectedVersion,
        set: { status },
      });
      await outcomes().commit({ changes: [batch(0, 'OPEN')] });
      await outcomes().commit({ changes: [batch(1, 'SENT')] });
      const err = await rejection(outcomes().commit({ changes: [batch(1, 'CANCELLED')] }));
      expect(err).toMatchObject({ name: 'ConflictError', part: 'entity', key: { batchId: id }, existing: { version: 2, status: 'SENT' } });
      expect(await h.row('batches', { batchId: id })).toEqual({ batchId: id, status: 'SENT', version: 2 });
    });

    it('concurrent racers: exactly one of many wins', async () => {
      const id = uniq('ch');
      await outcomes().commit({ changes: [create(id)] });
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => outcomes().commit({ changes: [advance(id, 1, 1, `S${i}`)] })),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results.filter((x) => x.status === 'rejected')) {
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
      }
      expect(await charge(id)).toMatchObject({ version: 2, eventSeq: 2 });
      expect((await h.events(id)).map((r) => r.sequence)).toEqual([1, 2]);
    });

    it('sequences stay gapless and unique over many commits by concurrent writers', async () => {
      // Prepare
      const id = uniq('ch');
      await outcomes().commit({ changes: [create(id)] });
      // Act: 4 writers x 6 changes each, every one re-reading and retrying on conflict.
      const writer = async (w: number) => {
        const store = outcomes();
        for (let n = 0; n < 6; n++) {
          for (;;) {
            const item = await charge(id);
            const types = Array.from({ length: 1 + (n % 3) }, (_, k) => `E${k}`);
            try {
              await store.commit({ changes: [advance(id, Number(item?.version), Number(item?.eventSeq), `W${w}N${n}`, types)] });
              break;
            } catch (e) {
              if (!(e instanceof ConflictError)) throw e;
            }
          }
        }
      };
      await Promise.all([0, 1, 2, 3].map(writer));
      // Assess: 1 + 4 * (1+2+3+1+2+3) events, numbered 1..N with no gap and no duplicate.
      const rows = await h.events(id);
      const n = 1 + 4 * 12;
      expect(rows.map((r) => r.sequence)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(new Set(rows.map((r) => r.eventId)).size).toBe(n);
      expect(await charge(id)).toMatchObject({ version: 25, eventSeq: n });
    });

    it('a wrong currentEventSeq is refused instead of leaving a gap', async () => {
      const id = uniq('ch');
      await outcomes().commit({ changes: [create(id)] });
      const err = await rejection(outcomes().commit({ changes: [advance(id, 1, 3, 'X')] }));
      expect(err).toMatchObject({ name: 'ConflictError', part: 'entity', existing: { eventSeq: 1 } });
      expect((await h.events(id)).map((r) => r.sequence)).toEqual([1]);
    });

    it('an event row already at a sequence refuses the commit as ConflictError(event), writing nothing', async () => {
      const id = uniq('ch');
      await outcomes().commit({ changes: [create(id)] });
      await h.put('events', { resourceId: id, sequence: 2, eventType: 'STRAY' });
      const err = await rejection(outcomes().commit({ changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS')] }));
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({
        part: 'event',
        key: { resourceId: id, sequence: 2 },
        table: h.table('events'),
        existing: { eventType: 'STRAY' },
      });
      expect(await charge(id)).toMatchObject({ version: 1, eventSeq: 1, status: 'CREATED' });
    });

    it('an update of an entity that does not exist is ConflictError(entity) with no existing item', async () => {
      const err = await rejection(outcomes().commit({ changes: [advance(uniq('ch'), 1, 1, 'X')] }));
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({ part: 'entity', reason: 'condition' });
      expect((err as ConflictError).existing).toBeUndefined();
    });

    it('is all or nothing: one stale change refuses the whole commit, work item and other entities included', async () => {
      // Prepare
      const [a, b] = [uniq('ch'), uniq('ch')];
      await outcomes().commit({ changes: [create(a), create(b)] });
      await outcomes().commit({ changes: [advance(b, 1, 1, 'MOVED_ON')] });
      const { idempotency, outcomes: store } = h.process();
      const itemKey = uniq('auth');
      const item = await idempotency.begin(itemKey, { deadlineMs: Date.now() + 60_000 });
      if (item.status !== 'started') throw new Error('should start');
      const before = { a: await snapshot(a, itemKey), b: await snapshot(b, itemKey) };
      // Act: a's change is current, b's is stale.
      const err = await rejection(
        store.commit({
          workItem: { idempotencyKey: itemKey, attemptId: item.attemptId, result: { ok: true } },
          changes: [advance(a, 1, 1, 'AUTHORISATION_SUCCESS'), advance(b, 1, 1, 'AUTHORISATION_SUCCESS')],
        }),
      );
      // Assess
      expect(err).toMatchObject({ name: 'ConflictError', part: 'entity', key: { chargeId: b }, existing: { version: 2 } });
      expect({ a: await snapshot(a, itemKey), b: await snapshot(b, itemKey) }).toEqual(before);
      expect(before.a.workItem).toMatchObject({ status: 'IN_PROGRESS', attemptId: item.attemptId });
    });

    it('completes the work item only for its own live attempt: another attemptId, or a second completion, is ConflictError(workItem)', async () => {
      const ids = ['a1', 'a2'];
      const { idempotency, outcomes: store } = h.process({ newAttemptId: () => ids.shift()! });
      const itemKey = uniq('auth');
      await idempotency.begin(itemKey, { deadlineMs: Date.now() + 60_000 });
      const stranger = await rejection(store.commit({ workItem: { idempotencyKey: itemKey, attemptId: 'a0' }, changes: [] }));
      expect(stranger).toBeInstanceOf(ConflictError);
      expect(stranger).toMatchObject({
        part: 'workItem',
        key: { idempotencyKey: itemKey },
        table: h.table('idempotency'),
        existing: { attemptId: 'a1', status: 'IN_PROGRESS' },
      });
      await store.commit({ workItem: { idempotencyKey: itemKey, attemptId: 'a1', result: { n: 1 } }, changes: [] });
      // The same attempt completing again with another result: "your earlier commit applied".
      const again = await rejection(store.commit({ workItem: { idempotencyKey: itemKey, attemptId: 'a1', result: { n: 2 } }, changes: [] }));
      expect(again).toMatchObject({ name: 'ConflictError', part: 'workItem', existing: { status: 'COMPLETED', attemptId: 'a1', result: { n: 1 } } });
    });

    it('the same commit sent twice is applied once: the second is answered with the first result', async () => {
      // Prepare
      const store = outcomes();
      const id = uniq('ch');
      await store.commit({ changes: [create(id)] });
      const request: CommitRequest = { changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS', ['AUTHORISATION_SUCCEEDED'])] };
      // Act: the caller repeats the same commit (e.g. after an AmbiguousError).
      const first = await store.commit(request);
      const second = await store.commit(request);
      // Assess: accepted without a second application (its version condition would fail if evaluated again).
      expect(second).toEqual(first);
      expect(await charge(id)).toMatchObject({ version: 2, eventSeq: 2 });
      expect(await h.events(id)).toHaveLength(2);
    });

    it('after a definite refusal the same request can be retried and succeeds once its cause is gone', async () => {
      // Prepare: a stray row is in the way of a create.
      const store = outcomes();
      const id = uniq('ch');
      await h.put('charges', { chargeId: id, stray: true });
      const request: CommitRequest = { changes: [create(id)] };
      const refused = await rejection(store.commit(request));
      expect(refused).toMatchObject({ name: 'ConflictError', part: 'entity', reason: 'condition', existing: { chargeId: id, stray: true } });
      expect(await h.events(id)).toEqual([]);
      // Act: the cause goes away; the identical request is committed again.
      await h.delete('charges', { chargeId: id });
      const again = await store.commit(request);
      // Assess
      expect(again.versions).toEqual([1]);
      expect(await charge(id)).toMatchObject({ version: 1, eventSeq: 1, status: 'CREATED' });
      expect((await h.events(id)).map((r) => r.sequence)).toEqual([1]);
    });

    it('more than 100 items is refused before anything is written; exactly 100 goes through', async () => {
      const store = outcomes();
      const id = uniq('ch');
      const many = (n: number) => Array.from({ length: n }, (_, i) => ({ eventType: `E${i}`, details: {} }));
      const err = await rejection(store.commit({ changes: [create(id, { events: many(100) })] }));
      expect(err).toBeInstanceOf(CommitTooLargeError);
      expect(err).toMatchObject({ code: 'COMMIT_TOO_LARGE', itemCount: 101, kind: 'terminal' });
      expect(await charge(id)).toBeUndefined();
      const ok = await store.commit({ changes: [create(id, { events: many(99) })] });
      expect(ok.events).toHaveLength(99);
      expect(await charge(id)).toMatchObject({ eventSeq: 99 });
    });

    it('refuses card data and malformed requests as terminal, writing nothing', async () => {
      const store = outcomes();
      const id = uniq('ch');
      const bad: CommitRequest[] = [
        { changes: [create(id, { set: { status: 'CREATED', note: '4242 4242 4242 4242' } })] },
        { changes: [create(id, { set: { status: 'CREATED', card: { cvc: '123' } } })] },
        { changes: [create(id, { events: [{ eventType: 'X', details: { pan: '4000056655665556' } }] })] },
        { changes: [create(id, { resource: undefined })] },
        { changes: [create(id), create(id)] },
        { changes: [{ ...advance(id, 1, 1, 'X'), set: { version: 9 } }] },
        { changes: [{ ...create(id), key: { paymentId: id } }] },
        { changes: [] },
      ];
      for (const req of bad) {
        const err = await rejection(store.commit(req));
        expect(err, JSON.stringify(req)).toBeInstanceOf(InvalidCommitError);
        expect((err as InvalidCommitError).kind).toBe('terminal');
      }
      expect(await charge(id)).toBeUndefined();
      expect(await h.events(id)).toEqual([]);
      // An IBAN's long digit run is not a card number.
      const payout = await store.commit({
        changes: [
          {
            table: 'payouts',
            key: { paymentId: id },
            expectedVersion: 0,
            set: { status: 'RECEIVED', creditor: { iban: 'EE382200221020145685', name: 'A' } },
            resource: { type: 'payout', id, live: false },
            events: [{ eventType: 'PAYOUT_CREATED', details: {} }],
          },
        ],
      });
      expect(toLedgerMessage(payout.events[0]!)).not.toHaveProperty('gateway_account_id');
    });
  });

  describe('commit() under a lease (the fence)', () => {
    it('a holder paused past its lease cannot commit once another worker took over; nothing of it is visible; the new holder commits', async () => {
      // Prepare
      const chargeId = uniq('c');
      const leaseKey = `charge#${chargeId}`;
      const itemKey = `auth#${uniq('r')}`;
      await seedCharge(chargeId);
      const clockA = manualClock(10_000_000);
      const clockB = manualClock(10_000_000);
      const A = h.process({ now: clockA.now });
      const B = h.process({ now: clockB.now });
      const a = await A.leases.acquire(leaseKey, 'worker-A', 30_000);
      if (!a.acquired) throw new Error('A should acquire');
      const aItem = await A.idempotency.begin(itemKey, { deadlineMs: clockA.now() + 60_000, fencingToken: a.lease.fencingToken });
      if (aItem.status !== 'started') throw new Error('A should start the work item');

      // Act 1: A pauses (its clock does not move). 31 s pass for everyone else; B takes the lease.
      clockB.advance(31_000);
      const b = await B.leases.acquire(leaseKey, 'worker-B', 30_000);
      if (!b.acquired) throw new Error('B should take over the expired lease');
      expect(b.lease.fencingToken).toBe(a.lease.fencingToken + 1);
      const before = await snapshot(chargeId, itemKey);
      // A wakes and commits, believing (by its own clock) that its lease is valid; the work item is still its own.
      const aRequest = authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: aItem.attemptId }, 'AUTHORISATION_REJECTED');
      const err = await rejection(A.outcomes.commit(aRequest));

      // Assess 1: refused by the lease alone, with the current holder as evidence; nothing visible.
      expect(err).toBeInstanceOf(LeaseLostError);
      expect(err).toMatchObject({
        code: 'LEASE_LOST',
        kind: 'retryable',
        part: 'lease',
        holder: { owner: 'worker-B', fencingToken: b.lease.fencingToken },
      });
      expect(await snapshot(chargeId, itemKey)).toEqual(before);
      expect(before.charge).toMatchObject({ version: 1, status: 'AUTHORISATION_READY' });
      expect(before.workItem).toMatchObject({ status: 'IN_PROGRESS', attemptId: aItem.attemptId });

      // Act 2: B takes over the work item with its newer token at once, and commits.
      const bItem = await B.idempotency.begin(itemKey, { deadlineMs: clockB.now() + 60_000, fencingToken: b.lease.fencingToken });
      if (bItem.status !== 'started') throw new Error('B should take over the in-progress work item');
      await B.outcomes.commit(authorise(chargeId, b.lease, { idempotencyKey: itemKey, attemptId: bItem.attemptId }, 'AUTHORISATION_SUCCESS'));
      // A tries again (same request): still refused, B's result stands.
      expect(await rejection(A.outcomes.commit(aRequest))).toBeInstanceOf(LeaseLostError);

      // Assess 2
      const after = await snapshot(chargeId, itemKey);
      expect(after.charge).toMatchObject({ version: 2, eventSeq: 2, status: 'AUTHORISATION_SUCCESS' });
      expect(after.events.map((e) => e.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_SUCCEEDED']);
      expect(after.workItem).toMatchObject({ status: 'COMPLETED', attemptId: bItem.attemptId, result: { status: 'AUTHORISATION_SUCCESS' } });
      expect(await A.idempotency.begin(itemKey, { deadlineMs: clockA.now() + 60_000 })).toMatchObject({
        status: 'completed',
        result: { status: 'AUTHORISATION_SUCCESS' },
      });
    });

    it('a holder whose lease expired by its own clock cannot commit even if nobody took over', async () => {
      const chargeId = uniq('c');
      const itemKey = `auth#${uniq('r')}`;
      await seedCharge(chargeId);
      const clock = manualClock(20_000_000);
      const A = h.process({ now: clock.now });
      const a = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
      if (!a.acquired) throw new Error('A should acquire');
      const item = await A.idempotency.begin(itemKey, { deadlineMs: clock.now() + 60_000, fencingToken: a.lease.fencingToken });
      if (item.status !== 'started') throw new Error('should start');
      const before = await snapshot(chargeId, itemKey);
      clock.advance(30_000); // now === expiresAtMs: the fence needs expiresAtMs > now
      const err = await rejection(
        A.outcomes.commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: item.attemptId }, 'AUTHORISATION_SUCCESS')),
      );
      expect(err).toBeInstanceOf(LeaseLostError);
      expect((err as LeaseLostError).holder).toEqual({ owner: 'worker-A', fencingToken: a.lease.fencingToken, expiresAtMs: 20_030_000 });
      expect(await snapshot(chargeId, itemKey)).toEqual(before);
    });

    it('the token fences too: the same owner re-acquiring after expiry fences out its own older attempt', async () => {
      // A process lost its lease (expired) and took it again under the same owner id: the attempt
      // still running under the old token must not commit; only the owner string would not tell.
      const chargeId = uniq('c');
      const itemKey = `auth#${uniq('r')}`;
      await seedCharge(chargeId);
      const clock = manualClock(30_000_000);
      const A = h.process({ now: clock.now });
      const old = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
      if (!old.acquired) throw new Error('A should acquire');
      const item = await A.idempotency.begin(itemKey, { deadlineMs: clock.now() + 600_000, fencingToken: old.lease.fencingToken });
      if (item.status !== 'started') throw new Error('should start');
      clock.advance(31_000);
      const fresh = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
      if (!fresh.acquired) throw new Error('A should re-acquire');
      const stale = { ...old.lease, expiresAtMs: fresh.lease.expiresAtMs };
      const err = await rejection(
        A.outcomes.commit(authorise(chargeId, stale, { idempotencyKey: itemKey, attemptId: item.attemptId }, 'AUTHORISATION_SUCCESS')),
      );
      expect(err).toBeInstanceOf(LeaseLostError);
      expect(err).toMatchObject({ fencingToken: old.lease.fencingToken, holder: { owner: 'worker-A', fencingToken: fresh.lease.fencingToken } });
      expect((await snapshot(chargeId, itemKey)).charge).toMatchObject({ version: 1 });
    });

    it('the owner fences too, and a lease row that does not exist refuses with no holder', async () => {
      const chargeId = uniq('c');
      const itemKey = `auth#${uniq('r')}`;
      await seedCharge(chargeId);
      const A = h.process();
      const a = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 60_000);
      if (!a.acquired) throw new Error('A should acquire');
      const item = await A.idempotency.begin(itemKey, { deadlineMs: Date.now() + 60_000, fencingToken: a.lease.fencingToken });
      if (item.status !== 'started') throw new Error('should start');
      const work = { idempotencyKey: itemKey, attemptId: item.attemptId };
      const impostor = await rejection(A.outcomes.commit(authorise(chargeId, { ...a.lease, owner: 'worker-B' }, work, 'AUTHORISATION_SUCCESS')));
      expect(impostor).toMatchObject({ name: 'LeaseLostError', holder: { owner: 'worker-A', fencingToken: a.lease.fencingToken } });
      const nowhere = await rejection(A.outcomes.commit(authorise(chargeId, { ...a.lease, key: uniq('charge#none') }, work, 'AUTHORISATION_SUCCESS')));
      expect(nowhere).toBeInstanceOf(LeaseLostError);
      expect((nowhere as LeaseLostError).holder).toBeUndefined();
      expect((await snapshot(chargeId, itemKey)).charge).toMatchObject({ version: 1 });
    });

    it('a lost lease is reported before every other refusal of the same request', async () => {
      // The work item was taken over and the version moved on too: the lease is what explains it.
      const chargeId = uniq('c');
      const itemKey = `auth#${uniq('r')}`;
      await seedCharge(chargeId);
      const clock = manualClock(40_000_000);
      const A = h.process({ now: clock.now });
      const a = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 30_000);
      if (!a.acquired) throw new Error('A should acquire');
      const stale = await A.idempotency.begin(itemKey, { deadlineMs: clock.now() + 60_000, fencingToken: a.lease.fencingToken });
      if (stale.status !== 'started') throw new Error('should start');
      clock.advance(31_000);
      const b = await A.leases.acquire(`charge#${chargeId}`, 'worker-B', 30_000);
      if (!b.acquired) throw new Error('B should take over');
      const bItem = await A.idempotency.begin(itemKey, { deadlineMs: clock.now() + 60_000, fencingToken: b.lease.fencingToken });
      if (bItem.status !== 'started') throw new Error('B should take over the work item');
      await A.outcomes.commit({ lease: b.lease, changes: [advance(chargeId, 1, 1, 'MOVED_ON')] });
      const err = await rejection(
        A.outcomes.commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: stale.attemptId }, 'AUTHORISATION_SUCCESS')),
      );
      expect(err).toBeInstanceOf(LeaseLostError);
    });

    it('with real time: short lease, a sleep past it, a takeover — the sleeper is refused', async () => {
      const chargeId = uniq('c');
      const itemKey = `auth#${uniq('r')}`;
      await seedCharge(chargeId);
      const A = h.process();
      const B = h.process();
      const a = await A.leases.acquire(`charge#${chargeId}`, 'worker-A', 300);
      if (!a.acquired) throw new Error('A should acquire');
      const item = await A.idempotency.begin(itemKey, { deadlineMs: Date.now() + 60_000, fencingToken: a.lease.fencingToken });
      if (item.status !== 'started') throw new Error('should start');
      await sleep(350); // the "GC pause"
      const b = await B.leases.acquire(`charge#${chargeId}`, 'worker-B', 30_000);
      expect(b.acquired).toBe(true);
      const err = await rejection(
        A.outcomes.commit(authorise(chargeId, a.lease, { idempotencyKey: itemKey, attemptId: item.attemptId }, 'AUTHORISATION_SUCCESS')),
      );
      expect(err).toBeInstanceOf(LeaseLostError);
      expect((await snapshot(chargeId, itemKey)).charge).toMatchObject({ version: 1 });
    });
  });
}
