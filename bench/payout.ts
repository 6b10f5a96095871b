/**
 * Payout throughput, end to end: CheckoutApprovalAccepted on payout-events.fifo -> stored (RECEIVED,
 * PAYOUT_CREATED) -> batched pain.001 at the LHV sandbox bank (INITIATED) -> pain.002 applied (PAID).
 * Everything local: embedded SQS + DynamoDB Local, the sandbox bank in this process, real
 * `payfleet worker payout` processes. Results go to docs/performance.md ("## Payouts").
 *
 *   npx tsx bench/payout.ts [--payouts 2000] [--workers 1] [--shards 8] [--concurrency 32] [--response-delay-ms 0]
 *
 * Reported: payouts/s from the first send to the last PAID (the number that matters), the ingest
 * rate (RECEIVED/s), requests sent, and per-payout latency (approvedAt -> PAID) percentiles; and, per
 * payout, the workers' AWS calls by operation, DynamoDB write/read units (ReturnConsumedCapacity
 * TOTAL) and CPU, counted inside the worker processes (bench/payout-worker.ts) from the first send to
 * the last PAID. The oracle is checked too: every payout initiated exactly once at the bank.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

interface Counts {
  seq: number;
  calls: Record<string, number>;
  units: Record<string, number>;
  wru: number;
  itemisedWru: number;
  rru: number;
  cpuMs: number;
}

const countsDir = mkdtempSync(join(tmpdir(), 'bench-payout-'));
const countsFile = (i: number) => join(countsDir, `worker-${i}.json`);

/** The counters of every worker now (each writes its file on SIGUSR2). */
async function snapshot(ws: WorkerProcess[]): Promise<Counts[]> {
  const read = (i: number): Counts | undefined =>
    existsSync(countsFile(i)) ? (JSON.parse(readFileSync(countsFile(i), 'utf8')) as Counts) : undefined;
  const before = ws.map((_, i) => read(i)?.seq ?? 0);
  for (const w of ws) w.child.kill('SIGUSR2');
  for (;;) {
    const now = ws.map((_, i) => read(i));
    if (now.every((c, i) => c && c.seq > before[i]!)) return now as Counts[];
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Per-payout differences between two snapshots, summed over the workers. */
function perPayout(a: Counts[], b: Counts[], n: number) {
  const calls: Record<string, number> = {};
  const units: Record<string, number> = {};
  let wru = 0;
  let itemisedWru = 0;
  let rru = 0;
  let cpuMs = 0;
  b.forEach((end, i) => {
    const start = a[i]!;
    for (const [k, v] of Object.entries(end.calls)) calls[k] = (calls[k] ?? 0) + v - (start.calls[k] ?? 0);
    for (const [k, v] of Object.entries(end.units ?? {})) units[k] = (units[k] ?? 0) + v - (start.units?.[k] ?? 0);
    wru += end.wru - start.wru;
    itemisedWru += end.itemisedWru - start.itemisedWru;
    rru += end.rru - start.rru;
    cpuMs += end.cpuMs - start.cpuMs;
  });
  const per = (x: number) => +(x / n).toFixed(3);
  const sum = (prefix: string) => Object.entries(calls).reduce((t, [k, v]) => (k.startsWith(prefix) ? t + v : t), 0);
  return {
    dynamodbCalls: per(sum('dynamodb:')),
    sqsCalls: per(sum('sqs:')),
    /** Write units by DynamoDB's rule, each transaction itemised (what AWS would bill). */
    wru: per(itemisedWru),
    /** Write units as DynamoDB Local reports them (one item per table per transaction: too low). */
    wruReportedByLocal: per(wru),
    rru: per(rru),
    workerCpuMs: per(cpuMs),
    byOperation: Object.fromEntries(
      Object.entries(calls)
        .filter(([, v]) => v > 0)
        .sort(([x], [y]) => (x < y ? -1 : 1))
        .map(([k, v]) => [k, per(v)]),
    ),
    capacityUnitsByOperation: Object.fromEntries(
      Object.entries(units)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => [k, per(v)]),
    ),
  };
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
    workers.push(
      startProcess('bench/payout-worker.ts', ['worker', 'payout'], {
        ...env,
        PAYFLEET_LOG_LEVEL: 'info',
        BENCH_CALLS_FILE: countsFile(i),
      }),
    );
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
  const atStart = await snapshot(workers);
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
  const counted = perPayout(atStart, await snapshot(workers), PAYOUTS);

  const rows = await scanPayouts(clients.doc, names.table('payouts'));
  const events = (await scanPayouts(clients.doc, names.table('events'))) as unknown as Record<string, unknown>[];
  // The itemised write units assume rows of at most 1 KB (JSON is a close upper bound of DynamoDB's size).
  const maxRowBytes = {
    payouts: Math.max(...rows.map((r) => JSON.stringify(r).length)),
    events: Math.max(...events.map((r) => JSON.stringify(r).length)),
  };
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
    perPayout: counted,
    maxRowBytes,
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
  console.log(
    `| ${PAYOUTS} | ${WORKERS} | ${result.payoutsPerSecond} | ${counted.dynamodbCalls} | ${counted.sqsCalls} | ${counted.wru} | ${counted.rru} | ${counted.workerCpuMs} |`,
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
