/**
 * Outbound HTTP for connectors: one keep-alive pool per far side, a deadline per request, and the
 * one distinction a payments client cannot do without — did the request reach the server?
 *
 * ```ts
 * const http = createHttpClient({ baseUrl: 'https://api.stripe.com', timeoutMs: 20_000, maxConnections: 32 });
 * try {
 *   const res = await http.request({ method: 'POST', path: '/v1/payment_intents', headers, body, signal });
 *   // res.status, res.headers (lower-case keys), res.body (utf-8 text), res.bodyBytes
 * } catch (err) {
 *   if (err instanceof HttpNotSentError) ...   // nothing reached the server: retry is safe (RetryableError)
 *   if (err instanceof HttpAmbiguousError) ... // it may have been processed: look it up (AmbiguousError)
 * }
 * await http.close();
 * ```
 *
 * Any HTTP status, 5xx included, is a *response* and is returned, never thrown: its meaning is the
 * connector's to decide. Only transport failures throw, classified by *when* they happened:
 *
 *   request ──> [waiting for one of maxConnections] ──> [connect + TLS] ──> onRequestStart ──> write ──> response
 *   |<------------------------ HttpNotSentError ------------------------->|<----- HttpAmbiguousError ----->|
 *
 * The boundary is undici's `onRequestStart` hook, called on a connected socket just before the
 * request line is written. Failing before it (ECONNREFUSED, DNS, connect timeout, TLS errors,
 * deadline or abort while waiting for a connection) means no byte left the process. Anything after it (headers or
 * body timeout, reset, "other side closed", abort) may have been processed by the server.
 *
 * Once a request has been reported as not sent it is also guaranteed never to be sent later: one
 * still waiting for a connection leaves the queue, one still connecting is aborted at
 * `onRequestStart`, before writing. The deadline (`timeoutMs`) covers the wait for a connection.
 *
 * TLS verification always stays on; `tls` only adds a CA or a client certificate (mTLS).
 */
