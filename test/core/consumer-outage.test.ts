import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Breakers, runInAttemptScope, type CircuitBreaker } from '../../shared/core/breaker.js';
import type { FifoConsumerOptions, HandlerContext } from '../../shared/core/consumer.js';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { RetryableError } from '../../shared/errors.js';
import { createMetrics } from '../../shared/ops/metrics.js';
import { createResilienceMetrics } from '../../shared/ops/resilience-metrics.js';
import { freshQueues, testConsumer, testMessage, type TestBody, type TestQueues } from '../support/consumer.js';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { drain, eventually, sendAll, sleep } from '../support/sqs.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await setupTestStack('outage');
});
afterAll(() => stack.close());

const msg = testMessage;

/** A far side the handler calls through `breaker`, switched up and down by the test. */
function dependency(breaker: CircuitBreaker) {
  const d = {
    down: true,
    calls: 0,
    call() {
      const admission = breaker.admit();
      d.calls++;
      if (d.down) {
        breaker.failed(admission);
        throw new RetryableError('FAKE_UNAVAILABLE', 'dependency answered 503');
      }
      breaker.succeeded(admission);
    },
  };
  return d;
}

function consumerFor(q: TestQueues, handle: (m: TestBody, ctx: HandlerContext) => Promise<void>, extra: Partial<FifoConsumerOptions<TestBody>>) {
  return testConsumer(q, handle, { backoff: { baseMs: 200, maxMs: 400 }, ...extra });
}

async function visibleAndInFlight(q: TestQueues): Promise<[number, number]> {
  const a = await q.s.clients.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: q.queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return [Number(a.Attributes?.ApproximateNumberOfMessages), Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible)];
}

