/**
 * Client for the Payment Token Service (docs/contract.md §7):
 * `POST {baseUrl}/v1/tokens/{paymentTokenId}/decrypt` -> `{"card":{...}}`.
 *
 *   200                      -> SensitiveCard (body validated; an invalid body is retryable, never echoed)
 *   404                      -> TerminalError('TOKEN_UNKNOWN')
 *   410                      -> TerminalError('TOKEN_EXPIRED')
 *   429                      -> RetryableError('TOKEN_SERVICE_THROTTLED', retryAfterMs from Retry-After)
 *   5xx, 401/403, timeouts,
 *   connection errors        -> RetryableError
 *   other 4xx                -> TerminalError('TOKEN_SERVICE_REJECTED')
 *
 * Decrypt has no side effect, so a timeout after the request was sent is simply retryable — unlike a
 * processor call, there is nothing to look up. 401/403 are retryable on purpose: a wrong or rotated
 * key is a deployment problem affecting every message, and bounded retries (ending in the DLQ with
 * RETRIES_EXHAUSTED, redrivable) are kinder than dead-lettering the whole queue at once.
 *
 * No error message carries the response body or the API key.
 */
import { z } from 'zod';
import { RetryableError, TerminalError } from '../errors.js';
import {
  createHttpClient,
  HttpAmbiguousError,
  HttpNotSentError,
  parseRetryAfterMs,
  type HttpClient,
  type HttpGuard,
  type HttpResponse,
} from './http.js';
import { SensitiveCard } from './sensitive-card.js';

export interface TokenServiceClientOptions {
  /** e.g. `PAYMENT_TOKEN_SERVICE_URL`. */
  readonly baseUrl: string;
  /** `PAYMENT_TOKEN_SERVICE_API_KEY`. */
  readonly apiKey: string;
  /** Deadline per decrypt call. @default 5_000 */
  readonly timeoutMs?: number;
  /** Keep-alive connections to the service. @default 16 */
  readonly maxConnections?: number;
  /** Connect timeout. @default min(timeoutMs, 2_000) */
  readonly connectTimeoutMs?: number;
  /** Inject a client (tests); when given, the options above for the pool are ignored. */
  readonly http?: HttpClient;
  /** Circuit breaker and metrics for the service's calls. */
  readonly guard?: HttpGuard;
}

export interface TokenServiceClient {
  /**
   * Decrypt a payment token. The caller owns the returned card: call `dispose()` once the
   * processor call is done.
   */
  decrypt(paymentTokenId: string, signal?: AbortSignal): Promise<SensitiveCard>;
  /**
   * Prove the service answers, with no side effect: a decrypt of a token that never exists. Any
   * HTTP answer resolves (404 is the healthy one); only a transport failure rejects. The circuit
   * breaker's half-open trial; its breaker learns the verdict from the guarded HTTP client.
   */
  probe(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

const decryptResponseSchema = z.object({
  card: z.object({
    number: z.string().regex(/^\d{12,19}$/),
    exp_month: z.number().int().min(1).max(12),
    exp_year: z.number().int().min(2000).max(2100),
    cvc: z.string().regex(/^\d{3,4}$/),
    cardholder_name: z.string().nullish(),
  }),
});

/** Create a client with its own keep-alive pool. */
export function createTokenServiceClient(options: TokenServiceClientOptions): TokenServiceClient {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const http =
    options.http ??
    createHttpClient({
      baseUrl: options.baseUrl,
      timeoutMs,
      connectTimeoutMs: options.connectTimeoutMs ?? Math.min(timeoutMs, 2_000),
      maxConnections: options.maxConnections ?? 16,
      ...options.guard,
    });
  const authorization = `Bearer ${options.apiKey}`;

  return {
    async decrypt(paymentTokenId, signal) {
      if (paymentTokenId.length === 0) throw new TerminalError('TOKEN_UNKNOWN', 'empty payment token id');
      let res: HttpResponse;
      try {
        res = await http.request({
          method: 'POST',
          path: `/v1/tokens/${encodeURIComponent(paymentTokenId)}/decrypt`,
          headers: { authorization, accept: 'application/json' },
          signal,
          operation: 'decrypt',
        });
      } catch (err) {
        // Not sent or ambiguous alike: decrypting twice is harmless.
        if (err instanceof HttpNotSentError || err instanceof HttpAmbiguousError) {
          throw new RetryableError('TOKEN_SERVICE_UNAVAILABLE', `token service: ${err.message}`, { cause: err });
        }
        throw err;
      }
      return toCard(res);
    },
    async probe(signal) {
      // The decrypt endpoint itself, for a token that never exists: 404 is the healthy answer, and
      // a service whose decrypt path fails (5xx) fails the probe too.
      await http.request({
        method: 'POST',
        path: '/v1/tokens/payfleet-readiness-probe/decrypt',
        headers: { authorization, accept: 'application/json' },
        operation: 'probe',
        ...(signal ? { signal } : {}),
      });
    },
    close() {
      return http.close();
    },
  };
}

function toCard(res: HttpResponse): SensitiveCard {
  const status = res.status;
  if (status === 200) {
    let json: unknown;
    try {
      json = JSON.parse(res.body);
    } catch {
      // No `cause`: a SyntaxError's message quotes the body, which may hold card data.
      throw new RetryableError('TOKEN_SERVICE_BAD_RESPONSE', 'token service returned 200 with a body that is not JSON');
    }
    const parsed = decryptResponseSchema.safeParse(json);
    if (!parsed.success) {
      // Paths only, never values or the zod error itself (its issues can carry the input).
      const where = parsed.error.issues.map((i) => i.path.join('.') || '(body)').join(', ');
      throw new RetryableError('TOKEN_SERVICE_BAD_RESPONSE', `token service returned 200 with an invalid body (at ${where})`);
    }
    const c = parsed.data.card;
    return new SensitiveCard({
      number: c.number,
      exp_month: c.exp_month,
      exp_year: c.exp_year,
      cvc: c.cvc,
      cardholder_name: c.cardholder_name ?? '',
    });
  }
  if (status === 404) throw new TerminalError('TOKEN_UNKNOWN', 'payment token unknown to the token service (404)');
  if (status === 410) throw new TerminalError('TOKEN_EXPIRED', 'payment token expired (410)');
  if (status === 429) {
    throw new RetryableError('TOKEN_SERVICE_THROTTLED', 'token service throttled the request (429)', {
      retryAfterMs: parseRetryAfterMs(res.headers['retry-after']),
    });
  }
  if (status >= 500 || status === 401 || status === 403 || status === 408) {
    throw new RetryableError('TOKEN_SERVICE_UNAVAILABLE', `token service answered HTTP ${status}`, {
      retryAfterMs: parseRetryAfterMs(res.headers['retry-after']),
    });
  }
  throw new TerminalError('TOKEN_SERVICE_REJECTED', `token service rejected the request (HTTP ${status})`);
}
