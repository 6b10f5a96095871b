/**
 * What DynamoDB Local itself spends per call: the CPU of its JVM for an authorisation's two writes,
 * and for variants of write 2, so the embedded stack's throughput can be read for what it is.
 *
 *   npx tsx bench/dynamodb-local-cost.ts                 # 1000 charges per variant, 16 in flight
 *   BENCH_CHARGES=3000 npx tsx bench/dynamodb-local-cost.ts
 *
 * On the embedded stack the workers, DynamoDB Local and fauxqs share the same cores, so throughput
 * is roughly cores / (CPU per message of all of them). This bench measures the JVM's share for:
 *   - write 1: the UpdateItem that creates the charge at AUTHORISATION_READY and takes the row lease;
 *   - write 2: the TransactWriteItems of the outcome (charge update + PAYMENT_CREATED +
 *     AUTHORISATION_SUCCEEDED), as the auth worker sends it (ClientRequestToken, events on the
 *     `pending` index);
 *   - write 2 without ClientRequestToken, without the `pending` index attributes, and as three
 *     plain calls (UpdateItem + 2 PutItem) instead of a transaction;
 *   - a consistent GetItem of the charge (what the engine before issue 16 also made per message).
 * Every variant runs on fresh charges, after an unmeasured warm-up of each, in the same JVM.
 */
import { randomUUID } from 'node:crypto';
import { GetCommand, PutCommand, TransactWriteCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { fmt, procCpuSeconds, dynamoDbLocalPid, startBenchStack, type BenchStack } from './harness.js';
import { chargeEventPut } from './support.js';

const N = Number(process.env.BENCH_CHARGES ?? 1000);
const IN_FLIGHT = Number(process.env.BENCH_CONCURRENCY ?? 16);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 300);

type Op = (doc: DynamoDBDocumentClient, chargeId: string) => Promise<unknown>;

function ops(b: BenchStack) {
  const charges = b.names.table('charges');
  const events = b.names.table('events');
  const at = new Date().toISOString();
  const write1 = (doc: DynamoDBDocumentClient, chargeId: string) =>
    doc.send(
      new UpdateCommand({
        TableName: charges,
        Key: { chargeId },
        ConditionExpression: '(attribute_not_exists(#lo) OR #le < :now) AND attribute_not_exists(#wi)',
        UpdateExpression:
          'SET #lo = :me, #le = :exp, #wi = :item, #v = if_not_exists(#v, :one), #st = if_not_exists(#st, :ready), #amt = :amt, #h = :h ADD #lt :one',
        ExpressionAttributeNames: { '#lo': 'leaseOwner', '#le': 'leaseExpiresAtMs', '#lt': 'leaseToken', '#wi': 'work:auth#r1', '#v': 'version', '#st': 'status', '#amt': 'amount', '#h': 'history' },
        ExpressionAttributeValues: {
          ':me': 'bench',
          ':exp': Date.now() + 30_000,
          ':now': Date.now(),
          ':one': 1,
          ':ready': 'AUTHORISATION_READY',
          ':amt': 1000,
          ':h': [{ status: 'CREATED', at }, { status: 'AUTHORISATION_READY', at }],
          ':item': { status: 'IN_PROGRESS', attemptId: 'a1', attempts: 1, startedAtMs: Date.now() },
        },
        ReturnValues: 'ALL_NEW',
      }),
    );
  const chargeUpdate = (chargeId: string) => ({
    TableName: charges,
    Key: { chargeId },
    ConditionExpression: '#v = :one AND #lo = :me AND #lt = :one AND #le > :now AND #wi.#wa = :aid',
    UpdateExpression: 'SET #v = :two, #st = :ok, #seq = :two, #cq = :cq, #cd = :cd, #wi.#ws = :done, #le = :zero REMOVE #lo',
    ExpressionAttributeNames: {
      '#v': 'version',
      '#st': 'status',
      '#seq': 'eventSeq',
      '#cq': 'captureQueue',
      '#cd': 'captureDueAt',
      '#lo': 'leaseOwner',
      '#lt': 'leaseToken',
      '#le': 'leaseExpiresAtMs',
      '#wi': 'work:auth#r1',
      '#wa': 'attemptId',
      '#ws': 'status',
    },
    ExpressionAttributeValues: { ':one': 1, ':two': 2, ':me': 'bench', ':now': Date.now(), ':aid': 'a1', ':ok': 'AUTHORISATION_SUCCESS', ':cq': 'capture#0', ':cd': at, ':done': 'COMPLETED', ':zero': 0 },
  });
  const event = (chargeId: string, sequence: number, eventType: string, pending: boolean) => chargeEventPut(events, chargeId, sequence, eventType, at, pending);
  const write2 = (opts: { token: boolean; pending: boolean }) => (doc: DynamoDBDocumentClient, chargeId: string) =>
    doc.send(
      new TransactWriteCommand({
        ...(opts.token ? { ClientRequestToken: randomUUID() } : {}),
        TransactItems: [
          { Update: chargeUpdate(chargeId) },
          { Put: event(chargeId, 1, 'PAYMENT_CREATED', opts.pending) },
          { Put: event(chargeId, 2, 'AUTHORISATION_SUCCEEDED', opts.pending) },
        ],
      }),
    );
  const plain = async (doc: DynamoDBDocumentClient, chargeId: string) => {
    await doc.send(new UpdateCommand(chargeUpdate(chargeId)));
    await doc.send(new PutCommand(event(chargeId, 1, 'PAYMENT_CREATED', true)));
    await doc.send(new PutCommand(event(chargeId, 2, 'AUTHORISATION_SUCCEEDED', true)));
  };
  const read: Op = (doc, chargeId) => doc.send(new GetCommand({ TableName: charges, Key: { chargeId }, ConsistentRead: true }));
  return { write1, write2, plain, read };
}

