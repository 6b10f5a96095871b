/**
 * The initiator and the response handler in process, on the embedded DynamoDB, with a scripted
 * LHV client: the paths the sandbox bank cannot easily produce (a 4xx for a valid request, a 4xx
 * after an ambiguous attempt, a crash in the middle of pinning a batch, a report overtaking the
 * 202's commit, unreadable and unknown messages).
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../shared/core/consumer.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { AmbiguousError } from '../../shared/errors.js';
import type { LhvClient } from '../../workers/payout/lhv/client.js';
import { toEndToEndId } from '../../workers/payout/lhv/pain001.js';
import { buildPain002 } from '../../workers/payout/lhv/pain002.js';
import { LhvRequestRejectedError, type LhvMessage } from '../../workers/payout/lhv/types.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createBatchStore, type BatchStore } from '../../workers/payout/batches.js';
import type { PayoutSettings } from '../../workers/payout/config.js';
import { createIngestHandler } from '../../workers/payout/ingest.js';
import { createIngestStore } from '../../workers/payout/ingest-store.js';
import { createInitiator, type ShardSlot } from '../../workers/payout/initiator.js';
import { createShardKeeper } from '../../workers/payout/leases.js';
import { createPayoutMetrics } from '../../workers/payout/metrics.js';
import { unmatchedKey, type Batch } from '../../workers/payout/model.js';
import { createPayoutRepository } from '../../workers/payout/repo.js';
import { createResponsePoller } from '../../workers/payout/responses.js';
import { CheckoutApprovalAccepted } from '../../workers/payout/schema.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { approval, DEBTOR, readBatch, readEvents, readPayout } from './support.js';

let stack: TestStack;
const log = silentLogger();
const metrics = createPayoutMetrics(new Registry());
const SETTINGS: PayoutSettings['initiation'] = {
  pollMs: 50,
  batchSize: 100,
  quietMs: 0,
  maxWaitMs: 0,
  sendAttempts: 3,
  retryBaseMs: 1,
  retryMaxMs: 5,
};

beforeAll(async () => {
  stack = await setupTestStack('pinit', { payoutShards: 1 });
});
afterAll(() => stack?.close());

function parts() {
  const outcomes = createDynamoOutcomeStore({ doc: stack.clients.doc, names: stack.names });
  const repo = createPayoutRepository(stack.clients.doc, stack.names);
  const batches = createBatchStore({ outcomes, repo, metrics, log });
  return { outcomes, repo, batches };
}

/** A held lease on a shard of its own (each test works in its own shard). */
async function holdShard(shard: string): Promise<ShardSlot> {
  const keeper = createShardKeeper({
    store: createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') }),
    leaseMs: 20_000,
    renewMs: 5_000,
    allowTight: false,
    log,
  });
  const got = await keeper.acquire(shard, `test-${shard}`);
  if (!got.held) throw new Error('shard held');
  const held = got.held;
  afterAll(() => held.release());
  return { shard, fence: { lease: () => held.lease }, stop: new AbortController().signal, abort: new AbortController().signal };
}

const ctx = (): HandlerContext => ({
  messageId: 'm',
  groupId: 'g',
  receiveCount: 1,
  signal: new AbortController().signal,
  log,
  setAttempts: () => undefined,
});

async function ingest(slot: ShardSlot, ids: readonly string[]): Promise<void> {
  const handle = createIngestHandler({
    pick: () => slot,
    store: createIngestStore({ doc: stack.clients.doc, names: stack.names }),
    metrics,
    live: false,
    log,
  });
  for (let i = 0; i < ids.length; i += 16) {
    const results = await Promise.all(
      ids.slice(i, i + 16).map((id) => handle(CheckoutApprovalAccepted.parse(approval(id)), ctx())),
    );
    for (const r of results) expect(r).toEqual({ action: 'ack' });
  }
}

interface FakeLhv extends LhvClient {
  readonly sent: { key: string; endToEndIds: string[] }[];
  readonly deleted: string[];
}

