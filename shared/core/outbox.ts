/**
 * The outbox: ledger events as rows of the `events` table (PK resourceId, SK sequence), written in
 * the same transaction as the state change they describe (dynamo-outcomes.ts), and found by the
 * ledger emitter through the `pending` GSI (pendingShard, pendingKey) until it marks them emitted
 * (it rewrites the row without pendingShard/pendingKey, 25 rows per BatchWriteItem, which drops
 * them out of the sparse index). The marker lives on the event row, not in an item of its own, so
 * an event adds ONE item to the commit transaction (docs/design.md "What an event costs").
 * Because the mark rewrites the whole row from the emitter's read of it, an event row must never
 * change after its commit except for the emitter's own bookkeeping (pendingShard, pendingKey,
 * sendFailures, lastSendError, lastSendFailedAt, doNotRetryUntil, emittedAt).
 *
 * - eventId: UUIDv5-style hash of (resourceType, resourceId, sequence): the same state change
 *   always has the same id, however often it is emitted, so the Ledger can de-duplicate by it.
 * - pendingShard: ledgerShardKey(hash(resourceId) % ledgerShards): every event of one resource
 *   lands in one shard, so one emitter (the shard's lease holder) sees a resource's events together.
 * - pendingKey: `${timestamp}#${resourceId}#${sequence padded to 10}`: sorts by creation, then
 *   resource, then sequence. Timestamps come from different processes' clocks, so across commits
 *   by different workers the order is only approximate: the emitter must still emit a resource's
 *   events in `sequence` order (hold back n+1 while n is pending), which the shard makes cheap.
 */
import { createHash } from 'node:crypto';
import { ledgerShardKey } from '../resources.js';
import { systemClock, type Clock } from './clock.js';
import type { NewEvent, ResourceType, StoredEvent } from './ports.js';

/** @default ledger shards, matching bootstrap's default shard rows. */
export const DEFAULT_LEDGER_SHARDS = 8;

/** Namespace of payfleet event ids (a fixed random UUID; never change it). */
const EVENT_NAMESPACE = Buffer.from('6f1d3c52a9e84b0c9d27e5f4b1a08c33', 'hex');

