/**
 * shared/aws/capacity.ts: the opt-in count of DynamoDB's consumed capacity, read from DynamoDB's
 * own answers. Requests go through the fault proxy (passing everything) only so the test can read
 * what went on the wire.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetCommand, PutCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { Registry } from 'prom-client';
import { consumedUnits, createCapacityCounter, type CapacityCounter } from '../../shared/aws/capacity.js';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { loadAwsConfig } from '../../shared/config/common.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let proxy: FaultProxy;
let counted: AwsClients;
let plain: AwsClients;
let counter: CapacityCounter;

beforeAll(async () => {
  stack = await setupTestStack('capacity');
  proxy = await startFaultProxy(stack.aws.dynamodbEndpoint!);
  const aws = { ...stack.aws, dynamodbEndpoint: proxy.url };
  counter = createCapacityCounter(new Registry());
  counted = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS, consumedCapacity: counter });
  plain = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS });
});
afterAll(async () => {
  counted?.destroy();
  plain?.destroy();
  await proxy?.close();
  stack?.close();
});

const table = () => stack.names.table('leases');
const units = async () => {
  const out: Record<string, number> = {};
  for (const v of (await counter.get()).values) out[`${v.labels.kind} ${v.labels.command}`] = v.value;
  return out;
};
/** The wire body of the last request whose body contains `marker`. */
const sent = (marker: string) => JSON.parse(proxy.requests.filter((r) => r.body.includes(marker)).at(-1)!.body) as Record<string, unknown>;

describe('countConsumedCapacity', () => {
  it('asks for TOTAL on every DynamoDB command that accepts it and counts write and read units per command', async () => {
    await counted.doc.send(new PutCommand({ TableName: table(), Item: { leaseKey: 'cap-put', fencingToken: 1 } }));
    await counted.doc.send(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName: table(), Item: { leaseKey: 'cap-tx-a', fencingToken: 1 } } },
          { Put: { TableName: table(), Item: { leaseKey: 'cap-tx-b', fencingToken: 1 } } },
        ],
      }),
    );
    await counted.doc.send(new GetCommand({ TableName: table(), Key: { leaseKey: 'cap-put' }, ConsistentRead: true }));
    expect(sent('cap-put')).toMatchObject({ ReturnConsumedCapacity: 'TOTAL' });
    expect(sent('cap-tx-a')).toMatchObject({ ReturnConsumedCapacity: 'TOTAL' });
    const u = await units();
    expect(u['write PutItemCommand']).toBeGreaterThanOrEqual(1);
    // At least a unit per item (DynamoDB Local reports 1 per small item; AWS bills 2 per transactional item).
    expect(u['write TransactWriteItemsCommand']).toBeGreaterThanOrEqual(2);
    expect(u['read GetItemCommand']).toBeGreaterThanOrEqual(1);
  });

  it("leaves a caller's own ReturnConsumedCapacity as it is", async () => {
    await counted.doc.send(new PutCommand({ TableName: table(), Item: { leaseKey: 'cap-own', fencingToken: 1 }, ReturnConsumedCapacity: 'INDEXES' }));
    expect(sent('cap-own')).toMatchObject({ ReturnConsumedCapacity: 'INDEXES' });
  });

  it('is off unless asked for: clients built without a counter send no ReturnConsumedCapacity, and the variable defaults to false', async () => {
    await plain.doc.send(new PutCommand({ TableName: table(), Item: { leaseKey: 'cap-plain', fencingToken: 1 } }));
    expect(sent('cap-plain')).not.toHaveProperty('ReturnConsumedCapacity');
    const env = { AWS_REGION: 'eu-west-2', AWS_ENDPOINT_URL: 'http://127.0.0.1:1' };
    expect(loadAwsConfig(env).consumedCapacity ?? false).toBe(false);
    expect(loadAwsConfig({ ...env, PAYFLEET_DYNAMODB_CONSUMED_CAPACITY: 'true' }).consumedCapacity).toBe(true);
  });
});

describe('consumedUnits', () => {
  it('sums a list (batches, transactions over tables) and falls back to CapacityUnits by what the command does', () => {
    expect(consumedUnits([{ CapacityUnits: 4, WriteCapacityUnits: 4 }, { CapacityUnits: 2, WriteCapacityUnits: 2 }], 'write')).toEqual({ write: 6, read: 0 });
    expect(consumedUnits({ CapacityUnits: 3 }, 'write')).toEqual({ write: 3, read: 0 });
    expect(consumedUnits({ CapacityUnits: 0.5 }, 'read')).toEqual({ write: 0, read: 0.5 });
    expect(consumedUnits({ CapacityUnits: 3, ReadCapacityUnits: 1, WriteCapacityUnits: 2 }, 'write')).toEqual({ write: 2, read: 1 });
    expect(consumedUnits(undefined, 'write')).toEqual({ write: 0, read: 0 });
  });
});
