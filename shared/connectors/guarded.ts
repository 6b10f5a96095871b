import type { Admission, CircuitBreaker } from '../core/breaker.js';
import type { ResilienceMetrics } from '../ops/resilience-metrics.js';

/** What an outbound client needs to put its far side behind a breaker and measure every call. */
export interface OutboundGuard {
  /** Calls are refused (DependencyUnavailableError, nothing sent) while it is open. */
  readonly breaker?: CircuitBreaker;
  /** Metrics label of the far side (`token-service`, `stripe`, `lhv`, ...). */
  readonly service?: string;
  readonly metrics?: ResilienceMetrics;
}

/** How one client reads its own answers and failures, for the breaker and the status label. */
export interface OutboundVerdicts<R> {
  /** The HTTP status of an answer. */
  status(res: R): number;
  /** A Retry-After hint on an "unavailable" answer, in ms. */
  retryAfterMs?(res: R): number | undefined;
  /** The status label of a failure: `not_sent`, `ambiguous` or `invalid`. */
  failure(err: unknown): 'not_sent' | 'ambiguous' | 'invalid';
  /** A failure that says nothing about the far side (our own abort, an invalid request). */
  abandoned(err: unknown): boolean;
}

/** An answer that says "the far side is unavailable": 5xx, 429 (too many requests), 408. */
export const isUnavailableStatus = (status: number): boolean => status >= 500 || status === 429 || status === 408;

/**
 * Send one outbound request through `guard`: admitted by the breaker (or refused, counted as
 * `breaker_open`), its answer or failure reported to the breaker, and counted and timed in
 * `payfleet_outbound_requests_total` / `payfleet_outbound_request_duration_seconds`.
 */
export async function guardedCall<R>(
  guard: OutboundGuard | undefined,
  service: string,
  operation: string,
  verdicts: OutboundVerdicts<R>,
  send: () => Promise<R>,
): Promise<R> {
  const { breaker, metrics } = guard ?? {};
  const count = (status: string) => metrics?.outboundRequests.inc({ service, operation, status });
  let admission: Admission | undefined;
  try {
    admission = breaker?.admit();
  } catch (err) {
    count('breaker_open');
    throw err;
  }
  const started = performance.now();
  try {
    const res = await send();
    const status = verdicts.status(res);
    count(String(status));
    if (admission) {
      if (isUnavailableStatus(status)) {
        const retryAfterMs = verdicts.retryAfterMs?.(res);
        breaker?.failed(admission, retryAfterMs !== undefined ? { retryAfterMs } : {});
      } else breaker?.succeeded(admission);
    }
    return res;
  } catch (err) {
    count(verdicts.failure(err));
    if (admission) {
      if (verdicts.abandoned(err)) breaker?.abandoned(admission);
      else breaker?.failed(admission);
    }
    throw err;
  } finally {
    metrics?.outboundDuration.observe({ service, operation }, (performance.now() - started) / 1000);
  }
}
