/**
 * OutcomeStore.commit as ONE TransactWriteItems: all of it or none of it.
 *
 *   [0] ConditionCheck leases[lease.key]    owner = me AND fencingToken = tok AND expiresAtMs > now   (if lease)
 *   [1] Update idempotency[key]             -> COMPLETED + result + ttl; if attemptId = mine AND IN_PROGRESS (if workItem)
 *   [n] Put    <entity> (expectedVersion 0)  version 1;          if attribute_not_exists(pk)
 *       Update <entity>                     version = exp + 1;   if version = exp [AND eventSeq = cur]
 *           ... eventSeq = cur + events.length when the change emits events
 *   [m] Put    events[resourceId, cur + i]  the outbox row;      if attribute_not_exists(resourceId)
 *
 * Sequences continue from the entity's eventSeq under the entity's version condition, and each
 * event row must not exist: gaps and duplicates are impossible. A cancellation names the index that
 * refused; it becomes LeaseLostError (lease) or ConflictError{part} with the item from ALL_OLD.
 *
 * Lost responses: the request carries a ClientRequestToken hashed from the whole request. The
 * built TransactWriteItems input is kept (bounded, 9 minutes) and resent unchanged — inside
 * commit() on an unknown outcome, and by a later commit() of the same request — so DynamoDB
 * (which remembers a token for 10 minutes after success) applies it at most once. After a
 * definite cancellation nothing was applied: the next try is built afresh under a new token.
 */
