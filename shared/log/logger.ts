import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { maskPans, redactDeep } from './redact.js';

export type { Logger } from 'pino';

export interface LoggerConfig {
  /** Component name, e.g. `auth`; becomes the `worker` field of every line. */
  readonly worker: string;
  /** pino level. @default 'info' */
  readonly level?: string;
  /** Where lines go. @default stdout (fd 1), synchronous so nothing is lost on exit */
  readonly destination?: DestinationStream;
}

/**
 * A destination wrapper that masks PAN-shaped digit runs in the final JSON line. This is the last
 * line of defence: whatever a serializer missed (an error message quoting a request body, a string
 * interpolated into `msg`), no card number leaves the process.
 */
export function maskingDestination(inner: DestinationStream): DestinationStream {
  return {
    write(line: string) {
      inner.write(maskPans(line));
    },
  };
}

/**
 * The fleet's logger: JSON lines, ISO timestamps (no epoch-millis that look like card numbers),
 * correlation fields via `child({ messageId, chargeId })`, sensitive keys censored at any depth.
 */
export function createLogger(config: LoggerConfig): Logger {
  const options: LoggerOptions = {
    level: config.level ?? 'info',
    base: { worker: config.worker },
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: 'msg',
    formatters: {
      level: (label) => ({ level: label }),
      // Runs on the merged object of every call. Bindings: the root's here; children's below.
      log: (obj) => redactDeep(obj) as Record<string, unknown>,
      bindings: (bindings) => redactDeep(bindings) as Record<string, unknown>,
    },
    serializers: {
      err: (err: unknown) => redactDeep(err),
      error: (err: unknown) => redactDeep(err),
    },
  };
  const dest = config.destination ?? pino.destination({ fd: 1, sync: true });
  const logger = pino(options, maskingDestination(dest));
  // pino applies formatters.bindings to the root only: child() and setBindings() reset it, so
  // `log.child({ apiKey })` would be written verbatim. Censor those bindings before pino sees them.
  // Children are created with Object.create(parent), so they inherit these wrappers.
  const pinoChild = logger.child;
  const pinoSetBindings = logger.setBindings;
  logger.child = function child(this: Logger, bindings, childOptions) {
    return pinoChild.call(this, redactDeep(bindings) as typeof bindings, childOptions);
  } as Logger['child'];
  logger.setBindings = function setBindings(this: Logger, bindings) {
    pinoSetBindings.call(this, redactDeep(bindings) as typeof bindings);
  };
  return logger;
}

/** A logger that writes nothing: for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
