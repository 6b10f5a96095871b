import { RetryableError, TerminalError } from '../../shared/errors.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { systemClock, type Clock } from '../../shared/core/clock.js';
import type { Deferral, Once, OnceItem, WorkAnswer, WorkContext } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { RefundOutcome, RefundRequest } from '../../shared/connectors/types.js';
import { REFUNDABLE_STATUSES, type Charge } from '../../shared/charges/charge.js';
import type { ChargeRepository } from '../../shared/charges/repo.js';
import { refundIdempotencyKey, refundLeaseKey, refundWorkItemKey } from './keys.js';
import type { RefundMetrics } from './metrics.js';
import {
  amendRefund,
  chargeChange,
  chargeTotals,
  createRefund,
  moveRefund,
  refundOf,
  reservationRow,
  type Refund,
} from './refund.js';
import type { RefundRequested } from './schema.js';

export interface RefundSettings {
  /** REFUND_CONFIRMATION_DELAY_SECONDS: first deferral of a refund the processor confirms later; doubles per attempt. */
  readonly confirmDelaySec: number;
  /** Longest single deferral (SQS allows 12 hours). */
  readonly maxConfirmDelaySec: number;
}

/** What the refund handler needs: once() for the exactly-once part, the charges it reads, the processors. */
export interface RefundDeps {
  readonly once: Once;
  readonly charges: ChargeRepository;
  readonly registry: Pick<ProcessorRegistry, 'get'>;
  readonly settings: RefundSettings;
  /** @default Date.now */
  readonly clock?: Clock;
  readonly metrics?: RefundMetrics;
  /** Fault points for tests; absent in production. */
  readonly hooks?: RefundHooks;
}

/** Points between the steps where tests hold or stop a worker. */
export interface RefundHooks {
  /** Write 1 is done (the refund row leased); the charge is not read yet. */
  readonly beforeChargeRead?: (refundId: string) => Promise<void>;
  /** The charge was read and nothing is committed yet (a race between two refunds of one charge is held here). */
  readonly afterChargeRead?: (refundId: string) => Promise<void>;
  /** REFUND_SUBMITTED is committed; the processor has not been asked anything yet. */
  readonly beforeProcessorCall?: (refundId: string) => Promise<void>;
}

/** One attempt at one refund request. */
interface RefundRun {
  readonly deps: RefundDeps;
  readonly req: RefundRequested;
  readonly w: WorkContext;
  at(): string;
}

/**
 * A refund request, inside once() on the refund's own row (lease `refund#<refundId>`, the request's
 * work item on that row):
 *
 *   write 1   the refund row (a bare reservation if new), leased; the charge read (strongly consistent)
 *   commit    refund REFUND_CREATED -> REFUND_SUBMITTED (+ both events, the idempotency key) AND the
 *             charge's refundedAmount + amount, under the charge's version as read — BEFORE the call
 *   call      refund at the processor under the key; then REFUNDED (ack) · REFUND_ERROR with the amount
 *             given back (dead letter PROCESSOR_REJECTED) · still pending (deferred, looked up next time)
 *
 * Two distinct refunds of one charge hold different row leases and may run at once in two
 * processes; what stops them both taking the last pound is the charge's version condition in that
 * commit: the second to commit finds the charge changed, is refused (ConflictError, retried), and
 * its next attempt reads the new refundedAmount and refuses the refund (REFUND_AMOUNT_UNAVAILABLE).
 */
export function createRefundHandler(deps: RefundDeps) {
  const clock = deps.clock ?? systemClock;
  return async function handleRefund(req: RefundRequested, ctx: HandlerContext): Promise<HandlerResult> {
    const log = ctx.log.child({ refundId: req.refundId, chargeId: req.chargeId, refundRequestId: req.refundRequestId });
    const at = () => new Date(clock()).toISOString();
    const item: OnceItem = {
      leaseKey: refundLeaseKey(req.refundId),
      idempotencyKey: refundWorkItemKey(req.refundRequestId),
      subject: `refund ${req.refundId}`,
      row: { ref: { table: 'refunds', key: { refundId: req.refundId } }, create: reservationRow(clock()) },
    };
    return deps.once(item, { ...ctx, log }, (w) => refund({ deps, req, w, at }));
  };
}

