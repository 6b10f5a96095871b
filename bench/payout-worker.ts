/**
 * `payfleet worker payout` with its AWS calls counted, for bench/payout.ts. Started instead of
 * bin/payfleet.js (same argv): it wraps `send` of the SDK clients before the CLI loads, asks every
 * DynamoDB data call for `ReturnConsumedCapacity: TOTAL`, and on SIGUSR2 writes the totals so far
 * (calls by service and operation, write and read units, CPU) to BENCH_CALLS_FILE with a growing `seq`.
 *
 * The document client's commands do not go through the low-level client's `send` (they resolve its
 * middleware directly), so both prototypes are wrapped; no call is counted twice.
 */
import { writeFileSync } from 'node:fs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { TABLES, type TableKey } from '../shared/resources.js';

const calls: Record<string, number> = {};
/** Capacity units by operation (write units for writes, read units for reads). */
const units: Record<string, number> = {};
let wru = 0;
let rru = 0;
/** Write units of transactions itemised by DynamoDB's rule (see transactUnits). */
let itemisedWru = 0;
let seq = 0;

type TransactItem = Record<string, { TableName?: string; Item?: Record<string, unknown>; UpdateExpression?: string; ExpressionAttributeNames?: Record<string, string> }>;

/**
 * DynamoDB Local reports ONE item's units per table for a TransactWriteItems, however many items of
 * that table it wrote (a 40-Put transaction reports 4). So transactions are also itemised here by
 * DynamoDB's rule, the one Local applies to a single item: 2 units per KB per item (ConditionCheck
 * included) and 2 per index write (an index entry put, updated or removed). Items are sized from the
 * request (a Put's item; an Update or ConditionCheck counts as one KB: the bench checks that no
 * stored payout or event row exceeds 1 KB).
 */
function transactUnits(items: TransactItem[]): number {
  let total = 0;
  for (const wrapper of items) {
    const [kind, it] = Object.entries(wrapper)[0] ?? [];
    if (!kind || !it) continue;
    const size = kind === 'Put' && it.Item ? JSON.stringify(it.Item).length : 1;
    total += 2 * Math.max(1, Math.ceil(size / 1024));
    const key = Object.keys(TABLES).find((k) => it.TableName?.endsWith(k)) as TableKey | undefined;
    for (const ix of key ? TABLES[key].indexes : []) {
      const attr = ix.partitionKey.name;
      if (kind === 'Put' && it.Item && attr in it.Item) total += 2;
      if (kind === 'Update') {
        // An ALL-projected index is written when its key is set or removed, and on every update of an
        // item that is always in it (its key is one of the table's own key attributes).
        const def = TABLES[key!];
        const always = attr === def.partitionKey.name || attr === def.sortKey?.name;
        const names = Object.entries(it.ExpressionAttributeNames ?? {}).filter(([, v]) => v === attr).map(([k]) => k);
        if (always || names.some((n) => it.UpdateExpression?.includes(n))) total += 2;
      }
      if (kind === 'Delete') total += 2;
    }
  }
  return total;
}

/** Document-client command names as the DynamoDB operations they are. */
const DOC_OPS: Record<string, string> = {
  Get: 'GetItem',
  Put: 'PutItem',
  Update: 'UpdateItem',
  Delete: 'DeleteItem',
  BatchGet: 'BatchGetItem',
  BatchWrite: 'BatchWriteItem',
  TransactWrite: 'TransactWriteItems',
  TransactGet: 'TransactGetItems',
};
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);
const WITH_CAPACITY = new Set([...WRITES, 'GetItem', 'BatchGetItem', 'TransactGetItems', 'Query', 'Scan']);

type Send = (
  this: unknown,
  command: { constructor: { name: string }; input: Record<string, unknown> },
  ...rest: unknown[]
) => Promise<unknown>;

function wrap(proto: { send: unknown }, service: 'dynamodb' | 'sqs'): void {
  const original = proto.send as Send;
  proto.send = async function (this: unknown, command: Parameters<Send>[0], ...rest: unknown[]) {
    const name = command.constructor.name.replace(/Command$/, '');
    const op = service === 'dynamodb' ? (DOC_OPS[name] ?? name) : name;
    calls[`${service}:${op}`] = (calls[`${service}:${op}`] ?? 0) + 1;
    if (service === 'dynamodb' && WITH_CAPACITY.has(op)) command.input.ReturnConsumedCapacity = 'TOTAL';
    const itemised = op === 'TransactWriteItems' ? transactUnits(command.input.TransactItems as TransactItem[]) : 0;
    const out = (await original.call(this, command, ...rest)) as { ConsumedCapacity?: unknown };
    const consumed = out?.ConsumedCapacity;
    if (consumed) {
      const n = (Array.isArray(consumed) ? consumed : [consumed]).reduce(
        (t: number, c: { CapacityUnits?: number }) => t + (c.CapacityUnits ?? 0),
        0,
      );
      units[op] = (units[op] ?? 0) + n;
      itemisedWru += op === 'TransactWriteItems' ? itemised : WRITES.has(op) ? n : 0;
      if (WRITES.has(op)) wru += n;
      else rru += n;
    }
    return out;
  };
}

wrap(DynamoDBClient.prototype, 'dynamodb');
wrap(DynamoDBDocumentClient.prototype, 'dynamodb');
wrap(SQSClient.prototype, 'sqs');

const file = process.env.BENCH_CALLS_FILE;
process.on('SIGUSR2', () => {
  if (!file) return;
  const cpu = process.cpuUsage();
  seq += 1;
  writeFileSync(file, JSON.stringify({ seq, calls, units, wru, itemisedWru, rru, cpuMs: (cpu.user + cpu.system) / 1000 }));
});

await import('../cli/main.js');
