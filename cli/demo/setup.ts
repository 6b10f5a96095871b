/**
 * How `npm start` configures the fleet: the demo's resource prefix and shard counts, the faults the
 * sandboxes inject, each worker's environment (short waits and delays so a demo takes a minute, not
 * an hour), and the two optional parts it loads at run time (the payout worker and the reference
 * Ledger consumer).
 */
import { tmpdir } from 'node:os';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { EmbeddedStack } from '../embedded/stack.js';
import type { SandboxServeOptions, SandboxServices } from '../sandbox/serve.js';
import type { DemoWorkerName } from './fleet.js';
import { DEMO_DEBTOR } from './load.js';
import type { LedgerReportLike } from './summary.js';

export const PREFIX = 'payfleet-';
export const SHARDS = 8;
export const SHUTDOWN_GRACE_MS = 5000;
export const FORCE_EXIT_MS = 9000;
/** Receives before SQS moves a message itself; above PAYFLEET_MAX_ATTEMPTS so workers decide first. */
export const MAX_RECEIVE_COUNT = 30;

/**
 * Faults the sandboxes inject (cli/sandbox/faults.ts): retries and ambiguous outcomes the workers
 * must survive without a double charge or payout. Worldpay's captures fail often, so captures are
 * seen failing and succeeding on a later attempt.
 */
export const DEMO_FAULTS: NonNullable<SandboxServeOptions['faults']> = {
  tokenService: { rate5xx: 0.03, seed: 11 },
  stripe: { rate5xx: 0.02, rateTimeoutAfterSuccess: 0.02, seed: 12 },
  worldpay: { rate5xx: 0.3, paths: ['/jsp/merchant/xml/paymentService.jsp/capture'], seed: 13 },
  chase: { rate5xx: 0.02, rateTimeoutAfterSuccess: 0.02, seed: 15 },
  lhv: { rate5xx: 0.05, rateTimeoutAfterSuccess: 0.03, paths: ['/payment'], seed: 14 },
};

