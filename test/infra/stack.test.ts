import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ALARM_THRESHOLDS, oldestMessageAgeLimitSec } from '../../infra/alarms.js';
import { deployBlockers, parseDeploymentConfig, stopTimeoutSec, WORKER_NAMES } from '../../infra/config.js';
import { PROM } from '../../infra/metrics.js';
import { SCALING } from '../../infra/scaling.js';
import { SECRETS, secretName, type SecretKey } from '../../infra/worker-env.js';
import { QUEUE_KEYS, QUEUES_WITH_DLQ, TABLES, TABLE_KEYS, resourceNames } from '../../shared/resources.js';
import { type CfnResource, DEPLOYABLE, findBy, resourcesOf, synth } from './support.js';

const names = resourceNames('payfleet-');

interface ContainerDef {
  Name: string;
  Command?: string[];
  Essential?: boolean;
  StopTimeout?: number;
  ReadonlyRootFilesystem?: boolean;
  HealthCheck?: { Command: string[]; Interval: number; Timeout: number; Retries: number; StartPeriod: number };
  LogConfiguration?: { LogDriver: string; Options: Record<string, unknown> };
  Environment?: { Name: string; Value: unknown }[];
  Secrets?: { Name: string; ValueFrom: unknown }[];
  DependsOn?: { ContainerName: string; Condition: string }[];
}

function taskDefinition(json: ReturnType<typeof synth>['json'], family: string): CfnResource {
  return findBy(json, 'AWS::ECS::TaskDefinition', 'Family', family)[1];
}

function container(json: ReturnType<typeof synth>['json'], family: string, name: string): ContainerDef {
  const defs = taskDefinition(json, family).Properties!.ContainerDefinitions as ContainerDef[];
  const c = defs.find((d) => d.Name === name);
  if (!c) throw new Error(`no container ${name} in ${family}`);
  return c;
}

function scalableTarget(json: ReturnType<typeof synth>['json'], worker: string): Record<string, unknown> {
  const targets = resourcesOf(json, 'AWS::ApplicationAutoScaling::ScalableTarget').filter(([id]) =>
    id.startsWith(`${worker[0]!.toUpperCase()}${worker.slice(1)}Worker`),
  );
  expect(targets).toHaveLength(1);
  return targets[0]![1].Properties!;
}

