/**
 * The ingestion write: the payouts of several CheckoutApprovalAccepted events stored in ONE
 * TransactWriteItems, fenced by the lease of the shard they are stored under (docs/payouts.md §5).
 *
 *   [0]      ConditionCheck leases[payout-shard#NNN]   owner = me AND token = t AND expiresAtMs > now
 *   [1..n]   Put payouts[paymentId]                    RECEIVED, initiable;  if attribute_not_exists(paymentId)
 *   [n+1..]  Put events[paymentId, 1]                  PAYOUT_CREATED;       if attribute_not_exists(resourceId)
 *
 * At most 49 payouts per transaction (1 + 2 × 49 = 99 items: DynamoDB allows 100). The payout row is
 * its own claim: keyed by paymentId, created only if absent, so a duplicate delivered to any worker
 * under any shard finds the first row. A cancelled transaction applied nothing; its reasons say, per
 * item, which payouts already existed (ALL_OLD gives the stored row, so no second read): those are
 * answered as duplicates and the rest are written again in a new transaction. A refused fence is
 * LeaseLostError (the shard went away: the caller tries another shard).
 *
 * A lost answer: the SDK resends the identical request with the same ClientRequestToken, which
 * DynamoDB applies at most once. If every try fails without an answer, the events are handed back
 * to SQS; their redelivery finds the rows with the same eventId and is acknowledged.
 */
import { TransactWriteCommand, type DynamoDBDocumentClient, type TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { systemClock, type Clock } from '../../shared/core/clock.js';
import { leaseFenceCheck, toHolder, unmarshallRaw } from '../../shared/core/dynamo-leases.js';
import { LeaseLostError } from '../../shared/core/errors.js';
import { createOutbox, DEFAULT_LEDGER_SHARDS } from '../../shared/core/outbox.js';
import type { Lease } from '../../shared/core/ports.js';
import { RetryableError } from '../../shared/errors.js';
import type { ResourceNames } from '../../shared/resources.js';
import { createdDetails, PAYOUT_EVENT, type Payout } from './model.js';

/** Payouts per transaction: the fence + a row and an event each stay within DynamoDB's 100 items. */
export const MAX_PAYOUTS_PER_INGEST = 49;

/** What became of one payout of the transaction. */
export type IngestOutcome =
  | { readonly stored: true }
  /** A payout with this paymentId existed already: the stored row. */
  | { readonly stored: false; readonly existing: Payout };

export interface IngestStore {
  /**
   * Store `payouts` (all under `lease`'s shard, distinct paymentIds) in as few transactions as
   * duplicates allow: usually one. Resolves with one outcome per payout, in order.
   */
  store(lease: Lease, payouts: readonly Payout[]): Promise<IngestOutcome[]>;
}

export function createIngestStore(options: {
  readonly doc: DynamoDBDocumentClient;
  readonly names: ResourceNames;
  readonly ledgerShards?: number;
  readonly now?: Clock;
}): IngestStore {
  const { doc, names } = options;
  const now = options.now ?? systemClock;
  const outbox = createOutbox({ ledgerShards: options.ledgerShards ?? DEFAULT_LEDGER_SHARDS, now });
  const payoutsTable = names.table('payouts');
  const eventsTable = names.table('events');
  const leasesTable = names.table('leases');

  function build(lease: Lease, payouts: readonly Payout[]): TransactWriteCommandInput {
    const rows: NonNullable<TransactWriteCommandInput['TransactItems']> = [];
    const events: NonNullable<TransactWriteCommandInput['TransactItems']> = [];
    for (const p of payouts) {
      const [created] = outbox.build({ type: 'payout', id: p.paymentId, live: p.live }, 0, [
        { eventType: PAYOUT_EVENT.created, details: createdDetails(p) },
      ]);
      rows.push({
        Put: {
          TableName: payoutsTable,
          Item: { ...p, version: 1, eventSeq: 1 },
          ConditionExpression: 'attribute_not_exists(paymentId)',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        },
      });
      events.push({
        Put: {
          TableName: eventsTable,
          Item: { ...created },
          ConditionExpression: 'attribute_not_exists(resourceId)',
        },
      });
    }
    return { TransactItems: [leaseFenceCheck(leasesTable, lease, now()), ...rows, ...events] };
  }

  return {
    async store(lease, payouts) {
      if (payouts.length > MAX_PAYOUTS_PER_INGEST)
        throw new RangeError(`at most ${MAX_PAYOUTS_PER_INGEST} payouts per ingestion, got ${payouts.length}`);
      const outcomes = new Map<string, IngestOutcome>();
      let left = [...payouts];
      // Each round either commits or removes at least one payout (a duplicate): it ends.
      for (let round = 0; left.length > 0; round++) {
        try {
          await doc.send(new TransactWriteCommand(build(lease, left)));
          for (const p of left) outcomes.set(p.paymentId, { stored: true });
          left = [];
        } catch (err) {
          if ((err as { name?: unknown }).name !== 'TransactionCanceledException') throw err;
          const reasons = ((err as { CancellationReasons?: unknown }).CancellationReasons ?? []) as {
            Code?: string;
            Item?: object;
          }[];
          const fence = reasons[0];
          if (fence?.Code === 'ConditionalCheckFailed') {
            throw new LeaseLostError(lease, fence.Item ? toHolder(unmarshallRaw(fence.Item)) : undefined, { cause: err });
          }
          const duplicates = new Set<string>();
          left.forEach((p, i) => {
            const r = reasons[1 + i];
            if (r?.Code === 'ConditionalCheckFailed' && r.Item) {
              outcomes.set(p.paymentId, { stored: false, existing: unmarshallRaw(r.Item) as unknown as Payout });
              duplicates.add(p.paymentId);
            }
          });
          if (duplicates.size === 0) {
            // A conflict with a concurrent transaction, a throttled item, or an event row without
            // its payout (never written so): nothing applied; the events go back to SQS and retry.
            const codes = [...new Set(reasons.map((r) => r.Code ?? 'None').filter((c) => c !== 'None'))];
            throw new RetryableError('PAYOUT_INGEST_CANCELLED', `ingestion transaction cancelled (${codes.join(', ')})`, {
              cause: err,
            });
          }
          left = left.filter((p) => !duplicates.has(p.paymentId));
          if (round > MAX_PAYOUTS_PER_INGEST) throw new Error('ingestion did not converge');
        }
      }
      return payouts.map((p) => outcomes.get(p.paymentId)!);
    },
  };
}
