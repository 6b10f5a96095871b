/**
 * Worldpay refunds against the Worldpay-shaped sandbox over real HTTP. The sandbox's per-order
 * refund counters are the oracle for "at most one refund per reference" and "never more than captured".
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HttpClient } from '../../shared/connectors/http.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { RefundRequest } from '../../shared/connectors/types.js';
import { createWorldpayConnector, type WorldpayConnector } from '../../shared/connectors/worldpay.js';
import { buildRefund, readRequest, WORLDPAY_DOCTYPE } from '../../shared/connectors/worldpay-xml.js';
import { startWorldpaySandbox, type WorldpaySandbox } from '../../cli/sandbox/worldpay-server.js';

const REFUND_PATH = '/jsp/merchant/xml/paymentService.jsp/refund';
let sandbox: WorldpaySandbox;
let wp: WorldpayConnector;
/** Short deadline, only for calls the sandbox is told to leave unanswered. */
let wpFast: WorldpayConnector;

beforeAll(async () => {
  // Refunds stay SENT_FOR_REFUND until a test settles them.
  sandbox = await startWorldpaySandbox({ captureSettleMs: 0, refundSettleMs: 3_600_000 });
  const opts = {
    baseUrl: sandbox.url,
    merchantCode: sandbox.merchantCode,
    username: sandbox.username,
    password: sandbox.password,
  };
  wp = createWorldpayConnector({ ...opts, timeoutMs: 5_000 });
  wpFast = createWorldpayConnector({ ...opts, timeoutMs: 300 });
});
afterAll(async () => {
  await wp.close();
  await wpFast.close();
  await sandbox.close();
});
afterEach(() => sandbox.faults.reset());

/** An order authorised (and captured unless `capture: false`) for 1250 GBP; its orderCode. */
async function order(opts: { capture?: boolean } = {}): Promise<{ chargeId: string; ref: string }> {
  const chargeId = `ch-${randomUUID()}`;
  const auth = await wp.authorise({
    chargeId,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'ref',
    description: 'refund test',
    idempotencyKey: `ord-${randomUUID()}`,
    card: new SensitiveCard({ number: '4444333322221111', exp_month: 7, exp_year: 2031, cvc: '987', cardholder_name: 'Ada' }),
  });
  if (auth.kind !== 'approved') throw new Error(`expected approved, got ${JSON.stringify(auth)}`);
  if (opts.capture !== false) {
    const cap = await wp.capture({
      chargeId,
      processorRef: auth.processorRef,
      amount: 1250,
      currency: 'GBP',
      idempotencyKey: 'c',
    });
    expect(cap.kind).toBe('submitted');
  }
  return { chargeId, ref: auth.processorRef };
}

const refundOf = (o: { chargeId: string; ref: string }, amount: number): RefundRequest => ({
  chargeId: o.chargeId,
  refundId: `rf-${randomUUID().slice(0, 8)}`,
  processorRef: o.ref,
  amount,
  currency: 'GBP',
  idempotencyKey: `payfleet-refund-${randomUUID()}`,
});