describe('FifoConsumer (outages)', () => {
  it('parks messages that hit a down dependency instead of spending their attempts: with maxAttempts 1, none is retried or dead-lettered, each is received once, group order holds', async () => {
    const q = await freshQueues('park');
    const breakers = new Breakers({ failureThreshold: 3, openMs: 50, maxOpenMs: 200 });
    const proc = dependency(breakers.get('processor'));
    // The outage began before these messages arrived (other traffic tripped the breaker).
    for (let i = 0; i < 3; i++) {
      try {
        proc.call();
      } catch {
        /* tripping it */
      }
    }
    expect(breakers.get('processor').state).toBe('open');

    const groups = Array.from({ length: 12 }, (_, i) => `g${i}`);
    await sendAll(q.s.clients.sqs, q.queueUrl, [...groups.map((g) => msg(g, 1)), ...groups.map((g) => msg(g, 2))]);
    const done: string[] = [];
    const receives = new Map<string, number>();
    let maxParked = 0;
    const resilience = createResilienceMetrics(createMetrics('test', { defaultMetrics: false }).registry);
    const consumer = consumerFor(
      q,
      async (m, ctx) => {
        receives.set(`${m.group}-${m.seq}`, ctx.receiveCount);
        proc.call();
        done.push(`${m.group}-${m.seq}`);
      },
      { maxAttempts: 1, breakers, resilience },
    );
    consumer.start();
    // Stay down until every first message is parked (more than one receive's worth, past the
    // concurrency of 4: parked messages give their slots up), then come back.
    await eventually(
      () => {
        maxParked = Math.max(maxParked, consumer.parkedCount);
        return consumer.parkedCount === groups.length;
      },
      30_000,
      'all 12 first messages parked',
    );
    proc.down = false;
    await eventually(() => done.length === groups.length * 2, 30_000, 'all messages done after recovery');
    await consumer.close(3000);

    expect(maxParked).toBe(12);
    expect(await drain(q.s.clients.sqs, q.dlqUrl)).toHaveLength(0);
    // Never handed back: every message was handled on its first receive.
    expect([...receives.values()].every((n) => n === 1)).toBe(true);
    for (const g of groups) expect(done.indexOf(`${g}-1`)).toBeLessThan(done.indexOf(`${g}-2`));
    expect((await resilience.messagesParked.get()).values[0]?.value).toBe(0);
    breakers.dispose();
    q.s.close();
  });

  it('pauses receiving while a gating dependency is down (messages stay visible in SQS), resumes on its own when its probe succeeds', async () => {
    const q = await freshQueues('gate');
    const breakers = new Breakers({ failureThreshold: 1, openMs: 50, maxOpenMs: 200 });
    const db = dependency(breakers.get('db'));
    breakers.get('db').setProbe(async () => db.call());
    try {
      db.call();
    } catch {
      /* the outage */
    }
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('a', 1), msg('b', 1), msg('c', 1)]);
    const handled: string[] = [];
    const resilience = createResilienceMetrics(createMetrics('test', { defaultMetrics: false }).registry);
    const consumer = consumerFor(
      q,
      async (m) => {
        db.call();
        handled.push(m.group);
      },
      { maxAttempts: 1, breakers, gating: ['db'], resilience },
    );
    consumer.start();
    await eventually(() => consumer.pausedFor === 'db', 10_000, 'consumer paused');
    // Several probe periods go by: the probes fail, the consumer stays paused, nothing is received.
    const probesBefore = db.calls;
    await eventually(() => db.calls >= probesBefore + 3, 10_000, 'three failed probes');
    expect(handled).toEqual([]);
    expect(await visibleAndInFlight(q)).toEqual([3, 0]);
    expect((await resilience.consumerPaused.get()).values[0]?.value).toBe(1);

    db.down = false;
    await eventually(() => handled.length === 3, 20_000, 'messages handled after the probe closed the breaker');
    expect(consumer.pausedFor).toBeUndefined();
    await consumer.close(3000);
    expect(await drain(q.s.clients.sqs, q.dlqUrl)).toHaveLength(0);
    breakers.dispose();
    q.s.close();
  });

  it('a message that fails on its own while the dependency serves everyone else spends its attempts and is dead-lettered RETRIES_EXHAUSTED', async () => {
    const q = await freshQueues('poison');
    const breakers = new Breakers({ failureThreshold: 3, distinctKeys: 3, openMs: 50 });
    const b = breakers.get('processor');
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('poison', 1), msg('ok', 1), msg('ok', 2), msg('ok', 3)]);
    const handled: string[] = [];
    const consumer = consumerFor(
      q,
      async (m) => {
        const admission = b.admit();
        if (m.group === 'poison') {
          b.failed(admission);
          throw new RetryableError('PROCESSOR_ERROR', 'processor answered 500 for this charge');
        }
        b.succeeded(admission);
        handled.push(`${m.group}-${m.seq}`);
      },
      { maxAttempts: 4, breakers },
    );
    consumer.start();
    await eventually(async () => (await visibleAndInFlight(q)).every((n) => n === 0) && handled.length === 3, 30_000, 'queue empty');
    await consumer.close(3000);
    const dead = await drain(q.s.clients.sqs, q.dlqUrl);
    expect(dead.map((d) => d.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue)).toEqual(['RETRIES_EXHAUSTED']);
    expect(dead[0]!.MessageAttributes?.[DLQ_ATTRIBUTES.attempts]?.StringValue).toBe('4');
    expect(b.state).toBe('closed');
    breakers.dispose();
    q.s.close();
  });

  it('while a breaker recovers, a message failing on it is parked uncounted (after a pause), but at most 3 times a receive: alone, it then spends its attempts and is dead-lettered', async () => {
    const q = await freshQueues('recovering');
    const breakers = new Breakers({ failureThreshold: 3, distinctKeys: 3, openMs: 50 });
    const b = breakers.get('processor');
    for (const k of ['x', 'y', 'z']) {
      await runInAttemptScope({ key: k, failed: new Set() }, async () => b.failed(b.admit()));
    }
    await sleep(60);
    b.succeeded(b.admit()); // the trial passed: closed, recovering (3 successes to go)
    expect({ state: b.state, suspect: b.suspect }).toEqual({ state: 'closed', suspect: true });
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('poison', 1)]);
    let calls = 0;
    const consumer = consumerFor(
      q,
      async () => {
        calls++;
        b.failed(b.admit());
        throw new RetryableError('PROCESSOR_ERROR', 'processor answered 500 for this charge');
      },
      { maxAttempts: 2, breakers },
    );
    consumer.start();
    let dead: Awaited<ReturnType<typeof drain>> = [];
    await eventually(
      async () => {
        dead = await drain(q.s.clients.sqs, q.dlqUrl, { waitSec: 1 });
        return dead.length > 0;
      },
      30_000,
      'dead-lettered',
    );
    await consumer.close(3000);
    expect(dead.map((d) => d.MessageAttributes?.[DLQ_ATTRIBUTES.code]?.StringValue)).toEqual(['RETRIES_EXHAUSTED']);
    expect(dead[0]!.MessageAttributes?.[DLQ_ATTRIBUTES.attempts]?.StringValue).toBe('2');
    // Two counted attempts, each after three in-place re-runs that were not charged to it.
    expect(calls).toBe(8);
    breakers.dispose();
    q.s.close();
  });

  it('on close, parked messages are handed back at once (visibility 0), not held until their visibility runs out', async () => {
    const q = await freshQueues('parkclose');
    const breakers = new Breakers({ failureThreshold: 1, openMs: 60_000 });
    const proc = dependency(breakers.get('processor'));
    try {
      proc.call();
    } catch {
      /* the outage */
    }
    await sendAll(q.s.clients.sqs, q.queueUrl, [msg('p', 1), msg('q', 1)]);
    const consumer = consumerFor(q, async () => proc.call(), { maxAttempts: 1, breakers, visibilityTimeoutSec: 30, heartbeatSec: 10 });
    consumer.start();
    await eventually(() => consumer.parkedCount === 2, 10_000, 'both parked');
    await consumer.close(500);
    const back = await drain(q.s.clients.sqs, q.queueUrl, { waitSec: 1 });
    expect(back.map((m) => m.Attributes?.MessageGroupId).sort()).toEqual(['p', 'q']);
    expect(await drain(q.s.clients.sqs, q.dlqUrl)).toHaveLength(0);
    breakers.dispose();
    await sleep(0);
    q.s.close();
  });
});
