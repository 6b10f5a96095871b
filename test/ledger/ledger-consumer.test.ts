import { describe, expect, it } from 'vitest';
import { eventIdFor } from '../../shared/core/outbox.js';
import { LedgerConsumer } from '../support/ledger-consumer.js';

/**
 * Class: LedgerConsumer — the oracle must catch what it exists to catch, or every test that
 * relies on it proves nothing.
 */
const body = (resourceId: string, sequence: number, over: Record<string, unknown> = {}) => ({
  event_id: eventIdFor('payment', resourceId, sequence),
  resource_type: 'payment',
  resource_external_id: resourceId,
  sequence,
  event_type: 'PAYMENT_CREATED',
  timestamp: '2026-11-21T10:00:00.123456Z',
  gateway_account_id: 'gw-1',
  live: false,
  event_details: { amount: 1250 },
  ...over,
});
const send = (c: LedgerConsumer, b: Record<string, unknown>, attrs: { groupId?: string; dedupId?: string } = {}) =>
  c.accept(JSON.stringify(b), { groupId: String(b.resource_external_id), dedupId: String(b.event_id), ...attrs });

describe('LedgerConsumer', () => {
  it('Method: accept — a clean stream reports nothing', () => {
    const c = new LedgerConsumer();
    for (const s of [1, 2, 3]) send(c, body('R', s));
    send(c, body('S', 1));
    expect(c.report()).toMatchObject({
      received: 4,
      unique: 4,
      resources: 2,
      duplicates: [],
      invalid: [],
      mismatches: [],
      gaps: [],
      reorders: [],
    });
    expect(
      c.missingAgainst(
        new Map([
          ['R', 3],
          ['S', 1],
        ]),
      ),
    ).toEqual([]);
  });

  it('Method: accept — duplicates are counted (not reorders), reorders and gaps are reported', () => {
    const c = new LedgerConsumer();
    send(c, body('R', 1));
    send(c, body('R', 2));
    send(c, body('R', 2)); // duplicate right away
    send(c, body('R', 4));
    send(c, body('R', 3)); // overtaken by 4
    send(c, body('R', 1)); // a resend after a crash, long after: a duplicate, not a reorder
    send(c, body('S', 1));
    send(c, body('S', 3)); // S#2 never arrives
    const r = c.report();
    expect(r.duplicates.map((d) => `${d.resourceId}#${d.sequence}`)).toEqual(['R#2', 'R#1']);
    expect(r.reorders).toEqual([{ resourceId: 'R', sequence: 3, after: 4 }]);
    expect(r.gaps).toEqual([{ resourceId: 'S', missing: [2] }]);
    expect(c.sequences('R')).toEqual([1, 2, 4, 3]);
    expect(
      c.missingAgainst(
        new Map([
          ['R', 5],
          ['S', 3],
        ]),
      ),
    ).toEqual(['R: expected sequences 1..5, got 4 (highest 4)', 'S: expected sequences 1..3, got 2 (highest 3)']);
  });

  it('Method: accept — bodies off CONTRACT §5 are invalid, and ids that disagree with the message are mismatches', () => {
    const c = new LedgerConsumer();
    send(c, body('R', 1, { timestamp: '2026-11-21T10:00:00.123Z' })); // milliseconds only
    send(c, body('R', 1, { gateway_account_id: undefined })); // payments carry it
    send(c, body('R', 1, { event_type: 'paymentCreated' }));
    send(c, body('R', 1, { extra: true }));
    send(c, body('R', 0));
    c.accept('not json');
    send(c, body('P', 1, { resource_type: 'payout', gateway_account_id: undefined })); // payouts need none
    send(c, body('Q', 1), { groupId: 'other' });
    send(c, body('Q', 2), { dedupId: 'x' });
    send(c, body('Q', 1, { event_details: { amount: 1 } })); // same event_id, different body
    const r = c.report();
    expect(r.invalid).toHaveLength(6);
    expect(r.invalid[0]!.problems[0]).toMatch(/timestamp/);
    expect(r.invalid[1]!.problems[0]).toMatch(/gateway_account_id/);
    expect(r.unique).toBe(3);
    expect(r.mismatches).toHaveLength(3);
  });

  it('Option: scope — events of other resources are counted and ignored', () => {
    const c = new LedgerConsumer({ scope: (id) => id === 'R' });
    send(c, body('R', 1));
    send(c, body('X', 5));
    expect(c.report()).toMatchObject({ unique: 1, outOfScope: 1, gaps: [] });
  });
});
