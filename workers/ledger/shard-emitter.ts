/**
 * One pass over one ledger shard: read its pending events, send them to ledger-events.fifo in
 * per-resource order, mark what SQS accepted. The caller holds the shard's lease; this file is
 * where the ordering guarantee (docs/contract.md §4.4) is made.
 *
 * THE RULE: an event (resource R, sequence s) is sent only when every event of R with a lower
 * sequence is known to be in the queue already — marked emitted in the base table, or accepted
 * by SQS earlier in this process (this pass, or a `frontier` fact from before). SQS FIFO keeps
 * one group's messages in the order it accepted them, so the first copy of s lands after the
 * first copy of s-1. Later copies (resends after a crash, a lost lease, a failed mark) are either
 * dropped by SQS's 5-minute de-duplication on event_id or delivered again and dropped by the
 * consumer's de-duplication on event_id: a duplicate, never a reorder.
 *
 * Why the rule needs a consistent read: the `pending` index is eventually consistent, and its
 * sort key starts with the writer's clock. So the index may show s while s-1 is missing (not
 * replicated yet) or sorts after s (another worker's clock was behind):
 *
 *   index (pendingKey order):  R#2 (10:00:00.100, worker B)   R#1 (10:00:00.300, worker A)   -> sort by sequence
 *   index:                     R#3                             (R#2 written, not yet indexed)
 *     -> lowest visible is 3; 2 is not known emitted -> consistent Query of R below 3 -> 2 pending:
 *        send 2 (from the base row), then 3
 *
 * Why at most ONE event per resource (message group) per SendMessageBatch: entries of one call
 * succeed or fail one by one. If R#1 failed and R#2 succeeded in the same call, R#2 would be in
 * the queue ahead of R#1 — and resending R#2 later would be swallowed by the de-dup window, so the
 * damage could not even be repaired by resending both. With one entry per group per call, a failed
 * entry only stops its own resource for this pass (its successors wait); other groups go on.
 * Throughput comes from many resources per call (a shard holds thousands), not from one resource.
 *
 * Failed entries count on the row (sendFailures) and set doNotRetryUntil: a short exponential
 * back-off, then after maxSendFailures the long do-not-retry back-off (pay-connector: 7200 s).
 * An event in back-off holds back its resource's later events, never other resources.
 *
 * A whole call that throws (timeout, 5xx, abort) is ambiguous: nothing is marked, everything
 * stays pending and is resent on the next pass (at worst a duplicate), and the caller backs off.
 */
import { toLedgerMessage } from '../../shared/core/outbox.js';
import type { Logger } from '../../shared/log/logger.js';
import type { LedgerSettings } from './config.js';
import type { LedgerMetrics } from './metrics.js';
import type { LedgerEntry, LedgerOutbox, LedgerPublisher, OutboxEvent, PublishResult, SendFailure } from './ports.js';
import { BoundedMap, epochMs, mapLimit } from './util.js';

/** Points where tests inject faults. Never set in production. */
export interface LedgerHooks {
  /** After SQS accepted a batch, before any of it is marked (a crash here must lose nothing). */
  afterSend?(info: { readonly shard: string; readonly eventIds: readonly string[] }): void | Promise<void>;
}

export interface PassContext {
  readonly shard: string;
  /** Aborted: start no further send (lease lost, shard released, stopping). */
  readonly stop: AbortSignal;
  /** Aborted: abandon a send already in flight (lease lost, shutdown grace over). */
  readonly abort?: AbortSignal;
  readonly via: 'main' | 'sweeper';
  /** The lease this pass runs under (for the logs that prove no two holders overlap). */
  readonly lease?: { readonly owner: string; readonly fencingToken: number };
}

export interface PassResult {
  readonly read: number;
  readonly sent: number;
  readonly failed: number;
  readonly heldBack: number;
  /** Worth another pass at once (this pass sent something, or a full page had failures). */
  readonly more: boolean;
  /** Age of the oldest pending event seen (0 when none). */
  readonly oldestPendingAgeMs: number;
}

export interface ShardEmitterOptions {
  readonly outbox: LedgerOutbox;
  readonly publisher: LedgerPublisher;
  readonly metrics: LedgerMetrics;
  readonly log: Logger;
  readonly settings: Pick<LedgerSettings, 'maxEventsPerPass' | 'batchSize' | 'retryBaseMs' | 'maxSendFailures' | 'doNotRetryMs'>;
  readonly now?: () => number;
  readonly hooks?: LedgerHooks;
  /** Consistent reads in flight at once while resolving predecessors. @default 16 */
  readonly readConcurrency?: number;
}

