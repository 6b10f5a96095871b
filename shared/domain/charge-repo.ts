import { GetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
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
