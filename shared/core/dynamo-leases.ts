/**
 * LeaseStore on the `leases` table (PK leaseKey). One conditional UpdateItem per operation; a
 * failed acquire reports the holder from the failed write itself (ALL_OLD), never a second read.
 *
 * Row: { leaseKey, owner?, fencingToken N, expiresAtMs N, acquiredAtMs N, ttl N, kind? }
 *
 *   t=0      A acquire  -> token 7, expiresAtMs 30 000 (A's clock)
 *   t=10 s   B acquire  ✗ { owner A, token 7, expiresAtMs 30 000 }   (from the failed write)
 *   t=31 s   B acquire  -> token 8 (A never renewed)      A's commit fenced on token 7 ✗
 *   release  -> expiresAtMs 0, owner removed, token kept (8): the next acquire gets 9
 *
 * The token is ADDed, never SET, so it grows across releases, expiries and takeovers. Shard rows
 * that bootstrap pre-creates ({ kind 'shard', fencingToken 0, expiresAtMs 0 }) are leases like any
 * other, but never carry a TTL: they are configuration and must not vanish (that would also restart
 * their token at 1).
 */
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { systemClock, ttlSeconds, type Clock } from './clock.js';
import { LeaseLostError } from './errors.js';
import type { AcquireResult, Lease, LeaseHolder, LeaseStore } from './ports.js';

export interface DynamoLeaseStoreOptions {
  readonly doc: DynamoDBDocumentClient;
  /** Full table name (names.table('leases')). */
  readonly tableName: string;
  /** @default Date.now */
  readonly now?: Clock;
  /** How long a lease row outlives its expiry before DynamoDB TTL removes it. @default 7 days */
  readonly ttlAfterExpirySec?: number;
}

/** Keys of the rows bootstrap pre-creates (payoutShardKey / ledgerShardKey): never TTL'd. */
const SHARD_ROW = /^(payout|ledger)-shard#/;

/**
 * Expression names of the lease attributes (several are DynamoDB reserved words). DynamoDB rejects
 * names an expression does not use, so `#pk` is added only where the expression uses it.
 */
const NAMES = { '#owner': 'owner', '#token': 'fencingToken', '#exp': 'expiresAtMs' } as const;

