/**
 * Function: bootstrap (cli/bootstrap.ts) and `payfleet bootstrap`, against the run's embedded stack.
 *
 * Every expectation about keys, indexes and TTL is read from resources.ts (the one source of truth),
 * so a bootstrap that forgets an index, a sort key, a TTL or a redrive policy fails here.
 */
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GetQueueAttributesCommand, SetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { DescribeTableCommand, DescribeTimeToLiveCommand } from '@aws-sdk/client-dynamodb';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { bootstrap, type BootstrapReport } from '../../cli/bootstrap.js';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import {
  QUEUE_KEYS,
  QUEUES_WITH_DLQ,
  TABLES,
  TABLE_KEYS,
  ledgerShardKey,
  payoutShardKey,
  resourceNames,
  type ResourceNames,
} from '../../shared/resources.js';
import { uniquePrefix } from '../support/stack.js';

const ROOT = new URL('../../', import.meta.url).pathname;

function clientsFor(prefix: string): AwsClients {
  const s = inject('stack');
  return createAwsClients(
    { resourcePrefix: prefix, region: s.region, sqsEndpoint: s.sqsEndpoint, dynamodbEndpoint: s.dynamodbEndpoint },
    { credentials: EMBEDDED_CREDENTIALS },
  );
}

async function queueAttrs(sqs: SQSClient, url: string): Promise<Record<string, string>> {
  return (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))).Attributes ?? {};
}

function kindOf(report: BootstrapReport, resource: string): string | undefined {
  return report.changes.find((c) => c.resource === resource)?.kind;
}

/** Run the real CLI as an operator would; resolves with its exit code and output. */
function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/payfleet.js', ...args], { cwd: ROOT, env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const baseEnv = (): Record<string, string> => ({ PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' });

