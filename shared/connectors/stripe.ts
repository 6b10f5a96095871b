/**
 * Stripe connector: the PaymentIntents API with manual capture (see docs/connectors.md).
 *
 *   authorise  POST /v1/payment_intents            confirm=true, capture_method=manual, card payment_method_data
 *   capture    POST /v1/payment_intents/{id}/capture  amount_to_capture
 *   void       POST /v1/payment_intents/{id}/cancel
 *   lookup     GET  /v1/payment_intents/{id}           when the PaymentIntent id is known
 *              POST /v1/payment_intents (replay)       resolving an ambiguous authorise (`original` given)
 *              GET  /v1/payment_intents/search         neither: by metadata['chargeId'] (eventually consistent)
 *   refund     POST /v1/refunds; lookupRefund GET /v1/refunds/{id} or ?payment_intent=  (stripe-refunds.ts)
 *
 * Every POST carries the caller's `Idempotency-Key`. Stripe stores the first response per key for at
 * least 24 hours and replays it (`Idempotent-Replayed: true`) for a request with the same parameters,
 * so repeating an authorise can never create a second PaymentIntent. That is also why an ambiguous
 * authorise is resolved by replaying it: the replay returns exactly what the lost answer said (or,
 * if the first request never reached Stripe, performs it once) and, unlike search, is strongly
 * consistent. The replay must be byte-for-byte the same request, so the form is built by one pure
 * function ({@link buildAuthoriseForm}) and the caller passes the same AuthoriseRequest again.
 *
 * The request body holds the card; it is never logged, and no outcome or error message quotes a
 * request body or Stripe's raw answer (Stripe's messages are PAN-masked and truncated).
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import { silentLogger } from '../log/logger.js';
import { maskPans } from '../log/redact.js';
import {
  createHttpClient,
  formEncode,
  HttpAmbiguousError,
  HttpNotSentError,
  parseJsonBody,
  parseRetryAfterMs,
  type HttpClient,
  type HttpGuard,
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
  VoidOutcome,
} from './types.js';
import { createStripeRefunds } from './stripe-refunds.js';

/** The API version the request and response shapes here were written against. */
export const STRIPE_API_VERSION = '2024-06-20';

export interface StripeConnectorOptions {
  /** `STRIPE_API_KEY` (secret key, `sk_...`). */
  readonly apiKey: string;
  /** `STRIPE_API_BASE_URL`. @default 'https://api.stripe.com' */
  readonly baseUrl?: string;
  /** Sent as `Stripe-Version`. @default STRIPE_API_VERSION */
  readonly apiVersion?: string;
  /** Deadline per request; past it, a sent request is ambiguous. @default 20_000 */
  readonly timeoutMs?: number;
  /** Keep-alive connections to Stripe. @default 32 */
  readonly maxConnections?: number;
  /** @default silent */
  readonly logger?: Logger;
  /** Inject a client (tests). */
  readonly http?: HttpClient;
  /** Circuit breaker and metrics for Stripe's calls. */
  readonly guard?: HttpGuard;
}

/** The connector plus `close()`, which releases its connection pool. */
export interface StripeConnector extends ProcessorConnector {
  close(): Promise<void>;
}

const lastPaymentErrorSchema = z.object({
  code: z.string().nullish(),
  decline_code: z.string().nullish(),
  message: z.string().nullish(),
});
const paymentIntentSchema = z.object({
  id: z.string().min(1),
  status: z.string(),
  amount: z.number().int(),
  currency: z.string(),
  amount_received: z.number().int().nullish(),
  last_payment_error: lastPaymentErrorSchema.nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  created: z.number().nullish(),
});
type PaymentIntent = z.infer<typeof paymentIntentSchema>;
const errorBodySchema = z.object({
  error: z.object({
    type: z.string(),
    code: z.string().nullish(),
    decline_code: z.string().nullish(),
    message: z.string().nullish(),
    payment_intent: paymentIntentSchema.nullish(),
  }),
});
type StripeError = z.infer<typeof errorBodySchema>['error'];
const searchResultSchema = z.object({ data: z.array(paymentIntentSchema) });

