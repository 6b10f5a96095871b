/**
 * The Stripe fake's refunds (stripe-server.ts routes to this):
 *
 *   POST /v1/refunds                     payment_intent, amount (default: what is left), metadata[...]
 *   GET  /v1/refunds/{id}
 *   GET  /v1/refunds?payment_intent=     newest first, `limit`, `starting_after`
 *
 * As Stripe: only a PaymentIntent that `succeeded` (was captured) can be refunded (400
 * `payment_intent_unexpected_state` otherwise, 404 `resource_missing` for an unknown one); the sum of
 * its refunds that did not fail never exceeds `amount_received` (400 `amount_too_large`, or
 * `charge_already_refunded` once nothing is left). Idempotency is the server's (same key, same
 * parameters: replayed; other parameters: 400 `idempotency_error`).
 *
 * Stripe's refund test cards decide how a refund ends: a PaymentIntent paid with 4000000000007726 has
 * refunds that are `pending` and become `succeeded`; with 4000000000005126 they are `pending` and become
 * `failed` (Stripe shows `succeeded` first; the fake skips that step). They settle `refundSettleMs`
 * after creation (read lazily), or at once on `settleRefunds()` / `POST /__sandbox/refunds/settle`.
 */
import { randomBytes } from 'node:crypto';

/** Card numbers whose refunds are asynchronous, as in Stripe's testing docs. */
export const STRIPE_REFUND_TEST_CARDS = Object.freeze({
  /** Refunds are `pending`, then `succeeded`. */
  pendingThenSucceeded: '4000000000007726',
  /** Refunds are `pending`, then `failed` (`expired_or_canceled_card`). */
  pendingThenFailed: '4000000000005126',
});

/** What the refund book needs to know of a PaymentIntent. */
export interface RefundableIntent {
  readonly id: string;
  readonly status: string;
  readonly currency: string;
  readonly amount_received?: unknown;
  readonly latest_charge?: unknown;
  readonly metadata: Record<string, string>;
}

type Answer = { status: number; body: unknown };
type Refund = {
  id: string;
  object: 'refund';
  amount: number;
  currency: string;
  status: 'pending' | 'succeeded' | 'failed' | 'canceled';
  payment_intent: string;
  charge: unknown;
  created: number;
  failure_reason: string | null;
  metadata: Record<string, string>;
  reason: null;
};
type Settle = { at: number; to: 'succeeded' | 'failed' };

export interface StripeRefundBook {
  /** Remember how the refunds of an intent end (from its card), at creation. */
  noteCard(intentId: string, number: string): void;
  create(p: URLSearchParams): Answer;
  retrieve(id: string): Answer;
  list(p: URLSearchParams): Answer;
  /** Settle every pending refund now. */
  settleAll(): number;
  /** Refunds created, and the amount refunded (refunds not failed), per metadata[chargeId] of their intent. */
  byCharge(): Map<string, { refunds: number; refunded: number }>;
  reset(): void;
}

