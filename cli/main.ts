import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { describeAwsFailure, targetFromEnv } from '../shared/aws/errors.js';
import { JavaMissingError } from './embedded/java.js';
import { ConfigError } from '../shared/errors.js';
import { COMMANDS } from './commands/index.js';
import { quietOnClosedPipes } from './commands/output.js';

/**
 * Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 not found (read commands).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

/** `payfleet <version> (node <version>)`, from the package.json above this file (sources or dist/). */
function version(): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'payfleet') return `payfleet ${pkg.version ?? '?'} (node ${process.version})`;
    } catch {
      // Not at this level.
    }
  }
  return `payfleet (unknown version) (node ${process.version})`;
}

/** The command named on the command line (`payfleet help <command>` included), if any. */
function invoked(argv: readonly string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  return words[0] === 'help' ? words[1] : words[0];
}

// Before anything is printed: `payfleet dlq list | head` must end quietly, not with an EPIPE trace.
quietOnClosedPipes();

const program = new Command('payfleet')
  .description('payfleet: queue-driven payment workers on SQS FIFO and DynamoDB')
  .version(version(), '-V, --version', 'print the payfleet and Node.js versions')
  .showHelpAfterError()
  .exitOverride();

const wanted = invoked(process.argv.slice(2));
for (const c of COMMANDS) {
  if (c.name === wanted) (await c.load())(program);
  else program.command(c.args ? `${c.name} ${c.args}` : c.name).summary(c.summary);
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exit(exitCodeFor(err));
}

/** Print one line (no stack: these are expected outcomes) and return the exit code. */
function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof ConfigError) {
    process.stderr.write(`payfleet: ${err.message}\n`);
    return EXIT.usage;
  }
  if (err instanceof JavaMissingError) {
    process.stderr.write(`payfleet: ${err.message}\n`);
    return EXIT.failure;
  }
  // Commands built on openCommandContext() throw AwsFailure already; anything else that is one of
  // the four AWS failures (a client built elsewhere) gets the same advice, from the environment.
  const described = describeAwsFailure(err, targetFromEnv(process.env));
  if (described) {
    process.stderr.write(`payfleet: ${described.message}\n`);
    return described.exitCode;
  }
  const e = err as { exitCode?: number; message?: string };
  process.stderr.write(`payfleet: ${e.message ?? String(err)}\n`);
  return typeof e.exitCode === 'number' ? e.exitCode : EXIT.failure;
}
