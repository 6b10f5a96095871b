/**
 * The fleet's CloudWatch dashboard `<prefix>fleet`, built from the same sources as the alarms: SQS's
 * own queue metrics (AWS/SQS: depth, in flight, age of the oldest message, DLQ depth), ECS's
 * (tasks, CPU, memory), and the workers' Prometheus metrics that the collector sidecar forwards as
 * EMF into `Payfleet/<prefix>` (infra/metrics.ts lists which, with which dimensions). Without the
 * sidecar the worker-metric widgets are left out rather than drawn empty.
 *
 * The success rate is succeeded / (succeeded + dead-lettered): a dead-lettered message counts only
 * in payfleet_messages_dead_lettered_total, and retries or deferrals are not outcomes.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import { Construct } from 'constructs';
import { QUEUE_KEYS, type QueueKey } from '../shared/resources.js';
import { ALARM_THRESHOLDS, oldestMessageAgeLimitSec } from './alarms.js';
import { type DeploymentConfig, WORKER_NAMES, type WorkerName } from './config.js';
import type { DataPlane } from './data-plane.js';
import { PROM } from './metrics.js';
import type { WorkerService } from './worker-service.js';

/** Workers that consume a queue (and so succeed or dead-letter messages); ledger emits instead. */
const CONSUMERS: readonly WorkerName[] = ['auth', 'capture', 'refund', 'payout'];

export interface FleetDashboardProps {
  readonly config: DeploymentConfig;
  readonly data: DataPlane;
  readonly services: Readonly<Record<WorkerName, WorkerService>>;
  readonly cluster: ecs.ICluster;
  /** Shown in one alarm-status widget at the top. */
  readonly alarms: readonly cloudwatch.IAlarm[];
  /** Custom metrics namespace when the metrics sidecar runs. */
  readonly metricsNamespace?: string;
}

/** The dashboard's name for a prefix (CloudWatch allows letters, digits, `-` and `_`, as prefixes do). */
export const dashboardName = (prefix: string): string => `${prefix}fleet`;

