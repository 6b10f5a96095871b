import type { Counter } from 'prom-client';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { DependencyUnavailableError, dependencyOutage } from '../../shared/core/breaker.js';
import { systemClock, type Clock } from '../../shared/core/clock.js';
import type { Once, Verdict, WorkAnswer, WorkContext } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { TokenServiceClient } from '../../shared/connectors/token-service.js';
import type { AuthoriseOutcome, AuthoriseRequest, LookupOutcome, ProcessorConnector } from '../../shared/connectors/types.js';
import { deadLetterCodeOf, type Charge, type ChargeFields, type ChargeStatus } from '../../shared/charges/charge.js';
import { chargeOf, chargeRequestItem, type ChargeRepository } from '../../shared/charges/repo.js';
import { chargeRow, moveCharge, openCharge } from '../../shared/charges/transition.js';
import { authIdempotencyKey, authWorkItemKey } from './keys.js';
import type { AuthorisationRequested } from './schema.js';
import { finishVoid, mismatchOf, recordMismatch, voidNote } from './void.js';

/** What the auth handler needs: its domain, and once() for the exactly-once part. */
export interface AuthDeps {
  /** The kit's exactly-once runner (shared/core/work.ts). */
  readonly once: Once;
  readonly charges: ChargeRepository;
  readonly registry: ProcessorRegistry;
  readonly tokens: TokenServiceClient;
  /** Attempts before the charge is given up as AUTHORISATION_ERROR / RETRIES_EXHAUSTED. */
  readonly maxAttempts: number;
  /** The `live` flag of events. */
  readonly live: boolean;
  /** @default Date.now */
  readonly clock?: Clock;
  readonly authorisations?: Counter<'processor' | 'outcome'>;
  /** Fault points for tests (a SIGKILL exactly between two steps); absent in production. */
  readonly hooks?: AuthHooks;
}

/** Points between the steps where tests stop the process (see test/auth/crash-worker.ts). */
export interface AuthHooks {
  /** Write 1 made the charge AUTHORISATION_READY (durable); the processor has not been asked anything yet. */
  readonly beforeProcessorCall?: (chargeId: string) => Promise<void>;
  /** AUTHORISATION_ERROR with a PENDING void is committed; the processor has not been asked to void yet. */
  readonly afterMismatchRecorded?: (chargeId: string) => Promise<void>;
  /** The processor answered the void; the answer is not committed yet. */
  readonly afterVoidAnswered?: (chargeId: string) => Promise<void>;
}

/** One attempt at one request: what every step of it reads. */
export interface AuthRun {
  readonly deps: AuthDeps;
  readonly req: AuthorisationRequested;
  readonly connector: ProcessorConnector;
  readonly w: WorkContext;
  /**
   * This is the last attempt the consumer allows (by the work item's count or SQS's receive count):
   * a retryable failure now would be dead-lettered RETRIES_EXHAUSTED by the consumer, so the handler
   * records the charge's final state itself instead (unless a dependency is down).
   */
  readonly last: boolean;
  /** Now, by the injected clock (ISO-8601). */
  at(): string;
}

export { authIdempotencyKey } from './keys.js';

/** Statuses from which a request may (still) authorise the charge. */
const AUTHORISING: ReadonlySet<ChargeStatus> = new Set(['CREATED', 'AUTHORISATION_READY']);

/** An authorise outcome that is known: approved, declined or an error. */
type Resolved = Exclude<AuthoriseOutcome, { kind: 'ambiguous' }>;

/**
 * The auth worker's handler (docs/contract.md §2-§4), inside once() on the charge's row lease — two
 * DynamoDB writes for a new charge:
 *
 *   write 1 (once's open: charge created AUTHORISATION_READY + lease + work item, read back) ─ decrypt
 *   token ─ authorise (or, if READY was left by an earlier attempt, look up / replay first) ─ dispose
 *   card ─ write 2 w.complete(outcome + PAYMENT_CREATED and its event, verdict; lease released)
 *
 * AUTHORISATION_READY is durable before the processor is called, so whoever picks the charge up
 * after a crash knows a request may have gone out and resolves it (lookup / idempotent replay under
 * the same key) instead of authorising blind. An approval for another amount is recorded with the
 * processor's reference and voided at the processor (void.ts), the same way round: PENDING first.
 *
 * A request is never acknowledged when the charge it decided ended in a final error
 * (AUTHORISATION_ERROR, AUTHORISATION_ERROR_CANCELLED): once() replays a completed item's letter,
 * and a request whose item is gone meets its charge past authorisation and is lettered again here.
 */
