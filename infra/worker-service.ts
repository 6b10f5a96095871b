/**
 * One worker on ECS/Fargate: task definition (the worker container plus an optional metrics
 * sidecar), its own least-privilege task role, log group, service and step scaling.
 */
import { Duration, Size, Stack } from 'aws-cdk-lib';
import * as aas from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { CONSUMER_QUEUE_ACTIONS, DLQ_ACTIONS, PRODUCER_QUEUE_ACTIONS, WORKER_ACCESS } from './access.js';
import { type DeploymentConfig, maxTasksOf, stopTimeoutSec, type WorkerName } from './config.js';
import type { DataPlane } from './data-plane.js';
import { adotConfig, PROM } from './metrics.js';
import { SCALE_IN_AFTER_MINUTES, SCALE_IN_COOLDOWN_SEC, SCALE_OUT_COOLDOWN_SEC, SCALING, type Step } from './scaling.js';
import { type SecretKey, workerEnvironment } from './worker-env.js';

/**
 * The container health check: GET /health/live on the ops port with node itself (slim images have
 * no curl). Liveness, not readiness: /health/ready fails while DynamoDB or SQS is unreachable,
 * and replacing every task during a dependency blip would only add a cold start to the outage.
 */
export function liveProbeCommand(port: number): string[] {
  const script = `fetch('http://127.0.0.1:${port}/health/live',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`;
  return ['CMD', 'node', '-e', script];
}

export const HEALTH_CHECK = { intervalSec: 15, timeoutSec: 5, retries: 3, startPeriodSec: 30 } as const;

export interface WorkerServiceProps {
  readonly worker: WorkerName;
  readonly config: DeploymentConfig;
  readonly cluster: ecs.ICluster;
  readonly image: ecs.ContainerImage;
  readonly data: DataPlane;
  readonly secrets: Readonly<Partial<Record<SecretKey, secretsmanager.ISecret>>>;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly subnets: ec2.SubnetSelection;
  /** Present when the metrics sidecar is on. */
  readonly metrics?: { readonly namespace: string; readonly logGroup: logs.ILogGroup };
}

