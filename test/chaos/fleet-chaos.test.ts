import { randomUUID } from 'node:crypto';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { LedgerConsumer } from '../support/ledger-consumer.js';
import { drain, eventually, sendAll, sleep, type OutgoingMessage } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { createFleet, scanAll, startSandboxes, type Fleet, type Sandboxes, type WorkerName } from './fleet.js';

/**
 * The fleet's guarantees together, under faults (docs/contract.md §4; issue 10). Sizes are bounded for
 * CI.
 *
 * Load: CHAOS_CHARGES charges across the sandbox, Stripe-, Worldpay- and Chase-shaped processors
 * (1 in 10 declined), every AuthorisationRequested and CaptureRequested sent twice under different
 * deduplication ids; CHAOS_PAYOUTS payouts (raw and SNS-wrapped, each sent twice, some rejected by
 * the bank); bad messages of every kind. Faults: 5xx, 429, latency and timeouts-after-success at
 * the processors and the bank, 5xx at the token service. Every few seconds a random worker process
 * is SIGKILLed and a fresh one started.
 *
 * Refunds: once a charge is captured (Worldpay: CAPTURE_SUBMITTED), refund requests for a share of
 * them — a full refund sent twice under two deduplication ids, partials up to the captured amount
 * (one re-sent under a fresh deduplication id) then an over-refund, a partial and the same refundId
 * again under a new refundRequestId — and a refund of a declined charge; through the same faults.
 *
 * Oracle: every charge and payout reaches its expected final state; every bad message is in its DLQ
 * with its reason and nothing else is; the sandboxes counted at most one authorisation and one
 * capture per charge and one initiation per payout; every accepted refund is REFUNDED, each
 * processor counted exactly one refund per accepted refund (the stateless in-process sandbox
 * processor counts nothing: its charges are judged by the tables alone) and never refunded more than
 * it captured, and each charge's refundedAmount is the sum of its REFUNDED refunds; the reference
 * Ledger consumer received every outbox event exactly once after de-duplication, in order, with no
 * gaps (a refund's: REFUND_CREATED, REFUND_SUBMITTED, REFUND_SUCCEEDED, its charge as parent); no
 * card number or CVC appears in any worker's log.
 */
const CHARGES = Number(process.env.CHAOS_CHARGES ?? 420);
const PAYOUTS = Number(process.env.CHAOS_PAYOUTS ?? 200);
const MIN_KILLS = Number(process.env.CHAOS_MIN_KILLS ?? 10);
const KILL_EVERY_MS = Number(process.env.CHAOS_KILL_EVERY_MS ?? 2500);
const TIMEOUT_MS = Number(process.env.CHAOS_TIMEOUT_MS ?? 360_000);
const WITH_PAYOUTS = PAYOUTS > 0;

let stack: TestStack;
let sb: Sandboxes;
let fleet: Fleet;
const orderToCharge = new Map<string, string>();

beforeAll(async () => {
  stack = await setupTestStack('chaos');
  sb = await startSandboxes((orderCode) => orderToCharge.get(orderCode));
  fleet = createFleet(stack, sb);
});
afterAll(async () => {
  for (const p of fleet?.processes ?? []) p.kill('SIGKILL');
  await sb?.close();
  stack?.close();
});

interface ChargePlan {
  readonly chargeId: string;
  readonly processor: 'sandbox' | 'stripe' | 'worldpay' | 'chase';
  /**
   * Acceptable final statuses. Worldpay confirms captures later (CAPTURE_SUBMITTED), but when a
   * capture's answer was lost the retry's inquiry may find it already settled: CAPTURED is right too.
   */
  readonly final: readonly string[];
}

