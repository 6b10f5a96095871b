/**
 * RowWorkStore on the entity tables: the lease and the request's work item on the entity row
 * itself (layout: row-lease.ts). `open` is write 1 of an attempt — one UpdateItem that takes the
 * lease, begins the work item and (for a new entity) creates the row, answering with the row
 * (ALL_NEW: no separate read) or, refused, with the row that refused it (ALL_OLD: the evidence).
 *
 *   open(charge c1, auth#r1)   condition: (no leaseOwner OR leaseExpiresAtMs < now) AND work:auth#r1 absent
 *       ✓ ALL_NEW  -> started (token n+1, attempts 1), the charge as it is now (created if it was absent)
 *       ✗ ALL_OLD  work item COMPLETED                       -> completed (a duplicate: nothing written)
 *                  leaseOwner = me AND leaseAcquireId = mine -> started (our own write; its answer was lost)
 *                  lease live                                 -> held by { owner, expiry, token }
 *                  lease free, work item IN_PROGRESS          -> take over: one more UpdateItem, conditioned on
 *                                                                the attempt id seen (its holder lost the lease,
 *                                                                so it cannot commit: the fence is on the row)
 *
 * Lost answers: every open carries a fresh `leaseAcquireId` and attempt id. The SDK's resend of an
 * applied write fails its condition and ALL_OLD names this very write, so it is recognised as ours.
 * If every attempt goes unanswered both ids are kept (until the lease they may have taken would
 * expire) and reused by the next open of the same row and work item in this process.
 */
