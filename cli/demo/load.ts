/**
 * The demo load of `npm start`: what is sent, and what each message must end as. Pure data; the
 * orchestrator sends it (demo/orchestrator.ts) and the summary judges the fleet against it
 * (demo/summary.ts).
 *
 * Good charges cycle through a fixed pattern so any `--charges n` >= 14 has every kind:
 *
 *   sandbox / Stripe / Worldpay / Chase approvals that are then captured (Worldpay captures meet
 *   injected 5xx answers and are retried), a Stripe authorisation left uncaptured, declines at each
 *   processor, and a sandbox card whose every capture fails (CAPTURE_ERROR after the retries).
 *
 * A share of the captured charges is then refunded — whole, in two parts, over-refunded, or with the
 * request re-sent at once — and the uncaptured one is asked for a refund it cannot have (refund-load.ts).
 *
 * Bad messages are a fixed set, one per reason a worker dead-letters (docs/contract.md §6). Card numbers
 * never appear in a body: every token is opaque (`tok_demo_<random>`) and registered with the
 * sandbox token service, so the summary can check that no card number reached a log, table, event
 * or DLQ.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { ChargeStatus } from '../../shared/charges/charge.js';
import { planRefunds, type PlannedRefund } from './refund-load.js';

export type Processor = 'sandbox' | 'stripe' | 'worldpay' | 'chase';

/** One good authorisation (and maybe its capture). */
export interface PlannedCharge {
  readonly chargeId: string;
  readonly kind: string;
  readonly processor: Processor;
  readonly card: string;
  readonly token: string;
  readonly amount: number;
  readonly currency: string;
  /** Send a CaptureRequested once the charge is authorised. */
  readonly capture: boolean;
  /** Also send the same request again with a fresh deduplication id (an upstream re-send). */
  readonly duplicate: boolean;
  /** Acceptable final statuses. */
  readonly expect: readonly ChargeStatus[];
}

/** A message that must end in a DLQ with `code`. */
export interface PlannedBadMessage {
  readonly queue: 'auth-requests' | 'capture-requests' | 'payout-events';
  readonly label: string;
  readonly code: string;
  readonly body: string;
  readonly groupId: string;
  /** For captures of a charge that must first reach a status. */
  readonly after?: { readonly chargeId: string; readonly status: ChargeStatus };
  /** A charge row this message creates, and the status it must end in. */
  readonly charge?: { readonly chargeId: string; readonly expect: ChargeStatus };
  /** A token to register before sending. */
  readonly token?: { readonly id: string; readonly card: string | 'expired' };
}

export interface PlannedPayout {
  readonly paymentId: string;
  readonly kind: string;
  readonly body: string;
  readonly eventId: string;
  readonly duplicate: boolean;
  readonly expect: 'PAID' | 'REJECTED';
}

export interface DemoPlan {
  readonly runId: string;
  readonly charges: readonly PlannedCharge[];
  readonly bad: readonly PlannedBadMessage[];
  readonly payouts: readonly PlannedPayout[];
  /** Refund requests, sent once their charge is captured (refund-load.ts). */
  readonly refunds: readonly PlannedRefund[];
  /** Every card number used: none may appear outside the token service. */
  readonly cardNumbers: readonly string[];
}

interface ChargeKind {
  readonly kind: string;
  readonly processor: Processor;
  readonly card: string;
  readonly capture: boolean;
  readonly expect: readonly ChargeStatus[];
}

/** Worldpay confirms captures asynchronously (CAPTURE_SUBMITTED); a later look-up may already see CAPTURED. */
const WORLDPAY_CAPTURED: readonly ChargeStatus[] = ['CAPTURE_SUBMITTED', 'CAPTURED'];

