/**
 * A Worldpay-shaped sandbox: the XML Direct endpoint `POST /jsp/merchant/xml/paymentService.jsp` for
 * the messages the fleet sends (order submit with CARD-SSL, order inquiry, capture, cancel and refund), with
 * Worldpay's replies and errors: 401 on bad basic auth, `<error code="2">` for a document that is not
 * XML / has no DOCTYPE / misses elements, 4 for a foreign merchantCode, 5 for a duplicate orderCode
 * ("Duplicate Order", nothing recorded), an unknown order or a modification not allowed, 7 for an
 * invalid card number. Magic cards and holder names are listed in docs/worldpay.md (and below).
 *
 * A capture is answered `captureReceived` at once; lastEvent becomes CAPTURED `captureSettleMs` later.
 * A repeated capture of the same order and amount is de-duplicated (answered again, not performed).
 * Refunds (worldpay-refunds.ts) are answered `refundReceived` and journalled SENT_FOR_REFUND, then
 * REFUNDED `refundSettleMs` later or on `settleRefunds()`; an inquiry lists them as `<journal>`s.
 *
 * It counts effects: `GET /__sandbox/stats` / `stats()` give per orderCode (and per charge, with
 * `chargeIdOf`) the orders actually authorised and the captures and cancels actually performed, the
 * oracle for "at most one authorisation / capture / void per charge". A cancel of an order already
 * cancelled is refused (error 5) and not counted. Faults (faults.ts, `/__sandbox/faults`) are drawn per
 * operation on the pseudo-path `/jsp/merchant/xml/paymentService.jsp/<submit|inquiry|capture|cancel|refund>`,
 * so `paths` can target one operation; after-success faults record the effect and never answer.
 * `POST /__sandbox/reset` forgets orders and counters.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { brandOf } from '../../shared/connectors/sensitive-card.js';
import {
  buildPaymentService,
  currencyExponent,
  readRequest,
  type SubmittedOrder,
  WORLDPAY_XML_PATH,
  type WorldpayRequest,
} from '../../shared/connectors/worldpay-xml.js';
import { isCardNumber } from '../../shared/util/luhn.js';
import { FaultInjector, type FaultConfig } from './faults.js';
import { readBody, readJson, sendJson, splitUrl, startHttpServer, type HttpServerOptions } from './http-server.js';
import { refundedOf, refundJournals, refundOrder, settleRefunds, type SandboxRefund } from './worldpay-refunds.js';

export const WORLDPAY_SANDBOX_DEFAULTS = Object.freeze({
  merchantCode: 'PAYFLEETSANDBOX',
  username: 'payfleet-sandbox',
  password: 'sandbox-password',
});

export interface WorldpaySandboxOptions extends HttpServerOptions {
  /** @default WORLDPAY_SANDBOX_DEFAULTS.merchantCode */
  readonly merchantCode?: string;
  /** Basic auth user. @default WORLDPAY_SANDBOX_DEFAULTS.username */
  readonly username?: string;
  /** @default WORLDPAY_SANDBOX_DEFAULTS.password */
  readonly password?: string;
  /** Delay from captureReceived until lastEvent CAPTURED. @default 100 */
  readonly captureSettleMs?: number;
  /** Delay from refundReceived until the refund's journal shows REFUNDED. @default 100 */
  readonly refundSettleMs?: number;
  /** Delay from SENT_FOR_AUTHORISATION (magic card) until AUTHORISED. @default 200 */
  readonly pendingAuthMs?: number;
  /** Initial fault config. @default no faults */
  readonly faults?: Partial<FaultConfig>;
  /** Group stats by charge: maps an order to its chargeId (e.g. by the worker's orderCode derivation). */
  readonly chargeIdOf?: (order: { readonly orderCode: string; readonly description: string }) => string | undefined;
}

