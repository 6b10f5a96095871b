import type { Command } from 'commander';
import { createAwsClients } from '../../shared/aws/clients.js';
import { bootstrap } from '../../shared/bootstrap.js';
import { bootstrapEnvSchema, toAwsConfig, withAwsEndpointCheck } from '../../shared/config/common.js';
import { parseEnv } from '../../shared/config/env.js';
import { printJson, printTable } from './output.js';

/** `payfleet bootstrap`: create or verify every queue, DLQ, table and shard row. */
export function registerBootstrap(program: Command): void {
  program
    .command('bootstrap')
    .description('create or verify every queue, DLQ and table on the configured endpoint (idempotent)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      const env = parseEnv(withAwsEndpointCheck(bootstrapEnvSchema));
      const aws = toAwsConfig(env);
      const clients = createAwsClients(aws);
      try {
        const report = await bootstrap(clients, {
          prefix: aws.resourcePrefix,
          maxReceiveCount: env.PAYFLEET_MAX_RECEIVE_COUNT,
          captureMaxReceiveCount: env.PAYFLEET_CAPTURE_MAX_RECEIVE_COUNT,
          payoutShards: env.PAYFLEET_PAYOUT_SHARDS,
          ledgerShards: env.PAYFLEET_LEDGER_SHARDS,
        });
        if (opts.json) printJson(report);
        else {
          printTable(['resource', 'result', 'detail'], report.changes.map((c) => [c.resource, c.kind, c.detail ?? '']));
          process.stdout.write(report.unchanged ? '\nnothing to do: every resource already exists as configured\n' : '\ndone\n');
        }
      } finally {
        clients.destroy();
      }
    });
}
