import { WORKER_NAMES, type WorkerName } from '../../workers/index.js';
import { orphanGuard } from './orphan-guard.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, type Command } from 'commander';
import { sandboxWorkerEnv } from './local-env.js';
import { printTable, shellExport } from './output.js';
import { sleep } from '../../shared/core/timers.js';

/**
 * `payfleet dev`: the local recipe in one command. Against a stack that is already running
 * (`payfleet stack up` in another terminal, or LocalStack), it starts the sandbox services and the
 * five workers — each `payfleet worker <name>` in its own process, as on ECS — on their own ops
 * ports, prints where their health and metrics are (`PAYFLEET_OPS_URLS`, which `payfleet status`
 * reads), streams their logs prefixed with the worker's name, and stops them all on Ctrl-C.
 *
 * Start-up order: configuration -> the stack answers and has the queues (one clear message now,
 * not five workers failing) -> sandboxes -> workers -> every /health/ready is 200 -> the summary.
 */

const WORKERS = WORKER_NAMES;
type DevWorker = WorkerName;

/** The queues the workers consume or publish to: checked before any worker starts. */
const QUEUES = ['auth-requests', 'capture-requests', 'refund-requests', 'payout-events', 'ledger-events'] as const;

/** Ops ports when nothing says otherwise: 9401 auth, 9402 capture, 9403 payout, 9404 ledger, 9405 refund. */
export const DEV_FIRST_OPS_PORT = 9401;

/**
 * Settings for a development loop, applied only where the environment does not set them: short
 * long polls and grace so Ctrl-C returns in seconds, and a failed capture retried after 5 s rather
 * than production's hour.
 */
export const DEV_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  PAYFLEET_WAIT_TIME_SEC: '2',
  AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '2',
  PAYFLEET_SHUTDOWN_GRACE_MS: '5000',
  PAYFLEET_FORCE_EXIT_MS: '9000',
  CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: '5',
});

/** The checkout (or image) root: two levels up from the sources, three from dist/. */
const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/cli/') ? '../../..' : '../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'payfleet.js');

/** Preloaded into each worker: it shuts down when this process is gone; tagged with this process' pid. */
const ORPHAN_GUARD = orphanGuard(`dev-${process.pid}`);

/** `auth=http://127.0.0.1:9401,capture=...`: the format `payfleet status` reads. */
export function opsUrls(ports: Readonly<Record<DevWorker, number>>): string {
  return WORKERS.map((w) => `${w}=http://127.0.0.1:${ports[w]}`).join(',');
}

function portOption(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65531)
    throw new InvalidArgumentError('must be a port from 1 to 65531, or 0 for any free ports');
  return n;
}

/** Whether `port` can be bound on every interface (where workers serve their ops endpoints). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}

async function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '0.0.0.0', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * `--ops-port N`: N..N+4, each must be free (exit 2 naming the option otherwise); 0: any free ports.
 * No option: 9401-9405 when all are free (easy to remember), any free ports otherwise.
 */
async function choosePorts(first: number | undefined): Promise<Record<DevWorker, number>> {
  const ports = {} as Record<DevWorker, number>;
  const wanted = first ?? DEV_FIRST_OPS_PORT;
  const consecutive = wanted !== 0 && (await Promise.all(WORKERS.map((_, i) => portFree(wanted + i)))).every(Boolean);
  if (!consecutive && first !== undefined && first !== 0) {
    throw Object.assign(
      new Error(`--ops-port ${first}: ports ${first}-${first + WORKERS.length - 1} are not all free; choose others, or --ops-port 0 for any free ports`),
      { exitCode: 2 },
    );
  }
  for (const [i, w] of WORKERS.entries()) ports[w] = consecutive ? wanted + i : await anyFreePort();
  return ports;
}

interface Running {
  readonly name: DevWorker;
  readonly child: ChildProcess;
  readonly exited: Promise<number | string>;
}

/** Start `payfleet worker <name>` in its own process group, its output prefixed with its name. */
function startWorker(name: DevWorker, env: Record<string, string | undefined>): Running {
  const child = spawn(process.execPath, ['--import', ORPHAN_GUARD, BIN, 'worker', name], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: Ctrl-C reaches only `payfleet dev`, which sends each worker exactly one
    // SIGTERM (a second signal makes a worker skip its graceful shutdown).
    detached: true,
  });
  const prefix = `${name.padEnd(7)}| `;
  const pipe = (from: NodeJS.ReadableStream, to: NodeJS.WritableStream) => {
    let rest = '';
    from.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) to.write(`${prefix}${line}\n`);
    });
    from.on('end', () => {
      if (rest) to.write(`${prefix}${rest}\n`);
    });
  };
  pipe(child.stdout!, process.stdout);
  pipe(child.stderr!, process.stderr);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { name, child, exited };
}

