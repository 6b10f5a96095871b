import type { Counter } from 'prom-client';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/logger.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import type { LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { EntityChange, IdempotencyStore, NewEvent, OutcomeStore } from '../../shared/core/ports.js';
import { dependencyOutage } from '../../shared/core/breaker.js';
import { processOnce, type WorkContext } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { TokenServiceClient } from '../../shared/connectors/token-service.js';
import type { AuthoriseOutcome, AuthoriseRequest, LookupOutcome, ProcessorConnector } from '../../shared/connectors/types.js';
import { CREATION_EVENT, eventFor, type Charge, type ChargeStatus } from '../../shared/domain/charge.js';
import type { ChargeRepository } from '../../shared/domain/charge-repo.js';
import type { AuthorisationRequested } from './schema.js';

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
}

/** The processor idempotency key of an authorisation: derived from the request, reused on every retry. */
export const authIdempotencyKey = (authRequestId: string): string => `payfleet-auth-${authRequestId}`;

/** States in which authorisation is over for a charge. */
const AUTH_DONE: ReadonlySet<ChargeStatus> = new Set(['AUTHORISATION_SUCCESS', 'AUTHORISATION_REJECTED', 'AUTHORISATION_ERROR']);

/**
 * The auth worker's handler (shared/reference/auth-processor-worker.md, CONTRACT.md §2-§4):
 *
 *   lease charge#id ─ begin auth#authRequestId ─ decrypt token ─ commit AUTHORISATION_READY ─
 *   authorise (or, if READY was already committed, look up / replay first) ─ dispose card ─
 *   commit outcome + events + work item (fenced) ─ release ─ delete message
 *
 * AUTHORISATION_READY is committed before the processor is called, so whoever picks the charge up
 * after a crash knows a request may have gone out and resolves it (lookup / idempotent replay under
 * the same key) instead of authorising blind.
 */
export function createAuthHandler(deps: AuthDeps) {
  return async function handleAuthorisation(req: AuthorisationRequested, ctx: HandlerContext): Promise<HandlerResult> {
    const connector = deps.registry.get(req.processor);
    const log = ctx.log.child({ chargeId: req.chargeId, authRequestId: req.authRequestId, processor: req.processor });
    const outcome = await processOnce(
      deps,
      { leaseKey: `charge#${req.chargeId}`, idempotencyKey: `auth#${req.authRequestId}` },
      ctx,
      (w) => authorise(deps, connector, req, w, log),
    );
    if (outcome.status === 'duplicate') {
      log.info('authorisation already completed; acknowledging the duplicate');
      return { action: 'ack' };
    }
    return outcome.result;
  };
}

async function authorise(
  deps: AuthDeps,
  connector: ProcessorConnector,
  req: AuthorisationRequested,
  w: WorkContext,
  log: Logger,
): Promise<HandlerResult> {
  let charge = await deps.charges.get(req.chargeId);
  if (charge) {
    checkSameCharge(charge, req);
    if (AUTH_DONE.has(charge.status) || !['CREATED', 'AUTHORISATION_READY'].includes(charge.status)) {
      if (charge.authRequestId === req.authRequestId) {
        log.info({ status: charge.status }, 'charge already past authorisation for this request');
        return { action: 'ack' };
      }
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
      if (!resolved || resolved.kind === 'ambiguous') return finish(deps, charge, req, w, log, errorOutcome(err.code, err.message), err.code);
      outcome = resolved;
      return finish(deps, charge, req, w, log, outcome);
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
  return finish(deps, charge, req, w, log, outcome);
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
  await deps.outcomes.commit({ lease: w.held.lease, changes: [chargeChange(base, next, events, deps.live)] });
  return next;
}

function chargeChange(before: Charge, after: Charge, events: readonly NewEvent[], live: boolean): EntityChange {
  const { version: _v, eventSeq: _e, chargeId: _c, ...attrs } = after;
  return {
    table: 'charges',
    key: { chargeId: after.chargeId },
    expectedVersion: before.version,
    set: attrs,
    resource: { type: 'payment', id: after.chargeId, gatewayAccountId: after.gatewayAccountId, live },
    currentEventSeq: before.eventSeq,
    events,
  };
}

/** Commit the final status of an authorisation with its event, completing the work item. */
async function finish(
  deps: AuthDeps,
  charge: Charge,
  req: AuthorisationRequested,
  w: WorkContext,
  log: Logger,
  outcome: AuthoriseOutcome,
  deadLetterCode?: string,
): Promise<HandlerResult> {
  let status: ChargeStatus;
  let details: Record<string, unknown>;
  let result: HandlerResult = { action: 'ack' };
  let extra: Partial<Charge> = {};
  switch (outcome.kind) {
    case 'approved':
      if (outcome.amount !== req.amount || outcome.currency.toUpperCase() !== req.currency) {
        return finish(deps, charge, req, w, log, errorOutcome('AMOUNT_MISMATCH', 'processor answered a different amount or currency'), 'AMOUNT_MISMATCH');
      }
      status = 'AUTHORISATION_SUCCESS';
      details = { processor_ref: outcome.processorRef, card_brand: charge.cardBrand, last_digits_card_number: charge.cardLast4 };
      extra = { processorRef: outcome.processorRef };
      break;
    case 'declined':
      status = 'AUTHORISATION_REJECTED';
      details = { decline_code: outcome.code, message: outcome.message };
      extra = { declineCode: outcome.code, ...(outcome.processorRef ? { processorRef: outcome.processorRef } : {}) };
      break;
    case 'error':
      // A processor outage (its breaker opened) is not this charge's failure: never give up on it.
      if (outcome.retryable && (w.attempts < deps.maxAttempts || dependencyOutage())) {
        throw new RetryableError(outcome.code, outcome.message, outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {});
      }
      status = 'AUTHORISATION_ERROR';
      deadLetterCode ??= outcome.retryable ? 'RETRIES_EXHAUSTED' : outcome.code;
      details = { error_code: outcome.code, message: outcome.message };
      extra = { errorCode: outcome.code };
      result = { action: 'dead-letter', code: deadLetterCode, detail: `${outcome.code}: ${outcome.message}` };
      break;
    case 'ambiguous':
      throw new RetryableError('AUTHORISATION_OUTCOME_UNKNOWN', outcome.reason);
  }
  if (deadLetterCode && result.action === 'ack') result = { action: 'dead-letter', code: deadLetterCode, detail: `${status}: ${deadLetterCode}` };
  const at = new Date().toISOString();
  const eventType = eventFor(charge.status, status)!;
  const after: Charge = { ...charge, ...extra, status, updatedAt: at, history: [...charge.history, { status, at }] };
  await deps.outcomes.commit({
    lease: w.held.lease,
    workItem: { idempotencyKey: `auth#${req.authRequestId}`, attemptId: w.attemptId, result: { status } },
    changes: [chargeChange(charge, after, [{ eventType, details }], deps.live)],
  });
  deps.authorisations?.inc({ processor: req.processor, outcome: status });
  if (deadLetterCode === 'AMOUNT_MISMATCH') {
    log.error({ alert: 'AMOUNT_MISMATCH', status }, 'processor answered a different amount or currency: charge marked AUTHORISATION_ERROR');
  } else {
    log.info({ status }, 'authorisation recorded');
  }
  return result;
}
