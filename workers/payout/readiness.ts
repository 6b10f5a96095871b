/**
 * Readiness of the payout worker (the LHV integration design's "LHV service startup"):
 * a row read from each table, LHV `GET /heartbeat` 2xx, `GET /heartbeat/mq` 202 and a HEARTBEAT
 * message read back from `/messages/next`, and SQS reachable. The process starts Not Ready; a monitor
 * runs every check each `pollMs` until all pass, then latches Ready: only then does it take shards and
 * (holding a shard: "ReadyForProcessing") receive payout events. LHV's answers are drained whether
 * ready or not (responses.ts).
 *
 *   start ─ not ready ─ checks ✗ ─ pollMs ─ checks ✗ ─ pollMs ─ checks ✓ ─▶ READY ─ take shards ─ receive
 *                                                                   └─ every recheckMs: MQ round trip again
 *
 * /health/ready runs the cheap checks live on every probe; the message-queue round trip (which
 * writes to LHV and reads its queue) is reported from the monitor's last run instead, so a probe
 * every few seconds never floods the bank and a slow queue never times the probe out.
 */
import { pause } from '../../shared/core/timers.js';
import { classify } from '../../shared/errors.js';
import type { LhvClient } from './lhv/client.js';
import type { LhvMessage } from './lhv/types.js';
import type { Logger } from '../../shared/log/logger.js';
import type { ReadinessCheck } from '../../shared/ops/server.js';
import type { PayoutMetrics } from './metrics.js';

/** Wait after a 204 or a failed call before reading again. */
const RETRY_MS = 100;
/** Most HEARTBEAT messages one round trip reads (a bound on the drain; the deadline is the other). */
const MAX_MESSAGES = 1000;
/** With nothing read yet and the queue empty this long, queue another heartbeat (ours was taken). */
const REPOST_MS = 1000;

/** What one message-queue round trip saw. */
export interface QueueRoundTrip {
  /** Message-Request-Id of the heartbeat this round trip queued. */
  readonly messageRequestId: string;
  /** Our own HEARTBEAT was read back and deleted. */
  readonly own: boolean;
  /** HEARTBEAT messages of anyone else read and deleted on the way (stale ones ahead of ours). */
  readonly stale: number;
}

/**
 * `GET /heartbeat/mq`, then read HEARTBEAT messages oldest first, deleting EVERY one read, until our
 * own is read, none is left, or `timeoutMs` has passed. Succeeds once at least one HEARTBEAT was read
 * and deleted after the 202.
 *
 * Why any heartbeat counts and every reader deletes: LHV keeps one message queue per account and
 * serves the oldest message first. A heartbeat nobody reads back — its worker SIGKILLed between the
 * 202 and the read, a probe that gave up, a read whose answer was lost — sits AHEAD of every later
 * probe's. Leaving other workers' heartbeats in place (waiting for their owner) starves readiness:
 * with no worker ready nobody removes them, and every failed probe queues one more. A heartbeat
 * served by `/messages/next` and removed by `DELETE` proves the read path as well as our own does,
 * and deleting it can only shorten the queue ahead of the next probe.
 *
 *   queue, oldest first:  H(C: its worker was SIGKILLed after the 202)   H(A)   H(B)
 *   probe A:  heartbeat/mq 202 ─▶ next: H(C) ─DELETE─▶ next: H(A) ─DELETE─▶ ok (own; 1 stale deleted)
 *   probe B:  heartbeat/mq 202 ─▶ next: H(C) ─DELETE 404 (A was first: done)─▶ next: H(B) ─DELETE─▶ ok (own; 1 stale)
 *   a probe whose own was read and deleted by another before it read anything sees 204: after
 *   REPOST_MS it queues another heartbeat instead of waiting out its deadline.
 *
 * Failures: a 5xx / reset on `/messages/next` is read again; a DELETE whose answer was lost may or
 * may not have removed the message, so it is repeated (404 = gone already), and a message read again
 * is deleted again. A 4xx (certificate, rights) fails the round trip at once. Only HEARTBEAT is read
 * (Filter-Response-Type), so PAYMENT reports are never touched here.
 */
export async function heartbeatRoundTrip(
  lhv: LhvClient,
  options: { readonly signal: AbortSignal; readonly timeoutMs: number },
): Promise<QueueRoundTrip> {
  const { signal } = options;
  const deadline = Date.now() + options.timeoutMs;
  const call = { signal };
  const { messageRequestId } = await lhv.heartbeatMq(call);
  const ours = new Set([messageRequestId]);
  let postedAt = Date.now();
  let stale = 0;
  let lastFailure = '';

  /** DELETE until it is acknowledged (200, or 404: already gone). False when the deadline passed first. */
  async function remove(msg: LhvMessage): Promise<boolean> {
    for (;;) {
      try {
        await lhv.deleteMessage(msg.messageResponseId, call);
        return true;
      } catch (err) {
        if (signal.aborted || classify(err) === 'terminal') throw err;
        lastFailure = `DELETE: ${err instanceof Error ? err.message : String(err)}`;
        if (Date.now() >= deadline) return false;
        await pause(RETRY_MS, signal);
      }
    }
  }

  for (let reads = 0; reads < MAX_MESSAGES && Date.now() < deadline; ) {
    signal.throwIfAborted();
    let msg: LhvMessage | undefined;
    try {
      msg = await lhv.nextMessage({ responseType: 'HEARTBEAT' }, call);
    } catch (err) {
      if (signal.aborted || classify(err) === 'terminal') throw err;
      lastFailure = `messages/next: ${err instanceof Error ? err.message : String(err)}`;
      await pause(RETRY_MS, signal);
      continue;
    }
    if (!msg) {
      // Nothing left: another reader took ours (it counts: we deleted others'), or ours is not
      // visible yet (then it waits for the next reader, like any stale one).
      if (stale > 0) break;
      // Nothing read at all: another probe may have read and deleted ours before we did. Queue
      // another rather than wait out the deadline; an extra one is drained by the next reader.
      if (Date.now() - postedAt >= REPOST_MS) {
        postedAt = Date.now();
        try {
          ours.add((await lhv.heartbeatMq(call)).messageRequestId);
        } catch (err) {
          if (signal.aborted || classify(err) === 'terminal') throw err;
          lastFailure = `heartbeat/mq: ${err instanceof Error ? err.message : String(err)}`;
        }
      }
      await pause(RETRY_MS, signal);
      continue;
    }
    reads++;
    if (!(await remove(msg))) break;
    if (ours.has(msg.messageRequestId)) return { messageRequestId, own: true, stale };
    stale++;
  }
  if (stale > 0) return { messageRequestId, own: false, stale };
  throw new Error(
    `no HEARTBEAT message could be read back and deleted within ${options.timeoutMs} ms (ours: ${messageRequestId})${lastFailure ? `; last failure: ${lastFailure.slice(0, 200)}` : ''}`,
  );
}