/** The environment of one worker process: only what it needs, as an ECS task definition would set. */
export function workerEnv(name: DemoWorkerName, stack: EmbeddedStack, sb: SandboxServices): Record<string, string> {
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? tmpdir(),
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
    ...stack.env,
    PAYFLEET_RESOURCE_PREFIX: PREFIX,
    PAYFLEET_LOG_LEVEL: 'info',
    PAYFLEET_CONCURRENCY: '20',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '10',
    PAYFLEET_HEARTBEAT_SEC: '3',
    PAYFLEET_MAX_ATTEMPTS: '15',
    PAYFLEET_RETRY_BASE_MS: '200',
    PAYFLEET_RETRY_MAX_MS: '2000',
    PAYFLEET_LEASE_MS: '6000',
    PAYFLEET_LEASE_RENEW_MS: '2000',
    PAYFLEET_SHUTDOWN_GRACE_MS: String(SHUTDOWN_GRACE_MS),
    PAYFLEET_FORCE_EXIT_MS: String(FORCE_EXIT_MS),
    PAYFLEET_LEDGER_SHARDS: String(SHARDS),
  };
  const processors = {
    STRIPE_API_BASE_URL: sb.env.STRIPE_API_BASE_URL!,
    STRIPE_API_KEY: sb.env.STRIPE_API_KEY!,
    WORLDPAY_API_BASE_URL: sb.env.WORLDPAY_API_BASE_URL!,
    WORLDPAY_MERCHANT_CODE: sb.env.WORLDPAY_MERCHANT_CODE!,
    WORLDPAY_USERNAME: sb.env.WORLDPAY_USERNAME!,
    WORLDPAY_PASSWORD: sb.env.WORLDPAY_PASSWORD!,
    CHASE_API_BASE_URL: sb.env.CHASE_API_BASE_URL!,
    CHASE_TOKEN_URL: sb.env.CHASE_TOKEN_URL!,
    CHASE_CLIENT_ID: sb.env.CHASE_CLIENT_ID!,
    CHASE_CLIENT_SECRET: sb.env.CHASE_CLIENT_SECRET!,
    CHASE_MERCHANT_ID: sb.env.CHASE_MERCHANT_ID!,
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '2000',
  };
  switch (name) {
    case 'auth':
      return {
        ...base,
        ...processors,
        PAYMENT_TOKEN_SERVICE_URL: sb.env.PAYMENT_TOKEN_SERVICE_URL!,
        PAYMENT_TOKEN_SERVICE_API_KEY: sb.env.PAYMENT_TOKEN_SERVICE_API_KEY!,
        PAYMENT_TOKEN_SERVICE_TIMEOUT_MS: '2000',
      };
    case 'capture':
      return {
        ...base,
        ...processors,
        CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '1',
        CAPTURE_PROCESS_MAXIMUM_RETRIES: '10',
        CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '20',
        AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
        PAYFLEET_CAPTURE_GAUGE_REFRESH_MS: '1000',
        CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER: '30s',
      };
    case 'refund':
      return { ...base, ...processors, REFUND_CONFIRMATION_DELAY_SECONDS: '1' };
    case 'ledger':
      return { ...base, PAYFLEET_LEDGER_POLL_MS: '100', PAYFLEET_LEDGER_REBALANCE_MS: '2000' };
    case 'payout':
      return {
        ...base,
        PAYFLEET_PAYOUT_SHARDS: String(SHARDS),
        LHV_API_BASE_URL: sb.env.LHV_API_BASE_URL!,
        LHV_TIMEOUT_MS: '2000',
        LHV_DEBTOR_NAME: DEMO_DEBTOR.name,
        LHV_DEBTOR_IBAN: DEMO_DEBTOR.iban,
        LHV_DEBTOR_BIC: DEMO_DEBTOR.bic,
        PAYFLEET_PAYOUT_SHARD_LEASE_MS: '6000',
        PAYFLEET_PAYOUT_SHARD_RENEW_MS: '2000',
        PAYFLEET_PAYOUT_SHARD_BACKOFF_MS: '500',
        PAYFLEET_PAYOUT_INITIATION_POLL_MS: '200',
        PAYFLEET_PAYOUT_BATCH_QUIET_MS: '300',
        PAYFLEET_PAYOUT_BATCH_MAX_WAIT_MS: '2000',
        PAYFLEET_PAYOUT_SEND_ATTEMPTS: '6',
        PAYFLEET_PAYOUT_RETRY_BASE_MS: '100',
        PAYFLEET_PAYOUT_RETRY_MAX_MS: '1000',
        PAYFLEET_PAYOUT_RESPONSE_POLL_MS: '200',
        PAYFLEET_PAYOUT_READINESS_POLL_MS: '300',
        PAYFLEET_PAYOUT_READINESS_RECHECK_MS: '5000',
      };
  }
}

/** The reference Ledger consumer (test/support/ledger-consumer.ts): the oracle shares no code with the emitter. */
export interface LedgerConsumerLike {
  pollOnce(waitSec?: number): Promise<number>;
  drain(idleMs?: number): Promise<void>;
  events(): readonly {
    readonly raw: string;
    readonly body: {
      readonly resource_external_id: string;
      readonly resource_type: string;
      readonly sequence: number;
      readonly event_type: string;
      readonly parent_resource_external_id?: string;
    };
  }[];
  report(): LedgerReportLike;
  missingAgainst(expected: ReadonlyMap<string, number>): string[];
  readonly uniqueCount: number;
}

export async function loadLedgerConsumer(sqs: SQSClient, queueUrl: string): Promise<LedgerConsumerLike> {
  // Not a static import: the container image (dist/, no test/) must build without it.
  const specifier = new URL('../../test/support/ledger-consumer.ts', import.meta.url).href;
  let mod: { LedgerConsumer: new (o: { sqs: SQSClient; queueUrl: string; visibilityTimeoutSec?: number }) => LedgerConsumerLike };
  try {
    mod = (await import(specifier)) as typeof mod;
  } catch (err) {
    throw new Error(
      `npm start needs the reference Ledger consumer test/support/ledger-consumer.ts (run it from a checkout): ${(err as Error).message}`,
    );
  }
  return new mod.LedgerConsumer({ sqs, queueUrl, visibilityTimeoutSec: 30 });
}