import { TransactWriteCommand, type DynamoDBDocumentClient, type TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { RetryableError } from '../errors.js';
import { TABLES, type ResourceNames } from '../resources.js';
import { commitFingerprint, definedOnly, sha256, validateCommit } from './commit-request.js';
import { systemClock, ttlSeconds, type Clock } from './clock.js';
import { DEFAULT_WORK_ITEM_TTL_SEC } from './dynamo-idempotency.js';
import { leaseFenceCheck, toHolder, unmarshallRaw } from './dynamo-leases.js';
import { CommitOutcomeUnknownError, ConflictError, InvalidCommitError, LeaseLostError } from './errors.js';
import { createOutbox, DEFAULT_LEDGER_SHARDS, type OutboxItem } from './outbox.js';
import type { CommitConflictPart, CommitRequest, CommitResult, EntityChange, Lease, OutcomeStore } from './ports.js';
import { LEASE_ACQUIRE_ID, LEASE_EXPIRES, LEASE_OWNER, LEASE_TOKEN, rowHolder, rowWorkItem, sameRow, workAttribute } from './row-lease.js';
import { sleep } from './timers.js';

export { MAX_TRANSACT_ITEMS } from './commit-request.js';

export interface DynamoOutcomeStoreOptions {
  readonly doc: DynamoDBDocumentClient;
  readonly names: ResourceNames;
  /** Must equal bootstrap's ledgerShards. @default 8 */
  readonly ledgerShards?: number;
  /** @default Date.now */
  readonly now?: Clock;
  /** TTL of a completed work item after completion. @default 604800 (7 days) */
  readonly workItemTtlSec?: number;
  /** Resends of the identical request when its outcome is unknown. @default 2 */
  readonly resendAttempts?: number;
  /** Pause before a resend. @default 200 */
  readonly resendDelayMs?: number;
}

/** A kept request is resent unchanged only within this window (DynamoDB's is 10 minutes). */
const MEMO_MS = 9 * 60_000;
const MEMO_MAX = 1000;

interface PartRef {
  readonly part: CommitConflictPart;
  readonly table: string;
  readonly key: Record<string, unknown>;
  /** This item carries the row lease's fence: a refusal is diagnosed from the row it returns. */
  readonly rowLease?: Lease | undefined;
}

/** The parts of one UpdateItem, merged from the entity change and the row lease. */
interface Clauses {
  readonly conditions: readonly string[];
  readonly sets: readonly string[];
  readonly removes: readonly string[];
  readonly names: Readonly<Record<string, string>>;
  readonly values: Readonly<Record<string, unknown>>;
}

/** The entity under its version (and its event sequence), with its attributes set and removed. */
function entityClauses(change: EntityChange): Clauses {
  const newEvents = change.events ?? [];
  const cur = change.currentEventSeq ?? 0;
  const names: Record<string, string> = { '#version': 'version' };
  const values: Record<string, unknown> = { ':expected': change.expectedVersion, ':version': change.expectedVersion + 1 };
  const sets = ['#version = :version'];
  Object.entries(definedOnly(change.set))
    .filter(([k]) => !(k in change.key))
    .forEach(([k, v], i) => {
      names[`#s${i}`] = k;
      values[`:s${i}`] = v;
      sets.push(`#s${i} = :s${i}`);
    });
  const conditions = ['#version = :expected'];
  if (change.resource && newEvents.length > 0) {
    // The caller's currentEventSeq must be the stored one, or the sequence would gap.
    names['#seq'] = 'eventSeq';
    Object.assign(values, { ':seq': cur + newEvents.length, ':curSeq': cur });
    sets.push('#seq = :seq');
    conditions.push(cur === 0 ? '(attribute_not_exists(#seq) OR #seq = :curSeq)' : '#seq = :curSeq');
  }
  const removes = (change.remove ?? []).map((k, i) => {
    names[`#r${i}`] = k;
    return `#r${i}`;
  });
  return { conditions, sets, removes, names, values };
}

/**
 * The row lease's part of write 2: the fence (owner, token, unexpired by our clock), the work item
 * completed if it is still our attempt's, and the lease released — all on the entity row.
 */
function rowClauses(req: CommitRequest, t: number): Clauses {
  const lease = req.lease!;
  const names: Record<string, string> = { '#lo': LEASE_OWNER, '#lt': LEASE_TOKEN, '#le': LEASE_EXPIRES };
  const values: Record<string, unknown> = { ':lo': lease.owner, ':lt': lease.fencingToken, ':lnow': t };
  const conditions = ['#lo = :lo', '#lt = :lt', '#le > :lnow'];
  const sets: string[] = [];
  const removes: string[] = [];
  const w = req.workItem;
  if (w) {
    Object.assign(names, { '#wi': workAttribute(w.idempotencyKey), '#wa': 'attemptId', '#ws': 'status', '#wd': 'completedAtMs' });
    Object.assign(values, { ':wa': w.attemptId, ':wip': 'IN_PROGRESS', ':wdone': 'COMPLETED' });
    conditions.push('#wi.#wa = :wa', '#wi.#ws = :wip');
    sets.push('#wi.#ws = :wdone', '#wi.#wd = :lnow');
    if (w.result) {
      names['#wr'] = 'result';
      values[':wr'] = w.result;
      sets.push('#wi.#wr = :wr');
    }
  }
  if (req.release) {
    names['#la'] = LEASE_ACQUIRE_ID;
    values[':lzero'] = 0;
    sets.push('#le = :lzero');
    removes.push('#lo', '#la');
  }
  return { conditions, sets, removes, names, values };
}

function merge(a: Clauses, b: Clauses): Clauses {
  return {
    conditions: [...a.conditions, ...b.conditions],
    sets: [...a.sets, ...b.sets],
    removes: [...a.removes, ...b.removes],
    names: { ...a.names, ...b.names },
    values: { ...a.values, ...b.values },
  };
}

function updateOf(table: string, key: Record<string, string>, c: Clauses) {
  const set = c.sets.length ? `SET ${c.sets.join(', ')}` : '';
  const remove = c.removes.length ? ` REMOVE ${c.removes.join(', ')}` : '';
  return {
    TableName: table,
    Key: key,
    ConditionExpression: c.conditions.join(' AND '),
    UpdateExpression: `${set}${remove}`.trim(),
    ExpressionAttributeNames: c.names,
    ExpressionAttributeValues: c.values,
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
  };
}

interface Built {
  readonly input: TransactWriteCommandInput;
  readonly parts: readonly PartRef[];
  readonly result: CommitResult;
}

interface MemoEntry {
  generation: number;
  builtAtMs: number;
  built: Built | undefined;
}

export function createDynamoOutcomeStore(options: DynamoOutcomeStoreOptions): OutcomeStore {
  const { doc, names } = options;
  const now = options.now ?? systemClock;
  const outbox = createOutbox({ ledgerShards: options.ledgerShards ?? DEFAULT_LEDGER_SHARDS, now });
  const workItemTtlSec = options.workItemTtlSec ?? DEFAULT_WORK_ITEM_TTL_SEC;
  const resendAttempts = options.resendAttempts ?? 2;
  const resendDelayMs = options.resendDelayMs ?? 200;
  const memo = new Map<string, MemoEntry>();

  function build(req: CommitRequest, token: string): Built {
    const t = now();
    const items: NonNullable<TransactWriteCommandInput['TransactItems']> = [];
    const parts: PartRef[] = [];
    const events: OutboxItem[] = [];
    const versions: number[] = [];
    const row = req.lease?.row;
    // A row lease: the fence, the work item and the release ride on the row's own Update.
    const onRow = row ? rowClauses(req, t) : undefined;
    const rowChange = row ? req.changes.findIndex((c) => sameRow(row, c)) : -1;
    if (req.lease && !row) {
      items.push(leaseFenceCheck(names.table('leases'), req.lease, t));
      parts.push({ part: 'lease', table: names.table('leases'), key: { leaseKey: req.lease.key } });
    }
    if (req.workItem && !row) {
      const w = req.workItem;
      const table = names.table('idempotency');
      items.push({
        Update: {
          TableName: table,
          Key: { idempotencyKey: w.idempotencyKey },
          ConditionExpression: '#attempt = :aid AND #status = :inProgress',
          UpdateExpression: `SET #status = :completed, #done = :now, #ttl = :ttl${w.result ? ', #result = :result' : ''}`,
          ExpressionAttributeNames: {
            '#attempt': 'attemptId',
            '#status': 'status',
            '#done': 'completedAtMs',
            '#ttl': 'ttl',
            ...(w.result ? { '#result': 'result' } : {}),
          },
          ExpressionAttributeValues: {
            ':aid': w.attemptId,
            ':inProgress': 'IN_PROGRESS',
            ':completed': 'COMPLETED',
            ':now': t,
            ':ttl': ttlSeconds(t, workItemTtlSec),
            ...(w.result ? { ':result': w.result } : {}),
          },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        },
      });
      parts.push({ part: 'workItem', table, key: { idempotencyKey: w.idempotencyKey } });
    }
    if (row && onRow && rowChange < 0) {
      // Nothing of the entity changes (a duplicate's verdict kept, a request refused): the row lease alone.
      items.push({ Update: updateOf(names.table(row.table), row.key, onRow) });
      parts.push({ part: 'lease', table: names.table(row.table), key: row.key, rowLease: req.lease });
    }
    const eventItems: typeof items = [];
    const eventParts: PartRef[] = [];
    for (const [index, change] of req.changes.entries()) {
      const table = names.table(change.table);
      const newEvents = change.events ?? [];
      const cur = change.currentEventSeq ?? 0;
      const version = change.expectedVersion + 1;
      versions.push(version);
      if (change.expectedVersion === 0) {
        const pk = TABLES[change.table].partitionKey.name;
        items.push({
          Put: {
            TableName: table,
            // A new resource starts its sequence here (0 when it emits nothing yet).
            Item: {
              ...definedOnly(change.set),
              ...change.key,
              version,
              ...(change.resource ? { eventSeq: newEvents.length } : {}),
            },
            ConditionExpression: 'attribute_not_exists(#pk)',
            ExpressionAttributeNames: { '#pk': pk },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          },
        });
      } else {
        const clauses = entityClauses(change);
        const leased = index === rowChange && onRow ? onRow : undefined;
        items.push({ Update: updateOf(table, change.key, leased ? merge(clauses, leased) : clauses) });
      }
      parts.push({ part: 'entity', table, key: change.key, ...(index === rowChange ? { rowLease: req.lease } : {}) });
      if (change.resource && newEvents.length > 0) {
        for (const e of outbox.build(change.resource, cur, newEvents)) {
          events.push(e);
          eventItems.push({
            Put: {
              TableName: names.table('events'),
              Item: { ...e },
              ConditionExpression: 'attribute_not_exists(resourceId)',
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            },
          });
          eventParts.push({
            part: 'event',
            table: names.table('events'),
            key: { resourceId: e.resourceId, sequence: e.sequence },
          });
        }
      }
    }
    return {
      input: { TransactItems: [...items, ...eventItems], ClientRequestToken: token },
      parts: [...parts, ...eventParts],
      result: { events, versions },
    };
  }

  function prepared(req: CommitRequest): Built {
    const fingerprint = commitFingerprint(req);
    const wall = Date.now();
    let entry = memo.get(fingerprint);
    if (entry && wall - entry.builtAtMs > MEMO_MS && entry.built) {
      // Past the window in which the identical request may be resent: a new token, a new request.
      entry.built = undefined;
      entry.generation += 1;
    }
    if (!entry) {
      entry = { generation: 0, builtAtMs: wall, built: undefined };
      memo.set(fingerprint, entry);
      if (memo.size > MEMO_MAX) memo.delete(memo.keys().next().value as string);
    }
    if (!entry.built) {
      entry.built = build(req, sha256(`${fingerprint}:${entry.generation}`).slice(0, 36));
      entry.builtAtMs = wall;
    }
    return entry.built;
  }

  function forget(req: CommitRequest): void {
    const entry = memo.get(commitFingerprint(req));
    // Definitely not applied: the next try may differ (fresh clock), so it gets a fresh token.
    if (entry) {
      entry.built = undefined;
      entry.generation += 1;
    }
  }

  return {
    async commit(req) {
      validateCommit(req);
      const built = prepared(req);
      for (let attempt = 0; ; attempt++) {
        try {
          await doc.send(new TransactWriteCommand(built.input));
          return built.result;
        } catch (err) {
          const name = (err as { name?: unknown }).name;
          if (name === 'TransactionCanceledException') {
            forget(req);
            throw translateCancellation(err, built.parts, req);
          }
          if (name === 'ValidationException') {
            forget(req);
            throw new InvalidCommitError([`DynamoDB refused the transaction: ${(err as Error).message}`], { cause: err });
          }
          if (name === 'ResourceNotFoundException') throw err;
          const token = built.input.ClientRequestToken ?? '';
          // The token was used with another payload: an earlier form of this commit may have applied.
          if (name === 'IdempotentParameterMismatchException') throw new CommitOutcomeUnknownError(token, { cause: err });
          // Timeout, reset, 5xx, TransactionInProgress: it may or may not have applied. Resending
          // the identical input is safe (same token) and tells us which.
          if (attempt >= resendAttempts) throw new CommitOutcomeUnknownError(token, { cause: err });
          await sleep(resendDelayMs * (attempt + 1));
        }
      }
    },
  };
}

/**
 * Which clause refused the row-lease item: its ALL_OLD row says whether the lease is still ours
 * (owner, token, unexpired by the commit's clock), then whether the work item is still our attempt's;
 * otherwise the entity's own condition (its version) refused.
 */
function diagnose(ref: PartRef | undefined, reason: { Code?: string; Item?: object }, req: CommitRequest): PartRef | undefined {
  if (!ref?.rowLease || reason.Code !== 'ConditionalCheckFailed') return ref;
  const row = reason.Item ? unmarshallRaw(reason.Item) : undefined;
  const lease = ref.rowLease;
  const h = row ? rowHolder(row) : undefined;
  // The commit's own clock is not known here; an expiry in the past by any clock the row shows is
  // only ever a lost lease, so a row whose owner and token are still ours was refused on its expiry.
  if (!h || h.owner !== lease.owner || h.fencingToken !== lease.fencingToken) return { ...ref, part: 'lease' };
  const w = req.workItem;
  if (w && row) {
    const item = rowWorkItem(row, w.idempotencyKey);
    if (item?.attemptId !== w.attemptId || item.status !== 'IN_PROGRESS') return { ...ref, part: 'workItem' };
  }
  const change = req.changes.find((c) => sameRow(lease.row!, c));
  const seqMoved = change?.events?.length && (row?.eventSeq ?? 0) !== (change.currentEventSeq ?? 0);
  if (change && (row?.version !== change.expectedVersion || seqMoved)) return { ...ref, part: 'entity' };
  return { ...ref, part: 'lease' };
}

function translateCancellation(err: unknown, parts: readonly PartRef[], req: CommitRequest): Error {
  const reasons = ((err as { CancellationReasons?: unknown }).CancellationReasons ?? []) as { Code?: string; Item?: object }[];
  const rank: Record<CommitConflictPart, number> = { lease: 0, workItem: 1, entity: 2, event: 3, extra: 4 };
  const failed = reasons
    .map((r, i) => ({ code: r.Code ?? 'None', item: r.Item ? unmarshallRaw(r.Item) : undefined, ref: diagnose(parts[i], r, req) }))
    .filter(
      (f): f is { code: string; item: Record<string, unknown> | undefined; ref: PartRef } =>
        f.code !== 'None' && f.ref !== undefined,
    )
    // The lease first: a lost fence explains every other refusal of the same request.
    .sort((a, b) => rank[a.ref.part] - rank[b.ref.part]);
  const first = failed[0];
  if (!first) {
    return new RetryableError('TRANSACTION_CANCELED', `transaction cancelled without reasons: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const { ref, code, item } = first;
  if (ref.part === 'lease' && code === 'ConditionalCheckFailed' && req.lease) {
    const holder = item ? (req.lease.row ? rowHolder(item) : toHolder(item)) : undefined;
    return new LeaseLostError(req.lease, holder, { cause: err });
  }
  if (code === 'ConditionalCheckFailed' || code === 'TransactionConflict') {
    const reason = code === 'TransactionConflict' ? 'transaction' : 'condition';
    return new ConflictError({
      part: ref.part,
      key: ref.key,
      table: ref.table,
      reason,
      cause: err,
      ...(item ? { existing: item } : {}),
    });
  }
  if (code === 'ThrottlingError' || code === 'ProvisionedThroughputExceeded') {
    return new RetryableError('THROTTLED', `transaction throttled on ${ref.part} ${JSON.stringify(ref.key)}`, { cause: err });
  }
  return new InvalidCommitError([`${code} on ${ref.part} ${JSON.stringify(ref.key)}`], { cause: err });
}