describe('Stack: PayfleetStack', () => {
  describe('Queues', () => {
    it('declares every queue of shared/resources.ts as FIFO with 14-day retention, named from the prefix', () => {
      const { json } = synth();
      const queues = resourcesOf(json, 'AWS::SQS::Queue');
      expect(queues).toHaveLength(QUEUE_KEYS.length + QUEUES_WITH_DLQ.length);
      const expected = [...QUEUE_KEYS.map((k) => names.queue(k)), ...QUEUES_WITH_DLQ.map((k) => names.dlq(k))].sort();
      expect(queues.map(([, q]) => q.Properties!.QueueName).sort()).toEqual(expected);
      for (const [, q] of queues) {
        expect(q.Properties).toMatchObject({
          FifoQueue: true,
          ContentBasedDeduplication: false,
          MessageRetentionPeriod: 1_209_600,
          SqsManagedSseEnabled: true,
        });
        expect(q.DeletionPolicy).toBe('Retain');
      }
    });

    it('redrives each consumed queue into its own DLQ after maxReceiveCount (default 10, configurable)', () => {
      for (const [context, count] of [
        [DEPLOYABLE, 10],
        [{ ...DEPLOYABLE, maxReceiveCount: '5' }, 5],
      ] as const) {
        const { json } = synth(context);
        for (const key of QUEUES_WITH_DLQ) {
          const [dlqId] = findBy(json, 'AWS::SQS::Queue', 'QueueName', names.dlq(key));
          const [, queue] = findBy(json, 'AWS::SQS::Queue', 'QueueName', names.queue(key));
          expect(queue.Properties!.RedrivePolicy).toEqual({
            deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] },
            maxReceiveCount: count,
          });
        }
      }
      const [, ledger] = findBy(synth().json, 'AWS::SQS::Queue', 'QueueName', names.queue('ledger-events'));
      expect(ledger.Properties!.RedrivePolicy).toBeUndefined();
    });

    it('refuses plain HTTP on every queue', () => {
      const { template } = synth();
      template.resourceCountIs('AWS::SQS::QueuePolicy', QUEUE_KEYS.length + QUEUES_WITH_DLQ.length);
      template.allResourcesProperties('AWS::SQS::QueuePolicy', {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    });
  });

  describe('Tables', () => {
    it('declares every table with its keys and GSIs: on-demand, PITR, deletion protection, retained', () => {
      const { json } = synth();
      expect(resourcesOf(json, 'AWS::DynamoDB::Table')).toHaveLength(TABLE_KEYS.length);
      for (const key of TABLE_KEYS) {
        const def = TABLES[key];
        const [, table] = findBy(json, 'AWS::DynamoDB::Table', 'TableName', names.table(key));
        expect(table.DeletionPolicy).toBe('Retain');
        expect(table.UpdateReplacePolicy).toBe('Retain');
        expect(table.Properties).toMatchObject({
          BillingMode: 'PAY_PER_REQUEST',
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
          DeletionProtectionEnabled: true,
          KeySchema: [
            { AttributeName: def.partitionKey.name, KeyType: 'HASH' },
            ...(def.sortKey ? [{ AttributeName: def.sortKey.name, KeyType: 'RANGE' }] : []),
          ],
        });
        const gsis = (table.Properties!.GlobalSecondaryIndexes ?? []) as {
          IndexName: string;
          KeySchema: unknown;
          Projection: unknown;
        }[];
        expect(gsis.map((g) => g.IndexName).sort()).toEqual(def.indexes.map((i) => i.name).sort());
        for (const ix of def.indexes) {
          expect(gsis.find((g) => g.IndexName === ix.name)).toMatchObject({
            KeySchema: [
              { AttributeName: ix.partitionKey.name, KeyType: 'HASH' },
              ...(ix.sortKey ? [{ AttributeName: ix.sortKey.name, KeyType: 'RANGE' }] : []),
            ],
            Projection: { ProjectionType: 'ALL' },
          });
        }
        if (def.ttlAttribute) {
          expect(table.Properties!.TimeToLiveSpecification).toEqual({ AttributeName: def.ttlAttribute, Enabled: true });
        } else {
          expect(table.Properties!.TimeToLiveSpecification).toBeUndefined();
        }
      }
    });
  });

  describe('Services', () => {
    it('runs one Fargate service per worker, `payfleet worker <name>`, with rollback on failed deploys', () => {
      const { json } = synth();
      const services = resourcesOf(json, 'AWS::ECS::Service');
      expect(services.map(([, s]) => s.Properties!.ServiceName).sort()).toEqual(WORKER_NAMES.map((w) => `payfleet-${w}`).sort());
      for (const [, s] of services) {
        expect(s.Properties).toMatchObject({
          LaunchType: 'FARGATE',
          DeploymentConfiguration: {
            MinimumHealthyPercent: 100,
            MaximumPercent: 200,
            DeploymentCircuitBreaker: { Enable: true, Rollback: true },
          },
          NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } },
        });
        // Left to scaling, so a deploy never resets a scaled-out service.
        expect(s.Properties!.DesiredCount).toBeUndefined();
      }
      for (const w of WORKER_NAMES) expect(container(json, `payfleet-${w}`, 'worker').Command).toEqual(['worker', w]);
    });

    it('health-checks /health/live on the ops port and stops later than the worker force-exits', () => {
      for (const [context, forceExitMs, opsPort] of [
        [DEPLOYABLE, 29_000, 9400],
        [{ ...DEPLOYABLE, forceExitMs: '60000', shutdownGraceMs: '50000', opsPort: '9500' }, 60_000, 9500],
      ] as const) {
        const { json } = synth(context);
        for (const w of WORKER_NAMES) {
          const c = container(json, `payfleet-${w}`, 'worker');
          expect(c.StopTimeout).toBe(stopTimeoutSec(forceExitMs));
          expect(c.StopTimeout! * 1000).toBeGreaterThan(forceExitMs);
          expect(c.StopTimeout).toBeLessThanOrEqual(120);
          expect(c.HealthCheck).toMatchObject({ Interval: 15, Timeout: 5, Retries: 3, StartPeriod: 30 });
          expect(c.HealthCheck!.Command.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
          expect(c.HealthCheck!.Command[3]).toContain(`http://127.0.0.1:${opsPort}/health/live`);
          const env = Object.fromEntries((c.Environment ?? []).map((e) => [e.Name, e.Value]));
          expect(env.PAYFLEET_FORCE_EXIT_MS).toBe(String(forceExitMs));
          expect(env.PAYFLEET_OPS_PORT).toBe(String(opsPort));
          expect(c.Essential).toBe(true);
          expect(c.ReadonlyRootFilesystem).toBe(true);
          expect(c.LogConfiguration).toMatchObject({
            LogDriver: 'awslogs',
            Options: { 'awslogs-stream-prefix': w, mode: 'non-blocking' },
          });
        }
      }
    });

    it('rejects a force-exit that Fargate cannot wait for, and one not above the grace period', () => {
      expect(() => parseDeploymentConfig({ forceExitMs: '119000' })).toThrow(/forceExitMs: leaves no room/);
      expect(() => parseDeploymentConfig({ forceExitMs: '20000' })).toThrow(/forceExitMs: must exceed shutdownGraceMs/);
    });

    it('runs the metrics collector as a non-essential sidecar the worker starts after', () => {
      const { json } = synth();
      for (const w of WORKER_NAMES) {
        const sidecar = container(json, `payfleet-${w}`, 'metrics');
        expect(sidecar.Essential).toBe(false);
        expect(container(json, `payfleet-${w}`, 'worker').DependsOn).toEqual([{ ContainerName: 'metrics', Condition: 'START' }]);
      }
      const off = synth({ ...DEPLOYABLE, metricsSidecar: 'false' }).json;
      for (const w of WORKER_NAMES) {
        const defs = taskDefinition(off, `payfleet-${w}`).Properties!.ContainerDefinitions as ContainerDef[];
        expect(defs.map((d) => d.Name)).toEqual(['worker']);
      }
    });

    it('pulls the image from ECR by the given tag', () => {
      const image = JSON.stringify(
        (taskDefinition(synth().json, 'payfleet-auth').Properties!.ContainerDefinitions as { Image: unknown }[])[0]!.Image,
      );
      expect(image).toContain('/payfleet:test-3f2c1a7');
    });
  });

  describe('Secrets', () => {
    const secretVars = (json: ReturnType<typeof synth>['json'], worker: string) =>
      Object.fromEntries(
        (container(json, `payfleet-${worker}`, 'worker').Secrets ?? []).map((s) => [s.Name, JSON.stringify(s.ValueFrom)]),
      );

    it('gives each worker only the secrets it uses, from Secrets Manager JSON fields', () => {
      const { json } = synth();
      const auth = secretVars(json, 'auth');
      expect(Object.keys(auth).sort()).toEqual(
        [
          'PAYMENT_TOKEN_SERVICE_API_KEY',
          'STRIPE_API_KEY',
          'WORLDPAY_MERCHANT_CODE',
          'WORLDPAY_PASSWORD',
          'WORLDPAY_USERNAME',
        ].sort(),
      );
      expect(auth.STRIPE_API_KEY).toContain(':secret:payfleet-secret/stripe:apiKey::');
      expect(auth.WORLDPAY_PASSWORD).toContain(':secret:payfleet-secret/worldpay:password::');
      const payout = secretVars(json, 'payout');
      expect(Object.keys(payout).sort()).toEqual(['LHV_CLIENT_CERT_PEM', 'LHV_CLIENT_KEY_PEM']);
      expect(payout.LHV_CLIENT_CERT_PEM).toContain(':secret:payfleet-secret/lhv-mtls:certificatePem::');
      expect(payout.LHV_CLIENT_KEY_PEM).toContain(':secret:payfleet-secret/lhv-mtls:privateKeyPem::');
      // capture never decrypts tokens: processors only.
      expect(Object.keys(secretVars(json, 'capture')).sort()).toEqual([
        'STRIPE_API_KEY',
        'WORLDPAY_MERCHANT_CODE',
        'WORLDPAY_PASSWORD',
        'WORLDPAY_USERNAME',
      ]);
      expect(secretVars(json, 'ledger')).toEqual({});
      // Secret values never appear as plain environment.
      for (const w of WORKER_NAMES) {
        const env = (container(json, `payfleet-${w}`, 'worker').Environment ?? []).map((e) => e.Name);
        expect(env.filter((n) => /KEY|PASSWORD|PEM|USERNAME|MERCHANT_CODE/.test(n) && !n.endsWith('_URL'))).toEqual([]);
      }
    });

    it('leaves a disabled processor unwired', () => {
      const { json } = synth({ ...DEPLOYABLE, worldpay: 'false', stripe: 'false' });
      expect(Object.keys(secretVars(json, 'auth'))).toEqual(['PAYMENT_TOKEN_SERVICE_API_KEY']);
    });

    it('names secrets so that a partial ARN can never look like a full one', () => {
      for (const key of Object.keys(SECRETS) as SecretKey[]) expect(secretName('payfleet-', key)).not.toMatch(/-[A-Za-z0-9]{6}$/);
    });
  });

  describe('Scaling', () => {
    it('keeps each worker between its minimum and maximum; payout and ledger never beyond their shards', () => {
      const defaults = synth().json;
      expect(scalableTarget(defaults, 'auth')).toMatchObject({ MinCapacity: 2, MaxCapacity: 20 });
      expect(scalableTarget(defaults, 'capture')).toMatchObject({ MinCapacity: 2, MaxCapacity: 10 });
      expect(scalableTarget(defaults, 'payout')).toMatchObject({ MinCapacity: 2, MaxCapacity: 8 });
      expect(scalableTarget(defaults, 'ledger')).toMatchObject({ MinCapacity: 2, MaxCapacity: 8 });
      const few = synth({
        ...DEPLOYABLE,
        payoutShards: '4',
        ledgerShards: '3',
        payout: '{"maxTasks":50}',
        ledger: '{"maxTasks":50}',
      }).json;
      expect(scalableTarget(few, 'payout')).toMatchObject({ MaxCapacity: 4 });
      expect(scalableTarget(few, 'ledger')).toMatchObject({ MaxCapacity: 3 });
      const env = (w: string) =>
        Object.fromEntries((container(few, `payfleet-${w}`, 'worker').Environment ?? []).map((e) => [e.Name, e.Value]));
      expect(env('payout').PAYFLEET_PAYOUT_SHARDS).toBe('4');
      for (const w of WORKER_NAMES) expect(env(w).PAYFLEET_LEDGER_SHARDS).toBe('3');
    });

    it('scales out on queue depth and on the age of the oldest message; capture on depth only', () => {
      const { json } = synth();
      const alarmsOn = (metricName: string, queue: string) =>
        resourcesOf(json, 'AWS::CloudWatch::Alarm').filter(
          ([, a]) =>
            a.Properties!.MetricName === metricName &&
            JSON.stringify(a.Properties!.Dimensions).includes(
              JSON.stringify(findBy(json, 'AWS::SQS::Queue', 'QueueName', queue)[0]),
            ) &&
            JSON.stringify(a.Properties!.AlarmActions).includes('Policy'),
        );
      for (const [worker, queue] of [
        ['auth', 'auth-requests'],
        ['capture', 'capture-requests'],
        ['payout', 'payout-events'],
      ] as const) {
        const depth = alarmsOn('ApproximateNumberOfMessagesVisible', names.queue(queue));
        // One scale-out alarm at the first step, one scale-in alarm after 15 idle minutes.
        expect(depth.map(([, a]) => a.Properties!.Threshold).sort((a, b) => Number(a) - Number(b))).toEqual([
          0,
          SCALING[worker].depth!.out[0]!.atLeast,
        ]);
        const age = alarmsOn('ApproximateAgeOfOldestMessage', names.queue(queue));
        expect(age.map(([, a]) => a.Properties!.Threshold)).toEqual(
          SCALING[worker].ageSec ? [SCALING[worker].ageSec!.out[0]!.atLeast] : [],
        );
      }
      const lag = resourcesOf(json, 'AWS::CloudWatch::Alarm').filter(
        ([, a]) => a.Properties!.MetricName === PROM.ledgerLag && JSON.stringify(a.Properties!.AlarmActions).includes('Policy'),
      );
      expect(lag).toHaveLength(2);
    });
  });

  describe('Alarms', () => {
    const alarm = (json: ReturnType<typeof synth>['json'], name: string) =>
      findBy(json, 'AWS::CloudWatch::Alarm', 'AlarmName', `payfleet-${name}`)[1].Properties!;

    it('alarms when any DLQ holds a letter', () => {
      const { json } = synth();
      for (const key of QUEUES_WITH_DLQ) {
        const a = alarm(json, `${key}-dlq-not-empty`);
        expect(a).toMatchObject({
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          EvaluationPeriods: 1,
          TreatMissingData: 'notBreaching',
        });
        const [dlqId] = findBy(json, 'AWS::SQS::Queue', 'QueueName', names.dlq(key));
        const watched = JSON.stringify(a.Metrics);
        // Visible and in-flight letters of that DLQ (an operator reading letters hides them a while).
        expect(watched).toContain(JSON.stringify({ 'Fn::GetAtt': [dlqId, 'QueueName'] }));
        expect(watched).toContain('ApproximateNumberOfMessagesNotVisible');
      }
    });

    it('alarms on the age of the oldest message of every queue; capture allows its whole retry budget', () => {
      const { json, config } = synth();
      for (const key of QUEUE_KEYS) {
        expect(alarm(json, `${key}-oldest-message-age`)).toMatchObject({
          MetricName: 'ApproximateAgeOfOldestMessage',
          Threshold: oldestMessageAgeLimitSec(config, key),
        });
      }
      expect(oldestMessageAgeLimitSec(config, 'capture-requests')).toBe(96 * 3600 + 86_400);
    });

    it('alarms on overdue captures, lost leases, commit conflicts and ledger lag from the workers own metrics', () => {
      const { json } = synth();
      expect(alarm(json, 'capture-overdue')).toMatchObject({
        Namespace: 'Payfleet/payfleet',
        MetricName: PROM.overdueCaptures,
        Threshold: ALARM_THRESHOLDS.overdueCaptures,
      });
      expect(alarm(json, 'ledger-emission-lag')).toMatchObject({
        MetricName: PROM.ledgerLag,
        Threshold: ALARM_THRESHOLDS.ledgerLagSec,
      });
      for (const w of WORKER_NAMES) {
        expect(alarm(json, `${w}-lease-lost`)).toMatchObject({
          MetricName: PROM.leaseConflicts,
          Dimensions: expect.arrayContaining([
            { Name: 'kind', Value: 'LEASE_LOST' },
            { Name: 'worker', Value: w },
          ]),
          Statistic: 'Sum',
        });
        expect(alarm(json, `${w}-commit-conflicts`)).toMatchObject({
          MetricName: PROM.commitConflicts,
          Statistic: 'Sum',
          Threshold: ALARM_THRESHOLDS.commitConflictsPer5Min,
        });
        expect(alarm(json, `${w}-tasks-below-minimum`)).toMatchObject({
          Namespace: 'ECS/ContainerInsights',
          MetricName: 'RunningTaskCount',
          Threshold: 2,
        });
      }
    });

    it('sends every alarm, and its recovery, to the alarm topic', () => {
      const { json } = synth();
      const [topicId] = findBy(json, 'AWS::SNS::Topic', 'TopicName', 'payfleet-alarms');
      const alarms = resourcesOf(json, 'AWS::CloudWatch::Alarm').filter(([, a]) =>
        String(a.Properties!.AlarmName ?? '').startsWith('payfleet-'),
      );
      // DLQs, queue ages, task minimums, lease-lost + commit-conflicts per worker, overdue, ledger lag, payout waiting.
      expect(alarms.length).toBe(4 + 5 + 5 + 5 * 2 + 3);
      for (const [, a] of alarms) {
        expect(a.Properties!.AlarmActions).toEqual([{ Ref: topicId }]);
        expect(a.Properties!.OKActions).toEqual([{ Ref: topicId }]);
      }
      synth().template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: DEPLOYABLE.alarmEmail });
    });

    it('has no custom-metric alarms without the metrics sidecar', () => {
      const { json } = synth({ ...DEPLOYABLE, metricsSidecar: 'false' });
      const custom = resourcesOf(json, 'AWS::CloudWatch::Alarm').filter(([, a]) =>
        String(a.Properties!.Namespace ?? '').startsWith('Payfleet/'),
      );
      expect(custom).toEqual([]);
    });
  });

  describe('Config', () => {
    it('lists what a synth-only template lacks for a deploy, and nothing once answered', () => {
      expect(deployBlockers(parseDeploymentConfig({}))).toHaveLength(5);
      expect(deployBlockers(parseDeploymentConfig({ ...DEPLOYABLE }))).toEqual([]);
      expect(deployBlockers(parseDeploymentConfig({ ...DEPLOYABLE, worldpay: 'false', worldpayApiBaseUrl: undefined }))).toEqual(
        [],
      );
    });

    it('refuses a task size Fargate does not offer', () => {
      expect(() => parseDeploymentConfig({ auth: '{"cpu":256,"memoryMiB":4096}' })).toThrow(
        /auth\.memoryMiB: 4096 MiB is not a Fargate size for 256/,
      );
      expect(() => parseDeploymentConfig({ auth: '{"cpu":1024,"memoryMiB":3072}' })).not.toThrow();
      expect(() => parseDeploymentConfig({ auth: '{cpu:1024' })).toThrow(/auth: /);
    });

    it('reports bad and unknown context keys, one line each', () => {
      let message = '';
      try {
        parseDeploymentConfig({ imagetag: 'x', payoutShards: '0', logRetentionDays: '10', 'aws:cdk:enable-path-metadata': true });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/imagetag: unknown context key/);
      expect(message).toMatch(/payoutShards:/);
      expect(message).toMatch(/logRetentionDays:/);
      expect(message).not.toMatch(/aws:cdk/);
    });

    it('is deletion-safe: termination protection on, stateful resources retained', () => {
      const { stack, json } = synth();
      expect(stack.terminationProtection).toBe(true);
      for (const type of ['AWS::DynamoDB::Table', 'AWS::SQS::Queue']) {
        for (const [, r] of resourcesOf(json, type)) expect(r.DeletionPolicy).toBe('Retain');
      }
    });
  });
});
