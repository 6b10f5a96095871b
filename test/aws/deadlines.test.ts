/**
 * AWS deadlines without a stack: which deadline each request gets (shared/aws/request-handler.ts),
 * and the worker configuration's rule that every AWS call, SDK retries included, fits below the
 * lease (shared/config/worker.ts). The behaviour against real endpoints is in lost-answers.test.ts.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  awsCallBudgetMs,
  DEFAULT_AWS_DEADLINES,
  DeadlineRequestHandler,
  deadlineFor,
  longPollSecOf,
  operationOf,
  type InnerHandler,
} from '../../shared/aws/request-handler.js';
import { loadAwsConfig } from '../../shared/config/common.js';
import { loadWorkerConfig } from '../../shared/config/worker.js';
import { ConfigError } from '../../shared/errors.js';

const LOCAL = { AWS_REGION: 'eu-west-2', AWS_ENDPOINT_URL: 'http://127.0.0.1:4566' } as const;
const D = { dynamodbMs: 700, sqsMs: 400, sqsReceiveMarginMs: 3000, maxAttempts: 3 };

const sqs = (op: string, body: Record<string, unknown> = {}) => ({
  headers: { 'x-amz-target': `AmazonSQS.${op}`, 'content-type': 'application/x-amz-json-1.0' },
  body: JSON.stringify({ QueueUrl: 'http://q', ...body }),
});
const ddb = (op: string) => ({ headers: { 'x-amz-target': `DynamoDB_20120810.${op}` }, body: '{}' });

/** Plain stand-ins for the SDK's request/response classes (only the fields the handler reads). */
const request = (r: { headers: Record<string, string>; body: string }) => ({ method: 'POST', protocol: 'http:', hostname: 'x', path: '/', query: {}, ...r }) as never;
const response = (body?: unknown) => ({ statusCode: 200, headers: {}, body }) as never;

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError, got none');
}

describe('deadlineFor', () => {
  it('gives ReceiveMessage its long-poll wait plus the margin: a 20 s poll is not cut by the short SQS deadline', () => {
    expect(deadlineFor('sqs', sqs('ReceiveMessage', { WaitTimeSeconds: 20 }), D)).toBe(23_000);
    expect(deadlineFor('sqs', sqs('ReceiveMessage', { WaitTimeSeconds: 1 }), D)).toBe(4_000);
    // No WaitTimeSeconds: the queue's own default applies, which may be up to 20 s.
    expect(deadlineFor('sqs', sqs('ReceiveMessage'), D)).toBe(23_000);
    // The query protocol names it in the body.
    expect(deadlineFor('sqs', { headers: {}, body: 'Action=ReceiveMessage&WaitTimeSeconds=5' }, D)).toBe(8_000);
  });

  it('gives every other SQS call the short SQS deadline, and every DynamoDB call the DynamoDB one', () => {
    for (const op of ['SendMessageBatch', 'DeleteMessageBatch', 'ChangeMessageVisibilityBatch', 'GetQueueAttributes']) {
      expect(deadlineFor('sqs', sqs(op), D)).toBe(400);
    }
    for (const op of ['TransactWriteItems', 'UpdateItem', 'Query', 'GetItem']) expect(deadlineFor('dynamodb', ddb(op), D)).toBe(700);
  });

  it('reads the operation and the wait from the request itself', () => {
    expect(operationOf(ddb('TransactWriteItems'))).toBe('TransactWriteItems');
    expect(operationOf({ headers: {}, body: 'Action=SendMessage&QueueUrl=x' })).toBe('SendMessage');
    expect(longPollSecOf({ body: '{"WaitTimeSeconds":0}' })).toBe(0);
    expect(longPollSecOf({ body: '{"WaitTimeSeconds":99}' })).toBe(20);
    expect(longPollSecOf({ body: 'not json' })).toBe(20);
  });

  it('passes the chosen deadline to the node handler as its request timeout (a caller may only shorten it)', async () => {
    const seen: (number | undefined)[] = [];
    const inner: InnerHandler = {
      handle: async (_request, options) => {
        seen.push(options?.requestTimeout);
        return { response: response() };
      },
    };
    const handler = new DeadlineRequestHandler(inner, (r) => deadlineFor('sqs', r, D));
    await handler.handle(request(sqs('ReceiveMessage', { WaitTimeSeconds: 20 })));
    await handler.handle(request(sqs('DeleteMessageBatch')));
    await handler.handle(request(sqs('DeleteMessageBatch')), { requestTimeout: 100 });
    await handler.handle(request(sqs('DeleteMessageBatch')), { requestTimeout: 60_000 });
    expect(seen).toEqual([23_000, 400, 100, 400]);
  });

  it('ends a response body that stalls past the deadline with a TimeoutError (the SDK retries those)', async () => {
    const body = new PassThrough();
    const inner: InnerHandler = { handle: async () => ({ response: response(body) }) };
    const handler = new DeadlineRequestHandler(inner, () => 50);
    const failed = new Promise<Error>((resolve) => body.on('error', resolve));
    await handler.handle(request(ddb('Query')));
    body.write('{"Items":['); // headers and a first chunk arrived; the rest never does
    expect(await failed).toMatchObject({ name: 'TimeoutError' });
  });
});

