/**
 * LHV Connect HTTP client (docs/contract.md §7): heartbeat, heartbeat/mq, payment initiation and the
 * message queue (`/messages/next`, `DELETE /messages/{id}`), over mTLS with an undici Agent.
 *
 * Error model (shared/errors.ts):
 *   - RetryableError: nothing reached the bank, or the bank said "not now" (connect failures, TLS
 *     handshake failures, 408, 429, 5xx). A retried `initiatePayment` must still use the SAME key.
 *   - AmbiguousError (initiatePayment only): the request went out and no usable answer came back
 *     (reset, read timeout, abort, 202 without Message-Request-Id). The bank may have accepted it;
 *     repeat with the SAME idempotency key: LHV de-duplicates by MsgId.
 *   - TerminalError (`LhvRequestRejectedError`): any other 4xx; carries status and a short reason
 *     with IBANs masked.
 *
 * Never logged: certificates, keys, request/response bodies, full IBANs.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { AmbiguousError, ConfigError, RetryableError, TerminalError } from '../../../shared/errors.js';
import { silentLogger, type Logger } from '../../../shared/log/logger.js';
import { xmlEscape } from './pain001.js';
import { guardedCall, type OutboundGuard } from '../../../shared/connectors/guarded.js';
import { LhvErrorCode, LhvRequestRejectedError, maskIbans, type LhvMessage, type LhvResponseType } from './types.js';

/** Options of {@link createLhvClient}. */
export interface LhvClientOptions {
  /**
   * e.g. `https://connect.lhv.com`. `http://` is accepted only for a loopback host (the local
   * sandbox) unless `allowInsecureHttp` is set; production must be https with mTLS.
   */
  readonly baseUrl: string;
  /** PEM client certificate (chain). Required for https. */
  readonly cert?: string | Buffer;
  /** PEM private key of `cert`. Required for https. */
  readonly key?: string | Buffer;
  /** PEM CA bundle for a private CA; the system roots are used when absent. Verification stays on. */
  readonly ca?: string | Buffer;
  /** Deadline for one whole request (connect + send + response), in ms. */
  readonly timeoutMs: number;
  /** Maximum concurrent connections to LHV. */
  readonly maxConnections: number;
  /**
   * Method of the advanced heartbeat. docs/contract.md §7 says GET; LHV's page for the service shows POST.
   * The sandbox accepts both. @default 'GET'
   */
  readonly heartbeatMqMethod?: 'GET' | 'POST';
  /** Allow `http://` to a non-loopback host (tests behind a proxy only). @default false */
  readonly allowInsecureHttp?: boolean;
  /** @default silentLogger() */
  readonly logger?: Logger;
  /**
   * LHV's circuit breaker and the outbound-call metrics: calls are refused (nothing sent) while it
   * is open; 5xx, 429/408 and transport failures count against LHV, any other answer for it.
   */
  readonly guard?: OutboundGuard;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call (shutdown). An aborted `initiatePayment` in flight is an AmbiguousError. */
  readonly signal?: AbortSignal;
}

/** The LHV Connect port the payout worker uses. */
export interface LhvClient {
  /** `GET /heartbeat`: resolves on any 2xx, throws otherwise. */
  heartbeat(opts?: CallOptions): Promise<void>;
  /** `GET /heartbeat/mq` (expects 202): returns the Message-Request-Id of the queued HEARTBEAT message. */
  heartbeatMq(opts?: CallOptions): Promise<{ messageRequestId: string }>;
  /**
   * `POST /payment` with a pain.001.001.09 body whose `GrpHdr/MsgId` equals `idempotencyKey`, also
   * sent as `X-Idempotency-Key`. 202 -> the Message-Request-Id to find the pain.002 by.
   */
  initiatePayment(xml: string, idempotencyKey: string, opts?: CallOptions): Promise<{ messageRequestId: string }>;
  /** `GET /messages/next` with `Filter-Response-Type`; undefined on 204 (nothing pending). */
  nextMessage(filter: { responseType?: LhvResponseType }, opts?: CallOptions): Promise<LhvMessage | undefined>;
  /**
   * `DELETE /messages/{id}`: marks a message processed. `deleted: false` on 404 (already deleted,
   * e.g. a retry of a delete whose answer was lost): callers treat both as done.
   */
  deleteMessage(messageResponseId: string, opts?: CallOptions): Promise<{ deleted: boolean }>;
  /** Close pooled connections. Idempotent. */
  close(): Promise<void>;
}

/** Node/undici error codes raised before any request byte could reach the server. */
const PRE_SEND_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/** TLS handshake failures: the server cannot have processed a request on that connection. */
const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT)/;
const MAX_BODY_BYTES = 10 * 1024 * 1024;

function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  let cur: unknown = err;
  for (let i = 0; i < 5 && typeof cur === 'object' && cur !== null; i++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
    cur = (cur as { cause?: unknown }).cause;
  }
  return codes;
}

function isPreSend(err: unknown): boolean {
  return errorCodes(err).some((c) => PRE_SEND_CODES.has(c) || TLS_CODE.test(c));
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? undefined : s;
}

function retryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** A short reason from an error body that is safe to log and store: error codes or masked text. */
function safeReason(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: Array<{ errorCode?: unknown; description?: unknown }> };
    const codes = (parsed.errors ?? []).map((e) => [e.errorCode, e.description].filter((x) => typeof x === 'string').join(': '));
    if (codes.length > 0) return maskIbans(codes.join('; ')).slice(0, 200);
  } catch {
    // Not JSON: fall through to plain text (the sandbox and LHV's XML errors).
  }
  const plain = body
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return maskIbans(plain).slice(0, 200) || '(no body)';
}

function assertBaseUrl(o: LhvClientOptions): URL {
  let url: URL;
  try {
    url = new URL(o.baseUrl);
  } catch {
    throw new ConfigError([`LHV baseUrl is not a URL: ${JSON.stringify(o.baseUrl)}`]);
  }
  const problems: string[] = [];
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol === 'http:' && !loopback && !o.allowInsecureHttp) {
    problems.push('LHV baseUrl uses http:// for a non-loopback host; only the local sandbox may use plain http');
  } else if (url.protocol === 'https:' && (!o.cert || !o.key)) {
    problems.push('LHV client certificate and key are required for https (mTLS)');
  } else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problems.push(`LHV baseUrl protocol ${url.protocol} is not http(s)`);
  }
  if (!(o.timeoutMs > 0)) problems.push('LHV timeoutMs must be > 0');
  if (!(Number.isInteger(o.maxConnections) && o.maxConnections > 0))
    problems.push('LHV maxConnections must be a positive integer');
  if (problems.length > 0) throw new ConfigError(problems);
  return url;
}

/**
 * Create the LHV Connect client. Only an entrypoint (composition root) should call this; library code
 * takes an {@link LhvClient}.
 * @throws ConfigError for a bad base URL, missing cert/key on https, or bad limits.
 */
