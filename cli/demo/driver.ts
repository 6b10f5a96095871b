/**
 * Sends the demo load as upstream systems would: authorisation requests and payout events spread
 * over `--duration`, bad messages among them, and a capture request for each charge that is to be
 * captured once the Ledger has seen it authorised (upstream only asks for a capture after the
 * service approved the charge), and the refunds of a charge once the Ledger has seen it captured. Some requests are sent twice with a fresh deduplication id, the
 * way an upstream re-sends after SQS's five-minute window: the fleet must not act twice.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { QueueKey } from '../../shared/resources.js';
import { sendInOrder } from '../commands/send.js';
import { authBody, captureBody, type DemoPlan } from './load.js';

/** A message due `at` ms after the load started. */
interface Scheduled {
  readonly at: number;
  readonly queue: QueueKey;
  readonly body: string;
  readonly groupId: string;
  readonly dedupId: string;
  readonly counts: 'auth' | 'payouts' | 'bad';
}

interface Outgoing {
  readonly body: string;
  readonly groupId: string;
  readonly dedupId: string;
}

/** Re-sends come this long after the first copy. */
const RESEND_AFTER_MS = 1500;

function schedule(plan: DemoPlan, durationMs: number): Scheduled[] {
  const items: Scheduled[] = [];
  // The last 15 % of the window is left for the re-sends and the captures of late authorisations.
  const spread = (i: number, n: number) => Math.round((i / Math.max(1, n)) * durationMs * 0.85);
  const add = (at: number, queue: QueueKey, m: Outgoing, counts: Scheduled['counts'], resend: boolean) => {
    items.push({ at, queue, ...m, counts });
    if (resend) items.push({ at: at + RESEND_AFTER_MS, queue, ...m, dedupId: `${m.dedupId}-resend`, counts });
  };
  plan.charges.forEach((c, i) => {
    const body = authBody({
      chargeId: c.chargeId,
      processor: c.processor,
      token: c.token,
      amount: c.amount,
      currency: c.currency,
    });
    const m = { body: JSON.stringify(body), groupId: c.chargeId, dedupId: body.authRequestId };
    add(spread(i, plan.charges.length), 'auth-requests', m, 'auth', c.duplicate);
  });
  const upfront = plan.bad.filter((b) => !b.after);
  upfront.forEach((b, i) => {
    add(
      spread(i + 0.5, upfront.length),
      b.queue,
      { body: b.body, groupId: b.groupId, dedupId: `${b.groupId}-${i}` },
      'bad',
      false,
    );
  });
  plan.payouts.forEach((p, i) => {
    add(
      spread(i, plan.payouts.length),
      'payout-events',
      { body: p.body, groupId: p.paymentId, dedupId: p.eventId },
      'payouts',
      p.duplicate,
    );
  });
  return items.sort((a, b) => a.at - b.at);
}

export class LoadDriver {
  readonly sent = { auth: 0, captures: 0, refunds: 0, payouts: 0, bad: 0 };
  readonly totals: {
    readonly auth: number;
    readonly captures: number;
    readonly refunds: number;
    readonly payouts: number;
    readonly bad: number;
  };
  private readonly items: Scheduled[];
  private next = 0;
  private startedAt = 0;
  private readonly captured = new Set<string>();
  private readonly laterSent = new Set<string>();
  private readonly refundsSent = new Set<string>();

  constructor(
    private readonly plan: DemoPlan,
    durationMs: number,
    private readonly sqs: SQSClient,
    private readonly queueUrl: (queue: QueueKey) => string,
  ) {
    this.items = schedule(plan, durationMs);
    this.totals = {
      auth: this.items.filter((i) => i.counts === 'auth').length,
      payouts: this.items.filter((i) => i.counts === 'payouts').length,
      bad: plan.bad.length,
      captures: plan.charges.filter((c) => c.capture).reduce((n, c) => n + (c.duplicate ? 2 : 1), 0),
      refunds: plan.refunds.reduce((n, r) => n + (r.duplicate ? 2 : 1), 0),
    };
  }

  start(): void {
    this.startedAt = Date.now();
  }

