import type { Logger } from '../log/logger.js';

/** One stage of shutdown; stages run in order, each in its own try/catch. */
export interface ShutdownStage {
  readonly name: string;
  run(): Promise<void>;
}

export interface LifecycleOptions {
  readonly logger: Logger;
  /** Hard limit for the whole shutdown; past it the process exits 1. @default 30000 */
  readonly forceAfterMs?: number;
  /** For tests: what "exit" means. @default process.exit */
  readonly exit?: (code: number) => void;
}

/**
 * Signal handling for a worker process (docs/contract.md §8):
 * - the first SIGTERM/SIGINT runs the shutdown stages in order and exits 0;
 * - a second signal, or the force timeout, exits at once (1);
 * - an unhandled rejection or uncaught exception is logged and exits non-zero after the stages
 *   had a short chance to hand work back.
 */
export class Lifecycle {
  private readonly stages: ShutdownStage[] = [];
  private shuttingDown: Promise<void> | undefined;
  private readonly exit: (code: number) => void;

  constructor(private readonly options: LifecycleOptions) {
    this.exit = options.exit ?? ((code) => process.exit(code));
  }

  /** Add a stage; stages run in the order they were added. */
  onShutdown(name: string, run: () => Promise<void>): this {
    this.stages.push({ name, run });
    return this;
  }

  installSignalHandlers(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.shuttingDown) {
        this.options.logger.warn({ signal }, 'second signal; exiting now');
        this.exit(1);
        return;
      }
      this.options.logger.info({ signal }, 'shutting down');
      void this.shutdown(0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('unhandledRejection', (reason) => {
      this.options.logger.fatal({ err: reason }, 'unhandled promise rejection');
      void this.shutdown(1, 5000);
    });
    process.on('uncaughtException', (err) => {
      this.options.logger.fatal({ err }, 'uncaught exception');
      void this.shutdown(1, 5000);
    });
  }

  /** Run every stage once, then exit with `code`. Idempotent. */
  shutdown(code: number, forceAfterMs = this.options.forceAfterMs ?? 30_000): Promise<void> {
    this.shuttingDown ??= (async () => {
      const force = setTimeout(() => {
        this.options.logger.error({ forceAfterMs }, 'shutdown took too long; forcing exit');
        this.exit(1);
      }, forceAfterMs);
      force.unref();
      for (const stage of this.stages) {
        const started = Date.now();
        try {
          await stage.run();
          this.options.logger.debug({ stage: stage.name, ms: Date.now() - started }, 'shutdown stage done');
        } catch (err) {
          this.options.logger.error({ stage: stage.name, err }, 'shutdown stage failed');
        }
      }
      clearTimeout(force);
      this.options.logger.info({ code }, 'stopped');
      this.exit(code);
    })();
    return this.shuttingDown;
  }
}
