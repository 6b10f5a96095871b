/**
 * Command: the operator's DLQ round trip with the real binary and a real auth worker —
 *
 *   send (processor "stripe", not configured; and an expired token) ─▶ dead-lettered with codes
 *   ─▶ dlq list ─▶ dlq show (body byte for byte; also by the message id the worker logged)
 *   ─▶ restart the worker with Stripe configured ─▶ dlq redrive --id ─▶ the charge is authorised
 *   (payfleet charge --json) ─▶ dlq purge (states the count by code; refuses without a terminal)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authEnv, startAuthSandboxes, type AuthSandboxes } from '../auth/support.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { hasScript, onTerminal } from './dlq-support.js';
import { json, runCli } from './support.js';

let stack: TestStack;
let sb: AuthSandboxes;
let worker: WorkerProcess | undefined;

interface Listed {
  count: number;
  letters: {
    messageId: string;
    code: string;
    worker: string;
    attempts: number;
    failedAt: string;
    groupId: string;
    detail: string;
    sourceQueue: string;
    sourceMessageId: string;
    redrives: number;
  }[];
}

function startAuth(extra: Record<string, string>): WorkerProcess {
  return startProcess(
    'bin/payfleet.js',
    ['worker', 'auth'],
    authEnv(stack, sb, { PAYFLEET_SHUTDOWN_GRACE_MS: '2000', PAYFLEET_FORCE_EXIT_MS: '5000', ...extra }),
  );
}

async function stopWorker(): Promise<void> {
  if (!worker) return;
  worker.kill('SIGTERM');
  await worker.exited;
  worker = undefined;
}

beforeAll(async () => {
  stack = await setupTestStack('clidlq');
  sb = await startAuthSandboxes();
});
afterAll(async () => {
  await stopWorker();
  await sb?.close();
  stack?.close();
});

describe('payfleet dlq: a bad message, inspected, fixed and replayed', () => {
  it('list -> show -> redrive after fixing the config -> processed; purge asks first', async () => {
    // Prepare: an auth worker without Stripe (STRIPE_API_KEY empty = unset).
    worker = startAuth({ STRIPE_API_KEY: '' });
    await worker.waitForLine((l) => l.msg === 'worker started');
    const chargeId = `cli-dlq-${randomUUID().slice(0, 8)}`;
    const stripeLine = `{"type":"AuthorisationRequested","authRequestId":"${randomUUID()}","chargeId":"${chargeId}","gatewayAccountId":"gw-1","processor":"stripe","amount":4200,"currency":"GBP","paymentTokenId":"tok_4242424242424242_${chargeId}","reference":"ref  with  spaces","description":"caf\u00e9 \u2615","requestedAt":"${new Date().toISOString()}"}`;
    const expiredLine = JSON.stringify({
      type: 'AuthorisationRequested',
      authRequestId: randomUUID(),
      chargeId: `${chargeId}-expired`,
      gatewayAccountId: 'gw-1',
      processor: 'sandbox',
      amount: 100,
      currency: 'GBP',
      paymentTokenId: 'tok_expired_1',
      reference: 'r',
      description: 'd',
      requestedAt: new Date().toISOString(),
    });
    const path = join(mkdtempSync(join(tmpdir(), 'payfleet-dlq-')), 'in.ndjson');
    writeFileSync(path, `${stripeLine}\n${expiredLine}\n`);
    expect((await runCli(['send', 'auth-requests', path], stack.env)).code).toBe(0);

    // Act + assess: dlq list shows both with their codes, and listing does not hide them.
    let listed: Listed = { count: 0, letters: [] };
    await eventually(
      async () => {
        listed = json<Listed>(await runCli(['dlq', 'list', 'auth-requests', '--json'], stack.env));
        return listed.count === 2;
      },
      30_000,
      'two dead letters',
    );
    const stripe = listed.letters.find((l) => l.code === 'UNKNOWN_PROCESSOR')!;
    const expired = listed.letters.find((l) => l.code === 'TOKEN_EXPIRED')!;
    expect(stripe).toMatchObject({ worker: 'auth', groupId: chargeId, sourceQueue: stack.names.queue('auth-requests') });
    expect(stripe.detail).toMatch(/processor "stripe" is not configured/);
    expect(expired.groupId).toBe(`${chargeId}-expired`);
    // The worker logged both ids; the letter carries the one every earlier log line of it carried.
    const logged = await worker.waitForLine((l) => l.msg === 'message dead-lettered' && l.code === 'UNKNOWN_PROCESSOR');
    expect(logged.dlqMessageId).toBe(stripe.messageId);
    const sourceId = String(logged.messageId);
    expect(sourceId).not.toBe(stripe.messageId);
    expect(stripe).toMatchObject({ sourceMessageId: sourceId, redrives: 0 });
    const human = await runCli(['dlq', 'list', `${stack.prefix}auth-requests-dlq.fifo`], stack.env);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(
      new RegExp(`${stripe.messageId}\\s+${sourceId}\\s+UNKNOWN_PROCESSOR\\s+auth\\s+\\d+\\s+0\\s+\\S+\\s+${chargeId}`),
    );
    expect(human.stdout).toContain('2 dead letter(s)');
    // `dlq show <the id from the log>` finds it (on main: "no dead letter").
    const bySource = json<{ messageId: string; matchedBy: string; body: string }>(
      await runCli(['dlq', 'show', 'auth-requests', sourceId, '--json'], stack.env),
    );
    expect(bySource).toMatchObject({ messageId: stripe.messageId, matchedBy: 'source', body: stripeLine });

    // dlq show: the body exactly as sent (unicode, double spaces, key order), and every attribute.
    const body = await runCli(['dlq', 'show', 'auth-requests', stripe.messageId, '--body'], stack.env);
    expect(body.code).toBe(0);
    expect(body.stdout).toBe(stripeLine);
    const shown = await runCli(['dlq', 'show', 'auth-requests', stripe.messageId], stack.env);
    for (const text of [
      'UNKNOWN_PROCESSOR',
      'is not configured',
      'failed at',
      'attempts',
      stack.names.queue('auth-requests'),
      chargeId,
      stripeLine,
    ]) {
      expect(shown.stdout).toContain(text);
    }
    const shownJson = json<{ attributes: Record<string, string>; body: string }>(
      await runCli(['dlq', 'show', 'auth-requests', expired.messageId, '--json'], stack.env),
    );
    expect(shownJson.body).toBe(expiredLine);
    expect(Object.keys(shownJson.attributes).sort()).toEqual(
      [
        'payfleet-attempts',
        'payfleet-error-code',
        'payfleet-error-detail',
        'payfleet-failed-at',
        'payfleet-message-group-id',
        'payfleet-source-message-id',
        'payfleet-source-queue',
        'payfleet-worker',
      ].sort(),
    );
    expect((await runCli(['dlq', 'show', 'auth-requests', randomUUID()], stack.env)).code).toBe(3);

    // Fix the cause (configure Stripe), then redrive just that letter.
    await stopWorker();
    worker = startAuth({});
    await worker.waitForLine((l) => l.msg === 'worker started');
    const redrive = await runCli(['dlq', 'redrive', 'auth-requests', '--id', stripe.messageId, '--json'], stack.env);
    expect(redrive.code).toBe(0);
    const moved = json<{ count: number; redriven: { messageId: string; dedupId: string; groupId: string }[] }>(redrive);
    expect(moved.count).toBe(1);
    expect(moved.redriven[0]).toMatchObject({
      messageId: stripe.messageId,
      sourceMessageId: sourceId,
      groupId: chargeId,
      dedupId: `redrive-${stripe.messageId}`,
      redrives: 1,
    });

    let charge: Record<string, unknown> = {};
    await eventually(
      async () => {
        const r = await runCli(['charge', chargeId, '--json'], stack.env);
        if (r.code !== 0) return false;
        charge = json(r);
        return charge.status === 'AUTHORISATION_SUCCESS';
      },
      30_000,
      'the redriven charge to be authorised',
    );
    expect(charge).toMatchObject({
      chargeId,
      processor: 'stripe',
      amount: 4200,
      currency: 'GBP',
      card: { brand: 'visa', last4: '4242' },
      final: false,
    });
    expect(String(charge.processorRef)).toMatch(/^pi_/);
    expect((charge.events as { eventType: string }[]).map((e) => e.eventType)).toEqual([
      'PAYMENT_CREATED',
      'AUTHORISATION_SUCCEEDED',
    ]);
    expect(JSON.stringify(charge)).not.toContain('4242424242424242');
    expect(sb.stripe.stats().charges[chargeId]).toMatchObject({ created: 1, authorised: 1 });
    // Only the expired letter is left. Purge reads the DLQ to count what it would delete, so it runs
    // after the listing (two readers of one DLQ hide the letters each holds from the other).
    const [human2, leftRun] = await Promise.all([
      runCli(['charge', chargeId], stack.env),
      runCli(['dlq', 'list', 'auth-requests', '--json'], stack.env),
    ]);
    // Without a terminal nobody can confirm: it refuses, saying what it would have deleted.
    const refused = await runCli(['dlq', 'purge', 'auth-requests'], stack.env);
    expect(human2.stdout).toMatch(/status\s+AUTHORISATION_SUCCESS/);
    expect(human2.stdout).toMatch(/visa ending 4242/);
    expect(json<Listed>(leftRun).letters.map((l) => l.messageId)).toEqual([expired.messageId]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /refusing to purge 1 dead letter\(s\) in \S+auth-requests-dlq\.fifo \(1 TOKEN_EXPIRED\) without --yes/,
    );
    // On a terminal it asks, with the count by code; "n" deletes nothing (util-linux `script` provides the terminal).
    if (hasScript) {
      const declined = await onTerminal(stack, ['dlq', 'purge', 'auth-requests'], 'n\n');
      expect(declined.output).toMatch(
        /Delete 1 dead letter\(s\) in .*auth-requests-dlq\.fifo \(1 TOKEN_EXPIRED\)\? They cannot be recovered.*\[y\/N\]/,
      );
      expect(declined.output).toContain('not confirmed; nothing deleted');
      expect(declined.code).toBe(1);
      expect(json<Listed>(await runCli(['dlq', 'list', 'auth-requests', '--json'], stack.env)).count).toBe(1);
    }
    const purged = await runCli(['dlq', 'purge', 'auth-requests', '--yes'], stack.env);
    expect(purged.code).toBe(0);
    expect(purged.stdout).toContain('deleted 1 dead letter(s)');
    expect((await runCli(['dlq', 'list', 'auth-requests'], stack.env)).stdout).toMatch(/is empty/);
  }, 120_000);
});
