/**
 * CPU cost of starting the `payfleet` command: `--help`, `--version`, a command's `--help`, and a
 * read command that really reads (`charge <id>` against an embedded stack, exit 3 "no charge").
 * Each case runs under `/usr/bin/time -f '%U %S %e'` (user and system CPU of the whole process,
 * and wall time) RUNS times; the table shows the median and the best.
 *
 *   npm run bench:cli                                  # dist/ (built first) and the sources through tsx
 *   BENCH_RUNS=15 npm run bench:cli
 *   BENCH_BIN=/path/to/other/checkout/bin/payfleet.js npm run bench:cli   # compare another checkout
 *
 * Targets (docs/performance.md, "CLI start-up"): `--help` under 0.4 s of CPU, read commands under
 * 1 s, on an idle machine. Nothing here is asserted in a test: CPU depends on the machine's load.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAwsClients } from '../shared/aws/clients.js';
import { bootstrap } from '../cli/bootstrap.js';
import { EMBEDDED_CREDENTIALS, startEmbeddedStack } from '../cli/embedded/stack.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const BIN = process.env.BENCH_BIN ?? join(ROOT, 'bin', 'payfleet.js');
const TIME = '/usr/bin/time';

interface Sample {
  readonly cpu: number;
  readonly wall: number;
}

/** One run of `node <BIN> <args>`: its CPU (user + system) and wall seconds. */
function once(args: readonly string[], env: Record<string, string>): Sample {
  const r = spawnSync(TIME, ['-f', '%U %S %e', process.execPath, BIN, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1', ...env },
    encoding: 'utf8',
  });
  const last = r.stderr.trim().split('\n').at(-1) ?? '';
  const [user, sys, wall] = last.split(' ').map(Number);
  if (![user, sys, wall].every((n) => Number.isFinite(n))) throw new Error(`unexpected /usr/bin/time output: ${r.stderr}`);
  return { cpu: user! + sys!, wall: wall! };
}

function summarise(samples: readonly Sample[]): { median: Sample; best: Sample } {
  const byCpu = [...samples].sort((a, b) => a.cpu - b.cpu);
  return { median: byCpu[Math.floor(byCpu.length / 2)]!, best: byCpu[0]! };
}

async function main(): Promise<void> {
  if (!existsSync(TIME)) throw new Error(`${TIME} is needed (Debian/Ubuntu: apt-get install time)`);
  if (!process.env.BENCH_BIN) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'ignore' });
  const stack = await startEmbeddedStack();
  try {
    const clients = createAwsClients(
      { region: stack.region, sqsEndpoint: stack.sqsEndpoint, dynamodbEndpoint: stack.dynamodbEndpoint, resourcePrefix: 'bench-cli-' },
      { credentials: EMBEDDED_CREDENTIALS },
    );
    await bootstrap(clients, { prefix: 'bench-cli-' });
    clients.destroy();
    const stackEnv = { ...stack.env, PAYFLEET_RESOURCE_PREFIX: 'bench-cli-' };
    const cases: { name: string; args: string[]; env: Record<string, string> }[] = [
      { name: '--help', args: ['--help'], env: {} },
      { name: '--version', args: ['--version'], env: {} },
      { name: 'charge --help', args: ['charge', '--help'], env: {} },
      { name: 'charge <id> (a DynamoDB read)', args: ['charge', 'no-such-charge'], env: stackEnv },
      { name: 'events <id> (a DynamoDB query)', args: ['events', 'no-such-resource'], env: stackEnv },
    ];
    const modes: { name: string; env: Record<string, string> }[] = process.env.BENCH_BIN
      ? [{ name: 'as that checkout runs it', env: {} }]
      : [
          { name: 'dist/ (up to date)', env: {} },
          { name: 'sources through tsx', env: { PAYFLEET_FROM_SOURCE: '1' } },
        ];
    console.log(`payfleet CLI start-up, ${RUNS} runs each, Node ${process.version}, ${BIN}`);
    console.log('| mode | command | CPU median (s) | CPU best (s) | wall median (s) |');
    console.log('|---|---|---|---|---|');
    for (const mode of modes) {
      for (const c of cases) {
        once(c.args, { ...c.env, ...mode.env }); // warm the file cache (and tsx's)
        const samples = Array.from({ length: RUNS }, () => once(c.args, { ...c.env, ...mode.env }));
        const { median, best } = summarise(samples);
        console.log(`| ${mode.name} | \`${c.name}\` | ${median.cpu.toFixed(2)} | ${best.cpu.toFixed(2)} | ${median.wall.toFixed(2)} |`);
      }
    }
  } finally {
    await stack.stop();
  }
}

await main();
