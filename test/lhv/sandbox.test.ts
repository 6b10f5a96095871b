import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildPain001, newBatchIdempotencyKey } from '../../workers/payout/lhv/pain001.js';
import type { PayoutInstruction } from '../../workers/payout/lhv/types.js';
import { startLhvSandbox, type LhvSandbox, type LhvSandboxStats } from '../../cli/sandbox/lhv-server.js';

const DEBTOR = { name: 'Payfleet Payouts', iban: 'EE382200221020145685', bic: 'LHVBEE22' };
const IBAN = 'DE89370400440532013000';

const payout = (i: number): PayoutInstruction => ({
  paymentId: `sb-${i}`,
  amount: 100 + i,
  currency: 'EUR',
  creditor: { name: `Payee ${i}`, iban: IBAN },
});

function pain001(n: number, msgId = newBatchIdempotencyKey()): { xml: string; msgId: string } {
  return { xml: buildPain001({ msgId, debtor: DEBTOR, payouts: Array.from({ length: n }, (_, i) => payout(i)) }), msgId };
}

let sandbox: LhvSandbox;
beforeAll(async () => {
  sandbox = await startLhvSandbox();
});
afterAll(() => sandbox.close());
afterEach(async () => {
  await fetch(`${sandbox.url}/__sandbox/faults`, { method: 'DELETE' });
});

async function post(xml: string, key: string | undefined): Promise<{ status: number; body: string; requestId: string | null }> {
  const headers: Record<string, string> = { 'content-type': 'application/xml' };
  if (key !== undefined) headers['x-idempotency-key'] = key;
  const res = await fetch(`${sandbox.url}/payment`, { method: 'POST', headers, body: xml });
  return { status: res.status, body: await res.text(), requestId: res.headers.get('message-request-id') };
}

async function stats(): Promise<LhvSandboxStats> {
  return (await (await fetch(`${sandbox.url}/__sandbox/stats`)).json()) as LhvSandboxStats;
}

describe('LHV sandbox: POST /payment validation (400 with a reason, no effect)', () => {
  const cases: Array<[string, () => { xml: string; key: string | undefined }, RegExp]> = [
    ['invalid XML', () => ({ xml: '<Document><oops>', key: 'k1' }), /malformed XML/],
    [
      'wrong namespace',
      () => {
        const p = pain001(1);
        return { xml: p.xml.replace('pain.001.001.09', 'pain.001.001.03'), key: p.msgId };
      },
      /wrong namespace/,
    ],
    [
      '101 transactions',
      () => {
        const p = pain001(100);
        const extra = /<CdtTrfTxInf>[\s\S]*?<\/CdtTrfTxInf>/.exec(p.xml)?.[0] ?? '';
        return { xml: p.xml.replace('</PmtInf>', `${extra.replaceAll('sb-0', 'sb-x')}\n</PmtInf>`), key: p.msgId };
      },
      /too many transactions: 101 > 100/,
    ],
    [
      'bad IBAN',
      () => {
        const p = pain001(1);
        return { xml: p.xml.replace(IBAN, 'DE00370400440532013000'), key: p.msgId };
      },
      /invalid creditor IBAN \*\*\*\*3000/,
    ],
    [
      'missing X-Idempotency-Key',
      () => {
        const p = pain001(1);
        return { xml: p.xml, key: undefined };
      },
      /X-Idempotency-Key must be present and equal GrpHdr\/MsgId/,
    ],
    [
      'X-Idempotency-Key different from MsgId',
      () => {
        const p = pain001(1);
        return { xml: p.xml, key: 'other' };
      },
      /X-Idempotency-Key/,
    ],
  ];
  for (const [name, make, reason] of cases) {
    it(`rejects ${name}`, async () => {
      const before = await stats();
      const { xml, key } = make();
      const res = await post(xml, key);
      expect(res.status).toBe(400);
      const body = JSON.parse(res.body) as { errors: Array<{ errorCode: string; description: string }> };
      expect(body.errors[0]?.description).toMatch(reason);
      expect(res.body).not.toContain('DE00370400440532013000');
      const after = await stats();
      expect(after.initiations).toBe(before.initiations);
      expect(after.invalidRequests).toBe(before.invalidRequests + 1);
    });
  }
});

