import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CircuitBreaker, runInAttemptScope } from '../../shared/core/breaker.js';
import type { HandlerContext, HandlerResult } from '../../shared/core/consumer.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';
import type { CaptureOutcome, LookupOutcome, ProcessorConnector } from '../../shared/connectors/types.js';
import type { Charge, ChargeStatus } from '../../shared/charges/charge.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createCaptureHandler } from '../../workers/capture/handler.js';
import { parseCaptureRequested } from '../../workers/capture/schema.js';
import { fakeOnceStores, type FakeOnceStores } from '../support/fake-once-stores.js';

/**
 * The capture worker's decision table, fast: the handler on in-memory stores
 * (test/support/fake-once-stores.ts) with a scripted processor. capture-e2e.test.ts proves the same
 * paths against the emulators and real processes.
 */
const MAX_RETRIES = 3;
const RETRY_DELAY_SEC = 60;
let stores: FakeOnceStores;
afterEach(async () => {
  await stores?.keeper.releaseAll();
});

function setup(script: { capture?: CaptureOutcome; lookup?: LookupOutcome; outage?: CircuitBreaker } = {}) {
  stores = fakeOnceStores();
  const calls = { capture: 0, lookup: 0 };
  const connector: ProcessorConnector = {
    name: 'sandbox',
    authorise: async () => expect.unreachable('capture never authorises'),
    capture: async () => {
      calls.capture++;
      if (script.outage) script.outage.failed(script.outage.admit());
      return script.capture ?? { kind: 'captured', processorRef: 'pi_1' };
    },
    void: async () => expect.unreachable('capture never voids'),
    lookup: async () => {
      calls.lookup++;
      return script.lookup ?? { kind: 'not_found' };
    },
    refund: async () => expect.unreachable('capture never refunds'),
    lookupRefund: async () => expect.unreachable('capture never refunds'),
  };
  const registry: ProcessorRegistry = {
    connectors: new Map(),
    get: () => connector,
    has: () => true,
    close: async () => undefined,
  };
  const handle = createCaptureHandler({
    once: stores.once,
    charges: stores.charges,
    registry,
    settings: { maxRetries: MAX_RETRIES, retryDelaySec: RETRY_DELAY_SEC },
    clock: stores.clock.now,
  });
  return { calls, handle };
}

const ctx = (): HandlerContext => ({
  messageId: randomUUID(),
  groupId: 'c1',
  receiveCount: 1,
  signal: new AbortController().signal,
  log: silentLogger(),
  setAttempts: () => undefined,
});

const request = (captureRequestId = randomUUID()) =>
  parseCaptureRequested(
    JSON.stringify({ type: 'CaptureRequested', captureRequestId, chargeId: 'c1', requestedAt: '2026-11-21T12:00:00.000Z' }),
  );

/** A charge in `status` as earlier commits left it; `history` lists the statuses after AUTHORISATION_SUCCESS. */
function seed(status: ChargeStatus, extra: Partial<Charge> = {}, after: ChargeStatus[] = []): void {
  const at = '2026-11-21T11:00:00.000Z';
  const path: ChargeStatus[] = ['CREATED', 'AUTHORISATION_READY', 'AUTHORISATION_SUCCESS', ...after];
  stores.seedCharge({
    chargeId: 'c1',
    gatewayAccountId: 'gw-1',
    processor: 'sandbox',
    amount: 1000,
    currency: 'GBP',
    reference: 'ref-c1',
    description: 'test charge',
    status,
    live: false,
    version: path.length,
    eventSeq: 2,
    createdAt: at,
    updatedAt: at,
    history: (path.at(-1) === status ? path : [...path, status]).map((s) => ({ status: s, at })),
    processorRef: 'pi_1',
    ...extra,
  });
}

const charge = async () => (await stores.charges.get('c1'))!;
const newEventTypes = () => stores.events('c1').map((e) => e.eventType);

