import { describe, expect, it } from 'vitest';
import { manualClock } from '../../shared/core/clock.js';
import {
  Breakers,
  CircuitBreaker,
  DependencyUnavailableError,
  dependencyOutage,
  isOutageFor,
  runInAttemptScope,
  type AttemptScope,
} from '../../shared/core/breaker.js';

const scope = (key: string): AttemptScope => ({ key, failed: new Set() });

/** Fail one call of `b` as if made by the message `key`. */
function failAs(b: CircuitBreaker, key: string, hint: { retryAfterMs?: number } = {}) {
  return runInAttemptScope(scope(key), async () => b.failed(b.admit(), hint));
}

describe('CircuitBreaker', () => {
  it('opens after failureThreshold failures in a row and refuses calls without sending them', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 3, openMs: 1000, now: clock.now });
    await failAs(b, 'a');
    await failAs(b, 'b');
    expect(b.state).toBe('closed');
    await failAs(b, 'c');
    expect(b.state).toBe('open');
    expect(() => b.admit()).toThrow(DependencyUnavailableError);
    b.dispose();
  });

  it('a success in between resets the count: intermittent failures never open it', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 3, now: clock.now });
    for (let i = 0; i < 10; i++) {
      await failAs(b, 'a');
      await failAs(b, 'b');
      b.succeeded(b.admit());
    }
    expect(b.state).toBe('closed');
  });

  it('one poison message failing alone never opens a breaker that needs distinct callers', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'stripe', failureThreshold: 3, distinctKeys: 3, now: clock.now });
    for (let i = 0; i < 20; i++) await failAs(b, 'poison-charge');
    expect(b.state).toBe('closed');
    await failAs(b, 'other-1');
    await failAs(b, 'other-2');
    expect(b.state).toBe('open');
    b.dispose();
  });

  it('half-open after the open period: exactly one trial goes out; its success closes the breaker', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 1, openMs: 1000, now: clock.now });
    await failAs(b, 'a');
    clock.advance(999);
    expect(b.state).toBe('open');
    clock.advance(1);
    expect(b.state).toBe('half-open');
    const trial = b.admit();
    expect(trial.trial).toBe(true);
    expect(() => b.admit()).toThrow(DependencyUnavailableError);
    b.succeeded(trial);
    expect(b.state).toBe('closed');
    expect(b.admit().trial).toBe(false);
  });

  it('a failed trial reopens it for twice as long, up to maxOpenMs; a Retry-After hint lengthens the period', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'stripe', failureThreshold: 1, openMs: 1000, maxOpenMs: 3000, now: clock.now });
    await failAs(b, 'a');
    const periods: number[] = [];
    for (let i = 0; i < 3; i++) {
      clock.advance(b.retryAfterMs());
      const trial = b.admit();
      b.failed(trial);
      periods.push(b.retryAfterMs());
    }
    expect(periods).toEqual([2000, 3000, 3000]);
    clock.advance(b.retryAfterMs());
    b.succeeded(b.admit());
    b.succeeded(b.admit()); // recovered: the period is back to openMs
    await failAs(b, 'a', { retryAfterMs: 2500 });
    expect(b.retryAfterMs()).toBe(2500);
    b.dispose();
  });

  it('after a good trial it is recovering: a failure then is an outage for its attempt (suspect) but does not reopen it; failureThreshold failures in a row do, for twice as long', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'token-service', failureThreshold: 3, openMs: 1000, now: clock.now });
    for (const k of ['a', 'b', 'c']) await failAs(b, k);
    clock.advance(1000);
    b.succeeded(b.admit()); // the probe passed
    expect(b.state).toBe('closed');
    expect(b.suspect).toBe(true);
    const s = scope('m1');
    const outage = await runInAttemptScope(s, async () => {
      b.failed(b.admit());
      return dependencyOutage();
    });
    expect({ state: b.state, outage, failed: [...s.failed] }).toEqual({ state: 'closed', outage: true, failed: [b] });
    await failAs(b, 'm2');
    await failAs(b, 'm3');
    expect(b.state).toBe('open');
    expect(b.retryAfterMs()).toBe(2000);
    // Once recovered (three successes), it is trusted again and takes three failures again.
    clock.advance(2000);
    for (let i = 0; i < 4; i++) b.succeeded(b.admit());
    expect(b.suspect).toBe(false);
    expect(b.openPeriodMs).toBe(1000);
    await failAs(b, 'a');
    await failAs(b, 'b');
    expect(b.state).toBe('closed');
    b.dispose();
  });

  it('dependencyOutage agrees with what the consumer parks: recovering counts only while the attempt may still be parked for it; open always counts', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 3, openMs: 1000, now: clock.now });
    for (const k of ['a', 'b', 'c']) await failAs(b, k);
    const failedIn = (parkRecovering: boolean) =>
      runInAttemptScope({ key: 'm', failed: new Set(), parkRecovering }, async () => {
        try {
          b.failed(b.admit());
        } catch {
          /* refused: open */
        }
        return dependencyOutage();
      });
    expect(await failedIn(false)).toBe(true); // open: an outage whatever the scope allows
    clock.advance(1000);
    b.succeeded(b.admit()); // the trial: closed, recovering
    expect(await failedIn(true)).toBe(true); // parked: not the message's failure
    expect(await failedIn(false)).toBe(false); // its parks for this receive used up: counted
    expect(b.state).toBe('closed');
    expect(isOutageFor(b, {})).toBe(true);
    for (let i = 0; i < 3; i++) b.succeeded(b.admit()); // recovered
    expect(isOutageFor(b, {})).toBe(false);
    b.dispose();
  });

  it('while recovering, a dependency that answers most calls (one write in three refused, refusals first) stays closed and recovers', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 5, openMs: 1000, now: clock.now });
    for (const k of ['a', 'b', 'c', 'd', 'e']) await failAs(b, k);
    clock.advance(1000);
    b.succeeded(b.admit()); // the probe passed: closed, recovering
    // The parked callers' first answers: the quick refusals come back first, then the rest.
    for (const k of ['m1', 'm2', 'm3', 'm4']) await failAs(b, k);
    for (let i = 0; i < 8; i++) b.succeeded(b.admit());
    // Then two answered, one refused, over and over.
    for (let i = 0; i < 6; i++) {
      b.succeeded(b.admit());
      b.succeeded(b.admit());
      await failAs(b, `n${i}`);
      expect(b.state).toBe('closed');
    }
    expect(b.suspect).toBe(false);
    expect(b.openPeriodMs).toBe(1000);
    b.dispose();
  });

  it('a trial that never reports frees its slot after trialTimeoutMs', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'x', failureThreshold: 1, openMs: 100, trialTimeoutMs: 5000, now: clock.now });
    await failAs(b, 'a');
    clock.advance(100);
    expect(b.admit().trial).toBe(true);
    clock.advance(4999);
    expect(() => b.admit()).toThrow(DependencyUnavailableError);
    clock.advance(1);
    expect(b.admit().trial).toBe(true);
    b.dispose();
  });

  it('calls in flight when it opened do not close or reopen it: only the trial decides', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'x', failureThreshold: 2, openMs: 1000, now: clock.now });
    const early = b.admit();
    await failAs(b, 'a');
    await failAs(b, 'b');
    expect(b.state).toBe('open');
    b.succeeded(early);
    expect(b.state).toBe('open');
    b.dispose();
  });

  it('an observe-only breaker (failFast false) never refuses, reports open, and closes on the next success', async () => {
    const b = new CircuitBreaker({ name: 'sqs', failureThreshold: 2, failFast: false });
    await failAs(b, 'a');
    await failAs(b, 'b');
    expect(b.state).toBe('open');
    const a = b.admit();
    b.succeeded(a);
    expect(b.state).toBe('closed');
  });

  it('whenUsable: waiters wake when the period ends (one as the trial) and all of them when it closes', async () => {
    const b = new CircuitBreaker({ name: 'stripe', failureThreshold: 1, openMs: 30 });
    await failAs(b, 'a');
    const woke: string[] = [];
    const w1 = b.whenUsable().then(() => woke.push('w1'));
    const w2 = b.whenUsable().then(() => woke.push('w2'));
    await w1;
    // The first waiter was offered the trial; the second waits for its verdict.
    expect(woke).toEqual(['w1']);
    const trial = b.admit();
    expect(trial.trial).toBe(true);
    b.succeeded(trial);
    await w2;
    expect(woke).toEqual(['w1', 'w2']);
  });

  it('with a probe, the breaker runs it as its own trial when the period ends and closes on its success', async () => {
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 1, openMs: 30 });
    let probes = 0;
    b.setProbe(async () => {
      probes++;
      b.succeeded(b.admit());
    });
    await failAs(b, 'a');
    await b.whenClosed(AbortSignal.timeout(10_000));
    expect(probes).toBe(1);
    expect(b.state).toBe('closed');
  });

  it('a period timer that fires before the clock says the period is over waits the rest, then probes (timers and the clock can disagree)', async () => {
    const clock = manualClock(1_000_000);
    const b = new CircuitBreaker({ name: 'dynamodb', failureThreshold: 1, openMs: 20, now: clock.now });
    let probes = 0;
    b.setProbe(async () => {
      probes++;
      b.succeeded(b.admit());
    });
    await failAs(b, 'a');
    // The 20 ms timer fires (more than once) while, by the breaker's clock, the period is not over.
    await new Promise((r) => setTimeout(r, 80));
    expect({ state: b.state, probes }).toEqual({ state: 'open', probes: 0 });
    clock.advance(20);
    await b.whenClosed(AbortSignal.timeout(5_000));
    expect(probes).toBe(1);
    b.dispose();
  });

  it('whenUsable rejects when its signal aborts (shutdown), and forgets the waiter', async () => {
    const b = new CircuitBreaker({ name: 'x', failureThreshold: 1, openMs: 60_000 });
    await failAs(b, 'a');
    const ac = new AbortController();
    const waiting = b.whenUsable(ac.signal);
    ac.abort(new Error('shutdown'));
    await expect(waiting).rejects.toThrow('shutdown');
    b.dispose();
  });
});

