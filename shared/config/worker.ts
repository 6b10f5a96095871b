import { z } from 'zod';
import { awsCallBudgetMs, DEFAULT_AWS_DEADLINES, largestAttemptMsWithin } from '../aws/request-handler.js';
import { defaultLeaseMarginMs } from '../core/lease-keeper.js';
import { awsEnvShape, toAwsConfig, toAwsDeadlines, withAwsEndpointCheck, type AwsConfig } from './common.js';
import { int, parseEnv } from './env.js';

/**
 * Variables every worker reads (the consumer, leases, shutdown, ops). Units are in the names.
 * docs/operations.md lists them all; each worker adds its own on top (the `env` of its spec, workers/<name>/main.ts).
 */
export const workerEnvShape = {
  ...awsEnvShape,
  /** Port of /health/live, /health/ready and /metrics. @default 9400 */
  PAYFLEET_OPS_PORT: int(9400, { min: 0, max: 65535 }),
  /** pino level. @default info */
  PAYFLEET_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Messages processed at once across message groups. @default 10 */
  PAYFLEET_CONCURRENCY: int(10, { min: 1, max: 512 }),
  /** Messages per receive (SQS allows at most 10). @default 10 */
  PAYFLEET_BATCH_SIZE: int(10, { min: 1, max: 10 }),
  /** Long-poll wait. @default 20 */
  PAYFLEET_WAIT_TIME_SEC: int(20, { min: 0, max: 20 }),
  /** Visibility set on receive and renewed by the heartbeat. @default 30 */
  PAYFLEET_VISIBILITY_TIMEOUT_SEC: int(30, { min: 2, max: 43_200 }),
  /** Heartbeat period; at most half the visibility timeout. @default visibility / 3 */
  PAYFLEET_HEARTBEAT_SEC: int(0, { min: 0, max: 21_600 }),
  /** Attempts (counted on the work item) before RETRIES_EXHAUSTED. Keep below the DLQ maxReceiveCount. @default 8 */
  PAYFLEET_MAX_ATTEMPTS: int(8, { min: 1, max: 1000 }),
  /** First retry delay. @default 1000 */
  PAYFLEET_RETRY_BASE_MS: int(1000, { min: 0, max: 3_600_000 }),
  /** Longest retry delay. @default 300000 */
  PAYFLEET_RETRY_MAX_MS: int(300_000, { min: 0, max: 43_200_000 }),
  /** Lease duration. @default 30000 */
  PAYFLEET_LEASE_MS: int(30_000, { min: 100, max: 3_600_000 }),
  /** Lease renewal period; the lease must be at least twice this. @default 10000 */
  PAYFLEET_LEASE_RENEW_MS: int(10_000, { min: 50, max: 1_800_000 }),
  /** Time to drain in-flight work on SIGTERM before handing it back (covers the last long poll). @default 25000 */
  PAYFLEET_SHUTDOWN_GRACE_MS: int(25_000, { min: 0, max: 600_000 }),
  /** Hard exit after SIGTERM; must exceed the grace period (ECS stopTimeout must exceed this). @default 29000 */
  PAYFLEET_FORCE_EXIT_MS: int(29_000, { min: 1000, max: 900_000 }),
  /** Ledger outbox shards; the same value for every worker and for bootstrap. @default 8 */
  PAYFLEET_LEDGER_SHARDS: int(8, { min: 1, max: 256 }),
} as const;

export interface WorkerConfig {
  readonly aws: AwsConfig;
  readonly opsPort: number;
  readonly logLevel: string;
  readonly consumer: {
    readonly concurrency: number;
    readonly batchSize: number;
    readonly waitTimeSec: number;
    readonly visibilityTimeoutSec: number;
    readonly heartbeatSec: number;
    readonly maxAttempts: number;
    readonly retryBaseMs: number;
    readonly retryMaxMs: number;
  };
  readonly lease: { readonly leaseMs: number; readonly renewMs: number };
  readonly shutdownGraceMs: number;
  readonly forceExitMs: number;
  readonly ledgerShards: number;
}

type WorkerEnv = z.output<z.ZodObject<typeof workerEnvShape>>;

/** Shortest per-attempt AWS deadline a worker accepts (below it, ordinary latency would time out). */
export const MIN_AWS_ATTEMPT_MS = 100;

const heartbeatSecOf = (env: WorkerEnv) =>
  env.PAYFLEET_HEARTBEAT_SEC || Math.max(1, Math.floor(env.PAYFLEET_VISIBILITY_TIMEOUT_SEC / 3));

