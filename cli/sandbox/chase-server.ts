/**
 * A J.P. Morgan Payments (Chase) fake of the Online Payments API v2 endpoints payfleet uses, with the
 * OAuth2 token endpoint in front of them (docs/connectors.md):
 *
 *   POST  /oauth2/token                        client credentials (Basic client_id:client_secret)
 *   POST  /payments                            authorise (captureMethod MANUAL)
 *   GET   /payments/{transactionId}
 *   GET   /payments?requestIdentifier={rid}    the transaction created under a request-id, 404 if none
 *   POST  /payments/{transactionId}/captures
 *   PATCH /payments/{transactionId}            {"isVoid": true}
 *   POST  /refunds                             paymentMethodType.transactionReference.transactionReferenceId
 *
 * Every API call needs a live bearer token, `merchant-id` and a `request-id` of at most 40
 * characters. A request-id Chase has *recorded* is answered again with its stored answer (counted as
 * a replay). Like the real service, a request that is still processing is invisible, both to the
 * lookup and to that de-duplication: a second request with its request-id is processed as a new one.
 * {@link ChaseSandbox.hold} makes that window as long as a test wants (for authorisations or refunds),
 * and can end it the way J.P. Morgan's 70-second expiry does, with no record at all.
 *
 * A refund needs a CAPTURED payment (400 INVALID_TRANSACTION_STATE otherwise, 404 for an unknown one)
 * and at most what is left of its captured amount (400 INVALID_AMOUNT); it is a transaction of its
 * own (COMPLETED), readable by `GET /payments/{id}` and by its request-id.
 *
 * Magic cards (as the other sandboxes): 4000000000000002 declined, 4000000000009995 insufficient
 * funds, 4000000000000069 expired; amount 6666 is authorised as 6667. Faults (faults.ts): 5xx, 429,
 * resets, timeout after success; {@link ChaseSandbox.expireTokens} revokes every token (a 401 next).
 *
 * The oracle: `GET /__sandbox/stats` counts per charge (merchantOrderNumber) the payments actually
 * created (replays apart), authorisations, declines, captures (and amount captured), voids, refunds
 * and amount refunded.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultInjector, type FaultConfig } from './faults.js';
import { readBody, sendJson, splitUrl, startHttpServer, type HttpServerOptions } from './http-server.js';
import { luhnValid } from '../../shared/connectors/sandbox.js';

/** The sandbox's credentials (not secrets: they are in the sources and in docker-compose.yml). */
export const CHASE_SANDBOX_DEFAULTS = Object.freeze({
  clientId: 'payfleet-chase-client',
  clientSecret: 'chase_sandbox_secret',
  merchantId: '998482157630',
});
/** Authorising this amount yields an authorisation for amount + 1 (the mismatch path). */
export const CHASE_SANDBOX_MISMATCH_AMOUNT = 6666;

const DECLINES: ReadonlyMap<string, { code: string; message: string }> = new Map([
  ['4000000000000002', { code: 'DECLINED', message: 'Transaction declined by issuer' }],
  ['4000000000009995', { code: 'INSUFFICIENT_FUNDS', message: 'Insufficient funds' }],
  ['4000000000000069', { code: 'EXPIRED_CARD', message: 'Card expired' }],
]);

export interface ChaseSandboxOptions extends HttpServerOptions {
  readonly clientId?: string;
  readonly clientSecret?: string;
  readonly merchantId?: string;
  /** `expires_in` of issued tokens. @default 3600 */
  readonly tokenTtlSec?: number;
  readonly faults?: Partial<FaultConfig>;
}

/** Effects actually performed for one charge. */
export interface ChaseChargeStats {
  /** POST /payments received (replays and held ones included). */
  received: number;
  created: number;
  authorised: number;
  declined: number;
  captured: number;
  /** Amount captured. */
  capturedAmount: number;
  voided: number;
  /** Refunds performed (replays apart) and the amount they refunded. */
  refunds: number;
  refunded: number;
  replays: number;
}

/** How held authorisations end: recorded (processing finished late) or dropped (Chase's 70 s expiry). */
export type ChaseHoldEnd = 'record' | 'drop';

export interface ChaseSandbox {
  readonly url: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly merchantId: string;
  /** The token endpoint. */
  readonly tokenUrl: string;
  readonly faults: FaultInjector;
  /**
   * The next `count` authorisations (or refunds, with `what: 'refunds'`) stay processing (invisible,
   * unanswered) until {@link release}.
   */
  hold(count?: number, what?: 'payments' | 'refunds'): void;
  /** End every held request: record it as if processing finished now, or drop it without a trace. */
  release(end: ChaseHoldEnd): number;
  /** Authorisations being held now. */
  readonly held: number;
  /** Revoke every token issued so far. */
  expireTokens(): void;
  stats(): {
    totals: ChaseChargeStats & { requests: number; tokens: number; unauthorised: number };
    charges: Record<string, ChaseChargeStats>;
  };
  close(): Promise<void>;
}

