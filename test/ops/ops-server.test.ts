import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log/logger.js';
import { createMetrics } from '../../shared/ops/metrics.js';
import { startOpsServer, type OpsServer } from '../../shared/ops/server.js';

let server: OpsServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const get = async (path: string) => {
  const r = await fetch(`http://127.0.0.1:${server!.port}${path}`);
  return { status: r.status, text: await r.text() };
};

describe('OpsServer', () => {
  it('serves live, ready with real checks, and metrics; readiness follows the checks and draining', async () => {
    let sqsUp = false;
    const metrics = createMetrics('test');
    metrics.received.inc({ queue: 'q' }, 3);
    server = await startOpsServer({
      port: 0,
      host: '127.0.0.1',
      registry: metrics.registry,
      logger: silentLogger(),
      checks: [
        { name: 'dynamodb:leases', check: async () => undefined },
        {
          name: 'sqs',
          check: async () => {
            if (!sqsUp) throw new Error('connect ECONNREFUSED');
          },
        },
      ],
      status: () => ({ shardsHeld: 2 }),
    });
    expect((await get('/health/live')).status).toBe(200);

    const notReady = await get('/health/ready');
    expect(notReady.status).toBe(503);
    const body = JSON.parse(notReady.text) as { checks: { name: string; ok: boolean; error?: string }[]; shardsHeld: number };
    expect(body.checks.find((c) => c.name === 'sqs')).toMatchObject({ ok: false, error: 'connect ECONNREFUSED' });
    expect(body.shardsHeld).toBe(2);

    sqsUp = true;
    expect((await get('/health/ready')).status).toBe(200);

    const m = await get('/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/payfleet_messages_received_total\{[^}]*queue="q"[^}]*\} 3/);
    expect(m.text).toContain('worker="test"');
    expect(m.text).toContain('payfleet_process_cpu_seconds_total');

    server.setDraining();
    const draining = await get('/health/ready');
    expect(draining.status).toBe(503);
    expect(JSON.parse(draining.text).status).toBe('draining');
    expect((await get('/health/live')).status).toBe(200);
    expect((await get('/nope')).status).toBe(404);
  });

  it('fails a check that hangs, after its timeout, instead of hanging the probe', async () => {
    const metrics = createMetrics('test', { defaultMetrics: false });
    server = await startOpsServer({
      port: 0,
      host: '127.0.0.1',
      registry: metrics.registry,
      logger: silentLogger(),
      checkTimeoutMs: 200,
      checks: [{ name: 'hangs', check: () => new Promise(() => undefined) }],
    });
    // The probe answers although the check never settles: its own timeout failed it.
    const r = await get('/health/ready');
    expect(r.status).toBe(503);
    expect(r.text).toContain('timed out after 200 ms');
  });

  it('a port in use is a configuration error naming PAYFLEET_OPS_PORT, not an EADDRINUSE crash', async () => {
    const metrics = createMetrics('test', { defaultMetrics: false });
    const options = { host: '127.0.0.1', registry: metrics.registry, logger: silentLogger(), checks: [] };
    server = await startOpsServer({ ...options, port: 0 });
    const second = startOpsServer({ ...options, port: server.port });
    await expect(second).rejects.toBeInstanceOf(ConfigError);
    await expect(second).rejects.toMatchObject({
      problems: [expect.stringMatching(new RegExp(`^PAYFLEET_OPS_PORT: port ${server.port} is already in use on 127\\.0\\.0\\.1`))],
    });
  });
});