describe('bootstrap', () => {
  // Not the defaults (10, and 200 for capture-requests), so "honoured" is observable.
  const MAX_RECEIVE = 7;
  const CAPTURE_MAX_RECEIVE = 150;
  const options = () => ({
    prefix,
    maxReceiveCount: MAX_RECEIVE,
    captureMaxReceiveCount: CAPTURE_MAX_RECEIVE,
    payoutShards: 3,
    ledgerShards: 2,
  });
  let prefix: string;
  let names: ResourceNames;
  let clients: AwsClients;
  let first: BootstrapReport;

  beforeAll(async () => {
    prefix = uniquePrefix('boot');
    names = resourceNames(prefix);
    clients = clientsFor(prefix);
    first = await bootstrap(clients, options());
  });
  afterAll(() => clients.destroy());

  it('creates the 5 queues and 4 DLQs as FIFO, each source queue redriving to its own DLQ after maxReceiveCount', async () => {
    // Prepare
    const expectedNames = [...QUEUE_KEYS.map((k) => names.queue(k)), ...QUEUES_WITH_DLQ.map((k) => names.dlq(k))];
    // Assess
    expect(Object.keys(first.queueUrls).sort()).toEqual([...expectedNames].sort());
    expect(expectedNames).toHaveLength(9);
    for (const name of expectedNames) expect(kindOf(first, `queue ${name}`)).toBe('created');

    for (const key of QUEUE_KEYS) {
      const attrs = await queueAttrs(clients.sqs, first.queueUrls[names.queue(key)]!);
      expect(attrs.FifoQueue, key).toBe('true');
      if (QUEUES_WITH_DLQ.includes(key)) {
        const dlqAttrs = await queueAttrs(clients.sqs, first.queueUrls[names.dlq(key)]!);
        expect(dlqAttrs.FifoQueue, `${key} dlq`).toBe('true');
        expect(dlqAttrs.RedrivePolicy, `${key} dlq has no DLQ of its own`).toBeUndefined();
        const policy = JSON.parse(attrs.RedrivePolicy ?? 'null') as {
          deadLetterTargetArn: string;
          maxReceiveCount: number | string;
        };
        expect(policy, `${key} RedrivePolicy`).not.toBeNull();
        // capture-requests has its own limit: every deferred capture retry is one more receive.
        expect(Number(policy.maxReceiveCount), key).toBe(key === 'capture-requests' ? CAPTURE_MAX_RECEIVE : MAX_RECEIVE);
        expect(policy.deadLetterTargetArn).toBe(dlqAttrs.QueueArn);
        expect(policy.deadLetterTargetArn).toMatch(new RegExp(`:${names.dlq(key).replace(/\./g, '\\.')}$`));
      } else {
        // ledger-events is read by the Ledger, not by us: no DLQ is attached (docs/contract.md §1).
        expect(attrs.RedrivePolicy, key).toBeUndefined();
      }
    }
  });

  it('creates all 7 tables with the keys, GSIs and TTL that resources.ts declares', async () => {
    expect(TABLE_KEYS).toHaveLength(7);
    for (const key of TABLE_KEYS) {
      const def = TABLES[key];
      const name = names.table(key);
      expect(kindOf(first, `table ${name}`)).toBe('created');
      const table = (await clients.dynamodb.send(new DescribeTableCommand({ TableName: name }))).Table!;
      const types = Object.fromEntries((table.AttributeDefinitions ?? []).map((a) => [a.AttributeName, a.AttributeType]));

      const expectedKeys = [
        { AttributeName: def.partitionKey.name, KeyType: 'HASH' },
        ...(def.sortKey ? [{ AttributeName: def.sortKey.name, KeyType: 'RANGE' }] : []),
      ];
      expect(table.KeySchema, name).toEqual(expectedKeys);
      expect(types[def.partitionKey.name], `${name} pk type`).toBe(def.partitionKey.type);
      if (def.sortKey) expect(types[def.sortKey.name], `${name} sk type`).toBe(def.sortKey.type);

      const gsis = Object.fromEntries((table.GlobalSecondaryIndexes ?? []).map((g) => [g.IndexName, g]));
      expect(Object.keys(gsis).sort(), `${name} GSIs`).toEqual(def.indexes.map((i) => i.name).sort());
      for (const ix of def.indexes) {
        expect(gsis[ix.name]!.KeySchema, `${name}/${ix.name}`).toEqual([
          { AttributeName: ix.partitionKey.name, KeyType: 'HASH' },
          ...(ix.sortKey ? [{ AttributeName: ix.sortKey.name, KeyType: 'RANGE' }] : []),
        ]);
        expect(gsis[ix.name]!.Projection?.ProjectionType).toBe('ALL');
        expect(types[ix.partitionKey.name]).toBe(ix.partitionKey.type);
        if (ix.sortKey) expect(types[ix.sortKey.name]).toBe(ix.sortKey.type);
      }

      const ttl = (await clients.dynamodb.send(new DescribeTimeToLiveCommand({ TableName: name }))).TimeToLiveDescription;
      if (def.ttlAttribute) {
        expect(['ENABLED', 'ENABLING'], `${name} TTL`).toContain(ttl?.TimeToLiveStatus);
        expect(ttl?.AttributeName).toBe(def.ttlAttribute);
      } else {
        expect(ttl?.TimeToLiveStatus ?? 'DISABLED', `${name} TTL`).toBe('DISABLED');
      }
    }
    // The design calls for TTL on exactly these two (resources.ts table); guard against it silently vanishing.
    expect(TABLE_KEYS.filter((k) => TABLES[k].ttlAttribute)).toEqual(['leases', 'idempotency', 'refunds']);
  });

  it('writes one lease row per payout and ledger shard', async () => {
    const rows = (await clients.doc.send(new ScanCommand({ TableName: names.table('leases') }))).Items ?? [];
    const keys = rows.map((r) => r.leaseKey as string).sort();
    expect(keys).toEqual([payoutShardKey(0), payoutShardKey(1), payoutShardKey(2), ledgerShardKey(0), ledgerShardKey(1)].sort());
    for (const r of rows) expect(r).toMatchObject({ kind: 'shard', fencingToken: 0, expiresAtMs: 0 });
    expect(first.changes.find((c) => c.resource.startsWith('shard rows'))).toMatchObject({
      kind: 'created',
      detail: '5 shards, 5 new',
    });
    expect(first.unchanged).toBe(false);
  });

  it('reports every resource unchanged on a second run, with the same queue URLs', async () => {
    const again = await bootstrap(clients, options());
    expect(again.changes.filter((c) => c.kind !== 'unchanged')).toEqual([]);
    expect(again.changes.map((c) => c.resource)).toEqual(first.changes.map((c) => c.resource));
    expect(again.unchanged).toBe(true);
    expect(again.queueUrls).toEqual(first.queueUrls);
  });

  it('repairs a drifted RedrivePolicy and reports only that queue as updated', async () => {
    // Prepare: an operator (or a stale IaC run) lowered payout-events' maxReceiveCount.
    const drifted = names.queue('payout-events');
    const url = first.queueUrls[drifted]!;
    const dlqArn = (await queueAttrs(clients.sqs, first.queueUrls[names.dlq('payout-events')]!)).QueueArn!;
    await clients.sqs.send(
      new SetQueueAttributesCommand({
        QueueUrl: url,
        Attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }) },
      }),
    );
    expect(JSON.parse((await queueAttrs(clients.sqs, url)).RedrivePolicy!).maxReceiveCount).toBe(2);
    // Act
    const report = await bootstrap(clients, options());
    // Assess
    expect(report.unchanged).toBe(false);
    expect(report.changes.filter((c) => c.kind !== 'unchanged')).toEqual([
      { resource: `queue ${drifted}`, kind: 'updated', detail: 'set RedrivePolicy' },
    ]);
    const fixed = JSON.parse((await queueAttrs(clients.sqs, url)).RedrivePolicy!) as {
      deadLetterTargetArn: string;
      maxReceiveCount: number;
    };
    expect(Number(fixed.maxReceiveCount)).toBe(MAX_RECEIVE);
    expect(fixed.deadLetterTargetArn).toBe(dlqArn);
    // And the repair sticks.
    expect((await bootstrap(clients, options())).unchanged).toBe(true);
  });

  it('refuses, with a clear error, a queue of the same name that is not FIFO', async () => {
    // fauxqs (like AWS) makes every *.fifo queue FIFO, so an endpoint that reports a clashing
    // standard queue (LocalStack, a hand-made queue) is simulated by dropping FifoQueue from its answer.
    const p = uniquePrefix('clash');
    const c = clientsFor(p);
    try {
      await bootstrap(c, { prefix: p, payoutShards: 1, ledgerShards: 1 });
      const clashing = resourceNames(p).queue('payout-events');
      c.sqs.middlewareStack.add(
        (next, context) => async (args) => {
          const result = await next(args);
          const input = args.input as { QueueUrl?: string };
          if (context.commandName === 'GetQueueAttributesCommand' && input.QueueUrl?.endsWith(`/${clashing}`)) {
            const out = result.output as { Attributes?: Record<string, string> };
            if (out.Attributes) delete out.Attributes.FifoQueue;
          }
          return result;
        },
        { step: 'initialize', name: 'pretendStandardQueue' },
      );
      await expect(bootstrap(c, { prefix: p, payoutShards: 1, ledgerShards: 1 })).rejects.toThrow(
        new RegExp(`queue ${clashing.replace(/\./g, '\\.')} exists but is not FIFO.*PAYFLEET_RESOURCE_PREFIX`),
      );
    } finally {
      c.destroy();
    }
  });
});

