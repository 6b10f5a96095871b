/**
 * Fault injection shared by every sandbox server (token service, Stripe, LHV). Deterministic for a
 * given seed and request order, changeable at run time over HTTP:
 *
 *   GET    /__sandbox/faults   -> the current config and how many faults were injected
 *   POST   /__sandbox/faults   -> merge a partial JSON config (validated; 400 on a bad one)
 *   DELETE /__sandbox/faults   -> back to no faults (counters kept)
 *
 * Every faultable request draws one plan. Faults happen exactly where their names say:
 *
 *   request ──> delay ──> [rate5xx | rate429 | rateReset]      effect NOT recorded
 *                               │ none
 *                               v
 *                        do the work, record it
 *                               │
 *                 [rateTimeoutAfterSuccess | rateResetAfterSuccess]   effect IS recorded
 *                       hang (no answer)   destroy socket
 *                               │ none
 *                               v
 *                            answer
 *
 * A server uses it like this:
 * ```ts
 * const plan = faults.plan(path, req.method);   // method: only for rules that name one
 * await faults.delay(plan, signal);
 * if (faults.before(plan, res)) return;   // answered 5xx/429 or reset: nothing done
 * ...do and record the effect...
 * if (faults.after(plan, res)) return;    // hung or reset: effect done, client never hears
 * send(res, ...);
 * ```
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { readJson, sendJson } from './http-server.js';

const rate = z.number().min(0).max(1);

/** The rates a fault draw picks from (a rule's, or the top-level ones). */
const ratesShape = {
  /** Answer a 5xx before the effect. @default 0 */
  rate5xx: rate.default(0),
  /** Answer 429 (with Retry-After) before the effect. @default 0 */
  rate429: rate.default(0),
  /** Destroy the socket without answering, before the effect. @default 0 */
  rateReset: rate.default(0),
  /** Do and record the effect, then never answer (until the client gives up or `hangMs`). @default 0 */
  rateTimeoutAfterSuccess: rate.default(0),
  /** Do and record the effect, then destroy the socket without answering. @default 0 */
  rateResetAfterSuccess: rate.default(0),
};
type Rates = { readonly [K in keyof typeof ratesShape]: number };
const ratesAddUp = (c: Rates) => c.rate5xx + c.rate429 + c.rateReset + c.rateTimeoutAfterSuccess + c.rateResetAfterSuccess <= 1;

/**
 * Rates for one route, e.g. `{ method: 'GET', paths: ['/messages/next'], rate5xx: 0.05 }` next to
 * `{ method: 'DELETE', paths: ['/messages/'], rateResetAfterSuccess: 0.2 }`: different faults on two
 * routes that share a path prefix. The first matching rule replaces the top-level rates for that
 * request; latency still follows the top-level `paths`.
 */
export const faultRuleSchema = z
  .object({
    /** Only this HTTP method (any when absent). Servers that do not pass a method match only rules without one. */
    method: z
      .string()
      .min(1)
      .transform((m) => m.toUpperCase())
      .optional(),
    /** Path prefixes this rule applies to. */
    paths: z.array(z.string()).min(1),
    ...ratesShape,
  })
  .refine(ratesAddUp, { error: 'the fault rates of a rule must add up to at most 1' });
export type FaultRule = z.output<typeof faultRuleSchema>;
/** A rule as given to `update()` or `POST /__sandbox/faults` (rates default to 0). */
export type FaultRuleInput = z.input<typeof faultRuleSchema>;

