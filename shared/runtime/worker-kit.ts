import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { GetQueueAttributesCommand, GetQueueUrlCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { createCapacityCounter } from '../aws/capacity.js';
import { createAwsClients, type AwsClients } from '../aws/clients.js';
import { describeAwsFailure } from '../aws/errors.js';
import { guardAwsClient } from '../aws/guard.js';
import { atStartup } from '../aws/startup.js';
import type { HttpGuard } from '../connectors/http.js';
import { Breakers } from '../core/breaker.js';
import { withAwsEndpointCheck } from '../config/common.js';
import { parseEnv } from '../config/env.js';
import { toWorkerConfig, workerEnvShape, workerInvariants, type WorkerConfig } from '../config/worker.js';
import { ConfigError } from '../errors.js';
import { createLogger, type Logger } from '../log/logger.js';
import { FifoConsumer, type FifoConsumerOptions, type HandlerResult } from '../core/consumer.js';
import type { ReceiveGate } from '../core/receive-gate.js';
import { createDynamoIdempotencyStore } from '../core/dynamo-idempotency.js';
import { createDynamoLeaseStore } from '../core/dynamo-leases.js';
import { createDynamoOutcomeStore } from '../core/dynamo-outcomes.js';
import { createLeaseKeeper, type LeaseKeeper } from '../core/lease-keeper.js';
import { createDynamoRowWorkStore } from '../core/dynamo-row-work.js';
import { routeLeases } from '../core/row-lease.js';
import type { IdempotencyStore, LeaseStore, OutcomeStore } from '../core/ports.js';
import { createOnce, type Once } from '../core/work.js';
import { countAwsCalls, createMetrics, type CoreMetrics } from '../ops/metrics.js';
import { createResilienceMetrics, trackBreakers, type ResilienceMetrics } from '../ops/resilience-metrics.js';
import { startOpsServer, type ReadinessCheck } from '../ops/server.js';
import { resourceNames, type QueueKey, type ResourceNames, type TableKey } from '../resources.js';
import { Lifecycle } from './lifecycle.js';

/** Everything a worker's handlers may use; built once by {@link runWorker}, injected everywhere. */
export interface WorkerKit<C> {
  /** The worker's name (workers/index.ts lists them). */
  readonly worker: string;
  /** Unique per process: `<worker>-<host>-<pid>-<random>`; the owner of every lease it takes. */
  readonly ownerId: string;
  readonly config: WorkerConfig;
  /** The worker's own settings, parsed from its extra schema. */
  readonly settings: C;
  readonly log: Logger;
  readonly clients: AwsClients;
  readonly metrics: CoreMetrics;
  readonly names: ResourceNames;
  readonly leases: LeaseStore;
  readonly keeper: LeaseKeeper;
  readonly idempotency: IdempotencyStore;
  readonly outcomes: OutcomeStore;
  /**
   * Exactly-once processing of one request (shared/core/work.ts): under its lease and work item,
   * duplicates answered with their first verdict, every commit fenced by the lease.
   */
  readonly once: Once;
  /** Aborted when shutdown begins: background loops stop taking new work. */
  readonly stopping: AbortSignal;
  /** One circuit breaker per dependency; the AWS clients are already behind theirs. */
  readonly breakers: Breakers;
  readonly resilience: ResilienceMetrics;
  /** What an outbound HTTP client to `service` needs to sit behind its breaker and be measured. */
  httpGuard(service: string): HttpGuard;
  queueUrl(key: QueueKey, dlq?: boolean): Promise<string>;
}

/** A loop the worker runs beside (or instead of) the consumer: emitter, initiator, response poller. */
export interface BackgroundTask {
  readonly name: string;
  start(): void;
  /** Finish or hand back what is claimed; release what is held. */
  stop(graceMs: number): Promise<void>;
}

export interface WorkerPlan<T> {
  /** The queue to consume, if any (the ledger emitter consumes none). */
  readonly consume?: {
    readonly queue: QueueKey;
    readonly parse: (body: string, message: Message) => T;
    readonly handle: FifoConsumerOptions<T>['handle'];
    readonly acceptGate?: () => HandlerResult | undefined;
    /**
     * The worker's own pause switch (payout: receive only while ready and holding a shard). While
     * paused nothing is received; the attempt-budget check and the shutdown order are the same.
     */
    readonly gate?: ReceiveGate;
    /**
     * Dependencies besides DynamoDB that every message needs (e.g. the token service): while one
     * is down the consumer receives nothing. Give each a probe (`breakers.get(name).setProbe`).
     */
    readonly gating?: readonly string[];
    /** Overrides of the consumer settings from config (capture uses pay-connector's names). */
    readonly overrides?: Partial<Pick<FifoConsumerOptions<T>, 'concurrency' | 'batchSize' | 'waitTimeSec' | 'maxAttempts'>>;
  };
  readonly background?: readonly BackgroundTask[];
  readonly checks?: readonly ReadinessCheck[];
  readonly status?: () => Record<string, unknown>;
  /** Extra fields of the `worker started` log line (auth and capture: the enabled processors). */
  readonly started?: Record<string, unknown>;
}

/** The parsed variables of a worker: the common ones and its own. */
export type WorkerEnv<S extends z.ZodRawShape> = z.output<z.ZodObject<typeof workerEnvShape & S>>;

/**
 * A worker, declared: its variables, how they become its settings `C`, and how its handlers and
 * loops are built from the kit (typed with those settings). {@link runWorker} runs it; workers/index.ts
 * lists every worker's spec.
 */
export interface WorkerSpec<S extends z.ZodRawShape, C, T> {
  readonly worker: string;
  /** Extra environment variables of this worker (zod shape keyed by variable name). */
  readonly env?: S;
  /** Extra cross-field checks on the worker's variables. */
  readonly refine?: (env: WorkerEnv<S>, ctx: z.RefinementCtx) => void;
  /** Turn the worker's parsed variables into its settings object. */
  readonly settings: (env: WorkerEnv<S>) => C;
  /** Build handlers and loops from the kit. */
  readonly build: (kit: WorkerKit<C>) => Promise<WorkerPlan<T>> | WorkerPlan<T>;
}

/** Declare a worker with its types inferred (settings flow into `build`'s kit). */
export function defineWorker<S extends z.ZodRawShape, C, T>(spec: WorkerSpec<S, C, T>): WorkerSpec<S, C, T> {
  return spec;
}

/** Parse a worker's whole configuration once (common + its own), frozen. Throws ConfigError. */
export function loadConfig<S extends z.ZodRawShape>(
  spec: Pick<WorkerSpec<S, unknown, unknown>, 'env' | 'refine'>,
  env: Record<string, string | undefined> = process.env,
) {
  // The endpoint/credentials check runs even when other variables failed, so a bare environment is
  // told about AWS_ENDPOINT_URL as well as AWS_REGION.
  const schema = withAwsEndpointCheck(
    z.object({ ...workerEnvShape, ...(spec.env ?? ({} as S)) }).superRefine((v, ctx) => {
      workerInvariants(v as never, ctx);
      spec.refine?.(v as never, ctx);
    }),
  );
  const parsed = parseEnv(schema, env) as z.output<z.ZodObject<typeof workerEnvShape & S>>;
  return { parsed, config: toWorkerConfig(parsed as never) };
}

/** Standard readiness checks: the source queue answers, and a row read from each table. */
export function sqsCheck(sqs: SQSClient, queueUrl: () => Promise<string>): ReadinessCheck {
  return {
    name: 'sqs',
    check: async (signal) => {
      await sqs.send(new GetQueueAttributesCommand({ QueueUrl: await queueUrl(), AttributeNames: ['QueueArn'] }), { abortSignal: signal });
    },
  };
}

export function tableCheck(kit: Pick<WorkerKit<unknown>, 'clients' | 'names'>, table: TableKey, key: Record<string, unknown>): ReadinessCheck {
  return {
    name: `dynamodb:${table}`,
    check: async (signal) => {
      await kit.clients.doc.send(new GetCommand({ TableName: kit.names.table(table), Key: key }), { abortSignal: signal });
    },
  };
}

/**
 * The composition root of a worker process: parse config (exit 2 with one line per problem),
 * build clients, stores, metrics, the ops server and the consumer, install signal handling, and
 * run until SIGTERM. Shutdown order: readiness goes 503 -> consumer stops receiving, lets its last
 * long poll finish, drains within the grace period and hands back the rest -> background loops
 * stop -> leases released -> ops server closed -> clients destroyed -> logs flushed.
 */
export async function runWorker<S extends z.ZodRawShape, C, T>(spec: WorkerSpec<S, C, T>): Promise<void> {
  let loaded: ReturnType<typeof loadConfig<S>>;
  try {
    loaded = loadConfig(spec);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`payfleet worker ${spec.worker}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const { parsed, config } = loaded;
  const settings = spec.settings(parsed);
  const log = createLogger({ worker: spec.worker, level: config.logLevel });
  const ownerId = `${spec.worker}-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const lifecycle = new Lifecycle({ logger: log, forceAfterMs: config.forceExitMs });
  lifecycle.installSignalHandlers();

  const names = resourceNames(config.aws.resourcePrefix);
  const metrics = createMetrics(spec.worker);
  const clients = createAwsClients(config.aws, {
    maxSockets: config.consumer.concurrency + 20,
    ...(config.aws.consumedCapacity ? { consumedCapacity: createCapacityCounter(metrics.registry) } : {}),
  });
  countAwsCalls(clients.sqs, 'sqs', metrics.awsCalls);
  countAwsCalls(clients.dynamodb, 'dynamodb', metrics.awsCalls);
  const breakers = new Breakers();
  const resilience = createResilienceMetrics(metrics.registry);
  trackBreakers(breakers, resilience, log);
  guardAwsClient(clients.sqs, 'sqs', breakers.get('sqs'), resilience);
  guardAwsClient(clients.dynamodb, 'dynamodb', breakers.get('dynamodb'), resilience);
  // The half-open trial for DynamoDB: a read of a row that never exists, through the guarded client.
  breakers.get('dynamodb').setProbe((signal) =>
    clients.doc.send(new GetCommand({ TableName: names.table('leases'), Key: { leaseKey: 'readiness-probe' } }), { abortSignal: signal }),
  );
  const leases = createDynamoLeaseStore({ doc: clients.doc, tableName: names.table('leases') });
  // Row leases (a charge's lease on the charge row) are renewed and released on their row.
  const rows = createDynamoRowWorkStore({ doc: clients.doc, names });
  const keeper = createLeaseKeeper({
    store: routeLeases(leases, rows),
    leaseMs: config.lease.leaseMs,
    renewMs: config.lease.renewMs,
    onLost: (lease, reason) => {
      metrics.leaseConflicts.inc({ kind: 'LEASE_LOST' });
      log.warn({ lease: lease.key, reason: String(reason) }, 'lease lost');
    },
  });
  const idempotency = createDynamoIdempotencyStore({ doc: clients.doc, tableName: names.table('idempotency') });
  const outcomes = createDynamoOutcomeStore({ doc: clients.doc, names, ledgerShards: config.ledgerShards });
  const stopping = new AbortController();
  const urls = new Map<string, Promise<string>>();
  const queueUrl = (key: QueueKey, dlq = false) => {
    const name = dlq ? names.dlq(key) : names.queue(key);
    let p = urls.get(name);
    if (!p) {
      p = atStartup(`looking up queue ${name}`, () => clients.sqs.send(new GetQueueUrlCommand({ QueueName: name })), { log }).then(
        (r) => r.QueueUrl!,
        (err: unknown) => {
          urls.delete(name);
          // Bad credentials, an unreachable endpoint, a missing queue (a prefix typo, or a new
          // environment) and a refused permission each say what to do (shared/aws/errors.ts).
          const target = {
            service: 'sqs' as const,
            resource: `queue ${name}`,
            region: config.aws.region,
            ...(config.aws.sqsEndpoint ? { endpoint: config.aws.sqsEndpoint } : {}),
            prefix: names.prefix,
            ...(process.env.AWS_PROFILE ? { profile: process.env.AWS_PROFILE } : {}),
          };
          throw describeAwsFailure(err, target) ?? new Error(`cannot look up queue ${name}: ${(err as Error).name}: ${(err as Error).message}`, { cause: err });
        },
      );
      urls.set(name, p);
    }
    return p;
  };

  const kit: WorkerKit<C> = {
    worker: spec.worker,
    ownerId,
    config,
    settings,
    log,
    clients,
    metrics,
    names,
    leases,
    keeper,
    idempotency,
    outcomes,
    once: createOnce({ keeper, idempotency, outcomes, rows, ownerId, attemptDeadlineMs: config.lease.leaseMs, leaseMs: config.lease.leaseMs }),
    stopping: stopping.signal,
    breakers,
    resilience,
    httpGuard: (service) => ({ breaker: breakers.get(service), service, metrics: resilience }),
    queueUrl,
  };
  const plan = await spec.build(kit);

  let consumer: FifoConsumer<T> | undefined;
  if (plan.consume) {
    const c = plan.consume;
    await checkAttemptBudget(clients.sqs, await queueUrl(c.queue), names.queue(c.queue), c.overrides?.maxAttempts ?? config.consumer.maxAttempts, spec.worker, log);
    consumer = new FifoConsumer<T>({
      sqs: clients.sqs,
      queueUrl: await queueUrl(c.queue),
      dlqUrl: await queueUrl(c.queue, true),
      queueName: names.queue(c.queue),
      worker: spec.worker,
      parse: c.parse,
      handle: c.handle,
      concurrency: c.overrides?.concurrency ?? config.consumer.concurrency,
      batchSize: c.overrides?.batchSize ?? config.consumer.batchSize,
      waitTimeSec: c.overrides?.waitTimeSec ?? config.consumer.waitTimeSec,
      visibilityTimeoutSec: config.consumer.visibilityTimeoutSec,
      heartbeatSec: config.consumer.heartbeatSec,
      maxAttempts: c.overrides?.maxAttempts ?? config.consumer.maxAttempts,
      backoff: { baseMs: config.consumer.retryBaseMs, maxMs: config.consumer.retryMaxMs },
      logger: log,
      metrics,
      breakers,
      gating: ['dynamodb', ...(c.gating ?? [])],
      resilience,
      ...(c.acceptGate ? { acceptGate: c.acceptGate } : {}),
      ...(c.gate ? { gate: c.gate } : {}),
    });
  }
  const checks: ReadinessCheck[] = [...(plan.checks ?? [])];
  if (plan.consume && !checks.some((c) => c.name === 'sqs')) {
    const q = plan.consume.queue;
    checks.push(sqsCheck(clients.sqs, () => queueUrl(q)));
  }
  if (!checks.some((c) => c.name.startsWith('dynamodb'))) checks.push(tableCheck(kit, 'leases', { leaseKey: 'readiness-probe' }));
  const ops = await startOpsServer({
    port: config.opsPort,
    registry: metrics.registry,
    checks,
    logger: log,
    status: () => ({
      breakers: breakers.snapshot(),
      ...(consumer ? { consumer: { inFlight: consumer.inFlight, parked: consumer.parkedCount, pausedFor: consumer.pausedFor ?? null } } : {}),
      ...plan.status?.(),
    }),
  });

  lifecycle
    .onShutdown('readiness', async () => {
      ops.setDraining();
      stopping.abort();
    })
    .onShutdown('consumer', async () => consumer?.close(config.shutdownGraceMs))
    .onShutdown('background', async () => {
      await Promise.all((plan.background ?? []).map((t) => t.stop(config.shutdownGraceMs)));
    })
    .onShutdown('leases', async () => keeper.releaseAll())
    .onShutdown('ops', async () => ops.close())
    .onShutdown('clients', async () => {
      breakers.dispose();
      clients.destroy();
    })
    .onShutdown('logs', async () => log.flush());

  consumer?.start();
  for (const task of plan.background ?? []) task.start();
  log.info({ ownerId, opsPort: ops.port, prefix: names.prefix, concurrency: config.consumer.concurrency, ...plan.started }, 'worker started');
}

/**
 * Refuse to start when the consumer's attempt budget is not below the queue's redrive
 * `maxReceiveCount`: SQS would then move a message to the DLQ itself, before the worker could,
 * and without the reason attributes operators rely on (docs/contract.md §6).
 */
export async function checkAttemptBudget(
  sqs: SQSClient,
  queueUrl: string,
  queueName: string,
  maxAttempts: number,
  worker: string,
  log?: Pick<Logger, 'warn'>,
): Promise<void> {
  const read = () => sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }));
  const attrs = (await atStartup(`reading the redrive policy of ${queueName}`, read, { log })).Attributes;
  const policy = attrs?.RedrivePolicy ? (JSON.parse(attrs.RedrivePolicy) as { maxReceiveCount?: number | string }) : undefined;
  const receives = Number(policy?.maxReceiveCount ?? Number.POSITIVE_INFINITY);
  if (maxAttempts >= receives) {
    process.stderr.write(
      `payfleet worker ${worker}: invalid configuration:\n  - PAYFLEET_MAX_ATTEMPTS: must be below the maxReceiveCount (${receives}) of ${queueName}, ` +
        'or SQS dead-letters messages before the worker can, without a reason (raise PAYFLEET_MAX_RECEIVE_COUNT and re-run bootstrap, or lower the attempts)\n',
    );
    process.exit(2);
  }
}
