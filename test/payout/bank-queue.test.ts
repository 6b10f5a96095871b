/**
 * Payouts must not stall behind the bank's message queue. Worker processes on the embedded stack
 * against the LHV sandbox:
 *   - stale HEARTBEAT messages on the queue (of killed workers, of probes whose answer was lost)
 *     cannot starve readiness: a new worker's first round trip deletes them all on its way;
 *   - reports are applied while ingestion is gated: a worker that is not ready still drains the
 *     PAYMENT messages a killed worker's batch produced;
 *   - under load, with 500s on /messages/next, lost DELETE answers, 40 stale heartbeats and workers
 *     SIGKILLed mid-probe (and mid-work) and respawned: once the faults stop every payout is PAID or
 *     REJECTED, initiated once at the bank, and readiness comes back.
 * Everything is asserted on the bank's queue and counters, rows, events and log lines, never on time.
 * The workers recheck readiness only hourly here, so the only probes are those of starting workers.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { toEndToEndId } from '../../workers/payout/lhv/pain001.js';
import type { LhvSandbox } from '../../cli/sandbox/lhv-server.js';
import type { FaultRuleInput } from '../../cli/sandbox/faults.js';
import type { WorkerProcess } from '../support/processes.js';
import { eventually } from '../support/sqs.js';
import { allPayouts, approval, GOOD_IBAN, opsPort, payoutFixtures, readEvents, readPayout, sendEvents, startPayoutWorker } from './support.js';

const fixtures = payoutFixtures();
afterAll(() => fixtures.cleanup());
const { track, env } = fixtures;

/** Worker variables of this file: readiness rechecked hourly, so only a starting worker probes. */
const NO_RECHECK = { PAYFLEET_PAYOUT_READINESS_RECHECK_MS: '3600000' };
const READY = 'payout worker ready: all readiness checks passed';

async function staleHeartbeats(bank: LhvSandbox, n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect((await fetch(`${bank.url}/heartbeat/mq`)).status).toBe(202);
}

const pending = (bank: LhvSandbox, type: string) => bank.stats().pendingMessagesByType[type] ?? 0;


async function metricsOf(w: WorkerProcess): Promise<string> {
  return (await fetch(`http://127.0.0.1:${await opsPort(w)}/metrics`)).text();
}

