import { randomUUID } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import { createDynamoIdempotencyStore } from '../../shared/core/dynamo-idempotency.js';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../shared/core/dynamo-outcomes.js';
import { createDynamoRowWorkStore } from '../../shared/core/dynamo-row-work.js';
import { routeLeases, workAttribute } from '../../shared/core/row-lease.js';
import { createLeaseKeeper, type LeaseKeeper } from '../../shared/core/lease-keeper.js';
import { createOnce } from '../../shared/core/work.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { AuthoriseOutcome, ProcessorConnector, VoidOutcome } from '../../shared/connectors/types.js';
import { createChargeRepository } from '../../shared/charges/repo.js';
import { createLogger, type Logger } from '../../shared/log/logger.js';
import { createAuthHandler, type AuthDeps } from '../../workers/auth/handler.js';
import { parseAuthorisationRequested } from '../../workers/auth/schema.js';
import { chargeReport } from '../../cli/commands/charge.js';
import { authRequest, readCharge, readEvents } from '../support/charges.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

/**
 * The auth handler in process, against the embedded DynamoDB, with a scripted processor: the
 * outcomes a real processor rarely gives on demand (a void refused for good, a void that stays
 * unconfirmed until the last attempt, a mismatch without a reference) and the redelivery paths
 * (completed work item with or without the code, expired work item). Each test is one charge.
 */
let stack: TestStack;
let keeper: LeaseKeeper;
let base: Omit<AuthDeps, 'registry'>;
let log: Logger;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  stack = await setupTestStack('authvoid');
  const doc = stack.clients.doc;
  const rows = createDynamoRowWorkStore({ doc, names: stack.names });
  keeper = createLeaseKeeper({
    store: routeLeases(createDynamoLeaseStore({ doc, tableName: stack.names.table('leases') }), rows),
    leaseMs: 20_000,
    renewMs: 5000,
  });
  log = createLogger({ worker: 'auth', destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  base = {
    once: createOnce({
      keeper,
      idempotency: createDynamoIdempotencyStore({ doc, tableName: stack.names.table('idempotency') }),
      outcomes: createDynamoOutcomeStore({ doc, names: stack.names, ledgerShards: 8 }),
      rows,
      ownerId: 'auth-void-test',
      attemptDeadlineMs: 20_000,
    }),
    charges: createChargeRepository(doc, stack.names.table('charges')),
    tokens: {
      decrypt: async () =>
        new SensitiveCard({
          number: '4242424242424242',
          exp_month: 12,
          exp_year: 2030,
          cvc: '123',
          cardholder_name: 'Test Cardholder',
        }),
      probe: async () => undefined,
      close: async () => undefined,
    },
    maxAttempts: 3,
    live: false,
  };
});
afterAll(async () => {
  await keeper?.releaseAll();
  stack?.close();
});
beforeEach(() => {
  lines.length = 0;
});

/** Drop a request's work item from its charge row (as if it expired, or was written before items lived there). */
async function forgetWorkItem(chargeId: string, workKey: string): Promise<void> {
  await stack.clients.doc.send(
    new UpdateCommand({
      TableName: stack.names.table('charges'),
      Key: { chargeId },
      UpdateExpression: 'REMOVE #w',
      ExpressionAttributeNames: { '#w': workAttribute(workKey) },
    }),
  );
}

/** A processor that answers `authorise` with `answer` and each void with the next of `voids` (then voided). */
function processor(answer: AuthoriseOutcome, voids: VoidOutcome[] = []) {
  const calls = { authorise: 0, voids: [] as { processorRef: string; idempotencyKey: string }[] };
  const connector: ProcessorConnector = {
    name: 'sandbox',
    authorise: async () => {
      calls.authorise++;
      return answer;
    },
    capture: async () => {
      throw new Error('not used');
    },
    void: async ({ processorRef, idempotencyKey }) => {
      calls.voids.push({ processorRef, idempotencyKey });
      return voids.shift() ?? { kind: 'voided' };
    },
    lookup: async () => ({ kind: 'not_found' }),
    refund: async () => {
      throw new Error('not used');
    },
    lookupRefund: async () => {
      throw new Error('not used');
    },
  };
  const registry: ProcessorRegistry = {
    connectors: new Map(),
    get: () => connector,
    has: () => true,
    close: async () => undefined,
  };
  return { calls, handle: createAuthHandler({ ...base, registry }) };
}

