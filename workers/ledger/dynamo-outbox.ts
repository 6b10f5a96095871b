/**
 * DynamoDB adapters of the ledger ports: the outbox (events table + its sparse `pending` index)
 * and the emitters' membership row (in the leases table).
 *
 * Emission state on an events row (PK resourceId, SK sequence):
 *
 *   written by the commit   pendingShard, pendingKey                      -> in the `pending` index
 *   send failed             + sendFailures (ADD), lastSendError, lastSendFailedAt, doNotRetryUntil
 *   sent                    the row as read, without pendingShard, pendingKey, doNotRetryUntil,
 *                           with emittedAt: PutRequests in one BatchWriteItem per 25 events
 *
 * Why a whole-row Put and not an UpdateItem per event: BatchWriteItem takes only Put and Delete,
 * and it turns 1 call per event into 1 per 25 (same write units: the row and its index entry).
 * A Put is unconditional, which is safe here because everything it writes is already fixed:
 * the event's fields never change after the commit (the row is created once, under
 * attribute_not_exists, and never deleted), and "emitted" is a fact that only ever becomes true.
 * So a Put built from an older read of the row (the index lags; a paused holder resumes late)
 * can only lose emission bookkeeping of an event that is in the queue anyway (a failure count,
 * a back-off, the shard a sweeper re-homed it to). It can never put a row back into the index,
 * create a row, or touch another event: each PutRequest carries exactly one event SQS accepted
 * from this process. Rows this adapter did not read (no snapshot) fall back to a conditional
 * UpdateItem each.
 *
 * Marks are not fenced by the shard lease on purpose: a mark only ever records a fact (SQS
 * accepted the event), which stays true whoever writes it, so a holder whose lease lapsed while
 * its send was in flight may still write it and save the next holder a duplicate.
 */
