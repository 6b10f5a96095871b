/**
 * LeaseStore on the `leases` table (PK leaseKey). One conditional UpdateItem per operation; a
 * failed acquire reports the holder from the failed write itself (ALL_OLD), never a second read.
 *
 * Row: { leaseKey, owner?, acquireId?, fencingToken N, expiresAtMs N, acquiredAtMs N, ttl N, kind? }
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
 *
 * Own lease on retry. Every acquire writes a fresh `acquireId` with the owner. When its answer is
 * lost, the SDK resends the same request (same :now, same acquireId); the row it wrote makes that
 * resend fail its condition, and ALL_OLD then names this very acquire:
 *
 *   A acquire(id a1) ─▶ applied: owner A, a1, token 7 ─▶ answer lost ─▶ (deadline) resend, same a1
 *                                                        ✗ condition, ALL_OLD { A, a1, token 7 } -> acquired, token 7
 *   A acquire(id a2) while the row says { A, a1 }  -> held (another acquire of A's: not this one)
 *   B acquire        while the row says { A, a1 }  -> held
 *
 * Owner AND acquire id must match, so the fence is not weakened: another owner's lease, or an
 * earlier or later acquire by the same owner, is never mistaken for this one. If every attempt of
 * an acquire fails without an answer, its acquire id is kept (until the lease it may have taken
 * would expire) and reused by the next acquire of the same key and owner in this process, which
 * then recognises the lease the lost call took instead of waiting for it to expire.
 *
 * Own leftover after a failed release. A release that could not be sent or answered (DynamoDB
 * down: the breaker refused it) leaves the row saying "owner A, token 7" until it expires. This
 * store remembers that lease; the next acquire of the key by A that finds exactly that row takes it
 * back at once with one more conditional write (`owner = A AND token = 7`, token -> 8), instead of
 * reporting it held by A itself until it expires:
 *
 *   A release(token 7) ✗ not sent ─ outage ─ A acquire ✗ held { A, token 7 } = its own leftover
 *                                            ─▶ reclaim: owner = A AND token = 7 ─▶ token 8
 *
 * Only a lease this very store held and failed to give back is reclaimed; a row anyone (A
 * included) acquired since has another token and is left alone.
 */
import { randomUUID } from 'node:crypto';
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
  /** Id of one acquire (tests pin it). @default randomUUID */
  readonly newAcquireId?: () => string;
}

/** Keys of the rows bootstrap pre-creates (payoutShardKey / ledgerShardKey): never TTL'd. */
const SHARD_ROW = /^(payout|ledger)-shard#/;

/**
 * Expression names of the lease attributes (several are DynamoDB reserved words). DynamoDB rejects
 * names an expression does not use, so `#pk` is added only where the expression uses it.
 */
const NAMES = { '#owner': 'owner', '#token': 'fencingToken', '#exp': 'expiresAtMs' } as const;

/**
 * Whether the row a failed acquire saw was written by that very acquire (its answer was lost and
 * this is the resend): same owner and same acquire id. Anything else is someone else's lease.
 */
export function isOwnAcquire(row: Record<string, unknown>, owner: string, acquireId: string): boolean {
  return row.owner === owner && row.acquireId === acquireId && typeof row.fencingToken === 'number';
}