const ctx = (receiveCount = 1): HandlerContext => ({
  messageId: randomUUID(),
  groupId: 'g',
  receiveCount,
  signal: new AbortController().signal,
  log,
  setAttempts: () => undefined,
});

function request(chargeId: string, extra: Record<string, unknown> = {}) {
  return parseAuthorisationRequested(JSON.stringify(authRequest({ chargeId, amount: 1000, ...extra })));
}

const mismatch = (processorRef?: string): AuthoriseOutcome => ({
  kind: 'error',
  retryable: false,
  code: 'AMOUNT_MISMATCH',
  message: 'processor authorised 1001 GBP for a request of 1000 GBP',
  ...(processorRef ? { processorRef } : {}),
});

const eventTypes = async (chargeId: string) => (await readEvents(stack, chargeId)).map((e) => e.eventType);
const alertOf = (chargeId: string) => lines.find((l) => l.alert === 'AMOUNT_MISMATCH' && l.chargeId === chargeId);

function letter(r: HandlerResult): { code: string; detail: string } {
  if (r.action !== 'dead-letter') throw new Error(`expected a dead letter, got ${JSON.stringify(r)}`);
  return r;
}

describe('auth worker', () => {
  describe('voiding an authorisation for another amount', () => {
    it('a void refused for good: AUTHORISATION_ERROR with the void FAILED, no cancel event, AMOUNT_MISMATCH, alert says action required', async () => {
      const p = processor(mismatch('ref-failed'), [
        { kind: 'error', retryable: false, code: 'NOT_VOIDABLE', message: 'already captured' },
      ]);
      const r = letter(await p.handle(request('v-failed'), ctx()));
      expect(r.code).toBe('AMOUNT_MISMATCH');
      expect(r.detail).toContain('VOID FAILED for ref ref-failed (NOT_VOIDABLE: already captured)');
      const charge = (await readCharge(stack, 'v-failed'))!;
      expect(charge).toMatchObject({ status: 'AUTHORISATION_ERROR', errorCode: 'AMOUNT_MISMATCH', processorRef: 'ref-failed' });
      expect(charge.authorisationVoid).toMatchObject({ state: 'FAILED', code: 'NOT_VOIDABLE', processorRef: 'ref-failed' });
      // What `payfleet charge` shows the operator.
      expect(chargeReport(charge, [])).toMatchObject({
        status: 'AUTHORISATION_ERROR',
        final: true,
        processorRef: 'ref-failed',
        authorisationVoid: { state: 'FAILED', processorRef: 'ref-failed', code: 'NOT_VOIDABLE' },
      });
      expect(await eventTypes('v-failed')).toEqual(['PAYMENT_CREATED', 'AUTHORISATION_ERROR']);
      expect(alertOf('v-failed')).toMatchObject({
        level: 'error',
        void: 'FAILED',
        voidCode: 'NOT_VOIDABLE',
        processorRef: 'ref-failed',
      });
      expect(String(alertOf('v-failed')?.msg)).toContain('ACTION REQUIRED, release authorisation ref-failed');
    });

    it('an unconfirmed void is retried by the next delivery under the same key, with no second authorisation', async () => {
      const req = request('v-retry');
      const p = processor(mismatch('ref-retry'), [{ kind: 'ambiguous', reason: 'timed out after the request was sent' }]);
      await expect(p.handle(req, ctx(1))).rejects.toMatchObject({ kind: 'retryable', code: 'VOID_OUTCOME_UNKNOWN' });
      expect((await readCharge(stack, 'v-retry'))!.authorisationVoid).toMatchObject({
        state: 'PENDING',
        processorRef: 'ref-retry',
      });
      expect(alertOf('v-retry')).toBeUndefined();

      const r = letter(await p.handle(req, ctx(2)));
      expect(r.code).toBe('AMOUNT_MISMATCH');
      expect(p.calls.authorise).toBe(1);
      expect(p.calls.voids).toEqual([
        { processorRef: 'ref-retry', idempotencyKey: `payfleet-void-${req.authRequestId}` },
        { processorRef: 'ref-retry', idempotencyKey: `payfleet-void-${req.authRequestId}` },
      ]);
      expect((await readCharge(stack, 'v-retry'))!.status).toBe('AUTHORISATION_ERROR_CANCELLED');
      expect(await eventTypes('v-retry')).toEqual([
        'PAYMENT_CREATED',
        'AUTHORISATION_ERROR',
        'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR',
      ]);
      expect(alertOf('v-retry')).toMatchObject({ void: 'VOIDED', processorRef: 'ref-retry' });
    });

    it('a void still failing on the last attempt is recorded FAILED and dead-lettered AMOUNT_MISMATCH (never RETRIES_EXHAUSTED)', async () => {
      const busy: VoidOutcome = { kind: 'error', retryable: true, code: 'PROCESSOR_ERROR', message: 'HTTP 500' };
      const p = processor(mismatch('ref-last'), [busy, busy]);
      const req = request('v-last');
      await expect(p.handle(req, ctx(1))).rejects.toMatchObject({ code: 'PROCESSOR_ERROR' });
      // The consumer's budget is 3: this delivery is its last.
      const r = letter(await p.handle(req, ctx(3)));
      expect(r.code).toBe('AMOUNT_MISMATCH');
      expect((await readCharge(stack, 'v-last'))!.authorisationVoid).toMatchObject({ state: 'FAILED', code: 'PROCESSOR_ERROR' });
      expect(alertOf('v-last')).toMatchObject({ void: 'FAILED' });
    });

    it('an approval for another amount (as a lookup or the sandbox reports it) is voided under its reference', async () => {
      const p = processor({ kind: 'approved', processorRef: 'ref-approved', amount: 1001, currency: 'GBP' });
      const r = letter(await p.handle(request('v-approved'), ctx()));
      expect(r).toMatchObject({ code: 'AMOUNT_MISMATCH' });
      expect(r.detail).toContain('processor authorised 1001 GBP for a request of 1000 GBP');
      expect(p.calls.voids.map((v) => v.processorRef)).toEqual(['ref-approved']);
      expect(await readCharge(stack, 'v-approved')).toMatchObject({
        status: 'AUTHORISATION_ERROR_CANCELLED',
        processorRef: 'ref-approved',
      });
    });

    it('a mismatch without a reference: AUTHORISATION_ERROR, nothing voided, the alert says the authorisation must be found', async () => {
      const p = processor(mismatch());
      expect(letter(await p.handle(request('v-noref'), ctx())).code).toBe('AMOUNT_MISMATCH');
      expect(p.calls.voids).toHaveLength(0);
      const charge = (await readCharge(stack, 'v-noref'))!;
      expect(charge.status).toBe('AUTHORISATION_ERROR');
      expect(charge.authorisationVoid).toBeUndefined();
      expect(alertOf('v-noref')).toMatchObject({ void: 'NONE' });
      expect(String(alertOf('v-noref')?.msg)).toContain('nothing could be voided');
    });
  });

  describe('evidence and redeliveries', () => {
    it("records every answer's reference: a decline's and a refusal's", async () => {
      await processor({ kind: 'declined', code: 'card_declined', message: 'declined', processorRef: 'ref-decline' }).handle(
        request('e-decline'),
        ctx(),
      );
      expect(await readCharge(stack, 'e-decline')).toMatchObject({
        status: 'AUTHORISATION_REJECTED',
        processorRef: 'ref-decline',
      });
      const refused: AuthoriseOutcome = {
        kind: 'error',
        retryable: false,
        code: 'WORLDPAY_ERROR_7',
        message: 'refused',
        processorRef: 'ref-refused',
      };
      expect(letter(await processor(refused).handle(request('e-refused'), ctx())).code).toBe('WORLDPAY_ERROR_7');
      expect(await readCharge(stack, 'e-refused')).toMatchObject({ status: 'AUTHORISATION_ERROR', processorRef: 'ref-refused' });
      expect((await readEvents(stack, 'e-refused'))[1]!.details).toMatchObject({
        error_code: 'WORLDPAY_ERROR_7',
        processor_ref: 'ref-refused',
      });
    });

    it('a redelivery of a dead-lettered request is dead-lettered again with its code and the first detail; a success is acknowledged', async () => {
      const rejected = processor({ kind: 'error', retryable: false, code: 'PROCESSOR_REJECTED', message: 'no' });
      const req = request('r-rejected');
      const first = letter(await rejected.handle(req, ctx()));
      const again = letter(await rejected.handle(req, ctx()));
      expect(again.code).toBe('PROCESSOR_REJECTED');
      expect(again.detail).toBe(
        `charge r-rejected is already AUTHORISATION_ERROR (PROCESSOR_REJECTED); this request was not processed again; it said: ${first.detail}`,
      );
      expect(rejected.calls.authorise).toBe(1);

      const approved = processor({ kind: 'approved', processorRef: 'ref-ok', amount: 1000, currency: 'GBP' });
      const ok = request('r-ok');
      expect(await approved.handle(ok, ctx())).toEqual({ action: 'ack' });
      expect(await approved.handle(ok, ctx())).toEqual({ action: 'ack' });
      expect(approved.calls.authorise).toBe(1);
    });

    it('a work item that kept the status only (written before the code was kept): the code comes from the charge', async () => {
      const p = processor({ kind: 'error', retryable: false, code: 'PROCESSOR_REJECTED', message: 'no' });
      const req = request('r-legacy');
      await p.handle(req, ctx());
      await stack.clients.doc.send(
        new UpdateCommand({
          TableName: stack.names.table('charges'),
          Key: { chargeId: req.chargeId },
          UpdateExpression: 'SET #w.#r = :r',
          ExpressionAttributeNames: { '#w': workAttribute(`auth#${req.authRequestId}`), '#r': 'result' },
          ExpressionAttributeValues: { ':r': { status: 'AUTHORISATION_ERROR' } },
        }),
      );
      expect(letter(await p.handle(req, ctx()))).toMatchObject({ code: 'PROCESSOR_REJECTED' });
    });

    it('a work item that expired: the same request meets the charge past authorisation and is dead-lettered again, not acknowledged', async () => {
      const p = processor(mismatch('ref-expired'));
      const req = request('r-expired');
      await p.handle(req, ctx());
      await forgetWorkItem(req.chargeId, `auth#${req.authRequestId}`);
      const r = letter(await p.handle(req, ctx()));
      expect(r.code).toBe('AMOUNT_MISMATCH');
      expect(r.detail).toContain('is already AUTHORISATION_ERROR_CANCELLED (AMOUNT_MISMATCH)');
      expect(r.detail).toContain('voided at the processor (ref ref-expired)');
      expect(p.calls.voids).toHaveLength(1);
      // The same path for a successful charge still acknowledges.
      const approved = processor({ kind: 'approved', processorRef: 'ref-ok2', amount: 1000, currency: 'GBP' });
      const ok = request('r-expired-ok');
      await approved.handle(ok, ctx());
      await forgetWorkItem(ok.chargeId, `auth#${ok.authRequestId}`);
      expect(await approved.handle(ok, ctx())).toEqual({ action: 'ack' });
    });
  });
});