/** What the sandbox did for one orderCode. */
export interface WorldpayOrderStats {
  readonly orderCode: string;
  readonly chargeId: string | undefined;
  readonly description: string;
  readonly amount: number;
  readonly currency: string;
  readonly lastEvent: string;
  /** Submits received for this orderCode: the first plus `duplicates` (answered "Duplicate Order"). */
  readonly submits: number;
  readonly duplicates: number;
  /** 1 once the order was AUTHORISED (never more: the orderCode is unique). */
  readonly authorisations: number;
  readonly refusals: number;
  /** Captures actually performed; `duplicateCaptures` were answered captureReceived again without one. */
  readonly captures: number;
  readonly duplicateCaptures: number;
  readonly cancels: number;
  /** The amount captured (0 before a capture). */
  readonly capturedAmount: number;
  /** Refunds performed (`duplicateRefunds` answered again without one) and the amount they refund (failed ones excluded). */
  readonly refunds: number;
  readonly duplicateRefunds: number;
  readonly refunded: number;
}

type Totals = Record<'orders' | 'authorisations' | 'refusals' | 'captures' | 'cancels' | 'duplicates' | 'refunds' | 'refunded', number>;
type ChargeTotals = {
  orders: number;
  authorisations: number;
  captures: number;
  cancels: number;
  capturedAmount: number;
  refunds: number;
  refunded: number;
};

export interface WorldpaySandboxStats {
  readonly orders: Readonly<Record<string, WorldpayOrderStats>>;
  /** Only with `chargeIdOf`: orders, authorisations, captures, cancels (voids) and refunds performed per charge. */
  readonly byCharge: Readonly<Record<string, ChargeTotals>>;
  readonly totals: Readonly<Totals>;
  /** Requests by operation, plus `unauthorised` (401) and `invalid` (error 2/4 replies). */
  readonly requests: Readonly<Record<string, number>>;
}

export interface WorldpaySandbox {
  /** `http://127.0.0.1:<port>`: give this to the connector as `baseUrl`. */
  readonly url: string;
  /** The full XML endpoint. */
  readonly endpoint: string;
  readonly merchantCode: string;
  readonly username: string;
  readonly password: string;
  readonly faults: FaultInjector;
  stats(): WorldpaySandboxStats;
  /** One order's stats, or undefined. */
  order(orderCode: string): WorldpayOrderStats | undefined;
  /** End every pending refund now, REFUNDED or REFUND_FAILED (also `POST /__sandbox/refunds/settle`); how many. */
  settleRefunds(end?: 'refunded' | 'failed'): number;
  /** Forget every order and counter (also `POST /__sandbox/reset`). */
  reset(): void;
  close(): Promise<void>;
}

type Counter = 'submits' | 'duplicates' | 'authorisations' | 'captures' | 'duplicateCaptures' | 'cancels' | 'refunds' | 'duplicateRefunds';
interface Order extends Pick<WorldpayOrderStats, 'orderCode' | 'description' | 'amount' | 'currency'>, Record<Counter, number> {
  readonly exponent: number;
  readonly paymentMethod: string;
  readonly maskedNumber: string;
  /** What replies report: `amount`, except for the card that makes the processor disagree. */
  readonly reportedAmount: number;
  lastEvent: string;
  iso?: { code: string; description: string };
  authorisedAt?: number;
  captureDueAt?: number;
  capturedAmount?: number;
  readonly refundList: SandboxRefund[];
}

interface Magic {
  readonly lastEvent?: 'AUTHORISED' | 'REFUSED' | 'ERROR' | 'SENT_FOR_AUTHORISATION';
  readonly iso?: { readonly code: string; readonly description: string };
  /** Replies report amount + this (a processor that disagrees with the request). */
  readonly amountDelta?: number;
  /** Answer `<error code>` instead of making an order. */
  readonly errorCode?: string;
}

