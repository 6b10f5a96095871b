import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * The ledger emitter's metrics, registered on the worker's registry (so they carry `worker`).
 *
 * - payfleet_ledger_emission_lag_seconds{shard}: age of the oldest unemitted event of each shard
 *   this process holds (0 when the shard is drained). THE alert: it grows when events are stuck.
 * - payfleet_ledger_events_emitted_total{via}: events SQS accepted (main | sweeper); each is then marked.
 * - payfleet_ledger_send_failures_total{code}: failed SendMessageBatch entries, and whole calls (CALL_FAILED).
 * - payfleet_ledger_held_back_total{reason}: events not sent in a pass to keep per-resource order
 *   (predecessor_pending, backoff, other_shard, unknown_predecessor).
 * - payfleet_ledger_mark_failures_total: sent but the mark failed (it will be resent; a duplicate).
 * - payfleet_ledger_shards_held: shards whose lease this process holds.
 * - payfleet_ledger_sweeper_stale_events{state}: what the last sweep found older than the sweep age.
 * - payfleet_ledger_sweeper_actions_total{action}: rehomed | shard_swept.
 * - payfleet_ledger_send_seconds: SendMessageBatch latency.
 */
export interface LedgerMetrics {
  readonly lag: Gauge<'shard'>;
  readonly emitted: Counter<'via'>;
  readonly sendFailures: Counter<'code'>;
  readonly heldBack: Counter<'reason'>;
  readonly markFailures: Counter;
  readonly shardsHeld: Gauge;
  readonly staleEvents: Gauge<'state'>;
  readonly sweeperActions: Counter<'action'>;
  readonly sendSeconds: Histogram;
}

export function createLedgerMetrics(registry: Registry): LedgerMetrics {
  const registers = [registry];
  return {
    lag: new Gauge({
      name: 'payfleet_ledger_emission_lag_seconds',
      help: 'Age of the oldest unemitted event in each ledger shard this process holds',
      labelNames: ['shard'],
      registers,
    }),
    emitted: new Counter({
      name: 'payfleet_ledger_events_emitted_total',
      help: 'Ledger events accepted by ledger-events.fifo (marked emitted right after)',
      labelNames: ['via'],
      registers,
    }),
    sendFailures: new Counter({
      name: 'payfleet_ledger_send_failures_total',
      help: 'Failed SendMessageBatch entries by SQS code, and failed calls (CALL_FAILED)',
      labelNames: ['code'],
      registers,
    }),
    heldBack: new Counter({
      name: 'payfleet_ledger_held_back_total',
      help: 'Events held back in a pass to keep per-resource order',
      labelNames: ['reason'],
      registers,
    }),
    markFailures: new Counter({
      name: 'payfleet_ledger_mark_failures_total',
      help: 'Events sent whose emitted mark failed (they are resent)',
      registers,
    }),
    shardsHeld: new Gauge({
      name: 'payfleet_ledger_shards_held',
      help: 'Ledger shards whose lease this process holds',
      registers,
    }),
    staleEvents: new Gauge({
      name: 'payfleet_ledger_sweeper_stale_events',
      help: 'Pending events older than the sweep age at the last sweep, by state',
      labelNames: ['state'],
      registers,
    }),
    sweeperActions: new Counter({
      name: 'payfleet_ledger_sweeper_actions_total',
      help: 'Sweeper actions',
      labelNames: ['action'],
      registers,
    }),
    sendSeconds: new Histogram({
      name: 'payfleet_ledger_send_seconds',
      help: 'SendMessageBatch latency',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
}
