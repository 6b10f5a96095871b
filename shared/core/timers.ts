/**
 * Waiting, the one way the fleet does it. Every loop that waits between passes (shard loops, the
 * response poller, readiness, the sweeper, the CLI's watch) waits through these, so "stop" means the
 * same everywhere: a signal ends the wait at once.
 *
 *   sleep(ms, signal)  rejects with the signal's reason when it aborts: for code that must not go on
 *   pause(ms, signal)  resolves early when it aborts: for loops that check their signal themselves
 *
 *   loop:  pass ─ pause(jitter(period), stop) ─ pass ─ pause(…) ─┐ stop aborts: the pause ends now,
 *                                                                └ the loop sees stop.aborted and returns
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Wait `ms`; with `signal`, reject with the signal's reason as soon as it aborts (at once if it has). */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (!signal) return delay(Math.max(0, ms));
  signal.throwIfAborted();
  try {
    await delay(Math.max(0, ms), undefined, { signal });
  } catch (err) {
    // timers/promises rejects with its own AbortError; callers test for the reason they aborted with.
    throw signal.aborted ? signal.reason : err;
  }
}

/** Wait `ms`, or less if `signal` aborts first. Never rejects; resolves at once when already aborted. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || ms <= 0) return Promise.resolve();
  return delay(ms, undefined, signal ? { signal } : undefined).catch(() => undefined);
}

/**
 * `ms` ± `fraction` (20 %) at random, so processes started together do not poll in lock-step.
 * `random` is injectable for tests.
 */
export function jitter(ms: number, fraction = 0.2, random: () => number = Math.random): number {
  return Math.max(0, Math.round(ms * (1 - fraction + 2 * fraction * random())));
}

/**
 * Whether `work` settles within `ms`: true if it did (resolved or rejected), false if the time ran
 * out first. The timer is cleared either way. For grace periods: "let it finish, else abort it".
 */
export async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      expired,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
