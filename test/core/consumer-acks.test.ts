/**
 * How the consumer acknowledges: deletes go out once per receive, when every message of that
 * receive has settled, not a few milliseconds after each message (shared/core/consumer.ts,
 * `decide`). On a fake SQS client that answers one receive of 10 and counts every call, so the
 * count of DeleteMessageBatch calls is exact. Handlers are released one at a time with a pause
 * between them longer than any short linger (a timer armed before the pause fires before it
 * ends): a consumer that flushed on a short timer would send one call per message here.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { FifoConsumer, type FifoConsumerOptions } from '../../shared/core/consumer.js';
import { DeleteBatcher } from '../../shared/core/sqs-batcher.js';
import { RetryableError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log/logger.js';
import { eventually, sleep } from '../support/sqs.js';

/** Answers the first receive with `messages`, later ones empty (after a short long-poll); counts the rest. */
class FakeSqs {
  readonly deleteBatches: string[][] = [];
  readonly visibility: { receiptHandle: string; timeoutSec: number }[] = [];
  receives = 0;
  private inbox: Message[];

  constructor(messages: Message[]) {
    this.inbox = [...messages];
  }

  async send(command: unknown): Promise<unknown> {
    if (command instanceof ReceiveMessageCommand) {
      this.receives++;
      const batch = this.inbox.splice(0, command.input.MaxNumberOfMessages ?? 1);
      if (batch.length === 0) await sleep(20);
      return { Messages: batch };
    }
    if (command instanceof DeleteMessageBatchCommand) {
      this.deleteBatches.push((command.input.Entries ?? []).map((e) => e.ReceiptHandle ?? ''));
      return { Successful: (command.input.Entries ?? []).map((e) => ({ Id: e.Id })), Failed: [] };
    }
    if (command instanceof ChangeMessageVisibilityCommand) {
      this.visibility.push({ receiptHandle: command.input.ReceiptHandle ?? '', timeoutSec: command.input.VisibilityTimeout ?? -1 });
      return {};
    }
    if (command instanceof ChangeMessageVisibilityBatchCommand) return { Successful: [], Failed: [] };
    throw new Error(`fake SQS: unexpected ${(command as object).constructor.name}`);
  }

  get deleted(): string[] {
    return this.deleteBatches.flat();
  }
}

/** Ten messages in ten groups (each its own lane, all running at once). */
const tenMessages = (): Message[] =>
  Array.from({ length: 10 }, (_, i) => ({
    MessageId: `m${i}`,
    ReceiptHandle: `rh${i}`,
    Body: String(i),
    Attributes: { MessageGroupId: `g${i}`, ApproximateReceiveCount: '1' },
  }));

/** A handler per message that finishes only when the test releases it. */
function gates(n: number) {
  const release: Array<() => void> = [];
  const waits = Array.from({ length: n }, (_, i) => new Promise<void>((r) => (release[i] = r)));
  let started = 0;
  return {
    release,
    get started() {
      return started;
    },
    handle: async (i: number) => {
      started++;
      await waits[i];
    },
  };
}

function consumer(sqs: FakeSqs, handle: FifoConsumerOptions<number>['handle'], extra: Partial<FifoConsumerOptions<number>> = {}) {
  return new FifoConsumer<number>({
    sqs: sqs as unknown as SQSClient,
    queueUrl: 'https://sqs.fake/q.fifo',
    dlqUrl: 'https://sqs.fake/dlq.fifo',
    queueName: 'q.fifo',
    worker: 'test',
    parse: (body) => Number(body),
    handle,
    concurrency: 10,
    waitTimeSec: 1,
    visibilityTimeoutSec: 60,
    logger: silentLogger(),
    ...extra,
  });
}

