/**
 * Initiation under the shard lease, in process on the embedded DynamoDB, with a scripted bank that
 * de-duplicates by idempotency key (as LHV does by MsgId):
 *   - a holder paused past its shard lease cannot commit a batch: nothing pinned, nothing sent; and a
 *     holder whose lease lapsed while its request was at the bank cannot commit the 202, the next
 *     holder resends the SAME key and the bank initiates each payment once;
 *   - a worker killed between storing the batch's key and the bank call (request never sent, or sent
 *     and the answer lost with the process) is resolved by the next holder with the stored key: one
 *     initiation per payment, never a second payment under a new key.
 */
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HandlerContext } from '../../shared/core/consumer.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { LeaseLostError } from '../../shared/core/errors.js';
import type { Lease } from '../../shared/core/ports.js';
import type { ShardSlot } from '../../shared/core/shard-pool.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createBatchStore } from '../../workers/payout/batches.js';
import type { PayoutSettings } from '../../workers/payout/config.js';
import { createIngestHandler } from '../../workers/payout/ingest.js';
import { createIngestStore } from '../../workers/payout/ingest-store.js';
import { createInitiator } from '../../workers/payout/initiator.js';
import type { LhvClient } from '../../workers/payout/lhv/client.js';
import { createPayoutMetrics } from '../../workers/payout/metrics.js';
import { createPayoutRepository } from '../../workers/payout/repo.js';
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
  sendAttempts: 2,
  retryBaseMs: 1,
  retryMaxMs: 5,
};

beforeAll(async () => {
  stack = await setupTestStack('pfence', { payoutShards: 4 });
});
afterAll(() => stack?.close());

/** A shard lease taken by `owner`. */
async function lease(shard: string, owner: string): Promise<Lease> {
  const store = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') });
  const got = await store.acquire(shard, owner, 30_000);
  if (!got.acquired) throw new Error(`${shard} is held`);
  return got.lease;
}

/** The holder of `shard` stops renewing (a GC pause, a frozen VM) and its lease runs out. */
async function lapse(shard: string): Promise<void> {
  await stack.clients.doc.send(
    new UpdateCommand({
      TableName: stack.names.table('leases'),
      Key: { leaseKey: shard },
      UpdateExpression: 'SET expiresAtMs = :past',
      ExpressionAttributeValues: { ':past': 1 },
    }),
  );
}

/** A slot whose fence is whatever `current()` says (a paused holder keeps its old lease). */
const slotOf = (shard: string, current: () => Lease): ShardSlot => ({
  shard,
  fence: { lease: current },
  stop: new AbortController().signal,
  abort: new AbortController().signal,
});

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
  const results = await Promise.all(ids.map((id) => handle(CheckoutApprovalAccepted.parse(approval(id)), ctx())));
  expect(results).toEqual(ids.map(() => ({ action: 'ack' })));
}

/**
 * The bank: requests it received, and initiations per EndToEndId counted once per idempotency key
 * (a repeated key is replayed, never initiated again). `behave(n)` scripts the n-th call of this client.
 */
const bank = { requests: [] as { key: string; endToEndIds: string[] }[], initiations: new Map<string, Set<string>>() };

function lhvClient(
  behave: (n: number, deliver: () => void) => Promise<{ messageRequestId: string }>,
): LhvClient & { calls: number } {
  const client = {
    calls: 0,
    heartbeat: async () => undefined,
    heartbeatMq: async () => ({ messageRequestId: 'hb' }),
    async initiatePayment(xml: string, key: string) {
      client.calls++;
      const deliver = () => {
        const endToEndIds = [...xml.matchAll(/<EndToEndId>([^<]+)<\/EndToEndId>/g)].map((m) => m[1]!);
        bank.requests.push({ key, endToEndIds });
        for (const id of endToEndIds) bank.initiations.set(id, (bank.initiations.get(id) ?? new Set()).add(key));
      };
      return behave(client.calls, deliver);
    },
    nextMessage: async () => undefined,
    deleteMessage: async () => ({ deleted: true }),
    close: async () => undefined,
  };
  return client;
}

const accept = async (_n: number, deliver: () => void) => {
  deliver();
  return { messageRequestId: 'REQ-ok' };
};

function initiator(lhv: LhvClient) {
  const outcomes = createDynamoOutcomeStore({ doc: stack.clients.doc, names: stack.names });
  const repo = createPayoutRepository(stack.clients.doc, stack.names);
  return createInitiator({
    lhv,
    repo,
    batches: createBatchStore({ outcomes, repo, metrics, log }),
    metrics,
    log,
    debtor: DEBTOR,
    settings: SETTINGS,
  });
}

const keysSentFor = (ids: readonly string[]) =>
  new Set(bank.requests.filter((r) => ids.some((id) => r.endToEndIds.includes(id))).map((r) => r.key));

