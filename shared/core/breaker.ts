/**
 * Circuit breakers: one per dependency (DynamoDB, the token service, each processor, LHV) per
 * process, fed by the calls themselves (an SDK middleware, the outbound HTTP client) and by the
 * readiness checks, which go through the same clients.
 *
 *   closed ──(failureThreshold failures in a row, from >= distinctKeys different messages)──▶ open
 *   open ──(openMs; doubled after each failed trial, up to maxOpenMs)──▶ half-open
 *   half-open ──(one trial call succeeds)──▶ closed (recovering)   half-open ──(the trial fails)──▶ open
 *   closed (recovering) ──(failureThreshold failures in a row)──▶ open (for twice as long)
 *
 * "Recovering": one good trial does not prove the dependency is back (a probe may pass while real
 * calls still fail). Until as many calls have succeeded as it takes failures to open it, an attempt
 * that fails on this dependency counts as an outage ({@link CircuitBreaker.suspect}): it is parked
 * and re-run, not counted against the message. Reopening still takes failureThreshold failures in a
 * row, as from closed, and then the open period doubles. A single failure does not reopen it: a
 * dependency that answers most calls (DynamoDB throttling one write in three) answers its first
 * calls after a pause with a burst of quick refusals, and reopening on one of them parked every
 * caller again, for longer each time, so the breaker never settled (the issue 16 fault test
 * livelocked so).
 *
 * While a breaker is open its calls fail at once with {@link DependencyUnavailableError}, before
 * anything is sent. What the fleet does with that (docs/operations.md "Outages"):
 *
 *   consumer  receiving ─────┐ dynamodb opens            half-open: probe ✓ closed ┌── receiving
 *                            └─ paused: messages stay in SQS, receive counts do not grow ──┘
 *   message m1   attempt ✗ ─ parked in the process (visibility kept by the heartbeat, no slot held,
 *                              attempt not counted) ──────────────────────── re-run in place ✓
 *
 * Why distinct keys: a message that makes a processor answer 500 for itself alone (a "poison"
 * message) fails again and again with nothing succeeding in between. Counting it as an outage would
 * park it forever; requiring failures from several different messages (the attempt scope's key)
 * keeps one bad message from opening the breaker, so it spends its own attempts and is dead-lettered.
 *
 * Why per process and not shared through DynamoDB: each process learns of an outage within
 * `failureThreshold` of its own calls, at no cost on the hot path and with no dependency on
 * DynamoDB being up to know that something else is down; the price is one trial call per process
 * per open period, which no processor notices.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { RetryableError } from '../errors.js';
import { systemClock, type Clock } from './clock.js';

export type BreakerState = 'closed' | 'half-open' | 'open';

/** A call refused because its dependency's breaker is open: nothing was sent. Retryable. */
export class DependencyUnavailableError extends RetryableError {
  readonly dependency: string;
  constructor(dependency: string, retryAfterMs: number) {
    super('DEPENDENCY_UNAVAILABLE', `${dependency} is unavailable (circuit open); the call was not sent`, { retryAfterMs });
    this.dependency = dependency;
  }
}

/**
 * What one attempt at a message touched: the consumer runs each handler inside a scope, and every
 * breaker that records a failure or refuses a call during it adds itself here. After a failed
 * attempt the consumer asks which of them are down now: those failures are the infrastructure's.
 */
export interface AttemptScope {
  /** Identifies the caller for distinct-key counting (the message group). */
  readonly key: string;
  readonly failed: Set<CircuitBreaker>;
  /**
   * Whether a failure on a breaker that is closed but still recovering may be parked as an outage
   * for this attempt (the consumer allows it a few times per receive). @default true
   */
  readonly parkRecovering?: boolean;
}

/** Would a failure on `b` be parked as an outage in `scope`? Open or half-open: yes; recovering: if the scope allows it. */
export function isOutageFor(b: CircuitBreaker, scope: Pick<AttemptScope, 'parkRecovering'>): boolean {
  return b.failFast && (b.state !== 'closed' || (b.suspect && scope.parkRecovering !== false));
}

const scopes = new AsyncLocalStorage<AttemptScope>();

/** Run `fn` as one attempt at a message; breakers record into `scope` while it runs. */
export function runInAttemptScope<T>(scope: AttemptScope, fn: () => Promise<T>): Promise<T> {
  return scopes.run(scope, fn);
}

