/**
 * Reads of the payout tables (writes go through OutcomeStore.commit, fenced). The adapter speaks
 * the SDK; callers get domain rows.
 *
 *   payouts  PK paymentId                one row per paymentId, ever (the row is its own claim)
 *     GSI initiable (initiableShard, receivedAt)   sparse: only RECEIVED / INITIATION_PENDING rows,
 *                                                  ALL projected: a shard's waiting payouts, oldest first
 *   batches  PK batchId                  BATCH rows (batchId = MsgId = idempotency key),
 *                                        UNMATCHED_LHV_MESSAGE rows
 *
 * GSIs are eventually consistent: what the initiator finds through `initiable` may be stale, so every
 * write it bases on an index row is conditioned on the version that row showed (a stale row fails the
 * condition and is re-read consistently; docs/payouts.md §6).
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
import type { Batch, Payout } from './model.js';
import { sleep } from '../../shared/core/timers.js';

export interface PayoutRepository {
  /** Consistent read of one payout. */
  getPayout(paymentId: string): Promise<Payout | undefined>;
  /** Consistent reads of many payouts (missing ones are absent from the map). */
  getPayouts(paymentIds: readonly string[]): Promise<Map<string, Payout>>;
  /** Payouts of `shard` waiting for initiation, oldest first, as the index shows them (may be stale). */
  listInitiable(shard: string, limit: number): Promise<{ items: Payout[]; more: boolean }>;
  getBatch(batchId: string): Promise<Batch | undefined>;
  /** The payout of a paymentId (the CLI): a consistent read by key. */
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
    async getPayout(paymentId) {
      const item = await getItem(payouts, { paymentId });
      return item?.kind === 'PAYOUT' ? (item as Payout) : undefined;
    },

    async getPayouts(paymentIds) {
      const found = new Map<string, Payout>();
      const unique = [...new Set(paymentIds)];
      for (let i = 0; i < unique.length; i += 100) {
        let keys: Record<string, unknown>[] | undefined = unique.slice(i, i + 100).map((paymentId) => ({ paymentId }));
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
      const items: Payout[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const out = await doc.send(
          new QueryCommand({
            TableName: payouts,
            IndexName: 'initiable',
            KeyConditionExpression: 'initiableShard = :s',
            ExpressionAttributeValues: { ':s': shard },
            ScanIndexForward: true,
            Limit: Math.min(1000, limit - items.length),
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        );
        for (const item of out.Items ?? []) if (item.kind === 'PAYOUT') items.push(item as Payout);
        start = out.LastEvaluatedKey;
      } while (start && items.length < limit);
      return { items, more: start !== undefined };
    },

    async getBatch(batchId) {
      const item = await getItem(batches, { batchId });
      return item?.kind === 'BATCH' ? (item as Batch) : undefined;
    },

    findPayout(paymentId) {
      return repo.getPayout(paymentId);
    },
  };
  return repo;
}
