/**
 * Chase connector: the J.P. Morgan Payments Online Payments API v2 with manual capture (docs/connectors.md).
 *
 *   authorise  POST  /payments                           captureMethod MANUAL, card in paymentMethodType
 *   capture    POST  /payments/{transactionId}/captures
 *   void       PATCH /payments/{transactionId}           {"isVoid": true}
 *   refund     POST  /refunds                            transactionReference = the payment's transactionId
 *   lookup     GET   /payments/{transactionId}           when the transaction id is known (a refund's too)
 *              GET   /payments?requestIdentifier={rid}   resolving an ambiguous request (a refund's too)
 *
 * Every call carries `Authorization: Bearer <OAuth2 token>` (chase-oauth.ts), `merchant-id` and a
 * `request-id` derived from the payfleet idempotency key ({@link chaseRequestId}, at most 40
 * characters), so every retry of one request is the same request to Chase.
 *
 * Chase keeps no record of a request that timed out and stops processing one after 70 s, so a
 * lookup that finds nothing is conclusive only after that window (chase-window.ts); before it, the
 * connector answers `unknown` / `ambiguous` and never re-sends a request whose answer it lost.
 *
 * The request body holds the card and the headers the token: neither is logged, and no outcome or
 * error message quotes a request, a header or Chase's raw answer (its messages are PAN-masked and cut).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { silentLogger } from '../log/logger.js';
import { createChaseTokens, ChaseTokenError, type ChaseTokens } from './chase-oauth.js';
import { chaseOutcomes as o, paymentOf, type ChasePayment } from './chase-outcomes.js';
import { createChaseWindow, type ChaseWindow } from './chase-window.js';
import {
  createHttpClient,
  HttpAmbiguousError,
  HttpNotSentError,
  type HttpClient,
  type HttpGuard,
  type HttpMethod,
  type HttpResponse,
} from './http.js';
import type {
  AuthoriseOutcome,
  AuthoriseRequest,
  CaptureOutcome,
  CaptureRequest,
  LookupOutcome,
  LookupRequest,
  ProcessorConnector,
  RefundLookupOutcome,
  RefundLookupRequest,
  RefundOutcome,
  RefundRequest,
  VoidOutcome,
} from './types.js';

export interface ChaseConnectorOptions {
  /** `CHASE_API_BASE_URL`, e.g. `https://api-ms.payments.jpmorgan.com/api/v2`. */
  readonly baseUrl: string;
  /** `CHASE_TOKEN_URL`: the OAuth2 token endpoint. */
  readonly tokenUrl: string;
  /** `CHASE_CLIENT_ID`. */
  readonly clientId: string;
  /** `CHASE_CLIENT_SECRET`. */
  readonly clientSecret: string;
  /** `CHASE_MERCHANT_ID`, sent as the `merchant-id` header. */
  readonly merchantId: string;
  /** Deadline per request; past it a sent request is ambiguous. @default 20_000 */
  readonly timeoutMs?: number;
  /** Keep-alive connections to Chase. @default 32 */
  readonly maxConnections?: number;
  /** Time for the 70-second window and token expiry. @default Date.now */
  readonly clock?: Clock;
  /** @default silent */
  readonly logger?: Logger;
  /** Inject clients (tests). */
  readonly http?: HttpClient;
  readonly tokens?: ChaseTokens;
  /** Circuit breaker and metrics for Chase's calls (the token endpoint's included). */
  readonly guard?: HttpGuard;
}

/** The connector (refunds included) and `close()`. */
export interface ChaseConnector extends ProcessorConnector {
  close(): Promise<void>;
}

/**
 * The `request-id` of the request with payfleet idempotency key `key`: `pf-` and 37 hex digits of
 * its SHA-256 (40 characters, Chase's limit; payfleet keys are longer). The same key always gives
 * the same request-id, which is what makes a retry the same request.
 */
export function chaseRequestId(key: string): string {
  return `pf-${createHash('sha256').update(key).digest('hex').slice(0, 37)}`;
}

