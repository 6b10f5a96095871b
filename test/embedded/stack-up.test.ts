/**
 * Command: `payfleet stack up` as an operator runs it (a child process with a clean environment),
 * and the Java checks of cli/embedded/java.ts.
 *
 * The no-orphan checks look for the DynamoDB Local of *that* process by its port, so the run's own
 * stack (global setup) and other suites' stacks never match.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import { ReceiveMessageCommand, SendMessageCommand, GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { JavaMissingError, parseJavaMajor, requireJava17 } from '../../cli/embedded/java.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const cleanEnv = (): Record<string, string> => ({ PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' });

interface StackInfo {
  region: string;
  sqsEndpoint: string;
  dynamodbEndpoint: string;
  resourcePrefix: string;
  env: Record<string, string>;
  queueUrls: Record<string, string>;
}

interface Running {
  child: ChildProcess;
  info: StackInfo;
  dynamodbPort: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawn `payfleet stack up --json` and resolve once its one JSON line is out. */
async function stackUp(ctx: TestContext, env: Record<string, string> = cleanEnv()): Promise<Running> {
  const child = spawn(process.execPath, ['bin/payfleet.js', 'stack', 'up', '--json'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A failed assertion must not leave a stack running (its guardian then stops java too).
  ctx.onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no JSON line within 60 s; stderr: ${err}`)), 60_000);
    const check = () => {
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    };
    child.stdout!.on('data', check);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`stack up exited (${code}) before printing; stderr: ${err}`));
    });
  });
  const info = JSON.parse(line) as StackInfo;
  const dynamodbPort = new URL(info.dynamodbEndpoint).port;
  return { child, info, dynamodbPort, stdout: () => out, stderr: () => err, exited };
}

/** PIDs of DynamoDB Local (java or its guardian shell) listening on `port`. */
function dynamoDbLocalPids(port: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile('pgrep', ['-f', `DynamoDBLocal.*-port ${port}( |$)`], (err, stdout) => {
      // pgrep: 0 = found, 1 = none found, anything else is a real failure.
      if (err && err.code !== 1) reject(err);
      else resolve(stdout.split('\n').filter(Boolean));
    });
  });
}

async function waitUntilNoDynamoDbLocal(port: string, timeoutMs: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = await dynamoDbLocalPids(port);
    if (pids.length === 0 || Date.now() > deadline) return pids;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

// Concurrent: each test owns its own process and ports; starting two JVMs side by side halves the wait.
describe.concurrent('Command: payfleet stack up', () => {
  it('prints one JSON line whose endpoints work with a plain SDK client, and exits 0 on SIGINT leaving no DynamoDB Local', async (ctx) => {
    const { expect } = ctx;
    // Act
    const s = await stackUp(ctx);
    const { info } = s;
    // Assess: the printed environment is consistent with the endpoints.
    expect(info).toMatchObject({ region: 'eu-west-2', resourcePrefix: 'payfleet-' });
    expect(info.env).toMatchObject({
      AWS_REGION: info.region,
      AWS_ENDPOINT_URL_SQS: info.sqsEndpoint,
      AWS_ENDPOINT_URL_DYNAMODB: info.dynamodbEndpoint,
      PAYFLEET_RESOURCE_PREFIX: 'payfleet-',
    });
    expect(new URL(info.sqsEndpoint).hostname).toBe('127.0.0.1');
    expect(new URL(info.dynamodbEndpoint).hostname).toBe('127.0.0.1');
    expect(await dynamoDbLocalPids(s.dynamodbPort)).not.toEqual([]);

    // A client built only from what was printed, as an operator or another service would.
    const config = {
      region: info.region,
      credentials: { accessKeyId: info.env.AWS_ACCESS_KEY_ID!, secretAccessKey: info.env.AWS_SECRET_ACCESS_KEY! },
    };
    const sqs = new SQSClient({ ...config, endpoint: info.sqsEndpoint });
    const ddb = new DynamoDBClient({ ...config, endpoint: info.dynamodbEndpoint });
    try {
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: 'payfleet-auth-requests.fifo' }));
      expect(QueueUrl).toBe(info.queueUrls['payfleet-auth-requests.fifo']);
      const body = JSON.stringify({ type: 'AuthorisationRequested', chargeId: 'ch_stackup', authRequestId: 'a-1' });
      await sqs.send(
        new SendMessageCommand({ QueueUrl, MessageBody: body, MessageGroupId: 'ch_stackup', MessageDeduplicationId: 'a-1' }),
      );
      const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 2, MaxNumberOfMessages: 10 }));
      expect(got.Messages?.map((m) => m.Body)).toEqual([body]);
      // Bootstrapped tables are there too.
      expect((await ddb.send(new ListTablesCommand({}))).TableNames).toEqual(
        expect.arrayContaining(['payfleet-leases', 'payfleet-charges', 'payfleet-events', 'payfleet-payouts']),
      );
    } finally {
      sqs.destroy();
      ddb.destroy();
    }

    // Act: Ctrl-C.
    s.child.kill('SIGINT');
    const exit = await withTimeout(s.exited, 10_000, 'exit after SIGINT');
    // Assess
    expect(exit, s.stderr()).toEqual({ code: 0, signal: null });
    expect(s.stdout().trimEnd().split('\n')).toHaveLength(1); // --json prints the one line and nothing else
    expect(await waitUntilNoDynamoDbLocal(s.dynamodbPort, 3000)).toEqual([]);
  });

  it('when the stack-up process itself is SIGKILLed, its DynamoDB Local goes too (the guardian pipe closes)', async (ctx) => {
    const { expect } = ctx;
    const s = await stackUp(ctx);
    expect(await dynamoDbLocalPids(s.dynamodbPort)).not.toEqual([]);
    s.child.kill('SIGKILL');
    expect(await withTimeout(s.exited, 5000, 'exit after SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await waitUntilNoDynamoDbLocal(s.dynamodbPort, 5000)).toEqual([]);
  });

  it('without Java, exits 1 and says how to install it', async ({ expect }) => {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['bin/payfleet.js', 'stack', 'up', '--json'],
        { cwd: ROOT, env: { ...cleanEnv(), JAVA_HOME: '/nonexistent' }, timeout: 30_000 },
        (err, _out, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
      );
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Java was not found \(\/nonexistent\/bin\/java\)/);
    expect(r.stderr).toMatch(/apt-get install -y openjdk-17/);
  });
});

describe('parseJavaMajor', () => {
  it.each([
    ['openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)', 17],
    ['java version "1.8.0_392"\nJava(TM) SE Runtime Environment (build 1.8.0_392-b08)', 8],
    ['openjdk version "21" 2023-09-19', 21],
    ['openjdk version "11.0.2" 2019-01-15', 11],
    ['openjdk version "25-ea" 2025-09-16', 25],
  ])('%j -> %d', (output, major) => {
    expect(parseJavaMajor(output)).toBe(major);
  });

  it('returns undefined for output it cannot read', () => {
    expect(parseJavaMajor('')).toBeUndefined();
    expect(parseJavaMajor('bash: java: command not found')).toBeUndefined();
  });
});

describe('requireJava17', () => {
  it('throws JavaMissingError with install instructions when JAVA_HOME points nowhere', () => {
    let caught: unknown;
    try {
      requireJava17({ PATH: process.env.PATH, JAVA_HOME: '/nonexistent' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(JavaMissingError);
    const e = caught as JavaMissingError;
    expect(e.name).toBe('JavaMissingError');
    expect(e.message).toMatch(/Java was not found \(\/nonexistent\/bin\/java\)/);
    expect(e.message).toMatch(/apt-get install -y openjdk-17-jre-headless/);
    expect(e.message).toMatch(/JAVA_HOME/);
  });

  it('refuses Java 8 naming the version found, and accepts 17', () => {
    const home = mkdtempSync(join(tmpdir(), 'payfleet-java-'));
    try {
      mkdirSync(join(home, 'bin'));
      const java = join(home, 'bin', 'java');
      writeFileSync(java, '#!/bin/sh\necho \'java version "1.8.0_392"\' >&2\n');
      chmodSync(java, 0o755);
      expect(() => requireJava17({ JAVA_HOME: home })).toThrow(/Java 8 was found at .*, but 17 or newer is needed.*openjdk-17/);

      writeFileSync(java, '#!/bin/sh\necho \'openjdk version "17.0.15" 2025-04-15\' >&2\n');
      expect(requireJava17({ JAVA_HOME: home })).toBe(java);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
