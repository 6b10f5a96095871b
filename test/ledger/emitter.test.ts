import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SendMessageBatchCommandInput, SendMessageBatchCommandOutput } from '@aws-sdk/client-sqs';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAwsClients } from '../../shared/aws/clients.js';
import { ledgerShardOf } from '../../shared/core/outbox.js';
import { EMBEDDED_CREDENTIALS } from '../../cli/embedded/stack.js';
import { registerEvents } from '../../cli/commands/events.js';
import { LedgerConsumer } from '../support/ledger-consumer.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { FakeQueue } from './support/fakes.js';
import {
  expectedCounts,
  inProcessEmitter,
  metricValues,
  outboxRows,
  outcomeStore,
  writeEvents,
  type InProcessEmitter,
} from './support/harness.js';

/**
 * The emitter in this process against the embedded stack: the real commit writes the outbox, the
 * real SQS (fauxqs) carries the events, the reference consumer judges them.
 */
let stack: TestStack;
const running: InProcessEmitter[] = [];

beforeAll(async () => {
  stack = await setupTestStack('ledger');
});
afterEach(async () => {
  // A failed test must not leave its emitter running into the next one.
  await Promise.all(running.splice(0).map((e) => e.stop().catch(() => undefined)));
});
afterAll(() => {
  stack?.close();
});

function start(options: Parameters<typeof inProcessEmitter>[1] = {}): InProcessEmitter {
  const e = inProcessEmitter(stack, options);
  running.push(e);
  for (const t of e.ledger.tasks) t.start();
  return e;
}

