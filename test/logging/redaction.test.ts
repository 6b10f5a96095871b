/**
 * Function: createLogger / maskPans / redactDeep (shared/log). Every assertion reads the JSON lines
 * the logger actually wrote, so a serializer or formatter that is bypassed shows up here.
 */
import { describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../shared/log/logger.js';
import { CENSORED, isSensitiveKey, isTimestampInContext, maskPans, redactDeep } from '../../shared/log/redact.js';
import { luhnChecksumValid } from '../../shared/util/luhn.js';
import { findCardData } from '../support/card-scan.js';

// Luhn-valid test PANs (Stripe / network test numbers).
const VISA = '4242424242424242';
const MC = '5555555555554444';
const AMEX = '378282246310005'; // 15 digits
const NOT_LUHN = '4242424242424241'; // one digit off: not a card number

/** A logger whose lines are collected in memory, parsed and raw. */
function capture(level = 'info'): { log: Logger; raw: string[]; lines: () => Record<string, unknown>[] } {
  const raw: string[] = [];
  const log = createLogger({ worker: 'auth', level, destination: { write: (s: string) => void raw.push(s) } });
  return { log, raw, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const last4 = (pan: string) => `${'*'.repeat(pan.length - 4)}${pan.slice(-4)}`;

describe('createLogger (PAN masking)', () => {
  it('masks a PAN in msg, in nested fields, in arrays, and in an Error message and stack', () => {
    const c = capture();
    c.log.info(`declined card ${VISA} at gateway`);
    c.log.info({ request: { body: { payment: { note: `card=${MC}` } } } }, 'nested');
    c.log.info({ attempts: [{ raw: `pan ${AMEX}` }, `also ${VISA}`] }, 'array');
    const err = new Error(`processor said: invalid card ${VISA}`);
    c.log.error({ err }, 'charge failed');
    c.log.error(new Error(`bare error with ${MC}`));

    const text = c.raw.join('');
    for (const pan of [VISA, MC, AMEX]) expect(text).not.toContain(pan);
    for (const pan of [VISA, MC, AMEX]) expect(text).not.toContain(pan.slice(0, 12)); // no partial leak either

    const [msgLine, nested, array, errLine, bare] = c.lines();
    expect(msgLine!.msg).toBe(`declined card ${last4(VISA)} at gateway`);
    expect(nested).toMatchObject({ request: { body: { payment: { note: `card=${last4(MC)}` } } } });
    expect(array!.attempts).toEqual([{ raw: `pan ${last4(AMEX)}` }, `also ${last4(VISA)}`]);
    const e = errLine!.err as { message: string; stack: string };
    expect(e.message).toBe(`processor said: invalid card ${last4(VISA)}`);
    expect(e.stack).toContain(`invalid card ${last4(VISA)}`);
    expect(e.stack).toMatch(/\n\s+at /); // the stack is kept, only masked
    expect(JSON.stringify(bare)).toContain(`bare error with ${last4(MC)}`);
  });

  it('masks PANs written with spaces or dashes between groups, and next to other digit groups', () => {
    const c = capture();
    c.log.info('a 4242 4242 4242 4242 b');
    c.log.info('a 5555-5555-5555-4444 b');
    // Real error texts put an expiry or a timestamp right next to the number.
    c.log.info('card 4242 4242 4242 4242 12/30 cvc 123');
    c.log.info('seen 2024-01-15 4242424242424242 then');
    c.log.info('ref 15 5555-5555-5555-4444');
    const msgs = c.lines().map((l) => l.msg);
    expect(msgs).toEqual([
      `a ${last4(VISA)} b`,
      `a ${last4(MC)} b`,
      `card ${last4(VISA)} 12/30 cvc 123`,
      `seen 2024-01-15 ${last4(VISA)} then`,
      `ref 15 ${last4(MC)}`,
    ]);
  });

  it('leaves non-Luhn 16-digit numbers, ISO timestamps and ordinary numbers alone', () => {
    const c = capture();
    c.log.info(
      { orderRef: NOT_LUHN, at: '2024-06-01T12:34:56.789Z', amount: 1250, phone: '+44 20 7946 0958' },
      `ref ${NOT_LUHN}`,
    );
    const [line] = c.lines();
    expect(line).toMatchObject({
      orderRef: NOT_LUHN,
      at: '2024-06-01T12:34:56.789Z',
      amount: 1250,
      phone: '+44 20 7946 0958',
      msg: `ref ${NOT_LUHN}`,
    });
    // The logger's own timestamp is ISO, never epoch millis (13 digits can pass Luhn).
    expect(line!.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });
});

describe('createLogger (sensitive keys)', () => {
  const SENSITIVE = ['cvc', 'cvv', 'number', 'card', 'apiKey', 'authorization', 'password', 'secret'] as const;

  it('censors sensitive keys at any depth, whatever their value', () => {
    const c = capture();
    const deep = Object.fromEntries(SENSITIVE.map((k) => [k, `value-of-${k}`]));
    c.log.info({ ...deep, outer: { inner: { ...deep, list: [deep] } }, headers: { Authorization: 'Bearer tok_abc' } }, 'keys');
    const text = c.raw.join('');
    for (const k of SENSITIVE) expect(text).not.toContain(`value-of-${k}`);
    expect(text).not.toContain('tok_abc');

    const [line] = c.lines();
    const expected = Object.fromEntries(SENSITIVE.map((k) => [k, CENSORED]));
    expect(line).toMatchObject({
      ...expected,
      outer: { inner: { ...expected, list: [expected] } },
      headers: { Authorization: CENSORED },
    });
  });

  it('censors a whole card object, including a number that is not Luhn-valid', () => {
    const c = capture();
    c.log.info({ decrypted: { card: { number: NOT_LUHN, cvc: '123', exp_month: 12 } } }, 'token');
    const text = c.raw.join('');
    expect(text).not.toContain(NOT_LUHN);
    expect(text).not.toContain('"123"');
  });

  it('censors sensitive keys in child logger bindings, and keeps the correlation fields', () => {
    const c = capture();
    const child = c.log.child({ messageId: 'm-1', chargeId: 'ch_123', apiKey: 'sk_live_xyz', password: 'hunter2' });
    child.info({ attempt: 2 }, 'authorising');
    child.child({ secret: 'deeper-secret', groupId: 'ch_123' }).warn('retrying');
    const text = c.raw.join('');
    expect(text).not.toContain('sk_live_xyz');
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('deeper-secret');

    const [first, second] = c.lines();
    expect(first).toMatchObject({
      worker: 'auth',
      messageId: 'm-1',
      chargeId: 'ch_123',
      apiKey: CENSORED,
      password: CENSORED,
      attempt: 2,
      level: 'info',
      msg: 'authorising',
    });
    expect(second).toMatchObject({
      worker: 'auth',
      messageId: 'm-1',
      chargeId: 'ch_123',
      groupId: 'ch_123',
      secret: CENSORED,
      level: 'warn',
    });

    // Bindings replaced later go through the same censor.
    child.setBindings({ authorization: 'Bearer late-token' });
    child.info('after setBindings');
    expect(c.raw.at(-1)).not.toContain('late-token');
    expect(c.lines().at(-1)).toMatchObject({ authorization: CENSORED, messageId: 'm-1' });
  });

  it('does not censor look-alike keys that carry correlation data', () => {
    for (const k of [
      'worker',
      'messageId',
      'chargeId',
      'paymentId',
      'paymentTokenId',
      'cardBrand',
      'last4',
      'numberOfAttempts',
    ]) {
      expect(isSensitiveKey(k), k).toBe(false);
    }
    for (const k of ['CVC', 'card_number', 'cardNumber', 'api_key', 'client_secret', 'exp_year', 'decryptedToken']) {
      expect(isSensitiveKey(k), k).toBe(true);
    }
  });
});

describe('maskPans', () => {
  it.each([
    [VISA, last4(VISA)],
    [AMEX, last4(AMEX)],
    ['4000056655665556', '************5556'], // Visa debit test card
    ['6011111111111117', '************1117'], // Discover
    ['4242-4242-4242-4242', last4(VISA)],
    [`x${VISA}y`, `x${last4(VISA)}y`],
    [`"${VISA}","${MC}"`, `"${last4(VISA)}","${last4(MC)}"`],
    [NOT_LUHN, NOT_LUHN],
    ['424242424242', '424242424242'], // 12 digits: too short to be a PAN
    [`1${VISA}`, `1${VISA}`], // 17 contiguous digits, not Luhn-valid as a whole: some other identifier
    [`${VISA}0000`, `${VISA}0000`], // 20 contiguous digits: longer than any PAN
    ['2024-06-01T12:34:56.789Z', '2024-06-01T12:34:56.789Z'],
    ['4242  4242 4242 4242', '4242  4242 4242 4242'], // double space: not one number
    ['', ''],
    // A 32-hex id (payout batch id) whose digits chain into a Luhn-valid 16-digit run stays whole...
    ['00fe3103c4111111111175058d8ec24d', '00fe3103c4111111111175058d8ec24d'],
    // ...but only a whole 32-hex token with a letter in it: shorter or longer hex, or digits only, are searched.
    ['fe3103c4111111111175058', 'fe3103c************5058'],
    ['00000000000000004111111111175058', '00000000000000004111111111175058'], // 32 digits: longer than any PAN
  ])('%j -> %j', (input, output) => {
    expect(maskPans(input)).toBe(output);
  });

  it('redactDeep copies without mutating its input and survives cycles', () => {
    const input: Record<string, unknown> = { a: VISA, card: { number: VISA } };
    input.self = input;
    const out = redactDeep(input) as Record<string, unknown>;
    expect(out).toEqual({ a: last4(VISA), card: CENSORED, self: '[Circular]' });
    expect(input.a).toBe(VISA);
  });
});

describe('maskPans (epoch-millisecond timestamps)', () => {
  // 1764127207280 (2025-11-26T03:20:07.280Z) passes the Luhn check, like one timestamp in ten.
  const MS = '1764127207280';
  const masked = last4(MS);

  it('the example timestamp passes the Luhn check (else these tests would prove nothing)', () => {
    expect(luhnChecksumValid(MS)).toBe(true);
  });

  it('keeps a timestamp after a time word in free text, and in a field named like a time', () => {
    const c = capture();
    c.log.warn(`lease charge#c1 held by auth-host-1-abc (token 3) until ${MS}`);
    c.log.info({ expiresAtMs: Number(MS), startedAt: Number(MS), until: MS, ts: Number(MS), doNotRetryUntil: MS }, 'lease state');
    c.log.info({ err: new Error(`lease held until ${MS}`) }, 'conflict');
    const [free, fields, err] = c.lines();
    expect(free!.msg).toBe(`lease charge#c1 held by auth-host-1-abc (token 3) until ${MS}`);
    expect(fields).toMatchObject({ expiresAtMs: Number(MS), startedAt: Number(MS), until: MS, ts: Number(MS), doNotRetryUntil: MS });
    expect((err!.err as { message: string }).message).toBe(`lease held until ${MS}`);
  });

  it.each([
    [`until ${MS}`, `until ${MS}`],
    [`expires at ${MS}`, `expires at ${MS}`],
    [`since=${MS}`, `since=${MS}`],
    [`{"expiresAtMs":${MS}}`, `{"expiresAtMs":${MS}}`],
    [`{"created_at": "${MS}"}`, `{"created_at": "${MS}"}`],
    [`{"until":"${MS}"}`, `{"until":"${MS}"}`],
    // Not a time name before it: masked, as any Luhn-valid 13-digit run.
    [`ref ${MS}`, `ref ${masked}`],
    [`{"orderRef":${MS}}`, `{"orderRef":${masked}}`],
    [MS, masked],
    // A time name, but not a plausible current timestamp: a 13-digit Visa PAN stays masked.
    ['until 4000000000006', 'until *********0006'],
    ['{"expiresAtMs":4222222222222}', '{"expiresAtMs":*********2222}'],
    // Card numbers of 14-19 digits are masked whatever precedes them.
    [`until ${VISA}`, `until ${last4(VISA)}`],
    [`{"createdAt":"${AMEX}"}`, `{"createdAt":"${last4(AMEX)}"}`],
    [`at ${MC}`, `at ${last4(MC)}`],
  ])('%j -> %j', (input, output) => {
    expect(maskPans(input)).toBe(output);
  });

  it('redactDeep keeps a timestamp string in a time field and masks the same digits elsewhere', () => {
    expect(redactDeep({ expiresAt: MS, note: `ref ${MS}`, cardAt: VISA })).toEqual({ expiresAt: MS, note: `ref ${masked}`, cardAt: last4(VISA) });
  });

  it('the suite-wide log scan applies the same rule: a timestamp in a time field is not card data', () => {
    expect(findCardData(`{"msg":"lease held by x (token 3) until ${MS}","expiresAtMs":${MS}}`)).toEqual([]);
    expect(findCardData(`{"orderRef":${MS}}`)).toEqual(['card number ending 7280']);
    expect(isTimestampInContext(`until ${MS}`, 6, MS)).toBe(true);
  });
});
