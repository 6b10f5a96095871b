/**
 * Worldpay connector against the Worldpay-shaped sandbox, over real HTTP (loopback). The sandbox's
 * stats are the oracle for "at most one order authorised / one capture per orderCode".
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HttpClient } from '../../shared/connectors/http.js';
import { DependencyUnavailableError } from '../../shared/core/breaker.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { AuthoriseRequest } from '../../shared/connectors/types.js';
import { createWorldpayConnector, type WorldpayConnector } from '../../shared/connectors/worldpay.js';
import { buildOrderSubmit, parseReply, WORLDPAY_DOCTYPE } from '../../shared/connectors/worldpay-xml.js';
import { startHttpServer } from '../../cli/sandbox/http-server.js';
import { startWorldpaySandbox, type WorldpaySandbox } from '../../cli/sandbox/worldpay-server.js';

const CVC = '987';
const HOLDER = 'Ada <Lovelace> & "Co"';

function card(number: string, overrides: Partial<{ exp_year: number; cardholder_name: string }> = {}): SensitiveCard {
  return new SensitiveCard({
    number,
    exp_month: 7,
    exp_year: overrides.exp_year ?? 2031,
    cvc: CVC,
    cardholder_name: overrides.cardholder_name ?? HOLDER,
  });
}

function authReq(number: string, over: Partial<AuthoriseRequest> = {}): AuthoriseRequest {
  return {
    chargeId: `ch-${randomUUID()}`,
    gatewayAccountId: 'ga-1',
    amount: 1250,
    currency: 'GBP',
    reference: 'ref-1',
    description: 'Council tax & <parking> "fine"',
    idempotencyKey: `ord-${randomUUID()}`,
    card: card(number),
    ...over,
  };
}

/** A connector whose HTTP client answers `body` with `status` for every request (no network). */
function cannedConnector(status: number, body: string): WorldpayConnector {
  const http: HttpClient = {
    baseUrl: 'http://canned.invalid/jsp/merchant/xml/paymentService.jsp',
    request: async () => ({ status, headers: {}, body, bodyBytes: Buffer.from(body) }),
    close: async () => undefined,
  };
  return createWorldpayConnector({ baseUrl: http.baseUrl, merchantCode: 'M', username: 'u', password: 'p', http });
}

/** A connector whose client is refused by an open breaker on every request (nothing sent). */
function refusedConnector(): WorldpayConnector {
  const http: HttpClient = {
    baseUrl: 'http://refused.invalid/jsp/merchant/xml/paymentService.jsp',
    request: async () => {
      throw new DependencyUnavailableError('worldpay', 1000);
    },
    close: async () => undefined,
  };
  return createWorldpayConnector({ baseUrl: http.baseUrl, merchantCode: 'M', username: 'u', password: 'p', http });
}

describe('worldpay connector with its breaker open', () => {
  // Seen in the demo: a capture refused by the open breaker became a non-retryable
  // WORLDPAY_UNREACHABLE, so the charge was given up as CAPTURE_ERROR and dead-lettered during an
  // outage. The refusal must reach the consumer as it is, which parks the message.
  it('lets the refusal through as DependencyUnavailableError for authorise, capture, void, lookup and refunds, never as a final error', async () => {
    const wp = refusedConnector();
    const req = authReq('4444333322221111');
    const cap = {
      chargeId: req.chargeId,
      processorRef: req.idempotencyKey,
      amount: req.amount,
      currency: req.currency,
      idempotencyKey: 'k',
    };
    await expect(wp.authorise(req)).rejects.toBeInstanceOf(DependencyUnavailableError);
    await expect(wp.capture(cap)).rejects.toBeInstanceOf(DependencyUnavailableError);
    await expect(
      wp.void({ chargeId: req.chargeId, processorRef: req.idempotencyKey, idempotencyKey: 'v' }),
    ).rejects.toBeInstanceOf(DependencyUnavailableError);
    await expect(
      wp.lookup({ chargeId: req.chargeId, idempotencyKey: req.idempotencyKey, amount: req.amount, currency: req.currency }),
    ).rejects.toBeInstanceOf(DependencyUnavailableError);
    const refund = { ...cap, refundId: 'rf-1', idempotencyKey: 'payfleet-refund-1' };
    await expect(wp.refund(refund)).rejects.toBeInstanceOf(DependencyUnavailableError);
    await expect(wp.lookupRefund(refund)).rejects.toBeInstanceOf(DependencyUnavailableError);
  });
});

