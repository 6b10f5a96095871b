import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { awsEnvSchema, toAwsConfig, type AwsConfig } from '../../shared/config/common.js';
import { parseEnv } from '../../shared/config/env.js';
import { resourceNames, type ResourceNames } from '../../shared/resources.js';

/** What a read command needs: the configured endpoint's clients and the resource names of its prefix. */
export interface CommandContext {
  readonly aws: AwsConfig;
  readonly clients: AwsClients;
  readonly names: ResourceNames;
}

/** Parse the standard AWS variables (exit 2 on bad config, via ConfigError) and build clients. Destroy them when done. */
export function openCommandContext(): CommandContext {
  const aws = toAwsConfig(parseEnv(awsEnvSchema));
  return { aws, clients: createAwsClients(aws), names: resourceNames(aws.resourcePrefix) };
}
