/**
 * Shared harness for worker benchmarks: the embedded stack, a fresh bootstrapped prefix, worker
 * processes started exactly as on ECS (`payfleet worker <name>`), and readings from each worker's
 * own /metrics (messages succeeded, latency histogram, AWS calls, CPU, memory).
 */
import { spawn, type ChildProcess } from 'node:child_process';
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
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PAYFLEET_LOG_LEVEL: 'warn', ...env, PAYFLEET_OPS_PORT: String(port) },
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
