import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../shared/core/consumer.js';
import type { Charge, ChargeStatus } from '../../shared/charges/charge.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createRefundHandler, type RefundHooks } from '../../workers/refund/handler.js';
import type { Refund } from '../../workers/refund/refund.js';
import { parseRefundRequested } from '../../workers/refund/schema.js';
import { fakeOnceStores, type FakeOnceStores } from '../support/fake-once-stores.js';
import { scriptedProcessor, type RefundScript } from './support.js';

/**
 * The refund worker's decision table, fast: the handler on in-memory stores with a scripted refund
 * port. refund-dynamo.test.ts proves the race and duplicate paths against DynamoDB Local.
 */
const CONFIRM_DELAY_SEC = 60;
let stores: FakeOnceStores;
beforeEach(() => {
  stores = fakeOnceStores();
});
afterEach(async () => {
  await stores?.keeper.releaseAll();
});

function setup(script: RefundScript = {}, o: { registry?: Pick<ProcessorRegistry, 'get'>; hooks?: RefundHooks } = {}) {
  const processor = scriptedProcessor(script);
  const handle = createRefundHandler({
    once: stores.once,
    charges: stores.charges,
    registry: o.registry ?? processor.registry,
    settings: { confirmDelaySec: CONFIRM_DELAY_SEC, maxConfirmDelaySec: 43_200 },
    clock: stores.clock.now,
    ...(o.hooks ? { hooks: o.hooks } : {}),
  });
  return { processor, handle };
}

const ctx = (): HandlerContext => ({
  messageId: randomUUID(),
  groupId: 'c1',
  receiveCount: 1,
  signal: new AbortController().signal,
  log: silentLogger(),
  setAttempts: () => undefined,
});

const request = (o: { refundId?: string; chargeId?: string; amount?: number; refundRequestId?: string } = {}) =>
  parseRefundRequested(
    JSON.stringify({
      type: 'RefundRequested',
      refundRequestId: o.refundRequestId ?? randomUUID(),
      refundId: o.refundId ?? 'r1',
      chargeId: o.chargeId ?? 'c1',
      amount: o.amount ?? 1000,
      reference: 'refund ref',
      requestedAt: '2026-11-21T12:00:00.000Z',
    }),
  );

function seed(status: ChargeStatus, extra: Partial<Charge> = {}, chargeId = 'c1'): void {
  const at = '2026-11-21T11:00:00.000Z';
  stores.seedCharge({
    chargeId,
    gatewayAccountId: 'gw-1',
    processor: 'sandbox',
    amount: 1000,
    currency: 'GBP',
    reference: 'ref-c1',
    description: 'test charge',
    status,
    live: false,
    version: 5,
    eventSeq: 4,
    createdAt: at,
    updatedAt: at,
    history: [{ status, at }],
    processorRef: 'pi_1',
    ...extra,
  });
}

const refundRow = (refundId = 'r1') => stores.db.get('refunds', { refundId }) as (Refund & Record<string, unknown>) | undefined;
/** Whether the row became a refund (a bare reservation left by a refused request is not one). */
const isRefund = (refundId = 'r1') => refundRow(refundId)?.status !== undefined;
const refundedAmount = async (chargeId = 'c1') => (await stores.charges.get(chargeId))?.refundedAmount ?? 0;
const eventTypes = (refundId = 'r1') => stores.events(refundId).map((e) => e.eventType);

