import { execFile } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/processes.js';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Hand output of a process started here to the suite-wide card-data scan (test/support/
 * global-setup.ts), as test/support/processes.ts does for the processes it starts.
 */
export function recordOutput(label: string, text: string): void {
  const dir = process.env.PAYFLEET_TEST_LOG_DIR;
  if (!dir || text === '') return;
  const name = `cli-${label.replace(/[^\w-]/g, '').slice(0, 60)}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.log`;
  appendFileSync(join(dir, name), text);
}

/**
 * Run the real `payfleet` binary (bin/payfleet.js) with a clean environment plus `env`, optionally
 * feeding `input` on stdin (which is then a pipe, not a terminal). Never rejects: the exit code is
 * part of what the tests check. Its stderr (messages, errors: the CLI's log) goes to the
 * suite-wide card-data scan; stdout is the data asked for, which `dlq show --body` prints byte for
 * byte — and the tests' sandbox tokens embed test card numbers (`tok_4242..._x`).
 */
export function runCli(
  args: readonly string[],
  env: Record<string, string> = {},
  input?: string,
  timeoutMs = 60_000,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['bin/payfleet.js', ...args],
      {
        cwd: ROOT,
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1', ...env },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        recordOutput(args.join('-'), stderr);
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

/** Parse the JSON a `--json` command printed (fails the test with the output when it is not JSON). */
export function json<T = Record<string, unknown>>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}
