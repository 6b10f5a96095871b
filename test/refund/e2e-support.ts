/**
 * The end-to-end refund tests' harness: the token service, Stripe, Worldpay and Chase sandboxes, the
 * auth, capture and refund workers as processes on one embedded stack, and the readings the tests
 * judge by (charge and refund rows, the outbox, the refund DLQ, each processor's refund counters).
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { startChaseSandbox, type ChaseSandbox } from '../../cli/sandbox/chase-server.js';
import { startStripeSandbox, type StripeSandbox } from '../../cli/sandbox/stripe-server.js';
import { startTokenServiceSandbox, type TokenServiceSandbox } from '../../cli/sandbox/token-service-server.js';
import { startWorldpaySandbox, type WorldpaySandbox } from '../../cli/sandbox/worldpay-server.js';
import { SANDBOX_CARDS } from '../../shared/connectors/sandbox.js';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { authRequest, readCharge } from '../support/charges.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll } from '../support/sqs.js';
import type { TestStack } from '../support/stack.js';

export const PROCESSORS = ['sandbox', 'stripe', 'worldpay', 'chase'] as const;
export type Processor = (typeof PROCESSORS)[number];

/** How long a Stripe or Worldpay refund stays pending before the fake confirms it. */
export const REFUND_SETTLE_MS = 1500;

export interface RefundSandboxes {
  readonly tokens: TokenServiceSandbox;
  readonly stripe: StripeSandbox;
  readonly worldpay: WorldpaySandbox;
  readonly chase: ChaseSandbox;
  close(): Promise<void>;
}

/** Worldpay orderCode (`payfleet-auth-<authRequestId>`) -> chargeId, for its per-charge stats. */
const worldpayOrders = new Map<string, string>();

export async function startRefundSandboxes(): Promise<RefundSandboxes> {
  const [tokens, stripe, worldpay, chase] = await Promise.all([
    startTokenServiceSandbox(),
    startStripeSandbox({ refundSettleMs: REFUND_SETTLE_MS }),
    startWorldpaySandbox({ refundSettleMs: REFUND_SETTLE_MS, chargeIdOf: ({ orderCode }) => worldpayOrders.get(orderCode) }),
    startChaseSandbox(),
  ]);
  return {
    tokens,
    stripe,
    worldpay,
    chase,
    close: async () => void (await Promise.all([tokens.close(), stripe.close(), worldpay.close(), chase.close()])),
  };
}

function env(stack: TestStack, sb: RefundSandboxes, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...stack.env,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_LOG_LEVEL: 'info',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_VISIBILITY_TIMEOUT_SEC: '6',
    PAYFLEET_HEARTBEAT_SEC: '2',
    PAYFLEET_LEASE_MS: '3000',
    PAYFLEET_LEASE_RENEW_MS: '1000',
    PAYFLEET_SHUTDOWN_GRACE_MS: '3000',
    PAYFLEET_FORCE_EXIT_MS: '8000',
    PAYFLEET_RETRY_BASE_MS: '300',
    PAYFLEET_RETRY_MAX_MS: '1000',
    PAYFLEET_MAX_ATTEMPTS: '40',
    PAYFLEET_CONCURRENCY: '16',
    PAYMENT_TOKEN_SERVICE_URL: sb.tokens.url,
    PAYMENT_TOKEN_SERVICE_API_KEY: sb.tokens.apiKey,
    STRIPE_API_BASE_URL: sb.stripe.url,
    STRIPE_API_KEY: sb.stripe.apiKey,
    WORLDPAY_API_BASE_URL: sb.worldpay.url,
    WORLDPAY_MERCHANT_CODE: sb.worldpay.merchantCode,
    WORLDPAY_USERNAME: sb.worldpay.username,
    WORLDPAY_PASSWORD: sb.worldpay.password,
    CHASE_API_BASE_URL: sb.chase.url,
    CHASE_TOKEN_URL: sb.chase.tokenUrl,
    CHASE_CLIENT_ID: sb.chase.clientId,
    CHASE_CLIENT_SECRET: sb.chase.clientSecret,
    CHASE_MERCHANT_ID: sb.chase.merchantId,
    PAYFLEET_PROCESSOR_TIMEOUT_MS: '1500',
    ...extra,
  };
}

export const startAuth = (stack: TestStack, sb: RefundSandboxes) =>
  startProcess('bin/payfleet.js', ['worker', 'auth'], env(stack, sb));

