/**
 * Keeps held leases renewed in the background and tells the work under each one, through an
 * AbortSignal, the moment it can no longer trust the lease.
 *
 * Why renew at most halfway (renewMs <= leaseMs / 2), e.g. lease 30 s, renew every 10 s:
 *
 *   0s acquire ── 10s renew ✓ (exp 40s) ── 20s renew ✗ throttled ── 25s retry ✓ (exp 55s) ...
 *   |<────────────── lease 30 s ──────────────>|
 *   A renew that fails at 10 s still leaves ~20 s — at least one more full try — before expiry.
 *   Renewing later than halfway leaves less time than one renew period: a single failed or slow
 *   renew and the lease is gone.
 *
 * The LHV design's 30 s lease with a 20 s renew is tight for exactly that reason:
 *
 *   0s acquire ───────── 20s renew (slow: 11 s) ─────────── 30s EXPIRED ─ 31s renew lands ✗ token 8
 *                                                     ^ B acquires at 30.1 s
 *   only 10 s of slack: one slow renew (3 SDK attempts of 5 s each) and the lease is gone, and a
 *   10 s GC/stop-the-world pause right before the 20 s tick loses it with nothing the process can do.
 *
 * So besides renewing, a guard timer aborts the lease's signal `marginMs` before it expires if no
 * renew has landed, and a renew that fails with LeaseLostError aborts it at once. Work under the
 * lease must watch the signal; its commit is fenced anyway (a lost lease cannot commit), the
 * signal only stops it wasting effort and calling out to processors under a dead lease.
 * All timers are unref'd: the keeper never keeps a process alive.
 *
 * A renew can only be trusted to end because every AWS attempt has a deadline
 * (shared/aws/request-handler.ts), and the worker configuration refuses deadlines whose call budget
 * (all SDK attempts) does not fit in `leaseMs - renewMs - margin`: a renewal whose answer is lost
 * is resent, or fails, while the lease is still ours.
 */
import { classify } from '../errors.js';
import { systemClock, type Clock } from './clock.js';
import { LeaseHeldError, LeaseLostError } from './errors.js';
import type { Lease, LeaseHolder, LeaseStore } from './ports.js';

export interface LeaseKeeperOptions {
  readonly store: LeaseStore;
  /** Lease length requested on acquire/renew. */
  readonly leaseMs: number;
  /** Renew period; must be <= leaseMs / 2. */
  readonly renewMs: number;
  /** Abort a lease's signal this long before its expiry if no renew has landed. @default min(1000, leaseMs / 10) */
  readonly marginMs?: number;
  /** @default Date.now */
  readonly now?: Clock;
  /** Called once when a held lease is given up as lost (for logs/metrics). */
  readonly onLost?: (lease: Lease, reason: unknown) => void;
}

/** A lease under the keeper's care. */
export interface HeldLease {
  /** The lease as last renewed (owner and token never change; expiresAtMs moves on). */
  readonly lease: Lease;
  /** Aborted (reason: LeaseLostError) when the lease is lost or about to expire unrenewed. */
  readonly signal: AbortSignal;
  /** Stop renewing and release the row. Idempotent. */
  release(): Promise<void>;
  /**
   * Stop renewing without writing anything: the lease was given back by the attempt's own last
   * commit (a row lease is released in write 2), or its row is gone. Idempotent.
   */
  drop(): void;
}

export interface LeaseKeeper {
  /** Take `key` for `owner` and keep it; a lease held by someone else is reported, not thrown. */
  acquire(
    key: string,
    owner: string,
  ): Promise<{ held: HeldLease } | { held: undefined; holder: LeaseHolder; error: LeaseHeldError }>;
  /** Keep an already-acquired lease renewed. */
  hold(lease: Lease): HeldLease;
  /** Leases currently kept. */
  readonly size: number;
  /** Stop every renewal and release every lease (shutdown). Never throws. */
  releaseAll(): Promise<void>;
}

/**
 * How long before expiry the keeper gives a lease up when no renew has landed, unless told
 * otherwise. The worker configuration uses it too: every AWS call must end before this point.
 */
export function defaultLeaseMarginMs(leaseMs: number): number {
  return Math.min(1000, leaseMs / 10);
}

const toHolderOf = (l: Lease): LeaseHolder => ({ owner: l.owner, fencingToken: l.fencingToken, expiresAtMs: l.expiresAtMs });

