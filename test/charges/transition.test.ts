import { describe, expect, it } from 'vitest';
import { allEdges, IllegalTransitionError, type Charge } from '../../shared/charges/charge.js';
import { amendCharge, createCharge, moveCharge } from '../../shared/charges/transition.js';

const T0 = '2026-11-21T12:00:00.000Z';
const T1 = '2026-11-21T12:00:01.000Z';
const T2 = '2026-11-21T12:00:02.000Z';

const fields = {
  chargeId: 'c1',
  gatewayAccountId: 'gw-1',
  processor: 'stripe',
  amount: 1250,
  currency: 'GBP',
  reference: 'ref-c1',
  description: 'a charge',
  live: false,
};

/** A charge as read after earlier commits, in `status`. */
function stored(status: Charge['status'], extra: Partial<Charge> = {}): Charge {
  return { ...fields, status, version: 4, eventSeq: 2, createdAt: T0, updatedAt: T0, history: [{ status, at: T0 }], ...extra };
}

describe('charge transitions', () => {
  describe('moveCharge()', () => {
    it('refuses an edge the state graph does not have, whatever the caller asks', () => {
      expect(() => moveCharge(stored('CAPTURED'), 'CAPTURE_READY', { at: T1 })).toThrow(IllegalTransitionError);
      expect(() => moveCharge(stored('AUTHORISATION_REJECTED'), 'AUTHORISATION_SUCCESS', { at: T1 })).toThrow(
        'illegal charge transition AUTHORISATION_REJECTED -> AUTHORISATION_SUCCESS',
      );
    });

    it("emits each edge's own ledger event (none for internal lock states), numbered on from the charge's eventSeq", () => {
      for (const edge of allEdges()) {
        const m = moveCharge(stored(edge.from), edge.to, { at: T1, details: { k: 'v' } });
        expect(m.events).toEqual(edge.event ? [{ eventType: edge.event, details: { k: 'v' } }] : []);
        expect(m.change).toMatchObject({ expectedVersion: 4, currentEventSeq: 2, events: m.events });
        expect(m.after).toMatchObject({ status: edge.to, version: 5, eventSeq: 2 + m.events.length });
      }
    });

    it('appends the history, sets the fields the new state carries, and writes all of it under the version read', () => {
      const m = moveCharge(stored('AUTHORISATION_READY'), 'AUTHORISATION_REJECTED', {
        at: T1,
        details: { decline_code: 'card_declined' },
        fields: { declineCode: 'card_declined', processorRef: 'pi_1' },
      });
      expect(m.after.history).toEqual([
        { status: 'AUTHORISATION_READY', at: T0 },
        { status: 'AUTHORISATION_REJECTED', at: T1 },
      ]);
      expect(m.change).toMatchObject({
        table: 'charges',
        key: { chargeId: 'c1' },
        expectedVersion: 4,
        set: { status: 'AUTHORISATION_REJECTED', declineCode: 'card_declined', processorRef: 'pi_1', updatedAt: T1 },
        resource: { type: 'payment', id: 'c1', gatewayAccountId: 'gw-1', live: false },
      });
      // The commit owns these: never written from the caller's copy.
      expect(m.change.set).not.toHaveProperty('version');
      expect(m.change.set).not.toHaveProperty('eventSeq');
      expect(m.change.set).not.toHaveProperty('chargeId');
    });

    it('keeps the awaiting-capture index in step with the status: set on approval, kept across retries, removed when captured', () => {
      const approved = moveCharge(stored('AUTHORISATION_SUCCESS'), 'CAPTURE_APPROVED', {
        at: T1,
        fields: { captureRequestId: 'cr-1' },
      });
      expect(approved.change.set).toMatchObject({ captureQueue: 'AWAITING', captureDueAt: T1, captureRequestId: 'cr-1' });
      expect(approved.change.remove).toBeUndefined();
      const ready = moveCharge(approved.after, 'CAPTURE_READY', { at: T2 });
      const retry = moveCharge(ready.after, 'CAPTURE_APPROVED_RETRY', { at: T2 });
      // The sort key is the approval time: a retried charge stays as overdue as it was.
      expect(retry.change.set).toMatchObject({ captureQueue: 'AWAITING', captureDueAt: T1 });
      const captured = moveCharge(moveCharge(retry.after, 'CAPTURE_READY', { at: T2 }).after, 'CAPTURED', { at: T2 });
      expect(captured.change.remove).toEqual(['captureQueue', 'captureDueAt']);
      expect(captured.change.set).not.toHaveProperty('captureQueue');
      expect(captured.after.captureQueue).toBeUndefined();
    });
  });

  describe('createCharge()', () => {
    it('creates the charge with PAYMENT_CREATED and, continued before it is committed, walks on in the same commit', () => {
      const ready = moveCharge(createCharge(fields, { at: T0, requestedAt: T0 }), 'AUTHORISATION_READY', {
        at: T0,
        fields: { authRequestId: 'r1' },
      });
      expect(ready.before).toBeUndefined();
      expect(ready.change).toMatchObject({ expectedVersion: 0, currentEventSeq: 0 });
      expect(ready.events.map((e) => e.eventType)).toEqual(['PAYMENT_CREATED']);
      expect(ready.events[0]!.details).toEqual({
        amount: 1250,
        currency: 'GBP',
        reference: 'ref-c1',
        description: 'a charge',
        processor: 'stripe',
        requested_at: T0,
      });
      expect(ready.after).toMatchObject({
        status: 'AUTHORISATION_READY',
        authRequestId: 'r1',
        version: 1,
        eventSeq: 1,
        createdAt: T0,
      });
      expect(ready.after.history.map((h) => h.status)).toEqual(['CREATED', 'AUTHORISATION_READY']);
    });
  });

  describe('amendCharge()', () => {
    it('records fields without a status change, a history entry or an event', () => {
      const m = amendCharge(stored('AUTHORISATION_ERROR'), { at: T1, fields: { errorCode: 'X' } });
      expect(m.events).toEqual([]);
      expect(m.after).toMatchObject({ status: 'AUTHORISATION_ERROR', errorCode: 'X', version: 5, eventSeq: 2, updatedAt: T1 });
      expect(m.after.history).toHaveLength(1);
    });
  });
});
