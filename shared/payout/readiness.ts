/**
 * Readiness of the payout worker (shared/reference/lhv-integration.md, "LHV service startup"):
 * a row read from each table, LHV `GET /heartbeat` 2xx, `GET /heartbeat/mq` 202 and its HEARTBEAT
 * message seen on `/messages/next`, and SQS reachable. The process starts Not Ready; a monitor runs
 * every check each `pollMs` until all pass, then latches Ready: only then does it take shards,
 * poll LHV's answers and (holding a shard: "ReadyForProcessing") receive payout events.
 *
 *   start ─ not ready ─ checks ✗ ─ pollMs ─ checks ✗ ─ pollMs ─ checks ✓ ─▶ READY ─ take shards ─ receive
 *                                                                   └─ every recheckMs: MQ round trip again
 *
 * /health/ready runs the cheap checks live on every probe; the message-queue round trip (which
 * writes to LHV and reads its queue) is reported from the monitor's last run instead, so a probe
 * every few seconds never floods the bank and a slow queue never times the probe out.
 */
import type { LhvClient } from '../lhv/client.js';
import type { Logger } from '../log/logger.js';
import type { ReadinessCheck } from '../ops/server.js';
import { pause } from './leases.js';

/** A HEARTBEAT message at the queue head for longer than this is some dead process' probe: cleared. */
const STALE_HEARTBEAT_MS = 3000;
const seenAt = new Map<string, number>();

/**
 * `GET /heartbeat/mq`, then read HEARTBEAT messages until ours shows up (deleting it). Heartbeats of
 * other workers are left for them unless they sit at the head for a few seconds (their owner died),
 * because LHV always serves the oldest message first and a stale one would block every later probe.
 */
export async function heartbeatRoundTrip(lhv: LhvClient, options: { signal: AbortSignal; timeoutMs: number }): Promise<void> {
  const { messageRequestId } = await lhv.heartbeatMq({ signal: options.signal });
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline && !options.signal.aborted) {
    const msg = await lhv.nextMessage({ responseType: 'HEARTBEAT' }, { signal: options.signal });
    if (!msg) {
      await pause(100, options.signal);
      continue;
    }
    const mine = msg.messageRequestId === messageRequestId;
    const first = seenAt.get(msg.messageResponseId) ?? Date.now();
    seenAt.set(msg.messageResponseId, first);
    if (seenAt.size > 1000) seenAt.delete(seenAt.keys().next().value as string);
    if (mine || Date.now() - first >= STALE_HEARTBEAT_MS) {
      await lhv.deleteMessage(msg.messageResponseId, { signal: options.signal });
      seenAt.delete(msg.messageResponseId);
      if (mine) return;
    } else {
      await pause(100, options.signal);
    }
  }
  throw new Error(`the HEARTBEAT message for ${messageRequestId} did not arrive within ${options.timeoutMs} ms`);
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
  readonly onReady: () => void;
}): ReadinessMonitor {
  const { log } = options;
  const stopping = new AbortController();
  let ready = false;
  let loop: Promise<void> | undefined;
  let results: Record<string, string> = {};
  let queueOkAt = 0;
  let lastLogged = '';

  const queueCheck: ReadinessCheck = {
    name: 'lhv:heartbeat-mq',
    check: async () => {
      if (queueOkAt === 0) throw new Error(results['lhv:heartbeat-mq'] ?? 'no LHV message-queue round trip has succeeded yet');
      const age = Date.now() - queueOkAt;
      if (age > 2 * options.recheckMs + options.timeoutMs)
        throw new Error(`last successful LHV message-queue round trip ${age} ms ago`);
    },
  };

  async function runAll(): Promise<boolean> {
    const all: ReadinessCheck[] = [
      ...options.checks,
      { name: 'lhv:heartbeat-mq', check: (signal) => heartbeatRoundTrip(options.lhv, { signal, timeoutMs: options.timeoutMs }) },
    ];
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
    results = Object.fromEntries(out);
    if (results['lhv:heartbeat-mq'] === 'ok') queueOkAt = Date.now();
    return out.every(([, r]) => r === 'ok');
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      const ok = await runAll();
      if (ok && !ready) {
        ready = true;
        log.info({ checks: results }, 'payout worker ready: all readiness checks passed');
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
