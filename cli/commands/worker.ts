import type { Command } from 'commander';
import { isWorkerName, WORKER_NAMES, WORKERS } from '../../workers/index.js';

/** `payfleet worker <name>`: one worker process, the container entrypoint on ECS. */
export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description(`run one worker process (${WORKER_NAMES.join(' | ')}) until SIGTERM`)
    .argument('<name>', `one of: ${WORKER_NAMES.join(', ')}`)
    .action(async (name: string) => {
      if (!isWorkerName(name)) {
        const err = new Error(`unknown worker "${name}"; choose one of: ${WORKER_NAMES.join(', ')}`) as Error & { exitCode: number };
        err.exitCode = 2;
        throw err;
      }
      await WORKERS[name].run();
    });
}