/** The value of one sample of a Prometheus text exposition (0 when absent). */
function sample(text: string, name: string, label: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

function expectInitiatedOnce(bank: LhvSandbox, paymentIds: readonly string[]): void {
  const per = bank.stats().initiationsPerPaymentId;
  for (const id of paymentIds) expect(per[toEndToEndId(id)], `initiations of ${id}`).toBe(1);
  expect(Object.values(per).every((n) => n === 1)).toBe(true);
}

describe('payouts and the bank message queue', () => {
  it('40 stale HEARTBEATs on the queue: a new worker is ready after ONE round trip, which deletes all 40', async () => {
    const { stack, bank } = await env('pstale', 1);
    await staleHeartbeats(bank, 40);
    expect(pending(bank, 'HEARTBEAT')).toBe(40);

    // LHV_TIMEOUT_MS 10 s: the round trip's deadline, a bound for a loaded machine, not an assertion.
    const w = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1', LHV_TIMEOUT_MS: '10000', ...NO_RECHECK }));
    await w.waitForLine((l) => l.msg === READY, 60_000);

    const m = await metricsOf(w);
    const trips = sample(m, 'payfleet_payout_queue_round_trips_total', 'outcome="ok"');
    // No round trip failed: the first one deleted the 40 on its way and read back its own. (Normally
    // it is the only one; a second pass happens only if another check failed the first.)
    expect(trips).toBeGreaterThanOrEqual(1);
    expect(sample(m, 'payfleet_payout_queue_round_trips_total', 'outcome="failed"')).toBe(0);
    expect(w.lines.find((l) => String(l.msg).startsWith('stale HEARTBEAT messages deleted'))).toMatchObject({
      stale: 40,
      ownReadBack: true,
    });
    expect(sample(m, 'payfleet_payout_heartbeat_messages_total', 'whose="stale"')).toBe(40);
    expect(sample(m, 'payfleet_payout_heartbeat_messages_total', 'whose="own"')).toBe(trips);
    // At the bank: one heartbeat per round trip, every heartbeat deleted, none left.
    const s = bank.stats();
    expect(s.byRoute['GET /heartbeat/mq']).toBe(40 + trips);
    expect(s.messagesDeletedByType['HEARTBEAT']).toBe(40 + trips);
    expect(pending(bank, 'HEARTBEAT')).toBe(0);

    const ids = ['stale-1', 'stale-2'];
    await sendEvents(
      stack,
      ids.map((id) => approval(id)),
    );
    await eventually(
      async () => (await Promise.all(ids.map((id) => readPayout(stack, id)))).every((p) => p?.status === 'PAID'),
      60_000,
      'both payouts PAID',
    );
    expectInitiatedOnce(bank, ids);
    w.kill('SIGTERM');
    expect(await w.exited).toBe(0);
  }, 150_000);

  it('reports are applied while ingestion is gated: a worker that is not ready drains what a killed worker left', async () => {
    const { stack, bank } = await env('pgated', 1);
    const a = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1', ...NO_RECHECK }));
    await a.waitForLine((l) => l.msg === 'payout shard acquired', 60_000);
    // Nobody can read LHV's answers while A lives.
    bank.faults.update({ rules: [{ method: 'GET', paths: ['/messages/next'], rate5xx: 1 }] });
    const ids = ['gated-1', 'gated-2', 'gated-3'];
    await sendEvents(stack, [
      approval('gated-1'),
      approval('gated-2'),
      approval('gated-3', { creditor: { name: 'REJECT gated', iban: GOOD_IBAN, bic: 'LHVBEE22' } }),
    ]);
    await eventually(
      async () => (await Promise.all(ids.map((id) => readPayout(stack, id)))).every((p) => p?.status === 'INITIATED'),
      60_000,
      'the three payouts INITIATED',
    );
    await eventually(() => pending(bank, 'PAYMENT') >= 1, 20_000, 'the report queued at the bank');
    a.kill('SIGKILL');
    await a.exited;

    // Now every readiness check of a new worker fails (LHV heartbeats answer 500); messages can be read.
    bank.faults.update({ rules: [], rate5xx: 1, paths: ['/heartbeat'] });
    const b = track(startPayoutWorker(stack, bank, { PAYFLEET_PAYOUT_SHARDS: '1', ...NO_RECHECK }));
    await b.waitForLine((l) => l.msg === 'payout worker not ready', 60_000);
    await eventually(
      async () =>
        (await Promise.all(ids.map((id) => readPayout(stack, id)))).every(
          (p) => p?.status === 'PAID' || p?.status === 'REJECTED',
        ),
      60_000,
      'the reports applied by the worker that is not ready',
    );

    expect((await readPayout(stack, 'gated-1'))?.status).toBe('PAID');
    expect((await readPayout(stack, 'gated-3'))?.failure).toMatchObject({ source: 'BANK_REPORT', code: 'AC04' });
    expect(pending(bank, 'PAYMENT')).toBe(0);
    // B did it without ever being ready: no shard, no ingestion; only the poller lease.
    expect(b.lines.some((l) => l.msg === READY || l.msg === 'payout shard acquired')).toBe(false);
    expect(b.lines.some((l) => l.msg === 'ingestion started: receiving CheckoutApprovalAccepted')).toBe(false);
    expect(b.lines.some((l) => l.msg === 'LHV response poller lease acquired')).toBe(true);
    expect((await fetch(`http://127.0.0.1:${await opsPort(b)}/health/ready`)).status).toBe(503);
    expectInitiatedOnce(bank, ids);
    b.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  }, 150_000);

  it('SIGKILL mid-probe and mid-work, 500s on /messages/next, lost DELETEs, 40 stale heartbeats: every payout final, initiated once, readiness back', async () => {
    const { stack, bank } = await env('pqchaos', 4);
    const workerEnv = { PAYFLEET_PAYOUT_SHARDS: '4', ...NO_RECHECK };
    const faults: FaultRuleInput[] = [
      { method: 'GET', paths: ['/messages/next'], rate5xx: 0.05 },
      // Lost answers (deleted, the client never hears) and 500s (not deleted).
      { method: 'DELETE', paths: ['/messages/'], rate5xx: 0.05, rateResetAfterSuccess: 0.2 },
    ];
    // Every /heartbeat/mq is queued and never answered: a probe caught between its heartbeat and its read.
    const hangProbes: FaultRuleInput = { method: 'GET', paths: ['/heartbeat/mq'], rateTimeoutAfterSuccess: 1 };
    await staleHeartbeats(bank, 40);
    bank.faults.update({ seed: 13, rules: faults });

    let live = [track(startPayoutWorker(stack, bank, workerEnv)), track(startPayoutWorker(stack, bank, workerEnv))];
    for (const w of live) await w.waitForLine((l) => l.msg === READY, 60_000);

    const ids: string[] = [];
    const midProbeKills: number[] = [];
    for (let wave = 0; wave < 4; wave++) {
      const batch = Array.from({ length: 40 }, (_, i) => `q${wave}-${String(i).padStart(2, '0')}`);
      ids.push(...batch);
      await sendEvents(
        stack,
        batch.map((id, i) =>
          approval(
            id,
            i % 10 === 3
              ? { creditor: { name: `REJECT ${id}`, iban: GOOD_IBAN, bic: 'LHVBEE22' } }
              : i % 7 === 5
                ? { creditor: { name: `SLOW ${id}`, iban: GOOD_IBAN, bic: 'LHVBEE22' } }
                : {},
          ),
        ),
      );
      if (wave === 3) break;
      // Under load: the oldest worker dies mid-work (ingesting, sending, applying reports).
      const victim = live[0]!;
      victim.kill('SIGKILL');
      await victim.exited;
      // Its replacement dies between queueing its heartbeat and reading it back.
      bank.faults.update({ rules: [hangProbes, ...faults] });
      const probing = track(startPayoutWorker(stack, bank, workerEnv));
      await eventually(() => bank.faults.hanging >= 1, 60_000, 'the new worker caught mid-probe');
      probing.kill('SIGKILL');
      await probing.exited;
      midProbeKills.push(pending(bank, 'HEARTBEAT'));
      bank.faults.update({ rules: faults });
      // The next one must become ready all the same, with the dead probes' heartbeats ahead of its own.
      const fresh = track(startPayoutWorker(stack, bank, workerEnv));
      await fresh.waitForLine((l) => l.msg === READY, 60_000);
      live = [...live.slice(1), fresh];
    }
    // Every killed probe had queued its heartbeat and never read it.
    expect(midProbeKills.every((n) => n >= 1)).toBe(true);

    // The faults stop.
    const injected = bank.stats().faultsInjected;
    expect(injected['5xx']).toBeGreaterThan(0);
    expect(injected['resetAfterSuccess']).toBeGreaterThan(0);
    expect(injected['timeoutAfterSuccess']).toBeGreaterThanOrEqual(3);
    bank.faults.reset();

    await eventually(
      async () => (await allPayouts(stack)).filter((p) => p.status === 'PAID' || p.status === 'REJECTED').length === ids.length,
      180_000,
      `all ${ids.length} payouts PAID or REJECTED`,
    );
    const rows = new Map((await allPayouts(stack)).map((p) => [p.paymentId, p]));
    for (const [i, id] of ids.map((x) => [Number(x.slice(-2)), x] as const)) {
      const p = rows.get(id)!;
      expect(p.status, id).toBe(i % 10 === 3 ? 'REJECTED' : 'PAID');
    }
    expectInitiatedOnce(bank, ids);
    for (const id of [ids[0]!, ids[3]!, ids[45]!, ids[159]!]) {
      const events = await readEvents(stack, id);
      expect(events.map((e) => e.sequence)).toEqual([1, 2, 3]);
      expect(events.map((e) => e.eventType)).toEqual([
        'PAYOUT_CREATED',
        'PAYOUT_INITIATED',
        rows.get(id)!.status === 'PAID' ? 'PAYOUT_PAID' : 'PAYOUT_FAILED',
      ]);
    }
    await eventually(() => pending(bank, 'PAYMENT') === 0, 60_000, 'every report deleted');

    // Readiness is back: the survivors answer 200, and a worker started now is ready and leaves no
    // heartbeat behind (it deleted the dead probes' ones on its way to its own).
    for (const w of live) {
      const port = await opsPort(w);
      await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health/ready`)).status === 200, 30_000, 'ready');
    }
    const last = track(startPayoutWorker(stack, bank, { ...workerEnv, LHV_TIMEOUT_MS: '10000' }));
    await last.waitForLine((l) => l.msg === READY, 60_000);
    expect(pending(bank, 'HEARTBEAT')).toBe(0);
    const lastPort = await opsPort(last);
    await eventually(async () => (await fetch(`http://127.0.0.1:${lastPort}/health/ready`)).status === 200, 30_000, 'ready');
    for (const w of [...live, last]) w.kill('SIGTERM');
    for (const w of [...live, last]) expect(await w.exited).toBe(0);
  }, 420_000);
});
