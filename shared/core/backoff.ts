/**
 * Exponential backoff with "equal jitter": half the window is fixed, half random. Full jitter
 * spreads retries best, but can return ~0 for a late attempt; equal jitter keeps every delay at
 * least half its exponential step, so operators see backoff grow while retries still spread.
 */
export interface BackoffPolicy {
  /** First delay. @default 1000 */
  readonly baseMs: number;
  /** Cap on any delay. @default 300000 (5 minutes) */
  readonly maxMs: number;
}

export function backoffMs(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  const half = exp / 2;
  return Math.round(half + random() * half);
}
