/**
 * Unit: the parts of `payfleet status` that need no stack — naming ops endpoints, reading Prometheus
 * text, summarising a worker's breakers, the CloudWatch age query, and the one-line watch output.
 */
import { describe, expect, it } from 'vitest';
import {
  opsTargetsFromEnv,
  parseMetricsText,
  parseOpsTargets,
  StatusUsageError,
  summariseMetrics,
  type WorkerStatus,
} from '../../cli/commands/status-ops.js';
import { breakerRows, cloudWatchAgeReader, type FleetStatus, type MetricDataInput } from '../../cli/commands/status-snapshot.js';
import { formatAge, renderStatus, statusLine } from '../../cli/commands/status.js';

describe('ops endpoints (--ops, PAYFLEET_OPS_URLS)', () => {
  it('reads name=url pairs, trims a trailing slash, and keeps the order given', () => {
    expect(opsTargetsFromEnv('auth=http://127.0.0.1:9401/, capture=https://capture.internal:9400,')).toEqual([
      { name: 'auth', url: 'http://127.0.0.1:9401' },
      { name: 'capture', url: 'https://capture.internal:9400' },
    ]);
    expect(opsTargetsFromEnv(undefined)).toEqual([]);
  });

  it('refuses what is not name=url, other schemes, and a name given twice (usage errors, exit 2)', () => {
    for (const bad of [['http://127.0.0.1:9401'], ['auth=nope'], ['auth=ftp://x'], ['auth=http://a', 'auth=http://b'], ['=http://a']]) {
      let err: unknown;
      try {
        parseOpsTargets(bad, '--ops');
      } catch (e) {
        err = e;
      }
      expect(err, bad.join(' ')).toBeInstanceOf(StatusUsageError);
      expect((err as StatusUsageError).exitCode).toBe(2);
      expect((err as Error).message).toMatch(/^--ops: /);
    }
  });
});

describe('Prometheus text', () => {
  it('reads names, escaped label values, special values and timestamps; skips comments', () => {
    const samples = parseMetricsText(
      [
        '# HELP payfleet_breaker_state 0 closed',
        '# TYPE payfleet_breaker_state gauge',
        'payfleet_breaker_state{dependency="token-service",worker="auth"} 2',
        'payfleet_x{a="quote \\" here",b="back\\\\slash, comma"} 1.5 1732600000000',
        'payfleet_y NaN',
        'payfleet_z +Inf',
        'not a sample',
      ].join('\n'),
    );
    expect(samples[0]).toEqual({ name: 'payfleet_breaker_state', labels: { dependency: 'token-service', worker: 'auth' }, value: 2 });
    expect(samples[1]).toEqual({ name: 'payfleet_x', labels: { a: 'quote " here', b: 'back\\slash, comma' }, value: 1.5 });
    expect(samples[2]!.value).toBeNaN();
    expect(samples[3]!.value).toBe(Number.POSITIVE_INFINITY);
    expect(samples).toHaveLength(4);
  });

  it("summarises a worker: in flight, paused queues, parked messages, build, and each dependency's worst breaker", () => {
    const s = summariseMetrics(
      parseMetricsText(
        [
          'payfleet_messages_in_flight{queue="q1"} 2',
          'payfleet_messages_in_flight{queue="q2"} 1',
          'payfleet_consumer_paused{queue="q1"} 1',
          'payfleet_consumer_paused{queue="q2"} 0',
          'payfleet_messages_parked{queue="q1"} 5',
          'payfleet_build_info{version="0.1.0",node_version="v20.20.2",commit="abc"} 1',
          'payfleet_breaker_state{dependency="stripe"} 0',
          'payfleet_breaker_state{dependency="stripe"} 1',
          'payfleet_breaker_state{dependency="lhv"} 2',
        ].join('\n'),
      ),
    );
    expect(s).toEqual({
      inFlight: 3,
      parked: 5,
      paused: ['q1'],
      build: { version: '0.1.0', commit: 'abc', nodeVersion: 'v20.20.2' },
      breakers: { stripe: 'half-open', lhv: 'open' },
    });
  });

  it('rolls breakers up per dependency, worst state first', () => {
    const w = (name: string, breakers: WorkerStatus['breakers']): WorkerStatus => ({ name, url: 'http://x', reachable: true, breakers });
    expect(
      breakerRows([w('auth', { stripe: 'closed', 'token-service': 'open' }), w('capture', { stripe: 'half-open' }), { name: 'payout', url: 'http://y', reachable: false }]),
    ).toEqual([
      { dependency: 'token-service', state: 'open', workers: { auth: 'open' } },
      { dependency: 'stripe', state: 'half-open', workers: { auth: 'closed', capture: 'half-open' } },
    ]);
  });
});

