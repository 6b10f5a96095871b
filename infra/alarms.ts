/**
 * The fleet's alarms, all notifying one SNS topic. Each description names its runbook section in
 * docs/deployment.md ("## Alarms"). Thresholds live in ALARM_THRESHOLDS so tests pin them.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { QueueKey } from '../shared/resources.js';
import { type DeploymentConfig, WORKER_NAMES, type WorkerName } from './config.js';
import { type DataPlane, RETENTION } from './data-plane.js';
import { PROM } from './metrics.js';
import type { WorkerService } from './worker-service.js';

const DAY_SEC = 86_400;

/**
 * Age of the oldest message (seconds) that means "stuck", per queue. capture's messages are
 * deferred on purpose between attempts, so its limit is the whole retry budget
 * (CAPTURE_PROCESS_MAXIMUM_RETRIES x CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS) plus a
 * day: a capture request older than that should have ended in CAPTURED or CAPTURE_ERROR.
 */
export function oldestMessageAgeLimitSec(config: DeploymentConfig, queue: QueueKey): number {
  switch (queue) {
    case 'auth-requests':
      return 300;
    case 'capture-requests':
      return Math.min(config.captureMaxRetries * config.captureRetryDelaySec + DAY_SEC, RETENTION.toSeconds() - DAY_SEC);
    case 'refund-requests':
      // A refund the processor confirms later is deferred (doubling delays, each at most 12 hours,
      // within PAYFLEET_MAX_ATTEMPTS deliveries: ~10.6 hours by default); older than a day is stuck.
      return DAY_SEC;
    case 'payout-events':
      return 900;
    case 'ledger-events':
      // Read by the Ledger, not by us: this one means the downstream consumer is behind.
      return 1800;
  }
}

export const ALARM_THRESHOLDS = {
  /** LEASE_LOST per worker per 5 minutes: a paused or partitioned process lost its lease mid-work. */
  leaseLostPer5Min: 3,
  /** Commit conflicts per worker per 5 minutes, for 3 periods in a row. */
  commitConflictsPer5Min: 10,
  /** Charges overdue for capture (gauge), for 15 minutes. */
  overdueCaptures: 1,
  /** Oldest unemitted ledger event, seconds, for 10 minutes. */
  ledgerLagSec: 600,
  /** Oldest payout waiting for initiation at LHV, seconds, for 10 minutes (batches wait ~10 s normally). */
  payoutWaitingSec: 900,
} as const;

export interface AlarmsProps {
  readonly config: DeploymentConfig;
  readonly data: DataPlane;
  readonly services: Readonly<Record<WorkerName, WorkerService>>;
  readonly cluster: ecs.ICluster;
  readonly topic: sns.ITopic;
  /** Custom metrics namespace when the metrics sidecar runs. */
  readonly metricsNamespace?: string;
}

