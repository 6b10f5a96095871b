import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AmbiguousError, ConfigError, RetryableError, TerminalError } from '../../shared/errors.js';
import { createLhvClient, type LhvClient } from '../../workers/payout/lhv/client.js';
import { buildPain001, newBatchIdempotencyKey } from '../../workers/payout/lhv/pain001.js';
import { isDuplicateRejection, parsePain002 } from '../../workers/payout/lhv/pain002.js';
import { LhvRequestRejectedError, type PayoutInstruction } from '../../workers/payout/lhv/types.js';
import { startLhvSandbox, type LhvSandbox } from '../../cli/sandbox/lhv-server.js';

const DEBTOR = { name: 'Payfleet Payouts', iban: 'EE382200221020145685', bic: 'LHVBEE22' };
const IBAN = 'DE89370400440532013000';

function payout(paymentId: string, name = `Creditor ${paymentId}`, iban = IBAN): PayoutInstruction {
  return { paymentId, amount: 1250, currency: 'EUR', creditor: { name, iban }, remittanceInformation: `payout ${paymentId}` };
}

function batchXml(payouts: PayoutInstruction[], msgId = newBatchIdempotencyKey()): { xml: string; key: string } {
  return { xml: buildPain001({ msgId, debtor: DEBTOR, payouts }), key: msgId };
}

/** A valid IBAN for `country` + `bban` (ISO 7064 mod 97-10 check digits). */
function makeIban(country: string, bban: string): string {
  const digits = (bban + country + '00').replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let rem = 0;
  for (const d of digits) rem = (rem * 10 + Number(d)) % 97;
  return `${country}${String(98 - rem).padStart(2, '0')}${bban}`;
}

async function expectError<T extends Error>(p: Promise<unknown>, type: new (...args: never[]) => T): Promise<T> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(type);
  return err as T;
}

async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

let sandbox: LhvSandbox;
let client: LhvClient;

beforeAll(async () => {
  sandbox = await startLhvSandbox();
  client = createLhvClient({ baseUrl: sandbox.url, timeoutMs: 1000, maxConnections: 4 });
});
afterAll(async () => {
  await client.close();
  await sandbox.close();
});
afterEach(async () => {
  sandbox.faults.reset();
  sandbox.configure({ responseDelayMs: 0, followUpDelayMs: 1000 });
  // Leave the queue empty for the next test.
  for (let m = await client.nextMessage({}); m; m = await client.nextMessage({})) await client.deleteMessage(m.messageResponseId);
});

