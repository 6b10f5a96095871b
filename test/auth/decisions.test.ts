import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitBreaker, runInAttemptScope } from '../../shared/core/breaker.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import { createSandboxConnector } from '../../shared/connectors/sandbox.js';
import type { AuthoriseOutcome, LookupOutcome, ProcessorConnector, VoidOutcome } from '../../shared/connectors/types.js';
import type { Charge } from '../../shared/charges/charge.js';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createAuthHandler } from '../../workers/auth/handler.js';
import { parseAuthorisationRequested } from '../../workers/auth/schema.js';
import { authRequest } from '../support/charges.js';
import { fakeOnceStores, type FakeOnceStores } from '../support/fake-once-stores.js';

/**
 * The auth worker's decision table, fast: the handler on in-memory stores
 * (test/support/fake-once-stores.ts) with a scripted processor and token service. The end-to-end
 * tests beside this one prove the same paths against the emulators and real processes.
 */
const MAX_ATTEMPTS = 3;
let stores: FakeOnceStores;
afterEach(async () => {
  await stores?.keeper.releaseAll();
});

interface Script {
  /** Answers of authorise, in order (the last one repeats). */
  readonly authorise?: AuthoriseOutcome[];
  /** Answers of lookup, in order (then not_found). */
  readonly lookup?: LookupOutcome[];
  /** The token service refuses the token for good. */
  readonly tokenGone?: boolean;
  /** The token service fails transiently this many times first. */
  readonly tokenUnavailable?: number;
  /** Answers of void, in order (then voided). */
  readonly voids?: VoidOutcome[];
  /** The processor's breaker opens during this call (a processor outage). */
  readonly outage?: { readonly breaker: CircuitBreaker; readonly during: 'authorise' | 'void' };
  /** A real connector instead of the scripted one. */
  readonly connector?: ProcessorConnector;
}

function setup(script: Script = {}) {
  stores = fakeOnceStores();
  const calls = { authorise: 0, lookup: 0, voids: 0, statusAtAuthorise: [] as unknown[] };
  const authorise = [...(script.authorise ?? [{ kind: 'approved', processorRef: 'pi_1', amount: 1000, currency: 'GBP' }])];
  const lookup = [...(script.lookup ?? [])];
  const voids = [...(script.voids ?? [])];
  const tokenFailures = { left: script.tokenUnavailable };
  const connector: ProcessorConnector = {
    name: 'sandbox',
    authorise: async () => {
      calls.authorise++;
      // What is durable at the moment the processor is asked (the lock state must be).
      calls.statusAtAuthorise.push(stores.db.get('charges', { chargeId: 'c1' })?.status);
      if (script.outage?.during === 'authorise') script.outage.breaker.failed(script.outage.breaker.admit());
      return (authorise.length > 1 ? authorise.shift() : authorise[0])!;
    },
    capture: async () => expect.unreachable('auth never captures'),
    void: async () => {
      calls.voids++;
      if (script.outage?.during === 'void') script.outage.breaker.failed(script.outage.breaker.admit());
      return voids.shift() ?? { kind: 'voided' };
    },
    lookup: async () => {
      calls.lookup++;
      return lookup.shift() ?? { kind: 'not_found' };
    },
    refund: async () => expect.unreachable('auth never refunds'),
    lookupRefund: async () => expect.unreachable('auth never refunds'),
  };
  const registry: ProcessorRegistry = {
    connectors: new Map(),
    get: () => script.connector ?? connector,
    has: () => true,
    close: async () => undefined,
  };
  const handle = createAuthHandler({
    once: stores.once,
    charges: stores.charges,
    registry,
    tokens: {
      decrypt: async () => {
        if (script.tokenGone) throw new TerminalError('TOKEN_EXPIRED', 'token expired');
        if ((tokenFailures.left ?? 0) > 0) {
          tokenFailures.left!--;
          throw new RetryableError('TOKEN_SERVICE_UNAVAILABLE', 'token service timed out');
        }
        return new SensitiveCard({
          number: '4242424242424242',
          exp_month: 12,
          exp_year: 2030,
          cvc: '123',
          cardholder_name: 'Test',
        });
      },
      probe: async () => undefined,
      close: async () => undefined,
    },
    maxAttempts: MAX_ATTEMPTS,
    live: false,
    clock: stores.clock.now,
  });
  return { calls, handle };
}

const ctx = (receiveCount = 1): HandlerContext => ({
  messageId: randomUUID(),
  groupId: 'g',
  receiveCount,
  signal: new AbortController().signal,
  log: silentLogger(),
  setAttempts: () => undefined,
});

const request = (extra: Record<string, unknown> = {}) =>
  parseAuthorisationRequested(JSON.stringify(authRequest({ chargeId: 'c1', amount: 1000, processor: 'sandbox', ...extra })));

