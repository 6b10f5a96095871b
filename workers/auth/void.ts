/**
 * Releasing an authorisation the fleet will not use. When a processor approves another amount or
 * currency than the request asked for (AMOUNT_MISMATCH), the customer's funds are held for an
 * authorisation no one will capture. The worker records the mismatch and voids it at once:
 *
 *   w.commit: AUTHORISATION_READY ─▶ AUTHORISATION_ERROR   errorCode AMOUNT_MISMATCH, processorRef,
 *             event AUTHORISATION_ERROR                     authorisationVoid PENDING (work item stays open)
 *   void at the processor, key payfleet-void-<authRequestId>   (Stripe cancel, Worldpay cancel)
 *   w.complete: ─▶ AUTHORISATION_ERROR_CANCELLED, void VOIDED, event CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR
 *          or  void FAILED (status unchanged, no event: nothing changed at the processor)
 *             + work item completed { status, code AMOUNT_MISMATCH, detail }
 *   ERROR line alert AMOUNT_MISMATCH saying which of the two happened; dead letter AMOUNT_MISMATCH
 *
 * The PENDING void is committed before the processor is called, like AUTHORISATION_READY before an
 * authorise, so a worker that dies anywhere after that commit leaves an obligation the next delivery
 * of the same request finds and finishes (the work item is still open, so that delivery runs):
 *
 *   worker A  commit ERROR + void PENDING ─ ✗ SIGKILL  (void not sent, or sent and its answer lost)
 *   SQS                        ... visibility expires ─ redeliver
 *   worker B                   ... A's lease expired ─ acquire (token+1) ─ begin (takes over A's item)
 *                              ─ read charge: void PENDING ─ void, same key ─ commit VOIDED ─ DLQ
 *
 * If A's void reached the processor, B's is answered without a second effect: Stripe replays the
 * stored answer for the same Idempotency-Key (or reports the intent already canceled); Worldpay
 * refuses a second cancel (error 5) and the connector's order inquiry shows CANCELLED. Either way the
 * processor voided once, and the charge records it once (the commit is fenced and versioned).
 */
import { dependencyOutage } from '../../shared/core/breaker.js';
import type { WorkAnswer } from '../../shared/core/work.js';
import { RetryableError } from '../../shared/errors.js';
import type { AuthoriseOutcome } from '../../shared/connectors/types.js';
import type { AuthorisationVoid, Charge } from '../../shared/charges/charge.js';
import { amendCharge, moveCharge } from '../../shared/charges/transition.js';
import type { AuthRun } from './handler.js';
import { voidIdempotencyKey } from './keys.js';
import type { AuthorisationRequested } from './schema.js';

export const AMOUNT_MISMATCH = 'AMOUNT_MISMATCH';

/** An approval the fleet will not use: what came back, and the reference to void. */
export interface Mismatch {
  /** Absent only if the processor answered without one: then there is nothing the worker can void. */
  readonly processorRef?: string;
  readonly reason: string;
}

/**
 * The mismatch in an authorise outcome, if any: an approval for another amount or currency (the
 * sandbox, a lookup) or a connector that already reported it as its AMOUNT_MISMATCH error.
 */
export function mismatchOf(outcome: AuthoriseOutcome, req: AuthorisationRequested): Mismatch | undefined {
  if (outcome.kind === 'approved' && (outcome.amount !== req.amount || outcome.currency.toUpperCase() !== req.currency)) {
    return {
      processorRef: outcome.processorRef,
      reason: `processor authorised ${outcome.amount} ${outcome.currency.toUpperCase()} for a request of ${req.amount} ${req.currency}`,
    };
  }
  if (outcome.kind === 'error' && outcome.code === AMOUNT_MISMATCH) {
    return { ...(outcome.processorRef ? { processorRef: outcome.processorRef } : {}), reason: outcome.message };
  }
  return undefined;
}

/** Record the mismatch (with the void it needs, PENDING) and void it. */
export async function recordMismatch(run: AuthRun, charge: Charge, m: Mismatch): Promise<WorkAnswer> {
  const { deps, req, w } = run;
  const at = run.at();
  const pending: AuthorisationVoid | undefined = m.processorRef
    ? { state: 'PENDING', processorRef: m.processorRef, idempotencyKey: voidIdempotencyKey(req.authRequestId), reason: m.reason, requestedAt: at }
    : undefined;
  const move = moveCharge(charge, 'AUTHORISATION_ERROR', {
    at,
    details: { error_code: AMOUNT_MISMATCH, message: m.reason, ...(m.processorRef ? { processor_ref: m.processorRef } : {}) },
    fields: { errorCode: AMOUNT_MISMATCH, ...(m.processorRef ? { processorRef: m.processorRef } : {}), ...(pending ? { authorisationVoid: pending } : {}) },
  });
  const counted = () => deps.authorisations?.inc({ processor: req.processor, outcome: 'AUTHORISATION_ERROR' });
  if (!pending) {
    const detail = `${m.reason}; the processor answered without a reference, so nothing could be voided: find the authorisation at the processor (idempotency key ${charge.authIdempotencyKey ?? '-'}) and release it`;
    const done = await w.complete([move.change], { status: 'AUTHORISATION_ERROR', action: 'dead-letter', code: AMOUNT_MISMATCH, detail });
    counted();
    w.log.error(
      { alert: AMOUNT_MISMATCH, status: 'AUTHORISATION_ERROR', void: 'NONE' },
      `processor answered a different amount or currency: charge is AUTHORISATION_ERROR; ${detail}`,
    );
    return done;
  }
  // Committed before the void is asked for, work item left open: from here on a crash leaves a
  // PENDING void that the next delivery of this request finishes (see the diagram above).
  await w.commit([move.change]);
  counted();
  w.log.warn(
    { status: 'AUTHORISATION_ERROR', processorRef: pending.processorRef },
    'processor answered a different amount or currency: recorded; voiding the authorisation',
  );
  await deps.hooks?.afterMismatchRecorded?.(charge.chargeId);
  return finishVoid(run, move.after);
}

