/**
 * The payout worker's leases: its own LeaseKeeper for shard (and responses) leases, with the payout
 * lease settings, and the membership row that tells each worker how many payout workers are alive.
 *
 * The tight-lease flag. The core LeaseKeeper refuses renewMs > leaseMs / 2 (rightly: see
 * lease-keeper.ts). When an operator sets PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE=true (e.g. the
 * design's 30 s lease renewed every 20 s), the keeper is built with a nominal lease of 2 x renew
 * and a store that writes the configured lease instead:
 *
 *   keeper(leaseMs 40 s nominal, renewMs 20 s) ──acquire/renew──▶ fixedLeaseStore ──▶ rows expire at +30 s
 *
 * The keeper's guard timer works from the `expiresAtMs` the store returns (30 s), so it still
 * aborts a shard's work `marginMs` before the real expiry when no renew has landed. Nothing else
 * changes: the fence in every commit checks the row, not the keeper.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createLeaseKeeper, type LeaseKeeper } from '../../shared/core/lease-keeper.js';
import { createDynamoMembership, type Membership } from '../../shared/core/membership.js';
import type { Lease, LeaseStore } from '../../shared/core/ports.js';
import type { Logger } from '../../shared/log/logger.js';
import type { ResourceNames } from '../../shared/resources.js';

/** Lease key of the single LHV response poller. */
export const RESPONSES_LEASE_KEY = 'payout-responses';
const MEMBERS_KEY = 'payout-members';

/** A LeaseStore that always writes `leaseMs`, whatever the caller asks for. */
export function fixedLeaseStore(inner: LeaseStore, leaseMs: number): LeaseStore {
  return {
    acquire: (key, owner) => inner.acquire(key, owner, leaseMs),
    renew: (lease: Lease) => inner.renew(lease, leaseMs),
    release: (lease) => inner.release(lease),
    inspect: (key) => inner.inspect(key),
  };
}

export function createShardKeeper(options: {
  store: LeaseStore;
  leaseMs: number;
  renewMs: number;
  allowTight: boolean;
  log: Logger;
  onLost?: (lease: Lease, reason: unknown) => void;
}): LeaseKeeper {
  const { leaseMs, renewMs } = options;
  const tight = renewMs * 2 > leaseMs;
  if (tight && !options.allowTight) throw new Error(`shard renew ${renewMs} ms is above half the lease ${leaseMs} ms`);
  if (tight) {
    options.log.warn(
      { leaseMs, renewMs },
      'tight shard lease accepted (PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE): one renewal slower than the slack loses a shard',
    );
  }
  return createLeaseKeeper({
    store: tight ? fixedLeaseStore(options.store, leaseMs) : options.store,
    leaseMs: tight ? renewMs * 2 : leaseMs,
    renewMs,
    marginMs: Math.min(1000, Math.max(20, (leaseMs - renewMs) / 5)),
    ...(options.onLost ? { onLost: options.onLost } : {}),
  });
}

/** Which payout workers are alive (for fair shard shares). */
export type { Membership } from '../../shared/core/membership.js';

/** The payout workers' membership row (shared/core/membership.ts). */
export function createPayoutMembership(options: {
  doc: DynamoDBDocumentClient;
  names: ResourceNames;
  now?: () => number;
}): Membership {
  return createDynamoMembership({
    doc: options.doc,
    tableName: options.names.table('leases'),
    rowKey: MEMBERS_KEY,
    ...(options.now ? { now: options.now } : {}),
  });
}
