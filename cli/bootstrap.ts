import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SetQueueAttributesCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  ScanCommand,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
  waitUntilTableNotExists,
  type AttributeDefinition,
  type DynamoDBClient,
  type GlobalSecondaryIndex,
  type TableDescription,
} from '@aws-sdk/client-dynamodb';
import { PutCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import {
  QUEUE_KEYS,
  QUEUES_WITH_DLQ,
  TABLES,
  TABLE_KEYS,
  ledgerShardKey,
  payoutShardKey,
  resourceNames,
  type TableDef,
} from '../shared/resources.js';

export interface BootstrapOptions {
  readonly prefix: string;
  /** @default 10 */
  readonly maxReceiveCount?: number;
  /**
   * Redrive limit of capture-requests only. Every deferred capture retry is one more receive, so
   * the default 10 would let SQS dead-letter a capture long before CAPTURE_PROCESS_MAXIMUM_RETRIES
   * (96). @default 200
   */
  readonly captureMaxReceiveCount?: number;
  /** @default 8 */
  readonly payoutShards?: number;
  /** @default 8 */
  readonly ledgerShards?: number;
  /** Visibility timeout set on new source queues, seconds. @default 30 */
  readonly visibilityTimeoutSec?: number;
}

export type ChangeKind = 'created' | 'updated' | 'unchanged';

export interface BootstrapChange {
  readonly resource: string;
  readonly kind: ChangeKind;
  readonly detail?: string;
}

export interface BootstrapReport {
  readonly changes: readonly BootstrapChange[];
  readonly queueUrls: Readonly<Record<string, string>>;
  /** True when nothing had to be created or updated. */
  readonly unchanged: boolean;
}

const FOURTEEN_DAYS_SEC = 1_209_600;

/**
 * Create or verify every queue, DLQ and table of the fleet. Idempotent: a second run reports every
 * resource `unchanged`. Works against any endpoint: embedded, LocalStack, AWS.
 * Drift it can repair (RedrivePolicy, missing GSI, TTL) is repaired and reported as `updated`.
 */
export async function bootstrap(
  clients: { sqs: SQSClient; dynamodb: DynamoDBClient; doc: DynamoDBDocumentClient },
  options: BootstrapOptions,
): Promise<BootstrapReport> {
  const names = resourceNames(options.prefix);
  const changes: BootstrapChange[] = [];
  const queueUrls: Record<string, string> = {};
  const maxReceiveCount = options.maxReceiveCount ?? 10;

  for (const key of QUEUE_KEYS) {
    let dlqArn: string | undefined;
    if (QUEUES_WITH_DLQ.includes(key)) {
      const dlqName = names.dlq(key);
      const dlq = await ensureQueue(clients.sqs, dlqName, {
        FifoQueue: 'true',
        MessageRetentionPeriod: String(FOURTEEN_DAYS_SEC),
      });
      changes.push({ resource: `queue ${dlqName}`, kind: dlq.kind });
      queueUrls[dlqName] = dlq.url;
      dlqArn = dlq.arn;
    }
    const name = names.queue(key);
    const attrs: Record<string, string> = {
      FifoQueue: 'true',
      VisibilityTimeout: String(options.visibilityTimeoutSec ?? 30),
      MessageRetentionPeriod: String(FOURTEEN_DAYS_SEC),
    };
    const receives = key === 'capture-requests' ? (options.captureMaxReceiveCount ?? 200) : maxReceiveCount;
    if (dlqArn) attrs.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: receives });
    const q = await ensureQueue(clients.sqs, name, attrs);
    changes.push({ resource: `queue ${name}`, kind: q.kind, ...(q.detail ? { detail: q.detail } : {}) });
    queueUrls[name] = q.url;
  }

  for (const key of TABLE_KEYS) {
    const name = names.table(key);
    for (const change of await ensureTable(clients.dynamodb, name, TABLES[key])) changes.push(change);
  }

  // Shard rows are the payout/ledger "configuration table": a lease row exists per shard.
  const shardRows = [
    ...Array.from({ length: options.payoutShards ?? 8 }, (_, i) => payoutShardKey(i)),
    ...Array.from({ length: options.ledgerShards ?? 8 }, (_, i) => ledgerShardKey(i)),
  ];
  let createdShards = 0;
  for (const leaseKey of shardRows) {
    try {
      await clients.doc.send(
        new PutCommand({
          TableName: names.table('leases'),
          Item: { leaseKey, kind: 'shard', fencingToken: 0, expiresAtMs: 0 },
          ConditionExpression: 'attribute_not_exists(leaseKey)',
        }),
      );
      createdShards++;
    } catch (err) {
      if ((err as { name?: string }).name !== 'ConditionalCheckFailedException') throw err;
    }
  }
  changes.push({
    resource: `shard rows in ${names.table('leases')}`,
    kind: createdShards > 0 ? 'created' : 'unchanged',
    detail: `${shardRows.length} shards${createdShards > 0 ? `, ${createdShards} new` : ''}`,
  });

  return { changes, queueUrls, unchanged: changes.every((c) => c.kind === 'unchanged') };
}

