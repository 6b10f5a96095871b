import type { Registry } from 'prom-client';
import { chargeOutcomeCounter, type ChargeOutcomeCounter } from '../../shared/charges/metrics.js';

/**
 * The capture worker's counters, on the worker's registry; its gauges of charges awaiting capture are
 * in ./gauges.ts. docs/operations.md §5.
 */
export interface CaptureMetrics {
  /** Capture attempts recorded, by processor and resulting charge status. */
  readonly captures: ChargeOutcomeCounter;
}

export const createCaptureMetrics = (registry: Registry): CaptureMetrics => ({
  captures: chargeOutcomeCounter(
    registry,
    'payfleet_captures_total',
    'Capture attempts recorded, by processor and resulting charge status',
  ),
});
