/** Unit tests of the payout worker's pure parts: configuration, the message schema, chunking, leases. */
import { describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../shared/runtime/worker-kit.js';
import { createLeaseKeeper } from '../../shared/core/lease-keeper.js';
import type { Lease, LeaseStore } from '../../shared/core/ports.js';
import { ConfigError, MessageParseError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log/logger.js';
import { payoutEnvShape, payoutInvariants, toPayoutSettings } from '../../workers/payout/config.js';
import { createShardKeeper } from '../../workers/payout/leases.js';
import { advance, chunkChanges, payoutChange, type Payout } from '../../workers/payout/model.js';
import { parseCheckoutApprovalAccepted } from '../../workers/payout/schema.js';
import { approval, DEBTOR, GOOD_IBAN, snsWrapped } from './support.js';

const BASE = {
  AWS_REGION: 'eu-west-2',
  AWS_ENDPOINT_URL: 'http://127.0.0.1:4566',
  AWS_ACCESS_KEY_ID: 'x',
  AWS_SECRET_ACCESS_KEY: 'y',
  LHV_API_BASE_URL: 'http://127.0.0.1:8104',
  LHV_DEBTOR_NAME: DEBTOR.name,
  LHV_DEBTOR_IBAN: DEBTOR.iban,
  LHV_DEBTOR_BIC: DEBTOR.bic,
};

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ env: payoutEnvShape, refine: (e, ctx) => payoutInvariants(e, ctx) }, env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
}

describe('Payout config', () => {
  it('accepts the safe defaults: 30 s lease, 10 s renew, 10 s backoff, 5 s initiation poll, 5 s retry cap', () => {
    expect(problems(BASE)).toEqual([]);
    const { parsed } = loadConfig({ env: payoutEnvShape, refine: (e, ctx) => payoutInvariants(e, ctx) }, BASE);
    const s = toPayoutSettings(parsed as never);
    expect(s.shardLease).toMatchObject({ leaseMs: 30_000, renewMs: 10_000, backoffMs: 10_000, allowTight: false });
    expect(s.initiation).toMatchObject({ pollMs: 5000, batchSize: 100, retryMaxMs: 5000 });
    expect(s.debtor).toEqual(DEBTOR);
  });

  it("refuses the design's 30 s / 20 s unless PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE is set; never renew >= lease", () => {
    const tight = { ...BASE, PAYFLEET_PAYOUT_SHARD_LEASE_MS: '30000', PAYFLEET_PAYOUT_SHARD_RENEW_MS: '20000' };
    expect(problems(tight)).toEqual([
      expect.stringMatching(
        /^PAYFLEET_PAYOUT_SHARD_RENEW_MS: must be at most half of PAYFLEET_PAYOUT_SHARD_LEASE_MS \(30000\).*ALLOW_TIGHT/,
      ),
    ]);
    expect(problems({ ...tight, PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE: 'true' })).toEqual([]);
    expect(
      problems({ ...tight, PAYFLEET_PAYOUT_SHARD_RENEW_MS: '30000', PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE: 'true' }),
    ).toEqual([expect.stringMatching(/^PAYFLEET_PAYOUT_SHARD_RENEW_MS: must be less than/)]);
  });

  it('one clear line per bad variable, values never echoed', () => {
    const out = problems({
      ...BASE,
      LHV_API_BASE_URL: 'https://connect.lhv.com',
      LHV_DEBTOR_IBAN: 'EE00SECRET',
      LHV_DEBTOR_BIC: 'nope',
      PAYFLEET_PAYOUT_BATCH_SIZE: '101',
      PAYFLEET_PAYOUT_RETRY_BASE_MS: '9000',
    });
    expect(out).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^LHV_DEBTOR_IBAN: must be a valid IBAN/),
        expect.stringMatching(/^LHV_DEBTOR_BIC: must be an 8- or 11-character BIC/),
        expect.stringMatching(/^PAYFLEET_PAYOUT_BATCH_SIZE: must be <= 100/),
      ]),
    );
    expect(out.join('\n')).not.toContain('SECRET');
    // Refinements run once the shapes parse.
    const cross = problems({ ...BASE, LHV_API_BASE_URL: 'https://connect.lhv.com', PAYFLEET_PAYOUT_RETRY_BASE_MS: '9000' });
    expect(cross).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^PAYFLEET_PAYOUT_RETRY_BASE_MS: must not exceed/),
        expect.stringMatching(/^LHV_CLIENT_CERT_PEM: is required for an https LHV_API_BASE_URL/),
        expect.stringMatching(/^LHV_CLIENT_KEY_PEM: is required/),
      ]),
    );
    expect(problems({ ...BASE, LHV_API_BASE_URL: 'http://sandbox:8104' })).toEqual([
      expect.stringMatching(/^LHV_API_BASE_URL: uses http:\/\/ for a non-loopback host/),
    ]);
    expect(problems({ ...BASE, LHV_API_BASE_URL: 'http://sandbox:8104', LHV_ALLOW_INSECURE_HTTP: 'true' })).toEqual([]);
    expect(problems({ ...BASE, LHV_CLIENT_CERT_FILE: '/nonexistent/cert.pem' })).toEqual([
      'LHV_CLIENT_CERT_FILE: is not a readable file',
    ]);
    expect(problems({ ...BASE, LHV_DEBTOR_NAME: '' }).join()).toContain('LHV_DEBTOR_NAME: is required but not set');
  });
});

