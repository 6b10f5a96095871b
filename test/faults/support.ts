/**
 * The harness of the fault tests: real `payfleet worker auth|capture|ledger` processes whose only
 * way to DynamoDB is the fault proxy, the Stripe and token-service sandboxes, and the readings the
 * tests judge by — final states, the processor's own counters, the ledger queue and the DLQs. No
 * reading here depends on how the engine stores leases or work items, so the same tests judge any
 * engine that keeps the guarantees.
 */
import { randomUUID } from 'node:crypto';
import { startStripeSandbox, type StripeSandbox } from '../../cli/sandbox/stripe-server.js';
import { startTokenServiceSandbox, type TokenServiceSandbox } from '../../cli/sandbox/token-service-server.js';
import type { Fault, FaultProxy, FaultRule } from '../support/fault-proxy.js';
import type { LedgerConsumer } from '../support/ledger-consumer.js';
import { authRequest, readCharge } from '../support/charges.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll } from '../support/sqs.js';
import type { TestStack } from '../support/stack.js';

/** Every DynamoDB operation that writes. A fault run picks from each one the workers really use. */
export const WRITE_OPERATIONS = ['UpdateItem', 'TransactWriteItems', 'PutItem', 'DeleteItem', 'BatchWriteItem'] as const;

/** The ledger events of one authorised and captured charge, in order (docs/contract.md §5). */
export const CAPTURED_EVENTS = ['PAYMENT_CREATED', 'AUTHORISATION_SUCCEEDED', 'USER_APPROVED_FOR_CAPTURE', 'CAPTURE_CONFIRMED'];

export type WorkerName = 'auth' | 'capture' | 'ledger';

export interface Sandboxes {
  readonly tokens: TokenServiceSandbox;
  readonly stripe: StripeSandbox;
  close(): Promise<void>;
}

export async function startSandboxes(): Promise<Sandboxes> {
  const [tokens, stripe] = await Promise.all([startTokenServiceSandbox(), startStripeSandbox()]);
  return { tokens, stripe, close: async () => void (await Promise.all([tokens.close(), stripe.close()])) };
}

/**
 * A worker pointed at DynamoDB through `proxy` (SQS direct). Leases of 6 s give each AWS attempt a
 * deadline below a second, so a lost answer costs about a second, not five; a budget of 60
 * attempts (the stack redrives at 60) leaves room for a message to meet several faults in a row.
 */
export function startWorker(name: WorkerName, stack: TestStack, sb: Sandboxes, proxy: FaultProxy): WorkerProcess {
  const common: Record<string, string> = {
    ...stack.env,
    AWS_ENDPOINT_URL_DYNAMODB: proxy.url,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '10',
    PAYFLEET_HEARTBEAT_SEC: '3',
    PAYFLEET_LEASE_MS: '6000',
    PAYFLEET_LEASE_RENEW_MS: '2000',
    PAYFLEET_SHUTDOWN_GRACE_MS: '3000',
    PAYFLEET_FORCE_EXIT_MS: '8000',
    PAYFLEET_RETRY_BASE_MS: '200',
    PAYFLEET_RETRY_MAX_MS: '2000',
    PAYFLEET_MAX_ATTEMPTS: '50',
    PAYFLEET_CONCURRENCY: '16',
  };
  const processors = { STRIPE_API_BASE_URL: sb.stripe.url, STRIPE_API_KEY: sb.stripe.apiKey, PAYFLEET_PROCESSOR_TIMEOUT_MS: '4000' };
  const env: Record<WorkerName, Record<string, string>> = {
    auth: { ...common, ...processors, PAYMENT_TOKEN_SERVICE_URL: sb.tokens.url, PAYMENT_TOKEN_SERVICE_API_KEY: sb.tokens.apiKey },
    capture: {
      ...common,
      ...processors,
      CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '16',
      AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
      CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '1',
      CAPTURE_PROCESS_MAXIMUM_RETRIES: '50',
    },
    ledger: {
      ...common,
      PAYFLEET_LEDGER_POLL_MS: '200',
      PAYFLEET_LEDGER_REBALANCE_MS: '1000',
      PAYFLEET_LEDGER_RETRY_BASE_MS: '200',
      PAYFLEET_LEDGER_SWEEP_INTERVAL_MS: '2000',
    },
  };
  return startProcess('bin/payfleet.js', ['worker', name], env[name]);
}