export const startCapture = (stack: TestStack, sb: RefundSandboxes) =>
  startProcess('bin/payfleet.js', ['worker', 'capture'], {
    ...env(stack, sb),
    CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: '8',
    AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
    CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '1',
    CAPTURE_PROCESS_MAXIMUM_RETRIES: '20',
  });

/**
 * The refund worker (test/refund/e2e-worker.ts: its main(), the configured processors, the sandbox
 * processor's calls logged). `clockFile`: the Chase clock's offset; `extra`: more variables.
 */
export function startRefund(
  stack: TestStack,
  sb: RefundSandboxes,
  clockFile: string,
  extra: Record<string, string> = {},
): WorkerProcess {
  writeFileSync(clockFile, '0');
  return startProcess('test/refund/e2e-worker.ts', [], {
    ...env(stack, sb, { REFUND_CONFIRMATION_DELAY_SECONDS: '1', REFUND_TEST_CLOCK_FILE: clockFile }),
    ...extra,
  });
}

export const started = (p: WorkerProcess) => p.waitForLine((l) => l.msg === 'worker started', 60_000);

/** The harness the cases share. */
export class RefundE2e {
  /** Dead letters of refund-requests read so far, by refundId. */
  readonly dead = new Map<string, Record<string, string>[]>();
  /** Every refund worker process started, for the sandbox processor's call lines. */
  readonly refundWorkers: WorkerProcess[] = [];

  constructor(
    readonly stack: TestStack,
    readonly sb: RefundSandboxes,
  ) {}

  /** Authorise `chargeId` at `processor` (and capture it unless `capture: false`); resolves once it is there. */
  async charge(processor: Processor, chargeId: string, amount: number, o: { capture?: boolean; card?: string } = {}) {
    const card = o.card ?? (processor === 'worldpay' ? '4444333322221111' : SANDBOX_CARDS.approve);
    const req = authRequest({ chargeId, processor, amount, paymentTokenId: `tok_${card}_${chargeId}` });
    worldpayOrders.set(`payfleet-auth-${req.authRequestId}`, chargeId);
    await this.send('auth-requests', chargeId, req.authRequestId, req);
    await this.chargeStatus(chargeId, ['AUTHORISATION_SUCCESS']);
    if (o.capture === false) return;
    const captureRequestId = randomUUID();
    await this.send('capture-requests', chargeId, captureRequestId, {
      type: 'CaptureRequested',
      captureRequestId,
      chargeId,
      requestedAt: new Date().toISOString(),
    });
    // Worldpay confirms captures later: CAPTURE_SUBMITTED is refundable.
    await this.chargeStatus(chargeId, processor === 'worldpay' ? ['CAPTURE_SUBMITTED', 'CAPTURED'] : ['CAPTURED']);
  }

  /** Send a RefundRequested; resolves with its ids. `dedupId`: a fresh one for a re-sent duplicate. */
  async refund(chargeId: string, amount: number, refundId = `${chargeId}-r-${randomUUID().slice(0, 8)}`) {
    const body = {
      type: 'RefundRequested',
      refundRequestId: randomUUID(),
      refundId,
      chargeId,
      amount,
      requestedAt: new Date().toISOString(),
    };
    await this.send('refund-requests', chargeId, body.refundRequestId, body);
    return body;
  }

  async refunds(chargeId: string, amounts: readonly number[]) {
    const bodies = amounts.map((amount, i) => ({
      type: 'RefundRequested',
      refundRequestId: randomUUID(),
      refundId: `${chargeId}-r${i + 1}`,
      chargeId,
      amount,
      requestedAt: new Date().toISOString(),
    }));
    // One batch in one group: the refund worker takes them in this order.
    await sendAll(
      this.stack.clients.sqs,
      this.stack.url(this.stack.names.queue('refund-requests')),
      bodies.map((b) => ({ body: JSON.stringify(b), groupId: chargeId, dedupId: b.refundRequestId })),
    );
    return bodies;
  }

  async send(queue: 'auth-requests' | 'capture-requests' | 'refund-requests', groupId: string, dedupId: string, body: unknown) {
    await sendAll(this.stack.clients.sqs, this.stack.url(this.stack.names.queue(queue)), [
      { body: JSON.stringify(body), groupId, dedupId },
    ]);
  }

