/**
 * The one list of payfleet's workers. The `payfleet worker` command, the demo (`npm start`),
 * `payfleet dev`, the CDK stack and the tests all read it; adding a worker is one entry here and a
 * folder beside this file.
 *
 * Each entry: the queue it consumes (none for the ledger emitter, which reads the outbox), a one-line
 * summary, and `run`, which starts it in this process until SIGTERM (shared/runtime/worker-kit.ts).
 */
import type { QueueKey } from '../shared/resources.js';
import { runWorker } from '../shared/runtime/worker-kit.js';
import { authWorker } from './auth/main.js';
import { captureWorker } from './capture/main.js';
import { ledgerWorker } from './ledger/main.js';
import { payoutWorker } from './payout/main.js';

export interface WorkerEntry {
  /** The queue it consumes; undefined for a worker that consumes none. */
  readonly queue: QueueKey | undefined;
  readonly summary: string;
  /** Run the worker in this process until SIGTERM. */
  run(): Promise<void>;
}

export const WORKERS = {
  auth: {
    queue: 'auth-requests',
    summary: 'AuthorisationRequested: authorise exactly once at the processor, record the outcome',
    run: () => runWorker(authWorker()),
  },
  capture: {
    queue: 'capture-requests',
    summary: "CaptureRequested: GOV.UK Pay's background capture, deferred retries, CAPTURE_ERROR after the maximum",
    run: () => runWorker(captureWorker()),
  },
  payout: {
    queue: 'payout-events',
    summary: 'CheckoutApprovalAccepted: LHV payouts in batches of up to 100 under a stored idempotency key',
    run: () => runWorker(payoutWorker()),
  },
  ledger: {
    queue: undefined,
    summary: 'the outbox to ledger-events.fifo, in per-resource order',
    run: () => runWorker(ledgerWorker()),
  },
} as const satisfies Record<string, WorkerEntry>;

export type WorkerName = keyof typeof WORKERS;

/** Every worker's name, in the order above. */
export const WORKER_NAMES = Object.keys(WORKERS) as WorkerName[];

export function isWorkerName(name: string): name is WorkerName {
  return Object.hasOwn(WORKERS, name);
}
