import { Command, CommanderError } from 'commander';
import { ConfigError } from '../shared/errors.js';
import { JavaMissingError } from '../shared/embedded/java.js';
import { registerBootstrap } from './commands/bootstrap.js';
import { registerCharge } from './commands/charge.js';
import { registerDlq } from './commands/dlq.js';
import { registerEvents } from './commands/events.js';
import { registerPayout } from './commands/payout.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerSend } from './commands/send.js';
import { registerStack } from './commands/stack.js';
import { registerStart } from './commands/start.js';
import { registerStatus } from './commands/status.js';
import { registerWorker } from './commands/worker.js';

/**
 * Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 not found (read commands).
 */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

const program = new Command('payfleet')
  .description('payfleet: queue-driven payment workers on SQS FIFO and DynamoDB')
  .showHelpAfterError()
  .exitOverride();

registerWorker(program);
registerStack(program);
registerBootstrap(program);
registerSend(program);
registerDlq(program);
registerCharge(program);
registerPayout(program);
registerEvents(program);
registerSandbox(program);
registerStart(program);
registerStatus(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`payfleet: ${err.message}\n`);
    process.exit(EXIT.usage);
  }
  if (err instanceof JavaMissingError) {
    process.stderr.write(`payfleet: ${err.message}\n`);
    process.exit(EXIT.failure);
  }
  const e = err as { exitCode?: number; message?: string };
  process.stderr.write(`payfleet: ${e.message ?? String(err)}\n`);
  process.exit(typeof e.exitCode === 'number' ? e.exitCode : EXIT.failure);
}
