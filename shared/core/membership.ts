import { UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/** Live processes of one kind (ledger emitters, payout workers), for sharing shards fairly. */
export interface Membership {
  /** Record `owner` as alive until now + ttlMs; returns the live members, `owner` included, sorted. */
  heartbeat(owner: string, ttlMs: number): Promise<readonly string[]>;
  /** Leave at shutdown. Never throws for an entry already gone. */
  leave(owner: string): Promise<void>;
}

const MEMBER_PREFIX = 'member:';

/**
 * One row `rowKey` in the leases table, one attribute per live process (`member:<ownerId>` = epoch
 * ms it is presumed alive until). A heartbeat is one UpdateItem that also returns the whole row, so
 * writing our entry and learning the others cost one call. Entries long past their expiry (10 TTLs)
 * are removed by whoever sees them, conditioned on the value seen, so a member that just came back
 * is not removed.
 */
export function createDynamoMembership(options: {
  readonly doc: DynamoDBDocumentClient;
  /** The leases table. */
  readonly tableName: string;
  /** e.g. `ledger-members`, `payout-members`; also written as the row's `kind`. */
  readonly rowKey: string;
  /** Stale entries removed per heartbeat, bounding the work a heartbeat can do. @default all */
  readonly maxStaleRemovals?: number;
  readonly now?: () => number;
}): Membership {
  const { doc, tableName: table, rowKey } = options;
  const now = options.now ?? Date.now;
  const maxStale = options.maxStaleRemovals ?? Number.POSITIVE_INFINITY;
  return {
    async heartbeat(owner, ttlMs) {
      const t = now();
      const out = await doc.send(
        new UpdateCommand({
          TableName: table,
          Key: { leaseKey: rowKey },
          UpdateExpression: 'SET #me = :exp, #kind = :kind',
          ExpressionAttributeNames: { '#me': `${MEMBER_PREFIX}${owner}`, '#kind': 'kind' },
          ExpressionAttributeValues: { ':exp': t + ttlMs, ':kind': rowKey },
          ReturnValues: 'ALL_NEW',
        }),
      );
      const live: string[] = [];
      const stale: [string, number][] = [];
      for (const [k, v] of Object.entries(out.Attributes ?? {})) {
        if (!k.startsWith(MEMBER_PREFIX) || typeof v !== 'number') continue;
        if (v > t) live.push(k.slice(MEMBER_PREFIX.length));
        else if (v < t - 10 * ttlMs) stale.push([k, v]);
      }
      for (const [k, v] of stale.slice(0, maxStale)) {
        await doc
          .send(
            new UpdateCommand({
              TableName: table,
              Key: { leaseKey: rowKey },
              ConditionExpression: '#m = :v',
              UpdateExpression: 'REMOVE #m',
              ExpressionAttributeNames: { '#m': k },
              ExpressionAttributeValues: { ':v': v },
            }),
          )
          .catch(() => undefined);
      }
      return live.sort();
    },
    async leave(owner) {
      await doc.send(
        new UpdateCommand({
          TableName: table,
          Key: { leaseKey: rowKey },
          UpdateExpression: 'REMOVE #me',
          ExpressionAttributeNames: { '#me': `${MEMBER_PREFIX}${owner}` },
        }),
      );
    },
  };
}
