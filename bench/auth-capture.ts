/**
 * Benchmark: auth and capture worker throughput with the in-process sandbox processor, next to the
 * core's no-op consumer figure measured on the same stack in the same run.
 *
 *   npm run bench:auth-capture                     # 1500 messages per round, processes 1,2,4
 *   BENCH_CHARGES=4000 BENCH_CONCURRENCY=64 BENCH_PROCESSES=1,2 npm run bench:auth-capture
 *
 * 1. baselines: a bare sqs-consumer receive-and-delete loop, then a FifoConsumer with a no-op
 *    handler, each draining N preloaded messages (in-process).
 * 2. auth at 1, 2 and 4 processes (BENCH_PROCESSES): N AuthorisationRequested (sandbox processor,
 *    approving card, one per charge) preloaded, drained by `payfleet worker auth` processes; timed
 *    from readiness to N succeeded (summed over the processes' /metrics).
 * 3. capture at 1, 2 and 4 processes: N CaptureRequested for the charges the auth round authorised.
 * Readings come from each worker's own /metrics: processing latency (histogram, bucket upper bounds),
 * AWS calls by service and operation, DynamoDB write/read capacity units as DynamoDB reported them
 * (ReturnConsumedCapacity: TOTAL), CPU seconds and resident memory. A second table prints, per
 * worker round, calls per message by operation (DynamoDB and SQS) and WRU/RRU per message.
 */
import { randomUUID } from 'node:crypto';
import { SendMessageBatchCommand, type Message } from '@aws-sdk/client-sqs';
import { Consumer } from 'sqs-consumer';
import { FifoConsumer } from '../shared/core/consumer.js';
import { silentLogger } from '../shared/log/logger.js';
import { startTokenServiceSandbox } from '../cli/sandbox/token-service-server.js';
import { costPerMessage, fmt, fmtCalls, quantile, scrape, stackCpuMeter, startBenchStack, startWorker, sum, until, type CostPerMessage, type StackCpu } from './harness.js';
import { preload } from './support.js';

const N = Number(process.env.BENCH_CHARGES ?? 1500);
/** Charges authorised and captured, unmeasured, before the first round: DynamoDB Local's JVM compiles its hot paths in the first thousand or so calls, which would otherwise fall in whichever round comes first. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 300);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);

async function sendBodies(sqs: Parameters<typeof preload>[0], url: string, bodies: { body: object; group: string; dedup: string }[]) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < bodies.length) {
        const chunk = bodies.slice(next, next + 10);
        next += 10;
        const out = await sqs.send(
          new SendMessageBatchCommand({
            QueueUrl: url,
            Entries: chunk.map((b, i) => ({ Id: String(i), MessageBody: JSON.stringify(b.body), MessageGroupId: b.group, MessageDeduplicationId: b.dedup })),
          }),
        );
        if (out.Failed?.length) throw new Error(JSON.stringify(out.Failed));
      }
    }),
  );
}

interface Row {
  readonly name: string;
  readonly perSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly awsPerMsg: number;
  readonly cpuMsPerMsg: number;
  readonly rssMb: number;
  /** Worker rounds only: calls per message by operation, WRU/RRU per message. */
  readonly cost?: CostPerMessage;
  /** Worker rounds only: CPU ms per message of the stack around the workers. */
  readonly stackCpuMs?: StackCpu;
}

const PROCESSES = (process.env.BENCH_PROCESSES ?? '1,2,4').split(',').map(Number);

/** Add every sample of `b` into `a` (histograms and counters merge by summing). */
function merge(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  for (const [k, v] of b) a.set(k, (a.get(k) ?? 0) + v);
  return a;
}

