/**
 * Command: the `payfleet` binary as upstream teams and operators run it — `--help` everywhere,
 * exit codes, and `send` (ids derived per docs/contract.md §1, bodies byte for byte, per-line errors).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/processes.js';
import { drain } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { json, runCli } from './support.js';

let stack: TestStack;
const dir = mkdtempSync(join(tmpdir(), 'payfleet-cli-'));
const file = (name: string, lines: readonly string[]) => {
  const path = join(dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
};

beforeAll(async () => {
  stack = await setupTestStack('cli');
});
afterAll(() => stack?.close());

/** Every command path of the CLI. */
const COMMANDS = [
  [],
  ['send'],
  ['dlq'],
  ['dlq', 'list'],
  ['dlq', 'show'],
  ['dlq', 'redrive'],
  ['dlq', 'purge'],
  ['charge'],
  ['refund'],
  ['payout'],
  ['events'],
  ['events', 'parity'],
  ['bootstrap'],
  ['stack'],
  ['stack', 'up'],
  ['worker'],
  ['sandbox'],
  ['start'],
];

describe('payfleet --help', () => {
  it('works for every command, with a usage line and exit 0', async () => {
    const results = await Promise.all(COMMANDS.map(async (cmd) => ({ cmd, r: await runCli([...cmd, '--help']) })));
    for (const { cmd, r } of results) {
      expect(r.code, `payfleet ${cmd.join(' ')} --help: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(`Usage: payfleet ${cmd.join(' ')}`.trim());
    }
    const top = results[0]!.r.stdout;
    for (const c of ['send', 'dlq', 'charge', 'refund', 'payout', 'events', 'bootstrap', 'stack', 'worker', 'sandbox', 'start'])
      expect(top).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  it('exits 2 on an unknown command or option', async () => {
    const [a, b] = await Promise.all([runCli(['nope']), runCli(['send', 'auth-requests', '--bogus'])]);
    expect(a.code).toBe(2);
    expect(b.code).toBe(2);
  });
});

describe('exit codes', () => {
  it('2 for an unknown queue, a queue without a DLQ, a DLQ given to send; 3 for an unknown charge; 2 without configuration', async () => {
    const [unknownQueue, noDlq, sendToDlq, unknownCharge, bare] = await Promise.all([
      runCli(['dlq', 'list', 'chargeback-requests'], stack.env),
      runCli(['dlq', 'list', 'ledger-events'], stack.env),
      runCli(['send', 'auth-requests-dlq', file('empty.ndjson', [])], stack.env),
      runCli(['charge', 'no-such-charge', '--json'], stack.env),
      runCli(['charge', 'x'], {}),
    ]);
    expect(unknownQueue.code).toBe(2);
    expect(unknownQueue.stderr).toMatch(/unknown queue "chargeback-requests"/);
    expect(noDlq.code).toBe(2);
    expect(noDlq.stderr).toMatch(/ledger-events has no dead-letter queue/);
    expect(sendToDlq.code).toBe(2);
    expect(sendToDlq.stderr).toMatch(/dlq redrive/);
    expect(unknownCharge.code).toBe(3);
    expect(unknownCharge.stderr).toMatch(/no charge no-such-charge/);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/AWS_REGION/);
  });
});

describe('payfleet send', () => {
  const auth = (chargeId: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      type: 'AuthorisationRequested',
      authRequestId: randomUUID(),
      chargeId,
      gatewayAccountId: 'gw-1',
      processor: 'sandbox',
      amount: 1250,
      currency: 'GBP',
      paymentTokenId: `tok_4242424242424242_${chargeId}`,
      reference: 'r',
      description: 'd',
      requestedAt: new Date().toISOString(),
      ...extra,
    });

  it('reports every bad line and sends nothing by default; --skip-invalid sends the good ones byte for byte with derived ids', async () => {
    // Odd spacing and key order on purpose: the body must arrive exactly as written.
    const spaced = `{ "chargeId": "send-2",  "type": "AuthorisationRequested", "authRequestId": "${randomUUID()}" }`;
    const lines = [
      auth('send-1'),
      'not json at all',
      spaced,
      '',
      JSON.stringify({ type: 'AuthorisationRequested', authRequestId: randomUUID() }),
      auth('send-3'),
    ];
    const path = file('auth.ndjson', lines);
    const url = stack.url(stack.names.queue('auth-requests'));

    const refused = await runCli(['send', 'auth-requests', path], stack.env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('line 2: not JSON');
    expect(refused.stderr).toContain('line 5: missing chargeId (the MessageGroupId)');
    expect(refused.stdout).toMatch(/2 invalid line\(s\): nothing sent/);
    expect(await drain(stack.clients.sqs, url)).toHaveLength(0);

    const sent = await runCli(['send', `${stack.prefix}auth-requests.fifo`, path, '--skip-invalid', '--json'], stack.env);
    expect(sent.code).toBe(1);
    const report = json<{
      sent: number;
      invalid: { line: number }[];
      messages: { line: number; groupId: string; dedupId: string; messageId: string }[];
    }>(sent);
    expect(report.sent).toBe(3);
    expect(report.invalid.map((i) => i.line)).toEqual([2, 5]);
    const received = await drain(stack.clients.sqs, url);
    expect(received.map((m) => m.Body)).toEqual([lines[0], lines[2], lines[5]]);
    for (const m of received) {
      const body = JSON.parse(m.Body!) as { chargeId: string; authRequestId: string };
      expect(m.Attributes?.MessageGroupId).toBe(body.chargeId);
      expect(m.Attributes?.MessageDeduplicationId).toBe(body.authRequestId);
    }
  });

  it('reads stdin, derives payout ids from raw and SNS-wrapped events, and checks bodies with --validate', async () => {
    const event = (paymentId: string) => ({ eventType: 'CheckoutApprovalAccepted', eventId: randomUUID(), paymentId });
    const raw = event('pay-raw');
    const wrapped = event('pay-sns');
    const input = `${JSON.stringify(raw)}\n${JSON.stringify({ Type: 'Notification', MessageId: 'm', Message: JSON.stringify(wrapped) })}\n`;
    const dry = await runCli(['send', 'payout-events', '-', '--dry-run', '--json'], stack.env, input);
    expect(dry.code).toBe(0);
    expect(json<{ messages: { groupId: string; dedupId: string }[] }>(dry).messages).toEqual([
      { line: 1, groupId: 'pay-raw', dedupId: raw.eventId, messageId: null },
      { line: 2, groupId: 'pay-sns', dedupId: wrapped.eventId, messageId: null },
    ]);
    // The events above lack amount, creditor...: the payout worker would dead-letter them.
    const validated = await runCli(['send', 'payout-events', '--validate'], stack.env, input);
    expect(validated.code).toBe(1);
    expect(validated.stderr).toMatch(/line 1: the payout-events worker would dead-letter it: amount/);
    expect(validated.stderr).toMatch(/line 2: the payout-events worker would dead-letter it: SNS Message: amount/);

    const ok = await runCli(
      ['send', 'capture-requests', '-'],
      stack.env,
      `${JSON.stringify({ type: 'CaptureRequested', captureRequestId: randomUUID(), chargeId: 'c-1', requestedAt: new Date().toISOString() })}\n`,
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/sent 1 message\(s\) in 1 message group\(s\) to .*capture-requests\.fifo/);
    expect(await drain(stack.clients.sqs, stack.url(stack.names.queue('capture-requests')))).toHaveLength(1);
  });
});

describe('payfleet sandbox', () => {
  it('starts the five sandbox services in one process, prints their URLs, and stops on SIGTERM', async () => {
    const child = spawn(process.execPath, ['bin/payfleet.js', 'sandbox', '--json'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NODE_NO_WARNINGS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      let out = '';
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no JSON line within 30 s: ${out}`)), 30_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) {
            clearTimeout(timer);
            resolve(out.slice(0, out.indexOf('\n')));
          }
        });
      });
      const info = JSON.parse(line) as { urls: Record<string, string>; env: Record<string, string> };
      expect(Object.keys(info.urls).sort()).toEqual(['chase', 'lhv', 'stripe', 'tokenService', 'worldpay']);
      expect(info.env).toMatchObject({
        PAYMENT_TOKEN_SERVICE_URL: info.urls.tokenService,
        STRIPE_API_BASE_URL: info.urls.stripe,
        CHASE_API_BASE_URL: info.urls.chase,
        CHASE_TOKEN_URL: `${info.urls.chase}/oauth2/token`,
        LHV_API_BASE_URL: info.urls.lhv,
      });
      for (const url of Object.values(info.urls)) expect((await fetch(`${url}/__sandbox/stats`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
