/**
 * Reads of the payout tables (writes go through OutcomeStore.commit, fenced). The adapter speaks
 * the SDK; callers get domain rows.
 *
 *   payouts  PK shard, SK paymentId      one partition per shard: a shard's payouts live together
 *     GSI initiable (initiableShard, receivedAt)   sparse: only RECEIVED / INITIATION_PENDING rows
 *     GSI by-payment (paymentId)                   operators and the CLI
 *   batches  PK batchId                  BATCH rows (batchId = MsgId = idempotency key),
 *                                        PAYMENT_CLAIM rows (`payment#<id>`), UNMATCHED_LHV_MESSAGE rows
 *
 * GSIs are eventually consistent: whatever the initiator finds through `initiable` is re-read with a
 * consistent BatchGetItem before it acts on it, and its writes are conditioned on the version read.
 */
import {
  BatchGetCommand,
  type GetCommandOutput,
  GetCommand,
  QueryCommand,
  type BatchGetCommandOutput,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { ResourceNames } from '../../shared/resources.js';
import { claimKey, type Batch, type PaymentClaim, type Payout } from './model.js';
import { sleep } from '../../shared/core/timers.js';

export interface PayoutRepository {
  getPayout(shard: string, paymentId: string): Promise<Payout | undefined>;
  /** Consistent reads of many payouts of one shard (missing ones are absent from the map). */
  getPayouts(shard: string, paymentIds: readonly string[]): Promise<Map<string, Payout>>;
  /** Payouts of `shard` waiting for initiation, oldest first (eventually consistent). */
  listInitiable(shard: string, limit: number): Promise<{ items: { paymentId: string; receivedAt: string }[]; more: boolean }>;
  getBatch(batchId: string): Promise<Batch | undefined>;
  getClaim(paymentId: string): Promise<PaymentClaim | undefined>;
  /** Where a payout lives: its claim row, else the by-payment index. */
  findPayout(paymentId: string): Promise<Payout | undefined>;
}

export function createPayoutRepository(doc: DynamoDBDocumentClient, names: ResourceNames): PayoutRepository {
  const payouts = names.table('payouts');
  const batches = names.table('batches');

  /** A row as the document client returns it (attribute values untyped until its `kind` is checked). */
  async function getItem(table: string, key: Record<string, string>): Promise<GetCommandOutput['Item']> {
    const out = await doc.send(new GetCommand({ TableName: table, Key: key, ConsistentRead: true }));
    return out.Item;
  }

  const repo: PayoutRepository = {
    async getPayout(shard, paymentId) {
      const item = await getItem(payouts, { shard, paymentId });
      return item?.kind === 'PAYOUT' ? (item as Payout) : undefined;
    },

    async getPayouts(shard, paymentIds) {
      const found = new Map<string, Payout>();
      const unique = [...new Set(paymentIds)];
      for (let i = 0; i < unique.length; i += 100) {
        let keys: Record<string, unknown>[] | undefined = unique.slice(i, i + 100).map((paymentId) => ({ shard, paymentId }));
        for (let round = 0; keys && keys.length > 0; round++) {
          if (round > 0) await sleep(Math.min(1000, 50 * 2 ** round));
          const out: BatchGetCommandOutput = await doc.send(
            new BatchGetCommand({ RequestItems: { [payouts]: { Keys: keys, ConsistentRead: true } } }),
          );
          for (const item of out.Responses?.[payouts] ?? []) {
            if (item.kind === 'PAYOUT') found.set(String(item.paymentId), item as Payout);
          }
          keys = out.UnprocessedKeys?.[payouts]?.Keys;
          if (round > 20) throw new Error(`BatchGetItem on ${payouts} kept returning unprocessed keys`);
        }
      }
      return found;
    },

    async listInitiable(shard, limit) {
      const items: { paymentId: string; receivedAt: string }[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const out = await doc.send(
          new QueryCommand({
            TableName: payouts,
            IndexName: 'initiable',
            KeyConditionExpression: 'initiableShard = :s',
            ExpressionAttributeValues: { ':s': shard },
            ProjectionExpression: 'paymentId, receivedAt',
            ScanIndexForward: true,
            Limit: Math.min(1000, limit - items.length),
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        );
        for (const item of out.Items ?? [])
          items.push({ paymentId: String(item.paymentId), receivedAt: String(item.receivedAt) });
        start = out.LastEvaluatedKey;
      } while (start && items.length < limit);
      return { items, more: start !== undefined };
    },

    async getBatch(batchId) {
      const item = await getItem(batches, { batchId });
      return item?.kind === 'BATCH' ? (item as Batch) : undefined;
    },

    async getClaim(paymentId) {
      const item = await getItem(batches, { batchId: claimKey(paymentId) });
      return item?.kind === 'PAYMENT_CLAIM' ? (item as PaymentClaim) : undefined;
    },

    async findPayout(paymentId) {
      const claim = await repo.getClaim(paymentId);
      if (claim) return repo.getPayout(claim.shard, paymentId);
      const out = await doc.send(
        new QueryCommand({
          TableName: payouts,
          IndexName: 'by-payment',
          KeyConditionExpression: 'paymentId = :p',
          ExpressionAttributeValues: { ':p': paymentId },
        }),
      );
      const hit = (out.Items ?? []).find((i) => i.kind === 'PAYOUT');
      return hit ? repo.getPayout(String(hit.shard), paymentId) : undefined;
    },
  };
  return repo;
}
