import type { Counter } from 'prom-client';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { dependencyOutage } from '../../shared/core/breaker.js';
import { systemClock, type Clock } from '../../shared/core/clock.js';
import type { Once, WorkAnswer, WorkContext } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { CaptureOutcome, ProcessorConnector } from '../../shared/connectors/types.js';
import { captureAttemptsFromHistory, deadLetterCodeOf, type Charge } from '../../shared/charges/charge.js';
import { chargeOf, chargeRequestItem, type ChargeRepository } from '../../shared/charges/repo.js';
import { moveCharge, type ChargeMove } from '../../shared/charges/transition.js';
import type { CaptureRequested } from './schema.js';

export interface CaptureSettings {
  /** CAPTURE_PROCESS_MAXIMUM_RETRIES: attempts, counted from the charge's history, before CAPTURE_ERROR. */
  readonly maxRetries: number;
  /** CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: how long a failed capture's message is deferred. */
  readonly retryDelaySec: number;
}

/** What the capture handler needs: its domain, and once() for the exactly-once part. */
export interface CaptureDeps {
  /** The kit's exactly-once runner (shared/core/work.ts). */
  readonly once: Once;
  readonly charges: ChargeRepository;
  readonly registry: ProcessorRegistry;
  readonly settings: CaptureSettings;
  /** @default Date.now */
  readonly clock?: Clock;
  readonly captures?: Counter<'processor' | 'outcome'>;
  /** Fault points for tests (a SIGKILL exactly between two steps); absent in production. */
  readonly hooks?: CaptureHooks;
}

/** Points between the steps where tests stop the process (see test/capture/crash-worker.ts). */
export interface CaptureHooks {
  /** CAPTURE_READY is committed; the processor has not been asked anything yet. */
  readonly beforeProcessorCall?: (chargeId: string) => Promise<void>;
}

/** One attempt at one capture request: what every step of it reads. */
interface CaptureRun {
  readonly deps: CaptureDeps;
  readonly req: CaptureRequested;
  readonly w: WorkContext;
  /** Now, by the injected clock (ISO-8601). */
  at(): string;
}

/** The processor idempotency key of a charge's capture: the same on every attempt. */
export const captureIdempotencyKey = (chargeId: string): string => `payfleet-capture-${chargeId}`;

/** The work item of a capture request. */
export const captureWorkItemKey = (captureRequestId: string): string => `capture#${captureRequestId}`;

/**
 * GOV.UK Pay's background capture, as pay-connector does it, inside once() (charge lease, request's work item):
 *
 *   AUTHORISATION_SUCCESS ─USER_APPROVED_FOR_CAPTURE─▶ CAPTURE_APPROVED ─▶ CAPTURE_READY (w.commit before the call)
 *     ─ capture ─▶ CAPTURED | CAPTURE_SUBMITTED                              (w.complete: message deleted)
 *               └▶ CAPTURE_APPROVED_RETRY (w.commit), message deferred by the retry delay (attempt counted in history)
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
  const clock = deps.clock ?? systemClock;
  return async function handleCapture(req: CaptureRequested, ctx: HandlerContext): Promise<HandlerResult> {
    const log = ctx.log.child({ chargeId: req.chargeId, captureRequestId: req.captureRequestId });
    // No charge yet: write 1 creates nothing and the request waits (retried with backoff, bounded).
    const item = chargeRequestItem(deps.charges, req.chargeId, captureWorkItemKey(req.captureRequestId), {
      missing: () => new RetryableError('NOT_YET_AUTHORISED', 'charge not found yet'),
    });
    return deps.once(item, { ...ctx, log }, (w) => capture({ deps, req, w, at: () => new Date(clock()).toISOString() }));
  };
}

/**
 * The capture's decision table, by the charge's status:
 *
 *   none, CREATED, AUTHORISATION_READY     thrown NOT_YET_AUTHORISED (retried: the request waits)
 *   AUTHORISATION_REJECTED/_ERROR/_CANCELLED thrown NOT_CAPTURABLE (dead-lettered)
 *   CAPTURED, CAPTURE_SUBMITTED            ack, no processor call
 *   CAPTURE_ERROR                          refused: the same letter again; abandoned: ack
 *   AUTHORISATION_SUCCESS                  -> CAPTURE_APPROVED, then as below
 *   CAPTURE_APPROVED(_RETRY)               attempts >= maximum: -> CAPTURE_ERROR, ack + alert;
 *                                          else -> CAPTURE_READY and capture
 *   CAPTURE_READY                          look the earlier capture up first, then capture
 */
