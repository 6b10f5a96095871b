import { z } from 'zod';
import { DEFAULT_AWS_DEADLINES, type AwsDeadlines } from '../aws/request-handler.js';
import { ConfigError } from '../errors.js';
import { bool, int, parseEnv, url } from './env.js';

/** Variables every process that talks to AWS reads. */
export const awsEnvShape = {
  /** Resource name prefix for every queue and table. @default 'payfleet-' */
  PAYFLEET_RESOURCE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]{0,40}$/, { error: 'may hold only letters, digits, "-" and "_" (at most 40)' })
    .default('payfleet-'),
  /** AWS region. Required: the fleet never guesses where money lives. */
  AWS_REGION: z.string().min(1),
  AWS_ENDPOINT_URL: url().optional(),
  AWS_ENDPOINT_URL_SQS: url().optional(),
  AWS_ENDPOINT_URL_DYNAMODB: url().optional(),
  /** Set when any credential source is configured; only its presence is read. */
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_PROFILE: z.string().optional(),
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: z.string().optional(),
  AWS_CONTAINER_CREDENTIALS_FULL_URI: z.string().optional(),
  AWS_WEB_IDENTITY_TOKEN_FILE: z.string().optional(),
  /**
   * Deadline of one DynamoDB request attempt; past it the attempt fails with TimeoutError and the
   * SDK resends the same request. 0 = the default. @default 5000 (a worker: less, if that is what
   * fits below its lease; see shared/config/worker.ts)
   */
  PAYFLEET_DYNAMODB_TIMEOUT_MS: int(0, { min: 0, max: 120_000 }),
  /** Deadline of one SQS request attempt other than ReceiveMessage. 0 = the default. @default 5000 (a worker: less, if needed to fit its lease and visibility) */
  PAYFLEET_SQS_TIMEOUT_MS: int(0, { min: 0, max: 120_000 }),
  /** ReceiveMessage's deadline is its long-poll wait (WaitTimeSeconds) plus this. @default 5000 */
  PAYFLEET_SQS_RECEIVE_MARGIN_MS: int(DEFAULT_AWS_DEADLINES.sqsReceiveMarginMs, { min: 100, max: 120_000 }),
  /** Attempts of one AWS call, the first included (the SDK's maxAttempts). @default 3 */
  PAYFLEET_AWS_MAX_ATTEMPTS: int(DEFAULT_AWS_DEADLINES.maxAttempts, { min: 1, max: 10 }),
  /**
   * Ask DynamoDB for the capacity each call consumes (ReturnConsumedCapacity: TOTAL) and export it
   * as payfleet_dynamodb_capacity_units_total: for benchmarks and cost investigations. @default false
   */
  PAYFLEET_DYNAMODB_CONSUMED_CAPACITY: bool(false),
} as const;

const NO_ENDPOINT_PROBLEM =
  'no endpoint and no AWS credentials are configured. Set AWS_ENDPOINT_URL ' +
  '(or AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_DYNAMODB) to a local stack such as the one ' +
  '`payfleet stack up` prints, or provide credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ' +
  'AWS_PROFILE, or an ECS task role) to use AWS itself.';

type AwsEnvPresence = Partial<Record<keyof typeof awsEnvShape, unknown>>;

function lacksEndpointAndCredentials(env: AwsEnvPresence): boolean {
  const hasCredentials = Boolean(
    env.AWS_ACCESS_KEY_ID ||
      env.AWS_PROFILE ||
      env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI ||
      env.AWS_CONTAINER_CREDENTIALS_FULL_URI ||
      env.AWS_WEB_IDENTITY_TOKEN_FILE,
  );
  const sqs = env.AWS_ENDPOINT_URL_SQS || env.AWS_ENDPOINT_URL;
  const dynamodb = env.AWS_ENDPOINT_URL_DYNAMODB || env.AWS_ENDPOINT_URL;
  return !hasCredentials && (!sqs || !dynamodb);
}

/**
 * Add the "no endpoint and no credentials" line to `schema`. It runs even when other variables
 * already failed (zod skips ordinary refinements then), so a bare environment hears about
 * AWS_REGION and AWS_ENDPOINT_URL in one go rather than one start-up at a time.
 */
export function withAwsEndpointCheck<S extends z.ZodType<AwsEnvPresence>>(schema: S): S {
  return schema.check(
    z.superRefine<AwsEnvPresence>(
      (env, ctx) => {
        if (lacksEndpointAndCredentials(env ?? {}))
          ctx.addIssue({ code: 'custom', path: ['AWS_ENDPOINT_URL'], message: NO_ENDPOINT_PROBLEM });
      },
      { when: () => true },
    ),
  ) as S;
}

