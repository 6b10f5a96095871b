/**
 * `payfleet worker payout`: LHV bank payouts (docs/payouts.md). CheckoutApprovalAccepted events are
 * stored per shard under shard leases, batched into pain.001 requests of up to 100 under a stored
 * idempotency key, and settled from LHV's pain.002 reports. Nothing runs at import time.
 */
import { createLhvClient } from './lhv/client.js';
import { payoutEnvShape, payoutInvariants, toPayoutSettings } from './config.js';
import { createPayoutWorker } from './service.js';
import { defineWorker, runWorker } from '../../shared/runtime/worker-kit.js';

/** The payout worker's own variables (the infra tests read this export). */
export { payoutEnvShape };

/** `payfleet worker payout`, declared. */
export function payoutWorker() {
  return defineWorker({
    worker: 'payout',
    env: payoutEnvShape,
    refine: (env, ctx) => payoutInvariants(env, ctx),
    settings: (env) => toPayoutSettings(env),
    build: async (kit) => {
      const s = kit.settings.lhv;
      // The composition root builds the one LHV client; everything else gets it injected.
      const lhv = createLhvClient({
        baseUrl: s.baseUrl,
        ...(s.cert ? { cert: s.cert } : {}),
        ...(s.key ? { key: s.key } : {}),
        ...(s.ca ? { ca: s.ca } : {}),
        timeoutMs: s.timeoutMs,
        maxConnections: s.maxConnections,
        heartbeatMqMethod: s.heartbeatMqMethod,
        allowInsecureHttp: s.allowInsecureHttp,
        logger: kit.log,
        guard: kit.httpGuard('lhv'),
      });
      kit.breakers.get('lhv').setProbe((signal) => lhv.heartbeat({ signal }));
      const plan = await createPayoutWorker(kit, lhv);
      kit.log.info(
        {
          shards: kit.settings.shards,
          shardLeaseMs: kit.settings.shardLease.leaseMs,
          shardRenewMs: kit.settings.shardLease.renewMs,
          batchSize: kit.settings.initiation.batchSize,
          lhv: new URL(s.baseUrl).origin,
        },
        'payout worker configured',
      );
      return plan;
    },
  });
}

/** Run the payout worker in this process until SIGTERM. */
export async function main(): Promise<void> {
  await runWorker(payoutWorker());
}
