import { startStripeSandbox, type StripeSandbox } from '../../cli/sandbox/stripe-server.js';
import { startTokenServiceSandbox, type TokenServiceSandbox } from '../../cli/sandbox/token-service-server.js';
import { startWorldpaySandbox, type WorldpaySandbox } from '../../cli/sandbox/worldpay-server.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import type { TestStack } from '../support/stack.js';

export interface AuthSandboxes {
  readonly tokens: TokenServiceSandbox;
  readonly stripe: StripeSandbox;
  readonly worldpay: WorldpaySandbox;
  close(): Promise<void>;
}

/** Worldpay orderCode -> chargeId, filled by tests that send Worldpay requests (the orderCode is `payfleet-auth-<authRequestId>`). */
export const worldpayOrders = new Map<string, string>();

export async function startAuthSandboxes(): Promise<AuthSandboxes> {
  const tokens = await startTokenServiceSandbox();
  const stripe = await startStripeSandbox();
  const worldpay = await startWorldpaySandbox({ chargeIdOf: ({ orderCode }) => worldpayOrders.get(orderCode) });
  return {
    tokens,
    stripe,
    worldpay,
    close: async () => void (await Promise.all([tokens.close(), stripe.close(), worldpay.close()])),
  };
}

/** Environment of an auth worker process pointed at the test stack and the sandboxes. */
export function authEnv(stack: TestStack, sb: AuthSandboxes, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...stack.env,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '6',
    PAYFLEET_HEARTBEAT_SEC: '2',
    PAYFLEET_LEASE_MS: '3000',
    PAYFLEET_LEASE_RENEW_MS: '1000',
    PAYFLEET_SHUTDOWN_GRACE_MS: '3000',
    PAYFLEET_FORCE_EXIT_MS: '8000',
    PAYFLEET_RETRY_BASE_MS: '300',
    PAYFLEET_RETRY_MAX_MS: '2000',
    PAYFLEET_MAX_ATTEMPTS: '20',
    PAYFLEET_CONCURRENCY: '16',
    PAYMENT_TOKEN_SERVICE_URL: sb.tokens.url,
    PAYMENT_TOKEN_SERVICE_API_KEY: 'pts_sandbox_key',
    STRIPE_API_BASE_URL: sb.stripe.url,
    STRIPE_API_KEY: sb.stripe.apiKey,
    WORLDPAY_API_BASE_URL: sb.worldpay.url,
    WORLDPAY_MERCHANT_CODE: sb.worldpay.merchantCode,
    WORLDPAY_USERNAME: sb.worldpay.username,
    WORLDPAY_PASSWORD: sb.worldpay.password,
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '1500',
    ...extra,
  };
}

export function startAuthWorker(stack: TestStack, sb: AuthSandboxes, extra: Record<string, string> = {}): WorkerProcess {
  return startProcess('bin/payfleet.js', ['worker', 'auth'], authEnv(stack, sb, extra));
}

/** An auth worker that SIGKILLs itself at `crashAt` (test/auth/crash-worker.ts), once. */
export function startCrashingAuthWorker(
  stack: TestStack,
  sb: AuthSandboxes,
  crashAt: 'after-mismatch' | 'after-void' | 'before-authorise',
): WorkerProcess {
  return startProcess('test/auth/crash-worker.ts', [], authEnv(stack, sb, { AUTH_TEST_CRASH_AT: crashAt }));
}