import { Agent, type Dispatcher } from 'undici';
import type { z } from 'zod';
import { AmbiguousError, RetryableError, TerminalError } from '../errors.js';
import { guardedCall, type OutboundGuard, type OutboundVerdicts } from './guarded.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * With `breaker`, requests are refused (DependencyUnavailableError, nothing sent) while it is open,
 * and every outcome feeds it: 5xx, 429, 408 and transport failures count against the far side, any
 * other answer for it. `service` (@default the base URL's host) labels the outbound metrics.
 */
export interface HttpClientOptions extends OutboundGuard {
  /** Origin plus optional base path, e.g. `https://api.stripe.com` or `https://host/jsp/service.jsp`. */
  readonly baseUrl: string;
  /** Deadline for a whole request, queueing and connecting included. @default 10_000 */
  readonly timeoutMs?: number;
  /** TCP + TLS connect timeout; failing it means "not sent". @default min(timeoutMs, 5_000) */
  readonly connectTimeoutMs?: number;
  /** Keep-alive connections to the origin (the pool size). @default 16 */
  readonly maxConnections?: number;
  /** Idle keep-alive before the client closes a socket; keep it below the server's. @default 4_000 */
  readonly keepAliveTimeoutMs?: number;
  /** A larger response is abandoned (ambiguous). @default 1 MiB */
  readonly maxResponseBytes?: number;
  /** Extra trust anchors or a client certificate. Verification cannot be turned off. */
  readonly tls?: {
    readonly ca?: string | Buffer;
    readonly cert?: string | Buffer;
    readonly key?: string | Buffer;
    readonly passphrase?: string;
  };
  /** Use this dispatcher instead of creating an Agent (not closed by `close()`). */
  readonly dispatcher?: Dispatcher;
}

/** What a connector passes through to its HTTP client to put the far side behind a breaker. */
export type HttpGuard = OutboundGuard;

export interface HttpRequest {
  readonly method: HttpMethod;
  /** Appended to the base URL's path; starts with `/` (may carry a query string). Empty for the base itself. */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
  /** Overrides the client's deadline for this request. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Metrics label, e.g. `authorise` (never an id). @default the method */
  readonly operation?: string;
}

export interface HttpResponse {
  readonly status: number;
  /** Lower-case names; repeated headers joined with `, `. */
  readonly headers: Readonly<Record<string, string>>;
  /** The body decoded as UTF-8. */
  readonly body: string;
  readonly bodyBytes: Buffer;
}

export interface HttpClient {
  readonly baseUrl: string;
  /** Send one request. Resolves with any HTTP status; rejects only with the errors below. */
  request(req: HttpRequest): Promise<HttpResponse>;
  /** Close idle sockets and the pool (idempotent). In-flight requests end by their deadlines. */
  close(): Promise<void>;
}

interface TransportDetail {
  readonly cause?: unknown;
  /** The caller's AbortSignal fired (shutdown), as opposed to a timeout or network failure. */
  readonly aborted?: boolean;
  /** The request's deadline passed. */
  readonly timedOut?: boolean;
}

/** No byte of the request left the process: retrying it cannot duplicate an effect. */
export class HttpNotSentError extends RetryableError {
  readonly aborted: boolean;
  readonly timedOut: boolean;
  constructor(message: string, detail: TransportDetail = {}) {
    super('HTTP_NOT_SENT', message, { cause: detail.cause });
    this.aborted = detail.aborted ?? false;
    this.timedOut = detail.timedOut ?? false;
  }
}

/** The request was (at least partly) written and no complete answer came back: it may have taken effect. */
export class HttpAmbiguousError extends AmbiguousError {
  readonly aborted: boolean;
  readonly timedOut: boolean;
  constructor(message: string, detail: TransportDetail = {}) {
    super('HTTP_AMBIGUOUS', message, { cause: detail.cause });
    this.aborted = detail.aborted ?? false;
    this.timedOut = detail.timedOut ?? false;
  }
}

/**
 * Parse a `Retry-After` header (delta-seconds or HTTP-date) into milliseconds from `now`.
 * Undefined when absent or unparseable; never negative.
 */
export function parseRetryAfterMs(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Create a client bound to one origin. Only composition roots and connector factories call this. */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  const base = new URL(options.baseUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new TypeError(`baseUrl must be http(s), got ${base.protocol}`);
  const origin = base.origin;
  const basePath = base.pathname.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxConnections = options.maxConnections ?? 16;
  const maxResponseBytes = options.maxResponseBytes ?? 1024 * 1024;
  const ownsDispatcher = options.dispatcher === undefined;
  const dispatcher =
    options.dispatcher ??
    new Agent({
      connections: maxConnections,
      // One request per socket at a time: with pipelining a failure of the head request would
      // make every request behind it ambiguous too.
      pipelining: 1,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 4_000,
      keepAliveMaxTimeout: Math.max(options.keepAliveTimeoutMs ?? 4_000, 4_000),
      connect: {
        timeout: options.connectTimeoutMs ?? Math.min(timeoutMs, 5_000),
        rejectUnauthorized: true,
        ...(options.tls ?? {}),
      },
    });
  // Requests wait for a connection here rather than in undici's queue: a request abandoned while
  // queued in undici is only dropped when it reaches a socket, and undici destroys that socket to
  // drop it. Under overload that turns every expired request into a reconnect.
  const slots = new Slots(maxConnections);
  let closed: Promise<void> | undefined;
  const service = options.service ?? base.hostname;

  return {
    baseUrl: options.baseUrl,
    request(req) {
      return guardedCall(options, service, req.operation ?? req.method, HTTP_VERDICTS, () =>
        send(dispatcher, slots, origin, basePath, req, req.timeoutMs ?? timeoutMs, maxResponseBytes),
      );
    },
    close() {
      closed ??= ownsDispatcher ? dispatcher.close().catch(() => undefined) : Promise.resolve();
      return closed;
    },
  };
}

/** How this client's answers and failures read for the breaker (see guarded.ts). */
const HTTP_VERDICTS: OutboundVerdicts<HttpResponse> = {
  status: (res) => res.status,
  retryAfterMs: (res) => parseRetryAfterMs(res.headers['retry-after']),
  failure: (err) => (err instanceof HttpAmbiguousError ? 'ambiguous' : err instanceof HttpNotSentError ? 'not_sent' : 'invalid'),
  abandoned: (err) => !(err instanceof HttpAmbiguousError || err instanceof HttpNotSentError) || err.aborted,
};

/** A counting semaphore whose waiters can leave the queue. */
class Slots {
  #free: number;
  readonly #waiters: Array<() => void> = [];
  constructor(size: number) {
    this.#free = size;
  }
  /** Calls `onReady` when a slot is free (maybe synchronously); the returned function leaves the queue. */
  acquire(onReady: () => void): () => void {
    if (this.#free > 0) {
      this.#free -= 1;
      onReady();
      return () => undefined;
    }
    this.#waiters.push(onReady);
    return () => {
      const i = this.#waiters.indexOf(onReady);
      if (i !== -1) this.#waiters.splice(i, 1);
    };
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free += 1;
  }
}

function send(
  dispatcher: Dispatcher,
  slots: Slots,
  origin: string,
  basePath: string,
  req: HttpRequest,
  timeoutMs: number,
  maxResponseBytes: number,
): Promise<HttpResponse> {
  return new Promise<HttpResponse>((resolve, reject) => {
    const what = `${req.method} ${origin}${basePath}${stripQuery(req.path)}`;
    let dispatched = false; // handed to undici (holds a slot until undici reports an end)
    let started = false; // onRequestStart ran without us aborting: bytes may be on the wire
    let settled = false;
    let released = false;
    let stopReason: { message: string; aborted: boolean; timedOut: boolean } | undefined;
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let headers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    let size = 0;
    let leaveQueue: () => void = () => undefined;

    const release = () => {
      if (released) return;
      released = true;
      slots.release();
    };
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      outcome();
    };
    const fail = (err: unknown, phaseStarted: boolean) => {
      const detail = { cause: err, aborted: stopReason?.aborted ?? false, timedOut: stopReason?.timedOut ?? false };
      const why = stopReason?.message ?? describe(err);
      finish(() =>
        reject(
          phaseStarted
            ? new HttpAmbiguousError(`${what}: ${why} after the request was sent`, detail)
            : new HttpNotSentError(`${what}: ${why} before the request was sent`, detail),
        ),
      );
    };
    // Deadline or caller abort. Before the request started we can answer "not sent" right away and
    // make sure it never goes out; after it started only undici can stop it, and the answer is ambiguous.
    const stop = (message: string, aborted: boolean, timedOut: boolean) => {
      if (settled || stopReason) return;
      stopReason = { message, aborted, timedOut };
      if (!dispatched) leaveQueue();
      if (started && controller) controller.abort(new Error(message));
      else if (!started) fail(undefined, false);
    };
    const onAbort = () => stop('aborted by caller', true, false);
    const timer = setTimeout(() => stop(`timed out after ${timeoutMs} ms`, false, true), timeoutMs);
    if (req.signal?.aborted) {
      onAbort();
      return;
    }
    req.signal?.addEventListener('abort', onAbort, { once: true });

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(ctrl) {
        controller = ctrl;
        // Already reported as not sent (deadline/abort while connecting): stop before writing a byte.
        if (stopReason || settled) {
          ctrl.abort(new Error(stopReason?.message ?? 'request abandoned'));
          return;
        }
        started = true;
      },
      onResponseStart(_ctrl, statusCode, rawHeaders) {
        status = statusCode;
        headers = flattenHeaders(rawHeaders);
      },
      onResponseData(ctrl, chunk) {
        size += chunk.length;
        if (size > maxResponseBytes) {
          stopReason = { message: `response larger than ${maxResponseBytes} bytes`, aborted: false, timedOut: false };
          ctrl.abort(new Error(stopReason.message));
          return;
        }
        chunks.push(chunk);
      },
      onResponseEnd() {
        release();
        const bodyBytes = Buffer.concat(chunks);
        finish(() => resolve({ status, headers, body: bodyBytes.toString('utf8'), bodyBytes }));
      },
      onResponseError(_ctrl, err) {
        release();
        fail(err, started);
      },
    };

    leaveQueue = slots.acquire(() => {
      if (settled) {
        // Granted after we gave up (cannot happen once the waiter left the queue; kept for safety).
        release();
        return;
      }
      dispatched = true;
      try {
        dispatcher.dispatch(
          {
            origin,
            path: `${basePath}${req.path}`,
            method: req.method,
            headers: req.headers ? { ...req.headers } : {},
            body: req.body === undefined ? null : typeof req.body === 'string' ? req.body : Buffer.from(req.body),
            // Backstops only: our own timer above is the deadline that decides the classification.
            headersTimeout: timeoutMs + 1_000,
            bodyTimeout: timeoutMs + 1_000,
          },
          handler,
        );
      } catch (err) {
        release();
        finish(() => reject(invalid(what, err)));
      }
    });
  }).catch((err: unknown) => {
    // undici reports bad arguments (a header with CR/LF, a bad method) through onResponseError;
    // those are programming errors that no retry can fix.
    if (err instanceof HttpNotSentError && codeOf(err.cause) === 'UND_ERR_INVALID_ARG')
      throw invalid(`${req.method} ${req.path}`, err.cause);
    throw err;
  });
}