describe('dependencyOutage', () => {
  it('is true inside an attempt that hit a breaker which is now open, false otherwise', async () => {
    const b = new CircuitBreaker({ name: 'stripe', failureThreshold: 2, distinctKeys: 1 });
    const results: boolean[] = [];
    await runInAttemptScope(scope('m1'), async () => {
      b.failed(b.admit());
      results.push(dependencyOutage());
    });
    await runInAttemptScope(scope('m2'), async () => {
      b.failed(b.admit());
      results.push(dependencyOutage());
    });
    await runInAttemptScope(scope('m3'), async () => {
      results.push(dependencyOutage());
      expect(() => b.admit()).toThrow(DependencyUnavailableError);
      results.push(dependencyOutage());
    });
    expect(results).toEqual([false, true, false, true]);
    expect(dependencyOutage()).toBe(false);
    b.dispose();
  });
});

describe('Breakers', () => {
  it('creates one breaker per dependency with its defaults, reports transitions and snapshots', async () => {
    const breakers = new Breakers();
    const seen: string[] = [];
    breakers.onTransition((b, from, to) => seen.push(`${b.name}:${from}->${to}`));
    const d = breakers.get('dynamodb');
    expect(breakers.get('dynamodb')).toBe(d);
    for (let i = 0; i < 5; i++) await failAs(d, 'k');
    expect(breakers.snapshot()).toEqual({ dynamodb: 'open' });
    expect(seen).toEqual(['dynamodb:closed->open']);
    expect(breakers.get('sqs').failFast).toBe(false);
    breakers.dispose();
  });
});
