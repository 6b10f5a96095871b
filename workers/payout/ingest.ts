/**
 * Ingestion of CheckoutApprovalAccepted (docs/payouts.md "Ingestion").
 *
 * Stored only under a held shard ("ReadyForProcessing"). The events the consumer hands over at the
 * same time (one receive brings up to 10, several pollers run at once) are coalesced into ONE
 * transaction fenced by one held shard's lease (ingest-store.ts): per payout, the row keyed by
 * paymentId (RECEIVED, initiable in that shard; created only if absent) and PAYOUT_CREATED,
 * sequence 1. First write wins:
 *   - a row with this paymentId exists with the same content fingerprint → acknowledged (no second
 *     row, no second event), whichever shard or worker stored it;
 *   - it exists with different content → dead-lettered PAYOUT_CONFLICT.
 *
 *   handler m1 ─┐ submit                      ┌─ m1 ack
 *   handler m2 ─┼──▶ queue ── linger 2 ms ──▶ TransactWriteItems (fence + ≤ 49 × (row + event)) ─┼─ m2 ack (duplicate)
 *   handler m3 ─┘   (or 49 waiting, or a     └ cancelled? duplicates answered from ALL_OLD,      └─ m3 ack
 *                    transaction finished)      the rest written again
 *
 * One transaction is in flight at a time; what arrives meanwhile waits for the next one, so under
 * load a transaction carries everything that came in while the previous one ran (up to 49). Each message is
 * acknowledged only after the transaction that stored it (or found its duplicate) returned.
 *
 * Not ready for processing: the queue is not even polled (service.ts pauses the consumer's receive
 * gate), because every SQS receive counts towards the queue's redrive maxReceiveCount whatever the
 * consumer does with the message: "put back with visibility 0" in a loop would send good payouts to
 * the DLQ. The consumer's accept gate (defer 0 s, not an attempt) only covers the moment a shard is
 * lost while messages are in hand; NOT_READY covers a shard lost between pick and commit.
 */
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { LeaseLostError } from '../../shared/core/errors.js';
import type { ShardSlot } from '../../shared/core/shard-pool.js';
import { normalizeIban } from './lhv/pain001.js';
import type { Logger } from '../../shared/log/logger.js';
import { MAX_PAYOUTS_PER_INGEST, type IngestOutcome, type IngestStore } from './ingest-store.js';
import type { PayoutMetrics } from './metrics.js';
import { payoutFingerprint, type Payout } from './model.js';
import type { CheckoutApprovalAccepted } from './schema.js';

/** Back on the queue at once, not counted as an attempt: this worker holds no shard right now. */
export const NOT_READY: HandlerResult = {
  action: 'defer',
  delaySec: 0,
  countsAsAttempt: false,
  reason: 'not ready for processing: no payout shard held',
};

export interface IngestDeps {
  readonly pick: () => ShardSlot | undefined;
  readonly store: IngestStore;
  readonly metrics: PayoutMetrics;
  readonly live: boolean;
  readonly log: Logger;
  /** Told after `count` payouts were stored in `shard` (wakes that shard's waiting initiator). */
  readonly onStored?: (shard: string, count: number) => void;
  /** How long the first waiting event waits for company. @default 2 */
  readonly lingerMs?: number;
  /** Transactions in flight at once. @default 1 */
  readonly maxInFlight?: number;
}

/** A payout before it has a shard (the transaction that stores it picks one). */
type Unsharded = Omit<Payout, 'shard' | 'initiableShard' | 'receivedAt' | 'history' | 'updatedAt'>;

type Stored = IngestOutcome | { readonly notReady: true };

interface Waiting {
  readonly payout: Unsharded;
  readonly resolve: (r: Stored & { shard?: string }) => void;
  readonly reject: (err: unknown) => void;
}

