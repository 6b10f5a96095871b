import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthSandboxes, startAuthWorker, type AuthSandboxes } from '../auth/support.js';
import { authRequest, readCharge } from '../support/charges.js';
import type { WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll, sleep } from '../support/sqs.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { metricValue, OUTAGE_BUDGET_ENV, workerMetrics } from './support.js';

/**
 * Outages of the far sides the auth worker calls, each longer than a message's whole retry budget
 * (3 attempts, 100-400 ms backoff), under load. The queue redrives at 4 receives, so a worker that
 * kept receiving and handing back would have SQS dead-letter messages by itself.
 */
const CHARGES = 24;

let stack: TestStack;
let sb: AuthSandboxes;
let worker: WorkerProcess;
/** Between the worker and the Stripe sandbox: `refuse()` is the sandbox stopped (connection refused). */
let stripeLink: FaultProxy;

beforeAll(async () => {
  stack = await setupTestStack('procout', { maxReceiveCount: 4 });
  sb = await startAuthSandboxes();
  stripeLink = await startFaultProxy(sb.stripe.url);
  worker = startAuthWorker(stack, sb, {
    STRIPE_API_BASE_URL: stripeLink.url,
    ...OUTAGE_BUDGET_ENV,
  });
  await worker.waitForLine((l) => l.msg === 'worker started', 60_000);
}, 120_000);

afterAll(async () => {
  worker?.kill('SIGTERM');
  await worker?.exited;
  await stripeLink?.close();
  await sb?.close();
  stack?.close();
});

const queue = () => stack.url(stack.names.queue('auth-requests'));
const dlq = () => stack.url(stack.names.dlq('auth-requests'));

async function sendCharges(prefix: string, n: number) {
  const msgs = [];
  for (let i = 0; i < n; i++) {
    const req = authRequest({ chargeId: `${prefix}-${i}`, processor: 'stripe' });
    msgs.push({ body: JSON.stringify(req), groupId: req.chargeId, dedupId: req.authRequestId });
  }
  await sendAll(stack.clients.sqs, queue(), msgs);
}

async function allAuthorised(prefix: string, n: number) {
  for (let i = 0; i < n; i++) {
    await eventually(async () => (await readCharge(stack, `${prefix}-${i}`))?.status === 'AUTHORISATION_SUCCESS', 120_000, `${prefix}-${i} authorised`);
  }
}

describe('processor and token-service outages', () => {
  it('Stripe answering 503 to everyone: the worker backs off Stripe (breaker), parks the charges without spending attempts, and authorises each once after it recovers', async () => {
    sb.stripe.faults.update({ rate5xx: 1, status5xx: 503 });
    await sendCharges('so', CHARGES);
    await eventually(async () => metricValue(await workerMetrics(worker), 'payfleet_breaker_state', { dependency: 'stripe' }) === 2, 60_000, 'stripe breaker open');
    await eventually(async () => (metricValue(await workerMetrics(worker), 'payfleet_messages_parked') ?? 0) >= 8, 60_000, 'charges parked');
    const requestsAtOpen = sb.stripe.stats().totals.requests;
    // Down well past the retry budget (~1 s): several open periods with their trials.
    await sleep(6000);
    const requestsDuringOutage = sb.stripe.stats().totals.requests - requestsAtOpen;
    // Each of the charges would have called at least 3 times without a breaker; with it, only
    // the half-open trials go out.
    expect(requestsDuringOutage).toBeLessThan(CHARGES);
    const midway = await readCharge(stack, 'so-0');
    expect(['AUTHORISATION_READY', 'CREATED', undefined]).toContain(midway?.status);

    sb.stripe.faults.reset();
    await allAuthorised('so', CHARGES);
    expect(await drain(stack.clients.sqs, dlq())).toHaveLength(0);
    const stats = sb.stripe.stats();
    for (let i = 0; i < CHARGES; i++) expect(stats.charges[`so-${i}`]?.authorised, `so-${i} at Stripe`).toBe(1);
    const text = await workerMetrics(worker);
    expect(metricValue(text, 'payfleet_breaker_state', { dependency: 'stripe' })).toBe(0);
    expect(metricValue(text, 'payfleet_outbound_requests_total', { service: 'stripe', status: 'breaker_open' }) ?? 0).toBeGreaterThan(0);
  }, 300_000);

  it('the token service down: the auth worker stops receiving (messages stay in SQS), resumes on its own when the probe succeeds', async () => {
    sb.tokens.faults.update({ rate5xx: 1, status5xx: 503 });
    await sendCharges('to', CHARGES);
    await worker.waitForLine((l) => l.msg === 'receiving paused: messages stay in SQS until it recovers' && l.waitingFor === 'token-service', 60_000);
    // While paused, the waiting messages are visible in SQS, not received and handed back.
    await sleep(4000);
    const attrs = await stack.clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queue(), AttributeNames: ['ApproximateNumberOfMessages'] }));
    expect(Number(attrs.Attributes?.ApproximateNumberOfMessages)).toBeGreaterThan(0);
    expect(metricValue(await workerMetrics(worker), 'payfleet_consumer_paused')).toBe(1);

    sb.tokens.faults.reset();
    await allAuthorised('to', CHARGES);
    expect(await drain(stack.clients.sqs, dlq())).toHaveLength(0);
    const stats = sb.stripe.stats();
    for (let i = 0; i < CHARGES; i++) expect(stats.charges[`to-${i}`]?.authorised, `to-${i} at Stripe`).toBe(1);
  }, 300_000);

  it('the Stripe sandbox stopped (connections refused) past the retry budget, then started again: parked, nothing dead-lettered, one authorisation each', async () => {
    await stripeLink.refuse();
    await sendCharges('ss', CHARGES);
    await eventually(async () => metricValue(await workerMetrics(worker), 'payfleet_breaker_state', { dependency: 'stripe' }) === 2, 60_000, 'stripe breaker open');
    await eventually(async () => (metricValue(await workerMetrics(worker), 'payfleet_messages_parked') ?? 0) >= 8, 60_000, 'charges parked');
    await sleep(6000);
    await stripeLink.pass();
    await allAuthorised('ss', CHARGES);
    expect(await drain(stack.clients.sqs, dlq())).toHaveLength(0);
    const stats = sb.stripe.stats();
    for (let i = 0; i < CHARGES; i++) expect(stats.charges[`ss-${i}`]?.authorised, `ss-${i} at Stripe`).toBe(1);
  }, 300_000);
});
