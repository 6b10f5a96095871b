/** Helpers of the `payfleet dlq` tests: dead letters put straight on a DLQ, and a pseudo-terminal. */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { sendToDlq } from '../../shared/core/dlq.js';
import { ROOT } from '../support/processes.js';
import type { TestStack } from '../support/stack.js';
import { json, runCli } from './support.js';

/** A dead letter as `dlq list --json` prints it. */
export interface ListedLetter {
  messageId: string;
  sourceMessageId: string | null;
  code: string;
  worker: string;
  attempts: number;
  failedAt: string;
  groupId: string;
  detail: string;
  sourceQueue: string;
  redrives: number;
  lineage: string[];
  redriveRun: string | null;
}

export interface Listed {
  total: number;
  count: number;
  next: string | null;
  byCode: Record<string, number>;
  letters: ListedLetter[];
}

export interface PutLetter {
  readonly code: string;
  readonly failedAt?: Date;
  readonly body?: string;
}

/**
 * Dead-letter messages exactly as a worker does (the worker's own sendToDlq), without a worker:
 * each gets a made-up source message id. Returns those ids in order.
 */
export async function putLetters(stack: TestStack, letters: readonly PutLetter[]): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, l] of letters.entries()) {
    const sourceId = randomUUID();
    await sendToDlq(stack.clients.sqs, {
      dlqUrl: stack.url(stack.names.dlq('auth-requests')),
      sourceQueue: stack.names.queue('auth-requests'),
      worker: 'auth',
      message: {
        MessageId: sourceId,
        Body: l.body ?? JSON.stringify({ type: 'AuthorisationRequested', n: i, chargeId: `ch-${sourceId.slice(0, 8)}` }),
        Attributes: { MessageGroupId: `ch-${sourceId.slice(0, 8)}` },
      },
      letter: { code: l.code, detail: `because ${l.code}`, attempts: 1 },
      ...(l.failedAt ? { now: l.failedAt } : {}),
    });
    ids.push(sourceId);
  }
  return ids;
}

export const times = (n: number, l: PutLetter): PutLetter[] => Array.from({ length: n }, () => l);

/** `payfleet dlq list auth-requests --json [...extra]`, parsed. */
export async function listLetters(stack: TestStack, extra: readonly string[] = []): Promise<Listed> {
  return json<Listed>(await runCli(['dlq', 'list', 'auth-requests', '--json', ...extra], stack.env));
}

export const hasScript = spawnSync('script', ['--version']).status === 0;

/** Run `payfleet <args>` on a pseudo-terminal (util-linux `script`), answering `input` once it asks `[y/N]`. */
export function onTerminal(
  stack: TestStack,
  args: readonly string[],
  input: string,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', `node bin/payfleet.js ${args.join(' ')}`, '/dev/null'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1', ...stack.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      // Answer once the question is on screen.
      if (output.includes('[y/N]') && !child.stdin.writableEnded) child.stdin.end(input);
    });
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => resolve({ code, output }));
  });
}