type Payment = {
  transactionId: string;
  requestId: string;
  chargeId: string;
  transactionState: string;
  responseStatus: string;
  responseCode: string;
  responseMessage: string;
  amount: number;
  currency: string;
  captureMethod: string;
  refunded: number;
};
type Answer = { status: number; body: unknown; transactionId?: string };

const PAYMENT_PATH = /^\/payments\/([^/]+)(\/captures)?$/;
const fresh = () => ({
  received: 0,
  created: 0,
  authorised: 0,
  declined: 0,
  captured: 0,
  capturedAmount: 0,
  voided: 0,
  refunds: 0,
  refunded: 0,
  replays: 0,
});

export async function startChaseSandbox(options: ChaseSandboxOptions = {}): Promise<ChaseSandbox> {
  const clientId = options.clientId ?? CHASE_SANDBOX_DEFAULTS.clientId;
  const clientSecret = options.clientSecret ?? CHASE_SANDBOX_DEFAULTS.clientSecret;
  const merchantId = options.merchantId ?? CHASE_SANDBOX_DEFAULTS.merchantId;
  const tokenTtlSec = options.tokenTtlSec ?? 3600;
  const error = (code: string, message: string) => ({ responseStatus: 'ERROR', responseCode: code, responseMessage: message });
  const faults = new FaultInjector({
    config: options.faults,
    renderError: (status) =>
      status === 429 ? error('TOO_MANY_REQUESTS', 'Too many requests') : error('SYSTEM_ERROR', 'Internal error (sandbox fault)'),
  });
  const tokens = new Map<string, number>();
  const payments = new Map<string, Payment>();
  const byRequestId = new Map<string, Answer>();
  /** Refund transactions by id: their charge and what a read shows. */
  const refundTxs = new Map<string, { chargeId: string; body: Record<string, unknown> }>();
  const charges = new Map<string, ChaseChargeStats>();
  const held: Array<{ finish(end: ChaseHoldEnd): void }> = [];
  const toHold = { payments: 0, refunds: 0 };
  let requests = 0;
  let issued = 0;
  let unauthorised = 0;
  const bump = (chargeId: string, field: keyof ChaseChargeStats, by = 1) => {
    let s = charges.get(chargeId);
    if (!s) {
      s = fresh();
      charges.set(chargeId, s);
    }
    s[field] += by;
  };
  const view = (p: Payment) => {
    const { chargeId: _c, refunded: _r, ...rest } = p;
    return { ...rest, merchantOrderNumber: p.chargeId };
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { path, query } = splitUrl(req);
    if (await faults.handleAdmin(req, res, path)) return;
    const raw = await readBody(req);
    if (path === '/__sandbox/stats' && req.method === 'GET') return sendJson(res, 200, stats());
    if (path === '/oauth2/token' && req.method === 'POST') return token(req, raw, res);
    requests += 1;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const expiry = bearer ? tokens.get(bearer) : undefined;
    if (expiry === undefined || expiry <= Date.now()) {
      unauthorised += 1;
      return sendJson(res, 401, error('UNAUTHORIZED', 'Access token missing, invalid or expired'));
    }
    if (req.headers['merchant-id'] !== merchantId)
      return sendJson(res, 403, error('FORBIDDEN', 'Unknown merchant-id for this client'));
    const rid = req.headers['request-id'];
    if (typeof rid !== 'string' || rid === '' || rid.length > 40)
      return sendJson(res, 400, error('INVALID_REQUEST_ID', 'request-id is required, at most 40 characters'));

    const plan = faults.plan(path, req.method);
    await faults.delay(plan, res);
    if (faults.before(plan, res)) return;

    if (req.method === 'GET') {
      const answer = lookup(path, query);
      if (faults.after(plan, res)) return;
      return sendJson(res, answer.status, answer.body);
    }
    let body: Record<string, unknown>;
    try {
      body = (raw.trim() === '' ? {} : JSON.parse(raw)) as Record<string, unknown>;
    } catch {
      return sendJson(res, 400, error('INVALID_JSON', 'body is not JSON'));
    }
    const isAuthorise = req.method === 'POST' && path === '/payments';
    const isRefund = req.method === 'POST' && path === '/refunds';
    if (isAuthorise) bump(chargeOf(body), 'received');
    const prior = byRequestId.get(rid);
    if (prior) {
      const id = prior.transactionId;
      const chargeId = id ? (payments.get(id)?.chargeId ?? refundTxs.get(id)?.chargeId) : undefined;
      if (chargeId !== undefined) bump(chargeId, 'replays');
      if (faults.after(plan, res)) return;
      return sendJson(res, prior.status, prior.body);
    }
    const run = () => {
      const answer = isAuthorise ? authorise(rid, body) : modify(req.method ?? '', path, rid, body);
      if (answer.status < 400 || answer.status === 402) byRequestId.set(rid, { ...answer, body: structuredClone(answer.body) });
      return answer;
    };
    const holdKind = isAuthorise ? 'payments' : isRefund ? 'refunds' : undefined;
    if (holdKind && toHold[holdKind] > 0) {
      toHold[holdKind] -= 1;
      // Processing, invisible: nothing recorded, no answer, until the test ends it.
      held.push({
        finish: (end) => {
          if (end === 'record') run();
          res.socket?.destroy();
        },
      });
      return;
    }
    const answer = run();
    if (faults.after(plan, res)) return;
    sendJson(res, answer.status, answer.body);
  };

  function token(req: IncomingMessage, raw: string, res: ServerResponse) {
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const [id, secret] = basic ? Buffer.from(basic, 'base64').toString('utf8').split(':').map(decodeURIComponent) : [];
    const form = new URLSearchParams(raw);
    if (form.get('grant_type') !== 'client_credentials') return sendJson(res, 400, { error: 'unsupported_grant_type' });
    if (id !== clientId || secret !== clientSecret) return sendJson(res, 401, { error: 'invalid_client' });
    const t = `jpm_${randomBytes(16).toString('hex')}`;
    tokens.set(t, Date.now() + tokenTtlSec * 1000);
    issued += 1;
    sendJson(res, 200, {
      access_token: t,
      token_type: 'Bearer',
      expires_in: tokenTtlSec,
      scope: form.get('scope') ?? 'jpm:payments',
    });
  }

  function chargeOf(body: Record<string, unknown>): string {
    return typeof body.merchantOrderNumber === 'string' ? body.merchantOrderNumber : '-';
  }

  function authorise(rid: string, body: Record<string, unknown>): Answer {
    const card = (
      body.paymentMethodType as { card?: { accountNumber?: unknown; expiry?: { month?: unknown; year?: unknown } } } | undefined
    )?.card;
    const number = typeof card?.accountNumber === 'string' ? card.accountNumber : '';
    const requested = body.amount;
    if (typeof requested !== 'number' || !Number.isInteger(requested) || requested <= 0 || typeof body.currency !== 'string')
      return { status: 400, body: error('INVALID_AMOUNT', 'amount and currency are required') };
    if (body.captureMethod !== 'MANUAL' && body.captureMethod !== 'NOW')
      return { status: 400, body: error('INVALID_CAPTURE_METHOD', 'captureMethod must be MANUAL or NOW') };
    if (!luhnValid(number)) return { status: 400, body: error('INVALID_ACCOUNT_NUMBER', 'Invalid card account number') };
    const chargeId = chargeOf(body);
    const decline = DECLINES.get(number);
    const p: Payment = {
      transactionId: randomBytes(12).toString('hex'),
      requestId: rid,
      chargeId,
      transactionState: decline ? 'DECLINED' : 'AUTHORIZED',
      responseStatus: decline ? 'DENIED' : 'SUCCESS',
      responseCode: decline ? decline.code : 'APPROVED',
      responseMessage: decline ? decline.message : 'Transaction approved by issuer',
      amount: requested === CHASE_SANDBOX_MISMATCH_AMOUNT ? requested + 1 : requested,
      currency: body.currency.toUpperCase(),
      captureMethod: String(body.captureMethod),
      refunded: 0,
    };
    payments.set(p.transactionId, p);
    bump(chargeId, 'created');
    bump(chargeId, decline ? 'declined' : 'authorised');
    return {
      status: 201,
      body: {
        ...view(p),
        paymentMethodType: { card: { maskedAccountNumber: `${number.slice(0, 6)}XXXXXX${number.slice(-4)}` } },
      },
      transactionId: p.transactionId,
    };
  }

  function modify(method: string, path: string, rid: string, body: Record<string, unknown>): Answer {
    if (method === 'POST' && path === '/refunds') return refund(rid, body);
    const m = PAYMENT_PATH.exec(path);
    const p = m?.[1] ? payments.get(m[1]) : undefined;
    if (!m) return { status: 404, body: error('NOT_FOUND', `no route ${method} ${path}`) };
    if (!p) return { status: 404, body: error('NOT_FOUND', 'Transaction not found') };
    if (method === 'POST' && m[2]) {
      if (p.transactionState !== 'AUTHORIZED')
        return { status: 400, body: error('INVALID_TRANSACTION_STATE', `Payment is ${p.transactionState}`) };
      const amount = typeof body.amount === 'number' ? body.amount : p.amount;
      if (amount > p.amount) return { status: 400, body: error('INVALID_AMOUNT', 'Capture exceeds the authorised amount') };
      p.transactionState = 'CAPTURED';
      p.amount = amount;
      bump(p.chargeId, 'captured');
      bump(p.chargeId, 'capturedAmount', amount);
      return { status: 201, body: view(p), transactionId: p.transactionId };
    }
    if (method === 'PATCH' && !m[2]) {
      if (body.isVoid !== true) return { status: 400, body: error('INVALID_REQUEST', 'only isVoid is supported') };
      if (p.transactionState !== 'AUTHORIZED')
        return { status: 400, body: error('INVALID_TRANSACTION_STATE', `Payment is ${p.transactionState}`) };
      p.transactionState = 'VOIDED';
      bump(p.chargeId, 'voided');
      return { status: 200, body: view(p), transactionId: p.transactionId };
    }
    return { status: 405, body: error('METHOD_NOT_ALLOWED', `${method} ${path}`) };
  }

  function refund(rid: string, body: Record<string, unknown>): Answer {
    const ref = (body.paymentMethodType as { transactionReference?: { transactionReferenceId?: unknown } } | undefined)
      ?.transactionReference?.transactionReferenceId;
    const p = typeof ref === 'string' ? payments.get(ref) : undefined;
    if (!p) return { status: 404, body: error('NOT_FOUND', 'Referenced transaction not found') };
    const amount = typeof body.amount === 'number' ? body.amount : 0;
    if (p.transactionState !== 'CAPTURED')
      return { status: 400, body: error('INVALID_TRANSACTION_STATE', `Payment is ${p.transactionState}`) };
    if (amount <= 0 || p.refunded + amount > p.amount)
      return { status: 400, body: error('INVALID_AMOUNT', 'Refund exceeds the captured amount') };
    p.refunded += amount;
    bump(p.chargeId, 'refunds');
    bump(p.chargeId, 'refunded', amount);
    const r = {
      transactionId: randomBytes(12).toString('hex'),
      requestId: rid,
      transactionState: 'COMPLETED',
      responseStatus: 'SUCCESS',
      responseCode: 'APPROVED',
      responseMessage: 'Refund approved',
      amount,
      currency: p.currency,
      transactionReferenceId: p.transactionId,
      merchantOrderNumber: p.chargeId,
    };
    refundTxs.set(r.transactionId, { chargeId: p.chargeId, body: r });
    return { status: 201, body: r, transactionId: r.transactionId };
  }

  function lookup(path: string, query: URLSearchParams): Answer {
    if (path === '/payments') {
      const rid = query.get('requestIdentifier');
      const a = rid ? byRequestId.get(rid) : undefined;
      if (!a) return { status: 404, body: error('NOT_FOUND', 'No transaction found for this request identifier') };
      // The transaction's state now (a payment captured since shows CAPTURED), or the stored answer.
      const p = a.transactionId ? payments.get(a.transactionId) : undefined;
      const r = a.transactionId ? refundTxs.get(a.transactionId) : undefined;
      return { status: 200, body: p ? view(p) : (r?.body ?? a.body) };
    }
    const m = PAYMENT_PATH.exec(path);
    const p = m?.[1] && !m[2] ? payments.get(m[1]) : undefined;
    const r = m?.[1] && !m[2] ? refundTxs.get(m[1]) : undefined;
    if (r) return { status: 200, body: r.body };
    return p ? { status: 200, body: view(p) } : { status: 404, body: error('NOT_FOUND', 'Transaction not found') };
  }

  function stats() {
    const totals = { ...fresh(), requests, tokens: issued, unauthorised };
    for (const s of charges.values()) for (const k of Object.keys(s) as (keyof ChaseChargeStats)[]) totals[k] += s[k];
    return { totals, charges: Object.fromEntries([...charges].map(([k, v]) => [k, { ...v }])) };
  }

  const server = await startHttpServer(handler, options);
  return {
    url: server.url,
    clientId,
    clientSecret,
    merchantId,
    tokenUrl: `${server.url}/oauth2/token`,
    faults,
    hold(count = 1, what = 'payments') {
      toHold[what] += count;
    },
    release(end) {
      const n = held.length;
      for (const h of held.splice(0)) h.finish(end);
      return n;
    },
    get held() {
      return held.length;
    },
    expireTokens() {
      for (const t of tokens.keys()) tokens.set(t, 0);
    },
    stats,
    close() {
      toHold.payments = 0;
      toHold.refunds = 0;
      for (const h of held.splice(0)) h.finish('drop');
      faults.releaseHanging();
      return server.close();
    },
  };
}
