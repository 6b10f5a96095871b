import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import {
  AwsFailure,
  type AwsFailureReason,
  type AwsTarget,
  classifyAwsFailure,
  describeAwsFailure,
  resourceOfInput,
} from '../../shared/aws/errors.js';
import { awsEnvSchema, toAwsConfig, type AwsConfig } from '../../shared/config/common.js';
import { parseEnv } from '../../shared/config/env.js';
import { resourceNames, type ResourceNames } from '../../shared/resources.js';

/** What a command needs: the configured endpoint's clients and the resource names of its prefix. */
export interface CommandContext {
  readonly aws: AwsConfig;
  readonly clients: AwsClients;
  readonly names: ResourceNames;
}

/** Where calls of `service` go under `aws`, for failure messages. */
export function targetOf(aws: AwsConfig, service: 'sqs' | 'dynamodb'): AwsTarget {
  const endpoint = service === 'sqs' ? aws.sqsEndpoint : aws.dynamodbEndpoint;
  return {
    service,
    region: aws.region,
    ...(endpoint ? { endpoint } : {}),
    prefix: aws.resourcePrefix,
    ...(process.env.AWS_PROFILE ? { profile: process.env.AWS_PROFILE } : {}),
  };
}

const ALL_REASONS: ReadonlySet<AwsFailureReason> = new Set(['credentials', 'connectivity', 'not-found', 'access-denied']);

/** What `payfleet bootstrap` translates: everything but "not found", which it answers by creating. */
export const BOOTSTRAP_REASONS: ReadonlySet<AwsFailureReason> = new Set(['credentials', 'connectivity', 'access-denied']);

/**
 * Make every failed call of these clients an {@link AwsFailure} with advice when it is a
 * credentials, connectivity, not-found or access-denied failure (anything else is rethrown as is).
 * The middleware sits at the `initialize` step, outside the SDK's retries and credential
 * resolution, so it sees the final error of a call, including "could not load credentials".
 * For the CLI only: workers classify raw SDK errors (shared/errors.ts) and must keep seeing them.
 * `reasons` limits which failures are translated: bootstrap asks whether a queue exists and must
 * see the SDK's own "does not exist" to create it.
 */
export function describeFailures(
  clients: AwsClients,
  aws: AwsConfig,
  reasons: ReadonlySet<AwsFailureReason> = ALL_REASONS,
): AwsClients {
  const install = (stack: AwsClients['sqs']['middlewareStack'], service: 'sqs' | 'dynamodb') =>
    stack.add(
      (next) => async (args) => {
        try {
          return await next(args);
        } catch (err) {
          const reason = classifyAwsFailure(err);
          if (!reason || !reasons.has(reason)) throw err;
          const resource = resourceOfInput(args.input);
          throw describeAwsFailure(err, { ...targetOf(aws, service), ...(resource ? { resource } : {}) }) ?? err;
        }
      },
      { step: 'initialize', name: 'payfleetDescribeFailures', override: true },
    );
  install(clients.sqs.middlewareStack, 'sqs');
  // The document client shares the DynamoDB client's stack.
  install(clients.dynamodb.middlewareStack as unknown as AwsClients['sqs']['middlewareStack'], 'dynamodb');
  return clients;
}

/**
 * Parse the standard AWS variables (exit 2 on bad config, via ConfigError) and build clients whose
 * failures say what to do ({@link describeFailures}). Destroy them when done.
 */
export function openCommandContext(
  aws: AwsConfig = toAwsConfig(parseEnv(awsEnvSchema)),
  reasons: ReadonlySet<AwsFailureReason> = ALL_REASONS,
): CommandContext {
  return { aws, clients: describeFailures(createAwsClients(aws), aws, reasons), names: resourceNames(aws.resourcePrefix) };
}

/**
 * The URL of queue `name` (a full name, e.g. `names.queue('auth-requests')`). Fails with an
 * {@link AwsFailure} that tells a missing queue (a prefix, region or endpoint typo, or a new
 * environment) from bad credentials, an unreachable endpoint and a refused permission.
 */
export async function resolveQueueUrl(ctx: Pick<CommandContext, 'aws' | 'clients'>, name: string): Promise<string> {
  try {
    const url = (await ctx.clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
    if (!url) throw new Error(`GetQueueUrl answered without a QueueUrl for ${name}`);
    return url;
  } catch (err) {
    if (err instanceof AwsFailure) throw err;
    throw describeAwsFailure(err, { ...targetOf(ctx.aws, 'sqs'), resource: `queue ${name}` }) ?? err;
  }
}
