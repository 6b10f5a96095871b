/**
 * Conformance cases of the row lease (RowWorkStore + OutcomeStore.commit with `lease.row`; see
 * stores.conformance.ts): write 1 takes the lease on the entity row, begins the work item and
 * creates or reads the entity; write 2 is fenced on the row's own owner + token + expiry + attempt,
 * completes the work item and releases the lease. One set of cases for DynamoDB and memory.
 *
 *   A  open(c1, auth#r1) tok 1 ─ ░░░░ paused (clock frozen) ░░░░ ─ complete(fence c1/1) ✗ LeaseLostError
 *   B                    (31 s later) open(c1, auth#r1) ─ takes over: tok 2, attempt 2 ─ complete ✓ (lease released)
 */
import { describe, expect, it } from 'vitest';
import { manualClock } from '../../shared/core/clock.js';
import { LeaseLostError } from '../../shared/core/errors.js';
import type { EntityChange, OpenRequest, OpenResult, RowRef } from '../../shared/core/ports.js';
import { rejection, uniq } from '../support/unique.js';
import type { StoreHarness } from './stores.conformance.js';

const LEASE_MS = 30_000;
const payment = (id: string) => ({ type: 'payment' as const, id, gatewayAccountId: 'gw-1', live: false });

function opening(chargeId: string, owner: string, workKey = 'auth#r1', create = true): OpenRequest {
  const row: RowRef = { table: 'charges', key: { chargeId } };
  return {
    row,
    leaseKey: `charge#${chargeId}`,
    workKey,
    owner,
    leaseMs: LEASE_MS,
    ...(create ? { create: { status: 'AUTHORISATION_READY', amount: 1250, version: 1, eventSeq: 0 } } : {}),
  };
}

/** The charge moved on from version 1, with its owed PAYMENT_CREATED and the outcome's event. */
function outcome(chargeId: string, status: string): EntityChange {
  return {
    table: 'charges',
    key: { chargeId },
    expectedVersion: 1,
    set: { status },
    resource: payment(chargeId),
    currentEventSeq: 0,
    events: [
      { eventType: 'PAYMENT_CREATED', details: {} },
      { eventType: status, details: {} },
    ],
  };
}

function started(r: OpenResult) {
  if (r.status !== 'started') throw new Error(`expected started, got ${JSON.stringify(r)}`);
  return r;
}

