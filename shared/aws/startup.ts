/**
 * Calls a worker makes while it starts (its queue's URL, the queue's redrive policy). No lease and
 * no message bounds them, so an answer that is slow or busy is waited for, a few times with
 * back-off, instead of ending the process: the per-attempt deadlines derived from the lease are
 * meant for calls made while a message is held, and a short lease makes them short (233 ms with a
 * 2 s lease). What waiting cannot mend fails at once with its own error: nothing listening at the
 * endpoint, a missing queue, refused credentials or permissions.
 */
import pRetry from 'p-retry';
import { NO_CONNECTION_CODES } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { isAwsUnavailable } from './guard.js';


/** Is this failure worth waiting out at start-up? Timeouts, 5xx and throttling are; anything else is not. */
export function worthWaitingFor(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // No connection was made: a wrong endpoint, not a slow one.
  if (typeof code === 'string' && NO_CONNECTION_CODES.has(code)) return false;
  return isAwsUnavailable(err);
}

export interface StartupPatience {
  readonly log?: Pick<Logger, 'warn'>;
  /** Tries after the first. @default 5 */
  readonly retries?: number;
  /** First pause, doubling. @default 250 */
  readonly minTimeoutMs?: number;
  /** Longest pause. @default 2000 */
  readonly maxTimeoutMs?: number;
}

/** Run a start-up call, waiting out slow or busy answers (about 6 s of pauses by default). */
export function atStartup<T>(what: string, call: () => Promise<T>, o: StartupPatience = {}): Promise<T> {
  return pRetry(call, {
    retries: o.retries ?? 5,
    minTimeout: o.minTimeoutMs ?? 250,
    maxTimeout: o.maxTimeoutMs ?? 2000,
    shouldRetry: ({ error }) => worthWaitingFor(error),
    onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
      if (retriesLeft > 0 && worthWaitingFor(error)) o.log?.warn({ err: error, attempt: attemptNumber }, `${what}: no answer yet; trying again`);
    },
  });
}