/**
 * True when the current attempt hit a dependency that is down now (its breaker is not closed, or
 * closed but still recovering and the attempt may still be parked for it: {@link isOutageFor}) —
 * the consumer parks such an attempt instead of counting it.
 * A handler about to give a message up for exhausted retries checks this first: an outage is not
 * the message's failure.
 */
export function dependencyOutage(): boolean {
  const scope = scopes.getStore();
  if (!scope) return false;
  for (const b of scope.failed) if (isOutageFor(b, scope)) return true;
  return false;
}

export interface BreakerOptions {
  /** The dependency, e.g. `dynamodb`, `stripe`. */
  readonly name: string;
  /** Failures in a row that open the breaker. @default 5 */
  readonly failureThreshold?: number;
  /** ...coming from at least this many different attempt-scope keys. @default 1 */
  readonly distinctKeys?: number;
  /** First open period. @default 1000 */
  readonly openMs?: number;
  /** Longest open period (the period doubles after each failed trial). @default 30000 */
  readonly maxOpenMs?: number;
  /** A trial that reports nothing within this long frees the half-open slot for another. @default 30000 */
  readonly trialTimeoutMs?: number;
  /**
   * `false`: observe and report state, never refuse a call (SQS, whose calls the consumer needs
   * even to hand messages back). @default true
   */
  readonly failFast?: boolean;
  /** @default Date.now */
  readonly now?: Clock;
  /** Every state change, with the reason (for logs and metrics). */
  readonly onTransition?: (breaker: CircuitBreaker, from: BreakerState, to: BreakerState, why: string) => void;
}

/** A call let through; report how it went with exactly one of succeeded/failed/abandoned. */
export interface Admission {
  readonly trial: boolean;
}

const CLOSED_ADMISSION: Admission = Object.freeze({ trial: false });

export class CircuitBreaker {
  readonly name: string;
  readonly failFast: boolean;
  private readonly threshold: number;
  private readonly distinctKeys: number;
  private readonly openMs: number;
  private readonly maxOpenMs: number;
  private readonly trialTimeoutMs: number;
  private readonly now: Clock;
  private readonly onTransition: BreakerOptions['onTransition'];

  private current: 'closed' | 'open' = 'closed';
  /** Successes still needed after a reopen-close before the breaker trusts the dependency again. */
  private recovering = 0;
  private failures = 0;
  private readonly failingKeys = new Set<string>();
  private openUntilMs = 0;
  private period: number;
  private trialStartedAtMs: number | undefined;
  private halfOpenAnnounced = false;
  private timer: NodeJS.Timeout | undefined;
  private probe: ((signal: AbortSignal) => Promise<unknown>) | undefined;
  private usableWaiters: Array<() => void> = [];
  private closedWaiters: Array<() => void> = [];

  constructor(options: BreakerOptions) {
    this.name = options.name;
    this.failFast = options.failFast ?? true;
    this.threshold = options.failureThreshold ?? 5;
    this.distinctKeys = options.distinctKeys ?? 1;
    this.openMs = options.openMs ?? 1000;
    this.maxOpenMs = options.maxOpenMs ?? 30_000;
    this.trialTimeoutMs = options.trialTimeoutMs ?? 30_000;
    this.now = options.now ?? systemClock;
    this.onTransition = options.onTransition;
    this.period = this.openMs;
  }

  get state(): BreakerState {
    if (this.current === 'closed') return 'closed';
    return this.now() >= this.openUntilMs ? 'half-open' : 'open';
  }

  /**
   * Not trusted: open, half-open, or closed but still recovering. An attempt that failed on a
   * suspect dependency is the dependency's failure, not the message's: it is parked, not counted.
   */
  get suspect(): boolean {
    return this.current !== 'closed' || this.recovering > 0;
  }

  /** The open period the breaker would use if it opened now (doubled while it has not recovered). */
  get openPeriodMs(): number {
    return this.period;
  }

  /** True when a probe will run the half-open trial (so nobody needs to send real work as one). */
  get hasProbe(): boolean {
    return this.probe !== undefined;
  }

  /** Milliseconds until a trial may go out (0 when closed or half-open). */
  retryAfterMs(): number {
    return this.current === 'closed' ? 0 : Math.max(0, this.openUntilMs - this.now());
  }

  /**
   * A side-effect-free call that proves the dependency answers (a GetItem, a GET). When set, the
   * breaker runs it as the trial the moment it turns half-open, so a paused consumer resumes
   * without sending a message as the guinea pig. Its call must go through the guarded client.
   */
  setProbe(probe: (signal: AbortSignal) => Promise<unknown>): void {
    this.probe = probe;
  }