  async chargeStatus(chargeId: string, wanted: readonly string[], timeoutMs = 60_000) {
    await eventually(
      async () => wanted.includes((await readCharge(this.stack, chargeId))?.status ?? ''),
      timeoutMs,
      `${chargeId} to be ${wanted.join('|')}`,
    );
    return (await readCharge(this.stack, chargeId))!;
  }

  async refundRow(refundId: string): Promise<Record<string, unknown> | undefined> {
    const r = await this.stack.clients.doc.send(
      new GetCommand({ TableName: this.stack.names.table('refunds'), Key: { refundId }, ConsistentRead: true }),
    );
    return r.Item;
  }

  async refundStatus(refundId: string, wanted: readonly string[], timeoutMs = 60_000) {
    await eventually(
      async () => wanted.includes(String((await this.refundRow(refundId))?.status)),
      timeoutMs,
      `${refundId} to be ${wanted.join('|')}`,
    );
    return (await this.refundRow(refundId))!;
  }

  /** Read the refund DLQ until `refundId` has a dead letter; return it. */
  async deadLetter(refundId: string): Promise<Record<string, string>> {
    await eventually(
      async () => {
        for (const m of await drain(this.stack.clients.sqs, this.stack.url(this.stack.names.dlq('refund-requests')))) {
          const attrs: Record<string, string> = { body: m.Body ?? '' };
          for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) attrs[k] = v.StringValue ?? '';
          const id = String((JSON.parse(attrs.body!) as { refundId?: unknown }).refundId);
          this.dead.set(id, [...(this.dead.get(id) ?? []), attrs]);
        }
        return this.dead.has(refundId);
      },
      60_000,
      `a dead letter for ${refundId}`,
    );
    return this.dead.get(refundId)![0]!;
  }

  deadCode = (letter: Record<string, string>) => letter[DLQ_ATTRIBUTES.code];

  /**
   * The processor's own count of `chargeId`'s refunds: performed refunds (replays and duplicates
   * apart), the amount they refund (failed ones apart) and the amount captured. The sandbox processor
   * is stateless: its count is the refund calls the refund workers logged.
   */
  async processorRefunds(
    processor: Processor,
    chargeId: string,
  ): Promise<{ refunds: number; refunded: number; capturedAmount: number }> {
    switch (processor) {
      case 'stripe': {
        const s = this.sb.stripe.stats().charges[chargeId];
        return { refunds: s?.refunds ?? 0, refunded: s?.refunded ?? 0, capturedAmount: s?.capturedAmount ?? 0 };
      }
      case 'worldpay': {
        const s = this.sb.worldpay.stats().byCharge[chargeId];
        return { refunds: s?.refunds ?? 0, refunded: s?.refunded ?? 0, capturedAmount: s?.capturedAmount ?? 0 };
      }
      case 'chase': {
        const s = this.sb.chase.stats().charges[chargeId];
        return { refunds: s?.refunds ?? 0, refunded: s?.refunded ?? 0, capturedAmount: s?.capturedAmount ?? 0 };
      }
      case 'sandbox': {
        const calls = this.sandboxCalls(chargeId).filter((l) => l.outcome !== 'rejected' && l.outcome !== 'error');
        const charge = await readCharge(this.stack, chargeId);
        return {
          refunds: calls.length,
          refunded: calls.reduce((n, l) => n + Number(l.amount), 0),
          capturedAmount: charge?.status === 'CAPTURED' ? charge.amount : 0,
        };
      }
    }
  }

  /** The sandbox processor's refund calls for `chargeId`, across every refund worker. */
  sandboxCalls(chargeId: string) {
    return this.refundWorkers.flatMap((p) =>
      p.lines.filter((l) => l.msg === 'test: sandbox refund call' && l.chargeId === chargeId),
    );
  }

  /** The refund worker's "looked it up first" lines for `refundId` (what each lookup found), across workers. */
  lookups(refundId: string): string[] {
    return this.refundWorkers.flatMap((p) =>
      p.lines
        .filter((l) => l.refundId === refundId && String(l.msg).startsWith('refund was REFUND_SUBMITTED: looked it up'))
        .map((l) => String(l.found)),
    );
  }

  /** How often the refund workers deferred `refundId` because the processor had not confirmed it yet. */
  pendings(refundId: string): number {
    return this.refundWorkers.flatMap((p) =>
      p.lines.filter((l) => l.refundId === refundId && String(l.msg).startsWith('refund pending at the processor')),
    ).length;
  }
}