/** The reference consumer, judging only this test's resources (the tests share one queue). */
const consumer = (resources: readonly string[]) => {
  const mine = new Set(resources);
  return new LedgerConsumer({
    sqs: stack.clients.sqs,
    queueUrl: stack.url(stack.names.queue('ledger-events')),
    scope: (id) => mine.has(id),
  });
};
const ids = (label: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${label}-${i}-${Math.random().toString(36).slice(2, 7)}`);

/** Capture what a CLI action writes to stdout; returns [output, exitCode]. */
async function cli(args: string[]): Promise<[string, number]> {
  const program = new Command('payfleet').exitOverride();
  registerEvents(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  const saved = { ...process.env };
  Object.assign(process.env, stack.env);
  try {
    await program.parseAsync(['node', 'payfleet', ...args]);
    return [out, 0];
  } catch (err) {
    return [out, (err as { exitCode?: number }).exitCode ?? -1];
  } finally {
    spy.mockRestore();
    process.env = saved;
  }
}

describe('ledger emitter', () => {
  describe('delivery', () => {
    it('every event committed through OutcomeStore.commit reaches the consumer exactly once, in per-resource order', async () => {
      // Prepare: the emitter runs while 20 resources × 4 changes are committed by two writers whose
      // clocks are 3 s apart (so the index order disagrees with the sequence order).
      const emitter = start();
      await eventually(() => emitter.ledger.manager.held().length === 8, 10_000, 'all 8 shards held');
      const resources = ids('pay', 20);
      const stores = [outcomeStore(stack), outcomeStore(stack, { skewMs: -3000 })];
      const c = consumer(resources);
      // Act
      await writeEvents(stores, resources, 4);
      await c.drainUntil((x) => x.uniqueCount >= 80, { timeoutMs: 30_000 });
      // Assess
      expect(c.report()).toMatchObject({ unique: 80, invalid: [], mismatches: [], gaps: [], reorders: [] });
      expect(c.missingAgainst(expectedCounts(resources, 4))).toEqual([]);
      await eventually(
        async () => (await outboxRows(stack, resources)).every((r) => r.emittedAt !== undefined),
        10_000,
        'every row marked',
      );
      const emitted = await metricValues(emitter.registry, 'payfleet_ledger_events_emitted_total');
      expect(emitted.reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(80);
      await eventually(
        async () => (await metricValues(emitter.registry, 'payfleet_ledger_emission_lag_seconds')).every((v) => v.value === 0),
        5000,
        'lag 0',
      );
      expect(await metricValues(emitter.registry, 'payfleet_ledger_shards_held')).toEqual([{ labels: {}, value: 8 }]);

      // The CLI: one resource's events, and parity of the outbox with what the consumer recorded.
      const [shown, code] = await cli(['events', resources[0]!, '--json']);
      expect(code).toBe(0);
      const json = JSON.parse(shown) as { events: { sequence: number; state: string }[] };
      expect(json.events.map((e) => [e.sequence, e.state])).toEqual([1, 2, 3, 4].map((s) => [s, 'emitted']));
      expect((await cli(['events', 'no-such-resource']))[1]).toBe(3);
      const dir = mkdtempSync(join(tmpdir(), 'parity-'));
      const good = join(dir, 'good.ndjson');
      writeFileSync(good, c.toNdjson());
      const [parity, parityCode] = await cli(['events', 'parity', '--from', good, '--json']);
      expect(parityCode).toBe(0);
      expect(JSON.parse(parity)).toMatchObject({ ok: true, outboxEvents: 80, recordedUnique: 80, missing: [], outOfOrder: [] });
      // A record that lost one event and swapped two others of a resource fails, and says why.
      const lines = c.toNdjson().trim().split('\n');
      const r1 = lines.map((l, i) => [l, i] as const).filter(([l]) => l.includes(`"${resources[1]}"`));
      const tampered = [...lines];
      tampered[r1[1]![1]] = r1[2]![0];
      tampered[r1[2]![1]] = r1[1]![0];
      tampered.splice(
        lines.findIndex((l) => l.includes(`"${resources[2]}"`)),
        1,
      );
      const bad = join(dir, 'bad.ndjson');
      writeFileSync(bad, `${tampered.join('\n')}\n`);
      const [badOut, badCode] = await cli(['events', 'parity', '--from', bad, '--resource', resources[2]!, '--json']);
      expect(badCode).toBe(1);
      const badReport = JSON.parse(badOut) as { missing: { resourceId: string }[]; outOfOrder: { resourceId: string }[] };
      expect(badReport.missing.map((m) => m.resourceId)).toEqual([resources[2]]);
      expect(badReport.outOfOrder.map((m) => m.resourceId)).toEqual([resources[1]]);
      await emitter.stop();
    });

    it('SendMessageBatch entries that fail (wrapped SQS client) are retried without reordering their resource', async () => {
      // Prepare: an SQS client whose SendMessageBatch rejects the first attempt of every event with
      // sequence 1 or 3 while the other entries of the same call go through.
      const clients = createAwsClients(stack.aws, { credentials: EMBEDDED_CREDENTIALS });
      const tried = new Set<string>();
      let injected = 0;
      clients.sqs.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName !== 'SendMessageBatchCommand') return next(args);
          const input = args.input as SendMessageBatchCommandInput;
          const fails = (e: NonNullable<SendMessageBatchCommandInput['Entries']>[number]) => {
            const seq = (JSON.parse(e.MessageBody!) as { sequence: number }).sequence;
            const first = !tried.has(e.MessageDeduplicationId!);
            tried.add(e.MessageDeduplicationId!);
            return first && (seq === 1 || seq === 3);
          };
          const entries = input.Entries ?? [];
          const verdicts = entries.map((e) => fails(e));
          const dropped = entries.filter((_, i) => verdicts[i]);
          const kept = entries.filter((_, i) => !verdicts[i]);
          injected += dropped.length;
          const failed = dropped.map((e) => ({ Id: e.Id!, Code: 'InternalError', SenderFault: false, Message: 'injected' }));
          if (kept.length === 0) return { output: { Successful: [], Failed: failed, $metadata: {} }, response: {} } as never;
          const out = (await next({ ...args, input: { ...input, Entries: kept } })) as { output: SendMessageBatchCommandOutput };
          out.output.Failed = [...(out.output.Failed ?? []), ...failed];
          return out as never;
        },
        { step: 'initialize', name: 'injectPartialFailure' },
      );
      const emitter = start({ sqs: clients.sqs });
      const resources = ids('flaky', 16);
      const c = consumer(resources);
      // Act
      await writeEvents([outcomeStore(stack)], resources, 4);
      await c.drainUntil((x) => x.uniqueCount >= 64, { timeoutMs: 30_000 });
      // Assess
      expect(injected).toBeGreaterThanOrEqual(32);
      expect(c.report()).toMatchObject({ unique: 64, gaps: [], reorders: [], invalid: [], mismatches: [] });
      expect(c.missingAgainst(expectedCounts(resources, 4))).toEqual([]);
      await eventually(
        async () => (await outboxRows(stack, resources)).every((r) => r.emittedAt !== undefined),
        10_000,
        'every row marked',
      );
      const rows = await outboxRows(stack, resources);
      expect(rows.filter((r) => r.sendFailures > 0).length).toBeGreaterThanOrEqual(32);
      const failures = await metricValues(emitter.registry, 'payfleet_ledger_send_failures_total');
      expect(failures.find((v) => v.labels.code === 'InternalError')?.value).toBe(injected);
      await emitter.stop();
      clients.destroy();
    });

    it('emission lag reports the age of the oldest unemitted event while sends fail', async () => {
      const failing = new FakeQueue();
      failing.fail = () => ({ code: 'InternalError', message: 'down', senderFault: false });
      const [id] = ids('lag', 1);
      await writeEvents([outcomeStore(stack, { skewMs: -5000 })], [id!], 1);
      const emitter = start({ publisher: failing });
      const shard = ledgerShardOf(id!, 8);
      await eventually(
        async () =>
          ((await metricValues(emitter.registry, 'payfleet_ledger_emission_lag_seconds')).find((v) => v.labels.shard === shard)
            ?.value ?? 0) >= 5,
        10_000,
        'lag >= 5 s on the shard',
      );
      await emitter.stop();
      // Released shards drop their lag series (no stale gauges from a process that no longer holds them).
      expect(await metricValues(emitter.registry, 'payfleet_ledger_emission_lag_seconds')).toEqual([]);
      // Leave nothing pending for the next tests' emitters.
      await emitter.ledger.outbox.markEmitted(await emitter.ledger.outbox.resourceEvents(id!), new Date().toISOString());
    });
  });

  describe('sweeper', () => {
    it('events in a shard no emitter can hold (written with another shard count) are re-homed and emitted after the sweep age', async () => {
      // Resources whose shard under 16 shards does not exist in this 8-shard fleet.
      const orphans: string[] = [];
      for (let i = 0; orphans.length < 4; i++) {
        const id = `orphan-${i}-${Math.random().toString(36).slice(2, 6)}`;
        if (Number(ledgerShardOf(id, 16).slice(-3)) >= 8) orphans.push(id);
      }
      const emitter = start({ settings: { sweeper: true, sweepAgeMs: 2000, sweepIntervalMs: 300 } });
      const c = consumer(orphans);
      await writeEvents([outcomeStore(stack, { ledgerShards: 16 })], orphans, 3);
      await c.drainUntil((x) => x.uniqueCount >= 12, { timeoutMs: 20_000 });
      expect(c.report()).toMatchObject({ unique: 12, gaps: [], reorders: [] });
      // The shard loops could not see them: each went out only once it was older than the sweep age.
      expect(c.events().filter((e) => e.receivedAtMs - Date.parse(e.body.timestamp) < 2000)).toEqual([]);
      const actions = await metricValues(emitter.registry, 'payfleet_ledger_sweeper_actions_total');
      expect(actions.find((v) => v.labels.action === 'rehomed')?.value).toBe(12);
      await emitter.stop();
    });

    it('events in a valid shard nobody holds are emitted by the sweeper under that shard’s lease', async () => {
      // One shard per process and one process: 7 shards have no holder.
      const emitter = start({ settings: { maxShardsPerProcess: 1, sweeper: true, sweepAgeMs: 2000, sweepIntervalMs: 300 } });
      await eventually(() => emitter.ledger.manager.held().length === 1, 10_000, 'one shard held');
      const held = emitter.ledger.manager.held()[0]!.shard;
      // 14 resources outside the held shard and 2 inside it, so both paths are always exercised
      // (16 random ids miss a given shard one time in eight).
      const candidates = ids('unheld', 400);
      const inHeld = candidates.filter((id) => ledgerShardOf(id, 8) === held).slice(0, 2);
      const resources = [...candidates.filter((id) => ledgerShardOf(id, 8) !== held).slice(0, 14), ...inHeld];
      const c = consumer(resources);
      await writeEvents([outcomeStore(stack)], resources, 2);
      await c.drainUntil((x) => x.uniqueCount >= 32, { timeoutMs: 20_000 });
      expect(c.report()).toMatchObject({ unique: 32, gaps: [], reorders: [] });
      // The held shard's events went out through its shard loop (`via: main`, which sends whatever is
      // pending, at any age); the unheld shards' only through the sweeper, which takes an unheld shard
      // only once its oldest event is older than the sweep age and then drains it whole (events
      // written a moment later may go out younger: sending early is harmless). So the first delivery
      // from each unheld shard waited >= 2 s.
      expect(inHeld.length).toBeGreaterThan(0);
      const via = new Map<string, Set<unknown>>();
      for (const l of emitter.lines.filter((x) => x.msg === 'ledger batch sent'))
        for (const id of l.eventIds as string[]) via.set(id, new Set([...(via.get(id) ?? []), l.via]));
      for (const e of c.events()) {
        const expected = inHeld.includes(e.body.resource_external_id) ? 'main' : 'sweeper';
        expect([...(via.get(e.body.event_id) ?? [])], `sent via (${e.body.resource_external_id})`).toEqual([expected]);
      }
      const age = (e: ReturnType<typeof c.events>[number]) => e.receivedAtMs - Date.parse(e.body.timestamp);
      const others = c.events().filter((e) => !inHeld.includes(e.body.resource_external_id));
      expect(others.length).toBe(32 - inHeld.length * 2);
      const firstByShard = new Map<string, ReturnType<typeof c.events>[number]>();
      for (const e of [...c.events()].sort((a, b) => a.receivedAtMs - b.receivedAtMs)) {
        const shard = ledgerShardOf(e.body.resource_external_id, 8);
        if (!firstByShard.has(shard)) firstByShard.set(shard, e);
      }
      for (const [shard, first] of firstByShard) {
        if (shard !== held) expect(age(first), `unheld shard ${shard}`).toBeGreaterThanOrEqual(2000);
      }
      const actions = await metricValues(emitter.registry, 'payfleet_ledger_sweeper_actions_total');
      expect(actions.find((v) => v.labels.action === 'shard_swept')?.value).toBeGreaterThanOrEqual(1);
      await emitter.stop();
    });
  });
});