describe('awsCallBudgetMs', () => {
  it('is every attempt run to its deadline plus the SDK pauses between them', () => {
    expect(awsCallBudgetMs(5_000, 3)).toBe(3 * 5_000 + 200 + 400);
    expect(awsCallBudgetMs(1_000, 1)).toBe(1_000);
  });
});

describe('loadWorkerConfig (AWS deadlines)', () => {
  it('defaults to 5 s per attempt and 3 attempts, which fit the default 30 s lease renewed every 10 s', () => {
    const cfg = loadWorkerConfig({ ...LOCAL });
    expect(cfg.aws.deadlines).toEqual(DEFAULT_AWS_DEADLINES);
    // 3 × 5 s + pauses = 15.6 s < 30 s - 10 s - 1 s margin.
    expect(awsCallBudgetMs(cfg.aws.deadlines!.dynamodbMs, 3)).toBeLessThanOrEqual(30_000 - 10_000 - 1_000);
  });

  it('shortens an unset deadline to what fits a short lease (and the visibility heartbeat for SQS)', () => {
    const cfg = loadWorkerConfig({
      ...LOCAL,
      PAYFLEET_LEASE_MS: '3000',
      PAYFLEET_LEASE_RENEW_MS: '1000',
      PAYFLEET_VISIBILITY_TIMEOUT_SEC: '6',
      PAYFLEET_HEARTBEAT_SEC: '2',
    });
    const d = cfg.aws.deadlines!;
    // A renewal sent on schedule has 3000 - 1000 - 300 = 1700 ms: 3 attempts + pauses must fit.
    expect(awsCallBudgetMs(d.dynamodbMs, d.maxAttempts)).toBeLessThanOrEqual(1_700);
    expect(awsCallBudgetMs(d.sqsMs, d.maxAttempts)).toBeLessThanOrEqual(1_700);
    expect(d.dynamodbMs).toBeGreaterThanOrEqual(100);
  });

  it('refuses an explicit DynamoDB deadline whose call budget does not fit below the lease, in one line naming it', () => {
    const problems = problemsOf(() => loadWorkerConfig({ ...LOCAL, PAYFLEET_DYNAMODB_TIMEOUT_MS: '8000' }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^PAYFLEET_DYNAMODB_TIMEOUT_MS: 3 attempts \(PAYFLEET_AWS_MAX_ATTEMPTS\) of 8000 ms leave a DynamoDB call unanswered for up to 24600 ms, but a lease renewal has 19000 ms/,
    );
    // More attempts of an acceptable deadline can break it too.
    expect(problemsOf(() => loadWorkerConfig({ ...LOCAL, PAYFLEET_DYNAMODB_TIMEOUT_MS: '5000', PAYFLEET_AWS_MAX_ATTEMPTS: '4' }))[0]).toMatch(
      /^PAYFLEET_DYNAMODB_TIMEOUT_MS: 4 attempts/,
    );
    expect(loadWorkerConfig({ ...LOCAL, PAYFLEET_DYNAMODB_TIMEOUT_MS: '6000' }).aws.deadlines!.dynamodbMs).toBe(6000);
  });

  it('refuses an explicit SQS deadline that would let a visibility heartbeat miss its expiry', () => {
    const problems = problemsOf(() =>
      loadWorkerConfig({ ...LOCAL, PAYFLEET_VISIBILITY_TIMEOUT_SEC: '10', PAYFLEET_SQS_TIMEOUT_MS: '3000' }),
    );
    expect(problems).toEqual([expect.stringMatching(/^PAYFLEET_SQS_TIMEOUT_MS: .* a visibility heartbeat has 7000 ms/)]);
  });

  it('refuses a lease too short for any AWS deadline, naming the lease', () => {
    const problems = problemsOf(() => loadWorkerConfig({ ...LOCAL, PAYFLEET_LEASE_MS: '300', PAYFLEET_LEASE_RENEW_MS: '100' }));
    expect(problems[0]).toMatch(/^PAYFLEET_LEASE_MS: too short to give DynamoDB calls a deadline/);
  });

  it('outside a worker (CLI, bootstrap) the deadlines are the defaults or the variables', () => {
    expect(loadAwsConfig({ ...LOCAL }).deadlines).toEqual(DEFAULT_AWS_DEADLINES);
    expect(loadAwsConfig({ ...LOCAL, PAYFLEET_DYNAMODB_TIMEOUT_MS: '2500', PAYFLEET_AWS_MAX_ATTEMPTS: '2' }).deadlines).toMatchObject({
      dynamodbMs: 2500,
      maxAttempts: 2,
    });
  });
});
