import { createAwsClients } from '../../shared/aws/clients.js';
import { bootstrap } from '../../cli/bootstrap.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { resourceNames } from '../../shared/resources.js';
import type { WorkerProcess } from '../support/processes.js';
import { stackEndpoints, uniquePrefix, type TestStack } from '../support/stack.js';

/**
 * A test stack whose SQS is the run's shared fauxqs but whose DynamoDB is `dynamodbEndpoint` (a
 * DynamoDB Local of the test's own, which it can stop and start). Queues redrive at
 * `maxReceiveCount`, kept small on purpose: a worker that burnt receives during an outage would
 * have SQS dead-letter messages silently.
 */
export async function setupOutageStack(label: string, dynamodbEndpoint: string, maxReceiveCount: number): Promise<TestStack> {
  const s = stackEndpoints();
  const prefix = uniquePrefix(label);
  const aws = { resourcePrefix: prefix, region: s.region, sqsEndpoint: s.sqsEndpoint, dynamodbEndpoint };
  const clients = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS });
  const report = await bootstrap(clients, { prefix, maxReceiveCount });
  return {
    prefix,
    names: resourceNames(prefix),
    aws,
    clients,
    env: { ...s.env, AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint, PAYFLEET_RESOURCE_PREFIX: prefix },
    queueUrls: { ...report.queueUrls },
    url(name: string) {
      const u = report.queueUrls[name];
      if (!u) throw new Error(`no queue ${name}`);
      return u;
    },
    close: () => clients.destroy(),
  };
}

/** The worker's Prometheus text from its ops port (read from its `worker started` line). */
export async function workerMetrics(worker: WorkerProcess): Promise<string> {
  const started = worker.lines.find((l) => l.msg === 'worker started');
  const port = started?.opsPort;
  if (typeof port !== 'number') throw new Error('worker has not started');
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return res.text();
}

/** Value of one sample, e.g. `metricValue(text, 'payfleet_breaker_state', { dependency: 'stripe' })`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/**
 * The worker settings of the outage tests: a retry budget of 3 attempts at 100-400 ms (about a
 * second), which every outage here outlasts many times over.
 *
 * The lease is longer than the auth tests' 3 s on purpose. Each DynamoDB attempt's deadline comes
 * from the lease (every call must end below it): a 3 s lease leaves 366 ms per attempt, which a
 * loaded 2-core machine exceeds now and then. With only 3 attempts, three slow answers in a row
 * would then exhaust a message's budget before anything is down. A slow emulator is not the outage
 * under test: the 10 s lease gives each attempt about 2 s.
 */
export const OUTAGE_BUDGET_ENV: Readonly<Record<string, string>> = Object.freeze({
  PAYFLEET_MAX_ATTEMPTS: '3',
  PAYFLEET_RETRY_BASE_MS: '100',
  PAYFLEET_RETRY_MAX_MS: '400',
  PAYFLEET_CONCURRENCY: '8',
  PAYFLEET_LEASE_MS: '10000',
  PAYFLEET_LEASE_RENEW_MS: '3000',
});
