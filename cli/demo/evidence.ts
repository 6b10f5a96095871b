/**
 * The evidence the closing summary judges (summary.ts), gathered from outside the workers: every
 * table, the DLQs, the sandboxes' effect counters, the reference Ledger consumer and the logs.
 */
import { execFile } from 'node:child_process';
import { ScanCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { SandboxServices } from '../sandbox/serve.js';
import type { DeadLetterView } from '../commands/dlq-letters.js';
import type { DemoPlan } from './load.js';
import type { LedgerConsumerLike } from './setup.js';
import { checkInvariants, type Check } from './summary.js';

/** Every item of a table (consistent reads; demo tables are small). */
export async function scanAll(doc: DynamoDBDocumentClient, table: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await doc.send(
      new ScanCommand({ TableName: table, ConsistentRead: true, ...(start ? { ExclusiveStartKey: start } : {}) }),
    );
    items.push(...((out.Items ?? []) as Record<string, unknown>[]));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}

/** PIDs of a DynamoDB Local (java or its guardian) listening on `port`; [] when none or pgrep is missing. */
export function dynamoDbLocalLeft(port: string): Promise<string[]> {
  return new Promise((resolve) => {
    execFile('pgrep', ['-f', `DynamoDBLocal.*-port ${port}( |$)`], (err, stdout) => {
      if (err) return resolve([]);
      resolve(stdout.split('\n').filter(Boolean));
    });
  });
}

/** Gather what the summary judges (summary.ts) from the tables, DLQs, sandboxes, Ledger and logs. */
export function judge(x: {
  plan: DemoPlan;
  tables: Map<string, Record<string, unknown>[]>;
  dlq: Map<string, { view: DeadLetterView; body: string; attributes?: unknown }[]>;
  consumer: LedgerConsumerLike;
  sandboxes: SandboxServices;
  logs: Map<string, string>;
  payoutsOn: boolean;
}): Check[] {
  const charges = new Map(
    (x.tables.get('charges') ?? [])
      .filter((c) => typeof c.chargeId === 'string' && typeof c.status === 'string')
      .map((c) => [
        c.chargeId as string,
        c as unknown as { status: string; processor: string; processorRef?: string; authIdempotencyKey?: string },
      ]),
  );
  // A row with a status is a refund; one without is a bare reservation a refused request left (no refund).
  const refunds = new Map(
    (x.tables.get('refunds') ?? [])
      .filter((r) => typeof r.refundId === 'string' && typeof r.status === 'string' && typeof r.chargeId === 'string')
      .map((r) => [
        r.refundId as string,
        {
          status: r.status as string,
          chargeId: r.chargeId as string,
          amount: Number(r.amount),
          refundRequestId: String(r.refundRequestId),
        },
      ]),
  );
  const ledgerRefunds = new Map<string, { types: string[]; parents: string[] }>();
  for (const e of x.consumer.events()) {
    if (e.body.resource_type !== 'refund') continue;
    const seen = ledgerRefunds.get(e.body.resource_external_id) ?? { types: [], parents: [] };
    seen.types.push(e.body.event_type);
    seen.parents.push(e.body.parent_resource_external_id ?? '(none)');
    ledgerRefunds.set(e.body.resource_external_id, seen);
  }
  const payoutRows = (x.tables.get('payouts') ?? []).filter(
    (p) => (p.kind === undefined || p.kind === 'PAYOUT') && typeof p.paymentId === 'string',
  );
  const payouts = new Map<string, string | undefined>(
    payoutRows.map((p) => [p.paymentId as string, p.status as string | undefined]),
  );
  const planned = new Set(x.plan.payouts.map((p) => p.paymentId));
  const shards = new Set(payoutRows.filter((p) => planned.has(p.paymentId as string)).map((p) => String(p.shard)));
  const events = x.tables.get('events') ?? [];
  const perResource = new Map<string, number>();
  for (const e of events) perResource.set(String(e.resourceId), (perResource.get(String(e.resourceId)) ?? 0) + 1);
  const stripe = x.sandboxes.stripe.stats().charges;
  const worldpay = x.sandboxes.worldpay.stats().orders;
  const chase = x.sandboxes.chase.stats().charges;
  const lhv = x.payoutsOn ? x.sandboxes.lhv.stats() : undefined;
  const haystacks = new Map<string, string>(x.logs);
  for (const [t, rows] of x.tables) haystacks.set(`${t} table`, JSON.stringify(rows));
  haystacks.set(
    'ledger-events',
    x.consumer
      .events()
      .map((e) => e.raw)
      .join('\n'),
  );
  haystacks.set('DLQs', JSON.stringify([...x.dlq.values()].flat()));
  return checkInvariants({
    plan: x.plan,
    charges,
    refunds,
    payouts,
    stripe,
    worldpay,
    chase,
    lhvInitiations: lhv?.initiationsPerPaymentId,
    lhvRequests: lhv?.initiations ?? 0,
    payoutShards: shards.size,
    outbox: { perResource, pending: events.filter((e) => e.emittedAt === undefined).length, total: events.length },
    ledger: x.consumer.report(),
    ledgerMissing: x.consumer.missingAgainst(perResource),
    ledgerRefunds,
    dlq: x.dlq,
    haystacks,
  });
}

/** What the sandboxes injected, for the summary's header ("injected faults: ..."). */
export function faultsInjected(sb: SandboxServices): { text: string; counts: Record<string, Record<string, number>> } {
  const counts: Record<string, Record<string, number>> = {};
  const parts: string[] = [];
  const label: Record<string, string> = {
    '5xx': '5xx',
    '429': '429',
    reset: 'connection reset',
    timeoutAfterSuccess: 'timeout after success',
    resetAfterSuccess: 'reset after success',
  };
  for (const [name, injector] of [
    ['token service', sb.tokens.faults],
    ['Stripe', sb.stripe.faults],
    ['Worldpay', sb.worldpay.faults],
    ['LHV', sb.lhv.faults],
  ] as const) {
    const { none: _none, ...faults } = injector.injected;
    const nonZero = Object.entries(faults).filter(([, n]) => n > 0);
    counts[name] = Object.fromEntries(nonZero);
    if (nonZero.length > 0) parts.push(`${name}: ${nonZero.map(([k, n]) => `${label[k] ?? k} ×${n}`).join(', ')}`);
  }
  return { text: parts.join(' · ') || 'none', counts };
}
