/**
 * Command: the README's local recipe ("Run the fleet yourself"), as written, end to end, with the
 * real binary: `stack up` in one "terminal", its `export` lines pasted into the others, `dev` (the
 * sandboxes and all four workers), then the sends and reads in the README's order until each read
 * shows what its comment promises. Every worker is exercised: auth and capture (the charge), payout
 * (the payout reaches PAID), ledger (every event of the charge emitted). A README edit that breaks
 * the recipe, or a worker variable the recipe does not provide, fails here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, startProcess, type WorkerProcess } from '../support/processes.js';
import { runCli, type CliResult } from './support.js';

/** The `npx payfleet ...` lines of the README's recipe block, comments stripped. */
function recipeCommands(): string[][] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('<!-- local-recipe');
  const end = readme.indexOf('<!-- /local-recipe -->');
  expect(start, 'README.md has no local-recipe block').toBeGreaterThan(-1);
  return readme
    .slice(start, end)
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.startsWith('npx payfleet '))
    .map((l) => l.slice('npx payfleet '.length).split(/\s+/));
}

/** What a person pastes: the `export NAME=value` lines a command printed (single quotes undone). */
function exportsOf(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^\s*export ([A-Z_][A-Z0-9_]*)=(.*)$/gm)) {
    const raw = m[2]!.trim();
    env[m[1]!] = raw.startsWith("'") ? raw.slice(1, -1).replace(/'\\''/g, "'") : raw;
  }
  return env;
}

/**
 * Wait until the output of `p` matches, or fail with it — at once when `p` exited. Generous: this is
 * a whole fleet on a shared machine.
 */
async function until(what: string, p: WorkerProcess, pattern: RegExp, timeoutMs = 120_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = p.raw().match(pattern);
    if (m) return m;
    const gone = p.child.exitCode !== null || p.child.signalCode !== null;
    if (gone || Date.now() > deadline)
      throw new Error(`${what}: no ${pattern} ${gone ? `(it exited, ${p.child.exitCode ?? p.child.signalCode})` : `within ${timeoutMs / 1000} s`}; output so far:\n${p.raw().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Run a read command again until its output shows `pattern`, as a person would. */
async function rerunUntil(args: string[], env: Record<string, string>, pattern: RegExp, timeoutMs = 120_000): Promise<CliResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await runCli(args, env);
    if (r.code === 0 && pattern.test(r.stdout)) return r;
    if (Date.now() > deadline) throw new Error(`payfleet ${args.join(' ')}: no ${pattern} within ${timeoutMs / 1000} s; last exit ${r.code}:\n${r.stdout}${r.stderr}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const background: WorkerProcess[] = [];
afterAll(async () => {
  // Ctrl-C in each terminal, newest first: dev stops its workers, then the stack stops its emulators.
  for (const p of background.reverse()) {
    p.kill('SIGINT');
    await p.exited;
  }
});

describe('the README recipe (run the fleet yourself)', () => {
  it('works as written: stack up, dev, then every send and read in order', async () => {
    const commands = recipeCommands();
    expect(commands.map((c) => c.join(' '))).toEqual([
      'stack up',
      'dev',
      'send auth-requests docs/examples/auth-requests.ndjson',
      'charge ch-example-1',
      'send capture-requests docs/examples/capture-requests.ndjson',
      'charge ch-example-1',
      'send payout-events docs/examples/payout-events.ndjson',
      'payout pay-example-1',
      'events ch-example-1',
    ]);
    // What each read must show before the recipe goes on (the README's comments, as patterns).
    const expectations: RegExp[] = [/status\s+AUTHORISATION_SUCCESS/, /status\s+CAPTURED/, /status\s+PAID/, /(\d+) events, \1 emitted, 0 pending/];

    // Terminal 1. `npx payfleet` runs bin/payfleet.js; so does this.
    const stack = startProcess('bin/payfleet.js', commands[0]!, {});
    background.push(stack);
    await until('stack up', stack, /export AWS_SECRET_ACCESS_KEY=.*\n[\s\S]*export PAYFLEET_RESOURCE_PREFIX=.*\n/);
    const pasted = exportsOf(stack.raw());
    expect(Object.keys(pasted)).toEqual(
      expect.arrayContaining(['AWS_REGION', 'AWS_ENDPOINT_URL_SQS', 'AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']),
    );

    // Terminal 2.
    const dev = startProcess('bin/payfleet.js', commands[1]!, pasted);
    background.push(dev);
    const opsUrls = (await until('dev', dev, /export PAYFLEET_OPS_URLS=(\S+)\n/, 180_000))[1]!;
    const workers = Object.fromEntries(opsUrls.split(',').map((kv) => kv.split('=') as [string, string]));
    expect(Object.keys(workers)).toEqual(['auth', 'capture', 'payout', 'ledger', 'refund']);
    for (const url of Object.values(workers)) expect((await fetch(`${url}/health/ready`)).status).toBe(200);

    // Terminal 3: sends run once; reads are re-run until they show what the README says.
    for (const args of commands.slice(2)) {
      if (args[0] === 'send') {
        const r = await runCli(args, pasted);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/sent 1 message\(s\)/);
      } else {
        await rerunUntil(args, pasted, expectations.shift()!);
      }
    }
    expect(expectations).toEqual([]);
    expect(dev.child.exitCode).toBeNull(); // no worker gave up along the way
  }, 600_000);
});
