/**
 * The CDK app: context -> DeploymentConfig -> PayfleetStack. Used by infra/synth.ts (offline,
 * `npm run synth`), by the CDK CLI (`--app cdk.out` or `--app 'node --import tsx infra/synth.ts'`)
 * and by test/infra (Template.fromStack).
 */
import { App, Tags } from 'aws-cdk-lib';
import { parseDeploymentConfig, type DeploymentConfig } from './config.js';
import { PayfleetStack } from './stack.js';

/**
 * Feature flags, frozen when the stack was written (what `cdk init` would put in cdk.json). A flag
 * changes generated resources, so they are pinned here rather than following each CDK release:
 * review them when upgrading aws-cdk-lib, never flip one on a deployed stack without a diff.
 */
export const FEATURE_FLAGS: Readonly<Record<string, unknown>> = {
  '@aws-cdk/core:checkSecretUsage': true,
  '@aws-cdk/core:target-partitions': ['aws', 'aws-cn'],
  '@aws-cdk/core:enablePartitionLiterals': true,
  '@aws-cdk/core:includePrefixInUniqueNameGeneration': true,
  '@aws-cdk/core:validateSnapshotRemovalPolicy': true,
  '@aws-cdk/aws-iam:minimizePolicies': true,
  '@aws-cdk/aws-iam:importedRoleStackSafeDefaultPolicyName': true,
  '@aws-cdk/aws-ecs:arnFormatIncludesClusterName': true,
  '@aws-cdk/aws-ecs:disableExplicitDeploymentControllerForCircuitBreaker': true,
  '@aws-cdk/aws-ecs:removeDefaultDeploymentAlarm': true,
  '@aws-cdk/aws-ecs:reduceEc2FargateCloudWatchPermissions': true,
  '@aws-cdk/aws-sns-subscriptions:restrictSqsDescryption': true,
};

export interface BuildOptions {
  /** CDK context (`-c key=value`); feature flags are added underneath. */
  readonly context?: Record<string, unknown>;
  readonly outdir?: string;
  /** Run CDK's built-in CloudFormation schema validation on synth. @default false */
  readonly validate?: boolean;
}

export interface Built {
  readonly app: App;
  readonly stack: PayfleetStack;
  readonly config: DeploymentConfig;
}

/** Build the app and its one stack. Throws on bad context (one line per problem). */
export function buildApp(options: BuildOptions = {}): Built {
  const app = new App({
    ...(options.outdir ? { outdir: options.outdir } : {}),
    context: { ...FEATURE_FLAGS, ...options.context },
    // No stack traces in construct metadata: smaller, faster, deterministic cdk.out.
    stackTraces: false,
    analyticsReporting: false,
    treeMetadata: false,
    // The built-in schema validation costs ~6 s of CPU per synth of this stack: on request only
    // (synth --validate, which the deploy pipeline uses); test/infra pins what matters.
    builtinCloudFormationValidation: options.validate ?? false,
  });
  const context: Record<string, unknown> = {};
  for (const key of Object.keys(options.context ?? {})) context[key] = app.node.tryGetContext(key);
  // CDK_CONTEXT_JSON (set by the CDK CLI) can add keys the caller did not pass.
  for (const [key, value] of Object.entries(JSON.parse(process.env.CDK_CONTEXT_JSON ?? '{}') as Record<string, unknown>))
    context[key] = value;
  const config = parseDeploymentConfig(context);
  // Account and region: explicit env when the CLI (or the caller) provides them; otherwise the
  // template is environment-agnostic and deployable to whatever account/region the credentials name.
  const account = process.env.CDK_DEPLOY_ACCOUNT ?? process.env.CDK_DEFAULT_ACCOUNT;
  const region = process.env.CDK_DEPLOY_REGION ?? process.env.CDK_DEFAULT_REGION;
  const stack = new PayfleetStack(app, config.stackName, {
    config,
    description: `payfleet workers on ECS/Fargate, SQS FIFO and DynamoDB (prefix ${config.prefix})`,
    ...(account && region ? { env: { account, region } } : {}),
    terminationProtection: true,
  });
  Tags.of(stack).add('app', 'payfleet');
  Tags.of(stack).add('payfleet:prefix', config.prefix);
  return { app, stack, config };
}