/**
 * How long one AWS call may go unanswered, all SDK attempts included, in a worker:
 *
 *   lease   0 ─ renew ✓ ──── renewMs ──── renew sent ──── (room) ────┤ margin ├ expiry
 *           a renewal sent on schedule must end (answer, or TimeoutError the keeper acts on)
 *           before the keeper gives the lease up: room = lease - renew period - margin
 *   message 0 ─ heartbeat ✓ ── heartbeatSec ── heartbeat sent ── (room) ──┤ visibility lapses
 *           room = visibility - heartbeat period (SQS only)
 *
 * So a lost answer becomes a retry while the lease (and the message) are still ours, instead of
 * the holder waiting for ever while it keeps renewing (issue 13).
 */
export function awsCallRoom(env: WorkerEnv): AwsCallRoom {
  const margin = defaultLeaseMarginMs(env.PAYFLEET_LEASE_MS);
  const heartbeatSec = heartbeatSecOf(env);
  const leaseMs = env.PAYFLEET_LEASE_MS - env.PAYFLEET_LEASE_RENEW_MS - margin;
  const visibilityMs = (env.PAYFLEET_VISIBILITY_TIMEOUT_SEC - heartbeatSec) * 1000;
  const leaseWhy =
    `a lease renewal has ${leaseMs} ms (PAYFLEET_LEASE_MS ${env.PAYFLEET_LEASE_MS} - PAYFLEET_LEASE_RENEW_MS ` +
    `${env.PAYFLEET_LEASE_RENEW_MS} - margin ${margin})`;
  const visibilityWhy = `a visibility heartbeat has ${visibilityMs} ms (PAYFLEET_VISIBILITY_TIMEOUT_SEC - heartbeat ${heartbeatSec} s)`;
  return {
    dynamodb: { ms: leaseMs, why: leaseWhy },
    sqs: visibilityMs < leaseMs ? { ms: visibilityMs, why: visibilityWhy } : { ms: leaseMs, why: leaseWhy },
  };
}

export interface AwsCallRoom {
  /** DynamoDB calls (leases, work items, commits): the lease bound. */
  readonly dynamodb: { readonly ms: number; readonly why: string };
  /** SQS calls other than ReceiveMessage: the tighter of the lease and visibility bounds. */
  readonly sqs: { readonly ms: number; readonly why: string };
}

/**
 * Per-attempt deadlines of a worker's AWS calls: the variables where set, otherwise 5000 ms or
 * less, the largest that fits the room above (DynamoDB: the lease; SQS: lease and visibility).
 */
export function workerAwsDeadlines(env: WorkerEnv) {
  const room = awsCallRoom(env);
  const attempts = env.PAYFLEET_AWS_MAX_ATTEMPTS;
  return toAwsDeadlines(env, {
    dynamodbMs: Math.min(DEFAULT_AWS_DEADLINES.dynamodbMs, largestAttemptMsWithin(room.dynamodb.ms, attempts)),
    sqsMs: Math.min(DEFAULT_AWS_DEADLINES.sqsMs, largestAttemptMsWithin(room.sqs.ms, attempts)),
  });
}

/** Every AWS deadline, SDK retries included, fits below the lease (and SQS's below the visibility). */
function deadlineInvariants(env: WorkerEnv, ctx: z.RefinementCtx): void {
  const room = awsCallRoom(env);
  const deadlines = workerAwsDeadlines(env);
  const attempts = env.PAYFLEET_AWS_MAX_ATTEMPTS;
  const checks = [
    ['PAYFLEET_DYNAMODB_TIMEOUT_MS', 'DynamoDB', deadlines.dynamodbMs, room.dynamodb],
    ['PAYFLEET_SQS_TIMEOUT_MS', 'SQS', deadlines.sqsMs, room.sqs],
  ] as const;
  for (const [name, service, attemptMs, { ms: roomMs, why }] of checks) {
    const explicit = env[name] > 0;
    const budget = awsCallBudgetMs(attemptMs, attempts);
    if (explicit && budget > roomMs) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message:
          `${attempts} attempts (PAYFLEET_AWS_MAX_ATTEMPTS) of ${attemptMs} ms leave a ${service} call unanswered for up to ` +
          `${budget} ms, but ${why}; lower it or lengthen the lease`,
      });
    } else if (!explicit && attemptMs < MIN_AWS_ATTEMPT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: [why.startsWith('a lease') ? 'PAYFLEET_LEASE_MS' : 'PAYFLEET_VISIBILITY_TIMEOUT_SEC'],
        message:
          `too short to give ${service} calls a deadline of at least ${MIN_AWS_ATTEMPT_MS} ms with ${attempts} attempts: ` +
          `${why}; lengthen it, or lower PAYFLEET_AWS_MAX_ATTEMPTS`,
      });
    }
  }
}