/**
 * The create-and-confirm form for an authorise. Pure and deterministic: a replay under the same
 * Idempotency-Key must carry exactly the same parameters, or Stripe answers 400 idempotency_error.
 */
export function buildAuthoriseForm(req: AuthoriseRequest): string {
  const card = req.card.reveal();
  return formEncode({
    amount: req.amount,
    currency: req.currency.toLowerCase(),
    confirm: true,
    capture_method: 'manual',
    // Card only: with automatic payment methods Stripe may want a return_url for redirect methods.
    payment_method_types: ['card'],
    payment_method_data: {
      type: 'card',
      card: { number: card.number, exp_month: card.exp_month, exp_year: card.exp_year, cvc: card.cvc },
      billing_details: card.cardholder_name ? { name: card.cardholder_name } : undefined,
    },
    description: req.description ? req.description.slice(0, 1000) : undefined,
    metadata: { chargeId: req.chargeId, gatewayAccountId: req.gatewayAccountId, reference: req.reference.slice(0, 500) },
  });
}

/** Create the Stripe connector. `processorRef` is the PaymentIntent id (`pi_...`). */
export function createStripeConnector(options: StripeConnectorOptions): StripeConnector {
  const log = (options.logger ?? silentLogger()).child({ processor: 'stripe' });
  const http =
    options.http ??
    createHttpClient({
      baseUrl: options.baseUrl ?? 'https://api.stripe.com',
      timeoutMs: options.timeoutMs ?? 20_000,
      maxConnections: options.maxConnections ?? 32,
      ...options.guard,
    });
  const baseHeaders = {
    authorization: `Bearer ${options.apiKey}`,
    'stripe-version': options.apiVersion ?? STRIPE_API_VERSION,
    accept: 'application/json',
    'user-agent': 'payfleet',
  };

  type Sent = { ok: true; res: HttpResponse } | { ok: false; kind: 'not_sent' | 'ambiguous'; reason: string };

  /** POST with a form body and the Idempotency-Key; GET when `body` is undefined. */
  async function call(op: string, path: string, body?: string, key?: string, signal?: AbortSignal): Promise<Sent> {
    const method = body === undefined ? 'GET' : 'POST';
    const headers: Record<string, string> = { ...baseHeaders };
    if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
    if (key !== undefined) headers['idempotency-key'] = key;
    try {
      const res = await http.request({ method, path, headers, body, signal });
      log.debug(
        { op, status: res.status, replayed: res.headers['idempotent-replayed'] === 'true', requestId: res.headers['request-id'] },
        'stripe answered',
      );
      return { ok: true, res };
    } catch (err) {
      if (err instanceof HttpNotSentError) return { ok: false, kind: 'not_sent', reason: err.message };
      if (err instanceof HttpAmbiguousError) {
        log.warn({ op, reason: err.message }, 'stripe request ambiguous');
        return { ok: false, kind: 'ambiguous', reason: err.message };
      }
      throw err;
    }
  }

  async function authorise(req: AuthoriseRequest, signal?: AbortSignal): Promise<AuthoriseOutcome> {
    const sent = await call('authorise', '/v1/payment_intents', buildAuthoriseForm(req), req.idempotencyKey, signal);
    if (!sent.ok) return transportOutcome(sent);
    return authoriseOutcome(sent.res, req);
  }

  async function capture(req: CaptureRequest, signal?: AbortSignal): Promise<CaptureOutcome> {
    const path = `/v1/payment_intents/${encodeURIComponent(req.processorRef)}/capture`;
    const sent = await call('capture', path, formEncode({ amount_to_capture: req.amount }), req.idempotencyKey, signal);
    if (!sent.ok) return transportOutcome(sent);
    const { res } = sent;
    const processorRef = req.processorRef;
    if (res.status === 200) {
      const pi = parseJsonBody(paymentIntentSchema, res.body);
      // The capture was performed but the answer is unreadable: the state is known only to Stripe.
      if (!pi) return { kind: 'ambiguous', reason: 'stripe answered 200 with an unreadable body' };
      if (pi.status === 'succeeded') return { kind: 'captured', processorRef };
      if (pi.status === 'processing') return { kind: 'submitted', processorRef };
      return {
        kind: 'error',
        retryable: false,
        code: 'UNEXPECTED_STATUS',
        message: `capture left the PaymentIntent in status ${pi.status}`,
        processorRef,
      };
    }
    const e = parseJsonBody(errorBodySchema, res.body)?.error;
    if (res.status === 400 && e?.code === 'payment_intent_unexpected_state') {
      // A capture that already happened (earlier key, or after the key expired) is a success.
      if (e.payment_intent?.status === 'succeeded') return { kind: 'captured', processorRef };
      return { kind: 'error', retryable: false, code: 'NOT_CAPTURABLE', message: stateMessage('capture', e), processorRef };
    }
    if (res.status === 404)
      return { kind: 'error', retryable: false, code: 'NOT_CAPTURABLE', message: 'no such PaymentIntent', processorRef };
    return { ...errorOutcome(res, e), processorRef };
  }

  async function voidAuth(
    req: { chargeId: string; processorRef: string; idempotencyKey: string },
    signal?: AbortSignal,
  ): Promise<VoidOutcome> {
    const path = `/v1/payment_intents/${encodeURIComponent(req.processorRef)}/cancel`;
    const sent = await call('void', path, '', req.idempotencyKey, signal);
    if (!sent.ok) return sent.kind === 'not_sent' ? notSent(sent.reason) : { kind: 'ambiguous', reason: sent.reason };
    const { res } = sent;
    if (res.status === 200) {
      const pi = parseJsonBody(paymentIntentSchema, res.body);
      if (!pi) return { kind: 'ambiguous', reason: 'stripe answered 200 with an unreadable body' };
      if (pi.status === 'canceled') return { kind: 'voided' };
      return {
        kind: 'error',
        retryable: false,
        code: 'UNEXPECTED_STATUS',
        message: `cancel left the PaymentIntent in status ${pi.status}`,
      };
    }
    const e = parseJsonBody(errorBodySchema, res.body)?.error;
    if (res.status === 400 && e?.code === 'payment_intent_unexpected_state') {
      if (e.payment_intent?.status === 'canceled') return { kind: 'voided' };
      return { kind: 'error', retryable: false, code: 'NOT_VOIDABLE', message: stateMessage('cancel', e) };
    }
    const { kind: _k, retryAfterMs: _r, ...rest } = errorOutcome(res, e);
    return { kind: 'error', ...rest };
  }

  async function lookup(req: LookupRequest, signal?: AbortSignal): Promise<LookupOutcome> {
    if (req.processorRef !== undefined) {
      const sent = await call(
        'lookup',
        `/v1/payment_intents/${encodeURIComponent(req.processorRef)}`,
        undefined,
        undefined,
        signal,
      );
      if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
      if (sent.res.status === 404) return { kind: 'not_found' };
      if (sent.res.status !== 200) return { kind: 'unknown', reason: `stripe answered HTTP ${sent.res.status}` };
      const pi = parseJsonBody(paymentIntentSchema, sent.res.body);
      return pi ? lookupFromIntent(pi) : { kind: 'unknown', reason: 'stripe answered 200 with an unreadable body' };
    }
    if (req.original) {
      // The replay: same endpoint, same key, same parameters -> Stripe's stored answer.
      const original = { ...req.original, idempotencyKey: req.idempotencyKey };
      const sent = await call('lookup-replay', '/v1/payment_intents', buildAuthoriseForm(original), req.idempotencyKey, signal);
      if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
      const { res } = sent;
      if (res.status === 200) {
        const pi = parseJsonBody(paymentIntentSchema, res.body);
        // Report the truth, even a mismatching amount: the worker compares it with the charge.
        return pi ? lookupFromIntent(pi) : { kind: 'unknown', reason: 'stripe answered 200 with an unreadable body' };
      }
      const outcome = authoriseOutcome(res, original);
      if (outcome.kind === 'declined')
        return { kind: 'declined', processorRef: outcome.processorRef, code: outcome.code, message: outcome.message };
      if (outcome.kind !== 'error' || outcome.code !== 'IDEMPOTENCY_KEY_REUSED')
        return { kind: 'unknown', reason: outcomeReason(outcome) };
      // Parameters differ from the first request (e.g. a re-issued card): fall back to search.
    }
    return searchByChargeId(req.chargeId, signal);
  }

  async function searchByChargeId(chargeId: string, signal?: AbortSignal): Promise<LookupOutcome> {
    const query = `metadata['chargeId']:'${chargeId.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    const sent = await call(
      'lookup-search',
      `/v1/payment_intents/search?query=${encodeURIComponent(query)}&limit=10`,
      undefined,
      undefined,
      signal,
    );
    if (!sent.ok) return { kind: 'unknown', reason: sent.reason };
    if (sent.res.status !== 200) return { kind: 'unknown', reason: `stripe search answered HTTP ${sent.res.status}` };
    const found = parseJsonBody(searchResultSchema, sent.res.body);
    if (!found) return { kind: 'unknown', reason: 'stripe search answered with an unreadable body' };
    // Search lags writes by up to a minute, so "nothing found" is not proof of "never created".
    if (found.data.length === 0)
      return { kind: 'unknown', reason: 'no PaymentIntent found by chargeId (Stripe search is eventually consistent)' };
    const rank = (pi: PaymentIntent) => (['succeeded', 'requires_capture', 'processing'].includes(pi.status) ? 1 : 0);
    const best = [...found.data].sort((a, b) => rank(b) - rank(a) || (b.created ?? 0) - (a.created ?? 0))[0] as PaymentIntent;
    return lookupFromIntent(best);
  }

  const refunds = createStripeRefunds(call, errorOutcome, safeMessage);
  return { name: 'stripe', authorise, capture, void: voidAuth, lookup, ...refunds, close: () => http.close() };
}

// ---- mapping Stripe answers to outcomes ---------------------------------------------------------

function authoriseOutcome(res: HttpResponse, req: AuthoriseRequest): AuthoriseOutcome {
  if (res.status === 200) {
    const pi = parseJsonBody(paymentIntentSchema, res.body);
    // Something was created but we cannot read what: only a lookup can tell.
    if (!pi) return { kind: 'ambiguous', reason: 'stripe answered 200 with an unreadable body' };
    return fromIntent(pi, req);
  }
  const e = parseJsonBody(errorBodySchema, res.body)?.error;
  if (res.status === 402 && e?.type === 'card_error') {
    return {
      kind: 'declined',
      processorRef: e.payment_intent?.id,
      code: e.decline_code ?? e.code ?? 'card_declined',
      message: safeMessage(e.message),
    };
  }
  if (res.status === 400 && e?.type === 'idempotency_error') {
    return {
      kind: 'error',
      retryable: false,
      code: 'IDEMPOTENCY_KEY_REUSED',
      message: 'the idempotency key was used with different parameters',
    };
  }
  return errorOutcome(res, e);
}

function fromIntent(pi: PaymentIntent, req: AuthoriseRequest): AuthoriseOutcome {
  const processorRef = pi.id;
  switch (pi.status) {
    case 'requires_capture':
    case 'succeeded': {
      // Never report an approval for a different amount than asked: the charge would be wrong.
      if (pi.amount !== req.amount || pi.currency.toLowerCase() !== req.currency.toLowerCase()) {
        return {
          kind: 'error',
          retryable: false,
          code: 'AMOUNT_MISMATCH',
          message: `stripe authorised ${pi.amount} ${pi.currency.toUpperCase()} for a request of ${req.amount} ${req.currency.toUpperCase()}`,
          processorRef,
        };
      }
      return { kind: 'approved', processorRef, amount: pi.amount, currency: pi.currency.toUpperCase() };
    }
    case 'processing':
      return { kind: 'ambiguous', reason: 'PaymentIntent is processing', processorRef };
    case 'requires_action':
      // 3-D Secure needs the cardholder, who is not here: the charge cannot complete.
      return { kind: 'declined', processorRef, code: 'authentication_required', message: 'The card requires authentication.' };
    case 'requires_payment_method':
    case 'canceled':
      return { kind: 'declined', processorRef, code: declineCode(pi), message: safeMessage(pi.last_payment_error?.message) };
    default:
      return {
        kind: 'error',
        retryable: false,
        code: 'UNEXPECTED_STATUS',
        message: `PaymentIntent in status ${pi.status}`,
        processorRef,
      };
  }
}

function lookupFromIntent(pi: PaymentIntent): LookupOutcome {
  const processorRef = pi.id;
  const currency = pi.currency.toUpperCase();
  switch (pi.status) {
    case 'requires_capture':
      return { kind: 'authorised', processorRef, amount: pi.amount, currency };
    case 'succeeded':
      return { kind: 'captured', processorRef, amount: pi.amount_received ?? pi.amount, currency };
    case 'canceled':
      return { kind: 'voided', processorRef };
    case 'requires_payment_method':
      return { kind: 'declined', processorRef, code: declineCode(pi), message: safeMessage(pi.last_payment_error?.message) };
    case 'requires_action':
      return { kind: 'declined', processorRef, code: 'authentication_required', message: 'The card requires authentication.' };
    default:
      return { kind: 'unknown', reason: `PaymentIntent ${processorRef} in status ${pi.status}` };
  }
}

/** Statuses and Stripe errors that are not business results. */
function errorOutcome(res: HttpResponse, e: StripeError | undefined): Extract<AuthoriseOutcome, { kind: 'error' }> {
  const status = res.status;
  const retryAfterMs = parseRetryAfterMs(res.headers['retry-after']);
  const message = e ? safeMessage(e.message) : `stripe answered HTTP ${status}`;
  // 409: a request with this key is still running at Stripe (idempotency_key_in_use) or a lock
  // conflict; repeating it later under the same key is exactly right.
  if (status === 409) return { kind: 'error', retryable: true, code: e?.code ?? 'IDEMPOTENCY_KEY_IN_USE', message, retryAfterMs };
  if (status === 429) return { kind: 'error', retryable: true, code: 'RATE_LIMITED', message, retryAfterMs };
  // Stripe calls a 500 "indeterminate"; retrying under the same key is safe (a stored 500 replays).
  if (status >= 500) return { kind: 'error', retryable: true, code: 'PROCESSOR_ERROR', message, retryAfterMs };
  // A wrong or rotated API key is a deployment fault: let bounded retries outlast a key rotation.
  if (status === 401)
    return { kind: 'error', retryable: true, code: 'PROCESSOR_UNAUTHORISED', message: 'stripe rejected the API key (401)' };
  return { kind: 'error', retryable: false, code: e?.code ?? e?.type ?? `HTTP_${status}`, message };
}

function transportOutcome(sent: {
  kind: 'not_sent' | 'ambiguous';
  reason: string;
}): Extract<AuthoriseOutcome, { kind: 'error' | 'ambiguous' }> {
  return sent.kind === 'not_sent' ? notSent(sent.reason) : { kind: 'ambiguous', reason: sent.reason };
}

function notSent(reason: string): { kind: 'error'; retryable: true; code: string; message: string } {
  return { kind: 'error', retryable: true, code: 'PROCESSOR_UNREACHABLE', message: reason };
}

function outcomeReason(o: AuthoriseOutcome): string {
  if (o.kind === 'ambiguous') return o.reason;
  if (o.kind === 'error') return `${o.code}: ${o.message}`;
  return o.kind;
}

function declineCode(pi: PaymentIntent): string {
  return (
    pi.last_payment_error?.decline_code ??
    pi.last_payment_error?.code ??
    (pi.status === 'canceled' ? 'canceled' : 'payment_failed')
  );
}

function stateMessage(op: string, e: StripeError): string {
  return `cannot ${op}: PaymentIntent is ${e.payment_intent?.status ?? 'in an unexpected state'}`;
}

/** Stripe's human message, PAN-masked and bounded: it ends up in tables and DLQ attributes. */
function safeMessage(message: string | null | undefined): string {
  return maskPans(message ?? 'declined').slice(0, 300);
}