async function capture(run: CaptureRun): Promise<WorkAnswer> {
  const { deps, req, w } = run;
  let charge = chargeOf(w.entity);
  if (!charge || charge.status === 'CREATED' || charge.status === 'AUTHORISATION_READY') {
    // The authorisation has not been recorded yet: retry with backoff rather than lose the request.
    throw new RetryableError('NOT_YET_AUTHORISED', charge ? `charge is ${charge.status}` : 'charge not found yet');
  }
  switch (charge.status) {
    case 'CAPTURED':
    case 'CAPTURE_SUBMITTED':
      w.log.info({ status: charge.status }, 'charge already captured; no second capture call');
      return w.complete([], { status: charge.status, action: 'ack' });
    case 'CAPTURE_ERROR': {
      const code = deadLetterCodeOf(charge);
      if (!code) {
        // Abandoned after the maximum attempts: that message was acknowledged with an alert.
        w.log.info('charge already given up as CAPTURE_ERROR (abandoned); acknowledging');
        return w.complete([], { status: charge.status, action: 'ack' });
      }
      // The capture was refused and dead-lettered: this request gets the same letter, not an ack.
      w.log.warn({ status: charge.status, code }, 'charge already ended in CAPTURE_ERROR; dead-lettering the request, not acknowledging');
      return w.repeat({ status: charge.status, code });
    }
    case 'AUTHORISATION_REJECTED':
    case 'AUTHORISATION_ERROR':
    case 'AUTHORISATION_ERROR_CANCELLED':
      throw new TerminalError('NOT_CAPTURABLE', `charge is ${charge.status} and can never be captured`);
    default:
      break;
  }
  const processorRef = charge.processorRef;
  if (!processorRef) throw new TerminalError('NOT_CAPTURABLE', 'authorised charge has no processor reference');
  const connector = deps.registry.get(charge.processor);

  // AUTHORISATION_SUCCESS -> CAPTURE_APPROVED -> CAPTURE_READY is one commit (with
  // USER_APPROVED_FOR_CAPTURE): both states are in the history, one write is made.
  const approved =
    charge.status === 'AUTHORISATION_SUCCESS'
      ? moveCharge(charge, 'CAPTURE_APPROVED', { at: run.at(), fields: { captureRequestId: req.captureRequestId } })
      : charge;
  const wasReady = charge.status === 'CAPTURE_READY';
  if (!wasReady) {
    const attempts = captureAttemptsFromHistory(charge.history);
    if (attempts >= deps.settings.maxRetries) return abandon(run, approved, attempts);
    charge = await commitOpen(run, moveCharge(approved, 'CAPTURE_READY', { at: run.at() }));
  }

  const key = captureIdempotencyKey(charge.chargeId);
  await deps.hooks?.beforeProcessorCall?.(charge.chargeId);
  let outcome: CaptureOutcome | undefined;
  if (wasReady) {
    w.log.info('charge was CAPTURE_READY: looking up the earlier attempt before capturing again');
    const found = await connector.lookup(
      { chargeId: charge.chargeId, processorRef, idempotencyKey: key, amount: charge.amount, currency: charge.currency },
      w.signal,
    );
    if (found.kind === 'captured') outcome = { kind: 'captured', processorRef: found.processorRef };
    else if (found.kind === 'capture_submitted') outcome = { kind: 'submitted', processorRef: found.processorRef };
  }
  outcome ??= await connector.capture(
    { chargeId: charge.chargeId, processorRef, amount: charge.amount, currency: charge.currency, idempotencyKey: key },
    w.signal,
  );
  return record(run, connector, charge, outcome);
}

