/**
 * Shared harness for worker benchmarks: the embedded stack, a fresh bootstrapped prefix, worker
 * processes started exactly as on ECS (`payfleet worker <name>`), and readings from each worker's
 * own /metrics (messages succeeded, latency histogram, AWS calls by service and operation, DynamoDB
 * capacity units consumed, CPU, memory). Workers started here count consumed capacity
 * (PAYFLEET_DYNAMODB_CONSUMED_CAPACITY=true), so write and read units per message are DynamoDB's own
 * figures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createAwsClients, type AwsClients } from '../shared/aws/clients.js';
import { bootstrap } from '../cli/bootstrap.js';
import { EMBEDDED_CREDENTIALS, freePort, startEmbeddedStack, type EmbeddedStack } from '../cli/embedded/stack.js';
import { resourceNames, type ResourceNames } from '../shared/resources.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface BenchStack {
  readonly stack: EmbeddedStack;
  readonly clients: AwsClients;
  readonly names: ResourceNames;
  readonly queueUrls: Record<string, string>;
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

export async function startBenchStack(prefix = 'bench-'): Promise<BenchStack> {
  const stack = await startEmbeddedStack();
  const clients = createAwsClients(
    { resourcePrefix: prefix, region: stack.region, sqsEndpoint: stack.sqsEndpoint, dynamodbEndpoint: stack.dynamodbEndpoint },
    { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 },
  );
  const report = await bootstrap(clients, { prefix });
  return {
    stack,
    clients,
    names: resourceNames(prefix),
    queueUrls: { ...report.queueUrls },
    env: { ...stack.env, PAYFLEET_RESOURCE_PREFIX: prefix },
    async close() {
      clients.destroy();
      await stack.stop();
    },
  };
}

export interface BenchWorker {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Start `payfleet worker <name>` with `env`; resolves once /health/ready answers 200. */
export async function startWorker(name: string, env: Record<string, string>): Promise<BenchWorker> {
  const port = await freePort();
  const child = spawn(process.execPath, ['bin/payfleet.js', 'worker', name], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      PAYFLEET_LOG_LEVEL: 'warn',
      // BENCH_CONSUMED_CAPACITY=false: no ReturnConsumedCapacity (a tree without it, or CPU compared with one).
      PAYFLEET_DYNAMODB_CONSUMED_CAPACITY: process.env.BENCH_CONSUMED_CAPACITY ?? 'true',
      // e.g. BENCH_WORKER_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof": a CPU profile per worker.
      ...(process.env.BENCH_WORKER_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_WORKER_NODE_OPTIONS } : {}),
      ...env,
      PAYFLEET_OPS_PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Keep the tail of the worker's log so a failed start says why.
  let tail = '';
  child.stdout!.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health/ready`);
      if (r.status === 200) break;
    } catch {
      /* not up yet */
    }
    if (child.exitCode !== null) throw new Error(`worker ${name} exited with ${child.exitCode}:\n${tail}`);
    if (Date.now() > deadline) throw new Error(`worker ${name} not ready in 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    child,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

export type Samples = Map<string, number>;

/** Fetch a worker's /metrics as `name{labels}` -> value. */
export async function scrape(port: number): Promise<Samples> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of every sample of `metric` whose labels include all of `match` (e.g. 'queue="x"'). */
export function sum(samples: Samples, metric: string, ...match: string[]): number {
  let total = 0;
  for (const [k, v] of samples) {
    if (k !== metric && !k.startsWith(`${metric}{`)) continue;
    if (match.every((m) => k.includes(m))) total += v;
  }
  return total;
}

/** Per value of `label`, the increase of `metric` from `before` to `after` (samples matching all of `match`). */
export function deltaBy(before: Samples, after: Samples, metric: string, label: string, ...match: string[]): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`${label}="([^"]*)"`);
  for (const [k, v] of after) {
    if (!k.startsWith(`${metric}{`) || !match.every((m) => k.includes(m))) continue;
    const value = re.exec(k)?.[1];
    if (value === undefined) continue;
    out.set(value, (out.get(value) ?? 0) + v - (before.get(k) ?? 0));
  }
  return out;
}

