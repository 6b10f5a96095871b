/**
 * What an operator should do when an AWS call fails before any work could start: at a worker's
 * start-up (resolving its queues) and in every `payfleet` command that reads or writes queues and
 * tables.
 *
 * Four failures look alike from far away ("the queue cannot be used") and need opposite actions:
 *
 * | reason          | e.g.                                                     | do                                          |
 * |-----------------|----------------------------------------------------------|---------------------------------------------|
 * | `credentials`   | AWS_PROFILE missing or its SSO session expired, no keys  | log in / fix the profile; never bootstrap    |
 * | `connectivity`  | endpoint on a closed port, DNS, VPN, TLS                 | start the stack / fix the endpoint or network |
 * | `not-found`     | wrong PAYFLEET_RESOURCE_PREFIX, region or endpoint       | fix the typo; bootstrap only a NEW environment |
 * | `access-denied` | the role may not call this action on this resource      | use the operator role / grant the permission |
 *
 * Telling "not found" apart matters most: the old single message ("queue not found; run `payfleet
 * bootstrap`") sent an operator with an expired profile or a prefix typo off to create a second set
 * of queues and tables in production.
 *
 * Classified by SDK error `name` and Node's system error `code`, never by message text.
 */
import { maskPans } from '../log/redact.js';

export type AwsFailureReason = 'credentials' | 'connectivity' | 'not-found' | 'access-denied';

/** Where the failed call went: named in the message so a typo in any of them is visible. */
export interface AwsTarget {
  readonly service?: 'sqs' | 'dynamodb';
  /** What was asked for, e.g. `queue payfleet-auth-requests.fifo`, `table payfleet-charges`. */
  readonly resource?: string;
  readonly region?: string;
  /** The configured endpoint; undefined = AWS itself. */
  readonly endpoint?: string;
  /** PAYFLEET_RESOURCE_PREFIX in use. */
  readonly prefix?: string;
  /** AWS_PROFILE, when set: named in the credentials advice. */
  readonly profile?: string;
}

/** Exit codes of the CLI for each reason: configuration (2) unless retrying later can help (1). */
const EXIT_CODE: Readonly<Record<AwsFailureReason, number>> = {
  credentials: 2,
  'not-found': 2,
  'access-denied': 2,
  connectivity: 1,
};

/** An AWS failure with advice: `message` is one line that says what happened, where, and what to do. */
export class AwsFailure extends Error {
  readonly reason: AwsFailureReason;
  readonly target: AwsTarget;
  /** The `payfleet` exit code for this failure. */
  readonly exitCode: number;
  constructor(reason: AwsFailureReason, message: string, target: AwsTarget, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AwsFailure';
    this.reason = reason;
    this.target = target;
    this.exitCode = EXIT_CODE[reason];
  }
}

const CREDENTIAL_NAMES = new Set([
  'CredentialsProviderError',
  'TokenProviderError',
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidSignatureException',
  'IncompleteSignature',
  'IncompleteSignatureException',
  'MissingAuthenticationToken',
  'MissingAuthenticationTokenException',
  'AuthFailure',
  'RequestExpired',
  'InvalidToken',
]);

const NOT_FOUND_NAMES = new Set([
  'QueueDoesNotExist',
  'AWS.SimpleQueueService.NonExistentQueue',
  'NonExistentQueue',
  'ResourceNotFoundException',
  'ResourceNotFound',
]);

const ACCESS_DENIED_NAMES = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'AccessDeniedError',
  'KMS.AccessDeniedException',
  'UnauthorizedOperation',
  'NotAuthorized',
  'Forbidden',
]);

/** Node system error codes: the request never got an answer from the endpoint. */
const CONNECTIVITY_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNABORTED',
  'EPROTO',
  'CERT_HAS_EXPIRED',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);
const CONNECTIVITY_NAMES = new Set(['TimeoutError', 'NetworkingError', 'RequestTimeout']);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/** The error and what it wraps (AggregateError's `errors`, `cause`), depth-bounded. */
function* chain(err: unknown, depth = 0): Generator<ErrorShape> {
  if (typeof err !== 'object' || err === null || depth > 4) return;
  const e = err as ErrorShape;
  yield e;
  if (Array.isArray(e.errors)) for (const inner of e.errors) yield* chain(inner, depth + 1);
  if (e.cause !== undefined) yield* chain(e.cause, depth + 1);
}

/** Which of the four failures `err` is, or undefined for anything else (throttling, 5xx, validation ...). */
export function classifyAwsFailure(err: unknown): AwsFailureReason | undefined {
  for (const e of chain(err)) {
    const names = [e.name, e.Code].filter((n): n is string => typeof n === 'string');
    if (names.some((n) => CREDENTIAL_NAMES.has(n))) return 'credentials';
    if (names.some((n) => NOT_FOUND_NAMES.has(n))) return 'not-found';
    if (names.some((n) => ACCESS_DENIED_NAMES.has(n))) return 'access-denied';
    if (typeof e.code === 'string' && CONNECTIVITY_CODES.has(e.code)) return 'connectivity';
    if (names.some((n) => CONNECTIVITY_NAMES.has(n))) return 'connectivity';
    // An unnamed 403 is a refusal by policy; signature and token problems have their own names above.
    if (e.$metadata?.httpStatusCode === 403) return 'access-denied';
  }
  return undefined;
}

