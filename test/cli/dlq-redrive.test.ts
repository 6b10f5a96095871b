/**
 * Command: `payfleet dlq redrive` is a run an on-call engineer can trust, proven with the real
 * binary (and a real auth worker where letters must fail again):
 *
 *   - a run whose letters fail again ends, redrives exactly its snapshot once, and never its own
 *     re-failures (which carry payfleet-redrives = 1 and their lineage; a later run makes it 2);
 *   - Ctrl-C mid-run prints a summary, exits 1, and every letter is in exactly one of the queues;
 *   - a redrive of everything states the count by code and asks; without a terminal it refuses.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authEnv, startAuthSandboxes, type AuthSandboxes } from '../auth/support.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { drain, eventually, sendAll } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { hasScript, listLetters, onTerminal, putLetters, times } from './dlq-support.js';
import { json, runCli } from './support.js';

let sb: AuthSandboxes;
const stacks: TestStack[] = [];
const processes: WorkerProcess[] = [];

async function freshStack(label: string): Promise<TestStack> {
  const s = await setupTestStack(label);
  stacks.push(s);
  return s;
}

function start(args: string[], env: Record<string, string>): WorkerProcess {
  const p = startProcess('bin/payfleet.js', args, env);
  processes.push(p);
  return p;
}

const deadLettered = (l: Record<string, unknown>) => l.msg === 'message dead-lettered';

/** An authorisation naming a processor no deployment has: dead-lettered UNKNOWN_PROCESSOR on every delivery. */
function unknownProcessorRequest(chargeId: string) {
  const body = JSON.stringify({
    type: 'AuthorisationRequested',
    authRequestId: randomUUID(),
    chargeId,
    gatewayAccountId: 'gw-1',
    processor: 'acme',
    amount: 700,
    currency: 'GBP',
    paymentTokenId: `tok_unknown_${chargeId}`,
    reference: 'r',
    description: 'd',
    requestedAt: new Date().toISOString(),
  });
  return { body, groupId: chargeId, dedupId: randomUUID() };
}

beforeAll(async () => {
  sb = await startAuthSandboxes();
});
afterAll(async () => {
  for (const p of processes) p.kill('SIGKILL');
  await Promise.all(processes.map((p) => p.exited));
  await sb?.close();
  for (const s of stacks) s.close();
});