/**
 * Rules that give `fault` to every `every`th call of each write operation. A BatchWriteItem meets
 * throttling as items handed back unprocessed (that is how DynamoDB throttles part of a batch), so
 * the throttling runs give it `unprocessed`.
 */
export function writeFaults(fault: Fault, every: number): FaultRule[] {
  const batch: FaultRule[] = fault === 'throughput' || fault === 'throttling' ? [{ fault: 'unprocessed', operations: ['BatchWriteItem'], every }] : [];
  return [...batch, { fault, operations: [...WRITE_OPERATIONS], every, how: 'hang' }];
}

/** Send one AuthorisationRequested (Stripe, approving card) and one CaptureRequested per charge. */
export async function sendCharges(stack: TestStack, ids: readonly string[]): Promise<void> {
  const auths = ids.map((chargeId) => authRequest({ chargeId, processor: 'stripe' }));
  await sendAll(
    stack.clients.sqs,
    stack.url(stack.names.queue('auth-requests')),
    auths.map((r) => ({ body: JSON.stringify(r), groupId: r.chargeId, dedupId: r.authRequestId })),
  );
  await sendAll(
    stack.clients.sqs,
    stack.url(stack.names.queue('capture-requests')),
    ids.map((chargeId) => ({
      body: JSON.stringify({ type: 'CaptureRequested', captureRequestId: randomUUID(), chargeId, requestedAt: new Date().toISOString() }),
      groupId: chargeId,
      dedupId: `cap-${chargeId}`,
    })),
  );
}

/** Wait until every charge is CAPTURED; on timeout say where each one stands and what the proxy did. */
export async function allCaptured(stack: TestStack, ids: readonly string[], proxy: FaultProxy, workers: readonly WorkerProcess[]): Promise<void> {
  let statuses: Record<string, number> = {};
  await eventually(
    async () => {
      const charges = await Promise.all(ids.map((id) => readCharge(stack, id)));
      statuses = {};
      for (const c of charges) statuses[c?.status ?? '(none)'] = (statuses[c?.status ?? '(none)'] ?? 0) + 1;
      return charges.every((c) => c?.status === 'CAPTURED');
    },
    Number(process.env.FAULT_WAIT_MS ?? 300_000),
    `all ${ids.length} charges to be CAPTURED`,
  ).catch((err: Error) => {
    const tails = workers.map((w) => w.raw().slice(-3000)).join('\n---\n');
    throw new Error(`${err.message}; statuses ${JSON.stringify(statuses)}; proxy ${JSON.stringify(proxy.stats().faults)}\n${tails}`);
  });
}

/** Every message in the auth and capture DLQs (received and kept invisible: evidence for the failure message). */
export async function deadLettered(stack: TestStack): Promise<string[]> {
  const out: string[] = [];
  for (const q of ['auth-requests', 'capture-requests'] as const) {
    for (const m of await drain(stack.clients.sqs, stack.url(stack.names.dlq(q)))) {
      out.push(`${q}: ${m.MessageAttributes?.['payfleet-error-code']?.StringValue ?? '(redriven by SQS)'} ${m.MessageAttributes?.['payfleet-error-detail']?.StringValue ?? ''}`);
    }
  }
  return out;
}

/** Drain the ledger queue until each charge has its four events (duplicates are de-duplicated by event_id). */
export async function ledgerCaught(ledger: LedgerConsumer, ids: readonly string[]): Promise<void> {
  await ledger.drainUntil((c) => ids.every((id) => c.sequences(id).length >= CAPTURED_EVENTS.length), { timeoutMs: 120_000, idleMs: 1500 });
}

/** Per charge, the event types in arrival order (unique event_ids). */
export function eventTypes(ledger: LedgerConsumer, id: string): string[] {
  return ledger
    .events()
    .filter((e) => e.body.resource_external_id === id)
    .map((e) => e.body.event_type);
}