async function ensureQueue(
  sqs: SQSClient,
  name: string,
  attrs: Record<string, string>,
): Promise<{ url: string; arn: string; kind: ChangeKind; detail?: string }> {
  let url: string | undefined;
  try {
    url = (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch (err) {
    const n = (err as { name?: string }).name;
    if (n !== 'QueueDoesNotExist' && n !== 'AWS.SimpleQueueService.NonExistentQueue') throw err;
  }
  if (!url) {
    const created = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attrs }));
    const arn = await queueArn(sqs, created.QueueUrl!);
    return { url: created.QueueUrl!, arn, kind: 'created' };
  }
  const current = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }))).Attributes ?? {};
  if (current.FifoQueue !== 'true')
    throw new Error(`queue ${name} exists but is not FIFO; delete it or choose another PAYFLEET_RESOURCE_PREFIX`);
  // Only the redrive policy is repaired: visibility and retention may be tuned by operators.
  const drift: Record<string, string> = {};
  if (attrs.RedrivePolicy && !sameJson(current.RedrivePolicy, attrs.RedrivePolicy)) drift.RedrivePolicy = attrs.RedrivePolicy;
  if (Object.keys(drift).length > 0) {
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: drift }));
    return { url, arn: current.QueueArn!, kind: 'updated', detail: `set ${Object.keys(drift).join(', ')}` };
  }
  return { url, arn: current.QueueArn!, kind: 'unchanged' };
}

function sameJson(a: string | undefined, b: string): boolean {
  if (!a) return false;
  try {
    const pa = JSON.parse(a) as Record<string, unknown>;
    const pb = JSON.parse(b) as Record<string, unknown>;
    return pa.deadLetterTargetArn === pb.deadLetterTargetArn && Number(pa.maxReceiveCount) === Number(pb.maxReceiveCount);
  } catch {
    return false;
  }
}

async function queueArn(sqs: SQSClient, url: string): Promise<string> {
  const r = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  return r.Attributes!.QueueArn!;
}

function attributeDefinitions(def: TableDef, indexes = def.indexes): AttributeDefinition[] {
  const seen = new Map<string, string>();
  const add = (k?: { name: string; type: string }) => k && seen.set(k.name, k.type);
  add(def.partitionKey);
  add(def.sortKey);
  for (const ix of indexes) {
    add(ix.partitionKey);
    add(ix.sortKey);
  }
  return [...seen].map(([AttributeName, AttributeType]) => ({ AttributeName, AttributeType: AttributeType as 'S' | 'N' }));
}

function gsi(ix: TableDef['indexes'][number]): GlobalSecondaryIndex {
  return {
    IndexName: ix.name,
    KeySchema: [
      { AttributeName: ix.partitionKey.name, KeyType: 'HASH' },
      ...(ix.sortKey ? [{ AttributeName: ix.sortKey.name, KeyType: 'RANGE' as const }] : []),
    ],
    Projection: { ProjectionType: 'ALL' },
  };
}

function keyOf(def: TableDef): string {
  return def.sortKey ? `${def.partitionKey.name} + ${def.sortKey.name}` : def.partitionKey.name;
}

/** The existing table's key when it differs from the definition's. */
function keySchemaDrift(t: TableDescription, def: TableDef): { have: string; want: string } | undefined {
  const hash = t.KeySchema?.find((k) => k.KeyType === 'HASH')?.AttributeName;
  const range = t.KeySchema?.find((k) => k.KeyType === 'RANGE')?.AttributeName;
  if (hash === def.partitionKey.name && range === def.sortKey?.name) return undefined;
  return { have: range ? `${String(hash)} + ${range}` : String(hash), want: keyOf(def) };
}