const SERVICE: Readonly<Record<NonNullable<AwsTarget['service']>, string>> = { sqs: 'SQS', dynamodb: 'DynamoDB' };

/** `SQS at http://127.0.0.1:4566 (region eu-west-2, prefix "payfleet-")` / `SQS in eu-west-2 (AWS, ...)`. */
function where(t: AwsTarget): string {
  const service = t.service ? SERVICE[t.service] : 'AWS';
  const details = [
    t.endpoint ? `region ${t.region ?? '(unset)'}` : 'AWS itself, no endpoint set',
    t.prefix !== undefined ? `PAYFLEET_RESOURCE_PREFIX "${t.prefix}"` : undefined,
  ].filter(Boolean);
  const place = t.endpoint ? `${service} at ${t.endpoint}` : `${service} in ${t.region ?? '(no region)'}`;
  return `${place} (${details.join('; ')})`;
}

/** `CredentialsProviderError: Could not load credentials ...`, masked and on one line. */
function evidence(err: unknown): string {
  for (const e of chain(err)) {
    const name = typeof e.name === 'string' && e.name !== 'Error' ? e.name : typeof e.code === 'string' ? e.code : undefined;
    const message = typeof e.message === 'string' ? e.message : '';
    if (name || message) return maskPans(`${name ?? 'Error'}${message ? `: ${message}` : ''}`).replace(/\s+/g, ' ').slice(0, 300);
  }
  return String(err);
}

/**
 * Turn `err` into an {@link AwsFailure} whose message says what to do, or undefined when it is not
 * one of the four failures (the caller keeps its own handling).
 */
export function describeAwsFailure(err: unknown, target: AwsTarget = {}): AwsFailure | undefined {
  if (err instanceof AwsFailure) return err;
  const reason = classifyAwsFailure(err);
  if (!reason) return undefined;
  const what = target.resource ?? 'the request';
  const because = evidence(err);
  let message: string;
  switch (reason) {
    case 'credentials': {
      const profile = target.profile
        ? `AWS_PROFILE is "${target.profile}": check it exists in your AWS config and, for an SSO profile, run \`aws sso login --profile ${target.profile}\``
        : 'Set AWS_PROFILE (and log in to it), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a task role applies';
      message =
        `AWS credentials for ${where(target)} could not be loaded or were refused (${because}). ${profile}. ` +
        'For a local stack, use the variables `payfleet stack up` prints. No queue or table is missing: do not run `payfleet bootstrap` for this.';
      break;
    }
    case 'connectivity':
      message =
        `cannot reach ${where(target)} (${because}). ` +
        (target.endpoint
          ? 'Is the stack running there (`payfleet stack up`, `docker compose up`)? Check AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_DYNAMODB.'
          : 'Check the network, proxy or VPN, and AWS_REGION.') +
        ' Nothing was changed; try again once it answers.';
      break;
    case 'not-found':
      message =
        `${what} does not exist on ${where(target)} (${because}). ` +
        'Check PAYFLEET_RESOURCE_PREFIX, AWS_REGION and the endpoint for a typo; ' +
        'if this is a new environment, create its queues and tables with `payfleet bootstrap`.';
      break;
    case 'access-denied':
      message =
        `access to ${what} on ${where(target)} was denied (${because}). ` +
        'The credentials work, but their role may not do this: use the operator role (AWS_PROFILE) or ask for the IAM permission, ' +
        'and check PAYFLEET_RESOURCE_PREFIX matches the deployment (its roles are scoped to their prefix). `payfleet bootstrap` would not help.';
      break;
  }
  return new AwsFailure(reason, message, target, { cause: err });
}

/** The resource an SDK command's input names, for messages: `queue <name>` or `table <name>`. */
export function resourceOfInput(input: unknown): string | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const i = input as { QueueName?: unknown; QueueUrl?: unknown; TableName?: unknown };
  if (typeof i.QueueName === 'string') return `queue ${i.QueueName}`;
  if (typeof i.QueueUrl === 'string') return `queue ${i.QueueUrl.slice(i.QueueUrl.lastIndexOf('/') + 1)}`;
  if (typeof i.TableName === 'string') return `table ${i.TableName}`;
  return undefined;
}

/** The target as far as the environment tells it (for failures outside any configured client). */
export function targetFromEnv(env: Record<string, string | undefined> = process.env, service?: AwsTarget['service']): AwsTarget {
  const endpoint =
    (service === 'sqs' ? env.AWS_ENDPOINT_URL_SQS : service === 'dynamodb' ? env.AWS_ENDPOINT_URL_DYNAMODB : undefined) ||
    env.AWS_ENDPOINT_URL ||
    undefined;
  return {
    ...(service ? { service } : {}),
    ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
    ...(endpoint ? { endpoint } : {}),
    prefix: env.PAYFLEET_RESOURCE_PREFIX || 'payfleet-',
    ...(env.AWS_PROFILE ? { profile: env.AWS_PROFILE } : {}),
  };
}
