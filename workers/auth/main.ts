import { bool } from '../../shared/config/env.js';
import { connectorConfigFromEnv, connectorEnvShape, createProcessorRegistry } from '../../shared/connectors/registry.js';
import { createTokenServiceClient } from '../../shared/connectors/token-service.js';
import { createChargeRepository } from '../../shared/domain/charge-repo.js';
import { runWorker, tableCheck } from '../../shared/runtime/worker-kit.js';
import { createAuthHandler } from './handler.js';
import { createAuthMetrics } from './metrics.js';
import { parseAuthorisationRequested } from './schema.js';

/** Variables of the auth worker on top of the common worker ones (docs/operations.md). */
export const authEnvShape = {
  ...connectorEnvShape,
  /** The `live` flag on this deployment's ledger events. @default false */
  PAYFLEET_LIVE: bool(false),
} as const;

/** `payfleet worker auth`: AuthorisationRequested -> authorised exactly once, recorded atomically. */
export async function main(): Promise<void> {
  await runWorker({
    worker: 'auth',
    env: authEnvShape,
    settings: (env) => ({ connectors: connectorConfigFromEnv(env), live: env.PAYFLEET_LIVE }),
    build: (kit) => {
      const settings = kit.settings as unknown as { connectors: ReturnType<typeof connectorConfigFromEnv>; live: boolean };
      const registry = createProcessorRegistry({ ...settings.connectors.registry, logger: kit.log });
      const tokens = createTokenServiceClient(settings.connectors.tokenService);
      const { authorisations } = createAuthMetrics(kit.metrics.registry);
      const handle = createAuthHandler({
        keeper: kit.keeper,
        idempotency: kit.idempotency,
        outcomes: kit.outcomes,
        charges: createChargeRepository(kit.clients.doc, kit.names.table('charges')),
        registry,
        tokens,
        ownerId: kit.ownerId,
        attemptDeadlineMs: kit.config.lease.leaseMs,
        maxAttempts: kit.config.consumer.maxAttempts,
        live: settings.live,
        log: kit.log,
        authorisations,
      });
      return {
        consume: { queue: 'auth-requests', parse: parseAuthorisationRequested, handle },
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
