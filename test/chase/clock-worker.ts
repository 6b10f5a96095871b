/**
 * The auth worker as a child process for tests, with its processors' clock under the test's control:
 * `payfleet worker auth`'s main(), whose Chase connector reads the time as the real time plus the
 * offset (ms) written in CHASE_TEST_CLOCK_FILE. The test moves that worker's clock past J.P. Morgan's
 * 70-second window by writing a number, without waiting 70 s and without touching leases or SQS.
 */
import { readFileSync } from 'node:fs';
import { main } from '../../workers/auth/main.js';

const file = process.env.CHASE_TEST_CLOCK_FILE;
const offset = () => {
  if (!file) return 0;
  try {
    return Number(readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
};

await main({ processorClock: () => Date.now() + offset() });