describe('LHV sandbox: de-duplication and counting', () => {
  it('answers a repeated MsgId with the original Message-Request-Id and counts no new initiation', async () => {
    const p = pain001(2);
    const first = await post(p.xml, p.msgId);
    expect(first.status).toBe(202);
    expect(first.requestId).toMatch(/^REQ[0-9a-f]{32}$/);
    const again = await post(p.xml, p.msgId);
    expect(again.status).toBe(202);
    expect(again.requestId).toBe(first.requestId);
    // Same MsgId, different content: still de-duplicated, and flagged as a client bug.
    const changed = await post(
      p.xml.replace('>1.00<', '>1.01<').replace(/<CtrlSum>2.01<\/CtrlSum>/g, '<CtrlSum>2.02</CtrlSum>'),
      p.msgId,
    );
    expect(changed.requestId).toBe(first.requestId);
    const s = await stats();
    expect(s.initiationsPerPaymentId['sb-0']).toBe(1);
    expect(s.duplicatesDeduplicated).toBe(2);
    expect(s.conflictingDuplicates).toBe(1);
    const initiations = (await (await fetch(`${sandbox.url}/__sandbox/initiations`)).json()) as Array<{
      msgId: string;
      messageRequestId: string;
    }>;
    expect(initiations.filter((i) => i.msgId === p.msgId)).toHaveLength(1);
  });

  it('counts a payout that appears in two different batches twice (the oracle catches double initiation)', async () => {
    const a = buildPain001({ msgId: newBatchIdempotencyKey(), debtor: DEBTOR, payouts: [{ ...payout(0), paymentId: 'twice' }] });
    const b = buildPain001({ msgId: newBatchIdempotencyKey(), debtor: DEBTOR, payouts: [{ ...payout(0), paymentId: 'twice' }] });
    await post(a, /<MsgId>([^<]+)<\/MsgId>/.exec(a)?.[1]);
    await post(b, /<MsgId>([^<]+)<\/MsgId>/.exec(b)?.[1]);
    expect((await stats()).initiationsPerPaymentId['twice']).toBe(2);
  });
});