/** A charge another attempt left behind (its commits made earlier). */
function seeded(status: Charge['status'], extra: Partial<Charge> = {}): Charge {
  const at = '2026-11-21T11:00:00.000Z';
  return {
    chargeId: 'c1',
    gatewayAccountId: 'gw-1',
    processor: 'sandbox',
    amount: 1000,
    currency: 'GBP',
    reference: 'ref-c1',
    description: 'test charge',
    status,
    live: false,
    version: 2,
    eventSeq: 1,
    createdAt: at,
    updatedAt: at,
    history: [
      { status: 'CREATED', at },
      { status, at },
    ],
    ...extra,
  };
}

const charge = () => stores.charges.get('c1');
const eventTypes = () => stores.events('c1').map((e) => e.eventType);

describe('auth worker', () => {
  describe('decisions on the processor answer', () => {
    const rows: {
      answer: AuthoriseOutcome;
      receiveCount: number;
      verdict: HandlerResult;
      status: Charge['status'];
      fields: Partial<Charge>;
    }[] = [
      {
        answer: { kind: 'approved', processorRef: 'pi_ok', amount: 1000, currency: 'GBP' },
        receiveCount: 1,
        verdict: { action: 'ack' },
        status: 'AUTHORISATION_SUCCESS',
        fields: { processorRef: 'pi_ok', cardLast4: '4242' },
      },
      {
        answer: { kind: 'declined', code: 'card_declined', message: 'no', processorRef: 'pi_no' },
        receiveCount: 1,
        verdict: { action: 'ack' },
        status: 'AUTHORISATION_REJECTED',
        fields: { declineCode: 'card_declined', processorRef: 'pi_no' },
      },
      {
        answer: { kind: 'error', retryable: false, code: 'PROCESSOR_REJECTED', message: 'bad request' },
        receiveCount: 1,
        verdict: { action: 'dead-letter', code: 'PROCESSOR_REJECTED', detail: 'PROCESSOR_REJECTED: bad request' },
        status: 'AUTHORISATION_ERROR',
        fields: { errorCode: 'PROCESSOR_REJECTED' },
      },
      {
        answer: { kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' },
        receiveCount: MAX_ATTEMPTS,
        verdict: { action: 'dead-letter', code: 'RETRIES_EXHAUSTED', detail: 'PROCESSOR_UNAVAILABLE: HTTP 503' },
        status: 'AUTHORISATION_ERROR',
        fields: { errorCode: 'PROCESSOR_UNAVAILABLE' },
      },
    ];
    it.each(rows)(
      '$answer.kind (retryable: $answer.retryable, delivery $receiveCount) -> $status, $verdict.action',
      async (row) => {
        const { calls, handle } = setup({ authorise: [row.answer] });
        expect(await handle(request(), ctx(row.receiveCount))).toEqual(row.verdict);
        expect(await charge()).toMatchObject({ status: row.status, ...row.fields });
        expect((await charge())!.history.map((h) => h.status)).toEqual(['CREATED', 'AUTHORISATION_READY', row.status]);
        // PAYMENT_CREATED is still sequence 1: owed by write 1, emitted ahead of the outcome's event.
        expect(stores.events('c1').map((e) => [e.sequence, e.eventType])).toEqual([
          [1, 'PAYMENT_CREATED'],
          [2, expect.any(String)],
        ]);
        // Two writes: write 1 (the row open) made the charge READY before the call, and one commit
        // recorded the outcome, completed the work item and released the lease.
        expect(stores.opens).toHaveLength(1);
        expect(calls.statusAtAuthorise).toEqual(['AUTHORISATION_READY']);
        expect(stores.commits.map((c) => [c.workItem?.result, c.release])).toEqual([[expect.objectContaining({ status: row.status }), true]]);
      },
    );

    it('a retryable error before the last attempt is retried: the charge stays AUTHORISATION_READY, the request open', async () => {
      const { handle } = setup({
        authorise: [{ kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' }],
      });
      const req = request();
      await expect(handle(req, ctx(1))).rejects.toMatchObject({ kind: 'retryable', code: 'PROCESSOR_UNAVAILABLE' });
      expect((await charge())!.status).toBe('AUTHORISATION_READY');
      expect(stores.workItems.get(`auth#${req.authRequestId}`)?.status).toBe('IN_PROGRESS');
    });

    it('on the last attempt a processor outage (its breaker opened) is retried, never recorded as the charge failing', async () => {
      const breaker = new CircuitBreaker({ name: 'sandbox', failureThreshold: 1, now: () => 0 });
      const { handle } = setup({
        authorise: [{ kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' }],
        outage: { breaker, during: 'authorise' },
      });
      const attempt = runInAttemptScope({ key: 'g', failed: new Set() }, () => handle(request(), ctx(MAX_ATTEMPTS)));
      await expect(attempt).rejects.toMatchObject({ kind: 'retryable', code: 'PROCESSOR_UNAVAILABLE' });
      expect((await charge())!.status).toBe('AUTHORISATION_READY');
      // Nothing emitted yet: PAYMENT_CREATED is owed and goes out with the outcome.
      expect(eventTypes()).toEqual([]);
      breaker.dispose();
    });

    it('an unknown outcome is looked up at once; still unknown, the next delivery resolves by lookup and never authorises twice', async () => {
      const { calls, handle } = setup({
        authorise: [{ kind: 'ambiguous', reason: 'timed out after the request was sent' }],
        lookup: [{ kind: 'not_found' }, { kind: 'authorised', processorRef: 'pi_late', amount: 1000, currency: 'GBP' }],
      });
      const req = request();
      await expect(handle(req, ctx(1))).rejects.toMatchObject({ code: 'AUTHORISATION_OUTCOME_UNKNOWN' });
      expect((await charge())!.status).toBe('AUTHORISATION_READY');
      expect(await handle(req, ctx(2))).toEqual({ action: 'ack' });
      expect(calls).toMatchObject({ authorise: 1, lookup: 2 });
      expect(await charge()).toMatchObject({ status: 'AUTHORISATION_SUCCESS', processorRef: 'pi_late' });
    });

    it('on the last attempt a void that fails while the processor is down keeps its PENDING void, never FAILED', async () => {
      const breaker = new CircuitBreaker({ name: 'sandbox', failureThreshold: 1, now: () => 0 });
      const { handle } = setup({
        authorise: [{ kind: 'approved', processorRef: 'pi_more', amount: 1001, currency: 'GBP' }],
        voids: [{ kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' }],
        outage: { breaker, during: 'void' },
      });
      const attempt = runInAttemptScope({ key: 'g', failed: new Set() }, () => handle(request(), ctx(MAX_ATTEMPTS)));
      await expect(attempt).rejects.toMatchObject({ kind: 'retryable', code: 'PROCESSOR_UNAVAILABLE' });
      expect(await charge()).toMatchObject({ status: 'AUTHORISATION_ERROR', authorisationVoid: { state: 'PENDING' } });
      breaker.dispose();
    });

    it('an approval for another amount is recorded AUTHORISATION_ERROR, voided, and dead-lettered AMOUNT_MISMATCH', async () => {
      const { calls, handle } = setup({
        authorise: [{ kind: 'approved', processorRef: 'pi_more', amount: 1001, currency: 'GBP' }],
      });
      expect(await handle(request(), ctx())).toMatchObject({ action: 'dead-letter', code: 'AMOUNT_MISMATCH' });
      expect(calls.voids).toBe(1);
      expect(await charge()).toMatchObject({
        status: 'AUTHORISATION_ERROR_CANCELLED',
        errorCode: 'AMOUNT_MISMATCH',
        authorisationVoid: { state: 'VOIDED' },
      });
      expect(eventTypes()).toEqual([
        'PAYMENT_CREATED',
        'AUTHORISATION_ERROR',
        'CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR',
      ]);
    });
  });

  describe('decisions on the charge found', () => {
    it('AUTHORISATION_READY from an earlier attempt: looked up first, recorded without a second authorisation', async () => {
      const req = request();
      const { calls, handle } = setup({
        lookup: [{ kind: 'authorised', processorRef: 'pi_before', amount: 1000, currency: 'GBP' }],
      });
      stores.seedCharge(seeded('AUTHORISATION_READY', { authRequestId: req.authRequestId }));
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      expect(calls).toMatchObject({ authorise: 0, lookup: 1 });
      expect(await charge()).toMatchObject({
        status: 'AUTHORISATION_SUCCESS',
        processorRef: 'pi_before',
        version: 3,
        eventSeq: 2,
      });
    });

    it('the token gone while AUTHORISATION_READY: what the lookup finds is recorded; nothing found is AUTHORISATION_ERROR with the token code', async () => {
      const req = request();
      const found = setup({
        tokenGone: true,
        lookup: [{ kind: 'authorised', processorRef: 'pi_found', amount: 1000, currency: 'GBP' }],
      });
      stores.seedCharge(seeded('AUTHORISATION_READY', { authRequestId: req.authRequestId }));
      expect(await found.handle(req, ctx())).toEqual({ action: 'ack' });
      expect(await charge()).toMatchObject({ status: 'AUTHORISATION_SUCCESS', processorRef: 'pi_found' });

      const nothing = setup({ tokenGone: true });
      stores.seedCharge(seeded('AUTHORISATION_READY', { authRequestId: req.authRequestId }));
      expect(await nothing.handle(req, ctx())).toEqual({
        action: 'dead-letter',
        code: 'TOKEN_EXPIRED',
        detail: 'TOKEN_EXPIRED: token expired',
      });
      expect(await charge()).toMatchObject({ status: 'AUTHORISATION_ERROR', errorCode: 'TOKEN_EXPIRED' });
      expect(nothing.calls.authorise).toBe(0);
    });

    it('the token gone while AUTHORISATION_READY on the stateless sandbox processor: AUTHORISATION_ERROR dead-lettered TOKEN_EXPIRED, never a guessed approval', async () => {
      const req = request();
      const { handle } = setup({ tokenGone: true, connector: createSandboxConnector() });
      stores.seedCharge(seeded('AUTHORISATION_READY', { authRequestId: req.authRequestId }));
      expect(await handle(req, ctx())).toMatchObject({ action: 'dead-letter', code: 'TOKEN_EXPIRED' });
      expect(await charge()).toMatchObject({ status: 'AUTHORISATION_ERROR', errorCode: 'TOKEN_EXPIRED' });
    });

    it('the token service failing on the first attempt takes the created charge back: the next delivery authorises at once, without a lookup', async () => {
      const req = request();
      const { calls, handle } = setup({ tokenUnavailable: 1 });
      await expect(handle(req, ctx(1))).rejects.toMatchObject({ kind: 'retryable', code: 'TOKEN_SERVICE_UNAVAILABLE' });
      expect(await charge()).toBeUndefined();
      expect(await handle(req, ctx(2))).toEqual({ action: 'ack' });
      expect(calls).toMatchObject({ authorise: 1, lookup: 0 });
      expect((await charge())!.status).toBe('AUTHORISATION_SUCCESS');
    });

    it('the token gone for a new request: dead-lettered by the consumer, no charge created', async () => {
      const { calls, handle } = setup({ tokenGone: true });
      await expect(handle(request(), ctx())).rejects.toMatchObject({ kind: 'terminal', code: 'TOKEN_EXPIRED' });
      expect(await charge()).toBeUndefined();
      expect(calls).toMatchObject({ authorise: 0, lookup: 0 });
    });

    it('refuses a charge that differs, one another request is authorising, and one another request decided', async () => {
      const { calls, handle } = setup();
      stores.seedCharge(seeded('CREATED', { amount: 999 }));
      await expect(handle(request(), ctx())).rejects.toMatchObject({ kind: 'terminal', code: 'CHARGE_MISMATCH' });
      stores.seedCharge(seeded('AUTHORISATION_READY', { authRequestId: randomUUID() }));
      await expect(handle(request(), ctx())).rejects.toMatchObject({ kind: 'retryable', code: 'AUTHORISATION_IN_PROGRESS' });
      stores.seedCharge(seeded('AUTHORISATION_SUCCESS', { authRequestId: randomUUID() }));
      await expect(handle(request(), ctx())).rejects.toMatchObject({ kind: 'terminal', code: 'CHARGE_NOT_AUTHORISABLE' });
      expect(calls.authorise).toBe(0);
    });

    it('its own request again with the work item gone: a success is acknowledged, a final error dead-lettered again with its code', async () => {
      const req = request();
      const { calls, handle } = setup();
      stores.seedCharge(seeded('AUTHORISATION_SUCCESS', { authRequestId: req.authRequestId }));
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      expect(stores.workItems.get(`auth#${req.authRequestId}`)).toMatchObject({
        status: 'COMPLETED',
        result: { status: 'AUTHORISATION_SUCCESS' },
      });

      stores.workItems.clear();
      stores.seedCharge(
        seeded('AUTHORISATION_ERROR', { authRequestId: req.authRequestId, errorCode: 'PROCESSOR_REJECTED', version: 5 }),
      );
      expect(await handle(req, ctx())).toEqual({
        action: 'dead-letter',
        code: 'PROCESSOR_REJECTED',
        detail: 'charge c1 is already AUTHORISATION_ERROR (PROCESSOR_REJECTED); this request was not processed again',
      });
      expect(calls.authorise).toBe(0);
    });
  });

  describe('duplicates', () => {
    it('a completed request is answered from its work item: an ack again, or its letter again; the processor is not asked twice', async () => {
      const ok = setup();
      const req = request();
      await ok.handle(req, ctx());
      expect(await ok.handle(req, ctx())).toEqual({ action: 'ack' });
      expect(ok.calls.authorise).toBe(1);

      const refused = setup({ authorise: [{ kind: 'error', retryable: false, code: 'PROCESSOR_REJECTED', message: 'no' }] });
      const first = await refused.handle(req, ctx());
      const again = await refused.handle(req, ctx());
      expect(again).toEqual({
        action: 'dead-letter',
        code: 'PROCESSOR_REJECTED',
        detail: `charge c1 is already AUTHORISATION_ERROR (PROCESSOR_REJECTED); this request was not processed again; it said: ${(first as { detail: string }).detail}`,
      });
      expect(refused.calls.authorise).toBe(1);
    });
  });
});
