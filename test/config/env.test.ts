/**
 * Function: parseEnv with workerEnvSchema / awsEnvSchema (shared/config). Pure: no stack needed.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.js';
import { parseDurationMs, duration, parseEnv } from '../../shared/config/env.js';
import { awsEnvSchema, loadAwsConfig } from '../../shared/config/common.js';
import { loadWorkerConfig, workerEnvSchema } from '../../shared/config/worker.js';
import { z } from 'zod';

/** A minimal valid environment pointing at a local stack. */
const LOCAL = { AWS_REGION: 'eu-west-2', AWS_ENDPOINT_URL: 'http://127.0.0.1:4566' } as const;

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    // The message is the problems, one per line: nothing else can carry a value.
    expect(e.message.split('\n').slice(1)).toEqual(e.problems.map((p) => `  - ${p}`));
    return e.problems;
  }
  throw new Error('expected a ConfigError, got none');
}

describe('parseEnv(workerEnvSchema)', () => {
  it('applies the documented defaults and returns a deeply frozen object', () => {
    const env = parseEnv(workerEnvSchema, { ...LOCAL });
    expect(env).toMatchObject({
      PAYFLEET_RESOURCE_PREFIX: 'payfleet-',
      PAYFLEET_OPS_PORT: 9400,
      PAYFLEET_LOG_LEVEL: 'info',
      PAYFLEET_CONCURRENCY: 10,
      PAYFLEET_BATCH_SIZE: 10,
      PAYFLEET_WAIT_TIME_SEC: 20,
      PAYFLEET_VISIBILITY_TIMEOUT_SEC: 30,
      PAYFLEET_LEASE_MS: 30_000,
      PAYFLEET_LEASE_RENEW_MS: 10_000,
      PAYFLEET_SHUTDOWN_GRACE_MS: 25_000,
      PAYFLEET_FORCE_EXIT_MS: 29_000,
      PAYFLEET_LEDGER_SHARDS: 8,
    });
    expect(Object.isFrozen(env)).toBe(true);
    expect(() => {
      (env as { PAYFLEET_CONCURRENCY: number }).PAYFLEET_CONCURRENCY = 1;
    }).toThrow(TypeError); // ESM is strict mode: writes to a frozen object throw

    const cfg = loadWorkerConfig({ ...LOCAL });
    expect(cfg.consumer.heartbeatSec).toBe(10); // visibility / 3
    expect(cfg.aws).toEqual({
      resourcePrefix: 'payfleet-',
      region: 'eu-west-2',
      sqsEndpoint: 'http://127.0.0.1:4566',
      dynamodbEndpoint: 'http://127.0.0.1:4566',
      deadlines: { dynamodbMs: 5000, sqsMs: 5000, sqsReceiveMarginMs: 5000, maxAttempts: 3 },
    });
  });

  it('freezes nested objects too', () => {
    const schema = z.object({
      A: z
        .string()
        .default('x')
        .transform((v) => ({ inner: { v }, list: [v] })),
    });
    const parsed = parseEnv(schema, {});
    expect(Object.isFrozen(parsed.A)).toBe(true);
    expect(Object.isFrozen(parsed.A.inner)).toBe(true);
    expect(Object.isFrozen(parsed.A.list)).toBe(true);
    expect(() => parsed.A.list.push('y')).toThrow(TypeError);
  });

  it('reports every bad variable, one line each, naming it', () => {
    const problems = problemsOf(() =>
      parseEnv(workerEnvSchema, { ...LOCAL, PAYFLEET_CONCURRENCY: 'abc', PAYFLEET_OPS_PORT: '99999' }),
    );
    expect(problems).toHaveLength(2);
    expect(problems.find((p) => p.startsWith('PAYFLEET_CONCURRENCY:'))).toMatch(/whole number/);
    expect(problems.find((p) => p.startsWith('PAYFLEET_OPS_PORT:'))).toMatch(/<= 65535/);
  });

  it('never echoes a value, even a secret pasted into the wrong variable', () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY'; // shaped like an AWS secret key
    const problems = problemsOf(() =>
      parseEnv(workerEnvSchema, {
        ...LOCAL,
        PAYFLEET_CONCURRENCY: secret,
        PAYFLEET_LOG_LEVEL: secret,
        PAYFLEET_RESOURCE_PREFIX: secret,
        AWS_ENDPOINT_URL_SQS: secret,
      }),
    );
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(
      ['AWS_ENDPOINT_URL_SQS', 'PAYFLEET_CONCURRENCY', 'PAYFLEET_LOG_LEVEL', 'PAYFLEET_RESOURCE_PREFIX'].sort(),
    );
    for (const p of problems) {
      expect(p).not.toContain(secret);
      expect(p).not.toContain('SECRETKEY');
    }
  });

  it('names a missing AWS_REGION', () => {
    const problems = problemsOf(() => parseEnv(workerEnvSchema, { AWS_ENDPOINT_URL: 'http://127.0.0.1:4566' }));
    expect(problems).toEqual(['AWS_REGION: is required but not set']);
  });

  it('with no endpoint and no credentials, says to set AWS_ENDPOINT_URL (never falls back silently)', () => {
    const viaLoad = problemsOf(() => loadWorkerConfig({ AWS_REGION: 'eu-west-2' }));
    expect(viaLoad).toHaveLength(1);
    expect(viaLoad[0]).toMatch(/^AWS_ENDPOINT_URL: .*Set AWS_ENDPOINT_URL/);
    expect(viaLoad[0]).toMatch(/AWS_ACCESS_KEY_ID/);
    expect(problemsOf(() => loadAwsConfig({ AWS_REGION: 'eu-west-2' }))).toEqual(viaLoad);
    // Only one of the two services configured is still not enough.
    expect(problemsOf(() => loadAwsConfig({ AWS_REGION: 'eu-west-2', AWS_ENDPOINT_URL_SQS: 'http://127.0.0.1:1' }))).toEqual(
      viaLoad,
    );
    // Either credentials or both endpoints make it acceptable.
    expect(loadAwsConfig({ AWS_REGION: 'eu-west-2', AWS_PROFILE: 'prod' }).sqsEndpoint).toBeUndefined();
    expect(
      loadAwsConfig({
        AWS_REGION: 'eu-west-2',
        AWS_ENDPOINT_URL_SQS: 'http://127.0.0.1:1/',
        AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:2',
      }),
    ).toMatchObject({ sqsEndpoint: 'http://127.0.0.1:1', dynamodbEndpoint: 'http://127.0.0.1:2' });
  });

  it('reports a missing region and a missing endpoint together, not one start-up at a time', () => {
    const problems = problemsOf(() => parseEnv(workerEnvSchema, {}));
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['AWS_ENDPOINT_URL', 'AWS_REGION']);
    expect(
      problemsOf(() => parseEnv(awsEnvSchema, {}))
        .map((p) => p.split(':')[0])
        .sort(),
    ).toEqual(['AWS_ENDPOINT_URL', 'AWS_REGION']);
  });

  it('refuses a lease shorter than twice its renewal period, naming PAYFLEET_LEASE_MS', () => {
    const problems = problemsOf(() =>
      parseEnv(workerEnvSchema, { ...LOCAL, PAYFLEET_LEASE_MS: '15000', PAYFLEET_LEASE_RENEW_MS: '10000' }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^PAYFLEET_LEASE_MS: must be at least twice PAYFLEET_LEASE_RENEW_MS/);
    // Exactly twice is fine.
    expect(
      parseEnv(workerEnvSchema, { ...LOCAL, PAYFLEET_LEASE_MS: '20000', PAYFLEET_LEASE_RENEW_MS: '10000' }).PAYFLEET_LEASE_MS,
    ).toBe(20_000);
  });

  it('refuses a heartbeat longer than half the visibility timeout', () => {
    const problems = problemsOf(() =>
      parseEnv(workerEnvSchema, { ...LOCAL, PAYFLEET_VISIBILITY_TIMEOUT_SEC: '30', PAYFLEET_HEARTBEAT_SEC: '16' }),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^PAYFLEET_HEARTBEAT_SEC: must be at most half of PAYFLEET_VISIBILITY_TIMEOUT_SEC/);
    expect(
      parseEnv(workerEnvSchema, { ...LOCAL, PAYFLEET_VISIBILITY_TIMEOUT_SEC: '30', PAYFLEET_HEARTBEAT_SEC: '15' })
        .PAYFLEET_HEARTBEAT_SEC,
    ).toBe(15);
  });

  it('treats an empty string as unset (falls back to the default)', () => {
    const env = parseEnv(workerEnvSchema, {
      ...LOCAL,
      PAYFLEET_CONCURRENCY: '',
      PAYFLEET_OPS_PORT: '',
      PAYFLEET_RESOURCE_PREFIX: '',
    });
    expect(env.PAYFLEET_CONCURRENCY).toBe(10);
    expect(env.PAYFLEET_OPS_PORT).toBe(9400);
    expect(env.PAYFLEET_RESOURCE_PREFIX).toBe('payfleet-');
    // ...and an empty required variable is reported as not set.
    expect(problemsOf(() => parseEnv(workerEnvSchema, { ...LOCAL, AWS_REGION: '' }))).toEqual([
      'AWS_REGION: is required but not set',
    ]);
  });
});

