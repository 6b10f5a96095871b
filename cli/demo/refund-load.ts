/**
 * The refunds of the `npm start` demo load: which charges are refunded, how, and what each refund
 * request must end as. Pure data, like load.ts; the driver sends a charge's refunds once the Ledger
 * has seen it captured (CAPTURED, or CAPTURE_SUBMITTED — Worldpay's, which the refund worker
 * accepts), and the summary judges them (refund-checks.ts).
 *
 * The captured charges of the charge pattern take turns through the refund kinds, shifted by one
 * each cycle so that every processor meets every kind over a long enough run:
 *
 *   full          one refund of the whole captured amount                        REFUNDED
 *   partials      two partial refunds summing to the captured amount             REFUNDED, REFUNDED
 *   over-refund   a partial, then (once it is taken) one that exceeds what is    REFUNDED, dead-lettered
 *                 left by one minor unit                                         REFUND_AMOUNT_UNAVAILABLE
 *   duplicate     the whole amount, its request re-sent at once with a fresh     REFUNDED, one refund at
 *                 deduplication id (same refundRequestId)                        the processor
 *   (none)        left unrefunded: a share of the charges keeps its money
 *
 * and every authorised-but-uncaptured charge gets a refund request dead-lettered NOT_REFUNDABLE.
 */
import { randomUUID } from 'node:crypto';
import type { ChargeStatus } from '../../shared/charges/charge.js';
import type { PlannedCharge, Processor } from './load.js';

export type RefundKind = 'full' | 'partial' | 'over-refund: partial' | 'over-refund: exceeds' | 'duplicate' | 'not captured';

/** One refund request of the demo, and what it must end as. */
export interface PlannedRefund {
  readonly refundId: string;
  readonly refundRequestId: string;
  readonly chargeId: string;
  readonly processor: Processor;
  readonly kind: RefundKind;
  readonly amount: number;
  /** The RefundRequested message, sent as is (the DLQ check compares bodies byte for byte). */
  readonly body: string;
  /** Send once the Ledger has seen the charge in one of these statuses. */
  readonly whenCharge: readonly ChargeStatus[];
  /** ...and, if set, once this earlier refund of the charge is taken (REFUND_SUBMITTED or REFUNDED). */
  readonly afterRefund?: string;
  /** Also sent at once with a fresh deduplication id (the same refundRequestId): one refund only. */
  readonly duplicate: boolean;
  /** REFUNDED, or the code of the dead letter it must become (no refund created). */
  readonly expect: { readonly status: 'REFUNDED' } | { readonly dlq: 'REFUND_AMOUNT_UNAVAILABLE' | 'NOT_REFUNDABLE' };
}

type Scenario = 'full' | 'partials' | 'over-refund' | 'duplicate' | undefined;
/** The turn order of the captured charges; `undefined` leaves a charge unrefunded. */
const SCENARIOS: readonly Scenario[] = ['full', 'partials', 'over-refund', 'duplicate', undefined];

/** What a captured charge may be in when its refunds go out. */
const CAPTURED: readonly ChargeStatus[] = ['CAPTURED', 'CAPTURE_SUBMITTED'];

/** The sandbox processor's magic refund amounts (shared/connectors/sandbox.ts SANDBOX_REFUND_AMOUNTS) are avoided. */
const MAGIC_REFUND_AMOUNTS: ReadonlySet<number> = new Set([7001, 7002, 7003, 7004, 7005]);

/** A first part of `amount` such that neither it nor the rest is a magic amount. */
function split(amount: number, first: number): number {
  let f = first;
  while (MAGIC_REFUND_AMOUNTS.has(f) || MAGIC_REFUND_AMOUNTS.has(amount - f)) f -= 7;
  return f;
}

export function refundBody(r: { refundRequestId: string; refundId: string; chargeId: string; amount: number }) {
  return {
    type: 'RefundRequested',
    refundRequestId: r.refundRequestId,
    refundId: r.refundId,
    chargeId: r.chargeId,
    amount: r.amount,
    reference: `demo refund ${r.refundId}`,
    requestedAt: new Date().toISOString(),
  };
}

/**
 * The refunds of `charges` (in plan order; `patternLength` is the charge pattern's, so the turn of a
 * charge is its place among the captured kinds of its cycle plus the cycle number).
 */
export function planRefunds(runId: string, charges: readonly PlannedCharge[], patternLength: number): PlannedRefund[] {
  const out: PlannedRefund[] = [];
  let n = 0;
  const add = (
    c: PlannedCharge,
    kind: RefundKind,
    amount: number,
    expect: PlannedRefund['expect'],
    extra: { afterRefund?: string; duplicate?: boolean; whenCharge?: readonly ChargeStatus[] } = {},
  ): string => {
    const refundId = `re-${runId}-${String(++n).padStart(4, '0')}`;
    const refundRequestId = randomUUID();
    out.push({
      refundId,
      refundRequestId,
      chargeId: c.chargeId,
      processor: c.processor,
      kind,
      amount,
      body: JSON.stringify(refundBody({ refundRequestId, refundId, chargeId: c.chargeId, amount })),
      whenCharge: extra.whenCharge ?? CAPTURED,
      ...(extra.afterRefund ? { afterRefund: extra.afterRefund } : {}),
      duplicate: extra.duplicate ?? false,
      expect,
    });
    return refundId;
  };
  const refunded = { status: 'REFUNDED' } as const;
  let turn = 0;
  let cycle = -1;
  charges.forEach((c, i) => {
    if (i % patternLength === 0) {
      cycle += 1;
      turn = cycle;
    }
    if (c.capture && c.expect.every((s) => CAPTURED.includes(s))) {
      const a = c.amount;
      let scenario = SCENARIOS[turn++ % SCENARIOS.length];
      // A whole refund of a magic amount would meet the sandbox's scenario: refund it in two parts.
      if ((scenario === 'full' || scenario === 'duplicate') && MAGIC_REFUND_AMOUNTS.has(a)) scenario = 'partials';
      if (scenario === 'full') add(c, 'full', a, refunded);
      if (scenario === 'duplicate') add(c, 'duplicate', a, refunded, { duplicate: true });
      if (scenario === 'partials') {
        const first = split(a, Math.floor(a / 3));
        add(c, 'partial', first, refunded);
        add(c, 'partial', a - first, refunded);
      }
      if (scenario === 'over-refund') {
        const first = split(a, Math.floor(a / 2));
        const taken = add(c, 'over-refund: partial', first, refunded);
        add(c, 'over-refund: exceeds', a - first + 1, { dlq: 'REFUND_AMOUNT_UNAVAILABLE' }, { afterRefund: taken });
      }
    } else if (!c.capture && c.expect.length === 1 && c.expect[0] === 'AUTHORISATION_SUCCESS') {
      add(c, 'not captured', c.amount, { dlq: 'NOT_REFUNDABLE' }, { whenCharge: ['AUTHORISATION_SUCCESS'] });
    }
  });
  return out;
}
