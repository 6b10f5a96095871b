/**
 * Time, injectable. Every lease and deadline decision in the core reads a `Clock` so tests can
 * "pause" a process (freeze its clock) while others move on, without sleeping.
 */

/** Epoch milliseconds. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

/** A clock tests move by hand. */
export interface ManualClock {
  readonly now: Clock;
  set(ms: number): void;
  advance(ms: number): void;
}

export function manualClock(startMs = Date.now()): ManualClock {
  let t = startMs;
  return {
    now: () => t,
    set: (ms) => {
      t = ms;
    },
    advance: (ms) => {
      t += ms;
    },
  };
}

const SEVEN_DAYS_SEC = 7 * 24 * 3600;

/** DynamoDB TTL value (epoch seconds) `afterSec` after `epochMs`. @default afterSec 7 days */
export function ttlSeconds(epochMs: number, afterSec = SEVEN_DAYS_SEC): number {
  return Math.floor(epochMs / 1000) + afterSec;
}
