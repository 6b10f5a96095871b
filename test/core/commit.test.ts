import { DeleteCommand, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { CommitTooLargeError, ConflictError, InvalidCommitError } from '../../shared/core/errors.js';
import { eventIdFor, ledgerShardOf, toLedgerMessage } from '../../shared/core/outbox.js';
import type { CommitRequest, EntityChange, OutcomeStore } from '../../shared/core/ports.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
/** Own client: records TransactWriteItems calls, and can lose the next response after it applied. */
let counted: AwsClients;
let transactCalls = 0;
let loseNextResponse = false;

beforeAll(async () => {
  stack = await setupTestStack('commit');
  counted = createAwsClients(stack.aws, { credentials: EMBEDDED_CREDENTIALS });
  counted.doc.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'TransactWriteItemsCommand') transactCalls++;
      const out = await next(args);
      if (loseNextResponse) {
        loseNextResponse = false;
        // Applied on the server, answer lost on the way back (a timeout after the request went out).
        throw Object.assign(new Error('socket hang up after request was sent'), { name: 'TimeoutError' });
      }
      return out;
    },
    { step: 'initialize', name: 'countAndLose' },
  );
});
afterAll(() => {
  counted?.destroy();
  stack?.close();
});

const uniq = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`;
const outcomes = (): OutcomeStore => createDynamoOutcomeStore({ doc: stack.clients.doc, names: stack.names, ledgerShards: 8 });

async function charge(chargeId: string) {
  return (
    await stack.clients.doc.send(
      new GetCommand({ TableName: stack.names.table('charges'), Key: { chargeId }, ConsistentRead: true }),
    )
  ).Item;
}
async function events(resourceId: string) {
  const out = await stack.clients.doc.send(
    new QueryCommand({
      TableName: stack.names.table('events'),
      KeyConditionExpression: 'resourceId = :r',
      ExpressionAttributeValues: { ':r': resourceId },
      ConsistentRead: true,
    }),
  );
  return out.Items ?? [];
}

const payment = (id: string) => ({ type: 'payment' as const, id, gatewayAccountId: 'gw-1', live: false });

function create(chargeId: string, extra: Partial<EntityChange> = {}): EntityChange {
  return {
    table: 'charges',
    key: { chargeId },
    expectedVersion: 0,
    set: { status: 'CREATED', amount: 1250 },
    resource: payment(chargeId),
    currentEventSeq: 0,
    events: [{ eventType: 'PAYMENT_CREATED', details: { amount: 1250 } }],
    ...extra,
  };
}

function advance(chargeId: string, version: number, seq: number, status: string, eventTypes: string[] = [status]): EntityChange {
  return {
    table: 'charges',
    key: { chargeId },
    expectedVersion: version,
    set: { status },
    resource: payment(chargeId),
    currentEventSeq: seq,
    events: eventTypes.map((eventType) => ({ eventType, details: { status } })),
  };
}

describe('Class: DynamoOutcomeStore', () => {
  it('Method: commit: writes entity, version, eventSeq and outbox rows together', async () => {
    // Prepare
    const store = outcomes();
    const id = uniq('ch');
    // Act
    const created = await store.commit({ changes: [create(id)] });
    const updated = await store.commit({
      changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS', ['AUTHORISATION_SUCCEEDED', 'USER_APPROVED_FOR_CAPTURE'])],
    });
    // Assess
    expect(created.versions).toEqual([1]);
    expect(updated.versions).toEqual([2]);
    expect(await charge(id)).toMatchObject({
      chargeId: id,
      status: 'AUTHORISATION_SUCCESS',
      amount: 1250,
      version: 2,
      eventSeq: 3,
    });
    const rows = await events(id);
    expect(rows.map((r) => [r.sequence, r.eventType])).toEqual([
      [1, 'PAYMENT_CREATED'],
      [2, 'AUTHORISATION_SUCCEEDED'],
      [3, 'USER_APPROVED_FOR_CAPTURE'],
    ]);
    const [first] = created.events;
    expect(first).toMatchObject({ eventId: eventIdFor('payment', id, 1), sequence: 1, pendingShard: ledgerShardOf(id, 8) });
    expect(first?.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(rows[0]).toMatchObject({ eventId: first?.eventId, pendingKey: `${first?.timestamp}#${id}#0000000001` });
    // Timestamps strictly increase within one commit.
    expect(updated.events[0]!.timestamp < updated.events[1]!.timestamp).toBe(true);
    expect(toLedgerMessage(first!)).toEqual({
      event_id: first?.eventId,
      resource_type: 'payment',
      resource_external_id: id,
      sequence: 1,
      event_type: 'PAYMENT_CREATED',
      timestamp: first?.timestamp,
      gateway_account_id: 'gw-1',
      live: false,
      event_details: { amount: 1250 },
    });
  });

  it('Method: commit: two racers on the same version — exactly one wins, the other gets ConflictError(entity) and leaves no trace', async () => {
    // Prepare
    const id = uniq('ch');
    await outcomes().commit({ changes: [create(id)] });
    // Act: both read version 1 / eventSeq 1; one after the other.
    await outcomes().commit({ changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS', ['AUTHORISATION_SUCCEEDED'])] });
    const err = await outcomes()
      .commit({ changes: [advance(id, 1, 1, 'AUTHORISATION_REJECTED', ['AUTHORISATION_REJECTED'])] })
      .catch((e: unknown) => e);
    // Assess
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({
      part: 'entity',
      reason: 'condition',
      key: { chargeId: id },
      existing: { version: 2, status: 'AUTHORISATION_SUCCESS' },
    });
    expect((err as ConflictError).kind).toBe('retryable');
    expect((await events(id)).map((r) => r.eventType)).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_SUCCEEDED']);
  });

  it('Method: commit: concurrent racers — exactly one of many wins', async () => {
    const id = uniq('ch');
    await outcomes().commit({ changes: [create(id)] });
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => outcomes().commit({ changes: [advance(id, 1, 1, `S${i}`)] })),
    );
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((x) => x.status === 'rejected'))
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(ConflictError);
    expect(await charge(id)).toMatchObject({ version: 2, eventSeq: 2 });
    expect((await events(id)).map((r) => r.sequence)).toEqual([1, 2]);
  });

  it('Method: commit: sequences stay gapless and unique over many commits by concurrent writers', async () => {
    // Prepare
    const id = uniq('ch');
    await outcomes().commit({ changes: [create(id)] });
    // Act: 4 writers x 6 changes each, every one re-reading and retrying on conflict.
    const writer = async (w: number) => {
      const store = outcomes();
      for (let n = 0; n < 6; n++) {
        for (;;) {
          const item = await charge(id);
          const change = advance(
            id,
            Number(item?.version),
            Number(item?.eventSeq),
            `W${w}N${n}`,
            Array.from({ length: 1 + (n % 3) }, (_, k) => `E${k}`),
          );
          try {
            await store.commit({ changes: [change] });
            break;
          } catch (e) {
            if (!(e instanceof ConflictError)) throw e;
          }
        }
      }
    };
    await Promise.all([0, 1, 2, 3].map(writer));
    // Assess: 1 + 4 * (1+2+3+1+2+3) events, numbered 1..N with no gap and no duplicate.
    const rows = await events(id);
    const n = 1 + 4 * 12;
    expect(rows.map((r) => r.sequence)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(new Set(rows.map((r) => r.eventId)).size).toBe(n);
    expect(await charge(id)).toMatchObject({ version: 25, eventSeq: n });
  });

  it('Method: commit: a wrong currentEventSeq is refused instead of leaving a gap', async () => {
    const id = uniq('ch');
    await outcomes().commit({ changes: [create(id)] });
    const err = await outcomes()
      .commit({ changes: [advance(id, 1, 3, 'X')] })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ConflictError', part: 'entity', existing: { eventSeq: 1 } });
    expect((await events(id)).map((r) => r.sequence)).toEqual([1]);
  });

  it('Method: commit: the same commit sent twice is applied once (ClientRequestToken), and so is one whose response was lost', async () => {
    // Prepare
    const store = createDynamoOutcomeStore({ doc: counted.doc, names: stack.names, resendDelayMs: 10 });
    const id = uniq('ch');
    await store.commit({ changes: [create(id)] });
    const request: CommitRequest = { changes: [advance(id, 1, 1, 'AUTHORISATION_SUCCESS', ['AUTHORISATION_SUCCEEDED'])] };
    transactCalls = 0;
    // Act: the caller repeats the same commit (e.g. after an AmbiguousError).
    const first = await store.commit(request);
    const second = await store.commit(request);
    // Assess: both went to DynamoDB; the second was accepted without a second application (its
    // version condition would have failed had DynamoDB evaluated it again).
    expect(transactCalls).toBe(2);
    expect(second).toEqual(first);
    expect(await charge(id)).toMatchObject({ version: 2, eventSeq: 2 });
    expect(await events(id)).toHaveLength(2);

    // Act: the response of the next commit is lost after it applied; commit() resends the same input.
    transactCalls = 0;
    loseNextResponse = true;
    const third = await store.commit({ changes: [advance(id, 2, 2, 'CAPTURE_APPROVED', ['USER_APPROVED_FOR_CAPTURE'])] });
    // Assess
    expect(transactCalls).toBe(2);
    expect(third.versions).toEqual([3]);
    expect(await charge(id)).toMatchObject({ version: 3, eventSeq: 3, status: 'CAPTURE_APPROVED' });
    expect((await events(id)).map((r) => r.sequence)).toEqual([1, 2, 3]);
  });

  it('Method: commit: after a definite refusal the same request can be retried and succeeds once its cause is gone', async () => {
    // Prepare: a stray row is in the way of a create.
    const store = outcomes();
    const id = uniq('ch');
    const table = stack.names.table('charges');
    await stack.clients.doc.send(new PutCommand({ TableName: table, Item: { chargeId: id, stray: true } }));
    const request: CommitRequest = { changes: [create(id)] };
    const refused = await store.commit(request).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      name: 'ConflictError',
      part: 'entity',
      reason: 'condition',
      existing: { chargeId: id, stray: true },
    });
    expect(await events(id)).toEqual([]);
    // Act: the cause goes away; the identical request is committed again.
    await stack.clients.doc.send(new DeleteCommand({ TableName: table, Key: { chargeId: id } }));
    const again = await store.commit(request);
    // Assess
    expect(again.versions).toEqual([1]);
    expect(await charge(id)).toMatchObject({ version: 1, eventSeq: 1, status: 'CREATED' });
    expect((await events(id)).map((r) => r.sequence)).toEqual([1]);
  });

  it('Method: commit: more than 100 items is refused before anything is sent; exactly 100 goes through', async () => {
    const store = createDynamoOutcomeStore({ doc: counted.doc, names: stack.names });
    const id = uniq('ch');
    const many = (n: number) => Array.from({ length: n }, (_, i) => ({ eventType: `E${i}`, details: {} }));
    transactCalls = 0;
    const err = await store.commit({ changes: [create(id, { events: many(100) })] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommitTooLargeError);
    expect(err).toMatchObject({ code: 'COMMIT_TOO_LARGE', itemCount: 101, kind: 'terminal' });
    expect(transactCalls).toBe(0);
    const ok = await store.commit({ changes: [create(id, { events: many(99) })] });
    expect(ok.events).toHaveLength(99);
    expect(await charge(id)).toMatchObject({ eventSeq: 99 });
  });

  it('Method: commit: refuses card data and malformed requests as terminal, sending nothing', async () => {
    const store = createDynamoOutcomeStore({ doc: counted.doc, names: stack.names });
    const id = uniq('ch');
    transactCalls = 0;
    const bad: CommitRequest[] = [
      { changes: [create(id, { set: { status: 'CREATED', note: '4242 4242 4242 4242' } })] },
      { changes: [create(id, { set: { status: 'CREATED', card: { cvc: '123' } } })] },
      { changes: [create(id, { events: [{ eventType: 'X', details: { pan: '4000056655665556' } }] })] },
      { changes: [create(id, { resource: undefined })] },
      { changes: [create(id), create(id)] },
      { changes: [{ ...advance(id, 1, 1, 'X'), set: { version: 9 } }] },
      { changes: [{ ...create(id), key: { paymentId: id } }] },
      { changes: [] },
    ];
    for (const req of bad) {
      const err = await store.commit(req).catch((e: unknown) => e);
      expect(err, JSON.stringify(req)).toBeInstanceOf(InvalidCommitError);
      expect((err as InvalidCommitError).kind).toBe('terminal');
    }
    expect(transactCalls).toBe(0);
    // An IBAN's long digit run is not a card number.
    const payout = await store.commit({
      changes: [
        {
          table: 'payouts',
          key: { shard: 'payout-shard#000', paymentId: id },
          expectedVersion: 0,
          set: { status: 'RECEIVED', creditor: { iban: 'EE382200221020145685', name: 'A' } },
          resource: { type: 'payout', id, live: false },
          events: [{ eventType: 'PAYOUT_CREATED', details: {} }],
        },
      ],
    });
    expect(toLedgerMessage(payout.events[0]!)).not.toHaveProperty('gateway_account_id');
  });
});