/** The repeating pattern of good charges (docs/connectors.md, docs/worldpay.md for the cards). */
export const CHARGE_PATTERN: readonly ChargeKind[] = [
  { kind: 'sandbox approve + capture', processor: 'sandbox', card: '4242424242424242', capture: true, expect: ['CAPTURED'] },
  { kind: 'stripe approve + capture', processor: 'stripe', card: '4242424242424242', capture: true, expect: ['CAPTURED'] },
  {
    kind: 'worldpay approve + capture',
    processor: 'worldpay',
    card: '4444333322221111',
    capture: true,
    expect: WORLDPAY_CAPTURED,
  },
  { kind: 'sandbox decline', processor: 'sandbox', card: '4000000000000002', capture: false, expect: ['AUTHORISATION_REJECTED'] },
  { kind: 'stripe approve + capture', processor: 'stripe', card: '5555555555554444', capture: true, expect: ['CAPTURED'] },
  {
    kind: 'worldpay approve + capture',
    processor: 'worldpay',
    card: '5555555555554444',
    capture: true,
    expect: WORLDPAY_CAPTURED,
  },
  { kind: 'stripe decline', processor: 'stripe', card: '4000000000009995', capture: false, expect: ['AUTHORISATION_REJECTED'] },
  {
    kind: 'sandbox capture always fails',
    processor: 'sandbox',
    card: '4000000000000341',
    capture: true,
    expect: ['CAPTURE_ERROR'],
  },
  {
    kind: 'stripe authorised, not captured',
    processor: 'stripe',
    card: '4242424242424242',
    capture: false,
    expect: ['AUTHORISATION_SUCCESS'],
  },
  {
    kind: 'worldpay decline',
    processor: 'worldpay',
    card: '4000000000000002',
    capture: false,
    expect: ['AUTHORISATION_REJECTED'],
  },
  { kind: 'sandbox approve + capture', processor: 'sandbox', card: '5555555555554444', capture: true, expect: ['CAPTURED'] },
  { kind: 'stripe approve + capture', processor: 'stripe', card: '4000056655665556', capture: true, expect: ['CAPTURED'] },
  { kind: 'chase approve + capture', processor: 'chase', card: '4242424242424242', capture: true, expect: ['CAPTURED'] },
  { kind: 'chase decline', processor: 'chase', card: '4000000000000002', capture: false, expect: ['AUTHORISATION_REJECTED'] },
];

