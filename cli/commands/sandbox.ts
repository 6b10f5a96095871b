import { InvalidArgumentError, type Command } from 'commander';
import { sandboxWorkerEnv } from './local-env.js';
import { printTable, shellExport } from './output.js';

function whole(max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > max)
      throw new InvalidArgumentError(`must be a whole number from 0 to ${max}`);
    return n;
  };
}
const port = whole(65535);

interface SandboxOptions {
  host: string;
  tokenServicePort?: number;
  stripePort?: number;
  worldpayPort?: number;
  chasePort?: number;
  lhvPort?: number;
  lhvResponseDelayMs?: number;
  json?: boolean;
}

/**
 * `payfleet sandbox`: the Payment Token Service, Stripe, Worldpay, Chase and LHV sandboxes in one process
 * (docker-compose's `sandbox` service; a local stand-in for every service the fleet calls).
 */
export function registerSandbox(program: Command): void {
  program
    .command('sandbox')
    .description('run the sandbox Payment Token Service, Stripe, Worldpay, Chase and LHV Connect in one process until Ctrl-C')
    .option('--host <address>', 'interface to listen on (0.0.0.0 inside a container)', '127.0.0.1')
    .option('--token-service-port <port>', 'Payment Token Service port (default: a free port)', port)
    .option('--stripe-port <port>', 'Stripe port (default: a free port)', port)
    .option('--worldpay-port <port>', 'Worldpay port (default: a free port)', port)
    .option('--chase-port <port>', 'Chase (J.P. Morgan Payments) port, token endpoint included (default: a free port)', port)
    .option('--lhv-port <port>', 'LHV Connect port (default: a free port)', port)
    .option('--lhv-response-delay-ms <ms>', 'delay before LHV makes a pain.002 report available', whole(3_600_000))
    .option('--json', 'print the URLs and worker variables as one JSON line')
    .addHelpText(
      'after',
      `
Tokens are deterministic (tok_<card number>_<anything>, tok_expired_<anything>); magic cards and
creditor names are in docs/connectors.md, docs/worldpay.md and docs/lhv.md. Every service also
serves GET /__sandbox/stats (what it actually did) and GET|POST|DELETE /__sandbox/faults.`,
    )
    .action(async (opts: SandboxOptions) => {
      const { startSandboxServices } = await import('../sandbox/serve.js');
      const services = await startSandboxServices({
        host: opts.host,
        ...(opts.tokenServicePort !== undefined ? { tokenServicePort: opts.tokenServicePort } : {}),
        ...(opts.stripePort !== undefined ? { stripePort: opts.stripePort } : {}),
        ...(opts.worldpayPort !== undefined ? { worldpayPort: opts.worldpayPort } : {}),
        ...(opts.chasePort !== undefined ? { chasePort: opts.chasePort } : {}),
        ...(opts.lhvPort !== undefined ? { lhvPort: opts.lhvPort } : {}),
        ...(opts.lhvResponseDelayMs !== undefined ? { lhv: { responseDelayMs: opts.lhvResponseDelayMs } } : {}),
      });
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        void services.close().then(() => process.exit(0));
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      // Every variable auth, capture and payout read to use these sandboxes (ledger needs none).
      const env = sandboxWorkerEnv(services.env);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ host: opts.host, urls: services.urls, env })}\n`);
      } else {
        process.stdout.write('payfleet sandbox services are up (Ctrl-C to stop)\n\n');
        printTable(
          ['service', 'url'],
          [
            ['Payment Token Service', services.urls.tokenService],
            ['Stripe', services.urls.stripe],
            ['Worldpay', services.urls.worldpay],
            ['Chase', services.urls.chase],
            ['LHV Connect', services.urls.lhv],
          ],
        );
        process.stdout.write(
          '\nto point a worker at them (with the AWS variables `payfleet stack up` prints; each worker on this\n' +
            'machine also needs its own PAYFLEET_OPS_PORT, e.g. 9401-9405 — `payfleet dev` does all of this for you):\n',
        );
        for (const [k, v] of Object.entries(env)) process.stdout.write(`  ${shellExport(k, v)}\n`);
      }
      // Stay up until a signal arrives.
      await new Promise(() => undefined);
    });
}
