/**
 * The refund worker as a child process for tests, with a fake processor whose refunds are rows of
 * the test stack's leases table (`fake-refund#<idempotency key>`: amount, refundRef, `calls`), so
 * every process sees one processor: what it refunded, and how often it was asked to.
 *
 * REFUND_TEST_CRASH_AT:
 *   before-call   SIGKILL once REFUND_SUBMITTED is committed, before the processor is asked anything
 *   after-refund  SIGKILL inside the processor call, after the processor recorded the refund and
 *                 before its answer reaches the worker (a timeout after success, as bad as it gets)
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { ProcessorConnector, ProcessorName, RefundPort } from '../../shared/connectors/types.js';
import { main } from '../../workers/refund/main.js';

const crashAt = process.env.REFUND_TEST_CRASH_AT;
const table = `${process.env.PAYFLEET_RESOURCE_PREFIX}leases`;
const doc = DynamoDBDocumentClient.from(
  new DynamoDBClient({
    region: process.env.AWS_REGION,
    endpoint: process.env.AWS_ENDPOINT_URL_DYNAMODB ?? process.env.AWS_ENDPOINT_URL,
  }),
);

const crash = async (point: string, refundId: string): Promise<never> => {
  // Synchronous write, then the signal: the line is out before the process is gone.
  process.stdout.write(`${JSON.stringify({ level: 'warn', msg: 'test crash', point, refundId })}\n`);
  process.kill(process.pid, 'SIGKILL');
  return new Promise<never>(() => undefined);
};

const never = async (): Promise<never> => {
  throw new Error('the refund worker never calls this');
};

const connector: ProcessorConnector & RefundPort = {
  name: 'sandbox',
  authorise: never,
  capture: never,
  void: never,
  lookup: never,
  async refund(req) {
    const key = { leaseKey: `fake-refund#${req.idempotencyKey}` };
    await doc.send(
      new UpdateCommand({
        TableName: table,
        Key: key,
        // The processor de-duplicates by key: the first call refunds, later ones replay it.
        UpdateExpression: 'SET amount = if_not_exists(amount, :a), refundRef = if_not_exists(refundRef, :ref) ADD calls :one',
        ExpressionAttributeValues: { ':a': req.amount, ':ref': `re_${req.refundId}`, ':one': 1 },
      }),
    );
    if (crashAt === 'after-refund') await crash(crashAt, req.refundId);
    return { kind: 'refunded', refundRef: `re_${req.refundId}` };
  },
  async lookupRefund(req) {
    const r = await doc.send(
      new GetCommand({ TableName: table, Key: { leaseKey: `fake-refund#${req.idempotencyKey}` }, ConsistentRead: true }),
    );
    return r.Item
      ? { kind: 'refunded', refundRef: String(r.Item.refundRef), amount: Number(r.Item.amount) }
      : { kind: 'not_found' };
  },
};

await main({
  registry: {
    connectors: new Map<ProcessorName, ProcessorConnector>([['sandbox', connector]]),
    get: () => connector,
    close: async () => doc.destroy(),
  },
  ...(crashAt === 'before-call' ? { hooks: { beforeProcessorCall: (refundId: string) => crash(crashAt, refundId) } } : {}),
});
