import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { describeAwsFailure, targetFromEnv } from '../shared/aws/errors.js';
import { JavaMissingError } from '../shared/embedded/java.js';
import { ConfigError } from '../shared/errors.js';
import { quietOnClosedPipes } from './commands/output.js';

/**
 * Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 not found (read commands).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

type Register = (program: Command) => void;

/**
 * Every command, and how to load it. Only the command being run is imported (with the AWS SDK,
 * zod, the emulators ... it needs); the others are listed by name, arguments and summary, which is
 * all `payfleet --help` shows. That keeps `--help` and `--version` from loading anything heavy
 * (docs/performance.md, "CLI start-up"). A new command adds one line here and exports a register
 * function; test/cli/startup.test.ts checks that this list matches what each module registers.
 */
export const COMMANDS: readonly { name: string; args: string; summary: string; load: () => Promise<Register> }[] = [
  {
    name: 'worker',
    args: '<name>',
    summary: 'run one worker process (auth | capture | payout | ledger) until SIGTERM',
    load: async () => (await import('./commands/worker.js')).registerWorker,
  },
  {
    name: 'stack',
    args: '',
    summary: 'the embedded SQS + DynamoDB emulators (`stack up`)',
    load: async () => (await import('./commands/stack.js')).registerStack,
  },
  {
    name: 'bootstrap',
    args: '',
    summary: 'create or verify every queue, DLQ and table on the configured endpoint (idempotent)',
    load: async () => (await import('./commands/bootstrap.js')).registerBootstrap,
  },
  {
    name: 'send',
    args: '<queue> [file]',
    summary: 'enqueue NDJSON messages as an upstream system would, ids derived per queue',
    load: async () => (await import('./commands/send.js')).registerSend,
  },
  {
    name: 'dlq',
    args: '',
    summary: 'dead letters: list, show, redrive, purge',
    load: async () => (await import('./commands/dlq.js')).registerDlq,
  },
  {
    name: 'charge',
    args: '<chargeId>',
    summary: "a charge's status, amount, processor reference, history and ledger events",
    load: async () => (await import('./commands/charge.js')).registerCharge,
  },
  {
    name: 'payout',
    args: '<paymentId>',
    summary: "a payout's status, history, batch and ledger events",
    load: async () => (await import('./commands/payout.js')).registerPayout,
  },
  {
    name: 'events',
    args: '<resourceId>',
    summary: "a resource's ledger events; `events parity` compares with a consumer's record",
    load: async () => (await import('./commands/events.js')).registerEvents,
  },
  {
    name: 'sandbox',
    args: '',
    summary: 'the sandbox token service, Stripe, Worldpay and LHV in one process, until Ctrl-C',
    load: async () => (await import('./commands/sandbox.js')).registerSandbox,
  },
  {
    name: 'dev',
    args: '',
    summary: 'the sandboxes and all four workers against a running stack, on their own ops ports, until Ctrl-C',
    load: async () => (await import('./commands/dev.js')).registerDev,
  },
  {
    name: 'start',
    args: '',
    summary: 'the whole fleet on this machine with a demo load and a PASS/FAIL summary (`npm start`)',
    load: async () => (await import('./commands/start.js')).registerStart,
  },
];

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
