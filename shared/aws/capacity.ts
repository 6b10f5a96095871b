/**
 * DynamoDB capacity units actually consumed, counted from DynamoDB's own answers, so "write units
 * per message" is a reading and not an estimate.
 *
 * Opt-in (PAYFLEET_DYNAMODB_CONSUMED_CAPACITY=true; off by default): an SDK middleware sets
 * `ReturnConsumedCapacity: 'TOTAL'` on every DynamoDB command that accepts it and the caller did
 * not set itself, and adds each answer's `ConsumedCapacity` (one entry, or one per table for
 * batches and transactions) to `payfleet_dynamodb_capacity_units_total{kind="write"|"read", command}`.
 * Asking for it costs nothing in capacity but adds a few bytes to every answer, which is why it is
 * off in production unless someone is measuring.
 *
 *   worker ── UpdateItem { ..., ReturnConsumedCapacity: TOTAL } ──▶ DynamoDB
 *   worker ◀─ { Attributes, ConsumedCapacity: { TableName, CapacityUnits: 1, WriteCapacityUnits: 1 } }
 *             └─▶ payfleet_dynamodb_capacity_units_total{kind="write",command="UpdateItemCommand"} += 1
 *
 * An answer that names only `CapacityUnits` is counted by what the command does: a write
 * command's units are write units (a transaction's condition checks included, as DynamoDB bills
 * them), a read command's are read units. Failed calls consume capacity too but return none to
 * count (a cancelled transaction, a failed condition): the counter is a floor.
 */
import { Counter, type Registry } from 'prom-client';

export type CapacityCounter = Counter<'kind' | 'command'>;

/** Commands that accept ReturnConsumedCapacity, and whether their units are write units. */
const ACCEPTS: Readonly<Record<string, 'write' | 'read'>> = {
  PutItemCommand: 'write',
  UpdateItemCommand: 'write',
  DeleteItemCommand: 'write',
  BatchWriteItemCommand: 'write',
  TransactWriteItemsCommand: 'write',
  GetItemCommand: 'read',
  QueryCommand: 'read',
  ScanCommand: 'read',
  BatchGetItemCommand: 'read',
  TransactGetItemsCommand: 'read',
};

interface Consumed {
  CapacityUnits?: number;
  ReadCapacityUnits?: number;
  WriteCapacityUnits?: number;
}

/** `payfleet_dynamodb_capacity_units_total`, registered in `registry`. */
export function createCapacityCounter(registry: Registry): CapacityCounter {
  return new Counter({
    name: 'payfleet_dynamodb_capacity_units_total',
    help: 'DynamoDB capacity units consumed, from ReturnConsumedCapacity (only with PAYFLEET_DYNAMODB_CONSUMED_CAPACITY=true), by kind (write/read) and command',
    labelNames: ['kind', 'command'],
    registers: [registry],
  });
}

/** Write and read units of one answer's `ConsumedCapacity` (an object or a list of them). */
export function consumedUnits(consumed: unknown, kindOfCommand: 'write' | 'read'): { write: number; read: number } {
  const entries = (Array.isArray(consumed) ? consumed : consumed ? [consumed] : []) as Consumed[];
  let write = 0;
  let read = 0;
  for (const c of entries) {
    if (c.WriteCapacityUnits !== undefined || c.ReadCapacityUnits !== undefined) {
      write += c.WriteCapacityUnits ?? 0;
      read += c.ReadCapacityUnits ?? 0;
    } else if (kindOfCommand === 'write') write += c.CapacityUnits ?? 0;
    else read += c.CapacityUnits ?? 0;
  }
  return { write, read };
}

interface MiddlewareClient {
  middlewareStack: { add: (mw: never, opts: { step: 'initialize'; name: string; priority?: 'high' | 'normal' | 'low' }) => void };
}

/**
 * Ask DynamoDB for the capacity each call consumed and count it into `counter`. One middleware per
 * client, at `initialize` (outside the SDK's retries: the answer that arrives is the one counted).
 */
export function countConsumedCapacity(client: MiddlewareClient, counter: CapacityCounter): void {
  const mw =
    (next: (args: { input: Record<string, unknown> }) => Promise<{ output?: { ConsumedCapacity?: unknown } }>, context: { commandName?: string }) =>
    async (args: { input: Record<string, unknown> }) => {
      const command = context.commandName ?? 'unknown';
      const kind = ACCEPTS[command];
      if (!kind) return next(args);
      // The caller's own choice (e.g. INDEXES) stands; otherwise ask for the total.
      const input = args.input.ReturnConsumedCapacity === undefined ? { ...args.input, ReturnConsumedCapacity: 'TOTAL' } : args.input;
      const out = await next({ ...args, input });
      const units = consumedUnits(out.output?.ConsumedCapacity, kind);
      if (units.write > 0) counter.inc({ kind: 'write', command }, units.write);
      if (units.read > 0) counter.inc({ kind: 'read', command }, units.read);
      return out;
    };
  // 'low': after the document client's marshalling, so the flag reaches the wire as written.
  client.middlewareStack.add(mw as never, { step: 'initialize', name: 'payfleetConsumedCapacity', priority: 'low' });
}
