/**
 * The `sandbox` processor: in-process, deterministic, no network (GOV.UK Pay's sandbox gateway).
 * The card number picks the scenario (all numbers Luhn-valid; see docs/connectors.md):
 *
 *   4242424242424242  approve (also any other Luhn-valid number that is not listed here)
 *   4000000000000002  decline card_declined
 *   4000000000009995  decline insufficient_funds
 *   4000000000000069  decline expired_card
 *   4000000000000119  error, retryable (processing_error)
 *   4000000000000101  error, not retryable (PROCESSOR_REJECTED)
 *   4000000000000259  timeout after charge: authorise -> ambiguous, lookup -> authorised
 *   4000000000000077  slow: waits `slowMs`, then approves
 *   4000000000000341  approve; every capture fails with a retryable error
 *   4000000000000044  approve; capture is asynchronous ('submitted')
 *   not Luhn-valid    decline incorrect_number
 *
 * Refunds of an authorised (captured) sandbox charge are `refunded` at once, except for the magic
 * refund amounts in {@link SANDBOX_REFUND_AMOUNTS} (pending then confirmed, pending then failed,
 * rejected, retryable error, timeout after the refund). Being stateless, the sandbox cannot know how
 * much of a charge is left to refund: the refund worker's own ledger is the only limit it meets.
 *
 * Stateless by design, so it behaves the same across worker restarts: everything capture, void and
 * lookup need is in the processorRef, `sbx_<scenario>_<sha256(idempotencyKey) prefix>`, derived
 * from the request alone — repeating an authorise yields the same ref.
 */
import { createHash } from 'node:crypto';
import { isCardNumber } from '../util/luhn.js';
import type { SensitiveCard } from './sensitive-card.js';
import type {
  AuthoriseOutcome,
  AuthoriseRequest,
  CaptureOutcome,
  CaptureRequest,
  LookupOutcome,
  LookupRequest,
  ProcessorConnector,
  RefundLookupOutcome,
  RefundLookupRequest,
  RefundOutcome,
  RefundRequest,
  VoidOutcome,
} from './types.js';
import { pause } from '../core/timers.js';

/** What the sandbox does for a card; encoded in its processorRef. */
export type SandboxScenario =
  | 'approve'
  | 'decline'
  | 'insufficient'
  | 'expired'
  | 'error'
  | 'reject'
  | 'timeout'
  | 'slow'
  | 'capfail'
  | 'capasync'
  | 'badnumber';

/** The magic card numbers, by what they do. */
export const SANDBOX_CARDS = Object.freeze({
  approve: '4242424242424242',
  decline: '4000000000000002',
  insufficientFunds: '4000000000009995',
  expiredCard: '4000000000000069',
  errorRetryable: '4000000000000119',
  errorNonRetryable: '4000000000000101',
  timeoutAfterCharge: '4000000000000259',
  slow: '4000000000000077',
  captureFailsRetryable: '4000000000000341',
  captureSubmitted: '4000000000000044',
});

const SCENARIO_BY_NUMBER: ReadonlyMap<string, SandboxScenario> = new Map([
  [SANDBOX_CARDS.decline, 'decline'],
  [SANDBOX_CARDS.insufficientFunds, 'insufficient'],
  [SANDBOX_CARDS.expiredCard, 'expired'],
  [SANDBOX_CARDS.errorRetryable, 'error'],
  [SANDBOX_CARDS.errorNonRetryable, 'reject'],
  [SANDBOX_CARDS.timeoutAfterCharge, 'timeout'],
  [SANDBOX_CARDS.slow, 'slow'],
  [SANDBOX_CARDS.captureFailsRetryable, 'capfail'],
  [SANDBOX_CARDS.captureSubmitted, 'capasync'],
]);

