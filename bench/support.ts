import { randomUUID } from 'node:crypto';
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';

export interface RoundResult {
  readonly name: string;
  readonly messages: number;
  readonly ms: number;
  readonly perSec: number;
  readonly callsPerMessage: number;
  readonly cpuMsPerMessage: number;
}

/** Send `n` messages spread round-robin over `groups` groups, 10 per call, 8 calls in flight. */
export async function preload(sqs: SQSClient, queueUrl: string, n: number, groups: number, tag: string): Promise<void> {
  // Deduplication ids allow no spaces: keep only safe characters of the tag.
  const stamp = `${tag.replace(/[^A-Za-z0-9-]/g, '')}-${Date.now()}`;
  const batches: { Id: string; MessageBody: string; MessageGroupId: string; MessageDeduplicationId: string }[][] = [];
  for (let i = 0; i < n; i += 10) {
    batches.push(
      Array.from({ length: Math.min(10, n - i) }, (_, j) => ({
        Id: String(j),
        MessageBody: JSON.stringify({ i: i + j }),
        MessageGroupId: `g${(i + j) % groups}`,
        MessageDeduplicationId: `${stamp}-${i + j}`,
      })),
    );
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < batches.length) {
        const b = batches[next++]!;
        const out = await sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: b }));
        if (out.Failed?.length) throw new Error(`preload failed: ${JSON.stringify(out.Failed)}`);
      }
    }),
  );
}

const counters = new WeakMap<object, { n: number }>();

/** Count every request `client` sends (an SDK middleware, installed once per client). */
export function countCalls(client: SQSClient | { middlewareStack: SQSClient['middlewareStack'] }): { count(): number; reset(): void } {
  let state = counters.get(client);
  if (!state) {
    const s = { n: 0 };
    state = s;
    counters.set(client, s);
    client.middlewareStack.add(
      (next) => async (args) => {
        s.n++;
        return next(args);
      },
      { step: 'initialize', name: 'payfleetCallCounter' },
    );
  }
  const st = state;
  return {
    count: () => st.n,
    reset: () => {
      st.n = 0;
    },
  };
}

export async function waitUntil(predicate: () => boolean, timeoutMs: number, progress?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let nextReport = Date.now() + 10_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`benchmark round timed out${progress ? `: ${progress()}` : ''}`);
    if (progress && Date.now() > nextReport) {
      process.stderr.write(`  ... ${progress()}\n`);
      nextReport = Date.now() + 10_000;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The Put of one charge event as the auth worker writes it in write 2 (on the `pending` index
 * unless `pending` is false), for the benches that make the engine's writes by hand.
 */
export function chargeEventPut(table: string, chargeId: string, sequence: number, eventType: string, at: string, pending = true) {
  return {
    TableName: table,
    Item: {
      resourceId: chargeId,
      sequence,
      eventId: randomUUID(),
      resourceType: 'payment',
      eventType,
      timestamp: at,
      gatewayAccountId: 'gw-bench',
      live: false,
      details: { processor_ref: 'ref', amount: 1000 },
      ...(pending ? { pendingShard: 'ledger-shard#000', pendingKey: `${at}#${chargeId}#${sequence}` } : {}),
    },
    ConditionExpression: 'attribute_not_exists(resourceId)',
  };
}