describe('refund worker', () => {
  describe('refused before anything is created', () => {
    const rows: { name: string; status?: ChargeStatus; extra?: Partial<Charge>; amount?: number; code: string }[] = [
      { name: 'no such charge', code: 'CHARGE_NOT_FOUND' },
      { name: 'authorised, not captured', status: 'AUTHORISATION_SUCCESS', code: 'NOT_REFUNDABLE' },
      { name: 'capture approved, not done', status: 'CAPTURE_APPROVED', code: 'NOT_REFUNDABLE' },
      { name: 'capture in flight', status: 'CAPTURE_READY', code: 'NOT_REFUNDABLE' },
      { name: 'capture failed', status: 'CAPTURE_ERROR', code: 'NOT_REFUNDABLE' },
      { name: 'declined', status: 'AUTHORISATION_REJECTED', code: 'NOT_REFUNDABLE' },
      { name: 'more than captured', status: 'CAPTURED', amount: 1001, code: 'REFUND_AMOUNT_UNAVAILABLE' },
      {
        name: 'more than is left',
        status: 'CAPTURED',
        extra: { refundedAmount: 800 },
        amount: 201,
        code: 'REFUND_AMOUNT_UNAVAILABLE',
      },
    ];
    it.each(rows)('$name: $code, no refund, nothing taken from the charge, no processor call', async ({ status, extra, amount, code }) => {
      const { processor, handle } = setup();
      if (status) seed(status, extra);
      await expect(handle(request({ amount: amount ?? 500 }), ctx())).rejects.toMatchObject({ kind: 'terminal', code });
      expect(isRefund()).toBe(false);
      // What is left is a bare reservation, without chargeId (out of the by-charge index), removed by
      // TTL; the refusal is recorded on it by one commit fenced on this attempt's lease.
      expect(refundRow()).toMatchObject({ version: 2, ttl: expect.any(Number), refusedCode: code });
      expect(refundRow()?.chargeId).toBeUndefined();
      expect(stores.commits).toHaveLength(1);
      expect(stores.commits[0]!.changes.map((c) => c.table)).toEqual(['refunds']);
      expect(processor.refunds).toHaveLength(0);
      expect(await refundedAmount()).toBe(extra?.refundedAmount ?? 0);
    });

  });

  describe('a new refund', () => {
    it('full refund: REFUND_SUBMITTED and the amount taken from the charge are committed BEFORE the call; then REFUNDED', async () => {
      const seen: { status?: string; refunded?: number; key?: string }[] = [];
      const { processor, handle } = setup({
        onRefund: async (req) => {
          seen.push({ status: refundRow()?.status, refunded: await refundedAmount(), key: req.idempotencyKey });
        },
      });
      seed('CAPTURED');
      const req = request();
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      expect(seen).toEqual([{ status: 'REFUND_SUBMITTED', refunded: 1000, key: `payfleet-refund-${req.refundRequestId}` }]);
      expect(processor.refunds[0]).toMatchObject({
        chargeId: 'c1',
        refundId: 'r1',
        processorRef: 'pi_1',
        amount: 1000,
        currency: 'GBP',
      });
      expect(refundRow()).toMatchObject({ status: 'REFUNDED', refundRef: 're_1', chargeId: 'c1', amount: 1000 });
      // A refund is kept for good: the reservation's TTL went with the commit that made it.
      expect(refundRow()?.ttl).toBeUndefined();
      expect(await refundedAmount()).toBe(1000);
      expect(eventTypes()).toEqual(['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_SUCCEEDED']);
      expect(stores.events('r1').map((e) => e.sequence)).toEqual([1, 2, 3]);
      expect(stores.events('r1')[2]!.details).toMatchObject({ charge_refunded_amount: 1000, charge_refund_available: 0 });
      // The charge's own events are untouched: a refund is its own resource.
      expect(stores.events('c1')).toEqual([]);
    });

    it("its events are the refund's, with the charge as parent", async () => {
      const { handle } = setup();
      seed('CAPTURED');
      await handle(request(), ctx());
      const rows = stores.db.query('events', 'r1');
      expect(rows.map((r) => [r.resourceType, r.resourceId, r.parentResourceId])).toEqual([
        ['refund', 'r1', 'c1'],
        ['refund', 'r1', 'c1'],
        ['refund', 'r1', 'c1'],
      ]);
    });

    it('CAPTURE_SUBMITTED is refundable', async () => {
      const { handle } = setup();
      seed('CAPTURE_SUBMITTED');
      expect(await handle(request({ amount: 300 }), ctx())).toEqual({ action: 'ack' });
      expect(await refundedAmount()).toBe(300);
    });

    it('partial refunds up to the captured amount; one penny more is REFUND_AMOUNT_UNAVAILABLE', async () => {
      const { processor, handle } = setup();
      seed('CAPTURED');
      expect(await handle(request({ refundId: 'r1', amount: 400 }), ctx())).toEqual({ action: 'ack' });
      expect(await handle(request({ refundId: 'r2', amount: 600 }), ctx())).toEqual({ action: 'ack' });
      await expect(handle(request({ refundId: 'r3', amount: 1 }), ctx())).rejects.toMatchObject({
        code: 'REFUND_AMOUNT_UNAVAILABLE',
      });
      expect(await refundedAmount()).toBe(1000);
      expect(processor.refunds.map((r) => r.amount)).toEqual([400, 600]);
      expect(isRefund('r3')).toBe(false);
    });

    it('refused by the processor: REFUND_ERROR, the amount given back in the same commit, PROCESSOR_REJECTED', async () => {
      const { handle } = setup({ refund: [{ kind: 'rejected', code: 'charge_disputed', message: 'disputed' }] });
      seed('CAPTURED');
      expect(await handle(request(), ctx())).toEqual({
        action: 'dead-letter',
        code: 'PROCESSOR_REJECTED',
        detail: 'refund refused by sandbox: charge_disputed: disputed',
      });
      expect(refundRow()).toMatchObject({
        status: 'REFUND_ERROR',
        errorCode: 'PROCESSOR_REJECTED',
        processorCode: 'charge_disputed',
      });
      expect(await refundedAmount()).toBe(0);
      expect(eventTypes()).toEqual(['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_ERROR']);
      const last = stores.commits.at(-1)!;
      expect(last.changes.map((c) => c.table).sort()).toEqual(['charges', 'refunds']);
      // The amount is available again.
      expect(await handle(request({ refundId: 'r2', amount: 1000 }), ctx())).toEqual({ action: 'ack' });
    });

    it('a non-retryable processor error ends the same way; a retryable one keeps REFUND_SUBMITTED and the amount', async () => {
      const { handle } = setup({ refund: [{ kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: '503' }] });
      seed('CAPTURED');
      await expect(handle(request(), ctx())).rejects.toMatchObject({ kind: 'retryable', code: 'PROCESSOR_UNAVAILABLE' });
      expect(refundRow()?.status).toBe('REFUND_SUBMITTED');
      expect(await refundedAmount()).toBe(1000);
      const r2 = setup({ refund: [{ kind: 'error', retryable: false, code: 'invalid_request', message: 'bad' }] });
      expect(
        await r2.handle(request({ refundId: 'r2', chargeId: 'c2', amount: 10 }), ctx()).catch((e: unknown) => e),
      ).toMatchObject({
        code: 'CHARGE_NOT_FOUND',
      });
      seed('CAPTURED', {}, 'c2');
      expect(await r2.handle(request({ refundId: 'r2', chargeId: 'c2', amount: 10 }), ctx())).toMatchObject({
        code: 'PROCESSOR_REJECTED',
      });
      expect(await refundedAmount('c2')).toBe(0);
    });
  });

  describe('a refund that exists', () => {
    it('a duplicate of a REFUNDED request is acknowledged without a processor call', async () => {
      const { processor, handle } = setup();
      seed('CAPTURED');
      const req = request();
      await handle(req, ctx());
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      // Another request for the same refund (same charge and amount) follows it: no second refund.
      expect(await handle(request(), ctx())).toEqual({ action: 'ack' });
      expect(processor.refunds).toHaveLength(1);
    });

    it('a duplicate of a refused request gets the same letter, not an ack', async () => {
      const { processor, handle } = setup({ refund: [{ kind: 'rejected', code: 'charge_disputed', message: 'disputed' }] });
      seed('CAPTURED');
      const req = request();
      await handle(req, ctx());
      expect(await handle(req, ctx())).toMatchObject({ action: 'dead-letter', code: 'PROCESSOR_REJECTED' });
      expect(await handle(request(), ctx())).toMatchObject({ action: 'dead-letter', code: 'PROCESSOR_REJECTED' });
      expect(processor.refunds).toHaveLength(1);
    });

    it.each([
      { name: 'another amount', other: { amount: 999 } },
      { name: 'another charge', other: { chargeId: 'c2' } },
    ])('the same refundId with $name: REFUND_ID_CONFLICT, the refund untouched', async ({ other }) => {
      const { processor, handle } = setup();
      seed('CAPTURED');
      seed('CAPTURED', {}, 'c2');
      await handle(request(), ctx());
      const before = refundRow();
      const verdict = await handle(request(other), ctx());
      expect(verdict).toMatchObject({ action: 'dead-letter', code: 'REFUND_ID_CONFLICT' });
      expect(refundRow()).toMatchObject({ status: before?.status, version: before?.version, amount: 1000, chargeId: 'c1' });
      expect(processor.refunds).toHaveLength(1);
      expect(await refundedAmount('c2')).toBe(0);
    });

    it('an ambiguous answer is looked up before anything is sent again; found refunded: one refund call in all', async () => {
      const { processor, handle } = setup({
        refund: [{ kind: 'ambiguous', reason: 'read timeout' }],
        lookup: [{ kind: 'refunded', refundRef: 're_9', amount: 1000 }],
      });
      seed('CAPTURED');
      const req = request();
      await expect(handle(req, ctx())).rejects.toMatchObject({ kind: 'retryable', code: 'REFUND_OUTCOME_UNKNOWN' });
      expect(refundRow()?.status).toBe('REFUND_SUBMITTED');
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      expect(processor.refunds).toHaveLength(1);
      expect(processor.lookups).toHaveLength(1);
      expect(refundRow()).toMatchObject({ status: 'REFUNDED', refundRef: 're_9' });
    });

    it('looked up and not found: sent again under the SAME idempotency key', async () => {
      const { processor, handle } = setup({ refund: [{ kind: 'ambiguous', reason: 'reset' }], lookup: [{ kind: 'not_found' }] });
      seed('CAPTURED');
      const req = request();
      await expect(handle(req, ctx())).rejects.toMatchObject({ code: 'REFUND_OUTCOME_UNKNOWN' });
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      expect(processor.refunds.map((r) => r.idempotencyKey)).toEqual([
        `payfleet-refund-${req.refundRequestId}`,
        `payfleet-refund-${req.refundRequestId}`,
      ]);
      // Another request for the same refund uses the stored key too, never its own.
      expect(refundRow()?.idempotencyKey).toBe(`payfleet-refund-${req.refundRequestId}`);
    });

    it('a lookup that is not conclusive (e.g. inside Chase’s 70 seconds): retried later, nothing sent again', async () => {
      const { processor, handle } = setup({
        refund: [{ kind: 'ambiguous', reason: 'timeout' }],
        lookup: [{ kind: 'unknown', reason: 'inside 70 s' }],
      });
      seed('CAPTURED');
      const req = request();
      await expect(handle(req, ctx())).rejects.toMatchObject({ code: 'REFUND_OUTCOME_UNKNOWN' });
      await expect(handle(req, ctx())).rejects.toMatchObject({ kind: 'retryable', code: 'REFUND_OUTCOME_UNKNOWN' });
      expect(processor.refunds).toHaveLength(1);
      expect(refundRow()?.status).toBe('REFUND_SUBMITTED');
    });

    it('a worker stopped between REFUND_SUBMITTED and the call: the next delivery looks up first (found failed: REFUND_ERROR, amount back)', async () => {
      let stop = true;
      const { processor, handle } = setup(
        { lookup: [{ kind: 'failed', code: 'expired_card', message: 'card expired' }] },
        {
          hooks: {
            beforeProcessorCall: async () => {
              if (stop) throw new Error('killed');
            },
          },
        },
      );
      seed('CAPTURED');
      const req = request();
      await expect(handle(req, ctx())).rejects.toThrow('killed');
      expect(refundRow()?.status).toBe('REFUND_SUBMITTED');
      stop = false;
      expect(await handle(req, ctx())).toMatchObject({ action: 'dead-letter', code: 'PROCESSOR_REJECTED' });
      expect(processor.refunds).toHaveLength(0);
      expect(processor.lookups).toHaveLength(1);
      expect(await refundedAmount()).toBe(0);
    });

    it('confirmed later: REFUND_SUBMITTED stays, deferred with a doubling delay, looked up until refunded', async () => {
      const { processor, handle } = setup({
        refund: [{ kind: 'submitted', refundRef: 're_p' }],
        lookup: [
          { kind: 'pending', refundRef: 're_p', amount: 1000 },
          { kind: 'refunded', refundRef: 're_p', amount: 1000 },
        ],
      });
      seed('CAPTURED');
      const req = request();
      expect(await handle(req, ctx())).toMatchObject({ action: 'defer', delaySec: CONFIRM_DELAY_SEC });
      expect(refundRow()).toMatchObject({ status: 'REFUND_SUBMITTED', refundRef: 're_p' });
      expect(await handle(req, ctx())).toMatchObject({ action: 'defer', delaySec: 2 * CONFIRM_DELAY_SEC });
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      expect(processor.refunds).toHaveLength(1);
      expect(processor.lookups.map((l) => l.refundRef)).toEqual(['re_p', 're_p']);
      expect(eventTypes()).toEqual(['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_SUCCEEDED']);
    });
  });

  describe('a holder paused past its lease', () => {
    it('cannot dead-letter a request another worker took over and refunded: its refusal is fenced, its retry acknowledges', async () => {
      seed('CAPTURED');
      const req = request({ amount: 1000 });
      let paused = true;
      const { processor, handle } = setup(
        {},
        {
          hooks: {
            // The first holder stops after write 1; its lease lapses; a redelivery takes the request
            // over and refunds it. Then the first holder reads the charge: all 1000 taken.
            beforeChargeRead: async () => {
              if (!paused) return;
              paused = false;
              stores.clock.advance(31_000);
              await expect(handle(req, ctx())).resolves.toEqual({ action: 'ack' });
            },
          },
        },
      );
      const stale = handle(req, ctx());
      await expect(stale).rejects.toMatchObject({ kind: 'retryable' });
      await expect(stale).rejects.not.toMatchObject({ code: 'REFUND_AMOUNT_UNAVAILABLE' });
      expect(processor.refunds).toHaveLength(1);
      expect(refundRow()).toMatchObject({ status: 'REFUNDED' });
      // Its redelivery finds the request completed: acknowledged, not dead-lettered.
      await expect(handle(req, ctx())).resolves.toEqual({ action: 'ack' });
    });
  });

  describe('two refunds of one charge racing (separate leases, both read the charge before either commits)', () => {
    it('only the amount that fits is accepted: the second commit is refused and its retry finds the amount gone', async () => {
      const read: Array<() => void> = [];
      const bothRead = new Promise<void>((resolve) => {
        read.push(resolve);
      });
      let waiting = 0;
      const { processor, handle } = setup(
        {},
        {
          hooks: {
            afterChargeRead: async () => {
              waiting++;
              if (waiting === 2) read[0]!();
              if (waiting <= 2) await bothRead;
            },
          },
        },
      );
      seed('CAPTURED');
      const reqs = { ra: request({ refundId: 'ra', amount: 600 }), rb: request({ refundId: 'rb', amount: 600 }) };
      const [a, b] = await Promise.allSettled([handle(reqs.ra, ctx()), handle(reqs.rb, ctx())]);
      const outcomes = [a, b].map((o) => (o.status === 'fulfilled' ? 'ok' : (o.reason as { code: string }).code)).sort();
      expect(outcomes).toEqual(['CONFLICT', 'ok']);
      const loser = a.status === 'rejected' ? 'ra' : 'rb';
      // Its redelivery reads the charge again: 400 left, 600 asked.
      await expect(handle(reqs[loser], ctx())).rejects.toMatchObject({ code: 'REFUND_AMOUNT_UNAVAILABLE' });
      expect(await refundedAmount()).toBe(600);
      expect(processor.refunds).toHaveLength(1);
      const live = ['ra', 'rb'].map((id) => refundRow(id)).filter((r) => r?.status !== undefined && r.status !== 'REFUND_ERROR');
      expect(live.reduce((sum, r) => sum + (r?.amount ?? 0), 0)).toBeLessThanOrEqual(1000);
    });
  });
});
