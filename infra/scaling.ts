/**
 * How each worker scales, as data (test/infra pins it; docs/deployment.md explains it).
 *
 * Step scaling on SQS metrics (1-minute, Maximum):
 * - scale OUT on visible messages (backlog) and on the age of the oldest message (latency), fast;
 * - scale IN one task at a time only after the queue has had nothing visible for 15 minutes.
 *
 * capture does not scale on age: a capture that failed is deferred by making its message invisible
 * for CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS, so the oldest message is routinely
 * hours old while nothing is waiting — more tasks would not help. Its alarm watches the overdue
 * gauge instead.
 *
 * ledger consumes no queue: it scales on its own emission lag (the age of the oldest unemitted
 * outbox event, a custom metric from the metrics sidecar). payout and ledger never scale past their
 * shard counts: a task without a shard lease has nothing to do (config.ts maxTasksOf).
 */
import type { WorkerName } from './config.js';

export interface Step {
  /** Metric value at or above which `change` tasks are added. */
  readonly atLeast: number;
  readonly change: number;
}

export interface WorkerScaling {
  /** Visible messages in the source queue. */
  readonly depth?: { readonly out: readonly Step[]; readonly inWhenAtMost: number };
  /** ApproximateAgeOfOldestMessage, seconds. */
  readonly ageSec?: { readonly out: readonly Step[] };
  /** The ledger's emission lag, seconds (custom metric). */
  readonly ledgerLagSec?: { readonly out: readonly Step[]; readonly inWhenAtMost: number };
}

/** Consecutive 1-minute periods of an idle metric before one task is removed. */
export const SCALE_IN_AFTER_MINUTES = 15;
export const SCALE_OUT_COOLDOWN_SEC = 60;
export const SCALE_IN_COOLDOWN_SEC = 300;

export const SCALING: Readonly<Record<WorkerName, WorkerScaling>> = {
  auth: {
    depth: {
      out: [
        { atLeast: 50, change: 1 },
        { atLeast: 500, change: 3 },
      ],
      inWhenAtMost: 0,
    },
    ageSec: {
      out: [
        { atLeast: 60, change: 1 },
        { atLeast: 300, change: 2 },
      ],
    },
  },
  capture: {
    depth: {
      out: [
        { atLeast: 50, change: 1 },
        { atLeast: 500, change: 2 },
      ],
      inWhenAtMost: 0,
    },
  },
  refund: {
    depth: {
      out: [
        { atLeast: 50, change: 1 },
        { atLeast: 500, change: 2 },
      ],
      inWhenAtMost: 0,
    },
  },
  payout: {
    depth: {
      out: [
        { atLeast: 100, change: 1 },
        { atLeast: 1000, change: 2 },
      ],
      inWhenAtMost: 0,
    },
    ageSec: {
      out: [
        { atLeast: 120, change: 1 },
        { atLeast: 600, change: 2 },
      ],
    },
  },
  ledger: {
    ledgerLagSec: {
      out: [
        { atLeast: 30, change: 1 },
        { atLeast: 120, change: 2 },
      ],
      inWhenAtMost: 1,
    },
  },
};
