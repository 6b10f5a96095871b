/**
 * The consumer's receive gate (shared/core/receive-gate.ts, checked by shared/core/consumer.ts): a
 * worker's own reason not to receive (the payout worker: not ready, or no shard held). Every
 * ReceiveMessage the consumer sends is counted by a middleware on its SQS client, and the gate
 * records when a poller waits at it, so "nothing was received while paused" is proven by counts
 * taken while a poller is known to be waiting, never by a quiet interval.
 */
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { ReceiveGate } from '../../shared/core/receive-gate.js';
import { freshQueues, testConsumer, testMessage, type TestQueues } from '../support/consumer.js';
import { eventually, sendAll } from '../support/sqs.js';

/** ReceiveMessage calls sent through `sqs`: started, answered, failed (an aborted long poll fails). */
function countReceives(sqs: SQSClient) {
  const n = { started: 0, answered: 0, failed: 0 };
  sqs.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== 'ReceiveMessageCommand') return next(args);
      n.started++;
      try {
        const out = await next(args);
        n.answered++;
        return out;
      } catch (err) {
        n.failed++;
        throw err;
      }
    },
    { step: 'initialize', name: 'countReceives' },
  );
  return n;
}

/** A gate that tells when a poller first waits at it (it only waits while paused). */
class RecordingGate extends ReceiveGate {
  waits = 0;
  private reached!: () => void;
  readonly reachedWhilePaused = new Promise<void>((resolve) => {
    this.reached = resolve;
  });
  override whenOpen(signal: AbortSignal): Promise<void> {
    this.waits++;
    this.reached();
    return super.whenOpen(signal);
  }
}

async function depth(q: TestQueues): Promise<{ visible: number; inFlight: number }> {
  const a = await q.s.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: q.queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return {
    visible: Number(a.Attributes?.ApproximateNumberOfMessages),
    inFlight: Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible),
  };
}

describe('FifoConsumer', () => {
  describe('receive gate', () => {
    it('while paused no ReceiveMessage goes out: messages stay visible with their receive counts untouched; resumed, each is received once', async () => {
      const q = await freshQueues('gatestart');
      const receives = countReceives(q.s.clients.sqs);
      await sendAll(
        q.s.clients.sqs,
        q.queueUrl,
        ['a', 'b', 'c', 'd', 'e'].map((g) => testMessage(g, 1)),
      );
      const gate = new RecordingGate('test: not ready');
      const receiveCounts: number[] = [];
      const consumer = testConsumer(q, async (_m, ctx) => void receiveCounts.push(ctx.receiveCount), { gate });
      consumer.start();
      // The poller waits at the gate before its first receive (a consumer that ignored the gate
      // would send one instead: then the count below says so).
      await Promise.race([gate.reachedWhilePaused, eventually(() => receives.started > 0, 60_000, 'a receive')]);

      expect(receives.started).toBe(0);
      expect(consumer.pausedFor).toBe('test: not ready');
      expect(await depth(q)).toEqual({ visible: 5, inFlight: 0 });

      gate.resume();
      await eventually(() => receiveCounts.length === 5, 30_000, 'the five messages handled once resumed');
      // First receive for each: none was received and handed back while paused.
      expect(receiveCounts).toEqual([1, 1, 1, 1, 1]);
      expect(consumer.pausedFor).toBeUndefined();
      await consumer.close(5000);
      q.s.close();
    });

    it('paused while a long poll is open: that poll finishes (not aborted) and no next one is sent until resumed', async () => {
      const q = await freshQueues('gatemid');
      const receives = countReceives(q.s.clients.sqs);
      const gate = new RecordingGate();
      const receiveCounts: number[] = [];
      const consumer = testConsumer(q, async (_m, ctx) => void receiveCounts.push(ctx.receiveCount), { gate, waitTimeSec: 2 });
      consumer.start();
      await eventually(() => receives.started >= 1, 30_000, 'a long poll open on the empty queue');
      gate.pause('test: shard lost');
      await gate.reachedWhilePaused; // the open poll came back; the poller now waits at the gate

      // Every poll sent was answered, none aborted; from now on none is sent.
      const sent = receives.started;
      expect(receives).toEqual({ started: sent, answered: sent, failed: 0 });
      await sendAll(q.s.clients.sqs, q.queueUrl, [testMessage('g', 1), testMessage('g', 2)]);
      expect(await depth(q)).toEqual({ visible: 2, inFlight: 0 });
      expect(receives.started).toBe(sent);

      gate.resume();
      await eventually(() => receiveCounts.length === 2, 30_000, 'both messages handled once resumed');
      expect(receiveCounts).toEqual([1, 1]);
      await consumer.close(5000);
      q.s.close();
    });

    it('closing a paused consumer lets its pollers go without one more receive', async () => {
      const q = await freshQueues('gateclose');
      const receives = countReceives(q.s.clients.sqs);
      await sendAll(q.s.clients.sqs, q.queueUrl, [testMessage('g', 1)]);
      const gate = new RecordingGate('test: not ready');
      const consumer = testConsumer(q, async () => undefined, { gate });
      consumer.start();
      await Promise.race([gate.reachedWhilePaused, eventually(() => receives.started > 0, 60_000, 'a receive')]);
      await consumer.close(5000);
      expect(receives.started).toBe(0);
      expect(await depth(q)).toEqual({ visible: 1, inFlight: 0 });
      q.s.close();
    });
  });
});
