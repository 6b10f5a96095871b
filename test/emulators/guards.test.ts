/**
 * Guards on the emulators themselves (fauxqs for SQS FIFO, DynamoDB Local). The fleet's guarantees
 * rest on these behaviours; if an emulator upgrade changes one, this file says which, before the
 * worker suites fail in confusing ways.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
} from '@aws-sdk/client-sqs';
import {
  PutItemCommand,
  GetItemCommand,
  TransactWriteItemsCommand,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { drain, sendAll, sleep } from '../support/sqs.js';

let stack: TestStack;
beforeAll(async () => {
  // maxReceiveCount 2 so the redrive guard needs only two abandoned receives.
  stack = await setupTestStack('guards', { maxReceiveCount: 2, payoutShards: 1, ledgerShards: 1 });
});
afterAll(() => stack.close());

/** A fresh FIFO queue per test: no leftovers from another guard can satisfy (or spoil) an assertion. */
async function freshFifo(label: string): Promise<string> {
  const out = await stack.clients.sqs.send(
    new CreateQueueCommand({
      QueueName: `${stack.prefix}${label}-${randomUUID().slice(0, 8)}.fifo`,
      Attributes: { FifoQueue: 'true' },
    }),
  );
  return out.QueueUrl!;
}

async function receive(queueUrl: string, opts: { max?: number; visibilitySec?: number } = {}): Promise<Message[]> {
  const r = await stack.clients.sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queueUrl,
      MaxNumberOfMessages: opts.max ?? 10,
      VisibilityTimeout: opts.visibilitySec ?? 30,
      WaitTimeSeconds: 0,
      MessageSystemAttributeNames: ['All'],
    }),
  );
  return r.Messages ?? [];
}

const bodies = (ms: readonly Message[]) => ms.map((m) => m.Body);
const receiveCount = (m: Message | undefined) => m?.Attributes?.ApproximateReceiveCount;