describe('CloudWatch age of the oldest message', () => {
  it('asks GetMetricData for each queue’s 1-minute maximum, newest first, and takes the newest datapoint', async () => {
    let asked: MetricDataInput | undefined;
    const reader = cloudWatchAgeReader(
      async (input) => {
        asked = input;
        return { MetricDataResults: [{ Id: 'q0', Values: [420, 360] }, { Id: 'q1', Values: [] }] };
      },
      { now: () => Date.parse('2026-11-26T10:00:00Z') },
    );
    const ages = await reader.oldestAges(['p-auth-requests.fifo', 'p-capture-requests.fifo']);
    expect([...ages]).toEqual([['p-auth-requests.fifo', 420]]);
    expect(asked).toMatchObject({ ScanBy: 'TimestampDescending', EndTime: new Date('2026-11-26T10:00:00Z') });
    expect(asked!.MetricDataQueries[1]).toEqual({
      Id: 'q1',
      ReturnData: true,
      MetricStat: {
        Metric: {
          Namespace: 'AWS/SQS',
          MetricName: 'ApproximateAgeOfOldestMessage',
          Dimensions: [{ Name: 'QueueName', Value: 'p-capture-requests.fifo' }],
        },
        Period: 60,
        Stat: 'Maximum',
      },
    });
  });
});

describe('status output', () => {
  const status: FleetStatus = {
    at: '2026-11-26T10:00:00.000Z',
    prefix: 'p-',
    oldestAge: { source: 'unavailable', note: 'not available at http://127.0.0.1:1' },
    queues: [
      {
        key: 'auth-requests',
        name: 'p-auth-requests.fifo',
        exists: true,
        waiting: 2,
        inFlight: 1,
        delayed: 0,
        oldestAgeSec: null,
        dlq: {
          name: 'p-auth-requests-dlq.fifo',
          exists: true,
          waiting: 3,
          inFlight: 0,
          delayed: 0,
          letters: 3,
          byCode: { TOKEN_EXPIRED: 2, UNKNOWN_PROCESSOR: 1 },
          unlisted: 0,
          truncated: false,
          oldestAgeSec: 5400,
        },
      },
      { key: 'ledger-events', name: 'p-ledger-events.fifo', exists: false, error: 'QueueDoesNotExist', waiting: null, inFlight: null, delayed: null, oldestAgeSec: null, dlq: null },
    ],
    workers: [
      { name: 'auth', url: 'http://127.0.0.1:9401', reachable: true, ready: true, readiness: 'ready', inFlight: 1, parked: 0, paused: [], breakers: { stripe: 'open' } },
      { name: 'capture', url: 'http://127.0.0.1:9402', reachable: false, error: 'ECONNREFUSED' },
    ],
    breakers: [{ dependency: 'stripe', state: 'open', workers: { auth: 'open' } }],
  };

  it('draws queues with DLQ letters by code, workers with readiness, and breakers', () => {
    const screen = renderStatus(status);
    expect(screen).toMatch(/auth-requests\s+2\s+1\s+0\s+n\/a\s+3\s+90m\s+2 TOKEN_EXPIRED, 1 UNKNOWN_PROCESSOR/);
    expect(screen).toMatch(/ledger-events\s+missing \(QueueDoesNotExist\)/);
    expect(screen).toMatch(/capture\s+unreachable \(ECONNREFUSED\)/);
    expect(screen).toMatch(/stripe\s+open\s+auth open/);
    expect(screen).toContain('oldest message: not available at http://127.0.0.1:1');
  });

  it('prints one line per refresh off a terminal', () => {
    expect(statusLine(status)).toBe(
      '2026-11-26T10:00:00.000Z auth-requests 2/1 dlq 3 · ledger-events missing · workers 1/2 ready, 1 unreachable · breakers stripe open\n',
    );
    expect([formatAge(null), formatAge(59), formatAge(600), formatAge(7200), formatAge(200_000)]).toEqual(['-', '59s', '10m', '2h', '2d']);
  });
});
