import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsConfig } from '../config/common.js';

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
}

function handlerFor(endpoint: string | undefined, maxSockets: number): NodeHttpHandler {
  const agentOptions = { keepAlive: true, maxSockets, keepAliveMsecs: 1000 };
  // TLS verification stays on: we never pass rejectUnauthorized:false.
  const isHttp = endpoint?.startsWith('http:') ?? false;
  return new NodeHttpHandler({
    httpAgent: new HttpAgent(agentOptions),
    httpsAgent: new HttpsAgent(agentOptions),
    connectionTimeout: 3000,
    // Long polls hold a request for up to 20 s; anything past 35 s is a dead socket.
    requestTimeout: isHttp ? 35_000 : 35_000,
  });
}

/**
 * The one place SDK clients are built (STYLE.md §1): entrypoints call this and inject the result.
 * The endpoint is always explicit when configured: fauxqs' queue URLs name hosts that do not
 * resolve, so the SQS client must never take the endpoint from a queue URL.
 */
export function createAwsClients(config: AwsConfig, options: AwsClientOptions = {}): AwsClients {
  const maxSockets = options.maxSockets ?? 50;
  const common = {
    region: config.region,
    maxAttempts: 3,
    ...(options.credentials ? { credentials: { ...options.credentials } } : {}),
  };
  const sqs = new SQSClient({
    ...common,
    ...(config.sqsEndpoint ? { endpoint: config.sqsEndpoint, useQueueUrlAsEndpoint: false } : {}),
    requestHandler: handlerFor(config.sqsEndpoint, maxSockets),
  });
  const dynamodb = new DynamoDBClient({
    ...common,
    ...(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
    requestHandler: handlerFor(config.dynamodbEndpoint, maxSockets),
  });
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
