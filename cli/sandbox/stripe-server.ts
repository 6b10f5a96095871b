/**
 * A Stripe-shaped fake of the PaymentIntents endpoints payfleet uses, reproducing the real API's
 * requests, responses and errors closely enough that the connector cannot tell (docs/connectors.md):
 *
 *   POST /v1/payment_intents               create + confirm (form-encoded)
 *   GET  /v1/payment_intents/search        query=metadata['chargeId']:'...'
 *   GET  /v1/payment_intents/{id}
 *   POST /v1/payment_intents/{id}/capture  amount_to_capture
 *   POST /v1/payment_intents/{id}/cancel
 *   POST /v1/refunds, GET /v1/refunds/{id}, GET /v1/refunds?payment_intent=   (stripe-refunds.ts)
 *
 * Idempotency as Stripe documents it: validation failures are not stored; otherwise the first
 * response per key is stored and replayed (`Idempotent-Replayed: true`) for the same endpoint and
 * parameters, a different endpoint or parameters answer 400 `idempotency_error`, and a key whose
 * first request is still processing answers 409 `idempotency_key_in_use`. Injected 429/5xx/resets
 * happen before the idempotency layer (as Stripe's rate limiter does), so they are never stored.
 *
 * The oracle: `GET /__sandbox/stats` counts, per metadata[chargeId], PaymentIntents actually created
 * (replays excluded), authorisations, declines, captures and cancels actually performed, the amount
 * captured, and the refunds created and amount refunded (refunds that did not fail).
 * `POST /__sandbox/reset` forgets everything but the fault config.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FaultInjector, type FaultConfig } from './faults.js';
import { readBody, sendJson, splitUrl, startHttpServer, type HttpServerOptions } from './http-server.js';
import { luhnValid } from '../../shared/connectors/sandbox.js';
import { createStripeRefundBook } from './stripe-refunds.js';

export { STRIPE_REFUND_TEST_CARDS } from './stripe-refunds.js';

/** The secret key the fake accepts unless told otherwise. */
export const STRIPE_SANDBOX_DEFAULT_API_KEY = 'sk_test_payfleet_sandbox';
/** Creating a PaymentIntent for this amount yields one for amount + 1 (tests the mismatch path). */
export const STRIPE_SANDBOX_MISMATCH_AMOUNT = 6666;