/** Magic card numbers. Any other Luhn-valid number (4444333322221111, 5555555555554444...) is AUTHORISED. */
export const WORLDPAY_MAGIC_CARDS: Readonly<Record<string, Magic>> = {
  '4000000000000002': { lastEvent: 'REFUSED', iso: { code: '5', description: 'REFUSED' } },
  '4000000000009995': { lastEvent: 'REFUSED', iso: { code: '51', description: 'INSUFFICIENT FUNDS' } },
  '4000000000000069': { lastEvent: 'REFUSED', iso: { code: '33', description: 'EXPIRED CARD' } },
  '4000000000000119': { lastEvent: 'ERROR' },
  '4000000000000259': { lastEvent: 'SENT_FOR_AUTHORISATION' },
  '4000000000000036': { lastEvent: 'AUTHORISED', amountDelta: 1 },
  '4000000000000101': { errorCode: '1' },
};

/** What happens to an order: the card number first, then Worldpay's test holder names, then expiry. */
function magicFor(number: string, holder: string, month: number, year: number): Magic {
  const byNumber = WORLDPAY_MAGIC_CARDS[number];
  if (byNumber) return byNumber;
  const name = holder.trim().toUpperCase();
  if (name === 'REFUSED') return WORLDPAY_MAGIC_CARDS['4000000000000002']!;
  if (name === 'ERROR') return WORLDPAY_MAGIC_CARDS['4000000000000119']!;
  const now = new Date();
  const expired = year < now.getUTCFullYear() || (year === now.getUTCFullYear() && month < now.getUTCMonth() + 1);
  return expired ? WORLDPAY_MAGIC_CARDS['4000000000000069']! : {};
}

