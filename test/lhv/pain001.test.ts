import { describe, expect, it } from 'vitest';
import { TerminalError } from '../../shared/errors.js';
import {
  buildPain001,
  formatMinorUnits,
  isValidIban,
  newBatchIdempotencyKey,
  parseDecimalToMinor,
  parsePain001,
  toEndToEndId,
  toSepaText,
} from '../../workers/payout/lhv/pain001.js';
import { PAIN001_NS, type Pain001Batch, type PayoutInstruction } from '../../workers/payout/lhv/types.js';

const DEBTOR = { name: 'Payfleet Payouts OÜ', iban: 'EE382200221020145685', bic: 'LHVBEE22' };

function payout(i: number, extra: Partial<PayoutInstruction> = {}): PayoutInstruction {
  return {
    paymentId: `pay-${i}`,
    amount: 1000 + i,
    currency: 'EUR',
    creditor: { name: `Creditor ${i}`, iban: 'DE89370400440532013000', bic: 'COBADEFFXXX' },
    remittanceInformation: `Invoice ${i}`,
    ...extra,
  };
}

function batch(payouts: PayoutInstruction[], extra: Partial<Pain001Batch> = {}): Pain001Batch {
  return {
    msgId: newBatchIdempotencyKey(),
    debtor: DEBTOR,
    requestedExecutionDate: '2030-01-02',
    createdAt: new Date('2030-01-01T10:00:00.123Z'),
    payouts,
    ...extra,
  };
}

function expectInvalid(fn: () => unknown, reason: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).code).toBe('INVALID_PAYOUT');
    expect((err as Error).message).toMatch(reason);
    return;
  }
  throw new Error('expected a TerminalError');
}