describe('LHV sandbox: messages and admin', () => {
  beforeEach(async () => {
    // Earlier tests leave their pain.002s queued: empty the queue so "oldest" and 204 are exact.
    for (;;) {
      const res = await fetch(`${sandbox.url}/messages/next`);
      if (res.status === 204) break;
      await res.text();
      await fetch(`${sandbox.url}/messages/${res.headers.get('message-response-id')}`, { method: 'DELETE' });
    }
  });

  it('GET /messages/next honours Filter-Response-Type and returns the oldest match; 204 when none', async () => {
    const mq = await fetch(`${sandbox.url}/heartbeat/mq`);
    expect(mq.status).toBe(202);
    const hbId = mq.headers.get('message-request-id');
    const p = pain001(1);
    const pay = await post(p.xml, p.msgId);
    const any = await fetch(`${sandbox.url}/messages/next`);
    expect(any.headers.get('message-response-type')).toBe('HEARTBEAT');
    expect(any.headers.get('message-request-id')).toBe(hbId);
    const payment = await fetch(`${sandbox.url}/messages/next`, { headers: { 'filter-response-type': 'PAYMENT' } });
    expect(payment.status).toBe(200);
    expect(payment.headers.get('message-request-id')).toBe(pay.requestId);
    expect(payment.headers.get('message-response-id')).toMatch(/^RES/);
    expect(await payment.text()).toContain(p.msgId);
    for (const r of [any, payment])
      expect((await fetch(`${sandbox.url}/messages/${r.headers.get('message-response-id')}`, { method: 'DELETE' })).status).toBe(
        200,
      );
    expect((await fetch(`${sandbox.url}/messages/next`, { headers: { 'filter-response-type': 'PAYMENT' } })).status).toBe(204);
    expect((await fetch(`${sandbox.url}/messages/RESnope`, { method: 'DELETE' })).status).toBe(404);
  });

  it('POST /__sandbox/faults changes faults and the response delay at run time; bad configs are 400', async () => {
    const set = await fetch(`${sandbox.url}/__sandbox/faults`, {
      method: 'POST',
      body: JSON.stringify({ rate429: 1, paths: ['/payment'], responseDelayMs: 60_000 }),
    });
    expect(set.status).toBe(200);
    expect(((await set.json()) as { config: { rate429: number; responseDelayMs: number } }).config).toMatchObject({
      rate429: 1,
      responseDelayMs: 60_000,
    });
    const p = pain001(1);
    expect((await post(p.xml, p.msgId)).status).toBe(429);
    expect((await fetch(`${sandbox.url}/heartbeat`)).status).toBe(200); // path filter
    await fetch(`${sandbox.url}/__sandbox/faults`, { method: 'POST', body: JSON.stringify({ rate429: 0 }) });
    expect((await post(p.xml, p.msgId)).status).toBe(202);
    // Accepted, but the pain.002 is not visible for a minute.
    expect((await fetch(`${sandbox.url}/messages/next`, { headers: { 'filter-response-type': 'PAYMENT' } })).status).toBe(204);
    expect(
      (await fetch(`${sandbox.url}/__sandbox/faults`, { method: 'POST', body: JSON.stringify({ rate5xx: 2 }) })).status,
    ).toBe(400);
    expect(
      (await fetch(`${sandbox.url}/__sandbox/faults`, { method: 'POST', body: JSON.stringify({ responseDelayMs: -1 }) })).status,
    ).toBe(400);
    sandbox.configure({ responseDelayMs: 0 });
  });

  it('fault rules: per method and path prefix, first match wins over the top-level rates; pending and deleted messages by type', async () => {
    // GET /messages/next and DELETE /messages/{id} share the prefix /messages: only a method tells them apart.
    const set = await fetch(`${sandbox.url}/__sandbox/faults`, {
      method: 'POST',
      body: JSON.stringify({
        rate5xx: 1,
        paths: ['/heartbeat'],
        rules: [
          { method: 'get', paths: ['/messages/next'], rate5xx: 1 },
          { method: 'DELETE', paths: ['/messages/'], rateResetAfterSuccess: 1 },
          { paths: ['/heartbeat/mq'], rate5xx: 0 },
        ],
      }),
    });
    expect(set.status).toBe(200);
    const before = await stats();
    // The rule without a method beats the top-level rate5xx for /heartbeat/mq; /heartbeat keeps it.
    const mq = await fetch(`${sandbox.url}/heartbeat/mq`);
    expect(mq.status).toBe(202);
    expect((await fetch(`${sandbox.url}/heartbeat`)).status).toBe(500);
    expect((await fetch(`${sandbox.url}/messages/next`)).status).toBe(500);
    // (An earlier test's PAYMENT report is still queued, invisible for a minute.)
    expect((await stats()).pendingMessagesByType['HEARTBEAT']).toBe(1);
    // Find the message id without faults on reads, then DELETE: it is deleted, but the answer is lost.
    await fetch(`${sandbox.url}/__sandbox/faults`, {
      method: 'POST',
      body: JSON.stringify({ rules: [{ method: 'DELETE', paths: ['/messages/'], rateResetAfterSuccess: 1 }] }),
    });
    const next = await fetch(`${sandbox.url}/messages/next`);
    expect(next.headers.get('message-request-id')).toBe(mq.headers.get('message-request-id'));
    const id = next.headers.get('message-response-id');
    await expect(fetch(`${sandbox.url}/messages/${id}`, { method: 'DELETE' })).rejects.toThrow();
    const after = await stats();
    expect(after.pendingMessagesByType['HEARTBEAT']).toBeUndefined();
    expect(after.messagesDeletedByType['HEARTBEAT']).toBe((before.messagesDeletedByType['HEARTBEAT'] ?? 0) + 1);
    expect(after.faultsInjected['resetAfterSuccess']).toBe((before.faultsInjected['resetAfterSuccess'] ?? 0) + 1);
    // The repeated DELETE of a message whose first DELETE answer was lost: 404, already gone.
    await fetch(`${sandbox.url}/__sandbox/faults`, { method: 'DELETE' });
    expect((await fetch(`${sandbox.url}/messages/${id}`, { method: 'DELETE' })).status).toBe(404);
    // A rule whose rates add up to more than 1 is refused.
    expect(
      (
        await fetch(`${sandbox.url}/__sandbox/faults`, {
          method: 'POST',
          body: JSON.stringify({ rules: [{ paths: ['/payment'], rate5xx: 0.6, rateReset: 0.6 }] }),
        })
      ).status,
    ).toBe(400);
  });

  it('counts requests by route and injected faults', async () => {
    const before = await stats();
    await fetch(`${sandbox.url}/__sandbox/faults`, {
      method: 'POST',
      body: JSON.stringify({ rate5xx: 1, status5xx: 503, paths: ['/heartbeat'] }),
    });
    expect((await fetch(`${sandbox.url}/heartbeat`)).status).toBe(503);
    const after = await stats();
    expect(after.byRoute['GET /heartbeat']).toBe((before.byRoute['GET /heartbeat'] ?? 0) + 1);
    expect(after.faultsInjected['5xx']).toBe((before.faultsInjected['5xx'] ?? 0) + 1);
    expect(after.requests).toBe(before.requests + 1);
  });
});