async function main() {
  const b = await startBenchStack();
  const tokens = await startTokenServiceSandbox();
  const rows: Row[] = [];
  try {
    const authUrl = b.queueUrls[b.names.queue('auth-requests')]!;
    const captureUrl = b.queueUrls[b.names.queue('capture-requests')]!;
    const dlqUrl = b.queueUrls[b.names.dlq('auth-requests')]!;

    // 1. The baselines, same stack, same run: a bare sqs-consumer receive-and-delete loop, and our
    //    consumer with a no-op handler.
    await preload(b.clients.sqs, authUrl, N, N, 'bare');
    let bareDone = 0;
    const bare = Consumer.create({
      sqs: b.clients.sqs,
      queueUrl: authUrl,
      batchSize: 10,
      waitTimeSeconds: 1,
      suppressFifoWarning: true,
      strictReturn: true,
      handleMessageBatch: async (m: Message[]) => {
        setImmediate(() => {
          bareDone += m.length;
        });
        return m;
      },
    });
    let t0 = performance.now();
    bare.start();
    await until(async () => bareDone >= N, 300_000, 'bare drain');
    rows.push({ name: 'bare sqs-consumer receive-and-delete (1 poller)', perSec: (N / (performance.now() - t0)) * 1000, p50Ms: Number.NaN, p99Ms: Number.NaN, awsPerMsg: 0.2, cpuMsPerMsg: Number.NaN, rssMb: Number.NaN });
    bare.stop({ abort: false });
    while (bare.status.isPolling) await new Promise((r) => setTimeout(r, 20));

    await preload(b.clients.sqs, authUrl, N, N, 'noop');
    let done = 0;
    const noop = new FifoConsumer<string>({
      sqs: b.clients.sqs,
      queueUrl: authUrl,
      dlqUrl,
      queueName: 'noop',
      worker: 'bench',
      parse: (x) => x,
      handle: async () => {
        done++;
      },
      concurrency: CONCURRENCY,
      waitTimeSec: 1,
      logger: silentLogger(),
    });
    t0 = performance.now();
    noop.start();
    await until(async () => done >= N, 300_000, 'no-op drain');
    rows.push({ name: `no-op FifoConsumer (concurrency ${CONCURRENCY})`, perSec: (N / (performance.now() - t0)) * 1000, p50Ms: Number.NaN, p99Ms: Number.NaN, awsPerMsg: 0.2, cpuMsPerMsg: Number.NaN, rssMb: Number.NaN });
    await noop.close(5000);

    const env = {
      ...b.env,
      PAYFLEET_CONCURRENCY: String(CONCURRENCY),
      PAYFLEET_WAIT_TIME_SEC: '1',
      PAYFLEET_SHUTDOWN_GRACE_MS: '5000',
      PAYFLEET_FORCE_EXIT_MS: '10000',
      PAYMENT_TOKEN_SERVICE_URL: tokens.url,
      PAYMENT_TOKEN_SERVICE_API_KEY: tokens.apiKey,
      CAPTURE_PROCESS_QUEUE_SCHEDULER_NUMBER_OF_THREADS: String(CONCURRENCY),
      AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1',
    };

    // 2. Each worker at 1, 2 and 4 processes; every round on fresh charges (capture rounds capture
    //    the charges the matching auth round authorised). First, unmeasured, a warm-up round of each.
    const stackCpu = stackCpuMeter(b);
    const rounds: Array<{ phase: 'auth' | 'capture'; procs: number; n: number; measured: boolean; tag: string }> = [];
    if (WARMUP > 0) for (const phase of ['auth', 'capture'] as const) rounds.push({ phase, procs: 1, n: WARMUP, measured: false, tag: 'w' });
    for (const phase of ['auth', 'capture'] as const) for (const procs of PROCESSES) rounds.push({ phase, procs, n: N, measured: true, tag: `p${procs}` });
    for (const { phase, procs, n, measured, tag } of rounds) {
      const chargeIds = Array.from({ length: n }, (_, i) => `bench-${tag}-${i}`);
      const bodies = chargeIds.map((chargeId) => {
        const id = randomUUID();
        const body =
          phase === 'auth'
            ? { type: 'AuthorisationRequested', authRequestId: id, chargeId, gatewayAccountId: 'gw-bench', processor: 'sandbox', amount: 1000, currency: 'GBP', paymentTokenId: `tok_4242424242424242_${chargeId}`, reference: chargeId, description: 'bench', requestedAt: new Date().toISOString() }
            : { type: 'CaptureRequested', captureRequestId: id, chargeId, requestedAt: new Date().toISOString() };
        return { body, group: chargeId, dedup: id };
      });
      await sendBodies(b.clients.sqs, phase === 'auth' ? authUrl : captureUrl, bodies);
      const workers = await Promise.all(Array.from({ length: procs }, () => startWorker(phase, env)));
      const all = async () => {
        const maps = await Promise.all(workers.map((w) => scrape(w.port)));
        return maps.reduce((acc, m) => merge(acc, m), new Map<string, number>());
      };
      const before = await all();
      const stackBefore = stackCpu();
      const start = performance.now();
      await until(async () => sum(await all(), 'payfleet_messages_succeeded_total') >= n, 600_000, `${phase} drain`);
      const ms = performance.now() - start;
      const stackAfter = stackCpu();
      const after = await all();
      if (!measured) {
        await Promise.all(workers.map((w) => w.stop()));
        continue;
      }
      const cpu = sum(after, 'payfleet_process_cpu_seconds_total') - sum(before, 'payfleet_process_cpu_seconds_total');
      const calls = sum(after, 'payfleet_aws_calls_total') - sum(before, 'payfleet_aws_calls_total');
      const cost = costPerMessage(before, after, N);
      rows.push({
        name: `${phase} worker, sandbox processor, ${procs} process${procs > 1 ? 'es' : ''} x concurrency ${CONCURRENCY}`,
        perSec: (N / ms) * 1000,
        p50Ms: quantile(after, 'payfleet_processing_seconds', 0.5, 'outcome="success"') * 1000,
        p99Ms: quantile(after, 'payfleet_processing_seconds', 0.99, 'outcome="success"') * 1000,
        awsPerMsg: calls / N,
        cpuMsPerMsg: (cpu * 1000) / N,
        rssMb: sum(after, 'payfleet_process_resident_memory_bytes') / 1024 / 1024 / procs,
        cost,
        stackCpuMs: {
          dynamodbLocal: ((stackAfter.dynamodbLocal - stackBefore.dynamodbLocal) * 1000) / N,
          benchProcess: ((stackAfter.benchProcess - stackBefore.benchProcess) * 1000) / N,
        },
      });
      await Promise.all(workers.map((w) => w.stop()));
    }
  } finally {
    await tokens.close();
    await b.close();
  }
  const base = rows[0]!.perSec;
  console.log(`\n${N} messages per round (after ${WARMUP} unmeasured), node ${process.version}, ${new Date().toISOString()}\n`);
  console.log('| what | msg/s | vs bare loop | p50 ms | p99 ms | AWS calls/msg | worker CPU ms/msg | RSS MB per process |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.name} | ${fmt(r.perSec)} | ${fmt(r.perSec / base, 2)} | ${fmt(r.p50Ms)} | ${fmt(r.p99Ms)} | ${fmt(r.awsPerMsg, 2)} | ${fmt(r.cpuMsPerMsg, 2)} | ${fmt(r.rssMb)} |`);
  }
  // Counted, not estimated: each worker's own call counter by operation, and DynamoDB's own
  // consumed-capacity figures (heartbeats, lease renewals and pollers included, per message).
  console.log('\nPer message, from the workers\' counters:\n');
  console.log('| worker round | DynamoDB calls/msg | by operation | SQS calls/msg | by operation | WRU/msg | RRU/msg |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    if (!r.cost) continue;
    const c = r.cost;
    console.log(`| ${r.name} | ${fmt(c.dynamodbCalls, 2)} | ${fmtCalls(c.calls.dynamodb)} | ${fmt(c.sqsCalls, 2)} | ${fmtCalls(c.calls.sqs)} | ${fmt(c.wru, 1)} | ${fmt(c.rru, 1)} |`);
  }
  // The whole machine's work per message: on the embedded stack everything shares the same cores,
  // so throughput follows the sum, and DynamoDB Local's share is what no worker change can remove.
  console.log('\nCPU ms per message across the stack (worker processes, DynamoDB Local JVM, bench process with fauxqs and the sandboxes):\n');
  console.log('| worker round | workers | DynamoDB Local | bench process | total |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) {
    if (!r.stackCpuMs) continue;
    const s = r.stackCpuMs;
    console.log(`| ${r.name} | ${fmt(r.cpuMsPerMsg, 2)} | ${fmt(s.dynamodbLocal, 2)} | ${fmt(s.benchProcess, 2)} | ${fmt(r.cpuMsPerMsg + s.dynamodbLocal + s.benchProcess, 2)} |`);
  }
}

await main();