async function createTable(ddb: DynamoDBClient, name: string, def: TableDef): Promise<void> {
  await ddb.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: attributeDefinitions(def),
      KeySchema: [
        { AttributeName: def.partitionKey.name, KeyType: 'HASH' },
        ...(def.sortKey ? [{ AttributeName: def.sortKey.name, KeyType: 'RANGE' as const }] : []),
      ],
      ...(def.indexes.length > 0 ? { GlobalSecondaryIndexes: def.indexes.map(gsi) } : {}),
    }),
  );
  await waitUntilTableExists({ client: ddb, maxWaitTime: 120, minDelay: 1, maxDelay: 5 }, { TableName: name });
}

async function ensureTable(ddb: DynamoDBClient, name: string, def: TableDef): Promise<BootstrapChange[]> {
  const changes: BootstrapChange[] = [];
  let existing: TableDescription | undefined;
  try {
    existing = (await ddb.send(new DescribeTableCommand({ TableName: name }))).Table;
  } catch (err) {
    if ((err as { name?: string }).name !== 'ResourceNotFoundException') throw err;
  }
  const keyDrift = existing ? keySchemaDrift(existing, def) : undefined;
  if (existing && keyDrift) {
    // A table of an older layout (payouts before 0.2 was keyed by shard + paymentId). Pre-1.0 no
    // deployment holds money in one; an empty one is replaced, one with rows is refused, never dropped.
    const scan = await ddb.send(new ScanCommand({ TableName: name, Limit: 1, ConsistentRead: true }));
    if ((scan.Items ?? []).length > 0 || scan.LastEvaluatedKey) {
      throw new Error(
        `table ${name} has the key ${keyDrift.have}, this version needs ${keyDrift.want}, and it holds rows: ` +
          'drain it (every payout PAID or REJECTED) and delete it, or choose another PAYFLEET_RESOURCE_PREFIX (docs/payouts.md, "Migration")',
      );
    }
    await ddb.send(new DeleteTableCommand({ TableName: name }));
    await waitUntilTableNotExists({ client: ddb, maxWaitTime: 120, minDelay: 1, maxDelay: 5 }, { TableName: name });
    await createTable(ddb, name, def);
    changes.push({ resource: `table ${name}`, kind: 'updated', detail: `recreated (was empty) with the key ${keyDrift.want}` });
  } else if (!existing) {
    await createTable(ddb, name, def);
    changes.push({ resource: `table ${name}`, kind: 'created' });
  } else {
    const have = new Set((existing.GlobalSecondaryIndexes ?? []).map((g) => g.IndexName));
    const missing = def.indexes.filter((ix) => !have.has(ix.name));
    // DynamoDB adds one GSI per UpdateTable call.
    for (const ix of missing) {
      await ddb.send(
        new UpdateTableCommand({
          TableName: name,
          AttributeDefinitions: attributeDefinitions(def),
          GlobalSecondaryIndexUpdates: [{ Create: gsi(ix) }],
        }),
      );
    }
    changes.push(
      missing.length > 0
        ? { resource: `table ${name}`, kind: 'updated', detail: `added index ${missing.map((m) => m.name).join(', ')}` }
        : { resource: `table ${name}`, kind: 'unchanged' },
    );
  }
  if (def.ttlAttribute) {
    const ttl = await ddb.send(new DescribeTimeToLiveCommand({ TableName: name }));
    const d = ttl.TimeToLiveDescription;
    const enabled =
      (d?.TimeToLiveStatus === 'ENABLED' || d?.TimeToLiveStatus === 'ENABLING') && d.AttributeName === def.ttlAttribute;
    if (!enabled) {
      await ddb.send(
        new UpdateTimeToLiveCommand({
          TableName: name,
          TimeToLiveSpecification: { Enabled: true, AttributeName: def.ttlAttribute },
        }),
      );
      changes.push({ resource: `ttl ${name}.${def.ttlAttribute}`, kind: existing ? 'updated' : 'created' });
    } else {
      changes.push({ resource: `ttl ${name}.${def.ttlAttribute}`, kind: 'unchanged' });
    }
  }
  return changes;
}
