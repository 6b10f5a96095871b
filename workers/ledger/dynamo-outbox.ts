/**
 * DynamoDB adapters of the ledger ports: the outbox (events table + its sparse `pending` index)
 * and the emitters' membership row (in the leases table).
 *
 * Emission state on an events row (PK resourceId, SK sequence):
 *
 *   written by the commit   pendingShard, pendingKey                      -> in the `pending` index
 *   send failed             + sendFailures (ADD), lastSendError, lastSendFailedAt, doNotRetryUntil
 *   sent and marked         REMOVE pendingShard, pendingKey, doNotRetryUntil; SET emittedAt
 *                           (conditioned on attribute_exists(pendingShard): marking twice is a no-op)
 *
 * Marks are not fenced by the shard lease on purpose: a mark only ever records a fact (SQS
 * accepted the event), which stays true whoever writes it, so a holder whose lease lapsed while
 * its send was in flight may still write it and save the next holder a duplicate.
 */
import {
  QueryCommand,
  ScanCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { isConditionFailure } from '../../shared/core/dynamo-leases.js';
import { fromEventItem } from '../../shared/core/outbox.js';
import type { ResourceNames } from '../../shared/resources.js';
import { createDynamoMembership as createCoreMembership } from '../../shared/core/membership.js';
import type { LedgerOutbox, Membership, OutboxEvent, PendingPage } from './ports.js';

/** Name of the `pending` GSI of the events table (shared/resources.ts). */
export const PENDING_INDEX = 'pending';
/** Row of the leases table that lists live ledger emitters. */
export const MEMBERS_KEY = 'ledger-members';

/** An events-table item as an {@link OutboxEvent}. */
export function toOutboxEvent(item: Record<string, unknown>): OutboxEvent {
  const stored = fromEventItem(item);
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const pendingKey = str(item.pendingKey);
  const doNotRetryUntil = str(item.doNotRetryUntil);
  const lastSendError = str(item.lastSendError);
  return {
    ...stored,
    sendFailures: typeof item.sendFailures === 'number' ? item.sendFailures : 0,
    ...(pendingKey !== undefined ? { pendingKey } : {}),
    ...(doNotRetryUntil !== undefined ? { doNotRetryUntil } : {}),
    ...(lastSendError !== undefined ? { lastSendError } : {}),
  };
}

export function createDynamoLedgerOutbox(options: { doc: DynamoDBDocumentClient; names: ResourceNames }): LedgerOutbox {
  const { doc } = options;
  const table = options.names.table('events');
  const key = (e: { resourceId: string; sequence: number }) => ({ resourceId: e.resourceId, sequence: e.sequence });

  async function queryAll(
    input: QueryCommandInput,
    limit = Number.POSITIVE_INFINITY,
  ): Promise<{ items: Record<string, unknown>[]; truncated: boolean }> {
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    for (;;) {
      const want = limit - items.length;
      const out = await doc.send(
        new QueryCommand({
          ...input,
          ...(Number.isFinite(want) ? { Limit: Math.min(want, 1000) } : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      items.push(...((out.Items ?? []) as Record<string, unknown>[]));
      start = out.LastEvaluatedKey;
      if (!start) return { items, truncated: false };
      if (items.length >= limit) return { items, truncated: true };
    }
  }

  return {
    async pendingInShard(shard, limit, afterKey): Promise<PendingPage> {
      const { items, truncated } = await queryAll(
        {
          TableName: table,
          IndexName: PENDING_INDEX,
          KeyConditionExpression: afterKey === undefined ? 'pendingShard = :s' : 'pendingShard = :s AND pendingKey > :after',
          ExpressionAttributeValues: { ':s': shard, ...(afterKey === undefined ? {} : { ':after': afterKey }) },
          ScanIndexForward: true,
        },
        limit,
      );
      return { events: items.map(toOutboxEvent), truncated };
    },

    async resourceEventsBelow(resourceId, below) {
      const { items } = await queryAll({
        TableName: table,
        KeyConditionExpression: 'resourceId = :r AND #seq < :below',
        ExpressionAttributeNames: { '#seq': 'sequence' },
        ExpressionAttributeValues: { ':r': resourceId, ':below': below },
        ConsistentRead: true,
        ScanIndexForward: true,
      });
      return items.map(toOutboxEvent);
    },

    async resourceEvents(resourceId) {
      const { items } = await queryAll({
        TableName: table,
        KeyConditionExpression: 'resourceId = :r',
        ExpressionAttributeValues: { ':r': resourceId },
        ConsistentRead: true,
        ScanIndexForward: true,
      });
      return items.map(toOutboxEvent);
    },

    async markEmitted(event, emittedAt) {
      try {
        await doc.send(
          new UpdateCommand({
            TableName: table,
            Key: key(event),
            ConditionExpression: 'attribute_exists(pendingShard)',
            UpdateExpression: 'SET emittedAt = :at REMOVE pendingShard, pendingKey, doNotRetryUntil',
            ExpressionAttributeValues: { ':at': emittedAt },
          }),
        );
        return true;
      } catch (err) {
        if (isConditionFailure(err)) return false;
        throw err;
      }
    },

    async recordSendFailure(event, failure, doNotRetryUntil) {
      try {
        const out = await doc.send(
          new UpdateCommand({
            TableName: table,
            Key: key(event),
            ConditionExpression: 'attribute_exists(pendingShard)',
            UpdateExpression: 'SET lastSendError = :err, lastSendFailedAt = :now, doNotRetryUntil = :until ADD sendFailures :one',
            ExpressionAttributeValues: {
              ':err': `${failure.code}: ${failure.message}`.slice(0, 500),
              ':now': new Date().toISOString(),
              ':until': doNotRetryUntil,
              ':one': 1,
            },
            ReturnValues: 'UPDATED_NEW',
          }),
        );
        return Number(out.Attributes?.sendFailures ?? 0);
      } catch (err) {
        // Marked emitted meanwhile (another holder's send went through): nothing to count.
        if (isConditionFailure(err)) return 0;
        throw err;
      }
    },

    async setDoNotRetryUntil(event, doNotRetryUntil) {
      try {
        await doc.send(
          new UpdateCommand({
            TableName: table,
            Key: key(event),
            ConditionExpression: 'attribute_exists(pendingShard)',
            UpdateExpression: 'SET doNotRetryUntil = :until',
            ExpressionAttributeValues: { ':until': doNotRetryUntil },
          }),
        );
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
    },

    async stalePending(cutoffTimestamp, limit) {
      // The index is sparse (only pending rows), so this scan reads the backlog, not the history.
      const items: Record<string, unknown>[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const out = await doc.send(
          new ScanCommand({
            TableName: table,
            IndexName: PENDING_INDEX,
            FilterExpression: 'pendingKey < :cutoff',
            ExpressionAttributeValues: { ':cutoff': cutoffTimestamp },
            Limit: 1000,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        );
        items.push(...((out.Items ?? []) as Record<string, unknown>[]));
        start = out.LastEvaluatedKey;
      } while (start && items.length < limit);
      return items.slice(0, limit).map(toOutboxEvent);
    },

    async rehome(event, fromShard, toShard) {
      try {
        await doc.send(
          new UpdateCommand({
            TableName: table,
            Key: key(event),
            ConditionExpression: 'pendingShard = :from',
            UpdateExpression: 'SET pendingShard = :to',
            ExpressionAttributeValues: { ':from': fromShard, ':to': toShard },
          }),
        );
        return true;
      } catch (err) {
        if (isConditionFailure(err)) return false;
        throw err;
      }
    },
  };
}

/** The ledger emitters' membership row (shared/core/membership.ts); at most 3 stale entries removed per heartbeat. */
export function createDynamoMembership(options: { doc: DynamoDBDocumentClient; names: ResourceNames; now?: () => number }): Membership {
  return createCoreMembership({
    doc: options.doc,
    tableName: options.names.table('leases'),
    rowKey: MEMBERS_KEY,
    maxStaleRemovals: 3,
    ...(options.now ? { now: options.now } : {}),
  });
}
