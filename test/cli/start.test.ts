/**
 * Command: `npm start`'s orchestrator (`payfleet start`), bounded: a small load without a terminal.
 * It must end with every check PASS and exit 0, and leave no DynamoDB Local and no worker behind.
 * 20 charges are enough for every refund kind at all four processors (test/cli/summary.test.ts).
 */
import { execFile, spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/processes.js';

function pgrep(pattern: string): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('pgrep', ['-f', pattern], (err, stdout) => resolve(err ? [] : stdout.split('\n').filter(Boolean)));
  });
}

describe('payfleet start (npm start)', () => {
  it('runs the fleet with a small load and prints an all-PASS summary; nothing is left running', async () => {
    const child = spawn(
      process.execPath,
      ['bin/payfleet.js', 'start', '--charges', '20', '--payouts', '10', '--duration', '8', '--settle-timeout', '60', '--json'],
      {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));

    const summary = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
      ok: boolean;
      node: string;
      checks: { name: string; ok: boolean; detail: string }[];
    };
    const failed = (summary.checks ?? []).filter((c) => !c.ok);
    expect(failed, `stderr:\n${stderr.slice(-4000)}`).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(code).toBe(0);
    // The summary says which Node the fleet ran on: the test's own (npm test's node_modules/.bin/node).
    expect(summary.node).toBe(process.version);
    expect(summary.checks.map((c) => c.name)).toEqual([
      'every good message reached its final state',
      'no double charge (Stripe, Worldpay and Chase counters)',
      'every refund reached its planned outcome',
      'refunded never more than captured (charges and processors)',
      'at most one refund per request at each processor',
      'every refund seen by the Ledger (REFUND_* events)',
      'no double payout (LHV initiations per payment)',
      'every event delivered (Ledger consumer: once, in order)',
      'every bad message in a DLQ with its reason',
      'no card number in logs, tables, events or DLQs',
      'workers stopped cleanly on SIGTERM',
      'emulators stopped (no DynamoDB Local left)',
    ]);

    // Progress went to stderr as plain lines (no terminal), with the endpoints of its own stack.
    const port = /DynamoDB http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1];
    expect(port, stderr).toBeDefined();
    expect(stderr).not.toContain('\x1b[');
    expect(await pgrep(`DynamoDBLocal.*-port ${port}( |$)`)).toEqual([]);
    // The demo's workers carry its orphan guard, tagged with its pid, on their command line.
    expect(await pgrep(`payfleet-demo-${child.pid}%22`)).toEqual([]);
  }, 150_000);
});