describe('Initiation is fenced by the shard lease', () => {
  it('a holder paused past its shard lease cannot commit a batch: nothing pinned, nothing sent; the new holder sends it once', async () => {
    const shard = 'payout-shard#000';
    const ids = ['pf-1', 'pf-2', 'pf-3'];
    const stale = await lease(shard, 'worker-A');
    await ingest(
      slotOf(shard, () => stale),
      ids,
    );
    // A pauses; its lease lapses and B takes the shard (token + 1).
    await lapse(shard);
    const fresh = await lease(shard, 'worker-B');
    expect(fresh.fencingToken).toBe(stale.fencingToken + 1);
    const lhvA = lhvClient(accept);
    await expect(initiator(lhvA).cycle(slotOf(shard, () => stale))).rejects.toBeInstanceOf(LeaseLostError);
    expect(lhvA.calls).toBe(0);
    for (const id of ids) expect(await readPayout(stack, id)).toMatchObject({ status: 'RECEIVED' });

    await initiator(lhvClient(accept)).cycle(slotOf(shard, () => fresh));
    for (const id of ids) expect((await readPayout(stack, id))?.status).toBe('INITIATED');
    expect(keysSentFor(ids).size).toBe(1);
  });

  it('a holder whose lease lapsed while the bank had its request cannot commit the 202; the next holder resends the SAME key and the bank initiates each payment once', async () => {
    const shard = 'payout-shard#001';
    const ids = ['pl-1', 'pl-2'];
    const a = await lease(shard, 'worker-A');
    await ingest(
      slotOf(shard, () => a),
      ids,
    );
    // While A's request is at the bank, A's lease lapses and B takes the shard.
    let b: Lease | undefined;
    const slow = lhvClient(async (_n, deliver) => {
      deliver();
      await lapse(shard);
      b = await lease(shard, 'worker-B');
      return { messageRequestId: 'REQ-A' };
    });
    await expect(initiator(slow).cycle(slotOf(shard, () => a))).rejects.toBeInstanceOf(LeaseLostError);
    const key = [...keysSentFor(ids)][0]!;
    expect((await readBatch(stack, key))?.status).toBe('PENDING');
    for (const id of ids) expect((await readPayout(stack, id))?.status).toBe('INITIATION_PENDING');

    await initiator(lhvClient(accept)).cycle(slotOf(shard, () => b!));
    expect(bank.requests.filter((r) => r.key === key)).toHaveLength(2);
    expect(keysSentFor(ids)).toEqual(new Set([key]));
    for (const id of ids) {
      expect(bank.initiations.get(id)).toEqual(new Set([key]));
      expect((await readPayout(stack, id))?.status).toBe('INITIATED');
      expect((await readEvents(stack, id)).map((e) => e.eventType)).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED']);
    }
  });
});

describe('A worker killed between storing the key and the bank call', () => {
  for (const [name, reached] of [
    ['before the request left: the next holder sends the stored key, once', false],
    [
      'after the bank took the request, answer lost with the process: the next holder resends the stored key; one initiation',
      true,
    ],
  ] as const) {
    it(name, async () => {
      const shard = reached ? 'payout-shard#003' : 'payout-shard#002';
      const ids = reached ? ['kr-1', 'kr-2'] : ['kn-1', 'kn-2'];
      const a = await lease(shard, 'worker-A');
      await ingest(
        slotOf(shard, () => a),
        ids,
      );
      // The process dies at the bank call: the key and the first send are stored, the answer never comes back.
      const dying = lhvClient(async (_n, deliver) => {
        if (reached) deliver();
        throw new Error('SIGKILL');
      });
      await expect(initiator(dying).cycle(slotOf(shard, () => a))).rejects.toThrow('SIGKILL');
      const pinned = (await readPayout(stack, ids[0]!))!;
      expect(pinned.status).toBe('INITIATION_PENDING');
      const stored = (await readBatch(stack, pinned.batchId!))!;
      expect(stored).toMatchObject({ status: 'PENDING', sendAttempts: 1 });
      expect([...stored.paymentIds].sort()).toEqual(ids);
      expect(bank.requests.filter((r) => r.key === stored.batchId)).toHaveLength(reached ? 1 : 0);

      // A's lease lapses; B takes the shard and resolves the batch from its row.
      await lapse(shard);
      const b = await lease(shard, 'worker-B');
      const next = initiator(lhvClient(accept));
      await next.cycle(slotOf(shard, () => b));
      expect(keysSentFor(ids)).toEqual(new Set([stored.batchId]));
      expect(await readBatch(stack, stored.batchId)).toMatchObject({ status: 'INITIATED', sendAttempts: 2 });
      for (const id of ids) {
        expect(bank.initiations.get(id)).toEqual(new Set([stored.batchId]));
        expect((await readPayout(stack, id))?.status).toBe('INITIATED');
        expect((await readEvents(stack, id)).map((e) => e.eventType)).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED']);
      }
      // Nothing is left to send.
      await next.cycle(slotOf(shard, () => b));
      expect(keysSentFor(ids)).toEqual(new Set([stored.batchId]));
    });
  }
});
