import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { AwsConfig } from '../config/common.js';
import { countConsumedCapacity, type CapacityCounter } from './capacity.js';
import { createDeadlineHandler, DEFAULT_AWS_DEADLINES, type AwsDeadlines, type AwsService } from './request-handler.js';

export interface AwsClients {
  readonly sqs: SQSClient;
  readonly dynamodb: DynamoDBClient;
  readonly doc: DynamoDBDocumentClient;
  destroy(): void;
}

export interface AwsClientOptions {
  /**
   * Concurrent requests this process may have open to one service: sizes the keep-alive pool.
   * A worker passes its consumer concurrency plus the pollers and heartbeats. @default 50
   */
  readonly maxSockets?: number;
  /** Static credentials, used by the embedded stack (emulators accept any). */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
  /**
   * Count the DynamoDB capacity every call consumes into this counter (asks for
   * `ReturnConsumedCapacity: TOTAL`; capacity.ts). Given only when AwsConfig.consumedCapacity is on.
   * @default not counted
   */
  readonly consumedCapacity?: CapacityCounter;
}

function handlerFor(service: AwsService, deadlines: AwsDeadlines, maxSockets: number) {
  const agentOptions = { keepAlive: true, maxSockets, keepAliveMsecs: 1000 };
  // TLS verification stays on: we never pass rejectUnauthorized:false.
  // Every attempt has a real deadline, chosen per operation (request-handler.ts).
  return createDeadlineHandler(service, deadlines, {
    httpAgent: new HttpAgent(agentOptions),
    httpsAgent: new HttpsAgent(agentOptions),
  });
}

/**
 * The one place SDK clients are built: entrypoints call this and inject the result.
 * The endpoint is always explicit when configured: fauxqs' queue URLs name hosts that do not
 * resolve, so the SQS client must never take the endpoint from a queue URL.
 */
export function createAwsClients(config: AwsConfig, options: AwsClientOptions = {}): AwsClients {
  const maxSockets = options.maxSockets ?? 50;
  const deadlines = config.deadlines ?? DEFAULT_AWS_DEADLINES;
  const common = {
    region: config.region,
    // Retries resend the same serialized request: safe because every write we make is idempotent
    // on resend (ClientRequestToken, acquire id, attemptId, conditions). See request-handler.ts.
    maxAttempts: deadlines.maxAttempts,
    ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
  };
  const sqs = new SQSClient({
    ...common,
    ...(config.sqsEndpoint ? { endpoint: config.sqsEndpoint, useQueueUrlAsEndpoint: false } : {}),
    requestHandler: handlerFor('sqs', deadlines, maxSockets),
  });
  const dynamodb = new DynamoDBClient({
    ...common,
    ...(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
    requestHandler: handlerFor('dynamodb', deadlines, maxSockets),
  });
  if (options.consumedCapacity) countConsumedCapacity(dynamodb, options.consumedCapacity);
  const doc = DynamoDBDocumentClient.from(dynamodb, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
    unmarshallOptions: { wrapNumbers: false },
  });
  return {
    sqs,
    dynamodb,
    doc,
    destroy() {
      sqs.destroy();
      doc.destroy();
      dynamodb.destroy();
    },
  };
}