describe('capture worker', () => {
  describe('decisions on the charge found', () => {
    const refusals: { status: ChargeStatus | undefined; error: { kind: string; code: string } }[] = [
      { status: undefined, error: { kind: 'retryable', code: 'NOT_YET_AUTHORISED' } },
      { status: 'CREATED', error: { kind: 'retryable', code: 'NOT_YET_AUTHORISED' } },
      { status: 'AUTHORISATION_READY', error: { kind: 'retryable', code: 'NOT_YET_AUTHORISED' } },
      { status: 'AUTHORISATION_REJECTED', error: { kind: 'terminal', code: 'NOT_CAPTURABLE' } },
      { status: 'AUTHORISATION_ERROR', error: { kind: 'terminal', code: 'NOT_CAPTURABLE' } },
      { status: 'AUTHORISATION_ERROR_CANCELLED', error: { kind: 'terminal', code: 'NOT_CAPTURABLE' } },
    ];
    it.each(refusals)('$status: $error.code, nothing written, no processor call', async ({ status, error }) => {
      const { calls, handle } = setup();
      if (status) seed(status);
      await expect(handle(request(), ctx())).rejects.toMatchObject(error);
      expect(stores.commits).toHaveLength(0);
      expect(calls).toEqual({ capture: 0, lookup: 0 });
    });

    const settled: { name: string; status: ChargeStatus; extra: Partial<Charge>; verdict: HandlerResult }[] = [
      { name: 'CAPTURED', status: 'CAPTURED', extra: {}, verdict: { action: 'ack' } },
      { name: 'CAPTURE_SUBMITTED', status: 'CAPTURE_SUBMITTED', extra: {}, verdict: { action: 'ack' } },
      // Abandoned after the maximum attempts: acknowledged then, acknowledged now.
      { name: 'CAPTURE_ERROR (abandoned)', status: 'CAPTURE_ERROR', extra: {}, verdict: { action: 'ack' } },
      {
        name: 'CAPTURE_ERROR (refused)',
        status: 'CAPTURE_ERROR',
        extra: { errorCode: 'NOT_CAPTURABLE' },
        verdict: {
          action: 'dead-letter',
          code: 'NOT_CAPTURABLE',
          detail: 'charge c1 is already CAPTURE_ERROR (NOT_CAPTURABLE); this request was not processed again',
        },
      },
    ];
    it.each(settled)('$name: $verdict.action, the request completed, no processor call', async ({ status, extra, verdict }) => {
      const { calls, handle } = setup();
      seed(status, extra);
      const req = request();
      expect(await handle(req, ctx())).toEqual(verdict);
      expect(stores.workItems.get(`capture#${req.captureRequestId}`)).toMatchObject({ status: 'COMPLETED', result: { status } });
      expect(stores.commits.flatMap((c) => c.changes)).toEqual([]);
      expect(calls).toEqual({ capture: 0, lookup: 0 });
    });

    it('CAPTURE_APPROVED_RETRY with the maximum attempts in its history: CAPTURE_ERROR, acknowledged, no processor call', async () => {
      const { calls, handle } = setup();
      seed('CAPTURE_APPROVED_RETRY', {}, [
        'CAPTURE_APPROVED',
        'CAPTURE_READY',
        'CAPTURE_APPROVED_RETRY',
        'CAPTURE_READY',
        'CAPTURE_APPROVED_RETRY',
        'CAPTURE_READY',
      ]);
      expect(await handle(request(), ctx())).toEqual({ action: 'ack' });
      expect(await charge()).toMatchObject({ status: 'CAPTURE_ERROR' });
      expect((await charge()).errorCode).toBeUndefined();
      expect(newEventTypes()).toEqual(['CAPTURE_ABANDONED_AFTER_TOO_MANY_RETRIES']);
      expect(calls.capture).toBe(0);
    });

    it('CAPTURE_READY from an attempt that died: looked up first; found captured, recorded without a second capture call', async () => {
      const { calls, handle } = setup({ lookup: { kind: 'captured', processorRef: 'pi_1', amount: 1000, currency: 'GBP' } });
      seed('CAPTURE_READY', { captureQueue: 'AWAITING', captureDueAt: '2026-11-21T11:00:00.000Z' }, ['CAPTURE_APPROVED']);
      expect(await handle(request(), ctx())).toEqual({ action: 'ack' });
      expect(calls).toEqual({ capture: 0, lookup: 1 });
      const after = await charge();
      expect(after.status).toBe('CAPTURED');
      expect(after.captureQueue).toBeUndefined();
    });
  });

  describe('decisions on the processor answer', () => {
    const rows: { answer: CaptureOutcome; verdict: HandlerResult; status: ChargeStatus; events: string[]; awaiting: boolean }[] =
      [
        {
          answer: { kind: 'captured', processorRef: 'pi_1' },
          verdict: { action: 'ack' },
          status: 'CAPTURED',
          events: ['USER_APPROVED_FOR_CAPTURE', 'CAPTURE_CONFIRMED'],
          awaiting: false,
        },
        {
          answer: { kind: 'submitted', processorRef: 'pi_1' },
          verdict: { action: 'ack' },
          status: 'CAPTURE_SUBMITTED',
          events: ['USER_APPROVED_FOR_CAPTURE', 'CAPTURE_SUBMITTED'],
          awaiting: false,
        },
        {
          answer: { kind: 'error', retryable: false, code: 'NOT_CAPTURABLE', message: 'intent canceled' },
          verdict: { action: 'dead-letter', code: 'NOT_CAPTURABLE', detail: 'capture refused: NOT_CAPTURABLE: intent canceled' },
          status: 'CAPTURE_ERROR',
          events: ['USER_APPROVED_FOR_CAPTURE', 'CAPTURE_ERRORED'],
          awaiting: false,
        },
        {
          answer: { kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' },
          verdict: {
            action: 'defer',
            delaySec: RETRY_DELAY_SEC,
            countsAsAttempt: false,
            reason: 'PROCESSOR_UNAVAILABLE: HTTP 503',
          },
          status: 'CAPTURE_APPROVED_RETRY',
          events: ['USER_APPROVED_FOR_CAPTURE'],
          awaiting: true,
        },
        {
          answer: { kind: 'ambiguous', reason: 'timed out' },
          verdict: { action: 'defer', delaySec: RETRY_DELAY_SEC, countsAsAttempt: false, reason: 'outcome unknown: timed out' },
          status: 'CAPTURE_APPROVED_RETRY',
          events: ['USER_APPROVED_FOR_CAPTURE'],
          awaiting: true,
        },
      ];
    it.each(rows)('$answer.kind (retryable: $answer.retryable) -> $status, $verdict.action', async (row) => {
      const { calls, handle } = setup({ capture: row.answer });
      seed('AUTHORISATION_SUCCESS');
      const req = request();
      expect(await handle(req, ctx())).toEqual(row.verdict);
      const after = await charge();
      expect(after.status).toBe(row.status);
      expect(after.history.map((h) => h.status).slice(3)).toEqual(['CAPTURE_APPROVED', 'CAPTURE_READY', row.status]);
      expect(after.captureRequestId).toBe(req.captureRequestId);
      expect(newEventTypes()).toEqual(row.events);
      expect(after.captureQueue !== undefined).toBe(row.awaiting);
      // A deferred request stays open for its next delivery; every other answer completes it.
      expect(stores.workItems.get(`capture#${req.captureRequestId}`)?.status).toBe(
        row.verdict.action === 'defer' ? 'IN_PROGRESS' : 'COMPLETED',
      );
      expect(calls.capture).toBe(1);
    });

    it('a processor outage (its breaker opened) is not a failed attempt: retried in place, the charge stays CAPTURE_READY', async () => {
      const breaker = new CircuitBreaker({ name: 'sandbox', failureThreshold: 1, now: () => 0 });
      const { handle } = setup({
        capture: { kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' },
        outage: breaker,
      });
      seed('AUTHORISATION_SUCCESS');
      const attempt = runInAttemptScope({ key: 'c1', failed: new Set() }, () => handle(request(), ctx()));
      await expect(attempt).rejects.toMatchObject({ kind: 'retryable', code: 'PROCESSOR_UNAVAILABLE' });
      expect((await charge()).status).toBe('CAPTURE_READY');
      breaker.dispose();
    });

    it('a deferred request comes back to its open work item; with the maximum attempts in the history it gives the capture up', async () => {
      const { handle } = setup({
        capture: { kind: 'error', retryable: true, code: 'PROCESSOR_UNAVAILABLE', message: 'HTTP 503' },
      });
      seed('AUTHORISATION_SUCCESS');
      const req = request();
      expect(await handle(req, ctx())).toMatchObject({ action: 'defer' });
      expect(await handle(req, ctx())).toMatchObject({ action: 'defer' });
      expect(await handle(req, ctx())).toMatchObject({ action: 'defer' });
      // Three CAPTURE_READY entries: the next delivery gives the capture up.
      expect(await handle(req, ctx())).toEqual({ action: 'ack' });
      const after = await charge();
      expect(after.history.filter((h) => h.status === 'CAPTURE_READY')).toHaveLength(MAX_RETRIES);
      expect(after.status).toBe('CAPTURE_ERROR');
      expect(after.captureQueue).toBeUndefined();
    });
  });

  describe('duplicates', () => {
    it('a completed request is answered from its work item: a refusal gets its letter again, a capture is acknowledged', async () => {
      const refused = setup({ capture: { kind: 'error', retryable: false, code: 'NOT_CAPTURABLE', message: 'intent canceled' } });
      seed('AUTHORISATION_SUCCESS');
      const req = request();
      await refused.handle(req, ctx());
      expect(await refused.handle(req, ctx())).toEqual({
        action: 'dead-letter',
        code: 'NOT_CAPTURABLE',
        detail:
          'charge c1 is already CAPTURE_ERROR (NOT_CAPTURABLE); this request was not processed again; it said: capture refused: NOT_CAPTURABLE: intent canceled',
      });
      expect(refused.calls.capture).toBe(1);

      const ok = setup();
      seed('AUTHORISATION_SUCCESS');
      await ok.handle(req, ctx());
      expect(await ok.handle(req, ctx())).toEqual({ action: 'ack' });
      expect(ok.calls.capture).toBe(1);
    });
  });
});
