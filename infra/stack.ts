/**
 * The payfleet stack: network, data plane (queues, DLQs, tables), one Fargate service per worker,
 * the one-off bootstrap task, alarms, a dashboard. Synthesises offline: no lookups, no assets, no
 * Docker — the image is pulled from ECR by tag (see docs/deployment.md "Build and push the image").
 */
import { Annotations, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';
import { QUEUE_KEYS, TABLE_KEYS } from '../shared/resources.js';
import { BOOTSTRAP_ACCESS } from './access.js';
import { FleetAlarms } from './alarms.js';
import { dashboardName, FleetDashboard } from './dashboard.js';
import { type DeploymentConfig, deployBlockers, WORKER_NAMES, type WorkerName } from './config.js';
import { DataPlane, pascal } from './data-plane.js';
import { metricsNamespace } from './metrics.js';
import { bootstrapEnvironment, SECRETS, type SecretKey, secretName, workerEnvironment } from './worker-env.js';
import { WorkerService } from './worker-service.js';

export interface PayfleetStackProps extends StackProps {
  readonly config: DeploymentConfig;
}

/** Tag used in a synth-only template when no imageTag is given (deployBlockers reports it). */
export const UNSET_IMAGE_TAG = 'unset-pass-imageTag';

export class PayfleetStack extends Stack {
  readonly data: DataPlane;
  readonly cluster: ecs.Cluster;
  readonly workers: Readonly<Record<WorkerName, WorkerService>>;
  readonly bootstrapTask: ecs.FargateTaskDefinition;
  readonly alarmTopic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: PayfleetStackProps) {
    super(scope, id, props);
    const { config } = props;
    for (const blocker of deployBlockers(config)) Annotations.of(this).addWarningV2('payfleet:deploy-blocker', blocker);

    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: config.natGateways,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'workers', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
      ],
      // Nothing uses the default security group; locking it down needs a custom-resource Lambda.
      restrictDefaultSecurityGroup: false,
    });
    // DynamoDB and ECR's layer store (S3) over gateway endpoints: free, and off the NAT bill.
    vpc.addGatewayEndpoint('DynamoDb', { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB });
    vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3 });
    const subnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };

    // Workers take no inbound traffic at all: health checks run inside the task.
    const securityGroup = new ec2.SecurityGroup(this, 'WorkerSecurityGroup', {
      vpc,
      description: 'payfleet workers: no inbound; HTTPS out to AWS APIs, processors, LHV',
      allowAllOutbound: true,
    });

    this.data = new DataPlane(this, 'Data', {
      prefix: config.prefix,
      maxReceiveCount: config.maxReceiveCount,
      visibilityTimeoutSec: config.queueVisibilityTimeoutSec,
    });

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      clusterName: `${config.prefix}fleet`,
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    const repository = ecr.Repository.fromRepositoryName(this, 'Repository', config.imageRepository);
    const image = ecs.ContainerImage.fromEcrRepository(repository, config.imageTag ?? UNSET_IMAGE_TAG);

    // Only the secrets some worker's environment refers to are referenced at all.
    const used = new Set<SecretKey>();
    for (const w of WORKER_NAMES)
      for (const ref of Object.values(workerEnvironment(w, config, this.region).secrets)) used.add(ref.secret);
    const secrets: Partial<Record<SecretKey, secretsmanager.ISecret>> = {};
    for (const key of Object.keys(SECRETS) as SecretKey[]) {
      if (used.has(key))
        secrets[key] = secretsmanager.Secret.fromSecretNameV2(this, `${pascal(key)}Secret`, secretName(config.prefix, key));
    }

    let metrics: { namespace: string; logGroup: logs.LogGroup } | undefined;
    if (config.metricsSidecar) {
      metrics = {
        namespace: metricsNamespace(config.prefix),
        logGroup: new logs.LogGroup(this, 'MetricsLogs', {
          logGroupName: `/ecs/${config.prefix}metrics`,
          // EMF events only carry what CloudWatch already extracted into metrics.
          retention: logs.RetentionDays.ONE_WEEK,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
      };
    }

    const workers = {} as Record<WorkerName, WorkerService>;
    for (const worker of WORKER_NAMES) {
      workers[worker] = new WorkerService(this, `${pascal(worker)}Worker`, {
        worker,
        config,
        cluster: this.cluster,
        image,
        data: this.data,
        secrets,
        securityGroup,
        subnets,
        ...(metrics ? { metrics } : {}),
      });
    }
    this.workers = workers;

    this.bootstrapTask = this.bootstrapTaskDefinition(config, image);

    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', {
      topicName: `${config.prefix}alarms`,
      displayName: 'payfleet alarms',
      enforceSSL: true,
    });
    if (config.alarmEmail) this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(config.alarmEmail));
    const alarms = new FleetAlarms(this, 'Alarms', {
      config,
      data: this.data,
      services: workers,
      cluster: this.cluster,
      topic: this.alarmTopic,
      ...(metrics ? { metricsNamespace: metrics.namespace } : {}),
    });
    this.dashboard = new FleetDashboard(this, 'Dashboard', {
      config,
      data: this.data,
      services: workers,
      cluster: this.cluster,
      alarms: alarms.alarms,
      ...(metrics ? { metricsNamespace: metrics.namespace } : {}),
    }).dashboard;

    for (const key of QUEUE_KEYS) {
      new CfnOutput(this, `${pascal(key)}QueueUrl`, { value: this.data.queues[key].queueUrl, description: `${key}.fifo` });
    }
    new CfnOutput(this, 'ClusterName', { value: this.cluster.clusterName });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards:name=${dashboardName(config.prefix)}`,
    });
    new CfnOutput(this, 'BootstrapRunTask', {
      description: 'Run once after the first deploy (and after changing shard counts): verifies resources, writes shard rows',
      value: [
        'aws ecs run-task --launch-type FARGATE',
        `--cluster ${this.cluster.clusterName}`,
        `--task-definition ${this.bootstrapTask.family}`,
        `--network-configuration 'awsvpcConfiguration={subnets=[${vpc.selectSubnets(subnets).subnetIds.join(',')}],securityGroups=[${securityGroup.securityGroupId}],assignPublicIp=DISABLED}'`,
      ].join(' '),
    });
  }

  /**
   * `payfleet bootstrap` as a one-off task. On AWS the stack owns queues and tables, so its role can
   * only read their structure (a drift it would "repair" is refused, and shows up as an error)
   * and put the shard rows into the leases table.
   */
  private bootstrapTaskDefinition(config: DeploymentConfig, image: ecs.ContainerImage): ecs.FargateTaskDefinition {
    const role = new iam.Role(this, 'BootstrapTaskRole', {
      description: `payfleet bootstrap (${config.prefix}): verify queues and tables, write shard rows`,
      assumedBy: new iam.PrincipalWithConditions(new iam.ServicePrincipal('ecs-tasks.amazonaws.com'), {
        StringEquals: { 'aws:SourceAccount': this.account },
        ArnLike: { 'aws:SourceArn': `arn:${this.partition}:ecs:${this.region}:${this.account}:*` },
      }),
    });
    const queueArns = QUEUE_KEYS.flatMap((k) => [
      this.data.queues[k].queueArn,
      ...(this.data.dlqs[k] ? [this.data.dlqs[k].queueArn] : []),
    ]);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'VerifyQueues', actions: [...BOOTSTRAP_ACCESS.queueActions], resources: queueArns }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'VerifyTables',
        actions: [...BOOTSTRAP_ACCESS.tableActions],
        resources: TABLE_KEYS.map((k) => this.data.tables[k].tableArn),
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ShardRows',
        actions: [...BOOTSTRAP_ACCESS.leaseRowActions],
        resources: [this.data.tables.leases.tableArn],
      }),
    );
    const family = `${config.prefix}bootstrap`;
    const task = new ecs.FargateTaskDefinition(this, 'BootstrapTask', {
      family,
      cpu: 256,
      memoryLimitMiB: 512,
      taskRole: role,
      runtimePlatform: {
        cpuArchitecture: config.cpuArchitecture === 'ARM64' ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    task.addContainer('Bootstrap', {
      containerName: 'bootstrap',
      image,
      command: ['bootstrap'],
      environment: { ...bootstrapEnvironment(config, this.region) },
      readonlyRootFilesystem: true,
      stopTimeout: Duration.seconds(10),
      logging: ecs.LogDrivers.awsLogs({
        logGroup: new logs.LogGroup(this, 'BootstrapLogs', {
          logGroupName: `/ecs/${family}`,
          retention: logs.RetentionDays.ONE_YEAR,
        }),
        streamPrefix: 'bootstrap',
      }),
    });
    return task;
  }
}