const DECLINES: Partial<Record<SandboxScenario, { code: string; message: string }>> = {
  decline: { code: 'card_declined', message: 'Your card was declined.' },
  insufficient: { code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
  expired: { code: 'expired_card', message: 'Your card has expired.' },
  badnumber: { code: 'incorrect_number', message: 'Your card number is incorrect.' },
};

/** Scenarios whose authorisation leaves money held at the (pretend) processor. */
const AUTHORISING: ReadonlySet<SandboxScenario> = new Set(['approve', 'timeout', 'slow', 'capfail', 'capasync']);

/** What the sandbox does with a refund; encoded in its refundRef. */
export type SandboxRefundScenario = 'refund' | 'pending' | 'failing' | 'reject' | 'error' | 'timeout';

/**
 * Magic refund amounts (minor units), by what they do. Any other amount is refunded at once.
 *
 *   pendingThenRefunded  refund -> submitted; lookupRefund -> refunded (the processor confirms later)
 *   pendingThenFailed    refund -> submitted; lookupRefund -> failed (REFUND_ERROR after submission)
 *   rejected             refund -> rejected `refund_declined`; lookupRefund -> not_found
 *   errorRetryable       refund -> error retryable `processing_error`, every time; lookupRefund -> not_found
 *   timeoutAfterRefund   refund -> ambiguous (timed out after refunding); lookupRefund -> refunded
 */
export const SANDBOX_REFUND_AMOUNTS = Object.freeze({
  pendingThenRefunded: 7001,
  pendingThenFailed: 7002,
  rejected: 7003,
  errorRetryable: 7004,
  timeoutAfterRefund: 7005,
});

const REFUND_SCENARIO_BY_AMOUNT: ReadonlyMap<number, SandboxRefundScenario> = new Map([
  [SANDBOX_REFUND_AMOUNTS.pendingThenRefunded, 'pending'],
  [SANDBOX_REFUND_AMOUNTS.pendingThenFailed, 'failing'],
  [SANDBOX_REFUND_AMOUNTS.rejected, 'reject'],
  [SANDBOX_REFUND_AMOUNTS.errorRetryable, 'error'],
  [SANDBOX_REFUND_AMOUNTS.timeoutAfterRefund, 'timeout'],
]);
const REFUND_SCENARIOS: ReadonlySet<string> = new Set(['refund', 'pending', 'failing', 'reject', 'error', 'timeout']);

/** The deterministic refundRef of a refund request: `sbxre_<scenario>_<sha256(idempotencyKey) prefix>`. */
export function sandboxRefundRef(scenario: SandboxRefundScenario, idempotencyKey: string): string {
  return `sbxre_${scenario}_${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 24)}`;
}

function refundScenarioOf(req: RefundLookupRequest): SandboxRefundScenario {
  const m = req.refundRef === undefined ? null : /^sbxre_([a-z]+)_[0-9a-f]{24}$/.exec(req.refundRef);
  if (m?.[1] !== undefined && REFUND_SCENARIOS.has(m[1])) return m[1] as SandboxRefundScenario;
  return REFUND_SCENARIO_BY_AMOUNT.get(req.amount) ?? 'refund';
}

export interface SandboxConnectorOptions {
  /** Delay of the "slow" card. @default 2_000 */
  readonly slowMs?: number;
}


/** Scenario of a card. Reads the number only inside this function. */
export function sandboxScenarioOf(card: SensitiveCard): SandboxScenario {
  const { number } = card.reveal();
  if (!isCardNumber(number)) return 'badnumber';
  return SCENARIO_BY_NUMBER.get(number) ?? 'approve';
}

/** The deterministic processorRef for an authorisation. */
export function sandboxRef(scenario: SandboxScenario, idempotencyKey: string): string {
  return `sbx_${scenario}_${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 24)}`;
}

/** Scenario encoded in a sandbox ref, or undefined for a foreign ref. */
export function scenarioOfRef(ref: string): SandboxScenario | undefined {
  const m = /^sbx_([a-z]+)_[0-9a-f]{24}$/.exec(ref);
  return m?.[1] !== undefined && (AUTHORISING.has(m[1] as SandboxScenario) || m[1] in DECLINES)
    ? (m[1] as SandboxScenario)
    : undefined;
}

/** Create the sandbox connector. */
export function createSandboxConnector(options: SandboxConnectorOptions = {}): ProcessorConnector {
  const slowMs = options.slowMs ?? 2_000;

  async function authorise(req: AuthoriseRequest, signal?: AbortSignal): Promise<AuthoriseOutcome> {
    const scenario = sandboxScenarioOf(req.card);
    const processorRef = sandboxRef(scenario, req.idempotencyKey);
    const decline = DECLINES[scenario];
    if (decline) return { kind: 'declined', processorRef, ...decline };
    switch (scenario) {
      case 'error':
        return { kind: 'error', retryable: true, code: 'processing_error', message: 'sandbox: processor error, try again' };
      case 'reject':
        return {
          kind: 'error',
          retryable: false,
          code: 'PROCESSOR_REJECTED',
          message: 'sandbox: processor rejected the request',
        };
      case 'timeout':
        // The pretend processor charged, the answer was "lost": lookup will find it.
        return { kind: 'ambiguous', reason: 'sandbox: timed out after the charge was made' };
      case 'slow':
        // The charge happens at the end of the wait; an abort before it means nothing happened.
        await pause(slowMs, signal);
        if (signal?.aborted)
          return { kind: 'error', retryable: true, code: 'ABORTED', message: 'sandbox: aborted before the charge' };
        break;
      default:
        break;
    }
    return { kind: 'approved', processorRef, amount: req.amount, currency: req.currency };
  }

  async function capture(req: CaptureRequest): Promise<CaptureOutcome> {
    const scenario = scenarioOfRef(req.processorRef);
    if (scenario === undefined || !AUTHORISING.has(scenario)) {
      return {
        kind: 'error',
        retryable: false,
        code: 'NOT_CAPTURABLE',
        message: 'sandbox: no authorisation with this reference',
        processorRef: req.processorRef,
      };
    }
    if (scenario === 'capfail') {
      return {
        kind: 'error',
        retryable: true,
        code: 'processing_error',
        message: 'sandbox: capture failed, try again',
        processorRef: req.processorRef,
      };
    }
    if (scenario === 'capasync') return { kind: 'submitted', processorRef: req.processorRef };
    return { kind: 'captured', processorRef: req.processorRef };
  }

  async function voidAuth(req: { processorRef: string }): Promise<VoidOutcome> {
    const scenario = scenarioOfRef(req.processorRef);
    if (scenario === undefined || !AUTHORISING.has(scenario)) {
      return { kind: 'error', retryable: false, code: 'NOT_VOIDABLE', message: 'sandbox: no authorisation with this reference' };
    }
    return { kind: 'voided' };
  }

  async function lookup(req: LookupRequest): Promise<LookupOutcome> {
    let scenario: SandboxScenario | undefined;
    let processorRef = req.processorRef;
    if (processorRef !== undefined) {
      scenario = scenarioOfRef(processorRef);
      if (scenario === undefined) return { kind: 'not_found' };
    } else if (req.original) {
      scenario = sandboxScenarioOf(req.original.card);
      processorRef = sandboxRef(scenario, req.idempotencyKey);
    } else {
      // Stateless: without the card (its token gone) and without a reference the sandbox cannot
      // tell what it did. Guessing "approved" would record an authorisation for a charge that was
      // never sent (an expired token after a crash): say it does not know.
      return { kind: 'unknown', reason: 'sandbox: without the card or a processorRef the stateless sandbox cannot tell' };
    }
    const decline = DECLINES[scenario];
    if (decline) return { kind: 'declined', processorRef, ...decline };
    // Errors (retryable or not) never charged.
    if (!AUTHORISING.has(scenario)) return { kind: 'not_found' };
    // Stateless: the sandbox cannot know whether a capture followed; it reports the authorisation.
    return { kind: 'authorised', processorRef, amount: req.amount, currency: req.currency };
  }

  /** Only an authorisation the sandbox made (and the worker captured) can be refunded. */
  const refundable = (processorRef: string) => {
    const scenario = scenarioOfRef(processorRef);
    return scenario !== undefined && AUTHORISING.has(scenario);
  };

  async function refund(req: RefundRequest): Promise<RefundOutcome> {
    if (!refundable(req.processorRef))
      return { kind: 'rejected', code: 'NOT_REFUNDABLE', message: 'sandbox: no captured payment with this reference' };
    const scenario = REFUND_SCENARIO_BY_AMOUNT.get(req.amount) ?? 'refund';
    const refundRef = sandboxRefundRef(scenario, req.idempotencyKey);
    switch (scenario) {
      case 'pending':
      case 'failing':
        return { kind: 'submitted', refundRef };
      case 'reject':
        return { kind: 'rejected', code: 'refund_declined', message: 'sandbox: the processor declined the refund' };
      case 'error':
        return { kind: 'error', retryable: true, code: 'processing_error', message: 'sandbox: refund failed, try again' };
      case 'timeout':
        // The pretend processor refunded, the answer was "lost": lookupRefund will find it.
        return { kind: 'ambiguous', reason: 'sandbox: timed out after the refund was made' };
      default:
        return { kind: 'refunded', refundRef };
    }
  }

  /**
   * What the refund request would have done: stateless, so "sent" and "would be, if sent" are the
   * same answer, and a refund that ends in nothing (rejected, error) is `not_found`.
   */
  async function lookupRefund(req: RefundLookupRequest): Promise<RefundLookupOutcome> {
    if (!refundable(req.processorRef)) return { kind: 'not_found' };
    const scenario = refundScenarioOf(req);
    const refundRef = sandboxRefundRef(scenario, req.idempotencyKey);
    switch (scenario) {
      case 'failing':
        return { kind: 'failed', refundRef, code: 'refund_failed', message: 'sandbox: the refund failed after submission' };
      case 'reject':
      case 'error':
        return { kind: 'not_found' };
      default:
        return { kind: 'refunded', refundRef, amount: req.amount };
    }
  }

  return {
    name: 'sandbox',
    authorise,
    capture,
    void: voidAuth,
    lookup,
    refund,
    lookupRefund,
  };
}

/** Luhn check over a digit string (12-19 digits). */
export const luhnValid = isCardNumber;