export class WorkerService extends Construct {
  readonly taskRole: iam.Role;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly service: ecs.FargateService;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: WorkerServiceProps) {
    super(scope, id);
    const { worker, config } = props;
    const stack = Stack.of(this);
    const family = `${config.prefix}${worker}`;

    this.taskRole = new iam.Role(this, 'TaskRole', {
      description: `payfleet ${worker} worker (${config.prefix}): only its own queues and tables`,
      // Confused-deputy guard: only ECS tasks of this account may assume it.
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('ecs-tasks.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': stack.account },
        ArnLike: { 'aws:SourceArn': `arn:${stack.partition}:ecs:${stack.region}:${stack.account}:*` },
      }),
    });
    this.grantData(worker, props.data);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `/ecs/${family}`,
      retention: config.logRetentionDays as logs.RetentionDays,
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      family,
      cpu: config[worker].cpu,
      memoryLimitMiB: config[worker].memoryMiB,
      taskRole: this.taskRole,
      runtimePlatform: {
        cpuArchitecture: config.cpuArchitecture === 'ARM64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });

    const env = workerEnvironment(worker, config, stack.region);
    const secrets: Record<string, ecs.Secret> = {};
    for (const [variable, ref] of Object.entries(env.secrets)) {
      const secret = props.secrets[ref.secret];
      if (!secret) throw new Error(`worker ${worker}: secret ${ref.secret} is needed for ${variable} but not declared`);
      secrets[variable] = ecs.Secret.fromSecretsManager(secret, ref.field);
    }

    const container = this.taskDefinition.addContainer('Worker', {
      containerName: 'worker',
      image: props.image,
      command: ['worker', worker],
      environment: { ...env.environment },
      secrets,
      essential: true,
      readonlyRootFilesystem: true,
      stopTimeout: Duration.seconds(stopTimeoutSec(config.forceExitMs)),
      healthCheck: {
        command: liveProbeCommand(config.opsPort),
        interval: Duration.seconds(HEALTH_CHECK.intervalSec),
        timeout: Duration.seconds(HEALTH_CHECK.timeoutSec),
        retries: HEALTH_CHECK.retries,
        startPeriod: Duration.seconds(HEALTH_CHECK.startPeriodSec),
      },
      logging: ecs.LogDrivers.awsLogs({
        logGroup: this.logGroup,
        streamPrefix: worker,
        // A slow CloudWatch Logs must never stall a worker mid-payment; the buffer absorbs bursts.
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        maxBufferSize: Size.mebibytes(25),
      }),
    });

    if (props.metrics) {
      const sidecar = this.taskDefinition.addContainer('Metrics', {
        containerName: 'metrics',
        image: ecs.ContainerImage.fromRegistry(config.adotImage),
        // Losing metrics must not stop payments: the worker runs on without its collector.
        essential: false,
        memoryLimitMiB: 128,
        readonlyRootFilesystem: true,
        environment: {
          AWS_REGION: stack.region,
          AOT_CONFIG_CONTENT: adotConfig({
            opsPort: config.opsPort,
            namespace: props.metrics.namespace,
            logGroupName: props.metrics.logGroup.logGroupName,
          }),
        },
        logging: ecs.LogDrivers.awsLogs({
          logGroup: this.logGroup,
          streamPrefix: 'metrics',
          mode: ecs.AwsLogDriverMode.NON_BLOCKING,
        }),
      });
      // Started before the worker, so stopped after it: the last scrape sees the drained worker.
      container.addContainerDependencies({ container: sidecar, condition: ecs.ContainerDependencyCondition.START });
      this.taskRole.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'MetricsSidecarEmf',
          actions: ['logs:PutLogEvents', 'logs:CreateLogStream', 'logs:DescribeLogStreams'],
          resources: [props.metrics.logGroup.logGroupArn],
        }),
      );
    }

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: family,
      cluster: props.cluster,
      taskDefinition: this.taskDefinition,
      // desiredCount is left to scaling: a deploy must not reset a scaled-out service to its minimum.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      securityGroups: [props.securityGroup],
      vpcSubnets: props.subnets,
      assignPublicIp: false,
      platformVersion: ecs.FargatePlatformVersion.LATEST,
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });

    this.addScaling(worker, config, props);
  }

  /** Statements from WORKER_ACCESS: one per resource, naming exact ARNs (no wildcards but the index suffix). */
  private grantData(worker: WorkerName, data: DataPlane): void {
    const access = WORKER_ACCESS[worker];
    const add = (sid: string, actions: readonly string[], resources: string[]) =>
      this.taskRole.addToPrincipalPolicy(new iam.PolicyStatement({ sid, actions: [...actions], resources }));
    if (access.consumes) {
      const key = access.consumes;
      add(`Consume${sidOf(key)}`, CONSUMER_QUEUE_ACTIONS, [data.queues[key].queueArn]);
      const dlq = data.dlqs[key];
      if (!dlq) throw new Error(`worker ${worker} consumes ${key}, which has no DLQ`);
      add(`DeadLetter${sidOf(key)}`, DLQ_ACTIONS, [dlq.queueArn]);
    }
    for (const key of access.sendsTo) add(`SendTo${sidOf(key)}`, PRODUCER_QUEUE_ACTIONS, [data.queues[key].queueArn]);
    for (const grant of access.tables) {
      const table = data.tables[grant.table];
      add(
        `Table${sidOf(grant.table)}`,
        grant.actions.map((a) => `dynamodb:${a}`),
        [table.tableArn],
      );
      for (const [index, actions] of Object.entries(grant.indexes ?? {})) {
        add(
          `Index${sidOf(grant.table)}${sidOf(index)}`,
          actions.map((a) => `dynamodb:${a}`),
          [`${table.tableArn}/index/${index}`],
        );
      }
    }
  }

  private addScaling(worker: WorkerName, config: DeploymentConfig, props: WorkerServiceProps): void {
    const plan = SCALING[worker];
    const scalable = this.service.autoScaleTaskCount({
      minCapacity: config[worker].minTasks,
      maxCapacity: maxTasksOf(config, worker),
    });
    const outSteps = (out: readonly Step[]): aas.ScalingInterval[] => [
      { upper: out[0]!.atLeast, change: 0 },
      ...out.map((s) => ({ lower: s.atLeast, change: s.change })),
    ];
    const stepOut = (id: string, metric: cloudwatch.IMetric, out: readonly Step[]) =>
      scalable.scaleOnMetric(id, {
        metric,
        scalingSteps: outSteps(out),
        adjustmentType: aas.AdjustmentType.CHANGE_IN_CAPACITY,
        cooldown: Duration.seconds(SCALE_OUT_COOLDOWN_SEC),
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
      });
    const stepIn = (id: string, metric: cloudwatch.IMetric, atMost: number) =>
      scalable.scaleOnMetric(id, {
        metric,
        scalingSteps: [
          { upper: atMost, change: -1 },
          { lower: atMost + 1, change: 0 },
        ],
        adjustmentType: aas.AdjustmentType.CHANGE_IN_CAPACITY,
        cooldown: Duration.seconds(SCALE_IN_COOLDOWN_SEC),
        evaluationPeriods: SCALE_IN_AFTER_MINUTES,
        datapointsToAlarm: SCALE_IN_AFTER_MINUTES,
      });

    const source = WORKER_ACCESS[worker].consumes;
    if (source) {
      const queue = props.data.queues[source];
      const visible = queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: 'Maximum' });
      if (plan.depth) {
        stepOut('ScaleOutOnDepth', visible, plan.depth.out);
        stepIn('ScaleInWhenIdle', visible, plan.depth.inWhenAtMost);
      }
      if (plan.ageSec) {
        const age = queue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1), statistic: 'Maximum' });
        stepOut('ScaleOutOnAge', age, plan.ageSec.out);
      }
    }
    if (plan.ledgerLagSec && props.metrics) {
      const lag = new cloudwatch.Metric({
        namespace: props.metrics.namespace,
        metricName: PROM.ledgerLag,
        dimensionsMap: { worker },
        period: Duration.minutes(1),
        statistic: 'Maximum',
      });
      stepOut('ScaleOutOnLag', lag, plan.ledgerLagSec.out);
      stepIn('ScaleInWhenCaughtUp', lag, plan.ledgerLagSec.inWhenAtMost);
    }
  }
}

/** `auth-requests` -> `AuthRequests` for statement ids (alphanumeric only). */
function sidOf(key: string): string {
  return key.replace(/(^|[-_])([a-z0-9])/g, (_, __, c: string) => c.toUpperCase()).replace(/[^A-Za-z0-9]/g, '');
}