/** Start the Worldpay sandbox on a loopback port. */
export async function startWorldpaySandbox(options: WorldpaySandboxOptions = {}): Promise<WorldpaySandbox> {
  const merchantCode = options.merchantCode ?? WORLDPAY_SANDBOX_DEFAULTS.merchantCode;
  const username = options.username ?? WORLDPAY_SANDBOX_DEFAULTS.username;
  const password = options.password ?? WORLDPAY_SANDBOX_DEFAULTS.password;
  const expectedAuth = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  const captureSettleMs = options.captureSettleMs ?? 100;
  const pendingAuthMs = options.pendingAuthMs ?? 200;
  const refundSettleMs = options.refundSettleMs ?? 100;
  // Injected 5xx/429 bodies: Worldpay's front end answers those with HTML, not paymentService XML.
  const faults = new FaultInjector({
    config: options.faults,
    renderError: (status) => ({ error: `sandbox fault: HTTP ${status}` }),
  });
  const orders = new Map<string, Order>();
  const requests: Record<string, number> = {};
  const count = (k: string) => {
    requests[k] = (requests[k] ?? 0) + 1;
  };

  /** Apply the time-driven transitions (pending -> AUTHORISED, capture received -> CAPTURED) lazily. */
  function settle(o: Order): Order {
    const t = Date.now();
    if (o.lastEvent === 'SENT_FOR_AUTHORISATION' && o.authorisedAt !== undefined && t >= o.authorisedAt) {
      o.lastEvent = 'AUTHORISED';
      o.authorisations = 1;
    }
    if (o.lastEvent === 'AUTHORISED' && o.captureDueAt !== undefined && t >= o.captureDueAt) o.lastEvent = 'CAPTURED';
    settleRefunds(o);
    return o;
  }

  const reply = (code: string, body: Record<string, unknown>) => buildPaymentService(code, { reply: body });
  const errorReply = (code: string, errorCode: string, text: string) =>
    reply(code, { error: { '@_code': errorCode, __cdata: text } });

  function amountOf(o: Order, value: number): Record<string, string> {
    return {
      '@_value': String(value),
      '@_currencyCode': o.currency,
      '@_exponent': String(o.exponent),
      '@_debitCreditIndicator': 'credit',
    };
  }

  /** `<orderStatus>` for an order, shaped like pay-connector's recorded Worldpay replies. */
  function orderStatus(o: Order): Record<string, unknown> {
    const payment: Record<string, unknown> = {
      paymentMethod: o.paymentMethod,
      paymentMethodDetail: { card: { '@_number': o.maskedNumber, '@_type': 'creditcard' } },
      amount: amountOf(o, o.reportedAmount),
      lastEvent: o.lastEvent,
    };
    if (o.iso) payment.ISO8583ReturnCode = { '@_code': o.iso.code, '@_description': o.iso.description };
    if (o.lastEvent === 'AUTHORISED' || o.lastEvent === 'CAPTURED') {
      const type = o.lastEvent === 'CAPTURED' ? 'IN_PROCESS_CAPTURED' : 'IN_PROCESS_AUTHORISED';
      payment.balance = {
        '@_accountType': type,
        amount: amountOf(o, o.lastEvent === 'CAPTURED' ? (o.capturedAmount ?? o.amount) : o.reportedAmount),
      };
    }
    const journal = refundJournals(o, (value) => amountOf(o, value));
    return { orderStatus: { '@_orderCode': o.orderCode, payment, ...(journal.length > 0 ? { journal } : {}) } };
  }

  function submit(orderCode: string, order: SubmittedOrder | undefined, mc: string): string {
    if (!order) {
      count('invalid');
      return errorReply(mc, '2', 'The content of element type "order" is incomplete or invalid.');
    }
    const existing = orders.get(orderCode);
    if (existing) {
      // Worldpay's guarantee the fleet relies on: one order per orderCode, whatever is re-sent.
      existing.submits += 1;
      existing.duplicates += 1;
      return errorReply(mc, '5', 'Duplicate Order');
    }
    const { description, value, currency, exponent, cardNumber: number, holderName: holder, month, year } = order;
    if (exponent !== String(currencyExponent(currency))) return errorReply(mc, '5', `Invalid exponent for currency ${currency}`);
    if (!isCardNumber(number) || !(month >= 1 && month <= 12) || !(year >= 1000)) {
      return errorReply(mc, '7', `Invalid payment details : Card number : ${mask(number)}`);
    }
    const magic = magicFor(number, holder, month, year);
    if (magic.errorCode) return errorReply(mc, magic.errorCode, 'Internal error, an error occurred');
    const brand = brandOf(number);
    const lastEvent = magic.lastEvent ?? 'AUTHORISED';
    const o: Order = {
      orderCode,
      description,
      amount: value,
      currency,
      exponent: Number(exponent),
      paymentMethod:
        brand === 'visa' ? 'VISA-SSL' : brand === 'mastercard' ? 'ECMC-SSL' : brand === 'amex' ? 'AMEX-SSL' : 'CARD-SSL',
      maskedNumber: mask(number),
      reportedAmount: value + (magic.amountDelta ?? 0),
      lastEvent,
      ...(magic.iso ? { iso: { ...magic.iso } } : {}),
      ...(lastEvent === 'SENT_FOR_AUTHORISATION' ? { authorisedAt: Date.now() + pendingAuthMs } : {}),
      submits: 1,
      duplicates: 0,
      authorisations: lastEvent === 'AUTHORISED' ? 1 : 0,
      captures: 0,
      duplicateCaptures: 0,
      cancels: 0,
      refunds: 0,
      duplicateRefunds: 0,
      refundList: [],
    };
    orders.set(orderCode, o);
    return reply(mc, orderStatus(o));
  }

  function inquiry(orderCode: string, mc: string): string {
    const o = orders.get(orderCode);
    if (!o)
      return reply(mc, {
        orderStatus: { '@_orderCode': orderCode, error: { '@_code': '5', __cdata: 'Could not find payment for order' } },
      });
    return reply(mc, orderStatus(settle(o)));
  }

  function capture(orderCode: string, amount: Extract<WorldpayRequest, { op: 'capture' }>['amount'], mc: string): string {
    if (!amount) {
      count('invalid');
      return errorReply(mc, '2', 'The content of element type "capture" is incomplete or invalid.');
    }
    const o = orders.get(orderCode);
    if (!o) return errorReply(mc, '5', 'Could not find payment for order');
    settle(o);
    const requested = amount.value;
    const sameMoney = amount.currencyCode === o.currency && amount.exponent === String(o.exponent);
    const received = { ok: { captureReceived: { '@_orderCode': orderCode, amount: amountOf(o, requested) } } };
    if (o.capturedAmount !== undefined) {
      // Worldpay de-duplicates a repeated capture of the same order: answered again, not performed again.
      if (sameMoney && requested === o.capturedAmount) {
        o.duplicateCaptures += 1;
        return reply(mc, received);
      }
      return errorReply(mc, '5', 'Order has already been captured');
    }
    if (o.lastEvent !== 'AUTHORISED') return errorReply(mc, '5', `Order in state ${o.lastEvent} cannot be captured`);
    if (!sameMoney || requested <= 0 || requested > o.amount)
      return errorReply(mc, '5', 'Capture amount is not valid for this order');
    o.capturedAmount = requested;
    o.captures += 1;
    o.captureDueAt = Date.now() + captureSettleMs;
    return reply(mc, received);
  }

  function cancel(orderCode: string, mc: string): string {
    const o = orders.get(orderCode);
    if (!o) return errorReply(mc, '5', 'Could not find payment for order');
    settle(o);
    if (o.lastEvent !== 'AUTHORISED' || o.capturedAmount !== undefined)
      return errorReply(mc, '5', `Order in state ${o.lastEvent} cannot be cancelled`);
    o.lastEvent = 'CANCELLED';
    o.cancels += 1;
    return reply(mc, { ok: { cancelReceived: { '@_orderCode': orderCode } } });
  }

  function refund(orderCode: string, req: Extract<WorldpayRequest, { op: 'refund' }>, mc: string): string {
    if (!req.amount) {
      count('invalid');
      return errorReply(mc, '2', 'The content of element type "refund" is incomplete or invalid.');
    }
    const o = orders.get(orderCode);
    if (!o) return errorReply(mc, '5', 'Could not find payment for order');
    const done = refundOrder(settle(o), { reference: req.reference, amount: req.amount }, refundSettleMs);
    if ('refused' in done) return errorReply(mc, '5', done.refused);
    return reply(mc, { ok: { refundReceived: { '@_orderCode': orderCode, amount: amountOf(o, req.amount.value) } } });
  }

  function settleAllRefunds(end: 'refunded' | 'failed' = 'refunded'): number {
    let n = 0;
    for (const o of orders.values()) n += settleRefunds(settle(o), end === 'failed' ? 'REFUND_FAILED' : 'REFUNDED');
    return n;
  }

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { path } = splitUrl(req);
    if (await faults.handleAdmin(req, res, path)) return;
    if (path === '/__sandbox/stats' && req.method === 'GET') {
      sendJson(res, 200, stats());
      return;
    }
    if (path === '/__sandbox/reset' && req.method === 'POST') {
      reset();
      sendJson(res, 200, { reset: true });
      return;
    }
    if (path === '/__sandbox/refunds/settle' && req.method === 'POST') {
      const body = (await readJson(req).catch(() => undefined)) as { end?: unknown } | undefined;
      sendJson(res, 200, { settled: settleAllRefunds(body?.end === 'failed' ? 'failed' : 'refunded') });
      return;
    }
    if (path !== WORLDPAY_XML_PATH || req.method !== 'POST') {
      sendJson(res, 404, { error: 'no such endpoint' });
      return;
    }
    const body = await readBody(req);
    if (req.headers.authorization !== expectedAuth) {
      count('unauthorised');
      const html =
        '<html><head><title>401 Unauthorized</title></head><body>This request requires HTTP authentication.</body></html>';
      res.writeHead(401, {
        'content-type': 'text/html',
        'www-authenticate': 'Basic realm="Worldpay XML"',
        'content-length': Buffer.byteLength(html),
      });
      res.end(html);
      return;
    }
    const parsed = readRequest(body);
    if ('error' in parsed) {
      count('invalid');
      sendXml(res, errorReply(merchantCode, '2', parsed.error));
      return;
    }
    const { op, orderCode, merchantCode: mc } = parsed;
    count(op);
    if (mc !== merchantCode) {
      count('invalid');
      const error = { '@_code': '4', __cdata: 'Security violation' };
      sendXml(res, reply(mc, op === 'inquiry' ? { orderStatus: { '@_orderCode': orderCode, error } } : { error }));
      return;
    }
    const plan = faults.plan(`${WORLDPAY_XML_PATH}/${op}`);
    await faults.delay(plan, res);
    if (faults.before(plan, res)) return;
    // Synchronous from here to the answer: concurrent submits of one orderCode cannot both create it.
    let xml: string;
    if (parsed.op === 'submit') xml = submit(orderCode, parsed.order, mc);
    else if (parsed.op === 'capture') xml = capture(orderCode, parsed.amount, mc);
    else if (parsed.op === 'refund') xml = refund(orderCode, parsed, mc);
    else xml = parsed.op === 'inquiry' ? inquiry(orderCode, mc) : cancel(orderCode, mc);
    if (faults.after(plan, res)) return;
    sendXml(res, xml);
  };

  /** Forget every order and counter (faults are left as they are). */
  function reset(): void {
    orders.clear();
    for (const k of Object.keys(requests)) delete requests[k];
  }

  function stats(): WorldpaySandboxStats {
    const out: Record<string, WorldpayOrderStats> = {};
    const byCharge: Record<string, ChargeTotals> = {};
    const totals: Totals = { orders: 0, authorisations: 0, refusals: 0, captures: 0, cancels: 0, duplicates: 0, refunds: 0, refunded: 0 };
    for (const o of orders.values()) {
      const {
        orderCode,
        description,
        amount,
        currency,
        lastEvent,
        submits,
        duplicates,
        authorisations,
        captures,
        duplicateCaptures,
        cancels,
        refunds,
        duplicateRefunds,
      } = settle(o);
      const capturedAmount = o.capturedAmount ?? 0;
      const refunded = refundedOf(o);
      const chargeId = options.chargeIdOf?.({ orderCode, description });
      const refusals = lastEvent === 'REFUSED' ? 1 : 0;
      out[orderCode] = {
        orderCode,
        chargeId,
        description,
        amount,
        currency,
        lastEvent,
        submits,
        duplicates,
        authorisations,
        refusals,
        captures,
        duplicateCaptures,
        cancels,
        capturedAmount,
        refunds,
        duplicateRefunds,
        refunded,
      };
      for (const [k, v] of Object.entries({ orders: 1, authorisations, refusals, captures, cancels, duplicates, refunds, refunded }))
        totals[k as keyof Totals] += v;
      if (chargeId === undefined) continue;
      const c = byCharge[chargeId] ?? { orders: 0, authorisations: 0, captures: 0, cancels: 0, capturedAmount: 0, refunds: 0, refunded: 0 };
      byCharge[chargeId] = {
        orders: c.orders + 1,
        authorisations: c.authorisations + authorisations,
        captures: c.captures + captures,
        cancels: c.cancels + cancels,
        capturedAmount: c.capturedAmount + capturedAmount,
        refunds: c.refunds + refunds,
        refunded: c.refunded + refunded,
      };
    }
    return { orders: out, byCharge, totals, requests: { ...requests } };
  }

  const server = await startHttpServer(handler, options);
  return {
    url: server.url,
    endpoint: server.url + WORLDPAY_XML_PATH,
    merchantCode,
    username,
    password,
    faults,
    stats,
    order: (orderCode) => stats().orders[orderCode],
    settleRefunds: settleAllRefunds,
    reset,
    async close() {
      faults.releaseHanging();
      await server.close();
    },
  };
}

function sendXml(res: ServerResponse, xml: string): void {
  res.writeHead(200, { 'content-type': 'text/xml; charset=UTF-8', 'content-length': Buffer.byteLength(xml) });
  res.end(xml);
}

/** Worldpay's masking in replies and error texts: first 4 and last 4 digits. */
function mask(number: string): string {
  return number.length >= 12 ? `${number.slice(0, 4)}${'*'.repeat(number.length - 8)}${number.slice(-4)}` : '****';
}