describe('LhvClient against the sandbox', () => {
  it('heartbeat: 2xx resolves; an injected 503 is a RetryableError', async () => {
    await client.heartbeat();
    sandbox.faults.update({ rate5xx: 1, status5xx: 503, paths: ['/heartbeat'] });
    const err = await expectError(client.heartbeat(), RetryableError);
    expect(err.code).toBe('LHV_UNAVAILABLE');
  });

  it('heartbeat/mq: 202 id is the Message-Request-Id of a HEARTBEAT message on /messages/next', async () => {
    const { messageRequestId } = await client.heartbeatMq();
    expect(await client.nextMessage({ responseType: 'PAYMENT' })).toBeUndefined();
    const msg = await client.nextMessage({ responseType: 'HEARTBEAT' });
    expect(msg?.messageRequestId).toBe(messageRequestId);
    expect(msg?.responseType).toBe('HEARTBEAT');
    expect(msg?.body).toContain('<HeartBeatResponse>');
    const viaPost = createLhvClient({ baseUrl: sandbox.url, timeoutMs: 1000, maxConnections: 1, heartbeatMqMethod: 'POST' });
    const before = sandbox.stats().byRoute['POST /heartbeat/mq'] ?? 0;
    await viaPost.heartbeatMq();
    expect(sandbox.stats().byRoute['POST /heartbeat/mq']).toBe(before + 1);
    await viaPost.close();
  });

  it('initiatePayment: 202 with the id the bank recorded; one initiation per payout', async () => {
    const { xml, key } = batchXml([payout('init-1'), payout('init-2')]);
    const { messageRequestId } = await client.initiatePayment(xml, key);
    const rec = sandbox.initiations().find((i) => i.msgId === key);
    expect(rec?.messageRequestId).toBe(messageRequestId);
    expect(rec?.endToEndIds).toEqual(['init-1', 'init-2']);
    expect(sandbox.stats().initiationsPerPaymentId).toMatchObject({ 'init-1': 1, 'init-2': 1 });
  });

  it('a repeated MsgId is de-duplicated: same Message-Request-Id, counted once, one response message', async () => {
    const before = sandbox.stats();
    const { xml, key } = batchXml([payout('dup-1')]);
    const first = await client.initiatePayment(xml, key);
    const second = await client.initiatePayment(xml, key);
    expect(second.messageRequestId).toBe(first.messageRequestId);
    const after = sandbox.stats();
    expect(after.initiationsPerPaymentId['dup-1']).toBe(1);
    expect(after.initiations - before.initiations).toBe(1);
    expect(after.duplicatesDeduplicated - before.duplicatesDeduplicated).toBe(1);
    expect(after.messagesQueued - before.messagesQueued).toBe(1);
  });

  it('429 is a RetryableError with Retry-After; 5xx is a RetryableError; neither initiates', async () => {
    const { xml, key } = batchXml([payout('thr-1')]);
    sandbox.faults.update({ rate429: 1, retryAfterSec: 2, paths: ['/payment'] });
    const throttled = await expectError(client.initiatePayment(xml, key), RetryableError);
    expect(throttled.code).toBe('LHV_THROTTLED');
    expect(throttled.retryAfterMs).toBe(2000);
    sandbox.faults.update({ rate429: 0, rate5xx: 1, status5xx: 502 });
    const unavailable = await expectError(client.initiatePayment(xml, key), RetryableError);
    expect(unavailable.code).toBe('LHV_UNAVAILABLE');
    expect(unavailable).not.toBeInstanceOf(AmbiguousError);
    expect(sandbox.stats().initiationsPerPaymentId['thr-1']).toBeUndefined();
    sandbox.faults.reset();
    await client.initiatePayment(xml, key);
    expect(sandbox.stats().initiationsPerPaymentId['thr-1']).toBe(1);
  });

  it('202 lost (socket reset after accepting) is an AmbiguousError; a retry with the same key initiates once', async () => {
    const { xml, key } = batchXml([payout('lost-1'), payout('lost-2')]);
    sandbox.faults.update({ rateResetAfterSuccess: 1, paths: ['/payment'] });
    const err = await expectError(client.initiatePayment(xml, key), AmbiguousError);
    expect(err.code).toBe('LHV_OUTCOME_UNKNOWN');
    // The bank did act on it.
    expect(sandbox.stats().initiationsPerPaymentId['lost-1']).toBe(1);
    sandbox.faults.reset();
    const retry = await client.initiatePayment(xml, key);
    expect(retry.messageRequestId).toBe(sandbox.initiations().find((i) => i.msgId === key)?.messageRequestId);
    expect(sandbox.stats().initiationsPerPaymentId).toMatchObject({ 'lost-1': 1, 'lost-2': 1 });
  });

  it("a bank that rejects duplicates (duplicateMode 'reject'): the retry gets a DU01 report, the original outcome still arrives", async () => {
    sandbox.configure({ duplicateMode: 'reject' });
    try {
      const { xml, key } = batchXml([payout('dj-1')]);
      sandbox.faults.update({ rateResetAfterSuccess: 1, paths: ['/payment'] });
      await expectError(client.initiatePayment(xml, key), AmbiguousError);
      sandbox.faults.reset();
      const retry = await client.initiatePayment(xml, key);
      const original = sandbox.initiations().find((i) => i.msgId === key)?.messageRequestId;
      expect(retry.messageRequestId).not.toBe(original);
      expect(sandbox.stats().initiationsPerPaymentId['dj-1']).toBe(1);
      const reports = [];
      for (
        let m = await client.nextMessage({ responseType: 'PAYMENT' });
        m;
        m = await client.nextMessage({ responseType: 'PAYMENT' })
      ) {
        reports.push({ requestId: m.messageRequestId, report: parsePain002(m.body) });
        await client.deleteMessage(m.messageResponseId);
      }
      expect(reports.map((r) => r.report.originalMsgId)).toEqual([key, key]);
      const dup = reports.find((r) => r.requestId === retry.messageRequestId);
      expect(dup && isDuplicateRejection(dup.report)).toBe(true);
      expect(dup?.report.transactions).toEqual([]);
      const real = reports.find((r) => r.requestId === original);
      expect(real && isDuplicateRejection(real.report)).toBe(false);
      expect(real?.report.transactions).toEqual([{ endToEndId: 'dj-1', instrId: 'dj-1', status: 'ACSC' }]);
    } finally {
      sandbox.configure({ duplicateMode: 'replay' });
    }
  });

  it('202 never sent (hang after accepting) times out as an AmbiguousError; the retry initiates once', async () => {
    const { xml, key } = batchXml([payout('hang-1')]);
    sandbox.faults.update({ rateTimeoutAfterSuccess: 1, paths: ['/payment'] });
    const started = Date.now();
    const err = await expectError(client.initiatePayment(xml, key), AmbiguousError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(err.message).toMatch(/timeout after 1000 ms/);
    sandbox.faults.reset();
    await client.initiatePayment(xml, key);
    expect(sandbox.stats().initiationsPerPaymentId['hang-1']).toBe(1);
  });

  it('a caller abort while the POST is in flight is ambiguous; an abort before sending sends nothing', async () => {
    const { xml, key } = batchXml([payout('abort-1')]);
    sandbox.faults.update({ latencyMs: 500, paths: ['/payment'] });
    const inFlight = client.initiatePayment(xml, key, { signal: AbortSignal.timeout(100) });
    await expectError(inFlight, AmbiguousError);
    sandbox.faults.reset();
    const posts = sandbox.stats().byRoute['POST /payment'] ?? 0;
    const ctl = new AbortController();
    ctl.abort();
    await expect(client.initiatePayment(xml, key, { signal: ctl.signal })).rejects.toThrow();
    expect(sandbox.stats().byRoute['POST /payment'] ?? 0).toBe(posts);
  });

  it('4xx is a TerminalError with status and a reason that masks IBANs', async () => {
    const bad = makeIban('DE', '370400440532099999').replace(
      /^DE(\d\d)/,
      (_, d: string) => `DE${String((Number(d) % 97) + 1).padStart(2, '0')}`,
    );
    const { xml, key } = batchXml([payout('bad-1')]);
    const err = await expectError(client.initiatePayment(xml.replace(IBAN, bad), key), LhvRequestRejectedError);
    expect(err).toBeInstanceOf(TerminalError);
    expect(err.status).toBe(400);
    expect(err.reason).toMatch(/errStatement_RequestInvalid: .*invalid creditor IBAN \*\*\*\*9999/);
    expect(err.message).not.toContain(bad);
  });

  it('refuses to send when the idempotency key is not the MsgId', async () => {
    const posts = sandbox.stats().byRoute['POST /payment'] ?? 0;
    const { xml } = batchXml([payout('key-1')]);
    await expectError(client.initiatePayment(xml, newBatchIdempotencyKey()), TerminalError);
    expect(sandbox.stats().byRoute['POST /payment'] ?? 0).toBe(posts);
  });

  it('connection refused is a RetryableError (nothing was sent)', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const dead = createLhvClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 1000, maxConnections: 1 });
    const { xml, key } = batchXml([payout('dead-1')]);
    const err = await expectError(dead.initiatePayment(xml, key), RetryableError);
    expect(err.code).toBe('LHV_UNREACHABLE');
    await dead.close();
  });

  it('responses are matched by Message-Request-Id; a message stays until deleted; delete is idempotent', async () => {
    const a = batchXml([payout('ma-1'), payout('ma-2')]);
    const b = batchXml([payout('mb-1')]);
    const ra = await client.initiatePayment(a.xml, a.key);
    const rb = await client.initiatePayment(b.xml, b.key);
    expect(ra.messageRequestId).not.toBe(rb.messageRequestId);
    const seen = new Map<string, string[]>();
    for (let i = 0; i < 2; i++) {
      const m = await client.nextMessage({ responseType: 'PAYMENT' });
      if (!m) throw new Error('expected a PAYMENT message');
      // Not deleted yet: the same message comes back.
      expect((await client.nextMessage({ responseType: 'PAYMENT' }))?.messageResponseId).toBe(m.messageResponseId);
      const report = parsePain002(m.body);
      seen.set(
        m.messageRequestId,
        report.transactions.map((t) => t.endToEndId),
      );
      expect(report.originalMsgId).toBe(m.messageRequestId === ra.messageRequestId ? a.key : b.key);
      expect(await client.deleteMessage(m.messageResponseId)).toEqual({ deleted: true });
      expect(await client.deleteMessage(m.messageResponseId)).toEqual({ deleted: false });
    }
    expect(seen.get(ra.messageRequestId)).toEqual(['ma-1', 'ma-2']);
    expect(seen.get(rb.messageRequestId)).toEqual(['mb-1']);
    expect(await client.nextMessage({ responseType: 'PAYMENT' })).toBeUndefined();
  });

  it('a delete whose answer was lost: the retry reports deleted:false and the message is gone', async () => {
    const { messageRequestId } = await client.heartbeatMq();
    const m = await client.nextMessage({ responseType: 'HEARTBEAT' });
    expect(m?.messageRequestId).toBe(messageRequestId);
    sandbox.faults.update({ rateResetAfterSuccess: 1, paths: ['/messages/'] });
    await expectError(client.deleteMessage(m?.messageResponseId ?? ''), RetryableError);
    sandbox.faults.reset();
    expect(await client.deleteMessage(m?.messageResponseId ?? '')).toEqual({ deleted: false });
    expect(await client.nextMessage({ responseType: 'HEARTBEAT' })).toBeUndefined();
  });

  it('rejected creditors come back RJCT with reason codes; the rest ACSC; group PART', async () => {
    const closed = makeIban('DE', '370400440532010000');
    const { xml, key } = batchXml([
      payout('rj-ok'),
      payout('rj-1', 'ACME REJECT LTD'),
      payout('rj-2', 'nofunds gmbh'),
      payout('rj-3', 'Fine Name', closed),
    ]);
    const { messageRequestId } = await client.initiatePayment(xml, key);
    const m = await client.nextMessage({ responseType: 'PAYMENT' });
    expect(m?.messageRequestId).toBe(messageRequestId);
    const r = parsePain002(m?.body ?? '');
    expect(r.groupStatus).toBe('PART');
    const byId = Object.fromEntries(r.transactions.map((t) => [t.endToEndId, t]));
    expect(byId['rj-ok']?.status).toBe('ACSC');
    expect(byId['rj-1']).toMatchObject({ status: 'RJCT', reasonCode: 'AC04' });
    expect(byId['rj-2']).toMatchObject({ status: 'RJCT', reasonCode: 'AM04' });
    expect(byId['rj-3']).toMatchObject({ status: 'RJCT', reasonCode: 'AC01' });
  });

  it('responseDelayMs hides the pain.002 for a while; SLOW creditors get ACSP then a follow-up ACSC', async () => {
    sandbox.configure({ responseDelayMs: 300, followUpDelayMs: 200 });
    const { xml, key } = batchXml([payout('sl-1', 'Slow Payee'), payout('sl-2', 'Prompt Payee')]);
    const { messageRequestId } = await client.initiatePayment(xml, key);
    expect(await client.nextMessage({ responseType: 'PAYMENT' })).toBeUndefined();
    const first = await eventually(() => client.nextMessage({ responseType: 'PAYMENT' }));
    const r1 = parsePain002(first.body);
    expect(r1.groupStatus).toBe('ACSP');
    expect(r1.transactions.map((t) => [t.endToEndId, t.status])).toEqual([
      ['sl-1', 'ACSP'],
      ['sl-2', 'ACSC'],
    ]);
    await client.deleteMessage(first.messageResponseId);
    const second = await eventually(() => client.nextMessage({ responseType: 'PAYMENT' }));
    expect(second.messageRequestId).toBe(messageRequestId);
    const r2 = parsePain002(second.body);
    expect(r2.groupStatus).toBeUndefined();
    expect(r2.transactions.map((t) => [t.endToEndId, t.status])).toEqual([['sl-1', 'ACSC']]);
  });
});

describe('createLhvClient configuration', () => {
  it('refuses plain http to a non-loopback host, https without cert/key, and bad limits', () => {
    expect(() => createLhvClient({ baseUrl: 'http://connect.lhv.com', timeoutMs: 1000, maxConnections: 1 })).toThrow(ConfigError);
    expect(() => createLhvClient({ baseUrl: 'https://connect.lhv.com', timeoutMs: 1000, maxConnections: 1 })).toThrow(
      /certificate and key are required/,
    );
    expect(() => createLhvClient({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 0, maxConnections: 0 })).toThrow(
      /timeoutMs[\s\S]*maxConnections/,
    );
    expect(() => createLhvClient({ baseUrl: 'not a url', timeoutMs: 1000, maxConnections: 1 })).toThrow(ConfigError);
  });
});
