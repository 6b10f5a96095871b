import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AWAITING_CAPTURE as AWAITING } from '../../shared/charges/charge.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createMetrics } from '../../shared/ops/metrics.js';
import { createCaptureGauges } from '../../workers/capture/gauges.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await setupTestStack('gauges');
});
afterAll(() => stack.close());

describe('capture gauges', () => {
  describe('refresh()', () => {
    it('reports awaiting, overdue and the age of the oldest overdue capture from the awaiting-capture index', async () => {
      const now = Date.parse('2026-11-21T12:00:00Z');
      const ago = (min: number) => new Date(now - min * 60_000).toISOString();
      const put = (chargeId: string, item: Record<string, unknown>) =>
        stack.clients.doc.send(
          new PutCommand({ TableName: stack.names.table('charges'), Item: { chargeId, version: 1, ...item } }),
        );
      await put('g-1', { status: 'CAPTURE_APPROVED', captureQueue: AWAITING, captureDueAt: ago(120) });
      await put('g-2', { status: 'CAPTURE_APPROVED_RETRY', captureQueue: AWAITING, captureDueAt: ago(90) });
      await put('g-3', { status: 'CAPTURE_APPROVED', captureQueue: AWAITING, captureDueAt: ago(10) });
      await put('g-4', { status: 'CAPTURED' }); // not in the index at all
      const metrics = createMetrics('capture', { defaultMetrics: false });
      const gauges = createCaptureGauges({
        doc: stack.clients.doc,
        chargesTable: stack.names.table('charges'),
        registry: metrics.registry,
        log: silentLogger(),
        overdueAfterMs: 60 * 60_000,
        refreshMs: 60_000,
        now: () => now,
      });
      await gauges.refresh();
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/^payfleet_charges_awaiting_capture\{[^}]*\} 3$/m);
      expect(text).toMatch(/^payfleet_charges_overdue_for_capture\{[^}]*\} 2$/m);
      expect(text).toMatch(/^payfleet_oldest_overdue_capture_age_seconds\{[^}]*\} 7200$/m);

      // Nothing overdue: the oldest-overdue gauge is 0, not the age of a fresh approval.
      const fresh = createMetrics('capture', { defaultMetrics: false });
      const later = createCaptureGauges({
        doc: stack.clients.doc,
        chargesTable: stack.names.table('charges'),
        registry: fresh.registry,
        log: silentLogger(),
        overdueAfterMs: 24 * 3600_000,
        refreshMs: 60_000,
        now: () => now,
      });
      await later.refresh();
      expect(await fresh.registry.metrics()).toMatch(/^payfleet_oldest_overdue_capture_age_seconds\{[^}]*\} 0$/m);
    });
  });
});
