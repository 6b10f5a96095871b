/**
 * Ledger emitter throughput and cost: events/s from the outbox to ledger-events.fifo, marks
 * included; AWS calls per event by operation and DynamoDB capacity units per event, for the
 * commits that write the events and for the emitter that drains them.
 *
 *   npm run bench:ledger -- [--events 2000] [--per-resource 4] [--emitters 1] [--shards 8] [--batch 10] [--live]
 *
 * 1. starts the embedded stack (fauxqs + DynamoDB Local) — or uses AWS_ENDPOINT_URL_SQS /
 *    AWS_ENDPOINT_URL_DYNAMODB when both are set — and bootstraps a fresh prefix;
 * 2. writes `events` events through the real OutcomeStore.commit (events / per-resource resources,
 *    one commit per event, 16 commits in flight), with no emitter running;
 * 3. starts `emitters` in-process emitters (each its own lease owner, as separate processes would
 *    be) and times until the `pending` index is empty (every event sent and marked);
 *    With --live, the emitters run (all shards held) before the commits start, and the time runs
 *    from the first commit until the index is empty: the steady state, idle polls included.
 * 4. drains the queue with the reference consumer and checks exactly-once, in order (not timed).
 * Every DynamoDB call of steps 2 and 3 asks for ReturnConsumedCapacity TOTAL (an SDK middleware
 * that also counts the calls); the commits and the emitters use separate clients, and the bench's
 * own polling of the index a third, so each count is the commits' or the emitters' work only.
 * Prints one JSON line with the exact configuration and the result.
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { createAwsClients } from '../shared/aws/clients.js';
import { bootstrap } from '../cli/bootstrap.js';
import { EMBEDDED_CREDENTIALS, EMBEDDED_REGION, startEmbeddedStack } from '../cli/embedded/stack.js';
import { resourceNames } from '../shared/resources.js';
import { LedgerConsumer } from '../test/support/ledger-consumer.js';
import { expectedCounts, inProcessEmitter, outcomeStore, writeEvents } from '../test/ledger/support/harness.js';
import type { TestStack } from '../test/support/stack.js';

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '2000' },
    'per-resource': { type: 'string', default: '4' },
    emitters: { type: 'string', default: '1' },
    shards: { type: 'string', default: '8' },
    batch: { type: 'string', default: '10' },
    'poll-ms': { type: 'string', default: '200' },
    live: { type: 'boolean', default: false },
  },
});
const events = Number(args.events);
const perResource = Number(args['per-resource']);
const emitters = Number(args.emitters);
const shards = Number(args.shards);
const batch = Number(args.batch);
const pollMs = Number(args['poll-ms']);
const live = args.live === true;
const resources = Math.ceil(events / perResource);

const external = process.env.AWS_ENDPOINT_URL_SQS && process.env.AWS_ENDPOINT_URL_DYNAMODB;
const embedded = external ? undefined : await startEmbeddedStack();
const prefix = `bench${Date.now().toString(36)}-`;
const aws = {
  region: embedded?.region ?? process.env.AWS_REGION ?? EMBEDDED_REGION,
  sqsEndpoint: embedded?.sqsEndpoint ?? process.env.AWS_ENDPOINT_URL_SQS,
  dynamodbEndpoint: embedded?.dynamodbEndpoint ?? process.env.AWS_ENDPOINT_URL_DYNAMODB,
  resourcePrefix: prefix,
};
/** The emitters' clients. */
const clients = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 });
/** The commits' clients. */
const writer = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 });
/** The bench's own polling: not counted. */
const probe = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS });

/** Calls and capacity units per operation, of the commits and of the emitters. */
type Tally = Record<string, { n: number; ms: number; units: number }>;
const tallies: Record<'commit' | 'emit', Tally> = { commit: {}, emit: {} };
let counting = false;
const capacity = (c: unknown): number =>
  Array.isArray(c) ? c.reduce((n: number, x) => n + capacity(x), 0) : Number((c as { CapacityUnits?: number } | undefined)?.CapacityUnits ?? 0);
const counter =
  (label: 'commit' | 'emit', dynamo: boolean) =>
  (next: (a: { input: Record<string, unknown> }) => Promise<{ output: { ConsumedCapacity?: unknown } }>, context: { commandName?: string }) =>
  async (a: { input: Record<string, unknown> }) => {
    const on = counting;
    if (on && dynamo) a.input.ReturnConsumedCapacity = 'TOTAL';
    const t = performance.now();
    let units = 0;
    try {
      const out = await next(a);
      units = capacity(out.output?.ConsumedCapacity);
      return out;
    } finally {
      if (on) {
        const name = (context.commandName ?? '?').replace(/Command$/, '');
        tallies[label][name] ??= { n: 0, ms: 0, units: 0 };
        const c = tallies[label][name];
        c.n++;
        c.ms += performance.now() - t;
        c.units += units;
      }
    }
  };