function fakeLhv(answer: (n: number) => Promise<{ messageRequestId: string }>): FakeLhv {
  const sent: { key: string; endToEndIds: string[] }[] = [];
  const deleted: string[] = [];
  return {
    sent,
    deleted,
    heartbeat: async () => undefined,
    heartbeatMq: async () => ({ messageRequestId: 'hb' }),
    async initiatePayment(xml, key) {
      sent.push({ key, endToEndIds: [...xml.matchAll(/<EndToEndId>([^<]+)<\/EndToEndId>/g)].map((m) => m[1]!) });
      return answer(sent.length);
    },
    nextMessage: async () => undefined,
    async deleteMessage(id) {
      deleted.push(id);
      return { deleted: true };
    },
    close: async () => undefined,
  };
}

function initiator(lhv: LhvClient, batches?: BatchStore) {
  const p = parts();
  return createInitiator({ lhv, repo: p.repo, batches: batches ?? p.batches, metrics, log, debtor: DEBTOR, settings: SETTINGS });
}

function poller(lhv: LhvClient) {
  const p = parts();
  const keeper = createShardKeeper({
    store: createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') }),
    leaseMs: 20_000,
    renewMs: 5_000,
    allowTight: false,
    log,
  });
  return createResponsePoller({ lhv, ...p, keeper, ownerId: 'test', metrics, log, pollMs: 50, leaseBackoffMs: 100 });
}

function report(
  batch: Batch,
  status: (paymentId: string) => string,
  extra: Partial<Parameters<typeof buildPain002>[0]> = {},
): LhvMessage {
  return {
    messageRequestId: 'REQ-report',
    messageResponseId: `RES-${Math.random().toString(16).slice(2)}`,
    responseType: 'PAYMENT',
    contentType: 'application/xml',
    body: buildPain002({
      msgId: 'r1',
      originalMsgId: batch.batchId,
      groupStatus: 'ACSC',
      transactions: batch.paymentIds.map((id) => ({
        endToEndId: toEndToEndId(id),
        instrId: undefined,
        status: status(id),
        ...(status(id) === 'RJCT' ? { reasonCode: 'AC04', reasonText: 'Closed account' } : {}),
      })),
      ...extra,
    }),
  };
}

const eventTypes = async (id: string) => (await readEvents(stack, id)).map((e) => e.eventType);

describe('Initiator: LHV refusing a request', () => {
  it('a 400 on a first, unambiguous attempt rejects the batch and its payouts (PAYOUT_FAILED with the reason)', async () => {
    const slot = await holdShard('payout-shard#101');
    await ingest(slot, ['r400-1', 'r400-2']);
    const lhv = fakeLhv(async () => {
      throw new LhvRequestRejectedError(400, 'errStatement_RequestInvalid: execution date in the past', 'payment');
    });
    await initiator(lhv).cycle(slot);
    expect(lhv.sent).toHaveLength(1);
    for (const id of ['r400-1', 'r400-2']) {
      const p = (await readPayout(stack, id))!;
      expect(p.status).toBe('REJECTED');
      expect(p.failure).toEqual({
        source: 'REQUEST_REJECTED',
        code: 'HTTP_400',
        reason: 'errStatement_RequestInvalid: execution date in the past',
      });
      expect(p.initiableShard).toBeUndefined();
      expect(await eventTypes(id)).toEqual(['PAYOUT_CREATED', 'PAYOUT_FAILED']);
    }
    expect((await readBatch(stack, lhv.sent[0]!.key))?.status).toBe('REJECTED');
  });

  it('a 400 after an attempt whose fate is unknown: UNCERTAIN, never resent nor rejected; the bank report settles it', async () => {
    const slot = await holdShard('payout-shard#102');
    await ingest(slot, ['unc-1', 'unc-2']);
    const lhv = fakeLhv(async (n) => {
      if (n === 1) throw new AmbiguousError('LHV_OUTCOME_UNKNOWN', 'timeout after the request was sent');
      throw new LhvRequestRejectedError(400, 'errStatement_RequestInvalid: duplicate', 'payment');
    });
    const init = initiator(lhv);
    await init.cycle(slot);
    await init.cycle(slot);
    expect(lhv.sent.map((s) => s.key)).toEqual([lhv.sent[0]!.key, lhv.sent[0]!.key]);
    const batch = (await readBatch(stack, lhv.sent[0]!.key))!;
    expect(batch.status).toBe('UNCERTAIN');
    expect((await readPayout(stack, 'unc-1'))?.status).toBe('INITIATION_PENDING');

    await poller(lhv).handle(
      report(batch, () => 'ACSC'),
      slot.fence,
    );
    expect((await readBatch(stack, batch.batchId))?.status).toBe('INITIATED');
    for (const id of ['unc-1', 'unc-2']) {
      expect((await readPayout(stack, id))?.status).toBe('PAID');
      expect(await eventTypes(id)).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED', 'PAYOUT_PAID']);
    }
  });
});