/**
 * Ask the processor to void the charge's PENDING void and commit the answer. Retryable failures and
 * unknown outcomes are retried (the charge keeps its PENDING void) until the last attempt, which
 * records FAILED instead of letting the consumer dead-letter RETRIES_EXHAUSTED: the letter must
 * still say AMOUNT_MISMATCH, and the alert must say that a person has to release the funds.
 */
export async function finishVoid(run: AuthRun, charge: Charge): Promise<WorkAnswer> {
  const { deps, connector, w } = run;
  const v = charge.authorisationVoid;
  if (v?.state !== 'PENDING') throw new Error(`charge ${charge.chargeId} has no PENDING void`);
  const ref = v.processorRef;
  const outcome = await connector.void({ chargeId: charge.chargeId, processorRef: ref, idempotencyKey: v.idempotencyKey }, w.signal);
  await deps.hooks?.afterVoidAnswered?.(charge.chargeId);
  const at = run.at();

  if (outcome.kind === 'voided') {
    const move = moveCharge(charge, 'AUTHORISATION_ERROR_CANCELLED', {
      at,
      details: { processor_ref: ref, error_code: charge.errorCode ?? AMOUNT_MISMATCH },
      fields: { authorisationVoid: { ...v, state: 'VOIDED', settledAt: at } },
    });
    const detail = `${v.reason}; the authorisation was voided at the processor (ref ${ref})`;
    const done = await w.complete([move.change], { status: move.after.status, action: 'dead-letter', code: AMOUNT_MISMATCH, detail });
    w.log.error(
      { alert: AMOUNT_MISMATCH, status: move.after.status, processorRef: ref, void: 'VOIDED' },
      `processor answered a different amount or currency: charge is ${move.after.status}; the authorisation was voided at the processor (ref ${ref}), no funds stay held`,
    );
    return done;
  }

  const retryable = outcome.kind === 'ambiguous' || outcome.retryable;
  const code = outcome.kind === 'ambiguous' ? 'VOID_OUTCOME_UNKNOWN' : outcome.code;
  const why = outcome.kind === 'ambiguous' ? outcome.reason : outcome.message;
  // A processor outage (its breaker opened) is not a failed void: wait for it rather than give up.
  if (retryable && (!run.last || dependencyOutage())) {
    w.log.warn({ processorRef: ref, code, reason: why }, 'void not confirmed; retrying later (the charge keeps its PENDING void)');
    throw new RetryableError(code, `void of ${ref} not confirmed: ${why}`);
  }
  // No status change and no ledger event: nothing changed at the processor.
  const move = amendCharge(charge, { at, fields: { authorisationVoid: { ...v, state: 'FAILED', settledAt: at, code, message: why } } });
  const detail = `${v.reason}; VOID FAILED for ref ${ref} (${code}: ${why}): the customer's funds may still be held, release the authorisation at the processor`;
  const done = await w.complete([move.change], { status: charge.status, action: 'dead-letter', code: AMOUNT_MISMATCH, detail });
  w.log.error(
    { alert: AMOUNT_MISMATCH, status: charge.status, processorRef: ref, void: 'FAILED', voidCode: code },
    `processor answered a different amount or currency: charge is ${charge.status} and the void FAILED (${code}): ACTION REQUIRED, release authorisation ${ref} at the processor`,
  );
  return done;
}

/** What a charge's void says, for the detail of a later letter; undefined when it has none. */
export function voidNote(charge: Charge): string | undefined {
  const v = charge.authorisationVoid;
  if (!v) return undefined;
  if (v.state === 'VOIDED') return `${v.reason}; the authorisation was voided at the processor (ref ${v.processorRef})`;
  if (v.state === 'FAILED')
    return `${v.reason}; VOID FAILED for ref ${v.processorRef} (${v.code ?? '-'}): release the authorisation at the processor`;
  return `${v.reason}; void of ref ${v.processorRef} pending`;
}