describe('Emulator: fauxqs (SQS FIFO)', () => {
  it('deduplicates the same MessageDeduplicationId within the 5-minute window', async () => {
    const q = await freshFifo('dedup');
    const sqs = stack.clients.sqs;
    const first = await sqs.send(
      new SendMessageCommand({ QueueUrl: q, MessageBody: 'first', MessageGroupId: 'g', MessageDeduplicationId: 'd-1' }),
    );
    const second = await sqs.send(
      new SendMessageCommand({ QueueUrl: q, MessageBody: 'second', MessageGroupId: 'g', MessageDeduplicationId: 'd-1' }),
    );
    // AWS answers a duplicate send with the original's id and accepts it silently.
    expect(second.MessageId).toBe(first.MessageId);
    // A different id is a different message, even with the same body and group.
    await sqs.send(
      new SendMessageCommand({ QueueUrl: q, MessageBody: 'first', MessageGroupId: 'g', MessageDeduplicationId: 'd-2' }),
    );
    const got: Message[] = [];
    for (let m = (await receive(q))[0]; m; m = (await receive(q))[0]) {
      got.push(m);
      await sqs.send(new DeleteMessageCommand({ QueueUrl: q, ReceiptHandle: m.ReceiptHandle! }));
    }
    expect(got.map((m) => m.Attributes?.MessageDeduplicationId)).toEqual(['d-1', 'd-2']);
    expect(bodies(got)).toEqual(['first', 'first']);
  });

  it('returns one group in send order and holds the group while a message of it is in flight, not other groups', async () => {
    const q = await freshFifo('order');
    const sqs = stack.clients.sqs;
    // Interleaved sends: A1 B1 A2 B2 A3.
    await sendAll(sqs, q, [
      { body: 'A1', groupId: 'A', dedupId: 'a1' },
      { body: 'B1', groupId: 'B', dedupId: 'b1' },
      { body: 'A2', groupId: 'A', dedupId: 'a2' },
      { body: 'B2', groupId: 'B', dedupId: 'b2' },
      { body: 'A3', groupId: 'A', dedupId: 'a3' },
    ]);
    const order: Record<string, string[]> = { A: ['A1', 'A2', 'A3'], B: ['B1', 'B2'] };

    const [head, ...rest] = await receive(q, { max: 1 });
    expect(rest).toEqual([]);
    const group = head!.Attributes!.MessageGroupId!;
    const other = group === 'A' ? 'B' : 'A';
    expect(head!.Body).toBe(order[group]![0]); // the first of its group, never a later one

    // While head is in flight its group yields nothing; the other group is not held up, and what
    // comes of it is its oldest message(s), in order.
    const second = await receive(q);
    expect(second.length).toBeGreaterThan(0);
    expect(second.map((m) => m.Attributes?.MessageGroupId)).not.toContain(group);
    expect(bodies(second)).toEqual(order[other]!.slice(0, second.length));
    expect(await receive(q)).toEqual([]); // both groups now have a message in flight

    // Completing (deleting) in-flight messages releases each group's next message, in send order.
    const seen: Record<string, string[]> = { [group]: [head!.Body!], [other]: bodies(second) as string[] };
    let inFlight = [head!, ...second];
    while (inFlight.length > 0) {
      for (const m of inFlight) await sqs.send(new DeleteMessageCommand({ QueueUrl: q, ReceiptHandle: m.ReceiptHandle! }));
      inFlight = await receive(q);
      for (const m of inFlight) seen[m.Attributes!.MessageGroupId!]!.push(m.Body!);
    }
    expect(seen).toEqual(order);
  });

  it('redelivers an undeleted message after its visibility timeout, with ApproximateReceiveCount 2', async () => {
    const q = await freshFifo('vis');
    await sendAll(stack.clients.sqs, q, [{ body: 'v', groupId: 'g', dedupId: 'v' }]);
    const [first] = await receive(q, { visibilitySec: 30 });
    expect(receiveCount(first)).toBe('1');
    expect(await receive(q, { visibilitySec: 1 })).toEqual([]); // still invisible
    // A visibility of 1 s from now (as a heartbeat would set it), then nothing: it lapses.
    await stack.clients.sqs.send(
      new ChangeMessageVisibilityCommand({ QueueUrl: q, ReceiptHandle: first!.ReceiptHandle!, VisibilityTimeout: 1 }),
    );
    await sleep(1500);
    const [again] = await receive(q);
    expect(again?.MessageId).toBe(first!.MessageId);
    expect(receiveCount(again)).toBe('2');
    expect(again!.ReceiptHandle).not.toBe(first!.ReceiptHandle);
  });

  it('ChangeMessageVisibility to 0 makes the message visible at once', async () => {
    const q = await freshFifo('cmv');
    await sendAll(stack.clients.sqs, q, [{ body: 'c', groupId: 'g', dedupId: 'c' }]);
    const [first] = await receive(q, { visibilitySec: 30 });
    expect(await receive(q)).toEqual([]);
    await stack.clients.sqs.send(
      new ChangeMessageVisibilityCommand({ QueueUrl: q, ReceiptHandle: first!.ReceiptHandle!, VisibilityTimeout: 0 }),
    );
    const [again] = await receive(q);
    expect(again?.MessageId).toBe(first!.MessageId);
    expect(receiveCount(again)).toBe('2');
  });

  it('moves a message to the DLQ after maxReceiveCount receives (bootstrap RedrivePolicy), body intact', async () => {
    const q = stack.url(stack.names.queue('auth-requests'));
    const dlq = stack.url(stack.names.dlq('auth-requests'));
    const sqs = stack.clients.sqs;
    const body = JSON.stringify({ type: 'AuthorisationRequested', chargeId: 'ch-redrive', n: 1 });
    await sendAll(sqs, q, [{ body, groupId: 'ch-redrive', dedupId: 'redrive-1' }]);

    // Receive and abandon twice (visibility 0 = hand back at once, as a crashed worker would after expiry).
    for (const expected of ['1', '2']) {
      const [m] = await receive(q);
      expect(m?.Body).toBe(body);
      expect(receiveCount(m)).toBe(expected);
      await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: q, ReceiptHandle: m!.ReceiptHandle!, VisibilityTimeout: 0 }));
    }
    // The third receive finds it over the limit: SQS moves it instead of delivering it.
    expect(await receive(q)).toEqual([]);
    const dead = await drain(sqs, dlq);
    expect(bodies(dead)).toEqual([body]);
    expect(dead[0]!.Attributes?.MessageGroupId).toBe('ch-redrive');
    expect(await receive(q)).toEqual([]);
  });
});