export function createDynamoLeaseStore(options: DynamoLeaseStoreOptions): LeaseStore {
  const { doc, tableName } = options;
  const now = options.now ?? systemClock;
  const ttlAfter = options.ttlAfterExpirySec ?? 7 * 24 * 3600;

  function ttlClause(key: string, expiresAtMs: number): { set: string; values: Record<string, number> } {
    if (SHARD_ROW.test(key)) return { set: '', values: {} };
    return { set: ', #ttl = :ttl', values: { ':ttl': ttlSeconds(expiresAtMs, ttlAfter) } };
  }

  return {
    async acquire(key, owner, leaseMs) {
      assertLeaseMs(leaseMs);
      const t = now();
      const expiresAtMs = t + leaseMs;
      const ttl = ttlClause(key, expiresAtMs);
      try {
        const out = await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { leaseKey: key },
            // Free if it never existed, was released (expiresAtMs 0) or expired by our clock.
            ConditionExpression: 'attribute_not_exists(#pk) OR #exp < :now',
            UpdateExpression: `SET #owner = :owner, #exp = :exp, #acq = :now${ttl.set} ADD #token :one`,
            ExpressionAttributeNames: {
              ...NAMES,
              '#pk': 'leaseKey',
              '#acq': 'acquiredAtMs',
              ...(ttl.set ? { '#ttl': 'ttl' } : {}),
            },
            ExpressionAttributeValues: { ':owner': owner, ':exp': expiresAtMs, ':now': t, ':one': 1, ...ttl.values },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        const row = out.Attributes ?? {};
        const lease: Lease = { key, owner, fencingToken: Number(row.fencingToken), expiresAtMs };
        return { acquired: true, lease } satisfies AcquireResult;
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        // The condition only fails when the row exists, so ALL_OLD is always there.
        return { acquired: false, holder: toHolder(conditionFailureItem(err) ?? {}) };
      }
    },

    async renew(lease, leaseMs) {
      assertLeaseMs(leaseMs);
      const expiresAtMs = now() + leaseMs;
      const ttl = ttlClause(lease.key, expiresAtMs);
      try {
        await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { leaseKey: lease.key },
            // Renewing after our own expiry is safe if nobody acquired meanwhile: any acquire bumps the token.
            ConditionExpression: '#owner = :me AND #token = :tok',
            UpdateExpression: `SET #exp = :exp${ttl.set}`,
            ExpressionAttributeNames: { ...NAMES, ...(ttl.set ? { '#ttl': 'ttl' } : {}) },
            ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':exp': expiresAtMs, ...ttl.values },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return { ...lease, expiresAtMs };
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        const old = conditionFailureItem(err);
        throw new LeaseLostError(lease, old ? toHolder(old) : undefined, { cause: err });
      }
    },

    async release(lease) {
      try {
        await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { leaseKey: lease.key },
            ConditionExpression: '#owner = :me AND #token = :tok',
            // The token stays: the next acquire ADDs to it, so it never goes backwards.
            UpdateExpression: 'SET #exp = :zero REMOVE #owner',
            ExpressionAttributeNames: NAMES,
            ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':zero': 0 },
          }),
        );
      } catch (err) {
        // Lost already: someone else holds it (or it is gone). Nothing of ours to give back.
        if (!isConditionFailure(err)) throw err;
      }
    },

    async inspect(key) {
      const out = await doc.send(new GetCommand({ TableName: tableName, Key: { leaseKey: key }, ConsistentRead: true }));
      return out.Item ? toHolder(out.Item) : undefined;
    },
  };
}

/**
 * The ConditionCheck that fences a transaction on a lease: it passes only while `lease` is still
 * ours (same owner, same token) and unexpired by the committing process' clock `nowMs`.
 * Returned in lib-dynamodb's TransactWriteItems shape.
 */
export function leaseFenceCheck(tableName: string, lease: Pick<Lease, 'key' | 'owner' | 'fencingToken'>, nowMs: number) {
  return {
    ConditionCheck: {
      TableName: tableName,
      Key: { leaseKey: lease.key },
      ConditionExpression: '#owner = :me AND #token = :tok AND #exp > :now',
      ExpressionAttributeNames: { '#owner': 'owner', '#token': 'fencingToken', '#exp': 'expiresAtMs' },
      ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':now': nowMs },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
    },
  };
}

export function toHolder(row: Record<string, unknown>): LeaseHolder {
  return {
    owner: typeof row.owner === 'string' ? row.owner : undefined,
    expiresAtMs: Number(row.expiresAtMs ?? 0),
    fencingToken: Number(row.fencingToken ?? 0),
  };
}

function assertLeaseMs(leaseMs: number): void {
  if (!Number.isFinite(leaseMs) || leaseMs <= 0) throw new RangeError(`leaseMs must be a positive number, got ${leaseMs}`);
}

// ─────────── SDK helpers shared by the DynamoDB adapters of the core ───────────

/** A single-item conditional write that failed its condition. */
export function isConditionFailure(err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
}

/**
 * The item ALL_OLD returned with a failed condition, unmarshalled. The document client does not
 * unmarshall error payloads, so this does (numbers as JS numbers, like the client's options).
 */
export function conditionFailureItem(err: unknown): Record<string, unknown> | undefined {
  const item = (err as { Item?: unknown } | null)?.Item;
  return item && typeof item === 'object' ? unmarshallRaw(item) : undefined;
}

/** Unmarshall a raw AttributeValue map (from an error payload). */
export function unmarshallRaw(item: object): Record<string, unknown> {
  return unmarshall(item as Parameters<typeof unmarshall>[0], { wrapNumbers: false });
}
