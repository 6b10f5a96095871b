/**
 * The ledger emitter's own environment variables (on top of the common worker ones). Units are in
 * the names; every default is documented here and in docs/design.md "## Ledger emitter".
 */
import type { z } from 'zod';
import { bool, int } from '../../shared/config/env.js';

export const ledgerEnvShape = {
  /** Most ledger shards one process holds; 0 = no cap beyond its fair share (shards / live emitters). @default 0 */
  PAYFLEET_LEDGER_MAX_SHARDS_PER_PROCESS: int(0, { min: 0, max: 256 }),
  /** Wait between two passes of a shard that had nothing to send. @default 1000 */
  PAYFLEET_LEDGER_POLL_MS: int(1000, { min: 10, max: 60_000 }),
  /** Membership heartbeat and shard acquire/release period. @default 5000 */
  PAYFLEET_LEDGER_REBALANCE_MS: int(5000, { min: 50, max: 300_000 }),
  /** Pending events read from the `pending` index per shard pass. @default 500 */
  PAYFLEET_LEDGER_MAX_EVENTS_PER_PASS: int(500, { min: 1, max: 10_000 }),
  /** Entries per SendMessageBatch (SQS allows at most 10). @default 10 */
  PAYFLEET_LEDGER_BATCH_SIZE: int(10, { min: 1, max: 10 }),
  /** First back-off after an event's send failed; doubles per failure. @default 1000 */
  PAYFLEET_LEDGER_RETRY_BASE_MS: int(1000, { min: 0, max: 3_600_000 }),
  /** Failed sends of one event before the long do-not-retry back-off. @default 3 */
  PAYFLEET_LEDGER_MAX_SEND_FAILURES: int(3, { min: 1, max: 1000 }),
  /** The long back-off after repeated failures (pay-connector's DEFAULT_DO_NOT_RETRY_EMITTING_EVENT_UNTIL_DURATION_IN_SECONDS). @default 7200 */
  PAYFLEET_LEDGER_DO_NOT_RETRY_SEC: int(7200, { min: 1, max: 30 * 86_400 }),
  /** Sweeper: an event still pending this long after it was written is re-emitted by the sweeper (pay-connector: 1800). @default 1800 */
  PAYFLEET_LEDGER_SWEEP_AGE_SEC: int(1800, { min: 1, max: 30 * 86_400 }),
  /** Sweeper period. @default 60000 */
  PAYFLEET_LEDGER_SWEEP_INTERVAL_MS: int(60_000, { min: 50, max: 86_400_000 }),
  /** Stale events the sweeper looks at per run. @default 1000 */
  PAYFLEET_LEDGER_SWEEP_MAX_EVENTS: int(1000, { min: 1, max: 100_000 }),
  /** Run the sweeper in this process (it takes the `ledger-sweeper` lease, so one runs fleet-wide at a time). @default true */
  PAYFLEET_LEDGER_SWEEPER: bool(true),
} as const;

export type LedgerEnv = z.output<z.ZodObject<typeof ledgerEnvShape>>;

/** The emitter's settings, parsed once and frozen by the worker kit. */
export interface LedgerSettings {
  readonly maxShardsPerProcess: number;
  readonly pollMs: number;
  readonly rebalanceMs: number;
  readonly maxEventsPerPass: number;
  readonly batchSize: number;
  readonly retryBaseMs: number;
  readonly maxSendFailures: number;
  readonly doNotRetryMs: number;
  readonly sweepAgeMs: number;
  readonly sweepIntervalMs: number;
  readonly sweepMaxEvents: number;
  readonly sweeper: boolean;
}

export function toLedgerSettings(env: LedgerEnv): LedgerSettings {
  return {
    maxShardsPerProcess: env.PAYFLEET_LEDGER_MAX_SHARDS_PER_PROCESS,
    pollMs: env.PAYFLEET_LEDGER_POLL_MS,
    rebalanceMs: env.PAYFLEET_LEDGER_REBALANCE_MS,
    maxEventsPerPass: env.PAYFLEET_LEDGER_MAX_EVENTS_PER_PASS,
    batchSize: env.PAYFLEET_LEDGER_BATCH_SIZE,
    retryBaseMs: env.PAYFLEET_LEDGER_RETRY_BASE_MS,
    maxSendFailures: env.PAYFLEET_LEDGER_MAX_SEND_FAILURES,
    doNotRetryMs: env.PAYFLEET_LEDGER_DO_NOT_RETRY_SEC * 1000,
    sweepAgeMs: env.PAYFLEET_LEDGER_SWEEP_AGE_SEC * 1000,
    sweepIntervalMs: env.PAYFLEET_LEDGER_SWEEP_INTERVAL_MS,
    sweepMaxEvents: env.PAYFLEET_LEDGER_SWEEP_MAX_EVENTS,
    sweeper: env.PAYFLEET_LEDGER_SWEEPER,
  };
}

/** Defaults, for in-process use (tests, bench) with selective overrides. */
export const DEFAULT_LEDGER_SETTINGS: LedgerSettings = Object.freeze({
  maxShardsPerProcess: 0,
  pollMs: 1000,
  rebalanceMs: 5000,
  maxEventsPerPass: 500,
  batchSize: 10,
  retryBaseMs: 1000,
  maxSendFailures: 3,
  doNotRetryMs: 7_200_000,
  sweepAgeMs: 1_800_000,
  sweepIntervalMs: 60_000,
  sweepMaxEvents: 1000,
  sweeper: true,
});

/**
 * Cross-field checks, one line per problem. The membership heartbeat must come well inside the
 * lease: a member whose heartbeat is older than 3 periods is presumed gone, and its shards must
 * expire on their own by then too.
 */
export function ledgerInvariants(env: LedgerEnv & { PAYFLEET_LEASE_MS: number }, ctx: z.RefinementCtx): void {
  if (env.PAYFLEET_LEDGER_REBALANCE_MS * 2 > env.PAYFLEET_LEASE_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['PAYFLEET_LEDGER_REBALANCE_MS'],
      message: `must be at most half of PAYFLEET_LEASE_MS (${env.PAYFLEET_LEASE_MS}) so shards are rebalanced before leases lapse`,
    });
  }
  if (env.PAYFLEET_LEDGER_SWEEP_AGE_SEC >= 1 && env.PAYFLEET_LEDGER_SWEEP_AGE_SEC * 1000 <= env.PAYFLEET_LEDGER_POLL_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['PAYFLEET_LEDGER_SWEEP_AGE_SEC'],
      message: `must exceed PAYFLEET_LEDGER_POLL_MS (${env.PAYFLEET_LEDGER_POLL_MS} ms): the sweeper is for events the shard loops cannot reach`,
    });
  }
}
