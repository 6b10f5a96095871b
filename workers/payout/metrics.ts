import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Prometheus metrics of the payout worker (docs/payouts.md "Metrics"). */
export interface PayoutMetrics {
  /** Payout state changes committed by this process, by the status reached. */
  readonly payouts: Counter<'status'>;
  /** POST /payment attempts by outcome: accepted | retryable | ambiguous | rejected | uncertain | refused. */
  readonly initiationRequests: Counter<'outcome'>;
  /** Attempts that will be retried under the same key, by error code. */
  readonly initiationRetries: Counter<'code'>;
  /** Payouts per accepted request. */
  readonly batchSize: Histogram;
  readonly shardsHeld: Gauge;
  /** 1 once the readiness checks passed (and this process may take shards). */
  readonly ready: Gauge;
  /** Age of the oldest payout still waiting for initiation (RECEIVED / INITIATION_PENDING) in the shards held here. */
  readonly oldestWaitingSeconds: Gauge;
  /** Payouts waiting for initiation in the shards held here (as of each shard's last cycle). */
  readonly waiting: Gauge;
  /** Record a shard's waiting payouts (count, age of the oldest) from its last cycle; undefined forgets the shard. */
  reportWaiting(shard: string, waiting?: { count: number; oldestSeconds: number }): void;
  /** pain.002 messages handled: applied | duplicate_rejection | unmatched | unreadable. */
  readonly bankReports: Counter<'outcome'>;
  /** Response poller steps that failed, by stage: read (/messages/next) | apply (commit) | delete. */
  readonly bankMessageFailures: Counter<'stage'>;
  /** 1 while this process holds the fleet's response poller lease. */
  readonly responsePoller: Gauge;
  /** LHV message-queue round trips of the readiness monitor: ok | failed. */
  readonly queueRoundTrips: Counter<'outcome'>;
  /** HEARTBEAT messages the readiness probes read back and deleted: own (this probe's) | stale (anyone else's). */
  readonly heartbeatMessages: Counter<'whose'>;
}

export function createPayoutMetrics(registry: Registry): PayoutMetrics {
  const registers = [registry];
  const perShard = new Map<string, { count: number; oldestSeconds: number }>();
  const oldestWaitingSeconds = new Gauge({
    name: 'payfleet_payout_oldest_waiting_seconds',
    help: 'Age of the oldest payout waiting for initiation in the shards held by this process',
    registers,
  });
  const waiting = new Gauge({
    name: 'payfleet_payouts_waiting',
    help: 'Payouts waiting for initiation in the shards held by this process',
    registers,
  });
  return {
    payouts: new Counter({
      name: 'payfleet_payouts_total',
      help: 'Payout state changes committed, by status reached',
      labelNames: ['status'],
      registers,
    }),
    initiationRequests: new Counter({
      name: 'payfleet_payout_initiation_requests_total',
      help: 'LHV payment initiation requests (POST /payment) by outcome',
      labelNames: ['outcome'],
      registers,
    }),
    initiationRetries: new Counter({
      name: 'payfleet_payout_initiation_retries_total',
      help: 'Initiation attempts retried under the same idempotency key, by error code',
      labelNames: ['code'],
      registers,
    }),
    batchSize: new Histogram({
      name: 'payfleet_payout_batch_size',
      help: 'Payouts per accepted initiation request',
      buckets: [1, 5, 10, 25, 50, 75, 100],
      registers,
    }),
    shardsHeld: new Gauge({ name: 'payfleet_payout_shards_held', help: 'Payout shards this process holds', registers }),
    ready: new Gauge({ name: 'payfleet_payout_ready', help: '1 once the readiness checks passed', registers }),
    oldestWaitingSeconds,
    waiting,
    reportWaiting(shard, w) {
      if (w) perShard.set(shard, w);
      else perShard.delete(shard);
      let count = 0;
      let oldest = 0;
      for (const v of perShard.values()) {
        count += v.count;
        oldest = Math.max(oldest, v.oldestSeconds);
      }
      waiting.set(count);
      oldestWaitingSeconds.set(oldest);
    },
    bankReports: new Counter({
      name: 'payfleet_payout_bank_reports_total',
      help: 'LHV PAYMENT messages (pain.002) handled, by outcome',
      labelNames: ['outcome'],
      registers,
    }),
    bankMessageFailures: new Counter({
      name: 'payfleet_payout_bank_message_failures_total',
      help: 'LHV response poller steps that failed (the message stays on LHV and is read again), by stage',
      labelNames: ['stage'],
      registers,
    }),
    responsePoller: new Gauge({
      name: 'payfleet_payout_response_poller',
      help: '1 while this process holds the LHV response poller lease (the fleet sum should be 1)',
      registers,
    }),
    queueRoundTrips: new Counter({
      name: 'payfleet_payout_queue_round_trips_total',
      help: 'LHV message-queue round trips (heartbeat/mq, then a HEARTBEAT read back) by outcome',
      labelNames: ['outcome'],
      registers,
    }),
    heartbeatMessages: new Counter({
      name: 'payfleet_payout_heartbeat_messages_total',
      help: 'HEARTBEAT messages read back and deleted by the readiness probes: own, or stale (left by another probe)',
      labelNames: ['whose'],
      registers,
    }),
  };
}
