/**
 * Benchmark: the hand-written minimum loop next to payfleet's auth worker, on the embedded stack,
 * in one run (rounds alternate), plus what each authorisation and capture costs in DynamoDB.
 *
 *   npm run bench:minimum                       # 1000 messages per round, 2 rounds each
 *   BENCH_CHARGES=2000 BENCH_ROUNDS=3 BENCH_CONCURRENCY=32 npm run bench:minimum
 *
 * 1. The minimum loop (no framework): pollers ReceiveMessage 10 at a time; per message the same two
 *    DynamoDB writes as the auth worker — write 1, an UpdateItem creating the charge
 *    AUTHORISATION_READY with the row lease and the work item; write 2, one TransactWriteItems with
 *    the outcome, PAYMENT_CREATED + AUTHORISATION_SUCCEEDED, the work item completed and the lease
 *    released — a no-op processor in between; DeleteMessageBatch per received batch.
 * 2. `payfleet worker auth` (one process, sandbox processor) on the same number of messages; msg/s
 *    from readiness to all succeeded, and AWS calls per message by command from its /metrics.
 * 3. Write units: the real handlers (auth, then capture of the same charges) run in this process
 *    over a DynamoDB client that asks every call for `ReturnConsumedCapacity: TOTAL`, counting calls
 *    per message by command and WRU/RRU per message — measured, not estimated.
 */
import { randomUUID } from 'node:crypto';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { TransactWriteCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createAwsClients } from '../shared/aws/clients.js';
import { manualClock } from '../shared/core/clock.js';
import type { HandlerContext } from '../shared/core/consumer.js';
import { createDynamoIdempotencyStore } from '../shared/core/dynamo-idempotency.js';
import { createDynamoLeaseStore } from '../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../shared/core/dynamo-outcomes.js';
import { createDynamoRowWorkStore } from '../shared/core/dynamo-row-work.js';
import { createLeaseKeeper } from '../shared/core/lease-keeper.js';
import { routeLeases } from '../shared/core/row-lease.js';
import { createOnce } from '../shared/core/work.js';
import { createChargeRepository } from '../shared/charges/repo.js';
import type { ProcessorRegistry } from '../shared/connectors/registry.js';
import { SensitiveCard } from '../shared/connectors/sensitive-card.js';
import type { ProcessorConnector } from '../shared/connectors/types.js';
import { silentLogger } from '../shared/log/logger.js';
import { createAuthHandler } from '../workers/auth/handler.js';
import { parseAuthorisationRequested } from '../workers/auth/schema.js';
import { createCaptureHandler } from '../workers/capture/handler.js';
import { parseCaptureRequested } from '../workers/capture/schema.js';
import { startTokenServiceSandbox } from '../cli/sandbox/token-service-server.js';
import { EMBEDDED_CREDENTIALS } from '../cli/embedded/stack.js';
import { fmt, scrape, startBenchStack, startWorker, sum, until, type BenchStack } from './harness.js';
import { chargeEventPut } from './support.js';

const N = Number(process.env.BENCH_CHARGES ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const WRU_SAMPLE = Number(process.env.BENCH_WRU_CHARGES ?? 100);

function authBody(chargeId: string) {
  const authRequestId = randomUUID();
  return {
    body: {
      type: 'AuthorisationRequested',
      authRequestId,
      chargeId,
      gatewayAccountId: 'gw-bench',
      processor: 'sandbox',
      amount: 1000,
      currency: 'GBP',
      paymentTokenId: `tok_4242424242424242_${chargeId}`,
      reference: chargeId,
      description: 'bench',
      requestedAt: new Date().toISOString(),
    },
    group: chargeId,
    dedup: authRequestId,
  };
}

async function send(sqs: SQSClient, url: string, bodies: { body: object; group: string; dedup: string }[]) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < bodies.length) {
        const chunk = bodies.slice(next, next + 10);
        next += 10;
        const out = await sqs.send(
          new SendMessageBatchCommand({
            QueueUrl: url,
            Entries: chunk.map((b, i) => ({ Id: String(i), MessageBody: JSON.stringify(b.body), MessageGroupId: b.group, MessageDeduplicationId: b.dedup })),
          }),
        );
        if (out.Failed?.length) throw new Error(JSON.stringify(out.Failed));
      }
    }),
  );
}