/** A valid IBAN for `country` + `bban` (ISO 7064 mod 97-10 check digits). */
export function iban(bban: string, country = 'EE'): string {
  const digits = `${bban}${country}00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let rem = 0;
  for (const d of digits) rem = (rem * 10 + Number(d)) % 97;
  return `${country}${String(98 - rem).padStart(2, '0')}${bban}`;
}

/** A creditor IBAN the sandbox bank pays (it rejects accounts ending in 0000 with AC01). */
function creditorIban(i: number): string {
  let bban = 2200221020145686 + i * 37;
  if (bban % 10_000 === 0) bban += 1;
  return iban(String(bban));
}

/** The bank the demo pays from (the payout worker's LHV_DEBTOR_* variables). */
export const DEMO_DEBTOR = { name: 'Payfleet Demo OU', iban: 'EE382200221020145685', bic: 'LHVBEE22' } as const;

const token = () => `tok_demo_${randomBytes(12).toString('hex')}`;

/** A seeded-enough amount in minor units that avoids the sandboxes' magic amounts. */
function amountFor(i: number): number {
  const a = 100 + ((i * 7919) % 49_900);
  return a === 6666 ? 6667 : a;
}

export function authBody(c: {
  chargeId: string;
  processor: string;
  token: string;
  amount: number;
  currency?: string;
  authRequestId?: string;
}) {
  return {
    type: 'AuthorisationRequested',
    authRequestId: c.authRequestId ?? randomUUID(),
    chargeId: c.chargeId,
    gatewayAccountId: 'gw-demo-1',
    processor: c.processor,
    amount: c.amount,
    currency: c.currency ?? 'GBP',
    paymentTokenId: c.token,
    reference: `demo-${c.chargeId}`,
    description: `payfleet demo charge ${c.chargeId}`,
    requestedAt: new Date().toISOString(),
  };
}

export function captureBody(chargeId: string, captureRequestId: string = randomUUID()) {
  return { type: 'CaptureRequested', captureRequestId, chargeId, requestedAt: new Date().toISOString() };
}

function approval(paymentId: string, i: number, creditorName: string, creditorIban: string, currency = 'EUR') {
  return {
    eventType: 'CheckoutApprovalAccepted',
    eventId: randomUUID(),
    paymentId,
    amount: 500 + ((i * 104_729) % 250_000),
    currency,
    creditor: { name: creditorName, iban: creditorIban, bic: 'LHVBEE22' },
    remittanceInformation: `payfleet demo payout ${paymentId}`,
    approvedAt: new Date().toISOString(),
  };
}

/** The same event as SNS delivers it to SQS without raw message delivery. */
export function snsWrapped(event: Record<string, unknown>): Record<string, unknown> {
  return {
    Type: 'Notification',
    MessageId: randomUUID(),
    TopicArn: 'arn:aws:sns:eu-west-2:000000000000:payment-controls-approvals',
    Message: JSON.stringify(event),
    Timestamp: new Date().toISOString(),
    SignatureVersion: '1',
  };
}

/** Build the whole load. `payouts` is 0 when the payout worker is not part of this checkout. */
export function planDemo(options: { charges: number; payouts: number }): DemoPlan {
  const runId = randomBytes(3).toString('hex');
  const cardNumbers = new Set<string>();
  const charges: PlannedCharge[] = [];
  for (let i = 0; i < options.charges; i++) {
    const k = CHARGE_PATTERN[i % CHARGE_PATTERN.length]!;
    cardNumbers.add(k.card);
    charges.push({
      chargeId: `ch-${runId}-${String(i + 1).padStart(4, '0')}`,
      kind: k.kind,
      processor: k.processor,
      card: k.card,
      token: token(),
      amount: amountFor(i),
      currency: 'GBP',
      capture: k.capture,
      // Every 16th request is re-sent as a new message (same authRequestId, fresh deduplication id).
      duplicate: i % 16 === 5,
      expect: k.expect,
    });
  }

  const bad: PlannedBadMessage[] = [];
  const badId = (what: string) => `bad-${runId}-${what}`;
  const authBad = (label: string, code: string, chargeId: string, body: string, extra: Partial<PlannedBadMessage> = {}) =>
    bad.push({ queue: 'auth-requests', label, code, body, groupId: chargeId, ...extra });

  authBad(
    'auth: body is not JSON',
    'INVALID_MESSAGE',
    badId('notjson'),
    `AuthorisationRequested chargeId=${badId('notjson')} (not JSON)`,
  );
  authBad(
    'auth: fails the schema (currency XYZ)',
    'INVALID_MESSAGE',
    badId('schema'),
    JSON.stringify(authBody({ chargeId: badId('schema'), processor: 'sandbox', token: token(), amount: 1000, currency: 'XYZ' })),
  );
  authBad(
    'auth: unknown processor "adyen"',
    'UNKNOWN_PROCESSOR',
    badId('processor'),
    JSON.stringify(authBody({ chargeId: badId('processor'), processor: 'adyen', token: token(), amount: 1000 })),
  );
  const expired = token();
  authBad(
    'auth: expired payment token',
    'TOKEN_EXPIRED',
    badId('expired'),
    JSON.stringify(authBody({ chargeId: badId('expired'), processor: 'stripe', token: expired, amount: 1000 })),
    { token: { id: expired, card: 'expired' } },
  );
  authBad(
    'auth: unknown payment token',
    'TOKEN_UNKNOWN',
    badId('unknowntoken'),
    JSON.stringify(
      authBody({ chargeId: badId('unknowntoken'), processor: 'sandbox', token: `tok_unknown_${runId}`, amount: 1000 }),
    ),
  );
  const mismatch = token();
  cardNumbers.add('4242424242424242');
  authBad(
    'auth: processor answers another amount',
    'AMOUNT_MISMATCH',
    badId('mismatch'),
    // The Stripe sandbox answers amount + 1 for this amount (STRIPE_SANDBOX_MISMATCH_AMOUNT).
    JSON.stringify(authBody({ chargeId: badId('mismatch'), processor: 'stripe', token: mismatch, amount: 6666 })),
    // The worker voids the authorisation Stripe holds for the other amount (workers/auth/void.ts).
    {
      token: { id: mismatch, card: '4242424242424242' },
      charge: { chargeId: badId('mismatch'), expect: 'AUTHORISATION_ERROR_CANCELLED' },
    },
  );
  const rejected = token();
  cardNumbers.add('4000000000000101');
  authBad(
    'auth: processor rejects the request',
    'PROCESSOR_REJECTED',
    badId('rejected'),
    JSON.stringify(authBody({ chargeId: badId('rejected'), processor: 'sandbox', token: rejected, amount: 1000 })),
    { token: { id: rejected, card: '4000000000000101' }, charge: { chargeId: badId('rejected'), expect: 'AUTHORISATION_ERROR' } },
  );
  const declined = charges.find((c) => c.expect.includes('AUTHORISATION_REJECTED'));
  if (declined) {
    bad.push({
      queue: 'capture-requests',
      label: 'capture: charge was declined',
      code: 'NOT_CAPTURABLE',
      body: JSON.stringify(captureBody(declined.chargeId)),
      groupId: declined.chargeId,
      after: { chargeId: declined.chargeId, status: 'AUTHORISATION_REJECTED' },
    });
  }
  bad.push({
    queue: 'capture-requests',
    label: 'capture: fails the schema (captureRequestId)',
    code: 'INVALID_MESSAGE',
    body: JSON.stringify({ ...captureBody(badId('capschema')), captureRequestId: 'not-a-uuid' }),
    groupId: badId('capschema'),
  });

  const payouts: PlannedPayout[] = [];
  if (options.payouts > 0) {
    const payBad = (label: string, body: string, groupId: string) =>
      bad.push({ queue: 'payout-events', label, code: 'INVALID_MESSAGE', body, groupId });
    payBad('payout: body is not JSON', `CheckoutApprovalAccepted ${runId} (not JSON)`, `po-${runId}-notjson`);
    payBad(
      'payout: IBAN fails its checksum',
      JSON.stringify(approval(`po-${runId}-badiban`, 1, 'Demo Creditor', 'EE382200221020145600')),
      `po-${runId}-badiban`,
    );
    payBad(
      'payout: not EUR (SNS-wrapped)',
      JSON.stringify(snsWrapped(approval(`po-${runId}-gbp`, 2, 'Demo Creditor', iban('2200221020145686'), 'GBP'))),
      `po-${runId}-gbp`,
    );
  }
  for (let i = 0; i < options.payouts; i++) {
    const paymentId = `po-${runId}-${String(i + 1).padStart(4, '0')}`;
    const slot = i % 10;
    const kind =
      slot === 5
        ? 'creditor account closed'
        : slot === 6
          ? 'bank settles later'
          : slot === 2 || slot === 7
            ? 'SNS-wrapped'
            : 'raw';
    const name = slot === 5 ? `REJECT Demo Creditor ${i}` : slot === 6 ? `SLOW Demo Creditor ${i}` : `Demo Creditor ${i}`;
    const event = approval(paymentId, i, name, creditorIban(i));
    const body = JSON.stringify(kind === 'SNS-wrapped' ? snsWrapped(event) : event);
    payouts.push({
      paymentId,
      kind,
      body,
      eventId: event.eventId,
      duplicate: slot === 9,
      expect: slot === 5 ? 'REJECTED' : 'PAID',
    });
  }
  const refunds = planRefunds(runId, charges, CHARGE_PATTERN.length);
  return { runId, charges, bad, payouts, refunds, cardNumbers: [...cardNumbers] };
}
