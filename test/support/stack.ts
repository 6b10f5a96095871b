import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { bootstrap, type BootstrapOptions } from '../../cli/bootstrap.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { resourceNames, type ResourceNames } from '../../shared/resources.js';
import type { AwsConfig } from '../../shared/config/common.js';

export interface TestStack {
  readonly prefix: string;
  readonly names: ResourceNames;
  readonly aws: AwsConfig;
  readonly clients: AwsClients;
  /** Environment for child processes (`payfleet worker ...`) pointed at this stack and prefix. */
  readonly env: Record<string, string>;
  readonly queueUrls: Record<string, string>;
  /** URL of a queue or DLQ by full name. */
  url(name: string): string;
  close(): void;
}

/** A unique prefix per test file (or per call), so parallel files never share a queue or table. */
export function uniquePrefix(label = 't'): string {
  return `${label.replace(/[^a-z0-9]/gi, '').slice(0, 12)}-${randomBytes(4).toString('hex')}-`;
}

/** Endpoints of the run's embedded stack, from the global setup. */
export function stackEndpoints() {
  return inject('stack');
}

/**
 * Create this file's resources on the shared embedded stack and return clients for them.
 * Call in `beforeAll`; call `close()` in `afterAll`.
 */
export async function setupTestStack(label: string, options: Partial<BootstrapOptions> = {}): Promise<TestStack> {
  const s = inject('stack');
  const prefix = uniquePrefix(label);
  const aws: AwsConfig = { resourcePrefix: prefix, region: s.region, sqsEndpoint: s.sqsEndpoint, dynamodbEndpoint: s.dynamodbEndpoint };
  const clients = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS });
  // Test workers run with larger attempt budgets (20-50) than production; workers refuse to start
  // unless the budget is below the redrive limit, so test stacks redrive at 60 unless told otherwise.
  const report = await bootstrap(clients, { prefix, maxReceiveCount: 60, ...options });
  const env = { ...s.env, PAYFLEET_RESOURCE_PREFIX: prefix };
  return {
    prefix,
    names: resourceNames(prefix),
    aws,
    clients,
    env,
    queueUrls: { ...report.queueUrls },
    url(name: string) {
      const u = report.queueUrls[name];
      if (!u) throw new Error(`no queue ${name}; have ${Object.keys(report.queueUrls).join(', ')}`);
      return u;
    },
    close: () => clients.destroy(),
  };
}
