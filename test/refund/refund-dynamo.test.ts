import { randomUUID } from 'node:crypto';
import { PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Charge } from '../../shared/charges/charge.js';
import { createChargeRepository } from '../../shared/charges/repo.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { createDynamoIdempotencyStore } from '../../shared/core/dynamo-idempotency.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { createDynamoRowWorkStore } from '../../shared/core/dynamo-row-work.js';
import { createLeaseKeeper, type LeaseKeeper } from '../../shared/core/lease-keeper.js';
import { fromEventItem, toLedgerMessage } from '../../shared/core/outbox.js';
import { routeLeases } from '../../shared/core/row-lease.js';
import { sleep } from '../../shared/core/timers.js';
import { createOnce } from '../../shared/core/work.js';
import { silentLogger } from '../../shared/log/logger.js';
import { PayfleetError } from '../../shared/errors.js';
import { createRefundHandler, type RefundHooks } from '../../workers/refund/handler.js';
import { parseRefundRequested, type RefundRequested } from '../../workers/refund/schema.js';
import { LedgerEventBody } from '../support/ledger-consumer.js';
import { readCharge } from '../support/charges.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { scriptedProcessor, type ScriptedProcessor } from './support.js';

/**
 * The refund guarantees on DynamoDB Local: two workers (each its own owner, keeper and once(), as
 * two processes have) racing distinct refunds of one charge, and duplicates of one request. What
 * holds the line is the charge's version condition in the commit that creates a refund.
 */
let stack: TestStack;
const keepers: LeaseKeeper[] = [];

beforeAll(async () => {
  stack = await setupTestStack('refund');
});
afterAll(async () => {
  for (const k of keepers) await k.releaseAll();
  stack?.close();
});

/** One worker as a process would build it: its own owner id, lease keeper and once(). */
function worker(owner: string, processor: ScriptedProcessor, hooks?: RefundHooks) {
  const doc = stack.clients.doc;
  const rows = createDynamoRowWorkStore({ doc, names: stack.names });
  const keeper = createLeaseKeeper({
    store: routeLeases(createDynamoLeaseStore({ doc, tableName: stack.names.table('leases') }), rows),
    leaseMs: 20_000,
    renewMs: 5000,
  });
  keepers.push(keeper);
  return createRefundHandler({
    once: createOnce({
      keeper,
      idempotency: createDynamoIdempotencyStore({ doc, tableName: stack.names.table('idempotency') }),
      outcomes: createDynamoOutcomeStore({ doc, names: stack.names, ledgerShards: 8 }),
      rows,
      ownerId: owner,
      attemptDeadlineMs: 20_000,
    }),
    charges: createChargeRepository(doc, stack.names.table('charges')),
    registry: processor.registry,
    settings: { confirmDelaySec: 1, maxConfirmDelaySec: 60 },
    ...(hooks ? { hooks } : {}),
  });
}

const ctx = (): HandlerContext => ({
  messageId: randomUUID(),
  groupId: 'g',
  receiveCount: 1,
  signal: new AbortController().signal,
  log: silentLogger(),
  setAttempts: () => undefined,
});

type Handle = ReturnType<typeof worker>;

/** Deliver until the request gets a verdict, as SQS redelivers after a retryable failure; a terminal failure is its letter. */
async function deliver(handle: Handle, req: RefundRequested): Promise<HandlerResult> {
  for (let tries = 0; ; tries++) {
    try {
      return await handle(req, ctx());
    } catch (err) {
      if (!(err instanceof PayfleetError)) throw err;
      if (err.kind === 'terminal') return { action: 'dead-letter', code: err.code, detail: err.message };
      if (tries >= 30) throw err;
      await sleep(20 + Math.floor(Math.random() * 30));
    }
  }
}

async function seedCaptured(chargeId: string, amount = 1000): Promise<void> {
  const at = new Date().toISOString();
  const charge: Charge = {
    chargeId,
    gatewayAccountId: 'gw-1',
    processor: 'sandbox',
    amount,
    currency: 'GBP',
    reference: `ref-${chargeId}`,
    description: 'refund test',
    status: 'CAPTURED',
    live: false,
    version: 4,
    eventSeq: 4,
    createdAt: at,
    updatedAt: at,
    history: [{ status: 'CAPTURED', at }],
    processorRef: `pi_${chargeId}`,
  };
  await stack.clients.doc.send(new PutCommand({ TableName: stack.names.table('charges'), Item: charge }));
}

const refundRequest = (chargeId: string, refundId: string, amount: number) =>
  parseRefundRequested(
    JSON.stringify({
      type: 'RefundRequested',
      refundRequestId: randomUUID(),
      refundId,
      chargeId,
      amount,
      requestedAt: new Date().toISOString(),
    }),
  );

/** The charge's refunds, from the by-charge index (only rows that became refunds are in it). */
async function refundsOfCharge(chargeId: string): Promise<{ refundId: string; amount: number; status: string }[]> {
  const r = await stack.clients.doc.send(
    new QueryCommand({
      TableName: stack.names.table('refunds'),
      IndexName: 'by-charge',
      KeyConditionExpression: 'chargeId = :c',
      ExpressionAttributeValues: { ':c': chargeId },
    }),
  );
  return (r.Items ?? []) as { refundId: string; amount: number; status: string }[];
}

