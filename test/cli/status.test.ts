/**
 * Command: `payfleet status`, the real binary against the test stack —
 *
 *   2 requests on auth-requests, 1 on capture-requests, 2 dead letters on auth-requests-dlq
 *   (TOKEN_EXPIRED written by a worker, and one SQS moved itself); an auth worker's ops endpoint
 *   (a small HTTP server with a real registry: ready, token-service breaker open, consumer paused)
 *   and a capture endpoint nobody listens on
 *   ─▶ status --json: depths, DLQ letters by code, the oldest letter's age, breakers, readiness,
 *      capture unreachable (not an error) ─▶ the letters are visible again and the requests were
 *      never received.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { createMetrics } from '../../shared/ops/metrics.js';
import { createResilienceMetrics } from '../../shared/ops/resilience-metrics.js';
import type { FleetStatus } from '../../cli/commands/status.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let ops: Server;
let opsUrl: string;
/** A port that was free a moment ago and has no listener: connections are refused. */
let deadUrl: string;
const FAILED_AT = new Date(Date.now() - 3 * 3600_000).toISOString();

/** Run `payfleet <args>` through test/support/processes.ts (so the suite's card scan reads its output). */
async function payfleet(args: string[], env: Record<string, string> = stack.env): Promise<{ code: number | string; out: string; proc: WorkerProcess }> {
  const proc = startProcess('bin/payfleet.js', args, { NODE_NO_WARNINGS: '1', ...env });
  const code = await proc.exited;
  return { code, out: proc.raw(), proc };
}

function parseStatus(out: string): FleetStatus {
  try {
    return JSON.parse(out) as FleetStatus;
  } catch {
    throw new Error(`not JSON:\n${out}`);
  }
}

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function depth(name: string): Promise<{ visible: number; inFlight: number }> {
  const a = await stack.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: stack.url(name),
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return { visible: Number(a.Attributes?.ApproximateNumberOfMessages), inFlight: Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible) };
}

beforeAll(async () => {
  stack = await setupTestStack('status');
  const send = (queue: string, body: string, group: string, attrs?: Record<string, string>) =>
    stack.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: stack.url(queue),
        MessageBody: body,
        MessageGroupId: group,
        MessageDeduplicationId: `${group}-dedup`,
        ...(attrs
          ? { MessageAttributes: Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, { DataType: 'String', StringValue: v }])) }
          : {}),
      }),
    );
  await send(stack.names.queue('auth-requests'), '{"n":1}', 'charge-1');
  await send(stack.names.queue('auth-requests'), '{"n":2}', 'charge-2');
  await send(stack.names.queue('capture-requests'), '{"n":3}', 'charge-3');
  // A letter a worker wrote (with its reason), and one SQS moved itself (no payfleet-* attributes).
  await send(stack.names.dlq('auth-requests'), '{"n":4}', 'letter-1', {
    [DLQ_ATTRIBUTES.code]: 'TOKEN_EXPIRED',
    [DLQ_ATTRIBUTES.detail]: 'token service answered 410',
    [DLQ_ATTRIBUTES.worker]: 'auth',
    [DLQ_ATTRIBUTES.failedAt]: FAILED_AT,
    [DLQ_ATTRIBUTES.sourceQueue]: stack.names.queue('auth-requests'),
  });
  await send(stack.names.dlq('auth-requests'), '{"n":5}', 'charge-5');

  // The auth worker's ops endpoint: the workers' own registry, metrics and exposition format.
  const metrics = createMetrics('auth', { defaultMetrics: false, build: { version: '9.9.9', nodeVersion: 'v20.20.2', commit: 'abc1234' } });
  const resilience = createResilienceMetrics(metrics.registry);
  resilience.breakerState.set({ dependency: 'token-service' }, 2);
  resilience.breakerState.set({ dependency: 'stripe' }, 0);
  resilience.consumerPaused.set({ queue: stack.names.queue('auth-requests') }, 1);
  resilience.messagesParked.set({ queue: stack.names.queue('auth-requests') }, 3);
  metrics.inFlight.set({ queue: stack.names.queue('auth-requests') }, 4);
  ops = createServer((req, res) => {
    if (req.url === '/health/ready') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ready', checks: [{ name: 'sqs', ok: true }] }));
    } else if (req.url === '/metrics') {
      void metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  opsUrl = await listen(ops);
  const probe = createServer();
  deadUrl = await listen(probe);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});

afterAll(async () => {
  await new Promise<void>((resolve) => (ops ? ops.close(() => resolve()) : resolve()));
  stack?.close();
});