describe('Initiator: crash recovery', () => {
  it('a crash in the middle of pinning: the next cycle finishes the SAME batch (<= 100) and sends it once, with its key', async () => {
    const slot = await holdShard('payout-shard#103');
    const ids = Array.from({ length: 110 }, (_, i) => `pin-${String(i).padStart(3, '0')}`);
    await ingest(slot, ids);
    const p = parts();
    let commits = 0;
    // The first chunk (batch row + 98 payouts) commits, then the process "dies".
    const crashing = createBatchStore({
      outcomes: { commit: (req) => (++commits > 1 ? Promise.reject(new Error('process died')) : p.outcomes.commit(req)) },
      repo: p.repo,
      metrics,
      log,
    });
    const none = fakeLhv(async () => ({ messageRequestId: 'never' }));
    await expect(initiator(none, crashing).cycle(slot)).rejects.toThrow('process died');
    expect(none.sent).toHaveLength(0);
    const pinned = [...(await p.repo.getPayouts(ids)).values()].filter((x) => x.status === 'INITIATION_PENDING');
    expect(pinned).toHaveLength(98);
    const key = pinned[0]!.batchId!;
    expect((await readBatch(stack, key))?.status).toBe('ASSIGNING');

    const lhv = fakeLhv(async (n) => ({ messageRequestId: `REQ-${n}` }));
    const init = initiator(lhv);
    for (let i = 0; i < 4; i++) await init.cycle(slot);
    expect(lhv.sent.map((s) => s.endToEndIds.length)).toEqual([100, 10]);
    expect(lhv.sent[0]!.key).toBe(key);
    expect(new Set(lhv.sent.flatMap((s) => s.endToEndIds)).size).toBe(110);
    const after = await p.repo.getPayouts(ids);
    expect(ids.map((id) => after.get(id)?.status)).toEqual(ids.map(() => 'INITIATED'));
    expect(await eventTypes('pin-000')).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED']);
  });
});