export function createAuthHandler(deps: AuthDeps) {
  const clock = deps.clock ?? systemClock;
  return async function handleAuthorisation(req: AuthorisationRequested, ctx: HandlerContext): Promise<HandlerResult> {
    const connector = deps.registry.get(req.processor);
    const log = ctx.log.child({ chargeId: req.chargeId, authRequestId: req.authRequestId, processor: req.processor });
    // Write 1 creates the charge AUTHORISATION_READY if it does not exist yet: the lock state is
    // durable before anything else happens, and the row's lease and work item come with it.
    const at = new Date(clock()).toISOString();
    const create = chargeRow(
      openCharge(
        {
          chargeId: req.chargeId,
          gatewayAccountId: req.gatewayAccountId,
          processor: req.processor,
          amount: req.amount,
          currency: req.currency,
          reference: req.reference,
          description: req.description,
          live: deps.live,
        },
        { at, requestedAt: req.requestedAt, fields: { authRequestId: req.authRequestId, authIdempotencyKey: authIdempotencyKey(req.authRequestId) } },
      ),
    );
    const item = chargeRequestItem(deps.charges, req.chargeId, authWorkItemKey(req.authRequestId), { create });
    return deps.once(item, { ...ctx, log }, (w) =>
      authorise({
        deps,
        req,
        connector,
        w,
        last: Math.max(w.attempts, ctx.receiveCount) >= deps.maxAttempts,
        at: () => new Date(clock()).toISOString(),
      }),
    );
  };
}

async function authorise(run: AuthRun): Promise<WorkAnswer> {
  const { deps, req, w } = run;
  const existing = chargeOf(w.entity);
  if (!existing) throw new TypeError(`charge ${req.chargeId}: write 1 returned no charge`);
  if (!w.created) {
    checkSameCharge(existing, req);
    if (!AUTHORISING.has(existing.status)) return alreadyPast(run, existing);
    if (existing.status === 'AUTHORISATION_READY' && existing.authRequestId && existing.authRequestId !== req.authRequestId) {
      // Another request is mid-authorisation for this charge; let it finish first.
      throw new RetryableError('AUTHORISATION_IN_PROGRESS', 'another authorisation request for this charge is in progress');
    }
  }
  // READY and not opened by this attempt: an earlier attempt may have reached the processor.
  const wasReady = !w.created && existing.status === 'AUTHORISATION_READY';

  let card: SensitiveCard;
  try {
    card = await deps.tokens.decrypt(req.paymentTokenId, w.signal);
  } catch (err) {
    // The token is gone but an earlier attempt may have reached the processor: look it up first.
    if (err instanceof TerminalError && wasReady) return withoutToken(run, existing, err);
    // Failed before any outbound call on the charge's very first attempt: take back the row it
    // created (in place of the lease release a failed attempt writes anyway). A token refused for
    // good leaves no charge; a transient failure (token service slow, down) leaves no READY that
    // the next attempt would have to resolve at the processor — for Chase a lookup that finds
    // nothing is conclusive only 70 s after the send that never happened.
    if (w.created && tokenServiceFailure(err, w.signal)) await takeBack(run, err);
    throw err;
  }
  let charge: Charge;
  let outcome: Resolved;
  try {
    charge = existing.status === 'CREATED' ? await commitReady(run, existing, card) : withCard(existing, card);
    outcome = await askProcessor(run, charge, card, wasReady);
  } finally {
    card.dispose();
  }
  return finish(run, charge, outcome);
}

/**
 * The token service's own answer (refused, slow, down): not an attempt cut short by its lost lease
 * or by shutdown, whose delete could only be refused — and, in a DynamoDB outage, would be one
 * more failing write.
 */
function tokenServiceFailure(err: unknown, signal: AbortSignal): boolean {
  if (signal.aborted) return false;
  if (err instanceof TerminalError) return true;
  if (err instanceof DependencyUnavailableError) return err.dependency !== 'dynamodb';
  return err instanceof RetryableError && err.code.startsWith('TOKEN_SERVICE');
}

/**
 * Delete the charge this attempt's write 1 created (fenced on the attempt and its lease). If that
 * fails the row stays READY and the next attempt resolves it by lookup first: slower, never unsafe.
 * A terminal error then becomes the delete's (retryable) error, so the next attempt records it.
 */
