import type { Admission, CircuitBreaker } from '../core/breaker.js';
import type { ResilienceMetrics } from '../ops/resilience-metrics.js';

/** AWS error names that mean "the service is overloaded or failing", not "your request is wrong". */
const UNAVAILABLE_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'RequestThrottled',
  'TimeoutError',
]);

/**
 * Does this SDK error say the service is unavailable? Transport failures (nothing came back:
 * refused, reset, timed out), 5xx and throttling do. Any other answer — a failed condition, a
 * cancelled transaction, a validation error, a missing table — proves the service works.
 */
export function isAwsUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return true;
  const e = err as { name?: unknown; $metadata?: { httpStatusCode?: number } };
  if (typeof e.name === 'string' && UNAVAILABLE_NAMES.has(e.name)) return true;
  const status = e.$metadata?.httpStatusCode;
  if (typeof status !== 'number') return true;
  return status >= 500 || status === 429;
}

function isAbort(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError';
}

interface MiddlewareClient {
  middlewareStack: { add: (mw: never, opts: { step: 'initialize'; name: string; priority?: 'high' | 'normal' | 'low' }) => void };
}

/**
 * Put an SDK client behind a circuit breaker: a middleware at the `initialize` step (outside the
 * SDK's own retries, so one logical call is one verdict) refuses calls while the breaker is open
 * and reports each call's outcome to it, and times every call into `payfleet_aws_call_duration_seconds`.
 */
export function guardAwsClient(client: MiddlewareClient, service: string, breaker: CircuitBreaker, metrics?: ResilienceMetrics): void {
  const mw =
    (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) =>
    async (args: unknown): Promise<unknown> => {
      const command = context.commandName ?? 'unknown';
      const started = performance.now();
      const observe = (outcome: string) =>
        metrics?.awsCallDuration.observe({ service, command, outcome }, (performance.now() - started) / 1000);
      let admission: Admission | undefined;
      try {
        admission = breaker.admit();
      } catch (err) {
        observe('breaker_open');
        throw err;
      }
      try {
        const out = await next(args);
        breaker.succeeded(admission);
        observe('ok');
        return out;
      } catch (err) {
        if (isAbort(err)) breaker.abandoned(admission);
        else if (isAwsUnavailable(err)) breaker.failed(admission);
        else breaker.succeeded(admission);
        observe((err as { name?: string }).name === 'TimeoutError' ? 'timeout' : 'error');
        throw err;
      }
    };
  client.middlewareStack.add(mw as never, { step: 'initialize', name: `payfleetBreaker-${service}`, priority: 'high' });
}
