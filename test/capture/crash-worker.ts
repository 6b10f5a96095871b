/**
 * The capture worker as a child process for tests: `payfleet worker capture`'s main(), plus one
 * fault point. CAPTURE_TEST_CRASH_AT=before-capture SIGKILLs the process at the first charge whose
 * CAPTURE_READY is committed, before the processor is asked anything.
 */
import { main } from '../../workers/capture/main.js';

const crashAt = process.env.CAPTURE_TEST_CRASH_AT;

const crash = (point: string) => async (chargeId: string) => {
  // Synchronous write, then the signal: the line is out before the process is gone.
  process.stdout.write(`${JSON.stringify({ level: 'warn', msg: 'test crash', point, chargeId })}\n`);
  process.kill(process.pid, 'SIGKILL');
  await new Promise(() => undefined);
};

await main(crashAt === 'before-capture' ? { hooks: { beforeProcessorCall: crash(crashAt) } } : {});
