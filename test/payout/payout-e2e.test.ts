/**
 * Payout worker end to end on the embedded stack, against the LHV sandbox bank: one worker process,
 * two shards. Each test can fail if its guarantee broke (the sandbox's initiationsPerPaymentId is
 * the oracle for "initiated at most once").
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { toEndToEndId } from '../../workers/payout/lhv/pain001.js';
import type { LhvSandbox } from '../../cli/sandbox/lhv-server.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { drain, eventually, sleep } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import {
  AC01_IBAN,
  allPayouts,
  approval,
  finalPayout,
  readBatch,
  readEvents,
  readPayout,
  sendEvents,
  snsWrapped,
  startBank,
  startPayoutWorker,
  waitReady,
} from './support.js';

let stack: TestStack;
let bank: LhvSandbox;
let worker: WorkerProcess;

beforeAll(async () => {
  stack = await setupTestStack('payout', { payoutShards: 2 });
  bank = await startBank();
  worker = startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '2' });
  await waitReady(worker);
});
afterAll(async () => {
  worker?.kill('SIGTERM');
  await worker?.exited;
  if (process.env.PAYOUT_DEBUG)
    for (const l of worker.lines)
      if (l.level !== 'info' || String(l.msg).includes('stop') || String(l.msg).includes('releas'))
        console.log(JSON.stringify(l).slice(0, 400));
  await bank?.close();
  stack?.close();
});
afterEach(() => {
  bank.faults.reset();
  bank.configure({ duplicateMode: 'replay', responseDelayMs: 100 });
});

/** Every payout the bank saw was initiated exactly once. */
function expectInitiatedOnce(paymentIds: readonly string[]): void {
  const per = bank.stats().initiationsPerPaymentId;
  for (const id of paymentIds) expect(per[toEndToEndId(id)], `initiations of ${id}`).toBe(1);
  expect(Object.values(per).every((n) => n === 1)).toBe(true);
}

const types = async (paymentId: string) => (await readEvents(stack, paymentId)).map((e) => [e.sequence, e.eventType]);

