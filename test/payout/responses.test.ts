/**
 * The LHV response poller in process, on the embedded DynamoDB, with a scripted LHV client: a DELETE
 * whose answer was lost is repeated (404 = done) rather than failing the message, and a poller that
 * keeps failing (it cannot reach LHV) gives the fleet's poller lease up long before it would expire,
 * so a worker that can drain takes over.
 */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../shared/core/consumer.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { RetryableError } from '../../shared/errors.js';
import type { LhvClient } from '../../workers/payout/lhv/client.js';
import { toEndToEndId } from '../../workers/payout/lhv/pain001.js';
import { buildPain002 } from '../../workers/payout/lhv/pain002.js';
import type { LhvMessage } from '../../workers/payout/lhv/types.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createBatchStore } from '../../workers/payout/batches.js';
import { createIngestHandler } from '../../workers/payout/ingest.js';
import { createIngestStore } from '../../workers/payout/ingest-store.js';
import type { ShardSlot } from '../../workers/payout/initiator.js';
import { createShardKeeper } from '../../workers/payout/leases.js';
import { createPayoutMetrics } from '../../workers/payout/metrics.js';
import type { Batch } from '../../workers/payout/model.js';
import { createPayoutRepository } from '../../workers/payout/repo.js';
import { createResponsePoller, GIVE_UP_AFTER_FAILURES } from '../../workers/payout/responses.js';
import { CheckoutApprovalAccepted } from '../../workers/payout/schema.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { approval, readEvents, readPayout } from './support.js';

let stack: TestStack;
const log = silentLogger();
const metrics = createPayoutMetrics(new Registry());

beforeAll(async () => {
  stack = await setupTestStack('presp', { payoutShards: 1 });
});
afterAll(() => stack?.close());

function parts() {
  const outcomes = createDynamoOutcomeStore({ doc: stack.clients.doc, names: stack.names });
  const repo = createPayoutRepository(stack.clients.doc, stack.names);
  return { outcomes, repo, batches: createBatchStore({ outcomes, repo, metrics, log }) };
}

/** A keeper whose leases last 20 s: longer than these tests, so a handover is never an expiry. */
function keeper() {
  return createShardKeeper({
    store: createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') }),
    leaseMs: 20_000,
    renewMs: 5_000,
    allowTight: false,
    log,
  });
}

/** An LHV client for the poller only; each test scripts the calls it needs. */
function scripted(calls: Partial<Pick<LhvClient, 'nextMessage' | 'deleteMessage'>>): LhvClient {
  const unused = () => Promise.reject(new Error('not used by the poller'));
  return {
    heartbeat: unused,
    heartbeatMq: unused,
    initiatePayment: unused,
    nextMessage: calls.nextMessage ?? (async () => undefined),
    deleteMessage: calls.deleteMessage ?? (async () => ({ deleted: true })),
    close: async () => undefined,
  };
}

function poller(lhv: LhvClient, ownerId: string, leaseBackoffMs: number) {
  return createResponsePoller({ lhv, ...parts(), keeper: keeper(), ownerId, metrics, log, pollMs: 50, leaseBackoffMs });
}

describe('Response poller: lost DELETE answers', () => {
  it('a DELETE whose answer was lost is repeated; the 404 of the repeat counts as done and the report is applied once', async () => {
    const shard = 'payout-shard#000';
    const got = await keeper().acquire(shard, 'test-shard');
    if (!got.held) throw new Error('shard held');
    const held = got.held;
    const slot: ShardSlot = {
      shard,
      fence: { lease: () => held.lease },
      stop: new AbortController().signal,
      abort: new AbortController().signal,
    };
    const ids = ['lost-1', 'lost-2'];
    const handle = createIngestHandler({
      pick: () => slot,
      store: createIngestStore({ doc: stack.clients.doc, names: stack.names }),
      metrics,
      live: false,
      log,
    });
    const ctx: HandlerContext = {
      messageId: 'm',
      groupId: 'g',
      receiveCount: 1,
      signal: new AbortController().signal,
      log,
      setAttempts: () => undefined,
    };
    for (const id of ids) expect(await handle(CheckoutApprovalAccepted.parse(approval(id)), ctx)).toEqual({ action: 'ack' });
    const { batches, repo } = parts();
    const now = new Date().toISOString();
    const draft: Batch = {
      batchId: 'd'.repeat(32),
      kind: 'BATCH',
      shard,
      status: 'ASSIGNING',
      paymentIds: ids,
      createdAt: now,
      requestedExecutionDate: now.slice(0, 10),
      sendAttempts: 1,
      updatedAt: now,
      version: 0,
    };
    const { batch } = await batches.pin(slot.fence, undefined, draft, [...(await repo.getPayouts(ids)).values()]);
    const msg: LhvMessage = {
      messageRequestId: 'REQ-lost',
      messageResponseId: 'RES-lost',
      responseType: 'PAYMENT',
      contentType: 'application/xml',
      body: buildPain002({
        msgId: 'r-lost',
        originalMsgId: batch.batchId,
        groupStatus: 'ACSC',
        transactions: ids.map((id) => ({ endToEndId: toEndToEndId(id), instrId: undefined, status: 'ACSC' })),
      }),
    };
    const deletes: string[] = [];
    const lhv = scripted({
      async deleteMessage(id) {
        deletes.push(id);
        // The first DELETE removed the message but its answer was lost; the repeat finds it gone.
        if (deletes.length === 1) throw new RetryableError('LHV_UNAVAILABLE', 'LHV messages/delete: socket hang up');
        return { deleted: false };
      },
    });

    expect(await poller(lhv, 'test-lost', 100).handle(msg, slot.fence)).toBe('applied');

    expect(deletes).toEqual(['RES-lost', 'RES-lost']);
    for (const id of ids) {
      expect((await readPayout(stack, id))?.status).toBe('PAID');
      expect((await readEvents(stack, id)).map((e) => e.eventType)).toEqual([
        'PAYOUT_CREATED',
        'PAYOUT_INITIATED',
        'PAYOUT_PAID',
      ]);
    }
    await held.release();
  });
});

describe('Response poller: a holder that keeps failing', () => {
  it(`gives the poller lease up after ${GIVE_UP_AFTER_FAILURES} failed steps in a row; a worker that can reach LHV takes it`, async () => {
    let failedReads = 0;
    const broken = poller(
      scripted({
        nextMessage: async () => {
          failedReads++;
          throw new RetryableError('LHV_UNAVAILABLE', 'LHV messages/next: HTTP 500');
        },
      }),
      'worker-cut-off',
      // After giving up it waits this long before trying again, so the healthy one gets the lease.
      5_000,
    );
    broken.start();
    await eventually(() => broken.holding(), 20_000, 'the cut-off worker to hold the poller lease');

    let healthyReads = 0;
    const healthy = poller(
      scripted({
        nextMessage: async () => {
          healthyReads++;
          return undefined;
        },
      }),
      'worker-healthy',
      100,
    );
    healthy.start();
    // The lease lasts 20 s and is renewed: only giving it up can hand it over.
    await eventually(() => healthy.holding(), 30_000, 'the healthy worker to take the poller lease');
    expect(broken.holding()).toBe(false);
    expect(failedReads).toBeGreaterThanOrEqual(GIVE_UP_AFTER_FAILURES);
    await eventually(() => healthyReads > 0, 10_000, 'the healthy worker to poll');
    await Promise.all([broken.stop(1000), healthy.stop(1000)]);
  });
});
