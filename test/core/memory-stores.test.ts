/**
 * The in-memory stores (shared/core/memory-stores.ts) pass the same conformance suite as the
 * DynamoDB ones (stores.conformance.ts), so unit tests at the ports may use them in their place.
 */
import { describe, expect, it } from 'vitest';
import {
  createMemoryDatabase,
  createMemoryIdempotencyStore,
  createMemoryLeaseStore,
  createMemoryOutcomeStore,
  createMemoryRowWorkStore,
  createMemoryStores,
} from '../../shared/core/memory-stores.js';
import { resourceNames } from '../../shared/resources.js';
import { describeStoreConformance, type StoreHarness } from './stores.conformance.js';

function memoryHarness(): StoreHarness {
  const db = createMemoryDatabase();
  const names = resourceNames('memory-');
  return {
    process: ({ now, newAttemptId } = {}) => ({
      leases: createMemoryLeaseStore({ db, now, names }),
      idempotency: createMemoryIdempotencyStore({ db, now, names, newAttemptId }),
      outcomes: createMemoryOutcomeStore({ db, now, names, ledgerShards: 8 }),
      rows: createMemoryRowWorkStore({ db, now, names, newAttemptId }),
    }),
    table: (k) => names.table(k),
    row: async (t, key) => db.get(t, key),
    events: async (resourceId) => db.query('events', resourceId),
    put: async (t, item) => db.put(t, item),
    delete: async (t, key) => db.delete(t, key),
  };
}

describeStoreConformance({ leases: 'MemoryLeaseStore', idempotency: 'MemoryIdempotencyStore', outcomes: 'MemoryOutcomeStore', rows: 'MemoryRowWorkStore' }, memoryHarness);

describe('MemoryDatabase', () => {
  describe('get() / put()', () => {
    it('stores copies, as a round trip through DynamoDB would: a caller mutating what it wrote or read changes nothing stored', async () => {
      const { db, outcomes } = createMemoryStores();
      const set = { status: 'CREATED', nested: { a: 1 }, gone: undefined };
      await outcomes.commit({ changes: [{ table: 'charges', key: { chargeId: 'c1' }, expectedVersion: 0, set }] });
      set.nested.a = 2;
      const read = db.get('charges', { chargeId: 'c1' });
      (read!.nested as { a: number }).a = 3;
      expect(db.get('charges', { chargeId: 'c1' })).toEqual({ chargeId: 'c1', status: 'CREATED', nested: { a: 1 }, version: 1 });
      expect(db.get('charges', { chargeId: 'c1' })).not.toHaveProperty('gone');
    });

    it('refuses a row without its key attributes, and values DynamoDB could not store', () => {
      const db = createMemoryDatabase();
      expect(() => db.put('events', { resourceId: 'r' })).toThrow(/events: key needs resourceId \+ sequence/);
      expect(() => db.put('charges', { chargeId: 'c', at: new Date() })).toThrow(/not storable: Date/);
    });
  });
});

describe('commit requests and the row lease', () => {
  it("refuses an entity change that sets or removes the row lease's own attributes, and a release without a row lease", async () => {
    const { outcomes } = createMemoryStores();
    const change = (set: Record<string, unknown>, remove?: string[]) => ({
      table: 'charges' as const,
      key: { chargeId: 'c1' },
      expectedVersion: 0,
      set,
      ...(remove ? { remove } : {}),
    });
    await expect(outcomes.commit({ changes: [change({ leaseOwner: 'me' })] })).rejects.toThrow(/leaseOwner belongs to the row lease/);
    await expect(outcomes.commit({ changes: [change({ 'work:auth#r1': { status: 'COMPLETED' } })] })).rejects.toThrow(/work:auth#r1 belongs to the row lease/);
    await expect(outcomes.commit({ changes: [change({ status: 'X' }, ['leaseToken'])] })).rejects.toThrow(/leaseToken belongs to the row lease/);
    await expect(outcomes.commit({ changes: [change({ status: 'X' })], release: true })).rejects.toThrow(/only a row lease is released/);
  });
});