describe('Response handling', () => {
  it('a report overtaking the 202: INITIATION_PENDING payouts walk INITIATED and become PAID/REJECTED; the batch is never sent again', async () => {
    const slot = await holdShard('payout-shard#104');
    await ingest(slot, ['over-1', 'over-2']);
    const { batches, repo } = parts();
    const rows = await repo.getPayouts(['over-1', 'over-2']);
    const now = new Date().toISOString();
    const draft: Batch = {
      batchId: 'a'.repeat(32),
      kind: 'BATCH',
      shard: slot.shard,
      status: 'ASSIGNING',
      paymentIds: ['over-1', 'over-2'],
      createdAt: now,
      requestedExecutionDate: now.slice(0, 10),
      sendAttempts: 1,
      updatedAt: now,
      version: 0,
    };
    const { batch } = await batches.pin(slot.fence, undefined, draft, [...rows.values()]);
    const lhv = fakeLhv(async () => ({ messageRequestId: 'REQ-late' }));
    const msg = report(batch, (id) => (id === 'over-1' ? 'ACSC' : 'RJCT'));
    expect(await poller(lhv).handle(msg, slot.fence)).toBe('applied');
    // Applying the same message again (a crash before DELETE) changes nothing.
    expect(await poller(lhv).handle(msg, slot.fence)).toBe('applied');
    expect(lhv.deleted).toEqual([msg.messageResponseId, msg.messageResponseId]);
    expect((await readPayout(stack, 'over-1'))?.status).toBe('PAID');
    expect(await eventTypes('over-1')).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED', 'PAYOUT_PAID']);
    const rejected = (await readPayout(stack, 'over-2'))!;
    expect(rejected.status).toBe('REJECTED');
    expect(rejected.failure).toMatchObject({ source: 'BANK_REPORT', code: 'AC04' });
    expect(await eventTypes('over-2')).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED', 'PAYOUT_FAILED']);
    expect(await readBatch(stack, batch.batchId)).toMatchObject({ status: 'INITIATED', messageRequestId: 'REQ-report' });
    await initiator(lhv).cycle(slot);
    expect(lhv.sent).toHaveLength(0);
  });

  it('a whole-request RJCT rejects every payout of the batch; a duplicate rejection (DU01) rejects none', async () => {
    const slot = await holdShard('payout-shard#105');
    await ingest(slot, ['grp-1', 'grp-2', 'du-1']);
    const { batches, repo } = parts();
    const now = new Date().toISOString();
    const mk = async (batchId: string, ids: string[]) =>
      (
        await batches.pin(
          slot.fence,
          undefined,
          {
            batchId,
            kind: 'BATCH',
            shard: slot.shard,
            status: 'ASSIGNING',
            paymentIds: ids,
            createdAt: now,
            requestedExecutionDate: now.slice(0, 10),
            sendAttempts: 1,
            updatedAt: now,
            version: 0,
          },
          [...(await repo.getPayouts(ids)).values()],
        )
      ).batch;
    const whole = await mk('b'.repeat(32), ['grp-1', 'grp-2']);
    const dup = await mk('c'.repeat(32), ['du-1']);
    const lhv = fakeLhv(async () => ({ messageRequestId: 'x' }));
    const rp = poller(lhv);
    await rp.handle(
      report(whole, () => 'RJCT', {
        groupStatus: 'RJCT',
        groupReasonCode: 'FF01',
        groupReasonText: 'Invalid file format',
        transactions: [],
      }),
      slot.fence,
    );
    for (const id of ['grp-1', 'grp-2'])
      expect((await readPayout(stack, id))?.failure).toMatchObject({ source: 'BANK_REPORT', code: 'FF01' });
    expect(
      await rp.handle(
        report(dup, () => 'RJCT', { groupStatus: 'RJCT', groupReasonCode: 'DU01', transactions: [] }),
        slot.fence,
      ),
    ).toBe('duplicate_rejection');
    expect((await readPayout(stack, 'du-1'))?.status).toBe('INITIATION_PENDING');
    expect((await readBatch(stack, dup.batchId))?.duplicateReports).toBe(1);
  });

  it('an unreadable or unknown message is parked (IBANs masked) and deleted, so it never blocks the queue', async () => {
    const slot = await holdShard('payout-shard#106');
    const lhv = fakeLhv(async () => ({ messageRequestId: 'x' }));
    const rp = poller(lhv);
    const garbage: LhvMessage = {
      messageRequestId: 'REQ-g',
      messageResponseId: 'RES-garbage',
      responseType: 'PAYMENT',
      contentType: 'text/plain',
      body: 'not xml EE382200221020145685',
    };
    expect(await rp.handle(garbage, slot.fence)).toBe('unreadable');
    const foreign = report({ batchId: 'f'.repeat(32), paymentIds: ['zz'] } as unknown as Batch, () => 'ACSC');
    expect(await rp.handle({ ...foreign, messageResponseId: 'RES-foreign' }, slot.fence)).toBe('unmatched');
    expect(lhv.deleted).toEqual(['RES-garbage', 'RES-foreign']);
    const row = async (id: string) =>
      (
        await stack.clients.doc.send(
          new GetCommand({ TableName: stack.names.table('batches'), Key: { batchId: unmatchedKey(id) }, ConsistentRead: true }),
        )
      ).Item;
    expect(await row('RES-garbage')).toMatchObject({
      kind: 'UNMATCHED_LHV_MESSAGE',
      reason: 'UNREADABLE',
      body: 'not xml ****5685',
    });
    expect(await row('RES-foreign')).toMatchObject({ kind: 'UNMATCHED_LHV_MESSAGE', reason: 'UNKNOWN_ORIGINAL_MSG_ID' });
  });
});
