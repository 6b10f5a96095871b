/**
 * The composition of processor connectors: `processor` of a message -> its connector.
 *
 * Built once per worker process by its entrypoint (connectors own keep-alive pools; `close()`
 * releases them on shutdown). A message naming a processor this deployment does not know or has not
 * configured is bad input: {@link ProcessorRegistry.get} throws TerminalError('UNKNOWN_PROCESSOR'),
 * which the worker dead-letters (docs/contract.md §6) — redrivable once the processor is configured.
 */
import { z } from 'zod';
import { url } from '../config/env.js';
import { TerminalError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { Clock } from '../core/clock.js';
import { createChaseConnector } from './chase.js';
import { createSandboxConnector, type SandboxConnectorOptions } from './sandbox.js';
import { createStripeConnector, type StripeConnectorOptions } from './stripe.js';
import type { HttpGuard } from './http.js';
import type { TokenServiceClientOptions } from './token-service.js';
import type { ProcessorConnector, ProcessorName } from './types.js';
import { createWorldpayConnector } from './worldpay.js';

export interface WorldpayRegistryOptions {
  readonly baseUrl: string;
  readonly merchantCode: string;
  readonly username: string;
  readonly password: string;
  readonly timeoutMs?: number;
  readonly maxConnections?: number;
}

export interface ChaseRegistryOptions {
  readonly baseUrl: string;
  readonly tokenUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly merchantId: string;
  readonly timeoutMs?: number;
  readonly maxConnections?: number;
}

export interface ProcessorRegistryConfig {
  /** The in-process sandbox processor; `false` disables it. @default enabled */
  readonly sandbox?: SandboxConnectorOptions | false;
  /** Stripe; absent = not configured. */
  readonly stripe?: StripeConnectorOptions;
  /** Worldpay; absent = not configured. */
  readonly worldpay?: WorldpayRegistryOptions;
  /** Chase (J.P. Morgan Payments); absent = not configured. */
  readonly chase?: ChaseRegistryOptions;
  /** Time for connectors that reason about it (Chase's 70-second window, token expiry). @default Date.now */
  readonly clock?: Clock;
  /** Passed to connectors that log (never card data). */
  readonly logger?: Logger;
  /** Each processor's circuit breaker and metrics (a worker passes its process' breakers). */
  readonly guard?: (processor: ProcessorName) => HttpGuard;
}

export interface ProcessorRegistry {
  /** Configured connectors by name. */
  readonly connectors: ReadonlyMap<ProcessorName, ProcessorConnector>;
  /** The connector for `name`. Throws TerminalError('UNKNOWN_PROCESSOR') for unknown or unconfigured names. */
  get(name: string): ProcessorConnector;
  has(name: string): boolean;
  /** Release every connector's connection pool. Idempotent. */
  close(): Promise<void>;
}

const KNOWN: ReadonlySet<string> = new Set<ProcessorName>(['sandbox', 'stripe', 'worldpay', 'chase']);

/** Build the connectors named in `config`. */
export function createProcessorRegistry(config: ProcessorRegistryConfig = {}): ProcessorRegistry {
  const connectors = new Map<ProcessorName, ProcessorConnector>();
  if (config.sandbox !== false) connectors.set('sandbox', createSandboxConnector(config.sandbox ?? {}));
  const guard = (name: ProcessorName) => (config.guard ? { guard: config.guard(name) } : {});
  if (config.stripe) connectors.set('stripe', createStripeConnector({ logger: config.logger, ...guard('stripe'), ...config.stripe }));
  if (config.worldpay) connectors.set('worldpay', createWorldpayConnector({ logger: config.logger, ...guard('worldpay'), ...config.worldpay }));
  if (config.chase)
    connectors.set('chase', createChaseConnector({ logger: config.logger, ...guard('chase'), ...(config.clock ? { clock: config.clock } : {}), ...config.chase }));
  let closing: Promise<void> | undefined;

  return {
    connectors,
    get(name) {
      const c = KNOWN.has(name) ? connectors.get(name as ProcessorName) : undefined;
      if (c) return c;
      // The name is message input: bound it before it lands in a DLQ attribute.
      const shown = JSON.stringify(name.slice(0, 40));
      throw new TerminalError(
        'UNKNOWN_PROCESSOR',
        KNOWN.has(name) ? `processor ${shown} is not configured in this deployment` : `unknown processor ${shown}`,
      );
    },
    has(name) {
      return KNOWN.has(name) && connectors.has(name as ProcessorName);
    },
    close() {
      closing ??= Promise.allSettled(
        [...connectors.values()].map((c) => (c as Partial<{ close(): Promise<void> }>).close?.()),
      ).then(() => undefined);
      return closing;
    },
  };
}

/**
 * Environment variables of the processors (docs/contract.md §7), for a worker's config schema to spread
 * in (the capture worker needs only these). A processor is configured when its credentials are set.
 */
export const processorEnvShape = {
  /** Stripe API base. @default https://api.stripe.com */
  STRIPE_API_BASE_URL: url().default('https://api.stripe.com'),
  /** Stripe secret key; Stripe is disabled when unset. */
  STRIPE_API_KEY: z.string().min(1).optional(),
  /** Worldpay XML endpoint or base URL; Worldpay is disabled unless this and the three below are set. */
  WORLDPAY_API_BASE_URL: url().optional(),
  WORLDPAY_MERCHANT_CODE: z.string().min(1).optional(),
  WORLDPAY_USERNAME: z.string().min(1).optional(),
  WORLDPAY_PASSWORD: z.string().min(1).optional(),
  /** Chase Online Payments API v2 base; Chase is disabled unless this and the four below are set. */
  CHASE_API_BASE_URL: url().optional(),
  /** The OAuth2 token endpoint (client credentials). */
  CHASE_TOKEN_URL: url().optional(),
  CHASE_CLIENT_ID: z.string().min(1).optional(),
  /** Never logged (nor the access tokens it buys). */
  CHASE_CLIENT_SECRET: z.string().min(1).optional(),
  /** Sent as the `merchant-id` header. */
  CHASE_MERCHANT_ID: z.string().min(1).optional(),
  /** Deadline of one processor call; past it a sent request is ambiguous. @default 20000 */
  PAYFLEET_PROCESSOR_TIMEOUT_MS: z.coerce.number().int().min(100).max(300_000).default(20_000),
  /** Keep-alive connections per processor. @default 32 */
  PAYFLEET_PROCESSOR_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1024).default(32),
  /** Disable the in-process sandbox processor (e.g. in production). @default true */
  PAYFLEET_SANDBOX_PROCESSOR_ENABLED: z.stringbool().default(true),
} as const;

