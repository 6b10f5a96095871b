import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { createLogger } from '../../shared/log/logger.js';
import { createMetrics } from '../../shared/ops/metrics.js';
import { freshQueues, testConsumer, testMessage } from '../support/consumer.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { drain, eventually, sendAll, sleep } from '../support/sqs.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await setupTestStack('consumer');
});
afterAll(() => stack.close());

const consumerFor = testConsumer;
const msg = testMessage;

describe('FifoConsumer', () => {
  it('keeps order within each of 64 groups at concurrency 32, while one slow group does not stall the others', async () => {
    const q = await freshQueues('order');
    const perGroup = 6;
    const groups = Array.from({ length: 64 }, (_, i) => `g${i}`);
    const messages = [];
    for (let seq = 0; seq < perGroup; seq++) for (const g of groups) messages.push(msg(g, seq));
    await sendAll(q.s.clients.sqs, q.queueUrl, messages);

    const seen = new Map<string, number[]>();
    const active = new Map<string, number>();
    let overlapInGroup = false;
    let maxConcurrent = 0;
    let running = 0;
    const finished: string[] = [];
    // g0 is the stalled group: its first message is released only once every other group has
    // finished all of its messages. If a stalled group could hold the others up, this deadlocks
    // and the test fails by timing out — progress is proven by who waited for whom, not by a clock.
    let releaseSlow!: () => void;
    const othersDone = new Promise<void>((r) => {
      releaseSlow = r;
    });
    // More than one receive's worth (10) of handlers run at once: the first message of every other
    // group waits until 11 handlers are running together. Were the consumer limited to one
    // receive's batch at a time, that would never happen and this would deadlock too.
    let releaseWide!: () => void;
    const wide = new Promise<void>((r) => {
      releaseWide = r;
    });
    const consumer = consumerFor(
      q,
      async (m) => {
        if ((active.get(m.group) ?? 0) > 0) overlapInGroup = true;
        active.set(m.group, 1);
        running++;
        maxConcurrent = Math.max(maxConcurrent, running);
        if (running > 10) releaseWide();
        if (m.group === 'g0' && m.seq === 0) await othersDone;
        else {
          if (m.seq === 0) await wide;
          await sleep(5);
        }
        running--;
        active.set(m.group, 0);
        seen.set(m.group, [...(seen.get(m.group) ?? []), m.seq]);
        if (seen.get(m.group)!.length === perGroup) {
          finished.push(m.group);
          if (finished.length === groups.length - 1 && !finished.includes('g0')) releaseSlow();
        }
      },
      { concurrency: 32, visibilityTimeoutSec: 30, heartbeatSec: 5 },
    );
    consumer.start();
    await eventually(() => finished.length === groups.length, 90_000, 'all groups to finish (a stalled group must not block the others)');
    await consumer.close(5000);

    for (const g of groups) expect(seen.get(g), `order of ${g}`).toEqual([0, 1, 2, 3, 4, 5]);
    expect(overlapInGroup).toBe(false);
    expect(maxConcurrent).toBeGreaterThan(10); // more than one receive's worth
    // The stalled group finished last: every other group got through while it was held.
    expect(finished.at(-1)).toBe('g0');
    q.s.close();
  });

  it('dead-letters a poison message at once with INVALID_MESSAGE, body byte for byte, and its group carries on', async () => {
    const q = await freshQueues('poison');
    const poison = '{"group":"p","seq": not json';
    await sendAll(q.s.clients.sqs, q.queueUrl, [
      { body: poison, groupId: 'p', dedupId: 'p-bad' },
      { body: JSON.stringify({ group: 'p', seq: 2 }), groupId: 'p', dedupId: 'p-2' },
      { body: JSON.stringify({ group: 'p', seq: 'three' }), groupId: 'p', dedupId: 'p-3' },
      { body: JSON.stringify({ group: 'p', seq: 4 }), groupId: 'p', dedupId: 'p-4' },
    ]);
    const handled: number[] = [];
    const consumer = consumerFor(q, async (m) => {
      handled.push(m.seq);
    });
    consumer.start();
    await eventually(() => handled.length === 2, 20_000, 'good messages');
    await consumer.close(3000);
    expect(handled).toEqual([2, 4]);
    const dead = await drain(q.s.clients.sqs, q.dlqUrl);
    expect(dead).toHaveLength(2);
    const first = dead.find((d) => d.Body === poison)!;
    expect(first.Body).toBe(poison);
    const attr = (name: string) => first.MessageAttributes?.[name]?.StringValue;
    expect(attr(DLQ_ATTRIBUTES.code)).toBe('INVALID_MESSAGE');
    expect(attr(DLQ_ATTRIBUTES.sourceQueue)).toBe(q.queueName);
    expect(attr(DLQ_ATTRIBUTES.worker)).toBe('test');
    expect(attr(DLQ_ATTRIBUTES.attempts)).toBe('1');
    expect(Date.parse(attr(DLQ_ATTRIBUTES.failedAt)!)).not.toBeNaN();
    expect(attr(DLQ_ATTRIBUTES.detail)).toBeTruthy();
    expect(await drain(q.s.clients.sqs, q.queueUrl)).toHaveLength(0);
    q.s.close();
  });

  it('backs off retryable failures with growing visibility delays, dead-letters RETRIES_EXHAUSTED, then the group continues', async () => {
    const q = await freshQueues('backoff');
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('b', 1), msg('b', 2)]);
    const attemptsAt: number[] = [];
    const handled: number[] = [];
    const metrics = createMetrics('test', { defaultMetrics: false });
    // The delays the consumer chose, from its own log lines (what it asked SQS for, not when SQS answered).
    const delaysSec: number[] = [];
    const logger = createLogger({
      worker: 'test',
      level: 'warn',
      destination: {
        write: (line: string) => {
          const l = JSON.parse(line) as { msg: string; delaySec?: number };
          if (l.msg === 'attempt failed; retrying after backoff') delaysSec.push(l.delaySec!);
        },
      },
    });
    const consumer = consumerFor(
      q,
      async (m, ctx) => {
        if (m.seq === 1) {
          attemptsAt.push(Date.now());
          ctx.setAttempts(attemptsAt.length);
          throw new RetryableError('PROCESSOR_UNAVAILABLE', 'processor 503');
        }
        handled.push(m.seq);
      },
      { maxAttempts: 4, backoff: { baseMs: 1000, maxMs: 8000 }, metrics, waitTimeSec: 1, logger },
    );
    consumer.start();
    await eventually(() => handled.length === 1, 40_000, 'second message after exhaustion');
    await consumer.close(3000);
    expect(attemptsAt).toHaveLength(4);
    const gaps = attemptsAt.slice(1).map((t, i) => t - attemptsAt[i]!);
    // Equal-jitter steps of 1 s, 2 s, 4 s windows, rounded up to whole seconds: 1, 1-2, 2-4 s.
    expect(delaysSec).toHaveLength(3);
    expect(delaysSec[0]).toBe(1);
    expect(delaysSec[1]).toBeGreaterThanOrEqual(1);
    expect(delaysSec[1]).toBeLessThanOrEqual(2);
    expect(delaysSec[2]).toBeGreaterThanOrEqual(2);
    expect(delaysSec[2]).toBeLessThanOrEqual(4);
    // And SQS kept each message hidden at least that long (a lower bound: a loaded machine only adds).
    expect(gaps[0]).toBeGreaterThanOrEqual(900);
    expect(gaps[2]).toBeGreaterThanOrEqual(1900);
    const dead = await drain(q.s.clients.sqs, q.dlqUrl);
    expect(dead).toHaveLength(1);
    expect(dead[0]!.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue).toBe('RETRIES_EXHAUSTED');
    expect(dead[0]!.MessageAttributes?.[DLQ_ATTRIBUTES.attempts]?.StringValue).toBe('4');
    expect(dead[0]!.MessageAttributes?.[DLQ_ATTRIBUTES.detail]?.StringValue).toContain('PROCESSOR_UNAVAILABLE');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/payfleet_messages_retried_total\{[^}]*code="PROCESSOR_UNAVAILABLE"[^}]*\} 3/);
    expect(text).toMatch(/payfleet_messages_dead_lettered_total\{[^}]*code="RETRIES_EXHAUSTED"[^}]*\} 1/);
    console.info(`[timings] retry delays s: ${delaysSec.join(', ')}; gaps ms: ${gaps.join(', ')}`);
    q.s.close();
  });

  it('dead-letters terminal errors with their code and does not retry them', async () => {
    const q = await freshQueues('terminal');
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('t', 1), msg('t', 2)]);
    let calls = 0;
    const handled: number[] = [];
    const consumer = consumerFor(q, async (m) => {
      if (m.seq === 1) {
        calls++;
        throw new TerminalError('TOKEN_EXPIRED', 'payment token expired');
      }
      handled.push(m.seq);
    });
    consumer.start();
    await eventually(() => handled.length === 1, 20_000);
    await consumer.close(3000);
    expect(calls).toBe(1);
    const dead = await drain(q.s.clients.sqs, q.dlqUrl);
    expect(dead.map((d) => d.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue)).toEqual(['TOKEN_EXPIRED']);
    q.s.close();
  });

  it('keeps a slow message invisible with the heartbeat, so it is not redelivered while in work', async () => {
    const q = await freshQueues('heartbeat');
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('h', 1)]);
    let calls = 0;
    let rivalCalls = 0;
    let slowStarted!: () => void;
    const inWork = new Promise<void>((r) => {
      slowStarted = r;
    });
    const consumer = consumerFor(
      q,
      async () => {
        calls++;
        slowStarted();
        await sleep(9000); // 1.5 x the 6 s visibility timeout
      },
      { visibilityTimeoutSec: 6, heartbeatSec: 2 },
    );
    const rival = consumerFor(q, async () => {
      rivalCalls++;
    });
    consumer.start();
    // The rival polls only once the slow consumer holds the message: it can get it only by a redelivery.
    await inWork;
    rival.start();
    await eventually(() => consumer.inFlight === 0 && calls >= 1, 30_000, 'slow message to finish');
    await Promise.all([consumer.close(3000), rival.close(3000)]);
    expect(calls).toBe(1);
    expect(rivalCalls).toBe(0);
    q.s.close();
  });

  it('on close, hands unfinished messages back at once (visibility 0) instead of stranding them', async () => {
    const q = await freshQueues('handback');
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('x', 1), msg('y', 1)]);
    const started: string[] = [];
    const consumer = consumerFor(
      q,
      async (m, ctx) => {
        started.push(m.group);
        // Work that honours the abort signal, as every real handler must.
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, 60_000);
          ctx.signal.addEventListener('abort', () => {
            clearTimeout(t);
            reject(new RetryableError('SHUTDOWN', 'aborted'));
          });
        });
      },
      { visibilityTimeoutSec: 30, heartbeatSec: 10 },
    );
    consumer.start();
    await eventually(() => started.length === 2, 10_000);
    await consumer.close(500);
    // Visible again right away, not after the 30 s visibility timeout.
    const back = await drain(q.s.clients.sqs, q.queueUrl, { waitSec: 1 });
    expect(back.map((m) => m.Attributes?.MessageGroupId).sort()).toEqual(['x', 'y']);
    q.s.close();
  });
});
