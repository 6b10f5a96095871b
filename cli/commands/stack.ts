import type { Command } from 'commander';
import { printTable } from './output.js';

/** `payfleet stack up`: the embedded emulators on 127.0.0.1, bootstrapped, until interrupted. */
export function registerStack(program: Command): void {
  const stack = program.command('stack').description('the embedded SQS + DynamoDB emulators');
  stack
    .command('up')
    .description('start fauxqs and DynamoDB Local on 127.0.0.1, create every queue and table, print the endpoints, run until Ctrl-C')
    .option('--json', 'print the endpoints as one JSON line')
    .option('--sqs-port <port>', 'SQS port (default: a free port)', (v) => Number(v))
    .option('--dynamodb-port <port>', 'DynamoDB port (default: a free port)', (v) => Number(v))
    .action(async (opts: { json?: boolean; sqsPort?: number; dynamodbPort?: number }) => {
      // Loaded here, not at CLI start: the emulators and the AWS SDK are heavy.
      const [{ createAwsClients }, { bootstrap }, { parseEnv }, { bootstrapEnvSchema }, { EMBEDDED_CREDENTIALS, startEmbeddedStack }] =
        await Promise.all([
          import('../../shared/aws/clients.js'),
          import('../bootstrap.js'),
          import('../../shared/config/env.js'),
          import('../../shared/config/common.js'),
          import('../embedded/stack.js'),
        ]);
      const env = parseEnv(bootstrapEnvSchema, { AWS_REGION: 'eu-west-2', ...process.env });
      const embedded = await startEmbeddedStack({
        ...(opts.sqsPort ? { sqsPort: opts.sqsPort } : {}),
        ...(opts.dynamodbPort ? { dynamodbPort: opts.dynamodbPort } : {}),
      });
      let stopping = false;
      const stop = async (code: number) => {
        if (stopping) return;
        stopping = true;
        await embedded.stop();
        process.exit(code);
      };
      process.on('SIGINT', () => void stop(0));
      process.on('SIGTERM', () => void stop(0));
      try {
        const clients = createAwsClients(
          {
            region: embedded.region,
            sqsEndpoint: embedded.sqsEndpoint,
            dynamodbEndpoint: embedded.dynamodbEndpoint,
            resourcePrefix: env.PAYFLEET_RESOURCE_PREFIX,
          },
          { credentials: EMBEDDED_CREDENTIALS },
        );
        const report = await bootstrap(clients, {
          prefix: env.PAYFLEET_RESOURCE_PREFIX,
          maxReceiveCount: env.PAYFLEET_MAX_RECEIVE_COUNT,
          captureMaxReceiveCount: env.PAYFLEET_CAPTURE_MAX_RECEIVE_COUNT,
          payoutShards: env.PAYFLEET_PAYOUT_SHARDS,
          ledgerShards: env.PAYFLEET_LEDGER_SHARDS,
        });
        clients.destroy();
        const info = {
          region: embedded.region,
          sqsEndpoint: embedded.sqsEndpoint,
          dynamodbEndpoint: embedded.dynamodbEndpoint,
          resourcePrefix: env.PAYFLEET_RESOURCE_PREFIX,
          env: { ...embedded.env, PAYFLEET_RESOURCE_PREFIX: env.PAYFLEET_RESOURCE_PREFIX },
          queueUrls: report.queueUrls,
        };
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(info)}\n`);
        } else {
          process.stdout.write(`payfleet embedded stack is up (Ctrl-C to stop)\n\n`);
          printTable(
            ['what', 'value'],
            [
              ['SQS endpoint', embedded.sqsEndpoint],
              ['DynamoDB endpoint', embedded.dynamodbEndpoint],
              ['region', embedded.region],
              ['resource prefix', env.PAYFLEET_RESOURCE_PREFIX],
            ],
          );
          process.stdout.write('\nqueues:\n');
          printTable(['name', 'url'], Object.entries(report.queueUrls));
          process.stdout.write('\nto point a worker or the CLI at it:\n');
          for (const [k, v] of Object.entries(info.env)) process.stdout.write(`  export ${k}=${v}\n`);
        }
      } catch (err) {
        process.stderr.write(`payfleet stack up: ${err instanceof Error ? err.message : String(err)}\n`);
        await stop(1);
      }
      // Stay up until a signal arrives.
      await new Promise(() => undefined);
    });
}
