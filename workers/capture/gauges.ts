import { QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../shared/log/logger.js';
import type { BackgroundTask } from '../../shared/runtime/worker-kit.js';
import { AWAITING_CAPTURE } from '../../shared/charges/charge.js';

export interface CaptureGaugeOptions {
  readonly doc: DynamoDBDocumentClient;
  readonly chargesTable: string;
  readonly registry: Registry;
  readonly log: Logger;
  /** CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER, in ms. */
  readonly overdueAfterMs: number;
  /** How often the index is read. @default 30000 */
  readonly refreshMs: number;
  readonly now?: () => number;
}

export interface CaptureGauges extends BackgroundTask {
  /** Read the index once now (tests, first scrape). */
  refresh(): Promise<void>;
}

/**
 * Gauges of charges waiting to be captured, read from the sparse `awaiting-capture` index (only
 * charges in CAPTURE_APPROVED, CAPTURE_APPROVED_RETRY or CAPTURE_READY carry its key), on a timer:
 * a scrape reads cached values and never touches DynamoDB, and no read is a table scan.
 *
 *   payfleet_charges_awaiting_capture              all charges approved and not yet captured
 *   payfleet_charges_overdue_for_capture           of those, approved longer ago than the threshold
 *   payfleet_oldest_overdue_capture_age_seconds    age of the oldest overdue one (0 when none)
 */
export function createCaptureGauges(o: CaptureGaugeOptions): CaptureGauges {
  const now = o.now ?? Date.now;
  const awaiting = new Gauge({ name: 'payfleet_charges_awaiting_capture', help: 'Charges approved for capture and not yet captured', registers: [o.registry] });
  const overdue = new Gauge({
    name: 'payfleet_charges_overdue_for_capture',
    help: 'Charges awaiting capture for longer than CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER',
    registers: [o.registry],
  });
  const oldest = new Gauge({
    name: 'payfleet_oldest_overdue_capture_age_seconds',
    help: 'Age of the oldest charge overdue for capture, 0 when none is overdue',
    registers: [o.registry],
  });
  let timer: NodeJS.Timeout | undefined;

  const count = async (cutoffIso?: string): Promise<number> => {
    let total = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const r = await o.doc.send(
        new QueryCommand({
          TableName: o.chargesTable,
          IndexName: 'awaiting-capture',
          KeyConditionExpression: cutoffIso ? 'captureQueue = :q AND captureDueAt < :cut' : 'captureQueue = :q',
          ExpressionAttributeValues: { ':q': AWAITING_CAPTURE, ...(cutoffIso ? { ':cut': cutoffIso } : {}) },
          Select: 'COUNT',
          ExclusiveStartKey: start,
        }),
      );
      total += r.Count ?? 0;
      start = r.LastEvaluatedKey;
    } while (start);
    return total;
  };

  const refresh = async () => {
    const t = now();
    const cutoff = new Date(t - o.overdueAfterMs).toISOString();
    const [all, late, first] = await Promise.all([
      count(),
      count(cutoff),
      o.doc.send(
        new QueryCommand({
          TableName: o.chargesTable,
          IndexName: 'awaiting-capture',
          KeyConditionExpression: 'captureQueue = :q',
          ExpressionAttributeValues: { ':q': AWAITING_CAPTURE },
          ScanIndexForward: true,
          Limit: 1,
        }),
      ),
    ]);
    awaiting.set(all);
    overdue.set(late);
    const oldestAt = first.Items?.[0]?.captureDueAt as string | undefined;
    const ageSec = oldestAt ? (t - Date.parse(oldestAt)) / 1000 : 0;
    oldest.set(ageSec * 1000 > o.overdueAfterMs ? Math.round(ageSec) : 0);
  };

  return {
    name: 'capture-gauges',
    refresh,
    start() {
      const tick = () =>
        void refresh()
          .catch((err: unknown) => o.log.warn({ err }, 'capture gauges refresh failed'))
          .finally(() => {
            timer = setTimeout(tick, o.refreshMs);
            timer.unref();
          });
      tick();
    },
    async stop() {
      if (timer) clearTimeout(timer);
    },
  };
}