/** Cross-field invariants, one line per problem, each naming its variables. */
export function workerInvariants(env: WorkerEnv, ctx: z.RefinementCtx): void {
  const heartbeat = heartbeatSecOf(env);
  if (heartbeat * 2 > env.PAYFLEET_VISIBILITY_TIMEOUT_SEC) {
    ctx.addIssue({
      code: 'custom',
      path: ['PAYFLEET_HEARTBEAT_SEC'],
      message: `must be at most half of PAYFLEET_VISIBILITY_TIMEOUT_SEC (${env.PAYFLEET_VISIBILITY_TIMEOUT_SEC})`,
    });
  }
  if (env.PAYFLEET_LEASE_MS < 2 * env.PAYFLEET_LEASE_RENEW_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['PAYFLEET_LEASE_MS'],
      message: `must be at least twice PAYFLEET_LEASE_RENEW_MS (${env.PAYFLEET_LEASE_RENEW_MS}); one slow renewal would lose the lease`,
    });
  } else if (heartbeat * 2 <= env.PAYFLEET_VISIBILITY_TIMEOUT_SEC) {
    // Only when lease and heartbeat are sane themselves: their own line already says what is wrong.
    deadlineInvariants(env, ctx);
  }
  if (env.PAYFLEET_RETRY_BASE_MS > env.PAYFLEET_RETRY_MAX_MS) {
    ctx.addIssue({ code: 'custom', path: ['PAYFLEET_RETRY_BASE_MS'], message: 'must not exceed PAYFLEET_RETRY_MAX_MS' });
  }
  if (env.PAYFLEET_FORCE_EXIT_MS <= env.PAYFLEET_SHUTDOWN_GRACE_MS) {
    ctx.addIssue({ code: 'custom', path: ['PAYFLEET_FORCE_EXIT_MS'], message: 'must exceed PAYFLEET_SHUTDOWN_GRACE_MS' });
  }
  if (env.PAYFLEET_WAIT_TIME_SEC * 1000 >= env.PAYFLEET_SHUTDOWN_GRACE_MS && env.PAYFLEET_SHUTDOWN_GRACE_MS > 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['PAYFLEET_SHUTDOWN_GRACE_MS'],
      message: `must exceed the long-poll wait PAYFLEET_WAIT_TIME_SEC (${env.PAYFLEET_WAIT_TIME_SEC}s) so the last poll can finish`,
    });
  }
}

/** Worker-specific schemas should wrap theirs in withAwsEndpointCheck too (see common.ts). */
export const workerEnvSchema = withAwsEndpointCheck(z.object(workerEnvShape).superRefine(workerInvariants));

export function toWorkerConfig(env: WorkerEnv): WorkerConfig {
  return {
    aws: { ...toAwsConfig(env), deadlines: workerAwsDeadlines(env) },
    opsPort: env.PAYFLEET_OPS_PORT,
    logLevel: env.PAYFLEET_LOG_LEVEL,
    consumer: {
      concurrency: env.PAYFLEET_CONCURRENCY,
      batchSize: env.PAYFLEET_BATCH_SIZE,
      waitTimeSec: env.PAYFLEET_WAIT_TIME_SEC,
      visibilityTimeoutSec: env.PAYFLEET_VISIBILITY_TIMEOUT_SEC,
      heartbeatSec: heartbeatSecOf(env),
      maxAttempts: env.PAYFLEET_MAX_ATTEMPTS,
      retryBaseMs: env.PAYFLEET_RETRY_BASE_MS,
      retryMaxMs: env.PAYFLEET_RETRY_MAX_MS,
    },
    lease: { leaseMs: env.PAYFLEET_LEASE_MS, renewMs: env.PAYFLEET_LEASE_RENEW_MS },
    shutdownGraceMs: env.PAYFLEET_SHUTDOWN_GRACE_MS,
    forceExitMs: env.PAYFLEET_FORCE_EXIT_MS,
    ledgerShards: env.PAYFLEET_LEDGER_SHARDS,
  };
}

/** Parse the common worker variables (tests and workers without extra settings). */
export function loadWorkerConfig(env: Record<string, string | undefined> = process.env): WorkerConfig {
  return toWorkerConfig(parseEnv(workerEnvSchema, env));
}
