import { ChangeMessageVisibilityCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { Consumer } from 'sqs-consumer';
import { MessageParseError, classify, toPayfleetError, type PayfleetError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { CoreMetrics } from '../ops/metrics.js';
import type { ResilienceMetrics } from '../ops/resilience-metrics.js';
import { backoffMs, type BackoffPolicy } from './backoff.js';
import { isOutageFor, runInAttemptScope, type Breakers, type CircuitBreaker } from './breaker.js';
import { sendToDlq } from './dlq.js';
import { GroupScheduler, type YieldSlot } from './group-scheduler.js';
import { DeleteBatcher, VisibilityBatcher } from './sqs-batcher.js';
import type { ReceiveGate } from './receive-gate.js';
import { settlesWithin, sleep } from './timers.js';

/** What a handler may ask for instead of plain success. */
export type HandlerResult =
  | { readonly action: 'ack' }
  /**
   * Put the message back for `delaySec` (deferred retry, "not ready yet"). `countsAsAttempt`
   * false means the consumer's max-attempts budget is not charged (payout readiness gating).
   */
  | { readonly action: 'defer'; readonly delaySec: number; readonly countsAsAttempt?: boolean; readonly reason?: string }
  | { readonly action: 'dead-letter'; readonly code: string; readonly detail: string };

export interface HandlerContext {
  readonly messageId: string;
  readonly groupId: string;
  /** SQS ApproximateReceiveCount of this delivery. */
  readonly receiveCount: number;
  /** Aborted when the process is shutting down past its grace period. */
  readonly signal: AbortSignal;
  /** Child logger carrying messageId and groupId. */
  readonly log: Logger;
  /**
   * Report the attempt number as counted on the work item (which survives redrives and is not
   * fooled by deliveries that never reached the handler). The larger of this and the receive
   * count drives backoff and exhaustion.
   */
  setAttempts(attempts: number): void;
  /**
   * Attempts of this delivery that were re-run in place after a dependency outage. They are the
   * infrastructure's, not the message's: a work item's attempt count minus these is what counts.
   */
  readonly uncountedAttempts?: number;
}

export interface FifoConsumerOptions<T> {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly dlqUrl: string;
  /** Name used in logs, metrics and the `payfleet-source-queue` attribute. */
  readonly queueName: string;
  readonly worker: string;
  /** Parse and validate a body; throw MessageParseError (or anything) for bad input. */
  readonly parse: (body: string, message: Message) => T;
  readonly handle: (message: T, ctx: HandlerContext) => Promise<HandlerResult | void>;
  /** Messages processed at once, across groups. Pollers = ceil(concurrency / batchSize). */
  readonly concurrency: number;
  /** @default 10 */
  readonly batchSize?: number;
  /** Long-poll wait. @default 20 */
  readonly waitTimeSec?: number;
  /** Visibility on receive and on each heartbeat. @default 30 */
  readonly visibilityTimeoutSec?: number;
  /** @default visibilityTimeoutSec / 3 */
  readonly heartbeatSec?: number;
  /** Attempts before RETRIES_EXHAUSTED. @default 8 */
  readonly maxAttempts?: number;
  readonly backoff?: BackoffPolicy;
  readonly logger: Logger;
  readonly metrics?: CoreMetrics;
  /**
   * Checked per message before handling: a result here is used instead of the handler's (payout: a
   * message received just before its worker lost its last shard is handed back, not counted).
   */
  readonly acceptGate?: () => HandlerResult | undefined;
  /** The worker's own pause switch: while it is paused, nothing is received (see {@link ReceiveGate}). */
  readonly gate?: ReceiveGate;
  /**
   * The process' circuit breakers. With them, an attempt that failed because a dependency is down
   * (its breaker opened) is parked in the process instead of retried: it keeps its visibility, gives
   * its slot up, spends no attempt, and runs again when the dependency is back.
   */
  readonly breakers?: Breakers;
  /** Dependencies every message needs (e.g. dynamodb): while one is down, nothing is received. */
  readonly gating?: readonly string[];
  readonly resilience?: ResilienceMetrics;
  /** Parked messages at most; past it, receiving pauses. @default concurrency * 10 */
  readonly maxParked?: number;
  /**
   * Deletes are sent when every message of their receive has settled (one `DeleteMessageBatch` per
   * receive); a message whose receive-mates are still in work (a slow processor call, a parked
   * message) waits at most this long for them. Holding a committed message's delete costs only its
   * place in SQS's in-flight count (the heartbeat keeps it invisible) and, after a crash, a
   * redelivery its work item answers as a duplicate; too short a wait splits receives whose
   * handlers finish a few hundred milliseconds apart. @default 1000
   */
  readonly ackLingerMs?: number;
}

const DEFAULT_ACK_LINGER_MS = 1000;

/** The messages of one ReceiveMessage answer whose fate (delete or hand-back) is not decided yet. */
interface Receive {
  open: number;
}

/** A parked message is handed back before SQS's 12-hour visibility ceiling would be reached. */
const MAX_HOLD_MS = 11 * 3600_000;
/**
 * How often one message may be parked, uncounted, in one receive on a breaker that is closed but
 * still recovering before its failures count again: an outage's failures are parked, but a message
 * that fails alone (a poison message while its processor's breaker recovers) must still spend its
 * own attempts.
 */
const MAX_RECOVERING_PARKS = 3;

interface Held {
  readonly message: Message;
  readonly receive: Receive;
  readonly receivedAtMs: number;
  /** When our current visibility runs out (local clock). */
  visibleAtMs: number;
  settled: boolean;
  /** Its delete was queued or its hand-back started: nothing more is decided about it here. */
  decided: boolean;
  /** In-place re-runs after an outage (not charged to the message). */
  uncounted: number;
  /** Of those, the ones parked on a breaker that was closed but still recovering. */
  recoveringParks: number;
}

type Verdict = 'continue' | 'stop-lane' | { readonly park: readonly CircuitBreaker[] };

const MAX_VISIBILITY_SEC = 43_200;

/**
 * A FIFO-correct consumer built on sqs-consumer, which only polls here: each poller's
 * `preReceiveMessageCallback` waits for capacity, and its batch handler hands messages to a
 * {@link GroupScheduler} and returns at once. So a slow message holds its own group only, never a
 * poller, and several pollers let concurrency exceed one receive's 10 messages.
 *
 * Every message is deleted only after its handler resolved (its result committed), through batched
 * deletes whose `Failed` entries are checked, one `DeleteMessageBatch` per receive once all of its
 * messages have settled (see {@link FifoConsumer.decide}). Held messages have their visibility
 * extended by a heartbeat until they are settled.
 */
export class FifoConsumer<T> {
  private readonly pollers: Consumer[] = [];
  private readonly scheduler: GroupScheduler<Held>;
  private readonly held = new Set<Held>();
  private readonly deletes: DeleteBatcher;
  private readonly visibility: VisibilityBatcher;
  private readonly abort = new AbortController();
  /** Aborted when shutdown begins: parked messages and paused pollers stop waiting. */
  private readonly stop = new AbortController();
  private parked = 0;
  private paused: string | undefined;
  private parkedWaiters: Array<() => void> = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private stopping = false;
  private closed: Promise<void> | undefined;
  private readonly o: Required<
    Omit<
      FifoConsumerOptions<T>,
      'metrics' | 'acceptGate' | 'gate' | 'heartbeatSec' | 'breakers' | 'gating' | 'resilience' | 'maxParked' | 'ackLingerMs'
    >
  > &
    Pick<FifoConsumerOptions<T>, 'metrics' | 'acceptGate' | 'gate' | 'breakers' | 'resilience'> & {
      heartbeatSec: number;
      gating: readonly string[];
      maxParked: number;
    };

  constructor(options: FifoConsumerOptions<T>) {
    const visibilityTimeoutSec = options.visibilityTimeoutSec ?? 30;
    this.o = {
      batchSize: 10,
      waitTimeSec: 20,
      maxAttempts: 8,
      backoff: { baseMs: 1000, maxMs: 300_000 },
      ...options,
      gating: options.gating ?? [],
      maxParked: options.maxParked ?? options.concurrency * 10,
      visibilityTimeoutSec,
      heartbeatSec: options.heartbeatSec ?? Math.max(1, Math.floor(visibilityTimeoutSec / 3)),
    };
    if (this.o.heartbeatSec * 2 > visibilityTimeoutSec) {
      throw new Error(`heartbeatSec (${this.o.heartbeatSec}) must be at most half of visibilityTimeoutSec (${visibilityTimeoutSec})`);
    }
    this.scheduler = new GroupScheduler<Held>(
      this.o.concurrency,
      (h, yieldSlot) => this.process(h, yieldSlot),
      (dropped) => void this.handBack(dropped, 0, 'group short-circuited after a failure'),
    );
    this.deletes = new DeleteBatcher(this.o.sqs, this.o.queueUrl, options.ackLingerMs ?? DEFAULT_ACK_LINGER_MS);
    this.visibility = new VisibilityBatcher(this.o.sqs, this.o.queueUrl);
  }

  /** Messages currently held (received, not yet deleted or handed back). */
  get inFlight(): number {
    return this.held.size;
  }

  /** Messages parked waiting for a dependency. */
  get parkedCount(): number {
    return this.parked;
  }

  /** What receiving waits for, while paused: a dependency, parked messages, or the worker's gate. */
  get pausedFor(): string | undefined {
    return this.paused ?? this.o.gate?.pausedFor;
  }

  start(): void {
    const pollers = Math.max(1, Math.ceil(this.o.concurrency / this.o.batchSize));
    for (let i = 0; i < pollers; i++) {
      const poller = Consumer.create({
        sqs: this.o.sqs,
        queueUrl: this.o.queueUrl,
        batchSize: this.o.batchSize,
        waitTimeSeconds: this.o.waitTimeSec,
        visibilityTimeout: this.o.visibilityTimeoutSec,
        messageSystemAttributeNames: ['All'],
        messageAttributeNames: ['All'],
        shouldDeleteMessages: false,
        suppressFifoWarning: true,
        strictReturn: true,
        // Back-pressure: do not ask SQS for more than we can start soon. Rejecting while stopping
        // ends the poll loop without opening one more long poll.
        preReceiveMessageCallback: async () => {
          if (this.stopping) throw new Error('consumer stopping');
          await this.scheduler.waitForCapacity(this.o.concurrency);
          await this.waitForDependencies().catch(() => undefined);
          if (this.stopping) throw new Error('consumer stopping');
        },
        handleMessageBatch: async (messages: Message[]) => {
          this.accept(messages);
          return [];
        },
      });
      poller.on('error', (err: Error) => {
        if (!this.stopping) this.o.logger.warn({ err }, 'receive failed; sqs-consumer retries');
      });
      poller.start();
      this.pollers.push(poller);
    }
    this.heartbeat = setInterval(() => this.beat(), this.o.heartbeatSec * 1000);
    this.heartbeat.unref();
  }

  private accept(messages: Message[]): void {
    const now = Date.now();
    const receive: Receive = { open: messages.length };
    for (const message of messages) {
      const h: Held = {
        message,
        receive,
        receivedAtMs: now,
        visibleAtMs: now + this.o.visibilityTimeoutSec * 1000,
        settled: false,
        decided: false,
        uncounted: 0,
        recoveringParks: 0,
      };
      this.held.add(h);
      this.o.metrics?.received.inc({ queue: this.o.queueName });
      if (this.stopping) {
        // A long poll that was already open when shutdown began: hand these straight back.
        void this.handBack([h], 0, 'shutting down');
        continue;
      }
      this.scheduler.push(message.Attributes?.MessageGroupId ?? '', h);
    }
    this.o.metrics?.inFlight.set({ queue: this.o.queueName }, this.held.size);
  }

  /**
   * Handle one message; the verdict tells the scheduler whether its group may go on. An attempt
   * that hit a dependency outage is parked and re-run in place, without a new receive.
   */
  private async process(h: Held, yieldSlot: YieldSlot): Promise<'continue' | 'stop-lane'> {
    for (;;) {
      const verdict = await this.attempt(h);
      if (typeof verdict === 'string') return verdict;
      if (!(await this.park(h, verdict.park, yieldSlot))) return 'stop-lane';
      h.uncounted += 1;
    }
  }

  private async attempt(h: Held): Promise<Verdict> {
    const { message } = h;
    const messageId = message.MessageId ?? '';
    const groupId = message.Attributes?.MessageGroupId ?? '';
    const receiveCount = Number(message.Attributes?.ApproximateReceiveCount ?? '1');
    const log = this.o.logger.child({ messageId, groupId });
    const started = performance.now();
    let attempts = receiveCount;
    const observe = (outcome: string) =>
      this.o.metrics?.processing.observe({ queue: this.o.queueName, outcome }, (performance.now() - started) / 1000);

    if (this.stopping) {
      await this.handBack([h], 0, 'shutting down');
      return 'stop-lane';
    }
    const scope = { key: groupId || messageId, failed: new Set<CircuitBreaker>(), parkRecovering: h.recoveringParks < MAX_RECOVERING_PARKS };
    try {
      const gated = this.o.acceptGate?.();
      const result: HandlerResult | void =
        gated ??
        (await runInAttemptScope(scope, () =>
          this.o.handle(this.parse(message, messageId), {
            messageId,
            groupId,
            receiveCount,
            signal: this.abort.signal,
            log,
            uncountedAttempts: h.uncounted,
            setAttempts: (n) => {
              attempts = Math.max(receiveCount, n - h.uncounted);
            },
          }),
        ));
      const r = result ?? { action: 'ack' as const };
      if (r.action === 'ack') {
        this.ack(h, log, true);
        observe('success');
        return 'continue';
      }
      if (r.action === 'dead-letter') {
        await this.deadLetter(h, { code: r.code, detail: r.detail, attempts }, log);
        observe('dead-lettered');
        return 'continue';
      }
      this.o.metrics?.deferred.inc({ queue: this.o.queueName });
      if (r.countsAsAttempt !== false && attempts >= this.o.maxAttempts) {
        await this.deadLetter(h, { code: 'RETRIES_EXHAUSTED', detail: r.reason ?? 'deferred too many times', attempts }, log);
        observe('dead-lettered');
        return 'continue';
      }
      log.debug({ delaySec: r.delaySec, reason: r.reason }, 'deferred');
      await this.handBack([h], r.delaySec, r.reason ?? 'deferred');
      observe('deferred');
      return 'stop-lane';
    } catch (err) {
      const e = toPayfleetError(err);
      // An outage is not the message's failure: if a dependency this attempt needed is down now,
      // wait for it instead of spending an attempt (and a receive) on it.
      // The same rule the handler saw through dependencyOutage(), so both agree on what is parked.
      const down = e.kind === 'terminal' ? [] : [...scope.failed].filter((b) => isOutageFor(b, scope));
      if (down.length > 0 && !this.stopping) {
        log.warn(
          { code: e.code, dependencies: down.map((b) => b.name), uncountedAttempts: h.uncounted + 1 },
          'dependency down: message parked until it recovers (attempt not counted)',
        );
        observe('parked');
        return { park: down };
      }
      return this.fail(h, e, attempts, log, observe);
    }
  }

  /**
   * Wait, off the scheduler's slots, until every breaker in `down` lets a call through; the
   * message stays held (the heartbeat keeps it invisible) and its group waits behind it. Returns
   * false when the message was handed back instead: shutdown, or SQS's visibility ceiling near.
   */
  private async park(h: Held, down: readonly CircuitBreaker[], yieldSlot: YieldSlot): Promise<boolean> {
    this.setParked(+1);
    const holdUntil = h.receivedAtMs + MAX_HOLD_MS;
    const signal = AbortSignal.any([this.stop.signal, AbortSignal.timeout(Math.max(0, holdUntil - Date.now()))]);
    let resumed = true;
    try {
      await yieldSlot(
        (async () => {
          if (down.some((b) => b.state === 'closed')) h.recoveringParks += 1;
          for (const b of down) {
            // Closed but recovering: re-run after the pause an open period would have given, not at once.
            if (b.state === 'closed') await sleep(b.openPeriodMs, signal);
            await b.whenUsable(signal);
          }
        })(),
      );
    } catch {
      resumed = false;
    } finally {
      this.setParked(-1);
    }
    if (resumed && !this.stopping) return true;
    await this.handBack([h], 0, this.stopping ? 'shutting down' : 'parked too long');
    return false;
  }

  private setParked(delta: number): void {
    this.parked += delta;
    this.o.resilience?.messagesParked.set({ queue: this.o.queueName }, this.parked);
    if (this.parked < this.o.maxParked) {
      const waiters = this.parkedWaiters;
      this.parkedWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Before each receive: wait while a dependency every message needs is down (messages stay in
   * SQS, their receive counts untouched), while too many messages are parked already, and while
   * the worker's gate is paused.
   */
  private async waitForDependencies(): Promise<void> {
    const breakers = this.o.breakers;
    for (;;) {
      if (this.stopping) return;
      const down = breakers ? this.o.gating.map((n) => breakers.get(n)).find((b) => b.state !== 'closed') : undefined;
      if (down) {
        this.setPaused(down.name);
        // With a probe the breaker tests itself; without one, let one receive go out as the trial.
        await (down.hasProbe ? down.whenClosed(this.stop.signal) : down.whenUsable(this.stop.signal));
        continue;
      }
      if (this.parked >= this.o.maxParked) {
        this.setPaused('parked messages');
        await new Promise<void>((resolve) => {
          this.parkedWaiters.push(resolve);
          this.stop.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        continue;
      }
      this.setPaused(undefined);
      const gate = this.o.gate;
      if (gate?.pausedFor !== undefined) {
        await gate.whenOpen(this.stop.signal);
        continue;
      }
      return;
    }
  }

  private setPaused(reason: string | undefined): void {
    if (reason === this.paused) return;
    if (reason) this.o.logger.warn({ queue: this.o.queueName, waitingFor: reason }, 'receiving paused: messages stay in SQS until it recovers');
    else this.o.logger.info({ queue: this.o.queueName, waitedFor: this.paused }, 'receiving resumed');
    this.paused = reason;
    this.o.resilience?.consumerPaused.set({ queue: this.o.queueName }, reason ? 1 : 0);
  }

  private parse(message: Message, messageId: string): T {
    try {
      return this.o.parse(message.Body ?? '', message);
    } catch (err) {
      if (err instanceof MessageParseError) throw err;
      throw new MessageParseError(err instanceof Error ? err.message : String(err), { cause: err, messageId });
    }
  }

  private async fail(
    h: Held,
    err: PayfleetError,
    attempts: number,
    log: Logger,
    observe: (outcome: string) => void,
  ): Promise<'continue' | 'stop-lane'> {
    this.countConflict(err);
    if (err.kind === 'terminal') {
      // Expected outcome (bad input, decline, mismatch): one line, no stack. Unexpected ones keep it.
      if (err.code === 'UNEXPECTED') log.warn({ code: err.code, err }, 'terminal failure; dead-lettering');
      else log.warn({ code: err.code, detail: err.message }, 'terminal failure; dead-lettering');
      await this.deadLetter(h, { code: err.code, detail: err.message, attempts }, log);
      observe('dead-lettered');
      return 'continue';
    }
    // Retryable, or an ambiguous outcome that escaped its handler: the next attempt starts by
    // looking the result up (the work item records what was sent), so a plain retry is safe.
    if (attempts >= this.o.maxAttempts) {
      log.error({ code: err.code, attempts, err }, 'retries exhausted; dead-lettering');
      await this.deadLetter(h, { code: 'RETRIES_EXHAUSTED', detail: `${err.code}: ${err.message}`, attempts }, log);
      observe('dead-lettered');
      return 'continue';
    }
    const hinted = 'retryAfterMs' in err && typeof err.retryAfterMs === 'number' ? err.retryAfterMs : 0;
    const delayMs = Math.max(hinted, backoffMs(attempts, this.o.backoff));
    // Work aborted by shutdown goes straight back for another process to take.
    const delaySec = this.stopping ? 0 : Math.min(MAX_VISIBILITY_SEC, Math.ceil(delayMs / 1000));
    log.warn({ code: err.code, kind: err.kind, attempts, delaySec, err }, 'attempt failed; retrying after backoff');
    this.o.metrics?.retried.inc({ queue: this.o.queueName, code: err.code });
    await this.handBack([h], delaySec, err.code);
    observe('retried');
    return 'stop-lane';
  }

  private countConflict(err: PayfleetError): void {
    if (err.code === 'LEASE_LOST' || err.code === 'LEASE_HELD') this.o.metrics?.leaseConflicts.inc({ kind: err.code });
    if (err.code === 'CONFLICT') {
      const part = (err as { part?: string }).part ?? 'unknown';
      this.o.metrics?.commitConflicts.inc({ part });
    }
  }

  /**
   * Queue the delete of a settled message (`succeeded` is false for one that was dead-lettered).
   * Its lane does not wait for the delete: the result is committed, and the next message of the
   * group was received already or stays blocked in SQS until this delete lands. The delete goes
   * out with its receive-mates' (see {@link decide}); the message stays held, and heartbeated,
   * until SQS answered.
   */
  private ack(h: Held, log: Logger, succeeded: boolean): void {
    const deleted = this.deletes.add({ receiptHandle: h.message.ReceiptHandle! }, h.receive);
    this.decide(h);
    void deleted
      .then(
        () => {
          if (succeeded) this.o.metrics?.succeeded.inc({ queue: this.o.queueName });
        },
        (err: unknown) => {
          // The result is committed; a redelivery finds the completed work item and is acknowledged.
          log.warn({ err }, 'delete failed after commit; a redelivery will be acknowledged as a duplicate');
        },
      )
      .finally(() => this.settle(h));
  }

  /**
   * A message's fate is sealed (delete queued, or hand-back started). When that is so for every
   * message of its receive, that receive's deletes go out now: one DeleteMessageBatch per receive
   * of up to 10 instead of one per few milliseconds of linger. Deletes of different receives are
   * not mixed, so one receive finishing does not split another's. A receive-mate still in work
   * (slow, or parked for an outage) holds the others' deletes at most `ackLingerMs` (the batcher's
   * timer).
   *
   *   receive: m1 m2 m3 ... m10
   *   ack m1 ─┐ queued
   *   ack m2 ─┤ queued
   *   ...     │
   *   ack m10 ┴─▶ DeleteMessageBatch [m1..m10]   (or at ackLingerMs after m1, whichever first)
   */
  private decide(h: Held): void {
    if (h.decided) return;
    h.decided = true;
    h.receive.open -= 1;
    if (h.receive.open === 0) this.deletes.flushPending(h.receive);
  }

  private async deadLetter(h: Held, letter: { code: string; detail: string; attempts: number }, log: Logger): Promise<void> {
    let sent: { dlqMessageId: string; redrives: number };
    try {
      sent = await sendToDlq(this.o.sqs, {
        dlqUrl: this.o.dlqUrl,
        sourceQueue: this.o.queueName,
        worker: this.o.worker,
        message: h.message,
        letter,
      });
    } catch (err) {
      // Never delete what we could not park: hand it back and try again later.
      log.error({ err, code: letter.code }, 'could not send to the DLQ; handing the message back');
      await this.handBack([h], Math.ceil(backoffMs(letter.attempts, this.o.backoff) / 1000), 'dlq send failed');
      return;
    }
    this.o.metrics?.deadLettered.inc({ queue: this.o.queueName, code: letter.code });
    // Both ids: `messageId` (this logger's) is the one every earlier line of this message carried;
    // `dlqMessageId` is what `dlq list` shows. `dlq show` finds the letter by either.
    log.warn(
      { code: letter.code, attempts: letter.attempts, dlqMessageId: sent.dlqMessageId, redrives: sent.redrives },
      'message dead-lettered',
    );
    this.ack(h, log, false);
  }

  /** Make messages visible again after `delaySec` (0 = now) and forget them. */
  private async handBack(hs: Held[], delaySec: number, reason: string): Promise<void> {
    for (const h of hs) this.decide(h);
    await Promise.all(
      hs.map(async (h) => {
        try {
          await this.o.sqs.send(
            new ChangeMessageVisibilityCommand({
              QueueUrl: this.o.queueUrl,
              ReceiptHandle: h.message.ReceiptHandle!,
              VisibilityTimeout: Math.max(0, Math.min(MAX_VISIBILITY_SEC, delaySec)),
            }),
          );
        } catch (err) {
          // It comes back when its current visibility expires instead; nothing is lost.
          this.o.logger.warn({ err, messageId: h.message.MessageId, reason }, 'could not change visibility');
        } finally {
          this.settle(h);
        }
      }),
    );
  }

  private settle(h: Held): void {
    if (h.settled) return;
    h.settled = true;
    this.held.delete(h);
    this.o.metrics?.inFlight.set({ queue: this.o.queueName }, this.held.size);
  }

  /** Extend visibility of every held message whose visibility would lapse before the next beat. */
  private beat(): void {
    const now = Date.now();
    const horizon = now + this.o.heartbeatSec * 2000;
    for (const h of this.held) {
      if (h.settled || h.visibleAtMs > horizon) continue;
      const visibleAtMs = now + this.o.visibilityTimeoutSec * 1000;
      this.visibility
        .add({ receiptHandle: h.message.ReceiptHandle!, visibilityTimeoutSec: this.o.visibilityTimeoutSec })
        .then(() => {
          h.visibleAtMs = visibleAtMs;
        })
        .catch((err: unknown) => {
          if (!h.settled) this.o.logger.warn({ err, messageId: h.message.MessageId }, 'visibility heartbeat failed');
        });
    }
  }

  /**
   * Staged, idempotent shutdown; every stage has its own try/catch:
   * stop receiving -> let open long polls finish -> drain in-flight work within `graceMs` ->
   * abort what is left and hand back everything unfinished (visibility 0) -> flush deletes.
   */
  close(graceMs: number): Promise<void> {
    this.closed ??= this.doClose(graceMs);
    return this.closed;
  }

  private async doClose(graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    this.stopping = true;
    this.stop.abort(new Error('shutdown'));
    try {
      for (const p of this.pollers) p.stop({ abort: false });
      // Aborting a long poll strands whatever it received until visibility expires: wait instead.
      while (this.pollers.some((p) => p.status.isPolling) && Date.now() < deadline) await sleep(25);
    } catch (err) {
      this.o.logger.warn({ err }, 'stopping pollers failed');
    }
    try {
      const queued = this.scheduler.drainQueued();
      await this.handBack(queued, 0, 'shutting down');
    } catch (err) {
      this.o.logger.warn({ err }, 'handing back queued messages failed');
    }
    try {
      await settlesWithin(this.scheduler.whenIdle(), deadline - Date.now());
    } catch (err) {
      this.o.logger.warn({ err }, 'draining failed');
    }
    if (this.scheduler.running > 0) {
      this.o.logger.warn({ running: this.scheduler.running }, 'grace period over; aborting in-flight work');
      this.abort.abort(new Error('shutdown'));
      await settlesWithin(this.scheduler.whenIdle(), 2000);
    }
    try {
      // Not those whose delete is queued: they are flushed below.
      const leftovers = [...this.held].filter((h) => !h.decided);
      if (leftovers.length > 0) await this.handBack(leftovers, 0, 'shutting down');
    } catch (err) {
      this.o.logger.warn({ err }, 'handing back held messages failed');
    }
    try {
      await Promise.all([this.deletes.flush(), this.visibility.flush()]);
    } catch (err) {
      this.o.logger.warn({ err }, 'flushing deletes failed');
    }
    if (this.heartbeat) clearInterval(this.heartbeat);
  }
}

/** Exposed for tests and tools that want the same classification as the consumer. */
export { classify };
