/**
 * IdempotencyStore on the `idempotency` table (PK idempotencyKey): one record per work item (one
 * message's job), begun with one conditional UpdateItem and completed by the commit transaction
 * (dynamo-outcomes.ts), never by a separate write.
 *
 * Record: { idempotencyKey, status IN_PROGRESS|COMPLETED, attemptId, attempts N, expiresAtMs N,
 *           fencingToken N?, progress M?, result M?, startedAtMs N, completedAtMs N?, ttl N }
 *
 *   A begin(k, deadline 0+60s, token 7) -> started (attempt a1)
 *   B begin(k, token 7) at 10 s            -> busy   (a1 is live and has the current fence)
 *   A pauses; lease taken over with token 8
 *   B begin(k, token 8) at 20 s            -> started (a2): 7 < 8, the old attempt is fenced out
 *   A commit(workItem a1)                  ✗ ConflictError part 'workItem' (attemptId is a2 now)
 *   B commit(workItem a2)                  ✓ COMPLETED, result stored, TTL 7 days
 *   any begin(k) afterwards                -> completed { result }
 *
 * Without a fencing token an attempt may be taken over only after its deadline passes.
 *
 * Own attempt on retry. The attemptId is chosen before the write is sent, so when a begin's answer
 * is lost and the SDK resends it, the resend fails its condition (the item is IN_PROGRESS under our
 * own token now) and ALL_OLD names our attemptId: that is "started", not "busy".
 *
 *   A begin(k, a1, token 7) ─▶ applied ─▶ answer lost ─▶ resend ✗ ALL_OLD { IN_PROGRESS, a1 } -> started a1
 *   A begin(k, a2, token 7) while the item says a1        -> busy (another attempt, even if ours)
 *
 * If every attempt of a begin fails without an answer, its attemptId is reused (once) by the next
 * begin of the same key in this process, which then recognises the attempt the lost call started.
 */
import { randomUUID } from 'node:crypto';
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { systemClock, ttlSeconds, type Clock } from './clock.js';
import { conditionFailureItem, isConditionFailure } from './dynamo-leases.js';
import { ConflictError } from './errors.js';
import type { IdempotencyStore, WorkItemRecord, WorkItemState } from './ports.js';

export interface DynamoIdempotencyStoreOptions {
  readonly doc: DynamoDBDocumentClient;
  /** Full table name (names.table('idempotency')). */
  readonly tableName: string;
  /** @default Date.now */
  readonly now?: Clock;
  /**
   * How long a record outlives its completion (or an abandoned attempt its deadline) before
   * DynamoDB TTL removes it. A redelivery after that is no longer recognised here (the entity's
   * own state still refuses a repeated transition). @default 604800 (7 days)
   */
  readonly ttlSec?: number;
  /** Id of one attempt (tests pin it). @default randomUUID */
  readonly newAttemptId?: () => string;
}

export const DEFAULT_WORK_ITEM_TTL_SEC = 7 * 24 * 3600;

const NAMES = {
  '#pk': 'idempotencyKey',
  '#status': 'status',
  '#attempt': 'attemptId',
  '#exp': 'expiresAtMs',
  '#token': 'fencingToken',
} as const;