  /**
   * Ask to send one call. Closed: yes. Half-open: yes for the first caller (the trial), no for the
   * rest until it reports. Open: no. A refusal throws {@link DependencyUnavailableError} and marks
   * the current attempt as having hit an outage.
   */
  admit(): Admission {
    if (this.current === 'closed' || !this.failFast) return CLOSED_ADMISSION;
    const t = this.now();
    if (t >= this.openUntilMs) {
      this.announceHalfOpen();
      const trialRunning = this.trialStartedAtMs !== undefined && t - this.trialStartedAtMs < this.trialTimeoutMs;
      if (!trialRunning) {
        this.trialStartedAtMs = t;
        return { trial: true };
      }
    }
    scopes.getStore()?.failed.add(this);
    throw new DependencyUnavailableError(this.name, Math.max(this.openUntilMs - t, 0) || this.openMs);
  }

  /** The dependency answered (any answer that proves it works, a 4xx included). */
  succeeded(admission: Admission): void {
    this.failures = 0;
    this.failingKeys.clear();
    if (this.current === 'closed') {
      if (this.recovering > 0) this.recovering -= 1;
      if (this.recovering === 0) this.period = this.openMs;
      return;
    }
    if (admission.trial || !this.failFast) this.close('a call succeeded');
  }

  /** The dependency failed to answer, or answered "unavailable" (5xx, throttled, refused, timed out). */
  failed(admission: Admission, hint: { retryAfterMs?: number } = {}): void {
    scopes.getStore()?.failed.add(this);
    if (this.current === 'open') {
      if (admission.trial) {
        this.trialStartedAtMs = undefined;
        this.period = Math.min(this.maxOpenMs, this.period * 2);
        this.open(hint.retryAfterMs, 'the half-open trial failed');
      }
      return;
    }
    this.failures += 1;
    this.failingKeys.add(scopes.getStore()?.key ?? 'background');
    if (this.failures >= this.threshold && this.failingKeys.size >= this.distinctKeys) {
      const recovering = this.recovering > 0;
      if (recovering) this.period = Math.min(this.maxOpenMs, this.period * 2);
      this.open(hint.retryAfterMs, `${this.failures} failures in a row from ${this.failingKeys.size} callers${recovering ? ' while recovering' : ''}`);
    }
  }

  /** The call ended without saying anything about the dependency (aborted by us, invalid input). */
  abandoned(admission: Admission): void {
    if (admission.trial) this.trialStartedAtMs = undefined;
  }

  /** Resolves once a call may be admitted: closed, or half-open with its trial slot free. */
  whenUsable(signal?: AbortSignal): Promise<void> {
    return this.wait(this.usableWaiters, () => this.usableNow(), signal);
  }

  /** Resolves once the breaker is closed. */
  whenClosed(signal?: AbortSignal): Promise<void> {
    return this.wait(this.closedWaiters, () => this.current === 'closed', signal);
  }

  /** Stop timers (process shutdown). Waiters stay pending; their signals release them. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private usableNow(): boolean {
    if (this.current === 'closed' || !this.failFast) return true;
    const t = this.now();
    if (t < this.openUntilMs) return false;
    return this.trialStartedAtMs === undefined || t - this.trialStartedAtMs >= this.trialTimeoutMs;
  }

  private wait(list: Array<() => void>, ready: () => boolean, signal?: AbortSignal): Promise<void> {
    if (ready()) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const waiter = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = list.indexOf(waiter);
        if (i !== -1) list.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(waiter);
    });
  }

  private open(retryAfterMs: number | undefined, why: string): void {
    const from = this.state;
    this.recovering = 0;
    const hinted = retryAfterMs !== undefined ? Math.min(this.maxOpenMs, retryAfterMs) : 0;
    this.current = 'open';
    this.openUntilMs = this.now() + Math.max(this.period, hinted);
    this.halfOpenAnnounced = false;
    this.failures = 0;
    this.failingKeys.clear();
    this.schedule();
    this.onTransition?.(this, from, 'open', why);
  }

  private close(why: string): void {
    const from = this.state;
    this.current = 'closed';
    this.recovering = this.threshold;
    this.trialStartedAtMs = undefined;
    this.dispose();
    this.onTransition?.(this, from, 'closed', why);
    const waiters = [...this.usableWaiters.splice(0), ...this.closedWaiters.splice(0)];
    for (const w of waiters) w();
  }

  /** Wake waiters when the open period ends; with a probe, send it as the trial. */
  private schedule(): void {
    this.dispose();
    this.timer = setTimeout(() => this.onPeriodEnd(), Math.max(0, this.openUntilMs - this.now()));
    this.timer.unref();
  }