describe('FifoConsumer acknowledgements', () => {
  it('a receive of 10 whose messages settle one at a time ends in one DeleteMessageBatch of all 10', async () => {
    const sqs = new FakeSqs(tenMessages());
    const g = gates(10);
    // The fallback linger is far longer than the test: only the receive settling can flush.
    const c = consumer(sqs, (i) => g.handle(i), { ackLingerMs: 600_000 });
    c.start();
    await eventually(() => g.started === 10, 30_000, 'all 10 handlers started');
    for (let i = 0; i < 10; i++) {
      g.release[i]!();
      // Longer than a short linger: a timer armed by this ack would fire during the pause.
      await sleep(25);
      if (i < 9) expect(sqs.deleteBatches).toEqual([]);
    }
    await eventually(() => sqs.deleteBatches.length > 0, 30_000, 'the delete');
    await c.close(10_000);
    expect(sqs.deleteBatches).toHaveLength(1);
    expect([...sqs.deleteBatches[0]!].sort()).toEqual(tenMessages().map((m) => m.ReceiptHandle).sort());
    expect(sqs.receives).toBeGreaterThanOrEqual(1);
  });

  it('a message handed back counts as settled: 9 acknowledged + 1 deferred are one DeleteMessageBatch of 9', async () => {
    const sqs = new FakeSqs(tenMessages());
    const g = gates(10);
    const c = consumer(
      sqs,
      async (i) => {
        await g.handle(i);
        return i === 4 ? { action: 'defer' as const, delaySec: 7 } : undefined;
      },
      { ackLingerMs: 600_000 },
    );
    c.start();
    await eventually(() => g.started === 10, 30_000, 'all 10 handlers started');
    for (let i = 0; i < 10; i++) {
      g.release[i]!();
      await sleep(25);
    }
    await eventually(() => sqs.deleteBatches.length > 0, 30_000, 'the delete');
    await c.close(10_000);
    expect(sqs.deleteBatches).toHaveLength(1);
    expect(sqs.deleteBatches[0]).toHaveLength(9);
    expect(sqs.deleteBatches[0]).not.toContain('rh4');
    expect(sqs.visibility).toEqual([{ receiptHandle: 'rh4', timeoutSec: 7 }]);
  });

  it('a receive-mate still in work holds the others only for the fallback linger, never until it settles', async () => {
    const sqs = new FakeSqs(tenMessages());
    const g = gates(10);
    const c = consumer(sqs, (i) => g.handle(i), { ackLingerMs: 50 });
    c.start();
    await eventually(() => g.started === 10, 30_000, 'all 10 handlers started');
    for (let i = 0; i < 9; i++) g.release[i]!();
    // Message 9 is still in its handler (never released yet), and the other nine are deleted.
    await eventually(() => sqs.deleted.length === 9, 30_000, 'the nine deletes while m9 is in work');
    expect(sqs.deleted).not.toContain('rh9');
    g.release[9]!();
    await eventually(() => sqs.deleted.length === 10, 30_000, 'the last delete');
    await c.close(10_000);
    expect(sqs.deleted.sort()).toEqual(tenMessages().map((m) => m.ReceiptHandle!).sort());
  });

  it('on close, a queued acknowledgement is sent, and a message in work past the grace is handed back, not deleted', async () => {
    const sqs = new FakeSqs(tenMessages());
    const g = gates(10);
    const c = consumer(
      sqs,
      async (i, ctx) => {
        if (i === 9) {
          // Never released: ends when shutdown aborts it.
          void g.handle(i);
          await new Promise<void>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new RetryableError('TIMEOUT', 'aborted by shutdown')), { once: true }));
        }
        await g.handle(i);
      },
      { ackLingerMs: 600_000 },
    );
    c.start();
    await eventually(() => g.started === 10, 30_000, 'all 10 handlers started');
    for (let i = 0; i < 9; i++) g.release[i]!();
    await sleep(25);
    expect(sqs.deleteBatches).toEqual([]);
    await c.close(100);
    expect(sqs.deleted.sort()).toEqual(tenMessages().slice(0, 9).map((m) => m.ReceiptHandle!).sort());
    expect(sqs.visibility).toEqual([{ receiptHandle: 'rh9', timeoutSec: 0 }]);
  });
});

describe('DeleteBatcher', () => {
  it('sends a group when its owner completes it, never mixed with another group; the linger sends a group whole', async () => {
    const sqs = new FakeSqs([]);
    const b = new DeleteBatcher(sqs as unknown as SQSClient, 'https://sqs.fake/q.fifo', 600_000);
    const a = {};
    const other = {};
    const done = [
      ...['a1', 'a2', 'a3'].map((r) => b.add({ receiptHandle: r }, a)),
      ...['b1', 'b2'].map((r) => b.add({ receiptHandle: r }, other)),
    ];
    b.flushPending(a);
    await Promise.all(done.slice(0, 3));
    expect(sqs.deleteBatches).toEqual([['a1', 'a2', 'a3']]);
    b.flushPending(other);
    await Promise.all(done);
    expect(sqs.deleteBatches).toEqual([['a1', 'a2', 'a3'], ['b1', 'b2']]);

    // The linger: a group whose oldest entry waited `lingerMs` goes out whole.
    const short = new DeleteBatcher(sqs as unknown as SQSClient, 'https://sqs.fake/q.fifo', 20);
    await Promise.all([short.add({ receiptHandle: 'c1' }, a), short.add({ receiptHandle: 'c2' }, a)]);
    expect(sqs.deleteBatches.at(-1)).toEqual(['c1', 'c2']);
  });
});
