/**
 * A minimal node:http server for the sandbox services (token service, Stripe, LHV fakes): loopback
 * only, keep-alive on, a JSON error instead of a crash when a handler throws, and a `close()` that
 * also ends connections a fault left hanging (`timeout after success` never answers).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// `unknown`: handlers written as `(req, res) => res.end()` are fine; a returned promise is awaited.
export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => unknown;

export interface HttpServerOptions {
  /** @default 0 (a free port) */
  readonly port?: number;
  /** @default '127.0.0.1' — sandboxes never listen on public interfaces */
  readonly host?: string;
  /** Idle keep-alive per socket. Clients should use a shorter one. @default 5_000 */
  readonly keepAliveTimeoutMs?: number;
}

export interface StartedHttpServer {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Stop listening and destroy every open connection, hanging ones included. Idempotent. */
  close(): Promise<void>;
}

/** Start `handler` on a loopback port. Resolves once listening. */
export async function startHttpServer(handler: RequestHandler, options: HttpServerOptions = {}): Promise<StartedHttpServer> {
  const server = createServer({ keepAlive: true }, (req, res) => {
    // A handler that throws must answer 500, not take the process down: chaos runs hammer these.
    Promise.resolve()
      .then(() => handler(req, res))
      .catch((err: unknown) => {
        if (res.headersSent || res.destroyed) {
          res.destroy();
          return;
        }
        sendJson(res, 500, {
          error: { type: 'api_error', message: `sandbox handler failed: ${err instanceof Error ? err.message : String(err)}` },
        });
      });
  });
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 5_000;
  // Hanging responses are a feature here (fault injection); don't let Node time them out first.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${address}:${port}`,
    port,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Read a request body up to `limitBytes` (413 territory beyond: rejects). */
export async function readBody(req: IncomingMessage, limitBytes = 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limitBytes) throw new Error(`request body larger than ${limitBytes} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Answer with a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Parse a JSON request body; undefined when empty, throws a SyntaxError when malformed. */
export async function readJson(req: IncomingMessage, limitBytes?: number): Promise<unknown> {
  const text = await readBody(req, limitBytes);
  return text.trim() === '' ? undefined : JSON.parse(text);
}

/** The request path without its query string, and the parsed query. */
export function splitUrl(req: IncomingMessage): { path: string; query: URLSearchParams } {
  const url = new URL(req.url ?? '/', 'http://sandbox.invalid');
  return { path: url.pathname, query: url.searchParams };
}