function planCharges(): { plans: ChargePlan[]; auth: OutgoingMessage[]; capture: OutgoingMessage[] } {
  const plans: ChargePlan[] = [];
  const auth: OutgoingMessage[] = [];
  const capture: OutgoingMessage[] = [];
  for (let i = 0; i < CHARGES; i++) {
    const chargeId = `chaos-${i}`;
    const processor = (['sandbox', 'stripe', 'chase', 'stripe', 'worldpay'] as const)[i % 5]!;
    const decline = i % 10 === 3;
    const card = decline ? (processor === 'worldpay' ? '4000000000000002' : SANDBOX_CARDS.decline) : processor === 'worldpay' ? '4444333322221111' : SANDBOX_CARDS.approve;
    const authRequestId = randomUUID();
    orderToCharge.set(`payfleet-auth-${authRequestId}`, chargeId);
    const final = decline ? ['AUTHORISATION_REJECTED'] : processor === 'worldpay' ? ['CAPTURE_SUBMITTED', 'CAPTURED'] : ['CAPTURED'];
    plans.push({ chargeId, processor, final });
    const body = JSON.stringify({
      type: 'AuthorisationRequested',
      authRequestId,
      chargeId,
      gatewayAccountId: `gw-${i % 7}`,
      processor,
      amount: 100 + i,
      currency: 'GBP',
      paymentTokenId: `tok_${card}_${i}`,
      reference: `ref-${i}`,
      description: 'chaos',
      requestedAt: new Date().toISOString(),
    });
    auth.push({ body, groupId: chargeId, dedupId: `${authRequestId}-a` }, { body, groupId: chargeId, dedupId: `${authRequestId}-b` });
    if (!decline) {
      const captureRequestId = randomUUID();
      const cap = JSON.stringify({ type: 'CaptureRequested', captureRequestId, chargeId, requestedAt: new Date().toISOString() });
      capture.push({ body: cap, groupId: chargeId, dedupId: `${captureRequestId}-a` }, { body: cap, groupId: chargeId, dedupId: `${captureRequestId}-b` });
    }
  }
  return { plans, auth, capture };
}

interface RefundPlan {
  readonly chargeId: string;
  readonly processor: ChargePlan['processor'];
  /** The charge statuses at which the requests are sent (refunds follow captures, as captures follow authorisations). */
  readonly sendAt: readonly string[];
  /** In this order, in the charge's group. */
  readonly messages: OutgoingMessage[];
  /** The refunds that must end REFUNDED. */
  readonly accepted: { readonly refundId: string; readonly amount: number }[];
  /** The code of the one request of this charge that must be dead-lettered. */
  readonly dead?: string;
}

/**
 * Refund requests for a share of the charges, by kind (i: the charge's index, amount 100 + i):
 *   full      the whole amount, sent twice under two deduplication ids: one refund
 *   partials  a third (re-sent under a fresh deduplication id), the rest, then 1 more: REFUND_AMOUNT_UNAVAILABLE
 *   again     half, then the same refundId under a new refundRequestId (an upstream retry): one refund
 *   declined  a refund of a declined charge: NOT_REFUNDABLE
 */
function planRefunds(plans: readonly ChargePlan[]): RefundPlan[] {
  const out: RefundPlan[] = [];
  const request = (chargeId: string, refundId: string, amount: number, refundRequestId = randomUUID()) =>
    JSON.stringify({
      type: 'RefundRequested',
      refundRequestId,
      refundId,
      chargeId,
      amount,
      requestedAt: new Date().toISOString(),
    });
  const msg = (chargeId: string, body: string, dedupId = randomUUID()) => ({ body, groupId: chargeId, dedupId });
  for (const [i, p] of plans.entries()) {
    const amount = 100 + i;
    const { chargeId, processor } = p;
    if (p.final.includes('AUTHORISATION_REJECTED')) {
      if (i % 20 === 3) {
        out.push({
          chargeId,
          processor,
          sendAt: p.final,
          messages: [msg(chargeId, request(chargeId, `${chargeId}-rf-declined`, amount))],
          accepted: [],
          dead: 'NOT_REFUNDABLE',
        });
      }
      continue;
    }
    if (i % 4 !== 1) continue;
    const kind = (['full', 'partials', 'again'] as const)[Math.floor(i / 4) % 3]!;
    if (kind === 'full') {
      const body = request(chargeId, `${chargeId}-rf-full`, amount);
      out.push({
        chargeId,
        processor,
        sendAt: p.final,
        messages: [msg(chargeId, body), msg(chargeId, body)],
        accepted: [{ refundId: `${chargeId}-rf-full`, amount }],
      });
    } else if (kind === 'partials') {
      const first = Math.floor(amount / 3);
      const b1 = request(chargeId, `${chargeId}-rf-1`, first);
      out.push({
        chargeId,
        processor,
        sendAt: p.final,
        messages: [
          msg(chargeId, b1),
          msg(chargeId, b1),
          msg(chargeId, request(chargeId, `${chargeId}-rf-2`, amount - first)),
          msg(chargeId, request(chargeId, `${chargeId}-rf-over`, 1)),
        ],
        accepted: [
          { refundId: `${chargeId}-rf-1`, amount: first },
          { refundId: `${chargeId}-rf-2`, amount: amount - first },
        ],
        dead: 'REFUND_AMOUNT_UNAVAILABLE',
      });
    } else {
      const half = Math.floor(amount / 2);
      out.push({
        chargeId,
        processor,
        sendAt: p.final,
        messages: [
          msg(chargeId, request(chargeId, `${chargeId}-rf-half`, half)),
          msg(chargeId, request(chargeId, `${chargeId}-rf-half`, half)),
        ],
        accepted: [{ refundId: `${chargeId}-rf-half`, amount: half }],
      });
    }
  }
  return out;
}

