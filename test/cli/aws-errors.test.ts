/**
 * Behaviour: an AWS failure says what it is and what to do, in every CLI command and at a worker's
 * start-up. Credentials, connectivity, not-found and access-denied each get their own advice; only
 * not-found names the prefix, endpoint and region (so a typo shows) and mentions `payfleet
 * bootstrap`, and only "if this is a new environment". Following "run bootstrap" after an expired
 * profile or a prefix typo would create a second set of queues and tables in production.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResourceNotFoundException } from '@aws-sdk/client-dynamodb';
import { QueueDoesNotExist } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsFailure, classifyAwsFailure, describeAwsFailure } from '../../shared/aws/errors.js';
import { freePort } from '../../cli/embedded/stack.js';
import { startProcess } from '../support/processes.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { runCli } from './support.js';

const named = (name: string, message: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(message), { name, ...extra });

describe('classifyAwsFailure (SDK-shaped errors)', () => {
  it.each([
    ['credentials', named('CredentialsProviderError', 'Could not load credentials from any providers')],
    ['credentials', named('TokenProviderError', 'The SSO session associated with this profile has expired')],
    ['credentials', named('ExpiredTokenException', 'The security token included in the request is expired', { $metadata: { httpStatusCode: 400 } })],
    ['credentials', named('InvalidClientTokenId', 'The security token included in the request is invalid', { $metadata: { httpStatusCode: 403 } })],
    ['credentials', named('UnrecognizedClientException', 'The security token included in the request is invalid', { $metadata: { httpStatusCode: 400 } })],
    ['connectivity', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4566'), { code: 'ECONNREFUSED' })],
    ['connectivity', new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:4566'), { code: 'ECONNREFUSED' })], 'x')],
    ['connectivity', Object.assign(new Error('getaddrinfo ENOTFOUND sqs.eu-wst-2.amazonaws.com'), { code: 'ENOTFOUND' })],
    ['connectivity', named('TimeoutError', 'Connection timed out after 3000 ms')],
    ['not-found', new QueueDoesNotExist({ message: 'The specified queue does not exist.', $metadata: { httpStatusCode: 400 } })],
    ['not-found', new ResourceNotFoundException({ message: 'Requested resource not found', $metadata: { httpStatusCode: 400 } })],
    ['access-denied', named('AccessDeniedException', 'User: arn:aws:sts::123456789012:assumed-role/x is not authorized', { $metadata: { httpStatusCode: 400 } })],
    ['access-denied', named('AccessDenied', 'Access to the resource is denied.', { $metadata: { httpStatusCode: 403 } })],
    ['access-denied', named('SomethingElse', 'forbidden', { $metadata: { httpStatusCode: 403 } })],
    [undefined, named('ThrottlingException', 'Rate exceeded', { $metadata: { httpStatusCode: 400 } })],
    [undefined, named('ValidationException', 'One or more parameter values were invalid', { $metadata: { httpStatusCode: 400 } })],
    [undefined, named('InternalServerError', 'boom', { $metadata: { httpStatusCode: 500 } })],
  ])('%s <- %s', (reason, err) => {
    expect(classifyAwsFailure(err)).toBe(reason);
  });
});

describe('describeAwsFailure', () => {
  const target = { service: 'sqs' as const, resource: 'queue payflet-auth-requests.fifo', region: 'eu-west-2', prefix: 'payflet-' };
  const text = (err: unknown, t: Parameters<typeof describeAwsFailure>[1] = target) => describeAwsFailure(err, t)!.message;

  it('not-found names the resource, prefix, endpoint and region, and bootstrap only for a new environment (exit 2)', () => {
    const err = new QueueDoesNotExist({ message: 'The specified queue does not exist.', $metadata: {} });
    const local = describeAwsFailure(err, { ...target, endpoint: 'http://127.0.0.1:4566' })!;
    expect(local).toBeInstanceOf(AwsFailure);
    expect(local.exitCode).toBe(2);
    expect(local.message).toContain('queue payflet-auth-requests.fifo does not exist on SQS at http://127.0.0.1:4566');
    expect(local.message).toContain('region eu-west-2');
    expect(local.message).toContain('PAYFLEET_RESOURCE_PREFIX "payflet-"');
    expect(local.message).toMatch(/if this is a new environment, create its queues and tables with `payfleet bootstrap`/);
    expect(text(err)).toContain('on SQS in eu-west-2 (AWS itself, no endpoint set; PAYFLEET_RESOURCE_PREFIX "payflet-")');
  });

  it('credentials, connectivity and access-denied never send anyone to bootstrap', () => {
    const credentials = describeAwsFailure(named('CredentialsProviderError', 'Could not load credentials from any providers'), {
      ...target,
      profile: 'payfleet-prod',
    })!;
    expect(credentials.exitCode).toBe(2);
    expect(credentials.message).toContain('AWS_PROFILE is "payfleet-prod"');
    expect(credentials.message).toContain('aws sso login --profile payfleet-prod');
    expect(credentials.message).toContain('do not run `payfleet bootstrap`');

    const refused = describeAwsFailure(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), {
      ...target,
      endpoint: 'http://127.0.0.1:1',
    })!;
    expect(refused.exitCode).toBe(1);
    expect(refused.message).toContain('cannot reach SQS at http://127.0.0.1:1');
    expect(refused.message).toContain('payfleet stack up');

    const denied = describeAwsFailure(named('AccessDeniedException', 'not authorized', { $metadata: { httpStatusCode: 400 } }), target)!;
    expect(denied.exitCode).toBe(2);
    expect(denied.message).toContain('access to queue payflet-auth-requests.fifo on SQS in eu-west-2');
    expect(denied.message).toContain('`payfleet bootstrap` would not help');

    for (const m of [credentials.message, refused.message, denied.message]) expect(m).not.toMatch(/does not exist|not found|new environment/);
  });

  it('leaves other failures to the caller', () => {
    expect(describeAwsFailure(named('ThrottlingException', 'Rate exceeded'), target)).toBeUndefined();
  });
});

/** A local endpoint that refuses every SQS and DynamoDB call as AWS does when IAM says no (JSON protocol). */
function startDenyingEndpoint(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const sqs = String(req.headers['x-amz-target'] ?? '').startsWith('AmazonSQS');
      res.writeHead(400, {
        'content-type': 'application/x-amz-json-1.0',
        ...(sqs ? { 'x-amzn-query-error': 'AccessDenied;Sender' } : {}),
      });
      res.end(
        JSON.stringify({
          __type: 'com.amazon.coral.service#AccessDeniedException',
          message:
            'User: arn:aws:sts::123456789012:assumed-role/payfleet-auth/task is not authorized to perform this action because no identity-based policy allows it',
        }),
      );
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    resolve({ server, url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}` });
  }));
}

let stack: TestStack;
let denying: { server: Server; url: string };
let closedPort: number;
const dir = mkdtempSync(join(tmpdir(), 'payfleet-aws-errors-'));
const emptyFile = join(dir, 'empty');
writeFileSync(emptyFile, '');
const message = join(dir, 'auth.ndjson');
writeFileSync(message, `${JSON.stringify({ type: 'AuthorisationRequested', authRequestId: 'a-1', chargeId: 'c-1' })}\n`);

beforeAll(async () => {
  stack = await setupTestStack('awserr');
  denying = await startDenyingEndpoint();
  closedPort = await freePort(); // free now, and nothing listens on it
});
afterAll(async () => {
  stack?.close();
  await new Promise((r) => denying?.server.close(r));
});

/** Environments for each failure. Credentials files are empty and IMDS is off: nothing leaves the machine. */
const envs = {
  credentials: () => ({
    AWS_REGION: 'eu-west-2',
    AWS_PROFILE: 'payfleet-missing-profile',
    AWS_CONFIG_FILE: emptyFile,
    AWS_SHARED_CREDENTIALS_FILE: emptyFile,
    AWS_EC2_METADATA_DISABLED: 'true',
  }),
  connectivity: () => ({
    AWS_REGION: 'eu-west-2',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${closedPort}`,
    AWS_ACCESS_KEY_ID: 'k',
    AWS_SECRET_ACCESS_KEY: 's',
  }),
  notFound: () => ({ ...stack.env, PAYFLEET_RESOURCE_PREFIX: 'payflet-typo-' }),
  accessDenied: () => ({ AWS_REGION: 'eu-west-2', AWS_ENDPOINT_URL: denying.url, AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' }),
};

describe('payfleet <command>: each AWS failure gets its own advice', () => {
  it('credentials: a missing profile and no endpoint -> exit 2, names the profile, not a missing resource', async () => {
    const [send, charge] = await Promise.all([
      runCli(['send', 'auth-requests', message], envs.credentials()),
      runCli(['charge', 'c-1'], envs.credentials()),
    ]);
    for (const r of [send, charge]) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/AWS credentials for (SQS|DynamoDB) in eu-west-2 .* could not be loaded or were refused \(CredentialsProviderError/);
      expect(r.stderr).toContain('AWS_PROFILE is "payfleet-missing-profile"');
      expect(r.stderr).toContain('do not run `payfleet bootstrap`');
      expect(r.stderr).not.toMatch(/does not exist|not found/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // one line, no stack
    }
  });

  it('connectivity: an endpoint on a closed port -> exit 1, says it cannot reach it', async () => {
    const [send, charge] = await Promise.all([
      runCli(['send', 'auth-requests', message], envs.connectivity()),
      runCli(['charge', 'c-1'], envs.connectivity()),
    ]);
    expect(send.code, send.stderr).toBe(1);
    expect(send.stderr).toContain(`cannot reach SQS at http://127.0.0.1:${closedPort}`);
    expect(charge.code, charge.stderr).toBe(1);
    expect(charge.stderr).toContain(`cannot reach DynamoDB at http://127.0.0.1:${closedPort}`);
    for (const r of [send, charge]) {
      expect(r.stderr).toContain('ECONNREFUSED');
      expect(r.stderr).not.toMatch(/does not exist|not found|bootstrap/);
    }
  });

  it('not-found: a prefix typo -> exit 2, names prefix, endpoint and region; bootstrap only for a new environment', async () => {
    const [send, charge] = await Promise.all([
      runCli(['send', 'auth-requests', message], envs.notFound()),
      runCli(['charge', 'c-1'], envs.notFound()),
    ]);
    expect(send.code, send.stderr).toBe(2);
    expect(send.stderr).toContain(`queue payflet-typo-auth-requests.fifo does not exist on SQS at ${stack.aws.sqsEndpoint}`);
    expect(charge.code, charge.stderr).toBe(2);
    expect(charge.stderr).toContain(`table payflet-typo-charges does not exist on DynamoDB at ${stack.aws.dynamodbEndpoint}`);
    for (const r of [send, charge]) {
      expect(r.stderr).toContain(`region ${stack.aws.region}`);
      expect(r.stderr).toContain('PAYFLEET_RESOURCE_PREFIX "payflet-typo-"');
      expect(r.stderr).toContain('if this is a new environment, create its queues and tables with `payfleet bootstrap`');
    }
  });

  it('access-denied: the endpoint refuses by policy -> exit 2, says denied, bootstrap would not help', async () => {
    const [send, charge] = await Promise.all([
      runCli(['send', 'auth-requests', message], envs.accessDenied()),
      runCli(['charge', 'c-1'], envs.accessDenied()),
    ]);
    expect(send.code, send.stderr).toBe(2);
    expect(send.stderr).toContain(`access to queue payfleet-auth-requests.fifo on SQS at ${denying.url}`);
    expect(charge.code, charge.stderr).toBe(2);
    expect(charge.stderr).toContain(`access to table payfleet-charges on DynamoDB at ${denying.url}`);
    for (const r of [send, charge]) {
      // SQS reports the query-compatible code (AccessDenied), DynamoDB the JSON type (AccessDeniedException).
      expect(r.stderr).toMatch(/was denied \(AccessDenied(Exception)?: User: arn:aws:sts::123456789012:assumed-role\/payfleet-auth\/task/);
      expect(r.stderr).toContain('`payfleet bootstrap` would not help');
      expect(r.stderr).not.toMatch(/does not exist|new environment/);
    }
  });
});

describe('payfleet worker: resolving its queues at start-up', () => {
  /** Start `payfleet worker capture` (it needs no sandbox) and collect its exit code and output. */
  const worker = async (env: Record<string, string>) => {
    const p = startProcess('bin/payfleet.js', ['worker', 'capture'], { PAYFLEET_OPS_PORT: '0', ...env });
    const code = await p.exited;
    return { code, text: p.raw() };
  };

  it('tells a prefix typo, bad credentials and an unreachable endpoint apart, each with its own exit code', async () => {
    const [notFound, credentials, connectivity] = await Promise.all([
      worker(envs.notFound()),
      worker(envs.credentials()),
      worker(envs.connectivity()),
    ]);
    expect(notFound.code, notFound.text).toBe(2);
    expect(notFound.text).toContain(`queue payflet-typo-capture-requests.fifo does not exist on SQS at ${stack.aws.sqsEndpoint}`);
    expect(notFound.text).toContain('PAYFLEET_RESOURCE_PREFIX "payflet-typo-"');
    expect(notFound.text).toContain('if this is a new environment');

    expect(credentials.code, credentials.text).toBe(2);
    expect(credentials.text).toContain('AWS credentials for SQS in eu-west-2');
    expect(credentials.text).toContain('AWS_PROFILE is "payfleet-missing-profile"');
    expect(credentials.text).not.toMatch(/does not exist|new environment/);

    expect(connectivity.code, connectivity.text).toBe(1);
    expect(connectivity.text).toContain(`cannot reach SQS at http://127.0.0.1:${closedPort}`);
    expect(connectivity.text).not.toMatch(/does not exist|bootstrap/);

    for (const r of [notFound, credentials, connectivity]) expect(r.text).not.toMatch(/\n\s+at /);
  });
});
