import { afterEach, describe, expect, it } from 'vitest';
import type { HandlerResult } from '../../shared/core/consumer.js';
import type { OnceContext, OnceItem, WorkAnswer, WorkContext } from '../../shared/core/work.js';
import { silentLogger } from '../../shared/log/logger.js';
import { fakeOnceStores, type FakeOnceStores } from '../support/fake-once-stores.js';

/**
 * once() on in-memory stores (test/support/fake-once-stores.ts): what the work context writes, and
 * what a later delivery of a completed request gets.
 */
let stores: FakeOnceStores;
afterEach(async () => {
  await stores?.keeper.releaseAll();
});

const item = (key = 'r1', extra: Partial<OnceItem> = {}): OnceItem => ({
  leaseKey: 'thing#t1',
  idempotencyKey: `op#${key}`,
  subject: 'thing t1',
  ...extra,
});

function context(extra: Partial<OnceContext> = {}): OnceContext & { reported: number[] } {
  const reported: number[] = [];
  return {
    signal: new AbortController().signal,
    log: silentLogger(),
    setAttempts: (n) => void reported.push(n),
    reported,
    ...extra,
  };
}

const change = (version: number) => ({
  table: 'charges' as const,
  key: { chargeId: 't1' },
  expectedVersion: version,
  set: { n: version + 1 },
});

describe('once()', () => {
  describe('the work context', () => {
    it('commit() is fenced by the lease and leaves the work item open', async () => {
      stores = fakeOnceStores();
      const r = await stores.once(item(), context(), async (w) => {
        await w.commit([change(0)]);
        return { action: 'defer', delaySec: 5 };
      });
      expect(r).toEqual({ action: 'defer', delaySec: 5 });
      expect(stores.commits).toHaveLength(1);
      expect(stores.commits[0]!.lease).toMatchObject({ key: 'thing#t1', owner: 'unit-test', fencingToken: 1 });
      expect(stores.commits[0]!.workItem).toBeUndefined();
      expect(stores.workItems.get('op#r1')?.status).toBe('IN_PROGRESS');
    });

    it('complete() commits the changes, the lease fence and the work item with its verdict as one commit', async () => {
      stores = fakeOnceStores();
      let attemptId = '';
      const r = await stores.once(item(), context(), async (w) => {
        attemptId = w.attemptId;
        return w.complete([change(0)], { status: 'DONE', action: 'dead-letter', code: 'NOPE', detail: 'refused' });
      });
      expect(r).toEqual({ action: 'dead-letter', code: 'NOPE', detail: 'refused' });
      expect(stores.commits).toHaveLength(1);
      expect(stores.commits[0]).toMatchObject({
        lease: { key: 'thing#t1', fencingToken: 1 },
        workItem: { idempotencyKey: 'op#r1', attemptId, result: { status: 'DONE', code: 'NOPE', detail: 'refused' } },
        changes: [change(0)],
      });
      expect(stores.workItems.get('op#r1')).toMatchObject({ status: 'COMPLETED', result: { status: 'DONE', code: 'NOPE' } });
    });

    it.each(['commit', 'complete'] as const)(
      'a holder whose lease was taken over cannot %s(): nothing is applied and the work item stays open',
      async (write) => {
        stores = fakeOnceStores();
        const run = stores.once(item(), context(), async (w) => {
          stores.steal('thing#t1', 'someone-else');
          if (write === 'commit') await w.commit([change(0)]);
          return w.complete([change(0)], { status: 'DONE', action: 'ack' });
        });
        await expect(run).rejects.toMatchObject({ code: 'LEASE_LOST' });
        expect(stores.commits).toHaveLength(0);
        expect(stores.workItems.get('op#r1')?.status).toBe('IN_PROGRESS');
      },
    );

    it("counts the work item's attempts, less the re-runs after a dependency outage", async () => {
      stores = fakeOnceStores({ attemptDeadlineMs: 1000 });
      const seen: number[] = [];
      const fail = async (w: WorkContext): Promise<WorkAnswer> => {
        seen.push(w.attempts);
        throw new Error('boom');
      };
      for (let i = 0; i < 2; i++) {
        await expect(stores.once(item(), context(), fail)).rejects.toThrow('boom');
        stores.clock.advance(1001); // the attempt's own deadline passes: the next begin takes over
      }
      const ctx = context({ uncountedAttempts: 2 });
      await expect(stores.once(item(), ctx, fail)).rejects.toThrow('boom');
      expect(ctx.reported).toEqual([3]);
      expect(seen).toEqual([1, 2, 1]);
    });

    it('an ack or a dead letter can only be answered through complete(): a bare verdict does not type-check', () => {
      // @ts-expect-error a verdict not made by complete() would end the message with its work item open
      const bare: (w: WorkContext) => Promise<WorkAnswer> = async () => ({ action: 'ack' });
      const deferred: (w: WorkContext) => Promise<WorkAnswer> = async () => ({ action: 'defer', delaySec: 1 });
      expect([bare, deferred]).toHaveLength(2);
    });
  });

  describe('duplicates', () => {
    it('a request completed with an ack is acknowledged again without running the work', async () => {
      stores = fakeOnceStores();
      let runs = 0;
      const work = async (w: WorkContext) => {
        runs++;
        return w.complete([], { status: 'DONE', action: 'ack' });
      };
      expect(await stores.once(item(), context(), work)).toEqual({ action: 'ack' });
      expect(await stores.once(item(), context(), work)).toEqual({ action: 'ack' });
      expect(runs).toBe(1);
    });

    it('a request completed with a dead letter is dead-lettered again with its code and what it said, never acknowledged', async () => {
      stores = fakeOnceStores();
      let runs = 0;
      const work = async (w: WorkContext) => {
        runs++;
        return w.complete([], { status: 'FAILED', action: 'dead-letter', code: 'REFUSED', detail: 'the bank said no' });
      };
      await stores.once(item(), context(), work);
      const again: HandlerResult = await stores.once(item(), context(), work);
      expect(again).toEqual({
        action: 'dead-letter',
        code: 'REFUSED',
        detail: 'thing t1 is already FAILED (REFUSED); this request was not processed again; it said: the bank said no',
      });
      expect(runs).toBe(1);
    });

    it('a completed item that kept its status only takes its code from the item (codeOfOlderItem)', async () => {
      stores = fakeOnceStores();
      await stores.once(item(), context(), (w) => w.complete([], { status: 'FAILED', action: 'ack' }));
      const asked: string[] = [];
      const older = item('r1', {
        codeOfOlderItem: async (status) => {
          asked.push(status);
          return 'FROM_SUBJECT';
        },
      });
      expect(await stores.once(older, context(), async () => expect.unreachable())).toMatchObject({
        action: 'dead-letter',
        code: 'FROM_SUBJECT',
      });
      expect(asked).toEqual(['FAILED']);
    });

    it('repeat() completes the item with the earlier verdict: this delivery and every later one get the same letter', async () => {
      stores = fakeOnceStores();
      const first = await stores.once(item(), context(), (w) =>
        w.repeat({ status: 'FAILED', code: 'REFUSED', detail: 'the bank said no' }),
      );
      const later = await stores.once(item(), context(), async () => expect.unreachable());
      expect(first).toEqual({
        action: 'dead-letter',
        code: 'REFUSED',
        detail: 'thing t1 is already FAILED (REFUSED); this request was not processed again; it said: the bank said no',
      });
      expect(later).toEqual(first);
      expect(stores.workItems.get('op#r1')?.result).toEqual({ status: 'FAILED', code: 'REFUSED', detail: 'the bank said no' });
    });
  });
});
