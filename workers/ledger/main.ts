/**
 * `payfleet worker ledger`: the ledger emitter process. It consumes no queue: it reads the outbox
 * (events table) under ledger-shard leases and publishes to ledger-events.fifo in per-resource
 * order (workers/ledger/*; docs/design.md "## Ledger emitter"). Nothing runs at import time.
 */
import { ledgerEnvShape, ledgerInvariants, toLedgerSettings } from './config.js';
import { createLedgerEmitter } from './emitter.js';
import type { LedgerHooks } from './shard-emitter.js';
import { defineWorker, runWorker, sqsCheck, tableCheck } from '../../shared/runtime/worker-kit.js';

export interface LedgerMainOptions {
  /** Fault-injection points for process-level tests; never set by the CLI. */
  readonly hooks?: LedgerHooks;
}

export function ledgerWorker(options: LedgerMainOptions = {}) {
  return defineWorker({
    worker: 'ledger',
    env: ledgerEnvShape,
    refine: ledgerInvariants,
    settings: toLedgerSettings,
    build: async (kit) => {
      const { settings } = kit;
      const queueUrl = () => kit.queueUrl('ledger-events');
      // Fail at start, with bootstrap's name in the message, rather than at the first send.
      await queueUrl();
      const ledger = createLedgerEmitter({
        doc: kit.clients.doc,
        sqs: kit.clients.sqs,
        names: kit.names,
        queueUrl,
        keeper: kit.keeper,
        leases: kit.leases,
        ownerId: kit.ownerId,
        ledgerShards: kit.config.ledgerShards,
        leaseMs: kit.config.lease.leaseMs,
        settings,
        registry: kit.metrics.registry,
        log: kit.log,
        ...(options.hooks ? { hooks: options.hooks } : {}),
      });
      kit.log.info(
        {
          ledgerShards: kit.config.ledgerShards,
          maxShardsPerProcess: settings.maxShardsPerProcess,
          sweeper: settings.sweeper,
          sweepAgeMs: settings.sweepAgeMs,
        },
        'ledger emitter configured',
      );
      return {
        background: ledger.tasks,
        checks: [
          tableCheck(kit, 'events', { resourceId: 'readiness-probe', sequence: 0 }),
          tableCheck(kit, 'leases', { leaseKey: 'readiness-probe' }),
          sqsCheck(kit.clients.sqs, queueUrl),
        ],
        status: ledger.status,
      };
    },
  });
}

/** Run the ledger emitter in this process until SIGTERM. */
export async function main(options: LedgerMainOptions = {}): Promise<void> {
  await runWorker(ledgerWorker(options));
}