describe('buildPain001 / parsePain001', () => {
  it('round-trips a batch: header, debtor, every transaction keyed by paymentId', () => {
    const b = batch([
      payout(1),
      payout(2, { creditor: { name: 'No Bic GmbH', iban: 'GB82 WEST 1234 5698 7654 32' }, remittanceInformation: undefined }),
    ]);
    const xml = buildPain001(b);
    expect(xml).toContain(`<Document xmlns="${PAIN001_NS}">`);
    const parsed = parsePain001(xml);
    expect(parsed.msgId).toBe(b.msgId);
    expect(parsed.paymentInformationId).toBe(b.msgId);
    expect(parsed.createdAt).toBe('2030-01-01T10:00:00Z');
    expect(parsed.nbOfTxs).toBe(2);
    expect(parsed.ctrlSum).toBe(1001 + 1002);
    expect(parsed.requestedExecutionDate).toBe('2030-01-02');
    expect(parsed.debtor).toEqual({ name: 'Payfleet Payouts OU', iban: DEBTOR.iban, bic: 'LHVBEE22' });
    expect(parsed.transactions).toEqual([
      {
        instrId: 'pay-1',
        endToEndId: 'pay-1',
        amount: 1001,
        currency: 'EUR',
        creditorName: 'Creditor 1',
        creditorIban: 'DE89370400440532013000',
        creditorBic: 'COBADEFFXXX',
        remittanceInformation: 'Invoice 1',
      },
      {
        instrId: 'pay-2',
        endToEndId: 'pay-2',
        amount: 1002,
        currency: 'EUR',
        creditorName: 'No Bic GmbH',
        creditorIban: 'GB82WEST12345698765432',
        creditorBic: undefined,
        remittanceInformation: undefined,
      },
    ]);
    // Amounts are decimal strings in major units with two places.
    expect(xml).toContain('<InstdAmt Ccy="EUR">10.01</InstdAmt>');
    expect(xml).toContain('<CtrlSum>20.03</CtrlSum>');
    expect(xml).not.toContain('<CdtrAgt><FinInstnId><BICFI>undefined');
  });

  it('is deterministic for the same input (a retry sends the same bytes)', () => {
    const b = batch([payout(1)]);
    expect(buildPain001(b)).toBe(buildPain001(b));
  });

  it('escapes XML and cleans text to the SEPA set, truncating remittance to 140', () => {
    const long = `Ref <x> & "y" 'z' ü€✓ ${'A'.repeat(200)}`;
    const xml = buildPain001(
      batch([
        payout(1, { creditor: { name: 'Smith & Sons <Ltd>', iban: 'DE89370400440532013000' }, remittanceInformation: long }),
      ]),
    );
    expect(xml).not.toMatch(/<x>|& |"y"/);
    const tx = parsePain001(xml).transactions[0];
    expect(tx?.creditorName).toBe('Smith + Sons Ltd');
    expect(tx?.remittanceInformation?.length).toBe(140);
    expect(tx?.remittanceInformation?.startsWith("Ref x + y 'z' u ")).toBe(true);
    expect(toSepaText("Zoë O'Brien-Straße (Köln)", 70)).toBe("Zoe O'Brien-Strasse (Koln)");
  });

  it('escapes an apostrophe in identifiers', () => {
    const xml = buildPain001(batch([payout(1, { paymentId: "it's" })]));
    expect(xml).toContain('<EndToEndId>it&apos;s</EndToEndId>');
    expect(parsePain001(xml).transactions[0]?.endToEndId).toBe("it's");
  });

  it('rejects a bad IBAN checksum without echoing the IBAN', () => {
    // DE89... with one digit changed: shape fine, mod-97 wrong.
    expectInvalid(
      () => buildPain001(batch([payout(1, { creditor: { name: 'X', iban: 'DE89370400440532013001' } })])),
      /pay-1: creditor IBAN \*\*\*\*3001 is not a valid IBAN/,
    );
    try {
      buildPain001(batch([payout(1, { creditor: { name: 'X', iban: 'DE89370400440532013001' } })]));
    } catch (err) {
      expect((err as Error).message).not.toContain('DE89370400440532013001');
    }
  });

  it('rejects non-positive, fractional and non-EUR amounts, empty names, bad BICs', () => {
    expectInvalid(() => buildPain001(batch([payout(1, { amount: 0 })])), /amount must be a positive integer/);
    expectInvalid(() => buildPain001(batch([payout(1, { amount: -5 })])), /amount must be a positive integer/);
    expectInvalid(() => buildPain001(batch([payout(1, { amount: 12.5 })])), /amount must be a positive integer/);
    expectInvalid(() => buildPain001(batch([payout(1, { currency: 'GBP' as 'EUR' })])), /currency must be EUR/);
    expectInvalid(
      () => buildPain001(batch([payout(1, { creditor: { name: '✓✓', iban: 'DE89370400440532013000' } })])),
      /creditor name is empty/,
    );
    expectInvalid(
      () => buildPain001(batch([payout(1, { creditor: { name: 'X', iban: 'DE89370400440532013000', bic: 'NOPE' } })])),
      /BIC/,
    );
  });

  it('accepts exactly 100 payouts and rejects 101, 0 and duplicates', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => payout(i));
    expect(parsePain001(buildPain001(batch(hundred))).transactions).toHaveLength(100);
    expectInvalid(() => buildPain001(batch([...hundred, payout(100)])), /at most 100 payouts, got 101/);
    expectInvalid(() => buildPain001(batch([])), /at least one payout/);
    expectInvalid(() => buildPain001(batch([payout(1), payout(1)])), /pay-1 appears twice/);
  });

  it('requires a Max35Text MsgId: a dashed UUID (36 chars) is refused, the 32-hex key is accepted', () => {
    expectInvalid(() => buildPain001(batch([payout(1)], { msgId: '0f8fad5b-d9cb-469f-a165-70867728950e' })), /MsgId/);
    const key = newBatchIdempotencyKey();
    expect(key).toMatch(/^[0-9a-f]{32}$/);
    expect(parsePain001(buildPain001(batch([payout(1)], { msgId: key }))).msgId).toBe(key);
  });

  it('maps a UUID paymentId to its 32-hex EndToEndId, keeps short ids, refuses the rest', () => {
    expect(toEndToEndId('pay_1'.replace('_', '-'))).toBe('pay-1');
    expect(toEndToEndId('0F8FAD5B-D9CB-469F-A165-70867728950E')).toBe('0f8fad5bd9cb469fa16570867728950e');
    expectInvalid(() => toEndToEndId('x'.repeat(36)), /cannot be an EndToEndId/);
    expectInvalid(() => toEndToEndId('has space'), /cannot be an EndToEndId/);
    const xml = buildPain001(batch([payout(1, { paymentId: '0f8fad5b-d9cb-469f-a165-70867728950e' })]));
    expect(parsePain001(xml).transactions[0]?.endToEndId).toBe('0f8fad5bd9cb469fa16570867728950e');
  });
});

