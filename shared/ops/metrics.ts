import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The fleet's Prometheus metrics, one registry per process. Every metric carries `worker`.
 * docs/operations.md explains each and the alert it feeds.
 */
export interface CoreMetrics {
  readonly registry: Registry;
  readonly received: Counter<'queue'>;
  readonly succeeded: Counter<'queue'>;
  readonly retried: Counter<'queue' | 'code'>;
  readonly deferred: Counter<'queue'>;
  readonly deadLettered: Counter<'queue' | 'code'>;
  readonly leaseConflicts: Counter<'kind'>;
  readonly commitConflicts: Counter<'part'>;
  readonly inFlight: Gauge<'queue'>;
  readonly processing: Histogram<'queue' | 'outcome'>;
  readonly awsCalls: Counter<'service' | 'command'>;
}

export function createMetrics(worker: string, options: { defaultMetrics?: boolean } = {}): CoreMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ worker });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'payfleet_' });
  const registers = [registry];
  return {
    registry,
    received: new Counter({ name: 'payfleet_messages_received_total', help: 'Messages received from SQS', labelNames: ['queue'], registers }),
    succeeded: new Counter({ name: 'payfleet_messages_succeeded_total', help: 'Messages processed and deleted', labelNames: ['queue'], registers }),
    retried: new Counter({
      name: 'payfleet_messages_retried_total',
      help: 'Attempts that failed transiently and were deferred with backoff',
      labelNames: ['queue', 'code'],
      registers,
    }),
    deferred: new Counter({
      name: 'payfleet_messages_deferred_total',
      help: 'Messages deferred on purpose (scheduled retry, not ready) without failing',
      labelNames: ['queue'],
      registers,
    }),
    deadLettered: new Counter({
      name: 'payfleet_messages_dead_lettered_total',
      help: 'Messages sent to the DLQ, by error code',
      labelNames: ['queue', 'code'],
      registers,
    }),
    leaseConflicts: new Counter({
      name: 'payfleet_lease_conflicts_total',
      help: 'Leases found held by another owner, or lost while working',
      labelNames: ['kind'],
      registers,
    }),
    commitConflicts: new Counter({
      name: 'payfleet_commit_conflicts_total',
      help: 'Commits refused by a condition (version, fence, work item)',
      labelNames: ['part'],
      registers,
    }),
    inFlight: new Gauge({ name: 'payfleet_messages_in_flight', help: 'Messages held by this process', labelNames: ['queue'], registers }),
    awsCalls: new Counter({
      name: 'payfleet_aws_calls_total',
      help: 'Requests sent to AWS (or the emulators), by service and command',
      labelNames: ['service', 'command'],
      registers,
    }),
    processing: new Histogram({
      name: 'payfleet_processing_seconds',
      help: 'Time from start of handling to its outcome',
      labelNames: ['queue', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  };
}

/** Count every request a client sends into `counter` (an SDK middleware; installed once per client). */
export function countAwsCalls(
  client: { middlewareStack: { add: (mw: never, opts: { step: 'initialize'; name: string }) => void } },
  service: string,
  counter: Counter<'service' | 'command'>,
): void {
  const mw = (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
    counter.inc({ service, command: context.commandName ?? 'unknown' });
    return next(args);
  };
  client.middlewareStack.add(mw as never, { step: 'initialize', name: 'payfleetAwsCallCounter' });
}
