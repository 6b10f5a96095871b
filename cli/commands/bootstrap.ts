import type { Command } from 'commander';
import { printJson, printTable } from './output.js';

/** `payfleet bootstrap`: create or verify every queue, DLQ, table and shard row. */
export function registerBootstrap(program: Command): void {
  program
    .command('bootstrap')
    .description('create or verify every queue, DLQ and table on the configured endpoint (idempotent)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { json?: boolean }) => {
      // Loaded here, not at CLI start: `payfleet --help` must not pay for the AWS SDK.
      const [{ bootstrap }, { bootstrapEnvSchema, toAwsConfig, withAwsEndpointCheck }, { parseEnv }, { BOOTSTRAP_REASONS, openCommandContext }] =
        await Promise.all([
          import('../bootstrap.js'),
          import('../../shared/config/common.js'),
          import('../../shared/config/env.js'),
          import('./context.js'),
        ]);
      const env = parseEnv(withAwsEndpointCheck(bootstrapEnvSchema));
      const aws = toAwsConfig(env);
      // Failures say what they are (bad credentials, an unreachable endpoint, a refused permission);
      // "does not exist" stays the SDK's own: that is how bootstrap knows what to create.
      const { clients } = openCommandContext(aws, BOOTSTRAP_REASONS);
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
