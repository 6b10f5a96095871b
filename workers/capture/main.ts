import { bool, duration, int } from '../../shared/config/env.js';
import {
  createProcessorRegistry,
  processorEnvShape,
  processorRegistryConfigFromEnv,
  warnUnconfiguredProcessors,
} from '../../shared/connectors/registry.js';
import { createChargeRepository } from '../../shared/charges/repo.js';
import { defineWorker, runWorker, tableCheck } from '../../shared/runtime/worker-kit.js';
import { createCaptureGauges } from './gauges.js';
import { createCaptureHandler, type CaptureHooks } from './handler.js';
import { createCaptureMetrics } from './metrics.js';
import { parseCaptureRequested } from './schema.js';

/**
 * The capture worker's variables, with GOV.UK Pay connector's names and defaults
 * (GOV.UK Pay pay-connector's background capture and its queue settings).
 */
export const captureEnvShape = {
  // Processors only: the capture worker never decrypts a token.
  ...processorEnvShape,
  /** Attempts (from the charge's history) before CAPTURE_ERROR. @default 96 */
  CAPTURE_PROCESS_MAXIMUM_RETRIES: int(96, { min: 1, max: 10_000 }),
  /** Seconds a failed capture's message is deferred (its visibility). @default 3600 */
  CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: int(3600, { min: 0, max: 43_200 }),
  /** Age after which a charge awaiting capture counts as overdue. @default 60 minutes */
  CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER: duration('60 minutes', 'min'),
  /** The consumer's concurrency (pay-connector's polling threads). @default 1 */
  CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: int(1, { min: 1, max: 512 }),
  /** Long-poll wait. @default 20 */
  AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: int(20, { min: 0, max: 20 }),
  /** Messages per receive. @default 10 */
  AWS_SQS_MESSAGE_MAXIMUM_BATCH_SIZE: int(10, { min: 1, max: 10 }),
  /** When false the worker serves health and metrics but captures nothing. @default true */
  BACKGROUND_PROCESSING_ENABLED: bool(true),
  /** How often the awaiting-capture gauges read their index. @default 30000 */
  PAYFLEET_CAPTURE_GAUGE_REFRESH_MS: int(30_000, { min: 100, max: 3_600_000 }),
} as const;

/** `payfleet worker capture`: CaptureRequested -> captured exactly once, with deferred retries. */
export function captureWorker(options: { readonly hooks?: CaptureHooks } = {}) {
  return defineWorker({
    worker: 'capture',
    env: captureEnvShape,
    refine: (env, ctx) => {
      if (env.AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS * 1000 >= env.PAYFLEET_SHUTDOWN_GRACE_MS) {
        ctx.addIssue({
          code: 'custom',
          path: ['AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS'],
          message: 'must be shorter than PAYFLEET_SHUTDOWN_GRACE_MS so the last long poll can finish',
        });
      }
    },
    settings: (env) => ({
      registry: processorRegistryConfigFromEnv(env),
      maxRetries: env.CAPTURE_PROCESS_MAXIMUM_RETRIES,
      retryDelaySec: env.CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS,
      overdueAfterMs: env.CHARGES_CONSIDERED_OVERDUE_FOR_CAPTURE_AFTER,
      threads: env.CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS,
      waitTimeSec: env.AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS,
      batchSize: env.AWS_SQS_MESSAGE_MAXIMUM_BATCH_SIZE,
      enabled: env.BACKGROUND_PROCESSING_ENABLED,
      gaugeRefreshMs: env.PAYFLEET_CAPTURE_GAUGE_REFRESH_MS,
    }),
    build: (kit) => {
      const s = kit.settings;
      const registry = createProcessorRegistry({ ...s.registry, logger: kit.log, guard: kit.httpGuard });
      warnUnconfiguredProcessors(kit.log, 'capture-requests', process.env);
      const { captures } = createCaptureMetrics(kit.metrics.registry);
      const handle = createCaptureHandler({
        once: kit.once,
        charges: createChargeRepository(kit.clients.doc, kit.names.table('charges')),
        registry,
        settings: { maxRetries: s.maxRetries, retryDelaySec: s.retryDelaySec },
        captures,
        ...(options.hooks ? { hooks: options.hooks } : {}),
      });
      const gauges = createCaptureGauges({
        doc: kit.clients.doc,
        chargesTable: kit.names.table('charges'),
        registry: kit.metrics.registry,
        log: kit.log,
        overdueAfterMs: s.overdueAfterMs,
        refreshMs: s.gaugeRefreshMs,
      });
      if (!s.enabled) kit.log.warn('BACKGROUND_PROCESSING_ENABLED=false: not consuming capture requests');
      return {
        ...(s.enabled
          ? {
              consume: {
                queue: 'capture-requests' as const,
                parse: parseCaptureRequested,
                handle,
                // Attempts are counted from the charge's history; the consumer's own budget only
                // bounds transient failures before a capture is even tried (e.g. not yet authorised).
                overrides: { concurrency: s.threads, waitTimeSec: s.waitTimeSec, batchSize: s.batchSize },
              },
            }
          : {}),
        checks: [tableCheck(kit, 'charges', { chargeId: 'readiness-probe' })],
        started: { processors: [...registry.connectors.keys()] },
        background: [gauges, { name: 'connector-pools', start: () => undefined, stop: () => registry.close() }],
      };
    },
  });
}

/** Run the capture worker in this process until SIGTERM (`hooks`: test fault points, see test/capture/crash-worker.ts). */
export async function main(options: { readonly hooks?: CaptureHooks } = {}): Promise<void> {
  await runWorker(captureWorker(options));
}
