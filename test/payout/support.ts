import { randomUUID } from 'node:crypto';
import { GetCommand, QueryCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { Batch, Payout } from '../../workers/payout/model.js';
import { createPayoutRepository } from '../../workers/payout/repo.js';
import { startLhvSandbox, type LhvSandbox, type LhvSandboxOptions } from '../../cli/sandbox/lhv-server.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

export const DEBTOR = { name: 'Payfleet Payouts', iban: 'EE382200221020145685', bic: 'LHVBEE22' };

/** A valid IBAN for `country` + `bban` (ISO 7064 mod 97-10 check digits). */
export function iban(bban: string, country = 'EE'): string {
  const digits = `${bban}${country}00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let rem = 0;
  for (const d of digits) rem = (rem * 10 + Number(d)) % 97;
  return `${country}${String(98 - rem).padStart(2, '0')}${bban}`;
}

/** A creditor IBAN the sandbox bank pays (does not end in 0000). */
export const GOOD_IBAN = iban('2200221020145686');
/** Ends in 0000: the sandbox bank rejects it with AC01. */
export const AC01_IBAN = iban('2200221020140000');

export function approval(paymentId: string, overrides: Record<string, unknown> = {}) {
  return {
    eventType: 'CheckoutApprovalAccepted',
    eventId: randomUUID(),
    paymentId,
    amount: 1250,
    currency: 'EUR',
    creditor: { name: `Creditor ${paymentId}`, iban: GOOD_IBAN, bic: 'LHVBEE22' },
    remittanceInformation: `payout ${paymentId}`,
    approvedAt: new Date().toISOString(),
    ...overrides,
  };
}

/** The same event as SNS delivers it to SQS without raw message delivery. */
export function snsWrapped(event: Record<string, unknown>): Record<string, unknown> {
  return {
    Type: 'Notification',
    MessageId: randomUUID(),
    TopicArn: 'arn:aws:sns:eu-west-2:000000000000:payment-controls',
    Message: JSON.stringify(event),
    Timestamp: new Date().toISOString(),
    SignatureVersion: '1',
  };
}

export async function sendEvents(
  stack: TestStack,
  bodies: readonly (Record<string, unknown> | string)[],
  groupOf?: (i: number) => string,
): Promise<void> {
  const url = stack.url(stack.names.queue('payout-events'));
  await sendAll(
    stack.clients.sqs,
    url,
    bodies.map((b, i) => {
      const body = typeof b === 'string' ? b : JSON.stringify(b);
      const inner =
        typeof b === 'string' ? undefined : ((b.Message ? JSON.parse(String(b.Message)) : b) as Record<string, unknown>);
      return { body, groupId: groupOf?.(i) ?? String(inner?.paymentId ?? `g-${i}`), dedupId: randomUUID() };
    }),
  );
}

export function payoutEnv(stack: TestStack, bank: LhvSandbox, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...stack.env,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_LOG_LEVEL: 'info',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '6',
    PAYFLEET_HEARTBEAT_SEC: '2',
    PAYFLEET_SHUTDOWN_GRACE_MS: '4000',
    PAYFLEET_FORCE_EXIT_MS: '9000',
    PAYFLEET_RETRY_BASE_MS: '300',
    PAYFLEET_RETRY_MAX_MS: '2000',
    PAYFLEET_MAX_ATTEMPTS: '20',
    PAYFLEET_CONCURRENCY: '16',
    LHV_API_BASE_URL: bank.url,
    LHV_TIMEOUT_MS: '1500',
    LHV_DEBTOR_NAME: DEBTOR.name,
    LHV_DEBTOR_IBAN: DEBTOR.iban,
    LHV_DEBTOR_BIC: DEBTOR.bic,
    PAYFLEET_PAYOUT_SHARD_LEASE_MS: '3000',
    PAYFLEET_PAYOUT_SHARD_RENEW_MS: '1000',
    PAYFLEET_PAYOUT_SHARD_BACKOFF_MS: '400',
    PAYFLEET_PAYOUT_INITIATION_POLL_MS: '200',
    PAYFLEET_PAYOUT_BATCH_QUIET_MS: '300',
    PAYFLEET_PAYOUT_BATCH_MAX_WAIT_MS: '5000',
    PAYFLEET_PAYOUT_SEND_ATTEMPTS: '4',
    PAYFLEET_PAYOUT_RETRY_BASE_MS: '100',
    PAYFLEET_PAYOUT_RETRY_MAX_MS: '500',
    PAYFLEET_PAYOUT_RESPONSE_POLL_MS: '150',
    PAYFLEET_PAYOUT_READINESS_POLL_MS: '300',
    PAYFLEET_PAYOUT_READINESS_RECHECK_MS: '5000',
    ...extra,
  };
}

export function startPayoutWorker(stack: TestStack, bank: LhvSandbox, extra: Record<string, string> = {}): WorkerProcess {
  return startProcess('bin/payfleet.js', ['worker', 'payout'], payoutEnv(stack, bank, extra));
}

export async function startBank(options: LhvSandboxOptions = {}): Promise<LhvSandbox> {
  return startLhvSandbox({ port: 0, responseDelayMs: 100, followUpDelayMs: 500, ...options });
}

export async function readPayout(stack: TestStack, paymentId: string): Promise<Payout | undefined> {
  return createPayoutRepository(stack.clients.doc, stack.names).findPayout(paymentId);
}

export async function readBatch(stack: TestStack, batchId: string): Promise<Batch | undefined> {
  const r = await stack.clients.doc.send(
    new GetCommand({ TableName: stack.names.table('batches'), Key: { batchId }, ConsistentRead: true }),
  );
  return r.Item?.kind === 'BATCH' ? (r.Item as Batch) : undefined;
}

export async function readEvents(stack: TestStack, resourceId: string) {
  const r = await stack.clients.doc.send(
    new QueryCommand({
      TableName: stack.names.table('events'),
      KeyConditionExpression: 'resourceId = :r',
      ExpressionAttributeValues: { ':r': resourceId },
      ConsistentRead: true,
    }),
  );
  return (r.Items ?? []) as {
    sequence: number;
    eventType: string;
    resourceType: string;
    eventId: string;
    details: Record<string, unknown>;
  }[];
}

/** Every payout row of the stack (small test tables only). */
export async function allPayouts(stack: TestStack): Promise<Payout[]> {
  const out: Payout[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const r = await stack.clients.doc.send(
      new ScanCommand({
        TableName: stack.names.table('payouts'),
        ConsistentRead: true,
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    out.push(...((r.Items ?? []) as Payout[]));
    start = r.LastEvaluatedKey;
  } while (start);
  return out;
}

export async function finalPayout(stack: TestStack, paymentId: string, timeoutMs = 30_000): Promise<Payout> {
  await eventually(
    async () => ['PAID', 'REJECTED'].includes((await readPayout(stack, paymentId))?.status ?? ''),
    timeoutMs,
    `${paymentId} to be PAID or REJECTED`,
  );
  return (await readPayout(stack, paymentId))!;
}

export async function waitReady(worker: WorkerProcess, timeoutMs = 30_000): Promise<void> {
  await worker.waitForLine((l) => l.msg === 'payout shard acquired', timeoutMs);
}

/**
 * What a process-level payout test file starts — stacks, sandbox banks, worker processes — undone in
 * reverse order by `afterAll(() => fixtures.cleanup())`; a worker still running is SIGKILLed.
 */
export function payoutFixtures() {
  const undo: (() => Promise<void> | void)[] = [];
  return {
    track(w: WorkerProcess): WorkerProcess {
      undo.push(async () => {
        if (w.child.exitCode === null && w.child.signalCode === null) {
          w.kill('SIGKILL');
          await w.exited;
        }
      });
      return w;
    },
    /** A stack with `shards` payout shards (and other bootstrap options) and a sandbox bank. */
    async env(label: string, shards: number, options: { maxReceiveCount?: number } = {}): Promise<{ stack: TestStack; bank: LhvSandbox }> {
      const stack = await setupTestStack(label, { payoutShards: shards, ...options });
      const bank = await startBank();
      undo.push(
        () => stack.close(),
        () => bank.close(),
      );
      return { stack, bank };
    },
    async cleanup(): Promise<void> {
      for (const u of undo.reverse()) await u();
    },
  };
}

/** The ops port a worker process listens on (its log says). */
export async function opsPort(w: WorkerProcess): Promise<number> {
  return Number((await w.waitForLine((l) => l.msg === 'ops server listening')).port);
}