export function createDynamoLeaseStore(options: DynamoLeaseStoreOptions): LeaseStore {
  const { doc, tableName } = options;
  const now = options.now ?? systemClock;
  const ttlAfter = options.ttlAfterExpirySec ?? 7 * 24 * 3600;
  const newAcquireId = options.newAcquireId ?? randomUUID;
  /** Acquires whose every attempt went unanswered: key\0owner -> their id, until their lease would expire. */
  const unanswered = new Map<string, { acquireId: string; untilMs: number }>();
  /** Leases whose release failed without an answer: key\0owner -> their token, until they expire. */
  const unreleased = new Map<string, { fencingToken: number; untilMs: number }>();

  /** Take back `old`, this owner's own leftover lease (token `fencingToken`): one conditional write. */
  async function reclaim(key: string, owner: string, fencingToken: number, leaseMs: number): Promise<AcquireResult> {
    const t = now();
    const expiresAtMs = t + leaseMs;
    const ttl = ttlClause(key, expiresAtMs);
    try {
      const out = await doc.send(
        new UpdateCommand({
          TableName: tableName,
          Key: { leaseKey: key },
          ConditionExpression: '#owner = :owner AND #token = :tok',
          UpdateExpression: `SET #aid = :aid, #exp = :exp, #acq = :now${ttl.set} ADD #token :one`,
          ExpressionAttributeNames: { ...NAMES, '#aid': 'acquireId', '#acq': 'acquiredAtMs', ...(ttl.set ? { '#ttl': 'ttl' } : {}) },
          ExpressionAttributeValues: {
            ':owner': owner,
            ':tok': fencingToken,
            ':aid': newAcquireId(),
            ':exp': expiresAtMs,
            ':now': t,
            ':one': 1,
            ...ttl.values,
          },
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { acquired: true, lease: { key, owner, fencingToken: Number(out.Attributes?.fencingToken), expiresAtMs } };
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      return { acquired: false, holder: toHolder(conditionFailureItem(err) ?? {}) };
    }
  }

  /** The id for an acquire: a lost one's, taken (once) if it may still hold the row, else a new one. */
  function acquireIdFor(key: string, owner: string, t: number): string {
    const slot = `${key}\0${owner}`;
    const lost = unanswered.get(slot);
    unanswered.delete(slot);
    return lost && lost.untilMs > t ? lost.acquireId : newAcquireId();
  }

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
      const acquireId = acquireIdFor(key, owner, t);
      try {
        const out = await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { leaseKey: key },
            // Free if it never existed, was released (expiresAtMs 0) or expired by our clock.
            ConditionExpression: 'attribute_not_exists(#pk) OR #exp < :now',
            UpdateExpression: `SET #owner = :owner, #aid = :aid, #exp = :exp, #acq = :now${ttl.set} ADD #token :one`,
            ExpressionAttributeNames: {
              ...NAMES,
              '#pk': 'leaseKey',
              '#aid': 'acquireId',
              '#acq': 'acquiredAtMs',
              ...(ttl.set ? { '#ttl': 'ttl' } : {}),
            },
            ExpressionAttributeValues: {
              ':owner': owner,
              ':aid': acquireId,
              ':exp': expiresAtMs,
              ':now': t,
              ':one': 1,
              ...ttl.values,
            },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        const row = out.Attributes ?? {};
        const lease: Lease = { key, owner, fencingToken: Number(row.fencingToken), expiresAtMs };
        return { acquired: true, lease } satisfies AcquireResult;
      } catch (err) {
        if (!isConditionFailure(err)) {
          // No answer (or an error after it may have applied): the next acquire of this key by this
          // owner reuses the id, so a lease this call did take is recognised rather than waited out.
          unanswered.set(`${key}\0${owner}`, { acquireId, untilMs: expiresAtMs });
          throw err;
        }
        // The condition only fails when the row exists, so ALL_OLD is always there.
        const old = conditionFailureItem(err) ?? {};
        if (isOwnAcquire(old, owner, acquireId)) {
          // Our own write, applied by an attempt whose answer was lost: the lease is ours, with the
          // row's token and expiry (the write this resend repeats set both).
          const lease: Lease = { key, owner, fencingToken: Number(old.fencingToken), expiresAtMs: Number(old.expiresAtMs) };
          return { acquired: true, lease } satisfies AcquireResult;
        }
        const slot = `${key}\0${owner}`;
        const leftover = unreleased.get(slot);
        unreleased.delete(slot);
        if (leftover && leftover.untilMs > t && old.owner === owner && Number(old.fencingToken) === leftover.fencingToken) {
          return reclaim(key, owner, leftover.fencingToken, leaseMs);
        }
        return { acquired: false, holder: toHolder(old) };
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
      const slot = `${lease.key}\0${lease.owner}`;
      unreleased.delete(slot);
      try {
        await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { leaseKey: lease.key },
            ConditionExpression: '#owner = :me AND #token = :tok',
            // The token stays: the next acquire ADDs to it, so it never goes backwards. The acquire
            // id goes with the owner: no later resend can recognise a released lease as its own.
            UpdateExpression: 'SET #exp = :zero REMOVE #owner, #aid',
            ExpressionAttributeNames: { ...NAMES, '#aid': 'acquireId' },
            ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':zero': 0 },
          }),
        );
      } catch (err) {
        // Lost already: someone else holds it (or it is gone). Nothing of ours to give back.
        if (!isConditionFailure(err)) {
          // Not given back (not sent, or no answer): remember it, so our next acquire takes it back.
          unreleased.set(slot, { fencingToken: lease.fencingToken, untilMs: lease.expiresAtMs });
          throw err;
        }
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