const worldpayError = (code: string, text: string) =>
  `<?xml version="1.0"?>\n${WORLDPAY_DOCTYPE}\n<paymentService version="1.4" merchantCode="M"><reply><error code="${code}"><![CDATA[${text}]]></error></reply></paymentService>`;

describe('worldpay connector', () => {
  let sandbox: WorldpaySandbox;
  /** Generous deadline: these tests must not time out by accident on a loaded machine. */
  let wp: WorldpayConnector;
  /** Short deadline, only for calls the sandbox is told to leave unanswered. */
  let wpFast: WorldpayConnector;
  const logLines: string[] = [];

  beforeAll(async () => {
    sandbox = await startWorldpaySandbox({ captureSettleMs: 50, pendingAuthMs: 1_000 });
    // Raw pino (no masking destination) so a leak by the connector itself would be visible here.
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
    wp = createWorldpayConnector({
      baseUrl: sandbox.url,
      merchantCode: sandbox.merchantCode,
      username: sandbox.username,
      password: sandbox.password,
      timeoutMs: 5_000,
      logger,
    });
    wpFast = createWorldpayConnector({
      baseUrl: sandbox.url,
      merchantCode: sandbox.merchantCode,
      username: sandbox.username,
      password: sandbox.password,
      timeoutMs: 300,
      logger,
    });
  });
  afterAll(async () => {
    await wp.close();
    await wpFast.close();
    await sandbox.close();
  });
  afterEach(() => sandbox.faults.reset());

  describe('authorise', () => {
    it('AUTHORISED -> approved; processorRef is the orderCode; untrusted text survives XML escaping', async () => {
      const req = authReq('4444333322221111');
      const out = await wp.authorise(req);
      expect(out).toEqual({ kind: 'approved', processorRef: req.idempotencyKey, amount: 1250, currency: 'GBP' });
      const order = sandbox.order(req.idempotencyKey);
      expect(order).toMatchObject({
        authorisations: 1,
        lastEvent: 'AUTHORISED',
        description: req.description,
        amount: 1250,
        currency: 'GBP',
      });
    });

    it('uses the currency exponent: JPY is sent with exponent 0 and approved', async () => {
      const req = authReq('5555555555554444', { amount: 500, currency: 'JPY' });
      expect(await wp.authorise(req)).toMatchObject({ kind: 'approved', amount: 500, currency: 'JPY' });
    });

    it('REFUSED -> declined with the ISO8583 return code as code', async () => {
      const refused = authReq('4000000000000002');
      expect(await wp.authorise(refused)).toMatchObject({ kind: 'declined', processorRef: refused.idempotencyKey, code: '5' });
      expect(await wp.authorise(authReq('4000000000009995'))).toMatchObject({ kind: 'declined', code: '51' });
      expect(
        await wp.authorise(authReq('4444333322221111', { card: card('4444333322221111', { cardholder_name: 'REFUSED' }) })),
      ).toMatchObject({ kind: 'declined', code: '5' });
      expect(sandbox.order(refused.idempotencyKey)).toMatchObject({ authorisations: 0, refusals: 1 });
    });

    it('lastEvent ERROR -> non-retryable error, not a decline', async () => {
      expect(await wp.authorise(authReq('4000000000000119'))).toMatchObject({
        kind: 'error',
        retryable: false,
        code: 'WORLDPAY_EVENT_ERROR',
      });
    });

    it('error codes: 7 payment details and 4 security are terminal, 1 internal is retryable', async () => {
      expect(await wp.authorise(authReq('4444333322221112'))).toMatchObject({
        kind: 'error',
        retryable: false,
        code: 'WORLDPAY_ERROR_7',
      });
      const internal = authReq('4000000000000101');
      expect(await wp.authorise(internal)).toMatchObject({ kind: 'error', retryable: true, code: 'WORLDPAY_ERROR_1' });
      expect(sandbox.order(internal.idempotencyKey)).toBeUndefined();
      const wrongMerchant = createWorldpayConnector({
        baseUrl: sandbox.url,
        merchantCode: 'SOMEONE_ELSE',
        username: sandbox.username,
        password: sandbox.password,
      });
      try {
        expect(await wrongMerchant.authorise(authReq('4444333322221111'))).toMatchObject({
          kind: 'error',
          retryable: false,
          code: 'WORLDPAY_ERROR_4',
        });
      } finally {
        await wrongMerchant.close();
      }
    });

    it('error code 2 (parse error) and unknown codes are terminal errors; an unreadable 200 is ambiguous, never a decline', async () => {
      const parse = await cannedConnector(200, worldpayError('2', 'The markup in the document is not well-formed.')).authorise(
        authReq('4444333322221111'),
      );
      expect(parse).toMatchObject({ kind: 'error', retryable: false, code: 'WORLDPAY_ERROR_2' });
      const unknown = await cannedConnector(200, worldpayError('99', 'something new')).authorise(authReq('4444333322221111'));
      expect(unknown).toMatchObject({ kind: 'error', retryable: false, code: 'WORLDPAY_ERROR_99' });
      const garbled = await cannedConnector(200, '<html>proxy error</html>').authorise(authReq('4444333322221111'));
      expect(garbled.kind).toBe('ambiguous');
    });

    it('duplicate orderCode (error 5) is resolved by inquiry: approved again, still one order', async () => {
      const req = authReq('4444333322221111');
      await wp.authorise(req);
      const again = await wp.authorise({ ...req, card: card('4444333322221111') });
      expect(again).toEqual({ kind: 'approved', processorRef: req.idempotencyKey, amount: 1250, currency: 'GBP' });
      expect(sandbox.order(req.idempotencyKey)).toMatchObject({ submits: 2, duplicates: 1, authorisations: 1 });
    });

    it('duplicate of a refused order -> the original decline; of a different amount -> AMOUNT_MISMATCH', async () => {
      const refused = authReq('4000000000000002');
      await wp.authorise(refused);
      expect(await wp.authorise({ ...refused, card: card('4000000000000002') })).toMatchObject({ kind: 'declined', code: '5' });
      const req = authReq('4444333322221111');
      await wp.authorise(req);
      expect(await wp.authorise({ ...req, amount: 9999, card: card('4444333322221111') })).toMatchObject({
        kind: 'error',
        retryable: false,
        code: 'AMOUNT_MISMATCH',
      });
    });

    it('concurrent retries of one orderCode create exactly one authorised order', async () => {
      const req = authReq('4444333322221111');
      const outs = await Promise.all(Array.from({ length: 8 }, () => wp.authorise({ ...req, card: card('4444333322221111') })));
      for (const o of outs) expect(o).toMatchObject({ kind: 'approved', processorRef: req.idempotencyKey });
      expect(sandbox.order(req.idempotencyKey)).toMatchObject({ submits: 8, duplicates: 7, authorisations: 1 });
    });

    it('timeout after success -> ambiguous; lookup finds AUTHORISED; the retry is approved; one order', async () => {
      const admin = await fetch(`${sandbox.url}/__sandbox/faults`, {
        method: 'POST',
        body: JSON.stringify({ rateTimeoutAfterSuccess: 1 }),
      });
      expect(admin.status).toBe(200);
      const req = authReq('4444333322221111');
      const first = await wpFast.authorise(req);
      expect(first).toMatchObject({ kind: 'ambiguous', processorRef: req.idempotencyKey });
      sandbox.faults.reset();
      const found = await wp.lookup({
        chargeId: req.chargeId,
        idempotencyKey: req.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
      });
      expect(found).toEqual({ kind: 'authorised', processorRef: req.idempotencyKey, amount: 1250, currency: 'GBP' });
      expect(await wp.authorise({ ...req, card: card('4444333322221111') })).toMatchObject({ kind: 'approved' });
      const stats = (await (await fetch(`${sandbox.url}/__sandbox/stats`)).json()) as {
        orders: Record<string, { authorisations: number }>;
      };
      expect(stats.orders[req.idempotencyKey]?.authorisations).toBe(1);
    });

    it('reset before processing -> ambiguous; lookup not_found; the retry authorises once', async () => {
      sandbox.faults.update({ rateReset: 1 });
      const req = authReq('4444333322221111');
      expect(await wp.authorise(req)).toMatchObject({ kind: 'ambiguous' });
      sandbox.faults.reset();
      expect(
        await wp.lookup({ chargeId: req.chargeId, idempotencyKey: req.idempotencyKey, amount: 1250, currency: 'GBP' }),
      ).toEqual({ kind: 'not_found' });
      expect(await wp.authorise({ ...req, card: card('4444333322221111') })).toMatchObject({ kind: 'approved' });
      expect(sandbox.order(req.idempotencyKey)).toMatchObject({ submits: 1, authorisations: 1 });
    });

    it('SENT_FOR_AUTHORISATION -> ambiguous; lookup unknown until Worldpay decides, then authorised', async () => {
      const req = authReq('4000000000000259');
      expect(await wp.authorise(req)).toMatchObject({ kind: 'ambiguous' });
      const lookup = { chargeId: req.chargeId, idempotencyKey: req.idempotencyKey, amount: 1250, currency: 'GBP' };
      expect((await wp.lookup(lookup)).kind).toBe('unknown');
      // Worldpay decides later (pendingAuthMs): poll as the worker would.
      let found = await wp.lookup(lookup);
      for (let i = 0; i < 40 && found.kind === 'unknown'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        found = await wp.lookup(lookup);
      }
      expect(found).toMatchObject({ kind: 'authorised', amount: 1250 });
    });

    it('answered amount differs from the request -> non-retryable AMOUNT_MISMATCH', async () => {
      expect(await wp.authorise(authReq('4000000000000036'))).toMatchObject({
        kind: 'error',
        retryable: false,
        code: 'AMOUNT_MISMATCH',
      });
    });

    it('5xx and 429 -> retryable (with Retry-After), nothing recorded; 401 -> terminal', async () => {
      sandbox.faults.update({ rate5xx: 1, status5xx: 503 });
      const r5 = authReq('4444333322221111');
      expect(await wp.authorise(r5)).toMatchObject({ kind: 'error', retryable: true, code: 'WORLDPAY_HTTP_503' });
      expect(sandbox.order(r5.idempotencyKey)).toBeUndefined();
      sandbox.faults.update({ rate5xx: 0, rate429: 1, retryAfterSec: 2 });
      expect(await wp.authorise(authReq('4444333322221111'))).toMatchObject({
        kind: 'error',
        retryable: true,
        code: 'WORLDPAY_HTTP_429',
        retryAfterMs: 2000,
      });
      sandbox.faults.reset();
      const badAuth = createWorldpayConnector({
        baseUrl: sandbox.url,
        merchantCode: sandbox.merchantCode,
        username: sandbox.username,
        password: 'wrong',
      });
      try {
        expect(await badAuth.authorise(authReq('4444333322221111'))).toMatchObject({
          kind: 'error',
          retryable: false,
          code: 'WORLDPAY_UNAUTHORISED',
        });
      } finally {
        await badAuth.close();
      }
    });

    it('nothing listening -> retryable WORLDPAY_UNREACHABLE (not sent, so not ambiguous)', async () => {
      const dead = await startHttpServer((_q, r) => r.end());
      await dead.close();
      const c = createWorldpayConnector({ baseUrl: dead.url, merchantCode: 'M', username: 'u', password: 'p', timeoutMs: 300 });
      try {
        expect(await c.authorise(authReq('4444333322221111'))).toMatchObject({
          kind: 'error',
          retryable: true,
          code: 'WORLDPAY_UNREACHABLE',
        });
      } finally {
        await c.close();
      }
    });
  });

  describe('capture / void', () => {
    async function authorised(number = '4444333322221111'): Promise<AuthoriseRequest> {
      const req = authReq(number);
      expect(await wp.authorise(req)).toMatchObject({ kind: 'approved' });
      return req;
    }
    const captureOf = (req: AuthoriseRequest, amount = req.amount) => ({
      chargeId: req.chargeId,
      processorRef: req.idempotencyKey,
      amount,
      currency: req.currency,
      idempotencyKey: `cap-${req.chargeId}`,
    });

    it('capture -> submitted; the order becomes CAPTURED later; a retried capture is not performed twice', async () => {
      const req = await authorised();
      expect(await wp.capture(captureOf(req))).toEqual({ kind: 'submitted', processorRef: req.idempotencyKey });
      expect(await wp.capture(captureOf(req))).toEqual({ kind: 'submitted', processorRef: req.idempotencyKey });
      await new Promise((r) => setTimeout(r, 80));
      expect(
        await wp.lookup({
          chargeId: req.chargeId,
          processorRef: req.idempotencyKey,
          idempotencyKey: req.idempotencyKey,
          amount: 1250,
          currency: 'GBP',
        }),
      ).toMatchObject({ kind: 'captured', amount: 1250 });
      expect(sandbox.order(req.idempotencyKey)).toMatchObject({ captures: 1, duplicateCaptures: 1, lastEvent: 'CAPTURED' });
    });

    it('capture of another amount after a capture (error 5) -> resolved by inquiry as AMOUNT_MISMATCH, no second capture', async () => {
      const req = await authorised();
      await wp.capture(captureOf(req));
      await new Promise((r) => setTimeout(r, 80));
      expect(await wp.capture(captureOf(req, 1000))).toMatchObject({ kind: 'error', retryable: false, code: 'AMOUNT_MISMATCH' });
      expect(sandbox.order(req.idempotencyKey)?.captures).toBe(1);
    });

    it('capture of a refused or unknown order -> NOT_CAPTURABLE; capture timeout after success -> ambiguous', async () => {
      const refused = authReq('4000000000000002');
      await wp.authorise(refused);
      expect(await wp.capture(captureOf(refused))).toMatchObject({ kind: 'error', retryable: false, code: 'NOT_CAPTURABLE' });
      expect(await wp.capture(captureOf(authReq('4444333322221111')))).toMatchObject({
        kind: 'error',
        retryable: false,
        code: 'NOT_CAPTURABLE',
      });
      const req = await authorised();
      sandbox.faults.update({ rateTimeoutAfterSuccess: 1 });
      expect(await wpFast.capture(captureOf(req))).toMatchObject({ kind: 'ambiguous' });
      sandbox.faults.reset();
      expect(await wp.capture(captureOf(req))).toMatchObject({ kind: 'submitted' });
      expect(sandbox.order(req.idempotencyKey)?.captures).toBe(1);
    });

    it('void -> cancelReceived -> voided; again -> still voided; void after capture -> ALREADY_CAPTURED', async () => {
      const req = await authorised();
      const v = { chargeId: req.chargeId, processorRef: req.idempotencyKey, idempotencyKey: `void-${req.chargeId}` };
      expect(await wp.void(v)).toEqual({ kind: 'voided' });
      expect(await wp.void(v)).toEqual({ kind: 'voided' });
      expect(sandbox.order(req.idempotencyKey)).toMatchObject({ lastEvent: 'CANCELLED', cancels: 1 });
      expect(
        await wp.lookup({
          chargeId: req.chargeId,
          processorRef: req.idempotencyKey,
          idempotencyKey: req.idempotencyKey,
          amount: 1250,
          currency: 'GBP',
        }),
      ).toEqual({ kind: 'voided', processorRef: req.idempotencyKey });
      const captured = await authorised();
      await wp.capture(captureOf(captured));
      await new Promise((r) => setTimeout(r, 80));
      expect(await wp.void({ ...v, processorRef: captured.idempotencyKey })).toMatchObject({
        kind: 'error',
        retryable: false,
        code: 'ALREADY_CAPTURED',
      });
    });
  });

  describe('Card data never leaves the connector', () => {
    it('no PAN, CVC or holder name in outcomes or log lines, whatever the path', async () => {
      const pan = '4444333322221112'; // Luhn-invalid: Worldpay answers error 7 quoting the (masked) number
      const outcomes: unknown[] = [];
      outcomes.push(await wp.authorise(authReq(pan)));
      outcomes.push(await wp.authorise(authReq('4000000000000002')));
      outcomes.push(await wp.authorise(authReq('4000000000000036')));
      sandbox.faults.update({ rateTimeoutAfterSuccess: 1 });
      outcomes.push(await wpFast.authorise(authReq('4444333322221111')));
      sandbox.faults.update({ rateTimeoutAfterSuccess: 0, rate5xx: 1 });
      outcomes.push(await wp.authorise(authReq('4444333322221111')));
      sandbox.faults.reset();
      const disposed = card('4444333322221111');
      disposed.dispose();
      outcomes.push(await wp.authorise(authReq('4444333322221111', { card: disposed })));
      outcomes.push(await cannedConnector(200, worldpayError('2', `cardNumber ${pan} cvc ${CVC}`)).authorise(authReq(pan)));
      expect(outcomes.map((o) => (o as { kind: string }).kind)).toEqual([
        'error',
        'declined',
        'error',
        'ambiguous',
        'error',
        'error',
        'error',
      ]);
      const text = JSON.stringify(outcomes) + logLines.join('\n');
      expect(logLines.length).toBeGreaterThan(0);
      for (const secret of [pan, '4444333322221111', '4000000000000002', '4444********1112', `cvc ${CVC}`, 'Lovelace'])
        expect(text).not.toContain(secret);
    });

    it('the request document escapes markup in untrusted fields', () => {
      const xml = buildOrderSubmit('M', {
        orderCode: 'o"1',
        description: '</description><cardNumber>1</cardNumber>',
        amount: 1,
        currency: 'GBP',
        card: { number: '4444333322221111', expMonth: 1, expYear: 2030, cvc: '1', holderName: '<x/>&' },
      });
      expect(xml).toContain('&lt;/description&gt;&lt;cardNumber&gt;');
      expect(xml).toContain('orderCode="o&quot;1"');
      expect(xml).toContain('<cardHolderName>&lt;x/&gt;&amp;</cardHolderName>');
      expect(parseReply(xml)).toEqual({ type: 'unrecognised' });
    });
  });
});

