import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDynamoDbLocal, type DynamoDbLocal } from '../../cli/embedded/stack.js';
import { startAuthSandboxes, startAuthWorker, type AuthSandboxes } from '../auth/support.js';
import { authRequest, readCharge } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll, sleep } from '../support/sqs.js';
import type { TestStack } from '../support/stack.js';
import { metricValue, OUTAGE_BUDGET_ENV, setupOutageStack, workerMetrics } from './support.js';

/**
 * DynamoDB goes away under load for longer than a message's whole retry budget, then comes back.
 *
 * The budget here is 3 attempts with 100-400 ms backoff (about a second), and the queue redrives at
 * 4 receives: before the breakers, every message in flight would have been dead-lettered
 * RETRIES_EXHAUSTED within a second or two, and any message received again and again would have
 * been moved to the DLQ by SQS itself. DynamoDB Local is really stopped (its java exits) and started
 * again on the same port and data directory.
 */
const CHARGES = 30;

let dynamo: DynamoDbLocal;
let dbPath: string;
let stack: TestStack;
let sb: AuthSandboxes;
let worker: WorkerProcess;

beforeAll(async () => {
  dbPath = mkdtempSync(join(tmpdir(), 'payfleet-ddb-outage-'));
  dynamo = await startDynamoDbLocal({ dbPath });
  stack = await setupOutageStack('ddbout', dynamo.endpoint, 4);
  sb = await startAuthSandboxes();
  worker = startAuthWorker(stack, sb, {
    ...OUTAGE_BUDGET_ENV,
  });
  await worker.waitForLine((l) => l.msg === 'worker started', 60_000);
}, 180_000);

afterAll(async () => {
  worker?.kill('SIGTERM');
  await worker?.exited;
  await sb?.close();
  stack?.close();
  await dynamo?.stop();
  rmSync(dbPath, { recursive: true, force: true });
});

const queue = () => stack.url(stack.names.queue('auth-requests'));
const dlq = () => stack.url(stack.names.dlq('auth-requests'));

async function sendCharges(from: number, to: number) {
  const msgs = [];
  for (let i = from; i < to; i++) {
    const req = authRequest({ chargeId: `ddb-${i}`, processor: 'stripe' });
    msgs.push({ body: JSON.stringify(req), groupId: req.chargeId, dedupId: req.authRequestId });
  }
  await sendAll(stack.clients.sqs, queue(), msgs);
}

describe('a DynamoDB outage longer than the retry budget', () => {
  it('parks and pauses instead of dead-lettering: after DynamoDB comes back every charge is final, none dead-lettered, one authorisation each', async () => {
    await sendCharges(0, CHARGES / 2);
    // Under load: stop DynamoDB once the first charges are through and others are in flight.
    await eventually(async () => (await readCharge(stack, 'ddb-2'))?.status === 'AUTHORISATION_SUCCESS', 60_000, 'first charges authorised');
    await dynamo.stop();
    // More requests arrive during the outage.
    await sendCharges(CHARGES / 2, CHARGES);

    // The worker sees it, opens its breaker and stops receiving...
    await worker.waitForLine((l) => l.msg === 'receiving paused: messages stay in SQS until it recovers' && l.waitingFor === 'dynamodb', 60_000);
    const during = await workerMetrics(worker);
    expect(metricValue(during, 'payfleet_breaker_state', { dependency: 'dynamodb' })).toBeGreaterThan(0);
    expect(metricValue(during, 'payfleet_consumer_paused')).toBe(1);
    // ...and stays down well past the whole retry budget (3 attempts, ~1 s): several failed probes.
    await sleep(6000);
    const probes = worker.lines.filter((l) => l.msg === 'dynamodb is down: circuit open, calls refused until a trial succeeds').length;
    expect(probes).toBeGreaterThanOrEqual(2);

    dynamo = await startDynamoDbLocal({ dbPath, port: dynamo.port });
    await worker.waitForLine((l) => l.msg === 'receiving resumed', 120_000);

    for (let i = 0; i < CHARGES; i++) {
      await eventually(async () => (await readCharge(stack, `ddb-${i}`))?.status === 'AUTHORISATION_SUCCESS', 120_000, `ddb-${i} authorised`);
    }
    expect(await drain(stack.clients.sqs, dlq())).toHaveLength(0);
    const stats = sb.stripe.stats();
    for (let i = 0; i < CHARGES; i++) expect(stats.charges[`ddb-${i}`]?.authorised, `ddb-${i} authorisations at Stripe`).toBe(1);
    const after = await workerMetrics(worker);
    expect(metricValue(after, 'payfleet_messages_dead_lettered_total') ?? 0).toBe(0);
    expect(metricValue(after, 'payfleet_breaker_state', { dependency: 'dynamodb' })).toBe(0);
  }, 300_000);
});
