import type { Counter } from 'prom-client';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/logger.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import type { LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { EntityChange, IdempotencyStore, NewEvent, OutcomeStore } from '../../shared/core/ports.js';
import { dependencyOutage } from '../../shared/core/breaker.js';
import { processOnce, type WorkContext } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { CaptureOutcome, ProcessorConnector } from '../../shared/connectors/types.js';
import {
  alreadyFinalLetter,
  captureAttemptsFromHistory,
  deadLetterCodeOf,
  eventFor,
  repeatLetterOf,
  type Charge,
  type ChargeRequestResult,
  type ChargeStatus,
} from '../../shared/charges/charge.js';
import type { ChargeRepository } from '../../shared/charges/repo.js';
import type { CaptureRequested } from './schema.js';

export interface CaptureSettings {
  /** CAPTURE_PROCESS_MAXIMUM_RETRIES: attempts, counted from the charge's history, before CAPTURE_ERROR. */
  readonly maxRetries: number;
  /** CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: how long a failed capture's message is deferred. */
  readonly retryDelaySec: number;
}

export interface CaptureDeps {
  readonly keeper: LeaseKeeper;
  readonly idempotency: IdempotencyStore;
  readonly outcomes: OutcomeStore;
  readonly charges: ChargeRepository;
  readonly registry: ProcessorRegistry;
  readonly ownerId: string;
  readonly attemptDeadlineMs: number;
  readonly settings: CaptureSettings;
  readonly log: Logger;
  readonly captures?: Counter<'processor' | 'outcome'>;
}

/** Sparse GSI `awaiting-capture` marks charges waiting to be captured (see gauges.ts). */
export const AWAITING = 'AWAITING';
const AWAITING_STATES: ReadonlySet<ChargeStatus> = new Set(['CAPTURE_APPROVED', 'CAPTURE_APPROVED_RETRY', 'CAPTURE_READY']);

/** The processor idempotency key of a charge's capture: the same on every attempt. */
export const captureIdempotencyKey = (chargeId: string): string => `payfleet-capture-${chargeId}`;

/**
 * GOV.UK Pay's background capture, as pay-connector does it:
 *
 *   AUTHORISATION_SUCCESS ─USER_APPROVED_FOR_CAPTURE─▶ CAPTURE_APPROVED ─▶ CAPTURE_READY (committed before the call)
 *     ─ capture ─▶ CAPTURED | CAPTURE_SUBMITTED                              (message deleted)
 *               └▶ CAPTURE_APPROVED_RETRY, message deferred by the retry delay (attempt counted in history)
 *   CAPTURE_APPROVED_RETRY with attempts >= maximum ─▶ CAPTURE_ERROR (ERROR log for alerting; message deleted)
 *
 * A charge found in CAPTURE_READY was mid-capture when its worker died: it is looked up first, and
 * any repeated capture carries the same idempotency key, so the processor captures at most once.
 *
 * A request that meets its charge in CAPTURE_ERROR after a refusal (a redelivery, a redrive of its
 * own letter, or another request for the same charge) is dead-lettered with the refusal's code, never
 * acknowledged: the capture did not happen and a person has to settle it. An abandoned capture was
 * acknowledged (its signal is the CAPTURE_ABANDONED alert), and so are its later deliveries.
 */
export function createCaptureHandler(deps: CaptureDeps) {
  return async function handleCapture(req: CaptureRequested, ctx: HandlerContext): Promise<HandlerResult> {
    const log = ctx.log.child({ chargeId: req.chargeId, captureRequestId: req.captureRequestId });
    const outcome = await processOnce(
      deps,
      { leaseKey: `charge#${req.chargeId}`, idempotencyKey: `capture#${req.captureRequestId}` },
      ctx,
      (w) => capture(deps, req, w, log),
    );
    if (outcome.status === 'duplicate') return answerDuplicate(deps, req, outcome.record.result, log);
    return outcome.result;
  };
}

/**
 * A delivery of a request whose work item is completed (a duplicate, or its redriven letter): a
 * request that left the charge CAPTURE_ERROR is dead-lettered again with that code, from what the
 * work item kept; anything else is acknowledged.
 */
async function answerDuplicate(deps: CaptureDeps, req: CaptureRequested, result: Record<string, unknown> | undefined, log: Logger): Promise<HandlerResult> {
  const letter = await repeatLetterOf(req.chargeId, result, () => deps.charges.get(req.chargeId));
  if (!letter) {
    log.info('capture request already completed; acknowledging the duplicate');
    return { action: 'ack' };
  }
  log.warn({ code: letter.code }, 'request already ended its charge in a final error; dead-lettering it again, not acknowledging');
  return { action: 'dead-letter', ...letter };
}

async function capture(deps: CaptureDeps, req: CaptureRequested, w: WorkContext, log: Logger): Promise<HandlerResult> {
  let charge = await deps.charges.get(req.chargeId);
  if (!charge || charge.status === 'CREATED' || charge.status === 'AUTHORISATION_READY') {
    // The authorisation has not been recorded yet: retry with backoff rather than lose the request.
    throw new RetryableError('NOT_YET_AUTHORISED', charge ? `charge is ${charge.status}` : 'charge not found yet');
  }
  switch (charge.status) {
    case 'CAPTURED':
    case 'CAPTURE_SUBMITTED':
      log.info({ status: charge.status }, 'charge already captured; no second capture call');
      return complete(deps, charge, req, w, { action: 'ack' });
    case 'CAPTURE_ERROR': {
      const code = deadLetterCodeOf(charge);
      if (!code) {
        // Abandoned after the maximum attempts: that message was acknowledged with an alert.
        log.info('charge already given up as CAPTURE_ERROR (abandoned); acknowledging');
        return complete(deps, charge, req, w, { action: 'ack' });
      }
      // The capture was refused and dead-lettered: this request gets the same letter, not an ack.
      const letter = alreadyFinalLetter(charge.chargeId, charge.status, code);
      log.warn({ status: charge.status, code }, 'charge already ended in CAPTURE_ERROR; dead-lettering the request, not acknowledging');
      return complete(deps, charge, req, w, { action: 'dead-letter', ...letter });
    }
    case 'AUTHORISATION_REJECTED':
    case 'AUTHORISATION_ERROR':
    case 'AUTHORISATION_ERROR_CANCELLED':
      throw new TerminalError('NOT_CAPTURABLE', `charge is ${charge.status} and can never be captured`);
    default:
      break;
  }
  if (!charge.processorRef) throw new TerminalError('NOT_CAPTURABLE', 'authorised charge has no processor reference');
  const connector = deps.registry.get(charge.processor);

  if (charge.status === 'AUTHORISATION_SUCCESS') {
    charge = await move(deps, charge, 'CAPTURE_APPROVED', w, { captureRequestId: req.captureRequestId }, {}, { captureApprovedAt: new Date().toISOString() });
  }
  let wasReady = charge.status === 'CAPTURE_READY';
  if (!wasReady) {
    const attempts = captureAttemptsFromHistory(charge.history);
    if (attempts >= deps.settings.maxRetries) {
      const done = await move(deps, charge, 'CAPTURE_ERROR', w, {}, { attempts, reason: 'too many retries' }, {}, { req });
      log.error({ alert: 'CAPTURE_ABANDONED', attempts, status: done.status }, 'capture abandoned after too many retries: charge is CAPTURE_ERROR');
      deps.captures?.inc({ processor: charge.processor, outcome: 'CAPTURE_ERROR' });
      return { action: 'ack' };
    }
    charge = await move(deps, charge, 'CAPTURE_READY', w);
  }

  let outcome: CaptureOutcome | undefined;
  if (wasReady) {
    log.info('charge was CAPTURE_READY: looking up the earlier attempt before capturing again');
    const found = await connector.lookup(
      { chargeId: charge.chargeId, processorRef: charge.processorRef!, idempotencyKey: captureIdempotencyKey(charge.chargeId), amount: charge.amount, currency: charge.currency },
      w.signal,
    );
    if (found.kind === 'captured') outcome = { kind: 'captured', processorRef: found.processorRef };
    else if (found.kind === 'capture_submitted') outcome = { kind: 'submitted', processorRef: found.processorRef };
    wasReady = false;
  }
  outcome ??= await connector.capture(
    {
      chargeId: charge.chargeId,
      processorRef: charge.processorRef!,
      amount: charge.amount,
      currency: charge.currency,
      idempotencyKey: captureIdempotencyKey(charge.chargeId),
    },
    w.signal,
  );
  return record(deps, connector, charge, req, w, log, outcome);
}

async function record(
  deps: CaptureDeps,
  connector: ProcessorConnector,
  charge: Charge,
  req: CaptureRequested,
  w: WorkContext,
  log: Logger,
  outcome: CaptureOutcome,
): Promise<HandlerResult> {
  switch (outcome.kind) {
    case 'captured':
    case 'submitted': {
      const to: ChargeStatus = outcome.kind === 'captured' ? 'CAPTURED' : 'CAPTURE_SUBMITTED';
      await move(deps, charge, to, w, {}, { processor_ref: charge.processorRef }, {}, { req });
      deps.captures?.inc({ processor: connector.name, outcome: to });
      log.info({ status: to }, 'capture recorded');
      return { action: 'ack' };
    }
    case 'error':
      if (!outcome.retryable) {
        const detail = `capture refused: ${outcome.code}: ${outcome.message}`;
        const refDetail = outcome.processorRef ? { processor_ref: outcome.processorRef } : {};
        await move(deps, charge, 'CAPTURE_ERROR', w, { errorCode: outcome.code }, { error_code: outcome.code, message: outcome.message, ...refDetail }, {}, {
          req,
          code: outcome.code,
          detail,
        });
        deps.captures?.inc({ processor: connector.name, outcome: 'CAPTURE_ERROR' });
        return { action: 'dead-letter', code: outcome.code, detail };
      }
      // The processor is down (its breaker opened): not a failed capture attempt; park the message.
      if (dependencyOutage()) throw new RetryableError(outcome.code, `${outcome.code}: ${outcome.message}`);
      return retryLater(deps, charge, w, log, `${outcome.code}: ${outcome.message}`);
    case 'ambiguous':
      if (dependencyOutage()) throw new RetryableError('CAPTURE_OUTCOME_UNKNOWN', `outcome unknown: ${outcome.reason}`);
      // Safe to retry later: the next capture carries the same idempotency key, and a charge left in
      // CAPTURE_APPROVED_RETRY is captured again, never twice (the processor de-duplicates by key).
      return retryLater(deps, charge, w, log, `outcome unknown: ${outcome.reason}`);
  }
}

async function retryLater(deps: CaptureDeps, charge: Charge, w: WorkContext, log: Logger, reason: string): Promise<HandlerResult> {
  await move(deps, charge, 'CAPTURE_APPROVED_RETRY', w);
  const attempts = captureAttemptsFromHistory(charge.history);
  log.warn({ attempts, maxRetries: deps.settings.maxRetries, delaySec: deps.settings.retryDelaySec, reason }, 'capture failed; deferring the message');
  deps.captures?.inc({ processor: charge.processor, outcome: 'CAPTURE_APPROVED_RETRY' });
  // Attempts are counted from the charge's history, not by the consumer: do not charge its budget.
  return { action: 'defer', delaySec: deps.settings.retryDelaySec, countsAsAttempt: false, reason };
}

/** Complete the work item without changing the charge (a redelivery of a settled request). */
async function complete(deps: CaptureDeps, charge: Charge, req: CaptureRequested, w: WorkContext, result: HandlerResult): Promise<HandlerResult> {
  const done: ChargeRequestResult = { status: charge.status, ...(result.action === 'dead-letter' ? { code: result.code } : {}) };
  await deps.outcomes.commit({
    lease: w.held.lease,
    workItem: { idempotencyKey: `capture#${req.captureRequestId}`, attemptId: w.attemptId, result: { ...done } },
    changes: [],
  });
  return result;
}

/**
 * Commit one edge of the graph, with its event (if the edge has one) and the awaiting-capture index
 * attributes kept in step with the status. `completes` also completes that request's work item,
 * keeping the status reached and, for a final error, the code (and detail) its later deliveries get.
 */
async function move(
  deps: CaptureDeps,
  charge: Charge,
  to: ChargeStatus,
  w: WorkContext,
  extra: Partial<Charge> = {},
  details: Record<string, unknown> = {},
  index: { captureApprovedAt?: string } = {},
  completes?: { readonly req: CaptureRequested; readonly code?: string; readonly detail?: string },
): Promise<Charge> {
  const at = new Date().toISOString();
  const eventType = eventFor(charge.status, to);
  const events: NewEvent[] = eventType ? [{ eventType, details }] : [];
  const awaiting = AWAITING_STATES.has(to);
  const approvedAt = index.captureApprovedAt ?? (charge as Charge & { captureDueAt?: string }).captureDueAt ?? at;
  const after = { ...charge, ...extra, status: to, updatedAt: at, history: [...charge.history, { status: to, at }] } as Charge;
  // The index attributes are set or removed below, never carried over from the read.
  const { version: _v, eventSeq: _e, chargeId: _c, captureQueue: _q, captureDueAt: _d, ...attrs } = after as Charge & {
    captureQueue?: string;
    captureDueAt?: string;
  };
  const change: EntityChange = {
    table: 'charges',
    key: { chargeId: charge.chargeId },
    expectedVersion: charge.version,
    set: awaiting ? { ...attrs, captureQueue: AWAITING, captureDueAt: approvedAt } : attrs,
    remove: awaiting ? [] : ['captureQueue', 'captureDueAt'],
    resource: { type: 'payment', id: charge.chargeId, gatewayAccountId: charge.gatewayAccountId, live: charge.live },
    currentEventSeq: charge.eventSeq,
    events,
  };
  const done: ChargeRequestResult | undefined = completes && {
    status: to,
    ...(completes.code ? { code: completes.code } : {}),
    ...(completes.detail ? { detail: completes.detail } : {}),
  };
  await deps.outcomes.commit({
    lease: w.held.lease,
    ...(completes && done ? { workItem: { idempotencyKey: `capture#${completes.req.captureRequestId}`, attemptId: w.attemptId, result: { ...done } } } : {}),
    changes: [change],
  });
  return { ...after, version: charge.version + 1, eventSeq: charge.eventSeq + events.length, ...(awaiting ? { captureQueue: AWAITING, captureDueAt: approvedAt } : {}) } as Charge;
}