export function createIngestHandler(deps: IngestDeps) {
  const lingerMs = deps.lingerMs ?? 2;
  const maxInFlight = deps.maxInFlight ?? 1;
  const queue: Waiting[] = [];
  let inFlight = 0;
  let timer: NodeJS.Timeout | undefined;

  function schedule(now: boolean): void {
    if (inFlight >= maxInFlight || queue.length === 0) return;
    if (now || queue.length >= MAX_PAYOUTS_PER_INGEST) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      flush();
    } else {
      timer ??= setTimeout(() => {
        timer = undefined;
        flush();
      }, lingerMs);
    }
  }

  function flush(): void {
    while (inFlight < maxInFlight && queue.length > 0) {
      // One transaction touches an item once: a paymentId already taken waits for the next one.
      const ids = new Set<string>();
      const take: Waiting[] = [];
      for (let i = 0; i < queue.length && take.length < MAX_PAYOUTS_PER_INGEST; ) {
        const w = queue[i]!;
        if (ids.has(w.payout.paymentId)) {
          i++;
          continue;
        }
        ids.add(w.payout.paymentId);
        take.push(w);
        queue.splice(i, 1);
      }
      inFlight++;
      void commit(take).finally(() => {
        inFlight--;
        schedule(true);
      });
    }
  }

  async function commit(take: readonly Waiting[]): Promise<void> {
    try {
      for (let tries = 0; tries < 3; tries++) {
        const slot = deps.pick();
        if (!slot) break;
        const at = new Date().toISOString();
        const payouts: Payout[] = take.map((w) => ({
          ...w.payout,
          shard: slot.shard,
          initiableShard: slot.shard,
          receivedAt: at,
          history: [{ status: 'RECEIVED', at }],
          updatedAt: at,
        }));
        try {
          const outcomes = await deps.store.store(slot.fence.lease(), payouts);
          outcomes.forEach((o, i) => {
            take[i]!.resolve({ ...o, shard: slot.shard });
          });
          deps.log.debug({ shard: slot.shard, payouts: payouts.length }, 'payouts stored in one transaction');
          const stored = outcomes.filter((o) => o.stored).length;
          if (stored > 0) deps.onStored?.(slot.shard, stored);
          return;
        } catch (err) {
          // The shard went away between pick and commit: nothing was written; try another one.
          if (err instanceof LeaseLostError) continue;
          throw err;
        }
      }
      for (const w of take) w.resolve({ notReady: true });
    } catch (err) {
      for (const w of take) w.reject(err);
    }
  }

  return async function ingest(evt: CheckoutApprovalAccepted, ctx: HandlerContext): Promise<HandlerResult> {
    const log = ctx.log.child({ paymentId: evt.paymentId, eventId: evt.eventId });
    const content = {
      amount: evt.amount,
      currency: evt.currency,
      creditor: {
        name: evt.creditor.name,
        iban: normalizeIban(evt.creditor.iban),
        ...(evt.creditor.bic ? { bic: evt.creditor.bic.replace(/\s+/g, '').toUpperCase() } : {}),
      },
      remittanceInformation: evt.remittanceInformation,
    };
    const fingerprint = payoutFingerprint(content);
    const payout: Unsharded = {
      paymentId: evt.paymentId,
      kind: 'PAYOUT',
      eventId: evt.eventId,
      fingerprint,
      ...content,
      approvedAt: evt.approvedAt,
      status: 'RECEIVED',
      live: deps.live,
      version: 0,
      eventSeq: 0,
    };
    const r = await new Promise<Stored & { shard?: string }>((resolve, reject) => {
      queue.push({ payout, resolve, reject });
      schedule(false);
    });
    if ('notReady' in r) return NOT_READY;
    if (r.stored) {
      deps.metrics.payouts.inc({ status: 'RECEIVED' });
      log.info({ shard: r.shard }, 'payout received');
      return { action: 'ack' };
    }
    const first = r.existing;
    if ((first.fingerprint ?? payoutFingerprint(first)) === fingerprint) {
      // sameEvent: this very event again (an SQS redelivery, a lost answer), not a new one for the payment.
      log.info(
        { firstEventId: first.eventId, sameEvent: first.eventId === evt.eventId, shard: first.shard, status: first.status },
        'duplicate CheckoutApprovalAccepted: payout already received; acknowledged',
      );
      return { action: 'ack' };
    }
    log.warn(
      { alert: 'PAYOUT_CONFLICT', firstEventId: first.eventId },
      'same paymentId with different payout details; dead-lettered',
    );
    return {
      action: 'dead-letter',
      code: 'PAYOUT_CONFLICT',
      detail: `payment ${evt.paymentId} was already received (event ${String(first.eventId)}) with a different amount, currency, creditor or remittance; this event was not applied`,
    };
  };
}
