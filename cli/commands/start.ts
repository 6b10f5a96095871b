import { InvalidArgumentError, type Command } from 'commander';

function count(max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > max)
      throw new InvalidArgumentError(`must be a whole number from 0 to ${max}`);
    return n;
  };
}

interface StartOptions {
  charges: number;
  payouts: number;
  duration: number;
  settleTimeout: number;
  faults: boolean;
  plain?: boolean;
  json?: boolean;
}

/**
 * `payfleet start` (what `npm start` runs): the embedded stack, the sandboxes and all four workers
 * as child processes, a demo load, a live view and a summary of the fleet's guarantees.
 */
export function registerStart(program: Command): void {
  program
    .command('start')
    .description('the whole fleet on this machine with a demo load, a live view and a PASS/FAIL summary (what `npm start` runs)')
    .option('--charges <n>', 'good authorisation requests to send', count(100_000), 120)
    .option('--payouts <n>', 'payout events to send (none when the payout worker is absent)', count(100_000), 60)
    .option('--duration <seconds>', 'spread the load over this many seconds', count(3600), 30)
    .option(
      '--settle-timeout <seconds>',
      'after the load, wait at most this long for everything to become final',
      count(3600),
      75,
    )
    .option('--no-faults', 'do not inject sandbox faults (5xx answers, timeouts after success)')
    .option('--plain', 'plain progress lines even in a terminal')
    .option('--json', 'print the summary as JSON on stdout (progress goes to stderr)')
    .addHelpText(
      'after',
      `
Needs Java 17+ (DynamoDB Local). Nothing outside this machine is touched: SQS is fauxqs in this
process, DynamoDB Local listens on 127.0.0.1, the services the workers call are local sandboxes.
Every bad message the demo sends is expected in a DLQ; every other message must reach its final
state. Exit code 0 only when every check of the summary passed; 130 when interrupted.
Examples:
  npm start
  npm start -- --charges 200 --payouts 100 --duration 60`,
    )
    .action(async (opts: StartOptions) => {
      // Loaded here, not at CLI start: the container image runs `payfleet worker` and never this.
      const { runDemo } = await import('../demo/orchestrator.js');
      const code = await runDemo({
        charges: opts.charges,
        payouts: opts.payouts,
        durationSec: opts.duration,
        settleTimeoutSec: opts.settleTimeout,
        faults: opts.faults,
        plain: opts.plain ?? false,
        json: opts.json ?? false,
      });
      process.exit(code);
    });
}
