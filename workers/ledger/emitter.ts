/**
 * The ledger emitter, assembled from injected clients: the DynamoDB outbox and
 * membership adapters, the SQS publisher, one ShardEmitter (the ordering core), the ShardManager
 * (leases, rebalancing, one loop per held shard) and the Sweeper. workers/ledger/main.ts builds it
 * from the worker kit; tests and bench/ledger.ts build it in-process.
 */
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Registry } from 'prom-client';
import type { LeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { LeaseStore } from '../../shared/core/ports.js';
import type { Logger } from '../../shared/log/logger.js';
import type { ResourceNames } from '../../shared/resources.js';
import type { BackgroundTask } from '../../shared/runtime/worker-kit.js';
import type { LedgerSettings } from './config.js';
import { createDynamoLedgerOutbox, createDynamoMembership } from './dynamo-outbox.js';
import { createLedgerMetrics, type LedgerMetrics } from './metrics.js';
import type { LedgerOutbox, LedgerPublisher, Membership } from './ports.js';
import { createShardEmitter, type LedgerHooks, type ShardEmitter } from './shard-emitter.js';
import { createShardManager, type ShardManager } from './shard-manager.js';
import { createSqsLedgerPublisher } from './sqs-publisher.js';
import { createSweeper, type Sweeper } from './sweeper.js';

export interface LedgerEmitterDeps {
  readonly doc: DynamoDBDocumentClient;
  readonly sqs: Pick<SQSClient, 'send'>;
  readonly names: ResourceNames;
  /** URL of ledger-events.fifo (resolved lazily, cached by the caller). */
  readonly queueUrl: () => Promise<string>;
  readonly keeper: LeaseKeeper;
  readonly leases: Pick<LeaseStore, 'inspect'>;
  readonly ownerId: string;
  /** PAYFLEET_LEDGER_SHARDS: the same value as bootstrap and every worker. */
  readonly ledgerShards: number;
  readonly leaseMs: number;
  readonly settings: LedgerSettings;
  readonly registry: Registry;
  readonly log: Logger;
  readonly hooks?: LedgerHooks;
  readonly now?: () => number;
  /** Replace an adapter (tests: a publisher that fails some entries). */
  readonly publisher?: LedgerPublisher;
  readonly outbox?: LedgerOutbox;
  readonly membership?: Membership;
}

export interface LedgerEmitter {
  /** The shard manager, then the sweeper (when enabled). */
  readonly tasks: readonly BackgroundTask[];
  readonly manager: ShardManager;
  readonly sweeper: Sweeper | undefined;
  readonly emitter: ShardEmitter;
  readonly outbox: LedgerOutbox;
  readonly metrics: LedgerMetrics;
  /** For /health/ready's body. */
  status(): Record<string, unknown>;
}

export function createLedgerEmitter(deps: LedgerEmitterDeps): LedgerEmitter {
  const { settings, log } = deps;
  const metrics = createLedgerMetrics(deps.registry);
  const outbox = deps.outbox ?? createDynamoLedgerOutbox({ doc: deps.doc, names: deps.names });
  const publisher = deps.publisher ?? createSqsLedgerPublisher({ sqs: deps.sqs, queueUrl: deps.queueUrl });
  const membership =
    deps.membership ?? createDynamoMembership({ doc: deps.doc, names: deps.names, ...(deps.now ? { now: deps.now } : {}) });
  const emitter = createShardEmitter({
    outbox,
    publisher,
    metrics,
    log,
    settings,
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.hooks ? { hooks: deps.hooks } : {}),
  });
  const common = {
    keeper: deps.keeper,
    emitter,
    metrics,
    log,
    ownerId: deps.ownerId,
    ledgerShards: deps.ledgerShards,
    ...(deps.now ? { now: deps.now } : {}),
  };
  const manager = createShardManager({ ...common, membership, leaseMs: deps.leaseMs, settings });
  const sweeper = settings.sweeper ? createSweeper({ ...common, leases: deps.leases, outbox, settings }) : undefined;
  return {
    tasks: sweeper ? [manager, sweeper] : [manager],
    manager,
    sweeper,
    emitter,
    outbox,
    metrics,
    status: () => ({ ledgerShardsHeld: manager.held().map((h) => h.shard), ledgerEmitters: manager.members() }),
  };
}