async function takeBack(run: AuthRun, cause: unknown): Promise<void> {
  try {
    await run.w.discard();
  } catch (err) {
    if (cause instanceof TerminalError) throw err;
    run.w.log.warn({ err }, 'could not take back the charge created by this attempt; the next attempt looks it up first');
  }
}

/** The card's brand and last digits, recorded with the outcome (write 1 ran before the token was decrypted). */
function withCard(charge: Charge, card: SensitiveCard): Charge {
  return { ...charge, cardBrand: charge.cardBrand ?? card.brand, cardLast4: charge.cardLast4 ?? card.last4 };
}

/**
 * The charge is past authorisation. A request other than the one that authorised it is refused.
 * For that same request the work item is open although the charge is decided: a void recorded
 * PENDING by an attempt that died (finish it), or a work item that expired before a late
 * redelivery or redrive (answer as the first delivery did: a final error is dead-lettered again
 * with its code; a success or decline is acknowledged).
 */
async function alreadyPast(run: AuthRun, charge: Charge): Promise<WorkAnswer> {
  const { req, w } = run;
  if (charge.authRequestId !== req.authRequestId) {
    throw new TerminalError('CHARGE_NOT_AUTHORISABLE', `charge is ${charge.status}; it cannot be authorised again by a new request`);
  }
  if (charge.authorisationVoid?.state === 'PENDING') {
    w.log.warn({ status: charge.status, processorRef: charge.authorisationVoid.processorRef }, 'an earlier attempt left a PENDING void: finishing it first');
    return finishVoid(run, charge);
  }
  const code = deadLetterCodeOf(charge);
  if (!code) {
    w.log.info({ status: charge.status }, 'charge already past authorisation for this request');
    return w.complete([], { status: charge.status, action: 'ack' });
  }
  w.log.warn({ status: charge.status, code }, 'request already ended its charge in a final error; dead-lettering it again, not acknowledging');
  const said = voidNote(charge);
  return w.repeat({ status: charge.status, code, ...(said ? { detail: said } : {}) });
}

/** The token is gone (404/410) while the charge is AUTHORISATION_READY: record what the processor holds. */
async function withoutToken(run: AuthRun, charge: Charge, err: TerminalError): Promise<WorkAnswer> {
  const { req, connector, w } = run;
  const found = fromLookup(
    await connector.lookup(
      {
        chargeId: req.chargeId,
        idempotencyKey: authIdempotencyKey(req.authRequestId),
        amount: req.amount,
        currency: req.currency,
        ...(charge.processorRef ? { processorRef: charge.processorRef } : {}),
      },
      w.signal,
    ),
  );
  // Nothing found (or still unknown): nothing to record but the token's own terminal error.
  if (!found || found.kind === 'ambiguous') return finish(run, charge, { kind: 'error', retryable: false, code: err.code, message: err.message });
  return finish(run, charge, found);
}

/**
 * Commit CREATED -> AUTHORISATION_READY before the processor is called: a charge left CREATED
 * (written before write 1 created charges READY itself) costs this one more commit.
 */
async function commitReady(run: AuthRun, from: Charge, card: SensitiveCard): Promise<Charge> {
  const { req, w } = run;
  const at = run.at();
  const ready = moveCharge(from, 'AUTHORISATION_READY', {
    at,
    fields: { authRequestId: req.authRequestId, authIdempotencyKey: authIdempotencyKey(req.authRequestId), cardBrand: card.brand, cardLast4: card.last4 },
  });
  // The work item stays open: the request is not answered until the processor's answer is recorded.
  await w.commit([ready.change]);
  return ready.after;
}

/**
 * Ask the processor, never blind: a charge already AUTHORISATION_READY is looked up (or replayed
 * under the same key) first, and an ambiguous answer is looked up at once. Still unknown: the
 * charge stays AUTHORISATION_READY and the attempt is retried, starting by resolving.
 */