import {
  BatchWriteCommand,
  QueryCommand,
  ScanCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { isConditionFailure } from '../../shared/core/dynamo-leases.js';
import { sleep } from '../../shared/core/timers.js';
import { fromEventItem } from '../../shared/core/outbox.js';
import type { ResourceNames } from '../../shared/resources.js';
import { createDynamoMembership as createCoreMembership } from '../../shared/core/membership.js';
import type { LedgerOutbox, Membership, OutboxEvent, PendingPage } from './ports.js';

/** Name of the `pending` GSI of the events table (shared/resources.ts). */
export const PENDING_INDEX = 'pending';
/** Row of the leases table that lists live ledger emitters. */
export const MEMBERS_KEY = 'ledger-members';
/** DynamoDB's limit on requests per BatchWriteItem. */
export const MAX_BATCH_WRITE = 25;
/** Attributes that keep a row in the `pending` index or hold its send back; dropped when emitted. */
const PENDING_ATTRIBUTES = ['pendingShard', 'pendingKey', 'doNotRetryUntil'] as const;
/** Resends of a BatchWriteItem's UnprocessedItems (throttling) before giving up on them. */
const UNPROCESSED_RETRIES = 4;

/** The row as it is once emitted: the read row without its pending attributes, with emittedAt. */
export function emittedRow(row: Record<string, unknown>, emittedAt: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...row };
  for (const a of PENDING_ATTRIBUTES) delete out[a];
  if (typeof out.emittedAt !== 'string') out.emittedAt = emittedAt;
  return out;
}

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
  /** Each event handed out, with the row it was read from (what its mark rewrites). */
  const snapshots = new WeakMap<OutboxEvent, Record<string, unknown>>();
  const read = (item: Record<string, unknown>): OutboxEvent => {
    const e = toOutboxEvent(item);
    snapshots.set(e, item);
    return e;
  };

  /** One BatchWriteItem of Puts (<= 25, distinct keys), resending what DynamoDB left unprocessed. */
  async function putRows(rows: readonly Record<string, unknown>[]): Promise<Set<string>> {
    const id = (r: Record<string, unknown>) => `${String(r.resourceId)}#${String(r.sequence)}`;
    let left = rows.map((Item) => ({ PutRequest: { Item } }));
    for (let attempt = 0; left.length > 0 && attempt <= UNPROCESSED_RETRIES; attempt++) {
      if (attempt > 0) await sleep(25 * 2 ** attempt);
      const out = await doc.send(new BatchWriteCommand({ RequestItems: { [table]: left } }));
      left = (out.UnprocessedItems?.[table] ?? []).flatMap((r) =>
        r.PutRequest?.Item ? [{ PutRequest: { Item: r.PutRequest.Item as Record<string, unknown> } }] : [],
      );
    }
    const unprocessed = new Set(left.map((r) => id(r.PutRequest.Item)));
    return new Set(rows.map(id).filter((k) => !unprocessed.has(k)));
  }

  /**
   * Update an event row only while it is still pending. Returns the updated attributes asked for,
   * or undefined when the event is no longer pending (marked emitted meanwhile: nothing to do).
   */
  async function updatePending(
    event: Pick<OutboxEvent, 'resourceId' | 'sequence'>,
    UpdateExpression: string,
    ExpressionAttributeValues: Record<string, unknown>,
    ReturnValues?: 'UPDATED_NEW',
  ): Promise<Record<string, unknown> | undefined> {
    try {
      const out = await doc.send(
        new UpdateCommand({
          TableName: table,
          Key: key(event),
          ConditionExpression: 'attribute_exists(pendingShard)',
          UpdateExpression,
          ExpressionAttributeValues,
          ...(ReturnValues ? { ReturnValues } : {}),
        }),
      );
      return out.Attributes ?? {};
    } catch (err) {
      if (isConditionFailure(err)) return undefined;
      throw err;
    }
  }

  async function markOne(event: OutboxEvent, emittedAt: string): Promise<void> {
    // Already marked: the fact is recorded.
    await updatePending(event, 'SET emittedAt = :at REMOVE pendingShard, pendingKey, doNotRetryUntil', { ':at': emittedAt });
  }

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
      return { events: items.map(read), truncated };
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
      return items.map(read);
    },

    async resourceEvents(resourceId) {
      const { items } = await queryAll({
        TableName: table,
        KeyConditionExpression: 'resourceId = :r',
        ExpressionAttributeValues: { ':r': resourceId },
        ConsistentRead: true,
        ScanIndexForward: true,
      });
      return items.map(read);
    },

    async markEmitted(events, emittedAt) {
      const byKey = new Map<string, OutboxEvent>();
      for (const e of events) byKey.set(`${e.resourceId}#${e.sequence}`, e);
      const batched: Record<string, unknown>[] = [];
      const single: OutboxEvent[] = [];
      for (const e of byKey.values()) {
        const row = snapshots.get(e);
        if (row) batched.push(emittedRow(row, emittedAt));
        else single.push(e);
      }
      const done = new Set<string>();
      for (let i = 0; i < batched.length; i += MAX_BATCH_WRITE) {
        for (const k of await putRows(batched.slice(i, i + MAX_BATCH_WRITE))) done.add(k);
      }
      for (const e of single) {
        await markOne(e, emittedAt);
        done.add(`${e.resourceId}#${e.sequence}`);
      }
      return [...byKey].filter(([k]) => done.has(k)).map(([, e]) => e.eventId);
    },

    async recordSendFailure(event, failure, doNotRetryUntil) {
      const updated = await updatePending(
        event,
        'SET lastSendError = :err, lastSendFailedAt = :now, doNotRetryUntil = :until ADD sendFailures :one',
        {
          ':err': `${failure.code}: ${failure.message}`.slice(0, 500),
          ':now': new Date().toISOString(),
          ':until': doNotRetryUntil,
          ':one': 1,
        },
        'UPDATED_NEW',
      );
      // Marked emitted meanwhile (another holder's send went through): nothing to count.
      return Number(updated?.sendFailures ?? 0);
    },

    async setDoNotRetryUntil(event, doNotRetryUntil) {
      await updatePending(event, 'SET doNotRetryUntil = :until', { ':until': doNotRetryUntil });
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
      return items.slice(0, limit).map(read);
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
export function createDynamoMembership(options: {
  doc: DynamoDBDocumentClient;
  names: ResourceNames;
  now?: () => number;
}): Membership {
  return createCoreMembership({
    doc: options.doc,
    tableName: options.names.table('leases'),
    rowKey: MEMBERS_KEY,
    maxStaleRemovals: 3,
    ...(options.now ? { now: options.now } : {}),
  });
}
