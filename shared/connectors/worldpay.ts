/**
 * Worldpay connector: the XML Direct `paymentService` API as GOV.UK Pay's pay-connector uses it
 * (order submit with CARD-SSL, order inquiry, capture, cancel and refund modifications; refunds in
 * worldpay-refunds.ts). See docs/worldpay.md.
 *
 * Idempotency: the `orderCode` IS the authorise idempotency key. Worldpay refuses a second order
 * with the same orderCode (`<error code="5">` "Duplicate Order"), so repeating an authorise can never
 * create a second order; a duplicate answer proves an earlier attempt reached Worldpay, and the
 * connector resolves it by an order inquiry instead of reporting a decline or a fresh error.
 *
 *   authorise ──POST submit──▶ Worldpay
 *        │ answer lost (timeout after send)      -> 'ambiguous' (worker calls lookup)
 *        │ retry, same orderCode ──▶ error 5     -> inquiry ──▶ AUTHORISED -> 'approved'
 *
 * Card data: the PAN/CVC exist only inside the request document built here and handed to the
 * transport. No error message, outcome or log line carries the document or Worldpay's error text
 * (Worldpay's parse-error texts may quote the request); they carry the orderCode and error code only.
 */
import type { Logger } from 'pino';
import { silentLogger } from '../log/logger.js';
import { DependencyUnavailableError } from '../core/breaker.js';
import {
  createHttpClient,
  HttpAmbiguousError,
  HttpNotSentError,
  parseRetryAfterMs,
  type HttpClient,
  type HttpGuard,
} from './http.js';
import type {
  AuthoriseOutcome,
  AuthoriseRequest,
  CaptureOutcome,
  CaptureRequest,
  LookupOutcome,
  ProcessorConnector,
  VoidOutcome,
} from './types.js';
import {
  amountMatches,
  buildCancel,
  buildCapture,
  buildOrderInquiry,
  buildOrderSubmit,
  currencyExponent,
  parseReply,
  WORLDPAY_XML_PATH,
  type WorldpayReply,
} from './worldpay-xml.js';
import { createWorldpayRefunds } from './worldpay-refunds.js';

export { WORLDPAY_XML_PATH } from './worldpay-xml.js';

/** Options of {@link createWorldpayConnector}. */
export interface WorldpayConnectorOptions {
  /**
   * `WORLDPAY_API_BASE_URL`: either the full XML endpoint (ending in `.jsp`) or a base URL, to which
   * Worldpay's path `/jsp/merchant/xml/paymentService.jsp` is appended.
   */
  readonly baseUrl: string;
  readonly merchantCode: string;
  readonly username: string;
  readonly password: string;
  /** Deadline per request; past it, a sent request is ambiguous. @default 10_000 */
  readonly timeoutMs?: number;
  /** Keep-alive connections to Worldpay. @default 16 */
  readonly maxConnections?: number;
  /** Outcome lines (orderCode, codes, events; never documents). @default silent */
  readonly logger?: Logger;
  /** Clock for the capture `<date>`. @default () => new Date() */
  readonly now?: () => Date;
  /** Inject a client bound to the XML endpoint (tests); `baseUrl` is then not used. */
  readonly http?: HttpClient;
  /** Circuit breaker and metrics for Worldpay's calls. */
  readonly guard?: HttpGuard;
}

/** The connector plus `close()`, which releases its connection pool. */
export interface WorldpayConnector extends ProcessorConnector {
  close(): Promise<void>;
}