async function askProcessor(run: AuthRun, charge: Charge, card: SensitiveCard, wasReady: boolean): Promise<Resolved> {
  const { req, connector, w } = run;
  const authReq: AuthoriseRequest = {
    chargeId: req.chargeId,
    gatewayAccountId: req.gatewayAccountId,
    amount: req.amount,
    currency: req.currency,
    reference: req.reference,
    description: req.description,
    idempotencyKey: authIdempotencyKey(req.authRequestId),
    card,
  };
  await run.deps.hooks?.beforeProcessorCall?.(req.chargeId);
  let outcome: AuthoriseOutcome;
  if (wasReady) {
    w.log.info('charge was AUTHORISATION_READY: resolving the earlier attempt before anything else');
    outcome = fromLookup(await connector.lookup(lookupOf(authReq, charge), w.signal)) ?? (await connector.authorise(authReq, w.signal));
  } else {
    outcome = await connector.authorise(authReq, w.signal);
  }
  if (outcome.kind !== 'ambiguous') return outcome;
  w.log.warn({ reason: outcome.reason }, 'authorisation outcome unknown; looking it up before anything else');
  const found = fromLookup(await connector.lookup(lookupOf(authReq, charge), w.signal));
  if (!found || found.kind === 'ambiguous') throw new RetryableError('AUTHORISATION_OUTCOME_UNKNOWN', `outcome unknown after ${outcome.reason}`);
  return found;
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

function checkSameCharge(charge: Charge, req: AuthorisationRequested): void {
  const diffs = (['gatewayAccountId', 'amount', 'currency', 'processor'] as const).filter((k) => charge[k] !== req[k]);
  if (diffs.length > 0) throw new TerminalError('CHARGE_MISMATCH', `charge exists with a different ${diffs.join(', ')}`);
}

/**
 * The authorisation's decision table: the charge's final status, its event details, the fields it
 * records and the message's verdict. Every answer's reference is kept (`processorRef`, and
 * `processor_ref` in the event): the processor may hold something under it (a decline's
 * PaymentIntent, an order that errored) and an operator must be able to find it.
 *
 *   approved                        AUTHORISATION_SUCCESS   ack
 *   declined                        AUTHORISATION_REJECTED  ack
 *   error, terminal                 AUTHORISATION_ERROR     dead letter <its code>
 *   error, retryable, last attempt  AUTHORISATION_ERROR     dead letter RETRIES_EXHAUSTED
 *   error, retryable, otherwise     (thrown: retried; also on the last attempt while a dependency is down)
 */
interface Decision {
  readonly status: ChargeStatus;
  readonly details: Record<string, unknown>;
  readonly fields: ChargeFields;
  readonly verdict: Verdict;
}

function decide(charge: Charge, outcome: Resolved, last: boolean): Decision {
  const ref: ChargeFields = outcome.processorRef ? { processorRef: outcome.processorRef } : {};
  const refDetail = outcome.processorRef ? { processor_ref: outcome.processorRef } : {};
  switch (outcome.kind) {
    case 'approved':
      return {
        status: 'AUTHORISATION_SUCCESS',
        details: { processor_ref: outcome.processorRef, card_brand: charge.cardBrand, last_digits_card_number: charge.cardLast4 },
        fields: ref,
        verdict: { action: 'ack' },
      };
    case 'declined':
      return {
        status: 'AUTHORISATION_REJECTED',
        details: { decline_code: outcome.code, message: outcome.message, ...refDetail },
        fields: { declineCode: outcome.code, ...ref },
        verdict: { action: 'ack' },
      };
    case 'error':
      // A processor outage (its breaker opened) is not this charge's failure: never give up on it.
      if (outcome.retryable && (!last || dependencyOutage())) {
        throw new RetryableError(outcome.code, outcome.message, outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {});
      }
      return {
        status: 'AUTHORISATION_ERROR',
        details: { error_code: outcome.code, message: outcome.message, ...refDetail },
        fields: { errorCode: outcome.code, ...ref },
        verdict: {
          action: 'dead-letter',
          code: outcome.retryable ? 'RETRIES_EXHAUSTED' : outcome.code,
          detail: `${outcome.code}: ${outcome.message}`,
        },
      };
  }
}

/**
 * Record the authorisation's outcome with its event and complete the work item, in one commit. An
 * approval for another amount or currency is not an outcome to record as such: it goes to
 * {@link recordMismatch}, which records it and releases the authorisation at the processor.
 */
async function finish(run: AuthRun, charge: Charge, outcome: Resolved): Promise<WorkAnswer> {
  const { deps, req, w } = run;
  const mismatch = mismatchOf(outcome, req);
  if (mismatch) return recordMismatch(run, charge, mismatch);
  const d = decide(charge, outcome, run.last);
  const move = moveCharge(charge, d.status, { at: run.at(), details: d.details, fields: d.fields });
  const done = await w.complete([move.change], { status: d.status, ...d.verdict });
  deps.authorisations?.inc({ processor: req.processor, outcome: d.status });
  w.log.info({ status: d.status, ...(outcome.processorRef ? { processorRef: outcome.processorRef } : {}) }, 'authorisation recorded');
  return done;
}