/** The Payment Token Service variables (the auth worker). */
export const tokenServiceEnvShape = {
  /** Payment Token Service base URL. */
  PAYMENT_TOKEN_SERVICE_URL: url(),
  PAYMENT_TOKEN_SERVICE_API_KEY: z.string().min(1),
  /** Decrypt deadline. @default 5000 */
  PAYMENT_TOKEN_SERVICE_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5_000),
} as const;

/** Both of the above: what the auth worker reads. */
export const connectorEnvShape = { ...processorEnvShape, ...tokenServiceEnvShape } as const;

export type ProcessorEnv = z.output<z.ZodObject<typeof processorEnvShape>>;
export type ConnectorEnv = z.output<z.ZodObject<typeof connectorEnvShape>>;

/**
 * What a worker that takes `processor` from its messages cannot serve: each processor a message may
 * name (sandbox, stripe, worldpay, chase) that is not configured here, with the variables that would
 * configure it. The sandbox switched off on purpose (PAYFLEET_SANDBOX_PROCESSOR_ENABLED=false, as in
 * production) is a decision, not an omission, and is left out; so is a processor fully configured.
 * Messages naming one of these are dead-lettered UNKNOWN_PROCESSOR, so workers warn at start.
 */
export function unconfiguredProcessors(env: Partial<Record<keyof ProcessorEnv, unknown>>): { processor: ProcessorName; set: string[] }[] {
  const missing = (names: readonly (keyof ProcessorEnv)[]) => names.filter((n) => env[n] === undefined || env[n] === '');
  const out: { processor: ProcessorName; set: string[] }[] = [];
  const stripe = missing(['STRIPE_API_KEY']);
  if (stripe.length > 0) out.push({ processor: 'stripe', set: stripe });
  const worldpay = missing(['WORLDPAY_API_BASE_URL', 'WORLDPAY_MERCHANT_CODE', 'WORLDPAY_USERNAME', 'WORLDPAY_PASSWORD']);
  if (worldpay.length > 0) out.push({ processor: 'worldpay', set: worldpay });
  const chase = missing(['CHASE_API_BASE_URL', 'CHASE_TOKEN_URL', 'CHASE_CLIENT_ID', 'CHASE_CLIENT_SECRET', 'CHASE_MERCHANT_ID']);
  if (chase.length > 0) out.push({ processor: 'chase', set: chase });
  return out;
}