clients.doc.middlewareStack.add(counter('emit', true) as never, { step: 'initialize', name: 'benchCount' });
clients.sqs.middlewareStack.add(counter('emit', false) as never, { step: 'initialize', name: 'benchCount' });
writer.doc.middlewareStack.add(counter('commit', true) as never, { step: 'initialize', name: 'benchCount' });
/** Per event: calls by operation, and DynamoDB capacity units (reads and writes as DynamoDB Local reports them). */
const perEvent = (t: Tally, n: number) => {
  const round = (x: number) => Math.round(x * 1000) / 1000;
  const ops = Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, { calls: v.n, perEvent: round(v.n / n), meanMs: Math.round((v.ms / v.n) * 10) / 10, units: round(v.units) }]),
  );
  const reads = new Set(['Query', 'Scan', 'Get', 'BatchGet', 'TransactGet']);
  const sum = (f: (k: string) => boolean, by: (v: Tally[string]) => number) =>
    round(Object.entries(t).filter(([k]) => f(k)).reduce((x, [, v]) => x + by(v), 0) / n);
  return {
    callsPerEvent: sum(() => true, (v) => v.n),
    dynamoCallsPerEvent: sum((k) => !k.startsWith('SendMessage') && !k.startsWith('ReceiveMessage'), (v) => v.n),
    sqsCallsPerEvent: sum((k) => k.startsWith('SendMessage'), (v) => v.n),
    wruPerEvent: sum((k) => !reads.has(k), (v) => v.units),
    rruPerEvent: sum((k) => reads.has(k), (v) => v.units),
    ops,
  };
};
try {
  const report = await bootstrap(clients, { prefix, ledgerShards: shards });
  const names = resourceNames(prefix);
  const stack = {
    prefix,
    names,
    aws,
    clients,
    env: {},
    queueUrls: report.queueUrls,
    url: (n: string) => report.queueUrls[n]!,
    close: () => undefined,
  } as TestStack;

  const ids = Array.from({ length: resources }, (_, i) => `bench-${i}`);
  const commitAll = async () => {
    const w0 = performance.now();
    await writeEvents([outcomeStore({ ...stack, clients: writer }, { ledgerShards: shards })], ids, perResource, 0, 16);
    return performance.now() - w0;
  };
  counting = true;
  let writeMs = live ? 0 : await commitAll();

  const pending = async () => {
    let n = 0;
    let start: Record<string, unknown> | undefined;
    do {
      const out = await probe.doc.send(
        new ScanCommand({
          TableName: names.table('events'),
          IndexName: 'pending',
          Select: 'COUNT',
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      n += out.Count ?? 0;
      start = out.LastEvaluatedKey;
    } while (start);
    return n;
  };

  const running = Array.from({ length: emitters }, (_, i) =>
    inProcessEmitter(stack, {
      ownerId: `bench-emitter-${i}`,
      ledgerShards: shards,
      leaseMs: 10_000,
      settings: { batchSize: batch, pollMs, rebalanceMs: 500 },
    }),
  );
  if (live) {
    // The steady state: every shard held before the first commit, counted from then on.
    counting = false;
    for (const e of running) for (const t of e.ledger.tasks) t.start();
    const held = () => running.reduce((n, e) => n + e.ledger.manager.held().length, 0);
    while (held() < shards) await new Promise((r) => setTimeout(r, 50));
    counting = true;
  }
  const t0 = performance.now();
  if (live) writeMs = await commitAll();
  else for (const e of running) for (const t of e.ledger.tasks) t.start();
  while ((await pending()) > 0) await new Promise((r) => setTimeout(r, 50));
  const drainMs = performance.now() - t0;
  counting = false;
  await Promise.all(running.map((e) => e.stop()));

  const consumer = new LedgerConsumer({ sqs: clients.sqs, queueUrl: report.queueUrls[names.queue('ledger-events')]! });
  await consumer.drainUntil((c) => c.uniqueCount >= resources * perResource, { timeoutMs: 120_000, idleMs: 500 });
  const r = consumer.report();
  const problems = consumer.missingAgainst(expectedCounts(ids, perResource));
  const result = {
    bench: 'ledger-emitter',
    command: `npm run bench:ledger -- --events ${events} --per-resource ${perResource} --emitters ${emitters} --shards ${shards} --batch ${batch} --poll-ms ${pollMs}${live ? ' --live' : ''}`,
    mode: live ? 'live: emitters running while the events are committed; time from the first commit to an empty index' : 'backlog: events committed first, then drained',
    stack: external ? 'external endpoints' : 'embedded (fauxqs + DynamoDB Local)',
    node: process.version,
    cpus: cpus().length,
    loadavg1m: Number(loadavg()[0]!.toFixed(1)),
    events: resources * perResource,
    resources,
    perResource,
    emitters,
    shards,
    batchSize: batch,
    pollMs,
    writeMs: Math.round(writeMs),
    commitsPerSec: Math.round((resources * perResource) / (writeMs / 1000)),
    drainMs: Math.round(drainMs),
    eventsPerSec: Math.round((resources * perResource) / (drainMs / 1000)),
    commit: perEvent(tallies.commit, resources * perResource),
    emitter: perEvent(tallies.emit, resources * perResource),
    verified: {
      unique: r.unique,
      duplicates: r.duplicates.length,
      gaps: r.gaps.length,
      reorders: r.reorders.length,
      missing: problems.length,
    },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (r.gaps.length || r.reorders.length || problems.length) process.exitCode = 1;
} finally {
  clients.destroy();
  writer.destroy();
  probe.destroy();
  await embedded?.stop();
}