/** What one message cost in AWS terms, from a worker's own counters between two readings. */
export interface CostPerMessage {
  /** Calls per message by operation (`UpdateItem`, `ReceiveMessage`, ...), per service. */
  readonly calls: { readonly dynamodb: ReadonlyMap<string, number>; readonly sqs: ReadonlyMap<string, number> };
  readonly dynamodbCalls: number;
  readonly sqsCalls: number;
  /** DynamoDB write / read capacity units per message (NaN when the workers did not count them). */
  readonly wru: number;
  readonly rru: number;
}

export function costPerMessage(before: Samples, after: Samples, messages: number): CostPerMessage {
  const per = (m: Map<string, number>) =>
    new Map([...m].filter(([, v]) => v > 0).map(([op, v]) => [op.replace(/Command$/, ''), v / messages] as const).sort((a, b) => b[1] - a[1]));
  const dynamodb = per(deltaBy(before, after, 'payfleet_aws_calls_total', 'command', 'service="dynamodb"'));
  const sqs = per(deltaBy(before, after, 'payfleet_aws_calls_total', 'command', 'service="sqs"'));
  const counted = [...after.keys()].some((k) => k.startsWith('payfleet_dynamodb_capacity_units_total'));
  const units = (kind: string) =>
    counted ? (sum(after, 'payfleet_dynamodb_capacity_units_total', `kind="${kind}"`) - sum(before, 'payfleet_dynamodb_capacity_units_total', `kind="${kind}"`)) / messages : Number.NaN;
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return { calls: { dynamodb, sqs }, dynamodbCalls: total(dynamodb), sqsCalls: total(sqs), wru: units('write'), rru: units('read') };
}

/** `UpdateItem 2.00, TransactWriteItems 2.00, GetItem 1.00` */
export const fmtCalls = (m: ReadonlyMap<string, number>) => [...m].map(([op, v]) => `${op} ${v.toFixed(2)}`).join(', ') || '-';

/** Approximate quantile from a Prometheus histogram's cumulative buckets (upper bound of the bucket). */
export function quantile(samples: Samples, histogram: string, q: number, ...match: string[]): number {
  const buckets: { le: number; count: number }[] = [];
  for (const [k, v] of samples) {
    if (!k.startsWith(`${histogram}_bucket{`) || !match.every((m) => k.includes(m))) continue;
    const le = /le="([^"]+)"/.exec(k)?.[1];
    if (!le) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    const existing = buckets.find((b) => b.le === bound);
    if (existing) existing.count += v;
    else buckets.push({ le: bound, count: v });
  }
  buckets.sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  const target = q * total;
  return buckets.find((b) => b.count >= target)?.le ?? Number.NaN;
}

export async function until(predicate: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

/** CPU seconds (user + system) process `pid` has used, from /proc/<pid>/stat (Linux, 100 ticks/s). */
export function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command name: state is field 3, utime field 14, stime field 15 (1-based, man 5 proc).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** The DynamoDB Local JVM serving `endpoint` (found by its `-port` argument in /proc), if any. */
export function dynamoDbLocalPid(endpoint: string): number | undefined {
  const port = new URL(endpoint).port;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const args = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (args.some((a) => a.endsWith('DynamoDBLocal.jar')) && args[args.indexOf('-port') + 1] === port && !args[0]!.endsWith('sh')) return Number(d);
    } catch {
      /* gone, or not ours */
    }
  }
  return undefined;
}

/** CPU of the stack around the workers, in seconds: the DynamoDB Local JVM, and this process (fauxqs, the sandboxes, the bench's scrapes). */
export interface StackCpu {
  readonly dynamodbLocal: number;
  readonly benchProcess: number;
}

/** A reader of {@link StackCpu} for the bench stack `b` (NaN for DynamoDB Local when it cannot be found). */
export function stackCpuMeter(b: BenchStack): () => StackCpu {
  const pid = b.stack.dynamodbEndpoint ? dynamoDbLocalPid(b.stack.dynamodbEndpoint) : undefined;
  return () => {
    const own = process.cpuUsage();
    return { dynamodbLocal: pid === undefined ? Number.NaN : procCpuSeconds(pid), benchProcess: (own.user + own.system) / 1e6 };
  };
}
