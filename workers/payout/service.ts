/**
 * The payout worker assembled from the kit (workers/payout/main.ts is its entrypoint): readiness
 * monitor, shard manager with one initiator loop per shard, the LHV response poller (running from
 * the start, ready or not, so reports are applied while ingestion is gated), and the payout-events
 * consumer that runs only while this process is ready for processing.
 *
 * Graceful shutdown (SIGTERM; runWorker calls stop(graceMs) in its background stage), in order,
 * all within one grace deadline:
 *   1. readiness monitor stops; no new shard is taken (stopTicking);
 *   2. the consumer stops receiving, lets its open long poll finish, finishes the ingestions in hand
 *      (their commits need the shard leases, still held) and hands the rest back (visibility 0);
 *   3. the response poller finishes the LHV message in hand (commit + DELETE) and releases its lease;
 *   4. each shard loop starts nothing new; a POST /payment in flight is allowed to finish and its
 *      202 committed; past the grace it is aborted (ambiguous: the batch stays PENDING with its key,
 *      the next holder resends the identical request and LHV de-duplicates it);
 *   5. only then each shard lease is released (so nobody can initiate it twice), the membership
 *      entry removed, LHV connections closed.
 * Ungraceful (SIGKILL, OOM, host loss): nothing in memory matters. Leases lapse after leaseMs and
 * are taken by another worker at its next tick; SQS re-delivers unacknowledged events after their
 * visibility timeout (the claim row makes them duplicates if they were stored); LHV re-delivers
 * undeleted messages; batches resume from their rows (docs/payouts.md "Ungraceful shutdown").
 */
import { FifoConsumer } from '../../shared/core/consumer.js';
import type { LhvClient } from './lhv/client.js';
import type { ReadinessCheck } from '../../shared/ops/server.js';
import { payoutShardKey } from '../../shared/resources.js';
import { sqsCheck, tableCheck, type BackgroundTask, type WorkerKit } from '../../shared/runtime/worker-kit.js';
import { createBatchStore } from './batches.js';
import type { PayoutSettings } from './config.js';
import { createIngestHandler, NOT_READY } from './ingest.js';
import { createInitiator } from './initiator.js';
import { createPayoutMembership, createShardKeeper } from './leases.js';
import { createPayoutMetrics } from './metrics.js';
import { createReadinessMonitor } from './readiness.js';
import { createPayoutRepository } from './repo.js';
import { createResponsePoller } from './responses.js';
import { parseCheckoutApprovalAccepted, type CheckoutApprovalAccepted } from './schema.js';
import { createShardManager } from './shards.js';

export interface PayoutWorker {
  readonly task: BackgroundTask;
  readonly checks: readonly ReadinessCheck[];
  status(): Record<string, unknown>;
}

/** Pause ingestion this fast when the last shard is lost (the open long poll still completes). */
const PAUSE_GRACE_MS = 5000;