/** The sum of a charge's refunds not in REFUND_ERROR: never more than captured, always its refundedAmount. */
async function heldAmount(chargeId: string): Promise<number> {
  return (await refundsOfCharge(chargeId)).filter((r) => r.status !== 'REFUND_ERROR').reduce((s, r) => s + r.amount, 0);
}

describe('refund worker on DynamoDB', () => {
  it('distinct refunds of one charge on two workers, both having read the charge: only the amount that fits is accepted', async () => {
    const chargeId = `c-${randomUUID()}`;
    await seedCaptured(chargeId);
    const processor = scriptedProcessor();
    // Both attempts read the charge (1000 captured, nothing refunded) before either commits.
    let arrived = 0;
    let release!: () => void;
    const bothRead = new Promise<void>((r) => {
      release = r;
    });
    const hold: RefundHooks = {
      afterChargeRead: async () => {
        arrived++;
        if (arrived === 2) release();
        if (arrived <= 2) await bothRead;
      },
    };
    const a = worker('refund-a', processor, hold);
    const b = worker('refund-b', processor, hold);
    const ra = refundRequest(chargeId, `ra-${chargeId}`, 600);
    const rb = refundRequest(chargeId, `rb-${chargeId}`, 600);
    const verdicts = await Promise.all([deliver(a, ra), deliver(b, rb)]);

    expect(verdicts.map((v) => (v.action === 'dead-letter' ? v.code : v.action)).sort()).toEqual([
      'REFUND_AMOUNT_UNAVAILABLE',
      'ack',
    ]);
    expect(processor.refunds.map((r) => r.amount)).toEqual([600]);
    expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(600);
    expect(await heldAmount(chargeId)).toBe(600);
  });

  it('many refunds of one charge racing on two workers: never more refunded than captured, and what was taken is what the refunds hold', async () => {
    const chargeId = `c-${randomUUID()}`;
    await seedCaptured(chargeId);
    const processor = scriptedProcessor();
    const a = worker('refund-many-a', processor);
    const b = worker('refund-many-b', processor);
    const reqs = Array.from({ length: 8 }, (_, i) => refundRequest(chargeId, `r${i}-${chargeId}`, 300));
    const verdicts = await Promise.all(reqs.map((r, i) => deliver(i % 2 === 0 ? a : b, r)));

    const accepted = verdicts.filter((v) => v.action === 'ack').length;
    expect(accepted).toBe(3);
    expect(verdicts.filter((v) => v.action === 'dead-letter').map((v) => (v as { code: string }).code)).toEqual(
      Array(5).fill('REFUND_AMOUNT_UNAVAILABLE'),
    );
    expect(processor.refunds).toHaveLength(3);
    expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(900);
    expect(await heldAmount(chargeId)).toBe(900);
  });

  it('duplicates of one refund request on two workers at once: one refund, one processor call, three events', async () => {
    const chargeId = `c-${randomUUID()}`;
    await seedCaptured(chargeId);
    const processor = scriptedProcessor();
    const a = worker('refund-dup-a', processor);
    const b = worker('refund-dup-b', processor);
    const req = refundRequest(chargeId, `rd-${chargeId}`, 1000);
    const verdicts = await Promise.all([deliver(a, req), deliver(b, req), deliver(a, req), deliver(b, req)]);

    expect(verdicts).toEqual(Array(4).fill({ action: 'ack' }));
    expect(processor.refunds).toHaveLength(1);
    expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(1000);
    const events = await stack.clients.doc.send(
      new QueryCommand({
        TableName: stack.names.table('events'),
        KeyConditionExpression: 'resourceId = :r',
        ExpressionAttributeValues: { ':r': req.refundId },
        ConsistentRead: true,
      }),
    );
    const bodies = (events.Items ?? []).map((i) => toLedgerMessage(fromEventItem(i)));
    expect(bodies.map((m) => [m.sequence, m.event_type])).toEqual([
      [1, 'REFUND_CREATED'],
      [2, 'REFUND_SUBMITTED'],
      [3, 'REFUND_SUCCEEDED'],
    ]);
    // What the emitter sends: a §5 body of resource_type refund, with its charge as parent.
    for (const m of bodies) {
      expect(LedgerEventBody.parse(m)).toMatchObject({
        resource_type: 'refund',
        resource_external_id: req.refundId,
        parent_resource_external_id: chargeId,
      });
    }
    expect(bodies[2]!.event_details).toMatchObject({ charge_refunded_amount: 1000, charge_refund_available: 0 });
  });

  it('a refusal by the processor gives the amount back on DynamoDB too: a later refund of the whole amount is accepted', async () => {
    const chargeId = `c-${randomUUID()}`;
    await seedCaptured(chargeId);
    const processor = scriptedProcessor({ refund: [{ kind: 'rejected', code: 'charge_disputed', message: 'disputed' }] });
    const a = worker('refund-err-a', processor);
    expect(await deliver(a, refundRequest(chargeId, `re-${chargeId}`, 1000))).toMatchObject({
      action: 'dead-letter',
      code: 'PROCESSOR_REJECTED',
    });
    expect((await readCharge(stack, chargeId))?.refundedAmount).toBe(0);
    expect(await deliver(a, refundRequest(chargeId, `re2-${chargeId}`, 1000))).toEqual({ action: 'ack' });
    expect(await heldAmount(chargeId)).toBe(1000);
  });
});
