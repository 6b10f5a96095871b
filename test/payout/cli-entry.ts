/** `payfleet payout` alone, for the CLI test (cli/main.ts wires it in the real binary). */
import { Command } from 'commander';
import { registerPayout } from '../../cli/commands/payout.js';

const program = new Command('payfleet').exitOverride();
registerPayout(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  const e = err as { exitCode?: number; message?: string };
  process.stderr.write(`payfleet: ${e.message ?? String(err)}\n`);
  process.exit(typeof e.exitCode === 'number' ? e.exitCode : 1);
}