/** Stable id of the `sequence`-th event of a resource: a UUIDv5 (SHA-1, namespaced). */
export function eventIdFor(resourceType: ResourceType, resourceId: string, sequence: number): string {
  const hash = createHash('sha1').update(EVENT_NAMESPACE).update(`${resourceType}:${resourceId}:${sequence}`).digest();
  const b = Buffer.from(hash.subarray(0, 16));
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x50; // version 5
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // RFC 4122 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The ledger shard (lease key) that holds a resource's pending events. */
export function ledgerShardOf(resourceId: string, ledgerShards = DEFAULT_LEDGER_SHARDS): string {
  if (!Number.isInteger(ledgerShards) || ledgerShards < 1)
    throw new RangeError(`ledgerShards must be a positive integer, got ${ledgerShards}`);
  const n = createHash('sha256').update(resourceId).digest().readUInt32BE(0);
  return ledgerShardKey(n % ledgerShards);
}

export function pendingKeyFor(timestamp: string, resourceId: string, sequence: number): string {
  return `${timestamp}#${resourceId}#${String(sequence).padStart(10, '0')}`;
}

/** ISO-8601 UTC with microseconds: 2026-11-21T10:00:00.123456Z. */
export function isoMicros(epochMicros: number): string {
  const ms = Math.floor(epochMicros / 1000);
  const micros = String(Math.floor(epochMicros) % 1000).padStart(3, '0');
  return `${new Date(ms).toISOString().slice(0, -1)}${micros}Z`;
}

/**
 * A microsecond clock: milliseconds from `now`, the sub-millisecond digits from process.hrtime,
 * strictly increasing within the process (so events of one commit never share a timestamp).
 */
export function createMicroClock(now: Clock = systemClock): () => number {
  let last = 0;
  return () => {
    const sub = Number((process.hrtime.bigint() / 1000n) % 1000n);
    let t = now() * 1000 + sub;
    if (t <= last) t = last + 1;
    last = t;
    return t;
  };
}

/** The ledger resource an entity change speaks for. */
export interface EventResource {
  readonly type: ResourceType;
  readonly id: string;
  /** The parent resource's id (a refund's chargeId). */
  readonly parentId?: string;
  readonly gatewayAccountId?: string;
  readonly live: boolean;
}

/** A stored event plus the GSI sort key it is written with. */
export type OutboxItem = StoredEvent & { readonly pendingKey: string };

export interface OutboxOptions {
  /** Number of ledger shards (must equal bootstrap's ledgerShards). @default 8 */
  readonly ledgerShards?: number;
  /** @default Date.now */
  readonly now?: Clock;
}

export interface Outbox {
  /** Stored events for `events`, numbered from currentEventSeq + 1. */
  build(resource: EventResource, currentEventSeq: number, events: readonly NewEvent[]): OutboxItem[];
}

export function createOutbox(options: OutboxOptions = {}): Outbox {
  const shards = options.ledgerShards ?? DEFAULT_LEDGER_SHARDS;
  const micros = createMicroClock(options.now ?? systemClock);
  return {
    build(resource, currentEventSeq, events) {
      const pendingShard = ledgerShardOf(resource.id, shards);
      return events.map((e, i) => {
        const sequence = currentEventSeq + i + 1;
        const timestamp = isoMicros(micros());
        return {
          eventId: eventIdFor(resource.type, resource.id, sequence),
          resourceType: resource.type,
          resourceId: resource.id,
          ...(resource.parentId !== undefined ? { parentResourceId: resource.parentId } : {}),
          sequence,
          eventType: e.eventType,
          timestamp,
          ...(resource.gatewayAccountId !== undefined ? { gatewayAccountId: resource.gatewayAccountId } : {}),
          live: resource.live,
          details: e.details,
          pendingShard,
          pendingKey: pendingKeyFor(timestamp, resource.id, sequence),
        };
      });
    },
  };
}

/** Read an events-table item back as a StoredEvent (the emitter, CLI). */
export function fromEventItem(item: Record<string, unknown>): StoredEvent {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const gatewayAccountId = str(item.gatewayAccountId);
  const pendingShard = str(item.pendingShard);
  const emittedAt = str(item.emittedAt);
  const parentResourceId = str(item.parentResourceId);
  return {
    eventId: String(item.eventId),
    resourceType: item.resourceType === 'payout' || item.resourceType === 'refund' ? item.resourceType : 'payment',
    resourceId: String(item.resourceId),
    ...(parentResourceId !== undefined ? { parentResourceId } : {}),
    sequence: Number(item.sequence),
    eventType: String(item.eventType),
    timestamp: String(item.timestamp),
    live: item.live === true,
    details: (item.details as Record<string, unknown> | undefined) ?? {},
    ...(gatewayAccountId !== undefined ? { gatewayAccountId } : {}),
    ...(pendingShard !== undefined ? { pendingShard } : {}),
    ...(emittedAt !== undefined ? { emittedAt } : {}),
  };
}

/** The body of a message on ledger-events.fifo (docs/contract.md §5). */
export interface LedgerMessage {
  readonly event_id: string;
  readonly resource_type: ResourceType;
  readonly resource_external_id: string;
  /** Refunds only: the chargeId the refund belongs to. */
  readonly parent_resource_external_id?: string;
  readonly sequence: number;
  readonly event_type: string;
  readonly timestamp: string;
  /** Payments only; absent for payouts. */
  readonly gateway_account_id?: string;
  readonly live: boolean;
  readonly event_details: Record<string, unknown>;
}

/** Exactly the docs/contract.md §5 body for a stored event (send with MessageGroupId = resource id). */
export function toLedgerMessage(stored: StoredEvent): LedgerMessage {
  return {
    event_id: stored.eventId,
    resource_type: stored.resourceType,
    resource_external_id: stored.resourceId,
    ...(stored.parentResourceId !== undefined ? { parent_resource_external_id: stored.parentResourceId } : {}),
    sequence: stored.sequence,
    event_type: stored.eventType,
    timestamp: stored.timestamp,
    ...(stored.gatewayAccountId !== undefined ? { gateway_account_id: stored.gatewayAccountId } : {}),
    live: stored.live,
    event_details: stored.details,
  };
}
