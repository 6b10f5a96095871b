import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createHttpClient, HttpAmbiguousError, HttpNotSentError, parseRetryAfterMs } from '../../shared/connectors/http.js';
import { createTokenServiceClient, type TokenServiceClient } from '../../shared/connectors/token-service.js';
import { RetryableError, TerminalError } from '../../shared/errors.js';
import { startHttpServer, sendJson, type StartedHttpServer } from '../../cli/sandbox/http-server.js';
import { startTokenServiceSandbox, type TokenServiceSandbox } from '../../cli/sandbox/token-service-server.js';

/** A URL nothing listens on (a server we started and stopped). */
async function deadUrl(): Promise<string> {
  const s = await startHttpServer((_req, res) => res.end());
  await s.close();
  return s.url;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('token-service client', () => {
  let sandbox: TokenServiceSandbox;
  let client: TokenServiceClient;

  beforeAll(async () => {
    sandbox = await startTokenServiceSandbox();
    client = createTokenServiceClient({ baseUrl: sandbox.url, apiKey: sandbox.apiKey, timeoutMs: 5_000 });
  });
  afterAll(async () => {
    await client.close();
    await sandbox.close();
  });
  afterEach(() => sandbox.faults.reset());

  it('200: decrypts a deterministic token into a SensitiveCard', async () => {
    const card = await client.decrypt('tok_4242424242424242_charge-1');
    expect(card.reveal()).toEqual({
      number: '4242424242424242',
      exp_month: 12,
      exp_year: 2030,
      cvc: '123',
      cardholder_name: 'Sandbox Cardholder',
    });
    expect(card.last4).toBe('4242');
    const amex = await client.decrypt('tok_378282246310005');
    expect(amex.reveal().cvc).toBe('1234');
    expect(amex.brand).toBe('amex');
  });

  it('URL-encodes the token id into the path', async () => {
    sandbox.register('tok weird/../id?x=1#y', {
      number: '5555555555554444',
      exp_month: 1,
      exp_year: 2031,
      cvc: '999',
      cardholder_name: 'X',
    });
    const card = await client.decrypt('tok weird/../id?x=1#y');
    expect(card.reveal().number).toBe('5555555555554444');
  });

  it('404 -> TerminalError TOKEN_UNKNOWN; 410 -> TerminalError TOKEN_EXPIRED', async () => {
    const unknown = await rejection(client.decrypt('tok_unknown_1'));
    expect(unknown).toBeInstanceOf(TerminalError);
    expect(unknown).toMatchObject({ code: 'TOKEN_UNKNOWN' });
    const other = await rejection(client.decrypt('not-a-sandbox-token'));
    expect(other).toMatchObject({ code: 'TOKEN_UNKNOWN' });
    const expired = await rejection(client.decrypt('tok_expired_1'));
    expect(expired).toBeInstanceOf(TerminalError);
    expect(expired).toMatchObject({ code: 'TOKEN_EXPIRED' });
  });

  it('429 -> RetryableError honouring Retry-After', async () => {
    sandbox.faults.update({ rate429: 1, retryAfterSec: 7 });
    const err = await rejection(client.decrypt('tok_4242424242424242'));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ code: 'TOKEN_SERVICE_THROTTLED', retryAfterMs: 7000 });
  });

  it('5xx -> RetryableError', async () => {
    sandbox.faults.update({ rate5xx: 1, status5xx: 503 });
    const err = await rejection(client.decrypt('tok_4242424242424242'));
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as Error).message).toContain('503');
  });

  it('timeout (slow answer or no answer) -> RetryableError, ended by the deadline', async () => {
    const quick = createTokenServiceClient({ baseUrl: sandbox.url, apiKey: sandbox.apiKey, timeoutMs: 300 });
    // The answer would come after 10 minutes: only the client's deadline can end this call.
    sandbox.faults.update({ latencyMs: 600_000 });
    const slow = await rejection(quick.decrypt('tok_4242424242424242'));
    expect(slow).toBeInstanceOf(RetryableError);
    expect((slow as RetryableError).cause).toBeInstanceOf(HttpAmbiguousError);
    expect((slow as RetryableError).cause).toMatchObject({ timedOut: true, aborted: false });
    sandbox.faults.update({ latencyMs: 0, rateTimeoutAfterSuccess: 1 });
    expect(await rejection(quick.decrypt('tok_4242424242424242'))).toBeInstanceOf(RetryableError);
    await quick.close();
  });

  it('connection refused -> RetryableError (not sent)', async () => {
    const c = createTokenServiceClient({ baseUrl: await deadUrl(), apiKey: 'k', timeoutMs: 1_000 });
    const err = await rejection(c.decrypt('tok_4242424242424242'));
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).cause).toBeInstanceOf(HttpNotSentError);
    await c.close();
  });

  it('wrong API key -> RetryableError whose message does not carry the key', async () => {
    const c = createTokenServiceClient({ baseUrl: sandbox.url, apiKey: 'secret-key-xyz' });
    const err = await rejection(c.decrypt('tok_4242424242424242'));
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as Error).message).toContain('401');
    expect(JSON.stringify(err) + String((err as Error).message)).not.toContain('secret-key-xyz');
    await c.close();
  });

  it('an invalid 200 body is retryable and never echoed', async () => {
    const bad = await startHttpServer((_req, res) =>
      sendJson(res, 200, { card: { number: '4242424242424242', exp_month: 13, cvc: '123' } }),
    );
    const c = createTokenServiceClient({ baseUrl: bad.url, apiKey: 'k' });
    const err = await rejection(c.decrypt('tok_x'));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).toMatchObject({ code: 'TOKEN_SERVICE_BAD_RESPONSE' });
    expect((err as Error).message).toContain('card.exp_month');
    expect((err as Error).message).not.toContain('4242');
    expect((err as Error).cause).toBeUndefined();
    await c.close();
    await bad.close();
  });

  it('an AbortSignal stops the call', async () => {
    // Neither the answer (10 minutes) nor the deadline (10 minutes) can end this call: only the abort.
    const patient = createTokenServiceClient({ baseUrl: sandbox.url, apiKey: sandbox.apiKey, timeoutMs: 600_000 });
    sandbox.faults.update({ latencyMs: 600_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await rejection(patient.decrypt('tok_4242424242424242', ac.signal));
    expect(err).toBeInstanceOf(RetryableError);
    expect((err as RetryableError).cause).toMatchObject({ aborted: true, timedOut: false });
    await patient.close();
  });

  it('the sandbox counts answers by status', () => {
    expect(sandbox.stats().decrypted).toBeGreaterThanOrEqual(3);
    expect(sandbox.stats().byStatus['404']).toBeGreaterThanOrEqual(2);
  });
});