export function createLhvClient(options: LhvClientOptions): LhvClient {
  const base = assertBaseUrl(options);
  const log = options.logger ?? silentLogger();
  const agent = new Agent({
    connections: options.maxConnections,
    // Connect-phase timeout is shorter than the whole deadline so a slow connect is classified as
    // "nothing sent" (retryable) rather than reaching the overall deadline (ambiguous for POSTs).
    connect: {
      cert: options.cert,
      key: options.key,
      ca: options.ca,
      rejectUnauthorized: true,
      timeout: Math.max(1, Math.min(options.timeoutMs / 2, 10_000)),
    },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    maxResponseSize: MAX_BODY_BYTES,
  });
  let closed = false;
  const prefix = base.pathname.replace(/\/+$/, '');

  interface Sent {
    readonly status: number;
    readonly headers: Dispatcher.ResponseData['headers'];
    readonly body: string;
  }

  /**
   * One HTTP exchange with a deadline. `moneyMoving` decides how a failure after the request may have
   * been sent is reported: AmbiguousError for POST /payment, RetryableError (or the caller's abort
   * reason) for safe/idempotent calls.
   */
  async function send(
    op: string,
    method: Dispatcher.HttpMethod,
    path: string,
    init: { headers?: Record<string, string>; body?: string; moneyMoving?: boolean; signal?: AbortSignal },
  ): Promise<Sent> {
    return guardedCall(
      options.guard,
      options.guard?.service ?? 'lhv',
      op,
      {
        status: (res) => res.status,
        failure: (err) => (err instanceof AmbiguousError ? 'ambiguous' : err instanceof TerminalError ? 'invalid' : 'not_sent'),
        abandoned: (err) => init.signal?.aborted === true || err instanceof TerminalError,
      },
      () => exchange(op, method, path, init),
    );
  }

  async function exchange(
    op: string,
    method: Dispatcher.HttpMethod,
    path: string,
    init: { headers?: Record<string, string>; body?: string; moneyMoving?: boolean; signal?: AbortSignal },
  ): Promise<Sent> {
    if (closed) throw new TerminalError('LHV_CLIENT_CLOSED', 'LHV client is closed');
    init.signal?.throwIfAborted();
    const deadline = AbortSignal.timeout(options.timeoutMs);
    const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
    const started = Date.now();
    try {
      const res = await request(new URL(prefix + path, base), {
        dispatcher: agent,
        method,
        headers: init.headers,
        body: init.body,
        signal,
      });
      const body = await res.body.text();
      log.debug({ op, method, path, status: res.statusCode, ms: Date.now() - started }, 'lhv call');
      return { status: res.statusCode, headers: res.headers, body };
    } catch (err) {
      const ms = Date.now() - started;
      if (isPreSend(err)) {
        log.warn({ op, method, path, ms, codes: errorCodes(err) }, 'lhv unreachable');
        throw new RetryableError(
          LhvErrorCode.Unreachable,
          `LHV ${op}: connection failed before the request was sent (${errorCodes(err).join(', ')})`,
          { cause: err },
        );
      }
      const callerAborted = init.signal?.aborted === true;
      if (init.moneyMoving) {
        log.warn({ op, method, path, ms, codes: errorCodes(err), callerAborted }, 'lhv outcome unknown');
        throw new AmbiguousError(
          LhvErrorCode.OutcomeUnknown,
          `LHV ${op}: no answer after the request was sent (${deadline.aborted ? `timeout after ${options.timeoutMs} ms` : callerAborted ? 'aborted' : errorCodes(err).join(', ') || 'connection lost'}); repeat with the same idempotency key`,
          { cause: err },
        );
      }
      if (callerAborted) throw init.signal?.reason ?? err;
      throw new RetryableError(
        LhvErrorCode.Unavailable,
        `LHV ${op}: ${deadline.aborted ? `timeout after ${options.timeoutMs} ms` : errorCodes(err).join(', ') || 'connection lost'}`,
        { cause: err },
      );
    }
  }

  /** Map a non-success status to the error taxonomy (never returns). */
  function fail(op: string, res: Sent): never {
    if (res.status === 429 || res.status === 408) {
      const after = retryAfterMs(header(res.headers, 'retry-after'));
      throw new RetryableError(
        LhvErrorCode.Throttled,
        `LHV ${op}: HTTP ${res.status}`,
        after === undefined ? {} : { retryAfterMs: after },
      );
    }
    if (res.status >= 500)
      throw new RetryableError(LhvErrorCode.Unavailable, `LHV ${op}: HTTP ${res.status}: ${safeReason(res.body)}`);
    throw new LhvRequestRejectedError(res.status, safeReason(res.body), op);
  }

  return {
    async heartbeat(opts = {}) {
      const res = await send('heartbeat', 'GET', '/heartbeat', { signal: opts.signal });
      if (res.status < 200 || res.status > 299) fail('heartbeat', res);
    },

    async heartbeatMq(opts = {}) {
      const res = await send('heartbeat/mq', options.heartbeatMqMethod ?? 'GET', '/heartbeat/mq', { signal: opts.signal });
      if (res.status !== 202) fail('heartbeat/mq', res);
      const id = header(res.headers, 'message-request-id');
      if (!id) throw new RetryableError(LhvErrorCode.BadResponse, 'LHV heartbeat/mq: 202 without Message-Request-Id');
      return { messageRequestId: id };
    },

    async initiatePayment(xml, idempotencyKey, opts = {}) {
      // The contract: MsgId IS the idempotency key. A mismatch would let a retry under the "same key"
      // carry a different MsgId, which LHV would execute as a new payment.
      if (!idempotencyKey || !xml.includes(`<MsgId>${xmlEscape(idempotencyKey)}</MsgId>`)) {
        throw new TerminalError(LhvErrorCode.InvalidPayout, 'pain.001 GrpHdr/MsgId must equal the X-Idempotency-Key');
      }
      const res = await send('payment', 'POST', '/payment', {
        headers: { 'content-type': 'application/xml', 'x-idempotency-key': idempotencyKey },
        body: xml,
        moneyMoving: true,
        signal: opts.signal,
      });
      if (res.status === 202) {
        const id = header(res.headers, 'message-request-id');
        // Accepted, but we cannot correlate the answer: repeating with the same key returns the id.
        if (!id)
          throw new AmbiguousError(
            LhvErrorCode.OutcomeUnknown,
            'LHV payment: 202 without Message-Request-Id; repeat with the same idempotency key',
          );
        log.info({ op: 'payment', idempotencyKey, messageRequestId: id }, 'lhv payment accepted');
        return { messageRequestId: id };
      }
      if (res.status >= 200 && res.status < 300) {
        throw new AmbiguousError(
          LhvErrorCode.OutcomeUnknown,
          `LHV payment: unexpected HTTP ${res.status}; repeat with the same idempotency key`,
        );
      }
      return fail('payment', res);
    },

    async nextMessage(filter, opts = {}) {
      const headers: Record<string, string> = {};
      if (filter.responseType) headers['filter-response-type'] = filter.responseType;
      const res = await send('messages/next', 'GET', '/messages/next', { headers, signal: opts.signal });
      if (res.status === 204) return undefined;
      if (res.status !== 200) fail('messages/next', res);
      const messageRequestId = header(res.headers, 'message-request-id');
      const messageResponseId = header(res.headers, 'message-response-id');
      if (!messageRequestId || !messageResponseId) {
        throw new RetryableError(
          LhvErrorCode.BadResponse,
          'LHV messages/next: 200 without Message-Request-Id or Message-Response-Id',
        );
      }
      return {
        messageRequestId,
        messageResponseId,
        responseType: header(res.headers, 'message-response-type') ?? filter.responseType ?? 'UNKNOWN',
        contentType: header(res.headers, 'content-type'),
        body: res.body,
      };
    },

    async deleteMessage(messageResponseId, opts = {}) {
      const res = await send('messages/delete', 'DELETE', `/messages/${encodeURIComponent(messageResponseId)}`, {
        signal: opts.signal,
      });
      if (res.status >= 200 && res.status < 300) return { deleted: true };
      if (res.status === 404) return { deleted: false };
      return fail('messages/delete', res);
    },

    async close() {
      if (closed) return;
      closed = true;
      await agent.close();
    },
  };
}
