import { describe, expect, it } from 'vitest';
import { TerminalError } from '../../shared/errors.js';
import { buildPain002, groupStatusOf, parsePain002 } from '../../workers/payout/lhv/pain002.js';

/** Shaped like LHV's published pain.002.001.10 samples: prefixed, partial rejection, two reasons. */
const LHV_STYLE = `<?xml version="1.0" encoding="UTF-8"?>
<ns2:Document xmlns:ns2="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10">
  <ns2:CstmrPmtStsRpt>
    <ns2:GrpHdr><ns2:MsgId>RES0021745785e24135ada8a40488782480</ns2:MsgId><ns2:CreDtTm>2030-01-01T10:00:01.000+02:00</ns2:CreDtTm></ns2:GrpHdr>
    <ns2:OrgnlGrpInfAndSts>
      <ns2:OrgnlMsgId>0f8fad5bd9cb469fa16570867728950e</ns2:OrgnlMsgId>
      <ns2:OrgnlMsgNmId>pain.001.001.09</ns2:OrgnlMsgNmId>
      <ns2:GrpSts>PART</ns2:GrpSts>
    </ns2:OrgnlGrpInfAndSts>
    <ns2:OrgnlPmtInfAndSts>
      <ns2:OrgnlPmtInfId>0f8fad5bd9cb469fa16570867728950e</ns2:OrgnlPmtInfId>
      <ns2:PmtInfSts>PART</ns2:PmtInfSts>
      <ns2:TxInfAndSts>
        <ns2:OrgnlInstrId>pay-1</ns2:OrgnlInstrId>
        <ns2:OrgnlEndToEndId>pay-1</ns2:OrgnlEndToEndId>
        <ns2:TxSts>ACSC</ns2:TxSts>
      </ns2:TxInfAndSts>
      <ns2:TxInfAndSts>
        <ns2:OrgnlEndToEndId>pay-2</ns2:OrgnlEndToEndId>
        <ns2:TxSts>RJCT</ns2:TxSts>
        <ns2:StsRsnInf><ns2:Rsn><ns2:Cd>AC04</ns2:Cd></ns2:Rsn><ns2:AddtlInf>Closed account &amp; number</ns2:AddtlInf><ns2:AddtlInf>see bank</ns2:AddtlInf></ns2:StsRsnInf>
      </ns2:TxInfAndSts>
    </ns2:OrgnlPmtInfAndSts>
  </ns2:CstmrPmtStsRpt>
</ns2:Document>`;

describe('parsePain002', () => {
  it('reads original MsgId, group status and per-transaction status with reasons', () => {
    const r = parsePain002(LHV_STYLE);
    expect(r.originalMsgId).toBe('0f8fad5bd9cb469fa16570867728950e');
    expect(r.groupStatus).toBe('PART');
    expect(r.createdAt).toBe('2030-01-01T10:00:01.000+02:00');
    expect(r.transactions).toEqual([
      { endToEndId: 'pay-1', instrId: 'pay-1', status: 'ACSC' },
      {
        endToEndId: 'pay-2',
        instrId: undefined,
        status: 'RJCT',
        reasonCode: 'AC04',
        reasonText: 'Closed account & number see bank',
      },
    ]);
  });

  it('accepts a follow-up report without group status', () => {
    const xml = buildPain002({
      msgId: 'm2',
      originalMsgId: 'k1',
      transactions: [{ endToEndId: 'pay-9', instrId: undefined, status: 'ACSC' }],
    });
    expect(xml).not.toContain('GrpSts');
    const r = parsePain002(xml);
    expect(r.groupStatus).toBeUndefined();
    expect(r.transactions).toEqual([{ endToEndId: 'pay-9', instrId: undefined, status: 'ACSC' }]);
  });

  it('reads a proprietary reason and a group-level rejection', () => {
    const xml = LHV_STYLE.replace(
      '<ns2:GrpSts>PART</ns2:GrpSts>',
      '<ns2:GrpSts>RJCT</ns2:GrpSts><ns2:StsRsnInf><ns2:Rsn><ns2:Prtry>NOACCESS</ns2:Prtry></ns2:Rsn></ns2:StsRsnInf>',
    );
    const r = parsePain002(xml);
    expect(r.groupStatus).toBe('RJCT');
    expect(r.groupReasonCode).toBe('NOACCESS');
  });

  it('refuses wrong namespace, malformed XML and unmatched transactions with LHV_BAD_RESPONSE', () => {
    const cases = [
      LHV_STYLE.replace('pain.002.001.10', 'pain.002.001.03'),
      LHV_STYLE.slice(0, 200),
      LHV_STYLE.replace('<ns2:OrgnlEndToEndId>pay-2</ns2:OrgnlEndToEndId>', ''),
      LHV_STYLE.replace(/<ns2:OrgnlMsgId>[^<]*<\/ns2:OrgnlMsgId>/, ''),
    ];
    for (const xml of cases) {
      expect(() => parsePain002(xml)).toThrow(TerminalError);
      try {
        parsePain002(xml);
      } catch (err) {
        expect((err as TerminalError).code).toBe('LHV_BAD_RESPONSE');
      }
    }
  });
});

describe('buildPain002', () => {
  it('round-trips through the parser, escaping text and capping AddtlInf at 105 chars', () => {
    const xml = buildPain002({
      msgId: 'm1',
      originalMsgId: 'key<1>',
      groupStatus: 'PART',
      transactions: [
        { endToEndId: 'a&b', instrId: 'a&b', status: 'ACSC' },
        {
          endToEndId: 'c',
          instrId: undefined,
          status: 'RJCT',
          reasonCode: 'AM04',
          reasonText: `Insufficient <funds> ${'x'.repeat(200)}`,
        },
      ],
    });
    const r = parsePain002(xml);
    expect(r.originalMsgId).toBe('key<1>');
    expect(r.groupStatus).toBe('PART');
    expect(r.transactions[0]).toEqual({ endToEndId: 'a&b', instrId: 'a&b', status: 'ACSC' });
    expect(r.transactions[1]?.reasonCode).toBe('AM04');
    expect(r.transactions[1]?.reasonText?.startsWith('Insufficient <funds> x')).toBe(true);
    expect(r.transactions[1]?.reasonText).toHaveLength(105);
    expect(xml).toContain('<PmtInfSts>PART</PmtInfSts>');
  });

  it('derives the group status the way LHV describes it', () => {
    expect(groupStatusOf(['ACSC', 'ACSC'])).toBe('ACSC');
    expect(groupStatusOf(['RJCT', 'RJCT'])).toBe('RJCT');
    expect(groupStatusOf(['ACSC', 'RJCT'])).toBe('PART');
    expect(groupStatusOf(['ACSP', 'ACSC'])).toBe('ACSP');
  });
});
