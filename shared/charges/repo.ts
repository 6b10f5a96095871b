import { GetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { OnceItem, RowItem } from '../core/work.js';
import { entityOf } from '../core/row-lease.js';
import { CHARGE_STATUSES, deadLetterCodeOf, FINAL_ERROR_STATUSES, type Charge } from './charge.js';

/**
 * Read side of charges (writes are ./transition.ts moves, committed through the work context).
 * The workers read a charge through once()'s write 1 (`w.entity`, see {@link chargeOf}); this is
 * for everyone else (the CLI, tests, an old work item's code).
 */
export interface ChargeRepository {
  /** Strongly consistent; the row lease's attributes removed. */
  get(chargeId: string): Promise<Charge | undefined>;
}

export function createChargeRepository(doc: DynamoDBDocumentClient, tableName: string): ChargeRepository {
  return {
    async get(chargeId) {
      const r = await doc.send(new GetCommand({ TableName: tableName, Key: { chargeId }, ConsistentRead: true }));
      return r.Item ? (entityOf(r.Item) as unknown as Charge) : undefined;
    },
  };
}

/** The charge as once()'s write 1 read it (the work context's `entity`). */
export function chargeOf(entity: Record<string, unknown> | undefined): Charge | undefined {
  return entity && typeof entity.status === 'string' ? (entity as unknown as Charge) : undefined;
}

/**
 * The once() item of a request about a charge: under the charge's row lease (`charge#<id>`: the
 * lease on the charge row itself, one request of any worker at a time per charge), completing the
 * request's own work item, kept on the same row. Write 1 of the attempt reads the charge (the work
 * context's `entity`), creating it from `row.create` if given; without it a missing charge is
 * `row.missing()`. A completed item written before codes were kept holds the status only; for a
 * final error its code is then the charge's `errorCode`, so even such a request is dead-lettered
 * again, never acknowledged.
 */
export function chargeRequestItem(
  charges: ChargeRepository,
  chargeId: string,
  idempotencyKey: string,
  row: Omit<RowItem, 'ref'> = {},
): OnceItem {
  return {
    leaseKey: `charge#${chargeId}`,
    idempotencyKey,
    subject: `charge ${chargeId}`,
    row: { ref: { table: 'charges', key: { chargeId } }, ...row },
    codeOfOlderItem: async (kept) => {
      // Only a request that left the charge in a final error was dead-lettered: read the code then.
      const status = CHARGE_STATUSES.find((s) => s === kept);
      if (!status || !FINAL_ERROR_STATUSES.has(status)) return undefined;
      return deadLetterCodeOf((await charges.get(chargeId)) ?? { status });
    },
  };
}
