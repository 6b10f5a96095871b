/**
 * The auth worker as a child process for tests: `payfleet worker auth`'s main(), plus one fault
 * point. AUTH_TEST_CRASH_AT SIGKILLs the process at the first charge that reaches it:
 *
 *   after-mismatch  AUTHORISATION_ERROR with a PENDING void is committed; no void asked for yet
 *   after-void      the processor answered the void; nothing of that answer committed
 *   before-authorise  write 1 made the charge AUTHORISATION_READY; the processor not asked yet
 *
 * the windows the void design and the row lease must survive.
 */
import { main } from '../../workers/auth/main.js';

const crashAt = process.env.AUTH_TEST_CRASH_AT;

const crash = (point: string) => async (chargeId: string) => {
  // Synchronous write, then the signal: the line is out before the process is gone.
  process.stdout.write(`${JSON.stringify({ level: 'warn', msg: 'test crash', point, chargeId })}\n`);
  process.kill(process.pid, 'SIGKILL');
  await new Promise(() => undefined);
};

await main({
  hooks:
    crashAt === 'after-mismatch'
      ? { afterMismatchRecorded: crash(crashAt) }
      : crashAt === 'after-void'
        ? { afterVoidAnswered: crash(crashAt) }
        : crashAt === 'before-authorise'
          ? { beforeProcessorCall: crash(crashAt) }
          : {},
});