export function createLeaseKeeper(options: LeaseKeeperOptions): LeaseKeeper {
  const { store, leaseMs, renewMs } = options;
  if (!(renewMs > 0) || !(leaseMs > 0) || renewMs > leaseMs / 2) {
    throw new Error(
      `lease keeper: renewMs (${renewMs}) must be > 0 and <= leaseMs / 2 (${leaseMs / 2}); renewing later leaves no room for one failed renew`,
    );
  }
  const now = options.now ?? systemClock;
  const marginMs = options.marginMs ?? defaultLeaseMarginMs(leaseMs);
  const kept = new Map<string, Entry>();
  /** Releases still in flight, so releaseAll() can wait for those of lost leases too. */
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>): Promise<void> => {
    const q = p.catch(() => undefined).finally(() => inFlight.delete(q));
    inFlight.add(q);
    return q;
  };

  interface Entry {
    lease: Lease;
    readonly controller: AbortController;
    renewTimer?: NodeJS.Timeout;
    guardTimer?: NodeJS.Timeout;
    stopped: boolean;
    releasing?: Promise<void>;
  }

  function schedule(entry: Entry, delayMs: number): void {
    entry.renewTimer = setTimeout(() => void renew(entry), Math.max(0, delayMs));
    entry.renewTimer.unref();
  }

  function armGuard(entry: Entry): void {
    if (entry.guardTimer) clearTimeout(entry.guardTimer);
    const fireIn = entry.lease.expiresAtMs - marginMs - now();
    entry.guardTimer = setTimeout(
      () => {
        // A renew may have landed while this timer was queued behind a pause: check again.
        if (!entry.stopped && now() >= entry.lease.expiresAtMs - marginMs) {
          lose(entry, new LeaseLostError(entry.lease, undefined, { detail: 'about to expire with no renew landed' }));
        }
      },
      Math.max(0, fireIn),
    );
    entry.guardTimer.unref();
  }

  function stop(entry: Entry): void {
    entry.stopped = true;
    if (entry.renewTimer) clearTimeout(entry.renewTimer);
    if (entry.guardTimer) clearTimeout(entry.guardTimer);
    if (kept.get(entry.lease.key) === entry) kept.delete(entry.lease.key);
  }

  function lose(entry: Entry, reason: LeaseLostError): void {
    if (entry.stopped) return;
    stop(entry);
    entry.controller.abort(reason);
    // Given up by our own judgement (no renew landed): the row may still name us; hand it back so
    // the next holder need not wait out the expiry. Fenced on our token, so harmless if taken.
    if (!reason.holder) entry.releasing = track(store.release(entry.lease));
    options.onLost?.(entry.lease, reason);
  }

  async function renew(entry: Entry): Promise<void> {
    if (entry.stopped) return;
    // Woken late (event-loop stall, GC pause) past the point of safety: do not pretend.
    if (now() >= entry.lease.expiresAtMs - marginMs) {
      lose(entry, new LeaseLostError(entry.lease, undefined, { detail: 'renew came too late (process paused?)' }));
      return;
    }
    try {
      const renewed = await store.renew(entry.lease, leaseMs);
      if (entry.stopped) {
        // Declared lost (or released) while this renew was in flight: the row is ours again
        // until its new expiry; give it back so the next holder need not wait for it.
        const successor = kept.get(renewed.key);
        if (successor?.lease.fencingToken !== renewed.fencingToken) await track(store.release(renewed));
        return;
      }
      entry.lease = renewed;
      armGuard(entry);
      schedule(entry, renewMs);
    } catch (err) {
      if (entry.stopped) return;
      if (err instanceof LeaseLostError) {
        lose(entry, err);
        return;
      }
      // Transient (throttling, TransactionConflict with a commit's fence check, network): try
      // again sooner than a full period, while the guard timer watches the expiry.
      if (classify(err) === 'terminal') {
        lose(entry, new LeaseLostError(entry.lease, undefined, { cause: err, detail: 'renew failed terminally' }));
        return;
      }
      const left = entry.lease.expiresAtMs - marginMs - now();
      schedule(entry, Math.min(renewMs, Math.max(50, left / 3)));
    }
  }

  function hold(lease: Lease): HeldLease {
    const previous = kept.get(lease.key);
    if (previous && previous.lease.owner === lease.owner && previous.lease.fencingToken === lease.fencingToken) {
      return view(previous); // already kept: one renewal loop per lease
    }
    // A newer acquire of the same key supersedes the old one: its work must stop.
    if (previous)
      lose(previous, new LeaseLostError(previous.lease, toHolderOf(lease), { detail: 'superseded by a newer acquire' }));
    const entry: Entry = { lease, controller: new AbortController(), stopped: false };
    kept.set(lease.key, entry);
    armGuard(entry);
    // A lease recognised after a lost answer (dynamo-leases.ts) may come with less than a full
    // lease left: renew it halfway to its guard rather than a whole period later.
    schedule(entry, Math.min(renewMs, (lease.expiresAtMs - marginMs - now()) / 2));
    return view(entry);
  }

  function view(entry: Entry): HeldLease {
    return {
      get lease() {
        return entry.lease;
      },
      signal: entry.controller.signal,
      release: () => releaseEntry(entry),
      drop: () => {
        if (entry.releasing) return;
        const wasLost = entry.controller.signal.aborted;
        stop(entry);
        if (!wasLost) entry.controller.abort(new LeaseLostError(entry.lease, undefined, { detail: 'released by its commit' }));
        entry.releasing = Promise.resolve();
      },
    };
  }

  function releaseEntry(entry: Entry): Promise<void> {
    if (!entry.releasing) {
      const wasLost = entry.controller.signal.aborted;
      stop(entry);
      // Work still running under the lease must stop too; the reason says why.
      if (!wasLost) entry.controller.abort(new LeaseLostError(entry.lease, undefined, { detail: 'released' }));
      entry.releasing = wasLost ? Promise.resolve() : track(store.release(entry.lease));
    }
    return entry.releasing;
  }

  return {
    async acquire(key, owner) {
      const result = await store.acquire(key, owner, leaseMs);
      if (result.acquired) return { held: hold(result.lease) };
      return { held: undefined, holder: result.holder, error: new LeaseHeldError(key, result.holder, now()) };
    },
    hold,
    get size() {
      return kept.size;
    },
    async releaseAll() {
      await Promise.all([...kept.values()].map((e) => releaseEntry(e)));
      await Promise.all([...inFlight]);
    },
  };
}
