/**
 * Unit: the `npm start` load driver (cli/demo/driver.ts) sends a charge's refunds only once the
 * Ledger has seen it captured, an over-refund only once the partial before it is taken, and a
 * re-sent refund right behind its first copy (same body, fresh deduplication id). A fake SQS
 * records what was sent; the Ledger's view is a map the test moves forward.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { LoadDriver } from '../../cli/demo/driver.js';
import { planDemo } from '../../cli/demo/load.js';

interface Sent {
  readonly queue: string;
  readonly body: string;
  readonly groupId: string;
  readonly dedupId: string;
}

function fakeSqs(sent: Sent[]): SQSClient {
  return {
    send: async (command: {
      input: {
        QueueUrl: string;
        Entries: { Id: string; MessageBody: string; MessageGroupId: string; MessageDeduplicationId: string }[];
      };
    }) => {
      for (const e of command.input.Entries)
        sent.push({
          queue: command.input.QueueUrl,
          body: e.MessageBody,
          groupId: e.MessageGroupId,
          dedupId: e.MessageDeduplicationId,
        });
      return { Successful: command.input.Entries.map((e) => ({ Id: e.Id, MessageId: `m-${e.Id}` })) };
    },
  } as unknown as SQSClient;
}

describe('LoadDriver: refunds', () => {
  it('waits for the capture (and for the partial before an over-refund), and re-sends a duplicate at once', async () => {
    const plan = planDemo({ charges: 20, payouts: 0 });
    const sent: Sent[] = [];
    // Duration 0: every authorisation and bad message is due at once; refunds depend only on states.
    const driver = new LoadDriver(plan, 0, fakeSqs(sent), (q) => q);
    driver.start();
    const status = new Map<string, string>();
    const refunds = () => sent.filter((s) => s.queue === 'refund-requests');

    await driver.pump((id) => status.get(id));
    expect(refunds()).toEqual([]);

    // Every charge reaches its final state: now the refunds of the captured ones go out, except
    // the over-refunds, whose partial is not taken yet.
    for (const c of plan.charges) status.set(c.chargeId, c.expect.at(-1)!);
    await driver.pump((id) => status.get(id));
    const over = plan.refunds.filter((r) => r.kind === 'over-refund: exceeds');
    expect(over.length).toBeGreaterThan(0);
    const first = plan.refunds.filter((r) => r.kind !== 'over-refund: exceeds');
    expect(new Set(refunds().map((s) => s.body))).toEqual(new Set(first.map((r) => r.body)));
    expect(driver.sent.refunds).toBe(driver.totals.refunds - over.length);

    // A duplicate: the same body twice in its charge's group, right behind each other, two dedup ids.
    for (const r of plan.refunds.filter((x) => x.duplicate)) {
      const copies = refunds().filter((s) => s.body === r.body);
      expect(copies.map((s) => s.groupId)).toEqual([r.chargeId, r.chargeId]);
      expect(new Set(copies.map((s) => s.dedupId)).size).toBe(2);
      expect(refunds().indexOf(copies[1]!)).toBe(refunds().indexOf(copies[0]!) + 1);
    }
    // A charge's refunds leave in plan order.
    for (const c of plan.charges) {
      const planned = first.filter((r) => r.chargeId === c.chargeId && !r.duplicate).map((r) => r.body);
      expect(
        refunds()
          .filter((s) => s.groupId === c.chargeId && planned.includes(s.body))
          .map((s) => s.body),
      ).toEqual(planned);
    }

    // The partials are taken: the over-refunds follow, and everything is out.
    for (const r of over) status.set(r.afterRefund!, 'REFUND_SUBMITTED');
    await driver.pump((id) => status.get(id));
    expect(
      refunds()
        .slice(-over.length)
        .map((s) => s.body),
    ).toEqual(over.map((r) => r.body));
    expect(driver.sent.refunds).toBe(driver.totals.refunds);
  });
});