/** Run `op` over `ids`, IN_FLIGHT at a time. */
async function run(doc: DynamoDBDocumentClient, ids: string[], op: Op): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < ids.length) await op(doc, ids[next++]!);
    }),
  );
}

async function main() {
  const b = await startBenchStack('ddbcost-');
  const pid = dynamoDbLocalPid(b.stack.dynamodbEndpoint);
  if (pid === undefined) throw new Error('DynamoDB Local JVM not found in /proc');
  const doc = b.clients.doc;
  const o = ops(b);
  // Each variant: its own charges, created by write 1 first (write 1 is measured on its own).
  const variants: Array<{ name: string; op: Op; calls: number }> = [
    { name: 'write 2: TransactWriteItems (charge + 2 events), ClientRequestToken, pending index', op: o.write2({ token: true, pending: true }), calls: 1 },
    { name: 'write 2 without ClientRequestToken', op: o.write2({ token: false, pending: true }), calls: 1 },
    { name: 'write 2 without the pending index attributes', op: o.write2({ token: true, pending: false }), calls: 1 },
    { name: 'write 2 as three plain calls (UpdateItem + 2 PutItem)', op: o.plain, calls: 3 },
    { name: 'GetItem of the charge, consistent', op: o.read, calls: 1 },
  ];
  const rows: Array<{ name: string; cpuMs: number; perSec: number; calls: number }> = [];
  const measure = async (name: string, ids: string[], op: Op, calls: number) => {
    const cpu0 = procCpuSeconds(pid);
    const t0 = performance.now();
    await run(doc, ids, op);
    const ms = performance.now() - t0;
    rows.push({ name, cpuMs: ((procCpuSeconds(pid) - cpu0) * 1000) / ids.length, perSec: (ids.length / ms) * 1000, calls });
  };
  try {
    // Warm-up: the JVM compiles its hot paths over the first calls of each kind.
    const warm = Array.from({ length: WARMUP }, (_, i) => `warm-${i}`);
    await run(doc, warm, o.write1);
    await run(doc, warm, o.write2({ token: true, pending: true }));
    await run(doc, warm, o.read);
    for (const [round, v] of variants.entries()) {
      const ids = Array.from({ length: N }, (_, i) => `v${round}-${i}`);
      if (round === 0) await measure('write 1: UpdateItem (create at READY, take the row lease), ALL_NEW', ids, o.write1, 1);
      else await run(doc, ids, o.write1);
      await measure(v.name, ids, v.op, v.calls);
    }
  } finally {
    await b.close();
  }
  console.log(`\nDynamoDB Local JVM CPU per operation, ${N} charges per variant, ${IN_FLIGHT} in flight, node ${process.version}, ${new Date().toISOString()}\n`);
  console.log('| operation | calls | JVM CPU ms per operation | operations/s |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} | ${r.calls} | ${fmt(r.cpuMs, 2)} | ${fmt(r.perSec)} |`);
}

await main();
