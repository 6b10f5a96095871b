/**
 * The one list of payfleet's workers. The `payfleet worker` command, the demo (`npm start`),
 * `payfleet dev`, the CDK stack and the tests all read it; adding a worker is one entry here and a
 * folder beside this file.
 *
 * Each entry: the queue it consumes (none for the ledger emitter, which reads the outbox), a one-line
 * summary, and `run`, which starts it in this process until SIGTERM (shared/runtime/worker-kit.ts).
 * `run` names the worker's module with a literal `import()`: tsc checks it like any import and a
 * reader can follow it, and the module (with the AWS SDK and everything a worker needs) loads only
 * when the worker runs, so reading this list — `payfleet --help`, `payfleet dev`, the CDK app — stays
 * cheap.
 */
import type { QueueKey } from '../shared/resources.js';

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
    run: async () => (await import('./auth/main.js')).main(),
  },
  capture: {
    queue: 'capture-requests',
    summary: "CaptureRequested: GOV.UK Pay's background capture, deferred retries, CAPTURE_ERROR after the maximum",
    run: async () => (await import('./capture/main.js')).main(),
  },
  payout: {
    queue: 'payout-events',
    summary: 'CheckoutApprovalAccepted: LHV payouts in batches of up to 100 under a stored idempotency key',
    run: async () => (await import('./payout/main.js')).main(),
  },
  ledger: {
    queue: undefined,
    summary: 'the outbox to ledger-events.fifo, in per-resource order',
    run: async () => (await import('./ledger/main.js')).main(),
  },
  refund: {
    queue: 'refund-requests',
    summary: 'RefundRequested: refund at most once at the processor, never beyond the captured amount',
    run: async () => (await import('./refund/main.js')).main(),
  },
} as const satisfies Record<string, WorkerEntry>;

export type WorkerName = keyof typeof WORKERS;

/** Every worker's name, in the order above. */
export const WORKER_NAMES = Object.keys(WORKERS) as WorkerName[];

export function isWorkerName(name: string): name is WorkerName {
  return Object.hasOwn(WORKERS, name);
}