export function rowCases(h: StoreHarness): void {
  describe('open() (write 1)', () => {
    it('creates the entity, takes the lease and begins the work item in one write; a second open is told who holds it', async () => {
      const clock = manualClock(10_000_000);
      const { rows } = h.process({ now: clock.now });
      const id = uniq('row');
      const a = started(await rows.open(opening(id, 'w1')));
      expect(a).toMatchObject({
        lease: { key: `charge#${id}`, owner: 'w1', fencingToken: 1, expiresAtMs: 10_030_000, row: { table: 'charges', key: { chargeId: id } } },
        attempts: 1,
        created: true,
        entity: { chargeId: id, status: 'AUTHORISATION_READY', version: 1, eventSeq: 0 },
      });
      // The entity handed to the work never carries the engine's attributes.
      expect(Object.keys(a.entity).filter((k) => k.startsWith('lease') || k.startsWith('work:') || k === 'createdBy')).toEqual([]);
      clock.advance(1_000);
      expect(await rows.open(opening(id, 'w2', 'capture#x', false))).toEqual({
        status: 'held',
        holder: { owner: 'w1', fencingToken: 1, expiresAtMs: 10_030_000 },
      });
    });

    it('a missing row without `create` is reported missing and nothing is written', async () => {
      const { rows } = h.process();
      const id = uniq('row');
      expect(await rows.open(opening(id, 'w1', 'capture#x', false))).toEqual({ status: 'missing' });
      expect(await h.row('charges', { chargeId: id })).toBeUndefined();
    });
  });

  describe('the fence on the row', () => {
    it('a holder paused past its row lease cannot commit; the next attempt takes the lease and the work item over and commits', async () => {
      const clockA = manualClock(20_000_000);
      const clockB = manualClock(20_000_000);
      const A = h.process({ now: clockA.now });
      const B = h.process({ now: clockB.now });
      const id = uniq('row');
      const a = started(await A.rows.open(opening(id, 'A')));
      // A pauses (its clock frozen); B's clock runs past A's expiry.
      clockB.advance(LEASE_MS + 1_000);
      const b = started(await B.rows.open(opening(id, 'B')));
      expect(b).toMatchObject({ lease: { owner: 'B', fencingToken: 2 }, attempts: 2, created: false });
      expect(b.attemptId).not.toBe(a.attemptId);
      // A wakes: its own clock says the lease is fine, but the row names B / token 2.
      const refused = await rejection(
        A.outcomes.commit({
          lease: a.lease,
          workItem: { idempotencyKey: 'auth#r1', attemptId: a.attemptId, result: { status: 'A' } },
          changes: [outcome(id, 'AUTHORISATION_SUCCESS')],
          release: true,
        }),
      );
      expect(refused).toBeInstanceOf(LeaseLostError);
      expect(refused).toMatchObject({ holder: { owner: 'B', fencingToken: 2 } });
      await B.outcomes.commit({
        lease: b.lease,
        workItem: { idempotencyKey: 'auth#r1', attemptId: b.attemptId, result: { status: 'B' } },
        changes: [outcome(id, 'AUTHORISATION_REJECTED')],
        release: true,
      });
      const row = (await h.row('charges', { chargeId: id }))!;
      expect(row).toMatchObject({ status: 'AUTHORISATION_REJECTED', version: 2, eventSeq: 2, leaseToken: 2, leaseExpiresAtMs: 0 });
      expect(row.leaseOwner).toBeUndefined();
      expect(row['work:auth#r1']).toMatchObject({ status: 'COMPLETED', attempts: 2, attemptId: b.attemptId, result: { status: 'B' } });
      expect((await h.events(id)).map((e) => e.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_REJECTED']);
    });

    it('a lease that ran out by the committing clock cannot commit even when nobody took it', async () => {
      const clock = manualClock(30_000_000);
      const { rows, outcomes } = h.process({ now: clock.now });
      const id = uniq('row');
      const a = started(await rows.open(opening(id, 'A')));
      clock.advance(LEASE_MS);
      const refused = await rejection(outcomes.commit({ lease: a.lease, changes: [outcome(id, 'AUTHORISATION_SUCCESS')] }));
      expect(refused).toBeInstanceOf(LeaseLostError);
      expect((await h.row('charges', { chargeId: id }))?.status).toBe('AUTHORISATION_READY');
    });

    it('a completed work item is answered from the row without a write, even while another request holds the lease', async () => {
      const clock = manualClock(40_000_000);
      const { rows, outcomes } = h.process({ now: clock.now });
      const id = uniq('row');
      const a = started(await rows.open(opening(id, 'A')));
      await outcomes.commit({
        lease: a.lease,
        workItem: { idempotencyKey: 'auth#r1', attemptId: a.attemptId, result: { status: 'AUTHORISATION_SUCCESS' } },
        changes: [outcome(id, 'AUTHORISATION_SUCCESS')],
        release: true,
      });
      started(await rows.open(opening(id, 'C', 'capture#c1', false)));
      const before = await h.row('charges', { chargeId: id });
      const again = await rows.open(opening(id, 'A'));
      expect(again).toMatchObject({ status: 'completed', record: { status: 'COMPLETED', result: { status: 'AUTHORISATION_SUCCESS' } } });
      expect(await h.row('charges', { chargeId: id })).toEqual(before);
    });

    it('commit without release keeps the lease; renew and release are fenced on owner and token; the token only grows', async () => {
      const clock = manualClock(50_000_000);
      const { rows, outcomes } = h.process({ now: clock.now });
      const id = uniq('row');
      const a = started(await rows.open(opening(id, 'A')));
      await outcomes.commit({ lease: a.lease, changes: [outcome(id, 'AUTHORISATION_ERROR')] });
      expect(await rows.inspect({ table: 'charges', key: { chargeId: id } })).toEqual({ owner: 'A', fencingToken: 1, expiresAtMs: 50_030_000 });
      clock.advance(10_000);
      const renewed = await rows.renew(a.lease, LEASE_MS);
      expect(renewed.expiresAtMs).toBe(50_040_000);
      await rows.release(renewed);
      const b = started(await rows.open(opening(id, 'B')));
      expect(b.lease.fencingToken).toBe(2);
      await expect(rows.renew(a.lease, LEASE_MS)).rejects.toBeInstanceOf(LeaseLostError);
      await rows.release(a.lease); // not ours any more: a no-op
      expect((await rows.inspect({ table: 'charges', key: { chargeId: id } }))?.owner).toBe('B');
    });

    it('discard() deletes only a row this very attempt created', async () => {
      const clock = manualClock(60_000_000);
      const { rows } = h.process({ now: clock.now });
      const id = uniq('row');
      const a = started(await rows.open(opening(id, 'A')));
      await expect(rows.discard(a.lease, 'another-attempt')).rejects.toBeInstanceOf(LeaseLostError);
      await rows.discard(a.lease, a.attemptId);
      expect(await h.row('charges', { chargeId: id })).toBeUndefined();
    });
  });
}
