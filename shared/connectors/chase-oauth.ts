/**
 * OAuth2 client-credentials tokens for the J.P. Morgan Payments APIs (Chase): fetched on first use,
 * cached, and refreshed ahead of expiry, with one fetch in flight per process however many calls
 * need a token at the same moment.
 *
 *   token:     |<------------------------ expires_in ------------------------>|
 *   refresh:   |<------------- used as is -------------->|<- refreshMarginMs ->|
 *                                                        ^ the next call fetches a new one
 *
 * A 401 from the API means the token was revoked or expired early: {@link ChaseTokens.invalidate}
 * drops it (only if it is still the cached one, so a burst of 401s for one stale token fetches
 * once), and the connector repeats its request once with the fresh token.
 *
 * The client secret and the access token are never logged and never quoted in an error: every
 * failure message names the token endpoint's origin and path and the HTTP status only.
 */
import { z } from 'zod';
import { systemClock, type Clock } from '../core/clock.js';
import {
  createHttpClient,
  formEncode,
  HttpAmbiguousError,
  HttpNotSentError,
  type HttpClient,
  type HttpGuard,
  type HttpResponse,
} from './http.js';

export interface ChaseTokenOptions {
  /** `CHASE_TOKEN_URL`: the OAuth2 token endpoint (full URL). */
  readonly tokenUrl: string;
  /** `CHASE_CLIENT_ID`. */
  readonly clientId: string;
  /** `CHASE_CLIENT_SECRET`. */
  readonly clientSecret: string;
  /** Optional `scope` of the token request. */
  readonly scope?: string;
  /** A token is replaced this long before it expires. @default 60_000 */
  readonly refreshMarginMs?: number;
  /** @default 10_000 */
  readonly timeoutMs?: number;
  /** @default Date.now */
  readonly clock?: Clock;
  /** Inject a client bound to the token endpoint's origin (tests). */
  readonly http?: HttpClient;
  /** The processor's breaker and metrics: an OAuth outage is a Chase outage. */
  readonly guard?: HttpGuard;
}

/** Why a token could not be had; the connector turns it into an outcome. */
export class ChaseTokenError extends Error {
  override readonly name = 'ChaseTokenError';
  constructor(
    message: string,
    /** `unreachable`: nothing reached the endpoint or no answer came; `refused`: 400/401/403; `unavailable`: 5xx/429. */
    readonly kind: 'unreachable' | 'refused' | 'unavailable',
  ) {
    super(message);
  }
}

export interface ChaseTokens {
  /** A valid access token (cached, or fetched once for every concurrent caller). Rejects with ChaseTokenError. */
  get(signal?: AbortSignal): Promise<string>;
  /** Forget `token` if it is the cached one (the API answered 401 to it). */
  invalidate(token: string): void;
  /** Tokens fetched so far (tests, metrics). */
  readonly fetched: number;
  close(): Promise<void>;
}

const tokenAnswer = z.object({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  expires_in: z.coerce.number().positive(),
});

export function createChaseTokens(options: ChaseTokenOptions): ChaseTokens {
  const clock = options.clock ?? systemClock;
  const margin = options.refreshMarginMs ?? 60_000;
  const url = new URL(options.tokenUrl);
  const http =
    options.http ??
    createHttpClient({
      baseUrl: url.origin,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxConnections: 2,
      ...options.guard,
      service: 'chase',
    });
  const where = `${url.origin}${url.pathname}`;
  const basic = Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`).toString(
    'base64',
  );
  let cached: { token: string; refreshAt: number } | undefined;
  let inFlight: Promise<string> | undefined;
  let fetched = 0;

  async function fetchToken(signal?: AbortSignal): Promise<string> {
    let res: HttpResponse;
    try {
      res = await http.request({
        method: 'POST',
        path: `${url.pathname}${url.search}`,
        operation: 'oauth-token',
        headers: {
          authorization: `Basic ${basic}`,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: formEncode({ grant_type: 'client_credentials', scope: options.scope }),
        signal,
      });
    } catch (err) {
      // Asking for a token twice is harmless: ambiguous here is as good as not sent.
      if (err instanceof HttpNotSentError || err instanceof HttpAmbiguousError)
        throw new ChaseTokenError(`chase token endpoint ${where}: ${err.message}`, 'unreachable');
      throw err;
    }
    if (res.status === 400 || res.status === 401 || res.status === 403)
      throw new ChaseTokenError(`chase token endpoint ${where} refused the client credentials (HTTP ${res.status})`, 'refused');
    if (res.status !== 200) throw new ChaseTokenError(`chase token endpoint ${where} answered HTTP ${res.status}`, 'unavailable');
    let parsed: ReturnType<typeof tokenAnswer.safeParse> | undefined;
    try {
      parsed = tokenAnswer.safeParse(JSON.parse(res.body));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success)
      throw new ChaseTokenError(`chase token endpoint ${where} answered 200 with an unreadable body`, 'unavailable');
    fetched += 1;
    const lifeMs = parsed.data.expires_in * 1000;
    // A token shorter-lived than twice the margin is used for half its life instead.
    cached = { token: parsed.data.access_token, refreshAt: clock() + Math.max(lifeMs - margin, lifeMs / 2) };
    return parsed.data.access_token;
  }

  return {
    get(signal) {
      if (cached && clock() < cached.refreshAt) return Promise.resolve(cached.token);
      // One fetch per process: everyone who needs a token now waits for the same answer. It is not
      // bound to the first caller's signal, so one caller's shutdown cannot fail the others.
      inFlight ??= fetchToken().finally(() => {
        inFlight = undefined;
      });
      if (!signal) return inFlight;
      const shared = inFlight;
      return new Promise<string>((resolve, reject) => {
        const onAbort = () => reject(new ChaseTokenError('aborted by caller while waiting for a token', 'unreachable'));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        shared.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    },
    invalidate(token) {
      if (cached?.token === token) cached = undefined;
    },
    get fetched() {
      return fetched;
    },
    close: () => http.close(),
  };
}
