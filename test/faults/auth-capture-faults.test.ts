/**
 * The exactly-once guarantees under the faults DynamoDB really produces and DynamoDB Local never
 * does: throttling, 500s, transaction conflicts, and a write that is applied but whose answer is
 * lost.
 *
 * Real `payfleet worker auth`, `capture` and `ledger` processes reach DynamoDB only through the
 * fault proxy (test/support/fault-proxy.ts). For each fault, every 3rd call of each write operation
 * the workers make (UpdateItem, TransactWriteItems, PutItem, DeleteItem, BatchWriteItem: whichever
 * the request log shows) is given the fault while a load of charges is authorised and captured:
 *
 *   worker ── 3rd UpdateItem ─────────▶ proxy ─╳  (throughput / throttling / internal / conflict: refused as AWS refuses it, not applied)
 *   worker ── 3rd TransactWriteItems ─▶ proxy ──▶ DynamoDB Local (lose: applied) ─▶ proxy ─╳ answer dropped
 *
 * Judged only by what is outside the engine, so any engine that keeps the guarantees passes:
 * every charge CAPTURED; at the processor (Stripe sandbox's own counters) exactly one
 * PaymentIntent and one capture per charge; on the ledger queue (the reference consumer) the four
 * events of each charge, once each, in order, no gap; nothing dead-lettered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type Fault, type FaultProxy } from '../support/fault-proxy.js';
import { LedgerConsumer } from '../support/ledger-consumer.js';
import type { WorkerProcess } from '../support/processes.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import {
  allCaptured,
  CAPTURED_EVENTS,
  deadLettered,
  eventTypes,
  ledgerCaught,
  sendCharges,
  startSandboxes,
  startWorker,
  WRITE_OPERATIONS,
  writeFaults,
  type Sandboxes,
} from './support.js';

const CHARGES = Number(process.env.FAULT_CHARGES ?? 12);
const EVERY = 3;

let stack: TestStack;
let sb: Sandboxes;
let proxy: FaultProxy;
let ledger: LedgerConsumer;
let workers: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('faults');
  sb = await startSandboxes();
  proxy = await startFaultProxy(stack.aws.dynamodbEndpoint!);
  ledger = new LedgerConsumer({ sqs: stack.clients.sqs, queueUrl: stack.url(stack.names.queue('ledger-events')) });
  workers = (['auth', 'capture', 'ledger'] as const).map((name) => startWorker(name, stack, sb, proxy));
  await Promise.all(workers.map((w) => w.waitForLine((l) => l.msg === 'worker started', 90_000)));
}, 120_000);

afterAll(async () => {
  proxy?.inject(undefined);
  for (const w of workers) w.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  await proxy?.close();
  await sb?.close();
  stack?.close();
});

/** Write operations seen since request `from`, and how many of each got the fault. */
function writesSince(from: number, fault: Fault): { seen: Record<string, number>; faulted: Record<string, number> } {
  const seen: Record<string, number> = {};
  const faulted: Record<string, number> = {};
  for (const r of proxy.requests.slice(from)) {
    if (!r.operation || !(WRITE_OPERATIONS as readonly string[]).includes(r.operation)) continue;
    seen[r.operation] = (seen[r.operation] ?? 0) + 1;
    if (r.fault === fault || (r.fault === 'unprocessed' && r.operation === 'BatchWriteItem')) faulted[r.operation] = (faulted[r.operation] ?? 0) + 1;
  }
  return { seen, faulted };
}

describe('auth, capture and ledger workers under injected DynamoDB faults', () => {
  it.each<[Fault, string]>([
    ['throughput', 'ProvisionedThroughputExceededException (400)'],
    ['throttling', 'ThrottlingException (400)'],
    ['internal', 'InternalServerError (500)'],
    ['conflict', 'TransactionCanceledException [TransactionConflict] / TransactionConflictException (400)'],
    ['lose', 'applied, answer lost (timeout after success)'],
  ])(
    'every charge ends CAPTURED with one authorisation and one capture at the processor, its ledger events once each and gapless, nothing dead-lettered, while every 3rd write gets %s: %s',
    async (fault) => {
      // Prepare
      const ids = Array.from({ length: CHARGES }, (_, i) => `flt-${fault}-${i}-${Math.random().toString(36).slice(2, 8)}`);
      const from = proxy.requests.length;
      proxy.inject(writeFaults(fault, EVERY));

      // Act
      await sendCharges(stack, ids);
      await allCaptured(stack, ids, proxy, workers);
      await ledgerCaught(ledger, ids);
      proxy.inject(undefined);

      // Assess: the fault really fired on every write operation the workers used.
      const { seen, faulted } = writesSince(from, fault);
      console.info(`[faults] ${fault}: writes seen ${JSON.stringify(seen)}, given the fault ${JSON.stringify(faulted)}`);
      expect(Object.keys(seen).length).toBeGreaterThan(0);
      for (const op of Object.keys(seen)) {
        if (seen[op]! >= EVERY) expect(faulted[op], `${op}: ${JSON.stringify({ seen, faulted })}`).toBeGreaterThanOrEqual(1);
      }
      // One effect per charge at the processor: one PaymentIntent created, one capture.
      for (const id of ids) {
        const s = sb.stripe.stats().charges[id];
        expect({ id, created: s?.created, captured: s?.captured }).toEqual({ id, created: 1, captured: 1 });
      }
      // The ledger: each charge's four events, once each (by event_id), in order, nothing missing.
      for (const id of ids) {
        expect({ id, events: eventTypes(ledger, id) }).toEqual({ id, events: CAPTURED_EVENTS });
        expect({ id, sequences: ledger.sequences(id) }).toEqual({ id, sequences: [1, 2, 3, 4] });
      }
      const report = ledger.report();
      expect({ invalid: report.invalid, mismatches: report.mismatches, gaps: report.gaps, reorders: report.reorders }).toEqual({
        invalid: [],
        mismatches: [],
        gaps: [],
        reorders: [],
      });
      expect(await deadLettered(stack)).toEqual([]);
    },
    420_000,
  );
});
