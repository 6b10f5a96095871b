import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface WorkerProcess {
  readonly child: ChildProcess;
  /** Parsed JSON log lines seen so far. */
  readonly lines: Record<string, unknown>[];
  /** Raw stdout+stderr text seen so far (for the no-card-data checks). */
  raw(): string;
  /** Resolves with the first log line matching `predicate`. */
  waitForLine(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * Start a TypeScript entrypoint (or `bin/payfleet.js` args) as a child process with JSON logs
 * collected. `script` is relative to the repo root.
 */
export function startProcess(script: string, args: string[], env: Record<string, string>): WorkerProcess {
  const isTs = script.endsWith('.ts');
  const child = spawn(process.execPath, isTs ? ['--import', 'tsx', script, ...args] : [script, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  const waiters: { predicate: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let buf = '';
  // The suite-wide card-data scan (global-setup.ts teardown) reads every process's whole output.
  const logDir = process.env.PAYFLEET_TEST_LOG_DIR;
  const logFile = logDir ? join(logDir, `${basename(script)}-${args.join('-').replace(/[^\w-]/g, '')}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.log`) : undefined;
  const onData = (chunk: Buffer) => {
    const text = chunk.toString();
    if (logFile) appendFileSync(logFile, text);
    raw += text;
    buf += text;
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      if (!line.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        lines.push(parsed);
        for (const w of [...waiters]) {
          if (w.predicate(parsed)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(parsed);
          }
        }
      } catch {
        /* not a log line */
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    lines,
    raw: () => raw,
    exited,
    kill: (signal = 'SIGTERM') => {
      child.kill(signal);
    },
    waitForLine(predicate, timeoutMs = 30_000) {
      const found = lines.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${raw.slice(-3000)}`)), timeoutMs);
        waiters.push({
          predicate,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
  };
}