/**
 * The decision table, on what write 1 found:
 *
 *   a refund for another charge or amount     REFUND_ID_CONFLICT (dead letter; the refund is untouched)
 *   REFUNDED                                  ack, no processor call
 *   REFUND_ERROR                              the same letter again (its code)
 *   REFUND_CREATED / REFUND_SUBMITTED         look it up first, then (only if not found) send again under its key
 *   a reservation (new refund), by the charge:
 *     none                                    CHARGE_NOT_FOUND
 *     not CAPTURED / CAPTURE_SUBMITTED        NOT_REFUNDABLE
 *     refundedAmount + amount > amount        REFUND_AMOUNT_UNAVAILABLE
 *     else                                    create (the commit above), then refund at the processor
 * A refusal leaves only the bare reservation (no refund, nothing taken from the charge).
 */
async function refund(run: RefundRun): Promise<WorkAnswer> {
  const { deps, req, w } = run;
  const existing = refundOf(w.entity);
  if (existing) return follow(run, existing);

  await deps.hooks?.beforeChargeRead?.(req.refundId);
  const charge = await deps.charges.get(req.chargeId);
  await deps.hooks?.afterChargeRead?.(req.refundId);
  if (!charge) return refuse(run, 'CHARGE_NOT_FOUND', `no charge ${req.chargeId}`);
  if (!REFUNDABLE_STATUSES.has(charge.status) || !charge.processorRef) {
    return refuse(
      run,
      'NOT_REFUNDABLE',
      `charge ${charge.chargeId} is ${charge.status}; only a captured charge (CAPTURED or CAPTURE_SUBMITTED) can be refunded`,
    );
  }
  const refunded = charge.refundedAmount ?? 0;
  if (refunded + req.amount > charge.amount) {
    return refuse(
      run,
      'REFUND_AMOUNT_UNAVAILABLE',
      `refund of ${req.amount} asked; ${charge.amount - refunded} of the captured ${charge.amount} ${charge.currency} is left (${refunded} refunded or in progress)`,
    );
  }
  const port = deps.registry.get(charge.processor);

  const made = createRefund(
    charge,
    {
      refundId: req.refundId,
      refundRequestId: req.refundRequestId,
      amount: req.amount,
      ...(req.reference !== undefined ? { reference: req.reference } : {}),
      requestedAt: req.requestedAt,
      idempotencyKey: refundIdempotencyKey(req.refundRequestId),
    },
    {
      at: run.at(),
      createdAt: typeof w.entity?.createdAt === 'string' ? w.entity.createdAt : run.at(),
      reservedVersion: Number(w.entity?.version ?? 1),
    },
  );
  // Durable before the call: the amount is taken from the charge and the key is on the refund.
  await w.commit(made.changes);
  deps.metrics?.refunds.inc({ processor: charge.processor, outcome: 'REFUND_SUBMITTED' });
  w.log.info(
    { amount: req.amount, refundedAmount: made.refundedAmount, capturedAmount: charge.amount },
    'refund created and submitted',
  );
  await deps.hooks?.beforeProcessorCall?.(req.refundId);
  return record(run, made.refund, await port.refund(processorRequest(made.refund), w.signal));
}

/**
 * Refused before anything was created: the request is dead-lettered. Its reservation stays a
 * reservation (not a refund; the table's TTL removes it) and its work item stays open, so a redrive
 * decides afresh (e.g. once another refund of the charge has ended in REFUND_ERROR).
 *
 * The refusal is fenced like every other answer: the reservation records it in a commit under this
 * attempt's lease. A holder paused past its lease may have read the row before another worker took
 * the request over and refunded it, and the charge after (its own refund now counted as taken):
 * without the fence it would dead-letter a request whose refund succeeded. With it, its commit is
 * refused (lease lost, retried) and the next delivery finds the refund and acknowledges it.
 */
