/**
 * Ports of the ledger emitter. They speak the outbox's domain (pending events, marks, failures,
 * shard membership); the DynamoDB and SQS adapters beside them speak the SDK. The emitter core
 * (shard-emitter.ts) depends on these types only, so it is unit-tested with fakes that can lie
 * the way the real things do (a lagging index, a half-failed batch).
 */
import type { LedgerMessage } from '../../shared/core/outbox.js';
import type { StoredEvent } from '../../shared/core/ports.js';

/** An outbox row as the emitter sees it: a stored event plus its emission state. */
export interface OutboxEvent extends StoredEvent {
  /** Sort key in the `pending` index (writer's timestamp first); absent once emitted. */
  readonly pendingKey?: string;
  /** Failed sends so far (SendMessageBatch `Failed` entries; not whole-call errors). */
  readonly sendFailures: number;
  /** Not to be sent before this instant (ISO-8601), after a failed send. */
  readonly doNotRetryUntil?: string;
  readonly lastSendError?: string;
}

/** A page of pending events of one shard, in `pendingKey` order (oldest write first). */
export interface PendingPage {
  readonly events: readonly OutboxEvent[];
  /** More pending events exist past this page. */
  readonly truncated: boolean;
}

export interface SendFailure {
  readonly code: string;
  readonly message: string;
  /** The sender's fault (SQS `SenderFault`): resending the same entry will fail again. */
  readonly senderFault: boolean;
}

/** The outbox as the emitter uses it (events table + `pending` index). */
export interface LedgerOutbox {
  /**
   * Pending events of `shard` from the (eventually consistent) `pending` index, oldest first;
   * with `afterKey`, only those whose pendingKey sorts after it (continuing past a blocked head).
   */
  pendingInShard(shard: string, limit: number, afterKey?: string): Promise<PendingPage>;
  /** A resource's events with sequence < `below`, ascending, read consistently from the base table. */
  resourceEventsBelow(resourceId: string, below: number): Promise<readonly OutboxEvent[]>;
  /** All of a resource's events, ascending, consistent (CLI, tests). */
  resourceEvents(resourceId: string): Promise<readonly OutboxEvent[]>;
  /**
   * Take events SQS accepted out of the `pending` index (emittedAt set), as few calls as the
   * store allows (DynamoDB: one BatchWriteItem per 25). Returns the ids recorded; the others stay
   * pending (resent later: a duplicate, never a loss). Throws when the call itself failed.
   * Unfenced on purpose: it records a fact (SQS accepted the event) that holds whoever writes it.
   */
  markEmitted(events: readonly OutboxEvent[], emittedAt: string): Promise<readonly string[]>;
  /** Count a failed send on a pending event and set its back-off; returns the new failure count. */
  recordSendFailure(
    event: Pick<OutboxEvent, 'resourceId' | 'sequence'>,
    failure: SendFailure,
    doNotRetryUntil: string,
  ): Promise<number>;
  /** Lengthen the back-off of a pending event (repeated failures). */
  setDoNotRetryUntil(event: Pick<OutboxEvent, 'resourceId' | 'sequence'>, doNotRetryUntil: string): Promise<void>;
  /** Pending events written before `cutoffTimestamp`, any shard (scan of the sparse index). */
  stalePending(cutoffTimestamp: string, limit: number): Promise<readonly OutboxEvent[]>;
  /** Move a pending event to another shard, if it is still pending in `fromShard`. */
  rehome(event: Pick<OutboxEvent, 'resourceId' | 'sequence'>, fromShard: string, toShard: string): Promise<boolean>;
}

/** One message to publish: the CONTRACT §5 body and its ids. */
export interface LedgerEntry {
  readonly eventId: string;
  readonly groupId: string;
  readonly body: LedgerMessage;
}

export interface PublishResult {
  /** Event ids SQS accepted (a de-duplicated resend counts as accepted: it is in the queue). */
  readonly sent: readonly string[];
  readonly failed: readonly (SendFailure & { readonly eventId: string })[];
}

/** ledger-events.fifo. `publish` throws when the call itself failed: then nothing is known. */
export interface LedgerPublisher {
  publish(entries: readonly LedgerEntry[], signal?: AbortSignal): Promise<PublishResult>;
}

/** Live emitter processes, for fair shard shares. */
export type { Membership } from '../../shared/core/membership.js';