  /** Requests sent a second time with a fresh deduplication id, so far. */
  get resent(): { readonly auth: number; readonly captures: number; readonly refunds: number; readonly payouts: number } {
    const out = this.items.slice(0, this.next).filter((i) => i.dedupId.endsWith('-resend'));
    return {
      auth: out.filter((i) => i.counts === 'auth').length,
      payouts: out.filter((i) => i.counts === 'payouts').length,
      captures: this.plan.charges.filter((c) => c.capture && c.duplicate && this.captured.has(c.chargeId)).length,
      refunds: this.plan.refunds.filter((r) => r.duplicate && this.refundsSent.has(r.refundId)).length,
    };
  }

  /** Share of the scheduled messages sent so far, 0..1. */
  get progress(): number {
    return this.next / Math.max(1, this.items.length);
  }

  /** Every scheduled message and every bad message that waits for a charge state is out. */
  get allSent(): boolean {
    return (
      this.next >= this.items.length &&
      this.laterSent.size === this.plan.bad.filter((b) => b.after).length &&
      this.refundsSent.size === this.plan.refunds.length
    );
  }

  /** Send what is due, and the captures (and late bad messages) whose charge reached its state. */
  async pump(statusOf: (resourceId: string) => string | undefined): Promise<void> {
    const due: Scheduled[] = [];
    while (this.next < this.items.length && this.items[this.next]!.at <= Date.now() - this.startedAt)
      due.push(this.items[this.next++]!);
    for (const q of ['auth-requests', 'payout-events', 'capture-requests'] as const) {
      await this.send(
        q,
        due.filter((d) => d.queue === q),
      );
    }
    for (const d of due) this.sent[d.counts]++;

    const captures: Outgoing[] = [];
    for (const c of this.plan.charges) {
      if (!c.capture || this.captured.has(c.chargeId) || statusOf(c.chargeId) !== 'AUTHORISATION_SUCCESS') continue;
      this.captured.add(c.chargeId);
      const body = captureBody(c.chargeId);
      captures.push({ body: JSON.stringify(body), groupId: c.chargeId, dedupId: body.captureRequestId });
      if (c.duplicate)
        captures.push({ body: JSON.stringify(body), groupId: c.chargeId, dedupId: `${body.captureRequestId}-resend` });
    }
    await this.send('capture-requests', captures);
    this.sent.captures += captures.length;

    const later = this.plan.bad.filter(
      (b) => b.after && !this.laterSent.has(b.label) && statusOf(b.after.chargeId) === b.after.status,
    );
    await this.send(
      'capture-requests',
      later.map((b) => ({ body: b.body, groupId: b.groupId, dedupId: `${b.groupId}-late` })),
    );
    for (const b of later) this.laterSent.add(b.label);
    this.sent.bad += later.length;

    await this.sendRefunds(statusOf);
  }

  /**
   * The refunds whose charge the Ledger has seen captured (and whose earlier refund, for an
   * over-refund, is taken), a charge's in plan order in one batch of its group. A duplicate goes
   * out right behind its first copy under a fresh deduplication id, the same refundRequestId.
   */
  private async sendRefunds(statusOf: (resourceId: string) => string | undefined): Promise<void> {
    const taken = new Set(['REFUND_SUBMITTED', 'REFUNDED']);
    const refunds: Outgoing[] = [];
    for (const r of this.plan.refunds) {
      if (this.refundsSent.has(r.refundId)) continue;
      if (!r.whenCharge.includes(statusOf(r.chargeId) as never)) continue;
      if (r.afterRefund && !taken.has(statusOf(r.afterRefund) ?? '')) continue;
      this.refundsSent.add(r.refundId);
      refunds.push({ body: r.body, groupId: r.chargeId, dedupId: r.refundRequestId });
      if (r.duplicate) refunds.push({ body: r.body, groupId: r.chargeId, dedupId: `${r.refundRequestId}-resend` });
    }
    await this.send('refund-requests', refunds);
    this.sent.refunds += refunds.length;
  }

  private async send(queue: QueueKey, batch: readonly Outgoing[]): Promise<void> {
    if (batch.length === 0) return;
    const r = await sendInOrder(
      this.sqs,
      this.queueUrl(queue),
      batch.map((b, i) => ({ line: i + 1, ...b })),
    );
    if (r.failed.length > 0) throw new Error(`SQS refused demo messages on ${queue}: ${r.failed[0]!.problem}`);
  }
}
