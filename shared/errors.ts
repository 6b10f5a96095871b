/**
 * One error base, three branches, one classifier.
 *
 * - {@link RetryableError}: nothing happened that matters; trying again later is safe
 *   (throttling, 5xx, connection refused before the request went out, transaction conflicts).
 * - {@link TerminalError}: trying again cannot help (bad input, decline, token expired, mismatch).
 * - {@link AmbiguousError}: the request went out and no answer came back; it may have taken
 *   effect. The caller must look the result up (status sync / idempotent replay) before any retry.
 *
 * Never classify by message text: classify by class, by SDK error `name`, by HTTP status, or by
 * Node's `code` on system errors.
 */

/** Codes that appear in `payfleet-error-code` on dead letters (docs/contract.md §6). Open-ended. */
export type ErrorCode =
  | 'INVALID_MESSAGE'
  | 'UNKNOWN_PROCESSOR'
  | 'TOKEN_UNKNOWN'
  | 'TOKEN_EXPIRED'
  | 'AMOUNT_MISMATCH'
  | 'RETRIES_EXHAUSTED'
  | 'NOT_CAPTURABLE'
  | 'PROCESSOR_REJECTED'
  | 'CONFLICT'
  | (string & {});

export type ErrorKind = 'retryable' | 'terminal' | 'ambiguous';

export abstract class PayfleetError extends Error {
  abstract readonly kind: ErrorKind;
  /** Machine-readable code; for terminal errors this is what the DLQ carries. */
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class RetryableError extends PayfleetError {
  readonly kind = 'retryable' as const;
  /** A hint from the far side (Retry-After), in milliseconds. */
  readonly retryAfterMs: number | undefined;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(code, message, options);
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export class TerminalError extends PayfleetError {
  readonly kind = 'terminal' as const;
}

export class AmbiguousError extends PayfleetError {
  readonly kind = 'ambiguous' as const;
}

/** A message body that is not JSON or fails its schema. Terminal, code `INVALID_MESSAGE`. */
export class MessageParseError extends TerminalError {
  readonly messageId: string | undefined;
  readonly path: string | undefined;
  constructor(message: string, options?: { cause?: unknown; messageId?: string; path?: string }) {
    super('INVALID_MESSAGE', message, options);
    this.messageId = options?.messageId;
    this.path = options?.path;
  }
}

/** Configuration that cannot start a process. `problems` holds one line per bad variable. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** AWS SDK error names that mean "try again later". */
const RETRYABLE_AWS_NAMES = new Set([
  'ThrottlingException',
  'Throttling',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'TransactionConflictException',
  'TransactionInProgressException',
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'RequestThrottled',
  'KMSThrottlingException',
  'TimeoutError',
]);

/** Node system error codes that happen before any byte of a request could have been processed. */
export const NO_CONNECTION_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/**
 * Classify any thrown value. Unknown errors are retryable: bounded retries end in the DLQ with
 * `RETRIES_EXHAUSTED`, which loses nothing, whereas guessing "terminal" could drop a good message.
 */
export function classify(err: unknown): ErrorKind {
  if (err instanceof PayfleetError) return err.kind;
  if (typeof err !== 'object' || err === null) return 'retryable';
  const e = err as { name?: unknown; code?: unknown; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  if (typeof e.name === 'string' && RETRYABLE_AWS_NAMES.has(e.name)) return 'retryable';
  if (e.$retryable) return 'retryable';
  if (typeof e.code === 'string' && NO_CONNECTION_CODES.has(e.code)) return 'retryable';
  const status = e.$metadata?.httpStatusCode;
  if (typeof status === 'number' && status >= 400 && status < 500 && status !== 429) return 'terminal';
  return 'retryable';
}

/** Wrap an unknown error so callers can always read `kind` and `code`. */
export function toPayfleetError(err: unknown): PayfleetError {
  if (err instanceof PayfleetError) return err;
  const kind = classify(err);
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  if (kind === 'terminal') return new TerminalError('UNEXPECTED', message, { cause: err });
  return new RetryableError('TRANSIENT', message, { cause: err });
}
