/**
 * A real deadline on every AWS request attempt, chosen per operation.
 *
 * `@smithy/node-http-handler` 4.x only *logs* when `requestTimeout` passes unless
 * `throwOnRequestTimeout` is set, and nothing bounds the body read after the headers arrived. So a
 * write that DynamoDB applied but whose answer never came held its caller (and the lease it was
 * working under, and the message) for ever. This handler wraps the node handler and gives every
 * attempt one deadline that ends it with a `TimeoutError`, the error the SDK's retry strategy
 * treats as transient: the SDK then resends the *same* serialized request (same body; a
 * TransactWriteItems keeps its ClientRequestToken; an acquire keeps its acquire id), which is what
 * makes a lost answer safe to retry.
 *
 *   attempt 1 ──── sent ───── (answer lost) ───── deadline: TimeoutError ─┐
 *   attempt 2 (same body) after ≤ 200 ms ─── answered ✓                   │ one call: at most
 *   ...                                                                    │ attempts × deadline
 *   attempt N ─────────────────────────────────── deadline ─ call fails ──┘ + SDK pauses
 *
 * Which deadline (chosen per request, so sqs-consumer's own ReceiveMessage calls get theirs too):
 *
 *   SQS ReceiveMessage   its WaitTimeSeconds (20 s if it names none) + `sqsReceiveMarginMs`: a long
 *                        poll is silent for up to 20 s by design and must not be cut short
 *   any other SQS call   `sqsMs`
 *   any DynamoDB call    `dynamodbMs`
 *
 * The operation is read from the request itself (`x-amz-target` of the JSON protocols, or a query
 * body's `Action`), never from the call site.
 */
import { NodeHttpHandler, type NodeHttpHandlerOptions } from '@smithy/node-http-handler';

type Handle = NodeHttpHandler['handle'];
type SdkRequest = Parameters<Handle>[0];
type HandlerOptions = NonNullable<Parameters<Handle>[1]>;
type HandlerOutput = Awaited<ReturnType<Handle>>;

export type AwsService = 'sqs' | 'dynamodb';

/** Per-attempt deadlines of AWS calls, and how many attempts the SDK makes per call. */
export interface AwsDeadlines {
  /** One DynamoDB request attempt. */
  readonly dynamodbMs: number;
  /** One SQS request attempt, except ReceiveMessage. */
  readonly sqsMs: number;
  /** ReceiveMessage: its long-poll wait plus this. */
  readonly sqsReceiveMarginMs: number;
  /** Attempts per call, the first included (the SDK's `maxAttempts`). */
  readonly maxAttempts: number;
}

export const DEFAULT_AWS_DEADLINES: AwsDeadlines = Object.freeze({
  dynamodbMs: 5_000,
  sqsMs: 5_000,
  sqsReceiveMarginMs: 5_000,
  maxAttempts: 3,
});

/** SQS's longest long poll: what a ReceiveMessage that names no WaitTimeSeconds may wait (queue default). */
export const MAX_LONG_POLL_SEC = 20;

/**
 * The longest the SDK pauses before retry `i` (0-based) of a timed-out attempt: a random fraction
 * of 50 ms × 2^i in the installed SDK, of 200 ms × 2^i in older ones; this bound (200, 400, 800 ms,
 * …) covers both.
 */
export function sdkRetryPauseMs(i: number): number {
  return Math.min(20_000, 200 * 2 ** i);
}

/**
 * The longest one AWS call can go without an answer before it fails: every attempt runs to its
 * deadline, plus the SDK's pauses between attempts. This is what must fit below a lease.
 */
export function awsCallBudgetMs(attemptMs: number, maxAttempts: number): number {
  let pauses = 0;
  for (let i = 0; i < maxAttempts - 1; i++) pauses += sdkRetryPauseMs(i);
  return maxAttempts * attemptMs + pauses;
}

/** The largest per-attempt deadline whose call budget fits in `roomMs` (may be <= 0 if none does). */
export function largestAttemptMsWithin(roomMs: number, maxAttempts: number): number {
  return Math.floor((roomMs - awsCallBudgetMs(0, maxAttempts)) / maxAttempts);
}

/** The operation of an AWS request: `x-amz-target`'s suffix (JSON protocols) or a query body's Action. */
export function operationOf(request: Pick<SdkRequest, 'headers' | 'body'>): string | undefined {
  const headers = request.headers ?? {};
  const target = headers['x-amz-target'] ?? headers['X-Amz-Target'];
  if (target) return target.slice(target.lastIndexOf('.') + 1);
  const body = typeof request.body === 'string' ? request.body : '';
  return /(?:^|&)Action=([A-Za-z]+)/.exec(body)?.[1];
}

