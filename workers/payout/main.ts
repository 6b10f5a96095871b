/**
 * `payfleet worker payout`: LHV bank payouts (docs/payouts.md). CheckoutApprovalAccepted events are
 * stored per shard under shard leases, batched into pain.001 requests of up to 100 under a stored
 * idempotency key, and settled from LHV's pain.002 reports. Nothing runs at import time.
 */
import { payoutEnvShape, payoutVariables } from './config.js';
import { buildPayoutWorker } from './service.js';
import { defineWorker, runWorker } from '../../shared/runtime/worker-kit.js';

/** The payout worker's own variables (the infra tests read this export). */
export { payoutEnvShape };

/** `payfleet worker payout`, declared: what it builds from the kit is in service.ts. */
export function payoutWorker() {
  return defineWorker({ worker: 'payout', ...payoutVariables, build: buildPayoutWorker });
}

/** Run the payout worker in this process until SIGTERM. */
export async function main(): Promise<void> {
  await runWorker(payoutWorker());
}
