import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedStack, type EmbeddedStack } from '../../cli/embedded/stack.js';
import { findCardData } from './card-scan.js';

let stack: EmbeddedStack | undefined;
let vitestProject: TestProject | undefined;

/**
 * Every process a test starts (test/support/processes.ts) writes its whole output here. After the
 * run, teardown reads all of it and fails the run if any card number (a Luhn-valid 13-19 digit run,
 * spaces or dashes allowed) or a CVC-shaped field appears in any line of any process: the suite-wide
 * "no card data in logs" check.
 */
const LOG_DIR = mkdtempSync(join(tmpdir(), 'payfleet-test-logs-'));
process.env.PAYFLEET_TEST_LOG_DIR = LOG_DIR;


/**
 * One embedded stack (fauxqs + DynamoDB Local) per test run, on free loopback ports. Test files
 * read its endpoints from `inject('stack')` (see ./stack.ts) and create their own resources under
 * a unique prefix, so files run in parallel without touching each other.
 */
export async function setup(project: TestProject): Promise<void> {
  vitestProject = project;
  // Which Node the run is on (npm test: the one in node_modules/.bin; the test forks inherit it).
  process.stdout.write(`[node] tests run on Node ${process.version} (${process.execPath})\n`);
  stack = await startEmbeddedStack();
  project.provide('stack', { region: stack.region, sqsEndpoint: stack.sqsEndpoint, dynamodbEndpoint: stack.dynamodbEndpoint, env: { ...stack.env } });
}

export async function teardown(): Promise<void> {
  await stack?.stop();
  const problems: string[] = [];
  let files = 0;
  let bytes = 0;
  for (const name of readdirSync(LOG_DIR)) {
    const text = readFileSync(join(LOG_DIR, name), 'utf8');
    files++;
    bytes += text.length;
    for (const f of findCardData(text)) problems.push(`${name}: ${f}`);
  }
  if (problems.length > 0) {
    // Vitest reports a teardown error but still exits 0: set the exit code so CI fails.
    process.exitCode = 1;
    throw new Error(`card data in the logs of ${problems.length} place(s) (kept in ${LOG_DIR}):\n  ${problems.slice(0, 20).join('\n  ')}`);
  }
  process.stdout.write(`[log scan] ${files} process logs, ${(bytes / 1024 / 1024).toFixed(1)} MiB: no card number or CVC\n`);
  // A failed run keeps every process's output for whoever has to find out why.
  const failed = vitestProject?.vitest.state.getCountOfFailedTests() ?? 0;
  if (failed > 0) process.stdout.write(`[logs] ${failed} test(s) failed: the processes' logs are kept in ${LOG_DIR}\n`);
  else rmSync(LOG_DIR, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    stack: { region: string; sqsEndpoint: string; dynamodbEndpoint: string; env: Record<string, string> };
  }
}