describe('payfleet status', () => {
  it('--json: queue depths, DLQ letters by code, breakers and readiness; an unreachable worker is shown, not an error', async () => {
    const r = await payfleet(['status', '--json', '--ops', `auth=${opsUrl}`, '--ops', `capture=${deadUrl}`]);
    expect(r.code, r.out).toBe(0);
    const s = parseStatus(r.out);
    expect(s.prefix).toBe(stack.prefix);

    const q = (key: string) => s.queues.find((x) => x.key === key)!;
    expect(s.queues.map((x) => x.key)).toEqual(['auth-requests', 'capture-requests', 'refund-requests', 'payout-events', 'ledger-events']);
    expect(q('auth-requests')).toMatchObject({ exists: true, waiting: 2, inFlight: 0, delayed: 0, oldestAgeSec: null });
    expect(q('capture-requests')).toMatchObject({ exists: true, waiting: 1, inFlight: 0 });
    expect(q('ledger-events').dlq).toBeNull();
    // The emulator has no CloudWatch: the age is unknown, and the document says why.
    expect(s.oldestAge.source).toBe('unavailable');
    expect(s.oldestAge.note).toContain(stack.aws.sqsEndpoint!);

    expect(q('auth-requests').dlq).toMatchObject({
      name: stack.names.dlq('auth-requests'),
      exists: true,
      letters: 2,
      byCode: { MAX_RECEIVE_COUNT_EXCEEDED: 1, TOKEN_EXPIRED: 1 },
      unlisted: 0,
      truncated: false,
    });
    // The oldest letter is the one that failed three hours ago (its payfleet-failed-at).
    expect(q('auth-requests').dlq!.oldestAgeSec).toBeGreaterThanOrEqual(3 * 3600);
    expect(q('capture-requests').dlq).toMatchObject({ letters: 0, byCode: {}, oldestAgeSec: null });

    const auth = s.workers.find((w) => w.name === 'auth')!;
    expect(auth).toMatchObject({
      url: opsUrl,
      reachable: true,
      ready: true,
      readyStatus: 200,
      readiness: 'ready',
      failingChecks: [],
      inFlight: 4,
      parked: 3,
      paused: [stack.names.queue('auth-requests')],
      build: { version: '9.9.9', commit: 'abc1234', nodeVersion: 'v20.20.2' },
      breakers: { 'token-service': 'open', stripe: 'closed' },
    });
    expect(s.workers.find((w) => w.name === 'capture')).toEqual({ name: 'capture', url: deadUrl, reachable: false, error: 'ECONNREFUSED' });
    expect(s.breakers).toEqual([
      { dependency: 'token-service', state: 'open', workers: { auth: 'open' } },
      { dependency: 'stripe', state: 'closed', workers: { auth: 'closed' } },
    ]);

    // Reading letters hid them only while status read them.
    expect(await depth(stack.names.dlq('auth-requests'))).toEqual({ visible: 2, inFlight: 0 });
  });

  it('reads PAYFLEET_OPS_URLS when no --ops is given, and draws the same on one screen', async () => {
    const r = await payfleet(['status'], { ...stack.env, PAYFLEET_OPS_URLS: `auth=${opsUrl},capture=${deadUrl}` });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/auth-requests\s+2\s+0\s+0\s+n\/a\s+2\s+3h\s+1 MAX_RECEIVE_COUNT_EXCEEDED, 1 TOKEN_EXPIRED/);
    expect(r.out).toMatch(/auth\s+ready\s+4\s+\S+auth-requests\.fifo\s+3\s+9\.9\.9 abc1234/);
    expect(r.out).toMatch(/capture\s+unreachable \(ECONNREFUSED\)/);
    expect(r.out).toMatch(/token-service\s+open\s+auth open/);
  });

  it('--watch off a terminal: one line per refresh until Ctrl-C, then exit 0', async () => {
    const proc = startProcess('bin/payfleet.js', ['status', '--watch', '--interval', '1', '--ops', `auth=${opsUrl}`], {
      NODE_NO_WARNINGS: '1',
      ...stack.env,
    });
    const lines = () => proc.raw().split('\n').filter((l) => /^\d{4}-\d\d-\d\dT\S+ auth-requests 2\/0 dlq 2 · /.test(l));
    await eventually(() => lines().length >= 2, 60_000, 'two refreshes');
    proc.kill('SIGINT');
    expect(await proc.exited).toBe(0);
    expect(lines()[0]).toMatch(/workers 1\/1 ready · breakers token-service open$/);
  });

  it('exits 2 on usage and configuration errors', async () => {
    const bad = await payfleet(['status', '--ops', 'http://127.0.0.1:9401']);
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('is not name=url');
    const twice = await payfleet(['status', '--json'], { ...stack.env, PAYFLEET_OPS_URLS: 'auth=http://a,auth=http://b' });
    expect(twice.code).toBe(2);
    expect((await payfleet(['status', '--watch', '--json'])).code).toBe(2);
    const unconfigured = await payfleet(['status', '--json'], { AWS_REGION: 'eu-west-2' });
    expect(unconfigured.code).toBe(2);
    expect(unconfigured.out).toContain('AWS_ENDPOINT_URL');
  });

  it('never received a request from a source queue (a receive counts towards maxReceiveCount)', async () => {
    // Every run above read these queues; the first receive of each message is this one.
    for (const key of ['auth-requests', 'capture-requests'] as const) {
      const received = await stack.clients.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: stack.url(stack.names.queue(key)),
          MaxNumberOfMessages: 10,
          VisibilityTimeout: 30,
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
        }),
      );
      expect(received.Messages?.length, key).toBeGreaterThan(0);
      for (const m of received.Messages ?? []) expect(m.Attributes?.ApproximateReceiveCount, key).toBe('1');
    }
  });
});
