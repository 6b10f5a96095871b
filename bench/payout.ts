/**
 * Payout throughput, end to end: CheckoutApprovalAccepted on payout-events.fifo -> stored (RECEIVED,
 * PAYOUT_CREATED) -> batched pain.001 at the LHV sandbox bank (INITIATED) -> pain.002 applied (PAID).
 * Everything local: embedded SQS + DynamoDB Local, the sandbox bank in this process, real
 * `payfleet worker payout` processes. Results go to docs/performance.md ("## Payouts").
 *
 *   npx tsx bench/payout.ts [--payouts 2000] [--workers 1] [--shards 8] [--concurrency 32] [--response-delay-ms 0]
 *
 * Reported: payouts/s from the first send to the last PAID (the number that matters), the ingest
 * rate (RECEIVED/s), requests sent, and per-payout latency (approvedAt -> PAID) percentiles. The
 * oracle is checked too: every payout initiated exactly once at the bank.
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { createAwsClients } from '../shared/aws/clients.js';
import { bootstrap } from '../cli/bootstrap.js';
import { EMBEDDED_CREDENTIALS, startEmbeddedStack } from '../cli/embedded/stack.js';
import { toEndToEndId } from '../workers/payout/lhv/pain001.js';
import type { Payout } from '../workers/payout/model.js';
import { resourceNames } from '../shared/resources.js';
import { startLhvSandbox } from '../cli/sandbox/lhv-server.js';
import { startProcess, type WorkerProcess } from '../test/support/processes.js';
import { GOOD_IBAN } from '../test/payout/support.js';
import { sendAll } from '../test/support/sqs.js';

const { values } = parseArgs({
  options: {
    payouts: { type: 'string', default: '2000' },
    workers: { type: 'string', default: '1' },
    shards: { type: 'string', default: '8' },
    concurrency: { type: 'string', default: '32' },
    'response-delay-ms': { type: 'string', default: '0' },
  },
});
const PAYOUTS = Number(values.payouts);
const WORKERS = Number(values.workers);
const SHARDS = Number(values.shards);
const CONCURRENCY = Number(values.concurrency);
const RESPONSE_DELAY_MS = Number(values['response-delay-ms']);

/** The worker configuration measured (besides the stack endpoints); printed with the results. */
const WORKER_ENV: Record<string, string> = {
  PAYFLEET_LOG_LEVEL: 'warn',
  PAYFLEET_OPS_PORT: '0',
  PAYFLEET_CONCURRENCY: String(CONCURRENCY),
  PAYFLEET_WAIT_TIME_SEC: '1',
  PAYFLEET_PAYOUT_SHARDS: String(SHARDS),
  PAYFLEET_PAYOUT_SHARD_LEASE_MS: '30000',
  PAYFLEET_PAYOUT_SHARD_RENEW_MS: '10000',
  PAYFLEET_PAYOUT_SHARD_BACKOFF_MS: '1000',
  PAYFLEET_PAYOUT_INITIATION_POLL_MS: '500',
  PAYFLEET_PAYOUT_BATCH_QUIET_MS: '500',
  PAYFLEET_PAYOUT_BATCH_MAX_WAIT_MS: '5000',
  PAYFLEET_PAYOUT_RESPONSE_POLL_MS: '200',
  PAYFLEET_PAYOUT_READINESS_POLL_MS: '500',
  LHV_TIMEOUT_MS: '10000',
  LHV_DEBTOR_NAME: 'Payfleet Payouts',
  LHV_DEBTOR_IBAN: 'EE382200221020145685',
  LHV_DEBTOR_BIC: 'LHVBEE22',
};

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function scanPayouts(doc: ReturnType<typeof createAwsClients>['doc'], table: string): Promise<Payout[]> {
  const out: Payout[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const r = await doc.send(new ScanCommand({ TableName: table, ...(start ? { ExclusiveStartKey: start } : {}) }));
    out.push(...((r.Items ?? []) as Payout[]));
    start = r.LastEvaluatedKey;
  } while (start);
  return out;
}

async function paidCount(ports: number[]): Promise<number> {
  let n = 0;
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = /^payfleet_payouts_total\{status="PAID"[^}]*\} (\d+)/m.exec(text);
    n += Number(m?.[1] ?? 0);
  }
  return n;
}