async function ready(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

interface DevOptions {
  opsPort?: number;
  sandbox: boolean;
  readyTimeout: number;
}

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description(
      'run the sandbox services and the five workers (auth, capture, payout, ledger, refund) against a running stack, ' +
        'each worker in its own process on its own ops port, until Ctrl-C',
    )
    .option('--ops-port <port>', `first ops port; the workers use it and the next four (default ${DEV_FIRST_OPS_PORT}, or free ports when taken; 0 = free ports)`, portOption)
    .option('--no-sandbox', 'do not start the sandboxes: the workers use the service variables already in the environment')
    .option('--ready-timeout <seconds>', 'how long to wait for every worker to be ready', (v) => Number(v), 120)
    .addHelpText(
      'after',
      `
Point it at a stack with the variables \`payfleet stack up\` prints (AWS_REGION, AWS_ENDPOINT_URL_SQS,
AWS_ENDPOINT_URL_DYNAMODB, the keys), as every other command. Once every worker is ready it prints
  export PAYFLEET_OPS_URLS=auth=http://127.0.0.1:9401,capture=...,payout=...,ledger=...
for \`payfleet status\`. Worker settings come from the environment; where it sets none, short long
polls and grace (Ctrl-C returns in seconds) and a 5 s capture retry are used.
Exit codes: 0 stopped by Ctrl-C / SIGTERM, 1 a worker exited on its own, 2 configuration.`,
    )
    .action(async (opts: DevOptions) => {
      // Loaded here, not at CLI start: `payfleet --help` must not pay for the AWS SDK.
      const { openCommandContext, resolveQueueUrl } = await import('./context.js');
      const ctx = openCommandContext();
      try {
        // One clear message (AwsFailure) now beats five workers each failing the same way.
        for (const q of QUEUES) await resolveQueueUrl(ctx, ctx.names.queue(q));
      } finally {
        ctx.clients.destroy();
      }
      const ports = await choosePorts(opts.opsPort);
      let sandboxEnv: Record<string, string> = {};
      let closeSandboxes = async () => undefined as void;
      if (opts.sandbox) {
        const { startSandboxServices } = await import('../sandbox/serve.js');
        const services = await startSandboxServices({ host: '127.0.0.1' });
        sandboxEnv = sandboxWorkerEnv(services.env);
        closeSandboxes = () => services.close();
      }
      const defaults = Object.fromEntries(Object.entries(DEV_DEFAULTS).filter(([k]) => !process.env[k]));
      const workers = WORKERS.map((name) =>
        startWorker(name, {
          ...defaults,
          ...process.env,
          ...sandboxEnv,
          PAYFLEET_OPS_PORT: String(ports[name]),
        }),
      );

      let stopping: Promise<never> | undefined;
      const stop = (code: number, why?: string): Promise<never> => {
        stopping ??= (async () => {
          if (why) process.stderr.write(`payfleet dev: ${why}\n`);
          for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
          // The workers' own force-exit bound is PAYFLEET_FORCE_EXIT_MS; past it (and a margin), SIGKILL.
          const forceMs = Number(process.env.PAYFLEET_FORCE_EXIT_MS ?? DEV_DEFAULTS.PAYFLEET_FORCE_EXIT_MS) + 2000;
          const timer = setTimeout(() => {
            for (const w of workers) {
              if (w.child.exitCode !== null || w.child.signalCode !== null || !w.child.pid) continue;
              try {
                process.kill(-w.child.pid, 'SIGKILL'); // its whole process group
              } catch {
                // Gone in the meantime.
              }
            }
          }, forceMs);
          await Promise.all(workers.map((w) => w.exited));
          clearTimeout(timer);
          await closeSandboxes();
          process.exit(code);
        })();
        return stopping;
      };
      process.on('SIGINT', () => void stop(0));
      process.on('SIGTERM', () => void stop(0));
      for (const w of workers) {
        void w.exited.then((code) => {
          if (!stopping) void stop(1, `worker ${w.name} exited (${code}) on its own; stopping the others (its output is above, prefixed "${w.name}")`);
        });
      }

      const deadline = Date.now() + opts.readyTimeout * 1000;
      const waiting = new Set<DevWorker>(WORKERS);
      while (waiting.size > 0) {
        if (stopping) return stopping;
        for (const name of [...waiting]) if (await ready(ports[name])) waiting.delete(name);
        if (waiting.size === 0) break;
        if (Date.now() > deadline) return stop(1, `not ready within ${opts.readyTimeout} s: ${[...waiting].join(', ')}`);
        await sleep(500);
      }

      process.stdout.write('\npayfleet dev: every worker is ready (Ctrl-C stops them all)\n\n');
      printTable(
        ['worker', 'health, metrics'],
        WORKERS.map((w) => [w, `http://127.0.0.1:${ports[w]}/health/ready  /metrics`]),
      );
      process.stdout.write(`\nfor \`payfleet status\` (in the terminal where you run other commands):\n  ${shellExport('PAYFLEET_OPS_URLS', opsUrls(ports))}\n\n`);
      // Stay up until a signal arrives or a worker exits.
      return new Promise<never>(() => undefined);
    });
}
