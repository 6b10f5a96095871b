import { bool } from '../../shared/config/env.js';
import type { Clock } from '../../shared/core/clock.js';
import {
  connectorConfigFromEnv,
  connectorEnvShape,
  createProcessorRegistry,
  warnUnconfiguredProcessors,
} from '../../shared/connectors/registry.js';
import { createTokenServiceClient } from '../../shared/connectors/token-service.js';
import { createChargeRepository } from '../../shared/charges/repo.js';
import { defineWorker, runWorker, tableCheck } from '../../shared/runtime/worker-kit.js';
import { createAuthHandler, type AuthHooks } from './handler.js';
import { createAuthMetrics } from './metrics.js';
import { parseAuthorisationRequested } from './schema.js';

/** Variables of the auth worker on top of the common worker ones (docs/operations.md). */
export const authEnvShape = {
  ...connectorEnvShape,
  /** The `live` flag on this deployment's ledger events. @default false */
  PAYFLEET_LIVE: bool(false),
} as const;

/** Test seams of the auth worker; the CLI passes none. */
export interface AuthWorkerOptions {
  /** Fault points (test/auth/crash-worker.ts). */
  readonly hooks?: AuthHooks;
  /** The processors' clock (Chase's 70-second window; test/chase/clock-worker.ts moves it). */
  readonly processorClock?: Clock;
}

/** `payfleet worker auth`: AuthorisationRequested -> authorised exactly once, recorded atomically. */
export function authWorker(options: AuthWorkerOptions = {}) {
  return defineWorker({
    worker: 'auth',
    env: authEnvShape,
    settings: (env) => ({ connectors: connectorConfigFromEnv(env), live: env.PAYFLEET_LIVE }),
    build: (kit) => {
      const { settings } = kit;
      const registry = createProcessorRegistry({
        ...settings.connectors.registry,
        logger: kit.log,
        guard: kit.httpGuard,
        ...(options.processorClock ? { clock: options.processorClock } : {}),
      });
      warnUnconfiguredProcessors(kit.log, 'auth-requests', process.env);
      const tokens = createTokenServiceClient({ ...settings.connectors.tokenService, guard: kit.httpGuard('token-service') });
      // Every authorisation decrypts first: while the token service is down, receive nothing.
      kit.breakers.get('token-service').setProbe((signal) => tokens.probe(signal));
      const { authorisations } = createAuthMetrics(kit.metrics.registry);
      const handle = createAuthHandler({
        once: kit.once,
        charges: createChargeRepository(kit.clients.doc, kit.names.table('charges')),
        registry,
        tokens,
        maxAttempts: kit.config.consumer.maxAttempts,
        live: settings.live,
        authorisations,
        ...(options.hooks ? { hooks: options.hooks } : {}),
      });
      return {
        consume: { queue: 'auth-requests', parse: parseAuthorisationRequested, handle, gating: ['token-service'] },
        started: { processors: [...registry.connectors.keys()] },
        checks: [tableCheck(kit, 'charges', { chargeId: 'readiness-probe' })],
        background: [
          {
            name: 'connector-pools',
            start: () => undefined,
            stop: async () => {
              await Promise.all([registry.close(), tokens.close()]);
            },
          },
        ],
      };
    },
  });
}

/** Run the auth worker in this process until SIGTERM. */
export async function main(options: AuthWorkerOptions = {}): Promise<void> {
  await runWorker(authWorker(options));
}