/** Log one warning per {@link unconfiguredProcessors} entry: what happens to such messages and what to set. */
export function warnUnconfiguredProcessors(log: Logger, queue: string, env: Partial<Record<keyof ProcessorEnv, unknown>>): void {
  for (const { processor, set } of unconfiguredProcessors(env)) {
    log.warn(
      { processor, set },
      `${queue} may carry processor "${processor}", which is not configured here: such messages are dead-lettered UNKNOWN_PROCESSOR (set ${set.join(', ')})`,
    );
  }
}

/** Turn parsed processor variables into registry options. */
export function processorRegistryConfigFromEnv(env: ProcessorEnv): ProcessorRegistryConfig {
  const common = { timeoutMs: env.PAYFLEET_PROCESSOR_TIMEOUT_MS, maxConnections: env.PAYFLEET_PROCESSOR_MAX_CONNECTIONS };
  const wp = env.WORLDPAY_API_BASE_URL;
  const worldpay =
    wp && env.WORLDPAY_MERCHANT_CODE && env.WORLDPAY_USERNAME && env.WORLDPAY_PASSWORD
      ? {
          baseUrl: wp,
          merchantCode: env.WORLDPAY_MERCHANT_CODE,
          username: env.WORLDPAY_USERNAME,
          password: env.WORLDPAY_PASSWORD,
          ...common,
        }
      : undefined;
  const chase =
    env.CHASE_API_BASE_URL && env.CHASE_TOKEN_URL && env.CHASE_CLIENT_ID && env.CHASE_CLIENT_SECRET && env.CHASE_MERCHANT_ID
      ? {
          baseUrl: env.CHASE_API_BASE_URL,
          tokenUrl: env.CHASE_TOKEN_URL,
          clientId: env.CHASE_CLIENT_ID,
          clientSecret: env.CHASE_CLIENT_SECRET,
          merchantId: env.CHASE_MERCHANT_ID,
          ...common,
        }
      : undefined;
  return {
    sandbox: env.PAYFLEET_SANDBOX_PROCESSOR_ENABLED ? {} : false,
    stripe: env.STRIPE_API_KEY ? { apiKey: env.STRIPE_API_KEY, baseUrl: env.STRIPE_API_BASE_URL, ...common } : undefined,
    worldpay,
    chase,
  };
}

/** Turn parsed connector variables into registry and token-service options. */
export function connectorConfigFromEnv(env: ConnectorEnv): {
  registry: ProcessorRegistryConfig;
  tokenService: TokenServiceClientOptions;
} {
  return {
    registry: processorRegistryConfigFromEnv(env),
    tokenService: {
      baseUrl: env.PAYMENT_TOKEN_SERVICE_URL,
      apiKey: env.PAYMENT_TOKEN_SERVICE_API_KEY,
      timeoutMs: env.PAYMENT_TOKEN_SERVICE_TIMEOUT_MS,
      maxConnections: env.PAYFLEET_PROCESSOR_MAX_CONNECTIONS,
    },
  };
}
