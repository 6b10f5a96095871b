/**
 * Shared pieces of the ledger tests on the embedded stack: writing events through the real
 * OutcomeStore.commit, building an in-process emitter, reading outbox rows back.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import { Registry } from 'prom-client';
import { createDynamoLeaseStore } from '../../../shared/core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../../../shared/core/dynamo-outcomes.js';
import { createLeaseKeeper, type LeaseKeeper } from '../../../shared/core/lease-keeper.js';
import type { LeaseStore, OutcomeStore } from '../../../shared/core/ports.js';
import { createLogger } from '../../../shared/log/logger.js';
import { DEFAULT_LEDGER_SETTINGS, type LedgerSettings } from '../../../workers/ledger/config.js';
import { createDynamoLedgerOutbox } from '../../../workers/ledger/dynamo-outbox.js';
import { createLedgerEmitter, type LedgerEmitter, type LedgerEmitterDeps } from '../../../workers/ledger/emitter.js';
import type { OutboxEvent } from '../../../workers/ledger/ports.js';
import type { LedgerHooks } from '../../../workers/ledger/shard-emitter.js';
import { mapLimit } from '../../../workers/ledger/util.js';
import type { TestStack } from '../../support/stack.js';

export const EVENT_TYPES = [
  'PAYMENT_CREATED',
  'AUTHORISATION_SUCCEEDED',
  'USER_APPROVED_FOR_CAPTURE',
  'CAPTURE_SUBMITTED',
  'CAPTURE_CONFIRMED',
];

export function outcomeStore(stack: TestStack, options: { skewMs?: number; ledgerShards?: number } = {}): OutcomeStore {
  const skew = options.skewMs ?? 0;
  return createDynamoOutcomeStore({
    doc: stack.clients.doc,
    names: stack.names,
    ledgerShards: options.ledgerShards ?? 8,
    now: () => Date.now() + skew,
  });
}

/**
 * Commit `perResource` state changes (one event each) for every id, through the real commit.
 * Changes of one resource go through `stores` in turn, so a resource's events come from writers
 * with different clocks (the index order then disagrees with the sequence order).
 */
export async function writeEvents(
  stores: readonly OutcomeStore[],
  ids: readonly string[],
  perResource: number,
  from = 0,
  concurrency = 8,
): Promise<void> {
  await mapLimit(ids, concurrency, async (id) => {
    for (let k = from; k < from + perResource; k++) {
      const store = stores[k % stores.length]!;
      await store.commit({
        changes: [
          {
            table: 'charges',
            key: { chargeId: id },
            expectedVersion: k,
            set: { status: `S${k}`, amount: 1250 },
            resource: { type: 'payment', id, gatewayAccountId: 'gw-test', live: false },
            currentEventSeq: k,
            events: [{ eventType: EVENT_TYPES[k % EVENT_TYPES.length]!, details: { step: k + 1, amount: 1250 } }],
          },
        ],
      });
    }
  });
}

export function expectedCounts(ids: readonly string[], perResource: number): Map<string, number> {
  return new Map(ids.map((id) => [id, perResource]));
}

export function logCollector(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    worker: 'ledger',
    level,
    destination: {
      write(line: string) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  return { log, lines };
}

export interface InProcessEmitter {
  readonly ledger: LedgerEmitter;
  readonly keeper: LeaseKeeper;
  readonly registry: Registry;
  readonly lines: Record<string, unknown>[];
  readonly ownerId: string;
  stop(): Promise<void>;
}

/** An emitter as the worker builds it, in this process (its own keeper and registry). */
export function inProcessEmitter(
  stack: TestStack,
  options: {
    settings?: Partial<LedgerSettings>;
    ownerId?: string;
    sqs?: SQSClient;
    ledgerShards?: number;
    leaseMs?: number;
    hooks?: LedgerHooks;
    /** Wrap the lease store (tests: a process whose lease calls stop landing, as if paused). */
    wrapLeases?: (store: LeaseStore) => LeaseStore;
  } & Partial<Pick<LedgerEmitterDeps, 'publisher'>> = {},
): InProcessEmitter {
  const leaseMs = options.leaseMs ?? 3000;
  const dynamoStore = createDynamoLeaseStore({ doc: stack.clients.doc, tableName: stack.names.table('leases') });
  const store = options.wrapLeases ? options.wrapLeases(dynamoStore) : dynamoStore;
  const keeper = createLeaseKeeper({ store, leaseMs, renewMs: leaseMs / 4 });
  const registry = new Registry();
  const { log, lines } = logCollector();
  const ownerId = options.ownerId ?? `ledger-test-${Math.random().toString(36).slice(2, 8)}`;
  const queueUrl = stack.url(stack.names.queue('ledger-events'));
  const ledger = createLedgerEmitter({
    doc: stack.clients.doc,
    sqs: options.sqs ?? stack.clients.sqs,
    names: stack.names,
    queueUrl: async () => queueUrl,
    keeper,
    leases: store,
    ownerId,
    ledgerShards: options.ledgerShards ?? 8,
    leaseMs,
    settings: { ...DEFAULT_LEDGER_SETTINGS, pollMs: 200, rebalanceMs: 300, retryBaseMs: 50, sweeper: false, ...options.settings },
    registry,
    log,
    ...(options.publisher ? { publisher: options.publisher } : {}),
    ...(options.hooks ? { hooks: options.hooks } : {}),
  });
  return {
    ledger,
    keeper,
    registry,
    lines,
    ownerId,
    async stop() {
      await Promise.all(ledger.tasks.map((t) => t.stop(3000)));
      await keeper.releaseAll();
    },
  };
}

export async function outboxRows(stack: TestStack, ids: readonly string[]): Promise<OutboxEvent[]> {
  const outbox = createDynamoLedgerOutbox({ doc: stack.clients.doc, names: stack.names });
  return (await mapLimit(ids, 8, (id) => outbox.resourceEvents(id))).flat();
}

/** A metric's value(s) from a registry. */
export async function metricValues(registry: Registry, name: string) {
  const m = registry.getSingleMetric(name);
  return m ? (await m.get()).values : [];
}
