/**
 * The payout worker's plan for the kit (workers/payout/main.ts declares it; runWorker runs it like
 * every other worker): the payout-events consumer, paused unless this process is ready for
 * processing; the readiness monitor; the shard pool with one initiator loop per held shard; the LHV
 * response poller (running from the start, ready or not, so reports are applied while ingestion is
 * paused).
 *
 * Ingestion ("ReadyForProcessing") = readiness passed AND at least one shard held. Otherwise the
 * consumer's receive gate is paused: no ReceiveMessage goes out, because every receive counts
 * towards the queue's maxReceiveCount whatever the consumer does with the message ("put back with
 * visibility 0" in a loop would send good payouts to the DLQ). The accept gate covers the messages
 * of a long poll that was open when the last shard went (handed back at once, no attempt counted).
 *
 *   start ── gate paused (not ready) ── ready ── shard acquired ── gate resumed ── receiving ─┐
 *   last shard lost (lease, rebalance) ── gate paused: the open long poll finishes, no next one ┘
 *
 * Graceful shutdown (SIGTERM; runWorker's stages, all within one grace period from the signal):
 *   1. readiness 503, kit.stopping aborts: the readiness monitor stops, no new shard is taken;
 *   2. the consumer stops receiving, lets its open long poll finish, finishes the ingestions in hand
 *      (their commits need the shard leases, still held) and hands the rest back (visibility 0);
 *   3. (background stage) the response poller finishes the LHV message in hand (commit + DELETE)
 *      and releases its lease;
 *   4. each shard loop starts nothing new; a POST /payment in flight is allowed to finish and its
 *      202 committed; past the grace it is aborted (ambiguous: the batch stays PENDING with its key,
 *      the next holder resends the identical request and LHV de-duplicates it);
 *   5. only then each shard lease is released (so nobody can initiate it twice), the membership
 *      entry removed, LHV connections closed.
 * Ungraceful (SIGKILL, OOM, host loss): nothing in memory matters. Leases lapse after leaseMs and
 * are taken by another worker at its next tick; SQS re-delivers unacknowledged events after their
 * visibility timeout (a stored payout row makes them duplicates); LHV re-delivers
 * undeleted messages; batches resume from their rows (docs/payouts.md "Ungraceful shutdown").
 */
import { ReceiveGate } from '../../shared/core/receive-gate.js';
import { createShardPool } from '../../shared/core/shard-pool.js';
import type { ReadinessCheck } from '../../shared/ops/server.js';
import { payoutShardKey } from '../../shared/resources.js';
import { sqsCheck, tableCheck, type WorkerKit, type WorkerPlan } from '../../shared/runtime/worker-kit.js';
import { createBatchStore } from './batches.js';
import type { PayoutSettings } from './config.js';
import { createIngestHandler, NOT_READY } from './ingest.js';
import { createIngestStore } from './ingest-store.js';
import { createInitiator } from './initiator.js';
import { createLhvClient, type LhvClient } from './lhv/client.js';
import { createPayoutMembership, createShardKeeper } from './leases.js';
import { createPayoutMetrics } from './metrics.js';
import { createReadinessMonitor } from './readiness.js';
import { createPayoutRepository } from './repo.js';
import { createResponsePoller } from './responses.js';
import { parseCheckoutApprovalAccepted, type CheckoutApprovalAccepted } from './schema.js';

/** The payout worker's build step: the one LHV client, then everything that uses it. */
export async function buildPayoutWorker(kit: WorkerKit<PayoutSettings>): Promise<WorkerPlan<CheckoutApprovalAccepted>> {
  const s = kit.settings.lhv;
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
}