describe('Emulator: DynamoDB Local transactions', () => {
  it('cancels the whole TransactWriteItems on a failed condition, with a reason per item and the ALL_OLD item', async () => {
    const ddb = stack.clients.dynamodb;
    const table = stack.names.table('charges');
    await ddb.send(
      new PutItemCommand({
        TableName: table,
        Item: { chargeId: { S: 'tx-existing' }, status: { S: 'CREATED' }, version: { N: '3' } },
      }),
    );

    const attempt = ddb.send(
      new TransactWriteItemsCommand({
        TransactItems: [
          { Put: { TableName: table, Item: { chargeId: { S: 'tx-new-0' }, status: { S: 'CREATED' } } } },
          {
            Update: {
              TableName: table,
              Key: { chargeId: { S: 'tx-existing' } },
              UpdateExpression: 'SET #s = :next, version = :v2',
              ConditionExpression: 'version = :expected',
              ExpressionAttributeNames: { '#s': 'status' },
              ExpressionAttributeValues: { ':next': { S: 'AUTHORISATION_READY' }, ':v2': { N: '4' }, ':expected': { N: '2' } },
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            },
          },
          {
            ConditionCheck: {
              TableName: table,
              Key: { chargeId: { S: 'tx-missing' } },
              ConditionExpression: 'attribute_not_exists(chargeId)',
            },
          },
        ],
      }),
    );
    const err = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransactionCanceledException);
    const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
    expect(reasons.map((r) => r.Code)).toEqual(['None', 'ConditionalCheckFailed', 'None']);
    expect(reasons[1]!.Item).toEqual({ chargeId: { S: 'tx-existing' }, status: { S: 'CREATED' }, version: { N: '3' } });
    expect(reasons[0]!.Item).toBeUndefined();

    // Atomic: neither the first Put nor the Update took effect.
    expect((await ddb.send(new GetItemCommand({ TableName: table, Key: { chargeId: { S: 'tx-new-0' } } }))).Item).toBeUndefined();
    const still = (
      await ddb.send(new GetItemCommand({ TableName: table, Key: { chargeId: { S: 'tx-existing' } }, ConsistentRead: true }))
    ).Item;
    expect(still?.version).toEqual({ N: '3' });
  });

  it('returns no item in the reason when ReturnValuesOnConditionCheckFailure is not set', async () => {
    const ddb = stack.clients.dynamodb;
    const table = stack.names.table('charges');
    await ddb.send(new PutItemCommand({ TableName: table, Item: { chargeId: { S: 'tx-plain' }, version: { N: '1' } } }));
    const err = await ddb
      .send(
        new TransactWriteItemsCommand({
          TransactItems: [
            {
              Put: {
                TableName: table,
                Item: { chargeId: { S: 'tx-plain' }, version: { N: '2' } },
                ConditionExpression: 'attribute_not_exists(chargeId)',
              },
            },
          ],
        }),
      )
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(TransactionCanceledException);
    const [reason] = (err as TransactionCanceledException).CancellationReasons ?? [];
    expect(reason?.Code).toBe('ConditionalCheckFailed');
    expect(reason?.Item).toBeUndefined();
  });
});