export interface ReadinessMonitor {
  /** Latched true once every check passed. */
  readonly ready: boolean;
  start(): void;
  stop(): Promise<void>;
  /** The /health/ready check that reports the monitor's last LHV message-queue round trip. */
  readonly queueCheck: ReadinessCheck;
  /** Results of the last run (status endpoint, logs). */
  last(): Record<string, string>;
}

export function createReadinessMonitor(options: {
  /** Checks run on every pass (tables, SQS, LHV heartbeat). */
  readonly checks: readonly ReadinessCheck[];
  readonly lhv: LhvClient;
  readonly pollMs: number;
  readonly recheckMs: number;
  /** Per-check deadline. */
  readonly timeoutMs: number;
  readonly log: Logger;
  /** Round trips and the HEARTBEAT messages they deleted. */
  readonly metrics?: Pick<PayoutMetrics, 'queueRoundTrips' | 'heartbeatMessages'>;
  readonly onReady: () => void;
}): ReadinessMonitor {
  const { log, metrics } = options;
  const stopping = new AbortController();
  let ready = false;
  let loop: Promise<void> | undefined;
  let results: Record<string, string> = {};
  let queueOkAt = 0;
  let lastLogged = '';
  let passes = 0;

  const queueCheck: ReadinessCheck = {
    name: 'lhv:heartbeat-mq',
    check: async () => {
      if (queueOkAt === 0) throw new Error(results['lhv:heartbeat-mq'] ?? 'no LHV message-queue round trip has succeeded yet');
      const age = Date.now() - queueOkAt;
      if (age > 2 * options.recheckMs + options.timeoutMs)
        throw new Error(`last successful LHV message-queue round trip ${age} ms ago`);
    },
  };

  async function roundTrip(signal: AbortSignal): Promise<void> {
    try {
      const trip = await heartbeatRoundTrip(options.lhv, { signal, timeoutMs: options.timeoutMs });
      metrics?.queueRoundTrips.inc({ outcome: 'ok' });
      if (trip.own) metrics?.heartbeatMessages.inc({ whose: 'own' });
      if (trip.stale > 0) {
        metrics?.heartbeatMessages.inc({ whose: 'stale' }, trip.stale);
        log.info(
          { stale: trip.stale, ownReadBack: trip.own },
          'stale HEARTBEAT messages deleted from the LHV message queue (probes that never read theirs back)',
        );
      }
    } catch (err) {
      metrics?.queueRoundTrips.inc({ outcome: 'failed' });
      throw err;
    }
  }

  async function runAll(): Promise<boolean> {
    const all: ReadinessCheck[] = [...options.checks, { name: 'lhv:heartbeat-mq', check: roundTrip }];
    const out = await Promise.all(
      all.map(async (c) => {
        const signal = AbortSignal.any([AbortSignal.timeout(options.timeoutMs + 1000), stopping.signal]);
        try {
          await c.check(signal);
          return [c.name, 'ok'] as const;
        } catch (err) {
          return [c.name, err instanceof Error ? err.message.slice(0, 300) : String(err)] as const;
        }
      }),
    );
    passes++;
    results = Object.fromEntries(out);
    if (results['lhv:heartbeat-mq'] === 'ok') queueOkAt = Date.now();
    return out.every(([, r]) => r === 'ok');
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      const ok = await runAll();
      if (ok && !ready) {
        ready = true;
        // `passes`: how many runs of every check it took (1 = the first one passed).
        log.info({ checks: results, passes }, 'payout worker ready: all readiness checks passed');
        options.onReady();
      } else if (!ok) {
        const failing = JSON.stringify(Object.fromEntries(Object.entries(results).filter(([, r]) => r !== 'ok')));
        if (failing !== lastLogged)
          log.warn({ failing: JSON.parse(failing) }, ready ? 'a readiness check fails' : 'payout worker not ready');
        lastLogged = failing;
      } else {
        lastLogged = '';
      }
      await pause(ready ? options.recheckMs : options.pollMs, stopping.signal);
    }
  }

  return {
    get ready() {
      return ready;
    },
    start() {
      loop ??= run();
    },
    async stop() {
      stopping.abort();
      await loop;
    },
    queueCheck,
    last: () => ({ ...results }),
  };
}