const stack = await startEmbeddedStack();
const prefix = `bench-${randomUUID().slice(0, 8)}-`;
const aws = {
  resourcePrefix: prefix,
  region: stack.region,
  sqsEndpoint: stack.sqsEndpoint,
  dynamodbEndpoint: stack.dynamodbEndpoint,
};
const clients = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS });
const names = resourceNames(prefix);
const report = await bootstrap(clients, { prefix, payoutShards: SHARDS });
const queueUrl = report.queueUrls[names.queue('payout-events')]!;
const bank = await startLhvSandbox({ port: 0, responseDelayMs: RESPONSE_DELAY_MS });
const workers: WorkerProcess[] = [];
try {
  const env = { ...stack.env, PAYFLEET_RESOURCE_PREFIX: prefix, LHV_API_BASE_URL: bank.url, ...WORKER_ENV };
  for (let i = 0; i < WORKERS; i++)
    workers.push(startProcess('bin/payfleet.js', ['worker', 'payout'], { ...env, PAYFLEET_LOG_LEVEL: 'info' }));
  const ports = await Promise.all(
    workers.map(async (w) => Number((await w.waitForLine((l) => l.msg === 'ops server listening', 60_000)).port)),
  );
  await Promise.all(
    workers.map((w) => w.waitForLine((l) => l.msg === 'payout worker ready: all readiness checks passed', 60_000)),
  );
  // Let the shards settle across workers (fair shares) before the clock starts.
  const heldBy = (w: WorkerProcess) =>
    w.lines.filter((l) => l.msg === 'payout shard acquired').length -
    w.lines.filter((l) => l.msg === 'payout shard released').length;
  const settled = () =>
    workers.reduce((n, w) => n + heldBy(w), 0) === SHARDS && workers.every((w) => heldBy(w) >= Math.floor(SHARDS / WORKERS));
  const settleBy = Date.now() + 60_000;
  while (!settled() && Date.now() < settleBy) await new Promise((r) => setTimeout(r, 200));
  await new Promise((r) => setTimeout(r, 1000));
  if (process.env.BENCH_DEBUG)
    for (const [i, w] of workers.entries())
      for (const l of w.lines)
        if (/shard|rebalanc|members|workers changed/.test(String(l.msg)))
          console.log(i, l.time, l.msg, l.shard ?? '', JSON.stringify(l.releasing ?? l.members ?? ''));
  const shardsPerWorker = workers.map(heldBy);

  const bodies = Array.from({ length: PAYOUTS }, (_, i) => {
    const paymentId = `bench-${i}`;
    return {
      body: JSON.stringify({
        eventType: 'CheckoutApprovalAccepted',
        eventId: randomUUID(),
        paymentId,
        amount: 1000 + i,
        currency: 'EUR',
        creditor: { name: `Creditor ${i}`, iban: GOOD_IBAN, bic: 'LHVBEE22' },
        remittanceInformation: `bench ${i}`,
        approvedAt: new Date().toISOString(),
      }),
      groupId: paymentId,
      dedupId: randomUUID(),
    };
  });
  const t0 = Date.now();
  const senders = 8;
  const per = Math.ceil(bodies.length / senders);
  await Promise.all(
    Array.from({ length: senders }, (_, s) => sendAll(clients.sqs, queueUrl, bodies.slice(s * per, (s + 1) * per))),
  );
  const sentMs = Date.now() - t0;
  for (;;) {
    const done = await paidCount(ports);
    if (done >= PAYOUTS) break;
    if (Date.now() - t0 > 15 * 60_000) throw new Error(`only ${done}/${PAYOUTS} PAID after 15 minutes`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const totalMs = Date.now() - t0;

  const rows = await scanPayouts(clients.doc, names.table('payouts'));
  const paid = rows.filter((r) => r.status === 'PAID');
  const at = (p: Payout, s: string) => Date.parse(p.history.find((h) => h.status === s)?.at ?? '');
  const latencies = paid.map((p) => at(p, 'PAID') - Date.parse(p.approvedAt)).sort((a, b) => a - b);
  const received = paid.map((p) => at(p, 'RECEIVED')).sort((a, b) => a - b);
  const ingestMs = (received[received.length - 1] ?? 0) - (received[0] ?? 0);
  const stage = (from: string, to: string) => {
    const d = paid.map((p) => at(p, to) - (from === 'approved' ? Date.parse(p.approvedAt) : at(p, from))).sort((a, b) => a - b);
    return { p50: pct(d, 50), p99: pct(d, 99) };
  };
  const stages = {
    'sent -> RECEIVED': stage('approved', 'RECEIVED'),
    'RECEIVED -> INITIATION_PENDING (batching)': stage('RECEIVED', 'INITIATION_PENDING'),
    'INITIATION_PENDING -> INITIATED (request + commits)': stage('INITIATION_PENDING', 'INITIATED'),
    'INITIATED -> PAID (bank report applied)': stage('INITIATED', 'PAID'),
  };
  const stats = bank.stats();
  const once = paid.every((p) => stats.initiationsPerPaymentId[toEndToEndId(p.paymentId)] === 1);
  const result = {
    payouts: PAYOUTS,
    workers: WORKERS,
    shards: SHARDS,
    concurrency: CONCURRENCY,
    responseDelayMs: RESPONSE_DELAY_MS,
    cores: availableParallelism(),
    shardsPerWorker,
    sendSeconds: +(sentMs / 1000).toFixed(2),
    totalSeconds: +(totalMs / 1000).toFixed(2),
    payoutsPerSecond: +(PAYOUTS / (totalMs / 1000)).toFixed(1),
    ingestPerSecond: +(PAYOUTS / Math.max(0.001, ingestMs / 1000)).toFixed(1),
    requests: stats.initiations,
    meanBatch: +(PAYOUTS / Math.max(1, stats.initiations)).toFixed(1),
    latencyMs: {
      p50: pct(latencies, 50),
      p90: pct(latencies, 90),
      p99: pct(latencies, 99),
      max: latencies[latencies.length - 1],
    },
    stagesMs: stages,
    initiatedExactlyOnce: once && paid.length === PAYOUTS,
  };
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `| ${PAYOUTS} | ${WORKERS} | ${SHARDS} | ${CONCURRENCY} | ${result.payoutsPerSecond} | ${result.ingestPerSecond} | ${result.requests} (mean ${result.meanBatch}) | ${result.latencyMs.p50} / ${result.latencyMs.p99} ms | ${result.initiatedExactlyOnce ? 'yes' : 'NO'} |`,
  );
  const warnings = new Map<string, number>();
  for (const w of workers)
    for (const l of w.lines)
      if (l.level === 'warn' || l.level === 'error')
        warnings.set(
          `${String(l.msg)} ${String(l.code ?? '')}`,
          (warnings.get(`${String(l.msg)} ${String(l.code ?? '')}`) ?? 0) + 1,
        );
  if (warnings.size > 0) console.log('worker warnings:', JSON.stringify(Object.fromEntries(warnings)));
  if (!result.initiatedExactlyOnce) process.exitCode = 1;
} finally {
  for (const w of workers) w.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  await bank.close();
  clients.destroy();
  await stack.stop();
}