describe('payfleet dlq redrive', () => {
  it('a run whose letters fail again ends, redrives its snapshot exactly once, and never its own re-failures', async () => {
    // Prepare: an auth worker, and four requests it dead-letters every time it sees them.
    const s = await freshStack('dlqloop');
    const worker = start(
      ['worker', 'auth'],
      authEnv(s, sb, { PAYFLEET_SHUTDOWN_GRACE_MS: '2000', PAYFLEET_FORCE_EXIT_MS: '5000' }),
    );
    await worker.waitForLine((l) => l.msg === 'worker started');
    await sendAll(
      s.clients.sqs,
      s.url(s.names.queue('auth-requests')),
      [1, 2, 3, 4].map((i) => unknownProcessorRequest(`loop-${i}-${randomUUID().slice(0, 6)}`)),
    );
    await eventually(() => worker.lines.filter(deadLettered).length === 4, 60_000, 'four dead letters');
    const originals = worker.lines
      .filter(deadLettered)
      .map((l) => ({ source: String(l.messageId), dlq: String(l.dlqMessageId) }));
    expect(worker.lines.filter(deadLettered).map((l) => l.redrives)).toEqual([0, 0, 0, 0]);

    // Act: the runbook's command, slowed to one letter per 4 s so the run is paused mid-snapshot
    // (SIGSTOP) right after its first letter until the worker has failed that letter again.
    const run = start(['dlq', 'redrive', 'auth-requests', '--code', 'UNKNOWN_PROCESSOR', '--rate', '0.25'], s.env);
    let exit: number | string | undefined;
    void run.exited.then((c) => (exit = c));
    await eventually(() => /redrive: 1 redriven/.test(run.raw()), 60_000, 'the first letter redriven');
    run.kill('SIGSTOP');
    await eventually(() => worker.lines.filter(deadLettered).length >= 5, 60_000, 'the first redriven letter to fail again');
    run.kill('SIGCONT');
    // The worker carried the count onto the new letter (and logged both ids).
    expect(worker.lines.filter(deadLettered)[4]).toMatchObject({ code: 'UNKNOWN_PROCESSOR', redrives: 1 });
    // On main the run redrives that re-failure again (and again): the worker then logs redrives 2.
    await eventually(
      () => exit !== undefined || worker.lines.some((l) => deadLettered(l) && Number(l.redrives) >= 2),
      300_000,
      'the run to end',
    );

    // Assess: it ended by itself, with a summary counting exactly the snapshot.
    expect(
      worker.lines.filter((l) => deadLettered(l) && Number(l.redrives) >= 2),
      'a re-failure was redriven again',
    ).toEqual([]);
    const out = run.raw();
    expect(exit, out).toBe(0);
    const runId = /redrive run (\S+): complete after/.exec(out)?.[1];
    expect(runId, out).toBeDefined();
    expect(out).toMatch(/redrove 4 dead letter\(s\) from \S+ to \S+: 4 UNKNOWN_PROCESSOR/);
    const skipped =
      /skipped (\d+): 0 not chosen by --id\/--code\/--since, (\d+) put on the DLQ after the run started \((\d+) of them re-failures/.exec(
        out,
      );
    expect(skipped, out).not.toBeNull();
    // At least the re-failure it was paused for was seen, and skipped.
    expect(Number(skipped![3])).toBeGreaterThanOrEqual(1);
    expect(out).toMatch(/failed 0/);

    // Every letter came back once: redrives 1, the run's id, and where it came from.
    await eventually(
      () => worker.lines.filter((l) => deadLettered(l) && l.redrives === 1).length === 4,
      60_000,
      'four re-failures',
    );
    const again = await listLetters(s);
    expect(again.total).toBe(4);
    for (const l of again.letters) expect(l).toMatchObject({ code: 'UNKNOWN_PROCESSOR', redrives: 1, redriveRun: runId });
    expect(again.letters.map((l) => l.lineage.join(' ')).sort()).toEqual(originals.map((o) => `${o.source} ${o.dlq}`).sort());
    const refailures = worker.lines.filter((l) => deadLettered(l) && l.redrives === 1);
    expect(again.letters.map((l) => l.sourceMessageId).sort()).toEqual(refailures.map((l) => String(l.messageId)).sort());
    // The id the worker logged the first time still finds the letter.
    const shown = json<{ messageId: string; matchedBy: string; redrives: number }>(
      await runCli(['dlq', 'show', 'auth-requests', originals[0]!.source, '--json'], s.env),
    );
    expect(shown).toMatchObject({ matchedBy: 'lineage', redrives: 1 });
    expect(again.letters.find((l) => l.lineage[0] === originals[0]!.source)?.messageId).toBe(shown.messageId);

    // A later run may redrive them again; the count survives the round trip (the worker copies it).
    const second = json<{ count: number; redriven: { redrives: number }[] }>(
      await runCli(['dlq', 'redrive', 'auth-requests', '--code', 'UNKNOWN_PROCESSOR', '--json'], s.env),
    );
    expect(second.count).toBe(4);
    expect(second.redriven.map((r) => r.redrives)).toEqual([2, 2, 2, 2]);
    await eventually(() => worker.lines.filter((l) => deadLettered(l) && l.redrives === 2).length === 4, 60_000, 'redrives 2');
    expect((await listLetters(s)).letters.map((l) => l.redrives)).toEqual([2, 2, 2, 2]);
    worker.kill('SIGTERM');
    await worker.exited;
  }, 240_000);

  it('Ctrl-C mid-run prints a summary, exits 1, and leaves every letter in exactly one queue', async () => {
    const s = await freshStack('dlqint');
    await putLetters(s, times(30, { code: 'UNKNOWN_PROCESSOR' }));
    const run = start(['dlq', 'redrive', 'auth-requests', '--code', 'UNKNOWN_PROCESSOR', '--rate', '1'], s.env);
    await eventually(() => /redrive: 1 redriven/.test(run.raw()), 60_000, 'the first letter redriven');
    run.kill('SIGINT');
    expect(await run.exited).toBe(1);
    const out = run.raw();
    expect(out).toMatch(/redrive run \S+: interrupted \(Ctrl-C\)/);
    const moved = Number(/redrove (\d+) dead letter\(s\)/.exec(out)?.[1]);
    expect(moved).toBeGreaterThanOrEqual(1);
    expect(moved).toBeLessThan(30);
    expect(out).toContain(`interrupted after ${moved} letter(s); the rest stay in the DLQ`);
    // Nothing it held stays hidden: the rest are listed at once, and the moved ones are on the source queue.
    expect((await listLetters(s)).total).toBe(30 - moved);
    const sent = await drain(s.clients.sqs, s.url(s.names.queue('auth-requests')));
    expect(sent).toHaveLength(moved);
    for (const m of sent) expect(m.MessageAttributes?.['payfleet-redrives']?.StringValue).toBe('1');
  }, 120_000);

  it('redriving everything states the count by code and asks; without a terminal it refuses unless --yes', async () => {
    const s = await freshStack('dlqall');
    await putLetters(s, [...times(3, { code: 'UNKNOWN_PROCESSOR' }), { code: 'TOKEN_UNKNOWN' }]);
    const refused = await runCli(['dlq', 'redrive', 'auth-requests'], s.env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /refusing to redrive all 4 dead letter\(s\) of \S+auth-requests-dlq\.fifo \(3 UNKNOWN_PROCESSOR, 1 TOKEN_UNKNOWN\) to \S+ without --yes/,
    );
    expect((await listLetters(s)).total).toBe(4);
    if (hasScript) {
      const declined = await onTerminal(s, ['dlq', 'redrive', 'auth-requests'], 'n\n');
      expect(declined.output).toMatch(
        /Redrive all 4 dead letter\(s\) of \S+ \(3 UNKNOWN_PROCESSOR, 1 TOKEN_UNKNOWN\) to \S+\?.*\[y\/N\]/,
      );
      expect(declined.output).toContain('not confirmed; nothing redriven');
      expect(declined.code).toBe(1);
      expect((await listLetters(s)).total).toBe(4);
    }
    // A dry run asks nothing and moves nothing; --yes moves them all.
    const dry = json<{ wouldRedrive: unknown[] }>(
      await runCli(['dlq', 'redrive', 'auth-requests', '--dry-run', '--json'], s.env),
    );
    expect(dry.wouldRedrive).toHaveLength(4);
    const all = await runCli(['dlq', 'redrive', 'auth-requests', '--yes', '--json'], s.env);
    expect(all.code).toBe(0);
    expect(json<{ count: number; byCode: Record<string, number> }>(all)).toMatchObject({
      count: 4,
      byCode: { UNKNOWN_PROCESSOR: 3, TOKEN_UNKNOWN: 1 },
    });
    expect((await listLetters(s)).total).toBe(0);
  }, 120_000);

  it('--max stops after that many letters and says so', async () => {
    const s = await freshStack('dlqmax');
    await putLetters(s, times(5, { code: 'TOKEN_UNKNOWN' }));
    const r = await runCli(['dlq', 'redrive', 'auth-requests', '--code', 'TOKEN_UNKNOWN', '--max', '2'], s.env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/stopped at --max 2/);
    expect(r.stdout).toMatch(/redrove 2 dead letter\(s\)/);
    expect((await listLetters(s)).total).toBe(3);
  }, 60_000);
});
