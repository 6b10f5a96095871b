/**
 * Command: how `payfleet` behaves as a Unix tool — `--version`, and output piped into a reader
 * that goes away (`payfleet charge <id> | head -c 10`): the rest of the output is dropped, the
 * command ends with its own exit code and nothing on stderr (no EPIPE stack trace).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/processes.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { recordOutput, runCli } from './support.js';

describe('payfleet --version', () => {
  it('prints the package version and the Node.js version, exit 0', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const [long, short] = await Promise.all([runCli(['--version']), runCli(['-V'])]);
    for (const r of [long, short]) {
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`payfleet ${pkg.version} (node ${process.version})\n`);
    }
  });
});

describe('payfleet <read command> | head', () => {
  let stack: TestStack;
  const dir = mkdtempSync(join(tmpdir(), 'payfleet-pipes-'));
  beforeAll(async () => {
    stack = await setupTestStack('pipes');
    const now = new Date().toISOString();
    await stack.clients.doc.send(
      new PutCommand({
        TableName: stack.names.table('charges'),
        Item: {
          chargeId: 'ch-pipe-1',
          gatewayAccountId: 'gw-1',
          processor: 'sandbox',
          amount: 1250,
          currency: 'GBP',
          reference: 'r',
          description: 'a charge whose report is longer than ten bytes',
          status: 'AUTHORISATION_SUCCESS',
          live: false,
          version: 3,
          eventSeq: 2,
          createdAt: now,
          updatedAt: now,
          history: [
            { status: 'CREATED', at: now },
            { status: 'AUTHORISATION_READY', at: now },
            { status: 'AUTHORISATION_SUCCESS', at: now },
          ],
          processorRef: 'sbx_1',
          cardBrand: 'visa',
          cardLast4: '4242',
        },
      }),
    );
  });
  afterAll(() => stack?.close());

  /**
   * `{ printf 0123456789; payfleet ...; } | head -c 10`: head has its ten bytes and is gone before
   * payfleet (which takes a few hundred ms to start and read) writes anything, so every write of
   * payfleet meets a closed pipe. Returns payfleet's own exit code and stderr.
   */
  const piped = (args: string[], label: string) => {
    const err = join(dir, `${label}.err`);
    const code = join(dir, `${label}.code`);
    const script = `{ printf 0123456789; "$NODE" bin/payfleet.js ${args.join(' ')} 2>"$ERR"; echo $? >"$CODE"; } | head -c 10 >/dev/null`;
    const r = spawnSync('bash', ['-c', script], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE: process.execPath, ERR: err, CODE: code, ...stack.env },
      timeout: 60_000,
    });
    expect(r.status).toBe(0);
    const stderr = readFileSync(err, 'utf8');
    recordOutput(label, stderr);
    return { code: Number(readFileSync(code, 'utf8').trim()), stderr };
  };

  it('exits quietly with the command\'s own exit code: no EPIPE, no stack trace', () => {
    for (const [label, args] of [
      ['charge', ['charge', 'ch-pipe-1']],
      ['charge-json', ['charge', 'ch-pipe-1', '--json']],
      ['help', ['--help']],
    ] as const) {
      const r = piped([...args], label);
      expect(r.stderr, label).toBe('');
      expect(r.code, label).toBe(0);
    }
  });
});