/** The fault knobs; every field has a default, so `{}` means "no faults". */
export const faultConfigSchema = z
  .object({
    /** Added to every faultable request before anything else. @default 0 */
    latencyMs: z.number().int().min(0).max(600_000).default(0),
    /** Uniform extra latency in [0, latencyJitterMs). @default 0 */
    latencyJitterMs: z.number().int().min(0).max(600_000).default(0),
    ...ratesShape,
    /** Status used for 5xx faults. @default 500 */
    status5xx: z.number().int().min(500).max(599).default(500),
    /** Retry-After (seconds) sent with 429 faults. @default 1 */
    retryAfterSec: z.number().int().min(0).max(3600).default(1),
    /** A hung response is destroyed after this long; 0 keeps it open until the client or close(). @default 0 */
    hangMs: z.number().int().min(0).max(3_600_000).default(0),
    /** Only paths starting with one of these are faulted; empty means every non-admin path. @default [] */
    paths: z.array(z.string()).default([]),
    /** Per-route rates (see {@link faultRuleSchema}); the first match wins over the top-level rates. @default [] */
    rules: z.array(faultRuleSchema).default([]),
    /** Re-seed the RNG (same seed + same request order = same faults). @default 1 */
    seed: z.number().int().default(1),
  })
  .refine(ratesAddUp, { error: 'the fault rates must add up to at most 1' });

export type FaultConfig = z.output<typeof faultConfigSchema>;
/** What one request's draw picked (`none` = answer normally). */
export type FaultKind = 'none' | '5xx' | '429' | 'reset' | 'timeoutAfterSuccess' | 'resetAfterSuccess';

/** One request's fate, drawn up front so the server can apply each part at its place. */
export interface FaultPlan {
  readonly delayMs: number;
  readonly kind: FaultKind;
}

/** How a server renders its own error shape for an injected 5xx or 429. */
export type FaultErrorRenderer = (status: number) => unknown;

/** Mulberry32: tiny, fast, good enough for fault dice, and reproducible from a 32-bit seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The admin endpoint every sandbox serves through {@link FaultInjector.handleAdmin}. */
export const FAULTS_ADMIN_PATH = '/__sandbox/faults';

export interface FaultInjectorOptions {
  readonly config?: Partial<FaultConfig>;
  /** Body of an injected 5xx/429 in the server's own error shape. @default `{ error: { type, message } }` */
  readonly renderError?: FaultErrorRenderer;
}