/** The WaitTimeSeconds a ReceiveMessage request names, or SQS's maximum if it names none. */
export function longPollSecOf(request: Pick<SdkRequest, 'body'>): number {
  const body = typeof request.body === 'string' ? request.body : '';
  let wait: unknown;
  if (body.startsWith('{')) {
    try {
      wait = (JSON.parse(body) as { WaitTimeSeconds?: unknown }).WaitTimeSeconds;
    } catch {
      wait = undefined;
    }
  } else {
    wait = /(?:^|&)WaitTimeSeconds=(\d+)/.exec(body)?.[1];
  }
  const n = Number(wait);
  return wait !== undefined && Number.isFinite(n) && n >= 0 ? Math.min(n, MAX_LONG_POLL_SEC) : MAX_LONG_POLL_SEC;
}

/** The deadline of one attempt of `request` to `service`. */
export function deadlineFor(service: AwsService, request: Pick<SdkRequest, 'headers' | 'body'>, deadlines: AwsDeadlines): number {
  if (service === 'dynamodb') return deadlines.dynamodbMs;
  if (operationOf(request) === 'ReceiveMessage') return longPollSecOf(request) * 1000 + deadlines.sqsReceiveMarginMs;
  return deadlines.sqsMs;
}

/** The longest deadline any request to `service` can get (sizes the socket idle timeout). */
export function longestDeadlineMs(service: AwsService, deadlines: AwsDeadlines): number {
  return service === 'dynamodb'
    ? deadlines.dynamodbMs
    : Math.max(deadlines.sqsMs, MAX_LONG_POLL_SEC * 1000 + deadlines.sqsReceiveMarginMs);
}

function timeoutError(ms: number, operation: string | undefined): Error {
  // name TimeoutError: the SDK's retry strategy classifies it as transient and retries the request.
  return Object.assign(new Error(`${operation ?? 'AWS request'}: no complete answer within its ${ms} ms deadline`), {
    name: 'TimeoutError',
    code: 'ETIMEDOUT',
  });
}

/** What the deadline handler wraps: the node handler (or a test double of its `handle`). */
export type InnerHandler = Pick<NodeHttpHandler, 'handle'> & Partial<Pick<NodeHttpHandler, 'updateHttpClientConfig' | 'httpHandlerConfigs' | 'destroy'>>;

/**
 * An SDK request handler: `inner` (a node handler built with `throwOnRequestTimeout`) with a
 * per-request deadline from `deadlineOf`, and the same deadline enforced on the response body
 * (the node handler's timeout stops once the headers arrived).
 */
export class DeadlineRequestHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };
  readonly #inner: InnerHandler;
  readonly #deadlineOf: (request: SdkRequest) => number;

  constructor(inner: InnerHandler, deadlineOf: (request: SdkRequest) => number) {
    this.#inner = inner;
    this.#deadlineOf = deadlineOf;
  }

  async handle(request: SdkRequest, options: HandlerOptions = {}): Promise<HandlerOutput> {
    const startedAt = Date.now();
    const chosen = this.#deadlineOf(request);
    // A caller's own, shorter timeout wins; a longer one cannot lift the deadline.
    const ms = options.requestTimeout && options.requestTimeout > 0 ? Math.min(options.requestTimeout, chosen) : chosen;
    const out = await this.#inner.handle(request, { ...options, requestTimeout: ms });
    const body = out.response.body as (NodeJS.ReadableStream & { destroy?: (e: Error) => void }) | undefined;
    if (body && typeof body.destroy === 'function' && typeof body.on === 'function') {
      const left = ms - (Date.now() - startedAt);
      const timer = setTimeout(() => body.destroy?.(timeoutError(ms, operationOf(request))), Math.max(0, left));
      timer.unref();
      const done = () => clearTimeout(timer);
      body.on('end', done);
      body.on('close', done);
      body.on('error', done);
    }
    return out;
  }

  updateHttpClientConfig(key: keyof NodeHttpHandlerOptions, value: NodeHttpHandlerOptions[typeof key]): void {
    this.#inner.updateHttpClientConfig?.(key, value);
  }

  httpHandlerConfigs(): NodeHttpHandlerOptions {
    return this.#inner.httpHandlerConfigs?.() ?? {};
  }

  destroy(): void {
    this.#inner.destroy?.();
  }
}

/**
 * The request handler of one service's client: keep-alive agents, a connect timeout, a socket idle
 * timeout (the longest deadline of the service: a long poll is silent by design) and the
 * per-operation deadlines above.
 */
export function createDeadlineHandler(
  service: AwsService,
  deadlines: AwsDeadlines,
  agents: Pick<NodeHttpHandlerOptions, 'httpAgent' | 'httpsAgent'>,
): DeadlineRequestHandler {
  const shortest = service === 'dynamodb' ? deadlines.dynamodbMs : deadlines.sqsMs;
  const inner = new NodeHttpHandler({
    ...agents,
    connectionTimeout: Math.min(3_000, shortest),
    // Overridden per request; throwOnRequestTimeout makes it an error instead of a log line.
    requestTimeout: shortest,
    throwOnRequestTimeout: true,
    socketTimeout: longestDeadlineMs(service, deadlines),
  });
  return new DeadlineRequestHandler(inner, (request) => deadlineFor(service, request, deadlines));
}