describe('parsePain001 validation (what the sandbox bank answers 400 with)', () => {
  const good = () => buildPain001(batch([payout(1), payout(2)]));
  const reason = (xml: string): string => {
    try {
      parsePain001(xml);
    } catch (err) {
      expect(err).toBeInstanceOf(TerminalError);
      expect((err as TerminalError).code).toBe('INVALID_PAIN001');
      return (err as Error).message;
    }
    throw new Error('expected parsePain001 to throw');
  };

  it('rejects malformed XML, DOCTYPE and a wrong namespace', () => {
    expect(reason('<Document><CstmrCdtTrfInitn>')).toMatch(/malformed XML/);
    expect(reason(`<!DOCTYPE x [<!ENTITY a "b">]>${good()}`)).toMatch(/DOCTYPE/);
    expect(reason(good().replace('pain.001.001.09', 'pain.001.001.03'))).toMatch(/wrong namespace/);
  });

  it('accepts a prefixed namespace', () => {
    const xml = good()
      .replace(`<Document xmlns="${PAIN001_NS}">`, `<p:Document xmlns:p="${PAIN001_NS}">`)
      .replace(/<(\/?)(?!\?)([A-Za-z])/g, '<$1p:$2')
      .replace('<p:p:Document', '<p:Document')
      .replace('</p:p:Document', '</p:Document');
    expect(parsePain001(xml).transactions).toHaveLength(2);
  });

  it('rejects a bad creditor IBAN, NbOfTxs/CtrlSum mismatches and > max transactions', () => {
    expect(reason(good().replace('DE89370400440532013000', 'DE00370400440532013000'))).toMatch(
      /invalid creditor IBAN \*\*\*\*3000/,
    );
    expect(reason(good().replace(/<NbOfTxs>2<\/NbOfTxs>/, '<NbOfTxs>3</NbOfTxs>'))).toMatch(/NbOfTxs 3 does not match 2/);
    expect(reason(good().replace(/<CtrlSum>20.03<\/CtrlSum>/, '<CtrlSum>99.00</CtrlSum>'))).toMatch(
      /CtrlSum 99.00 does not match/,
    );
    expect(reason(good().replace('>10.01<', '>0.00<'))).toMatch(/InstdAmt must be a positive/);
    expect(() => parsePain001(good(), { maxTransactions: 1 })).toThrow(/too many transactions: 2 > 1/);
  });
});

describe('SEPA helpers', () => {
  it('validates IBAN checksums', () => {
    for (const ok of [
      'EE382200221020145685',
      'DE89370400440532013000',
      'GB82 WEST 1234 5698 7654 32',
      'fr1420041010050500013m02606',
    ])
      expect(isValidIban(ok)).toBe(true);
    for (const bad of ['EE382200221020145686', 'DE8937040044053201300', 'XX', '', 'DE89 3704 0044 0532 0130 0!'])
      expect(isValidIban(bad)).toBe(false);
  });

  it('converts amounts both ways', () => {
    expect(formatMinorUnits(1)).toBe('0.01');
    expect(formatMinorUnits(1250)).toBe('12.50');
    expect(formatMinorUnits(99_999_999_999)).toBe('999999999.99');
    expect(parseDecimalToMinor('12.5')).toBe(1250);
    expect(parseDecimalToMinor('0012.50')).toBe(1250);
    expect(parseDecimalToMinor('7')).toBe(700);
    expect(parseDecimalToMinor('1.234')).toBeUndefined();
    expect(parseDecimalToMinor('-1.00')).toBeUndefined();
  });
});