/** Commit a state that must be durable before the processor is called; the request stays open. */
async function commitOpen(run: CaptureRun, move: ChargeMove): Promise<Charge> {
  await run.w.commit([move.change]);
  return move.after;
}

/** The history already holds the maximum attempts: give the capture up, acknowledged, with an alert. */
async function abandon(run: CaptureRun, from: Charge | ChargeMove, attempts: number): Promise<WorkAnswer> {
  const { deps, w } = run;
  const move = moveCharge(from, 'CAPTURE_ERROR', { at: run.at(), details: { attempts, reason: 'too many retries' } });
  const done = await w.complete([move.change], { status: move.after.status, action: 'ack' });
  w.log.error({ alert: 'CAPTURE_ABANDONED', attempts, status: move.after.status }, 'capture abandoned after too many retries: charge is CAPTURE_ERROR');
  deps.captures?.inc({ processor: move.after.processor, outcome: 'CAPTURE_ERROR' });
  return done;
}

async function record(run: CaptureRun, connector: ProcessorConnector, charge: Charge, outcome: CaptureOutcome): Promise<WorkAnswer> {
  const { deps, w } = run;
  switch (outcome.kind) {
    case 'captured':
    case 'submitted': {
      const to = outcome.kind === 'captured' ? 'CAPTURED' : 'CAPTURE_SUBMITTED';
      const move = moveCharge(charge, to, { at: run.at(), details: { processor_ref: charge.processorRef } });
      const done = await w.complete([move.change], { status: to, action: 'ack' });
      deps.captures?.inc({ processor: connector.name, outcome: to });
      w.log.info({ status: to }, 'capture recorded');
      return done;
    }
    case 'error':
      if (!outcome.retryable) {
        const detail = `capture refused: ${outcome.code}: ${outcome.message}`;
        const move = moveCharge(charge, 'CAPTURE_ERROR', {
          at: run.at(),
          details: { error_code: outcome.code, message: outcome.message, ...(outcome.processorRef ? { processor_ref: outcome.processorRef } : {}) },
          fields: { errorCode: outcome.code },
        });
        const done = await w.complete([move.change], { status: 'CAPTURE_ERROR', action: 'dead-letter', code: outcome.code, detail });
        deps.captures?.inc({ processor: connector.name, outcome: 'CAPTURE_ERROR' });
        return done;
      }
      // The processor is down (its breaker opened): not a failed capture attempt; park the message.
      if (dependencyOutage()) throw new RetryableError(outcome.code, `${outcome.code}: ${outcome.message}`);
      return retryLater(run, charge, `${outcome.code}: ${outcome.message}`);
    case 'ambiguous':
      if (dependencyOutage()) throw new RetryableError('CAPTURE_OUTCOME_UNKNOWN', `outcome unknown: ${outcome.reason}`);
      // Safe to retry later: the next capture carries the same idempotency key, and a charge left in
      // CAPTURE_APPROVED_RETRY is captured again, never twice (the processor de-duplicates by key).
      return retryLater(run, charge, `outcome unknown: ${outcome.reason}`);
  }
}

/** A failed attempt, recorded on the charge (its history counts it); the message comes back after the delay. */
async function retryLater(run: CaptureRun, charge: Charge, reason: string): Promise<WorkAnswer> {
  const { deps, w } = run;
  await w.commit([moveCharge(charge, 'CAPTURE_APPROVED_RETRY', { at: run.at() }).change]);
  const attempts = captureAttemptsFromHistory(charge.history);
  w.log.warn({ attempts, maxRetries: deps.settings.maxRetries, delaySec: deps.settings.retryDelaySec, reason }, 'capture failed; deferring the message');
  deps.captures?.inc({ processor: charge.processor, outcome: 'CAPTURE_APPROVED_RETRY' });
  // Attempts are counted from the charge's history, not by the consumer: do not charge its budget.
  return { action: 'defer', delaySec: deps.settings.retryDelaySec, countsAsAttempt: false, reason };
}
