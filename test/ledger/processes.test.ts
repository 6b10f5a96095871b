import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDynamoLeaseStore } from '../../shared/core/dynamo-leases.js';
import type { LeaseHolder } from '../../shared/core/ports.js';
import { ledgerShardKey } from '../../shared/resources.js';
import { LedgerConsumer } from '../support/ledger-consumer.js';
import { startProcess, type WorkerProcess } from '../support/processes.js';
import { eventually } from '../support/sqs.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { expectedCounts, outboxRows, outcomeStore, writeEvents } from './support/harness.js';

/**
 * The ledger worker as real processes (`workers/ledger/main.ts` through a test entry that can
 * SIGKILL itself between send and mark): two at once, SIGTERM, SIGKILL. The reference consumer
 * is the judge; lease rows and the workers' JSON logs show who sent what under which token.
 */
let stack: TestStack;
const procs: WorkerProcess[] = [];

beforeAll(async () => {
  stack = await setupTestStack('ledgerproc');
});
afterAll(() => {
  for (const p of procs) p.kill('SIGKILL');
  stack?.close();
});

function emitter(extraEnv: Record<string, string> = {}): WorkerProcess {
  const p = startProcess('test/ledger/support/ledger-worker.ts', [], {
    ...stack.env,
    PAYFLEET_OPS_PORT: '0',
    PAYFLEET_LOG_LEVEL: 'debug',
    PAYFLEET_WAIT_TIME_SEC: '1',
    PAYFLEET_LEASE_MS: '2000',
    PAYFLEET_LEASE_RENEW_MS: '500',
    PAYFLEET_SHUTDOWN_GRACE_MS: '3000',
    PAYFLEET_FORCE_EXIT_MS: '8000',
    PAYFLEET_LEDGER_REBALANCE_MS: '300',
    PAYFLEET_LEDGER_POLL_MS: '200',
    PAYFLEET_LEDGER_RETRY_BASE_MS: '100',
    ...extraEnv,
  });
  procs.push(p);
  return p;
}

