import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmbiguousError, RetryableError } from '../../shared/errors.js';
import { createLhvClient } from '../../workers/payout/lhv/client.js';
import { buildPain001, newBatchIdempotencyKey } from '../../workers/payout/lhv/pain001.js';
import { startLhvSandbox, type LhvSandbox } from '../../cli/sandbox/lhv-server.js';

/** Throw-away PKI made with the openssl CLI: a CA, a server cert for 127.0.0.1, a client cert, and a rogue client. */
function makePki(dir: string) {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const issue = (name: string, ca: string, subject: string, ext?: string) => {
    run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    const extArgs = ext ? ['-extfile', `${name}.ext`] : [];
    if (ext) writeFileSync(join(dir, `${name}.ext`), ext);
    run(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.crt`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '1',
      ...extArgs,
    );
  };
  for (const ca of ['ca', 'rogue-ca'])
    run('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '1', '-subj', `/CN=payfleet ${ca}`);
  issue('server', 'ca', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  issue('client', 'ca', '/CN=payfleet client', 'extendedKeyUsage=clientAuth\n');
  issue('rogue', 'rogue-ca', '/CN=rogue client', 'extendedKeyUsage=clientAuth\n');
  const pem = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    ca: pem('ca.crt'),
    server: { cert: pem('server.crt'), key: pem('server.key') },
    client: { cert: pem('client.crt'), key: pem('client.key') },
    rogue: { cert: pem('rogue.crt'), key: pem('rogue.key') },
  };
}

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasOpenssl)('LHV client over mTLS (sandbox with client-certificate verification)', () => {
  let dir: string;
  let pki: ReturnType<typeof makePki>;
  let sandbox: LhvSandbox;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'payfleet-lhv-pki-'));
    pki = makePki(dir);
    sandbox = await startLhvSandbox({ tls: { ...pki.server, ca: pki.ca } });
  });
  afterAll(async () => {
    await sandbox?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('works with the client certificate and the private CA', async () => {
    expect(sandbox.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const client = createLhvClient({ baseUrl: sandbox.url, ...pki.client, ca: pki.ca, timeoutMs: 2000, maxConnections: 2 });
    await client.heartbeat();
    const msgId = newBatchIdempotencyKey();
    const xml = buildPain001({
      msgId,
      debtor: { name: 'Payfleet', iban: 'EE382200221020145685', bic: 'LHVBEE22' },
      payouts: [
        { paymentId: 'tls-1', amount: 100, currency: 'EUR', creditor: { name: 'Payee', iban: 'DE89370400440532013000' } },
      ],
    });
    const { messageRequestId } = await client.initiatePayment(xml, msgId);
    expect(sandbox.initiations().find((i) => i.msgId === msgId)?.messageRequestId).toBe(messageRequestId);
    await client.close();
  });

  it('keeps server verification on: without the private CA the handshake fails (retryable, nothing sent)', async () => {
    const before = sandbox.stats().requests;
    const client = createLhvClient({ baseUrl: sandbox.url, ...pki.client, timeoutMs: 2000, maxConnections: 1 });
    const err = await client.heartbeat().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).code).toBe('LHV_UNREACHABLE');
    expect(sandbox.stats().requests).toBe(before);
    await client.close();
  });

  it('the bank refuses a client certificate from another CA', async () => {
    const before = sandbox.stats().requests;
    const client = createLhvClient({ baseUrl: sandbox.url, ...pki.rogue, ca: pki.ca, timeoutMs: 2000, maxConnections: 1 });
    const err = await client.heartbeat().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RetryableError);
    // Under TLS 1.3 the server's rejection arrives after the client has written its request, so the
    // client cannot tell it from "accepted, then lost": a payment is ambiguous (safe: same key again).
    const msgId = newBatchIdempotencyKey();
    const xml = buildPain001({
      msgId,
      debtor: { name: 'Payfleet', iban: 'EE382200221020145685', bic: 'LHVBEE22' },
      payouts: [
        { paymentId: 'tls-2', amount: 100, currency: 'EUR', creditor: { name: 'Payee', iban: 'DE89370400440532013000' } },
      ],
    });
    const perr = await client.initiatePayment(xml, msgId).catch((e: unknown) => e);
    expect(perr).toBeInstanceOf(AmbiguousError);
    expect(sandbox.stats().requests).toBe(before);
    expect(sandbox.stats().initiationsPerPaymentId['tls-2']).toBeUndefined();
    await client.close();
  });
});