/** The fault state of one sandbox server. */
export class FaultInjector {
  #config: FaultConfig;
  #random: () => number;
  readonly #renderError: FaultErrorRenderer;
  readonly #injected: Record<FaultKind, number> = {
    none: 0,
    '5xx': 0,
    '429': 0,
    reset: 0,
    timeoutAfterSuccess: 0,
    resetAfterSuccess: 0,
  };
  readonly #hanging = new Set<ServerResponse>();

  constructor(options: FaultInjectorOptions = {}) {
    this.#config = faultConfigSchema.parse(options.config ?? {});
    this.#random = seededRandom(this.#config.seed);
    this.#renderError =
      options.renderError ??
      ((status) => ({
        error: { type: status === 429 ? 'rate_limit_error' : 'api_error', message: `sandbox fault: HTTP ${status}` },
      }));
  }

  get config(): Readonly<FaultConfig> {
    return this.#config;
  }

  /** Faults injected so far, by kind (`none` counts faultable requests that drew no fault). */
  get injected(): Readonly<Record<FaultKind, number>> {
    return { ...this.#injected };
  }

  /** Merge `partial` into the config (validated; throws a ZodError). A new `seed` re-seeds the RNG. */
  update(partial: unknown): FaultConfig {
    const next = faultConfigSchema.parse({ ...this.#config, ...(partial as object) });
    if (next.seed !== this.#config.seed) this.#random = seededRandom(next.seed);
    this.#config = next;
    return next;
  }

  /** No faults any more; the RNG restarts from the seed. */
  reset(): void {
    this.#config = faultConfigSchema.parse({ seed: this.#config.seed });
    this.#random = seededRandom(this.#config.seed);
  }

  /** Draw the fate of one request to `path` (`method` lets rules with a method match). */
  plan(path: string, method?: string): FaultPlan {
    const c = this.#config;
    if (path.startsWith('/__sandbox/')) return { delayMs: 0, kind: 'none' };
    const verb = method?.toUpperCase();
    const rule = c.rules.find((r) => (r.method === undefined || r.method === verb) && r.paths.some((p) => path.startsWith(p)));
    const inPaths = c.paths.length === 0 || c.paths.some((p) => path.startsWith(p));
    if (!rule && !inPaths) return { delayMs: 0, kind: 'none' };
    const delayMs = inPaths ? c.latencyMs + (c.latencyJitterMs > 0 ? Math.floor(this.#random() * c.latencyJitterMs) : 0) : 0;
    const rates: Rates = rule ?? c;
    const r = this.#random();
    let edge = 0;
    let kind: FaultKind = 'none';
    for (const [k, p] of [
      ['5xx', rates.rate5xx],
      ['429', rates.rate429],
      ['reset', rates.rateReset],
      ['timeoutAfterSuccess', rates.rateTimeoutAfterSuccess],
      ['resetAfterSuccess', rates.rateResetAfterSuccess],
    ] as const) {
      edge += p;
      if (r < edge) {
        kind = k;
        break;
      }
    }
    this.#injected[kind] += 1;
    return { delayMs, kind };
  }

  /** Sleep the planned latency (cut short when the client goes away). */
  async delay(plan: FaultPlan, res?: ServerResponse): Promise<void> {
    if (plan.delayMs <= 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, plan.delayMs);
      function done() {
        clearTimeout(timer);
        res?.off('close', done);
        resolve();
      }
      res?.once('close', done);
    });
  }

  /** Apply a before-the-effect fault. True when the request was consumed (answered or reset). */
  before(plan: FaultPlan, res: ServerResponse): boolean {
    switch (plan.kind) {
      case '5xx':
        sendJson(res, this.#config.status5xx, this.#renderError(this.#config.status5xx));
        return true;
      case '429':
        sendJson(res, 429, this.#renderError(429), { 'retry-after': String(this.#config.retryAfterSec) });
        return true;
      case 'reset':
        res.socket?.destroy();
        return true;
      default:
        return false;
    }
  }

  /** Apply an after-the-effect fault. True when the server must not answer (hung or reset). */
  after(plan: FaultPlan, res: ServerResponse): boolean {
    if (plan.kind === 'resetAfterSuccess') {
      res.socket?.destroy();
      return true;
    }
    if (plan.kind !== 'timeoutAfterSuccess') return false;
    // Keep the socket open and silent; the client's read timeout decides what happens next.
    this.#hanging.add(res);
    const hangMs = this.#config.hangMs;
    const timer = hangMs > 0 ? setTimeout(() => res.socket?.destroy(), hangMs) : undefined;
    res.once('close', () => {
      clearTimeout(timer);
      this.#hanging.delete(res);
    });
    return true;
  }

  /** Number of responses currently hanging (for tests and the admin view). */
  get hanging(): number {
    return this.#hanging.size;
  }

  /** Destroy every hanging response (servers call this from close()). */
  releaseHanging(): void {
    for (const res of this.#hanging) res.socket?.destroy();
    this.#hanging.clear();
  }

  /** Serve the admin endpoint. True when `path` was the admin path (answered). */
  async handleAdmin(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (path !== FAULTS_ADMIN_PATH) return false;
    if (req.method === 'GET') {
      sendJson(res, 200, this.#view());
    } else if (req.method === 'POST') {
      let body: unknown;
      try {
        body = (await readJson(req)) ?? {};
      } catch {
        sendJson(res, 400, { error: { type: 'invalid_request_error', message: 'body must be JSON' } });
        return true;
      }
      const next = faultConfigSchema.safeParse({ ...this.#config, ...(body as object) });
      if (!next.success || typeof body !== 'object' || body === null || Array.isArray(body)) {
        const issues = next.success
          ? ['body must be a JSON object']
          : next.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`);
        sendJson(res, 400, { error: { type: 'invalid_request_error', message: issues.join('; ') } });
        return true;
      }
      this.update(body);
      sendJson(res, 200, this.#view());
    } else if (req.method === 'DELETE') {
      this.reset();
      sendJson(res, 200, this.#view());
    } else {
      sendJson(
        res,
        405,
        { error: { type: 'invalid_request_error', message: 'use GET, POST or DELETE' } },
        { allow: 'GET, POST, DELETE' },
      );
    }
    return true;
  }

  #view() {
    return { config: this.#config, injected: this.injected, hanging: this.#hanging.size };
  }
}
