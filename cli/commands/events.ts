import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { AwsClients } from '../../shared/aws/clients.js';
import type { ParityReport } from '../../workers/ledger/parity.js';
import type { OutboxEvent } from '../../workers/ledger/ports.js';
import { printJson, printTable } from './output.js';

/** Same codes as cli/main.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

function exitWith(code: number, message: string): never {
  throw Object.assign(new Error(message), { exitCode: code });
}

function stateOf(e: OutboxEvent): string {
  if (e.emittedAt) return 'emitted';
  if (e.doNotRetryUntil && Date.parse(e.doNotRetryUntil) > Date.now()) return 'backoff';
  return 'pending';
}

/** One event as `--json` prints it. */
function toJson(e: OutboxEvent) {
  return {
    sequence: e.sequence,
    eventId: e.eventId,
    eventType: e.eventType,
    resourceType: e.resourceType,
    timestamp: e.timestamp,
    state: stateOf(e),
    emittedAt: e.emittedAt ?? null,
    pendingShard: e.pendingShard ?? null,
    sendFailures: e.sendFailures,
    doNotRetryUntil: e.doNotRetryUntil ?? null,
    lastSendError: e.lastSendError ?? null,
    details: e.details,
  };
}

/** Clients and the outbox of the configured environment; loaded on use so `--help` stays cheap. */
async function connect() {
  const [{ openCommandContext }, { createDynamoLedgerOutbox }] = await Promise.all([
    import('./context.js'),
    import('../../workers/ledger/dynamo-outbox.js'),
  ]);
  const { clients, names } = openCommandContext();
  return { clients, names, outbox: createDynamoLedgerOutbox({ doc: clients.doc, names }) };
}

/**
 * `payfleet events <resourceId> [--json]`: a resource's ledger events in sequence order and
 * whether each was emitted (exit 3 when it has none).
 * `payfleet events parity --from <file.ndjson> [--resource <id>...] [--all] [--json]`: compare the
 * outbox with what a consumer recorded (exit 1 on missing / extra / out-of-order / invalid lines).
 */
export function registerEvents(program: Command): void {
  const events = program
    .command('events')
    .description(
      "a resource's ledger events (sequence order) and whether each was emitted; `events parity` compares with a consumer's record",
    )
    .argument('<resourceId>', 'chargeId or paymentId')
    .option('--json', 'print JSON')
    .action(async (resourceId: string, opts: { json?: boolean }) => {
      const { clients, outbox } = await connect();
      try {
        const rows = await outbox.resourceEvents(resourceId);
        if (rows.length === 0) exitWith(EXIT.notFound, `no ledger events for ${resourceId}`);
        if (opts.json) {
          printJson({ resourceId, resourceType: rows[0]!.resourceType, events: rows.map(toJson) });
          return;
        }
        printTable(
          ['seq', 'event_type', 'timestamp', 'state', 'emitted_at / shard', 'failures', 'event_id'],
          rows.map((e) => [
            e.sequence,
            e.eventType,
            e.timestamp,
            stateOf(e) === 'backoff' ? `backoff until ${e.doNotRetryUntil}` : stateOf(e),
            e.emittedAt ?? e.pendingShard,
            e.sendFailures || '',
            e.eventId,
          ]),
        );
        const pending = rows.filter((e) => !e.emittedAt).length;
        process.stdout.write(`\n${rows.length} events, ${rows.length - pending} emitted, ${pending} pending\n`);
      } finally {
        clients.destroy();
      }
    });

  events
    .command('parity')
    .description('compare the outbox with what a Ledger consumer recorded (NDJSON of CONTRACT §5 bodies, in the order received)')
    .requiredOption('--from <file>', 'NDJSON file; one body (or SQS message with a Body) per line')
    .option('--resource <id...>', 'also check these resources (even if the file never mentions them)')
    .option('--all', 'check every resource in the events table (a full table scan: small environments only)')
    .option('--json', 'print JSON')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{ from: string; resource?: string[]; all?: boolean; json?: boolean }>();
      let text: string;
      try {
        text = await readFile(opts.from, 'utf8');
      } catch (err) {
        exitWith(EXIT.usage, `cannot read ${opts.from}: ${(err as Error).message}`);
      }
      const { compareParity, parseRecorded } = await import('../../workers/ledger/parity.js');
      const recorded = parseRecorded(text);
      const { clients, names, outbox } = await connect();
      try {
        const ids = new Set<string>(opts.resource ?? []);
        for (const r of recorded) if (r.body) ids.add(r.body.resource_external_id);
        if (opts.all) for (const id of await allResourceIds(clients.doc, names.table('events'))) ids.add(id);
        const byResource = new Map<string, readonly OutboxEvent[]>();
        for (const id of ids) byResource.set(id, await outbox.resourceEvents(id));
        const report = compareParity(byResource, recorded);
        if (opts.json) printJson(report);
        else printParity(report);
        if (!report.ok) exitWith(EXIT.failure, 'parity check failed');
      } finally {
        clients.destroy();
      }
    });
}

async function allResourceIds(doc: AwsClients['doc'], table: string): Promise<string[]> {
  const { ScanCommand } = await import('@aws-sdk/lib-dynamodb');
  const ids = new Set<string>();
  let start: Record<string, unknown> | undefined;
  do {
    const out = await doc.send(
      new ScanCommand({ TableName: table, ProjectionExpression: 'resourceId', ...(start ? { ExclusiveStartKey: start } : {}) }),
    );
    for (const item of out.Items ?? []) ids.add(String(item.resourceId));
    start = out.LastEvaluatedKey;
  } while (start);
  return [...ids];
}

function printParity(r: ParityReport): void {
  printTable(
    ['check', 'count'],
    [
      ['resources compared', r.resources],
      ['events in the outbox', r.outboxEvents],
      ['lines recorded', r.recordedLines],
      ['distinct events recorded', r.recordedUnique],
      ['missing (emitted, not recorded)', r.missing.length],
      ['pending (not emitted yet)', r.pending.length],
      ['extra / differing', r.extra.length],
      ['out of order', r.outOfOrder.length],
      ['duplicates (allowed)', r.duplicates],
      ['invalid lines', r.invalid.length],
    ],
  );
  const show = <T>(title: string, rows: readonly T[], fmt: (x: T) => string) => {
    if (rows.length === 0) return;
    process.stdout.write(`\n${title}:\n`);
    for (const x of rows.slice(0, 50)) process.stdout.write(`  ${fmt(x)}\n`);
    if (rows.length > 50) process.stdout.write(`  ... and ${rows.length - 50} more (use --json)\n`);
  };
  show('missing', r.missing, (m) => `${m.resourceId} #${m.sequence} ${m.eventId}`);
  show('extra / differing', r.extra, (x) => `line ${x.line}: ${x.resourceId} #${x.sequence} ${x.eventId}: ${x.reason}`);
  show('out of order', r.outOfOrder, (o) => `line ${o.line}: ${o.resourceId} #${o.sequence} after #${o.after}`);
  show('invalid lines', r.invalid, (i) => `line ${i.line}: ${i.problems.join('; ')}`);
  process.stdout.write(`\n${r.ok ? 'parity OK' : 'parity FAILED'}\n`);
}