export class FleetDashboard extends Construct {
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: FleetDashboardProps) {
    super(scope, id);
    const { config, data } = props;
    const minute = Duration.minutes(1);
    const fiveMinutes = Duration.minutes(5);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: dashboardName(config.prefix),
      defaultInterval: Duration.hours(6),
    });
    const d = this.dashboard;

    d.addWidgets(
      new cloudwatch.TextWidget({
        width: 24,
        height: 2,
        markdown: [
          `# payfleet ${config.prefix}`,
          'Queues from SQS, tasks from ECS, worker metrics from the collector sidecar (`Payfleet/…`). One screen from a terminal: `payfleet status`.',
          'What each alarm means and what to do: docs/deployment.md "Alarms"; dead letters by code: `payfleet dlq list <queue>`.',
        ].join('\n\n'),
      }),
    );
    if (props.alarms.length > 0)
      d.addWidgets(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: [...props.alarms], width: 24, height: 4 }));

    // One graph per queue: depth and in-flight on the left, the age of the oldest message on the
    // right with the alarm's limit drawn, so "how far from paging" is visible at a glance.
    d.addWidgets(
      ...QUEUE_KEYS.map((key) => {
        const q = data.queues[key];
        return new cloudwatch.GraphWidget({
          title: key,
          width: 6,
          height: 6,
          left: [
            q.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum', label: 'waiting' }),
            q.metricApproximateNumberOfMessagesNotVisible({ period: minute, statistic: 'Maximum', label: 'in flight' }),
          ],
          right: [q.metricApproximateAgeOfOldestMessage({ period: minute, statistic: 'Maximum', label: 'oldest (s)' })],
          rightAnnotations: [{ value: oldestMessageAgeLimitSec(config, key), label: 'alarm' }],
        });
      }),
    );
    const dlqLetters = (Object.entries(data.dlqs) as [QueueKey, NonNullable<DataPlane['dlqs'][QueueKey]>][]).map(
      ([key, dlq], i) =>
        new cloudwatch.MathExpression({
          // Visible + in flight, as the dlq-not-empty alarm counts: reading letters hides them a while.
          // Ids are unique per graph, hence the index.
          expression: `visible${i} + inflight${i}`,
          usingMetrics: {
            [`visible${i}`]: dlq.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum' }),
            [`inflight${i}`]: dlq.metricApproximateNumberOfMessagesNotVisible({ period: minute, statistic: 'Maximum' }),
          },
          period: minute,
          label: `${key} dead letters`,
        }),
    );
    d.addWidgets(
      new cloudwatch.GraphWidget({ title: 'Dead letters (visible + being read)', width: 16, height: 6, left: dlqLetters }),
      new cloudwatch.SingleValueWidget({ title: 'Dead letters now', width: 8, height: 6, metrics: dlqLetters }),
    );

    if (props.metricsNamespace) this.addWorkerMetrics(props.metricsNamespace, fiveMinutes, minute);

    const services = WORKER_NAMES.map((w) => [w, props.services[w].service] as const);
    d.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Running tasks',
        width: 8,
        height: 6,
        left: services.map(
          ([w, service]) =>
            new cloudwatch.Metric({
              namespace: 'ECS/ContainerInsights',
              metricName: 'RunningTaskCount',
              dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: service.serviceName },
              period: minute,
              statistic: 'Minimum',
              label: w,
            }),
        ),
      }),
      new cloudwatch.GraphWidget({
        title: 'CPU (% of task size)',
        width: 8,
        height: 6,
        left: services.map(([w, service]) => service.metricCpuUtilization({ period: minute, statistic: 'Maximum', label: w })),
      }),
      new cloudwatch.GraphWidget({
        title: 'Memory (% of task size)',
        width: 8,
        height: 6,
        left: services.map(([w, service]) => service.metricMemoryUtilization({ period: minute, statistic: 'Maximum', label: w })),
      }),
    );
  }

  private addWorkerMetrics(ns: string, fiveMinutes: Duration, minute: Duration): void {
    const custom = (metricName: string, dimensionsMap: Record<string, string>, statistic: string, period: Duration, label?: string) =>
      new cloudwatch.Metric({ namespace: ns, metricName, dimensionsMap, statistic, period, ...(label ? { label } : {}) });
    // Counters arrive as per-scrape deltas: Sum over a period is "how many in that period". A
    // period with no dead letters has no datapoint at all, hence FILL(…, 0) before adding.
    const successRates = CONSUMERS.map((worker, i) => {
      const [ok, dead] = [`ok${i}`, `dead${i}`];
      return new cloudwatch.MathExpression({
        expression: `IF(FILL(${ok}, 0) + FILL(${dead}, 0) > 0, 100 * FILL(${ok}, 0) / (FILL(${ok}, 0) + FILL(${dead}, 0)))`,
        usingMetrics: {
          [ok]: custom(PROM.succeeded, { worker }, 'Sum', fiveMinutes),
          [dead]: custom(PROM.deadLettered, { worker }, 'Sum', fiveMinutes),
        },
        period: fiveMinutes,
        label: `${worker} success %`,
      });
    });
    const sumPerWorker = (metric: string, workers: readonly WorkerName[]) =>
      workers.map((worker) => custom(metric, { worker }, 'Sum', fiveMinutes, worker));
    // One line per dimension value found (codes, dependencies): nothing to enumerate or keep in step.
    const search = (metric: string, dims: readonly string[], statistic: string, period: Duration) =>
      new cloudwatch.SearchExpression({
        expression: `SEARCH('{${ns},${dims.join(',')}} MetricName="${metric}"', '${statistic}', ${period.toSeconds()})`,
        // A dynamic label: each line is named by its dimension values (e.g. "auth TOKEN_EXPIRED").
        label: dims.map((dim) => `\${PROP('Dim.${dim}')}`).join(' '),
        period,
      });

    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Success rate (succeeded / (succeeded + dead-lettered))',
        width: 8,
        height: 6,
        left: successRates,
        leftYAxis: { min: 0, max: 100, label: '%', showUnits: false },
      }),
      new cloudwatch.GraphWidget({
        title: 'Outcomes per 5 minutes',
        width: 8,
        height: 6,
        left: [...sumPerWorker(PROM.succeeded, CONSUMERS)],
        right: [...sumPerWorker(PROM.deadLettered, CONSUMERS), ...sumPerWorker(PROM.retried, CONSUMERS)].map((m, i) =>
          m.with({ label: `${i < CONSUMERS.length ? 'dead-lettered' : 'retried'} ${CONSUMERS[i % CONSUMERS.length]}` }),
        ),
      }),
      new cloudwatch.GraphWidget({
        title: 'Dead-lettered by code',
        width: 8,
        height: 6,
        left: [search(PROM.deadLettered, ['code', 'worker'], 'Sum', fiveMinutes)],
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Circuit breakers (0 closed, 1 half-open, 2 open)',
        width: 12,
        height: 6,
        left: [search(PROM.breakerState, ['dependency', 'worker'], 'Maximum', minute)],
        leftYAxis: { min: 0, max: 2, showUnits: false },
      }),
      new cloudwatch.GraphWidget({
        title: 'Consumers paused (a dependency is down)',
        width: 6,
        height: 6,
        left: CONSUMERS.map((worker) => custom(PROM.consumerPaused, { worker }, 'Maximum', minute, worker)),
        leftYAxis: { min: 0, max: 1, showUnits: false },
      }),
      new cloudwatch.GraphWidget({
        title: 'Lost leases, commit conflicts',
        width: 6,
        height: 6,
        left: WORKER_NAMES.map((worker) =>
          custom(PROM.leaseConflicts, { worker, kind: 'LEASE_LOST' }, 'Sum', fiveMinutes, `lease lost ${worker}`),
        ),
        right: WORKER_NAMES.map((worker) => custom(PROM.commitConflicts, { worker }, 'Sum', fiveMinutes, `conflicts ${worker}`)),
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Captures overdue',
        width: 8,
        height: 6,
        left: [custom(PROM.overdueCaptures, { worker: 'capture' }, 'Maximum', fiveMinutes, 'overdue')],
        right: [custom(PROM.oldestOverdueCaptureAge, { worker: 'capture' }, 'Maximum', fiveMinutes, 'oldest overdue (s)')],
        leftAnnotations: [{ value: ALARM_THRESHOLDS.overdueCaptures, label: 'alarm' }],
      }),
      new cloudwatch.GraphWidget({
        title: 'Ledger emission lag (s)',
        width: 8,
        height: 6,
        left: [custom(PROM.ledgerLag, { worker: 'ledger' }, 'Maximum', fiveMinutes, 'oldest unemitted event')],
        leftAnnotations: [{ value: ALARM_THRESHOLDS.ledgerLagSec, label: 'alarm' }],
      }),
      new cloudwatch.GraphWidget({
        title: 'Payout waiting for initiation (s)',
        width: 8,
        height: 6,
        left: [custom(PROM.payoutOldestWaiting, { worker: 'payout' }, 'Maximum', fiveMinutes, 'oldest waiting payout')],
        leftAnnotations: [{ value: ALARM_THRESHOLDS.payoutWaitingSec, label: 'alarm' }],
      }),
    );
  }
}