  private onPeriodEnd(): void {
    this.timer = undefined;
    if (this.current !== 'open') return;
    // Timers run on the monotonic clock and `now` on the wall clock: a timer can fire a millisecond
    // before the period is over by `now`. Wait the rest; a probe sent now would be refused as too
    // early, and the next look would come only after trialTimeoutMs (30 s).
    if (this.now() < this.openUntilMs) {
      this.schedule();
      return;
    }
    this.announceHalfOpen();
    if (this.probe) {
      const probe = this.probe;
      void probe(AbortSignal.timeout(this.trialTimeoutMs)).catch(() => undefined);
    } else {
      // One waiter gets the trial slot; if it never uses it, the slot frees after trialTimeoutMs.
      this.usableWaiters.shift()?.();
    }
    // A trial that never reports must not leave the breaker stuck: look again later.
    this.timer = setTimeout(() => this.onTrialTimeout(), this.trialTimeoutMs);
    this.timer.unref();
  }

  /** No verdict within trialTimeoutMs: the trial slot is free again; offer it to the next taker. */
  private onTrialTimeout(): void {
    this.timer = undefined;
    if (this.current !== 'open') return;
    if (this.now() < this.openUntilMs) this.schedule();
    else this.onPeriodEnd();
  }

  private announceHalfOpen(): void {
    if (this.halfOpenAnnounced) return;
    this.halfOpenAnnounced = true;
    this.onTransition?.(this, 'open', 'half-open', 'open period over; a trial may go out');
  }
}

/** Per-dependency defaults: AWS failures are never one message's fault, processor 500s may be. */
export const BREAKER_DEFAULTS: Readonly<Record<string, Omit<BreakerOptions, 'name'>>> = {
  dynamodb: { failureThreshold: 5, distinctKeys: 1 },
  sqs: { failureThreshold: 5, distinctKeys: 1, failFast: false },
  'token-service': { failureThreshold: 5, distinctKeys: 2 },
  stripe: { failureThreshold: 5, distinctKeys: 3 },
  worldpay: { failureThreshold: 5, distinctKeys: 3 },
  chase: { failureThreshold: 5, distinctKeys: 3 },
  // Observe only: LHV failures never dead-letter anything (ingestion does not call the bank; batches
  // back off on their own), and one failing endpoint (heartbeats) must not stop the response poller
  // from draining the bank's answers while ingestion is gated.
  lhv: { failureThreshold: 5, distinctKeys: 1, failFast: false },
};

/** The breakers of one process, created on first use with {@link BREAKER_DEFAULTS}. */
export class Breakers {
  private readonly byName = new Map<string, CircuitBreaker>();
  private readonly listeners: Array<NonNullable<BreakerOptions['onTransition']>> = [];
  private readonly created: Array<(b: CircuitBreaker) => void> = [];

  constructor(private readonly defaults: Omit<BreakerOptions, 'name'> = {}) {}

  get(name: string): CircuitBreaker {
    let b = this.byName.get(name);
    if (!b) {
      b = new CircuitBreaker({
        ...this.defaults,
        ...(BREAKER_DEFAULTS[name] ?? {}),
        name,
        onTransition: (breaker, from, to, why) => {
          for (const l of this.listeners) l(breaker, from, to, why);
        },
      });
      this.byName.set(name, b);
      for (const l of this.created) l(b);
    }
    return b;
  }

  all(): CircuitBreaker[] {
    return [...this.byName.values()];
  }

  /** States by name, for /health/ready and `payfleet status`. */
  snapshot(): Record<string, BreakerState> {
    return Object.fromEntries(this.all().map((b) => [b.name, b.state]));
  }

  onTransition(listener: NonNullable<BreakerOptions['onTransition']>): void {
    this.listeners.push(listener);
  }

  /** Called for every breaker created from now on (and not for earlier ones). */
  onCreate(listener: (b: CircuitBreaker) => void): void {
    this.created.push(listener);
  }

  dispose(): void {
    for (const b of this.all()) b.dispose();
  }
}
