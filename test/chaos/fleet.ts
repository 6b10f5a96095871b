/**
 * The fleet harness of the chaos test: sandboxes with fault injection, every worker as real
 * `payfleet worker <name>` processes, a killer that SIGKILLs and restarts them at random, and the
 * oracle's readings (tables, sandbox counters, DLQ, the reference Ledger consumer).
 */
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { startChaseSandbox, type ChaseSandbox } from '../../cli/sandbox/chase-server.js';
import { startLhvSandbox, type LhvSandbox } from '../../cli/sandbox/lhv-server.js';
import { startStripeSandbox, type StripeSandbox } from '../../cli/sandbox/stripe-server.js';
import { startTokenServiceSandbox, type TokenServiceSandbox } from '../../cli/sandbox/token-service-server.js';
import { startWorldpaySandbox, type WorldpaySandbox } from '../../cli/sandbox/worldpay-server.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import type { TestStack } from '../support/stack.js';

export interface Sandboxes {
  readonly tokens: TokenServiceSandbox;
  readonly stripe: StripeSandbox;
  readonly worldpay: WorldpaySandbox;
  readonly chase: ChaseSandbox;
  readonly lhv: LhvSandbox;
  close(): Promise<void>;
}

export async function startSandboxes(chargeIdOfOrder: (orderCode: string) => string | undefined): Promise<Sandboxes> {
  const [tokens, stripe, worldpay, chase, lhv] = await Promise.all([
    startTokenServiceSandbox(),
    startStripeSandbox(),
    startWorldpaySandbox({ chargeIdOf: (o) => chargeIdOfOrder(o.orderCode) }),
    startChaseSandbox(),
    startLhvSandbox({ port: 0, followUpDelayMs: 200 }),
  ]);
  return {
    tokens,
    stripe,
    worldpay,
    chase,
    lhv,
    close: async () => void (await Promise.all([tokens.close(), stripe.close(), worldpay.close(), chase.close(), lhv.close()])),
  };
}

export type WorkerName = 'auth' | 'capture' | 'refund' | 'ledger' | 'payout';

/** Environment of each worker: short waits and leases generous enough for a loaded 2-core machine. */
export function workerEnv(stack: TestStack, sb: Sandboxes, name: WorkerName): Record<string, string> {
  const common: Record<string, string> = {
    ...stack.env,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_LOG_LEVEL: 'info',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '8',
    PAYFLEET_HEARTBEAT_SEC: '2',
    PAYFLEET_LEASE_MS: '10000',
    PAYFLEET_LEASE_RENEW_MS: '3000',
    PAYFLEET_SHUTDOWN_GRACE_MS: '3000',
    PAYFLEET_FORCE_EXIT_MS: '8000',
    PAYFLEET_RETRY_BASE_MS: '300',
    PAYFLEET_RETRY_MAX_MS: '3000',
    PAYFLEET_MAX_ATTEMPTS: '40',
    PAYFLEET_CONCURRENCY: '16',
  };
  const processors = {
    STRIPE_API_BASE_URL: sb.stripe.url,
    STRIPE_API_KEY: sb.stripe.apiKey,
    WORLDPAY_API_BASE_URL: sb.worldpay.url,
    WORLDPAY_MERCHANT_CODE: sb.worldpay.merchantCode,
    WORLDPAY_USERNAME: sb.worldpay.username,
    WORLDPAY_PASSWORD: sb.worldpay.password,
    CHASE_API_BASE_URL: sb.chase.url,
    CHASE_TOKEN_URL: sb.chase.tokenUrl,
    CHASE_CLIENT_ID: sb.chase.clientId,
    CHASE_CLIENT_SECRET: sb.chase.clientSecret,
    CHASE_MERCHANT_ID: sb.chase.merchantId,
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '3000',
  };
  switch (name) {
    case 'auth':
      // Chase's 70-second rule: a charge whose answer was lost waits 70 s from the first empty lookup
      // of the process that holds it, and SIGKILLs restart that clock; the attempt budget must outlast it.
      return { ...common, PAYFLEET_RETRY_MAX_MS: '8000', ...processors, PAYMENT_TOKEN_SERVICE_URL: sb.tokens.url, PAYMENT_TOKEN_SERVICE_API_KEY: sb.tokens.apiKey, PAYMENT_TOKEN_SERVICE_TIMEOUT_MS: '8000' };
    case 'capture':
      // A capture that arrives while its Chase authorisation is still READY (the 70-second rule,
      // restarted by each SIGKILL) waits NOT_YET_AUTHORISED; its attempt budget must outlast that too.
      return {
        ...common,
        PAYFLEET_RETRY_MAX_MS: '8000',
        ...processors,
        CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '16',
        AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
        CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '1',
        CAPTURE_PROCESS_MAXIMUM_RETRIES: '60',
      };
    case 'refund':
      // A Chase refund whose answer was lost in a killed worker waits out the 70-second window in the
      // next one (its request may still be processing); the attempt budget must outlast that. Refunds
      // the processor confirms later (Worldpay) are looked up again after 1 s, doubling.
      return { ...common, PAYFLEET_RETRY_MAX_MS: '8000', ...processors, REFUND_CONFIRMATION_DELAY_SECONDS: '1' };
    case 'ledger':
      return { ...common, PAYFLEET_LEDGER_POLL_MS: '200', PAYFLEET_LEDGER_REBALANCE_MS: '1000', PAYFLEET_LEDGER_RETRY_BASE_MS: '200', PAYFLEET_LEDGER_SWEEP_INTERVAL_MS: '2000' };
    case 'payout':
      return {
        ...common,
        LHV_API_BASE_URL: sb.lhv.url,
        LHV_ALLOW_INSECURE_HTTP: 'true',
        LHV_DEBTOR_NAME: 'Payfleet Ltd',
        LHV_DEBTOR_IBAN: 'EE382200221020145685',
        LHV_DEBTOR_BIC: 'LHVBEE22',
        PAYFLEET_PAYOUT_INITIATION_POLL_MS: '300',
        PAYFLEET_PAYOUT_RESPONSE_POLL_MS: '300',
        PAYFLEET_PAYOUT_READINESS_POLL_MS: '300',
        PAYFLEET_PAYOUT_SHARD_LEASE_MS: '10000',
        PAYFLEET_PAYOUT_SHARD_RENEW_MS: '3000',
        PAYFLEET_PAYOUT_SHARD_BACKOFF_MS: '1000',
        PAYFLEET_PAYOUT_RETRY_BASE_MS: '200',
      };
  }
}

