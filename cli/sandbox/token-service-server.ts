/**
 * Sandbox Payment Token Service (docs/contract.md §7): `POST /v1/tokens/{paymentTokenId}/decrypt`.
 *
 * Tokens are deterministic so demo load needs no registration step:
 *
 *   tok_<12-19 digits>[_<anything>]  -> that card number, exp 12/2030, cvc 123 (1234 for Amex),
 *                                       cardholder "Sandbox Cardholder"
 *                                       (the suffix lets every charge carry its own token id)
 *   tok_expired_<anything>           -> 410 (token expired)
 *   tok_unknown_<anything>, other    -> 404 (token unknown)
 *
 * Explicit tokens (checked first) can be registered at run time:
 *   POST /__sandbox/tokens {"token":"t1","card":{"number":"...","exp_month":1,"exp_year":2031,"cvc":"999","cardholder_name":"X"}}
 *   POST /__sandbox/tokens {"token":"t2","expired":true}
 *   POST /__sandbox/tokens {"tokens":[ ...the same objects... ]}
 * `GET /__sandbox/stats` counts decrypt answers by status; faults via `/__sandbox/faults` (faults.ts).
 * Every non-admin request needs `Authorization: Bearer <apiKey>` (401 otherwise).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { CardFields } from '../../shared/connectors/sensitive-card.js';
import { FaultInjector, type FaultConfig } from './faults.js';
import { readJson, sendJson, splitUrl, startHttpServer, type HttpServerOptions } from './http-server.js';

/** The API key the sandbox accepts unless told otherwise. */
export const TOKEN_SANDBOX_DEFAULT_API_KEY = 'pts_sandbox_key';

export interface TokenServiceSandboxOptions extends HttpServerOptions {
  /** Bearer key the server accepts. @default TOKEN_SANDBOX_DEFAULT_API_KEY */
  readonly apiKey?: string;
  /** Initial fault config. @default no faults */
  readonly faults?: Partial<FaultConfig>;
}

export interface TokenServiceSandboxStats {
  /** Decrypt requests answered, by HTTP status (faults included). */
  readonly byStatus: Readonly<Record<string, number>>;
  /** Decrypts answered 200. */
  readonly decrypted: number;
}

/** A running token service sandbox. */
export interface TokenServiceSandbox {
  readonly url: string;
  readonly apiKey: string;
  readonly faults: FaultInjector;
  stats(): TokenServiceSandboxStats;
  /** Register an explicit token (overrides the deterministic rules). */
  register(token: string, value: CardFields | 'expired'): void;
  close(): Promise<void>;
}

const cardSchema = z.object({
  number: z.string().regex(/^\d{12,19}$/),
  exp_month: z.number().int().min(1).max(12),
  exp_year: z.number().int().min(2000).max(2100),
  cvc: z.string().regex(/^\d{3,4}$/),
  cardholder_name: z.string().max(200).default('Sandbox Cardholder'),
});
const registrationSchema = z.union([
  z.object({ token: z.string().min(1), card: cardSchema }),
  z.object({ token: z.string().min(1), expired: z.literal(true) }),
]);
const registrationBodySchema = z.union([registrationSchema, z.object({ tokens: z.array(registrationSchema).max(10_000) })]);

const DECRYPT_PATH = /^\/v1\/tokens\/([^/]+)\/decrypt$/;

/** The card a deterministic token stands for, `'expired'`, or undefined (unknown). */
export function sandboxTokenCard(token: string): CardFields | 'expired' | undefined {
  if (token.startsWith('tok_expired_')) return 'expired';
  const m = /^tok_(\d{12,19})(?:_.*)?$/.exec(token);
  if (!m?.[1]) return undefined;
  const number = m[1];
  const amex = number.startsWith('34') || number.startsWith('37');
  return { number, exp_month: 12, exp_year: 2030, cvc: amex ? '1234' : '123', cardholder_name: 'Sandbox Cardholder' };
}

/** Start the sandbox token service on a loopback port. */
export async function startTokenServiceSandbox(options: TokenServiceSandboxOptions = {}): Promise<TokenServiceSandbox> {
  const apiKey = options.apiKey ?? TOKEN_SANDBOX_DEFAULT_API_KEY;
  const faults = new FaultInjector({
    config: options.faults,
    renderError: (status) => ({
      error: { code: status === 429 ? 'RATE_LIMITED' : 'INTERNAL_ERROR', message: `sandbox fault: HTTP ${status}` },
    }),
  });
  const registered = new Map<string, CardFields | 'expired'>();
  const byStatus: Record<string, number> = {};
  const count = (status: number) => {
    byStatus[status] = (byStatus[status] ?? 0) + 1;
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const { path } = splitUrl(req);
    if (await faults.handleAdmin(req, res, path)) return;
    if (path === '/__sandbox/stats' && req.method === 'GET') {
      sendJson(res, 200, stats());
      return;
    }
    if (path === '/__sandbox/tokens' && req.method === 'POST') {
      await registerFromBody(req, res);
      return;
    }
    const m = DECRYPT_PATH.exec(path);
    if (!m?.[1] || req.method !== 'POST') {
      sendJson(res, 404, { error: { code: 'NOT_FOUND', message: 'no such endpoint' } });
      return;
    }
    // Drain the (unused) body so the keep-alive socket stays usable.
    for await (const _ of req);
    if (req.headers.authorization !== `Bearer ${apiKey}`) {
      count(401);
      sendJson(res, 401, { error: { code: 'UNAUTHORISED', message: 'missing or invalid API key' } });
      return;
    }
    const plan = faults.plan(path);
    await faults.delay(plan, res);
    if (faults.before(plan, res)) {
      if (plan.kind === '5xx') count(faults.config.status5xx);
      if (plan.kind === '429') count(429);
      return;
    }
    let token: string;
    try {
      token = decodeURIComponent(m[1]);
    } catch {
      count(400);
      sendJson(res, 400, { error: { code: 'BAD_TOKEN_ID', message: 'token id is not valid percent-encoding' } });
      return;
    }
    const found = registered.get(token) ?? sandboxTokenCard(token);
    if (faults.after(plan, res)) return;
    if (found === undefined) {
      count(404);
      sendJson(res, 404, { error: { code: 'TOKEN_UNKNOWN', message: 'unknown payment token' } });
    } else if (found === 'expired') {
      count(410);
      sendJson(res, 410, { error: { code: 'TOKEN_EXPIRED', message: 'payment token expired' } });
    } else {
      count(200);
      sendJson(res, 200, { card: found });
    }
  };

  async function registerFromBody(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let parsed: z.infer<typeof registrationBodySchema>;
    try {
      parsed = registrationBodySchema.parse(await readJson(req));
    } catch {
      sendJson(res, 400, {
        error: { code: 'BAD_REQUEST', message: 'expected {token, card} | {token, expired: true} | {tokens: [...]}' },
      });
      return;
    }
    const list = 'tokens' in parsed ? parsed.tokens : [parsed];
    for (const r of list) registered.set(r.token, 'card' in r ? r.card : 'expired');
    sendJson(res, 201, { registered: list.length });
  }

  function stats(): TokenServiceSandboxStats {
    return { byStatus: { ...byStatus }, decrypted: byStatus[200] ?? 0 };
  }

  const server = await startHttpServer(handler, options);
  return {
    url: server.url,
    apiKey,
    faults,
    stats,
    register(token, value) {
      registered.set(token, value === 'expired' ? value : cardSchema.parse(value));
    },
    async close() {
      faults.releaseHanging();
      await server.close();
    },
  };
}