import { randomUUID } from 'node:crypto';
import { DeleteCommand, GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { RetryableError } from '../errors.js';
import type { ResourceNames } from '../resources.js';
import { systemClock, type Clock } from './clock.js';
import { definedOnly } from './commit-request.js';
import { conditionFailureItem, isConditionFailure } from './dynamo-leases.js';
import { LeaseLostError } from './errors.js';
import type { Lease, OpenRequest, OpenResult, RowRef, RowWorkStore } from './ports.js';
import {
  CREATED_BY,
  entityOf,
  LEASE_ACQUIRE_ID,
  LEASE_ACQUIRED_AT,
  LEASE_EXPIRES,
  LEASE_OWNER,
  LEASE_TOKEN,
  rowHolder,
  rowLeaseLive,
  rowWorkItem,
  workAttribute,
} from './row-lease.js';

export interface DynamoRowWorkStoreOptions {
  readonly doc: DynamoDBDocumentClient;
  readonly names: Pick<ResourceNames, 'table'>;
  /** @default Date.now */
  readonly now?: Clock;
  /** Ids of one open (tests pin them). @default randomUUID */
  readonly newId?: () => string;
}

const LEASE_NAMES = {
  '#lo': LEASE_OWNER,
  '#lt': LEASE_TOKEN,
  '#le': LEASE_EXPIRES,
  '#la': LEASE_ACQUIRE_ID,
  '#lat': LEASE_ACQUIRED_AT,
} as const;

/** Opens tried before giving up on a row whose state keeps moving under us. */
const MAX_OPEN_TRIES = 3;

export function createDynamoRowWorkStore(options: DynamoRowWorkStoreOptions): RowWorkStore {
  const { doc, names } = options;
  const now = options.now ?? systemClock;
  const newId = options.newId ?? randomUUID;
  /** Opens whose every attempt went unanswered: row+work+owner -> their ids, until their lease would expire. */
  const unanswered = new Map<string, { acquireId: string; attemptId: string; untilMs: number }>();

  const tableOf = (row: RowRef) => names.table(row.table);

  function idsFor(slot: string, t: number): { acquireId: string; attemptId: string } {
    const kept = unanswered.get(slot);
    unanswered.delete(slot);
    return kept && kept.untilMs > t ? kept : { acquireId: newId(), attemptId: newId() };
  }

  function started(req: OpenRequest, row: Record<string, unknown>, attemptId: string): OpenResult {
    const item = rowWorkItem(row, req.workKey);
    const holder = rowHolder(row);
    const lease: Lease = { key: req.leaseKey, owner: req.owner, fencingToken: holder.fencingToken, expiresAtMs: holder.expiresAtMs, row: req.row };
    return {
      status: 'started',
      lease,
      attemptId,
      attempts: item?.attempts ?? 1,
      progress: item?.progress,
      entity: entityOf(row),
      created: req.create !== undefined && row[CREATED_BY] === attemptId,
    };
  }

  /** The first form of write 1: the work item is new (the common case). */
  async function openFresh(req: OpenRequest, ids: { acquireId: string; attemptId: string }, t: number) {
    const attrNames: Record<string, string> = { ...LEASE_NAMES, '#wi': workAttribute(req.workKey) };
    const values: Record<string, unknown> = {
      ':me': req.owner,
      ':acq': ids.acquireId,
      ':exp': t + req.leaseMs,
      ':now': t,
      ':one': 1,
      ':item': { status: 'IN_PROGRESS', attemptId: ids.attemptId, attempts: 1, startedAtMs: t },
    };
    const sets = ['#lo = :me', '#la = :acq', '#le = :exp', '#lat = :now', '#wi = :item'];
    let condition = '(attribute_not_exists(#lo) OR #le < :now) AND attribute_not_exists(#wi)';
    const pk = Object.keys(req.row.key)[0]!;
    if (req.create) {
      // Every attribute only where it is missing: a row that exists keeps its own.
      Object.entries(definedOnly({ ...req.create, [CREATED_BY]: ids.attemptId }))
        .filter(([k]) => !(k in req.row.key))
        .forEach(([k, v], i) => {
          attrNames[`#c${i}`] = k;
          values[`:c${i}`] = v;
          sets.push(`#c${i} = if_not_exists(#c${i}, :c${i})`);
        });
    } else {
      attrNames['#pk'] = pk;
      condition += ' AND attribute_exists(#pk)';
    }
    return doc.send(
      new UpdateCommand({
        TableName: tableOf(req.row),
        Key: req.row.key,
        ConditionExpression: condition,
        UpdateExpression: `SET ${sets.join(', ')} ADD #lt :one`,
        ExpressionAttributeNames: attrNames,
        ExpressionAttributeValues: values,
        ReturnValues: 'ALL_NEW',
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      }),
    );
  }

  /** Write 1 again, taking over an IN_PROGRESS work item whose holder lost the lease. */
  async function openTakeover(req: OpenRequest, ids: { acquireId: string; attemptId: string }, t: number, seen: { attemptId: string; attempts: number }) {
    return doc.send(
      new UpdateCommand({
        TableName: tableOf(req.row),
        Key: req.row.key,
        ConditionExpression: '(attribute_not_exists(#lo) OR #le < :now) AND #wi.#wa = :seen AND #wi.#ws = :inProgress',
        UpdateExpression: 'SET #lo = :me, #la = :acq, #le = :exp, #lat = :now, #wi.#wa = :aid, #wi.#wn = :n, #wi.#wt = :now ADD #lt :one',
        ExpressionAttributeNames: {
          ...LEASE_NAMES,
          '#wi': workAttribute(req.workKey),
          '#wa': 'attemptId',
          '#ws': 'status',
          '#wn': 'attempts',
          '#wt': 'startedAtMs',
        },
        ExpressionAttributeValues: {
          ':me': req.owner,
          ':acq': ids.acquireId,
          ':exp': t + req.leaseMs,
          ':now': t,
          ':one': 1,
          ':seen': seen.attemptId,
          ':inProgress': 'IN_PROGRESS',
          ':aid': ids.attemptId,
          ':n': seen.attempts + 1,
        },
        ReturnValues: 'ALL_NEW',
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      }),
    );
  }

  return {
    async open(req) {
      const slot = `${tableOf(req.row)}\0${JSON.stringify(req.row.key)}\0${req.workKey}\0${req.owner}`;
      let takeover: { attemptId: string; attempts: number } | undefined;
      for (let tries = 0; tries < MAX_OPEN_TRIES; tries++) {
        const t = now();
        const ids = idsFor(slot, t);
        try {
          const out = takeover ? await openTakeover(req, ids, t, takeover) : await openFresh(req, ids, t);
          return started(req, out.Attributes ?? {}, ids.attemptId);
        } catch (err) {
          if (!isConditionFailure(err)) {
            unanswered.set(slot, { ...ids, untilMs: t + req.leaseMs });
            throw err;
          }
          const old = conditionFailureItem(err);
          if (!old) return { status: 'missing' };
          if (old[LEASE_OWNER] === req.owner && old[LEASE_ACQUIRE_ID] === ids.acquireId) {
            // Our own write, applied by an attempt whose answer was lost.
            return started(req, old, ids.attemptId);
          }
          const item = rowWorkItem(old, req.workKey);
          if (item?.status === 'COMPLETED') return { status: 'completed', record: item };
          if (rowLeaseLive(old, t)) return { status: 'held', holder: rowHolder(old) };
          // The lease is free and the work item open: its attempt's holder lost the lease.
          takeover = item?.attemptId ? { attemptId: item.attemptId, attempts: item.attempts } : undefined;
        }
      }
      throw new RetryableError('ROW_CONTENDED', `${req.leaseKey}: the row changed under every open; try again`);
    },

    async renew(lease, leaseMs) {
      const row = rowOf(lease);
      const expiresAtMs = now() + leaseMs;
      try {
        await doc.send(
          new UpdateCommand({
            TableName: tableOf(row),
            Key: row.key,
            ConditionExpression: '#lo = :me AND #lt = :tok',
            UpdateExpression: 'SET #le = :exp',
            ExpressionAttributeNames: { '#lo': LEASE_OWNER, '#lt': LEASE_TOKEN, '#le': LEASE_EXPIRES },
            ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':exp': expiresAtMs },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return { ...lease, expiresAtMs };
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        const old = conditionFailureItem(err);
        throw new LeaseLostError(lease, old ? rowHolder(old) : undefined, { cause: err });
      }
    },

    async release(lease) {
      const row = rowOf(lease);
      try {
        await doc.send(
          new UpdateCommand({
            TableName: tableOf(row),
            Key: row.key,
            ConditionExpression: '#lo = :me AND #lt = :tok',
            UpdateExpression: 'SET #le = :zero REMOVE #lo, #la',
            ExpressionAttributeNames: { '#lo': LEASE_OWNER, '#lt': LEASE_TOKEN, '#le': LEASE_EXPIRES, '#la': LEASE_ACQUIRE_ID },
            ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':zero': 0 },
          }),
        );
      } catch (err) {
        // Lost already (another holder, or released by a commit): nothing of ours to give back.
        if (!isConditionFailure(err)) throw err;
      }
    },

    async discard(lease, attemptId) {
      const row = rowOf(lease);
      try {
        await doc.send(
          new DeleteCommand({
            TableName: tableOf(row),
            Key: row.key,
            ConditionExpression: '#lo = :me AND #lt = :tok AND #le > :now AND #cb = :aid',
            ExpressionAttributeNames: { '#lo': LEASE_OWNER, '#lt': LEASE_TOKEN, '#le': LEASE_EXPIRES, '#cb': CREATED_BY },
            ExpressionAttributeValues: { ':me': lease.owner, ':tok': lease.fencingToken, ':now': now(), ':aid': attemptId },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        const old = conditionFailureItem(err);
        throw new LeaseLostError(lease, old ? rowHolder(old) : undefined, { cause: err, detail: 'discard refused' });
      }
    },

    async inspect(row) {
      const r = await doc.send(new GetCommand({ TableName: tableOf(row), Key: row.key, ConsistentRead: true }));
      return r.Item ? rowHolder(r.Item) : undefined;
    },

    async workItem(row, workKey) {
      const r = await doc.send(new GetCommand({ TableName: tableOf(row), Key: row.key, ConsistentRead: true }));
      return r.Item ? rowWorkItem(r.Item, workKey) : undefined;
    },
  };
}

/** The row of a row lease (a lease without one is a programming error here). */
export function rowOf(lease: Lease): RowRef {
  if (!lease.row) throw new TypeError(`lease ${lease.key} is not a row lease`);
  return lease.row;
}