/** The authorise body. The card is revealed here and nowhere else. */
export function buildChasePayment(req: AuthoriseRequest): Record<string, unknown> {
  const card = req.card.reveal();
  return {
    captureMethod: 'MANUAL',
    amount: req.amount,
    currency: req.currency.toUpperCase(),
    merchantOrderNumber: req.chargeId.slice(0, 50),
    merchant: {
      merchantSoftware: { companyName: 'payfleet', productName: 'payfleet', version: '1' },
      softDescriptor: { dynamicDescriptor: req.description.slice(0, 22) },
    },
    initiatorType: 'CARDHOLDER',
    accountOnFile: 'NOT_STORED',
    isAmountFinal: true,
    paymentMethodType: {
      card: {
        accountNumber: card.number,
        expiry: { month: card.exp_month, year: card.exp_year },
        cvv: card.cvc,
        ...(card.cardholder_name ? { cardholderName: card.cardholder_name } : {}),
      },
    },
  };
}

type Sent =
  | { ok: true; res: HttpResponse }
  | { ok: false; kind: 'not_sent' | 'ambiguous'; reason: string }
  /** No token, so nothing was sent; `why` says whether the credentials were refused. */
  | { ok: false; kind: 'no_token'; reason: string; why: ChaseTokenError['kind'] };

