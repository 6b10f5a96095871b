import { z } from 'zod';
import { FifoConsumer, type FifoConsumerOptions } from '../../shared/core/consumer.js';
import { silentLogger } from '../../shared/log/logger.js';
import { setupTestStack } from './stack.js';

/** The body of the consumer tests' messages: a group and a sequence number within it. */
export const TestBody = z.object({ group: z.string(), seq: z.number().int() });
export type TestBody = z.infer<typeof TestBody>;

/** A fresh queue pair per test: purging FIFO queues is slow and racy, a new prefix is not. */
export async function freshQueues(label: string) {
  const s = await setupTestStack(label);
  const queueName = s.names.queue('auth-requests');
  return { s, queueUrl: s.url(queueName), dlqUrl: s.url(s.names.dlq('auth-requests')), queueName };
}
export type TestQueues = Awaited<ReturnType<typeof freshQueues>>;

/** Message `seq` of `group`, deduplicated by both. */
export const testMessage = (group: string, seq: number, dedup = `${group}-${seq}`) => ({
  body: JSON.stringify({ group, seq }),
  groupId: group,
  dedupId: dedup,
});

/** A FifoConsumer on `q` with the tests' short timings; `extra` overrides any option. */
export function testConsumer(
  q: TestQueues,
  handle: FifoConsumerOptions<TestBody>['handle'],
  extra: Partial<FifoConsumerOptions<TestBody>> = {},
): FifoConsumer<TestBody> {
  return new FifoConsumer<TestBody>({
    sqs: q.s.clients.sqs,
    queueUrl: q.queueUrl,
    dlqUrl: q.dlqUrl,
    queueName: q.queueName,
    worker: 'test',
    parse: (body) => TestBody.parse(JSON.parse(body)),
    handle,
    concurrency: 4,
    waitTimeSec: 1,
    visibilityTimeoutSec: 6,
    heartbeatSec: 2,
    logger: silentLogger(),
    backoff: { baseMs: 1000, maxMs: 4000 },
    ...extra,
  });
}