/** Worldpay's orderCode limit is 64 characters; no whitespace or markup characters. */
const ORDER_CODE = /^[^\s<>&"']{1,64}$/;

/** Events after which the money has been (or is being) taken: all mean "captured" to the fleet. */
const CAPTURED_EVENTS = new Set([
  'CAPTURED',
  'SETTLED',
  'SETTLED_BY_MERCHANT',
  'SENT_FOR_REFUND',
  'REFUNDED',
  'REFUNDED_BY_MERCHANT',
  'REFUND_FAILED',
  'CHARGED_BACK',
  'CHARGEBACK_REVERSED',
  'INFORMATION_REQUESTED',
  'INFORMATION_SUPPLIED',
]);
/** Events that end an order without money held. EXPIRED = the authorisation lapsed uncaptured. */
const VOIDED_EVENTS = new Set(['CANCELLED', 'EXPIRED']);

/**
 * Worldpay `<error code>` classes. 1 (internal error) and 9 (idempotency: request in progress) are
 * transient. 5 "invalid request" is overloaded (duplicate order, order not found, modification not
 * allowed) and is never acted on blindly: the order's state is asked first. Every other code (2 parse,
 * 3 batch, 4 security/merchant code, 6 invalid content, 7 payment details) cannot succeed by sending
 * the same document again.
 */
const RETRYABLE_WORLDPAY_CODES = new Set(['1', '9']);
const INVALID_REQUEST = '5';

/** What an exchange with Worldpay ends in when no reply is left to read. */
type Err = { kind: 'error'; retryable: boolean; code: string; message: string; retryAfterMs?: number };
type Ambiguous = { kind: 'ambiguous'; reason: string };
type Exchanged = { readonly reply: WorldpayReply } | { readonly done: Err | Ambiguous };

const err = (code: string, retryable: boolean, message: string): Err => ({ kind: 'error', retryable, code, message });
const worldpayErr = (code: string, orderCode: string): Err =>
  err(`WORLDPAY_ERROR_${code}`, RETRYABLE_WORLDPAY_CODES.has(code), `Worldpay error ${code} for order ${orderCode}`);
const mismatch = (orderCode: string): Err =>
  err('AMOUNT_MISMATCH', false, `Worldpay answered order ${orderCode} with a different amount or currency`);
const otherOrder = (orderCode: string): Err =>
  err('ORDER_CODE_MISMATCH', false, `Worldpay answered for another order than ${orderCode}`);

/**
 * Create the Worldpay connector. `processorRef` of every outcome is the orderCode. `lookup` never
 * throws: anything it cannot decide (transport, 5xx, 401, unknown replies) is `unknown` with a reason.
 */
export function createWorldpayConnector(options: WorldpayConnectorOptions): WorldpayConnector {
  const log = (options.logger ?? silentLogger()).child({ processor: 'worldpay' });
  const now = options.now ?? (() => new Date());
  const trimmed = options.baseUrl.replace(/\/+$/, '');
  const http =
    options.http ??
    createHttpClient({
      baseUrl: trimmed.endsWith('.jsp') ? trimmed : trimmed + WORLDPAY_XML_PATH,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxConnections: options.maxConnections ?? 16,
      ...options.guard,
    });
  const { merchantCode } = options;
  const headers = {
    authorization: `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}`,
    'content-type': 'application/xml',
    accept: 'application/xml, text/xml',
  };

  /**
   * POST one document and read the reply. Transport failures and non-200 statuses end the exchange
   * here; messages name the orderCode and a cause, never the document (it holds the card).
   */
  async function exchange(
    op: string,
    orderCode: string,
    xml: string,
    chargeId: string,
    signal?: AbortSignal,
  ): Promise<Exchanged> {
    let status: number;
    let body: string;
    let retryAfter: string | undefined;
    try {
      const res = await http.request({ method: 'POST', path: '', headers, body: xml, ...(signal ? { signal } : {}) });
      ({ status, body } = res);
      retryAfter = res.headers['retry-after'];
    } catch (e) {
      // Sent or not decides everything: an ambiguous submit may have made an order (look it up);
      // one that was never sent is safe to repeat.
      if (e instanceof HttpAmbiguousError) return { done: { kind: 'ambiguous', reason: `${op} ${orderCode}: ${cause(e)}` } };
      if (e instanceof HttpNotSentError) return { done: err('WORLDPAY_UNREACHABLE', true, `${op} ${orderCode}: ${cause(e)}`) };
      // Refused by Worldpay's open breaker (nothing sent): an outage, not this charge's failure. It
      // goes up as it is, so the consumer parks the message instead of the charge being given up.
      if (e instanceof DependencyUnavailableError) throw e;
      // HTTP_INVALID_REQUEST (a header undici refused): a bug or bad config, never fixed by retrying.
      return { done: err('WORLDPAY_UNREACHABLE', false, `${op} ${orderCode}: request rejected by the HTTP client`) };
    }
    if (status !== 200) {
      log.warn({ orderCode, chargeId, op, status }, 'worldpay answered an HTTP error');
      if (status === 401 || status === 403)
        return { done: err('WORLDPAY_UNAUTHORISED', false, `Worldpay refused the credentials (HTTP ${status})`) };
      const e = err(
        `WORLDPAY_HTTP_${status}`,
        status === 429 || status === 408 || status >= 500,
        `Worldpay HTTP ${status} for ${op} ${orderCode}`,
      );
      const retryAfterMs = parseRetryAfterMs(retryAfter);
      return { done: e.retryable && retryAfterMs !== undefined ? { ...e, retryAfterMs } : e };
    }
    const reply = parseReply(body);
    log.info({ orderCode, chargeId, op, reply: reply.type, ...replySummary(reply) }, 'worldpay answered');
    return { reply };
  }

  /** Order inquiry mapped to the port's LookupOutcome. */
  async function inquire(orderCode: string, chargeId: string, signal?: AbortSignal): Promise<LookupOutcome> {
    if (!ORDER_CODE.test(orderCode)) return { kind: 'unknown', reason: INVALID_ORDER_CODE };
    const x = await exchange('inquiry', orderCode, buildOrderInquiry(merchantCode, orderCode), chargeId, signal);
    if ('done' in x) return { kind: 'unknown', reason: x.done.kind === 'error' ? x.done.message : x.done.reason };
    const { reply } = x;
    switch (reply.type) {
      case 'orderStatus':
        return reply.orderCode === orderCode
          ? fromOrderStatus(reply)
          : { kind: 'unknown', reason: otherOrder(orderCode).message };
      case 'error':
      case 'orderError':
        // Code 5 to an inquiry is "could not find payment for order" (pay-connector's credential check
        // relies on the same). Calling it not_found is safe: an authorise re-sent with the same
        // orderCode meets Worldpay's duplicate check if the order exists after all.
        return reply.code === INVALID_REQUEST
          ? { kind: 'not_found' }
          : { kind: 'unknown', reason: worldpayErr(reply.code, orderCode).message };
      default:
        return { kind: 'unknown', reason: `unrecognised Worldpay reply to inquiry for ${orderCode}` };
    }
  }

  /** An order's state as the answer to its authorise (a fresh reply, or found after a duplicate). */
  function authoriseOutcome(found: LookupOutcome, req: AuthoriseRequest): AuthoriseOutcome {
    const processorRef = req.idempotencyKey;
    switch (found.kind) {
      case 'authorised':
      case 'captured':
        // Worldpay's answered amount must be the one we asked for; otherwise nothing is trusted.
        if (found.amount !== req.amount || found.currency !== req.currency) return { ...mismatch(processorRef), processorRef };
        return { kind: 'approved', processorRef, amount: found.amount, currency: found.currency };
      case 'declined':
        return { kind: 'declined', processorRef, code: found.code, message: found.message };
      case 'voided':
        return { kind: 'declined', processorRef, code: 'CANCELLED', message: `Worldpay order ${processorRef} was cancelled` };
      case 'not_found':
        // Only reached after error 5: no such order, so the submit itself was invalid (not a duplicate).
        return { ...worldpayErr(INVALID_REQUEST, processorRef), processorRef };
      default:
        // SENT_FOR_AUTHORISATION, no lastEvent, or state unreadable: the order may exist; look it up later.
        return { kind: 'ambiguous', processorRef, reason: `Worldpay order ${processorRef} has no final result yet` };
    }
  }

  async function authorise(req: AuthoriseRequest, signal?: AbortSignal): Promise<AuthoriseOutcome> {
    const orderCode = req.idempotencyKey;
    const invalid = validate(orderCode, req.amount, req.currency);
    if (invalid) return { ...err('INVALID_REQUEST', false, invalid), processorRef: orderCode };
    let xml: string;
    try {
      const c = req.card.reveal();
      const card = { number: c.number, expMonth: c.exp_month, expYear: c.exp_year, cvc: c.cvc, holderName: c.cardholder_name };
      xml = buildOrderSubmit(merchantCode, {
        orderCode,
        description: req.description,
        amount: req.amount,
        currency: req.currency,
        card,
      });
    } catch {
      // The cause is dropped on purpose: whatever failed was holding card data.
      return {
        ...err('CARD_UNAVAILABLE', false, `card details for order ${orderCode} could not be read`),
        processorRef: orderCode,
      };
    }
    const x = await exchange('submit', orderCode, xml, req.chargeId, signal);
    if ('done' in x) return { ...x.done, processorRef: orderCode };
    const { reply } = x;
    switch (reply.type) {
      case 'orderStatus':
        if (reply.orderCode !== orderCode) return { ...otherOrder(orderCode), processorRef: orderCode };
        // lastEvent ERROR on a fresh submit: Worldpay could not process it (AUTHORISATION_ERROR, not a decline).
        if (reply.lastEvent === 'ERROR')
          return { ...err('WORLDPAY_EVENT_ERROR', false, `Worldpay order ${orderCode} ended in ERROR`), processorRef: orderCode };
        return authoriseOutcome(fromOrderStatus(reply), req);
      case 'error':
      case 'orderError': {
        if (reply.code !== INVALID_REQUEST) return { ...worldpayErr(reply.code, orderCode), processorRef: orderCode };
        // "Duplicate Order": an earlier attempt reached Worldpay. Its order is the answer, never a new one.
        const found = await inquire(orderCode, req.chargeId, signal);
        log.info({ orderCode, chargeId: req.chargeId, found: found.kind }, 'worldpay error 5 on submit resolved by inquiry');
        return authoriseOutcome(found, req);
      }
      case 'threeDsRequired':
        return {
          ...err('WORLDPAY_3DS_REQUIRED', false, `Worldpay asked for 3-D Secure on order ${orderCode}`),
          processorRef: orderCode,
        };
      default:
        // A 200 we cannot read, after the order went out: Worldpay may have made the order.
        return { kind: 'ambiguous', processorRef: orderCode, reason: `unrecognised Worldpay reply to order ${orderCode}` };
    }
  }

  async function capture(req: CaptureRequest, signal?: AbortSignal): Promise<CaptureOutcome> {
    const processorRef = req.processorRef;
    const invalid = validate(processorRef, req.amount, req.currency);
    if (invalid) return { ...err('INVALID_REQUEST', false, invalid), processorRef };
    const xml = buildCapture(merchantCode, processorRef, req.amount, req.currency, now());
    const x = await exchange('capture', processorRef, xml, req.chargeId, signal);
    if ('done' in x) return { ...x.done, processorRef };
    const { reply } = x;
    switch (reply.type) {
      case 'captureReceived':
        if (reply.orderCode !== processorRef) return { ...otherOrder(processorRef), processorRef };
        if (reply.amount && !amountMatches(reply.amount, req.amount, req.currency))
          return { ...mismatch(processorRef), processorRef };
        // Worldpay confirms captures asynchronously (the order shows CAPTURED later): CAPTURE_SUBMITTED.
        return { kind: 'submitted', processorRef };
      case 'error':
      case 'orderError':
        if (reply.code !== INVALID_REQUEST) return { ...worldpayErr(reply.code, processorRef), processorRef };
        break;
      default:
        return { kind: 'ambiguous', processorRef, reason: `unrecognised Worldpay reply to capture of ${processorRef}` };
    }
    // Error 5. Worldpay de-duplicates a repeated capture of the same order (captureReceived again), so
    // this capture is not allowed now, or the order moved on (captured earlier, cancelled, refused).
    const found = await inquire(processorRef, req.chargeId, signal);
    switch (found.kind) {
      case 'captured':
        return found.amount === req.amount && found.currency === req.currency
          ? { kind: 'captured', processorRef }
          : { ...mismatch(processorRef), processorRef };
      case 'authorised':
        // Still only authorised: refused for now. A later retry is harmless (a capture received
        // earlier shows as CAPTURED by then and resolves it).
        return {
          ...err(`WORLDPAY_ERROR_${INVALID_REQUEST}`, true, `Worldpay refused capture of ${processorRef} (error 5)`),
          processorRef,
        };
      case 'unknown':
        return { kind: 'ambiguous', processorRef, reason: `capture of ${processorRef} refused, order state not known` };
      default:
        return {
          ...err('NOT_CAPTURABLE', false, `Worldpay order ${processorRef} is ${found.kind}; it cannot be captured`),
          processorRef,
        };
    }
  }

  async function voidOrder(req: { chargeId: string; processorRef: string }, signal?: AbortSignal): Promise<VoidOutcome> {
    const orderCode = req.processorRef;
    if (!ORDER_CODE.test(orderCode)) return err('INVALID_REQUEST', false, INVALID_ORDER_CODE);
    const x = await exchange('cancel', orderCode, buildCancel(merchantCode, orderCode), req.chargeId, signal);
    if ('done' in x) return x.done;
    const { reply } = x;
    switch (reply.type) {
      case 'cancelReceived':
        return reply.orderCode === orderCode ? { kind: 'voided' } : otherOrder(orderCode);
      case 'error':
      case 'orderError':
        if (reply.code !== INVALID_REQUEST) return worldpayErr(reply.code, orderCode);
        break;
      default:
        return { kind: 'ambiguous', reason: `unrecognised Worldpay reply to cancel of ${orderCode}` };
    }
    // Error 5: already cancelled or refused means nothing is held, which is what a void wants.
    const found = await inquire(orderCode, req.chargeId, signal);
    switch (found.kind) {
      case 'voided':
      case 'declined':
        return { kind: 'voided' };
      case 'unknown':
        return { kind: 'ambiguous', reason: `cancel of ${orderCode} refused, order state not known` };
      case 'authorised':
        return err(`WORLDPAY_ERROR_${INVALID_REQUEST}`, true, `Worldpay refused cancel of ${orderCode} (error 5)`);
      case 'not_found':
        return err('ORDER_NOT_FOUND', false, `Worldpay has no order ${orderCode} to cancel`);
      default:
        return err('ALREADY_CAPTURED', false, `Worldpay order ${orderCode} is ${found.kind}; it cannot be cancelled`);
    }
  }

  const refunds = createWorldpayRefunds({ merchantCode, exchange, fromOrderStatus, validate, worldpayErr });
  return {
    name: 'worldpay',
    authorise,
    capture,
    void: voidOrder,
    lookup: (req, signal) => inquire(req.processorRef ?? req.idempotencyKey, req.chargeId, signal),
    ...refunds,
    close: () => http.close(),
  };
}

// ---- pure helpers --------------------------------------------------------------------------------

const INVALID_ORDER_CODE = 'orderCode must be 1-64 characters without spaces or markup';

/** Checks made before anything is sent: a message naming the problem (never card data), or undefined. */
function validate(orderCode: string, amount: number, currency: string): string | undefined {
  if (!ORDER_CODE.test(orderCode)) return INVALID_ORDER_CODE;
  if (!Number.isSafeInteger(amount) || amount <= 0)
    return `amount for order ${orderCode} must be a positive integer (minor units)`;
  if (!/^[A-Z]{3}$/.test(currency)) return `currency for order ${orderCode} must be an ISO 4217 code`;
  return undefined;
}

/** An order status as the port's LookupOutcome; amounts rescaled to the currency's ISO exponent. */
function fromOrderStatus(reply: Extract<WorldpayReply, { type: 'orderStatus' }>): LookupOutcome {
  const processorRef = reply.orderCode;
  const ev = reply.lastEvent;
  if (ev === 'AUTHORISED' || CAPTURED_EVENTS.has(ev)) {
    const a = reply.amount;
    const amount = a ? a.value * 10 ** (currencyExponent(a.currencyCode) - a.exponent) : Number.NaN;
    if (!a || !Number.isSafeInteger(amount))
      return { kind: 'unknown', reason: `Worldpay order ${processorRef} has no readable amount` };
    return { kind: ev === 'AUTHORISED' ? 'authorised' : 'captured', processorRef, amount, currency: a.currencyCode };
  }
  if (ev === 'REFUSED' || ev === 'ERROR') {
    // The ISO 8583 return code is the decline code (5 = do not honour, 51 = insufficient funds...).
    // Its description is Worldpay's text: digit runs are dropped in case one ever echoes a number.
    const why = reply.isoDescription ? `: ${reply.isoDescription.replace(/\d{6,}/g, '…')}` : '';
    return {
      kind: 'declined',
      processorRef,
      code: reply.isoCode || ev,
      message: `Worldpay ${ev.toLowerCase()} order ${processorRef}${why}`,
    };
  }
  if (VOIDED_EVENTS.has(ev)) return { kind: 'voided', processorRef };
  return { kind: 'unknown', reason: `Worldpay order ${processorRef} lastEvent ${ev || 'none'}` };
}

/** Why a request failed in transport, in our words (undici's messages carry the URL, not needed). */
function cause(e: HttpNotSentError | HttpAmbiguousError): string {
  const why = e.timedOut ? 'timed out' : e.aborted ? 'aborted' : 'connection failed';
  return `${why} ${e instanceof HttpAmbiguousError ? 'after' : 'before'} the request was sent`;
}

/** Log fields of a reply: codes and events only, never texts. */
function replySummary(reply: WorldpayReply): Record<string, string | undefined> {
  if (reply.type === 'orderStatus') return { lastEvent: reply.lastEvent, isoCode: reply.isoCode };
  if (reply.type === 'error' || reply.type === 'orderError') return { worldpayError: reply.code };
  return {};
}
