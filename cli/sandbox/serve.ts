/**
 * Every sandbox service in one process: the Payment Token Service, Stripe, Worldpay, Chase and LHV
 * Connect fakes. `payfleet sandbox` runs this (docker-compose's `sandbox` service), and `npm start`
 * runs it inside its orchestrator so the closing summary can read each fake's effect counters.
 *
 * Each server listens on its own port (0 = a free one) on `host`; {@link SandboxServices.env} is
 * the environment that points a worker at them with the sandboxes' own default credentials, which
 * are not secrets (they are in the sources and in docker-compose.yml).
 */
import { CHASE_SANDBOX_DEFAULTS, startChaseSandbox, type ChaseSandbox } from './chase-server.js';
import { startLhvSandbox, type LhvSandbox, type LhvSandboxOptions } from './lhv-server.js';
import { startStripeSandbox, STRIPE_SANDBOX_DEFAULT_API_KEY, type StripeSandbox } from './stripe-server.js';
import { startTokenServiceSandbox, TOKEN_SANDBOX_DEFAULT_API_KEY, type TokenServiceSandbox } from './token-service-server.js';
import { startWorldpaySandbox, WORLDPAY_SANDBOX_DEFAULTS, type WorldpaySandbox } from './worldpay-server.js';
import type { FaultConfig } from './faults.js';

export interface SandboxServeOptions {
  /** Interface every server listens on. @default '127.0.0.1' */
  readonly host?: string;
  /** @default 0 (a free port) */
  readonly tokenServicePort?: number;
  /** @default 0 */
  readonly stripePort?: number;
  /** @default 0 */
  readonly worldpayPort?: number;
  /** @default 0 */
  readonly chasePort?: number;
  /** @default 0 */
  readonly lhvPort?: number;
  /** Initial fault configs (faults.ts), per service. @default none */
  readonly faults?: {
    readonly tokenService?: Partial<FaultConfig>;
    readonly stripe?: Partial<FaultConfig>;
    readonly worldpay?: Partial<FaultConfig>;
    readonly chase?: Partial<FaultConfig>;
    readonly lhv?: Partial<FaultConfig>;
  };
  /** LHV pain.002 timing (lhv-server.ts). @default responseDelayMs 0, followUpDelayMs 1000 */
  readonly lhv?: Pick<LhvSandboxOptions, 'responseDelayMs' | 'followUpDelayMs' | 'duplicateMode'>;
  /** Worldpay: delay until a received capture shows as CAPTURED. @default 100 */
  readonly worldpayCaptureSettleMs?: number;
}

/** The running services. */
export interface SandboxServices {
  readonly tokens: TokenServiceSandbox;
  readonly stripe: StripeSandbox;
  readonly worldpay: WorldpaySandbox;
  readonly chase: ChaseSandbox;
  readonly lhv: LhvSandbox;
  /** Base URL of each service, reachable from this host (0.0.0.0 shown as 127.0.0.1). */
  readonly urls: {
    readonly tokenService: string;
    readonly stripe: string;
    readonly worldpay: string;
    readonly chase: string;
    readonly lhv: string;
  };
  /** Worker variables that point at these services (auth, capture and payout read their own subsets). */
  readonly env: Readonly<Record<string, string>>;
  /** Stop every server. Idempotent. */
  close(): Promise<void>;
}

/** A URL a client on this host can use: a server bound to every interface is reached on loopback. */
function reachable(url: string): string {
  return url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//127.0.0.1:');
}

/** Start every sandbox service. If one fails to start, the ones already started are closed. */
export async function startSandboxServices(options: SandboxServeOptions = {}): Promise<SandboxServices> {
  const host = options.host ?? '127.0.0.1';
  const started: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(s: T): T => {
    started.push(s);
    return s;
  };
  try {
    const tokens = track(
      await startTokenServiceSandbox({
        host,
        port: options.tokenServicePort ?? 0,
        ...(options.faults?.tokenService ? { faults: options.faults.tokenService } : {}),
      }),
    );
    const stripe = track(
      await startStripeSandbox({
        host,
        port: options.stripePort ?? 0,
        ...(options.faults?.stripe ? { faults: options.faults.stripe } : {}),
      }),
    );
    const worldpay = track(
      await startWorldpaySandbox({
        host,
        port: options.worldpayPort ?? 0,
        ...(options.worldpayCaptureSettleMs !== undefined ? { captureSettleMs: options.worldpayCaptureSettleMs } : {}),
        ...(options.faults?.worldpay ? { faults: options.faults.worldpay } : {}),
      }),
    );
    const chase = track(
      await startChaseSandbox({
        host,
        port: options.chasePort ?? 0,
        ...(options.faults?.chase ? { faults: options.faults.chase } : {}),
      }),
    );
    const lhv = track(
      await startLhvSandbox({
        host,
        port: options.lhvPort ?? 0,
        ...(options.lhv ?? {}),
        ...(options.faults?.lhv ? { faults: options.faults.lhv } : {}),
      }),
    );
    const urls = {
      tokenService: reachable(tokens.url),
      stripe: reachable(stripe.url),
      worldpay: reachable(worldpay.url),
      chase: reachable(chase.url),
      lhv: reachable(lhv.url),
    };
    const env = Object.freeze({
      PAYMENT_TOKEN_SERVICE_URL: urls.tokenService,
      PAYMENT_TOKEN_SERVICE_API_KEY: TOKEN_SANDBOX_DEFAULT_API_KEY,
      STRIPE_API_BASE_URL: urls.stripe,
      STRIPE_API_KEY: STRIPE_SANDBOX_DEFAULT_API_KEY,
      WORLDPAY_API_BASE_URL: urls.worldpay,
      WORLDPAY_MERCHANT_CODE: WORLDPAY_SANDBOX_DEFAULTS.merchantCode,
      WORLDPAY_USERNAME: WORLDPAY_SANDBOX_DEFAULTS.username,
      WORLDPAY_PASSWORD: WORLDPAY_SANDBOX_DEFAULTS.password,
      CHASE_API_BASE_URL: urls.chase,
      CHASE_TOKEN_URL: `${urls.chase}/oauth2/token`,
      CHASE_CLIENT_ID: CHASE_SANDBOX_DEFAULTS.clientId,
      CHASE_CLIENT_SECRET: CHASE_SANDBOX_DEFAULTS.clientSecret,
      CHASE_MERCHANT_ID: CHASE_SANDBOX_DEFAULTS.merchantId,
      LHV_API_BASE_URL: urls.lhv,
    });
    let closing: Promise<void> | undefined;
    return {
      tokens,
      stripe,
      worldpay,
      chase,
      lhv,
      urls,
      env,
      close() {
        closing ??= Promise.allSettled(started.map((s) => s.close())).then(() => undefined);
        return closing;
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.close()));
    throw err;
  }
}
