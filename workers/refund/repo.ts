import { GetCommand, QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { entityOf } from '../../shared/core/row-lease.js';
import { refundOf, type Refund } from './refund.js';

/**
 * Read side of refunds (writes are ./refund.ts changes committed through the work context), for the
 * CLI and tests. A bare reservation (a row a request opened but never turned into a refund) is not
 * a refund and is never returned.
 */
export interface RefundRepository {
  /** Strongly consistent; the row lease's attributes removed. */
  get(refundId: string): Promise<Refund | undefined>;
  /** A charge's refunds, oldest first, from the by-charge index (eventually consistent). */
  listByCharge(chargeId: string): Promise<Refund[]>;
}

export function createRefundRepository(doc: DynamoDBDocumentClient, tableName: string): RefundRepository {
  return {
    async get(refundId) {
      const r = await doc.send(new GetCommand({ TableName: tableName, Key: { refundId }, ConsistentRead: true }));
      return r.Item ? refundOf(entityOf(r.Item)) : undefined;
    },
    async listByCharge(chargeId) {
      const out: Refund[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const r = await doc.send(
          new QueryCommand({
            TableName: tableName,
            IndexName: 'by-charge',
            KeyConditionExpression: 'chargeId = :c',
            ExpressionAttributeValues: { ':c': chargeId },
            ExclusiveStartKey: start,
          }),
        );
        for (const item of r.Items ?? []) {
          const refund = refundOf(entityOf(item));
          if (refund) out.push(refund);
        }
        start = r.LastEvaluatedKey;
      } while (start);
      return out;
    },
  };
}
