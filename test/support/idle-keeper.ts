/**
 * A process that holds one lease through a LeaseKeeper (on an in-memory store) and does nothing
 * else: it must exit by itself, because the keeper's renew and guard timers are unref'd
 * (test/core/lease-keeper.test.ts). Were they not, it would renew every second for ever.
 */
import { createLeaseKeeper } from '../../shared/core/lease-keeper.js';
import { createMemoryLeaseStore, createMemoryDatabase } from '../../shared/core/memory-stores.js';

const keeper = createLeaseKeeper({ store: createMemoryLeaseStore({ db: createMemoryDatabase() }), leaseMs: 60_000, renewMs: 1_000 });
const got = await keeper.acquire('k', 'o');
if (!got.held) throw new Error('the lease should be free');
console.log(JSON.stringify({ msg: 'holding', fencingToken: got.held.lease.fencingToken }));