describe('payout worker end to end', () => {
  it('raw and SNS-wrapped CheckoutApprovalAccepted both become PAID with CREATED, INITIATED, PAID', async () => {
    const raw = approval('po-raw');
    const sns = approval('po-sns');
    await sendEvents(stack, [raw, snsWrapped(sns)]);
    for (const id of ['po-raw', 'po-sns']) {
      const p = await finalPayout(stack, id);
      expect(p.status).toBe('PAID');
      expect(p.history.map((h) => h.status)).toEqual(['RECEIVED', 'INITIATION_PENDING', 'INITIATED', 'PAID']);
      expect(p.initiableShard).toBeUndefined();
      expect(p.batchId).toMatch(/^[0-9a-f]{32}$/);
      expect(await types(id)).toEqual([
        [1, 'PAYOUT_CREATED'],
        [2, 'PAYOUT_INITIATED'],
        [3, 'PAYOUT_PAID'],
      ]);
      const events = await readEvents(stack, id);
      expect(events.every((e) => e.resourceType === 'payout')).toBe(true);
      expect(JSON.stringify(events)).not.toContain(raw.creditor.iban);
    }
    expect((await readPayout(stack, 'po-sns'))?.eventId).toBe(sns.eventId);
    expectInitiatedOnce(['po-raw', 'po-sns']);
  });

  it('pain.002 RJCT (closed account, no funds, wrong account) makes payouts REJECTED with PAYOUT_FAILED and the reason', async () => {
    await sendEvents(stack, [
      approval('po-reject', { creditor: { name: 'REJECT me', iban: approval('x').creditor.iban } }),
      approval('po-nofunds', { creditor: { name: 'NOFUNDS Ltd', iban: approval('x').creditor.iban } }),
      approval('po-ac01', { creditor: { name: 'Wrong account', iban: AC01_IBAN } }),
    ]);
    const expected: Record<string, string> = { 'po-reject': 'AC04', 'po-nofunds': 'AM04', 'po-ac01': 'AC01' };
    for (const [id, code] of Object.entries(expected)) {
      const p = await finalPayout(stack, id);
      expect(p.status).toBe('REJECTED');
      expect(p.failure).toMatchObject({ source: 'BANK_REPORT', code });
      expect(p.bankStatus).toBe('RJCT');
      expect(await types(id)).toEqual([
        [1, 'PAYOUT_CREATED'],
        [2, 'PAYOUT_INITIATED'],
        [3, 'PAYOUT_FAILED'],
      ]);
      expect((await readEvents(stack, id))[2]?.details).toMatchObject({ reason_code: code, source: 'BANK_REPORT' });
    }
    expectInitiatedOnce(Object.keys(expected));
  });

  it('a SLOW payout (ACSP, later ACSC) stays INITIATED on the interim report and becomes PAID on the final one', async () => {
    await sendEvents(stack, [approval('po-slow', { creditor: { name: 'SLOW payee', iban: approval('x').creditor.iban } })]);
    await eventually(async () => (await readPayout(stack, 'po-slow'))?.status === 'INITIATED', 20_000, 'po-slow INITIATED');
    const p = await finalPayout(stack, 'po-slow');
    expect(p.status).toBe('PAID');
    expect(await types('po-slow')).toEqual([
      [1, 'PAYOUT_CREATED'],
      [2, 'PAYOUT_INITIATED'],
      [3, 'PAYOUT_PAID'],
    ]);
  });

  it('a duplicate CheckoutApprovalAccepted is acknowledged: one row, one PAYOUT_CREATED; a conflicting one is dead-lettered', async () => {
    const first = approval('po-dup');
    await sendEvents(stack, [first]);
    await finalPayout(stack, 'po-dup');
    // Same payment, new eventId (a redelivery from upstream), raw and wrapped.
    await sendEvents(stack, [{ ...first, eventId: crypto.randomUUID() }, snsWrapped(first)]);
    const conflicting = { ...first, eventId: crypto.randomUUID(), amount: 999_999 };
    await sendEvents(stack, [conflicting]);
    const dlq = stack.url(stack.names.dlq('payout-events'));
    let letters: Awaited<ReturnType<typeof drain>> = [];
    await eventually(
      async () => {
        letters = [...letters, ...(await drain(stack.clients.sqs, dlq))];
        return letters.some((m) => m.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue === 'PAYOUT_CONFLICT');
      },
      20_000,
      'the conflicting event in the DLQ',
    );
    await sleep(500);
    expect((await allPayouts(stack)).filter((p) => p.paymentId === 'po-dup')).toHaveLength(1);
    expect(await types('po-dup')).toEqual([
      [1, 'PAYOUT_CREATED'],
      [2, 'PAYOUT_INITIATED'],
      [3, 'PAYOUT_PAID'],
    ]);
    expect((await readPayout(stack, 'po-dup'))?.amount).toBe(1250);
    expect(
      worker.lines.filter((l) => l.paymentId === 'po-dup' && String(l.msg).startsWith('duplicate CheckoutApprovalAccepted')),
    ).toHaveLength(2);
    expectInitiatedOnce(['po-dup']);
  });

  it('bad input goes to the DLQ as INVALID_MESSAGE with the body kept byte for byte, and creates nothing', async () => {
    const notJson = '{"eventType":"CheckoutApprovalAccepted", nope';
    const badIban = JSON.stringify(approval('po-bad-iban', { creditor: { name: 'X', iban: 'EE000000000000000000' } }));
    const gbp = JSON.stringify(approval('po-gbp', { currency: 'GBP' }));
    const badSns = JSON.stringify({ Type: 'Notification', Message: '{"eventType":' });
    await sendEvents(stack, [notJson, badIban, gbp, badSns], (i) => `bad-${i}`);
    const dlq = stack.url(stack.names.dlq('payout-events'));
    const seen = new Map<string, Record<string, string>>();
    await eventually(
      async () => {
        for (const m of await drain(stack.clients.sqs, dlq)) {
          const attrs: Record<string, string> = {};
          for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) attrs[k] = v.StringValue ?? '';
          seen.set(m.Body ?? '', attrs);
        }
        return [notJson, badIban, gbp, badSns].every((b) => seen.has(b));
      },
      20_000,
      'four dead letters',
    );
    for (const body of [notJson, badIban, gbp, badSns]) expect(seen.get(body)?.[DLQ_ATTRIBUTES.code]).toBe('INVALID_MESSAGE');
    expect(seen.get(badIban)?.[DLQ_ATTRIBUTES.detail]).toContain('creditor.iban');
    expect(seen.get(badIban)?.[DLQ_ATTRIBUTES.detail]).not.toContain('EE000000000000000000');
    expect(seen.get(gbp)?.[DLQ_ATTRIBUTES.detail]).toContain('currency');
    expect(seen.get(badSns)?.[DLQ_ATTRIBUTES.detail]).toContain('SNS Message');
    expect(await readPayout(stack, 'po-bad-iban')).toBeUndefined();
    expect(await readPayout(stack, 'po-gbp')).toBeUndefined();
  });

  it('429/5xx are retried with the SAME idempotency key; one initiation at the bank', async () => {
    bank.faults.update({ rate5xx: 0.5, rate429: 0.5, retryAfterSec: 0, paths: ['/payment'] });
    await sendEvents(stack, [approval('po-retry')]);
    await eventually(
      () => (bank.stats().faultsInjected['5xx'] ?? 0) + (bank.stats().faultsInjected['429'] ?? 0) >= 3,
      20_000,
      'three refused attempts',
    );
    bank.faults.reset();
    const p = await finalPayout(stack, 'po-retry');
    expect(p.status).toBe('PAID');
    const retries = worker.lines.filter((l) => l.batchId === p.batchId && l.sameKey === true);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    // Every attempt of this batch carried its one key: the bank accepted exactly one MsgId for it.
    expect(
      bank
        .initiations()
        .filter((i) => i.endToEndIds.includes('po-retry'))
        .map((i) => i.msgId),
    ).toEqual([p.batchId]);
    expectInitiatedOnce(['po-retry']);
  });

  it('accepted but the 202 was lost (reset / timeout after success): resent with the same key, never initiated twice', async () => {
    // Reports show up late, so only a resend under the same key can settle the batch first.
    bank.configure({ responseDelayMs: 4000 });
    bank.faults.update({ rateResetAfterSuccess: 0.5, rateTimeoutAfterSuccess: 0.5, paths: ['/payment'] });
    await sendEvents(stack, [approval('po-lost-1'), approval('po-lost-2')]);
    await eventually(
      () =>
        bank.stats().initiations >= 1 &&
        (bank.stats().faultsInjected.resetAfterSuccess ?? 0) + (bank.stats().faultsInjected.timeoutAfterSuccess ?? 0) >= 2,
      20_000,
      'lost answers',
    );
    bank.faults.reset();
    // The resend under the stored key is answered with the original Message-Request-Id.
    await eventually(() => bank.stats().duplicatesDeduplicated >= 1, 20_000, 'a resend with the same key');
    for (const id of ['po-lost-1', 'po-lost-2']) expect((await finalPayout(stack, id)).status).toBe('PAID');
    expect(bank.stats().conflictingDuplicates).toBe(0);
    expectInitiatedOnce(['po-lost-1', 'po-lost-2']);
    expect(await types('po-lost-1')).toEqual([
      [1, 'PAYOUT_CREATED'],
      [2, 'PAYOUT_INITIATED'],
      [3, 'PAYOUT_PAID'],
    ]);
  });

  it('a bank that REJECTS a repeated MsgId (DU01): the duplicate report rejects nothing; the original report pays', async () => {
    bank.configure({ duplicateMode: 'reject' });
    bank.faults.update({ rateResetAfterSuccess: 1, paths: ['/payment'] });
    await sendEvents(stack, [approval('po-du01')]);
    await eventually(
      () => bank.stats().initiations >= 1 && (bank.stats().faultsInjected.resetAfterSuccess ?? 0) >= 2,
      20_000,
      'a lost 202 and a repeat',
    );
    bank.faults.reset();
    const p = await finalPayout(stack, 'po-du01');
    expect(p.status).toBe('PAID');
    await eventually(
      async () => ((await readBatch(stack, p.batchId!))?.duplicateReports ?? 0) >= 1,
      20_000,
      'the DU01 report counted',
    );
    expect((await readPayout(stack, 'po-du01'))?.status).toBe('PAID');
    expectInitiatedOnce(['po-du01']);
  });

  it('`payfleet payout <paymentId> --json` shows the status, the batch and the ledger events; an unknown id exits 3', async () => {
    await sendEvents(stack, [approval('po-cli')]);
    const p = await finalPayout(stack, 'po-cli');
    const cli = startProcess('test/payout/cli-entry.ts', ['payout', 'po-cli', '--json'], stack.env);
    expect(await cli.exited).toBe(0);
    const out = JSON.parse(cli.raw()) as {
      payout: Record<string, unknown>;
      batch: Record<string, unknown>;
      events: { eventType: string }[];
    };
    expect(out.payout).toMatchObject({ paymentId: 'po-cli', status: 'PAID', batchId: p.batchId });
    expect((out.payout.creditor as { iban: string }).iban).toMatch(/^\*{4}\w{4}$/);
    expect(out.batch).toMatchObject({ batchId: p.batchId, status: 'INITIATED' });
    expect(out.events.map((e) => e.eventType)).toEqual(['PAYOUT_CREATED', 'PAYOUT_INITIATED', 'PAYOUT_PAID']);
    const missing = startProcess('test/payout/cli-entry.ts', ['payout', 'po-nope'], stack.env);
    expect(await missing.exited).toBe(3);
  });

  it('/metrics reports payouts by status, initiation requests and retries, shards held and the oldest waiting payout', async () => {
    const port = Number((await worker.waitForLine((l) => l.msg === 'ops server listening')).port);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
    expect(value(/^payfleet_payouts_total\{status="PAID"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(5);
    expect(value(/^payfleet_payouts_total\{status="REJECTED"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^payfleet_payout_initiation_requests_total\{outcome="accepted"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(3);
    expect(value(/^payfleet_payout_initiation_retries_total\{code="LHV_OUTCOME_UNKNOWN"[^}]*\} (\d+)/m)).toBeGreaterThanOrEqual(
      1,
    );
    expect(value(/^payfleet_payout_shards_held\{[^}]*\} (\d+)/m)).toBe(2);
    expect(value(/^payfleet_payout_ready\{[^}]*\} (\d+)/m)).toBe(1);
    expect(text).toMatch(/^payfleet_payout_oldest_waiting_seconds\{[^}]*\} [\d.]+$/m);
    const ready = (await (await fetch(`http://127.0.0.1:${port}/health/ready`)).json()) as {
      status: string;
      readyForProcessing: boolean;
      checks: { name: string }[];
    };
    expect(ready).toMatchObject({ status: 'ready', readyForProcessing: true });
    expect(ready.checks.map((c) => c.name).sort()).toEqual([
      'dynamodb:batches',
      'dynamodb:leases',
      'dynamodb:payouts',
      'lhv:heartbeat',
      'lhv:heartbeat-mq',
      'sqs',
    ]);
  });
});