async function refuse(run: RefundRun, code: string, detail: string): Promise<never> {
  const { req, w } = run;
  await w.commit([
    {
      table: 'refunds',
      key: { refundId: req.refundId },
      expectedVersion: Number(w.entity?.version ?? 1),
      set: { refusedCode: code, refusedAt: run.at(), updatedAt: run.at() },
    },
  ]);
  run.deps.metrics?.refusals.inc({ code });
  throw new TerminalError(code, detail);
}

/** The refund exists: this is a redelivery, a redrive, or another request for the same refundId. */
async function follow(run: RefundRun, refund: Refund): Promise<WorkAnswer> {
  const { req, w } = run;
  if (refund.chargeId !== req.chargeId || refund.amount !== req.amount) {
    run.deps.metrics?.refusals.inc({ code: 'REFUND_ID_CONFLICT' });
    const detail = `refund ${refund.refundId} exists for charge ${refund.chargeId} and amount ${refund.amount}; this request names charge ${req.chargeId} and amount ${req.amount}`;
    return w.complete([], { status: refund.status, action: 'dead-letter', code: 'REFUND_ID_CONFLICT', detail });
  }
  switch (refund.status) {
    case 'REFUNDED':
      w.log.info('refund already REFUNDED; no second refund call');
      return w.complete([], { status: refund.status, action: 'ack' });
    case 'REFUND_ERROR': {
      const code = refund.errorCode ?? 'PROCESSOR_REJECTED';
      w.log.warn({ code }, 'refund already ended in REFUND_ERROR; dead-lettering the request again, not acknowledging');
      return w.repeat({ status: refund.status, code, ...(refund.errorMessage ? { detail: refund.errorMessage } : {}) });
    }
    default:
      return resolve(run, refund);
  }
}

/**
 * The refund is REFUND_SUBMITTED: an earlier attempt (perhaps killed, perhaps answered ambiguously,
 * perhaps told "pending") may have reached the processor. Look it up first; send again — under the
 * same key, which the processor de-duplicates — only when the processor has no record of it.
 */
async function resolve(run: RefundRun, refund: Refund): Promise<WorkAnswer> {
  const { deps, w } = run;
  const port = deps.registry.get(refund.processor);
  const request = processorRequest(refund);
  const found = await port.lookupRefund({ ...request, ...(refund.refundRef ? { refundRef: refund.refundRef } : {}) }, w.signal);
  w.log.info({ found: found.kind }, 'refund was REFUND_SUBMITTED: looked it up before sending anything again');
  switch (found.kind) {
    case 'refunded':
    case 'pending':
      if (found.amount !== refund.amount) {
        throw new TerminalError(
          'AMOUNT_MISMATCH',
          `processor holds a refund of ${found.amount} under ${refund.idempotencyKey}; the refund is ${refund.amount}`,
        );
      }
      return found.kind === 'refunded' ? succeed(run, refund, found.refundRef) : pending(run, refund, found.refundRef);
    case 'failed':
      return fail(run, refund, { code: found.code, message: found.message, refundRef: found.refundRef });
    case 'unknown':
      throw new RetryableError('REFUND_OUTCOME_UNKNOWN', `refund lookup not conclusive: ${found.reason}`);
    case 'not_found':
      return record(run, refund, await port.refund(request, w.signal));
  }
}

async function record(run: RefundRun, refund: Refund, outcome: RefundOutcome): Promise<WorkAnswer> {
  switch (outcome.kind) {
    case 'refunded':
      return succeed(run, refund, outcome.refundRef);
    case 'submitted':
      return pending(run, refund, outcome.refundRef);
    case 'rejected':
      return fail(run, refund, outcome);
    case 'error':
      // Refused for good: nothing was refunded. Otherwise the refund stays SUBMITTED and the next
      // attempt looks it up before sending again.
      if (!outcome.retryable) return fail(run, refund, outcome);
      throw new RetryableError(outcome.code, `${outcome.code}: ${outcome.message}`, {
        ...(outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {}),
      });
    case 'ambiguous':
      throw new RetryableError(
        'REFUND_OUTCOME_UNKNOWN',
        `refund outcome unknown: ${outcome.reason}; it is looked up before anything is sent again`,
      );
  }
}