function planPayouts(): { payouts: { paymentId: string; final: 'PAID' | 'REJECTED' }[]; messages: OutgoingMessage[] } {
  const payouts: { paymentId: string; final: 'PAID' | 'REJECTED' }[] = [];
  const messages: OutgoingMessage[] = [];
  for (let i = 0; i < PAYOUTS; i++) {
    const paymentId = `po-${i}`;
    const reject = i % 15 === 7;
    payouts.push({ paymentId, final: reject ? 'REJECTED' : 'PAID' });
    const eventId = randomUUID();
    const event = {
      eventType: 'CheckoutApprovalAccepted',
      eventId,
      paymentId,
      amount: 500 + i,
      currency: 'EUR',
      creditor: { name: reject ? `REJECT creditor ${i}` : `Creditor ${i}`, iban: 'EE382200221020145685', bic: 'LHVBEE22' },
      remittanceInformation: `invoice ${i}`,
      approvedAt: new Date().toISOString(),
    };
    const raw = JSON.stringify(event);
    const body = i % 2 === 0 ? raw : JSON.stringify({ Type: 'Notification', MessageId: randomUUID(), TopicArn: 'arn:aws:sns:eu-west-2:000000000000:payment-controls', Message: raw });
    messages.push({ body, groupId: paymentId, dedupId: `${eventId}-a` }, { body, groupId: paymentId, dedupId: `${eventId}-b` });
  }
  return { payouts, messages };
}

/** Bad input of every kind, with the DLQ code each must carry. */
type Queue = 'auth-requests' | 'capture-requests' | 'refund-requests' | 'payout-events';
const QUEUES: readonly Queue[] = ['auth-requests', 'capture-requests', 'refund-requests', 'payout-events'];

function planBad(): { queue: Queue; message: OutgoingMessage; code: string }[] {
  const bad: { queue: Queue; message: OutgoingMessage; code: string }[] = [];
  for (let i = 0; i < 10; i++) {
    const id = `bad-${i}`;
    const base = { type: 'AuthorisationRequested', authRequestId: randomUUID(), chargeId: id, gatewayAccountId: 'gw', processor: 'sandbox', amount: 100, currency: 'GBP', paymentTokenId: 'tok_4242424242424242', reference: 'r', description: 'd', requestedAt: new Date().toISOString() };
    bad.push({ queue: 'auth-requests', message: { body: `{"type":"AuthorisationRequested", ${i}`, groupId: `${id}-json`, dedupId: `${id}-json` }, code: 'INVALID_MESSAGE' });
    bad.push({ queue: 'auth-requests', message: { body: JSON.stringify({ ...base, chargeId: `${id}-schema`, currency: 'XXX1' }), groupId: `${id}-schema`, dedupId: `${id}-schema` }, code: 'INVALID_MESSAGE' });
    bad.push({ queue: 'auth-requests', message: { body: JSON.stringify({ ...base, chargeId: `${id}-proc`, processor: 'acme' }), groupId: `${id}-proc`, dedupId: `${id}-proc` }, code: 'UNKNOWN_PROCESSOR' });
    bad.push({ queue: 'auth-requests', message: { body: JSON.stringify({ ...base, chargeId: `${id}-tok`, paymentTokenId: `tok_expired_${i}` }), groupId: `${id}-tok`, dedupId: `${id}-tok` }, code: 'TOKEN_EXPIRED' });
    bad.push({ queue: 'capture-requests', message: { body: JSON.stringify({ type: 'CaptureRequested', chargeId: `${id}-cap` }), groupId: `${id}-cap`, dedupId: `${id}-cap` }, code: 'INVALID_MESSAGE' });
    const refund = { type: 'RefundRequested', refundRequestId: randomUUID(), refundId: `${id}-rf`, chargeId: `${id}-rf-nocharge`, amount: 100, requestedAt: new Date().toISOString() };
    bad.push({ queue: 'refund-requests', message: { body: JSON.stringify({ ...refund, chargeId: `${id}-rf-schema`, amount: 0 }), groupId: `${id}-rf-schema`, dedupId: `${id}-rf-schema` }, code: 'INVALID_MESSAGE' });
    bad.push({ queue: 'refund-requests', message: { body: JSON.stringify(refund), groupId: `${id}-rf-nocharge`, dedupId: `${id}-rf-nocharge` }, code: 'CHARGE_NOT_FOUND' });
    if (WITH_PAYOUTS) bad.push({ queue: 'payout-events', message: { body: JSON.stringify({ eventType: 'CheckoutApprovalAccepted', paymentId: `${id}-po` }), groupId: `${id}-po`, dedupId: `${id}-po` }, code: 'INVALID_MESSAGE' });
  }
  return bad;
}

