import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { ConfigError } from '../errors.js';
import type { Logger } from '../log/logger.js';

/** A named dependency check for /health/ready. Resolve to pass; throw (or reject) to fail. */
export interface ReadinessCheck {
  readonly name: string;
  check(signal: AbortSignal): Promise<void>;
}

export interface OpsServer {
  readonly port: number;
  /** Marks the process as draining: /health/ready answers 503 from now on. */
  setDraining(): void;
  close(): Promise<void>;
}

export interface OpsServerOptions {
  readonly port: number;
  /** @default '0.0.0.0' (ECS health checks and Prometheus scrape from outside the container) */
  readonly host?: string;
  readonly registry: Registry;
  readonly checks: readonly ReadinessCheck[];
  readonly logger: Logger;
  /** Per-check timeout. @default 2000 */
  readonly checkTimeoutMs?: number;
  /** Extra state for /health/ready's body (e.g. shards held). */
  readonly status?: () => Record<string, unknown>;
  /** The variable that sets `port`, named when the port cannot be used. @default 'PAYFLEET_OPS_PORT' */
  readonly portVariable?: string;
}

/**
 * A port that cannot be listened on is a configuration problem (exit 2, one line naming the
 * variable), not a crash: typically a second worker on one machine with the default port.
 */
function portProblem(err: NodeJS.ErrnoException, port: number, host: string, variable: string): Error {
  if (err.code === 'EADDRINUSE') {
    return new ConfigError([
      `${variable}: port ${port} is already in use on ${host} (another worker or program listens there); set ${variable} to a free port (0 = any free port) or stop the other process`,
    ]);
  }
  if (err.code === 'EACCES') {
    return new ConfigError([`${variable}: port ${port} on ${host} needs privileges this process does not have; use a port above 1023`]);
  }
  return err;
}

/**
 * GET /health/live (the event loop answers), GET /health/ready (every dependency check passes,
 * and the process is not draining), GET /metrics (Prometheus text). Nothing else; no card data
 * can be reached from here.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  let draining = false;
  const timeoutMs = options.checkTimeoutMs ?? 2000;

  const runChecks = async () => {
    const results = await Promise.all(
      options.checks.map(async (c) => {
        const signal = AbortSignal.timeout(timeoutMs);
        try {
          await Promise.race([
            c.check(signal),
            new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error(`timed out after ${timeoutMs} ms`)))),
          ]);
          return { name: c.name, ok: true as const };
        } catch (err) {
          return { name: c.name, ok: false as const, error: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
    return results;
  };

  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, JSON.stringify({ error: 'method not allowed' }));
    if (url === '/health/live') return send(200, JSON.stringify({ status: 'live' }));
    if (url === '/health/ready') {
      void runChecks().then(
        (results) => {
          const ok = !draining && results.every((r) => r.ok);
          send(ok ? 200 : 503, JSON.stringify({ status: ok ? 'ready' : draining ? 'draining' : 'not ready', checks: results, ...options.status?.() }));
        },
        (err: unknown) => send(503, JSON.stringify({ status: 'not ready', error: String(err) })),
      );
      return;
    }
    if (url === '/metrics') {
      void options.registry.metrics().then(
        (text) => send(200, text, options.registry.contentType),
        (err: unknown) => send(500, String(err), 'text/plain'),
      );
      return;
    }
    send(404, JSON.stringify({ error: 'not found' }));
  });
  server.keepAliveTimeout = 5000;
  const host = options.host ?? '0.0.0.0';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(portProblem(err, options.port, host, options.portVariable ?? 'PAYFLEET_OPS_PORT')));
    server.listen(options.port, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  options.logger.info({ port }, 'ops server listening');
  return {
    port,
    setDraining: () => {
      draining = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