describe('CheckoutApprovalAccepted parsing', () => {
  it('raw and SNS-wrapped bodies parse to the same event', () => {
    const e = approval('p-1');
    expect(parseCheckoutApprovalAccepted(JSON.stringify(snsWrapped(e)))).toEqual(
      parseCheckoutApprovalAccepted(JSON.stringify(e)),
    );
  });

  it('unknown fields are ignored; a UUID paymentId is accepted (sent as its 32-hex EndToEndId)', () => {
    const id = crypto.randomUUID();
    expect(parseCheckoutApprovalAccepted(JSON.stringify({ ...approval(id), extra: 1 })).paymentId).toBe(id);
  });

  it.each([
    ['not JSON', '{nope', /body is not JSON/],
    ['wrong eventType', JSON.stringify({ ...approval('p'), eventType: 'Other' }), /eventType/],
    ['amount 0', JSON.stringify(approval('p', { amount: 0 })), /amount/],
    ['GBP', JSON.stringify(approval('p', { currency: 'GBP' })), /currency: must be EUR/],
    ['bad IBAN', JSON.stringify(approval('p', { creditor: { name: 'A', iban: 'EE382200221020145600' } })), /creditor\.iban/],
    ['bad BIC', JSON.stringify(approval('p', { creditor: { name: 'A', iban: GOOD_IBAN, bic: 'X' } })), /creditor\.bic/],
    ['paymentId with spaces', JSON.stringify(approval('has space')), /paymentId/],
    ['SNS with a bad Message', JSON.stringify({ Type: 'Notification', Message: '{}' }), /^SNS Message: /],
    [
      'SNS SubscriptionConfirmation',
      JSON.stringify({ Type: 'SubscriptionConfirmation', Message: 'x' }),
      /SubscriptionConfirmation/,
    ],
  ])('%s is a MessageParseError (INVALID_MESSAGE)', (_name, body, message) => {
    let err: unknown;
    try {
      parseCheckoutApprovalAccepted(body);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MessageParseError);
    expect((err as MessageParseError).code).toBe('INVALID_MESSAGE');
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('EE382200221020145600');
  });
});

describe('Chunked commits', () => {
  const payout = (i: number): Payout => ({
    shard: 's',
    paymentId: `p${i}`,
    kind: 'PAYOUT',
    eventId: 'e',
    fingerprint: 'f',
    amount: 1,
    currency: 'EUR',
    creditor: { name: 'n', iban: GOOD_IBAN },
    remittanceInformation: '',
    approvedAt: '',
    receivedAt: '',
    status: 'INITIATION_PENDING',
    initiableShard: 's',
    batchId: 'b',
    live: false,
    history: [],
    updatedAt: '',
    version: 2,
    eventSeq: 1,
  });

  it('100 payouts with one event each (200 items) become transactions of <= 100 items with the fence', () => {
    const changes = Array.from({ length: 100 }, (_, i) => {
      const p = payout(i);
      const { after, events } = advance(p, ['INITIATED'], 'now', () => ({}));
      return payoutChange(p, after, events);
    });
    const chunks = chunkChanges(changes, 1);
    expect(chunks.map((c) => c.length)).toEqual([49, 49, 2]);
    for (const c of chunks) expect(1 + c.reduce((n, x) => n + 1 + (x.events?.length ?? 0), 0)).toBeLessThanOrEqual(100);
    expect(chunks.flat()).toEqual(changes);
    expect(changes[0]?.remove).toEqual(['initiableShard']);
  });

  it('the state graph refuses an edge it does not have', () => {
    const paid = advance(advance(payout(1), ['INITIATED'], 't', () => ({})).after, ['PAID'], 't', () => ({})).after;
    expect(() => advance(paid, ['REJECTED'], 't', () => ({}))).toThrow(/no edge PAID -> REJECTED/);
    const walked = advance(payout(2), ['INITIATED', 'PAID'], 't', (s) => ({ s }));
    expect(walked.events.map((e) => e.eventType)).toEqual(['PAYOUT_INITIATED', 'PAYOUT_PAID']);
    expect(walked.after.initiableShard).toBeUndefined();
  });
});

describe('createShardKeeper', () => {
  function memoryStore(): LeaseStore & { written: number[] } {
    const written: number[] = [];
    let token = 0;
    return {
      written,
      acquire: async (key, owner, leaseMs) => {
        written.push(leaseMs);
        return { acquired: true, lease: { key, owner, fencingToken: ++token, expiresAtMs: Date.now() + leaseMs } };
      },
      renew: async (lease: Lease, leaseMs) => {
        written.push(leaseMs);
        return { ...lease, expiresAtMs: Date.now() + leaseMs };
      },
      release: async () => undefined,
      inspect: async () => undefined,
    };
  }

  describe('tight leases', () => {
    it('the core keeper refuses renew > lease / 2; with the flag the row keeps the configured lease and is renewed before it runs out', async () => {
      expect(() => createLeaseKeeper({ store: memoryStore(), leaseMs: 300, renewMs: 200 })).toThrow(/renewMs/);
      expect(() =>
        createShardKeeper({ store: memoryStore(), leaseMs: 300, renewMs: 200, allowTight: false, log: silentLogger() }),
      ).toThrow();
      // The keeper's timers run on a clock the test moves: "on time" is proven by the schedule, not
      // by hoping the machine is idle enough for a 20 ms margin.
      vi.useFakeTimers();
      try {
        const store = memoryStore();
        const keeper = createShardKeeper({ store, leaseMs: 300, renewMs: 200, allowTight: true, log: silentLogger() });
        const got = await keeper.acquire('payout-shard#000', 'me');
        expect(got.held?.lease.expiresAtMs).toBe(Date.now() + 300);
        await vi.advanceTimersByTimeAsync(450);
        expect(store.written.length).toBeGreaterThanOrEqual(3);
        expect(store.written.every((ms) => ms === 300)).toBe(true);
        expect(got.held?.signal.aborted).toBe(false);
        await keeper.releaseAll();
      } finally {
        vi.useRealTimers();
      }
    });
  });
});
