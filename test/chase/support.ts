import { writeFileSync } from 'node:fs';
import { startChaseSandbox, type ChaseSandbox } from '../../cli/sandbox/chase-server.js';
import { startTokenServiceSandbox, type TokenServiceSandbox } from '../../cli/sandbox/token-service-server.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import type { TestStack } from '../support/stack.js';

export interface ChaseSandboxes {
  readonly tokens: TokenServiceSandbox;
  readonly chase: ChaseSandbox;
  close(): Promise<void>;
}

export async function startChaseSandboxes(): Promise<ChaseSandboxes> {
  const tokens = await startTokenServiceSandbox();
  const chase = await startChaseSandbox();
  return { tokens, chase, close: async () => void (await Promise.all([tokens.close(), chase.close()])) };
}

/** Environment of an auth or capture worker pointed at the test stack, the token service and Chase. */
export function chaseEnv(stack: TestStack, sb: ChaseSandboxes, extra: Record<string, string> = {}): Record<string, string> {
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
    PAYFLEET_RETRY_MAX_MS: '1000',
    PAYFLEET_MAX_ATTEMPTS: '40',
    PAYFLEET_CONCURRENCY: '16',
    PAYMENT_TOKEN_SERVICE_URL: sb.tokens.url,
    PAYMENT_TOKEN_SERVICE_API_KEY: 'pts_sandbox_key',
    CHASE_API_BASE_URL: sb.chase.url,
    CHASE_TOKEN_URL: sb.chase.tokenUrl,
    CHASE_CLIENT_ID: sb.chase.clientId,
    CHASE_CLIENT_SECRET: sb.chase.clientSecret,
    CHASE_MERCHANT_ID: sb.chase.merchantId,
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '1500',
    ...extra,
  };
}

/** The auth worker (test/chase/clock-worker.ts) whose Chase clock is `clockFile`'s offset plus real time. */
export function startChaseAuthWorker(stack: TestStack, sb: ChaseSandboxes, clockFile: string): WorkerProcess {
  writeFileSync(clockFile, '0');
  return startProcess('test/chase/clock-worker.ts', [], chaseEnv(stack, sb, { CHASE_TEST_CLOCK_FILE: clockFile }));
}

export function startChaseCaptureWorker(stack: TestStack, sb: ChaseSandboxes, retryDelaySec: number): WorkerProcess {
  return startProcess('bin/payfleet.js', ['worker', 'capture'], {
    ...chaseEnv(stack, sb),
    CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '8',
    AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
    CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: String(retryDelaySec),
    CAPTURE_PROCESS_MAXIMUM_RETRIES: '5',
    PAYFLEET_CAPTURE_GAUGE_REFRESH_MS: '500',
  });
}
