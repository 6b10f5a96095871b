/**
 * The fault proxy itself (test/support/fault-proxy.ts) against the embedded DynamoDB Local: each
 * fault does what it says, and "lose" really applies the write before swallowing its answer.
 * Clients here are raw SDK clients with one attempt and a short throwing request timeout, so each
 * fault shows up as exactly one error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { BatchWriteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { awsOperation, startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { setupTestStack, type TestStack } from './stack.js';

let stack: TestStack;
let proxy: FaultProxy;
let doc: DynamoDBDocumentClient;

beforeAll(async () => {
  stack = await setupTestStack('proxy');
  proxy = await startFaultProxy(stack.aws.dynamodbEndpoint!);
  const client = new DynamoDBClient({
    region: stack.aws.region,
    endpoint: proxy.url,
    credentials: { ...EMBEDDED_CREDENTIALS },
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ requestTimeout: 1500, throwOnRequestTimeout: true, connectionTimeout: 1000 }),
  });
  doc = DynamoDBDocumentClient.from(client);
});
afterAll(async () => {
  doc?.destroy();
  await proxy?.close();
  stack?.close();
});

const table = () => stack.names.table('leases');
const put = (key: string) => doc.send(new PutCommand({ TableName: table(), Item: { leaseKey: key, fencingToken: 1 } }));
const read = async (key: string) =>
  (await stack.clients.doc.send(new GetCommand({ TableName: table(), Key: { leaseKey: key }, ConsistentRead: true }))).Item;

describe('Fault proxy', () => {
  it('names the operation from x-amz-target or a query Action', () => {
    expect(awsOperation({ 'x-amz-target': 'DynamoDB_20120810.TransactWriteItems' }, '{}')).toBe('TransactWriteItems');
    expect(awsOperation({ 'x-amz-target': 'AmazonSQS.ReceiveMessage' }, '{}')).toBe('ReceiveMessage');
    expect(awsOperation({}, 'Action=ReceiveMessage&Version=2012-11-05')).toBe('ReceiveMessage');
  });

  it('pass: forwards and answers', async () => {
    await put('proxy-pass');
    expect(await read('proxy-pass')).toMatchObject({ fencingToken: 1 });
    expect(proxy.stats().forwarded.PutItem).toBeGreaterThanOrEqual(1);
  });

  it.each(['hang', 'reset'] as const)('lose (%s): the write is applied, the client gets no answer, counters say so', async (how) => {
    const key = `proxy-lose-${how}`;
    proxy.loseAnswers({ operations: ['PutItem'], match: (r) => r.body.includes(key), first: 1, how });
    await expect(put(key)).rejects.toMatchObject({ name: how === 'hang' ? 'TimeoutError' : expect.any(String) });
    expect(await read(key)).toMatchObject({ leaseKey: key }); // applied upstream
    const lost = proxy.requests.filter((r) => r.body.includes(key));
    expect(lost.map((r) => r.fate)).toEqual(['lost']);
    // `first: 1`: the next matching request passes.
    await put(key);
    expect(proxy.requests.filter((r) => r.body.includes(key)).map((r) => r.fate)).toEqual(['lost', 'answered']);
    proxy.loseAnswers(undefined);
  });

  it('lose with a probability is reproducible from its seed', async () => {
    const fates = async (seed: number) => {
      proxy.loseAnswers({ operations: ['GetItem'], probability: 0.5, seed, how: 'reset' });
      const out: string[] = [];
      for (let i = 0; i < 8; i++) {
        out.push(await doc.send(new GetCommand({ TableName: table(), Key: { leaseKey: 'x' } })).then(() => 'ok', () => 'lost'));
      }
      proxy.loseAnswers(undefined);
      return out.join(',');
    };
    const a = await fates(42);
    expect(await fates(42)).toBe(a);
    expect(a).toContain('ok');
    expect(a).toContain('lost');
  });

  describe('inject: a picked request is answered as DynamoDB refuses it, and never reaches the emulator', () => {
    it.each([
      ['throughput', 'ProvisionedThroughputExceededException', 400],
      ['throttling', 'ThrottlingException', 400],
      ['internal', 'InternalServerError', 500],
      ['conflict', 'TransactionConflictException', 400],
    ] as const)('%s on a single-item write: the SDK throws %s (%i), nothing is applied', async (fault, name, status) => {
      const key = `proxy-inject-${fault}`;
      proxy.inject([{ fault, operations: ['PutItem'], match: (r) => r.body.includes(key), first: 1 }]);
      const err = await put(key).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ name, $metadata: { httpStatusCode: status } });
      expect(await read(key)).toBeUndefined();
      expect(proxy.requests.filter((r) => r.body.includes(key)).map((r) => [r.fate, r.fault])).toEqual([['injected', fault]]);
      expect(proxy.stats().faults[fault]?.PutItem).toBeGreaterThanOrEqual(1);
      await put(key); // `first: 1`: the next one passes
      expect(await read(key)).toBeDefined();
      proxy.inject(undefined);
    });

    it('conflict on a transaction: TransactionCanceledException with one TransactionConflict reason per the item count, rotating', async () => {
      const keys = ['proxy-tx-a', 'proxy-tx-b', 'proxy-tx-c'];
      const tx = () =>
        doc.send(
          new TransactWriteCommand({ TransactItems: keys.map((k) => ({ Put: { TableName: table(), Item: { leaseKey: k, fencingToken: 1 } } })) }),
        );
      proxy.inject([{ fault: 'conflict', operations: ['TransactWriteItems'], first: 2 }]);
      const reasons: string[][] = [];
      for (let i = 0; i < 2; i++) {
        const err = (await tx().then(() => undefined, (e: unknown) => e)) as { name?: string; CancellationReasons?: { Code?: string }[] };
        expect(err).toMatchObject({ name: 'TransactionCanceledException', $metadata: { httpStatusCode: 400 } });
        reasons.push((err.CancellationReasons ?? []).map((r) => r.Code ?? ''));
      }
      expect(reasons).toEqual([
        ['TransactionConflict', 'None', 'None'],
        ['None', 'TransactionConflict', 'None'],
      ]);
      for (const k of keys) expect(await read(k)).toBeUndefined();
      await tx();
      for (const k of keys) expect(await read(k)).toBeDefined();
      proxy.inject(undefined);
    });

    it('unprocessed: a BatchWriteItem comes back 200 with every item unprocessed, nothing applied', async () => {
      const items = ['proxy-batch-a', 'proxy-batch-b'].map((k) => ({ PutRequest: { Item: { leaseKey: k, fencingToken: 1 } } }));
      proxy.inject([{ fault: 'unprocessed', operations: ['BatchWriteItem'], first: 1 }]);
      const out = await doc.send(new BatchWriteCommand({ RequestItems: { [table()]: items } }));
      expect(out.UnprocessedItems?.[table()]).toEqual(items);
      expect(await read('proxy-batch-a')).toBeUndefined();
      proxy.inject(undefined);
    });

    it('every: picks the Nth matching request of each operation, counted per operation; first rule that matches counts it', async () => {
      const key = 'proxy-every';
      const update = () =>
        doc.send(new UpdateCommand({ TableName: table(), Key: { leaseKey: key }, UpdateExpression: 'ADD n :one', ExpressionAttributeValues: { ':one': 1 } }));
      proxy.inject([
        { fault: 'internal', operations: ['UpdateItem', 'PutItem'], match: (r) => r.body.includes(key), every: 3 },
        { fault: 'throttling', operations: ['UpdateItem'] }, // never reached for this key: the first rule takes it
      ]);
      const fates: string[] = [];
      for (let i = 0; i < 7; i++) {
        fates.push(await update().then(() => 'ok', (e: { name?: string }) => e.name ?? '?'));
        if (i === 1) await put(key).then(() => fates.push('put ok')); // a PutItem does not advance UpdateItem's count
      }
      expect(fates).toEqual(['ok', 'ok', 'put ok', 'InternalServerError', 'ok', 'ok', 'InternalServerError', 'ok']);
      expect(await read(key)).toMatchObject({ n: 3 }); // the Put replaced the item after 2 updates; 3 more applied, the 2 refused did not
      proxy.inject(undefined);
    });
  });

  it('blackhole: nothing is forwarded, the client times out; pass heals it', async () => {
    await proxy.blackhole();
    await expect(put('proxy-blackhole')).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(await read('proxy-blackhole')).toBeUndefined();
    expect(proxy.stats().blackholed.PutItem).toBeGreaterThanOrEqual(1);
    await proxy.pass();
    await put('proxy-blackhole');
    expect(await read('proxy-blackhole')).toBeDefined();
  });

  it('refuse: the next request gets ECONNREFUSED; pass heals it on the same port', async () => {
    await put('proxy-refuse-warm'); // a keep-alive socket exists: refuse must cut it too
    await proxy.refuse();
    // A request caught on a connection the refuse cut may see a reset; a new connection is refused.
    const codes: string[] = [];
    for (let i = 0; i < 5 && codes.at(-1) !== 'ECONNREFUSED'; i++) {
      codes.push(await put('proxy-refuse').then(() => 'answered', (e: { code?: string }) => e.code ?? 'other'));
    }
    expect(codes.at(-1)).toBe('ECONNREFUSED');
    expect(codes).not.toContain('answered');
    await proxy.pass();
    await put('proxy-refuse');
    expect(await read('proxy-refuse')).toBeDefined();
  });
});