/** The two writes of one authorisation, by hand: the same expressions' shape as the auth worker's. */
async function twoWrites(doc: DynamoDBDocumentClient, b: BenchStack, owner: string, m: { chargeId: string; authRequestId: string }) {
  const t = Date.now();
  const at = new Date(t).toISOString();
  const work = `work:auth#${m.authRequestId}`;
  const charge = {
    gatewayAccountId: 'gw-bench',
    processor: 'sandbox',
    amount: 1000,
    currency: 'GBP',
    reference: m.chargeId,
    description: 'bench',
    live: false,
    status: 'AUTHORISATION_READY',
    version: 1,
    eventSeq: 0,
    createdAt: at,
    updatedAt: at,
    requestedAt: at,
    authRequestId: m.authRequestId,
    authIdempotencyKey: `payfleet-auth-${m.authRequestId}`,
    history: [
      { status: 'CREATED', at },
      { status: 'AUTHORISATION_READY', at },
    ],
  };
  const names: Record<string, string> = { '#lo': 'leaseOwner', '#le': 'leaseExpiresAtMs', '#lt': 'leaseToken', '#wi': work };
  const values: Record<string, unknown> = { ':me': owner, ':exp': t + 30_000, ':now': t, ':one': 1, ':item': { status: 'IN_PROGRESS', attemptId: 'a1', attempts: 1, startedAtMs: t } };
  const sets = ['#lo = :me', '#le = :exp', '#wi = :item'];
  Object.entries(charge).forEach(([k, v], i) => {
    names[`#c${i}`] = k;
    values[`:c${i}`] = v;
    sets.push(`#c${i} = if_not_exists(#c${i}, :c${i})`);
  });
  await doc.send(
    new UpdateCommand({
      TableName: b.names.table('charges'),
      Key: { chargeId: m.chargeId },
      ConditionExpression: '(attribute_not_exists(#lo) OR #le < :now) AND attribute_not_exists(#wi)',
      UpdateExpression: `SET ${sets.join(', ')} ADD #lt :one`,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
      ReturnValues: 'ALL_NEW',
    }),
  );
  // The processor: a no-op approval.
  const event = (sequence: number, eventType: string) => ({ Put: chargeEventPut(b.names.table('events'), m.chargeId, sequence, eventType, at) });
  await doc.send(
    new TransactWriteCommand({
      ClientRequestToken: randomUUID(),
      TransactItems: [
        {
          Update: {
            TableName: b.names.table('charges'),
            Key: { chargeId: m.chargeId },
            ConditionExpression: '#v = :one AND #lo = :me AND #lt = :one AND #le > :now AND #wi.#wa = :aid',
            UpdateExpression: 'SET #v = :two, #st = :ok, #seq = :two, #h = :h, #wi.#ws = :done, #wi.#wr = :r, #le = :zero REMOVE #lo',
            ExpressionAttributeNames: { '#v': 'version', '#st': 'status', '#seq': 'eventSeq', '#h': 'history', '#lo': 'leaseOwner', '#lt': 'leaseToken', '#le': 'leaseExpiresAtMs', '#wi': work, '#wa': 'attemptId', '#ws': 'status', '#wr': 'result' },
            ExpressionAttributeValues: {
              ':one': 1,
              ':two': 2,
              ':me': owner,
              ':now': Date.now(),
              ':aid': 'a1',
              ':ok': 'AUTHORISATION_SUCCESS',
              ':h': [...charge.history, { status: 'AUTHORISATION_SUCCESS', at }],
              ':done': 'COMPLETED',
              ':r': { status: 'AUTHORISATION_SUCCESS' },
              ':zero': 0,
            },
          },
        },
        event(1, 'PAYMENT_CREATED'),
        event(2, 'AUTHORISATION_SUCCEEDED'),
      ],
    }),
  );
}

/** The minimum loop: receive, two writes, no-op processor, delete. Resolves when `n` are done. */
async function minimumLoop(b: BenchStack, url: string, n: number): Promise<{ ms: number; calls: Map<string, number> }> {
  const clients = createAwsClients(
    { resourcePrefix: b.names.prefix, region: b.stack.region, sqsEndpoint: b.stack.sqsEndpoint, dynamodbEndpoint: b.stack.dynamodbEndpoint },
    { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 },
  );
  const calls = new Map<string, number>();
  const count = (client: { middlewareStack: { add: (...a: never[]) => void } }) =>
    (client.middlewareStack.add as (mw: unknown, o: unknown) => void)(
      (next: (a: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
        calls.set(String(context.commandName), (calls.get(String(context.commandName)) ?? 0) + 1);
        return next(args);
      },
      { step: 'initialize', name: 'countCalls' },
    );
  count(clients.sqs as never);
  count(clients.dynamodb as never);
  let done = 0;
  const owner = `minimum-${process.pid}`;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.ceil(CONCURRENCY / 10) }, async () => {
      while (done < n) {
        const r = await clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
        const msgs = r.Messages ?? [];
        if (msgs.length === 0) continue;
        await Promise.all(
          msgs.map((m) => {
            const body = JSON.parse(m.Body!) as { chargeId: string; authRequestId: string };
            return twoWrites(clients.doc, b, owner, body);
          }),
        );
        await clients.sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: msgs.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }));
        done += msgs.length;
      }
    }),
  );
  const ms = performance.now() - t0;
  clients.destroy();
  return { ms, calls };
}

