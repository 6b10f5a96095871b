import type { Command } from 'commander';

export const WORKERS = ['auth', 'capture', 'payout', 'ledger'] as const;
export type WorkerName = (typeof WORKERS)[number];

/** `payfleet worker <name>`: one worker process, the container entrypoint on ECS. */
export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('run one worker process (auth | capture | payout | ledger) until SIGTERM')
    .argument('<name>', `one of: ${WORKERS.join(', ')}`)
    .action(async (name: string) => {
      if (!(WORKERS as readonly string[]).includes(name)) {
        const err = new Error(`unknown worker "${name}"; choose one of: ${WORKERS.join(', ')}`) as Error & { exitCode: number };
        err.exitCode = 2;
        throw err;
      }
      const mod = (await import(`../${name}/main.js`)) as { main: () => Promise<void> };
      await mod.main();
    });
}