/**
 * `application/x-www-form-urlencoded` with Rails/Stripe-style nesting: objects as `a[b][c]=v`, arrays as
 * `a[0]=v`; undefined and null skipped. Brackets are left unescaped, as Stripe's own libraries send them.
 */
export function formEncode(params: Record<string, unknown>): string {
  const parts: string[] = [];
  const walk = (prefix: string, value: unknown): void => {
    if (value === undefined || value === null) return;
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) walk(`${prefix}[${i}]`, v);
    } else if (typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(prefix ? `${prefix}[${k}]` : k, v);
    else
      parts.push(`${encodeURIComponent(prefix).replace(/%5B/g, '[').replace(/%5D/g, ']')}=${encodeURIComponent(String(value))}`);
  };
  walk('', params);
  return parts.join('&');
}

function invalid(what: string, err: unknown): TerminalError {
  return new TerminalError('HTTP_INVALID_REQUEST', `${what}: invalid request (${describe(err)})`, { cause: err });
}

function stripQuery(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A short reason from a transport error: its code and message, which never hold headers or bodies. */
function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = codeOf(err);
    return code && !err.message.includes(code) ? `${code} ${err.message}` : err.message;
  }
  return String(err);
}

function flattenHeaders(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** A response body validated against `schema`, or undefined when it is not JSON or not of that shape. */
export function parseJsonBody<T>(schema: z.ZodType<T>, body: string): T | undefined {
  try {
    const r = schema.safeParse(JSON.parse(body));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
