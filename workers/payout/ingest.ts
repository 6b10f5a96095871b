/**
 * Ingestion of CheckoutApprovalAccepted (docs/payouts.md "Ingestion").
 *
 * Stored only under a held shard ("ReadyForProcessing"): one transaction, fenced by that shard's
 * lease, creates
 *   - the claim row `payment#<paymentId>` in `batches` (attribute_not_exists): one per paymentId
 *     forever, whichever shard took it, so a duplicate delivered to another worker holding another
 *     shard is still caught — strongly consistent, unlike the by-payment index, and never expiring,
 *     unlike the idempotency table's TTL'd work items;
 *   - the payout row (PK the shard, SK the paymentId), RECEIVED, initiable;
 *   - PAYOUT_CREATED, sequence 1, in the outbox.
 * First write wins: a duplicate with the same content is acknowledged (no second row, no second
 * event); the same paymentId with a different amount/creditor is dead-lettered PAYOUT_CONFLICT.
 *
 * Not ready for processing: the queue is not even polled (service.ts pauses the consumer's receive
 * gate), because every SQS receive counts towards the queue's redrive maxReceiveCount whatever the
 * consumer does with the message: "put back with visibility 0" in a loop would send good payouts to
 * the DLQ. The consumer's accept gate (defer 0 s, not an attempt) only covers the moment a shard is
 * lost while messages are in hand.
 */
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { ConflictError, LeaseLostError } from '../../shared/core/errors.js';
import type { OutcomeStore } from '../../shared/core/ports.js';
import { RetryableError } from '../../shared/errors.js';
import { normalizeIban } from './lhv/pain001.js';
import type { Logger } from '../../shared/log/logger.js';
import type { ShardSlot } from './initiator.js';
import type { PayoutMetrics } from './metrics.js';
import { claimChange, claimKey, createdDetails, PAYOUT_EVENT, payoutChange, payoutFingerprint, type Payout } from './model.js';
import type { PayoutRepository } from './repo.js';
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
  readonly outcomes: OutcomeStore;
  readonly repo: PayoutRepository;
  readonly metrics: PayoutMetrics;
  readonly live: boolean;
}

export function createIngestHandler(deps: IngestDeps) {
  return async function ingest(evt: CheckoutApprovalAccepted, ctx: HandlerContext): Promise<HandlerResult> {
    const log = ctx.log.child({ paymentId: evt.paymentId, eventId: evt.eventId });
    const at = new Date().toISOString();
    for (let tries = 0; tries < 3; tries++) {
      const slot = deps.pick();
      if (!slot) return NOT_READY;
      const payout: Payout = {
        shard: slot.shard,
        paymentId: evt.paymentId,
        kind: 'PAYOUT',
        eventId: evt.eventId,
        amount: evt.amount,
        currency: evt.currency,
        creditor: {
          name: evt.creditor.name,
          iban: normalizeIban(evt.creditor.iban),
          ...(evt.creditor.bic ? { bic: evt.creditor.bic.replace(/\s+/g, '').toUpperCase() } : {}),
        },
        remittanceInformation: evt.remittanceInformation,
        approvedAt: evt.approvedAt,
        receivedAt: at,
        status: 'RECEIVED',
        initiableShard: slot.shard,
        live: deps.live,
        history: [{ status: 'RECEIVED', at }],
        updatedAt: at,
        version: 0,
        eventSeq: 0,
      };
      const fingerprint = payoutFingerprint(payout);
      try {
        await deps.outcomes.commit({
          lease: slot.fence.lease(),
          changes: [
            claimChange({
              batchId: claimKey(evt.paymentId),
              kind: 'PAYMENT_CLAIM',
              paymentId: evt.paymentId,
              shard: slot.shard,
              eventId: evt.eventId,
              fingerprint,
              claimedAt: at,
            }),
            payoutChange(undefined, payout, [{ eventType: PAYOUT_EVENT.created, details: createdDetails(payout) }]),
          ],
        });
        deps.metrics.payouts.inc({ status: 'RECEIVED' });
        log.info({ shard: slot.shard }, 'payout received');
        return { action: 'ack' };
      } catch (err) {
        // The shard went away between pick and commit: nothing was written; try another one.
        if (err instanceof LeaseLostError) continue;
        if (err instanceof ConflictError && err.part === 'entity' && err.reason === 'condition') {
          return duplicate(evt, fingerprint, err, log);
        }
        throw err;
      }
    }
    return NOT_READY;
  };

  async function duplicate(
    evt: CheckoutApprovalAccepted,
    fingerprint: string,
    err: ConflictError,
    log: Logger,
  ): Promise<HandlerResult> {
    const fromError = err.existing?.kind === 'PAYMENT_CLAIM' ? err.existing : undefined;
    const claim = fromError ?? (await deps.repo.getClaim(evt.paymentId));
    if (!claim)
      throw new RetryableError('PAYOUT_CLAIM_MISSING', `payout ${evt.paymentId} exists without its claim row`, { cause: err });
    if (claim.fingerprint === fingerprint) {
      log.info(
        { firstEventId: claim.eventId, shard: claim.shard },
        'duplicate CheckoutApprovalAccepted: payout already received; acknowledged',
      );
      return { action: 'ack' };
    }
    log.warn(
      { alert: 'PAYOUT_CONFLICT', firstEventId: claim.eventId },
      'same paymentId with different payout details; dead-lettered',
    );
    return {
      action: 'dead-letter',
      code: 'PAYOUT_CONFLICT',
      detail: `payment ${evt.paymentId} was already received (event ${String(claim.eventId)}) with a different amount, currency, creditor or remittance; this event was not applied`,
    };
  }
}
