import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manualClock } from '../../shared/core/clock.js';
import { createDynamoIdempotencyStore } from '../../shared/core/dynamo-idempotency.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { ConflictError } from '../../shared/core/errors.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
let table: string;

beforeAll(async () => {
  stack = await setupTestStack('idem');
  table = stack.names.table('idempotency');
});
afterAll(() => stack?.close());

const uniq = (label: string) => `${label}#${Math.random().toString(36).slice(2, 10)}`;

function stores(startMs = 5_000_000) {
  const clock = manualClock(startMs);
  const idem = createDynamoIdempotencyStore({ doc: stack.clients.doc, tableName: table, now: clock.now });
  const outcomes = createDynamoOutcomeStore({ doc: stack.clients.doc, names: stack.names, now: clock.now });
  return { clock, idem, outcomes };
}

describe('Class: DynamoIdempotencyStore', () => {
  it('Method: begin: first begin starts; a second is busy; after completion it is completed with the result', async () => {
    // Prepare
    const { clock, idem, outcomes } = stores();
    const key = uniq('auth');
    // Act
    const first = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
    const second = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
    // Assess
    expect(first).toMatchObject({ status: 'started', attempts: 1, record: { status: 'IN_PROGRESS', attempts: 1 } });
    expect(second.status).toBe('busy');
    if (first.status !== 'started' || second.status !== 'busy') return;
    expect(second.record.attemptId).toBe(first.attemptId);
    expect(second.record.expiresAtMs).toBe(clock.now() + 60_000);

    await outcomes.commit({
      workItem: { idempotencyKey: key, attemptId: first.attemptId, result: { outcome: 'AUTHORISATION_SUCCESS' } },
      changes: [],
    });
    const third = await idem.begin(key, { deadlineMs: clock.now() + 60_000 });
    expect(third).toMatchObject({
      status: 'completed',
      result: { outcome: 'AUTHORISATION_SUCCESS' },
      record: { status: 'COMPLETED', attempts: 1 },
    });
    // Completed records expire after 7 days (epoch seconds).
    const raw = await stack.clients.doc.send(new GetCommand({ TableName: table, Key: { idempotencyKey: key } }));
    expect(raw.Item?.ttl).toBe(Math.floor(clock.now() / 1000) + 7 * 24 * 3600);
  });

  it('Method: begin: an attempt past its deadline is taken over; progress notes carry over', async () => {
    // Prepare
    const { clock, idem } = stores();
    const key = uniq('capture');
    const first = await idem.begin(key, { deadlineMs: clock.now() + 10_000 });
    if (first.status !== 'started') throw new Error('should start');
    await idem.note(key, first.attemptId, { captureSent: true });
    // Act
    clock.advance(9_999);
    const early = await idem.begin(key, { deadlineMs: clock.now() + 10_000 });
    clock.advance(2);
    const late = await idem.begin(key, { deadlineMs: clock.now() + 10_000 });
    // Assess
    expect(early.status).toBe('busy');
    expect(late).toMatchObject({ status: 'started', attempts: 2, record: { progress: { captureSent: true } } });
    if (late.status !== 'started') return;
    expect(late.attemptId).not.toBe(first.attemptId);
    // The old attempt is fenced out of its own work item.
    const err = await idem.note(key, first.attemptId, { x: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect(err).toMatchObject({ part: 'workItem', existing: { attemptId: late.attemptId } });
  });

  it('Method: begin: a newer fencing token takes over a live attempt at once; an equal or older one is busy', async () => {
    // Prepare
    const { clock, idem } = stores();
    const key = uniq('payout');
    const deadlineMs = clock.now() + 600_000;
    const t7 = await idem.begin(key, { deadlineMs, fencingToken: 7 });
    // Act
    const same = await idem.begin(key, { deadlineMs, fencingToken: 7 });
    const older = await idem.begin(key, { deadlineMs, fencingToken: 6 });
    const unfenced = await idem.begin(key, { deadlineMs });
    const newer = await idem.begin(key, { deadlineMs, fencingToken: 8 });
    // Assess
    expect(t7.status).toBe('started');
    expect([same.status, older.status, unfenced.status]).toEqual(['busy', 'busy', 'busy']);
    expect(newer).toMatchObject({ status: 'started', attempts: 2, record: { fencingToken: 8 } });
    expect(await idem.get(key)).toMatchObject({ status: 'IN_PROGRESS', fencingToken: 8, attempts: 2 });
  });

  it('Method: begin: a completed item is never taken over, even by a newer token after its deadline', async () => {
    // Prepare
    const { clock, idem, outcomes } = stores();
    const key = uniq('auth');
    const a = await idem.begin(key, { deadlineMs: clock.now() + 1_000, fencingToken: 1 });
    if (a.status !== 'started') throw new Error('should start');
    await outcomes.commit({ workItem: { idempotencyKey: key, attemptId: a.attemptId, result: { ok: true } }, changes: [] });
    // Act
    clock.advance(5_000);
    const again = await idem.begin(key, { deadlineMs: clock.now() + 1_000, fencingToken: 99 });
    // Assess
    expect(again).toMatchObject({ status: 'completed', result: { ok: true } });
    expect(await idem.get(key)).toMatchObject({ attempts: 1, fencingToken: 1 });
  });

  it('Method: get: unknown keys are undefined', async () => {
    const { idem } = stores();
    expect(await idem.get(uniq('none'))).toBeUndefined();
  });
});
