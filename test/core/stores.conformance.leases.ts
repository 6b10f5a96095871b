/**
 * Conformance cases of LeaseStore and IdempotencyStore (see stores.conformance.ts): one set of
 * cases, run against the DynamoDB stores and the in-memory ones.
 */
import { describe, expect, it } from 'vitest';
import { manualClock } from '../../shared/core/clock.js';
import { ConflictError, LeaseLostError } from '../../shared/core/errors.js';
import { rejection, uniq } from '../support/unique.js';
import type { StoreHarness } from './stores.conformance.js';

export function leaseCases(h: StoreHarness): void {
  describe('acquire()', () => {
    it('takes a free key with token 1; a held key is reported with its holder, expiry and token', async () => {
      // Prepare
      const clock = manualClock(2_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      // Act
      const a = await leases.acquire(key, 'w1', 30_000);
      clock.advance(5_000);
      const b = await leases.acquire(key, 'w2', 30_000);
      // Assess
      expect(a).toEqual({ acquired: true, lease: { key, owner: 'w1', fencingToken: 1, expiresAtMs: 2_030_000 } });
      expect(b).toEqual({ acquired: false, holder: { owner: 'w1', expiresAtMs: 2_030_000, fencingToken: 1 } });
    });

    it('the fencing token grows by one across release/re-acquire and across expiry takeovers', async () => {
      // Prepare
      const clock = manualClock(3_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      const tokens: number[] = [];
      // Act: take, release, take again, let it expire, another takes it over, and so on.
      for (let round = 0; round < 3; round++) {
        const r1 = await leases.acquire(key, 'w1', 1_000);
        if (!r1.acquired) throw new Error('w1 should acquire');
        tokens.push(r1.lease.fencingToken);
        await leases.release(r1.lease);
        const r2 = await leases.acquire(key, 'w2', 1_000);
        if (!r2.acquired) throw new Error('w2 should acquire a released lease');
        tokens.push(r2.lease.fencingToken);
        const blocked = await leases.acquire(key, 'w3', 1_000);
        expect(blocked.acquired).toBe(false);
        clock.advance(1_001); // w2 never renews: expired
        const r3 = await leases.acquire(key, 'w3', 1_000);
        if (!r3.acquired) throw new Error('w3 should take over an expired lease');
        tokens.push(r3.lease.fencingToken);
        // The expired holder can neither renew nor release the new holder's lease.
        await expect(leases.renew(r2.lease, 1_000)).rejects.toMatchObject({ code: 'LEASE_LOST', holder: { owner: 'w3' } });
        await leases.release(r2.lease);
        expect((await leases.inspect(key))?.owner).toBe('w3');
        await leases.release(r3.lease);
      }
      // Assess
      expect(tokens).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });

    it('a lease is free only once its expiry has passed by the acquiring clock, not at the expiry itself', async () => {
      const clock = manualClock(4_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      await leases.acquire(key, 'w1', 1_000);
      clock.advance(1_000); // now === expiresAtMs
      expect(await leases.acquire(key, 'w2', 1_000)).toMatchObject({ acquired: false, holder: { owner: 'w1' } });
      clock.advance(1);
      expect(await leases.acquire(key, 'w2', 1_000)).toMatchObject({ acquired: true, lease: { owner: 'w2', fencingToken: 2 } });
    });

    it('another acquire by the same owner finds its own live lease held', async () => {
      const { leases } = h.process();
      const key = uniq('charge');
      expect((await leases.acquire(key, 'w1', 60_000)).acquired).toBe(true);
      expect(await leases.acquire(key, 'w1', 60_000)).toMatchObject({ acquired: false, holder: { owner: 'w1', fencingToken: 1 } });
    });

    it('refuses a lease length that is not a positive number, writing nothing', async () => {
      const { leases } = h.process();
      const key = uniq('charge');
      for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(await rejection(leases.acquire(key, 'w1', bad))).toBeInstanceOf(RangeError);
      }
      expect(await leases.inspect(key)).toBeUndefined();
    });
  });

  describe('renew()', () => {
    it('extends a held lease from the renewing clock; a released lease is no longer renewable', async () => {
      // Prepare
      const clock = manualClock(1_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      const a = await leases.acquire(key, 'w1', 30_000);
      if (!a.acquired) throw new Error('w1 should acquire');
      // Act
      clock.advance(10_000);
      const renewed = await leases.renew(a.lease, 30_000);
      // Assess
      expect(renewed).toEqual({ ...a.lease, expiresAtMs: 1_040_000 });
      expect(await leases.inspect(key)).toEqual({ owner: 'w1', expiresAtMs: 1_040_000, fencingToken: 1 });
      await leases.release(renewed);
      await expect(leases.renew(renewed, 30_000)).rejects.toBeInstanceOf(LeaseLostError);
    });

    it('renews after its own expiry while nobody acquired meanwhile (any acquire would have moved the token)', async () => {
      const clock = manualClock(5_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      const a = await leases.acquire(key, 'w1', 1_000);
      if (!a.acquired) throw new Error('w1 should acquire');
      clock.advance(5_000);
      expect(await leases.renew(a.lease, 1_000)).toEqual({ ...a.lease, expiresAtMs: 5_006_000 });
      expect(await leases.inspect(key)).toEqual({ owner: 'w1', expiresAtMs: 5_006_000, fencingToken: 1 });
    });

    it('refuses a stale token even of the same owner, naming the current holder; the row is unchanged', async () => {
      const clock = manualClock(6_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      const old = await leases.acquire(key, 'w1', 1_000);
      if (!old.acquired) throw new Error('w1 should acquire');
      clock.advance(2_000);
      const fresh = await leases.acquire(key, 'w1', 1_000);
      if (!fresh.acquired) throw new Error('w1 should re-acquire its expired lease');
      const err = await rejection(leases.renew(old.lease, 60_000));
      expect(err).toBeInstanceOf(LeaseLostError);
      expect(err).toMatchObject({
        part: 'lease',
        kind: 'retryable',
        leaseKey: key,
        fencingToken: 1,
        holder: { owner: 'w1', fencingToken: 2, expiresAtMs: fresh.lease.expiresAtMs },
      });
      expect(await leases.inspect(key)).toEqual({ owner: 'w1', fencingToken: 2, expiresAtMs: fresh.lease.expiresAtMs });
    });

    it('refuses a lease whose row does not exist, with no holder', async () => {
      const { leases } = h.process();
      const err = await rejection(leases.renew({ key: uniq('charge'), owner: 'w1', fencingToken: 1, expiresAtMs: 0 }, 1_000));
      expect(err).toBeInstanceOf(LeaseLostError);
      expect((err as LeaseLostError).holder).toBeUndefined();
    });
  });

  describe('release()', () => {
    it('frees the row keeping its token; releasing a lease lost to another holder changes nothing and does not throw', async () => {
      const clock = manualClock(7_000_000);
      const { leases } = h.process({ now: clock.now });
      const key = uniq('charge');
      const a = await leases.acquire(key, 'w1', 1_000);
      if (!a.acquired) throw new Error('w1 should acquire');
      await leases.release(a.lease);
      expect(await leases.inspect(key)).toEqual({ owner: undefined, expiresAtMs: 0, fencingToken: 1 });
      await leases.release(a.lease); // twice: nothing of ours left to give back
      const b = await leases.acquire(key, 'w2', 60_000);
      if (!b.acquired) throw new Error('w2 should acquire a released lease');
      await leases.release(a.lease);
      expect(await leases.inspect(key)).toEqual({ owner: 'w2', expiresAtMs: 7_060_000, fencingToken: 2 });
    });
  });

  describe('inspect()', () => {
    it('is undefined for a key never acquired', async () => {
      expect(await h.process().leases.inspect(uniq('none'))).toBeUndefined();
    });
  });
}

export function idempotencyCases(h: StoreHarness): void {
  function stores(startMs = 5_000_000) {
    const clock = manualClock(startMs);
    const { idempotency, outcomes } = h.process({ now: clock.now });
    return { clock, idem: idempotency, outcomes };
  }

  describe('begin()', () => {
    it('the first begin starts; a second is busy; after completion it is completed with the result', async () => {
      // Prepare
      const { clock, idem, outcomes } = stores();
      const key = uniq('auth');
      // Act
      const first = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
      const second = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
      // Assess
      expect(first).toMatchObject({ status: 'started', attempts: 1, record: { status: 'IN_PROGRESS', attempts: 1 } });
      expect(second.status).toBe('busy');
      if (first.status !== 'started' || second.status !== 'busy') return;
      expect(second.record.attemptId).toBe(first.attemptId);
      expect(second.record.expiresAtMs).toBe(clock.now() + 60_000);

      await outcomes.commit({
        workItem: { idempotencyKey: key, attemptId: first.attemptId, result: { outcome: 'AUTHORISATION_SUCCESS' } },
        changes: [],
      });
      const third = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
      expect(third).toMatchObject({
        status: 'completed',
        result: { outcome: 'AUTHORISATION_SUCCESS' },
        record: { status: 'COMPLETED', attempts: 1 },
      });
    });

    it('an attempt past its deadline is taken over (attempts counted); progress notes carry over', async () => {
      // Prepare
      const { clock, idem } = stores();
      const key = uniq('capture');
      const first = await idem.begin(key, { deadlineMs: clock.now() + 10_000 });
      if (first.status !== 'started') throw new Error('should start');
      await idem.note(key, first.attemptId, { captureSent: true });
      // Act
      clock.advance(10_000); // at the deadline: still live
      const early = await idem.begin(key, { deadlineMs: clock.now() + 10_000 });
      clock.advance(1);
      const late = await idem.begin(key, { deadlineMs: clock.now() + 10_000 });
      // Assess
      expect(early.status).toBe('busy');
      expect(late).toMatchObject({ status: 'started', attempts: 2, record: { progress: { captureSent: true } } });
      if (late.status !== 'started') return;
      expect(late.attemptId).not.toBe(first.attemptId);
      // The old attempt is fenced out of its own work item.
      const err = await rejection(idem.note(key, first.attemptId, { x: 1 }));
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({ part: 'workItem', existing: { attemptId: late.attemptId } });
    });

    it('a newer fencing token takes over a live attempt at once; an equal, older or missing one is busy', async () => {
      // Prepare
      const { clock, idem } = stores();
      const key = uniq('payout');
      const deadlineMs = clock.now() + 600_000;
      const t7 = await idem.begin(key, { deadlineMs, fencingToken: 7 });
      // Act
      const same = await idem.begin(key, { deadlineMs, fencingToken: 7 });
      const older = await idem.begin(key, { deadlineMs, fencingToken: 6 });
      const unfenced = await idem.begin(key, { deadlineMs });
      const newer = await idem.begin(key, { deadlineMs, fencingToken: 8 });
      // Assess
      expect(t7.status).toBe('started');
      expect([same.status, older.status, unfenced.status]).toEqual(['busy', 'busy', 'busy']);
      expect(newer).toMatchObject({ status: 'started', attempts: 2, record: { fencingToken: 8 } });
      expect(await idem.get(key)).toMatchObject({ status: 'IN_PROGRESS', fencingToken: 8, attempts: 2 });
    });

    it('an attempt begun without a token is taken over only after its deadline, whatever token comes', async () => {
      const { clock, idem } = stores();
      const key = uniq('auth');
      await idem.begin(key, { deadlineMs: clock.now() + 1_000 });
      expect(await idem.begin(key, { deadlineMs: clock.now() + 1_000, fencingToken: 99 })).toMatchObject({ status: 'busy' });
      clock.advance(1_001);
      expect(await idem.begin(key, { deadlineMs: clock.now() + 1_000, fencingToken: 99 })).toMatchObject({
        status: 'started',
        attempts: 2,
        record: { fencingToken: 99 },
      });
      // Taken over without a token, the item carries none: the next token-less begin waits for the deadline.
      clock.advance(1_001);
      expect(await idem.begin(key, { deadlineMs: clock.now() + 1_000 })).toMatchObject({ status: 'started', attempts: 3 });
      expect(await idem.get(key)).not.toHaveProperty('fencingToken');
    });

    it('a completed item is never taken over, even by a newer token after its deadline', async () => {
      // Prepare
      const { clock, idem, outcomes } = stores();
      const key = uniq('auth');
      const a = await idem.begin(key, { deadlineMs: clock.now() + 1_000, fencingToken: 1 });
      if (a.status !== 'started') throw new Error('should start');
      await outcomes.commit({ workItem: { idempotencyKey: key, attemptId: a.attemptId, result: { ok: true } }, changes: [] });
      // Act
      clock.advance(5_000);
      const again = await idem.begin(key, { deadlineMs: clock.now() + 1_000, fencingToken: 99 });
      // Assess
      expect(again).toMatchObject({ status: 'completed', result: { ok: true } });
      expect(await idem.get(key)).toMatchObject({ attempts: 1, fencingToken: 1 });
    });
  });

  describe('note()', () => {
    it('records progress for the live attempt; a taken-over attempt is refused with ConflictError(workItem) and the item', async () => {
      const { clock, idem } = stores();
      const key = uniq('capture');
      const first = await idem.begin(key, { deadlineMs: clock.now() + 60_000, fencingToken: 1 });
      if (first.status !== 'started') throw new Error('should start');
      await idem.note(key, first.attemptId, { sent: 'k1' });
      expect((await idem.get(key))?.progress).toEqual({ sent: 'k1' });
      const second = await idem.begin(key, { deadlineMs: clock.now() + 60_000, fencingToken: 2 });
      if (second.status !== 'started') throw new Error('token 2 should take over');
      // The old attempt is fenced out of its own work item.
      const err = await rejection(idem.note(key, first.attemptId, { x: 1 }));
      expect(err).toBeInstanceOf(ConflictError);
      expect(err).toMatchObject({
        part: 'workItem',
        reason: 'condition',
        key: { idempotencyKey: key },
        table: h.table('idempotency'),
        existing: { attemptId: second.attemptId, status: 'IN_PROGRESS' },
      });
      expect((await idem.get(key))?.progress).toEqual({ sent: 'k1' });
    });

    it('is refused for an item that does not exist, with no existing item', async () => {
      const err = await rejection(stores().idem.note(uniq('none'), 'a1', { x: 1 }));
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as ConflictError).existing).toBeUndefined();
    });
  });

  describe('get()', () => {
    it('reads the record of the port (no table-only attributes); unknown keys are undefined', async () => {
      const ids = ['a1'];
      const clock = manualClock(8_000_000);
      const idem = h.process({ now: clock.now, newAttemptId: () => ids.shift()! }).idempotency;
      const key = uniq('auth');
      await idem.begin(key, { deadlineMs: 8_060_000, fencingToken: 3 });
      expect(await idem.get(key)).toEqual({
        idempotencyKey: key,
        status: 'IN_PROGRESS',
        attemptId: 'a1',
        attempts: 1,
        expiresAtMs: 8_060_000,
        fencingToken: 3,
      });
      expect(await idem.get(uniq('none'))).toBeUndefined();
    });
  });
}
