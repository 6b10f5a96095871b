import { int } from '../../shared/config/env.js';
import type { Clock } from '../../shared/core/clock.js';
import {
  type ProcessorRegistry,
  createProcessorRegistry,
  processorEnvShape,
  processorRegistryConfigFromEnv,
  warnUnconfiguredProcessors,
} from '../../shared/connectors/registry.js';
import { createChargeRepository } from '../../shared/charges/repo.js';
import { defineWorker, runWorker, tableCheck } from '../../shared/runtime/worker-kit.js';
import { createRefundHandler, type RefundHooks } from './handler.js';
import { createRefundMetrics } from './metrics.js';
import { parseRefundRequested } from './schema.js';

/** Variables of the refund worker on top of the common worker ones (docs/operations.md). */
export const refundEnvShape = {
  // Processors only: a refund never decrypts a token.
  ...processorEnvShape,
  /**
   * Seconds before a refund the processor accepted but has not confirmed (Stripe `pending`,
   * Worldpay `refundReceived`) is looked up again; doubles on every attempt, each capped at 12 hours,
   * for at most PAYFLEET_MAX_ATTEMPTS deliveries. @default 300
   */
  REFUND_CONFIRMATION_DELAY_SECONDS: int(300, { min: 0, max: 43_200 }),
} as const;

/** Test seams of the refund worker; the CLI passes none. */
export interface RefundWorkerOptions {
  readonly hooks?: RefundHooks;
  /** The processors' clock (Chase's 70-second window). */
  readonly processorClock?: Clock;
  /**
   * Processors in place of the configured ones (test/refund/fake-processor-worker.ts: a refund port
   * whose record lives in DynamoDB, so two processes see one processor).
   */
  readonly registry?: Pick<ProcessorRegistry, 'connectors' | 'get' | 'close'>;
}

/** `payfleet worker refund`: RefundRequested -> refunded at most once, never beyond the captured amount. */
export function refundWorker(options: RefundWorkerOptions = {}) {
  return defineWorker({
    worker: 'refund',
    env: refundEnvShape,
    settings: (env) => ({
      registry: processorRegistryConfigFromEnv(env),
      confirmDelaySec: env.REFUND_CONFIRMATION_DELAY_SECONDS,
    }),
    build: (kit) => {
      const s = kit.settings;
      const registry =
        options.registry ??
        createProcessorRegistry({
          ...s.registry,
          logger: kit.log,
          guard: kit.httpGuard,
          ...(options.processorClock ? { clock: options.processorClock } : {}),
        });
      warnUnconfiguredProcessors(kit.log, 'refund-requests', process.env);
      const handle = createRefundHandler({
        once: kit.once,
        charges: createChargeRepository(kit.clients.doc, kit.names.table('charges')),
        registry,
        settings: { confirmDelaySec: s.confirmDelaySec, maxConfirmDelaySec: 43_200 },
        metrics: createRefundMetrics(kit.metrics.registry),
        ...(options.hooks ? { hooks: options.hooks } : {}),
      });
      return {
        consume: { queue: 'refund-requests' as const, parse: parseRefundRequested, handle },
        started: { processors: [...registry.connectors.keys()] },
        checks: [
          tableCheck(kit, 'refunds', { refundId: 'readiness-probe' }),
          tableCheck(kit, 'charges', { chargeId: 'readiness-probe' }),
        ],
        background: [{ name: 'connector-pools', start: () => undefined, stop: () => registry.close() }],
      };
    },
  });
}

/** Run the refund worker in this process until SIGTERM (`options`: test seams). */
export async function main(options: RefundWorkerOptions = {}): Promise<void> {
  await runWorker(refundWorker(options));
}
