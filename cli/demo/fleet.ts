/**
 * The worker processes of `npm start`: each one `payfleet worker <name>` in its own child process,
 * as on ECS, with its logs in a file and its ops port (health, metrics) scraped by the live view.
 *
 * Children run in their own process group (detached), so a Ctrl-C in the terminal reaches only
 * the orchestrator, which then sends each worker exactly one SIGTERM (a second signal would make a
 * worker skip its graceful shutdown). A preloaded one-line guard makes a worker SIGTERM itself if
 * the orchestrator disappears without stopping it (SIGKILL), so no worker outlives the demo.
 */
import type { WorkerName } from '../../workers/index.js';
import { orphanGuard } from '../commands/orphan-guard.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../embedded/stack.js';
import { settlesWithin, sleep } from '../../shared/core/timers.js';

export type DemoWorkerName = WorkerName;

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'payfleet.js');

/** Preloaded into each worker: it shuts down when this process is gone; tagged with this process' pid. */
const ORPHAN_GUARD = orphanGuard(`demo-${process.pid}`);

export interface WorkerHealth {
  /** HTTP status of /health/ready, or undefined when it did not answer. */
  readonly ready: number | undefined;
  readonly detail: string;
}

export interface DemoWorker {
  readonly name: DemoWorkerName;
  readonly opsPort: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) and how long after SIGTERM it came. */
  readonly exited: Promise<{ code: number | string; afterTermMs: number | undefined }>;
  /** Last lines of its output, for error messages. */
  tail(lines?: number): string;
  health(): Promise<WorkerHealth>;
  /** Prometheus samples from /metrics, `name{labels}` -> value; undefined when it did not answer. */
  metrics(): Promise<Map<string, number> | undefined>;
  /** SIGTERM once (idempotent). */
  terminate(): void;
  /** SIGKILL the whole process group. */
  kill(): void;
}

/** Parse Prometheus text into `name{labels}` -> value (labels as written). */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    const value = Number(line.slice(sp + 1));
    if (Number.isFinite(value)) out.set(line.slice(0, sp), value);
  }
  return out;
}

/** Sum of a metric's samples whose labels contain every `match` pair. */
export function sumMetric(m: Map<string, number> | undefined, name: string, match: Record<string, string> = {}): number {
  if (!m) return 0;
  let total = 0;
  for (const [key, value] of m) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (Object.entries(match).every(([k, v]) => key.includes(`${k}="${v}"`))) total += value;
  }
  return total;
}

async function get(url: string, timeoutMs = 1500): Promise<{ status: number; body: string } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.text() };
  } catch {
    return undefined;
  }
}

/** Start `payfleet worker <name>` with `env` (plus its own free ops port); output goes to `logDir/<name>.log`. */
export async function startWorker(name: DemoWorkerName, env: Record<string, string>, logDir: string): Promise<DemoWorker> {
  const opsPort = await freePort();
  const logFile = join(logDir, `${name}.log`);
  const log: WriteStream = createWriteStream(logFile);
  const child = spawn(process.execPath, ['--import', ORPHAN_GUARD, BIN, 'worker', name], {
    cwd: ROOT,
    env: {
      ...env,
      PAYFLEET_OPS_PORT: String(opsPort),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let recent = '';
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    recent = (recent + chunk.toString()).slice(-8000);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  let termAt: number | undefined;
  const exited = new Promise<{ code: number | string; afterTermMs: number | undefined }>((resolve) =>
    child.once('exit', (code, signal) => {
      log.end();
      resolve({ code: code ?? signal ?? -1, afterTermMs: termAt === undefined ? undefined : Date.now() - termAt });
    }),
  );
  const base = `http://127.0.0.1:${opsPort}`;
  return {
    name,
    opsPort,
    logFile,
    child,
    exited,
    tail: (lines = 15) => recent.trimEnd().split('\n').slice(-lines).join('\n'),
    async health() {
      const r = await get(`${base}/health/ready`);
      if (!r) return { ready: undefined, detail: child.exitCode !== null ? `exited (${child.exitCode})` : 'starting' };
      let detail = r.status === 200 ? 'ready' : 'not ready';
      try {
        const body = JSON.parse(r.body) as { status?: string; checks?: { name: string; ok: boolean }[] };
        const failing = (body.checks ?? []).filter((c) => !c.ok).map((c) => c.name);
        detail = body.status ?? detail;
        if (failing.length > 0) detail += ` (${failing.join(', ')})`;
      } catch {
        // Keep the status-derived text.
      }
      return { ready: r.status, detail };
    },
    async metrics() {
      const r = await get(`${base}/metrics`);
      return r && r.status === 200 ? parsePrometheus(r.body) : undefined;
    },
    terminate() {
      if (termAt !== undefined || child.exitCode !== null || child.signalCode !== null) return;
      termAt = Date.now();
      child.kill('SIGTERM');
    },
    kill() {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    },
  };
}

/** Wait until every worker answers /health/ready 200; fails fast when one exits. */
export async function waitUntilReady(workers: readonly DemoWorker[], timeoutMs: number, onTick?: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const ready = new Set<DemoWorkerName>();
  while (ready.size < workers.length) {
    for (const w of workers) {
      if (w.child.exitCode !== null || w.child.signalCode !== null) {
        throw new Error(
          `worker ${w.name} exited during start-up (${w.child.exitCode ?? w.child.signalCode}); its last lines:\n${w.tail()}`,
        );
      }
      if (!ready.has(w.name) && (await w.health()).ready === 200) ready.add(w.name);
    }
    onTick?.();
    if (ready.size === workers.length) return;
    if (Date.now() > deadline) {
      const missing = workers.filter((w) => !ready.has(w.name));
      throw new Error(
        `not ready within ${timeoutMs / 1000} s: ${missing.map((w) => w.name).join(', ')}; last lines of ${missing[0]!.name}:\n${missing[0]!.tail()}`,
      );
    }
    await sleep(250);
  }
}

/** SIGTERM every worker, wait up to `graceMs` for each, then SIGKILL what is left. */
export async function stopWorkers(workers: readonly DemoWorker[], graceMs: number): Promise<void> {
  for (const w of workers) w.terminate();
  await settlesWithin(Promise.all(workers.map((w) => w.exited)), graceMs);
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.kill();
  await Promise.all(workers.map((w) => w.exited));
}