describe('the whole fleet under faults and SIGKILL', () => {
  it('keeps every guarantee: final or dead-lettered with a reason, at most one effect, every event once and in order, no card data', async () => {
    const { plans, auth, capture } = planCharges();
    const { payouts, messages: payoutMessages } = planPayouts();
    const bad = planBad();
    const refundPlans = planRefunds(plans);
    const unsentRefunds = new Set(refundPlans);
    const kinds: WorkerName[] = ['auth', 'auth', 'capture', 'capture', 'refund', 'refund', 'ledger', 'ledger', ...(WITH_PAYOUTS ? (['payout', 'payout'] as const) : [])];
    for (const k of kinds) fleet.start(k);
    await Promise.all(fleet.processes.map((p) => p.waitForLine((l) => l.msg === 'worker started', 60_000)));

    const faults = { latencyMs: 5, latencyJitterMs: 40, rate5xx: 0.03, rate429: 0.02, rateTimeoutAfterSuccess: 0.02 };
    sb.stripe.faults.update(faults);
    sb.worldpay.faults.update(faults);
    sb.chase.faults.update(faults);
    sb.tokens.faults.update({ rate5xx: 0.02 });
    sb.lhv.faults.update({ rate5xx: 0.03, rateResetAfterSuccess: 0.05, paths: ['/payment'] });

    const q = (k: Queue) => stack.url(stack.names.queue(k));
    const queueDepths = async () => {
      const depths: number[] = [];
      for (const k of QUEUES) {
        const a = await stack.clients.sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: q(k), AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
        );
        depths.push(Number(a.Attributes?.ApproximateNumberOfMessages), Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible));
      }
      return depths;
    };
    let sent = auth.length + capture.length + payoutMessages.length + bad.length;
    await Promise.all([
      sendAll(stack.clients.sqs, q('auth-requests'), auth),
      sendAll(stack.clients.sqs, q('capture-requests'), capture),
      ...(WITH_PAYOUTS ? [sendAll(stack.clients.sqs, q('payout-events'), payoutMessages)] : []),
      ...bad.map((b) => sendAll(stack.clients.sqs, q(b.queue), [b.message])),
    ]);

    const expected = new Map(plans.map((p) => [p.chargeId, p.final]));
    const acceptedRefunds = refundPlans.flatMap((r) => r.accepted);
    /** Send the refund requests of every charge now in the state they wait for. */
    const sendDueRefunds = async (status: ReadonlyMap<string, string>) => {
      const due = [...unsentRefunds].filter((r) => r.sendAt.includes(status.get(r.chargeId) ?? ''));
      for (const r of due) unsentRefunds.delete(r);
      await Promise.all(due.map((r) => sendAll(stack.clients.sqs, q('refund-requests'), r.messages)));
      sent += due.reduce((n, r) => n + r.messages.length, 0);
    };
    const expectedPayouts = new Map(payouts.map((p) => [p.paymentId, p.final]));
    const progress = async () => {
      const charges = await scanAll<{ chargeId: string; status: string }>(stack, 'charges', 'chargeId, #s', { '#s': 'status' });
      const chargesDone = charges.filter((c) => expected.get(c.chargeId)?.includes(c.status)).length;
      const rows = WITH_PAYOUTS ? await scanAll<{ paymentId: string; status: string }>(stack, 'payouts', 'paymentId, #s', { '#s': 'status' }) : [];
      const payoutsDone = rows.filter((r) => expectedPayouts.get(r.paymentId) === r.status).length;
      const pending = (await scanAll<{ pendingShard?: string }>(stack, 'events', 'pendingShard')).filter((e) => e.pendingShard).length;
      const seen = new Map(charges.map((c) => [c.chargeId, c.status]));
      await sendDueRefunds(seen);
      const refundRows = await scanAll<{ refundId: string; status?: string }>(stack, 'refunds', 'refundId, #s', {
        '#s': 'status',
      });
      const refunded = new Set(refundRows.filter((r) => r.status === 'REFUNDED').map((r) => r.refundId));
      const refundsDone = acceptedRefunds.filter((r) => refunded.has(r.refundId)).length;
      const refundsLeft = unsentRefunds.size;
      const stuck = [...expected]
        .filter(([id, want]) => !want.includes(seen.get(id) ?? ''))
        .slice(0, 8)
        .map(([id, want]) => `${id}:${seen.get(id) ?? 'MISSING'}->${want.join('|')}`);
      const stuckPayouts = [...expectedPayouts]
        .filter(([id, want]) => rows.find((r) => r.paymentId === id)?.status !== want)
        .slice(0, 5)
        .map(([id, want]) => `${id}:${rows.find((r) => r.paymentId === id)?.status ?? 'MISSING'}->${want}`);
      const stuckRefunds = acceptedRefunds
        .filter((r) => !refunded.has(r.refundId))
        .slice(0, 5)
        .map((r) => `${r.refundId}:${refundRows.find((x) => x.refundId === r.refundId)?.status ?? 'MISSING'}`);
      return { chargesDone, payoutsDone, refundsDone, refundsLeft, pending, stuck, stuckPayouts, stuckRefunds };
    };

    let kills = 0;
    let pauses = 0;
    const t0 = Date.now();
    let lastKill = Date.now();
    let state = await progress();
    let nextLog = Date.now() + 15_000;
    const allDone = () =>
      state.chargesDone === CHARGES &&
      state.payoutsDone === PAYOUTS &&
      state.refundsLeft === 0 &&
      state.refundsDone === acceptedRefunds.length &&
      state.pending === 0 &&
      kills >= MIN_KILLS;
    while (!allDone()) {
      if (Date.now() - t0 > TIMEOUT_MS) throw new Error(`not done after ${TIMEOUT_MS} ms: ${JSON.stringify({ ...state, kills })}`);
      await sleep(500);
      if (Date.now() - lastKill > KILL_EVERY_MS && kills < MIN_KILLS * 3) {
        // Every fourth disruption is a pause past the 10 s leases instead of a kill.
        if ((kills + pauses) % 4 === 3) {
          if (fleet.pauseOne(12_000)) pauses++;
        } else if (fleet.killOne()) kills++;
        lastKill = Date.now();
      }
      state = await progress();
      if (Date.now() > nextLog) {
        console.info(`[chaos] t+${Math.round((Date.now() - t0) / 1000)}s ${JSON.stringify({ ...state, kills })}`);
        nextLog = Date.now() + 15_000;
      }
    }
    const busyMs = Date.now() - t0;
    // Heal the network, let duplicates still queued drain, then stop the survivors gracefully.
    for (const s of [sb.stripe, sb.worldpay, sb.chase, sb.tokens, sb.lhv]) s.faults.update({ latencyMs: 0, latencyJitterMs: 0, rate5xx: 0, rate429: 0, rateTimeoutAfterSuccess: 0, rateResetAfterSuccess: 0 });
    await fleet.resumed(); // the last paused worker wakes up and finds its leases gone
    // Let duplicates still queued, and work a woken worker handed back, drain: no message left, visible or in flight.
    await eventually(async () => (await queueDepths()).every((n) => n === 0), 120_000, 'every queue drained');
    await fleet.stopAll();

    // 1. Every message final or dead-lettered with its reason, and nothing else dead-lettered.
    for (const k of QUEUES) {
      expect(await drain(stack.clients.sqs, q(k)), `${k} still holds messages`).toHaveLength(0);
    }
    const dead = new Map<string, string>();
    for (const k of QUEUES) {
      for (const m of await drain(stack.clients.sqs, stack.url(stack.names.dlq(k)))) {
        dead.set(m.MessageAttributes?.[DLQ_ATTRIBUTES.groupId]?.StringValue ?? '?', m.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue ?? '?');
        expect(m.MessageAttributes?.[DLQ_ATTRIBUTES.detail]?.StringValue, 'every dead letter says why').toBeTruthy();
      }
    }
    expect(Object.fromEntries(dead)).toEqual(
      Object.fromEntries([
        ...bad.map((b) => [b.message.groupId, b.code] as const),
        ...refundPlans.flatMap((r) => (r.dead ? [[r.chargeId, r.dead] as const] : [])),
      ]),
    );
    const charges = await scanAll<{ chargeId: string; status: string }>(stack, 'charges', 'chargeId, #s', { '#s': 'status' });
    const actual = new Map(charges.map((c) => [c.chargeId, c.status]));
    for (const [id, final] of expected) expect(final, `${id} ended ${actual.get(id)}`).toContain(actual.get(id));

    // 2. At most one effect per charge and per payout, counted at the sandboxes.
    const stripe = sb.stripe.stats();
    const worldpay = sb.worldpay.stats();
    const chase = sb.chase.stats();
    for (const p of plans) {
      if (p.processor === 'chase') {
        expect(chase.charges[p.chargeId]?.created, `Chase payments of ${p.chargeId}`).toBe(1);
        expect(chase.charges[p.chargeId]?.captured ?? 0, `Chase captures of ${p.chargeId}`).toBe(p.final.includes('CAPTURED') ? 1 : 0);
      }
      if (p.processor === 'stripe') {
        expect(stripe.charges[p.chargeId]?.created, `PaymentIntents of ${p.chargeId}`).toBe(1);
        expect(stripe.charges[p.chargeId]?.captured ?? 0, `Stripe captures of ${p.chargeId}`).toBe(p.final.includes('CAPTURED') ? 1 : 0);
      }
      if (p.processor === 'worldpay') {
        const w = worldpay.byCharge[p.chargeId];
        expect(w?.orders, `Worldpay orders of ${p.chargeId}`).toBe(1);
        expect(w?.captures ?? 0, `Worldpay captures of ${p.chargeId}`).toBe(p.final.includes('CAPTURED') ? 1 : 0);
      }
    }
    // 2b. Refunds: every accepted one REFUNDED and no other refund made; at each processor exactly one
    // refund per accepted refund and never more refunded than captured; the charge carries the sum.
    const refundRows = await scanAll<{ refundId: string; chargeId?: string; status?: string }>(
      stack,
      'refunds',
      'refundId, chargeId, #s',
      { '#s': 'status' },
    );
    expect(Object.fromEntries(refundRows.filter((r) => r.status).map((r) => [r.refundId, r.status]))).toEqual(
      Object.fromEntries(acceptedRefunds.map((r) => [r.refundId, 'REFUNDED'])),
    );
    const refundedAmounts = new Map(
      (await scanAll<{ chargeId: string; refundedAmount?: number }>(stack, 'charges', 'chargeId, refundedAmount')).map((c) => [
        c.chargeId,
        c.refundedAmount ?? 0,
      ]),
    );
    const atProcessor = (r: RefundPlan) =>
      r.processor === 'stripe'
        ? stripe.charges[r.chargeId]
        : r.processor === 'chase'
          ? chase.charges[r.chargeId]
          : r.processor === 'worldpay'
            ? worldpay.byCharge[r.chargeId]
            : undefined;
    for (const r of refundPlans) {
      const sum = r.accepted.reduce((n, a) => n + a.amount, 0);
      expect(refundedAmounts.get(r.chargeId), `refundedAmount of ${r.chargeId}`).toBe(sum);
      const s = atProcessor(r);
      if (r.processor === 'sandbox') continue; // stateless, in-process: nothing to count
      expect(s?.refunds ?? 0, `${r.processor} refunds of ${r.chargeId}`).toBe(r.accepted.length);
      expect(s?.refunded ?? 0, `${r.processor} amount refunded of ${r.chargeId}`).toBe(sum);
    }
    for (const [id, s] of [
      ...Object.entries(stripe.charges),
      ...Object.entries(chase.charges),
      ...Object.entries(worldpay.byCharge),
    ]) {
      expect(s.refunded, `refunded <= captured for ${id}`).toBeLessThanOrEqual(s.capturedAmount);
    }

    if (WITH_PAYOUTS) {
      const bank = sb.lhv.stats();
      const rows = await scanAll<{ paymentId: string; status: string }>(stack, 'payouts', 'paymentId, #s', { '#s': 'status' });
      for (const r of rows) expect(r.status, r.paymentId).toBe(expectedPayouts.get(r.paymentId));
      for (const p of payouts) expect(bank.initiationsPerPaymentId[p.paymentId], `initiations of ${p.paymentId}`).toBe(1);
    }

    // 3. Every committed state change reached the Ledger exactly once after de-dup, in order.
    const outbox = await scanAll<{ resourceId: string; sequence: number; pendingShard?: string }>(stack, 'events', 'resourceId, #q, pendingShard', { '#q': 'sequence' });
    expect(outbox.filter((e) => e.pendingShard)).toHaveLength(0);
    const highest = new Map<string, number>();
    for (const e of outbox) highest.set(e.resourceId, Math.max(highest.get(e.resourceId) ?? 0, e.sequence));
    const ledger = new LedgerConsumer({ sqs: stack.clients.sqs, queueUrl: stack.url(stack.names.queue('ledger-events')) });
    await ledger.drainUntil((c) => c.uniqueCount >= outbox.length, { timeoutMs: 120_000, idleMs: 3000 });
    const report = ledger.report();
    expect(report.invalid).toEqual([]);
    expect(report.mismatches).toEqual([]);
    expect(report.gaps).toEqual([]);
    expect(report.reorders).toEqual([]);
    expect(report.unique).toBe(outbox.length);
    expect(ledger.missingAgainst(highest)).toEqual([]);
    const refundEvents = new Map<string, { type: string; parent?: string }[]>();
    for (const e of ledger.events()) {
      if (e.body.resource_type !== 'refund') continue;
      const list = refundEvents.get(e.body.resource_external_id) ?? [];
      list[e.body.sequence - 1] = {
        type: e.body.event_type,
        ...(e.body.parent_resource_external_id ? { parent: e.body.parent_resource_external_id } : {}),
      };
      refundEvents.set(e.body.resource_external_id, list);
    }
    expect(Object.fromEntries(refundEvents)).toEqual(
      Object.fromEntries(
        refundPlans.flatMap((r) =>
          r.accepted.map((a) => [
            a.refundId,
            ['REFUND_CREATED', 'REFUND_SUBMITTED', 'REFUND_SUCCEEDED'].map((type) => ({ type, parent: r.chargeId })),
          ]),
        ),
      ),
    );


    // 4. No card data in any log line of any process.
    const raw = fleet.raw();
    for (const pan of [SANDBOX_CARDS.approve, SANDBOX_CARDS.decline, '4444333322221111']) expect(raw).not.toContain(pan);
    expect(raw).not.toMatch(/"cvc"\s*:\s*"\d{3,4}"/);

    expect(kills).toBeGreaterThanOrEqual(MIN_KILLS);
    expect(sent).toBeGreaterThanOrEqual(WITH_PAYOUTS ? 2000 : 1500);
    console.info(
      `[chaos] ${sent} messages sent (${CHARGES} charges, ${acceptedRefunds.length} refunds of ${refundPlans.length} charges, ${PAYOUTS} payouts, ${bad.length} bad), ${kills} SIGKILLs, ${pauses} SIGSTOP pauses past the lease, done in ${busyMs} ms; ` +
        `ledger: ${report.unique} events, ${report.duplicates.length} duplicate deliveries; stripe replays ${stripe.totals.replays}; chase replays ${chase.totals.replays}; worldpay duplicate submits ${worldpay.totals.duplicates}`,
    );
  }, 600_000);
});
