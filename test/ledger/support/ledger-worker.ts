/**
 * The ledger worker as a child process for tests: `payfleet worker ledger`'s main(), plus one
 * fault point. LEDGER_TEST_CRASH_AFTER_SENDS=N SIGKILLs the process right after SQS accepted its
 * N-th batch and before any of that batch is marked emitted (the window the design must survive).
 */
import { main } from '../../../workers/ledger/main.js';

const crashAfter = Number(process.env.LEDGER_TEST_CRASH_AFTER_SENDS ?? 0);
let sends = 0;

await main({
  hooks:
    crashAfter > 0
      ? {
          afterSend: async ({ shard, eventIds }) => {
            sends++;
            if (sends < crashAfter) return;
            // Synchronous write, then the signal: the line is out before the process is gone.
            process.stdout.write(`${JSON.stringify({ level: 'warn', msg: 'test crash after send', shard, eventIds })}\n`);
            process.kill(process.pid, 'SIGKILL');
            await new Promise(() => undefined);
          },
        }
      : {},
});