export async function createPayoutWorker(kit: WorkerKit<PayoutSettings>, lhv: LhvClient): Promise<PayoutWorker> {
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
  const dlqUrl = await kit.queueUrl('payout-events', true);

  const initiator = createInitiator({ lhv, repo, batches, metrics, log, debtor: settings.debtor, settings: settings.initiation });
  const shards = createShardManager({
    keeper,
    membership: createPayoutMembership({ doc: kit.clients.doc, names: kit.names }),
    ownerId: kit.ownerId,
    shards: settings.shards,
    backoffMs: settings.shardLease.backoffMs,
    leaseMs: settings.shardLease.leaseMs,
    maxShardsPerProcess: settings.shardLease.maxShardsPerProcess,
    metrics,
    log,
    runShard: (slot) => initiator.runShard(slot),
    onChange: () => ingestion.update(),
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
    leaseBackoffMs: settings.shardLease.backoffMs,
  });

  const handle = createIngestHandler({ pick: () => shards.pick(), outcomes: kit.outcomes, repo, metrics, live: settings.live });
  const makeConsumer = () =>
    new FifoConsumer<CheckoutApprovalAccepted>({
      sqs: kit.clients.sqs,
      queueUrl,
      dlqUrl,
      queueName: kit.names.queue('payout-events'),
      worker: kit.worker,
      parse: parseCheckoutApprovalAccepted,
      handle,
      concurrency: kit.config.consumer.concurrency,
      batchSize: kit.config.consumer.batchSize,
      waitTimeSec: kit.config.consumer.waitTimeSec,
      visibilityTimeoutSec: kit.config.consumer.visibilityTimeoutSec,
      heartbeatSec: kit.config.consumer.heartbeatSec,
      maxAttempts: kit.config.consumer.maxAttempts,
      backoff: { baseMs: kit.config.consumer.retryBaseMs, maxMs: kit.config.consumer.retryMaxMs },
      logger: log,
      metrics: kit.metrics,
      breakers: kit.breakers,
      gating: ['dynamodb'],
      resilience: kit.resilience,
      acceptGate: () => (shards.pick() ? undefined : NOT_READY),
    });
  const ingestion = createIngestionSwitch({
    make: makeConsumer,
    wanted: () => monitor.ready && shards.pick() !== undefined,
    log,
  });

  const cheap: ReadinessCheck[] = [
    tableCheck(kit, 'payouts', { shard: 'readiness-probe', paymentId: 'readiness-probe' }),
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
      ingestion.update();
    },
  });
  metrics.ready.set(0);

  const task: BackgroundTask = {
    name: 'payouts',
    start: () => {
      monitor.start();
      // Not gated on readiness: LHV's answers are applied while ingestion is gated (responses.ts).
      responses.start();
    },
    async stop(graceMs) {
      const deadline = Date.now() + graceMs;
      const left = () => Math.max(0, deadline - Date.now());
      const stage = async (name: string, run: () => Promise<void>) => {
        try {
          await run();
        } catch (err) {
          log.warn({ err, stage: name }, 'payout shutdown stage failed');
        }
      };
      await stage('readiness', () => monitor.stop());
      await stage('shard-ticks', () => shards.stopTicking());
      await stage('ingestion', () => ingestion.stop(left()));
      await stage('responses', () => responses.stop(left()));
      await stage('shards', () => shards.stop(left()));
      await stage('lhv', () => lhv.close());
      log.info('payout worker stopped');
    },
  };

  return {
    task,
    checks: [...cheap, monitor.queueCheck],
    status: () => ({
      readyForProcessing: monitor.ready && shards.held().length > 0,
      shards: shards.held(),
      responsePoller: responses.holding(),
    }),
  };
}

/** Runs a consumer only while `wanted()`; a new one each time (a closed FifoConsumer stays closed). */
function createIngestionSwitch(deps: {
  make: () => FifoConsumer<CheckoutApprovalAccepted>;
  wanted: () => boolean;
  log: WorkerKit<unknown>['log'];
}) {
  let current: FifoConsumer<CheckoutApprovalAccepted> | undefined;
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;
  const step = (graceMs: number) => async () => {
    const want = !stopped && deps.wanted();
    if (want && !current) {
      current = deps.make();
      current.start();
      deps.log.info('ingestion started: receiving CheckoutApprovalAccepted');
    } else if (!want && current) {
      const c = current;
      current = undefined;
      if (!stopped) deps.log.warn('ingestion paused: no payout shard held; events stay on the queue');
      await c.close(graceMs);
    }
  };
  return {
    update(): void {
      chain = chain.then(step(PAUSE_GRACE_MS)).catch((err: unknown) => deps.log.warn({ err }, 'ingestion switch failed'));
    },
    async stop(graceMs: number): Promise<void> {
      stopped = true;
      chain = chain.then(step(graceMs)).catch((err: unknown) => deps.log.warn({ err }, 'stopping ingestion failed'));
      await chain;
    },
  };
}