/** Test cards, as in Stripe's testing docs. Any other Luhn-valid number succeeds. */
type CardResult = { code: string; decline_code?: string; message: string } | 'requires_action';
const CARD_RESULTS: ReadonlyMap<string, CardResult> = new Map<string, CardResult>([
  ['4000000000000002', { code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' }],
  [
    '4000000000009995',
    { code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
  ],
  ['4000000000009987', { code: 'card_declined', decline_code: 'lost_card', message: 'Your card was declined.' }],
  ['4000000000009979', { code: 'card_declined', decline_code: 'stolen_card', message: 'Your card was declined.' }],
  ['4100000000000019', { code: 'card_declined', decline_code: 'fraudulent', message: 'Your card was declined.' }],
  ['4000000000000069', { code: 'expired_card', message: 'Your card has expired.' }],
  ['4000000000000127', { code: 'incorrect_cvc', message: "Your card's security code is incorrect." }],
  [
    '4000000000000119',
    { code: 'processing_error', message: 'An error occurred while processing your card. Try again in a little bit.' },
  ],
  ['4000002500003155', 'requires_action'],
]);

export interface StripeSandboxOptions extends HttpServerOptions {
  /** Secret key accepted (Bearer, or Basic with the key as user name). @default STRIPE_SANDBOX_DEFAULT_API_KEY */
  readonly apiKey?: string;
  /** Simulated processing time inside the idempotency window (so duplicates can meet a 409). @default 0 */
  readonly processingDelayMs?: number;
  /** How long a pending refund (refund test cards) stays pending. @default 100 */
  readonly refundSettleMs?: number;
  /** How long idempotency keys are remembered. @default 24 h */
  readonly idempotencyTtlMs?: number;
  readonly faults?: Partial<FaultConfig>;
}

/** Effects actually performed for one metadata[chargeId] (replays counted apart). */
export interface ChargeStats {
  created: number;
  authorised: number;
  declined: number;
  captured: number;
  canceled: number;
  replays: number;
  /** Sum of amount_received of its captured PaymentIntents. */
  capturedAmount: number;
  /** Refunds created (replays excluded) and the amount they refund, failed ones excluded. */
  refunds: number;
  refunded: number;
}

export interface StripeSandboxStats {
  readonly totals: ChargeStats & { readonly requests: number };
  /** Keyed by metadata[chargeId]. */
  readonly charges: Readonly<Record<string, Readonly<ChargeStats>>>;
}

/** A running Stripe fake. */
export interface StripeSandbox {
  readonly url: string;
  readonly apiKey: string;
  readonly faults: FaultInjector;
  stats(): StripeSandboxStats;
  /** Settle every pending refund now (also `POST /__sandbox/refunds/settle`); how many. */
  settleRefunds(): number;
  /** Forget intents, keys and counters (fault config kept). */
  reset(): void;
  close(): Promise<void>;
}

type Intent = Record<string, unknown> & {
  id: string;
  status: string;
  amount: number;
  currency: string;
  metadata: Record<string, string>;
};
type Answer = { status: number; body: unknown };
type KeyRecord = { endpoint: string; params: string; at: number; chargeId?: string; answer?: Answer; requestId: string };

const PI_PATH = /^\/v1\/payment_intents\/([^/]+)(?:\/(capture|cancel))?$/;

/** Start the Stripe sandbox on a loopback port. */
export async function startStripeSandbox(options: StripeSandboxOptions = {}): Promise<StripeSandbox> {
  const apiKey = options.apiKey ?? STRIPE_SANDBOX_DEFAULT_API_KEY;
  const ttlMs = options.idempotencyTtlMs ?? 24 * 3600_000;
  const faults = new FaultInjector({
    config: options.faults,
    renderError: (status) =>
      status === 429
        ? { error: { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests hit the API too quickly.' } }
        : { error: { type: 'api_error', message: 'An unknown error occurred (sandbox fault).' } },
  });
  let intents = new Map<string, Intent>();
  let keys = new Map<string, KeyRecord>();
  let charges = new Map<string, ChargeStats>();
  let requests = 0;
  const refundBook = createStripeRefundBook({ intent: (id) => intents.get(id), settleMs: options.refundSettleMs });
  const bump = (chargeId: string | undefined, field: keyof ChargeStats, by = 1) => {
    if (chargeId === undefined) return;
    let s = charges.get(chargeId);
    if (!s) {
      s = { ...ZERO };
      charges.set(chargeId, s);
    }
    s[field] += by;
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { path, query } = splitUrl(req);
    if (await faults.handleAdmin(req, res, path)) return;
    const body = await readBody(req);
    if (path === '/__sandbox/stats' && req.method === 'GET') return sendJson(res, 200, stats(query.get('chargeId') ?? undefined));
    if (path === '/__sandbox/reset' && req.method === 'POST') {
      reset();
      return sendJson(res, 200, { reset: true });
    }
    if (path === '/__sandbox/refunds/settle' && req.method === 'POST') return sendJson(res, 200, { settled: refundBook.settleAll() });
    requests += 1;
    const requestId = `req_${randomBytes(7).toString('hex')}`;
    const headers = { 'request-id': requestId, 'stripe-version': String(req.headers['stripe-version'] ?? '2024-06-20') };
    if (!authorised(req.headers.authorization)) {
      return sendJson(res, 401, invalid('Invalid API Key provided: sk_test_****'), headers);
    }
    const plan = faults.plan(path, req.method);
    if (faults.before(plan, res)) return;

    const route = routeOf(req.method ?? 'GET', path);
    if (!route) return sendJson(res, 404, invalid(`Unrecognized request URL (${req.method}: ${path}).`), headers);
    const params = new URLSearchParams(req.method === 'POST' ? body : query);

    if (req.method === 'GET') {
      await faults.delay(plan, res);
      const answer =
        route.op === 'search'
          ? search(params.get('query') ?? '')
          : route.op === 'refunds'
            ? refundBook.list(params)
            : route.op === 'refund'
              ? refundBook.retrieve(route.id ?? '')
              : retrieve(route.id ?? '');
      if (faults.after(plan, res)) return;
      return sendJson(res, answer.status, answer.body, headers);
    }

    // Validation failures are answered before the idempotency layer and never stored.
    const problem = validate(route.op, params);
    if (problem) return sendJson(res, 400, problem, headers);

    const key = req.headers['idempotency-key'];
    const endpoint = `${req.method} ${path}`;
    const canonical = [...params.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    let record: KeyRecord | undefined;
    if (typeof key === 'string' && key !== '') {
      const prior = keys.get(key);
      if (prior && Date.now() - prior.at < ttlMs) {
        const refusal = refuseReuse(prior, endpoint, canonical, key);
        if (refusal) return sendJson(res, refusal.status, refusal.body, headers);
        const stored = prior.answer as Answer;
        bump(prior.chargeId, 'replays');
        if (faults.after(plan, res)) return;
        const replayHeaders = { 'idempotent-replayed': 'true', 'original-request': prior.requestId, 'idempotency-key': key };
        return sendJson(res, stored.status, stored.body, { ...headers, ...replayHeaders });
      }
      record = { endpoint, params: canonical, at: Date.now(), requestId };
      keys.set(key, record);
      if (keys.size % 1000 === 0) prune();
    }

    // Processing time sits inside the idempotency window: a duplicate arriving now gets the 409.
    await faults.delay({ delayMs: plan.delayMs + (options.processingDelayMs ?? 0), kind: 'none' });
    const answer =
      route.op === 'create'
        ? create(params)
        : route.op === 'capture'
          ? capture(route.id ?? '', params)
          : route.op === 'refund'
            ? refundBook.create(params)
            : cancel(route.id ?? '');
    if (record) {
      // A snapshot, as Stripe stores the response itself: later captures must not change a replay.
      record.answer = { status: answer.status, body: structuredClone(answer.body) };
      const b = answer.body as { error?: { payment_intent?: Intent }; metadata?: Record<string, string> };
      record.chargeId = (b.error?.payment_intent?.metadata ?? b.metadata)?.chargeId;
    }
    if (faults.after(plan, res)) return;
    sendJson(res, answer.status, answer.body, typeof key === 'string' ? { ...headers, 'idempotency-key': key } : headers);
  };

  function authorised(header: string | undefined): boolean {
    if (header === `Bearer ${apiKey}`) return true;
    if (header?.startsWith('Basic ')) return Buffer.from(header.slice(6), 'base64').toString('utf8').split(':')[0] === apiKey;
    return false;
  }

  function create(p: URLSearchParams): Answer {
    const number = p.get('payment_method_data[card][number]') ?? '';
    const expYear = Number(p.get('payment_method_data[card][exp_year]'));
    const expMonth = Number(p.get('payment_method_data[card][exp_month]'));
    // Card-level validation fails before a PaymentIntent exists (no payment_intent in the error).
    if (!luhnValid(number)) return cardError({ code: 'incorrect_number', message: 'Your card number is incorrect.' });
    const now = new Date();
    if (expYear < now.getUTCFullYear() || (expYear === now.getUTCFullYear() && expMonth < now.getUTCMonth() + 1)) {
      return cardError({ code: 'invalid_expiry_year', message: "Your card's expiration year is invalid." });
    }
    const requested = Number(p.get('amount'));
    const amount = requested === STRIPE_SANDBOX_MISMATCH_AMOUNT ? requested + 1 : requested;
    const metadata: Record<string, string> = {};
    for (const [k, v] of p) {
      const m = /^metadata\[(.+)\]$/.exec(k);
      if (m?.[1]) metadata[m[1]] = v;
    }
    const manual = p.get('capture_method') === 'manual';
    const id = `pi_${randomBytes(12).toString('hex')}`;
    const pi: Intent = {
      id,
      object: 'payment_intent',
      amount,
      amount_capturable: 0,
      amount_received: 0,
      capture_method: manual ? 'manual' : 'automatic',
      client_secret: `${id}_secret_${randomBytes(8).toString('hex')}`,
      confirmation_method: 'automatic',
      created: Math.floor(Date.now() / 1000),
      currency: (p.get('currency') ?? '').toLowerCase(),
      description: p.get('description'),
      last_payment_error: null,
      latest_charge: `ch_${randomBytes(12).toString('hex')}`,
      livemode: false,
      metadata,
      payment_method: `pm_${randomBytes(12).toString('hex')}`,
      payment_method_types: ['card'],
      status: 'requires_capture',
      canceled_at: null,
      cancellation_reason: null,
    };
    intents.set(id, pi);
    refundBook.noteCard(id, number);
    bump(metadata.chargeId, 'created');
    const result = CARD_RESULTS.get(number);
    if (result === 'requires_action') {
      pi.status = 'requires_action';
      return { status: 200, body: pi };
    }
    if (result) {
      pi.status = 'requires_payment_method';
      pi.last_payment_error = { type: 'card_error', ...result };
      bump(metadata.chargeId, 'declined');
      return cardError(result, pi);
    }
    bump(metadata.chargeId, 'authorised');
    if (manual) pi.amount_capturable = amount;
    else {
      pi.status = 'succeeded';
      pi.amount_received = amount;
      bump(metadata.chargeId, 'captured');
      bump(metadata.chargeId, 'capturedAmount', amount);
    }
    return { status: 200, body: pi };
  }

  function capture(id: string, p: URLSearchParams): Answer {
    const pi = intents.get(id);
    if (!pi) return missing(id);
    if (pi.status !== 'requires_capture') return unexpectedState(pi, 'captured');
    const amount = p.has('amount_to_capture') ? Number(p.get('amount_to_capture')) : pi.amount;
    if (amount > pi.amount) {
      return {
        status: 400,
        body: invalid(
          'The amount to capture must be less than or equal to the amount capturable.',
          'amount_too_large',
          'amount_to_capture',
        ),
      };
    }
    Object.assign(pi, { status: 'succeeded', amount_received: amount, amount_capturable: 0 });
    bump(pi.metadata.chargeId, 'captured');
    bump(pi.metadata.chargeId, 'capturedAmount', amount);
    return { status: 200, body: pi };
  }

  function cancel(id: string): Answer {
    const pi = intents.get(id);
    if (!pi) return missing(id);
    if (!['requires_capture', 'requires_payment_method', 'requires_action', 'requires_confirmation'].includes(pi.status))
      return unexpectedState(pi, 'canceled');
    Object.assign(pi, {
      status: 'canceled',
      amount_capturable: 0,
      canceled_at: Math.floor(Date.now() / 1000),
      cancellation_reason: 'requested_by_customer',
    });
    bump(pi.metadata.chargeId, 'canceled');
    return { status: 200, body: pi };
  }

  function retrieve(id: string): Answer {
    const pi = intents.get(id);
    return pi ? { status: 200, body: pi } : missing(id);
  }

  function search(q: string): Answer {
    const m = /^metadata\[['"](.+?)['"]\]:['"](.*)['"]$/.exec(q.trim());
    if (!m?.[1])
      return {
        status: 400,
        body: invalid("The sandbox supports only queries of the form metadata['key']:'value'.", 'parameter_invalid', 'query'),
      };
    const [, field, value] = m;
    const wanted = (value ?? '').replace(/\\(.)/g, '$1');
    const data = [...intents.values()]
      .filter((pi) => pi.metadata[field] === wanted)
      .sort((a, b) => Number(b.created) - Number(a.created));
    return {
      status: 200,
      body: { object: 'search_result', data, has_more: false, next_page: null, url: '/v1/payment_intents/search' },
    };
  }

  function prune() {
    const cutoff = Date.now() - ttlMs;
    for (const [k, r] of keys) if (r.at < cutoff && r.answer) keys.delete(k);
  }

  function stats(chargeId?: string): StripeSandboxStats {
    const totals = { ...ZERO, requests };
    const out: Record<string, ChargeStats> = {};
    const refunded = refundBook.byCharge();
    for (const [id, counted] of charges) {
      const s = { ...counted, ...refunded.get(id) };
      for (const f of Object.keys(ZERO) as (keyof ChargeStats)[]) totals[f] += s[f];
      if (chargeId === undefined || chargeId === id) out[id] = s;
    }
    return { totals, charges: out };
  }

  function reset() {
    intents = new Map();
    keys = new Map();
    charges = new Map();
    refundBook.reset();
    requests = 0;
  }

  const server = await startHttpServer(handler, options);
  return {
    url: server.url,
    apiKey,
    faults,
    stats: () => stats(),
    settleRefunds: () => refundBook.settleAll(),
    reset,
    async close() {
      faults.releaseHanging();
      await server.close();
    },
  };
}

const ZERO: Readonly<ChargeStats> = Object.freeze({
  created: 0,
  authorised: 0,
  declined: 0,
  captured: 0,
  canceled: 0,
  replays: 0,
  capturedAmount: 0,
  refunds: 0,
  refunded: 0,
});

function routeOf(
  method: string,
  path: string,
): { op: 'create' | 'search' | 'retrieve' | 'capture' | 'cancel' | 'refund' | 'refunds'; id?: string } | undefined {
  if (path === '/v1/payment_intents') return method === 'POST' ? { op: 'create' } : undefined;
  // POST /v1/refunds creates one (op refund); GET lists them (op refunds); GET /v1/refunds/{id} reads one.
  if (path === '/v1/refunds') return method === 'POST' ? { op: 'refund' } : method === 'GET' ? { op: 'refunds' } : undefined;
  const re = /^\/v1\/refunds\/([^/]+)$/.exec(path);
  if (re?.[1]) return method === 'GET' ? { op: 'refund', id: decodeURIComponent(re[1]) } : undefined;
  if (path === '/v1/payment_intents/search') return method === 'GET' ? { op: 'search' } : undefined;
  const m = PI_PATH.exec(path);
  if (!m?.[1]) return undefined;
  const id = decodeURIComponent(m[1]);
  if (!m[2]) return method === 'GET' ? { op: 'retrieve', id } : undefined;
  return method === 'POST' ? { op: m[2] as 'capture' | 'cancel', id } : undefined;
}

/** Parameter checks Stripe performs before executing (so their failures are not stored). */
function validate(op: string, p: URLSearchParams): unknown {
  if (op === 'create') {
    for (const name of ['amount', 'currency'])
      if (!p.has(name)) return invalid(`Missing required param: ${name}.`, 'parameter_missing', name);
    if (!/^[1-9]\d{0,10}$/.test(p.get('amount') ?? ''))
      return invalid('Invalid positive integer', 'parameter_invalid_integer', 'amount');
    if (!/^[a-zA-Z]{3}$/.test(p.get('currency') ?? ''))
      return invalid(`Invalid currency: ${p.get('currency')}.`, 'parameter_invalid', 'currency');
    if (p.get('confirm') !== 'true') return invalid('The sandbox supports only confirm=true.', 'parameter_invalid', 'confirm');
    const cm = p.get('capture_method');
    if (cm !== null && !['manual', 'automatic', 'automatic_async'].includes(cm))
      return invalid(`Invalid capture_method: ${cm}`, 'parameter_invalid', 'capture_method');
    if (p.get('payment_method_data[type]') !== 'card')
      return invalid('Missing required param: payment_method_data[type].', 'parameter_missing', 'payment_method_data[type]');
    for (const f of ['number', 'exp_month', 'exp_year', 'cvc']) {
      const name = `payment_method_data[card][${f}]`;
      if (!p.get(name)) return invalid(`Missing required param: ${name}.`, 'parameter_missing', name);
    }
  }
  if (op === 'refund') {
    if (!p.get('payment_intent') && !p.get('charge'))
      return invalid('Missing required param: payment_intent.', 'parameter_missing', 'payment_intent');
    if (p.has('amount') && !/^[1-9]\d{0,10}$/.test(p.get('amount') ?? ''))
      return invalid('Invalid positive integer', 'parameter_invalid_integer', 'amount');
  }
  if (op === 'capture' && p.has('amount_to_capture') && !/^[1-9]\d{0,10}$/.test(p.get('amount_to_capture') ?? '')) {
    return invalid('Invalid positive integer', 'parameter_invalid_integer', 'amount_to_capture');
  }
  return undefined;
}

function invalid(message: string, code?: string, param?: string) {
  return { error: { type: 'invalid_request_error', message, ...(code ? { code } : {}), ...(param ? { param } : {}) } };
}

/** Stripe's answer to a key reused for another endpoint or other parameters, or still in flight; undefined = replay. */
function refuseReuse(prior: KeyRecord, endpoint: string, params: string, key: string): Answer | undefined {
  const retry = `Try using a key other than '${key}' if you meant to execute a different request.`;
  if (prior.endpoint !== endpoint) {
    const paths = `('${endpoint.split(' ')[1]}' vs '${prior.endpoint.split(' ')[1]}')`;
    const message = `Keys for idempotent requests can only be used for the same endpoint they were first used for ${paths}. ${retry}`;
    return { status: 400, body: { error: { type: 'idempotency_error', message } } };
  }
  if (prior.params !== params) {
    const message = `Keys for idempotent requests can only be used with the same parameters they were first used with. ${retry}`;
    return { status: 400, body: { error: { type: 'idempotency_error', message } } };
  }
  if (prior.answer) return undefined;
  const message =
    'There is currently another in-progress request using this Stripe-Account, idempotency key, and endpoint. Please try again later.';
  return { status: 409, body: { error: { type: 'idempotency_error', code: 'idempotency_key_in_use', message } } };
}

function cardError(e: { code: string; decline_code?: string; message: string }, pi?: Intent): Answer {
  return {
    status: 402,
    body: {
      error: {
        type: 'card_error',
        ...e,
        doc_url: `https://stripe.com/docs/error-codes/${e.code.replace(/_/g, '-')}`,
        ...(pi ? { payment_intent: pi, charge: pi.latest_charge } : {}),
      },
    },
  };
}

function missing(id: string): Answer {
  return { status: 404, body: invalid(`No such payment_intent: '${id}'`, 'resource_missing', 'intent') };
}

function unexpectedState(pi: Intent, verb: string): Answer {
  return {
    status: 400,
    body: {
      error: {
        type: 'invalid_request_error',
        code: 'payment_intent_unexpected_state',
        message: `This PaymentIntent could not be ${verb} because it has a status of ${pi.status}.`,
        payment_intent: pi,
      },
    },
  };
}
