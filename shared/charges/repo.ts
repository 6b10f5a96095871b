import { GetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { OnceItem } from '../core/work.js';
import { CHARGE_STATUSES, deadLetterCodeOf, FINAL_ERROR_STATUSES, type Charge } from './charge.js';

/** Read side of charges (writes are ./transition.ts moves, committed through the work context). */
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
 * The once() item of a request about a charge: under the charge's lease (`charge#<id>`, one request
 * of any worker at a time per charge), completing the request's own work item. A completed item
 * written before codes were kept holds the status only; for a final error its code is then the
 * charge's `errorCode`, so even such a request is dead-lettered again, never acknowledged.
 */
export function chargeRequestItem(charges: ChargeRepository, chargeId: string, idempotencyKey: string): OnceItem {
  return {
    leaseKey: `charge#${chargeId}`,
    idempotencyKey,
    subject: `charge ${chargeId}`,
    codeOfOlderItem: async (kept) => {
      // Only a request that left the charge in a final error was dead-lettered: read the code then.
      const status = CHARGE_STATUSES.find((s) => s === kept);
      if (!status || !FINAL_ERROR_STATUSES.has(status)) return undefined;
      return deadLetterCodeOf((await charges.get(chargeId)) ?? { status });
    },
  };
}
