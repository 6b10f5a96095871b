import { Counter, type Registry } from 'prom-client';

/**
 * The capture worker's counters, on the worker's registry (so they carry `worker`); its gauges of
 * charges awaiting capture are in ./gauges.ts. docs/operations.md §5.
 */
export interface CaptureMetrics {
  /** Capture attempts recorded, by processor and resulting charge status. */
  readonly captures: Counter<'processor' | 'outcome'>;
}

export function createCaptureMetrics(registry: Registry): CaptureMetrics {
  return {
    captures: new Counter({
      name: 'payfleet_captures_total',
      help: 'Capture attempts recorded, by processor and resulting charge status',
      labelNames: ['processor', 'outcome'],
      registers: [registry],
    }),
  };
}
