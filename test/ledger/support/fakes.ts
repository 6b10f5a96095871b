/**
 * Fakes at the ledger ports that misbehave the way the real things may:
 * - FakeOutbox: the base table is the truth; the `pending` index view can hide rows (replication
 *   lag) and is ordered by pendingKey (writers' clocks), exactly like the GSI.
 * - FakeQueue: a FIFO queue with SQS's de-duplication on MessageDeduplicationId; a `fail`
 *   predicate rejects chosen entries of a SendMessageBatch while the rest of the call succeeds.
 */
import { pendingKeyFor, eventIdFor, isoMicros, toLedgerMessage } from '../../../shared/core/outbox.js';
import type {
  LedgerEntry,
  LedgerOutbox,
  LedgerPublisher,
  OutboxEvent,
  PublishResult,
  SendFailure,
} from '../../../workers/ledger/ports.js';
import { LedgerConsumer } from '../../support/ledger-consumer.js';

type Row = { -readonly [K in keyof OutboxEvent]: OutboxEvent[K] } & { emittedAt?: string };

export class FakeOutbox implements LedgerOutbox {
  readonly rows = new Map<string, Row>();
  /** Event ids the index does not show yet. */
  readonly hidden = new Set<string>();
  readonly calls = { pending: 0, below: 0, marks: 0 };

  /** Add event `sequence` of `resourceId`, written at `atMs` (the writer's clock) in `shard`. */
  add(resourceId: string, sequence: number, shard: string, atMs: number): Row {
    const timestamp = isoMicros(atMs * 1000);
    const row: Row = {
      eventId: eventIdFor('payment', resourceId, sequence),
      resourceType: 'payment',
      resourceId,
      sequence,
      eventType: 'PAYMENT_CREATED',
      timestamp,
      gatewayAccountId: 'gw-1',
      live: false,
      details: {},
      pendingShard: shard,
      pendingKey: pendingKeyFor(timestamp, resourceId, sequence),
      sendFailures: 0,
    };
    this.rows.set(`${resourceId}#${sequence}`, row);
    return row;
  }

  row(resourceId: string, sequence: number): Row {
    return this.rows.get(`${resourceId}#${sequence}`)!;
  }

  async pendingInShard(shard: string, limit: number, afterKey?: string) {
    this.calls.pending++;
    const events = [...this.rows.values()]
      .filter(
        (r) => r.pendingShard === shard && !this.hidden.has(r.eventId) && (afterKey === undefined || r.pendingKey! > afterKey),
      )
      .sort((a, b) => (a.pendingKey! < b.pendingKey! ? -1 : 1));
    return { events: events.slice(0, limit).map((r) => ({ ...r })), truncated: events.length > limit };
  }
  async resourceEventsBelow(resourceId: string, below: number) {
    this.calls.below++;
    return (await this.resourceEvents(resourceId)).filter((r) => r.sequence < below);
  }
  async resourceEvents(resourceId: string) {
    return [...this.rows.values()]
      .filter((r) => r.resourceId === resourceId)
      .sort((a, b) => a.sequence - b.sequence)
      .map((r) => ({ ...r }));
  }
  /** Mark calls, and how many events each carried. */
  readonly markCalls: number[] = [];
  /** Event ids whose mark the store drops (an UnprocessedItems entry that stayed unprocessed). */
  readonly unprocessed = new Set<string>();
  async markEmitted(events: readonly { resourceId: string; sequence: number; eventId: string }[], at: string) {
    this.calls.marks++;
    this.markCalls.push(events.length);
    const done: string[] = [];
    for (const e of events) {
      if (this.unprocessed.has(e.eventId)) continue;
      const r = this.row(e.resourceId, e.sequence);
      r.pendingShard = undefined;
      r.pendingKey = undefined;
      r.doNotRetryUntil = undefined;
      r.emittedAt ??= at;
      done.push(e.eventId);
    }
    return done;
  }
  async recordSendFailure(e: { resourceId: string; sequence: number }, f: SendFailure, until: string) {
    const r = this.row(e.resourceId, e.sequence);
    if (r.pendingShard === undefined) return 0;
    r.sendFailures += 1;
    r.lastSendError = f.code;
    r.doNotRetryUntil = until;
    return r.sendFailures;
  }
  async setDoNotRetryUntil(e: { resourceId: string; sequence: number }, until: string) {
    const r = this.row(e.resourceId, e.sequence);
    if (r.pendingShard !== undefined) r.doNotRetryUntil = until;
  }
  async stalePending(cutoff: string, limit: number) {
    return [...this.rows.values()].filter((r) => r.pendingKey !== undefined && r.pendingKey < cutoff).slice(0, limit);
  }
  async rehome(e: { resourceId: string; sequence: number }, from: string, to: string) {
    const r = this.row(e.resourceId, e.sequence);
    if (r.pendingShard !== from) return false;
    r.pendingShard = to;
    return true;
  }
}

export class FakeQueue implements LedgerPublisher {
  /** Accepted messages in queue order (the copy SQS keeps; de-duplicated resends are not added). */
  readonly messages: LedgerEntry[] = [];
  /** Every call's entries, in call order. */
  readonly calls: LedgerEntry[][] = [];
  private readonly dedup = new Set<string>();
  fail: (entry: LedgerEntry, call: number) => SendFailure | undefined = () => undefined;
  throwOnCall: (call: number) => Error | undefined = () => undefined;

  async publish(entries: readonly LedgerEntry[], signal?: AbortSignal): Promise<PublishResult> {
    const call = this.calls.length;
    this.calls.push([...entries]);
    signal?.throwIfAborted();
    const thrown = this.throwOnCall(call);
    if (thrown) throw thrown;
    const sent: string[] = [];
    const failed: (SendFailure & { eventId: string })[] = [];
    for (const e of entries) {
      const f = this.fail(e, call);
      if (f) {
        failed.push({ ...f, eventId: e.eventId });
        continue;
      }
      if (!this.dedup.has(e.eventId)) {
        this.dedup.add(e.eventId);
        this.messages.push(e);
      }
      sent.push(e.eventId);
    }
    return { sent, failed };
  }

  /** What the reference consumer makes of the queue. */
  consume(): LedgerConsumer {
    const c = new LedgerConsumer();
    for (const m of this.messages) c.accept(JSON.stringify(m.body), { groupId: m.groupId, dedupId: m.eventId });
    return c;
  }
}

export const body = (e: OutboxEvent) => toLedgerMessage(e);