// Concurrent: both spend most of their time starting node + tsx; they share nothing.
describe.concurrent('Command: payfleet bootstrap', () => {
  it('creates on the first run and reports unchanged on the second (--json)', async ({ expect }) => {
    const prefix = uniquePrefix('cli');
    const env = {
      ...baseEnv(),
      ...inject('stack').env,
      PAYFLEET_RESOURCE_PREFIX: prefix,
      PAYFLEET_PAYOUT_SHARDS: '2',
      PAYFLEET_LEDGER_SHARDS: '2',
    };
    const one = await runCli(['bootstrap', '--json'], env);
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    const r1 = JSON.parse(one.stdout) as BootstrapReport;
    expect(r1.unchanged).toBe(false);
    expect(Object.keys(r1.queueUrls)).toContain(`${prefix}auth-requests.fifo`);

    const two = await runCli(['bootstrap', '--json'], env);
    expect(two.code).toBe(0);
    const r2 = JSON.parse(two.stdout) as BootstrapReport;
    expect(r2.unchanged).toBe(true);
    expect(r2.changes.every((c) => c.kind === 'unchanged')).toBe(true);
    expect(r2.changes).toHaveLength(r1.changes.length);
  });

  it('with no AWS_* variables at all exits 2 and says to set AWS_ENDPOINT_URL (and AWS_REGION) in one go', async ({ expect }) => {
    const r = await runCli(['bootstrap'], baseEnv());
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/AWS_ENDPOINT_URL: no endpoint and no AWS credentials/);
    expect(r.stderr).toMatch(/AWS_REGION: is required/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });
});
