import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
  /** Always 1; its labels say what runs (a deploy half rolled out shows two versions). */
  readonly buildInfo: Gauge<'version' | 'node_version' | 'commit'>;
}

/** What a process is running: `payfleet_build_info`'s labels. */
export interface BuildInfo {
  /** package.json `version`, `unknown` when it cannot be read. */
  readonly version: string;
  /** `process.version`, e.g. `v20.20.2`. */
  readonly nodeVersion: string;
  /** PAYFLEET_BUILD_COMMIT (set by the image build, `--build-arg PAYFLEET_BUILD_COMMIT=$(git rev-parse HEAD)`), else `unknown`. */
  readonly commit: string;
}

let packageVersion: string | undefined;

/**
 * The version of the payfleet package this module belongs to. Looked up by walking up from this
 * file, because the depth differs between a checkout (shared/ops/) and the image (dist/shared/ops/,
 * with package.json copied next to dist/). Read once; a build info label never changes in a process.
 */
function ownPackageVersion(): string {
  packageVersion ??= findPackageVersion(dirname(fileURLToPath(import.meta.url)));
  return packageVersion;
}

function findPackageVersion(start: string): string {
  let dir = start;
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'payfleet' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not here (or unreadable): look one level up.
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/** This process's build info. `env` is read for PAYFLEET_BUILD_COMMIT only (build metadata, not configuration). */
export function buildInfo(env: Readonly<Record<string, string | undefined>> = process.env): BuildInfo {
  const commit = env.PAYFLEET_BUILD_COMMIT?.trim();
  return { version: ownPackageVersion(), nodeVersion: process.version, commit: commit ? commit : 'unknown' };
}

export function createMetrics(worker: string, options: { defaultMetrics?: boolean; build?: BuildInfo } = {}): CoreMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ worker });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'payfleet_' });
  const registers = [registry];
  const build = options.build ?? buildInfo();
  const buildInfoGauge = new Gauge({
    name: 'payfleet_build_info',
    help: 'Always 1: the payfleet version, Node.js version and commit this process runs',
    labelNames: ['version', 'node_version', 'commit'],
    registers,
  });
  buildInfoGauge.set({ version: build.version, node_version: build.nodeVersion, commit: build.commit }, 1);
  return {
    registry,
    buildInfo: buildInfoGauge,
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