describe('worldpay sandbox', () => {
  let sandbox: WorldpaySandbox;
  const post = (body: string, auth = true) =>
    fetch(sandbox.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/xml',
        ...(auth ? { authorization: `Basic ${Buffer.from(`${sandbox.username}:${sandbox.password}`).toString('base64')}` } : {}),
      },
      body,
    });

  beforeAll(async () => {
    sandbox = await startWorldpaySandbox();
  });
  afterAll(async () => {
    await sandbox.close();
  });

  it('401 without basic auth; error 2 for a document that is not XML, has no DOCTYPE or misses elements', async () => {
    const valid = buildOrderSubmit(sandbox.merchantCode, {
      orderCode: 'x1',
      description: 'd',
      amount: 1,
      currency: 'GBP',
      card: { number: '4444333322221111', expMonth: 1, expYear: 2030, cvc: '1', holderName: 'h' },
    });
    expect((await post(valid, false)).status).toBe(401);
    for (const bad of [
      'not xml <',
      valid.replace(WORLDPAY_DOCTYPE, ''),
      valid.replace(/<cardHolderName>h<\/cardHolderName>/, ''),
    ]) {
      const res = await post(bad);
      expect(res.status).toBe(200);
      expect(parseReply(await res.text())).toMatchObject({ type: 'error', code: '2' });
    }
    expect(sandbox.order('x1')).toBeUndefined();
    expect(sandbox.stats().requests.unauthorised).toBe(1);
  });

  it('unknown order inquiry -> orderStatus error 5; foreign merchantCode -> error 4', async () => {
    const inquiry = (mc: string) =>
      `<?xml version="1.0"?>\n${WORLDPAY_DOCTYPE}\n<paymentService version="1.4" merchantCode="${mc}"><inquiry><orderInquiry orderCode="nope"/></inquiry></paymentService>`;
    expect(parseReply(await (await post(inquiry(sandbox.merchantCode))).text())).toMatchObject({
      type: 'orderError',
      orderCode: 'nope',
      code: '5',
    });
    expect(parseReply(await (await post(inquiry('OTHER'))).text())).toMatchObject({ type: 'orderError', code: '4' });
  });

  it('stats group orders by charge (the oracle sees two authorisations, one capture, one cancel for one charge); reset forgets them', async () => {
    const charges = new Map<string, string>();
    const grouped = await startWorldpaySandbox({ chargeIdOf: ({ orderCode }) => charges.get(orderCode) });
    const c = createWorldpayConnector({
      baseUrl: grouped.url,
      merchantCode: grouped.merchantCode,
      username: grouped.username,
      password: grouped.password,
    });
    try {
      const a = authReq('4444333322221111', { chargeId: 'ch-double' });
      const b = authReq('4444333322221111', { chargeId: 'ch-double' });
      charges.set(a.idempotencyKey, 'ch-double').set(b.idempotencyKey, 'ch-double');
      await c.authorise(a);
      await c.authorise(b);
      await c.capture({
        chargeId: 'ch-double',
        processorRef: a.idempotencyKey,
        amount: 1250,
        currency: 'GBP',
        idempotencyKey: 'cap',
      });
      // The second order is released; a repeated cancel is refused by Worldpay (error 5) and not counted.
      const voidB = { chargeId: 'ch-double', processorRef: b.idempotencyKey, idempotencyKey: 'void-b' };
      expect(await c.void(voidB)).toEqual({ kind: 'voided' });
      expect(await c.void(voidB)).toEqual({ kind: 'voided' });
      const stats = (await (await fetch(`${grouped.url}/__sandbox/stats`)).json()) as {
        byCharge: Record<string, unknown>;
        totals: { orders: number };
      };
      expect(stats.byCharge['ch-double']).toEqual({
        orders: 2,
        authorisations: 2,
        captures: 1,
        cancels: 1,
        capturedAmount: 1250,
        refunds: 0,
        refunded: 0,
      });
      expect(stats.totals.orders).toBe(2);
      expect((await fetch(`${grouped.url}/__sandbox/reset`, { method: 'POST' })).status).toBe(200);
      expect(grouped.stats().totals.orders).toBe(0);
    } finally {
      await c.close();
      await grouped.close();
    }
  });
});