/** The plan around an LHV client (tests and benchmarks may bring their own client). */
export async function createPayoutWorker(
  kit: WorkerKit<PayoutSettings>,
  lhv: LhvClient,
): Promise<WorkerPlan<CheckoutApprovalAccepted>> {
  const { settings, log } = kit;
  const metrics = createPayoutMetrics(kit.metrics.registry);
  const repo = createPayoutRepository(kit.clients.doc, kit.names);
  const batches = createBatchStore({ outcomes: kit.outcomes, repo, metrics, log });
  const keeper = createShardKeeper({
    store: kit.leases,
    leaseMs: settings.shardLease.leaseMs,
    renewMs: settings.shardLease.renewMs,
    allowTight: settings.shardLease.allowTight,
    log,
    onLost: (lease, reason) => {
      kit.metrics.leaseConflicts.inc({ kind: 'LEASE_LOST' });
      log.warn({ lease: lease.key, reason: String(reason) }, 'payout lease lost');
    },
  });
  const queueUrl = await kit.queueUrl('payout-events');

  // Receive only while ready and holding a shard; the consumer itself belongs to runWorker.
  const ingestion = new ReceiveGate('not ready for processing: readiness checks have not passed');
  const initiator = createInitiator({ lhv, repo, batches, metrics, log, debtor: settings.debtor, settings: settings.initiation });
  const { backoffMs, leaseMs } = settings.shardLease;
  const shards = createShardPool({
    label: 'payout',
    keeper,
    membership: createPayoutMembership({ doc: kit.clients.doc, names: kit.names }),
    ownerId: kit.ownerId,
    shards: Array.from({ length: settings.shards }, (_, i) => payoutShardKey(i)),
    periodMs: backoffMs,
    leaseMs,
    memberTtlMs: 3 * backoffMs + leaseMs,
    maxShardsPerProcess: settings.shardLease.maxShardsPerProcess,
    rebalanceGraceMs: backoffMs + 10_000,
    uncovered: 'payouts in the unheld shards wait until a worker holds them',
    runShard: (slot) => initiator.runShard(slot),
    onChange: (held) => {
      metrics.shardsHeld.set(held);
      updateIngestion();
    },
    stopping: kit.stopping,
    log,
  });
  const responses = createResponsePoller({
    lhv,
    repo,
    batches,
    outcomes: kit.outcomes,
    keeper,
    ownerId: kit.ownerId,
    metrics,
    log,
    pollMs: settings.responses.pollMs,
    leaseBackoffMs: backoffMs,
  });

  const cheap: ReadinessCheck[] = [
    tableCheck(kit, 'payouts', { paymentId: 'readiness-probe' }),
    tableCheck(kit, 'batches', { batchId: 'readiness-probe' }),
    // The "configuration table" row: the first shard's lease row.
    tableCheck(kit, 'leases', { leaseKey: payoutShardKey(0) }),
    sqsCheck(kit.clients.sqs, async () => queueUrl),
    { name: 'lhv:heartbeat', check: (signal) => lhv.heartbeat({ signal }) },
  ];
  const monitor = createReadinessMonitor({
    checks: cheap,
    lhv,
    pollMs: settings.readiness.pollMs,
    recheckMs: settings.readiness.recheckMs,
    timeoutMs: Math.min(10_000, Math.max(2_000, settings.lhv.timeoutMs)),
    log,
    metrics,
    onReady: () => {
      metrics.ready.set(1);
      shards.start();
      updateIngestion();
    },
  });
  metrics.ready.set(0);

  function updateIngestion(): void {
    const wanted = monitor.ready && shards.pick() !== undefined && !kit.stopping.aborted;
    if (wanted && ingestion.pausedFor !== undefined) {
      ingestion.resume();
      log.info('ingestion started: receiving CheckoutApprovalAccepted');
    } else if (!wanted && ingestion.pausedFor === undefined) {
      ingestion.pause('not ready for processing: no payout shard held');
      if (!kit.stopping.aborted) log.warn('ingestion paused: no payout shard held; events stay on the queue');
    }
  }

  // One grace period for the whole shutdown, counted from the signal (the consumer's drain included).
  let shutdownAt: number | undefined;
  kit.stopping.addEventListener(
    'abort',
    () => {
      shutdownAt = Date.now();
      void monitor.stop();
    },
    { once: true },
  );

  return {
    consume: {
      queue: 'payout-events',
      parse: parseCheckoutApprovalAccepted,
      handle: createIngestHandler({
        pick: () => shards.pick(),
        store: createIngestStore({ doc: kit.clients.doc, names: kit.names, ledgerShards: kit.config.ledgerShards }),
        metrics,
        live: settings.live,
        log,
        onStored: (shard, count) => initiator.ingested(shard, count),
      }),
      gate: ingestion,
      acceptGate: () => (shards.pick() ? undefined : NOT_READY),
    },
    background: [
      {
        name: 'payouts',
        start: () => {
          monitor.start();
          // Not gated on readiness: LHV's answers are applied while ingestion is paused (responses.ts).
          responses.start();
        },
        async stop(graceMs) {
          const deadline = (shutdownAt ?? Date.now()) + graceMs;
          const left = () => Math.max(0, deadline - Date.now());
          const stage = async (name: string, run: () => Promise<void>) => {
            try {
              await run();
            } catch (err) {
              log.warn({ err, stage: name }, 'payout shutdown stage failed');
            }
          };
          await stage('readiness', () => monitor.stop());
          await stage('shard-ticks', () => shards.stopAcquiring());
          await stage('responses', () => responses.stop(left()));
          await stage('shards', () => shards.stop(left()));
          await stage('lhv', () => lhv.close());
          log.info('payout worker stopped');
        },
      },
    ],
    checks: [...cheap, monitor.queueCheck],
    status: () => ({
      readyForProcessing: monitor.ready && shards.held().length > 0,
      shards: shards.held(),
      responsePoller: responses.holding(),
    }),
  };
}