export interface ShardEmitter {
  pass(ctx: PassContext): Promise<PassResult>;
}

/** Events per mark call (DynamoDB's BatchWriteItem limit). */
const MARK_BATCH = 25;
/** Mark calls in flight at once per pass. */
const MAX_MARK_CALLS_IN_FLIGHT = 4;
/** SQS's limit on one SendMessageBatch payload (sum of bodies). */
const MAX_BATCH_BYTES = 256 * 1024;

type HoldReason = 'predecessor_pending' | 'backoff' | 'other_shard' | 'unknown_predecessor';

interface Chain {
  readonly resourceId: string;
  /** Events to send in this order, each one's predecessors satisfied once the one before is accepted. */
  readonly events: OutboxEvent[];
}

export function createShardEmitter(options: ShardEmitterOptions): ShardEmitter {
  const { outbox, publisher, metrics, log, settings } = options;
  const now = options.now ?? Date.now;
  const readConcurrency = options.readConcurrency ?? 16;
  /**
   * Per resource, the highest sequence s such that every event <= s is known to be in the queue
   * (accepted by SQS in this process, or found marked). Only ever true facts, so it may be lost
   * or evicted at any time: it saves consistent reads and duplicate sends, it decides nothing alone.
   */
  const frontier = new BoundedMap<string, number>(100_000);
  /** Events this process marked; the lagging index may still list them for a moment. */
  const marked = new BoundedMap<string, true>(20_000);
  /** Back-offs this process set (epoch ms), in case the index still shows the row without one. */
  const backoff = new BoundedMap<string, number>(10_000);

  const advance = (resourceId: string, sequence: number) => {
    if ((frontier.get(resourceId) ?? 0) < sequence) frontier.set(resourceId, sequence);
  };

  async function buildChain(
    resourceId: string,
    visible: OutboxEvent[],
    shard: string,
    t: number,
  ): Promise<{ chain: OutboxEvent[]; remark: OutboxEvent[]; held?: HoldReason }> {
    const known = frontier.get(resourceId) ?? 0;
    // Already accepted by SQS through this process: do not send again; re-mark unless we marked it.
    const remark = visible.filter((e) => e.sequence <= known && !marked.has(e.eventId));
    const candidates = visible.filter((e) => e.sequence > known);
    const first = candidates[0];
    if (!first) return { chain: [], remark };

    let below: OutboxEvent[] = [];
    if (first.sequence - 1 > known) {
      // The predecessor is not known to be in the queue: ask the base table, consistently.
      const rows = await outbox.resourceEventsBelow(resourceId, first.sequence);
      if (rows.length !== first.sequence - 1 || rows.some((r, i) => r.sequence !== i + 1)) {
        log.error(
          { resourceId, sequence: first.sequence, found: rows.length },
          'ledger: events missing below a pending event; holding the resource back',
        );
        return { chain: [], remark, held: 'unknown_predecessor' };
      }
      const pendingBelow = rows.filter((r) => r.pendingShard !== undefined);
      // Accepted through us but the mark failed: re-mark, never resend.
      remark.push(...pendingBelow.filter((r) => r.sequence <= known));
      below = pendingBelow.filter((r) => r.sequence > known);
      if (pendingBelow.length === 0) advance(resourceId, first.sequence - 1);
    }

    const chain: OutboxEvent[] = [];
    const sendable = (e: OutboxEvent): HoldReason | undefined => {
      if (e.pendingShard !== shard) return 'other_shard';
      // The row's back-off, or ours if the index has not caught up with the row yet.
      const until = Math.max(epochMs(e.doNotRetryUntil) || 0, backoff.get(e.eventId) ?? 0);
      if (until > t) return 'backoff';
      return undefined;
    };
    for (const e of below) {
      const why = sendable(e);
      if (why) return { chain, remark, held: chain.length === 0 && why === 'other_shard' ? 'predecessor_pending' : why };
      chain.push(e);
    }
    let expected = first.sequence;
    for (const e of candidates) {
      // A hole: expected-1 is known, `expected` is not visible (index lag or marked). Next pass decides.
      if (e.sequence !== expected) return { chain, remark, held: 'unknown_predecessor' };
      const why = sendable(e);
      if (why) return { chain, remark, held: why };
      chain.push(e);
      expected++;
    }
    return { chain, remark };
  }

  async function onFailed(e: OutboxEvent, failure: SendFailure, ctx: PassContext): Promise<void> {
    metrics.sendFailures.inc({ code: failure.code });
    const t = now();
    const step = Math.min(settings.retryBaseMs * 2 ** Math.max(0, e.sendFailures), settings.doNotRetryMs);
    backoff.set(e.eventId, t + step);
    try {
      const failures = await outbox.recordSendFailure(e, failure, new Date(t + step).toISOString());
      if (failures >= settings.maxSendFailures) {
        const until = new Date(t + settings.doNotRetryMs).toISOString();
        backoff.set(e.eventId, t + settings.doNotRetryMs);
        await outbox.setDoNotRetryUntil(e, until);
        log.warn(
          {
            shard: ctx.shard,
            resourceId: e.resourceId,
            sequence: e.sequence,
            eventId: e.eventId,
            failures,
            doNotRetryUntil: until,
            code: failure.code,
          },
          'ledger event failed repeatedly; not retrying until the back-off ends (its resource waits)',
        );
      } else {
        log.info(
          { shard: ctx.shard, resourceId: e.resourceId, sequence: e.sequence, failures, code: failure.code },
          'ledger event send failed; will retry',
        );
      }
    } catch (err) {
      // The event stays pending without a back-off: retried next pass. Nothing is lost.
      log.warn({ shard: ctx.shard, eventId: e.eventId, err }, 'ledger: could not record a send failure');
    }
  }

  /**
   * The marks of one pass: accepted events gathered into batches of MARK_BATCH (one BatchWriteItem
   * each), written in the background while the next SendMessageBatch goes out. Ordering rests on
   * what SQS accepted (the frontier), not on marks, so a mark may land after its successor's send.
   * `settle` writes the rest and waits for all: a pass that completes leaves nothing unmarked, and a
   * crash before the marks land only costs resends (duplicates, in order).
   */
  function markBatcher(ctx: PassContext) {
    let buffer: OutboxEvent[] = [];
    const inFlight = new Set<Promise<void>>();
    const write = async (batch: OutboxEvent[]): Promise<void> => {
      let done: ReadonlySet<string> = new Set();
      try {
        done = new Set(await outbox.markEmitted(batch, new Date(now()).toISOString()));
      } catch (err) {
        log.warn({ shard: ctx.shard, events: batch.length, err }, 'ledger: sent but could not mark emitted');
      }
      let missed = 0;
      for (const e of batch) {
        if (done.has(e.eventId)) marked.set(e.eventId, true);
        else missed++;
      }
      // Sent but not marked: they stay pending and are re-marked (this process's frontier knows
      // them) or resent by the next holder (a duplicate, in order).
      if (missed > 0) metrics.markFailures.inc(missed);
    };
    const flush = async (): Promise<void> => {
      if (buffer.length === 0) return;
      const batch = buffer;
      buffer = [];
      while (inFlight.size >= MAX_MARK_CALLS_IN_FLIGHT) await Promise.race(inFlight);
      const p: Promise<void> = write(batch).finally(() => inFlight.delete(p));
      inFlight.add(p);
    };
    return {
      async add(e: OutboxEvent): Promise<void> {
        buffer.push(e);
        if (buffer.length >= MARK_BATCH) await flush();
      },
      async settle(): Promise<void> {
        await flush();
        await Promise.all(inFlight);
      },
    };
  }

  /**
   * Per shard, where the next pass starts when the last one read a full page and could send
   * none of it (a head of events in back-off or held back): continue past it instead of
   * re-reading the same blocked page forever. Reset once a page reaches the end of the index.
   */
  const cursors = new Map<string, string>();

  return {
    async pass(ctx) {
      const t0 = now();
      const cursor = cursors.get(ctx.shard);
      const page = await outbox.pendingInShard(ctx.shard, settings.maxEventsPerPass, cursor);
      let oldest = Number.POSITIVE_INFINITY;
      const byResource = new Map<string, OutboxEvent[]>();
      for (const e of page.events) {
        const ts = epochMs(e.timestamp);
        if (ts < oldest) oldest = ts;
        const list = byResource.get(e.resourceId);
        if (list) list.push(e);
        else byResource.set(e.resourceId, [e]);
      }
      const oldestPendingAgeMs = Number.isFinite(oldest) ? Math.max(0, t0 - oldest) : 0;
      // Only a page from the head of the index knows the oldest pending event.
      if (ctx.via === 'main' && cursor === undefined) metrics.lag.set({ shard: ctx.shard }, oldestPendingAgeMs / 1000);
      if (!page.truncated) cursors.delete(ctx.shard);
      if (page.events.length === 0)
        return { read: 0, sent: 0, failed: 0, heldBack: 0, more: cursor !== undefined, oldestPendingAgeMs };

      const resources = [...byResource].map(([resourceId, list]) => {
        const seen = new Set<number>();
        const events = list.sort((a, b) => a.sequence - b.sequence).filter((e) => !seen.has(e.sequence) && seen.add(e.sequence));
        return { resourceId, events };
      });
      const built = await mapLimit(resources, readConcurrency, (r) => buildChain(r.resourceId, r.events, ctx.shard, t0));
      let heldBack = 0;
      const remarks: OutboxEvent[] = [];
      const queue: Chain[] = [];
      built.forEach((b, i) => {
        remarks.push(...b.remark);
        if (b.held) {
          metrics.heldBack.inc({ reason: b.held });
          heldBack++;
        }
        if (b.chain.length > 0) queue.push({ resourceId: resources[i]!.resourceId, events: b.chain });
      });
      const marks = markBatcher(ctx);
      for (const e of remarks) await marks.add(e);

      let sent = 0;
      let failed = 0;
      // Round-robin over resources; each call carries at most one event per resource.
      try {
        while (queue.length > 0 && !ctx.stop.aborted) {
          const take: Chain[] = [];
          let bytes = 0;
          while (take.length < settings.batchSize && queue.length > 0) {
            const size = Buffer.byteLength(JSON.stringify(toLedgerMessage(queue[0]!.events[0]!)));
            if (take.length > 0 && bytes + size > MAX_BATCH_BYTES) break;
            bytes += size;
            take.push(queue.shift()!);
          }
          const heads = take.map((c) => c.events[0]!);
          const entries: LedgerEntry[] = heads.map((e) => ({
            eventId: e.eventId,
            groupId: e.resourceId,
            body: toLedgerMessage(e),
          }));
          const startedAt = new Date(now()).toISOString();
          const timer = metrics.sendSeconds.startTimer();
          let result: PublishResult;
          try {
            result = await publisher.publish(entries, ctx.abort);
          } catch (err) {
            metrics.sendFailures.inc({ code: 'CALL_FAILED' });
            throw err;
          } finally {
            timer();
          }
          const accepted = new Set(result.sent);
          if (accepted.size > 0) await options.hooks?.afterSend?.({ shard: ctx.shard, eventIds: result.sent });
          log.debug(
            {
              shard: ctx.shard,
              via: ctx.via,
              ...(ctx.lease ? { owner: ctx.lease.owner, fencingToken: ctx.lease.fencingToken } : {}),
              startedAt,
              eventIds: result.sent,
              failed: result.failed.length,
            },
            'ledger batch sent',
          );
          const failures = new Map(result.failed.map((f) => [f.eventId, f]));
          const failedHeads = take.filter((chain) => !accepted.has(chain.events[0]!.eventId));
          for (const chain of take) {
            const e = chain.events[0]!;
            if (!accepted.has(e.eventId)) continue;
            advance(e.resourceId, e.sequence);
            metrics.emitted.inc({ via: ctx.via });
            sent++;
            chain.events.shift();
            await marks.add(e);
          }
          await Promise.all(
            failedHeads.map(async (chain) => {
              const e = chain.events[0]!;
              failed++;
              await onFailed(
                e,
                failures.get(e.eventId) ?? { code: 'NO_RESULT', message: 'no result for entry', senderFault: false },
                ctx,
              );
              // Its successors must wait for it: drop the rest of this resource from the pass.
              chain.events.length = 0;
            }),
          );
          for (const c of take) if (c.events.length > 0) queue.push(c);
        }
      } finally {
        // Also when a call threw: what SQS accepted before it is marked before the pass ends.
        await marks.settle();
      }
      if (page.truncated) {
        // Nothing of a full page could go: look past it next time. Something went: start again
        // from the head (what was blocked behind what just went may be free now).
        if (sent === 0 && failed === 0) cursors.set(ctx.shard, page.events.at(-1)?.pendingKey ?? '');
        else cursors.delete(ctx.shard);
      }
      // A blocked full page waits a poll period before the next page: a large stuck backlog is
      // walked a page at a time, not re-read in a tight loop.
      return {
        read: page.events.length,
        sent,
        failed,
        heldBack,
        more: sent > 0 || (page.truncated && failed > 0),
        oldestPendingAgeMs,
      };
    },
  };
}