/** The real auth and capture handlers in process, over a client that reports consumed capacity. */
async function writeUnits(b: BenchStack, n: number) {
  const clients = createAwsClients(
    { resourcePrefix: b.names.prefix, region: b.stack.region, sqsEndpoint: b.stack.sqsEndpoint, dynamodbEndpoint: b.stack.dynamodbEndpoint },
    { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 },
  );
  const tally = { calls: new Map<string, number>(), units: 0, reads: 0 };
  clients.doc.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      input.ReturnConsumedCapacity = 'TOTAL';
      const name = String(context.commandName);
      tally.calls.set(name, (tally.calls.get(name) ?? 0) + 1);
      const out = await next(args);
      const consumed = (out.output as { ConsumedCapacity?: unknown }).ConsumedCapacity;
      for (const c of Array.isArray(consumed) ? consumed : consumed ? [consumed] : []) {
        const cap = c as { CapacityUnits?: number };
        if (name.startsWith('Get') || name.startsWith('Query')) tally.reads += cap.CapacityUnits ?? 0;
        else tally.units += cap.CapacityUnits ?? 0;
      }
      return out;
    },
    { step: 'initialize', name: 'consumedCapacity' },
  );
  const doc = clients.doc;
  const rows = createDynamoRowWorkStore({ doc, names: b.names });
  const keeper = createLeaseKeeper({ store: routeLeases(createDynamoLeaseStore({ doc, tableName: b.names.table('leases') }), rows), leaseMs: 30_000, renewMs: 10_000 });
  const once = createOnce({
    keeper,
    rows,
    idempotency: createDynamoIdempotencyStore({ doc, tableName: b.names.table('idempotency') }),
    outcomes: createDynamoOutcomeStore({ doc, names: b.names }),
    ownerId: `wru-${process.pid}`,
    attemptDeadlineMs: 30_000,
  });
  const connector: ProcessorConnector = {
    name: 'sandbox',
    authorise: async (r) => ({ kind: 'approved', processorRef: `ref-${r.chargeId}`, amount: r.amount, currency: r.currency }),
    capture: async (r) => ({ kind: 'captured', processorRef: r.processorRef }),
    void: async () => ({ kind: 'voided' }),
    lookup: async () => ({ kind: 'not_found' }),
    refund: async (r) => ({ kind: 'refunded', refundRef: `re-${r.refundId}` }),
    lookupRefund: async () => ({ kind: 'not_found' }),
  };
  const registry: ProcessorRegistry = { connectors: new Map(), get: () => connector, has: () => true, close: async () => undefined };
  const charges = createChargeRepository(doc, b.names.table('charges'));
  const auth = createAuthHandler({
    once,
    charges,
    registry,
    tokens: {
      decrypt: async () => new SensitiveCard({ number: '4242424242424242', exp_month: 12, exp_year: 2030, cvc: '123', cardholder_name: 'Bench' }),
      probe: async () => undefined,
      close: async () => undefined,
    },
    maxAttempts: 8,
    live: false,
    clock: manualClock(Date.now()).now,
  });
  const capture = createCaptureHandler({ once, charges, registry, settings: { maxRetries: 10, retryDelaySec: 1 } });
  const ctx = (): HandlerContext => ({ messageId: randomUUID(), groupId: 'g', receiveCount: 1, signal: new AbortController().signal, log: silentLogger(), setAttempts: () => undefined });
  const measure = async (what: string, run: (i: number) => Promise<unknown>) => {
    tally.calls.clear();
    tally.units = 0;
    tally.reads = 0;
    for (let i = 0; i < n; i++) await run(i);
    const perMsg = [...tally.calls].map(([k, v]) => `${k.replace('Command', '')} ${fmt(v / n, 2)}`).join(', ');
    return { what, calls: [...tally.calls.values()].reduce((a, c) => a + c, 0) / n, byCommand: perMsg, wru: tally.units / n, rru: tally.reads / n };
  };
  const ids = Array.from({ length: n }, (_, i) => `wru-${Date.now()}-${i}`);
  const authRow = await measure('auth (new charge, approved)', (i) => auth(parseAuthorisationRequested(JSON.stringify(authBody(ids[i]!).body)), ctx()));
  const captureRow = await measure('capture (authorised charge, captured)', (i) =>
    capture(parseCaptureRequested(JSON.stringify({ type: 'CaptureRequested', captureRequestId: randomUUID(), chargeId: ids[i], requestedAt: new Date().toISOString() })), ctx()),
  );
  await keeper.releaseAll();
  clients.destroy();
  return [authRow, captureRow];
}