/** The AWS variables, with the endpoint-or-credentials check. */
export const awsEnvSchema = withAwsEndpointCheck(z.object(awsEnvShape));

export interface AwsConfig {
  readonly resourcePrefix: string;
  readonly region: string;
  readonly sqsEndpoint: string | undefined;
  readonly dynamodbEndpoint: string | undefined;
  /** Per-attempt deadlines of AWS calls. @default DEFAULT_AWS_DEADLINES (5 s; ReceiveMessage: its wait + 5 s; 3 attempts) */
  readonly deadlines?: AwsDeadlines;
  /** Count DynamoDB's consumed capacity (PAYFLEET_DYNAMODB_CONSUMED_CAPACITY). @default false */
  readonly consumedCapacity?: boolean;
}

type AwsDeadlineEnv = Pick<
  z.output<typeof awsEnvSchema>,
  'PAYFLEET_DYNAMODB_TIMEOUT_MS' | 'PAYFLEET_SQS_TIMEOUT_MS' | 'PAYFLEET_SQS_RECEIVE_MARGIN_MS' | 'PAYFLEET_AWS_MAX_ATTEMPTS'
>;

/** The deadlines the variables name; an unset (0) deadline takes `fallbackMs` (default 5000). */
export function toAwsDeadlines(
  env: AwsDeadlineEnv,
  fallbackMs: { dynamodbMs?: number; sqsMs?: number } = {},
): AwsDeadlines {
  return Object.freeze({
    dynamodbMs: env.PAYFLEET_DYNAMODB_TIMEOUT_MS || (fallbackMs.dynamodbMs ?? DEFAULT_AWS_DEADLINES.dynamodbMs),
    sqsMs: env.PAYFLEET_SQS_TIMEOUT_MS || (fallbackMs.sqsMs ?? DEFAULT_AWS_DEADLINES.sqsMs),
    sqsReceiveMarginMs: env.PAYFLEET_SQS_RECEIVE_MARGIN_MS,
    maxAttempts: env.PAYFLEET_AWS_MAX_ATTEMPTS,
  });
}

/**
 * Turn parsed AWS variables into {@link AwsConfig}. A worker has no embedded fallback: with no
 * endpoint and no credential source it refuses to start and says what to set (docs/contract.md §8).
 */
export function toAwsConfig(env: z.output<typeof awsEnvSchema>): AwsConfig {
  const sqsEndpoint = env.AWS_ENDPOINT_URL_SQS ?? env.AWS_ENDPOINT_URL;
  const dynamodbEndpoint = env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL;
  // Schemas built with withAwsEndpointCheck report this already; this covers any that are not.
  if (lacksEndpointAndCredentials(env)) throw new ConfigError([`AWS_ENDPOINT_URL: ${NO_ENDPOINT_PROBLEM}`]);
  return Object.freeze({
    resourcePrefix: env.PAYFLEET_RESOURCE_PREFIX,
    region: env.AWS_REGION,
    sqsEndpoint,
    dynamodbEndpoint,
    deadlines: toAwsDeadlines(env),
    ...(env.PAYFLEET_DYNAMODB_CONSUMED_CAPACITY ? { consumedCapacity: true } : {}),
  });
}

export function loadAwsConfig(env: Record<string, string | undefined> = process.env): AwsConfig {
  return toAwsConfig(parseEnv(awsEnvSchema, env));
}

/**
 * Variables for bootstrap only. `payfleet stack up` reads them before its endpoints exist, so the
 * endpoint check is not part of this schema: `payfleet bootstrap` adds it with withAwsEndpointCheck.
 */
export const bootstrapEnvSchema = z.object({
  ...awsEnvShape,
  /** DLQ redrive: receives before SQS itself moves a message to the DLQ. @default 10 */
  PAYFLEET_MAX_RECEIVE_COUNT: int(10, { min: 1, max: 1000 }),
  /** Redrive limit of capture-requests (each deferred capture retry is a receive). @default 200 */
  PAYFLEET_CAPTURE_MAX_RECEIVE_COUNT: int(200, { min: 1, max: 1000 }),
  /** Number of payout shards (rows in the lease table). @default 8 */
  PAYFLEET_PAYOUT_SHARDS: int(8, { min: 1, max: 256 }),
  /** Number of ledger outbox shards. @default 8 */
  PAYFLEET_LEDGER_SHARDS: int(8, { min: 1, max: 256 }),
});