async function succeed(run: RefundRun, refund: Refund, refundRef: string): Promise<WorkAnswer> {
  const { deps, w } = run;
  const charge = await chargeOfRefund(run, refund);
  const move = moveRefund(refund, 'REFUNDED', {
    at: run.at(),
    details: { amount: refund.amount, refund_ref: refundRef, ...chargeTotals(charge) },
    fields: { refundRef },
  });
  const done = await w.complete([move.change], { status: 'REFUNDED', action: 'ack' });
  deps.metrics?.refunds.inc({ processor: refund.processor, outcome: 'REFUNDED' });
  w.log.info({ refundRef }, 'refund recorded REFUNDED');
  return done;
}

/** The processor confirms later: REFUND_SUBMITTED stays, the message comes back and looks it up. */
async function pending(run: RefundRun, refund: Refund, refundRef: string | undefined): Promise<Deferral> {
  const { deps, w } = run;
  if (refundRef && refundRef !== refund.refundRef) await w.commit([amendRefund(refund, { at: run.at(), refundRef })]);
  const s = deps.settings;
  const delaySec = Math.min(s.maxConfirmDelaySec, s.confirmDelaySec * 2 ** Math.min(20, Math.max(0, w.attempts - 1)));
  deps.metrics?.refunds.inc({ processor: refund.processor, outcome: 'PENDING' });
  w.log.info({ delaySec, attempts: w.attempts }, 'refund pending at the processor; deferring the message to look it up again');
  // Counted as an attempt: PAYFLEET_MAX_ATTEMPTS bounds the wait (then RETRIES_EXHAUSTED, refund still SUBMITTED).
  return { action: 'defer', delaySec, reason: 'refund submitted; the processor confirms later' };
}

/** Refused by the processor: REFUND_ERROR, and the amount goes back to the charge, in one commit. */
async function fail(
  run: RefundRun,
  refund: Refund,
  refusal: { code: string; message: string; refundRef?: string | undefined },
): Promise<WorkAnswer> {
  const { deps, w } = run;
  // A fresh read just before the commit: the charge's version is what the give-back is conditioned on.
  const charge = await chargeOfRefund(run, refund);
  const back = (charge.refundedAmount ?? 0) - refund.amount;
  if (back < 0)
    throw new TypeError(
      `charge ${charge.chargeId}: refundedAmount ${charge.refundedAmount ?? 0} is less than refund ${refund.refundId}'s ${refund.amount}`,
    );
  const detail = `refund refused by ${refund.processor}: ${refusal.code}: ${refusal.message}`;
  const move = moveRefund(refund, 'REFUND_ERROR', {
    at: run.at(),
    details: {
      amount: refund.amount,
      error_code: 'PROCESSOR_REJECTED',
      processor_code: refusal.code,
      message: refusal.message,
      ...chargeTotals(charge, back),
    },
    fields: {
      errorCode: 'PROCESSOR_REJECTED',
      processorCode: refusal.code,
      errorMessage: detail,
      ...(refusal.refundRef ? { refundRef: refusal.refundRef } : {}),
    },
  });
  const done = await w.complete([move.change, chargeChange(charge, back, run.at())], {
    status: 'REFUND_ERROR',
    action: 'dead-letter',
    code: 'PROCESSOR_REJECTED',
    detail,
  });
  deps.metrics?.refunds.inc({ processor: refund.processor, outcome: 'REFUND_ERROR' });
  return done;
}

async function chargeOfRefund(run: RefundRun, refund: Refund): Promise<Charge> {
  const charge = await run.deps.charges.get(refund.chargeId);
  if (!charge) throw new TypeError(`refund ${refund.refundId}: its charge ${refund.chargeId} is gone`);
  return charge;
}

function processorRequest(refund: Refund): RefundRequest {
  return {
    chargeId: refund.chargeId,
    refundId: refund.refundId,
    processorRef: refund.chargeProcessorRef,
    amount: refund.amount,
    currency: refund.currency,
    idempotencyKey: refund.idempotencyKey,
  };
}