export function createChaseConnector(options: ChaseConnectorOptions): ChaseConnector {
  const log = (options.logger ?? silentLogger()).child({ processor: 'chase' });
  const http =
    options.http ??
    createHttpClient({
      baseUrl: options.baseUrl,
      timeoutMs: options.timeoutMs ?? 20_000,
      maxConnections: options.maxConnections ?? 32,
      ...options.guard,
      service: 'chase',
    });
  const tokens =
    options.tokens ??
    createChaseTokens({
      tokenUrl: options.tokenUrl,
      clientId: options.clientId,
      clientSecret: options.clientSecret,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.guard ? { guard: options.guard } : {}),
    });
  const window: ChaseWindow = createChaseWindow(options.clock ? { clock: options.clock } : {});

  /** One call with a token; a 401 refreshes the token once and repeats the call (Chase did nothing with it). */
  async function call(
    op: string,
    method: HttpMethod,
    path: string,
    requestId: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<Sent> {
    for (let attempt = 1; ; attempt += 1) {
      let token: string;
      try {
        token = await tokens.get(signal);
      } catch (err) {
        if (!(err instanceof ChaseTokenError)) throw err;
        log.warn({ op, reason: err.message }, 'no chase access token');
        return { ok: false, kind: 'no_token', reason: err.message, why: err.kind };
      }
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        'merchant-id': options.merchantId,
        'request-id': requestId,
        accept: 'application/json',
        'user-agent': 'payfleet',
      };
      if (body !== undefined) headers['content-type'] = 'application/json';
      let res: HttpResponse;
      try {
        res = await http.request({
          method,
          path,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal,
          operation: op,
        });
      } catch (err) {
        if (err instanceof HttpNotSentError) return { ok: false, kind: 'not_sent', reason: err.message };
        if (err instanceof HttpAmbiguousError) {
          log.warn({ op, requestId, reason: err.message }, 'chase request ambiguous');
          return { ok: false, kind: 'ambiguous', reason: err.message };
        }
        throw err;
      }
      log.debug({ op, status: res.status, requestId }, 'chase answered');
      if (res.status === 401 && attempt === 1) {
        tokens.invalidate(token);
        continue;
      }
      return { ok: true, res };
    }
  }

  /** A money-moving POST/PATCH under `key`: remembered in the window while its outcome is unknown. */
  async function send(
    op: string,
    method: HttpMethod,
    path: string,
    key: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<Sent> {
    const rid = chaseRequestId(key);
    let sent = await call(op, method, path, rid, body, signal);
    // A gateway timeout is no answer: the request may still be processing behind the gateway.
    if (sent.ok && sent.res.status === 504)
      sent = { ok: false, kind: 'ambiguous', reason: `chase answered 504 (gateway timeout) to ${op}` };
    if (!sent.ok && sent.kind === 'ambiguous') window.unanswered(rid);
    else if (sent.ok && o.inFlight(sent.res)) window.unanswered(rid);
    else if (sent.ok || sent.kind === 'not_sent') window.settled(rid);
    return sent;
  }

  /**
   * What Chase holds under request-id `rid`: the payment (or capture, void, refund transaction), or
   * `none` once that is conclusive, or `unknown`.
   */
  async function byRequestId(
    rid: string,
    signal?: AbortSignal,
  ): Promise<{ kind: 'found'; p: ChasePayment } | { kind: 'none' } | { kind: 'unknown'; reason: string }> {
    const sent = await call(
      'lookup',
      'GET',
      `/payments?requestIdentifier=${encodeURIComponent(rid)}`,
      randomUUID(),
      undefined,
      signal,
    );
    if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
    const { res } = sent;
    const p = res.status === 200 ? paymentOf(res.body) : undefined;
    if (p) return { kind: 'found', p };
    if (res.status === 404 || (res.status === 200 && o.isEmpty(res.body))) {
      if (window.notFoundIsConclusive(rid)) return { kind: 'none' };
      const left = Math.ceil(window.remainingMs(rid) / 1000);
      return {
        kind: 'unknown',
        reason: `chase has no record of request-id ${rid} yet; it may still be processing (conclusive in ${left} s, 70 s after sending)`,
      };
    }
    return { kind: 'unknown', reason: `chase lookup answered HTTP ${res.status}` };
  }

  async function byTransactionId(
    id: string,
    signal?: AbortSignal,
  ): Promise<{ kind: 'found'; p: ChasePayment } | { kind: 'none' } | { kind: 'unknown'; reason: string }> {
    const sent = await call('lookup', 'GET', `/payments/${encodeURIComponent(id)}`, randomUUID(), undefined, signal);
    if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
    if (sent.res.status === 404) return { kind: 'none' };
    const p = sent.res.status === 200 ? paymentOf(sent.res.body) : undefined;
    return p ? { kind: 'found', p } : { kind: 'unknown', reason: `chase answered HTTP ${sent.res.status} for transaction ${id}` };
  }

  /**
   * Before re-sending under `key`: if this process lost the answer of an earlier send less than 70 s
   * ago, look it up and return what it found, or `wait` while that is still inconclusive.
   */
  async function beforeResend(key: string, signal?: AbortSignal) {
    const rid = chaseRequestId(key);
    if (window.remainingMs(rid) === 0) return undefined;
    const found = await byRequestId(rid, signal);
    if (found.kind === 'found') window.settled(rid);
    return found.kind === 'none' ? undefined : found;
  }

  async function authorise(req: AuthoriseRequest, signal?: AbortSignal): Promise<AuthoriseOutcome> {
    const earlier = await beforeResend(req.idempotencyKey, signal);
    if (earlier?.kind === 'found') return o.authorise(earlier.p, req);
    if (earlier?.kind === 'unknown') return { kind: 'ambiguous', reason: earlier.reason };
    const sent = await send('authorise', 'POST', '/payments', req.idempotencyKey, buildChasePayment(req), signal);
    if (!sent.ok) return o.transport(sent);
    if (sent.res.status === 200 || sent.res.status === 201) {
      const p = paymentOf(sent.res.body);
      return p ? o.authorise(p, req) : { kind: 'ambiguous', reason: `chase answered ${sent.res.status} with an unreadable body` };
    }
    return o.error(sent.res);
  }

  async function capture(req: CaptureRequest, signal?: AbortSignal): Promise<CaptureOutcome> {
    const processorRef = req.processorRef;
    const earlier = await beforeResend(req.idempotencyKey, signal);
    if (earlier?.kind === 'found') return o.capture(earlier.p, processorRef);
    if (earlier?.kind === 'unknown') return { kind: 'ambiguous', reason: earlier.reason, processorRef };
    const path = `/payments/${encodeURIComponent(processorRef)}/captures`;
    const sent = await send(
      'capture',
      'POST',
      path,
      req.idempotencyKey,
      { captureMethod: 'NOW', amount: req.amount, currency: req.currency.toUpperCase() },
      signal,
    );
    if (!sent.ok) return { ...o.transport(sent), processorRef };
    const { res } = sent;
    if (res.status === 200 || res.status === 201) {
      const p = paymentOf(res.body);
      return p
        ? o.capture(p, processorRef)
        : { kind: 'ambiguous', reason: `chase answered ${res.status} with an unreadable body`, processorRef };
    }
    if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 409) {
      // Refused: perhaps because it is already captured (an earlier request-id, or Chase replaying a
      // capture it finished). The payment's own state says which.
      const now = await byTransactionId(processorRef, signal);
      if (now.kind === 'found' && o.isCaptured(now.p)) return { kind: 'captured', processorRef };
      if (res.status === 404 || now.kind === 'none')
        return { kind: 'error', retryable: false, code: 'NOT_CAPTURABLE', message: 'chase has no such payment', processorRef };
    }
    return { ...o.error(res), processorRef };
  }

  async function voidAuth(
    req: { chargeId: string; processorRef: string; idempotencyKey: string },
    signal?: AbortSignal,
  ): Promise<VoidOutcome> {
    const earlier = await beforeResend(req.idempotencyKey, signal);
    if (earlier?.kind === 'found') return o.voided(earlier.p);
    if (earlier?.kind === 'unknown') return { kind: 'ambiguous', reason: earlier.reason };
    const sent = await send(
      'void',
      'PATCH',
      `/payments/${encodeURIComponent(req.processorRef)}`,
      req.idempotencyKey,
      { isVoid: true },
      signal,
    );
    if (!sent.ok) {
      const t = o.transport(sent);
      return t.kind === 'ambiguous' ? t : { kind: 'error', retryable: true, code: t.code, message: t.message };
    }
    const { res } = sent;
    if (res.status === 200 || res.status === 201) {
      const p = paymentOf(res.body);
      return p ? o.voided(p) : { kind: 'ambiguous', reason: `chase answered ${res.status} with an unreadable body` };
    }
    if (res.status >= 400 && res.status < 500 && res.status !== 429 && res.status !== 409) {
      const now = await byTransactionId(req.processorRef, signal);
      if (now.kind === 'found' && now.p.transactionState === 'VOIDED') return { kind: 'voided' };
    }
    const { kind: _k, retryAfterMs: _r, ...rest } = o.error(res);
    return { kind: 'error', ...rest };
  }

  async function lookup(req: LookupRequest, signal?: AbortSignal): Promise<LookupOutcome> {
    const found =
      req.processorRef !== undefined
        ? await byTransactionId(req.processorRef, signal)
        : await byRequestId(chaseRequestId(req.idempotencyKey), signal);
    if (found.kind === 'unknown') return { kind: 'unknown', reason: found.reason };
    if (found.kind === 'none') return { kind: 'not_found' };
    if (req.processorRef === undefined) window.settled(chaseRequestId(req.idempotencyKey));
    const outcome = o.lookup(found.p);
    // Authorised but a capture under this key may be in flight (its answer lost here, or by a worker
    // that died): ask by the capture's request-id, so a later capture() knows whether it may re-send.
    if (outcome.kind === 'authorised' && req.processorRef !== undefined && req.original === undefined) {
      const cap = await byRequestId(chaseRequestId(req.idempotencyKey), signal);
      if (cap.kind === 'found' && o.isCaptured(cap.p))
        return { kind: 'captured', processorRef: outcome.processorRef, amount: outcome.amount, currency: outcome.currency };
      if (cap.kind === 'unknown') return { kind: 'unknown', reason: cap.reason };
    }
    return outcome;
  }

  async function refund(req: RefundRequest, signal?: AbortSignal): Promise<RefundOutcome> {
    const earlier = await beforeResend(req.idempotencyKey, signal);
    if (earlier?.kind === 'found') return o.refund(earlier.p);
    if (earlier?.kind === 'unknown') return { kind: 'ambiguous', reason: earlier.reason };
    const body = {
      amount: req.amount,
      currency: req.currency.toUpperCase(),
      merchantOrderNumber: req.chargeId.slice(0, 50),
      paymentMethodType: { transactionReference: { transactionReferenceId: req.processorRef } },
    };
    const sent = await send('refund', 'POST', '/refunds', req.idempotencyKey, body, signal);
    if (!sent.ok) return o.transport(sent);
    const { res } = sent;
    if (res.status === 200 || res.status === 201) {
      const p = paymentOf(res.body);
      return p ? o.refund(p) : { kind: 'ambiguous', reason: `chase answered ${res.status} with an unreadable body` };
    }
    return o.refundRefused(res) ?? o.error(res);
  }

  /**
   * The refund by its transaction id when known, else by the refund request's request-id — under
   * the 70-second rule: nothing found inside the window is `unknown`, after it `not_found`.
   */
  async function lookupRefund(req: RefundLookupRequest, signal?: AbortSignal): Promise<RefundLookupOutcome> {
    const rid = chaseRequestId(req.idempotencyKey);
    const found =
      req.refundRef !== undefined ? await byTransactionId(req.refundRef, signal) : await byRequestId(rid, signal);
    if (found.kind === 'unknown') return { kind: 'unknown', reason: found.reason };
    if (found.kind === 'none') return { kind: 'not_found' };
    if (req.refundRef === undefined) window.settled(rid);
    return o.refundLookup(found.p, req.amount);
  }

  return {
    name: 'chase',
    authorise,
    capture,
    void: voidAuth,
    lookup,
    refund,
    lookupRefund,
    close: async () => void (await Promise.all([http.close(), tokens.close()])),
  };
}