export interface Fleet {
  readonly processes: WorkerProcess[];
  start(name: WorkerName): WorkerProcess;
  live(): { name: WorkerName; p: WorkerProcess }[];
  /** SIGKILL one random live worker and start a fresh one of the same kind. */
  killOne(): WorkerName | undefined;
  /**
   * SIGSTOP one random live worker for `ms` (past its leases), then SIGCONT: it wakes up holding
   * work whose leases another process has taken over, and must not be able to commit it.
   */
  pauseOne(ms: number): WorkerName | undefined;
  /** Resolves once every worker paused so far has been continued (SIGCONT). */
  resumed(): Promise<void>;
  stopAll(): Promise<void>;
  raw(): string;
}

export function createFleet(stack: TestStack, sb: Sandboxes): Fleet {
  const all: { name: WorkerName; p: WorkerProcess }[] = [];
  const isLive = (p: WorkerProcess) => p.child.exitCode === null && p.child.signalCode === null;
  const pauses: Promise<void>[] = [];
  const fleet: Fleet = {
    processes: [],
    start(name) {
      const p = startProcess('bin/payfleet.js', ['worker', name], workerEnv(stack, sb, name));
      all.push({ name, p });
      fleet.processes.push(p);
      return p;
    },
    live: () => all.filter((w) => isLive(w.p)),
    killOne() {
      const live = fleet.live();
      const victim = live[Math.floor(Math.random() * live.length)];
      if (!victim) return undefined;
      victim.p.kill('SIGKILL');
      fleet.start(victim.name);
      return victim.name;
    },
    pauseOne(ms) {
      const live = fleet.live();
      const victim = live[Math.floor(Math.random() * live.length)];
      if (!victim) return undefined;
      victim.p.kill('SIGSTOP');
      pauses.push(
        new Promise<void>((resolve) => {
          setTimeout(() => {
            victim.p.kill('SIGCONT');
            resolve();
          }, ms).unref();
        }),
      );
      return victim.name;
    },
    resumed: async () => {
      await Promise.all(pauses);
    },
    async stopAll() {
      const live = fleet.live();
      for (const w of live) w.p.kill('SIGTERM');
      await Promise.all(live.map((w) => w.p.exited));
    },
    raw: () => all.map((w) => w.p.raw()).join('\n'),
  };
  return fleet;
}

/** Every item of a table (paginated Scan, projected). */
export async function scanAll<T>(stack: TestStack, table: 'charges' | 'events' | 'payouts' | 'refunds', projection: string, names: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await stack.clients.doc.send(
      new ScanCommand({
        TableName: stack.names.table(table),
        ProjectionExpression: projection,
        ...(Object.keys(names).length > 0 ? { ExpressionAttributeNames: names } : {}),
        ExclusiveStartKey: start,
        ConsistentRead: true,
      }),
    );
    out.push(...((page.Items ?? []) as T[]));
    start = page.LastEvaluatedKey;
  } while (start);
  return out;
}
