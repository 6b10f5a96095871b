/**
 * Benchmark: payfleet's FifoConsumer with a no-op handler vs a bare sqs-consumer receive-and-delete
 * loop, on the same embedded stack in the same run (compare ratios, not absolute numbers: the
 * machines are shared and noisy).
 *
 *   npm run bench:consumer                         # defaults below
 *   BENCH_MESSAGES=20000 BENCH_GROUPS=1000 npm run bench:consumer
 *
 * Each round preloads the queue, then times how long the consumer takes to delete everything.
 * AWS calls are counted with an SDK middleware on the consumer's own client.
 */
import type { Message, SQSClient } from '@aws-sdk/client-sqs';
import { Consumer } from 'sqs-consumer';
import { createAwsClients } from '../shared/aws/clients.js';
import { bootstrap } from '../cli/bootstrap.js';
import { FifoConsumer } from '../shared/core/consumer.js';
import { EMBEDDED_CREDENTIALS, startEmbeddedStack } from '../cli/embedded/stack.js';
import { silentLogger } from '../shared/log/logger.js';
import { resourceNames } from '../shared/resources.js';
import { countCalls, preload, type RoundResult, waitUntil } from './support.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 5000);
const GROUPS = Number(process.env.BENCH_GROUPS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);

async function round(
  name: string,
  sqs: SQSClient,
  queueUrl: string,
  run: (onDone: (n: number) => void) => { stop(): Promise<void> },
): Promise<RoundResult> {
  await preload(sqs, queueUrl, MESSAGES, GROUPS, name);
  const calls = countCalls(sqs);
  calls.reset();
  let done = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const handle = run((n) => {
    done += n;
  });
  await waitUntil(() => done >= MESSAGES, 300_000, () => `${name}: ${done}/${MESSAGES}`);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await handle.stop();
  return { name, messages: MESSAGES, ms, perSec: (MESSAGES / ms) * 1000, callsPerMessage: calls.count() / MESSAGES, cpuMsPerMessage: (cpu.user + cpu.system) / 1000 / MESSAGES };
}

function bare(sqs: SQSClient, queueUrl: string) {
  return (onDone: (n: number) => void) => {
    const c = Consumer.create({
      sqs,
      queueUrl,
      batchSize: 10,
      waitTimeSeconds: 1,
      suppressFifoWarning: true,
      strictReturn: true,
      handleMessageBatch: async (messages: Message[]) => {
        // Deleted by sqs-consumer after we return them; count on the next tick of the same batch.
        setImmediate(() => onDone(messages.length));
        return messages;
      },
    });
    c.start();
    return {
      // Wait for the last long poll too, or it eats the next round's messages.
      stop: async () => {
        c.stop({ abort: false });
        while (c.status.isPolling) await new Promise((r) => setTimeout(r, 20));
      },
    };
  };
}

function ours(sqs: SQSClient, queueUrl: string, dlqUrl: string, concurrency: number) {
  return (onDone: (n: number) => void) => {
    const c = new FifoConsumer<string>({
      sqs,
      queueUrl,
      dlqUrl,
      queueName: 'bench',
      worker: 'bench',
      parse: (b) => b,
      handle: async () => {
        setImmediate(() => onDone(1));
      },
      concurrency,
      waitTimeSec: 1,
      visibilityTimeoutSec: 60,
      logger: silentLogger(),
    });
    c.start();
    return { stop: () => c.close(5000) };
  };
}

async function main() {
  const stack = await startEmbeddedStack();
  try {
    const prefix = 'bench-';
    const aws = { resourcePrefix: prefix, region: stack.region, sqsEndpoint: stack.sqsEndpoint, dynamodbEndpoint: stack.dynamodbEndpoint };
    const clients = createAwsClients(aws, { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 });
    const report = await bootstrap(clients, { prefix });
    const names = resourceNames(prefix);
    const queueUrl = report.queueUrls[names.queue('auth-requests')]!;
    const dlqUrl = report.queueUrls[names.dlq('auth-requests')]!;
    const results: RoundResult[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      results.push(await round('bare sqs-consumer (1 poller, batch 10)', clients.sqs, queueUrl, bare(clients.sqs, queueUrl)));
      results.push(await round('FifoConsumer no-op (concurrency 10, 1 poller)', clients.sqs, queueUrl, ours(clients.sqs, queueUrl, dlqUrl, 10)));
      results.push(await round('FifoConsumer no-op (concurrency 32, 4 pollers)', clients.sqs, queueUrl, ours(clients.sqs, queueUrl, dlqUrl, 32)));
    }
    const best = new Map<string, RoundResult>();
    for (const r of results) if (!best.has(r.name) || best.get(r.name)!.perSec < r.perSec) best.set(r.name, r);
    const bareBest = [...best.values()][0]!;
    console.log(`\n${MESSAGES} messages over ${GROUPS} groups, best of ${ROUNDS} rounds, node ${process.version}\n`);
    console.log('| consumer | msg/s | ratio to bare | AWS calls/msg | CPU ms/msg |');
    console.log('|---|---|---|---|---|');
    for (const r of best.values()) {
      console.log(`| ${r.name} | ${r.perSec.toFixed(0)} | ${(r.perSec / bareBest.perSec).toFixed(2)} | ${r.callsPerMessage.toFixed(3)} | ${r.cpuMsPerMessage.toFixed(3)} |`);
    }
    clients.destroy();
  } finally {
    await stack.stop();
  }
}

await main();