export function createDynamoIdempotencyStore(options: DynamoIdempotencyStoreOptions): IdempotencyStore {
  const { doc, tableName } = options;
  const now = options.now ?? systemClock;
  const ttlSec = options.ttlSec ?? DEFAULT_WORK_ITEM_TTL_SEC;
  const newAttemptId = options.newAttemptId ?? randomUUID;
  /** Begins whose every attempt went unanswered: key -> their attemptId, until their deadline. */
  const unanswered = new Map<string, { attemptId: string; untilMs: number }>();

  return {
    async begin(idempotencyKey, { deadlineMs, fencingToken }) {
      const t = now();
      const lost = unanswered.get(idempotencyKey);
      unanswered.delete(idempotencyKey);
      const attemptId = lost && lost.untilMs > t ? lost.attemptId : newAttemptId();
      const fenced = fencingToken !== undefined;
      // Take over an IN_PROGRESS attempt when it ran out of time, or when we hold a newer fence
      // (its holder lost the lease, so it cannot commit anyway). COMPLETED is never taken over.
      const takeover = fenced ? '(#exp < :now OR #token < :tok)' : '#exp < :now';
      try {
        const out = await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { idempotencyKey },
            ConditionExpression: `attribute_not_exists(#pk) OR (#status = :inProgress AND ${takeover})`,
            // progress is kept on takeover: it is the note the previous attempt left for this one.
            UpdateExpression:
              `SET #status = :inProgress, #attempt = :aid, #exp = :deadline, #started = :now, #ttl = :ttl` +
              `${fenced ? ', #token = :tok' : ''} ADD #attempts :one${fenced ? '' : ' REMOVE #token'}`,
            ExpressionAttributeNames: { ...NAMES, '#started': 'startedAtMs', '#ttl': 'ttl', '#attempts': 'attempts' },
            ExpressionAttributeValues: {
              ':inProgress': 'IN_PROGRESS',
              ':aid': attemptId,
              ':deadline': deadlineMs,
              ':now': t,
              ':ttl': ttlSeconds(Math.max(deadlineMs, t), ttlSec),
              ':one': 1,
              ...(fenced ? { ':tok': fencingToken } : {}),
            },
            ReturnValues: 'ALL_NEW',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        const record = toRecord(out.Attributes ?? {});
        return { status: 'started', attemptId, attempts: record.attempts, record } satisfies WorkItemState;
      } catch (err) {
        if (!isConditionFailure(err)) {
          // It may have applied: let the next begin of this key recognise the attempt it started.
          unanswered.set(idempotencyKey, { attemptId, untilMs: deadlineMs });
          throw err;
        }
        const record = toRecord(conditionFailureItem(err) ?? { idempotencyKey });
        if (record.status === 'COMPLETED') return { status: 'completed', result: record.result, record };
        // Our own write, applied by an attempt whose answer was lost: this attempt has started.
        if (record.attemptId === attemptId) return { status: 'started', attemptId, attempts: record.attempts, record };
        return { status: 'busy', record };
      }
    },

    async note(idempotencyKey, attemptId, progress) {
      try {
        await doc.send(
          new UpdateCommand({
            TableName: tableName,
            Key: { idempotencyKey },
            ConditionExpression: '#attempt = :aid AND #status = :inProgress',
            UpdateExpression: 'SET #progress = :p',
            ExpressionAttributeNames: { '#attempt': 'attemptId', '#status': 'status', '#progress': 'progress' },
            ExpressionAttributeValues: { ':aid': attemptId, ':inProgress': 'IN_PROGRESS', ':p': progress },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
        // Our attempt was taken over (or completed by another): stop, like a lost lease.
        const existing = conditionFailureItem(err);
        throw new ConflictError({
          part: 'workItem',
          key: { idempotencyKey },
          table: tableName,
          reason: 'condition',
          cause: err,
          ...(existing ? { existing } : {}),
        });
      }
    },

    async get(idempotencyKey) {
      const out = await doc.send(new GetCommand({ TableName: tableName, Key: { idempotencyKey }, ConsistentRead: true }));
      return out.Item ? toRecord(out.Item) : undefined;
    },
  };
}

/** Map a stored item to the port's record (drops table-only attributes such as ttl). */
export function toRecord(item: Record<string, unknown>): WorkItemRecord {
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  const obj = (v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);
  const attemptId = typeof item.attemptId === 'string' ? item.attemptId : undefined;
  const expiresAtMs = num(item.expiresAtMs);
  const fencingToken = num(item.fencingToken);
  const result = obj(item.result);
  const progress = obj(item.progress);
  return {
    idempotencyKey: String(item.idempotencyKey),
    status: item.status === 'COMPLETED' ? 'COMPLETED' : 'IN_PROGRESS',
    attempts: num(item.attempts) ?? 0,
    ...(attemptId !== undefined ? { attemptId } : {}),
    ...(expiresAtMs !== undefined ? { expiresAtMs } : {}),
    ...(fencingToken !== undefined ? { fencingToken } : {}),
    ...(result !== undefined ? { result } : {}),
    ...(progress !== undefined ? { progress } : {}),
  };
}