describe('Connector: worldpay — refunds', () => {
  it('builds the refund modification with the idempotency key as its reference', () => {
    const xml = buildRefund('M', 'ord-1', 'payfleet-refund-1', 500, 'GBP');
    expect(xml).toContain('<refund reference="payfleet-refund-1"><amount currencyCode="GBP" exponent="2" value="500"/></refund>');
    expect(readRequest(xml)).toMatchObject({
      op: 'refund',
      orderCode: 'ord-1',
      reference: 'payfleet-refund-1',
      amount: { value: 500 },
    });
  });

  it('full refund -> submitted (refundReceived); pending until Worldpay confirms it, then refunded; one refund', async () => {
    const o = await order();
    const r = refundOf(o, 1250);
    expect(await wp.refund(r)).toEqual({ kind: 'submitted', refundRef: r.idempotencyKey });
    expect(await wp.lookupRefund(r)).toEqual({ kind: 'pending', refundRef: r.idempotencyKey, amount: 1250 });
    expect(sandbox.order(o.ref)).toMatchObject({ lastEvent: 'SENT_FOR_REFUND', refunds: 1, refunded: 1250 });
    expect(sandbox.settleRefunds()).toBe(1);
    expect(await wp.lookupRefund({ ...r, refundRef: r.idempotencyKey })).toEqual({
      kind: 'refunded',
      refundRef: r.idempotencyKey,
      amount: 1250,
    });
    expect(sandbox.order(o.ref)).toMatchObject({ lastEvent: 'REFUNDED', capturedAmount: 1250, refunds: 1, refunded: 1250 });
  });

  it('partial refunds up to the captured amount; more is refused (error 5) and rejected', async () => {
    const o = await order();
    expect(await wp.refund(refundOf(o, 500))).toMatchObject({ kind: 'submitted' });
    expect(await wp.refund(refundOf(o, 700))).toMatchObject({ kind: 'submitted' });
    expect(await wp.refund(refundOf(o, 51))).toMatchObject({ kind: 'rejected', code: 'WORLDPAY_ERROR_5' });
    expect(await wp.refund(refundOf(o, 50))).toMatchObject({ kind: 'submitted' });
    expect(sandbox.order(o.ref)).toMatchObject({ refunds: 3, refunded: 1250 });
  });

  it('an over-refund, an uncaptured order and an unknown order are rejected and refund nothing', async () => {
    const o = await order();
    expect(await wp.refund(refundOf(o, 1251))).toMatchObject({ kind: 'rejected', code: 'WORLDPAY_ERROR_5' });
    const u = await order({ capture: false });
    expect(await wp.refund(refundOf(u, 100))).toMatchObject({ kind: 'rejected', code: 'NOT_REFUNDABLE' });
    expect(await wp.refund(refundOf({ chargeId: 'x', ref: `ord-${randomUUID()}` }, 100))).toMatchObject({
      kind: 'rejected',
      code: 'NOT_REFUNDABLE',
    });
    expect(sandbox.order(o.ref)).toMatchObject({ refunds: 0, refunded: 0 });
    expect(sandbox.order(u.ref)).toMatchObject({ refunds: 0 });
  });

  it('a retry under the same reference is answered refundReceived again, not refunded twice', async () => {
    const o = await order();
    const r = refundOf(o, 400);
    expect(await wp.refund(r)).toMatchObject({ kind: 'submitted' });
    expect(await wp.refund(r)).toMatchObject({ kind: 'submitted' });
    expect(sandbox.order(o.ref)).toMatchObject({ refunds: 1, duplicateRefunds: 1, refunded: 400 });
  });

  it('timeout after the refund -> ambiguous; lookup finds it pending; the retry is de-duplicated: one refund', async () => {
    const o = await order();
    const r = refundOf(o, 600);
    sandbox.faults.update({ paths: [REFUND_PATH], rateTimeoutAfterSuccess: 1 });
    expect(await wpFast.refund(r)).toMatchObject({ kind: 'ambiguous' });
    sandbox.faults.reset();
    expect(await wp.lookupRefund(r)).toMatchObject({ kind: 'pending', amount: 600 });
    expect(await wp.refund(r)).toMatchObject({ kind: 'submitted' });
    expect(sandbox.order(o.ref)).toMatchObject({ refunds: 1, refunded: 600 });
  });

  it('a reset before Worldpay acted -> ambiguous; lookup not_found; the retry refunds once', async () => {
    const o = await order();
    const r = refundOf(o, 300);
    sandbox.faults.update({ paths: [REFUND_PATH], rateReset: 1 });
    expect(await wp.refund(r)).toMatchObject({ kind: 'ambiguous' });
    sandbox.faults.reset();
    expect(await wp.lookupRefund(r)).toEqual({ kind: 'not_found' });
    expect(await wp.refund(r)).toMatchObject({ kind: 'submitted' });
    expect(sandbox.order(o.ref)).toMatchObject({ refunds: 1, refunded: 300 });
  });

  it('a refund that fails after submission is failed, and its amount can be refunded again', async () => {
    const o = await order();
    const r = refundOf(o, 1250);
    expect(await wp.refund(r)).toMatchObject({ kind: 'submitted' });
    sandbox.settleRefunds('failed');
    expect(await wp.lookupRefund(r)).toMatchObject({ kind: 'failed', code: 'REFUND_FAILED' });
    expect(sandbox.order(o.ref)).toMatchObject({ refunded: 0, lastEvent: 'REFUND_FAILED' });
    expect(await wp.refund(refundOf(o, 1250))).toMatchObject({ kind: 'submitted' });
  });

  it('POST /__sandbox/refunds/settle ends pending refunds over HTTP ({"end":"failed"} fails them)', async () => {
    sandbox.settleRefunds(); // those other tests left pending
    const o = await order();
    const r = refundOf(o, 200);
    expect(await wp.refund(r)).toMatchObject({ kind: 'submitted' });
    const res = await fetch(`${sandbox.url}/__sandbox/refunds/settle`, { method: 'POST', body: '{"end":"failed"}' });
    expect(await res.json()).toEqual({ settled: 1 });
    expect(await wp.lookupRefund(r)).toMatchObject({ kind: 'failed' });
  });

  it('5xx and 429 are retryable and refund nothing', async () => {
    const o = await order();
    sandbox.faults.update({ paths: [REFUND_PATH], rate5xx: 1 });
    expect(await wp.refund(refundOf(o, 100))).toMatchObject({ kind: 'error', retryable: true, code: 'WORLDPAY_HTTP_500' });
    sandbox.faults.update({ rate5xx: 0, rate429: 1 });
    expect(await wp.refund(refundOf(o, 100))).toMatchObject({ kind: 'error', retryable: true, code: 'WORLDPAY_HTTP_429' });
    sandbox.faults.reset();
    expect(sandbox.order(o.ref)).toMatchObject({ refunds: 0 });
  });

  it('an inquiry without refund journals is read at the order level (lastEvent)', async () => {
    const reply = (lastEvent: string) =>
      `<?xml version="1.0"?>\n${WORLDPAY_DOCTYPE}\n<paymentService version="1.4" merchantCode="M"><reply><orderStatus orderCode="o1"><payment><amount value="1250" currencyCode="GBP" exponent="2"/><lastEvent>${lastEvent}</lastEvent></payment></orderStatus></reply></paymentService>`;
    const canned = (body: string) => {
      const http: HttpClient = {
        baseUrl: 'http://canned.invalid/jsp/merchant/xml/paymentService.jsp',
        request: async () => ({ status: 200, headers: {}, body, bodyBytes: Buffer.from(body) }),
        close: async () => undefined,
      };
      return createWorldpayConnector({ baseUrl: http.baseUrl, merchantCode: 'M', username: 'u', password: 'p', http });
    };
    const r = refundOf({ chargeId: 'c', ref: 'o1' }, 1250);
    expect(await canned(reply('REFUNDED')).lookupRefund(r)).toMatchObject({ kind: 'refunded', amount: 1250 });
    expect(await canned(reply('SENT_FOR_REFUND')).lookupRefund(r)).toMatchObject({ kind: 'pending' });
    expect(await canned(reply('REFUND_FAILED')).lookupRefund(r)).toMatchObject({ kind: 'failed' });
    expect(await canned(reply('CAPTURED')).lookupRefund(r)).toEqual({ kind: 'not_found' });
  });
});
