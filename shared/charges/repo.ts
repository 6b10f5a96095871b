import { GetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { EntityChange, NewEvent } from '../core/ports.js';
import type { Charge } from './charge.js';

/** Read side of charges (writes go through OutcomeStore.commit, fenced and versioned). */
export interface ChargeRepository {
  /** Strongly consistent: decisions under a lease must see the last commit. */
  get(chargeId: string): Promise<Charge | undefined>;
}

export function createChargeRepository(doc: DynamoDBDocumentClient, tableName: string): ChargeRepository {
  return {
    async get(chargeId) {
      const r = await doc.send(new GetCommand({ TableName: tableName, Key: { chargeId }, ConsistentRead: true }));
      return r.Item as Charge | undefined;
    },
  };
}

/**
 * The write of one charge change for OutcomeStore.commit: `after` replaces the stored attributes
 * under `before`'s version, and `events` follow `before`'s last ledger sequence.
 */
export function chargeChange(before: Charge, after: Charge, events: readonly NewEvent[]): EntityChange {
  const { version: _v, eventSeq: _e, chargeId: _c, ...attrs } = after;
  return {
    table: 'charges',
    key: { chargeId: after.chargeId },
    expectedVersion: before.version,
    set: attrs,
    resource: { type: 'payment', id: after.chargeId, gatewayAccountId: after.gatewayAccountId, live: after.live },
    currentEventSeq: before.eventSeq,
    events,
  };
}

/** The charge as it is after `chargeChange(before, after, events)` committed. */
export function committed(before: Charge, after: Charge, events: readonly NewEvent[]): Charge {
  return { ...after, version: before.version + 1, eventSeq: before.eventSeq + events.length };
}