export function createStripeRefundBook(options: {
  readonly intent: (id: string) => RefundableIntent | undefined;
  /** @default 100 */
  readonly settleMs?: number;
}): StripeRefundBook {
  const settleMs = options.settleMs ?? 100;
  let refunds = new Map<string, Refund>();
  let pending = new Map<string, Settle>();
  let asyncIntents = new Map<string, 'succeeded' | 'failed'>();

  const settle = (r: Refund, now: number, force = false) => {
    const s = pending.get(r.id);
    if (!s || (!force && now < s.at)) return;
    pending.delete(r.id);
    r.status = s.to;
    if (s.to === 'failed') r.failure_reason = 'expired_or_canceled_card';
  };
  const settleDue = () => {
    const now = Date.now();
    for (const id of pending.keys()) {
      const r = refunds.get(id);
      if (r) settle(r, now);
    }
  };
  const ofIntent = (piId: string) => [...refunds.values()].filter((r) => r.payment_intent === piId);

  return {
    noteCard(intentId, number) {
      if (number === STRIPE_REFUND_TEST_CARDS.pendingThenSucceeded) asyncIntents.set(intentId, 'succeeded');
      if (number === STRIPE_REFUND_TEST_CARDS.pendingThenFailed) asyncIntents.set(intentId, 'failed');
    },

    create(p) {
      const piId = p.get('payment_intent') ?? '';
      const pi = options.intent(piId);
      if (!pi) return { status: 404, body: invalid(`No such payment_intent: '${piId}'`, 'resource_missing', 'payment_intent') };
      if (pi.status !== 'succeeded')
        return {
          status: 400,
          body: invalid(
            `This PaymentIntent (${piId}) does not have a successful charge to refund; its status is ${pi.status}.`,
            'payment_intent_unexpected_state',
            'payment_intent',
          ),
        };
      settleDue();
      const received = Number(pi.amount_received ?? 0);
      const taken = ofIntent(piId)
        .filter((r) => r.status === 'pending' || r.status === 'succeeded')
        .reduce((sum, r) => sum + r.amount, 0);
      const left = received - taken;
      if (left <= 0)
        return {
          status: 400,
          body: invalid(`Charge ${String(pi.latest_charge)} has already been refunded.`, 'charge_already_refunded'),
        };
      const amount = p.has('amount') ? Number(p.get('amount')) : left;
      if (amount > left)
        return {
          status: 400,
          body: invalid(
            `Refund amount (${amount}) is greater than unrefunded amount on charge (${left})`,
            'amount_too_large',
            'amount',
          ),
        };
      const metadata: Record<string, string> = {};
      for (const [k, v] of p) {
        const m = /^metadata\[(.+)\]$/.exec(k);
        if (m?.[1]) metadata[m[1]] = v;
      }
      const to = asyncIntents.get(piId);
      const r: Refund = {
        id: `re_${randomBytes(12).toString('hex')}`,
        object: 'refund',
        amount,
        currency: pi.currency,
        status: to ? 'pending' : 'succeeded',
        payment_intent: piId,
        charge: pi.latest_charge ?? null,
        created: Math.floor(Date.now() / 1000),
        failure_reason: null,
        metadata,
        reason: null,
      };
      refunds.set(r.id, r);
      if (to) pending.set(r.id, { at: Date.now() + settleMs, to });
      return { status: 200, body: { ...r } };
    },

    retrieve(id) {
      const r = refunds.get(id);
      if (!r) return { status: 404, body: invalid(`No such refund: '${id}'`, 'resource_missing', 'id') };
      settle(r, Date.now());
      return { status: 200, body: { ...r } };
    },

    list(p) {
      settleDue();
      const piId = p.get('payment_intent');
      const limit = Math.min(100, Math.max(1, Number(p.get('limit') ?? 10) || 10));
      let all = [...refunds.values()]
        .filter((r) => piId === null || r.payment_intent === piId)
        .sort((a, b) => b.created - a.created);
      const after = p.get('starting_after');
      if (after) {
        const i = all.findIndex((r) => r.id === after);
        all = i === -1 ? [] : all.slice(i + 1);
      }
      const data = all.slice(0, limit).map((r) => ({ ...r }));
      return { status: 200, body: { object: 'list', data, has_more: all.length > limit, url: '/v1/refunds' } };
    },

    settleAll() {
      let n = 0;
      for (const id of [...pending.keys()]) {
        const r = refunds.get(id);
        if (r) {
          settle(r, Date.now(), true);
          n += 1;
        }
      }
      return n;
    },

    byCharge() {
      settleDue();
      const out = new Map<string, { refunds: number; refunded: number }>();
      for (const r of refunds.values()) {
        const chargeId = options.intent(r.payment_intent)?.metadata.chargeId;
        if (chargeId === undefined) continue;
        const s = out.get(chargeId) ?? { refunds: 0, refunded: 0 };
        s.refunds += 1;
        if (r.status === 'pending' || r.status === 'succeeded') s.refunded += r.amount;
        out.set(chargeId, s);
      }
      return out;
    },

    reset() {
      refunds = new Map();
      pending = new Map();
      asyncIntents = new Map();
    },
  };
}

function invalid(message: string, code?: string, param?: string) {
  return { error: { type: 'invalid_request_error', message, ...(code ? { code } : {}), ...(param ? { param } : {}) } };
}
