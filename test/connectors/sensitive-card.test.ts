import { Writable } from 'node:stream';
import { format, inspect } from 'node:util';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { brandOf, SensitiveCard, type CardFields } from '../../shared/connectors/sensitive-card.js';
import { createLogger } from '../../shared/log/logger.js';

const FIELDS: CardFields = {
  number: '4242424242424242',
  exp_month: 12,
  exp_year: 2030,
  cvc: '987',
  cardholder_name: 'Ada Lovelace',
};
const card = () => new SensitiveCard(FIELDS);

/** No run of the PAN, the CVC or the holder's name. */
function expectNoCardData(text: string): void {
  expect(text).not.toContain('424242');
  expect(text).not.toContain('987');
  expect(text).not.toContain('Lovelace');
  expect(text).not.toContain('2030');
}

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('SensitiveCard', () => {
  it('serialises to the marker only', () => {
    const c = card();
    expect(JSON.stringify({ card: c })).toBe('{"card":"[SensitiveCard]"}');
    expect(JSON.stringify([c])).toBe('["[SensitiveCard]"]');
    expect(c.toString()).toBe('[SensitiveCard]');
    expect(inspect(c)).toBe('[SensitiveCard]');
    expect(inspect({ nested: { c } }, { depth: 10 })).not.toMatch(/\d{4}/);
    expect(format('%o %O %j', c, c, c)).toBe('[SensitiveCard] [SensitiveCard] "[SensitiveCard]"');
  });

  it('throws on coercion to a primitive', () => {
    const c = card();
    expect(() => `${c}`).toThrow(TypeError);
    expect(() => String(c)).toThrow(TypeError);
    expect(() => (c as unknown as string) + '').toThrow(TypeError);
    expect(() => +(c as unknown as number)).toThrow(TypeError);
    expect(() => c.valueOf()).toThrow(TypeError);
    // Loose equality coerces too: comparing by value is a bug.
    // biome-ignore lint/suspicious/noDoubleEquals: the coercion is what is under test
    expect(() => (c as unknown) == '4242424242424242').toThrow(TypeError);
  });

  it('has no own properties to enumerate, copy or clone', () => {
    const c = card();
    expect(Reflect.ownKeys(c)).toEqual([]);
    expect(Object.keys(c)).toEqual([]);
    expect({ ...c }).toEqual({});
    expect(Object.assign({}, c)).toEqual({});
    expect(JSON.stringify(structuredClone(c))).toBe('{}');
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => Object.assign(c, { number: FIELDS.number })).toThrow(TypeError);
  });

  it('reveals the fields to connectors and exposes last4 and brand', () => {
    const c = card();
    expect(c.reveal()).toEqual(FIELDS);
    expect(c.last4).toBe('4242');
    expect(c.brand).toBe('visa');
    expect(c.disposed).toBe(false);
  });

  it('dispose() drops the values: reveal throws, last4/brand stay', () => {
    const c = card();
    c.dispose();
    c.dispose(); // idempotent
    expect(c.disposed).toBe(true);
    expect(() => c.reveal()).toThrow(/disposed/);
    expect(c.last4).toBe('4242');
    expect(c.brand).toBe('visa');
  });

  it.each([
    ['4242424242424242', 'visa'],
    ['5555555555554444', 'mastercard'],
    ['2223003122003222', 'mastercard'],
    ['378282246310005', 'amex'],
    ['6011111111111117', 'discover'],
    ['3566002020360505', 'jcb'],
    ['36227206271667', 'diners'],
    ['6200000000000005', 'unionpay'],
    ['6759649826438453', 'maestro'],
    ['9999999999999995', 'unknown'],
  ])('brand of %s is %s', (number, brand) => {
    expect(brandOf(number)).toBe(brand);
  });

  it('plain pino shows no card data', () => {
    const out = capture();
    const log = pino({ level: 'info' }, out.stream);
    const c = card();
    log.info({ card: c, req: { card: c } }, 'authorising');
    log.info(c as unknown as object, 'card as merge object');
    log.info({ err: new Error('boom'), card: c }, 'with an error');
    expect(out.text()).toContain('[SensitiveCard]');
    expectNoCardData(out.text());
  });

  it('the fleet logger shows no card data', () => {
    const out = capture();
    const log = createLogger({ worker: 'test', destination: out.stream as never });
    const c = card();
    log.info({ charge: { card: c }, payload: [c] }, 'authorising');
    expectNoCardData(out.text());
  });
});
