/**
 * Custom CloudWatch metrics: the workers' own Prometheus metrics (GET /metrics on the ops port),
 * scraped inside each task by an AWS Distro for OpenTelemetry (ADOT) collector sidecar and written
 * to CloudWatch as Embedded Metric Format (EMF) log events, which CloudWatch turns into metrics.
 *
 * Why EMF through a sidecar, not metric filters: the counters and gauges already exist and are
 * tested (shared/ops/metrics.ts); a metric filter would need the workers to log one line per
 * conflict in a format the filter parses (coupling alarms to log text), and cannot express a gauge
 * such as "charges overdue for capture" at all. Why not EMF written by the workers themselves: it
 * would mean a second metrics implementation in every worker. The collector is non-essential:
 * if it dies the worker keeps working and the custom-metric alarms go to INSUFFICIENT_DATA.
 *
 * Counters arrive in CloudWatch as deltas per scrape (the EMF exporter converts Prometheus'
 * cumulative counters), so `Sum` over a period is "how many in that period".
 */
import { stringify } from 'yaml';

/** Prometheus names the alarms read. Keep in step with shared/ops/metrics.ts and the workers. */
export const PROM = {
  leaseConflicts: 'payfleet_lease_conflicts_total',
  commitConflicts: 'payfleet_commit_conflicts_total',
  deadLettered: 'payfleet_messages_dead_lettered_total',
  received: 'payfleet_messages_received_total',
  succeeded: 'payfleet_messages_succeeded_total',
  /** workers/capture/gauges.ts: charges awaiting capture longer than CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER. */
  overdueCaptures: 'payfleet_charges_overdue_for_capture',
  /** workers/capture/gauges.ts: age of the oldest of those (dashboards). */
  oldestOverdueCaptureAge: 'payfleet_oldest_overdue_capture_age_seconds',
  ledgerLag: 'payfleet_ledger_emission_lag_seconds',
  /** workers/payout/metrics.ts: age of the oldest payout waiting for initiation, per shard held. */
  payoutOldestWaiting: 'payfleet_payout_oldest_waiting_seconds',
  /** Transient failures handed back with backoff (dashboard). */
  retried: 'payfleet_messages_retried_total',
  /** Circuit breaker per dependency: 0 closed, 1 half-open, 2 open (dashboard). */
  breakerState: 'payfleet_breaker_state',
  /** 1 while a consumer has stopped receiving because a dependency it needs is down (dashboard). */
  consumerPaused: 'payfleet_consumer_paused',
} as const;

/** CloudWatch namespace of a deployment's custom metrics (one per prefix, so deployments never mix). */
export function metricsNamespace(prefix: string): string {
  return `Payfleet/${prefix.replace(/-+$/, '') || 'default'}`;
}

/** The collector's configuration (AOT_CONFIG_CONTENT), as YAML. */
export function adotConfig(options: {
  opsPort: number;
  namespace: string;
  logGroupName: string;
  scrapeIntervalSec?: number;
}): string {
  const interval = `${options.scrapeIntervalSec ?? 30}s`;
  const config = {
    extensions: { health_check: {} },
    receivers: {
      prometheus: {
        config: {
          global: { scrape_interval: interval, scrape_timeout: '10s' },
          // awsvpc: the containers of a task share one network namespace, so the worker is on localhost.
          scrape_configs: [
            { job_name: 'payfleet', metrics_path: '/metrics', static_configs: [{ targets: [`127.0.0.1:${options.opsPort}`] }] },
          ],
        },
      },
    },
    processors: { batch: { timeout: '30s' } },
    exporters: {
      awsemf: {
        namespace: options.namespace,
        log_group_name: options.logGroupName,
        log_stream_name: '{TaskId}',
        // Only what is declared below becomes a metric (cost); the rest stays in the EMF log events.
        dimension_rollup_option: 'NoDimensionRollup',
        metric_declarations: [
          {
            dimensions: [['worker']],
            metric_name_selectors: [
              `^${PROM.commitConflicts}$`,
              `^${PROM.deadLettered}$`,
              `^${PROM.received}$`,
              `^${PROM.succeeded}$`,
              `^${PROM.overdueCaptures}$`,
              `^${PROM.oldestOverdueCaptureAge}$`,
              `^${PROM.ledgerLag}$`,
              `^${PROM.payoutOldestWaiting}$`,
              `^${PROM.retried}$`,
              `^${PROM.consumerPaused}$`,
            ],
          },
          // Lease conflicts by kind: LEASE_HELD is normal contention, LEASE_LOST is the alarm.
          { dimensions: [['worker', 'kind']], metric_name_selectors: [`^${PROM.leaseConflicts}$`] },
          // The dashboard's per-code and per-dependency lines (bounded sets: error codes, dependencies).
          { dimensions: [['worker', 'code']], metric_name_selectors: [`^${PROM.deadLettered}$`] },
          { dimensions: [['worker', 'dependency']], metric_name_selectors: [`^${PROM.breakerState}$`] },
        ],
      },
    },
    service: {
      extensions: ['health_check'],
      pipelines: { metrics: { receivers: ['prometheus'], processors: ['batch'], exporters: ['awsemf'] } },
    },
  };
  return stringify(config);
}
