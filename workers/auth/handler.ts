import type { Counter } from 'prom-client';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/logger.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import type { LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { IdempotencyStore, NewEvent, OutcomeStore } from '../../shared/core/ports.js';
import { dependencyOutage } from '../../shared/core/breaker.js';
import { processOnce, type WorkContext } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { TokenServiceClient } from '../../shared/connectors/token-service.js';
import type { AuthoriseOutcome, AuthoriseRequest, LookupOutcome, ProcessorConnector } from '../../shared/connectors/types.js';
import {
  alreadyFinalLetter,
  CREATION_EVENT,
  deadLetterCodeOf,
  eventFor,
  repeatLetterOf,
  type Charge,
  type ChargeRequestResult,
  type ChargeStatus,
} from '../../shared/charges/charge.js';
import { chargeChange, type ChargeRepository } from '../../shared/charges/repo.js';
import { authIdempotencyKey, authWorkItemKey } from './keys.js';
import type { AuthorisationRequested } from './schema.js';
import { finishVoid, mismatchOf, recordMismatch, voidNote } from './void.js';

export interface AuthDeps {
  readonly keeper: LeaseKeeper;
  readonly idempotency: IdempotencyStore;
  readonly outcomes: OutcomeStore;
  readonly charges: ChargeRepository;
  readonly registry: ProcessorRegistry;
  readonly tokens: TokenServiceClient;
  readonly ownerId: string;
  /** Deadline of one attempt (our own; there is no Lambda context). */
  readonly attemptDeadlineMs: number;
  /** Attempts before the charge is given up as AUTHORISATION_ERROR / RETRIES_EXHAUSTED. */
  readonly maxAttempts: number;
  /** The `live` flag of events. */
  readonly live: boolean;
  readonly log: Logger;
  readonly authorisations?: Counter<'processor' | 'outcome'>;
  /** Fault points for tests (a SIGKILL exactly between two steps); absent in production. */
  readonly hooks?: AuthHooks;
}

/** Points between the steps of a void where tests stop the process (see test/auth/crash-worker.ts). */
export interface AuthHooks {
  /** AUTHORISATION_ERROR with a PENDING void is committed; the processor has not been asked to void yet. */
  readonly afterMismatchRecorded?: (chargeId: string) => Promise<void>;
  /** The processor answered the void; the answer is not committed yet. */
  readonly afterVoidAnswered?: (chargeId: string) => Promise<void>;
}

/** One attempt at a request: the work item's context plus whether the consumer will give up after it. */
export interface AuthAttempt extends WorkContext {
  /**
   * This is the last attempt the consumer allows (by the work item's count or SQS's receive count):
   * a retryable failure now would be dead-lettered RETRIES_EXHAUSTED by the consumer, so the handler
   * records the charge's final state itself instead.
   */
  readonly last: boolean;
}

export { authIdempotencyKey } from './keys.js';

/** States in which authorisation is over for a charge. */
const AUTH_DONE: ReadonlySet<ChargeStatus> = new Set([
  'AUTHORISATION_SUCCESS',
  'AUTHORISATION_REJECTED',
  'AUTHORISATION_ERROR',
  'AUTHORISATION_ERROR_CANCELLED',
]);

/**
 * The auth worker's handler (docs/contract.md §2-§4):
 *
 *   lease charge#id ─ begin auth#authRequestId ─ decrypt token ─ commit AUTHORISATION_READY ─
 *   authorise (or, if READY was already committed, look up / replay first) ─ dispose card ─
 *   commit outcome + events + work item (fenced) ─ release ─ delete message
 *
 * AUTHORISATION_READY is committed before the processor is called, so whoever picks the charge up
 * after a crash knows a request may have gone out and resolves it (lookup / idempotent replay under
 * the same key) instead of authorising blind. An approval for another amount is recorded with the
 * processor's reference and voided at the processor (void.ts), the same way round: PENDING first.
 *
 * A request is never acknowledged when the charge it decided ended in a final error
 * (AUTHORISATION_ERROR, AUTHORISATION_ERROR_CANCELLED): its redelivery or redrive is dead-lettered
 * again with the same code, so the DLQ keeps the evidence until a person purges it.
 */
export function createAuthHandler(deps: AuthDeps) {
  return async function handleAuthorisation(req: AuthorisationRequested, ctx: HandlerContext): Promise<HandlerResult> {
    const connector = deps.registry.get(req.processor);
    const log = ctx.log.child({ chargeId: req.chargeId, authRequestId: req.authRequestId, processor: req.processor });
    const outcome = await processOnce(
      deps,
      { leaseKey: `charge#${req.chargeId}`, idempotencyKey: authWorkItemKey(req.authRequestId) },
      ctx,
      (w) => authorise(deps, connector, req, { ...w, last: Math.max(w.attempts, ctx.receiveCount) >= deps.maxAttempts }, log),
    );
    if (outcome.status === 'duplicate') return answerDuplicate(deps, req, outcome.record.result, log);
    return outcome.result;
  };
}

/**
 * A delivery of a request whose work item is completed: a duplicate, or a redrive of its dead
 * letter (redrive sends a fresh deduplication id; the work item survives). A request that ended the
 * charge in a final error is dead-lettered again with its code — acknowledging it would delete the
 * only letter of an open money question. Anything else is acknowledged as before.
 */
async function answerDuplicate(deps: AuthDeps, req: AuthorisationRequested, result: Record<string, unknown> | undefined, log: Logger): Promise<HandlerResult> {
  const letter = await repeatLetterOf(req.chargeId, result, () => deps.charges.get(req.chargeId));
  if (!letter) {
    log.info('authorisation already completed; acknowledging the duplicate');
    return { action: 'ack' };
  }
  log.warn({ code: letter.code }, 'request already ended its charge in a final error; dead-lettering it again, not acknowledging');
  return { action: 'dead-letter', ...letter };
}

async function authorise(
  deps: AuthDeps,
  connector: ProcessorConnector,
  req: AuthorisationRequested,
  w: AuthAttempt,
  log: Logger,
): Promise<HandlerResult> {
  let charge = await deps.charges.get(req.chargeId);
  if (charge) {
    checkSameCharge(charge, req);
    if (AUTH_DONE.has(charge.status) || !['CREATED', 'AUTHORISATION_READY'].includes(charge.status)) {
      if (charge.authRequestId === req.authRequestId) return alreadyDecided(deps, connector, charge, req, w, log);
      throw new TerminalError('CHARGE_NOT_AUTHORISABLE', `charge is ${charge.status}; it cannot be authorised again by a new request`);
    }
    if (charge.status === 'AUTHORISATION_READY' && charge.authRequestId && charge.authRequestId !== req.authRequestId) {
      // Another request is mid-authorisation for this charge; let it finish first.
      throw new RetryableError('AUTHORISATION_IN_PROGRESS', 'another authorisation request for this charge is in progress');
    }
  }

  const key = authIdempotencyKey(req.authRequestId);
  const wasReady = charge?.status === 'AUTHORISATION_READY';
  let card: SensitiveCard | undefined;
  let outcome: AuthoriseOutcome;
  try {
    try {
      card = await deps.tokens.decrypt(req.paymentTokenId, w.signal);
    } catch (err) {
      if (!(err instanceof TerminalError) || !charge || !wasReady) throw err;
      // The token is gone but an earlier attempt may have reached the processor: look it up by
      // reference before giving up, so a charge that was authorised is recorded as such.
      const found = await connector.lookup(
        { chargeId: req.chargeId, idempotencyKey: key, amount: req.amount, currency: req.currency, ...(charge.processorRef ? { processorRef: charge.processorRef } : {}) },
        w.signal,
      );
      const resolved = fromLookup(found);
      if (!resolved || resolved.kind === 'ambiguous') return finish(deps, connector, charge, req, w, log, errorOutcome(err.code, err.message), err.code);
      outcome = resolved;
      return finish(deps, connector, charge, req, w, log, outcome);
    }

    if (!charge) charge = await commitReady(deps, undefined, req, card, w);
    else if (charge.status === 'CREATED') charge = await commitReady(deps, charge, req, card, w);

    const authReq: AuthoriseRequest = {
      chargeId: req.chargeId,
      gatewayAccountId: req.gatewayAccountId,
      amount: req.amount,
      currency: req.currency,
      reference: req.reference,
      description: req.description,
      idempotencyKey: key,
      card,
    };
    if (wasReady) {
      log.info('charge was AUTHORISATION_READY: resolving the earlier attempt before anything else');
      const found = fromLookup(await connector.lookup(lookupOf(authReq, charge), w.signal));
      outcome = found ?? (await connector.authorise(authReq, w.signal));
    } else {
      outcome = await connector.authorise(authReq, w.signal);
    }
    if (outcome.kind === 'ambiguous') {
      log.warn({ reason: outcome.reason }, 'authorisation outcome unknown; looking it up before anything else');
      const found = fromLookup(await connector.lookup(lookupOf(authReq, charge), w.signal));
      if (!found || found.kind === 'ambiguous') {
        // Stays AUTHORISATION_READY: the next attempt resolves first, never authorises blind.
        throw new RetryableError('AUTHORISATION_OUTCOME_UNKNOWN', `outcome unknown after ${outcome.reason}`);
      }
      outcome = found;
    }
  } finally {
    card?.dispose();
  }
  return finish(deps, connector, charge, req, w, log, outcome);
}

/**
 * The charge is past authorisation and was authorised by this very request, yet its work item is
 * not completed: a void recorded PENDING by an attempt that died (finish it), or a work item that
 * expired before a late redelivery or redrive (answer as the first delivery did: a final error is
 * dead-lettered again with its code; a success or decline is acknowledged).
 */
async function alreadyDecided(
  deps: AuthDeps,
  connector: ProcessorConnector,
  charge: Charge,
  req: AuthorisationRequested,
  w: AuthAttempt,
  log: Logger,
): Promise<HandlerResult> {
  if (charge.authorisationVoid?.state === 'PENDING') {
    log.warn({ status: charge.status, processorRef: charge.authorisationVoid.processorRef }, 'an earlier attempt left a PENDING void: finishing it first');
    return finishVoid(deps, connector, charge, req, w, log);
  }
  const code = deadLetterCodeOf(charge);
  if (!code) {
    log.info({ status: charge.status }, 'charge already past authorisation for this request');
    return { action: 'ack' };
  }
  const letter = alreadyFinalLetter(charge.chargeId, charge.status, code, voidNote(charge));
  await deps.outcomes.commit({
    lease: w.held.lease,
    workItem: { idempotencyKey: authWorkItemKey(req.authRequestId), attemptId: w.attemptId, result: { status: charge.status, code } },
    changes: [],
  });
  log.warn({ status: charge.status, code }, 'request already ended its charge in a final error; dead-lettering it again, not acknowledging');
  return { action: 'dead-letter', ...letter };
}

function lookupOf(authReq: AuthoriseRequest, charge: Charge) {
  return {
    chargeId: authReq.chargeId,
    idempotencyKey: authReq.idempotencyKey,
    amount: authReq.amount,
    currency: authReq.currency,
    original: authReq,
    ...(charge.processorRef ? { processorRef: charge.processorRef } : {}),
  };
}

/** A lookup's answer as an authorise outcome; undefined when nothing was found (safe to send). */
function fromLookup(found: LookupOutcome): AuthoriseOutcome | undefined {
  switch (found.kind) {
    case 'not_found':
      return undefined;
    case 'authorised':
    case 'captured':
      return { kind: 'approved', processorRef: found.processorRef, amount: found.amount, currency: found.currency };
    case 'capture_submitted':
      return { kind: 'error', retryable: false, code: 'UNEXPECTED_PROCESSOR_STATE', message: 'processor reports a capture before authorisation was recorded', processorRef: found.processorRef };
    case 'declined':
      return { kind: 'declined', code: found.code, message: found.message, ...(found.processorRef ? { processorRef: found.processorRef } : {}) };
    case 'voided':
      return { kind: 'error', retryable: false, code: 'VOIDED', message: 'processor reports the authorisation voided', processorRef: found.processorRef };
    case 'unknown':
      return { kind: 'ambiguous', reason: found.reason };
  }
}

function errorOutcome(code: string, message: string): AuthoriseOutcome {
  return { kind: 'error', retryable: false, code, message };
}

function checkSameCharge(charge: Charge, req: AuthorisationRequested): void {
  const diffs = (['gatewayAccountId', 'amount', 'currency', 'processor'] as const).filter((k) => charge[k] !== req[k]);
  if (diffs.length > 0) throw new TerminalError('CHARGE_MISMATCH', `charge exists with a different ${diffs.join(', ')}`);
}

/** Commit CREATED -> AUTHORISATION_READY (creating the charge if needed) before calling the processor. */
async function commitReady(deps: AuthDeps, charge: Charge | undefined, req: AuthorisationRequested, card: SensitiveCard, w: WorkContext): Promise<Charge> {
  const at = new Date().toISOString();
  const events: NewEvent[] = [];
  let base: Charge;
  if (!charge) {
    base = {
      chargeId: req.chargeId,
      gatewayAccountId: req.gatewayAccountId,
      processor: req.processor,
      amount: req.amount,
      currency: req.currency,
      reference: req.reference,
      description: req.description,
      status: 'CREATED',
      live: deps.live,
      version: 0,
      eventSeq: 0,
      createdAt: at,
      updatedAt: at,
      history: [{ status: 'CREATED', at }],
    };
    events.push({
      eventType: CREATION_EVENT,
      details: { amount: req.amount, currency: req.currency, reference: req.reference, description: req.description, processor: req.processor, requested_at: req.requestedAt },
    });
  } else {
    base = charge;
  }
  const next: Charge = {
    ...base,
    status: 'AUTHORISATION_READY',
    authRequestId: req.authRequestId,
    authIdempotencyKey: authIdempotencyKey(req.authRequestId),
    cardBrand: card.brand,
    cardLast4: card.last4,
    updatedAt: at,
    history: [...base.history, { status: 'AUTHORISATION_READY', at }],
    version: base.version + 1,
    eventSeq: base.eventSeq + events.length,
  };
  if (eventFor(base.status, 'AUTHORISATION_READY') !== null) throw new Error('CREATED -> AUTHORISATION_READY must not emit');
  await deps.outcomes.commit({ lease: w.held.lease, changes: [chargeChange(base, next, events)] });
  return next;
}

/**
 * Commit the final status of an authorisation with its event, completing the work item. An
 * approval for another amount or currency is not an outcome to record as such: it goes to
 * {@link recordMismatch}, which records it and releases the authorisation at the processor.
 */
async function finish(
  deps: AuthDeps,
  connector: ProcessorConnector,
  charge: Charge,
  req: AuthorisationRequested,
  w: AuthAttempt,
  log: Logger,
  outcome: AuthoriseOutcome,
  deadLetterCode?: string,
): Promise<HandlerResult> {
  const mismatch = mismatchOf(outcome, req);
  if (mismatch) return recordMismatch(deps, connector, charge, req, w, log, mismatch);
  // Every answer's reference is kept: the processor may hold something under it (a decline's
  // PaymentIntent, an order that errored) and an operator must be able to find it.
  const ref = outcome.processorRef ? { processorRef: outcome.processorRef } : {};
  const refDetail = outcome.processorRef ? { processor_ref: outcome.processorRef } : {};
  let status: ChargeStatus;
  let details: Record<string, unknown>;
  let result: HandlerResult = { action: 'ack' };
  let extra: Partial<Charge>;
  switch (outcome.kind) {
    case 'approved':
      status = 'AUTHORISATION_SUCCESS';
      details = { processor_ref: outcome.processorRef, card_brand: charge.cardBrand, last_digits_card_number: charge.cardLast4 };
      extra = ref;
      break;
    case 'declined':
      status = 'AUTHORISATION_REJECTED';
      details = { decline_code: outcome.code, message: outcome.message, ...refDetail };
      extra = { declineCode: outcome.code, ...ref };
      break;
    case 'error':
      // A processor outage (its breaker opened) is not this charge's failure: never give up on it.
      if (outcome.retryable && (!w.last || dependencyOutage())) {
        throw new RetryableError(outcome.code, outcome.message, outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {});
      }
      status = 'AUTHORISATION_ERROR';
      deadLetterCode ??= outcome.retryable ? 'RETRIES_EXHAUSTED' : outcome.code;
      details = { error_code: outcome.code, message: outcome.message, ...refDetail };
      extra = { errorCode: outcome.code, ...ref };
      result = { action: 'dead-letter', code: deadLetterCode, detail: `${outcome.code}: ${outcome.message}` };
      break;
    case 'ambiguous':
      throw new RetryableError('AUTHORISATION_OUTCOME_UNKNOWN', outcome.reason);
  }
  if (deadLetterCode && result.action === 'ack') result = { action: 'dead-letter', code: deadLetterCode, detail: `${status}: ${deadLetterCode}` };
  const at = new Date().toISOString();
  const eventType = eventFor(charge.status, status)!;
  const after: Charge = { ...charge, ...extra, status, updatedAt: at, history: [...charge.history, { status, at }] };
  const done: ChargeRequestResult = { status, ...(result.action === 'dead-letter' ? { code: result.code, detail: result.detail } : {}) };
  await deps.outcomes.commit({
    lease: w.held.lease,
    workItem: { idempotencyKey: authWorkItemKey(req.authRequestId), attemptId: w.attemptId, result: { ...done } },
    changes: [chargeChange(charge, after, [{ eventType, details }])],
  });
  deps.authorisations?.inc({ processor: req.processor, outcome: status });
  log.info({ status, ...ref }, 'authorisation recorded');
  return result;
}
