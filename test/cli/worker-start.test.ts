/**
 * Behaviour: a worker's start-up says what it will and will not do. `worker started` lists the
 * processors it can serve; a processor its queue may carry but that is not configured is warned
 * about, with the variables to set (such messages are dead-lettered UNKNOWN_PROCESSOR). An ops
 * port in use stops it with exit 2 and one line naming PAYFLEET_OPS_PORT.
 */
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProcess } from '../support/processes.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

let stack: TestStack;
beforeAll(async () => {
  stack = await setupTestStack('wstart');
});
afterAll(() => stack?.close());

/** Short long polls: each test stops its worker, which lets its open long poll finish first. */
const QUICK = { PAYFLEET_OPS_PORT: '0', PAYFLEET_WAIT_TIME_SEC: '1', AWS_SQS_MESSAGE_MAXIMUM_WAIT_TIME_IN_SECONDS: '1' };

/** Chase is not called at start either (its token is fetched on first use). */
const CHASE = {
  CHASE_API_BASE_URL: 'http://127.0.0.1:9',
  CHASE_TOKEN_URL: 'http://127.0.0.1:9/oauth2/token',
  CHASE_CLIENT_ID: 'c',
  CHASE_CLIENT_SECRET: 's',
  CHASE_MERCHANT_ID: 'm',
};

/** The token service is not called at start; any URL will do. */
const TOKEN_SERVICE = { PAYMENT_TOKEN_SERVICE_URL: 'http://127.0.0.1:9', PAYMENT_TOKEN_SERVICE_API_KEY: 'k' };

describe('worker started: processors', () => {
  it('auth lists the enabled processors and warns for each one its queue may carry that is not configured', async () => {
    const p = startProcess('bin/payfleet.js', ['worker', 'auth'], { ...stack.env, ...TOKEN_SERVICE, ...QUICK });
    try {
      const started = await p.waitForLine((l) => l.msg === 'worker started', 60_000);
      expect(started.processors).toEqual(['sandbox']);
      const warnings = p.lines.filter((l) => l.level === 'warn' && typeof l.processor === 'string');
      expect(warnings.map((w) => [w.processor, w.set])).toEqual([
        ['stripe', ['STRIPE_API_KEY']],
        ['worldpay', ['WORLDPAY_API_BASE_URL', 'WORLDPAY_MERCHANT_CODE', 'WORLDPAY_USERNAME', 'WORLDPAY_PASSWORD']],
        ['chase', ['CHASE_API_BASE_URL', 'CHASE_TOKEN_URL', 'CHASE_CLIENT_ID', 'CHASE_CLIENT_SECRET', 'CHASE_MERCHANT_ID']],
      ]);
      expect(String(warnings[0]!.msg)).toMatch(/auth-requests may carry processor "stripe", which is not configured here: .*UNKNOWN_PROCESSOR/);
    } finally {
      p.kill('SIGTERM');
      await p.exited;
    }
  });

  it('capture with Stripe, Chase and half of Worldpay: lists sandbox, stripe and chase, names the Worldpay variables still missing', async () => {
    const p = startProcess('bin/payfleet.js', ['worker', 'capture'], {
      ...stack.env,
      ...QUICK,
      STRIPE_API_KEY: 'sk_test_x',
      WORLDPAY_API_BASE_URL: 'http://127.0.0.1:9',
      WORLDPAY_MERCHANT_CODE: 'M',
      ...CHASE,
    });
    try {
      const started = await p.waitForLine((l) => l.msg === 'worker started', 60_000);
      expect(started.processors).toEqual(['sandbox', 'stripe', 'chase']);
      const warnings = p.lines.filter((l) => l.level === 'warn' && typeof l.processor === 'string');
      expect(warnings.map((w) => [w.processor, w.set])).toEqual([['worldpay', ['WORLDPAY_USERNAME', 'WORLDPAY_PASSWORD']]]);
    } finally {
      p.kill('SIGTERM');
      await p.exited;
    }
  });

  it('with every processor configured, nothing is warned', async () => {
    const p = startProcess('bin/payfleet.js', ['worker', 'capture'], {
      ...stack.env,
      ...QUICK,
      STRIPE_API_KEY: 'sk_test_x',
      WORLDPAY_API_BASE_URL: 'http://127.0.0.1:9',
      WORLDPAY_MERCHANT_CODE: 'M',
      WORLDPAY_USERNAME: 'u',
      WORLDPAY_PASSWORD: 'p',
      ...CHASE,
    });
    try {
      const started = await p.waitForLine((l) => l.msg === 'worker started', 60_000);
      expect(started.processors).toEqual(['sandbox', 'stripe', 'worldpay', 'chase']);
      expect(p.lines.filter((l) => l.level === 'warn')).toEqual([]);
    } finally {
      p.kill('SIGTERM');
      await p.exited;
    }
  });
});

describe('PAYFLEET_OPS_PORT in use', () => {
  let occupied: Server;
  let port: number;
  beforeAll(async () => {
    occupied = createServer();
    await new Promise<void>((r) => occupied.listen(0, '0.0.0.0', () => r()));
    const a = occupied.address();
    port = typeof a === 'object' && a ? a.port : 0;
  });
  afterAll(() => new Promise<void>((r) => occupied.close(() => r())));

  it('exits 2 with one line naming the variable, no stack trace', async () => {
    const p = startProcess('bin/payfleet.js', ['worker', 'capture'], { ...stack.env, PAYFLEET_OPS_PORT: String(port) });
    expect(await p.exited).toBe(2);
    expect(p.raw()).toContain(`PAYFLEET_OPS_PORT: port ${port} is already in use on 0.0.0.0`);
    expect(p.raw()).toContain('set PAYFLEET_OPS_PORT to a free port');
    expect(p.raw()).not.toMatch(/EADDRINUSE|\n\s+at /);
  });
});
