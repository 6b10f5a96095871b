/**
 * The readiness probe's LHV message-queue round trip against the sandbox bank, in process: stale
 * HEARTBEAT messages (of killed workers, of probes whose answer was lost) cannot starve it, whoever
 * reads a HEARTBEAT deletes it, and 500s on /messages/next and lost DELETE answers are survived
 * without leaving heartbeats behind. Every assertion is on the bank's queue and counters.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLhvClient, type LhvClient } from '../../workers/payout/lhv/client.js';
import { buildPain001, newBatchIdempotencyKey } from '../../workers/payout/lhv/pain001.js';
import { heartbeatRoundTrip } from '../../workers/payout/readiness.js';
import { startLhvSandbox, type LhvSandbox } from '../../cli/sandbox/lhv-server.js';
import { DEBTOR, GOOD_IBAN } from './support.js';

let bank: LhvSandbox;
let lhv: LhvClient;
beforeAll(async () => {
  bank = await startLhvSandbox({ port: 0 });
  lhv = createLhvClient({ baseUrl: bank.url, timeoutMs: 5000, maxConnections: 8 });
});
afterAll(async () => {
  await lhv?.close();
  await bank?.close();
});
afterEach(async () => {
  bank.faults.reset();
  // Leave an empty queue for the next test.
  for (;;) {
    const msg = await lhv.nextMessage({});
    if (!msg) break;
    await lhv.deleteMessage(msg.messageResponseId);
  }
});

/** `n` heartbeats nobody will read back: what SIGKILLed probes leave on the bank's queue. */
async function staleHeartbeats(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await lhv.heartbeatMq();
}

const heartbeatsPending = () => bank.stats().pendingMessagesByType['HEARTBEAT'] ?? 0;
const heartbeatsDeleted = () => bank.stats().messagesDeletedByType['HEARTBEAT'] ?? 0;
const mqCalls = () => bank.stats().byRoute['GET /heartbeat/mq'] ?? 0;
// A generous deadline: a bound for waiting on a loaded machine, never what is asserted.
const roundTrip = () => heartbeatRoundTrip(lhv, { signal: new AbortController().signal, timeoutMs: 60_000 });

describe('readiness: the LHV message-queue round trip', () => {
  it('40 stale HEARTBEATs ahead of ours: one round trip deletes all 40 on its way and reads back its own', async () => {
    await staleHeartbeats(40);
    expect(heartbeatsPending()).toBe(40);
    const mqBefore = mqCalls();
    const deletedBefore = heartbeatsDeleted();

    const trip = await roundTrip();

    expect(trip).toMatchObject({ own: true, stale: 40 });
    // One heartbeat queued by the probe, 41 deleted, none left for the next probe to wade through.
    expect(mqCalls()).toBe(mqBefore + 1);
    expect(heartbeatsDeleted()).toBe(deletedBefore + 41);
    expect(heartbeatsPending()).toBe(0);
  });

  it('never touches PAYMENT reports (it reads HEARTBEAT only)', async () => {
    const msgId = newBatchIdempotencyKey();
    const xml = buildPain001({
      msgId,
      debtor: DEBTOR,
      payouts: [{ paymentId: 'rt-1', amount: 100, currency: 'EUR', creditor: { name: 'Payee', iban: GOOD_IBAN } }],
    });
    await lhv.initiatePayment(xml, msgId);
    await staleHeartbeats(3);
    const trip = await roundTrip();
    expect(trip).toMatchObject({ own: true, stale: 3 });
    expect(bank.stats().pendingMessagesByType).toEqual({ PAYMENT: 1 });
  });

  it('500s on /messages/next and lost or failed DELETE answers: every round trip succeeds and no HEARTBEAT is left', async () => {
    await staleHeartbeats(20);
    bank.faults.update({
      seed: 7,
      rules: [
        { method: 'GET', paths: ['/messages/next'], rate5xx: 0.3 },
        // resetAfterSuccess: deleted, answer lost (the repeat gets 404); rate5xx: not deleted.
        { method: 'DELETE', paths: ['/messages/'], rateResetAfterSuccess: 0.3, rate5xx: 0.2 },
      ],
    });
    const before = bank.stats().faultsInjected;
    for (let i = 0; i < 5; i++) {
      const trip = await roundTrip();
      expect(trip.own).toBe(true);
    }
    const injected = bank.stats().faultsInjected;
    // The faults really happened: reads answered 500, deletes lost their answers.
    expect((injected['5xx'] ?? 0) - (before['5xx'] ?? 0)).toBeGreaterThan(0);
    expect((injected['resetAfterSuccess'] ?? 0) - (before['resetAfterSuccess'] ?? 0)).toBeGreaterThan(0);
    expect(heartbeatsPending()).toBe(0);
  });

  it('concurrent probes of several workers: each deletes whatever it reads, all succeed, the queue ends empty', async () => {
    await staleHeartbeats(10);
    const trips = await Promise.all(Array.from({ length: 4 }, () => roundTrip()));
    // Together they deleted the 10 stale ones (a HEARTBEAT read by two probes at once counts for both).
    expect(trips.reduce((n, t) => n + t.stale, 0)).toBeGreaterThanOrEqual(10);
    expect(heartbeatsPending()).toBe(0);
  });

  it('a DELETE that keeps failing fails the round trip: the message path is not usable', async () => {
    await staleHeartbeats(1);
    bank.faults.update({ rules: [{ method: 'DELETE', paths: ['/messages/'], rate5xx: 1 }] });
    // Retried until the deadline, then the round trip fails and says why.
    await expect(heartbeatRoundTrip(lhv, { signal: new AbortController().signal, timeoutMs: 3000 })).rejects.toThrow(
      /no HEARTBEAT message could be read back and deleted/,
    );
    expect(bank.stats().byRoute['DELETE /messages/{id}']).toBeGreaterThan(0);
    expect(heartbeatsPending()).toBe(2);
  });
});