const started = (p: WorkerProcess) => p.waitForLine((l) => l.msg === 'worker started', 45_000);
const ownerOf = async (p: WorkerProcess) => String((await started(p)).ownerId);
const ids = (label: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${label}-${i}-${Math.random().toString(36).slice(2, 7)}`);
const consumer = (resources: readonly string[]) => {
  const mine = new Set(resources);
  return new LedgerConsumer({
    sqs: stack.clients.sqs,
    queueUrl: stack.url(stack.names.queue('ledger-events')),
    scope: (id) => mine.has(id),
  });
};

async function shardRows(): Promise<(LeaseHolder & { key: string })[]> {
  const leases = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') });
  return Promise.all(
    Array.from({ length: 8 }, async (_, i) => ({ key: ledgerShardKey(i), ...(await leases.inspect(ledgerShardKey(i)))! })),
  );
}

interface Send {
  shard: string;
  owner: string;
  token: number;
  startMs: number;
  endMs: number;
  eventIds: string[];
}
const sends = (p: WorkerProcess): Send[] =>
  p.lines
    .filter((l) => l.msg === 'ledger batch sent')
    .map((l) => ({
      shard: String(l.shard),
      owner: String(l.owner),
      token: Number(l.fencingToken),
      startMs: Date.parse(String(l.startedAt)),
      endMs: Date.parse(String(l.time)),
      eventIds: l.eventIds as string[],
    }));

/** Per shard: each fencing token belongs to one owner, and token k's sends all end before token k+1's begin. */
function overlaps(all: Send[]): string[] {
  const problems: string[] = [];
  const byShard = new Map<string, Map<number, { owner: Set<string>; start: number; end: number }>>();
  for (const s of all) {
    const tokens = byShard.get(s.shard) ?? new Map();
    byShard.set(s.shard, tokens);
    const t = tokens.get(s.token) ?? { owner: new Set<string>(), start: s.startMs, end: s.endMs };
    t.owner.add(s.owner);
    t.start = Math.min(t.start, s.startMs);
    t.end = Math.max(t.end, s.endMs);
    tokens.set(s.token, t);
  }
  for (const [shard, tokens] of byShard) {
    const sorted = [...tokens].sort(([a], [b]) => a - b);
    sorted.forEach(([token, t], i) => {
      if (t.owner.size !== 1) problems.push(`${shard} token ${token} used by ${[...t.owner].join(', ')}`);
      const next = sorted[i + 1];
      if (next && next[1].start < t.end)
        problems.push(`${shard}: token ${next[0]} sent at ${next[1].start} before token ${token} stopped (${t.end})`);
    });
  }
  return problems;
}

describe('ledger worker', () => {
  describe('shards across processes', () => {
    it('two emitters split the shards, never send one shard at once, deliver every event once in order; SIGTERM hands shards over at once', async () => {
      // A lease far longer than the test (10 min): the survivor can only take the leaver's shards
      // because the leaver released them, never because they expired.
      const env = { PAYFLEET_LEASE_MS: '600000', PAYFLEET_LEASE_RENEW_MS: '2000' };
      const a = emitter(env);
      const b = emitter(env);
      const [ownerA, ownerB] = await Promise.all([ownerOf(a), ownerOf(b)]);
      await eventually(
        async () => {
          const owners = (await shardRows()).map((r) => r.owner);
          return owners.every((o) => o === ownerA || o === ownerB) && owners.filter((o) => o === ownerA).length === 4;
        },
        20_000,
        'the 8 shards split 4/4 between the two emitters',
      );

      // Act: commits while both run (two writers, clocks 2 s apart).
      const resources = ids('two', 24);
      const c = consumer(resources);
      await writeEvents([outcomeStore(stack), outcomeStore(stack, { skewMs: -2000 })], resources, 4);
      await c.drainUntil((x) => x.uniqueCount >= 96, { timeoutMs: 30_000 });

      // Assess: exactly once, in order; both sent; no shard sent by two holders at once.
      expect(c.report()).toMatchObject({ unique: 96, invalid: [], mismatches: [], gaps: [], reorders: [] });
      expect(c.missingAgainst(expectedCounts(resources, 4))).toEqual([]);
      const all = [...sends(a), ...sends(b)];
      expect(new Set(sends(a).map((s) => s.shard)).size).toBeGreaterThan(0);
      expect(new Set(sends(b).map((s) => s.shard)).size).toBeGreaterThan(0);
      expect(overlaps(all)).toEqual([]);
      // Each event was sent by the holder of its shard only.
      const shardsOf = (owner: string) => new Set(all.filter((s) => s.owner === owner).map((s) => s.shard));
      expect([...shardsOf(ownerA)].filter((s) => shardsOf(ownerB).has(s))).toEqual([]);

      // SIGTERM: A exits 0 (within its own force-exit bound, else it would exit 1), its shards are
      // released as it leaves (not left to expire: owner gone, expiry 0), and B takes all 8 while A's
      // 10-minute leases could not have lapsed — only the release can have freed them.
      const heldByA = (await shardRows()).filter((r) => r.owner === ownerA).map((r) => r.key);
      const linesBefore = a.lines.length;
      a.kill('SIGTERM');
      expect(await a.exited).toBe(0);
      const releasedAtExit = a.lines.slice(linesBefore).filter((l) => l.msg === 'ledger shard released');
      expect(releasedAtExit.map((l) => l.shard).sort()).toEqual([...heldByA].sort());
      const afterA = await shardRows();
      expect(afterA.filter((r) => r.owner === ownerA)).toEqual([]);
      expect(afterA.filter((r) => heldByA.includes(r.key) && r.owner === undefined && r.expiresAtMs !== 0)).toEqual([]);
      await eventually(async () => (await shardRows()).every((r) => r.owner === ownerB), 60_000, 'B to hold all 8 shards');
      const more = ids('after', 8);
      const c2 = consumer(more);
      await writeEvents([outcomeStore(stack)], more, 2);
      await c2.drainUntil((x) => x.uniqueCount >= 16, { timeoutMs: 20_000 });
      expect(c2.report()).toMatchObject({ unique: 16, gaps: [], reorders: [] });
      b.kill('SIGTERM');
      expect(await b.exited).toBe(0);
      expect((await shardRows()).filter((r) => r.owner !== undefined)).toEqual([]);
    });
  });

  describe('crashes', () => {
    it('an emitter SIGKILLed between send and mark: the next holder resends, the consumer still sees every event once, in order', async () => {
      const victim = emitter({ LEDGER_TEST_CRASH_AFTER_SENDS: '2' });
      await started(victim);
      const resources = ids('kill', 12);
      const c = consumer(resources);
      await writeEvents([outcomeStore(stack)], resources, 3);
      expect(await victim.exited).toBe('SIGKILL');
      const crash = await victim.waitForLine((l) => l.msg === 'test crash after send');
      const unmarked = crash.eventIds as string[];
      expect(unmarked.length).toBeGreaterThan(0);
      // Killed exactly in the window: SQS has the batch, the outbox still says pending.
      const rows = await outboxRows(stack, resources);
      const crashed = rows.filter((r) => unmarked.includes(r.eventId));
      expect(crashed.length).toBe(unmarked.length);
      expect(crashed.every((r) => r.pendingShard !== undefined && r.emittedAt === undefined)).toBe(true);

      const rescuer = emitter();
      await c.drainUntil((x) => x.uniqueCount >= 36, { timeoutMs: 30_000 });
      expect(c.report()).toMatchObject({ unique: 36, invalid: [], mismatches: [], gaps: [], reorders: [] });
      expect(c.missingAgainst(expectedCounts(resources, 3))).toEqual([]);
      // The rescuer sent the crashed batch again (SQS's de-dup window or the consumer drops the copy).
      const resent = new Set(sends(rescuer).flatMap((s) => s.eventIds));
      expect(unmarked.filter((id) => !resent.has(id))).toEqual([]);
      await eventually(
        async () => (await outboxRows(stack, resources)).every((r) => r.emittedAt !== undefined),
        10_000,
        'every row marked',
      );
      rescuer.kill('SIGTERM');
      expect(await rescuer.exited).toBe(0);
    });
  });
});
