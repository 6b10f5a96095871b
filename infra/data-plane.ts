/**
 * Every queue and table of the fleet, declared from shared/resources.ts (names, keys, GSIs, TTL,
 * which queues have DLQs), with the same settings `payfleet bootstrap` uses (cli/bootstrap.ts):
 * FIFO, 14-day retention, redrive after maxReceiveCount receives, on-demand tables, ALL-projected
 * GSIs. On AWS the stack owns them; bootstrap only verifies them and writes the shard rows.
 *
 * Tables hold money state: point-in-time recovery, deletion protection and RemovalPolicy.RETAIN, so
 * neither a `cdk destroy` nor a replaced construct can drop one. Queues are retained too: a message
 * in flight is a payment someone asked for.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  QUEUE_KEYS,
  QUEUES_WITH_DLQ,
  TABLES,
  TABLE_KEYS,
  resourceNames,
  type AttrType,
  type QueueKey,
  type TableKey,
} from '../shared/resources.js';

/** SQS' maximum, as bootstrap sets it: two weeks to notice and redrive. */
export const RETENTION = Duration.days(14);

export interface DataPlaneProps {
  readonly prefix: string;
  readonly maxReceiveCount: number;
  readonly visibilityTimeoutSec: number;
}

const attrType = (t: AttrType) => (t === 'N' ? dynamodb.AttributeType.NUMBER : dynamodb.AttributeType.STRING);

export class DataPlane extends Construct {
  readonly queues: Readonly<Record<QueueKey, sqs.Queue>>;
  readonly dlqs: Readonly<Partial<Record<QueueKey, sqs.Queue>>>;
  readonly tables: Readonly<Record<TableKey, dynamodb.Table>>;

  constructor(scope: Construct, id: string, props: DataPlaneProps) {
    super(scope, id);
    const names = resourceNames(props.prefix);

    const queues = {} as Record<QueueKey, sqs.Queue>;
    const dlqs: Partial<Record<QueueKey, sqs.Queue>> = {};
    for (const key of QUEUE_KEYS) {
      const common = {
        fifo: true,
        // Producers send MessageDeduplicationId (docs/contract.md §1); content is not the identity.
        contentBasedDeduplication: false,
        // High-throughput FIFO: limits per message group (per charge/payment), not per queue.
        deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
        fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
        retentionPeriod: RETENTION,
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        removalPolicy: RemovalPolicy.RETAIN,
      } as const;
      let deadLetterQueue: sqs.DeadLetterQueue | undefined;
      if (QUEUES_WITH_DLQ.includes(key)) {
        const dlq = new sqs.Queue(this, `${pascal(key)}Dlq`, { ...common, queueName: names.dlq(key) });
        dlqs[key] = dlq;
        deadLetterQueue = { queue: dlq, maxReceiveCount: props.maxReceiveCount };
      }
      queues[key] = new sqs.Queue(this, pascal(key), {
        ...common,
        queueName: names.queue(key),
        visibilityTimeout: Duration.seconds(props.visibilityTimeoutSec),
        ...(deadLetterQueue ? { deadLetterQueue } : {}),
      });
    }

    const tables = {} as Record<TableKey, dynamodb.Table>;
    for (const key of TABLE_KEYS) {
      const def = TABLES[key];
      const table = new dynamodb.Table(this, `${pascal(key)}Table`, {
        tableName: names.table(key),
        partitionKey: { name: def.partitionKey.name, type: attrType(def.partitionKey.type) },
        ...(def.sortKey ? { sortKey: { name: def.sortKey.name, type: attrType(def.sortKey.type) } } : {}),
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        deletionProtection: true,
        removalPolicy: RemovalPolicy.RETAIN,
        ...(def.ttlAttribute ? { timeToLiveAttribute: def.ttlAttribute } : {}),
      });
      for (const ix of def.indexes) {
        table.addGlobalSecondaryIndex({
          indexName: ix.name,
          partitionKey: { name: ix.partitionKey.name, type: attrType(ix.partitionKey.type) },
          ...(ix.sortKey ? { sortKey: { name: ix.sortKey.name, type: attrType(ix.sortKey.type) } } : {}),
          projectionType: dynamodb.ProjectionType.ALL,
        });
      }
      tables[key] = table;
    }

    this.queues = queues;
    this.dlqs = dlqs;
    this.tables = tables;
  }
}

/** `auth-requests` -> `AuthRequests`: stable construct ids (logical ids must never change). */
export function pascal(key: string): string {
  return key.replace(/(^|-)([a-z])/g, (_, __, c: string) => c.toUpperCase());
}