describe('duration / parseDurationMs', () => {
  it.each([
    ['60 minutes', 3_600_000],
    ['90s', 90_000],
    ['1500ms', 1500],
    ['2 hours', 7_200_000],
    ['1.5s', 1500],
    [' 5 sec ', 5000],
    ['45', 45_000], // bare number = the bare unit (seconds by default)
  ])('parses %j as %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it('uses the given unit for bare numbers and rejects nonsense', () => {
    expect(parseDurationMs('250', 'ms')).toBe(250);
    expect(parseDurationMs('3', 'min')).toBe(180_000);
    for (const bad of ['', 'soon', '10 parsecs', '-5s', '1e3ms', '5 s s']) expect(parseDurationMs(bad), bad).toBeUndefined();
  });

  it('as a schema: default applies, bad text is one line naming the variable, without its value', () => {
    const schema = z.object({ CAPTURE_RETRY_DELAY: duration('60 minutes') });
    expect(parseEnv(schema, {}).CAPTURE_RETRY_DELAY).toBe(3_600_000);
    expect(parseEnv(schema, { CAPTURE_RETRY_DELAY: '90s' }).CAPTURE_RETRY_DELAY).toBe(90_000);
    const problems = problemsOf(() => parseEnv(schema, { CAPTURE_RETRY_DELAY: 'whenever-xyzzy' }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^CAPTURE_RETRY_DELAY: must be a duration/);
    expect(problems[0]).not.toContain('xyzzy');
  });
});