describe('http (sent / not sent / ambiguous)', () => {
  let server: StartedHttpServer;
  let seen = 0;
  /** Paths of the requests the server received, in order. */
  let paths: string[] = [];
  let mode: 'answer' | 'hang' | 'destroy' = 'answer';
  /** Resolves once the server has received `n` requests (the request is on the wire: anything after is "sent"). */
  const received = async (n: number) => {
    while (seen < n) await new Promise((r) => setTimeout(r, 5));
  };

  beforeAll(async () => {
    server = await startHttpServer(async (req, res) => {
      seen += 1;
      paths.push(req.url ?? '');
      for await (const _ of req);
      if (mode === 'hang') return; // never answer
      if (mode === 'destroy') return void res.socket?.destroy();
      sendJson(res, 503, { ok: false }, { 'retry-after': '2' });
    });
  });
  afterAll(() => server.close());
  afterEach(() => {
    mode = 'answer';
    seen = 0;
    paths = [];
  });

  it('returns any status (5xx included) as a response, not an error', async () => {
    const http = createHttpClient({ baseUrl: server.url });
    const res = await http.request({ method: 'POST', path: '/x', body: 'a=1' });
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(JSON.parse(res.body)).toEqual({ ok: false });
    await http.close();
  });

  it('connection refused -> HttpNotSentError', async () => {
    const http = createHttpClient({ baseUrl: await deadUrl() });
    const err = await rejection(http.request({ method: 'GET', path: '/' }));
    expect(err).toBeInstanceOf(HttpNotSentError);
    expect(err).toBeInstanceOf(RetryableError);
    await http.close();
  });

  it('no answer after the request was written -> HttpAmbiguousError (timed out)', async () => {
    mode = 'hang';
    // A deadline generous enough for the request to be written first on a loaded machine.
    const http = createHttpClient({ baseUrl: server.url, timeoutMs: 2_000 });
    const err = await rejection(http.request({ method: 'POST', path: '/pay', body: 'x' }));
    expect(err).toBeInstanceOf(HttpAmbiguousError);
    expect(err).toMatchObject({ timedOut: true, aborted: false, code: 'HTTP_AMBIGUOUS' });
    expect(seen).toBe(1);
    await http.close();
  });

  it('socket destroyed after the request was written -> HttpAmbiguousError', async () => {
    mode = 'destroy';
    const http = createHttpClient({ baseUrl: server.url });
    expect(await rejection(http.request({ method: 'POST', path: '/pay', body: 'x' }))).toBeInstanceOf(HttpAmbiguousError);
    await http.close();
  });

  it('a request still queued at its deadline is "not sent" and is never sent later', async () => {
    mode = 'hang';
    const http = createHttpClient({ baseUrl: server.url, maxConnections: 1, timeoutMs: 600_000 });
    const stopFirst = new AbortController();
    const first = rejection(http.request({ method: 'POST', path: '/first', body: 'x', signal: stopFirst.signal }));
    await received(1);
    // The only connection is busy with `first` (which never ends by itself): this one waits in the queue past its deadline.
    const second = await rejection(http.request({ method: 'POST', path: '/second', body: 'y', timeoutMs: 100 }));
    expect(second).toBeInstanceOf(HttpNotSentError);
    expect(second).toMatchObject({ timedOut: true });
    stopFirst.abort();
    expect(await first).toBeInstanceOf(HttpAmbiguousError);
    // The pool frees up once `first` gave up; `second` must not go out then. A third request,
    // queued after it, is sent: had `second` still been queued it would have gone first.
    const stopThird = new AbortController();
    const third = rejection(http.request({ method: 'POST', path: '/third', body: 'z', signal: stopThird.signal }));
    await received(2);
    expect(paths).toEqual(['/first', '/third']);
    stopThird.abort();
    await third;
    await http.close();
  });

  it('abort before sending -> not sent (server sees nothing); abort after -> ambiguous', async () => {
    const http = createHttpClient({ baseUrl: server.url });
    const before = await rejection(http.request({ method: 'POST', path: '/x', body: 'x', signal: AbortSignal.abort() }));
    expect(before).toBeInstanceOf(HttpNotSentError);
    expect(before).toMatchObject({ aborted: true });
    expect(seen).toBe(0);
    mode = 'hang';
    const ac = new AbortController();
    const pending = rejection(http.request({ method: 'POST', path: '/x', body: 'x', signal: ac.signal }));
    await received(1); // on the wire: an abort now cannot unsend it
    ac.abort();
    const after = await pending;
    expect(after).toBeInstanceOf(HttpAmbiguousError);
    expect(after).toMatchObject({ aborted: true });
    await http.close();
  });

  it('a header with CR/LF is a terminal programming error', async () => {
    const http = createHttpClient({ baseUrl: server.url });
    const err = await rejection(http.request({ method: 'GET', path: '/', headers: { 'x-bad': 'a\r\nb' } }));
    expect(err).toBeInstanceOf(TerminalError);
    await http.close();
  });

  it('parseRetryAfterMs reads seconds and HTTP dates', () => {
    expect(parseRetryAfterMs('3')).toBe(3000);
    expect(parseRetryAfterMs(undefined)).toBeUndefined();
    expect(parseRetryAfterMs('soon')).toBeUndefined();
    const now = Date.parse('2030-01-01T00:00:00Z');
    expect(parseRetryAfterMs('Tue, 01 Jan 2030 00:00:05 GMT', now)).toBe(5000);
  });
});