async function main() {
  const b = await startBenchStack('minbench-');
  const tokens = await startTokenServiceSandbox();
  const rounds: { name: string; perSec: number; calls: string; cpuMs: number }[] = [];
  try {
    const url = b.queueUrls[b.names.queue('auth-requests')]!;
    const env = {
      ...b.env,
      PAYFLEET_CONCURRENCY: String(CONCURRENCY),
      PAYFLEET_WAIT_TIME_SEC: '1',
      PAYFLEET_SHUTDOWN_GRACE_MS: '5000',
      PAYFLEET_FORCE_EXIT_MS: '10000',
      PAYMENT_TOKEN_SERVICE_URL: tokens.url,
      PAYMENT_TOKEN_SERVICE_API_KEY: tokens.apiKey,
    };
    for (let round = 0; round < ROUNDS; round++) {
      await send(b.clients.sqs, url, Array.from({ length: N }, (_, i) => authBody(`min-r${round}-${i}`)));
      const loop = await minimumLoop(b, url, N);
      const perMsg = [...loop.calls].map(([k, v]) => `${k.replace('Command', '')} ${fmt(v / N, 2)}`).join(', ');
      rounds.push({ name: `minimum loop, round ${round + 1}`, perSec: (N / loop.ms) * 1000, calls: perMsg, cpuMs: Number.NaN });

      await send(b.clients.sqs, url, Array.from({ length: N }, (_, i) => authBody(`auth-r${round}-${i}`)));
      const w = await startWorker('auth', env);
      const before = await scrape(w.port);
      const t0 = performance.now();
      await until(async () => sum(await scrape(w.port), 'payfleet_messages_succeeded_total') >= N, 600_000, 'auth drain');
      const ms = performance.now() - t0;
      const after = await scrape(w.port);
      const byCommand = [...after]
        .filter(([k]) => k.startsWith('payfleet_aws_calls_total{'))
        .map(([k, v]) => [/command="([^"]+)"/.exec(k)?.[1] ?? k, (v - (before.get(k) ?? 0)) / N] as const)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${fmt(v, 2)}`)
        .join(', ');
      const cpu = sum(after, 'payfleet_process_cpu_seconds_total') - sum(before, 'payfleet_process_cpu_seconds_total');
      rounds.push({ name: `payfleet auth worker (1 process), round ${round + 1}`, perSec: (N / ms) * 1000, calls: byCommand, cpuMs: (cpu * 1000) / N });
      await w.stop();
    }
    const units = await writeUnits(b, WRU_SAMPLE);
    console.log(`\n${N} messages per round, concurrency ${CONCURRENCY}, node ${process.version}, ${new Date().toISOString()}\n`);
    console.log('| round | msg/s | AWS calls per message, by command | worker CPU ms/msg |');
    console.log('|---|---|---|---|');
    for (const r of rounds) console.log(`| ${r.name} | ${fmt(r.perSec)} | ${r.calls} | ${fmt(r.cpuMs, 2)} |`);
    const loops = rounds.filter((r) => r.name.startsWith('minimum')).map((r) => r.perSec);
    const workers = rounds.filter((r) => r.name.startsWith('payfleet')).map((r) => r.perSec);
    const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
    console.log(`\nauth worker / minimum loop: ${fmt(mean(workers) / mean(loops), 2)} (means over ${ROUNDS} alternating rounds)\n`);
    console.log(`| handler, in process (${WRU_SAMPLE} charges) | DynamoDB calls/msg | by command | WRU/msg | RRU/msg |`);
    console.log('|---|---|---|---|---|');
    for (const u of units) console.log(`| ${u.what} | ${fmt(u.calls, 2)} | ${u.byCommand} | ${fmt(u.wru, 1)} | ${fmt(u.rru, 1)} |`);
  } finally {
    await tokens.close();
    await b.close();
  }
}

await main();
