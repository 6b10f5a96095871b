/**
 * Every metric name a payfleet worker's GET /metrics can carry, built by constructing the metrics
 * the code registers (not from a list someone keeps by hand), so a dashboard or alert that names a
 * metric nobody exports fails its test. A metric's exposition names depend on its type: a counter
 * is written under its own name (ours all end in `_total`), a histogram as `<name>_bucket` (with
 * `le`), `<name>_sum` and `<name>_count`, a summary as `<name>` (with `quantile`), `_sum`, `_count`.
 */
import { createLedgerMetrics } from '../../workers/ledger/metrics.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createMetrics } from '../../shared/ops/metrics.js';
import { createResilienceMetrics } from '../../shared/ops/resilience-metrics.js';
import { createPayoutMetrics } from '../../workers/payout/metrics.js';
import { createAuthMetrics } from '../../workers/auth/metrics.js';
import { createCaptureGauges } from '../../workers/capture/gauges.js';
import { createCaptureMetrics } from '../../workers/capture/metrics.js';

export interface ExportedSeries {
  /** The name as written in the exposition (and as PromQL selects it). */
  readonly series: string;
  /** The metric it belongs to (prom-client's name). */
  readonly metric: string;
  readonly type: string;
  /** Label names a sample can carry: its own, `worker` (every registry's default), and the scrape's `job` and `instance`. */
  readonly labels: ReadonlySet<string>;
}

/** Labels every scraped sample has: the registry default and Prometheus' target labels. */
const COMMON_LABELS = ['worker', 'job', 'instance'];

/** Every series name the fleet exports, plus Prometheus' own `up` per scrape target. */
export function exportedSeries(): ReadonlyMap<string, ExportedSeries> {
  const core = createMetrics('catalog');
  const registry = core.registry;
  createLedgerMetrics(registry);
  createPayoutMetrics(registry);
  createAuthMetrics(registry);
  createCaptureMetrics(registry);
  // Registers its gauges at construction; nothing reads DynamoDB until start()/refresh().
  createCaptureGauges({
    doc: {} as never,
    chargesTable: 'catalog-charges',
    registry,
    log: silentLogger(),
    overdueAfterMs: 60_000,
    refreshMs: 60_000,
  });
  createResilienceMetrics(registry);

  const out = new Map<string, ExportedSeries>();
  const add = (series: string, metric: string, type: string, labels: readonly string[]) =>
    out.set(series, { series, metric, type, labels: new Set([...labels, ...COMMON_LABELS]) });
  for (const m of registry.getMetricsAsArray()) {
    const own = (m as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const type = String(m.type);
    switch (type) {
      case 'histogram':
        add(`${m.name}_bucket`, m.name, type, [...own, 'le']);
        add(`${m.name}_sum`, m.name, type, own);
        add(`${m.name}_count`, m.name, type, own);
        break;
      case 'summary':
        add(m.name, m.name, type, [...own, 'quantile']);
        add(`${m.name}_sum`, m.name, type, own);
        add(`${m.name}_count`, m.name, type, own);
        break;
      default:
        add(m.name, m.name, type, own);
    }
  }
  // Written by Prometheus itself for every target it scrapes: 1 when the scrape worked.
  out.set('up', { series: 'up', metric: 'up', type: 'gauge', labels: new Set(['job', 'instance']) });
  return out;
}
