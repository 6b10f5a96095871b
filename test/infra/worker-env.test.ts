import { describe, expect, it } from 'vitest';
import { parseDeploymentConfig, WORKER_NAMES } from '../../infra/config.js';
import { bootstrapEnvironment, workerEnvironment } from '../../infra/worker-env.js';
import { bootstrapSchema, problemsOf, workerSchema } from './schemas.js';
import { DEPLOYABLE } from './support.js';

/** What ECS puts into a task besides our variables: the task role's credentials endpoint. */
const ECS_PROVIDED = { AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/credentials/0f3c' };

/** Stand-ins for what ECS reads from Secrets Manager at task start. */
function secretValues(secrets: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(
    Object.keys(secrets).map((name) => [
      name,
      name.endsWith('_PEM') ? '-----BEGIN TEST-----\nAAAA\n-----END TEST-----\n' : `test-${name.toLowerCase()}`,
    ]),
  );
}

const schemas = Object.fromEntries(await Promise.all(WORKER_NAMES.map(async (w) => [w, await workerSchema(w)] as const)));

describe('Worker environments (infra/worker-env.ts) against the workers own schemas', () => {
  for (const worker of WORKER_NAMES) {
    describe(worker, () => {
      const schema = schemas[worker];
      it.skipIf(!schema)('sets only variables the worker knows, and every value parses with every required one present', () => {
        for (const context of [
          DEPLOYABLE,
          { ...DEPLOYABLE, stripe: 'false', worldpay: 'false', live: 'true', lhvPrivateCa: 'true' },
          {
            ...DEPLOYABLE,
            chase: 'true',
            chaseApiBaseUrl: 'https://api-ms.payments.jpmorgan.example/api/v2',
            chaseTokenUrl: 'https://id.payments.jpmorgan.example/am/oauth2/alpha/access_token',
          },
          {},
        ]) {
          const config = parseDeploymentConfig({ ...context });
          const env = workerEnvironment(worker, config, 'eu-west-2');
          const all = { ...env.environment, ...secretValues(env.secrets), ...ECS_PROVIDED };
          expect(Object.keys(all).filter((k) => !schema!.known.has(k))).toEqual([]);
          expect(problemsOf(schema!, all)).toEqual([]);
        }
      });
    });
  }

  it('wires Chase only when enabled: its URLs in the environment, its credentials from the chase secret', () => {
    const off = workerEnvironment('auth', parseDeploymentConfig({ ...DEPLOYABLE }), 'eu-west-2');
    expect(Object.keys({ ...off.environment, ...off.secrets }).filter((k) => k.startsWith('CHASE_'))).toEqual([]);
    const config = parseDeploymentConfig({
      ...DEPLOYABLE,
      chase: 'true',
      chaseApiBaseUrl: 'https://chase.example/api/v2',
      chaseTokenUrl: 'https://chase.example/oauth2/token',
    });
    for (const worker of ['auth', 'capture'] as const) {
      const env = workerEnvironment(worker, config, 'eu-west-2');
      expect(env.environment).toMatchObject({
        CHASE_API_BASE_URL: 'https://chase.example/api/v2',
        CHASE_TOKEN_URL: 'https://chase.example/oauth2/token',
      });
      expect(env.secrets).toMatchObject({
        CHASE_CLIENT_ID: { secret: 'chase', field: 'clientId' },
        CHASE_CLIENT_SECRET: { secret: 'chase', field: 'clientSecret' },
        CHASE_MERCHANT_ID: { secret: 'chase', field: 'merchantId' },
      });
      expect(env.environment).not.toHaveProperty('CHASE_CLIENT_SECRET');
    }
  });

  it('gives the bootstrap task exactly what bootstrap reads', () => {
    const schema = bootstrapSchema();
    const env = { ...bootstrapEnvironment(parseDeploymentConfig({}), 'eu-west-2'), ...ECS_PROVIDED };
    expect(Object.keys(env).filter((k) => !schema.known.has(k))).toEqual([]);
    expect(problemsOf(schema, env)).toEqual([]);
  });
});