export class FleetAlarms extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly props: AlarmsProps;

  constructor(scope: Construct, id: string, props: AlarmsProps) {
    super(scope, id);
    this.props = props;
    const { config, data } = props;
    const p = config.prefix;
    const minute = Duration.minutes(1);
    const fiveMinutes = Duration.minutes(5);

    for (const [key, dlq] of Object.entries(data.dlqs) as [QueueKey, NonNullable<DataPlane['dlqs'][QueueKey]>][]) {
      // Visible + in flight: an operator reading the DLQ (payfleet dlq show) hides letters for a while.
      const letters = new cloudwatch.MathExpression({
        expression: 'visible + inflight',
        usingMetrics: {
          visible: dlq.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: 'Maximum' }),
          inflight: dlq.metricApproximateNumberOfMessagesNotVisible({ period: minute, statistic: 'Maximum' }),
        },
        period: minute,
        label: `${key} dead letters`,
      });
      this.add(`${key}-dlq-not-empty`, letters, {
        threshold: 1,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `${p}${key}-dlq.fifo holds dead letters: a message was refused or ran out of retries. Runbook: docs/deployment.md#dlq-not-empty`,
      });
    }

    for (const [key, queue] of Object.entries(data.queues) as [QueueKey, DataPlane['queues'][QueueKey]][]) {
      const limit = oldestMessageAgeLimitSec(config, key);
      this.add(`${key}-oldest-message-age`, queue.metricApproximateAgeOfOldestMessage({ period: minute, statistic: 'Maximum' }), {
        threshold: limit,
        evaluationPeriods: 5,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `The oldest message in ${p}${key}.fifo is older than ${limit}s. Runbook: docs/deployment.md#oldest-message-age`,
      });
    }

    for (const worker of WORKER_NAMES) {
      const service = props.services[worker].service;
      const min = config[worker].minTasks;
      if (min < 1) continue;
      const running = new cloudwatch.Metric({
        namespace: 'ECS/ContainerInsights',
        metricName: 'RunningTaskCount',
        dimensionsMap: { ClusterName: props.cluster.clusterName, ServiceName: service.serviceName },
        period: minute,
        statistic: 'Minimum',
      });
      this.add(`${worker}-tasks-below-minimum`, running, {
        threshold: min,
        comparison: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 10,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
        description: `Fewer than ${min} ${worker} tasks have run for 10 minutes (crash loop, failed deploy, capacity). Runbook: docs/deployment.md#tasks-below-minimum`,
      });
    }

    if (!props.metricsNamespace) return;
    const ns = props.metricsNamespace;
    const custom = (metricName: string, dimensionsMap: Record<string, string>, statistic: string, period: Duration) =>
      new cloudwatch.Metric({ namespace: ns, metricName, dimensionsMap, statistic, period });

    for (const worker of WORKER_NAMES) {
      this.add(`${worker}-lease-lost`, custom(PROM.leaseConflicts, { worker, kind: 'LEASE_LOST' }, 'Sum', fiveMinutes), {
        threshold: ALARM_THRESHOLDS.leaseLostPer5Min,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `${worker} lost ${ALARM_THRESHOLDS.leaseLostPer5Min}+ leases in 5 minutes (pauses, throttling, clock or network trouble). Runbook: docs/deployment.md#lease-lost`,
      });
      this.add(`${worker}-commit-conflicts`, custom(PROM.commitConflicts, { worker }, 'Sum', fiveMinutes), {
        threshold: ALARM_THRESHOLDS.commitConflictsPer5Min,
        evaluationPeriods: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `${worker} commits are refused by their conditions (${ALARM_THRESHOLDS.commitConflictsPer5Min}+ per 5 minutes for 15 minutes). Runbook: docs/deployment.md#commit-conflicts`,
      });
    }

    // Gauges reported on every scrape: no data means the metrics pipeline itself is down, so
    // INSUFFICIENT_DATA notifies too.
    const overdue = this.add('capture-overdue', custom(PROM.overdueCaptures, { worker: 'capture' }, 'Maximum', fiveMinutes), {
      threshold: ALARM_THRESHOLDS.overdueCaptures,
      evaluationPeriods: 3,
      treatMissingData: cloudwatch.TreatMissingData.MISSING,
      description:
        'Charges approved for capture are overdue (CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER). Runbook: docs/deployment.md#capture-overdue',
    });
    overdue.addInsufficientDataAction(new actions.SnsAction(props.topic));
    const lag = this.add('ledger-emission-lag', custom(PROM.ledgerLag, { worker: 'ledger' }, 'Maximum', fiveMinutes), {
      threshold: ALARM_THRESHOLDS.ledgerLagSec,
      evaluationPeriods: 2,
      treatMissingData: cloudwatch.TreatMissingData.MISSING,
      description: `A committed state change has waited more than ${ALARM_THRESHOLDS.ledgerLagSec}s to reach the Ledger. Runbook: docs/deployment.md#ledger-emission-lag`,
    });
    lag.addInsufficientDataAction(new actions.SnsAction(props.topic));
    // Reported only by processes holding shards with waiting payouts: no data is normal here.
    this.add('payout-initiation-waiting', custom(PROM.payoutOldestWaiting, { worker: 'payout' }, 'Maximum', fiveMinutes), {
      threshold: ALARM_THRESHOLDS.payoutWaitingSec,
      evaluationPeriods: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      description: `A payout has waited more than ${ALARM_THRESHOLDS.payoutWaitingSec}s to be sent to LHV (LHV unreachable, readiness failing, shards unheld). Runbook: docs/deployment.md#payout-initiation-waiting`,
    });
  }

  private add(
    name: string,
    metric: cloudwatch.IMetric,
    o: {
      threshold: number;
      evaluationPeriods: number;
      treatMissingData: cloudwatch.TreatMissingData;
      description: string;
      comparison?: cloudwatch.ComparisonOperator;
    },
  ): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, name, {
      alarmName: `${this.props.config.prefix}${name}`,
      alarmDescription: o.description,
      metric,
      threshold: o.threshold,
      evaluationPeriods: o.evaluationPeriods,
      datapointsToAlarm: o.evaluationPeriods,
      comparisonOperator: o.comparison ?? cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: o.treatMissingData,
    });
    alarm.addAlarmAction(new actions.SnsAction(this.props.topic));
    alarm.addOkAction(new actions.SnsAction(this.props.topic));
    this.alarms.push(alarm);
    return alarm;
  }
}
